//! `interstice serve`: the HTTP and WebSocket API over one open database
//! (docs/http-api.md, docs/openapi.json).
//!
//! Reducer calls, from HTTP and from client sessions, go through one queue
//! (`calls`): an executor thread runs whatever is queued in one hold of
//! the database, and each call is answered, as a future, once its record
//! is durable. Publications and reads run on tokio's blocking pool. The
//! accept loop (`listen`) bounds connections and times out slow heads and
//! bodies. Subscribers get committed transactions from the database's
//! change feed through one bounded broadcast channel; whoever falls behind
//! it is disconnected, so memory never grows with a slow client.

pub mod auth;
mod calls;
pub mod config;
pub mod error;
pub mod identity;
mod listen;
pub mod metrics;
pub mod protocol;
mod routes;
mod session;
mod subscribe;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use interstice_runtime::Database;
use interstice_runtime::feed::{CommittedTx, ModuleLogLine, TxEvent};
use tokio::sync::{broadcast, mpsc, watch};

pub use config::ServerConfig;

/// What every handler shares.
pub(crate) struct AppState {
    pub db: Arc<Database>,
    pub token: String,
    /// Issues and verifies identity tokens.
    pub tokens: identity::Tokens,
    pub config: ServerConfig,
    pub metrics: metrics::Metrics,
    /// Every committed, durable transaction, in commit order.
    pub changes: broadcast::Sender<Arc<CommittedTx>>,
    /// Every guest log line.
    pub logs: broadcast::Sender<Arc<ModuleLogLine>>,
    /// Counts durable publications and deletions of any module: client
    /// sessions that follow no feed wake on it to check their module.
    pub module_changes: watch::Sender<u64>,
    /// Turns true when the server stops: subscriptions close.
    pub stopping: watch::Receiver<bool>,
    /// Runs reducer calls from HTTP, answering each once durable.
    pub calls: calls::Queue,
    /// Places for table reads and SQL statements (`reads_queued_max`).
    pub reads: Arc<tokio::sync::Semaphore>,
    /// Held by every WebSocket session; the server waits, at shutdown,
    /// until every clone is gone (each session has said goodbye).
    pub sessions: mpsc::Sender<()>,
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Database(#[from] interstice_runtime::Poisoned),
    #[error("identity tokens: {0}")]
    Keys(#[from] identity::KeyError),
    #[error("ending the sessions left open: {0}")]
    Sessions(#[from] interstice_runtime::CallError),
}

/// Binds the listening socket, with a backlog of [`BACKLOG`] connections
/// not yet accepted (the standard library's 128 overflows under a burst of
/// connects, and a dropped SYN costs its client a second).
pub async fn bind(addr: &str) -> Result<tokio::net::TcpListener, ServerError> {
    let failed = |source| ServerError::Bind {
        addr: addr.to_string(),
        source,
    };
    let mut last = None;
    for resolved in tokio::net::lookup_host(addr).await.map_err(failed)? {
        let socket = match resolved {
            std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        };
        let listening = socket.and_then(|socket| {
            socket.set_reuseaddr(true)?;
            socket.bind(resolved)?;
            socket.listen(BACKLOG)
        });
        match listening {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(failed(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    })))
}

/// Connections the kernel may hold for the accept loop (capped by the
/// system's `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

/// Serves `db` on `listener` until `shutdown` completes; then stops taking
/// connections, closes every subscription, and returns once every request
/// in flight has been answered. The caller closes the database afterwards
/// (which syncs the log and releases the directory's lock).
pub async fn serve(
    db: Arc<Database>,
    token: String,
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (changes, _) = broadcast::channel(config.subscription_buffer.max(1));
    let (logs, _) = broadcast::channel(config.subscription_buffer.max(1));
    let (stop, stopping) = watch::channel(false);
    let (sessions, mut sessions_done) = mpsc::channel::<()>(1);
    // Reads the key files and fetches JWK sets: off the async runtime.
    let tokens = {
        let (dir, issuers) = (db.dir().to_path_buf(), config.issuers.clone());
        tokio::task::spawn_blocking(move || identity::Tokens::load(&dir, &issuers))
            .await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))??
    };
    let refreshers: Vec<_> = tokens
        .fetched()
        .into_iter()
        .map(|issuer| tokio::spawn(issuer.keep_fresh()))
        .collect();
    // Sessions a crash or kill left open end before anyone is served: each
    // runs `client_disconnected`, so no client stays "connected" forever.
    let ended = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || db.end_stale_sessions())
            .await
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))??
    };
    if ended > 0 {
        tracing::info!("ended {ended} sessions left open when the server last stopped");
    }
    // Schedule tables' rows run from now on, on a thread of their own.
    let schedules = Schedules::start(db.clone())?;
    let (module_changes, _) = watch::channel(0u64);
    let (calls, call_threads) =
        calls::start(db.clone(), config.calls_queued_max).map_err(ServerError::Serve)?;
    let reads = Arc::new(tokio::sync::Semaphore::new(config.reads_queued_max.max(1)));
    let state = Arc::new(AppState {
        db: db.clone(),
        token,
        tokens,
        metrics: metrics::Metrics::new(db.clone()),
        config,
        changes: changes.clone(),
        logs: logs.clone(),
        module_changes: module_changes.clone(),
        calls,
        reads,
        stopping,
        sessions,
    });
    {
        let committed = state.metrics.transactions_committed.clone();
        db.listen(Box::new(move |tx| {
            committed.inc();
            if matches!(tx.event, TxEvent::Publish { .. } | TxEvent::Drop) {
                module_changes.send_modify(|n| *n += 1);
            }
            // No receiver: nobody subscribes right now.
            let _ = changes.send(tx.clone());
        }))?;
        db.add_log_sink(Box::new(move |line| {
            let _ = logs.send(Arc::new(line.clone()));
        }));
    }
    let limits = listen::Limits {
        max_connections: state.config.max_connections,
        header_timeout: Duration::from_secs(state.config.header_timeout_secs),
        body_timeout: Duration::from_secs(state.config.body_timeout_secs),
        open: state.metrics.connections_open.clone(),
        refused: state.metrics.connections_refused.clone(),
    };
    // Monitoring's own door, if configured: its connections are not the
    // main address's, so a flood there does not crowd it out.
    let health = match &state.config.health_listen {
        Some(addr) => {
            let listener = bind(addr).await?;
            if let Ok(local) = listener.local_addr() {
                tracing::info!("/healthz and /metrics also on http://{local}");
            }
            let limits = listen::Limits {
                max_connections: HEALTH_CONNECTIONS,
                open: Default::default(),
                refused: Default::default(),
                ..limits.clone()
            };
            let mut stopped = state.stopping.clone();
            Some(tokio::spawn(listen::serve(
                listener,
                routes::health_router(state.clone()),
                limits,
                async move {
                    let _ = stopped.wait_for(|s| *s).await;
                },
            )))
        }
        None => None,
    };
    let app = routes::router(state);
    listen::serve(listener, app, limits, async move {
        shutdown.await;
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop.send(true);
    })
    .await;
    if let Some(health) = health {
        let _ = health.await;
    }
    for refresher in refreshers {
        refresher.abort();
    }
    // No scheduled run starts once requests stop being answered.
    let _ = tokio::task::spawn_blocking(move || drop(schedules)).await;
    // Upgraded connections outlive the HTTP server: wait (a little) for
    // each WebSocket session to send its closing message.
    let _ = tokio::time::timeout(SESSION_GOODBYE, sessions_done.recv()).await;
    // Every call taken has been answered; the queue's threads let go of
    // the database.
    let _ = tokio::task::spawn_blocking(move || call_threads.stop()).await;
    Ok(())
}

/// The thread that runs schedule tables' rows while the server serves;
/// stopped (after the round it is in) when dropped.
struct Schedules {
    db: Arc<Database>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Schedules {
    fn start(db: Arc<Database>) -> Result<Schedules, ServerError> {
        let runner = db.clone();
        let thread = std::thread::Builder::new()
            .name("interstice-schedules".into())
            .spawn(move || runner.run_schedules())
            .map_err(ServerError::Serve)?;
        Ok(Schedules {
            db,
            thread: Some(thread),
        })
    }
}

impl Drop for Schedules {
    fn drop(&mut self) {
        self.db.stop_schedules();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Connections `health_listen` serves at once.
const HEALTH_CONNECTIONS: usize = 64;

/// How long shutdown waits for WebSocket sessions to close.
const SESSION_GOODBYE: std::time::Duration = std::time::Duration::from_secs(5);

/// Completes on SIGINT or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot wait for Ctrl-C: {e}");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot wait for SIGTERM: {e}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
