//! Retention: `tko delete TAG...` and `tko prune --before TIME`, whole jobs
//! deleted in batches with the ledger told, one line per deleted job.

use crate::cli::{DeleteArgs, PruneArgs, RemoveArgs};
use anyhow::Context;
use std::io::{self, Write};
use std::process::ExitCode;
use tko::export::Filter;
use tko::{query, store};

/// `tko delete TAG...`: exit 1 when a tag is not in the warehouse.
pub(crate) fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    remove(&args.remove, &store::JobSelection::Tags(args.tags))
}

/// `tko prune --before TIME [--label GLOB]`.
pub(crate) fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    let before = query::parse_time(&args.before, false).context("--before")?;
    if let Some(l) = &args.label {
        Filter {
            label: Some(l.clone()),
            ..Filter::default()
        }
        .validate()?;
    }
    let sel = store::JobSelection::Before {
        before: query::filter::time_text(before),
        label: args.label,
    };
    remove(&args.remove, &sel)
}

/// Deletes the jobs `sel` chooses, one stdout line per job as its batch
/// is committed, then the totals.
fn remove(args: &RemoveArgs, sel: &store::JobSelection) -> anyhow::Result<ExitCode> {
    let url = &args.db.db;
    let target = store::display_url(url);
    let mut st = store::open_existing(url)?.into_store();
    if !args.dry_run {
        st.migrate()?;
    }
    st.set_batch_jobs(args.batch);
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let counts = |r: &tko::table::RowCounts, labels: usize| {
        format!(
            "{} tests, {} test attributes, {} iteration attributes, {} perf values, \
             {} job keyvals, {} diagnostics, {labels} user label links",
            r.tests,
            r.test_attributes,
            r.iteration_attributes,
            r.iteration_results,
            r.job_keyvals,
            r.diagnostics
        )
    };
    let stdout = io::stdout();
    let mut write_err = None;
    let done = st.delete_jobs(sel, args.dry_run, &mut |r| {
        let mut out = stdout.lock();
        let line = format!(
            "{verb} {} (job_idx {}): {}",
            r.tag,
            r.job_idx,
            counts(&r.rows, r.labels)
        );
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            write_err.get_or_insert(e);
        }
    });
    if let Some(e) = write_err {
        return Err(e).context("writing the list of deleted jobs");
    }
    let done = done.with_context(|| format!("deleting jobs from {target}"))?;
    for tag in &done.missing {
        eprintln!("tko: no job {tag:?} in {target}");
    }
    let mut out = stdout.lock();
    writeln!(
        out,
        "{}{verb} {} job(s) from {target}: {}",
        if args.dry_run { "dry run: " } else { "" },
        done.jobs,
        counts(&done.rows, done.labels)
    )?;
    Ok(if done.missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
