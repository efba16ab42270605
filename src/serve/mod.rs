//! `tko serve`: the warehouse over HTTP, read-only. An axum application
//! on a small tokio runtime serves a JSON API ([`api`]) and HTML pages
//! ([`pages`], maud templates, every asset embedded, no JavaScript) built
//! on the one read layer ([`crate::query`], [`crate::report`]). Queries run
//! on tokio's blocking threads against a bounded [`Pool`] of read-only
//! connections (SQLite opened read-only; PostgreSQL sessions with
//! `default_transaction_read_only` and a `statement_timeout`). Listening
//! beyond loopback requires a bearer token ([`auth`]).

pub mod api;
pub mod auth;
pub mod pages;
pub mod plot;

use crate::query::{self, Warehouse};
use crate::store;
use axum::http::StatusCode;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// How `tko serve` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Warehouse URL.
    pub db: String,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// File holding the bearer token.
    pub token_file: Option<PathBuf>,
    /// Most connections open at once.
    pub pool: usize,
    /// PostgreSQL `statement_timeout`, in milliseconds.
    pub statement_timeout_ms: u64,
}

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A non-loopback address without a token.
    #[error(
        "refusing to listen on {0}: it is not a loopback address, so every request must carry a \
         bearer token; pass --token-file FILE (or listen on 127.0.0.1)"
    )]
    NeedsToken(SocketAddr),
    /// The token file cannot be used.
    #[error("token file {path}: {why}")]
    Token {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The warehouse cannot be opened.
    #[error(transparent)]
    Open(#[from] query::Error),
    /// Binding or serving failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// A bounded pool of read-only warehouse connections. A plain mutex and
/// condition variable: callers are tokio blocking threads, which may
/// block, so no async pool (and no extra crate) is needed. A connection
/// whose query failed is dropped rather than returned (it may be broken);
/// a new one is opened on demand, up to the bound.
pub struct Pool {
    url: String,
    timeout_ms: u64,
    max: usize,
    state: Mutex<(Vec<Warehouse>, usize)>,
    freed: Condvar,
}

impl Pool {
    /// A pool of at most `max` connections to `url`; opens one now, so a
    /// wrong URL fails at start.
    pub fn new(url: &str, max: usize, timeout_ms: u64) -> Result<Pool, query::Error> {
        let first = Warehouse::open_read_only(url, timeout_ms)?;
        Ok(Pool {
            url: url.to_owned(),
            timeout_ms,
            max: max.max(1),
            state: Mutex::new((vec![first], 1)),
            freed: Condvar::new(),
        })
    }

    /// Runs `f` on a connection (blocking: call from a blocking thread).
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Warehouse) -> Result<T, query::Error>,
    ) -> Result<T, query::Error> {
        let mut wh = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(wh) = st.0.pop() {
                    break wh;
                }
                if st.1 < self.max {
                    st.1 += 1;
                    drop(st);
                    match Warehouse::open_read_only(&self.url, self.timeout_ms) {
                        Ok(wh) => break wh,
                        Err(e) => {
                            self.release(None);
                            return Err(e);
                        }
                    }
                }
                st = self.freed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let r = f(&mut wh);
        let keep = !matches!(r, Err(query::Error::Db { .. } | query::Error::Open(_)));
        self.release(keep.then_some(wh));
        r
    }

    fn release(&self, wh: Option<Warehouse>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match wh {
            Some(wh) => st.0.push(wh),
            None => st.1 -= 1,
        }
        self.freed.notify_one();
    }
}

/// Shared state of the application.
pub struct App {
    /// Connections.
    pub pool: Pool,
    /// The bearer token, when one is required.
    pub token: Option<Vec<u8>>,
    /// The warehouse, for display (no password).
    pub target: String,
}

/// An error answered to a client: a status code and a message that never
/// holds SQL text or a password (database errors are logged on stderr and
/// answered with a generic message).
#[derive(Debug)]
pub struct Failure {
    /// HTTP status.
    pub status: StatusCode,
    /// Message for the client.
    pub message: String,
    /// The query parameter at fault, if any.
    pub parameter: Option<String>,
}

impl Failure {
    /// 400 naming `parameter`.
    pub fn bad(parameter: &str, message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            parameter: Some(parameter.to_owned()),
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
            parameter: None,
        }
    }
}

impl From<query::Error> for Failure {
    fn from(e: query::Error) -> Failure {
        match e {
            query::Error::Filter(m) | query::Error::Unsupported(m) => {
                let m = m.trim_start_matches("--").to_owned();
                let parameter = m.split_once(':').map(|(p, _)| p.to_owned()).filter(|p| {
                    [
                        "job", "label", "machine", "test", "status", "kernel", "since", "until",
                        "cursor", "limit",
                    ]
                    .contains(&p.as_str())
                });
                Failure {
                    status: StatusCode::BAD_REQUEST,
                    message: m,
                    parameter,
                }
            }
            other => {
                eprintln!("tko serve: query failed: {}", store::error_chain(&other));
                Failure {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    message: "the warehouse query failed (see the server log)".into(),
                    parameter: None,
                }
            }
        }
    }
}

/// Runs `f` on a pooled connection on a blocking thread.
pub async fn run_query<T: Send + 'static>(
    app: &Arc<App>,
    f: impl FnOnce(&mut Warehouse) -> Result<T, query::Error> + Send + 'static,
) -> Result<T, Failure> {
    let app = Arc::clone(app);
    match tokio::task::spawn_blocking(move || app.pool.with(f)).await {
        Ok(r) => r.map_err(Failure::from),
        Err(e) => {
            eprintln!("tko serve: query task failed: {e}");
            Err(Failure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "internal error".into(),
                parameter: None,
            })
        }
    }
}

/// The router: API, pages, the token check on every route.
pub fn router(app: Arc<App>) -> axum::Router {
    api::routes()
        .merge(pages::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            auth::require_token,
        ))
        .with_state(app)
}

/// 404: JSON under `/api/`, else a page.
async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let f = Failure::not_found(format!("no such page: {}", uri.path()));
    if uri.path().starts_with("/api/") {
        f.into_response()
    } else {
        pages::error_page(f)
    }
}

/// Reads the token file: its content without surrounding whitespace,
/// which must not be empty.
fn read_token(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    let bad = |why: String| Error::Token {
        path: path.to_owned(),
        why,
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    Ok(token.as_bytes().to_vec())
}

/// Checks the options, opens the warehouse, listens and serves until
/// Ctrl-C or SIGTERM. Prints `listening on http://ADDR` on stderr once
/// bound (with the actual port when the given one is 0).
pub fn serve(opts: &Options) -> Result<(), Error> {
    if !opts.listen.ip().is_loopback() && opts.token_file.is_none() {
        return Err(Error::NeedsToken(opts.listen));
    }
    let token = opts.token_file.as_deref().map(read_token).transpose()?;
    let pool = Pool::new(&opts.db, opts.pool, opts.statement_timeout_ms)?;
    let app = Arc::new(App {
        pool,
        token,
        target: store::display_url(&opts.db),
    });
    let io = |what: String| move |source| Error::Io { what, source };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(opts.pool.max(1) + 2)
        .enable_io()
        .build()
        .map_err(io("starting the runtime".into()))?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(io(format!("listening on {}", opts.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(io("reading the bound address".into()))?;
        eprintln!(
            "tko serve: listening on http://{addr} (warehouse {}, read-only)",
            app.target
        );
        axum::serve(listener, router(app))
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(io("serving".into()))
    })
}

async fn shutdown() {
    use std::future::Future as _;
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    let mut int = std::pin::pin!(tokio::signal::ctrl_c());
    let mut term = std::pin::pin!(term);
    std::future::poll_fn(|cx| {
        if int.as_mut().poll(cx).is_ready() || term.as_mut().poll(cx).is_ready() {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
}

/// Percent-encodes `s` for a path segment or query value (all but
/// RFC 3986 unreserved characters).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
