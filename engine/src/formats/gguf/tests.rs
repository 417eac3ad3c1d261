//! Parser and loader tests on files made by the test builder.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::builder::{self, GgufBuilder};
use super::types::{GgmlType, GgufArray, GgufValue};
use super::*;
use crate::config::{names, Arch};
use crate::error::Error;
use crate::tensor::{DType, Storage};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn write_bytes(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn all_types_metadata() -> Vec<(&'static str, GgufValue)> {
    use GgufValue as V;
    vec![
        ("t.u8", V::U8(200)),
        ("t.i8", V::I8(-100)),
        ("t.u16", V::U16(60000)),
        ("t.i16", V::I16(-30000)),
        ("t.u32", V::U32(4_000_000_000)),
        ("t.i32", V::I32(-2_000_000_000)),
        ("t.f32", V::F32(-1.5e-3)),
        ("t.bool", V::Bool(true)),
        ("t.string", V::String("héllo ✓ 日本".into())),
        ("t.u64", V::U64(u64::MAX - 1)),
        ("t.i64", V::I64(i64::MIN + 1)),
        ("t.f64", V::F64(std::f64::consts::PI)),
        ("t.empty", V::Array(GgufArray::F32(vec![]))),
        (
            "t.strings",
            V::Array(GgufArray::String(["a b", ""].into_iter().collect())),
        ),
        ("t.bools", V::Array(GgufArray::Bool(vec![false, true]))),
        ("t.u8s", V::Array(GgufArray::U8(vec![0, 255]))),
        ("t.f64s", V::Array(GgufArray::F64(vec![-0.5, 1e300]))),
        (
            "t.nested",
            V::Array(GgufArray::Array(vec![
                GgufArray::I32(vec![-1, 2]),
                GgufArray::String(["x"].into_iter().collect()),
            ])),
        ),
    ]
}

#[test]
fn v2_and_v3_parse_the_same() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let mut v2 = GgufBuilder { version: 2, ..b };
    let p2 = v2.write(dir.path(), "v2.gguf");
    v2.version = 3;
    let p3 = v2.write(dir.path(), "v3.gguf");
    let (f2, f3) = (read(&p2).unwrap(), read(&p3).unwrap());
    assert_eq!((f2.version, f3.version), (2, 3));
    assert_eq!(f2.metadata, f3.metadata);
    assert_eq!(f2.tensors, f3.tensors);
    assert_eq!(f2.tensors.len(), 12);
    assert_eq!(f2.metadata.len(), 10);
}

#[test]
fn metadata_of_every_type_round_trips() {
    let dir = tmp();
    let mut b = GgufBuilder::new();
    for (k, v) in all_types_metadata() {
        b = b.kv(k, v);
    }
    let f = read(&b.write(dir.path(), "m.gguf")).unwrap();
    assert_eq!(f.metadata.len(), all_types_metadata().len());
    for (k, v) in all_types_metadata() {
        assert_eq!(f.get(k), Some(&v), "{k}");
    }
    assert!(f.tensors.is_empty());
}

#[test]
fn typed_getters_convert_and_reject() {
    let dir = tmp();
    let mut b = GgufBuilder::new();
    for (k, v) in all_types_metadata() {
        b = b.kv(k, v);
    }
    let f = read(&b.write(dir.path(), "m.gguf")).unwrap();
    assert_eq!(f.get_usize("t.u16").unwrap(), 60000);
    assert_eq!(f.get_str("t.string").unwrap(), "héllo ✓ 日本");
    assert_eq!(f.get_f32("t.f64").unwrap(), std::f32::consts::PI);
    assert!(f.get_bool("t.bool").unwrap());
    assert_eq!(f.get_str_array("t.strings").unwrap(), vec!["a b", ""]);
    assert_eq!(f.opt_usize("absent").unwrap(), None);
    for (key, err) in [
        ("t.i8", f.get_usize("t.i8").unwrap_err()),
        ("t.u32", f.get_str("t.u32").unwrap_err()),
        ("t.bools", f.get_str_array("t.bools").unwrap_err()),
        ("missing.key", f.get_f32("missing.key").unwrap_err()),
    ] {
        match &err {
            Error::Config { path, field, .. } => {
                assert_eq!(field, key);
                assert_eq!(path, &f.path);
            }
            e => panic!("{key}: expected Config, got {e:?}"),
        }
        assert!(err.to_string().contains("m.gguf"), "{err}");
    }
}

#[test]
fn alignment_is_honoured() {
    let dir = tmp();
    for align in [None, Some(1u32), Some(64), Some(256)] {
        let mut b = GgufBuilder::new()
            .tensor_f32("a", &[3], &[1.0, 2.0, 3.0])
            .tensor_f32("b", &[2, 5], &builder::values(10, 3));
        if let Some(a) = align {
            b = b.kv("general.alignment", GgufValue::U32(a));
        }
        let (bytes, layout) = b.build();
        let f = read(&write_bytes(dir.path(), "a.gguf", &bytes)).unwrap();
        let a = align.unwrap_or(32) as usize;
        assert_eq!(f.alignment, a);
        assert_eq!(f.data_offset, layout.data);
        assert_eq!(f.data_offset % a, 0);
        let tb = f.tensor_info("b").unwrap();
        assert_eq!(tb.offset, 12usize.div_ceil(a) * a);
        assert_eq!(tb.shape, vec![2, 5]);
        assert_eq!(f32s(f.tensor_bytes(tb)), builder::values(10, 3));
        assert_eq!(
            f32s(f.tensor_bytes(f.tensor_info("a").unwrap())),
            vec![1.0, 2.0, 3.0]
        );
    }
}

#[test]
fn alignment_that_is_not_a_power_of_two_is_a_config_error() {
    let dir = tmp();
    let b = GgufBuilder::new().kv("general.alignment", GgufValue::U32(48));
    let err = read(&b.write(dir.path(), "al.gguf")).unwrap_err();
    assert!(
        matches!(&err, Error::Config { field, .. } if field == "general.alignment"),
        "{err:?}"
    );
    assert!(err.to_string().contains("al.gguf"));
}

#[test]
fn truncated_file_is_a_typed_error_at_every_section() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let (bytes, l) = b.build();
    let cuts = [
        ("empty", 0),
        ("in the magic", 2),
        ("in the header", 10),
        ("in the metadata", l.metadata + 20),
        ("at the end of metadata", l.tensor_infos - 3),
        ("in the tensor infos", l.tensor_infos + 30),
        ("in the data", l.data + (l.end - l.data) / 2),
        ("one byte short", l.end - 1),
    ];
    for (what, cut) in cuts {
        let path = write_bytes(dir.path(), "cut.gguf", &bytes[..cut]);
        let err = load(&path).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. }), "{what}: {err:?}");
        assert!(err.to_string().contains("cut.gguf"), "{what}: {err}");
    }
    // Cut in the data, the error names the tensor whose data is missing.
    let path = write_bytes(dir.path(), "cut.gguf", &bytes[..l.end - 1]);
    let err = read(&path).unwrap_err();
    assert!(err.to_string().contains("output.weight"), "{err}");
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let (bytes, l) = b.build();
    for cut in (0..l.data).chain([l.data + 1, l.end - 4]) {
        let path = write_bytes(dir.path(), "c.gguf", &bytes[..cut]);
        assert!(load(&path).is_err(), "a file cut at {cut} loaded");
    }
}

#[test]
fn wrong_magic() {
    let dir = tmp();
    let (mut bytes, _) = GgufBuilder::new().build();
    bytes[..4].copy_from_slice(b"GGML");
    let err = read(&write_bytes(dir.path(), "magic.gguf", &bytes)).unwrap_err();
    assert!(matches!(err, Error::BadMagic { .. }), "{err:?}");
    assert!(err.to_string().contains("magic.gguf"), "{err}");
}

#[test]
fn unsupported_versions() {
    let dir = tmp();
    for (version, what, reported) in [
        (1u32, "GGUF", 1u64),
        (4, "GGUF", 4),
        (3u32.swap_bytes(), "big-endian GGUF", 3),
    ] {
        let b = GgufBuilder {
            version,
            ..GgufBuilder::new()
        };
        let err = read(&b.write(dir.path(), "ver.gguf")).unwrap_err();
        match &err {
            Error::UnsupportedVersion {
                what: w,
                version: v,
                ..
            } => {
                assert_eq!((*w, *v), (what, reported));
            }
            e => panic!("version {version:#x}: {e:?}"),
        }
        assert!(err.to_string().contains("ver.gguf"), "{err}");
    }
}

#[test]
fn unknown_ggml_type_is_unsupported_dtype() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let b = b.tensor("blk.0.ffn_norm.weight", &[16], GgmlType(99), vec![0; 64]);
    let err = read(&b.write(dir.path(), "t99.gguf")).unwrap_err();
    match &err {
        Error::UnsupportedDtype { tensor, dtype, .. } => {
            assert_eq!(tensor, "blk.0.ffn_norm.weight");
            assert_eq!(dtype, "ggml type 99");
        }
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().contains("t99.gguf"), "{err}");
}

#[test]
fn known_ggml_type_the_engine_cannot_load_is_unsupported_dtype() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    // IQ4_NL: 32 elements in 18 bytes. The file parses (the type is known); loading refuses it.
    let b = b.tensor(
        "blk.0.ffn_up.weight",
        &[32, 32],
        GgmlType(20),
        vec![1; 32 * 18],
    );
    let path = b.write(dir.path(), "iq4.gguf");
    assert!(read(&path).is_ok());
    let err = load(&path).unwrap_err();
    match &err {
        Error::UnsupportedDtype { tensor, dtype, .. } => {
            assert_eq!(tensor, "blk.0.ffn_up.weight");
            assert_eq!(dtype, "IQ4_NL (ggml type 20)");
        }
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().contains("iq4.gguf"), "{err}");
}

/// Overwrites the u64 that starts `at` in `bytes`.
fn poke_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn tensor_offset_out_of_bounds_is_corrupt() {
    let dir = tmp();
    let b = GgufBuilder::new().tensor_f32("w", &[4], &[1.0; 4]);
    let (mut bytes, l) = b.build();
    // tensor info: name (8 + 1) | n_dims 4 | ne 8 | type 4 | offset 8
    poke_u64(&mut bytes, l.tensor_infos + 9 + 4 + 8 + 4, 1 << 20);
    let err = read(&write_bytes(dir.path(), "off.gguf", &bytes)).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("off.gguf") && msg.contains("`w`") && msg.contains("outside"),
        "{msg}"
    );
}

#[test]
fn absurd_array_and_string_lengths() {
    let dir = tmp();
    let b = GgufBuilder::new()
        .kv("a", GgufValue::Array(GgufArray::U32(vec![7])))
        .kv("s", GgufValue::String("abc".into()));
    let (bytes, l) = b.build();
    // key "a": len 8 + 1 | type 4 | elem type 4 | count 8
    let count_at = l.metadata + 9 + 4 + 4;
    // (count, expected variant): overflowing the byte count, or just more than the file holds
    for (count, overflow) in [(u64::MAX / 2, true), (1 << 40, false)] {
        let mut bad = bytes.clone();
        poke_u64(&mut bad, count_at, count);
        let err = read(&write_bytes(dir.path(), "arr.gguf", &bad)).unwrap_err();
        if overflow {
            assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        } else {
            assert!(
                matches!(&err, Error::Truncated { needed, .. } if *needed == 4 << 40),
                "{err:?}"
            );
        }
        assert!(
            err.to_string().contains("arr.gguf") && err.to_string().contains("`a`"),
            "{err}"
        );
    }
    // key "s" follows: len 8 + 1 | type 4 | string length 8
    let slen_at = count_at + 8 + 4 + 9 + 4;
    let mut bad = bytes.clone();
    poke_u64(&mut bad, slen_at, u64::MAX);
    let err = read(&write_bytes(dir.path(), "str.gguf", &bad)).unwrap_err();
    assert!(
        matches!(&err, Error::Truncated { needed, .. } if *needed == u64::MAX),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("str.gguf") && err.to_string().contains("`s`"),
        "{err}"
    );
}

/// Arrays of arrays are bounded in number (each takes 12 bytes in the file, 56 in memory), and
/// a bool array holds only 0 and 1.
#[test]
fn nested_arrays_are_bounded_and_bool_arrays_checked() {
    let dir = tmp();
    let nested = |n: usize| {
        GgufBuilder::new().kv(
            "n",
            GgufValue::Array(GgufArray::Array(vec![GgufArray::U8(vec![]); n])),
        )
    };
    let f = read(&nested(4096).write(dir.path(), "ok.gguf")).unwrap();
    assert_eq!(
        f.get("n").and_then(|v| v.as_array()).map(|a| a.len()),
        Some(4096)
    );
    let err = read(&nested(4097).write(dir.path(), "many.gguf")).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .ends_with("many.gguf: corrupt: metadata `n`: more than 4096 arrays inside an array"),
        "{err}"
    );

    let b = GgufBuilder::new().kv("b", GgufValue::Array(GgufArray::Bool(vec![true, false])));
    let (mut bytes, l) = b.build();
    // key "b": len 8 + 1 | type 4 | elem type 4 | count 8 | elements
    bytes[l.metadata + 9 + 4 + 4 + 8 + 1] = 2;
    let err = read(&write_bytes(dir.path(), "bool.gguf", &bytes)).unwrap_err();
    assert!(
        err.to_string()
            .ends_with("bool.gguf: corrupt: metadata `b`: bool byte 2 is neither 0 nor 1"),
        "{err}"
    );
}

#[test]
fn absurd_tensor_and_metadata_counts() {
    let dir = tmp();
    let (mut bytes, _) = GgufBuilder::new().build();
    poke_u64(&mut bytes, 8, u64::MAX); // tensor count
    let err = read(&write_bytes(dir.path(), "n.gguf", &bytes)).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let (mut bytes, _) = GgufBuilder::new().build();
    poke_u64(&mut bytes, 16, 1 << 50); // metadata count
    let err = read(&write_bytes(dir.path(), "n.gguf", &bytes)).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err:?}");
}

#[test]
fn missing_required_metadata_key() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let err = load(
        &b.without("llama.block_count")
            .write(dir.path(), "nokey.gguf"),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Config { field, .. } if field == "llama.block_count"),
        "{err:?}"
    );
    assert!(err.to_string().contains("nokey.gguf"), "{err}");
}

#[test]
fn absurd_config_values_are_config_errors() {
    let dir = tmp();
    for (key, value) in [
        ("llama.block_count", GgufValue::U64(u64::MAX >> 8)),
        ("llama.attention.key_length", GgufValue::U64(1 << 62)),
        ("llama.attention.head_count_kv", GgufValue::U32(0)),
        ("llama.attention.head_count", GgufValue::U32(0)),
    ] {
        let (b, _, _) = builder::tiny_llama();
        let err = load(&b.kv(key, value).write(dir.path(), "absurd.gguf")).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{key}: {err:?}");
        assert!(err.to_string().contains("absurd.gguf"), "{err}");
    }
}

#[test]
fn unsupported_architecture() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let b = b.kv("general.architecture", GgufValue::String("gemma".into()));
    let err = load(&b.write(dir.path(), "arch.gguf")).unwrap_err();
    assert!(matches!(err, Error::UnsupportedModel { .. }), "{err:?}");
    assert!(err.to_string().contains("gemma"), "{err}");
}

#[test]
fn shape_disagreeing_with_config_is_shape_mismatch() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let b = b.tensor_f32("blk.0.ffn_up.weight", &[12, 16], &builder::values(192, 1));
    let err = crate::formats::load(&b.write(dir.path(), "shape.gguf")).unwrap_err();
    match &err {
        Error::ShapeMismatch {
            tensor,
            expected,
            found,
            ..
        } => {
            assert_eq!(tensor, &names::layer(0, names::UP));
            assert_eq!(
                (expected.as_slice(), found.as_slice()),
                (&[32, 16][..], &[12, 16][..])
            );
        }
        e => panic!("{e:?}"),
    }
    assert!(err.to_string().contains("shape.gguf"), "{err}");
}

/// The tiny Llama relabelled `qwen3` (llama.cpp's `qwen3.*` keys), with `head_dim` 8 gains.
fn tiny_qwen3(q: &[f32], k_norm: Option<&[f32]>) -> GgufBuilder {
    let (mut b, _, _) = builder::tiny_llama();
    for (key, v) in b.kv.iter_mut() {
        if let Some(rest) = key.strip_prefix("llama.") {
            *key = format!("qwen3.{rest}");
        }
        if key == "general.architecture" {
            *v = GgufValue::String("qwen3".into());
        }
    }
    let b = b
        .tensor_f32("blk.0.attn_q.weight", &[16, 16], q)
        .tensor_f32("blk.0.attn_q_norm.weight", &[8], &builder::values(8, 31));
    match k_norm {
        Some(k) => b.tensor_f32("blk.0.attn_k_norm.weight", &[8], k),
        None => b,
    }
}

#[test]
fn qwen3_keeps_rows_and_reads_the_qk_norm_gains() {
    let dir = tmp();
    let wq = builder::values(256, 21);
    let k_norm = builder::values(8, 32);
    let b = tiny_qwen3(&wq, Some(&k_norm));
    let m = crate::formats::load(&b.write(dir.path(), "qwen3.gguf")).unwrap();
    assert_eq!(m.config.arch, Arch::Qwen3);
    assert!(m.config.qk_norm && !m.config.attention_bias);
    // Qwen3 rows are in the checkpoint's order (llama.cpp runs it with NEOX RoPE): no un-permute.
    assert_eq!(
        f32s(m.tensor(&names::layer(0, names::WQ)).unwrap().bytes()),
        wq
    );
    assert_eq!(
        f32s(m.tensor(&names::layer(0, names::K_NORM)).unwrap().bytes()),
        k_norm
    );
    // Without attn_k_norm: a typed error naming the canonical tensor.
    let b = tiny_qwen3(&wq, None);
    let err = crate::formats::load(&b.write(dir.path(), "no_k_norm.gguf")).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { tensor, .. } if *tensor == names::layer(0, names::K_NORM)),
        "{err:?}"
    );
    assert!(err.to_string().contains("no_k_norm.gguf"), "{err}");
}

#[test]
fn missing_tensor() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let b = b.without_tensor("blk.0.attn_v.weight");
    let err = crate::formats::load(&b.write(dir.path(), "miss.gguf")).unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { tensor, .. } if *tensor == names::layer(0, names::WV)),
        "{err:?}"
    );
    assert!(err.to_string().contains("miss.gguf"), "{err}");
}

#[test]
fn tiny_llama_loads_with_config_and_unpermuted_qk() {
    let dir = tmp();
    let (b, wq, wk) = builder::tiny_llama();
    let m = crate::formats::load(&b.write(dir.path(), "tiny.gguf")).unwrap();
    let c = &m.config;
    assert_eq!(c.arch, Arch::Llama);
    assert_eq!(
        (c.n_layers, c.hidden_size, c.intermediate_size, c.vocab_size),
        (1, 16, 32, 10)
    );
    assert_eq!((c.n_heads, c.n_kv_heads, c.head_dim), (2, 1, 8));
    assert_eq!((c.rms_norm_eps, c.rope_theta), (1e-5, 500000.0));
    assert_eq!(c.max_position_embeddings, 64);
    assert!(!c.tie_word_embeddings && !c.attention_bias);
    assert_eq!(c.rope_freq_factors, None);
    assert!(m.tokenizer.is_none());
    let q = m.tensor(&names::layer(0, names::WQ)).unwrap();
    assert_eq!((q.dtype, q.shape.clone()), (DType::F32, vec![16, 16]));
    assert_eq!(f32s(q.bytes()), wq);
    assert!(matches!(q.storage, Storage::Owned(_)));
    assert_eq!(
        f32s(m.tensor(&names::layer(0, names::WK)).unwrap().bytes()),
        wk
    );
    let v = m.tensor(&names::layer(0, names::WV)).unwrap();
    assert!(matches!(v.storage, Storage::Mapped { .. }));
    assert_eq!(f32s(v.bytes()), builder::values(128, 3));
    assert_eq!(
        f32s(m.tensor(names::LM_HEAD).unwrap().bytes()),
        builder::values(160, 10)
    );
}

#[test]
fn tied_head_rope_freqs_and_defaults() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let b = b
        .without_tensor("output.weight")
        .without("llama.rope.freq_base")
        .without("llama.attention.head_count_kv")
        .without("llama.vocab_size")
        .tensor_f32("blk.0.attn_q.weight", &[16, 16], &builder::values(256, 1))
        .tensor_f32("blk.0.attn_k.weight", &[16, 16], &builder::values(256, 2))
        .tensor_f32("blk.0.attn_v.weight", &[16, 16], &builder::values(256, 3))
        .tensor_f32("rope_freqs.weight", &[4], &[1.0, 4.0, 0.5, 2.0]);
    let m = crate::formats::load(&b.write(dir.path(), "tied.gguf")).unwrap();
    let c = &m.config;
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 10000.0);
    assert_eq!(c.n_kv_heads, 2);
    assert_eq!(c.vocab_size, 10); // from the embedding's shape
    assert_eq!(c.rope_freq_factors, Some(vec![1.0, 4.0, 0.5, 2.0]));
    assert!(!m.tensors.contains_key(names::LM_HEAD));
}

#[test]
fn qwen2_keeps_rows_and_reads_biases() {
    let dir = tmp();
    let (b, _, _) = builder::tiny_llama();
    let mut b = b;
    for (k, v) in b.kv.iter_mut() {
        if let Some(rest) = k.strip_prefix("llama.") {
            *k = format!("qwen2.{rest}");
        }
        if k == "general.architecture" {
            *v = GgufValue::String("qwen2".into());
        }
    }
    let wq = builder::values(256, 21);
    let b = b
        .tensor_f32("blk.0.attn_q.weight", &[16, 16], &wq)
        .tensor_f32("blk.0.attn_q.bias", &[16], &builder::values(16, 22))
        .tensor_f32("blk.0.attn_k.bias", &[8], &builder::values(8, 23))
        .tensor_f32("blk.0.attn_v.bias", &[8], &builder::values(8, 24))
        // llama.cpp reads no window for qwen2 (nor qwen3): a key the file carries is ignored.
        .kv("qwen2.attention.sliding_window", GgufValue::U32(7));
    let m = crate::formats::load(&b.write(dir.path(), "qwen.gguf")).unwrap();
    assert_eq!(m.config.arch, Arch::Qwen2);
    assert!(m.config.attention_bias);
    assert_eq!(
        (m.config.sliding_window, &m.config.sliding_layers),
        (None, &None)
    );
    assert_eq!(
        f32s(m.tensor(&names::layer(0, names::WQ)).unwrap().bytes()),
        wq
    );
    assert_eq!(
        f32s(m.tensor(&names::layer(0, names::BQ)).unwrap().bytes()),
        builder::values(16, 22)
    );
}

#[test]
fn unpermute_matches_a_hand_derived_example() {
    // One head of 4 rows: llama.cpp views them as (2, 2) and transposes, so the file holds
    // model rows [0, 2, 1, 3]; un-permuting file rows [a, b, c, d] gives [a, c, b, d].
    let rows: Vec<u8> = vec![b'a', b'b', b'c', b'd'];
    assert_eq!(unpermute_rows(&rows, 4, 1).unwrap(), b"acbd");
    assert_eq!(permute_rows(b"acbd", 4, 1).unwrap(), rows);
    assert_eq!(unpermute_rows(&rows, 3, 1), None); // 3 rows do not split into pairs
    assert_eq!(unpermute_rows(&rows, 4, 0), None);
}

#[test]
fn unpermute_agrees_with_transformers_reverse_permute() {
    for (rows, cols, n_head) in [(8, 3, 2), (16, 5, 4), (12, 2, 3), (24, 4, 1)] {
        let w = builder::values(rows * cols, (rows * cols) as u64);
        let bytes: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
        let ours = f32s(&unpermute_rows(&bytes, rows, n_head).unwrap());
        assert_eq!(
            ours,
            builder::transformers_reverse_permute(&w, rows, cols, n_head)
        );
        let theirs = f32s(&permute_rows(&bytes, rows, n_head).unwrap());
        assert_eq!(theirs, builder::llama_cpp_permute(&w, rows, cols, n_head));
        assert_ne!(ours, w, "the permutation should move rows");
    }
}

proptest! {
    #[test]
    fn permute_then_unpermute_is_identity(
        n_head in 1usize..6, half in 1usize..6, row_bytes in 1usize..20, seed in any::<u64>()
    ) {
        let rows = 2 * n_head * half;
        let bytes: Vec<u8> = builder::values(rows * row_bytes, seed)
            .iter()
            .map(|v| (v * 127.0) as i8 as u8)
            .collect();
        let p = permute_rows(&bytes, rows, n_head).unwrap();
        prop_assert_eq!(unpermute_rows(&p, rows, n_head).unwrap(), bytes.clone());
        let u = unpermute_rows(&bytes, rows, n_head).unwrap();
        prop_assert_eq!(permute_rows(&u, rows, n_head).unwrap(), bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]
    /// Random byte flips in a valid file: `load` returns (Ok or Err), it never panics.
    #[test]
    fn flipped_bytes_never_panic(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let (b, _, _) = builder::tiny_llama();
        let (mut bytes, l) = b.build();
        for (at, x) in flips {
            // mostly the header, metadata and tensor infos, where the structure is
            let i = at.index(l.data + 64).min(bytes.len() - 1);
            bytes[i] ^= x.max(1);
        }
        let dir = tmp();
        let path = write_bytes(dir.path(), "fuzz.gguf", &bytes);
        let _ = crate::formats::load(&path);
    }
}

/// The tiny Llama relabelled `gemma2` (llama.cpp's `gemma2.*` keys) with Gemma's post-norms, and
/// `extra` keys on top.
fn tiny_gemma2(extra: &[(&str, GgufValue)]) -> GgufBuilder {
    let (mut b, _, _) = builder::tiny_llama();
    for (key, v) in b.kv.iter_mut() {
        if let Some(rest) = key.strip_prefix("llama.") {
            *key = format!("gemma2.{rest}");
        }
        if key == "general.architecture" {
            *v = GgufValue::String("gemma2".into());
        }
    }
    let mut b = b
        .tensor_f32(
            "blk.0.post_attention_norm.weight",
            &[16],
            &builder::values(16, 41),
        )
        .tensor_f32(
            "blk.0.post_ffw_norm.weight",
            &[16],
            &builder::values(16, 42),
        );
    for (key, v) in extra {
        b = b.kv(key, v.clone());
    }
    b
}

#[test]
fn gemma2_reads_llama_cpps_keys_and_defaults() {
    let dir = tmp();
    // Without the optional keys: llama.cpp's defaults (window 4096, caps 50 and 30), the even
    // layers sliding, head_dim's score scale (not the 27B layer count).
    let m = crate::formats::load(&tiny_gemma2(&[]).write(dir.path(), "g2.gguf")).unwrap();
    let c = &m.config;
    assert_eq!(c.arch, Arch::Gemma2);
    assert_eq!(c.sliding_window, Some(4096));
    assert_eq!(c.sliding_layers, Some(vec![true]));
    assert_eq!(
        (c.attn_logit_softcap, c.final_logit_softcap),
        (Some(50.0), Some(30.0))
    );
    assert_eq!((c.query_pre_attn_scalar, c.rope_local_theta), (None, None));
    assert!(c.post_norms && !c.qk_norm);
    assert_eq!(c.embed_scale, Some(4.0), "sqrt(16)");
    // With them: as written.
    let b = tiny_gemma2(&[
        ("gemma2.attention.sliding_window", GgufValue::U32(9)),
        ("gemma2.attn_logit_softcapping", GgufValue::F32(20.0)),
        ("gemma2.final_logit_softcapping", GgufValue::F32(15.0)),
    ]);
    let c = crate::formats::load(&b.write(dir.path(), "g2k.gguf"))
        .unwrap()
        .config;
    assert_eq!(c.sliding_window, Some(9));
    assert_eq!(
        (c.attn_logit_softcap, c.final_logit_softcap),
        (Some(20.0), Some(15.0))
    );
}

#[test]
fn gemma2_nonsense_caps_and_windows_are_config_errors() {
    let dir = tmp();
    for (key, value) in [
        ("gemma2.attn_logit_softcapping", GgufValue::F32(-50.0)),
        ("gemma2.attn_logit_softcapping", GgufValue::F32(f32::NAN)),
        ("gemma2.final_logit_softcapping", GgufValue::F32(0.0)),
        (
            "gemma2.final_logit_softcapping",
            GgufValue::F32(f32::INFINITY),
        ),
        ("gemma2.attention.sliding_window", GgufValue::U32(0)),
    ] {
        let b = tiny_gemma2(&[(key, value.clone())]);
        let err = crate::formats::load(&b.write(dir.path(), "bad.gguf")).unwrap_err();
        assert!(
            matches!(&err, Error::Config { field, .. } if field == key),
            "{key} = {value:?}: {err:?}"
        );
    }
}

/// The tiny Llama as llama.cpp's converter writes Phi-3: `phi3.*` keys, a fused `attn_qkv`
/// (q 16 + k 8 + v 8 rows), a fused `ffn_up` (gate 32 + up 32 rows, no `ffn_gate`), LongRoPE
/// factors (head_dim / 2 = 4 each), the original context and the attention factor.
/// Returns the builder, the fused QKV and the fused gate/up values.
fn tiny_phi3() -> (GgufBuilder, Vec<f32>, Vec<f32>) {
    let (mut b, _, _) = builder::tiny_llama();
    for (key, v) in b.kv.iter_mut() {
        if let Some(rest) = key.strip_prefix("llama.") {
            *key = format!("phi3.{rest}");
        }
        if key == "general.architecture" {
            *v = GgufValue::String("phi3".into());
        }
    }
    let qkv = builder::values(32 * 16, 41);
    let gate_up = builder::values(64 * 16, 42);
    let b = b
        .without_tensor("blk.0.attn_q.weight")
        .without_tensor("blk.0.attn_k.weight")
        .without_tensor("blk.0.attn_v.weight")
        .without_tensor("blk.0.ffn_gate.weight")
        .tensor_f32("blk.0.attn_qkv.weight", &[32, 16], &qkv)
        .tensor_f32("blk.0.ffn_up.weight", &[64, 16], &gate_up)
        .tensor_f32("rope_factors_long.weight", &[4], &[1.0, 2.0, 4.0, 8.0])
        .tensor_f32("rope_factors_short.weight", &[4], &[1.0, 1.5, 2.0, 2.5])
        .kv(
            "phi3.rope.scaling.original_context_length",
            GgufValue::U32(16),
        )
        .kv("phi3.rope.scaling.attn_factor", GgufValue::F32(1.25))
        .kv("phi3.attention.sliding_window", GgufValue::U32(7));
    (b, qkv, gate_up)
}

#[test]
fn phi3_splits_the_fused_tensors_and_reads_longrope() {
    let dir = tmp();
    let (b, qkv, gate_up) = tiny_phi3();
    let m = crate::formats::load(&b.write(dir.path(), "phi3.gguf")).unwrap();
    let c = &m.config;
    assert_eq!(c.arch, Arch::Phi3);
    let r = c.rope_longrope.as_ref().unwrap();
    assert_eq!(r.long_factor, vec![1.0, 2.0, 4.0, 8.0]);
    assert_eq!(r.short_factor, vec![1.0, 1.5, 2.0, 2.5]);
    assert_eq!(
        (r.original_max_position_embeddings, r.attention_factor),
        (16, 1.25)
    );
    assert_eq!(c.sliding_window, Some(7));
    // Rows as the file holds them (NEOX RoPE: no un-permute), views of the mapping.
    for (name, src, from, rows) in [
        (names::WQ, &qkv, 0, 16),
        (names::WK, &qkv, 16, 8),
        (names::WV, &qkv, 24, 8),
        (names::GATE, &gate_up, 0, 32),
        (names::UP, &gate_up, 32, 32),
    ] {
        let t = m.tensor(&names::layer(0, name)).unwrap();
        assert_eq!(t.shape, vec![rows, 16], "{name}");
        assert!(matches!(t.storage, Storage::Mapped { .. }), "{name}");
        assert_eq!(
            f32s(t.bytes()),
            src[from * 16..(from + rows) * 16],
            "{name}"
        );
    }
    // Without the attention factor key: derived as transformers does from 64 / 16.
    let b = tiny_phi3().0.without("phi3.rope.scaling.attn_factor");
    let m = crate::formats::load(&b.write(dir.path(), "phi3_af.gguf")).unwrap();
    let want = (1.0 + 4f64.ln() / 16f64.ln()).sqrt() as f32;
    assert_eq!(m.config.rope_longrope.unwrap().attention_factor, want);
    // sliding_window 0 is the converter's "none".
    let b = tiny_phi3()
        .0
        .kv("phi3.attention.sliding_window", GgufValue::U32(0));
    let m = crate::formats::load(&b.write(dir.path(), "phi3_nw.gguf")).unwrap();
    assert_eq!(m.config.sliding_window, None);
}

#[test]
fn phi3_broken_fused_tensors_and_factors_are_typed_errors() {
    let dir = tmp();
    let load = |b: GgufBuilder, name: &str| crate::formats::load(&b.write(dir.path(), name));
    // A fused QKV one row short, a fused gate/up of another width.
    let b = tiny_phi3().0.tensor_f32(
        "blk.0.attn_qkv.weight",
        &[31, 16],
        &builder::values(31 * 16, 1),
    );
    let err = load(b, "qkv.gguf").unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { tensor, expected, found, .. }
            if tensor == "blk.0.attn_qkv.weight" && *expected == [32, 16] && *found == [31, 16]),
        "{err:?}"
    );
    let b = tiny_phi3().0.tensor_f32(
        "blk.0.ffn_up.weight",
        &[48, 16],
        &builder::values(48 * 16, 1),
    );
    let err = load(b, "up.gguf").unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { tensor, expected, .. }
            if tensor == "blk.0.ffn_up.weight" && *expected == [64, 16]),
        "{err:?}"
    );
    // Factor lists: the wrong length, one without the other, a non-positive factor.
    let b = tiny_phi3()
        .0
        .tensor_f32("rope_factors_long.weight", &[3], &[1.0, 2.0, 3.0]);
    let err = load(b, "len.gguf").unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { tensor, .. } if tensor == "rope_factors_long.weight"),
        "{err:?}"
    );
    let b = tiny_phi3().0.without_tensor("rope_factors_short.weight");
    let err = load(b, "one.gguf").unwrap_err();
    assert!(
        matches!(&err, Error::MissingTensor { tensor, .. } if tensor == "rope_factors_short.weight"),
        "{err:?}"
    );
    let b = tiny_phi3()
        .0
        .tensor_f32("rope_factors_short.weight", &[4], &[1.0, 0.0, 2.0, 2.5]);
    let err = load(b, "zero.gguf").unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { detail, .. } if detail.contains("rope_factors_short")),
        "{err:?}"
    );
    let b = tiny_phi3()
        .0
        .without("phi3.rope.scaling.original_context_length");
    let err = load(b, "orig.gguf").unwrap_err();
    assert!(
        err.to_string()
            .contains("phi3.rope.scaling.original_context_length"),
        "{err}"
    );
}
