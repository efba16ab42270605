//! How a job's files are read, in as few system calls as the answers
//! allow: a file is opened (an absent one costs that one failing call: no
//! `stat` of its path first), `fstat`ed once for its type and size, read
//! with one `read` into a buffer of that size (a short read that reaches
//! the size `fstat` gave is the end: no second `read` to see it) and
//! closed. Only the outcome is returned here; what it means for the job
//! (absent, a diagnostic, a read error) is `ingest`'s business, so it can
//! be decided later than the read (a file read once, used twice).

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

/// Opens `path` to read and says what it is (one `openat`, one `fstat`).
/// `O_NONBLOCK`: opening a FIFO must not wait for a writer.
pub(super) fn open(path: &Path) -> Opened {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
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

/// Opens and reads `path` (see [`open`] and [`Fetched::of`]).
pub(super) fn fetch(path: &Path) -> Fetched {
    Fetched::of(open(path))
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
