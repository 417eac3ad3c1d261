//! Random models: the real architectures' shapes with seeded random weights (never zeros),
//! for benchmarks at sizes no fixture has and for tests that need a model but no file.

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;

use super::{Format, LoadedModel};
use crate::config::{Activation, Arch, ModelConfig};
use crate::error::{Error, Result};
use crate::tensor::{DType, HostTensor, Storage};

/// Shapes of real models, for benchmarks with random weights.
pub const SHAPES: [&str; 3] = ["smollm2-135m", "llama-3.2-1b", "llama-3.1-8b"];

/// The architecture of a named real model.
pub fn shape(name: &str) -> Result<ModelConfig> {
    let llama = |hidden, inter, layers, heads, kv, head_dim, vocab, theta, ctx, tie| ModelConfig {
        arch: Arch::Llama,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        n_layers: layers,
        n_heads: heads,
        n_kv_heads: kv,
        head_dim,
        rms_norm_eps: 1e-5,
        rope_theta: theta,
        rope_scaling: None,
        rope_freq_factors: None,
        rope_longrope: None,
        max_position_embeddings: ctx,
        tie_word_embeddings: tie,
        attention_bias: false,
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
    };
    match name {
        "smollm2-135m" => Ok(llama(576, 1536, 30, 9, 3, 64, 49152, 100000.0, 8192, true)),
        "llama-3.2-1b" => Ok(llama(
            2048, 8192, 16, 32, 8, 64, 128256, 500000.0, 131072, true,
        )),
        "llama-3.1-8b" => Ok(llama(
            4096, 14336, 32, 32, 8, 128, 128256, 500000.0, 131072, false,
        )),
        other => Err(Error::InvalidRequest(format!(
            "unknown model shape `{other}`; known: {}",
            SHAPES.join(", ")
        ))),
    }
}

/// Values are uniform in ±[0.1·scale, scale] with a random sign: never zero, so unwritten or
/// mis-indexed outputs show. Matrices use `scale = 1/√in_features` (activations stay O(1));
/// norm weights are 1 ± 0.1. With a GGUF block type as `dtype`, every matrix is random valid
/// blocks of it (`quants::random_blocks`, values up to the same scale) — check
/// [`quantizable`] first: a matrix whose rows are not whole blocks stays f32.
pub fn random_model(config: ModelConfig, seed: u64, dtype: DType) -> LoadedModel {
    let list = config.expected_tensors();
    // One seeded stream per tensor, generated in parallel (an 8B model is 8·10⁹ draws).
    let made: Vec<(String, HostTensor)> = list
        .into_par_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let t = random_tensor(
                &name,
                shape,
                seed.wrapping_add((i as u64).wrapping_mul(0x9E37_79B9)),
                dtype,
            );
            (name, t)
        })
        .collect();
    LoadedModel {
        path: format!("<random model, seed {seed}>").into(),
        format: Format::Random,
        config,
        tensors: made.into_iter().collect::<BTreeMap<_, _>>(),
        tokenizer: None,
    }
}

/// Whether every matrix of `config` has rows of whole `dtype` blocks (a plain dtype: always),
/// or the message saying which does not.
pub fn quantizable(config: &ModelConfig, dtype: DType) -> std::result::Result<(), String> {
    let be = dtype.block_elems();
    for (name, shape) in config.expected_tensors() {
        let row = *shape.last().unwrap_or(&1);
        if crate::model::is_matrix(&name) && row % be != 0 {
            return Err(format!(
                "{dtype} holds rows in {be}-element blocks; {name} has rows of {row}"
            ));
        }
    }
    Ok(())
}

/// `n` seeded values in ±[0.1, 1] (never zero).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = crate::sampler::CoinRng::new(seed);
    (0..n).map(|_| rng.never_zero(1.0)).collect()
}

fn random_tensor(name: &str, shape: Vec<usize>, seed: u64, dtype: DType) -> HostTensor {
    let mut rng = crate::sampler::CoinRng::new(seed);
    let n: usize = shape.iter().product();
    let is_norm = name.ends_with("norm.weight");
    let scale = if is_norm {
        0.1
    } else {
        1.0 / (*shape.last().unwrap_or(&1) as f32).sqrt()
    };
    let row = *shape.last().unwrap_or(&1);
    if dtype.is_quantized()
        && crate::model::is_matrix(name)
        && row.is_multiple_of(dtype.block_elems())
    {
        let bytes =
            crate::formats::quants::random_blocks(dtype, n / dtype.block_elems(), scale, || {
                rng.next_u64()
            });
        return HostTensor {
            name: name.to_string(),
            dtype,
            shape,
            storage: Storage::Owned(Arc::new(bytes)),
        };
    }
    let dtype = if matches!(dtype, DType::F16 | DType::BF16) {
        dtype
    } else {
        DType::F32
    };
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let v = rng.never_zero(scale);
            if is_norm {
                1.0 + v
            } else {
                v
            }
        })
        .collect();
    let bytes = crate::tensor::encode_f32(dtype, &values).expect("F32, F16 or BF16");
    HostTensor {
        name: name.to_string(),
        dtype,
        shape,
        storage: Storage::Owned(Arc::new(bytes)),
    }
}
