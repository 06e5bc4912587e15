//! Property: random bit flips and truncations anywhere in a log's segments
//! are always detected and never turned into different data, and each
//! recovery mode does what docs/recovery.md promises of it:
//!
//! - `point-in-time` always opens, with exactly the records before the
//!   damage;
//! - `skip-corrupt` always opens, with every record before the damage and
//!   every record of the segments after the damaged one;
//! - `tolerate-tail` opens with the records before it for any cut of the
//!   newest segment (a torn tail), and otherwise opens with an unbroken
//!   prefix or refuses;
//! - `absolute` refuses any damage but one: a cut of the newest segment at
//!   a record boundary, which is exactly the log a crash before those
//!   appends leaves (they were never synced, so never acknowledged), and no
//!   reader can tell it from one. It is the one silent shortening.

use std::path::Path;
use std::sync::Arc;

use interstice_fs::fault::FaultFs;
use interstice_log::{
    Log, LogConfig, RecordKind, RecoveryMode, Storage, SyncPolicy, TxHeader, TxRecord,
    list_segments, payload,
};
use proptest::prelude::*;

const TXS: u64 = 90;

fn payload_for(tx: u64) -> Vec<u8> {
    let args = tx.to_le_bytes();
    let text = "x".repeat(50 + (tx % 100) as usize);
    let header = TxHeader {
        kind: RecordKind::Call,
        timestamp_micros: tx as i64 * 10,
        module: "m",
        definition: None,
        reducer: &text,
        caller: "test",
        args: &args,
    };
    let mut out = Vec::new();
    payload::encode(&header, std::iter::empty(), &mut out);
    out
}

fn config(mode: RecoveryMode) -> LogConfig {
    LogConfig {
        sync: SyncPolicy::Always,
        segment_bytes_max: 4096,
        recovery: mode,
        salt_seed: None,
    }
}

/// A log of TXS records over several 4 KiB segments, on a FaultFs.
fn written() -> FaultFs {
    let fs = FaultFs::new();
    let dir = Path::new("/log");
    let (log, _) = Log::open(
        Arc::new(fs.clone()),
        dir,
        config(RecoveryMode::Absolute),
        1,
        &mut |_| Ok(()),
    )
    .unwrap();
    for tx in 1..=TXS {
        log.append(tx, payload_for(tx)).unwrap();
        log.wait(tx).unwrap();
    }
    log.close().unwrap();
    fs
}

#[derive(Clone, Debug)]
enum Damage {
    Flip { segment: usize, at: usize, xor: u8 },
    Cut { segment: usize, at: usize },
}

/// Where each record ends in its segment, as (tx, end offset), and the
/// segments' base tx ids, as the writer laid them out.
fn layout(segments: &[(u64, std::path::PathBuf)]) -> Vec<Vec<(u64, u64)>> {
    segments
        .iter()
        .enumerate()
        .map(|(i, (base, _))| {
            let next = segments.get(i + 1).map_or(TXS + 1, |s| s.0);
            let mut end = 36u64;
            (*base..next)
                .map(|tx| {
                    end += 16 + payload_for(tx).len() as u64;
                    (tx, end)
                })
                .collect()
        })
        .collect()
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), any::<usize>(), 1u8..=255).prop_map(|(segment, at, xor)| Damage::Flip {
            segment,
            at,
            xor
        }),
        (any::<usize>(), any::<usize>()).prop_map(|(segment, at)| Damage::Cut { segment, at }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn damage_is_detected_never_turned_into_other_data(
        damage in damage(),
        mode in prop_oneof![
            Just(RecoveryMode::TolerateTail),
            Just(RecoveryMode::Absolute),
            Just(RecoveryMode::PointInTime),
            Just(RecoveryMode::SkipCorrupt),
        ],
    ) {
        let fs = written();
        let dir = Path::new("/log");
        let segments = list_segments(&fs, dir).unwrap();
        prop_assert!(segments.len() >= 3, "{} segments", segments.len());
        let pick = |i: usize| &segments[i % segments.len()].1;
        let records = layout(&segments);
        let newest = segments.len() - 1;
        let newest_cut = matches!(damage, Damage::Cut { segment, .. } if segment % segments.len() == newest);
        // The damaged segment and the offset of the damage in it.
        let (hit, offset) = match damage {
            Damage::Flip { segment, at, xor } => {
                let path = pick(segment);
                let len = fs.len(path).unwrap() as usize;
                fs.corrupt(path, at % len, xor);
                (segment % segments.len(), (at % len) as u64)
            }
            Damage::Cut { segment, at } => {
                let path = pick(segment);
                let len = fs.len(path).unwrap();
                fs.truncate(path, at as u64 % len).unwrap();
                (segment % segments.len(), at as u64 % len)
            }
        };
        // Records wholly before the damage, and those of later segments.
        let before = segments[hit].0 - 1
            + records[hit].iter().filter(|(_, end)| *end <= offset).count() as u64;
        let later: Vec<u64> = records[hit + 1..].iter().flatten().map(|(tx, _)| *tx).collect();
        let at_boundary = offset == 36 || records[hit].iter().any(|(_, end)| *end == offset);
        let mut seen = Vec::new();
        let opened = Log::open(Arc::new(fs.clone()), dir, config(mode), 1, &mut |r| {
            let tx = TxRecord::decode(r.payload).map_err(|e| e.to_string())?;
            // Exactly what was written for this id: never other data.
            if r.payload != payload_for(r.tx_id).as_slice() || tx.header.args != r.tx_id.to_le_bytes() {
                return Err(format!("tx {} replayed different bytes", r.tx_id));
            }
            seen.push(r.tx_id);
            Ok(())
        });
        let prefix: Vec<u64> = (1..=before).collect();
        let promised_open = match mode {
            RecoveryMode::PointInTime | RecoveryMode::SkipCorrupt => true,
            RecoveryMode::TolerateTail => newest_cut,
            RecoveryMode::Absolute => newest_cut && at_boundary,
        };
        if mode == RecoveryMode::Absolute && !promised_open {
            prop_assert!(opened.is_err(), "absolute opened a damaged log: {damage:?}");
        }
        match opened {
            Err(e) => {
                prop_assert!(!promised_open, "{mode:?} refused {damage:?}: {e}");
                // Never because replay found different bytes (that would
                // be silent damage the checksum missed).
                prop_assert!(!e.to_string().contains("different bytes"), "{e}");
            }
            Ok((_log, recovered)) => {
                prop_assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
                match mode {
                    RecoveryMode::PointInTime => prop_assert_eq!(&seen, &prefix, "{:?}", damage),
                    RecoveryMode::TolerateTail | RecoveryMode::Absolute if newest_cut => {
                        prop_assert_eq!(&seen, &prefix, "{:?}", damage)
                    }
                    RecoveryMode::SkipCorrupt => {
                        prop_assert_eq!(&seen[..prefix.len().min(seen.len())], &prefix[..], "{:?}", damage);
                        prop_assert!(later.iter().all(|tx| seen.contains(tx)), "{:?}: {:?}", damage, seen);
                    }
                    _ => {}
                }
                if mode != RecoveryMode::SkipCorrupt {
                    let prefix: Vec<u64> = (1..=seen.len() as u64).collect();
                    prop_assert_eq!(&seen, &prefix);
                }
                if (seen.len() as u64) < TXS && !newest_cut {
                    // Whatever was not replayed is accounted for.
                    prop_assert!(
                        recovered.cut.is_some() || !recovered.skipped.is_empty(),
                        "{} of {TXS} records replayed without a word", seen.len()
                    );
                }
            }
        }
    }
}
