//! Connecting to PostgreSQL as psql does (libpq URL, `PG*` environment,
//! `.pgpass`, the unix socket), TLS (`sslmode` up to `verify-full` with a
//! CA made here), errors that say where they tried, passwords that never
//! reach any output, and read-only commands that never create a warehouse.
//! Runs against one throwaway server started with TLS and password
//! authentication (`support::pg::local_server`), and real `tko` processes
//! with a controlled environment.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use support::pg::{local_database, local_server, PW_SECRET, PW_USER};
use support::TestResult;
use tko::store::pgconfig::Inputs;
use tko::store::pgconnect::Connector;

/// Inputs with only `env`, a home directory and the user `tko`.
fn inputs(home: &Path, env: &[(&str, &str)]) -> Inputs {
    Inputs {
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect::<HashMap<_, _>>(),
        home: Some(home.to_path_buf()),
        os_user: Some("tko".into()),
    }
}

/// Connects with `url` and says whether the session is encrypted.
fn ssl_in_use(url: &str, home: &Path) -> Result<bool, String> {
    let c = Connector::with_inputs(url, &inputs(home, &[])).map_err(|e| e.to_string())?;
    let mut client = c.connect().map_err(|e| e.to_string())?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

fn tcp(host: &str, query: &str) -> String {
    format!(
        "postgres://tko@{host}:{}/postgres?{query}",
        local_server().port
    )
}

#[test]
fn tls_modes_against_a_server_with_a_certificate_made_here() -> TestResult {
    let home = tempfile::tempdir()?;
    let l = local_server();
    let ca = l.ca.display().to_string();
    let other = l.other_ca.display().to_string();
    assert_eq!(
        ssl_in_use(&tcp("127.0.0.1", "sslmode=disable"), home.path()),
        Ok(false)
    );
    assert_eq!(
        ssl_in_use(&tcp("127.0.0.1", "sslmode=prefer"), home.path()),
        Ok(true)
    );
    assert_eq!(
        ssl_in_use(&tcp("127.0.0.1", "sslmode=require"), home.path()),
        Ok(true)
    );
    assert_eq!(
        ssl_in_use(&tcp("127.0.0.1", "ssl=true"), home.path()),
        Ok(true)
    );
    assert_eq!(
        ssl_in_use(
            &tcp(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={ca}")
            ),
            home.path()
        ),
        Ok(true)
    );
    // verify-ca checks the chain, not the name.
    assert_eq!(
        ssl_in_use(
            &tcp("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}")),
            home.path()
        ),
        Ok(true)
    );
    // The certificate names localhost only.
    let e = ssl_in_use(
        &tcp(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        home.path(),
    )
    .unwrap_err();
    assert!(
        e.contains("server at \"127.0.0.1\", port") && e.contains("certificate verify failed"),
        "{e}"
    );
    assert!(
        e.contains("the server's certificate is not for host \"127.0.0.1\" (sslmode=verify-full")
            && e.contains("IP address mismatch"),
        "{e}"
    );
    // Signed by another CA.
    let e = ssl_in_use(
        &tcp(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={other}"),
        ),
        home.path(),
    )
    .unwrap_err();
    assert!(
        e.contains("server at \"localhost\", port")
            && e.contains(&format!(
                "the server's certificate is not signed by the root certificate file \"{other}\""
            )),
        "{e}"
    );
    // No root certificate at all: libpq's message, before connecting.
    let e = ssl_in_use(&tcp("localhost", "sslmode=verify-full"), home.path()).unwrap_err();
    assert!(
        e.contains("root certificate file") && e.contains("does not exist"),
        "{e}"
    );
    // libpq: with ~/.postgresql/root.crt present, require checks the chain.
    std::fs::create_dir(home.path().join(".postgresql"))?;
    std::fs::copy(&l.other_ca, home.path().join(".postgresql/root.crt"))?;
    let e = ssl_in_use(&tcp("localhost", "sslmode=require"), home.path()).unwrap_err();
    assert!(e.contains("certificate verify failed"), "{e}");
    std::fs::copy(&l.ca, home.path().join(".postgresql/root.crt"))?;
    assert_eq!(
        ssl_in_use(&tcp("localhost", "sslmode=verify-full"), home.path()),
        Ok(true)
    );
    // A unix socket is never encrypted, whatever sslmode says (libpq).
    let sock = format!(
        "postgres:///postgres?host={}&port={}&user=tko&sslmode=require",
        l.socket_dir.display(),
        l.port
    );
    assert_eq!(ssl_in_use(&sock, home.path()), Ok(false));
    // sslmode=allow: plain first.
    assert_eq!(
        ssl_in_use(&tcp("127.0.0.1", "sslmode=allow"), home.path()),
        Ok(false)
    );
    // Hosts are tried in order; a failure names each place tried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let two = format!(
        "postgres://tko@127.0.0.1:{closed},localhost:{}/postgres",
        l.port
    );
    assert_eq!(ssl_in_use(&two, home.path()), Ok(true));
    let e = ssl_in_use(
        &format!("postgres://tko@127.0.0.1:{closed},/postgres?host=127.0.0.1,/nonexistent"),
        home.path(),
    )
    .unwrap_err();
    assert!(
        e.contains(&format!("connection to server at \"127.0.0.1\", port {closed} failed"))
            && e.contains("Connection refused")
            // An empty port in the list is the default.
            && e.contains("connection to server on socket \"/nonexistent/.s.PGSQL.5432\" failed"),
        "{e}"
    );
    Ok(())
}

/// A `tko` process with only the given environment (plus PATH and a
/// private HOME), run in `cwd`.
fn tko(args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> std::io::Result<Output> {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tko"));
    c.args(args).current_dir(cwd).env_clear().env("HOME", cwd);
    if let Some(p) = std::env::var_os("PATH") {
        c.env("PATH", p);
    }
    c.envs(env.iter().copied()).output()
}

fn text(o: &Output) -> String {
    format!(
        "[exit {:?}]\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn example(to: &Path) -> std::io::Result<()> {
    fn copy(from: &Path, to: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                copy(&e.path(), &to.join(e.file_name()))?;
            } else {
                std::fs::copy(e.path(), to.join(e.file_name()))?;
            }
        }
        Ok(())
    }
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/example-results"),
        to,
    )
}

#[test]
fn a_password_never_appears_in_any_output() -> TestResult {
    let dir = tempfile::tempdir()?;
    example(&dir.path().join("results"))?;
    let l = local_server();
    let db = local_database();
    let url = format!(
        "postgres://{PW_USER}:{PW_SECRET}@127.0.0.1:{}/{db}?sslmode=require",
        l.port
    );
    let query_url = format!(
        "postgresql://{PW_USER}@127.0.0.1:{}/{db}?password={PW_SECRET}",
        l.port
    );
    let cwd = dir.path();
    let mut outputs = Vec::new();
    let mut run = |args: &[&str], env: &[(&str, &str)]| -> std::io::Result<Output> {
        let o = tko(args, cwd, env)?;
        outputs.push(text(&o));
        Ok(o)
    };
    let o = run(&["db", "init", "--db", &url], &[])?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("applied schema version"), "{}", text(&o));
    let o = run(&["load", "--level", "2", "results", "--db", &url], &[])?;
    assert_ne!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("written to postgres://alice@127.0.0.1"),
        "{}",
        text(&o)
    );
    let o = run(
        &["backfill", "--level", "2", "results"],
        &[("TKO_DB", &url)],
    )?;
    assert_ne!(o.status.code(), Some(2), "{}", text(&o));
    for args in [
        &["db", "status"][..],
        &["stats"],
        &["export", "tests"],
        &["summary", "123-alice/host1"],
    ] {
        let o = run(args, &[("TKO_DB", &query_url)])?;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let o = run(&[args, &["--db", &url][..]].concat(), &[])?;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    // Errors: a wrong database, a closed port, an unknown parameter, a
    // wrong password, a mistyped URL.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    for (bad, names) in [
        (url.replace(&db, "no_such_db"), "no_such_db".to_string()),
        (
            url.replace(&l.port.to_string(), &closed.to_string()),
            format!("\"127.0.0.1\", port {closed}"),
        ),
        (format!("{url}&frob=1"), "frob".into()),
        (
            url.replace(PW_SECRET, &format!("{PW_SECRET}x")),
            "password authentication failed".into(),
        ),
        (
            url.replace("postgres://", "postgress://"),
            "unsupported database URL".into(),
        ),
        (
            format!("host=localhost password={PW_SECRET}"),
            "unsupported database URL".into(),
        ),
    ] {
        for o in [
            run(&["stats", "--db", &bad], &[])?,
            run(&["load", "results", "--db", &bad], &[])?,
            run(&["db", "init"], &[("TKO_DB", &bad)])?,
        ] {
            assert_eq!(o.status.code(), Some(2), "{}", text(&o));
            assert!(text(&o).contains(&names), "{names}: {}", text(&o));
        }
    }
    for args in [
        &["--help"][..],
        &["load", "--help"],
        &["stats", "--help"],
        &["db", "-h"],
    ] {
        let o = run(args, &[("TKO_DB", &url)])?;
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        assert!(
            args.len() == 1 || text(&o).contains("[env: TKO_DB]"),
            "{}",
            text(&o)
        );
    }
    // A query that fails after the warehouse was opened (here: a table
    // gone): every read command's error names the warehouse, never its
    // password.
    let mut admin = postgres::Client::connect(
        &format!(
            "postgresql:///{db}?host={}&port={}&user=tko",
            l.socket_dir.display(),
            l.port
        ),
        postgres::NoTls,
    )?;
    admin.batch_execute(
        "ALTER TABLE tko_tests RENAME TO tko_tests_gone; \
         ALTER TABLE tko_diagnostics RENAME TO tko_diagnostics_gone",
    )?;
    for args in [
        &["history", "dbench"][..],
        &["diagnostics"],
        &["stats", "--flaky"],
        &["summary", "--running"],
        &["compare", "123-alice/host1", "300-frank/host3"],
    ] {
        let o = run(&[args, &["--db", &url][..]].concat(), &[])?;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("postgres://alice@127.0.0.1"),
            "{args:?}: {}",
            text(&o)
        );
    }
    for o in &outputs {
        assert!(!o.contains(PW_SECRET), "password shown:\n{o}");
    }
    assert!(outputs.len() > 30);
    Ok(())
}

#[test]
fn pgpassword_pgpass_and_pg_variables_as_psql_uses_them() -> TestResult {
    let home = tempfile::tempdir()?;
    let cwd = home.path();
    let l = local_server();
    let db = local_database();
    let port = l.port.to_string();
    let sock = l.socket_dir.display().to_string();
    let no_pw = format!("postgres://{PW_USER}@127.0.0.1:{port}/{db}");

    // No password anywhere: the error says so, and where.
    let o = tko(&["db", "init", "--db", &no_pw], cwd, &[])?;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!(
            "connection to server at \"127.0.0.1\", port {port} failed"
        )) && text(&o).contains("asked for a password"),
        "{}",
        text(&o)
    );
    // PGPASSWORD.
    let o = tko(
        &["db", "init", "--db", &no_pw],
        cwd,
        &[("PGPASSWORD", PW_SECRET)],
    )?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // ~/.pgpass, 0600: used; group-readable: ignored with libpq's warning.
    let pgpass = cwd.join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("# tko\nother:*:*:*:wrong\n127.0.0.1:{port}:{db}:{PW_USER}:{PW_SECRET}\n"),
    )?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600))?;
    let o = tko(&["db", "status", "--db", &no_pw], cwd, &[])?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644))?;
    let o = tko(&["db", "status", "--db", &no_pw], cwd, &[])?;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("has group or world access"),
        "{}",
        text(&o)
    );
    // PGPASSFILE, and a socket directory that is not a default one is
    // matched by its path.
    let passfile = cwd.join("pw");
    std::fs::write(
        &passfile,
        format!("{sock}:{port}:*:{PW_USER}:{PW_SECRET}\n"),
    )?;
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600))?;
    let pf = passfile.display().to_string();
    // `postgres://` with everything from PG* (the unix socket).
    let env = [
        ("PGHOST", sock.as_str()),
        ("PGPORT", port.as_str()),
        ("PGUSER", PW_USER),
        ("PGDATABASE", db.as_str()),
        ("PGPASSFILE", pf.as_str()),
    ];
    let o = tko(&["db", "status", "--db", "postgres://"], cwd, &env)?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = tko(
        &["db", "status", "--db", &format!("postgres:///{db}")],
        cwd,
        &env,
    )?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The URL wins over the environment: a database that does not exist.
    let o = tko(&["db", "status", "--db", "postgres:///nope"], cwd, &env)?;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("server on socket \"{sock}/.s.PGSQL.{port}\""))
            && text(&o).contains("\"nope\""),
        "{}",
        text(&o)
    );
    // PGHOST over TCP with PGSSLMODE and PGSSLROOTCERT.
    let ca = l.ca.display().to_string();
    let env = [
        ("PGHOST", "localhost"),
        ("PGPORT", port.as_str()),
        ("PGUSER", PW_USER),
        ("PGDATABASE", db.as_str()),
        ("PGPASSWORD", PW_SECRET),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca.as_str()),
    ];
    let o = tko(&["db", "status", "--db", "postgres://"], cwd, &env)?;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = tko(&["db", "status", "--db", "postgres://127.0.0.1"], cwd, &env)?;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("certificate verify failed"),
        "{}",
        text(&o)
    );
    Ok(())
}

#[test]
fn read_commands_never_create_a_warehouse() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cwd = dir.path();
    let expect = |o: &Output, at: &str| {
        assert_eq!(o.status.code(), Some(2), "{}", text(o));
        let want = format!("no tko warehouse at {at} (load one with `tko load` or `tko backfill`)");
        assert!(text(o).contains(&want), "{}", text(o));
    };
    let l = local_server();
    let db = local_database();
    let pg = format!("postgres://{PW_USER}:{PW_SECRET}@127.0.0.1:{}/{db}", l.port);
    let pg_shown = format!("postgres://{PW_USER}@127.0.0.1:{}/{db}", l.port);
    for args in [
        &["stats"][..],
        &["export", "tests"],
        &["export", "perf", "--out", "x.csv"],
        &["summary", "123-alice/host1"],
        &["db", "status"],
    ] {
        expect(&tko(args, cwd, &[])?, "sqlite:tko.db");
        assert!(!cwd.join("tko.db").exists(), "{args:?} created tko.db");
        expect(
            &tko(args, cwd, &[("TKO_DB", "sqlite:sub/w.db")])?,
            "sqlite:sub/w.db",
        );
        // A SQLite file without the schema is left as it was.
        std::fs::write(cwd.join("empty.db"), b"")?;
        expect(
            &tko(&[args, &["--db", "sqlite:empty.db"][..]].concat(), cwd, &[])?,
            "sqlite:empty.db",
        );
        assert_eq!(std::fs::metadata(cwd.join("empty.db"))?.len(), 0);
        // A PostgreSQL database without the schema stays without it.
        expect(
            &tko(&[args, &["--db", &pg][..]].concat(), cwd, &[])?,
            &pg_shown,
        );
    }
    assert!(!cwd.join("x.csv").exists());
    // A dry run writes nothing, so it creates no warehouse either.
    example(&cwd.join("results"))?;
    for db in ["sqlite:tko.db", pg.as_str()] {
        let o = tko(
            &[
                "backfill",
                "--dry-run",
                "--level",
                "2",
                "results",
                "--db",
                db,
            ],
            cwd,
            &[],
        )?;
        assert!(text(&o).contains("8 new would be loaded"), "{}", text(&o));
    }
    assert!(!cwd.join("tko.db").exists());
    let mut c = postgres::Client::connect(
        &format!(
            "postgresql:///{db}?host={}&port={}&user=tko",
            l.socket_dir.display(),
            l.port
        ),
        postgres::NoTls,
    )?;
    let tables: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )?
        .get(0);
    assert_eq!(tables, 0);
    Ok(())
}

#[test]
fn load_of_a_missing_path_says_no_such_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("file"), b"x")?;
    for cmd in ["load", "backfill"] {
        let o = tko(&[cmd, "/nonexistent/results"], dir.path(), &[])?;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            text(&o).contains("/nonexistent/results: no such file or directory"),
            "{}",
            text(&o)
        );
        let o = tko(&[cmd, "file"], dir.path(), &[])?;
        assert!(text(&o).contains("file: not a directory"), "{}", text(&o));
    }
    Ok(())
}
