//! THREADS mode: the submitter and completer loops, built from the steps (`steps`) and
//! the idle policy (`idle`). POLLED mode (`polled`) drives the same steps from
//! `ioeng_poll`.

use std::time::Instant;

use super::driver::Driver;
use super::idle::IdleWait;
use super::locks::{lock, try_lock};
use super::shared::Shared;
use super::steps::{reap_step, submit_ready, submit_step};
use crate::race_hooks::{self, Point};
use crate::sys::instant_of;

/// Submitter loop (THREADS): submit steps; idle, it polls or sleeps per the policy.
///
/// It never waits for a slot holding the submit role: with the budget exhausted it
/// sleeps like an idle submitter, and the completer, which frees the slots, runs the
/// next round itself (`submit_after_callbacks`). A hand-off here would cost each
/// dispatch a wake-up, and on io_uring a second one per IO: the kernel posts a
/// completion from the thread that submitted the IO.
pub(crate) fn run_submitter<D: Driver>(shared: &Shared<D>) {
    let (ctx, driver) = (&shared.ctx, &shared.driver);
    ctx.wakeup().wait_for_threads();
    let mut idle = IdleWait::new(&shared.policy);
    let mut wait_for_progress = || ctx.wait_for_progress();
    loop {
        {
            let round = &mut lock(&shared.submit).round;
            let submitted = submit_step(ctx, driver, round, &mut wait_for_progress);
            if submitted > 0 {
                idle.work_arrived();
                continue;
            }
        }
        if ctx.drained_for_close() {
            break;
        }
        race_hooks::at(Point::SubmitterIdle);
        // Every timer (a delayed resubmission, a queued deadline, a held class's refill):
        // `next_wake_ns`.
        let wake_ns = ctx.next_wake_ns();
        // While it polls, this thread runs its own pending io_uring task_work (COOP_TASKRUN
        // does not interrupt it; asleep, the kernel wakes it for that). That is no work
        // for it: the flag the driver checks is the ring's, and it stays set while the
        // completer's own work waits, so counting it would spin this loop.
        let run_deferred = || {
            if let Some(_role) = try_lock(&shared.submit) {
                driver.run_deferred();
            }
        };
        if idle.poll(|| {
            run_deferred();
            ctx.has_submit_work_now() || ctx.control_due(wake_ns)
        }) {
            continue;
        }
        race_hooks::at(Point::SubmitterParking);
        if !ctx.announce_submitter_sleep(wake_ns) {
            ctx.submitter_awake();
            continue;
        }
        // Nothing to do: sleep until a push, resume, resubmission, cancel or close unparks
        // us, or until the earliest timer falls due (expiring a deadline is this
        // thread's job). A wake-up that raced ahead of this park leaves a token, so none
        // is lost.
        match wake_ns.map(instant_of) {
            Some(at) => std::thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
        ctx.submitter_awake();
    }
    ctx.mark_submitter_exited();
}

/// Completer loop (THREADS): reap steps, each followed by the submit steps for what its
/// callbacks queued (so a callback that submits costs no hand-off to the submitter).
/// `reaped` is its scratch list of completions, with room for `depth` (allocated at open).
pub(crate) fn run_completer<D: Driver>(shared: &Shared<D>, mut reaped: Vec<(usize, i64)>) {
    let (ctx, driver) = (&shared.ctx, &shared.driver);
    ctx.wakeup().wait_for_threads();
    let _serving = ctx.serve_here();
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
/// submitter (see `IoContext::served_here`), and the slots it just freed may be what
/// queued requests wait for, so it runs the round itself, or hands it to the submitter
/// when that one holds the submit role right now.
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
    drop(role);
    // The round may have set an earlier timer (a delayed resubmission, a held class's
    // refill, a deadline) than the one the submitter sleeps on.
    ctx.wake_submitter_for_timers();
}
