//! `embedding`: rows of a table in f32/f16/bf16, widened to f32, or in a GGUF block type,
//! dequantized (exactly: the reference gets the dequantized table).

use ndarray::Array2;
use proptest::prelude::*;
use wavefront::backend::{Backend, EmbeddingParams};
use wavefront::{DType, Result};
use wavefront_reference::ops;

use super::Check;
use crate::compare::compare;
use crate::harness::{block_values, guarded, read_guarded, rounded, upload, Rng};
use crate::tolerance::{tolerance, Kind, Tolerance};

#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingCase {
    pub vocab: usize,
    pub hidden: usize,
    pub n_tokens: usize,
    pub dtype: DType,
    /// The f32 factor of each row (Gemma's √hidden; 1.0 unscaled).
    pub scale: f32,
    pub seed: u64,
}

impl EmbeddingCase {
    pub fn name(&self) -> String {
        let mut s = format!(
            "vocab={},hidden={},tokens={},table={}",
            self.vocab, self.hidden, self.n_tokens, self.dtype
        );
        if self.scale != 1.0 {
            s.push_str(&format!(",scale={}", self.scale));
        }
        s
    }

    pub fn tolerance(&self) -> Tolerance {
        tolerance(Kind::Copy)
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let (table, t) = if self.dtype.is_quantized() {
            let (bytes, values) = block_values(self.dtype, self.vocab * self.hidden, 1.0, &mut rng);
            (values, b.upload(self.dtype, &bytes)?)
        } else {
            let table = rounded(self.dtype, rng.values(self.vocab * self.hidden, 1.0));
            let t = upload(b, self.dtype, &table)?;
            (table, t)
        };
        // Include the first and last ids: off-by-one row arithmetic shows there.
        let mut tokens: Vec<u32> = (0..self.n_tokens)
            .map(|_| rng.below(self.vocab) as u32)
            .collect();
        tokens[0] = (self.vocab - 1) as u32;
        if self.n_tokens > 1 {
            tokens[1] = 0;
        }
        let n = self.n_tokens * self.hidden;
        let mut out = guarded(b, DType::F32, n)?;
        let p = EmbeddingParams {
            vocab: self.vocab,
            hidden: self.hidden,
            scale: self.scale,
        };
        b.embedding(&t, &tokens, &mut out, p)?;
        let got = match read_guarded(b, &out, n)? {
            Ok(v) => v,
            Err(fail) => return Ok(vec![Check::new("out", fail)]),
        };
        let table = Array2::from_shape_vec((self.vocab, self.hidden), table).expect("sized above");
        let want = ops::embedding(table.view(), &tokens)
            .expect("tokens are in range")
            .mapv(|v| v * self.scale);
        let tol = self.tolerance().nmse;
        let mut checks = vec![Check::new(
            "out",
            compare(want.as_slice().expect("standard layout"), &got, tol),
        )];
        // The decode step's form: the row of the step's token (the context's last, read on the
        // device), with the same scale.
        let mut step = b.new_step(self.vocab, self.n_tokens)?;
        b.reset_step(&mut step, &tokens, 0)?;
        let mut one = guarded(b, DType::F32, self.hidden)?;
        b.embedding_step(&t, &step, &mut one, p)?;
        let last = want.row(self.n_tokens - 1).to_vec();
        checks.push(Check::new(
            "step",
            match read_guarded(b, &one, self.hidden)? {
                Ok(got) => compare(&last, &got, tol),
                Err(fail) => fail,
            },
        ));
        Ok(checks)
    }
}

pub fn grid() -> Vec<EmbeddingCase> {
    let mut g = Vec::new();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        // hidden 13: the first row is aligned and ends in a scalar tail, the next rows start
        // off 16 bytes (the scalar path); hidden 5 is shorter than a 16-bit vector.
        for (vocab, hidden, n_tokens) in [
            (97, 64, 1),
            (97, 80, 3),
            (1000, 576, 113),
            (97, 13, 3),
            (31, 5, 2),
        ] {
            g.push(EmbeddingCase {
                vocab,
                hidden,
                n_tokens,
                dtype,
                scale: 1.0,
                seed: 11,
            });
        }
        // Scaled (Gemma: √hidden): the vector, tail and scalar paths.
        for (vocab, hidden, n_tokens) in [(97, 640, 3), (97, 13, 3)] {
            g.push(EmbeddingCase {
                vocab,
                hidden,
                n_tokens,
                dtype,
                scale: (hidden as f32).sqrt(),
                seed: 12,
            });
        }
    }
    // Block types: rows of whole blocks (256 elements: a K-quant super-block, eight 32-blocks),
    // the first and last ids among them.
    for dtype in DType::WEIGHT_BLOCKS {
        for scale in [1.0, 640f32.sqrt()] {
            g.push(EmbeddingCase {
                vocab: 37,
                hidden: 512,
                n_tokens: 5,
                dtype,
                scale,
                seed: 11,
            });
        }
    }
    g
}

pub fn strategy() -> impl Strategy<Value = EmbeddingCase> {
    (
        2usize..300,
        1usize..200,
        1usize..40,
        prop_oneof![Just(DType::F32), Just(DType::F16), Just(DType::BF16)],
        prop_oneof![Just(1.0f32), Just(0.1), Just(25.3)],
        any::<u64>(),
    )
        .prop_map(
            |(vocab, hidden, n_tokens, dtype, scale, seed)| EmbeddingCase {
                vocab,
                hidden,
                n_tokens,
                dtype,
                scale,
                seed,
            },
        )
}
