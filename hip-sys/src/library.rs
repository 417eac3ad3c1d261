//! Finding the libraries and resolving every symbol once, at load.

use std::ffi::{c_char, c_void};
use std::path::{Path, PathBuf};

use libloading::Library;

use crate::{
    hipDevice_t, hipDeviceptr_t, hipError_t, hipEvent_t, hipFunction_t, hipGraphExec_t,
    hipGraphNode_t, hipGraph_t, hipModule_t, hipStream_t, hiprtcProgram, hiprtcResult, LoadError,
    PropsLayout, Tried,
};

/// Declares a table of C functions: a struct with one function pointer per entry, the list of
/// C names (public, in resolution order), and `resolve`, which looks every name up or fails
/// on the first one missing.
macro_rules! symbol_table {
    (
        $(#[$meta:meta])* struct $table:ident; const $names:ident;
        $($field:ident = $sym:literal: fn($($arg:ty),* $(,)?) -> $ret:ty;)*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy)]
        pub(crate) struct $table {
            $(pub(crate) $field: unsafe extern "C" fn($($arg),*) -> $ret,)*
        }

        #[doc = concat!("The C names of the `", stringify!($table), "` table, in resolution order.")]
        pub const $names: &[&str] = &[$($sym),*];

        impl $table {
            fn resolve(lib: &Library, path: &str) -> Result<Self, LoadError> {
                Ok($table {
                    // SAFETY: each type is the C signature of its symbol in
                    // hip_runtime_api.h / hiprtc.h.
                    $($field: unsafe { symbol(lib, path, $sym)? },)*
                })
            }
        }
    };
}

symbol_table! {
    /// The runtime functions of `libamdhip64` the vendor layer calls.
    struct RuntimeFns; const RUNTIME_SYMBOLS;
    init = "hipInit": fn(u32) -> hipError_t;
    get_device_count = "hipGetDeviceCount": fn(*mut i32) -> hipError_t;
    set_device = "hipSetDevice": fn(i32) -> hipError_t;
    device_get = "hipDeviceGet": fn(*mut hipDevice_t, i32) -> hipError_t;
    device_get_name = "hipDeviceGetName": fn(*mut c_char, i32, hipDevice_t) -> hipError_t;
    device_total_mem = "hipDeviceTotalMem": fn(*mut usize, hipDevice_t) -> hipError_t;
    device_get_attribute = "hipDeviceGetAttribute": fn(*mut i32, i32, i32) -> hipError_t;
    runtime_get_version = "hipRuntimeGetVersion": fn(*mut i32) -> hipError_t;
    mem_get_info = "hipMemGetInfo": fn(*mut usize, *mut usize) -> hipError_t;
    malloc = "hipMalloc": fn(*mut *mut c_void, usize) -> hipError_t;
    free = "hipFree": fn(*mut c_void) -> hipError_t;
    host_malloc = "hipHostMalloc": fn(*mut *mut c_void, usize, u32) -> hipError_t;
    host_free = "hipHostFree": fn(*mut c_void) -> hipError_t;
    memcpy_htod_async = "hipMemcpyHtoDAsync":
        fn(hipDeviceptr_t, *const c_void, usize, hipStream_t) -> hipError_t;
    memcpy_dtoh_async = "hipMemcpyDtoHAsync":
        fn(*mut c_void, hipDeviceptr_t, usize, hipStream_t) -> hipError_t;
    memcpy_dtod_async = "hipMemcpyDtoDAsync":
        fn(hipDeviceptr_t, hipDeviceptr_t, usize, hipStream_t) -> hipError_t;
    memset_d8_async = "hipMemsetD8Async": fn(hipDeviceptr_t, u8, usize, hipStream_t) -> hipError_t;
    stream_create_with_flags = "hipStreamCreateWithFlags": fn(*mut hipStream_t, u32) -> hipError_t;
    stream_synchronize = "hipStreamSynchronize": fn(hipStream_t) -> hipError_t;
    stream_destroy = "hipStreamDestroy": fn(hipStream_t) -> hipError_t;
    module_load_data = "hipModuleLoadData": fn(*mut hipModule_t, *const c_void) -> hipError_t;
    module_get_function = "hipModuleGetFunction":
        fn(*mut hipFunction_t, hipModule_t, *const c_char) -> hipError_t;
    module_get_global = "hipModuleGetGlobal":
        fn(*mut hipDeviceptr_t, *mut usize, hipModule_t, *const c_char) -> hipError_t;
    module_launch_kernel = "hipModuleLaunchKernel": fn(
        hipFunction_t, u32, u32, u32, u32, u32, u32, u32, hipStream_t,
        *mut *mut c_void, *mut *mut c_void,
    ) -> hipError_t;
    module_occupancy = "hipModuleOccupancyMaxActiveBlocksPerMultiprocessor":
        fn(*mut i32, hipFunction_t, i32, usize) -> hipError_t;
    event_create = "hipEventCreate": fn(*mut hipEvent_t) -> hipError_t;
    event_record = "hipEventRecord": fn(hipEvent_t, hipStream_t) -> hipError_t;
    event_synchronize = "hipEventSynchronize": fn(hipEvent_t) -> hipError_t;
    event_elapsed_time = "hipEventElapsedTime": fn(*mut f32, hipEvent_t, hipEvent_t) -> hipError_t;
    event_destroy = "hipEventDestroy": fn(hipEvent_t) -> hipError_t;
    stream_begin_capture = "hipStreamBeginCapture": fn(hipStream_t, i32) -> hipError_t;
    stream_end_capture = "hipStreamEndCapture": fn(hipStream_t, *mut hipGraph_t) -> hipError_t;
    graph_instantiate = "hipGraphInstantiate":
        fn(*mut hipGraphExec_t, hipGraph_t, *mut hipGraphNode_t, *mut c_char, usize) -> hipError_t;
    graph_destroy = "hipGraphDestroy": fn(hipGraph_t) -> hipError_t;
    graph_launch = "hipGraphLaunch": fn(hipGraphExec_t, hipStream_t) -> hipError_t;
    graph_exec_destroy = "hipGraphExecDestroy": fn(hipGraphExec_t) -> hipError_t;
}

symbol_table! {
    /// The hipRTC functions (from `libhiprtc`, or from `libamdhip64` on HIP 5).
    struct RtcFns; const RTC_SYMBOLS;
    version = "hiprtcVersion": fn(*mut i32, *mut i32) -> hiprtcResult;
    create_program = "hiprtcCreateProgram": fn(
        *mut hiprtcProgram, *const c_char, *const c_char, i32,
        *const *const c_char, *const *const c_char,
    ) -> hiprtcResult;
    compile_program = "hiprtcCompileProgram":
        fn(hiprtcProgram, i32, *const *const c_char) -> hiprtcResult;
    get_program_log_size = "hiprtcGetProgramLogSize": fn(hiprtcProgram, *mut usize) -> hiprtcResult;
    get_program_log = "hiprtcGetProgramLog": fn(hiprtcProgram, *mut c_char) -> hiprtcResult;
    get_code_size = "hiprtcGetCodeSize": fn(hiprtcProgram, *mut usize) -> hiprtcResult;
    get_code = "hiprtcGetCode": fn(hiprtcProgram, *mut c_char) -> hiprtcResult;
    destroy_program = "hiprtcDestroyProgram": fn(*mut hiprtcProgram) -> hiprtcResult;
}

/// `hipGetDevicePropertiesR0600` / `hipGetDeviceProperties`: the struct is passed as bytes.
pub(crate) type GetProps = unsafe extern "C" fn(*mut c_void, i32) -> hipError_t;

/// Looks up `name` in `lib` as a `T`.
///
/// # Safety
/// `T` is the function-pointer type of the C declaration of `name`.
unsafe fn symbol<T: Copy>(lib: &Library, path: &str, name: &'static str) -> Result<T, LoadError> {
    lib.get::<T>(name.as_bytes())
        .map(|s| *s)
        .map_err(|e| LoadError::Symbol {
            library: path.to_string(),
            symbol: name,
            detail: loader_message(&e),
        })
}

/// The loader's own one-line message (libloading's top-level one is only "dlopen failed").
fn loader_message(e: &libloading::Error) -> String {
    let msg = std::error::Error::source(e)
        .map(|s| s.to_string())
        .unwrap_or_else(|| e.to_string());
    msg.lines().next().unwrap_or("").to_string()
}

/// The runtime library names tried by [`Hip::load`], in order: `$WAVEFRONT_HIP_LIB` alone
/// when set; else `$ROCM_PATH/lib`, `$HIP_PATH/lib`, `/opt/rocm/lib`, then the bare names for
/// the loader's search path, each with `libamdhip64.so` and the sonames of ROCm 7, 6 and HIP 5.
pub fn candidates() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("WAVEFRONT_HIP_LIB").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(p)];
    }
    const NAMES: [&str; 4] = [
        "libamdhip64.so",
        "libamdhip64.so.7",
        "libamdhip64.so.6",
        "libamdhip64.so.5",
    ];
    let mut dirs: Vec<PathBuf> = ["ROCM_PATH", "HIP_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .filter(|p| !p.is_empty())
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

/// The hipRTC library names tried for the runtime loaded from `runtime`: the sonames next to
/// it (when `runtime` names a directory), then the bare names for the loader's search path.
pub fn rtc_candidates(runtime: &Path) -> Vec<PathBuf> {
    const NAMES: [&str; 4] = [
        "libhiprtc.so",
        "libhiprtc.so.7",
        "libhiprtc.so.6",
        "libhiprtc.so.5",
    ];
    let dir = runtime.parent().filter(|d| !d.as_os_str().is_empty());
    let mut out: Vec<PathBuf> = dir
        .map(|d| NAMES.iter().map(|n| d.join(n)).collect())
        .unwrap_or_default();
    out.extend(NAMES.iter().map(PathBuf::from));
    out
}

/// Where the hipRTC functions were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcSource {
    /// A separate `libhiprtc` (ROCm 6 and 7), by the name it was opened under.
    Library(String),
    /// The runtime library itself (HIP 5 has no separate hipRTC).
    Runtime,
}

/// The HIP runtime and hipRTC with every function resolved. Loading it runs the runtime's
/// initializers; keep it alive while any HIP object is in use (typically: for the process).
pub struct Hip {
    pub(crate) rt: RuntimeFns,
    pub(crate) rtc: RtcFns,
    pub(crate) props: GetProps,
    layout: PropsLayout,
    path: String,
    rtc_source: RtcSource,
    // Field order: the function pointers above are plain copies; the libraries drop last.
    _rtc_lib: Option<Library>,
    _lib: Library,
}

impl std::fmt::Debug for Hip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hip")
            .field("path", &self.path)
            .field("rtc_source", &self.rtc_source)
            .field("layout", &self.layout)
            .finish()
    }
}

impl Hip {
    /// Loads the first of [`candidates`] that opens.
    pub fn load() -> Result<Self, LoadError> {
        Self::load_from(&candidates())
    }

    /// Loads the first of `names` (paths or bare file names) that opens, then hipRTC (see
    /// [`rtc_candidates`]), and resolves every function: the first library that opens is the
    /// one used, and a symbol it lacks is an error, not a reason to try the next name.
    pub fn load_from<P: AsRef<Path>>(names: &[P]) -> Result<Self, LoadError> {
        let mut tried = Vec::new();
        for name in names {
            let name = name.as_ref();
            // SAFETY: loading libamdhip64 runs its initializers, which have no preconditions.
            match unsafe { Library::new(name) } {
                Ok(lib) => return Self::resolve(lib, name),
                Err(e) => tried.push(Tried {
                    name: name.display().to_string(),
                    message: loader_message(&e),
                }),
            }
        }
        Err(LoadError::Library { tried })
    }

    fn resolve(lib: Library, name: &Path) -> Result<Self, LoadError> {
        let path = name.display().to_string();
        let rt = RuntimeFns::resolve(&lib, &path)?;
        let (layout, props) = Self::props_fn(&lib, &path)?;
        let mut rtc_tried = Vec::new();
        let mut rtc_lib = None;
        for c in rtc_candidates(name) {
            // SAFETY: loading libhiprtc runs its initializers, which have no preconditions.
            match unsafe { Library::new(&c) } {
                Ok(l) => {
                    rtc_lib = Some((l, c.display().to_string()));
                    break;
                }
                Err(e) => rtc_tried.push(Tried {
                    name: c.display().to_string(),
                    message: loader_message(&e),
                }),
            }
        }
        let (rtc, rtc_source, rtc_lib) = match rtc_lib {
            Some((l, rtc_path)) => (
                RtcFns::resolve(&l, &rtc_path)?,
                RtcSource::Library(rtc_path),
                Some(l),
            ),
            None => {
                let rtc = RtcFns::resolve(&lib, &path).map_err(|e| match e {
                    LoadError::Symbol {
                        library,
                        symbol,
                        detail,
                    } => LoadError::Symbol {
                        library,
                        symbol,
                        detail: format!(
                            "{detail}; and no separate hipRTC library opened ({})",
                            LoadError::Library { tried: rtc_tried }
                        ),
                    },
                    other => other,
                })?;
                (rtc, RtcSource::Runtime, None)
            }
        };
        Ok(Hip {
            rt,
            rtc,
            props,
            layout,
            path,
            rtc_source,
            _rtc_lib: rtc_lib,
            _lib: lib,
        })
    }

    /// The first properties function of [`PropsLayout::ALL`] the runtime exports.
    fn props_fn(lib: &Library, path: &str) -> Result<(PropsLayout, GetProps), LoadError> {
        let mut details = Vec::new();
        for layout in PropsLayout::ALL {
            // SAFETY: both functions take (struct pointer, int) and return hipError_t; the
            // struct is passed as untyped bytes, sized for the layout by the caller.
            match unsafe { symbol::<GetProps>(lib, path, layout.symbol()) } {
                Ok(f) => return Ok((layout, f)),
                Err(e) => details.push(e.to_string()),
            }
        }
        Err(LoadError::Symbol {
            library: path.to_string(),
            symbol: PropsLayout::ALL[PropsLayout::ALL.len() - 1].symbol(),
            detail: format!(
                "neither properties function is exported ({})",
                details.join("; ")
            ),
        })
    }

    /// The file name the runtime was loaded under.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Where the hipRTC functions come from.
    pub fn rtc_source(&self) -> &RtcSource {
        &self.rtc_source
    }

    /// The device-properties layout of the runtime (which function was found).
    pub fn props_layout(&self) -> PropsLayout {
        self.layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_is_a_typed_error_naming_each_candidate() {
        let names = [
            "/nonexistent/libamdhip64.so.6",
            "libamdhip64-wavefront-test-missing.so",
        ];
        let err = Hip::load_from(&names).unwrap_err();
        match &err {
            LoadError::Library { tried } => {
                assert_eq!(tried.len(), 2);
                assert_eq!(tried[0].name, "/nonexistent/libamdhip64.so.6");
                assert!(
                    tried[0].message.contains("No such file or directory"),
                    "the loader's message: {}",
                    tried[0].message
                );
                assert_eq!(tried[1].name, "libamdhip64-wavefront-test-missing.so");
            }
            other => panic!("expected LoadError::Library, got {other:?}"),
        }
        assert!(
            err.to_string().starts_with(
                "no HIP runtime library (tried /nonexistent/libamdhip64.so.6, \
                 libamdhip64-wavefront-test-missing.so; /nonexistent/libamdhip64.so.6: "
            ),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'));
    }

    #[test]
    fn library_without_the_symbols_is_a_symbol_error() {
        // libc is always loadable and has none of HIP's functions.
        let err = Hip::load_from(&["libc.so.6"]).unwrap_err();
        match &err {
            LoadError::Symbol {
                library, symbol, ..
            } => {
                assert_eq!(library, "libc.so.6");
                assert_eq!(*symbol, RUNTIME_SYMBOLS[0]);
                assert_eq!(*symbol, "hipInit");
            }
            other => panic!("expected LoadError::Symbol, got {other:?}"),
        }
    }

    #[test]
    fn symbol_tables_name_every_function_once() {
        for table in [RUNTIME_SYMBOLS, RTC_SYMBOLS] {
            let mut names = table.to_vec();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), table.len());
        }
        assert!(RUNTIME_SYMBOLS.iter().all(|s| s.starts_with("hip")));
        assert!(RTC_SYMBOLS.iter().all(|s| s.starts_with("hiprtc")));
        assert!(RUNTIME_SYMBOLS.contains(&"hipMemGetInfo"));
        assert!(RUNTIME_SYMBOLS.contains(&"hipModuleGetGlobal"));
        assert_eq!(RTC_SYMBOLS.len(), 8);
    }

    #[test]
    fn default_candidates_cover_rocm_7_6_and_hip_5() {
        if std::env::var_os("WAVEFRONT_HIP_LIB").is_some() {
            eprintln!("skipping: WAVEFRONT_HIP_LIB is set");
            return;
        }
        let c = candidates();
        for n in [".so", ".so.7", ".so.6", ".so.5"] {
            let name = format!("libamdhip64{n}");
            assert!(c.contains(&Path::new("/opt/rocm/lib").join(&name)), "{n}");
            assert!(c.contains(&PathBuf::from(&name)), "{n}");
        }
        // The loader's search path comes last, in the same name order.
        assert_eq!(c[c.len() - 4..], NAMES_BARE.map(PathBuf::from));
    }

    const NAMES_BARE: [&str; 4] = [
        "libamdhip64.so",
        "libamdhip64.so.7",
        "libamdhip64.so.6",
        "libamdhip64.so.5",
    ];

    #[test]
    fn hiprtc_is_looked_for_next_to_the_runtime_then_on_the_loader_path() {
        let c = rtc_candidates(Path::new("/opt/rocm-6.4.0/lib/libamdhip64.so.6"));
        assert_eq!(c.len(), 8);
        assert_eq!(c[0], PathBuf::from("/opt/rocm-6.4.0/lib/libhiprtc.so"));
        assert_eq!(c[3], PathBuf::from("/opt/rocm-6.4.0/lib/libhiprtc.so.5"));
        assert_eq!(c[4], PathBuf::from("libhiprtc.so"));
        assert_eq!(c[7], PathBuf::from("libhiprtc.so.5"));
        // A bare runtime name: the loader path only.
        let c = rtc_candidates(Path::new("libamdhip64.so.5"));
        assert_eq!(
            c,
            [
                "libhiprtc.so",
                "libhiprtc.so.7",
                "libhiprtc.so.6",
                "libhiprtc.so.5"
            ]
            .map(PathBuf::from)
        );
    }
}
