//! The per-request storage a driver keeps while the kernel may touch an IO.

use super::tasks::IoEvent;

/// One slot of the engine's `depth` (see `common::Budget` for who may touch it when).
pub(crate) trait Slot: Default + Send {
    /// Whether this backend may hold a transfer forever that read(2) would refuse (see
    /// `super::stuck`), so in-flight transfers must be swept.
    const PROBE_STUCK_TRANSFERS: bool = false;

    /// The request occupying this slot (`None` while the slot is free).
    fn event_mut(&mut self) -> &mut Option<IoEvent>;
}
