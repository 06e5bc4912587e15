//! `interstice serve` end to end: a real server process on loopback, a real
//! HTTP client and a real WebSocket client.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use interstice_tests::guests;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;

mod common;

use common::serve::Server;

const BIN: &str = env!("CARGO_BIN_EXE_interstice");

/// What these tests do with a server besides plain HTTP requests.
trait ServerExt {
    /// Publishes a guest as a new module over HTTP.
    fn publish(&self, name: &str, guest: &str);
    fn ws(&self, path: &str) -> Ws;
}

impl ServerExt for Server {
    fn publish(&self, name: &str, guest: &str) {
        let published = put_module(
            &agent(),
            &format!("{}/v1/modules/{name}", self.url),
            Some(&self.token),
            &std::fs::read(guest).unwrap(),
        );
        assert_eq!(published.status, 201, "{published:?}");
    }

    fn ws(&self, path: &str) -> Ws {
        let url = format!("{}{path}", self.url.replacen("http://", "ws://", 1));
        let (mut socket, _) = tungstenite::connect(url.as_str()).expect("websocket connects");
        if let MaybeTlsStream::Plain(s) = socket.get_mut() {
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        }
        socket
    }
}

type Ws = tungstenite::WebSocket<MaybeTlsStream<TcpStream>>;

/// An HTTP client that calls reducers (`POST .../reducers/...` without an
/// `Authorization` header of its own) with the server's admin token, and
/// reads anonymously: what these tests check is served to anyone who may.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .middleware(
            |mut request: ureq::http::Request<ureq::SendBody>,
             next: ureq::middleware::MiddlewareNext| {
                let uri = request.uri();
                let call = request.method() == "POST" && uri.path().contains("/reducers/");
                let token = uri
                    .authority()
                    .and_then(|a| common::serve::admin_token_of(a.as_str()));
                if call
                    && !request.headers().contains_key("authorization")
                    && let Some(token) = token
                {
                    request
                        .headers_mut()
                        .insert("authorization", format!("Bearer {token}").parse().unwrap());
                }
                next.handle(request)
            },
        )
        .build()
        .into()
}

/// An answer: status, body as JSON (or as a string if it is not JSON), and
/// the headers that matter.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    next_after: Option<String>,
    tx_id: Option<u64>,
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = response.expect("request reaches the server");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let next_after = header("x-interstice-next-after");
    let tx_id = header("x-interstice-tx-id").and_then(|v| v.parse().ok());
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        body,
        next_after,
        tx_id,
    }
}

fn get(a: &ureq::Agent, url: &str) -> Answer {
    answer(a.get(url).call())
}

fn post(a: &ureq::Agent, url: &str, body: &str) -> Answer {
    answer(a.post(url).send(body.as_bytes()))
}

fn put_module(a: &ureq::Agent, url: &str, token: Option<&str>, wasm: &[u8]) -> Answer {
    let mut request = a.put(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.send(wasm))
}

/// Reads the next JSON text message.
fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a message from the server") {
            tungstenite::Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            tungstenite::Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Applies a subscription's messages to a map of rows keyed by `id`.
fn apply(rows: &mut BTreeMap<u64, Value>, message: &Value) {
    for change in message["changes"].as_array().unwrap() {
        let row = &change["row"];
        let id = row["id"].as_u64().unwrap();
        match change["op"].as_str().unwrap() {
            "insert" => assert!(
                rows.insert(id, row.clone()).is_none(),
                "insert of a held row"
            ),
            "update" => assert!(
                rows.insert(id, row.clone()).is_some(),
                "update of an unknown row"
            ),
            "delete" => assert!(rows.remove(&id).is_some(), "delete of an unknown row"),
            op => panic!("unknown op {op}"),
        }
    }
}

fn keyed(rows: &Value) -> BTreeMap<u64, Value> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r.clone()))
        .collect()
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("INTERSTICE_ADMIN_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn publish_call_read_subscribe_then_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);
    let a = agent();
    let base = server.url.clone();

    // The token file: generated, owner-only, never in the server's output.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("admin-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Publish through the CLI client with the token file.
    let token_file = dir.join("admin-token");
    let out = cli(&[
        "publish",
        guests::CHAT,
        "--name",
        "chat",
        "--server",
        &base,
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let modules = get(&a, &format!("{base}/v1/modules"));
    assert_eq!(modules.status, 200);
    assert_eq!(modules.body[0]["name"], "chat");
    let schema = get(&a, &format!("{base}/v1/modules/chat/schema"));
    assert_eq!(schema.status, 200);
    assert_eq!(schema.body["tables"][1]["name"], "messages");
    assert_eq!(schema.body["reducers"][1]["name"], "register");
    assert_eq!(schema.body["reducers"][1]["params"][0]["ty"], "string");
    assert_eq!(
        schema.body["reducers"][1]["params"][1]["ty"],
        serde_json::json!({"option": "string"})
    );

    // Subscribers: every message, and the `general` channel only.
    let mut all = server.ws("/v1/modules/chat/tables/messages/subscribe");
    let mut general = server.ws("/v1/modules/chat/tables/messages/subscribe?channel=general");
    let first_all = next_json(&mut all);
    let first_general = next_json(&mut general);
    assert_eq!(first_all["type"], "rows");
    // The init reducer's welcome message, in `general`.
    assert_eq!(first_all["rows"].as_array().unwrap().len(), 1);
    assert_eq!(first_general["rows"], first_all["rows"]);

    let call = |reducer: &str, args: Value| {
        post(
            &a,
            &format!("{base}/v1/modules/chat/reducers/{reducer}"),
            &args.to_string(),
        )
    };
    // (reducer, tx id, whether it changes messages in `general`)
    let mut committed = Vec::new();
    for (reducer, args, general) in [
        ("register", json!(["alice", null]), false),
        ("register", json!({"name": "bob", "bio": "hi"}), false),
        ("send", json!(["alice", "general", "hello"]), true),
        ("send", json!(["bob", "random", "elsewhere"]), false),
        ("send", json!(["nobody", "general", "refused"]), false),
        ("send", json!(["bob", "general", "hi alice"]), true),
        ("clear_channel", json!(["general"]), true),
        ("send", json!(["alice", "general", "again"]), true),
    ] {
        let answer = call(reducer, args);
        if answer.status == 200 {
            let tx = answer.body["tx_id"].as_u64().unwrap();
            assert!(answer.body["timestamp"].as_i64().unwrap() > 0);
            committed.push((reducer, tx, general));
        } else {
            assert_eq!(answer.status, 422, "{answer:?}");
            assert!(
                answer.body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("no user named \"nobody\""),
                "{answer:?}"
            );
        }
    }
    // Through the CLI client as well.
    let out = cli(&[
        "call",
        "chat",
        "send",
        r#"["bob", "random", "from the cli"]"#,
        "--server",
        &base,
        "--token-file",
        dir.join("admin-token").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_tx: Value = serde_json::from_slice(&out.stdout).unwrap();
    committed.push(("send", cli_tx["tx_id"].as_u64().unwrap(), false));

    // The unfiltered subscriber sees exactly the committed transactions
    // that touched `messages`, in commit order, and they rebuild the table.
    let touching: Vec<u64> = committed
        .iter()
        .filter(|(r, _, _)| *r != "register")
        .map(|(_, tx, _)| *tx)
        .collect();
    let mut rows = keyed(&first_all["rows"]);
    let mut seen = Vec::new();
    while seen.len() < touching.len() {
        let m = next_json(&mut all);
        assert_eq!(m["type"], "tx", "{m}");
        seen.push(m["tx_id"].as_u64().unwrap());
        apply(&mut rows, &m);
    }
    assert_eq!(seen, touching);
    let table = get(&a, &format!("{base}/v1/modules/chat/tables/messages"));
    assert_eq!(table.status, 200);
    assert_eq!(rows, keyed(&table.body));

    // The filtered one sees only `general`, and ends with the same rows as
    // an indexed read.
    let in_general: Vec<u64> = committed
        .iter()
        .filter(|(_, _, general)| *general)
        .map(|(_, tx, _)| *tx)
        .collect();
    let mut rows = keyed(&first_general["rows"]);
    let mut general_seen = Vec::new();
    while general_seen.len() < in_general.len() {
        let m = next_json(&mut general);
        general_seen.push(m["tx_id"].as_u64().unwrap());
        for change in m["changes"].as_array().unwrap() {
            assert_eq!(change["row"]["channel"], "general", "{m}");
        }
        apply(&mut rows, &m);
    }
    assert_eq!(general_seen, in_general);
    let indexed = get(
        &a,
        &format!("{base}/v1/modules/chat/tables/messages?channel=general"),
    );
    assert_eq!(rows, keyed(&indexed.body));
    assert_eq!(rows.len(), 1);

    // Pages: one row at a time, following the cursor, give the whole table.
    let mut paged = Vec::new();
    let mut url = format!("{base}/v1/modules/chat/tables/messages?limit=1");
    loop {
        let page = get(&a, &url);
        assert_eq!(page.status, 200);
        assert!(page.body.as_array().unwrap().len() <= 1);
        paged.extend(page.body.as_array().unwrap().iter().cloned());
        match page.next_after {
            Some(after) => {
                url = format!("{base}/v1/modules/chat/tables/messages?limit=1&after={after}")
            }
            None => break,
        }
    }
    assert_eq!(Value::Array(paged), table.body);
    // Lookups by primary key and by a unique column.
    let alice = get(
        &a,
        &format!("{base}/v1/modules/chat/tables/users?name=alice"),
    );
    assert_eq!(alice.body.as_array().unwrap().len(), 1);
    let id = alice.body[0]["id"].as_u64().unwrap();
    let by_id = get(&a, &format!("{base}/v1/modules/chat/tables/users?id={id}"));
    assert_eq!(by_id.body, alice.body);
    // The CLI client pages too.
    let out = cli(&["query", "chat", "messages", "--server", &base]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        table.body.as_array().unwrap().len()
    );

    // A graceful stop: subscribers are told, the process exits 0, the log
    // is synced and the directory released.
    let before_tx = table.tx_id.unwrap();
    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("stopped"), "{stderr}");
    assert!(
        !stderr.contains(
            &std::fs::read_to_string(&token_file)
                .unwrap()
                .trim()
                .to_string()
        ),
        "the token must never be logged"
    );
    let closing = next_json(&mut all);
    assert_eq!(closing["type"], "closed");
    assert!(
        closing["reason"]
            .as_str()
            .unwrap()
            .contains("shutting down")
    );

    // Restart: the same data, from the log.
    let server = Server::start(&dir, &[]);
    let base = server.url.clone();
    let again = get(&a, &format!("{base}/v1/modules/chat/tables/messages"));
    assert_eq!(again.body, table.body);
    assert_eq!(again.tx_id, Some(before_tx));
    let users = get(&a, &format!("{base}/v1/modules/chat/tables/users"));
    assert_eq!(users.body.as_array().unwrap().len(), 3);

    // Deletion needs the token, is logged, ends subscriptions to the
    // module (close code 1000, with the reason), and survives a restart.
    let mut watching = server.ws("/v1/modules/chat/tables/users/subscribe");
    assert_eq!(next_json(&mut watching)["type"], "rows");
    let url = format!("{base}/v1/modules/chat");
    assert_eq!(answer(a.delete(&url).call()).status, 401);
    let deleted = answer(
        a.delete(&url)
            .header("Authorization", &format!("Bearer {}", server.token))
            .call(),
    );
    assert_eq!(deleted.status, 200, "{deleted:?}");
    let closed = next_json(&mut watching);
    assert_eq!(closed["type"], "closed");
    assert!(
        closed["reason"].as_str().unwrap().contains("was deleted"),
        "{closed}"
    );
    match watching.read().unwrap() {
        tungstenite::Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1000),
        other => panic!("expected a close frame, got {other:?}"),
    }
    assert_eq!(
        get(&a, &format!("{base}/v1/modules/chat/tables/messages")).status,
        404
    );
    let dir = server.dir.clone();
    let (status, _) = server.stop();
    assert!(status.success());
    assert!(!dir.join("modules/chat.wasm").exists());
    let server = Server::start(&dir, &[]);
    let modules = get(&a, &format!("{}/v1/modules", server.url));
    assert_eq!(modules.body, json!([]));
}

#[test]
fn bad_input_gets_its_status_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_configured(tmp.path(), "body_limit_bytes = 4096\n");
    let a = agent();
    let base = server.url.clone();
    let token = server.token.clone();
    let bank = std::fs::read(guests::BANK).unwrap();
    let published = put_module(&a, &format!("{base}/v1/modules/bank"), Some(&token), &bank);
    assert_eq!(published.status, 201, "{published:?}");
    for args in ["[1, 100]", "[2, 50]"] {
        let r = post(
            &a,
            &format!("{base}/v1/modules/bank/reducers/open_account"),
            args,
        );
        assert_eq!(r.status, 200);
    }
    let state = |a: &ureq::Agent| {
        let r = get(a, &format!("{base}/v1/modules/bank/tables/accounts"));
        (r.body, r.tx_id)
    };
    let before = state(&a);

    let reducer = |name: &str| format!("{base}/v1/modules/bank/reducers/{name}");
    let big = format!("[{}]", "1,".repeat(4000) + "1");
    // (what, answer, status, field)
    let cases: Vec<(&str, Answer, u16, Option<&str>)> = vec![
        (
            "malformed JSON",
            post(&a, &reducer("transfer"), "[1, 2,"),
            400,
            Some("body"),
        ),
        (
            "wrong type",
            post(&a, &reducer("transfer"), r#"[1, "two", 3]"#),
            400,
            Some("to"),
        ),
        (
            "negative into u64",
            post(
                &a,
                &reducer("transfer"),
                r#"{"from": 1, "to": 2, "amount": -5}"#,
            ),
            400,
            Some("amount"),
        ),
        (
            "missing field",
            post(&a, &reducer("transfer"), r#"{"from": 1, "to": 2}"#),
            400,
            Some("amount"),
        ),
        (
            "unknown field",
            post(&a, &reducer("deposit"), r#"{"id": 1, "amount": 2, "x": 3}"#),
            400,
            Some("x"),
        ),
        (
            "wrong arity",
            post(&a, &reducer("transfer"), "[1, 2]"),
            400,
            Some("arguments"),
        ),
        (
            "not an array or object",
            post(&a, &reducer("transfer"), "7"),
            400,
            Some("arguments"),
        ),
        (
            "body too large",
            post(&a, &reducer("transfer"), &big),
            413,
            Some("body"),
        ),
        (
            "unknown module",
            post(&a, &format!("{base}/v1/modules/nope/reducers/x"), "[]"),
            404,
            None,
        ),
        (
            "unknown reducer",
            post(&a, &reducer("steal"), "[]"),
            404,
            None,
        ),
        (
            "reducer error",
            post(&a, &reducer("transfer"), "[1, 2, 1000]"),
            422,
            None,
        ),
        (
            "unknown table",
            get(&a, &format!("{base}/v1/modules/bank/tables/nope")),
            404,
            None,
        ),
        (
            "unknown module's table",
            get(&a, &format!("{base}/v1/modules/nope/tables/accounts")),
            404,
            None,
        ),
        (
            "filter on a column without an index",
            get(
                &a,
                &format!("{base}/v1/modules/bank/tables/accounts?balance=100"),
            ),
            400,
            Some("balance"),
        ),
        (
            "filter value of the wrong type",
            get(
                &a,
                &format!("{base}/v1/modules/bank/tables/accounts?id=abc"),
            ),
            400,
            Some("id"),
        ),
        (
            "bad limit",
            get(
                &a,
                &format!("{base}/v1/modules/bank/tables/accounts?limit=0"),
            ),
            400,
            Some("limit"),
        ),
        (
            "limit past the maximum",
            get(
                &a,
                &format!("{base}/v1/modules/bank/tables/accounts?limit=99999999"),
            ),
            400,
            Some("limit"),
        ),
        (
            "unknown schema",
            get(&a, &format!("{base}/v1/modules/nope/schema")),
            404,
            None,
        ),
        (
            "unknown route",
            get(&a, &format!("{base}/v2/anything")),
            404,
            None,
        ),
        (
            "publish without a token",
            put_module(&a, &format!("{base}/v1/modules/bank"), None, &bank),
            401,
            None,
        ),
        (
            "publish with a wrong token",
            put_module(&a, &format!("{base}/v1/modules/bank"), Some("wrong"), &bank),
            401,
            None,
        ),
        (
            "publish bytes that are not wasm",
            put_module(
                &a,
                &format!("{base}/v1/modules/junk"),
                Some(&token),
                b"hello",
            ),
            400,
            Some("body"),
        ),
        (
            "publish under a bad name",
            put_module(&a, &format!("{base}/v1/modules/-x"), Some(&token), &bank),
            400,
            Some("module"),
        ),
        (
            "an upgrade that would lose data",
            put_module(
                &a,
                &format!("{base}/v1/modules/bank"),
                Some(&token),
                &std::fs::read(guests::BANK_V3_BAD).unwrap(),
            ),
            409,
            None,
        ),
        (
            "subscribe to an unknown table",
            get(&a, &format!("{base}/v1/modules/bank/tables/nope/subscribe")),
            404,
            None,
        ),
    ];
    for (what, answer, status, field) in &cases {
        assert_eq!(answer.status, *status, "{what}: {answer:?}");
        if *status != 404 || answer.body.get("error").is_some() {
            let error = &answer.body["error"];
            assert!(error["message"].as_str().is_some(), "{what}: {answer:?}");
            assert!(error["code"].as_str().is_some(), "{what}: {answer:?}");
        }
        if let Some(field) = field {
            assert_eq!(answer.body["error"]["field"], *field, "{what}: {answer:?}");
        }
    }
    let refused = &cases
        .iter()
        .find(|c| c.0.starts_with("an upgrade"))
        .unwrap()
        .1;
    assert!(
        !refused.body["error"]["changes"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Requests of arbitrary shape: nothing panics the server.
    for path in [
        "/v1/modules/%00/reducers/%ff",
        "/v1/modules/bank/tables/accounts?after=%22%5Cu0000",
        "/v1/modules/bank/tables/accounts?id=1&id=2",
        "/v1/modules/bank/tables/accounts?after=1e999",
        "/v1/modules/bank/reducers/transfer",
        "/metrics",
    ] {
        let r = get(&a, &format!("{base}{path}"));
        assert!(r.status < 500, "{path}: {r:?}");
        let r = post(&a, &format!("{base}{path}"), "\u{0}\u{ffff}[[[[");
        assert!(r.status < 500, "{path}: {r:?}");
    }
    assert_eq!(get(&a, &format!("{base}/healthz")).status, 200);

    // Every route of the OpenAPI description is served (no answer is the
    // unknown-route fallback), with no token and an unknown module so
    // that nothing changes.
    let openapi: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/openapi.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut routes = 0;
    for (path, item) in openapi["paths"].as_object().unwrap() {
        let url = format!(
            "{base}{}",
            path.replace("{module}", "absent")
                .replace("{reducer}", "r")
                .replace("{table}", "t")
        );
        for method in item.as_object().unwrap().keys() {
            let r = match method.as_str() {
                "get" => get(&a, &url),
                "post" => post(&a, &url, "[]"),
                "put" => answer(a.put(&url).send(&b"x"[..])),
                "delete" => answer(a.delete(&url).call()),
                "parameters" => continue,
                other => panic!("method {other} in openapi.json"),
            };
            routes += 1;
            let message = r.body["error"]["message"].as_str().unwrap_or("");
            assert!(!message.contains("no such route"), "{method} {path}: {r:?}");
            assert!(r.status < 500, "{method} {path}: {r:?}");
        }
    }
    assert_eq!(routes, 14);

    // Nothing changed.
    assert_eq!(state(&a), before);
    let metrics = get(&a, &format!("{base}/metrics"));
    let text = metrics.body.as_str().unwrap();
    for name in [
        "interstice_transactions_committed_total",
        "interstice_calls_failed_total",
        "interstice_commit_latency_seconds_bucket",
        "interstice_fsync_latency_seconds_bucket",
        "interstice_transactions_per_fsync",
        "interstice_log_bytes",
        "interstice_snapshot_bytes",
        "interstice_replay_duration_seconds",
        "interstice_guest_instantiations_total",
        "interstice_fuel_consumed_total",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    // 3 committed transactions (publication and two accounts).
    assert!(
        text.contains("interstice_transactions_committed_total 3\n"),
        "{text}"
    );
}

#[test]
fn slow_subscriber_is_disconnected_and_the_server_serves_on() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_configured(
        tmp.path(),
        "subscription_buffer = 4\nsend_timeout_secs = 1\n",
    );
    let a = agent();
    let base = server.url.clone();
    server.publish("chat", guests::CHAT);
    // Subscribes, then never reads. 4,800 messages of 4 KB are ~19 MB,
    // far past what the kernel's socket buffers hold on both sides (a few
    // MB at most): the server's sends block whatever the buffer sizes.
    let mut slow = server.ws("/v1/modules/chat/tables/messages/subscribe");
    let text = "x".repeat(4000);
    std::thread::scope(|s| {
        for t in 0..8 {
            let (a, base, text) = (agent(), base.clone(), text.clone());
            s.spawn(move || {
                for i in 0..600 {
                    let r = post(
                        &a,
                        &format!("{base}/v1/modules/chat/reducers/send"),
                        &json!(["system", format!("c{t}"), format!("{i} {text}")]).to_string(),
                    );
                    assert_eq!(r.status, 200, "{r:?}");
                }
            });
        }
    });
    // What did arrive ends with the reason, then the close.
    let mut reason = None;
    loop {
        match slow.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let m: Value = serde_json::from_str(&t).unwrap();
                if m["type"] == "closed" {
                    reason = Some(m["reason"].as_str().unwrap().to_string());
                }
            }
            Ok(tungstenite::Message::Close(frame)) => {
                assert_eq!(u16::from(frame.unwrap().code), 1013);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}; reason {reason:?}"),
        }
    }
    let reason = reason.expect("a reason before the close");
    assert!(reason.starts_with("slow consumer"), "{reason}");
    let metrics = get(&a, &format!("{base}/metrics"));
    assert!(
        metrics
            .body
            .as_str()
            .unwrap()
            .contains("interstice_subscribers_dropped_total 1\n")
    );
    // A subscriber that reads keeps up and gets everything: the rows, then
    // each of K further transactions, in order, with its row.
    let mut fresh = server.ws("/v1/modules/chat/tables/messages/subscribe?channel=c0");
    let rows = next_json(&mut fresh);
    assert_eq!(rows["rows"].as_array().unwrap().len(), 600);
    const K: usize = 20;
    let mut last_tx = rows["tx_id"].as_u64().unwrap();
    for k in 0..K {
        let r = post(
            &a,
            &format!("{base}/v1/modules/chat/reducers/send"),
            &json!(["system", "c0", format!("after {k}")]).to_string(),
        );
        assert_eq!(r.status, 200, "{r:?}");
        let m = next_json(&mut fresh);
        assert_eq!(m["type"], "tx", "{m}");
        assert!(m["tx_id"].as_u64().unwrap() > last_tx, "{m}");
        last_tx = m["tx_id"].as_u64().unwrap();
        assert_eq!(m["changes"][0]["op"], "insert", "{m}");
        assert_eq!(m["changes"][0]["row"]["text"], format!("after {k}"), "{m}");
    }
    assert_eq!(get(&a, &format!("{base}/healthz")).status, 200);
}

#[test]
fn module_log_lines_stream_to_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);
    let base = server.url.clone();
    server.publish("chat", guests::CHAT);
    // Without a token: refused before any stream starts.
    let out = cli(&["logs", "chat", "--server", &base]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin token"));

    let lines = follow_log(&server, "chat", "clear_channel", r#"["general"]"#, 1);
    assert!(
        lines.contains("chat.clear_channel [info] cleared channel general"),
        "{lines}"
    );
    // A WASI guest's stdout and stderr are lines of the same log.
    server.publish("probe", guests::WASI_PROBE_WASIP2);
    let lines = follow_log(&server, "probe", "observe", "[]", 2);
    assert!(
        lines.contains("probe.observe [info] observed at "),
        "{lines}"
    );
    assert!(lines.contains("probe.observe [warn] stderr at "), "{lines}");
}

/// Runs `interstice logs MODULE --max-messages COUNT` while calling
/// `reducer` until it exits; returns what it printed.
fn follow_log(server: &Server, module: &str, reducer: &str, args: &str, count: u32) -> String {
    let a = agent();
    let base = &server.url;
    let logs = Command::new(BIN)
        .args(["logs", module, "--max-messages", &count.to_string()])
        .args(["--server", base])
        .env("INTERSTICE_ADMIN_TOKEN", &server.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The stream is open once the server has its receiver; calls before
    // that are not logged to it, so call until the lines arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                let r = post(
                    &a,
                    &format!("{base}/v1/modules/{module}/reducers/{reducer}"),
                    args,
                );
                assert_eq!(r.status, 200);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let out = logs.wait_with_output().unwrap();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    })
}

#[test]
fn load_64_clients_every_acknowledged_call_survives_a_restart() {
    const CLIENTS: usize = 64;
    let calls: usize = std::env::var("INTERSTICE_LOAD_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);
    let base = server.url.clone();
    server.publish("counter", guests::COUNTER);
    let started = Instant::now();
    // Each client increments its own counter and keeps the tx ids it was
    // given; every call must be acknowledged.
    let acknowledged: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let base = base.clone();
                s.spawn(move || {
                    let a = agent();
                    let url = format!("{base}/v1/modules/counter/reducers/increment");
                    let body = json!([format!("client-{c}")]).to_string();
                    (0..calls)
                        .map(|_| {
                            let r = post(&a, &url, &body);
                            assert_eq!(r.status, 200, "{r:?}");
                            r.body["tx_id"].as_u64().unwrap()
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let all: BTreeSet<u64> = acknowledged.iter().flatten().copied().collect();
    assert_eq!(all.len(), CLIENTS * calls, "every tx id is unique");
    eprintln!(
        "{} calls from {CLIENTS} clients in {elapsed:.2?} ({:.0} calls/s)",
        CLIENTS * calls,
        (CLIENTS * calls) as f64 / elapsed.as_secs_f64()
    );

    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
    let server = Server::start(&dir, &[]);
    let counters = get(
        &agent(),
        &format!(
            "{}/v1/modules/counter/tables/counters?limit=10000",
            server.url
        ),
    );
    let values: BTreeMap<String, u64> = counters
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["value"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(values.len(), CLIENTS);
    for c in 0..CLIENTS {
        assert_eq!(values[&format!("client-{c}")], calls as u64);
    }
    // The log holds every acknowledged transaction.
    drop(server);
    let out = cli(&["log", "dump", "--data-dir", dir.to_str().unwrap()]);
    assert!(out.status.success());
    let dumped: BTreeSet<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("tx ")?.split(' ').next()?.parse().ok())
        .collect();
    assert!(all.is_subset(&dumped));
}

#[test]
fn sigterm_under_load_answers_calls_in_flight_and_loses_none() {
    const CLIENTS: usize = 16;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);
    let base = server.url.clone();
    server.publish("counter", guests::COUNTER);
    let mut subscriber = server.ws("/v1/modules/counter/tables/counters/subscribe");
    assert_eq!(next_json(&mut subscriber)["type"], "rows");
    // Set just before the signal: a call sent before it and answered
    // after it was in flight when the server was told to stop.
    let signalled = std::sync::atomic::AtomicBool::new(false);
    // Each client calls until the server stops answering. Every outcome is
    // classified: answered 200 (counted), or the end: a refusal status, or
    // a connection the server closed or never accepted. A request whose
    // answer never came yet committed shows below as a count one too high.
    let outcomes: Vec<(u64, u64, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (base, signalled) = (base.clone(), &signalled);
                s.spawn(move || {
                    let a = agent();
                    let url = format!("{base}/v1/modules/counter/reducers/increment");
                    let body = json!([format!("client-{c}")]).to_string();
                    let (mut acked, mut in_flight) = (0, 0);
                    loop {
                        let before = signalled.load(std::sync::atomic::Ordering::SeqCst);
                        match a.post(&url).send(body.as_bytes()) {
                            Ok(r) if r.status() == 200 => {
                                acked += 1;
                                if !before && signalled.load(std::sync::atomic::Ordering::SeqCst) {
                                    in_flight += 1;
                                }
                            }
                            Ok(r) => return (acked, in_flight, format!("status {}", r.status())),
                            Err(e) => return (acked, in_flight, format!("connection: {e}")),
                        }
                    }
                })
            })
            .collect();
        // Signal once calls are flowing: after 200 committed transactions
        // reached the subscriber, not after a guessed time.
        for _ in 0..200 {
            assert_eq!(next_json(&mut subscriber)["type"], "tx");
        }
        signalled.store(true, std::sync::atomic::Ordering::SeqCst);
        let (status, stderr) = server.stop();
        assert!(status.success(), "{stderr}");
        assert!(stderr.contains("stopped"), "{stderr}");
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let acked: Vec<u64> = outcomes.iter().map(|(a, _, _)| *a).collect();
    assert!(acked.iter().all(|&n| n > 0), "{outcomes:?}");
    // Calls in flight at the signal were answered, not dropped.
    let in_flight: u64 = outcomes.iter().map(|(_, f, _)| *f).sum();
    assert!(
        in_flight > 0,
        "no call in flight at the signal was answered: {outcomes:?}"
    );
    let server = Server::start(&dir, &[]);
    let rows = get(
        &agent(),
        &format!("{}/v1/modules/counter/tables/counters", server.url),
    );
    for (c, acked) in acked.iter().enumerate() {
        let row = rows
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == format!("client-{c}"))
            .unwrap();
        let value = row["value"].as_u64().unwrap();
        // Exactly the acknowledged calls: one more would be a call that
        // committed but whose answer the shutdown dropped.
        assert_eq!(
            value, *acked,
            "client {c}: {acked} acknowledged, {value} committed; it ended with {}",
            outcomes[c].2
        );
    }
    // The subscriber was told why the stream ended.
    let mut closing = next_json(&mut subscriber);
    while closing["type"] == "tx" {
        closing = next_json(&mut subscriber);
    }
    assert_eq!(closing["type"], "closed");
}

#[test]
fn new_version_over_http_ends_subscriptions_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let server = Server::start(&dir, &[]);
    let a = agent();
    let base = server.url.clone();
    let url = format!("{base}/v1/modules/bank");
    let token = Some(server.token.as_str());
    let bank = std::fs::read(guests::BANK).unwrap();
    assert_eq!(put_module(&a, &url, token, &bank).status, 201);
    let r = post(&a, &format!("{url}/reducers/open_account"), "[1, 10]");
    assert_eq!(r.status, 200);
    // The same code again: nothing logged.
    let same = put_module(&a, &url, token, &bank);
    assert_eq!(same.status, 200);
    assert_eq!(same.body["replaced"], true);
    assert_eq!(same.body["tx_id"], Value::Null);

    let mut sub = server.ws("/v1/modules/bank/tables/accounts/subscribe?id=1");
    assert_eq!(next_json(&mut sub)["rows"][0]["balance"], 10);
    // The CLI subscriber: the rows, then the deposit, as JSON lines.
    let cli_sub = Command::new(BIN)
        .args(["subscribe", "bank", "accounts", "--where", "id=1"])
        .args(["--max-messages", "2", "--server", &base])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Its rows arrive once its subscription exists; deposit until the
    // second message (a deposit) ends it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut cli_sub = cli_sub;
    let status = loop {
        if let Some(status) = cli_sub.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the CLI subscriber never finished"
        );
        let r = post(&a, &format!("{url}/reducers/deposit"), "[1, 1]");
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut cli_sub.stdout.take().unwrap(), &mut out).unwrap();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["type"], "rows");
    assert_eq!(lines[1]["type"], "tx");
    assert_eq!(lines[1]["reducer"], "deposit");
    assert_eq!(
        lines[1]["changes"][0]["row"]["balance"].as_u64().unwrap(),
        lines[0]["rows"][0]["balance"].as_u64().unwrap() + 1
    );
    // The WebSocket subscriber saw the same deposits.
    let mut balance = 10;
    let deposits = get(&a, &format!("{url}/tables/accounts?id=1")).body[0]["balance"]
        .as_u64()
        .unwrap();
    while balance < deposits {
        let m = next_json(&mut sub);
        balance = m["changes"][0]["row"]["balance"].as_u64().unwrap();
    }
    assert_eq!(balance, deposits);
    let v2 = put_module(&a, &url, token, &std::fs::read(guests::BANK_V2).unwrap());
    assert_eq!(v2.status, 200, "{v2:?}");
    assert_eq!(v2.body["version"], 2);
    assert!(!v2.body["changes"].as_array().unwrap().is_empty());
    let closed = next_json(&mut sub);
    assert_eq!(closed["type"], "closed");
    assert!(
        closed["reason"].as_str().unwrap().contains("version 2"),
        "{closed}"
    );
    match sub.read().unwrap() {
        tungstenite::Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1012),
        other => panic!("expected a close frame, got {other:?}"),
    }
    // The migrated row is served under the new schema.
    let schema = get(&a, &format!("{url}/schema"));
    assert_eq!(schema.body["version"], 2);
    let rows = get(&a, &format!("{url}/tables/accounts?id=1"));
    assert_eq!(rows.body[0]["balance"], deposits);
}

#[test]
fn every_type_over_http_is_the_documented_json() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    server.publish("types", guests::TYPES);
    let a = agent();
    let base = format!("{}/v1/modules/types", server.url);
    let row = interstice_tests::every_type_row();
    let called = post(
        &a,
        &format!("{base}/reducers/put"),
        &json!([row]).to_string(),
    );
    assert_eq!(called.status, 200, "{called:?}");
    let rows = get(&a, &format!("{base}/tables/everything"));
    assert_eq!(rows.status, 200);
    assert_eq!(rows.body, json!([row]));
    // A point read by the u128 primary key, written as its decimal string.
    let one = get(
        &a,
        &format!("{base}/tables/everything?id=340282366920938463463374607431768211455"),
    );
    assert_eq!(one.body, json!([row]), "{one:?}");
    // A malformed value deep inside is a 400 naming its path; nothing changes.
    let mut bad = row.clone();
    bad["inventory"][2]["kind"] = json!({"Pair": [1]});
    let refused = post(
        &a,
        &format!("{base}/reducers/put"),
        &json!([bad]).to_string(),
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(
        refused.body.to_string().contains(
            r#"field row.inventory[2].kind: variant \"Pair\" is written {\"Pair\": [2 values]}"#
        ),
        "{refused:?}"
    );
    assert_eq!(
        get(&a, &format!("{base}/tables/everything")).body,
        json!([row])
    );

    // Reads by an indexed column: the first column of a composite B-tree
    // index (a prefix of its key), a hash index, a unique hash index.
    let player = "ab".repeat(32);
    for (game, turn, tag, x) in [(1, 2, "a", 0), (2, 1, "b", 1), (1, 1, "c", 2)] {
        let args = json!([game, turn, player, tag, x, 0, {"Bow": x}]).to_string();
        let called = post(&a, &format!("{base}/reducers/play"), &args);
        assert_eq!(called.status, 200, "{called:?}");
    }
    let ids = |query: &str| {
        let page = get(&a, &format!("{base}/tables/moves?{query}"));
        assert_eq!(page.status, 200, "{query}: {page:?}");
        page.body
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].clone())
            .collect::<Vec<_>>()
    };
    // In the order of the index used: (game, turn), then the primary key.
    assert_eq!(ids("game=1"), vec![json!(3), json!(1)]);
    assert_eq!(
        ids(&format!("player={player}")),
        vec![json!(1), json!(2), json!(3)]
    );
    assert_eq!(ids("tag=b"), vec![json!(2)]);
    assert_eq!(ids("kind=%7B%22Bow%22%3A2%7D"), vec![json!(3)]);
    let moves = get(&a, &format!("{base}/tables/moves?tag=c")).body;
    assert_eq!(
        moves[0],
        json!({"id": 3, "game": 1, "turn": 1, "player": player, "tag": "c", "x": 2, "y": 0,
               "kind": {"Bow": 2}, "at": moves[0]["at"]})
    );
    // `turn` is the second column of an index, not the first of any.
    let page = get(&a, &format!("{base}/tables/moves?turn=1"));
    assert_eq!(page.status, 400, "{page:?}");
    assert!(
        page.body
            .to_string()
            .contains("table `moves` has no index on a column named `turn`"),
        "{page:?}"
    );
}

/// A raw HTTP/1.1 exchange on a connection of its own: writes `request`
/// (which should say `Connection: close`), then reads until the server
/// closes. The status (0 when the server closed without answering), the
/// headers (lowercase names) and the body; and how long it took.
fn raw_exchange(url: &str, request: &str) -> (u16, BTreeMap<String, String>, String, Duration) {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    stream.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    // A reset after the answer (the server closing a connection it did
    // not read whole) still leaves what was read.
    let _ = stream.read_to_end(&mut bytes);
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return (0, BTreeMap::new(), text, elapsed);
    };
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string(), elapsed)
}

/// Opens a connection that sends part of a request head and then nothing:
/// it holds one of the server's connections until the server cuts it.
fn half_head(url: &str) -> TcpStream {
    use std::io::Write;
    let mut stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

#[test]
fn connections_heads_bodies_and_queued_calls_are_bounded_and_health_still_answers() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    // Monitoring's own address: a free port, taken by the server at once.
    let health_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let health_url = format!("http://127.0.0.1:{health_port}");
    let server = Server::start_configured(
        tmp.path(),
        &format!(
            "max_connections = 6\nheader_timeout_secs = 2\nbody_timeout_secs = 1\ncalls_queued_max = 2\n\
             reads_queued_max = 2\n\
             sql_max_millis = 3000\nsql_max_rows = 1000000000000\n\
             health_listen = \"127.0.0.1:{health_port}\"\n"
        ),
    );
    server.publish("m", guests::MISBEHAVE);
    let call = |reducer: &str, body: &str| {
        format!(
            "POST /v1/modules/m/reducers/{reducer} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            server.token,
            body.len()
        )
    };
    let health = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    // A body promised and not sent: 408 once body_timeout_secs pass.
    let (status, _, body, took) = raw_exchange(
        &server.url,
        &format!(
            "POST /v1/modules/m/reducers/put HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 100\r\nConnection: close\r\n\r\n[1",
            server.token
        ),
    );
    assert_eq!(status, 408, "{body}");
    assert!(body.contains("body_timeout_secs"), "{body}");
    assert!(took < Duration::from_secs(10), "{took:?}");

    // A head never finished: the connection is closed once
    // header_timeout_secs pass, with nothing answered.
    let mut slow = half_head(&server.url);
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "cut after {took:?}"
    );
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));

    // All six connections held by heads that never finish: a seventh still
    // gets /healthz and /metrics, and 503 overloaded for anything else.
    let held: Vec<TcpStream> = (0..6).map(|_| half_head(&server.url)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (status, _, body, _) = raw_exchange(&server.url, health);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body, _) = raw_exchange(
        &server.url,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("interstice_log_syncs"), "{body}");
    let (status, headers, body, _) = raw_exchange(&server.url, &call("put", "[1, \"a\", 1]"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("1"));
    assert!(body.contains("max_connections"), "{body}");
    // Sixteen more fill the answers to connections past the limit
    // (max_connections / 8 + 16; two more, in case an answer above is
    // still letting go of its place): then the main address closes even a
    // health check unread, and health_listen still answers.
    std::thread::sleep(Duration::from_millis(200));
    let crowd: Vec<TcpStream> = (0..18).map(|_| half_head(&server.url)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let (status, _, body, _) = raw_exchange(&server.url, health);
    assert_eq!(status, 0, "closed unread: {body}");
    let (status, _, body, _) = raw_exchange(&health_url, health);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body, _) = raw_exchange(
        &health_url,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("interstice_connections_open 6"), "{body}");
    let (status, _, _, _) = raw_exchange(&health_url, &call("put", "[1, \"a\", 1]"));
    assert_eq!(status, 404, "health_listen serves nothing else");
    // Once the server cuts them (header_timeout_secs), calls are served.
    for mut stream in held.into_iter().chain(crowd) {
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert!(rest.is_empty());
    }
    let (status, _, body, _) = raw_exchange(&server.url, &call("put", "[1, \"a\", 1]"));
    assert_eq!(status, 200, "{body}");

    // A query holds the database for sql_max_millis (3 s: a join of 2,000
    // rows with 2,000); two calls queued behind it fill calls_queued_max,
    // a third is refused at once; the query and one read behind it fill
    // reads_queued_max, a second read is refused at once; /healthz answers
    // meanwhile, and once the query is over the calls and the read are
    // answered and calls are taken again.
    let sql = |text: &str| {
        format!(
            "POST /v1/modules/m/sql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
            server.token,
            text.len()
        )
    };
    let rows: Vec<String> = (100..2100)
        .map(|id| format!("({id}, 't{id}', 7)"))
        .collect();
    let insert = format!(
        "INSERT INTO items (id, tag, \"group\") VALUES {}",
        rows.join(", ")
    );
    let (status, _, body, _) = raw_exchange(&server.url, &sql(&insert));
    assert_eq!(status, 200, "{body}");
    let (query, queued, refused, health_meanwhile, refused_read, read_after) =
        std::thread::scope(|s| {
            let url = server.url.clone();
            let join =
                sql("SELECT COUNT(*) FROM items a JOIN items b ON a.\"group\" = b.\"group\"");
            let query = s.spawn(move || raw_exchange(&url, &join));
            std::thread::sleep(Duration::from_millis(600));
            let queued: Vec<_> = [2, 3]
                .map(|id| {
                    let request = call("put", &format!("[{id}, \"q{id}\", 1]"));
                    let url = server.url.clone();
                    s.spawn(move || raw_exchange(&url, &request))
                })
                .into_iter()
                .collect();
            let read = format!(
                "GET /v1/modules/m/tables/items?limit=1 HTTP/1.1\r\nHost: x\r\n\
                 Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
                server.token
            );
            let (url, request) = (server.url.clone(), read.clone());
            let queued_read = s.spawn(move || raw_exchange(&url, &request));
            std::thread::sleep(Duration::from_millis(300));
            let refused = raw_exchange(&server.url, &call("put", "[4, \"b\", 1]"));
            // The query and the read behind it fill reads_queued_max.
            let refused_read = raw_exchange(&server.url, &read);
            let health = raw_exchange(&server.url, health);
            let queued: Vec<_> = queued.into_iter().map(|h| h.join().unwrap()).collect();
            let read_after = queued_read.join().unwrap();
            (
                query.join().unwrap(),
                queued,
                refused,
                health,
                refused_read,
                read_after,
            )
        });
    // The query ran out of time (or, on a fast machine, finished).
    assert!(matches!(query.0, 200 | 422), "{:?}", query);
    for (status, _, body, _) in &queued {
        assert_eq!(*status, 200, "{body}");
    }
    let (status, headers, body, took) = refused;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("calls_queued_max"), "{body}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("1"));
    assert!(
        took < query.3 / 2,
        "refused in {took:?}, the query took {:?}",
        query.3
    );
    assert_eq!(health_meanwhile.0, 200);
    let (status, headers, body, _) = refused_read;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("reads_queued_max"), "{body}");
    assert_eq!(headers.get("retry-after").map(String::as_str), Some("1"));
    assert_eq!(read_after.0, 200, "{}", read_after.2);
    let (status, _, body, _) = raw_exchange(&server.url, &call("put", "[4, \"b\", 1]"));
    assert_eq!(status, 200, "{body}");

    // The metrics count what was refused and what is open.
    let (_, _, metrics, _) = raw_exchange(
        &server.url,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{metrics}"))
    };
    assert_eq!(metric("interstice_calls_shed_total"), 1.0);
    assert_eq!(metric("interstice_reads_shed_total"), 1.0);
    // The three exchanges while the six were held, the eighteen and the
    // health check closed unread (and the publishing client's kept-alive
    // connection, if it was still open then).
    let refused = metric("interstice_connections_refused_total");
    assert!((22.0..=23.0).contains(&refused), "{refused}");
    assert!(metric("interstice_connections_open") >= 1.0);

    let (status, stderr) = server.stop();
    assert!(status.success(), "{stderr}");
}
