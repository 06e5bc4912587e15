//! Indexes, native (no guest): point lookups through a B-tree and a hash
//! secondary index over the same column, writes to a table with each, a
//! composite prefix scan; and, as a peer for the primary key's layout, the
//! standard library's ordered and hash maps alone on the same keys.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hint::black_box;
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use interstice_store::{
    ABI_VERSION, AlgebraicType, ColumnDef, IndexDef, IndexId, IndexKind, ModuleDef, TableDef,
    Tables, TxLog, Value, codec,
};

/// Rows in each table.
const ROWS: u64 = 100_000;
/// Operations per measurement.
const OPS: usize = 400_000;
/// Measurements; the best counts.
const ROUNDS: usize = 3;

fn best(mut run: impl FnMut() -> Duration) -> Duration {
    (0..ROUNDS).map(|_| run()).min().unwrap_or_default()
}

/// Keys in a fixed pseudo-random order over `0..n`.
fn keys(n: u64, count: usize) -> Vec<u64> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..count)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect()
}

/// `t(id u64 pk, key u64, game u32, turn u32)` with one index on `key`
/// of `kind`, unique, and a composite B-tree index on (game, turn).
fn table(kind: IndexKind) -> (ModuleDef, Vec<AlgebraicType>) {
    let types = vec![
        AlgebraicType::U64,
        AlgebraicType::U64,
        AlgebraicType::U32,
        AlgebraicType::U32,
    ];
    let def = ModuleDef {
        owner: None,
        abi_version: ABI_VERSION,
        tables: vec![TableDef {
            public: false,
            name: "t".into(),
            columns: ["id", "key", "game", "turn"]
                .iter()
                .zip(&types)
                .map(|(n, t)| ColumnDef::new(*n, t.clone()))
                .collect(),
            primary_key: 0,
            auto_inc: None,
            indexes: vec![
                IndexDef {
                    name: "key".into(),
                    columns: vec![1],
                    unique: true,
                    kind,
                },
                IndexDef {
                    name: "game_turn".into(),
                    columns: vec![2, 3],
                    unique: false,
                    kind: IndexKind::Btree,
                },
            ],
            ephemeral: false,
            scheduled: None,
        }],
        reducers: vec![],
    };
    (def, types)
}

fn row(types: &[AlgebraicType], id: u64, key: u64) -> Vec<u8> {
    let values = [
        Value::U64(id),
        Value::U64(key),
        Value::U32((id % 1000) as u32),
        Value::U32((id / 1000) as u32),
    ];
    codec::encode_row(&values, types)
}

/// Inserts, then point lookups by the unique index, updates that change
/// the indexed value, and prefix scans of 100 rows.
fn secondary(kind: IndexKind, lines: &mut Vec<(String, Duration)>) -> Result<()> {
    let (def, types) = table(kind);
    let scramble = |id: u64| id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut tables = Tables::new(&def);
    let mut tx = TxLog::new();
    let start = Instant::now();
    for id in 0..ROWS {
        tables.insert(&mut tx, 0, &row(&types, id, scramble(id)))?;
        black_box(tables.commit(&mut tx));
    }
    lines.push((
        format!("insert, unique {kind} index on one column + composite B-tree"),
        start.elapsed() / ROWS as u32,
    ));
    let lookups: Vec<Vec<u8>> = keys(ROWS, OPS)
        .into_iter()
        .map(|id| scramble(id).to_le_bytes().to_vec())
        .collect();
    let lookup = best(|| {
        let start = Instant::now();
        for key in &lookups {
            black_box(tables.lookup_unique(0, 1, key).ok().flatten());
        }
        start.elapsed() / OPS as u32
    });
    lines.push((
        format!("point lookup through the unique {kind} index"),
        lookup,
    ));
    let updates: Vec<Vec<u8>> = keys(ROWS, OPS / 4)
        .into_iter()
        .enumerate()
        .map(|(i, id)| row(&types, id, scramble(id) ^ ((i as u64 + 1) << 63)))
        .collect();
    let start = Instant::now();
    for r in &updates {
        // A key already taken is refused; either way the index is searched.
        let _ = tables.update(&mut tx, 0, r);
        black_box(tables.commit(&mut tx));
    }
    lines.push((
        format!("update changing the {kind}-indexed value"),
        start.elapsed() / (OPS / 4) as u32,
    ));
    if kind == IndexKind::Btree {
        let t = tables.table(0)?;
        let prefixes: Vec<Bound<Value>> = keys(1000, 10_000)
            .into_iter()
            .map(|g| {
                t.index_key(IndexId::Secondary(1), vec![Value::U32(g as u32)])
                    .map(Bound::Included)
            })
            .collect::<Result<_, _>>()?;
        let scan = best(|| {
            let start = Instant::now();
            let mut out = Vec::new();
            for b in &prefixes {
                out.clear();
                t.scan(IndexId::Secondary(1), b, b, None, 1000, &mut out)
                    .map(|()| black_box(out.len()))
                    .ok();
            }
            start.elapsed() / prefixes.len() as u32
        });
        lines.push((
            "composite B-tree prefix scan, (game) of (game, turn): 100 rows".into(),
            scan,
        ));
    }
    Ok(())
}

/// The primary key's two possible layouts, the standard maps alone:
/// a B-tree of rows, against a hash map of rows with the keys in a B-tree
/// set beside it (what a hash primary key needs to keep scans in order).
fn layouts(n: u64, lines: &mut Vec<(String, Duration)>) {
    let row: Arc<[u8]> = vec![0u8; 16].into();
    let tree: BTreeMap<Value, Arc<[u8]>> = (0..n).map(|i| (Value::U64(i), row.clone())).collect();
    let mut hash: HashMap<Value, Arc<[u8]>> = HashMap::with_capacity(n as usize);
    let mut order = BTreeSet::new();
    for i in 0..n {
        hash.insert(Value::U64(i), row.clone());
        order.insert(Value::U64(i));
    }
    let probes: Vec<Value> = keys(n, OPS).into_iter().map(Value::U64).collect();
    let mut tree = tree;
    let point_tree = best(|| {
        let start = Instant::now();
        for k in &probes {
            black_box(tree.get(k));
            if let Some(v) = tree.get_mut(k) {
                *v = row.clone();
            }
        }
        start.elapsed() / OPS as u32
    });
    let point_hash = best(|| {
        let start = Instant::now();
        for k in &probes {
            black_box(hash.get(k));
            if let Some(v) = hash.get_mut(k) {
                *v = row.clone();
            }
        }
        start.elapsed() / OPS as u32
    });
    let scan_tree = best(|| {
        let start = Instant::now();
        black_box(tree.values().map(|r| r.len()).sum::<usize>());
        start.elapsed() / n as u32
    });
    let scan_hash = best(|| {
        let start = Instant::now();
        black_box(order.iter().map(|k| hash[k].len()).sum::<usize>());
        start.elapsed() / n as u32
    });
    lines.push((
        format!("{n} keys: find + update, B-tree of rows"),
        point_tree,
    ));
    lines.push((
        format!("{n} keys: find + update, hash map of rows"),
        point_hash,
    ));
    lines.push((
        format!("{n} keys: every row in key order, B-tree of rows"),
        scan_tree,
    ));
    lines.push((
        format!("{n} keys: every row in key order, hash map + ordered keys"),
        scan_hash,
    ));
}

pub fn figures() -> Result<()> {
    let mut lines = Vec::new();
    secondary(IndexKind::Btree, &mut lines)?;
    secondary(IndexKind::Hash, &mut lines)?;
    for n in [100_000, 1_000_000] {
        layouts(n, &mut lines);
    }
    println!("### Indexes, native ({ROWS} rows)\n");
    println!("| what | ns |");
    println!("| --- | ---: |");
    for (name, d) in &lines {
        println!("| {name} | {} |", d.as_nanos());
    }
    println!();
    Ok(())
}
