//! The counters behind `ioeng_stats` and the snapshot read from them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Counters behind `ioeng_stats`. Relaxed: each is a monotonic tally read for reporting,
/// never used to order other memory.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) submitted: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) kernel_submit_calls: AtomicU64,
    pub(crate) resubmits: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    pub(crate) timed_out: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// A snapshot with the queue lengths (HIGH, READ, WRITE) and IOs in the kernel.
    pub(crate) fn read(&self, queued: (usize, usize, usize), in_flight: u64) -> Stats {
        let (high, read, write) = queued;
        Stats {
            submitted: self.submitted.load(Relaxed),
            completed: self.completed.load(Relaxed),
            in_flight,
            queued_high: high as u64,
            queued_read: read as u64,
            queued_write: write as u64,
            kernel_submit_calls: self.kernel_submit_calls.load(Relaxed),
            resubmits: self.resubmits.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
        }
    }
}

/// Stats as read at one moment (each field individually).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub submitted: u64,
    pub completed: u64,
    pub in_flight: u64,
    pub queued_high: u64,
    pub queued_read: u64,
    pub queued_write: u64,
    pub kernel_submit_calls: u64,
    pub resubmits: u64,
    pub cancelled: u64,
    pub timed_out: u64,
}
