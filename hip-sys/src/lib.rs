//! The HIP runtime and hipRTC, loaded at run time.
//!
//! Wavefront's AMD vendor layer needs a few dozen functions of `libamdhip64` (device queries,
//! memory, streams, modules, launches, events, graphs) and of hipRTC. This crate declares
//! exactly those and resolves every one of them once, when [`Hip::load`] runs, into a struct
//! of function pointers: nothing links against ROCm, a binary built anywhere starts without
//! it, and a missing library or symbol is a [`LoadError`], never a panic.
//!
//! Where things are looked for (environment variables are read, never written):
//! - the runtime: `$WAVEFRONT_HIP_LIB` alone when set; else `$ROCM_PATH/lib/`, `$HIP_PATH/lib/`,
//!   `/opt/rocm/lib/` and the loader's own search path, each with `libamdhip64.so`, `.so.7`,
//!   `.so.6`, `.so.5` ([`candidates`]);
//! - hipRTC: `libhiprtc.so`, `.so.7`, `.so.6`, `.so.5` next to the runtime, then on the loader
//!   path ([`rtc_candidates`]); when none opens, the `hiprtc*` functions of the runtime itself,
//!   where HIP 5 keeps them.
//!
//! Device properties: ROCm 6 and 7 export `hipGetDevicePropertiesR0600`, HIP 5 only
//! `hipGetDeviceProperties`, with different struct layouts ([`PropsLayout`]). Only
//! `gcnArchName` is read from the struct; everything else comes from calls whose ABI did not
//! change (`hipDeviceGetName`, `hipDeviceTotalMem`, `hipDeviceGetAttribute`).
//!
//! Declarations follow `hip_runtime_api.h` and `hiprtc.h` of HIP 5.2 (Debian 12) and ROCm 6/7,
//! whose signatures and values for these functions are the same; `tests/header.rs` checks the
//! constants and the R0000 layout against the installed header.

#![allow(non_camel_case_types, non_upper_case_globals)]

mod library;
mod rtc;
mod runtime;

use std::ffi::c_void;

pub use library::{candidates, rtc_candidates, Hip, RtcSource, RTC_SYMBOLS, RUNTIME_SYMBOLS};
pub use rtc::{CompileError, Program};

/// `hipError_t` (a C enum: `int`).
pub type hipError_t = i32;
/// `hiprtcResult` (a C enum: `int`).
pub type hiprtcResult = i32;
/// `hipDevice_t`: in HIP, the device ordinal.
pub type hipDevice_t = i32;
pub type hipDeviceptr_t = *mut c_void;
pub type hipStream_t = *mut c_void;
pub type hipModule_t = *mut c_void;
pub type hipFunction_t = *mut c_void;
pub type hipEvent_t = *mut c_void;
pub type hipGraph_t = *mut c_void;
pub type hipGraphExec_t = *mut c_void;
pub type hipGraphNode_t = *mut c_void;
pub type hiprtcProgram = *mut c_void;

pub const hipSuccess: hipError_t = 0;
pub const hipErrorOutOfMemory: hipError_t = 2;
pub const hipErrorNoDevice: hipError_t = 100;
pub const hipErrorInvalidDevice: hipError_t = 101;
pub const hipErrorNotFound: hipError_t = 500;
pub const HIPRTC_SUCCESS: hiprtcResult = 0;
pub const HIPRTC_ERROR_INVALID_INPUT: hiprtcResult = 3;
pub const HIPRTC_ERROR_COMPILATION: hiprtcResult = 6;

/// `hipStreamNonBlocking` (a `#define` in hip_runtime_api.h).
pub const hipStreamNonBlocking: u32 = 0x01;
/// `hipStreamCaptureModeThreadLocal` of `enum hipStreamCaptureMode`.
pub const hipStreamCaptureModeThreadLocal: i32 = 1;
/// `hipDeviceAttributeMultiprocessorCount` (the same in HIP 5.2 and ROCm 6/7).
pub const hipDeviceAttributeMultiprocessorCount: i32 = 63;
/// `hipDeviceAttributeWarpSize` (the same in HIP 5.2 and ROCm 6/7).
pub const hipDeviceAttributeWarpSize: i32 = 87;

/// `hipError_t` names of the codes a run can plausibly meet, from hip_runtime_api.h.
pub const STATUS_NAMES: [(hipError_t, &str); 38] = [
    (0, "hipSuccess"),
    (1, "hipErrorInvalidValue"),
    (2, "hipErrorOutOfMemory"),
    (3, "hipErrorNotInitialized"),
    (4, "hipErrorDeinitialized"),
    (9, "hipErrorInvalidConfiguration"),
    (17, "hipErrorInvalidDevicePointer"),
    (35, "hipErrorInsufficientDriver"),
    (98, "hipErrorInvalidDeviceFunction"),
    (100, "hipErrorNoDevice"),
    (101, "hipErrorInvalidDevice"),
    (200, "hipErrorInvalidImage"),
    (201, "hipErrorInvalidContext"),
    (209, "hipErrorNoBinaryForGpu"),
    (218, "hipErrorInvalidKernelFile"),
    (300, "hipErrorInvalidSource"),
    (301, "hipErrorFileNotFound"),
    (302, "hipErrorSharedObjectSymbolNotFound"),
    (303, "hipErrorSharedObjectInitFailed"),
    (400, "hipErrorInvalidHandle"),
    (500, "hipErrorNotFound"),
    (600, "hipErrorNotReady"),
    (700, "hipErrorIllegalAddress"),
    (701, "hipErrorLaunchOutOfResources"),
    (702, "hipErrorLaunchTimeOut"),
    (719, "hipErrorLaunchFailure"),
    (801, "hipErrorNotSupported"),
    (900, "hipErrorStreamCaptureUnsupported"),
    (901, "hipErrorStreamCaptureInvalidated"),
    (902, "hipErrorStreamCaptureMerge"),
    (903, "hipErrorStreamCaptureUnmatched"),
    (904, "hipErrorStreamCaptureUnjoined"),
    (905, "hipErrorStreamCaptureIsolation"),
    (906, "hipErrorStreamCaptureImplicit"),
    (907, "hipErrorCapturedEvent"),
    (908, "hipErrorStreamCaptureWrongThread"),
    (910, "hipErrorGraphExecUpdateFailure"),
    (999, "hipErrorUnknown"),
];

/// `hiprtcResult` names, indexed by status (hiprtc.h; the same in HIP 5.2 and ROCm 6/7).
pub const RTC_STATUS_NAMES: [&str; 12] = [
    "HIPRTC_SUCCESS",
    "HIPRTC_ERROR_OUT_OF_MEMORY",
    "HIPRTC_ERROR_PROGRAM_CREATION_FAILURE",
    "HIPRTC_ERROR_INVALID_INPUT",
    "HIPRTC_ERROR_INVALID_PROGRAM",
    "HIPRTC_ERROR_INVALID_OPTION",
    "HIPRTC_ERROR_COMPILATION",
    "HIPRTC_ERROR_BUILTIN_OPERATION_FAILURE",
    "HIPRTC_ERROR_NO_NAME_EXPRESSIONS_AFTER_COMPILATION",
    "HIPRTC_ERROR_NO_LOWERED_NAMES_BEFORE_COMPILATION",
    "HIPRTC_ERROR_NAME_EXPRESSION_NOT_VALID",
    "HIPRTC_ERROR_INTERNAL_ERROR",
];
/// `HIPRTC_ERROR_LINKING`: ROCm 6 and later (hipRTC's linker API); HIP 5.2's header lacks it.
pub const HIPRTC_ERROR_LINKING: hiprtcResult = 100;

/// The name of a HIP status (`hipErrorOutOfMemory`), `None` for a code outside the table.
pub fn status_name(status: hipError_t) -> Option<&'static str> {
    STATUS_NAMES
        .iter()
        .find(|(c, _)| *c == status)
        .map(|(_, n)| *n)
}

/// The name of a hipRTC status (`HIPRTC_ERROR_COMPILATION`), `None` for an unknown code.
pub fn rtc_status_name(status: hiprtcResult) -> Option<&'static str> {
    if status == HIPRTC_ERROR_LINKING {
        return Some("HIPRTC_ERROR_LINKING");
    }
    usize::try_from(status)
        .ok()
        .and_then(|i| RTC_STATUS_NAMES.get(i))
        .copied()
}

/// Why the HIP runtime or hipRTC could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// No candidate file name loaded; `tried` holds each candidate with the loader's message.
    #[error("no HIP runtime library (tried {}; {})", summary(.tried), first_message(.tried))]
    Library { tried: Vec<Tried> },
    /// A library loaded but lacks a function this crate needs.
    #[error("{library}: missing symbol `{symbol}`: {detail}")]
    Symbol {
        library: String,
        symbol: &'static str,
        detail: String,
    },
}

/// One candidate library that did not open, with the loader's one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tried {
    pub name: String,
    pub message: String,
}

/// `a, b, c` for up to three candidates, else `a, b and N more names`.
fn summary(tried: &[Tried]) -> String {
    let names: Vec<&str> = tried.iter().map(|t| t.name.as_str()).collect();
    match names.len() {
        0 => "no names".into(),
        1..=3 => names.join(", "),
        n => format!("{} and {} more names", names[..2].join(", "), n - 2),
    }
}

fn first_message(tried: &[Tried]) -> &str {
    tried.first().map_or("", |t| t.message.as_str())
}

/// A failed HIP runtime call: the function and its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{call}: {} ({status})", status_name(*.status).unwrap_or("hipError"))]
pub struct CallError {
    pub call: &'static str,
    pub status: hipError_t,
}

pub(crate) fn check(call: &'static str, status: hipError_t) -> Result<(), CallError> {
    if status == hipSuccess {
        Ok(())
    } else {
        Err(CallError { call, status })
    }
}

/// `HIP_VERSION` as `hipRuntimeGetVersion` reports it: `major · 10⁷ + minor · 10⁵ + patch`
/// (50221153 is HIP 5.2.21153).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HipVersion {
    pub raw: i32,
}

impl HipVersion {
    pub fn major(self) -> i32 {
        self.raw / 10_000_000
    }
    pub fn minor(self) -> i32 {
        self.raw / 100_000 % 100
    }
    pub fn patch(self) -> i32 {
        self.raw % 100_000
    }
}

impl std::fmt::Display for HipVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major(), self.minor(), self.patch())
    }
}

/// The `hipDeviceProp_t` layout of the properties function a runtime exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropsLayout {
    /// `hipGetDevicePropertiesR0600` (ROCm 6 and 7): `hipDeviceProp_tR0600`, from the bindgen
    /// layout of ROCm 6.x.
    R0600,
    /// `hipGetDeviceProperties` of HIP 5: the original `hipDeviceProp_t`, measured with
    /// `offsetof` against HIP 5.2's hip_runtime_api.h (`tests/header.rs` re-measures it).
    R0000,
}

impl PropsLayout {
    /// Preferred first: a runtime exporting both has R0600 under its own name.
    pub const ALL: [PropsLayout; 2] = [PropsLayout::R0600, PropsLayout::R0000];

    pub const fn symbol(self) -> &'static str {
        match self {
            PropsLayout::R0600 => "hipGetDevicePropertiesR0600",
            PropsLayout::R0000 => "hipGetDeviceProperties",
        }
    }

    /// `sizeof` the struct.
    pub const fn size(self) -> usize {
        match self {
            PropsLayout::R0600 => 1472,
            PropsLayout::R0000 => 792,
        }
    }

    /// `offsetof(…, name)` (`char[256]`).
    pub const fn name_offset(self) -> usize {
        0
    }

    /// `offsetof(…, gcnArchName)` (`char[256]`).
    pub const fn gcn_arch_name_offset(self) -> usize {
        match self {
            PropsLayout::R0600 => 1160,
            PropsLayout::R0000 => 396,
        }
    }
}

/// Length of the `char` arrays `name` and `gcnArchName`.
pub const PROPS_STRING_LEN: usize = 256;

/// The NUL-terminated string of at most `PROPS_STRING_LEN` bytes at `offset` of `buf` (lossy
/// UTF-8; the whole field when it has no NUL; empty when the field lies outside `buf`).
pub fn c_string_at(buf: &[u8], offset: usize) -> String {
    let field = buf
        .get(offset..)
        .map(|b| &b[..b.len().min(PROPS_STRING_LEN)])
        .unwrap_or(&[]);
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_and_calls_format_with_their_codes() {
        assert_eq!(status_name(2), Some("hipErrorOutOfMemory"));
        assert_eq!(status_name(101), Some("hipErrorInvalidDevice"));
        assert_eq!(status_name(12345), None);
        let e = CallError {
            call: "hipGetDeviceCount",
            status: hipErrorNoDevice,
        };
        assert_eq!(e.to_string(), "hipGetDeviceCount: hipErrorNoDevice (100)");
        let e = CallError {
            call: "hipMalloc",
            status: 4242,
        };
        assert_eq!(e.to_string(), "hipMalloc: hipError (4242)");
        assert_eq!(check("hipInit", 0), Ok(()));
        assert_eq!(
            check("hipInit", 101),
            Err(CallError {
                call: "hipInit",
                status: 101
            })
        );
        // The table is sorted and has no duplicate codes (lookups take the first match).
        assert!(STATUS_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn rtc_status_names_cover_the_header_and_linking() {
        assert_eq!(rtc_status_name(0), Some("HIPRTC_SUCCESS"));
        assert_eq!(rtc_status_name(6), Some("HIPRTC_ERROR_COMPILATION"));
        assert_eq!(rtc_status_name(11), Some("HIPRTC_ERROR_INTERNAL_ERROR"));
        assert_eq!(rtc_status_name(100), Some("HIPRTC_ERROR_LINKING"));
        assert_eq!(rtc_status_name(12), None);
        assert_eq!(rtc_status_name(-1), None);
    }

    #[test]
    fn versions_decode_as_hip_version_does() {
        let v = HipVersion { raw: 50221153 };
        assert_eq!((v.major(), v.minor(), v.patch()), (5, 2, 21153));
        assert_eq!(v.to_string(), "5.2.21153");
        assert_eq!(HipVersion { raw: 60443483 }.to_string(), "6.4.43483");
        assert_eq!(HipVersion { raw: 70051831 }.to_string(), "7.0.51831");
    }

    #[test]
    fn props_layouts_keep_both_strings_inside_the_struct() {
        for l in PropsLayout::ALL {
            assert!(
                l.gcn_arch_name_offset() + PROPS_STRING_LEN <= l.size(),
                "{l:?}"
            );
            assert!(l.name_offset() + PROPS_STRING_LEN <= l.gcn_arch_name_offset());
        }
        assert_eq!(PropsLayout::ALL[0].symbol(), "hipGetDevicePropertiesR0600");
    }

    #[test]
    fn c_strings_are_read_at_an_offset_and_bounded() {
        let mut buf = vec![0u8; 1024];
        buf[396..396 + 22].copy_from_slice(b"gfx90a:sramecc+:xnack-");
        assert_eq!(c_string_at(&buf, 396), "gfx90a:sramecc+:xnack-");
        assert_eq!(c_string_at(&buf, 0), "");
        // No NUL within the field: the field's 256 bytes, not what follows.
        buf[500..1024].fill(b'x');
        assert_eq!(c_string_at(&buf, 600), "x".repeat(256));
        // Near or past the end of the buffer.
        assert_eq!(c_string_at(&buf, 1020), "xxxx");
        assert_eq!(c_string_at(&buf, 5000), "");
    }

    #[test]
    fn a_missing_library_lists_the_candidates_in_one_line() {
        let tried: Vec<Tried> = (0..5)
            .map(|i| Tried {
                name: format!("libmissing{i}.so"),
                message: format!("libmissing{i}.so: cannot open shared object file"),
            })
            .collect();
        let e = LoadError::Library {
            tried: tried[..1].to_vec(),
        };
        assert_eq!(
            e.to_string(),
            "no HIP runtime library (tried libmissing0.so; libmissing0.so: cannot open shared \
             object file)"
        );
        let e = LoadError::Library { tried };
        assert!(
            e.to_string().starts_with(
                "no HIP runtime library (tried libmissing0.so, libmissing1.so and 3 more names; "
            ),
            "{e}"
        );
    }
}
