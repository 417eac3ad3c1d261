//! The vendor layer's memory and module-global queries on a real device (CUDA or HIP, the
//! first that opens): free memory falls by what is allocated, and a module global's address
//! is device memory a kernel reads. Skips, saying why, where no GPU is usable; under
//! `WAVEFRONT_REQUIRE_GPU=1` that is a failure.

use std::io::Write;

use wavefront::backend::gpu::vendor::cuda::CudaVendor;
use wavefront::backend::gpu::vendor::hip::HipVendor;
use wavefront::backend::gpu::vendor::{CompileInput, KernelArg, LaunchConfig, Vendor};
use wavefront::backend::gpu::{require_gpu, runtime_order, OpenError, Runtime};

/// The first device of the runtimes `WAVEFRONT_GPU` allows, or `None` (skipping, saying why).
fn vendor() -> Option<Box<dyn Vendor>> {
    let order = runtime_order(std::env::var("WAVEFRONT_GPU").ok().as_deref());
    let mut reasons = Vec::new();
    for rt in order.clone().unwrap_or_default() {
        let opened: Result<Box<dyn Vendor>, OpenError> = match rt {
            Runtime::Cuda => CudaVendor::open(0).map(|v| Box::new(v) as Box<dyn Vendor>),
            Runtime::Hip => HipVendor::open(0).map(|v| Box::new(v) as Box<dyn Vendor>),
        };
        match opened {
            Ok(v) => return Some(v),
            Err(OpenError::Unavailable(r)) => reasons.push(format!("{rt}: {r}")),
            Err(OpenError::Failed(e)) => panic!("the {rt} device is there but failed to open: {e}"),
        }
    }
    if let Err(r) = order {
        reasons.push(r);
    }
    let why = reasons.join("; ");
    assert!(
        !require_gpu(),
        "WAVEFRONT_REQUIRE_GPU=1 but there is no usable GPU: {why}"
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipping GPU test: no usable GPU ({why})"
    );
    None
}

const PROBE: &str = "__device__ int wf_probe[4];\n\
    extern \"C\" __global__ void wf_probe_copy(int* out) {\n\
      int i = threadIdx.x;\n\
      if (i < 4) out[i] = 2 * wf_probe[i];\n\
    }\n";

/// One test, so no other allocation of this process runs between the two memory readings.
#[test]
fn free_memory_and_module_globals_on_the_device() {
    let Some(v) = vendor() else { return };
    let info = v.info().clone();
    let (free, total) = v.memory_info().expect("memory info");
    assert!(free > 0 && free <= total, "free {free} of {total}");
    assert!(
        total <= info.total_memory + (1 << 30) && total + (1 << 30) >= info.total_memory,
        "memory_info total {total} vs the device's {}",
        info.total_memory
    );
    let bytes = 256 << 20;
    let p = v.alloc(bytes).expect("alloc");
    let (after, _) = v.memory_info().expect("memory info");
    // SAFETY: `p` came from this vendor's alloc and is not used afterwards.
    unsafe { v.free(p) }.expect("free");
    let _ = writeln!(
        std::io::stderr(),
        "{info}: free {free} of {total} bytes, {after} after allocating {bytes}"
    );
    assert!(
        free >= after + bytes,
        "allocating {bytes} bytes took free memory from {free} to {after}"
    );

    let code = v
        .compile(&CompileInput {
            name: "probe.hip",
            source: PROBE,
            headers: &[],
            options: &[],
        })
        .expect("the probe compiles");
    let m = v.load_module(&code).expect("the probe loads");
    let (g, g_bytes) = v
        .module_global(m, "wf_probe")
        .expect("module global lookup")
        .expect("the probe declares wf_probe");
    assert_eq!(g_bytes, 16);
    assert_eq!(v.module_global(m, "wf_absent").expect("lookup"), None);

    // The address is the global a kernel of the module reads.
    let values = [3i32, -7, 11, 1 << 20];
    let host: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    v.htod(g, &host).expect("write the global");
    let out = v.alloc(16).expect("alloc");
    let f = v
        .get_function(m, "wf_probe_copy")
        .expect("lookup")
        .expect("the probe has wf_probe_copy");
    let cfg = LaunchConfig {
        grid: (1, 1, 1),
        block: (64, 1, 1),
        shared_bytes: 0,
    };
    // SAFETY: one pointer argument covering the 4 ints the kernel writes.
    unsafe { v.launch(f, cfg, &[KernelArg::Ptr(out)]) }.expect("launch");
    let mut got = vec![0u8; 16];
    v.dtoh(&mut got, out).expect("read back");
    // SAFETY: `out` came from this vendor's alloc and is not used afterwards.
    unsafe { v.free(out) }.expect("free");
    let got: Vec<i32> = got
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(got, values.map(|x| 2 * x));
}
