//! The comparison policy (DESIGN.md "Conformance policy"): any NaN fails; infinities must match
//! in sign and place; then the normalized mean squared error `Σ(a−b)² / Σa²` (a = expected)
//! against the case's tolerance. Max abs error is reported alongside, never judged.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub max_abs: f64,
    pub nmse: f64,
    /// The NMSE bound it was judged against (NaN where none applies: ids, failures to run).
    pub tolerance: f64,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Something worth reporting about a pass (e.g. a divergence within the rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Comparison {
    pub fn pass(&self) -> bool {
        self.failure.is_none()
    }

    pub fn fail(reason: impl Into<String>) -> Self {
        Comparison {
            max_abs: f64::NAN,
            nmse: f64::NAN,
            tolerance: f64::NAN,
            failure: Some(reason.into()),
            note: None,
        }
    }

    /// An exact pass.
    pub fn exact() -> Self {
        Comparison {
            max_abs: 0.0,
            nmse: 0.0,
            tolerance: f64::NAN,
            failure: None,
            note: None,
        }
    }

    pub fn with_note(mut self, note: Option<String>) -> Self {
        self.note = note;
        self
    }
}

/// Compares `actual` against `expected` with an NMSE tolerance.
pub fn compare(expected: &[f32], actual: &[f32], nmse_tol: f64) -> Comparison {
    if expected.len() != actual.len() {
        return Comparison::fail(format!(
            "length {} != expected {}",
            actual.len(),
            expected.len()
        ));
    }
    if let Some(i) = actual.iter().position(|x| x.is_nan()) {
        return Comparison::fail(format!("NaN at element {i}"));
    }
    if let Some(i) = expected.iter().position(|x| x.is_nan()) {
        return Comparison::fail(format!("the reference has NaN at element {i}"));
    }
    let (mut num, mut den, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
    for (i, (&e, &a)) in expected.iter().zip(actual).enumerate() {
        if e.is_infinite() || a.is_infinite() {
            if e != a {
                return Comparison::fail(format!("element {i}: {a} where the reference has {e}"));
            }
            continue;
        }
        let d = (a as f64) - (e as f64);
        num += d * d;
        den += (e as f64) * (e as f64);
        max_abs = max_abs.max(d.abs());
    }
    let nmse = if den > 0.0 { num / den } else { num };
    let failure = (nmse > nmse_tol).then(|| format!("NMSE {nmse:.3e} > tolerance {nmse_tol:.1e}"));
    Comparison {
        max_abs,
        nmse,
        tolerance: nmse_tol,
        failure,
        note: None,
    }
}

/// Exact comparison of discrete outputs (token ids).
pub fn compare_ids(expected: &[u32], actual: &[u32]) -> Comparison {
    let mismatches: Vec<usize> = (0..expected.len().max(actual.len()))
        .filter(|&i| expected.get(i) != actual.get(i))
        .collect();
    Comparison {
        max_abs: mismatches.len() as f64,
        nmse: 0.0,
        tolerance: f64::NAN,
        failure: (!mismatches.is_empty()).then(|| {
            let i = mismatches[0];
            format!(
                "{} of {} ids differ; first at {i}: {:?} where the reference has {:?}",
                mismatches.len(),
                expected.len(),
                actual.get(i),
                expected.get(i)
            )
        }),
        note: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_fails_before_anything_else() {
        let c = compare(&[1.0, 2.0], &[1.0, f32::NAN], 1.0);
        assert!(c.failure.unwrap().contains("NaN at element 1"));
    }

    #[test]
    fn infinities_must_match_in_sign() {
        assert!(compare(&[f32::INFINITY, 1.0], &[f32::INFINITY, 1.0], 0.0).pass());
        assert!(!compare(&[f32::INFINITY, 1.0], &[f32::NEG_INFINITY, 1.0], 1.0).pass());
        assert!(!compare(&[3.0, 1.0], &[f32::INFINITY, 1.0], 1.0).pass());
    }

    #[test]
    fn nmse_is_relative_to_the_expected_energy() {
        let c = compare(&[3.0, 4.0], &[3.0, 4.5], 1.0);
        assert!((c.nmse - 0.25 / 25.0).abs() < 1e-12);
        assert_eq!(c.max_abs, 0.5);
        assert!(!compare(&[3.0, 4.0], &[3.0, 4.5], 0.009).pass());
        assert!(compare(&[3.0, 4.0], &[3.0, 4.5], 0.011).pass());
    }

    #[test]
    fn ids_compare_exactly() {
        assert!(compare_ids(&[1, 2, 3], &[1, 2, 3]).pass());
        let c = compare_ids(&[1, 2, 3], &[1, 5, 3]);
        assert!(c.failure.unwrap().contains("first at 1"));
        assert!(!compare_ids(&[1, 2], &[1, 2, 3]).pass());
    }
}
