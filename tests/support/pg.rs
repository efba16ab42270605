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
    let dir = start_cluster(None)?;
    Ok(Server {
        admin_url: format!("postgresql:///postgres?host={}&user=tko", dir.display()),
        external: false,
    })
}

/// The certificates and roles of a [`local_server`].
pub(crate) struct Local {
    /// The unix socket directory.
    pub(crate) socket_dir: PathBuf,
    /// The TCP port on 127.0.0.1 (also the socket's port).
    pub(crate) port: u16,
    /// The CA that signed the server certificate (PEM).
    pub(crate) ca: PathBuf,
    /// A CA that did not (PEM).
    pub(crate) other_ca: PathBuf,
}

/// A role that must give a password (scram-sha-256), and its password.
pub(crate) const PW_USER: &str = "alice";
/// [`PW_USER`]'s password: must appear in no output.
pub(crate) const PW_SECRET: &str = "S3cr3t-pw-9f2e";

static LOCAL: OnceLock<Result<Local, String>> = OnceLock::new();

/// A throwaway server this binary starts even when `TKO_TEST_PG_URL` is
/// set (its TLS and authentication are part of the test): unix socket plus
/// 127.0.0.1 on a free port, `ssl=on` with a certificate for `localhost`
/// signed by a CA made here, `tko` trusted, [`PW_USER`] by password. A test
/// binary uses either this or [`fresh_database_url`], never both, so that
/// it starts one server.
///
/// # Panics
/// If no PostgreSQL can be found or started (with instructions).
pub(crate) fn local_server() -> &'static Local {
    match LOCAL.get_or_init(start_local) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    }
}

/// A new empty database on the [`local_server`], owned by [`PW_USER`].
pub(crate) fn local_database() -> String {
    let l = local_server();
    let name = format!(
        "tko_test_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let admin = format!(
        "postgresql:///postgres?host={}&port={}&user=tko",
        l.socket_dir.display(),
        l.port
    );
    let mut c = postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to {admin}: {e}"));
    c.batch_execute(&format!("CREATE DATABASE {name} OWNER {PW_USER}"))
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    name
}

/// TCP and TLS settings of a cluster that listens on 127.0.0.1.
struct Net {
    port: u16,
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn start_local() -> Result<Local, String> {
    let made = make_certs().map_err(|e| format!("making test certificates: {e}"))?;
    let mut last = String::new();
    // A free port may be taken between finding and using it: try again.
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let net = Net {
            port,
            cert: made.server_cert.clone(),
            key: made.server_key.clone(),
        };
        match start_cluster(Some(&net)) {
            Ok(dir) => {
                let admin = format!(
                    "postgresql:///postgres?host={}&port={port}&user=tko",
                    dir.display()
                );
                let mut c = postgres::Client::connect(&admin, postgres::NoTls)
                    .map_err(|e| format!("connecting to {admin}: {e}"))?;
                c.batch_execute(&format!(
                    "SET password_encryption = 'scram-sha-256';                      CREATE ROLE {PW_USER} LOGIN PASSWORD '{PW_SECRET}'"
                ))
                .map_err(|e| format!("creating role {PW_USER}: {e}"))?;
                let write = |file: &str, pem: &[u8]| {
                    let p = dir.join(file);
                    std::fs::write(&p, pem)
                        .map(|()| p)
                        .map_err(|e| format!("writing {file}: {e}"))
                };
                return Ok(Local {
                    ca: write("ca.crt", &made.ca)?,
                    other_ca: write("other-ca.crt", &made.other_ca)?,
                    socket_dir: dir,
                    port,
                });
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// PEM texts.
struct Certs {
    ca: Vec<u8>,
    other_ca: Vec<u8>,
    server_cert: Vec<u8>,
    server_key: Vec<u8>,
}

/// A CA, a second CA, and a server certificate for DNS name `localhost`
/// (only: `127.0.0.1` is a wrong host name for it) signed by the first.
fn make_certs() -> Result<Certs, openssl::error::ErrorStack> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509Name, X509};

    fn key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
        PKey::from_ec_key(EcKey::generate(&group)?)
    }
    fn name(cn: &str) -> Result<X509Name, openssl::error::ErrorStack> {
        let mut n = X509Name::builder()?;
        n.append_entry_by_nid(Nid::COMMONNAME, cn)?;
        Ok(n.build())
    }
    fn cert(
        subject: &str,
        key: &PKey<Private>,
        issuer: Option<(&X509, &PKey<Private>)>,
        serial: u32,
    ) -> Result<X509, openssl::error::ErrorStack> {
        let mut b = X509::builder()?;
        b.set_version(2)?;
        let serial = BigNum::from_u32(serial)?.to_asn1_integer()?;
        let subject_name = name(subject)?;
        let (from, to) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(2)?);
        b.set_serial_number(&serial)?;
        b.set_subject_name(&subject_name)?;
        b.set_pubkey(key)?;
        b.set_not_before(&from)?;
        b.set_not_after(&to)?;
        match issuer {
            None => {
                b.set_issuer_name(&subject_name)?;
                b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
                b.sign(key, MessageDigest::sha256())?;
            }
            Some((ca, ca_key)) => {
                b.set_issuer_name(ca.subject_name())?;
                let san = SubjectAlternativeName::new()
                    .dns("localhost")
                    .build(&b.x509v3_context(Some(ca), None))?;
                b.append_extension(san)?;
                b.sign(ca_key, MessageDigest::sha256())?;
            }
        }
        Ok(b.build())
    }
    let ca_key = key()?;
    let ca = cert("tko test CA", &ca_key, None, 1)?;
    let other_key = key()?;
    let other = cert("tko other CA", &other_key, None, 2)?;
    let server_key = key()?;
    let server = cert("localhost", &server_key, Some((&ca, &ca_key)), 3)?;
    Ok(Certs {
        ca: ca.to_pem()?,
        other_ca: other.to_pem()?,
        server_cert: server.to_pem()?,
        server_key: server_key.private_key_to_pem_pkcs8()?,
    })
}

/// initdb + pg_ctl start in a new temp dir (returned: it holds the socket).
/// Without `net`: unix socket only, trust. With it: also 127.0.0.1:port
/// with TLS, `tko` trusted and every other role by scram-sha-256.
fn start_cluster(net: Option<&Net>) -> Result<PathBuf, String> {
    let bin = find_bin_dir().ok_or_else(|| HOW_TO_GET_ONE.to_string())?;
    let root = is_root();
    let dir = tempfile::Builder::new()
        .prefix("tko-pg-")
        .tempdir()
        .map_err(|e| format!("creating temp dir: {e}"))?
        .keep();
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
    let mut extra = String::new();
    if let Some(net) = net {
        // The server's key must belong to the server's user, mode 0600.
        let key = dir.join("server.key");
        let cert = dir.join("server.crt");
        std::fs::write(&key, &net.key).map_err(|e| format!("writing the key: {e}"))?;
        std::fs::write(&cert, &net.cert).map_err(|e| format!("writing the certificate: {e}"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("chmod the key: {e}"))?;
        if root {
            run(Command::new("chown").arg("nobody").arg(&key).arg(&cert))?;
        }
        extra = format!(
            " -c listen_addresses='127.0.0.1' -c port={} -c ssl=on -c ssl_cert_file='{}' \
             -c ssl_key_file='{}' -c hba_file='{}'",
            net.port,
            cert.display(),
            key.display(),
            dir.join("pg_hba.conf").display()
        );
        std::fs::write(
            dir.join("pg_hba.conf"),
            "local all tko trust\n\
             local all all scram-sha-256\n\
             host all tko 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .map_err(|e| format!("writing pg_hba.conf: {e}"))?;
    }
    if root {
        run(Command::new("chown").arg("nobody").arg(&dir))?;
    }
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
         -c synchronous_commit=off -c full_page_writes=off -c max_connections=200{extra}",
        dir.display()
    );
    let started = run(as_owner("pg_ctl")
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("log"))
        .args(["-w", "-t", "60", "-o", &opts, "start"])
        .current_dir(&dir));
    if let Err(e) = started {
        let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        return Err(format!("{e}\n{log}"));
    }
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
    Ok(dir)
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
