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

/// The generator feeds the rule the right rows, histories and coins: the joint distribution
/// of the first two tokens of a sampled generation drafted with k = 1 is the target's, by the
/// same χ² test (3000 generations, 16 cells), with a draft that mostly agrees (the target
/// perturbed) and one that does not (another fixture); the inverted acceptance planted in the
/// generator fails it.
#[test]
fn the_generator_with_a_draft_model_emits_the_targets_joint_distribution() {
    use wavefront::backend::cpu::CpuBackend;
    use wavefront::{Engine, SamplingParams};
    use wavefront_conformance::draft_rule::fit_generator;
    use wavefront_conformance::speculative::perturb_final_norm;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models");
    let load = |name: &str| wavefront::load(&dir.join(name)).unwrap();
    let engine = |m| Engine::new(CpuBackend::default(), m, Default::default()).unwrap();
    let target = load("llama_mha");
    let mut perturbed = load("llama_mha");
    perturb_final_norm(&mut perturbed, 0.6, 11).unwrap();
    let other = load("llama_gqa4_hd64");
    let t = engine(&target);
    let sampling = SamplingParams {
        temperature: 1.0,
        top_k: 4,
        presence_penalty: 1.0,
        ..SamplingParams::default()
    };
    let prompt = [3u32, 17, 99, 3, 17, 42];
    const N: usize = 3000;
    let mut fits = Vec::new();
    for (name, draft) in [("perturbed", &perturbed), ("other fixture", &other)] {
        let d = engine(draft);
        let mut f = fit_generator(&t, &d, &prompt, sampling, N, None).unwrap();
        f.shape = format!("{} drafted by {name}", f.shape);
        fits.push(f);
    }
    let d = engine(&perturbed);
    let mut bug =
        fit_generator(&t, &d, &prompt, sampling, N, Some(SpecBug::AcceptInverted)).unwrap();
    bug.shape = format!("{} drafted by perturbed, planted AcceptInverted", bug.shape);
    println!(
        "{}",
        markdown("the generator", &[fits.clone(), vec![bug.clone()]].concat())
    );
    for f in &fits {
        assert!(f.pass(), "{}", markdown("the generator", &fits));
    }
    // Both branches of the rule ran: the perturbed draft is kept at some draws and not at
    // others; the other fixture's drafts are rejected (its top 4 are not the target's), so its
    // second tokens are the residual's.
    let table = markdown("the generator", &fits);
    assert!(fits[0].accepted > 0 && fits[0].accepted < N, "{table}");
    assert!(fits[1].accepted < N / 2, "{table}");
    assert!(!bug.pass(), "{}", markdown("the generator", &[bug]));
}
