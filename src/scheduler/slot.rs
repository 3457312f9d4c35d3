//! The per-request storage a driver keeps while the kernel may touch an IO.

use super::tasks::IoEvent;

/// One slot of the engine's `depth` (see `common::Budget` for who may touch it when).
pub(crate) trait Slot: Default + Send {
    /// Whether this backend may hold a transfer forever that read(2) would refuse (see
    /// `super::stuck`), so in-flight transfers must be swept.
    const PROBE_STUCK_TRANSFERS: bool = false;

    /// Whether this backend's kernel interface cancels an IO on its own, without anyone
    /// asking (io_uring: when no io-wq worker can be started for it under a pids limit,
    /// when the thread that submitted it exits), so that such an `-ECANCELED` is retried
    /// (`IoEvent::retry_kernel_cancel`). Linux AIO never does: there every `-ECANCELED`
    /// nobody asked for is the file's own error.
    const KERNEL_CANCELS_ON_ITS_OWN: bool = false;

    /// The request occupying this slot (`None` while the slot is free).
    fn event_mut(&mut self) -> &mut Option<IoEvent>;
}
