//! The status-log version 0 state machine (Autotest's
//! `tko/parsers/version_0.py`), used when the job keyval has no
//! `status_version` (stand-alone client results, pre-2008 logs): no
//! SERVER_JOB, no RUNNING rows, no INFO lines, the kernel comes from the
//! build log or `reboot.verify`. Also the version-0 kernel detection
//! (`build*/debug/build_log`, `sysinfo/.../uname_-a`) from bytes the caller
//! read. Pure: see `ingest` for the file reads.

use super::line::{status_line, LineKind};
use super::{lines_with_numbers, timestamp_of_field, Problem, TestResult};
use crate::model::{Kernel, Patch, Status, Timestamp};
use std::rc::Rc;

/// The files version 0 consults for the kernel, as read by the caller.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelFiles {
    /// Path (for diagnostics) and bytes of the first existing
    /// `build[.N]/debug/build_log`.
    pub build_log: Option<(String, Vec<u8>)>,
    /// First line of `sysinfo/reboot1/uname_-a`, else of `sysinfo/uname_-a`.
    pub uname: Option<String>,
}

/// What a build log says: base and patches.
#[derive(Debug, Clone, PartialEq)]
struct BuildLog {
    base: String,
    patches: Vec<Patch>,
}

/// Kernel detection for version 0, parsed once per job.
#[derive(Debug, Clone)]
pub struct KernelSource {
    build: Option<BuildLog>,
    sysinfo_base: String,
}

impl KernelSource {
    /// Parses the kernel files, reporting problems under `file` names.
    pub fn new(files: &KernelFiles, problems: &mut Vec<(String, Problem)>) -> KernelSource {
        let build = files.build_log.as_ref().map(|(path, bytes)| {
            let mut log = BuildLog {
                base: "UNKNOWN".into(),
                patches: Vec::new(),
            };
            for (n, raw) in lines_with_numbers(bytes) {
                let text = crate::text::decode(raw);
                let Some((head, rest)) = text.split_once(": ") else {
                    problems.push((
                        path.clone(),
                        Problem::error(
                            Some(n),
                            "build log line has no ': ' (Autotest's parser loses the job here)",
                        ),
                    ));
                    continue;
                };
                let words: Vec<&str> = rest.split_ascii_whitespace().collect();
                match (head, &words[..]) {
                    ("BASE", [base, ..]) => log.base = (*base).to_string(),
                    ("PATCH", [spec, reference, hash]) => log.patches.push(Patch {
                        spec: (*spec).into(),
                        reference: (*reference).into(),
                        hash: (*hash).into(),
                    }),
                    ("BASE" | "PATCH", _) => problems.push((
                        path.clone(),
                        Problem::error(
                            Some(n),
                            format!("malformed {head} line (Autotest's parser loses the job here)"),
                        ),
                    )),
                    _ => {}
                }
            }
            log
        });
        let sysinfo_base = match &files.uname {
            Some(line) => match line.split_ascii_whitespace().nth(2) {
                Some(release) => release
                    .strip_suffix("-autotest")
                    .unwrap_or(release)
                    .to_string(),
                None => {
                    problems.push((
                        "sysinfo/uname_-a".into(),
                        Problem::error(Some(1), "uname line has fewer than 3 words (Autotest's parser loses the job here)"),
                    ));
                    "UNKNOWN".into()
                }
            },
            None => "UNKNOWN".into(),
        };
        KernelSource {
            build,
            sysinfo_base,
        }
    }

    /// `version_0.kernel(job, verify_ident)`.
    pub fn kernel(&self, verify_ident: Option<&str>) -> Kernel {
        match (&self.build, verify_ident.filter(|v| !v.is_empty())) {
            (Some(b), _) => Kernel::new(b.base.clone(), b.patches.clone()),
            (None, Some(ident)) => Kernel::new(ident.to_string(), Vec::new()),
            (None, None) => Kernel::new(self.sysinfo_base.clone(), Vec::new()),
        }
    }
}

/// The version-0 status stack (same as version 1's).
struct Stack(Vec<Status>);

impl Stack {
    fn update(&mut self, s: Status) {
        let top = self.0.last_mut().expect("never empty");
        if s.is_worse_than(*top) {
            *top = s;
        }
    }
    fn end(&mut self) -> Status {
        let top = self.0.pop().expect("never empty");
        if self.0.is_empty() {
            self.0.push(Status::NoStatus);
        }
        top
    }
}

/// True for `^(boot(\.\d+)?$|kernel\.)`.
fn is_boot_or_kernel(name: &str) -> bool {
    if name.starts_with("kernel.") || name == "boot" {
        return true;
    }
    name.strip_prefix("boot.")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Runs the version-0 state machine over a whole status log.
pub fn parse(input: &[u8], kernels: &KernelSource) -> (Vec<TestResult>, Vec<Problem>) {
    let mut tests = Vec::new();
    let mut problems = Vec::new();
    let mut boot_count = 0;
    // Shared: END lines each take it, and copying it per line would cost
    // (lines x subdir length).
    let mut group_subdir: Option<Rc<str>> = None;
    let mut sought_level = 0;
    let mut stack = Stack(vec![Status::NoStatus]);
    let mut current_kernel = kernels.kernel(None);
    let mut boot_in_progress = false;
    let mut alert_pending: Option<String> = None;
    let mut started: Option<Timestamp> = None;

    for (number, raw) in lines_with_numbers(input) {
        let text = crate::text::decode(raw);
        let mut line = match status_line(&text, 0) {
            Ok(Some(l)) => l,
            Ok(None) => continue,
            Err(bad) => {
                problems.push(Problem::error(
                    Some(number),
                    format!(
                        "unknown status {:?} for status version 0 (Autotest's parser loses the job here); line ignored",
                        bad.word
                    ),
                ));
                continue;
            }
        };
        let mut timestamp = |line: &super::line::StatusLine| -> Option<Timestamp> {
            let raw = line.fields.get("timestamp")?;
            timestamp_of_field(raw)
                .map_err(|e| problems.push(Problem::error(Some(number), e)))
                .ok()
        };
        let unnamed = line.subdir.as_deref().is_none_or(str::is_empty)
            && line.testname.as_deref().is_none_or(str::is_empty);
        if line.kind == LineKind::Start && unnamed {
            sought_level = 1;
            continue;
        }
        if line.kind == LineKind::End && unnamed {
            sought_level = 0;
        }
        if line.kind == LineKind::Start {
            group_subdir = None;
            stack.0.push(Status::NoStatus);
            if line.indent == sought_level {
                started = timestamp(&line);
            }
            continue;
        }
        let status = line.status.expect("non-START v0 lines have a status");
        stack.update(status);
        if status == Status::Alert {
            alert_pending = line.reason.clone();
            continue;
        }
        if line.testname.as_deref() == Some("Autotest.install") && status == Status::Good {
            continue;
        }
        if line.testname.as_deref() == Some("reboot") && line.kind == LineKind::End {
            continue;
        }
        let mut testname: String = match line.testname.as_deref() {
            Some(t) => t.to_string(),
            None if status == Status::Abort && line.kind != LineKind::End => "CLIENT_JOB".into(),
            None => continue,
        };
        let subdir: Option<Rc<str>> = if line.kind == LineKind::End {
            group_subdir.clone()
        } else {
            line.subdir.take()
        };
        if line.indent != sought_level
            && status != Status::Abort
            && !testname.starts_with("reboot.")
        {
            if let Some(s) = subdir.filter(|s| !s.is_empty()) {
                group_subdir = Some(s);
            }
            continue;
        }
        if !is_boot_or_kernel(&testname) {
            if let Some(s) = subdir.as_deref().filter(|s| s.contains('.')) {
                testname = s.to_string();
            }
        }
        if testname == "reboot.start" {
            started = timestamp(&line);
            boot_in_progress = true;
            continue;
        }
        let mut reason = line.reason.clone();
        if testname == "reboot.verify" {
            testname = format!("boot.{boot_count}");
            boot_in_progress = false;
            let ident = reason
                .as_deref()
                .unwrap_or("")
                .trim_matches(super::is_py_space);
            current_kernel = kernels.kernel(Some(ident));
            boot_count += 1;
        }
        if let Some(alert) = alert_pending.take() {
            reason = Some(alert);
        }
        let finished = timestamp(&line);
        tests.push(TestResult {
            subdir: subdir.as_deref().map(String::from),
            testname,
            status: stack.end(),
            reason,
            kernel: current_kernel.clone(),
            started_time: started.take(),
            finished_time: finished,
            finalized: true,
            info: None,
        });
    }
    if boot_in_progress {
        tests.push(TestResult {
            subdir: None,
            testname: format!("boot.{boot_count}"),
            status: Status::Abort,
            reason: Some("machine did not return from reboot".into()),
            kernel: current_kernel,
            started_time: None,
            finished_time: None,
            finalized: true,
            info: None,
        });
    }
    (tests, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_and_kernel_names() {
        assert!(is_boot_or_kernel("boot"));
        assert!(is_boot_or_kernel("boot.12"));
        assert!(is_boot_or_kernel("kernel.build"));
        assert!(!is_boot_or_kernel("boot."));
        assert!(!is_boot_or_kernel("bootx"));
    }

    #[test]
    fn kernel_from_build_log_beats_verify_ident() {
        let mut problems = Vec::new();
        let files = KernelFiles {
            build_log: Some((
                "build/debug/build_log".into(),
                b"BASE: 2.6.24\nPATCH: s r 0\nBUILD VERSION: x\n".to_vec(),
            )),
            uname: None,
        };
        let ks = KernelSource::new(&files, &mut problems);
        assert!(problems.is_empty());
        let k = ks.kernel(Some("2.6.30 #1"));
        assert_eq!(k.base, "2.6.24");
        assert_eq!(k.patches.len(), 1);
    }
}
