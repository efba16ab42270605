//! The `tko` binary: parses flags, calls library stages, prints the error
//! chain once and maps the outcome to an exit code (0 clean, 1 some job had
//! errors, 2 fatal).

mod cli;

use anyhow::Context;
use clap::Parser;
use cli::{
    BackfillArgs, Cli, Command, DbAction, DbArgs, ExportArgs, ExportFormat, ExportKind, FilterArgs,
    JobsArgs, LoadArgs, ParseArgs, StatsArgs, StatsFormat, SummaryArgs,
};
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use tko::export::{self, ExportQuery, Filter, Kind, Warehouse};
use tko::model::{Job, Status};
use tko::store::{self, Action};
use tko::{backfill, discover, ingest, report};

fn main() -> ExitCode {
    // Like other Unix filters, end quietly when the reader goes away
    // (`tko parse --json ROOT | head`) instead of panicking on EPIPE.
    // SAFETY: restoring the default disposition of one signal before any
    // thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tko: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Parse(args) => parse(args),
        Command::Load(args) => load(args),
        Command::Db(args) => db(args),
        Command::Backfill(args) => backfill(args),
        Command::Export(args) => export_cmd(args),
        Command::Summary(args) => summary(args),
        Command::Stats(args) => stats(args),
    }
}

/// Jobs parsed (and, for `load`, loaded) per round: memory holds one
/// round of job trees, however large the root.
const CHUNK_JOBS: usize = 256;

/// Input bytes (`ingest::input_bytes`) parsed per round by `tko parse`: a
/// job tree takes a few times its input, so a round of large jobs stays
/// bounded however many there are (a larger job goes alone).
const ROUND_BYTES: u64 = 16 << 20;

/// Finds the jobs under the given paths; walk problems are printed, and
/// fatal when nothing could be found at all. Returns the job directories
/// and whether any walk problem occurred.
fn find(args: &JobsArgs) -> anyhow::Result<(Vec<discover::JobDir>, bool)> {
    if args.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads)
            .build_global()
            .context("setting up the parser threads")?;
    }
    let (dirs, errors) = discover::find_jobs(&args.paths, args.level);
    for e in &errors {
        eprintln!("tko: {e}");
    }
    if dirs.is_empty() && !errors.is_empty() {
        anyhow::bail!("no job directories found");
    }
    Ok((dirs, !errors.is_empty()))
}

fn parse(args: ParseArgs) -> anyhow::Result<ExitCode> {
    let (dirs, mut failed) = find(&args.jobs)?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    for chunk in ingest::Rounds::new(&dirs, CHUNK_JOBS, ROUND_BYTES, ingest::input_bytes) {
        for job in ingest::parse_jobs(chunk) {
            let job = match job {
                Ok(job) => job,
                Err(e) => {
                    eprintln!("tko: {e}");
                    failed = true;
                    continue;
                }
            };
            if args.json {
                serde_json::to_writer(&mut out, &job).context("writing JSON")?;
                writeln!(out)?;
            } else {
                write_summary(&mut out, &job)?;
            }
            failed |= job.has_errors();
        }
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A short human summary of one job: tests by status and diagnostics.
fn write_summary(out: &mut impl Write, job: &Job) -> io::Result<()> {
    let mut counts = Vec::new();
    for s in Status::ALL {
        let n = job.tests.iter().filter(|t| t.status == s).count();
        if n > 0 {
            counts.push(format!("{n} {s}"));
        }
    }
    let counts = if counts.is_empty() {
        "no tests".to_string()
    } else {
        counts.join(", ")
    };
    writeln!(
        out,
        "{}: {} test(s): {} [machine {}, status log v{}]",
        job.tag,
        job.tests.len(),
        counts,
        if job.machine.is_empty() {
            "?".into()
        } else {
            tko::text::stored(&job.machine)
        },
        job.status_version
    )?;
    for d in &job.diagnostics {
        writeln!(out, "  {d}")?;
    }
    Ok(())
}

fn db(args: DbArgs) -> anyhow::Result<ExitCode> {
    let url = &args.db.db;
    let mut store = store::open(url).with_context(|| format!("opening {url}"))?;
    match args.action {
        DbAction::Init | DbAction::Migrate => {
            let applied = match args.action {
                DbAction::Init => store.init(),
                _ => store.migrate(),
            }
            .with_context(|| format!("updating the schema of {url}"))?;
            if applied.is_empty() {
                println!("{url}: schema is up to date");
            } else {
                let list: Vec<String> = applied.iter().map(u32::to_string).collect();
                println!("{url}: applied schema version(s) {}", list.join(", "));
            }
        }
        DbAction::Status => {
            let report = store.status().context("reading status")?;
            println!("{}", report.to_string().trim_end());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one line per job as `tko load` reports it.
struct LoadReport {
    quiet: bool,
}

impl backfill::Observer for LoadReport {
    fn job(&mut self, job: &Job, outcome: backfill::JobOutcome<'_>) {
        match outcome {
            backfill::JobOutcome::Loaded(o) => {
                let what = match o.action {
                    Action::Inserted => "inserted",
                    Action::Replaced => "replaced",
                    Action::Skipped => "unchanged, skipped",
                };
                if !self.quiet {
                    println!(
                        "{}: {what} (job_idx {}, {} tests, {} diagnostics)",
                        job.tag,
                        o.job_idx,
                        job.tests.len(),
                        job.diagnostics.len()
                    );
                }
            }
            backfill::JobOutcome::Failed(e) => eprintln!("{}: not loaded: {e}", job.tag),
            backfill::JobOutcome::NoStatusFile => eprintln!(
                "{}: not loaded: no status file (neither status.log nor status)",
                job.tag
            ),
            backfill::JobOutcome::WouldBe(_) => {}
        }
        if job.has_errors() && !self.quiet {
            for d in job
                .diagnostics
                .iter()
                .filter(|d| d.severity == tko::model::Severity::Error)
            {
                eprintln!("{}: {d}", job.tag);
            }
        }
    }
}

/// The post-job parse step: a backfill of the given jobs that always reads
/// them (no metadata shortcut) and waits for their `.parse.lock`.
fn load(args: LoadArgs) -> anyhow::Result<ExitCode> {
    for path in &args.jobs.paths {
        anyhow::ensure!(path.is_dir(), "{}: not a directory", path.display());
    }
    let url = &args.db.db;
    let mut store = store::open(url).with_context(|| format!("opening {url}"))?;
    store
        .init()
        .with_context(|| format!("preparing the schema of {url}"))?;
    let opts = backfill::Options {
        level: args.jobs.level,
        threads: args.jobs.threads,
        force: args.force,
        verify: true,
        wait_for_locks: true,
        chunk_jobs: CHUNK_JOBS,
        ..backfill::Options::default()
    };
    let never = AtomicBool::new(false);
    let mut report = LoadReport { quiet: args.quiet };
    let mut reader = store::open(url).with_context(|| format!("opening {url}"))?;
    let s = backfill::run(
        store.as_mut(),
        reader.as_mut(),
        &args.jobs.paths,
        &opts,
        &never,
        &mut report,
    )
    .with_context(|| format!("loading into {url}"))?;
    for e in &s.walk_errors {
        eprintln!("tko: {e}");
    }
    if !args.quiet {
        println!(
            "{} job(s) loaded, {} unchanged, {} failed; {} tests, {} perf values written to {url}",
            s.loaded(),
            s.unchanged_by_content,
            s.failed.len(),
            s.rows.tests,
            s.rows.iteration_results
        );
    }
    Ok(if s.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Set by Ctrl-C; backfill stops after the current batch.
static STOP: AtomicBool = AtomicBool::new(false);

fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    for root in &args.jobs.paths {
        anyhow::ensure!(root.is_dir(), "{}: not a directory", root.display());
    }
    let url = &args.db.db;
    let mut store = store::open(url).with_context(|| format!("opening {url}"))?;
    if !args.dry_run {
        store
            .init()
            .with_context(|| format!("preparing the schema of {url}"))?;
    }
    store.set_batch_jobs(args.batch);
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("tko: stopping after the current batch (Ctrl-C again to quit now)");
    })
    .context("installing the Ctrl-C handler")?;
    let opts = backfill::Options {
        level: args.jobs.level,
        threads: args.jobs.threads,
        dry_run: args.dry_run,
        force: args.force,
        verify: args.verify,
        chunk_jobs: args.batch.max(1),
        ..backfill::Options::default()
    };
    let mut progress = Progress::new(args.quiet);
    let mut reader = store::open(url).with_context(|| format!("opening {url}"))?;
    let summary = backfill::run(
        store.as_mut(),
        reader.as_mut(),
        &args.jobs.paths,
        &opts,
        &STOP,
        &mut progress,
    )
    .with_context(|| format!("backfilling into {url}"))?;
    progress.finish();
    if !args.quiet {
        print_summary(&summary, args.dry_run, url);
    }
    for e in &summary.walk_errors {
        eprintln!("tko: {e}");
    }
    Ok(if summary.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Progress on stderr: a bar on a terminal, a line every few seconds
/// otherwise, nothing with `--quiet`.
enum Progress {
    Quiet,
    Bar(indicatif::ProgressBar),
    Lines(std::time::Instant),
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        use std::io::IsTerminal;
        if quiet {
            Progress::Quiet
        } else if io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} dirs  ETA {eta}  {msg}",
                )
                .expect("valid template"),
            );
            Progress::Bar(bar)
        } else {
            Progress::Lines(std::time::Instant::now())
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

impl backfill::Observer for Progress {
    /// A dry run lists the jobs it would write.
    fn job(&mut self, job: &Job, outcome: backfill::JobOutcome<'_>) {
        let what = match outcome {
            backfill::JobOutcome::WouldBe(Action::Inserted) => "would load (new)",
            backfill::JobOutcome::WouldBe(Action::Replaced) => "would reload (changed)",
            _ => return,
        };
        let line = format!("{what}: {} ({})", job.tag, job.tests.len());
        match self {
            Progress::Bar(bar) => bar.println(line),
            _ => println!("{line}"),
        }
    }

    fn progress(&mut self, s: &backfill::Summary) {
        match self {
            Progress::Quiet => {}
            Progress::Bar(bar) => {
                // The total known up front is the number of top-level
                // directories (a cheap count); jobs are found as they come.
                bar.set_length(s.units as u64);
                bar.set_position(s.units_done as u64);
                let rate = s.done as f64 / s.elapsed.as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "{} jobs ({rate:.0}/s): {} loaded, {} unchanged, {} failed",
                    s.done,
                    s.loaded(),
                    s.unchanged_by_metadata + s.unchanged_by_content,
                    s.failed.len()
                ));
            }
            Progress::Lines(last) => {
                if last.elapsed().as_secs() >= 5 {
                    *last = std::time::Instant::now();
                    let rate = s.done as f64 / s.elapsed.as_secs_f64().max(1e-9);
                    eprintln!(
                        "tko: {}/{} directories, {} jobs ({rate:.0} jobs/s), {} loaded, {} unchanged, {} failed",
                        s.units_done,
                        s.units,
                        s.done,
                        s.loaded(),
                        s.unchanged_by_metadata + s.unchanged_by_content,
                        s.failed.len()
                    );
                }
            }
        }
    }
}

fn print_summary(s: &backfill::Summary, dry_run: bool, url: &str) {
    let (verb, prefix) = if dry_run {
        ("would be ", "dry run: ")
    } else {
        ("", "")
    };
    println!(
        "{prefix}{} job(s) found in {:.1} s: {} new {verb}loaded, {} {verb}reloaded, {} unchanged ({} by metadata, {} by content), {} failed",
        s.found,
        s.elapsed.as_secs_f64(),
        s.inserted,
        s.replaced,
        s.unchanged_by_metadata + s.unchanged_by_content,
        s.unchanged_by_metadata,
        s.unchanged_by_content,
        s.failed.len()
    );
    if !dry_run {
        println!(
            "{} tests, {} test attributes, {} iteration attributes, {} perf values written to {url}",
            s.rows.tests, s.rows.test_attributes, s.rows.iteration_attributes, s.rows.iteration_results
        );
    }
    let show = |what: &str, list: &[String]| {
        if !list.is_empty() {
            let first: Vec<&str> = list.iter().take(5).map(String::as_str).collect();
            let more = if list.len() > 5 {
                format!(" and {} more", list.len() - 5)
            } else {
                String::new()
            };
            println!("{} {what}: {}{more}", list.len(), first.join(", "));
        }
    };
    for (tag, e) in s.failed.iter().take(5) {
        println!("failed: {tag}: {e}");
    }
    if s.failed.len() > 5 {
        println!("... {} more failures: SELECT tag, error FROM tko_ingest_ledger WHERE outcome = 'failed'", s.failed.len() - 5);
    }
    show(
        "job(s) loaded with error diagnostics (SELECT * FROM tko_diagnostics)",
        &s.with_errors,
    );
    show(
        "job dir(s) without a status file, not loaded",
        &s.no_status_file,
    );
    show(
        "job(s) locked by another parser (.parse.lock), not loaded",
        &s.locked,
    );
    if s.interrupted {
        println!(
            "interrupted: {} of {} directories scanned ({} jobs handled); run the same command again to resume",
            s.units_done, s.units, s.done
        );
    }
}

/// The library filter of the shared filter flags.
fn filter(args: FilterArgs) -> anyhow::Result<Filter> {
    let status = args
        .status
        .iter()
        .map(|s| {
            tko::model::Status::from_word(&s.to_ascii_uppercase())
                .with_context(|| format!("unknown status {s:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Filter {
        job: args.job,
        label: args.label,
        test: args.test,
        machine: args.machine,
        kernel: args.kernel,
        status,
        since: args
            .since
            .map(|t| export::parse_time(&t, false))
            .transpose()?,
        until: args
            .until
            .map(|t| export::parse_time(&t, true))
            .transpose()?,
    })
}

fn open_warehouse(url: &str) -> anyhow::Result<Warehouse> {
    Warehouse::open(url).with_context(|| format!("opening {url}"))
}

/// `tko export`: streams rows to stdout or `--out`.
fn export_cmd(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let kind = match args.kind {
        ExportKind::Jobs => Kind::Jobs,
        ExportKind::Tests => Kind::Tests,
        ExportKind::Attributes => Kind::Attributes,
        ExportKind::Iterations => Kind::Iterations,
        ExportKind::Perf => Kind::Perf,
        ExportKind::Keyvals => Kind::Keyvals,
    };
    if args.wide && !matches!(kind, Kind::Perf) {
        anyhow::bail!("--wide applies to `tko export perf` only");
    }
    let format = match args.format {
        ExportFormat::Csv => export::Format::Csv,
        ExportFormat::Json => export::Format::Json,
    };
    let query = ExportQuery {
        kind,
        filter: filter(args.filter)?,
        wide: args.wide,
    };
    let mut wh = open_warehouse(&args.db.db)?;
    let what = format!("exporting {} from {}", kind.name(), args.db.db);
    match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let out = io::BufWriter::with_capacity(1 << 16, file);
            export::write(&mut wh, &query, format, out).context(what)?;
        }
        None => {
            let stdout = io::stdout();
            let out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
            export::write(&mut wh, &query, format, out).context(what)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tko summary JOB`: a job directory is parsed directly; anything else is
/// a job tag in the warehouse.
fn summary(args: SummaryArgs) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let path = std::path::Path::new(&args.job);
    if path.is_dir() {
        let (dirs, errors) = discover::find_jobs(&[path.to_path_buf()], args.level);
        for e in &errors {
            eprintln!("tko: {e}");
        }
        if dirs.is_empty() {
            anyhow::bail!("no job directory found at {}", path.display());
        }
        for job in ingest::parse_jobs(&dirs) {
            let job = job?;
            let lines = report::summarize(&report::records_from_job(&job));
            report::write_summary(&mut out, &job.tag, &lines)?;
        }
    } else {
        let mut wh = open_warehouse(&args.db.db)?;
        let mut records = report::Records::default();
        let query = ExportQuery::new(Kind::Tests, Filter::job(&args.job));
        wh.export(&query, &mut records)
            .with_context(|| format!("reading job {} from {}", args.job, args.db.db))?;
        if records.records.is_empty() {
            anyhow::bail!(
                "no job {:?} in {} (and no such directory)",
                args.job,
                args.db.db
            );
        }
        let lines = report::summarize(&records.records);
        report::write_summary(&mut out, &args.job, &lines)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `tko stats`: aggregates the filtered `tests` export.
fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let query = ExportQuery::new(Kind::Tests, filter(args.filter)?);
    let mut wh = open_warehouse(&args.db.db)?;
    let mut builder = report::StatsBuilder::default();
    wh.export(&query, &mut builder)
        .with_context(|| format!("reading tests from {}", args.db.db))?;
    let st = builder.build();
    let stdout = io::stdout();
    let out = io::BufWriter::new(stdout.lock());
    match args.format {
        StatsFormat::Text => report::write_stats_text(out, &st)?,
        StatsFormat::Json => report::write_stats_json(out, &st)?,
    }
    Ok(ExitCode::SUCCESS)
}
