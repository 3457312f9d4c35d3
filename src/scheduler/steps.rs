//! The engine's two steps, written once and monomorphized per driver: the submit step
//! (queues → slots → kernel) and the reap step (kernel → callbacks → budget). The THREADS
//! loops (`worker`) and POLLED polls (`polled`) are built from them.

use std::time::Duration;

use super::context::IoContext;
use super::driver::Driver;
use super::round::SubmitRound;
use crate::race_hooks::{self, Point};

/// Submit step (submit role): one fairness round into free slots, and one kernel submit
/// call for it. With the budget exhausted the round is empty: nobody waits for a slot
/// holding the submit role, since the thread that frees slots (the completer, the
/// poller) runs the next round itself. `busy` runs when the kernel is out of resources
/// for now. Returns how many slots it handed to the kernel (0: nothing to submit now).
pub(crate) fn submit_step<D: Driver>(
    ctx: &IoContext<D::Slot>,
    driver: &D,
    round: &mut SubmitRound,
    busy: &mut impl FnMut(),
) -> usize {
    // Housekeeping first: expire queued requests whose deadline passed, hand in-flight
    // cancels to the driver, run the callbacks of cancelled and timed-out requests.
    ctx.service(|targets| driver.cancel(ctx, targets));
    race_hooks::at(Point::AfterService);
    round.fill(ctx);
    // The round may have timed out queued requests (a deadline passing since `service`):
    // their callbacks run here, by the holder of the submit role that expired them. Left
    // for later, they could wait for good: a submitter that read "no deadline" after the
    // expiry and "nothing dead" before it sleeps without a timeout.
    ctx.finish_dead();
    if round.batch.is_empty() {
        return 0;
    }
    driver.submit(ctx, &round.batch, busy);
    round.batch.len()
}

/// Reap step (reap role): takes the completions there are (with `wait`, after waiting
/// in the kernel for at least one), settles them and runs the finished requests'
/// callbacks on this thread. Returns how many kernel completions it took.
pub(crate) fn reap_step<D: Driver>(
    ctx: &IoContext<D::Slot>,
    driver: &D,
    reaped: &mut Vec<(usize, i64)>,
    wait: bool,
) -> usize {
    reaped.clear();
    driver.reap(ctx, reaped, wait);
    ctx.complete(reaped);
    reaped.len()
}

/// Submit steps until nothing more can be submitted now, by a thread that also holds
/// the reap role (the completer, the poller): it never blocks for a slot, and when the
/// kernel is busy it reaps (waiting in the kernel only while IO is there to wait for).
pub(crate) fn submit_ready<D: Driver>(
    ctx: &IoContext<D::Slot>,
    driver: &D,
    round: &mut SubmitRound,
    reaped: &mut Vec<(usize, i64)>,
) {
    let mut busy = || {
        if ctx.kernel_has_work() {
            reap_step(ctx, driver, reaped, true);
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    };
    while submit_step(ctx, driver, round, &mut busy) > 0 {}
}
