//! Graph capture and replay on the GPU: captured work does not run at capture, replays exactly
//! what direct launches compute (kernels and the BLAS GEMM), and replays repeatably. Skips,
//! saying so, where no GPU is usable.

mod common;

use common::gpu::gpu;
use wavefront::backend::{Backend, LinearParams};
use wavefront::formats::random::values;
use wavefront::DType;

#[test]
fn captured_kernels_run_only_on_replay_and_repeatably() {
    let Some(b) = gpu() else { return };
    let n = 1000;
    let (xv, yv) = (values(n, 1), values(n, 2));
    let mut x = b.upload_f32(&xv).unwrap();
    let y = b.upload_f32(&yv).unwrap();
    let g = b
        .capture(|b| {
            b.add(&mut x, &y, n)?;
            b.add(&mut x, &y, n)
        })
        .unwrap();
    assert_eq!(
        b.download_f32(&x).unwrap(),
        xv,
        "captured work must not run at capture"
    );
    // Each replay adds y twice, in the captured order.
    let mut want = xv.clone();
    for _ in 0..3 {
        b.replay(&g).unwrap();
        for (w, v) in want.iter_mut().zip(&yv) {
            *w = *w + v + v;
        }
        assert_eq!(b.download_f32(&x).unwrap(), want);
    }
}

#[test]
fn a_captured_gemm_replays_bit_for_bit() {
    let Some(b) = gpu() else { return };
    let (rows, k, m) = (4, 576, 1536);
    let x = b.upload_f32(&values(rows * k, 3)).unwrap();
    let w: Vec<u8> = values(m * k, 4)
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_bits().to_le_bytes())
        .collect();
    let w = b.upload(DType::BF16, &w).unwrap();
    let p = LinearParams {
        rows,
        in_features: k,
        out_features: m,
    };
    let mut direct = b.alloc(DType::F32, rows * m).unwrap();
    b.linear(&x, &w, None, &mut direct, p).unwrap();
    let mut out = b.alloc(DType::F32, rows * m).unwrap();
    let g = b.capture(|b| b.linear(&x, &w, None, &mut out, p)).unwrap();
    b.replay(&g).unwrap();
    assert_eq!(
        b.download_f32(&out).unwrap(),
        b.download_f32(&direct).unwrap()
    );
}

/// `WAVEFRONT_NO_GRAPH=1` (here `EngineOptions::graphs = false`) runs the same kernels
/// uncaptured: the decode step gives identical tokens both ways, greedy and sampled (with the
/// repetition penalty), and the captured engine really replays its graph.
#[test]
fn the_decode_step_gives_identical_tokens_captured_and_uncaptured() {
    use wavefront::formats::random::{random_model, shape};
    use wavefront::{Engine, EngineOptions, Logits, SamplingParams};
    let Some(b1) = gpu() else { return };
    let Some(b2) = gpu() else { return };
    let model = random_model(shape("smollm2-135m").unwrap(), 5, DType::BF16);
    let with = |graphs| EngineOptions {
        graphs,
        ..Default::default()
    };
    let captured = Engine::new(b1, &model, with(true)).unwrap();
    let direct = Engine::new(b2, &model, with(false)).unwrap();
    let (sampled, _) = wavefront::bench::BenchSampling::default_params();
    let prompt: Vec<u32> = (0..9).map(|i| 1000 + 37 * i).collect();
    let n = 64;
    for (params, window) in [(SamplingParams::greedy(), 0), (sampled, 64)] {
        let mut streams = Vec::new();
        for (e, graphs) in [(&captured, true), (&direct, false)] {
            let mut seq = e.new_sequence(prompt.len() + n + 1).unwrap();
            e.forward(&mut seq, &prompt, Logits::Last).unwrap();
            e.begin_decode(&mut seq, &prompt, 17).unwrap();
            e.queue_sample(&mut seq, &params, window).unwrap();
            let mut tokens = Vec::new();
            for _ in 0..n {
                e.queue_decode(&mut seq, &params, window).unwrap();
                tokens.push(e.take_token(&mut seq).unwrap());
            }
            tokens.push(e.take_token(&mut seq).unwrap());
            let (steps, replays) = seq.decode_counts();
            assert_eq!(steps, n);
            assert_eq!(replays, if graphs { n } else { 0 }, "graphs {graphs}");
            streams.push(tokens);
        }
        assert_eq!(streams[0], streams[1], "{params:?}");
        // And both equal the host loop the step replaces (the same kernels with host-given
        // tokens and positions, `Engine::sample` with the same coins): a step that never
        // advanced its position, or read a stale token, would differ.
        let mut seq = direct.new_sequence(prompt.len() + n + 1).unwrap();
        direct.forward(&mut seq, &prompt, Logits::Last).unwrap();
        let (mut coins, mut ctx) = (wavefront::sampler::CoinRng::new(17), prompt.clone());
        let mut host = Vec::new();
        for i in 0..=n {
            let w = match window {
                0 => &ctx[..],
                k => &ctx[ctx.len().saturating_sub(k)..],
            };
            let t = direct.sample(&seq, &params, w, coins.coin()).unwrap();
            host.push(t);
            ctx.push(t);
            if i < n {
                direct.forward(&mut seq, &[t], Logits::Last).unwrap();
            }
        }
        assert_eq!(streams[0], host, "{params:?}: step decode vs the host loop");
    }
}

/// A batched decode pass is captured and replayed while the same sequences come with the same
/// settings: three sequences (different prompts, so different positions; greedy and sampled)
/// decoded together give, token for token, what each gives decoded alone, with graphs and
/// without; the captured batch replays every pass after its first, and when a sequence leaves
/// (the set changes) the remaining two are captured anew and still match.
#[test]
fn batched_passes_replay_captured_graphs_and_keep_each_sequences_tokens() {
    use wavefront::formats::random::{random_model, shape};
    use wavefront::{DecodeBatch, Engine, EngineOptions, Logits, SamplingParams, Sequence};
    let Some(b1) = gpu() else { return };
    let Some(b2) = gpu() else { return };
    let model = random_model(shape("smollm2-135m").unwrap(), 6, DType::BF16);
    let with = |graphs| EngineOptions {
        graphs,
        ..Default::default()
    };
    let captured = Engine::new(b1, &model, with(true)).unwrap();
    let direct = Engine::new(b2, &model, with(false)).unwrap();
    let (sampled, _) = wavefront::bench::BenchSampling::default_params();
    let settings = [
        (SamplingParams::greedy(), 0),
        (sampled, 64),
        (SamplingParams::greedy(), 0),
    ];
    let prompts: Vec<Vec<u32>> = (0..3)
        .map(|s| (0..5 + 4 * s).map(|i| 900 + 31 * i + 7 * s).collect())
        .collect();
    let (n, leave_after) = (24, 10);
    let start = |e: &Engine<_>, i: usize| -> Sequence<_> {
        let p = &prompts[i];
        let mut seq = e.new_sequence(p.len() + n + 2).unwrap();
        e.forward(&mut seq, p, Logits::Last).unwrap();
        e.begin_decode(&mut seq, p, 40 + i as u64).unwrap();
        let (params, window) = &settings[i];
        e.queue_sample(&mut seq, params, *window).unwrap();
        seq
    };
    // Each alone (uncaptured single steps), n steps.
    let alone: Vec<Vec<u32>> = (0..3)
        .map(|i| {
            let mut seq = start(&direct, i);
            let (params, window) = &settings[i];
            let mut t = vec![direct.take_token(&mut seq).unwrap()];
            for _ in 0..n {
                direct.queue_decode(&mut seq, params, *window).unwrap();
                t.push(direct.take_token(&mut seq).unwrap());
            }
            t
        })
        .collect();
    for (e, graphs) in [(&captured, true), (&direct, false)] {
        let mut seqs: Vec<_> = (0..3).map(|i| start(e, i)).collect();
        let mut got: Vec<Vec<u32>> = seqs
            .iter_mut()
            .map(|s| vec![e.take_token(s).unwrap()])
            .collect();
        let mut batch = DecodeBatch::new();
        for step in 0..n {
            // Sequence 1 leaves after `leave_after` steps: passes of two from then on.
            let live: Vec<usize> = if step < leave_after {
                vec![0, 1, 2]
            } else {
                vec![0, 2]
            };
            let params: Vec<_> = live.iter().map(|&i| settings[i]).collect();
            let mut group: Vec<&mut Sequence<_>> = seqs
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| live.contains(i))
                .map(|(_, s)| s)
                .collect();
            e.queue_decode_batch(&mut batch, &mut group, &params)
                .unwrap();
            for (seq, &i) in group.iter_mut().zip(&live) {
                got[i].push(e.take_token(seq).unwrap());
            }
        }
        assert_eq!(batch.counts(), (n, 3 * leave_after + 2 * (n - leave_after)));
        // Two captures (the set of three, then of two), every other pass a replay.
        let replays = if graphs { n - 2 } else { 0 };
        assert_eq!(batch.replays(), replays, "graphs {graphs}");
        for i in [0, 2] {
            assert_eq!(got[i], alone[i], "graphs {graphs}: sequence {i}");
        }
        assert_eq!(
            got[1],
            alone[1][..=leave_after],
            "graphs {graphs}: sequence 1 until it left"
        );
    }
}

/// A verification's forward as decode steps (`Engine::forward_as_steps`) is captured once per
/// row count and replayed with the tokens and positions written on the device before it: after
/// rollbacks to other lengths, with other tokens and draft lengths that come back, every row's
/// logits equal, bit for bit, the same passes launched uncaptured (`EngineOptions::graphs`
/// off), and the KV they leave is the same (the next pass reads it).
#[test]
fn verifications_replay_captured_passes_bit_for_bit() {
    use wavefront::formats::random::{random_model, shape};
    use wavefront::{Engine, EngineOptions, Logits};
    let Some(b1) = gpu() else { return };
    let Some(b2) = gpu() else { return };
    let model = random_model(shape("smollm2-135m").unwrap(), 7, DType::BF16);
    let with = |graphs| EngineOptions {
        graphs,
        verify_graphs: graphs,
        ..Default::default()
    };
    let captured = Engine::new(b1, &model, with(true)).unwrap();
    let direct = Engine::new(b2, &model, with(false)).unwrap();
    let prompt: Vec<u32> = (0..11).map(|i| 500 + 91 * i).collect();
    // (draft tokens, rows kept after the pass): lengths 5, 3 and 8 rows come back.
    let plan: Vec<(Vec<u32>, usize)> = (0..9)
        .map(|r| {
            let rows = [5, 5, 3, 5, 8, 3, 8, 5, 5][r];
            let tokens = (0..rows)
                .map(|i| (7 + 331 * r + 53 * i) as u32 % 49152)
                .collect();
            (tokens, (r * 7) % (rows + 1))
        })
        .collect();
    let mut out = Vec::new();
    for e in [&captured, &direct] {
        let mut seq = e.new_sequence(prompt.len() + 9 * 8 + 1).unwrap();
        e.forward(&mut seq, &prompt, Logits::Last).unwrap();
        let mut rounds = Vec::new();
        for (tokens, keep) in &plan {
            let len = seq.cache.len();
            rounds.push(e.forward_as_steps(&mut seq, tokens).unwrap());
            seq.cache.rollback_to(len + keep).unwrap();
        }
        out.push((rounds, seq.steps_counts()));
    }
    for (r, (a, b)) in out[0].0.iter().zip(&out[1].0).enumerate() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(a), bits(b), "round {r}: captured vs uncaptured logits");
    }
    // Three row counts captured, the other six passes replays (the first pass made room for
    // the longest, so no later one drops a capture); none uncaptured.
    assert_eq!(out[0].1, (9, 6));
    assert_eq!(out[1].1, (9, 0));
}
