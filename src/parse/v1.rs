//! The status-log version 1 state machine (Autotest's
//! `tko/parsers/version_1.py`, HEAD semantics): nested START/END groups,
//! worst status wins, reason merging, CLIENT_JOB.N and SERVER_JOB rows,
//! RUNNING partial results, reboot/kernel tracking, INFO lines, indentation
//! repair and implicit aborts at end of input. It is fed lines (whole file or
//! incrementally, as Autotest's continuous parser is) and keeps Autotest's
//! object identity: a RUNNING result emitted early is the same row that later
//! becomes final. Where Autotest raises and loses the job, this machine
//! reports a [`Problem`] and carries on with the most faithful reading.

use super::line::{
    fields_and_reason, status_line, status_line_owned, Fields, LineKind, StatusLine,
};
use super::reasons::MergedReasons;
use super::{timestamp_of_field, Problem, TestResult};
use crate::model::{short_datetime, Information, Kernel, Key, Patch, Status, Timestamp};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

/// What the state machine needs to know about the job (from its keyvals and
/// `.autoserv_execute`, read by the caller).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobContext {
    /// Keyval `job_started`.
    pub started_time: Option<Timestamp>,
    /// Keyval `job_finished`.
    pub finished_time: Option<Timestamp>,
    /// Keyval `aborted_by`.
    pub aborted_by: Option<String>,
    /// Keyval `aborted_on`.
    pub aborted_on: Option<Timestamp>,
    /// SERVER_JOB status from `.autoserv_execute` (`job.exit_status()`).
    pub exit_status: Option<Status>,
}

/// Autotest's `status_stack`: one accumulated status per open group.
#[derive(Debug, Clone)]
struct StatusStack(Vec<Status>);

impl StatusStack {
    fn new() -> StatusStack {
        StatusStack(vec![Status::NoStatus])
    }
    fn start(&mut self) {
        self.0.push(Status::NoStatus);
    }
    fn current(&self) -> Status {
        *self.0.last().expect("the stack is never empty")
    }
    fn update(&mut self, s: Status) {
        if s.is_worse_than(self.current()) {
            *self.0.last_mut().expect("the stack is never empty") = s;
        }
    }
    fn end(&mut self) -> Status {
        let top = self.0.pop().expect("the stack is never empty");
        if self.0.is_empty() {
            self.0.push(Status::NoStatus);
        }
        top
    }
    fn size(&self) -> usize {
        self.0.len() - 1
    }
}

/// A queued, already parsed line with its 1-based number in the file (None
/// for lines the machine synthesised): synthesised aborts, and lines put
/// back after an indentation regression, which are not parsed again so
/// that deep nesting stays linear. Raw lines are never queued (that would
/// copy each one): each is parsed as it is fed.
#[derive(Debug)]
enum Queued {
    Parsed(Option<u32>, Line),
}

/// What a status line carries besides its place in the group structure:
/// one body is shared by every END ABORT synthesised for the same
/// indentation regression (or end of input), so closing d groups with a
/// reason of length L costs O(d + L), not O(d * L).
#[derive(Debug)]
struct Body {
    /// Reason (None for INFO), shared with the merged reasons of its test
    /// (never copied to be merged).
    reason: Option<Rc<String>>,
    /// An INFO line's message (tko's own; Autotest drops it).
    message: Option<String>,
    /// Optional `key=value` fields.
    fields: Fields,
    /// The `timestamp` field as `get_timestamp` reads it, read once.
    timestamp: Option<Result<Timestamp, String>>,
    /// A bad timestamp is reported once per body.
    reported: Cell<bool>,
}

impl Body {
    fn new(reason: Option<String>, message: Option<String>, fields: Fields) -> Body {
        let timestamp = fields.get("timestamp").map(|raw| timestamp_of_field(raw));
        Body {
            reason: reason.map(Rc::new),
            message,
            fields,
            timestamp,
            reported: Cell::new(false),
        }
    }
}

/// A parsed status line as the machine keeps it: names and body shared, so
/// a copy costs O(1).
#[derive(Debug, Clone)]
struct Line {
    indent: usize,
    kind: LineKind,
    status: Option<Status>,
    subdir: Option<Rc<str>>,
    testname: Option<Rc<str>>,
    body: Rc<Body>,
}

impl From<StatusLine> for Line {
    fn from(l: StatusLine) -> Line {
        Line {
            indent: l.indent,
            kind: l.kind,
            status: l.status,
            subdir: l.subdir,
            testname: l.testname,
            body: Rc::new(Body::new(l.reason, l.message, l.fields)),
        }
    }
}

/// The version-1 parser state. Feed it with [`V1::process`], finish with
/// [`V1::end`].
#[derive(Debug)]
pub struct V1 {
    ctx: JobContext,
    buffer: VecDeque<Queued>,
    stack: StatusStack,
    min_stack_size: usize,
    subdir_stack: Vec<Option<Rc<str>>>,
    started_time_stack: Vec<Option<Timestamp>>,
    current_status: Status,
    current_reason: Option<String>,
    running_test: Option<usize>,
    running_reasons: MergedReasons,
    /// The running test's reason and `current_reason` are the rendering of
    /// `running_reasons`, not yet written (rendered only when read).
    reason_pending: bool,
    running_client: Option<usize>,
    running_job: usize,
    current_kernel: Kernel,
    job_count: u32,
    boot_count: u32,
    /// Body of the last line read, if it was a status line (Autotest's
    /// `line`).
    line: Option<Rc<Body>>,
    /// Body of the last status line read, kept for the tolerant
    /// end-of-input path where Autotest would crash.
    last_status: Option<Rc<Body>>,
    /// The body of the END ABORTs synthesised for the last line that
    /// regressed in indentation (that line's body, the aborts' body).
    abort_of: Option<(Rc<Body>, Rc<Body>)>,
    tests: Vec<TestResult>,
    emitted: Vec<usize>,
    /// How much of `emitted` [`V1::process`] has returned.
    reported: usize,
    /// Report emissions (a live job); off, `process` returns nothing and
    /// clones nothing.
    live: bool,
    problems: Vec<Problem>,
}

/// What the machine produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// Results in first-emission order, each in its latest state.
    pub tests: Vec<TestResult>,
    /// What the end of input emitted (as [`V1::process`] returns).
    pub emitted_at_end: Vec<TestResult>,
    /// What could not be read as Autotest reads it.
    pub problems: Vec<Problem>,
}

impl V1 {
    /// Starts a job: emits the RUNNING SERVER_JOB row.
    pub fn new(ctx: JobContext) -> V1 {
        let mut v = V1 {
            buffer: VecDeque::new(),
            stack: StatusStack::new(),
            min_stack_size: 0,
            subdir_stack: vec![None],
            started_time_stack: vec![None],
            current_status: Status::NoStatus,
            current_reason: None,
            running_test: None,
            running_reasons: MergedReasons::default(),
            reason_pending: false,
            running_client: None,
            running_job: 0,
            current_kernel: Kernel::unknown(),
            job_count: 0,
            boot_count: 0,
            line: None,
            last_status: None,
            abort_of: None,
            tests: Vec::new(),
            emitted: Vec::new(),
            reported: 0,
            live: false,
            problems: Vec::new(),
            ctx,
        };
        let started = v.ctx.started_time;
        v.running_job = v.partial(
            Some("----".into()),
            "SERVER_JOB".into(),
            Some(String::new()),
            started,
        );
        v
    }

    /// Starts a job whose emissions [`V1::process`] and [`V1::end`]
    /// report, as Autotest's continuous parser stores them.
    pub fn new_live(ctx: JobContext) -> V1 {
        let mut v = V1::new(ctx);
        v.live = true;
        v
    }

    /// Feeds raw lines (each with its `\n`, numbered from 1) and processes
    /// everything that can be processed before the end of input.
    ///
    /// For a [`V1::new_live`] job, returns what was emitted since the last
    /// call (the first call includes the RUNNING SERVER_JOB row), as Autotest's
    /// `process_lines` does: results in their state now, a result emitted
    /// twice listed twice. This is what a continuous (live) parse stores.
    pub fn process<'a>(
        &mut self,
        lines: impl IntoIterator<Item = (u32, &'a str)>,
    ) -> Vec<TestResult> {
        // Each line, then whatever it queued, before the next line: the
        // order Autotest's buffer gives. Raw lines are never queued (that
        // would copy each one).
        for (n, raw) in lines {
            self.step_raw(Some(n), Cow::Borrowed(raw));
            while let Some(entry) = self.buffer.pop_front() {
                self.step(entry);
            }
        }
        self.take_emitted()
    }

    /// [`V1::process`] of one owned line: its reason is the line's own
    /// buffer, not a copy (for very long lines).
    pub fn process_line(&mut self, number: u32, raw: String) -> Vec<TestResult> {
        self.step_raw(Some(number), Cow::Owned(raw));
        while let Some(entry) = self.buffer.pop_front() {
            self.step(entry);
        }
        self.take_emitted()
    }

    fn take_emitted(&mut self) -> Vec<TestResult> {
        if !self.live {
            return Vec::new();
        }
        self.settle_reason();
        let new = self.emitted[self.reported..]
            .iter()
            .map(|&id| self.tests[id].clone())
            .collect();
        self.reported = self.emitted.len();
        new
    }

    /// Groups open now (0 once the outermost group has ended).
    pub fn depth(&self) -> usize {
        self.stack.size()
    }

    /// The results so far, in emission order (RUNNING rows included), as a
    /// live view of a job that is still being written.
    pub fn snapshot(&mut self) -> Vec<TestResult> {
        self.settle_reason();
        let mut seen = vec![false; self.tests.len()];
        let mut out = Vec::with_capacity(self.tests.len());
        for &id in &self.emitted {
            if !std::mem::replace(&mut seen[id], true) {
                out.push(self.tests[id].clone());
            }
        }
        out
    }

    /// Writes the merged reason where Autotest would have written it on
    /// every line: the running test's reason and `current_reason`.
    fn settle_reason(&mut self) {
        if !std::mem::take(&mut self.reason_pending) {
            return;
        }
        let joined = self.running_reasons.render().to_string();
        if let Some(id) = self.running_test {
            self.tests[id].reason = Some(joined.clone());
        }
        self.current_reason = Some(joined);
    }

    /// Ends the input: closes open groups with implicit aborts, finalises
    /// SERVER_JOB and returns everything.
    pub fn end(mut self) -> Output {
        let mut last_size = usize::MAX;
        while self.stack.size() > 0 {
            if self.stack.size() >= last_size {
                // Cannot happen with well-formed synthetic lines; never loop.
                self.problems.push(Problem::error(
                    None,
                    "internal: implicit aborts did not close the open groups",
                ));
                break;
            }
            last_size = self.stack.size();
            self.queue_implicit_aborts();
            while let Some(entry) = self.buffer.pop_front() {
                self.step(entry);
            }
        }
        self.settle_reason();
        let status = self.ctx.exit_status.unwrap_or(Status::Abort);
        let reason = self.tests[self.running_job].reason.clone();
        let (started, finished) = (self.ctx.started_time, self.ctx.finished_time);
        let id = self.running_job;
        self.finalize(
            Some(id),
            Some("----".into()),
            "SERVER_JOB".into(),
            status,
            reason,
            started,
            finished,
        );
        let emitted_at_end = self.take_emitted();
        // Each emitted result once, first emission first; moved out, not
        // cloned: a result may hold a very long reason.
        let mut tests: Vec<Option<TestResult>> = self.tests.into_iter().map(Some).collect();
        let tests = self
            .emitted
            .iter()
            .filter_map(|&id| tests[id].take())
            .collect();
        Output {
            emitted_at_end,
            tests,
            problems: self.problems,
        }
    }

    /// `parse_partial_test` + emit.
    fn partial(
        &mut self,
        subdir: Option<String>,
        testname: String,
        reason: Option<String>,
        started: Option<Timestamp>,
    ) -> usize {
        self.tests.push(TestResult {
            subdir,
            testname,
            status: Status::Running,
            reason,
            kernel: self.current_kernel.clone(),
            started_time: started,
            finished_time: None,
            finalized: false,
            info: None,
        });
        let id = self.tests.len() - 1;
        self.emitted.push(id);
        id
    }

    /// `parse_test(..., existing_instance)` + emit.
    #[allow(clippy::too_many_arguments)] // mirrors Autotest's parse_test
    fn finalize(
        &mut self,
        existing: Option<usize>,
        subdir: Option<String>,
        testname: String,
        status: Status,
        reason: Option<String>,
        started: Option<Timestamp>,
        finished: Option<Timestamp>,
    ) -> usize {
        let mut t = TestResult {
            subdir,
            testname,
            status,
            reason,
            kernel: self.current_kernel.clone(),
            started_time: started,
            finished_time: finished,
            finalized: true,
            info: None,
        };
        let id = match existing {
            Some(id) => {
                t.info = self.tests[id].info.take();
                self.tests[id] = t;
                id
            }
            None => {
                self.tests.push(t);
                self.tests.len() - 1
            }
        };
        self.emitted.push(id);
        id
    }

    /// Queues END ABORT lines for every open group (end of input).
    fn queue_implicit_aborts(&mut self) {
        let reason = match (&self.ctx.aborted_by, self.ctx.aborted_on) {
            (Some(by), Some(on)) => format!("Job aborted by {by} at {}", short_datetime(on)),
            (Some(by), None) => {
                self.problems.push(Problem::error(
                    None,
                    "job keyval has aborted_by but no aborted_on (Autotest's parser loses the job here)",
                ));
                format!("Job aborted by {by}")
            }
            (None, _) => "Job aborted unexpectedly".to_string(),
        };
        let last = match &self.line {
            Some(l) => Some(l),
            None => {
                self.problems.push(Problem::error(
                    None,
                    "status log ends with a non-status line while groups are open \
                     (Autotest's parser loses the job here); closing them with the last \
                     status line's timestamp",
                ));
                self.last_status.as_ref()
            }
        };
        let timestamp = last.and_then(|b| b.fields.get("timestamp"));
        let body = Rc::new(abort_body(timestamp.map(Key::as_str), &reason));
        let mut subdirs = self.subdir_stack.clone();
        for indent in (0..self.stack.size()).rev() {
            let subdir = subdirs.pop().flatten();
            let abort = dummy_abort(indent, subdir.as_ref(), Rc::clone(&body));
            self.buffer.push_back(Queued::Parsed(None, abort));
        }
    }

    fn timestamp(&mut self, number: Option<u32>, line: &Body) -> Option<Timestamp> {
        match line.timestamp.as_ref()? {
            Ok(t) => Some(*t),
            Err(e) => {
                if !line.reported.replace(true) {
                    self.problems.push(Problem::error(number, e.clone()));
                }
                None
            }
        }
    }

    /// `status_line.get_kernel()`: `kernel=` (minus `-autotest`) and
    /// consecutive `patchN=spec reference hash` fields.
    fn kernel_of(&mut self, number: Option<u32>, line: &Body) -> Kernel {
        let base = line.fields.get("kernel").map(Key::as_str).unwrap_or("");
        let base = base.strip_suffix("-autotest").unwrap_or(base);
        if base.is_empty() {
            return Kernel::unknown();
        }
        let mut patches = Vec::new();
        for n in 0.. {
            let Some(value) = line.fields.get(&format!("patch{n}")) else {
                break;
            };
            let words: Vec<&str> = value.split_ascii_whitespace().collect();
            match words[..] {
                [spec, reference, hash] => patches.push(Patch {
                    spec: spec.into(),
                    reference: reference.into(),
                    hash: hash.into(),
                }),
                _ => self.problems.push(Problem::error(
                    number,
                    format!(
                        "patch{n}={value:?} is not 'spec reference hash' \
                         (Autotest's parser loses the job here); patch ignored"
                    ),
                )),
            }
        }
        Kernel::new(base.to_string(), patches)
    }

    /// One iteration of Autotest's main loop, for one raw line.
    fn step_raw(&mut self, number: Option<u32>, raw: Cow<'_, str>) {
        let raw = if raw.contains("\r\0") {
            Cow::Owned(raw.replace("\r\0", ""))
        } else {
            raw
        };
        let parsed = match raw {
            Cow::Borrowed(r) => status_line(r, 1),
            Cow::Owned(r) => status_line_owned(r, 1),
        };
        match parsed {
            Ok(Some(l)) => self.step(Queued::Parsed(number, Line::from(l))),
            Ok(None) => self.line = None,
            Err(bad) => self.problems.push(Problem::error(
                number,
                format!(
                    "unknown status {:?} (Autotest's parser loses the job here); line ignored",
                    bad.word
                ),
            )),
        }
    }

    /// One iteration of Autotest's main loop, for one parsed line.
    fn step(&mut self, entry: Queued) {
        let Queued::Parsed(number, line) = entry;
        self.line = Some(Rc::clone(&line.body));
        self.last_status = Some(Rc::clone(&line.body));

        let size = self.stack.size();
        let expected = size as isize - isize::from(line.kind == LineKind::End);
        let indent = line.indent as isize;
        if indent < expected {
            let body = match &self.abort_of {
                Some((from, abort)) if Rc::ptr_eq(from, &line.body) => Rc::clone(abort),
                _ => {
                    let abort = Rc::new(abort_body(
                        line.body.fields.get("timestamp").map(Key::as_str),
                        line.body.reason.as_deref().map_or("None", String::as_str),
                    ));
                    self.abort_of = Some((Rc::clone(&line.body), Rc::clone(&abort)));
                    abort
                }
            };
            let subdir = self.subdir_stack.last().cloned().flatten();
            let abort = dummy_abort(size - 1, subdir.as_ref(), body);
            self.buffer.push_front(Queued::Parsed(number, line));
            self.buffer.push_front(Queued::Parsed(None, abort));
            return;
        }
        if indent > expected {
            return;
        }

        let started;
        let finished;
        // The END branch rewrites these (Autotest mutates its line object).
        let mut subdir = line.subdir.clone();
        let mut testname = line.testname.clone();
        match line.kind {
            LineKind::Start => {
                self.stack.start();
                let started = self.timestamp(number, &line.body);
                if line.subdir.is_none() && line.testname.is_none() && self.running_test.is_none() {
                    self.min_stack_size = self.stack.size();
                    let name = format!("CLIENT_JOB.{}", self.job_count);
                    self.running_client =
                        Some(self.partial(None, name, Some(String::new()), started));
                } else if self.stack.size() == self.min_stack_size + 1
                    && self.running_test.is_none()
                {
                    self.settle_reason();
                    self.running_reasons = MergedReasons::default();
                    if let Some(r) = &line.body.reason {
                        self.running_reasons.add_shared(r);
                    }
                    // A START with a subdir but no test name: Autotest's
                    // partial test has testname None; keep the subdir.
                    let name = line.testname.as_deref().or(line.subdir.as_deref());
                    let id = self.partial(
                        line.subdir.as_deref().map(String::from),
                        name.unwrap_or_default().to_string(),
                        line.body.reason.as_deref().cloned(),
                        started,
                    );
                    self.running_test = Some(id);
                }
                self.started_time_stack.push(started);
                self.subdir_stack.push(line.subdir.clone());
                return;
            }
            LineKind::Info => {
                if line.body.fields.contains_key("kernel") {
                    self.current_kernel = self.kernel_of(number, &line.body);
                }
                if let Some(reason) = line.body.fields.get("job_abort_reason") {
                    self.tests[self.running_job].reason = Some(reason.to_string());
                    self.emitted.push(self.running_job);
                }
                // tko's own: the test's last information message. Not an
                // emission (Autotest's continuous parse stores nothing here).
                if let (Some(id), Some(msg)) = (
                    self.running_test,
                    line.body.message.as_ref().filter(|r| !r.is_empty()),
                ) {
                    let at = line.body.timestamp.as_ref().and_then(|t| t.clone().ok());
                    self.tests[id].info = Some(Information {
                        message: msg.clone(),
                        time: at,
                    });
                }
                return;
            }
            LineKind::Status => {
                let status = line.status.expect("status lines have a status");
                if line.subdir.as_deref().is_some_and(|s| !s.is_empty())
                    && self.stack.size() > self.min_stack_size
                {
                    *self.subdir_stack.last_mut().expect("never empty") = line.subdir.clone();
                }
                self.stack.update(status);
                if status <= self.current_status {
                    if let Some(reason) = line.body.reason.as_ref().filter(|r| !r.is_empty()) {
                        if let Some(id) = self.running_test {
                            // Rendered when read (settle_reason), not on
                            // every line: that was quadratic per line.
                            self.running_reasons.add_shared(reason);
                            self.reason_pending = true;
                            self.emitted.push(id);
                        } else {
                            self.settle_reason();
                            self.current_reason = Some(String::clone(reason));
                        }
                    }
                    self.current_status = self.stack.current();
                }
                started = None;
                finished = self.timestamp(number, &line.body);
                if line.testname.is_none() && line.subdir.is_none() {
                    return;
                }
            }
            LineKind::End => {
                let status = line.status.expect("END lines have a status");
                if line.subdir.is_none() && line.testname.is_none() && self.running_test.is_none() {
                    self.min_stack_size = self.stack.size().saturating_sub(1);
                    self.subdir_stack.pop();
                } else {
                    subdir = self.subdir_stack.pop().flatten();
                    let parent_empty = self
                        .subdir_stack
                        .last()
                        .is_none_or(|s| s.as_deref().is_none_or(str::is_empty));
                    if parent_empty && self.stack.size() > self.min_stack_size {
                        if let Some(last) = self.subdir_stack.last_mut() {
                            *last = subdir.clone();
                        }
                    }
                }
                self.stack.update(status);
                self.current_status = self.stack.end();
                if self.stack.size() > self.min_stack_size {
                    self.stack.update(self.current_status);
                    self.current_status = self.stack.current();
                }
                started = self.started_time_stack.pop().flatten();
                finished = self.timestamp(number, &line.body);
                if line.testname.as_deref() == Some("reboot") && self.current_status > Status::Fail
                {
                    self.current_kernel = self.kernel_of(number, &line.body);
                }
                if testname.as_deref() == Some("reboot") && subdir.is_none() {
                    testname = Some(Rc::from(format!("boot.{}", self.boot_count)));
                }
            }
        }

        if self.stack.size() <= self.min_stack_size {
            if (testname.is_some() || subdir.is_some()) && self.reason_pending {
                // The running test is finalised below with
                // `current_reason`, replacing the reason settling would
                // write into it, and its merged messages are never read
                // again: move the text out instead of copying it twice
                // (a reason may be hundreds of megabytes).
                self.reason_pending = false;
                self.current_reason = Some(self.running_reasons.take_rendered());
            } else {
                self.settle_reason();
            }
            let mut testname = testname.or_else(|| subdir.clone());
            if testname.is_none() {
                testname = Some(Rc::from(format!("CLIENT_JOB.{}", self.job_count)));
                self.running_test = match self.running_client {
                    Some(id) => Some(id),
                    None => {
                        self.problems.push(Problem::error(
                            number,
                            "a group closed by an unnamed END before any client job started \
                             (Autotest's parser loses the job here)",
                        ));
                        None
                    }
                };
                self.job_count += 1;
                if self.current_status > Status::Abort {
                    self.current_status = Status::Good;
                }
            }
            if self.current_reason.as_deref().is_none_or(str::is_empty) {
                self.current_reason = line.body.reason.as_deref().cloned();
            }
            let testname = testname.expect("set above").to_string();
            let is_boot = testname == format!("boot.{}", self.boot_count);
            let reason = self.current_reason.take();
            let existing = self.running_test.take();
            self.finalize(
                existing,
                subdir.as_deref().map(String::from),
                testname,
                self.current_status,
                reason,
                started,
                finished,
            );
            self.current_status = Status::NoStatus;
            if is_boot {
                self.boot_count += 1;
            }
        }
    }
}

/// `make_dummy_abort`: the END ABORT line Autotest synthesises, rendered as
/// text (kept to show, in a test, that [`dummy_abort`] parses the same).
#[cfg(test)]
fn render_dummy_abort(
    indent: usize,
    subdir: Option<&str>,
    timestamp: Option<&str>,
    reason: &str,
) -> String {
    let name = subdir.filter(|s| !s.is_empty()).unwrap_or("----");
    let ts = timestamp
        .filter(|t| !t.is_empty())
        .map(|t| format!("\ttimestamp={t}"))
        .unwrap_or_default();
    format!(
        "{}END ABORT\t{name}\t{name}{ts}\t{reason}",
        "\t".repeat(indent)
    )
}

/// The body of Autotest's synthesised END ABORT line (`timestamp=` field,
/// then the reason), read as any line is: as in Autotest, a `word=value`
/// reason becomes a field.
fn abort_body(timestamp: Option<&str>, reason: &str) -> Body {
    let tail = match timestamp.filter(|t| !t.is_empty()) {
        Some(t) => format!("timestamp={t}\t{reason}"),
        None => reason.to_string(),
    };
    let (fields, reason) = fields_and_reason(&tail);
    Body::new(Some(reason), None, fields)
}

/// The parsed form of Autotest's synthesised END ABORT line, built directly
/// (rendering and re-parsing it would cost O(indent) per line) around a
/// shared [`abort_body`].
fn dummy_abort(indent: usize, subdir: Option<&Rc<str>>, body: Rc<Body>) -> Line {
    let name = subdir.filter(|s| !s.is_empty() && &***s != "----").cloned();
    Line {
        indent,
        kind: LineKind::End,
        status: Some(Status::Abort),
        subdir: name.clone(),
        testname: name,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(log: &str, ctx: JobContext) -> Output {
        let mut v = V1::new(ctx);
        v.process(log.split_inclusive('\n').zip(1..).map(|(l, n)| (n, l)));
        v.end()
    }

    #[test]
    fn empty_log_gives_only_server_job() {
        let out = run("", JobContext::default());
        assert_eq!(out.tests.len(), 1);
        assert_eq!(out.tests[0].testname, "SERVER_JOB");
        assert_eq!(out.tests[0].status, Status::Abort);
    }

    #[test]
    fn worst_status_wins_and_end_word_counts() {
        let log = "START\t----\t----\ttimestamp=1\t\n\
                   \tSTART\tt\tt\ttimestamp=2\t\n\
                   \t\tWARN\tt\tt\ttimestamp=3\tslow\n\
                   \tEND GOOD\tt\tt\ttimestamp=4\t\n\
                   END GOOD\t----\t----\ttimestamp=5\t\n";
        let out = run(
            log,
            JobContext {
                exit_status: Some(Status::Good),
                ..Default::default()
            },
        );
        let names: Vec<_> = out
            .tests
            .iter()
            .map(|t| (t.testname.as_str(), t.status))
            .collect();
        assert_eq!(
            names,
            vec![
                ("SERVER_JOB", Status::Good),
                ("CLIENT_JOB.0", Status::Good),
                ("t", Status::Warn)
            ]
        );
        assert_eq!(out.tests[2].reason.as_deref(), Some("slow"));
        assert_eq!(out.tests[2].started_time, Some(2));
        assert!(out.problems.is_empty());
    }

    #[test]
    fn dummy_abort_is_what_autotest_renders_and_parses() {
        for (indent, subdir, ts, reason) in [
            (3, None, Some("1"), "r"),
            (0, Some("x"), None, "k=v\tmore"),
            (1, Some(""), Some("5"), "None"),
            (2, Some("t"), None, ""),
        ] {
            let text = render_dummy_abort(indent, subdir, ts, reason);
            let parsed = status_line(&text, 1)
                .expect("valid")
                .expect("a status line");
            let ours = dummy_abort(
                indent,
                subdir.map(Rc::from).as_ref(),
                Rc::new(abort_body(ts, reason)),
            );
            assert_eq!(ours.indent, parsed.indent, "{text:?}");
            assert_eq!(ours.kind, parsed.kind, "{text:?}");
            assert_eq!(ours.status, parsed.status, "{text:?}");
            assert_eq!(ours.subdir.as_deref(), parsed.subdir.as_deref(), "{text:?}");
            assert_eq!(ours.testname.as_deref(), parsed.testname.as_deref());
            assert_eq!(
                ours.body.reason.as_deref(),
                parsed.reason.as_ref(),
                "{text:?}"
            );
            assert_eq!(ours.body.fields, parsed.fields, "{text:?}");
        }
        assert_eq!(
            render_dummy_abort(3, None, Some("1"), "r"),
            "\t\t\tEND ABORT\t----\t----\ttimestamp=1\tr"
        );
        assert_eq!(
            render_dummy_abort(0, Some("x"), None, "r"),
            "END ABORT\tx\tx\tr"
        );
    }

    #[test]
    fn last_info_inside_a_test_is_kept_with_its_time() {
        let log = "INFO\t----\t----\ttimestamp=1\tbefore any test\n\
                   START\tt\tt\ttimestamp=2\t\n\
                   \tINFO\t----\t----\ttimestamp=3\tPercent Complete: 40%\n\
                   \tSTART\tsub\tsub\ttimestamp=4\t\n\
                   \t\tINFO\t----\t----\ttimestamp=5\tPercent Complete: 80%\n\
                   \tEND GOOD\tsub\tsub\ttimestamp=6\t\n\
                   \tINFO\t----\t----\t\n\
                   END GOOD\tt\tt\ttimestamp=7\t\n\
                   START\tu\tu\ttimestamp=8\t\n\
                   END GOOD\tu\tu\ttimestamp=9\t\n\
                   INFO\t----\t----\ttimestamp=10\tafter\n";
        let out = run(log, JobContext::default());
        let info = |name: &str| {
            out.tests
                .iter()
                .find(|t| t.testname == name)
                .expect("test")
                .info
                .clone()
        };
        assert_eq!(
            info("t"),
            Some(Information {
                message: "Percent Complete: 80%".into(),
                time: Some(5)
            })
        );
        assert_eq!(info("u"), None);
        assert_eq!(info("SERVER_JOB"), None);
        // While running, the live view carries it too.
        let mut v = V1::new_live(JobContext::default());
        v.process(
            "START\tt\tt\ttimestamp=2\t\n\tINFO\t----\t----\tPercent Complete: 10%\n"
                .split_inclusive('\n')
                .zip(1..)
                .map(|(l, n)| (n, l)),
        );
        let snap = v.snapshot();
        let t = snap.iter().find(|t| t.testname == "t").expect("running t");
        assert_eq!(t.status, Status::Running);
        assert_eq!(
            t.info,
            Some(Information {
                message: "Percent Complete: 10%".into(),
                time: None
            })
        );
    }
}
