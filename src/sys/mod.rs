//! Raw kernel interfaces: ABI structs and syscalls. The only place `libc::syscall` is
//! called; the drivers above build safe-ish operations on these.

pub(crate) mod aio;

use std::io;
use std::thread::{Builder, JoinHandle};

/// Spawns a thread that starts with every signal blocked, so signals sent to the process
/// run the application's handlers on the application's threads, never on ours (and our
/// blocking syscalls see fewer EINTRs). The mask is set in the parent around `spawn` so
/// the new thread never runs a single instruction unmasked.
pub(crate) fn spawn_signals_blocked<F>(name: &str, body: F) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let mut all = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut previous = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initializes the set it is given.
    unsafe { libc::sigfillset(all.as_mut_ptr()) };
    // SAFETY: both pointers are valid sigset_t storage; `all` was initialized above.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, all.as_ptr(), previous.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let spawned = Builder::new().name(name.to_owned()).spawn(body);
    // SAFETY: `previous` was filled by the successful pthread_sigmask call above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, previous.as_ptr(), std::ptr::null_mut()) };
    spawned
}

/// `-errno` of the last failed libc call.
pub(crate) fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `IORING_ENTER_GETEVENTS`: make `io_uring_enter` wait for `min_complete` completions.
pub(crate) const IORING_ENTER_GETEVENTS: u32 = 1;
