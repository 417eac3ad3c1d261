//! The backend's plumbing over a fake vendor (host memory, a "compiler" that returns the
//! source, launches recorded instead of run): kernel lookup, the cache path through module
//! loading, and the launch configurations and GEMM arguments the ABI prescribes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::module::{CompileRequest, ModuleCache, Origin};
use super::ops::gemv::GEMV_MAX_ROWS;
use super::vendor::{
    CompileInput, DeviceInfo, DevicePtr, EventHandle, FunctionHandle, Gemm, GraphHandle, KernelArg,
    LaunchConfig, ModuleHandle, Runtime, Vendor,
};
use super::GpuOptions;
use super::{choose_wave, GpuBackend, GpuTensor, ABI_KERNELS};
use crate::backend::{
    Activation, AttentionParams, Backend, LinearParams, LogitsParams, PreNorm, RmsNormParams,
};
use crate::error::{Error, Result};
use crate::kv_cache::{KvCache, KvLayout};
use crate::sampler::SamplingParams;
use crate::tensor::DType;

#[derive(Debug, Clone, PartialEq)]
enum Call {
    Launch(String, LaunchConfig, Vec<KernelArg>),
    Gemm(Gemm),
    /// `allow_dynamic_shared(kernel, bytes)`.
    Shared(String, u32),
    /// A stream capture begun, ended (the calls between are recorded, not run), a graph
    /// launched.
    BeginCapture,
    EndCapture,
    Replay,
}

#[derive(Default)]
struct State {
    mem: HashMap<DevicePtr, Vec<u8>>,
    next: DevicePtr,
    images: Vec<Vec<u8>>,
    functions: Vec<String>,
    calls: Vec<Call>,
    compiles: usize,
    /// Module globals handed out, by (module, name): one allocation each.
    globals: HashMap<(usize, String), (DevicePtr, usize)>,
}

struct FakeVendor {
    info: DeviceInfo,
    state: Mutex<State>,
}

impl FakeVendor {
    fn new(runtime: Runtime, wave: u32) -> Arc<Self> {
        Self::with_arch(runtime, wave, "sm_00")
    }

    fn with_arch(runtime: Runtime, wave: u32, arch: &str) -> Arc<Self> {
        Arc::new(FakeVendor {
            info: DeviceInfo {
                runtime,
                ordinal: 0,
                name: "fake".into(),
                arch: arch.into(),
                wave,
                total_memory: 1 << 30,
                multiprocessors: 1,
                runtime_version: "fake 1.0".into(),
            },
            state: Mutex::new(State {
                next: 0x1000,
                ..Default::default()
            }),
        })
    }

    fn calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.state.lock().unwrap().calls)
    }

    fn alloc_in(s: &mut State, bytes: usize) -> DevicePtr {
        let p = s.next;
        s.next += (bytes as u64).div_ceil(256) * 256 + 256;
        s.mem.insert(p, vec![0xAB; bytes]);
        p
    }

    /// The allocation holding `p` and the offset of `p` in it.
    fn locate(s: &State, p: DevicePtr) -> Option<(DevicePtr, usize)> {
        s.mem
            .iter()
            .find(|(base, v)| p >= **base && p < **base + v.len() as u64)
            .map(|(base, _)| (*base, (p - base) as usize))
    }
}

impl Vendor for FakeVendor {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    /// Free memory is the total less the live allocations.
    fn memory_info(&self) -> Result<(usize, usize)> {
        let s = self.state.lock().unwrap();
        let used: usize = s.mem.values().map(Vec::len).sum();
        Ok((self.info.total_memory - used, self.info.total_memory))
    }
    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        let mut s = self.state.lock().unwrap();
        Ok(Self::alloc_in(&mut s, bytes))
    }
    unsafe fn free(&self, ptr: DevicePtr) -> Result<()> {
        self.state.lock().unwrap().mem.remove(&ptr);
        Ok(())
    }
    fn htod(&self, dst: DevicePtr, src: &[u8]) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let (base, off) = Self::locate(&s, dst).expect("htod into an allocation");
        s.mem.get_mut(&base).unwrap()[off..off + src.len()].copy_from_slice(src);
        Ok(())
    }
    fn dtoh(&self, dst: &mut [u8], src: DevicePtr) -> Result<()> {
        let s = self.state.lock().unwrap();
        let (base, off) = Self::locate(&s, src).expect("dtoh from an allocation");
        dst.copy_from_slice(&s.mem[&base][off..off + dst.len()]);
        Ok(())
    }
    fn host_alloc(&self, bytes: usize) -> Result<*mut u8> {
        // Leaked on purpose: a fake's page-locked memory is plain heap memory.
        Ok(Box::leak(vec![0u8; bytes.max(1)].into_boxed_slice()).as_mut_ptr())
    }
    unsafe fn host_free(&self, _: *mut u8) -> Result<()> {
        Ok(())
    }
    unsafe fn dtoh_async(&self, dst: *mut u8, src: DevicePtr, bytes: usize) -> Result<()> {
        let mut buf = vec![0u8; bytes];
        self.dtoh(&mut buf, src)?;
        std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, bytes);
        Ok(())
    }
    fn event_synchronize(&self, _: EventHandle) -> Result<()> {
        Ok(())
    }
    fn dtod(&self, _: DevicePtr, _: DevicePtr, _: usize) -> Result<()> {
        Ok(())
    }
    fn memset(&self, dst: DevicePtr, value: u8, bytes: usize) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let (base, off) = Self::locate(&s, dst).expect("memset of an allocation");
        s.mem.get_mut(&base).unwrap()[off..off + bytes].fill(value);
        Ok(())
    }
    fn compile(&self, input: &CompileInput<'_>) -> Result<Vec<u8>> {
        self.state.lock().unwrap().compiles += 1;
        assert_eq!(input.headers.len(), 1);
        assert_eq!(input.headers[0].0, "common.h");
        Ok(format!("{}\n{}", input.options.join(" "), input.source).into_bytes())
    }
    fn load_module(&self, image: &[u8]) -> Result<ModuleHandle> {
        if image.starts_with(b"BAD") {
            return Err(super::bad(
                "cuModuleLoadData",
                "CUDA_ERROR_INVALID_IMAGE (200)".into(),
            ));
        }
        let mut s = self.state.lock().unwrap();
        s.images.push(image.to_vec());
        Ok(ModuleHandle(s.images.len()))
    }
    fn get_function(&self, m: ModuleHandle, name: &str) -> Result<Option<FunctionHandle>> {
        let mut s = self.state.lock().unwrap();
        let text = String::from_utf8_lossy(&s.images[m.0 - 1]).into_owned();
        if !text.contains(&format!("void {name}(")) {
            return Ok(None);
        }
        s.functions.push(name.to_string());
        Ok(Some(FunctionHandle(s.functions.len())))
    }
    /// A module declares the global `name` as `__device__ int name[n];` (4n bytes).
    fn module_global(&self, m: ModuleHandle, name: &str) -> Result<Option<(DevicePtr, usize)>> {
        let mut s = self.state.lock().unwrap();
        let key = (m.0, name.to_string());
        if let Some(g) = s.globals.get(&key) {
            return Ok(Some(*g));
        }
        let text = String::from_utf8_lossy(&s.images[m.0 - 1]).into_owned();
        let decl = format!("__device__ int {name}[");
        let Some(count) = text
            .split_once(&decl)
            .and_then(|(_, rest)| rest.split_once("];"))
            .and_then(|(n, _)| n.parse::<usize>().ok())
        else {
            return Ok(None);
        };
        let g = (Self::alloc_in(&mut s, 4 * count), 4 * count);
        s.globals.insert(key, g);
        Ok(Some(g))
    }
    fn allow_dynamic_shared(&self, f: FunctionHandle, bytes: u32) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let name = s.functions[f.0 - 1].clone();
        s.calls.push(Call::Shared(name, bytes));
        Ok(())
    }
    unsafe fn launch(
        &self,
        f: FunctionHandle,
        cfg: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        let mut s = self.state.lock().unwrap();
        let name = s.functions[f.0 - 1].clone();
        s.calls.push(Call::Launch(name, cfg, args.to_vec()));
        Ok(())
    }
    unsafe fn gemm_f32_out(&self, g: &Gemm) -> Result<()> {
        self.state.lock().unwrap().calls.push(Call::Gemm(*g));
        Ok(())
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn event_create(&self) -> Result<EventHandle> {
        Ok(EventHandle(1))
    }
    fn event_record(&self, _: EventHandle) -> Result<()> {
        Ok(())
    }
    fn event_elapsed_ms(&self, _: EventHandle, _: EventHandle) -> Result<f32> {
        Ok(0.0)
    }
    fn event_destroy(&self, _: EventHandle) -> Result<()> {
        Ok(())
    }

    fn begin_capture(&self) -> Result<()> {
        self.state.lock().unwrap().calls.push(Call::BeginCapture);
        Ok(())
    }

    fn end_capture(&self) -> Result<GraphHandle> {
        self.state.lock().unwrap().calls.push(Call::EndCapture);
        Ok(GraphHandle(1))
    }

    fn graph_launch(&self, _: GraphHandle) -> Result<()> {
        self.state.lock().unwrap().calls.push(Call::Replay);
        Ok(())
    }

    fn graph_destroy(&self, _: GraphHandle) -> Result<()> {
        Ok(())
    }
}

const COMMON: &str = "// common.h";

/// Two source files declaring every ABI kernel between them (no bodies needed).
fn sources(skip: &[&str]) -> Vec<(String, String)> {
    let decl = |names: &[&str]| -> String {
        names
            .iter()
            .filter(|n| !skip.contains(n))
            .map(|n| format!("extern \"C\" __global__ void {n}();\n"))
            .collect()
    };
    vec![
        ("a.hip".into(), decl(&ABI_KERNELS[..10])),
        ("b.hip".into(), decl(&ABI_KERNELS[10..])),
    ]
}

fn build(
    v: &Arc<FakeVendor>,
    wave: Option<u32>,
    cache: &ModuleCache,
    skip: &[&str],
) -> Result<GpuBackend> {
    let src = sources(skip);
    let refs: Vec<(&str, &str)> = src.iter().map(|(f, s)| (f.as_str(), s.as_str())).collect();
    let opts = GpuOptions {
        wave,
        ..Default::default()
    };
    GpuBackend::with_sources(v.clone(), &opts, cache, &refs, COMMON)
}

#[test]
fn a_missing_abi_kernel_is_a_typed_error_naming_it() {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let err = build(
        &v,
        None,
        &ModuleCache::new(None),
        &["argmax", "attention_f16"],
    )
    .err()
    .expect("construction fails");
    match err {
        Error::Backend {
            backend,
            op,
            detail,
        } => {
            assert_eq!((backend, op.as_str()), ("gpu", "kernel lookup"));
            assert_eq!(
                detail,
                "kernels/ lacks the ABI kernels attention_f16, argmax"
            );
        }
        other => panic!("expected Error::Backend, got {other:?}"),
    }
}

#[test]
fn modules_come_from_the_cache_and_a_rejected_entry_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(Some(dir.path().to_path_buf()));
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let b = build(&v, Some(64), &cache, &[]).unwrap();
    assert_eq!(b.wave(), 64);
    assert!(b
        .module_origins()
        .iter()
        .all(|(_, o)| *o == Origin::Compiled));
    assert_eq!(v.state.lock().unwrap().compiles, 2);
    // The images carry the wave define the compiler was given.
    assert!(v.state.lock().unwrap().images[0].starts_with(b"-DWAVE=64\n"));
    let b = build(&v, Some(64), &cache, &[]).unwrap();
    assert!(b.module_origins().iter().all(|(_, o)| *o == Origin::Cache));
    assert_eq!(v.state.lock().unwrap().compiles, 2);
    // A well-formed entry the runtime refuses to load is recompiled, not trusted again.
    let src = sources(&[]);
    let req = CompileRequest {
        file: src[0].0.clone(),
        source: src[0].1.clone(),
        common_h: COMMON.into(),
        options: CompileRequest::wave_options(64),
        arch: "sm_00".into(),
        runtime_version: "fake 1.0".into(),
        wave: 64,
    };
    cache
        .recompile(&req, &|_| Ok(b"BAD image".to_vec()))
        .unwrap();
    let b = build(&v, Some(64), &cache, &[]).unwrap();
    assert_eq!(
        b.module_origins()[0],
        ("a.hip".to_string(), Origin::Recompiled)
    );
    assert_eq!(b.module_origins()[1].1, Origin::Cache);
    assert_eq!(v.state.lock().unwrap().compiles, 3);
    let b = build(&v, Some(64), &cache, &[]).unwrap();
    assert_eq!(
        b.module_origins()[0].1,
        Origin::Cache,
        "the entry was rewritten"
    );
}

#[test]
fn wave_is_native_or_emulated_64_on_nvidia_only() {
    let cuda = FakeVendor::new(Runtime::Cuda, 32);
    let hip64 = FakeVendor::new(Runtime::Hip, 64);
    let hip32 = FakeVendor::new(Runtime::Hip, 32);
    assert_eq!(choose_wave(&cuda.info, None).unwrap(), 32);
    assert_eq!(choose_wave(&cuda.info, Some(64)).unwrap(), 64);
    assert_eq!(choose_wave(&hip64.info, None).unwrap(), 64);
    assert!(choose_wave(&hip64.info, Some(32)).is_err());
    assert!(choose_wave(&hip32.info, Some(64)).is_err());
    let err = choose_wave(&cuda.info, Some(16)).unwrap_err();
    assert!(
        matches!(&err, Error::Backend { op, .. } if op == "wave"),
        "{err}"
    );
    let b = build(&cuda, Some(64), &ModuleCache::new(None), &[]).unwrap();
    assert_eq!(b.device(), "fake (sm_00, WAVE=64 emulated, fake 1.0)");
}

/// On NVIDIA sm_80+ at WAVE=32 the matrix-core GEMVs prefetch their weights into a shared-memory
/// ring (common.h WF_CP_ASYNC): the backend allows the four kernels 64 KiB of dynamic shared
/// memory when it opens, and a launch asks for the staged rows plus the 32 KiB ring. The
/// emulated WAVE=64 (the FMA twin) and older devices have no ring.
/// The dynamic shared memory the backend allowed kernels when it opened (the calls since the
/// last `calls()`), of the kernels whose names `keep` takes, in call order.
fn shared_allowed(v: &FakeVendor, keep: impl Fn(&str) -> bool) -> Vec<(String, u32)> {
    v.calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Shared(name, bytes) if keep(&name) => Some((name, bytes)),
            _ => None,
        })
        .collect()
}

#[test]
fn matrix_core_gemvs_take_a_weight_ring_on_nvidia_sm80_and_later() {
    for (arch, wave, ring) in [
        ("sm_90", None, 32768),
        ("sm_90", Some(64), 0),
        ("sm_75", None, 0),
    ] {
        let v = FakeVendor::with_arch(Runtime::Cuda, 32, arch);
        let mut b = build(&v, wave, &ModuleCache::new(None), &[]).unwrap();
        let allowed = shared_allowed(&v, |name| super::ops::gemv::MMA_KERNELS.contains(&name));
        if ring > 0 {
            let want: Vec<_> = super::ops::gemv::MMA_KERNELS
                .iter()
                .map(|n| (n.to_string(), 32768 + ring as u32))
                .collect();
            assert_eq!(allowed, want, "{arch}");
        } else {
            assert!(allowed.is_empty(), "{arch} {wave:?}: {allowed:?}");
        }
        let x = b.upload_f32(&vec![1.0; 4096]).unwrap();
        let w = b.upload(DType::BF16, &vec![0u8; 64 * 4096 * 2]).unwrap();
        let mut out = b.alloc(DType::F32, 64).unwrap();
        b.set_gemv_mma(true);
        v.calls();
        let p = LinearParams {
            rows: 1,
            in_features: 4096,
            out_features: 64,
        };
        b.linear(&x, &w, None, &mut out, p).unwrap();
        let calls = v.calls();
        let [Call::Launch(name, cfg, _)] = &calls[..] else {
            panic!("{calls:?}")
        };
        assert_eq!(name, "gemv_mma_bf16");
        let tiles = 4 * 256 * 256 / b.wave();
        let want = (2 * 4096 + ring as u32).max(tiles);
        assert_eq!(
            cfg.shared_bytes, want,
            "{arch} {wave:?}: one row of 4096, then the ring"
        );
    }
}

#[test]
fn matrix_core_gemvs_take_one_row_and_several_alike_where_k_is_a_multiple_of_32() {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let mut b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    let (m, inter) = (300, 20);
    let x = b.upload_f32(&vec![1.0; 9 * 2048]).unwrap();
    let w = b.upload(DType::BF16, &vec![0u8; m * 2048 * 2]).unwrap();
    let bias = b.upload_f32(&vec![0.5; m]).unwrap();
    let mut out = b.alloc(DType::F32, 9 * m).unwrap();
    let mut tmp = b.alloc(DType::F32, 9 * 2 * inter).unwrap();
    v.calls();
    let p = |rows, in_features| LinearParams {
        rows,
        in_features,
        out_features: m,
    };
    // Off (the default): one row is the FMA GEMV.
    b.linear(&x, &w, Some(&bias), &mut out, p(1, 64)).unwrap();
    assert!(matches!(&v.calls()[..], [Call::Launch(n, ..)] if n == "gemv_bf16"));
    // On: one row and four alike, one launch of ceil(300 / 16) tiles for the one group of up to
    // 16 input rows, the inputs staged in the kernel's LDS (xh null; the LDS the larger of the
    // 8 tiles of 1 KiB and the staged rows).
    for rows in [1, 4] {
        b.mma_products(&mut || {
            b.invariant_rows(&mut || b.linear(&x, &w, Some(&bias), &mut out, p(rows, 64)))
        })
        .unwrap();
        let calls = v.calls();
        let [Call::Launch(name, cfg, args)] = &calls[..] else {
            panic!("{calls:?}")
        };
        assert_eq!((name.as_str(), cfg.grid), ("gemv_mma_bf16", (19, 1, 1)));
        assert_eq!((cfg.block, cfg.shared_bytes), ((256, 1, 1), 8192));
        let head = [w.ptr(), x.ptr(), 0].map(KernelArg::Ptr);
        assert_eq!(args[..3], head);
        assert_eq!(
            args[4..7],
            [
                KernelArg::Ptr(0),
                KernelArg::I32(64),
                KernelArg::Ptr(bias.ptr())
            ]
        );
        let tail = [m as i32, 0, 0, 64, 0, rows as i32].map(KernelArg::I32);
        assert_eq!(args[10..], tail[..]);
    }
    // Nine rows of 2048 (past the 16384 elements the LDS stages): staged first, then read
    // from the staging buffer; 16 KiB of LDS at WAVE=32 for nine rows of 2048 would not do.
    b.mma_products(&mut || {
        b.invariant_rows(&mut || b.linear(&x, &w, Some(&bias), &mut out, p(9, 2048)))
    })
    .unwrap();
    let calls = v.calls();
    let [Call::Launch(stage, scfg, sargs), Call::Launch(name, cfg, args)] = &calls[..] else {
        panic!("{calls:?}")
    };
    assert_eq!((stage.as_str(), scfg.grid), ("gemv_stage_bf16", (9, 1, 1)));
    assert_eq!(
        (name.as_str(), cfg.grid, cfg.shared_bytes),
        ("gemv_mma_bf16", (19, 1, 1), 8192)
    );
    assert_eq!((&args[4], &args[5]), (&sargs[3], &KernelArg::I32(2048)));
    assert_ne!(args[4], KernelArg::Ptr(0));
    // K a multiple of 8 but not of 32: the FMA kernels, one row and several.
    b.mma_products(&mut || b.linear(&x, &w, Some(&bias), &mut out, p(1, 72)))
        .unwrap();
    assert!(matches!(&v.calls()[..], [Call::Launch(n, ..)] if n == "gemv_bf16"));
    b.mma_products(&mut || {
        b.invariant_rows(&mut || b.linear(&x, &w, Some(&bias), &mut out, p(4, 72)))
    })
    .unwrap();
    let calls = v.calls();
    assert!(
        matches!(&calls[1], Call::Launch(n, ..) if n == "gemv_rows_bf16"),
        "{calls:?}"
    );
    // The gate/up form: ceil(20 / 8) tiles of 8 outputs (their gate and up rows); the mode
    // set for the backend (WAVEFRONT_GEMV_MMA=1) as inside mma_products.
    b.set_gemv_mma(true);
    b.gate_up_swiglu(
        &x,
        &w,
        &mut tmp,
        &mut out,
        1,
        64,
        inter,
        Activation::GeluTanh,
    )
    .unwrap();
    b.set_gemv_mma(false);
    let calls = v.calls();
    let [Call::Launch(name, cfg, args)] = &calls[..] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        (name.as_str(), cfg.grid),
        ("gemv_swiglu_mma_bf16", (3, 1, 1))
    );
    let tail = [
        KernelArg::Ptr(out.ptr()),
        KernelArg::I32(20),
        KernelArg::I32(64),
    ];
    assert_eq!(args[6..9], tail);
    assert_eq!(args[9..], [KernelArg::I32(1), KernelArg::I32(1)]);
    // Two rows outside a batched pass (a prompt chunk): BLAS, as without them.
    b.mma_products(&mut || b.linear(&x, &w, Some(&bias), &mut out, p(2, 64)))
        .unwrap();
    assert!(matches!(&v.calls()[1], Call::Gemm(_)));
}

/// `WAVEFRONT_QGEMV_Q8` (`set_qgemv_q8`): a GEMV over block-quantized weights launches the
/// 8-bit-activation form with its LDS (48 bytes a group of 32, at most 16384 inputs a tile),
/// the same grid and arguments, and the backend reports the inputs' rounding as Q8_0 for the
/// conformance bounds; 16-bit weights are untouched.
#[test]
fn the_8_bit_activation_qgemv_is_its_own_kernel_and_rounding() {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let mut b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    let (m, k) = (40, 4096);
    let x = b.upload_f32(&vec![1.0; k]).unwrap();
    // Q4_0: 18 bytes a block of 32 (an f16 scale 0, quants 0).
    let w = b.upload(DType::Q4_0, &vec![0u8; m * k / 32 * 18]).unwrap();
    let mut out = b.alloc(DType::F32, m).unwrap();
    let p = LinearParams {
        rows: 1,
        in_features: k,
        out_features: m,
    };
    let mut launched = Vec::new();
    for q8 in [false, true] {
        b.set_qgemv_q8(Some(q8));
        v.calls();
        b.linear(&x, &w, None, &mut out, p).unwrap();
        let calls = v.calls();
        let [Call::Launch(name, cfg, args)] = &calls[..] else {
            panic!("{calls:?}")
        };
        launched.push((name.clone(), cfg.grid, cfg.shared_bytes, args.len()));
        let want = if q8 { DType::Q8_0Kv } else { DType::F16 };
        assert_eq!(b.matmul_input_dtype(DType::Q4_0), want);
        assert_eq!(b.matmul_input_dtype(DType::BF16), DType::BF16);
    }
    assert_eq!(launched[0].0, "qgemv_q4_0");
    assert_eq!(launched[1].0, "qgemv_q8a_q4_0");
    assert_eq!(launched[0].1, launched[1].1, "the same grid");
    assert_eq!(launched[0].3, launched[1].3, "the same arguments");
    assert_eq!(launched[0].2, 4 * 4096 / 32 * 36);
    assert_eq!(launched[1].2, 4096 / 32 * 48);
}

/// The model uploads QKV and gate/up as stacks of parts (`model::upload_stacked`, through
/// `upload_stack` over block types): parts of one type are one segment, so one launch (QKV one
/// `qgemv` with three outputs, gate/up one `qgemv_swiglu`); a mixed stack launches once a run of
/// one type (a Q4_K_M file's [Q4_K, Q4_K, Q6_K] QKV: two), gate and up of two types two
/// products and the `swiglu` kernel. (Every part was its own segment before 3a7adb5: seven GEMV
/// launches a layer and a `swiglu`, bench/results/2026-12-07-qgemv-stacks-h100.)
#[test]
fn a_models_quantized_stacks_launch_once_a_run_of_one_type() {
    use crate::tensor::{HostTensor, Storage};
    use DType::{Q4_K, Q6_K};
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let mut b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    b.set_qgemv_q8(Some(false));
    let k = 256;
    let part = |name: &str, dtype: DType, m: usize| HostTensor {
        name: format!("model.layers.0.{name}.weight"),
        dtype,
        shape: vec![m, k],
        storage: Storage::Owned(Arc::new(vec![0u8; dtype.bytes_for(m * k)])),
    };
    let launched = |calls: Vec<Call>| -> Vec<String> {
        calls
            .into_iter()
            .filter_map(|c| match c {
                Call::Launch(name, ..) => Some(name),
                _ => None,
            })
            .collect()
    };
    let x = b.upload_f32(&vec![1.0; k]).unwrap();
    let rows = [64, 32, 32];
    for (types, want) in [
        ([Q4_K, Q4_K, Q4_K], &["qgemv_q4_k"][..]),
        ([Q4_K, Q4_K, Q6_K], &["qgemv_q4_k", "qgemv_q6_k"][..]),
    ] {
        let parts: Vec<HostTensor> = ["q", "k", "v"]
            .iter()
            .zip(types.iter().zip(rows))
            .map(|(n, (&t, m))| part(n, t, m))
            .collect();
        let refs: Vec<&HostTensor> = parts.iter().collect();
        let w = crate::model::upload_stacked(&b, &refs).unwrap();
        let mut outs: Vec<GpuTensor> = rows
            .iter()
            .map(|&m| b.alloc(DType::F32, m).unwrap())
            .collect();
        let mut outs: Vec<&mut GpuTensor> = outs.iter_mut().collect();
        v.calls();
        b.linear_stacked(&x, &w, None, &mut outs, &rows, 1, k)
            .unwrap();
        assert_eq!(launched(v.calls()), want, "QKV of {types:?}");
    }
    let inter = 64;
    for (types, want) in [
        ([Q4_K, Q4_K], &["qgemv_swiglu_q4_k"][..]),
        ([Q4_K, Q6_K], &["qgemv_q4_k", "qgemv_q6_k", "swiglu"][..]),
    ] {
        let parts = [part("gate", types[0], inter), part("up", types[1], inter)];
        let w = crate::model::upload_stacked(&b, &[&parts[0], &parts[1]]).unwrap();
        let mut tmp = b.alloc(DType::F32, 2 * inter).unwrap();
        let mut out = b.alloc(DType::F32, inter).unwrap();
        v.calls();
        let act = Activation::Silu;
        b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, 1, k, inter, act)
            .unwrap();
        assert_eq!(launched(v.calls()), want, "gate/up of {types:?}");
    }
}

/// The operands of the block-cap tests' products: x (up to 16 input rows of k), w (m rows of k
/// as `w_bytes` of `dtype`), out and tmp (16 · m f32).
struct CapProduct {
    x: GpuTensor,
    w: GpuTensor,
    out: GpuTensor,
    tmp: GpuTensor,
    m: usize,
    k: usize,
    /// The threads a block of the last launch.
    block: u32,
}

impl CapProduct {
    fn new(b: &GpuBackend, dtype: DType, w_bytes: usize, m: usize, k: usize) -> CapProduct {
        CapProduct {
            x: b.upload_f32(&vec![1.0; 16 * k]).unwrap(),
            w: b.upload(dtype, &vec![0u8; w_bytes]).unwrap(),
            out: b.alloc(DType::F32, 16 * m).unwrap(),
            tmp: b.alloc(DType::F32, 16 * m).unwrap(),
            m,
            k,
            block: 0,
        }
    }

    /// `rows` input rows through `linear`, or with `swiglu` gate/up + SwiGLU over m / 2 outputs
    /// (inside `invariant_rows` when more than one, as a batched decode pass runs them): the one
    /// launch made, as (kernel, blocks of its grid, last argument).
    fn launch(
        &mut self,
        v: &FakeVendor,
        b: &GpuBackend,
        rows: usize,
        swiglu: bool,
    ) -> (String, u32, Option<KernelArg>) {
        let (k, m) = (self.k, self.m);
        let CapProduct {
            x,
            w,
            out,
            tmp,
            block,
            ..
        } = self;
        let p = LinearParams {
            rows,
            in_features: k,
            out_features: m,
        };
        let mut run = || {
            if swiglu {
                let act = crate::backend::Activation::Silu;
                b.gate_up_swiglu(x, w, tmp, out, rows, k, m / 2, act)
            } else {
                b.linear(x, w, None, out, p)
            }
        };
        if rows > 1 {
            b.invariant_rows(&mut run).unwrap();
        } else {
            run().unwrap();
        }
        let calls = v.calls();
        let [Call::Launch(name, cfg, args)] = &calls[..] else {
            panic!("{calls:?}")
        };
        *block = cfg.block.0;
        (name.clone(), cfg.grid.0, args.last().cloned())
    }
}

/// A quantized GEMV launches at most `multiprocessors · 1` blocks where the runtime cannot
/// say what one holds (the fake has one multiprocessor and no occupancy calculator), shared by
/// its input rows, at least one an input row, each looping over its share of the row groups:
/// `blocks` (per input row) is the last argument, the grid n_in times it. Its rows a group are
/// its block's waves (qgemv_q4_0 1024 threads, qgemv_swiglu_q4_0 512).
/// `set_qgemv_blocks` (WAVEFRONT_QGEMV_BLOCKS) moves the cap; the coverage a run can reach
/// follows the activation form.
#[test]
fn quantized_gemvs_cap_their_blocks_and_loop_over_row_groups() {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let mut b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    let (m, k) = (430, 256); // 14 groups of 32 rows; SwiGLU over 215 outputs: 14 groups of 16
    let mut product = CapProduct::new(&b, DType::Q4_0, m * k / 32 * 18, m, k);
    let mut launch = |b: &GpuBackend, rows: usize, swiglu: bool| {
        let (name, grid, last) = product.launch(&v, b, rows, swiglu);
        assert!(name.starts_with("qgemv_"), "{name}");
        let threads = if swiglu { 512 } else { 1024 };
        assert_eq!(product.block, threads, "{name}: its __launch_bounds__");
        (grid, last)
    };
    for (swiglu, groups) in [(false, 14), (true, 14)] {
        // One row: 1 block for all the groups.
        assert_eq!(launch(&b, 1, swiglu), (1, Some(KernelArg::I32(1))));
        // Two input rows: at least one block each.
        assert_eq!(launch(&b, 2, swiglu), (2, Some(KernelArg::I32(1))));
        b.set_qgemv_blocks(Some(64));
        assert_eq!(
            launch(&b, 1, swiglu),
            (groups, Some(KernelArg::I32(groups as i32))),
            "all the groups"
        );
        assert_eq!(launch(&b, 16, swiglu), (64, Some(KernelArg::I32(4))));
        b.set_qgemv_blocks(Some(1));
        assert_eq!(launch(&b, 1, swiglu), (1, Some(KernelArg::I32(1))));
        assert_eq!(
            launch(&b, 4, swiglu),
            (4, Some(KernelArg::I32(1))),
            "at least one a row"
        );
        b.set_qgemv_blocks(None);
    }
    // A smaller block (WAVEFRONT_QGEMV_THREADS): fewer rows a group, the same one-row rule;
    // never more than the kernel's bound.
    b.set_qgemv_threads(Some(512)).unwrap();
    for swiglu in [false, true] {
        let (name, grid, last) = product.launch(&v, &b, 1, swiglu);
        assert_eq!(product.block, 512, "{name}");
        assert_eq!((grid, last), (1, Some(KernelArg::I32(1))), "{name}");
        b.set_qgemv_blocks(Some(64));
        // 430 rows / 16 rows a group = 27 groups; 215 outputs / 16 = 14
        let groups = if swiglu { 14 } else { 27 };
        let (_, grid, last) = product.launch(&v, &b, 1, swiglu);
        assert_eq!(
            (grid, last),
            (groups, Some(KernelArg::I32(groups as i32))),
            "{name}"
        );
        b.set_qgemv_blocks(None);
    }
    b.set_qgemv_threads(Some(1024)).unwrap();
    let (name, ..) = product.launch(&v, &b, 1, true);
    assert_eq!(product.block, 512, "{name}: capped at its bound");
    assert!(b.set_qgemv_threads(Some(384)).is_err());
    assert!(b.set_qgemv_threads(Some(2048)).is_err());
    b.set_qgemv_threads(None).unwrap();
    // (all f32, all 8-bit, the default: every type but Q8_0, Q4_1 and Q5_0 8-bit) → (Q4_0's
    // and Q5_1's form, Q4_K's and Q6_K's, Q8_0's, Q4_1's and Q5_0's)
    for (mode, q4_0, q4_k, q8_0) in [
        (Some(false), false, false, false),
        (Some(true), true, true, true),
        (None, true, true, false),
    ] {
        b.set_qgemv_q8(mode);
        let paths = super::coverage::reachable_paths(&b);
        let has = |k: &str, p: &str| paths.contains(&(k, p));
        assert_eq!(has("qgemv_q4_0", "groups"), !q4_0);
        assert_eq!(has("qgemv_q8a_q4_0", "groups"), q4_0);
        for (t, q8) in [("q5_1", q4_0), ("q4_1", q8_0), ("q5_0", q8_0)] {
            assert_eq!(has(&format!("qgemv_{t}"), "groups"), !q8, "{t}");
            assert_eq!(has(&format!("qgemv_swiglu_q8a_{t}"), "main"), q8, "{t}");
        }
        assert_eq!(has("qgemv_swiglu_q4_k", "groups"), !q4_k);
        assert_eq!(has("qgemv_swiglu_q8a_q4_k", "main"), q4_k);
        assert_eq!(has("qgemv_q8a_q6_k", "out0"), q4_k);
        assert_eq!(has("qgemv_q8_0", "groups"), !q8_0);
        assert_eq!(has("qgemv_q8a_q8_0", "groups"), q8_0);
        assert!(has("dequant_q4_0", "rows") && has("gemv_bf16", "vec"));
        let input = |w| b.matmul_input_dtype(w);
        assert_eq!(input(DType::Q4_0) == DType::Q8_0Kv, q4_0);
        assert_eq!(input(DType::Q5_1) == DType::Q8_0Kv, q4_0);
        assert_eq!(input(DType::Q5_0) == DType::Q8_0Kv, q8_0);
        assert_eq!(input(DType::Q4_K) == DType::Q8_0Kv, q4_k);
        assert_eq!(input(DType::Q8_0) == DType::Q8_0Kv, q8_0);
    }
}

/// A 16-bit one-row GEMV launches at most multiprocessors × the blocks one holds (the fake has
/// one multiprocessor and its runtime cannot say: 4), shared by its input rows, at least one
/// an input row, each block looping over its share of the row groups: `blocks` (per input row)
/// is the last argument, the grid n_in times it. `set_gemv_blocks` (WAVEFRONT_GEMV_BLOCKS)
/// moves the cap.
#[test]
fn sixteen_bit_gemvs_cap_their_blocks_and_loop_over_row_groups() {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let mut b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    b.set_gemv_rows(false); // every row count on the one-row kernels
    let (m, k) = (100, 64); // 13 groups of 8 rows; SwiGLU over 50 outputs: 7 groups of 8
    let mut product = CapProduct::new(&b, DType::F16, m * k * 2, m, k);
    let mut launch = |b: &GpuBackend, rows: usize, swiglu: bool| {
        let (name, grid, last) = product.launch(&v, b, rows, swiglu);
        let want = if swiglu {
            "gemv_swiglu_f16"
        } else {
            "gemv_f16"
        };
        assert_eq!(name, want);
        (grid, last)
    };
    for (swiglu, groups) in [(false, 13), (true, 7)] {
        // One row: 4 blocks, looping over the groups.
        assert_eq!(launch(&b, 1, swiglu), (4, Some(KernelArg::I32(4))));
        // Two input rows share the 4: two blocks each.
        assert_eq!(launch(&b, 2, swiglu), (4, Some(KernelArg::I32(2))));
        assert_eq!(
            launch(&b, 3, swiglu),
            (3, Some(KernelArg::I32(1))),
            "at least one a row"
        );
        b.set_gemv_blocks(Some(64));
        assert_eq!(
            launch(&b, 1, swiglu),
            (groups, Some(KernelArg::I32(groups as i32))),
            "a block a group"
        );
        assert_eq!(launch(&b, 16, swiglu), (64, Some(KernelArg::I32(4))));
        b.set_gemv_blocks(Some(1));
        assert_eq!(launch(&b, 1, swiglu), (1, Some(KernelArg::I32(1))));
        b.set_gemv_blocks(None);
    }
}

#[test]
fn linear_is_convert_then_one_gemm_then_bias_per_the_abi() {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let mut b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    // A block a row group for the one-row GEMVs (their cap has its own test).
    b.set_gemv_blocks(Some(1 << 20));
    // Past the GEMV's rows: BLAS.
    let (rows, k, m) = (GEMV_MAX_ROWS + 1, 8, 300);
    let x = b.upload_f32(&vec![1.0; rows * k]).unwrap();
    let w = b.upload(DType::BF16, &vec![0u8; m * k * 2]).unwrap();
    let bias = b.upload_f32(&vec![0.5; m]).unwrap();
    let mut out = b.alloc(DType::F32, rows * m).unwrap();
    v.calls();
    let p = LinearParams {
        rows,
        in_features: k,
        out_features: m,
    };
    b.linear(&x, &w, Some(&bias), &mut out, p).unwrap();
    let calls = v.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    let Call::Launch(name, cfg, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(name, "convert_f32_to_bf16");
    assert_eq!((cfg.grid, cfg.block), ((1, 1, 1), (256, 1, 1)));
    assert_eq!(args[0], KernelArg::Ptr(x.ptr()));
    assert_eq!(args[2], KernelArg::I64(17 * 8));
    let KernelArg::Ptr(x_bf16) = args[1] else {
        panic!()
    };
    let Call::Gemm(g) = &calls[1] else {
        panic!("{calls:?}")
    };
    let want = Gemm {
        inputs: DType::BF16,
        trans_a: true,
        trans_b: false,
        m: 300,
        n: 17,
        k: 8,
        a: w.ptr(),
        lda: 8,
        b: x_bf16,
        ldb: 8,
        c: out.ptr(),
        ldc: 300,
    };
    assert_eq!(*g, want);
    let Call::Launch(name, cfg, args) = &calls[2] else {
        panic!("{calls:?}")
    };
    assert_eq!(name, "bias_add");
    assert_eq!(cfg.grid, (20, 1, 1), "ceil(17 · 300 / 256)");
    assert_eq!(args[2..], [KernelArg::I32(17), KernelArg::I32(300)]);
    // Three rows: BLAS (a prompt chunk); inside invariant_rows (a batched decode pass) four
    // rows take the several-row kernels: the four inputs staged (one block each), then one
    // launch of ceil(300 / (8 waves × 2 rows)) blocks for the one group of up to 8 input rows.
    let p3 = LinearParams { rows: 3, ..p };
    b.linear(&x, &w, Some(&bias), &mut out, p3).unwrap();
    let calls = v.calls();
    assert!(matches!(&calls[1], Call::Gemm(g) if g.n == 3), "{calls:?}");
    let p4 = LinearParams { rows: 4, ..p };
    b.invariant_rows(&mut || b.linear(&x, &w, Some(&bias), &mut out, p4))
        .unwrap();
    let calls = v.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let Call::Launch(name, cfg, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!((name.as_str(), cfg.grid), ("gemv_stage_bf16", (4, 1, 1)));
    let xh = args[3].clone();
    assert_eq!(
        args[..3],
        [
            KernelArg::Ptr(x.ptr()),
            KernelArg::Ptr(0),
            KernelArg::F32(0.0)
        ]
    );
    assert_eq!(args[4..], [KernelArg::I32(8), KernelArg::I32(8)]);
    let Call::Launch(name, cfg, args) = &calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!((name.as_str(), cfg.grid), ("gemv_rows_bf16", (19, 1, 1)));
    assert_eq!(
        args[..4],
        [
            KernelArg::Ptr(w.ptr()),
            xh,
            KernelArg::I32(8),
            KernelArg::Ptr(bias.ptr())
        ]
    );
    assert_eq!(args[7..], [300, 0, 0, 8, 0, 4].map(KernelArg::I32)[..]);
    // Without them (WAVEFRONT_NO_GEMV_ROWS=1), or three rows (below GEMV_ROWS_MIN): one GEMV
    // launch of n_in times the one-row grid, n_in and the blocks an input row its last arguments.
    b.set_gemv_rows(false);
    b.invariant_rows(&mut || b.linear(&x, &w, Some(&bias), &mut out, p4))
        .unwrap();
    b.set_gemv_rows(true);
    assert!(
        matches!(&v.calls()[..], [Call::Launch(n, c, a)] if n == "gemv_bf16"
        && c.grid == (4 * 38, 1, 1) && a[a.len() - 2..] == [4, 38].map(KernelArg::I32))
    );
    b.invariant_rows(&mut || b.linear(&x, &w, Some(&bias), &mut out, p3))
        .unwrap();
    let calls = v.calls();
    let Call::Launch(name, cfg, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!((calls.len(), name.as_str()), (1, "gemv_bf16"));
    assert_eq!(cfg.grid, (3 * 38, 1, 1), "3 × ceil(300 / 8)");
    assert_eq!(args[args.len() - 2..], [3, 38].map(KernelArg::I32));
    // Logits of row 2 read x from row 2 on: one row of bf16 weights is one GEMV launch.
    let lp = LogitsParams {
        row0: 2,
        rows: 1,
        hidden: k,
        vocab: m,
        softcap: None,
    };
    b.logits(&x, &w, &mut out, lp).unwrap();
    let calls = v.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let Call::Launch(name, cfg, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(name, "gemv_bf16");
    assert_eq!(
        (cfg.grid, cfg.block),
        ((38, 1, 1), (256, 1, 1)),
        "ceil(300 / 8)"
    );
    assert_eq!(args[1], KernelArg::Ptr(x.ptr() + 2 * 8 * 4));
    // f32 weights keep the GEMM at one row.
    let w32 = b.upload_f32(&vec![0.0; m * k]).unwrap();
    b.logits(&x, &w32, &mut out, lp).unwrap();
    let calls = v.calls();
    let Call::Gemm(g) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!((g.m, g.n, g.k, g.b), (300, 1, 8, x.ptr() + 2 * 8 * 4));
    // A final logit soft-cap: the product, then `softcap` over the row in place (c, 1 / c).
    let capped = LogitsParams {
        softcap: Some(30.0),
        ..lp
    };
    b.logits(&x, &w, &mut out, capped).unwrap();
    let calls = v.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    let Call::Launch(name, cfg, args) = &calls[1] else {
        panic!("{calls:?}")
    };
    assert_eq!(name, "softcap");
    assert_eq!(cfg.grid, (2, 1, 1), "ceil(300 / 256)");
    assert_eq!(
        args[..],
        [
            KernelArg::Ptr(out.ptr()),
            KernelArg::I64(300),
            KernelArg::F32(30.0),
            KernelArg::F32(1.0 / 30.0)
        ]
    );
    // A nonsense cap is a typed error before anything is launched.
    for c in [0.0, -1.0, f32::NAN, f32::INFINITY] {
        let bad = LogitsParams {
            softcap: Some(c),
            ..lp
        };
        assert!(b.logits(&x, &w, &mut out, bad).is_err(), "softcap {c}");
        assert!(v.calls().is_empty(), "softcap {c}");
    }
}

#[test]
fn one_row_or_a_batched_pass_of_up_to_16_is_one_gemv_launch_and_more_a_gemm_per_part() {
    // Rows past the GEMV's: the BLAS route.
    const BLAS: usize = GEMV_MAX_ROWS + 1;
    for wave in [32, 64] {
        let v = FakeVendor::new(Runtime::Cuda, 32);
        let mut b = build(&v, Some(wave), &ModuleCache::new(None), &[]).unwrap();
        b.set_gemv_blocks(Some(1 << 20)); // a block a row group
        let (k, parts) = (16, [24usize, 8, 8]);
        let x = b.upload_f32(&vec![1.0; BLAS * k]).unwrap();
        let w = b.upload(DType::F16, &vec![0u8; 40 * k * 2]).unwrap();
        let bias = b.upload_f32(&[0.5; 40]).unwrap();
        let mut o: Vec<_> = parts
            .iter()
            .map(|&m| b.alloc(DType::F32, BLAS * m).unwrap())
            .collect();
        v.calls();
        let mut outs: Vec<&mut GpuTensor> = o.iter_mut().collect();
        b.linear_stacked(&x, &w, Some(&bias), &mut outs, &parts, 1, k)
            .unwrap();
        let calls = v.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        let Call::Launch(name, cfg, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!(name, "gemv_f16");
        let blocks = 40u32.div_ceil(256 / wave);
        // x (16 f32) staged in LDS: 32 bytes.
        let launch = (cfg.grid, cfg.block, cfg.shared_bytes);
        assert_eq!(launch, ((blocks, 1, 1), (256, 1, 1), 32));
        let ptrs = |norm: u64, out0: u64| -> Vec<KernelArg> {
            vec![
                KernelArg::Ptr(w.ptr()),
                KernelArg::Ptr(x.ptr()),
                KernelArg::Ptr(norm),
            ]
            .into_iter()
            .chain([KernelArg::F32(if norm == 0 { 0.0 } else { 1e-5 })])
            .chain([bias.ptr(), out0].map(KernelArg::Ptr))
            .collect()
        };
        assert_eq!(args[..6], ptrs(0, o[0].ptr())[..]);
        assert_eq!(args[6..8], [o[1].ptr(), o[2].ptr()].map(KernelArg::Ptr)[..]);
        let tail = [24, 8, 8, 16, 0, 1, blocks as i32];
        assert_eq!(args[8..], tail.map(KernelArg::I32)[..]);
        // The norm as the prologue: the same launch with the norm weights and eps, h untouched.
        let g = b.upload_f32(&[1.0; 16]).unwrap();
        let mut h = b.alloc(DType::F32, BLAS * k).unwrap();
        let mut xm = b.upload_f32(&vec![1.0; BLAS * k]).unwrap();
        let norm = PreNorm {
            weight: &g,
            eps: 1e-5,
        };
        let mut outs: Vec<&mut GpuTensor> = o.iter_mut().collect();
        let (xm_ptr, h_ptr) = (xm.ptr(), h.ptr());
        b.norm_linear_stacked(
            &mut xm,
            norm,
            &mut h,
            &w,
            Some(&bias),
            &mut outs,
            &parts,
            1,
            k,
        )
        .unwrap();
        let calls = v.calls();
        let Call::Launch(name, _, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!((calls.len(), name.as_str()), (1, "gemv_f16"));
        assert_eq!(args[1], KernelArg::Ptr(xm_ptr));
        assert_eq!(args[2..4], [KernelArg::Ptr(g.ptr()), KernelArg::F32(1e-5)]);
        assert!(!args.contains(&KernelArg::Ptr(h_ptr)), "h is not written");
        // Four rows in a batched decode pass: the rows normed and staged (one block each),
        // then the several-row product over the three parts.
        b.invariant_rows(&mut || {
            let mut outs: Vec<&mut GpuTensor> = o.iter_mut().collect();
            b.norm_linear_stacked(&mut xm, norm, &mut h, &w, None, &mut outs, &parts, 4, k)
        })
        .unwrap();
        let calls = v.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        let Call::Launch(name, cfg, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!((name.as_str(), cfg.grid), ("gemv_stage_f16", (4, 1, 1)));
        assert_eq!(
            args[..3],
            [
                KernelArg::Ptr(xm_ptr),
                KernelArg::Ptr(g.ptr()),
                KernelArg::F32(1e-5)
            ]
        );
        let Call::Launch(name, cfg, args) = &calls[1] else {
            panic!("{calls:?}")
        };
        let rows_blocks = 40u32.div_ceil(2 * 256 / wave);
        assert_eq!(
            (name.as_str(), cfg.grid),
            ("gemv_rows_f16", (rows_blocks, 1, 1))
        );
        assert_eq!(args[7..], [24, 8, 8, 16, 0, 4].map(KernelArg::I32)[..]);
        // Three rows (below GEMV_ROWS_MIN; as without the several-row kernels): the one-row
        // launch over three input rows (each block's row b mod 3).
        b.set_gemv_rows(false);
        b.invariant_rows(&mut || {
            let mut outs: Vec<&mut GpuTensor> = o.iter_mut().collect();
            b.norm_linear_stacked(&mut xm, norm, &mut h, &w, None, &mut outs, &parts, 3, k)
        })
        .unwrap();
        b.set_gemv_rows(true);
        let calls = v.calls();
        let Call::Launch(name, cfg, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!((calls.len(), name.as_str()), (1, "gemv_f16"));
        assert_eq!(cfg.grid, (3 * blocks, 1, 1));
        assert_eq!(args[2..4], [KernelArg::Ptr(g.ptr()), KernelArg::F32(1e-5)]);
        let last = [3, blocks as i32].map(KernelArg::I32);
        assert_eq!(args[args.len() - 2..], last);
        // Three rows outside a batched pass, or past the GEMV's rows: rms_norm into h, then x
        // converted and a GEMM per part from h.
        let mut outs: Vec<&mut GpuTensor> = o.iter_mut().collect();
        b.norm_linear_stacked(&mut xm, norm, &mut h, &w, None, &mut outs, &parts, 3, k)
            .unwrap();
        assert!(matches!(&v.calls()[0], Call::Launch(n, _, _) if n == "rms_norm"));
        let mut outs: Vec<&mut GpuTensor> = o.iter_mut().collect();
        b.invariant_rows(&mut || {
            b.norm_linear_stacked(&mut xm, norm, &mut h, &w, None, &mut outs, &parts, BLAS, k)
        })
        .unwrap();
        let calls = v.calls();
        assert!(matches!(&calls[0], Call::Launch(n, _, a) if n == "rms_norm"
            && a[3] == KernelArg::Ptr(h_ptr)));
        assert!(
            matches!(&calls[1], Call::Launch(n, _, a) if n == "convert_f32_to_f16"
            && a[0] == KernelArg::Ptr(h_ptr))
        );
        // The residual as the epilogue: one launch adding into acc (tmp untouched).
        let mut acc = b.alloc(DType::F32, BLAS * 24).unwrap();
        let mut tmp24 = b.alloc(DType::F32, BLAS * 24).unwrap();
        let lp = LinearParams {
            rows: 1,
            in_features: k,
            out_features: 24,
        };
        b.linear_residual(&x, &w, None, &mut acc, &mut tmp24, lp)
            .unwrap();
        let calls = v.calls();
        let Call::Launch(name, _, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!((calls.len(), name.as_str()), (1, "gemv_f16"));
        assert_eq!(args[5], KernelArg::Ptr(acc.ptr()));
        let groups = 24u32.div_ceil(256 / wave) as i32;
        let tail = [24, 0, 0, 16, 1, 1, groups];
        assert_eq!(args[8..], tail.map(KernelArg::I32)[..]);
        // Past the GEMV's rows: the GEMM into tmp, then add.
        let lp2 = LinearParams { rows: BLAS, ..lp };
        b.linear_residual(&x, &w, None, &mut acc, &mut tmp24, lp2)
            .unwrap();
        let calls = v.calls();
        assert!(
            matches!(&calls[1], Call::Gemm(g) if g.c == tmp24.ptr()),
            "{calls:?}"
        );
        assert!(matches!(&calls[2], Call::Launch(n, _, a) if n == "add"
            && a[..2] == [KernelArg::Ptr(acc.ptr()), KernelArg::Ptr(tmp24.ptr())]));
        // A short accumulator is refused before any work.
        let mut short = b.alloc(DType::F32, 23).unwrap();
        assert!(b
            .linear_residual(&x, &w, None, &mut short, &mut tmp24, lp)
            .is_err());
        assert!(v.calls().is_empty());
        // Two parts: the third output pointer is null and its row count 0.
        let mut outs: Vec<&mut GpuTensor> = o.iter_mut().take(2).collect();
        b.linear_stacked(&x, &w, None, &mut outs, &[24, 8], 1, k)
            .unwrap();
        let Call::Launch(_, _, args) = &v.calls()[0] else {
            panic!()
        };
        assert_eq!(args[4], KernelArg::Ptr(0), "no bias");
        assert_eq!(args[7], KernelArg::Ptr(0));
        let groups = 32u32.div_ceil(256 / wave) as i32;
        let tail = [24, 8, 0, 16, 0, 1, groups];
        assert_eq!(args[8..], tail.map(KernelArg::I32)[..]);
        // Past the GEMV's rows: x converted once, then per part a GEMM at its row offset and a
        // bias add at its bias offset.
        let mut outs: Vec<&mut GpuTensor> = o.iter_mut().collect();
        b.linear_stacked(&x, &w, Some(&bias), &mut outs, &parts, BLAS, k)
            .unwrap();
        let calls = v.calls();
        assert_eq!(calls.len(), 7, "{calls:?}");
        assert!(matches!(&calls[0], Call::Launch(n, _, _) if n == "convert_f32_to_f16"));
        for (i, row0) in [0usize, 24, 32].into_iter().enumerate() {
            let Call::Gemm(g) = &calls[1 + 2 * i] else {
                panic!("{calls:?}")
            };
            assert_eq!((g.m, g.n, g.k), (parts[i] as i32, BLAS as i32, 16));
            assert_eq!((g.a, g.c), (w.ptr() + (row0 * k * 2) as u64, o[i].ptr()));
            let Call::Launch(name, _, args) = &calls[2 + 2 * i] else {
                panic!("{calls:?}")
            };
            assert_eq!(name, "bias_add");
            assert_eq!(args[1], KernelArg::Ptr(bias.ptr() + (row0 * 4) as u64));
        }
        // Gate/up: one fused launch at one row; at two rows two GEMMs into tmp, then swiglu.
        let inter = 20;
        let mut tmp = b.alloc(DType::F32, 2 * BLAS * inter).unwrap();
        let mut out = b.alloc(DType::F32, BLAS * inter).unwrap();
        b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, 1, k, inter, Activation::Silu)
            .unwrap();
        let calls = v.calls();
        let Call::Launch(name, cfg, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!((calls.len(), name.as_str()), (1, "gemv_swiglu_f16"));
        assert_eq!(cfg.grid, (20u32.div_ceil(256 / wave), 1, 1));
        assert_eq!(
            args[..],
            [
                KernelArg::Ptr(w.ptr()),
                KernelArg::Ptr(x.ptr()),
                KernelArg::Ptr(0),
                KernelArg::F32(0.0),
                KernelArg::Ptr(out.ptr()),
                KernelArg::I32(20),
                KernelArg::I32(16),
                KernelArg::I32(1),
                KernelArg::I32(0),
                KernelArg::I32(20u32.div_ceil(256 / wave) as i32)
            ]
        );
        // With the norm prologue: the norm weights and eps, h untouched.
        b.norm_gate_up_swiglu(
            &mut xm,
            norm,
            &mut h,
            &w,
            &mut tmp,
            &mut out,
            1,
            k,
            inter,
            Activation::Silu,
        )
        .unwrap();
        let calls = v.calls();
        let Call::Launch(name, _, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!((calls.len(), name.as_str()), (1, "gemv_swiglu_f16"));
        assert_eq!(
            args[1..4],
            [xm_ptr, g.ptr()]
                .map(KernelArg::Ptr)
                .into_iter()
                .chain([KernelArg::F32(1e-5)])
                .collect::<Vec<_>>()[..]
        );
        // Four rows in a batched decode pass: staged, then the several-row gate/up over all
        // four (one wave an output row; tmp untouched).
        b.invariant_rows(&mut || {
            b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, 4, k, inter, Activation::Silu)
        })
        .unwrap();
        let calls = v.calls();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(
            matches!(&calls[0], Call::Launch(n, c, a) if n == "gemv_stage_f16"
            && c.grid == (4, 1, 1) && a[0] == KernelArg::Ptr(x.ptr()))
        );
        let Call::Launch(name, cfg, args) = &calls[1] else {
            panic!("{calls:?}")
        };
        assert_eq!(
            (name.as_str(), cfg.grid),
            ("gemv_swiglu_rows_f16", (20u32.div_ceil(256 / wave), 1, 1))
        );
        assert_eq!(
            args[3..],
            [
                KernelArg::Ptr(out.ptr()),
                KernelArg::I32(20),
                KernelArg::I32(16),
                KernelArg::I32(4),
                KernelArg::I32(0)
            ]
        );
        // Two rows (below GEMV_ROWS_MIN; as without the several-row kernels): the one-row
        // launch over both.
        b.set_gemv_rows(false);
        b.invariant_rows(&mut || {
            b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, 2, k, inter, Activation::Silu)
        })
        .unwrap();
        b.set_gemv_rows(true);
        let calls = v.calls();
        let Call::Launch(name, cfg, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!((calls.len(), name.as_str()), (1, "gemv_swiglu_f16"));
        assert_eq!(cfg.grid, (2 * 20u32.div_ceil(256 / wave), 1, 1));
        assert_eq!(args[7], KernelArg::I32(2));
        // Past the GEMV's rows (or two rows outside a batched pass): two GEMMs into tmp, then
        // swiglu.
        b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, 2, k, inter, Activation::Silu)
            .unwrap();
        assert!(matches!(&v.calls()[1], Call::Gemm(_)));
        b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, BLAS, k, inter, Activation::Silu)
            .unwrap();
        let calls = v.calls();
        assert_eq!(calls.len(), 4, "{calls:?}");
        let (Call::Gemm(g), Call::Gemm(u)) = (&calls[1], &calls[2]) else {
            panic!("{calls:?}")
        };
        assert_eq!((g.a, g.c), (w.ptr(), tmp.ptr()));
        assert_eq!(
            (u.a, u.c),
            (
                w.ptr() + (20 * 16 * 2) as u64,
                tmp.ptr() + (BLAS * 20 * 4) as u64
            )
        );
        let Call::Launch(name, _, args) = &calls[3] else {
            panic!("{calls:?}")
        };
        assert_eq!(name, "swiglu");
        assert_eq!(args[3], KernelArg::I64(BLAS as i64 * 20));
        // The BLAS baseline of the bench at one row; a short tmp is refused before any work.
        b.gate_up_swiglu_blas(&x, &w, &mut tmp, &mut out, 1, k, inter, Activation::Silu)
            .unwrap();
        assert!(matches!(&v.calls()[1], Call::Gemm(_)));
        let mut short = b.alloc(DType::F32, 2 * inter - 1).unwrap();
        assert!(b
            .gate_up_swiglu(&x, &w, &mut short, &mut out, 1, k, inter, Activation::Silu)
            .is_err());
        assert!(v.calls().is_empty());
        // GELU-tanh: the same launches with act = 1 (the fused one; the BLAS path's swiglu).
        let gelu = Activation::GeluTanh;
        b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, 1, k, inter, gelu)
            .unwrap();
        let calls = v.calls();
        assert!(
            matches!(&calls[..], [Call::Launch(n, _, a)] if n == "gemv_swiglu_f16"
                && a[a.len() - 2] == KernelArg::I32(1)),
            "{calls:?}"
        );
        b.gate_up_swiglu(&x, &w, &mut tmp, &mut out, BLAS, k, inter, gelu)
            .unwrap();
        let calls = v.calls();
        assert!(
            matches!(&calls[3], Call::Launch(n, _, a) if n == "swiglu"
                && a.last() == Some(&KernelArg::I32(1))),
            "{calls:?}"
        );
    }
}

/// One decode row's tensors for the fused attention: 4 query heads over 2 KV heads of 64 dims
/// (q, k, v, the frequencies, out) and a one-layer cache of `kv` with `capacity` positions.
struct DecodeRow {
    q: GpuTensor,
    k: GpuTensor,
    v: GpuTensor,
    inv_freq: GpuTensor,
    out: GpuTensor,
    cache: KvCache<GpuTensor>,
}

impl DecodeRow {
    fn new(b: &GpuBackend, kv: DType, capacity: usize) -> Self {
        let layout = KvLayout {
            n_layers: 1,
            n_kv_heads: 2,
            head_dim: 64,
            capacity,
            dtype: kv,
        };
        DecodeRow {
            q: b.alloc(DType::F32, 4 * 64).unwrap(),
            k: b.alloc(DType::F32, 2 * 64).unwrap(),
            v: b.alloc(DType::F32, 2 * 64).unwrap(),
            inv_freq: b.alloc(DType::F32, 33).unwrap(),
            out: b.alloc(DType::F32, 4 * 64).unwrap(),
            cache: KvCache::new(b, layout).unwrap(),
        }
    }

    /// The row's params at `pos0` with `window` (no score scale, no soft-cap).
    fn params(pos0: usize, window: Option<usize>) -> AttentionParams {
        AttentionParams {
            layer: 0,
            pos0,
            rows: 1,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 64,
            window,
            score_scale: None,
            softcap: None,
        }
    }

    fn attend(&mut self, b: &GpuBackend, p: AttentionParams) -> Result<()> {
        let DecodeRow {
            q,
            k,
            v,
            inv_freq,
            out,
            cache,
        } = self;
        b.rope_attention(q, k, v, inv_freq, cache, out, p, None)
    }
}

/// On NVIDIA sm_80+ at WAVE=32 the decode attention's 16-bit KV kernels load K/V through a
/// shared-memory ring (decode_attention.hip's async path, common.h WF_CP_ASYNC): the backend
/// allows their four kernels the ring's 32 KiB of dynamic shared memory when it opens (past
/// the default with their ~35 KiB of static), and a launch over a 16-bit cache asks for it.
/// Q8_0 K/V, the emulated WAVE=64 and older devices launch with none.
#[test]
fn decode_attention_takes_a_kv_ring_on_nvidia_sm80_and_later() {
    let ring = 32768u32;
    for (arch, wave, kv, want) in [
        ("sm_90", None, DType::BF16, ring),
        ("sm_80", None, DType::F16, ring),
        ("sm_90", None, DType::Q8_0Kv, 0),
        ("sm_90", Some(64), DType::BF16, 0),
        ("sm_75", None, DType::F16, 0),
    ] {
        let v = FakeVendor::with_arch(Runtime::Cuda, 32, arch);
        let mut b = build(&v, wave, &ModuleCache::new(None), &[]).unwrap();
        b.set_mma_decode(false); // the vector kernel (the matrix one: the test below)
        let allowed = shared_allowed(&v, |name| {
            name.starts_with("decode_attention") && !name.contains("mma")
        });
        if wave.is_none() && arch != "sm_75" {
            let names = super::ops::decode_attention::RING_KERNELS;
            let expect: Vec<_> = names.iter().map(|n| (n.to_string(), ring)).collect();
            assert_eq!(allowed, expect, "{arch}");
        } else {
            assert!(allowed.is_empty(), "{arch} {wave:?}: {allowed:?}");
        }
        let mut row = DecodeRow::new(&b, kv, 512);
        v.calls();
        row.attend(&b, DecodeRow::params(300, None)).unwrap();
        let calls = v.calls();
        let launches: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Launch(name, cfg, _) => Some((name.as_str(), cfg.shared_bytes)),
                _ => None,
            })
            .collect();
        assert_eq!(launches.len(), 1, "{arch} {kv:?}: {calls:?}");
        assert!(
            launches[0].0.starts_with("decode_attention_"),
            "{launches:?}"
        );
        assert_eq!(launches[0].1, want, "{arch} {wave:?} {kv:?}");
    }
}

/// The matrix-instruction decode kernels: 16-bit KV at head dims 64 and 128, blocks of 4
/// waves, their tiles in dynamic shared memory (a ring of 3 tiles a wave where the kernels have
/// cp.async, NVIDIA sm_80+ at WAVE=32, allowed past the default when the backend opens; one
/// tile a wave elsewhere, where the combine's 32 KiB is the most); Q8_0 K/V, other head dims
/// and `set_mma_decode(false)` take the vector kernel.
#[test]
fn decode_attention_takes_the_matrix_kernel_at_head_dims_64_and_128() {
    for (arch, wave, block, bytes64) in [
        ("sm_90", None, 128, 4 * 3 * 2 * 16 * 72 * 2),
        ("sm_90", Some(64), 256, 2 * 16 * 256 * 4),
        ("sm_75", None, 128, 2 * 16 * 256 * 4),
    ] {
        let v = FakeVendor::with_arch(Runtime::Cuda, 32, arch);
        let mut b = build(&v, wave, &ModuleCache::new(None), &[]).unwrap();
        let allowed = shared_allowed(&v, |name| name.starts_with("decode_attention_mma_"));
        if bytes64 > 48 * 1024 {
            // 64: 4 waves · 3 tiles · K and V · 16 keys · (64 + 8) · 2 bytes; 128: (128 + 8)
            let b128 = 4 * 3 * 2 * 16 * 136 * 2;
            let expect: Vec<(String, u32)> = [
                ("decode_attention_mma_64_f16", bytes64),
                ("decode_attention_mma_rows_64_f16", bytes64),
                ("decode_attention_mma_64_bf16", bytes64),
                ("decode_attention_mma_rows_64_bf16", bytes64),
                ("decode_attention_mma_128_f16", b128),
                ("decode_attention_mma_rows_128_f16", b128),
                ("decode_attention_mma_128_bf16", b128),
                ("decode_attention_mma_rows_128_bf16", b128),
            ]
            .iter()
            .map(|&(n, x)| (n.to_string(), x))
            .collect();
            assert_eq!(allowed, expect, "{arch}");
        } else {
            assert!(allowed.is_empty(), "{arch} {wave:?}: {allowed:?}");
        }
        let launch = |b: &GpuBackend, kv: DType| -> (String, u32, u32) {
            let mut row = DecodeRow::new(b, kv, 512);
            v.calls();
            row.attend(b, DecodeRow::params(300, None)).unwrap();
            let calls = v.calls();
            let [Call::Launch(name, cfg, _)] = &calls[..] else {
                panic!("{calls:?}")
            };
            (name.clone(), cfg.block.0, cfg.shared_bytes)
        };
        for kv in [DType::F16, DType::BF16] {
            let t = if kv == DType::F16 { "f16" } else { "bf16" };
            let name = format!("decode_attention_mma_64_{t}");
            assert_eq!(launch(&b, kv), (name, block, bytes64), "{arch} {wave:?}");
        }
        assert_eq!(launch(&b, DType::Q8_0Kv).0, "decode_attention_q8_0");
        // Backend::simple_attention (conformance's vector twins): the vector kernel inside it,
        // the matrix one again after it.
        let mut inside = String::new();
        b.simple_attention(&mut || {
            inside = launch(&b, DType::F16).0;
            Ok(())
        })
        .unwrap();
        assert_eq!(inside, "decode_attention_f16");
        assert_eq!(launch(&b, DType::F16).0, "decode_attention_mma_64_f16");
        b.set_mma_decode(false);
        assert_eq!(launch(&b, DType::F16).0, "decode_attention_f16");
    }
}

/// A decode row of a windowed model: the fused kernel (the matrix one and the vector one),
/// given the window (its last argument), whether the window masks keys or not.
#[test]
fn a_windowed_decode_row_takes_the_fused_kernel_given_the_window() {
    for (mma, kernel) in [
        (true, "decode_attention_mma_64_f16"),
        (false, "decode_attention_f16"),
    ] {
        let v = FakeVendor::new(Runtime::Cuda, 32);
        let mut b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
        b.set_mma_decode(mma);
        windowed_decode_row(&v, &b, kernel);
    }
}

fn windowed_decode_row(v: &FakeVendor, b: &GpuBackend, kernel: &str) {
    let mut row = DecodeRow::new(b, DType::F16, 16);
    for window in [None, Some(16), Some(5)] {
        v.calls();
        row.attend(b, DecodeRow::params(9, window)).unwrap();
        let calls = v.calls();
        let launches: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Launch(name, _, args) => Some((name.as_str(), args)),
                _ => None,
            })
            .collect();
        assert_eq!(launches.len(), 1, "window {window:?}: {calls:?}");
        let (name, args) = launches[0];
        assert_eq!(name, kernel, "window {window:?}");
        let w = window.unwrap_or(0) as i32;
        let n = args.len();
        assert_eq!(args[n - 4], KernelArg::F32(0.125), "head_dim^-0.5");
        assert_eq!(
            args[n - 2..],
            [KernelArg::I32(w), KernelArg::F32(0.0)],
            "window {window:?}, no soft-cap"
        );
    }
    // Gemma 2: its score scale and soft-cap as the fused kernel's launch constants.
    let p = AttentionParams {
        score_scale: Some(0.0625),
        softcap: Some(50.0),
        ..DecodeRow::params(9, Some(4))
    };
    row.attend(b, p).unwrap();
    let calls = v.calls();
    let Call::Launch(name, _, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(name, kernel);
    let n = args.len();
    assert_eq!(
        args[n - 4..],
        [
            KernelArg::F32(0.0625),
            KernelArg::Ptr(0),
            KernelArg::I32(4),
            KernelArg::F32(50.0)
        ]
    );
    let bad = AttentionParams {
        softcap: Some(f32::NAN),
        ..p
    };
    assert!(row.attend(b, bad).is_err());
    assert!(v.calls().is_empty());
}

/// Gemma's post-norm residual add: one `rms_norm` launch reading `y` (as the kernel's `x`, no
/// residual) and adding into `x` (as its `out`, `accumulate` 1); `tmp` is not written. The
/// plain norm passes `accumulate` 0.
#[test]
fn the_post_norm_residual_add_is_one_accumulating_rms_norm_launch() {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    let p = RmsNormParams {
        rows: 2,
        dim: 640,
        eps: 1e-6,
    };
    let mut y = b.alloc(DType::F32, 2 * 640).unwrap();
    let w = b.alloc(DType::F32, 640).unwrap();
    let mut x = b.alloc(DType::F32, 2 * 640).unwrap();
    let mut tmp = b.alloc(DType::F32, 2 * 640).unwrap();
    v.calls();
    b.rms_norm_add(&mut y, &w, &mut x, &mut tmp, p).unwrap();
    let calls = v.calls();
    let Call::Launch(name, cfg, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!((calls.len(), name.as_str()), (1, "rms_norm"), "{calls:?}");
    assert_eq!(cfg.grid, (2, 1, 1));
    assert_eq!(
        args[..4],
        [
            KernelArg::Ptr(y.ptr()),
            KernelArg::Ptr(0),
            KernelArg::Ptr(w.ptr()),
            KernelArg::Ptr(x.ptr())
        ]
    );
    assert_eq!(args.last(), Some(&KernelArg::I32(1)));
    assert!(
        !args.contains(&KernelArg::Ptr(tmp.ptr())),
        "tmp is not written"
    );
    b.rms_norm(&mut y, None, &w, &mut tmp, p).unwrap();
    let calls = v.calls();
    assert!(
        matches!(&calls[0], Call::Launch(n, _, a) if n == "rms_norm" && a.last() == Some(&KernelArg::I32(0))),
        "{calls:?}"
    );
    // A short x is a typed error, nothing launched.
    let mut short = b.alloc(DType::F32, 640).unwrap();
    assert!(b.rms_norm_add(&mut y, &w, &mut short, &mut tmp, p).is_err());
    assert!(v.calls().iter().all(|c| !matches!(c, Call::Launch(..))));
}

#[test]
fn attention_and_argmax_use_the_abi_grids() {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    let layout = KvLayout {
        n_layers: 2,
        n_kv_heads: 2,
        head_dim: 64,
        capacity: 16,
        dtype: DType::F16,
    };
    let cache = KvCache::new(&b, layout).unwrap();
    let q = b.alloc(DType::F32, 5 * 6 * 64).unwrap();
    let mut out = b.alloc(DType::F32, 5 * 6 * 64).unwrap();
    v.calls();
    let p = AttentionParams {
        layer: 1,
        pos0: 3,
        rows: 5,
        n_heads: 6,
        n_kv_heads: 2,
        head_dim: 64,
        window: None,
        score_scale: None,
        softcap: None,
    };
    b.attention(&q, &cache, &mut out, p, None).unwrap();
    let calls = v.calls();
    let Call::Launch(name, cfg, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    // Prefill rows over f16 KV: the flash kernel, one block per (KV head, 128 flattened rows
    // at wave 32): 5 rows × 3 heads a KV head fit one.
    assert_eq!(name, "flash_attention_64_f16");
    assert_eq!(
        (cfg.grid, cfg.block, cfg.shared_bytes),
        ((2, 1, 1), (256, 1, 1), 0)
    );
    assert_eq!(
        args[3..10],
        [1, 3, 5, 6, 2, 64, 16].map(KernelArg::I32)[..],
        "layer, pos0, rows, n_heads, n_kv_heads, head_dim, capacity"
    );
    assert_eq!(
        args[10..],
        [
            KernelArg::F32(0.125),
            KernelArg::I32(0),
            KernelArg::F32(0.0),
            KernelArg::F32(0.0)
        ],
        "scale, window, soft-cap off (c·log2 e, −2 / c)"
    );
    // f32 KV: the simple kernel, one block per (head, row).
    let cache32 = KvCache::new(
        &b,
        KvLayout {
            dtype: DType::F32,
            ..layout
        },
    )
    .unwrap();
    v.calls();
    b.attention(&q, &cache32, &mut out, p, None).unwrap();
    let calls = v.calls();
    let Call::Launch(name, cfg, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(name, "attention_f32");
    assert_eq!(
        (cfg.grid, cfg.block, cfg.shared_bytes),
        ((6, 5, 1), (128, 1, 1), 0)
    );
    assert_eq!(args[3..10], [1, 3, 5, 6, 2, 64, 16].map(KernelArg::I32)[..]);
    assert_eq!(args[10], KernelArg::F32(0.125));
    assert_eq!(args[12], KernelArg::I32(0), "no window");
    assert_eq!(args[13], KernelArg::F32(0.0), "no soft-cap");
    // A sliding window: over f16 KV the flash kernel takes the rows, given the window, whether
    // it masks nothing (positions 3..8, window 8) or keys of some rows (window 6).
    for window in [8, 6] {
        let pw = AttentionParams {
            window: Some(window),
            ..p
        };
        b.attention(&q, &cache, &mut out, pw, None).unwrap();
        let calls = v.calls();
        let Call::Launch(name, _, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!(name, "flash_attention_64_f16", "window {window}");
        assert_eq!(args[11], KernelArg::I32(window as i32));
    }
    // Gemma's score scale and the attention soft-cap reach both prefill kernels and the
    // decode kernel as launch constants (args: scale, [step,] window, softcap).
    let gemma = AttentionParams {
        score_scale: Some(0.0625),
        softcap: Some(50.0),
        ..p
    };
    b.attention(&q, &cache, &mut out, gemma, None).unwrap();
    let calls = v.calls();
    let Call::Launch(name, _, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(name, "flash_attention_64_f16");
    assert_eq!(
        args[10..],
        [
            KernelArg::F32(0.0625),
            KernelArg::I32(0),
            KernelArg::F32(50.0 * std::f32::consts::LOG2_E),
            KernelArg::F32(-2.0 / 50.0)
        ],
        "scale, window, the cap in the scores' log2 units"
    );
    b.attention(&q, &cache32, &mut out, gemma, None).unwrap();
    let calls = v.calls();
    let Call::Launch(name, _, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(name, "attention_f32");
    assert_eq!(args[10], KernelArg::F32(0.0625), "scale");
    assert_eq!(args.last(), Some(&KernelArg::F32(50.0)), "softcap");
    let one = AttentionParams { rows: 1, ..gemma };
    b.attention(&q, &cache32, &mut out, one, None).unwrap();
    let calls = v.calls();
    let Call::Launch(name, _, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(name, "attention_decode_f32");
    assert_eq!(
        (args[10].clone(), args.last()),
        (KernelArg::F32(0.0625), Some(&KernelArg::F32(50.0)))
    );
    // A nonsense scale or cap is a typed error before anything is launched.
    for (score_scale, softcap) in [
        (None, Some(-1.0)),
        (None, Some(f32::NAN)),
        (None, Some(0.0)),
        (Some(f32::NAN), None),
        (Some(-0.5), None),
        (Some(f32::INFINITY), None),
    ] {
        let bad = AttentionParams {
            score_scale,
            softcap,
            ..p
        };
        assert!(
            b.attention(&q, &cache, &mut out, bad, None).is_err(),
            "{bad:?}"
        );
        assert!(v.calls().is_empty(), "{bad:?}");
    }
    // A context overflow is refused before launching.
    let p_big = AttentionParams { pos0: 12, ..p };
    assert!(b.attention(&q, &cache, &mut out, p_big, None).is_err());
    assert!(v.calls().is_empty());
    // Greedy sampling: argmax over row 1 in one 1024-thread block; only the id comes back.
    let mut row0 = vec![0.0f32; 2 * 50];
    (row0[0], row0[1]) = (1.0, 0.9); // the penalty (1 / 1.3) moves the argmax from 0 to 1
    let logits = b.upload_f32(&row0).unwrap();
    // The fake runs no kernel: the scratch keeps its 0xAB fill, an id outside the vocabulary,
    // which comes back as a typed error rather than a bogus token.
    let err = b
        .sample(&logits, 1, 50, &SamplingParams::greedy(), &[], 0.0)
        .unwrap_err();
    assert!(
        matches!(&err, Error::Backend { op, detail, .. }
            if op == "sample" && detail.starts_with("argmax returned -1414812757")),
        "{err}"
    );
    let calls = v.calls();
    let Call::Launch(name, cfg, args) = &calls[0] else {
        panic!("{calls:?}")
    };
    assert_eq!(
        (name.as_str(), cfg.grid, cfg.block),
        ("argmax", (1, 1, 1), (1024, 1, 1))
    );
    assert_eq!(
        args[..2],
        [KernelArg::Ptr(logits.ptr() + 50 * 4), KernelArg::I32(50)]
    );
    // With a repetition penalty the row goes to the sampler: sample_prep over one chunk per
    // 2048 ids, then (greedy: no sample_topk) sample_pick, one 1024-thread block; the fake runs
    // no kernel, so the token word keeps the host's -2, which is an error, not a token.
    let sp = SamplingParams {
        repeat_penalty: 1.3,
        top_k: 50,
        ..SamplingParams::greedy()
    };
    let err = b.sample(&logits, 1, 50, &sp, &[0, 7], 0.25).unwrap_err();
    assert!(
        matches!(&err, Error::Backend { op, detail, .. }
            if op == "sample" && detail.starts_with("sample_step returned -2")),
        "{err}"
    );
    let calls = v.calls();
    let launches: Vec<(&str, &LaunchConfig, &Vec<KernelArg>)> = calls
        .iter()
        .filter_map(|c| match c {
            Call::Launch(name, cfg, args) => Some((name.as_str(), cfg, args)),
            _ => None,
        })
        .collect();
    let names: Vec<&str> = launches.iter().map(|l| l.0).collect();
    assert_eq!(names, ["sample_prep", "sample_pick"], "{calls:?}");
    let (_, prep_cfg, prep) = launches[0];
    let (_, cfg, args) = launches[1];
    assert_eq!((prep_cfg.grid, prep_cfg.block), ((1, 1, 1), (256, 1, 1)));
    assert_eq!((cfg.grid, cfg.block), ((1, 1, 1), (1024, 1, 1)));
    assert_eq!((prep.len(), args.len()), (12, 16));
    assert_eq!(
        prep[..2],
        [KernelArg::Ptr(logits.ptr() + 50 * 4), KernelArg::I32(50)]
    );
    // hist_cap and window: the history's length; the penalties (repetition, presence,
    // frequency); no penalised row for greedy
    assert_eq!(
        prep[4..10],
        [2, 2]
            .map(KernelArg::I32)
            .into_iter()
            .chain([1.3, 0.0, 0.0].map(KernelArg::F32))
            .chain([KernelArg::I32(0)])
            .collect::<Vec<_>>()[..]
    );
    // pick: the same step block and history; temperature 0; top_k ≥ vocab passes as off (0);
    // one chunk's part, the one prep writes
    assert_eq!(args[..2], prep[2..4]);
    assert_eq!(args[2], KernelArg::I32(2));
    assert_eq!(args[3], KernelArg::F32(0.0));
    assert_eq!(args[4], KernelArg::I32(0));
    assert_eq!((&args[7], &args[8]), (&prep[11], &KernelArg::I32(1)));
    let args = prep;
    // the step block and history as uploaded: token -2, pos 1, the coin, then the ids
    let KernelArg::Ptr(step) = args[2] else {
        panic!("{:?}", args[2])
    };
    let mut block = [0u8; 40];
    v.dtoh(&mut block, step).unwrap();
    let head: [u8; 32] = block[..32].try_into().unwrap();
    let sb = super::StepBlock::from_bytes(&head);
    assert_eq!((sb.token, sb.pos, sb.flags, sb.coin), (-2, 1, 0, 0.25));
    assert_eq!(block[32..], [0, 0, 0, 0, 7, 0, 0, 0]);
    assert_eq!(args[3], KernelArg::Ptr(step + 32));
    // A coin outside [0, 1) is refused before any launch, as the CPU sampler refuses it.
    assert!(b.sample(&logits, 0, 50, &sp, &[0], 1.0).is_err());
    assert!(!v.calls().iter().any(|c| matches!(c, Call::Launch(..))));
}

#[test]
fn gemma_head_dim_256_prefill_takes_the_flash_kernel_with_its_score_arguments() {
    // Gemma 3 270M's attention: head_dim 256, 4 query heads on 1 KV head, the sliding window
    // of its local layers, the query_pre_attn_scalar scale; the cap of Gemma 2 besides.
    for (wave, dtype, suffix) in [
        (32, DType::BF16, "bf16"),
        (64, DType::F16, "f16"),
        (32, DType::Q8_0Kv, "q8_0"),
    ] {
        let v = FakeVendor::new(Runtime::Cuda, wave);
        let b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
        let layout = KvLayout {
            n_layers: 1,
            n_kv_heads: 1,
            head_dim: 256,
            capacity: 600,
            dtype,
        };
        let cache = KvCache::new(&b, layout).unwrap();
        let q = b.alloc(DType::F32, 512 * 4 * 256).unwrap();
        let mut out = b.alloc(DType::F32, 512 * 4 * 256).unwrap();
        v.calls();
        let p = AttentionParams {
            layer: 0,
            pos0: 0,
            rows: 512,
            n_heads: 4,
            n_kv_heads: 1,
            head_dim: 256,
            window: Some(512),
            score_scale: Some(0.0625),
            softcap: Some(50.0),
        };
        b.attention(&q, &cache, &mut out, p, None).unwrap();
        let calls = v.calls();
        let Call::Launch(name, cfg, args) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!(name, &format!("flash_attention_256_{suffix}"));
        // 2048 flattened rows; a block's waves in pairs: 16 · 256 / wave / 2 rows a block.
        let tiles = 2048 / (16 * 256 / wave / 2);
        assert_eq!(
            (cfg.grid, cfg.block, cfg.shared_bytes),
            ((1, tiles, 1), (256, 1, 1), 0)
        );
        assert_eq!(
            args[3..10],
            [0, 0, 512, 4, 1, 256, 600].map(KernelArg::I32)[..]
        );
        assert_eq!(
            args[10..],
            [
                KernelArg::F32(0.0625),
                KernelArg::I32(512),
                KernelArg::F32(50.0 * std::f32::consts::LOG2_E),
                KernelArg::F32(-2.0 / 50.0)
            ],
            "scale, window, the cap in the scores' log2 units"
        );
        // With the flash kernel off (WAVEFRONT_NO_FLASH_ATTENTION) the simple kernel takes them.
        b.simple_attention(&mut || b.attention(&q, &cache, &mut out, p, None))
            .unwrap();
        let calls = v.calls();
        let Call::Launch(name, ..) = &calls[0] else {
            panic!("{calls:?}")
        };
        assert_eq!(name, &format!("attention_{suffix}"));
    }
}

#[test]
fn ops_refuse_short_buffers_and_wrong_dtypes() {
    let v = FakeVendor::new(Runtime::Hip, 64);
    let b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    let x = b.upload_f32(&[1.0; 4]).unwrap();
    // Activations must be f32 (weights may be f32, f16 or bf16).
    let x16 = b.upload(DType::BF16, &[0u8; 8]).unwrap();
    let w32 = b.upload_f32(&[1.0; 6]).unwrap();
    let mut out = b.alloc(DType::F32, 6).unwrap();
    let p = LinearParams {
        rows: 2,
        in_features: 2,
        out_features: 3,
    };
    let err = b.linear(&x16, &w32, None, &mut out, p).unwrap_err();
    assert!(
        matches!(&err, Error::Backend { backend: "gpu", op, detail }
        if op == "linear" && detail.contains("dtype")),
        "{err}"
    );
    let w = b.upload(DType::BF16, &[0u8; 8]).unwrap();
    let err = b.linear(&x, &w, None, &mut out, p).unwrap_err();
    assert!(
        matches!(&err, Error::Backend { op, detail, .. }
        if op == "linear" && detail.contains("holds 4 elements, the op needs 6")),
        "{err}"
    );
    assert!(b.upload(DType::F32, &[0u8; 7]).is_err());
    assert!(b.alloc(DType::Q4_0, 32).is_err());
    assert!(v.calls().is_empty(), "nothing launched");
}

#[test]
fn memory_info_and_module_globals_go_through_the_vendor_trait() {
    let fake = FakeVendor::new(Runtime::Hip, 64);
    let v: Arc<dyn Vendor> = fake.clone();
    let (free, total) = v.memory_info().unwrap();
    assert_eq!((free, total), (1 << 30, 1 << 30));
    let p = v.alloc(1 << 20).unwrap();
    assert_eq!(v.memory_info().unwrap(), (free - (1 << 20), total));
    // SAFETY: `p` came from this vendor's alloc and is not used afterwards.
    unsafe { v.free(p) }.unwrap();
    assert_eq!(v.memory_info().unwrap().0, free);

    let m = v
        .load_module(b"-DWAVE=64\n__device__ int wf_pos[3];\n")
        .unwrap();
    let (g, bytes) = v.module_global(m, "wf_pos").unwrap().expect("declared");
    assert_eq!(bytes, 12);
    assert_eq!(
        v.module_global(m, "wf_pos").unwrap(),
        Some((g, bytes)),
        "one address per global"
    );
    // The address is device memory of the stated size.
    let want: Vec<u8> = [5i32, -1, 9].iter().flat_map(|x| x.to_le_bytes()).collect();
    v.htod(g, &want).unwrap();
    let mut got = vec![0u8; bytes];
    v.dtoh(&mut got, g).unwrap();
    assert_eq!(got, want);
    assert_eq!(v.module_global(m, "wf_len").unwrap(), None);
}

/// The sampler as a decode loop runs it: the coin drawn on the device from the step block's
/// SplitMix64 state, the history on the device. Call after call the ids are the CPU sampler's
/// for CoinRng's coins of the same seed over the growing history (whole, then a window of 2),
/// the tokens are appended, and the block ends with CoinRng's state, the call count and the
/// position; captured once in a graph and replayed, the same ids again. Skips without a GPU.
#[test]
fn sample_step_draws_coinrng_coins_and_extends_the_history_on_the_device() {
    use super::ops::sampling::{launch_sample_step, SamplerWorkspace};
    use super::StepBlock;
    use crate::sampler::{sample, CoinRng};
    let vocab = 1000;
    let logits: Vec<f32> = crate::formats::random::values(vocab, 5)
        .iter()
        .map(|v| v * 3.0)
        .collect();
    let params = SamplingParams {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        repeat_penalty: 1.1,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
    };
    // 3 + 14 ids: the last one lands past hist_cap (dropped); every call sees its whole context
    let (seed, calls, hist_cap) = (0x5eed_u64, 14usize, 16usize);
    let i32_bytes = |ids: &[i32]| -> Vec<u8> { ids.iter().flat_map(|i| i.to_le_bytes()).collect() };
    for (wave, b) in each_wave() {
        let row = b.upload_f32(&logits).unwrap();
        let ws = SamplerWorkspace::new(&b, vocab).unwrap();
        for window in [0usize, 2] {
            let start = StepBlock {
                pos: 2,
                flags: StepBlock::DRAW_COIN,
                rng_state: seed,
                ..Default::default()
            };
            let mut hist0 = vec![5i32, 9, 5];
            hist0.resize(hist_cap, 0);
            let step = b.upload(DType::F32, &start.to_bytes()).unwrap();
            let hist = b.upload(DType::F32, &i32_bytes(&hist0)).unwrap();
            let read_step = || {
                let w: Vec<u8> = b
                    .download_f32(&step)
                    .unwrap()
                    .iter()
                    .flat_map(|f| f.to_le_bytes())
                    .collect();
                StepBlock::from_bytes(&w[..32].try_into().unwrap())
            };
            let launch = |b: &GpuBackend| {
                let (r, s, h) = (row.ptr(), step.ptr(), hist.ptr());
                launch_sample_step(b, r, vocab, s, h, hist_cap, window, &params, &ws)
            };
            // the host's model: CoinRng's coins, the context so far, its window
            let mut rng = CoinRng::new(seed);
            let mut context: Vec<u32> = vec![5, 9, 5];
            let mut want = Vec::new();
            for call in 0..calls {
                launch(&b).unwrap();
                let got = read_step();
                let seen = if window == 0 {
                    &context[..]
                } else {
                    &context[context.len() - window..]
                };
                let id = sample(&logits, &params, seen, rng.coin()).unwrap();
                assert_eq!(
                    got.token, id as i32,
                    "WAVE={wave} window {window} call {call}"
                );
                context.push(id);
                want.push(id as i32);
            }
            let end = read_step();
            assert_eq!(
                (end.calls, end.pos, end.rng_state),
                (calls as u32, 2 + calls as i32, rng.state())
            );
            let h: Vec<i32> = b
                .download_f32(&hist)
                .unwrap()
                .iter()
                .map(|f| f.to_bits() as i32)
                .collect();
            let ctx: Vec<i32> = context.iter().map(|&i| i as i32).collect();
            assert_eq!(h[..hist_cap], ctx[..hist_cap], "only hist_cap ids are kept");
            // Captured once, replayed: the same stream.
            b.vendor.htod(step.ptr(), &start.to_bytes()).unwrap();
            b.vendor.htod(hist.ptr(), &i32_bytes(&hist0)).unwrap();
            let g = b.capture(launch).unwrap();
            for (call, &id) in want.iter().enumerate() {
                b.replay(&g).unwrap();
                assert_eq!(read_step().token, id, "replay {call}, WAVE={wave}");
            }
        }
    }
}

/// The rows attention launches of a recorded call: (mode, grid, pos0, arenas, steps) each.
type RowsLaunchSeen = (i32, (u32, u32, u32), i32, Vec<u64>, Vec<u64>);

fn rows_launches(calls: &[Call]) -> (Vec<RowsLaunchSeen>, Vec<String>) {
    let (mut rows, mut others) = (Vec::new(), Vec::new());
    for c in calls {
        let Call::Launch(name, cfg, args) = c else {
            continue;
        };
        if name != "decode_attention_mma_rows_64_f16" {
            others.push(name.clone());
            continue;
        }
        // q k v inv_freq out ws counters | layer pos0 … s_max | scale window softcap mode rows
        assert_eq!(args.len(), 19, "{args:?}");
        let KernelArg::I32(pos0) = args[8] else {
            panic!("pos0: {:?}", args[8])
        };
        let KernelArg::I32(mode) = args[17] else {
            panic!("mode: {:?}", args[17])
        };
        let KernelArg::Words(w) = &args[18] else {
            panic!("rows: {:?}", args[18])
        };
        assert_eq!(w.len(), 32, "DaRows: 16 arenas, 16 steps");
        let used = cfg.grid.2 as usize;
        assert!(w[used..16].iter().chain(&w[16 + used..]).all(|&x| x == 0));
        rows.push((
            mode,
            cfg.grid,
            pos0,
            w[..used].to_vec(),
            w[16..16 + used].to_vec(),
        ));
    }
    (rows, others)
}

/// A recording backend and the one-layer f16 KV layout of the rows tests (`rows_params`' heads).
fn rows_fixture() -> (Arc<FakeVendor>, GpuBackend, KvLayout) {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    let layout = KvLayout {
        n_layers: 1,
        n_kv_heads: 2,
        head_dim: 64,
        capacity: 1024,
        dtype: DType::F16,
    };
    (v, b, layout)
}

fn rows_params(pos0: usize, rows: usize) -> AttentionParams {
    AttentionParams {
        layer: 0,
        pos0,
        rows,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 64,
        window: None,
        score_scale: None,
        softcap: None,
    }
}

/// A batched pass's decode rows (each over its own cache at its step's position): one rows
/// launch of every row (their arenas and step blocks by value, mode Full), in launches of at
/// most 16 rows; a launch a row when the rows differ in shape or frequencies, or with the rows
/// kernel switched off.
#[test]
fn a_batched_pass_attends_in_one_rows_launch() {
    use crate::backend::{BatchRow, RowScratch};
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let mut b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    let layout = KvLayout {
        n_layers: 1,
        n_kv_heads: 2,
        head_dim: 64,
        capacity: 16,
        dtype: DType::F16,
    };
    let n_max = 20;
    let alloc = |n: usize| b.alloc(DType::F32, n).unwrap();
    let (q, k, vv) = (alloc(n_max * 256), alloc(n_max * 128), alloc(n_max * 128));
    let mut out = alloc(n_max * 256);
    let out16 = out.ptr_at(16 * 256);
    let (f, f2) = (alloc(33), alloc(33));
    let mut caches: Vec<_> = (0..n_max)
        .map(|_| KvCache::new(&b, layout).unwrap())
        .collect();
    let steps: Vec<_> = (0..n_max).map(|_| b.new_step(8, 16).unwrap()).collect();
    let mut ones: Vec<_> = (0..n_max)
        .map(|_| [alloc(256), alloc(128), alloc(128), alloc(256)])
        .collect();
    let arenas: Vec<u64> = caches.iter().map(|c| c.arena().ptr()).collect();
    let step_ptrs: Vec<u64> = steps.iter().map(|s| s.block_ptr()).collect();
    v.calls();
    let mut run = |b: &GpuBackend, n: usize, odd_freq: bool| -> Vec<Call> {
        let mut rows: Vec<BatchRow<'_, GpuBackend>> = caches
            .iter_mut()
            .zip(&steps)
            .zip(ones.iter_mut())
            .take(n)
            .enumerate()
            .map(|(i, ((cache, step), [oq, ok, ov, oo]))| BatchRow {
                cache,
                one: RowScratch {
                    q: oq,
                    k: ok,
                    v: ov,
                    out: oo,
                },
                inv_freq: if odd_freq && i == 1 { &f2 } else { &f },
                p: rows_params(3 + i % 5, 1),
                step: Some(step),
            })
            .collect();
        b.rope_attention_batch(&q, &k, &vv, &mut out, &mut rows)
            .unwrap();
        v.calls()
    };
    let (rows, others) = rows_launches(&run(&b, 3, false));
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(
        rows,
        vec![(
            0,
            (2, 1, 3),
            3,
            arenas[..3].to_vec(),
            step_ptrs[..3].to_vec()
        )],
        "one launch: columns 2 (two KV heads of two query heads), s_max 1 (a capacity of 16)"
    );
    // 20 rows: 16, then 4 (q, k, v and out moved to row 16).
    let calls = run(&b, 20, false);
    let (rows, others) = rows_launches(&calls);
    assert!(others.is_empty(), "{others:?}");
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].1 .2, rows[1].1 .2), (16, 4));
    assert_eq!(rows[1].3, arenas[16..20].to_vec());
    assert_eq!(rows[1].4, step_ptrs[16..20].to_vec());
    let Call::Launch(_, _, args) = &calls[1] else {
        panic!()
    };
    assert_eq!(args[0], KernelArg::Ptr(q.ptr_at(16 * 256)));
    assert_eq!(args[4], KernelArg::Ptr(out16));
    // Another row's frequencies (LongRoPE past its original context): a launch a row.
    let (rows, others) = rows_launches(&run(&b, 3, true));
    assert!(rows.is_empty());
    assert_eq!(others, vec!["decode_attention_mma_64_f16"; 3]);
    // One row, or the rows kernel off: the one-row kernel.
    let (rows, others) = rows_launches(&run(&b, 1, false));
    assert!(rows.is_empty());
    assert_eq!(others, vec!["decode_attention_mma_64_f16"]);
    b.set_attention_rows(false);
    let (rows, others) = rows_launches(&run(&b, 4, false));
    assert!(rows.is_empty());
    assert_eq!(others, vec!["decode_attention_mma_64_f16"; 4]);
}

/// A verification's rows (one sequence at its next positions): a rows launch writing every
/// row's K/V (mode KvOnly, one split), then one attending (mode AttendOnly) over the same arena,
/// row z at pos0 + z without a step. One row, or the rows kernel off: a launch a row. Past the
/// capacity: ContextFull, nothing launched.
#[test]
fn a_verification_writes_its_rows_then_attends_in_one_launch() {
    use crate::backend::RowScratch;
    let (v, mut b, layout) = rows_fixture();
    let alloc = |n: usize| b.alloc(DType::F32, n).unwrap();
    let (q, k, vv, f) = (alloc(5 * 256), alloc(5 * 128), alloc(5 * 128), alloc(33));
    let mut out = alloc(5 * 256);
    let [mut oq, mut ok, mut ov, mut oo] = [alloc(256), alloc(128), alloc(128), alloc(256)];
    let mut cache = KvCache::new(&b, layout).unwrap();
    let arena = cache.arena().ptr();
    v.calls();
    let mut run = |b: &GpuBackend, pos0: usize, n: usize| -> Result<Vec<Call>> {
        let one = RowScratch {
            q: &mut oq,
            k: &mut ok,
            v: &mut ov,
            out: &mut oo,
        };
        let p = rows_params(pos0, n);
        b.rope_attention_steps(&q, &k, &vv, &mut out, one, &f, &mut cache, p)?;
        Ok(v.calls())
    };
    let (rows, others) = rows_launches(&run(&b, 7, 5).unwrap());
    assert!(others.is_empty(), "{others:?}");
    // s_max: 2 blocks on the fake's 1 multiprocessor over 2 columns → 1.
    assert_eq!(
        rows,
        vec![
            (2, (2, 1, 5), 7, vec![arena; 5], vec![0; 5]),
            (1, (2, 1, 5), 7, vec![arena; 5], vec![0; 5]),
        ]
    );
    let (rows, others) = rows_launches(&run(&b, 7, 1).unwrap());
    assert!(rows.is_empty());
    assert_eq!(others, vec!["decode_attention_mma_64_f16"]);
    let full = run(&b, 1020, 5);
    assert!(
        matches!(
            full,
            Err(Error::ContextFull {
                capacity: 1024,
                requested: 1025
            })
        ),
        "{full:?}"
    );
    assert!(v.calls().is_empty());
    b.set_attention_rows(false);
    let (rows, others) = rows_launches(&run(&b, 7, 5).unwrap());
    assert!(rows.is_empty());
    assert_eq!(others, vec!["decode_attention_mma_64_f16"; 5]);
}

/// A verification's rows as decode steps, read on the device (`Backend::steps_input`): the
/// input holds the ids, then a (token, pos) record a row; the rows launches point each row at
/// its record (the kernel reads its position there, so a captured pass replays at the
/// positions written before it), the embedding at the ids; bad tokens and too many rows are
/// refused before anything is written; shapes the rows kernel does not take are refused.
#[test]
fn a_verification_reads_its_tokens_and_positions_from_a_steps_input() {
    let (v, mut b, layout) = rows_fixture();
    let input = b
        .steps_input(16)
        .unwrap()
        .expect("the GPU reads a steps input");
    assert_eq!(input.rows(), 16);
    b.set_steps_input(&input, &[5, 9, 11], 40, 100).unwrap();
    let mut bytes = vec![0u8; 64 + 3 * 8];
    v.dtoh(&mut bytes, input.ids_ptr()).unwrap();
    let words: Vec<i32> = bytes
        .chunks(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(words[..3], [5, 9, 11]);
    assert_eq!(words[16..], [5, 40, 9, 41, 11, 42]);
    assert_eq!(input.record_ptr(0), input.ids_ptr() + 64);
    assert_eq!(input.record_ptr(2), input.ids_ptr() + 80);
    // Refused before a byte moves.
    let outside = b.set_steps_input(&input, &[5, 100], 40, 100).unwrap_err();
    assert!(
        outside.to_string().contains("token id 100 at index 1"),
        "{outside}"
    );
    assert!(b.set_steps_input(&input, &[1; 17], 0, 100).is_err());
    assert!(b.set_steps_input(&input, &[], 0, 100).is_err());
    v.dtoh(&mut bytes, input.ids_ptr()).unwrap();
    assert_eq!(bytes[..4], 5i32.to_le_bytes());

    let alloc = |n: usize| b.alloc(DType::F32, n).unwrap();
    let (q, k, vv, f) = (alloc(3 * 256), alloc(3 * 128), alloc(3 * 128), alloc(33));
    let mut out = alloc(3 * 256);
    let mut cache = KvCache::new(&b, layout).unwrap();
    let arena = cache.arena().ptr();
    v.calls();
    let p = rows_params(40, 3);
    assert!(b.steps_input_takes(&p, DType::F16));
    b.rope_attention_steps_input(&q, &k, &vv, &mut out, &f, &mut cache, p, &input)
        .unwrap();
    let (rows, others) = rows_launches(&v.calls());
    assert!(others.is_empty(), "{others:?}");
    let recs: Vec<u64> = (0..3).map(|r| input.record_ptr(r)).collect();
    assert_eq!(
        rows,
        vec![
            (2, (2, 1, 3), 40, vec![arena; 3], recs.clone()),
            (1, (2, 1, 3), 40, vec![arena; 3], recs),
        ]
    );
    // The embedding reads the ids where they are.
    let table = b.upload(DType::BF16, &vec![0u8; 100 * 64 * 2]).unwrap();
    let mut x = alloc(3 * 64);
    let ep = crate::backend::EmbeddingParams {
        vocab: 100,
        hidden: 64,
        scale: 1.0,
    };
    b.embedding_steps_input(&table, &input, 3, &mut x, ep)
        .unwrap();
    let calls = v.calls();
    let [Call::Launch(name, cfg, args)] = &calls[..] else {
        panic!("{}", calls.len())
    };
    assert_eq!(name, "embedding_bf16");
    assert_eq!(cfg.grid.0, 3);
    assert!(matches!(args[1], KernelArg::Ptr(p) if p == input.ids_ptr()));
    assert!(b
        .embedding_steps_input(&table, &input, 17, &mut x, ep)
        .is_err());
    // One row, or the rows kernel off: not read from the input (the engine does not capture).
    assert!(!b.steps_input_takes(&rows_params(40, 1), DType::F16));
    assert!(!b.steps_input_takes(&p, DType::F32));
    b.set_attention_rows(false);
    assert!(!b.steps_input_takes(&p, DType::F16));
    let refused = b.rope_attention_steps_input(&q, &k, &vv, &mut out, &f, &mut cache, p, &input);
    assert!(refused.is_err());
    assert!(v.calls().is_empty());
}

/// The engine's verification pass (`Engine::forward_as_steps`) with graphs and verification
/// graphs on: captured once per row count and replayed (the tokens and positions written to the steps input before,
/// nothing launched but the graph), each row's attention pointed at its record; with graphs
/// off every pass is launched, the rows at host-given positions.
#[test]
fn forwards_as_steps_are_captured_once_per_row_count_and_replayed() {
    use crate::{Engine, EngineOptions, Logits};
    let mut c = crate::formats::random::shape("smollm2-135m").unwrap();
    (c.hidden_size, c.intermediate_size, c.n_layers) = (256, 512, 2);
    (c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size) = (4, 2, 64, 512);
    let model = crate::formats::random::random_model(c, 3, DType::BF16);
    // Captured only with both switches on (both are by default).
    for (graphs, verify_graphs) in [(true, true), (true, false), (false, true)] {
        let captures = graphs && verify_graphs;
        let v = FakeVendor::new(Runtime::Cuda, 32);
        let b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
        let opts = EngineOptions {
            graphs,
            verify_graphs,
            ..Default::default()
        };
        let e = Engine::new(b, &model, opts).unwrap();
        let mut seq = e.new_sequence(64).unwrap();
        e.forward(&mut seq, &[1, 2, 3], Logits::Last).unwrap();
        v.calls();
        let plan: [(&[u32], usize); 4] = [
            (&[4, 5, 6], 1),
            (&[7, 8, 9], 2),
            (&[10, 11], 0),
            (&[12, 13, 14], 3),
        ];
        let mut rounds = Vec::new();
        for (tokens, keep) in plan {
            let len = seq.cache.len();
            let logits = e.forward_as_steps(&mut seq, tokens).unwrap();
            assert_eq!(logits.len(), tokens.len() * 512);
            assert_eq!(seq.cache.len(), len + tokens.len());
            seq.cache.rollback_to(len + keep).unwrap();
            rounds.push(v.calls());
        }
        let kinds = |calls: &[Call]| -> (usize, usize, usize, usize) {
            let count = |f: &dyn Fn(&Call) -> bool| calls.iter().filter(|c| f(c)).count();
            (
                count(&|c| matches!(c, Call::BeginCapture)),
                count(&|c| matches!(c, Call::EndCapture)),
                count(&|c| matches!(c, Call::Replay)),
                count(&|c| matches!(c, Call::Launch(..) | Call::Gemm(..))),
            )
        };
        for (i, calls) in rounds.iter().enumerate() {
            let (begin, end, replay, launched) = kinds(calls);
            let (rows, _) = rows_launches(calls);
            if !captures {
                assert_eq!((begin, end, replay), (0, 0, 0), "round {i}");
                assert!(launched > 0, "round {i}");
                assert!(
                    rows.iter().all(|r| r.4.iter().all(|&s| s == 0)),
                    "round {i}"
                );
                continue;
            }
            if i == 0 || i == 2 {
                // A new row count: captured (everything between the capture's ends), then
                // replayed once; each row's attention reads its record.
                assert_eq!((begin, end, replay), (1, 1, 1), "round {i}");
                assert!(
                    matches!(calls.first(), Some(Call::BeginCapture)),
                    "round {i}"
                );
                assert!(matches!(
                    calls[calls.len() - 2..],
                    [Call::EndCapture, Call::Replay]
                ));
                assert_eq!(rows.len(), 2 * 2, "two launches a layer, round {i}");
                assert!(
                    rows.iter().all(|r| r.4.iter().all(|&s| s != 0)),
                    "round {i}"
                );
            } else {
                assert!(
                    matches!(calls[..], [Call::Replay]),
                    "round {i}: {}",
                    calls.len()
                );
            }
        }
        let want = if captures { (4, 2) } else { (4, 0) };
        assert_eq!(seq.steps_counts(), want, "{graphs} {verify_graphs}");
    }
}

/// Large f32 downloads come through the page-locked buffer (grown when a larger one comes):
/// the same values as the pageable path gives small ones, whole and by ranges.
#[test]
fn large_f32_downloads_through_page_locked_memory_keep_every_value() {
    let v = FakeVendor::new(Runtime::Cuda, 32);
    let b = build(&v, None, &ModuleCache::new(None), &[]).unwrap();
    for n in [1000, 70_000, 300_000, 100_000] {
        let want = crate::formats::random::values(n, n as u64);
        let t = b.upload_f32(&want).unwrap();
        assert_eq!(b.download_f32(&t).unwrap(), want, "{n}");
        let (a, len) = (n / 3, n / 2);
        assert_eq!(
            b.download_range_f32(&t, a, len).unwrap(),
            want[a..a + len],
            "{n}"
        );
    }
    let pinned = b.pinned.lock().unwrap();
    assert_eq!(pinned.bytes, (4 * 300_000usize).next_power_of_two());
}

/// The grid-synchronisation probes (kernels/sync.hip) at both waves, over every grid the bench
/// measures: the counted and the generation barrier let no block read a mark before its round
/// wrote it, twice in a row (the words each leaves are the next launch's start); the planted
/// broken barrier (arrival without the wait) is caught; a captured chain of overlapped launches,
/// replayed, and a plain one see each launch's writes in the next, and a link whose predecessor
/// never ran is caught. Grids the device cannot hold at once are refused. Skips without a GPU.
#[test]
fn sync_probes_pass_real_barriers_and_catch_broken_ones() {
    use super::BarrierKind;
    const ROUNDS: u32 = 200;
    for (wave, b) in each_wave() {
        let resident = b.sync_resident_blocks().unwrap();
        assert!(resident >= b.info().multiprocessors, "WAVE={wave}");
        for refused in [0, resident + 1] {
            let e = b.sync_probe(refused).err().expect("refused");
            assert!(e.to_string().contains("at once"), "{e}");
        }
        for blocks in crate::bench::sync::grids(b.info().multiprocessors, resident) {
            let at = format!("WAVE={wave}, {blocks} blocks");
            let p = b.sync_probe(blocks).unwrap();
            for kind in [BarrierKind::Counted, BarrierKind::Generation] {
                p.barrier(&b, kind, ROUNDS).unwrap();
                p.barrier(&b, kind, ROUNDS).unwrap();
                assert_eq!(p.errors(&b).unwrap(), 0, "{at}: {kind:?}");
            }
            // counted: arrivals and exits zeroed; generation: arrivals zeroed, one generation a
            // barrier
            let words = p.barrier_words(&b).unwrap();
            assert_eq!(words, [0, 0, 0, 2 * ROUNDS as i32], "{at}");
            p.barrier(&b, BarrierKind::None, ROUNDS).unwrap();
            assert!(
                p.errors(&b).unwrap() > 0,
                "{at}: the broken barrier went unseen"
            );
            assert_eq!(p.barrier_words(&b).unwrap()[..2], [0, 0], "{at}");
            p.clear_errors(&b).unwrap();
            let g = b.capture(|b| p.chain(b, 0, 50, true)).unwrap();
            b.replay(&g).unwrap();
            b.replay(&g).unwrap();
            p.chain(&b, 0, 20, false).unwrap();
            assert_eq!(p.errors(&b).unwrap(), 0, "{at}: chain");
            // link 5 after link 19: the marks of parity 0 are link 18's, not link 4's
            p.chain(&b, 5, 1, false).unwrap();
            assert_eq!(p.errors(&b).unwrap(), blocks as i32, "{at}: a stale link");
        }
    }
}

/// The persistent GEMV chain (`gemv_chain_bf16`: one launch, a grid barrier between layers)
/// gives the bits of its launched twin (one `gemv_bf16` launch a layer, captured and
/// replayed, and queued directly), at both waves, for a side on 16 bytes (the vector path) and
/// one off it (scalar rows), twice in a row (the barrier's words are left zero for the next
/// launch). Skips without a GPU.
#[test]
fn sync_gemv_chain_persistent_equals_launched() {
    for (wave, b) in each_wave() {
        for (k, layers) in [(576usize, 6usize), (1003, 3)] {
            let at = format!("WAVE={wave}, k {k}");
            let w = crate::tensor::encode_f32(
                DType::BF16,
                &crate::formats::random::values(layers * k * k, 31),
            )
            .unwrap();
            let x0 = crate::formats::random::values(k, 32);
            let norm: Vec<f32> = crate::formats::random::values(k, 33)
                .iter()
                .map(|v| 1.0 + v)
                .collect();
            let c = b.gemv_chain(k, &w, &x0, &norm).unwrap();
            assert_eq!(c.layers(), layers);
            c.launched(&b).unwrap();
            let want = c.outputs(&b).unwrap();
            assert!(want.iter().all(|v| v.is_finite()), "{at}");
            assert!(want.iter().any(|&v| v != 0.0), "{at}");
            let g = b.capture(|b| c.launched(b)).unwrap();
            c.clear_outputs(&b).unwrap();
            b.replay(&g).unwrap();
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&c.outputs(&b).unwrap()), bits(&want), "{at}: graph");
            for run in 0..2 {
                c.clear_outputs(&b).unwrap();
                c.persistent(&b).unwrap();
                assert_eq!(
                    bits(&c.outputs(&b).unwrap()),
                    bits(&want),
                    "{at}: persistent, run {run}"
                );
            }
        }
        let e = b
            .gemv_chain(8, &[0; 100], &[0.0; 8], &[1.0; 8])
            .err()
            .unwrap();
        assert!(e.to_string().contains("whole layers"), "{e}");
    }
}

/// The GPU opened at each wave it runs (its own; on NVIDIA also the emulated 64), or none when
/// there is no usable GPU (the test skips, saying so; under `WAVEFRONT_REQUIRE_GPU=1` that is
/// a failure, as is a GPU that fails to open).
fn each_wave() -> Vec<(u32, GpuBackend)> {
    use super::{detect, detect_with, require_gpu, wave_variants, OpenError};
    let native = match detect() {
        Ok(b) => b.info().wave,
        Err(OpenError::Unavailable(r)) if !require_gpu() => {
            eprintln!("skipping GPU test: {}", r.lines().next().unwrap_or(""));
            return Vec::new();
        }
        Err(e) => panic!("{e}"),
    };
    wave_variants(native)
        .into_iter()
        .map(|wave| {
            let opts = GpuOptions {
                wave: Some(wave),
                ..GpuOptions::from_env()
            };
            (wave, detect_with(&opts).unwrap())
        })
        .collect()
}

/// The tuning variables (`WAVEFRONT_*_BLOCKS`, `WAVEFRONT_QGEMV_THREADS`): unset or blank is no
/// setting; a number outside the rule, or not a number, is an error naming the variable.
#[test]
fn tuning_variables_are_checked_and_named_in_errors() {
    // Names no other test reads, so setting them cannot race another test.
    let (b, t) = (
        "WAVEFRONT_TEST_ONLY_BLOCKS_ENV",
        "WAVEFRONT_TEST_ONLY_THREADS_ENV",
    );
    std::env::remove_var(b);
    assert_eq!(super::blocks_env(b).unwrap(), None);
    for (v, want) in [(" ", None), ("7", Some(7)), (" 1 ", Some(1))] {
        std::env::set_var(b, v);
        assert_eq!(super::blocks_env(b).unwrap(), want, "{v:?}");
    }
    for v in ["0", "-3", "many", "2.5"] {
        std::env::set_var(b, v);
        let e = super::blocks_env(b).unwrap_err().to_string();
        assert!(e.contains(b) && e.contains("at least 1"), "{v}: {e}");
    }
    for (v, want) in [("256", 256), ("512", 512), ("1024", 1024)] {
        std::env::set_var(t, v);
        assert_eq!(super::threads_env(t).unwrap(), Some(want));
    }
    for v in ["384", "2048", "0", "x"] {
        std::env::set_var(t, v);
        let e = super::threads_env(t).unwrap_err().to_string();
        assert!(e.contains(t) && e.contains("256, 512 or 1024"), "{v}: {e}");
    }
    std::env::remove_var(b);
    std::env::remove_var(t);
}
