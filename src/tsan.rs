//! ThreadSanitizer annotations: tell TSan about the ordering libioeng guarantees.
//!
//! libioeng is not TSan-instrumented, and its synchronization (atomics, futex-based
//! locks, kernel rings) is invisible to TSan. Without help, a correct program built with
//! `-fsanitize=thread` gets a false race report between what it wrote before
//! `ioeng_submit` and what its callback reads on an engine thread, or between two
//! callbacks (which the engine runs one at a time, possibly on different threads).
//!
//! When the process runs under TSan, its runtime exports `__tsan_acquire` and
//! `__tsan_release`; they are looked up once with `dlsym` (no link-time dependency, so
//! the same library serves normal and TSan programs). Then:
//! - accepting a request does `release(&SYNC)` on the submitting thread;
//! - running a callback does `acquire(&SYNC)` before and `release(&SYNC)` after it.
//!
//! So everything a thread did before `ioeng_submit` happens-before every later callback,
//! and each callback happens-before the next one. One address serves every engine: this
//! orders callbacks of different engines too, which is more than the engine promises, so
//! TSan can miss a race between two engines' callbacks but never reports a false one.
//! Besides, libioeng's own memory traffic is hidden from TSan (see `Ignored`): its heap
//! buffers move between threads under std mutexes, which TSan cannot see.
//! Without TSan each hook costs one atomic load and a branch.

use std::cell::Cell;
use std::ffi::c_void;
use std::sync::OnceLock;

type Hook = unsafe extern "C" fn(*mut c_void);

/// `__tsan_ignore_thread_begin` / `_end`: `void f(void)`.
type Plain = unsafe extern "C" fn();

struct Hooks {
    acquire: Hook,
    release: Hook,
    /// Absent from older runtimes; then nothing is ignored.
    ignore: Option<(Plain, Plain)>,
}

/// The synchronization object TSan keys its happens-before clock on (any stable address
/// in ordinary memory works; TSan never reads or writes it).
static SYNC: u64 = 0;

static HOOKS: OnceLock<Option<Hooks>> = OnceLock::new();

fn lookup(name: &std::ffi::CStr) -> Option<Hook> {
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only searches the loaded
    // objects; it returns NULL when the symbol is absent.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: the TSan runtime defines both names as `void f(void *addr)`
    // (sanitizer/tsan_interface.h); a non-null result is that function.
    Some(unsafe { std::mem::transmute::<*mut c_void, Hook>(p) })
}

fn lookup_plain(name: &std::ffi::CStr) -> Option<Plain> {
    let p = lookup(name)?;
    // SAFETY: the TSan runtime defines both ignore functions as `void f(void)`
    // (sanitizer/tsan_interface.h).
    Some(unsafe { std::mem::transmute::<Hook, Plain>(p) })
}

fn hooks() -> Option<&'static Hooks> {
    HOOKS
        .get_or_init(|| {
            Some(Hooks {
                acquire: lookup(c"__tsan_acquire")?,
                release: lookup(c"__tsan_release")?,
                ignore: lookup_plain(c"__tsan_ignore_thread_begin")
                    .zip(lookup_plain(c"__tsan_ignore_thread_end")),
            })
        })
        .as_ref()
}

thread_local! {
    /// How many `Ignored` scopes this thread is in (each one ignore level in TSan).
    static IGNORING: Cell<u32> = const { Cell::new(0) };
}

/// While alive, TSan ignores this thread's memory accesses, which in this uninstrumented
/// library are only the allocator's and libc's intercepted calls: the heap buffers of
/// libioeng's queues and lists, handed between threads under `std::sync::Mutex` (a futex
/// TSan cannot see), would otherwise look unsynchronised. Memory allocated while ignored
/// has its shadow cleared, so freeing it later on another thread is no race either.
/// Every C entry point and every engine thread runs in one; `Callback::invoke` lifts it
/// for the callback, which is the user's code.
pub(crate) struct Ignored(());

impl Ignored {
    pub(crate) fn new() -> Self {
        if let Some((begin, _)) = hooks().and_then(|h| h.ignore) {
            IGNORING.with(|n| n.set(n.get() + 1));
            // SAFETY: a TSan runtime function without arguments.
            unsafe { begin() }
        }
        Ignored(())
    }
}

impl Drop for Ignored {
    fn drop(&mut self) {
        if let Some((_, end)) = hooks().and_then(|h| h.ignore) {
            IGNORING.with(|n| n.set(n.get() - 1));
            // SAFETY: as in `new`, which began the level this ends.
            unsafe { end() }
        }
    }
}

/// Runs `f` (a callback) with every `Ignored` level of this thread lifted.
pub(crate) fn unignored<R>(f: impl FnOnce() -> R) -> R {
    let Some((begin, end)) = hooks().and_then(|h| h.ignore) else {
        return f();
    };
    let depth = IGNORING.with(|n| n.replace(0));
    for _ in 0..depth {
        // SAFETY: ends a level this thread began (`Ignored::new`).
        unsafe { end() }
    }
    let result = f();
    for _ in 0..depth {
        // SAFETY: as above.
        unsafe { begin() }
    }
    IGNORING.with(|n| n.set(depth));
    result
}

fn sync_addr() -> *mut c_void {
    std::ptr::addr_of!(SYNC).cast_mut().cast()
}

/// On the submitting thread, before a request is handed to the engine.
pub(crate) fn release() {
    if let Some(h) = hooks() {
        // SAFETY: a TSan runtime function taking an address it only uses as a key.
        unsafe { (h.release)(sync_addr()) }
    }
}

/// Before a callback runs.
pub(crate) fn acquire() {
    if let Some(h) = hooks() {
        // SAFETY: as in `release`.
        unsafe { (h.acquire)(sync_addr()) }
    }
}
