//! The submitter's round: resubmissions first, then new requests by the fairness rule into
//! free slots, blocking (THREADS submitter only) while the budget is exhausted.

use crossbeam_channel::{at, never, select};

use super::context::{IoContext, Slot};
use crate::sys::{instant_of, monotonic_ns};

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
    pub(crate) fn new(batch: usize) -> Self {
        SubmitRound {
            batch: Vec::with_capacity(batch),
            slots: Vec::with_capacity(batch),
            delayed: Vec::new(),
        }
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
    /// placed into a free slot. When queued requests exist but the budget is exhausted
    /// and nothing else can be submitted, it first calls `await_slot`, which may poll for
    /// a slot and says whether one (or a resubmission) arrived, and only then blocks
    /// until one does, a delayed resubmission falls due, or control work arrives (a
    /// cancel, or `deadline`: the next queued deadline, see `IoContext::service`).
    /// Returns with `batch` empty when there is nothing to do now.
    pub(crate) fn fill<S: Slot>(
        &mut self,
        ctx: &IoContext<S>,
        deadline: Option<u64>,
        await_slot: impl FnMut() -> bool,
    ) {
        self.fill_with(ctx, deadline, await_slot, true);
    }

    /// `fill` for a thread that must not block here because it frees slots itself (the
    /// completer, the poller): with the budget exhausted it returns with `batch` empty.
    pub(crate) fn fill_nonblocking<S: Slot>(&mut self, ctx: &IoContext<S>) {
        self.fill_with(ctx, None, || false, false);
    }

    fn fill_with<S: Slot>(
        &mut self,
        ctx: &IoContext<S>,
        deadline: Option<u64>,
        mut await_slot: impl FnMut() -> bool,
        block: bool,
    ) {
        let batch = ctx.batch;
        self.batch.clear();
        self.slots.clear();
        let budget = &ctx.budget;
        let mut polled = false;
        loop {
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
            budget.take_free(&mut self.slots, wanted);
            if !self.slots.is_empty() {
                break;
            }
            if !self.batch.is_empty() {
                return;
            }
            // The budget is exhausted. The completer frees slots right after the
            // callbacks of the batch it is finishing, typically within microseconds: poll
            // for that first, since blocking costs a futex wait here and a futex wake on
            // the completer.
            if !polled {
                polled = true;
                if await_slot() {
                    continue;
                }
            }
            if !block {
                return;
            }
            // Wait for the completer to free a slot or hand one back for resubmission,
            // or for a delayed resubmission to fall due, whichever comes first; return
            // for control work (a cancel, a queued deadline) so the caller runs it.
            let due = self.next_retry().map(instant_of).map_or_else(never, at);
            let expiry = deadline.map(instant_of).map_or_else(never, at);
            let control = ctx.wakeup().waiting_submitter_rx().cloned();
            let control = control.unwrap_or_else(never);
            select! {
                recv(budget.free_slots()) -> index => self.slots.extend(index),
                recv(budget.resubmissions()) -> index => {
                    if let Ok(index) = index {
                        self.route_resubmit(ctx, index);
                    }
                    continue;
                }
                recv(due) -> _ => continue,
                recv(control) -> _ => return,
                recv(expiry) -> _ => return,
            }
            // Completions free slots in bursts: take the rest of the burst into this round.
            budget.take_free(&mut self.slots, wanted);
            break;
        }
        // Cancel and expiry may have removed queued requests since `wanted` was read.
        let taken = ctx.dispatch_round(&self.slots, &mut self.batch);
        // Hand back any slot the round could not fill.
        for &index in &self.slots[taken..] {
            budget.release(index);
        }
    }
}
