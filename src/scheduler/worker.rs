//! The two engine threads, written once and monomorphized per driver: the submitter
//! (queues → slots → kernel) and the completer (kernel → callbacks → budget).

use std::time::{Duration, Instant};

use super::common::poll_queues_and_batch;
use super::context::{Driver, IoContext};

/// How long an idle engine thread polls for new work before it sleeps. A sleeping thread
/// costs a futex wake-up and a scheduler round trip (tens of µs on a VM) to the thread
/// that hands it work; at queue depth 1 that hand-off happens twice per IO, so a short
/// poll keeps it off the IO's latency. Bounded, so an idle engine sleeps.
const IDLE_POLL: Duration = Duration::from_micros(50);

/// Polls `ready` for up to [`IDLE_POLL`]; true as soon as it holds.
fn poll_briefly(mut ready: impl FnMut() -> bool) -> bool {
    static POLL: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    let limit = *POLL.get_or_init(|| {
        std::env::var("IOENG_IDLE_POLL_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_micros)
            .unwrap_or(IDLE_POLL)
    });
    let start = Instant::now();
    loop {
        for _ in 0..32 {
            if ready() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= limit {
            return false;
        }
    }
}

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
        if poll_briefly(|| driver.run_deferred() || ctx.has_submit_work()) {
            continue;
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
            if !poll_briefly(|| ctx.kernel_has_work()) {
                std::thread::park();
            }
            continue;
        }
        reaped.clear();
        driver.reap(ctx, &mut reaped);
        ctx.complete(&reaped);
    }
}
