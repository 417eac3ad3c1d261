//! A minimal GGUF writer for tests: metadata of every type, tensors with raw bytes, any version
//! and alignment. Written from the format description (see `reader`), independently of it.

use std::path::{Path, PathBuf};

use super::types::{GgmlType, GgufValue};

pub struct GgufBuilder {
    pub version: u32,
    pub kv: Vec<(String, GgufValue)>,
    /// (name, shape outermost first, type, data)
    pub tensors: Vec<(String, Vec<usize>, GgmlType, Vec<u8>)>,
}

/// Where each section of a built file starts (for cutting files at chosen places).
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub metadata: usize,
    pub tensor_infos: usize,
    pub data: usize,
    pub end: usize,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(*x as u8),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::Array(a) => {
            out.extend_from_slice(&(a.elem_type() as u32).to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for i in 0..a.len() {
                put_value(out, &a.get(i).expect("i < len"));
            }
        }
    }
}

impl GgufBuilder {
    pub fn new() -> Self {
        GgufBuilder {
            version: 3,
            kv: Vec::new(),
            tensors: Vec::new(),
        }
    }

    pub fn kv(mut self, key: &str, v: GgufValue) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self.kv.push((key.to_string(), v));
        self
    }

    pub fn without(mut self, key: &str) -> Self {
        self.kv.retain(|(k, _)| k != key);
        self
    }

    pub fn tensor(mut self, name: &str, shape: &[usize], ty: GgmlType, data: Vec<u8>) -> Self {
        self.tensors.retain(|(n, ..)| n != name);
        self.tensors
            .push((name.to_string(), shape.to_vec(), ty, data));
        self
    }

    pub fn tensor_f32(self, name: &str, shape: &[usize], values: &[f32]) -> Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, shape, GgmlType::F32, data)
    }

    pub fn without_tensor(mut self, name: &str) -> Self {
        self.tensors.retain(|(n, ..)| n != name);
        self
    }

    fn alignment(&self) -> usize {
        self.kv
            .iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("general.alignment", GgufValue::U32(a)) => Some(*a as usize),
                _ => None,
            })
            .unwrap_or(32)
    }

    pub fn build(&self) -> (Vec<u8>, Layout) {
        let align = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.kv.len() as u64).to_le_bytes());
        let metadata = out.len();
        for (k, v) in &self.kv {
            put_str(&mut out, k);
            out.extend_from_slice(&(v.gguf_type() as u32).to_le_bytes());
            put_value(&mut out, v);
        }
        let tensor_infos = out.len();
        let mut offset = 0usize;
        for (name, shape, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
            for d in shape.iter().rev() {
                out.extend_from_slice(&(*d as u64).to_le_bytes());
            }
            out.extend_from_slice(&ty.0.to_le_bytes());
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            offset = (offset + data.len()).div_ceil(align) * align;
        }
        out.resize(out.len().div_ceil(align) * align, 0);
        let data_start = out.len();
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize(
                data_start + (out.len() - data_start).div_ceil(align) * align,
                0,
            );
        }
        let end = out.len();
        (
            out,
            Layout {
                metadata,
                tensor_infos,
                data: data_start,
                end,
            },
        )
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.build().0).unwrap();
        path
    }
}

/// Deterministic values in [-1, 1), never zero (xorshift).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            if v == 0.0 {
                0.5
            } else {
                v
            }
        })
        .collect()
}

/// numpy's `w.reshape(d0, d1, d2, cols).swapaxes(1, 2).reshape(w.shape)` on a row-major
/// `(d0·d1·d2, cols)` matrix: `out[a, k, j, :] = w[a, j, k, :]`.
pub fn swap_middle_axes(w: &[f32], d: [usize; 3], cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; w.len()];
    for a in 0..d[0] {
        for j in 0..d[1] {
            for k in 0..d[2] {
                let src = (a * d[1] + j) * d[2] + k; // row (a, j, k) of the (d0, d1, d2) view
                let dst = (a * d[2] + k) * d[1] + j; // row (a, k, j) of the (d0, d2, d1) view
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// llama.cpp's `LlamaModel.permute`: `w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2)`.
pub fn llama_cpp_permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    swap_middle_axes(w, [n_head, 2, rows / n_head / 2], cols)
}

/// transformers' `reverse_permute` (`LlamaTensorProcessor._reverse_permute_weights`):
/// `w.reshape(n_head, rows // n_head // 2, 2, *rest).swapaxes(2, 1)`.
pub fn transformers_reverse_permute(
    w: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
) -> Vec<f32> {
    swap_middle_axes(w, [n_head, rows / n_head / 2, 2], cols)
}

/// A tiny Llama as llama.cpp would write it (F32, Q/K rows permuted), without a tokenizer:
/// hidden 16, 2 heads of 8, 1 KV head, FFN 32, 1 layer, vocab 10, untied head. (Heads of 8
/// rows: llama.cpp's permutation is not its own inverse there, as it is for 4.)
/// Returns the builder and the un-permuted (model-order) Q and K weights.
pub fn tiny_llama() -> (GgufBuilder, Vec<f32>, Vec<f32>) {
    let (h, heads, kv, hd, ffn, vocab) = (16usize, 2usize, 1usize, 8usize, 32usize, 10usize);
    let u32v = |x: usize| GgufValue::U32(x as u32);
    let wq = values(heads * hd * h, 11); // (q_dim, hidden), model order
    let wk = values(kv * hd * h, 12); // (kv_dim, hidden), model order
    let permute = |w: &[f32], rows: usize, n_head: usize| llama_cpp_permute(w, rows, h, n_head);
    let b = GgufBuilder::new()
        .kv("general.architecture", GgufValue::String("llama".into()))
        .kv("llama.block_count", u32v(1))
        .kv("llama.context_length", u32v(64))
        .kv("llama.embedding_length", u32v(h))
        .kv("llama.feed_forward_length", u32v(ffn))
        .kv("llama.attention.head_count", u32v(heads))
        .kv("llama.attention.head_count_kv", u32v(kv))
        .kv(
            "llama.attention.layer_norm_rms_epsilon",
            GgufValue::F32(1e-5),
        )
        .kv("llama.rope.freq_base", GgufValue::F32(500000.0))
        .kv("llama.vocab_size", u32v(vocab))
        .tensor_f32("token_embd.weight", &[vocab, h], &values(vocab * h, 1))
        .tensor_f32("blk.0.attn_norm.weight", &[h], &values(h, 2))
        .tensor_f32(
            "blk.0.attn_q.weight",
            &[heads * hd, h],
            &permute(&wq, heads * hd, heads),
        )
        .tensor_f32(
            "blk.0.attn_k.weight",
            &[kv * hd, h],
            &permute(&wk, kv * hd, kv),
        )
        .tensor_f32(
            "blk.0.attn_v.weight",
            &[kv * hd, h],
            &values(kv * hd * h, 3),
        )
        .tensor_f32(
            "blk.0.attn_output.weight",
            &[h, heads * hd],
            &values(h * heads * hd, 4),
        )
        .tensor_f32("blk.0.ffn_norm.weight", &[h], &values(h, 5))
        .tensor_f32("blk.0.ffn_gate.weight", &[ffn, h], &values(ffn * h, 6))
        .tensor_f32("blk.0.ffn_up.weight", &[ffn, h], &values(ffn * h, 7))
        .tensor_f32("blk.0.ffn_down.weight", &[h, ffn], &values(h * ffn, 8))
        .tensor_f32("output_norm.weight", &[h], &values(h, 9))
        .tensor_f32("output.weight", &[vocab, h], &values(vocab * h, 10));
    (b, wq, wk)
}
