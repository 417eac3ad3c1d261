//! Model-level properties on small seeded random models: incremental decoding, causality,
//! the KV cache's capacity and rollback, the trace, and shape validation.

mod common;

use common::{gqa_config, gqa_model, random_weights, random_weights_qk, rel_max_diff, Rng};
use ndarray::{concatenate, s, Array2, Axis};
use wavefront_reference::{Config, Error, KvCache, Model, RopeConfig, RopeScaling, Weights};

/// Every pass computes each row with the same operations on the same data; only the order of
/// the sums in the projections can differ with the number of rows (GEMM blocking, or a
/// matrix-vector product for one row): f32 reassociation of sums of at most 40 products,
/// ~40 · 2^-24 ≈ 2.4e-6 relative each, carried through 2 layers. 1e-5 of the largest value
/// covers that, and is far below any real error (a wrong position or a missing key changes
/// logits by O(1)).
const REASSOCIATION: f32 = 1e-5;

/// The architectures the tests run on: Llama with GQA and an untied head; Qwen2-like
/// (QKV bias, tied head); Llama 3 rope scaling; Qwen3-like (QK-norm, tied head).
fn models() -> Vec<(&'static str, Model)> {
    let qwen = Model::new(gqa_config(), random_weights(&gqa_config(), 2, true, true)).unwrap();
    let mut c3 = gqa_config();
    c3.rope = RopeConfig {
        theta: 500000.0,
        scaling: RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        },
    };
    let llama3 = Model::new(c3.clone(), random_weights(&c3, 3, false, false)).unwrap();
    let qwen3 = Model::new(
        gqa_config(),
        random_weights_qk(&gqa_config(), 5, false, true, true),
    )
    .unwrap();
    vec![
        ("llama-gqa", gqa_model(1)),
        ("qwen2-bias-tied", qwen),
        ("llama3-rope", llama3),
        ("qwen3-qknorm-tied", qwen3),
    ]
}

/// Runs `tokens` in chunks of the given sizes; returns the stacked logits and the cache.
fn chunked(model: &Model, tokens: &[u32], sizes: &[usize]) -> (Array2<f32>, KvCache) {
    let mut cache = model.new_cache(tokens.len());
    let mut rows = vec![];
    let mut at = 0;
    for &n in sizes {
        rows.push(model.forward(&tokens[at..at + n], &mut cache).unwrap());
        at += n;
    }
    assert_eq!(at, tokens.len());
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    (concatenate(Axis(0), &views).unwrap(), cache)
}

#[test]
fn prefill_then_decode_equals_one_full_forward() {
    let tokens = Rng::new(7).tokens(9, 50);
    for (name, model) in models() {
        let (full, full_cache) = chunked(&model, &tokens, &[9]);
        for sizes in [&[4, 5][..], &[1; 9], &[3, 1, 5], &[8, 1], &[1, 7, 1]] {
            let (split, cache) = chunked(&model, &tokens, sizes);
            assert!(
                rel_max_diff(&full, &split) <= REASSOCIATION,
                "{name} {sizes:?} logits"
            );
            assert_eq!(cache.len(), 9);
            for l in 0..model.config().n_layers {
                let k = rel_max_diff(&full_cache.k(l).to_owned(), &cache.k(l).to_owned());
                let v = rel_max_diff(&full_cache.v(l).to_owned(), &cache.v(l).to_owned());
                assert!(
                    k <= REASSOCIATION && v <= REASSOCIATION,
                    "{name} {sizes:?} layer {l}"
                );
            }
        }
    }
}

#[test]
fn decode_is_one_step_of_forward() {
    let model = gqa_model(4);
    let tokens = Rng::new(8).tokens(5, 50);
    let (full, _) = chunked(&model, &tokens, &[5]);
    let mut cache = model.new_cache(5);
    model.prefill(&tokens[..4], &mut cache).unwrap();
    let last = model.decode(tokens[4], &mut cache).unwrap(); // (vocab)
    assert_eq!(cache.len(), 5);
    assert!(rel_max_diff(&full.row(4).to_owned(), &last) <= REASSOCIATION);
}

#[test]
fn logits_at_t_do_not_depend_on_later_tokens() {
    let mut rng = Rng::new(9);
    for (name, model) in models() {
        let a = rng.tokens(8, 50);
        let mut b = a.clone();
        for (i, t) in b.iter_mut().enumerate().skip(5) {
            *t = (*t + 1 + i as u32) % 50;
        }
        let (la, _) = chunked(&model, &a, &[8]);
        let (lb, _) = chunked(&model, &b, &[8]);
        let (head_a, head_b) = (
            la.slice(s![..5, ..]).to_owned(),
            lb.slice(s![..5, ..]).to_owned(),
        );
        assert!(rel_max_diff(&head_a, &head_b) <= REASSOCIATION, "{name}");
        // ...while the later rows do change.
        assert!(
            rel_max_diff(
                &la.slice(s![5.., ..]).to_owned(),
                &lb.slice(s![5.., ..]).to_owned()
            ) > 1e-3
        );
    }
}

#[test]
fn the_order_of_earlier_tokens_matters() {
    // Without positions, attention is a weighted mean and the last row of [a, c, b] would
    // equal that of [c, a, b]; RoPE makes them differ (guards against ignoring positions).
    let model = gqa_model(5);
    let (l1, _) = chunked(&model, &[1, 7, 3], &[3]);
    let (l2, _) = chunked(&model, &[7, 1, 3], &[3]);
    assert!(rel_max_diff(&l1.row(2).to_owned(), &l2.row(2).to_owned()) > 1e-3);
}

#[test]
fn overflowing_the_cache_is_an_error_that_leaves_it_unchanged() {
    let model = gqa_model(6);
    let mut cache = model.new_cache(6);
    model.prefill(&[1, 2, 3, 4], &mut cache).unwrap();
    let before = cache.clone();
    let err = model.forward(&[5, 6, 7], &mut cache).unwrap_err();
    assert_eq!(
        err,
        Error::CacheFull {
            capacity: 6,
            requested: 7
        }
    );
    assert_eq!(cache, before);
    // Filling it exactly works; one more decode step does not.
    model.forward(&[5, 6], &mut cache).unwrap();
    assert_eq!(cache.len(), 6);
    let full = cache.clone();
    assert_eq!(
        model.decode(7, &mut cache).unwrap_err(),
        Error::CacheFull {
            capacity: 6,
            requested: 7
        }
    );
    assert_eq!(cache, full);
}

#[test]
fn bad_tokens_are_errors_that_leave_the_cache_unchanged() {
    let model = gqa_model(6);
    let mut cache = model.new_cache(8);
    model.prefill(&[1, 2], &mut cache).unwrap();
    let before = cache.clone();
    let err = model.forward(&[3, 50], &mut cache).unwrap_err();
    assert_eq!(
        err,
        Error::TokenOutOfRange {
            token: 50,
            index: 1,
            vocab_size: 50
        }
    );
    assert_eq!(
        model.forward(&[], &mut cache).unwrap_err(),
        Error::Empty { what: "tokens" }
    );
    assert_eq!(cache, before);
}

#[test]
fn truncate_then_forward_reproduces_the_logits() {
    let tokens = Rng::new(10).tokens(8, 50);
    for (name, model) in models() {
        let mut cache = model.new_cache(8);
        let first = model.prefill(&tokens, &mut cache).unwrap(); // (8, vocab)
        cache.truncate(5);
        assert_eq!(cache.len(), 5);
        let again = model.forward(&tokens[5..], &mut cache).unwrap(); // (3, vocab)
        assert!(
            rel_max_diff(&first.slice(s![5.., ..]).to_owned(), &again) <= REASSOCIATION,
            "{name}"
        );
        // Rolling back and taking another branch equals a fresh run of that branch.
        cache.truncate(3);
        let branch = [tokens[0], tokens[1], tokens[2], 7, 11];
        let tail = model.forward(&branch[3..], &mut cache).unwrap();
        let (fresh, _) = chunked(&model, &branch, &[5]);
        assert!(
            rel_max_diff(&fresh.slice(s![3.., ..]).to_owned(), &tail) <= REASSOCIATION,
            "{name}"
        );
        // Truncating past the end changes nothing.
        cache.truncate(100);
        assert_eq!(cache.len(), 5);
    }
}

/// Speculative decoding's rollback: rows written and then rolled back (`rollback_to`) leave no
/// trace: the next forward gives, bit for bit, the logits and cache of a run that never wrote
/// them.
#[test]
fn rollback_then_forward_equals_never_having_written_the_rows() {
    let tokens = Rng::new(12).tokens(6, 50);
    for (name, model) in models() {
        let mut rolled = model.new_cache(10);
        model.forward(&tokens[..4], &mut rolled).unwrap();
        model.forward(&[9, 13, 21], &mut rolled).unwrap(); // rejected drafts
        rolled.rollback_to(4).unwrap();
        let got = model.forward(&tokens[4..], &mut rolled).unwrap();
        let mut fresh = model.new_cache(10);
        model.forward(&tokens[..4], &mut fresh).unwrap();
        let want = model.forward(&tokens[4..], &mut fresh).unwrap();
        assert_eq!(got, want, "{name}");
        assert_eq!(rolled.len(), fresh.len(), "{name}");
        for l in 0..rolled.n_layers() {
            assert_eq!(rolled.k(l), fresh.k(l), "{name} layer {l}");
            assert_eq!(rolled.v(l), fresh.v(l), "{name} layer {l}");
        }
        // Rolling forward is refused.
        assert_eq!(
            rolled.rollback_to(7),
            Err(Error::RollForward {
                len: 6,
                requested: 7
            }),
            "{name}"
        );
    }
}

#[test]
fn the_trace_holds_every_hidden_state() {
    let model = gqa_model(11);
    let tokens = [4, 8, 15, 16, 23];
    let mut cache = model.new_cache(5);
    let trace = model.forward_traced(&tokens, &mut cache).unwrap();
    let c = model.config();
    assert_eq!(trace.hidden.len(), c.n_layers + 1);
    assert!(trace.hidden.iter().all(|h| h.dim() == (5, c.hidden_size)));
    // [0] is the embedding output: rows of the table.
    for (t, &tok) in tokens.iter().enumerate() {
        assert_eq!(
            trace.hidden[0].row(t),
            model.weights().embed.row(tok as usize)
        );
    }
    // Each layer changes the residual stream.
    assert!(trace.hidden.windows(2).all(|w| w[0] != w[1]));
    // The final norm and head of the last entry give the logits of forward.
    let last = &trace.hidden[c.n_layers];
    let w = model.weights();
    let normed =
        wavefront_reference::ops::rms_norm(last.view(), w.final_norm.view(), c.rms_norm_eps);
    assert_eq!(normed, trace.final_hidden);
    let logits = wavefront_reference::ops::linear(normed.view(), w.head().view(), None);
    assert_eq!(logits, trace.logits);
    let plain = model.forward(&tokens, &mut model.new_cache(5)).unwrap();
    assert_eq!(plain, trace.logits);
    assert_eq!(cache.len(), 5);
}

#[test]
fn a_tied_head_is_the_embedding_table() {
    let c = gqa_config();
    let tied = random_weights(&c, 12, false, true);
    let untied = Weights {
        lm_head: Some(tied.embed.clone()),
        ..tied.clone()
    };
    let run = |w: Weights| {
        let m = Model::new(c.clone(), w).unwrap();
        m.forward(&[1, 2, 3], &mut m.new_cache(3)).unwrap()
    };
    assert_eq!(run(tied), run(untied));
}

#[test]
fn inv_freq_follows_the_config() {
    let model = gqa_model(13);
    assert_eq!(model.inv_freq().len(), 4);
    assert_eq!(model.inv_freq()[0], 1.0);
}

fn shape_error(c: &Config, w: Weights) -> (String, Vec<usize>, Vec<usize>) {
    match Model::new(c.clone(), w) {
        Err(Error::Shape {
            tensor,
            expected,
            actual,
        }) => (tensor, expected, actual),
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn every_tensor_shape_is_checked_against_the_config() {
    let c = gqa_config();
    let good = random_weights(&c, 14, true, false);
    let mut rng = Rng::new(15);
    type Edit = fn(&mut Weights, Array2<f32>);
    let cases: [(&str, Edit); 6] = [
        ("embed", |w, a| w.embed = a),
        ("layers.1.wk", |w, a| w.layers[1].wk = a),
        ("layers.0.wo", |w, a| w.layers[0].wo = a),
        ("layers.1.w_down", |w, a| w.layers[1].w_down = a),
        ("layers.0.w_gate", |w, a| w.layers[0].w_gate = a),
        ("lm_head", |w, a| w.lm_head = Some(a)),
    ];
    for (name, edit) in cases {
        let mut w = good.clone();
        edit(&mut w, rng.array((3, 5), 1.0));
        let (tensor, _, actual) = shape_error(&c, w);
        assert_eq!((tensor.as_str(), actual), (name, vec![3, 5]));
    }
    let mut w = good.clone();
    w.layers[0].bk = Some(rng.array(7, 1.0));
    assert_eq!(
        shape_error(&c, w),
        ("layers.0.bk".into(), vec![16], vec![7])
    );
    let qk = random_weights_qk(&c, 14, false, false, true);
    let mut w = qk.clone();
    w.layers[1].k_norm = Some(rng.array(16, 1.0));
    assert_eq!(
        shape_error(&c, w),
        ("layers.1.k_norm".into(), vec![8], vec![16])
    );
    // QK-norm on queries without keys (or the reverse) is a missing tensor, not a shape.
    for (l, drop_q) in [(0, true), (1, false)] {
        let mut w = qk.clone();
        if drop_q {
            w.layers[l].q_norm = None;
        } else {
            w.layers[l].k_norm = None;
        }
        let lacking = format!("layers.{l}.{}", if drop_q { "q_norm" } else { "k_norm" });
        match Model::new(c.clone(), w) {
            Err(Error::MissingWeight { tensor, .. }) => assert_eq!(tensor, lacking),
            other => panic!("expected a missing {lacking}, got {other:?}"),
        }
    }
    let mut w = good.clone();
    w.layers[1].mlp_norm = rng.array(23, 1.0);
    assert_eq!(
        shape_error(&c, w),
        ("layers.1.mlp_norm".into(), vec![24], vec![23])
    );
    let mut w = good.clone();
    w.final_norm = rng.array(25, 1.0);
    assert_eq!(
        shape_error(&c, w),
        ("final_norm".into(), vec![24], vec![25])
    );
    let mut w = good;
    w.layers.pop();
    assert_eq!(shape_error(&c, w), ("layers".into(), vec![2], vec![1]));
}

#[test]
fn inconsistent_configs_are_rejected() {
    let w = random_weights(&gqa_config(), 16, false, false);
    type Edit = fn(&mut Config);
    fn llama3(high_freq_factor: f32) -> RopeScaling {
        RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor,
            original_max_position_embeddings: 64,
        }
    }
    let edits: [(&str, Edit); 9] = [
        ("n_kv_heads", |c| c.n_kv_heads = 3),
        ("head_dim", |c| c.head_dim = 7),
        ("vocab_size", |c| c.vocab_size = 0),
        ("rms_norm_eps", |c| c.rms_norm_eps = -1e-6),
        ("rope.theta", |c| c.rope.theta = f32::NAN),
        ("rope.scaling", |c| {
            c.rope.scaling = RopeScaling::FreqFactors(vec![1.0; 3])
        }),
        ("rope.scaling", |c| {
            c.rope.scaling = RopeScaling::FreqFactors(vec![1.0, 0.0, 1.0, 1.0])
        }),
        ("rope.scaling", |c| c.rope.scaling = llama3(1.0)),
        ("rope.scaling", |c| c.rope.scaling = llama3(f32::NAN)),
    ];
    // Valid llama3 parameters pass.
    let mut c = gqa_config();
    c.rope.scaling = llama3(4.0);
    assert!(Model::new(c, w.clone()).is_ok());
    for (field, edit) in edits {
        let mut c = gqa_config();
        edit(&mut c);
        match Model::new(c, w.clone()) {
            Err(Error::BadConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{field}: expected BadConfig, got {other:?}"),
        }
    }
}

/// Gemma 3's per-layer data: the window and the local RoPE apply to the sliding layers only,
/// the score scale follows query_pre_attn_scalar, and inconsistent features are typed errors.
#[test]
fn features_pick_each_layers_window_rope_and_scale() {
    use wavefront_reference::Features;
    let mut c = common::gqa_config(); // 2 layers, head_dim 8
    c.sliding_window = Some(4);
    c.features = Features {
        sliding_layers: Some(vec![true, false]),
        rope_local: Some(RopeConfig {
            theta: 10.0,
            scaling: RopeScaling::None,
        }),
        query_pre_attn_scalar: Some(16.0),
        ..Features::default()
    };
    c.validate().unwrap();
    assert_eq!((c.layer_window(0), c.layer_window(1)), (Some(4), None));
    assert_eq!(
        (c.layer_rope(0).theta, c.layer_rope(1).theta),
        (10.0, 10000.0)
    );
    assert_eq!(c.attn_scale(), 0.25);
    c.features.query_pre_attn_scalar = None;
    assert_eq!(c.attn_scale(), (8f64).powf(-0.5) as f32);
    let w = common::random_weights(&c, 3, false, false);
    let m = Model::new(c.clone(), w).unwrap();
    assert_ne!(m.layer_inv_freq(0), m.layer_inv_freq(1));
    assert_eq!(m.layer_inv_freq(1), m.inv_freq());

    let bad = |f: Features| {
        let mut c = c.clone();
        c.features = f;
        match c.validate() {
            Err(Error::BadConfig { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    };
    let wrong_len = Features {
        sliding_layers: Some(vec![true]),
        ..Features::default()
    };
    assert_eq!(bad(wrong_len), "features.sliding_layers");
    let nan_cap = Features {
        final_logit_softcap: Some(f32::NAN),
        ..Features::default()
    };
    assert_eq!(bad(nan_cap), "features.final_logit_softcap");
}
