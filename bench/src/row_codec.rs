//! The row codec alone: encode, decode and validate rows, flat and nested,
//! with no table and no guest.

use std::time::Instant;

use anyhow::Result;
use interstice_store::{Value, codec};

/// Rows per timed pass.
const ROWS: usize = 20_000;
/// Passes; the best one counts.
const PASSES: usize = 5;

/// One measurement: rows per second and megabytes per second.
pub struct Rate {
    pub name: String,
    pub rows_per_s: f64,
    pub mb_per_s: f64,
}

fn best(bytes_per_row: usize, mut pass: impl FnMut()) -> (f64, f64) {
    let mut best = f64::MAX;
    for _ in 0..PASSES {
        let start = Instant::now();
        pass();
        best = best.min(start.elapsed().as_secs_f64());
    }
    let rows = ROWS as f64 / best;
    (rows, rows * bytes_per_row as f64 / 1e6)
}

/// Encode, decode and validate (one pass checking every byte, extracting
/// the first column, as a row from a guest goes through) `rows`.
fn rates(label: &str, types: &[Ty], rows: &[Vec<Value>]) -> Vec<Rate> {
    let encoded: Vec<Vec<u8>> = rows.iter().map(|r| codec::encode_row(r, types)).collect();
    let size = encoded.iter().map(Vec::len).sum::<usize>() / encoded.len();
    let mut wanted = vec![false; types.len()];
    wanted[0] = true;
    let mut out = Vec::new();
    let mut measured = Vec::new();
    let mut add = |what: &str, (rows_per_s, mb_per_s): (f64, f64)| {
        measured.push(Rate {
            name: format!("{label} ({size} B): {what}"),
            rows_per_s,
            mb_per_s,
        })
    };
    add(
        "encode",
        best(size, || {
            for r in rows.iter().cycle().take(ROWS) {
                std::hint::black_box(codec::encode_row(r, types));
            }
        }),
    );
    add(
        "decode",
        best(size, || {
            for b in encoded.iter().cycle().take(ROWS) {
                std::hint::black_box(codec::decode_row(b, types).expect("valid"));
            }
        }),
    );
    add(
        "validate",
        best(size, || {
            for b in encoded.iter().cycle().take(ROWS) {
                out.clear();
                codec::scan_row(b, types, &wanted, &mut out).expect("valid");
                std::hint::black_box(&out);
            }
        }),
    );
    measured
}

pub fn figures() -> Result<()> {
    let mut all = rates("flat row, 7 scalar columns", &flat_types(), &flat_rows());
    all.extend(nested());
    println!("## Row codec\n");
    println!("| row | rows/s | MB/s |");
    println!("| --- | ---: | ---: |");
    for r in &all {
        println!("| {} | {:.0} | {:.1} |", r.name, r.rows_per_s, r.mb_per_s);
    }
    println!();
    Ok(())
}

fn flat_rows() -> Vec<Vec<Value>> {
    (0..256u64)
        .map(|i| {
            vec![
                Value::U64(i),
                Value::I64(-(i as i64)),
                Value::String(format!("user-{i}").into()),
                if i % 2 == 0 {
                    Value::Null
                } else {
                    Value::String("a short note".into())
                },
                Value::F64(i as f64 * 0.5),
                Value::Bool(i % 3 == 0),
                Value::Bytes(vec![i as u8; 16].into()),
            ]
        })
        .collect()
}

type Ty = interstice_store::AlgebraicType;

fn flat_types() -> Vec<Ty> {
    vec![
        Ty::U64,
        Ty::I64,
        Ty::String,
        Ty::option(Ty::String),
        Ty::F64,
        Ty::Bool,
        Ty::Bytes,
    ]
}

/// `id: u64, name: String, pos: Pos { x: f32, y: f32 }, inventory:
/// Vec<Item { kind: Kind, count: u32 }>` of 8 items, `tags: Vec<String>` of
/// 3, `state: State` (an enum with a payload).
fn nested() -> Vec<Rate> {
    use interstice_store::{Field, Variant, VariantShape};
    let field = |name: &str, ty: Ty| Field {
        name: name.into(),
        ty,
    };
    let unit = |name: &str| Variant {
        name: name.into(),
        shape: VariantShape::Unit,
        fields: vec![],
    };
    let pos = Ty::product("Pos", vec![field("x", Ty::F32), field("y", Ty::F32)]);
    let kind = Ty::sum("Kind", vec![unit("Sword"), unit("Bow"), unit("Potion")]);
    let item = Ty::product("Item", vec![field("kind", kind), field("count", Ty::U32)]);
    let state = Ty::sum(
        "State",
        vec![
            unit("Idle"),
            Variant {
                name: "Moving".into(),
                shape: VariantShape::Struct,
                fields: vec![field("to", pos.clone()), field("speed", Ty::F32)],
            },
        ],
    );
    let types = vec![
        Ty::U64,
        Ty::String,
        pos,
        Ty::vec(item),
        Ty::vec(Ty::String),
        state,
    ];
    let rows: Vec<Vec<Value>> = (0..256u64)
        .map(|i| {
            let xy = |a: f32, b: f32| Value::Product(vec![Value::F32(a), Value::F32(b)].into());
            vec![
                Value::U64(i),
                Value::String(format!("player-{i}").into()),
                xy(i as f32, -(i as f32)),
                Value::Array(
                    (0..8u32)
                        .map(|k| {
                            Value::Product(
                                vec![
                                    Value::Sum {
                                        tag: (k % 3) as u8,
                                        fields: Box::new([]),
                                    },
                                    Value::U32(k * 7),
                                ]
                                .into(),
                            )
                        })
                        .collect(),
                ),
                Value::Array(
                    ["fast", "brave", "tired"]
                        .iter()
                        .map(|t| Value::String((*t).into()))
                        .collect(),
                ),
                Value::Sum {
                    tag: 1,
                    fields: vec![xy(1.0, 2.0), Value::F32(3.5)].into(),
                },
            ]
        })
        .collect();
    rates("nested row, 6 columns", &types, &rows)
}
