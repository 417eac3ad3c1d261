//! NVIDIA: the CUDA driver API, NVRTC and cuBLAS through `cudarc`'s raw bindings, each library
//! loaded at run time. One primary context, one non-blocking stream, one cuBLAS handle.
//!
//! cudarc panics when a library is missing, so [`CudaVendor::open`] probes every library first
//! (`$WAVEFRONT_CUDA_LIB` names the driver library to use instead of the default sonames) and
//! returns a one-line reason; a panic that still escapes (a symbol an old driver lacks) is
//! caught there too.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::Mutex;

use cudarc::cublas::sys as cublas;
use cudarc::driver::sys as cu;
use cudarc::nvrtc::sys as nvrtc;

use super::{
    library_candidates, no_panic, probe_library, vendor_error, CompileInput, DeviceInfo, DevicePtr,
    EventHandle, FunctionHandle, Gemm, GraphHandle, KernelArg, LaunchConfig, ModuleHandle,
    OpenError, Runtime, Vendor,
};
use crate::error::Error;
use crate::tensor::DType;

/// `Error::Backend` for a failed driver call: `CUDA_ERROR_OUT_OF_MEMORY (2): context`.
/// Uses the enum's name, not `cuGetErrorName`, so it works with no driver loaded.
pub fn driver_error(op: &str, status: cu::CUresult, context: &str) -> Error {
    vendor_error(op, &format!("{status:?} ({})", status as i32), context)
}

pub fn nvrtc_error(op: &str, status: nvrtc::nvrtcResult, context: &str) -> Error {
    vendor_error(op, &format!("{status:?} ({})", status as i32), context)
}

pub fn cublas_error(op: &str, status: cublas::cublasStatus_t, context: &str) -> Error {
    vendor_error(op, &format!("{status:?} ({})", status as i32), context)
}

fn ck(op: &str, status: cu::CUresult) -> Result<(), Error> {
    match status {
        cu::CUresult::CUDA_SUCCESS => Ok(()),
        s => Err(driver_error(op, s, "")),
    }
}

/// Probes the driver, NVRTC and cuBLAS libraries; the reason names the first one missing.
fn probe_libraries() -> Result<(), String> {
    let driver = library_candidates(
        "WAVEFRONT_CUDA_LIB",
        cudarc::get_lib_name_candidates("cuda"),
    );
    probe_library("CUDA driver", &driver)?;
    // SAFETY: these only try to open the libraries under cudarc's own names.
    if !unsafe { cu::is_culib_present() } {
        return Err("the CUDA driver library loads, but not under a name cudarc opens".into());
    }
    if !unsafe { nvrtc::is_culib_present() } {
        return Err(
            probe_library("NVRTC", &cudarc::get_lib_name_candidates("nvrtc"))
                .err()
                .unwrap_or_else(|| "NVRTC did not load".into()),
        );
    }
    if !unsafe { cublas::is_culib_present() } {
        return Err(
            probe_library("cuBLAS", &cudarc::get_lib_name_candidates("cublas"))
                .err()
                .unwrap_or_else(|| "cuBLAS did not load".into()),
        );
    }
    Ok(())
}

/// Devices of the CUDA runtime: `Unavailable` when a library is missing, 0 when the driver
/// reports no device (`CUDA_ERROR_NO_DEVICE`), `Failed` for any other error of a loaded driver.
fn init_and_count() -> Result<usize, OpenError> {
    probe_libraries().map_err(OpenError::Unavailable)?;
    no_panic("CUDA", || {
        // SAFETY: cuInit has no preconditions; cuDeviceGetCount writes one int.
        unsafe {
            match cu::cuInit(0) {
                cu::CUresult::CUDA_SUCCESS => {}
                cu::CUresult::CUDA_ERROR_NO_DEVICE => return Ok(0),
                s => return Err(driver_error("cuInit", s, "").into()),
            }
            let mut n = 0;
            ck("cuDeviceGetCount", cu::cuDeviceGetCount(&mut n))?;
            Ok(n.max(0) as usize)
        }
    })
}

fn versions() -> String {
    let mut driver = 0;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: each call writes ints through valid pointers; libraries were probed.
    unsafe {
        cu::cuDriverGetVersion(&mut driver);
        nvrtc::nvrtcVersion(&mut major, &mut minor);
    }
    format!("CUDA driver {driver}, NVRTC {major}.{minor}")
}

fn device_info(ordinal: usize) -> Result<(cu::CUdevice, DeviceInfo), Error> {
    let mut dev: cu::CUdevice = 0;
    let attr = |a: cu::CUdevice_attribute, dev: cu::CUdevice| -> Result<i32, Error> {
        let mut v = 0;
        // SAFETY: writes one int; `dev` is a valid device handle.
        ck("cuDeviceGetAttribute", unsafe {
            cu::cuDeviceGetAttribute(&mut v, a, dev)
        })?;
        Ok(v)
    };
    // SAFETY: out-pointers are valid; the name buffer is 256 bytes and NUL-terminated by the driver.
    unsafe {
        ck("cuDeviceGet", cu::cuDeviceGet(&mut dev, ordinal as i32))?;
    }
    let mut name = [0 as c_char; 256];
    let mut total = 0usize;
    unsafe {
        ck(
            "cuDeviceGetName",
            cu::cuDeviceGetName(name.as_mut_ptr(), name.len() as i32 - 1, dev),
        )?;
        ck(
            "cuDeviceTotalMem_v2",
            cu::cuDeviceTotalMem_v2(&mut total, dev),
        )?;
    }
    use cu::CUdevice_attribute as A;
    let major = attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev)?;
    let minor = attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev)?;
    let info = DeviceInfo {
        runtime: Runtime::Cuda,
        ordinal,
        // SAFETY: NUL-terminated within the buffer (we passed len - 1 and it starts zeroed).
        name: unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_string_lossy()
            .into_owned(),
        arch: format!("sm_{major}{minor}"),
        wave: attr(A::CU_DEVICE_ATTRIBUTE_WARP_SIZE, dev)? as u32,
        total_memory: total,
        multiprocessors: attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev)? as u32,
        runtime_version: versions(),
    };
    Ok((dev, info))
}

/// Every CUDA device, or why there are none.
pub fn devices() -> Result<Vec<DeviceInfo>, OpenError> {
    let n = init_and_count()?;
    no_panic("CUDA", || {
        (0..n)
            .map(|i| device_info(i).map(|(_, d)| d).map_err(OpenError::from))
            .collect()
    })
}

pub struct CudaVendor {
    info: DeviceInfo,
    ctx: cu::CUcontext,
    stream: cu::CUstream,
    /// cuBLAS handles are not safe for concurrent use: calls hold this lock.
    blas: Mutex<cublas::cublasHandle_t>,
    /// Programmatic dependent launch for [`Vendor::launch_overlapped`]: compute capability ≥ 9
    /// and `$WAVEFRONT_NO_PDL` not `1`.
    pdl: bool,
}

// SAFETY: the raw handles are owned by this struct; the driver API is thread-safe once the
// context is made current on the calling thread (every method does), and the cuBLAS handle is
// only used under its mutex.
unsafe impl Send for CudaVendor {}
unsafe impl Sync for CudaVendor {}

/// Whether a device of compute capability `arch` (`sm_90`) launches overlapped kernels with
/// programmatic dependent launch (Hopper and later), unless `WAVEFRONT_NO_PDL=1`.
fn pdl_enabled(arch: &str) -> bool {
    let off = std::env::var("WAVEFRONT_NO_PDL").is_ok_and(|v| v == "1");
    let major = arch
        .strip_prefix("sm_")
        .and_then(|cc| cc.get(..cc.len().saturating_sub(1)))
        .and_then(|m| m.parse::<u32>().ok());
    !off && major.is_some_and(|m| m >= 9)
}

impl CudaVendor {
    /// Opens device `ordinal`: primary context, a non-blocking stream, a cuBLAS handle bound to it.
    pub fn open(ordinal: usize) -> Result<Self, OpenError> {
        let n = init_and_count()?;
        if n == 0 {
            return Err(OpenError::Unavailable(
                "the CUDA driver loads but reports no device".into(),
            ));
        }
        if ordinal >= n {
            return Err(OpenError::Failed(vendor_error(
                "cuDeviceGet",
                "no such device",
                &format!("CUDA device {ordinal} requested, {n} present"),
            )));
        }
        no_panic("CUDA", || {
            Self::open_device(ordinal).map_err(OpenError::from)
        })
    }

    fn open_device(ordinal: usize) -> Result<Self, Error> {
        let (dev, info) = device_info(ordinal)?;
        let mut ctx: cu::CUcontext = std::ptr::null_mut();
        let mut stream: cu::CUstream = std::ptr::null_mut();
        let mut blas: cublas::cublasHandle_t = std::ptr::null_mut();
        // SAFETY: out-pointers are valid; the context is made current before the stream and
        // handle are created in it.
        unsafe {
            ck(
                "cuDevicePrimaryCtxRetain",
                cu::cuDevicePrimaryCtxRetain(&mut ctx, dev),
            )?;
            ck("cuCtxSetCurrent", cu::cuCtxSetCurrent(ctx))?;
            ck(
                "cuStreamCreate",
                cu::cuStreamCreate(
                    &mut stream,
                    cu::CUstream_flags::CU_STREAM_NON_BLOCKING as u32,
                ),
            )?;
            let s = cublas::cublasCreate_v2(&mut blas);
            if s != cublas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                return Err(cublas_error("cublasCreate_v2", s, ""));
            }
            let s = cublas::cublasSetStream_v2(blas, stream as cublas::cudaStream_t);
            if s != cublas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
                return Err(cublas_error("cublasSetStream_v2", s, ""));
            }
        }
        let pdl = pdl_enabled(&info.arch);
        Ok(CudaVendor {
            info,
            ctx,
            stream,
            blas: Mutex::new(blas),
            pdl,
        })
    }

    /// Makes this device's context current on the calling thread.
    fn bind(&self) -> Result<(), Error> {
        // SAFETY: `ctx` is the retained primary context, live for `self`'s lifetime.
        ck("cuCtxSetCurrent", unsafe { cu::cuCtxSetCurrent(self.ctx) })
    }

    fn sync_stream(&self) -> Result<(), Error> {
        // SAFETY: `stream` is live.
        ck("cuStreamSynchronize", unsafe {
            cu::cuStreamSynchronize(self.stream)
        })
    }
}

impl Drop for CudaVendor {
    fn drop(&mut self) {
        // Best effort: errors at teardown have no one to report to.
        // SAFETY: the handles are ours and nothing uses them after this.
        unsafe {
            let _ = cu::cuCtxSetCurrent(self.ctx);
            let _ = cu::cuStreamSynchronize(self.stream);
            if let Ok(h) = self.blas.lock() {
                let _ = cublas::cublasDestroy_v2(*h);
            }
            let _ = cu::cuStreamDestroy_v2(self.stream);
        }
    }
}

/// Program log of an NVRTC program (empty when there is none).
///
/// # Safety
/// `prog` is a live program.
unsafe fn program_log(prog: nvrtc::nvrtcProgram) -> String {
    let mut size = 0usize;
    if nvrtc::nvrtcGetProgramLogSize(prog, &mut size) != nvrtc::nvrtcResult::NVRTC_SUCCESS
        || size <= 1
    {
        return String::new();
    }
    let mut buf = vec![0 as c_char; size];
    nvrtc::nvrtcGetProgramLog(prog, buf.as_mut_ptr());
    CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
}

fn cstring(what: &str, s: &str) -> Result<CString, Error> {
    CString::new(s).map_err(|_| {
        vendor_error(
            "nvrtcCreateProgram",
            "invalid input",
            &format!("{what} contains a NUL byte"),
        )
    })
}

/// Each argument in its own 8-byte slots (one, or a by-value struct's words), and where each
/// starts; the driver reads `sizeof(param)` bytes from there (little-endian, so i32/f32 sit in
/// the low half).
pub(crate) struct ArgSlots {
    words: Vec<u64>,
    starts: Vec<usize>,
}

impl ArgSlots {
    pub(crate) fn new(args: &[KernelArg]) -> ArgSlots {
        let mut s = ArgSlots {
            words: Vec::with_capacity(args.len()),
            starts: Vec::with_capacity(args.len()),
        };
        for a in args {
            s.starts.push(s.words.len());
            match a {
                KernelArg::Ptr(p) => s.words.push(*p),
                KernelArg::I32(v) => s.words.push(*v as u32 as u64),
                KernelArg::I64(v) => s.words.push(*v as u64),
                KernelArg::F32(v) => s.words.push(v.to_bits() as u64),
                KernelArg::Words(w) => s.words.extend_from_slice(w),
            }
        }
        s
    }

    /// The pointers the launch call takes, one an argument (valid while `self` lives unmoved).
    pub(crate) fn pointers(&mut self) -> Vec<*mut c_void> {
        let base = self.words.as_mut_ptr();
        // SAFETY: every start is an index into `words` (an empty struct has none pushed: its
        // start may equal the length, one past the end, which `add` allows).
        self.starts
            .iter()
            .map(|&i| unsafe { base.add(i) } as *mut c_void)
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn words(&self) -> &[u64] {
        &self.words
    }
}

impl Vendor for CudaVendor {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn memory_info(&self) -> Result<(usize, usize), Error> {
        self.bind()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: writes two size_t; the context is current.
        ck("cuMemGetInfo_v2", unsafe {
            cu::cuMemGetInfo_v2(&mut free, &mut total)
        })?;
        Ok((free, total))
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr, Error> {
        if bytes == 0 {
            return Ok(0);
        }
        self.bind()?;
        let mut p: cu::CUdeviceptr = 0;
        // SAFETY: writes one device pointer.
        match unsafe { cu::cuMemAlloc_v2(&mut p, bytes) } {
            cu::CUresult::CUDA_SUCCESS => Ok(p),
            s => Err(driver_error("cuMemAlloc_v2", s, &format!("{bytes} bytes"))),
        }
    }

    unsafe fn free(&self, ptr: DevicePtr) -> Result<(), Error> {
        if ptr == 0 {
            return Ok(());
        }
        self.bind()?;
        self.sync_stream()?;
        ck("cuMemFree_v2", cu::cuMemFree_v2(ptr))
    }

    fn htod(&self, dst: DevicePtr, src: &[u8]) -> Result<(), Error> {
        if src.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `src` is valid for its length until the synchronize below returns.
        ck("cuMemcpyHtoDAsync_v2", unsafe {
            cu::cuMemcpyHtoDAsync_v2(dst, src.as_ptr() as *const c_void, src.len(), self.stream)
        })?;
        self.sync_stream()
    }

    fn dtoh(&self, dst: &mut [u8], src: DevicePtr) -> Result<(), Error> {
        if dst.is_empty() {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: `dst` is valid for its length until the synchronize below returns.
        ck("cuMemcpyDtoHAsync_v2", unsafe {
            cu::cuMemcpyDtoHAsync_v2(dst.as_mut_ptr() as *mut c_void, src, dst.len(), self.stream)
        })?;
        self.sync_stream()
    }

    fn host_alloc(&self, bytes: usize) -> Result<*mut u8, Error> {
        self.bind()?;
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: writes one pointer.
        ck("cuMemHostAlloc", unsafe {
            cu::cuMemHostAlloc(&mut p, bytes.max(1), 0)
        })?;
        Ok(p as *mut u8)
    }

    unsafe fn host_free(&self, ptr: *mut u8) -> Result<(), Error> {
        if ptr.is_null() {
            return Ok(());
        }
        self.bind()?;
        self.sync_stream()?;
        ck("cuMemFreeHost", cu::cuMemFreeHost(ptr as *mut c_void))
    }

    unsafe fn dtoh_async(&self, dst: *mut u8, src: DevicePtr, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        ck(
            "cuMemcpyDtoHAsync_v2",
            cu::cuMemcpyDtoHAsync_v2(dst as *mut c_void, src, bytes, self.stream),
        )
    }

    fn dtod(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: device-side copy; the caller guarantees the ranges (trait contract).
        ck("cuMemcpyDtoDAsync_v2", unsafe {
            cu::cuMemcpyDtoDAsync_v2(dst, src, bytes, self.stream)
        })
    }

    fn memset(&self, dst: DevicePtr, value: u8, bytes: usize) -> Result<(), Error> {
        if bytes == 0 {
            return Ok(());
        }
        self.bind()?;
        // SAFETY: device-side fill; the caller guarantees the range (trait contract).
        ck("cuMemsetD8Async", unsafe {
            cu::cuMemsetD8Async(dst, value, bytes, self.stream)
        })
    }

    fn compile(&self, input: &CompileInput<'_>) -> Result<Vec<u8>, Error> {
        let src = cstring("source", input.source)?;
        let name = cstring("name", input.name)?;
        let header_texts = input
            .headers
            .iter()
            .map(|(_, t)| cstring("header", t))
            .collect::<Result<Vec<_>, _>>()?;
        let header_names = input
            .headers
            .iter()
            .map(|(n, _)| cstring("header name", n))
            .collect::<Result<Vec<_>, _>>()?;
        let mut opts = vec![cstring(
            "option",
            &format!("--gpu-architecture={}", self.info.arch),
        )?];
        for o in input.options {
            opts.push(cstring("option", o)?);
        }
        let text_ptrs: Vec<*const c_char> = header_texts.iter().map(|c| c.as_ptr()).collect();
        let name_ptrs: Vec<*const c_char> = header_names.iter().map(|c| c.as_ptr()).collect();
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|c| c.as_ptr()).collect();
        let mut prog: nvrtc::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: every pointer refers to a NUL-terminated string alive until the end of this
        // function; the program is destroyed on every path after creation.
        unsafe {
            let s = nvrtc::nvrtcCreateProgram(
                &mut prog,
                src.as_ptr(),
                name.as_ptr(),
                text_ptrs.len() as i32,
                text_ptrs.as_ptr(),
                name_ptrs.as_ptr(),
            );
            if s != nvrtc::nvrtcResult::NVRTC_SUCCESS {
                return Err(nvrtc_error("nvrtcCreateProgram", s, input.name));
            }
            let result = (|| {
                let s = nvrtc::nvrtcCompileProgram(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr());
                if s != nvrtc::nvrtcResult::NVRTC_SUCCESS {
                    let log = program_log(prog);
                    return Err(nvrtc_error(
                        "nvrtcCompileProgram",
                        s,
                        &format!("{} for {}: {}", input.name, self.info.arch, log.trim()),
                    ));
                }
                let mut size = 0usize;
                let s = nvrtc::nvrtcGetCUBINSize(prog, &mut size);
                if s != nvrtc::nvrtcResult::NVRTC_SUCCESS {
                    return Err(nvrtc_error("nvrtcGetCUBINSize", s, input.name));
                }
                let mut code = vec![0u8; size];
                let s = nvrtc::nvrtcGetCUBIN(prog, code.as_mut_ptr() as *mut c_char);
                if s != nvrtc::nvrtcResult::NVRTC_SUCCESS {
                    return Err(nvrtc_error("nvrtcGetCUBIN", s, input.name));
                }
                Ok(code)
            })();
            nvrtc::nvrtcDestroyProgram(&mut prog);
            result
        }
    }

    fn load_module(&self, image: &[u8]) -> Result<ModuleHandle, Error> {
        self.bind()?;
        let mut m: cu::CUmodule = std::ptr::null_mut();
        // SAFETY: `image` is a complete code object in memory for the duration of the call
        // (cubin is self-describing; the driver validates it and errors on garbage).
        ck("cuModuleLoadData", unsafe {
            cu::cuModuleLoadData(&mut m, image.as_ptr() as *const c_void)
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
            .map_err(|_| vendor_error("cuModuleGetFunction", "invalid name", name))?;
        let mut f: cu::CUfunction = std::ptr::null_mut();
        // SAFETY: `module` came from load_module on this vendor and is never unloaded.
        match unsafe { cu::cuModuleGetFunction(&mut f, module.0 as cu::CUmodule, cname.as_ptr()) } {
            cu::CUresult::CUDA_SUCCESS => Ok(Some(FunctionHandle(f as usize))),
            cu::CUresult::CUDA_ERROR_NOT_FOUND => Ok(None),
            s => Err(driver_error("cuModuleGetFunction", s, name)),
        }
    }

    fn module_global(
        &self,
        module: ModuleHandle,
        name: &str,
    ) -> Result<Option<(DevicePtr, usize)>, Error> {
        self.bind()?;
        let cname = CString::new(name)
            .map_err(|_| vendor_error("cuModuleGetGlobal_v2", "invalid name", name))?;
        let (mut p, mut bytes): (cu::CUdeviceptr, usize) = (0, 0);
        // SAFETY: `module` came from load_module on this vendor and is never unloaded; writes
        // one device pointer and one size_t.
        match unsafe {
            cu::cuModuleGetGlobal_v2(&mut p, &mut bytes, module.0 as cu::CUmodule, cname.as_ptr())
        } {
            cu::CUresult::CUDA_SUCCESS => Ok(Some((p, bytes))),
            cu::CUresult::CUDA_ERROR_NOT_FOUND => Ok(None),
            s => Err(driver_error("cuModuleGetGlobal_v2", s, name)),
        }
    }

    unsafe fn launch(
        &self,
        f: FunctionHandle,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), Error> {
        self.bind()?;
        let mut slots = ArgSlots::new(args);
        let mut ptrs = slots.pointers();
        ck(
            "cuLaunchKernel",
            cu::cuLaunchKernel(
                f.0 as cu::CUfunction,
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

    fn allow_dynamic_shared(&self, f: FunctionHandle, bytes: u32) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: f is a function of a module this vendor loaded; the attribute takes an int.
        ck("cuFuncSetAttribute", unsafe {
            cu::cuFuncSetAttribute(
                f.0 as cu::CUfunction,
                cu::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
        })
    }

    fn resident_blocks(
        &self,
        f: FunctionHandle,
        block: u32,
        shared_bytes: u32,
    ) -> Result<Option<u32>, Error> {
        self.bind()?;
        let mut n = 0i32;
        // SAFETY: f is a function of a module this vendor loaded; n is written.
        ck("cuOccupancyMaxActiveBlocksPerMultiprocessor", unsafe {
            cu::cuOccupancyMaxActiveBlocksPerMultiprocessor(
                &mut n,
                f.0 as cu::CUfunction,
                block as i32,
                shared_bytes as usize,
            )
        })?;
        Ok(u32::try_from(n).ok())
    }

    unsafe fn launch_overlapped(
        &self,
        f: FunctionHandle,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), Error> {
        if !self.pdl {
            return self.launch(f, cfg, args);
        }
        self.bind()?;
        let mut slots = ArgSlots::new(args);
        let mut ptrs = slots.pointers();
        // SAFETY: a zeroed attribute is a valid bit pattern (a C struct of an enum and a union
        // of plain data); its id and value are set before use.
        let mut attr: cu::CUlaunchAttribute = std::mem::zeroed();
        attr.id = cu::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = cu::CUlaunchConfig {
            gridDimX: cfg.grid.0,
            gridDimY: cfg.grid.1,
            gridDimZ: cfg.grid.2,
            blockDimX: cfg.block.0,
            blockDimY: cfg.block.1,
            blockDimZ: cfg.block.2,
            sharedMemBytes: cfg.shared_bytes,
            hStream: self.stream,
            attrs: &mut attr,
            numAttrs: 1,
        };
        ck(
            "cuLaunchKernelEx",
            cu::cuLaunchKernelEx(
                &config,
                f.0 as cu::CUfunction,
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            ),
        )
    }

    unsafe fn gemm_f32_out(&self, g: &Gemm) -> Result<(), Error> {
        self.bind()?;
        let op = |t: bool| {
            if t {
                cublas::cublasOperation_t::CUBLAS_OP_T
            } else {
                cublas::cublasOperation_t::CUBLAS_OP_N
            }
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        let inputs = match g.inputs {
            DType::BF16 => cublas::cudaDataType::CUDA_R_16BF,
            DType::F16 => cublas::cudaDataType::CUDA_R_16F,
            DType::F32 => cublas::cudaDataType::CUDA_R_32F,
            other => {
                return Err(vendor_error(
                    "cublasGemmEx",
                    "unsupported",
                    &format!("{other} inputs"),
                ))
            }
        };
        let handle = self
            .blas
            .lock()
            .map_err(|_| vendor_error("cublasGemmEx", "poisoned", "cuBLAS handle lock"))?;
        let s = cublas::cublasGemmEx(
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
            cublas::cudaDataType::CUDA_R_32F,
            g.ldc,
            cublas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            cublas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        );
        if s != cublas::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(cublas_error(
                "cublasGemmEx",
                s,
                &format!("m {} n {} k {}", g.m, g.n, g.k),
            ));
        }
        Ok(())
    }

    fn synchronize(&self) -> Result<(), Error> {
        self.bind()?;
        self.sync_stream()
    }

    fn event_create(&self) -> Result<EventHandle, Error> {
        self.bind()?;
        let mut e: cu::CUevent = std::ptr::null_mut();
        // SAFETY: writes one event handle.
        ck("cuEventCreate", unsafe {
            cu::cuEventCreate(&mut e, cu::CUevent_flags::CU_EVENT_DEFAULT as u32)
        })?;
        Ok(EventHandle(e as usize))
    }

    fn event_record(&self, e: EventHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `e` came from event_create on this vendor.
        ck("cuEventRecord", unsafe {
            cu::cuEventRecord(e.0 as cu::CUevent, self.stream)
        })
    }

    fn event_synchronize(&self, e: EventHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `e` came from event_create on this vendor.
        ck("cuEventSynchronize", unsafe {
            cu::cuEventSynchronize(e.0 as cu::CUevent)
        })
    }

    fn event_elapsed_ms(&self, start: EventHandle, end: EventHandle) -> Result<f32, Error> {
        self.bind()?;
        // SAFETY: both events came from event_create on this vendor and were recorded.
        unsafe {
            ck(
                "cuEventSynchronize",
                cu::cuEventSynchronize(end.0 as cu::CUevent),
            )?;
            cudarc::driver::result::event::elapsed(start.0 as cu::CUevent, end.0 as cu::CUevent)
                .map_err(|e| driver_error("cuEventElapsedTime", e.0, ""))
        }
    }

    fn event_destroy(&self, e: EventHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `e` came from event_create and is not used afterwards.
        ck("cuEventDestroy_v2", unsafe {
            cu::cuEventDestroy_v2(e.0 as cu::CUevent)
        })
    }

    fn begin_capture(&self) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: the stream is this vendor's; thread-local mode leaves other threads alone.
        ck("cuStreamBeginCapture_v2", unsafe {
            cu::cuStreamBeginCapture_v2(
                self.stream,
                cu::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        })
    }

    fn end_capture(&self) -> Result<GraphHandle, Error> {
        self.bind()?;
        let mut graph: cu::CUgraph = std::ptr::null_mut();
        let mut exec: cu::CUgraphExec = std::ptr::null_mut();
        // SAFETY: ends the capture begun on this stream; out-pointers valid. The graph is no
        // longer needed once instantiated (the executable graph is independent of it).
        unsafe {
            ck(
                "cuStreamEndCapture",
                cu::cuStreamEndCapture(self.stream, &mut graph),
            )?;
            let r = ck(
                "cuGraphInstantiateWithFlags",
                cu::cuGraphInstantiateWithFlags(&mut exec, graph, 0),
            );
            let _ = cu::cuGraphDestroy(graph);
            r?;
        }
        Ok(GraphHandle(exec as usize))
    }

    fn graph_launch(&self, g: GraphHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `g` came from end_capture on this vendor.
        ck("cuGraphLaunch", unsafe {
            cu::cuGraphLaunch(g.0 as cu::CUgraphExec, self.stream)
        })
    }

    fn graph_destroy(&self, g: GraphHandle) -> Result<(), Error> {
        self.bind()?;
        // SAFETY: `g` came from end_capture and is not used afterwards.
        ck("cuGraphExecDestroy", unsafe {
            cu::cuGraphExecDestroy(g.0 as cu::CUgraphExec)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapped_launches_need_hopper_or_later() {
        // (The environment switch is read too; the test process does not set it.)
        if std::env::var("WAVEFRONT_NO_PDL").is_ok() {
            return;
        }
        for (arch, on) in [
            ("sm_90", true),
            ("sm_100", true),
            ("sm_120", true),
            ("sm_89", false),
            ("sm_80", false),
            ("sm_7", false),
            ("gfx942", false),
            ("sm_", false),
        ] {
            assert_eq!(pdl_enabled(arch), on, "{arch}");
        }
    }

    #[test]
    fn driver_status_maps_to_a_typed_error_with_name_and_code() {
        // cuda.h: CUDA_ERROR_OUT_OF_MEMORY = 2, CUDA_ERROR_NOT_FOUND = 500.
        let e = driver_error(
            "cuMemAlloc_v2",
            cu::CUresult::CUDA_ERROR_OUT_OF_MEMORY,
            "4096 bytes",
        );
        match &e {
            Error::Backend {
                backend,
                op,
                detail,
            } => {
                assert_eq!(*backend, "gpu");
                assert_eq!(op, "cuMemAlloc_v2");
                assert_eq!(detail, "CUDA_ERROR_OUT_OF_MEMORY (2): 4096 bytes");
            }
            other => panic!("expected Error::Backend, got {other:?}"),
        }
        let e = ck("cuModuleGetFunction", cu::CUresult::CUDA_ERROR_NOT_FOUND).unwrap_err();
        assert_eq!(
            e.to_string(),
            "backend gpu: cuModuleGetFunction: CUDA_ERROR_NOT_FOUND (500)"
        );
        assert!(ck("cuInit", cu::CUresult::CUDA_SUCCESS).is_ok());
    }

    #[test]
    fn nvrtc_and_cublas_statuses_map_too() {
        // nvrtc.h: NVRTC_ERROR_COMPILATION = 6; cublas_api.h: CUBLAS_STATUS_INVALID_VALUE = 7.
        let e = nvrtc_error(
            "nvrtcCompileProgram",
            nvrtc::nvrtcResult::NVRTC_ERROR_COMPILATION,
            "rope.hip",
        );
        assert_eq!(
            e.to_string(),
            "backend gpu: nvrtcCompileProgram: NVRTC_ERROR_COMPILATION (6): rope.hip"
        );
        let e = cublas_error(
            "cublasGemmEx",
            cublas::cublasStatus_t::CUBLAS_STATUS_INVALID_VALUE,
            "",
        );
        assert_eq!(
            e.to_string(),
            "backend gpu: cublasGemmEx: CUBLAS_STATUS_INVALID_VALUE (7)"
        );
    }

    #[test]
    fn kernel_arguments_sit_in_the_low_bytes_of_their_slot() {
        let mut slots = ArgSlots::new(&[
            KernelArg::Ptr(0x7f00_0000_1000),
            KernelArg::I32(-2),
            KernelArg::Words(vec![7, 8, 9]),
            KernelArg::F32(1.5),
        ]);
        let s = slots.words().to_vec();
        assert_eq!(s.len(), 6);
        assert_eq!(s[0], 0x7f00_0000_1000);
        assert_eq!(s[1].to_le_bytes()[..4], (-2i32).to_le_bytes());
        assert_eq!(s[2..5], [7, 8, 9]);
        assert_eq!(s[5].to_le_bytes()[..4], 1.5f32.to_le_bytes());
        // Each pointer is its argument's first word: a struct's words are contiguous.
        let p = slots.pointers();
        assert_eq!(p.len(), 4);
        // SAFETY: the pointers point into `slots`' words, alive and unmoved here.
        let read = |i: usize| unsafe { *(p[i] as *const u64) };
        assert_eq!(read(0), 0x7f00_0000_1000);
        assert_eq!(read(2), 7);
        assert_eq!(unsafe { *(p[2] as *const u64).add(2) }, 9);
        assert_eq!(read(3).to_le_bytes()[..4], 1.5f32.to_le_bytes());
    }
}
