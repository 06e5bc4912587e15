//! Fuzz target bodies (`fuzz/`): what the snapshot reader and the row codec
//! must survive. Each takes arbitrary bytes and must not panic; the regular
//! test suite runs them over the committed seed corpus.

use crate::codec::{decode_row, encode_row};
use crate::schema::{ColumnType, ScalarType};

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
/// (1 to 8), the next that many bytes each column's type, the rest is the
/// row. A row that decodes must encode back to exactly its bytes: the
/// encoding is canonical.
pub fn row(data: &[u8]) {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = usize::from(count % 8) + 1;
    if rest.len() < count {
        return;
    }
    let (kinds, bytes) = rest.split_at(count);
    let types: Vec<ColumnType> = kinds
        .iter()
        .map(|k| ColumnType {
            scalar: [
                ScalarType::Bool,
                ScalarType::I32,
                ScalarType::I64,
                ScalarType::U32,
                ScalarType::U64,
                ScalarType::F64,
                ScalarType::String,
                ScalarType::Bytes,
            ][usize::from(k % 8)],
            optional: k & 8 != 0,
        })
        .collect();
    if let Ok(values) = decode_row(bytes, &types) {
        assert_eq!(
            encode_row(&values, &types),
            bytes,
            "a decoded row re-encodes to other bytes"
        );
    }
}

#[cfg(test)]
mod tests {
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
