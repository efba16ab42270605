//! Command-line flags (clap derive). Only the binary uses this module; the
//! library never sees clap. Each subcommand's flags are turned into library
//! calls in `main.rs`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// tko: Autotest results directories into a TKO-compatible results warehouse.
///
/// Exit status: 0 when everything parsed cleanly, 1 when some job has an
/// error diagnostic (a file or line Autotest's parser would have lost the job
/// on; the rest of the job is still parsed), 2 on fatal errors (bad
/// arguments, unreadable paths, unreachable database).
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
    /// Each job is parsed under Autotest's `.parse.lock` (a job locked by a
    /// running post-job parse is retried once, then reported). Killing it at
    /// any moment loses nothing: run it again and it resumes. Ctrl-C stops
    /// after the current batch.
    ///
    /// Exit status: 0 every job loaded or skipped as unchanged; 1 some job
    /// failed to load, was locked, had no status file, or was loaded with
    /// error diagnostics (see tko_diagnostics), or the run was interrupted;
    /// 2 fatal (bad arguments, database unreachable).
    Backfill(BackfillArgs),
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
    /// Jobs per database transaction.
    #[arg(long, default_value_t = tko::store::DEFAULT_BATCH_JOBS)]
    pub(crate) batch: usize,
    /// No progress and no summary (errors only).
    #[arg(short, long)]
    pub(crate) quiet: bool,
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
    /// Warehouse URL: `postgres://user@host/db` (any libpq-style URL) or
    /// `sqlite:PATH`. Default: `$TKO_DB`, else `sqlite:tko.db` in the current
    /// directory (created on first use).
    #[arg(long, env = "TKO_DB", default_value = tko::store::DEFAULT_URL, global = true)]
    pub(crate) db: String,
}

/// `tko load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// Reload jobs whose content fingerprint is unchanged, and replace a tag
    /// stored from another results directory.
    #[arg(long)]
    pub(crate) force: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
    /// Jobs to load.
    #[command(flatten)]
    pub(crate) jobs: JobsArgs,
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
    Status,
}

/// Flags shared by everything that finds jobs.
#[derive(Debug, Args)]
pub(crate) struct JobsArgs {
    /// Path components in the job tag (`autotest-tko-parse -l`); the
    /// scheduler uses 2 (`123-alice/host1`).
    #[arg(short, long, default_value_t = 1)]
    pub(crate) level: usize,
    /// Worker threads for parsing (0 = one per core).
    #[arg(short = 'j', long, default_value_t = 0)]
    pub(crate) threads: usize,
    /// Job directories (parsed as `autotest-tko-parse -o` would) or results
    /// roots holding many jobs (walked to find them).
    #[arg(required = true)]
    pub(crate) paths: Vec<PathBuf>,
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
}

/// Output format of `tko export`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// RFC 4180 CSV with a header row.
    Csv,
    /// JSON Lines.
    Json,
}

/// Output format of `tko stats`.
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
    /// Test status words, comma-separated (e.g. `FAIL,ERROR`).
    #[arg(long, value_name = "S[,S]", value_delimiter = ',')]
    pub(crate) status: Vec<String>,
    /// Finished at or after: `YYYY-MM-DD` or `YYYY-MM-DD HH:MM[:SS]` (UTC).
    #[arg(long, value_name = "TIME")]
    pub(crate) since: Option<String>,
    /// Finished at or before (a date alone includes that whole day).
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
    pub(crate) job: String,
    /// For a directory: path components in the job tag (as `tko parse`).
    #[arg(short, long, default_value_t = 1)]
    pub(crate) level: usize,
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
    /// Warehouse.
    #[command(flatten)]
    pub(crate) db: DbUrl,
}
