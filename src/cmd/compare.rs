//! `tko compare BASE NEW`: the two selections read through the query layer,
//! classified and tested by `tko::report::compare`; exit 1 on a regression
//! or a flagged perf change.

use super::Reader;
use crate::cli::{CompareArgs, DiagnosticsFormat};
use anyhow::Context;
use std::io;
use std::process::ExitCode;
use tko::export::{ExportQuery, Filter, Kind};
use tko::{query, report};

/// One side of `tko compare`: its filter and how the user selected it.
fn compare_side(
    side: &str,
    tag: Option<String>,
    kernel: Option<String>,
    label: Option<String>,
    args: &CompareArgs,
) -> anyhow::Result<(Filter, std::collections::BTreeMap<String, String>)> {
    if tag.is_none() && kernel.is_none() && label.is_none() {
        anyhow::bail!(
            "select {side}: a job tag, or --{side}-kernel / --{side}-label",
            side = side.to_ascii_lowercase()
        );
    }
    let mut by = std::collections::BTreeMap::new();
    for (k, v) in [
        ("job", &tag),
        ("kernel", &kernel),
        ("label", &label),
        ("machine", &args.machine),
        ("test", &args.test),
    ] {
        if let Some(v) = v {
            by.insert(k.to_owned(), v.clone());
        }
    }
    let f = Filter {
        job: tag.as_deref().map(query::glob_escape),
        kernel,
        label,
        machine: args.machine.clone(),
        test: args.test.clone(),
        ..Filter::default()
    };
    f.validate()?;
    Ok((f, by))
}

/// `tko compare`: exit 1 on a regression or a flagged perf change.
pub(crate) fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    use report::compare::{self as cmp, PerfRows};
    anyhow::ensure!(
        args.threshold >= 0.0 && args.threshold.is_finite(),
        "--threshold must be a percentage >= 0"
    );
    anyhow::ensure!(
        args.alpha > 0.0 && args.alpha < 1.0,
        "--alpha must be between 0 and 1"
    );
    let (bf, bby) = compare_side(
        "BASE",
        args.base.clone(),
        args.base_kernel.clone(),
        args.base_label.clone(),
        &args,
    )?;
    let (nf, nby) = compare_side(
        "NEW",
        args.new.clone(),
        args.new_kernel.clone(),
        args.new_label.clone(),
        &args,
    )?;
    // The two sides are read at once, each on its own connection: on
    // PostgreSQL each side's server pass (or cache build) runs on its own
    // core.
    let read = |f: Filter| -> anyhow::Result<(Vec<report::TestRecord>, PerfRows)> {
        let mut r = Reader::open(&args.db.db)?;
        let mut records = report::Records::default();
        let q = ExportQuery {
            brief: true,
            ..ExportQuery::new(Kind::Tests, f.clone())
        };
        r.read(&q, &mut records, "tests")?;
        let mut perf = PerfRows::new(args.by_machine);
        let what = r.context("perf values");
        r.wh.perf_moments(&f, args.by_machine, &mut |t, s, m, k, v| {
            perf.add(t, s, m, k, v);
        })
        .context(what)?;
        Ok((records.records, perf))
    };
    let (base, new) = std::thread::scope(|scope| {
        let base = scope.spawn(|| read(bf));
        let new = read(nf);
        (base.join().expect("reading BASE does not panic"), new)
    });
    let ((brec, bperf), (nrec, nperf)) = (base?, new?);
    let o = cmp::Options {
        by_machine: args.by_machine,
        threshold_pct: args.threshold,
        alpha: args.alpha,
    };
    let c = cmp::compare((bby, &brec, &bperf), (nby, &nrec, &nperf), &o);
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    match args.format {
        DiagnosticsFormat::Text => cmp::write_compare_text(out, &c, &o)?,
        DiagnosticsFormat::Csv => cmp::write_compare_csv(out, &c)?,
        DiagnosticsFormat::Json => cmp::write_compare_json(out, &c)?,
    }
    Ok(if c.failing() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
