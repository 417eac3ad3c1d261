//! Speculative decoding with prompt lookup (issue 13): a drafter proposes the tokens that
//! followed the last n-gram where it occurred before in the prompt or the generated text, the
//! target model scores the last accepted token and the drafts in one forward (k + 1 rows), and
//! each row is sampled exactly as the plain decode would sample that position — the same coin
//! of the request's stream, the same penalty history — so a draft is kept only while it equals
//! the sampled token. The first sampled token that differs is the correction, and the KV cache
//! is rolled back past it ([`crate::kv_cache::KvCache::rollback_to`]). For a deterministic
//! drafter the output is therefore the plain run's token for token, greedy or sampled
//! (`conformance/src/speculative.rs` proves it on every fixture and SmolLM2).
//!
//! With a draft model ([`DraftParams`], `Generator::with_draft`) the drafts are sampled from a
//! second, smaller model with the same tokenizer, and a draft is kept by the accept/reject
//! rule of Leviathan et al. / Chen et al. ([`rule`], where the coin protocol is written down):
//! the output is distributed as the target's (greedy: it is the plain greedy output).

pub mod rule;

use std::time::Duration;

use crate::error::{Error, Result};
use crate::formats::LoadedModel;

/// The longest draft a verification takes (rows of one forward beside the last token).
pub const MAX_DRAFT: usize = 64;
/// The longest n-gram the drafter matches.
pub const MAX_NGRAM: usize = 16;

/// Prompt-lookup speculation's settings (`wavefront run --lookup N [--lookup-ngram M]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LookupParams {
    /// Most drafted tokens a verification scores (k), 1..=[`MAX_DRAFT`]; adaptive k stays at
    /// or below it.
    pub max_draft: usize,
    /// The drafter matches the last `ngram` tokens (then shorter suffixes, down to one token),
    /// 1..=[`MAX_NGRAM`].
    pub ngram: usize,
    /// Speculation turns itself off (plain decode for the rest of the generation) once the
    /// measured acceptance rate (accepted / drafted, a moving average over the verifications
    /// that drafted anything) falls below this, after [`WARMUP`] such verifications; in [0, 1]
    /// (0 = never for this reason; it also switches off when it measures slower than the
    /// plain steps, [`AdaptiveK`]).
    pub min_acceptance: f64,
    /// A planted bug for the conformance suite's own test (`conformance/src/planted.rs`):
    /// `None` outside it.
    #[doc(hidden)]
    pub planted: Option<SpecBug>,
}

/// Verifications with a draft before adaptive k may switch speculation off.
pub const WARMUP: usize = 8;

impl LookupParams {
    pub fn new(max_draft: usize) -> Self {
        LookupParams {
            max_draft,
            ngram: 3,
            min_acceptance: 0.1,
            planted: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        check_draft_limits("lookup", self.max_draft, self.min_acceptance)?;
        if !(1..=MAX_NGRAM).contains(&self.ngram) {
            return Err(Error::invalid_param(
                "lookup_ngram",
                self.ngram,
                format!("in 1..={MAX_NGRAM}"),
            ));
        }
        Ok(())
    }
}

/// Mistakes a speculative decoder could make, planted one at a time by the conformance suite
/// to show that its identity tests catch them.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecBug {
    /// A drafted token is accepted without comparing it to the sampled one.
    AcceptUnchecked,
    /// The KV rows of rejected drafts are kept (no rollback).
    NoRollback,
    /// Draft model: a draft is kept when p(x)/q(x) < coin (the comparison inverted).
    AcceptInverted,
    /// Draft model: the correction after a rejection is drawn from p, not from the residual
    /// norm(max(0, p − q)).
    ResampleFromTarget,
    /// Draft model: the correction walks the residual max(0, p − q) against the raw coin,
    /// without dividing by its mass.
    ResidualUnnormalised,
}

impl SpecBug {
    /// The draft-model rule's planted bugs ([`rule::judge`]), which the χ² test must catch.
    pub const RULE: [SpecBug; 3] = [
        SpecBug::AcceptInverted,
        SpecBug::ResampleFromTarget,
        SpecBug::ResidualUnnormalised,
    ];
}

/// Draft-model speculation's settings (`wavefront run --draft MODEL [--draft-k N]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DraftParams {
    /// Most tokens the draft model proposes a verification (k), 1..=[`MAX_DRAFT`]; adaptive k
    /// stays at or below it.
    pub max_draft: usize,
    /// As [`LookupParams::min_acceptance`].
    pub min_acceptance: f64,
    /// A planted bug for the conformance suite: `None` outside it.
    #[doc(hidden)]
    pub planted: Option<SpecBug>,
}

impl DraftParams {
    pub fn new(max_draft: usize) -> Self {
        DraftParams {
            max_draft,
            min_acceptance: 0.1,
            planted: None,
        }
    }

    pub fn validate(&self) -> Result<()> {
        check_draft_limits("draft_k", self.max_draft, self.min_acceptance)
    }
}

/// The checks both drafters' settings share: the draft length (named `k_name`, the flag that
/// sets it) and the acceptance floor.
fn check_draft_limits(k_name: &'static str, max_draft: usize, min_acceptance: f64) -> Result<()> {
    if !(1..=MAX_DRAFT).contains(&max_draft) {
        return Err(Error::invalid_param(
            k_name,
            max_draft,
            format!("in 1..={MAX_DRAFT} (drafted tokens a verification scores)"),
        ));
    }
    if !(0.0..=1.0).contains(&min_acceptance) {
        return Err(Error::invalid_param(
            "min_acceptance",
            min_acceptance,
            "in [0, 1] (0 = never off)",
        ));
    }
    Ok(())
}

/// Whether `draft` can draft for `target`: the same vocabulary size and, when the target
/// carries a tokenizer, the same tokenizer (every id the same token, the same BOS and EOS ids).
/// The error names both models and the first difference.
pub fn check_draft_model(target: &LoadedModel, draft: &LoadedModel) -> Result<()> {
    let refuse = |detail: String| {
        Err(Error::DraftMismatch {
            target: target.path.clone(),
            draft: draft.path.clone(),
            detail,
        })
    };
    let (tv, dv) = (target.config.vocab_size, draft.config.vocab_size);
    if tv != dv {
        return refuse(format!(
            "vocabulary size {dv}, the target's is {tv} (a draft must share the target's tokenizer)"
        ));
    }
    let (t, d) =
        match (&target.tokenizer, &draft.tokenizer) {
            (None, None) => return Ok(()),
            (Some(t), Some(d)) => (t, d),
            (Some(_), None) => return refuse(
                "it carries no tokenizer, the target does (it cannot be checked to be the same)"
                    .into(),
            ),
            (None, Some(_)) => return refuse("it carries a tokenizer, the target does not".into()),
        };
    if t.special.bos_token_id != d.special.bos_token_id {
        return refuse(format!(
            "BOS id {:?}, the target's is {:?}",
            d.special.bos_token_id, t.special.bos_token_id
        ));
    }
    if t.special.eos_token_ids != d.special.eos_token_ids {
        return refuse(format!(
            "end-of-sequence ids {:?}, the target's are {:?}",
            d.special.eos_token_ids, t.special.eos_token_ids
        ));
    }
    if t.vocab_size() != d.vocab_size() {
        return refuse(format!(
            "its tokenizer has {} tokens, the target's {}",
            d.vocab_size(),
            t.vocab_size()
        ));
    }
    if let Some(id) = (0..t.vocab_size() as u32).find(|&id| t.id_to_token(id) != d.id_to_token(id))
    {
        return refuse(format!(
            "token {id} is {:?}, the target's is {:?}",
            d.id_to_token(id),
            t.id_to_token(id)
        ));
    }
    Ok(())
}

/// Up to `max` tokens that followed the latest earlier occurrence of `context`'s last `ngram`
/// tokens (then of its last `ngram - 1`, …, down to 1); empty when none occurs or `max` is 0.
/// The suffix itself is not a match of itself; a match runs to the end of `context` at most.
pub fn lookup_draft(context: &[u32], ngram: usize, max: usize) -> Vec<u32> {
    let len = context.len();
    if max == 0 {
        return Vec::new();
    }
    for n in (1..=ngram.min(len.saturating_sub(1))).rev() {
        let suffix = &context[len - n..];
        // Latest start first: the most recent context predicts best.
        if let Some(start) = (0..len - n).rev().find(|&s| &context[s..s + n] == suffix) {
            let from = start + n;
            return context[from..(from + max).min(len)].to_vec();
        }
    }
    Vec::new()
}

/// Counts of a speculative generation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpecStats {
    /// Verification forwards (each emits at least one token).
    pub verifications: usize,
    /// Drafted tokens scored.
    pub drafted: usize,
    /// Drafted tokens accepted (equal to the sampled token).
    pub accepted: usize,
    /// Tokens the verifications gave (accepted drafts plus one sampled token each; those after
    /// an end-of-sequence token or a stop string are not emitted).
    pub tokens: usize,
    /// Whether adaptive k switched speculation off.
    pub switched_off: bool,
}

impl SpecStats {
    /// Counts a verification that scored `drafted` drafts and kept `accepted` of them (and
    /// gave one token more).
    pub fn record(&mut self, drafted: usize, accepted: usize) {
        self.verifications += 1;
        self.drafted += drafted;
        self.accepted += accepted;
        self.tokens += accepted + 1;
    }

    /// Accepted / drafted; `None` with nothing drafted.
    pub fn acceptance(&self) -> Option<f64> {
        (self.drafted > 0).then(|| self.accepted as f64 / self.drafted as f64)
    }

    /// Tokens per verification forward; `None` before the first.
    pub fn tokens_per_verification(&self) -> Option<f64> {
        (self.verifications > 0).then(|| self.tokens as f64 / self.verifications as f64)
    }
}

/// Adaptive draft length: k grows by 2 after a verification that accepted every draft and
/// shrinks by 1 after one that rejected some (within 1..=max), and speculation switches off
/// when it does not pay: once the moving acceptance rate is below `min_acceptance` after
/// [`WARMUP`] drafted verifications (a rejected draft costs a verification row and gains
/// nothing), or once, after [`WARMUP`] of each, the measured time a token of the verifications
/// that drafted is above that of the one-row steps that did not (the plain decode's cost: on a
/// backend where k rows cost about k decode steps, the CPU's, speculation is slower unless
/// nearly everything is accepted).
#[derive(Debug, Clone)]
pub struct AdaptiveK {
    max: usize,
    k: usize,
    min_acceptance: f64,
    /// Exponential moving average of accepted / drafted (weight 1/4 on the newest).
    rate: f64,
    drafted_steps: usize,
    /// Moving averages (weight 1/4) of the seconds a token costs with drafts and without, and
    /// how many steps of each were measured.
    spec_secs: f64,
    plain_secs: f64,
    plain_steps: usize,
    /// Draft lengths asked for ([`AdaptiveK::next_k`]).
    asked: usize,
    off: bool,
}

fn ema(old: f64, new: f64, n: usize) -> f64 {
    if n == 0 {
        new
    } else {
        0.75 * old + 0.25 * new
    }
}

impl AdaptiveK {
    pub fn new(params: &LookupParams) -> Self {
        Self::with_limits(params.max_draft, params.min_acceptance)
    }

    /// Draft lengths up to `max`, off below `min_acceptance` (as [`LookupParams`]' fields,
    /// and [`DraftParams`]').
    pub fn with_limits(max: usize, min_acceptance: f64) -> Self {
        AdaptiveK {
            max,
            k: max,
            min_acceptance,
            rate: 1.0,
            drafted_steps: 0,
            spec_secs: 0.0,
            plain_secs: 0.0,
            plain_steps: 0,
            asked: 0,
            off: false,
        }
    }

    /// The draft length to ask for now (0 once off).
    pub fn k(&self) -> usize {
        if self.off {
            0
        } else {
            self.k
        }
    }

    /// The draft length for the next verification: [`AdaptiveK::k`], except that every 4th
    /// is a one-row probe (0) until [`WARMUP`] one-row steps are measured, so that the plain
    /// cost is known even where the drafter always finds something.
    pub fn next_k(&mut self) -> usize {
        self.asked += 1;
        if self.plain_steps < WARMUP && self.asked.is_multiple_of(4) {
            0
        } else {
            self.k()
        }
    }

    pub fn is_off(&self) -> bool {
        self.off
    }

    /// The moving acceptance rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Records a verification of `drafted` drafts of which `accepted` were kept, which took
    /// `elapsed` (forward and sampling; it gave `accepted + 1` tokens).
    pub fn update(&mut self, drafted: usize, accepted: usize, elapsed: Duration) {
        let per_token = elapsed.as_secs_f64() / (accepted + 1) as f64;
        if drafted == 0 {
            self.plain_secs = ema(self.plain_secs, per_token, self.plain_steps);
            self.plain_steps += 1;
        } else {
            self.spec_secs = ema(self.spec_secs, per_token, self.drafted_steps);
            self.drafted_steps += 1;
            self.rate = 0.75 * self.rate + 0.25 * (accepted as f64 / drafted as f64);
            self.k = if accepted == drafted {
                (self.k + 2).min(self.max)
            } else {
                self.k.saturating_sub(1).max(1)
            };
        }
        let warm = self.drafted_steps >= WARMUP;
        let slower = self.plain_steps >= WARMUP && self.spec_secs > self.plain_secs;
        if warm && (self.rate < self.min_acceptance || slower) {
            self.off = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_latest_longest_match() {
        //            0  1  2  3  4  5  6  7  8  9
        let c = [1, 2, 3, 4, 9, 2, 3, 5, 6, 2, 3];
        // "2 3" last occurred at 5..7, followed by 5 6 2 3.
        assert_eq!(lookup_draft(&c, 2, 3), [5, 6, 2]);
        assert_eq!(lookup_draft(&c, 2, 10), [5, 6, 2, 3]);
        // The 3-gram "9 2 3"? No: "6 2 3" never occurred before; the 2-gram answers.
        assert_eq!(lookup_draft(&c, 3, 2), [5, 6]);
        // A longer match wins over a later shorter one.
        let d = [7, 8, 9, 1, 8, 9, 2, 7, 8, 9];
        assert_eq!(lookup_draft(&d, 3, 2), [1, 8]);
        assert_eq!(lookup_draft(&d, 2, 2), [2, 7]);
        // Nothing to match, or nothing asked.
        assert!(lookup_draft(&[1, 2, 3], 3, 4).is_empty());
        assert!(lookup_draft(&c, 2, 0).is_empty());
        assert!(lookup_draft(&[5], 3, 4).is_empty());
        assert!(lookup_draft(&[], 3, 4).is_empty());
        // A repeated token drafts itself.
        assert_eq!(lookup_draft(&[4, 4], 3, 5), [4]);
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        assert!(LookupParams::new(1).validate().is_ok());
        assert!(LookupParams::new(MAX_DRAFT).validate().is_ok());
        let cases = [
            (LookupParams::new(0), "lookup must be in 1..=64"),
            (LookupParams::new(1 << 40), "lookup must be in 1..=64"),
            (
                LookupParams {
                    ngram: 0,
                    ..LookupParams::new(4)
                },
                "lookup_ngram must be in 1..=16, got 0",
            ),
            (
                LookupParams {
                    min_acceptance: f64::NAN,
                    ..LookupParams::new(4)
                },
                "min_acceptance must be in [0, 1]",
            ),
        ];
        for (p, msg) in cases {
            let e = p.validate().unwrap_err();
            assert!(matches!(e, Error::InvalidParam { .. }), "{e:?}");
            assert!(e.to_string().starts_with(msg), "{e} / {msg}");
        }
    }

    #[test]
    fn bad_draft_settings_are_typed_errors() {
        assert!(DraftParams::new(1).validate().is_ok());
        assert!(DraftParams::new(MAX_DRAFT).validate().is_ok());
        let cases = [
            (DraftParams::new(0), "draft_k must be in 1..=64"),
            (DraftParams::new(MAX_DRAFT + 1), "draft_k must be in 1..=64"),
            (
                DraftParams {
                    min_acceptance: 1.5,
                    ..DraftParams::new(4)
                },
                "min_acceptance must be in [0, 1]",
            ),
        ];
        for (p, msg) in cases {
            let e = p.validate().unwrap_err();
            assert!(matches!(e, Error::InvalidParam { .. }), "{e:?}");
            assert!(e.to_string().starts_with(msg), "{e} / {msg}");
        }
    }

    #[test]
    fn k_adapts_to_acceptance_and_switches_off() {
        let ms = Duration::from_millis;
        let mut a = AdaptiveK::new(&LookupParams::new(6));
        assert_eq!(a.k(), 6);
        a.update(6, 2, ms(30));
        assert_eq!(a.k(), 5);
        a.update(5, 5, ms(30));
        assert_eq!(a.k(), 6, "grows, capped at the max");
        a.update(0, 0, ms(10));
        assert_eq!(a.k(), 6, "no draft, no change of k");
        for _ in 0..10 {
            a.update(1, 0, ms(10));
        }
        assert_eq!(a.k(), 0);
        assert!(a.is_off() && a.rate() < 0.1, "{}", a.rate());
        // Good acceptance never switches it off; min_acceptance 0 never does either.
        let mut good = AdaptiveK::new(&LookupParams::new(4));
        let mut never = AdaptiveK::new(&LookupParams {
            min_acceptance: 0.0,
            ..LookupParams::new(4)
        });
        for _ in 0..50 {
            good.update(4, 3, ms(20));
            never.update(4, 0, ms(20));
        }
        assert!(!good.is_off() && good.k() >= 1);
        assert!(!never.is_off() && never.k() == 1);
        // Accepting most drafts but paying more a token than the plain steps: off, once both
        // are measured; cheaper a token: on.
        let (mut slow, mut fast) = (
            AdaptiveK::new(&LookupParams::new(4)),
            AdaptiveK::new(&LookupParams::new(4)),
        );
        for i in 0..2 * WARMUP {
            // Not before WARMUP of each are measured.
            assert_eq!(slow.is_off(), i >= WARMUP, "step {i}");
            slow.update(4, 3, ms(50)); // 12.5 ms a token
            slow.update(0, 0, ms(10)); // 10 ms a token
            fast.update(4, 3, ms(30)); // 7.5 ms a token
            fast.update(0, 0, ms(10));
        }
        assert!(slow.is_off() && !fast.is_off());
        // Every 4th verification probes one row until the plain cost is measured.
        let mut p = AdaptiveK::new(&LookupParams::new(3));
        let ks: Vec<usize> = (0..8).map(|_| p.next_k()).collect();
        assert_eq!(ks, [3, 3, 3, 0, 3, 3, 3, 0]);
        for _ in 0..WARMUP {
            p.update(0, 0, ms(10));
        }
        assert!((0..8).all(|_| p.next_k() == 3));
    }
}
