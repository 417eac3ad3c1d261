//! `sample`: the same logits and the same coins must give the same ids as the reference
//! sampler, for every filter and their combination, on flat, tied, peaked and huge logits.

use proptest::prelude::*;
use wavefront::backend::Backend;
use wavefront::{DType, Result, SamplingParams};
use wavefront_reference::sampler as rs;

use super::Check;
use crate::compare::compare_ids;
use crate::harness::{upload, Rng};
use crate::tolerance::Tolerance;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Uniform magnitudes up to 3.
    Flat,
    /// Rounded to multiples of 0.5: many exact ties (boundaries of top-k and top-p).
    Ties,
    /// One logit far above the rest.
    Peaked,
    /// Magnitudes up to 1e4: exp overflows without max subtraction.
    Huge,
    /// One NaN among finite logits: every sampler must refuse the row.
    WithNan,
    /// One +inf: refused.
    WithPosInf,
    /// Every logit -inf: refused.
    AllNegInf,
    /// Magnitudes up to 3.3e38: a penalty below 1 overflows history ids to +inf (refused).
    NearMax,
    /// Every logit at or below -5e37: a large penalty takes the history's ids to -inf (all of
    /// them, when the history covers the vocabulary: the reference then draws id 0).
    VeryNegative,
}

impl Logits {
    /// Logits no sampler may sample from: the backend must return an error, as the reference.
    pub fn is_invalid(self) -> bool {
        matches!(
            self,
            Logits::WithNan | Logits::WithPosInf | Logits::AllNegInf
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SampleCase {
    pub vocab: usize,
    pub logits: Logits,
    pub params: SamplingParams,
    pub history_len: usize,
    /// Logits rows in the tensor; the case samples from the last.
    pub rows: usize,
    pub seed: u64,
}

pub fn to_reference(p: &SamplingParams) -> rs::SamplingParams {
    rs::SamplingParams {
        temperature: p.temperature,
        top_k: p.top_k,
        top_p: p.top_p,
        min_p: p.min_p,
        repeat_penalty: p.repeat_penalty,
        presence_penalty: p.presence_penalty,
        frequency_penalty: p.frequency_penalty,
    }
}

impl SampleCase {
    pub fn name(&self) -> String {
        let p = &self.params;
        format!(
            "vocab={},{:?},t={},k={},p={},minp={},pen={},{}hist={}",
            self.vocab,
            self.logits,
            p.temperature,
            p.top_k,
            p.top_p,
            p.min_p,
            p.repeat_penalty,
            if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
                format!("pres={},freq={},", p.presence_penalty, p.frequency_penalty)
            } else {
                String::new()
            },
            self.history_len
        )
    }

    pub fn tolerance(&self) -> Tolerance {
        Tolerance {
            nmse: 0.0,
            reason: "same logits, same coin: the same id (the sampler is deterministic)".into(),
        }
    }

    fn make_logits(&self, rng: &mut Rng) -> Vec<f32> {
        let mut l = rng.values(self.vocab, 3.0);
        match self.logits {
            Logits::Flat => {}
            Logits::Ties => l.iter_mut().for_each(|x| *x = (*x * 2.0).round() / 2.0),
            Logits::Peaked => {
                let i = rng.below(self.vocab);
                l[i] += 12.0;
            }
            Logits::Huge => l.iter_mut().for_each(|x| *x *= 3000.0),
            Logits::WithNan => l[rng.below(self.vocab)] = f32::NAN,
            Logits::WithPosInf => l[rng.below(self.vocab)] = f32::INFINITY,
            Logits::AllNegInf => l.iter_mut().for_each(|x| *x = f32::NEG_INFINITY),
            Logits::NearMax => l.iter_mut().for_each(|x| *x *= 1.1e38),
            Logits::VeryNegative => l.iter_mut().for_each(|x| *x = -(x.abs() + 1.0) * 5e37),
        }
        l
    }

    /// `history_len` ids: mostly below the vocabulary, every fifth a repeat of the one before,
    /// every seventh outside it (the vocabulary itself, or past 2^31, which a kernel's i32 sees
    /// negative); the sampler ignores those and penalises a repeated id once.
    fn make_history(&self, rng: &mut Rng) -> Vec<u32> {
        let mut h: Vec<u32> = Vec::with_capacity(self.history_len);
        for i in 0..self.history_len {
            let id = match (i % 5, i % 7) {
                (_, 6) if i % 2 == 0 => self.vocab as u32,
                (_, 6) => u32::MAX - rng.below(4) as u32,
                (4, _) if i > 0 => h[i - 1],
                _ => rng.below(self.vocab) as u32,
            };
            h.push(id);
        }
        h
    }

    /// Coins at the reference's draw boundaries: for the first kept ids, `acc / total` (the
    /// coin where the pick steps from one id to the next) and its neighbouring f32s. A one-ulp
    /// change anywhere in the distribution (the exp, the order of a sum) moves some of these
    /// picks, so the ids comparison sees arithmetic, not only logic.
    fn boundary_coins(dist: &[f32]) -> Vec<f32> {
        let total: f32 = dist.iter().sum();
        let mut acc = 0.0f32;
        let mut coins = Vec::new();
        for &p in dist.iter().filter(|&&p| p > 0.0).take(6) {
            acc += p;
            let c = acc / total;
            let b = c.to_bits(); // c > 0: its neighbours are the adjacent bit patterns
            coins.extend([f32::from_bits(b - 1), c, f32::from_bits(b + 1)]);
        }
        coins.retain(|c| (0.0..1.0).contains(c));
        coins
    }

    pub fn run<B: Backend>(&self, b: &B) -> Result<Vec<Check>> {
        let mut rng = Rng::new(self.seed);
        let mut all = rng.values((self.rows - 1) * self.vocab, 1.0);
        let logits = self.make_logits(&mut rng);
        all.extend_from_slice(&logits);
        let history = self.make_history(&mut rng);
        let mut coins = vec![0.0f32, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999_999];
        coins.extend((0..8).map(|_| rng.unit()));
        let t = upload(b, DType::F32, &all)?;
        let rp = to_reference(&self.params);
        let Ok(dist) = rs::distribution(&logits, &rp, &history) else {
            // The reference refuses the row (NaN, +inf, all -inf, +inf under the penalty):
            // the backend must too, for every coin; no token is ever taken from such a row.
            let mut taken = Vec::new();
            for &coin in &coins {
                if let Ok(id) =
                    b.sample(&t, self.rows - 1, self.vocab, &self.params, &history, coin)
                {
                    taken.push((coin, id));
                }
            }
            let cmp = if taken.is_empty() {
                crate::compare::Comparison::exact()
            } else {
                crate::compare::Comparison::fail(format!(
                    "sampled from {:?} logits the reference refuses: (coin, id) {taken:?}",
                    self.logits
                ))
            };
            return Ok(vec![Check::new("refused", cmp)]);
        };
        assert!(
            !self.logits.is_invalid(),
            "the reference samples from {:?} logits",
            self.logits
        );
        coins.extend(Self::boundary_coins(&dist));
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for &coin in &coins {
            want.push(rs::pick(&dist, coin) as u32); // = rs::sample(&logits, &rp, &history, coin)
            got.push(b.sample(&t, self.rows - 1, self.vocab, &self.params, &history, coin)?);
        }
        Ok(vec![Check::new("ids", compare_ids(&want, &got))])
    }
}

pub fn settings() -> Vec<SamplingParams> {
    let d = SamplingParams::default();
    vec![
        SamplingParams::greedy(),
        SamplingParams {
            temperature: 0.7,
            ..d
        },
        SamplingParams { top_k: 5, ..d },
        SamplingParams { top_p: 0.9, ..d },
        SamplingParams { min_p: 0.1, ..d },
        SamplingParams {
            repeat_penalty: 1.3,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.1,
            ..d
        },
        // OpenAI's presence and frequency penalties, greedy (the argmax moves off repeated
        // ids) and sampled, with the repetition penalty and without.
        SamplingParams {
            presence_penalty: 0.7,
            frequency_penalty: 1.3,
            ..SamplingParams::greedy()
        },
        SamplingParams {
            temperature: 0.9,
            repeat_penalty: 1.2,
            presence_penalty: -0.4,
            frequency_penalty: 0.9,
            ..d
        },
    ]
}

pub fn grid() -> Vec<SampleCase> {
    let mut g = Vec::new();
    for logits in [Logits::Flat, Logits::Ties, Logits::Peaked, Logits::Huge] {
        for params in settings() {
            g.push(SampleCase {
                vocab: 1000,
                logits,
                params,
                history_len: 16,
                rows: 2,
                seed: 71,
            });
        }
    }
    g.push(SampleCase {
        vocab: 49152,
        logits: Logits::Flat,
        params: settings()[6],
        history_len: 64,
        rows: 1,
        seed: 72,
    });
    // Greedy (the device's argmax) on rows that break 16-byte alignment or end in a scalar
    // tail: vocab 1001, row 0 (aligned, tail of 1), row 1 (4004 bytes in: scalar); vocab 3
    // (shorter than a vector).
    for (vocab, rows) in [(1001, 1), (1001, 2), (3, 1)] {
        g.push(SampleCase {
            vocab,
            logits: Logits::Flat,
            params: SamplingParams::greedy(),
            history_len: 0,
            rows,
            seed: 73,
        });
    }
    let cli = settings()[6];
    let case = |vocab, logits, params, history_len, seed| SampleCase {
        vocab,
        logits,
        params,
        history_len,
        rows: 1,
        seed,
    };
    // Every path of the device sampler (sample_prep, sample_topk, sample_pick) at real sizes
    // and edges:
    // the CLI default at Llama 3's vocabulary (49152 above is SmolLM2's), and at the smallest;
    g.push(case(128_256, Logits::Flat, cli, 64, 75));
    g.push(case(1, Logits::Flat, cli, 3, 75));
    g.push(case(1, Logits::Flat, settings()[5], 3, 75));
    // an empty history with a penalty; the ties of Ties logits at the top-k boundary;
    g.push(case(1000, Logits::Flat, cli, 0, 76));
    g.push(case(
        1000,
        Logits::Ties,
        SamplingParams { top_k: 40, ..cli },
        16,
        76,
    ));
    // Llama 3's vocabulary with ties across chunks at the top-k boundary, and a top-k of 1500
    // (each chunk's candidates nearly all of its ids);
    g.push(case(
        128_256,
        Logits::Ties,
        SamplingParams { top_k: 40, ..cli },
        64,
        80,
    ));
    g.push(case(
        128_256,
        Logits::Flat,
        SamplingParams { top_k: 1500, ..cli },
        64,
        80,
    ));
    // top-k off with top-p on: the whole vocabulary is candidates, each placed at its rank
    // (1000 above), sorted in shared memory (1500) or, past 2048, in the workspace;
    let whole = SamplingParams { top_k: 0, ..cli };
    g.push(case(1500, Logits::Flat, whole, 16, 77));
    g.push(case(5000, Logits::Flat, whole, 16, 77));
    g.push(case(49152, Logits::Peaked, whole, 16, 77));
    // a penalty below 1 that overflows to +inf (refused), and one that takes every id of a
    // small vocabulary to -inf (the reference then draws 0) or some of them;
    let lift = SamplingParams {
        repeat_penalty: 0.5,
        ..cli
    };
    g.push(case(1000, Logits::NearMax, lift, 16, 78));
    g.push(case(
        1000,
        Logits::NearMax,
        SamplingParams {
            repeat_penalty: 0.5,
            ..SamplingParams::greedy()
        },
        16,
        78,
    ));
    let crush = SamplingParams {
        repeat_penalty: 1e30,
        ..cli
    };
    g.push(case(3, Logits::VeryNegative, crush, 16, 79));
    g.push(case(64, Logits::VeryNegative, crush, 16, 79));
    // Logits no sampler takes, greedy (the device's argmax) and sampled (the device's
    // sample_step).
    for logits in [Logits::WithNan, Logits::WithPosInf, Logits::AllNegInf] {
        for params in [SamplingParams::greedy(), settings()[6]] {
            g.push(SampleCase {
                vocab: 1001,
                logits,
                params,
                history_len: 0,
                rows: 2,
                seed: 74,
            });
        }
    }
    g
}

pub fn strategy() -> impl Strategy<Value = SampleCase> {
    (
        2usize..3000,
        prop_oneof![
            Just(Logits::Flat),
            Just(Logits::Ties),
            Just(Logits::Peaked),
            Just(Logits::Huge)
        ],
        0usize..7,
        0usize..40,
        1usize..3,
        any::<u64>(),
    )
        .prop_map(|(vocab, logits, s, history_len, rows, seed)| SampleCase {
            vocab,
            logits,
            params: settings()[s],
            history_len,
            rows,
            seed,
        })
}
