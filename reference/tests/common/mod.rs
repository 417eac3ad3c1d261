//! Small models with seeded random weights (never zeros) for the model-level tests.

#![allow(dead_code)]

use ndarray::{Array, Array1, Array2, Dimension, ShapeBuilder};
use wavefront_reference::{
    Config, Features, LayerWeights, Model, RopeConfig, RopeScaling, Weights,
};

/// SplitMix64: a seeded stream of uniform numbers in [-1, 1).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn array<D: Dimension, Sh: ShapeBuilder<Dim = D>>(
        &mut self,
        shape: Sh,
        scale: f32,
    ) -> Array<f32, D> {
        Array::from_shape_simple_fn(shape, || scale * self.uniform())
    }

    pub fn tokens(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n)
            .map(|_| (self.next_u64() % vocab as u64) as u32)
            .collect()
    }
}

/// 4 query heads on 2 KV heads; head_dim 8, so q_dim (32) differs from hidden (24).
pub fn gqa_config() -> Config {
    Config {
        vocab_size: 50,
        hidden_size: 24,
        intermediate_size: 40,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-5,
        rope: RopeConfig {
            theta: 10000.0,
            scaling: RopeScaling::None,
        },
        sliding_window: None,
        features: Features::default(),
    }
}

/// Weights of the right shapes; linear weights scaled by 1/sqrt(fan_in), norms near 1.
pub fn random_weights(c: &Config, seed: u64, bias: bool, tied: bool) -> Weights {
    random_weights_qk(c, seed, bias, tied, false)
}

/// [`random_weights`], then with `qk_norm` each layer's Qwen3 `q_norm` and `k_norm` gains
/// (head_dim, near 1) drawn from the same stream after everything else, so the other tensors
/// are the same as without.
pub fn random_weights_qk(c: &Config, seed: u64, bias: bool, tied: bool, qk_norm: bool) -> Weights {
    random_weights_family(c, seed, bias, tied, qk_norm, false)
}

/// [`random_weights_qk`], then with `post_norms` each layer's Gemma post-attention and
/// post-MLP gains (hidden, near 1) drawn after everything else, layer by layer.
pub fn random_weights_family(
    c: &Config,
    seed: u64,
    bias: bool,
    tied: bool,
    qk_norm: bool,
    post_norms: bool,
) -> Weights {
    let mut r = Rng::new(seed);
    let (h, i, v, q, kv) = (
        c.hidden_size,
        c.intermediate_size,
        c.vocab_size,
        c.q_dim(),
        c.kv_dim(),
    );
    let lin = |r: &mut Rng, out: usize, inp: usize| -> Array2<f32> {
        r.array((out, inp), 1.0 / (inp as f32).sqrt())
    };
    let norm = |r: &mut Rng| -> Array1<f32> { r.array(h, 0.2) + 1.0 };
    let layers = (0..c.n_layers)
        .map(|_| LayerWeights {
            attn_norm: norm(&mut r),
            wq: lin(&mut r, q, h),
            wk: lin(&mut r, kv, h),
            wv: lin(&mut r, kv, h),
            bq: bias.then(|| r.array(q, 0.5)),
            bk: bias.then(|| r.array(kv, 0.5)),
            bv: bias.then(|| r.array(kv, 0.5)),
            q_norm: None,
            k_norm: None,
            wo: lin(&mut r, h, q),
            post_attn_norm: None,
            mlp_norm: norm(&mut r),
            w_gate: lin(&mut r, i, h),
            w_up: lin(&mut r, i, h),
            w_down: lin(&mut r, h, i),
            post_mlp_norm: None,
        })
        .collect();
    let mut w = Weights {
        embed: r.array((v, h), 1.0),
        layers,
        final_norm: norm(&mut r),
        lm_head: (!tied).then(|| lin(&mut r, v, h)),
    };
    if qk_norm {
        for lw in &mut w.layers {
            lw.q_norm = Some(r.array(c.head_dim, 0.2) + 1.0);
            lw.k_norm = Some(r.array(c.head_dim, 0.2) + 1.0);
        }
    }
    if post_norms {
        for lw in &mut w.layers {
            lw.post_attn_norm = Some(norm(&mut r));
            lw.post_mlp_norm = Some(norm(&mut r));
        }
    }
    w
}

pub fn gqa_model(seed: u64) -> Model {
    let c = gqa_config();
    let w = random_weights(&c, seed, false, false);
    Model::new(c, w).expect("valid shapes")
}

/// Largest |a - b| relative to the largest |a|.
pub fn rel_max_diff<D: Dimension>(a: &Array<f32, D>, b: &Array<f32, D>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}
