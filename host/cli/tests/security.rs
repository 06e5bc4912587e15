//! Identities, tokens and access against a real server process: every
//! refusal is checked for its status and for having changed nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::pkcs8::DecodePrivateKey;
use interstice_store::Identity;
use interstice_tests::guests;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_interstice");
const OUTSIDE: &str = "https://issuer.example";
const AUDIENCE: &str = "lobby-app";
const OUTSIDE_KID: &str = "test-key-1";

struct Server {
    child: Child,
    url: String,
    admin: String,
}

impl Server {
    fn start(dir: &Path, config: &Path) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .arg("--config")
            .arg(config)
            .env_remove("INTERSTICE_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("server did not start: {line:?}"))
            .to_string();
        let admin = std::fs::read_to_string(dir.join("admin-token"))
            .unwrap()
            .trim()
            .to_string();
        Server { child, url, admin }
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        self.child.wait().unwrap();
    }

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
        let (status, body) = self.read(table, Some(&self.admin));
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

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn answer(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> (u16, Value) {
    let mut response = response.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The outside issuer's ES256 key, fixed so that runs are repeatable.
fn outside_key() -> p256::SecretKey {
    p256::SecretKey::from_slice(&[7u8; 32]).unwrap()
}

fn outside_token(claims: &Value, kid: &str) -> String {
    use p256::pkcs8::EncodePrivateKey;
    let pem = outside_key()
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
    let mut jwk: Value = serde_json::from_str(&outside_key().public_key().to_jwk_string()).unwrap();
    jwk["kid"] = OUTSIDE_KID.into();
    jwk["alg"] = "ES256".into();
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
    common::ok(&dir, &["publish", guests::LOBBY, "--name", "lobby"]);
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
    let server = Server::start(&dir, &config);
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
    let server = Server::start(&dir, &config);
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
    let (status, body) = server.read("secrets", Some(&server.admin));
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
    let server = Server::start(&dir, &config);
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
    let (status, body) = put("annex", &format!("?owner={ann}"), &server.admin);
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
    let tmp = tempfile::tempdir().unwrap();
    let (dir, config) = setup(tmp.path());
    let server = Server::start(&dir, &config);
    let (me, token) = server.identity();
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
            .call("close_door", "[\"come back later\"]", Some(&server.admin))
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
    assert_eq!(server.call("open_door", "[]", Some(&server.admin)).0, 200);

    // Ten sessions open, then kill -9.
    let sockets: Vec<Ws> = (0..10)
        .map(|_| server.subscribe("events", Some(&token)).unwrap())
        .collect();
    assert_eq!(server.rows("st_client").len(), 10);
    assert_eq!(server.rows("events").len(), 210);
    server.kill9();
    drop(sockets);
    let server = Server::start(&dir, &config);
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
