//! The draft-model rule is exact (issue 13): a χ² goodness-of-fit test that the token emitted
//! at a drafted position — the draft `x ~ q` if [`judge`] keeps it, else its correction — is
//! distributed as the target's `p`, on a small vocabulary, over many coins, for several
//! shapes of (p, q) (mass of q where p has none, of p where q has none, disjoint and
//! overlapping supports, peaked against flat). The planted bugs of the rule
//! ([`SpecBug::RULE`]) must fail it.
//!
//! # The test and its threshold
//!
//! For a shape, N draws: `x = pick(q, c)` with a coin `c` of the drafter's stream, then
//! [`judge`] with the request's stream, both seeded (so the test is deterministic). With O_i
//! the count of token i and E_i = N·p_i, Pearson's statistic X² = Σ_{p_i > 0} (O_i − E_i)² / E_i
//! follows, under the hypothesis that the emitted token is distributed as p, asymptotically a
//! χ² distribution with m − 1 degrees of freedom (m = tokens with p_i > 0). The threshold is
//! the χ² quantile x with P(χ²_{m−1} > x) = α, α = [`FALSE_ALARM`] = 1e-6: a correct rule fails
//! one shape with probability about 1e-6 (over the choice of seed), all shapes together at most
//! their number times that (union bound). Every shape keeps E_i ≥ 50 for N = [`SAMPLES`], where
//! the asymptotic distribution is a close approximation. A token with p_i = 0 emitted even once
//! is a failure on its own (it cannot happen under the hypothesis). The quantile is computed
//! from the regularized upper incomplete gamma function, Q(k/2, x/2) = P(χ²_k > x), checked
//! in the tests against the closed form for even k and published table values.
//!
//! A bug that emits a distribution p' ≠ p moves X²'s mean from m − 1 to about
//! m − 1 + N·Σ (p'_i − p_i)² / p_i, so N decides the margin by which bugs fail.
//!
//! [`fit_generator`] runs the same test on the generator end to end (`Generator::with_draft`
//! on real engines): the joint distribution of the first two tokens of sampled generations
//! against the target's, computed by plain forwards.

use serde::Serialize;
use wavefront::backend::Backend;
use wavefront::sampler::{distribution, pick, CoinRng};
use wavefront::speculative::rule::{draft_seed, judge, Verdict};
use wavefront::speculative::{DraftParams, SpecBug};
use wavefront::{Engine, GenerationRequest, Generator, Logits, Result, SamplingParams};

/// The false-alarm probability of one shape's test.
pub const FALSE_ALARM: f64 = 1e-6;
/// Draws per shape.
pub const SAMPLES: usize = 400_000;
/// The vocabulary of the shapes.
pub const VOCAB: usize = 12;

/// A target distribution `p` and a drafter distribution `q` over [`VOCAB`] tokens.
#[derive(Debug, Clone)]
pub struct RuleShape {
    pub name: &'static str,
    pub p: Vec<f32>,
    pub q: Vec<f32>,
}

/// `w` normalised (in f64, rounded once to f32).
fn norm(w: &[f64]) -> Vec<f32> {
    let s: f64 = w.iter().sum();
    w.iter().map(|&v| (v / s) as f32).collect()
}

/// The shapes the test runs, each with every p_i > 0 at least 1/8000 (E_i ≥ 50 at N = 400k).
pub fn shapes() -> Vec<RuleShape> {
    let ramp = |i: usize| 1.0 + i as f64;
    let geo = |i: usize| 0.7f64.powi(i as i32);
    let shape = |name, p: Vec<f64>, q: Vec<f64>| RuleShape {
        name,
        p: norm(&p),
        q: norm(&q),
    };
    vec![
        shape(
            "q has mass where p has none",
            (0..VOCAB)
                .map(|i| if i < 4 { 0.0 } else { ramp(i) })
                .collect(),
            vec![1.0; VOCAB],
        ),
        shape(
            "p has mass where q has none",
            vec![1.0; VOCAB],
            (0..VOCAB)
                .map(|i| if i < 6 { geo(i) } else { 0.0 })
                .collect(),
        ),
        shape(
            "overlapping supports",
            (0..VOCAB)
                .map(|i| if i < 8 { ramp(i) } else { 0.0 })
                .collect(),
            (0..VOCAB)
                .map(|i| if i >= 4 { ramp(VOCAB - i) } else { 0.0 })
                .collect(),
        ),
        shape(
            "disjoint supports",
            (0..VOCAB)
                .map(|i| if i < 6 { ramp(i) } else { 0.0 })
                .collect(),
            (0..VOCAB).map(|i| if i >= 6 { 1.0 } else { 0.0 }).collect(),
        ),
        shape(
            "peaked p, flat q",
            (0..VOCAB).map(geo).collect(),
            (0..VOCAB).map(|i| 1.0 + 0.1 * i as f64).collect(),
        ),
        shape(
            "flat p, peaked q",
            (0..VOCAB).map(|i| 1.0 + 0.1 * i as f64).collect(),
            (0..VOCAB).map(|i| geo(VOCAB - 1 - i)).collect(),
        ),
        shape(
            "close p and q",
            (0..VOCAB).map(|i| ramp(i) + 2.0).collect(),
            (0..VOCAB).map(|i| ramp(i) * 1.25).collect(),
        ),
    ]
}

/// One shape's test.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    pub shape: String,
    pub samples: usize,
    /// m − 1.
    pub df: usize,
    pub threshold: f64,
    /// Pearson's X² over the tokens with p_i > 0.
    pub statistic: f64,
    /// Emissions of tokens with p_i = 0.
    pub impossible: usize,
    /// Draws whose draft was kept.
    pub accepted: usize,
}

impl Fit {
    pub fn pass(&self) -> bool {
        self.impossible == 0 && self.statistic <= self.threshold
    }
}

/// Runs `samples` draws of `shape` through the rule (with `planted`), coins from `seed`, and
/// tests the emitted tokens' counts against p.
pub fn fit(shape: &RuleShape, samples: usize, seed: u64, planted: Option<SpecBug>) -> Result<Fit> {
    let mut drafter = CoinRng::new(draft_seed(seed));
    let mut rng = CoinRng::new(seed);
    let mut counts = vec![0usize; shape.p.len()];
    let mut accepted = 0;
    for _ in 0..samples {
        let x = pick(&shape.q, drafter.coin()) as u32;
        let emitted = match judge(&shape.p, &shape.q, x, &mut rng, planted)? {
            Verdict::Accept => {
                accepted += 1;
                x
            }
            Verdict::Reject(t) => t,
        };
        counts[emitted as usize] += 1;
    }
    let p: Vec<f64> = shape.p.iter().map(|&v| v as f64).collect();
    let (statistic, df, impossible) = pearson(&counts, &p);
    Ok(Fit {
        shape: shape.name.into(),
        samples,
        df,
        threshold: chi2_quantile(df, FALSE_ALARM),
        statistic,
        impossible,
        accepted,
    })
}

/// Pearson's X² of `counts` against the probabilities `p` (summing to 1), its degrees of
/// freedom, and the draws in cells of probability 0. Cells expecting fewer than 5 draws are
/// pooled into one (so that every cell of the statistic expects at least 5, the usual
/// condition for its χ² approximation); the pool joins the smallest other cell if it alone
/// expects fewer than 5.
pub fn pearson(counts: &[usize], p: &[f64]) -> (f64, usize, usize) {
    let n: usize = counts.iter().sum();
    let mut cells: Vec<(f64, f64)> = Vec::new(); // (observed, expected)
    let (mut pool_o, mut pool_e, mut impossible) = (0.0, 0.0, 0);
    for (&o, &pi) in counts.iter().zip(p) {
        let e = n as f64 * pi;
        if pi <= 0.0 {
            impossible += o;
        } else if e < 5.0 {
            pool_o += o as f64;
            pool_e += e;
        } else {
            cells.push((o as f64, e));
        }
    }
    if pool_e > 0.0 {
        if pool_e < 5.0 && !cells.is_empty() {
            let i = (0..cells.len())
                .min_by(|&a, &b| cells[a].1.total_cmp(&cells[b].1))
                .unwrap_or(0);
            cells[i].0 += pool_o;
            cells[i].1 += pool_e;
        } else {
            cells.push((pool_o, pool_e));
        }
    }
    let statistic = cells.iter().map(|(o, e)| (o - e).powi(2) / e).sum();
    (statistic, cells.len().saturating_sub(1).max(1), impossible)
}

/// The generator's draft-model speculation end to end: `samples` generations (seeds 0, 1, …)
/// of `prompt` on `engine` drafted by `draft` with k = 1 under `sampling` (penalties over the
/// whole context), each to its second token — the first drawn from the prefill's logits, the
/// second from the first verification (the draft kept, or the correction). The joint
/// distribution of the two tokens must be the target's, P(t1, t2) = p0(t1) · p1(t2 | t1), each
/// factor computed by a plain forward of the target and the sampler's `distribution`: the
/// rows, histories and coins the generator feeds the rule are checked with it. `sampling`
/// should keep few tokens (top-k) so that the cells are few.
pub fn fit_generator<B: Backend>(
    engine: &Engine<B>,
    draft: &Engine<B>,
    prompt: &[u32],
    sampling: SamplingParams,
    samples: usize,
    planted: Option<SpecBug>,
) -> Result<Fit> {
    let vocab = engine.config().vocab_size;
    let request = |seed| GenerationRequest {
        max_tokens: 3,
        sampling,
        seed,
        repeat_last_n: 0,
        context: Some(prompt.len() + 4),
        ..GenerationRequest::new(prompt.to_vec())
    };
    // The exact joint distribution over (t1, t2), flattened t1 · vocab + t2.
    let last_row = |tokens: &[u32]| -> Result<Vec<f32>> {
        let mut seq = engine.new_sequence(tokens.len() + 1)?;
        engine.forward(&mut seq, tokens, Logits::Last)?;
        let logits = engine.last_logits(&seq)?;
        distribution(&logits, &sampling, tokens)
    };
    let p0 = last_row(prompt)?;
    let mut joint = vec![0.0f64; vocab * vocab];
    for (t1, &a) in p0.iter().enumerate().filter(|(_, &a)| a > 0.0) {
        let mut context = prompt.to_vec();
        context.push(t1 as u32);
        for (t2, &b) in last_row(&context)?.iter().enumerate() {
            joint[t1 * vocab + t2] = a as f64 * b as f64;
        }
    }
    let (mut counts, mut accepted) = (vec![0usize; vocab * vocab], 0);
    for seed in 0..samples as u64 {
        let params = DraftParams {
            planted,
            ..DraftParams::new(1)
        };
        let mut g = Generator::new(engine, None, request(seed))?.with_draft(draft, params)?;
        g.step()?;
        g.step()?;
        let t = g.generated();
        let stats = g.spec_stats().unwrap_or_default();
        accepted += stats.accepted;
        match (t.first(), t.get(1), stats.drafted) {
            (Some(&a), Some(&b), 1) => counts[a as usize * vocab + b as usize] += 1,
            _ => {
                return Err(wavefront::Error::InvalidRequest(format!(
                    "seed {seed}: {t:?} after a verification of {} drafts, not two tokens \
                     after one",
                    stats.drafted
                )))
            }
        }
    }
    let (statistic, df, impossible) = pearson(&counts, &joint);
    Ok(Fit {
        shape: format!(
            "generator, k = 1, {} cells with mass",
            joint.iter().filter(|&&p| p > 0.0).count()
        ),
        samples,
        df,
        threshold: chi2_quantile(df, FALSE_ALARM),
        statistic,
        impossible,
        accepted,
    })
}

/// A markdown table of fits, with a label (the planted bug or "true rule").
pub fn markdown(label: &str, fits: &[Fit]) -> String {
    let mut s = format!(
        "#### draft-model rule, χ² goodness of fit: {label}\n\n| shape | draws | kept | df | \
         threshold (α = {FALSE_ALARM:e}) | X² | p = 0 emitted | result |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n"
    );
    for f in fits {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.2} | {:.2} | {} | {} |\n",
            f.shape,
            f.samples,
            f.accepted,
            f.df,
            f.threshold,
            f.statistic,
            f.impossible,
            if f.pass() { "pass" } else { "FAIL" }
        ));
    }
    s
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, 9 terms; relative error below 1e-14).
pub fn ln_gamma(x: f64) -> f64 {
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    let x = x - 1.0;
    let t = x + 7.5;
    let a = C[1..]
        .iter()
        .enumerate()
        .fold(C[0], |a, (i, &c)| a + c / (x + 1.0 + i as f64));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a), a > 0, x ≥ 0:
/// by its series below x = a + 1, by its continued fraction (modified Lentz) above.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    let front = (-x + a * x.ln() - ln_gamma(a)).exp();
    if x < a + 1.0 {
        // P(a, x) = front · Σ_n x^n / (a (a+1) … (a+n))
        let (mut term, mut sum, mut ap) = (1.0 / a, 1.0 / a, a);
        for _ in 0..10_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        1.0 - front * sum
    } else {
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..10_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < 1e-16 {
                break;
            }
        }
        front * h
    }
}

/// P(χ²_df > x).
pub fn chi2_survival(df: usize, x: f64) -> f64 {
    gamma_q(df as f64 / 2.0, x / 2.0)
}

/// The x with P(χ²_df > x) = alpha (bisection to f64 resolution), df ≥ 1, alpha in (0, 1).
pub fn chi2_quantile(df: usize, alpha: f64) -> f64 {
    let mut hi = df as f64 + 10.0;
    while chi2_survival(df, hi) > alpha {
        hi *= 2.0;
    }
    let mut lo = 0.0;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if chi2_survival(df, mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}
