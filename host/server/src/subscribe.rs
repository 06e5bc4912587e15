//! WebSocket subscriptions to a table, and the module log stream.
//!
//! A subscription reads the table's rows (as of transaction T) after it has
//! joined the change feed, waits until T is durable, sends the rows, then
//! every later transaction's changes to the table in commit order. Nothing
//! is sent before it is durable, nothing is missed and nothing is sent
//! twice: the rows include exactly the transactions up to T, and the feed
//! hands out every transaction in order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use interstice_runtime::feed::{CommittedTx, TxEvent};
use interstice_runtime::{RowQuery, index_on, value_from_query};
use interstice_store::json::{row_to_json, value_to_json};
use interstice_store::{MutationOp, TableDef};
use tokio::sync::broadcast::error::RecvError;

use crate::AppState;
use crate::auth;
use crate::error::ApiError;

/// Close code for a subscriber that fell behind (RFC 6455: "try again
/// later").
pub(crate) const CLOSE_SLOW: u16 = 1013;

/// What a subscription follows.
struct Subscription {
    module: String,
    table: String,
    version: Option<u32>,
    /// The filter column and its value, as JSON of the column's type.
    filter: Option<(String, serde_json::Value)>,
    /// Primary keys (as JSON text) of the rows the subscriber holds, for a
    /// filtered subscription: an update that moves a row out of the filter
    /// becomes a delete.
    holds: HashSet<String>,
    pk_column: String,
}

/// A subscription's filter: the column, the value as given, and as JSON.
type Filter = Option<(String, String, serde_json::Value)>;

/// The table a subscription asks for, and its filter, checked against the
/// module's definition.
fn parse_request(
    state: &AppState,
    module: &str,
    table: &str,
    params: Vec<(String, String)>,
) -> Result<(TableDef, Filter), ApiError> {
    if params.len() > 1 {
        return Err(ApiError::bad_request(
            params[1].0.clone(),
            "filter on one column at a time",
        ));
    }
    let def = state
        .db
        .module_def(module)?
        .ok_or_else(|| ApiError::not_found(format!("no module named `{module}`")))?;
    let table_def = def
        .tables
        .iter()
        .find(|t| t.name == table)
        .ok_or_else(|| {
            ApiError::not_found(format!("module `{module}` has no table named `{table}`"))
        })?
        .clone();
    let filter = match params.into_iter().next() {
        None => None,
        Some((column, raw)) => {
            let (_, ty) = index_on(&table_def, &column).map_err(ApiError::from)?;
            let value = value_from_query(&raw, ty)
                .map_err(|reason| ApiError::bad_request(column.clone(), reason))?;
            let json = value_to_json(&value, ty);
            Some((column, raw, json))
        }
    };
    Ok((table_def, filter))
}

pub(crate) async fn subscribe(
    State(state): State<Arc<AppState>>,
    Path((module, table)): Path<(String, String)>,
    headers: HeaderMap,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let who = auth::who(&headers, &state.token, &state.tokens).await?;
    let params = params
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request("query", e.body_text()))?;
    let (table_def, filter) = parse_request(&state, &module, &table, params)?;
    crate::routes::check_readable(&state, &who, &module, &table)?;
    let ws = ws.map_err(not_websocket)?;
    let session = open_session(&state, &who, &module).await?;
    // Join the feed first: every transaction after the rows' will arrive.
    let rx = state.changes.subscribe();
    let query = RowQuery {
        filter: filter.as_ref().map(|(c, raw, _)| (c.clone(), raw.clone())),
        after: None,
        limit: usize::MAX,
    };
    let db = state.db.clone();
    let (m, t) = (module.clone(), table.clone());
    let page = tokio::task::spawn_blocking(move || db.query(&m, &t, &query))
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                e.to_string(),
            )
        })??;
    let pk_column = table_def.columns[table_def.primary_key as usize]
        .name
        .clone();
    let holds = match &filter {
        Some(_) => page
            .rows
            .iter()
            .map(|r| r[pk_column.as_str()].to_string())
            .collect(),
        None => HashSet::new(),
    };
    let sub = Subscription {
        version: state.db.module_version(&module)?,
        module,
        table,
        filter: filter.map(|(c, _, v)| (c, v)),
        holds,
        pk_column,
    };
    let Some((table_id, table_def)) = page
        .def
        .tables
        .iter()
        .position(|t| t.name == sub.table)
        .map(|i| (i as u32, page.def.tables[i].clone()))
    else {
        return Err(ApiError::not_found("the table is gone"));
    };
    let upto = page.tx_id;
    let first = serde_json::json!({"type": "rows", "tx_id": upto, "rows": page.rows});
    let mut follow = TableFollow {
        sub,
        table_id,
        table_def,
    };
    let alive = state.sessions.clone();
    let guard = session_guard(&state, session);
    Ok(ws.on_upgrade(move |socket| async move {
        let _alive = alive;
        let mut socket = socket;
        let reason = run(&state, &mut socket, rx, upto, first, &mut follow).await;
        if let Some((code, reason)) = reason {
            close(&state, &mut socket, code, reason).await;
        }
        // Ended before shutdown lets go of the database.
        guard.run().await;
    }))
}

/// A client with a token opens a session: `client_connected` runs (and
/// may refuse it) before the socket is accepted.
pub(crate) async fn open_session(
    state: &Arc<AppState>,
    who: &auth::Who,
    module: &str,
) -> Result<Option<Session>, ApiError> {
    let session = match who.caller() {
        None => None,
        Some(caller) => {
            let db = state.db.clone();
            let m = module.to_string();
            let c = caller.clone();
            let opened = tokio::task::spawn_blocking(move || db.connect(&m, &c))
                .await
                .map_err(|e| {
                    ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        e.to_string(),
                    )
                })?;
            match opened {
                Ok(Some(id)) => Some(Session {
                    module: module.to_string(),
                    connection_id: id,
                    caller,
                }),
                Ok(None) => None,
                Err(interstice_runtime::CallError::Reducer(message)) => {
                    return Err(ApiError::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "refused",
                        message,
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(session)
}

/// A session that `client_connected` opened.
pub(crate) struct Session {
    module: String,
    pub(crate) connection_id: u64,
    caller: interstice_runtime::Caller,
}

/// Blocking database work to run when a subscription ends, however it
/// ends: when the socket closes, and also when the upgrade never completes
/// (the guard is dropped).
pub(crate) struct OnEnd(Option<Box<dyn FnOnce() + Send + 'static>>);

impl OnEnd {
    pub(crate) fn new(work: impl FnOnce() + Send + 'static) -> OnEnd {
        OnEnd(Some(Box::new(work)))
    }

    pub(crate) async fn run(mut self) {
        if let Some(work) = self.0.take() {
            let _ = tokio::task::spawn_blocking(work).await;
        }
    }
}

impl Drop for OnEnd {
    fn drop(&mut self) {
        let Some(work) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(work);
            }
            Err(_) => work(),
        }
    }
}

/// Ends the session `client_connected` opened, if any.
pub(crate) fn session_guard(state: &Arc<AppState>, session: Option<Session>) -> OnEnd {
    let Some(s) = session else {
        return OnEnd(None);
    };
    let db = state.db.clone();
    OnEnd::new(move || {
        if let Err(e) = db.disconnect(&s.module, s.connection_id, &s.caller) {
            tracing::warn!(
                "session {} of `{}` did not end cleanly: {e}; it ends at the next start",
                s.connection_id,
                s.module
            );
        }
    })
}

/// Tells the subscriber why its subscription ends, then closes.
async fn close(state: &AppState, socket: &mut WebSocket, code: u16, reason: String) {
    if code == CLOSE_SLOW {
        state.metrics.subscribers_dropped.inc();
    }
    let note = serde_json::json!({"type": "closed", "reason": reason});
    let _ = send(state, socket, note).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from(reason),
        })))
        .await;
}

pub(crate) fn not_websocket(e: WebSocketUpgradeRejection) -> ApiError {
    ApiError::new(
        e.status(),
        "not_websocket",
        format!("this route is a WebSocket: {}", e.body_text()),
    )
}

/// Sends one JSON message, within the send timeout.
async fn send(
    state: &AppState,
    socket: &mut WebSocket,
    message: serde_json::Value,
) -> Result<(), Option<(u16, String)>> {
    let text = Message::Text(Utf8Bytes::from(message.to_string()));
    send_within(state, socket, text).await
}

/// Sends one message within the send timeout: `Err(None)` when the client
/// went away, the slow-consumer close when it did not take the message.
pub(crate) async fn send_within(
    state: &AppState,
    socket: &mut WebSocket,
    message: Message,
) -> Result<(), Option<(u16, String)>> {
    let timeout = Duration::from_secs(state.config.send_timeout_secs.max(1));
    match tokio::time::timeout(timeout, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(None),
        Err(_) => Err(Some((
            CLOSE_SLOW,
            format!(
                "slow consumer: a message was not accepted within {} s",
                timeout.as_secs()
            ),
        ))),
    }
}

/// What a subscription makes of each transaction after its first rows:
/// the message to send (none when the transaction changes nothing it
/// follows), or why it ends.
trait Follow: Send {
    fn message(
        &mut self,
        tx: &CommittedTx,
    ) -> Result<Option<serde_json::Value>, Option<(u16, String)>>;
}

/// The end of a subscription when its module changes: deleted, or a new
/// version (whose rows it was not started on). `None` for any other
/// transaction, with the reducer to name.
fn module_event(
    tx: &CommittedTx,
    module: &str,
    version: Option<u32>,
) -> Result<String, Option<(u16, String)>> {
    match &tx.event {
        TxEvent::Call { reducer, .. } => Ok(reducer.clone()),
        TxEvent::Sql { .. } => Ok(String::new()),
        TxEvent::Drop => Err(Some((
            close_code::NORMAL,
            format!("module `{module}` was deleted"),
        ))),
        TxEvent::Publish { version: v, .. } => {
            if Some(*v) != version {
                return Err(Some((
                    close_code::RESTART,
                    format!("module `{module}` is now version {v}; subscribe again"),
                )));
            }
            Ok(String::new())
        }
    }
}

/// Sends what `tx` is to the subscription, if anything.
async fn forward(
    state: &AppState,
    socket: &mut WebSocket,
    follow: &mut (dyn Follow + Send),
    tx: &CommittedTx,
) -> Result<(), Option<(u16, String)>> {
    match follow.message(tx)? {
        Some(message) => send(state, socket, message).await,
        None => Ok(()),
    }
}

/// Runs a subscription until it ends: waits until the transaction its
/// first rows are as of (`upto`) is durable, sends them (`first`), then a
/// message per later transaction that changes what it follows. The close
/// code and reason, if the server ends it.
async fn run(
    state: &AppState,
    socket: &mut WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<Arc<CommittedTx>>,
    upto: u64,
    first: serde_json::Value,
    follow: &mut (dyn Follow + Send),
) -> Option<(u16, String)> {
    let mut stopping = state.stopping.clone();
    let mut early = Vec::new();
    // Wait until the rows' transaction is durable.
    while state.db.released_tx() < upto {
        tokio::select! {
            got = rx.recv() => match got {
                Ok(tx) if tx.tx_id <= upto => {}
                Ok(tx) => early.push(tx),
                Err(RecvError::Lagged(n)) => return Some(lagged(state, n)),
                Err(RecvError::Closed) => return Some(going_away()),
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(reason) = state.db.log().poisoned() {
                    return Some((close_code::ERROR, format!("the log refuses writes: {reason}")));
                }
            }
            _ = stopping.changed() => return Some(going_away()),
        }
    }
    if let Err(reason) = send(state, socket, first).await {
        return reason;
    }
    for tx in early {
        if let Err(reason) = forward(state, socket, follow, &tx).await {
            return reason;
        }
    }
    loop {
        tokio::select! {
            got = rx.recv() => {
                let tx = match got {
                    Ok(tx) => tx,
                    Err(RecvError::Lagged(n)) => return Some(lagged(state, n)),
                    Err(RecvError::Closed) => return Some(going_away()),
                };
                if tx.tx_id <= upto {
                    continue;
                }
                if let Err(reason) = forward(state, socket, follow, &tx).await {
                    return reason;
                }
            }
            incoming = socket.recv() => match incoming {
                // The client closed, or the connection dropped.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(_)) => {}
            },
            _ = stopping.changed() => return Some(going_away()),
        }
    }
}

fn lagged(state: &AppState, missed: u64) -> (u16, String) {
    (
        CLOSE_SLOW,
        format!(
            "slow consumer: fell more than {} transactions behind ({missed} missed); subscribe again",
            state.config.subscription_buffer
        ),
    )
}

pub(crate) fn going_away() -> (u16, String) {
    (close_code::AWAY, "the server is shutting down".into())
}

impl Subscription {
    /// What a committed change of one row is to this subscriber: the same
    /// change, or for a filtered subscription, an insert when the row moves
    /// into the filter, a delete when it moves out, or nothing.
    fn seen_as(&mut self, op: MutationOp, row: &serde_json::Value) -> Option<MutationOp> {
        let Some((column, value)) = &self.filter else {
            return Some(op);
        };
        let pk = row[self.pk_column.as_str()].to_string();
        let matches = row[column.as_str()] == *value;
        let held = self.holds.contains(&pk);
        match (op, matches, held) {
            (MutationOp::Delete, _, true) | (_, false, true) => {
                self.holds.remove(&pk);
                Some(MutationOp::Delete)
            }
            (MutationOp::Delete, _, false) | (_, false, false) => None,
            (_, true, true) => Some(MutationOp::Update),
            (_, true, false) => {
                self.holds.insert(pk);
                Some(MutationOp::Insert)
            }
        }
    }
}

/// A table subscription: its table's changes, seen through its filter.
struct TableFollow {
    sub: Subscription,
    table_id: u32,
    table_def: TableDef,
}

impl Follow for TableFollow {
    fn message(
        &mut self,
        tx: &CommittedTx,
    ) -> Result<Option<serde_json::Value>, Option<(u16, String)>> {
        if tx.module != self.sub.module {
            return Ok(None);
        }
        let reducer = module_event(tx, &self.sub.module, self.sub.version)?;
        let mut changes = Vec::new();
        for m in tx.mutations.iter().filter(|m| m.table == self.table_id) {
            let row = committed_row(&m.row, &self.table_def)?;
            if let Some(op) = self.sub.seen_as(m.op, &row) {
                changes.push(serde_json::json!({"op": op_name(op), "row": row}));
            }
        }
        Ok(tx_message(tx, reducer, changes))
    }
}

/// A committed row as JSON; one that does not decode ends the
/// subscription.
fn committed_row(row: &[u8], def: &TableDef) -> Result<serde_json::Value, Option<(u16, String)>> {
    row_to_json(row, def).map_err(|e| {
        Some((
            close_code::ERROR,
            format!("a committed row does not decode: {e}"),
        ))
    })
}

fn op_name(op: MutationOp) -> &'static str {
    match op {
        MutationOp::Insert => "insert",
        MutationOp::Update => "update",
        MutationOp::Delete => "delete",
    }
}

/// A transaction's message, when it changed anything the subscriber holds.
fn tx_message(
    tx: &CommittedTx,
    reducer: String,
    changes: Vec<serde_json::Value>,
) -> Option<serde_json::Value> {
    (!changes.is_empty()).then(|| {
        serde_json::json!({
            "type": "tx",
            "tx_id": tx.tx_id,
            "timestamp": tx.timestamp_micros,
            "reducer": reducer,
            "changes": changes,
        })
    })
}

/// A SQL subscription: the changes each transaction made to its live
/// query's answer, computed when the transaction committed.
struct QueryFollow {
    module: String,
    version: Option<u32>,
    query_id: u64,
    table_def: TableDef,
}

impl Follow for QueryFollow {
    fn message(
        &mut self,
        tx: &CommittedTx,
    ) -> Result<Option<serde_json::Value>, Option<(u16, String)>> {
        if tx.module != self.module {
            return Ok(None);
        }
        let reducer = module_event(tx, &self.module, self.version)?;
        let Some(delta) = tx.queries.iter().find(|d| d.query_id == self.query_id) else {
            return Ok(None);
        };
        let deltas = delta.changes.as_ref().map_err(|e| {
            Some((
                close_code::ERROR,
                format!("the query can no longer be followed: {e}"),
            ))
        })?;
        let mut changes = Vec::with_capacity(deltas.len());
        for d in deltas {
            let row = committed_row(&d.row, &self.table_def)?;
            changes.push(serde_json::json!({"op": op_name(d.op), "row": row}));
        }
        Ok(tx_message(tx, reducer, changes))
    }
}

/// `GET /v1/modules/{module}/subscribe?sql=...`: a subscription to a SQL
/// query (docs/sql.md "Subscriptions"), with the same messages as a table
/// subscription.
pub(crate) async fn subscribe_sql(
    State(state): State<Arc<AppState>>,
    Path(module): Path<String>,
    headers: HeaderMap,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let who = auth::who(&headers, &state.token, &state.tokens).await?;
    let params = params
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request("query", e.body_text()))?;
    let text = match params.as_slice() {
        [(name, text)] if name == "sql" => text.clone(),
        _ => {
            return Err(ApiError::bad_request(
                "sql",
                "give the query as the one parameter `sql`",
            ));
        }
    };
    let ws = ws.map_err(not_websocket)?;
    let session = open_session(&state, &who, &module).await?;
    let guard = session_guard(&state, session);
    // Join the feed first: every transaction after the answer's arrives.
    let rx = state.changes.subscribe();
    let db = state.db.clone();
    let budget = state.config.sql_budget();
    let max_live = state.config.sql_live_max;
    let m = module.clone();
    let start = crate::routes::blocking(move || {
        db.subscribe_sql(&m, &text, who.reader(), &budget, max_live)
            .map_err(ApiError::from)
    })
    .await?;
    // The live query ends with the subscription, however it ends.
    let unsubscribe = {
        let (db, module, id) = (state.db.clone(), module.clone(), start.query_id);
        OnEnd::new(move || {
            let _ = db.unsubscribe_sql(&module, id);
        })
    };
    let Some(table_def) = start
        .def
        .tables
        .iter()
        .find(|t| t.name == start.table)
        .cloned()
    else {
        return Err(ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the query's table is not in the module's definition",
        ));
    };
    let rows = start
        .rows
        .iter()
        .map(|r| row_to_json(r, &table_def))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                e.to_string(),
            )
        })?;
    let first = serde_json::json!({"type": "rows", "tx_id": start.tx_id, "rows": rows});
    let mut follow = QueryFollow {
        module,
        version: Some(start.version),
        query_id: start.query_id,
        table_def,
    };
    let alive = state.sessions.clone();
    let upto = start.tx_id;
    Ok(ws.on_upgrade(move |socket| async move {
        let _alive = alive;
        let mut socket = socket;
        let reason = run(&state, &mut socket, rx, upto, first, &mut follow).await;
        if let Some((code, reason)) = reason {
            close(&state, &mut socket, code, reason).await;
        }
        unsubscribe.run().await;
        guard.run().await;
    }))
}

/// `GET /v1/modules/{module}/logs`: the module's log lines, as guests write
/// them, over a WebSocket (admin token required).
pub(crate) async fn logs(
    State(state): State<Arc<AppState>>,
    Path(module): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    auth::check(&headers, &state.token)?;
    if state.db.module_def(&module)?.is_none() {
        return Err(ApiError::not_found(format!("no module named `{module}`")));
    }
    let ws = ws.map_err(not_websocket)?;
    let mut rx = state.logs.subscribe();
    let session = state.sessions.clone();
    Ok(ws.on_upgrade(move |mut socket| async move {
        let _session = session;
        let mut stopping = state.stopping.clone();
        loop {
            let message = tokio::select! {
                got = rx.recv() => match got {
                    Ok(line) if line.module != module => continue,
                    Ok(line) => serde_json::json!({
                        "type": "log",
                        "module": line.module,
                        "reducer": line.reducer,
                        "tx_id": line.tx_id,
                        "committed": line.committed,
                        "level": line.line.level_name(),
                        "message": line.line.message,
                    }),
                    Err(RecvError::Lagged(n)) => serde_json::json!({"type": "lagged", "missed": n}),
                    Err(RecvError::Closed) => break,
                },
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => continue,
                },
                _ = stopping.changed() => break,
            };
            if send(&state, &mut socket, message).await.is_err() {
                return;
            }
        }
        let (code, reason) = going_away();
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(reason),
            })))
            .await;
    }))
}
