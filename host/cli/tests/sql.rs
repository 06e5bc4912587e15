//! SQL through the binary: `interstice sql` on a data directory and over a
//! server, and `POST /v1/modules/{module}/sql` with its errors, private
//! tables and budget.

use interstice_tests::guests;
use serde_json::{Value, json};

mod common;

use common::agent;
use common::serve::Server;

/// Status, body as JSON (or as a string), and the tx id header.
fn answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> (u16, Value, Option<u64>) {
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let tx = response
        .headers()
        .get("x-interstice-tx-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body, tx)
}

fn sql(
    server: &Server,
    module: &str,
    text: &[u8],
    token: Option<&str>,
) -> (u16, Value, Option<u64>) {
    let mut request = agent()
        .post(&format!("{}/v1/modules/{module}/sql", server.url))
        .header("Content-Type", "text/plain");
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    answer(request.send(text))
}

fn call(server: &Server, module: &str, reducer: &str, args: Value) -> u16 {
    answer(
        agent()
            .post(&format!(
                "{}/v1/modules/{module}/reducers/{reducer}",
                server.url
            ))
            .header("Authorization", &format!("Bearer {}", server.token))
            .header("Content-Type", "application/json")
            .send(args.to_string().as_bytes()),
    )
    .0
}

fn new_identity(server: &Server) -> (String, String) {
    let (status, body, _) = answer(
        agent()
            .post(&format!("{}/v1/identity", server.url))
            .send(&[][..]),
    );
    assert_eq!(status, 201, "{body}");
    (
        body["identity"].as_str().unwrap().to_string(),
        body["token"].as_str().unwrap().to_string(),
    )
}

/// A chat with two users and `n` messages in `general` (and one in
/// `random`), and the lobby, all written offline.
fn chat_dir(dir: &std::path::Path, n: usize) {
    common::ok(dir, &["publish", guests::CHAT, "--name", "chat"]);
    common::ok(dir, &["publish", guests::LOBBY, "--name", "lobby"]);
    for name in ["alice", "bob"] {
        common::ok(
            dir,
            &["call", "chat", "register", &json!([name, null]).to_string()],
        );
    }
    for i in 0..n {
        let who = if i % 2 == 0 { "alice" } else { "bob" };
        let args = json!([who, "general", format!("m{i}")]).to_string();
        common::ok(dir, &["call", "chat", "send", &args]);
    }
    common::ok(
        dir,
        &[
            "call",
            "chat",
            "send",
            &json!(["bob", "random", "hi"]).to_string(),
        ],
    );
    common::ok(
        dir,
        &[
            "call",
            "lobby",
            "keep_secret",
            &json!([1, "hidden"]).to_string(),
        ],
    );
}

#[test]
fn the_cli_runs_sql_on_a_data_directory_as_a_table_and_as_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    chat_dir(&dir, 4);
    let text = common::ok(
        &dir,
        &[
            "sql",
            "chat",
            "SELECT u.name, COUNT(*) AS sent FROM messages AS m JOIN users AS u \
             ON m.sender = u.id GROUP BY u.name ORDER BY u.name",
        ],
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split('|').map(str::trim).collect::<Vec<_>>(),
        ["name", "sent"]
    );
    // The system user's welcome, alice's two, bob's two and his `hi`.
    assert_eq!(
        lines[2].split('|').map(str::trim).collect::<Vec<_>>(),
        ["alice", "2"]
    );
    assert_eq!(
        lines[3].split('|').map(str::trim).collect::<Vec<_>>(),
        ["bob", "3"]
    );
    assert_eq!(
        lines[4].split('|').map(str::trim).collect::<Vec<_>>(),
        ["system", "1"]
    );
    assert!(
        lines[5].starts_with("(3 rows, as of transaction "),
        "{text}"
    );

    // JSON lines: the columns, then one array per row. Locally the
    // operator reads private tables too.
    let text = common::ok(
        &dir,
        &["sql", "lobby", "SELECT id, text FROM secrets", "--json"],
    );
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0]["columns"],
        json!([{"name": "id", "type": "u64"}, {"name": "text", "type": "string"}])
    );
    assert!(lines[0]["tx_id"].as_u64().unwrap() > 0);
    assert_eq!(lines[1..], [json!([1, "hidden"])]);

    let refused = common::refused(&dir, &["sql", "chat", "SELECT nope FROM users"]);
    assert!(refused.contains("no column named `nope`"), "{refused}");

    // The local CLI is the operator: it writes, and the next run reads it.
    let out = common::ok(
        &dir,
        &[
            "sql",
            "chat",
            "UPDATE users SET bio = 'writes' WHERE name = 'bob'",
        ],
    );
    assert!(out.contains("rows_changed"), "{out}");
    let out = common::ok(
        &dir,
        &[
            "sql",
            "chat",
            "SELECT bio FROM users WHERE name = 'bob'",
            "--json",
        ],
    );
    assert_eq!(out.lines().nth(1), Some(r#"["writes"]"#), "{out}");
}

#[test]
fn the_server_answers_sql_guards_private_tables_and_bounds_every_query() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    chat_dir(&data, 0);
    let server = Server::start_configured(tmp.path(), "sql_max_rows = 5000\n");
    for i in 0..30 {
        let who = if i % 2 == 0 { "alice" } else { "bob" };
        assert_eq!(
            call(
                &server,
                "chat",
                "send",
                json!([who, "general", format!("m{i}")])
            ),
            200
        );
    }

    // A join through the primary key, anonymous: chat's tables are public.
    let (status, body, tx) = sql(
        &server,
        "chat",
        b"SELECT m.id, u.name, m.text FROM messages AS m JOIN users AS u ON m.sender = u.id \
          WHERE m.channel = 'general' AND m.text LIKE 'm1%' ORDER BY m.id",
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["columns"],
        json!([
            {"name": "id", "type": "u64"},
            {"name": "name", "type": "string"},
            {"name": "text", "type": "string"}
        ])
    );
    let texts: Vec<&str> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[2].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "m1", "m10", "m11", "m12", "m13", "m14", "m15", "m16", "m17", "m18", "m19"
        ]
    );
    assert_eq!(body["rows"][0][1], "bob");
    assert_eq!(
        tx,
        body["tx_id"].as_u64(),
        "the header and the body name one transaction"
    );

    // EXPLAIN: the channel's index for the messages, the users' primary
    // key for the join.
    let (status, body, _) = sql(
        &server,
        "chat",
        b"EXPLAIN SELECT * FROM messages AS m JOIN users AS u ON m.sender = u.id WHERE m.channel = 'general'",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let plan: Vec<&str> = body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    assert!(
        plan[0].starts_with("scan messages AS m: index "),
        "{plan:?}"
    );
    assert!(plan[0].contains("at \"general\""), "{plan:?}");
    assert!(
        plan[1].starts_with("join users AS u: index users(primary key id) lookup by m.sender"),
        "{plan:?}"
    );

    // Bad queries: 400 with the reason.
    for (text, reason) in [
        (&b"SELEC * FROM users"[..], "does not parse"),
        (b"SELECT * FROM nobody", "no table named `nobody`"),
        (b"DROP TABLE users", "not supported"),
        (b"SELECT * FROM users WHERE name = 3", "cannot be compared"),
        (b"SELECT * FROM users; SELECT * FROM users", "one at a time"),
    ] {
        let (status, body, _) = sql(&server, "chat", text, None);
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "bad_query", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{message}");
    }
    let (status, body, _) = sql(&server, "chat", &[0xff, 0xfe], None);
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = sql(&server, "chat", "SELECT 1 ".repeat(10_000).as_bytes(), None);
    assert_eq!(status, 413);
    let (status, body, _) = sql(&server, "nowhere", b"SELECT * FROM users", None);
    assert_eq!(status, 404, "{body}");

    // Private tables: refused to the anonymous and to other identities,
    // read by the admin token and by the module's owner.
    let (status, body, _) = sql(&server, "lobby", b"SELECT * FROM secrets", None);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`secrets` is private")
    );
    let (owner, owner_token) = new_identity(&server);
    let (_, stranger_token) = new_identity(&server);
    let (status, body, _) = sql(
        &server,
        "lobby",
        b"SELECT * FROM secrets",
        Some(&stranger_token),
    );
    assert_eq!(status, 403, "{body}");
    // A private table is as private inside a join.
    let (status, _, _) = sql(
        &server,
        "lobby",
        b"SELECT c.id FROM calls AS c JOIN secrets AS s ON c.id = s.id",
        None,
    );
    assert_eq!(status, 403);
    let (status, body, _) = sql(
        &server,
        "lobby",
        b"SELECT text FROM secrets",
        Some(&server.token),
    );
    assert_eq!(
        (status, &body["rows"]),
        (200, &json!([["hidden"]])),
        "{body}"
    );
    let wasm = std::fs::read(guests::LOBBY).unwrap();
    let (status, body, _) = answer(
        agent()
            .put(&format!("{}/v1/modules/owned?owner={owner}", server.url))
            .header("Authorization", &format!("Bearer {}", server.token))
            .send(&wasm[..]),
    );
    assert!(status == 200 || status == 201, "{status} {body}");
    let (status, body, _) = sql(
        &server,
        "owned",
        b"SELECT COUNT(*) FROM secrets",
        Some(&owner_token),
    );
    assert_eq!((status, &body["rows"]), (200, &json!([[0]])), "{body}");
    let (status, _, _) = sql(
        &server,
        "owned",
        b"SELECT COUNT(*) FROM secrets",
        Some(&stranger_token),
    );
    assert_eq!(status, 403);

    // Writes: only the owner and the admin token. Anyone else is refused
    // (403) and nothing changes; the owner writes its private table; a
    // unique index refuses a whole statement (409).
    for token in [None, Some(stranger_token.as_str())] {
        let (status, body, _) = sql(&server, "owned", b"DELETE FROM calls", token);
        assert_eq!(status, 403, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("only the module's owner and the operator"),
            "{body}"
        );
    }
    let (status, body, tx) = sql(
        &server,
        "owned",
        b"INSERT INTO secrets (id, text) VALUES (1, 'mine'), (2, 'also mine')",
        Some(&owner_token),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["columns"],
        json!([{"name": "rows_changed", "type": "u64"}])
    );
    assert_eq!(body["rows"], json!([[2]]));
    assert_eq!(tx, body["tx_id"].as_u64());
    let (status, body, _) = sql(
        &server,
        "owned",
        b"INSERT INTO secrets (id, text) VALUES (3, 'new'), (1, 'again')",
        Some(&server.token),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "write_refused", "{body}");
    let (status, body, _) = sql(
        &server,
        "owned",
        b"UPDATE secrets SET text = 'changed' WHERE id = 2",
        Some(&server.token),
    );
    assert_eq!((status, &body["rows"]), (200, &json!([[1]])), "{body}");

    // The budget: a three-way cross join of 32 messages is 32,768 rows,
    // past 5,000. It fails with the budget's error, a call made meanwhile
    // is answered, and the server goes on.
    let heavy = {
        let url = server.url.clone();
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            for _ in 0..20 {
                let (status, body, _) =
                    answer(agent().post(&format!("{url}/v1/modules/chat/sql")).send(
                        &b"SELECT COUNT(*) FROM messages AS a, messages AS b, messages AS c"[..],
                    ));
                outcomes.push((status, body));
            }
            outcomes
        })
    };
    for i in 0..20 {
        let status = call(
            &server,
            "chat",
            "send",
            json!(["alice", "busy", format!("b{i}")]),
        );
        assert_eq!(status, 200, "a call while cross joins run");
    }
    for (status, body) in heavy.join().unwrap() {
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "over_budget", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("5000 rows"), "{message}");
    }
    let (status, body, _) = sql(
        &server,
        "chat",
        b"SELECT COUNT(*) FROM messages WHERE channel = 'busy'",
        None,
    );
    assert_eq!((status, &body["rows"]), (200, &json!([[20]])), "{body}");

    // The CLI over the server: the same query, the same rows.
    let out = common::ok(
        &data,
        &[
            "sql",
            "chat",
            "SELECT name FROM users ORDER BY id",
            "--json",
            "--server",
            &server.url,
        ],
    );
    let rows: Vec<Value> = out
        .lines()
        .skip(1)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows, [json!(["system"]), json!(["alice"]), json!(["bob"])]);

    // A write answered is durable: killed at once after the answer, the
    // server comes back with it (replayed from the log, no guest run).
    let (status, body, _) = sql(
        &server,
        "owned",
        b"DELETE FROM secrets WHERE id = 1",
        Some(&server.token),
    );
    assert_eq!((status, &body["rows"]), (200, &json!([[1]])), "{body}");
    server.kill9();
    let server = Server::start_configured(tmp.path(), "sql_max_rows = 5000\n");
    let (status, body, _) = sql(
        &server,
        "owned",
        b"SELECT id, text FROM secrets",
        Some(&server.token),
    );
    assert_eq!(
        (status, &body["rows"]),
        (200, &json!([[2, "changed"]])),
        "{body}"
    );
    server.stop();
}

/// `text` as a query-string value: every byte but unreserved ones as `%XX`.
fn encoded(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

/// A SQL subscription, or the refusal's status and body.
fn subscribe_sql(
    server: &Server,
    module: &str,
    text: &str,
    token: Option<&str>,
) -> Result<Ws, (u16, Value)> {
    use tungstenite::client::IntoClientRequest;
    let url = format!(
        "{}/v1/modules/{module}/subscribe?sql={}",
        server.url.replacen("http://", "ws://", 1),
        encoded(text)
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    }
    match tungstenite::connect(request) {
        Ok((mut socket, _)) => {
            if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_mut() {
                s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
                    .unwrap();
            }
            Ok(socket)
        }
        Err(tungstenite::Error::Http(response)) => {
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .into_owned();
            Err((
                response.status().as_u16(),
                serde_json::from_str(&body).unwrap_or(Value::String(body)),
            ))
        }
        Err(e) => panic!("{e}"),
    }
}

fn next_message(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a message") {
            tungstenite::Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// (op, text) of a message's changes, in order.
fn changes(message: &Value) -> Vec<(String, String)> {
    message["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {message}"))
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap().to_string(),
                c["row"]["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

fn metric(server: &Server, name: &str) -> f64 {
    let mut response = agent()
        .get(&format!("{}/metrics", server.url))
        .call()
        .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("interstice_{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .parse()
        .unwrap()
}

#[test]
fn a_sql_subscription_follows_a_join_over_websocket_and_ends_with_its_socket() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    chat_dir(&data, 4);
    let server = Server::start_configured(tmp.path(), "sql_live_max = 2\n");
    let query = "SELECT m.* FROM messages AS m JOIN users AS u ON m.sender = u.id \
                 WHERE u.name = 'alice'";
    // Refused before the upgrade, with the status a query would get.
    for (module, text, status) in [
        ("chat", "SELECT COUNT(*) FROM users", 400),
        ("chat", "SELECT * FROM nobody", 400),
        ("lobby", "SELECT * FROM secrets", 403),
        ("nowhere", "SELECT * FROM users", 404),
    ] {
        let (got, body) = subscribe_sql(&server, module, text, None).err().unwrap();
        assert_eq!(got, status, "{text}: {body}");
    }

    let mut ws = subscribe_sql(&server, "chat", query, None).unwrap();
    let first = next_message(&mut ws);
    assert_eq!(first["type"], "rows", "{first}");
    let mut texts: Vec<&str> = first["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["text"].as_str().unwrap())
        .collect();
    texts.sort();
    assert_eq!(texts, ["m0", "m2"]);
    // A second subscriber of the same text shares the live query.
    let mut twin = subscribe_sql(&server, "chat", query, None).unwrap();
    assert_eq!(next_message(&mut twin)["rows"], first["rows"]);
    assert_eq!(metric(&server, "live_queries"), 1.0);
    assert_eq!(metric(&server, "live_query_subscribers"), 2.0);

    // Bob's message changes nothing here; alice's enters.
    assert_eq!(
        call(&server, "chat", "send", json!(["bob", "general", "nope"])),
        200
    );
    assert_eq!(
        call(&server, "chat", "send", json!(["alice", "dev", "new"])),
        200
    );
    let m = next_message(&mut ws);
    assert_eq!(
        changes(&m),
        [("insert".to_string(), "new".to_string())],
        "{m}"
    );
    // Alice renamed: every message of hers leaves, in one transaction.
    assert_eq!(
        call(&server, "chat", "rename", json!(["alice", "zed"])),
        200
    );
    let m = next_message(&mut ws);
    assert_eq!(m["reducer"], "rename");
    let mut left = changes(&m);
    left.sort();
    assert_eq!(
        left,
        ["m0", "m2", "new"].map(|t| ("delete".to_string(), t.to_string()))
    );
    // A SQL write by the admin brings them back.
    let (status, body, tx) = sql(
        &server,
        "chat",
        b"UPDATE users SET name = 'alice' WHERE name = 'zed'",
        Some(&server.token),
    );
    assert_eq!(status, 200, "{body}");
    let m = next_message(&mut ws);
    assert_eq!(m["tx_id"].as_u64(), tx);
    assert_eq!(changes(&m).len(), 3, "{m}");
    assert!(changes(&m).iter().all(|(op, _)| op == "insert"), "{m}");
    // The twin saw the same messages.
    for _ in 0..3 {
        next_message(&mut twin);
    }

    // The server follows at most 2 distinct queries.
    let _other = subscribe_sql(&server, "chat", "SELECT * FROM users", None).unwrap();
    let (status, body) = subscribe_sql(&server, "chat", "SELECT * FROM users WHERE id = 1", None)
        .err()
        .unwrap();
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "too_many_queries", "{body}");

    // Closing the sockets ends the live queries.
    ws.close(None).unwrap();
    twin.close(None).unwrap();
    drop(_other);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while metric(&server, "live_query_subscribers") > 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "subscriptions never ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(metric(&server, "live_queries"), 0.0);
    server.stop();
}
