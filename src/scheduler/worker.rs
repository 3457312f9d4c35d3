//! The engine's work, written once and monomorphized per driver: the submit step (queues
//! → slots → kernel), the reap step (kernel → callbacks → budget) and the idle-wait
//! policy, and the THREADS mode loops built from them (a submitter and a completer
//! thread). POLLED mode (`super::polled`) drives the same steps from `ioeng_poll`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::common::SubmitRound;
use super::context::{Driver, IoContext};
use super::engine::Shared;
use super::locks::{lock, try_lock};
use super::{Config, IdlePoll};
use crate::race_hooks::{self, Point};
use crate::sys;

/// Default upper bound on how long an idle engine thread polls before it sleeps: a few
/// times what a sleep and its wake-up cost on a VM (a futex wake plus a scheduler round
/// trip, 10–30 µs). Work that takes longer than this to arrive is not worth a spinning
/// core: the sleep adds only a small fraction to that wait.
const DEFAULT_MAX_POLL: Duration = Duration::from_micros(50);
/// Shortest poll; also the first one.
const MIN_POLL: Duration = Duration::from_micros(10);

/// When an idle engine thread may poll instead of sleeping (THREADS mode). Read from the
/// configuration at open; shared by the engine's two threads.
pub(crate) struct PollPolicy {
    /// Longest poll; zero = never poll.
    max: Duration,
    /// Held by the one engine thread polling right now: the other one sleeps instead of
    /// taking a second core away from the application and from io_uring's io-wq workers.
    polling: AtomicBool,
}

impl PollPolicy {
    pub(crate) fn new(config: &Config) -> Self {
        let max = match config.idle_poll {
            IdlePoll::Never => Duration::ZERO,
            IdlePoll::Max(max) => max,
            // On a single CPU a polling thread only delays the thread it waits for.
            IdlePoll::Default if sys::allowed_cpus() < 2 => Duration::ZERO,
            IdlePoll::Default => DEFAULT_MAX_POLL,
        };
        PollPolicy {
            max,
            polling: AtomicBool::new(false),
        }
    }
}

/// How an idle engine thread waits for its next piece of work.
///
/// Sleeping costs a futex wake-up plus a scheduler round trip on the thread that hands
/// over the work. So an idle thread may first poll, yielding the CPU on every turn, for
/// about as long as work recently took to arrive: the poll grows to cover the gaps it
/// observes, up to the policy's `max`. When work arrives later than `max`, polling would
/// have been wasted, and the thread sleeps at once until gaps are short again (a gap is
/// measured from the start of the idle period, sleep included). Only one thread of the
/// engine polls at a time (see `PollPolicy::polling`).
pub(crate) struct IdleWait<'a> {
    policy: &'a PollPolicy,
    limit: Duration,
    idle_since: Option<Instant>,
}

impl<'a> IdleWait<'a> {
    pub(crate) fn new(policy: &'a PollPolicy) -> Self {
        IdleWait {
            policy,
            limit: MIN_POLL.min(policy.max),
            idle_since: None,
        }
    }

    /// Polls `ready` for up to the current limit; true as soon as it holds.
    pub(crate) fn poll(&mut self, mut ready: impl FnMut() -> bool) -> bool {
        let start = *self.idle_since.get_or_insert_with(Instant::now);
        if ready() {
            return true;
        }
        if self.limit.is_zero() || self.policy.polling.swap(true, Ordering::Acquire) {
            return false;
        }
        let found = loop {
            if ready() {
                break true;
            }
            if start.elapsed() >= self.limit {
                break false;
            }
            std::thread::yield_now();
        };
        self.policy.polling.store(false, Ordering::Release);
        found
    }

    /// Work arrived: adapt the limit to how long it took.
    pub(crate) fn work_arrived(&mut self) {
        let Some(since) = self.idle_since.take() else {
            return;
        };
        let gap = since.elapsed();
        self.limit = if gap > self.policy.max {
            Duration::ZERO
        } else {
            (gap + gap / 4).clamp(MIN_POLL, self.policy.max)
        };
    }
}

/// What the holder of the submit role works with (see `Driver`), kept across steps.
pub(crate) struct SubmitRole {
    pub(crate) round: SubmitRound,
    /// Scratch for reaping by the poller (POLLED mode holds both roles).
    pub(crate) reaped: Vec<(usize, i64)>,
    /// POLLED: the reap epoch when the poller last drained the event fd, and whether it
    /// slept on the fd since; unchanged, nothing signalled the fd and the next drain can
    /// be skipped (one read syscall less per wait at low queue depth).
    pub(crate) drained_at: Option<u64>,
    /// POLLED: a poll returned with work left and wrote the event fd, and no poll has
    /// drained it since. Only pollers drain the fd (callers must not read it) and the
    /// kernel only adds to it, so it surely holds a count: a poll that again returns with
    /// work left can leave it as it is (two syscalls less per poll under load).
    pub(crate) left_readable: bool,
}

impl SubmitRole {
    pub(crate) fn new(batch: usize, depth: usize) -> Self {
        SubmitRole {
            round: SubmitRound::new(batch),
            reaped: Vec::with_capacity(depth),
            drained_at: None,
            left_readable: false,
        }
    }
}

/// Submit step (submit role): one fairness round into free slots, and one kernel submit
/// call for it. `slot_wait` is given only by the THREADS submitter, which may block in the
/// round until the completer frees a slot; everyone else gets an empty round when the
/// budget is exhausted. `busy` runs when the kernel is out of resources for now.
/// Returns how many slots it handed to the kernel (0: nothing to submit now).
pub(crate) fn submit_step<D: Driver>(
    ctx: &IoContext<D::Slot>,
    driver: &D,
    round: &mut SubmitRound,
    slot_wait: Option<&mut IdleWait>,
    busy: &mut impl FnMut(),
) -> usize {
    // Housekeeping first: expire queued requests whose deadline passed, hand in-flight
    // cancels to the driver, run the callbacks of cancelled and timed-out requests.
    let deadline = ctx.service(driver);
    race_hooks::at(Point::AfterService);
    match slot_wait {
        Some(slot_wait) => {
            round.fill(ctx, deadline, || {
                // Also ends the poll for a cancel or a due deadline: `fill` then returns
                // so that the next step's `service` runs them.
                slot_wait.poll(|| {
                    driver.run_deferred();
                    ctx.budget.has_slot_for_submitter() || ctx.control_due(deadline)
                })
            });
            slot_wait.work_arrived();
        }
        None => round.fill_nonblocking(ctx),
    }
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
    while submit_step(ctx, driver, round, None, &mut busy) > 0 {}
}

/// Submitter loop (THREADS): submit steps; idle, it polls or sleeps per the policy.
pub(crate) fn run_submitter<D: Driver>(shared: &Shared<D>) {
    let (ctx, driver) = (&shared.ctx, &shared.driver);
    ctx.wait_for_threads();
    let mut idle = IdleWait::new(&shared.policy);
    // Waiting for the completer to free a slot has its own gaps, so its own adaptation.
    let mut slot_wait = IdleWait::new(&shared.policy);
    let mut wait_for_progress = || ctx.wait_for_progress();
    loop {
        let next_retry = {
            let round = &mut lock(&shared.submit).round;
            let submitted = submit_step(
                ctx,
                driver,
                round,
                Some(&mut slot_wait),
                &mut wait_for_progress,
            );
            if submitted > 0 {
                idle.work_arrived();
                continue;
            }
            round.next_retry()
        };
        if ctx.drained_for_close() {
            break;
        }
        race_hooks::at(Point::SubmitterIdle);
        let deadline = ctx.next_wake();
        let due = || next_retry.is_some_and(|at| at <= Instant::now());
        let deferred = || try_lock(&shared.submit).is_some_and(|_| driver.run_deferred());
        if idle.poll(|| deferred() || ctx.has_submit_work() || due() || ctx.control_due(deadline)) {
            continue;
        }
        // Nothing to do: sleep until a push, resume, resubmission, cancel or close unparks
        // us, or until a delayed resubmission or the earliest queued deadline falls due
        // (expiring it is this thread's job). A wake-up that raced ahead of this park
        // leaves a token, so none is lost.
        let wake_at = match (next_retry, deadline) {
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

/// Completer loop (THREADS): reap steps, each followed by the submit steps for what its
/// callbacks queued (so a callback that submits costs no hand-off to the submitter).
pub(crate) fn run_completer<D: Driver>(shared: &Shared<D>) {
    let (ctx, driver) = (&shared.ctx, &shared.driver);
    ctx.wait_for_threads();
    let _serving = ctx.serve_here();
    let mut reaped = Vec::with_capacity(ctx.budget_depth());
    // Waiting for the submitter to hand the kernel work, and waiting for the kernel to
    // complete it, have different gaps; each adapts on its own.
    let mut idle = IdleWait::new(&shared.policy);
    let mut in_kernel = IdleWait::new(&shared.policy);
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
        reap_step(ctx, driver, &mut reaped, true);
        in_kernel.work_arrived();
        submit_after_callbacks(shared, &mut reaped);
    }
}

/// The completer's share of submitting: requests its callbacks pushed did not wake the
/// submitter (see `IoContext::served_here`), so it submits them itself, or hands them to
/// the submitter when that one holds the submit role right now.
fn submit_after_callbacks<D: Driver>(shared: &Shared<D>, reaped: &mut Vec<(usize, i64)>) {
    let ctx = &shared.ctx;
    if !ctx.has_submit_work() {
        return;
    }
    let Some(mut role) = try_lock(&shared.submit) else {
        ctx.wake_submitter();
        return;
    };
    submit_ready(ctx, &shared.driver, &mut role.round, reaped);
    if role.round.next_retry().is_some() {
        // The submitter's sleep must end when this delayed resubmission falls due.
        ctx.wake_submitter();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: Duration) -> PollPolicy {
        PollPolicy {
            max,
            polling: AtomicBool::new(false),
        }
    }

    #[test]
    fn never_polls_with_a_zero_limit() {
        let never = policy(Duration::ZERO);
        let mut wait = IdleWait::new(&never);
        let mut asked = 0;
        assert!(!wait.poll(|| {
            asked += 1;
            false
        }));
        assert_eq!(asked, 1, "checked once, no polling");
    }

    #[test]
    fn stops_polling_after_a_gap_longer_than_the_limit_and_resumes_after_short_ones() {
        let p = policy(Duration::from_micros(200));
        let mut wait = IdleWait::new(&p);
        assert_eq!(wait.limit, MIN_POLL);
        // Work after 2 ms: far longer than the limit, so the next idle period sleeps at once.
        assert!(!wait.poll(|| false));
        std::thread::sleep(Duration::from_millis(2));
        wait.work_arrived();
        assert_eq!(wait.limit, Duration::ZERO);
        let mut asked = 0;
        assert!(!wait.poll(|| {
            asked += 1;
            false
        }));
        assert_eq!(asked, 1);
        // Work that arrives quickly again (measured from the idle start) brings polling back.
        wait.work_arrived();
        assert!(wait.limit >= MIN_POLL && wait.limit <= p.max);
    }

    #[test]
    fn only_one_thread_polls_at_a_time() {
        let p = policy(Duration::from_millis(50));
        p.polling.store(true, Ordering::Relaxed); // another engine thread is polling
        let mut wait = IdleWait::new(&p);
        let started = Instant::now();
        let mut asked = 0;
        assert!(!wait.poll(|| {
            asked += 1;
            false
        }));
        assert_eq!(asked, 1, "the second thread sleeps instead of polling");
        assert!(started.elapsed() < Duration::from_millis(5));
        p.polling.store(false, Ordering::Relaxed);
        assert!(!wait.poll(|| false));
        assert!(
            !p.polling.load(Ordering::Relaxed),
            "the token is released after polling"
        );
    }
}
