//! POLLED mode: no engine thread. `ioeng_poll` runs the same submit and reap steps as
//! the THREADS loops (`super::worker`) on the caller's thread, and sleeps in the kernel:
//! in the driver's own wait while IO is in flight (io_uring: `io_uring_enter`, woken
//! also when the engine's eventfd becomes readable), else on that eventfd, which the
//! kernel signals for completions that arrive while nobody polls (and, on AIO, always)
//! and submitting threads signal for new work.

use std::time::{Duration, Instant};

use super::context::{IoContext, Slot};
use super::driver::Driver;
use super::locks::{lock, try_lock};
use super::shared::{Shared, SubmitRole};
use super::steps::{reap_step, submit_ready};
use crate::race_hooks::{self, Point};

/// Why a poll could not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PollError {
    /// Another thread is polling this engine.
    Busy,
    /// A signal interrupted the wait before any callback ran.
    Interrupted,
    /// The engine is tied to another polling thread (IOENG_CONFIG_SINGLE_POLLER).
    WrongThread,
}

/// `ioeng_poll`: submit, reap and run callbacks until `min_complete` callbacks ran or
/// `timeout` passed (`None`: no limit), sleeping in the kernel in between. Returns how
/// many callbacks ran.
pub(crate) fn poll<D: Driver>(
    shared: &Shared<D>,
    min_complete: u64,
    timeout: Option<Duration>,
) -> Result<u64, PollError> {
    let (ctx, driver) = (&shared.ctx, &shared.driver);
    // Holding the submit role makes this thread the one poller; it takes the reap role
    // with it.
    let Some(mut held) = try_lock(&shared.submit) else {
        return Err(PollError::Busy);
    };
    if ctx.is_closing() {
        // Close runs (or ran) its drain on another thread: a poll now breaks the
        // contract, and gets the answer it gets while a poll runs.
        return Err(PollError::Busy);
    }
    if !driver.bind_poller() {
        return Err(PollError::WrongThread);
    }
    let held = &mut *held;
    let _serving = ctx.serve_here();
    ctx.wakeup().poller_running();
    ctx.wakeup().polling_here();
    // While this thread polls, it sees completions itself: where the driver can, the
    // kernel stops signalling the event fd for them, and the poller sleeps in the
    // driver's own wait (`Driver::wait_event`) while IO is in flight.
    let quiet_guard = QuietEventFd::new(driver);
    let quiet = quiet_guard.quiet;
    // Quiet mode: whether the fd may hold a count that no flag below reports.
    let mut fd_count = quiet.unwrap_or(false);
    let start = Instant::now();
    // A timeout too far in the future to represent is no limit.
    let deadline = timeout.and_then(|t| start.checked_add(t));
    let first = ctx.completed();
    let ran = || ctx.completed() - first;
    let must_drain = |held: &mut SubmitRole, fd_count: &mut bool| match quiet {
        Some(_) => {
            std::mem::take(fd_count) | ctx.wakeup().take_written() | driver.take_wake_fired()
        }
        None => held.must_drain(ctx) | driver.timer_count_on_event_fd(),
    };
    let result = loop {
        submit_ready(ctx, driver, &mut held.round, &mut held.reaped);
        let mut reaped = reap_step(ctx, driver, &mut held.reaped, false);
        // Completion work that only this thread runs (io_uring task_work; with
        // DEFER_TASKRUN every completion) becomes CQEs when it enters the kernel. That
        // syscall is spent only when there was nothing to reap: otherwise the next
        // submit's io_uring_enter runs the work, or this turn once the CQ is empty.
        // Under load, completions arrive between any two calls, and entering for them
        // every turn would double the syscalls per batch. Reaping again pays only when
        // that entry happened; a CQE the kernel posts meanwhile is found by the check
        // before sleeping (`rearm_event`), and the wait returns at once for it.
        if reaped == 0 && driver.run_deferred() {
            reaped = reap_step(ctx, driver, &mut held.reaped, false);
        }
        if reaped > 0 {
            // Hand the kernel what the callbacks just submitted before deciding.
            submit_ready(ctx, driver, &mut held.round, &mut held.reaped);
        }
        if ran() >= min_complete {
            break Ok(ran());
        }
        if reaped > 0 {
            continue;
        }
        let now = Instant::now();
        if deadline.is_some_and(|at| at <= now) {
            break Ok(ran());
        }
        let drain = must_drain(held, &mut fd_count);
        if held.rearm_event(ctx, drain, || driver.completions_ready().unwrap_or(false)) {
            ctx.wakeup().poller_running();
            continue;
        }
        // Wake by ourselves for the engine's timers (a delayed resubmission, a queued
        // deadline, ...).
        let wake_at = [deadline, ctx.next_wake()].into_iter().flatten().min();
        let sleep = wake_at.map(|at| at.saturating_duration_since(now));
        let waited = match quiet {
            Some(_) if ctx.kernel_has_work() => driver
                .wait_event(sleep)
                .expect("a driver that quiets the event fd waits for it"),
            _ => {
                let event = ctx.event_fd().expect("a POLLED engine has an event fd");
                let waited = event.wait(sleep);
                // The fd was readable (or the wait ended for another reason): drain next.
                held.drained_at = None;
                fd_count = true;
                waited
            }
        };
        ctx.wakeup().poller_running();
        if waited.is_err() && ran() == 0 {
            break Err(PollError::Interrupted);
        }
        if waited.is_err() {
            break Ok(ran());
        }
    };
    // A completion that arrives now finds the fd quiet: the check below must see it.
    race_hooks::at(Point::PollEnding);
    // From here on completions signal the fd again; the check below sees any that came
    // while it was quiet.
    drop(quiet_guard);
    // A completion that arrives now signals the fd, which the rearm below drains: the
    // check after the drain must see it.
    race_hooks::at(Point::PollLoud);
    // `ready` also runs completion work the kernel queued for this thread but did not
    // post yet (io_uring DEFER_TASKRUN: see `UringDriver::completions_ready`), including
    // work queued while the fd was quiet, which did not signal it.
    let ready = || driver.completions_ready().unwrap_or(false);
    // Nobody has asked for the fd yet: work left is found by the next poll's own pass
    // (see `Wakeup::unwatched_poll_ends`; the first to ask finds the fd readable).
    if ctx
        .wakeup()
        .unwatched_poll_ends(|| ctx.has_work_for_poll(ready))
    {
        return result;
    }
    // Under load a poll returns with completions ready nearly every time: the fd that
    // the last such poll wrote still says so, and `signalled` (set by `poller_running`)
    // keeps submitters from writing it again. A later poll drains it before it sleeps.
    if held.left_readable && ctx.has_work_for_poll(ready) {
        return result;
    }
    // Leave the event fd readable exactly when work for a poll remains. A poll that ran
    // no callback also drains a count that no flag accounts for: the kernel may signal a
    // completion's eventfd after the poll that reaped it, and a level-triggered loop
    // would otherwise spin on the fd until new work came.
    let drain = must_drain(held, &mut fd_count) | (ran() == 0);
    if held.rearm_event(ctx, drain, ready) {
        ctx.wakeup().signal_event();
        held.left_readable = true;
    } else {
        // Quiet until new work, or until the engine's next timer (docs/ARCHITECTURE.md,
        // "Timers"). Armed after the fd is loud again, so the timer's completion signals
        // it, and after `rearm_event`: a push that moved a deadline earlier since then
        // sees `signalled` clear and signals the fd; one before is seen here.
        if !held.arm_timer(ctx, driver) {
            // The kernel refused the timer for now: the loop polls again, which retries,
            // rather than missing the deadline.
            ctx.wakeup().signal_event();
            held.left_readable = true;
        }
    }
    result
}

/// `ioeng_next_timeout_ns`, any thread: 0 when the event fd is readable (a poll has
/// work now) or a timer is due; else the ns until the engine's next timer
/// (`IoContext::next_wake_ns`), which the event fd's timer fires for; -1 when there is
/// none. `None` in THREADS mode (no event fd). The fd is asked, not the engine's state:
/// it is what the caller's loop waits on, so the two never disagree.
pub(crate) fn next_timeout_ns<S: Slot>(ctx: &IoContext<S>) -> Option<i64> {
    let event = ctx.event_fd()?;
    ctx.wakeup().watch();
    if event.is_readable() {
        return Some(0);
    }
    Some(match ctx.next_wake_ns() {
        None => -1,
        Some(at) => at
            .saturating_sub(crate::sys::monotonic_ns())
            .min(i64::MAX as u64) as i64,
    })
}

/// Keeps the kernel from signalling the event fd for completions while a poll runs (see
/// `Driver::quiet_event_fd`), and lets it signal again when the poll ends, also when a
/// panic unwinds it (the FFI turns that into -EIO and the engine lives on).
struct QuietEventFd<'a, D: Driver> {
    driver: &'a D,
    /// What `quiet_event_fd(true)` answered; `None`: the fd stays loud.
    quiet: Option<bool>,
    /// The fork generation at the start: a child forked by a callback unwinds through
    /// here and must not write the ring's flags, which it shares with the parent.
    generation: u64,
}

impl<'a, D: Driver> QuietEventFd<'a, D> {
    fn new(driver: &'a D) -> Self {
        QuietEventFd {
            driver,
            quiet: driver.quiet_event_fd(true),
            generation: crate::sys::fork::generation(),
        }
    }
}

impl<D: Driver> Drop for QuietEventFd<'_, D> {
    fn drop(&mut self) {
        if self.quiet.is_some() && crate::sys::fork::generation() == self.generation {
            self.driver.quiet_event_fd(false);
        }
    }
}

impl SubmitRole {
    /// `IoContext::rearm_event` by the poller, which records a drain.
    fn rearm_event<S: Slot>(
        &mut self,
        ctx: &IoContext<S>,
        drain: bool,
        ready: impl FnOnce() -> bool,
    ) -> bool {
        if drain {
            self.left_readable = false;
        }
        ctx.rearm_event(drain, ready)
    }

    /// POLLED, by a poller about to return: makes the event fd readable when the
    /// engine's earliest timer (`IoContext::next_wake_ns`) falls due, through the
    /// driver's timer (`Driver::arm_timer`). The kernel is asked only when that time moved
    /// earlier than the armed one or the armed one fired: an engine without timers never
    /// pays a syscall for this, one with deadlines one per earlier deadline or firing.
    /// A timer armed for a time that is no longer needed (its request was dispatched
    /// or cancelled) fires anyway: one spurious wake-up. False when the kernel refused.
    fn arm_timer<D: Driver>(&mut self, ctx: &IoContext<D::Slot>, driver: &D) -> bool {
        if driver.take_timer_fired() {
            self.timer_at = None;
        }
        let Some(due) = ctx.next_wake_ns() else {
            return true;
        };
        if self.timer_at.is_some_and(|armed| armed <= due) {
            return true;
        }
        let armed = driver.arm_timer(due);
        if armed {
            self.timer_at = Some(due);
        }
        armed
    }

    /// Whether the event fd may hold a count: after completions were taken, a sleep on
    /// the fd, or a submitting thread's signal since the last drain. Records the drain it
    /// allows.
    fn must_drain<S: Slot>(&mut self, ctx: &IoContext<S>) -> bool {
        let epoch = ctx.reap_epoch();
        let must = ctx.wakeup().take_written() | (self.drained_at != Some(epoch));
        self.drained_at = Some(epoch);
        must
    }
}

/// `ioeng_close` in POLLED mode, after `begin_close`: dispatches and completes everything
/// accepted on the calling thread. A poll that took the role after `begin_close` lets go
/// of it at once (see `poll`), so waiting for the role here is brief.
pub(crate) fn drain<D: Driver>(shared: &Shared<D>) {
    let (ctx, driver) = (&shared.ctx, &shared.driver);
    let mut held = lock(&shared.submit);
    let held = &mut *held;
    let _serving = ctx.serve_here();
    ctx.wakeup().poller_running();
    loop {
        submit_ready(ctx, driver, &mut held.round, &mut held.reaped);
        driver.run_deferred();
        let in_flight = ctx.kernel_has_work();
        match ctx.next_wake() {
            // A timer (a queued deadline, a sweep of in-flight transfers) must not wait
            // for a completion that may never come.
            Some(at) if in_flight => {
                if reap_step(ctx, driver, &mut held.reaped, false) == 0 {
                    let left = at.saturating_duration_since(Instant::now());
                    if driver.wait_event(Some(left)).is_none() {
                        reap_step(ctx, driver, &mut held.reaped, true);
                    } else if driver.take_wake_fired()
                        && let Some(event) = ctx.event_fd()
                    {
                        // The wait also ends when the event fd is readable; drained, it
                        // does not end the next one at once.
                        event.drain();
                    }
                }
            }
            _ => {
                reap_step(ctx, driver, &mut held.reaped, in_flight);
            }
        }
        if ctx.drained_for_close() {
            return;
        }
        if !ctx.kernel_has_work() && !ctx.has_control_work() {
            // Nothing in the kernel to wait for and no cancel to run (a callback may have
            // cancelled): what is left waits for a timer (a delayed resubmission, a
            // class's refill, a queued deadline), which must be slept until, not spun on.
            let retry = held.round.next_retry().map(crate::sys::instant_of);
            if let Some(at) = [retry, ctx.next_wake()].into_iter().flatten().min() {
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
            }
        }
    }
}
