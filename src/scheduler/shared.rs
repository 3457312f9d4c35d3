//! What an engine's threads (or its poller) share with the handle: the driver, the
//! context, the submit role and the idle policy.

use std::sync::Mutex;

use super::context::IoContext;
use super::driver::Driver;
use super::idle::PollPolicy;
use super::round::SubmitRound;
use crate::error::{Error, try_with_capacity};

/// State the engine's threads (or its poller) share with the handle.
///
/// `driver` is declared first so it drops first: its kernel context is torn down (and, for
/// AIO, `io_destroy` waits for any IO still in flight) before the slots in `ctx`, which
/// the kernel may point into, are freed, and before the event fd in `ctx` is closed.
pub(crate) struct Shared<D: Driver> {
    pub(crate) driver: D,
    pub(crate) ctx: IoContext<D::Slot>,
    /// The submit role (see `Driver`): the THREADS submitter takes it for each step, the
    /// completer when its callbacks queued work, a POLLED poller for the whole poll.
    pub(crate) submit: Mutex<SubmitRole>,
    pub(crate) policy: PollPolicy,
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
    /// POLLED: when the driver's timer is armed to fire (CLOCK_MONOTONIC ns); `None`: not
    /// armed, or it fired (see `polled`, `arm_timer`).
    pub(crate) timer_at: Option<u64>,
}

impl SubmitRole {
    /// `OutOfMemory` when its lists sized by `batch` and `depth` cannot be allocated.
    pub(crate) fn new(batch: usize, depth: usize) -> Result<Self, Error> {
        Ok(SubmitRole {
            round: SubmitRound::new(batch)?,
            reaped: try_with_capacity(depth)?,
            drained_at: None,
            left_readable: false,
            timer_at: None,
        })
    }
}
