//! The log writer: one thread that owns the active segment, frames records,
//! writes them in batches and syncs each batch once (group commit).
//!
//! Callers append while holding the database's commit order and then wait
//! for their own record outside it, so the next transaction executes while
//! earlier ones wait for their fsync (pipelining). A failed write or sync
//! poisons the log: it is never retried, every waiter whose record was not
//! yet durable gets an error, and every later append is refused.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::error::{AppendError, LogError, io_at};
use crate::frame::{self, FRAME_HEADER_LEN};
use crate::limits::{
    BATCH_BYTES_MAX, QUEUE_RECORDS_MAX, RECORD_PAYLOAD_BYTES_MAX, SEGMENT_BYTES_DEFAULT,
    SEGMENT_BYTES_MIN, WEAK_IDLE_POLLS_MAX, WEAK_POLL_MS,
};
use crate::recovery::{self, Record, Recovered, RecoveryMode};
use crate::segment::{self, HEADER_LEN, Header};
use interstice_fs::{Storage, WriteFile};

/// When the writer makes records durable, and so when callers are answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncPolicy {
    /// fdatasync before any caller whose record is in the batch is answered.
    #[default]
    Always,
    /// Callers are answered once the writer has their record queued; it is
    /// written to the operating system within about a millisecond and
    /// fdatasync runs at most this often. A power loss can lose the last
    /// interval; a crash of the process, the last few milliseconds.
    Interval(Duration),
    /// Callers are answered once the writer has their record queued; it is
    /// written to the operating system within about a millisecond, and the
    /// log syncs only at rotation and on close. A power loss can lose
    /// anything not yet written back by the operating system; a crash of the
    /// process, the last few milliseconds.
    Never,
}

impl SyncPolicy {
    /// Whether an answered transaction can be lost on power loss.
    pub fn is_weak(self) -> bool {
        self != SyncPolicy::Always
    }
}

impl FromStr for SyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "always" => Ok(SyncPolicy::Always),
            "never" => Ok(SyncPolicy::Never),
            _ => {
                let ms = s
                    .strip_prefix("interval=")
                    .map(|v| v.strip_suffix("ms").unwrap_or(v))
                    .and_then(|v| v.parse::<u64>().ok())
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| {
                        format!("unknown sync policy `{s}`; expected always, never or interval=<ms> (ms > 0)")
                    })?;
                Ok(SyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl std::fmt::Display for SyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncPolicy::Always => f.write_str("always"),
            SyncPolicy::Never => f.write_str("never"),
            SyncPolicy::Interval(d) => write!(f, "interval={}", d.as_millis()),
        }
    }
}

/// Log settings.
#[derive(Clone, Copy, Debug)]
pub struct LogConfig {
    pub sync: SyncPolicy,
    /// The writer starts a new segment before one would grow past this.
    pub segment_bytes_max: u64,
    pub recovery: RecoveryMode,
    /// Reproducible segment salts, for tests that compare two logs byte for
    /// byte: the salt of the segment starting at tx `b` becomes a function
    /// of this seed and `b` ([`segment::Header::seeded`]). Leave it `None`
    /// for any data that matters: a random salt per file is what makes a
    /// record left behind by an earlier file of the same name fail its
    /// checksum.
    pub salt_seed: Option<u64>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            sync: SyncPolicy::Always,
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            recovery: RecoveryMode::TolerateTail,
            salt_seed: None,
        }
    }
}

/// Counters of the writer's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub records: u64,
    pub bytes: u64,
    pub batches: u64,
    pub syncs: u64,
    pub rotations: u64,
    /// Total time spent in fdatasync, in microseconds.
    pub sync_micros: u64,
    /// fdatasync calls by duration: `sync_buckets[i]` counts those that
    /// took at most [`SYNC_BUCKETS_MICROS`]`[i]` µs (and more than the
    /// bound before); the last slot counts the longer ones.
    pub sync_buckets: [u64; SYNC_BUCKETS_MICROS.len() + 1],
}

/// Upper bounds, in microseconds, of the fdatasync latency buckets in
/// [`LogStats::sync_buckets`].
pub const SYNC_BUCKETS_MICROS: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

impl LogStats {
    fn record_sync(&mut self, micros: u64) {
        self.syncs += 1;
        self.sync_micros += micros;
        let slot = SYNC_BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(SYNC_BUCKETS_MICROS.len());
        self.sync_buckets[slot] += 1;
    }
}

struct State {
    /// Highest tx id whose caller may be answered.
    acked: u64,
    /// Highest tx id on stable storage.
    synced: u64,
    /// The id the next append must carry.
    next_append: u64,
    poisoned: Option<String>,
    closed: bool,
    stats: LogStats,
    /// Callers parked in [`Log::wait`], with the tx id each waits for. Each
    /// is woken once, when its own record may be acknowledged (or the log
    /// fails): no caller wakes for another's batch.
    waiters: Vec<(u64, Thread)>,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the waiters whose record may now be acknowledged, or all of
    /// them once the log has failed or closed. Call after changing `acked`,
    /// `poisoned` or `closed`.
    fn wake(&self, mut st: MutexGuard<'_, State>) {
        let mut woken = Vec::new();
        if st.poisoned.is_some() || st.closed {
            woken.extend(st.waiters.drain(..).map(|(_, t)| t));
        } else {
            let acked = st.acked;
            st.waiters.retain(|(tx, t)| {
                let done = *tx <= acked;
                if done {
                    woken.push(t.clone());
                }
                !done
            });
        }
        drop(st);
        for t in woken {
            t.unpark();
        }
    }
}

enum Msg {
    Append { tx_id: u64, payload: Vec<u8> },
    Sync(SyncSender<Result<(), AppendError>>),
}

/// An open log: recovered, and with its writer running.
pub struct Log {
    shared: Arc<Shared>,
    /// The active segment and everything needed to write to it. The writer
    /// thread holds it for each batch; an uncontended caller may hold it to
    /// write and sync its own record ([`Log::reserve_direct`]).
    io: Arc<Mutex<Writer>>,
    sender: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    config: LogConfig,
    dir: PathBuf,
}

struct Writer {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    config: LogConfig,
    file: Box<dyn WriteFile>,
    header: Header,
    /// Bytes in the active segment, written or in `batch`.
    len: u64,
    batch: Vec<u8>,
    /// Highest tx id in `batch`.
    batch_last: u64,
    written: u64,
    shared: Arc<Shared>,
}

/// Where appends go after recovery: the next transaction id, and the
/// segment it is appended to (the last one, or a new one when the log
/// resumes past it), with its header and length.
fn active_segment(
    storage: &dyn Storage,
    dir: &Path,
    config: &LogConfig,
    from_tx: u64,
    recovered: &Recovered,
) -> Result<(u64, Box<dyn WriteFile>, Header, u64), LogError> {
    let end_next = match (&recovered.end, recovered.last_tx_id) {
        (Some(end), Some(last)) => (last + 1).max(end.header.base_tx_id),
        (Some(end), None) => end.header.base_tx_id,
        (None, last) => last.map_or(from_tx, |t| t + 1),
    };
    let next = end_next.max(from_tx);
    match &recovered.end {
        Some(end) if end_next == next => {
            let file = storage.open_append(&end.path).map_err(io_at(&end.path))?;
            Ok((next, file, end.header, end.len))
        }
        _ => {
            let (file, header) = create_segment(storage, dir, next, config.salt_seed)?;
            Ok((next, file, header, HEADER_LEN as u64))
        }
    }
}

impl Log {
    /// Recovers the log in `dir` (see [`recovery::recover`]), calling `visit`
    /// for every valid record from `from_tx` on, in order, then starts the
    /// writer after the last valid record.
    ///
    /// `from_tx` is the first transaction the caller does not have (1, or
    /// one past a snapshot). New records never carry a smaller id: when the
    /// log ends before `from_tx` (it lost a tail the snapshot has, or is
    /// empty), the writer starts a new segment at `from_tx`.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        config: LogConfig,
        from_tx: u64,
        visit: &mut dyn FnMut(Record<'_>) -> Result<(), String>,
    ) -> Result<(Log, Recovered), LogError> {
        if config.segment_bytes_max < SEGMENT_BYTES_MIN {
            return Err(LogError::Config(format!(
                "segment size {} is below the minimum of {SEGMENT_BYTES_MIN} bytes",
                config.segment_bytes_max
            )));
        }
        let from_tx = from_tx.max(1);
        let recovered = recovery::recover(&*storage, dir, config.recovery, from_tx, visit)?;
        if let Some(parent) = dir.parent() {
            storage.sync_dir(parent).map_err(io_at(parent))?;
        }
        let (next, file, header, len) =
            active_segment(&*storage, dir, &config, from_tx, &recovered)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                acked: next - 1,
                synced: next - 1,
                next_append: next,
                poisoned: None,
                closed: false,
                stats: LogStats::default(),
                waiters: Vec::new(),
            }),
        });
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_RECORDS_MAX);
        let writer = Writer {
            storage,
            dir: dir.to_path_buf(),
            config,
            file,
            header,
            len,
            batch: Vec::with_capacity(1 << 16),
            batch_last: next - 1,
            written: next - 1,
            shared: shared.clone(),
        };
        let io = Arc::new(Mutex::new(writer));
        let thread_io = io.clone();
        let thread = std::thread::Builder::new()
            .name("interstice-log".into())
            .spawn(move || run(&thread_io, receiver))
            .map_err(io_at(dir))?;
        let log = Log {
            shared,
            io,
            sender: Some(sender),
            thread: Some(thread),
            config,
            dir: dir.to_path_buf(),
        };
        Ok((log, recovered))
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The id the next append must carry.
    pub fn next_tx_id(&self) -> u64 {
        self.shared.lock().next_append
    }

    /// The newest transaction callers may be told is durable under the
    /// sync policy: synced under `always`; written to the file (not yet
    /// synced) under the weaker ones. Its record is in the file either way.
    pub fn acknowledged_tx(&self) -> u64 {
        self.shared.lock().acked
    }

    /// Why the log refuses writes, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.lock().poisoned.clone()
    }

    pub fn stats(&self) -> LogStats {
        self.shared.lock().stats
    }

    /// Queues a record. Returns once the writer has it (blocking while the
    /// queue is full); [`Log::wait`] tells when it is durable.
    pub fn append(&self, tx_id: u64, payload: Vec<u8>) -> Result<(), AppendError> {
        if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
            return Err(AppendError::TooLarge {
                len: payload.len(),
                max: RECORD_PAYLOAD_BYTES_MAX,
            });
        }
        {
            let mut st = self.shared.lock();
            if let Some(p) = &st.poisoned {
                return Err(AppendError::Poisoned(p.clone()));
            }
            if tx_id != st.next_append {
                return Err(AppendError::OutOfOrder {
                    expected: st.next_append,
                    got: tx_id,
                });
            }
            st.next_append += 1;
        }
        let sender = self.sender.as_ref().ok_or(AppendError::Closed)?;
        let msg = Msg::Append { tx_id, payload };
        match sender.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(msg)) => sender.send(msg).map_err(|_| AppendError::Closed),
            Err(TrySendError::Disconnected(_)) => Err(AppendError::Closed),
        }
    }

    /// Waits until transaction `tx_id` may be acknowledged under the sync
    /// policy: with `always`, until it is on stable storage; with the weak
    /// policies, at once (the record was queued by [`Log::append`]) unless
    /// the log has failed.
    pub fn wait(&self, tx_id: u64) -> Result<(), AppendError> {
        loop {
            if let Some(done) = self.status(tx_id) {
                return done;
            }
            self.notify(tx_id, std::thread::current());
            // An unpark that came first makes this return at once; a
            // spurious return just checks again.
            std::thread::park();
        }
    }

    /// Lets the calling thread write and sync transaction `tx_id` itself,
    /// when that cannot reorder or delay anyone: the policy is `always`,
    /// `tx_id` is the next id, every earlier record is already written, and
    /// neither the writer thread nor another caller is writing. The record
    /// then needs no hand-over to the writer thread and back, which on a
    /// single caller is most of the cost above the fsync itself.
    ///
    /// The id is taken at once (later appends queue behind it and are
    /// written after it); the caller should let other work proceed before
    /// calling [`Direct::commit`], which does the write and the sync.
    pub fn reserve_direct(&self, tx_id: u64) -> Option<Direct<'_>> {
        if self.config.sync != SyncPolicy::Always {
            return None;
        }
        let writer = self.io.try_lock().ok()?;
        let mut st = self.shared.lock();
        if st.poisoned.is_some() || st.next_append != tx_id || writer.written + 1 != tx_id {
            return None;
        }
        st.next_append += 1;
        drop(st);
        Some(Direct {
            log: self,
            writer: Some(writer),
            tx_id,
        })
    }

    /// Whether transaction `tx_id` may be acknowledged yet: `None` while it
    /// waits for the writer, else what [`Log::wait`] would return.
    pub fn status(&self, tx_id: u64) -> Option<Result<(), AppendError>> {
        let st = self.shared.lock();
        if self.config.sync.is_weak() && st.poisoned.is_none() {
            return Some(Ok(()));
        }
        if st.acked >= tx_id {
            return Some(Ok(()));
        }
        if let Some(p) = &st.poisoned {
            return Some(Err(AppendError::Poisoned(p.clone())));
        }
        if st.closed {
            return Some(Err(AppendError::Closed));
        }
        None
    }

    /// Unparks `thread` once [`Log::status`] of `tx_id` is no longer `None`
    /// (at once if it is not now).
    pub fn notify(&self, tx_id: u64, thread: Thread) {
        if self.status(tx_id).is_some() {
            thread.unpark();
            return;
        }
        let mut st = self.shared.lock();
        st.waiters.push((tx_id, thread));
        // The writer may have moved on between the check and the push.
        self.shared.wake(st);
    }

    /// Makes every record appended so far durable, whatever the policy.
    pub fn sync(&self) -> Result<(), AppendError> {
        let sender = self.sender.as_ref().ok_or(AppendError::Closed)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        sender
            .send(Msg::Sync(tx))
            .map_err(|_| AppendError::Closed)?;
        rx.recv().map_err(|_| AppendError::Closed)?
    }

    /// Syncs and stops the writer.
    pub fn close(mut self) -> Result<(), AppendError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), AppendError> {
        let Some(sender) = self.sender.take() else {
            return Ok(());
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let synced = match sender.send(Msg::Sync(tx)) {
            Ok(()) => rx.recv().map_err(|_| AppendError::Closed).and_then(|r| r),
            Err(_) => Err(AppendError::Closed),
        };
        drop(sender);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        synced
    }
}

/// A transaction the calling thread writes and syncs itself; see
/// [`Log::reserve_direct`].
pub struct Direct<'a> {
    log: &'a Log,
    /// `None` once committed.
    writer: Option<MutexGuard<'a, Writer>>,
    tx_id: u64,
}

impl Direct<'_> {
    pub fn tx_id(&self) -> u64 {
        self.tx_id
    }

    /// Writes and syncs the record, exactly as the writer thread would, and
    /// returns what [`Log::wait`] would.
    pub fn commit(mut self, payload: Vec<u8>) -> Result<(), AppendError> {
        let mut w = self.writer.take().expect("committed once");
        if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
            w.poison(format!(
                "a reserved record of {} bytes exceeds the limit of {RECORD_PAYLOAD_BYTES_MAX}",
                payload.len()
            ));
        } else {
            w.add(self.tx_id, &payload);
        }
        w.flush();
        w.sync();
        w.publish();
        drop(w);
        self.log
            .status(self.tx_id)
            .unwrap_or(Err(AppendError::Closed))
    }
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        // A reserved id that is never written would leave a gap in the log
        // that every later open refuses: stop writing instead.
        if let Some(mut w) = self.writer.take() {
            w.poison(format!(
                "transaction {} was reserved but never written",
                self.tx_id
            ));
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("log closed with an error: {e}");
        }
    }
}

fn create_segment(
    storage: &dyn Storage,
    dir: &Path,
    base_tx_id: u64,
    salt_seed: Option<u64>,
) -> Result<(Box<dyn WriteFile>, Header), LogError> {
    let path = dir.join(segment::file_name(base_tx_id));
    let header = match salt_seed {
        Some(seed) => Header::seeded(base_tx_id, seed),
        None => Header::new(base_tx_id),
    };
    let mut file = storage.create(&path).map_err(io_at(&path))?;
    file.append(&header.encode()).map_err(io_at(&path))?;
    file.sync_data().map_err(io_at(&path))?;
    storage.sync_dir(dir).map_err(io_at(dir))?;
    Ok((file, header))
}

fn lock_io(io: &Mutex<Writer>) -> MutexGuard<'_, Writer> {
    io.lock().unwrap_or_else(|p| p.into_inner())
}

/// The writer thread: takes queued records in batches, writes and syncs each
/// batch once.
/// Waits for the writer's next message: polling under a weak policy while
/// appends keep coming, sleeping otherwise until one arrives or an interval
/// sync is due (`Some(None)`). `None` once every sender is gone.
fn next_message(
    io: &Mutex<Writer>,
    receiver: &Receiver<Msg>,
    config: &LogConfig,
    last_sync: Instant,
    idle_polls: &mut u32,
) -> Option<Option<Msg>> {
    if config.sync.is_weak() && *idle_polls < WEAK_IDLE_POLLS_MAX {
        // Callers are not waiting: poll, so that appends find the writer
        // awake and never pay for waking it.
        return match receiver.try_recv() {
            Ok(m) => {
                *idle_polls = 0;
                Some(Some(m))
            }
            Err(TryRecvError::Empty) => {
                *idle_polls += 1;
                std::thread::sleep(Duration::from_millis(WEAK_POLL_MS));
                Some(None)
            }
            Err(TryRecvError::Disconnected) => None,
        };
    }
    // Idle (or callers wait for every record): sleep until an append
    // arrives or an interval sync is due.
    let timeout = match config.sync {
        SyncPolicy::Interval(every) if lock_io(io).unsynced() => {
            every.saturating_sub(last_sync.elapsed())
        }
        _ => Duration::from_secs(3600),
    };
    match receiver.recv_timeout(timeout) {
        Ok(m) => {
            *idle_polls = 0;
            Some(Some(m))
        }
        Err(RecvTimeoutError::Timeout) => Some(None),
        Err(RecvTimeoutError::Disconnected) => None,
    }
}

fn run(io: &Mutex<Writer>, receiver: Receiver<Msg>) {
    let config = lock_io(io).config;
    let mut last_sync = Instant::now();
    let mut idle_polls = 0u32;
    while let Some(first) = next_message(io, &receiver, &config, last_sync, &mut idle_polls) {
        let mut w = lock_io(io);
        let mut sync_waiters = Vec::new();
        let mut next = first;
        while let Some(msg) = next {
            match msg {
                Msg::Append { tx_id, payload } => w.add(tx_id, &payload),
                Msg::Sync(reply) => sync_waiters.push(reply),
            }
            next = if w.batch.len() < BATCH_BYTES_MAX {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        w.flush();
        let must_sync = !sync_waiters.is_empty()
            || match config.sync {
                SyncPolicy::Always => true,
                SyncPolicy::Interval(every) => last_sync.elapsed() >= every,
                SyncPolicy::Never => false,
            };
        if must_sync {
            w.sync();
            last_sync = Instant::now();
        }
        w.publish();
        for reply in sync_waiters {
            let result = match w.poisoned() {
                Some(p) => Err(AppendError::Poisoned(p)),
                None => Ok(()),
            };
            let _ = reply.send(result);
        }
    }
    let mut w = lock_io(io);
    w.flush();
    w.sync();
    w.publish();
    let mut st = w.shared.lock();
    st.closed = true;
    w.shared.wake(st);
}

impl Writer {
    fn unsynced(&self) -> bool {
        self.synced() < self.written
    }

    fn poisoned(&self) -> Option<String> {
        self.shared.lock().poisoned.clone()
    }

    fn synced(&self) -> u64 {
        self.shared.lock().synced
    }

    /// Frames a record into the batch, rotating first if it would not fit.
    fn add(&mut self, tx_id: u64, payload: &[u8]) {
        if self.poisoned().is_some() {
            return;
        }
        let frame_len = (FRAME_HEADER_LEN + payload.len()) as u64;
        if self.len + frame_len > self.config.segment_bytes_max && self.len > HEADER_LEN as u64 {
            self.flush();
            self.sync();
            if self.poisoned().is_some() {
                return;
            }
            if let Err(e) = self.rotate(tx_id) {
                self.poison(format!("starting a new segment: {e}"));
                return;
            }
        }
        frame::encode(self.header.salt, tx_id, payload, &mut self.batch);
        self.len += frame_len;
        self.batch_last = tx_id;
        let mut st = self.shared.lock();
        st.stats.records += 1;
        st.stats.bytes += frame_len;
    }

    fn rotate(&mut self, base_tx_id: u64) -> Result<(), LogError> {
        let (file, header) =
            create_segment(&*self.storage, &self.dir, base_tx_id, self.config.salt_seed)?;
        self.file = file;
        self.header = header;
        self.len = HEADER_LEN as u64;
        self.shared.lock().stats.rotations += 1;
        Ok(())
    }

    /// Writes the batch to the active segment.
    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        if self.poisoned().is_none() {
            match self.file.append(&self.batch) {
                Ok(()) => {
                    self.written = self.batch_last;
                    self.shared.lock().stats.batches += 1;
                }
                Err(e) => self.poison(format!("write failed: {e}")),
            }
        }
        self.batch.clear();
    }

    /// fdatasync of the active segment, once. Never retried.
    fn sync(&mut self) {
        if self.poisoned().is_some() || self.synced() >= self.written {
            return;
        }
        let start = Instant::now();
        let result = self.file.sync_data();
        let micros = start.elapsed().as_micros() as u64;
        match result {
            Ok(()) => {
                let mut st = self.shared.lock();
                st.synced = self.written;
                st.stats.record_sync(micros);
            }
            Err(e) => self.poison(format!("fdatasync failed: {e}")),
        }
    }

    /// Makes newly written (or synced) records visible to waiters.
    fn publish(&mut self) {
        let mut st = self.shared.lock();
        let ackable = match self.config.sync {
            SyncPolicy::Always => st.synced,
            SyncPolicy::Interval(_) | SyncPolicy::Never => self.written,
        };
        if st.poisoned.is_none() && ackable > st.acked {
            st.acked = ackable;
        }
        self.shared.wake(st);
    }

    fn poison(&mut self, reason: String) {
        tracing::error!("log poisoned: {reason}");
        let mut st = self.shared.lock();
        st.poisoned.get_or_insert(reason);
        self.shared.wake(st);
    }
}
