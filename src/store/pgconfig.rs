//! libpq's connection conventions as pure functions, so that `--db` reaches
//! exactly the server `psql` would: a `postgres://` URL (libpq's URI
//! grammar, percent-decoded, query parameters overriding the authority)
//! is merged with the `PG*` environment (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`, `PGDATABASE`, `PGPASSFILE`, `PGSSLMODE`, `PGSSLROOTCERT`,
//! ...) and libpq's defaults (the unix socket in `/var/run/postgresql`,
//! then `/tmp`; port 5432; the OS user; a database named like the user;
//! `sslmode=prefer`; `~/.pgpass`; `~/.postgresql/root.crt`). The result is
//! one [`Target`] per host to try, in order, each a `postgres::Config`
//! plus what TLS it needs and where it goes (for messages). A password file
//! is matched by [`pgpass_lookup`] with libpq's rules; reading it (and its
//! 0600 check), the environment and the TLS files is `pgconnect`'s job.
//! [`display_url`] is the one way a database URL is shown to people: it
//! never contains a password.

use postgres::config::{SslMode as DriverSslMode, TargetSessionAttrs};
use postgres::Config;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// libpq's compiled-in socket directories, tried in this order when no
/// host is given: Debian's (`/var/run/postgresql`), then upstream's.
pub const DEFAULT_SOCKET_DIRS: [&str; 2] = ["/var/run/postgresql", "/tmp"];

/// The default port.
pub const DEFAULT_PORT: u16 = 5432;

/// A URL or setting libpq would reject (never carries a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Malformed URL.
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
    /// A keyword libpq does not know.
    #[error("invalid connection parameter {0:?}")]
    Unknown(String),
    /// A keyword libpq knows that tko does not implement.
    #[error("connection parameter {0:?} is not supported by tko")]
    Unsupported(String),
    /// A value out of range or not one of the allowed words.
    #[error("invalid value for {name}: {value:?}{hint}")]
    Value {
        /// Keyword.
        name: String,
        /// The value given.
        value: String,
        /// What is allowed.
        hint: &'static str,
    },
    /// Inconsistent settings.
    #[error("{0}")]
    Invalid(String),
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain only.
    Disable,
    /// Plain first, TLS if the server insists.
    Allow,
    /// TLS if the server offers it (the default).
    Prefer,
    /// TLS, certificate checked only if a root certificate file exists.
    Require,
    /// TLS, certificate chain checked against the root certificate.
    VerifyCa,
    /// TLS, chain and host name checked.
    VerifyFull,
}

impl SslMode {
    fn parse(v: &str) -> Result<SslMode, ConfigError> {
        Ok(match v {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(ConfigError::Value {
                    name: "sslmode".into(),
                    value: v.into(),
                    hint: " (use disable, allow, prefer, require, verify-ca or verify-full)",
                })
            }
        })
    }

    /// True for `verify-ca` and `verify-full`.
    pub fn verifies(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

/// Where the server's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file (`sslrootcert`, default `~/.postgresql/root.crt`).
    File(PathBuf),
    /// `sslrootcert=system`: the system's trusted roots.
    System,
}

/// TLS settings shared by all hosts of one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The `sslmode`.
    pub mode: SslMode,
    /// The root certificate (`None`: no home directory to find the default).
    pub root: Option<RootCert>,
    /// Client certificate file (`sslcert`, default `~/.postgresql/postgresql.crt`
    /// if it exists).
    pub cert: Option<PathBuf>,
    /// Client key file (`sslkey`, default `~/.postgresql/postgresql.key`).
    pub key: Option<PathBuf>,
}

/// Where one connection attempt goes, as libpq words it in messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// TCP to a host name or address (and the address used, if given).
    Tcp {
        /// Host name (or address) as given.
        host: String,
        /// `hostaddr`, if given.
        addr: Option<IpAddr>,
        /// Port.
        port: u16,
    },
    /// A unix socket in this directory.
    Socket {
        /// Socket directory.
        dir: PathBuf,
        /// Port (part of the socket file name).
        port: u16,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Tcp { host, addr, port } => {
                write!(f, "server at \"{host}\"")?;
                if let Some(a) = addr {
                    if a.to_string() != *host {
                        write!(f, " ({a})")?;
                    }
                }
                write!(f, ", port {port}")
            }
            Place::Socket { dir, port } => {
                write!(f, "server on socket \"{}/.s.PGSQL.{port}\"", dir.display())
            }
        }
    }
}

/// One host to try: the driver configuration (password included) and what
/// the connector needs besides.
#[derive(Debug, Clone)]
pub struct Target {
    /// Driver configuration for exactly this host (TLS mode set: always
    /// `Disable` on a unix socket, which libpq never encrypts).
    pub config: Config,
    /// Where it goes, for messages.
    pub place: Place,
    /// The `sslmode` that applies (`Disable` on a socket).
    pub sslmode: SslMode,
}

/// Everything the environment contributes: variables, home directory and
/// the OS user name (libpq's default user).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// Environment variables (only `PG*` ones are read).
    pub env: HashMap<String, String>,
    /// `$HOME` (or the passwd entry's home).
    pub home: Option<PathBuf>,
    /// The effective user's login name.
    pub os_user: Option<String>,
}

/// A URL merged with the environment: everything but the password file's
/// contents, which [`Settings::targets`] takes.
#[derive(Debug, Clone)]
pub struct Settings {
    hosts: Vec<(Host, u16)>,
    /// Role name.
    pub user: String,
    /// Database name.
    pub dbname: String,
    password: Option<Secret>,
    /// The password file to consult when no password was given.
    pub passfile: Option<PathBuf>,
    /// TLS settings.
    pub tls: TlsSettings,
    connect_timeout: Option<Duration>,
    options: Option<String>,
    application_name: Option<String>,
    read_write: bool,
    keepalives: Option<bool>,
    keepalives_idle: Option<Duration>,
}

/// A password: `Debug` never shows it.
#[derive(Clone)]
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Tcp(String, Option<IpAddr>),
    Socket(PathBuf),
}

/// Keywords tko accepts, each with its environment variable (libpq's list).
const KEYWORDS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("sslmode", Some("PGSSLMODE")),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("sslsni", Some("PGSSLSNI")),
    ("gssencmode", Some("PGGSSENCMODE")),
];

/// Keywords libpq knows that tko does not implement: rejected, so tko never
/// silently connects elsewhere or weaker than psql would.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("service", "PGSERVICE"),
    ("sslcrl", "PGSSLCRL"),
    ("sslcrldir", "PGSSLCRLDIR"),
    ("sslpassword", ""),
    ("requirepeer", "PGREQUIREPEER"),
    ("require_auth", "PGREQUIREAUTH"),
    ("ssl_min_protocol_version", "PGSSLMINPROTOCOLVERSION"),
    ("ssl_max_protocol_version", "PGSSLMAXPROTOCOLVERSION"),
    ("krbsrvname", "PGKRBSRVNAME"),
    ("gsslib", "PGGSSLIB"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("load_balance_hosts", "PGLOADBALANCEHOSTS"),
    ("sslnegotiation", "PGSSLNEGOTIATION"),
    ("keepalives_interval", ""),
    ("keepalives_count", ""),
    ("tcp_user_timeout", ""),
    ("replication", ""),
    ("sslcompression", ""),
    ("sslcertmode", "PGSSLCERTMODE"),
    ("gssdelegation", "PGGSSDELEGATION"),
];

/// Splits a `postgres://` / `postgresql://` URL into libpq keyword/value
/// pairs, in order (later pairs override earlier ones).
pub fn parse_url(url: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or_else(|| ConfigError::Url("expected postgres:// or postgresql://".into()))?;
    let mut out = Vec::new();
    // libpq: credentials end at the first '@' before any '/'.
    let (userinfo, rest) = match rest.find(['@', '/']) {
        Some(i) if rest.as_bytes()[i] == b'@' => (Some(&rest[..i]), &rest[i + 1..]),
        _ => (None, rest),
    };
    if let Some(ui) = userinfo {
        let (user, password) = match ui.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (ui, None),
        };
        if !user.is_empty() {
            out.push(("user".into(), decode(user, "the user name")?));
        }
        if let Some(p) = password.filter(|p| !p.is_empty()) {
            out.push(("password".into(), decode(p, "the password")?));
        }
    }
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (hostspec, rest) = rest.split_at(host_end);
    if !hostspec.is_empty() {
        let (mut hosts, mut ports) = (Vec::new(), Vec::new());
        for part in hostspec.split(',') {
            let (host, port) = if let Some(v6) = part.strip_prefix('[') {
                let (h, after) = v6.split_once(']').ok_or_else(|| {
                    ConfigError::Url(format!("missing \"]\" in IPv6 host address {part:?}"))
                })?;
                let port = match after {
                    "" => "",
                    p => p.strip_prefix(':').ok_or_else(|| {
                        ConfigError::Url(format!("unexpected {p:?} after IPv6 host address"))
                    })?,
                };
                (h.to_string(), port)
            } else {
                let (h, p) = part.split_once(':').unwrap_or((part, ""));
                (decode(h, "a host name")?, p)
            };
            hosts.push(host);
            ports.push(decode(port, "a port")?);
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            out.push(("host".into(), hosts.join(",")));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            out.push(("port".into(), ports.join(",")));
        }
    }
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if let Some(db) = path.strip_prefix('/').filter(|d| !d.is_empty()) {
        out.push(("dbname".into(), decode(db, "the database name")?));
    }
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ConfigError::Url(format!(
                "missing \"=\" in query parameter {:?}",
                redact_pair(pair)
            ))
        })?;
        let key = decode(k, "a parameter name")?;
        let what = if is_secret(&key) {
            "a password"
        } else {
            "a parameter value"
        };
        let value = decode(v, what)?;
        if key == "ssl" && value == "true" {
            out.push(("sslmode".into(), "require".into()));
        } else {
            out.push((key, value));
        }
    }
    Ok(out)
}

/// Percent-decoding as libpq does it (no `+` for space, no `%00`).
fn decode(s: &str, what: &str) -> Result<String, ConfigError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|&c| c != 0)
                .ok_or_else(|| ConfigError::Url(format!("invalid percent-encoding in {what}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConfigError::Url(format!("{what} is not UTF-8")))
}

fn is_secret(key: &str) -> bool {
    key == "password" || key == "sslpassword"
}

/// `k=v` with `v` hidden when `k` names a secret (for messages).
fn redact_pair(pair: &str) -> String {
    match pair.split_once('=') {
        Some((k, _)) if decode(k, "").is_ok_and(|k| is_secret(&k)) => format!("{k}=***"),
        _ => pair.to_string(),
    }
}

impl Settings {
    /// Merges the URL's parameters with the environment and libpq's
    /// defaults.
    pub fn resolve(url: &str, inputs: &Inputs) -> Result<Settings, ConfigError> {
        let mut p: HashMap<String, String> = HashMap::new();
        for (k, v) in parse_url(url)? {
            check_keyword(&k)?;
            p.insert(k, v);
        }
        for (name, var) in UNSUPPORTED {
            if !var.is_empty() && inputs.env.get(*var).is_some_and(|v| !v.is_empty()) {
                return Err(ConfigError::Unsupported(format!("{name} (from {var})")));
            }
        }
        for (k, var) in KEYWORDS {
            if let Some(v) = var.and_then(|var| inputs.env.get(var)) {
                if !v.is_empty() {
                    p.entry((*k).to_string()).or_insert_with(|| v.clone());
                }
            }
        }
        let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let home = inputs.home.as_deref();

        let user = match get("user") {
            Some(u) => u.to_string(),
            None => inputs.os_user.clone().ok_or_else(|| {
                ConfigError::Invalid(
                    "cannot tell which user to connect as: set PGUSER or put user@ in the URL"
                        .into(),
                )
            })?,
        };
        let dbname = get("dbname").unwrap_or(&user).to_string();
        let hosts = hosts(get("host"), get("hostaddr"), get("port"))?;

        if let Some(m) = get("gssencmode").filter(|m| *m == "require") {
            return Err(ConfigError::Value {
                name: "gssencmode".into(),
                value: m.into(),
                hint: " (tko does not do GSSAPI encryption; use TLS)",
            });
        }
        if let Some(e) = get("client_encoding")
            .filter(|e| !matches!(e.to_ascii_uppercase().as_str(), "UTF8" | "UTF-8" | "AUTO"))
        {
            return Err(ConfigError::Value {
                name: "client_encoding".into(),
                value: e.into(),
                hint: " (tko always uses UTF8)",
            });
        }

        let mode = SslMode::parse(get("sslmode").unwrap_or("prefer"))?;
        let pgdir = home.map(|h| h.join(".postgresql"));
        let root = match get("sslrootcert") {
            Some("system") => Some(RootCert::System),
            Some(f) => Some(RootCert::File(f.into())),
            None => pgdir.as_ref().map(|d| RootCert::File(d.join("root.crt"))),
        };
        if root == Some(RootCert::System) && mode != SslMode::VerifyFull {
            return Err(ConfigError::Invalid(format!(
                "weak sslmode \"{}\" may not be used with sslrootcert=system (use \"verify-full\")",
                get("sslmode").unwrap_or("prefer")
            )));
        }
        let tls = TlsSettings {
            mode,
            root,
            cert: get("sslcert")
                .map(PathBuf::from)
                .or_else(|| pgdir.as_ref().map(|d| d.join("postgresql.crt"))),
            key: get("sslkey")
                .map(PathBuf::from)
                .or_else(|| pgdir.as_ref().map(|d| d.join("postgresql.key"))),
        };

        let read_write = match get("target_session_attrs").unwrap_or("any") {
            "any" => false,
            "read-write" => true,
            v => {
                return Err(ConfigError::Value {
                    name: "target_session_attrs".into(),
                    value: v.into(),
                    hint: " (tko supports any and read-write)",
                })
            }
        };
        Ok(Settings {
            hosts,
            user,
            dbname,
            password: get("password").map(|p| Secret(p.to_string())),
            passfile: get("passfile")
                .map(PathBuf::from)
                .or_else(|| home.map(|h| h.join(".pgpass"))),
            tls,
            connect_timeout: get("connect_timeout")
                .map(|v| seconds("connect_timeout", v))
                .transpose()?
                .filter(|d| !d.is_zero())
                // libpq: a timeout under 2 s is raised to 2 s.
                .map(|d| d.max(Duration::from_secs(2))),
            options: get("options").map(str::to_string),
            application_name: get("application_name")
                .or_else(|| get("fallback_application_name"))
                .map(str::to_string),
            read_write,
            keepalives: get("keepalives").map(|v| v != "0"),
            keepalives_idle: get("keepalives_idle")
                .map(|v| seconds("keepalives_idle", v))
                .transpose()?,
        })
    }

    /// True when a password was given (URL, parameter or `PGPASSWORD`), so
    /// the password file is not consulted.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// One driver configuration per host to try, in order. `pgpass` is the
    /// password file's contents (if it may be used).
    pub fn targets(&self, pgpass: Option<&str>) -> Vec<Target> {
        self.hosts
            .iter()
            .map(|(host, port)| {
                let mut c = Config::new();
                c.user(&self.user).dbname(&self.dbname).port(*port);
                let (place, pass_host, sslmode) = match host {
                    Host::Tcp(name, addr) => {
                        if !name.is_empty() {
                            c.host(name);
                        }
                        if let Some(a) = addr {
                            c.hostaddr(*a);
                        }
                        let shown = if name.is_empty() {
                            addr.map(|a| a.to_string()).unwrap_or_default()
                        } else {
                            name.clone()
                        };
                        let place = Place::Tcp {
                            host: shown.clone(),
                            addr: *addr,
                            port: *port,
                        };
                        (place, shown, self.tls.mode)
                    }
                    Host::Socket(dir) => {
                        c.host_path(dir);
                        let pass_host = if DEFAULT_SOCKET_DIRS.iter().any(|d| Path::new(d) == dir) {
                            "localhost".to_string()
                        } else {
                            dir.display().to_string()
                        };
                        let place = Place::Socket {
                            dir: dir.clone(),
                            port: *port,
                        };
                        (place, pass_host, SslMode::Disable)
                    }
                };
                c.ssl_mode(match sslmode {
                    SslMode::Disable | SslMode::Allow => DriverSslMode::Disable,
                    SslMode::Prefer => DriverSslMode::Prefer,
                    _ => DriverSslMode::Require,
                });
                let password = self.password.as_ref().map(|p| p.0.clone()).or_else(|| {
                    pgpass.and_then(|f| {
                        pgpass_lookup(f, &pass_host, &port.to_string(), &self.dbname, &self.user)
                    })
                });
                if let Some(pw) = password {
                    c.password(pw);
                }
                if let Some(t) = self.connect_timeout {
                    c.connect_timeout(t);
                }
                if let Some(o) = &self.options {
                    c.options(o);
                }
                if let Some(a) = &self.application_name {
                    c.application_name(a);
                }
                if self.read_write {
                    c.target_session_attrs(TargetSessionAttrs::ReadWrite);
                }
                if let Some(k) = self.keepalives {
                    c.keepalives(k);
                }
                if let Some(k) = self.keepalives_idle {
                    c.keepalives_idle(k);
                }
                Target {
                    config: c,
                    place,
                    sslmode,
                }
            })
            .collect()
    }
}

fn check_keyword(k: &str) -> Result<(), ConfigError> {
    if KEYWORDS.iter().any(|(name, _)| *name == k) {
        Ok(())
    } else if UNSUPPORTED.iter().any(|(name, _)| *name == k) {
        Err(ConfigError::Unsupported(k.into()))
    } else {
        Err(ConfigError::Unknown(k.into()))
    }
}

fn seconds(name: &str, v: &str) -> Result<Duration, ConfigError> {
    v.trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| ConfigError::Value {
            name: name.into(),
            value: v.into(),
            hint: " (whole seconds)",
        })
}

/// libpq's host list: `host`, `hostaddr` and `port` are comma lists; one
/// port serves all hosts; an empty host means the default socket
/// directories (or `hostaddr`).
fn hosts(
    host: Option<&str>,
    hostaddr: Option<&str>,
    port: Option<&str>,
) -> Result<Vec<(Host, u16)>, ConfigError> {
    let names: Vec<&str> = host.map_or_else(Vec::new, |h| h.split(',').collect());
    let addrs: Vec<&str> = hostaddr.map_or_else(Vec::new, |h| h.split(',').collect());
    let n = names.len().max(addrs.len()).max(1);
    if !names.is_empty() && !addrs.is_empty() && names.len() != addrs.len() {
        return Err(ConfigError::Invalid(format!(
            "could not match {} host names to {} hostaddr values",
            names.len(),
            addrs.len()
        )));
    }
    let ports: Vec<&str> = port.map_or_else(Vec::new, |p| p.split(',').collect());
    if ports.len() > 1 && ports.len() != n {
        return Err(ConfigError::Invalid(format!(
            "could not match {} port numbers to {n} hosts",
            ports.len()
        )));
    }
    let mut out = Vec::new();
    for i in 0..n {
        let p = match ports.len() {
            0 => "",
            1 => ports[0],
            _ => ports[i],
        }
        .trim();
        let port = if p.is_empty() {
            DEFAULT_PORT
        } else {
            p.parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| ConfigError::Value {
                    name: "port".into(),
                    value: p.into(),
                    hint: " (1 to 65535)",
                })?
        };
        let name = names.get(i).copied().unwrap_or("").trim();
        let addr = match addrs.get(i).map(|a| a.trim()).filter(|a| !a.is_empty()) {
            Some(a) => Some(a.parse::<IpAddr>().map_err(|_| ConfigError::Value {
                name: "hostaddr".into(),
                value: a.into(),
                hint: " (a numeric IP address)",
            })?),
            None => None,
        };
        if name.starts_with('/') {
            out.push((Host::Socket(name.into()), port));
        } else if !name.is_empty() || addr.is_some() {
            out.push((Host::Tcp(name.into(), addr), port));
        } else {
            for d in DEFAULT_SOCKET_DIRS {
                out.push((Host::Socket(d.into()), port));
            }
        }
    }
    Ok(out)
}

/// The password for (host, port, database, user) from a `.pgpass` file's
/// contents: the first line whose four fields match (`*` matches anything;
/// `\` escapes `:` and `\`); `#` lines are comments. For a unix socket in a
/// default directory, `host` is `localhost` (libpq's rule).
pub fn pgpass_lookup(
    contents: &str,
    host: &str,
    port: &str,
    db: &str,
    user: &str,
) -> Option<String> {
    let want = [host, port, db, user];
    contents.lines().find_map(|line| {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut chars = line.chars();
        for w in want {
            let (mut raw, mut value) = (String::new(), String::new());
            loop {
                match chars.next() {
                    None => return None,
                    Some(':') => break,
                    Some('\\') => {
                        raw.push('\\');
                        if let Some(c) = chars.next() {
                            raw.push(c);
                            value.push(c);
                        }
                    }
                    Some(c) => {
                        raw.push(c);
                        value.push(c);
                    }
                }
            }
            if raw != "*" && value != w {
                return None;
            }
        }
        let mut pw = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => pw.extend(chars.next()),
                c => pw.push(c),
            }
        }
        Some(pw)
    })
}

/// A database URL for people: the password (in the authority or as a
/// `password=`/`sslpassword=` parameter) removed; anything else as given.
/// Every message, summary and error that names a database uses this.
pub fn display_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return redact_words(url);
    };
    let (head, rest) = url.split_at(scheme_end + 3);
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    // Hide more rather than less: everything up to the last '@' before the
    // query is credentials, and any ':' in it starts a password.
    let before_query = match before_query.rfind('@') {
        Some(at) => {
            let (cred, after) = before_query.split_at(at);
            match cred.split_once(':') {
                Some((user, _)) => format!("{user}{after}"),
                None => before_query.to_string(),
            }
        }
        None => before_query.to_string(),
    };
    let mut out = format!("{head}{before_query}");
    if let Some(q) = query {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|pair| {
                let key = pair.split('=').next().unwrap_or_default();
                !decode(key, "").is_ok_and(|k| is_secret(k.trim()))
                    && !key.to_ascii_lowercase().contains("password")
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

/// A non-URL string (a mistyped `--db`, a key=value conninfo) with any
/// `password=value` removed.
fn redact_words(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    match lower.find("password") {
        None => s.to_string(),
        Some(i) => format!("{}password=***", &s[..i]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(env: &[(&str, &str)]) -> Inputs {
        Inputs {
            env: env
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            home: Some("/home/al".into()),
            os_user: Some("al".into()),
        }
    }

    fn places(url: &str, env: &[(&str, &str)]) -> Vec<String> {
        Settings::resolve(url, &inputs(env))
            .unwrap()
            .targets(None)
            .iter()
            .map(|t| t.place.to_string())
            .collect()
    }

    #[test]
    fn no_host_means_the_default_sockets_os_user_and_database() {
        let s = Settings::resolve("postgres:///tko", &inputs(&[])).unwrap();
        assert_eq!((s.user.as_str(), s.dbname.as_str()), ("al", "tko"));
        assert_eq!(
            places("postgres:///tko", &[]),
            [
                "server on socket \"/var/run/postgresql/.s.PGSQL.5432\"",
                "server on socket \"/tmp/.s.PGSQL.5432\""
            ]
        );
        let s = Settings::resolve("postgresql://", &inputs(&[])).unwrap();
        assert_eq!(s.dbname, "al");
        assert_eq!(s.passfile, Some("/home/al/.pgpass".into()));
        assert_eq!(s.tls.mode, SslMode::Prefer);
        assert_eq!(
            s.tls.root,
            Some(RootCert::File("/home/al/.postgresql/root.crt".into()))
        );
    }

    #[test]
    fn environment_fills_what_the_url_leaves_out() {
        let env = [
            ("PGHOST", "db.lab"),
            ("PGPORT", "6543"),
            ("PGUSER", "bob"),
            ("PGDATABASE", "results"),
            ("PGPASSWORD", "pw"),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/etc/ca.pem"),
            ("PGPASSFILE", "/etc/pgpass"),
        ];
        let s = Settings::resolve("postgres://", &inputs(&env)).unwrap();
        assert_eq!((s.user.as_str(), s.dbname.as_str()), ("bob", "results"));
        assert_eq!(s.tls.mode, SslMode::VerifyFull);
        assert_eq!(s.tls.root, Some(RootCert::File("/etc/ca.pem".into())));
        assert_eq!(s.passfile, Some("/etc/pgpass".into()));
        let t = &s.targets(None)[0];
        assert_eq!(t.place.to_string(), "server at \"db.lab\", port 6543");
        assert_eq!(t.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(t.config.get_ssl_mode(), DriverSslMode::Require);
        // The URL wins over the environment, query parameters over the
        // authority.
        let s = Settings::resolve(
            "postgres://carol:x@h1:1/db1?host=h2&port=2&sslmode=disable&dbname=db2",
            &inputs(&env),
        )
        .unwrap();
        assert_eq!((s.user.as_str(), s.dbname.as_str()), ("carol", "db2"));
        assert_eq!(s.tls.mode, SslMode::Disable);
        let t = &s.targets(None)[0];
        assert_eq!(t.place.to_string(), "server at \"h2\", port 2");
        assert_eq!(t.config.get_password(), Some(&b"x"[..]));
    }

    #[test]
    fn hosts_ports_sockets_and_percent_encoding() {
        assert_eq!(
            places("postgresql://%2Fsrv%2Fpg:5433/d", &[]),
            ["server on socket \"/srv/pg/.s.PGSQL.5433\""]
        );
        assert_eq!(
            places("postgres://a:1,[::1]:2,/d", &[]),
            [
                "server at \"a\", port 1",
                "server at \"::1\", port 2",
                "server on socket \"/var/run/postgresql/.s.PGSQL.5432\"",
                "server on socket \"/tmp/.s.PGSQL.5432\""
            ]
        );
        assert_eq!(
            places("postgres:///d?host=h&hostaddr=10.0.0.1", &[]),
            ["server at \"h\" (10.0.0.1), port 5432"]
        );
        let s = Settings::resolve("postgres://u%40x:p%3Aw@h/d%20b", &inputs(&[])).unwrap();
        assert_eq!((s.user.as_str(), s.dbname.as_str()), ("u@x", "d b"));
        assert_eq!(s.targets(None)[0].config.get_password(), Some(&b"p:w"[..]));
    }

    #[test]
    fn sockets_never_use_tls_and_ssl_true_means_require() {
        let s = Settings::resolve("postgres:///d?host=/s&ssl=true", &inputs(&[])).unwrap();
        assert_eq!(s.tls.mode, SslMode::Require);
        let t = &s.targets(None)[0];
        assert_eq!(t.sslmode, SslMode::Disable);
        assert_eq!(t.config.get_ssl_mode(), DriverSslMode::Disable);
    }

    #[test]
    fn bad_settings_are_rejected_without_showing_a_password() {
        let bad = |url: &str, env: &[(&str, &str)]| {
            Settings::resolve(url, &inputs(env))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("postgres://h/d?frob=1", &[]).contains("\"frob\""));
        assert!(bad("postgres://h/d?service=x", &[]).contains("not supported"));
        assert!(bad("postgres://h/d", &[("PGSERVICE", "x")]).contains("PGSERVICE"));
        assert!(bad("postgres://h:99999/d", &[]).contains("port"));
        assert!(bad("postgres://h/d?sslmode=on", &[]).contains("verify-full"));
        assert!(
            bad("postgres://h/d?sslrootcert=system&sslmode=require", &[]).contains("verify-full")
        );
        assert!(bad("postgres://a,b/d?port=1,2,3", &[]).contains("3 port numbers"));
        let e = bad("postgres://u:s3cr%zzet@h/d", &[]);
        assert!(e.contains("password") && !e.contains("s3cr"), "{e}");
        let e = bad("postgres://h/d?password", &[]);
        assert!(!e.contains("password=s"), "{e}");
        let e = bad("postgres://h/d?password=%zzs3cret", &[]);
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn pgpass_matches_like_libpq() {
        let f = "# comment\n\
                 other:5432:*:al:wrong\n\
                 localhost:5432:tko:al:sock\\:pw\r\n\
                 db.lab:*:*:al:tcp\\\\pw:tail\n\
                 *:*:*:*:any\n";
        assert_eq!(
            pgpass_lookup(f, "localhost", "5432", "tko", "al").as_deref(),
            Some("sock:pw")
        );
        assert_eq!(
            pgpass_lookup(f, "db.lab", "1", "x", "al").as_deref(),
            Some("tcp\\pw:tail")
        );
        assert_eq!(
            pgpass_lookup(f, "else", "1", "x", "bo").as_deref(),
            Some("any")
        );
        assert_eq!(
            pgpass_lookup("a\\:b:1:d:u:pw\n", "a:b", "1", "d", "u").as_deref(),
            Some("pw")
        );
        assert_eq!(pgpass_lookup("\\*:1:d:u:pw\n", "h", "1", "d", "u"), None);
        assert_eq!(pgpass_lookup("h:1:d:u\n", "h", "1", "d", "u"), None);
        // A socket in a default directory is "localhost"; others by path.
        let s = Settings::resolve("postgres:///tko", &inputs(&[])).unwrap();
        let t = s.targets(Some("localhost:5432:tko:al:pw\n"));
        assert!(t
            .iter()
            .all(|t| t.config.get_password() == Some(&b"pw"[..])));
        let s = Settings::resolve("postgres:///tko?host=/srv", &inputs(&[])).unwrap();
        assert_eq!(
            s.targets(Some("localhost:5432:tko:al:pw\n"))[0]
                .config
                .get_password(),
            None
        );
        let t = s.targets(Some("/srv:5432:tko:al:pw2\n"));
        assert_eq!(t[0].config.get_password(), Some(&b"pw2"[..]));
        // A given password wins over the file.
        let s = Settings::resolve("postgres:///tko", &inputs(&[("PGPASSWORD", "env")])).unwrap();
        assert!(s.has_password());
        let t = s.targets(Some("*:*:*:*:file\n"));
        assert_eq!(t[0].config.get_password(), Some(&b"env"[..]));
    }

    #[test]
    fn debug_output_hides_the_password() {
        let s = Settings::resolve("postgres://u:s3cret@h/d", &inputs(&[])).unwrap();
        let t = s.targets(None);
        let shown = format!("{s:?} {t:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn display_url_never_shows_a_password() {
        for (url, shown) in [
            ("postgresql://u:secret@h/db", "postgresql://u@h/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://u:se@cr/et@h/db", "postgres://u@h/db"),
            (
                "postgres://u:p@h/db?password=secret&sslmode=require",
                "postgres://u@h/db?sslmode=require",
            ),
            ("postgres:///db?pass%77ord=secret", "postgres:///db"),
            (
                "postgres:///db?host=/s&sslpassword=secret&PASSWORD=secret",
                "postgres:///db?host=/s",
            ),
            ("sqlite:tko.db", "sqlite:tko.db"),
            ("host=h password=secret", "host=h password=***"),
        ] {
            assert_eq!(display_url(url), shown, "{url}");
        }
    }
}
