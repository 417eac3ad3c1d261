//! The reference model built from a loaded model: the engine owns file formats, the reference
//! receives plain arrays. Matrices take exactly the values an engine storing weights that way
//! uses (`wavefront::model::WeightStorage::values`): native block types dequantized, others
//! rounded to the weight dtype; norm weights and biases stay f32, as in the engine. With `F32`,
//! the reference sees the file's values unrounded.

use ndarray::{Array1, Array2};
use wavefront::config::{names, ModelConfig};
use wavefront::model::WeightStorage;
use wavefront::{Error, LoadedModel, Result};
use wavefront_reference as r;

pub fn reference_config(c: &ModelConfig) -> r::Config {
    let scaling = match (&c.rope_freq_factors, &c.rope_scaling) {
        _ if c.rope_longrope.is_some() => {
            let l = c.rope_longrope.clone().expect("checked");
            r::RopeScaling::LongRope {
                short_factor: l.short_factor,
                long_factor: l.long_factor,
                original_max_position_embeddings: l.original_max_position_embeddings,
                attention_factor: l.attention_factor,
            }
        }
        (Some(f), _) => r::RopeScaling::FreqFactors(f.clone()),
        (None, Some(s)) => r::RopeScaling::Llama3 {
            factor: s.factor,
            low_freq_factor: s.low_freq_factor,
            high_freq_factor: s.high_freq_factor,
            original_max_position_embeddings: s.original_max_position_embeddings,
        },
        (None, None) => r::RopeScaling::None,
    };
    r::Config {
        vocab_size: c.vocab_size,
        hidden_size: c.hidden_size,
        intermediate_size: c.intermediate_size,
        n_layers: c.n_layers,
        n_heads: c.n_heads,
        n_kv_heads: c.n_kv_heads,
        head_dim: c.head_dim,
        rms_norm_eps: c.rms_norm_eps,
        rope: r::RopeConfig {
            theta: c.rope_theta,
            scaling,
        },
        sliding_window: c.sliding_window,
        features: r::Features {
            activation: match c.activation {
                wavefront::config::Activation::Silu => r::Activation::Silu,
                wavefront::config::Activation::GeluTanh => r::Activation::GeluTanh,
            },
            embed_scale: c.embed_scale,
            query_pre_attn_scalar: c.query_pre_attn_scalar,
            attn_logit_softcap: c.attn_logit_softcap,
            final_logit_softcap: c.final_logit_softcap,
            sliding_layers: c.sliding_layers.clone(),
            rope_local: c.rope_local_theta.map(|theta| r::RopeConfig {
                theta,
                scaling: r::RopeScaling::None,
            }),
        },
    }
}

fn values(m: &LoadedModel, name: &str, storage: WeightStorage) -> Result<Vec<f32>> {
    storage.values(m.tensor(name)?)
}

fn matrix(m: &LoadedModel, name: &str, dt: WeightStorage) -> Result<Array2<f32>> {
    let t = m.tensor(name)?;
    let (rows, cols) = match t.shape[..] {
        [r, c] => (r, c),
        _ => {
            return Err(Error::ShapeMismatch {
                path: m.path.clone(),
                tensor: name.into(),
                expected: vec![0, 0],
                found: t.shape.clone(),
            })
        }
    };
    Ok(Array2::from_shape_vec((rows, cols), values(m, name, dt)?).expect("validated length"))
}

fn vector(m: &LoadedModel, name: &str, dt: WeightStorage) -> Result<Array1<f32>> {
    Ok(Array1::from(values(m, name, dt)?))
}

/// The reference model for `m`, with matrices as a backend storing them this way holds them
/// (a `DType`: every matrix converted to it; `WeightStorage::of(backend)`: native block types
/// kept, their values dequantized exactly).
pub fn reference_model(m: &LoadedModel, storage: impl Into<WeightStorage>) -> Result<r::Model> {
    let weight_dtype = storage.into();
    let c = &m.config;
    let mut layers = Vec::with_capacity(c.n_layers);
    for l in 0..c.n_layers {
        let n = |s: &str| names::layer(l, s);
        let bias = |s: &str| -> Result<Option<Array1<f32>>> {
            if c.attention_bias {
                Ok(Some(vector(m, &n(s), weight_dtype)?))
            } else {
                Ok(None)
            }
        };
        let optional = |present: bool, s: &str| -> Result<Option<Array1<f32>>> {
            if present {
                Ok(Some(vector(m, &n(s), weight_dtype)?))
            } else {
                Ok(None)
            }
        };
        let qk_norm = |s: &str| -> Result<Option<Array1<f32>>> {
            if c.qk_norm {
                Ok(Some(vector(m, &n(s), weight_dtype)?))
            } else {
                Ok(None)
            }
        };
        layers.push(r::weights::LayerWeights {
            attn_norm: vector(m, &n(names::ATTN_NORM), weight_dtype)?,
            wq: matrix(m, &n(names::WQ), weight_dtype)?,
            wk: matrix(m, &n(names::WK), weight_dtype)?,
            wv: matrix(m, &n(names::WV), weight_dtype)?,
            bq: bias(names::BQ)?,
            bk: bias(names::BK)?,
            bv: bias(names::BV)?,
            q_norm: qk_norm(names::Q_NORM)?,
            k_norm: qk_norm(names::K_NORM)?,
            wo: matrix(m, &n(names::WO), weight_dtype)?,
            post_attn_norm: optional(c.post_norms, names::POST_ATTN_NORM)?,
            mlp_norm: vector(m, &n(names::MLP_NORM), weight_dtype)?,
            w_gate: matrix(m, &n(names::GATE), weight_dtype)?,
            w_up: matrix(m, &n(names::UP), weight_dtype)?,
            w_down: matrix(m, &n(names::DOWN), weight_dtype)?,
            post_mlp_norm: optional(c.post_norms, names::POST_MLP_NORM)?,
        });
    }
    let weights = r::weights::Weights {
        embed: matrix(m, names::EMBED, weight_dtype)?,
        layers,
        final_norm: vector(m, names::FINAL_NORM, weight_dtype)?,
        lm_head: if c.tie_word_embeddings {
            None
        } else {
            Some(matrix(m, names::LM_HEAD, weight_dtype)?)
        },
    };
    r::Model::new(reference_config(c), weights)
        .map_err(|e| Error::InvalidRequest(format!("reference model: {e}")))
}
