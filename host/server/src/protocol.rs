//! The client protocol's messages and their two encodings, JSON and binary
//! (docs/client-protocol.md, version 1). Pure: bytes in, messages out, and
//! back; the session (`session.rs`) does the talking.
//!
//! Every client frame is hostile. Decoding reads no further than the frame,
//! allocates no more than the frame's own length, and answers every bad
//! frame with a [`Refusal`] that names the request when its id could be
//! read, so that one bad frame costs its sender one error message and
//! nothing else.

use interstice_runtime::sql::Column;
use interstice_runtime::{Identity, SqlAnswer};
use interstice_store::json::row_to_json;
use interstice_store::{MutationOp, TableDef, Value, codec};
use serde::Deserialize;

/// The protocol's version, in its subprotocol names and its first message.
pub const VERSION: u8 = 1;
/// Subprotocol of the JSON encoding: text frames, one JSON object each.
pub const JSON_PROTOCOL: &str = "interstice.v1.json";
/// Subprotocol of the binary encoding: binary frames.
pub const BINARY_PROTOCOL: &str = "interstice.v1.bin";
/// Prefix of the subprotocol that carries a token, for browsers (which
/// cannot set headers on a WebSocket). Never echoed back.
pub const BEARER_PREFIX: &str = "interstice.bearer.";

/// How a session's frames are encoded, chosen by subprotocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Binary,
}

/// Client message kinds (the first byte of a binary frame).
pub mod kind {
    pub const CALL: u8 = 0x01;
    pub const SUBSCRIBE: u8 = 0x02;
    pub const UNSUBSCRIBE: u8 = 0x03;
    pub const QUERY: u8 = 0x04;

    pub const IDENTITY: u8 = 0x80;
    pub const SUBSCRIBED: u8 = 0x81;
    pub const UNSUBSCRIBED: u8 = 0x82;
    pub const TX: u8 = 0x83;
    pub const CALL_RESULT: u8 = 0x84;
    pub const QUERY_RESULT: u8 = 0x85;
    pub const ERROR: u8 = 0x86;
    pub const CLOSED: u8 = 0x87;
}

/// A reducer call's arguments as the client sent them.
#[derive(Clone, Debug, PartialEq)]
pub enum Args {
    /// JSON: an array in parameter order, or an object by parameter name.
    Json(serde_json::Value),
    /// Binary: the argument row, in the row encoding.
    Row(Vec<u8>),
}

/// A message from the client.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    Call {
        id: u32,
        reducer: String,
        args: Args,
    },
    Subscribe {
        id: u32,
        queries: Vec<String>,
    },
    Unsubscribe {
        id: u32,
        subscription: u32,
    },
    Query {
        id: u32,
        sql: String,
    },
}

/// Why a client frame is not a message: answered with an `error` message
/// (naming the request when its id could be read), and the session goes
/// on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub id: Option<u32>,
    /// `bad_frame` (not a message at all) or `unknown_message` (a kind
    /// this server does not know).
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    fn frame(id: Option<u32>, message: impl Into<String>) -> Refusal {
        Refusal {
            id,
            code: "bad_frame",
            message: message.into(),
        }
    }
}

/// Decodes a text frame of a JSON session.
pub fn decode_json(text: &str) -> Result<ClientMessage, Refusal> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Refusal::frame(None, format!("not a JSON message: {e}")))?;
    let object = value
        .as_object()
        .ok_or_else(|| Refusal::frame(None, "a message is a JSON object"))?;
    let id = match object.get("id") {
        Some(v) => Some(
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| Refusal::frame(None, "`id` is a number from 0 to 4294967295"))?,
        ),
        None => None,
    };
    let ty = object
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| Refusal::frame(id, "a message has a string `type`"))?;
    let Some(id) = id else {
        return Err(Refusal::frame(
            None,
            format!("a `{ty}` message needs an `id`"),
        ));
    };
    let bad = |e: serde_json::Error| Refusal::frame(Some(id), format!("a `{ty}` message: {e}"));
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Call {
        #[serde(rename = "type")]
        _ty: String,
        #[serde(rename = "id")]
        _id: u32,
        reducer: String,
        #[serde(default)]
        args: Option<serde_json::Value>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Subscribe {
        #[serde(rename = "type")]
        _ty: String,
        #[serde(rename = "id")]
        _id: u32,
        queries: Vec<String>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Unsubscribe {
        #[serde(rename = "type")]
        _ty: String,
        #[serde(rename = "id")]
        _id: u32,
        subscription: u32,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Query {
        #[serde(rename = "type")]
        _ty: String,
        #[serde(rename = "id")]
        _id: u32,
        sql: String,
    }
    match ty {
        "call" => {
            let m: Call = serde_json::from_value(value.clone()).map_err(bad)?;
            Ok(ClientMessage::Call {
                id,
                reducer: m.reducer,
                args: Args::Json(
                    m.args
                        .unwrap_or_else(|| serde_json::Value::Array(Vec::new())),
                ),
            })
        }
        "subscribe" => {
            let m: Subscribe = serde_json::from_value(value.clone()).map_err(bad)?;
            Ok(ClientMessage::Subscribe {
                id,
                queries: m.queries,
            })
        }
        "unsubscribe" => {
            let m: Unsubscribe = serde_json::from_value(value.clone()).map_err(bad)?;
            Ok(ClientMessage::Unsubscribe {
                id,
                subscription: m.subscription,
            })
        }
        "query" => {
            let m: Query = serde_json::from_value(value.clone()).map_err(bad)?;
            Ok(ClientMessage::Query { id, sql: m.sql })
        }
        other => Err(Refusal {
            id: Some(id),
            code: "unknown_message",
            message: format!("no message type `{other}` in protocol version {VERSION}"),
        }),
    }
}

/// Reads a binary frame, never past its end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let left = self.bytes.len() - self.at;
        if n > left {
            return Err(format!(
                "the frame ends inside {what} ({n} bytes needed at offset {}, {left} left)",
                self.at
            ));
        }
        let out = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }

    fn str(&mut self, what: &str) -> Result<String, String> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn end(&self) -> Result<(), String> {
        match self.bytes.len() - self.at {
            0 => Ok(()),
            n => Err(format!("{n} bytes after the end of the message")),
        }
    }
}

/// Decodes a binary frame of a binary session: the kind byte, the request
/// id (u32 LE), then the kind's fields.
pub fn decode_binary(frame: &[u8]) -> Result<ClientMessage, Refusal> {
    let mut r = Reader {
        bytes: frame,
        at: 0,
    };
    let head = r
        .u8("the message kind")
        .and_then(|k| Ok((k, r.u32("the request id")?)));
    let (kind, id) = head.map_err(|e| Refusal::frame(None, e))?;
    let bad = |e: String| Refusal::frame(Some(id), e);
    let message = match kind {
        kind::CALL => {
            let reducer = r.str("the reducer's name").map_err(bad)?;
            let args = r.bytes("the argument row").map_err(bad)?.to_vec();
            ClientMessage::Call {
                id,
                reducer,
                args: Args::Row(args),
            }
        }
        kind::SUBSCRIBE => {
            let n = r.u32("the query count").map_err(bad)?;
            // Each query takes at least its 4-byte length: a count the
            // frame cannot hold is refused before anything is allocated.
            if n as usize > (frame.len() - r.at) / 4 {
                return Err(bad(format!("{n} queries do not fit in the frame")));
            }
            let mut queries = Vec::with_capacity(n as usize);
            for _ in 0..n {
                queries.push(r.str("a query").map_err(bad)?);
            }
            ClientMessage::Subscribe { id, queries }
        }
        kind::UNSUBSCRIBE => ClientMessage::Unsubscribe {
            id,
            subscription: r.u32("the subscription").map_err(bad)?,
        },
        kind::QUERY => ClientMessage::Query {
            id,
            sql: r.str("the query").map_err(bad)?,
        },
        other => {
            return Err(Refusal {
                id: Some(id),
                code: "unknown_message",
                message: format!("no message kind 0x{other:02x} in protocol version {VERSION}"),
            });
        }
    };
    r.end().map_err(bad)?;
    Ok(message)
}

/// The rows of one query of a subscription, as of its start.
pub struct QueryRows<'a> {
    pub table: &'a TableDef,
    pub rows: &'a [interstice_store::RowBytes],
}

/// One row change in a `tx` message.
pub struct Change<'a> {
    pub op: MutationOp,
    pub row: &'a [u8],
}

/// What one transaction changed in one query of a subscription.
pub struct Update<'a> {
    pub subscription: u32,
    pub query: u32,
    pub table: &'a TableDef,
    pub changes: Vec<Change<'a>>,
}

/// A message from the server.
pub enum ServerMessage<'a> {
    Identity {
        module: &'a str,
        version: u32,
        /// [`interstice_store::ModuleDef::fingerprint`] of the version.
        schema: &'a str,
        identity: Identity,
        connection_id: Option<u64>,
        /// A token the server issued for this session (anonymous clients).
        token: Option<&'a str>,
        /// Every transaction up to this one happened before the session.
        tx_id: u64,
    },
    Subscribed {
        id: u32,
        subscription: u32,
        tx_id: u64,
        queries: Vec<QueryRows<'a>>,
    },
    Unsubscribed {
        id: u32,
        subscription: u32,
    },
    Tx {
        tx_id: u64,
        timestamp: i64,
        reducer: &'a str,
        updates: Vec<Update<'a>>,
    },
    CallResult {
        id: u32,
        tx_id: u64,
        timestamp: i64,
    },
    QueryResult {
        id: u32,
        answer: &'a SqlAnswer,
    },
    Error {
        id: Option<u32>,
        code: &'a str,
        message: &'a str,
        field: Option<&'a str>,
    },
    Closed {
        code: u16,
        reason: &'a str,
    },
}

/// The opcode of a row change: insert 0, update 1, delete 2.
pub fn op_code(op: MutationOp) -> u8 {
    match op {
        MutationOp::Insert => 0,
        MutationOp::Update => 1,
        MutationOp::Delete => 2,
    }
}

fn op_name(op: MutationOp) -> &'static str {
    match op {
        MutationOp::Insert => "insert",
        MutationOp::Update => "update",
        MutationOp::Delete => "delete",
    }
}

/// A frame to send: text for JSON, bytes for binary.
#[derive(Debug)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

/// Why a message could not be encoded: a committed row that does not
/// decode under its table's definition (the session ends; the data needs
/// `interstice verify`).
#[derive(Debug, thiserror::Error)]
#[error("a committed row of `{table}` does not decode: {reason}")]
pub struct EncodeError {
    pub table: String,
    pub reason: String,
}

fn json_row(row: &[u8], table: &TableDef) -> Result<serde_json::Value, EncodeError> {
    row_to_json(row, table).map_err(|e| EncodeError {
        table: table.name.clone(),
        reason: e.to_string(),
    })
}

/// Writes the binary encoding's parts.
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        // Frames are far below 4 GiB (the session's frame limit): a length
        // always fits.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

impl ServerMessage<'_> {
    pub fn encode(&self, encoding: Encoding) -> Result<Frame, EncodeError> {
        Ok(match encoding {
            Encoding::Json => Frame::Text(self.to_json()?.to_string()),
            Encoding::Binary => Frame::Binary(self.to_binary()),
        })
    }

    fn to_json(&self) -> Result<serde_json::Value, EncodeError> {
        use serde_json::json;
        Ok(match self {
            ServerMessage::Identity {
                module,
                version,
                schema,
                identity,
                connection_id,
                token,
                tx_id,
            } => {
                let mut m = json!({
                    "type": "identity",
                    "protocol": VERSION,
                    "module": module,
                    "version": version,
                    "schema": schema,
                    "identity": identity.to_string(),
                    "connection_id": connection_id,
                    "tx_id": tx_id,
                });
                if let Some(token) = token {
                    m["token"] = (*token).into();
                }
                m
            }
            ServerMessage::Subscribed {
                id,
                subscription,
                tx_id,
                queries,
            } => {
                let mut out = Vec::with_capacity(queries.len());
                for q in queries {
                    let rows = q
                        .rows
                        .iter()
                        .map(|r| json_row(r, q.table))
                        .collect::<Result<Vec<_>, _>>()?;
                    let key = q
                        .table
                        .columns
                        .get(q.table.primary_key as usize)
                        .map(|c| c.name.as_str());
                    out.push(json!({"table": q.table.name, "key": key, "rows": rows}));
                }
                json!({
                    "type": "subscribed",
                    "id": id,
                    "subscription": subscription,
                    "tx_id": tx_id,
                    "queries": out,
                })
            }
            ServerMessage::Unsubscribed { id, subscription } => {
                json!({"type": "unsubscribed", "id": id, "subscription": subscription})
            }
            ServerMessage::Tx {
                tx_id,
                timestamp,
                reducer,
                updates,
            } => {
                let mut out = Vec::with_capacity(updates.len());
                for u in updates {
                    let mut changes = Vec::with_capacity(u.changes.len());
                    for c in &u.changes {
                        changes
                            .push(json!({"op": op_name(c.op), "row": json_row(c.row, u.table)?}));
                    }
                    out.push(json!({
                        "subscription": u.subscription,
                        "query": u.query,
                        "changes": changes,
                    }));
                }
                json!({
                    "type": "tx",
                    "tx_id": tx_id,
                    "timestamp": timestamp,
                    "reducer": reducer,
                    "updates": out,
                })
            }
            ServerMessage::CallResult {
                id,
                tx_id,
                timestamp,
            } => json!({"type": "call_result", "id": id, "tx_id": tx_id, "timestamp": timestamp}),
            ServerMessage::QueryResult { id, answer } => {
                let mut m = answer.to_json();
                m["type"] = "query_result".into();
                m["id"] = (*id).into();
                m
            }
            ServerMessage::Error {
                id,
                code,
                message,
                field,
            } => {
                let mut m = json!({"type": "error", "id": id, "code": code, "message": message});
                if let Some(field) = field {
                    m["field"] = (*field).into();
                }
                m
            }
            ServerMessage::Closed { code, reason } => {
                json!({"type": "closed", "code": code, "reason": reason})
            }
        })
    }

    fn to_binary(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        match self {
            ServerMessage::Identity {
                module,
                version,
                schema,
                identity,
                connection_id,
                token,
                tx_id,
            } => {
                w.u8(kind::IDENTITY);
                w.u8(VERSION);
                w.str(module);
                w.u32(*version);
                w.str(schema);
                w.0.extend_from_slice(&identity.0);
                match connection_id {
                    Some(c) => {
                        w.u8(1);
                        w.u64(*c);
                    }
                    None => w.u8(0),
                }
                match token {
                    Some(t) => {
                        w.u8(1);
                        w.str(t);
                    }
                    None => w.u8(0),
                }
                w.u64(*tx_id);
            }
            ServerMessage::Subscribed {
                id,
                subscription,
                tx_id,
                queries,
            } => {
                w.u8(kind::SUBSCRIBED);
                w.u32(*id);
                w.u32(*subscription);
                w.u64(*tx_id);
                w.len(queries.len());
                for q in queries {
                    w.str(&q.table.name);
                    w.u32(q.table.primary_key);
                    w.len(q.rows.len());
                    for row in q.rows {
                        w.bytes(row);
                    }
                }
            }
            ServerMessage::Unsubscribed { id, subscription } => {
                w.u8(kind::UNSUBSCRIBED);
                w.u32(*id);
                w.u32(*subscription);
            }
            ServerMessage::Tx {
                tx_id,
                timestamp,
                reducer,
                updates,
            } => {
                w.u8(kind::TX);
                w.u64(*tx_id);
                w.i64(*timestamp);
                w.str(reducer);
                w.len(updates.len());
                for u in updates {
                    w.u32(u.subscription);
                    w.u32(u.query);
                    w.len(u.changes.len());
                    for c in &u.changes {
                        w.u8(op_code(c.op));
                        w.bytes(c.row);
                    }
                }
            }
            ServerMessage::CallResult {
                id,
                tx_id,
                timestamp,
            } => {
                w.u8(kind::CALL_RESULT);
                w.u32(*id);
                w.u64(*tx_id);
                w.i64(*timestamp);
            }
            ServerMessage::QueryResult { id, answer } => {
                w.u8(kind::QUERY_RESULT);
                w.u32(*id);
                w.u64(answer.tx_id);
                w.len(answer.columns.len());
                for c in &answer.columns {
                    w.str(&c.name);
                    w.str(&c.ty.to_string());
                }
                w.len(answer.rows.len());
                for row in &answer.rows {
                    w.bytes(&answer_row(row, &answer.columns));
                }
            }
            ServerMessage::Error {
                id,
                code,
                message,
                field,
            } => {
                w.u8(kind::ERROR);
                match id {
                    Some(id) => {
                        w.u8(1);
                        w.u32(*id);
                    }
                    None => w.u8(0),
                }
                w.str(code);
                w.str(message);
                match field {
                    Some(f) => {
                        w.u8(1);
                        w.str(f);
                    }
                    None => w.u8(0),
                }
            }
            ServerMessage::Closed { code, reason } => {
                w.u8(kind::CLOSED);
                w.u16(*code);
                w.str(reason);
            }
        }
        w.0
    }
}

/// One row of a query's answer in the row encoding, its columns' types
/// in order.
fn answer_row(values: &[Value], columns: &[Column]) -> Vec<u8> {
    let mut out = Vec::new();
    for (v, c) in values.iter().zip(columns) {
        codec::encode_value(v, &c.ty, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary_call(id: u32, reducer: &str, args: &[u8]) -> Vec<u8> {
        let mut w = Writer(vec![kind::CALL]);
        w.u32(id);
        w.str(reducer);
        w.bytes(args);
        w.0
    }

    #[test]
    fn json_messages_decode_and_bad_ones_name_their_request() {
        assert_eq!(
            decode_json(r#"{"type":"call","id":7,"reducer":"send","args":["hi"]}"#),
            Ok(ClientMessage::Call {
                id: 7,
                reducer: "send".into(),
                args: Args::Json(serde_json::json!(["hi"])),
            })
        );
        // Arguments default to none.
        assert!(matches!(
            decode_json(r#"{"type":"call","id":1,"reducer":"tick"}"#),
            Ok(ClientMessage::Call { args: Args::Json(a), .. }) if a == serde_json::json!([])
        ));
        assert_eq!(
            decode_json(r#"{"type":"subscribe","id":2,"queries":["SELECT * FROM t","u"]}"#),
            Ok(ClientMessage::Subscribe {
                id: 2,
                queries: vec!["SELECT * FROM t".into(), "u".into()],
            })
        );
        let refused = |text: &str| decode_json(text).unwrap_err();
        let r = refused("{not json");
        assert_eq!((r.id, r.code), (None, "bad_frame"));
        let r = refused(r#"{"type":"teleport","id":9}"#);
        assert_eq!((r.id, r.code), (Some(9), "unknown_message"));
        let r = refused(r#"{"type":"call","id":3}"#);
        assert_eq!((r.id, r.code), (Some(3), "bad_frame"));
        assert!(r.message.contains("reducer"), "{}", r.message);
        let r = refused(r#"{"type":"call","id":3,"reducer":"x","extra":1}"#);
        assert!(r.message.contains("extra"), "{}", r.message);
        let r = refused(r#"{"type":"call","id":-1,"reducer":"x"}"#);
        assert_eq!(r.id, None);
        let r = refused(r#"{"type":"call","reducer":"x"}"#);
        assert_eq!(r.id, None);
        let r = refused(r#"[1,2]"#);
        assert_eq!(r.code, "bad_frame");
    }

    #[test]
    fn binary_messages_decode_exactly_and_refuse_every_truncation() {
        let frame = binary_call(0xdead_beef, "transfer", &[1, 2, 3]);
        assert_eq!(
            decode_binary(&frame),
            Ok(ClientMessage::Call {
                id: 0xdead_beef,
                reducer: "transfer".into(),
                args: Args::Row(vec![1, 2, 3]),
            })
        );
        // Every proper prefix is refused, with the id once it is whole.
        for cut in 0..frame.len() {
            let r = decode_binary(&frame[..cut]).unwrap_err();
            assert_eq!(r.code, "bad_frame", "cut at {cut}");
            assert_eq!(r.id, (cut >= 5).then_some(0xdead_beef), "cut at {cut}");
        }
        let mut longer = frame.clone();
        longer.push(0);
        let r = decode_binary(&longer).unwrap_err();
        assert!(r.message.contains("1 bytes after"), "{}", r.message);
        let r = decode_binary(&[0x7f, 5, 0, 0, 0]).unwrap_err();
        assert_eq!((r.id, r.code), (Some(5), "unknown_message"));
        // A query count larger than the frame could hold allocates nothing.
        let mut w = Writer(vec![kind::SUBSCRIBE]);
        w.u32(1);
        w.u32(u32::MAX);
        let r = decode_binary(&w.0).unwrap_err();
        assert!(r.message.contains("do not fit"), "{}", r.message);
        // A string that is not UTF-8.
        let mut w = Writer(vec![kind::QUERY]);
        w.u32(2);
        w.bytes(&[0xff, 0xfe]);
        assert!(decode_binary(&w.0).unwrap_err().message.contains("UTF-8"));
    }

    /// Random bytes never panic the decoder, and whatever it accepts
    /// re-encodes to the same bytes (the encoding has one form).
    #[test]
    fn random_binary_frames_never_panic_and_accepted_ones_are_canonical() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = (next() % 24) as usize;
            let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(k) = frame.first_mut() {
                *k = [
                    kind::CALL,
                    kind::SUBSCRIBE,
                    kind::UNSUBSCRIBE,
                    kind::QUERY,
                    0x55,
                ][(next() % 5) as usize];
            }
            // Small lengths, so that some frames are whole messages.
            for b in frame.iter_mut().skip(5).step_by(4) {
                *b %= 4;
            }
            if let Ok(m) = decode_binary(&frame) {
                accepted += 1;
                assert_eq!(encode_client(&m), frame, "{m:?}");
            }
        }
        assert!(accepted > 100, "only {accepted} frames were messages");
    }

    /// The client side's binary encoding, as docs/client-protocol.md gives
    /// it (the SDKs' job; here to check the decoder against).
    fn encode_client(m: &ClientMessage) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        match m {
            ClientMessage::Call { id, reducer, args } => {
                w.u8(kind::CALL);
                w.u32(*id);
                w.str(reducer);
                match args {
                    Args::Row(row) => w.bytes(row),
                    Args::Json(_) => unreachable!("binary calls carry rows"),
                }
            }
            ClientMessage::Subscribe { id, queries } => {
                w.u8(kind::SUBSCRIBE);
                w.u32(*id);
                w.len(queries.len());
                for q in queries {
                    w.str(q);
                }
            }
            ClientMessage::Unsubscribe { id, subscription } => {
                w.u8(kind::UNSUBSCRIBE);
                w.u32(*id);
                w.u32(*subscription);
            }
            ClientMessage::Query { id, sql } => {
                w.u8(kind::QUERY);
                w.u32(*id);
                w.str(sql);
            }
        }
        w.0
    }

    #[test]
    fn server_messages_have_the_documented_bytes() {
        let m = ServerMessage::CallResult {
            id: 7,
            tx_id: 0x0102,
            timestamp: -1,
        };
        let Frame::Binary(b) = m.encode(Encoding::Binary).unwrap() else {
            panic!("binary")
        };
        assert_eq!(
            b,
            [
                vec![0x84, 7, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0],
                vec![0xff; 8]
            ]
            .concat()
        );
        let Frame::Text(t) = m.encode(Encoding::Json).unwrap() else {
            panic!("text")
        };
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&t).unwrap(),
            serde_json::json!({"type": "call_result", "id": 7, "tx_id": 258, "timestamp": -1})
        );
        let m = ServerMessage::Error {
            id: None,
            code: "bad_frame",
            message: "x",
            field: None,
        };
        let Frame::Binary(b) = m.encode(Encoding::Binary).unwrap() else {
            panic!("binary")
        };
        assert_eq!(
            b,
            [
                &[0x86, 0][..],
                &[9, 0, 0, 0],
                b"bad_frame",
                &[1, 0, 0, 0],
                b"x",
                &[0]
            ]
            .concat()
        );
        let m = ServerMessage::Closed {
            code: 1013,
            reason: "slow",
        };
        let Frame::Binary(b) = m.encode(Encoding::Binary).unwrap() else {
            panic!("binary")
        };
        assert_eq!(b, [&[0x87, 0xf5, 0x03, 4, 0, 0, 0][..], b"slow"].concat());
    }

    #[test]
    fn a_query_answer_in_binary_is_each_row_in_the_row_encoding() {
        use interstice_store::AlgebraicType;
        let answer = SqlAnswer {
            tx_id: 3,
            columns: vec![
                Column {
                    name: "n".into(),
                    ty: AlgebraicType::U64,
                },
                Column {
                    name: "s".into(),
                    ty: AlgebraicType::option(AlgebraicType::String),
                },
            ],
            rows: vec![
                vec![Value::U64(5), Value::Null],
                vec![Value::U64(6), Value::String("é".into())],
            ],
        };
        let Frame::Binary(b) = (ServerMessage::QueryResult {
            id: 1,
            answer: &answer,
        })
        .encode(Encoding::Binary)
        .unwrap() else {
            panic!("binary")
        };
        let mut r = Reader { bytes: &b, at: 0 };
        assert_eq!(r.u8("k").unwrap(), kind::QUERY_RESULT);
        assert_eq!(r.u32("id").unwrap(), 1);
        assert_eq!(r.take(8, "tx").unwrap(), 3u64.to_le_bytes());
        assert_eq!(r.u32("columns").unwrap(), 2);
        assert_eq!(r.str("name").unwrap(), "n");
        assert_eq!(r.str("type").unwrap(), "u64");
        assert_eq!(r.str("name").unwrap(), "s");
        assert_eq!(r.str("type").unwrap(), "option<string>");
        assert_eq!(r.u32("rows").unwrap(), 2);
        let types = [
            AlgebraicType::U64,
            AlgebraicType::option(AlgebraicType::String),
        ];
        let mut decoded = Vec::new();
        for _ in 0..2 {
            let row = r.bytes("row").unwrap();
            decoded.push(codec::decode_row(row, &types).unwrap());
        }
        r.end().unwrap();
        assert_eq!(decoded, answer.rows);
    }
}
