//! The commands of the `tko` binary, one module per family: each turns
//! its parsed flags into library calls, prints what people read and maps
//! the outcome to an exit status. This module holds what several share:
//! discovery with its notices, the validated filter, the read-only
//! warehouse handle and path checks.

mod compare;
mod load;
mod parse;
mod read;
mod retention;

pub(crate) use compare::compare;
pub(crate) use load::{backfill, db, load, watch};
pub(crate) use parse::parse;
pub(crate) use read::{diagnostics, export_cmd, history, serve, stats, summary};
pub(crate) use retention::{delete, prune};

use crate::cli::FilterArgs;
use anyhow::Context;
use std::io;
use tko::export::{ExportQuery, Filter, Warehouse};
use tko::{backfill, discover, query, store};

/// Streams the jobs under `paths` to `each`, a round of top-level
/// directories at a time (each job directory once; see
/// `discover::Discovery`); walk errors and notices are printed as they
/// come. Fatal when nothing was found and something was wrong; else
/// returns whether any walk error occurred.
pub(crate) fn discover_jobs(
    paths: &[std::path::PathBuf],
    level: Option<usize>,
    mut each: impl FnMut(Vec<discover::JobDir>) -> anyhow::Result<()>,
) -> anyhow::Result<bool> {
    let mut discovery = discover::Discovery::new(paths, level);
    let units = backfill::Options::default().units_per_round;
    let (mut found, mut failed) = (0, false);
    while let Some(round) = discovery.next_round(units) {
        for n in &round.notices {
            eprintln!("tko: {n}");
        }
        for e in &round.errors {
            eprintln!("tko: {e}");
        }
        failed |= !round.errors.is_empty();
        found += round.jobs.len();
        each(round.jobs)?;
    }
    if found == 0 {
        anyhow::bail!(
            "no job directory found (a job directory holds status.log, status, keyval, .autoserv_execute or .machines)"
        );
    }
    Ok(failed)
}

/// The library filter of the shared filter flags, validated (dates,
/// status words, glob lengths) before any database is opened.
pub(crate) fn filter(args: FilterArgs) -> anyhow::Result<Filter> {
    let status = args
        .status
        .iter()
        .map(|s| query::parse_status(s))
        .collect::<Result<_, _>>()?;
    let time = |flag: &str, value: Option<String>, end_of_day: bool| {
        value
            .map(|t| query::parse_time(&t, end_of_day))
            .transpose()
            .map_err(|e| anyhow::anyhow!("{flag}: {e}"))
    };
    let f = Filter {
        job: args.job,
        label: args.label,
        test: args.test,
        machine: args.machine,
        kernel: args.kernel,
        status,
        since: time("--since", args.since, false)?,
        until: time("--until", args.until, true)?,
    };
    f.validate()?;
    Ok(f)
}

/// An existing warehouse opened for reading (never created), with its URL
/// as shown to people: every read's error names it, never its password.
pub(crate) struct Reader {
    pub(crate) wh: Warehouse,
    pub(crate) shown: String,
}

impl Reader {
    pub(crate) fn open(url: &str) -> anyhow::Result<Reader> {
        Ok(Reader {
            wh: Warehouse::open(url)?,
            shown: store::display_url(url),
        })
    }

    /// `reading WHAT from URL` (the password removed).
    pub(crate) fn context(&self, what: &str) -> String {
        format!("reading {what} from {}", self.shown)
    }

    /// Streams `query` into `sink`; an error says what was read from where.
    pub(crate) fn read(
        &mut self,
        query: &ExportQuery,
        sink: &mut dyn tko::query::Sink,
        what: &str,
    ) -> anyhow::Result<()> {
        let context = self.context(what);
        self.wh.export(query, sink).context(context)?;
        Ok(())
    }
}

/// Each path must be an existing directory; says which is not and why.
pub(crate) fn check_dirs(paths: &[std::path::PathBuf]) -> anyhow::Result<()> {
    for path in paths {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => anyhow::bail!("{}: not a directory", path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                anyhow::bail!("{}: no such file or directory", path.display())
            }
            Err(e) => anyhow::bail!("{}: {e}", path.display()),
        }
    }
    Ok(())
}
