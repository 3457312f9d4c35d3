//! The submit role's round: resubmissions first, then new requests by the fairness rule
//! into free slots. It never waits for a slot (see `steps::submit_step`).

use super::context::{IoContext, Slot};
use crate::error::{Error, try_with_capacity};
use crate::sys::monotonic_ns;

/// The submitter's working set, kept across rounds so that rounds do not allocate.
pub(crate) struct SubmitRound {
    /// Slot indices to hand the kernel in this round.
    pub(crate) batch: Vec<usize>,
    /// Free slots taken from the budget for this round's new requests.
    slots: Vec<usize>,
    /// Resubmissions backing off after repeated `EAGAIN` (see `tasks::FREE_RETRIES`):
    /// `(not before, slot index)`, CLOCK_MONOTONIC ns. The submitter holds these slots
    /// until it issues them. The earliest time is published to the context
    /// (`IoContext::set_next_retry`) whenever the list changes, for the engine's timers.
    delayed: Vec<(u64, usize)>,
}

impl SubmitRound {
    /// `OutOfMemory` when room for `batch` slots cannot be allocated.
    pub(crate) fn new(batch: usize) -> Result<Self, Error> {
        Ok(SubmitRound {
            batch: try_with_capacity(batch)?,
            slots: try_with_capacity(batch)?,
            delayed: Vec::new(),
        })
    }

    /// When the earliest delayed resubmission falls due (CLOCK_MONOTONIC ns).
    pub(crate) fn next_retry(&self) -> Option<u64> {
        self.delayed.iter().map(|&(at, _)| at).min()
    }

    /// Whether a delayed resubmission is due now.
    #[cfg(test)]
    pub(crate) fn retry_due(&self) -> bool {
        self.next_retry().is_some_and(|at| at <= monotonic_ns())
    }

    /// A slot handed back for resubmission: into this round, or kept back until due
    /// (or finished at once when its request was cancelled meanwhile).
    fn route_resubmit<S: Slot>(&mut self, ctx: &IoContext<S>, index: usize) {
        if ctx.cancel_requested(index) {
            ctx.fail_unsubmitted(index, -i64::from(libc::ECANCELED));
            return;
        }
        // SAFETY: the submitter took `index` from the resubmit channel and holds it.
        let slot = unsafe { ctx.slot_mut(index) };
        let retry_at = slot.event_mut().as_ref().and_then(|event| event.retry_at());
        match retry_at {
            Some(at) if at > monotonic_ns() => {
                self.delayed.push((at, index));
                ctx.lower_next_retry(at);
            }
            _ => self.batch.push(index),
        }
    }

    /// Moves due resubmissions, then those waiting in the channel, into the batch.
    fn take_resubmits<S: Slot>(&mut self, ctx: &IoContext<S>, batch: usize) {
        if !self.delayed.is_empty() {
            let now = monotonic_ns();
            let before = self.delayed.len();
            let mut i = 0;
            while i < self.delayed.len() && self.batch.len() < batch {
                if self.delayed[i].0 <= now {
                    let index = self.delayed.swap_remove(i).1;
                    if ctx.cancel_requested(index) {
                        ctx.fail_unsubmitted(index, -i64::from(libc::ECANCELED));
                    } else {
                        self.batch.push(index);
                    }
                } else {
                    i += 1;
                }
            }
            if self.delayed.len() != before {
                ctx.set_next_retry(self.next_retry());
            }
        }
        while self.batch.len() < batch {
            match ctx.budget.resubmissions().try_recv() {
                Ok(index) => self.route_resubmit(ctx, index),
                Err(_) => break,
            }
        }
    }

    /// Fills `batch` with the slot indices to hand the kernel in this round, at most
    /// `ctx.batch` of them.
    ///
    /// Resubmissions that are due come first (they already hold budget), then new
    /// requests chosen by the fairness rule with `room = min(batch, free slots)`, each
    /// placed into a free slot. With the budget exhausted it returns with `batch` empty
    /// (or holding only resubmissions): whoever frees a slot runs the next round.
    pub(crate) fn fill<S: Slot>(&mut self, ctx: &IoContext<S>) {
        let batch = ctx.batch;
        self.batch.clear();
        self.slots.clear();
        self.take_resubmits(ctx, batch);
        if ctx.is_paused() {
            return;
        }
        // Only this thread removes from the queues, so at least `wanted` stay queued
        // until we take them below: no slot is ever taken in vain.
        let wanted = (batch - self.batch.len()).min(ctx.dispatchable());
        if wanted == 0 {
            return;
        }
        ctx.budget.take_free(&mut self.slots, wanted);
        if self.slots.is_empty() {
            return;
        }
        // Cancel and expiry may have removed queued requests since `wanted` was read.
        let taken = ctx.dispatch_round(&self.slots, &mut self.batch);
        // Hand back any slot the round could not fill.
        ctx.budget.release(&self.slots[taken..]);
    }
}
