//! What reading a job costs in system calls (issue 11: the parse side of a
//! backfill spent most of its CPU in them), counted by the kernel, not by
//! the reader's own account: no `stat` of any path while a job is read (a
//! seccomp filter on the reading thread makes every `stat` of a path fail,
//! and the parse must not notice), one `read` per file (the thread's
//! `syscr` in `/proc/thread-self/io`) and one `open` per file (inotify
//! `IN_OPEN`). Each job is read by `ingest::parse_dir` on the calling
//! thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tko::discover::JobDir;

/// Three generated jobs in the scheduler's layout (`<id>-<owner>/<host>`,
/// with `.autoserv_execute` and `host_keyvals/`), no bad input.
fn jobs() -> (tempfile::TempDir, Vec<JobDir>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = tko::gen::GenOptions {
        jobs: 3,
        seed: 5,
        tests_per_job: 3..=6,
        fraction_bad: 0.0,
        ..tko::gen::GenOptions::default()
    };
    tko::gen::generate(tmp.path(), &opts).expect("generate");
    let (dirs, errors) = tko::discover::find_jobs(&[tmp.path().to_path_buf()], 2);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(dirs.len(), 3);
    for d in &dirs {
        assert!(d.path.join(".autoserv_execute").is_file(), "{d:?}");
        assert!(d.path.join("host_keyvals").is_dir(), "{d:?}");
    }
    (tmp, dirs)
}

/// The distinct files parsing `jd` reads.
fn files_read(jd: &JobDir) -> Vec<PathBuf> {
    let mut files = tko::ingest::files_read(jd).expect("readable");
    files.sort();
    files.dedup();
    files
}

/// Makes every `stat` of a path on this thread (and threads it starts)
/// fail with `EDOM`; `fstat` of an open file (`statx` or `newfstatat`
/// with `AT_EMPTY_PATH`, or `fstat`) still works. For the rest of the
/// thread's life: call it on a thread of its own.
fn deny_path_stats() {
    use libc::{sock_filter, sock_fprog};
    const AT_EMPTY_PATH: u32 = libc::AT_EMPTY_PATH as u32;
    // Calls that only take a path: always denied.
    let mut path_only = vec![libc::SYS_faccessat, libc::SYS_faccessat2];
    #[cfg(target_arch = "x86_64")]
    path_only.extend([libc::SYS_stat, libc::SYS_lstat, libc::SYS_access]);
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let eq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let set = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
    let ret = libc::BPF_RET | libc::BPF_K;
    // Instructions with absolute jump targets, made relative below.
    // seccomp_data: nr at 0, args[i] at 16 + 8 i (low half first).
    let n = 7 + path_only.len();
    let (allow, deny) = (n, n + 1);
    let mut prog: Vec<(u32, u32, usize, usize)> = vec![
        (load, 0, 0, 0),
        // statx(dirfd, path, flags, ...): flags is args[2].
        (eq, libc::SYS_statx as u32, 2, 4),
        (load, 16 + 8 * 2, 0, 0),
        (set, AT_EMPTY_PATH, allow, deny),
        // newfstatat(dirfd, path, buf, flags): flags is args[3].
        (eq, libc::SYS_newfstatat as u32, 5, 7),
        (load, 16 + 8 * 3, 0, 0),
        (set, AT_EMPTY_PATH, allow, deny),
    ];
    for (i, call) in path_only.iter().enumerate() {
        prog.push((eq, *call as u32, deny, 7 + i + 1));
    }
    prog.push((ret, libc::SECCOMP_RET_ALLOW, 0, 0));
    prog.push((ret, libc::SECCOMP_RET_ERRNO | libc::EDOM as u32, 0, 0));
    let mut prog: Vec<sock_filter> = prog
        .into_iter()
        .enumerate()
        .map(|(i, (code, k, jt, jf))| {
            let rel = |to: usize| {
                if code & 0x07 == libc::BPF_JMP {
                    (to - i - 1) as u8
                } else {
                    0
                }
            };
            sock_filter {
                code: code as u16,
                jt: rel(jt),
                jf: rel(jf),
                k,
            }
        })
        .collect();
    let fprog = sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; `fprog` points to `prog`, alive here.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let rc = libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const sock_fprog,
        );
        assert_eq!(rc, 0, "seccomp: {}", std::io::Error::last_os_error());
    }
}

/// A job is read without one `stat` of a path: with every such call
/// failing, each job parses exactly as it does otherwise (an `exists`,
/// `is_dir` or `metadata` of a path before opening it would fail the job
/// or change it).
#[test]
fn a_job_is_read_without_a_stat_of_any_path() {
    let (_tmp, jobs) = jobs();
    // The filter does what it says.
    std::thread::spawn(|| {
        deny_path_stats();
        let e = std::fs::metadata("/").expect_err("stat of a path denied");
        assert_eq!(e.raw_os_error(), Some(libc::EDOM));
        assert!(!Path::new("/").exists());
        let f = std::fs::File::open("/").expect("open works");
        assert!(f.metadata().expect("fstat works").is_dir());
    })
    .join()
    .expect("filter checked");
    for jd in &jobs {
        let plain = tko::ingest::parse_dir(jd).expect("readable");
        let job = jd.clone();
        let denied = std::thread::spawn(move || {
            deny_path_stats();
            tko::ingest::parse_dir(&job).map_err(|e| e.to_string())
        })
        .join()
        .expect("no panic");
        let denied = denied.unwrap_or_else(|e| panic!("{}: {e}", jd.tag));
        assert_eq!(format!("{denied:?}"), format!("{plain:?}"), "{}", jd.tag);
    }
}

/// `read` system calls this thread made so far (`syscr`).
fn syscr() -> u64 {
    use std::io::Read;
    let mut f = std::fs::File::open("/proc/thread-self/io").expect("/proc/thread-self/io");
    let mut buf = [0u8; 4096];
    // One `read`: the file is small and made whole on the first one.
    let n = f.read(&mut buf).expect("read io");
    let text = std::str::from_utf8(&buf[..n]).expect("ASCII");
    text.lines()
        .find_map(|l| l.strip_prefix("syscr:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no syscr in {text}"))
}

/// Each file a job reads takes one `read` (its size is known from the
/// `fstat` after opening it, so the `read` that returns nothing is not
/// made), and the host keyval a job uses twice is read once.
#[test]
fn each_file_a_job_reads_takes_one_read() {
    let (_tmp, jobs) = jobs();
    for jd in &jobs {
        let files = files_read(jd);
        // What measuring costs: the `read` of the counter itself.
        let a = syscr();
        let cost = syscr() - a;
        let before = syscr();
        tko::ingest::parse_dir(jd).expect("readable");
        let reads = syscr() - before - cost;
        assert_eq!(
            reads,
            files.len() as u64,
            "{}: {reads} reads for {} files: {files:?}",
            jd.tag,
            files.len()
        );
    }
}

/// Each file a job reads is opened once: `IN_OPEN` events of inotify
/// watches on every directory of the job, counted per file.
#[test]
fn each_file_a_job_reads_is_opened_once() {
    let (_tmp, jobs) = jobs();
    for jd in &jobs {
        let files = files_read(jd);
        // SAFETY: plain inotify calls on a descriptor owned here; the
        // event buffer is read within the length the kernel returned.
        let opened = unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0, "inotify: {}", std::io::Error::last_os_error());
            let mut dirs = BTreeMap::new();
            for e in walkdir::WalkDir::new(&jd.path) {
                let e = e.expect("walk");
                if e.file_type().is_dir() {
                    use std::os::unix::ffi::OsStrExt;
                    let c =
                        std::ffi::CString::new(e.path().as_os_str().as_bytes()).expect("no NUL");
                    let wd = libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN);
                    assert!(wd >= 0, "watch: {}", std::io::Error::last_os_error());
                    dirs.insert(wd, e.path().to_path_buf());
                }
            }
            tko::ingest::parse_dir(jd).expect("readable");
            let mut opened: BTreeMap<PathBuf, usize> = BTreeMap::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                let mut at = 0;
                while at < n as usize {
                    let ev = std::ptr::read_unaligned(
                        buf.as_ptr().add(at).cast::<libc::inotify_event>(),
                    );
                    let name_at = at + std::mem::size_of::<libc::inotify_event>();
                    let name = &buf[name_at..name_at + ev.len as usize];
                    let name = name.split(|&b| b == 0).next().unwrap_or_default();
                    if ev.mask & libc::IN_ISDIR == 0 && ev.mask & libc::IN_OPEN != 0 {
                        use std::os::unix::ffi::OsStrExt;
                        let path = dirs[&ev.wd].join(std::ffi::OsStr::from_bytes(name));
                        *opened.entry(path).or_default() += 1;
                    }
                    at = name_at + ev.len as usize;
                }
            }
            libc::close(fd);
            opened
        };
        let twice: Vec<_> = opened.iter().filter(|(_, &n)| n > 1).collect();
        assert!(
            twice.is_empty(),
            "{}: opened more than once: {twice:?}",
            jd.tag
        );
        let opened: Vec<PathBuf> = opened.into_keys().collect();
        assert_eq!(opened, files, "{}: files opened = files read", jd.tag);
    }
}
