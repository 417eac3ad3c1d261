//! The GPU backend against the CPU backend (the executable spec of every op), on the device's
//! own wave and, on NVIDIA, on the emulated WAVE=64 build too. Skips without a GPU.
//!
//! Tolerances (NMSE, Σ(a−b)²/Σa², DESIGN.md "Conformance policy"): 1e-7 for ops in f32 end to
//! end (the test-backend-ops default; sinf/expf differ by ulps between device and host); 5e-4
//! for ops with 16-bit inputs (the GEMM rounds x to bf16; attention reads an f16 arena whose
//! rounding can flip with a 1-ulp sin/cos difference); 2e-3 for whole-model logits.

use std::time::Instant;

use wavefront::backend::cpu::CpuBackend;
use wavefront::backend::gpu::{GpuBackend, GpuOptions, Runtime};
use wavefront::backend::{
    AttentionParams, Backend, EmbeddingParams, LinearParams, LogitsParams, RmsNormParams,
    RopeKvParams,
};
use wavefront::config::{Arch, ModelConfig};
use wavefront::formats::random::random_model;
use wavefront::kv_cache::{KvCache, KvLayout};
use wavefront::{DType, Engine, EngineOptions, Logits, SamplingParams};

const F32_NMSE: f64 = 1e-7;
const HALF_NMSE: f64 = 5e-4;
const MODEL_NMSE: f64 = 2e-3;

/// Deterministic values in [-1, 1] \ {0}.
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            if v == 0.0 {
                0.5
            } else {
                v
            }
        })
        .collect()
}

fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    assert!(got.iter().all(|v| !v.is_nan()), "NaN in the GPU output");
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    num / den.max(f64::MIN_POSITIVE)
}

fn bytes16(v: &[f32], dtype: DType) -> Vec<u8> {
    v.iter()
        .flat_map(|x| match dtype {
            DType::BF16 => half::bf16::from_f32(*x).to_bits().to_le_bytes(),
            _ => half::f16::from_f32(*x).to_bits().to_le_bytes(),
        })
        .collect()
}

/// Uploads the same values to both backends in `dtype`.
fn both<G: Backend>(
    g: &G,
    c: &CpuBackend,
    v: &[f32],
    dtype: DType,
) -> (G::Tensor, <CpuBackend as Backend>::Tensor) {
    match dtype {
        DType::F32 => (g.upload_f32(v).unwrap(), c.upload_f32(v).unwrap()),
        d => (
            g.upload(d, &bytes16(v, d)).unwrap(),
            c.upload(d, &bytes16(v, d)).unwrap(),
        ),
    }
}

struct Report(Vec<(String, f64, f64)>);

impl Report {
    fn check(&mut self, what: &str, got: &[f32], want: &[f32], tol: f64) {
        let e = nmse(got, want);
        self.0.push((what.to_string(), e, tol));
        assert!(e <= tol, "{what}: NMSE {e:.3e} > {tol:.0e}");
    }
}

fn ops_match_cpu(g: &GpuBackend, r: &mut Report) {
    let c = CpuBackend::default();
    // embedding, every table dtype
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        let p = EmbeddingParams {
            vocab: 37,
            hidden: 72,
        };
        let (tg, tc) = both(g, &c, &data(37 * 72, 1), dtype);
        let toks = [3u32, 0, 36, 3, 17];
        let mut og = g.alloc(DType::F32, 5 * 72).unwrap();
        let mut oc = c.alloc(DType::F32, 5 * 72).unwrap();
        g.embedding(&tg, &toks, &mut og, p).unwrap();
        c.embedding(&tc, &toks, &mut oc, p).unwrap();
        let got = g.download_f32(&og).unwrap();
        assert_eq!(
            got,
            c.download_f32(&oc).unwrap(),
            "embedding {dtype} is exact"
        );
        assert!(
            g.embedding(&tg, &[37], &mut og, p).is_err(),
            "id ≥ vocab refused"
        );
    }
    // rms_norm with and without the fused residual
    for residual in [false, true] {
        let p = RmsNormParams {
            rows: 3,
            dim: 200,
            eps: 1e-5,
        };
        let (mut xg, mut xc) = both(g, &c, &data(600, 2), DType::F32);
        let (rg, rc) = both(g, &c, &data(600, 3), DType::F32);
        let (wg, wc) = both(g, &c, &data(200, 4), DType::F32);
        let mut og = g.alloc(DType::F32, 600).unwrap();
        let mut oc = c.alloc(DType::F32, 600).unwrap();
        g.rms_norm(&mut xg, residual.then_some(&rg), &wg, &mut og, p)
            .unwrap();
        c.rms_norm(&mut xc, residual.then_some(&rc), &wc, &mut oc, p)
            .unwrap();
        let tag = format!("rms_norm residual={residual}");
        r.check(
            &tag,
            &g.download_f32(&og).unwrap(),
            &c.download_f32(&oc).unwrap(),
            F32_NMSE,
        );
        r.check(
            &format!("{tag} x"),
            &g.download_f32(&xg).unwrap(),
            &c.download_f32(&xc).unwrap(),
            F32_NMSE,
        );
    }
    // linear (bf16 weights, with bias) and logits on selected rows
    for rows in [1usize, 3, 17] {
        let p = LinearParams {
            rows,
            in_features: 96,
            out_features: 80,
        };
        let (xg, xc) = both(g, &c, &data(rows * 96, 5), DType::F32);
        let (wg, wc) = both(g, &c, &data(80 * 96, 6), DType::BF16);
        let (bg, bc) = both(g, &c, &data(80, 7), DType::F32);
        let mut og = g.alloc(DType::F32, rows * 80).unwrap();
        let mut oc = c.alloc(DType::F32, rows * 80).unwrap();
        g.linear(&xg, &wg, Some(&bg), &mut og, p).unwrap();
        c.linear(&xc, &wc, Some(&bc), &mut oc, p).unwrap();
        r.check(
            &format!("linear rows={rows}"),
            &g.download_f32(&og).unwrap(),
            &c.download_f32(&oc).unwrap(),
            HALF_NMSE,
        );
        let lp = LogitsParams {
            row0: rows - 1,
            rows: 1,
            hidden: 96,
            vocab: 80,
        };
        g.logits(&xg, &wg, &mut og, lp).unwrap();
        c.logits(&xc, &wc, &mut oc, lp).unwrap();
        r.check(
            &format!("logits row0={}", rows - 1),
            &g.download_f32(&og).unwrap()[..80],
            &c.download_f32(&oc).unwrap()[..80],
            HALF_NMSE,
        );
    }
    // swiglu, add
    {
        let n = 1000;
        let (ag, ac) = both(g, &c, &data(n, 8), DType::F32);
        let (bg, bc) = both(g, &c, &data(n, 9), DType::F32);
        let mut og = g.alloc(DType::F32, n).unwrap();
        let mut oc = c.alloc(DType::F32, n).unwrap();
        g.swiglu(&ag, &bg, &mut og, n).unwrap();
        c.swiglu(&ac, &bc, &mut oc, n).unwrap();
        r.check(
            "swiglu",
            &g.download_f32(&og).unwrap(),
            &c.download_f32(&oc).unwrap(),
            F32_NMSE,
        );
        g.add(&mut og, &ag, n).unwrap();
        c.add(&mut oc, &ac, n).unwrap();
        r.check(
            "add",
            &g.download_f32(&og).unwrap(),
            &c.download_f32(&oc).unwrap(),
            F32_NMSE,
        );
    }
    // rope + KV write, then attention, for each KV dtype, head dims 16 and 64, GQA 3
    for kv in [DType::F32, DType::F16, DType::BF16] {
        for hd in [16usize, 64] {
            rope_attention(g, &c, kv, hd, r);
        }
    }
    // sampling: greedy on the device, sampled on the host from the same row
    let vocab = 3001;
    let mut l = data(2 * vocab, 10);
    l[vocab + 1234] = 5.0;
    l[vocab + 2000] = 5.0; // tie: the lower index wins
    let (lg, lc) = both(g, &c, &l, DType::F32);
    let greedy = SamplingParams::greedy();
    assert_eq!(g.sample(&lg, 1, vocab, &greedy, &[], 0.0).unwrap(), 1234);
    let sp = SamplingParams {
        temperature: 0.7,
        top_k: 50,
        top_p: 0.9,
        min_p: 0.0,
        repeat_penalty: 1.1,
    };
    for coin in [0.0f32, 0.3, 0.99] {
        assert_eq!(
            g.sample(&lg, 0, vocab, &sp, &[5, 9], coin).unwrap(),
            c.sample(&lc, 0, vocab, &sp, &[5, 9], coin).unwrap()
        );
    }
    // fill, softmax_rows, conversions
    let mut t = g.alloc(DType::F32, 777).unwrap();
    g.fill(&mut t, f32::NAN).unwrap();
    assert!(g.download_f32(&t).unwrap().iter().all(|v| v.is_nan()));
    let (mut sg, _) = both(g, &c, &data(2 * 500, 11), DType::F32);
    g.softmax_rows(&mut sg, 2, 500).unwrap();
    let want: Vec<f32> = data(1000, 11)
        .chunks(500)
        .flat_map(|row| {
            let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f32 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect();
    r.check(
        "softmax_rows",
        &g.download_f32(&sg).unwrap(),
        &want,
        F32_NMSE,
    );
    let specials = [
        0.0f32,
        -0.0,
        1.0,
        65504.0,
        1e-7,
        6e-8,
        f32::INFINITY,
        -3.3e38,
        0.333,
    ];
    let src = g.upload_f32(&specials).unwrap();
    for dtype in [DType::F16, DType::BF16] {
        let mut h = g.alloc(dtype, specials.len()).unwrap();
        g.convert(&src, &mut h).unwrap();
        let mut back = g.alloc(DType::F32, specials.len()).unwrap();
        g.convert(&h, &mut back).unwrap();
        let want: Vec<f32> = specials
            .iter()
            .map(|x| match dtype {
                DType::F16 => half::f16::from_f32(*x).to_f32(),
                _ => half::bf16::from_f32(*x).to_f32(),
            })
            .collect();
        let got = g.download_f32(&back).unwrap();
        assert_eq!(
            got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            want.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "convert {dtype} round trip (half crate rounding)"
        );
    }
}

fn rope_attention(g: &GpuBackend, c: &CpuBackend, kv: DType, hd: usize, r: &mut Report) {
    let (n_heads, n_kv) = (6, 2);
    let layout = KvLayout {
        n_layers: 2,
        n_kv_heads: n_kv,
        head_dim: hd,
        capacity: 40,
        dtype: kv,
    };
    let mut kg = KvCache::new(g, layout).unwrap();
    let mut kc = KvCache::new(c, layout).unwrap();
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 10000f32.powf(-(2.0 * i as f32) / hd as f32))
        .collect();
    let (fg, fc) = both(g, c, &inv, DType::F32);
    // Two chunks at layer 1: a prefill of 7 then a decode step at position 7.
    for (pos0, rows, seed) in [(0usize, 7usize, 20u64), (7, 1, 30)] {
        let (mut qg, mut qc) = both(g, c, &data(rows * n_heads * hd, seed), DType::F32);
        let (k_g, k_c) = both(g, c, &data(rows * n_kv * hd, seed + 1), DType::F32);
        let (v_g, v_c) = both(g, c, &data(rows * n_kv * hd, seed + 2), DType::F32);
        let rp = RopeKvParams {
            layer: 1,
            pos0,
            rows,
            n_heads,
            n_kv_heads: n_kv,
            head_dim: hd,
        };
        g.rope_kv_write(&mut qg, &k_g, &v_g, &fg, &mut kg, rp)
            .unwrap();
        c.rope_kv_write(&mut qc, &k_c, &v_c, &fc, &mut kc, rp)
            .unwrap();
        let tag = format!("kv={kv} hd={hd} pos0={pos0}");
        r.check(
            &format!("rope q {tag}"),
            &g.download_f32(&qg).unwrap(),
            &c.download_f32(&qc).unwrap(),
            F32_NMSE,
        );
        let tol = if kv == DType::F32 {
            F32_NMSE
        } else {
            HALF_NMSE
        };
        r.check(
            &format!("kv arena {tag}"),
            &g.download_f32(kg.arena()).unwrap(),
            &c.download_f32(kc.arena()).unwrap(),
            tol,
        );
        let ap = AttentionParams {
            layer: 1,
            pos0,
            rows,
            n_heads,
            n_kv_heads: n_kv,
            head_dim: hd,
        };
        let mut og = g.alloc(DType::F32, rows * n_heads * hd).unwrap();
        let mut oc = c.alloc(DType::F32, rows * n_heads * hd).unwrap();
        g.attention(&qg, &kg, &mut og, ap).unwrap();
        c.attention(&qc, &kc, &mut oc, ap).unwrap();
        r.check(
            &format!("attention {tag}"),
            &g.download_f32(&og).unwrap(),
            &c.download_f32(&oc).unwrap(),
            tol,
        );
    }
}

fn config() -> ModelConfig {
    ModelConfig {
        arch: Arch::Qwen2,
        vocab_size: 300,
        hidden_size: 128,
        intermediate_size: 256,
        n_layers: 3,
        n_heads: 8,
        n_kv_heads: 2,
        head_dim: 16,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        rope_freq_factors: None,
        max_position_embeddings: 128,
        tie_word_embeddings: false,
        attention_bias: true,
        bos_token_id: None,
        eos_token_ids: vec![],
    }
}

fn engine_matches_cpu(g: GpuBackend, r: &mut Report) -> f64 {
    let model = random_model(config(), 7, DType::BF16);
    let opts = EngineOptions {
        kv_dtype: Some(DType::F16),
        ..Default::default()
    };
    let ge = Engine::new(g, &model, opts).unwrap();
    let ce = Engine::new(CpuBackend::default(), &model, opts).unwrap();
    let toks: Vec<u32> = (0..23).map(|i| (i * 37 % 300) as u32).collect();
    let mut gs = ge.new_sequence(64).unwrap();
    let mut cs = ce.new_sequence(64).unwrap();
    let gl = ge.forward(&mut gs, &toks, Logits::All).unwrap().unwrap();
    let cl = ce.forward(&mut cs, &toks, Logits::All).unwrap().unwrap();
    r.check("engine prefill logits", &gl, &cl, MODEL_NMSE);
    // Decode steps, timed on the device's side.
    let t = Instant::now();
    let steps = 20;
    for i in 0..steps {
        ge.forward(&mut gs, &[(i * 11 % 300) as u32], Logits::Last)
            .unwrap();
        ge.backend().synchronize().unwrap();
    }
    let ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
    for i in 0..steps {
        ce.forward(&mut cs, &[(i * 11 % 300) as u32], Logits::Last)
            .unwrap();
    }
    r.check(
        "engine decode logits",
        &ge.last_logits(&gs).unwrap(),
        &ce.last_logits(&cs).unwrap(),
        MODEL_NMSE,
    );
    ms
}

#[test]
fn gpu_backend_matches_cpu_on_every_wave() {
    let first = match wavefront::backend::gpu::detect() {
        Ok(b) => b,
        Err(reason) => {
            eprintln!("skipping: no usable GPU ({reason})");
            return;
        }
    };
    let rt = first.info().runtime;
    let native = first.info().wave;
    drop(first);
    let mut waves = vec![native];
    if rt == Runtime::Cuda && native == 32 {
        waves.push(64);
    }
    let mut summary = Vec::new();
    for wave in waves {
        let t = Instant::now();
        let g = GpuBackend::open(
            rt,
            GpuOptions {
                device: 0,
                wave: Some(wave),
            },
        )
        .unwrap();
        let open_ms = t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(g.wave(), wave);
        let origins: Vec<String> = g
            .module_origins()
            .iter()
            .map(|(f, o)| format!("{f}:{o:?}"))
            .collect();
        let mut r = Report(Vec::new());
        ops_match_cpu(&g, &mut r);
        // One GEMM at a real projection size: 4096 × 4096, one row (decode) and 512 rows.
        let k = 4096;
        let w = g
            .upload(DType::BF16, &bytes16(&data(k * k, 40), DType::BF16))
            .unwrap();
        let x = g.upload_f32(&data(512 * k, 41)).unwrap();
        let mut o = g.alloc(DType::F32, 512 * k).unwrap();
        let mut gemm = Vec::new();
        for rows in [1usize, 512] {
            let p = LinearParams {
                rows,
                in_features: k,
                out_features: k,
            };
            g.linear(&x, &w, None, &mut o, p).unwrap();
            let ms = g
                .time_ms(|b| {
                    for _ in 0..10 {
                        b.linear(&x, &w, None, &mut o, p)?;
                    }
                    Ok(())
                })
                .unwrap()
                / 10.0;
            gemm.push((
                rows,
                ms,
                2.0 * (rows * k * k) as f64 / (ms as f64 * 1e-3) / 1e12,
            ));
        }
        let step_ms = engine_matches_cpu(g, &mut r);
        let worst = r.0.iter().map(|(_, e, t)| e / t).fold(0.0, f64::max);
        summary.push(format!(
            "| {wave} | {open_ms:.0} | {} | {:.2} | {:.3} ms / {:.1} TFLOP/s | {:.3} ms / {:.1} TFLOP/s | {step_ms:.2} |\n  modules: {}",
            r.0.len(), worst, gemm[0].1, gemm[0].2, gemm[1].1, gemm[1].2, origins.join(" ")
        ));
        for (what, e, tol) in &r.0 {
            eprintln!("  wave {wave} {what}: NMSE {e:.2e} (≤ {tol:.0e})");
        }
    }
    eprintln!("| WAVE | open ms | checks | worst NMSE/tol | linear 4096² rows=1 | linear 4096² rows=512 | decode step ms (tiny model) |");
    for s in summary {
        eprintln!("{s}");
    }
}
