//! How a job's files are read, in as few system calls as the answers
//! allow: a file is opened (an absent one costs that one failing call: no
//! `stat` of its path first), `fstat`ed once for its type and size, read
//! with one `read` into a buffer of that size (a short read that reaches
//! the size `fstat` gave is the end: no second `read` to see it) and
//! closed. Files inside the job directory are opened relative to it
//! ([`Root`]). Only the outcome is returned here; what it means for the
//! job (absent, a diagnostic, a read error) is `ingest`'s business, so it
//! can be decided later than the read (a file read once, used twice).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A file as opening it found it.
#[derive(Debug)]
pub(super) enum Opened {
    /// `ENOENT` or `ENOTDIR`: absent, as Autotest's `os.path.exists` says.
    Absent,
    /// Opening failed otherwise (permissions, `ELOOP`, `EMFILE`...).
    Failed(io::Error),
    /// Opened, but `fstat` failed.
    NoStat(io::Error),
    /// A directory.
    Dir,
    /// Not a regular file: a FIFO, socket or device (not read).
    Special,
    /// A regular file, open, with the size `fstat` gave.
    File(File, u64),
}

/// The job directory, held open (`O_PATH`) while the job is read, so
/// that its files are opened relative to it: the kernel looks up only the
/// components below it for each file, not the whole path again (looking
/// up path components is most of what an `open` costs on a deep results
/// tree). Files outside it, and every file when it could not be opened,
/// are opened by their path, as are paths of `PATH_MAX` bytes or more
/// (which fail by their path, and must fail the same way here).
#[derive(Debug)]
pub(super) struct Root<'a> {
    dir: &'a Path,
    fd: Option<File>,
}

impl<'a> Root<'a> {
    /// `dir`, held open.
    pub(super) fn at(dir: &'a Path) -> Root<'a> {
        use std::os::unix::fs::OpenOptionsExt;
        let fd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(dir)
            .ok();
        Root { dir, fd }
    }

    /// Files opened by their path only.
    pub(super) fn by_path(dir: &'a Path) -> Root<'a> {
        Root { dir, fd: None }
    }

    /// Opens `path` to read and says what it is (one `openat`, one
    /// `fstat`). `O_NONBLOCK`: opening a FIFO must not wait for a writer.
    pub(super) fn open(&self, path: &Path) -> Opened {
        let file = match self.open_file(path) {
            Ok(f) => f,
            Err(e) if absent(&e) => return Opened::Absent,
            Err(e) => return Opened::Failed(e),
        };
        match file.metadata() {
            Err(e) => Opened::NoStat(e),
            Ok(m) if m.is_dir() => Opened::Dir,
            Ok(m) if !m.is_file() => Opened::Special,
            Ok(m) => Opened::File(file, m.len()),
        }
    }

    /// Opens and reads `path` (see [`Root::open`] and [`Fetched::of`]).
    pub(super) fn fetch(&self, path: &Path) -> Fetched {
        Fetched::of(self.open(path))
    }

    fn open_file(&self, path: &Path) -> io::Result<File> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::{AsRawFd, FromRawFd};
        // `path` is `dir` joined with a relative path (as the parse makes
        // them; anything else is opened by its path).
        let rel = self.fd.as_ref().and_then(|fd| {
            let path = path.as_os_str().as_bytes();
            let rel = path
                .strip_prefix(self.dir.as_os_str().as_bytes())?
                .strip_prefix(b"/")?;
            if rel.is_empty() || path.len() >= libc::PATH_MAX as usize {
                return None;
            }
            Some((fd, std::ffi::CString::new(rel).ok()?))
        });
        let Some((fd, rel)) = rel else {
            return std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path);
        };
        loop {
            // SAFETY: `fd` is an open directory and `rel` a NUL-terminated
            // relative path; a descriptor returned is new and owned here.
            let raw = unsafe {
                libc::openat(
                    fd.as_raw_fd(),
                    rel.as_ptr(),
                    libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC,
                )
            };
            if raw >= 0 {
                // SAFETY: `raw` is a descriptor just opened, owned by nobody else.
                return Ok(unsafe { File::from_raw_fd(raw) });
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// `ENOENT` or `ENOTDIR`.
pub(super) fn absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// A file's outcome once read.
#[derive(Debug)]
pub(super) enum Fetched {
    /// It was not a regular file that opened (never [`Opened::File`]).
    Not(Opened),
    /// Its bytes.
    Bytes(Vec<u8>),
    /// Reading it failed.
    ReadFailed(io::Error),
}

impl Fetched {
    /// Reads the file `opened` holds, if it is one (and closes it).
    pub(super) fn of(opened: Opened) -> Fetched {
        match opened {
            Opened::File(file, len) => match read_sized(file, len) {
                Ok(b) => Fetched::Bytes(b),
                Err(e) => Fetched::ReadFailed(e),
            },
            other => Fetched::Not(other),
        }
    }
}

/// A file read to its end, where a short read that reaches the size
/// `fstat` gave is the end (on a regular file a short read is the end,
/// but a file reporting size 0, as in `/proc`, is read until a `read`
/// returns nothing). A file that grew past that size is read to its new
/// end; one that shrank is read until a `read` returns nothing.
pub(super) struct ToEnd<R> {
    file: R,
    len: u64,
    read: u64,
    done: bool,
}

impl<R: Read> ToEnd<R> {
    /// Reads `file`, whose size `fstat` just gave as `len`.
    pub(super) fn new(file: R, len: u64) -> ToEnd<R> {
        ToEnd {
            file,
            len,
            read: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for ToEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let n = self.file.read(buf)?;
        self.read += n as u64;
        if n == 0 || (n < buf.len() && self.len > 0 && self.read >= self.len) {
            self.done = true;
        }
        Ok(n)
    }
}

/// Reads a file line by line (each with its `\n`; the last one may lack
/// it) through a buffer of the file's size, at most 64 KiB: memory is
/// bounded by that and the longest line, however large the file. (Not
/// `BufReader<ToEnd>`: `BufReader` zeroes its whole buffer before each
/// `read` into a reader without `read_buf`, and freeing a 64 KiB buffer
/// for every job made malloc consolidate its free lists each time.)
pub(super) struct Lines {
    reader: ToEnd<File>,
    chunk: Vec<u8>,
    start: usize,
    end: usize,
}

impl Lines {
    /// Lines of `file`, whose size `fstat` just gave as `len`.
    pub(super) fn new(file: File, len: u64) -> Lines {
        let capacity = usize::try_from(len).map_or(1 << 16, |l| l.saturating_add(1).min(1 << 16));
        Lines {
            reader: ToEnd::new(file, len),
            chunk: vec![0; capacity],
            start: 0,
            end: 0,
        }
    }

    /// Appends the next line to `line`; `false` at the end of the file.
    pub(super) fn next_line(&mut self, line: &mut Vec<u8>) -> io::Result<bool> {
        use std::io::BufRead;
        loop {
            if self.start == self.end {
                let n = loop {
                    match self.reader.read(&mut self.chunk) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                };
                if n == 0 {
                    return Ok(!line.is_empty());
                }
                (self.start, self.end) = (0, n);
            }
            let mut rest = &self.chunk[self.start..self.end];
            let taken = rest.read_until(b'\n', line)?;
            self.start += taken;
            if line.last() == Some(&b'\n') {
                return Ok(true);
            }
        }
    }
}

/// Reads a whole file whose size the caller has just taken: one `read` of
/// all of it into a buffer of that size and one more byte, which ends it
/// (see [`ToEnd`]; `File::read_to_end` would `fstat` and `lseek` again,
/// read in growing pieces and then once more to see the end).
fn read_sized(file: File, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0; usize::try_from(len).unwrap_or(0).saturating_add(1)];
    let mut filled = 0;
    let mut reader = ToEnd::new(file, len);
    loop {
        if filled == bytes.len() {
            bytes.resize(bytes.len() * 2, 0);
        }
        match reader.read(&mut bytes[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}
