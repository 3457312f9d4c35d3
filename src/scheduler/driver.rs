//! The contract a kernel interface implements for the scheduler: `Driver` (the two
//! drivers are `aio::AioDriver` and `uring::UringDriver`).

use std::os::fd::RawFd;
use std::time::Duration;

use super::context::{IoContext, Slot};
use crate::error::Error;

/// A kernel interface (`open`, `register_buffers` and `register_files` run before any
/// request), split into two roles that may run on two threads at once without locks
/// between them: the *submit role* (`submit`, `run_deferred`) and the *reap role*
/// (`completions_ready`, `reap`). Each role is held by one thread at a time: in THREADS
/// mode the submit role by whoever holds the engine's submit lock (the submitter, or the
/// completer submitting what its callbacks queued), the reap role by the completer; in
/// POLLED mode the polling thread holds both.
pub(crate) trait Driver: Sized + Send + Sync + 'static {
    type Slot: Slot;

    /// Creates the kernel context for `depth` IOs in flight and `batch` per submit call.
    /// With `event_fd`, every completion also adds to that eventfd (POLLED mode).
    fn open(depth: u32, batch: u32, event_fd: Option<RawFd>) -> Result<Self, Error>;

    /// `open` for a POLLED engine whose caller promised IOENG_CONFIG_SINGLE_POLLER: one
    /// thread polls and closes. A driver that gains nothing from the promise opens as usual.
    fn open_single_poller(depth: u32, batch: u32, event_fd: RawFd) -> Result<Self, Error> {
        Self::open(depth, batch, Some(event_fd))
    }

    /// POLLED mode, by whoever takes the poller's role (a poll, or close), before it
    /// touches the kernel: false when this driver is tied to another thread (see
    /// `open_single_poller`); the first call ties it to the calling thread.
    fn bind_poller(&self) -> bool {
        true
    }

    /// Any thread, before the engine's first request: registers the buffers with the
    /// kernel for FIXED_BUF IO (io_uring), or does nothing (AIO only checks ranges).
    fn register_buffers(&self, _bufs: &[libc::iovec]) -> Result<(), i32> {
        Ok(())
    }

    /// Any thread, before the engine's first request: registers the engine's
    /// descriptors of the FIXED_FILE files with the kernel (io_uring), or does nothing
    /// (AIO submits on those descriptors).
    fn register_files(&self, _fds: &[RawFd]) -> Result<(), i32> {
        Ok(())
    }

    /// Submit role: asks the kernel to stop the IOs of the slots in
    /// `targets` (each handed over once per occupant; they may have completed since).
    /// Every IO still completes exactly once, with `-ECANCELED` or its own result; a
    /// completion the request itself does not own is reported as [`super::context::CONTROL_INDEX`]
    /// and must have been published with [`IoContext::kernel_submit_control`].
    fn cancel(&self, _ctx: &IoContext<Self::Slot>, _targets: &[usize]) {}

    /// Submit role: hands the slots in `batch` (each holding an event) to the kernel, in
    /// one call unless the kernel accepts only part of it. Every slot ends either accepted
    /// (reported with [`IoContext::kernel_submit`]) or finished with an error (through
    /// [`IoContext::fail_unsubmitted`]). When the kernel is out of resources for now it
    /// calls `busy`, which must let completions make progress, then retries.
    fn submit(&self, ctx: &IoContext<Self::Slot>, batch: &[usize], busy: &mut impl FnMut());

    /// Submit role, while it has nothing to submit: runs kernel work that only the
    /// submitting thread can run (io_uring task_work that posts completions). Returns
    /// whether it entered the kernel for it, i.e. whether it may have posted completions
    /// itself (others may still appear at any time, except on a DEFER_TASKRUN ring).
    fn run_deferred(&self) -> bool {
        false
    }

    /// Reap role: whether completions are ready to reap without entering the kernel;
    /// `None` when the driver cannot tell cheaply (then the completer does not poll for
    /// completions and waits in the kernel at once).
    fn completions_ready(&self) -> Option<bool> {
        None
    }

    /// POLLED mode, by the poller (both roles) as it starts (`true`) and ends (`false`):
    /// stops and restarts the kernel's signal of the event fd for each completion, so
    /// that a running poller, which sees completions itself, is not woken for them.
    /// `None`: this driver cannot, at least for this poll (the kernel signals, and the
    /// poller sleeps on the fd; the answer to `false` is then ignored). `Some(signalled)`: whether the kernel may have signalled the fd since
    /// the last poll ended (meaningful for `true`).
    fn quiet_event_fd(&self, _quiet: bool) -> Option<bool> {
        None
    }

    /// POLLED mode, by the poller while the event fd is quiet and IO is in flight:
    /// sleeps in the kernel until a completion, until the event fd becomes readable (a
    /// thread queued work), or until `timeout` (`None`: no limit). `Err(EINTR)`: a
    /// signal interrupted the wait. `None`: this driver cannot.
    fn wait_event(&self, _timeout: Option<Duration>) -> Option<Result<(), i32>> {
        None
    }

    /// POLLED mode, by the poller: whether `wait_event` saw the event fd readable since
    /// the last call (it then holds a count to drain).
    fn take_wake_fired(&self) -> bool {
        false
    }

    /// POLLED mode, by the poller (both roles): makes the event fd readable at
    /// CLOCK_MONOTONIC `at_ns` (at once if that passed), through a completion of the
    /// driver's own that `reap` keeps to itself: replaces the time of a timer still
    /// armed. Returns false when the kernel refused (the poller then tries again at the
    /// end of its next poll). Costs a syscall: the poller calls it only when the time
    /// moves earlier or the timer fired (`take_timer_fired`).
    fn arm_timer(&self, _at_ns: u64) -> bool {
        false
    }

    /// POLLED mode, by the poller: whether `reap` took the timer's completion since the
    /// last call (the timer is then disarmed).
    fn take_timer_fired(&self) -> bool {
        false
    }

    /// POLLED mode, by the poller: whether `reap` took a timer completion that also
    /// counted on the event fd and that `take_timer_fired` has not consumed yet: the fd
    /// then holds a count that no request's completion accounts for, which the poller
    /// must drain or the fd stays readable with nothing to do.
    fn timer_count_on_event_fd(&self) -> bool {
        false
    }

    /// In a forked child, instead of `drop`: releases what provably is the child's copy
    /// of the driver's kernel objects and leaves the rest. The child may have closed the
    /// inherited descriptors and reused their numbers for files of its own, which a
    /// close by number would then take from it. The default releases nothing (AIO
    /// contexts are not inherited; an fd left open costs the child one descriptor).
    ///
    /// # Safety
    /// Called once, in a forked child, by its only thread that knows the driver; the
    /// driver is never used or dropped afterwards.
    unsafe fn release_in_forked_child(&mut self) {}

    /// Reap role: appends `(slot index, res)` for each completion there is. With `wait`,
    /// first waits in the kernel until at least one IO completed (or a signal interrupted
    /// the wait); without, never blocks.
    fn reap(&self, ctx: &IoContext<Self::Slot>, out: &mut Vec<(usize, i64)>, wait: bool);
}
