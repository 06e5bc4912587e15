//! Errors as the HTTP API answers them: a status and a JSON body
//! `{"error": {"code", "message", "field"?, "changes"?}}` (docs/http-api.md).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use interstice_runtime::{CallError, DropError, ModuleError, Poisoned, PublishError, QueryError};
use interstice_store::json::JsonError;

/// An answer other than success.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// A stable, machine-readable name of the failure.
    pub code: &'static str,
    pub message: String,
    /// The argument or query parameter at fault, when there is one.
    pub field: Option<String>,
    /// For a refused upgrade: what changed.
    pub changes: Vec<String>,
    /// For a request shed under load: seconds after which to try again
    /// (the `Retry-After` header).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            changes: Vec::new(),
            retry_after: None,
        }
    }

    /// 503 `overloaded` with `Retry-After`: the server sheds this request
    /// instead of queueing it without bound.
    pub fn overloaded(message: impl Into<String>) -> Self {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }

    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({
            "code": self.code,
            "message": self.message,
        });
        if let Some(field) = self.field {
            error["field"] = field.into();
        }
        if !self.changes.is_empty() {
            error["changes"] = self.changes.into();
        }
        let mut response =
            (self.status, Json(serde_json::json!({ "error": error }))).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

fn unavailable(message: String) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let message = e.to_string();
        match e {
            CallError::UnknownModule(_) | CallError::UnknownReducer { .. } => {
                ApiError::not_found(message)
            }
            CallError::InitNotCallable(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "not_callable", message)
            }
            CallError::BadArguments(json) => {
                let field = match &json {
                    JsonError::Field { field, .. }
                    | JsonError::UnknownField(field)
                    | JsonError::MissingField(field) => field.clone(),
                    _ => "arguments".to_string(),
                };
                ApiError::bad_request(field, message)
            }
            CallError::BadArgumentRow(_) => ApiError::bad_request("args", message),
            CallError::ArgumentsTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            CallError::Reducer(_)
            | CallError::Schedule(_)
            | CallError::OutOfFuel { .. }
            | CallError::MemoryLimit(_)
            | CallError::Trap(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reducer_failed", message)
            }
            CallError::Durability(_) | CallError::Poisoned => unavailable(message),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let message = e.to_string();
        match e {
            QueryError::UnknownModule(_) | QueryError::UnknownTable { .. } => {
                ApiError::not_found(message)
            }
            QueryError::NotIndexed { column, .. } | QueryError::BadValue { column, .. } => {
                ApiError::bad_request(column, message)
            }
            QueryError::BadKey(_) => ApiError::bad_request("key", message),
            QueryError::Sql(e) => {
                use interstice_runtime::sql::SqlError as S;
                match e {
                    S::Private(_) | S::ReadOnly(_) => forbidden(message),
                    S::Refused(_) => ApiError::new(StatusCode::CONFLICT, "write_refused", message),
                    S::TooLong(_) => {
                        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
                    }
                    S::Budget { .. } => {
                        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "over_budget", message)
                    }
                    S::Eval(_) => {
                        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "query_failed", message)
                    }
                    S::Corrupt(_) => {
                        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
                    }
                    _ => ApiError {
                        field: Some("sql".into()),
                        ..ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message)
                    },
                }
            }
            QueryError::TooManyLive(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_queries", message)
            }
            QueryError::Poisoned | QueryError::Durability(_) => unavailable(message),
            // The inner error's status and code, with the position named.
            QueryError::InQuery { source, .. } => ApiError {
                message,
                ..ApiError::from(*source)
            },
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl From<Poisoned> for ApiError {
    fn from(e: Poisoned) -> Self {
        unavailable(e.to_string())
    }
}

fn bad_module(message: String) -> ApiError {
    ApiError {
        field: Some("body".into()),
        ..ApiError::new(StatusCode::BAD_REQUEST, "bad_module", message)
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        let message = e.to_string();
        match e {
            PublishError::Module(ModuleError::TooLarge { .. }) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            PublishError::Module(_) => bad_module(message),
            PublishError::InvalidName(_) => ApiError::bad_request("module", message),
            PublishError::SchemaChanged { changes, .. } => ApiError {
                changes,
                ..ApiError::new(StatusCode::CONFLICT, "schema_changed", message)
            },
            PublishError::MigrationRefused { .. } => {
                ApiError::new(StatusCode::CONFLICT, "migration_refused", message)
            }
            PublishError::InitFailed { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reducer_failed", message)
            }
            PublishError::NotOwner { .. }
            | PublishError::MayNotCreate(_)
            | PublishError::OwnerNotSelf => forbidden(message),
            PublishError::Durability(_) | PublishError::Poisoned => unavailable(message),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}

impl From<DropError> for ApiError {
    fn from(e: DropError) -> Self {
        let message = e.to_string();
        match e {
            DropError::UnknownModule(_) => ApiError::not_found(message),
            DropError::NotOwner { .. } => forbidden(message),
            DropError::Durability(_) | DropError::Poisoned => unavailable(message),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message),
        }
    }
}
