//! The AIO driver's POLLED timer (docs/ARCHITECTURE.md, "Timers"): a timerfd on
//! CLOCK_MONOTONIC watched by one `IOCB_CMD_POLL` with `IOCB_FLAG_RESFD`, so that its
//! expiry completes the poll and the completion makes the engine's event fd readable
//! like any other. Kept apart from the transfer path: its iocb is the driver's own (not
//! a slot's), carries [`TIMER_DATA`] as `aio_data`, and its completion never leaves the
//! driver. Only the poller (holding both roles) touches it.

use std::cell::UnsafeCell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use crate::error::Error;
use crate::sys::aio::{self as kernel, AioContextId, Iocb};
use crate::sys::report_unexpected;
use crate::sys::timerfd::TimerFd;

/// `aio_data` of the timer's poll: no slot index (below 32768), and without the bit that
/// marks the helper's stand-ins (`aio_helper`, bit 63), so it comes out of
/// `stand_in_result` unchanged and `take_completion` recognises it.
pub(crate) const TIMER_DATA: u64 = 1 << 62;

pub(crate) struct AioTimer {
    timer: TimerFd,
    /// The `IOCB_CMD_POLL` on `timer`, filled once. Boxed: the kernel reads it (and
    /// writes its `aio_key`) inside `io_submit`, at an address that must not move.
    iocb: Box<UnsafeCell<Iocb>>,
    /// Whether the poll is in the kernel (set by `arm`, cleared when its completion is
    /// reaped). Poller only: Relaxed.
    armed: AtomicBool,
    /// Set when the poll's completion (the timer expired) was reaped; taken by
    /// `take_fired`. Poller only: Relaxed.
    fired: AtomicBool,
}

// SAFETY: `iocb` is written only by the kernel inside `io_submit`, which only the poller
// calls (`arm`), one thread at a time (the Driver contract gives it both roles); the rest
// is an fd and atomics.
unsafe impl Sync for AioTimer {}

impl AioTimer {
    /// A disarmed timer whose expiry signals `event_fd`.
    pub(crate) fn new(event_fd: RawFd) -> Result<Self, Error> {
        let timer = TimerFd::new().map_err(|errno| Error::Kernel {
            call: "timerfd_create",
            errno,
        })?;
        let iocb = Iocb {
            aio_data: TIMER_DATA,
            aio_lio_opcode: kernel::IOCB_CMD_POLL,
            aio_fildes: timer.raw() as u32,
            // IOCB_CMD_POLL takes the poll events in `aio_buf`.
            aio_buf: libc::POLLIN as u64,
            aio_flags: kernel::IOCB_FLAG_RESFD,
            aio_resfd: event_fd as u32,
            ..Iocb::default()
        };
        Ok(AioTimer {
            timer,
            iocb: Box::new(UnsafeCell::new(iocb)),
            armed: AtomicBool::new(false),
            fired: AtomicBool::new(false),
        })
    }

    /// `Driver::arm_timer`: sets the timerfd to `at_ns` (which also clears an expiry
    /// nobody read), and puts the poll into the kernel unless it is there already (then
    /// it simply waits for the new time).
    pub(crate) fn arm(&self, id: AioContextId, at_ns: u64) -> bool {
        if let Err(errno) = self.timer.set_at(at_ns) {
            report_unexpected("timerfd_settime", errno);
            return false;
        }
        // If the timer expired before `set_at`, the poll's completion is in the ring and
        // keeps the event fd readable; reaped, it clears `armed` and the next poll arms
        // again.
        if self.armed.load(Relaxed) {
            return true;
        }
        let ptrs = [self.iocb.get()];
        // SAFETY: the iocb is initialized, references no memory (a poll on our timerfd)
        // and lives in the box until the driver, after io_destroy, drops it; the kernel
        // does not hold it (`armed` is false).
        match unsafe { kernel::io_submit(id, &ptrs) } {
            Ok(1) => {
                self.armed.store(true, Relaxed);
                true
            }
            // Out of resources for now: the next poll tries again.
            Ok(_) | Err(libc::EAGAIN | libc::EINTR) => false,
            Err(errno) => {
                report_unexpected("io_submit(IOCB_CMD_POLL timerfd)", errno);
                false
            }
        }
    }

    /// Reap role: whether the completion with `aio_data` `data` is the timer's (which
    /// then fired and is no longer armed).
    pub(crate) fn take_completion(&self, data: u64) -> bool {
        if data != TIMER_DATA {
            return false;
        }
        self.armed.store(false, Relaxed);
        self.fired.store(true, Relaxed);
        true
    }

    /// `Driver::take_timer_fired`.
    pub(crate) fn take_fired(&self) -> bool {
        self.fired.swap(false, Relaxed)
    }

    /// Whether the poll's completion was reaped and `take_fired` has not run since.
    pub(crate) fn fired(&self) -> bool {
        self.fired.load(Relaxed)
    }
}
