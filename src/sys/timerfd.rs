//! A timerfd on CLOCK_MONOTONIC: the AIO driver's POLLED timer (see
//! `scheduler::aio_timer`), which makes the event fd readable when a deadline, a delayed
//! retry or a token refill falls due.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::last_errno;

pub(crate) struct TimerFd(OwnedFd);

impl TimerFd {
    /// A disarmed timer (non-blocking, close-on-exec).
    pub(crate) fn new() -> Result<Self, i32> {
        // SAFETY: timerfd_create takes no pointers; a non-negative result is a new fd
        // that nobody else owns.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: `fd` was just returned by timerfd_create and is owned by nobody else.
        Ok(TimerFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Arms the timer to expire once at CLOCK_MONOTONIC `at_ns` (at once if that has
    /// passed). Setting the timer also clears an expiry nobody read, so the fd is not
    /// readable again before `at_ns`.
    pub(crate) fn set_at(&self, at_ns: u64) -> Result<(), i32> {
        // 0 would disarm the timer; 1 ns is as good as "now".
        let at_ns = at_ns.max(1);
        let value = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (at_ns / 1_000_000_000).min(i64::MAX as u64) as libc::time_t,
                tv_nsec: (at_ns % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: `value` is a live itimerspec; a NULL old value is allowed.
        let rc = unsafe {
            libc::timerfd_settime(
                self.raw(),
                libc::TFD_TIMER_ABSTIME,
                &value,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 { Err(last_errno()) } else { Ok(()) }
    }
}
