//! The payload of a record: one committed transaction (payload format 1).
//! `docs/log-format.md` is the specification.
//!
//! ```text
//! kind        u8      1 = reducer call, 2 = module publication,
//!                     3 = new version of a published module,
//!                     4 = module deleted, 5 = SQL statement
//! timestamp   i64 LE  logical time of the transaction, µs since the Unix epoch
//! module      str     module name
//! definition  bytes   kinds 2 and 3 only: the module definition (UTF-8 JSON)
//! reducer     str     reducer name (publication: the init reducer, or empty)
//! caller      str     caller identity
//! args        bytes   the arguments, one row in the canonical row encoding
//!                     (kind 5: the statement's text, UTF-8)
//! count       u32 LE  number of mutations
//! mutations   count × { op u8 (1 insert, 2 update, 3 delete), table u32 LE, row bytes }
//! ```
//!
//! `str` and `bytes` are a u32 LE length followed by that many bytes; a `str`
//! is UTF-8. Row bytes are opaque here: the store validates them on replay.

use thiserror::Error;

/// The payload format this code writes and reads.
pub const PAYLOAD_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    Call = 1,
    Publish = 2,
    /// A new version of a module already published: the definition, its
    /// version, and the migration or init reducer's mutations.
    Upgrade = 3,
    /// The module and all its data were deleted. No definition, reducer,
    /// arguments or mutations.
    Drop = 4,
    /// An `INSERT`, `UPDATE` or `DELETE` run by the module's owner or the
    /// operator: the statement's text as the arguments, the rows it changed
    /// as the mutations. Replay applies the mutations; it never runs SQL.
    Sql = 5,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Insert = 1,
    Update = 2,
    Delete = 3,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Insert => "insert",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }
}

/// One row change, borrowed from a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MutationRef<'a> {
    pub op: Op,
    pub table: u32,
    pub row: &'a [u8],
}

/// A decoded payload, borrowing from the segment's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxRecord<'a> {
    pub header: TxHeader<'a>,
    pub mutations: Vec<MutationRef<'a>>,
}

/// A payload that passed its checksum but does not decode: written by a
/// newer or broken writer.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayloadError {
    #[error("payload ends at byte {at} while reading {what}")]
    Truncated { at: usize, what: &'static str },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("unknown mutation op {op} at byte {at}")]
    UnknownOp { op: u8, at: usize },
    #[error("{what} at byte {at} is not valid UTF-8")]
    Utf8 { at: usize, what: &'static str },
    #[error("{0} trailing bytes after the last mutation")]
    Trailing(usize),
}

/// The fields of a transaction other than its mutations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxHeader<'a> {
    pub kind: RecordKind,
    pub timestamp_micros: i64,
    pub module: &'a str,
    /// The module definition, for a publication.
    pub definition: Option<&'a [u8]>,
    pub reducer: &'a str,
    pub caller: &'a str,
    pub args: &'a [u8],
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("lengths are bounded far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Encodes a payload into `out` (cleared first).
pub fn encode<'m>(
    header: &TxHeader<'_>,
    mutations: impl ExactSizeIterator<Item = MutationRef<'m>>,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.push(header.kind as u8);
    out.extend_from_slice(&header.timestamp_micros.to_le_bytes());
    put_bytes(out, header.module.as_bytes());
    if matches!(header.kind, RecordKind::Publish | RecordKind::Upgrade) {
        put_bytes(out, header.definition.unwrap_or_default());
    }
    put_bytes(out, header.reducer.as_bytes());
    put_bytes(out, header.caller.as_bytes());
    put_bytes(out, header.args);
    let count = u32::try_from(mutations.len()).expect("mutations per tx are bounded");
    out.extend_from_slice(&count.to_le_bytes());
    for m in mutations {
        out.push(m.op as u8);
        out.extend_from_slice(&m.table.to_le_bytes());
        put_bytes(out, m.row);
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], PayloadError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(PayloadError::Truncated { at: self.at, what })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, PayloadError> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, PayloadError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }

    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], PayloadError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn str(&mut self, what: &'static str) -> Result<&'a str, PayloadError> {
        let at = self.at;
        std::str::from_utf8(self.bytes(what)?).map_err(|_| PayloadError::Utf8 { at, what })
    }
}

impl<'a> TxRecord<'a> {
    pub fn decode(payload: &'a [u8]) -> Result<TxRecord<'a>, PayloadError> {
        let mut c = Cursor {
            bytes: payload,
            at: 0,
        };
        let kind = match c.u8("kind")? {
            1 => RecordKind::Call,
            2 => RecordKind::Publish,
            3 => RecordKind::Upgrade,
            4 => RecordKind::Drop,
            5 => RecordKind::Sql,
            k => return Err(PayloadError::UnknownKind(k)),
        };
        let timestamp_micros =
            i64::from_le_bytes(c.take(8, "timestamp")?.try_into().expect("8 bytes"));
        let module = c.str("module")?;
        let definition = match kind {
            RecordKind::Publish | RecordKind::Upgrade => Some(c.bytes("definition")?),
            RecordKind::Call | RecordKind::Drop | RecordKind::Sql => None,
        };
        let reducer = c.str("reducer")?;
        let caller = c.str("caller")?;
        let args = c.bytes("args")?;
        let count = c.u32("mutation count")? as usize;
        // Each mutation takes at least 9 bytes: never trust the count for
        // an allocation larger than the payload could hold.
        let mut mutations = Vec::with_capacity(count.min(payload.len() / 9));
        for _ in 0..count {
            let at = c.at;
            let op = match c.u8("mutation op")? {
                1 => Op::Insert,
                2 => Op::Update,
                3 => Op::Delete,
                op => return Err(PayloadError::UnknownOp { op, at }),
            };
            let table = c.u32("mutation table")?;
            let row = c.bytes("mutation row")?;
            mutations.push(MutationRef { op, table, row });
        }
        if c.at != payload.len() {
            return Err(PayloadError::Trailing(payload.len() - c.at));
        }
        Ok(TxRecord {
            header: TxHeader {
                kind,
                timestamp_micros,
                module,
                definition,
                reducer,
                caller,
                args,
            },
            mutations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(out: &mut Vec<u8>) {
        let header = TxHeader {
            kind: RecordKind::Call,
            timestamp_micros: 5,
            module: "m",
            definition: None,
            reducer: "r",
            caller: "c",
            args: &[9],
        };
        let muts = [MutationRef {
            op: Op::Update,
            table: 2,
            row: &[7, 7],
        }];
        encode(&header, muts.into_iter(), out);
    }

    #[test]
    fn golden_bytes() {
        let mut out = Vec::new();
        sample(&mut out);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            1,                         // kind: call
            5, 0, 0, 0, 0, 0, 0, 0,    // timestamp
            1, 0, 0, 0, b'm',          // module
            1, 0, 0, 0, b'r',          // reducer
            1, 0, 0, 0, b'c',          // caller
            1, 0, 0, 0, 9,             // args
            1, 0, 0, 0,                // one mutation
            2, 2, 0, 0, 0,             // update, table 2
            2, 0, 0, 0, 7, 7,          // row
        ];
        assert_eq!(out, expected);
        let rec = TxRecord::decode(&out).unwrap();
        assert_eq!(rec.mutations[0].row, &[7, 7]);
        assert_eq!(rec.header.module, "m");
    }

    #[test]
    fn golden_bytes_of_a_deletion() {
        let header = TxHeader {
            kind: RecordKind::Drop,
            timestamp_micros: 5,
            module: "m",
            definition: None,
            reducer: "",
            caller: "c",
            args: &[],
        };
        let mut out = Vec::new();
        encode(&header, std::iter::empty(), &mut out);
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            4,                         // kind: module deleted
            5, 0, 0, 0, 0, 0, 0, 0,    // timestamp
            1, 0, 0, 0, b'm',          // module (no definition)
            0, 0, 0, 0,                // reducer: empty
            1, 0, 0, 0, b'c',          // caller
            0, 0, 0, 0,                // args: empty
            0, 0, 0, 0,                // no mutations
        ];
        assert_eq!(out, expected);
        assert_eq!(TxRecord::decode(&out).unwrap().header, header);
    }

    #[test]
    fn golden_bytes_of_a_sql_statement() {
        let header = TxHeader {
            kind: RecordKind::Sql,
            timestamp_micros: 6,
            module: "m",
            definition: None,
            reducer: "",
            caller: "c",
            args: b"DELETE FROM t",
        };
        let mut out = Vec::new();
        let row = [3u8];
        let refs = [MutationRef {
            op: Op::Delete,
            table: 1,
            row: &row,
        }];
        encode(&header, refs.iter().copied(), &mut out);
        #[rustfmt::skip]
        let expected: Vec<u8> = [
            &[5u8][..],                // kind: SQL statement
            &[6, 0, 0, 0, 0, 0, 0, 0], // timestamp
            &[1, 0, 0, 0, b'm'],       // module (no definition)
            &[0, 0, 0, 0],             // reducer: empty
            &[1, 0, 0, 0, b'c'],       // caller
            &[13, 0, 0, 0],            // args: the statement's text
            b"DELETE FROM t",
            &[1, 0, 0, 0],             // one mutation
            &[3, 1, 0, 0, 0],          // delete, table 1
            &[1, 0, 0, 0, 3],          // row
        ]
        .concat();
        assert_eq!(out, expected);
        let rec = TxRecord::decode(&out).unwrap();
        assert_eq!(rec.header, header);
        assert_eq!(rec.mutations, refs);
    }

    #[test]
    fn every_cut_is_refused() {
        let mut out = Vec::new();
        sample(&mut out);
        for cut in 0..out.len() {
            assert!(TxRecord::decode(&out[..cut]).is_err(), "cut {cut}");
        }
        out.push(0);
        assert_eq!(TxRecord::decode(&out), Err(PayloadError::Trailing(1)));
    }

    proptest! {
        #[test]
        fn round_trip(
            kind in 0usize..5,
            ts in any::<i64>(),
            module in "[a-z]{0,8}",
            def in proptest::collection::vec(any::<u8>(), 0..20),
            args in proptest::collection::vec(any::<u8>(), 0..20),
            muts in proptest::collection::vec((1u8..=3, any::<u32>(), proptest::collection::vec(any::<u8>(), 0..16)), 0..8),
        ) {
            let kind = [RecordKind::Call, RecordKind::Publish, RecordKind::Upgrade, RecordKind::Drop, RecordKind::Sql][kind];
            let has_definition = matches!(kind, RecordKind::Publish | RecordKind::Upgrade);
            let header = TxHeader {
                kind,
                timestamp_micros: ts,
                module: &module,
                definition: has_definition.then_some(&def[..]),
                reducer: "red",
                caller: "who",
                args: &args,
            };
            let refs: Vec<MutationRef> = muts.iter().map(|(op, table, row)| MutationRef {
                op: [Op::Insert, Op::Update, Op::Delete][*op as usize - 1],
                table: *table,
                row,
            }).collect();
            let mut out = Vec::new();
            encode(&header, refs.iter().copied(), &mut out);
            let rec = TxRecord::decode(&out).unwrap();
            prop_assert_eq!(rec.header, header);
            prop_assert_eq!(rec.mutations, refs);
        }
    }

    /// Valid payloads mutated (a byte flipped, a cut, a slice of another
    /// spliced in) never panic the decoder, and what still decodes is read
    /// back consistently. Random bytes would almost all fail at the first
    /// tag; mutations of valid encodings reach every field, and many still
    /// decode.
    #[test]
    fn mutated_payloads_never_panic_and_many_still_decode() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let kinds = [
            RecordKind::Call,
            RecordKind::Publish,
            RecordKind::Upgrade,
            RecordKind::Drop,
            RecordKind::Sql,
        ];
        let valid = |n: u64| {
            let kind = kinds[(n % 5) as usize];
            let args = n.to_le_bytes();
            let def = vec![b'{'; (n % 7) as usize];
            let header = TxHeader {
                kind,
                timestamp_micros: n as i64,
                module: "mod",
                definition: matches!(kind, RecordKind::Publish | RecordKind::Upgrade)
                    .then_some(&def[..]),
                reducer: "red",
                caller: "who",
                args: &args,
            };
            let rows: Vec<Vec<u8>> = (0..n % 4)
                .map(|i| vec![i as u8; (n % 9) as usize])
                .collect();
            let refs = rows.iter().enumerate().map(|(i, row)| MutationRef {
                op: [Op::Insert, Op::Update, Op::Delete][i % 3],
                table: i as u32,
                row,
            });
            let mut out = Vec::new();
            encode(&header, refs.collect::<Vec<_>>().into_iter(), &mut out);
            out
        };
        let (mut decoded, mut tried) = (0u32, 0u32);
        for _ in 0..5_000 {
            let mut bytes = valid(next());
            match next() % 3 {
                0 => {
                    let at = (next() as usize) % bytes.len();
                    bytes[at] ^= 1 << (next() % 8);
                }
                1 => bytes.truncate((next() as usize) % bytes.len()),
                _ => {
                    let other = valid(next());
                    let from = (next() as usize) % other.len();
                    let len = (next() as usize) % (other.len() - from + 1);
                    let at = (next() as usize) % bytes.len();
                    bytes.splice(at..at, other[from..from + len].iter().copied());
                }
            }
            tried += 1;
            if let Ok(rec) = TxRecord::decode(&bytes) {
                decoded += 1;
                // What decodes encodes back to the same bytes.
                let mut again = Vec::new();
                encode(&rec.header, rec.mutations.iter().copied(), &mut again);
                assert_eq!(again, bytes, "a decoded payload re-encodes differently");
            }
        }
        assert!(
            decoded > tried / 20,
            "only {decoded} of {tried} mutated payloads decoded: the mutations never reach past the first fields"
        );
    }
}
