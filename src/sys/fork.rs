//! Fork detection without a syscall per call: a `pthread_atfork` child handler bumps a
//! process-wide generation; an engine records the generation it was opened in, and a
//! different one means "this is a forked child holding a copy of the parent's engine".

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

static GENERATION: AtomicU64 = AtomicU64::new(0);

extern "C" fn in_child() {
    // The child has one thread at this point; Relaxed is enough.
    GENERATION.fetch_add(1, Relaxed);
}

/// Installs the handler (once per process); call before recording a generation.
pub(crate) fn watch() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: registers a plain function with no prepare/parent handler; it only
        // touches an atomic. Fails only with ENOMEM, and then forks go unnoticed,
        // which is how it was before; there is nothing better to do.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

/// How many forks separate this process from the original (0 in the original).
pub(crate) fn generation() -> u64 {
    GENERATION.load(Relaxed)
}
