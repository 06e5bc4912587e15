//! `interstice generate --lang rust`: the code it writes for the bank and
//! for the module of every type is what `clients/rust/tests/generated`
//! holds, it compiles (it is part of this test crate), its types read and
//! write every value's JSON, and its typed calls work on a real server,
//! which refuses it for another schema.

use interstice_client::{ClientError, Connect};
use interstice_tests::guests;

mod common;

use common::serve::Server;

#[rustfmt::skip]
#[path = "../../../clients/rust/tests/generated/bank.rs"]
mod bank;
#[rustfmt::skip]
#[path = "../../../clients/rust/tests/generated/types.rs"]
mod types;

#[test]
fn the_committed_code_is_what_generate_writes() {
    for (name, wasm) in [("bank", guests::BANK), ("types", guests::TYPES)] {
        let committed = format!("clients/rust/tests/generated/{name}.rs");
        common::assert_generated("rust", name, wasm, &committed);
    }
}

#[test]
fn the_generated_types_read_and_write_every_value_as_the_server_does() {
    let json = interstice_tests::every_type_row();
    let row: types::Everything = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(row.d, u64::MAX);
    assert_eq!(
        row.kind,
        types::Kind::Staff {
            power: 9,
            name: "oak".into()
        }
    );
    assert_eq!(row.inventory[2].kind, types::Kind::Pair(1, 2));
    assert_eq!(serde_json::to_value(&row).unwrap(), json);
}

#[test]
fn the_generated_client_calls_typed_and_is_refused_for_another_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(&tmp.path().join("data"), &[]);
    for (name, wasm) in [("bank", guests::BANK), ("bank_next", guests::BANK_V2)] {
        let response = common::agent()
            .put(&format!("{}/v1/modules/{name}", server.url))
            .header("Authorization", &format!("Bearer {}", server.token))
            .send(&std::fs::read(wasm).unwrap()[..])
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = bank::connect(Connect::new(&server.url, bank::MODULE).token(&server.token))
            .await
            .unwrap();
        client.subscribe(&[bank::Accounts::TABLE]).await.unwrap();
        let reducers = bank::Reducers(&client);
        reducers.open_account(1, 10).await.unwrap();
        reducers.open_account(2, 0).await.unwrap();
        reducers.transfer(1, 2, 4).await.unwrap();
        assert_eq!(
            bank::Accounts::cached(&client).unwrap(),
            [
                bank::Accounts { id: 1, balance: 6 },
                bank::Accounts { id: 2, balance: 4 }
            ]
        );
        let refused = bank::connect(Connect::new(&server.url, "bank_next").token(&server.token))
            .await
            .err()
            .expect("another schema is refused");
        match refused {
            ClientError::Schema {
                expected, found, ..
            } => {
                assert_eq!(expected, bank::SCHEMA);
                assert_ne!(found, bank::SCHEMA);
            }
            other => panic!("refused for {other}"),
        }
    });
}

/// The module's definition read from a server's schema route, or from a
/// data directory it was published into, gives the same code as the
/// module's file.
#[test]
fn a_published_module_generates_the_same_code_from_a_server_or_a_data_directory() {
    let kept = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../clients/rust/tests/generated/bank.rs"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    common::ok(&data, &["publish", guests::BANK, "--name", "bank"]);
    let from_dir = tmp.path().join("from-dir");
    common::ok(
        &data,
        &[
            "generate",
            "--lang",
            "rust",
            "--module",
            "bank",
            "--out",
            from_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(from_dir.join("bank.rs")).unwrap(),
        kept
    );
    let server = Server::start(&data, &[]);
    let from_server = tmp.path().join("from-server");
    common::generate("rust", "bank", &from_server, &["--server", &server.url]);
    assert_eq!(
        std::fs::read_to_string(from_server.join("bank.rs")).unwrap(),
        kept
    );
    // A module that is not there is an error that names it.
    let missing = common::refused(
        &data.with_extension("empty"),
        &[
            "generate",
            "--lang",
            "rust",
            "--module",
            "nope",
            "--out",
            "/nonexistent",
        ],
    );
    assert!(missing.contains("no module named `nope`"), "{missing}");
}
