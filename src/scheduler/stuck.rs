//! Transfers the kernel would hold forever: io_uring, unlike read(2), first asks a
//! pollable file without `FMODE_NOWAIT` whether it is ready and, if not, waits for
//! readiness; a file that has no read (or write) operation at all (an epoll fd, a pidfd)
//! then never completes, where read(2) fails with -EINVAL at once.
//!
//! Nothing is paid per request for this: dispatch records a transfer's fd and direction
//! per slot (two relaxed stores), and a sweep every [`SWEEP_INTERVAL_NS`], run by the holder
//! of the submit role while IO is in flight, probes each transfer that has been in flight
//! since the previous sweep, once, with a zero-length `preadv`/`pwritev` (read(2)'s checks
//! without moving data or blocking). One the probe says can never happen is cancelled
//! (`Driver::cancel`) and completes with the probe's error (docs/ARCHITECTURE.md,
//! "Transfers that can never happen").

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use super::locks::lock;
use super::tasks::{IoEvent, Op};
use crate::error::{Error, try_vec};
use crate::sys::{self, fd::transfer_possible};

/// How long a transfer is in flight before it is probed (between one and two of these, each
/// up to `sys::coarse_lag_ns` later when the engine slept).
pub(crate) const SWEEP_INTERVAL_NS: u64 = 50_000_000;

/// `transfer` value of a slot without a transfer in flight.
const NONE: u64 = 0;

/// `next_sweep_ns` while nothing needs a sweep.
const NO_SWEEP: u64 = u64::MAX;

pub(crate) struct StuckTransfers {
    /// Per slot: `(fd << 2) | write << 1 | 1` while a READ/WRITE(V) is dispatched there,
    /// else `NONE`. Written by the dispatching and the settling thread (each holding the
    /// slot), read by the sweep; a stale value only costs one harmless probe.
    transfer: Box<[AtomicU64]>,
    /// Per slot: bumped at every dispatch there (by the submit role only), so the sweep
    /// can tell "the same request as at the last sweep" from "a new one".
    serial: Box<[AtomicU64]>,
    /// Submit role only (the sweep).
    sweep: Mutex<Sweep>,
    /// CLOCK_MONOTONIC ns of the next sweep (read for wake-up timers); `NO_SWEEP` while
    /// every transfer in flight has been probed, so an engine waiting for a slow pipe
    /// or socket sleeps undisturbed after that one probe. Written by the submit role only.
    next_sweep_ns: AtomicU64,
    /// `(slot, serial, errno)` of transfers the sweep cancelled: their -ECANCELED becomes
    /// `-errno`.
    failed: Mutex<Vec<(usize, u64, i32)>>,
    has_failed: AtomicBool,
}

#[derive(Default)]
struct Sweep {
    /// Per slot, the serial seen at the last sweep and the last serial probed.
    seen: Vec<u64>,
    probed: Vec<u64>,
}

impl StuckTransfers {
    /// `OutOfMemory` when the per-slot arrays cannot be allocated.
    pub(crate) fn new(depth: usize) -> Result<Self, Error> {
        let atomics = || Ok::<_, Error>(try_vec(depth, |_| AtomicU64::new(0))?.into_boxed_slice());
        Ok(StuckTransfers {
            transfer: atomics()?,
            serial: atomics()?,
            sweep: Mutex::new(Sweep {
                seen: try_vec(depth, |_| u64::MAX)?,
                probed: try_vec(depth, |_| u64::MAX)?,
            }),
            next_sweep_ns: AtomicU64::new(NO_SWEEP),
            failed: Mutex::new(Vec::new()),
            has_failed: AtomicBool::new(false),
        })
    }

    /// Submit role, as `event` is placed into slot `index`.
    pub(crate) fn dispatched(&self, index: usize, event: &IoEvent) {
        let write = match event.request.op {
            Op::Read | Op::Readv => 0,
            Op::Write | Op::Writev => 1,
            Op::Fsync | Op::Fdatasync | Op::Fallocate | Op::SyncFileRange => {
                self.transfer[index].store(NONE, Relaxed);
                return;
            }
        };
        let fd = event.request.fd as u32 as u64;
        // Only the submit role writes `serial` (here, holding the slot): a load and a
        // store, no atomic read-modify-write on every dispatch.
        let serial = &self.serial[index];
        serial.store(serial.load(Relaxed).wrapping_add(1), Relaxed);
        self.transfer[index].store((fd << 2) | (write << 1) | 1, Relaxed);
        if self.next_sweep_ns.load(Relaxed) == NO_SWEEP {
            // The next `service` records it; the sweep after that probes it.
            self.next_sweep_ns.store(0, Relaxed);
        }
    }

    /// The holder of slot `index`, as its request finishes.
    pub(crate) fn finished(&self, index: usize) {
        self.transfer[index].store(NONE, Relaxed);
    }

    /// When to wake for the next sweep (CLOCK_MONOTONIC ns); `None` while none is needed.
    /// That is the sweep's time plus the coarse clock's lag, so that a thread woken then
    /// finds it due by `may_be_due` at once (a sweep waits at most that much longer).
    pub(crate) fn next_sweep_ns(&self) -> Option<u64> {
        let at = self.next_sweep_ns.load(Relaxed);
        (at != NO_SWEEP).then(|| at.saturating_add(sys::coarse_lag_ns()))
    }

    /// Whether the next sweep may be due, by the coarse clock (a few ns, where the
    /// precise one costs a fifth of a submit step's own work at tmpfs speed; this runs at
    /// every step while IO is in flight). True at the latest once it is due: the caller
    /// then reads the precise clock for `sweep`.
    pub(crate) fn may_be_due(&self) -> bool {
        let at = self.next_sweep_ns.load(Relaxed);
        at != NO_SWEEP && sys::monotonic_coarse_ns().saturating_add(sys::coarse_lag_ns()) >= at
    }

    /// Submit role, while IO is in flight: at most every `SWEEP_INTERVAL_NS`, probes the
    /// transfers in flight since the last sweep (each once) and returns the slots whose
    /// transfer can never happen, for the driver to cancel.
    pub(crate) fn sweep(&self, now_ns: u64, cancel: &mut Vec<usize>) {
        if now_ns < self.next_sweep_ns.load(Relaxed) {
            return;
        }
        self.next_sweep_ns
            .store(now_ns + SWEEP_INTERVAL_NS, Relaxed);
        let mut sweep = lock(&self.sweep);
        let Sweep { seen, probed } = &mut *sweep;
        let mut unprobed = false;
        for index in 0..self.transfer.len() {
            let transfer = self.transfer[index].load(Relaxed);
            let serial = self.serial[index].load(Relaxed);
            let old = std::mem::replace(&mut seen[index], serial);
            if transfer == NONE || probed[index] == serial {
                continue;
            }
            if old != serial {
                // In flight since this sweep only: probed at the next one.
                unprobed = true;
                continue;
            }
            probed[index] = serial;
            let fd = (transfer >> 2) as u32 as i32;
            if let Err(errno) = transfer_possible(fd, transfer & 2 != 0) {
                lock(&self.failed).push((index, serial, errno));
                self.has_failed.store(true, Relaxed);
                cancel.push(index);
            }
        }
        if !unprobed {
            self.next_sweep_ns.store(NO_SWEEP, Relaxed);
        }
    }

    /// The holder of slot `index`, with the kernel's `res` for it: the probe's error in
    /// place of the -ECANCELED of a transfer the sweep cancelled.
    pub(crate) fn result(&self, index: usize, res: i64) -> i64 {
        if res != -i64::from(libc::ECANCELED) || !self.has_failed.load(Relaxed) {
            return res;
        }
        let serial = self.serial[index].load(Relaxed);
        let mut failed = lock(&self.failed);
        let Some(at) = failed
            .iter()
            .position(|&(i, s, _)| i == index && s == serial)
        else {
            return res;
        };
        let (_, _, errno) = failed.swap_remove(at);
        // Records of requests that finished before their cancel landed never match again.
        failed.retain(|&(i, s, _)| self.serial[i].load(Relaxed) == s);
        self.has_failed.store(!failed.is_empty(), Relaxed);
        -i64::from(errno)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tasks::{Callback, IoRequest, Priority};
    use std::ffi::c_void;
    use std::os::fd::AsRawFd;

    unsafe extern "C" fn ignore(_: *mut c_void, _: i64) {}

    fn read_of(fd: i32) -> IoEvent {
        let req = IoRequest::new(Op::Read, Priority::Normal, fd, 8 as *mut u8, 1, 0).unwrap();
        IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()))
    }

    #[test]
    fn a_transfer_in_flight_over_a_sweep_is_probed_once_and_only_if_it_cannot_happen() {
        // SAFETY: epoll_create1 takes no pointer; the fd is closed below.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epoll >= 0);
        let (pipe_read, _pipe_write) = std::io::pipe().unwrap();
        let stuck = StuckTransfers::new(3).unwrap();
        stuck.dispatched(0, &read_of(epoll));
        stuck.dispatched(1, &read_of(pipe_read.as_raw_fd()));
        let mut cancel = Vec::new();
        let lag = sys::coarse_lag_ns();
        assert_eq!(
            stuck.next_sweep_ns(),
            Some(lag),
            "a dispatch arms the sweep"
        );
        stuck.sweep(0, &mut cancel);
        assert!(
            cancel.is_empty(),
            "the first sweep only records what is in flight"
        );
        stuck.sweep(1, &mut cancel);
        assert!(cancel.is_empty(), "not due before the interval");
        stuck.sweep(SWEEP_INTERVAL_NS, &mut cancel);
        assert_eq!(
            cancel,
            [0],
            "the epoll READ cannot happen; the pipe READ can"
        );
        assert_eq!(stuck.next_sweep_ns(), None, "all probed: no more wake-ups");
        stuck.sweep(2 * SWEEP_INTERVAL_NS, &mut cancel);
        assert_eq!(cancel, [0], "each request is probed once");
        let ecanceled = -i64::from(libc::ECANCELED);
        assert_eq!(stuck.result(1, ecanceled), ecanceled, "a cancel of its own");
        assert_eq!(stuck.result(0, ecanceled), -i64::from(libc::EINVAL));
        assert_eq!(stuck.result(0, ecanceled), ecanceled, "used once");
        // A new request in a slot is a new candidate.
        stuck.finished(0);
        stuck.dispatched(0, &read_of(epoll));
        cancel.clear();
        assert_eq!(
            stuck.next_sweep_ns(),
            Some(lag),
            "a new transfer re-arms the sweep"
        );
        stuck.sweep(3 * SWEEP_INTERVAL_NS, &mut cancel);
        stuck.sweep(4 * SWEEP_INTERVAL_NS, &mut cancel);
        assert_eq!(cancel, [0]);
        // SAFETY: the fd is ours and no longer used.
        unsafe { libc::close(epoll) };
    }

    #[test]
    fn the_coarse_check_is_never_late_and_the_wake_up_finds_the_sweep_due() {
        let (pipe_read, _pipe_write) = std::io::pipe().unwrap();
        let stuck = StuckTransfers::new(1).unwrap();
        assert!(!stuck.may_be_due(), "nothing in flight: no sweep");
        stuck.dispatched(0, &read_of(pipe_read.as_raw_fd()));
        assert!(stuck.may_be_due(), "a new transfer: due at once");
        let mut cancel = Vec::new();
        let now = sys::monotonic_ns();
        stuck.sweep(now, &mut cancel);
        let at = now + SWEEP_INTERVAL_NS;
        assert!(!stuck.may_be_due(), "the next sweep is an interval away");
        let wake = stuck.next_sweep_ns().unwrap();
        assert!(wake >= at && wake - at == sys::coarse_lag_ns());
        // Once the precise clock reaches the sweep's time, the coarse check says so (it
        // lags by less than `coarse_lag_ns`); a thread woken at `wake` finds it due.
        while sys::monotonic_ns() < at {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            stuck.may_be_due(),
            "due by the precise clock, so by the coarse check"
        );
        assert!(sys::monotonic_coarse_ns() <= sys::monotonic_ns());
    }
}
