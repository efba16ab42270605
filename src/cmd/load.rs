//! The commands that write a warehouse from results trees: `tko load`
//! (the post-job step), `tko backfill`, `tko watch`, and `tko db` for the
//! schema itself.

use super::check_dirs;
use crate::cli::{self, BackfillArgs, DbAction, DbArgs, JobsArgs, LoadArgs, RunArgs, StatsFormat};
use crate::ui;
use anyhow::Context;
use std::io::{self, Write};
use std::process::ExitCode;
use tko::{backfill, store};

pub(crate) fn db(args: DbArgs) -> anyhow::Result<ExitCode> {
    let url = &args.db.db;
    let shown = store::display_url(url);
    let applied = match args.action {
        DbAction::Status { format } => {
            // Reading only: never creates a warehouse.
            let report = store::open_existing(url)?
                .into_store()
                .status()
                .context("reading status")?;
            write_status(&report, format)?;
            return Ok(ExitCode::SUCCESS);
        }
        DbAction::Init => store::open(url)?.init(),
        DbAction::Migrate => store::open(url)?.migrate(),
    }
    .with_context(|| format!("updating the schema of {shown}"))?;
    if applied.is_empty() {
        println!("{shown}: schema is up to date");
    } else {
        let list: Vec<String> = applied.iter().map(u32::to_string).collect();
        println!("{shown}: applied schema version(s) {}", list.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// Jobs `tko load` parses and loads per chunk: memory holds one chunk of
/// job trees (bounded in input bytes too, see `backfill::Options`),
/// however many are given.
const CHUNK_JOBS: usize = 256;

/// `tko db status` as text or JSON.
fn write_status(report: &store::StatusReport, format: StatsFormat) -> anyhow::Result<()> {
    match format {
        StatsFormat::Text => println!("{}", report.to_string().trim_end()),
        StatsFormat::Json => {
            let tables: Vec<serde_json::Value> = report
                .tables
                .iter()
                .map(|(name, rows)| serde_json::json!({"name": name, "rows": rows}))
                .collect();
            let j = serde_json::json!({
                "backend": report.backend,
                "schema_version": report.schema_version,
                "latest_version": report.latest_version,
                "tables": tables,
            });
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
    }
    Ok(())
}

/// What differs between `tko load` and `tko backfill`: both run the
/// backfill pipeline; `load` always reads the jobs (no metadata shortcut).
struct LoaderRun<'a> {
    jobs: &'a JobsArgs,
    run: &'a RunArgs,
    db: &'a str,
    opts: backfill::Options,
    batch: Option<usize>,
    /// Connections loading at once where the store allows it.
    writers: usize,
}

/// `tko load` and `tko backfill`: checks the paths, opens the warehouse,
/// runs the pipeline with progress, prints the summary, and turns it into
/// the exit status.
fn run_loader(r: LoaderRun<'_>) -> anyhow::Result<ExitCode> {
    check_dirs(&r.jobs.paths)?;
    anyhow::ensure!(
        r.run.lock_timeout.is_finite() && r.run.lock_timeout >= 0.0,
        "--lock-timeout must be a number of seconds >= 0"
    );
    let url = r.db;
    let shown = store::display_url(url);
    let Connections {
        mut store,
        mut reader,
        mut more,
    } = connect(url, r.opts.dry_run, r.writers)?;
    if let Some(b) = r.batch {
        for s in std::iter::once(&mut store).chain(more.iter_mut()) {
            s.set_batch_jobs(b);
        }
    }
    ui::install_ctrl_c().context("installing the Ctrl-C handler")?;
    let verbosity = if r.run.quiet {
        ui::Verbosity::Quiet
    } else if r.run.verbose {
        ui::Verbosity::Verbose
    } else {
        ui::Verbosity::Normal
    };
    let opts = backfill::Options {
        lock_timeout: std::time::Duration::from_secs_f64(r.run.lock_timeout),
        ..r.opts
    };
    let mut reporter = ui::Reporter::new(verbosity);
    let mut writers: Vec<&mut (dyn store::Store + 'static)> = std::iter::once(store.as_mut())
        .chain(more.iter_mut().map(|s| s.as_mut()))
        .collect();
    let summary = backfill::run_with(
        &mut writers,
        reader.as_mut(),
        &r.jobs.paths,
        &opts,
        &ui::STOP,
        &mut reporter,
    )
    .with_context(|| format!("loading into {shown}"))?;
    reporter.finish();
    for (phase, secs) in store::postgres::timing::phases() {
        eprintln!("tko: TKO_PG_TIMING {phase}: {secs:.3} s");
    }
    for e in &summary.walk_errors {
        eprintln!("tko: {e}");
    }
    let verdict = summary.verdict();
    if verdict == backfill::Verdict::NothingFound {
        eprintln!(
            "tko: no job directory found under {} (a job directory holds status.log, status, keyval or .autoserv_execute)",
            r.jobs
                .paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match r.run.format {
        StatsFormat::Json => ui::write_summary_json(
            &mut out,
            &summary,
            opts.dry_run,
            &shown,
            verdict.exit_code(),
        )?,
        StatsFormat::Text if !r.run.quiet => {
            ui::write_summary_text(&mut out, &summary, opts.dry_run, &shown)?
        }
        StatsFormat::Text => {}
    }
    out.flush()?;
    Ok(ExitCode::from(verdict.exit_code()))
}

/// The post-job parse step: a backfill of the given jobs that always reads
/// them (no metadata shortcut).
pub(crate) fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    run_loader(LoaderRun {
        jobs: &args.jobs,
        run: &args.run,
        db: &args.db.db,
        opts: backfill::Options {
            level: args.jobs.level,
            threads: args.jobs.threads,
            force: args.force,
            verify: true,
            chunk_jobs: CHUNK_JOBS,
            ..backfill::Options::default()
        },
        batch: None,
        writers: 1,
    })
}

pub(crate) fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    run_loader(LoaderRun {
        jobs: &args.jobs,
        run: &args.run,
        db: &args.db.db,
        opts: backfill::Options {
            level: args.jobs.level,
            threads: args.jobs.threads,
            dry_run: args.dry_run,
            force: args.force,
            verify: args.verify,
            chunk_jobs: args.batch.max(1),
            ..backfill::Options::default()
        },
        batch: Some(args.batch),
        writers: usize::from(args.writers),
    })
}

/// `tko watch`: follows running jobs until Ctrl-C or SIGTERM.
pub(crate) fn watch(args: cli::WatchArgs) -> anyhow::Result<ExitCode> {
    check_dirs(&args.roots)?;
    let poll = match args.poll {
        Some(s) if s.is_finite() && s > 0.0 => Some(std::time::Duration::from_secs_f64(s)),
        Some(_) => anyhow::bail!("--poll must be a number of seconds > 0"),
        None => None,
    };
    let url = &args.db.db;
    let shown = store::display_url(url);
    let mut store = store::open(url)?;
    store
        .init()
        .with_context(|| format!("preparing the schema of {shown}"))?;
    let mut reader = store::open(url)?;
    ui::install_ctrl_c().context("installing the Ctrl-C handler")?;
    tko::watch::stop_on_sigterm();
    let opts = tko::watch::Options {
        roots: args.roots,
        level: args.level,
        poll,
        ..tko::watch::Options::default()
    };
    eprintln!("tko: watching into {shown}");
    tko::watch::run(
        store.as_mut(),
        reader.as_mut(),
        &opts,
        &ui::STOP,
        &mut StderrReport,
    )
    .with_context(|| format!("watching into {shown}"))?;
    eprintln!("tko: stopped");
    Ok(ExitCode::SUCCESS)
}

/// `tko watch` lines on stderr.
struct StderrReport;

impl tko::watch::Report for StderrReport {
    fn say(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

/// The connections of a load: the first writer (its schema prepared,
/// unless a dry run), the reader the scan checks the ledger through, and
/// the other writers.
struct Connections {
    store: Box<dyn store::Store>,
    reader: Box<dyn store::Store>,
    more: Vec<Box<dyn store::Store>>,
}

/// Opens the [`Connections`] of a load with `writers` writers where the
/// store allows more than one (PostgreSQL, not a dry run). A writer
/// connection the server refuses (a role at its connection limit, say)
/// leaves the run with fewer, said once. On PostgreSQL the reader and the
/// first writer are made at the same time, then the other writers while
/// the schema is checked: each connection is a round trip and a new server
/// process, some 4 ms apiece, most of what a one-job `tko load` or an
/// unchanged re-run spends before its first job.
fn connect(url: &str, dry_run: bool, writers: usize) -> anyhow::Result<Connections> {
    let shown = store::display_url(url);
    let at_once = store::is_postgres_url(url);
    let extra = if at_once && !dry_run {
        writers.saturating_sub(1)
    } else {
        0
    };
    std::thread::scope(|scope| {
        // The reader and the first writer first: a server with room for
        // only two must refuse an extra writer, never the reader.
        // (A SQLite reader is opened once the schema is there.)
        let reader = at_once.then(|| scope.spawn(|| open_for_backfill(url, dry_run)));
        let mut store = open_for_backfill(url, dry_run)?;
        let reader = reader.map(|r| r.join().expect("opening a connection does not panic"));
        let reader = reader.transpose()?;
        let others: Vec<_> = (0..extra)
            .map(|_| scope.spawn(|| store::open(url)))
            .collect();
        if !dry_run {
            store
                .init()
                .with_context(|| format!("preparing the schema of {shown}"))?;
        }
        let reader = match reader {
            Some(r) => r,
            None => open_for_backfill(url, dry_run)?,
        };
        let mut more = Vec::new();
        let mut refused = None;
        for other in others {
            match other.join().expect("opening a connection does not panic") {
                Ok(s) => more.push(s),
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        if let Some(e) = refused {
            eprintln!(
                "tko: warning: loading with {} writer(s), not {writers}: {}",
                more.len() + 1,
                store::error_chain(&e)
            );
        }
        Ok(Connections {
            store,
            reader,
            more,
        })
    })
}

/// The store of a backfill. A dry run writes nothing, so it never creates
/// a warehouse: without one it compares against an empty one in memory.
fn open_for_backfill(url: &str, dry_run: bool) -> anyhow::Result<Box<dyn store::Store>> {
    if !dry_run {
        return Ok(store::open(url)?);
    }
    match store::open_existing(url) {
        Ok(s) => Ok(s.into_store()),
        Err(store::Error::NoWarehouse { .. }) => Ok(store::open("sqlite::memory:")?),
        Err(e) => Err(e.into()),
    }
}
