//! Generator of large synthetic Autotest results trees, for benchmarks
//! (parse throughput, load rate, backfill of tens of thousands of jobs).
//!
//! Every job is a scheduler-layout job directory `<root>/<id>-<owner>/<hostname>/`
//! (parse it with `--level 2`) shaped like the corpus job
//! `syn-v1-client-job-good/123-alice/host1`: a job `keyval`, `.autoserv_execute`,
//! `host_keyvals/<hostname>`, `sysinfo/`, `control.srv`, a version-1
//! `status.log` rendered the way `base_job.status_log_entry` + `status_logger`
//! write it (with the per-subdir copies), and per test `<subdir>/keyval` and
//! `<subdir>/results/keyval`. A small configurable fraction of jobs carries bad
//! input a real parser meets: a truncated `status.log` (job killed, no closing
//! `END` lines), a comment line in the job `keyval`, or a non-UTF-8 garbage line
//! in `status.log`.
//!
//! Output is a pure function of [`GenOptions`]: each job draws from its own
//! splitmix64 stream derived from the seed and the job index, so the tree is
//! byte-identical whatever the number of writer threads. [`modify`] appends a
//! line to the `status.log` of a few jobs so that benchmarks can check that a
//! re-run redoes only the changed jobs.

use std::fs;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Knobs of [`generate`]. `Default` gives realistic jobs (~5–15 tests, ~3
/// iterations, ~10 perf keys: a few KB to tens of KB per job).
#[derive(Debug, Clone)]
pub struct GenOptions {
    /// Number of jobs to write.
    pub jobs: usize,
    /// AFE job id of the first job; the others follow consecutively.
    pub first_job_id: u64,
    /// Tests per job (inclusive range).
    pub tests_per_job: RangeInclusive<u32>,
    /// Iterations (blank-line separated blocks) per `results/keyval`.
    pub iterations_per_test: RangeInclusive<u32>,
    /// `key{perf}=float` lines per iteration.
    pub perf_keys_per_iteration: RangeInclusive<u32>,
    /// Seed of the whole tree.
    pub seed: u64,
    /// Probability that a test ends FAIL, WARN or ERROR instead of GOOD.
    pub fraction_failed: f64,
    /// Probability that a job carries bad input (truncated log, keyval
    /// comment line, garbage bytes).
    pub fraction_bad: f64,
    /// Probability that a job contains a reboot group between tests.
    pub fraction_reboot: f64,
    /// Number of distinct hostnames (`host1` … `hostN`).
    pub machines: u32,
    /// Number of distinct kernels.
    pub kernels: u32,
    /// Also write the per-test `<subdir>/status.log` copies autoserv makes
    /// (the parser never reads them).
    pub subdir_status_copies: bool,
    /// Writer threads; 0 means `available_parallelism`.
    pub threads: usize,
    /// Machines change over time: each job sees its machine with a platform
    /// drawn for that job (`host_keyvals`) and about half the jobs name a
    /// machine `owner` (job keyval), so the TKO machine row depends on which
    /// job is taken as the newest. Off, a machine's platform is fixed and no
    /// job names an owner.
    pub relabel_machines: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            jobs: 100,
            first_job_id: 1,
            tests_per_job: 5..=15,
            iterations_per_test: 2..=4,
            perf_keys_per_iteration: 6..=14,
            seed: 1,
            fraction_failed: 0.1,
            fraction_bad: 0.01,
            fraction_reboot: 0.1,
            machines: 200,
            kernels: 12,
            subdir_status_copies: true,
            threads: 0,
            relabel_machines: false,
        }
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenStats {
    /// Job directories written.
    pub jobs: u64,
    /// Test groups written (reboot groups not counted).
    pub tests: u64,
    /// Regular files written.
    pub files: u64,
    /// Bytes written to regular files.
    pub bytes: u64,
    /// Jobs carrying bad input.
    pub bad_jobs: u64,
    /// Of those, jobs whose `status.log` was truncated.
    pub truncated_jobs: u64,
}

impl GenStats {
    fn add(&mut self, o: &GenStats) {
        self.jobs += o.jobs;
        self.tests += o.tests;
        self.files += o.files;
        self.bytes += o.bytes;
        self.bad_jobs += o.bad_jobs;
        self.truncated_jobs += o.truncated_jobs;
    }
}

/// Writes `opts.jobs` jobs under `root` (created if missing). Existing job
/// directories with the same names are overwritten file by file.
pub fn generate(root: &Path, opts: &GenOptions) -> io::Result<GenStats> {
    fs::create_dir_all(root)?;
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .clamp(1, opts.jobs.max(1));
    let next = AtomicUsize::new(0);
    let total = Mutex::new(GenStats::default());
    let first_err: Mutex<Option<io::Error>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut stats = GenStats::default();
                let mut w = JobWriter::default();
                loop {
                    let idx = next.fetch_add(1, Ordering::Relaxed);
                    if idx >= opts.jobs {
                        break;
                    }
                    if let Err(e) = w.write_job(root, opts, idx as u64, &mut stats) {
                        first_err.lock().unwrap().get_or_insert(e);
                        next.store(opts.jobs, Ordering::Relaxed);
                        break;
                    }
                }
                total.lock().unwrap().add(&stats);
            });
        }
    });
    if let Some(e) = first_err.into_inner().unwrap() {
        return Err(e);
    }
    Ok(total.into_inner().unwrap())
}

/// Appends one scheduler-style `INFO` line to the `status.log` of `count`
/// distinct jobs of the tree at `root` (chosen deterministically from `seed`
/// among the `<id>-<owner>` directories in name order) and returns the
/// touched execution directories (`<root>/<id>-<owner>/<hostname>`), sorted.
pub fn modify(root: &Path, count: usize, seed: u64) -> io::Result<Vec<PathBuf>> {
    let mut jobs: Vec<PathBuf> = fs::read_dir(root)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path())
        .collect();
    jobs.sort();
    let count = count.min(jobs.len());
    let mut rng = Rng::new(seed ^ 0x6d6f_6469_6679);
    // Partial Fisher–Yates: the first `count` slots are the sample.
    for i in 0..count {
        let j = i + rng.below((jobs.len() - i) as u64) as usize;
        jobs.swap(i, j);
    }
    let mut touched = Vec::with_capacity(count);
    for job in &jobs[..count] {
        let mut hosts: Vec<PathBuf> = fs::read_dir(job)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        hosts.sort();
        for host in hosts {
            let log = host.join("status.log");
            if !log.is_file() {
                continue;
            }
            let ts = 1_400_000_000 + rng.below(10_000_000);
            let mut line = Vec::new();
            line.extend_from_slice(b"INFO\t----\t----\t");
            push_fields(&mut line, ts);
            line.extend_from_slice(format!("touched by tko gen modify (seed {seed})\n").as_bytes());
            let mut f = fs::OpenOptions::new().append(true).open(&log)?;
            io::Write::write_all(&mut f, &line)?;
            touched.push(host);
        }
    }
    touched.sort();
    Ok(touched)
}

// ---------------------------------------------------------------------------
// PRNG

/// splitmix64: tiny, fast, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut r = Rng(seed);
        r.next_u64();
        r
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n == 0` gives 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            ((self.next_u64() as u128 * n as u128) >> 64) as u64
        }
    }
    fn range(&mut self, r: &RangeInclusive<u32>) -> u32 {
        let (lo, hi) = (*r.start(), *r.end());
        if hi <= lo {
            lo
        } else {
            lo + self.below((hi - lo) as u64 + 1) as u32
        }
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

fn mix(a: u64, b: u64) -> u64 {
    Rng::new(a ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

// ---------------------------------------------------------------------------
// Vocabulary

const OWNERS: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "hank", "ivan", "judy", "mallory",
    "oscar", "peggy", "rita", "trent", "victor", "walter", "autotest",
];
const LABELS: &[&str] = &[
    "nightly-smoke",
    "kernel-regression",
    "perf-weekly",
    "stress",
    "bvt",
    "fs-suite",
    "net-suite",
    "release-qual",
];
const PLATFORMS: &[&str] = &[
    "x86_64-server",
    "x86_64-desktop",
    "i386-netbook",
    "ppc64-blade",
    "arm-board",
];
const TESTS: &[(&str, &[&str])] = &[
    ("sleeptest", &[]),
    ("dbench", &["quick", "long"]),
    ("kernbench", &[]),
    ("bonnie", &[]),
    ("iozone", &["ext4", "xfs"]),
    ("netperf2", &["tcp_stream", "udp_rr"]),
    ("hackbench", &[]),
    ("tbench", &[]),
    ("unixbench", &[]),
    ("aiostress", &[]),
    ("fsx", &[]),
    ("ltp", &[]),
    ("compilebench", &[]),
    ("disktest", &[]),
    ("cpu_hotplug", &[]),
    ("reaim", &[]),
    ("interbench", &[]),
    ("tiobench", &[]),
    ("lmbench", &[]),
    ("fio", &["randread", "seqwrite"]),
];
const PERF_KEYS: &[&str] = &[
    "bw_read_kbps",
    "bw_write_kbps",
    "cpu_util",
    "ctx_switches",
    "elapsed",
    "io_wait",
    "iops_read",
    "iops_write",
    "latency_avg",
    "latency_max",
    "latency_min",
    "mem_used_kb",
    "nprocs",
    "ops_per_sec",
    "page_faults",
    "requests",
    "score",
    "system_time",
    "throughput",
    "user_time",
];
const FAIL_REASONS: &[&str] = &[
    "Unhandled TestFail: throughput below threshold",
    "Unhandled TestFail: checksum mismatch on block 4096",
    "Test failed: 3 of 120 cases failed",
    "Command <make -j4> failed, rc=2",
];
const ERROR_REASONS: &[&str] = &[
    "Unhandled OSError: [Errno 2] No such file or directory",
    "Unhandled AutotestRunError: test timed out after 3600 seconds",
    "Unhandled CmdError: Command returned non-zero exit status",
];
const WARN_REASONS: &[&str] = &[
    "kernel: BUG: soft lockup - CPU#1 stuck for 61s",
    "kernel: INFO: task kjournald blocked for more than 120 seconds",
    "kernel: WARNING: at fs/buffer.c:1202",
];

// ---------------------------------------------------------------------------
// Time formatting (UTC, as the corpus was written with TZ=UTC)

/// `time.strftime('%b %d %H:%M:%S', ...)` of an epoch, UTC.
fn push_localtime(out: &mut Vec<u8>, ts: u64) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (ts / 86_400) as i64;
    let secs = ts % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let s = format!(
        "{} {:02} {:02}:{:02}:{:02}",
        MONTHS[(m - 1) as usize],
        d,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    out.extend_from_slice(s.as_bytes());
}

/// `timestamp=<ts>\tlocaltime=<...>\t`.
fn push_fields(out: &mut Vec<u8>, ts: u64) {
    out.extend_from_slice(format!("timestamp={ts}\tlocaltime=").as_bytes());
    push_localtime(out, ts);
    out.push(b'\t');
}

// ---------------------------------------------------------------------------
// Kernels and machines

struct Kernel {
    version: String,
    patch: Option<String>,
}

fn kernel(seed: u64, k: u32) -> Kernel {
    let mut r = Rng::new(mix(seed ^ 0x6b65_726e, k as u64));
    let minor = 32 + k % 8;
    let version = if k < 8 {
        format!("2.6.{minor}-autotest")
    } else {
        format!("2.6.{minor}-rc{}-autotest", k / 8)
    };
    let patch = r.chance(0.4).then(|| {
        let name = format!("fix-{}-{k}.patch", r.below(1000));
        format!(
            "http://patches.example.com/p/{name} {name} {:016x}{:016x}",
            r.next_u64(),
            r.next_u64()
        )
    });
    Kernel { version, patch }
}

fn platform_of(seed: u64, machine: u32) -> &'static str {
    let mut r = Rng::new(mix(seed ^ 0x706c_6174, machine as u64));
    PLATFORMS[r.below(PLATFORMS.len() as u64) as usize]
}

// ---------------------------------------------------------------------------
// Status log rendering

/// Accumulates the global `status.log` and the per-subdir copies.
#[derive(Default)]
struct StatusLog {
    global: Vec<u8>,
    /// `(subdir, copy)` in first-use order.
    copies: Vec<(String, Vec<u8>)>,
    indent: usize,
    copy: bool,
}

impl StatusLog {
    fn reset(&mut self, copy: bool) {
        self.global.clear();
        self.copies.clear();
        self.indent = 0;
        self.copy = copy;
    }

    /// `status_log_entry(...).render()` with `status_logger` indentation.
    /// `fields` are extra fields written before timestamp/localtime (e.g.
    /// `kernel=...`), in the given order.
    fn record(
        &mut self,
        status: &str,
        subdir: Option<&str>,
        op: Option<&str>,
        ts: u64,
        fields: &[(&str, &str)],
        message: &str,
    ) {
        let is_end = status.starts_with("END");
        let indent = if is_end {
            self.indent.saturating_sub(1)
        } else {
            self.indent
        };
        let start = self.global.len();
        let g = &mut self.global;
        g.extend(std::iter::repeat_n(b'\t', indent));
        g.extend_from_slice(status.as_bytes());
        g.push(b'\t');
        g.extend_from_slice(subdir.unwrap_or("----").as_bytes());
        g.push(b'\t');
        g.extend_from_slice(op.unwrap_or("----").as_bytes());
        g.push(b'\t');
        for (k, v) in fields {
            g.extend_from_slice(k.as_bytes());
            g.push(b'=');
            g.extend_from_slice(v.as_bytes());
            g.push(b'\t');
        }
        push_fields(g, ts);
        let mut lines = message.split('\n');
        g.extend_from_slice(
            lines
                .next()
                .unwrap_or("")
                .replace('\t', "        ")
                .as_bytes(),
        );
        g.push(b'\n');
        for extra in lines {
            g.extend_from_slice(b"  ");
            g.extend_from_slice(extra.as_bytes());
            g.push(b'\n');
        }
        if status == "START" {
            self.indent += 1;
        } else if is_end {
            self.indent = indent;
        }
        if let (true, Some(sd)) = (self.copy, subdir) {
            let entry = self.global[start..].to_vec();
            match self.copies.iter_mut().find(|(s, _)| s == sd) {
                Some((_, buf)) => buf.extend_from_slice(&entry),
                None => self.copies.push((sd.to_string(), entry)),
            }
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.global.extend_from_slice(bytes);
    }
}

// ---------------------------------------------------------------------------
// Job writer

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bad {
    None,
    Truncated,
    KeyvalComment,
    Garbage,
}

struct TestPlan {
    subdir: String,
    name: String,
    base: &'static str,
    tag: Option<&'static str>,
    status: &'static str,
    reason: String,
}

#[derive(Default)]
struct JobWriter {
    log: StatusLog,
    buf: Vec<u8>,
}

impl JobWriter {
    fn put(&mut self, path: &Path, stats: &mut GenStats) -> io::Result<()> {
        fs::write(path, &self.buf)?;
        stats.files += 1;
        stats.bytes += self.buf.len() as u64;
        Ok(())
    }

    fn put_bytes(path: &Path, bytes: &[u8], stats: &mut GenStats) -> io::Result<()> {
        fs::write(path, bytes)?;
        stats.files += 1;
        stats.bytes += bytes.len() as u64;
        Ok(())
    }

    fn write_job(
        &mut self,
        root: &Path,
        opts: &GenOptions,
        idx: u64,
        stats: &mut GenStats,
    ) -> io::Result<()> {
        let mut r = Rng::new(mix(opts.seed, idx));
        let id = opts.first_job_id + idx;
        let owner = *r.pick(OWNERS);
        let machine = 1 + r.below(opts.machines.max(1) as u64) as u32;
        let hostname = format!("host{machine}");
        // A separate stream, so the option changes nothing else of the job.
        let mut relabel = Rng::new(mix(opts.seed ^ 0x0072_656c_6162_656c, idx));
        let (platform, machine_owner) = if opts.relabel_machines {
            let owner = relabel.chance(0.5).then(|| *relabel.pick(OWNERS));
            (*relabel.pick(PLATFORMS), owner)
        } else {
            (platform_of(opts.seed, machine), None)
        };
        let dir = root.join(format!("{id}-{owner}")).join(&hostname);
        fs::create_dir_all(dir.join("host_keyvals"))?;
        fs::create_dir_all(dir.join("sysinfo"))?;

        let bad = if r.chance(opts.fraction_bad) {
            *r.pick(&[Bad::Truncated, Bad::KeyvalComment, Bad::Garbage])
        } else {
            Bad::None
        };
        let n_kernels = opts.kernels.max(1);
        let mut kern = kernel(opts.seed, r.below(n_kernels as u64) as u32);
        let queued = 1_300_000_000 + idx * 90 + r.below(600);
        let started = queued + 5 + r.below(3600);
        let mut ts = started + 1;

        // Plan the tests.
        let n_tests = r.range(&opts.tests_per_job) as usize;
        let mut tests: Vec<TestPlan> = Vec::with_capacity(n_tests);
        for _ in 0..n_tests {
            let (base, tags) = *r.pick(TESTS);
            let tag = (!tags.is_empty() && r.chance(0.6)).then(|| *r.pick(tags));
            let mut name = match tag {
                Some(t) => format!("{base}.{t}"),
                None => base.to_string(),
            };
            if tests.iter().any(|t| t.name == name) {
                // run_test's iteration tag: name._NN_
                let n = tests.iter().filter(|t| t.name.starts_with(&name)).count();
                name = format!("{name}._{n:02}_");
            }
            let (status, reason) = if r.chance(opts.fraction_failed) {
                match r.below(3) {
                    0 => ("FAIL", (*r.pick(FAIL_REASONS)).to_string()),
                    1 => ("ERROR", (*r.pick(ERROR_REASONS)).to_string()),
                    _ => ("WARN", (*r.pick(WARN_REASONS)).to_string()),
                }
            } else {
                ("GOOD", "completed successfully".to_string())
            };
            let reason = if status != "GOOD" && status != "WARN" && r.chance(0.3) {
                format!(
                    "{reason}\nTraceback (most recent call last):\n  File \"/usr/local/autotest/client/tests/{base}/{base}.py\", line {}, in run_once\n    raise error.TestFail(msg)",
                    20 + r.below(200)
                )
            } else {
                reason
            };
            tests.push(TestPlan {
                subdir: name.clone(),
                name,
                base,
                tag,
                status,
                reason,
            });
        }
        let reboot_at = r
            .chance(opts.fraction_reboot)
            .then(|| 1 + r.below(n_tests.max(1) as u64) as usize);
        let truncate_at = (bad == Bad::Truncated).then(|| r.below(n_tests.max(1) as u64) as usize);
        let garbage_at = (bad == Bad::Garbage).then(|| r.below(n_tests as u64 + 1) as usize);

        // status.log
        self.log.reset(opts.subdir_status_copies);
        let log = &mut self.log;
        let mut kfields: Vec<(&str, &str)> = vec![("kernel", &kern.version)];
        if let Some(p) = &kern.patch {
            kfields.push(("patch0", p));
        }
        log.record("INFO", None, None, ts, &kfields, "");
        ts += 1;
        log.record("START", None, None, ts, &[], "");
        let mut truncated = false;
        let mut failed = 0u64;
        for (i, t) in tests.iter().enumerate() {
            if garbage_at == Some(i) {
                log.raw(b"\x1b[0m\xff\xfe console noise \xc3\x28 \x80\x81\n");
            }
            if reboot_at == Some(i) {
                let new = kernel(opts.seed, r.below(n_kernels as u64) as u32);
                ts += 1 + r.below(3);
                log.record("START", None, Some("reboot"), ts, &[], "");
                ts += 1 + r.below(3);
                log.record("GOOD", None, Some("reboot.start"), ts, &[], "");
                ts += 30 + r.below(90);
                let ident = format!("{} #1 SMP", new.version);
                log.record("GOOD", None, Some("reboot.verify"), ts, &[], &ident);
                ts += 1;
                let mut f: Vec<(&str, &str)> = Vec::new();
                if let Some(p) = &new.patch {
                    f.push(("patch0", p));
                }
                f.push(("kernel", &new.version));
                log.record("END GOOD", None, Some("reboot"), ts, &f, "");
                kern = new;
            }
            stats.tests += 1;
            ts += 1 + r.below(3);
            let sd = Some(t.subdir.as_str());
            let op = Some(t.name.as_str());
            log.record("START", sd, op, ts, &[], "");
            if r.chance(0.3) {
                ts += 1;
                log.record("GOOD", None, Some("sysinfo.before"), ts, &[], "");
            }
            ts += 1 + r.below(600);
            log.record(t.status, sd, op, ts, &[], &t.reason);
            if truncate_at == Some(i) {
                truncated = true;
                break;
            }
            ts += 1 + r.below(3);
            let end = format!("END {}", t.status);
            log.record(&end, sd, op, ts, &[], "");
            if matches!(t.status, "FAIL" | "ERROR") {
                failed += 1;
            }
        }
        if !truncated {
            if garbage_at == Some(tests.len()) {
                log.raw(b"\xff\xfe\xfd garbage \x80\n");
            }
            ts += 1 + r.below(5);
            log.record("END GOOD", None, None, ts, &[], "");
        }
        let finished = ts + 5 + r.below(120);
        Self::put_bytes(&dir.join("status.log"), &self.log.global, stats)?;
        for (sd, copy) in &self.log.copies {
            let d = dir.join(sd);
            fs::create_dir_all(&d)?;
            Self::put_bytes(&d.join("status.log"), copy, stats)?;
        }

        // Job keyval: scheduler first (job_queued + AFE keyvals), then
        // autoserv (sorted), then the scheduler's job_finished.
        let label = *r.pick(LABELS);
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(format!("job_queued={queued}\n").as_bytes());
        b.extend_from_slice(
            format!(
                "suite={label}\nbuild=R{}-{}.{}.0\npriority={}\n",
                10 + r.below(30),
                1000 + r.below(9000),
                r.below(100),
                r.below(4) * 10
            )
            .as_bytes(),
        );
        b.extend_from_slice(
            format!(
                "drone=drone{}.example.com\nhostname={hostname}\njob_started={started}\nlabel={label}\nstatus_version=1\nuser={owner}\n",
                1 + r.below(3)
            )
            .as_bytes(),
        );
        if let Some(o) = machine_owner {
            b.extend_from_slice(format!("owner={o}\n").as_bytes());
        }
        if bad == Bad::KeyvalComment {
            b.extend_from_slice(b"# added by hand\n");
        }
        b.extend_from_slice(format!("job_finished={finished}\n").as_bytes());
        self.put(&dir.join("keyval"), stats)?;

        // .autoserv_execute: pid, exit status word, failed tests.
        let code = if truncated { 9 } else { 0 };
        self.buf.clear();
        self.buf.extend_from_slice(
            format!("{}\n{code}\n{failed}\n", 1000 + r.below(60_000)).as_bytes(),
        );
        self.put(&dir.join(".autoserv_execute"), stats)?;

        // host_keyvals/<hostname>
        self.buf.clear();
        self.buf.extend_from_slice(
            format!(
                "platform={platform}\nlabels={platform},rack%20{},pool%3A{}\n",
                machine % 16,
                ["suites", "bvt", "perf"][(machine % 3) as usize]
            )
            .as_bytes(),
        );
        self.put(&dir.join("host_keyvals").join(&hostname), stats)?;

        // sysinfo/, control.srv
        let uname_short = format!("{} #1 SMP", kern.version);
        Self::put_bytes(
            &dir.join("sysinfo").join("hostname"),
            format!("{hostname}\n").as_bytes(),
            stats,
        )?;
        Self::put_bytes(
            &dir.join("sysinfo").join("uname_-a"),
            format!(
                "Linux {hostname} {uname_short} Mon Mar 7 00:00:00 UTC 2011 x86_64 GNU/Linux\n"
            )
            .as_bytes(),
            stats,
        )?;
        Self::put_bytes(
            &dir.join("control.srv"),
            b"# server control file\njob.run_test('sleeptest')\n",
            stats,
        )?;

        // Per-test keyval and results/keyval.
        let mem_mb = 1024 << r.below(5);
        for (i, t) in tests.iter().enumerate() {
            if truncated && Some(i) > truncate_at {
                break;
            }
            let tdir = dir.join(&t.subdir);
            fs::create_dir_all(tdir.join("results"))?;
            let b = &mut self.buf;
            b.clear();
            b.extend_from_slice(
                format!(
                    "param-seconds={}\nparam-iterations={}\n",
                    1 + r.below(600),
                    1 + r.below(5)
                )
                .as_bytes(),
            );
            if let Some(tag) = t.tag {
                b.extend_from_slice(format!("param-tag='{tag}'\n").as_bytes());
            }
            b.extend_from_slice(
                format!(
                    "version={}\nsysinfo-cmdline=ro root=/dev/sda1 console=ttyS0\nsysinfo-memtotal-in-kb={}\nsysinfo-phys-mbytes={mem_mb}\nsysinfo-uname={} x86_64\n",
                    1 + r.below(4),
                    mem_mb * 1000,
                    uname_short
                )
                .as_bytes(),
            );
            self.put(&tdir.join("keyval"), stats)?;

            // results/keyval: write_iteration_keyval = sorted attrs, sorted
            // perfs, blank line.
            let n_perf = r.range(&opts.perf_keys_per_iteration) as usize;
            let off = r.below(PERF_KEYS.len() as u64) as usize;
            let mut keys: Vec<String> = (0..n_perf)
                .map(|k| {
                    let base = PERF_KEYS[(off + k) % PERF_KEYS.len()];
                    match k / PERF_KEYS.len() {
                        0 => base.to_string(),
                        n => format!("{base}_{n}"),
                    }
                })
                .collect();
            keys.sort();
            let scales: Vec<f64> = keys.iter().map(|_| 10f64.powi(r.below(6) as i32)).collect();
            let n_iter = r.range(&opts.iterations_per_test);
            let b = &mut self.buf;
            b.clear();
            for it in 0..n_iter {
                b.extend_from_slice(
                    format!("mode{{attr}}={}\nrun{{attr}}={}\n", t.base, it + 1).as_bytes(),
                );
                for (k, s) in keys.iter().zip(&scales) {
                    let v = s * (0.5 + r.unit());
                    b.extend_from_slice(format!("{k}{{perf}}={v:.4}\n").as_bytes());
                }
                b.push(b'\n');
            }
            self.put(&tdir.join("results").join("keyval"), stats)?;
        }

        stats.jobs += 1;
        if bad != Bad::None {
            stats.bad_jobs += 1;
        }
        if truncated {
            stats.truncated_jobs += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_tree(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        for e in walkdir::WalkDir::new(root).sort_by_file_name() {
            let e = e.unwrap();
            if e.file_type().is_file() {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                out.push((rel, fs::read(e.path()).unwrap()));
            }
        }
        out
    }

    #[test]
    fn layout_and_balanced_status_logs() {
        let tmp = tempfile::TempDir::new().unwrap();
        let opts = GenOptions {
            jobs: 5,
            seed: 7,
            fraction_bad: 0.0,
            ..GenOptions::default()
        };
        let stats = generate(tmp.path(), &opts).unwrap();
        assert_eq!(stats.jobs, 5);
        let mut jobs: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        jobs.sort();
        assert_eq!(jobs.len(), 5);
        for job in jobs {
            let name = job.file_name().unwrap().to_str().unwrap().to_string();
            let (id, owner) = name.split_once('-').unwrap();
            assert!(id.parse::<u64>().is_ok() && !owner.is_empty(), "{name}");
            let hosts: Vec<_> = fs::read_dir(&job)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert_eq!(hosts.len(), 1);
            let host = &hosts[0];
            let hostname = host.file_name().unwrap().to_str().unwrap();
            for f in [
                "keyval",
                ".autoserv_execute",
                "status.log",
                "sysinfo/uname_-a",
            ] {
                assert!(host.join(f).is_file(), "{f}");
            }
            assert!(host.join("host_keyvals").join(hostname).is_file());
            let kv = fs::read_to_string(host.join("keyval")).unwrap();
            assert!(kv.contains("status_version=1\n"));
            assert!(kv.contains(&format!("hostname={hostname}\n")));

            let log = fs::read_to_string(host.join("status.log")).unwrap();
            let (mut depth, mut max_depth, mut subdirs) = (0i32, 0, Vec::new());
            for line in log.lines().filter(|l| !l.starts_with("  ")) {
                let indent = line.bytes().take_while(|&b| b == b'\t').count() as i32;
                let cols: Vec<_> = line.trim_start_matches('\t').split('\t').collect();
                assert!(cols.len() >= 4, "{line}");
                assert!(
                    cols[3..].iter().any(|c| c.starts_with("timestamp=")),
                    "{line}"
                );
                if cols[0] == "START" {
                    assert_eq!(indent, depth);
                    depth += 1;
                    max_depth = max_depth.max(depth);
                    if cols[1] != "----" {
                        subdirs.push(cols[1].to_string());
                    }
                } else if cols[0].starts_with("END ") {
                    depth -= 1;
                    assert_eq!(indent, depth, "{line}");
                }
            }
            assert_eq!(depth, 0, "unbalanced START/END in {name}");
            assert_eq!(max_depth, 2);
            assert!(!subdirs.is_empty());
            for sd in subdirs {
                assert!(host.join(&sd).join("keyval").is_file());
                let it = fs::read_to_string(host.join(&sd).join("results/keyval")).unwrap();
                assert!(it.contains("{perf}=") && it.ends_with("\n\n"));
            }
        }
    }

    #[test]
    fn same_seed_same_bytes_and_modify() {
        let (a, b) = (
            tempfile::TempDir::new().unwrap(),
            tempfile::TempDir::new().unwrap(),
        );
        let opts = GenOptions {
            jobs: 5,
            seed: 42,
            fraction_bad: 0.5,
            threads: 1,
            ..GenOptions::default()
        };
        let sa = generate(a.path(), &opts).unwrap();
        let sb = generate(
            b.path(),
            &GenOptions {
                threads: 3,
                ..opts.clone()
            },
        )
        .unwrap();
        assert_eq!(sa, sb);
        let ta = read_tree(a.path());
        assert_eq!(ta, read_tree(b.path()));
        assert_eq!(ta.len() as u64, sa.files);
        assert_eq!(
            ta.iter().map(|(_, c)| c.len() as u64).sum::<u64>(),
            sa.bytes
        );

        let touched = modify(a.path(), 2, 9).unwrap();
        let rel = |root: &Path, v: &[PathBuf]| -> Vec<PathBuf> {
            v.iter()
                .map(|p| p.strip_prefix(root).unwrap().to_path_buf())
                .collect()
        };
        let touched_b = modify(b.path(), 2, 9).unwrap();
        assert_eq!(rel(a.path(), &touched), rel(b.path(), &touched_b));
        assert_eq!(touched.len(), 2);
        let changed: Vec<_> = read_tree(a.path())
            .into_iter()
            .zip(&ta)
            .filter(|(new, old)| new != *old)
            .map(|(new, _)| a.path().join(new.0))
            .collect();
        let expect: Vec<_> = touched.iter().map(|h| h.join("status.log")).collect();
        assert_eq!(changed, expect);
    }
}
