//! Conformance of the client protocol (docs/client-protocol.md): a real
//! server process driven with raw frames of both encodings. The binary
//! frames are built and read here from the spec's tables, not with the
//! server's own code, and every binary message is turned into the JSON
//! message it stands for, so that one scenario checks both encodings
//! message for message.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use interstice_tests::guests;
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

mod common;

use common::serve::Server;

const OPERATOR: &str = "69c4955a8db29f265213f07e48970eecd3ea70a7b7c01f5fd21c919d945d0636";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Enc {
    Json,
    Bin,
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// One client session over a raw socket.
struct Client {
    ws: Socket,
    enc: Enc,
}

/// How a session is opened: which subprotocols are offered, where the
/// token goes.
struct Open<'a> {
    protocols: Vec<String>,
    header_token: Option<&'a str>,
    query: &'a str,
}

fn open(server: &Server, module: &str, how: Open<'_>) -> Result<Socket, (u16, Value)> {
    let url = format!(
        "{}/v1/modules/{module}/connect{}",
        server.url.replacen("http://", "ws://", 1),
        how.query
    );
    let mut request = url.into_client_request().unwrap();
    if !how.protocols.is_empty() {
        request.headers_mut().insert(
            "sec-websocket-protocol",
            how.protocols.join(", ").parse().unwrap(),
        );
    }
    if let Some(token) = how.header_token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tungstenite::connect(request) {
        Ok((mut ws, _)) => {
            if let MaybeTlsStream::Plain(s) = ws.get_mut() {
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            }
            Ok(ws)
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((status, body))
        }
        Err(e) => panic!("connect: {e}"),
    }
}

fn protocol_of(enc: Enc) -> &'static str {
    match enc {
        Enc::Json => "interstice.v1.json",
        Enc::Bin => "interstice.v1.bin",
    }
}

impl Client {
    fn connect(server: &Server, module: &str, enc: Enc, token: Option<&str>) -> Client {
        let ws = open(
            server,
            module,
            Open {
                protocols: vec![protocol_of(enc).to_string()],
                header_token: token,
                query: "",
            },
        )
        .unwrap_or_else(|e| panic!("connect refused: {e:?}"));
        Client { ws, enc }
    }

    /// Sends a message given as its JSON form, in the session's encoding.
    fn send(&mut self, message: Value) {
        let frame = match self.enc {
            Enc::Json => Message::Text(message.to_string().into()),
            Enc::Bin => Message::Binary(encode_binary(&message).into()),
        };
        self.ws.send(frame).unwrap();
    }

    fn send_raw(&mut self, frame: Message) {
        self.ws.send(frame).unwrap();
    }

    /// The next message, as its JSON form.
    fn next(&mut self) -> Value {
        loop {
            match self.ws.read().expect("a message from the server") {
                Message::Text(t) => {
                    assert_eq!(self.enc, Enc::Json, "a text frame in a binary session");
                    return serde_json::from_str(&t).unwrap();
                }
                Message::Binary(b) => {
                    assert_eq!(self.enc, Enc::Bin, "a binary frame in a JSON session");
                    return decode_binary(&b);
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Reads until the server closes: the `closed` message and the close
    /// frame's code, which must agree.
    fn closed(&mut self) -> (Value, u16) {
        let mut note = Value::Null;
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => note = serde_json::from_str(&t).unwrap(),
                Ok(Message::Binary(b)) => note = decode_binary(&b),
                Ok(Message::Close(Some(frame))) => {
                    let code = u16::from(frame.code);
                    assert_eq!(note["type"], "closed", "{note}");
                    assert_eq!(note["code"], code, "{note}");
                    return (note, code);
                }
                Ok(Message::Close(None)) => panic!("closed without a code after {note}"),
                Ok(_) => {}
                Err(e) => panic!("the socket failed before a close frame: {e} (last: {note})"),
            }
        }
    }
}

// --- The binary encoding, from the spec's tables. ---

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

/// A bank reducer's arguments (every parameter is a u64) as an argument
/// row.
fn u64_row(args: &Value) -> Vec<u8> {
    let mut row = Vec::new();
    for a in args.as_array().unwrap() {
        row.extend_from_slice(&a.as_u64().unwrap().to_le_bytes());
    }
    row
}

fn encode_binary(m: &Value) -> Vec<u8> {
    let id = m["id"].as_u64().unwrap() as u32;
    let mut out = Vec::new();
    match m["type"].as_str().unwrap() {
        "call" => {
            out.push(0x01);
            put_u32(&mut out, id);
            put_str(&mut out, m["reducer"].as_str().unwrap());
            let row = match &m["row"] {
                Value::Array(bytes) => bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
                _ => u64_row(&m["args"]),
            };
            put_u32(&mut out, row.len() as u32);
            out.extend_from_slice(&row);
        }
        "subscribe" => {
            out.push(0x02);
            put_u32(&mut out, id);
            let queries = m["queries"].as_array().unwrap();
            put_u32(&mut out, queries.len() as u32);
            for q in queries {
                put_str(&mut out, q.as_str().unwrap());
            }
        }
        "unsubscribe" => {
            out.push(0x03);
            put_u32(&mut out, id);
            put_u32(&mut out, m["subscription"].as_u64().unwrap() as u32);
        }
        "query" => {
            out.push(0x04);
            put_u32(&mut out, id);
            put_str(&mut out, m["sql"].as_str().unwrap());
        }
        other => panic!("no binary form for {other}"),
    }
    out
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        assert!(n <= self.0.len(), "message ends early");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take(2).try_into().unwrap())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn bytes(&mut self) -> Vec<u8> {
        let n = self.u32() as usize;
        self.take(n).to_vec()
    }
    fn str(&mut self) -> String {
        String::from_utf8(self.bytes()).unwrap()
    }
    fn opt(&mut self) -> bool {
        match self.u8() {
            0 => false,
            1 => true,
            t => panic!("option tag {t}"),
        }
    }
}

/// A row of the bank's `accounts` (id u64, balance u64) as JSON.
fn account_row(row: &[u8]) -> Value {
    assert_eq!(row.len(), 16, "an accounts row is two u64s");
    let id = u64::from_le_bytes(row[..8].try_into().unwrap());
    let balance = u64::from_le_bytes(row[8..].try_into().unwrap());
    json!({"id": id, "balance": balance})
}

fn decode_binary(frame: &[u8]) -> Value {
    let mut b = Bytes(frame);
    let kind = b.u8();
    let m = match kind {
        0x80 => {
            let protocol = b.u8();
            let module = b.str();
            let version = b.u32();
            let schema = b.str();
            let identity: String = b.take(32).iter().map(|x| format!("{x:02x}")).collect();
            let connection_id = if b.opt() { json!(b.u64()) } else { Value::Null };
            let token = b.opt().then(|| b.str());
            let tx_id = b.u64();
            let mut m = json!({"type": "identity", "protocol": protocol, "module": module,
                "version": version, "schema": schema, "identity": identity, "connection_id": connection_id,
                "tx_id": tx_id});
            if let Some(t) = token {
                m["token"] = t.into();
            }
            m
        }
        0x81 => {
            let (id, subscription, tx_id) = (b.u32(), b.u32(), b.u64());
            let n = b.u32();
            let queries: Vec<Value> = (0..n)
                .map(|_| {
                    let table = b.str();
                    let key = ["id", "balance"][b.u32() as usize];
                    let rows: Vec<Value> = (0..b.u32()).map(|_| account_row(&b.bytes())).collect();
                    json!({"table": table, "key": key, "rows": rows})
                })
                .collect();
            json!({"type": "subscribed", "id": id, "subscription": subscription,
                "tx_id": tx_id, "queries": queries})
        }
        0x82 => json!({"type": "unsubscribed", "id": b.u32(), "subscription": b.u32()}),
        0x83 => {
            let (tx_id, timestamp, reducer) = (b.u64(), b.i64(), b.str());
            let updates: Vec<Value> = (0..b.u32())
                .map(|_| {
                    let (subscription, query) = (b.u32(), b.u32());
                    let changes: Vec<Value> = (0..b.u32())
                        .map(|_| {
                            let op = ["insert", "update", "delete"][b.u8() as usize];
                            json!({"op": op, "row": account_row(&b.bytes())})
                        })
                        .collect();
                    json!({"subscription": subscription, "query": query, "changes": changes})
                })
                .collect();
            json!({"type": "tx", "tx_id": tx_id, "timestamp": timestamp, "reducer": reducer,
                "updates": updates})
        }
        0x84 => {
            json!({"type": "call_result", "id": b.u32(), "tx_id": b.u64(), "timestamp": b.i64()})
        }
        0x85 => {
            let (id, tx_id) = (b.u32(), b.u64());
            let columns: Vec<(String, String)> = (0..b.u32()).map(|_| (b.str(), b.str())).collect();
            let rows: Vec<Value> = (0..b.u32())
                .map(|_| {
                    let row = b.bytes();
                    let mut r = Bytes(&row);
                    let values: Vec<Value> = columns
                        .iter()
                        .map(|(_, ty)| match ty.as_str() {
                            "u64" => json!(r.u64()),
                            "i64" => json!(r.i64()),
                            "option<u64>" => match r.opt() {
                                true => json!(r.u64()),
                                false => Value::Null,
                            },
                            other => panic!("no decoder here for {other}"),
                        })
                        .collect();
                    assert!(r.0.is_empty(), "bytes after the row's values");
                    Value::Array(values)
                })
                .collect();
            let columns: Vec<Value> = columns
                .into_iter()
                .map(|(name, ty)| json!({"name": name, "type": ty}))
                .collect();
            json!({"type": "query_result", "id": id, "tx_id": tx_id, "columns": columns, "rows": rows})
        }
        0x86 => {
            let id = if b.opt() { json!(b.u32()) } else { Value::Null };
            let (code, message) = (b.str(), b.str());
            let mut m = json!({"type": "error", "id": id, "code": code, "message": message});
            if b.opt() {
                m["field"] = b.str().into();
            }
            m
        }
        0x87 => json!({"type": "closed", "code": b.u16(), "reason": b.str()}),
        other => panic!("unknown server message kind 0x{other:02x}"),
    };
    assert!(b.0.is_empty(), "{} bytes after {m}", b.0.len());
    m
}

// --- Helpers over the JSON forms. ---

fn publish(server: &Server, name: &str, guest: &str) {
    let wasm = std::fs::read(guest).unwrap();
    let status = match common::agent()
        .put(&format!("{}/v1/modules/{name}", server.url))
        .header("Authorization", &format!("Bearer {}", server.token))
        .send(&wasm[..])
    {
        Ok(r) => r.status().as_u16(),
        Err(e) => panic!("publish: {e}"),
    };
    assert!(status == 201 || status == 200, "publish {name}: {status}");
}

fn call(id: u32, reducer: &str, args: Value) -> Value {
    json!({"type": "call", "id": id, "reducer": reducer, "args": args})
}

/// (op, row) pairs in the order [`changes_of`] gives them.
fn sorted(mut changes: Vec<(&str, Value)>) -> Vec<(String, Value)> {
    changes.sort_by_key(|(op, row)| (op.to_string(), row.to_string()));
    changes
        .into_iter()
        .map(|(op, row)| (op.to_string(), row))
        .collect()
}

/// The changes of one query in a `tx` message, sorted, as (op, row).
fn changes_of(tx: &Value, subscription: &Value, query: u64) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = tx["updates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["subscription"] == *subscription && u["query"] == query)
        .flat_map(|u| u["changes"].as_array().unwrap().clone())
        .map(|c| (c["op"].as_str().unwrap().to_string(), c["row"].clone()))
        .collect();
    out.sort_by_key(|(op, row)| (op.clone(), row.to_string()));
    out
}

fn row(id: u64, balance: u64) -> Value {
    json!({"id": id, "balance": balance})
}

/// A call's `tx` message, then its `call_result`: returns the tx.
fn tx_then_result(c: &mut Client, id: u32, reducer: &str) -> Value {
    let tx = c.next();
    assert_eq!(tx["type"], "tx", "{tx}");
    assert_eq!(tx["reducer"], reducer, "{tx}");
    let result = c.next();
    assert_eq!(
        result,
        json!({"type": "call_result", "id": id, "tx_id": tx["tx_id"], "timestamp": tx["timestamp"]}),
        "the call's result follows its transaction"
    );
    tx
}

fn error(c: &mut Client) -> Value {
    let e = c.next();
    assert_eq!(e["type"], "error", "{e}");
    e
}

/// Every message kind, every request error and every bad frame the
/// encoding can have, on one session of the bank, which goes on after
/// each of them.
fn scenario(server: &Server, enc: Enc, module: &str) {
    publish(server, module, guests::BANK);
    let mut c = Client::connect(server, module, enc, Some(&server.token));
    let hello = c.next();
    assert_eq!(hello["type"], "identity", "{hello}");
    assert_eq!(hello["protocol"], 1);
    assert_eq!(hello["module"], module);
    assert_eq!(hello["version"], 1);
    let schema = hello["schema"].as_str().unwrap();
    assert_eq!(schema.len(), 64, "{hello}");
    assert_eq!(hello["identity"], OPERATOR);
    assert_eq!(
        hello["connection_id"],
        Value::Null,
        "the bank keeps no sessions"
    );
    assert!(
        hello.get("token").is_none(),
        "no token is issued to a client with one"
    );
    let start = hello["tx_id"].as_u64().unwrap();
    assert!(start >= 1, "the publication came before: {hello}");

    // Two queries in one subscription, as of one transaction.
    c.send(json!({"type": "subscribe", "id": 1,
        "queries": ["accounts", "SELECT * FROM accounts WHERE balance >= 100"]}));
    let sub = c.next();
    assert_eq!(sub["type"], "subscribed", "{sub}");
    assert_eq!(sub["id"], 1);
    assert!(sub["tx_id"].as_u64().unwrap() >= start);
    assert_eq!(
        sub["queries"],
        json!([{"table": "accounts", "key": "id", "rows": []},
            {"table": "accounts", "key": "id", "rows": []}])
    );
    let s = sub["subscription"].clone();

    c.send(call(2, "open_account", json!([1, 500])));
    let tx = tx_then_result(&mut c, 2, "open_account");
    assert!(tx["tx_id"].as_u64().unwrap() > sub["tx_id"].as_u64().unwrap());
    assert_eq!(changes_of(&tx, &s, 0), [("insert".into(), row(1, 500))]);
    assert_eq!(changes_of(&tx, &s, 1), [("insert".into(), row(1, 500))]);

    // Below the filter: only the first query changes.
    c.send(call(3, "open_account", json!([2, 50])));
    let tx = tx_then_result(&mut c, 3, "open_account");
    assert_eq!(changes_of(&tx, &s, 0), [("insert".into(), row(2, 50))]);
    assert_eq!(tx["updates"].as_array().unwrap().len(), 1, "{tx}");

    // A row that starts to match the filter is an insert there.
    c.send(call(4, "transfer", json!([1, 2, 60])));
    let tx = tx_then_result(&mut c, 4, "transfer");
    assert_eq!(
        changes_of(&tx, &s, 0),
        sorted(vec![("update", row(1, 440)), ("update", row(2, 110))])
    );
    assert_eq!(
        changes_of(&tx, &s, 1),
        sorted(vec![("insert", row(2, 110)), ("update", row(1, 440))])
    );

    // A failed call: its error, by id; nothing changed, so no tx.
    c.send(call(5, "transfer", json!([2, 1, 1000])));
    let e = error(&mut c);
    assert_eq!(
        (&e["id"], &e["code"]),
        (&json!(5), &json!("reducer_failed")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("insufficient funds"),
        "{e}"
    );

    c.send(json!({"type": "query", "id": 6,
        "sql": "SELECT count(*) AS n, sum(balance) AS total FROM accounts"}));
    let q = c.next();
    assert_eq!(q["type"], "query_result", "{q}");
    assert_eq!(q["id"], 6);
    assert_eq!(q["tx_id"], tx["tx_id"], "as of the newest transaction");
    assert_eq!(q["rows"], json!([[2, 550]]), "{q}");
    assert_eq!(q["columns"][0]["name"], "n");

    // Bad frames: an error each, the session goes on.
    match enc {
        Enc::Json => {
            c.send_raw(Message::Text("{not json".into()));
            let e = error(&mut c);
            assert_eq!(
                (&e["id"], &e["code"]),
                (&Value::Null, &json!("bad_frame")),
                "{e}"
            );
            c.send_raw(Message::Text(r#"{"type":"teleport","id":7}"#.into()));
            let e = error(&mut c);
            assert_eq!(
                (&e["id"], &e["code"]),
                (&json!(7), &json!("unknown_message")),
                "{e}"
            );
            c.send_raw(Message::Text(
                r#"{"type":"call","id":8,"reducer":"deposit","args":[1,1],"x":1}"#.into(),
            ));
            let e = error(&mut c);
            assert_eq!(
                (&e["id"], &e["code"]),
                (&json!(8), &json!("bad_frame")),
                "{e}"
            );
            c.send_raw(Message::Binary(vec![0x01, 0, 0, 0, 0].into()));
            let e = error(&mut c);
            assert_eq!(e["code"], "bad_frame", "{e}");
            assert!(e["message"].as_str().unwrap().contains("JSON"), "{e}");
            // Arguments that are not the parameters.
            c.send(call(9, "deposit", json!(["one", 1])));
            let e = error(&mut c);
            assert_eq!(
                (&e["id"], &e["code"]),
                (&json!(9), &json!("bad_request")),
                "{e}"
            );
        }
        Enc::Bin => {
            c.send_raw(Message::Binary(vec![0x01, 7].into()));
            let e = error(&mut c);
            assert_eq!(
                (&e["id"], &e["code"]),
                (&Value::Null, &json!("bad_frame")),
                "{e}"
            );
            c.send_raw(Message::Binary(vec![0x55, 7, 0, 0, 0].into()));
            let e = error(&mut c);
            assert_eq!(
                (&e["id"], &e["code"]),
                (&json!(7), &json!("unknown_message")),
                "{e}"
            );
            let mut trailing = encode_binary(&call(8, "deposit", json!([1, 1])));
            trailing.push(0);
            c.send_raw(Message::Binary(trailing.into()));
            let e = error(&mut c);
            assert_eq!(
                (&e["id"], &e["code"]),
                (&json!(8), &json!("bad_frame")),
                "{e}"
            );
            c.send_raw(Message::Text(
                r#"{"type":"query","id":1,"sql":"SELECT 1"}"#.into(),
            ));
            let e = error(&mut c);
            assert_eq!(e["code"], "bad_frame", "{e}");
            assert!(e["message"].as_str().unwrap().contains("binary"), "{e}");
            // An argument row that is not two u64s: refused by the host
            // before any guest runs.
            c.send(json!({"type": "call", "id": 9, "reducer": "deposit", "row": [1, 2, 3]}));
            let e = error(&mut c);
            assert_eq!(
                (&e["id"], &e["code"], &e["field"]),
                (&json!(9), &json!("bad_request"), &json!("args")),
                "{e}"
            );
        }
    }
    c.send(call(10, "nope", json!([])));
    let e = error(&mut c);
    assert_eq!(
        (&e["id"], &e["code"]),
        (&json!(10), &json!("not_found")),
        "{e}"
    );
    c.send(json!({"type": "subscribe", "id": 11, "queries": ["SELEKT everything"]}));
    let e = error(&mut c);
    assert_eq!(
        (&e["id"], &e["code"]),
        (&json!(11), &json!("bad_query")),
        "{e}"
    );
    c.send(json!({"type": "subscribe", "id": 12, "queries": ["accounts", "nowhere"]}));
    let e = error(&mut c);
    assert_eq!(e["id"], 12, "{e}");
    assert!(
        e["message"].as_str().unwrap().starts_with("query 1: "),
        "{e}"
    );
    c.send(json!({"type": "subscribe", "id": 13, "queries": []}));
    assert_eq!(error(&mut c)["id"], 13);

    // Unsubscribed: the next call's changes are not sent, only its result.
    c.send(json!({"type": "unsubscribe", "id": 14, "subscription": s}));
    assert_eq!(
        c.next(),
        json!({"type": "unsubscribed", "id": 14, "subscription": s})
    );
    c.send(call(15, "deposit", json!([1, 1])));
    let r = c.next();
    assert_eq!(
        (&r["type"], &r["id"]),
        (&json!("call_result"), &json!(15)),
        "{r}"
    );
    c.send(json!({"type": "unsubscribe", "id": 16, "subscription": s}));
    let e = error(&mut c);
    assert_eq!(
        (&e["id"], &e["code"]),
        (&json!(16), &json!("not_found")),
        "{e}"
    );

    // A new subscription starts from the state as it is now.
    c.send(json!({"type": "subscribe", "id": 17, "queries": ["accounts"]}));
    let sub = c.next();
    assert_eq!(sub["id"], 17, "{sub}");
    assert_eq!(sub["tx_id"], r["tx_id"]);
    assert_ne!(sub["subscription"], s, "subscriptions are not reused");
    let mut rows = sub["queries"][0]["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r["id"].as_u64());
    assert_eq!(rows, [row(1, 441), row(2, 110)]);

    // A frame past the limit (1 MiB) closes the session with 1009.
    match enc {
        Enc::Json => c.send_raw(Message::Text("x".repeat(2 << 20).into())),
        Enc::Bin => c.send_raw(Message::Binary(vec![0x04; 2 << 20].into())),
    }
    let (note, code) = c.closed();
    assert_eq!(code, 1009, "{note}");
    // And the server goes on.
    let mut again = Client::connect(server, module, enc, Some(&server.token));
    assert_eq!(again.next()["type"], "identity");
    again.send(
        json!({"type": "query", "id": 1, "sql": "SELECT sum(balance) AS total FROM accounts"}),
    );
    assert_eq!(again.next()["rows"], json!([[551]]));

    // A new version of the module ends the session with 1012.
    publish(server, module, guests::BANK_V2);
    let (note, code) = again.closed();
    assert_eq!(code, 1012, "{note}");
    assert!(
        note["reason"].as_str().unwrap().contains("version 2"),
        "{note}"
    );
    // Deleting the module ends a session on it with 1000.
    let mut last = Client::connect(server, module, enc, Some(&server.token));
    assert_eq!(last.next()["version"], 2);
    let deleted = common::agent()
        .delete(&format!("{}/v1/modules/{module}", server.url))
        .header("Authorization", &format!("Bearer {}", server.token))
        .call()
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    let (note, code) = last.closed();
    assert_eq!(code, 1000, "{note}");
}

#[test]
fn every_message_and_every_bad_frame_in_both_encodings() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    scenario(&server, Enc::Json, "bank_json");
    scenario(&server, Enc::Bin, "bank_bin");
}

/// Many calls in flight on one session, past the session's limit: they
/// run in the order sent, their answers come in that order, each after
/// the transaction that carries its changes, and a cache kept from the
/// messages ends equal to the table.
#[test]
fn pipelined_calls_run_and_answer_in_order_after_their_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_configured(tmp.path(), "session_calls_max = 8\n");
    publish(&server, "bank", guests::BANK);
    for enc in [Enc::Json, Enc::Bin] {
        let mut c = Client::connect(&server, "bank", enc, Some(&server.token));
        assert_eq!(c.next()["type"], "identity");
        let base = if enc == Enc::Json { 0 } else { 100 };
        c.send(json!({"type": "subscribe", "id": 0, "queries": ["accounts"]}));
        let sub = c.next();
        let mut cache: BTreeMap<u64, Value> = sub["queries"][0]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["id"].as_u64().unwrap(), r.clone()))
            .collect();
        // Opens four accounts, then 300 transfers among them, some of
        // which fail, all sent before any answer is read.
        let mut sent = Vec::new();
        for i in 0..4u64 {
            sent.push(call(
                sent.len() as u32 + 1,
                "open_account",
                json!([base + i, 100]),
            ));
        }
        let mut x = 7u64;
        for _ in 0..300 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let from = base + (x >> 33) % 4;
            let to = base + (x >> 40) % 4;
            let amount = (x >> 50) % 80;
            sent.push(call(
                sent.len() as u32 + 1,
                "transfer",
                json!([from, to, amount]),
            ));
        }
        for m in &sent {
            c.send(m.clone());
        }
        let mut answered = Vec::new();
        let mut last_tx = sub["tx_id"].as_u64().unwrap();
        // Transactions whose changes came and whose call is not answered.
        let mut unanswered = std::collections::BTreeSet::new();
        let mut last_result = 0;
        let mut failed = 0;
        while answered.len() < sent.len() {
            let m = c.next();
            match m["type"].as_str().unwrap() {
                "tx" => {
                    let tx = m["tx_id"].as_u64().unwrap();
                    assert!(tx > last_tx, "tx ids go forward: {tx} after {last_tx}");
                    last_tx = tx;
                    unanswered.insert(tx);
                    for u in m["updates"].as_array().unwrap() {
                        for ch in u["changes"].as_array().unwrap() {
                            let r = &ch["row"];
                            let id = r["id"].as_u64().unwrap();
                            match ch["op"].as_str().unwrap() {
                                "insert" => assert!(cache.insert(id, r.clone()).is_none()),
                                "update" => assert!(cache.insert(id, r.clone()).is_some()),
                                op => panic!("{op} in a bank workload"),
                            }
                        }
                    }
                }
                "call_result" => {
                    let tx = m["tx_id"].as_u64().unwrap();
                    let id = m["id"].as_u64().unwrap() as usize;
                    // A result follows its own tx message, unless the call
                    // changed nothing (a transfer to the same account, or
                    // of nothing).
                    if !unanswered.remove(&tx) {
                        let args = &sent[id - 1]["args"];
                        assert!(args[0] == args[1] || args[2] == 0, "no tx before {m}");
                    }
                    // Calls commit in the order sent: each answered one
                    // came after every one answered before it.
                    assert!(tx > last_result, "{m}");
                    assert!(
                        unanswered.iter().all(|t| *t > tx),
                        "answered out of commit order: {m}"
                    );
                    last_result = tx;
                    answered.push(m["id"].as_u64().unwrap());
                }
                "error" => {
                    assert_eq!(m["code"], "reducer_failed", "{m}");
                    failed += 1;
                    answered.push(m["id"].as_u64().unwrap());
                }
                other => panic!("unexpected {other}: {m}"),
            }
        }
        assert!(
            unanswered.is_empty(),
            "transactions no call made: {unanswered:?}"
        );
        let expected: Vec<u64> = (1..=sent.len() as u64).collect();
        assert_eq!(answered, expected, "answers come in the order of the calls");
        assert!(
            failed > 0 && failed < 300,
            "{failed} of 300 transfers failed"
        );
        // The cache is the table.
        c.send(json!({"type": "query", "id": 999,
            "sql": format!("SELECT id, balance FROM accounts WHERE id >= {base} AND id < {}", base + 4)}));
        let q = c.next();
        let table: BTreeMap<u64, u64> = q["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r[0].as_u64().unwrap(), r[1].as_u64().unwrap()))
            .collect();
        let cached: BTreeMap<u64, u64> = cache
            .iter()
            .filter(|(id, _)| (base..base + 4).contains(*id))
            .map(|(id, r)| (*id, r["balance"].as_u64().unwrap()))
            .collect();
        assert_eq!(cached, table);
        assert_eq!(table.values().sum::<u64>(), 400, "transfers conserve money");
    }
}

/// Tokens in each of the three places, anonymous sessions with a token
/// issued, lifecycle reducers, private tables, and the handshake's
/// refusals.
#[test]
fn identities_tokens_sessions_and_private_tables() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    publish(&server, "lobby", guests::LOBBY);
    let offer = |protocols: &[&str], header: Option<&str>, query: &str| {
        open(
            &server,
            "lobby",
            Open {
                protocols: protocols.iter().map(|p| p.to_string()).collect(),
                header_token: header,
                query,
            },
        )
    };
    // No token: a new identity, and its token.
    let mut anon = Client {
        ws: offer(&["interstice.v1.json"], None, "").unwrap(),
        enc: Enc::Json,
    };
    let hello = anon.next();
    let identity = hello["identity"].as_str().unwrap().to_string();
    let token = hello["token"]
        .as_str()
        .expect("a token for an anonymous client")
        .to_string();
    let connection = hello["connection_id"]
        .as_u64()
        .expect("the lobby keeps sessions");
    assert_ne!(identity, OPERATOR);
    // client_connected ran as that identity, in that session.
    anon.send(json!({"type": "query", "id": 1,
        "sql": "SELECT connected, sender, connection_id FROM events"}));
    let events = anon.next();
    assert_eq!(
        events["rows"],
        json!([[true, identity, connection]]),
        "{events}"
    );
    // A private table is refused to it, by subscription and by query.
    anon.send(json!({"type": "subscribe", "id": 2, "queries": ["secrets"]}));
    let e = error(&mut anon);
    assert_eq!(
        (&e["id"], &e["code"]),
        (&json!(2), &json!("forbidden")),
        "{e}"
    );
    anon.send(json!({"type": "query", "id": 3, "sql": "SELECT * FROM secrets"}));
    assert_eq!(error(&mut anon)["code"], "forbidden");
    anon.send(call(4, "whoami", json!([])));
    assert_eq!(anon.next()["type"], "call_result");
    anon.ws.close(None).unwrap();
    while anon.ws.read().is_ok() {}

    // The same token, as a subprotocol (browsers) and as a parameter.
    let bearer = format!("interstice.bearer.{token}");
    let mut again = Client {
        ws: offer(&["interstice.v1.bin", &bearer], None, "").unwrap(),
        enc: Enc::Bin,
    };
    let hello = again.next();
    assert_eq!(hello["identity"], identity);
    assert!(hello.get("token").is_none());
    let mut by_query = Client {
        ws: offer(&[], None, &format!("?token={token}")).unwrap(),
        enc: Enc::Json,
    };
    assert_eq!(
        by_query.next()["identity"],
        identity,
        "no subprotocol: JSON"
    );

    // The owner (here the operator) reads the private table.
    let mut owner = Client::connect(&server, "lobby", Enc::Json, Some(&server.token));
    assert_eq!(owner.next()["identity"], OPERATOR);
    owner.send(call(1, "keep_secret", json!([1, "s3"])));
    assert_eq!(owner.next()["type"], "call_result");
    owner.send(json!({"type": "subscribe", "id": 2, "queries": ["secrets"]}));
    let sub = owner.next();
    assert_eq!(
        sub["queries"][0]["rows"],
        json!([{"id": 1, "text": "s3"}]),
        "{sub}"
    );

    // The first session's end ran client_disconnected for it (once the
    // server has seen the close: asked until then, within a bound).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut id = 3;
    loop {
        owner.send(json!({"type": "query", "id": id,
            "sql": format!("SELECT connected FROM events WHERE connection_id = {connection}")}));
        id += 1;
        let q = owner.next();
        let mut seen: Vec<bool> = q["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r[0].as_bool().unwrap())
            .collect();
        seen.sort();
        if seen == [false, true] {
            break;
        }
        assert_eq!(seen, [true], "{q}");
        assert!(
            std::time::Instant::now() < deadline,
            "client_disconnected never ran"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The handshake's refusals, before any upgrade.
    let status = |r: Result<Socket, (u16, Value)>| match r {
        Ok(_) => panic!("the handshake was accepted"),
        Err((status, body)) => (
            status,
            body["error"]["code"].as_str().unwrap_or("").to_string(),
        ),
    };
    assert_eq!(
        status(offer(&["interstice.v1.json"], Some("nonsense"), "")).0,
        401
    );
    assert_eq!(
        status(offer(&["interstice.v1.json", &bearer], Some(&token), "")),
        (400, "bad_request".into()),
        "two tokens"
    );
    assert_eq!(
        status(offer(&["graphql-ws"], None, "")),
        (400, "bad_request".into()),
        "no encoding offered"
    );
    assert_eq!(
        status(offer(&[&bearer], None, "")),
        (400, "bad_request".into()),
        "a bearer subprotocol needs an encoding beside it"
    );
    assert_eq!(
        status(offer(&[], None, "?tokn=1")),
        (400, "bad_request".into())
    );
    assert_eq!(
        status(open(
            &server,
            "nowhere",
            Open {
                protocols: vec![],
                header_token: None,
                query: "",
            }
        ))
        .0,
        404
    );
    // client_connected refuses: 403 with its reason.
    owner.send(call(id, "close_door", json!(["closed for cleaning"])));
    assert_eq!(owner.next()["type"], "call_result");
    let (code, _) = status(offer(
        &["interstice.v1.json"],
        None,
        &format!("?token={token}"),
    ));
    assert_eq!(code, 403);
    drop(again);
    drop(by_query);

    // Anonymous sessions can be turned off.
    let tmp2 = tempfile::tempdir().unwrap();
    let strict = Server::start_configured(tmp2.path(), "anonymous_sessions = false\n");
    publish(&strict, "bank", guests::BANK);
    let refused = open(
        &strict,
        "bank",
        Open {
            protocols: vec!["interstice.v1.json".into()],
            header_token: None,
            query: "",
        },
    );
    assert_eq!(status(refused), (401, "unauthorized".into()));
}

/// SIGTERM with calls in flight: every call the server took is answered
/// before the session closes with 1001, and after a restart the data holds
/// exactly the answered calls.
#[test]
fn shutdown_answers_the_calls_in_flight_then_closes_with_1001() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);
    publish(&server, "bank", guests::BANK);
    let mut c = Client::connect(&server, "bank", Enc::Bin, Some(&server.token));
    assert_eq!(c.next()["type"], "identity");
    c.send(call(1, "open_account", json!([1, 0])));
    assert_eq!(c.next()["type"], "call_result");
    for i in 0..400u32 {
        c.send(call(2 + i, "deposit", json!([1, 1])));
    }
    // Some are answered; then the server is told to stop.
    let mut answered = 0u64;
    let mut next_id = 2;
    while answered < 20 {
        let m = c.next();
        assert_eq!(m["type"], "call_result", "{m}");
        assert_eq!(m["id"], next_id);
        next_id += 1;
        answered += 1;
    }
    let token = server.token.clone();
    let stopper = std::thread::spawn(move || server.stop());
    let code = loop {
        match c.ws.read() {
            Ok(Message::Binary(b)) => {
                let m = decode_binary(&b);
                match m["type"].as_str().unwrap() {
                    "call_result" => {
                        assert_eq!(m["id"], next_id, "in order");
                        next_id += 1;
                        answered += 1;
                    }
                    "closed" => {}
                    other => panic!("unexpected {other}: {m}"),
                }
            }
            Ok(Message::Close(Some(frame))) => break u16::from(frame.code),
            Ok(_) => {}
            Err(e) => panic!("the socket failed before a close frame: {e}"),
        }
    };
    assert_eq!(code, 1001);
    let (status, stderr) = stopper.join().unwrap();
    assert!(status.success(), "{stderr}");
    // Restarted, the balance is exactly the answered deposits.
    let server = Server::start(&dir, &[]);
    assert_eq!(server.token, token);
    let mut c = Client::connect(&server, "bank", Enc::Json, Some(&server.token));
    c.next();
    c.send(json!({"type": "query", "id": 1, "sql": "SELECT balance FROM accounts WHERE id = 1"}));
    assert_eq!(
        c.next()["rows"],
        json!([[answered]]),
        "{answered} deposits were answered"
    );
}
