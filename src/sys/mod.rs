//! Raw kernel interfaces: ABI structs and syscalls. The only place `libc::syscall` is
//! called; the drivers above build safe-ish operations on these.

pub(crate) mod aio;
pub(crate) mod fd;
pub(crate) mod fork;
pub(crate) mod valgrind;

use std::io;
use std::thread::{Builder, JoinHandle};

/// Signals raised synchronously by a fault in the running thread (e.g. in a callback).
/// They stay deliverable on engine threads: the kernel delivers a blocked fault signal
/// by resetting its handler and killing the process, which would defeat an
/// application's SIGSEGV/SIGBUS handler.
const FAULT_SIGNALS: [libc::c_int; 6] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGFPE,
    libc::SIGILL,
    libc::SIGTRAP,
    libc::SIGSYS,
];

/// Spawns a thread that starts with every asynchronous signal blocked, so signals sent
/// to the process run the application's handlers on the application's threads, never
/// on ours (and our blocking syscalls see fewer EINTRs). The mask is set in the parent
/// around `spawn` so the new thread never runs a single instruction unmasked.
pub(crate) fn spawn_signals_blocked<F>(name: &str, body: F) -> io::Result<JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let mut blocked = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    let mut previous = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigfillset initializes the set it is given.
    unsafe { libc::sigfillset(blocked.as_mut_ptr()) };
    for signal in FAULT_SIGNALS {
        // SAFETY: `blocked` was initialized by sigfillset; `signal` is a valid number.
        unsafe { libc::sigdelset(blocked.as_mut_ptr(), signal) };
    }
    // SAFETY: both pointers are valid sigset_t storage; `blocked` is initialized.
    let rc =
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, blocked.as_ptr(), previous.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    let spawned = Builder::new().name(name.to_owned()).spawn(body);
    // SAFETY: `previous` was filled by the successful pthread_sigmask call above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, previous.as_ptr(), std::ptr::null_mut()) };
    spawned
}

/// The (positive) errno of the last failed libc call.
pub(crate) fn last_errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock of `ioeng_req_t.deadline_ns`).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid writable storage; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `IORING_ENTER_GETEVENTS`: make `io_uring_enter` wait for `min_complete` completions.
pub(crate) const IORING_ENTER_GETEVENTS: u32 = 1;

/// A kernel call failed in a way only a libioeng bug can cause (bad context or pointer).
/// Says so on stderr (once per process, to keep a log readable) and sleeps 1 ms so a
/// retry loop around it cannot spin a core.
pub(crate) fn report_unexpected(call: &str, errno: i32) {
    static REPORTED: std::sync::Once = std::sync::Once::new();
    REPORTED.call_once(|| {
        let err = io::Error::from_raw_os_error(errno);
        eprintln!("libioeng: unexpected {call} failure: {err}; retrying (please report)");
    });
    std::thread::sleep(std::time::Duration::from_millis(1));
}
