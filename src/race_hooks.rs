//! Race hooks for deterministic tests (cargo feature `race-hooks`; compiled out
//! otherwise, where [`at`] is an empty inline function).
//!
//! Each [`Point`] names a place where two threads race: between a step that publishes
//! some state and the step that makes it visible or acts on it. A test build registers
//! one C function with `ioeng_debug_race_hook`; the engine calls it at every point with
//! the point's number, on whatever thread reaches it. The test can then do there what
//! another thread would do by bad luck (cancel, poll, sleep, wait until a thread parks),
//! so the race happens on every run instead of once in a million.
//! `c_tests/test_races.c` drives them (docs/ARCHITECTURE.md, "Testing races").

/// The places a test can stop the engine at. The numbers are part of the test ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
#[cfg_attr(not(feature = "race-hooks"), allow(dead_code))]
pub(crate) enum Point {
    /// `IoContext::service` took requests that cancel or expiry removed from the
    /// queues, and is about to run their callbacks.
    ServiceTookDead = 1,
    /// The submit step ran its housekeeping (`service`) and is about to fill a round.
    AfterService = 2,
    /// Expiry removed requests from the queues and is about to hand them on for their
    /// callbacks (queue lock held).
    ExpiredBeforeBury = 3,
    /// `IoContext::service` timed out queued requests; their callbacks have not run yet
    /// (no lock held).
    ServiceExpired = 4,
    /// THREADS submitter: it let go of the submit role after a step that submitted
    /// nothing and is about to decide whether to sleep.
    SubmitterIdle = 5,
    /// POLLED close: the check that no poller runs passed; close is about to drain.
    PolledCloseChecked = 6,
    /// Completions were reaped and are about to be settled (their slots are still busy).
    Reaped = 7,
    /// The AIO helper thread ran a command and is about to submit its stand-in iocb (it
    /// holds the slot; no lock held).
    HelperRan = 8,
    /// POLLED `ioeng_poll`: its last reap is done and the event fd is still quiet (the
    /// kernel does not signal it for completions); the poll is about to make it loud
    /// and decide whether work is left.
    PollEnding = 9,
    /// POLLED `ioeng_poll`, just after `PollEnding`: the event fd is loud again (a
    /// completion now signals it) and about to be drained before the last check for work.
    PollLoud = 10,
    /// THREADS submitter: it found nothing to do and read the timer it will sleep on
    /// (`next_wake_ns`), and is about to announce that sleep and park.
    SubmitterParking = 11,
    /// POLLED `ioeng_poll`, returning while nobody watched the event fd: it recorded
    /// whether work remains and is about to check again that nobody watches the fd
    /// (`ioeng_event_fd`) before it leaves the fd as it is.
    PollUnwatched = 12,
}

#[cfg(feature = "race-hooks")]
mod imp {
    use std::ffi::c_void;
    use std::sync::Mutex;

    pub(super) type Hook = unsafe extern "C" fn(ctx: *mut c_void, point: u32);

    struct Registered(Hook, *mut c_void);
    // SAFETY: the test that registers the hook promises that it may run on any thread.
    unsafe impl Send for Registered {}

    static HOOK: Mutex<Option<Registered>> = Mutex::new(None);

    pub(super) fn set(hook: Option<Hook>, ctx: *mut c_void) {
        let mut slot = HOOK.lock().unwrap_or_else(|e| e.into_inner());
        *slot = hook.map(|hook| Registered(hook, ctx));
    }

    pub(super) fn call(point: u32) {
        // Copied out so that the hook runs without the lock (it may take a while, and
        // may reach another point on another thread meanwhile).
        let hook = HOOK
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| (r.0, r.1));
        if let Some((hook, ctx)) = hook {
            // SAFETY: a C function registered by the test for exactly this call.
            unsafe { hook(ctx, point) };
        }
    }
}

/// Calls the test's hook at `point` (nothing without the `race-hooks` feature).
#[inline(always)]
pub(crate) fn at(point: Point) {
    #[cfg(feature = "race-hooks")]
    imp::call(point as u32);
    #[cfg(not(feature = "race-hooks"))]
    let _ = point;
}

/// Test builds only: registers `hook` (NULL: none), called as `hook(ctx, point)` at
/// every [`Point`]. Not in `include/ioeng.h`; `c_tests/test_races.c` declares it.
///
/// # Safety
/// `hook` must be callable from any engine or caller thread with `ctx` until replaced.
#[cfg(feature = "race-hooks")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_debug_race_hook(hook: Option<imp::Hook>, ctx: *mut c_void) {
    imp::set(hook, ctx);
}

#[cfg(feature = "race-hooks")]
use std::ffi::c_void;
