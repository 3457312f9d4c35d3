//! What the kernel holds: the IOs it accepted and has not completed, counted so that the
//! completer waits in the kernel only while there is something to wait for.

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64};

#[derive(Default)]
pub(crate) struct InFlight {
    /// IOs the kernel accepted and the completer has not yet reaped. Briefly negative
    /// when a completion is reaped before the submitter published its acceptance, so it
    /// never overstates what the kernel holds: the completer only waits in the kernel
    /// while it is positive, and then an IO is really there to wait for.
    pub(crate) kernel: AtomicIsize,
    /// Control IOs (io_uring `ASYNC_CANCEL`) the kernel accepted and the completer has not
    /// yet reaped; like `kernel`, which counts requests' IOs only (what `Stats::in_flight`
    /// reports: at most `depth`).
    pub(crate) control: AtomicIsize,
    /// Bumped after every reap; the submitter waits for it to move on EAGAIN.
    pub(crate) reap_epoch: AtomicU64,
    /// Set by the submitter as it exits; the completer stops once it sees this and no IO
    /// is left in the kernel.
    pub(crate) submitter_exited: AtomicBool,
}
