//! Dequantization against gguf-py, bit for bit (`fixtures/gen/quant_goldens.py` writes the
//! raw blocks and gguf-py's dequantized values).

use std::path::PathBuf;

use wavefront::formats::quants::{dequantize, dequantize_row};
use wavefront::DType;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/quants")
}

/// The 16-bit types, then every GGUF block type.
fn types() -> Vec<DType> {
    let mut t = vec![DType::F16, DType::BF16];
    t.extend(DType::WEIGHT_BLOCKS);
    t
}

struct Golden {
    raw: Vec<u8>,
    expected: Vec<f32>,
}

fn golden(dtype: DType) -> Golden {
    let dir = fixtures();
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    let entry = &index[dtype.name()];
    let raw = std::fs::read(dir.join(format!("{}.bin", dtype.name()))).unwrap();
    let expected: Vec<f32> = std::fs::read(dir.join(format!("{}.f32", dtype.name())))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(entry["n_bytes"].as_u64(), Some(raw.len() as u64));
    assert_eq!(entry["n_elems"].as_u64(), Some(expected.len() as u64));
    Golden { raw, expected }
}

fn assert_bits_eq(dtype: DType, got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len(), "{dtype}");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(
            g.to_bits(),
            e.to_bits(),
            "{dtype}: element {i} (block {}): got {g:e}, gguf-py {e:e}",
            i / dtype.block_elems()
        );
    }
}

#[test]
fn every_type_matches_gguf_py_bit_for_bit() {
    for dtype in types() {
        let g = golden(dtype);
        let got = dequantize(dtype, &g.raw, g.expected.len()).unwrap();
        assert_bits_eq(dtype, &got, &g.expected);
        // The goldens are not degenerate: several distinct values, not all zero.
        let mut distinct: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(
            distinct.len() > 16,
            "{dtype}: only {} distinct values",
            distinct.len()
        );
    }
}

#[test]
fn row_by_row_equals_whole_tensor() {
    for dtype in types() {
        let g = golden(dtype);
        // Rows of two blocks each.
        let row_elems = 2 * dtype.block_elems();
        let row_bytes = dtype.row_bytes(row_elems).unwrap();
        let mut got = vec![f32::NAN; g.expected.len()];
        for (src, dst) in g.raw.chunks(row_bytes).zip(got.chunks_mut(row_elems)) {
            dequantize_row(dtype, src, dst).unwrap();
        }
        assert_bits_eq(dtype, &got, &g.expected);
    }
}

#[test]
fn wrong_byte_count_names_expected_and_actual() {
    for dtype in types().into_iter().chain([DType::F32]) {
        let n = 4 * dtype.block_elems();
        let need = dtype.row_bytes(n).unwrap();
        for len in [0, need - 1, need + 1, need + dtype.block_bytes()] {
            let bytes = vec![0u8; len];
            let err = dequantize(dtype, &bytes, n).unwrap_err();
            assert!(
                err.contains(&need.to_string()) && err.contains(&len.to_string()),
                "{dtype}, {len} bytes: {err}"
            );
            assert!(err.contains(dtype.name()), "{err}");
        }
        assert_eq!(dequantize(dtype, &vec![0u8; need], n).unwrap().len(), n);
    }
}

#[test]
fn partial_block_is_an_error() {
    for dtype in [
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q4_K,
        DType::Q6_K,
    ] {
        let n = dtype.block_elems() + 1;
        let err = dequantize(dtype, &vec![0u8; 2 * dtype.block_bytes()], n).unwrap_err();
        assert!(err.contains(&n.to_string()), "{dtype}: {err}");
    }
}

#[test]
fn host_tensor_to_f32_dequantizes_and_reports_bad_lengths() {
    use std::sync::Arc;
    use wavefront::tensor::{HostTensor, Storage};
    let g = golden(DType::Q4_K);
    let mut t = HostTensor {
        name: "blk.0.ffn_down.weight".into(),
        dtype: DType::Q4_K,
        shape: vec![g.expected.len() / 256, 256],
        storage: Storage::Owned(Arc::new(g.raw.clone())),
    };
    assert_bits_eq(DType::Q4_K, &t.to_f32().unwrap(), &g.expected);
    t.storage = Storage::Owned(Arc::new(g.raw[..g.raw.len() - 1].to_vec()));
    let err = t.to_f32().unwrap_err();
    assert!(err.to_string().contains("blk.0.ffn_down.weight"), "{err}");
}
