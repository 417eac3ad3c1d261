//! Block-quantized weights on the device: the "split" layout of `kernels/qgemv.hip`.
//!
//! A GGUF block (e.g. Q4_0: `d: f16, qs: [u8; 16]`) is cut into its quant bytes (a multiple of
//! 16, so the kernels read them with 16-byte loads) and the rest (scales and minimums, in the
//! block's byte order). A tensor of `nb` blocks is stored as `qa` (the quant bytes of every
//! block, block after block) then `sa` (the rest of every block) at `nb · QB`, which is on 16
//! bytes. The bytes are the file's, moved: the tensor takes exactly the file's size.
//!
//! A stack (QKV, gate/up) is one allocation of segments, one per run of consecutive parts of
//! the same type (a Q4_0 file's QKV: one segment, so one launch of the fused kernels; a Q4_K_M
//! file's Q4_K query and key with its Q6_K value: two), each in the split layout of its type
//! and starting on 256 bytes.

use crate::tensor::DType;

/// `(first quant byte, quant bytes)` within a block of `dtype`, or `None` for a type the GPU
/// does not hold natively. The rest of the block (before and after) is its scale part.
pub fn quant_range(dtype: DType) -> Option<(usize, usize)> {
    Some(match dtype {
        DType::Q8_0 => (2, 32),
        DType::Q4_0 => (2, 16),
        DType::Q4_1 => (4, 16),
        DType::Q5_0 => (6, 16),
        DType::Q5_1 => (8, 16),
        DType::Q4_K => (16, 128),
        DType::Q5_K => (16, 160),
        DType::Q6_K => (0, 192),
        _ => return None,
    })
}

/// One part of a device tensor of block type `dtype`: `elems` elements whose quant bytes start
/// `qa` bytes and whose scale bytes start `sa` bytes into the allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantSeg {
    pub dtype: DType,
    pub elems: usize,
    pub qa: u64,
    pub sa: u64,
}

/// Where segments start within an allocation (256 bytes: any vector load is aligned).
const SEG_ALIGN: usize = 256;

/// `bytes` (whole blocks of `dtype`) in the split layout, and its segment at offset `at`.
pub fn split(dtype: DType, bytes: &[u8], at: usize) -> Option<(Vec<u8>, QuantSeg)> {
    let (q0, qb) = quant_range(dtype)?;
    let bb = dtype.block_bytes();
    if !bytes.len().is_multiple_of(bb) {
        return None;
    }
    let nb = bytes.len() / bb;
    let sb = bb - qb;
    let mut out = vec![0u8; bytes.len()];
    let (qa, sa) = out.split_at_mut(nb * qb);
    for (i, b) in bytes.chunks_exact(bb).enumerate() {
        qa[i * qb..(i + 1) * qb].copy_from_slice(&b[q0..q0 + qb]);
        let s = &mut sa[i * sb..(i + 1) * sb];
        s[..q0].copy_from_slice(&b[..q0]);
        s[q0..].copy_from_slice(&b[q0 + qb..]);
    }
    let seg = QuantSeg {
        dtype,
        elems: nb * dtype.block_elems(),
        qa: at as u64,
        sa: (at + nb * qb) as u64,
    };
    Some((out, seg))
}

/// The file's bytes back from a segment's split bytes (`split`'s inverse).
pub fn join(dtype: DType, split_bytes: &[u8]) -> Option<Vec<u8>> {
    let (q0, qb) = quant_range(dtype)?;
    let bb = dtype.block_bytes();
    if !split_bytes.len().is_multiple_of(bb) {
        return None;
    }
    let nb = split_bytes.len() / bb;
    let sb = bb - qb;
    let (qa, sa) = split_bytes.split_at(nb * qb);
    let mut out = Vec::with_capacity(split_bytes.len());
    for i in 0..nb {
        let s = &sa[i * sb..(i + 1) * sb];
        out.extend_from_slice(&s[..q0]);
        out.extend_from_slice(&qa[i * qb..(i + 1) * qb]);
        out.extend_from_slice(&s[q0..]);
    }
    Some(out)
}

/// Parts (each whole blocks of its type) laid out as consecutive segments, one per run of
/// consecutive parts of one type (the run's blocks in order: the parts' rows stacked, as one
/// upload of the stacked matrix would hold them): the allocation's bytes and the segments.
/// `None` when a part is not whole blocks of a held type.
pub fn stack(parts: &[(DType, &[u8])]) -> Option<(Vec<u8>, Vec<QuantSeg>)> {
    let whole = |&(dtype, b): &(DType, &[u8])| {
        quant_range(dtype).is_some() && b.len().is_multiple_of(dtype.block_bytes())
    };
    if !parts.iter().all(whole) {
        return None;
    }
    let mut bytes = Vec::new();
    let mut segs = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let dtype = parts[i].0;
        let run = parts[i..].iter().take_while(|p| p.0 == dtype).count();
        let joined: std::borrow::Cow<[u8]> = if run == 1 {
            parts[i].1.into()
        } else {
            parts[i..i + run]
                .iter()
                .flat_map(|p| p.1.iter().copied())
                .collect::<Vec<u8>>()
                .into()
        };
        bytes.resize(bytes.len().next_multiple_of(SEG_ALIGN), 0);
        let (s, seg) = split(dtype, &joined, bytes.len())?;
        bytes.extend_from_slice(&s);
        segs.push(seg);
        i += run;
    }
    Some((bytes, segs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::quants;

    #[test]
    fn split_moves_every_byte_and_join_restores_the_file() {
        for dtype in DType::WEIGHT_BLOCKS {
            let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ dtype.block_bytes() as u64;
            let mut next = || {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                state >> 11
            };
            let file = quants::random_blocks(dtype, 5, 1.0, &mut next);
            let (s, seg) = split(dtype, &file, 512).unwrap();
            assert_eq!(s.len(), file.len(), "{dtype}: the file's size");
            let (q0, qb) = quant_range(dtype).unwrap();
            assert_eq!(qb % 16, 0, "{dtype}: quant bytes are 16-byte vectors");
            assert_eq!(seg.qa, 512);
            assert_eq!(seg.sa, 512 + 5 * qb as u64);
            assert_eq!(
                seg.sa % 16,
                0,
                "{dtype}: the scale array starts on 16 bytes"
            );
            assert_eq!(seg.elems, 5 * dtype.block_elems());
            // Block 3's quant bytes sit at 3·QB, its scale bytes at sa + 3·SB.
            let bb = dtype.block_bytes();
            let b3 = &file[3 * bb..4 * bb];
            assert_eq!(&s[3 * qb..4 * qb], &b3[q0..q0 + qb], "{dtype}");
            let sb = bb - qb;
            let rest: Vec<u8> = b3[..q0].iter().chain(&b3[q0 + qb..]).copied().collect();
            assert_eq!(&s[5 * qb + 3 * sb..5 * qb + 4 * sb], &rest[..], "{dtype}");
            assert_eq!(join(dtype, &s).unwrap(), file, "{dtype}");
        }
        assert!(split(DType::BF16, &[0; 4], 0).is_none());
        assert!(
            split(DType::Q4_0, &[0; 17], 0).is_none(),
            "not whole blocks"
        );
    }

    #[test]
    fn a_stack_of_one_type_is_one_segment_as_the_stacked_matrix_uploaded_whole() {
        // A Q4_0 file's QKV: three parts, one segment whose bytes are the split of the three
        // parts' blocks in order (what `upload` of the stacked matrix holds), so the GEMVs
        // take the fused launches (one qgemv for QKV, qgemv_swiglu for gate/up).
        let bb = DType::Q4_0.block_bytes();
        let q: Vec<u8> = (0..4 * bb).map(|i| (i * 7 + 1) as u8).collect();
        let k: Vec<u8> = (0..bb).map(|i| (i * 3 + 2) as u8).collect();
        let v: Vec<u8> = (0..bb).map(|i| (i * 5 + 3) as u8).collect();
        let (bytes, segs) =
            stack(&[(DType::Q4_0, &q), (DType::Q4_0, &k), (DType::Q4_0, &v)]).unwrap();
        let whole: Vec<u8> = [q.as_slice(), &k, &v].concat();
        let (want, seg) = split(DType::Q4_0, &whole, 0).unwrap();
        assert_eq!(segs, vec![seg]);
        assert_eq!(bytes, want);
        // A mixed stack keeps a segment per run: [Q4_K, Q4_K] then [Q6_K].
        let a = vec![1u8; 2 * DType::Q4_K.block_bytes()];
        let c = vec![3u8; DType::Q6_K.block_bytes()];
        let (_, segs) = stack(&[(DType::Q4_K, &a), (DType::Q4_K, &a), (DType::Q6_K, &c)]).unwrap();
        let kinds: Vec<(DType, usize)> = segs.iter().map(|s| (s.dtype, s.elems)).collect();
        assert_eq!(kinds, vec![(DType::Q4_K, 4 * 256), (DType::Q6_K, 256)]);
        // Each part must be whole blocks, even where the run's total would be.
        let half = vec![0u8; bb / 2];
        assert!(stack(&[(DType::Q4_0, &half), (DType::Q4_0, &half)]).is_none());
    }

    #[test]
    fn a_stack_puts_each_part_on_256_bytes() {
        let a = vec![1u8; 3 * DType::Q4_K.block_bytes()];
        let b = vec![2u8; 2 * DType::Q6_K.block_bytes()];
        let (bytes, segs) = stack(&[(DType::Q4_K, &a), (DType::Q6_K, &b)]).unwrap();
        assert_eq!(segs[0].qa, 0);
        assert_eq!(segs[1].qa, (a.len() as u64).next_multiple_of(256));
        assert_eq!(segs[1].dtype, DType::Q6_K);
        assert_eq!(segs[1].elems, 512);
        assert_eq!(bytes.len(), segs[1].qa as usize + b.len());
    }
}
