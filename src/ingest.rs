//! Reads one job directory's files and runs the parsers on them, building a
//! [`Job`] tree as `autotest-tko-parse` would (spec §1.6–§1.7, §4): keyval
//! merging up to the top-level job dir, host keyvals, machine name and
//! group, status version, `.autoserv_execute`, test keyvals and iteration
//! keyvals. This is the only module that reads results files and the only
//! place rayon runs; every problem becomes a diagnostic on the job, never a
//! panic or a lost job.

use crate::discover::{afe_job_id, JobDir};
use crate::model::{Diagnostic, Job, KeyMap, Severity, Status, Test, Value};
use crate::parse::{self, keyval::Keyval, v0, v1, Problem, TestResult};
use crate::text;
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

mod files;
use files::{Fetched, Opened, Root};

/// Parses many job directories in parallel; output order is input order.
pub fn parse_jobs(dirs: &[JobDir]) -> Vec<Result<Job, ReadError>> {
    dirs.par_iter()
        .map(|d| parse_dir(d).map(|p| p.job))
        .collect()
}

/// Like [`parse_jobs`], with each job's fingerprint and status file.
pub fn parse_all(dirs: &[JobDir]) -> Vec<Result<Parsed, ReadError>> {
    dirs.par_iter().map(parse_dir).collect()
}

/// Parses jobs on the rayon pool and hands each one, turned into `R` by
/// `render` on the worker that parsed it (e.g. its JSON line: the job tree
/// is dropped there too), to `sink` on the calling thread in input order.
/// Workers run ahead of `sink` by at most `window` jobs (at least one per
/// worker), so memory is bounded by the jobs in flight and the renderings
/// waiting, however many jobs there are; there are no rounds, so no worker
/// waits for a round's slowest job or for the output of one. The first
/// error of `sink` stops the workers and is returned.
pub fn parse_in_order<R: Send, E>(
    dirs: &[JobDir],
    window: usize,
    render: impl Fn(Result<Job, ReadError>) -> R + Sync,
    mut sink: impl FnMut(R) -> Result<(), E>,
) -> Result<(), E> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Condvar, Mutex};
    let workers = rayon::current_num_threads().clamp(1, dirs.len().max(1));
    let window = window.max(workers);
    let next = AtomicUsize::new(0);
    // (jobs handed to `sink`, stop)
    let progress = Mutex::new((0usize, false));
    let moved = Condvar::new();
    let stop = || {
        progress.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        moved.notify_all();
    };
    /// Stops the other workers if this one panics (its job would never
    /// arrive, and they would wait for it forever).
    struct OnPanic<F: Fn()>(F);
    impl<F: Fn()> Drop for OnPanic<F> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                (self.0)();
            }
        }
    }
    let (tx, rx) = mpsc::channel::<(usize, R)>();
    rayon::in_place_scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, progress, moved, render, stop) = (&next, &progress, &moved, &render, &stop);
            scope.spawn(move |_| {
                let _guard = OnPanic(stop);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(dir) = dirs.get(i) else { break };
                    let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                    while !p.1 && i >= p.0 + window {
                        p = moved.wait(p).unwrap_or_else(|e| e.into_inner());
                    }
                    if p.1 {
                        break;
                    }
                    drop(p);
                    let r = render(parse_job(dir));
                    if tx.send((i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut waiting = BTreeMap::new();
        let mut done = 0;
        for (i, r) in rx.iter() {
            waiting.insert(i, r);
            while let Some(r) = waiting.remove(&done) {
                done += 1;
                if let Err(e) = sink(r) {
                    stop();
                    return Err(e);
                }
                progress.lock().unwrap_or_else(|e| e.into_inner()).0 = done;
                moved.notify_all();
            }
        }
        Ok(())
    })
}

/// A file of a job that exists but could not be read: the job is not
/// parsed at all (a partial parse would replace a good job with less).
/// Absent files (`ENOENT`, `ENOTDIR`) are not read errors: Autotest's
/// `os.path.exists` checks treat them as absent, and so does tko.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot read: {error}", path.display())]
pub struct ReadError {
    /// The file (or directory) that could not be read.
    pub path: PathBuf,
    /// Why.
    pub error: io::Error,
}

impl ReadError {
    fn new(path: &Path, error: io::Error) -> ReadError {
        ReadError {
            path: path.to_path_buf(),
            error,
        }
    }
}

/// Lines longer than this are handed to the status-log parser as owned
/// buffers, so a very long line is not copied to make its reason.
const LONG_LINE: usize = 1 << 16;

/// Runs `read` on items from the front of `items`, in parallel on the
/// rayon pool, until `max_items` items are taken or the input bytes `read`
/// says the finished ones took add up to `max_bytes`; returns the results
/// of the items taken (`items[..n]`), in order. Nothing is sized before it
/// is read (sizing a job from metadata cost more system calls than
/// reading it): the items being read when the bound is reached finish, so
/// a chunk holds at most `max_bytes` plus one item per worker.
pub fn read_bounded<T: Sync, R: Send>(
    items: &[T],
    max_items: usize,
    max_bytes: u64,
    read: impl Fn(&T) -> (R, u64) + Sync,
) -> Vec<R> {
    use std::sync::Mutex;
    let max_items = max_items.max(1).min(items.len());
    // (items taken, bytes of those finished)
    let taken = Mutex::new((0usize, 0u64));
    let done = Mutex::new(Vec::with_capacity(max_items));
    let workers = rayon::current_num_threads().clamp(1, max_items.max(1));
    rayon::in_place_scope(|scope| {
        for _ in 0..workers {
            let (taken, done, read) = (&taken, &done, &read);
            scope.spawn(move |_| loop {
                let i = {
                    let mut t = taken.lock().unwrap_or_else(|e| e.into_inner());
                    if t.0 >= max_items || (t.0 > 0 && t.1 >= max_bytes) {
                        break;
                    }
                    t.0 += 1;
                    t.0 - 1
                };
                let (r, bytes) = read(&items[i]);
                {
                    let mut t = taken.lock().unwrap_or_else(|e| e.into_inner());
                    t.1 = t.1.saturating_add(bytes);
                }
                done.lock().unwrap_or_else(|e| e.into_inner()).push((i, r));
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.sort_unstable_by_key(|&(i, _)| i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// A parsed job with what the loader needs to know about its files.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The job directory.
    pub path: PathBuf,
    /// The job tree.
    pub job: Job,
    /// A 128-bit XXH3 hash over the path and bytes of every file the parser
    /// read, as `xxh3:` and 32 hex digits: changes exactly when the parse
    /// could change. (Autotest does not define it; it was an md5 before,
    /// which never equals one of these, so a warehouse loaded by an older
    /// tko reloads every job once.)
    pub fingerprint: String,
    /// `status.log` or `status`; `None` when there was neither (Autotest
    /// stores nothing for such a job).
    pub status_file: Option<&'static str>,
    /// Bytes of the files read (a host keyval used twice counts twice):
    /// what the job's tree grows with, for bounding what is held at once
    /// ([`read_bounded`]).
    pub input_bytes: u64,
}

/// Collects diagnostics for one job, naming files relative to its
/// directory, and fingerprints every file read.
struct Diags<'a> {
    dir: &'a Path,
    list: Vec<Diagnostic>,
    hash: Box<Xxh3>,
    /// Every file fingerprinted (that is, read), when asked for
    /// ([`files_read`]).
    files: Option<Vec<PathBuf>>,
    /// Host keyval files read so far, by path: a job uses its host's
    /// twice (platform, then attributes) and reads it once
    /// ([`host_keyval`]).
    host_keyvals: Vec<(PathBuf, Vec<u8>)>,
    /// Bytes fingerprinted so far ([`Parsed::input_bytes`]).
    bytes: u64,
    /// Where the job's files are opened from.
    root: Root<'a>,
}

impl<'a> Diags<'a> {
    /// For reading a job: its directory held open ([`Root::at`]).
    fn reading(dir: &'a Path, record: bool) -> Diags<'a> {
        Diags {
            root: Root::at(dir),
            ..Diags::new(dir, record)
        }
    }
    /// For reading a few files (by path).
    fn new(dir: &'a Path, record: bool) -> Diags<'a> {
        Diags {
            root: Root::by_path(dir),
            dir,
            list: Vec::new(),
            hash: Box::default(),
            files: record.then(Vec::new),
            host_keyvals: Vec::new(),
            bytes: 0,
        }
    }
    /// A file's name for diagnostics and the fingerprint: relative to the
    /// job directory when inside it; bytes that are not UTF-8 as Latin-1.
    fn name(&self, path: &Path) -> String {
        use std::os::unix::ffi::OsStrExt;
        let p = match path.strip_prefix(self.dir) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel,
            _ => path,
        };
        match p.to_str() {
            Some(s) => s.to_owned(),
            None => text::stored(&text::decode(p.as_os_str().as_bytes())).into_owned(),
        }
    }
    fn push(&mut self, path: &Path, severity: Severity, line: Option<u32>, message: String) {
        let file = self.name(path);
        let message = match text::for_message(&message) {
            std::borrow::Cow::Owned(m) => m,
            std::borrow::Cow::Borrowed(_) => message,
        };
        self.list.push(Diagnostic {
            severity,
            file,
            line,
            message,
        });
    }
    /// Adds a file read to the fingerprint: its name, length and bytes.
    fn consume(&mut self, path: &Path, bytes: &[u8]) {
        self.record(path);
        let name = self.name(path);
        self.hash.update(name.as_bytes());
        self.hash.update(&(bytes.len() as u64).to_le_bytes());
        self.hash.update(bytes);
        self.bytes += bytes.len() as u64;
    }
    fn record(&mut self, path: &Path) {
        if let Some(files) = &mut self.files {
            files.push(path.to_path_buf());
        }
    }
    fn latin1_warning(&mut self, path: &Path, line: Option<u32>) {
        self.push(
            path,
            Severity::Warning,
            line,
            "invalid UTF-8; lines that are not UTF-8 are read as Latin-1".into(),
        );
    }
    fn problems(&mut self, path: &Path, problems: impl IntoIterator<Item = Problem>) {
        for p in problems {
            self.push(path, p.severity, p.line, p.message);
        }
    }
}

/// Reads a file that may be absent: `Ok(None)` when it is absent (or is
/// not something Autotest could read: then with a diagnostic), an error
/// when it exists and cannot be read. The bytes are returned as they are
/// (lines that are not UTF-8 are decoded later, as Latin-1: `text`).
fn read_optional(path: &Path, diags: &mut Diags<'_>) -> Result<Option<Vec<u8>>, ReadError> {
    let bytes = read_unhashed(path, diags)?;
    if let Some(b) = &bytes {
        diags.consume(path, b);
    }
    Ok(bytes)
}

/// [`read_optional`] without adding the file to the fingerprint (the
/// caller does, with [`Diags::consume`], to keep the fingerprint's order).
fn read_unhashed(path: &Path, diags: &mut Diags<'_>) -> Result<Option<Vec<u8>>, ReadError> {
    report(path, diags.root.fetch(path), diags)
}

/// What reading `path` gave, as [`read_unhashed`] reports it: the file
/// may have been read earlier than this, so that its diagnostics still
/// come in the order of the parse.
fn report(
    path: &Path,
    fetched: Fetched,
    diags: &mut Diags<'_>,
) -> Result<Option<Vec<u8>>, ReadError> {
    let bytes = match fetched {
        Fetched::Bytes(b) => b,
        Fetched::ReadFailed(e) => return absent(path, e, diags),
        Fetched::Not(o) => {
            // Never an open regular file (`Fetched::of` reads those).
            return opened(path, o, diags).map(|_| None);
        }
    };
    warn_unless_utf8(path, &bytes, diags);
    Ok(Some(bytes))
}

/// The Latin-1 warning, with the line of the first byte that is not
/// UTF-8.
fn warn_unless_utf8(path: &Path, bytes: &[u8], diags: &mut Diags<'_>) {
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        diags.latin1_warning(path, u32::try_from(line).ok());
    }
}

/// What opening `path` found means for the job: the open file and its
/// size; `None` when it is absent or not something Autotest could read
/// (then with a diagnostic); an error when it exists and cannot be read.
fn opened(
    path: &Path,
    o: Opened,
    diags: &mut Diags<'_>,
) -> Result<Option<(std::fs::File, u64)>, ReadError> {
    match o {
        Opened::File(file, len) => Ok(Some((file, len))),
        Opened::Absent => Ok(None),
        Opened::Failed(e) => absent(path, e, diags),
        Opened::NoStat(e) => Err(ReadError::new(path, e)),
        Opened::Dir => absent(path, io::Error::from(io::ErrorKind::IsADirectory), diags),
        Opened::Special => {
            diags.push(
                path,
                Severity::Error,
                None,
                "not a regular file (a FIFO, socket or device); not read".into(),
            );
            Ok(None)
        }
    }
}

/// Streams a file that exists line by line (each with its `\n`, numbered
/// from 1) into `f`, fingerprinting it as [`read_optional`] does: only one
/// line is held at a time, however large the file. `f` may take the line's
/// buffer. `pre` is the file if it is open already.
fn read_lines(
    path: &Path,
    pre: Option<Opened>,
    diags: &mut Diags<'_>,
    mut f: impl FnMut(u32, &mut Vec<u8>),
) -> Result<(), ReadError> {
    let o = pre.unwrap_or_else(|| diags.root.open(path));
    let Some((file, len)) = opened(path, o, diags)? else {
        let e = io::Error::from(io::ErrorKind::NotFound);
        return Err(ReadError::new(path, e));
    };
    diags.record(path);
    let name = diags.name(path);
    diags.hash.update(name.as_bytes());
    diags.hash.update(&len.to_le_bytes());
    let mut lines = files::Lines::new(file, len);
    let mut buf = Vec::new();
    let mut number: u32 = 0;
    let mut warned = false;
    loop {
        buf.clear();
        match lines.next_line(&mut buf) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(ReadError::new(path, e)),
        }
        number = number.saturating_add(1);
        diags.hash.update(&buf);
        diags.bytes += buf.len() as u64;
        if !warned && std::str::from_utf8(&buf).is_err() {
            warned = true;
            diags.latin1_warning(path, Some(number));
        }
        f(number, &mut buf);
        if buf.capacity() > 1 << 20 {
            // Give a very long line's memory back.
            buf = Vec::new();
        }
    }
    Ok(())
}

/// [`read_optional`], but a directory (already reported) reads as empty;
/// `pre` is the file if it is open already (so not a directory).
fn read_optional_unless_dir(
    path: &Path,
    pre: Option<Opened>,
    diags: &mut Diags<'_>,
) -> Result<Option<Vec<u8>>, ReadError> {
    let fetched = match pre {
        Some(o) => Fetched::of(o),
        None if path.is_dir() => return Ok(Some(Vec::new())),
        None => diags.root.fetch(path),
    };
    let bytes = report(path, fetched, diags)?;
    if let Some(b) = &bytes {
        diags.consume(path, b);
    }
    Ok(bytes)
}

/// Classifies an error met opening or reading an optional file: absent
/// (`ENOENT`, `ENOTDIR`, as Autotest's `os.path.exists`), absent with a
/// diagnostic (a directory, a symlink loop, a name too long: the same on
/// every run, so not worth failing the job for), or a [`ReadError`]
/// (anything that may be transient: permissions, `EMFILE`, `EIO`).
fn absent<T>(path: &Path, e: io::Error, diags: &mut Diags<'_>) -> Result<Option<T>, ReadError> {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => Ok(None),
        io::ErrorKind::IsADirectory => {
            diags.push(
                path,
                Severity::Error,
                None,
                "is a directory (Autotest's parser raises IOError and loses the job here); \
                 read as absent"
                    .into(),
            );
            Ok(None)
        }
        _ if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENAMETOOLONG)) => {
            diags.push(
                path,
                Severity::Warning,
                None,
                format!("cannot read: {e}; read as absent, as Autotest's os.path.exists does"),
            );
            Ok(None)
        }
        _ => Err(ReadError::new(path, e)),
    }
}

/// Where each kept keyval value came from: file and 1-based line.
type Origins = BTreeMap<crate::model::Key, (PathBuf, u32)>;

/// `read_keyval(path)` with problems reported (a directory means the
/// `keyval` file inside it, as in Autotest).
fn read_keyval(path: &Path, diags: &mut Diags<'_>) -> Result<KeyMap<Value>, ReadError> {
    Ok(read_keyval_lines(path, diags)?.0)
}

/// [`read_keyval`], with the origin of every value. The file is opened
/// first (an absent one costs one failing `open`); only when opening
/// fails otherwise is its path examined, as Autotest's `os.path.isdir`
/// does.
fn read_keyval_lines(
    path: &Path,
    diags: &mut Diags<'_>,
) -> Result<(KeyMap<Value>, Origins), ReadError> {
    let inner;
    let (path, fetched) = match diags.root.open(path) {
        Opened::Dir => {
            inner = path.join("keyval");
            (inner.as_path(), diags.root.fetch(&inner))
        }
        o @ (Opened::Failed(_) | Opened::NoStat(_)) => {
            if path.is_dir() {
                inner = path.join("keyval");
                (inner.as_path(), diags.root.fetch(&inner))
            } else {
                (path, Fetched::Not(o))
            }
        }
        o => (path, Fetched::of(o)),
    };
    Ok(match report(path, fetched, diags)? {
        Some(bytes) => {
            diags.consume(path, &bytes);
            keyval_of(path, &bytes, diags)
        }
        None => (KeyMap::new(), BTreeMap::new()),
    })
}

/// Parses the bytes of keyval file `path`, reporting its problems.
fn keyval_of(path: &Path, bytes: &[u8], diags: &mut Diags<'_>) -> (KeyMap<Value>, Origins) {
    let Keyval {
        map,
        problems,
        lines,
    } = parse::keyval::keyval(bytes);
    diags.problems(path, problems);
    let origins = lines
        .into_iter()
        .map(|(k, n)| (k, (path.to_path_buf(), n)))
        .collect();
    (map, origins)
}

/// A small `.autoserv_execute` is read as soon as it is found (it is
/// read anyway); a larger one when it is used, as before.
const AUTOSERV_READ_AHEAD: u64 = 1 << 16;

/// `find_toplevel_job_dir`: the nearest directory at or above `dir` holding
/// `.autoserv_execute`, and that file, read (unless it is large or could
/// not be opened: then it is read where it is used). Each candidate is
/// opened, not `stat`ed first; only an open that fails with something
/// other than `ENOENT`/`ENOTDIR` asks `os.path.exists`' question.
fn toplevel_job_dir(dir: &Path, root: &Root<'_>) -> (Option<PathBuf>, Option<Fetched>) {
    for d in dir.ancestors() {
        let p = d.join(".autoserv_execute");
        match root.open(&p) {
            Opened::Absent => {}
            Opened::Failed(_) | Opened::NoStat(_) => {
                if p.exists() {
                    return (Some(d.to_path_buf()), None);
                }
            }
            Opened::File(_, len) if len > AUTOSERV_READ_AHEAD => {
                return (Some(d.to_path_buf()), None);
            }
            o => return (Some(d.to_path_buf()), Some(Fetched::of(o))),
        }
    }
    (None, None)
}

/// `job.read_keyval(dir)`: merges `keyval` files from `dir` up to `top`,
/// upper files overriding lower ones except for `hostname`.
fn merged_keyval(
    dir: &Path,
    top: &Path,
    diags: &mut Diags<'_>,
) -> Result<(KeyMap<Value>, Origins), ReadError> {
    let mut merged: KeyMap<Value> = KeyMap::new();
    let mut origins = Origins::new();
    for d in dir.ancestors() {
        let (mut upper, mut upper_origins) = read_keyval_lines(&d.join("keyval"), diags)?;
        if merged.contains_key("hostname") {
            upper.remove("hostname");
            upper_origins.remove("hostname");
        }
        merged.extend(upper);
        origins.extend(upper_origins);
        if d == top {
            break;
        }
    }
    Ok((merged, origins))
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::to_db_text)
}

/// A first line of a file, without its line break.
fn first_line(bytes: &[u8]) -> String {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    text::decode(first).into_owned()
}

/// A model string as a file name: its original bytes.
fn os_name(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    std::ffi::OsString::from_vec(text::bytes(s).into_owned())
}

/// Host keyval names must stay inside `host_keyvals/`.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/')
}

/// A test subdir from a status log, lexically normalised (`.` dropped,
/// `x/..` folded), if it stays inside the job directory; `None` for an
/// absolute path or one whose `..` climbs above the job directory.
/// Symlinks inside the job directory are followed when the files are read,
/// as for every other file of the job.
fn inside_job_dir(subdir: &str) -> Option<PathBuf> {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in Path::new(&os_name(subdir)).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Reads `<top>/host_keyvals/<host>` (typed) if a top-level dir exists
/// and it is a regular file. A job asks twice for its host's: the file is
/// read once, and the second answer is reported and fingerprinted as a
/// second read of the same bytes would be.
fn host_keyval(
    top: Option<&Path>,
    host: &str,
    diags: &mut Diags<'_>,
) -> Result<KeyMap<Value>, ReadError> {
    let Some(top) = top else {
        return Ok(KeyMap::new());
    };
    if !safe_name(host) {
        return Ok(KeyMap::new());
    }
    let path = top.join("host_keyvals").join(os_name(host));
    if let Some(i) = diags.host_keyvals.iter().position(|(p, _)| *p == path) {
        let (path, bytes) = diags.host_keyvals.swap_remove(i);
        warn_unless_utf8(&path, &bytes, diags);
        diags.consume(&path, &bytes);
        let (map, _) = keyval_of(&path, &bytes, diags);
        diags.host_keyvals.push((path, bytes));
        return Ok(map);
    }
    let fetched = match diags.root.open(&path) {
        Opened::Absent | Opened::Dir | Opened::Special => return Ok(KeyMap::new()),
        Opened::Failed(_) | Opened::NoStat(_) => {
            // Exactly as before: `os.path.isfile`, then the read.
            if !path.is_file() {
                return Ok(KeyMap::new());
            }
            return read_keyval(&path, diags);
        }
        o @ Opened::File(..) => Fetched::of(o),
    };
    let Some(bytes) = report(&path, fetched, diags)? else {
        return Ok(KeyMap::new());
    };
    diags.consume(&path, &bytes);
    let (map, _) = keyval_of(&path, &bytes, diags);
    diags.host_keyvals.push((path, bytes));
    Ok(map)
}

/// `determine_hostname`.
fn machine_name(
    keyval: &KeyMap<Value>,
    dir: &Path,
    diags: &mut Diags<'_>,
) -> Result<String, ReadError> {
    let group = text(keyval.get("host_group_name")).filter(|g| !g.is_empty());
    let machine = text(keyval.get("hostname")).unwrap_or_default();
    let multi = machine.contains(',');
    if let Some(g) = group {
        if multi || machine.is_empty() {
            return Ok(g);
        }
        return Ok(machine);
    }
    if multi {
        if let Some(b) = read_optional(&dir.join("sysinfo/hostname"), diags)? {
            return Ok(first_line(&b)
                .trim_end_matches(parse::is_py_space)
                .to_string());
        }
        if let Some(b) = read_optional(&dir.join("sysinfo/uname_-a"), diags)? {
            if let Some(host) = first_line(&b).split_ascii_whitespace().nth(1) {
                return Ok(host.to_string());
            }
        }
    }
    Ok(machine)
}

/// `job.exit_status()` from the bytes of `<top>/.autoserv_execute` (`path`).
fn exit_status(path: &Path, bytes: Option<&[u8]>, diags: &mut Diags<'_>) -> Status {
    let Some(bytes) = bytes else {
        return Status::Abort;
    };
    let Some(line) = bytes.split_inclusive(|&b| b == b'\n').nth(1) else {
        return Status::Abort;
    };
    let line = text::decode(line);
    let line = line.as_ref();
    let code = match parse::python_int(line) {
        Some(c) => i32::try_from(c).ok(),
        None if parse::is_python_int_literal(line) => None,
        None => return Status::Abort,
    };
    // os.WIFEXITED takes a C int: a larger value raises OverflowError.
    let Some(code) = code else {
        diags.push(
            path,
            Severity::Error,
            Some(2),
            format!(
                "exit status {:?} does not fit a C int (Autotest's parser raises \
                 OverflowError and loses the job here); SERVER_JOB read as ABORT",
                line.trim_matches(parse::is_py_space)
            ),
        );
        return Status::Abort;
    };
    let signal = code & 0x7f;
    if signal != 0 {
        Status::Abort
    } else if (code >> 8) & 0xff != 0 {
        Status::Fail
    } else {
        Status::Good
    }
}

fn timestamp(
    keyval: &KeyMap<Value>,
    origins: &Origins,
    key: &str,
    dir: &Path,
    diags: &mut Diags<'_>,
) -> Option<i64> {
    let v = keyval.get(key)?;
    match parse::timestamp_of_value(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let (file, line) = keyval_origin(origins, key, dir);
            diags.push(
                &file,
                Severity::Error,
                line,
                format!("{key}: {e} (Autotest's parser loses the job here)"),
            );
            None
        }
    }
}

/// The file and line a merged keyval value came from.
fn keyval_origin(origins: &Origins, key: &str, dir: &Path) -> (PathBuf, Option<u32>) {
    match origins.get(key) {
        Some((file, line)) => (file.clone(), Some(*line)),
        None => (dir.join("keyval"), None),
    }
}

/// Reads the kernel files version 0 consults.
fn v0_kernel_files(dir: &Path, diags: &mut Diags<'_>) -> Result<v0::KernelFiles, ReadError> {
    let mut build_log = None;
    let mut build_dir = dir.join("build");
    let mut i = 1;
    while build_dir.exists() {
        let log = build_dir.join("debug/build_log");
        if let Some(bytes) = read_optional(&log, diags)? {
            build_log = Some((diags.name(&log), bytes));
            break;
        }
        i += 1;
        build_dir = dir.join(format!("build.{i}"));
    }
    let mut uname = None;
    for p in ["sysinfo/reboot1/uname_-a", "sysinfo/uname_-a"] {
        if let Some(b) = read_optional(&dir.join(p), diags)? {
            uname = Some(first_line(&b));
            break;
        }
    }
    Ok(v0::KernelFiles { build_log, uname })
}

/// Parses one job directory into a job tree. Every problem in the content
/// is a diagnostic on the returned job; a file that exists but cannot be
/// read fails the whole job.
pub fn parse_job(jd: &JobDir) -> Result<Job, ReadError> {
    parse_dir(jd).map(|p| p.job)
}

/// Parses one job directory, with its fingerprint and status file; fails
/// when one of its files exists but cannot be read.
pub fn parse_dir(jd: &JobDir) -> Result<Parsed, ReadError> {
    Ok(parse_with_steps(jd, false, false)?.0)
}

/// What a continuous (live) parse of a job emits at one point: after the
/// given status-log line (`None`: at the end of input), the results
/// emitted then, in their state then (attributes and iterations attached to
/// finished ones), as Autotest's continuous parser stores them.
#[derive(Debug, Clone)]
pub struct Step {
    /// 1-based line just fed, or `None` for the end of input.
    pub after_line: Option<u32>,
    /// Results emitted by that line (may repeat one result).
    pub tests: Vec<Test>,
}

/// Parses a job feeding its status log one line at a time, as a live job
/// is followed, and returns every non-empty step with the final parse.
/// Version-0 jobs (no continuous parser in Autotest) have no steps.
pub fn replay(jd: &JobDir) -> Result<(Parsed, Vec<Step>), ReadError> {
    parse_with_steps(jd, true, false).map(|(p, steps, _)| (p, steps))
}

/// Every file parsing `jd` reads (each once, in the order read): what a
/// benchmark compares `tko parse` with (`cat` of exactly these files).
pub fn files_read(jd: &JobDir) -> Result<Vec<PathBuf>, ReadError> {
    parse_with_steps(jd, false, true).map(|(_, _, files)| files)
}

/// Finds the status file: `status.log` if it exists, else `status`. A
/// `status.log` that is a directory is reported (Autotest raises and loses
/// the job there); `status` is used if there is one, else the job is read
/// as having an empty `status.log`, so it is kept. A status file that
/// exists but cannot be examined is an error. The file found is opened to
/// find it (an absent one costs one failing `open`), and comes back open
/// (`None` when it was examined by its path because opening it failed:
/// then it is opened again when it is read, as before).
fn status_file(
    dir: &Path,
    diags: &mut Diags<'_>,
) -> Result<(Option<&'static str>, Option<Opened>), ReadError> {
    let mut log_is_dir = false;
    for name in ["status.log", "status"] {
        let path = dir.join(name);
        let meta = match diags.root.open(&path) {
            Opened::Absent => continue,
            Opened::Dir => None,
            o @ (Opened::File(..) | Opened::Special) => return Ok((Some(name), Some(o))),
            Opened::Failed(_) | Opened::NoStat(_) => Some(std::fs::metadata(&path)),
        };
        match meta {
            Some(Ok(m)) if !m.is_dir() => return Ok((Some(name), None)),
            Some(Err(e)) => {
                absent::<()>(&path, e, diags)?;
            }
            None | Some(Ok(_)) => {
                log_is_dir |= name == "status.log";
                diags.push(
                    &path,
                    Severity::Error,
                    None,
                    "is a directory (Autotest's parser raises IOError and loses the job here); \
                     read as an empty status log"
                        .into(),
                );
            }
        }
    }
    Ok((log_is_dir.then_some("status.log"), None))
}

/// What a job's files say before its status log is read: the job row
/// (no tests yet), the top-level job directory, the merged keyval and
/// the top-level `.autoserv_execute` if it was read when it was found.
struct Head {
    job: Job,
    top: Option<PathBuf>,
    keyval: KeyMap<Value>,
    autoserv: Option<Fetched>,
}

/// Reads a job's keyvals, machine name and group (everything but the
/// status log and the tests' files).
fn head(jd: &JobDir, diags: &mut Diags<'_>) -> Result<Head, ReadError> {
    let dir = jd.path.as_path();
    let (top, autoserv) = toplevel_job_dir(dir, &diags.root);
    let (keyval, origins) = merged_keyval(dir, top.as_deref().unwrap_or(dir), diags)?;
    let status_version = match keyval.get("status_version") {
        None => 0,
        Some(Value::Int(1)) => 1,
        Some(Value::Int(0)) => 0,
        Some(Value::Float(f)) if *f == 1.0 || *f == 0.0 => *f as u32,
        Some(other) => {
            let shown = other.to_db_text().unwrap_or_default();
            let (file, line) = keyval_origin(&origins, "status_version", dir);
            diags.push(
                &file,
                Severity::Error,
                line,
                format!("status_version {shown:?} is not 0 or 1 (Autotest's parser loses the job here); read as version 1"),
            );
            1
        }
    };
    let machine = machine_name(&keyval, dir, diags)?;
    let mut groups = Vec::new();
    for h in machine.split(',') {
        groups.extend(text(host_keyval(top.as_deref(), h, diags)?.get("platform")));
    }
    groups.sort();
    groups.dedup();
    let job = Job {
        tag: jd.tag.clone(),
        afe_job_id: afe_job_id(&jd.tag),
        status_version,
        label: text(keyval.get("label")),
        user: text(keyval.get("user")),
        machine_group: groups.join(","),
        machine_owner: text(keyval.get("owner")),
        queued_time: timestamp(&keyval, &origins, "job_queued", dir, diags),
        started_time: timestamp(&keyval, &origins, "job_started", dir, diags),
        finished_time: timestamp(&keyval, &origins, "job_finished", dir, diags),
        aborted_by: text(keyval.get("aborted_by")),
        aborted_on: timestamp(&keyval, &origins, "aborted_on", dir, diags),
        machine,
        keyval: KeyMap::new(),
        tests: Vec::new(),
        diagnostics: Vec::new(),
    };

    Ok(Head {
        job,
        top,
        keyval,
        autoserv,
    })
}

fn parse_with_steps(
    jd: &JobDir,
    line_by_line: bool,
    record: bool,
) -> Result<(Parsed, Vec<Step>, Vec<PathBuf>), ReadError> {
    let dir = jd.path.as_path();
    let mut diags = Diags::reading(dir, record);
    let Head {
        mut job,
        top,
        keyval,
        autoserv: autoserv_read,
    } = head(jd, &mut diags)?;
    let status_version = job.status_version;
    let (status_file, status_open) = status_file(dir, &mut diags)?;
    let status_path = status_file.map(|n| dir.join(n));
    let mut raw_steps: Vec<(Option<u32>, Vec<TestResult>)> = Vec::new();
    let results = match status_path {
        None => {
            diags.push(
                &dir.join("status.log"),
                Severity::Error,
                None,
                "no status file (neither status.log nor status): no tests".into(),
            );
            Vec::new()
        }
        Some(path) => {
            let (results, problems) = if status_version == 0 {
                // The status file exists: not being able to read it now is
                // an error even if it vanished meanwhile.
                let bytes = match read_optional_unless_dir(&path, status_open, &mut diags)? {
                    Some(b) => b,
                    None if !path.exists() => {
                        let e = io::Error::from(io::ErrorKind::NotFound);
                        return Err(ReadError::new(&path, e));
                    }
                    None => Vec::new(),
                };
                let mut kproblems = Vec::new();
                let files = v0_kernel_files(dir, &mut diags)?;
                let source = v0::KernelSource::new(&files, &mut kproblems);
                for (file, p) in kproblems {
                    diags.problems(&dir.join(file), [p]);
                }
                v0::parse(&bytes, &source)
            } else {
                // `.autoserv_execute` is read first (the machine needs its
                // status) but fingerprinted after the status log, as before.
                let autoserv = top.as_deref().map(|t| t.join(".autoserv_execute"));
                let autoserv_bytes = match &autoserv {
                    Some(p) => report(
                        p,
                        autoserv_read.unwrap_or_else(|| diags.root.fetch(p)),
                        &mut diags,
                    )?,
                    None => None,
                };
                let exit = match &autoserv {
                    Some(p) => exit_status(p, autoserv_bytes.as_deref(), &mut diags),
                    None => Status::Abort,
                };
                let ctx = v1::JobContext {
                    started_time: job.started_time,
                    finished_time: job.finished_time,
                    aborted_by: job.aborted_by.clone(),
                    aborted_on: job.aborted_on,
                    exit_status: Some(exit),
                };
                let mut machine = if line_by_line {
                    v1::V1::new_live(ctx)
                } else {
                    v1::V1::new(ctx)
                };
                // Streamed line by line, each decoded on its own (UTF-8,
                // else Latin-1): one line is held at a time.
                let mut feed = |n: u32, raw: &mut Vec<u8>| {
                    let emitted = if raw.len() > LONG_LINE {
                        // Handed over whole: its reason is cut in place.
                        let line = text::decode_owned(std::mem::take(raw));
                        machine.process_line(n, line)
                    } else {
                        let line = text::decode(raw);
                        machine.process([(n, line.as_ref())])
                    };
                    if line_by_line && !emitted.is_empty() {
                        raw_steps.push((Some(n), emitted));
                    }
                };
                // Opened already (so not a directory), or examined by its
                // path as before.
                if status_open.is_some() || !path.is_dir() {
                    read_lines(&path, status_open, &mut diags, &mut feed)?;
                }
                if let (Some(p), Some(b)) = (&autoserv, &autoserv_bytes) {
                    diags.consume(p, b);
                }
                let out = machine.end();
                if line_by_line && !out.emitted_at_end.is_empty() {
                    raw_steps.push((None, out.emitted_at_end));
                }
                (out.tests, out.problems)
            };
            diags.problems(&path, problems);
            results
        }
    };

    let host_attrs: KeyMap<Value> = host_keyval(top.as_deref(), &job.machine, &mut diags)?
        .into_iter()
        .map(|(k, v)| (format!("host-{k}"), v))
        .collect();
    job.tests = results
        .into_iter()
        .map(|r| build_test(r, &job, dir, &host_attrs, &mut diags))
        .collect::<Result<_, _>>()?;
    let steps = raw_steps
        .into_iter()
        .map(|(after_line, results)| {
            // Files are read again for each step; diagnostics come from the
            // whole-file parse above.
            let mut quiet = Diags::new(dir, false);
            let tests = results
                .into_iter()
                .map(|r| build_test(r, &job, dir, &host_attrs, &mut quiet))
                .collect::<Result<_, _>>()?;
            Ok(Step { after_line, tests })
        })
        .collect::<Result<_, ReadError>>()?;
    job.keyval = keyval;
    job.diagnostics = diags.list;
    let diags_files = diags.files.unwrap_or_default();
    let parsed = Parsed {
        path: jd.path.clone(),
        job,
        fingerprint: format!("xxh3:{:032x}", diags.hash.digest128()),
        status_file,
        input_bytes: diags.bytes,
    };
    Ok((parsed, steps, diags_files))
}

/// Bytes of a status log [`Live::read_new`] reads at a time.
const LIVE_CHUNK: usize = 1 << 20;

/// A running job followed as its status log grows (`tko watch`): the job's
/// metadata read once, a version-1 live state machine, and the byte offset
/// read so far. Each [`Live::read_new`] reads only the bytes appended since
/// the last call (a status log that shrank or was replaced is read again
/// from the start with a fresh machine); [`Live::job`] is the job as a
/// continuous parse sees it now (RUNNING rows included).
#[derive(Debug)]
pub struct Live {
    jd: JobDir,
    head: Job,
    keyval: KeyMap<Value>,
    host_attrs: KeyMap<Value>,
    autoserv: Option<PathBuf>,
    ctx: v1::JobContext,
    machine: v1::V1,
    path: PathBuf,
    /// (device, inode) of the status log read.
    id: (u64, u64),
    offset: u64,
    line: u32,
    /// An incomplete last line, held until its `\n` arrives.
    pending: Vec<u8>,
    /// The last complete line ended the outermost group.
    group_ended: bool,
}

/// What [`Live::read_new`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// No new complete line.
    Unchanged,
    /// New lines were read.
    Grew,
    /// The status log shrank or was replaced: read again from the start.
    Restarted,
}

impl Live {
    /// Starts following `jd`: reads its keyvals. `None` when it cannot be
    /// followed line by line (yet): no `status.log`, or not status
    /// version 1.
    pub fn start(jd: &JobDir) -> Result<Option<Live>, ReadError> {
        let dir = jd.path.as_path();
        let mut diags = Diags::new(dir, false);
        let path = dir.join("status.log");
        if !path.is_file() {
            return Ok(None);
        }
        let Head {
            job, top, keyval, ..
        } = head(jd, &mut diags)?;
        if job.status_version != 1 {
            return Ok(None);
        }
        let host_attrs = host_keyval(top.as_deref(), &job.machine, &mut diags)?
            .into_iter()
            .map(|(k, v)| (format!("host-{k}"), v))
            .collect();
        let ctx = v1::JobContext {
            started_time: job.started_time,
            finished_time: job.finished_time,
            aborted_by: job.aborted_by.clone(),
            aborted_on: job.aborted_on,
            exit_status: None,
        };
        Ok(Some(Live {
            jd: jd.clone(),
            machine: v1::V1::new_live(ctx.clone()),
            ctx,
            autoserv: top.map(|t| t.join(".autoserv_execute")),
            head: job,
            keyval,
            host_attrs,
            path,
            id: (0, 0),
            offset: 0,
            line: 0,
            pending: Vec::new(),
            group_ended: false,
        }))
    }

    /// The job directory.
    pub fn dir(&self) -> &JobDir {
        &self.jd
    }

    /// Bytes of the status log read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// (device, inode) of the status log being read.
    pub fn file_id(&self) -> (u64, u64) {
        self.id
    }

    /// Reads the bytes appended since the last call and feeds the complete
    /// lines to the machine.
    pub fn read_new(&mut self) -> Result<Follow, ReadError> {
        use std::io::{Read, Seek, SeekFrom};
        use std::os::unix::fs::MetadataExt;
        let err = |e| ReadError::new(&self.path, e);
        let mut file = std::fs::File::open(&self.path).map_err(err)?;
        let meta = file.metadata().map_err(err)?;
        let id = (meta.dev(), meta.ino());
        let mut follow = Follow::Unchanged;
        if (self.offset > 0 || !self.pending.is_empty())
            && (id != self.id || meta.len() < self.offset)
        {
            self.machine = v1::V1::new_live(self.ctx.clone());
            self.offset = 0;
            self.line = 0;
            self.pending.clear();
            self.group_ended = false;
            follow = Follow::Restarted;
        }
        self.id = id;
        if meta.len() <= self.offset {
            return Ok(follow);
        }
        file.seek(SeekFrom::Start(self.offset)).map_err(err)?;
        // A chunk at a time: memory is bounded by the chunk and the longest
        // line, not by how much was appended.
        let mut left = meta.len() - self.offset;
        let mut chunk = vec![0u8; LIVE_CHUNK.min(usize::try_from(left).unwrap_or(LIVE_CHUNK))];
        while left > 0 {
            let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut chunk[..want]).map_err(err)?;
            if n == 0 {
                break;
            }
            left -= n as u64;
            self.offset += n as u64;
            let before = self.pending.len();
            self.pending.extend_from_slice(&chunk[..n]);
            // Only the new bytes are searched (a long line stays linear).
            let Some(last_nl) = chunk[..n].iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            let last_nl = before + last_nl;
            let rest = self.pending.split_off(last_nl + 1);
            let complete = std::mem::replace(&mut self.pending, rest);
            for raw in complete.split_inclusive(|&b| b == b'\n') {
                self.line = self.line.saturating_add(1);
                let line = text::decode(raw);
                self.machine.process([(self.line, line.as_ref())]);
                self.group_ended = raw.starts_with(b"END ") && self.machine.depth() == 0;
            }
            if follow == Follow::Unchanged {
                follow = Follow::Grew;
            }
        }
        Ok(follow)
    }

    /// True once the job has ended: the last line read closed the job's
    /// outermost group, or `.autoserv_execute` holds its exit status line.
    pub fn ended(&self) -> bool {
        self.group_ended
            || self.autoserv.as_deref().is_some_and(|p| {
                std::fs::read(p).is_ok_and(|b| {
                    b.split_inclusive(|&c| c == b'\n')
                        .nth(1)
                        .is_some_and(|l| l.ends_with(b"\n"))
                })
            })
    }

    /// The job as a continuous parse sees it now: metadata and the results
    /// so far (RUNNING rows included; finished tests with their keyvals
    /// and iterations). Diagnostics are the final parse's business.
    pub fn job(&mut self) -> Result<Job, ReadError> {
        let dir = self.jd.path.as_path();
        let mut quiet = Diags::new(dir, false);
        let mut job = self.head.clone();
        job.keyval = self.keyval.clone();
        job.tests = self
            .machine
            .snapshot()
            .into_iter()
            .map(|r| build_test(r, &self.head, dir, &self.host_attrs, &mut quiet))
            .collect::<Result<_, _>>()?;
        Ok(job)
    }
}

/// `parse_test`: attaches a result's keyval attributes and iterations.
fn build_test(
    r: TestResult,
    job: &Job,
    dir: &Path,
    host_attrs: &KeyMap<Value>,
    diags: &mut Diags<'_>,
) -> Result<Test, ReadError> {
    let mut attributes = KeyMap::new();
    let mut iterations = Vec::new();
    if r.finalized {
        if let Some(subdir) = r.subdir.as_deref().filter(|s| !s.is_empty()) {
            if let Some(inside) = inside_job_dir(subdir) {
                let test_dir = dir.join(inside);
                let results = test_dir.join("results/keyval");
                if let Some(bytes) = read_optional(&results, diags)? {
                    let parsed = parse::iteration::iterations(&bytes, job.status_version);
                    diags.problems(&results, parsed.problems);
                    iterations = parsed.iterations;
                }
                attributes = read_keyval(&test_dir.join("keyval"), diags)?;
            } else {
                diags.push(
                    dir,
                    Severity::Warning,
                    None,
                    format!(
                        "test subdir {subdir:?} leaves the job directory; its keyvals are not read"
                    ),
                );
            }
        }
        attributes.extend(
            host_attrs
                .iter()
                .map(|(k, v)| (crate::model::Key::from(k), v.clone())),
        );
        if job.status_version == 0 {
            let version = attributes
                .get("version")
                .and_then(parse::python2_str)
                .map_or(Value::None, Value::Str);
            attributes.insert("version", version);
        }
    }
    Ok(Test {
        subdir: r.subdir,
        testname: r.testname,
        status: r.status,
        reason: r.reason,
        started_time: r.started_time,
        finished_time: r.finished_time,
        machine: job.machine.clone(),
        kernel: r.kernel,
        attributes,
        iterations,
        labels: Vec::new(),
        information: r.info,
    })
}

#[cfg(test)]
mod tests {
    use super::{Follow, Live};
    use crate::discover::JobDir;
    use crate::model::Status;
    use std::io::Write;

    /// Partial lines wait for their newline; a line longer than a read
    /// chunk arrives whole; a truncated log starts again.
    #[test]
    fn live_reads_only_complete_lines_across_chunks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("1-a");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keyval"), "status_version=1\nhostname=h\n").unwrap();
        let log = dir.join("status.log");
        std::fs::write(&log, "").unwrap();
        let jd = JobDir {
            tag: "1-a".into(),
            level: 1,
            path: dir.clone(),
        };
        let mut live = Live::start(&jd).unwrap().expect("followable");
        let long = "x".repeat(super::LIVE_CHUNK * 2 + 7);
        let info = format!("\t\tINFO\t----\t----\ttimestamp=3\t{long}\n");
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        write!(
            f,
            "START\t----\t----\ttimestamp=1\t\n\tSTART\tt\tt\ttimestamp=2\t\n{}",
            &info[..1000]
        )
        .unwrap();
        assert_eq!(live.read_new().unwrap(), Follow::Grew);
        let t = |live: &mut Live| {
            live.job()
                .unwrap()
                .tests
                .into_iter()
                .find(|t| t.testname == "t")
                .expect("t")
        };
        assert_eq!(t(&mut live).status, Status::Running);
        assert_eq!(t(&mut live).information, None);
        f.write_all(&info.as_bytes()[1000..info.len() - 1]).unwrap();
        assert_eq!(
            live.read_new().unwrap(),
            Follow::Unchanged,
            "no newline yet"
        );
        f.write_all(b"\n").unwrap();
        assert_eq!(live.read_new().unwrap(), Follow::Grew);
        let i = t(&mut live).information.expect("information");
        assert_eq!(i.message, long);
        assert!(!live.ended());
        std::fs::write(
            &log,
            "START\t----\t----\ttimestamp=1\t\nEND GOOD\t----\t----\t\n",
        )
        .unwrap();
        assert_eq!(live.read_new().unwrap(), Follow::Restarted);
        assert!(live.job().unwrap().tests.iter().all(|t| t.testname != "t"));
        assert!(live.ended());
    }

    /// `n` minimal job directories `0`..`n` under a temp dir.
    fn job_dirs(n: usize) -> (tempfile::TempDir, Vec<JobDir>) {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = (0..n)
            .map(|i| {
                let path = tmp.path().join(i.to_string());
                std::fs::create_dir_all(&path).unwrap();
                std::fs::write(path.join("keyval"), "status_version=1\n").unwrap();
                std::fs::write(path.join("status.log"), "").unwrap();
                JobDir {
                    tag: i.to_string(),
                    level: 1,
                    path,
                }
            })
            .collect();
        (tmp, dirs)
    }

    /// Jobs reach the sink in input order, and no worker renders a job
    /// more than `window` jobs ahead of the sink.
    #[test]
    fn parse_in_order_keeps_order_and_the_window() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (_tmp, dirs) = job_dirs(60);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let sunk = AtomicUsize::new(0);
        let ahead = AtomicUsize::new(0);
        let mut tags = Vec::new();
        pool.install(|| {
            super::parse_in_order(
                &dirs,
                4,
                |job| {
                    let tag = job.unwrap().tag;
                    let i: usize = tag.parse().unwrap();
                    ahead.fetch_max(i - sunk.load(Ordering::SeqCst), Ordering::SeqCst);
                    // Uneven work: later jobs finish first.
                    std::thread::sleep(std::time::Duration::from_millis((i % 3) as u64));
                    tag
                },
                |tag| {
                    tags.push(tag);
                    sunk.fetch_add(1, Ordering::SeqCst);
                    Ok::<(), ()>(())
                },
            )
        })
        .unwrap();
        let want: Vec<String> = (0..60).map(|i| i.to_string()).collect();
        assert_eq!(tags, want);
        assert!(ahead.load(Ordering::SeqCst) < 4, "ran ahead by {ahead:?}");
    }

    /// The sink's first error is returned and stops the workers; a panic
    /// in a worker reaches the caller instead of leaving it waiting.
    #[test]
    fn parse_in_order_stops_on_errors_and_panics() {
        let (_tmp, dirs) = job_dirs(40);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let mut seen = 0;
        let r = pool.install(|| {
            super::parse_in_order(
                &dirs,
                2,
                |j| j.is_ok(),
                |_| {
                    seen += 1;
                    if seen == 5 {
                        Err("full")
                    } else {
                        Ok(())
                    }
                },
            )
        });
        assert_eq!((r, seen), (Err("full"), 5));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| {
                super::parse_in_order(
                    &dirs,
                    2,
                    |j| assert_ne!(j.unwrap().tag, "3", "render fails"),
                    |()| Ok::<(), ()>(()),
                )
            })
        }));
        assert!(panicked.is_err());
    }

    /// Files that are not regular files are read as before they were
    /// opened first instead of examined by path: a `keyval` that is a
    /// directory means the `keyval` inside it, a host keyval that is not a
    /// regular file is silently absent, a `.autoserv_execute` that is a
    /// directory and a `results/keyval` that is a FIFO are absent with a
    /// diagnostic (the FIFO is not read: no writer is waited for).
    #[test]
    fn odd_files_read_as_before() {
        let (_tmp, dirs) = job_dirs(1);
        let dir = &dirs[0].path;
        let fifo = |p: &std::path::Path| {
            let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        };
        std::fs::write(dir.join("keyval"), "status_version=1\nhostname=h\n").unwrap();
        std::fs::create_dir_all(dir.join(".autoserv_execute")).unwrap();
        std::fs::create_dir_all(dir.join("host_keyvals")).unwrap();
        fifo(&dir.join("host_keyvals/h"));
        std::fs::write(
            dir.join("status.log"),
            "START\tt\tt\ttimestamp=1\t\nEND GOOD\tt\tt\ttimestamp=2\t\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("t/keyval")).unwrap();
        std::fs::write(dir.join("t/keyval/keyval"), "a=1\n").unwrap();
        std::fs::create_dir_all(dir.join("t/results")).unwrap();
        fifo(&dir.join("t/results/keyval"));
        let job = super::parse_job(&dirs[0]).unwrap();
        let diags: Vec<String> = job.diagnostics.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            diags,
            [
                "error: .autoserv_execute: is a directory (Autotest's parser raises \
                 IOError and loses the job here); read as absent",
                "error: t/results/keyval: not a regular file (a FIFO, socket or device); \
                 not read",
            ],
        );
        let t = job.tests.iter().find(|t| t.testname == "t").unwrap();
        let a = t
            .attributes
            .get("a")
            .and_then(crate::model::Value::to_db_text);
        assert_eq!(a.as_deref(), Some("1"));
        assert!(t.attributes.iter().all(|(k, _)| !k.starts_with("host-")));
        let read: Vec<_> = super::files_read(&dirs[0])
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(dir).unwrap().to_path_buf())
            .collect();
        let want: Vec<std::path::PathBuf> = ["keyval", "status.log", "t/keyval/keyval"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(read, want);
    }

    /// The fingerprint is `xxh3:` and 32 hex digits, changes with the
    /// content of a test's `results/keyval`, and `files_read` names every
    /// file the parse read.
    #[test]
    fn fingerprint_is_xxh3_of_every_file_read() {
        let (tmp, dirs) = job_dirs(1);
        let dir = &dirs[0].path;
        std::fs::write(
            dir.join("status.log"),
            "START\tt\tt\ttimestamp=1\t\nEND GOOD\tt\tt\ttimestamp=2\t\n",
        )
        .unwrap();
        std::fs::create_dir_all(dir.join("t/results")).unwrap();
        std::fs::write(dir.join("t/results/keyval"), "a{perf}=1\n").unwrap();
        let first = super::parse_dir(&dirs[0]).unwrap().fingerprint;
        let hex = first.strip_prefix("xxh3:").expect("xxh3: prefix");
        assert!(
            hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{first}"
        );
        assert_eq!(super::parse_dir(&dirs[0]).unwrap().fingerprint, first);
        std::fs::write(dir.join("t/results/keyval"), "a{perf}=2\n").unwrap();
        assert_ne!(super::parse_dir(&dirs[0]).unwrap().fingerprint, first);
        let mut read: Vec<_> = super::files_read(&dirs[0])
            .unwrap()
            .into_iter()
            .map(|p| p.strip_prefix(tmp.path()).unwrap().to_path_buf())
            .collect();
        read.sort();
        let want: Vec<std::path::PathBuf> = ["0/keyval", "0/status.log", "0/t/results/keyval"]
            .iter()
            .map(Into::into)
            .collect();
        assert_eq!(read, want);
    }

    /// Items are taken in order until the items or the bytes of those
    /// read reach the bound (one worker: exactly there; the item that
    /// crosses the byte bound is in); the rest is left for the next call.
    #[test]
    fn read_bounded_stops_at_items_or_bytes() {
        let sizes = [5u64, 5, 20, 1, 1, 1, 1];
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let take = |from: usize, items: usize, bytes: u64| {
            one.install(|| super::read_bounded(&sizes[from..], items, bytes, |&s| (s, s)))
        };
        assert_eq!(take(0, 3, 10), vec![5, 5]);
        assert_eq!(take(2, 3, 10), vec![20]);
        assert_eq!(take(3, 3, 10), vec![1, 1, 1]);
        assert_eq!(take(6, 3, 10), vec![1]);
        assert_eq!(take(0, 100, u64::MAX), sizes.to_vec());
        assert!(take(7, 3, 10).is_empty());
        let two = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let got = two.install(|| super::read_bounded(&sizes, 100, 10, |&s| (s, s)));
        assert!(got.len() >= 2 && got.len() <= 3, "{got:?}");
        assert_eq!(got, sizes[..got.len()].to_vec());
    }
}
