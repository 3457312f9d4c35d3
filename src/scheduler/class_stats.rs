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
use crate::error::{Error, try_vec};

/// Sums of one run of requests (see `ClassStats::recorder`).
#[derive(Default)]
struct Tally {
    reads: u64,
    writes: u64,
    others: u64,
    bytes_read: u64,
    bytes_written: u64,
    in_flight: i64,
}

impl Tally {
    fn add_to(&self, entry: &Entry) {
        let add = |counter: &AtomicU64, n: u64| {
            if n != 0 {
                counter.fetch_add(n, Relaxed);
            }
        };
        add(&entry.reads, self.reads);
        add(&entry.writes, self.writes);
        add(&entry.others, self.others);
        add(&entry.bytes_read, self.bytes_read);
        add(&entry.bytes_written, self.bytes_written);
        if self.in_flight != 0 {
            entry.in_flight.fetch_add(self.in_flight, Relaxed);
        }
    }
}

/// Records dispatches and callbacks into `ClassStats`; adds what it summed when the run
/// of (class, HIGH?) changes and when dropped.
pub(crate) struct Recorder<'a> {
    stats: &'a ClassStats,
    /// The clock for latencies (read by the caller once per batch; 0 when off).
    now_ns: u64,
    key: Option<(u16, bool)>,
    tally: Tally,
}

impl Recorder<'_> {
    fn switch_to(&mut self, event: &IoEvent) {
        let key = (
            event.request.class_id,
            event.request.priority == Priority::High,
        );
        if self.key != Some(key) {
            self.flush();
            self.key = Some(key);
        }
    }

    fn flush(&mut self) {
        if let Some((class, high)) = self.key.take() {
            let tally = std::mem::take(&mut self.tally);
            tally.add_to(&self.stats.entries[usize::from(class)]);
            if high {
                tally.add_to(&self.stats.entries[HIGH_ENTRY]);
            }
        }
    }

    /// `event` was placed in a slot.
    pub(crate) fn dispatched(&mut self, event: &IoEvent) {
        self.switch_to(event);
        self.tally.in_flight += 1;
    }

    /// `event`'s callback is about to run with `res`; `dispatched`: it had a slot (it
    /// was not cancelled or timed out while queued).
    pub(crate) fn finished(&mut self, event: &IoEvent, res: i64, dispatched: bool) {
        self.switch_to(event);
        let tally = &mut self.tally;
        if dispatched {
            tally.in_flight -= 1;
        }
        let moved = u64::try_from(res).unwrap_or(0);
        match event.request.op {
            Op::Read | Op::Readv => {
                tally.reads += 1;
                tally.bytes_read += moved;
            }
            Op::Write | Op::Writev => {
                tally.writes += 1;
                tally.bytes_written += moved;
            }
            _ => tally.others += 1,
        }
        if self.stats.latency && event.queued_ns != 0 {
            let ns = self.now_ns.saturating_sub(event.queued_ns);
            let own = &self.stats.entries[usize::from(event.request.class_id)];
            let high =
                (event.request.priority == Priority::High).then(|| &self.stats.entries[HIGH_ENTRY]);
            for entry in std::iter::once(own).chain(high) {
                if let Some(histogram) = entry.latency.get() {
                    histogram.record(ns);
                    // A read first: a new maximum is rare, an atomic RMW per request not.
                    if ns > entry.max_ns.load(Relaxed) {
                        entry.max_ns.fetch_max(ns, Relaxed);
                    }
                }
            }
        }
    }
}

impl Drop for Recorder<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

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
    /// With `latency`, class 0's and HIGH's histograms are allocated now (`OutOfMemory`
    /// if they cannot be), the others' by `enable` when their class opens.
    pub(crate) fn new(latency: bool) -> Result<Self, Error> {
        let stats = ClassStats {
            entries: try_vec(MAX_CLASSES + 1, |_| Entry::default())?.into_boxed_slice(),
            latency,
        };
        if latency {
            for entry in [0, HIGH_ENTRY] {
                let _ = stats.entries[entry].latency.set(Histogram::try_new()?);
            }
        }
        Ok(stats)
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

    /// A recorder for a batch of dispatches or callbacks: it sums them per run of
    /// requests of one class and priority and adds each sum once, so the engine without
    /// classes pays a few atomic adds per batch, not per request.
    pub(crate) fn recorder(&self, now_ns: u64) -> Recorder<'_> {
        Recorder {
            stats: self,
            now_ns,
            key: None,
            tally: Tally::default(),
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
