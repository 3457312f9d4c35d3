//! Fork detection without a syscall per call: a `pthread_atfork` child handler bumps a
//! process-wide generation; an engine records the generation it was opened in, and a
//! different one means "this is a forked child holding a copy of the parent's engine".
//! The same generation tells whether this thread is an engine thread of *this* process
//! (a child forked from a callback is a copy of an engine thread, but none itself), and
//! whether a callback forked (see `after_callback`).

use std::cell::Cell;
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

thread_local! {
    /// The generation in which this thread became an engine thread; `u64::MAX`: never.
    static ENGINE_THREAD_OF: Cell<u64> = const { Cell::new(u64::MAX) };
}

/// Marks the calling thread as an engine thread (THREADS mode) of this process.
pub(crate) fn mark_engine_thread() {
    ENGINE_THREAD_OF.set(generation());
}

/// Whether the calling thread is an engine thread of this process. In a child forked
/// from a callback the copied thread is not: it may open, use and close engines.
pub(crate) fn on_engine_thread() -> bool {
    ENGINE_THREAD_OF.get() == generation()
}

/// The unwind payload that takes a child forked inside a POLLED callback out of
/// `ioeng_poll`/`ioeng_close` (the FFI turns it into -ESRCH).
pub(crate) struct ForkedInCallback;

/// Called after every callback with the generation read before it. Unchanged: returns.
/// Changed: the callback called fork() and returned in the child, where the engine is
/// the parent's copy. The child must touch nothing of it (an io_uring ring is memory
/// shared with the parent: reaping there would steal the parent's completions), so:
/// - on an engine thread there is nowhere to return to: the child ends, `_exit(0)`;
/// - on the caller's thread (POLLED: inside `ioeng_poll` or `ioeng_close`) it unwinds
///   out of the call without running anything else, and the call returns -ESRCH.
pub(crate) fn after_callback(before: u64) {
    if generation() == before {
        return;
    }
    if ENGINE_THREAD_OF.get() == before {
        // SAFETY: `_exit` ends the process without running atexit handlers or
        // destructors, none of which could run safely in a copy of another process's
        // engine thread.
        unsafe { libc::_exit(0) };
    }
    std::panic::resume_unwind(Box::new(ForkedInCallback));
}
