//! Server-side SVG plots, written by hand: a frame with two axes, text
//! labels, a polyline and dots with tooltips is all the pages draw, so no
//! plotting crate (and no font handling) is needed. Every text that comes
//! from the warehouse (test, key, kernel, job) is escaped here, so a
//! hostile value is text inside the SVG, never markup. Plots: the pass rate
//! per day (`/stats`) and one perf key over time or over kernels
//! (`/history`).

use super::api::By;
use crate::query::PerfPoint;
use crate::report::{self, trend::Day};
use std::fmt::Write as _;

const W: f64 = 640.0;
const H: f64 = 220.0;
/// Left margin (y labels).
const LEFT: f64 = 60.0;
const PAD: f64 = 20.0;
/// Bottom margin (x labels).
const BOTTOM: f64 = 30.0;

/// Text escaped for SVG (as HTML: `&`, `<`, `>`, `"`).
fn esc(t: &str) -> String {
    maud::html! { (t) }.into_string()
}

/// `<svg>`, the axes and the two y labels (top, bottom).
fn open(aria: &str, top: &str, bottom: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{a}\"><title>{a}</title>\
         <line x1=\"{LEFT}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" y1=\"{PAD}\" x2=\"{LEFT}\" y2=\"{y0}\" stroke=\"#888\"/>\
         <text x=\"{lx}\" y=\"{ty}\" font-size=\"10\" text-anchor=\"end\">{top}</text>\
         <text x=\"{lx}\" y=\"{y0}\" font-size=\"10\" text-anchor=\"end\">{bottom}</text>",
        a = esc(aria),
        y0 = H - BOTTOM,
        x1 = W - PAD,
        lx = LEFT - 4.0,
        ty = PAD + 4.0,
        top = esc(top),
        bottom = esc(bottom),
    )
}

/// An x label under the axis.
fn x_label(s: &mut String, x: f64, text: &str, anchor: &str) {
    let _ = write!(
        s,
        "<text class=\"x\" x=\"{x:.1}\" y=\"{y}\" font-size=\"10\" text-anchor=\"{anchor}\">{}</text>",
        esc(text),
        y = H - BOTTOM + 14.0
    );
}

/// A polyline through `pts`.
fn line(s: &mut String, pts: &[(f64, f64)]) {
    if pts.is_empty() {
        return;
    }
    s.push_str("<polyline fill=\"none\" stroke=\"#2a7\" stroke-width=\"2\" points=\"");
    for (x, y) in pts {
        let _ = write!(s, "{x:.1},{y:.1} ");
    }
    s.push_str("\"/>");
}

/// A dot, with its tooltip when given.
fn dot(s: &mut String, (x, y): (f64, f64), tip: Option<&str>) {
    let _ = write!(
        s,
        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"2.5\" fill=\"#2a7\">"
    );
    if let Some(t) = tip {
        let _ = write!(s, "<title>{}</title>", esc(t));
    }
    s.push_str("</circle>");
}

/// x of position `i` of `n` evenly spaced (centred when alone).
fn spread(i: usize, n: usize) -> f64 {
    let inner = W - LEFT - PAD;
    if n > 1 {
        LEFT + inner * i as f64 / (n - 1) as f64
    } else {
        LEFT + inner / 2.0
    }
}

/// y of `v` between `lo` (bottom) and `hi` (top).
fn y_of(v: f64, lo: f64, hi: f64) -> f64 {
    let inner = H - BOTTOM - PAD;
    H - BOTTOM - inner * (v - lo) / (hi - lo)
}

/// The pass rate per day as an SVG line plot (0–100 %).
pub fn pass_rate_svg(days: &[Day]) -> String {
    let mut s = open("pass rate per day", "100%", "0%");
    let pts: Vec<(f64, f64)> = days
        .iter()
        .enumerate()
        .filter_map(|(i, d)| {
            d.pass_rate
                .map(|r| (spread(i, days.len()), y_of(r, 0.0, 1.0)))
        })
        .collect();
    if let (Some(first), Some(last)) = (days.first(), days.last()) {
        x_label(&mut s, LEFT, &first.day, "start");
        x_label(&mut s, W - PAD, &last.day, "end");
    }
    line(&mut s, &pts);
    for p in &pts {
        dot(&mut s, *p, None);
    }
    s.push_str("</svg>");
    s
}

/// The y range of `values`, widened when flat so the dots sit mid-plot.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if lo == hi {
        let d = if lo == 0.0 { 1.0 } else { lo.abs() / 10.0 };
        return (lo - d, hi + d);
    }
    (lo, hi)
}

/// Perf key `key` of `test` as an SVG plot: every value a dot (tooltip:
/// job, kernel, time, value); over time (x: finished time; values without
/// one are left out) with a line through them, or over kernels (one column
/// per kernel, oldest first, a line through the means).
pub fn perf_svg(test: &str, key: &str, points: &[PerfPoint], by: By) -> String {
    let (lo, hi) = range(points.iter().map(|p| p.value));
    let num = |v: f64| format!("{v}");
    let axis = match by {
        By::Time => "time",
        By::Kernel => "kernel",
    };
    let mut s = open(&format!("{key} of {test} by {axis}"), &num(hi), &num(lo));
    let tip = |p: &PerfPoint| {
        format!(
            "{} · {} · {}: {}",
            p.job,
            p.kernel.as_deref().unwrap_or("?"),
            p.time.as_deref().unwrap_or("unfinished"),
            p.value
        )
    };
    // Oldest first.
    let oldest: Vec<&PerfPoint> = points.iter().rev().collect();
    match by {
        By::Time => {
            let timed: Vec<(i64, &PerfPoint)> = oldest
                .iter()
                .filter_map(|p| Some((report::epoch_of(p.time.as_deref()?)?, *p)))
                .collect();
            let (t0, t1) = match (timed.first(), timed.last()) {
                (Some(a), Some(b)) => (a.0, b.0),
                _ => (0, 0),
            };
            let x = |t: i64| {
                if t1 > t0 {
                    LEFT + (W - LEFT - PAD) * (t - t0) as f64 / (t1 - t0) as f64
                } else {
                    spread(0, 1)
                }
            };
            let pts: Vec<(f64, f64)> = timed
                .iter()
                .map(|(t, p)| (x(*t), y_of(p.value, lo, hi)))
                .collect();
            if let (Some(a), Some(b)) = (timed.first(), timed.last()) {
                x_label(&mut s, LEFT, a.1.time.as_deref().unwrap_or(""), "start");
                if t1 > t0 {
                    x_label(&mut s, W - PAD, b.1.time.as_deref().unwrap_or(""), "end");
                }
            }
            line(&mut s, &pts);
            for (pt, (_, p)) in pts.iter().zip(&timed) {
                dot(&mut s, *pt, Some(&tip(p)));
            }
        }
        By::Kernel => {
            let mut kernels: Vec<Option<&str>> = Vec::new();
            for p in &oldest {
                if !kernels.contains(&p.kernel.as_deref()) {
                    kernels.push(p.kernel.as_deref());
                }
            }
            let x = |i: usize| LEFT + (W - LEFT - PAD) * (i as f64 + 0.5) / kernels.len() as f64;
            let mut means = Vec::new();
            for (i, k) in kernels.iter().enumerate() {
                let mine: Vec<&&PerfPoint> = oldest
                    .iter()
                    .filter(|p| p.kernel.as_deref() == *k)
                    .collect();
                x_label(&mut s, x(i), k.unwrap_or("?"), "middle");
                for p in &mine {
                    dot(&mut s, (x(i), y_of(p.value, lo, hi)), Some(&tip(p)));
                }
                let mean = mine.iter().map(|p| p.value).sum::<f64>() / mine.len() as f64;
                means.push((x(i), y_of(mean, lo, hi)));
            }
            line(&mut s, &means);
        }
    }
    s.push_str("</svg>");
    s
}
