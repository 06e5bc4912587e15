//! Progress of the long operations (replay at open, the log tools) for a
//! progress bar.

/// Progress callback: (bytes of the log read, total bytes).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Progress is reported after every this many bytes of log: often enough
/// for a bar, rarely enough to cost nothing per record.
const PROGRESS_STEP_BYTES: u64 = 1 << 20;

/// A [`Progress`] called at most once per [`PROGRESS_STEP_BYTES`].
pub(crate) struct Throttled<'a> {
    progress: Progress<'a>,
    total: u64,
    reported: u64,
}

impl<'a> Throttled<'a> {
    pub(crate) fn new(progress: Progress<'a>, total: u64) -> Self {
        Throttled {
            progress,
            total,
            reported: 0,
        }
    }

    pub(crate) fn at(&mut self, offset: u64) {
        if offset >= self.reported + PROGRESS_STEP_BYTES {
            self.reported = offset;
            (self.progress)(offset, self.total);
        }
    }

    pub(crate) fn done(&mut self) {
        (self.progress)(self.total, self.total);
    }
}
