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
//! Without TSan each hook costs one atomic load and a branch.

use std::ffi::c_void;
use std::sync::OnceLock;

type Hook = unsafe extern "C" fn(*mut c_void);

struct Hooks {
    acquire: Hook,
    release: Hook,
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

fn hooks() -> Option<&'static Hooks> {
    HOOKS
        .get_or_init(|| {
            Some(Hooks {
                acquire: lookup(c"__tsan_acquire")?,
                release: lookup(c"__tsan_release")?,
            })
        })
        .as_ref()
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
