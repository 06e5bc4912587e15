//! `GET /v1/modules/{module}/connect`: one WebSocket per client session
//! (docs/client-protocol.md). Calls, subscriptions to SQL queries, one-off
//! queries and their answers share it, in JSON or in the binary encoding.
//!
//! One task runs a session. It takes the database's change feed in commit
//! order and keeps `seen`, the newest transaction it has passed on; every
//! answer that is as of a transaction (a call's result, a subscription's
//! first rows, a query's answer) waits until `seen` reaches it. So what the
//! client receives never goes back in time, and a call's result comes after
//! the changes its transaction made to the session's subscriptions.
//!
//! Calls go to the server's call queue (`calls.rs`), in the order they
//! came: each one commits as the next transaction while the ones before it
//! wait for their sync, so many calls in flight share one fsync.
//! Subscribing runs inline: the feed waits in its channel meanwhile, so no
//! transaction after the subscription's first rows can pass before the
//! session knows of it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use interstice_runtime::Caller;
use interstice_runtime::feed::{CommittedTx, TxEvent};
use interstice_store::TableDef;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::AppState;
use crate::auth::{self, Who};
use crate::calls::{Answer, BATCH_MAX, Call, Failed, Refused};
use crate::error::ApiError;
use crate::protocol::{
    self, Args, ClientMessage, Encoding, Frame, QueryRows, Refusal, ServerMessage, Update,
};
use crate::subscribe::{
    CLOSE_SLOW, OnEnd, going_away, not_websocket, open_session, send_within, session_guard,
};

/// Why a session ends: the close code and its reason. `None` when the
/// client went away (nothing can be sent).
type End = Option<(u16, String)>;

/// Close code for a frame past the size limit (RFC 6455).
const CLOSE_TOO_BIG: u16 = 1009;

/// How long a session that the server ends waits for its calls in flight
/// to be answered.
const CALLS_GOODBYE: Duration = Duration::from_secs(5);

/// How long a session the server closes waits for the client's close
/// frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// The encoding and token a client asked for in its handshake.
struct Handshake {
    encoding: Encoding,
    /// The subprotocol to echo back: the encoding's, when one was offered.
    protocol: Option<&'static str>,
    token: Option<String>,
    /// A token the server issued for an anonymous client.
    issued: Option<String>,
}

fn handshake(
    headers: &HeaderMap,
    ws: &WebSocketUpgrade,
    params: Vec<(String, String)>,
) -> Result<Handshake, ApiError> {
    let mut tokens = Vec::new();
    for (key, value) in params {
        match key.as_str() {
            "token" => tokens.push(value),
            other => {
                return Err(ApiError::bad_request(
                    other,
                    format!("unknown query parameter `{other}`"),
                ));
            }
        }
    }
    let mut encoding = None;
    // Subprotocols other than a token, and whether a token came as one.
    let mut offered = false;
    let mut bearer = false;
    for value in ws.requested_protocols() {
        let Ok(p) = value.to_str() else {
            continue;
        };
        let p = p.trim();
        if let Some(token) = p.strip_prefix(protocol::BEARER_PREFIX) {
            tokens.push(token.to_string());
            bearer = true;
            continue;
        }
        offered = true;
        let known = match p {
            protocol::JSON_PROTOCOL => Some((Encoding::Json, protocol::JSON_PROTOCOL)),
            protocol::BINARY_PROTOCOL => Some((Encoding::Binary, protocol::BINARY_PROTOCOL)),
            _ => None,
        };
        if encoding.is_none() {
            encoding = known;
        }
    }
    // The header's token is read by `auth::who`; the others are here.
    let in_header = usize::from(headers.contains_key(header::AUTHORIZATION));
    if tokens.len() + in_header > 1 {
        return Err(ApiError::bad_request(
            "authorization",
            "give the token once: in the Authorization header, a subprotocol or the `token` parameter",
        ));
    }
    // A token offered as a subprotocol needs an encoding beside it: a
    // browser fails a handshake whose answer names none of the
    // subprotocols it offered.
    let (encoding, protocol) = match (encoding, offered || bearer) {
        (Some((e, p)), _) => (e, Some(p)),
        (None, false) => (Encoding::Json, None),
        (None, true) => {
            return Err(ApiError::bad_request(
                "sec-websocket-protocol",
                format!(
                    "offer the subprotocol `{}` or `{}`",
                    protocol::JSON_PROTOCOL,
                    protocol::BINARY_PROTOCOL
                ),
            ));
        }
    };
    Ok(Handshake {
        encoding,
        protocol,
        token: tokens.pop(),
        issued: None,
    })
}

/// Who the session is: the token's holder, or for a client without one a
/// new identity (when the settings allow anonymous sessions).
async fn session_who(
    state: &AppState,
    headers: &HeaderMap,
    hs: &mut Handshake,
) -> Result<Who, ApiError> {
    let who = match &hs.token {
        Some(token) => auth::who_is(token, &state.token, &state.tokens).await?,
        None => auth::who(headers, &state.token, &state.tokens).await?,
    };
    if !matches!(who, Who::Anonymous) {
        return Ok(who);
    }
    if !state.config.anonymous_sessions {
        return Err(auth::needs_token("a session"));
    }
    let (_, token) = state
        .tokens
        .issue()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let who = auth::who_is(&token, &state.token, &state.tokens).await?;
    hs.issued = Some(token);
    Ok(who)
}

pub(crate) async fn connect(
    State(state): State<Arc<AppState>>,
    Path(module): Path<String>,
    headers: HeaderMap,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let ws = ws.map_err(not_websocket)?;
    let params = params
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request("query", e.body_text()))?;
    let mut hs = handshake(&headers, &ws, params)?;
    let who = session_who(&state, &headers, &mut hs).await?;
    let caller = who.caller().ok_or_else(|| auth::needs_token("a session"))?;
    // Watched before the version is read: no change falls between.
    let modules = state.module_changes.subscribe();
    let (def, version) = {
        let (db, m) = (state.db.clone(), module.clone());
        crate::routes::blocking(move || Ok((db.module_def(&m)?, db.module_version(&m)?))).await?
    };
    let (Some(def), Some(version)) = (def, version) else {
        return Err(ApiError::not_found(format!("no module named `{module}`")));
    };
    let opened = open_session(&state, &who, &module).await?;
    let connection_id = opened.as_ref().map(|s| s.connection_id);
    let guard = session_guard(&state, opened);
    let seen = state.db.released_tx();
    let frame_max = state.config.body_limit_bytes;
    let mut ws = ws.max_message_size(frame_max).max_frame_size(frame_max);
    if let Some(p) = hs.protocol {
        ws.set_selected_protocol(HeaderValue::from_static(p));
    }
    let alive = state.sessions.clone();
    let identity = caller.identity;
    let schema = def.fingerprint();
    Ok(ws.on_upgrade(move |socket| async move {
        let _alive = alive;
        let mut session = Session::new(state, module, version, hs.encoding, who, caller, seen);
        session.modules = Some(modules);
        let hello = ServerMessage::Identity {
            module: &session.module,
            version,
            schema: &schema,
            identity,
            connection_id,
            token: hs.issued.as_deref(),
            tx_id: seen,
        };
        let mut socket = socket;
        let end = match session.encode(&hello) {
            Ok(frame) => match session.send(&mut socket, frame).await {
                Ok(()) => session.run(&mut socket).await,
                Err(end) => end,
            },
            Err(end) => end,
        };
        session.finish(&mut socket, end).await;
        // The session's calls are all answered (or abandoned) before
        // `client_disconnected` runs.
        guard.run().await;
    }))
}

/// A subscription: its queries' live query ids and tables, and the
/// transaction its first rows are as of.
struct Subscription {
    since: u64,
    queries: Vec<(u64, TableDef)>,
}

/// A call's answer, in call order.
enum CallReply {
    Committed {
        id: u32,
        tx_id: u64,
        timestamp: i64,
        /// The module's version that ran it.
        version: u32,
    },
    Failed {
        id: u32,
        error: ApiError,
        /// The module is gone.
        gone: bool,
    },
}

/// A call the pipeline runs.
struct CallJob {
    id: u32,
    reducer: String,
    args: Args,
}

struct Session {
    state: Arc<AppState>,
    module: String,
    version: u32,
    encoding: Encoding,
    who: Who,
    /// The newest transaction passed on (or, at first, released before
    /// the session joined the feed).
    seen: u64,
    /// The change feed, joined at the first subscription: a session that
    /// follows nothing does not wake for every transaction.
    feed: Option<broadcast::Receiver<Arc<CommittedTx>>>,
    /// Wakes on every publication and deletion, for a session that does
    /// not follow the feed (which tells it of its module's).
    modules: Option<tokio::sync::watch::Receiver<u64>>,
    subscriptions: BTreeMap<u32, Subscription>,
    next_subscription: u32,
    /// Calls sent and not yet answered to the client.
    in_flight: usize,
    /// Answers of the call pipeline, in call order, not yet sent.
    replies: VecDeque<CallReply>,
    /// Encoded answers waiting until `seen` reaches their transaction.
    held: VecDeque<(u64, Frame)>,
    calls: Option<mpsc::UnboundedSender<CallJob>>,
    answers: mpsc::UnboundedReceiver<CallReply>,
    pipeline: Option<tokio::task::JoinHandle<()>>,
}

impl Session {
    fn new(
        state: Arc<AppState>,
        module: String,
        version: u32,
        encoding: Encoding,
        who: Who,
        caller: Caller,
        seen: u64,
    ) -> Session {
        let (calls, jobs) = mpsc::unbounded_channel();
        let (answer, answers) = mpsc::unbounded_channel();
        let pipeline = tokio::spawn(call_pipeline(
            state.clone(),
            module.clone(),
            caller.clone(),
            jobs,
            answer,
        ));
        Session {
            state,
            module,
            version,
            encoding,
            who,
            seen,
            feed: None,
            modules: None,
            subscriptions: BTreeMap::new(),
            next_subscription: 1,
            in_flight: 0,
            replies: VecDeque::new(),
            held: VecDeque::new(),
            calls: Some(calls),
            answers,
            pipeline: Some(pipeline),
        }
    }

    fn encode(&self, message: &ServerMessage<'_>) -> Result<Frame, End> {
        message
            .encode(self.encoding)
            .map_err(|e| Some((close_code::ERROR, e.to_string())))
    }

    /// Sends one frame within the send timeout.
    async fn send(&self, socket: &mut WebSocket, frame: Frame) -> Result<(), End> {
        let message = match frame {
            Frame::Text(t) => Message::Text(Utf8Bytes::from(t)),
            Frame::Binary(b) => Message::Binary(b.into()),
        };
        send_within(&self.state, socket, message).await
    }

    async fn send_error(
        &self,
        socket: &mut WebSocket,
        id: Option<u32>,
        error: &ApiError,
    ) -> Result<(), End> {
        let frame = self.encode(&ServerMessage::Error {
            id,
            code: error.code,
            message: &error.message,
            field: error.field.as_deref(),
        })?;
        self.send(socket, frame).await
    }

    /// Serves the session until it ends.
    async fn run(&mut self, socket: &mut WebSocket) -> End {
        let mut stopping = self.state.stopping.clone();
        let calls_max = self.state.config.session_calls_max;
        // Once the server stops: nothing more is read, and the session
        // ends when its calls in flight are answered (or at the deadline).
        let mut draining = None;
        loop {
            if *stopping.borrow() && draining.is_none() {
                draining = Some(tokio::time::Instant::now() + CALLS_GOODBYE);
            }
            if let Err(end) = self.flush(socket).await {
                return end;
            }
            if draining.is_some() && self.in_flight == 0 {
                return Some(going_away());
            }
            let reading = draining.is_none() && self.in_flight < calls_max;
            let deadline = draining.unwrap_or_else(|| tokio::time::Instant::now() + CALLS_GOODBYE);
            let following = self.feed.is_some();
            let next_tx = async {
                match self.feed.as_mut() {
                    Some(feed) => feed.recv().await,
                    None => std::future::pending().await,
                }
            };
            let module_changed = async {
                match self.modules.as_mut() {
                    Some(m) if !following => m.changed().await.is_ok(),
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                got = next_tx => {
                    let tx = match got {
                        Ok(tx) => tx,
                        Err(RecvError::Lagged(n)) => return Some(self.lagged(n)),
                        Err(RecvError::Closed) => return Some(going_away()),
                    };
                    if let Err(end) = self.transaction(socket, &tx).await {
                        return end;
                    }
                }
                Some(reply) = self.answers.recv() => self.replies.push_back(reply),
                // Some module was published or deleted: is it this one?
                true = module_changed => {
                    if let Err(end) = self.module_still_here().await {
                        return end;
                    }
                }
                // Past its limit of calls in flight, the session reads
                // nothing more until one is answered: the client's own
                // socket holds what it sends meanwhile.
                incoming = socket.recv(), if reading => {
                    let message = match incoming {
                        None | Some(Ok(Message::Close(_))) => return None,
                        Some(Err(e)) => return read_error(e),
                        Some(Ok(m)) => m,
                    };
                    if let Err(end) = self.frame(socket, message).await {
                        return end;
                    }
                }
                _ = stopping.changed(), if draining.is_none() => {}
                () = tokio::time::sleep_until(deadline), if draining.is_some() => {
                    return Some(going_away());
                }
            }
        }
    }

    /// For a session that follows no feed: its module's version now, and
    /// the end of the session when it changed or the module is gone.
    async fn module_still_here(&self) -> Result<(), End> {
        let (db, module) = (self.state.db.clone(), self.module.clone());
        let now = crate::routes::blocking(move || Ok(db.module_version(&module)?))
            .await
            .map_err(|e| Some((close_code::ERROR, e.message)))?;
        match self.moved_on(now) {
            None => Ok(()),
            end => Err(end),
        }
    }

    /// How the session ends when its module is now at version `now`
    /// (`None`: deleted); nothing while it is still the session's version.
    fn moved_on(&self, now: Option<u32>) -> Option<(u16, String)> {
        match now {
            Some(v) if v == self.version => None,
            Some(v) => Some((
                close_code::RESTART,
                format!("module `{}` is now version {v}; connect again", self.module),
            )),
            None => Some((
                close_code::NORMAL,
                format!("module `{}` was deleted", self.module),
            )),
        }
    }

    /// Sends every call answer and held answer whose transaction the
    /// client has seen.
    async fn flush(&mut self, socket: &mut WebSocket) -> Result<(), End> {
        while let Some(front) = self.replies.front() {
            // Following the feed, a result waits for its transaction's
            // changes; otherwise there are none to wait for (it is durable).
            let mut end = None;
            let frame = match front {
                CallReply::Committed { tx_id, .. } if self.feed.is_some() && *tx_id > self.seen => {
                    break;
                }
                CallReply::Committed {
                    id,
                    tx_id,
                    timestamp,
                    version,
                } => {
                    end = self.moved_on(Some(*version));
                    self.encode(&ServerMessage::CallResult {
                        id: *id,
                        tx_id: *tx_id,
                        timestamp: *timestamp,
                    })?
                }
                CallReply::Failed { id, error, gone } => {
                    if *gone {
                        end = self.moved_on(None);
                    }
                    self.encode(&ServerMessage::Error {
                        id: Some(*id),
                        code: error.code,
                        message: &error.message,
                        field: error.field.as_deref(),
                    })?
                }
            };
            self.replies.pop_front();
            self.in_flight -= 1;
            self.send(socket, frame).await?;
            if end.is_some() {
                return Err(end);
            }
        }
        while self.held.front().is_some_and(|(tx, _)| *tx <= self.seen) {
            if let Some((_, frame)) = self.held.pop_front() {
                self.send(socket, frame).await?;
            }
        }
        Ok(())
    }

    /// Passes one committed transaction on: the changes it made to the
    /// session's subscriptions, in one message.
    async fn transaction(&mut self, socket: &mut WebSocket, tx: &CommittedTx) -> Result<(), End> {
        if tx.tx_id <= self.seen {
            return Ok(());
        }
        let mut reducer = "";
        if tx.module == self.module {
            let now = match &tx.event {
                TxEvent::Drop => None,
                TxEvent::Publish { version, .. } => Some(*version),
                TxEvent::Call { reducer: r, .. } => {
                    reducer = r;
                    Some(self.version)
                }
                TxEvent::Sql { .. } => Some(self.version),
            };
            if let Some(end) = self.moved_on(now) {
                return Err(Some(end));
            }
        }
        let mut updates = Vec::new();
        if tx.module == self.module {
            for (&subscription, sub) in &self.subscriptions {
                if tx.tx_id <= sub.since {
                    continue;
                }
                for (query, (query_id, table)) in sub.queries.iter().enumerate() {
                    let Some(delta) = tx.queries.iter().find(|d| d.query_id == *query_id) else {
                        continue;
                    };
                    let changes = delta.changes.as_ref().map_err(|e| {
                        Some((
                            close_code::ERROR,
                            format!("subscription {subscription} can no longer be followed: {e}"),
                        ))
                    })?;
                    if changes.is_empty() {
                        continue;
                    }
                    updates.push(Update {
                        subscription,
                        query: query as u32,
                        table,
                        changes: changes
                            .iter()
                            .map(|d| protocol::Change {
                                op: d.op,
                                row: &d.row,
                            })
                            .collect(),
                    });
                }
            }
        }
        self.seen = tx.tx_id;
        if updates.is_empty() {
            return Ok(());
        }
        let frame = self.encode(&ServerMessage::Tx {
            tx_id: tx.tx_id,
            timestamp: tx.timestamp_micros,
            reducer,
            updates,
        })?;
        self.send(socket, frame).await
    }

    /// One frame from the client.
    async fn frame(&mut self, socket: &mut WebSocket, message: Message) -> Result<(), End> {
        let decoded = match (self.encoding, message) {
            (Encoding::Json, Message::Text(text)) => protocol::decode_json(text.as_str()),
            (Encoding::Binary, Message::Binary(bytes)) => protocol::decode_binary(&bytes),
            (_, Message::Ping(_) | Message::Pong(_)) => return Ok(()),
            (Encoding::Json, _) => Err(Refusal {
                id: None,
                code: "bad_frame",
                message: format!(
                    "this session speaks JSON in text frames (subprotocol `{}`)",
                    protocol::JSON_PROTOCOL
                ),
            }),
            (Encoding::Binary, _) => Err(Refusal {
                id: None,
                code: "bad_frame",
                message: format!(
                    "this session speaks the binary encoding in binary frames (subprotocol `{}`)",
                    protocol::BINARY_PROTOCOL
                ),
            }),
        };
        let message = match decoded {
            Ok(m) => m,
            Err(refusal) => {
                let error = ApiError::new(StatusCode::BAD_REQUEST, refusal.code, refusal.message);
                return self.send_error(socket, refusal.id, &error).await;
            }
        };
        match message {
            ClientMessage::Call { id, reducer, args } => {
                self.in_flight += 1;
                let job = CallJob { id, reducer, args };
                let sent = self.calls.as_ref().map(|c| c.send(job).is_ok());
                if sent != Some(true) {
                    return Err(Some((
                        close_code::ERROR,
                        "the session's call pipeline has stopped".into(),
                    )));
                }
                Ok(())
            }
            ClientMessage::Subscribe { id, queries } => match self.subscribe(id, queries).await {
                Ok(()) => Ok(()),
                Err(Ok(error)) => self.send_error(socket, Some(id), &error).await,
                Err(Err(end)) => Err(end),
            },
            ClientMessage::Unsubscribe { id, subscription } => {
                let Some(sub) = self.subscriptions.remove(&subscription) else {
                    let error = ApiError::not_found(format!(
                        "this session has no subscription {subscription}"
                    ));
                    return self.send_error(socket, Some(id), &error).await;
                };
                let (db, module) = (self.state.db.clone(), self.module.clone());
                OnEnd::new(move || {
                    for (query_id, _) in sub.queries {
                        let _ = db.unsubscribe_sql(&module, query_id);
                    }
                })
                .run()
                .await;
                let frame = self.encode(&ServerMessage::Unsubscribed { id, subscription })?;
                self.send(socket, frame).await
            }
            ClientMessage::Query { id, sql } => {
                let (db, module, who) =
                    (self.state.db.clone(), self.module.clone(), self.who.clone());
                let budget = self.state.config.sql_budget();
                let answered = crate::routes::blocking(move || {
                    db.sql(&module, &sql, who.reader(), &budget)
                        .map_err(ApiError::from)
                })
                .await;
                match answered {
                    Ok(answer) => {
                        let frame = self.encode(&ServerMessage::QueryResult {
                            id,
                            answer: &answer,
                        })?;
                        if self.feed.is_some() {
                            self.held.push_back((answer.tx_id, frame));
                            return Ok(());
                        }
                        // Not following the feed: wait here until what it
                        // saw is durable.
                        let db = self.state.db.clone();
                        let tx_id = answer.tx_id;
                        match crate::routes::blocking(move || {
                            db.wait_durable(tx_id).map_err(ApiError::from)
                        })
                        .await
                        {
                            Ok(()) => self.send(socket, frame).await,
                            Err(error) => self.send_error(socket, Some(id), &error).await,
                        }
                    }
                    Err(error) => self.send_error(socket, Some(id), &error).await,
                }
            }
        }
    }

    /// Starts a subscription to `queries`, all as of one transaction; its
    /// first rows are held until the client has seen that transaction.
    /// `Err(Ok(_))` is the client's error, `Err(Err(_))` ends the session.
    async fn subscribe(
        &mut self,
        id: u32,
        queries: Vec<String>,
    ) -> Result<(), Result<ApiError, End>> {
        let max = self.state.config.session_subscriptions_max;
        if self.subscriptions.len() >= max {
            return Err(Ok(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_subscriptions",
                format!("a session has at most {max} subscriptions; unsubscribe from one first"),
            )));
        }
        if queries.is_empty() || queries.len() > QUERIES_MAX {
            return Err(Ok(ApiError::bad_request(
                "queries",
                format!("a subscription has 1 to {QUERIES_MAX} queries"),
            )));
        }
        if self.feed.is_none() {
            // From now on every transaction after `seen` reaches the
            // session, and no earlier one: joined atomically with the
            // feed's release counter.
            let (feed, released) = self.state.db.join_feed(|| self.state.changes.subscribe());
            self.feed = Some(feed);
            self.seen = self.seen.max(released);
        }
        let texts: Vec<String> = queries.into_iter().map(table_or_query).collect();
        let (db, module, who) = (self.state.db.clone(), self.module.clone(), self.who.clone());
        let budget = self.state.config.sql_budget();
        let max_live = self.state.config.sql_live_max;
        let started = crate::routes::blocking(move || {
            let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
            db.subscribe_sql_all(&module, &texts, who.reader(), &budget, max_live)
                .map_err(ApiError::from)
        })
        .await
        .map_err(Ok)?;
        let Some(tx_id) = started.first().map(|s| s.tx_id) else {
            return Err(Ok(ApiError::bad_request("queries", "no query was started")));
        };
        let subscription = self.next_subscription;
        self.next_subscription = self.next_subscription.wrapping_add(1).max(1);
        let tables: Option<Vec<TableDef>> = started
            .iter()
            .map(|s| s.def.tables.iter().find(|t| t.name == s.table).cloned())
            .collect();
        let Some(tables) = tables else {
            let ids: Vec<u64> = started.iter().map(|s| s.query_id).collect();
            let (db, module) = (self.state.db.clone(), self.module.clone());
            OnEnd::new(move || {
                for id in ids {
                    let _ = db.unsubscribe_sql(&module, id);
                }
            })
            .run()
            .await;
            return Err(Err(Some((
                close_code::ERROR,
                "a query's table is not in the module's definition".into(),
            ))));
        };
        self.subscriptions.insert(
            subscription,
            Subscription {
                since: tx_id,
                queries: started
                    .iter()
                    .zip(&tables)
                    .map(|(s, t)| (s.query_id, t.clone()))
                    .collect(),
            },
        );
        let rows: Vec<QueryRows<'_>> = started
            .iter()
            .zip(&tables)
            .map(|(s, table)| QueryRows {
                table,
                rows: &s.rows,
            })
            .collect();
        let frame = self
            .encode(&ServerMessage::Subscribed {
                id,
                subscription,
                tx_id,
                queries: rows,
            })
            .map_err(Err)?;
        self.held.push_back((tx_id, frame));
        Ok(())
    }

    fn lagged(&self, missed: u64) -> (u16, String) {
        (
            CLOSE_SLOW,
            format!(
                "slow consumer: fell more than {} transactions behind ({missed} missed); connect again",
                self.state.config.subscription_buffer
            ),
        )
    }

    /// Ends the session: its calls in flight finish (within a bound), the
    /// reason is sent and the socket closed, and the live queries end.
    async fn finish(&mut self, socket: &mut WebSocket, end: End) {
        self.calls = None;
        if let Some(pipeline) = self.pipeline.take() {
            let drained = async {
                let _ = pipeline.await;
            };
            let _ = tokio::time::timeout(CALLS_GOODBYE, drained).await;
        }
        if let Some((code, reason)) = end {
            if code == CLOSE_SLOW {
                self.state.metrics.subscribers_dropped.inc();
            }
            if let Ok(frame) = self.encode(&ServerMessage::Closed {
                code,
                reason: &reason,
            }) {
                let _ = self.send(socket, frame).await;
            }
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::from(reason),
                })))
                .await;
            // The closing handshake: read (and drop) what the client sent
            // meanwhile until its close frame. A socket closed with unread
            // bytes is reset, and a reset can destroy the close frame
            // before the client reads it; when the socket can no longer
            // be read (a frame past the limit), the client gets the time
            // to read the close frame instead.
            let handshake = async {
                loop {
                    match socket.recv().await {
                        Some(Ok(Message::Close(_))) => return,
                        Some(Ok(_)) => {}
                        None | Some(Err(_)) => std::future::pending::<()>().await,
                    }
                }
            };
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, handshake).await;
        }
        let subscriptions = std::mem::take(&mut self.subscriptions);
        let (db, module) = (self.state.db.clone(), self.module.clone());
        OnEnd::new(move || {
            for sub in subscriptions.into_values() {
                for (query_id, _) in sub.queries {
                    let _ = db.unsubscribe_sql(&module, query_id);
                }
            }
        })
        .run()
        .await;
    }
}

impl Drop for Session {
    /// A session dropped before it finished (its task was cancelled)
    /// still ends its live queries.
    fn drop(&mut self) {
        if self.subscriptions.is_empty() {
            return;
        }
        let subscriptions = std::mem::take(&mut self.subscriptions);
        let (db, module) = (self.state.db.clone(), self.module.clone());
        drop(OnEnd::new(move || {
            for sub in subscriptions.into_values() {
                for (query_id, _) in sub.queries {
                    let _ = db.unsubscribe_sql(&module, query_id);
                }
            }
        }));
    }
}

/// Most queries in one subscription.
const QUERIES_MAX: usize = 64;

/// A bare table name subscribes to the whole table.
fn table_or_query(text: String) -> String {
    let t = text.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("SELECT * FROM {t}")
    } else {
        text
    }
}

/// The end of a session whose socket failed to read: a frame past the
/// size limit is told so; any other error means the client is gone.
fn read_error(e: axum::Error) -> End {
    let inner = e.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(c)) => {
            Some((CLOSE_TOO_BIG, format!("frame too large: {c}")))
        }
        _ => None,
    }
}

/// Runs a session's calls in the order they came, through the server's
/// call queue: each commits as the next transaction, and its answer follows
/// once durable, in the same order. Whatever the session sent meanwhile
/// goes to the queue as one job; the next job is queued while the one
/// before waits for its sync.
async fn call_pipeline(
    state: Arc<AppState>,
    module: String,
    caller: Caller,
    mut jobs: mpsc::UnboundedReceiver<CallJob>,
    answers: mpsc::UnboundedSender<CallReply>,
) {
    type Queued = (Vec<u32>, Result<oneshot::Receiver<Vec<Answer>>, Refused>);
    let (waiting, mut queued) = mpsc::unbounded_channel::<Queued>();
    let answerer = tokio::spawn(async move {
        while let Some((ids, job)) = queued.recv().await {
            let answered = match job {
                Ok(answered) => answered.await.ok(),
                Err(_) => None,
            };
            let mut answered = answered.unwrap_or_default().into_iter();
            for id in ids {
                let reply = match answered.next() {
                    Some(Ok((version, outcome))) => CallReply::Committed {
                        id,
                        tx_id: outcome.tx_id,
                        timestamp: outcome.timestamp_micros,
                        version,
                    },
                    Some(Err(Failed { error, gone })) => CallReply::Failed { id, error, gone },
                    None => CallReply::Failed {
                        id,
                        error: ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            "the server stopped before the call was answered",
                        ),
                        gone: false,
                    },
                };
                // A session that is gone gets no answer; its calls still
                // become durable.
                let _ = answers.send(reply);
            }
        }
    });
    while let Some(batch) = next_batch(&mut jobs).await {
        let ids: Vec<u32> = batch.iter().map(|j| j.id).collect();
        let calls = batch
            .into_iter()
            .map(|job| Call {
                module: module.clone(),
                reducer: job.reducer,
                args: job.args,
                caller: caller.clone(),
            })
            .collect();
        if waiting
            .send((ids, state.calls.session_calls(calls)))
            .is_err()
        {
            return;
        }
    }
    drop(waiting);
    let _ = answerer.await;
}

/// The next item and every one already waiting behind it (up to
/// [`BATCH_MAX`]); `None` once the channel is closed and empty.
async fn next_batch<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < BATCH_MAX {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) => break,
        }
    }
    Some(batch)
}
