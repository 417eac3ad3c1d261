//! A KV arena past 2³² elements on the GPU (Llama 3 at 131072 positions passes 2³¹): RoPE + KV
//! write and attention at the last layer of an arena of 4.4·10⁹ f16 elements (8.8 GB) match
//! the CPU backend on a one-layer arena with the same rows, and the layers a 32-bit offset
//! would wrap to stay untouched. Skips, saying so, where no GPU is usable.

mod common;

use wavefront::backend::cpu::CpuBackend;
use wavefront::backend::{AttentionParams, Backend, RopeKvParams, TensorInfo};
use wavefront::kv_cache::{KvCache, KvLayout};
use wavefront::DType;
use wavefront_conformance::compare::compare;
use wavefront_conformance::harness::Rng;
use wavefront_conformance::tolerance::{tolerance, Kind};

#[test]
fn an_arena_past_2_32_elements_is_written_and_read_at_its_last_layer() {
    let Some(&wave) = common::gpu_waves().first() else {
        return;
    };
    let gpu = common::gpu(wave).unwrap();
    let cpu = CpuBackend::default();
    let (heads, kv_heads, hd, cap) = (32, 8, 128, 1024);
    let big = KvLayout {
        n_layers: 2100,
        n_kv_heads: kv_heads,
        head_dim: hd,
        capacity: cap,
        dtype: DType::F16,
    };
    assert!(big.elems() > 1 << 32, "{}", big.elems());
    let free = gpu.free_memory().unwrap().unwrap_or(0);
    assert!(
        free > big.bytes() + (1 << 30),
        "this test needs {:.1} GiB of device memory, {:.1} GiB are free",
        big.bytes() as f64 / (1u64 << 30) as f64,
        free as f64 / (1u64 << 30) as f64
    );
    let small = KvLayout { n_layers: 1, ..big };
    let last = big.n_layers - 1;
    let mut cache_gpu = KvCache::new(&gpu, big).unwrap();
    let mut cache_cpu = KvCache::new(&cpu, small).unwrap();

    let mut rng = Rng::new(91);
    let q = rng.values(cap * heads * hd, 1.0);
    let k = rng.values(cap * kv_heads * hd, 1.0);
    let v = rng.values(cap * kv_heads * hd, 1.0);
    // The rotary table: the frequencies, then an attention factor of 1.
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 500000f64.powf(-2.0 * i as f64 / hd as f64) as f32)
        .chain([1.0])
        .collect();
    let rope = |layer| RopeKvParams {
        layer,
        pos0: 0,
        rows: cap,
        n_heads: heads,
        n_kv_heads: kv_heads,
        head_dim: hd,
    };
    // Every position of the last layer (GPU) and of the only layer (CPU).
    let mut qg = gpu.upload_f32(&q).unwrap();
    let (kg, vg, ig) = (
        gpu.upload_f32(&k).unwrap(),
        gpu.upload_f32(&v).unwrap(),
        gpu.upload_f32(&inv).unwrap(),
    );
    gpu.rope_kv_write(&mut qg, &kg, &vg, &ig, &mut cache_gpu, rope(last), None)
        .unwrap();
    let mut qc = cpu.upload_f32(&q).unwrap();
    let (kc, vc, ic) = (
        cpu.upload_f32(&k).unwrap(),
        cpu.upload_f32(&v).unwrap(),
        cpu.upload_f32(&inv).unwrap(),
    );
    cpu.rope_kv_write(&mut qc, &kc, &vc, &ic, &mut cache_cpu, rope(0), None)
        .unwrap();
    cache_gpu.set_len(cap).unwrap();
    cache_cpu.set_len(cap).unwrap();

    let tol_q = tolerance(Kind::Rotation { store: DType::F32 }).nmse;
    let tol_kv = tolerance(Kind::Rotation { store: DType::F16 }).nmse;
    let q_gpu = gpu.download_f32(&qg).unwrap();
    let q_cpu = cpu.download_f32(&qc).unwrap();
    let c = compare(&q_cpu, &q_gpu, tol_q);
    assert!(c.pass(), "rotated q: {:?}", c.failure);
    let (k_gpu, v_gpu) = cache_gpu.read_layer(&gpu, last).unwrap();
    let (k_cpu, v_cpu) = cache_cpu.read_layer(&cpu, 0).unwrap();
    let c = compare(&k_cpu, &k_gpu, tol_kv);
    assert!(c.pass(), "K of layer {last}: {:?}", c.failure);
    let c = compare(&v_cpu, &v_gpu, tol_kv);
    assert!(c.pass(), "V of layer {last}: {:?}", c.failure);

    // Where a 32-bit element offset of the last layer would land (wrapped, unsigned), and the
    // first and next-to-last layers: still as allocated (zeros).
    let per_layer = big.offset(1, 0, 0, 0);
    let wrapped = (big.offset(last, 0, 0, 0) % (1usize << 32)) / per_layer;
    for layer in [0, wrapped, last - 1] {
        let (k, v) = cache_gpu.read_layer(&gpu, layer).unwrap();
        assert!(
            k.iter().chain(&v).all(|&x| x == 0.0),
            "layer {layer} was written: the last layer's offset wrapped"
        );
    }

    // Attention of the last 3 positions over the whole layer, from the same rotated q rows.
    let rows = 3;
    let q3 = &q_cpu[(cap - rows) * heads * hd..];
    let ap = |layer| AttentionParams {
        layer,
        pos0: cap - rows,
        rows,
        n_heads: heads,
        n_kv_heads: kv_heads,
        head_dim: hd,
        window: None,
        score_scale: None,
        softcap: None,
    };
    let q3g = gpu.upload_f32(q3).unwrap();
    let mut og = gpu.alloc(DType::F32, q3.len()).unwrap();
    gpu.attention(&q3g, &cache_gpu, &mut og, ap(last), None)
        .unwrap();
    let q3c = cpu.upload_f32(q3).unwrap();
    let mut oc = cpu.alloc(DType::F32, q3.len()).unwrap();
    cpu.attention(&q3c, &cache_cpu, &mut oc, ap(0), None)
        .unwrap();
    assert_eq!(og.len(), oc.len());
    let tol = tolerance(Kind::Attention {
        head_dim: hd,
        kv_len: cap,
        max_score: 8.0,
        // Prefill rows of f16 KV at head dim 128: the flash kernel, q and P rounded to f16.
        input: DType::F16,
        kv_input: DType::F32,
    })
    .nmse;
    let c = compare(
        &cpu.download_f32(&oc).unwrap(),
        &gpu.download_f32(&og).unwrap(),
        tol,
    );
    assert!(c.pass(), "attention at layer {last}: {:?}", c.failure);
    println!(
        "arena of {} elements ({:.1} GB): layer {last} written and read, NMSE {:.2e}",
        big.elems(),
        big.bytes() as f64 / 1e9,
        c.nmse
    );
}
