//! Random models: the real architectures' shapes with seeded random weights (never zeros),
//! for benchmarks at sizes no fixture has and for tests that need a model but no file.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Format, LoadedModel};
use crate::config::ModelConfig;
use crate::tensor::{DType, HostTensor, Storage};

/// Values are uniform in ±[0.1·scale, scale] with a random sign: never zero, so unwritten or
/// mis-indexed outputs show. Matrices use `scale = 1/√in_features` (activations stay O(1));
/// norm weights are 1 ± 0.1.
pub fn random_model(config: ModelConfig, seed: u64, dtype: DType) -> LoadedModel {
    let mut rng = crate::sampler::CoinRng::new(seed);
    let mut tensors = BTreeMap::new();
    for (name, shape) in config.expected_tensors() {
        let n: usize = shape.iter().product();
        let is_norm = name.ends_with("norm.weight");
        let scale = if is_norm {
            0.1
        } else {
            1.0 / (*shape.last().unwrap_or(&1) as f32).sqrt()
        };
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            let r = rng.next_u64();
            let mag = scale * (0.1 + 0.9 * ((r >> 40) as f32 / (1u64 << 24) as f32));
            let v = if r & 1 == 0 { mag } else { -mag };
            values.push(if is_norm { 1.0 + v } else { v });
        }
        let bytes: Vec<u8> = match dtype {
            DType::F16 => values
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_bits().to_le_bytes())
                .collect(),
            DType::BF16 => values
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_bits().to_le_bytes())
                .collect(),
            _ => values.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        let dtype = if matches!(dtype, DType::F16 | DType::BF16) {
            dtype
        } else {
            DType::F32
        };
        let t = HostTensor {
            name: name.clone(),
            dtype,
            shape,
            storage: Storage::Owned(Arc::new(bytes)),
        };
        tensors.insert(name, t);
    }
    LoadedModel {
        path: format!("<random model, seed {seed}>").into(),
        format: Format::Random,
        config,
        tensors,
        tokenizer: None,
    }
}
