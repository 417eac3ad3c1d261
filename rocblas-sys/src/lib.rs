//! rocBLAS, loaded at run time.
//!
//! No Rust binding of rocBLAS builds without ROCm, so Wavefront owns this small one: the types,
//! enums and the few functions the GPU backend calls (handle, stream, `gemm_ex`,
//! `gemm_strided_batched_ex`), resolved from `librocblas` with `libloading` when [`RocBlas::load`]
//! runs. Nothing here links against ROCm: a binary built anywhere starts without it, and a
//! missing library or symbol is a [`LoadError`], never a crash.
//!
//! Declarations follow `rocblas-types.h` / `rocblas-functions.h` of rocBLAS 4 (ROCm 6) and 5
//! (ROCm 7), whose `rocblas_gemm_ex` signature and enum values are the same. `rocblas_int` is
//! the default LP64 `int32_t`.

#![allow(non_camel_case_types, non_upper_case_globals)]

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};

/// Opaque `rocblas_handle`.
pub type rocblas_handle = *mut c_void;
/// `hipStream_t` (opaque pointer; null is the default stream).
pub type hipStream_t = *mut c_void;
pub type rocblas_int = i32;
pub type rocblas_stride = i64;
pub type rocblas_status = i32;
pub type rocblas_operation = u32;
pub type rocblas_datatype = u32;
pub type rocblas_gemm_algo = u32;

pub const rocblas_operation_none: rocblas_operation = 111;
pub const rocblas_operation_transpose: rocblas_operation = 112;
pub const rocblas_operation_conjugate_transpose: rocblas_operation = 113;

pub const rocblas_datatype_f16_r: rocblas_datatype = 150;
pub const rocblas_datatype_f32_r: rocblas_datatype = 151;
pub const rocblas_datatype_f64_r: rocblas_datatype = 152;
pub const rocblas_datatype_i8_r: rocblas_datatype = 160;
pub const rocblas_datatype_i32_r: rocblas_datatype = 162;
pub const rocblas_datatype_bf16_r: rocblas_datatype = 168;

pub const rocblas_gemm_algo_standard: rocblas_gemm_algo = 0;
/// `rocblas_gemm_flags_none`.
pub const rocblas_gemm_flags_none: u32 = 0;

/// `rocblas_status` values, in the order of `rocblas-types.h`.
pub const STATUS_NAMES: [&str; 16] = [
    "rocblas_status_success",
    "rocblas_status_invalid_handle",
    "rocblas_status_not_implemented",
    "rocblas_status_invalid_pointer",
    "rocblas_status_invalid_size",
    "rocblas_status_memory_error",
    "rocblas_status_internal_error",
    "rocblas_status_perf_degraded",
    "rocblas_status_size_query_mismatch",
    "rocblas_status_size_increased",
    "rocblas_status_size_unchanged",
    "rocblas_status_invalid_value",
    "rocblas_status_continue",
    "rocblas_status_check_numerics_fail",
    "rocblas_status_excluded_from_build",
    "rocblas_status_arch_mismatch",
];

pub const rocblas_status_success: rocblas_status = 0;

/// The name of a status code, e.g. `rocblas_status_invalid_size`; unknown codes read
/// `rocblas_status_<code>` so the number is never lost.
pub fn status_name(status: rocblas_status) -> String {
    usize::try_from(status)
        .ok()
        .and_then(|i| STATUS_NAMES.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("rocblas_status_{status}"))
}

/// Why librocblas could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// No candidate file name loaded; `tried` holds each candidate with the loader's message.
    #[error("librocblas not found (tried: {})", .tried.join("; "))]
    Library { tried: Vec<String> },
    /// The library loaded but lacks a function this crate needs.
    #[error("{library}: missing symbol `{symbol}`: {detail}")]
    Symbol {
        library: String,
        symbol: &'static str,
        detail: String,
    },
}

/// A failed rocBLAS call: the function and its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{call}: {} ({status})", status_name(*.status))]
pub struct CallError {
    pub call: &'static str,
    pub status: rocblas_status,
}

fn check(call: &'static str, status: rocblas_status) -> Result<(), CallError> {
    if status == rocblas_status_success {
        Ok(())
    } else {
        Err(CallError { call, status })
    }
}

type CreateHandle = unsafe extern "C" fn(*mut rocblas_handle) -> rocblas_status;
type DestroyHandle = unsafe extern "C" fn(rocblas_handle) -> rocblas_status;
type SetStream = unsafe extern "C" fn(rocblas_handle, hipStream_t) -> rocblas_status;
type GemmEx = unsafe extern "C" fn(
    rocblas_handle,
    rocblas_operation,
    rocblas_operation,
    rocblas_int,
    rocblas_int,
    rocblas_int,
    *const c_void,
    *const c_void,
    rocblas_datatype,
    rocblas_int,
    *const c_void,
    rocblas_datatype,
    rocblas_int,
    *const c_void,
    *const c_void,
    rocblas_datatype,
    rocblas_int,
    *mut c_void,
    rocblas_datatype,
    rocblas_int,
    rocblas_datatype,
    rocblas_gemm_algo,
    i32,
    u32,
) -> rocblas_status;
type GemmStridedBatchedEx = unsafe extern "C" fn(
    rocblas_handle,
    rocblas_operation,
    rocblas_operation,
    rocblas_int,
    rocblas_int,
    rocblas_int,
    *const c_void,
    *const c_void,
    rocblas_datatype,
    rocblas_int,
    rocblas_stride,
    *const c_void,
    rocblas_datatype,
    rocblas_int,
    rocblas_stride,
    *const c_void,
    *const c_void,
    rocblas_datatype,
    rocblas_int,
    rocblas_stride,
    *mut c_void,
    rocblas_datatype,
    rocblas_int,
    rocblas_stride,
    rocblas_int,
    rocblas_datatype,
    rocblas_gemm_algo,
    i32,
    u32,
) -> rocblas_status;
type StatusToString = unsafe extern "C" fn(rocblas_status) -> *const c_char;

/// librocblas with its functions resolved. Keep it alive while any handle is in use.
pub struct RocBlas {
    // Field order: the function pointers are plain copies; the library is dropped last.
    create_handle: CreateHandle,
    destroy_handle: DestroyHandle,
    set_stream: SetStream,
    gemm_ex: GemmEx,
    gemm_strided_batched_ex: GemmStridedBatchedEx,
    status_to_string: Option<StatusToString>,
    path: String,
    _lib: libloading::Library,
}

impl std::fmt::Debug for RocBlas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocBlas").field("path", &self.path).finish()
    }
}

/// The file names tried by [`RocBlas::load`], in order: `$WAVEFRONT_ROCBLAS_LIB` alone when set;
/// else `$ROCM_PATH/lib`, `$HIP_PATH/lib` and `/opt/rocm/lib` (each with the unversioned name,
/// the sonames of rocBLAS 5, 4 and 3, and `librocblas.so.0`, the soname Debian trixie and
/// Ubuntu 24.04 give their packaged rocBLAS), then the bare names for the loader's own search
/// path.
pub fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("WAVEFRONT_ROCBLAS_LIB") {
        return vec![PathBuf::from(p)];
    }
    const NAMES: [&str; 5] = [
        "librocblas.so",
        "librocblas.so.5",
        "librocblas.so.4",
        "librocblas.so.3",
        "librocblas.so.0",
    ];
    let mut dirs: Vec<PathBuf> = ["ROCM_PATH", "HIP_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|p| Path::new(&p).join("lib"))
        .collect();
    dirs.push(PathBuf::from("/opt/rocm/lib"));
    let mut out: Vec<PathBuf> = dirs
        .iter()
        .flat_map(|d| NAMES.iter().map(move |n| d.join(n)))
        .collect();
    out.extend(NAMES.iter().map(PathBuf::from));
    out
}

impl RocBlas {
    /// Loads the first of [`candidates`] that opens.
    pub fn load() -> Result<Self, LoadError> {
        Self::load_from(&candidates())
    }

    /// Loads the first of `names` (paths or bare file names) that opens and resolves every
    /// function this crate declares.
    pub fn load_from<P: AsRef<Path>>(names: &[P]) -> Result<Self, LoadError> {
        let mut tried = Vec::new();
        for name in names {
            let name = name.as_ref();
            // SAFETY: loading librocblas runs its initializers, which have no preconditions.
            match unsafe { libloading::Library::new(name) } {
                Ok(lib) => return Self::resolve(lib, name.display().to_string()),
                Err(e) => tried.push(format!("{}: {e}", name.display())),
            }
        }
        Err(LoadError::Library { tried })
    }

    fn resolve(lib: libloading::Library, path: String) -> Result<Self, LoadError> {
        fn sym<T: Copy>(
            lib: &libloading::Library,
            path: &str,
            symbol: &'static str,
        ) -> Result<T, LoadError> {
            // SAFETY: `T` is the C signature of `symbol` as declared in rocblas-functions.h.
            unsafe { lib.get::<T>(symbol.as_bytes()) }
                .map(|s| *s)
                .map_err(|e| LoadError::Symbol {
                    library: path.to_string(),
                    symbol,
                    detail: e.to_string(),
                })
        }
        Ok(RocBlas {
            create_handle: sym(&lib, &path, "rocblas_create_handle")?,
            destroy_handle: sym(&lib, &path, "rocblas_destroy_handle")?,
            set_stream: sym(&lib, &path, "rocblas_set_stream")?,
            gemm_ex: sym(&lib, &path, "rocblas_gemm_ex")?,
            gemm_strided_batched_ex: sym(&lib, &path, "rocblas_gemm_strided_batched_ex")?,
            status_to_string: sym(&lib, &path, "rocblas_status_to_string").ok(),
            path,
            _lib: lib,
        })
    }

    /// The file the library was loaded from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// rocBLAS's own description of `status` (falls back to [`status_name`]).
    pub fn status_string(&self, status: rocblas_status) -> String {
        if let Some(f) = self.status_to_string {
            // SAFETY: rocblas_status_to_string returns a static NUL-terminated string (or null).
            let p = unsafe { f(status) };
            if !p.is_null() {
                // SAFETY: non-null, NUL-terminated, static.
                return unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned();
            }
        }
        status_name(status)
    }

    /// `rocblas_create_handle`. Needs the HIP device the handle is for to be current.
    pub fn create_handle(&self) -> Result<rocblas_handle, CallError> {
        let mut h: rocblas_handle = std::ptr::null_mut();
        // SAFETY: `h` is a valid out-pointer.
        check("rocblas_create_handle", unsafe {
            (self.create_handle)(&mut h)
        })?;
        Ok(h)
    }

    /// `rocblas_destroy_handle`.
    ///
    /// # Safety
    /// `handle` came from [`RocBlas::create_handle`] and is not used afterwards.
    pub unsafe fn destroy_handle(&self, handle: rocblas_handle) -> Result<(), CallError> {
        check("rocblas_destroy_handle", (self.destroy_handle)(handle))
    }

    /// `rocblas_set_stream`.
    ///
    /// # Safety
    /// `handle` is live and `stream` is a live HIP stream of the handle's device (or null).
    pub unsafe fn set_stream(
        &self,
        handle: rocblas_handle,
        stream: hipStream_t,
    ) -> Result<(), CallError> {
        check("rocblas_set_stream", (self.set_stream)(handle, stream))
    }

    /// `rocblas_gemm_ex` with `D = C` (in place), the standard algorithm and no flags:
    /// column-major `C (m, n) = alpha · op(A) · op(B) + beta · C`.
    ///
    /// # Safety
    /// `handle` is live; `a`, `b`, `c` are device pointers to matrices of the stated types and
    /// leading dimensions, large enough for `m`, `n`, `k`; `alpha`/`beta` point to host scalars
    /// of the compute type (the default host pointer mode).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_ex(
        &self,
        handle: rocblas_handle,
        trans_a: rocblas_operation,
        trans_b: rocblas_operation,
        m: rocblas_int,
        n: rocblas_int,
        k: rocblas_int,
        alpha: *const c_void,
        a: *const c_void,
        a_type: rocblas_datatype,
        lda: rocblas_int,
        b: *const c_void,
        b_type: rocblas_datatype,
        ldb: rocblas_int,
        beta: *const c_void,
        c: *mut c_void,
        c_type: rocblas_datatype,
        ldc: rocblas_int,
        compute_type: rocblas_datatype,
    ) -> Result<(), CallError> {
        check(
            "rocblas_gemm_ex",
            (self.gemm_ex)(
                handle,
                trans_a,
                trans_b,
                m,
                n,
                k,
                alpha,
                a,
                a_type,
                lda,
                b,
                b_type,
                ldb,
                beta,
                c,
                c_type,
                ldc,
                c,
                c_type,
                ldc,
                compute_type,
                rocblas_gemm_algo_standard,
                0,
                rocblas_gemm_flags_none,
            ),
        )
    }

    /// `rocblas_gemm_strided_batched_ex` with `D = C`, the standard algorithm and no flags.
    ///
    /// # Safety
    /// As [`RocBlas::gemm_ex`], for `batch` matrices each `stride_*` elements apart.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_strided_batched_ex(
        &self,
        handle: rocblas_handle,
        trans_a: rocblas_operation,
        trans_b: rocblas_operation,
        m: rocblas_int,
        n: rocblas_int,
        k: rocblas_int,
        alpha: *const c_void,
        a: *const c_void,
        a_type: rocblas_datatype,
        lda: rocblas_int,
        stride_a: rocblas_stride,
        b: *const c_void,
        b_type: rocblas_datatype,
        ldb: rocblas_int,
        stride_b: rocblas_stride,
        beta: *const c_void,
        c: *mut c_void,
        c_type: rocblas_datatype,
        ldc: rocblas_int,
        stride_c: rocblas_stride,
        batch: rocblas_int,
        compute_type: rocblas_datatype,
    ) -> Result<(), CallError> {
        check(
            "rocblas_gemm_strided_batched_ex",
            (self.gemm_strided_batched_ex)(
                handle,
                trans_a,
                trans_b,
                m,
                n,
                k,
                alpha,
                a,
                a_type,
                lda,
                stride_a,
                b,
                b_type,
                ldb,
                stride_b,
                beta,
                c,
                c_type,
                ldc,
                stride_c,
                c,
                c_type,
                ldc,
                stride_c,
                batch,
                compute_type,
                rocblas_gemm_algo_standard,
                0,
                rocblas_gemm_flags_none,
            ),
        )
    }
}

// SAFETY: the struct holds only function pointers into a loaded library and the library handle;
// rocBLAS functions are thread-safe given distinct handles (the caller serializes per handle).
unsafe impl Send for RocBlas {}
unsafe impl Sync for RocBlas {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_a_typed_error_naming_each_candidate() {
        let names = [
            "/nonexistent/librocblas.so.4",
            "librocblas-wavefront-test-missing.so",
        ];
        let err = RocBlas::load_from(&names).unwrap_err();
        match &err {
            LoadError::Library { tried } => {
                assert_eq!(tried.len(), 2);
                assert!(tried[0].starts_with("/nonexistent/librocblas.so.4: "));
                assert!(tried[1].starts_with("librocblas-wavefront-test-missing.so: "));
            }
            other => panic!("expected LoadError::Library, got {other:?}"),
        }
        assert!(err.to_string().starts_with("librocblas not found"));
    }

    #[test]
    fn library_without_the_symbols_is_a_symbol_error() {
        // libc is always loadable and has none of rocBLAS's functions.
        let err = RocBlas::load_from(&["libc.so.6"]).unwrap_err();
        match &err {
            LoadError::Symbol {
                library, symbol, ..
            } => {
                assert_eq!(library, "libc.so.6");
                assert_eq!(*symbol, "rocblas_create_handle");
            }
            other => panic!("expected LoadError::Symbol, got {other:?}"),
        }
    }

    #[test]
    fn status_names_follow_the_header_order() {
        // rocblas-types.h: invalid_size = 4, memory_error = 5, arch_mismatch = 15.
        assert_eq!(status_name(4), "rocblas_status_invalid_size");
        assert_eq!(status_name(5), "rocblas_status_memory_error");
        assert_eq!(status_name(15), "rocblas_status_arch_mismatch");
        assert_eq!(status_name(99), "rocblas_status_99");
        assert_eq!(status_name(-1), "rocblas_status_-1");
        let e = CallError {
            call: "rocblas_gemm_ex",
            status: 4,
        };
        assert_eq!(
            e.to_string(),
            "rocblas_gemm_ex: rocblas_status_invalid_size (4)"
        );
    }

    #[test]
    fn default_candidates_cover_rocm_6_and_7_and_distro_sonames() {
        if std::env::var_os("WAVEFRONT_ROCBLAS_LIB").is_some() {
            eprintln!("skipping: WAVEFRONT_ROCBLAS_LIB is set");
            return;
        }
        let c = candidates();
        assert!(c.contains(&PathBuf::from("/opt/rocm/lib/librocblas.so.4")));
        assert!(c.contains(&PathBuf::from("librocblas.so.5")));
        assert!(c.contains(&PathBuf::from("/opt/rocm/lib/librocblas.so.0")));
        assert_eq!(c.last(), Some(&PathBuf::from("librocblas.so.0")));
    }
}
