//! The I/O edge of connecting to PostgreSQL: reads the process environment,
//! home directory and user name into `pgconfig::Inputs`, reads the password
//! file (ignored with libpq's warning unless it is a plain file without
//! group or world access), builds the OpenSSL connector for the `sslmode`
//! (root certificate, optional client certificate), then tries each host in
//! order as libpq does. A failure names every place tried (host and port,
//! or the socket path) and never the password.

use super::pgconfig::{
    ConfigError, Inputs, Place, RootCert, Settings, SslMode, Target, TlsSettings,
};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use postgres::config::SslMode as DriverSslMode;
use postgres::{Client, NoTls};
use postgres_openssl::MakeTlsConnector;
use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why no connection was made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL or the `PG*` environment is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// TLS could not be set up (certificate or key files).
    #[error("{0}")]
    Tls(String),
    /// Every host was tried and failed.
    #[error("{}", Attempts(.0))]
    Failed(Vec<(Place, String)>),
}

struct Attempts<'a>(&'a [(Place, String)]);

impl fmt::Display for Attempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (place, why)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "connection to {place} failed: {why}")?;
        }
        Ok(())
    }
}

/// Connects (and reconnects) to one URL's servers.
pub struct Connector {
    targets: Vec<Target>,
    tls: Option<MakeTlsConnector>,
    passfile: Option<PathBuf>,
    /// The roots the server certificate must chain to, for messages.
    roots: String,
}

impl Connector {
    /// Resolves `url` against this process's environment, reads the
    /// password file and sets up TLS. Prints libpq's warning when the
    /// password file is ignored for its permissions.
    pub fn new(url: &str) -> Result<Connector, ConnectError> {
        Connector::with_inputs(url, &process_inputs())
    }

    /// As [`Connector::new`] with the given environment, home directory
    /// and user name instead of this process's.
    pub fn with_inputs(url: &str, inputs: &Inputs) -> Result<Connector, ConnectError> {
        let settings = Settings::resolve(url, inputs)?;
        let pgpass = match (&settings.passfile, settings.has_password()) {
            (Some(f), false) => read_passfile(f),
            _ => None,
        };
        let targets = settings.targets(pgpass.as_deref());
        let tcp_tls = targets.iter().any(|t| t.sslmode != SslMode::Disable);
        let tls = if tcp_tls {
            Some(tls_connector(&settings.tls)?)
        } else {
            None
        };
        Ok(Connector {
            targets,
            tls,
            passfile: pgpass
                .is_some()
                .then(|| settings.passfile.clone())
                .flatten(),
            roots: match &settings.tls.root {
                Some(RootCert::File(f)) => format!("the root certificate file \"{}\"", f.display()),
                _ => "the system's trusted roots".into(),
            },
        })
    }

    /// Tries each host in order; the first that accepts wins.
    pub fn connect(&self) -> Result<Client, ConnectError> {
        let mut failures = Vec::new();
        for t in &self.targets {
            let mut r = self.connect_one(&t.config);
            // sslmode=allow: plain first, TLS if the server refused plain.
            if t.sslmode == SslMode::Allow {
                if let Err(e) = &r {
                    if e.as_db_error().is_some() {
                        let mut c = t.config.clone();
                        c.ssl_mode(DriverSslMode::Require);
                        r = self.connect_one(&c);
                    }
                }
            }
            match r {
                Ok(c) => return Ok(c),
                Err(e) => failures.push((t.place.clone(), self.explain(&e, &t.place))),
            }
        }
        Err(ConnectError::Failed(failures))
    }

    fn connect_one(&self, c: &postgres::Config) -> Result<Client, postgres::Error> {
        match (&self.tls, c.get_ssl_mode()) {
            (Some(tls), DriverSslMode::Prefer | DriverSslMode::Require) => c.connect(tls.clone()),
            _ => c.connect(NoTls),
        }
    }

    /// The driver's message, with libpq's hint where the driver's is terse.
    fn explain(&self, e: &postgres::Error, place: &Place) -> String {
        // The driver's Display leaves out the cause ("error connecting to
        // server"); the chain says what happened ("Connection refused").
        let mut msg = e.to_string();
        let mut cur = std::error::Error::source(e);
        while let Some(c) = cur {
            let text = c.to_string();
            if !msg.contains(&text) {
                msg.push_str(": ");
                msg.push_str(&text);
            }
            cur = c.source();
        }
        if msg.contains("password missing") {
            let file = match &self.passfile {
                Some(f) => format!("no match in {}", f.display()),
                None => "no password file".into(),
            };
            format!(
                "the server asked for a password and none was given (not in the URL, \
                 not in PGPASSWORD, {file})"
            )
        } else if msg.contains("certificate verify failed") {
            let why = if msg.contains("mismatch") {
                let host = match place {
                    Place::Tcp { host, .. } => host.as_str(),
                    Place::Socket { .. } => "",
                };
                format!(
                    "the server's certificate is not for host \"{host}\" \
                     (sslmode=verify-full checks the name)"
                )
            } else {
                format!("the server's certificate is not signed by {}", self.roots)
            };
            format!("{why} ({msg})")
        } else {
            msg
        }
    }
}

/// This process's `PG*` variables, home directory and user name.
fn process_inputs() -> Inputs {
    let env = std::env::vars()
        .filter(|(k, _)| k.starts_with("PG"))
        .collect();
    let pw = passwd_entry();
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| pw.as_ref().map(|p| p.1.clone()));
    Inputs {
        env,
        home,
        os_user: pw.map(|p| p.0),
    }
}

/// The effective user's (name, home) from the passwd database.
fn passwd_entry() -> Option<(String, PathBuf)> {
    use std::ffi::CStr;
    use std::os::unix::ffi::OsStrExt;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: a zeroed passwd is a valid out-parameter for getpwuid_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer refers to live, correctly sized storage; on
    // success `result` points to `pwd`, whose strings live in `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::geteuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so these are NUL-terminated strings in `buf`.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned();
    let dir = if pwd.pw_dir.is_null() {
        PathBuf::new()
    } else {
        // SAFETY: as above.
        let d = unsafe { CStr::from_ptr(pwd.pw_dir) };
        PathBuf::from(std::ffi::OsStr::from_bytes(d.to_bytes()))
    };
    Some((name, dir))
}

/// libpq's warning about an ignored password file, once per process
/// (a command may connect more than once).
fn warn_once(message: String) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        eprintln!("{message}");
    }
}

/// The password file's contents, if it exists and libpq would use it.
fn read_passfile(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        warn_once(format!(
            "WARNING: password file \"{}\" is not a plain file",
            path.display()
        ));
        return None;
    }
    if meta.mode() & 0o077 != 0 {
        warn_once(format!(
            "WARNING: password file \"{}\" has group or world access; permissions should be \
             u=rw (0600) or less",
            path.display()
        ));
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The OpenSSL connector for `tls` (used only for TCP hosts).
fn tls_connector(tls: &TlsSettings) -> Result<MakeTlsConnector, ConnectError> {
    let fail = |what: String| {
        move |e: openssl::error::ErrorStack| ConnectError::Tls(format!("{what}: {e}"))
    };
    let mut b =
        SslConnector::builder(SslMethod::tls_client()).map_err(fail("setting up TLS".into()))?;
    let verify_chain = match &tls.root {
        Some(RootCert::System) => true,
        Some(RootCert::File(f)) if f.exists() => {
            let pem = std::fs::read(f).map_err(|e| {
                ConnectError::Tls(format!(
                    "could not read root certificate file \"{}\": {e}",
                    f.display()
                ))
            })?;
            let what = format!("could not load root certificate file \"{}\"", f.display());
            let certs = X509::stack_from_pem(&pem).map_err(fail(what.clone()))?;
            let mut store = X509StoreBuilder::new().map_err(fail(what.clone()))?;
            for c in certs {
                store.add_cert(c).map_err(fail(what.clone()))?;
            }
            b.set_cert_store(store.build());
            true
        }
        root if tls.mode.verifies() => {
            let shown = match root {
                Some(RootCert::File(f)) => f.display().to_string(),
                _ => "~/.postgresql/root.crt".into(),
            };
            return Err(ConnectError::Tls(format!(
                "root certificate file \"{shown}\" does not exist; either provide the file \
                 (sslrootcert or PGSSLROOTCERT), use the system's trusted roots with \
                 sslrootcert=system, or change sslmode to disable server certificate verification"
            )));
        }
        _ => false,
    };
    if let Some(cert) = tls.cert.as_ref().filter(|c| c.exists()) {
        let what = format!(
            "could not load client certificate file \"{}\"",
            cert.display()
        );
        b.set_certificate_chain_file(cert).map_err(fail(what))?;
        let key = tls
            .key
            .clone()
            .unwrap_or_else(|| cert.with_extension("key"));
        check_key_permissions(&key)?;
        let what = format!("could not load private key file \"{}\"", key.display());
        b.set_private_key_file(&key, SslFiletype::PEM)
            .map_err(fail(what))?;
    }
    let mut c = MakeTlsConnector::new(b.build());
    let check_host = tls.mode == SslMode::VerifyFull;
    c.set_callback(move |cfg, _domain| {
        if !verify_chain {
            cfg.set_verify(SslVerifyMode::NONE);
        }
        cfg.set_verify_hostname(check_host);
        Ok(())
    });
    Ok(c)
}

/// libpq's rule for a client key: 0600 or less, or 0640 or less if owned
/// by root.
fn check_key_permissions(key: &Path) -> Result<(), ConnectError> {
    let meta = std::fs::metadata(key).map_err(|e| {
        ConnectError::Tls(format!(
            "certificate present, but not private key file \"{}\": {e}",
            key.display()
        ))
    })?;
    let allowed = if meta.uid() == 0 { 0o037 } else { 0o077 };
    if meta.mode() & allowed != 0 {
        return Err(ConnectError::Tls(format!(
            "private key file \"{}\" has group or world access; file must have permissions \
             u=rw (0600) or less if owned by the current user, or permissions u=rw,g=r (0640) \
             or less if owned by root",
            key.display()
        )));
    }
    Ok(())
}
