//! Exact moments of a set of perf values: the count and the **exact** sums
//! of the values and of their squares, each kept as a list of
//! non-overlapping doubles (Shewchuk's expansions, as Python's `math.fsum`
//! keeps its partials; a square enters as its two exact halves,
//! `v·v = hi + lo` through a fused multiply-add). Adding, merging and
//! subtracting are exact, so the result does not depend on the order
//! values or partial sums come in: both stores give the very same bits
//! whatever order their rows arrive in (and a summary kept per kernel
//! could add and subtract jobs without drift). The mean is the
//! correctly rounded sum over n; the variance is the correctly rounded
//! `n·Σv² − (Σv)²` over `n(n − 1)` (no cancellation: it is computed
//! exactly before the one rounding). Exact while values and their squares
//! stay within the normal doubles (|v| between ~1e-154 and ~1e154).

use std::fmt::Write as _;

/// An exact sum: non-overlapping doubles in increasing magnitude.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExactSum(Vec<f64>);

impl ExactSum {
    /// Adds `x` exactly (Shewchuk's grow-expansion, as `math.fsum`).
    pub fn add(&mut self, mut x: f64) {
        let p = &mut self.0;
        let mut i = 0;
        for j in 0..p.len() {
            let mut y = p[j];
            if x.abs() < y.abs() {
                std::mem::swap(&mut x, &mut y);
            }
            let hi = x + y;
            let lo = y - (hi - x);
            if lo != 0.0 {
                p[i] = lo;
                i += 1;
            }
            x = hi;
        }
        p.truncate(i);
        if x != 0.0 || p.is_empty() {
            p.push(x);
        }
    }

    /// Adds every partial of `other` (`sign` −1 subtracts it).
    pub fn merge(&mut self, other: &ExactSum, sign: f64) {
        for &x in &other.0 {
            self.add(sign * x);
        }
    }

    /// The correctly rounded value (round half to even), as `math.fsum`.
    pub fn value(&self) -> f64 {
        let p = &self.0;
        let Some(mut n) = p.len().checked_sub(1) else {
            return 0.0;
        };
        let mut hi = p[n];
        let mut lo = 0.0;
        while n > 0 {
            n -= 1;
            let x = hi;
            let y = p[n];
            hi = x + y;
            let yr = hi - x;
            lo = y - yr;
            if lo != 0.0 {
                break;
            }
        }
        if n > 0 && ((lo < 0.0 && p[n - 1] < 0.0) || (lo > 0.0 && p[n - 1] > 0.0)) {
            let y = lo * 2.0;
            let x = hi + y;
            if y == x - hi {
                hi = x;
            }
        }
        hi
    }

    /// True when the exact value is 0.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&x| x == 0.0)
    }

    /// The partials as text: shortest round-trip doubles, space-separated
    /// (`""` for 0). [`ExactSum::parse`] reads them back bit for bit.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for x in self.0.iter().filter(|x| **x != 0.0) {
            if !s.is_empty() {
                s.push(' ');
            }
            let _ = write!(s, "{x:?}");
        }
        s
    }

    /// Reads [`ExactSum::to_text`]'s form; `None` on anything else.
    pub fn parse(s: &str) -> Option<ExactSum> {
        let mut out = ExactSum::default();
        for w in s.split_ascii_whitespace() {
            out.add(w.parse::<f64>().ok().filter(|v| v.is_finite())?);
        }
        Some(out)
    }
}

/// Count, exact sum and exact sum of squares of some values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Moments {
    /// Number of values.
    pub n: i64,
    /// Σv.
    pub sum: ExactSum,
    /// Σv².
    pub sumsq: ExactSum,
}

impl Moments {
    /// Adds one (finite) value.
    pub fn add(&mut self, v: f64) {
        self.n += 1;
        self.sum.add(v);
        let hi = v * v;
        self.sumsq.add(hi);
        self.sumsq.add(v.mul_add(v, -hi));
    }

    /// Adds (`sign` 1) or subtracts (`sign` −1) another set's moments.
    pub fn merge(&mut self, other: &Moments, sign: i64) {
        self.n += sign * other.n;
        self.sum.merge(&other.sum, sign as f64);
        self.sumsq.merge(&other.sumsq, sign as f64);
    }

    /// True when these describe no values at all (n = 0 and both sums 0).
    pub fn is_empty(&self) -> bool {
        self.n == 0 && self.sum.is_zero() && self.sumsq.is_zero()
    }

    /// Mean and sample standard deviation (n − 1); `None` when empty.
    pub fn mean_sd(&self) -> Option<(f64, f64)> {
        if self.n <= 0 {
            return None;
        }
        let n = self.n as f64;
        let mean = self.sum.value() / n;
        if self.n == 1 {
            return Some((mean, 0.0));
        }
        // n·Σv² − (Σv)², exactly, then rounded once.
        let mut d = ExactSum::default();
        for &c in &self.sumsq.0 {
            let p = n * c;
            d.add(p);
            d.add(n.mul_add(c, -p));
        }
        for &a in &self.sum.0 {
            for &b in &self.sum.0 {
                let p = a * b;
                d.add(-p);
                d.add(-a.mul_add(b, -p));
            }
        }
        let var = d.value().max(0.0) / (n * (n - 1.0));
        Some((mean, var.sqrt()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(v: &[f64]) -> Moments {
        let mut m = Moments::default();
        v.iter().for_each(|&x| m.add(x));
        m
    }

    #[test]
    fn sums_are_exact_and_order_free() {
        let mut s = ExactSum::default();
        for x in [1e100, 1.0, -1e100, 1e-30] {
            s.add(x);
        }
        assert_eq!(s.value(), 1.0 + 1e-30);
        assert_eq!(s.value(), 1.0);
        let mut t = ExactSum::default();
        for x in [0.1; 10] {
            t.add(x);
        }
        assert_eq!(t.value(), 1.0);
        // Removing what was added leaves exactly nothing.
        let vals = [4.9, 5.0, 5.1, 1e9 + 0.3, -7.25e-3];
        let mut a = of(&vals);
        let b = of(&vals[..2]);
        a.merge(&b, -1);
        assert_eq!(a.sum.value(), of(&vals[2..]).sum.value());
        a.merge(&of(&vals[2..]), -1);
        assert!(a.is_empty(), "{a:?}");
        let round = ExactSum::parse(&of(&vals).sumsq.to_text()).unwrap();
        assert_eq!(round, of(&vals).sumsq);
    }

    #[test]
    fn mean_and_sd_match_two_pass_and_survive_cancellation() {
        // lat of the compare tests: 4.9 + 5.0 + 5.1 is exactly 15.
        assert_eq!(of(&[4.9, 5.0, 5.1]).mean_sd().unwrap().0, 5.0);
        assert_eq!(of(&[4.95, 5.0, 5.05]).mean_sd().unwrap().0, 5.0);
        assert_eq!(
            of(&[1.0, 3.0]).mean_sd(),
            Some((2.0, std::f64::consts::SQRT_2))
        );
        assert_eq!(of(&[7.5]).mean_sd(), Some((7.5, 0.0)));
        assert_eq!(of(&[]).mean_sd(), None);
        // A large offset: a naive Σv² − (Σv)²/n loses every digit here.
        let base = 1e9;
        let v: Vec<f64> = [0.1, 0.2, 0.3, 0.4].iter().map(|d| base + d).collect();
        let (m, sd) = of(&v).mean_sd().unwrap();
        let (m2, sd2) = crate::report::welch::mean_sd(&v).unwrap();
        assert!((m - m2).abs() <= 1e-15 * m2, "{m} {m2}");
        assert!((sd - sd2).abs() <= 1e-6 * sd2, "{sd} {sd2}");
        // Against an exact reference: values k/8 (exact in binary).
        let v: Vec<f64> = (0..1000).map(|k| 1e6 + f64::from(k) / 8.0).collect();
        let (m, sd) = of(&v).mean_sd().unwrap();
        assert_eq!(m, 1e6 + 999.0 / 16.0);
        // Var of k/8 for k = 0..999: (1000² − 1) / 12 / 64 · 1000 / 999.
        let var = (1000.0f64 * 1000.0 - 1.0) / 12.0 / 64.0 * 1000.0 / 999.0;
        assert!((sd - var.sqrt()).abs() <= 2.0 * f64::EPSILON * sd);
    }
}
