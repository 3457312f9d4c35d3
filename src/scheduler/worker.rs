//! The two engine threads, written once and monomorphized per driver: the submitter
//! (queues → slots → kernel) and the completer (kernel → callbacks → budget).

use super::common::poll_queues_and_batch;
use super::context::{Driver, IoContext};

/// Submitter loop: one fairness round and one kernel submit call per iteration.
pub(crate) fn run_submitter<D: Driver>(ctx: &IoContext<D::Slot>, driver: &D) {
    ctx.wait_for_threads();
    let mut slots = Vec::with_capacity(ctx.batch);
    let mut batch = Vec::with_capacity(ctx.batch);
    loop {
        poll_queues_and_batch(ctx, ctx.batch, &mut slots, &mut batch);
        if !batch.is_empty() {
            driver.submit(ctx, &batch);
            continue;
        }
        if ctx.drained_for_close() {
            break;
        }
        // Nothing to do: sleep until a push, resume, resubmission or close unparks us.
        // A wake-up that raced ahead of this park leaves a token, so none is lost.
        std::thread::park();
    }
    ctx.mark_submitter_exited();
}

/// Completer loop: reap, settle, run callbacks, return slots to the budget.
pub(crate) fn run_completer<D: Driver>(ctx: &IoContext<D::Slot>, driver: &D) {
    ctx.wait_for_threads();
    let mut reaped = Vec::with_capacity(ctx.budget_depth());
    loop {
        if !ctx.kernel_has_work() {
            // Checked after `kernel_has_work`: the submitter publishes its last
            // acceptance before it marks itself exited.
            if ctx.submitter_has_exited() && !ctx.kernel_has_work() {
                break;
            }
            std::thread::park();
            continue;
        }
        reaped.clear();
        driver.reap(ctx, &mut reaped);
        ctx.complete(&reaped);
    }
}
