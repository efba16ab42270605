//! Discovery through the real `tko` binary, each run under a timeout so a
//! hang fails instead of blocking: every job once however the paths
//! overlap (`X X`, a root and a job below it, a `.machines` entry that is a
//! symlink to another job), for `parse` and for `load`; two directories
//! with one tag an error naming both; the level detected for the
//! scheduler's layout; a job directory without a status log never taken
//! for a results root; a job 300 directories deep; `.machines` naming `.`;
//! a path longer than the kernel allows; a temporary directory that
//! cannot take the paths of the jobs found.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// What a finished `tko` run printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The tags of `tko parse --json` output, in order.
    fn tags(&self) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                v["tag"].as_str().expect("tag").to_string()
            })
            .collect()
    }
}

/// Runs `tko args` in `cwd`; kills it and fails after `TIMEOUT`.
fn tko(args: &[&str], cwd: &Path) -> Result<Run, Box<dyn std::error::Error>> {
    tko_with(args, cwd, &[])
}

/// [`tko`] with `env` set.
fn tko_with(
    args: &[&str],
    cwd: &Path,
    env: &[(&str, &Path)],
) -> Result<Run, Box<dyn std::error::Error>> {
    const TIMEOUT: Duration = Duration::from_secs(60);
    let out = tempfile::tempdir()?;
    let (o, e) = (out.path().join("out"), out.path().join("err"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(args)
        .current_dir(cwd)
        .env_remove("TKO_DB")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o)?)
        .stderr(std::fs::File::create(&e)?)
        .spawn()?;
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            child.kill()?;
            child.wait()?;
            return Err(format!("tko {args:?} did not finish in {TIMEOUT:?} (hang)").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Run {
        code: status.code(),
        stdout: std::fs::read_to_string(o)?,
        stderr: std::fs::read_to_string(e)?,
    })
}

/// A minimal job: one GOOD test.
fn job(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("keyval"), "status_version=1\n")?;
    std::fs::write(
        dir.join("status.log"),
        "START\tt\tt\ttimestamp=1\t\nEND GOOD\tt\tt\ttimestamp=2\tok\n",
    )
}

/// `results/` with `1-a/host1`, `2-b/host2` and a synchronous group
/// `3-c/group0` whose `.machines` names `hA` and `hZ`, a symlink to
/// `2-b/host2`.
fn tree() -> std::io::Result<(tempfile::TempDir, PathBuf)> {
    let t = tempfile::tempdir()?;
    let r = t.path().join("results");
    job(&r.join("1-a/host1"))?;
    job(&r.join("2-b/host2"))?;
    job(&r.join("3-c/group0"))?;
    job(&r.join("3-c/group0/hA"))?;
    std::fs::write(r.join("3-c/group0/.machines"), "hA\nhZ\n")?;
    std::os::unix::fs::symlink("../../2-b/host2", r.join("3-c/group0/hZ"))?;
    Ok((t, r))
}

const TAGS: [&str; 4] = ["1-a/host1", "2-b/host2", "3-c/group0", "3-c/group0/hA"];

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// `run` reported a tag collision on one line naming `first` and `second`.
fn collision_names(run: &Run, first: &Path, second: &Path) -> TestResult {
    let line = run
        .stderr
        .lines()
        .find(|l| l.contains("already taken"))
        .ok_or("no collision reported")?;
    assert!(
        line.contains(s(first)) && line.contains(s(second)),
        "{line}"
    );
    Ok(())
}

#[test]
fn parse_gives_each_job_once_however_paths_overlap() -> TestResult {
    let (_t, r) = tree()?;
    let host1 = r.join("1-a/host1");
    for args in [
        vec![s(&r), s(&r)],
        vec![s(&r), s(&host1)],
        vec![s(&host1), s(&r), s(&host1)],
    ] {
        let mut argv = vec!["parse", "--json", "--level", "2"];
        argv.extend(&args);
        let run = tko(&argv, &r)?;
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        let mut tags = run.tags();
        tags.sort();
        assert_eq!(tags, TAGS, "{args:?}");
    }
    // The symlinked `.machines` entry: the real directory's tag.
    let run = tko(&["parse", "--json", s(&r)], &r)?;
    assert_eq!(run.tags(), TAGS);
    assert!(
        run.stderr.contains("3-c/group0/hZ: same directory as"),
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn load_of_overlapping_paths_finishes_with_each_job_once() -> TestResult {
    let (t, r) = tree()?;
    let host1 = r.join("1-a/host1");
    for (i, (args, want)) in [
        (vec![s(&r), s(&r)], &TAGS[..]),
        (vec![s(&r), s(&host1)], &TAGS[..]),
        (vec![s(&host1), s(&host1)], &TAGS[..1]),
    ]
    .into_iter()
    .enumerate()
    {
        let db = t.path().join(format!("tko{i}.db"));
        let url = format!("sqlite:{}", s(&db));
        let mut argv = vec!["load", "--quiet", "--db", &url];
        argv.extend(&args);
        let run = tko(&argv, &r)?;
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
        let conn = rusqlite::Connection::open(&db)?;
        let mut stmt = conn.prepare("SELECT tag FROM tko_jobs ORDER BY tag")?;
        let tags: Vec<String> = stmt
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        assert_eq!(tags, want, "{args:?}");
    }
    Ok(())
}

#[test]
fn two_directories_with_one_tag_are_an_error_naming_both() -> TestResult {
    let t = tempfile::tempdir()?;
    let r = t.path().join("results");
    job(&r.join("1-a/host1"))?;
    job(&r.join("2-b/host1"))?;
    let (first, second) = (r.join("1-a/host1"), r.join("2-b/host1"));
    let run = tko(&["parse", "--json", "--level", "1", s(&r)], &r)?;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.tags(), ["host1"]);
    collision_names(&run, &first, &second)?;

    // `load`: the first is loaded, the second refused, exit 1.
    let db = t.path().join("tko.db");
    let url = format!("sqlite:{}", s(&db));
    let run = tko(
        &["load", "--quiet", "--level", "1", "--db", &url, s(&r)],
        &r,
    )?;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(s(&first)) && run.stderr.contains(s(&second)),
        "{}",
        run.stderr
    );
    let conn = rusqlite::Connection::open(&db)?;
    let rows: Vec<(String, i64)> = conn
        .prepare("SELECT tag, (SELECT count(*) FROM tko_tests) FROM tko_jobs")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "host1");
    Ok(())
}

#[test]
fn level_is_detected_for_the_scheduler_layout_and_said_once() -> TestResult {
    let t = tempfile::tempdir()?;
    let r = t.path().join("results");
    job(&r.join("1-a/host1"))?;
    job(&r.join("2-b/host1"))?;
    job(&r.join("plain"))?;
    let run = tko(&["parse", "--json", s(&r)], &r)?;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.tags(), ["1-a/host1", "2-b/host1", "plain"]);
    assert_eq!(
        run.stderr.matches("scheduler layout").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("using --level 2"), "{}", run.stderr);
    // An explicit level is obeyed, and nothing is said.
    let run = tko(&["parse", "--json", "--level", "2", s(&r)], &r)?;
    assert!(!run.stderr.contains("scheduler layout"), "{}", run.stderr);
    // A job directory given directly.
    let run = tko(&["parse", "--json", s(&r.join("2-b/host1"))], &r)?;
    assert_eq!(run.tags(), ["2-b/host1"]);
    Ok(())
}

#[test]
fn job_directory_without_status_log_is_not_taken_for_a_root() -> TestResult {
    let t = tempfile::tempdir()?;
    let r = t.path().join("results");
    // Only test sub-directories and `up -> ..`.
    let host160 = r.join("123-alice/host160");
    job(&host160.join("fsx"))?;
    std::os::unix::fs::symlink("..", host160.join("up"))?;
    // Only a dangling status log and a test sub-directory.
    let guest = r.join("124-bob/kvm-guest-260");
    job(&guest.join("aiostress"))?;
    std::os::unix::fs::symlink("gone", guest.join("status.log"))?;

    // Autotest: `-o -l 2`, sub-jobs at level 3.
    let run = tko(&["parse", "--json", "--level", "2", s(&host160)], &r)?;
    assert_eq!(run.tags(), ["123-alice/host160/fsx"], "{}", run.stderr);
    assert!(run.stderr.contains("directory cycle"), "{}", run.stderr);
    let run = tko(&["parse", "--json", s(&host160)], &r)?;
    assert_eq!(run.tags(), ["123-alice/host160/fsx"], "{}", run.stderr);
    // The directory with the dangling status log is the job (no status
    // file), not a root of `aiostress`.
    let run = tko(&["parse", "--json", "--level", "2", s(&guest)], &r)?;
    assert_eq!(run.tags(), ["124-bob/kvm-guest-260"], "{}", run.stderr);
    // The same from the results root.
    let run = tko(&["parse", "--json", s(&r)], &r)?;
    assert_eq!(
        run.tags(),
        ["123-alice/host160/fsx", "124-bob/kvm-guest-260"],
        "{}",
        run.stderr
    );
    Ok(())
}

#[test]
fn job_300_directories_deep_is_found() -> TestResult {
    let t = tempfile::tempdir()?;
    let r = t.path().join("results");
    let deep: PathBuf = std::iter::repeat_n("d", 300).collect();
    let group = r.join("7-g/group1");
    job(&group.join(&deep))?;
    let want = format!("7-g/group1/{}", s(&deep));
    for path in [&group, &r] {
        let run = tko(&["parse", "--json", s(path)], &r)?;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(run.tags(), [want.as_str()]);
    }
    Ok(())
}

#[test]
fn machines_naming_dot_keeps_the_job_and_says_where() -> TestResult {
    let t = tempfile::tempdir()?;
    let r = t.path().join("results");
    let dir = r.join("8-h/group0");
    job(&dir)?;
    std::fs::write(dir.join(".machines"), ".\n")?;
    let run = tko(&["parse", "--json", s(&dir)], &r)?;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_eq!(run.tags(), ["8-h/group0"]);
    let file = format!("{}:1: ", s(&dir.join(".machines")));
    assert!(run.stderr.contains(&file), "{}", run.stderr);
    Ok(())
}

#[test]
fn path_longer_than_the_kernel_allows_is_reported() -> TestResult {
    let t = tempfile::tempdir()?;
    let r = t.path().join("results");
    std::fs::create_dir_all(r.join("9-i/group0"))?;
    // 2,100 levels (4,200 bytes), made relative to one open directory at a
    // time (no path that long can be named).
    let top = std::ffi::CString::new(s(&r.join("9-i/group0")))?;
    let name = c"d";
    // SAFETY: plain libc calls on NUL-terminated strings and descriptors
    // this loop owns.
    unsafe {
        let mut fd = libc::open(top.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
        for _ in 0..2100 {
            assert!(fd >= 0, "{}", std::io::Error::last_os_error());
            assert_eq!(libc::mkdirat(fd, name.as_ptr(), 0o755), 0);
            let next = libc::openat(fd, name.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
            libc::close(fd);
            fd = next;
        }
        let log = libc::openat(
            fd,
            c"status.log".as_ptr(),
            libc::O_CREAT | libc::O_WRONLY,
            0o644,
        );
        assert!(log >= 0);
        libc::close(log);
        libc::close(fd);
    }
    job(&r.join("9-i/group0/d/keyval-sibling"))?;
    let run = tko(&["parse", "--json", s(&r)], &r)?;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("File name too long"), "{}", run.stderr);
    assert_eq!(run.tags(), ["9-i/group0/d/keyval-sibling"]);
    Ok(())
}

/// The paths of the jobs found go to a file in `$TMPDIR`; where it cannot
/// be made (here: no such directory; a full or read-only one alike) they
/// stay in memory, and the run is the same: every job, and a collision
/// past the first 64 KiB of paths naming the first path.
#[test]
fn a_temporary_directory_that_cannot_be_written_changes_nothing() -> TestResult {
    let t = tempfile::tempdir()?;
    let r = t.path().join("results");
    let long = "x".repeat(60);
    const JOBS: usize = 1500;
    for j in 0..JOBS {
        job(&r.join(format!("{j:04}-a/h{j:04}-{long}")))?;
    }
    job(&r.join(format!("zz-b/h0007-{long}")))?;
    let (first, second) = (
        r.join(format!("0007-a/h0007-{long}")),
        r.join(format!("zz-b/h0007-{long}")),
    );
    let writable = t.path().join("tmp");
    std::fs::create_dir(&writable)?;
    let missing = t.path().join("no-such-dir");
    let mut tags = Vec::new();
    for tmpdir in [&writable, &missing] {
        let run = tko_with(
            &["parse", "--json", "--level", "1", s(&r)],
            &r,
            &[("TMPDIR", tmpdir)],
        )?;
        assert_eq!(
            run.code,
            Some(1),
            "TMPDIR={}: {}",
            tmpdir.display(),
            run.stderr
        );
        collision_names(&run, &first, &second)?;
        assert_eq!(run.tags().len(), JOBS);
        tags.push(run.tags());
    }
    assert_eq!(tags[0], tags[1]);
    // Nothing was left in the writable one (the file had no name).
    assert_eq!(std::fs::read_dir(&writable)?.count(), 0);
    Ok(())
}
