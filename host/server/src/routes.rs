//! The HTTP routes (docs/http-api.md).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use interstice_runtime::{PublishOptions, RowQuery};

use crate::AppState;
use crate::auth;
use crate::error::ApiError;

/// Response header: the primary key to pass as `after` for the next page.
pub const NEXT_AFTER_HEADER: &str = "x-interstice-next-after";
/// Response header: the last transaction a read includes.
pub const TX_ID_HEADER: &str = "x-interstice-tx-id";

type Shared = State<Arc<AppState>>;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.body_limit_bytes;
    let module_limit = state.config.module_limit_bytes;
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/identity", post(new_identity))
        .route("/v1/modules", get(list_modules))
        .route(
            "/v1/modules/{module}",
            put(publish)
                .delete(delete_module)
                .layer(DefaultBodyLimit::max(module_limit)),
        )
        .route("/v1/modules/{module}/schema", get(schema))
        .route(
            "/v1/modules/{module}/reducers/{reducer}",
            post(call).layer(DefaultBodyLimit::max(body_limit)),
        )
        .route("/v1/modules/{module}/tables/{table}", get(read_table))
        .route(
            "/v1/modules/{module}/sql",
            post(sql).layer(DefaultBodyLimit::max(interstice_runtime::sql::TEXT_MAX)),
        )
        .route(
            "/v1/modules/{module}/tables/{table}/subscribe",
            get(crate::subscribe::subscribe),
        )
        .route(
            "/v1/modules/{module}/subscribe",
            get(crate::subscribe::subscribe_sql),
        )
        .route("/v1/modules/{module}/logs", get(crate::subscribe::logs))
        .route("/v1/modules/{module}/connect", get(crate::session::connect));
    let router = match &state.config.static_dir {
        // The API's unknown paths stay JSON errors; the rest are files.
        Some(dir) => router
            .route("/v1/{*rest}", axum::routing::any(not_found))
            .fallback_service(
                tower_http::services::ServeDir::new(dir).append_index_html_on_directories(true),
            ),
        None => router.fallback(not_found),
    };
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// The routes of `health_listen`: `/healthz` and `/metrics` only.
pub(crate) fn health_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see docs/http-api.md")
}

/// A place among the table reads and SQL statements admitted and not yet
/// answered (`reads_queued_max`), held until the work is done (even if
/// its client leaves first); 503 `overloaded` when none is free. Each
/// holds the database for up to `sql_max_millis`, so an unbounded number
/// of them would make every reducer call wait without bound.
fn admit_read(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.reads.clone().try_acquire_owned().map_err(|_| {
        state.metrics.reads_shed.inc();
        ApiError::overloaded(format!(
            "{} reads and SQL statements are waiting already (reads_queued_max); try again",
            state.config.reads_queued_max
        ))
    })
}

/// Runs blocking database work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the request's work failed: {e}"),
        )
    })?
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if crate::listen::timed_out(&e) {
            return ApiError {
                field: Some("body".into()),
                ..ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", e.body_text())
            };
        }
        let status = e.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            _ => "bad_request",
        };
        ApiError {
            field: Some("body".into()),
            ..ApiError::new(status, code, e.body_text())
        }
    })
}

fn query_params(
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Vec<(String, String)>, ApiError> {
    params
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request("query", e.body_text()))
}

async fn healthz(State(state): Shared) -> Response {
    match state.db.log().poisoned() {
        None => "ok\n".into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the log refuses writes: {reason}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): Shared) -> Result<Response, ApiError> {
    let text = state.metrics.render().map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("metrics: {e}"),
        )
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

/// A new identity and its token.
async fn new_identity(State(state): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    // A bad token here is refused like anywhere else.
    auth::who(&headers, &state.token, &state.tokens).await?;
    let (identity, token) = state
        .tokens
        .issue()
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "identity": identity.to_string(),
            "token": token,
        })),
    )
        .into_response())
}

/// Who may publish or delete: anyone with a token, as far as the route is
/// concerned; the database checks ownership.
async fn publisher(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<interstice_runtime::Identity, ApiError> {
    match auth::who(headers, &state.token, &state.tokens).await? {
        auth::Who::Anonymous => Err(auth::needs_token("publishing and deleting modules")),
        who => Ok(who
            .caller()
            .map(|c| c.identity)
            .unwrap_or_else(interstice_runtime::Identity::operator)),
    }
}

async fn list_modules(State(state): Shared) -> Result<Response, ApiError> {
    let db = &state.db;
    let mut modules = Vec::new();
    for name in db.module_names()? {
        // A module deleted since the names were read is left out.
        let (Some(def), Some(version)) = (db.module_def(&name)?, db.module_version(&name)?) else {
            continue;
        };
        modules.push(serde_json::json!({
            "name": name,
            "version": version,
            "tables": def.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            "reducers": def.reducers.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        }));
    }
    Ok(axum::Json(modules).into_response())
}

async fn schema(State(state): Shared, Path(module): Path<String>) -> Result<Response, ApiError> {
    let def = state
        .db
        .module_def(&module)?
        .ok_or_else(|| ApiError::not_found(format!("no module named `{module}`")))?;
    let mut doc = serde_json::to_value(&*def)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    doc["name"] = module.as_str().into();
    doc["version"] = state.db.module_version(&module)?.into();
    Ok(axum::Json(doc).into_response())
}

async fn publish(
    State(state): Shared,
    Path(module): Path<String>,
    headers: HeaderMap,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
    wasm: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let by = publisher(&headers, &state).await?;
    let mut options = PublishOptions {
        by,
        anyone_may_create: state.config.anyone_may_publish,
        ..PublishOptions::default()
    };
    for (key, value) in query_params(params)? {
        match (key.as_str(), value.as_str()) {
            ("clear", "true" | "1" | "") => options.clear = true,
            ("clear", "false" | "0") => options.clear = false,
            ("clear", _) => return Err(ApiError::bad_request("clear", "expected true or false")),
            ("owner", owner) => {
                options.owner =
                    Some(owner.parse().map_err(|_| {
                        ApiError::bad_request("owner", "an identity is 64 hex digits")
                    })?);
            }
            (other, _) => {
                return Err(ApiError::bad_request(
                    other,
                    format!("unknown query parameter `{other}`"),
                ));
            }
        }
    }
    let wasm = body(wasm)?;
    let db = state.db.clone();
    let name = module.clone();
    let published = blocking(move || {
        db.publish_with(&name, &wasm, options)
            .map_err(ApiError::from)
    })
    .await?;
    let status = match published.version {
        1 if !published.replaced => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    tracing::info!(
        "module `{module}` published: version {}, tx {:?}",
        published.version,
        published.tx_id
    );
    let answer = serde_json::json!({
        "module": module,
        "version": published.version,
        "tx_id": published.tx_id,
        "replaced": published.replaced,
        "changes": published.changes,
        "tables": published.def.tables.len(),
        "reducers": published.def.reducers.len(),
    });
    Ok((status, axum::Json(answer)).into_response())
}

async fn delete_module(
    State(state): Shared,
    Path(module): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let by = publisher(&headers, &state).await?;
    let db = state.db.clone();
    let name = module.clone();
    let tx_id = blocking(move || db.drop_module_as(&name, by).map_err(ApiError::from)).await?;
    tracing::info!("module `{module}` deleted in tx {tx_id}");
    Ok(axum::Json(serde_json::json!({ "module": module, "tx_id": tx_id })).into_response())
}

async fn call(
    State(state): Shared,
    Path((module, reducer)): Path<(String, String)>,
    headers: HeaderMap,
    args: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let caller = auth::who(&headers, &state.token, &state.tokens)
        .await?
        .caller()
        .ok_or_else(|| auth::needs_token("calling a reducer"))?;
    let args = body(args)?;
    let args: serde_json::Value = if args.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Array(Vec::new())
    } else {
        serde_json::from_slice(&args).map_err(|e| {
            ApiError::bad_request("body", format!("arguments are not valid JSON: {e}"))
        })?
    };
    let answered = state
        .calls
        .call(crate::calls::Call {
            module,
            reducer,
            args: crate::protocol::Args::Json(args),
            caller,
        })
        .await;
    let result = match answered {
        Ok(answer) => answer.map(|(_, outcome)| outcome).map_err(|f| f.error),
        Err(crate::calls::Refused::Full) => {
            state.metrics.calls_shed.inc();
            Err(ApiError::overloaded(format!(
                "{} calls are waiting already (calls_queued_max); try again",
                state.config.calls_queued_max
            )))
        }
        Err(crate::calls::Refused::Stopping) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the server is stopping; the call was not answered",
        )),
    };
    match result {
        Ok(outcome) => {
            state.metrics.calls_committed.inc();
            state
                .metrics
                .commit_latency
                .observe(started.elapsed().as_secs_f64());
            Ok(axum::Json(serde_json::json!({
                "tx_id": outcome.tx_id,
                "timestamp": outcome.timestamp_micros,
            }))
            .into_response())
        }
        Err(e) => {
            state.metrics.calls_failed.inc();
            Err(e)
        }
    }
}

async fn read_table(
    State(state): Shared,
    Path((module, table)): Path<(String, String)>,
    headers: HeaderMap,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let who = auth::who(&headers, &state.token, &state.tokens).await?;
    check_readable(&state, &who, &module, &table)?;
    let config = &state.config;
    let mut query = RowQuery {
        limit: config.page_default,
        ..RowQuery::default()
    };
    for (key, value) in query_params(params)? {
        match key.as_str() {
            "limit" => {
                query.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=config.page_max).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "limit",
                            format!("expected a number from 1 to {}", config.page_max),
                        )
                    })?;
            }
            "after" => query.after = Some(value),
            _ if query.filter.is_some() => {
                return Err(ApiError::bad_request(key, "filter on one column at a time"));
            }
            _ => query.filter = Some((key, value)),
        }
    }
    let admitted = admit_read(&state)?;
    let db = state.db.clone();
    let page = blocking(move || {
        let _admitted = admitted;
        db.query(&module, &table, &query).map_err(ApiError::from)
    })
    .await?;
    let mut response = axum::Json(page.rows).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&page.tx_id.to_string()) {
        headers.insert(TX_ID_HEADER, v);
    }
    if let Some(next) = page.next_after {
        let text = ascii_json(&next);
        let value = HeaderValue::from_str(&text).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?;
        headers.insert(NEXT_AFTER_HEADER, value);
    }
    Ok(response)
}

/// One SQL query, the body's text (docs/sql.md): every table for the
/// module's owner and the admin token, public tables for everyone else.
async fn sql(
    State(state): Shared,
    Path(module): Path<String>,
    headers: HeaderMap,
    text: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let who = auth::who(&headers, &state.token, &state.tokens).await?;
    let text = body(text)?;
    let text = String::from_utf8(text.to_vec())
        .map_err(|_| ApiError::bad_request("body", "the query is not UTF-8 text"))?;
    let admitted = admit_read(&state)?;
    let db = state.db.clone();
    let budget = state.config.sql_budget();
    let answer = blocking(move || {
        let _admitted = admitted;
        db.sql(&module, &text, who.reader(), &budget)
            .map_err(ApiError::from)
    })
    .await?;
    let mut response = axum::Json(answer.to_json()).into_response();
    if let Ok(v) = HeaderValue::from_str(&answer.tx_id.to_string()) {
        response.headers_mut().insert(TX_ID_HEADER, v);
    }
    Ok(response)
}

/// Refuses a private table to everyone but the operator and the module's
/// owner (403, naming the table). A table that does not exist is left to the read itself (404).
pub(crate) fn check_readable(
    state: &AppState,
    who: &auth::Who,
    module: &str,
    table: &str,
) -> Result<(), ApiError> {
    if who.is_operator() {
        return Ok(());
    }
    let Some(def) = state.db.module_def(module)? else {
        return Ok(());
    };
    if let auth::Who::Identity(caller) = who
        && caller.identity == def.owner()
    {
        return Ok(());
    }
    let private = def
        .tables
        .iter()
        .find(|t| t.name == table)
        .is_some_and(|t| !t.public);
    if private {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "table `{table}` of module `{module}` is private: only its reducers, its owner and the operator read it"
            ),
        ));
    }
    Ok(())
}

/// JSON text with every character outside printable ASCII escaped, so that
/// it fits in a header.
fn ascii_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}
