//! AMD: the HIP runtime and hipRTC through the workspace's `hip-sys`, rocBLAS through
//! `rocblas-sys`, all loaded at run time. One device, one non-blocking stream, one rocBLAS
//! handle bound to it.
//!
//! The runtime is loaded once per process ([`runtime`]). `hip-sys` looks for libamdhip64
//! under the sonames of ROCm 7, 6 and HIP 5 (`$WAVEFRONT_HIP_LIB` names one file instead), for
//! hipRTC in libhiprtc or, on HIP 5, in the runtime itself, and resolves every function at
//! load, falling back from `hipGetDevicePropertiesR0600` to HIP 5's `hipGetDeviceProperties`.
//! So: no runtime library, or a runtime that reports no device, is [`OpenError::Unavailable`];
//! a loaded runtime missing a function, or any failing call, is [`OpenError::Failed`].
//! rocBLAS is loaded only once a device exists ([`HipVendor::open`]).
//!
//! Kernels compile without a device ([`compile_for`]): CI loads Debian 12's HIP 5.2 (no AMD
//! device there), checks the no-device reason and compiles every kernel with its hipRTC
//! (`engine/tests/hip_runtime.rs`). Everything that needs an AMD GPU runs in the ROCm
//! golden-token workflow.

use std::ffi::{c_void, CString};
use std::sync::{Mutex, OnceLock};

use hip_sys::{self as hip, CallError, CompileError, Hip, LoadError};
use rocblas_sys as rb;

use super::{
    vendor_error, CompileInput, DeviceInfo, DevicePtr, EventHandle, FunctionHandle, Gemm,
    GraphHandle, KernelArg, LaunchConfig, ModuleHandle, OpenError, Runtime, Vendor,
};
use crate::error::Error;
use crate::tensor::DType;

/// `hipErrorOutOfMemory (2)`; unknown codes keep their number. Needs no library.
pub fn hip_status_name(status: hip::hipError_t) -> String {
    match hip::status_name(status) {
        Some(n) => format!("{n} ({status})"),
        None => format!("hipError ({status})"),
    }
}

pub fn hip_error(op: &str, status: hip::hipError_t, context: &str) -> Error {
    vendor_error(op, &hip_status_name(status), context)
}

fn call_error(e: CallError, context: &str) -> Error {
    hip_error(e.call, e.status, context)
}

fn ck(r: Result<(), CallError>) -> Result<(), Error> {
    r.map_err(|e| call_error(e, ""))
}

pub fn hiprtc_error(op: &str, status: hip::hiprtcResult, context: &str) -> Error {
    let name = hip::rtc_status_name(status).unwrap_or("HIPRTC_ERROR");
    vendor_error(op, &format!("{name} ({status})"), context)
}

/// A hipRTC failure for `file` compiled for `arch`; a compile error carries the log.
fn compile_error(e: CompileError, file: &str, arch: &str) -> Error {
    match e {
        CompileError::Nul { what } => vendor_error(
            "hiprtcCreateProgram",
            "invalid input",
            &format!("{file}: the {what} contains a NUL byte"),
        ),
        CompileError::Call { call, status, log } if !log.trim().is_empty() => {
            hiprtc_error(call, status, &format!("{file} for {arch}: {}", log.trim()))
        }
        CompileError::Call { call, status, .. } => {
            hiprtc_error(call, status, &format!("{file} for {arch}"))
        }
    }
}

pub fn rocblas_error(e: &rb::CallError, context: &str) -> Error {
    vendor_error(
        e.call,
        &format!("{} ({})", rb::status_name(e.status), e.status),
        context,
    )
}

/// No library is a reason to skip; a library missing a function is a broken install.
fn load_error(e: &LoadError) -> OpenError {
    match e {
        LoadError::Library { .. } => OpenError::Unavailable(e.to_string()),
        LoadError::Symbol {
            library,
            symbol,
            detail,
        } => OpenError::Failed(vendor_error(
            symbol,
            "missing from the HIP runtime",
            &format!("{library}: {detail}"),
        )),
    }
}

static HIP: OnceLock<Result<Hip, LoadError>> = OnceLock::new();

/// The HIP runtime of this process, loaded (and every function resolved) on first use.
pub fn runtime() -> Result<&'static Hip, OpenError> {
    HIP.get_or_init(Hip::load).as_ref().map_err(load_error)
}

/// The device count from `hipInit` and `hipGetDeviceCount`. With no device HIP 5.2 answers
/// `hipErrorInvalidDevice` to the first and `hipErrorNoDevice` to the second; ROCm 6/7 answer
/// `hipErrorNoDevice`. Both mean 0; any other failure is an error.
fn count_devices(
    init: Result<(), CallError>,
    count: Result<i32, CallError>,
) -> Result<usize, Error> {
    let means_none = |s| s == hip::hipErrorNoDevice || s == hip::hipErrorInvalidDevice;
    if let Err(e) = init {
        if !means_none(e.status) {
            return Err(call_error(e, ""));
        }
    }
    match count {
        Ok(n) if n > 0 => match init {
            Ok(()) => Ok(n as usize),
            Err(e) => Err(call_error(
                e,
                &format!("hipGetDeviceCount reports {n} devices"),
            )),
        },
        Ok(_) => Ok(0),
        Err(e) if e.status == hip::hipErrorNoDevice => Ok(0),
        Err(e) => Err(call_error(e, "")),
    }
}

/// The number of devices (at least 1), or why there is none.
fn present_devices(hip: &Hip) -> Result<usize, OpenError> {
    match count_devices(hip.init(), hip.device_count())? {
        0 => Err(OpenError::Unavailable(no_device_reason(hip))),
        n => Ok(n),
    }
}

/// `the HIP runtime (libamdhip64.so.5, HIP 5.2.21153) loads but reports no device`.
fn no_device_reason(hip: &Hip) -> String {
    let version = match hip.runtime_version() {
        Ok(v) => format!("HIP {v}"),
        Err(e) => format!("version unknown: {e}"),
    };
    format!(
        "the HIP runtime ({}, {version}) loads but reports no device",
        hip.path()
    )
}

/// `HIP runtime 50221153, hipRTC 9.0`: part of the kernel cache key.
fn versions(hip: &Hip) -> Result<String, Error> {
    let rt = hip.runtime_version().map_err(|e| call_error(e, ""))?;
    let (major, minor) = hip.rtc_version().map_err(|e| match e {
        CompileError::Call { call, status, .. } => hiprtc_error(call, status, ""),
        other => vendor_error("hiprtcVersion", &other.to_string(), ""),
    })?;
    Ok(format!("HIP runtime {}, hipRTC {major}.{minor}", rt.raw))
}

fn device_info(hip: &Hip, ordinal: usize) -> Result<DeviceInfo, Error> {
    let d = ordinal as i32;
    let attr = |a| {
        hip.device_attribute(a, d)
            .map(|v| v.max(0) as u32)
            .map_err(|e| call_error(e, ""))
    };
    Ok(DeviceInfo {
        runtime: Runtime::Hip,
        ordinal,
        name: hip.device_name(d).map_err(|e| call_error(e, ""))?,
        arch: hip.gcn_arch_name(d).map_err(|e| call_error(e, ""))?,
        wave: attr(hip::hipDeviceAttributeWarpSize)?,
        total_memory: hip.device_total_mem(d).map_err(|e| call_error(e, ""))?,
        multiprocessors: attr(hip::hipDeviceAttributeMultiprocessorCount)?,
        runtime_version: versions(hip)?,
    })
}

/// Every HIP device, or why there are none.
pub fn devices() -> Result<Vec<DeviceInfo>, OpenError> {
    let hip = runtime()?;
    let n = present_devices(hip)?;
    (0..n)
        .map(|i| device_info(hip, i).map_err(OpenError::from))
        .collect()
}

/// Compiles `input` with hipRTC for `arch` (a gcnArchName such as `gfx90a` or
/// `gfx90a:sramecc+:xnack-`). Needs the runtime library, not a device.
pub fn compile_for(arch: &str, input: &CompileInput<'_>) -> Result<Vec<u8>, Error> {
    let hip = runtime().map_err(|e| match e {
        OpenError::Failed(e) => e,
        OpenError::Unavailable(r) => vendor_error("hiprtcCompileProgram", "no hipRTC", &r),
    })?;
    let mut options = vec![format!("--gpu-architecture={arch}")];
    options.extend(input.options.iter().cloned());
    hip.compile(&hip::Program {
        name: input.name,
        source: input.source,
        headers: input.headers,
        options: &options,
    })
    .map_err(|e| compile_error(e, input.name, arch))
}

fn dptr(p: DevicePtr) -> hip::hipDeviceptr_t {
    p as usize as *mut c_void
}

pub struct HipVendor {
    hip: &'static Hip,
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
        let hip = runtime()?;
        let n = present_devices(hip)?;
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
        Ok(Self::open_device(hip, ordinal, rocblas)?)
    }

    fn open_device(hip: &'static Hip, ordinal: usize, rocblas: rb::RocBlas) -> Result<Self, Error> {
        let info = device_info(hip, ordinal)?;
        let device = ordinal as i32;
        ck(hip.set_device(device))?;
        let stream = hip
            .stream_create(hip::hipStreamNonBlocking)
            .map_err(|e| call_error(e, ""))?;
        let vendor = HipVendor {
            hip,
            info,
            device,
            stream,
            rocblas,
            blas: Mutex::new(std::ptr::null_mut()),
        };
        // From here on Drop releases the stream (and the handle once set).
        let handle = vendor
            .rocblas
            .create_handle()
            .map_err(|e| rocblas_error(&e, vendor.rocblas.path()))?;
        if let Ok(mut h) = vendor.blas.lock() {
            *h = handle;
        }
        // SAFETY: handle and stream are live and belong to the current device.
        unsafe {
            vendor
                .rocblas
                .set_stream(handle, vendor.stream as rb::hipStream_t)
        }
        .map_err(|e| rocblas_error(&e, ""))?;
        Ok(vendor)
    }

    /// Makes this device current on the calling thread (HIP's current device is per thread).
    fn bind(&self) -> Result<(), Error> {
        ck(self.hip.set_device(self.device))
    }

    fn sync_stream(&self) -> Result<(), Error> {
        // SAFETY: `stream` is live for `self`'s lifetime.
        ck(unsafe { self.hip.stream_synchronize(self.stream) })
    }
}

impl Drop for HipVendor {
    fn drop(&mut self) {
        // Best effort: errors at teardown have no one to report to.
        let _ = self.hip.set_device(self.device);
        // SAFETY: the handles are ours and nothing uses them after this.
        unsafe {
            let _ = self.hip.stream_synchronize(self.stream);
            if let Ok(h) = self.blas.lock() {
                if !h.is_null() {
                    let _ = self.rocblas.destroy_handle(*h);
                }
            }
            let _ = self.hip.stream_destroy(self.stream);
        }
    }
}

fn c_name(op: &str, name: &str) -> Result<CString, Error> {
    CString::new(name).map_err(|_| vendor_error(op, "invalid name", name))
}

impl Vendor for HipVendor {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn memory_info(&self) -> Result<(usize, usize), Error> {
        self.bind()?;
        self.hip.mem_get_info().map_err(|e| call_error(e, ""))
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, Error> {
        if bytes == 0 {
            return Ok(0);
        }
        self.bind()?;
        self.hip
            .malloc(bytes)
            .map(|p| p as usize as DevicePtr)
            .map_err(|e| call_error(e, &format!("{bytes} bytes")))
    }

    unsafe fn free(&self, ptr: DevicePtr) -> Result<(), Error> {
        if ptr == 0 {
            return Ok(());
        }
        self.bind()?;
        self.sync_stream()?;
        ck(self.hip.free(dptr(ptr)))
    }

    fn htod(&self, dst: DevicePtr, src: &[u8]) -> Result<(), Error> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `src` stays borrowed until the synchronize below returns; the caller
        // guarantees the destination range (trait contract).
        ck(unsafe { self.hip.memcpy_htod_async(dptr(dst), src, self.stream) })?;
        self.sync_stream()
    }

    fn dtoh(&self, dst: &mut [u8], src: DevicePtr) -> Result<(), Error> {
        if dst.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `dst` stays borrowed until the synchronize below returns; the caller
        // guarantees the source range (trait contract).
        ck(unsafe { self.hip.memcpy_dtoh_async(dst, dptr(src), self.stream) })?;
        self.sync_stream()
    }

    fn host_alloc(&self, bytes: usize) -> Result<*mut u8, Error> {
        self.bind()?;
        let p = self
            .hip
            .host_malloc(bytes.max(1))
            .map_err(|e| call_error(e, &format!("{bytes} bytes")))?;
        Ok(p as *mut u8)
    }

    unsafe fn host_free(&self, ptr: *mut u8) -> Result<(), Error> {
        if ptr.is_null() {
            return Ok(());
        }
        self.bind()?;
        self.sync_stream()?;
        ck(self.hip.host_free(ptr as *mut std::ffi::c_void))
    }

    unsafe fn dtoh_async(&self, dst: *mut u8, src: DevicePtr, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        ck(self.hip.memcpy_dtoh_async_raw(
            dst as *mut std::ffi::c_void,
            dptr(src),
            bytes,
            self.stream,
        ))
    }

    fn dtod(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: device-side copy; the caller guarantees the ranges (trait contract).
        ck(unsafe {
            self.hip
                .memcpy_dtod_async(dptr(dst), dptr(src), bytes, self.stream)
        })
    }

    fn memset(&self, dst: DevicePtr, value: u8, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: device-side fill; the caller guarantees the range (trait contract).
        ck(unsafe {
            self.hip
                .memset_d8_async(dptr(dst), value, bytes, self.stream)
        })
    }

    fn compile(&self, input: &CompileInput<'_>) -> Result<Vec<u8>, Error> {
        // hipRTC takes the full gcnArchName (features included) as the architecture.
        compile_for(&self.info.arch, input)
    }

    fn load_module(&self, image: &[u8]) -> Result<ModuleHandle, Error> {
        self.bind()?;
        // SAFETY: `image` is a code object produced by hipRTC (or a checksummed cache entry
        // of one) and stays in memory for the duration of the call.
        let m = unsafe { self.hip.module_load_data(image) }.map_err(|e| call_error(e, ""))?;
        Ok(ModuleHandle(m as usize))
    }

    fn get_function(
        &self,
        module: ModuleHandle,
        name: &str,
    ) -> Result<Option<FunctionHandle>, Error> {
        self.bind()?;
        let cname = c_name("hipModuleGetFunction", name)?;
        // SAFETY: `module` came from load_module on this vendor and is never unloaded.
        let f = unsafe {
            self.hip
                .module_get_function(module.0 as hip::hipModule_t, &cname)
        }
        .map_err(|e| call_error(e, name))?;
        Ok(f.map(|f| FunctionHandle(f as usize)))
    }

    fn resident_blocks(
        &self,
        f: FunctionHandle,
        block: u32,
        shared_bytes: u32,
    ) -> Result<Option<u32>, Error> {
        self.bind()?;
        // SAFETY: f came from get_function on this vendor; its module is never unloaded.
        let n = unsafe {
            self.hip.module_occupancy(
                f.0 as hip::hipFunction_t,
                block as i32,
                shared_bytes as usize,
            )
        }
        .map_err(|e| call_error(e, "occupancy"))?;
        Ok(u32::try_from(n).ok())
    }

    fn module_global(
        &self,
        module: ModuleHandle,
        name: &str,
    ) -> Result<Option<(DevicePtr, usize)>, Error> {
        self.bind()?;
        let cname = c_name("hipModuleGetGlobal", name)?;
        // SAFETY: `module` came from load_module on this vendor and is never unloaded.
        let g = unsafe {
            self.hip
                .module_get_global(module.0 as hip::hipModule_t, &cname)
        }
        .map_err(|e| call_error(e, name))?;
        Ok(g.map(|(p, bytes)| (p as usize as DevicePtr, bytes)))
    }

    unsafe fn launch(
        &self,
        f: FunctionHandle,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), Error> {
        self.bind()?;
        let mut slots = super::cuda::ArgSlots::new(args);
        let mut ptrs = slots.pointers();
        ck(self.hip.module_launch_kernel(
            f.0 as hip::hipFunction_t,
            cfg.grid,
            cfg.block,
            cfg.shared_bytes,
            self.stream,
            &mut ptrs,
        ))
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
        let e = self.hip.event_create().map_err(|e| call_error(e, ""))?;
        Ok(EventHandle(e as usize))
    }

    fn event_record(&self, e: EventHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `e` came from event_create on this vendor; the stream is live.
        ck(unsafe { self.hip.event_record(e.0 as hip::hipEvent_t, self.stream) })
    }

    fn event_synchronize(&self, e: EventHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `e` came from event_create on this vendor.
        ck(unsafe { self.hip.event_synchronize(e.0 as hip::hipEvent_t) })
    }

    fn event_elapsed_ms(&self, start: EventHandle, end: EventHandle) -> Result<f32, Error> {
        self.bind()?;
        let (start, end) = (start.0 as hip::hipEvent_t, end.0 as hip::hipEvent_t);
        // SAFETY: both events came from event_create on this vendor and were recorded.
        unsafe {
            ck(self.hip.event_synchronize(end))?;
            self.hip
                .event_elapsed_ms(start, end)
                .map_err(|e| call_error(e, ""))
        }
    }

    fn event_destroy(&self, e: EventHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `e` came from event_create and is not used afterwards.
        ck(unsafe { self.hip.event_destroy(e.0 as hip::hipEvent_t) })
    }

    fn begin_capture(&self) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: the stream is this vendor's (not the null stream); thread-local mode leaves
        // other threads alone.
        ck(unsafe {
            self.hip
                .stream_begin_capture(self.stream, hip::hipStreamCaptureModeThreadLocal)
        })
    }

    fn end_capture(&self) -> Result<GraphHandle, Error> {
        self.bind()?;
        // SAFETY: ends the capture begun on this stream; the graph is not needed once
        // instantiated (the executable graph is independent of it) and is destroyed either way.
        let exec = unsafe {
            let graph = self
                .hip
                .stream_end_capture(self.stream)
                .map_err(|e| call_error(e, ""))?;
            let exec = self.hip.graph_instantiate(graph);
            let _ = self.hip.graph_destroy(graph);
            exec.map_err(|e| call_error(e, ""))?
        };
        Ok(GraphHandle(exec as usize))
    }

    fn graph_launch(&self, g: GraphHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `g` came from end_capture on this vendor; the stream is live.
        ck(unsafe {
            self.hip
                .graph_launch(g.0 as hip::hipGraphExec_t, self.stream)
        })
    }

    fn graph_destroy(&self, g: GraphHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `g` came from end_capture and is not used afterwards.
        ck(unsafe { self.hip.graph_exec_destroy(g.0 as hip::hipGraphExec_t) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(call: &'static str, status: hip::hipError_t) -> CallError {
        CallError { call, status }
    }

    #[test]
    fn hip_status_maps_to_a_typed_error_with_name_and_code() {
        // hip_runtime_api.h: hipErrorOutOfMemory = 2.
        let e = hip_error("hipMalloc", hip::hipErrorOutOfMemory, "64 bytes");
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
            ck(Err(err("hipModuleLaunchKernel", 701)))
                .unwrap_err()
                .to_string(),
            "backend gpu: hipModuleLaunchKernel: hipErrorLaunchOutOfResources (701)"
        );
        assert_eq!(hip_status_name(12345), "hipError (12345)");
        assert!(ck(Ok(())).is_ok());
    }

    #[test]
    fn hiprtc_and_rocblas_statuses_map_too() {
        assert_eq!(
            hiprtc_error(
                "hiprtcCompileProgram",
                hip::HIPRTC_ERROR_COMPILATION,
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

    #[test]
    fn compile_errors_carry_the_file_arch_and_log() {
        let e = CompileError::Call {
            call: "hiprtcCompileProgram",
            status: 6,
            log: "  rope.hip:3:1: error: expected unqualified-id\n".into(),
        };
        assert_eq!(
            compile_error(e, "rope.hip", "gfx90a").to_string(),
            "backend gpu: hiprtcCompileProgram: HIPRTC_ERROR_COMPILATION (6): rope.hip for \
             gfx90a: rope.hip:3:1: error: expected unqualified-id"
        );
        let e = CompileError::Call {
            call: "hiprtcGetCodeSize",
            status: 4,
            log: String::new(),
        };
        assert_eq!(
            compile_error(e, "add.hip", "gfx1030").to_string(),
            "backend gpu: hiprtcGetCodeSize: HIPRTC_ERROR_INVALID_PROGRAM (4): add.hip for gfx1030"
        );
        let e = CompileError::Nul { what: "option" };
        assert_eq!(
            compile_error(e, "add.hip", "gfx90a").to_string(),
            "backend gpu: hiprtcCreateProgram: invalid input: add.hip: the option contains a NUL \
             byte"
        );
    }

    #[test]
    fn no_device_answers_are_zero_devices_and_other_failures_are_errors() {
        let (no_dev, bad_dev) = (hip::hipErrorNoDevice, hip::hipErrorInvalidDevice);
        // HIP 5.2 with no AMD device (measured): hipInit 101, hipGetDeviceCount 100.
        assert_eq!(
            count_devices(
                Err(err("hipInit", bad_dev)),
                Err(err("hipGetDeviceCount", no_dev))
            )
            .unwrap(),
            0
        );
        // ROCm 6/7: hipErrorNoDevice from both; or success with a count of 0.
        assert_eq!(
            count_devices(
                Err(err("hipInit", no_dev)),
                Err(err("hipGetDeviceCount", no_dev))
            )
            .unwrap(),
            0
        );
        assert_eq!(count_devices(Ok(()), Ok(0)).unwrap(), 0);
        assert_eq!(count_devices(Ok(()), Ok(2)).unwrap(), 2);
        // Anything else of a loaded runtime is a failure, never "no device".
        let e = count_devices(Err(err("hipInit", 35)), Ok(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend gpu: hipInit: hipErrorInsufficientDriver (35)"
        );
        let e = count_devices(Ok(()), Err(err("hipGetDeviceCount", 3))).unwrap_err();
        assert!(e.to_string().contains("hipErrorNotInitialized (3)"), "{e}");
        // A failed init with devices counted is the init's failure.
        let e = count_devices(Err(err("hipInit", bad_dev)), Ok(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend gpu: hipInit: hipErrorInvalidDevice (101): hipGetDeviceCount reports 1 \
             devices"
        );
    }

    #[test]
    fn a_missing_library_is_unavailable_and_a_missing_symbol_a_failure() {
        let none = Hip::load_from(&["/nonexistent/wavefront/libamdhip64.so.6"]).unwrap_err();
        match load_error(&none) {
            OpenError::Unavailable(r) => assert!(
                r.starts_with(
                    "no HIP runtime library (tried /nonexistent/wavefront/libamdhip64.so.6; "
                ),
                "{r}"
            ),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        // libc loads and has none of HIP's functions.
        let broken = Hip::load_from(&["libc.so.6"]).unwrap_err();
        match load_error(&broken) {
            OpenError::Failed(Error::Backend { op, detail, .. }) => {
                assert_eq!(op, "hipInit");
                assert!(
                    detail.starts_with("missing from the HIP runtime: libc.so.6: "),
                    "{detail}"
                );
            }
            other => panic!("expected Failed, got {other:?}"),
        }
    }
}
