//! Fuzz target bodies (`fuzz/`): what the log reader must survive. Each
//! takes arbitrary bytes and must not panic, whatever they hold; the
//! regular test suite runs them over the committed seed corpus.

use std::path::Path;

use crate::payload::TxRecord;
use crate::recovery::{RecoveryMode, recover, scan};
use interstice_fs::Storage;
use interstice_fs::fault::FaultFs;

/// `data` as the only segment of a log: scanned read-only, then recovered
/// under every mode (each on its own copy), every valid record's payload
/// decoded.
pub fn segment(data: &[u8]) {
    let dir = Path::new("/fuzz/log");
    let fs = FaultFs::new();
    let write = || -> std::io::Result<()> {
        fs.create_dir_all(dir)?;
        let mut file = fs.create(&dir.join("00000000000000000001.log"))?;
        file.append(data)?;
        file.sync_data()?;
        fs.sync_dir(dir)
    };
    if write().is_err() {
        return;
    }
    let mut visit = |rec: crate::Record<'_>| -> Result<(), String> {
        let _ = TxRecord::decode(rec.payload);
        Ok(())
    };
    let _ = scan(&fs, dir, &mut visit);
    for mode in [
        RecoveryMode::TolerateTail,
        RecoveryMode::Absolute,
        RecoveryMode::PointInTime,
        RecoveryMode::SkipCorrupt,
    ] {
        let copy = fs.crash(0);
        let _ = recover(&copy, dir, mode, 1, &mut visit);
    }
}

/// `data` as a record payload.
pub fn payload(data: &[u8]) {
    let _ = TxRecord::decode(data);
}

#[cfg(test)]
mod tests {
    /// Every file of the committed seed corpus runs through its target.
    #[test]
    fn seed_corpus_runs_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
        let mut ran = 0;
        for (target, body) in [
            ("log_segment", super::segment as fn(&[u8])),
            ("log_payload", super::payload),
        ] {
            for entry in std::fs::read_dir(root.join(target)).unwrap() {
                body(&std::fs::read(entry.unwrap().path()).unwrap());
                ran += 1;
            }
        }
        assert!(ran >= 4, "the seed corpus is committed");
    }
}
