//! Raw kernel interfaces: ABI structs and syscalls. The only place `libc::syscall` is
//! called; the drivers above build safe-ish operations on these.

pub(crate) mod aio;
pub(crate) mod dio;
pub(crate) mod fd;
pub(crate) mod fork;
pub(crate) mod range;
#[cfg(test)]
pub(crate) mod scratch;
pub(crate) mod timerfd;
pub(crate) mod uring;
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
    // An engine thread runs libioeng's code only (callbacks lift this: `tsan::unignored`).
    let spawned = Builder::new().name(name.to_owned()).spawn(move || {
        let _ignored = crate::tsan::Ignored::new();
        body()
    });
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

/// This thread, by a number no other thread of the process ever gets (never 0): unlike
/// `pthread_self` or the address of a thread-local, which a new thread may reuse after
/// one exits, so an exited thread's role (the io_uring issuer, the polling thread of
/// IOENG_CONFIG_POLL_AFTER_SUBMIT) is never mistaken for a new thread's.
pub(crate) fn thread_token() -> u64 {
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    thread_local! {
        static TOKEN: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    TOKEN.with(|token| {
        if token.get() == 0 {
            // Relaxed: only uniqueness matters, which the read-modify-write gives.
            token.set(LAST.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1);
        }
        token.get()
    })
}

/// `CLOCK_MONOTONIC` now, in nanoseconds (the clock of `ioeng_req_t.deadline_ns`).
pub(crate) fn monotonic_ns() -> u64 {
    clock_ns(libc::clock_gettime, libc::CLOCK_MONOTONIC).unwrap_or(0)
}

/// `CLOCK_MONOTONIC_COARSE` now, in nanoseconds: CLOCK_MONOTONIC as of the last tick, read
/// in about 3 ns where the precise clock takes about 20 (a VM, vDSO both), for checks
/// made on every submit step that only need to know whether a time is near.
pub(crate) fn monotonic_coarse_ns() -> u64 {
    clock_ns(libc::clock_gettime, libc::CLOCK_MONOTONIC_COARSE).unwrap_or(0)
}

/// How far [`monotonic_coarse_ns`] may be behind [`monotonic_ns`] on a running thread:
/// twice its resolution (one tick), so a check by the coarse clock is never late.
pub(crate) fn coarse_lag_ns() -> u64 {
    static LAG: once_cell::sync::Lazy<u64> = once_cell::sync::Lazy::new(|| {
        // 10 ms: HZ=100, the coarsest tick Linux has.
        2 * clock_ns(libc::clock_getres, libc::CLOCK_MONOTONIC_COARSE).unwrap_or(10_000_000)
    });
    *LAG
}

/// `call(clock, &ts)` (clock_gettime or clock_getres) in nanoseconds; `None` if it failed
/// (never for the clocks above, which exist on every kernel libioeng runs on).
fn clock_ns(
    call: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
    clock: libc::clockid_t,
) -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is valid writable storage for the one timespec either call writes.
    let rc = unsafe { call(clock, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// The `Instant` at CLOCK_MONOTONIC `ns` (`Instant` reads CLOCK_MONOTONIC too).
pub(crate) fn instant_of(ns: u64) -> std::time::Instant {
    let from_now = ns.saturating_sub(monotonic_ns());
    std::time::Instant::now() + std::time::Duration::from_nanos(from_now)
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

/// An eventfd (non-blocking, close-on-exec): the POLLED engine's readiness signal. The
/// kernel adds to it for each completion (io_uring `IORING_REGISTER_EVENTFD`, AIO
/// `IOCB_FLAG_RESFD`) and submitting threads add to it for new work.
pub(crate) struct EventFd(std::os::fd::OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        Ok(EventFd(unsafe {
            <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
        }))
    }

    pub(crate) fn raw(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }

    /// Makes the fd readable. (EAGAIN, a counter at its maximum, is already readable.)
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let _ = unsafe { libc::write(self.raw(), (&raw const one).cast(), 8) };
    }

    /// Resets the counter to zero (no longer readable until the next signal).
    pub(crate) fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; EAGAIN (already zero) is fine.
        let _ = unsafe { libc::read(self.raw(), (&raw mut value).cast(), 8) };
    }

    /// Whether the fd is readable now (a zero-timeout poll; the count stays).
    pub(crate) fn is_readable(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no timeout: poll only writes `revents`.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        rc > 0 && pfd.revents & libc::POLLIN != 0
    }

    /// Sleeps in the kernel until the fd is readable or `timeout` passed (`None`: no
    /// limit). `Err(EINTR)` when a signal interrupted the wait.
    pub(crate) fn wait(&self, timeout: Option<std::time::Duration>) -> Result<(), i32> {
        let mut pfd = libc::pollfd {
            fd: self.raw(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        // SAFETY: one valid pollfd; `ts_ptr` is NULL or points to a live timespec; a NULL
        // sigmask keeps the thread's mask.
        let rc = unsafe { libc::ppoll(&mut pfd, 1, ts_ptr, std::ptr::null()) };
        if rc < 0 { Err(last_errno()) } else { Ok(()) }
    }
}

/// Pins the thread behind `handle` to `cpu` (`pthread_setaffinity_np`); the errno when
/// the kernel refuses (EINVAL: offline or outside the allowed set).
pub(crate) fn pin_thread<T>(handle: &JoinHandle<T>, cpu: usize) -> Result<(), i32> {
    use std::os::unix::thread::JoinHandleExt;
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(libc::EINVAL);
    }
    // SAFETY: cpu_set_t is plain bits; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE` (checked above), so the bit lies inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: the pthread_t is live (the JoinHandle is not joined) and `set` is a valid
    // cpu_set_t of the size passed.
    let rc = unsafe {
        libc::pthread_setaffinity_np(
            handle.as_pthread_t(),
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        )
    };
    if rc == 0 { Ok(()) } else { Err(rc) }
}

/// How many CPUs the calling thread may run on (1 when that cannot be read).
pub(crate) fn allowed_cpus() -> usize {
    // SAFETY: cpu_set_t is plain bits; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable for the size passed; pid 0 is the calling thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return 1;
    }
    // SAFETY: `set` is an initialized cpu_set_t.
    (unsafe { libc::CPU_COUNT(&set) }).max(1) as usize
}

/// The read end of a new pipe whose write end is already closed (close-on-exec): a file
/// on which a read of 0 bytes completes at once, on every kernel and through every
/// interface (pipe_read: "null read succeeds"). The AIO helper's stand-in iocbs read it.
pub(crate) fn null_read_fd() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else; each is
    // wrapped once, and dropping the write end closes it.
    let (read, _write) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    Ok(read)
}
