//! A client of Interstice's client protocol (docs/client-protocol.md), in
//! its JSON encoding: one WebSocket session per [`Client`], reducer calls
//! that resolve once durable (as many in flight as you like), subscriptions
//! to SQL queries whose rows the client keeps in a live cache, one-off
//! queries, and reconnection that resubscribes and brings the cache back to
//! the server's state.
//!
//! ```no_run
//! # async fn demo() -> Result<(), interstice_client::ClientError> {
//! use interstice_client::{Client, Connect};
//! let client = Client::connect(Connect::new("http://127.0.0.1:3000", "bank")).await?;
//! client.subscribe(&["accounts"]).await?;
//! let done = client.call("open_account", serde_json::json!([1, 100])).await?;
//! // The cache already holds what the call changed.
//! assert!(client.tx_id() >= done.tx_id);
//! println!("{:?}", client.rows("accounts"));
//! # Ok(()) }
//! ```
//!
//! Rows are JSON objects as the server gives them (docs/row-encoding.md
//! "JSON"); the cache keys each table's rows by its primary key.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The subprotocol of the encoding this client speaks.
pub const PROTOCOL: &str = "interstice.v1.json";

/// Where and as whom to connect.
#[derive(Clone, Debug)]
pub struct Connect {
    /// The server: `http://host:port` (or `ws://host:port`).
    pub url: String,
    pub module: String,
    /// An identity token or the admin token; none: the server issues an
    /// identity (when it allows anonymous sessions), and the client keeps
    /// its token for reconnecting as the same identity.
    pub token: Option<String>,
    /// Whether a lost connection is opened again (with resubscription).
    pub reconnect: bool,
    /// The schema fingerprint the caller's code was generated from: a
    /// session on a module whose schema differs is refused.
    pub schema: Option<String>,
}

impl Connect {
    pub fn new(url: &str, module: &str) -> Connect {
        Connect {
            url: url.to_string(),
            module: module.to_string(),
            token: None,
            reconnect: true,
            schema: None,
        }
    }

    pub fn token(mut self, token: &str) -> Connect {
        self.token = Some(token.to_string());
        self
    }
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The server refused the session before it began (HTTP status).
    #[error("the server refused the session ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The server answered the request with an error.
    #[error("{code}: {message}")]
    Server {
        code: String,
        message: String,
        field: Option<String>,
    },
    /// The connection was lost with the request in flight: a call may or
    /// may not have committed (read the data to know).
    #[error("the connection was lost before the answer came")]
    Disconnected,
    /// The session is over (closed by the server for good, or by this
    /// client).
    #[error("the session is closed ({code}): {reason}")]
    Closed { code: u16, reason: String },
    /// The module's schema is not the one the code was generated from.
    #[error(
        "module `{module}` has schema {found}, not {expected} that this code was generated from: generate it again"
    )]
    Schema {
        module: String,
        expected: String,
        found: String,
    },
    #[error("the server sent something this client does not understand: {0}")]
    Protocol(String),
}

/// A call that committed and is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResult {
    pub tx_id: u64,
    pub timestamp: i64,
}

/// A one-off query's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub tx_id: u64,
    /// `(name, type)` of each column.
    pub columns: Vec<(String, String)>,
    pub rows: Vec<Vec<Value>>,
}

/// What changed in the cache.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Insert {
        table: String,
        row: Value,
    },
    Update {
        table: String,
        old: Value,
        new: Value,
    },
    Delete {
        table: String,
        row: Value,
    },
    /// Every change of transaction `tx_id` has been applied.
    Transaction {
        tx_id: u64,
        reducer: String,
    },
    /// The connection was lost; the cache keeps its rows until the next
    /// session brings them up to date.
    Disconnected,
    /// A new session began and every subscription was asked for again:
    /// as their rows come, they replace the cache's, with an event for
    /// each row that changed meanwhile.
    Reconnected,
}

/// A subscription of this client (it keeps its number across
/// reconnections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subscription(pub u32);

/// One query's rows, by primary key (as JSON text).
#[derive(Default)]
struct QueryRows {
    table: String,
    key: String,
    rows: BTreeMap<String, Value>,
}

struct LocalSub {
    queries: Vec<String>,
    /// The server's number for it in the current session.
    server_id: Option<u64>,
    rows: Vec<QueryRows>,
}

/// What the background task and the handles share.
struct State {
    identity: String,
    token: Option<String>,
    version: u32,
    schema: String,
    connection_id: Option<u64>,
    /// The newest transaction the cache has applied.
    tx_id: u64,
    subs: BTreeMap<u32, LocalSub>,
    pending: HashMap<u32, oneshot::Sender<Result<Value, ClientError>>>,
    /// The local subscription each `subscribe` request in flight is for.
    subscribing: HashMap<u32, u32>,
    closed: Option<ClientError>,
}

struct Shared {
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    next_id: AtomicU32,
    next_sub: AtomicU32,
    out: mpsc::UnboundedSender<String>,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client session. Clones share it; it ends when the last clone is
/// dropped or [`Client::close`] is called.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    _task: Arc<TaskGuard>,
}

struct TaskGuard(tokio::task::JoinHandle<()>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens a socket and reads the `identity` message.
async fn open(options: &Connect, token: Option<&str>) -> Result<(Socket, Value), ClientError> {
    let base = options
        .url
        .trim_end_matches('/')
        .replacen("http://", "ws://", 1)
        .replacen("https://", "wss://", 1);
    let url = format!("{base}/v1/modules/{}/connect", options.module);
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        tungstenite::http::HeaderValue::from_static(PROTOCOL),
    );
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::Connect("the token is not a header value".into()))?;
        headers.insert("authorization", value);
    }
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(s) => s,
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let message = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice::<Value>(b).ok())
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(ClientError::Refused { status, message });
        }
        Err(e) => return Err(ClientError::Connect(e.to_string())),
    };
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(t))) => {
                let hello: Value = serde_json::from_str(&t)
                    .map_err(|e| ClientError::Protocol(format!("{e}: {t}")))?;
                if hello["type"] != "identity" {
                    return Err(ClientError::Protocol(format!(
                        "expected identity, got {hello}"
                    )));
                }
                let found = hello["schema"].as_str().unwrap_or_default();
                if let Some(expected) = options.schema.as_deref().filter(|e| *e != found) {
                    let _ = socket.close(None).await;
                    return Err(ClientError::Schema {
                        module: options.module.clone(),
                        expected: expected.to_string(),
                        found: found.to_string(),
                    });
                }
                return Ok((socket, hello));
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                return Err(ClientError::Closed { code, reason });
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
            None => return Err(ClientError::Connect("closed before the identity".into())),
        }
    }
}

impl Client {
    /// Opens a session: returns once the server has said who the client
    /// is.
    pub async fn connect(options: Connect) -> Result<Client, ClientError> {
        let (socket, hello) = open(&options, options.token.as_deref()).await?;
        let token = hello["token"]
            .as_str()
            .map(str::to_string)
            .or(options.token.clone());
        let (out, outgoing) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(16_384);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                identity: hello["identity"].as_str().unwrap_or_default().to_string(),
                token,
                version: hello["version"].as_u64().unwrap_or(0) as u32,
                schema: hello["schema"].as_str().unwrap_or_default().to_string(),
                connection_id: hello["connection_id"].as_u64(),
                tx_id: hello["tx_id"].as_u64().unwrap_or(0),
                subs: BTreeMap::new(),
                pending: HashMap::new(),
                subscribing: HashMap::new(),
                closed: None,
            }),
            events,
            next_id: AtomicU32::new(1),
            next_sub: AtomicU32::new(1),
            out,
        });
        let task = tokio::spawn(run(shared.clone(), options, socket, outgoing));
        Ok(Client {
            shared,
            _task: Arc::new(TaskGuard(task)),
        })
    }

    /// The session's identity (64 hex digits).
    pub fn identity(&self) -> String {
        lock(&self.shared.state).identity.clone()
    }

    /// The token the client connects with: the one it was given, or the
    /// one the server issued.
    pub fn token(&self) -> Option<String> {
        lock(&self.shared.state).token.clone()
    }

    /// The module's version this session was opened on.
    pub fn version(&self) -> u32 {
        lock(&self.shared.state).version
    }

    /// The module's schema fingerprint (docs/client-protocol.md).
    pub fn schema(&self) -> String {
        lock(&self.shared.state).schema.clone()
    }

    /// The session's connection id, for a module with lifecycle reducers.
    pub fn connection_id(&self) -> Option<u64> {
        lock(&self.shared.state).connection_id
    }

    /// The newest transaction the cache reflects.
    pub fn tx_id(&self) -> u64 {
        lock(&self.shared.state).tx_id
    }

    /// Events of the cache, from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Sends a request and returns where its answer will come.
    fn request(&self, message: Value) -> oneshot::Receiver<Result<Value, ClientError>> {
        self.request_for(message, None)
    }

    /// Sends a request (a `subscribe` for local subscription `local`).
    fn request_for(
        &self,
        mut message: Value,
        local: Option<u32>,
    ) -> oneshot::Receiver<Result<Value, ClientError>> {
        let (tx, rx) = oneshot::channel();
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        message["id"] = id.into();
        let mut st = lock(&self.shared.state);
        if let Some(closed) = &st.closed {
            let _ = tx.send(Err(closed.clone()));
            return rx;
        }
        st.pending.insert(id, tx);
        if let Some(local) = local {
            st.subscribing.insert(id, local);
        }
        // Sent with the state held: requests go out in the order they
        // were made.
        if self.shared.out.send(message.to_string()).is_err()
            && let Some(tx) = st.pending.remove(&id)
        {
            let _ = tx.send(Err(ClientError::Disconnected));
        }
        rx
    }

    async fn answer(
        rx: oneshot::Receiver<Result<Value, ClientError>>,
    ) -> Result<Value, ClientError> {
        rx.await.unwrap_or(Err(ClientError::Disconnected))
    }

    /// Calls a reducer with its arguments as JSON (an array in parameter
    /// order, or an object by name). The call is sent at once; the future
    /// resolves once it is durable, after the cache shows its changes.
    /// Calls made one after another run in that order.
    pub fn call(
        &self,
        reducer: &str,
        args: Value,
    ) -> impl Future<Output = Result<CallResult, ClientError>> + use<> {
        let rx = self.request(json!({"type": "call", "reducer": reducer, "args": args}));
        async move {
            let m = Client::answer(rx).await?;
            Ok(CallResult {
                tx_id: m["tx_id"].as_u64().unwrap_or(0),
                timestamp: m["timestamp"].as_i64().unwrap_or(0),
            })
        }
    }

    /// One SQL statement (docs/sql.md).
    pub async fn query(&self, sql: &str) -> Result<QueryResult, ClientError> {
        let m = Client::answer(self.request(json!({"type": "query", "sql": sql}))).await?;
        let columns = m["columns"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .map(|c| {
                        (
                            c["name"].as_str().unwrap_or_default().to_string(),
                            c["type"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rows = m["rows"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .map(|r| r.as_array().cloned().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        Ok(QueryResult {
            tx_id: m["tx_id"].as_u64().unwrap_or(0),
            columns,
            rows,
        })
    }

    /// Subscribes to queries (SQL, or a bare table name for the whole
    /// table), all as of one transaction; returns once their rows are in
    /// the cache. The subscription is renewed on every reconnection.
    pub async fn subscribe(&self, queries: &[&str]) -> Result<Subscription, ClientError> {
        let local = self.shared.next_sub.fetch_add(1, Ordering::Relaxed);
        let queries: Vec<String> = queries.iter().map(|q| q.to_string()).collect();
        lock(&self.shared.state).subs.insert(
            local,
            LocalSub {
                queries: queries.clone(),
                server_id: None,
                rows: Vec::new(),
            },
        );
        let message = json!({"type": "subscribe", "queries": queries});
        match Client::answer(self.request_for(message, Some(local))).await {
            Ok(_) => Ok(Subscription(local)),
            Err(e) => {
                lock(&self.shared.state).subs.remove(&local);
                Err(e)
            }
        }
    }

    /// Ends a subscription; its rows leave the cache (with events) unless
    /// another subscription holds them.
    pub async fn unsubscribe(&self, sub: Subscription) -> Result<(), ClientError> {
        let server_id = {
            let mut st = lock(&self.shared.state);
            let Some(local) = st.subs.remove(&sub.0) else {
                return Err(ClientError::Server {
                    code: "not_found".into(),
                    message: format!("no subscription {}", sub.0),
                    field: None,
                });
            };
            let events = forget(&mut st, &local.rows);
            for e in events {
                let _ = self.shared.events.send(e);
            }
            local.server_id
        };
        if let Some(id) = server_id {
            Client::answer(self.request(json!({"type": "unsubscribe", "subscription": id})))
                .await?;
        }
        Ok(())
    }

    /// The cached rows of `table`, in primary-key order (as JSON text).
    pub fn rows(&self, table: &str) -> Vec<Value> {
        let st = lock(&self.shared.state);
        let mut out: BTreeMap<String, Value> = BTreeMap::new();
        for sub in st.subs.values() {
            for q in sub.rows.iter().filter(|q| q.table == table) {
                for (k, r) in &q.rows {
                    out.entry(k.clone()).or_insert_with(|| r.clone());
                }
            }
        }
        out.into_values().collect()
    }

    /// Ends the session.
    pub async fn close(self) {
        let _ = self.shared.out.send(String::new());
        let mut st = lock(&self.shared.state);
        st.closed.get_or_insert(ClientError::Closed {
            code: 1000,
            reason: "closed by the client".into(),
        });
    }
}

/// The row of `table` under `key` as the cache shows it (the first
/// subscription holding it).
fn cached(st: &State, table: &str, key: &str) -> Option<Value> {
    st.subs
        .values()
        .flat_map(|s| s.rows.iter())
        .filter(|q| q.table == table)
        .find_map(|q| q.rows.get(key).cloned())
}

/// The events of a change of the cache at (table, key), from `before` to
/// what it shows now.
fn event(st: &State, table: &str, key: &str, before: Option<Value>) -> Option<Event> {
    let after = cached(st, table, key);
    let table = table.to_string();
    match (before, after) {
        (None, Some(row)) => Some(Event::Insert { table, row }),
        (Some(row), None) => Some(Event::Delete { table, row }),
        (Some(old), Some(new)) if old != new => Some(Event::Update { table, old, new }),
        _ => None,
    }
}

/// Removes a subscription's rows (already taken out of `st.subs`): the
/// events of the rows no other subscription holds.
fn forget(st: &mut State, rows: &[QueryRows]) -> Vec<Event> {
    let mut out = Vec::new();
    for q in rows {
        for (k, row) in &q.rows {
            if cached(st, &q.table, k).is_none() {
                out.push(Event::Delete {
                    table: q.table.clone(),
                    row: row.clone(),
                });
            }
        }
    }
    out
}

fn key_of(row: &Value, key: &str) -> String {
    row[key].to_string()
}

/// Why one socket's session ended.
enum Ended {
    /// The client was dropped or closed.
    ByClient,
    /// The server closed it with this code and reason.
    Closed(u16, String),
    /// The connection dropped.
    Lost,
}

async fn run(
    shared: Arc<Shared>,
    options: Connect,
    mut socket: Socket,
    mut outgoing: mpsc::UnboundedReceiver<String>,
) {
    loop {
        let ended = session(&shared, &mut socket, &mut outgoing).await;
        let _ = socket.close(None).await;
        let final_error = match &ended {
            Ended::ByClient => Some(ClientError::Closed {
                code: 1000,
                reason: "closed by the client".into(),
            }),
            // The module was deleted: nothing to come back to.
            Ended::Closed(1000, reason) => Some(ClientError::Closed {
                code: 1000,
                reason: reason.clone(),
            }),
            Ended::Closed(code, reason) if !options.reconnect => Some(ClientError::Closed {
                code: *code,
                reason: reason.clone(),
            }),
            Ended::Lost if !options.reconnect => Some(ClientError::Disconnected),
            _ => None,
        };
        {
            let mut st = lock(&shared.state);
            st.subscribing.clear();
            for (_, tx) in st.pending.drain() {
                let _ = tx.send(Err(final_error
                    .clone()
                    .unwrap_or(ClientError::Disconnected)));
            }
            for sub in st.subs.values_mut() {
                sub.server_id = None;
            }
            if let Some(e) = &final_error {
                st.closed = Some(e.clone());
            }
        }
        if final_error.is_some() {
            return;
        }
        let _ = shared.events.send(Event::Disconnected);
        // Requests made while disconnected wait in `outgoing` and go out
        // on the next session; calls among them run then.
        let mut backoff = Duration::from_millis(50);
        let (next, hello) = loop {
            tokio::time::sleep(backoff).await;
            let token = lock(&shared.state).token.clone();
            match open(&options, token.as_deref()).await {
                Ok(opened) => break opened,
                Err(e @ (ClientError::Refused { .. } | ClientError::Schema { .. }))
                    if !matches!(e, ClientError::Refused { status: 503, .. }) =>
                {
                    lock(&shared.state).closed = Some(e);
                    return;
                }
                Err(_) => backoff = (backoff * 2).min(Duration::from_secs(2)),
            }
        };
        socket = next;
        let resubscribe: Vec<(u32, Vec<String>)> = {
            let mut st = lock(&shared.state);
            st.version = hello["version"].as_u64().unwrap_or(0) as u32;
            st.schema = hello["schema"].as_str().unwrap_or_default().to_string();
            st.connection_id = hello["connection_id"].as_u64();
            st.subs
                .iter()
                .map(|(local, s)| (*local, s.queries.clone()))
                .collect()
        };
        let mut renewed = true;
        for (local, queries) in resubscribe {
            let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
            lock(&shared.state).subscribing.insert(id, local);
            let m = json!({"type": "subscribe", "id": id, "queries": queries});
            if socket
                .send(Message::Text(m.to_string().into()))
                .await
                .is_err()
            {
                renewed = false;
                break;
            }
        }
        if renewed {
            let _ = shared.events.send(Event::Reconnected);
        }
    }
}

/// Serves one socket until it ends.
async fn session(
    shared: &Shared,
    socket: &mut Socket,
    outgoing: &mut mpsc::UnboundedReceiver<String>,
) -> Ended {
    loop {
        tokio::select! {
            out = outgoing.recv() => {
                let Some(text) = out else { return Ended::ByClient };
                if text.is_empty() {
                    return Ended::ByClient;
                }
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return Ended::Lost;
                }
            }
            incoming = socket.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(frame))) => {
                        let (code, reason) = frame
                            .map(|f| (u16::from(f.code), f.reason.to_string()))
                            .unwrap_or((1005, String::new()));
                        return Ended::Closed(code, reason);
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => return Ended::Lost,
                };
                let Ok(m) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                handle(shared, m);
            }
        }
    }
}

/// One message from the server.
fn handle(shared: &Shared, m: Value) {
    let mut st = lock(&shared.state);
    let mut events = Vec::new();
    match m["type"].as_str().unwrap_or_default() {
        "tx" => {
            let tx_id = m["tx_id"].as_u64().unwrap_or(0);
            for u in m["updates"].as_array().into_iter().flatten() {
                let server = u["subscription"].as_u64();
                let query = u["query"].as_u64().unwrap_or(0) as usize;
                for c in u["changes"].as_array().into_iter().flatten() {
                    let Some(local) = st
                        .subs
                        .iter()
                        .find(|(_, s)| s.server_id.is_some() && s.server_id == server)
                        .map(|(l, _)| *l)
                    else {
                        continue;
                    };
                    let (table, key) = match st.subs[&local].rows.get(query) {
                        Some(q) => (q.table.clone(), key_of(&c["row"], &q.key)),
                        None => continue,
                    };
                    let before = cached(&st, &table, &key);
                    let Some(q) = st.subs.get_mut(&local).and_then(|s| s.rows.get_mut(query))
                    else {
                        continue;
                    };
                    match c["op"].as_str() {
                        Some("delete") => {
                            q.rows.remove(&key);
                        }
                        _ => {
                            q.rows.insert(key.clone(), c["row"].clone());
                        }
                    }
                    events.extend(event(&st, &table, &key, before));
                }
            }
            st.tx_id = st.tx_id.max(tx_id);
            events.push(Event::Transaction {
                tx_id,
                reducer: m["reducer"].as_str().unwrap_or_default().to_string(),
            });
        }
        "subscribed" => {
            let id = m["id"].as_u64().unwrap_or(0) as u32;
            let server = m["subscription"].as_u64();
            let local = st.subscribing.remove(&id);
            if let Some(local) = local.filter(|l| st.subs.contains_key(l)) {
                let mut fresh = Vec::new();
                for q in m["queries"].as_array().into_iter().flatten() {
                    let key = q["key"].as_str().unwrap_or("id").to_string();
                    let rows = q["rows"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| (key_of(r, &key), r.clone()))
                        .collect();
                    fresh.push(QueryRows {
                        table: q["table"].as_str().unwrap_or_default().to_string(),
                        key,
                        rows,
                    });
                }
                // The keys that may change: those held before and now.
                let mut touched: Vec<(String, String)> = Vec::new();
                if let Some(sub) = st.subs.get(&local) {
                    for q in sub.rows.iter().chain(fresh.iter()) {
                        touched.extend(q.rows.keys().map(|k| (q.table.clone(), k.clone())));
                    }
                }
                touched.sort();
                touched.dedup();
                let before: Vec<Option<Value>> =
                    touched.iter().map(|(t, k)| cached(&st, t, k)).collect();
                if let Some(sub) = st.subs.get_mut(&local) {
                    sub.rows = fresh;
                    sub.server_id = server;
                }
                for ((t, k), b) in touched.iter().zip(before) {
                    events.extend(event(&st, t, k, b));
                }
                st.tx_id = st.tx_id.max(m["tx_id"].as_u64().unwrap_or(0));
            }
            if let Some(tx) = st.pending.remove(&id) {
                let _ = tx.send(Ok(m));
            }
        }
        "error" => {
            let error = ClientError::Server {
                code: m["code"].as_str().unwrap_or_default().to_string(),
                message: m["message"].as_str().unwrap_or_default().to_string(),
                field: m["field"].as_str().map(str::to_string),
            };
            if let Some(id) = m["id"].as_u64().map(|id| id as u32) {
                st.subscribing.remove(&id);
                if let Some(tx) = st.pending.remove(&id) {
                    let _ = tx.send(Err(error));
                }
            }
        }
        "closed" => {}
        _ => {
            // A call's result and a query's answer come after every change
            // of the transactions before theirs: the cache is as of them.
            if let Some(tx_id) = m["tx_id"].as_u64() {
                st.tx_id = st.tx_id.max(tx_id);
            }
            if let Some(tx) = m["id"]
                .as_u64()
                .and_then(|id| st.pending.remove(&(id as u32)))
            {
                let _ = tx.send(Ok(m));
            }
        }
    }
    drop(st);
    for e in events {
        let _ = shared.events.send(e);
    }
}
