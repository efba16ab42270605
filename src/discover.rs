//! Finds job directories under the paths given on the command line, the way
//! `autotest-tko-parse` walks them (spec §1.5): `.machines` and
//! all-directories multi-machine dirs recurse with `level + 1`, the top of a
//! synchronous multi-machine job is a job too when it has `status.log`.
//! A path that is not itself a job is a results root: it is walked with
//! walkdir (sorted, no symlinks followed) down to the first directories that
//! look like jobs, its top-level directories in parallel (rayon; the walk is
//! all metadata syscalls). Reads directory listings and `.machines`, never
//! contents of results files (see `ingest`).

use rayon::prelude::*;
use std::io;
use std::path::{Component, Path, PathBuf};
use walkdir::WalkDir;

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

/// A problem met while walking (unreadable directory, bad `.machines`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path given does not exist or cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A `.machines` entry or nesting that would make Autotest recurse
    /// forever.
    #[error("{path}: {message}")]
    Layout {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Files whose presence makes a directory a job (or the top of one).
const JOB_MARKERS: [&str; 4] = ["status.log", "status", "keyval", ".autoserv_execute"];

/// Deepest multi-machine nesting followed below one job directory.
const MAX_NESTING: usize = 8;

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
    let parts: Vec<&str> = text.split('/').collect();
    let start = if level == 0 {
        0
    } else {
        parts.len().saturating_sub(level)
    };
    parts[start..].join("/")
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

fn is_job_like(dir: &Path) -> bool {
    job_marker(dir).is_some()
}

/// The metadata of the first of [`JOB_MARKERS`] present in `dir`.
fn job_marker(dir: &Path) -> Option<std::fs::Metadata> {
    JOB_MARKERS
        .iter()
        .find_map(|m| std::fs::metadata(dir.join(m)).ok())
}

/// `_get_job_subdirs`: the sub-jobs of a multi-machine directory, or `None`
/// for a plain job directory.
fn job_subdirs(dir: &Path) -> Result<Option<Vec<String>>, Error> {
    let io_err = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let machines = dir.join(".machines");
    if machines.is_file() {
        let text = std::fs::read(&machines).map_err(io_err)?;
        let mut names: Vec<String> = String::from_utf8_lossy(&text)
            .lines()
            .map(|l| l.trim().to_string())
            // Autotest recurses forever on "" (and would on "." or ".."):
            // only plain names count.
            .filter(|n| !n.is_empty() && n != "." && n != ".." && !n.contains('/'))
            .filter(|n| dir.join(n).exists())
            .collect();
        names.sort();
        names.dedup();
        if !names.is_empty() {
            return Ok(Some(names));
        }
    }
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == ".parse.lock" {
            continue;
        }
        // The directory entry's type costs no stat; only symlinks are
        // followed (Python's isdir does).
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => entry.path().is_dir(),
            Ok(t) => t.is_dir(),
            Err(_) => entry.path().is_dir(),
        };
        if !is_dir {
            // One file is enough: this is a job directory.
            return Ok(None);
        }
        dirs.push(name);
    }
    dirs.sort();
    Ok((!dirs.is_empty()).then_some(dirs))
}

/// `parse_path`: the job directories at and below one job path.
fn parse_path(
    path: &Path,
    level: usize,
    depth: usize,
    out: &mut Vec<JobDir>,
    errors: &mut Vec<Error>,
) {
    if depth > MAX_NESTING {
        errors.push(Error::Layout {
            path: path.to_path_buf(),
            message: format!(
                "multi-machine nesting deeper than {MAX_NESTING} levels; not followed"
            ),
        });
        return;
    }
    let leaf = |out: &mut Vec<JobDir>| {
        out.push(JobDir {
            path: path.to_path_buf(),
            level,
            tag: job_tag(path, level),
        })
    };
    match job_subdirs(path) {
        Err(e) => errors.push(e),
        Ok(None) => leaf(out),
        Ok(Some(subdirs)) => {
            if path.join("status.log").exists() {
                leaf(out);
            }
            for s in subdirs {
                parse_path(&path.join(s), level + 1, depth + 1, out, errors);
            }
        }
    }
}

/// Where jobs are looked for, one piece at a time: a path given as a job
/// directory, or one top-level directory of a results root. Streaming
/// units lets a caller handle a root of any size in bounded memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    /// A job directory given directly (`autotest-tko-parse -o`).
    Job(PathBuf),
    /// A top-level directory of a results root.
    Top(PathBuf),
}

/// The units of `paths`, lazily (a root's listing is read as it goes, in
/// directory order). Problems with a path come out as errors.
pub fn units(paths: &[PathBuf]) -> impl Iterator<Item = Result<Unit, Error>> + '_ {
    paths
        .iter()
        .flat_map(|given| -> Box<dyn Iterator<Item = Result<Unit, Error>>> {
            let path = match absolute(given) {
                Ok(p) => p,
                Err(source) => {
                    let path = given.clone();
                    return Box::new(std::iter::once(Err(Error::Io { path, source })));
                }
            };
            if let Err(source) = std::fs::metadata(&path) {
                return Box::new(std::iter::once(Err(Error::Io { path, source })));
            }
            if !path.is_dir() {
                return Box::new(std::iter::once(Err(Error::Layout {
                    path,
                    message: "not a directory (give a job directory or a results root)".into(),
                })));
            }
            if is_job_like(&path) || path.join(".machines").is_file() {
                return Box::new(std::iter::once(Ok(Unit::Job(path))));
            }
            match std::fs::read_dir(&path) {
                Ok(rd) => Box::new(rd.filter_map(move |e| match e {
                    Ok(e) if e.file_type().is_ok_and(|t| t.is_dir()) => {
                        Some(Ok(Unit::Top(e.path())))
                    }
                    Ok(_) => None,
                    Err(source) => Some(Err(Error::Io {
                        path: path.clone(),
                        source,
                    })),
                })),
                Err(source) => Box::new(std::iter::once(Err(Error::Io { path, source }))),
            }
        })
}

/// The job directories of one unit, sorted by tag.
pub fn jobs_in(unit: &Unit, level: usize) -> (Vec<JobDir>, Vec<Error>) {
    let (mut out, errors) = match unit {
        Unit::Job(path) => {
            let (mut out, mut errors) = (Vec::new(), Vec::new());
            parse_path(path, level, 0, &mut out, &mut errors);
            (out, errors)
        }
        Unit::Top(dir) => visit_top(dir, level),
    };
    out.sort_by(|a, b| a.tag.cmp(&b.tag).then_with(|| a.path.cmp(&b.path)));
    (out, errors)
}

/// Finds every job under `paths`. Each path is either a job directory (it
/// has a status log, keyval, `.autoserv_execute` or `.machines`: parsed as
/// `autotest-tko-parse -o` would) or a results root, walked down to the
/// first job-like directories, its top-level directories in parallel.
/// Output is sorted by tag, then path.
pub fn find_jobs(paths: &[PathBuf], level: usize) -> (Vec<JobDir>, Vec<Error>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut todo = Vec::new();
    for unit in units(paths) {
        match unit {
            Ok(u) => todo.push(u),
            Err(e) => errors.push(e),
        }
    }
    let found: Vec<(Vec<JobDir>, Vec<Error>)> =
        todo.par_iter().map(|u| jobs_in(u, level)).collect();
    for (jobs, errs) in found {
        out.extend(jobs);
        errors.extend(errs);
    }
    out.sort_by(|a, b| a.tag.cmp(&b.tag).then_with(|| a.path.cmp(&b.path)));
    out.dedup_by(|a, b| a.path == b.path);
    (out, errors)
}

/// One top-level directory of a results root, the common layouts without
/// a `stat` per candidate: its listing says whether it is a job (e.g.
/// `<root>/<job>`); if not, each sub-directory is probed for a job marker
/// (`<root>/<id>-<owner>/<host>`), and anything deeper is walked with
/// walkdir. Same result as [`walk`] on it, in fewer system calls (this is
/// most of the cost of re-running a backfill over an unchanged root).
fn visit_top(dir: &Path, level: usize) -> (Vec<JobDir>, Vec<Error>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let listing = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(Result::ok).collect::<Vec<_>>(),
        Err(source) => {
            errors.push(Error::Io {
                path: dir.to_path_buf(),
                source,
            });
            return (out, errors);
        }
    };
    if listing
        .iter()
        .any(|e| JOB_MARKERS.iter().any(|m| e.file_name() == *m))
    {
        return walk(dir, level);
    }
    let mut subdirs: Vec<PathBuf> = listing
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    subdirs.sort();
    for sub in subdirs {
        match job_marker(&sub) {
            Some(marker) if marker.is_file() && !sub.join(".machines").exists() => {
                out.push(JobDir {
                    tag: job_tag(&sub, level),
                    path: sub,
                    level,
                });
            }
            Some(_) => parse_path(&sub, level, 0, &mut out, &mut errors),
            None => {
                let (jobs, errs) = walk(&sub, level);
                out.extend(jobs);
                errors.extend(errs);
            }
        }
    }
    (out, errors)
}

/// Walks one directory (itself included) down to its job-like directories.
fn walk(root: &Path, level: usize) -> (Vec<JobDir>, Vec<Error>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut walker = WalkDir::new(root).sort_by_file_name().into_iter();
    while let Some(entry) = walker.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let p = e.path().unwrap_or(root).to_path_buf();
                errors.push(Error::Io {
                    path: p,
                    source: e.into(),
                });
                continue;
            }
        };
        if !entry.file_type().is_dir() {
            continue;
        }
        let Some(marker) = job_marker(entry.path()) else {
            continue;
        };
        walker.skip_current_dir();
        if marker.is_file() && !entry.path().join(".machines").exists() {
            // A file among its entries: `_get_job_subdirs` says "a job",
            // no need to list it.
            out.push(JobDir {
                tag: job_tag(entry.path(), level),
                path: entry.into_path(),
                level,
            });
        } else {
            parse_path(entry.path(), level, 0, &mut out, &mut errors);
        }
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_top_level_visit_finds_what_the_walk_finds() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let r = tmp.path();
        let file = |p: &str| -> std::io::Result<()> {
            let p = r.join(p);
            std::fs::create_dir_all(p.parent().expect("parent"))?;
            std::fs::write(p, b"x=1\n")
        };
        file("plainjob/status.log")?;
        file("1-a/h1/status.log")?;
        file("1-a/h1/t1/keyval")?;
        file("1-a/h2/keyval")?;
        file("2-b/group0/.machines")?;
        std::fs::write(r.join("2-b/group0/.machines"), b"hA\nhB\n")?;
        file("2-b/group0/status.log")?;
        file("2-b/group0/hA/status.log")?;
        file("2-b/group0/hB/status.log")?;
        file("3-c/.machines")?;
        std::fs::write(r.join("3-c/.machines"), b"hX\n")?;
        file("3-c/hX/status.log")?;
        file("4-d/x/y/z/status")?;
        file("5-e/h/status.log/inner")?; // a directory named like a marker
        std::fs::create_dir_all(r.join("6-empty/nothing"))?;
        for top in std::fs::read_dir(r)? {
            let d = top?.path();
            for level in [1, 2] {
                let (fast, fast_errors) = visit_top(&d, level);
                let (slow, slow_errors) = walk(&d, level);
                assert_eq!(fast, slow, "{}", d.display());
                assert_eq!(fast_errors.len(), slow_errors.len());
            }
        }
        let (jobs, _) = find_jobs(&[r.to_path_buf()], 2);
        let tags: Vec<&str> = jobs.iter().map(|j| j.tag.as_str()).collect();
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
            "5-e/h",
            // A directory named like a marker file: Autotest's rules make it
            // a multi-machine dir whose "host" is the directory itself.
            "5-e/h/status.log",
            plain.as_str(),
            "y/z",
        ];
        want.sort();
        assert_eq!(tags, want);
        Ok(())
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
