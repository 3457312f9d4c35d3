//! Per-class counters and latency histograms behind `ioeng_class_stats` (DESIGN §6.1):
//! one entry per class id and one for `IOENG_CLASS_HIGH` (every HIGH request, whatever
//! its class, counted there and in its own class). Counters are relaxed atomics bumped
//! by whoever dispatches or finishes a request; the histograms exist only with
//! `latency_stats` on (allocated when the class is, never per request).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use super::classes::MAX_CLASSES;
use super::histogram::Histogram;
use super::tasks::{IoEvent, Op, Priority};
use crate::abi::IoengClassStats;

/// The entry of `IOENG_CLASS_HIGH`.
pub(crate) const HIGH_ENTRY: usize = MAX_CLASSES;

#[derive(Default)]
struct Entry {
    reads: AtomicU64,
    writes: AtomicU64,
    others: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    in_flight: AtomicI64,
    max_ns: AtomicU64,
    latency: OnceLock<Histogram>,
}

pub(crate) struct ClassStats {
    entries: Box<[Entry]>,
    latency: bool,
}

impl ClassStats {
    /// With `latency`, class 0's and HIGH's histograms are allocated now, the others'
    /// by `enable` when their class opens.
    pub(crate) fn new(latency: bool) -> Self {
        let stats = ClassStats {
            entries: (0..=MAX_CLASSES).map(|_| Entry::default()).collect(),
            latency,
        };
        stats.enable(0);
        stats.enable(HIGH_ENTRY);
        stats
    }

    /// Whether requests carry their queueing time (`IoEvent::queued_ns`).
    pub(crate) fn latency_on(&self) -> bool {
        self.latency
    }

    pub(crate) fn enable(&self, entry: usize) {
        if self.latency {
            self.entries[entry].latency.get_or_init(Histogram::default);
        }
    }

    fn entries_of(&self, event: &IoEvent) -> impl Iterator<Item = &Entry> {
        let own = &self.entries[usize::from(event.request.class_id)];
        let high = (event.request.priority == Priority::High).then(|| &self.entries[HIGH_ENTRY]);
        std::iter::once(own).chain(high)
    }

    /// `event` was placed in a slot.
    pub(crate) fn dispatched(&self, event: &IoEvent) {
        for entry in self.entries_of(event) {
            entry.in_flight.fetch_add(1, Relaxed);
        }
    }

    /// `event`'s callback is about to run with `res`; `dispatched`: it had a slot (not
    /// cancelled or timed out while queued). `now_ns`: the clock, read once per batch
    /// by the caller when latency statistics are on.
    pub(crate) fn finished(&self, event: &IoEvent, res: i64, dispatched: bool, now_ns: u64) {
        let latency =
            (self.latency && event.queued_ns != 0).then(|| now_ns.saturating_sub(event.queued_ns));
        let op = event.request.op;
        for entry in self.entries_of(event) {
            if dispatched {
                entry.in_flight.fetch_sub(1, Relaxed);
            }
            let moved = u64::try_from(res).unwrap_or(0);
            match op {
                Op::Read | Op::Readv => {
                    entry.reads.fetch_add(1, Relaxed);
                    entry.bytes_read.fetch_add(moved, Relaxed);
                }
                Op::Write | Op::Writev => {
                    entry.writes.fetch_add(1, Relaxed);
                    entry.bytes_written.fetch_add(moved, Relaxed);
                }
                _ => {
                    entry.others.fetch_add(1, Relaxed);
                }
            }
            if let (Some(ns), Some(histogram)) = (latency, entry.latency.get()) {
                histogram.record(ns);
                entry.max_ns.fetch_max(ns, Relaxed);
            }
        }
    }

    /// The counters of `entry` into `out` (queued and throttled time are the caller's),
    /// zeroing them with `reset` (in-flight is a state, not a counter: kept).
    pub(crate) fn read(&self, entry: usize, reset: bool, out: &mut IoengClassStats) {
        let e = &self.entries[entry];
        let get = |c: &AtomicU64| {
            if reset {
                c.swap(0, Relaxed)
            } else {
                c.load(Relaxed)
            }
        };
        out.reads = get(&e.reads);
        out.writes = get(&e.writes);
        out.others = get(&e.others);
        out.bytes_read = get(&e.bytes_read);
        out.bytes_written = get(&e.bytes_written);
        out.in_flight = e.in_flight.load(Relaxed).max(0) as u64;
        out.max_ns = get(&e.max_ns);
        if let Some(histogram) = e.latency.get() {
            let [p50, p90, p99, p999] =
                histogram.percentiles([500, 900, 990, 999], out.max_ns, reset);
            (out.p50_ns, out.p90_ns, out.p99_ns, out.p999_ns) = (p50, p90, p99, p999);
        }
    }
}
