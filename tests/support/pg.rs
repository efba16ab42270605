//! A throwaway PostgreSQL for the store tests, never a mock.
//!
//! If `TKO_TEST_PG_URL` is set (a `postgresql://` URL of a role that may
//! `CREATE DATABASE`), tests use that server. Otherwise the first test to ask
//! starts one server for the whole test binary: `initdb` + `pg_ctl start`
//! from PATH or `/usr/lib/postgresql/*/bin`, listening only on a unix socket
//! in a temp dir, with fsync off. initdb refuses to run as root, so as root
//! the cluster belongs to `nobody` (the temp dir is chowned to it and the
//! tools run through `runuser`, else `setpriv`). A watchdog shell stops the
//! server (`pg_ctl stop -m immediate`) and removes the dir once the test
//! process is gone, since statics are never dropped. Each test gets its own
//! fresh database. No PostgreSQL at all is a test failure saying how to get
//! one, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The server every test of this binary shares.
struct Server {
    /// URL of the maintenance database (`postgres`) with superuser rights.
    admin_url: String,
    /// A server we did not start: drop each test database after use.
    external: bool,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

const HOW_TO_GET_ONE: &str = "no PostgreSQL for the store tests: set TKO_TEST_PG_URL to a \
    postgresql:// URL of a role with CREATEDB, or install PostgreSQL so that initdb and \
    pg_ctl are in PATH or /usr/lib/postgresql/<version>/bin (Debian/Ubuntu: \
    `apt-get install -y postgresql`; .ci/run does this)";

/// A URL of a new, empty database on the test server.
///
/// # Panics
/// If no PostgreSQL can be found or started (with instructions).
pub(crate) fn fresh_database_url() -> String {
    let server = match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let name = format!(
        "tko_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut admin = postgres::Client::connect(&server.admin_url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", server.admin_url));
    // `name` is made here from digits, not user input.
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    with_dbname(&server.admin_url, &name)
}

/// Drops a database made by [`fresh_database_url`] on an external server
/// (a throwaway server is removed whole when the test process ends).
pub(crate) fn drop_database(url: &str) {
    let Some(Ok(server)) = SERVER.get() else {
        return;
    };
    if !server.external {
        return;
    }
    let path = url.split('?').next().unwrap_or_default();
    let name = path.rsplit('/').next().unwrap_or_default();
    if name.starts_with("tko_test_") {
        if let Ok(mut admin) = postgres::Client::connect(&server.admin_url, postgres::NoTls) {
            // Best effort: a leftover database is harmless.
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// `url` with its database path replaced by `db`.
fn with_dbname(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..authority_end])
}

fn start() -> Result<Server, String> {
    if let Ok(url) = std::env::var("TKO_TEST_PG_URL") {
        return Ok(Server {
            admin_url: url,
            external: true,
        });
    }
    let bin = find_bin_dir().ok_or_else(|| HOW_TO_GET_ONE.to_string())?;
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("tko-pg-")
        .tempdir()
        .map_err(|e| format!("creating temp dir: {e}"))?
        .keep();
    if root {
        run(Command::new("chown").arg("nobody").arg(&dir))?;
    }
    let data = dir.join("data");
    let as_owner = |tool: &str| -> Command {
        let exe = bin.join(tool);
        if root {
            if Path::new("/usr/sbin/runuser").exists() || which("runuser").is_some() {
                let mut c = Command::new("runuser");
                c.args(["-u", "nobody", "--"]).arg(exe);
                c
            } else {
                let mut c = Command::new("setpriv");
                c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
                    .arg(exe);
                c
            }
        } else {
            Command::new(exe)
        }
    };
    run(as_owner("initdb")
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "tko",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .current_dir(&dir))?;
    let opts = format!(
        "-c listen_addresses='' -c unix_socket_directories='{}' -c fsync=off \
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
        dir.display()
    );
    run(as_owner("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "-t", "60", "-o", &opts, "start"])
        .current_dir(&dir))?;
    // The watchdog: stop the server and clean up when this process exits.
    let stop = as_owner("pg_ctl");
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; \
         {stop} -D '{data}' stop -m immediate >/dev/null 2>&1; rm -rf '{dir}'",
        pid = std::process::id(),
        stop = command_line(&stop),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting the watchdog: {e}"))?;
    Ok(Server {
        admin_url: format!("postgresql:///postgres?host={}&user=tko", dir.display()),
        external: false,
    })
}

fn command_line(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn run(c: &mut Command) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {}: {e}", command_line(c)))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} failed: {}\n{}{}",
            command_line(c),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

/// A directory holding both initdb and pg_ctl: PATH first (following
/// symlinks such as /usr/local/bin/initdb), then the newest Debian one.
fn find_bin_dir() -> Option<PathBuf> {
    if let Some(initdb) = which("initdb") {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent() {
            if dir.join("pg_ctl").is_file() {
                return Some(dir.to_path_buf());
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

#[test]
fn with_dbname_replaces_the_path() {
    assert_eq!(
        with_dbname("postgresql:///postgres?host=/tmp/x&user=tko", "d1"),
        "postgresql:///d1?host=/tmp/x&user=tko"
    );
    assert_eq!(
        with_dbname("postgres://u:p@h:5432/db", "d2"),
        "postgres://u:p@h:5432/d2"
    );
    assert_eq!(with_dbname("postgres://u@h", "d3"), "postgres://u@h/d3");
}
