//! Command-line flags (clap derive). Only the binary uses this module; the
//! library never sees clap. Each subcommand's flags are turned into library
//! calls in `main.rs`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// tko: Autotest results directories into a TKO-compatible results warehouse.
///
/// Exit status: 0 everything found was parsed (and loaded, or already
/// current); 1 something in this run needs attention: a job that could not
/// be read or loaded, a job still locked after --lock-timeout, a job parsed
/// or loaded in this run with an error diagnostic (input Autotest's parser
/// would lose the job on; tko keeps the rest), a directory that could not
/// be walked, an interrupted run; 2 fatal or nothing found (bad arguments,
/// no such path, no job directory under it, unreachable database). Job
/// directories without a status file (normal after a failed verify) are
/// counted in the summary, not an error.
#[derive(Debug, Parser)]
#[command(name = "tko", version, about, long_about)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Parse job directories or results roots and print what was found
    /// (no database).
    Parse(ParseArgs),
    /// Parse jobs and load them into the warehouse (the post-job parse
    /// step; `autotest-tko-parse -r` semantics: a tag already loaded is
    /// replaced in place, unchanged jobs are skipped).
    Load(LoadArgs),
    /// Create, upgrade or inspect the warehouse schema.
    Db(DbArgs),
    /// Load whole results roots (years of jobs): parallel, resumable,
    /// skipping unchanged jobs, with progress.
    ///
    /// Unchanged jobs are recognised first by metadata (size, mtime and
    /// inode of the status log, keyval and .autoserv_execute) without
    /// reading them, then by content fingerprint.
    /// Each job is read under Autotest's `.parse.lock` (a job locked by a
    /// running post-job parse is waited for after the others, up to
    /// --lock-timeout, then reported). Killing it at any moment loses
    /// nothing: run it again and it resumes. Ctrl-C stops after the current
    /// batch.
    Backfill(BackfillArgs),
    /// Follow running jobs into the warehouse: new job directories are
    /// picked up within seconds, a running job's tests are written as
    /// RUNNING rows as its status log grows, and a job that ends is loaded
    /// exactly as `tko load` loads it. Ctrl-C or SIGTERM stop it.
    Watch(WatchArgs),
    /// Export jobs, tests, attributes, iteration attributes, perf values or
    /// job keyvals as CSV or JSON Lines (streamed).
    Export(ExportArgs),
    /// One line per test of one job: passes, fails, elapsed time, starts,
    /// last status and message (from the warehouse, or a job directory read
    /// directly).
    Summary(SummaryArgs),
    /// Totals, pass rates, counts by status, machine, label and kernel,
    /// durations, most executed and flaky tests.
    Stats(StatsArgs),
    /// What the parser recorded about the loaded jobs (file, line,
    /// severity, message), from `tko_diagnostics`.
    Diagnostics(DiagnosticsArgs),
    /// One test's runs, newest first (time, job, machine, kernel, status,
    /// reason), and how often it switched between pass and fail.
    History(HistoryArgs),
    /// What changed between two sets of jobs: regressions, fixes, still
    /// failing, new and missing tests, and perf keys that moved.
    ///
    /// Sets selected by kernel read a per-kernel cache of perf moments
    /// (`tko_perf_cache`): the first compare of a kernel builds it from
    /// every perf row (seconds on a large warehouse), later ones read it;
    /// any load of that kernel's tests forgets it. Same answer either way.
    ///
    /// Exit status: 0 nothing regressed, 1 a regression or a flagged perf
    /// change, 2 errors.
    Compare(CompareArgs),
    /// Delete whole jobs by tag (all their rows, users' labels on their
    /// tests too), printing what was removed; a later load or backfill
    /// skips them unless --force.
    ///
    /// Exit status: 0 every tag deleted, 1 a tag not in the warehouse (the
    /// others are deleted), 2 errors.
    Delete(DeleteArgs),
    /// Delete whole jobs older than a date (optionally only those with a
    /// matching label), in batches, printing what was removed; a later
    /// load or backfill skips them unless --force.
    Prune(PruneArgs),
    /// Serve the warehouse read-only over HTTP: a JSON API (`/api/...`,
    /// described at `/api/openapi.json`) and HTML pages (jobs, one job,
    /// statistics, running jobs, history).
    ///
    /// Listens on 127.0.0.1:8080 by default; a non-loopback address needs
    /// --token-file (a bearer token required on every request).
    Serve(ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish or
    /// powershell) on stdout, e.g. `tko completions bash >
    /// /etc/bash_completion.d/tko`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) on stdout, e.g. `tko man >
    /// /usr/local/share/man/man1/tko.1`.
    Man,
}

/// Flags shared by `tko delete` and `tko prune`.
#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// Print what would be deleted (the same deletes, rolled back); write
    /// nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Jobs per database transaction (each job is deleted whole).
    #[arg(long, default_value_t = tko::store::DEFAULT_BATCH_JOBS)]
    pub(crate) batch: usize,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}

/// `tko delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// Job tags (exact).
    #[arg(required = true)]
    pub(crate) tags: Vec<String>,
    /// Dry run, batch size, warehouse.
    #[command(flatten)]
    pub(crate) remove: RemoveArgs,
}

/// `tko prune`.
#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete jobs whose time (finished, else started, else queued) is
    /// before this: `YYYY-MM-DD` (midnight) or `YYYY-MM-DD HH:MM[:SS]`, UTC.
    /// Jobs with no time are kept.
    #[arg(long, value_name = "TIME")]
    pub(crate) before: String,
    /// Only jobs whose label matches this glob.
    #[arg(long, value_name = "GLOB")]
    pub(crate) label: Option<String>,
    /// Dry run, batch size, warehouse.
    #[command(flatten)]
    pub(crate) remove: RemoveArgs,
}

/// `tko completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// `tko backfill`.
#[derive(Debug, Args)]
pub(crate) struct BackfillArgs {
    /// Say what would be loaded, reloaded and skipped; write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Reload every job, changed or not, also replacing a tag stored from
    /// another results directory.
    #[arg(long)]
    pub(crate) force: bool,
    /// Read every job even when its metadata is unchanged (catches in-place
    /// edits of test keyvals); unchanged content is still not rewritten.
    #[arg(long)]
    pub(crate) verify: bool,
    /// Jobs per database transaction (and per parsed chunk, which also
    /// stops at 2 MiB of input read).
    #[arg(long, default_value_t = tko::backfill::DEFAULT_BATCH_JOBS)]
    pub(crate) batch: usize,
    /// PostgreSQL connections loading batches at the same time (one
    /// streams its rows while the server works through another's). SQLite
    /// has one writer whatever this says.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub(crate) writers: u16,
    /// Output, progress and locks.
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
    /// Results roots.
    #[command(flatten)]
    pub(crate) jobs: JobsArgs,
}

/// Where the warehouse is.
#[derive(Debug, Args)]
pub(crate) struct DbUrl {
    /// Warehouse URL: `postgres://user@host/db` (libpq URL; `PGHOST`,
    /// `PGUSER`, `PGPASSWORD`, `~/.pgpass`, `PGSSLMODE`... fill what it leaves
    /// out, as for psql) or `sqlite:PATH`. Default: `$TKO_DB`, else
    /// `sqlite:tko.db` in the current directory (created by commands that
    /// write; commands that only read never create one).
    #[arg(
        long,
        env = "TKO_DB",
        hide_env_values = true,
        default_value = tko::store::DEFAULT_URL,
        global = true
    )]
    pub(crate) db: String,
}

/// `tko load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Reload jobs whose content fingerprint is unchanged, and replace a tag
    /// stored from another results directory.
    #[arg(long)]
    pub(crate) force: bool,
    /// Output, progress and locks.
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
    /// Jobs to load.
    #[command(flatten)]
    pub(crate) jobs: JobsArgs,
}

/// What `load` and `backfill` print, and how long they wait for locks.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// No progress and no summary (problems only).
    #[arg(short, long, conflicts_with = "verbose")]
    pub(crate) quiet: bool,
    /// A line for every job read, not only for jobs with problems.
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// Seconds to wait for a job whose `.parse.lock` another parser holds
    /// (waited for after the other jobs, holding no lock); then the job is
    /// reported as locked and the exit status is 1.
    #[arg(long, value_name = "SECS", default_value_t = tko::lock::DEFAULT_TIMEOUT.as_secs_f64())]
    pub(crate) lock_timeout: f64,
    /// Format of the final summary (on stdout).
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: StatsFormat,
}

/// `tko db`.
#[derive(Debug, Args)]
pub(crate) struct DbArgs {
    /// What to do with the schema.
    #[command(subcommand)]
    pub(crate) action: DbAction,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}

/// `tko db` actions.
#[derive(Debug, Subcommand)]
pub(crate) enum DbAction {
    /// Create the schema (idempotent: an existing schema is brought up to
    /// date).
    Init,
    /// Apply newer schema versions in place.
    Migrate,
    /// Show the schema version and row counts per table.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: StatsFormat,
    },
}

/// Flags shared by everything that finds jobs.
#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// Path components in the job tag (`autotest-tko-parse -l`). Default:
    /// 2 for job directories in the scheduler's `<id>-<owner>/<host>`
    /// layout (`123-alice/host1`, as the scheduler parses them), else 1.
    #[arg(short, long)]
    pub(crate) level: Option<usize>,
    /// Worker threads for parsing (0 = one per core).
    #[arg(short = 'j', long, default_value_t = 0)]
    pub(crate) threads: usize,
    /// Job directories (parsed as `autotest-tko-parse -o` would) or results
    /// roots holding many jobs (walked to find them).
    #[arg(required = true)]
    pub(crate) paths: Vec<PathBuf>,
}

/// `tko watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Path components in the job tag (as for `tko load`).
    #[arg(short, long)]
    pub(crate) level: Option<usize>,
    /// Poll the roots every SECS seconds instead of using inotify (for
    /// network file systems).
    #[arg(long, value_name = "SECS")]
    pub(crate) poll: Option<f64>,
    /// Results roots (or job directories) to watch.
    #[arg(required = true)]
    pub(crate) roots: Vec<PathBuf>,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}

/// `tko parse`.
#[derive(Debug, Args)]
pub(crate) struct ParseArgs {
    /// Print one JSON object per job (JSON Lines) instead of a summary.
    #[arg(long)]
    pub(crate) json: bool,
    /// Jobs to parse.
    #[command(flatten)]
    pub(crate) jobs: JobsArgs,
}

/// `tko export` row kinds.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportKind {
    /// One row per job.
    Jobs,
    /// One row per test.
    Tests,
    /// One row per test attribute.
    Attributes,
    /// One row per iteration attribute.
    Iterations,
    /// One row per perf value (iteration result).
    Perf,
    /// One row per job keyval.
    Keyvals,
    /// One row per parser diagnostic.
    Diagnostics,
}

/// Output format of `tko export`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// JSON Lines.
    Json,
}

/// Output format of `tko stats`, `tko summary` and `tko db status`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum StatsFormat {
    /// Human-readable tables.
    Text,
    /// One JSON object.
    Json,
}

/// Row filters shared by `tko export` and `tko stats`.
#[derive(Debug, Args)]
pub(crate) struct FilterArgs {
    /// Job tag glob (`*`, `?`; `\` escapes).
    #[arg(long, value_name = "GLOB")]
    pub(crate) job: Option<String>,
    /// Job label glob.
    #[arg(long, value_name = "GLOB")]
    pub(crate) label: Option<String>,
    /// Test name glob.
    #[arg(long, value_name = "GLOB")]
    pub(crate) test: Option<String>,
    /// Machine (hostname) glob.
    #[arg(long, value_name = "GLOB")]
    pub(crate) machine: Option<String>,
    /// Kernel base version glob (e.g. `2.6.35*`).
    #[arg(long, value_name = "GLOB")]
    pub(crate) kernel: Option<String>,
    /// Test status words, comma-separated, any case (e.g. `FAIL,ERROR`):
    /// GOOD, FAIL, ERROR, ABORT, WARN, TEST_NA, NOSTATUS, ALERT, RUNNING, BUG.
    #[arg(long, value_name = "S[,S]", value_delimiter = ',')]
    pub(crate) status: Vec<String>,
    /// Finished at or after: `YYYY-MM-DD` or `YYYY-MM-DD HH:MM[:SS]`, in
    /// UTC (the warehouse stores UTC).
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// Finished at or before, in UTC (a date alone includes that whole
    /// day).
    #[arg(long, value_name = "TIME")]
    pub(crate) until: Option<String>,
}

/// `tko export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// What rows to export.
    #[arg(value_enum)]
    pub(crate) kind: ExportKind,
    /// Filters.
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// `perf` only: one row per test iteration, one column per perf key.
    #[arg(long)]
    pub(crate) wide: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub(crate) format: ExportFormat,
    /// Write to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub(crate) out: Option<PathBuf>,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}

/// `tko summary`.
#[derive(Debug, Args)]
pub(crate) struct SummaryArgs {
    /// A job tag in the warehouse, or a job directory (read directly, no
    /// database).
    #[arg(required_unless_present = "running", conflicts_with = "running")]
    pub(crate) job: Option<String>,
    /// Every job in the warehouse with a RUNNING test (newest job tag
    /// last), one summary each.
    #[arg(long)]
    pub(crate) running: bool,
    /// For a directory: path components in the job tag (as `tko parse`;
    /// default: detected the same way).
    #[arg(short, long)]
    pub(crate) level: Option<usize>,
    /// Output format (`json`: JSON Lines, one object per test: `job`,
    /// `test`, `subdir`, `passes`, `fails`, `elapsed_s`, `starts`,
    /// `running`, `last_status`, `information`, `status_time`).
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: StatsFormat,
    /// Warehouse (for a job tag).
    #[command(flatten)]
    pub(crate) db: DbUrl,
}

/// `tko stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Filters.
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: StatsFormat,
    /// Entries per list (machines, labels, kernels, most executed, flaky);
    /// 0 lists all.
    #[arg(long, value_name = "N", default_value_t = tko::report::stats::DEFAULT_TOP)]
    pub(crate) top: usize,
    /// Instead of the totals: tests whose result switched between pass and
    /// fail at least `--switches` times over their last `--last` runs on one
    /// kernel and machine group (or machine when the group is empty).
    #[arg(long)]
    pub(crate) flaky: bool,
    /// With --flaky: runs looked at per test, kernel and group.
    #[arg(long, value_name = "N", default_value_t = 20, requires = "flaky")]
    pub(crate) last: usize,
    /// With --flaky: pass/fail switches that make a test flaky.
    #[arg(long, value_name = "K", default_value_t = 3, requires = "flaky")]
    pub(crate) switches: u64,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}

/// Output format of `tko diagnostics` and `tko compare`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum DiagnosticsFormat {
    /// Human-readable text.
    Text,
    /// CSV (RFC 4180, a header row).
    Csv,
    /// JSON (diagnostics: JSON Lines).
    Json,
}

/// `tko diagnostics`.
#[derive(Debug, Args)]
pub(crate) struct DiagnosticsArgs {
    /// Filters (test filters keep jobs with a matching test).
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: DiagnosticsFormat,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}

/// `tko history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    /// The test name (exact, not a glob).
    pub(crate) test: String,
    /// Machine (hostname) glob.
    #[arg(long, value_name = "GLOB")]
    pub(crate) machine: Option<String>,
    /// Kernel base version glob.
    #[arg(long, value_name = "GLOB")]
    pub(crate) kernel: Option<String>,
    /// The newest N runs (0: all).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub(crate) last: u64,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: StatsFormat,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}

/// `tko serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address and port to listen on (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// File holding the bearer token clients must send
    /// (`Authorization: Bearer TOKEN`); required off loopback.
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<std::path::PathBuf>,
    /// Most warehouse connections open at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub(crate) pool: usize,
    /// PostgreSQL statement timeout, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub(crate) statement_timeout: u64,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}

/// `tko compare`.
#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// BASE job tag (or select BASE with --base-kernel / --base-label).
    pub(crate) base: Option<String>,
    /// NEW job tag (or select NEW with --new-kernel / --new-label).
    pub(crate) new: Option<String>,
    /// BASE: jobs whose tests ran this kernel (glob).
    #[arg(long, value_name = "GLOB")]
    pub(crate) base_kernel: Option<String>,
    /// NEW: jobs whose tests ran this kernel (glob).
    #[arg(long, value_name = "GLOB")]
    pub(crate) new_kernel: Option<String>,
    /// BASE: jobs with this label (glob).
    #[arg(long, value_name = "GLOB")]
    pub(crate) base_label: Option<String>,
    /// NEW: jobs with this label (glob).
    #[arg(long, value_name = "GLOB")]
    pub(crate) new_label: Option<String>,
    /// Both sets: only this machine (glob).
    #[arg(long, value_name = "GLOB")]
    pub(crate) machine: Option<String>,
    /// Both sets: only tests with this name (glob).
    #[arg(long, value_name = "GLOB")]
    pub(crate) test: Option<String>,
    /// Match tests per machine too (default: by test name and subdir).
    #[arg(long)]
    pub(crate) by_machine: bool,
    /// Flag perf keys whose mean moved by more than PCT percent...
    #[arg(long, value_name = "PCT", default_value_t = 5.0)]
    pub(crate) threshold: f64,
    /// ...and whose Welch's t-test p-value is below P.
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub(crate) alpha: f64,
    /// Output format (`csv`: one table, tests then perf keys).
    #[arg(long, value_enum, default_value = "text")]
    pub(crate) format: DiagnosticsFormat,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}
