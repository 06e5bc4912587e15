//! What the runtime puts in a log record's payload beyond the log's own
//! framing (docs/log-format.md): the definition documents of publication and
//! upgrade records, and the encoding of a transaction's mutations.
//!
//! Both the commit path (writing) and replay, snapshots and the log tools
//! (reading) use these, so the two sides cannot drift apart.

use interstice_log::{MutationRef, Op, RecordKind, TxHeader, TxRecord, payload};
use interstice_store::{ModuleDef, Mutation, MutationOp};
use serde::{Deserialize, Serialize};

/// The definition document of an upgrade record (`docs/log-format.md`).
#[derive(Serialize, Deserialize)]
pub(crate) struct UpgradeDocument {
    pub version: u32,
    pub clear: bool,
    pub definition: ModuleDef,
}

/// The definition document of a publication record (the definition itself)
/// or an upgrade record (an [`UpgradeDocument`]).
pub(crate) fn definition_document(
    kind: RecordKind,
    def: &ModuleDef,
    version: u32,
    clear: bool,
) -> Vec<u8> {
    let json = match kind {
        RecordKind::Upgrade => serde_json::to_vec(&UpgradeDocument {
            version,
            clear,
            definition: def.clone(),
        }),
        _ => serde_json::to_vec(def),
    };
    // A definition is plain data (strings, numbers, lists): serde_json cannot
    // fail on it.
    json.expect("a module definition serializes")
}

/// The definition a publication record carries, its version, and whether
/// the module's data was cleared.
pub(crate) fn definition_of(tx: &TxRecord<'_>) -> Result<(ModuleDef, u32, bool), String> {
    let json = tx.header.definition.unwrap_or_default();
    let name = tx.header.module;
    let parsed = match tx.header.kind {
        RecordKind::Upgrade => serde_json::from_slice::<UpgradeDocument>(json)
            .map(|d| (d.definition, d.version, d.clear)),
        _ => serde_json::from_slice::<ModuleDef>(json).map(|d| (d, 1, false)),
    };
    let (def, version, clear) =
        parsed.map_err(|e| format!("module definition of `{name}` does not parse: {e}"))?;
    def.validate()
        .map_err(|e| format!("module definition of `{name}`: {e}"))?;
    Ok((def, version, clear))
}

/// One transaction's payload: its header and its mutations.
pub(crate) fn encode_tx(header: &TxHeader<'_>, mutations: &[Mutation]) -> Vec<u8> {
    let row_bytes: usize = mutations.iter().map(|m| m.row.len() + 9).sum();
    let mut out = Vec::with_capacity(64 + header.args.len() + row_bytes);
    let refs = mutations.iter().map(|m| MutationRef {
        op: op_to_log(m.op),
        table: m.table,
        row: &m.row,
    });
    payload::encode(header, refs, &mut out);
    out
}

pub(crate) fn op_from_log(op: Op) -> MutationOp {
    match op {
        Op::Insert => MutationOp::Insert,
        Op::Update => MutationOp::Update,
        Op::Delete => MutationOp::Delete,
    }
}

pub(crate) fn op_to_log(op: MutationOp) -> Op {
    match op {
        MutationOp::Insert => Op::Insert,
        MutationOp::Update => Op::Update,
        MutationOp::Delete => Op::Delete,
    }
}
