//! Composite and hash indexes against a model computed from the table's own
//! rows: every scan, prefix, range and point lookup gives exactly the rows
//! the documented order and bounds say, in that order, whatever sequence of
//! writes, rollbacks, replays and bulk loads came before.

use std::cmp::Ordering;
use std::ops::Bound;

use interstice_store::{
    ABI_VERSION, AlgebraicType, ColumnDef, DbError, IndexDef, IndexId, IndexKind, ModuleDef,
    TableDef, Tables, TxLog, Value, codec,
};
use proptest::prelude::*;

const NAMES: [&str; 5] = ["a", "b", "bb", "c", "d"];

/// `moves(id u64 pk, game u8, turn u16, name string)`.
fn def() -> ModuleDef {
    let index = |name: &str, columns: Vec<u32>, unique, kind| IndexDef {
        name: name.into(),
        columns,
        unique,
        kind,
    };
    ModuleDef {
        owner: None,
        abi_version: ABI_VERSION,
        tables: vec![TableDef {
            public: false,
            name: "moves".into(),
            columns: vec![
                ColumnDef::new("id", AlgebraicType::U64),
                ColumnDef::new("game", AlgebraicType::U8),
                ColumnDef::new("turn", AlgebraicType::U16),
                ColumnDef::new("name", AlgebraicType::String),
            ],
            primary_key: 0,
            auto_inc: None,
            indexes: vec![
                index("by_game_turn", vec![1, 2], false, IndexKind::Btree),
                index("by_name", vec![3], true, IndexKind::Hash),
                index("by_game", vec![1], false, IndexKind::Hash),
                index("by_turn_game", vec![2, 1], true, IndexKind::Btree),
                index("by_pair", vec![1, 2], false, IndexKind::Hash),
            ],
            ephemeral: false,
            scheduled: None,
        }],
        reducers: vec![],
    }
}

const BY_GAME_TURN: usize = 0;
const BY_NAME: usize = 1;
const BY_GAME: usize = 2;
const BY_TURN_GAME: usize = 3;
const BY_PAIR: usize = 4;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    id: u64,
    game: u8,
    turn: u16,
    name: String,
}

impl Row {
    fn values(&self) -> Vec<Value> {
        vec![
            Value::U64(self.id),
            Value::U8(self.game),
            Value::U16(self.turn),
            Value::String(self.name.as_str().into()),
        ]
    }

    fn bytes(&self) -> Vec<u8> {
        codec::encode_row(&self.values(), &def().tables[0].column_types())
    }

    fn decode(bytes: &[u8]) -> Row {
        let v = codec::decode_row(bytes, &def().tables[0].column_types()).unwrap();
        match &v[..] {
            [
                Value::U64(id),
                Value::U8(game),
                Value::U16(turn),
                Value::String(name),
            ] => Row {
                id: *id,
                game: *game,
                turn: *turn,
                name: name.to_string(),
            },
            other => panic!("not a row of moves: {other:?}"),
        }
    }

    /// The row's key in a secondary index, as model values.
    fn key(&self, index: usize) -> Vec<Value> {
        let v = self.values();
        def().tables[0].indexes[index]
            .columns
            .iter()
            .map(|c| v[*c as usize].clone())
            .collect()
    }
}

fn row() -> impl Strategy<Value = Row> {
    (0u64..10, 0u8..3, 0u16..4, 0..NAMES.len()).prop_map(|(id, game, turn, n)| Row {
        id,
        game,
        turn,
        name: NAMES[n].to_string(),
    })
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Row),
    Update(Row),
    Delete(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => row().prop_map(Op::Insert),
        2 => row().prop_map(Op::Update),
        1 => (0u64..10).prop_map(Op::Delete),
    ]
}

fn run(tables: &mut Tables, tx: &mut TxLog, op: &Op) -> Result<(), DbError> {
    match op {
        Op::Insert(r) => tables.insert(tx, 0, &r.bytes()).map(drop),
        Op::Update(r) => tables.update(tx, 0, &r.bytes()),
        Op::Delete(id) => tables.delete(tx, 0, &id.to_le_bytes()).map(drop),
    }
}

/// A bound over a prefix of one or two columns of a composite index.
#[derive(Clone, Debug)]
enum PrefixBound {
    Unbounded,
    Included(Vec<Value>),
    Excluded(Vec<Value>),
}

/// A prefix of `(a, b)` keys, one or two long.
fn prefix(
    a: impl Strategy<Value = Value> + Clone,
    b: impl Strategy<Value = Value> + Clone,
) -> impl Strategy<Value = Vec<Value>> + Clone {
    (a, proptest::option::of(b)).prop_map(|(a, b)| match b {
        Some(b) => vec![a, b],
        None => vec![a],
    })
}

fn bound(p: impl Strategy<Value = Vec<Value>> + Clone) -> impl Strategy<Value = PrefixBound> {
    prop_oneof![
        1 => Just(PrefixBound::Unbounded),
        2 => p.clone().prop_map(PrefixBound::Included),
        2 => p.prop_map(PrefixBound::Excluded),
    ]
}

fn game() -> impl Strategy<Value = Value> + Clone {
    (0u8..3).prop_map(Value::U8)
}

fn turn() -> impl Strategy<Value = Value> + Clone {
    (0u16..4).prop_map(Value::U16)
}

/// Encodes a bound as a guest sends it and decodes it as the host does.
fn wire(tables: &Tables, index: usize, b: &PrefixBound) -> Bound<Value> {
    let t = tables.table(0).unwrap();
    let types = t.def().column_types();
    let columns = &t.def().indexes[index].columns;
    let encode = |values: &[Value]| {
        let mut out = Vec::new();
        for (v, c) in values.iter().zip(columns) {
            codec::encode_value(v, &types[*c as usize], &mut out);
        }
        t.decode_index_key(IndexId::Secondary(index), &out).unwrap()
    };
    match b {
        PrefixBound::Unbounded => Bound::Unbounded,
        PrefixBound::Included(v) => Bound::Included(encode(v)),
        PrefixBound::Excluded(v) => Bound::Excluded(encode(v)),
    }
}

/// Whether `key` lies within the bounds, comparing as many leading columns
/// as each bound gives.
fn within(key: &[Value], lower: &PrefixBound, upper: &PrefixBound) -> bool {
    let cmp = |b: &[Value]| key[..b.len()].cmp(b);
    let lower_ok = match lower {
        PrefixBound::Unbounded => true,
        PrefixBound::Included(b) => cmp(b) != Ordering::Less,
        PrefixBound::Excluded(b) => cmp(b) == Ordering::Greater,
    };
    let upper_ok = match upper {
        PrefixBound::Unbounded => true,
        PrefixBound::Included(b) => cmp(b) != Ordering::Greater,
        PrefixBound::Excluded(b) => cmp(b) == Ordering::Less,
    };
    lower_ok && upper_ok
}

fn rows_of(tables: &Tables) -> Vec<Row> {
    tables
        .table(0)
        .unwrap()
        .iter()
        .map(|r| Row::decode(r))
        .collect()
}

/// Every row of a scan, fetched `batch` rows at a time the way a cursor
/// does: each batch re-seeks after the last position returned.
fn scan(
    tables: &Tables,
    index: usize,
    lower: &Bound<Value>,
    upper: &Bound<Value>,
    batch: usize,
) -> Result<Vec<Row>, DbError> {
    let t = tables.table(0).unwrap();
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let mut out = Vec::new();
        t.scan(
            IndexId::Secondary(index),
            lower,
            upper,
            after.as_ref(),
            batch,
            &mut out,
        )?;
        let Some((last, _)) = out.last() else {
            return Ok(all);
        };
        after = Some(last.clone());
        all.extend(out.iter().map(|(_, r)| Row::decode(r)));
    }
}

/// What the model says a B-tree scan returns: rows within the bounds,
/// ordered by key and then primary key.
fn expected_range(
    rows: &[Row],
    index: usize,
    lower: &PrefixBound,
    upper: &PrefixBound,
) -> Vec<Row> {
    let mut hits: Vec<(Vec<Value>, Row)> = rows
        .iter()
        .filter(|r| within(&r.key(index), lower, upper))
        .map(|r| (r.key(index), r.clone()))
        .collect();
    hits.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    hits.into_iter().map(|(_, r)| r).collect()
}

/// What a point lookup returns: rows with exactly that key, by primary key.
fn expected_point(rows: &[Row], index: usize, key: &[Value]) -> Vec<Row> {
    rows.iter()
        .filter(|r| r.key(index) == key)
        .cloned()
        .collect()
}

/// Everything observable through the indexes: every full scan of the B-tree
/// indexes and every point of the hash indexes over the whole key domain.
fn observe(tables: &Tables) -> Vec<Vec<Row>> {
    let all = |index| scan(tables, index, &Bound::Unbounded, &Bound::Unbounded, 1000).unwrap();
    let mut seen = vec![all(BY_GAME_TURN), all(BY_TURN_GAME)];
    let point = |index, key: Vec<Value>| {
        let b = wire(tables, index, &PrefixBound::Included(key));
        scan(tables, index, &b, &b, 1000).unwrap()
    };
    for name in NAMES {
        seen.push(point(BY_NAME, vec![Value::String(name.into())]));
    }
    for g in 0..3 {
        seen.push(point(BY_GAME, vec![Value::U8(g)]));
        for t in 0..4 {
            seen.push(point(BY_PAIR, vec![Value::U8(g), Value::U16(t)]));
        }
    }
    seen
}

/// The constraints of the unique indexes hold over the rows.
fn assert_unique(rows: &[Row]) -> Result<(), TestCaseError> {
    for index in [BY_NAME, BY_TURN_GAME] {
        let mut keys: Vec<_> = rows.iter().map(|r| r.key(index)).collect();
        keys.sort();
        let n = keys.len();
        keys.dedup();
        prop_assert_eq!(keys.len(), n, "index {} holds a key twice", index);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Scans of the composite B-tree indexes, with bounds of one or two
    /// columns, included or excluded, in batches of any size, return what
    /// the model says; hash lookups return the rows of their key; unique
    /// indexes stay unique; rollback, replay and a bulk load give the same
    /// indexes.
    #[test]
    fn composite_and_hash_indexes_follow_the_model(
        setup in proptest::collection::vec(op(), 0..24),
        rolled_back in proptest::collection::vec(op(), 1..8),
        lower in bound(prefix(game(), turn())),
        upper in bound(prefix(game(), turn())),
        flipped_lower in bound(prefix(turn(), game())),
        flipped_upper in bound(prefix(turn(), game())),
        batch in 1usize..4,
    ) {
        let def = def();
        let mut tables = Tables::new(&def);
        let mut tx = TxLog::new();
        for op in &setup {
            let _ = run(&mut tables, &mut tx, op);
        }
        let mutations = tables.commit(&mut tx);
        let rows = rows_of(&tables);
        assert_unique(&rows)?;

        for (index, lower, upper) in [
            (BY_GAME_TURN, &lower, &upper),
            (BY_TURN_GAME, &flipped_lower, &flipped_upper),
        ] {
            let got = scan(
                &tables,
                index,
                &wire(&tables, index, lower),
                &wire(&tables, index, upper),
                batch,
            )
            .unwrap();
            prop_assert_eq!(got, expected_range(&rows, index, lower, upper));
        }

        for r in &rows {
            for index in [BY_NAME, BY_GAME, BY_PAIR] {
                let key = PrefixBound::Included(r.key(index));
                let b = wire(&tables, index, &key);
                let got = scan(&tables, index, &b, &b, batch).unwrap();
                prop_assert_eq!(got, expected_point(&rows, index, &r.key(index)));
            }
        }

        let before = observe(&tables);
        for op in &rolled_back {
            let _ = run(&mut tables, &mut tx, op);
        }
        tables.rollback(&mut tx);
        prop_assert_eq!(observe(&tables), before.clone());

        let mut replayed = Tables::new(&def);
        for m in &mutations {
            replayed.apply(m.table, m.op, &m.row).unwrap();
        }
        prop_assert_eq!(observe(&replayed), before.clone());

        let mut loaded = Tables::new(&def);
        let stored: Vec<_> = tables.table(0).unwrap().iter().cloned().map(Ok).collect();
        loaded.bulk_load(0, stored, 1).unwrap();
        prop_assert_eq!(observe(&loaded), before);
    }
}

#[test]
fn a_hash_index_answers_whole_keys_only() {
    let mut tables = Tables::new(&def());
    let mut tx = TxLog::new();
    let row = Row {
        id: 1,
        game: 2,
        turn: 3,
        name: "a".into(),
    };
    tables.insert(&mut tx, 0, &row.bytes()).unwrap();
    let t = tables.table(0).unwrap();
    let pair = wire(
        &tables,
        BY_PAIR,
        &PrefixBound::Included(vec![Value::U8(2), Value::U16(3)]),
    );
    let half = wire(&tables, BY_PAIR, &PrefixBound::Included(vec![Value::U8(2)]));
    let game = wire(&tables, BY_GAME, &PrefixBound::Included(vec![Value::U8(2)]));
    let refused = |lower: &Bound<Value>, upper: &Bound<Value>, index: usize| {
        let mut out = Vec::new();
        t.scan(IndexId::Secondary(index), lower, upper, None, 10, &mut out)
            .unwrap_err()
            .to_string()
    };
    let message = "is a hash index: it finds the rows of one whole key, not a range or a prefix";
    assert_eq!(
        refused(&half, &half, BY_PAIR),
        format!("index `by_pair` of table `moves` (id 5) {message}")
    );
    assert!(refused(&Bound::Unbounded, &Bound::Unbounded, BY_GAME).contains(message));
    let excluded = match &game {
        Bound::Included(v) => Bound::Excluded(v.clone()),
        _ => unreachable!(),
    };
    assert!(refused(&game, &excluded, BY_GAME).contains(message));
    assert_eq!(scan(&tables, BY_PAIR, &pair, &pair, 10).unwrap(), vec![row]);
}

#[test]
fn unique_lookups_need_the_whole_key_and_refuse_a_second_holder() {
    let mut tables = Tables::new(&def());
    let mut tx = TxLog::new();
    let first = Row {
        id: 1,
        game: 0,
        turn: 7,
        name: "a".into(),
    };
    tables.insert(&mut tx, 0, &first.bytes()).unwrap();
    let types = def().tables[0].column_types();
    let key = |values: &[(Value, usize)]| {
        let mut out = Vec::new();
        for (v, c) in values {
            codec::encode_value(v, &types[*c], &mut out);
        }
        out
    };
    // by_turn_game is index 4 on the wire, by_name 2.
    let whole = key(&[(Value::U16(7), 2), (Value::U8(0), 1)]);
    let found = tables.lookup_unique(0, 4, &whole).unwrap().unwrap();
    assert_eq!(Row::decode(&found), first);
    let prefix = key(&[(Value::U16(7), 2)]);
    let err = tables.lookup_unique(0, 4, &prefix).unwrap_err().to_string();
    assert_eq!(
        err,
        "index `by_turn_game` of table `moves` (id 4) looks up whole keys, not a prefix"
    );
    let name = key(&[(Value::String("a".into()), 3)]);
    assert_eq!(
        Row::decode(&tables.lookup_unique(0, 2, &name).unwrap().unwrap()),
        first
    );
    // A non-unique index has no unique lookup.
    assert!(matches!(
        tables.lookup_unique(0, 3, &key(&[(Value::U8(0), 1)])),
        Err(DbError::NoSuchIndex(3))
    ));
    // Trailing bytes after a whole key are refused.
    let mut long = whole.clone();
    long.push(0);
    assert!(matches!(
        tables.lookup_unique(0, 4, &long),
        Err(DbError::InvalidRow { .. })
    ));

    let same_name = Row {
        id: 2,
        name: "a".into(),
        turn: 1,
        ..first.clone()
    };
    let err = tables.insert(&mut tx, 0, &same_name.bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unique constraint `by_name` of table `moves` violated by value \"a\""
    );
    let same_pair = Row {
        id: 3,
        name: "b".into(),
        ..first.clone()
    };
    let err = tables.insert(&mut tx, 0, &same_pair.bytes()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("unique constraint `by_turn_game` of table `moves` violated by value"),
        "{err}"
    );
    assert_eq!(tables.table(0).unwrap().len(), 1);
}
