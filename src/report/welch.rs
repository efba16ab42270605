//! Welch's unequal-variances t-test, two-sided: the statistic, the
//! Welch–Satterthwaite degrees of freedom and the p-value from Student's t
//! distribution (through the regularized incomplete beta function: Lanczos
//! log-gamma and Lentz's continued fraction). Chosen over Mann–Whitney
//! because perf samples of one test are usually a handful of iterations
//! whose spread differs between kernels (Welch does not assume equal
//! variances); checked in tests against Go's `x/perf` statistics and the
//! closed forms of the t distribution for 1 and 2 degrees of freedom.

/// The result of a two-sample Welch's t-test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Welch {
    /// t statistic (mean of `a` minus mean of `b`, over the standard error).
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Mean and sample standard deviation (n − 1); `None` when empty.
pub fn mean_sd(x: &[f64]) -> Option<(f64, f64)> {
    if x.is_empty() {
        return None;
    }
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    let sd = if x.len() > 1 {
        (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    Some((mean, sd))
}

/// Welch's t-test of `a` against `b`; `None` when a sample has fewer than
/// two values or both have zero variance (no test is possible).
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    welch_summary((a.len() as u64, mean_sd(a)?), (b.len() as u64, mean_sd(b)?))
}

/// [`welch`] from each sample's size, mean and sample standard deviation
/// (all the test needs: `tko compare` gets them from exact sums,
/// [`crate::query::Moments`]).
pub fn welch_summary(a: (u64, (f64, f64)), b: (u64, (f64, f64))) -> Option<Welch> {
    let ((na, (ma, sa)), (nb, (mb, sb))) = (a, b);
    if na < 2 || nb < 2 {
        return None;
    }
    let (na, nb) = (na as f64, nb as f64);
    let (va, vb) = (sa * sa / na, sb * sb / nb);
    if va + vb == 0.0 {
        return None;
    }
    let t = (ma - mb) / (va + vb).sqrt();
    let df = (va + vb).powi(2) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    Some(Welch {
        t,
        df,
        p: t_two_sided_p(t, df),
    })
}

/// P(|T| ≥ |t|) for Student's t with `df` degrees of freedom.
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if !t.is_finite() {
        return 0.0;
    }
    beta_inc(df / 2.0, 0.5, df / (df + t * t)).clamp(0.0, 1.0)
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
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
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularized incomplete beta function I_x(a, b).
fn beta_inc(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast for x < (a + 1) / (a + b + 2).
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(a, b, x) / a
    } else {
        1.0 - front * beta_cf(b, a, 1.0 - x) / b
    }
}

/// Lentz's evaluation of the continued fraction of I_x(a, b).
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    let nz = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / nz(1.0 - (a + b) * x / (a + 1.0));
    let mut h = d;
    for m in 1..=300 {
        let m = f64::from(m);
        let num = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / nz(1.0 + num * d);
        c = nz(1.0 + num / c);
        h *= d * c;
        let num = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / nz(1.0 + num * d);
        c = nz(1.0 + num / c);
        let step = d * c;
        h *= step;
        if (step - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    /// Go's golang.org/x/perf/internal/stats `TestTTest` values.
    #[test]
    fn matches_go_x_perf() {
        let w = welch(&[2.0, 1.0, 3.0, 4.0], &[6.0, 5.0, 7.0, 9.0]).unwrap();
        assert!(close(w.t, -3.970_344_615_223_767_4, 1e-12), "{w:?}");
        assert!(close(w.df, 5.584_615_384_615_385, 1e-12), "{w:?}");
        assert!(close(w.p, 0.008_512_863_131_378_17, 1e-9), "{w:?}");
        let same = welch(&[2.0, 1.0, 3.0, 4.0], &[2.0, 1.0, 3.0, 4.0]).unwrap();
        assert_eq!((same.t, same.df), (0.0, 6.0));
        assert!(close(same.p, 1.0, 1e-12));
    }

    /// Closed forms: df = 1 (Cauchy) p = 1 − 2 atan|t| / π; df = 2
    /// p = 1 − |t| / √(2 + t²).
    #[test]
    fn matches_closed_forms() {
        for t in [0.1, 0.5, 1.0, 2.0, 3.5, 10.0, 100.0] {
            let p1 = 1.0 - 2.0 * f64::atan(t) / std::f64::consts::PI;
            assert!(close(t_two_sided_p(t, 1.0), p1, 1e-10), "df 1, t {t}");
            let p2 = 1.0 - t / (2.0 + t * t).sqrt();
            assert!(close(t_two_sided_p(-t, 2.0), p2, 1e-10), "df 2, t {t}");
        }
        // Large df tends to the normal: P(|Z| ≥ 1.959964) = 0.05.
        assert!(close(t_two_sided_p(1.959_963_985, 1e7), 0.05, 1e-5));
    }

    #[test]
    fn no_test_without_spread_or_samples() {
        assert!(welch(&[1.0], &[2.0, 3.0]).is_none());
        assert!(welch(&[1.0, 1.0], &[2.0, 2.0]).is_none());
        assert_eq!(mean_sd(&[1.0, 3.0]), Some((2.0, std::f64::consts::SQRT_2)));
        assert_eq!(mean_sd(&[]), None);
    }
}
