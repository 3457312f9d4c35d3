//! Requests that end without (more) kernel IO: cancelled or timed out while queued (the
//! `dead` list, whose callbacks the engine thread runs), and the marks that let a cancel
//! reach a request in a slot (docs/ARCHITECTURE.md, "Cancel").

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::locks::lock;
use super::tasks::IoEvent;
use crate::error::{Error, try_vec};

/// The tag of a cancel request from `cancel_all`: whatever the occupant's tag (a real
/// tag is never compared with it: `cancel` matches tags, `cancel_all` generations).
pub(crate) const ANY_TAG: u64 = 0;

pub(crate) struct Cancels {
    /// Requests removed from the queues by cancel or expiry, with their `res`, waiting
    /// for the submitter (or poller) to run their callbacks on an engine thread. Each
    /// stays here until its callback starts, so that a cancel still counts it.
    pub(crate) dead: Mutex<VecDeque<(IoEvent, i64)>>,
    /// `dead.len()`, written only under the `dead` lock, read without it as a hint that
    /// `service` has work (a stale zero is fixed by the wake-up that follows every push).
    pub(crate) dead_count: AtomicUsize,
    /// In-flight cancels asked for by `cancel` and `cancel_all`: `(slot index, tag,
    /// generation)`, which the submitter checks against the slot before asking the
    /// kernel; tag [`ANY_TAG`] (from `cancel_all`) matches the occupant whatever its tag.
    pub(crate) cancel_requests: Mutex<Vec<(usize, u64, u64)>>,
    pub(crate) has_cancel_requests: AtomicBool,
    /// Per slot, readable by any thread: the tag of a tagged request occupying it
    /// (0 otherwise), a generation bumped at each dispatch (so a stale cancel never
    /// hits the next occupant), the generation of the occupant whose callback has not
    /// started (0: none; what `cancel_all` looks for, tagged or not), and the
    /// generation of the occupant whose cancel was handed to the driver. The cancel
    /// mark names its occupant rather than being a flag that a completion resets,
    /// because the submit role may mark a request that the completer finishes at that
    /// very moment: the mark then names a request that is gone and matches no later
    /// occupant. Untagged traffic costs three relaxed stores per request (two at
    /// dispatch, one before the callback), into arrays only the engine threads write.
    pub(crate) slot_tags: Box<[AtomicU64]>,
    pub(crate) slot_gens: Box<[AtomicU64]>,
    pub(crate) slot_live: Box<[AtomicU64]>,
    pub(crate) slot_cancelled: Box<[AtomicU64]>,
}

impl Cancels {
    /// `OutOfMemory` when the per-slot arrays cannot be allocated.
    pub(crate) fn new(depth: usize) -> Result<Self, Error> {
        let per_slot = || Ok::<_, Error>(try_vec(depth, |_| AtomicU64::new(0))?.into_boxed_slice());
        Ok(Cancels {
            dead: Mutex::new(VecDeque::new()),
            dead_count: AtomicUsize::new(0),
            cancel_requests: Mutex::new(Vec::new()),
            has_cancel_requests: AtomicBool::new(false),
            slot_tags: per_slot()?,
            slot_gens: per_slot()?,
            slot_live: per_slot()?,
            // Generation 0 is no occupant's (the first dispatch makes 1).
            slot_cancelled: per_slot()?,
        })
    }

    /// Hands events removed from the queues to the engine thread that runs callbacks.
    /// Whoever calls this makes sure a `service` follows: `cancel` wakes the engine,
    /// and expiry happens inside a submit step, which services its own dead (see
    /// `steps::submit_step`).
    pub(crate) fn bury(&self, events: impl Iterator<Item = (IoEvent, i64)>) {
        let mut dead = lock(&self.dead);
        dead.extend(events);
        // Under the lock, like every write of the count: it always equals the length.
        self.dead_count.store(dead.len(), Ordering::Release);
    }

    /// The next request waiting in `dead` for its callback, taken out under the lock
    /// together with the count (so that a concurrent `bury` is never overwritten).
    pub(crate) fn pop_dead(&self) -> Option<(IoEvent, i64)> {
        let mut dead = lock(&self.dead);
        let next = dead.pop_front();
        self.dead_count.store(dead.len(), Ordering::Relaxed);
        next
    }
}
