//! The two engine threads, written once and monomorphized per driver: the submitter
//! (queues → slots → kernel) and the completer (kernel → callbacks → budget).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::common::SubmitRound;
use super::context::{Driver, IoContext};

/// Default upper bound on how long an idle engine thread polls before it sleeps.
/// `IOENG_IDLE_POLL_US` overrides it (0 = never poll).
const DEFAULT_MAX_POLL: Duration = Duration::from_micros(500);
/// Shortest poll; also the first one.
const MIN_POLL: Duration = Duration::from_micros(20);

fn max_poll() -> Duration {
    static MAX: OnceLock<Duration> = OnceLock::new();
    *MAX.get_or_init(|| {
        std::env::var("IOENG_IDLE_POLL_US")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_micros)
            .unwrap_or(DEFAULT_MAX_POLL)
    })
}

/// How an idle engine thread waits for its next piece of work.
///
/// Sleeping costs a futex wake-up plus a scheduler round trip (tens of µs on a VM) on the
/// thread that hands over the work; at queue depth 1 that hand-off happens twice per IO.
/// So an idle thread first polls, yielding the CPU on every turn (other runnable threads,
/// such as io_uring's io-wq workers, still get it), for as long as work recently took to
/// arrive: the poll grows to cover the gaps it observes, up to `max`, and shrinks back
/// to `MIN_POLL` when work arrives later than `max` — then polling is wasted and the
/// thread sleeps at once.
struct IdleWait {
    limit: Duration,
    max: Duration,
    idle_since: Option<Instant>,
}

impl IdleWait {
    fn new() -> Self {
        let max = max_poll();
        IdleWait {
            limit: MIN_POLL.min(max),
            max,
            idle_since: None,
        }
    }

    /// Polls `ready` for up to the current limit; true as soon as it holds.
    fn poll(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        let start = *self.idle_since.get_or_insert_with(Instant::now);
        loop {
            if ready() {
                return true;
            }
            if start.elapsed() >= self.limit {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// Work arrived: adapt the limit to how long it took.
    fn work_arrived(&mut self) {
        let Some(since) = self.idle_since.take() else {
            return;
        };
        let gap = since.elapsed();
        self.limit = if gap > self.max {
            MIN_POLL.min(self.max)
        } else {
            (gap + gap / 4).clamp(self.limit, self.max)
        };
    }
}

/// Submitter loop: one fairness round and one kernel submit call per iteration.
pub(crate) fn run_submitter<D: Driver>(ctx: &IoContext<D::Slot>, driver: &D) {
    ctx.wait_for_threads();
    let mut round = SubmitRound::new(ctx.batch);
    let mut idle = IdleWait::new();
    // Waiting for the completer to free a slot has its own gaps, so its own adaptation.
    let mut slot_wait = IdleWait::new();
    loop {
        let deadline = ctx.service(driver);
        round.fill(ctx, deadline, || {
            // Also ends the poll for a cancel or a due deadline: `fill` then returns so
            // that the next `service` runs them.
            slot_wait.poll(|| {
                driver.run_deferred();
                ctx.budget.has_slot_for_submitter() || ctx.control_due(deadline)
            })
        });
        slot_wait.work_arrived();
        if !round.batch.is_empty() {
            idle.work_arrived();
            driver.submit(ctx, &round.batch);
            continue;
        }
        if ctx.drained_for_close() {
            break;
        }
        if idle.poll(|| {
            driver.run_deferred()
                || ctx.has_submit_work()
                || round.retry_due()
                || ctx.control_due(deadline)
        }) {
            continue;
        }
        // Nothing to do: sleep until a push, resume, resubmission, cancel or close unparks
        // us, or
        // until a delayed resubmission falls due. A wake-up that raced ahead of this park
        // leaves a token, so none is lost.
        // Or until the earliest queued deadline: expiring it is this thread's job.
        let wake_at = match (round.next_retry(), ctx.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match wake_at {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
    ctx.mark_submitter_exited();
}

/// Completer loop: reap, settle, run callbacks, return slots to the budget.
pub(crate) fn run_completer<D: Driver>(ctx: &IoContext<D::Slot>, driver: &D) {
    ctx.wait_for_threads();
    let mut reaped = Vec::with_capacity(ctx.budget_depth());
    // Waiting for the submitter to hand the kernel work, and waiting for the kernel to
    // complete it, have different gaps; each adapts on its own.
    let mut idle = IdleWait::new();
    let mut in_kernel = IdleWait::new();
    loop {
        if !ctx.kernel_has_work() {
            // Checked after `kernel_has_work`: the submitter publishes its last
            // acceptance before it marks itself exited.
            if ctx.submitter_has_exited() && !ctx.kernel_has_work() {
                break;
            }
            if !idle.poll(|| ctx.kernel_has_work()) {
                std::thread::park();
            }
            continue;
        }
        idle.work_arrived();
        // Where the driver can see completions without a syscall, poll for them first:
        // a wake-up from the kernel costs as much as a hand-off between threads.
        if driver.completions_ready() == Some(false) {
            in_kernel.poll(|| driver.completions_ready() != Some(false));
        }
        reaped.clear();
        driver.reap(ctx, &mut reaped);
        in_kernel.work_arrived();
        ctx.complete(&reaped);
    }
}
