//! An append-only byte stream kept mostly on disk: bytes are appended in
//! blocks of 64 KiB, and every full block is written to an unnamed file in
//! the temporary directory (`O_TMPFILE` in `$TMPDIR`: only this process
//! can reach it, and it is gone when the process ends, however it ends),
//! so memory holds only the block being filled; bytes are read back by
//! position. Where the file cannot be made or a write fails, that block
//! and every later one stay in memory (what the file took stays readable):
//! the stream costs memory then, but never loses a byte.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

/// Bytes per block: the unit written to the file.
pub(super) const BLOCK: usize = 1 << 16;

/// The text stream: bytes appended, read back by position. Its first
/// `spilled` bytes are in `file`, the rest in `blocks` of [`BLOCK`]
/// bytes (the last one being filled).
#[derive(Debug, Default)]
pub(super) struct Text {
    file: Option<File>,
    /// No more blocks go to the file (it could not be made or written).
    kept: bool,
    spilled: u64,
    blocks: Vec<Vec<u8>>,
    len: u64,
}

impl Text {
    /// From now on, blocks stay in memory (as when the file fails).
    #[cfg(test)]
    pub(super) fn keep_in_memory(&mut self) {
        self.kept = true;
    }

    /// Bytes appended, bytes in the file, blocks held in memory.
    #[cfg(test)]
    pub(super) fn sizes(&self) -> (u64, u64, usize) {
        (self.len, self.spilled, self.blocks.len())
    }

    /// Appends `bytes`; returns where they start.
    pub(super) fn append(&mut self, mut bytes: &[u8]) -> u64 {
        let at = self.len;
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            if self.blocks.last().is_none_or(|b| b.len() == BLOCK) {
                self.blocks.push(Vec::with_capacity(BLOCK));
            }
            let block = self.blocks.last_mut().expect("a block being filled");
            let n = bytes.len().min(BLOCK - block.len());
            block.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
        }
        self.spill_full_blocks();
        at
    }

    /// Writes the full blocks to the file (made on the first), keeping the
    /// one being filled; a failure keeps this and every later block in
    /// memory (what the file holds stays readable).
    fn spill_full_blocks(&mut self) {
        while self.blocks.len() > 1 && !self.kept {
            if self.file.is_none() {
                self.file = unnamed_file().ok();
            }
            let written = match &mut self.file {
                Some(file) => file.write_all(&self.blocks[0]).is_ok(),
                None => false,
            };
            if !written {
                self.kept = true;
                return;
            }
            self.spilled += BLOCK as u64;
            self.blocks.remove(0);
        }
    }

    /// `n` bytes from `at`; `None` if the file fails to give them back.
    pub(super) fn read(&self, at: u64, n: usize) -> Option<Vec<u8>> {
        let mut out = vec![0; n];
        let in_file = usize::try_from(self.spilled.saturating_sub(at)).map_or(n, |f| f.min(n));
        if in_file > 0 {
            self.file
                .as_ref()?
                .read_exact_at(&mut out[..in_file], at)
                .ok()?;
        }
        // The rest is in memory: from the start of the first block on.
        let mut filled = in_file;
        let mut pos = (at + in_file as u64).saturating_sub(self.spilled) as usize;
        while filled < n {
            let block = &self.blocks[pos / BLOCK];
            let from = pos % BLOCK;
            let k = (n - filled).min(block.len() - from);
            out[filled..filled + k].copy_from_slice(&block[from..from + k]);
            (filled, pos) = (filled + k, pos + k);
        }
        Some(out)
    }
}

/// A file in the temporary directory that has no name (`O_TMPFILE`): only
/// this process can reach it, and it is gone when the process ends.
fn unnamed_file() -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_CLOEXEC)
        .open(std::env::temp_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends 200 KiB in pieces of odd sizes (`kept` set after `stop`
    /// bytes: the file takes no more), then reads back ranges across
    /// blocks and across the file's end.
    fn round_trip(stop: u64) -> Text {
        let bytes: Vec<u8> = (0..200 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut t = Text::default();
        let mut starts = Vec::new();
        for piece in bytes.chunks(1000 + 333) {
            if t.len >= stop {
                t.kept = true;
            }
            starts.push(t.append(piece));
        }
        assert_eq!(t.len, bytes.len() as u64);
        assert_eq!(starts[1], 1333);
        for at in (0..bytes.len() - 5000).step_by(4099) {
            let got = t.read(at as u64, 5000).expect("read back");
            assert_eq!(got, bytes[at..at + 5000], "at {at}");
        }
        t
    }

    #[test]
    fn bytes_read_back_from_the_file_and_the_block_being_filled() {
        let t = round_trip(u64::MAX);
        assert_eq!(t.spilled, 3 * BLOCK as u64);
        assert_eq!(t.blocks.len(), 1);
    }

    #[test]
    fn bytes_read_back_when_the_file_stops_taking_blocks() {
        let t = round_trip(BLOCK as u64 + 10);
        assert_eq!(t.spilled, BLOCK as u64);
        assert_eq!(t.blocks.len(), 3);
    }
}
