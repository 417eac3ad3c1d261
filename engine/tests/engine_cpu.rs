//! The CPU engine's own invariants on a random model: chunking, prefill/decode splits and
//! rollbacks change nothing (the CPU kernels are deterministic, so bit-exact), the KV arena has
//! the documented size, and an overflowing request is a typed error that changes nothing.

use wavefront::backend::cpu::{CpuBackend, CpuTensor};
use wavefront::backend::{Backend, TensorInfo};
use wavefront::config::{Activation, Arch, ModelConfig};
use wavefront::formats::random::random_model;
use wavefront::kv_cache::{KvCache, KvLayout};
use wavefront::{DType, Engine, EngineOptions, Error, Logits};

fn config(attention_bias: bool, tie: bool) -> ModelConfig {
    ModelConfig {
        arch: if attention_bias {
            Arch::Qwen2
        } else {
            Arch::Llama
        },
        vocab_size: 97,
        hidden_size: 48,
        intermediate_size: 80,
        n_layers: 2,
        n_heads: 6,
        n_kv_heads: 2,
        head_dim: 16,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        rope_freq_factors: None,
        rope_longrope: None,
        max_position_embeddings: 64,
        tie_word_embeddings: tie,
        attention_bias,
        qk_norm: false,
        sliding_window: None,
        sliding_layers: None,
        rope_local_theta: None,
        activation: Activation::Silu,
        embed_scale: None,
        query_pre_attn_scalar: None,
        attn_logit_softcap: None,
        final_logit_softcap: None,
        post_norms: false,
        bos_token_id: None,
        eos_token_ids: vec![],
    }
}

/// Qwen3's shape of the same model: QK-norm, tied head.
fn qwen3_config() -> ModelConfig {
    ModelConfig {
        arch: Arch::Qwen3,
        qk_norm: true,
        ..config(false, true)
    }
}

fn engine(cfg: ModelConfig, max_batch: usize) -> Engine<CpuBackend> {
    let model = random_model(cfg, 42, DType::BF16);
    let opts = EngineOptions {
        max_batch,
        ..Default::default()
    };
    Engine::new(CpuBackend::default(), &model, opts).unwrap()
}

const TOKENS: [u32; 11] = [5, 17, 0, 96, 33, 33, 2, 71, 8, 50, 13];

fn full_logits(e: &Engine<CpuBackend>) -> Vec<f32> {
    let mut seq = e.new_sequence(32).unwrap();
    e.forward(&mut seq, &TOKENS, Logits::All).unwrap().unwrap()
}

#[test]
fn chunked_prefill_equals_one_chunk() {
    for cfg in [config(false, false), config(true, true), qwen3_config()] {
        let whole = full_logits(&engine(cfg.clone(), 512));
        for chunk in [1, 3, 4, 10] {
            assert_eq!(
                full_logits(&engine(cfg.clone(), chunk)),
                whole,
                "{:?} chunk {chunk}",
                cfg.arch
            );
        }
    }
}

#[test]
fn prefill_then_decode_equals_full_forward() {
    for cfg in [config(true, false), qwen3_config()] {
        prefill_then_decode(engine(cfg, 512));
    }
}

/// `forward_as_steps` (a speculative verification's forward): every row the full forward's
/// row at its position, the cache advanced by the rows; no rows, more rows than a batched pass
/// takes, or more than the cache has room for: a clear error, the cache untouched.
#[test]
fn rows_as_steps_equal_the_full_forward_and_refuse_bad_lengths() {
    let vocab = 97;
    for cfg in [config(true, false), qwen3_config()] {
        let whole = full_logits(&engine(cfg.clone(), 512));
        let e = engine(cfg, 4);
        assert_eq!(e.decode_batch_rows(), 4);
        let mut seq = e.new_sequence(TOKENS.len()).unwrap();
        e.forward(&mut seq, &TOKENS[..5], Logits::Last).unwrap();
        let rows = e.forward_as_steps(&mut seq, &TOKENS[5..9]).unwrap();
        assert_eq!(rows, whole[5 * vocab..9 * vocab]);
        assert_eq!(seq.cache.len(), 9);
        for (tokens, want) in [
            (&TOKENS[..0], "takes 1..=4 tokens, got 0"),
            (&TOKENS[..5], "takes 1..=4 tokens, got 5"),
        ] {
            let err = e.forward_as_steps(&mut seq, tokens).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
            assert!(err.to_string().contains(want), "{err}");
        }
        // Two positions left; three rows do not fit.
        let err = e.forward_as_steps(&mut seq, &TOKENS[..3]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ContextFull {
                    capacity: 11,
                    requested: 12
                }
            ),
            "{err:?}"
        );
        assert_eq!(seq.cache.len(), 9);
        // verify_forward takes the same rows through it.
        let rows = e.verify_forward(&mut seq, &TOKENS[9..11]).unwrap();
        assert_eq!(rows, whole[9 * vocab..11 * vocab]);
    }
}

fn prefill_then_decode(e: Engine<CpuBackend>) {
    let whole = full_logits(&e);
    let vocab = 97;
    for split in [1, 4, 10] {
        let mut seq = e.new_sequence(32).unwrap();
        e.forward(&mut seq, &TOKENS[..split], Logits::Last).unwrap();
        let mut got = e.last_logits(&seq).unwrap();
        assert_eq!(
            got,
            whole[(split - 1) * vocab..split * vocab],
            "prefill of {split}"
        );
        for (i, &t) in TOKENS.iter().enumerate().skip(split) {
            e.forward(&mut seq, &[t], Logits::Last).unwrap();
            got = e.last_logits(&seq).unwrap();
            assert_eq!(
                got,
                whole[i * vocab..(i + 1) * vocab],
                "decode at {i} after prefill of {split}"
            );
        }
        assert_eq!(seq.cache.len(), TOKENS.len());
    }
}

#[test]
fn rollback_then_replay_reproduces_logits_and_kv() {
    let e = engine(config(false, true), 512);
    let mut seq = e.new_sequence(32).unwrap();
    e.forward(&mut seq, &TOKENS[..5], Logits::Last).unwrap();
    let snap = seq.cache.snapshot();
    let kv_at_snap = seq.cache.read_layer(e.backend(), 1).unwrap();
    e.forward(&mut seq, &TOKENS[5..8], Logits::Last).unwrap();
    let first = e.last_logits(&seq).unwrap();
    seq.cache.rollback_to(snap.len()).unwrap();
    assert_eq!(seq.cache.len(), 5);
    assert_eq!(seq.cache.read_layer(e.backend(), 1).unwrap(), kv_at_snap);
    e.forward(&mut seq, &TOKENS[5..8], Logits::Last).unwrap();
    assert_eq!(e.last_logits(&seq).unwrap(), first);
    // Rolling forward is refused.
    let later = seq.cache.snapshot();
    seq.cache.rollback_to(snap.len()).unwrap();
    assert!(matches!(
        seq.cache.rollback_to(later.len()),
        Err(Error::KvRollForward {
            len: 5,
            requested: 8
        })
    ));
    assert_eq!(seq.cache.len(), 5);
}

#[test]
fn overflowing_the_cache_is_a_typed_error_that_changes_nothing() {
    let e = engine(config(false, false), 4);
    let mut seq = e.new_sequence(8).unwrap();
    e.forward(&mut seq, &TOKENS[..6], Logits::Last).unwrap();
    let before = seq.cache.read_layer(e.backend(), 0).unwrap();
    let err = e.forward(&mut seq, &TOKENS[..3], Logits::Last).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ContextFull {
                capacity: 8,
                requested: 9
            }
        ),
        "{err}"
    );
    assert_eq!(seq.cache.len(), 6);
    assert_eq!(seq.cache.read_layer(e.backend(), 0).unwrap(), before);
    // Exactly filling it is fine.
    e.forward(&mut seq, &TOKENS[..2], Logits::Last).unwrap();
    assert_eq!(seq.cache.remaining(), 0);
}

#[test]
fn bad_tokens_are_typed_errors() {
    let e = engine(config(false, false), 512);
    let mut seq = e.new_sequence(8).unwrap();
    assert!(matches!(
        e.forward(&mut seq, &[], Logits::Last),
        Err(Error::InvalidRequest(_))
    ));
    let err = e.forward(&mut seq, &[3, 97], Logits::Last).unwrap_err();
    assert!(err.to_string().contains("97"), "{err}");
}

#[test]
fn kv_arena_size_is_two_layers_heads_dim_capacity_sizeof() {
    let b = CpuBackend::default();
    for (dtype, size) in [(DType::F32, 4), (DType::F16, 2), (DType::BF16, 2)] {
        let layout = KvLayout {
            n_layers: 3,
            n_kv_heads: 2,
            head_dim: 64,
            capacity: 37,
            dtype,
        };
        let cache: KvCache<CpuTensor> = KvCache::new(&b, layout).unwrap();
        let expected = 2 * 3 * 2 * 64 * 37 * size;
        assert_eq!(cache.bytes(), expected);
        assert_eq!(cache.arena().len() * size, expected, "{dtype}");
        assert_eq!(cache.arena().dtype(), dtype);
    }
    let bad = KvLayout {
        n_layers: 1,
        n_kv_heads: 1,
        head_dim: 2,
        capacity: 1,
        dtype: DType::Q4_0,
    };
    assert!(KvCache::<CpuTensor>::new(&b, bad).is_err());
    assert!(b.alloc(DType::F32, 3).is_ok());
    // Q8_0: 34 bytes a block of 32, in whole 272-byte superblocks of 256 elements.
    let q8 = KvLayout {
        n_layers: 3,
        n_kv_heads: 2,
        head_dim: 64,
        capacity: 37,
        dtype: DType::Q8_0Kv,
    };
    let cache: KvCache<CpuTensor> = KvCache::new(&b, q8).unwrap();
    let elems = 2 * 3 * 2 * 64 * 37;
    assert_eq!(cache.arena().len(), elems);
    assert_eq!(cache.bytes(), elems.div_ceil(256) * 272);
    assert_eq!(q8.bytes_per_position(), 2 * 3 * 2 * 64 / 32 * 34);
    let err = KvCache::<CpuTensor>::new(&b, KvLayout { head_dim: 48, ..q8 })
        .err()
        .expect("head_dim 48 is not whole Q8_0 blocks");
    assert!(err.to_string().contains("multiple of 32"), "{err}");
}

/// A Q8_0 KV cache holds what `kv_quant` stores: K/V rows written through `rope_kv_write`
/// read back as their Q8_0 round trip, and the model's logits stay near the f32 cache's.
#[test]
fn q8_0_kv_cache_stores_q8_0_rows_and_keeps_the_logits_close() {
    let mut cfg = config(false, false);
    cfg.head_dim = 32; // whole Q8_0 blocks
    let engine_with = |kv_dtype| {
        let opts = EngineOptions {
            kv_dtype: Some(kv_dtype),
            ..EngineOptions::default()
        };
        Engine::new(
            CpuBackend::default(),
            &random_model(cfg.clone(), 42, DType::BF16),
            opts,
        )
        .unwrap()
    };
    let f32_engine = engine_with(DType::F32);
    let mut seq = f32_engine.new_sequence(16).unwrap();
    let want = f32_engine.forward(&mut seq, &TOKENS, Logits::All).unwrap();
    let q8_engine = engine_with(DType::Q8_0Kv);
    let mut seq = q8_engine.new_sequence(16).unwrap();
    let got = q8_engine.forward(&mut seq, &TOKENS, Logits::All).unwrap();
    assert_eq!(seq.cache.layout().dtype, DType::Q8_0Kv);
    let (k, v) = seq.cache.read_layer(q8_engine.backend(), 0).unwrap();
    for x in [&k, &v] {
        let mut again = x.clone();
        wavefront::tensor::round_to(DType::Q8_0Kv, &mut again);
        assert_eq!(x, &again, "rows are Q8_0 values");
    }
    let (w, g) = (want.unwrap(), got.unwrap());
    let err: f32 = w.iter().zip(&g).map(|(a, b)| (a - b).powi(2)).sum();
    let norm: f32 = w.iter().map(|a| a * a).sum();
    // Q8_0 moves each K/V element by up to half a step d/2 of its block (d = amax / 127): mean
    // square d²/12, at most 32·amax²/(12·127²) ≤ 1.7e-4 of a block's energy (≥ amax²). 4 such
    // roundings (K and V of 2 layers) through pre-norm blocks of gain ≤ 1: NMSE ≤ 6.6e-4.
    assert!(err > 0.0 && err / norm < 6.6e-4, "NMSE {}", err / norm);
}

/// The device-side decode step (`begin_decode` / `queue_sample` / `queue_decode` /
/// `take_token`, one token ahead) gives exactly the tokens of the host loop it replaces:
/// `forward` + `Engine::sample` with the same coins and penalty window.
#[test]
fn the_step_decode_equals_forward_and_sample() {
    use wavefront::sampler::CoinRng;
    use wavefront::SamplingParams;
    let sampled = SamplingParams {
        temperature: 0.9,
        top_k: 20,
        top_p: 0.9,
        min_p: 0.02,
        repeat_penalty: 1.3,
        presence_penalty: 0.0,
        frequency_penalty: 0.0,
    };
    for (params, window) in [(SamplingParams::greedy(), 0), (sampled, 4), (sampled, 0)] {
        let e = engine(config(true, false), 512);
        let n = 20;
        let mut seq = e.new_sequence(40).unwrap();
        e.forward(&mut seq, &TOKENS, Logits::Last).unwrap();
        let (mut coins, mut ctx, mut want) = (CoinRng::new(9), TOKENS.to_vec(), Vec::new());
        for _ in 0..n {
            let w = match window {
                0 => &ctx[..],
                n => &ctx[ctx.len().saturating_sub(n)..],
            };
            let t = e.sample(&seq, &params, w, coins.coin()).unwrap();
            want.push(t);
            ctx.push(t);
            e.forward(&mut seq, &[t], Logits::Last).unwrap();
        }
        let mut seq2 = e.new_sequence(40).unwrap();
        e.forward(&mut seq2, &TOKENS, Logits::Last).unwrap();
        e.begin_decode(&mut seq2, &TOKENS, 9).unwrap();
        e.queue_sample(&mut seq2, &params, window).unwrap();
        let mut got = Vec::new();
        for _ in 0..n {
            e.queue_decode(&mut seq2, &params, window).unwrap();
            got.push(e.take_token(&mut seq2).unwrap());
        }
        assert_eq!(got, want, "{params:?} window {window}");
        // One step ahead: the 21st token is posted too, and both caches hold the same keys.
        assert_eq!(seq2.cache.len(), seq.cache.len());
        assert_eq!(
            seq2.decode_counts(),
            (n, 0),
            "the CPU has no graphs: no replays"
        );
        let (a, b) = (e.backend(), e.backend());
        assert_eq!(
            a.download_f32(seq.cache.arena()).unwrap(),
            b.download_f32(seq2.cache.arena()).unwrap()
        );
    }
}

#[test]
fn the_step_decode_refuses_misuse_with_typed_errors() {
    let e = engine(config(false, false), 512);
    let greedy = wavefront::SamplingParams::greedy();
    let mut seq = e.new_sequence(TOKENS.len() + 2).unwrap();
    assert!(
        e.queue_decode(&mut seq, &greedy, 0).is_err(),
        "no begin_decode"
    );
    assert!(e.take_token(&mut seq).is_err(), "nothing posted");
    e.forward(&mut seq, &TOKENS, Logits::Last).unwrap();
    let short = &TOKENS[..3];
    let err = e.begin_decode(&mut seq, short, 0).unwrap_err();
    assert!(err.to_string().contains("cached tokens"), "{err}");
    e.begin_decode(&mut seq, &TOKENS, 0).unwrap();
    assert!(e.take_token(&mut seq).is_err(), "nothing posted yet");
    e.queue_sample(&mut seq, &greedy, 0).unwrap();
    e.queue_decode(&mut seq, &greedy, 0).unwrap();
    e.queue_decode(&mut seq, &greedy, 0).unwrap();
    // The cache is full: a third step has nowhere to write its keys.
    let err = e.queue_decode(&mut seq, &greedy, 0).unwrap_err();
    assert!(matches!(err, Error::ContextFull { .. }), "{err}");
    for _ in 0..3 {
        assert!(e.take_token(&mut seq).unwrap() < 97);
    }
}

/// Speculative verification (issue 13): the k + 1 rows of one forward over the last token and
/// k drafts, at a non-zero start, are bit for bit the logits the decode step (`queue_decode`,
/// the plain generation's path) computes for each token alone; and a forward over rows that
/// are then rolled back leaves no trace in the next forward's logits or the cache.
#[test]
fn verification_rows_equal_decode_steps_and_rollback_leaves_no_trace() {
    let greedy = wavefront::SamplingParams::greedy();
    for (bias, tie) in [(false, false), (true, true)] {
        let e = engine(config(bias, tie), 512);
        let vocab = e.config().vocab_size;
        let prompt = &TOKENS[..4];
        // The plain decode: the first token from the prefill, then 4 decode steps.
        let mut plain = e.new_sequence(32).unwrap();
        e.forward(&mut plain, prompt, Logits::Last).unwrap();
        e.begin_decode(&mut plain, prompt, 7).unwrap();
        e.queue_sample(&mut plain, &greedy, 0).unwrap();
        let mut tokens = vec![e.take_token(&mut plain).unwrap()];
        let mut step_logits = Vec::new();
        for _ in 0..4 {
            e.queue_decode(&mut plain, &greedy, 0).unwrap();
            step_logits.extend(e.last_logits(&plain).unwrap());
            tokens.push(e.take_token(&mut plain).unwrap());
        }
        // One verification pass over the first 4 tokens, after rows that were rolled back.
        let mut spec = e.new_sequence(32).unwrap();
        e.forward(&mut spec, prompt, Logits::Last).unwrap();
        e.forward(&mut spec, &[90, 91, 92, 93, 94, 95], Logits::All)
            .unwrap();
        spec.cache.rollback_to(prompt.len()).unwrap();
        let rows = e
            .forward(&mut spec, &tokens[..4], Logits::All)
            .unwrap()
            .unwrap();
        assert_eq!(rows.len(), 4 * vocab);
        assert_eq!(rows, step_logits, "bias {bias}, tie {tie}");
        assert_eq!(spec.cache.len(), plain.cache.len());
        for l in 0..2 {
            assert_eq!(
                spec.cache.read_layer(e.backend(), l).unwrap(),
                plain.cache.read_layer(e.backend(), l).unwrap(),
                "layer {l}"
            );
        }
    }
}

#[test]
fn gemma2_caps_bound_the_logits_and_nonsense_caps_are_typed_errors() {
    let plain = full_logits(&engine(config(false, true), 1));
    let capped_cfg = ModelConfig {
        final_logit_softcap: Some(0.05),
        attn_logit_softcap: Some(0.5),
        query_pre_attn_scalar: Some(10.0),
        ..config(false, true)
    };
    let capped = full_logits(&engine(capped_cfg.clone(), 1));
    // |c·tanh(l / c)| ≤ c (= c where tanh rounds to 1 in f32)
    assert!(
        capped.iter().all(|l| l.abs() <= 0.05),
        "the final cap bounds every logit"
    );
    assert!(
        plain.iter().any(|l| l.abs() > 0.05),
        "the cap bites on this model"
    );
    // A cap or scale that is not a finite positive number: a typed error from the forward,
    // never a panic or NaN logits.
    for bad in [
        ModelConfig {
            attn_logit_softcap: Some(f32::NAN),
            ..capped_cfg.clone()
        },
        ModelConfig {
            attn_logit_softcap: Some(-50.0),
            ..capped_cfg.clone()
        },
        ModelConfig {
            final_logit_softcap: Some(0.0),
            ..capped_cfg.clone()
        },
        ModelConfig {
            final_logit_softcap: Some(f32::INFINITY),
            ..capped_cfg.clone()
        },
        ModelConfig {
            query_pre_attn_scalar: Some(-1.0),
            ..capped_cfg.clone()
        },
    ] {
        let e = engine(bad.clone(), 1);
        let mut seq = e.new_sequence(32).unwrap();
        match e.forward(&mut seq, &TOKENS, Logits::All) {
            Err(Error::Backend { .. }) => {}
            other => panic!("{bad:?}: expected a backend error, got {other:?}"),
        }
    }
}
