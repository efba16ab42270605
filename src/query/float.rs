//! PostgreSQL's float text in Rust: [`pg_float`] formats an `f64` exactly
//! as PostgreSQL's `float8out` does (shortest round-trip digits, its
//! exponent form, `Infinity`), so that SQLite rows come out byte-identical
//! to PostgreSQL's. Pure; checked against a live server in tests.

use std::fmt::Write as _;

/// Formats a float exactly as PostgreSQL's `float8out` does with
/// `extra_float_digits >= 1` (PostgreSQL 12+): the shortest digits that
/// read back to the same number, fixed notation for decimal exponents
/// -4..=14, else `d.ddde+XX`; `NaN`, `Infinity`, `-Infinity`, `-0`.
///
/// PostgreSQL's Ryu is built without `STRICTLY_SHORTEST`: a decimal lying
/// exactly halfway to a neighbouring double is never chosen, although it
/// reads back correctly (round half to even). Rust's shortest form may pick
/// it, so that case is detected and the next longer correctly rounded form
/// taken instead.
pub fn pg_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    if f.is_sign_negative() {
        out.push('-');
    }
    let a = f.abs();
    let (digits, exp) = pg_digits(a);
    let n = digits.len() as i32;
    if (-4..15).contains(&exp) {
        if exp >= 0 {
            if n <= exp + 1 {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', (exp + 1 - n) as usize));
            } else {
                let (a, b) = digits.split_at((exp + 1) as usize);
                out.push_str(a);
                out.push('.');
                out.push_str(b);
            }
        } else {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
}

/// PostgreSQL's significant digits and decimal exponent of `a` (positive,
/// finite). Ryu (as PostgreSQL builds it) takes the shortest length `n` whose
/// correctly rounded form (ties to even) reads back to `a` without lying
/// exactly halfway to a neighbour. Rust's shortest form agrees except near
/// ties and halfway points, which only arise with 15 or more digits or on a
/// halfway point; there the correctly rounded forms are tried from `n` up.
/// (Ryu also differs when the nearest `n`-digit decimal of a power of two
/// falls below its narrower lower gap; that case yields one more digit here.)
fn pg_digits(a: f64) -> (String, i32) {
    let (d, e) = sci_digits(&format!("{a:e}"));
    if d.len() < 15 && !on_midpoint(a, &d, e) {
        return (d, e);
    }
    for p in d.len()..=17 {
        let (d, e) = sci_digits(&format!("{a:.*e}", p - 1));
        let back = format!("{d}e{}", e - (d.len() as i32 - 1)).parse::<f64>();
        if back == Ok(a) && !on_midpoint(a, &d, e) {
            return (d, e);
        }
    }
    sci_digits(&format!("{a:.16e}"))
}

/// `d.ddde±x` (Rust's `{:e}`) → significant digits without trailing zeros
/// and the decimal exponent of the first digit.
fn sci_digits(sci: &str) -> (String, i32) {
    let (mant, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let mut digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    (digits, exp)
}

/// True when the decimal `0.digits × 10^(exp+1)` lies exactly halfway
/// between `a` (positive, finite) and a neighbouring double.
fn on_midpoint(a: f64, digits: &str, exp: i32) -> bool {
    // value = d × 10^k
    let k = exp - (digits.len() as i32 - 1);
    let d: u64 = digits.parse().expect("at most 17 digits");
    // A midpoint is a dyadic rational: below 2^53 never an integer, and
    // d × 10^k with k < 0 is dyadic only if 5^-k divides d.
    if k >= 0 {
        if a < 9_007_199_254_740_992.0 {
            return false;
        }
    } else {
        match 5u64.checked_pow(k.unsigned_abs()) {
            Some(p) if d.is_multiple_of(p) => {}
            _ => return false,
        }
    }
    // Exactly halfway iff nudging it by far less than an ulp changes the
    // double it reads as (the parser rounds exactly).
    let tiny = 25;
    let up = format!("{d}{}1e{}", "0".repeat(tiny - 1), k - tiny as i32);
    let down = format!("{}{}e{}", d - 1, "9".repeat(tiny), k - tiny as i32);
    up.parse::<f64>() != Ok(a) || down.parse::<f64>() != Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pgf(f: f64) -> String {
        let mut s = String::new();
        pg_float(f, &mut s);
        s
    }

    #[test]
    fn floats_format_like_postgres() {
        let cases = [
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (100.0, "100"),
            (0.1, "0.1"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.234e-7, "1.234e-07"),
            (123_456_789_012_345.0, "123456789012345"),
            (1e15, "1e+15"),
            (1.5e20, "1.5e+20"),
            (1e100, "1e+100"),
            (1e-300, "1e-300"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::NAN, "NaN"),
            (1.0 / 3.0, "0.3333333333333333"),
            // Rust's shortest would be the halfway value 3.172230058817275e16.
            (3.172_230_058_817_275e16, "3.1722300588172752e+16"),
            // An exact tie at 17 digits rounds to even.
            (1_201_363_153_809_856.0 + 0.25, "1.2013631538098562e+15"),
        ];
        for (f, want) in cases {
            assert_eq!(pgf(f), want, "{f:?}");
        }
    }
}
