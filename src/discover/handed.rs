//! The record of the job directories a discovery has handed on: what makes
//! each come out once per run (by identity) and a second directory with a
//! tag already taken an error naming the first. It is the one thing a run
//! keeps for every job it found, so what it keeps in memory does not grow
//! with the paths: a 32-byte record per job (identity, a hash of the tag,
//! where its text is) in blocks of records, and two hash tables of record
//! numbers, one by identity and one by tag (SipHash with a random key, so
//! hostile names cannot make them slow). The texts (each path, and its tag
//! only where lossy UTF-8 made it differ from the path's tail) are appended
//! to one stream whose full 64 KiB blocks are written to an unnamed file in
//! the temporary directory (`O_TMPFILE` in `$TMPDIR`: gone with the
//! process, however it ends) and read back only when an identity or a tag
//! comes again, which is rare. Where that file cannot be made or written,
//! the blocks stay in memory ([`super::spill`]), which costs the path's
//! bytes again a job.
//! With 257-byte paths, a run of `tko parse` grows 55–116 bytes a job
//! found (its top-level directory's name included), where it grew 350–380
//! with every path held in memory, and 719 with a path and a tag
//! allocated apart and kept in two maps
//! (`memory::a_job_found_costs_no_memory_for_its_path`).

use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::spill::Text;
use super::Id;

/// Records per block (32 bytes each: 1 MiB).
const RECORD_BLOCK: usize = 1 << 15;
/// Set in an entry's tag length when the tag is stored after the path, not
/// the path's tail.
const TAG_APART: u32 = 1 << 31;
/// An entry's header: the path's length and the tag's, little-endian.
const HEADER: usize = 8;

/// One job handed on.
#[derive(Debug, Clone, Copy)]
struct Record {
    id: Id,
    /// The tag's hash (the tables are rehashed from the records, without
    /// reading texts back).
    tag_hash: u64,
    /// Where the entry starts in the text stream: a header, the path,
    /// then the tag when [`TAG_APART`] is set.
    at: u64,
}

/// The jobs handed on so far (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Handed {
    text: Text,
    records: Vec<Vec<Record>>,
    len: u32,
    by_id: HashTable<u32>,
    by_tag: HashTable<u32>,
    keys: RandomState,
}

impl Handed {
    /// Nothing handed on yet; texts go to a file once there is a block.
    pub(super) fn new() -> Handed {
        Handed::default()
    }

    /// Nothing handed on yet; texts stay in memory.
    #[cfg(test)]
    fn in_memory() -> Handed {
        let mut h = Handed::default();
        h.text.keep_in_memory();
        h
    }

    /// How many jobs were handed on.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    /// The path of the job handed on with identity `id`, if any.
    pub(super) fn with_id(&self, id: Id) -> Option<PathBuf> {
        let hash = self.keys.hash_one(id);
        let at = self.by_id.find(hash, |&i| self.record(i).id == id)?;
        Some(self.path(*at))
    }

    /// The path of the job handed on with tag `tag`, if any. (Should the
    /// file fail to give a text back, a job whose tag has the same 64-bit
    /// hash is taken to have this tag.)
    pub(super) fn with_tag(&self, tag: &str) -> Option<PathBuf> {
        let hash = self.keys.hash_one(tag.as_bytes());
        let at = self.by_tag.find(hash, |&i| {
            let r = self.record(i);
            r.tag_hash == hash
                && Entry::at(&self.text, r.at).is_none_or(|e| e.tag() == tag.as_bytes())
        })?;
        Some(self.path(*at))
    }

    /// Records a job handed on: neither its identity nor its tag may have
    /// been handed on before ([`Handed::with_id`], [`Handed::with_tag`]).
    pub(super) fn insert(&mut self, id: Id, path: &Path, tag: &str) {
        let path = path.as_os_str().as_bytes();
        let apart = !path.ends_with(tag.as_bytes());
        let tag_len = to_u32(tag.len()) | if apart { TAG_APART } else { 0 };
        let mut header = [0; HEADER];
        header[..4].copy_from_slice(&to_u32(path.len()).to_le_bytes());
        header[4..].copy_from_slice(&tag_len.to_le_bytes());
        let at = self.text.append(&header);
        self.text.append(path);
        if apart {
            self.text.append(tag.as_bytes());
        }
        let (id_hash, tag_hash) = (self.keys.hash_one(id), self.keys.hash_one(tag.as_bytes()));
        let new = Record { id, tag_hash, at };
        match self.records.last_mut() {
            Some(b) if b.len() < RECORD_BLOCK => b.push(new),
            _ => {
                let mut b = Vec::with_capacity(RECORD_BLOCK);
                b.push(new);
                self.records.push(b);
            }
        }
        let index = self.len;
        self.len = index
            .checked_add(1)
            .expect("fewer than 2^32 jobs in one run");
        let (keys, records) = (&self.keys, &self.records);
        self.by_id
            .insert_unique(id_hash, index, |&i| keys.hash_one(record(records, i).id));
        self.by_tag
            .insert_unique(tag_hash, index, |&i| record(records, i).tag_hash);
    }

    fn record(&self, i: u32) -> Record {
        record(&self.records, i)
    }

    /// The path of record `i`, or where it could not be read back, words
    /// saying so (it is only ever shown).
    fn path(&self, i: u32) -> PathBuf {
        match Entry::at(&self.text, self.record(i).at) {
            Some(e) => PathBuf::from(std::ffi::OsStr::from_bytes(e.path())),
            None => PathBuf::from(
                "(a directory found earlier in this run, whose path could not be read back)",
            ),
        }
    }
}

fn record(records: &[Vec<Record>], i: u32) -> Record {
    let i = i as usize;
    records[i / RECORD_BLOCK][i % RECORD_BLOCK]
}

/// One entry read back from the text stream.
struct Entry {
    bytes: Vec<u8>,
    path_len: usize,
    tag_len: u32,
}

impl Entry {
    /// The entry that starts at `at` in `text`; `None` if the file fails
    /// to give it back.
    fn at(text: &Text, at: u64) -> Option<Entry> {
        let header = text.read(at, HEADER)?;
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let (path_len, tag_len) = (word(0) as usize, word(4));
        let apart = if tag_len & TAG_APART != 0 {
            (tag_len & !TAG_APART) as usize
        } else {
            0
        };
        let bytes = text.read(at + HEADER as u64, path_len + apart)?;
        Some(Entry {
            bytes,
            path_len,
            tag_len,
        })
    }

    fn path(&self) -> &[u8] {
        &self.bytes[..self.path_len]
    }

    fn tag(&self) -> &[u8] {
        let tag_len = (self.tag_len & !TAG_APART) as usize;
        if self.tag_len & TAG_APART != 0 {
            &self.bytes[self.path_len..self.path_len + tag_len]
        } else {
            &self.bytes[self.path_len - tag_len..self.path_len]
        }
    }
}

/// A length, which a path's bytes keep far below 2^31.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n)
        .ok()
        .filter(|&n| n < TAG_APART)
        .expect("a path shorter than 2 GiB")
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::spill::BLOCK;
    use std::ffi::OsStr;

    /// Records more than a block of records and many blocks of text
    /// (entries straddling blocks and the file's end), a tag stored apart
    /// (the path is not UTF-8) and a path longer than a block, then looks
    /// them up: `stop_spilling_after` inserts, blocks stay in memory.
    fn check(mut h: Handed, stop_spilling_after: u64) -> Handed {
        let long = format!("/r/{}", "x".repeat(3 * BLOCK + 10));
        let odd = Path::new(OsStr::from_bytes(b"/r/1-a/h\xff"));
        let n = RECORD_BLOCK as u64 + 100;
        let path = |i: u64| format!("/results/{i}-a/host{}", i % 7);
        for i in 0..n {
            if i == stop_spilling_after {
                h.text.keep_in_memory();
            }
            let p = path(i);
            h.insert((1, i), Path::new(&p), &p[9..]);
        }
        h.insert((2, 0), odd, "1-a/h\u{fffd}");
        h.insert((2, 1), Path::new(&long), "tail");
        assert_eq!(h.len() as u64, n + 2);
        for i in (0..n).step_by(97).chain([n - 1]) {
            let p = PathBuf::from(path(i));
            assert_eq!(h.with_id((1, i)), Some(p.clone()));
            assert_eq!(h.with_tag(&path(i)[9..]), Some(p));
        }
        assert_eq!(h.with_id((2, 0)).as_deref(), Some(odd));
        assert_eq!(h.with_tag("1-a/h\u{fffd}").as_deref(), Some(odd));
        assert_eq!(h.with_tag("tail"), Some(PathBuf::from(&long)));
        assert_eq!(h.with_id((2, 1)), Some(PathBuf::from(&long)));
        assert_eq!(h.with_id((3, 0)), None);
        assert_eq!(h.with_tag("1-a/h"), None);
        assert_eq!(h.with_tag("0-a/host"), None);
        h
    }

    #[test]
    fn paths_and_tags_are_found_by_identity_and_tag_from_the_file() {
        let (len, spilled, held) = check(Handed::new(), u64::MAX).text.sizes();
        // All but the block being filled went to the file.
        assert_eq!((spilled, held), (len / BLOCK as u64 * BLOCK as u64, 1));
    }

    #[test]
    fn paths_and_tags_are_found_when_texts_stay_in_memory() {
        let (len, spilled, held) = check(Handed::in_memory(), u64::MAX).text.sizes();
        assert_eq!((spilled, held as u64), (0, len.div_ceil(BLOCK as u64)));
    }

    #[test]
    fn paths_and_tags_are_found_when_the_file_stops_taking_blocks() {
        let (_, spilled, held) = check(Handed::new(), 20_000).text.sizes();
        assert!(spilled > 0, "some texts went to the file first");
        assert!(held > 1, "the later ones stayed in memory");
    }
}
