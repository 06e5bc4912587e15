//! Opening the log: checking every segment and record, handing each valid
//! record to the caller in order, and dealing with damage as the recovery
//! mode says. `docs/recovery.md` describes the modes for operators.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::{Damage, DamageKind, LogError, io_at};
use crate::frame;
use crate::limits::RESYNC_TX_WINDOW;
use crate::segment::{self, HEADER_LEN, Header};
use interstice_fs::Storage;

/// Where damaged bytes are moved rather than deleted, under the log
/// directory.
pub const QUARANTINE_DIR: &str = "quarantine";

/// What to do with damage found on open, after RocksDB's WAL recovery modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// A torn or damaged record at the very end of the newest segment, with
    /// no valid record after it, is cut off and reported (a write that a
    /// crash interrupted). Any other damage refuses to open.
    #[default]
    TolerateTail,
    /// Any damage, even a torn tail, refuses to open.
    Absolute,
    /// Recover to the last valid transaction before the first damage: the
    /// damaged segment is cut there, and it and every later byte are moved to
    /// the quarantine directory.
    PointInTime,
    /// Skip damaged records and continue with the next valid one. Files are
    /// not changed except for a torn tail; the skipped damage is reported on
    /// every open until it is repaired.
    SkipCorrupt,
}

impl RecoveryMode {
    pub const ALL: [RecoveryMode; 4] = [
        RecoveryMode::TolerateTail,
        RecoveryMode::Absolute,
        RecoveryMode::PointInTime,
        RecoveryMode::SkipCorrupt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecoveryMode::TolerateTail => "tolerate-tail",
            RecoveryMode::Absolute => "absolute",
            RecoveryMode::PointInTime => "point-in-time",
            RecoveryMode::SkipCorrupt => "skip-corrupt",
        }
    }
}

impl FromStr for RecoveryMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        RecoveryMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                format!("unknown recovery mode `{s}`; expected tolerate-tail, absolute, point-in-time or skip-corrupt")
            })
    }
}

impl std::fmt::Display for RecoveryMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A valid record, as handed to the caller during recovery.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    pub tx_id: u64,
    pub payload: &'a [u8],
    pub segment: &'a Path,
    /// Offset of the record's frame in its segment.
    pub offset: u64,
    /// Bytes of the whole log read up to the end of this record.
    pub log_offset: u64,
}

/// One segment as found on open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub base_tx_id: u64,
    pub bytes: u64,
    pub records: u64,
    pub first_tx_id: Option<u64>,
    pub last_tx_id: Option<u64>,
}

/// The end of the valid log: where the writer continues.
#[derive(Clone, Debug)]
pub(crate) struct LogEnd {
    pub path: PathBuf,
    pub header: Header,
    pub len: u64,
}

/// What recovery found and did.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub segments: Vec<SegmentInfo>,
    /// Valid records handed to the caller.
    pub records: u64,
    /// Bytes of the log read.
    pub bytes: u64,
    pub last_tx_id: Option<u64>,
    /// A torn tail that was cut off (tolerate-tail, skip-corrupt), or the
    /// first damage, where point-in-time recovery stopped.
    pub cut: Option<Damage>,
    /// Damage skipped over (skip-corrupt), or found (a read-only scan).
    pub skipped: Vec<Damage>,
    /// Files moved to the quarantine directory.
    pub quarantined: Vec<PathBuf>,
    pub(crate) end: Option<LogEnd>,
}

/// The segments of a log directory in tx order, as (base tx id, path).
pub fn list_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let mut out: Vec<(u64, PathBuf)> = storage
        .list(dir)
        .map_err(io_at(dir))?
        .into_iter()
        .filter_map(|p| segment::parse_name(&p).map(|base| (base, p)))
        .collect();
    out.sort();
    Ok(out)
}

/// Index of the first of `segments` (in tx order, as [`list_segments`]
/// gives them) that can hold `from_tx` or a later transaction: every one
/// before it is followed by a segment starting at or before `from_tx`, so
/// it holds only earlier transactions. The newest segment is never skipped.
pub fn first_needed(segments: &[(u64, PathBuf)], from_tx: u64) -> usize {
    segments
        .windows(2)
        .take_while(|w| w[1].0 <= from_tx)
        .count()
}

/// Total bytes of the segments from the one holding `from_tx` on (for
/// progress bars).
pub fn log_bytes(storage: &dyn Storage, dir: &Path, from_tx: u64) -> Result<u64, LogError> {
    let segments = list_segments(storage, dir)?;
    let mut total = 0;
    for (_, path) in &segments[first_needed(&segments, from_tx)..] {
        total += storage.len(path).map_err(io_at(path))?;
    }
    Ok(total)
}

/// Whether recovery may change files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    Repair,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    /// Cut the newest segment here and stop.
    CutTail,
    /// Cut here, quarantine every later segment, and stop.
    CutAll,
    /// Record the damage and go on at the next valid record.
    Skip,
    Refuse,
}

fn decide(mode: RecoveryMode, access: Access, tail: bool) -> Action {
    if access == Access::ReadOnly {
        return Action::Skip;
    }
    match (mode, tail) {
        (RecoveryMode::Absolute, _) => Action::Refuse,
        (RecoveryMode::TolerateTail | RecoveryMode::SkipCorrupt, true) => Action::CutTail,
        (RecoveryMode::TolerateTail, false) => Action::Refuse,
        (RecoveryMode::PointInTime, _) => Action::CutAll,
        (RecoveryMode::SkipCorrupt, false) => Action::Skip,
    }
}

/// Checks and reads the whole log, calling `visit` for each valid record in
/// tx order, and handles damage as `mode` says. Creates `dir` if missing.
///
/// Segments that lie wholly before `from_tx` are not read (a snapshot covers
/// them), and records before `from_tx` are checked but not handed out.
pub fn recover(
    storage: &dyn Storage,
    dir: &Path,
    mode: RecoveryMode,
    from_tx: u64,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), String>,
) -> Result<Recovered, LogError> {
    storage.create_dir_all(dir).map_err(io_at(dir))?;
    let range = TxRange {
        from: from_tx,
        to: u64::MAX,
    };
    walk(storage, dir, mode, Access::Repair, range, visit)
}

/// Reads the whole log without changing anything, reporting every damaged
/// place in `skipped` (a torn tail included) and calling `visit` for every
/// valid record.
pub fn scan(
    storage: &dyn Storage,
    dir: &Path,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), String>,
) -> Result<Recovered, LogError> {
    scan_range(storage, dir, 1, u64::MAX, visit)
}

/// [`scan`] limited to the records `from_tx..=to_tx`: segments wholly before
/// `from_tx` are not read, and reading stops after `to_tx` (so a tail being
/// written meanwhile is never reached).
pub fn scan_range(
    storage: &dyn Storage,
    dir: &Path,
    from_tx: u64,
    to_tx: u64,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), String>,
) -> Result<Recovered, LogError> {
    walk(
        storage,
        dir,
        RecoveryMode::SkipCorrupt,
        Access::ReadOnly,
        TxRange {
            from: from_tx,
            to: to_tx,
        },
        visit,
    )
}

/// The transactions a walk hands out.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TxRange {
    pub from: u64,
    pub to: u64,
}

impl TxRange {
    pub const ALL: TxRange = TxRange {
        from: 1,
        to: u64::MAX,
    };
}

pub(crate) fn walk(
    storage: &dyn Storage,
    dir: &Path,
    mode: RecoveryMode,
    access: Access,
    range: TxRange,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), String>,
) -> Result<Recovered, LogError> {
    let all = list_segments(storage, dir)?;
    let segments = &all[first_needed(&all, range.from)..];
    let mut out = Recovered::default();
    let mut expected: Option<u64> = None;
    let mut log_offset = 0u64;
    for (i, (base, path)) in segments.iter().enumerate() {
        let newest = i + 1 == segments.len();
        let buf = storage.read(path).map_err(io_at(path))?;
        let mut info = SegmentInfo {
            path: path.clone(),
            base_tx_id: *base,
            bytes: buf.len() as u64,
            records: 0,
            first_tx_id: None,
            last_tx_id: None,
        };
        let damage = |offset: usize, kind: DamageKind| Damage {
            segment: path.clone(),
            offset: offset as u64,
            kind,
        };
        let header = Header::decode(&buf).and_then(|h| {
            if h.base_tx_id == *base {
                Ok(h)
            } else {
                Err(DamageKind::BaseMismatch {
                    named: *base,
                    found: h.base_tx_id,
                })
            }
        });
        let header = match header {
            Ok(h) => h,
            Err(kind) => {
                // Nothing in a segment can be trusted without its salt. The
                // header is synced before any record is appended, so only a
                // newest segment holding no more than a header can have been
                // torn while it was created.
                let d = damage(0, kind);
                let torn = newest && buf.len() <= HEADER_LEN;
                let action = decide(mode, access, torn);
                confirm(storage, path, &buf, access, &d)?;
                match action {
                    Action::Refuse => return Err(refuse(d, mode)),
                    Action::Skip => {
                        out.skipped.push(d);
                        out.segments.push(info);
                        log_offset += buf.len() as u64;
                        continue;
                    }
                    Action::CutTail | Action::CutAll => {
                        quarantine_from(storage, dir, &segments[i..], 0, &mut out)?;
                        out.cut = Some(d);
                        return Ok(out);
                    }
                }
            }
        };
        if let Some(exp) = expected
            && header.base_tx_id != exp
        {
            let d = damage(
                0,
                DamageKind::MissingTransactions {
                    expected: exp,
                    found: header.base_tx_id,
                },
            );
            match decide(mode, access, false) {
                Action::Refuse => return Err(refuse(d, mode)),
                Action::Skip => out.skipped.push(d),
                Action::CutTail | Action::CutAll => {
                    quarantine_from(storage, dir, &segments[i..], 0, &mut out)?;
                    out.cut = Some(d);
                    return Ok(out);
                }
            }
        }
        let mut next = header.base_tx_id;
        let mut at = HEADER_LEN;
        while at < buf.len() {
            let kind = match frame::decode(header.salt, &buf[at..]) {
                Ok(f)
                    if f.tx_id == next
                        || (f.tx_id > next
                            && (access == Access::ReadOnly
                                || mode == RecoveryMode::SkipCorrupt)) =>
                {
                    if f.tx_id > range.to {
                        // Read-only scans stop here; the rest is not wanted.
                        out.bytes += at as u64;
                        out.segments.push(info);
                        return Ok(out);
                    }
                    if f.tx_id != next {
                        out.skipped.push(damage(
                            at,
                            DamageKind::TxIdGap {
                                expected: next,
                                found: f.tx_id,
                            },
                        ));
                    }
                    let rec = Record {
                        tx_id: f.tx_id,
                        payload: f.payload,
                        segment: path,
                        offset: at as u64,
                        log_offset: log_offset + (at + f.len) as u64,
                    };
                    if f.tx_id >= range.from {
                        visit(rec).map_err(|message| LogError::Apply {
                            segment: path.clone(),
                            offset: at as u64,
                            tx_id: f.tx_id,
                            message,
                        })?;
                    }
                    info.records += 1;
                    info.first_tx_id.get_or_insert(f.tx_id);
                    info.last_tx_id = Some(f.tx_id);
                    out.records += 1;
                    out.last_tx_id = Some(f.tx_id);
                    next = f.tx_id + 1;
                    at += f.len;
                    continue;
                }
                Ok(f) => DamageKind::TxIdGap {
                    expected: next,
                    found: f.tx_id,
                },
                Err(kind) => kind,
            };
            let d = damage(at, kind);
            let resume = frame::resync(
                header.salt,
                &buf,
                at + 1,
                next.saturating_sub(1),
                RESYNC_TX_WINDOW,
            );
            let tail = newest && resume.is_none();
            let action = decide(mode, access, tail);
            confirm(storage, path, &buf, access, &d)?;
            match action {
                Action::Refuse => return Err(refuse(d, mode)),
                Action::Skip => {
                    out.skipped.push(d);
                    match resume {
                        Some(r) => {
                            // The records in between are lost: the gap is
                            // accepted here and reported above.
                            let resumed = u64::from_le_bytes(
                                buf[r + frame::TX_ID_OFFSET..r + frame::FRAME_HEADER_LEN]
                                    .try_into()
                                    .expect("8 bytes"),
                            );
                            next = resumed;
                            at = r;
                        }
                        None => at = buf.len(),
                    }
                }
                Action::CutTail | Action::CutAll => {
                    quarantine_from(storage, dir, &segments[i..], at as u64, &mut out)?;
                    info.bytes = at as u64;
                    out.bytes += at as u64;
                    out.segments.push(info);
                    out.cut = Some(d);
                    out.end = Some(LogEnd {
                        path: path.clone(),
                        header,
                        len: at as u64,
                    });
                    return Ok(out);
                }
            }
        }
        expected = Some(next);
        log_offset += buf.len() as u64;
        out.bytes += buf.len() as u64;
        out.segments.push(info);
        if newest {
            out.end = Some(LogEnd {
                path: path.clone(),
                header,
                len: buf.len() as u64,
            });
        }
    }
    Ok(out)
}

/// Before damage is acted on (cut, skipped or refused): the file must read
/// back the same. A
/// device that returns different bytes for the same file twice (a flaky
/// cable, controller or memory) is not telling the truth about either
/// read, and cutting on its word could throw away an acknowledged record
/// that is whole on disk. Nothing is changed then, and opening fails.
fn confirm(
    storage: &dyn Storage,
    path: &Path,
    buf: &[u8],
    access: Access,
    damage: &Damage,
) -> Result<(), LogError> {
    if access == Access::ReadOnly {
        return Ok(());
    }
    let again = storage.read(path).map_err(io_at(path))?;
    if again != buf {
        return Err(LogError::UnstableRead {
            path: path.to_path_buf(),
            damage: damage.clone(),
        });
    }
    Ok(())
}

fn refuse(damage: Damage, mode: RecoveryMode) -> LogError {
    LogError::Corrupt {
        damage,
        mode: mode.name(),
    }
}

/// Moves everything from `offset` in the first of `segments` onwards into
/// the quarantine directory: the cut bytes of the first segment (which is
/// truncated there, or moved whole when `offset` is 0) and every later
/// segment whole.
fn quarantine_from(
    storage: &dyn Storage,
    dir: &Path,
    segments: &[(u64, PathBuf)],
    offset: u64,
    out: &mut Recovered,
) -> Result<(), LogError> {
    let qdir = dir.join(QUARANTINE_DIR);
    storage.create_dir_all(&qdir).map_err(io_at(&qdir))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    let (first, rest) = segments.split_first().expect("at least one segment");
    let name = |p: &Path, what: &str| {
        let file = p.file_name().map(|n| n.to_string_lossy().into_owned());
        qdir.join(format!("{}.{what}.{stamp}", file.unwrap_or_default()))
    };
    if offset == 0 {
        let to = name(&first.1, "whole");
        storage.rename(&first.1, &to).map_err(io_at(&first.1))?;
        out.quarantined.push(to);
    } else {
        let bytes = storage.read(&first.1).map_err(io_at(&first.1))?;
        let to = name(&first.1, &format!("from-{offset}"));
        let mut f = storage.create(&to).map_err(io_at(&to))?;
        f.append(&bytes[offset as usize..]).map_err(io_at(&to))?;
        f.sync_data().map_err(io_at(&to))?;
        storage.sync_dir(&qdir).map_err(io_at(&qdir))?;
        storage
            .truncate(&first.1, offset)
            .map_err(io_at(&first.1))?;
        out.quarantined.push(to);
    }
    for (_, path) in rest {
        let to = name(path, "whole");
        storage.rename(path, &to).map_err(io_at(path))?;
        out.quarantined.push(to);
    }
    storage.sync_dir(&qdir).map_err(io_at(&qdir))?;
    storage.sync_dir(dir).map_err(io_at(dir))?;
    Ok(())
}

/// Cuts the log after transaction `tx_id` (repair): the records after it
/// are moved to the quarantine directory. `tx_id` must be in the log.
pub fn truncate_after(
    storage: &dyn Storage,
    dir: &Path,
    tx_id: u64,
) -> Result<Recovered, LogError> {
    let segments = list_segments(storage, dir)?;
    let mut cut_at: Option<(usize, u64)> = None;
    let mut found = false;
    let mut report = walk(
        storage,
        dir,
        RecoveryMode::SkipCorrupt,
        Access::ReadOnly,
        TxRange::ALL,
        &mut |rec| {
            if rec.tx_id == tx_id {
                found = true;
            } else if rec.tx_id > tx_id && cut_at.is_none() {
                let seg = segments
                    .iter()
                    .position(|(_, p)| p == rec.segment)
                    .expect("the record's segment was listed");
                cut_at = Some((seg, rec.offset));
            }
            Ok(())
        },
    )?;
    if !found {
        return Err(LogError::NoSuchTx(tx_id));
    }
    report.quarantined.clear();
    if let Some((seg, offset)) = cut_at {
        let offset = if offset == HEADER_LEN as u64 && seg > 0 {
            0
        } else {
            offset
        };
        quarantine_from(storage, dir, &segments[seg..], offset, &mut report)?;
    }
    report.last_tx_id = Some(tx_id);
    Ok(report)
}

/// Cuts the log at its first damage (repair): what `point-in-time` recovery
/// does on open, without replaying anything.
pub fn truncate_to_last_valid(storage: &dyn Storage, dir: &Path) -> Result<Recovered, LogError> {
    walk(
        storage,
        dir,
        RecoveryMode::PointInTime,
        Access::Repair,
        TxRange::ALL,
        &mut |_| Ok(()),
    )
}

/// Retention: removes every segment that holds only transactions before
/// `keep_from` (the newest segment is always kept), or moves it into
/// `archive` when given. Returns the paths removed or moved, oldest first.
pub fn remove_segments_before(
    storage: &dyn Storage,
    dir: &Path,
    keep_from: u64,
    archive: Option<&Path>,
) -> Result<Vec<PathBuf>, LogError> {
    let segments = list_segments(storage, dir)?;
    let doomed: Vec<&PathBuf> = segments[..first_needed(&segments, keep_from)]
        .iter()
        .map(|(_, path)| path)
        .collect();
    if doomed.is_empty() {
        return Ok(Vec::new());
    }
    if let Some(archive) = archive {
        storage.create_dir_all(archive).map_err(io_at(archive))?;
    }
    for path in &doomed {
        match archive {
            Some(archive) => {
                let name = path.file_name().expect("segments have file names");
                let to = archive.join(name);
                storage.rename(path, &to).map_err(io_at(path))?;
            }
            None => storage.remove(path).map_err(io_at(path))?,
        }
    }
    if let Some(archive) = archive {
        storage.sync_dir(archive).map_err(io_at(archive))?;
    }
    storage.sync_dir(dir).map_err(io_at(dir))?;
    Ok(doomed.into_iter().cloned().collect())
}
