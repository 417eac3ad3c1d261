//! The draft-model rule of speculative decoding (Leviathan/Chen, `wavefront::speculative::rule`)
//! emits the target's distribution: a χ² goodness-of-fit test per shape of (p, q) with a
//! false-alarm probability of 1e-6 (`wavefront_conformance::draft_rule`), passed by the rule and
//! failed by each of its planted bugs.

use wavefront::speculative::SpecBug;
use wavefront_conformance::draft_rule::{
    chi2_quantile, chi2_survival, fit, markdown, shapes, Fit, FALSE_ALARM, SAMPLES, VOCAB,
};

const SEED: u64 = 0x05ee_dc41;

fn fits(planted: Option<SpecBug>) -> Vec<Fit> {
    shapes()
        .iter()
        .map(|s| fit(s, SAMPLES, SEED, planted).unwrap())
        .collect()
}

#[test]
fn the_rule_emits_the_targets_distribution() {
    let shapes = shapes();
    assert!(shapes.len() >= 6);
    for s in &shapes {
        assert_eq!((s.p.len(), s.q.len()), (VOCAB, VOCAB), "{}", s.name);
        // Every cell the statistic counts expects at least 50 draws.
        let min =
            s.p.iter()
                .filter(|&&p| p > 0.0)
                .fold(1.0f32, |m, &p| m.min(p));
        assert!(SAMPLES as f64 * min as f64 >= 50.0, "{}", s.name);
    }
    // The shapes the issue names are there: q with mass where p has none, and p where q has none.
    assert!(shapes
        .iter()
        .any(|s| s.p.iter().zip(&s.q).any(|(&p, &q)| p == 0.0 && q > 0.0)));
    assert!(shapes
        .iter()
        .any(|s| s.p.iter().zip(&s.q).any(|(&p, &q)| p > 0.0 && q == 0.0)));
    let fits = fits(None);
    println!("{}", markdown("the rule", &fits));
    for f in &fits {
        assert!(f.pass(), "{}", markdown("the rule", &fits));
    }
    // Both branches ran: drafts were kept and rejected.
    let kept: usize = fits.iter().map(|f| f.accepted).sum();
    assert!(kept > 0 && kept < fits.len() * SAMPLES);
}

/// Each planted bug fails the test by a wide margin on the shapes where it changes the
/// emitted distribution (it cannot on all: resampling from p instead of the residual is right
/// when the supports are disjoint, since the residual is p there).
#[test]
fn each_planted_rule_bug_fails_the_chi2_test() {
    for bug in SpecBug::RULE {
        let fits = fits(Some(bug));
        let label = format!("planted {bug:?}");
        println!("{}", markdown(&label, &fits));
        let failed = fits.iter().filter(|f| !f.pass()).count();
        assert!(failed * 2 > fits.len(), "{}", markdown(&label, &fits));
        // Overwhelming: a failing shape's X² (or its impossible tokens) is far past the
        // threshold, not a near miss a seed could flip.
        for f in fits.iter().filter(|f| !f.pass()) {
            assert!(
                f.impossible > 100 || f.statistic > 20.0 * f.threshold,
                "{label}: {} is a near miss\n{}",
                f.shape,
                markdown(&label, &fits)
            );
        }
    }
}

/// The χ² tail against its closed form for even degrees of freedom,
/// P(χ²_2m > x) = e^{−x/2} Σ_{j<m} (x/2)^j / j!, and against published quantiles.
#[test]
fn the_chi2_tail_and_quantiles_are_right() {
    for df in (2..=40).step_by(2) {
        for x in [0.1, 1.0, 3.0, 10.0, 25.0, 50.0, 90.0, 150.0] {
            let h = x / 2.0;
            let (mut term, mut sum) = (1.0f64, 1.0f64);
            for j in 1..df / 2 {
                term *= h / j as f64;
                sum += term;
            }
            let want = (-h).exp() * sum;
            let got = chi2_survival(df, x);
            assert!(
                (got - want).abs() <= 1e-12 * want.max(1e-300) + 1e-300,
                "df {df} x {x}: {got} vs {want}"
            );
        }
    }
    // Pearson & Hartley's table: (df, upper tail, quantile to the table's digits).
    for (df, alpha, want) in [
        (1, 0.05, 3.8415),
        (5, 0.01, 15.0863),
        (11, 0.001, 31.2641),
        (2, FALSE_ALARM, -2.0 * FALSE_ALARM.ln()),
    ] {
        let got = chi2_quantile(df, alpha);
        assert!(
            (got - want).abs() < 1e-4,
            "df {df} alpha {alpha}: {got} vs {want}"
        );
        assert!((chi2_survival(df, got) / alpha - 1.0).abs() < 1e-9);
    }
}
