//! The record of the job directories a discovery has handed on: what makes
//! each come out once per run (by identity) and a second directory with a
//! tag already taken an error naming the first. It is the one thing a run
//! keeps for every job it found, so it is kept small: each path is stored
//! once, in blocks of bytes that are filled and never moved (a tag is the
//! tail of its path and is not stored again unless lossy UTF-8 changed
//! it), with a 32-byte record per job in blocks of records, and two hash
//! tables of record numbers, one by identity and one by tag (SipHash with
//! a random key, so hostile names cannot make them slow). A run of
//! `tko parse` grew 350–360 bytes a job with 272-byte paths, where a path
//! and a tag allocated apart and two maps of them took 719
//! (`memory::a_job_found_costs_its_path_once`).

use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::Id;

/// Bytes per block of text; a longer path gets a block of its own.
const TEXT_BLOCK: usize = 1 << 20;
/// Records per block (32 bytes each: 1 MiB).
const RECORD_BLOCK: usize = 1 << 15;
/// Set in [`Record::tag_len`] when the tag is stored after the path, not
/// the path's tail.
const TAG_APART: u32 = 1 << 31;

/// One job handed on.
#[derive(Debug, Clone, Copy)]
struct Record {
    id: Id,
    /// Block of text and offset in it: the path, then the tag when
    /// [`TAG_APART`] is set.
    block: u32,
    offset: u32,
    path_len: u32,
    /// Length of the tag, with [`TAG_APART`].
    tag_len: u32,
}

/// The jobs handed on so far (see the module documentation).
#[derive(Debug, Default)]
pub(super) struct Handed {
    text: Vec<Vec<u8>>,
    records: Vec<Vec<Record>>,
    len: u32,
    by_id: HashTable<u32>,
    by_tag: HashTable<u32>,
    keys: RandomState,
}

impl Handed {
    /// Nothing handed on yet.
    pub(super) fn new() -> Handed {
        Handed::default()
    }

    /// How many jobs were handed on.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    /// The path of the job handed on with identity `id`, if any.
    pub(super) fn with_id(&self, id: Id) -> Option<&Path> {
        let hash = self.keys.hash_one(id);
        let at = self.by_id.find(hash, |&i| self.record(i).id == id)?;
        Some(self.path(*at))
    }

    /// The path of the job handed on with tag `tag`, if any.
    pub(super) fn with_tag(&self, tag: &str) -> Option<&Path> {
        let hash = self.keys.hash_one(tag.as_bytes());
        let at = self.by_tag.find(hash, |&i| self.tag(i) == tag.as_bytes())?;
        Some(self.path(*at))
    }

    /// Records a job handed on: neither its identity nor its tag may have
    /// been handed on before ([`Handed::with_id`], [`Handed::with_tag`]).
    pub(super) fn insert(&mut self, id: Id, path: &Path, tag: &str) {
        let path = path.as_os_str().as_bytes();
        let apart = !path.ends_with(tag.as_bytes());
        let stored = if apart {
            path.len() + tag.len()
        } else {
            path.len()
        };
        let block = match self.text.last() {
            Some(b) if b.capacity() - b.len() >= stored => self.text.len() - 1,
            _ => {
                self.text.push(Vec::with_capacity(stored.max(TEXT_BLOCK)));
                self.text.len() - 1
            }
        };
        let text = &mut self.text[block];
        let offset = text.len();
        text.extend_from_slice(path);
        if apart {
            text.extend_from_slice(tag.as_bytes());
        }
        let record = Record {
            id,
            block: to_u32(block),
            offset: to_u32(offset),
            path_len: to_u32(path.len()),
            tag_len: to_u32(tag.len()) | if apart { TAG_APART } else { 0 },
        };
        match self.records.last_mut() {
            Some(b) if b.len() < RECORD_BLOCK => b.push(record),
            _ => {
                let mut b = Vec::with_capacity(RECORD_BLOCK);
                b.push(record);
                self.records.push(b);
            }
        }
        let index = self.len;
        self.len = index
            .checked_add(1)
            .expect("fewer than 2^32 jobs in one run");
        let (id_hash, tag_hash) = (self.keys.hash_one(id), self.keys.hash_one(tag.as_bytes()));
        let keys = &self.keys;
        let look = Look {
            records: &self.records,
            text: &self.text,
        };
        self.by_id
            .insert_unique(id_hash, index, |&i| keys.hash_one(look.record(i).id));
        self.by_tag
            .insert_unique(tag_hash, index, |&i| keys.hash_one(look.tag(i)));
    }

    fn look(&self) -> Look<'_> {
        Look {
            records: &self.records,
            text: &self.text,
        }
    }

    fn record(&self, i: u32) -> Record {
        self.look().record(i)
    }

    fn path(&self, i: u32) -> &Path {
        self.look().path(i)
    }

    fn tag(&self, i: u32) -> &[u8] {
        self.look().tag(i)
    }
}

/// The stored records and text, apart from the tables (which are grown
/// while these are read).
#[derive(Clone, Copy)]
struct Look<'a> {
    records: &'a [Vec<Record>],
    text: &'a [Vec<u8>],
}

impl<'a> Look<'a> {
    fn record(self, i: u32) -> Record {
        let i = i as usize;
        self.records[i / RECORD_BLOCK][i % RECORD_BLOCK]
    }

    fn bytes(self, r: Record) -> &'a [u8] {
        &self.text[r.block as usize][r.offset as usize..]
    }

    fn path(self, i: u32) -> &'a Path {
        let r = self.record(i);
        Path::new(std::ffi::OsStr::from_bytes(
            &self.bytes(r)[..r.path_len as usize],
        ))
    }

    fn tag(self, i: u32) -> &'a [u8] {
        let r = self.record(i);
        let (path_len, tag_len) = (r.path_len as usize, (r.tag_len & !TAG_APART) as usize);
        let bytes = self.bytes(r);
        if r.tag_len & TAG_APART != 0 {
            &bytes[path_len..path_len + tag_len]
        } else {
            &bytes[path_len - tag_len..path_len]
        }
    }
}

/// A length or offset, which a path's bytes keep far below 2^31.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n)
        .ok()
        .filter(|&n| n < TAG_APART)
        .expect("a path shorter than 2 GiB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn paths_and_tags_are_found_by_identity_and_tag() {
        let mut h = Handed::new();
        // More than a block of records and of text, a tag stored apart
        // (the path is not UTF-8), a path longer than a block.
        let long = format!("/r/{}", "x".repeat(TEXT_BLOCK + 10));
        let odd = Path::new(OsStr::from_bytes(b"/r/1-a/h\xff"));
        let n = RECORD_BLOCK as u64 + 100;
        for i in 0..n {
            let path = format!("/results/{i}-a/host{}", i % 7);
            h.insert((1, i), Path::new(&path), &path[9..]);
        }
        h.insert((2, 0), odd, "1-a/h\u{fffd}");
        h.insert((2, 1), Path::new(&long), "tail");
        assert_eq!(h.len() as u64, n + 2);
        for i in (0..n).step_by(997) {
            let path = format!("/results/{i}-a/host{}", i % 7);
            assert_eq!(h.with_id((1, i)), Some(Path::new(&path)));
            assert_eq!(h.with_tag(&path[9..]), Some(Path::new(&path)));
        }
        assert_eq!(h.with_id((2, 0)), Some(odd));
        assert_eq!(h.with_tag("1-a/h\u{fffd}"), Some(odd));
        assert_eq!(h.with_tag("tail"), Some(Path::new(&long)));
        assert_eq!(h.with_id((2, 1)), Some(Path::new(&long)));
        assert_eq!(h.with_id((3, 0)), None);
        assert_eq!(h.with_tag("1-a/h"), None);
        assert_eq!(h.with_tag("0-a/host"), None);
    }
}
