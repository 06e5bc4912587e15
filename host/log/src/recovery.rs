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

/// Reads segments in order, hands out valid records and acts on damage:
/// each damaged place is classified ([`decide`]), then the walk does what the
/// action says. Segments are read one at a time.
pub(crate) fn walk(
    storage: &dyn Storage,
    dir: &Path,
    mode: RecoveryMode,
    access: Access,
    range: TxRange,
    visit: &mut dyn FnMut(Record<'_>) -> Result<(), String>,
) -> Result<Recovered, LogError> {
    let all = list_segments(storage, dir)?;
    let mut walk = Walk {
        storage,
        dir,
        mode,
        access,
        range,
        visit,
        segments: &all[first_needed(&all, range.from)..],
        out: Recovered::default(),
        expected: None,
        log_offset: 0,
    };
    for i in 0..walk.segments.len() {
        if walk.segment(i)? == Flow::Stop {
            break;
        }
    }
    Ok(walk.out)
}

/// Whether the walk goes on to the next segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

/// What reading one frame of a segment led to.
enum Step {
    /// Read on at the cursor.
    More,
    /// A record past the wanted range: stop here, nothing cut.
    Enough,
    /// Damage where the log is to be cut.
    Cut(Damage),
}

/// The state of one walk over the log.
struct Walk<'s, 'v> {
    storage: &'s dyn Storage,
    dir: &'s Path,
    mode: RecoveryMode,
    access: Access,
    range: TxRange,
    visit: &'v mut dyn FnMut(Record<'_>) -> Result<(), String>,
    segments: &'s [(u64, PathBuf)],
    out: Recovered,
    /// The tx id the next segment must start at, once one was read.
    expected: Option<u64>,
    /// Bytes of the log before the segment being read.
    log_offset: u64,
}

/// Where reading stands inside one segment.
struct Cursor<'b> {
    /// Index of the segment in [`Walk::segments`].
    index: usize,
    path: &'b Path,
    buf: &'b [u8],
    header: Header,
    info: SegmentInfo,
    /// The tx id the next record should carry.
    next: u64,
    /// Offset of the next frame.
    at: usize,
}

impl Cursor<'_> {
    fn newest(&self, segments: usize) -> bool {
        self.index + 1 == segments
    }
}

fn damage_at(path: &Path, offset: usize, kind: DamageKind) -> Damage {
    Damage {
        segment: path.to_path_buf(),
        offset: offset as u64,
        kind,
    }
}

/// The segment's header, if it is whole and names the base its file name
/// does.
fn segment_header(buf: &[u8], base: u64) -> Result<Header, DamageKind> {
    let header = Header::decode(buf)?;
    if header.base_tx_id != base {
        return Err(DamageKind::BaseMismatch {
            named: base,
            found: header.base_tx_id,
        });
    }
    Ok(header)
}

impl Walk<'_, '_> {
    /// Reads segment `i` whole, or up to where the walk stops.
    fn segment(&mut self, i: usize) -> Result<Flow, LogError> {
        let segments = self.segments;
        let (base, path) = &segments[i];
        let buf = self.storage.read(path).map_err(io_at(path))?;
        let info = SegmentInfo {
            path: path.clone(),
            base_tx_id: *base,
            bytes: buf.len() as u64,
            records: 0,
            first_tx_id: None,
            last_tx_id: None,
        };
        let header = match segment_header(&buf, *base) {
            Ok(header) => header,
            Err(kind) => return self.unreadable(i, &buf, info, kind),
        };
        if !self.follows_on(i, &header)? {
            return Ok(Flow::Stop);
        }
        let mut cur = Cursor {
            index: i,
            path,
            buf: &buf,
            header,
            info,
            next: header.base_tx_id,
            at: HEADER_LEN,
        };
        while cur.at < buf.len() {
            match self.frame(&mut cur)? {
                Step::More => {}
                Step::Enough => {
                    // Read-only scans stop here; the rest is not wanted.
                    self.out.bytes += cur.at as u64;
                    self.out.segments.push(cur.info);
                    return Ok(Flow::Stop);
                }
                Step::Cut(d) => {
                    self.cut(cur, d)?;
                    return Ok(Flow::Stop);
                }
            }
        }
        self.expected = Some(cur.next);
        self.log_offset += buf.len() as u64;
        self.out.bytes += buf.len() as u64;
        if cur.newest(segments.len()) {
            self.out.end = Some(LogEnd {
                path: path.clone(),
                header,
                len: buf.len() as u64,
            });
        }
        self.out.segments.push(cur.info);
        Ok(Flow::Go)
    }

    /// Segment `i`'s header is damaged, so nothing in it can be trusted
    /// without its salt. The header is synced before any record is
    /// appended, so only a newest segment holding no more than a header can
    /// have been torn while it was created.
    fn unreadable(
        &mut self,
        i: usize,
        buf: &[u8],
        info: SegmentInfo,
        kind: DamageKind,
    ) -> Result<Flow, LogError> {
        let d = damage_at(&info.path, 0, kind);
        let torn = i + 1 == self.segments.len() && buf.len() <= HEADER_LEN;
        let action = decide(self.mode, self.access, torn);
        confirm(self.storage, &info.path, buf, self.access, &d)?;
        if !self.act_on_segment_start(i, d, action)? {
            return Ok(Flow::Stop);
        }
        self.out.segments.push(info);
        self.log_offset += buf.len() as u64;
        Ok(Flow::Go)
    }

    /// Whether segment `i` starts where the one before it ended, or the
    /// walk reads on past the transactions missing between them.
    fn follows_on(&mut self, i: usize, header: &Header) -> Result<bool, LogError> {
        let Some(expected) = self.expected else {
            return Ok(true);
        };
        if header.base_tx_id == expected {
            return Ok(true);
        }
        let d = damage_at(
            &self.segments[i].1,
            0,
            DamageKind::MissingTransactions {
                expected,
                found: header.base_tx_id,
            },
        );
        let action = decide(self.mode, self.access, false);
        self.act_on_segment_start(i, d, action)
    }

    /// Acts on damage that spoils segment `i` from its first byte (its
    /// header, or a gap before it). Returns whether the walk reads on, the
    /// damage noted as skipped; otherwise the log was cut there.
    fn act_on_segment_start(
        &mut self,
        i: usize,
        d: Damage,
        action: Action,
    ) -> Result<bool, LogError> {
        match action {
            Action::Refuse => Err(refuse(d, self.mode)),
            Action::Skip => {
                self.out.skipped.push(d);
                Ok(true)
            }
            Action::CutTail | Action::CutAll => {
                quarantine_from(
                    self.storage,
                    self.dir,
                    &self.segments[i..],
                    0,
                    &mut self.out,
                )?;
                self.out.cut = Some(d);
                Ok(false)
            }
        }
    }

    /// Reads the frame at the cursor: hands it out if it is valid and in
    /// order, otherwise acts on the damage.
    fn frame(&mut self, cur: &mut Cursor<'_>) -> Result<Step, LogError> {
        let kind = match frame::decode(cur.header.salt, &cur.buf[cur.at..]) {
            Ok(f) if f.tx_id == cur.next || (f.tx_id > cur.next && self.skips_gaps()) => {
                return self.accept(cur, f);
            }
            Ok(f) => DamageKind::TxIdGap {
                expected: cur.next,
                found: f.tx_id,
            },
            Err(kind) => kind,
        };
        let d = damage_at(cur.path, cur.at, kind);
        let resume = frame::resync(
            cur.header.salt,
            cur.buf,
            cur.at + 1,
            cur.next.saturating_sub(1),
            RESYNC_TX_WINDOW,
        );
        let tail = cur.newest(self.segments.len()) && resume.is_none();
        let action = decide(self.mode, self.access, tail);
        confirm(self.storage, cur.path, cur.buf, self.access, &d)?;
        match action {
            Action::Refuse => Err(refuse(d, self.mode)),
            Action::Skip => {
                self.out.skipped.push(d);
                match resume {
                    Some(r) => {
                        // The records in between are lost: the gap is
                        // accepted here and reported above.
                        cur.next = frame_tx_id(cur.buf, r);
                        cur.at = r;
                    }
                    None => cur.at = cur.buf.len(),
                }
                Ok(Step::More)
            }
            Action::CutTail | Action::CutAll => Ok(Step::Cut(d)),
        }
    }

    /// A later tx id than expected is a gap to report and read past (not
    /// damage to act on) in read-only scans and in skip-corrupt recovery.
    fn skips_gaps(&self) -> bool {
        self.access == Access::ReadOnly || self.mode == RecoveryMode::SkipCorrupt
    }

    /// Hands a valid record to the visitor (when in range) and counts it.
    fn accept(&mut self, cur: &mut Cursor<'_>, f: frame::Frame<'_>) -> Result<Step, LogError> {
        if f.tx_id > self.range.to {
            return Ok(Step::Enough);
        }
        if f.tx_id != cur.next {
            self.out.skipped.push(damage_at(
                cur.path,
                cur.at,
                DamageKind::TxIdGap {
                    expected: cur.next,
                    found: f.tx_id,
                },
            ));
        }
        if f.tx_id >= self.range.from {
            let rec = Record {
                tx_id: f.tx_id,
                payload: f.payload,
                segment: cur.path,
                offset: cur.at as u64,
                log_offset: self.log_offset + (cur.at + f.len) as u64,
            };
            (self.visit)(rec).map_err(|message| LogError::Apply {
                segment: cur.path.to_path_buf(),
                offset: cur.at as u64,
                tx_id: f.tx_id,
                message,
            })?;
        }
        cur.info.records += 1;
        cur.info.first_tx_id.get_or_insert(f.tx_id);
        cur.info.last_tx_id = Some(f.tx_id);
        self.out.records += 1;
        self.out.last_tx_id = Some(f.tx_id);
        cur.next = f.tx_id + 1;
        cur.at += f.len;
        Ok(Step::More)
    }

    /// Cuts the log at the cursor: the rest of this segment and every later
    /// one go to quarantine, and appends continue at the cut.
    fn cut(&mut self, mut cur: Cursor<'_>, d: Damage) -> Result<(), LogError> {
        let at = cur.at as u64;
        quarantine_from(
            self.storage,
            self.dir,
            &self.segments[cur.index..],
            at,
            &mut self.out,
        )?;
        cur.info.bytes = at;
        self.out.bytes += at;
        self.out.segments.push(cur.info);
        self.out.cut = Some(d);
        self.out.end = Some(LogEnd {
            path: cur.path.to_path_buf(),
            header: cur.header,
            len: at,
        });
        Ok(())
    }
}

/// The tx id of the frame at `at`, which [`frame::resync`] found whole.
fn frame_tx_id(buf: &[u8], at: usize) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&buf[at + frame::TX_ID_OFFSET..at + frame::FRAME_HEADER_LEN]);
    u64::from_le_bytes(id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decide_follows_the_mode_table() {
        use Action::*;
        use RecoveryMode::*;
        // (mode, tail, action) for a walk that may repair.
        let table = [
            (TolerateTail, true, CutTail),
            (TolerateTail, false, Refuse),
            (Absolute, true, Refuse),
            (Absolute, false, Refuse),
            (PointInTime, true, CutAll),
            (PointInTime, false, CutAll),
            (SkipCorrupt, true, CutTail),
            (SkipCorrupt, false, Skip),
        ];
        for (mode, tail, want) in table {
            assert!(
                decide(mode, Access::Repair, tail) == want,
                "{mode} tail={tail}"
            );
            // A read-only walk changes nothing: it notes damage and reads on.
            assert!(
                decide(mode, Access::ReadOnly, tail) == Skip,
                "{mode} read-only"
            );
        }
    }

    #[test]
    fn frame_tx_id_reads_the_id_field_of_a_frame() {
        let mut buf = vec![0xAAu8; 3];
        let at = buf.len();
        buf.extend_from_slice(&[0; frame::TX_ID_OFFSET]);
        buf.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        buf.extend_from_slice(&[0xBB; 4]);
        assert_eq!(frame_tx_id(&buf, at), 0x0102_0304_0506_0708);
    }
}
