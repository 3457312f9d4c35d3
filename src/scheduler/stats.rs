//! The counters behind `ioeng_stats` and the snapshot read from them (the C struct
//! itself, `abi::IoengStats`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of an engine's counters (each read individually).
pub use crate::abi::IoengStats as Stats;

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
            reserved: [0; 6],
        }
    }
}
