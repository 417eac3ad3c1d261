//! The runtime calls, each checked: a status other than `hipSuccess` is a [`CallError`]
//! naming the function. Calls that only take values and write through their own out-pointers
//! are safe; those taking handles or device addresses are `unsafe`, with the contract stated.

use std::ffi::{c_char, c_void, CStr};

use crate::{
    c_string_at, check, hipDevice_t, hipDeviceptr_t, hipErrorNotFound, hipEvent_t, hipFunction_t,
    hipGraphExec_t, hipGraph_t, hipModule_t, hipStream_t, CallError, Hip, HipVersion,
    PROPS_STRING_LEN,
};

/// Bytes of the zeroed buffer the properties struct is written into: more than either layout
/// (1472 and 792 bytes), in case a runtime writes a longer struct than the one declared.
pub const PROPS_BUFFER_BYTES: usize = 4096;

impl Hip {
    /// `hipInit(0)`.
    pub fn init(&self) -> Result<(), CallError> {
        // SAFETY: no preconditions.
        check("hipInit", unsafe { (self.rt.init)(0) })
    }

    /// `hipGetDeviceCount`. With no device HIP returns `hipErrorNoDevice`, not 0.
    pub fn device_count(&self) -> Result<i32, CallError> {
        let mut n = 0;
        // SAFETY: writes one int.
        check("hipGetDeviceCount", unsafe {
            (self.rt.get_device_count)(&mut n)
        })?;
        Ok(n)
    }

    /// `hipSetDevice`: makes `ordinal` the calling thread's current device.
    pub fn set_device(&self, ordinal: i32) -> Result<(), CallError> {
        // SAFETY: an invalid ordinal is reported as a status.
        check("hipSetDevice", unsafe { (self.rt.set_device)(ordinal) })
    }

    fn device(&self, ordinal: i32) -> Result<hipDevice_t, CallError> {
        let mut d = 0;
        // SAFETY: writes one hipDevice_t.
        check("hipDeviceGet", unsafe {
            (self.rt.device_get)(&mut d, ordinal)
        })?;
        Ok(d)
    }

    /// `hipDeviceGetName`.
    pub fn device_name(&self, ordinal: i32) -> Result<String, CallError> {
        let d = self.device(ordinal)?;
        let mut buf = [0u8; PROPS_STRING_LEN];
        // SAFETY: the runtime writes at most `len` bytes, NUL included; one byte stays 0.
        check("hipDeviceGetName", unsafe {
            (self.rt.device_get_name)(buf.as_mut_ptr() as *mut c_char, (buf.len() - 1) as i32, d)
        })?;
        Ok(c_string_at(&buf, 0))
    }

    /// `hipDeviceTotalMem`, in bytes.
    pub fn device_total_mem(&self, ordinal: i32) -> Result<usize, CallError> {
        let d = self.device(ordinal)?;
        let mut bytes = 0usize;
        // SAFETY: writes one size_t.
        check("hipDeviceTotalMem", unsafe {
            (self.rt.device_total_mem)(&mut bytes, d)
        })?;
        Ok(bytes)
    }

    /// `hipDeviceGetAttribute` (`attr` a `hipDeviceAttribute_t` value such as
    /// [`crate::hipDeviceAttributeWarpSize`]).
    pub fn device_attribute(&self, attr: i32, ordinal: i32) -> Result<i32, CallError> {
        let mut v = 0;
        // SAFETY: writes one int; an unknown attribute is reported as a status.
        check("hipDeviceGetAttribute", unsafe {
            (self.rt.device_get_attribute)(&mut v, attr, ordinal)
        })?;
        Ok(v)
    }

    /// The device's `gcnArchName` (`gfx90a:sramecc+:xnack-`), read from the properties struct
    /// at the offset of the layout of the function the runtime exports.
    pub fn gcn_arch_name(&self, ordinal: i32) -> Result<String, CallError> {
        let layout = self.props_layout();
        // u64 words: the struct holds size_t fields, so the buffer must be 8-byte aligned.
        let mut buf = vec![0u64; PROPS_BUFFER_BYTES / 8];
        // SAFETY: the buffer is zeroed, aligned and larger than the struct of `layout`.
        check(layout.symbol(), unsafe {
            (self.props)(buf.as_mut_ptr() as *mut c_void, ordinal)
        })?;
        let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
        Ok(c_string_at(&bytes, layout.gcn_arch_name_offset()))
    }

    /// `hipRuntimeGetVersion`.
    pub fn runtime_version(&self) -> Result<HipVersion, CallError> {
        let mut raw = 0;
        // SAFETY: writes one int.
        check("hipRuntimeGetVersion", unsafe {
            (self.rt.runtime_get_version)(&mut raw)
        })?;
        Ok(HipVersion { raw })
    }

    /// `hipMemGetInfo` for the current device: `(free, total)` bytes.
    pub fn mem_get_info(&self) -> Result<(usize, usize), CallError> {
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: writes two size_t.
        check("hipMemGetInfo", unsafe {
            (self.rt.mem_get_info)(&mut free, &mut total)
        })?;
        Ok((free, total))
    }

    /// `hipMalloc` on the current device.
    pub fn malloc(&self, bytes: usize) -> Result<hipDeviceptr_t, CallError> {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: writes one pointer.
        check("hipMalloc", unsafe { (self.rt.malloc)(&mut p, bytes) })?;
        Ok(p)
    }

    /// `hipFree`.
    ///
    /// # Safety
    /// `ptr` came from [`Hip::malloc`] (or is null), no queued work uses it, and it is not
    /// used afterwards.
    pub unsafe fn free(&self, ptr: hipDeviceptr_t) -> Result<(), CallError> {
        check("hipFree", (self.rt.free)(ptr))
    }

    /// `hipMemcpyHtoDAsync`.
    ///
    /// # Safety
    /// `dst` is device memory of at least `src.len()` bytes, `stream` is live, and `src` stays
    /// valid and unmodified until the stream has finished the copy.
    pub unsafe fn memcpy_htod_async(
        &self,
        dst: hipDeviceptr_t,
        src: &[u8],
        stream: hipStream_t,
    ) -> Result<(), CallError> {
        check(
            "hipMemcpyHtoDAsync",
            (self.rt.memcpy_htod_async)(dst, src.as_ptr() as *const c_void, src.len(), stream),
        )
    }

    /// `hipHostMalloc` (default flags): `bytes` of page-locked host memory.
    pub fn host_malloc(&self, bytes: usize) -> Result<*mut c_void, CallError> {
        let mut p: *mut c_void = std::ptr::null_mut();
        // SAFETY: writes one pointer.
        check("hipHostMalloc", unsafe {
            (self.rt.host_malloc)(&mut p, bytes, 0)
        })?;
        Ok(p)
    }

    /// `hipHostFree`.
    ///
    /// # Safety
    /// `p` came from [`Hip::host_malloc`] and no queued copy still targets it.
    pub unsafe fn host_free(&self, p: *mut c_void) -> Result<(), CallError> {
        check("hipHostFree", (self.rt.host_free)(p))
    }

    /// `hipMemcpyDtoHAsync` into raw (page-locked) host memory.
    ///
    /// # Safety
    /// `src` is device memory of at least `bytes` bytes, `dst` host memory of as many that
    /// stays valid and untouched until the stream has finished the copy; `stream` is live.
    pub unsafe fn memcpy_dtoh_async_raw(
        &self,
        dst: *mut c_void,
        src: hipDeviceptr_t,
        bytes: usize,
        stream: hipStream_t,
    ) -> Result<(), CallError> {
        check(
            "hipMemcpyDtoHAsync",
            (self.rt.memcpy_dtoh_async)(dst, src, bytes, stream),
        )
    }

    /// `hipMemcpyDtoHAsync`.
    ///
    /// # Safety
    /// `src` is device memory of at least `dst.len()` bytes, `stream` is live, and `dst` stays
    /// valid and otherwise untouched until the stream has finished the copy.
    pub unsafe fn memcpy_dtoh_async(
        &self,
        dst: &mut [u8],
        src: hipDeviceptr_t,
        stream: hipStream_t,
    ) -> Result<(), CallError> {
        check(
            "hipMemcpyDtoHAsync",
            (self.rt.memcpy_dtoh_async)(dst.as_mut_ptr() as *mut c_void, src, dst.len(), stream),
        )
    }

    /// `hipMemcpyDtoDAsync`.
    ///
    /// # Safety
    /// `dst` and `src` are device memory of at least `bytes` bytes; `stream` is live.
    pub unsafe fn memcpy_dtod_async(
        &self,
        dst: hipDeviceptr_t,
        src: hipDeviceptr_t,
        bytes: usize,
        stream: hipStream_t,
    ) -> Result<(), CallError> {
        check(
            "hipMemcpyDtoDAsync",
            (self.rt.memcpy_dtod_async)(dst, src, bytes, stream),
        )
    }

    /// `hipMemsetD8Async`.
    ///
    /// # Safety
    /// `dst` is device memory of at least `bytes` bytes; `stream` is live.
    pub unsafe fn memset_d8_async(
        &self,
        dst: hipDeviceptr_t,
        value: u8,
        bytes: usize,
        stream: hipStream_t,
    ) -> Result<(), CallError> {
        check(
            "hipMemsetD8Async",
            (self.rt.memset_d8_async)(dst, value, bytes, stream),
        )
    }

    /// `hipStreamCreateWithFlags` on the current device.
    pub fn stream_create(&self, flags: u32) -> Result<hipStream_t, CallError> {
        let mut s: hipStream_t = std::ptr::null_mut();
        // SAFETY: writes one handle.
        check("hipStreamCreateWithFlags", unsafe {
            (self.rt.stream_create_with_flags)(&mut s, flags)
        })?;
        Ok(s)
    }

    /// `hipStreamSynchronize`.
    ///
    /// # Safety
    /// `stream` is live (or null, the default stream).
    pub unsafe fn stream_synchronize(&self, stream: hipStream_t) -> Result<(), CallError> {
        check("hipStreamSynchronize", (self.rt.stream_synchronize)(stream))
    }

    /// `hipStreamDestroy`.
    ///
    /// # Safety
    /// `stream` came from [`Hip::stream_create`] and is not used afterwards.
    pub unsafe fn stream_destroy(&self, stream: hipStream_t) -> Result<(), CallError> {
        check("hipStreamDestroy", (self.rt.stream_destroy)(stream))
    }

    /// `hipModuleLoadData` on the current device.
    ///
    /// # Safety
    /// `image` is a complete code object (the runtime reads as much as its headers say).
    pub unsafe fn module_load_data(&self, image: &[u8]) -> Result<hipModule_t, CallError> {
        let mut m: hipModule_t = std::ptr::null_mut();
        check(
            "hipModuleLoadData",
            (self.rt.module_load_data)(&mut m, image.as_ptr() as *const c_void),
        )?;
        Ok(m)
    }

    /// `hipModuleGetFunction`; `Ok(None)` when the module has no such kernel.
    ///
    /// # Safety
    /// `module` came from [`Hip::module_load_data`] and is loaded.
    pub unsafe fn module_get_function(
        &self,
        module: hipModule_t,
        name: &CStr,
    ) -> Result<Option<hipFunction_t>, CallError> {
        let mut f: hipFunction_t = std::ptr::null_mut();
        match (self.rt.module_get_function)(&mut f, module, name.as_ptr()) {
            hipErrorNotFound => Ok(None),
            s => check("hipModuleGetFunction", s).map(|()| Some(f)),
        }
    }

    /// `hipModuleGetGlobal`: the device address and size of a module global; `Ok(None)` when
    /// the module has no such symbol.
    ///
    /// # Safety
    /// `module` came from [`Hip::module_load_data`] and is loaded.
    pub unsafe fn module_get_global(
        &self,
        module: hipModule_t,
        name: &CStr,
    ) -> Result<Option<(hipDeviceptr_t, usize)>, CallError> {
        let mut p: hipDeviceptr_t = std::ptr::null_mut();
        let mut bytes = 0usize;
        match (self.rt.module_get_global)(&mut p, &mut bytes, module, name.as_ptr()) {
            hipErrorNotFound => Ok(None),
            s => check("hipModuleGetGlobal", s).map(|()| Some((p, bytes))),
        }
    }

    /// `hipModuleLaunchKernel` with `params` (one pointer per kernel argument) and no extra.
    ///
    /// # Safety
    /// `f` is a kernel of a loaded module; `params` point to values matching the kernel's C
    /// parameters in order and type, valid for the duration of the call; every device pointer
    /// among them covers what the kernel accesses for this grid; `stream` is live.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn module_launch_kernel(
        &self,
        f: hipFunction_t,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared_bytes: u32,
        stream: hipStream_t,
        params: &mut [*mut c_void],
    ) -> Result<(), CallError> {
        check(
            "hipModuleLaunchKernel",
            (self.rt.module_launch_kernel)(
                f,
                grid.0,
                grid.1,
                grid.2,
                block.0,
                block.1,
                block.2,
                shared_bytes,
                stream,
                params.as_mut_ptr(),
                std::ptr::null_mut(),
            ),
        )
    }

    /// `hipModuleOccupancyMaxActiveBlocksPerMultiprocessor`: how many blocks of `block`
    /// threads with `shared_bytes` of dynamic LDS a compute unit holds at once.
    ///
    /// # Safety
    /// `f` came from [`Hip::module_get_function`] of a loaded module.
    pub unsafe fn module_occupancy(
        &self,
        f: hipFunction_t,
        block: i32,
        shared_bytes: usize,
    ) -> Result<i32, CallError> {
        let mut n = 0i32;
        check(
            "hipModuleOccupancyMaxActiveBlocksPerMultiprocessor",
            (self.rt.module_occupancy)(&mut n, f, block, shared_bytes),
        )?;
        Ok(n)
    }

    /// `hipEventCreate` on the current device.
    pub fn event_create(&self) -> Result<hipEvent_t, CallError> {
        let mut e: hipEvent_t = std::ptr::null_mut();
        // SAFETY: writes one handle.
        check("hipEventCreate", unsafe { (self.rt.event_create)(&mut e) })?;
        Ok(e)
    }

    /// `hipEventRecord`.
    ///
    /// # Safety
    /// `event` came from [`Hip::event_create`]; `stream` is live.
    pub unsafe fn event_record(
        &self,
        event: hipEvent_t,
        stream: hipStream_t,
    ) -> Result<(), CallError> {
        check("hipEventRecord", (self.rt.event_record)(event, stream))
    }

    /// `hipEventSynchronize`.
    ///
    /// # Safety
    /// `event` came from [`Hip::event_create`].
    pub unsafe fn event_synchronize(&self, event: hipEvent_t) -> Result<(), CallError> {
        check("hipEventSynchronize", (self.rt.event_synchronize)(event))
    }

    /// `hipEventElapsedTime`: milliseconds from `start` to `end`.
    ///
    /// # Safety
    /// Both came from [`Hip::event_create`] and were recorded.
    pub unsafe fn event_elapsed_ms(
        &self,
        start: hipEvent_t,
        end: hipEvent_t,
    ) -> Result<f32, CallError> {
        let mut ms = 0.0f32;
        check(
            "hipEventElapsedTime",
            (self.rt.event_elapsed_time)(&mut ms, start, end),
        )?;
        Ok(ms)
    }

    /// `hipEventDestroy`.
    ///
    /// # Safety
    /// `event` came from [`Hip::event_create`] and is not used afterwards.
    pub unsafe fn event_destroy(&self, event: hipEvent_t) -> Result<(), CallError> {
        check("hipEventDestroy", (self.rt.event_destroy)(event))
    }

    /// `hipStreamBeginCapture` (`mode` a `hipStreamCaptureMode`, e.g.
    /// [`crate::hipStreamCaptureModeThreadLocal`]).
    ///
    /// # Safety
    /// `stream` is live and not the null stream.
    pub unsafe fn stream_begin_capture(
        &self,
        stream: hipStream_t,
        mode: i32,
    ) -> Result<(), CallError> {
        check(
            "hipStreamBeginCapture",
            (self.rt.stream_begin_capture)(stream, mode),
        )
    }

    /// `hipStreamEndCapture`: the captured graph.
    ///
    /// # Safety
    /// `stream` is capturing (see [`Hip::stream_begin_capture`]).
    pub unsafe fn stream_end_capture(&self, stream: hipStream_t) -> Result<hipGraph_t, CallError> {
        let mut g: hipGraph_t = std::ptr::null_mut();
        check(
            "hipStreamEndCapture",
            (self.rt.stream_end_capture)(stream, &mut g),
        )?;
        Ok(g)
    }

    /// `hipGraphInstantiate` without an error node or log buffer.
    ///
    /// # Safety
    /// `graph` came from [`Hip::stream_end_capture`] and is live.
    pub unsafe fn graph_instantiate(&self, graph: hipGraph_t) -> Result<hipGraphExec_t, CallError> {
        let mut exec: hipGraphExec_t = std::ptr::null_mut();
        check(
            "hipGraphInstantiate",
            (self.rt.graph_instantiate)(
                &mut exec,
                graph,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                0,
            ),
        )?;
        Ok(exec)
    }

    /// `hipGraphDestroy`.
    ///
    /// # Safety
    /// `graph` is live and not used afterwards (instantiated graphs do not need it).
    pub unsafe fn graph_destroy(&self, graph: hipGraph_t) -> Result<(), CallError> {
        check("hipGraphDestroy", (self.rt.graph_destroy)(graph))
    }

    /// `hipGraphLaunch`.
    ///
    /// # Safety
    /// `exec` came from [`Hip::graph_instantiate`] and is live; `stream` is live.
    pub unsafe fn graph_launch(
        &self,
        exec: hipGraphExec_t,
        stream: hipStream_t,
    ) -> Result<(), CallError> {
        check("hipGraphLaunch", (self.rt.graph_launch)(exec, stream))
    }

    /// `hipGraphExecDestroy`.
    ///
    /// # Safety
    /// `exec` came from [`Hip::graph_instantiate`] and is not used afterwards.
    pub unsafe fn graph_exec_destroy(&self, exec: hipGraphExec_t) -> Result<(), CallError> {
        check("hipGraphExecDestroy", (self.rt.graph_exec_destroy)(exec))
    }
}
