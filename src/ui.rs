//! What `tko load` and `tko backfill` show a person: a progress bar on a
//! terminal (a line every few seconds otherwise), one line per job with a
//! problem (every job with `--verbose`), and the final summary as text or
//! JSON. Problems go to stderr through the bar, so a bar is never torn by
//! a message; the summary goes to stdout. Ctrl-C handling lives here too,
//! because its messages must not be printed into the bar.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;
use tko::backfill::{JobOutcome, Observer, Summary};
use tko::model::{Job, Severity};
use tko::store::Action;

/// Set by Ctrl-C; a run stops after the current batch.
pub(crate) static STOP: AtomicBool = AtomicBool::new(false);

/// The bar on screen, for the Ctrl-C handler.
static BAR: OnceLock<indicatif::ProgressBar> = OnceLock::new();

/// Prints a line on stderr without tearing the bar.
fn say(line: &str) {
    match BAR.get() {
        Some(bar) if !bar.is_finished() => bar.suspend(|| eprintln!("{line}")),
        _ => eprintln!("{line}"),
    }
}

/// First Ctrl-C: stop after the current batch; second: leave at once, the
/// bar cleared so the shell prompt starts on a clean line.
pub(crate) fn install_ctrl_c() -> anyhow::Result<()> {
    ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            if let Some(bar) = BAR.get() {
                bar.finish_and_clear();
            }
            eprintln!("tko: interrupted; run the same command again to resume");
            std::process::exit(130);
        }
        say("tko: stopping after the current batch (Ctrl-C again to quit now)");
    })?;
    Ok(())
}

/// How much a run prints as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verbosity {
    /// Problems only, no progress.
    Quiet,
    /// Progress and problems.
    Normal,
    /// Progress, problems and a line per job read.
    Verbose,
}

/// Progress and per-job lines of a `load` or `backfill` run.
pub(crate) struct Reporter {
    verbosity: Verbosity,
    bar: Option<&'static indicatif::ProgressBar>,
    last_line: Instant,
}

impl Reporter {
    /// A bar on a terminal (unless quiet), else a line every 5 s.
    pub(crate) fn new(verbosity: Verbosity) -> Reporter {
        let bar = (verbosity != Verbosity::Quiet && io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} dirs  ETA {eta}  {msg}",
                )
                .expect("valid template"),
            );
            BAR.get_or_init(|| bar)
        });
        Reporter {
            verbosity,
            bar,
            last_line: Instant::now(),
        }
    }

    /// Clears the bar before the summary is printed.
    pub(crate) fn finish(&self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Observer for Reporter {
    fn job(&mut self, job: &Job, outcome: JobOutcome<'_>) {
        let errors = || {
            job.diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
        };
        match outcome {
            JobOutcome::Loaded(o) => {
                if o.action != Action::Skipped {
                    // Errors of a job loaded in this run: what made the run
                    // exit 1. An unchanged job's were reported when loaded.
                    for d in errors() {
                        say(&format!("{}: {d}", job.tag));
                    }
                }
                if self.verbosity == Verbosity::Verbose {
                    let what = match o.action {
                        Action::Inserted => "inserted",
                        Action::Replaced => "replaced",
                        Action::Skipped => "unchanged, skipped",
                        Action::DeletedEarlier => "deleted earlier (tko delete/prune), skipped",
                    };
                    say(&format!(
                        "{}: {what} (job_idx {}, {} tests, {} diagnostics)",
                        job.tag,
                        o.job_idx,
                        job.tests.len(),
                        job.diagnostics.len()
                    ));
                }
            }
            JobOutcome::Failed(e) => say(&format!("{}: not loaded: {e}", job.tag)),
            JobOutcome::NoStatusFile => {
                if self.verbosity == Verbosity::Verbose {
                    say(&format!(
                        "{}: no status file (neither status.log nor status), nothing to load",
                        job.tag
                    ));
                }
            }
            JobOutcome::WouldBe(action) => {
                let what = match action {
                    Action::Inserted => "would load (new)",
                    Action::Replaced => "would reload (changed)",
                    Action::Skipped | Action::DeletedEarlier => return,
                };
                // The dry run's answer: on stdout, like the summary.
                if let Some(bar) = self.bar {
                    bar.suspend(|| println!("{what}: {} ({})", job.tag, job.tests.len()));
                } else {
                    println!("{what}: {} ({})", job.tag, job.tests.len());
                }
            }
        }
    }

    fn notice(&mut self, text: &str) {
        say(&format!("tko: {text}"));
    }

    fn unread(&mut self, tag: &str, error: &str) {
        say(&format!("{tag}: not loaded: {error}"));
    }

    fn progress(&mut self, s: &Summary) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        let rate = s.done as f64 / s.elapsed.as_secs_f64().max(1e-9);
        let counts = format!(
            "{} jobs ({rate:.0}/s): {} loaded, {} unchanged, {} failed",
            s.done,
            s.loaded(),
            s.unchanged_by_metadata + s.unchanged_by_content,
            s.failed.len()
        );
        match self.bar {
            Some(bar) => {
                // The total known up front is the number of top-level
                // directories (a cheap count); jobs are found as they come.
                bar.set_length(s.units as u64);
                bar.set_position(s.units_done as u64);
                bar.set_message(counts);
            }
            None => {
                if self.last_line.elapsed().as_secs() >= 5 {
                    self.last_line = Instant::now();
                    eprintln!("tko: {}/{} directories, {counts}", s.units_done, s.units);
                }
            }
        }
    }
}

/// Prints up to five items of a list and how many more there are.
fn first_five(list: &[String]) -> String {
    let first: Vec<&str> = list.iter().take(5).map(String::as_str).collect();
    let more = if list.len() > 5 {
        format!(" and {} more", list.len() - 5)
    } else {
        String::new()
    };
    format!("{}{more}", first.join(", "))
}

/// The final summary of a run, for people. `target` is the warehouse as
/// shown to people (no password).
pub(crate) fn write_summary_text(
    out: &mut impl Write,
    s: &Summary,
    dry_run: bool,
    target: &str,
) -> io::Result<()> {
    let (verb, prefix) = if dry_run {
        ("would be ", "dry run: ")
    } else {
        ("", "")
    };
    writeln!(
        out,
        "{prefix}{} job(s) found in {:.1} s: {} new {verb}loaded, {} {verb}reloaded, {} unchanged ({} by metadata, {} by content), {} failed",
        s.found,
        s.elapsed.as_secs_f64(),
        s.inserted,
        s.replaced,
        s.unchanged_by_metadata + s.unchanged_by_content,
        s.unchanged_by_metadata,
        s.unchanged_by_content,
        s.failed.len()
    )?;
    if s.deleted_earlier > 0 {
        writeln!(
            out,
            "{} job(s) deleted earlier (tko delete/prune), skipped: --force loads them again",
            s.deleted_earlier
        )?;
    }
    if !dry_run {
        writeln!(
            out,
            "{} tests, {} test attributes, {} iteration attributes, {} perf values written to {target}",
            s.rows.tests, s.rows.test_attributes, s.rows.iteration_attributes, s.rows.iteration_results
        )?;
    }
    for (tag, e) in s.failed.iter().take(5) {
        writeln!(out, "failed: {tag}: {e}")?;
    }
    if s.failed.len() > 5 {
        writeln!(
            out,
            "... {} more failures: tko diagnostics, or SELECT tag, error FROM tko_ingest_ledger WHERE outcome = 'failed'",
            s.failed.len() - 5
        )?;
    }
    let lists: [(&str, &[String]); 4] = [
        (
            "job(s) loaded in this run with error diagnostics (input Autotest's parser would lose the job on)",
            &s.with_errors,
        ),
        (
            "job(s) still locked by another parser (.parse.lock) after --lock-timeout, not loaded",
            &s.locked,
        ),
        ("director(ies) that could not be walked", &s.walk_errors),
        (
            "job dir(s) without a status file (nothing to load, as in Autotest)",
            &s.no_status_file,
        ),
    ];
    for (what, list) in lists {
        if !list.is_empty() {
            writeln!(out, "{} {what}: {}", list.len(), first_five(list))?;
        }
    }
    if s.interrupted {
        writeln!(
            out,
            "interrupted: {} of {} directories scanned ({} jobs handled); run the same command again to resume",
            s.units_done, s.units, s.done
        )?;
    }
    Ok(())
}

/// The final summary as one JSON object (`--format json`).
pub(crate) fn write_summary_json(
    out: &mut impl Write,
    s: &Summary,
    dry_run: bool,
    target: &str,
    exit_code: u8,
) -> io::Result<()> {
    let failed: Vec<_> = s
        .failed
        .iter()
        .map(|(tag, error)| serde_json::json!({"tag": tag, "error": error}))
        .collect();
    let v = serde_json::json!({
        "db": target,
        "dry_run": dry_run,
        "found": s.found,
        "inserted": s.inserted,
        "replaced": s.replaced,
        "unchanged_by_metadata": s.unchanged_by_metadata,
        "unchanged_by_content": s.unchanged_by_content,
        "deleted_earlier": s.deleted_earlier,
        "failed": failed,
        "with_errors": s.with_errors,
        "locked": s.locked,
        "walk_errors": s.walk_errors,
        "no_status_file": s.no_status_file,
        "rows": {
            "tests": s.rows.tests,
            "test_attributes": s.rows.test_attributes,
            "iteration_attributes": s.rows.iteration_attributes,
            "iteration_results": s.rows.iteration_results,
            "job_keyvals": s.rows.job_keyvals,
            "diagnostics": s.rows.diagnostics,
        },
        "interrupted": s.interrupted,
        "elapsed_s": s.elapsed.as_secs_f64(),
        "exit_code": exit_code,
    });
    serde_json::to_writer(&mut *out, &v)?;
    writeln!(out)
}
