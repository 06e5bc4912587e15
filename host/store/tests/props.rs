//! Property tests of the row codec and of table transactions.

use interstice_fs::RealFs;
use interstice_store::{
    ABI_VERSION, AlgebraicType, ColumnDef, Field, IndexDef, ModuleDef, SCALARS, TableDef, Tables,
    TxLog, Value, Variant, VariantShape, codec, json, snapshot,
};
use proptest::prelude::*;

fn scalar() -> impl Strategy<Value = AlgebraicType> {
    proptest::sample::select(SCALARS.iter().map(|(_, t)| t.clone()).collect::<Vec<_>>())
}

fn field(i: usize, ty: AlgebraicType) -> Field {
    Field {
        name: format!("f{i}"),
        ty,
    }
}

/// Any valid type, up to three levels of `option`, `vec`, struct and enum
/// around scalars.
fn column_type() -> impl Strategy<Value = AlgebraicType> {
    scalar().prop_recursive(3, 24, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| if t.is_optional() {
                t
            } else {
                AlgebraicType::option(t)
            }),
            inner.clone().prop_map(AlgebraicType::vec),
            proptest::collection::vec(inner.clone(), 1..4).prop_map(|ts| {
                AlgebraicType::product(
                    "P",
                    ts.into_iter()
                        .enumerate()
                        .map(|(i, t)| field(i, t))
                        .collect(),
                )
            }),
            proptest::collection::vec(proptest::option::of(inner), 1..4).prop_map(|vs| {
                AlgebraicType::sum(
                    "S",
                    vs.into_iter()
                        .enumerate()
                        .map(|(i, payload)| match payload {
                            None => Variant {
                                name: format!("V{i}"),
                                shape: VariantShape::Unit,
                                fields: vec![],
                            },
                            Some(t) => Variant {
                                name: format!("V{i}"),
                                shape: VariantShape::Struct,
                                fields: vec![field(0, t)],
                            },
                        })
                        .collect(),
                )
            }),
        ]
    })
}

fn values_of(fields: &[Field]) -> BoxedStrategy<Box<[Value]>> {
    let parts: Vec<_> = fields.iter().map(|f| value_of(&f.ty)).collect();
    parts.prop_map(|v| v.into_boxed_slice()).boxed()
}

fn value_of(ty: &AlgebraicType) -> BoxedStrategy<Value> {
    use AlgebraicType as T;
    match ty {
        T::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        T::U8 => any::<u8>().prop_map(Value::U8).boxed(),
        T::U16 => any::<u16>().prop_map(Value::U16).boxed(),
        T::U32 => any::<u32>().prop_map(Value::U32).boxed(),
        T::U64 => any::<u64>().prop_map(Value::U64).boxed(),
        T::U128 => any::<u128>().prop_map(|v| Value::U128(Box::new(v))).boxed(),
        T::I8 => any::<i8>().prop_map(Value::I8).boxed(),
        T::I16 => any::<i16>().prop_map(Value::I16).boxed(),
        T::I32 => any::<i32>().prop_map(Value::I32).boxed(),
        T::I64 => any::<i64>().prop_map(Value::I64).boxed(),
        T::I128 => any::<i128>().prop_map(|v| Value::I128(Box::new(v))).boxed(),
        T::F32 => any::<f32>().prop_map(Value::F32).boxed(),
        T::F64 => any::<f64>().prop_map(Value::F64).boxed(),
        T::String => ".{0,20}".prop_map(|s| Value::String(s.into())).boxed(),
        T::Bytes => proptest::collection::vec(any::<u8>(), 0..20)
            .prop_map(|b| Value::Bytes(b.into()))
            .boxed(),
        T::Identity => any::<[u8; 32]>()
            .prop_map(|b| Value::Identity(Box::new(b)))
            .boxed(),
        T::Timestamp => any::<i64>().prop_map(Value::Timestamp).boxed(),
        T::Duration => any::<i64>().prop_map(Value::Duration).boxed(),
        T::Option(inner) => prop_oneof![Just(Value::Null), value_of(inner)].boxed(),
        T::Vec(inner) => proptest::collection::vec(value_of(inner), 0..4)
            .prop_map(|v| Value::Array(v.into()))
            .boxed(),
        T::Product(p) => values_of(&p.fields).prop_map(Value::Product).boxed(),
        T::Sum(s) => {
            let variants: Vec<_> = s
                .variants
                .iter()
                .enumerate()
                .map(|(tag, v)| {
                    values_of(&v.fields).prop_map(move |fields| Value::Sum {
                        tag: tag as u8,
                        fields,
                    })
                })
                .collect();
            proptest::strategy::Union::new(variants).boxed()
        }
    }
}

fn typed_row() -> impl Strategy<Value = (Vec<AlgebraicType>, Vec<Value>)> {
    proptest::collection::vec(column_type(), 1..8).prop_flat_map(|types| {
        let values: Vec<_> = types.iter().map(value_of).collect();
        (Just(types), values)
    })
}

proptest! {
    #[test]
    fn rows_round_trip((types, values) in typed_row()) {
        let bytes = codec::encode_row(&values, &types);
        let decoded = codec::decode_row(&bytes, &types).unwrap();
        prop_assert_eq!(&decoded, &values);
        prop_assert_eq!(codec::encode_row(&decoded, &types), bytes);
    }

    #[test]
    fn types_are_valid_and_values_fit(ty in column_type()) {
        prop_assert!(ty.validate().is_ok(), "{}", ty);
    }

    #[test]
    fn json_round_trips((types, values) in typed_row()) {
        for (ty, value) in types.iter().zip(&values) {
            let text = json::value_to_json(value, ty);
            let back = json::value_from_json(&text, ty);
            prop_assert_eq!(back.as_ref(), Ok(value), "{} as {}", ty, text);
        }
    }

    #[test]
    fn truncated_or_extended_rows_are_rejected(
        (types, values) in typed_row(),
        cut in any::<prop::sample::Index>(),
        extra in 1usize..4,
    ) {
        let bytes = codec::encode_row(&values, &types);
        if !bytes.is_empty() {
            let cut = cut.index(bytes.len());
            prop_assert!(codec::decode_row(&bytes[..cut], &types).is_err());
        }
        let mut longer = bytes.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(codec::decode_row(&longer, &types).is_err());
    }

}

/// Valid rows mutated (a byte flipped, a cut, a slice of another row
/// spliced in) never panic the decoder; whatever still decodes re-encodes
/// to exactly the same bytes (the encoding is canonical); and many do
/// decode, so the mutations reach past the first column.
#[test]
fn mutated_rows_never_panic_and_what_decodes_is_canonical() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = typed_row();
    let (mut decoded, mut tried) = (0u32, 0u32);
    for _ in 0..400 {
        let (types, values) = strategy.new_tree(&mut runner).unwrap().current();
        let bytes = codec::encode_row(&values, &types);
        let (other_types, other_values) = strategy.new_tree(&mut runner).unwrap().current();
        let other = codec::encode_row(&other_values, &other_types);
        for k in 0..16u64 {
            let mut mutated = bytes.clone();
            let pick = |n: usize| (runner_pick(k, n)) % n.max(1);
            match k % 3 {
                0 if !mutated.is_empty() => {
                    let at = pick(mutated.len());
                    mutated[at] ^= 1 << (k % 8);
                }
                1 if !mutated.is_empty() => mutated.truncate(pick(mutated.len())),
                _ if !other.is_empty() => {
                    let from = pick(other.len());
                    let at = pick(mutated.len() + 1);
                    let end = (from + 1 + pick(8)).min(other.len());
                    mutated.splice(at..at, other[from..end].iter().copied());
                }
                _ => continue,
            }
            tried += 1;
            if let Ok(back) = codec::decode_row(&mutated, &types) {
                decoded += 1;
                assert_eq!(
                    codec::encode_row(&back, &types),
                    mutated,
                    "a mutated row of {types:?} decodes but is not canonical"
                );
            }
        }
    }
    assert!(
        decoded > tried / 20,
        "only {decoded} of {tried} mutated rows decoded"
    );
}

/// A spread of positions for mutation `k` over `n` bytes.
fn runner_pick(k: u64, n: usize) -> usize {
    let mut x = (k + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n as u64;
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 32) as usize
}

fn u64_col(name: &str) -> ColumnDef {
    ColumnDef::new(name, AlgebraicType::U64)
}

/// `t(id pk auto_inc, tag unique, group btree)`.
fn def() -> ModuleDef {
    ModuleDef {
        owner: None,
        abi_version: ABI_VERSION,
        tables: vec![TableDef {
            public: false,
            name: "t".into(),
            columns: vec![u64_col("id"), u64_col("tag"), u64_col("group")],
            primary_key: 0,
            auto_inc: Some(0),
            indexes: vec![
                IndexDef::btree("tag", 1, true),
                IndexDef::btree("group", 2, false),
            ],
            ephemeral: false,
            scheduled: None,
        }],
        reducers: vec![],
    }
}

fn row(id: u64, tag: u64, group: u64) -> Vec<u8> {
    let t = AlgebraicType::U64;
    codec::encode_row(
        &[Value::U64(id), Value::U64(tag), Value::U64(group)],
        &[t.clone(), t.clone(), t],
    )
}

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u64, u64),
    Update(u64, u64, u64),
    Delete(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..6, 0u64..6, 0u64..3).prop_map(|(a, b, c)| Op::Insert(a, b, c)),
        (0u64..6, 0u64..6, 0u64..3).prop_map(|(a, b, c)| Op::Update(a, b, c)),
        (0u64..6).prop_map(Op::Delete),
    ]
}

/// Everything observable about the table: rows in key order, the
/// auto-increment counter, and the rows in each secondary index's order.
#[derive(Debug, PartialEq)]
struct Observed(Vec<Vec<u8>>, u64, Vec<Vec<u8>>, Vec<Vec<u8>>);

fn observe(tables: &Tables) -> Observed {
    use interstice_store::IndexId;
    use std::ops::Bound::Unbounded;
    let t = tables.table(0).unwrap();
    let rows = t.iter().map(|r| r.to_vec()).collect();
    let scan = |index| {
        let mut out = Vec::new();
        t.scan(index, &Unbounded, &Unbounded, None, usize::MAX, &mut out)
            .unwrap();
        out.into_iter().map(|(_, r)| r.to_vec()).collect::<Vec<_>>()
    };
    Observed(
        rows,
        t.next_auto_inc(),
        scan(IndexId::Secondary(0)),
        scan(IndexId::Secondary(1)),
    )
}

/// What the table should hold: rows by id (tag, group), and the next
/// auto-increment value.
struct Model {
    rows: std::collections::BTreeMap<u64, (u64, u64)>,
    next: u64,
}

impl Model {
    fn tag_taken(&self, tag: u64, except: u64) -> bool {
        self.rows
            .iter()
            .any(|(id, (t, _))| *t == tag && *id != except)
    }

    /// Applies `op` as the table should, and whether it succeeds.
    fn apply(&mut self, op: &Op) -> bool {
        match *op {
            Op::Insert(id, tag, g) => {
                let id = if id == 0 { self.next } else { id };
                if self.rows.contains_key(&id) || self.tag_taken(tag, id) {
                    return false;
                }
                self.rows.insert(id, (tag, g));
                self.next = self.next.max(id + 1);
                true
            }
            Op::Update(id, tag, g) => {
                if !self.rows.contains_key(&id) || self.tag_taken(tag, id) {
                    return false;
                }
                self.rows.insert(id, (tag, g));
                self.next = self.next.max(id + 1);
                true
            }
            Op::Delete(id) => self.rows.remove(&id).is_some(),
        }
    }

    fn encoded(&self) -> Vec<Vec<u8>> {
        self.rows
            .iter()
            .map(|(id, (tag, g))| row(*id, *tag, *g))
            .collect()
    }
}

proptest! {
    /// Every operation does what a model of the table says (succeeds or is
    /// refused, and leaves the rows and counter the model has); a
    /// rolled-back transaction leaves rows, indexes and the auto-increment
    /// counter exactly as they were; a committed one keeps unique values
    /// unique, and replaying its mutations into empty tables gives the same
    /// state.
    #[test]
    fn rollback_restores_and_redo_replays(
        setup in proptest::collection::vec(op(), 0..12),
        tx_ops in proptest::collection::vec(op(), 1..12),
    ) {
        let def = def();
        let mut tables = Tables::new(&def);
        let mut model = Model {
            rows: Default::default(),
            next: tables.table(0).unwrap().next_auto_inc(),
        };
        let mut all_mutations = Vec::new();
        let mut succeeded = 0;
        for ops in [&setup, &tx_ops] {
            let before = observe(&tables);
            let kept = (model.rows.clone(), model.next);
            let mut tx = TxLog::new();
            for op in ops.iter() {
                let ok = match *op {
                    Op::Insert(id, tag, g) => tables.insert(&mut tx, 0, &row(id, tag, g)).is_ok(),
                    Op::Update(id, tag, g) => tables.update(&mut tx, 0, &row(id, tag, g)).is_ok(),
                    Op::Delete(id) => tables.delete(&mut tx, 0, &id.to_le_bytes()) == Ok(true),
                };
                prop_assert_eq!(ok, model.apply(op), "{:?}", op);
                succeeded += ok as usize;
                let Observed(rows, next, ..) = observe(&tables);
                prop_assert_eq!(rows, model.encoded(), "after {:?}", op);
                prop_assert_eq!(next, model.next, "after {:?}", op);
            }
            // Unique tags hold after any sequence.
            let Observed(rows, ..) = observe(&tables);
            let mut tags: Vec<_> = rows.iter().map(|r| r[8..16].to_vec()).collect();
            tags.sort();
            tags.dedup();
            prop_assert_eq!(tags.len(), rows.len());
            if std::ptr::eq(ops, &setup) {
                all_mutations.extend(tables.commit(&mut tx));
            } else {
                tables.rollback(&mut tx);
                prop_assert_eq!(observe(&tables), before);
                (model.rows, model.next) = kept;
            }
        }
        // Not a property of empty work: most cases change something.
        prop_assume!(succeeded > 0);
        let mut replayed = Tables::new(&def);
        for m in &all_mutations {
            replayed.apply(m.table, m.op, &m.row).unwrap();
        }
        prop_assert_eq!(observe(&replayed), observe(&tables));
    }
}

fn committed_tables(ops: &[Op]) -> Tables {
    let mut tables = Tables::new(&def());
    let mut tx = TxLog::new();
    for op in ops {
        let _ = match *op {
            Op::Insert(id, tag, g) => tables.insert(&mut tx, 0, &row(id, tag, g)).map(drop),
            Op::Update(id, tag, g) => tables.update(&mut tx, 0, &row(id, tag, g)),
            Op::Delete(id) => tables.delete(&mut tx, 0, &id.to_le_bytes()).map(drop),
        };
    }
    tables.commit(&mut tx);
    tables
}

fn save(path: &std::path::Path, tables: &Tables) -> snapshot::Written {
    let def = def();
    let image = snapshot::ModuleImage {
        name: "m",
        version: 3,
        def: &def,
        tables,
    };
    snapshot::write(&RealFs, path, 42, 1_000, &[image]).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A snapshot read back gives the same rows, indexes and counter.
    #[test]
    fn snapshot_round_trips(ops in proptest::collection::vec(op(), 0..40)) {
        let tables = committed_tables(&ops);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(snapshot::file_name(42));
        let written = save(&path, &tables);
        let loaded = snapshot::read(&RealFs, &path).unwrap();
        prop_assert_eq!(loaded.header, written.header);
        prop_assert_eq!(loaded.header.tx_id, 42);
        prop_assert_eq!(loaded.header.last_timestamp_micros, 1_000);
        prop_assert_eq!(loaded.rows, tables.table(0).unwrap().len() as u64);
        prop_assert_eq!(loaded.modules.len(), 1);
        prop_assert_eq!(loaded.modules[0].name.as_str(), "m");
        prop_assert_eq!(loaded.modules[0].version, 3);
        prop_assert_eq!(&loaded.modules[0].def, &def());
        prop_assert_eq!(observe(&loaded.modules[0].tables), observe(&tables));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A bit flipped on its way from the device (the file itself is fine)
    /// is detected just the same, and the next read, undamaged, succeeds.
    #[test]
    fn snapshot_detects_a_bit_flipped_on_read(bit in any::<u64>()) {
        use interstice_fs::Storage;
        use interstice_fs::fault::{self, Fault, FaultFs};
        let tables = committed_tables(&[Op::Insert(1, 2, 0), Op::Insert(2, 3, 1)]);
        let fs = FaultFs::new();
        let dir = std::path::Path::new("/data");
        fs.create_dir_all(dir).unwrap();
        let path = dir.join(snapshot::file_name(42));
        let def = def();
        let image = snapshot::ModuleImage { name: "m", version: 3, def: &def, tables: &tables };
        snapshot::write(&fs, &path, 42, 1_000, &[image]).unwrap();
        fs.inject(Fault::flip_bit(fault::Op::Read, bit));
        prop_assert!(snapshot::read(&fs, &path).is_err());
        prop_assert_eq!(fs.injected(), 1);
        prop_assert!(snapshot::read(&fs, &path).is_ok());
    }
}

/// Changing any single byte of a snapshot file makes reading it fail.
#[test]
fn snapshot_detects_every_damaged_byte() {
    let ops: Vec<Op> = (0..200)
        .map(|i| Op::Insert(0, i, i % 3))
        .chain((0..50).map(|i| Op::Delete(i * 3 + 1)))
        .collect();
    let tables = committed_tables(&ops);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(snapshot::file_name(42));
    save(&path, &tables);
    let good = std::fs::read(&path).unwrap();
    assert!(snapshot::read(&RealFs, &path).is_ok());
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        std::fs::write(&path, &bad).unwrap();
        let err = match snapshot::read(&RealFs, &path) {
            Ok(_) => panic!("flip at byte {at} of {} went unnoticed", good.len()),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
    for len in [0, 10, snapshot::HEADER_LEN, good.len() - 1] {
        std::fs::write(&path, &good[..len]).unwrap();
        assert!(snapshot::read(&RealFs, &path).is_err(), "cut at {len}");
    }
    // A file renamed to another transaction's name is refused.
    std::fs::write(&path, &good).unwrap();
    let renamed = dir.path().join(snapshot::file_name(41));
    std::fs::rename(&path, &renamed).unwrap();
    let err = snapshot::read(&RealFs, &renamed).err().unwrap().to_string();
    assert!(err.contains("named for another transaction"), "{err}");
}

/// Golden bytes of the header, as docs/snapshot-format.md gives them.
#[test]
fn snapshot_header_layout() {
    let h = snapshot::SnapshotHeader {
        tx_id: 0x0102,
        last_timestamp_micros: -2,
        body_len: 0x30,
        raw_len: 0x40,
        body_crc: 0xAABBCCDD,
    };
    let b = h.encode();
    assert_eq!(&b[0..8], b"INTSSNAP");
    assert_eq!(&b[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[16..24], &[2, 1, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        &b[24..32],
        &[0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
    );
    assert_eq!(&b[32..40], &[0x30, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[40..48], &[0x40, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(&b[48..52], &[0xDD, 0xCC, 0xBB, 0xAA]);
    assert_eq!(&b[52..60], &[0; 8]);
    assert_eq!(&b[60..64], &crc32fast_hash(&b[..60]).to_le_bytes());
    assert_eq!(snapshot::SnapshotHeader::decode(&b), Ok(h));
}

fn crc32fast_hash(b: &[u8]) -> u32 {
    // CRC-32 (IEEE), bit by bit: an independent check of the header CRC.
    let mut crc = !0u32;
    for &byte in b {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
