//! Identities, tokens and access against a real server process: every
//! refusal is checked for its status and for having changed nothing.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use interstice_store::Identity;
use interstice_tests::guests;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

mod common;

use common::agent;
use common::serve::Server;

const BIN: &str = env!("CARGO_BIN_EXE_interstice");
const OUTSIDE: &str = "https://issuer.example";
const AUDIENCE: &str = "lobby-app";
const OUTSIDE_KID: &str = "test-key-1";

/// The lobby's routes, on a server of [`setup`]'s data directory.
trait Lobby {
    fn call(&self, reducer: &str, args: &str, auth: Option<&str>) -> (u16, Value);
    fn read(&self, table: &str, auth: Option<&str>) -> (u16, Value);
    fn rows(&self, table: &str) -> Vec<Value>;
    fn identity(&self) -> (String, String);
    fn subscribe(&self, table: &str, auth: Option<&str>) -> Result<Ws, (u16, String)>;
}

/// A server of `dir` with the settings file `config`.
fn serve(dir: &Path, config: &Path) -> Server {
    Server::start(dir, &["--config", config.to_str().unwrap()])
}

impl Lobby for Server {
    fn call(&self, reducer: &str, args: &str, auth: Option<&str>) -> (u16, Value) {
        let mut request =
            agent().post(&format!("{}/v1/modules/lobby/reducers/{reducer}", self.url));
        if let Some(auth) = auth {
            request = request.header("Authorization", &format!("Bearer {auth}"));
        }
        answer(request.send(args.as_bytes()))
    }

    fn read(&self, table: &str, auth: Option<&str>) -> (u16, Value) {
        let mut request = agent().get(&format!("{}/v1/modules/lobby/tables/{table}", self.url));
        if let Some(auth) = auth {
            request = request.header("Authorization", &format!("Bearer {auth}"));
        }
        answer(request.call())
    }

    /// Every row of a table, read with the admin token.
    fn rows(&self, table: &str) -> Vec<Value> {
        let (status, body) = self.read(table, Some(&self.token));
        assert_eq!(status, 200, "{body}");
        body.as_array().unwrap().clone()
    }

    fn identity(&self) -> (String, String) {
        let (status, body) = answer(
            agent()
                .post(&format!("{}/v1/identity", self.url))
                .send(&[][..]),
        );
        assert_eq!(status, 201, "{body}");
        let identity = body["identity"].as_str().unwrap().to_string();
        assert_eq!(identity.len(), 64);
        (identity, body["token"].as_str().unwrap().to_string())
    }

    /// A WebSocket subscription to `table`, or the refusal's status and
    /// body.
    fn subscribe(&self, table: &str, auth: Option<&str>) -> Result<Ws, (u16, String)> {
        use tungstenite::client::IntoClientRequest;
        let url = format!(
            "{}/v1/modules/lobby/tables/{table}/subscribe",
            self.url.replacen("http://", "ws://", 1)
        );
        let mut request = url.into_client_request().unwrap();
        if let Some(auth) = auth {
            request
                .headers_mut()
                .insert("Authorization", format!("Bearer {auth}").parse().unwrap());
        }
        match tungstenite::connect(request) {
            Ok((mut socket, _)) => {
                // The first message: the rows.
                let first = socket.read().unwrap();
                assert!(first.is_text(), "{first:?}");
                Ok(socket)
            }
            Err(tungstenite::Error::Http(response)) => Err((
                response.status().as_u16(),
                String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                    .into_owned(),
            )),
            Err(e) => panic!("{e}"),
        }
    }
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// An outside issuer's ES256 key made from `seed`, so that runs are
/// repeatable. The issuer of [`setup`] signs with seed 7.
fn outside_key(seed: u8) -> p256::SecretKey {
    p256::SecretKey::from_slice(&[seed; 32]).unwrap()
}

/// The public JWK of [`outside_key`]`(seed)`, named `kid`.
fn outside_jwk(seed: u8, kid: &str) -> Value {
    let mut jwk: Value =
        serde_json::from_str(&outside_key(seed).public_key().to_jwk_string()).unwrap();
    jwk["kid"] = kid.into();
    jwk["alg"] = "ES256".into();
    jwk
}

fn outside_token(seed: u8, claims: &Value, kid: &str) -> String {
    use p256::pkcs8::EncodePrivateKey;
    let pem = outside_key(seed)
        .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
        .unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A data directory with the lobby published, and the settings file that
/// trusts the outside issuer.
fn setup(tmp: &Path) -> (PathBuf, PathBuf) {
    setup_with(tmp, guests::LOBBY)
}

/// [`setup`] with the lobby built from `guest`.
fn setup_with(tmp: &Path, guest: &str) -> (PathBuf, PathBuf) {
    let jwk = outside_jwk(7, OUTSIDE_KID);
    let jwks = tmp.join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).unwrap();
    let config = tmp.join("interstice.toml");
    std::fs::write(
        &config,
        format!(
            "[[issuer]]\nissuer = \"{OUTSIDE}\"\naudience = [\"{AUDIENCE}\"]\njwks_file = {:?}\nalgorithms = [\"ES256\"]\n",
            jwks.display().to_string()
        ),
    )
    .unwrap();
    let dir = tmp.join("data");
    common::ok(&dir, &["publish", guest, "--name", "lobby"]);
    (dir, config)
}

/// Signs `claims` with this data directory's own key, under `kid`.
fn own_token(dir: &Path, claims: &Value, kid: &str) -> String {
    let pem = std::fs::read(dir.join("identity-key.pem")).unwrap();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_pem(&pem).unwrap()).unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

fn b64(bytes: &[u8]) -> String {
    // base64url without padding, by hand: the test's own encoder.
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn every_bad_token_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, config) = setup(tmp.path());
    let server = serve(&dir, &config);
    let (identity, token) = server.identity();
    let sub = identity.clone();

    // A valid token: the reducer sees exactly that identity.
    let (status, body) = server.call("whoami", "[]", Some(&token));
    assert_eq!(status, 200, "{body}");
    let calls = server.rows("calls");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["sender"], identity.as_str());
    assert_eq!(calls[0]["issuer"], "urn:interstice:server");
    assert_eq!(calls[0]["subject"], identity.as_str());
    assert_eq!(calls[0]["owner"], Identity::operator().to_string());

    let kid = kid_of(&token);
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(json!({"iss": "urn:interstice:server", "sub": sub})
            .to_string()
            .as_bytes())
    );
    // HS256 keyed with the server's public key, in both forms an attacker
    // might use.
    let pem = std::fs::read_to_string(dir.join("identity-key.pem")).unwrap();
    let public = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
        .unwrap()
        .verifying_key()
        .to_bytes();
    let hs = |secret: &[u8]| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &header,
            &json!({"iss": "urn:interstice:server", "sub": sub}),
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    };
    let own = |claims: Value| own_token(&dir, &claims, &kid);
    let other_dir = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let other = {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let pem = other_dir
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &header,
            &json!({"iss": "urn:interstice:server", "sub": sub}),
            &EncodingKey::from_ed_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let outside = |iss: &str, aud: &str, kid: &str| {
        outside_token(
            7,
            &json!({"iss": iss, "sub": "user-1", "aud": aud, "exp": now() + 600}),
            kid,
        )
    };
    let huge = format!("{token}{}", "A".repeat(100 * 1024));
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "not-a-token".into()),
        ("one signature byte changed", flipped),
        ("alg none", none),
        ("HS256 keyed with the raw public key", hs(&public)),
        ("HS256 keyed with the key file", hs(pem.as_bytes())),
        (
            "expired",
            own(json!({"iss": "urn:interstice:server", "sub": sub, "exp": now() - 3600})),
        ),
        (
            "not yet valid",
            own(json!({"iss": "urn:interstice:server", "sub": sub, "nbf": now() + 3600})),
        ),
        (
            "unknown kid of our own key",
            own_token(
                &dir,
                &json!({"iss": "urn:interstice:server", "sub": sub}),
                "0000000000000000",
            ),
        ),
        ("another data directory's key", other),
        (
            "an untrusted issuer",
            outside("https://evil.example", AUDIENCE, OUTSIDE_KID),
        ),
        (
            "the wrong audience",
            outside(OUTSIDE, "another-app", OUTSIDE_KID),
        ),
        (
            "an unknown kid of the issuer",
            outside(OUTSIDE, AUDIENCE, "no-such-key"),
        ),
        ("100 KB", huge),
    ];
    for (what, bad) in &cases {
        let started = Instant::now();
        let (status, body) = server.call("whoami", "[]", Some(bad));
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["message"], "invalid token", "{what}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what}: bounded"
        );
    }
    let (status, body) = server.call("whoami", "[]", None);
    assert_eq!(status, 401, "no token: {body}");
    let old = agent()
        .post(&format!("{}/v1/modules/lobby/reducers/whoami", server.url))
        .header("x-interstice-caller", "alice")
        .header("Authorization", &format!("Bearer {token}"))
        .send(&b"[]"[..]);
    let (status, body) = answer(old);
    assert_eq!(status, 400, "the old header: {body}");
    assert_eq!(
        server.rows("calls").len(),
        1,
        "no refused call wrote anything"
    );

    // A valid outside token: the identity derives from issuer and subject.
    let (status, body) = server.call(
        "whoami",
        "[]",
        Some(&outside(OUTSIDE, AUDIENCE, OUTSIDE_KID)),
    );
    assert_eq!(status, 200, "{body}");
    let calls = server.rows("calls");
    assert_eq!(
        calls[1]["sender"],
        Identity::from_claims(OUTSIDE, "user-1").to_string()
    );
    assert_eq!(calls[1]["subject"], "user-1");
    server.stop();

    // The log records each call's identity.
    let dump = common::ok(&dir, &["log", "dump"]);
    assert!(
        dump.contains(&format!("by \"{identity}\": call lobby.whoami")),
        "{dump}"
    );
    let outside_id = Identity::from_claims(OUTSIDE, "user-1").to_string();
    assert!(
        dump.contains(&format!("by \"{outside_id}\": call lobby.whoami")),
        "{dump}"
    );
}

#[test]
fn private_tables_are_refused_to_clients_and_public_ones_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, config) = setup(tmp.path());
    let server = serve(&dir, &config);
    let (_, token) = server.identity();
    assert_eq!(
        server
            .call("keep_secret", "[1, \"s3cret\"]", Some(&token))
            .0,
        200
    );
    assert_eq!(server.call("whoami", "[]", Some(&token)).0, 200);
    for auth in [None, Some(token.as_str())] {
        let (status, body) = server.read("secrets", auth);
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["error"]["code"], "forbidden");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`secrets`"),
            "{body}"
        );
        assert!(!body.to_string().contains("s3cret"));
        let Err(refused) = server.subscribe("secrets", auth) else {
            panic!("a private table was served");
        };
        assert_eq!(refused.0, 403, "{}", refused.1);
        // The host's own sessions table is private too.
        assert_eq!(server.read("st_client", auth).0, 403);
        let (status, body) = server.read("calls", auth);
        assert_eq!((status, body.as_array().map(Vec::len)), (200, Some(1)));
        drop(
            server
                .subscribe("calls", auth)
                .expect("public tables are served"),
        );
    }
    let (status, body) = server.read("secrets", Some(&server.token));
    assert_eq!(status, 200);
    assert_eq!(body[0]["text"], "s3cret");
    server.stop();
    // The local CLI is the operator: it reads both.
    assert!(common::ok(&dir, &["query", "lobby", "secrets"]).contains("s3cret"));
    assert!(common::ok(&dir, &["query", "lobby", "calls"]).contains("sender"));
}

#[test]
fn owners_alone_change_their_modules() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, config) = setup(tmp.path());
    let server = serve(&dir, &config);
    let (ann, ann_token) = server.identity();
    let (_, bob_token) = server.identity();
    let wasm = std::fs::read(guests::LOBBY).unwrap();
    let put = |name: &str, query: &str, auth: &str| {
        answer(
            agent()
                .put(&format!("{}/v1/modules/{name}{query}", server.url))
                .header("Authorization", &format!("Bearer {auth}"))
                .send(&wasm[..]),
        )
    };
    let delete = |name: &str, auth: &str| {
        answer(
            agent()
                .delete(&format!("{}/v1/modules/{name}", server.url))
                .header("Authorization", &format!("Bearer {auth}"))
                .call(),
        )
    };
    // Identities may not create modules on a server that does not allow it.
    let (status, body) = put("annex", "", &ann_token);
    assert_eq!(status, 403, "{body}");
    // The operator publishes one for ann; ann owns it.
    let (status, body) = put("annex", &format!("?owner={ann}"), &server.token);
    assert_eq!(status, 201, "{body}");
    let call = |auth: &str| {
        answer(
            agent()
                .post(&format!("{}/v1/modules/annex/reducers/whoami", server.url))
                .header("Authorization", &format!("Bearer {auth}"))
                .send(&b"[]"[..]),
        )
    };
    assert_eq!(call(&ann_token).0, 200);
    let rows = answer(
        agent()
            .get(&format!("{}/v1/modules/annex/tables/calls", server.url))
            .call(),
    )
    .1;
    assert_eq!(
        rows[0]["owner"],
        ann.as_str(),
        "ctx.owner() is the recorded owner"
    );
    // Bob may neither publish over it nor delete it; ann may both.
    assert_eq!(put("annex", "", &bob_token).0, 403);
    assert_eq!(delete("annex", &bob_token).0, 403);
    assert_eq!(put("annex", "", &ann_token).0, 200);
    // Only the owner may close the door of the lobby the operator owns.
    let (status, body) = server.call("close_door", "[\"closed\"]", Some(&bob_token));
    assert_eq!(status, 422, "{body}");
    assert_eq!(delete("annex", &ann_token).0, 200);
    assert_eq!(delete("annex", &ann_token).0, 404);
    server.stop();
}

#[test]
fn sessions_run_lifecycle_reducers_exactly_and_a_kill_ends_them_at_restart() {
    sessions(guests::LOBBY);
}

#[test]
fn python_sessions_run_lifecycle_reducers_exactly_and_a_kill_ends_them_at_restart() {
    sessions(guests::LOBBY_PY);
}

/// 100 sessions, a refused one, and 10 left open by a kill -9, on the
/// lobby built from `guest`.
fn sessions(guest: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, config) = setup_with(tmp.path(), guest);
    let server = serve(&dir, &config);
    let (me, token) = server.identity();
    // The reducer sees the verified sender, the token and the owner.
    assert_eq!(server.call("whoami", "[]", Some(&token)).0, 200);
    let calls = server.rows("calls");
    assert_eq!(calls[0]["sender"], me.as_str());
    assert_eq!(calls[0]["issuer"], "urn:interstice:server");
    assert_eq!(calls[0]["subject"], me.as_str());
    assert_eq!(calls[0]["owner"], Identity::operator().to_string());
    // Only the owner (the operator here) may close the door.
    let (status, body) = server.call("close_door", "[\"no\"]", Some(&token));
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string()
            .contains("only the owner may close the door"),
        "{body}"
    );
    // Anonymous subscribers open no session.
    drop(server.subscribe("events", None).unwrap());
    for _ in 0..100 {
        let mut socket = server.subscribe("events", Some(&token)).unwrap();
        socket.close(None).unwrap();
        let _ = socket.read();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.rows("events").len() < 200 {
        assert!(
            Instant::now() < deadline,
            "{:?}",
            server.rows("events").len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let events = server.rows("events");
    assert_eq!(events.len(), 200);
    let connected: Vec<u64> = events
        .iter()
        .filter(|e| e["connected"] == true)
        .map(|e| e["connection_id"].as_u64().unwrap())
        .collect();
    let mut disconnected: Vec<u64> = events
        .iter()
        .filter(|e| e["connected"] == false)
        .map(|e| e["connection_id"].as_u64().unwrap())
        .collect();
    disconnected.sort();
    assert_eq!(connected, (1..=100).collect::<Vec<_>>());
    assert_eq!(disconnected, connected);
    assert!(events.iter().all(|e| e["sender"] == me.as_str()));
    assert!(server.rows("st_client").is_empty());

    // client_connected refuses: the session is not opened, nothing is kept.
    assert_eq!(
        server
            .call("close_door", "[\"come back later\"]", Some(&server.token))
            .0,
        200
    );
    let Err((status, body)) = server.subscribe("events", Some(&token)) else {
        panic!("client_connected's refusal was ignored");
    };
    assert_eq!(status, 403);
    assert!(body.contains("come back later"), "{body}");
    assert_eq!(server.rows("events").len(), 200);
    assert!(server.rows("st_client").is_empty());
    assert_eq!(server.call("open_door", "[]", Some(&server.token)).0, 200);

    // Ten sessions open, then kill -9.
    let sockets: Vec<Ws> = (0..10)
        .map(|_| server.subscribe("events", Some(&token)).unwrap())
        .collect();
    assert_eq!(server.rows("st_client").len(), 10);
    assert_eq!(server.rows("events").len(), 210);
    server.kill9();
    drop(sockets);
    let server = serve(&dir, &config);
    // The first answer already includes the ten disconnects.
    let events = server.rows("events");
    assert_eq!(events.len(), 220);
    let ended: Vec<u64> = events[210..]
        .iter()
        .map(|e| {
            assert_eq!(e["connected"], false);
            e["connection_id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(ended, (101..=110).collect::<Vec<_>>());
    assert!(server.rows("st_client").is_empty());
    server.stop();
    // Replay runs no guest, lifecycle records included.
    let stats: Value = serde_json::from_str(&common::ok(&dir, &["replay"])).unwrap();
    assert_eq!(stats["guest_instantiations"], 0);
    assert_eq!(stats["guest_calls"], 0);
}

/// A JWK set server on loopback: answers `GET path` with the set given for
/// it (500 when none), and counts the requests of each path.
struct KeyServer {
    url: String,
    paths: Arc<Mutex<BTreeMap<String, Served>>>,
}

/// What a path answers (`None`: 500), and how many requests it had.
type Served = (Option<String>, usize);

impl KeyServer {
    fn start() -> KeyServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let paths: Arc<Mutex<BTreeMap<String, Served>>> = Arc::default();
        let served = paths.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                stream
                    .set_read_timeout(Some(Duration::from_secs(5)))
                    .unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // The headers, up to the blank line.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split(' ').nth(1).unwrap_or_default().to_string();
                let body = {
                    let mut paths = served.lock().unwrap();
                    let entry = paths.entry(path).or_default();
                    entry.1 += 1;
                    entry.0.clone()
                };
                let (status, body) = match body {
                    Some(body) => ("200 OK", body),
                    None => ("500 Internal Server Error", "down".to_string()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        KeyServer { url, paths }
    }

    /// Serves the keys of `jwks` at `path` from now on; `None`: fails.
    fn set(&self, path: &str, jwks: Option<Value>) {
        self.paths.lock().unwrap().entry(path.into()).or_default().0 = jwks.map(|j| j.to_string());
    }

    fn fetches(&self, path: &str) -> usize {
        self.paths.lock().unwrap().get(path).map_or(0, |e| e.1)
    }

    fn wait_fetches(&self, path: &str, at_least: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.fetches(path) < at_least {
            assert!(
                Instant::now() < deadline,
                "{path} fetched {} times",
                self.fetches(path)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn outside_keys_by_url_are_fetched_kept_and_fetched_again_for_a_new_kid() {
    const ONE: &str = "https://one.example";
    const TWO: &str = "https://two.example";
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = setup(tmp.path());
    let keys = KeyServer::start();
    keys.set("/one", Some(json!({ "keys": [outside_jwk(7, "a")] })));
    keys.set("/two", Some(json!({ "keys": [outside_jwk(7, "a")] })));
    let issuer = |iss: &str, source: &str| {
        format!(
            "[[issuer]]\nissuer = \"{iss}\"\naudience = [\"{AUDIENCE}\"]\nalgorithms = [\"ES256\"]\n{source}\n"
        )
    };

    // Settings that cannot be right are refused at start.
    for (source, why) in [
        (
            "jwks_url = \"http://keys.example/jwks\"".to_string(),
            "plain http is accepted only on a loopback address",
        ),
        (
            format!("jwks_url = \"{}/one\"\njwks_file = \"keys.json\"", keys.url),
            "needs exactly one of jwks_file and jwks_url",
        ),
        (
            format!("jwks_url = \"{}/one\"\njwks_refresh_secs = 0", keys.url),
            "jwks_refresh_secs must be at least 1",
        ),
    ] {
        let bad = tmp.path().join("bad.toml");
        std::fs::write(&bad, issuer(ONE, &source)).unwrap();
        let out = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .arg("--config")
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{source}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{source}: {stderr}");
    }
    assert_eq!(keys.fetches("/one"), 0, "refused settings fetch nothing");

    let config = tmp.path().join("url.toml");
    std::fs::write(
        &config,
        issuer(ONE, &format!("jwks_url = \"{}/one\"", keys.url))
            + &issuer(
                TWO,
                &format!("jwks_url = \"{}/two\"\njwks_refresh_secs = 1", keys.url),
            ),
    )
    .unwrap();
    let server = serve(&dir, &config);
    let token = |iss: &str, seed: u8, kid: &str| {
        outside_token(
            seed,
            &json!({"iss": iss, "sub": "user-1", "aud": AUDIENCE, "exp": now() + 600}),
            kid,
        )
    };
    let call = |iss: &str, seed: u8, kid: &str| {
        let (status, body) = server.call("whoami", "[]", Some(&token(iss, seed, kid)));
        assert!(status == 200 || status == 401, "{body}");
        status
    };

    assert_eq!(call(ONE, 7, "a"), 200);
    assert_eq!(call(ONE, 7, "a"), 200);
    assert_eq!(keys.fetches("/one"), 1, "fetched at start, then held");
    let calls = server.rows("calls");
    assert_eq!(
        calls[0]["sender"],
        Identity::from_claims(ONE, "user-1").to_string()
    );

    // The issuer adds a key: the first token naming it fetches the set
    // again, and is accepted.
    keys.set(
        "/one",
        Some(json!({ "keys": [outside_jwk(7, "a"), outside_jwk(8, "b")] })),
    );
    assert_eq!(call(ONE, 8, "b"), 200);
    assert_eq!(keys.fetches("/one"), 2);
    // Made-up kids within the minute fetch nothing more.
    for _ in 0..5 {
        assert_eq!(call(ONE, 9, "c"), 401);
    }
    assert_eq!(keys.fetches("/one"), 2, "at most one fetch a minute");

    // TWO is fetched every second. A failing fetch keeps the keys held.
    keys.wait_fetches("/two", 2);
    keys.set("/two", None);
    keys.wait_fetches("/two", keys.fetches("/two") + 2);
    assert_eq!(call(TWO, 7, "a"), 200, "keys kept through failed fetches");
    // A rotation: once the set drops a key, its tokens are refused.
    keys.set("/two", Some(json!({ "keys": [outside_jwk(8, "b")] })));
    keys.wait_fetches("/two", keys.fetches("/two") + 2);
    assert_eq!(call(TWO, 8, "b"), 200);
    assert_eq!(call(TWO, 7, "a"), 401, "a retired key");

    assert_eq!(
        server.rows("calls").len(),
        5,
        "accepted calls wrote, refused ones did not"
    );
    server.stop();
}

#[test]
fn contract_3_components_still_run() {
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/contract3/lobby.wasm"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (dir, config) = setup_with(tmp.path(), fixture);
    let server = serve(&dir, &config);
    let (me, token) = server.identity();
    assert_eq!(server.call("whoami", "[]", Some(&token)).0, 200);
    let calls = server.rows("calls");
    assert_eq!(calls[0]["sender"], me.as_str());
    assert_eq!(calls[0]["owner"], Identity::operator().to_string());
    let mut socket = server.subscribe("events", Some(&token)).unwrap();
    socket.close(None).unwrap();
    let _ = socket.read();
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.rows("events").len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", server.rows("events"));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        server
            .rows("events")
            .iter()
            .all(|e| e["sender"] == me.as_str())
    );
    server.stop();
}
