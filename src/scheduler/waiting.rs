//! What waits to be dispatched: the queues of every IO class (`classes::ClassQueues`,
//! class 0 being the three queues of `common::Queues`) and the deadlines of the requests
//! in them (docs/ARCHITECTURE.md, "Deadlines").

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::classes::{ClassPosition, ClassQueues};
use super::tasks::IoEvent;

/// "No deadline" in `WaitingQueues::earliest_deadline`.
pub(crate) const NO_DEADLINE: u64 = u64::MAX;

/// The queues with what submitting threads read without their lock.
pub(crate) struct WaitingQueues {
    /// Callers push, the submitter pops; cancel and expiry remove. Never held while a
    /// callback or a syscall runs (except buffer registration, before any request).
    pub(crate) lock: Mutex<Waiting>,
    /// The earliest deadline in `Waiting::deadlines` (CLOCK_MONOTONIC ns), or
    /// `NO_DEADLINE`: read without the lock so that engines whose requests carry no
    /// deadline never read the clock or arm a timer.
    pub(crate) earliest_deadline: AtomicU64,
    /// Requests queued; written under the lock only (`add_queued`), read without it by
    /// the submitter as a hint of how many slots it will need.
    pub(crate) queued: AtomicUsize,
    /// Most requests queued at once; 0 = unbounded.
    pub(crate) capacity: usize,
    /// `ClassQueues::held` and `refill_at` as of the last change under the lock, read
    /// without it: queued requests that their class's limits hold, and when the first
    /// of them may go (so that the engine neither spins on them nor sleeps past that).
    pub(crate) held: AtomicUsize,
    pub(crate) refill_ns: AtomicU64,
}

impl WaitingQueues {
    pub(crate) fn new(capacity: usize, normal_min_percent: u32) -> Self {
        WaitingQueues {
            lock: Mutex::new(Waiting {
                queues: ClassQueues::new(normal_min_percent),
                deadlines: BinaryHeap::new(),
                with_deadline: 0,
            }),
            earliest_deadline: AtomicU64::new(NO_DEADLINE),
            queued: AtomicUsize::new(0),
            capacity,
            held: AtomicUsize::new(0),
            refill_ns: AtomicU64::new(NO_DEADLINE),
        }
    }

    /// `queued` += `delta`, by the holder of the queue lock (`_locked` is what it
    /// guards): every writer of `queued` holds it, so a load and a store do, without an
    /// atomic read-modify-write.
    pub(crate) fn add_queued(&self, _locked: &Waiting, delta: isize) {
        let now = self.queued.load(Relaxed);
        debug_assert!(
            delta >= 0 || now >= delta.unsigned_abs(),
            "queued below zero"
        );
        self.queued.store(now.wrapping_add_signed(delta), Relaxed);
    }

    /// Publishes what the class limits hold after `waiting` changed (under the lock).
    pub(crate) fn publish_held(&self, waiting: &Waiting) {
        self.held.store(waiting.queues.held(), Relaxed);
        self.refill_ns.store(waiting.queues.refill_at(), Relaxed);
    }
}

/// The queues and, for requests with a deadline, a min-heap of those deadlines with
/// where each request stands in its queue.
///
/// Expiry pops the heap and takes each due request straight out of its queue (O(log n)
/// per expired request; no scan). A request that leaves the queue otherwise (dispatch,
/// cancel) leaves its heap entry behind, stale: nothing is paid for it at dispatch.
/// Stale entries are dropped when they come due, all at once when no queued request has
/// a deadline, and by a sweep once they outnumber the live ones (so memory stays within
/// twice the live entries).
pub(crate) struct Waiting {
    pub(crate) queues: ClassQueues<IoEvent>,
    pub(crate) deadlines: BinaryHeap<Reverse<(u64, ClassPosition)>>,
    /// Queued requests that have a deadline (the live heap entries).
    pub(crate) with_deadline: usize,
}

/// Stale heap entries tolerated beyond the live ones before a sweep.
pub(crate) const STALE_DEADLINE_SLACK: usize = 64;

impl Waiting {
    /// Queues `event`, recording its deadline; returns the deadline (0: none).
    pub(crate) fn push(&mut self, event: IoEvent) -> u64 {
        let deadline = event.request.deadline_ns;
        let at = self
            .queues
            .push(event.request.class_id, event.request.class(), event);
        if deadline != 0 {
            self.deadlines.push(Reverse((deadline, at)));
            self.with_deadline += 1;
        }
        deadline
    }

    /// Takes out the queued requests whose deadline is at or before `now`.
    pub(crate) fn expire(&mut self, now: u64) -> Vec<IoEvent> {
        let mut expired = Vec::new();
        while let Some(&Reverse((deadline, at))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if let Some(event) = self.queues.take(at) {
                debug_assert_eq!(event.request.deadline_ns, deadline);
                expired.push(event);
            }
        }
        self.forget_deadlines(expired.len());
        expired
    }

    /// `n` queued requests with a deadline left the queues (by any way).
    pub(crate) fn forget_deadlines(&mut self, n: usize) {
        self.with_deadline -= n;
        if self.with_deadline == 0 {
            self.deadlines.clear();
            return;
        }
        // Amortized O(1) per stale entry: a sweep of the heap once stale entries
        // outnumber live ones. A stale top is left alone: at worst it arms the timer
        // early, and that expiry pops it and finds nothing.
        if self.deadlines.len() > 2 * self.with_deadline + STALE_DEADLINE_SLACK {
            let queues = &self.queues;
            self.deadlines
                .retain(|&Reverse((_, at))| queues.get(at).is_some());
            debug_assert_eq!(self.deadlines.len(), self.with_deadline);
        }
    }

    /// The earliest deadline of a queued request, or `NO_DEADLINE`.
    pub(crate) fn earliest(&self) -> u64 {
        self.deadlines.peek().map_or(NO_DEADLINE, |r| r.0.0)
    }
}
