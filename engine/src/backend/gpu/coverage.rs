//! Kernel path coverage: which case reaches which branch of which kernel.
//!
//! Every kernel names its paths in its file (`enum ...Path`, the doc comment, `WF_PATH(slot,
//! path)` marks; see `kernels/common.h`). A backend built with `GpuOptions::coverage` compiles
//! the kernels with `-DWF_COVERAGE`: each mark then sets bit `path` of `wf_coverage[slot]`, a
//! global of its file's module, which [`GpuBackend::coverage_reset`] clears and
//! [`GpuBackend::coverage_hits`] reads back. The table below maps (file, slot, bit) to names;
//! a CPU test holds it to the sources, so a path added to a kernel without a name (or a name
//! without a mark) fails CI.

use super::vendor::DevicePtr;
use super::{bad, GpuBackend};
use crate::error::Result;
use crate::tensor::DType;

/// Slots per module (`WF_COVERAGE_SLOTS` in common.h).
pub const SLOTS: usize = 40;

/// One kernel's coverage slot in its file's module and its paths, bit `i` = `paths[i]` (the
/// order of the file's `enum ...Path`; an empty name: a path of the file this kernel cannot
/// take, by its contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPaths {
    pub kernel: &'static str,
    pub file: &'static str,
    pub slot: usize,
    pub paths: &'static [&'static str],
}

const VEC_TAIL_SCALAR: &[&str] = &["vec", "tail", "scalar"];
const ROPE: &[&str] = &["g4", "g1", "step"];
/// Q8_0 rows are whole blocks of 32 (half a multiple of 16) and the host passes 16-byte aligned
/// tensors: the vector path only.
const ROPE_Q8: &[&str] = &["g4", "", "step"];
/// Prefill rows never read the step's position (bit 2, attention_decode's).
const ATTENTION: &[&str] = &["keys", "empty_wave", "", "softcap"];
const ATTENTION_DECODE: &[&str] = &["keys", "empty_wave", "step", "softcap"];
/// The one-row kernels run every row in full (the rows launch's paths are the rows kernels');
/// the vector kernels have no tiles (bit 13, the matrix-instruction kernels' "tail").
const DECODE_ATTENTION: &[&str] = &[
    "keys", "new", "chunks", "single", "partial", "combine", "step", "write", "window", "softcap",
    "", "", "", "",
];
const DECODE_ATTENTION_ROWS: &[&str] = &[
    "keys",
    "new",
    "chunks",
    "single",
    "partial",
    "combine",
    "step",
    "write",
    "window",
    "softcap",
    "rows",
    "kv_only",
    "attend_only",
    "",
];
/// The matrix-instruction kernels: no sub-chunks (bit 2); a tile past the split's last key.
const DECODE_ATTENTION_MMA: &[&str] = &[
    "keys", "new", "", "single", "partial", "combine", "step", "write", "window", "softcap", "",
    "", "", "tail",
];
const DECODE_ATTENTION_MMA_ROWS: &[&str] = &[
    "keys",
    "new",
    "",
    "single",
    "partial",
    "combine",
    "step",
    "write",
    "window",
    "softcap",
    "rows",
    "kv_only",
    "attend_only",
    "tail",
];
const FLASH_ATTENTION: &[&str] = &["tile", "masked", "partial", "window", "softcap"];
const MAIN: &[&str] = &["main"];
/// The one-row form: groups (bit 11) a block past its first row group.
const GEMV: &[&str] = &[
    "vec", "tail", "scalar", "norm", "lds", "bias", "out0", "out1", "out2", "residual", "",
    "groups",
];
/// The SwiGLU form: the first five, gelu (bit 10; bias..residual are gemv's epilogue) and
/// groups.
const GEMV_SWIGLU: &[&str] = &[
    "vec", "tail", "scalar", "norm", "lds", "", "", "", "", "", "gelu", "groups",
];
/// The several-row forms: the staging kernel (every row's input; the norm), the products
/// (vectors only, by the host's choice: K a multiple of 8 on 16 bytes) and their epilogues.
const GEMV_STAGE: &[&str] = &["vec", "", "", "norm"];
const GEMV_ROWS: &[&str] = &[
    "vec", "", "", "", "", "bias", "out0", "out1", "out2", "residual",
];
const GEMV_SWIGLU_ROWS: &[&str] = &["vec", "", "", "", "", "", "", "", "", "", "gelu"];
/// The matrix-core forms (K a multiple of 32): the several-row forms' paths, and the inputs
/// staged in the kernel's LDS (lds) with the norm there (norm).
const GEMV_MMA: &[&str] = &[
    "vec", "", "", "norm", "lds", "bias", "out0", "out1", "out2", "residual",
];
const GEMV_SWIGLU_MMA: &[&str] = &["vec", "", "", "norm", "lds", "", "", "", "", "", "gelu"];
const QGEMV: &[&str] = &[
    "main", "tiles", "norm", "bias", "out0", "out1", "out2", "residual", "", "groups",
];
/// The SwiGLU form: main, tiles, norm, gelu (bit 8) and groups (bit 9).
const QGEMV_SWIGLU: &[&str] = &[
    "main", "tiles", "norm", "", "", "", "", "", "gelu", "groups",
];
const DEQUANT: &[&str] = &["rows", "ids", "f16"];

const fn k(
    kernel: &'static str,
    file: &'static str,
    slot: usize,
    paths: &'static [&'static str],
) -> KernelPaths {
    KernelPaths {
        kernel,
        file,
        slot,
        paths,
    }
}

/// Every ABI kernel with its paths.
pub const KERNEL_PATHS: &[KernelPaths] = &[
    k("embedding_f32", "embedding.hip", 0, VEC_TAIL_SCALAR),
    k("embedding_f16", "embedding.hip", 1, VEC_TAIL_SCALAR),
    k("embedding_bf16", "embedding.hip", 2, VEC_TAIL_SCALAR),
    k(
        "rms_norm",
        "rms_norm.hip",
        0,
        &["vec", "tail", "scalar", "residual", "accumulate"],
    ),
    k("rope_kv_write_f32", "rope.hip", 0, ROPE),
    k("rope_kv_write_f16", "rope.hip", 1, ROPE),
    k("rope_kv_write_bf16", "rope.hip", 2, ROPE),
    k("rope_kv_write_q8_0", "rope.hip", 3, ROPE_Q8),
    k("attention_f32", "attention.hip", 0, ATTENTION),
    k("attention_f16", "attention.hip", 1, ATTENTION),
    k("attention_bf16", "attention.hip", 2, ATTENTION),
    k("attention_q8_0", "attention.hip", 3, ATTENTION),
    k("attention_decode_f32", "attention.hip", 4, ATTENTION_DECODE),
    k("attention_decode_f16", "attention.hip", 5, ATTENTION_DECODE),
    k(
        "attention_decode_bf16",
        "attention.hip",
        6,
        ATTENTION_DECODE,
    ),
    k(
        "attention_decode_q8_0",
        "attention.hip",
        7,
        ATTENTION_DECODE,
    ),
    k(
        "decode_attention_f16",
        "decode_attention.hip",
        0,
        DECODE_ATTENTION,
    ),
    k(
        "decode_attention_bf16",
        "decode_attention.hip",
        1,
        DECODE_ATTENTION,
    ),
    k(
        "decode_attention_q8_0",
        "decode_attention.hip",
        2,
        DECODE_ATTENTION,
    ),
    k(
        "decode_attention_rows_f16",
        "decode_attention.hip",
        3,
        DECODE_ATTENTION_ROWS,
    ),
    k(
        "decode_attention_rows_bf16",
        "decode_attention.hip",
        4,
        DECODE_ATTENTION_ROWS,
    ),
    k(
        "decode_attention_rows_q8_0",
        "decode_attention.hip",
        5,
        DECODE_ATTENTION_ROWS,
    ),
    k(
        "decode_attention_mma_64_f16",
        "decode_attention.hip",
        6,
        DECODE_ATTENTION_MMA,
    ),
    k(
        "decode_attention_mma_64_bf16",
        "decode_attention.hip",
        7,
        DECODE_ATTENTION_MMA,
    ),
    k(
        "decode_attention_mma_128_f16",
        "decode_attention.hip",
        8,
        DECODE_ATTENTION_MMA,
    ),
    k(
        "decode_attention_mma_128_bf16",
        "decode_attention.hip",
        9,
        DECODE_ATTENTION_MMA,
    ),
    k(
        "decode_attention_mma_rows_64_f16",
        "decode_attention.hip",
        10,
        DECODE_ATTENTION_MMA_ROWS,
    ),
    k(
        "decode_attention_mma_rows_64_bf16",
        "decode_attention.hip",
        11,
        DECODE_ATTENTION_MMA_ROWS,
    ),
    k(
        "decode_attention_mma_rows_128_f16",
        "decode_attention.hip",
        12,
        DECODE_ATTENTION_MMA_ROWS,
    ),
    k(
        "decode_attention_mma_rows_128_bf16",
        "decode_attention.hip",
        13,
        DECODE_ATTENTION_MMA_ROWS,
    ),
    k(
        "flash_attention_64_f16",
        "flash_attention.hip",
        0,
        FLASH_ATTENTION,
    ),
    k(
        "flash_attention_64_bf16",
        "flash_attention.hip",
        1,
        FLASH_ATTENTION,
    ),
    k(
        "flash_attention_128_f16",
        "flash_attention.hip",
        2,
        FLASH_ATTENTION,
    ),
    k(
        "flash_attention_128_bf16",
        "flash_attention.hip",
        3,
        FLASH_ATTENTION,
    ),
    k(
        "flash_attention_64_q8_0",
        "flash_attention.hip",
        4,
        FLASH_ATTENTION,
    ),
    k(
        "flash_attention_128_q8_0",
        "flash_attention.hip",
        5,
        FLASH_ATTENTION,
    ),
    k(
        "flash_attention_256_f16",
        "flash_attention.hip",
        6,
        FLASH_ATTENTION,
    ),
    k(
        "flash_attention_256_bf16",
        "flash_attention.hip",
        7,
        FLASH_ATTENTION,
    ),
    k(
        "flash_attention_256_q8_0",
        "flash_attention.hip",
        8,
        FLASH_ATTENTION,
    ),
    k("swiglu", "elementwise.hip", 0, &["main", "gelu"]),
    k("add", "elementwise.hip", 1, MAIN),
    k("bias_add", "elementwise.hip", 2, MAIN),
    k("softcap", "elementwise.hip", 3, MAIN),
    k("convert_f32_to_f16", "convert.hip", 1, MAIN),
    k("convert_f32_to_bf16", "convert.hip", 2, MAIN),
    k(
        "sync_barrier_probe",
        "sync.hip",
        0,
        &["counted", "generation", "none"],
    ),
    k("sync_chain_probe", "sync.hip", 1, &["", "", "", "main"]),
    k(
        "argmax",
        "sampling.hip",
        0,
        &["vec", "tail", "scalar", "invalid"],
    ),
    k("gemv_f16", "gemv.hip", 0, GEMV),
    k("gemv_bf16", "gemv.hip", 1, GEMV),
    k("gemv_swiglu_f16", "gemv.hip", 2, GEMV_SWIGLU),
    k("gemv_swiglu_bf16", "gemv.hip", 3, GEMV_SWIGLU),
    k("gemv_stage_f16", "gemv.hip", 4, GEMV_STAGE),
    k("gemv_stage_bf16", "gemv.hip", 5, GEMV_STAGE),
    k("gemv_rows_f16", "gemv.hip", 6, GEMV_ROWS),
    k("gemv_rows_bf16", "gemv.hip", 7, GEMV_ROWS),
    k("gemv_swiglu_rows_f16", "gemv.hip", 8, GEMV_SWIGLU_ROWS),
    k("gemv_swiglu_rows_bf16", "gemv.hip", 9, GEMV_SWIGLU_ROWS),
    k("gemv_mma_f16", "gemv.hip", 10, GEMV_MMA),
    k("gemv_mma_bf16", "gemv.hip", 11, GEMV_MMA),
    k("gemv_swiglu_mma_f16", "gemv.hip", 12, GEMV_SWIGLU_MMA),
    k("gemv_swiglu_mma_bf16", "gemv.hip", 13, GEMV_SWIGLU_MMA),
    // the persistent chain (bench --sync): gemv_bf16's body, no epilogue paths
    k(
        "gemv_chain_bf16",
        "gemv.hip",
        14,
        &[
            "vec", "tail", "scalar", "norm", "lds", "", "", "", "", "", "", "groups",
        ],
    ),
    // qgemv.hip: slot 3·type + form, types in DType::WEIGHT_BLOCKS' order
    k("qgemv_q8_0", "qgemv.hip", 0, QGEMV),
    k("qgemv_swiglu_q8_0", "qgemv.hip", 1, QGEMV_SWIGLU),
    k("dequant_q8_0", "qgemv.hip", 2, DEQUANT),
    k("qgemv_q4_0", "qgemv.hip", 3, QGEMV),
    k("qgemv_swiglu_q4_0", "qgemv.hip", 4, QGEMV_SWIGLU),
    k("dequant_q4_0", "qgemv.hip", 5, DEQUANT),
    k("qgemv_q4_1", "qgemv.hip", 6, QGEMV),
    k("qgemv_swiglu_q4_1", "qgemv.hip", 7, QGEMV_SWIGLU),
    k("dequant_q4_1", "qgemv.hip", 8, DEQUANT),
    k("qgemv_q5_0", "qgemv.hip", 9, QGEMV),
    k("qgemv_swiglu_q5_0", "qgemv.hip", 10, QGEMV_SWIGLU),
    k("dequant_q5_0", "qgemv.hip", 11, DEQUANT),
    k("qgemv_q5_1", "qgemv.hip", 12, QGEMV),
    k("qgemv_swiglu_q5_1", "qgemv.hip", 13, QGEMV_SWIGLU),
    k("dequant_q5_1", "qgemv.hip", 14, DEQUANT),
    k("qgemv_q4_k", "qgemv.hip", 15, QGEMV),
    k("qgemv_swiglu_q4_k", "qgemv.hip", 16, QGEMV_SWIGLU),
    k("dequant_q4_k", "qgemv.hip", 17, DEQUANT),
    k("qgemv_q5_k", "qgemv.hip", 18, QGEMV),
    k("qgemv_swiglu_q5_k", "qgemv.hip", 19, QGEMV_SWIGLU),
    k("dequant_q5_k", "qgemv.hip", 20, DEQUANT),
    k("qgemv_q6_k", "qgemv.hip", 21, QGEMV),
    k("qgemv_swiglu_q6_k", "qgemv.hip", 22, QGEMV_SWIGLU),
    k("dequant_q6_k", "qgemv.hip", 23, DEQUANT),
    // qgemv.hip's 8-bit-activation forms: slot 24 + 2·type + form
    k("qgemv_q8a_q8_0", "qgemv.hip", 24, QGEMV),
    k("qgemv_swiglu_q8a_q8_0", "qgemv.hip", 25, QGEMV_SWIGLU),
    k("qgemv_q8a_q4_0", "qgemv.hip", 26, QGEMV),
    k("qgemv_swiglu_q8a_q4_0", "qgemv.hip", 27, QGEMV_SWIGLU),
    k("qgemv_q8a_q4_1", "qgemv.hip", 28, QGEMV),
    k("qgemv_swiglu_q8a_q4_1", "qgemv.hip", 29, QGEMV_SWIGLU),
    k("qgemv_q8a_q5_0", "qgemv.hip", 30, QGEMV),
    k("qgemv_swiglu_q8a_q5_0", "qgemv.hip", 31, QGEMV_SWIGLU),
    k("qgemv_q8a_q5_1", "qgemv.hip", 32, QGEMV),
    k("qgemv_swiglu_q8a_q5_1", "qgemv.hip", 33, QGEMV_SWIGLU),
    k("qgemv_q8a_q4_k", "qgemv.hip", 34, QGEMV),
    k("qgemv_swiglu_q8a_q4_k", "qgemv.hip", 35, QGEMV_SWIGLU),
    k("qgemv_q8a_q5_k", "qgemv.hip", 36, QGEMV),
    k("qgemv_swiglu_q8a_q5_k", "qgemv.hip", 37, QGEMV_SWIGLU),
    k("qgemv_q8a_q6_k", "qgemv.hip", 38, QGEMV),
    k("qgemv_swiglu_q8a_q6_k", "qgemv.hip", 39, QGEMV_SWIGLU),
    k(
        "sample_pick",
        "sampling.hip",
        1,
        &[
            "unsamplable",
            "penalty_inf",
            "greedy",
            "top_k",
            "softmax",
            "top_p_lds",
            "top_p_global",
            "min_p",
            "top_k_rank",
            "top_p_rank",
            "candidates_lds",
            "candidates_global",
        ],
    ),
    k(
        "sample_prep",
        "sampling.hip",
        2,
        &["penalty", "work", "counts"],
    ),
    k(
        "sample_topk",
        "sampling.hip",
        3,
        &["stop", "chunk_top_k", "all", "bound"],
    ),
];

/// A path of a kernel: `("embedding_f16", "tail")`.
pub type Path = (&'static str, &'static str);

/// Every (kernel, path) of the table.
pub fn all_paths() -> Vec<Path> {
    KERNEL_PATHS
        .iter()
        .flat_map(|k| {
            k.paths
                .iter()
                .filter(|p| !p.is_empty())
                .map(move |p| (k.kernel, *p))
        })
        .collect()
}

/// The paths a run on `b` can reach: [`all_paths`] but the quantized GEMVs of the activation
/// form `b` does not take for their type (one form a type, `GpuBackend::qgemv_q8`: a run
/// checks those, `WAVEFRONT_QGEMV_Q8=1` and `=0` runs the rest).
pub fn reachable_paths(b: &GpuBackend) -> Vec<Path> {
    all_paths()
        .into_iter()
        .filter(|(kernel, _)| {
            let weight = DType::WEIGHT_BLOCKS
                .into_iter()
                .find(|d| kernel.ends_with(&format!("_{}", d.name().to_ascii_lowercase())));
            match weight {
                Some(w) if kernel.starts_with("qgemv_") => {
                    kernel.contains("_q8a_") == b.qgemv_q8(w)
                }
                _ => true,
            }
        })
        .collect()
}

/// The paths set in `words` (one module's `wf_coverage`) of `file`.
pub fn decode(file: &str, words: &[u32; SLOTS]) -> Vec<Path> {
    KERNEL_PATHS
        .iter()
        .filter(|k| k.file == file)
        .flat_map(|k| {
            k.paths
                .iter()
                .enumerate()
                .filter(move |(bit, p)| words[k.slot] & (1 << bit) != 0 && !p.is_empty())
                .map(move |(_, p)| (k.kernel, *p))
        })
        .collect()
}

impl GpuBackend {
    /// `wf_coverage` of every module: (file, device address).
    fn coverage_globals(&self) -> Result<Vec<(String, DevicePtr)>> {
        if !self.coverage {
            return Err(bad(
                "coverage",
                "this backend's kernels were built without -DWF_COVERAGE".into(),
            ));
        }
        let mut out = Vec::new();
        for (file, m) in &self.modules {
            match self.vendor.module_global(*m, "wf_coverage")? {
                Some((ptr, bytes)) if bytes >= SLOTS * 4 => out.push((file.clone(), ptr)),
                Some((_, bytes)) => {
                    return Err(bad(
                        "coverage",
                        format!(
                            "{file}: wf_coverage has {bytes} bytes, expected {}",
                            SLOTS * 4
                        ),
                    ))
                }
                None => {
                    return Err(bad(
                        "coverage",
                        format!("{file}: no wf_coverage global in the coverage build"),
                    ))
                }
            }
        }
        Ok(out)
    }

    /// Clears every module's path bits (queued on the stream).
    pub fn coverage_reset(&self) -> Result<()> {
        for (_, ptr) in self.coverage_globals()? {
            self.vendor.memset(ptr, 0, SLOTS * 4)?;
        }
        Ok(())
    }

    /// The paths reached since the last reset (waits for the stream).
    pub fn coverage_hits(&self) -> Result<Vec<Path>> {
        let mut hits = Vec::new();
        for (file, ptr) in self.coverage_globals()? {
            let mut bytes = [0u8; SLOTS * 4];
            self.vendor.dtoh(&mut bytes, ptr)?;
            let mut words = [0u32; SLOTS];
            for (w, c) in words.iter_mut().zip(bytes.chunks_exact(4)) {
                *w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
            hits.extend(decode(&file, &words));
        }
        Ok(hits)
    }

    /// Whether the kernels carry the coverage marks.
    pub fn has_coverage(&self) -> bool {
        self.coverage
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::gpu::module::KERNEL_SOURCES;
    use crate::backend::gpu::ABI_KERNELS;

    /// Every `enum XPath { PATH_A, PATH_B };` of a kernel source: `[["a", "b"]]` (a file with
    /// several kernels may give each its own enum).
    fn enum_paths(src: &str) -> Vec<Vec<String>> {
        src.match_indices("Path {")
            .map(|(start, _)| {
                let body = &src[start + 6..];
                let body = &body[..body.find('}').expect("the enum closes")];
                body.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.strip_prefix("PATH_").expect("PATH_ names").to_lowercase())
                    .collect()
            })
            .collect()
    }

    /// The PATH_ names in every `WF_PATH(…)` of a source.
    fn marked(src: &str) -> Vec<String> {
        src.match_indices("WF_PATH(")
            .map(|(i, _)| {
                let rest = &src[i..];
                &rest[..rest.find(";").expect("a mark ends its statement")]
            })
            .flat_map(|call| {
                call.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .filter_map(|w| w.strip_prefix("PATH_"))
                    .map(str::to_lowercase)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn the_table_matches_the_kernel_sources() {
        for name in ABI_KERNELS {
            let n = KERNEL_PATHS.iter().filter(|k| k.kernel == name).count();
            assert_eq!(n, 1, "{name}: {n} entries in KERNEL_PATHS");
        }
        assert_eq!(KERNEL_PATHS.len(), ABI_KERNELS.len());
        for (file, src) in KERNEL_SOURCES {
            let enums = enum_paths(src);
            assert!(!enums.is_empty(), "{file}: no `enum ...Path`");
            let declared: Vec<String> = enums.concat();
            let mut slots = std::collections::HashSet::new();
            for k in KERNEL_PATHS.iter().filter(|k| k.file == *file) {
                assert!(k.slot < SLOTS, "{}: slot {}", k.kernel, k.slot);
                assert!(slots.insert(k.slot), "{file}: slot {} used twice", k.slot);
                assert!(
                    src.contains(&format!("{}(", k.kernel)),
                    "{}: not in {file}",
                    k.kernel
                );
                // bit i is the i-th name of one of the file's enums (or empty: a path the kernel
                // cannot take); a kernel may use a prefix
                assert!(
                    enums.iter().any(|e| e.len() >= k.paths.len()
                        && k.paths.iter().zip(e).all(|(p, n)| p.is_empty() || p == n)),
                    "{}: paths {:?} are no prefix of an enum of {file} ({enums:?})",
                    k.kernel,
                    k.paths
                );
            }
            let marks = marked(src);
            for p in &declared {
                assert!(
                    src.contains(&format!("//   {p}:")),
                    "{file}: path {p} is not in the doc comment"
                );
                assert!(marks.contains(p), "{file}: path {p} is never marked");
                let listed = KERNEL_PATHS
                    .iter()
                    .any(|k| k.file == *file && k.paths.contains(&p.as_str()));
                assert!(listed, "{file}: path {p} is in no KERNEL_PATHS entry");
            }
            for m in &marks {
                assert!(declared.contains(m), "{file}: WF_PATH of undeclared {m}");
            }
        }
    }

    #[test]
    fn bits_decode_to_names() {
        let mut w = [0u32; SLOTS];
        w[1] = 0b101; // embedding_f16: vec and scalar
        w[2] = 0b010; // embedding_bf16: tail
        assert_eq!(
            decode("embedding.hip", &w),
            [
                ("embedding_f16", "vec"),
                ("embedding_f16", "scalar"),
                ("embedding_bf16", "tail")
            ]
        );
        assert!(decode("rope.hip", &[0; SLOTS]).is_empty());
        // rope_kv_write_q8_0 (slot 3) has no g1 path: its bit names nothing
        let mut r = [0u32; SLOTS];
        r[3] = 0b111;
        assert_eq!(
            decode("rope.hip", &r),
            [("rope_kv_write_q8_0", "g4"), ("rope_kv_write_q8_0", "step")]
        );
        assert_eq!(
            all_paths().len(),
            3 * 3
                + 5 // rms_norm: vec, tail, scalar, residual, accumulate
                + 3 * 3
                + 2
                + 4 * 3
                + 4 * 4
                + 3 * 10
                + 3 * 13 // decode_attention_rows_{f16,bf16,q8_0}
                + 4 * 10 // decode_attention_mma_{64,128}_{f16,bf16}
                + 4 * 13 // decode_attention_mma_rows_{64,128}_{f16,bf16}
                + 9 * 5 // flash_attention_{64,128,256}_{f16,bf16,q8_0}
                + (2 + 1 + 1 + 1)
                + 2
                + 4
                + 2 * 11 // gemv (groups)
                + 2 * 7 // gemv_swiglu (groups)
                + 2 * (2 + 6 + 2) // several rows: stage, rows, swiglu_rows
                + 2 * (8 + 4) // matrix cores: mma, swiglu_mma
                + 8 * (9 + 5 + 3) // qgemv, qgemv_swiglu (groups in each), dequant
                + 8 * (9 + 5) // the 8-bit-activation forms
                + 12
                + 3
                + 4
                + (3 + 1) // sync_barrier_probe, sync_chain_probe
                + 6 // gemv_chain_bf16
        );
    }
}
