//! AMD: the HIP runtime and hipRTC through `cubecl-hip-sys` (its bindings resolve symbols at
//! run time), rocBLAS through the workspace's `rocblas-sys`. One device, one non-blocking
//! stream, one rocBLAS handle bound to it.
//!
//! `cubecl-hip-sys` panics on first use when the libraries are missing, so [`HipVendor::open`]
//! probes the runtime first, versioned sonames included (`.so.7`, `.so.6`), and checks
//! `is_available()` after; `cubecl-hip-sys` itself opens only `libamdhip64.so` (`.so.1`,
//! `.so.0`), so a runtime found under another name is exposed to it through a directory of
//! symlinks (`expose_to_cubecl`).
//! Device properties come from `hipGetDevicePropertiesR0600`, the symbol ROCm 6 and 7 export
//! for the `hipDeviceProp_t` layout the bindings declare.
//!
//! This file cannot run here (no AMD GPU); it is written against the crates' signatures and the
//! ROCm documentation, and compiled.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Mutex;

use cubecl_hip_sys as hip;
use rocblas_sys as rb;

use super::{
    library_candidates, no_panic, probe_library, vendor_error, CompileInput, DeviceInfo, DevicePtr,
    EventHandle, FunctionHandle, Gemm, GraphHandle, KernelArg, LaunchConfig, ModuleHandle,
    OpenError, Runtime, Vendor,
};
use crate::error::Error;
use crate::tensor::DType;

/// hip_runtime_api.h names of the status codes a run can plausibly meet.
const HIP_ERRORS: [(u32, &str); 28] = [
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
    (999, "hipErrorUnknown"),
];

/// hiprtc.h names, indexed by status.
const HIPRTC_ERRORS: [&str; 12] = [
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

/// `hipErrorOutOfMemory (2)`; unknown codes keep their number. Needs no library.
pub fn hip_status_name(status: hip::hipError_t) -> String {
    match HIP_ERRORS.iter().find(|(c, _)| *c == status) {
        Some((c, n)) => format!("{n} ({c})"),
        None => format!("hipError ({status})"),
    }
}

pub fn hip_error(op: &str, status: hip::hipError_t, context: &str) -> Error {
    vendor_error(op, &hip_status_name(status), context)
}

pub fn hiprtc_error(op: &str, status: hip::hiprtcResult, context: &str) -> Error {
    let name = HIPRTC_ERRORS
        .get(status as usize)
        .copied()
        .unwrap_or(if status == 100 {
            "HIPRTC_ERROR_LINKING"
        } else {
            "HIPRTC_ERROR"
        });
    vendor_error(op, &format!("{name} ({status})"), context)
}

pub fn rocblas_error(e: &rb::CallError, context: &str) -> Error {
    vendor_error(
        e.call,
        &format!("{} ({})", rb::status_name(e.status), e.status),
        context,
    )
}

fn ck(op: &str, status: hip::hipError_t) -> Result<(), Error> {
    if status == hip::hipError_t_hipSuccess {
        Ok(())
    } else {
        Err(hip_error(op, status, ""))
    }
}

/// The HIP runtime sonames to probe (`$WAVEFRONT_HIP_LIB` alone when set).
fn hip_candidates() -> Vec<String> {
    let mut dirs: Vec<String> = ["ROCM_PATH", "HIP_PATH"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|p| format!("{p}/lib/"))
        .collect();
    dirs.push("/opt/rocm/lib/".into());
    dirs.push(String::new());
    let names = [
        "libamdhip64.so",
        "libamdhip64.so.7",
        "libamdhip64.so.6",
        "libamdhip64.so.5",
    ];
    let defaults = dirs
        .iter()
        .flat_map(|d| names.iter().map(move |n| format!("{d}{n}")))
        .collect();
    library_candidates("WAVEFRONT_HIP_LIB", defaults)
}

fn init_and_count() -> Result<usize, OpenError> {
    let found = probe_library("HIP runtime", &hip_candidates()).map_err(OpenError::Unavailable)?;
    let dir = found.rsplit_once('/').map_or("", |(d, _)| d);
    let rtc: Vec<String> = ["libhiprtc.so", "libhiprtc.so.7", "libhiprtc.so.6"]
        .iter()
        .map(|n| {
            if dir.is_empty() {
                n.to_string()
            } else {
                format!("{dir}/{n}")
            }
        })
        .collect();
    let rtc_found = probe_library("hipRTC", &rtc).map_err(OpenError::Unavailable)?;
    expose_to_cubecl(&found, &rtc_found).map_err(OpenError::Unavailable)?;
    if !hip::is_available() {
        return Err(OpenError::Unavailable(format!(
            "found {found}, but cubecl-hip-sys opens libamdhip64.so and libhiprtc.so only from \
             the loader path or $ROCM_PATH/lib (set ROCM_PATH to the ROCm root)"
        )));
    }
    no_panic("HIP", || {
        // SAFETY: hipInit has no preconditions; hipGetDeviceCount writes one int.
        unsafe {
            ck("hipInit", hip::hipInit(0))?;
            let mut n = 0;
            ck("hipGetDeviceCount", hip::hipGetDeviceCount(&mut n))?;
            Ok(n.max(0) as usize)
        }
    })
}

/// The names `cubecl-hip-sys` opens: `lib{amdhip64,hiprtc}.so`, `.so.1`, `.so.0`.
fn cubecl_opens(found: &str, stem: &str) -> bool {
    let file = found.rsplit('/').next().unwrap_or(found);
    [
        format!("lib{stem}.so"),
        format!("lib{stem}.so.1"),
        format!("lib{stem}.so.0"),
    ]
    .contains(&file.to_string())
}

/// The absolute path of the mapped library whose file name is `soname` (found in
/// `/proc/self/maps`: the loader may have found it on its own search path).
fn mapped_path(soname: &str) -> Option<String> {
    let file = soname.rsplit('/').next().unwrap_or(soname);
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.rsplit('/').next() == Some(file))
        .map(str::to_string)
}

/// `cubecl-hip-sys` opens only the names of [`cubecl_opens`], from `$ROCM_PATH/lib`,
/// `$HIP_PATH/lib` or the loader path, while ROCM 6/7 runtime-only installs may ship only
/// `libamdhip64.so.6`/`.so.7`. When the runtime found has another name, a directory of symlinks
/// under the cache dir gives the loaded files the names cubecl looks for, and `$HIP_PATH` points
/// there before cubecl's first (cached) look.
fn expose_to_cubecl(hip_found: &str, rtc_found: &str) -> Result<(), String> {
    if cubecl_opens(hip_found, "amdhip64") && cubecl_opens(rtc_found, "hiprtc") {
        return Ok(());
    }
    let resolve = |f: &str| {
        if f.starts_with('/') {
            Some(f.to_string())
        } else {
            mapped_path(f)
        }
    };
    let (Some(hip_path), Some(rtc_path)) = (resolve(hip_found), resolve(rtc_found)) else {
        return Err(format!(
            "loaded {hip_found} and {rtc_found} but cannot locate their files"
        ));
    };
    let root = crate::fetch::cache_dir()
        .map_err(|e| e.to_string())?
        .join("rocm-shim");
    make_shim(
        &root.join("lib"),
        &[("libamdhip64.so", &hip_path), ("libhiprtc.so", &rtc_path)],
    )?;
    // Before any thread could read it: this runs inside device detection, before cubecl loads.
    std::env::set_var("HIP_PATH", &root);
    Ok(())
}

/// Symlinks `dir/name → target` for each pair, replacing what is there atomically.
fn make_shim(dir: &std::path::Path, links: &[(&str, &str)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (name, target) in links {
        let tmp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(target, &tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(name))
            .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
    }
    Ok(())
}

/// `hipDeviceProp_tR0600` with room to spare, in case a runtime writes a longer struct.
#[repr(C)]
struct Props {
    p: hip::hipDeviceProp_tR0600,
    _spare: [u8; 4096],
}

fn versions() -> String {
    let mut rt = 0;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: each call writes ints through valid pointers.
    unsafe {
        hip::hipRuntimeGetVersion(&mut rt);
        hip::hiprtcVersion(&mut major, &mut minor);
    }
    format!("HIP runtime {rt}, hipRTC {major}.{minor}")
}

fn c_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn device_info(ordinal: usize) -> Result<DeviceInfo, Error> {
    // SAFETY: all-zero is a valid bit pattern for this plain C struct.
    let mut props: Box<Props> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: `props` is large enough for the R0600 layout.
    ck("hipGetDevicePropertiesR0600", unsafe {
        hip::hipGetDevicePropertiesR0600(&mut props.p, ordinal as i32)
    })?;
    let p = &props.p;
    Ok(DeviceInfo {
        runtime: Runtime::Hip,
        ordinal,
        name: c_string(&p.name),
        arch: c_string(&p.gcnArchName),
        wave: p.warpSize.max(0) as u32,
        total_memory: p.totalGlobalMem,
        multiprocessors: p.multiProcessorCount.max(0) as u32,
        runtime_version: versions(),
    })
}

/// Every HIP device, or why there are none.
pub fn devices() -> Result<Vec<DeviceInfo>, OpenError> {
    let n = init_and_count()?;
    no_panic("HIP", || {
        (0..n)
            .map(|i| device_info(i).map_err(OpenError::from))
            .collect()
    })
}

pub struct HipVendor {
    info: DeviceInfo,
    device: i32,
    stream: hip::hipStream_t,
    rocblas: rb::RocBlas,
    /// rocBLAS handles are not safe for concurrent use: calls hold this lock.
    blas: Mutex<rb::rocblas_handle>,
}

// SAFETY: the raw handles are owned by this struct; HIP calls are thread-safe once the device is
// current on the calling thread (every method does), the rocBLAS handle is used under its mutex.
unsafe impl Send for HipVendor {}
unsafe impl Sync for HipVendor {}

impl HipVendor {
    /// Opens device `ordinal`: a non-blocking stream and a rocBLAS handle bound to it.
    pub fn open(ordinal: usize) -> Result<Self, OpenError> {
        let n = init_and_count()?;
        if n == 0 {
            return Err(OpenError::Unavailable(
                "the HIP runtime loads but reports no device".into(),
            ));
        }
        if ordinal >= n {
            return Err(OpenError::Failed(vendor_error(
                "hipSetDevice",
                "no such device",
                &format!("HIP device {ordinal} requested, {n} present"),
            )));
        }
        // A device without rocBLAS cannot run the engine: a broken install, not "no GPU".
        let rocblas = rb::RocBlas::load().map_err(|e| {
            OpenError::Failed(vendor_error("rocBLAS", "not loaded", &e.to_string()))
        })?;
        no_panic("HIP", || {
            Self::open_device(ordinal, rocblas).map_err(OpenError::from)
        })
    }

    fn open_device(ordinal: usize, rocblas: rb::RocBlas) -> Result<Self, Error> {
        let info = device_info(ordinal)?;
        let device = ordinal as i32;
        let mut stream: hip::hipStream_t = std::ptr::null_mut();
        // SAFETY: out-pointer valid; the device is made current first.
        unsafe {
            ck("hipSetDevice", hip::hipSetDevice(device))?;
            ck(
                "hipStreamCreateWithFlags",
                hip::hipStreamCreateWithFlags(&mut stream, hip::hipStreamNonBlocking),
            )?;
        }
        let handle = rocblas
            .create_handle()
            .map_err(|e| rocblas_error(&e, rocblas.path()))?;
        // SAFETY: handle and stream are live and belong to the current device.
        unsafe { rocblas.set_stream(handle, stream as rb::hipStream_t) }
            .map_err(|e| rocblas_error(&e, ""))?;
        Ok(HipVendor {
            info,
            device,
            stream,
            rocblas,
            blas: Mutex::new(handle),
        })
    }

    /// Makes this device current on the calling thread (HIP's current device is per thread).
    fn bind(&self) -> Result<(), Error> {
        // SAFETY: `device` is a valid ordinal.
        ck("hipSetDevice", unsafe { hip::hipSetDevice(self.device) })
    }

    fn sync_stream(&self) -> Result<(), Error> {
        // SAFETY: `stream` is live.
        ck("hipStreamSynchronize", unsafe {
            hip::hipStreamSynchronize(self.stream)
        })
    }
}

impl Drop for HipVendor {
    fn drop(&mut self) {
        // Best effort: errors at teardown have no one to report to.
        // SAFETY: the handles are ours and nothing uses them after this.
        unsafe {
            let _ = hip::hipSetDevice(self.device);
            let _ = hip::hipStreamSynchronize(self.stream);
            if let Ok(h) = self.blas.lock() {
                let _ = self.rocblas.destroy_handle(*h);
            }
            let _ = hip::hipStreamDestroy(self.stream);
        }
    }
}

/// # Safety
/// `prog` is a live program.
unsafe fn program_log(prog: hip::hiprtcProgram) -> String {
    let mut size = 0usize;
    if hip::hiprtcGetProgramLogSize(prog, &mut size) != hip::hiprtcResult_HIPRTC_SUCCESS
        || size <= 1
    {
        return String::new();
    }
    let mut buf = vec![0 as c_char; size];
    hip::hiprtcGetProgramLog(prog, buf.as_mut_ptr());
    CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
}

fn cstring(what: &str, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| {
        vendor_error(
            "hiprtcCreateProgram",
            "invalid input",
            &format!("{what} contains a NUL byte"),
        )
    })
}

impl Vendor for HipVendor {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, Error> {
        if bytes == 0 {
            return Ok(0);
        }
        self.bind()?;
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: writes one device pointer.
        let s = unsafe { hip::hipMalloc(&mut p, bytes) };
        if s != hip::hipError_t_hipSuccess {
            return Err(hip_error("hipMalloc", s, &format!("{bytes} bytes")));
        }
        Ok(p as DevicePtr)
    }

    unsafe fn free(&self, ptr: DevicePtr) -> Result<(), Error> {
        if ptr == 0 {
            return Ok(());
        }
        self.bind()?;
        self.sync_stream()?;
        ck("hipFree", hip::hipFree(ptr as *mut c_void))
    }

    fn htod(&self, dst: DevicePtr, src: &[u8]) -> Result<(), Error> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `src` is valid for its length until the synchronize below returns.
        ck("hipMemcpyHtoDAsync", unsafe {
            hip::hipMemcpyHtoDAsync(
                dst as hip::hipDeviceptr_t,
                src.as_ptr() as *const c_void,
                src.len(),
                self.stream,
            )
        })?;
        self.sync_stream()
    }

    fn dtoh(&self, dst: &mut [u8], src: DevicePtr) -> Result<(), Error> {
        if dst.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `dst` is valid for its length until the synchronize below returns.
        ck("hipMemcpyDtoHAsync", unsafe {
            hip::hipMemcpyDtoHAsync(
                dst.as_mut_ptr() as *mut c_void,
                src as hip::hipDeviceptr_t,
                dst.len(),
                self.stream,
            )
        })?;
        self.sync_stream()
    }

    fn dtod(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: device-side copy; the caller guarantees the ranges (trait contract).
        ck("hipMemcpyDtoDAsync", unsafe {
            hip::hipMemcpyDtoDAsync(
                dst as hip::hipDeviceptr_t,
                src as hip::hipDeviceptr_t,
                bytes,
                self.stream,
            )
        })
    }

    fn memset(&self, dst: DevicePtr, value: u8, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: device-side fill; the caller guarantees the range (trait contract).
        ck("hipMemsetD8Async", unsafe {
            hip::hipMemsetD8Async(dst as hip::hipDeviceptr_t, value, bytes, self.stream)
        })
    }

    fn compile(&self, input: &CompileInput<'_>) -> Result<Vec<u8>, Error> {
        let src = cstring("source", input.source)?;
        let name = cstring("name", input.name)?;
        let texts = input
            .headers
            .iter()
            .map(|(_, t)| cstring("header", t))
            .collect::<Result<Vec<_>, _>>()?;
        let names = input
            .headers
            .iter()
            .map(|(n, _)| cstring("header name", n))
            .collect::<Result<Vec<_>, _>>()?;
        // hipRTC takes the full gcnArchName (features included) as the architecture.
        let mut opts = vec![cstring(
            "option",
            &format!("--gpu-architecture={}", self.info.arch),
        )?];
        for o in input.options {
            opts.push(cstring("option", o)?);
        }
        let text_ptrs: Vec<*const c_char> = texts.iter().map(|c| c.as_ptr()).collect();
        let name_ptrs: Vec<*const c_char> = names.iter().map(|c| c.as_ptr()).collect();
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|c| c.as_ptr()).collect();
        let mut prog: hip::hiprtcProgram = std::ptr::null_mut();
        // SAFETY: every pointer refers to a NUL-terminated string alive until the end of this
        // function; the program is destroyed on every path after creation.
        unsafe {
            let s = hip::hiprtcCreateProgram(
                &mut prog,
                src.as_ptr(),
                name.as_ptr(),
                text_ptrs.len() as i32,
                text_ptrs.as_ptr(),
                name_ptrs.as_ptr(),
            );
            if s != hip::hiprtcResult_HIPRTC_SUCCESS {
                return Err(hiprtc_error("hiprtcCreateProgram", s, input.name));
            }
            let result = (|| {
                let s = hip::hiprtcCompileProgram(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr());
                if s != hip::hiprtcResult_HIPRTC_SUCCESS {
                    let log = program_log(prog);
                    return Err(hiprtc_error(
                        "hiprtcCompileProgram",
                        s,
                        &format!("{} for {}: {}", input.name, self.info.arch, log.trim()),
                    ));
                }
                let mut size = 0usize;
                let s = hip::hiprtcGetCodeSize(prog, &mut size);
                if s != hip::hiprtcResult_HIPRTC_SUCCESS {
                    return Err(hiprtc_error("hiprtcGetCodeSize", s, input.name));
                }
                let mut code = vec![0u8; size];
                let s = hip::hiprtcGetCode(prog, code.as_mut_ptr() as *mut c_char);
                if s != hip::hiprtcResult_HIPRTC_SUCCESS {
                    return Err(hiprtc_error("hiprtcGetCode", s, input.name));
                }
                Ok(code)
            })();
            hip::hiprtcDestroyProgram(&mut prog);
            result
        }
    }

    fn load_module(&self, image: &[u8]) -> Result<ModuleHandle, Error> {
        self.bind()?;
        let mut m: hip::hipModule_t = std::ptr::null_mut();
        // SAFETY: `image` is a complete code object in memory for the duration of the call.
        ck("hipModuleLoadData", unsafe {
            hip::hipModuleLoadData(&mut m, image.as_ptr() as *const c_void)
        })?;
        Ok(ModuleHandle(m as usize))
    }

    fn get_function(
        &self,
        module: ModuleHandle,
        name: &str,
    ) -> Result<Option<FunctionHandle>, Error> {
        self.bind()?;
        let cname = CString::new(name)
            .map_err(|_| vendor_error("hipModuleGetFunction", "invalid name", name))?;
        let mut f: hip::hipFunction_t = std::ptr::null_mut();
        // SAFETY: `module` came from load_module on this vendor and is never unloaded.
        let s = unsafe {
            hip::hipModuleGetFunction(&mut f, module.0 as hip::hipModule_t, cname.as_ptr())
        };
        match s {
            hip::hipError_t_hipSuccess => Ok(Some(FunctionHandle(f as usize))),
            hip::hipError_t_hipErrorNotFound => Ok(None),
            s => Err(hip_error("hipModuleGetFunction", s, name)),
        }
    }

    unsafe fn launch(
        &self,
        f: FunctionHandle,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), Error> {
        self.bind()?;
        let mut slots = super::cuda::arg_slots(args);
        let mut ptrs: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut u64 as *mut c_void)
            .collect();
        ck(
            "hipModuleLaunchKernel",
            hip::hipModuleLaunchKernel(
                f.0 as hip::hipFunction_t,
                cfg.grid.0,
                cfg.grid.1,
                cfg.grid.2,
                cfg.block.0,
                cfg.block.1,
                cfg.block.2,
                cfg.shared_bytes,
                self.stream,
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            ),
        )
    }

    unsafe fn gemm_f32_out(&self, g: &Gemm) -> Result<(), Error> {
        self.bind()?;
        let op = |t: bool| {
            if t {
                rb::rocblas_operation_transpose
            } else {
                rb::rocblas_operation_none
            }
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        let inputs = match g.inputs {
            DType::BF16 => rb::rocblas_datatype_bf16_r,
            DType::F16 => rb::rocblas_datatype_f16_r,
            DType::F32 => rb::rocblas_datatype_f32_r,
            other => {
                return Err(vendor_error(
                    "rocblas_gemm_ex",
                    "unsupported",
                    &format!("{other} inputs"),
                ))
            }
        };
        let handle = self
            .blas
            .lock()
            .map_err(|_| vendor_error("rocblas_gemm_ex", "poisoned", "rocBLAS handle lock"))?;
        self.rocblas
            .gemm_ex(
                *handle,
                op(g.trans_a),
                op(g.trans_b),
                g.m,
                g.n,
                g.k,
                &alpha as *const f32 as *const c_void,
                g.a as *const c_void,
                inputs,
                g.lda,
                g.b as *const c_void,
                inputs,
                g.ldb,
                &beta as *const f32 as *const c_void,
                g.c as *mut c_void,
                rb::rocblas_datatype_f32_r,
                g.ldc,
                rb::rocblas_datatype_f32_r,
            )
            .map_err(|e| rocblas_error(&e, &format!("m {} n {} k {}", g.m, g.n, g.k)))
    }

    fn synchronize(&self) -> Result<(), Error> {
        self.bind()?;
        self.sync_stream()
    }

    fn event_create(&self) -> Result<EventHandle, Error> {
        self.bind()?;
        let mut e: hip::hipEvent_t = std::ptr::null_mut();
        // SAFETY: writes one event handle.
        ck("hipEventCreate", unsafe { hip::hipEventCreate(&mut e) })?;
        Ok(EventHandle(e as usize))
    }

    fn event_record(&self, e: EventHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `e` came from event_create on this vendor.
        ck("hipEventRecord", unsafe {
            hip::hipEventRecord(e.0 as hip::hipEvent_t, self.stream)
        })
    }

    fn event_elapsed_ms(&self, start: EventHandle, end: EventHandle) -> Result<f32, Error> {
        self.bind()?;
        let mut ms = 0.0f32;
        // SAFETY: both events came from event_create on this vendor and were recorded.
        unsafe {
            ck(
                "hipEventSynchronize",
                hip::hipEventSynchronize(end.0 as hip::hipEvent_t),
            )?;
            ck(
                "hipEventElapsedTime",
                hip::hipEventElapsedTime(
                    &mut ms,
                    start.0 as hip::hipEvent_t,
                    end.0 as hip::hipEvent_t,
                ),
            )?;
        }
        Ok(ms)
    }

    fn event_destroy(&self, e: EventHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `e` came from event_create and is not used afterwards.
        ck("hipEventDestroy", unsafe {
            hip::hipEventDestroy(e.0 as hip::hipEvent_t)
        })
    }

    fn begin_capture(&self) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: the stream is this vendor's; thread-local mode leaves other threads alone.
        ck("hipStreamBeginCapture", unsafe {
            hip::hipStreamBeginCapture(
                self.stream,
                hip::hipStreamCaptureMode_hipStreamCaptureModeThreadLocal,
            )
        })
    }

    fn end_capture(&self) -> Result<GraphHandle, Error> {
        self.bind()?;
        let mut graph: hip::hipGraph_t = std::ptr::null_mut();
        let mut exec: hip::hipGraphExec_t = std::ptr::null_mut();
        // SAFETY: ends the capture begun on this stream; out-pointers valid (no error node or
        // log buffer requested). The graph is not needed once instantiated.
        unsafe {
            ck(
                "hipStreamEndCapture",
                hip::hipStreamEndCapture(self.stream, &mut graph),
            )?;
            let r = ck(
                "hipGraphInstantiate",
                hip::hipGraphInstantiate(
                    &mut exec,
                    graph,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    0,
                ),
            );
            let _ = hip::hipGraphDestroy(graph);
            r?;
        }
        Ok(GraphHandle(exec as usize))
    }

    fn graph_launch(&self, g: GraphHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `g` came from end_capture on this vendor.
        ck("hipGraphLaunch", unsafe {
            hip::hipGraphLaunch(g.0 as hip::hipGraphExec_t, self.stream)
        })
    }

    fn graph_destroy(&self, g: GraphHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `g` came from end_capture and is not used afterwards.
        ck("hipGraphExecDestroy", unsafe {
            hip::hipGraphExecDestroy(g.0 as hip::hipGraphExec_t)
        })
    }
}

#[cfg(test)]
mod shim_tests {
    use super::*;

    #[test]
    fn cubecl_names_are_recognised_and_versioned_ones_are_not() {
        assert!(cubecl_opens("/opt/rocm/lib/libamdhip64.so", "amdhip64"));
        assert!(cubecl_opens("libhiprtc.so.1", "hiprtc"));
        assert!(!cubecl_opens(
            "/opt/rocm-7.0/lib/libamdhip64.so.7",
            "amdhip64"
        ));
        assert!(!cubecl_opens("libhiprtc.so.6", "hiprtc"));
    }

    #[test]
    fn a_shim_names_versioned_files_as_cubecl_expects() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("libamdhip64.so.7");
        std::fs::write(&real, b"x").unwrap();
        let lib = d.path().join("shim/lib");
        for _ in 0..2 {
            // twice: an existing shim is replaced, not an error
            make_shim(&lib, &[("libamdhip64.so", real.to_str().unwrap())]).unwrap();
        }
        assert_eq!(
            std::fs::read_link(lib.join("libamdhip64.so")).unwrap(),
            real
        );
        assert_eq!(std::fs::read(lib.join("libamdhip64.so")).unwrap(), b"x");
    }

    #[test]
    fn mapped_libraries_are_found_by_file_name() {
        // The C library is mapped in every test process.
        let libc = mapped_path("libc.so.6").expect("libc.so.6 in /proc/self/maps");
        assert!(
            libc.starts_with('/') && libc.ends_with("/libc.so.6"),
            "{libc}"
        );
        assert_eq!(mapped_path("libnot-a-real-library.so.9"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hip_status_maps_to_a_typed_error_with_name_and_code() {
        // hip_runtime_api.h: hipErrorOutOfMemory = 2, hipErrorNotFound = 500.
        assert_eq!(hip::hipError_t_hipErrorOutOfMemory, 2);
        let e = hip_error("hipMalloc", hip::hipError_t_hipErrorOutOfMemory, "64 bytes");
        match &e {
            Error::Backend {
                backend,
                op,
                detail,
            } => {
                assert_eq!(*backend, "gpu");
                assert_eq!(op, "hipMalloc");
                assert_eq!(detail, "hipErrorOutOfMemory (2): 64 bytes");
            }
            other => panic!("expected Error::Backend, got {other:?}"),
        }
        assert_eq!(
            ck("hipModuleLaunchKernel", 701).unwrap_err().to_string(),
            "backend gpu: hipModuleLaunchKernel: hipErrorLaunchOutOfResources (701)"
        );
        assert_eq!(hip_status_name(12345), "hipError (12345)");
        assert!(ck("hipInit", 0).is_ok());
    }

    #[test]
    fn hip_status_table_matches_the_bindings() {
        for (code, name) in HIP_ERRORS {
            let expected = match name {
                "hipSuccess" => hip::hipError_t_hipSuccess,
                "hipErrorInvalidValue" => hip::hipError_t_hipErrorInvalidValue,
                "hipErrorOutOfMemory" => hip::hipError_t_hipErrorOutOfMemory,
                "hipErrorNotFound" => hip::hipError_t_hipErrorNotFound,
                "hipErrorInvalidImage" => hip::hipError_t_hipErrorInvalidImage,
                "hipErrorNoBinaryForGpu" => hip::hipError_t_hipErrorNoBinaryForGpu,
                "hipErrorLaunchFailure" => hip::hipError_t_hipErrorLaunchFailure,
                "hipErrorIllegalAddress" => hip::hipError_t_hipErrorIllegalAddress,
                _ => code,
            };
            assert_eq!(code, expected, "{name}");
        }
    }

    #[test]
    fn hiprtc_and_rocblas_statuses_map_too() {
        assert_eq!(
            hiprtc_error(
                "hiprtcCompileProgram",
                hip::hiprtcResult_HIPRTC_ERROR_COMPILATION,
                "rope.hip"
            )
            .to_string(),
            "backend gpu: hiprtcCompileProgram: HIPRTC_ERROR_COMPILATION (6): rope.hip"
        );
        assert_eq!(
            hiprtc_error("hiprtcCompileProgram", 100, "").to_string(),
            "backend gpu: hiprtcCompileProgram: HIPRTC_ERROR_LINKING (100)"
        );
        let e = rb::CallError {
            call: "rocblas_gemm_ex",
            status: 5,
        };
        assert_eq!(
            rocblas_error(&e, "m 1 n 1 k 1").to_string(),
            "backend gpu: rocblas_gemm_ex: rocblas_status_memory_error (5): m 1 n 1 k 1"
        );
    }
}
