//! Fuzz target bodies (`fuzz/`): what the snapshot reader and the row codec
//! must survive. Each takes arbitrary bytes and must not panic; the regular
//! test suite runs them over the committed seed corpus.

use crate::codec::{decode_row, encode_row};
use crate::types::{AlgebraicType, Field, SCALARS, Variant, VariantShape};

/// `data` as a snapshot file: read whole (header, body, every module and
/// row, every check) and by header alone.
pub fn snapshot(data: &[u8]) {
    use interstice_fs::Storage;
    use interstice_fs::fault::FaultFs;
    let fs = FaultFs::new();
    let dir = std::path::Path::new("/fuzz");
    let path = dir.join("input");
    let written = fs
        .create_dir_all(dir)
        .and_then(|()| fs.create(&path))
        .and_then(|mut f| f.append(data));
    if written.is_ok() {
        let _ = crate::snapshot::read_header(&fs, &path);
        let _ = crate::snapshot::read(&fs, &path);
        let _ = crate::snapshot::read_definitions(&fs, &path);
    }
}

/// `data` as a schema and a row: the first byte gives the column count
/// (1 to 8), then each column's type is read from the bytes that follow
/// ([`type_from`]), and the rest is the row. A row that decodes must encode
/// back to exactly its bytes: the encoding is canonical.
pub fn row(data: &[u8]) {
    let Some((&count, mut rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 8) + 1;
    let mut types = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(ty) = type_from(&mut rest, 3) else {
            return;
        };
        types.push(ty);
    }
    if let Ok(values) = decode_row(rest, &types) {
        assert_eq!(
            encode_row(&values, &types),
            rest,
            "a decoded row re-encodes to other bytes"
        );
    }
}

/// A valid type read from the front of `input`, nested at most `depth`
/// levels below its top: each byte `k` picks scalar `k % 18`, or, for
/// `k / 18` of 8 and up, an option, a vec, a struct or an enum of what
/// follows.
pub fn type_from(input: &mut &[u8], depth: usize) -> Option<AlgebraicType> {
    let (&k, rest) = input.split_first()?;
    *input = rest;
    let scalar = SCALARS[usize::from(k) % SCALARS.len()].1.clone();
    if depth == 0 {
        return Some(scalar);
    }
    let arity = usize::from(k % 3) + 1;
    Some(match k / 18 {
        8 => match type_from(input, depth - 1)? {
            optional @ AlgebraicType::Option(_) => optional,
            inner => AlgebraicType::option(inner),
        },
        9 => AlgebraicType::vec(type_from(input, depth - 1)?),
        10 | 11 => {
            let mut fields = Vec::with_capacity(arity);
            for i in 0..arity {
                fields.push(Field {
                    name: format!("f{i}"),
                    ty: type_from(input, depth - 1)?,
                });
            }
            AlgebraicType::product("P", fields)
        }
        12 | 13 => {
            let mut variants = Vec::with_capacity(arity);
            for i in 0..arity {
                let fields = if i % 2 == 0 {
                    Vec::new()
                } else {
                    vec![Field {
                        name: "0".into(),
                        ty: type_from(input, depth - 1)?,
                    }]
                };
                variants.push(Variant {
                    name: format!("V{i}"),
                    shape: if fields.is_empty() {
                        VariantShape::Unit
                    } else {
                        VariantShape::Tuple
                    },
                    fields,
                });
            }
            AlgebraicType::sum("S", variants)
        }
        _ => scalar,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed nested seeds decode: the target reaches the codec's
    /// composite types, not only its refusals.
    #[test]
    fn nested_seeds_decode() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/row");
        for (seed, want) in [
            ("row-vec-u64", "vec<u64>"),
            ("row-struct-enum", "P"),
            ("row-option-vec-bool", "option<vec<bool>>"),
        ] {
            let data = std::fs::read(root.join(seed)).unwrap();
            let count = usize::from(data[0] % 8) + 1;
            let mut rest = &data[1..];
            let types: Vec<_> = (0..count)
                .map(|_| type_from(&mut rest, 3).unwrap())
                .collect();
            assert_eq!(types[0].to_string(), want, "{seed}");
            decode_row(rest, &types).unwrap_or_else(|e| panic!("{seed}: {e}"));
        }
    }

    /// Every file of the committed seed corpus runs through its target.
    #[test]
    fn seed_corpus_runs_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        let mut ran = 0;
        for (target, body) in [
            ("snapshot", super::snapshot as fn(&[u8])),
            ("row", super::row),
        ] {
            for entry in std::fs::read_dir(root.join(target)).unwrap() {
                body(&std::fs::read(entry.unwrap().path()).unwrap());
                ran += 1;
            }
        }
        assert!(ran >= 4, "the seed corpus is committed");
    }
}
