//! Finds job directories under the paths given on the command line: the one
//! discovery walk every command uses. A directory is a *job directory* when
//! its listing names `status.log`, `status`, `keyval`, `.autoserv_execute`
//! or `.machines` (any kind of entry: a dangling link counts), or when it
//! sits where the scheduler puts job directories, `<id>-<owner>/<host or
//! groupN>`; it is then parsed exactly as `autotest-tko-parse -o` would
//! (spec §1.5: `.machines` and all-directories multi-machine dirs recurse
//! with `level + 1`, symlinks followed, no depth limit, cycles cut by
//! device + inode). Any other directory is a results root, searched (no
//! symlinks followed) down to its job directories, its top-level
//! directories a round at a time, in parallel (rayon; the walk is all
//! metadata syscalls). A [`Discovery`] streams rounds of jobs: each job
//! directory once per run (by device + inode, however many paths or
//! symlinks reach it), two directories with one tag an error; asked
//! ([`Discovery::signing`]), it also takes each job's metadata signature
//! with the `stat`s it makes anyway ([`signature_with`]). Reads
//! directory listings and `.machines`, never contents of results files
//! (see `ingest`).

mod handed;
mod listing;
mod spill;

pub use listing::{DirStamp, Listing, Listings, Recorded, SETTLED};

use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// One job directory to parse, with the tag level that applies to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDir {
    /// Absolute, lexically normalised path of the job directory.
    pub path: PathBuf,
    /// How many trailing path components form the job tag.
    pub level: usize,
    /// The TKO job tag.
    pub tag: String,
}

/// A problem met while walking; every one makes the run exit 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path that does not exist or cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A path given that cannot be walked (not a directory).
    #[error("{path}: {message}")]
    Layout {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A `.machines` line that is not followed (Autotest would recurse on
    /// it forever, or leave the job directory).
    #[error("{file}:{line}: {message}")]
    Machines {
        /// The `.machines` file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Two different job directories with one tag: the second is not
    /// parsed, so it can never replace the first.
    #[error("{second}: job tag {tag:?} is already taken by {first}; not parsed (give --level to tell them apart)")]
    TagCollision {
        /// The tag.
        tag: String,
        /// The job directory that has the tag in this run.
        first: PathBuf,
        /// The job directory refused.
        second: PathBuf,
    },
}

/// Something worth telling that is not an error (no effect on exit codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// No `--level` was given and job directories of the scheduler's layout
    /// were found under `path`: they get level 2.
    SchedulerLayout {
        /// The path given.
        path: PathBuf,
    },
    /// A directory that is one of its own ancestors (a symlink such as
    /// `up -> ..`): not followed again.
    Cycle {
        /// Where the cycle was met.
        path: PathBuf,
        /// The ancestor it leads back to.
        ancestor: PathBuf,
    },
    /// A job directory reached a second time under another path (a
    /// symlink, overlapping paths given): parsed once, as `first`.
    SameDirectory {
        /// The path skipped.
        path: PathBuf,
        /// The path it was parsed as.
        first: PathBuf,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::SchedulerLayout { path } => write!(
                f,
                "{}: scheduler layout <id>-<owner>/<host> found; using --level 2 for those job directories (give --level to choose)",
                path.display()
            ),
            Notice::Cycle { path, ancestor } => write!(
                f,
                "{}: directory cycle (it is {}); not followed again",
                path.display(),
                ancestor.display()
            ),
            Notice::SameDirectory { path, first } => write!(
                f,
                "{}: same directory as {}; parsed once",
                path.display(),
                first.display()
            ),
        }
    }
}

/// How the tag level of a job directory is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Level {
    /// No `--level`: 2 for job directories in the scheduler's
    /// `<id>-<owner>/<host>` position, else 1 (see [`auto_level`]).
    #[default]
    Auto,
    /// `--level N`, always obeyed.
    Fixed(usize),
}

impl From<usize> for Level {
    fn from(n: usize) -> Level {
        Level::Fixed(n)
    }
}

impl From<Option<usize>> for Level {
    fn from(n: Option<usize>) -> Level {
        n.map_or(Level::Auto, Level::Fixed)
    }
}

/// Names whose presence in a listing makes a directory a job directory.
const JOB_NAMES: [&str; 5] = [
    "status.log",
    "status",
    "keyval",
    ".autoserv_execute",
    ".machines",
];

/// Files whose metadata the fast visit probes (first hit wins).
const JOB_MARKERS: [&str; 4] = ["status.log", "status", "keyval", ".autoserv_execute"];

/// A directory's identity: device and inode (symlinks followed).
type Id = (u64, u64);

fn identity(path: &Path) -> io::Result<Id> {
    std::fs::metadata(path).map(|m| (m.dev(), m.ino()))
}

/// `os.path.abspath`: absolute and lexically normalised (no symlink
/// resolution).
pub fn absolute(path: &Path) -> io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Ok(out)
}

/// The job tag: the last `level` components of the absolute path joined by
/// `/` (`level` 0: the whole path).
pub fn job_tag(path: &Path, level: usize) -> String {
    let text = path.to_string_lossy();
    // After the `level`-th `/` from the end; the whole text when there are
    // fewer (or `level` is 0).
    let start = if level == 0 {
        0
    } else {
        text.bytes()
            .enumerate()
            .rev()
            .filter(|&(_, b)| b == b'/')
            .nth(level - 1)
            .map_or(0, |(i, _)| i + 1)
    };
    text[start..].to_string()
}

/// `get_afe_job_id`: the leading digits of a `<digits>-<x>/<y>` tag.
pub fn afe_job_id(tag: &str) -> Option<u64> {
    let (digits, rest) = tag.split_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (owner, sub) = rest.split_once('/')?;
    if owner.is_empty() || sub.is_empty() {
        return None;
    }
    digits.parse().ok()
}

/// A scheduler job directory name, `<afe job id>-<owner>`: digits, `-`,
/// and an owner with at least one letter (so dates such as `2019-05-01`
/// are not taken for one).
pub fn is_scheduler_job_name(name: &OsStr) -> bool {
    let b = name.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    digits > 0
        && b.get(digits) == Some(&b'-')
        && b[digits + 1..].iter().any(u8::is_ascii_alphabetic)
}

/// True when `dir` is `<id>-<owner>/<host or groupN>`: its parent's name
/// is a scheduler job name.
pub fn in_scheduler_position(dir: &Path) -> bool {
    dir.parent()
        .and_then(Path::file_name)
        .is_some_and(is_scheduler_job_name)
}

/// The level a job directory gets: `--level` when given, else 2 in the
/// scheduler's position (the scheduler's own `autotest-tko-parse -l 2 -o
/// <results>/<id>-<owner>/<host>`), else 1 (Autotest's default).
pub fn auto_level(dir: &Path, level: Level) -> usize {
    match level {
        Level::Fixed(n) => n,
        Level::Auto if in_scheduler_position(dir) => 2,
        Level::Auto => 1,
    }
}

/// One job directory found, with what deduplication needs.
#[derive(Debug)]
struct Found {
    dir: JobDir,
    id: Id,
    /// Its [`signature_with`], when the walk took it on the way.
    signature: Option<String>,
    /// Reached through a symlink below the path given: handed on after
    /// every directly reached job, so the real directory wins.
    via_link: bool,
}

/// What walking one unit produced.
#[derive(Debug, Default)]
struct UnitOut {
    found: Vec<Found>,
    errors: Vec<Error>,
    notices: Vec<Notice>,
    /// Some job got level 2 from [`Level::Auto`].
    detected: bool,
    /// Take the [`signature_with`] of jobs found by the fast visit.
    sign: bool,
    /// Stamp top-level directories and keep their [`Listing`]s.
    remember: bool,
    /// Listings taken now, settled, to be recorded.
    listings: Vec<(PathBuf, Listing)>,
}

impl UnitOut {
    fn io(&mut self, path: &Path, source: io::Error) {
        self.errors.push(Error::Io {
            path: path.to_path_buf(),
            source,
        });
    }
}

/// Python's `str.strip()` on bytes.
fn strip(line: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = line.iter().position(|c| !ws(c)).unwrap_or(line.len());
    let end = line.iter().rposition(|c| !ws(c)).map_or(start, |e| e + 1);
    &line[start..end]
}

/// The sub-jobs named by `dir/.machines` that exist, sorted; lines
/// Autotest would recurse on forever (blank, `.`) or that leave the
/// directory (`..`, a `/`) are skipped with an error naming file and line.
fn machines(dir: &Path, out: &mut UnitOut) -> Vec<(OsString, bool)> {
    let file = dir.join(".machines");
    if !file.exists() {
        return Vec::new();
    }
    let text = match std::fs::read(&file) {
        Ok(t) => t,
        Err(e) => {
            out.io(&file, e);
            return Vec::new();
        }
    };
    let mut names = Vec::new();
    if text.is_empty() {
        return names;
    }
    // Python iterates lines split after each "\n".
    let body = text.strip_suffix(b"\n").unwrap_or(&text);
    for (i, raw) in body.split(|&c| c == b'\n').enumerate() {
        let name = strip(raw);
        let bad = match name {
            b"" => Some("blank line: autotest-tko-parse would recurse into the job directory itself forever; skipped"),
            b"." => Some("\".\" names the job directory itself (autotest-tko-parse would recurse forever); skipped"),
            b".." => Some("\"..\" names the parent directory; skipped"),
            n if n.contains(&b'/') => Some("a machine name with \"/\" is not a sub-directory name; skipped"),
            _ => None,
        };
        if let Some(message) = bad {
            out.errors.push(Error::Machines {
                file: file.clone(),
                line: i + 1,
                message: message.to_string(),
            });
            continue;
        }
        let name = OsStr::from_bytes(name).to_os_string();
        let path = dir.join(&name);
        if path.exists() {
            let link = path.symlink_metadata().is_ok_and(|m| m.is_symlink());
            names.push((name, link));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// What `_get_job_subdirs` says of a directory.
enum Subdirs {
    /// A job directory.
    Leaf,
    /// A multi-machine directory: its sub-jobs (name, is a symlink).
    Multi(Vec<(OsString, bool)>),
    /// It cannot be listed (an error was recorded; Autotest's run dies).
    Unreadable,
}

/// `_get_job_subdirs`.
fn job_subdirs(dir: &Path, out: &mut UnitOut) -> Subdirs {
    let named = machines(dir, out);
    if !named.is_empty() {
        return Subdirs::Multi(named);
    }
    let listing = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            out.io(dir, e);
            return Subdirs::Unreadable;
        }
    };
    let mut dirs = Vec::new();
    for entry in listing {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                out.io(dir, e);
                return Subdirs::Unreadable;
            }
        };
        let name = entry.file_name();
        if name == ".parse.lock" {
            continue;
        }
        // The entry's type costs no stat; symlinks are followed (Python's
        // isdir does: a dangling or looping one is not a directory).
        let (is_dir, link) = match entry.file_type() {
            Ok(t) if t.is_symlink() => (entry.path().is_dir(), true),
            Ok(t) => (t.is_dir(), false),
            Err(_) => (entry.path().is_dir(), false),
        };
        if !is_dir {
            // One non-directory is enough: this is a job directory.
            return Subdirs::Leaf;
        }
        dirs.push((name, link));
    }
    if dirs.is_empty() {
        return Subdirs::Leaf;
    }
    dirs.sort();
    Subdirs::Multi(dirs)
}

/// One step of the [`parse_path`] walk.
enum Step {
    Enter {
        path: PathBuf,
        level: usize,
        via_link: bool,
    },
    Leave(Id),
}

/// `parse_path`: the job directories at and below one job directory, as
/// Autotest's recursion finds them (sub-jobs at `level + 1`, symlinks
/// followed), without its limits: no depth bound (an explicit stack), and
/// a directory that is its own ancestor is not entered again.
fn parse_path(path: &Path, level: usize, out: &mut UnitOut) {
    let mut stack = vec![Step::Enter {
        path: path.to_path_buf(),
        level,
        via_link: false,
    }];
    let mut ancestors: HashMap<Id, PathBuf> = HashMap::new();
    let mut visited: HashSet<Id> = HashSet::new();
    while let Some(step) = stack.pop() {
        let (path, level, via_link) = match step {
            Step::Leave(id) => {
                ancestors.remove(&id);
                continue;
            }
            Step::Enter {
                path,
                level,
                via_link,
            } => (path, level, via_link),
        };
        let id = match identity(&path) {
            Ok(id) => id,
            Err(e) => {
                out.io(&path, e);
                continue;
            }
        };
        if let Some(ancestor) = ancestors.get(&id) {
            out.notices.push(Notice::Cycle {
                ancestor: ancestor.clone(),
                path,
            });
            continue;
        }
        if !visited.insert(id) {
            continue;
        }
        let leaf = |out: &mut UnitOut, path: &Path| {
            out.found.push(Found {
                dir: JobDir {
                    path: path.to_path_buf(),
                    level,
                    tag: job_tag(path, level),
                },
                id,
                signature: None,
                via_link,
            })
        };
        match job_subdirs(&path, out) {
            Subdirs::Unreadable => {}
            Subdirs::Leaf => leaf(out, &path),
            Subdirs::Multi(subdirs) => {
                if path.join("status.log").exists() {
                    leaf(out, &path);
                }
                ancestors.insert(id, path.clone());
                stack.push(Step::Leave(id));
                for (name, link) in subdirs.into_iter().rev() {
                    stack.push(Step::Enter {
                        path: path.join(name),
                        level: level + 1,
                        via_link: via_link || link,
                    });
                }
            }
        }
    }
}

/// A job directory met by a search or given: parsed with its level.
fn job_entry(dir: &Path, level: Level, out: &mut UnitOut) {
    let n = auto_level(dir, level);
    out.detected |= level == Level::Auto && n == 2;
    parse_path(dir, n, out);
}

/// True when a listing names a job file (any kind of entry).
fn names_job_file<'a>(mut names: impl Iterator<Item = &'a OsStr>) -> bool {
    names.any(|n| JOB_NAMES.iter().any(|j| n == *j))
}

/// Whether a search stops at `dir` (a job directory) or looks below it,
/// from its listing (its position is checked first): a job file named,
/// except that an `<id>-<owner>` directory whose only
/// job file is `.machines` (the scheduler's asynchronous multi-machine
/// job) is searched, its hosts being the job directories: the level
/// applies to them, as in the scheduler's own parse.
fn search_stops_at<'a>(dir: &Path, mut names: impl Iterator<Item = &'a OsStr>) -> bool {
    let job_file = |n: &OsStr| JOB_NAMES.iter().any(|j| n == *j);
    let scheduler = dir.file_name().is_some_and(is_scheduler_job_name);
    names.any(|n| job_file(n) && !(scheduler && n == ".machines"))
}

/// Searches `root` (itself included) for job directories: down through
/// directories that are not job directories, symlinks not followed, to
/// any depth.
fn walk(root: &Path, level: Level, out: &mut UnitOut) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if in_scheduler_position(&dir) {
            job_entry(&dir, level, out);
            continue;
        }
        let listing = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                out.io(&dir, e);
                continue;
            }
        };
        let mut names = Vec::new();
        let mut subdirs = Vec::new();
        for entry in listing {
            match entry {
                Ok(e) => {
                    if e.file_type().is_ok_and(|t| t.is_dir()) {
                        subdirs.push(e.path());
                    }
                    names.push(e.file_name());
                }
                Err(e) => out.io(&dir, e),
            }
        }
        if search_stops_at(&dir, names.iter().map(OsString::as_os_str)) {
            job_entry(&dir, level, out);
            continue;
        }
        subdirs.sort();
        stack.extend(subdirs.into_iter().rev());
    }
}

/// What a [`signature_with`] takes of a file: size, mtime (seconds and
/// nanoseconds) and inode.
pub type FileStamp = [u64; 4];

/// The metadata signature of a job directory, from `stat`, which gives the
/// [`FileStamp`] of a name relative to the job directory (`None`: absent):
/// `status.log` (else `status`), `keyval`, `.autoserv_execute` (else the
/// parent's `keyval`, `../keyval`), absent ones counting too; an md5 in hex.
pub fn signature_with(mut stat: impl FnMut(&str) -> Option<FileStamp>) -> String {
    let mut ctx = md5::Context::new();
    let mut take = |name: &str| {
        ctx.consume(name.as_bytes());
        match stat(name) {
            Some(stamp) => {
                for n in stamp {
                    ctx.consume(n.to_le_bytes());
                }
                true
            }
            None => {
                ctx.consume(b"-");
                false
            }
        }
    };
    if !take("status.log") {
        take("status");
    }
    take("keyval");
    if !take(".autoserv_execute") {
        take("../keyval");
    }
    hex(&ctx.compute().0)
}

/// Lower-case hex of `bytes` (what `{:x}` of an md5 digest gives).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The [`FileStamp`] of `m`.
pub fn stamp(m: &std::fs::Metadata) -> FileStamp {
    [m.len(), m.mtime() as u64, m.mtime_nsec() as u64, m.ino()]
}

/// An open directory: listed once, and `stat`s of names below it resolve
/// from it (one path lookup per component below it instead of per
/// component of the whole path: most of the cost of a re-run). Opened and
/// listed with `open` and `getdents64` directly (`opendir` adds an
/// `fstat` per directory).
#[derive(Debug)]
struct OpenDir {
    fd: std::os::fd::OwnedFd,
}

/// What `fstatat` says of a name, as far as the walk needs it.
#[derive(Debug, Clone, Copy)]
struct Stat {
    dev: u64,
    ino: u64,
    /// The file type bits of `st_mode`.
    kind: libc::mode_t,
    stamp: FileStamp,
    /// ctime, seconds and nanoseconds.
    ctime: [u64; 2],
}

impl Stat {
    /// The [`DirStamp`] of a directory.
    fn dir_stamp(&self) -> DirStamp {
        let [_, mtime, mtime_ns, _] = self.stamp;
        [
            self.dev,
            self.ino,
            mtime,
            mtime_ns,
            self.ctime[0],
            self.ctime[1],
        ]
    }
}

impl OpenDir {
    fn open(path: &Path) -> io::Result<OpenDir> {
        use std::os::fd::FromRawFd;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
        // SAFETY: `c` is a valid NUL-terminated string.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | libc::O_NONBLOCK,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        Ok(OpenDir {
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The entries (without `.` and `..`): name and whether it is a
    /// directory (a symlink is not; no `stat` unless the file system does
    /// not say).
    fn entries(&mut self) -> io::Result<Vec<(OsString, bool)>> {
        let mut out = Vec::new();
        self.for_each_entry(|name, is_dir| {
            out.push((OsStr::from_bytes(name).to_os_string(), is_dir));
        })?;
        Ok(out)
    }

    /// Calls `f` with each entry's name and whether it is a directory, as
    /// [`OpenDir::entries`] lists them, allocating nothing.
    fn for_each_entry(&mut self, mut f: impl FnMut(&[u8], bool)) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // `linux_dirent64` records: d_ino (8 bytes), d_off (8), d_reclen
        // (2), d_type (1), then the NUL-terminated name.
        let mut buf = [0u64; 2048];
        loop {
            // SAFETY: `buf` is writable for its whole length and the fd is
            // an open directory.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr(),
                    std::mem::size_of_val(&buf),
                )
            };
            let Ok(n) = usize::try_from(n) else {
                return Err(io::Error::last_os_error());
            };
            if n == 0 {
                return Ok(());
            }
            // SAFETY: the kernel wrote `n` bytes of records into `buf`.
            let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
            let mut at = 0;
            while at + 19 < n {
                let reclen = usize::from(u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]));
                let kind = bytes[at + 18];
                let rec = &bytes[at + 19..(at + reclen).min(n)];
                at += reclen.max(1);
                let name = &rec[..rec.iter().position(|&b| b == 0).unwrap_or(rec.len())];
                if name == b"." || name == b".." {
                    continue;
                }
                let is_dir = match kind {
                    libc::DT_DIR => true,
                    libc::DT_UNKNOWN => self
                        .stat_with(OsStr::from_bytes(name), libc::AT_SYMLINK_NOFOLLOW)
                        .is_some_and(|m| m.kind == libc::S_IFDIR),
                    _ => false,
                };
                f(name, is_dir);
            }
        }
    }

    /// `stat` (symlinks followed) of `rel`, a path relative to this
    /// directory; `None` when it cannot be stat'ed.
    fn stat(&self, rel: &OsStr) -> Option<Stat> {
        self.stat_with(rel, 0)
    }

    fn stat_with(&self, rel: &OsStr, flags: libc::c_int) -> Option<Stat> {
        use std::os::fd::AsRawFd;
        stat_at(self.fd.as_raw_fd(), rel, flags)
    }

    /// `fstat` of the directory itself.
    fn own_stat(&self) -> Option<Stat> {
        self.stat_with(OsStr::new(""), libc::AT_EMPTY_PATH)
    }
}

/// `stat` (symlinks followed) of `path` (absolute, or relative to the
/// working directory); `None` when it cannot be stat'ed.
fn stat_path(path: &Path) -> Option<Stat> {
    stat_at(libc::AT_FDCWD, path.as_os_str(), 0)
}

/// `fstatat(fd, rel, flags)`, without allocating for a path under 256
/// bytes.
// The field types of `libc::stat` differ between platforms.
#[allow(clippy::unnecessary_cast)]
fn stat_at(fd: libc::c_int, rel: &OsStr, flags: libc::c_int) -> Option<Stat> {
    // NUL-terminated on the stack when short (no allocation per stat).
    let rel = rel.as_bytes();
    if rel.contains(&0) {
        return None;
    }
    let mut short = [0u8; 256];
    let long;
    let c: &[u8] = if rel.len() < short.len() {
        short[..rel.len()].copy_from_slice(rel);
        &short[..=rel.len()]
    } else {
        long = std::ffi::CString::new(rel).ok()?;
        long.as_bytes_with_nul()
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: `fd` is an open directory or `AT_FDCWD`, `c` ends with its
    // only NUL and `st` is large enough for a `stat`.
    let rc = unsafe { libc::fstatat(fd, c.as_ptr().cast(), st.as_mut_ptr(), flags) };
    if rc != 0 {
        return None;
    }
    // SAFETY: fstatat succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    // The same numbers `std::fs::Metadata` gives ([`stamp`]).
    Some(Stat {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        kind: st.st_mode & libc::S_IFMT,
        stamp: [
            st.st_size as u64,
            st.st_mtime as u64,
            st.st_mtime_nsec as u64,
            st.st_ino as u64,
        ],
        ctime: [st.st_ctime as u64, st.st_ctime_nsec as u64],
    })
}

/// Where names below a top-level directory are `stat`ed from: the
/// directory itself, open (it was just listed); its root, open (a name
/// relative to it is the directory's own name, a slash, then the name);
/// else its path.
enum Below<'a> {
    Top(OpenDir),
    Root(&'a OpenDir, &'a [u8]),
    Path(&'a Path),
}

impl Below<'_> {
    /// `stat` of the non-empty `parts` joined by slashes, below the
    /// directory (`buf` is reused for the name).
    fn stat(&self, parts: &[&[u8]], buf: &mut Vec<u8>) -> Option<Stat> {
        buf.clear();
        if let Below::Root(_, top) = self {
            buf.extend_from_slice(top);
        }
        for part in parts.iter().filter(|p| !p.is_empty()) {
            if !buf.is_empty() {
                buf.push(b'/');
            }
            buf.extend_from_slice(part);
        }
        let rel = OsStr::from_bytes(buf);
        match self {
            Below::Top(top) => top.stat(rel),
            Below::Root(root, _) => root.stat(rel),
            Below::Path(dir) => stat_path(&dir.join(rel)),
        }
    }
}

/// One top-level directory of a results root: the same as [`walk`] on it,
/// in fewer system calls for the common layouts (this is most of the cost
/// of re-running a backfill over an unchanged root). Its listing says
/// whether it is a job; if not, each sub-directory is probed for a job
/// file: a regular one without `.machines` is a job directory with no
/// sub-jobs (Autotest's rule: a file among its entries), not listed. The
/// probes are `stat`s relative to an open directory ([`Below`]), and with
/// [`UnitOut::sign`] they take the job's [`signature_with`] on the way (its
/// first marker's `stat` counts twice). With [`UnitOut::remember`] the
/// directory is stamped before it is listed: when `prior` has that stamp,
/// its sub-directories are taken from `prior` instead of a listing (and
/// probed relative to `root`, its parent, when that is open); else a
/// settled listing is kept.
fn visit_top(
    dir: &Path,
    level: Level,
    prior: Option<&Listing>,
    root: Option<&OpenDir>,
    out: &mut UnitOut,
) {
    if in_scheduler_position(dir) {
        return job_entry(dir, level, out);
    }
    let in_root = root.zip(dir.file_name());
    // Stamped by its name only when there is a listing to hold it against
    // (else once open, before it is listed: no path to look up).
    let stamp = match prior {
        Some(_) if out.remember => match in_root {
            Some((root, name)) => root.stat(name),
            None => stat_path(dir),
        }
        .map(|st| st.dir_stamp()),
        _ => None,
    };
    let fresh;
    let (from, subdirs): (Below<'_>, &[OsString]) = match (prior, stamp) {
        (Some(prior), Some(stamp)) if prior.stamp == stamp => {
            let from = match in_root {
                Some((root, name)) => Below::Root(root, name.as_bytes()),
                None => Below::Path(dir),
            };
            (from, &prior.subdirs)
        }
        _ => {
            let mut top = match OpenDir::open(dir) {
                Ok(d) => d,
                Err(e) => return out.io(dir, e),
            };
            // The stamp is taken before the listing: an entry added after
            // it changes the stamp the next run sees.
            let stamp = match stamp {
                None if out.remember => top.own_stat().map(|st| st.dir_stamp()),
                stamp => stamp,
            };
            let listing = match top.entries() {
                Ok(listing) => listing,
                Err(e) => return out.io(dir, e),
            };
            if search_stops_at(dir, listing.iter().map(|e| e.0.as_os_str())) {
                return job_entry(dir, level, out);
            }
            let mut subdirs: Vec<OsString> =
                listing.into_iter().filter(|e| e.1).map(|e| e.0).collect();
            subdirs.sort();
            fresh = subdirs;
            let now = std::time::SystemTime::now();
            if let Some(stamp) = stamp.filter(|s| listing::settled(s, now)) {
                let kept = Listing {
                    stamp,
                    subdirs: fresh.clone(),
                };
                out.listings.push((dir.to_path_buf(), kept));
            }
            (Below::Top(top), &fresh)
        }
    };
    let scheduler = dir.file_name().is_some_and(is_scheduler_job_name);
    // `auto_level` of a sub-directory: its parent is `dir`.
    let n = match level {
        Level::Fixed(n) => n,
        Level::Auto if scheduler => 2,
        Level::Auto => 1,
    };
    let mut buf = Vec::new();
    for name in subdirs {
        // `name/file` below `dir` (`../keyval`: the parent is `dir` itself,
        // as `name` is no symlink).
        let mut below = |file: &str| match file.strip_prefix("../") {
            Some(up) => from.stat(&[up.as_bytes()], &mut buf),
            None => from.stat(&[name.as_bytes(), file.as_bytes()], &mut buf),
        };
        let marker = JOB_MARKERS.iter().find_map(|m| below(m).map(|st| (*m, st)));
        let sub = dir.join(name);
        match marker {
            Some((first, st)) if st.kind == libc::S_IFREG && below(".machines").is_none() => {
                debug_assert_eq!(n, auto_level(&sub, level));
                out.detected |= level == Level::Auto && n == 2;
                let Some(me) = below("") else {
                    out.io(&sub, io::Error::last_os_error());
                    continue;
                };
                let signature = out.sign.then(|| {
                    signature_with(|f| match f {
                        _ if f == first => Some(st.stamp),
                        _ => below(f).map(|s| s.stamp),
                    })
                });
                out.found.push(Found {
                    dir: JobDir {
                        tag: job_tag(&sub, n),
                        path: sub,
                        level: n,
                    },
                    id: (me.dev, me.ino),
                    signature,
                    via_link: false,
                });
            }
            Some(_) => job_entry(&sub, level, out),
            None if scheduler => job_entry(&sub, level, out),
            None => walk(&sub, level, out),
        }
    }
}

/// A piece of the work: a path given as a job directory, or one top-level
/// directory of a results root, with the index of the path given (and
/// the root, when it is held open while its top-level directories are
/// walked).
#[derive(Debug)]
enum Unit {
    Job(PathBuf, usize),
    Top(PathBuf, usize, Option<Arc<OpenDir>>),
}

impl Unit {
    fn given(&self) -> usize {
        match self {
            Unit::Job(_, g) | Unit::Top(_, g, _) => *g,
        }
    }

    /// Walks this unit as `d` says (level, signing, listings), with the
    /// listings of `prior`.
    fn walk(&self, d: &Discovery, prior: &Listings) -> UnitOut {
        let mut out = UnitOut {
            sign: d.sign,
            remember: d.remember,
            ..UnitOut::default()
        };
        match self {
            Unit::Job(path, _) => job_entry(path, d.level, &mut out),
            Unit::Top(dir, _, root) => {
                visit_top(dir, d.level, prior.get(dir), root.as_deref(), &mut out)
            }
        }
        out
    }
}

/// The units of the paths given, lazily: one root's sorted top-level
/// listing is held at a time.
#[derive(Debug)]
struct Units {
    paths: Vec<PathBuf>,
    next: usize,
    tops: TopNames,
    current: usize,
    /// The current root, open (only when `keep_root`: it costs a
    /// descriptor for as long as its top-level directories are walked).
    root: Option<Arc<OpenDir>>,
    keep_root: bool,
}

impl Units {
    fn new(paths: &[PathBuf]) -> Units {
        Units {
            paths: paths.to_vec(),
            next: 0,
            tops: TopNames::default(),
            current: 0,
            root: None,
            keep_root: false,
        }
    }

    /// Classifies the path given at `index`: a job unit, an error, or
    /// (a root) its top-level directories queued.
    fn open(&mut self, index: usize) -> Option<Result<Unit, Error>> {
        let mut tops = TopNames::default();
        let mut root = None;
        let unit = classify(&self.paths[index], index, &mut root, |root, name| {
            if tops.root.as_os_str().is_empty() {
                tops.root = root.to_path_buf();
            }
            tops.push(name);
        });
        if unit.is_some() {
            return unit;
        }
        tops.sort();
        self.tops = tops;
        self.current = index;
        self.root = root.filter(|_| self.keep_root).map(Arc::new);
        None
    }
}

/// What the path given at `index` is: a job unit, an error, or (`None`) a
/// results root, whose top-level directories (absolute root, name) were
/// passed to `each_top` (to be ignored when it is not `None`), and which
/// is left open in `root`.
fn classify(
    given: &Path,
    index: usize,
    root: &mut Option<OpenDir>,
    mut each_top: impl FnMut(&Path, &[u8]),
) -> Option<Result<Unit, Error>> {
    let path = match absolute(given) {
        Ok(p) => p,
        Err(source) => {
            let path = given.to_path_buf();
            return Some(Err(Error::Io { path, source }));
        }
    };
    match std::fs::metadata(&path) {
        Err(source) => return Some(Err(Error::Io { path, source })),
        Ok(m) if !m.is_dir() => {
            return Some(Err(Error::Layout {
                path,
                message: "not a directory (give a job directory or a results root)".into(),
            }))
        }
        Ok(_) => {}
    }
    if in_scheduler_position(&path) {
        return Some(Ok(Unit::Job(path, index)));
    }
    let mut job = false;
    let listed = OpenDir::open(&path).and_then(|mut d| {
        d.for_each_entry(|name, is_dir| {
            if is_dir {
                each_top(&path, name);
            }
            job |= names_job_file(std::iter::once(OsStr::from_bytes(name)));
        })?;
        *root = Some(d);
        Ok(())
    });
    if let Err(source) = listed {
        return Some(Err(Error::Io { path, source }));
    }
    if job {
        return Some(Ok(Unit::Job(path, index)));
    }
    None
}

/// A root's top-level directory names, in one buffer, sorted: a root may
/// hold hundreds of thousands of them, for the whole of its walk (a path
/// each cost some 70 bytes apiece); each becomes a path when it is handed
/// on.
#[derive(Debug, Default)]
struct TopNames {
    root: PathBuf,
    bytes: Vec<u8>,
    /// Where each name is in `bytes`.
    spans: Vec<(usize, usize)>,
    /// The next to hand on.
    next: usize,
}

impl TopNames {
    fn push(&mut self, name: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(name);
        self.spans.push((start, self.bytes.len()));
    }

    /// Byte order of the names, which is that of their paths (one parent)
    /// and what `Path`'s component order gives them.
    fn sort(&mut self) {
        let bytes = &self.bytes;
        self.spans
            .sort_unstable_by(|a, b| bytes[a.0..a.1].cmp(&bytes[b.0..b.1]));
        self.bytes.shrink_to_fit();
        self.spans.shrink_to_fit();
    }

    fn next(&mut self) -> Option<PathBuf> {
        let &(start, end) = self.spans.get(self.next)?;
        self.next += 1;
        Some(self.root.join(OsStr::from_bytes(&self.bytes[start..end])))
    }

    /// The directory handed on last, if any was.
    fn last_handed(&self) -> Option<PathBuf> {
        let &(start, end) = self.spans.get(self.next.checked_sub(1)?)?;
        Some(self.root.join(OsStr::from_bytes(&self.bytes[start..end])))
    }

    /// Every name was handed on.
    fn exhausted(&self) -> bool {
        self.next >= self.spans.len()
    }
}

impl Iterator for Units {
    type Item = Result<Unit, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(top) = self.tops.next() {
                return Some(Ok(Unit::Top(top, self.current, self.root.clone())));
            }
            if self.next >= self.paths.len() {
                return None;
            }
            self.next += 1;
            if let Some(unit) = self.open(self.next - 1) {
                return Some(unit);
            }
        }
    }
}

/// The number of units of `paths` (job directories given plus top-level
/// directories of roots): a cheap count, the progress total of a
/// [`Discovery`] (whose [`Round::units`] add up to it).
pub fn count_units(paths: &[PathBuf]) -> usize {
    // What `Units` yields, counted without making a path per directory.
    paths
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut tops = 0;
            match classify(p, i, &mut None, |_, _| tops += 1) {
                None => tops,
                Some(Ok(_)) => 1,
                Some(Err(_)) => 0,
            }
        })
        .sum()
}

/// At most this many results roots are held open by one round (a
/// backfill takes a round before it walks the one before: twice that).
const MAX_ROOTS_OPEN: usize = 64;

/// What one round of a [`Discovery`] found.
#[derive(Debug, Default)]
pub struct Round {
    /// Job directories new to this run, sorted by tag then path.
    pub jobs: Vec<JobDir>,
    /// Per job (same order), its `signature_with` signature when the walk
    /// took it ([`Discovery::signing`]; `None`: not taken).
    pub signatures: Vec<Option<String>>,
    /// Walk errors (each makes the run exit 1).
    pub errors: Vec<Error>,
    /// Notices (stderr, no effect on the exit code).
    pub notices: Vec<Notice>,
    /// Units walked in this round.
    pub units: usize,
    /// Top-level directories listed in this round whose listings are worth
    /// recording ([`Discovery::remembering`]).
    pub listings: Vec<(PathBuf, Listing)>,
}

/// A round's units, taken and not yet walked ([`Discovery::take_round`]).
#[derive(Debug)]
pub struct Pending {
    units: Vec<Unit>,
    errors: Vec<Error>,
    /// Where each root's top-level directories in this round sit among
    /// the root's others, a root at a time, in the order of `units`.
    edges: Vec<Edge>,
    /// The last round: it hands on the jobs reached through symlinks.
    last: bool,
}

/// Where a round's top-level directories of one root sit among the
/// root's others (see [`TopSpan`]).
#[derive(Debug)]
struct Edge {
    /// The top-level directory of the root handed on just before the
    /// round's first (by an earlier round).
    after: Option<PathBuf>,
    /// The round's last is the root's last.
    to_end: bool,
}

/// A round's top-level directories of one results root, and where they
/// sit among the root's others: they are all of the root's directories
/// after `after` (from its first when `None`) through the last of `tops`
/// (through the root's end when `to_end`), as the root was listed this
/// run. So a recorded listing in that span that is not one of `tops` is
/// of a directory that is gone, and every recorded listing of the root
/// falls in the span of exactly one round.
#[derive(Debug)]
pub struct TopSpan<'a> {
    /// The results root (absolute).
    pub root: &'a Path,
    /// The root's top-level directory just before `tops[0]`, if any.
    pub after: Option<&'a Path>,
    /// The round's top-level directories of the root, in byte order.
    pub tops: Vec<&'a Path>,
    /// `tops` ends with the root's last top-level directory.
    pub to_end: bool,
}

impl Pending {
    /// The top-level directories of results roots in this round (those a
    /// recorded listing may stand for), a root at a time.
    pub fn spans(&self) -> Vec<TopSpan<'_>> {
        let mut spans: Vec<(usize, TopSpan<'_>)> = Vec::new();
        let mut edges = self.edges.iter();
        for u in &self.units {
            let Unit::Top(dir, g, _) = u else {
                continue;
            };
            match spans.last_mut() {
                Some((given, span)) if given == g => span.tops.push(dir),
                _ => {
                    let edge = edges.next().expect("an edge for each root of a round");
                    let span = TopSpan {
                        root: dir.parent().unwrap_or(dir),
                        after: edge.after.as_deref(),
                        tops: vec![dir],
                        to_end: edge.to_end,
                    };
                    spans.push((*g, span));
                }
            }
        }
        spans.into_iter().map(|(_, s)| s).collect()
    }
}

/// The discovery of one run, streamed a round of units at a time (rounds
/// are walked in parallel on the current rayon pool). Holds, besides the
/// round in flight, one root's top-level listing and the identities and
/// tags of the jobs handed on so far, so every job directory comes out
/// once, and a second directory with a tag already taken is an error.
#[derive(Debug)]
pub struct Discovery {
    units: Units,
    level: Level,
    paths: Vec<PathBuf>,
    /// Job directories handed on: path by identity and by tag.
    handed: handed::Handed,
    /// The scheduler-layout notice was given.
    announced: bool,
    /// Paths already reported as [`Notice::SameDirectory`].
    reported: HashSet<PathBuf>,
    /// Job directories refused for their tag (reported once).
    refused: HashSet<Id>,
    /// Jobs reached through symlinks, handed on last.
    linked: Vec<Found>,
    /// The last round was taken ([`Discovery::take_round`]).
    exhausted: bool,
    /// Take signatures on the way ([`Discovery::signing`]).
    sign: bool,
    /// Stamp top-level directories, and keep their listings
    /// ([`Discovery::remembering`]).
    remember: bool,
}

impl Discovery {
    /// A discovery of `paths` (job directories or results roots) with
    /// `level` (`--level`, or [`Level::Auto`]).
    pub fn new(paths: &[PathBuf], level: impl Into<Level>) -> Discovery {
        Discovery {
            units: Units::new(paths),
            level: level.into(),
            paths: paths.to_vec(),
            handed: handed::Handed::new(),
            announced: false,
            reported: HashSet::new(),
            refused: HashSet::new(),
            linked: Vec::new(),
            exhausted: false,
            sign: false,
            remember: false,
        }
    }

    /// Also takes each job's [`signature_with`] signature where the walk
    /// `stat`s its files anyway ([`Round::signatures`]): most jobs of a
    /// results root cost no further `stat` to sign.
    pub fn signing(mut self) -> Discovery {
        self.sign = true;
        self
    }

    /// Also stamps each top-level directory of a results root before it is
    /// listed, and keeps the settled listings ([`Round::listings`], to be
    /// recorded for the next run); a top-level directory whose stamp is
    /// that of its listing in the `prior` given to
    /// [`Discovery::walk_round`] is not listed: its sub-directories are
    /// taken from there (see [`Listing`]).
    pub fn remembering(mut self) -> Discovery {
        self.remember = true;
        self.units.keep_root = true;
        self
    }

    /// The next round: up to `max_units` units walked (in parallel), or
    /// `None` when everything was handed on.
    pub fn next_round(&mut self, max_units: usize) -> Option<Round> {
        let pending = self.take_round(max_units)?;
        self.walk_round(pending, &Listings::new())
    }

    /// The units of the next round, up to `max_units`, not walked yet
    /// (`None`: none left). [`Pending::tops`] names the directories whose
    /// recorded listings [`Discovery::walk_round`] may use; rounds are
    /// walked in the order they are taken, and one may be taken before
    /// the one before it is walked (its listings looked up meanwhile).
    pub fn take_round(&mut self, max_units: usize) -> Option<Pending> {
        if self.exhausted {
            return None;
        }
        let (mut units, mut errors) = (Vec::new(), Vec::new());
        // The root being walked and its directory handed on last: the
        // round's span of that root starts after it.
        let (current, after) = (self.units.current, self.units.tops.last_handed());
        let mut edges: Vec<(usize, Edge)> = Vec::new();
        // Each root of the round is held open until it is walked: a round
        // ends early at `MAX_ROOTS_OPEN` of them.
        let mut roots = 0;
        for u in self.units.by_ref().take(max_units.max(1)) {
            match u {
                Ok(u) => {
                    // Units come root by root.
                    if let Unit::Top(_, g, root) = &u {
                        if edges.last().map(|e| e.0) != Some(*g) {
                            roots += usize::from(root.is_some());
                            // Only the round's first root can have begun
                            // in an earlier round.
                            let after = if edges.is_empty() && *g == current {
                                after.clone()
                            } else {
                                None
                            };
                            edges.push((
                                *g,
                                Edge {
                                    after,
                                    to_end: true,
                                },
                            ));
                        }
                    }
                    units.push(u);
                }
                Err(e) => errors.push(e),
            }
            if roots >= MAX_ROOTS_OPEN {
                break;
            }
        }
        // The round's last root ends in it unless it is still being
        // walked with names left.
        if let Some((g, edge)) = edges.last_mut() {
            edge.to_end = *g != self.units.current || self.units.tops.exhausted();
        }
        // Last: the jobs reached through symlinks (gathered by then).
        let last = units.is_empty() && errors.is_empty();
        self.exhausted = last;
        Some(Pending {
            units,
            errors,
            edges: edges.into_iter().map(|(_, e)| e).collect(),
            last,
        })
    }

    /// Walks `pending` (in parallel), using the listings of `prior` whose
    /// stamps still hold; `None` when it was the last and nothing was
    /// left to hand on.
    pub fn walk_round(&mut self, pending: Pending, prior: &Listings) -> Option<Round> {
        let mut round = Round {
            errors: pending.errors,
            units: pending.units.len(),
            ..Round::default()
        };
        let mut found = Vec::new();
        if pending.last {
            if self.linked.is_empty() {
                return None;
            }
            found = std::mem::take(&mut self.linked);
        }
        let me = &*self;
        let outs: Vec<(usize, UnitOut)> = pending
            .units
            .par_iter()
            .map(|u| (u.given(), u.walk(me, prior)))
            .collect();
        for (given, out) in outs {
            if out.detected && !self.announced {
                self.announced = true;
                round.notices.push(Notice::SchedulerLayout {
                    path: absolute(&self.paths[given])
                        .unwrap_or_else(|_| self.paths[given].clone()),
                });
            }
            round.errors.extend(out.errors);
            round.notices.extend(out.notices);
            round.listings.extend(out.listings);
            for f in out.found {
                if f.via_link {
                    self.linked.push(f);
                } else {
                    found.push(f);
                }
            }
        }
        found.sort_by(|a, b| {
            (a.dir.tag.as_str(), &a.dir.path).cmp(&(b.dir.tag.as_str(), &b.dir.path))
        });
        for f in found {
            self.admit(f, &mut round);
        }
        Some(round)
    }

    /// Hands `f` on unless its directory was handed on already (a notice
    /// when under another path) or its tag belongs to another directory
    /// (an error naming both).
    fn admit(&mut self, f: Found, round: &mut Round) {
        if let Some(first) = self.handed.with_id(f.id) {
            if first != f.dir.path && self.reported.insert(f.dir.path.clone()) {
                round.notices.push(Notice::SameDirectory {
                    path: f.dir.path,
                    first,
                });
            }
            return;
        }
        if let Some(first) = self.handed.with_tag(&f.dir.tag) {
            if !self.refused.insert(f.id) {
                return;
            }
            round.errors.push(Error::TagCollision {
                first,
                second: f.dir.path,
                tag: f.dir.tag,
            });
            return;
        }
        self.handed.insert(f.id, &f.dir.path, &f.dir.tag);
        round.jobs.push(f.dir);
        round.signatures.push(f.signature);
    }
}

/// Everything a [`Discovery`] of `paths` finds, all rounds collected (for
/// small inputs and tests): jobs sorted by tag then path, walk errors
/// (notices are dropped).
pub fn find_jobs(paths: &[PathBuf], level: impl Into<Level>) -> (Vec<JobDir>, Vec<Error>) {
    let mut discovery = Discovery::new(paths, level);
    let (mut jobs, mut errors) = (Vec::new(), Vec::new());
    while let Some(round) = discovery.next_round(usize::MAX) {
        jobs.extend(round.jobs);
        errors.extend(round.errors);
    }
    jobs.sort_by(|a, b| (a.tag.as_str(), &a.path).cmp(&(b.tag.as_str(), &b.path)));
    (jobs, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn file(root: &Path, p: &str, text: &[u8]) -> io::Result<()> {
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().expect("parent"))?;
        std::fs::write(p, text)
    }

    fn tags(jobs: &[JobDir]) -> Vec<&str> {
        jobs.iter().map(|j| j.tag.as_str()).collect()
    }

    /// All rounds of a discovery with `units` per round.
    fn discover_all(
        paths: &[PathBuf],
        level: Level,
        units: usize,
    ) -> (Vec<JobDir>, Vec<Error>, Vec<Notice>) {
        discover_taking(paths, level, units, false)
    }

    /// [`discover_all`], each round taken before the one before it is
    /// walked when `ahead` (as a backfill does).
    fn discover_taking(
        paths: &[PathBuf],
        level: Level,
        units: usize,
        ahead: bool,
    ) -> (Vec<JobDir>, Vec<Error>, Vec<Notice>) {
        let mut d = Discovery::new(paths, level);
        let (mut jobs, mut errors, mut notices) = (Vec::new(), Vec::new(), Vec::new());
        let mut next = d.take_round(units);
        while let Some(pending) = next.take() {
            if ahead {
                next = d.take_round(units);
            }
            let Some(r) = d.walk_round(pending, &Listings::new()) else {
                break;
            };
            if !ahead {
                next = d.take_round(units);
            }
            jobs.extend(r.jobs);
            errors.extend(r.errors);
            notices.extend(r.notices);
        }
        (jobs, errors, notices)
    }

    #[test]
    fn fast_top_level_visit_finds_what_the_walk_finds() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        file(r, "plainjob/status.log", b"x=1\n")?;
        file(r, "1-a/h1/status.log", b"")?;
        file(r, "1-a/h1/t1/keyval", b"")?;
        file(r, "1-a/h2/keyval", b"")?;
        file(r, "2-b/group0/.machines", b"hA\nhB\n")?;
        file(r, "2-b/group0/status.log", b"")?;
        file(r, "2-b/group0/hA/status.log", b"")?;
        file(r, "2-b/group0/hB/status.log", b"")?;
        file(r, "3-c/.machines", b"hX\n")?;
        file(r, "3-c/hX/status.log", b"")?;
        file(r, "4-d/x/y/z/status", b"")?;
        file(r, "5-e/h/status.log/inner", b"")?; // a directory named like a marker
        std::fs::create_dir_all(r.join("6-empty/nothing"))?;
        file(r, "archive/2019-05-01/7-f/h7/status.log", b"")?;
        file(r, "archive/2019-05-01/dangling/keyval", b"")?;
        symlink("nowhere", r.join("archive/2019-05-01/dangling/status.log"))?;
        file(r, "archive/2019-05-01/dangling/t/status.log", b"")?;
        for top in std::fs::read_dir(r)? {
            let d = top?.path();
            for level in [Level::Fixed(1), Level::Fixed(2), Level::Auto] {
                let (mut fast, mut slow) = (UnitOut::default(), UnitOut::default());
                visit_top(&d, level, None, None, &mut fast);
                walk(&d, level, &mut slow);
                let dirs = |o: &UnitOut| o.found.iter().map(|f| f.dir.clone()).collect::<Vec<_>>();
                assert_eq!(dirs(&fast), dirs(&slow), "{}", d.display());
                let ids = |o: &UnitOut| o.found.iter().map(|f| f.id).collect::<Vec<_>>();
                assert_eq!(ids(&fast), ids(&slow), "{}", d.display());
                assert_eq!(fast.errors.len(), slow.errors.len());
                assert_eq!(fast.detected, slow.detected);
            }
        }
        let (jobs, errors) = find_jobs(&[r.to_path_buf()], 2);
        assert!(errors.is_empty(), "{errors:?}");
        let plain = format!(
            "{}/plainjob",
            r.file_name().expect("name").to_string_lossy()
        );
        let mut want = vec![
            "1-a/h1",
            "1-a/h2",
            "2-b/group0",
            "2-b/group0/hA",
            "2-b/group0/hB",
            "3-c/hX",
            // `<id>-<owner>/<host>` is a job directory (the scheduler's
            // `-o` target): Autotest's recursion from there.
            "4-d/x/y/z",
            // A directory named like a marker file: Autotest's rules make
            // it a multi-machine dir whose "host" is the directory itself.
            "5-e/h",
            "5-e/h/status.log",
            "6-empty/nothing",
            "7-f/h7",
            "2019-05-01/dangling",
            plain.as_str(),
        ];
        want.sort();
        assert_eq!(tags(&jobs), want);
        Ok(())
    }

    /// A top-level directory whose listing takes several `getdents64`
    /// calls (600 entries of ~64 bytes; the buffer holds 16 KiB): every
    /// sub-directory is found, as the walk finds them.
    #[test]
    fn long_listing_is_read_whole() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        for i in 0..600 {
            file(
                r,
                &format!("9-z/host-with-a-rather-long-name-{i:04}/status.log"),
                b"",
            )?;
        }
        let (mut fast, mut slow) = (UnitOut::default(), UnitOut::default());
        visit_top(&r.join("9-z"), Level::Auto, None, None, &mut fast);
        walk(&r.join("9-z"), Level::Auto, &mut slow);
        let dirs = |o: &UnitOut| o.found.iter().map(|f| f.dir.clone()).collect::<Vec<_>>();
        assert_eq!(fast.found.len(), 600);
        assert_eq!(dirs(&fast), dirs(&slow));
        assert!(fast.errors.is_empty(), "{:?}", fast.errors);
        Ok(())
    }

    /// The signatures the walk takes on the way are those taken by path,
    /// whichever files a job has (status.log or status, its own
    /// `.autoserv_execute` or none), and change when a signed file does.
    /// Jobs the fast visit does not reach (a top-level directory that is a
    /// job itself, `.machines` below it) are left to be signed by path.
    #[test]
    fn signatures_taken_by_the_walk_equal_those_taken_by_path() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        file(r, "1-a/h1/status.log", b"x")?;
        file(r, "1-a/h1/keyval", b"k=1\n")?;
        file(r, "1-a/h1/.autoserv_execute", b"")?;
        file(r, "2-b/h2/status", b"v0")?;
        file(r, "2-b/keyval", b"parent=1\n")?;
        file(r, "3-c/h3/keyval", b"only=1\n")?;
        file(r, "4-d/h4/status.log", b"")?;
        file(r, "5-e/.machines", b"h5\n")?; // searched: h5 on the fast path
        file(r, "5-e/h5/status.log", b"")?;
        file(r, "6-f/h6/.machines", b"m\n")?; // h6 not: signed by path
        file(r, "6-f/h6/status.log", b"")?;
        file(r, "6-f/h6/m/status.log", b"")?;
        let by_path =
            |dir: &Path| signature_with(|n| std::fs::metadata(dir.join(n)).ok().map(|m| stamp(&m)));
        let signed = |r: &Path| -> Vec<(String, Option<String>)> {
            let mut d = Discovery::new(&[r.to_path_buf()], 2).signing();
            let mut out = Vec::new();
            while let Some(round) = d.next_round(2) {
                assert_eq!(round.jobs.len(), round.signatures.len());
                for (j, s) in round.jobs.into_iter().zip(round.signatures) {
                    if let Some(s) = &s {
                        assert_eq!(*s, by_path(&j.path), "{}", j.tag);
                    }
                    out.push((j.tag, s));
                }
            }
            out
        };
        let first = signed(r);
        let taken: Vec<&str> = first
            .iter()
            .filter(|(_, s)| s.is_some())
            .map(|(t, _)| t.as_str())
            .collect();
        // 2-b is a job directory itself (its keyval): walked by path.
        assert_eq!(taken, ["1-a/h1", "3-c/h3", "4-d/h4", "5-e/h5"]);
        assert_eq!(first.len(), 7, "{first:?}");
        // Unsigned discovery takes none.
        let mut plain = Discovery::new(&[r.to_path_buf()], 2);
        while let Some(round) = plain.next_round(100) {
            assert!(round.signatures.iter().all(Option::is_none));
        }
        // A signed file rewritten: that job's signature changes.
        std::thread::sleep(std::time::Duration::from_millis(20));
        file(r, "3-c/h3/keyval", b"only=22\n")?;
        let second = signed(r);
        for ((tag, a), (_, b)) in first.iter().zip(&second) {
            assert_eq!(a == b, a.is_none() || tag != "3-c/h3", "{tag}");
        }
        Ok(())
    }

    /// A top-level directory whose stamp is that of its recorded listing is
    /// not listed: its sub-directories come from the listing (one that
    /// names fewer than are there shows it), probed and signed as listed
    /// ones are; with any other stamp it is listed again. A directory just
    /// written is not settled: its listing is not kept.
    #[test]
    fn a_recorded_listing_stands_for_its_directory_while_the_stamp_holds() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        file(r, "top/h1/status.log", b"x")?;
        file(r, "top/h1/keyval", b"k=1\n")?;
        file(r, "top/h2/status.log", b"y")?;
        file(r, "top/h2/.autoserv_execute", b"")?;
        type Walked = (Vec<(String, Option<String>)>, Vec<(PathBuf, Listing)>);
        let walk = |prior: Listings| -> Walked {
            let mut d = Discovery::new(&[r.to_path_buf()], 2)
                .signing()
                .remembering();
            let (mut jobs, mut kept) = (Vec::new(), Vec::new());
            while let Some(pending) = d.take_round(10) {
                // The round names the directory whose listing it may use.
                let spans = pending.spans();
                let tops: Vec<&Path> = spans.iter().flat_map(|s| s.tops.clone()).collect();
                assert!(tops.is_empty() || tops == [absolute(&r.join("top")).expect("abs")]);
                let Some(round) = d.walk_round(pending, &prior) else {
                    break;
                };
                assert!(round.errors.is_empty(), "{:?}", round.errors);
                jobs.extend(round.jobs.into_iter().map(|j| j.tag).zip(round.signatures));
                kept.extend(round.listings);
            }
            (jobs, kept)
        };
        let (all, kept) = walk(Listings::new());
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all.iter().all(|j| j.1.is_some()), "{all:?}");
        assert!(kept.is_empty(), "{kept:?}");
        let top = absolute(&r.join("top"))?;
        let stamp = stat_path(&top).expect("stat").dir_stamp();
        // Stamped open (a first listing) or by name (against a listing):
        // the same stamp.
        let open = OpenDir::open(&top)?.own_stat().expect("fstat");
        assert_eq!(open.dir_stamp(), stamp);
        let recorded = |stamp: DirStamp| {
            let subdirs = vec![OsString::from("h1")];
            Listings::from([(top.clone(), Listing { stamp, subdirs })])
        };
        assert_eq!(walk(recorded(stamp)).0, all[..1]);
        for field in 0..stamp.len() {
            let mut other = stamp;
            other[field] ^= 1;
            assert_eq!(walk(recorded(other)).0, all, "stamp field {field}");
        }
        Ok(())
    }

    #[test]
    fn each_root_is_spanned_once_round_by_round() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let (r, q) = (tmp.path().join("r"), tmp.path().join("q"));
        for name in ["a", "b", "c", "d", "e", "f", "g"] {
            file(&r, &format!("{name}/h/status.log"), b"")?;
        }
        file(&q, "x/h/status.log", b"")?;
        let (r, q) = (absolute(&r)?, absolute(&q)?);
        let mut d = Discovery::new(&[r.clone(), q.clone()], 2);
        // (root, after, tops, to_end) of each round's spans.
        type Seen = Vec<(PathBuf, Option<String>, Vec<String>, bool)>;
        let mut rounds: Vec<Seen> = Vec::new();
        let name = |p: &Path| p.file_name().expect("name").to_string_lossy().into_owned();
        while let Some(pending) = d.take_round(3) {
            let spans = pending.spans();
            rounds.push(
                spans
                    .iter()
                    .map(|s| {
                        let tops = s.tops.iter().map(|t| name(t)).collect();
                        (s.root.to_path_buf(), s.after.map(name), tops, s.to_end)
                    })
                    .collect(),
            );
            if d.walk_round(pending, &Listings::new()).is_none() {
                break;
            }
        }
        let span = |root: &Path, after: Option<&str>, tops: &[&str], to_end| {
            let tops = tops.iter().map(|t| t.to_string()).collect();
            (root.to_path_buf(), after.map(String::from), tops, to_end)
        };
        let want: Vec<Seen> = vec![
            vec![span(&r, None, &["a", "b", "c"], false)],
            vec![span(&r, Some("c"), &["d", "e", "f"], false)],
            // The root's last, then the next root whole.
            vec![
                span(&r, Some("f"), &["g"], true),
                span(&q, None, &["x"], true),
            ],
            vec![],
        ];
        assert_eq!(rounds, want);
        Ok(())
    }

    #[test]
    fn each_job_once_across_paths_and_symlinks() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path().join("results");
        file(&r, "1-a/h1/status.log", b"")?;
        file(&r, "2-b/h2/status.log", b"")?;
        file(&r, "3-c/.machines", b"hZ\nh3\n")?;
        file(&r, "3-c/h3/status.log", b"")?;
        symlink("../2-b/h2", r.join("3-c/hZ"))?;
        let paths = [
            r.clone(),
            r.clone(),
            r.join("1-a/h1"),
            r.join("1-a"),
            r.join("3-c/hZ"),
        ];
        for (units, ahead) in [1, 2, 100]
            .into_iter()
            .flat_map(|u| [(u, false), (u, true)])
        {
            let (jobs, errors, notices) = discover_taking(&paths, Level::Auto, units, ahead);
            assert!(errors.is_empty(), "{errors:?}");
            assert_eq!(
                tags(&jobs),
                ["1-a/h1", "2-b/h2", "3-c/h3"],
                "{units} {ahead}"
            );
            // The symlinked `.machines` entry is the real directory's.
            assert!(
                notices.contains(&Notice::SameDirectory {
                    path: r.join("3-c/hZ"),
                    first: r.join("2-b/h2"),
                }),
                "{notices:?}"
            );
            let layout: Vec<_> = notices
                .iter()
                .filter(|n| matches!(n, Notice::SchedulerLayout { .. }))
                .collect();
            assert_eq!(layout.len(), 1, "{notices:?}");
        }
        Ok(())
    }

    #[test]
    fn two_directories_with_one_tag_is_an_error_naming_both() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        file(r, "1-a/host1/status.log", b"")?;
        file(r, "2-b/host1/status.log", b"")?;
        for units in [1, 100] {
            let paths = [r.to_path_buf(), r.to_path_buf()];
            let (jobs, errors, _) = discover_all(&paths, Level::Fixed(1), units);
            assert_eq!(tags(&jobs), ["host1"]);
            assert_eq!(jobs[0].path, r.join("1-a/host1"));
            assert_eq!(errors.len(), 1);
            let text = errors[0].to_string();
            assert!(matches!(errors[0], Error::TagCollision { .. }));
            assert!(
                text.contains(&r.join("1-a/host1").display().to_string()),
                "{text}"
            );
            assert!(
                text.contains(&r.join("2-b/host1").display().to_string()),
                "{text}"
            );
        }
        // The default detects the layout.
        let (jobs, errors, _) = discover_all(&[r.to_path_buf()], Level::Auto, 100);
        assert!(errors.is_empty());
        assert_eq!(tags(&jobs), ["1-a/host1", "2-b/host1"]);
        Ok(())
    }

    /// Past a block of paths, the first path of a tag or a directory met
    /// again is read back from the file they went to.
    #[test]
    fn a_collision_names_a_first_path_read_back_from_the_file() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        let first = 2000;
        for j in 0..first {
            file(
                r,
                &format!("{j:04}-a/host{j:04}-{}/status.log", "x".repeat(40)),
                b"",
            )?;
        }
        file(
            r,
            "zz-b/host0007-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx/status.log",
            b"",
        )?;
        let early = r.join(format!("0007-a/host0007-{}", "x".repeat(40)));
        let paths = [r.to_path_buf(), early.clone()];
        let (jobs, errors, notices) = discover_all(&paths, Level::Fixed(1), 100);
        assert_eq!(jobs.len(), first);
        assert_eq!(errors.len(), 1, "{errors:?}");
        let text = errors[0].to_string();
        assert!(matches!(errors[0], Error::TagCollision { .. }), "{text}");
        assert!(text.contains(&early.display().to_string()), "{text}");
        assert!(text.contains("zz-b"), "{text}");
        // The job given again by its own path is the one found first.
        assert_eq!(notices.len(), 0, "{notices:?}");
        Ok(())
    }

    #[test]
    fn job_directory_without_status_log_is_not_a_root() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        // Only test subdirs and `up -> ..`.
        file(r, "123-alice/host160/fsx/status.log", b"")?;
        file(r, "123-alice/host160/fsx/keyval", b"")?;
        symlink("..", r.join("123-alice/host160/up"))?;
        // A dangling status log.
        file(r, "124-bob/kvm-guest-260/aiostress/status.log", b"")?;
        symlink("gone", r.join("124-bob/kvm-guest-260/status.log"))?;
        // Not in the scheduler's layout, only a dangling status log.
        file(r, "job/t/status.log", b"")?;
        symlink("gone", r.join("job/status.log"))?;
        let one = |p: &str, level: Level| discover_all(&[r.join(p)], level, 10);

        let (jobs, errors, notices) = one("123-alice/host160", Level::Auto);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(tags(&jobs), ["123-alice/host160/fsx"]);
        assert!(
            notices.iter().any(|n| matches!(n, Notice::Cycle { .. })),
            "{notices:?}"
        );
        let (jobs, _, _) = one("123-alice/host160", Level::Fixed(2));
        assert_eq!(tags(&jobs), ["123-alice/host160/fsx"]);
        assert_eq!(jobs[0].level, 3);
        // The same from the root.
        let (jobs, _, _) = discover_all(&[r.to_path_buf()], Level::Auto, 10);
        let dangling = format!("{}/job", r.file_name().expect("name").to_string_lossy());
        let mut want = vec!["123-alice/host160/fsx", "124-bob/kvm-guest-260", "job"];
        want.sort();
        let _ = dangling;
        assert_eq!(tags(&jobs), want);
        let (jobs, _, _) = one("124-bob/kvm-guest-260", Level::Auto);
        assert_eq!(tags(&jobs), ["124-bob/kvm-guest-260"]);
        let (jobs, _, _) = one("job", Level::Fixed(1));
        assert_eq!(tags(&jobs), ["job"]);
        Ok(())
    }

    #[test]
    fn deep_tree_is_found_and_cycles_end() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        let deep: String = std::iter::repeat_n("d/", 300).collect();
        file(r, &format!("1-a/g/{deep}status.log"), b"")?;
        let (jobs, errors, _) = discover_all(&[r.join("1-a/g")], Level::Auto, 10);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].level, 302);
        assert_eq!(jobs[0].tag, format!("1-a/g/{}", deep.trim_end_matches('/')));
        // A symlink cycle in a multi-machine directory ends.
        symlink("..", r.join("1-a/g/d/back"))?;
        let (jobs, _, notices) = discover_all(&[r.join("1-a/g")], Level::Auto, 10);
        assert_eq!(jobs.len(), 1);
        assert!(notices.iter().any(|n| matches!(n, Notice::Cycle { .. })));
        Ok(())
    }

    #[test]
    fn bad_machines_lines_are_skipped_with_file_and_line() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        file(r, "1-a/.machines", b"hA\n.\n\n..\n../2-b\n")?;
        file(r, "1-a/hA/status.log", b"")?;
        file(r, "2-b/.machines", b".\n")?;
        file(r, "2-b/status.log", b"")?;
        // A name that is a file: an error, not a job.
        file(r, "3-c/.machines", b"f\n")?;
        file(r, "3-c/f", b"")?;
        file(r, "3-c/status.log", b"")?;
        let paths = [r.join("1-a"), r.join("2-b"), r.join("3-c")];
        let (jobs, errors, _) = discover_all(&paths, Level::Auto, 10);
        assert_eq!(tags(&jobs), ["1-a/hA", "2-b", "3-c"]);
        let not_dir = errors
            .iter()
            .filter(|e| matches!(e, Error::Io { path, .. } if *path == r.join("3-c/f")));
        assert_eq!(not_dir.count(), 1, "{errors:?}");
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let machines = r.join("1-a/.machines").display().to_string();
        for line in [2, 3, 4, 5] {
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("{machines}:{line}: "))),
                "{lines:?}"
            );
        }
        let other = r.join("2-b/.machines").display().to_string();
        assert!(
            lines.iter().any(|l| l.starts_with(&format!("{other}:1: "))),
            "{lines:?}"
        );
        assert_eq!(errors.len(), 6);
        Ok(())
    }

    #[test]
    fn level_detection() {
        assert!(is_scheduler_job_name(OsStr::new("123-alice")));
        assert!(is_scheduler_job_name(OsStr::new("1-a_b")));
        assert!(!is_scheduler_job_name(OsStr::new("2019-05-01")));
        assert!(!is_scheduler_job_name(OsStr::new("alice-1")));
        assert!(!is_scheduler_job_name(OsStr::new("123")));
        assert_eq!(auto_level(Path::new("/r/123-alice/host1"), Level::Auto), 2);
        assert_eq!(auto_level(Path::new("/r/123-alice"), Level::Auto), 1);
        assert_eq!(
            auto_level(Path::new("/r/123-alice/host1"), Level::Fixed(1)),
            1
        );
    }

    #[test]
    fn tags_and_afe_ids() {
        let p = Path::new("/r/123-alice/host1");
        assert_eq!(job_tag(p, 1), "host1");
        assert_eq!(job_tag(p, 2), "123-alice/host1");
        assert_eq!(job_tag(p, 0), "/r/123-alice/host1");
        assert_eq!(job_tag(p, 9), "/r/123-alice/host1");
        assert_eq!(afe_job_id("123-alice/host1"), Some(123));
        assert_eq!(afe_job_id("123-alice"), None);
        assert_eq!(afe_job_id("x-alice/h"), None);
    }
}
