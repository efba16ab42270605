//! Kill -9 at random points: what the warehouse promises when a load is
//! interrupted. Each test names the promise it proves. These run the real
//! `tko` binary on generated results trees against a temp SQLite file and
//! the throwaway PostgreSQL of `support::pg`.

use crate::support::{contents, fresh, Backend, Db, Fresh, TestResult};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tko::gen::{generate, GenOptions};

/// A tree whose few machines each run many jobs, seen with a different
/// platform (and sometimes owner) by each job, so the final machine rows
/// depend on which job counts as the newest.
fn shared_machine_tree(jobs: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let opts = GenOptions {
        jobs,
        machines: 6,
        relabel_machines: true,
        tests_per_job: 1..=3,
        iterations_per_test: 1..=2,
        perf_keys_per_iteration: 2..=4,
        fraction_bad: 0.0,
        seed: 11,
        ..GenOptions::default()
    };
    generate(&dir.path().join("results"), &opts).expect("generate");
    dir
}

fn backfill(url: &str, root: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tko"));
    c.args(["backfill", "--quiet", "--level", "2", "--db", url])
        .args(extra)
        .arg(root)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "tko failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn init(f: &Fresh) {
    let out = Command::new(env!("CARGO_BIN_EXE_tko"))
        .args(["db", "init", "--db", &f.url])
        .output()
        .expect("run tko db init");
    ok(&out);
}

/// Everything a load decides, without ids or load times: the job trees,
/// the machine rows and the ledger.
fn warehouse(db: &mut Db) -> Vec<Vec<Option<String>>> {
    let mut out = contents(db);
    out.extend(
        db.texts("SELECT hostname, machine_group, owner FROM tko_machines ORDER BY hostname"),
    );
    out.extend(db.texts(
        "SELECT tag, source_path, fingerprint, parser_version, outcome, error, \
            CAST(tests AS TEXT), CAST(iteration_results AS TEXT) \
         FROM tko_ingest_ledger ORDER BY tag",
    ));
    out
}

/// splitmix64, so the kill points are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// SIGKILLs `tko backfill` at many random points (after a random number of
/// further jobs reached the ledger, plus a random few milliseconds, with a
/// different `--batch` each run), reruns it each time, and checks the
/// final warehouse, machine rows included, equals one uninterrupted load.
fn kill_at_random_points_matches_one_load(backend: Backend) -> TestResult {
    const JOBS: i64 = 240;
    const KILLS: usize = 10;
    let t = shared_machine_tree(JOBS as usize);
    let root = t.path().join("results");

    let reference = fresh(backend);
    ok(&backfill(&reference.url, &root, &[]).output()?);
    let want = warehouse(&mut Db::open(&reference));
    assert_eq!(
        Db::open(&reference).int("SELECT count(*) FROM tko_ingest_ledger"),
        JOBS
    );

    let f = fresh(backend);
    init(&f);
    let mut db = Db::open(&f);
    let mut rng = Rng(0x6b69_6c6c ^ backend as u64);
    let mut kills = Vec::new();
    for round in 0..KILLS {
        let before = db.int("SELECT count(*) FROM tko_ingest_ledger");
        let left = JOBS - before;
        let spread = (left / (KILLS - round) as i64).max(1) as u64;
        // Short of the end by more than a batch, so the kill comes first.
        let target = (before + 1 + rng.below(spread * 3 / 2) as i64).min(JOBS - 10);
        let extra_ms = rng.below(4);
        let batch = (1 + rng.below(7)).to_string();
        let mut child = backfill(&f.url, &root, &["--batch", &batch]).spawn()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let finished = loop {
            if child.try_wait()?.is_some() {
                break true;
            }
            if db.int("SELECT count(*) FROM tko_ingest_ledger") >= target {
                break false;
            }
            assert!(Instant::now() < deadline, "no progress in round {round}");
            std::thread::sleep(Duration::from_millis(1));
        };
        if !finished {
            std::thread::sleep(Duration::from_millis(extra_ms));
            child.kill()?; // SIGKILL
        }
        let status = child.wait()?;
        let after = db.int("SELECT count(*) FROM tko_ingest_ledger");
        if status.code().is_none() {
            kills.push((batch, before, target, after));
        }
    }
    assert!(
        kills.len() >= 8,
        "only {} of {KILLS} runs were killed before finishing: {kills:?}",
        kills.len()
    );
    ok(&backfill(&f.url, &root, &[]).output()?);
    let machines = "SELECT hostname, machine_group, owner FROM tko_machines ORDER BY hostname";
    assert_eq!(
        db.texts(machines),
        Db::open(&reference).texts(machines),
        "machine rows after kills (batch, ledger before, target, after) {kills:?}"
    );
    let got = warehouse(&mut db);
    let diff: Vec<_> = want
        .iter()
        .zip(&got)
        .filter(|(a, b)| a != b)
        .take(5)
        .collect();
    assert!(
        want == got,
        "after kills (batch, ledger before, target, after) {kills:?}: \
         first differences (want, got): {diff:?}"
    );
    Ok(())
}

#[test]
fn sqlite_backfill_killed_at_random_points_equals_one_load() -> TestResult {
    kill_at_random_points_matches_one_load(Backend::Sqlite)
}

#[test]
fn pg_backfill_killed_at_random_points_equals_one_load() -> TestResult {
    kill_at_random_points_matches_one_load(Backend::Postgres)
}
