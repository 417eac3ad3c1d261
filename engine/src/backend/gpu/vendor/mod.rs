//! The vendor layer: the one place that calls a GPU runtime. Everything above it (modules,
//! launches, ops) is shared between CUDA and HIP, whose APIs mirror each other.
//!
//! A [`Vendor`] is one device of one runtime with one stream: every copy, launch and GEMM is
//! queued on that stream, in order. Device memory is addressed by [`DevicePtr`] (a plain
//! address); the safe owner of an allocation is `GpuBuffer` in the parent module.
//!
//! Failures are `Error::Backend { backend: "gpu", op: <vendor call>, detail: "<status>: …" }`:
//! the op names the C function that failed (`cuMemAlloc_v2`, `hipModuleLaunchKernel`,
//! `rocblas_gemm_ex`…), the detail starts with the status name and code.

pub mod cuda;
pub mod hip;

use std::fmt;

use crate::error::Error;

/// A device address (CUdeviceptr / hipDeviceptr_t as an integer). 0 is the null pointer.
pub type DevicePtr = u64;

/// Which runtime drives a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Cuda,
    Hip,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Cuda => "cuda",
            Runtime::Hip => "hip",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What `wavefront info --devices` prints about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub runtime: Runtime,
    /// Device ordinal within its runtime.
    pub ordinal: usize,
    pub name: String,
    /// The compiler's target: `sm_90` (CUDA), `gfx90a:sramecc+:xnack-` (HIP, the full
    /// gcnArchName, so the code object matches the device's features).
    pub arch: String,
    /// The hardware wave (warp) size: 32 on NVIDIA and RDNA, 64 on CDNA.
    pub wave: u32,
    pub total_memory: usize,
    pub multiprocessors: u32,
    /// Driver and compiler versions, e.g. `driver 13000, nvrtc 13.0`. Part of the kernel cache
    /// key: a new compiler recompiles.
    pub runtime_version: String,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} {} ({}, wave {}, {:.1} GiB, {} CUs/SMs, {})",
            self.runtime,
            self.ordinal,
            self.name,
            self.arch,
            self.wave,
            self.total_memory as f64 / (1u64 << 30) as f64,
            self.multiprocessors,
            self.runtime_version
        )
    }
}

/// A loaded code object (CUmodule / hipModule_t as an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleHandle(pub usize);

/// A kernel entry point of a loaded module (CUfunction / hipFunction_t as an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionHandle(pub usize);

/// An event on the vendor's stream (CUevent / hipEvent_t as an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHandle(pub usize);

/// An executable graph of captured stream work (CUgraphExec / hipGraphExec_t as an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphHandle(pub usize);

/// One kernel argument, passed by value as the kernel's C parameter type.
#[derive(Debug, Clone, PartialEq)]
pub enum KernelArg {
    /// A device pointer (`T*`); 0 for a null pointer.
    Ptr(DevicePtr),
    I32(i32),
    /// `i64` (`long long`): element counts and offsets that may pass 2³¹.
    I64(i64),
    F32(f32),
    /// A struct of 8-byte fields passed by value (`decode_attention.hip`'s `DaRows`), its
    /// bytes the words in order.
    Words(Vec<u64>),
}

/// Grid, block and dynamic shared memory of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_bytes: u32,
}

/// Source text handed to the run-time compiler.
#[derive(Debug, Clone, Copy)]
pub struct CompileInput<'a> {
    /// File name shown in compiler messages (`rope.hip`).
    pub name: &'a str,
    pub source: &'a str,
    /// In-memory headers `(include name, text)`, e.g. `("common.h", …)`.
    pub headers: &'a [(&'a str, &'a str)],
    /// Compiler options, e.g. `-DWAVE=64`; the vendor adds its architecture option.
    pub options: &'a [String],
}

/// `C (m, n) = op(A) · op(B)`, column-major, A and B of type `inputs` (BF16, F16 or F32), C f32,
/// f32 accumulation, C overwritten (alpha 1, beta 0). The linear layer is `trans_a = true,
/// trans_b = false, m = out_features, n = rows, k = in_features, lda = ldb = k, ldc = m` (see
/// the ABI).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gemm {
    pub inputs: crate::tensor::DType,
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: i32,
    pub n: i32,
    pub k: i32,
    pub a: DevicePtr,
    pub lda: i32,
    pub b: DevicePtr,
    pub ldb: i32,
    pub c: DevicePtr,
    pub ldc: i32,
}

/// One device of one runtime, with its stream. Object safe: the backend holds an
/// `Arc<dyn Vendor>`. Methods taking a `DevicePtr` expect a live allocation of this vendor
/// large enough for the bytes named; the unsafe ones can corrupt device memory otherwise.
pub trait Vendor: Send + Sync {
    fn info(&self) -> &DeviceInfo;

    /// `(free, total)` device memory in bytes, as the runtime reports it now (allocations of
    /// other processes included).
    fn memory_info(&self) -> Result<(usize, usize), Error>;

    /// `bytes` of device memory, contents unspecified. `bytes == 0` returns a null pointer.
    fn alloc(&self, bytes: usize) -> Result<DevicePtr, Error>;
    /// Releases an allocation after the stream has finished with it.
    ///
    /// # Safety
    /// `ptr` came from [`Vendor::alloc`] on this vendor and is not used afterwards.
    unsafe fn free(&self, ptr: DevicePtr) -> Result<(), Error>;

    /// Host → device; returns once `src` may be reused.
    fn htod(&self, dst: DevicePtr, src: &[u8]) -> Result<(), Error>;
    /// Device → host; waits for the stream's earlier work and the copy.
    fn dtoh(&self, dst: &mut [u8], src: DevicePtr) -> Result<(), Error>;
    /// `bytes` of page-locked host memory: device → host copies into it are asynchronous.
    fn host_alloc(&self, bytes: usize) -> Result<*mut u8, Error>;
    /// Frees [`Vendor::host_alloc`] memory.
    ///
    /// # Safety
    /// `ptr` came from `host_alloc` on this vendor, no queued copy still targets it, and it is
    /// not used afterwards.
    unsafe fn host_free(&self, ptr: *mut u8) -> Result<(), Error>;
    /// Queues a device → host copy into page-locked memory and returns at once; an event
    /// recorded after it tells when it is done.
    ///
    /// # Safety
    /// `dst` is `host_alloc` memory of at least `bytes` bytes, not read or freed until the copy
    /// is done; `src` covers `bytes` bytes.
    unsafe fn dtoh_async(&self, dst: *mut u8, src: DevicePtr, bytes: usize) -> Result<(), Error>;
    /// Device → device, queued on the stream.
    fn dtod(&self, dst: DevicePtr, src: DevicePtr, bytes: usize) -> Result<(), Error>;
    /// Sets `bytes` bytes to `value`, queued on the stream.
    fn memset(&self, dst: DevicePtr, value: u8, bytes: usize) -> Result<(), Error>;

    /// Compiles `input` for this device's architecture; returns the code object (cubin for
    /// CUDA, an HSA code object for HIP).
    fn compile(&self, input: &CompileInput<'_>) -> Result<Vec<u8>, Error>;
    fn load_module(&self, image: &[u8]) -> Result<ModuleHandle, Error>;
    /// `Ok(None)` when the module has no such entry point.
    fn get_function(
        &self,
        module: ModuleHandle,
        name: &str,
    ) -> Result<Option<FunctionHandle>, Error>;
    /// The device address and size in bytes of the global variable `name` of a loaded module;
    /// `Ok(None)` when the module has no such symbol.
    fn module_global(
        &self,
        module: ModuleHandle,
        name: &str,
    ) -> Result<Option<(DevicePtr, usize)>, Error>;

    /// Lets `f` launch with up to `bytes` of dynamic shared memory where the runtime caps it
    /// lower by default (CUDA: 48 KiB without `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`).
    /// Default: nothing to do (HIP: a launch may use all of a workgroup's LDS).
    fn allow_dynamic_shared(&self, f: FunctionHandle, bytes: u32) -> Result<(), Error> {
        let _ = (f, bytes);
        Ok(())
    }

    /// How many blocks of `block` threads with `shared_bytes` of dynamic shared memory one
    /// multiprocessor holds at once (the runtime's occupancy calculator, from the kernel's
    /// registers and LDS); `None` where the vendor cannot say.
    fn resident_blocks(
        &self,
        f: FunctionHandle,
        block: u32,
        shared_bytes: u32,
    ) -> Result<Option<u32>, Error> {
        let _ = (f, block, shared_bytes);
        Ok(None)
    }

    /// Queues one kernel launch.
    ///
    /// # Safety
    /// `args` match the kernel's C parameter list in order and type; every pointer argument
    /// is a live allocation (or null where the kernel allows it) covering what the kernel reads
    /// and writes for this launch configuration.
    unsafe fn launch(
        &self,
        f: FunctionHandle,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), Error>;

    /// [`Vendor::launch`] of a kernel that may start before the kernel queued ahead of it has
    /// finished: its blocks run up to `wf_dependency_wait()` (kernels/common.h), which returns
    /// once everything queued before is done and visible, while the kernel ahead drains. Only
    /// kernels that read nothing an earlier kernel writes before that wait, and write nothing
    /// before it, are launched so. NVIDIA sm_90+ (programmatic dependent launch, captured into
    /// graphs as programmatic edges); elsewhere a plain launch.
    ///
    /// # Safety
    /// As [`Vendor::launch`], and the kernel keeps the rule above.
    unsafe fn launch_overlapped(
        &self,
        f: FunctionHandle,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), Error> {
        self.launch(f, cfg, args)
    }

    /// Queues a GEMM with `g.inputs` inputs, f32 output and f32 accumulation (cuBLAS / rocBLAS).
    ///
    /// # Safety
    /// The pointers cover the matrices the dimensions and leading dimensions describe.
    unsafe fn gemm_f32_out(&self, g: &Gemm) -> Result<(), Error>;

    /// Waits for everything queued on the stream.
    fn synchronize(&self) -> Result<(), Error>;

    fn event_create(&self) -> Result<EventHandle, Error>;
    fn event_record(&self, e: EventHandle) -> Result<(), Error>;
    /// Milliseconds between two recorded events (waits for `end`).
    fn event_elapsed_ms(&self, start: EventHandle, end: EventHandle) -> Result<f32, Error>;
    fn event_destroy(&self, e: EventHandle) -> Result<(), Error>;
    /// Waits until the work queued before the event's last record is done.
    fn event_synchronize(&self, e: EventHandle) -> Result<(), Error>;

    /// Starts recording the stream's work into a graph: what is queued until
    /// [`Vendor::end_capture`] is recorded, not run.
    fn begin_capture(&self) -> Result<(), Error>;
    /// Ends the recording and instantiates it.
    fn end_capture(&self) -> Result<GraphHandle, Error>;
    /// Queues the recorded work on the stream, as recorded (same kernels, same arguments).
    fn graph_launch(&self, g: GraphHandle) -> Result<(), Error>;
    fn graph_destroy(&self, g: GraphHandle) -> Result<(), Error>;
}

/// Why a GPU runtime or device could not be opened: the one distinction the GPU tests and the
/// CLI act on (DESIGN.md "Conformance policy": a GPU test skips only when there is no GPU).
#[derive(Debug)]
pub enum OpenError {
    /// No runtime library, or a runtime that reports no device: GPU tests skip (saying why),
    /// `--backend auto` runs on the CPU. Under `WAVEFRONT_REQUIRE_GPU=1` this too is a failure.
    Unavailable(String),
    /// A runtime and a device are there, but something failed: a kernel that does not compile,
    /// a module that does not load, a vendor call that errs. Always an error, never a skip.
    Failed(Error),
}

impl OpenError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, OpenError::Unavailable(_))
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Unavailable(r) => f.write_str(r),
            OpenError::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<Error> for OpenError {
    fn from(e: Error) -> Self {
        OpenError::Failed(e)
    }
}

/// `Error::Backend` for a failed vendor call: `op` is the C function, `status` its status name
/// with the numeric code, `context` what was being done.
pub fn vendor_error(op: &str, status: &str, context: &str) -> Error {
    Error::Backend {
        backend: "gpu",
        op: op.to_string(),
        detail: if context.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {context}")
        },
    }
}

/// Tries `candidates` (paths or bare sonames) with the system loader; on success returns the
/// one that opened and keeps it loaded for the life of the process (so a runtime crate that
/// later opens the same soname gets this copy), else a one-line reason naming each candidate.
pub fn probe_library(what: &str, candidates: &[String]) -> Result<String, String> {
    let mut first_error = None;
    for c in candidates {
        // SAFETY: loading a vendor runtime runs its initializers, which have no preconditions.
        match unsafe { libloading::Library::new(c) } {
            Ok(lib) => {
                std::mem::forget(lib);
                return Ok(c.clone());
            }
            Err(e) => {
                // libloading's own message is "dlopen failed"; the loader's is the source.
                let msg = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.to_string());
                first_error.get_or_insert_with(|| first_line(&msg).to_string());
            }
        }
    }
    let tried = match candidates.len() {
        0 => return Err(format!("no {what} library names to try")),
        1..=3 => candidates.join(", "),
        n => format!("{} and {} more names", candidates[..2].join(", "), n - 2),
    };
    Err(format!(
        "no {what} library (tried {tried}; {})",
        first_error.unwrap_or_default()
    ))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The library names to probe: `$var` alone when set (a test or a specific install), else
/// `defaults`.
pub(crate) fn library_candidates(var: &str, defaults: Vec<String>) -> Vec<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => vec![v],
        _ => defaults,
    }
}

/// Runs `f`, turning a panic inside a runtime crate (a symbol missing from an old driver, a
/// library that vanished) into a failure instead of a crash: the runtime loaded, so a device
/// may be there, and this is never a reason to skip.
pub(crate) fn no_panic<T>(
    what: &str,
    f: impl FnOnce() -> Result<T, OpenError>,
) -> Result<T, OpenError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            Err(OpenError::Failed(vendor_error(
                what,
                "panicked",
                first_line(msg),
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_library_gives_a_reason_naming_the_candidates() {
        let err = probe_library(
            "CUDA driver",
            &["/nonexistent/wavefront/libcuda.so.1".to_string()],
        )
        .unwrap_err();
        assert!(
            err.starts_with("no CUDA driver library (tried /nonexistent/wavefront/libcuda.so.1; "),
            "{err}"
        );
        // The loader's own message, not libloading's generic one.
        assert!(err.contains("No such file or directory"), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
        let many: Vec<String> = (0..5).map(|i| format!("libmissing{i}.so")).collect();
        let err = probe_library("HIP", &many).unwrap_err();
        assert!(
            err.starts_with(
                "no HIP library (tried libmissing0.so, libmissing1.so and 3 more names; "
            ),
            "{err}"
        );
    }

    #[test]
    fn present_library_is_found() {
        let names = [
            "libwavefront-missing.so".to_string(),
            "libc.so.6".to_string(),
        ];
        assert_eq!(probe_library("libc", &names).unwrap(), "libc.so.6");
    }

    #[test]
    fn vendor_error_names_the_call_and_status() {
        let e = vendor_error("hipMalloc", "hipErrorOutOfMemory (2)", "1024 bytes");
        assert!(matches!(&e, Error::Backend { backend: "gpu", op, detail }
            if op == "hipMalloc" && detail == "hipErrorOutOfMemory (2): 1024 bytes"));
        assert_eq!(
            e.to_string(),
            "backend gpu: hipMalloc: hipErrorOutOfMemory (2): 1024 bytes"
        );
    }

    #[test]
    fn a_panic_in_a_runtime_crate_becomes_a_reason() {
        let r: Result<(), OpenError> = no_panic("CUDA", || panic!("Missing symbol cuFoo\nmore"));
        let e = r.unwrap_err();
        assert!(
            !e.is_unavailable(),
            "a panic in a loaded runtime is a failure: {e}"
        );
        assert_eq!(
            e.to_string(),
            "backend gpu: CUDA: panicked: Missing symbol cuFoo"
        );
        assert_eq!(no_panic("CUDA", || Ok::<_, OpenError>(3)).unwrap(), 3);
    }
}
