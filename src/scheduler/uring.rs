//! The io_uring driver: `UringSlot` holds only the request (no iocb); the SQE's
//! `user_data` is the slot index.
//!
//! How the two roles (see `Driver`) share one ring:
//! - the submit role alone touches the SQ (`submission_shared`, push, sync) and calls
//!   `io_uring_enter(to_submit = n, min_complete = 0, flags = 0)` (GETEVENTS too on a
//!   single-poller ring, to run the completion work in the same call), and while idle
//!   `io_uring_enter(0, 0, GETEVENTS)` to run its pending task_work (`run_deferred`);
//! - the reap role alone touches the CQ (`completion_shared`, iterate, sync) and calls
//!   `io_uring_enter(to_submit = 0, min_complete = 1, flags = GETEVENTS)` to wait.
//! - POLLED mode registers the engine's eventfd (`IORING_REGISTER_EVENTFD`): the kernel
//!   adds to it for every CQE it posts while no poller runs. A running poller turns that
//!   off (`IORING_CQ_EVENTFD_DISABLED`) and sleeps in `io_uring_enter` itself (see
//!   `wait_event`), woken by a CQE or by a one-shot `POLL_ADD` on the eventfd, which
//!   fires when another thread queues work and signals the fd.
//!
//! - IOENG_CONFIG_SINGLE_POLLER (POLLED only): the caller promised one thread polls and
//!   closes, so the ring is made with SINGLE_ISSUER | DEFER_TASKRUN (6.1): the kernel
//!   keeps completion work on a list that the poller runs when it enters the kernel to
//!   reap or wait, instead of interrupting it per completion, and wakes a waiting
//!   poller only when there is enough to reap. The ring starts disabled (R_DISABLED, so
//!   buffers and the event fd register from any thread) and is enabled by the first
//!   thread to poll or close, which the kernel then holds to be its only issuer
//!   (`bind_poller`; another thread's poll or close is refused before it reaches the
//!   kernel).
//!
//! Each ring half has a single user-space producer/consumer, as the kernel's ring
//! protocol assumes; `io_uring_enter` itself may run concurrently from two threads.
//!
//! Sizing: the SQ has at least `batch` entries and is empty at the start of every round
//! (a round returns only when the kernel consumed every SQE it pushed), so pushing a
//! batch never fails. The CQ has at least `2 * depth` entries: the budget keeps at most
//! `depth` IOs (one SQE → one CQE each) unreaped, and at most one `ASYNC_CANCEL` per
//! slot is outstanding (the context hands each slot's cancel over once); POLLED mode
//! adds one for the wake-up poll; so the CQ cannot overflow. A cancel's own CQE carries
//! [`CANCEL_USER_DATA`], which no slot index can equal; the completer reports it as
//! [`CONTROL_INDEX`]. The wake-up poll's CQE carries [`WAKE_USER_DATA`] and never
//! leaves the driver. Control SQEs (cancels, the wake-up poll) are pushed and submitted
//! by the submit role between rounds, so the SQ is still empty when a round starts.
//!
//! POLLED mode's timer (`arm_timer`, docs/ARCHITECTURE.md "Timers"): one
//! `IORING_OP_TIMEOUT` at an absolute CLOCK_MONOTONIC time, user_data
//! [`TIMER_USER_DATA`]; its CQE, posted while no poller runs, signals the registered
//! event fd like any CQE. A new earlier time updates it in place (`TIMEOUT_REMOVE` with
//! `IORING_TIMEOUT_UPDATE`, 5.11, whose own CQE carries [`TIMER_UPDATE_USER_DATA`] and
//! comes only on failure where the kernel can skip it, 5.17).
//! Both CQEs stay inside the driver. The CQ has room for three more CQEs in POLLED mode:
//! the wake-up poll, the timer and one update (an update is issued only at the end of a
//! poll, and every poll reaps what the last one left).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence};
use std::time::Duration;

use io_uring::{IoUring, opcode, squeue, types};

use super::context::{CONTROL_INDEX, IoContext, Slot};
use super::driver::Driver;
use super::tasks::{IoEvent, Op};
use crate::error::Error;
use crate::sys::{self, IORING_ENTER_GETEVENTS, report_unexpected};

/// One in-flight io_uring request: everything needed to (re)build its SQE.
#[derive(Default)]
pub struct UringSlot {
    event: Option<IoEvent>,
}

impl Slot for UringSlot {
    // io_uring waits for readiness on files that can never transfer (see `stuck`).
    const PROBE_STUCK_TRANSFERS: bool = true;
    // No io-wq worker could start for the IO, or its submitting thread exited.
    const KERNEL_CANCELS_ON_ITS_OWN: bool = true;

    fn event_mut(&mut self) -> &mut Option<IoEvent> {
        &mut self.event
    }
}

pub struct UringDriver {
    ring: IoUring,
    /// Under valgrind: tell memcheck what each READ wrote (it cannot see io_uring's
    /// asynchronous writes), so callers' buffers are not reported uninitialised.
    valgrind: bool,
    /// POLLED mode on a kernel that can wait with a timeout (`IORING_FEAT_EXT_ARG`,
    /// 5.11): the registered event fd, which the poller quiets and watches itself (see
    /// `wait_event`). `None`: THREADS mode, or the poller sleeps on the fd instead (also
    /// under valgrind, which runs no other thread while one sleeps in io_uring_enter, so
    /// a submitting thread could never wake the poller).
    quiet_fd: Option<RawFd>,
    /// Whether the wake-up `POLL_ADD` on `quiet_fd` is in the kernel (armed by
    /// `wait_event`, cleared when its CQE is reaped). Only the poller, which holds both
    /// roles, touches it: Relaxed.
    wake_armed: AtomicBool,
    /// `pthread_self()` of the thread that armed the wake-up poll. The kernel posts the
    /// poll's CQE from task_work of that thread, so only that thread may rely on it to be
    /// woken; another poller sleeps on the event fd until the poll is gone. Poller only.
    armed_by: AtomicUsize,
    /// Set when the wake-up poll's CQE was reaped (the fd was readable, so it holds a
    /// count the poller must drain); taken by `take_wake_fired`. Poller only: Relaxed.
    wake_fired: AtomicBool,
    /// IOENG_CONFIG_SINGLE_POLLER on a kernel that took DEFER_TASKRUN:
    /// `sys::thread_token()` of the thread the ring is enabled for (0: still disabled).
    /// Only the holder of the poller's role reads or writes it (`bind_poller`): Relaxed.
    /// `None`: any thread may poll.
    issuer: Option<AtomicU64>,
    /// Single-poller ring: the ring fd's index among the issuer thread's registered rings
    /// (`sys::uring`), registered when the ring is enabled for that thread, so its
    /// `io_uring_enter` calls skip the kernel's fd lookup; [`NO_RING_INDEX`] while none
    /// (not bound yet, or the kernel refused: before 5.18, or 16 rings on that thread
    /// already). Written once by `bind_poller`, read by the issuer: Relaxed. Another
    /// thread never uses it (`registered_ring`): the index means nothing in its table.
    ring_index: AtomicU32,
    /// Whether the POLLED timer's `TIMEOUT` is in the kernel (set by `arm_timer`, cleared
    /// when its CQE is reaped). Poller only: Relaxed.
    timer_armed: AtomicBool,
    /// Set when the timer's CQE (it fired) was reaped; taken by `take_timer_fired`.
    /// Poller only: Relaxed.
    timer_fired: AtomicBool,
    /// DEFER_TASKRUN ring whose depth lets more completion work pile up than the kernel
    /// runs in one wait (see `may_have_left_work`).
    wait_may_leave_work: bool,
    /// Set after a wait in the kernel that may have left completion work behind, unseen
    /// by the TASKRUN flag; taken by `run_pending_local_work`. Poller only: Relaxed.
    left_work: AtomicBool,
    /// `(st_dev, st_ino)` of the ring's fd at open, where the ring has an inode of its
    /// own (`own_identity`): a forked child closes its copy only while the number still
    /// refers to this ring (`release_in_forked_child`); `None`: it never does.
    ring_identity: Option<(u64, u64)>,
}

/// Creates a ring with `sq_entries` SQEs and room for `cq_entries` completions.
///
/// Completions are posted by task_work that runs in the *submitting* thread. With
/// COOP_TASKRUN (5.19) the kernel does not interrupt that thread with an IPI for it;
/// the work runs at its next syscall, and TASKRUN_FLAG lets the idle submitter see that
/// work is pending and enter the kernel to run it (see `run_deferred`). SUBMIT_ALL
/// (5.18) keeps submitting past an SQE that fails at submit time. Older kernels reject
/// the flags with EINVAL; we then drop them (the submit loop handles both behaviours).
///
/// With `single_poller` (see the module docs), SINGLE_ISSUER | DEFER_TASKRUN | R_DISABLED
/// come first; a kernel without them (before 6.1) gets the usual ring. Each of the two
/// kinds is first tried with NO_SQARRAY (6.6).
pub(crate) fn build_ring(
    sq_entries: u32,
    cq_entries: u32,
    single_poller: bool,
) -> io::Result<IoUring> {
    let mut plain = IoUring::builder();
    plain.setup_cqsize(cq_entries.max(sq_entries));
    let mut submit_all = plain.clone();
    submit_all.setup_submit_all();
    let mut coop = submit_all.clone();
    coop.setup_coop_taskrun().setup_taskrun_flag();
    let mut deferred = coop.clone();
    deferred
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_r_disabled();
    // NO_SQARRAY (6.6): the kernel reads SQEs in ring order, without the index array's
    // extra load per SQE (as t/io_uring sets it).
    let no_sqarray = |builder: &io_uring::Builder| {
        let mut builder = builder.clone();
        builder.setup_no_sqarray();
        builder
    };
    let mut builders = Vec::with_capacity(6);
    if single_poller {
        builders.extend([no_sqarray(&deferred), deferred]);
    }
    builders.extend([no_sqarray(&coop), coop, submit_all, plain]);
    let mut last = None;
    for builder in builders {
        match builder.build(sq_entries) {
            Err(err) if err.raw_os_error() == Some(libc::EINVAL) => last = Some(err),
            result => return result,
        }
    }
    Err(last.expect("at least one attempt"))
}

/// `user_data` of an `ASYNC_CANCEL` SQE (slot indices are below 32768).
const CANCEL_USER_DATA: u64 = u64::MAX;
/// `user_data` of the POLLED wake-up poll on the event fd.
const WAKE_USER_DATA: u64 = u64::MAX - 1;
/// `user_data` of the POLLED timer (`arm_timer`).
const TIMER_USER_DATA: u64 = u64::MAX - 2;
/// `user_data` of an update of the POLLED timer.
const TIMER_UPDATE_USER_DATA: u64 = u64::MAX - 3;
/// How many items of DEFER_TASKRUN completion work the kernel runs per wait that asks
/// for fewer completions (`IO_LOCAL_TW_DEFAULT_MAX`). Since 6.13 it keeps the rest on a
/// retry list (6.13 also cleared the TASKRUN flag; later kernels set it while work is
/// left), and it signals the event fd only when new work finds the list empty: work
/// left there is seen by nothing until the poller enters the kernel again
/// (`UringDriver::left_work`).
const LOCAL_WORK_PER_WAIT: u32 = 20;

/// `UringDriver::ring_index` while the ring fd is not registered.
const NO_RING_INDEX: u32 = u32::MAX;

/// The kernel's largest CQ (`IORING_MAX_CQ_ENTRIES`).
const MAX_CQ_ENTRIES: u32 = 65536;

/// This thread, as `armed_by` records it.
fn this_thread() -> usize {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as usize }
}

fn entry_for(index: usize, event: &IoEvent) -> squeue::Entry {
    let chunk = event.next_chunk();
    // A registered file goes by its index, flagged IOSQE_FIXED_FILE below: no file
    // lookup per request.
    let fd = types::Fd(chunk.fixed_file.map_or(chunk.fd, |index| index as i32));
    // `chunk.len <= MAX_KERNEL_IO < 2^31` (bytes), `<= IOV_MAX` (iovecs) or, for a
    // SYNC_FILE_RANGE piece, `<= MAX_SYNC_RANGE_PIECE < 2^32`, so the 32-bit SQE length
    // cannot truncate (FALLOCATE's 64-bit length does not go there).
    let len = chunk.len as u32;
    let (offset, rw_flags) = (chunk.offset, chunk.rw_flags);
    // The class's kernel_ioprio (0: none, the kernel then uses the task's); FSYNC and
    // FDATASYNC take none.
    let ioprio = chunk.ioprio;
    let entry = match (chunk.op, chunk.fixed) {
        (Op::Read, Some(buf_index)) => opcode::ReadFixed::new(fd, chunk.buf, len, buf_index)
            .offset(offset)
            .rw_flags(rw_flags)
            .ioprio(ioprio)
            .build(),
        (Op::Write, Some(buf_index)) => {
            opcode::WriteFixed::new(fd, chunk.buf.cast_const(), len, buf_index)
                .offset(offset)
                .rw_flags(rw_flags)
                .ioprio(ioprio)
                .build()
        }
        (Op::Read, None) => opcode::Read::new(fd, chunk.buf, len)
            .offset(offset)
            .rw_flags(rw_flags)
            .ioprio(ioprio)
            .build(),
        (Op::Write, None) => opcode::Write::new(fd, chunk.buf, len)
            .offset(offset)
            .rw_flags(rw_flags)
            .ioprio(ioprio)
            .build(),
        // The iovec run lives in the caller's array; the kernel only reads it.
        (Op::Readv, _) => opcode::Readv::new(fd, chunk.buf.cast_const().cast(), len)
            .offset(offset)
            .rw_flags(rw_flags)
            .ioprio(ioprio)
            .build(),
        (Op::Writev, _) => opcode::Writev::new(fd, chunk.buf.cast_const().cast(), len)
            .offset(offset)
            .rw_flags(rw_flags)
            .ioprio(ioprio)
            .build(),
        (Op::Fsync, _) => opcode::Fsync::new(fd).build(),
        (Op::Fdatasync, _) => opcode::Fsync::new(fd)
            .flags(types::FsyncFlags::DATASYNC)
            .build(),
        // The range's length goes in the SQE's 64-bit `addr`, the mode in `len`.
        (Op::Fallocate, _) => opcode::Fallocate::new(fd, chunk.len)
            .offset(offset)
            .mode(chunk.range_arg as i32)
            .build(),
        // One piece of at most MAX_SYNC_RANGE_PIECE < 2^32 bytes (see `next_chunk`).
        (Op::SyncFileRange, _) => opcode::SyncFileRange::new(fd, len)
            .offset(offset)
            .flags(chunk.range_arg)
            .build(),
    };
    let entry = if chunk.fixed_file.is_some() {
        entry.flags(squeue::Flags::FIXED_FILE)
    } else {
        entry
    };
    entry.user_data(index as u64)
}

/// `IoEvent::driver_state` bits of the io_uring driver: `on_worker` asked, and its answer.
const WORKER_ASKED: u8 = 1 << 0;
const WORKER: u8 = 1 << 1;

/// Whether the request's transfers go with `IOSQE_ASYNC`, i.e. on an io-wq worker, never
/// in the submitting thread (docs/ARCHITECTURE.md, "Terminals on io_uring"): true for a
/// WRITE to a terminal. io_uring issues a transfer on a pollable file without
/// `FMODE_NOWAIT` inline once poll says ready, and a tty ignores `IOCB_NOWAIT`:
/// `n_tty_write` on a blocking fd then waits in `io_uring_enter` until all of it is
/// written, where no cancel reaches. On a worker the wait is interruptible by the cancel
/// (io-wq notifies the worker), and a worker still waits for readiness with a poll, not a
/// thread. A READ is not asked: a tty's poll says readable only once a read has what it
/// waits for (a line, or VMIN characters), so the inline read returns at once. Asked once
/// per WRITE request, with one `isatty`, which consecutive requests on the same fd within
/// a submit call share (`last`: the last fd asked and its answer).
fn on_worker(event: &mut IoEvent, last: &mut Option<(i32, bool)>) -> bool {
    if event.driver_state & WORKER_ASKED == 0 {
        let fd = event.request.fd;
        let tty = matches!(event.request.op, Op::Write | Op::Writev)
            && match *last {
                Some((f, tty)) if f == fd => tty,
                _ => {
                    let tty = sys::fd::is_tty(fd);
                    *last = Some((fd, tty));
                    tty
                }
            };
        event.driver_state = WORKER_ASKED | if tty { WORKER } else { 0 };
    }
    event.driver_state & WORKER != 0
}

impl UringDriver {
    fn open_ring(
        depth: u32,
        batch: u32,
        event_fd: Option<RawFd>,
        single_poller: bool,
    ) -> Result<Self, Error> {
        // Three more CQEs in POLLED mode: the wake-up poll, the timer and its update (see
        // module docs), within the kernel's limit: at the largest depth the extra CQEs rely
        // on IORING_FEAT_NODROP (5.5, older than the EXT_ARG that POLLED waits need), which
        // keeps an overflowing CQE until the next io_uring_enter(GETEVENTS).
        let cq_entries = (2 * depth + 3 * u32::from(event_fd.is_some()))
            .next_power_of_two()
            .min(MAX_CQ_ENTRIES);
        let ring = build_ring(batch.next_power_of_two(), cq_entries, single_poller)
            .map_err(|err| Error::kernel("io_uring_setup", &err))?;
        if let Some(fd) = event_fd {
            ring.submitter()
                .register_eventfd(fd)
                .map_err(|err| Error::kernel("IORING_REGISTER_EVENTFD", &err))?;
        }
        let single_issuer = ring.params().is_setup_single_issuer();
        let valgrind = sys::valgrind::running_on_valgrind();
        let quiet_fd = event_fd.filter(|_| ring.params().is_feature_ext_arg() && !valgrind);
        let ring_identity = own_identity(ring.as_raw_fd(), event_fd);
        Ok(UringDriver {
            ring,
            valgrind,
            quiet_fd,
            wake_armed: AtomicBool::new(false),
            armed_by: AtomicUsize::new(0),
            wake_fired: AtomicBool::new(false),
            issuer: single_issuer.then(|| AtomicU64::new(0)),
            ring_index: AtomicU32::new(NO_RING_INDEX),
            timer_armed: AtomicBool::new(false),
            timer_fired: AtomicBool::new(false),
            // Pending completion work is at most one item per IO in flight plus the
            // three control requests.
            wait_may_leave_work: single_issuer && depth + 3 > LOCAL_WORK_PER_WAIT,
            left_work: AtomicBool::new(false),
            ring_identity,
        })
    }

    /// The ring's registered index when the calling thread registered it (the issuer of
    /// a single-poller ring), else `None`.
    fn registered_ring(&self) -> Option<u32> {
        let index = self.ring_index.load(Ordering::Relaxed);
        let issuer = self.issuer.as_ref()?;
        (index != NO_RING_INDEX && issuer.load(Ordering::Relaxed) == sys::thread_token())
            .then_some(index)
    }

    /// `io_uring_enter(to_submit, min_complete, flags)` without an argument struct.
    fn enter(&self, to_submit: u32, min_complete: u32, flags: u32) -> Result<usize, i32> {
        if let Some(index) = self.registered_ring() {
            // SAFETY: this thread registered `index` (`registered_ring`) and it stays
            // registered until the driver drops; the SQEs submitted reference what the
            // submit role vouched for when it pushed them.
            return unsafe {
                sys::uring::enter_registered(index, to_submit, min_complete, flags, None)
            };
        }
        // SAFETY: io_uring_enter on our own ring fd; with no argument struct (None) the
        // kernel reads no user memory beyond the rings it mapped for us.
        let entered = unsafe {
            self.ring
                .submitter()
                .enter::<libc::sigset_t>(to_submit, min_complete, flags, None)
        };
        entered.map_err(|err| err.raw_os_error().unwrap_or(libc::EIO))
    }

    /// DEFER_TASKRUN (single poller): completion work is queued for the poller and not
    /// run yet (the kernel's TASKRUN flag; it posts CQEs when the poller enters the
    /// kernel). Always false on other rings.
    fn deferred_pending(&self) -> bool {
        if self.issuer.is_none() {
            return false;
        }
        // SAFETY: `issuer` is set only for a single-poller ring, which exists only in
        // POLLED mode, where the thread in the reap role (the poller) holds the submit
        // role too (Driver contract): this is the only SubmissionQueue in existence.
        unsafe { self.ring.submission_shared() }.taskrun()
    }

    /// After a wait in the kernel (poller only): on a DEFER_TASKRUN ring deep enough, the
    /// wait may have run only part of the pending completion work (`LOCAL_WORK_PER_WAIT`);
    /// the next `run_pending_local_work` then runs the rest.
    fn may_have_left_work(&self) {
        if self.wait_may_leave_work {
            self.left_work.store(true, Ordering::Relaxed);
        }
    }

    /// DEFER_TASKRUN (poller only): how many CQEs wait unreaped, to tell how many a call
    /// that ran completion work posted.
    fn unreaped_cqes(&self) -> usize {
        debug_assert!(self.issuer.is_some(), "a single-poller ring");
        // SAFETY: a DEFER_TASKRUN ring exists only in POLLED mode, whose poller holds both
        // roles (Driver contract), so no other thread has a CompletionQueue of the ring;
        // this short-lived view only reads the tail and consumes nothing.
        unsafe { self.ring.completion_shared() }.len()
    }

    /// DEFER_TASKRUN (poller, which holds both roles): runs the pending completion work,
    /// if the TASKRUN flag says there is some or a wait may have left some (the flag does
    /// not cover work a wait left on the retry list). Returns whether it entered.
    fn run_pending_local_work(&self) -> bool {
        let pending = self.left_work.swap(false, Ordering::Relaxed) | self.deferred_pending();
        if pending {
            self.run_all_local_work();
        }
        pending
    }

    /// DEFER_TASKRUN (poller, which holds both roles): runs the pending completion work,
    /// retry list included.
    ///
    /// Each GETEVENTS with min_complete 0 runs up to `LOCAL_WORK_PER_WAIT` items and
    /// returns at once. (Asking for more completions than can exist, with a zero timeout,
    /// runs them all in one call, but the kernel then arms a timer for that timeout and
    /// schedules: on a VM a timer-programming exit and a switch per call, about 30 µs of
    /// CPU per IO at QD1 in `examples_c/ioeng_nbd`, half of its CPU.) Items are at most
    /// one per IO or control request the kernel holds, so on a ring whose `depth + 3` is
    /// at most the limit one call runs them all. A deeper ring calls again while the last
    /// call may have stopped at the limit: it posted that many CQEs, or the kernel's
    /// TASKRUN flag says work is left (kernels after 6.13 set it when they stop there). When the
    /// flag is set but the last call posted nothing (items that post no CQE, such as an
    /// internal retry; or a stale flag on 6.2-6.8), the rest runs the sure, slow way.
    fn run_all_local_work(&self) {
        // Every item posts at most one CQE, and the CQ has room for all the kernel holds.
        let most_calls = self
            .ring
            .params()
            .cq_entries()
            .div_ceil(LOCAL_WORK_PER_WAIT);
        for _ in 0..most_calls {
            let before = self.unreaped_cqes();
            // Any error (EINTR) leaves nothing behind that the next poll would not find:
            // the work ran, or is still pending and the next check runs it.
            let _ = self.enter(0, 0, IORING_ENTER_GETEVENTS);
            if !self.wait_may_leave_work {
                break;
            }
            let posted = self.unreaped_cqes().saturating_sub(before);
            if posted >= LOCAL_WORK_PER_WAIT as usize {
                continue;
            }
            if self.deferred_pending() {
                if posted == 0 {
                    // Work is left (or, on 6.2-6.8, a stale flag) and the last call ran
                    // only items that post no CQE (internal retries): run the rest the
                    // sure way, whatever the timer costs on this rare path.
                    self.run_all_local_work_waiting();
                    return;
                }
                continue;
            }
            break;
        }
    }

    /// `run_all_local_work`'s sure way: GETEVENTS asking for more completions than can
    /// exist (the kernel runs up to that many items) with a zero timeout, so it never
    /// sleeps for long; but the kernel arms a timer for that timeout and schedules.
    fn run_all_local_work_waiting(&self) {
        let zero = types::Timespec::new();
        let args = types::SubmitArgs::new().timespec(&zero);
        // Any error (ETIME: fewer CQEs than asked for, the usual answer; EINTR) leaves
        // nothing behind that the next check would not find.
        let _ = self
            .ring
            .submitter()
            .submit_with_args(self.ring.params().cq_entries() as usize, &args);
    }

    /// Submit role, between rounds: hands every SQE in the SQ (control SQEs only) to
    /// the kernel, so the next round starts with an empty SQ.
    fn flush_control_sqes(&self) {
        loop {
            // SAFETY: the submit role's holder is the only SubmissionQueue user (Driver
            // contract).
            let left = unsafe { self.ring.submission_shared() }.len();
            if left == 0 {
                return;
            }
            // Retried until the SQ is empty: a round must start with an empty SQ.
            match self.enter(left as u32, 0, 0) {
                Ok(_) | Err(libc::EINTR) => {}
                Err(libc::EAGAIN | libc::EBUSY) => std::thread::yield_now(),
                Err(errno) => report_unexpected("io_uring_enter(control)", errno),
            }
        }
    }
}

impl Drop for UringDriver {
    fn drop(&mut self) {
        // The registration holds a reference to the ring: left in place, the ring (its
        // memory, registered buffers and files) would live on until the poller thread
        // exits. A single-poller engine is closed on that thread (`bind_poller`), which
        // is the only one that can drop it: the index is in its table.
        if let Some(index) = self.registered_ring()
            && let Err(errno) = sys::uring::unregister_ring_fd(self.ring.as_raw_fd(), index)
        {
            report_unexpected("IORING_UNREGISTER_RING_FDS", errno);
        }
    }
}

impl Driver for UringDriver {
    type Slot = UringSlot;

    fn open(depth: u32, batch: u32, event_fd: Option<RawFd>) -> Result<Self, Error> {
        Self::open_ring(depth, batch, event_fd, false)
    }

    fn open_single_poller(depth: u32, batch: u32, event_fd: RawFd) -> Result<Self, Error> {
        Self::open_ring(depth, batch, Some(event_fd), true)
    }

    fn bind_poller(&self) -> bool {
        let Some(issuer) = &self.issuer else {
            return true;
        };
        let me = sys::thread_token();
        match issuer.load(Ordering::Relaxed) {
            0 => {
                // The kernel makes the enabling task the ring's only issuer.
                if let Err(err) = self.ring.submitter().register_enable_rings() {
                    report_unexpected(
                        "IORING_REGISTER_ENABLE_RINGS",
                        err.raw_os_error().unwrap_or(libc::EIO),
                    );
                    return false;
                }
                issuer.store(me, Ordering::Relaxed);
                // Only an optimisation: without it, each call looks the fd up.
                if let Ok(index) = sys::uring::register_ring_fd(self.ring.as_raw_fd()) {
                    self.ring_index.store(index, Ordering::Relaxed);
                }
                true
            }
            bound => bound == me,
        }
    }
    fn submit(&self, ctx: &IoContext<UringSlot>, batch: &[usize], busy: &mut impl FnMut()) {
        {
            // SAFETY: only the submit role calls `submit`, one thread at a time (Driver
            // contract), so this is the only SubmissionQueue of the ring in existence.
            let mut sq = unsafe { self.ring.submission_shared() };
            debug_assert!(sq.is_empty() && batch.len() <= sq.capacity());
            // `on_worker`'s last answer in this call.
            let mut last_tty = None;
            for &index in batch {
                // SAFETY: the submitter holds every index of `batch`.
                let slot = unsafe { ctx.slot_mut(index) };
                let event = slot
                    .event
                    .as_mut()
                    .expect("a dispatched slot holds a request");
                let mut entry = entry_for(index, event);
                if on_worker(event, &mut last_tty) {
                    entry = entry.flags(squeue::Flags::ASYNC);
                }
                // SAFETY: the SQE points at the caller's buffer, valid until its callback
                // by the ioeng_submit contract; the callback runs only after the CQE is
                // reaped, and the slot keeps the event untouched until then.
                let pushed = unsafe { sq.push(&entry) };
                pushed.expect("the SQ holds a whole batch (see module docs)");
            }
            // Dropping `sq` publishes the new tail to the kernel (Release store).
        }
        // DEFER_TASKRUN (single poller, which holds both roles): the same io_uring_enter
        // also runs the completion work queued for the poller (GETEVENTS with
        // min_complete 0: after a submit that took every SQE, the kernel runs that work
        // in runs of up to `LOCAL_WORK_PER_WAIT` items and returns the submitted count).
        // That clears the TASKRUN flag, so the round's `run_deferred` usually finds
        // nothing left and saves its own syscall.
        let single_poller = self.issuer.is_some();
        let getevents = if single_poller {
            IORING_ENTER_GETEVENTS
        } else {
            0
        };
        let mut left = batch.len();
        while left > 0 {
            // Taken before each call: `busy()` may reap CQEs between calls.
            let cq_before = if single_poller {
                self.unreaped_cqes()
            } else {
                0
            };
            // SQEs that fail at submit time are consumed too and complete with a CQE
            // carrying -errno, so each consumed SQE is one CQE to reap.
            match ctx.kernel_submit(|| self.enter(left as u32, 0, getevents)) {
                Ok(0) => busy(),
                Ok(consumed) => {
                    left -= consumed.min(left);
                    // The call that took the last SQEs also ran completion work. As in
                    // `run_all_local_work`: a call that posted as many CQEs as one run's
                    // limit may have stopped there (the count also includes IO that
                    // completed inline at submit: a false alarm costs one syscall).
                    if single_poller
                        && left == 0
                        && self.unreaped_cqes().saturating_sub(cq_before)
                            >= LOCAL_WORK_PER_WAIT as usize
                    {
                        self.may_have_left_work();
                    }
                }
                Err(libc::EINTR) => {}
                // Out of memory for requests, or the CQ is backed up: let completions
                // make progress, then retry.
                Err(libc::EAGAIN | libc::EBUSY) => busy(),
                Err(errno) => report_unexpected("io_uring_enter(submit)", errno),
            }
        }
    }

    fn register_buffers(&self, bufs: &[libc::iovec]) -> Result<(), i32> {
        // SAFETY: the caller keeps the buffers valid for the engine's life (the
        // ioeng_register_buffers contract); the kernel pins them now and unpins them
        // when the ring is destroyed.
        unsafe { self.ring.submitter().register_buffers(bufs) }
            .map_err(|err| err.raw_os_error().unwrap_or(libc::EIO))
    }

    fn register_files(&self, fds: &[RawFd]) -> Result<(), i32> {
        // The descriptors are the engine's own (`RegisteredFiles`); the kernel takes its
        // own references now and drops them when the ring is destroyed.
        self.ring
            .submitter()
            .register_files(fds)
            .map_err(|err| err.raw_os_error().unwrap_or(libc::EIO))
    }

    fn cancel(&self, ctx: &IoContext<UringSlot>, targets: &[usize]) {
        for group in targets.chunks(self.ring.params().sq_entries() as usize) {
            {
                // SAFETY: only the submitter thread calls `cancel` (Driver contract), so
                // this is the only SubmissionQueue of the ring in existence; it is empty
                // between rounds.
                let mut sq = unsafe { self.ring.submission_shared() };
                for &index in group {
                    let entry = opcode::AsyncCancel::new(index as u64)
                        .build()
                        .user_data(CANCEL_USER_DATA);
                    // SAFETY: an ASYNC_CANCEL SQE references no memory.
                    let pushed = unsafe { sq.push(&entry) };
                    pushed.expect("the SQ is empty between rounds and the group fits");
                }
            }
            let mut left = group.len();
            while left > 0 {
                match ctx.kernel_submit_control(|| self.enter(left as u32, 0, 0)) {
                    Ok(0) => ctx.wait_for_progress(),
                    Ok(consumed) => left -= consumed.min(left),
                    Err(libc::EINTR) => {}
                    Err(libc::EAGAIN | libc::EBUSY) => ctx.wait_for_progress(),
                    Err(errno) => report_unexpected("io_uring_enter(cancel)", errno),
                }
            }
        }
    }

    fn quiet_event_fd(&self, quiet: bool) -> Option<bool> {
        self.quiet_fd?;
        if quiet
            && self.wake_armed.load(Ordering::Relaxed)
            && self.armed_by.load(Ordering::Relaxed) != this_thread()
        {
            // Another thread's wake-up poll could not wake this one (see `armed_by`).
            return None;
        }
        // SAFETY: the poller holds the reap role (Driver contract), so this is the only
        // CompletionQueue of the ring in existence.
        let cq = unsafe { self.ring.completion_shared() };
        if quiet {
            cq.disable_eventfd();
        } else {
            cq.enable_eventfd();
        }
        // Store-load ordering against the kernel, which stores the CQ tail, then (after a
        // full barrier: the wake-up of CQ waiters, or the completion lock on 6.0–6.5)
        // reads the flag: either it signals the fd, or the check below (and the poller's
        // look at the CQ) sees its CQE. The kernel does not document that barrier; were
        // it missing, a completion at the very end of a poll would not make the fd
        // readable, and a loop that also wakes now and then (as ioeng_event_fd asks, for
        // deadlines and retries) would find it at its next wake-up.
        fence(Ordering::SeqCst);
        if !quiet {
            // The answer only matters as a poll starts.
            return Some(false);
        }
        // Outside a poll nobody reaps, so any CQE posted while the fd was loud is still in
        // the CQ: if there is none, the kernel did not signal the fd. With DEFER_TASKRUN
        // it signals when completion work is queued for the poller, before any CQE:
        // that work shows as the TASKRUN flag until the poller runs it.
        let mut cq = cq;
        cq.sync();
        Some(!cq.is_empty() || self.deferred_pending())
    }

    fn take_wake_fired(&self) -> bool {
        self.wake_fired.swap(false, Ordering::Relaxed)
    }

    fn arm_timer(&self, at_ns: u64) -> bool {
        let ts = types::Timespec::new()
            .sec(at_ns / 1_000_000_000)
            .nsec((at_ns % 1_000_000_000) as u32);
        let update = self.timer_armed.swap(true, Ordering::Relaxed);
        let entry = if update {
            // If the timer fired meanwhile, the update finds nothing (-ENOENT) and the
            // fired CQE, still in the CQ, keeps the fd readable (it was signalled, or the
            // poll's last check sees the CQE): the next poll re-arms.
            let entry = opcode::TimeoutUpdate::new(TIMER_USER_DATA, &ts)
                .flags(types::TimeoutFlags::ABS)
                .build()
                .user_data(TIMER_UPDATE_USER_DATA);
            // A successful update posts no CQE (5.17), which would signal the event fd:
            // one spurious wake-up per earlier deadline.
            if self.ring.params().is_feature_skip_cqe_on_success() {
                entry.flags(squeue::Flags::SKIP_SUCCESS)
            } else {
                entry
            }
        } else {
            // count 0: a pure timer, not counting completions.
            opcode::Timeout::new(&ts)
                .flags(types::TimeoutFlags::ABS)
                .build()
                .user_data(TIMER_USER_DATA)
        };
        {
            // SAFETY: the poller holds the submit role (Driver contract), so this is the
            // only SubmissionQueue of the ring in existence; empty between rounds.
            let mut sq = unsafe { self.ring.submission_shared() };
            // SAFETY: the SQE points at `ts`, which the kernel copies when it takes the
            // SQE, inside `flush_control_sqes` below, while `ts` lives.
            let pushed = unsafe { sq.push(&entry) };
            pushed.expect("the SQ is empty between rounds");
        }
        self.flush_control_sqes();
        true
    }

    fn take_timer_fired(&self) -> bool {
        self.timer_fired.swap(false, Ordering::Relaxed)
    }

    fn wait_event(&self, timeout: Option<Duration>) -> Option<Result<(), i32>> {
        let fd = self.quiet_fd?;
        if !self.wake_armed.swap(true, Ordering::Relaxed) {
            {
                // SAFETY: the poller holds the submit role (Driver contract), so this is
                // the only SubmissionQueue of the ring in existence; empty between rounds.
                let mut sq = unsafe { self.ring.submission_shared() };
                let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                    .build()
                    .user_data(WAKE_USER_DATA);
                // SAFETY: a POLL_ADD SQE references no memory; the kernel holds its own
                // reference to the fd.
                let pushed = unsafe { sq.push(&entry) };
                pushed.expect("the SQ is empty between rounds");
            }
            // Submitted on its own: an io_uring_enter that submits returns the count and
            // drops the wait's -EINTR, which ioeng_poll must report.
            self.flush_control_sqes();
            self.armed_by.store(this_thread(), Ordering::Relaxed);
        }
        // The SQ is empty: sleeps until a CQE (an IO, a cancel or the wake-up poll), the
        // timeout, or a signal. Pending task_work (COOP_TASKRUN) runs inside the wait,
        // without an extra trip to user space.
        let entered = match self.registered_ring() {
            // SAFETY: this thread registered `index` (`registered_ring`); the SQ is
            // empty, so the call submits nothing.
            Some(index) => unsafe {
                sys::uring::enter_registered(index, 0, 1, IORING_ENTER_GETEVENTS, timeout)
            },
            None => {
                let ts = timeout.map(|t| {
                    types::Timespec::new()
                        .sec(t.as_secs())
                        .nsec(t.subsec_nanos())
                });
                let mut args = types::SubmitArgs::new();
                if let Some(ts) = &ts {
                    args = args.timespec(ts);
                }
                self.ring
                    .submitter()
                    .submit_with_args(1, &args)
                    .map_err(|err| err.raw_os_error().unwrap_or(libc::EIO))
            }
        };
        self.may_have_left_work();
        let waited = match entered {
            Ok(_) => Ok(()),
            Err(errno) => match errno {
                libc::ETIME | libc::EAGAIN | libc::EBUSY => Ok(()),
                libc::EINTR => Err(libc::EINTR),
                errno => {
                    report_unexpected("io_uring_enter(poll wait)", errno);
                    Ok(())
                }
            },
        };
        Some(waited)
    }

    unsafe fn release_in_forked_child(&mut self) {
        let ours = self
            .ring_identity
            .is_some_and(|id| sys::fd::identity(self.ring.as_raw_fd()) == Some(id));
        if ours {
            // SAFETY: the caller never uses or drops the driver again (the trait's
            // contract), so the ring is dropped exactly once, here: its Drop unmaps the
            // child's copy of the ring memory and closes the fd, which still refers to
            // this ring (checked above), so the child does not keep the parent's ring
            // and its registered buffers alive. Otherwise the number belongs to another
            // file now and the mapping stays, as the rest of the engine's memory does.
            unsafe { std::ptr::drop_in_place(&mut self.ring) };
        }
    }

    fn run_deferred(&self) -> bool {
        if self.issuer.is_some() {
            return self.run_pending_local_work();
        }
        // SAFETY: only the submit role calls `run_deferred`, one thread at a time (Driver
        // contract), so this is the only SubmissionQueue of the ring in existence.
        if unsafe { self.ring.submission_shared() }.taskrun() {
            // GETEVENTS with min_complete 0 runs this thread's pending task_work (which
            // posts CQEs for the completer) and returns without waiting or touching the
            // CQ ring. Any error just means the work runs at the next syscall.
            let _ = self.enter(0, 0, IORING_ENTER_GETEVENTS);
            return true;
        }
        false
    }

    fn completions_ready(&self) -> Option<bool> {
        // DEFER_TASKRUN: a finished IO is completion work queued for the poller before it
        // is a CQE, and the kernel signals the event fd only for the work that finds the
        // list empty. So when the poller asks (to decide whether the fd it just drained
        // may stay quiet, or whether to sleep), that work is run first, unless CQEs are
        // there already: a signal the drain ate is then seen as its CQE. Counting the
        // TASKRUN flag instead would spin an event loop on kernels 6.2-6.8, which can
        // leave the flag set with no work; there this costs one syscall per check.
        // SAFETY (both views): only the reap role calls `completions_ready`, one thread at
        // a time (Driver contract), so each is the only CompletionQueue of the ring in
        // existence while it lives; each loads the kernel's tail (Acquire) once.
        if self.issuer.is_some() {
            // CQEs already posted (the last submit's io_uring_enter ran completion work)
            // answer "yes" without a syscall; the work still queued is run by the poll
            // that this answer asks for, as it would be after any CQE.
            // SAFETY: see above.
            if !unsafe { self.ring.completion_shared() }.is_empty() {
                return Some(true);
            }
            self.run_pending_local_work();
        }
        // SAFETY: see above; created after the work ran.
        let cq = unsafe { self.ring.completion_shared() };
        Some(!cq.is_empty())
    }

    fn reap(&self, ctx: &IoContext<UringSlot>, out: &mut Vec<(usize, i64)>, wait: bool) {
        let first = out.len();
        // SAFETY: only the reap role calls `reap`, one thread at a time (Driver contract),
        // so this is the only CompletionQueue of the ring in existence.
        let mut cq = unsafe { self.ring.completion_shared() };
        if cq.is_empty() && wait {
            match self.enter(0, 1, IORING_ENTER_GETEVENTS) {
                Ok(_) | Err(libc::EINTR) => {}
                Err(errno) => report_unexpected("io_uring_enter(wait)", errno),
            }
            self.may_have_left_work();
            cq.sync();
        }
        out.extend((&mut cq).filter_map(|cqe| {
            let index = match cqe.user_data() {
                CANCEL_USER_DATA => CONTROL_INDEX,
                WAKE_USER_DATA => {
                    self.wake_armed.store(false, Ordering::Relaxed);
                    self.wake_fired.store(true, Ordering::Relaxed);
                    return None;
                }
                // The timer's CQE comes only when it fired (-ETIME): updates keep it.
                TIMER_USER_DATA => {
                    self.timer_armed.store(false, Ordering::Relaxed);
                    self.timer_fired.store(true, Ordering::Relaxed);
                    return None;
                }
                TIMER_UPDATE_USER_DATA => return None,
                data => data as usize,
            };
            Some((index, i64::from(cqe.result())))
        }));
        // Dropping `cq` hands the consumed entries back to the kernel.
        drop(cq);
        if self.valgrind {
            for &(index, res) in &out[first..] {
                if index == CONTROL_INDEX {
                    continue;
                }
                // SAFETY: the reap role holds every index it just reaped.
                let slot = unsafe { ctx.slot_mut(index) };
                if let Some(event) = &slot.event
                    && res > 0
                {
                    let chunk = event.next_chunk();
                    match chunk.op {
                        Op::Read => sys::valgrind::mark_defined(chunk.buf, res as usize),
                        Op::Readv => {
                            let iovs = chunk.buf.cast::<libc::iovec>();
                            let mut left = res as usize;
                            for i in 0..chunk.len as usize {
                                if left == 0 {
                                    break;
                                }
                                // SAFETY: a READV chunk names `len` iovecs of the caller's
                                // array, readable until the callback, which has not run.
                                let iov = unsafe { iovs.add(i).read() };
                                let n = iov.iov_len.min(left);
                                sys::valgrind::mark_defined(iov.iov_base.cast(), n);
                                left -= n;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// `(st_dev, st_ino)` of the ring's fd, when it identifies this ring alone: since 5.12
/// each ring has an inode of its own; before, rings shared the one anonymous inode of
/// every eventfd, timerfd and epoll fd (`None` then: a forked child never closes the
/// ring's copy, which could be a file of its own under the same number).
fn own_identity(ring_fd: RawFd, event_fd: Option<RawFd>) -> Option<(u64, u64)> {
    let ring = sys::fd::identity(ring_fd)?;
    let shared = match event_fd {
        Some(fd) => sys::fd::identity(fd),
        None => sys::EventFd::new()
            .ok()
            .and_then(|probe| sys::fd::identity(probe.raw())),
    };
    // Unknown counts as shared: closing nothing is the safe side.
    (shared.is_some() && shared != Some(ring)).then_some(ring)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tasks::{
        Callback, Flags, IoRequest, MAX_SYNC_RANGE_PIECE, Outcome, Priority, RequestSpec,
    };

    unsafe extern "C" fn ignore(_: *mut std::ffi::c_void, _: i64) {}

    /// The kernel's `io_uring_sqe` fields these ops use, read from the built entry.
    #[derive(Debug, PartialEq, Eq)]
    struct Sqe {
        opcode: u8,
        fd: i32,
        off: u64,
        addr: u64,
        len: u32,
        op_flags: u32,
        user_data: u64,
    }

    fn sqe(entry: &squeue::Entry) -> Sqe {
        const _: () = assert!(size_of::<squeue::Entry>() == 64);
        // SAFETY: `Entry` is a repr(C) wrapper of the kernel's 64-byte `io_uring_sqe`
        // (size checked above); any bytes are valid for a [u8; 64].
        let b: [u8; 64] = unsafe { std::ptr::from_ref(entry).cast::<[u8; 64]>().read() };
        let u32_at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().unwrap());
        // include/uapi/linux/io_uring.h: opcode 0, fd 4, off 8, addr 16, len 24, the op's
        // flags (sync_range_flags, ...) 28, user_data 32.
        Sqe {
            opcode: b[0],
            fd: u32_at(4) as i32,
            off: u64_at(8),
            addr: u64_at(16),
            len: u32_at(24),
            op_flags: u32_at(28),
            user_data: u64_at(32),
        }
    }

    /// An unlinked 6 GiB sparse file in the temp dir (a sync range stops at its end).
    fn big_file() -> std::fs::File {
        crate::sys::scratch::sparse_file("uring-sqe", 6 << 30)
    }

    fn event(op: Op, fd: i32, offset: u64, len: u64, arg: u32) -> IoEvent {
        let spec = RequestSpec {
            op,
            priority: Priority::Normal,
            fd,
            buf: std::ptr::null_mut(),
            len,
            offset,
            flags: Flags::default(),
            tag: 0,
            deadline_ns: 0,
            buf_index: arg,
            class_id: 0,
        };
        // SAFETY: not vectored.
        let req = unsafe { IoRequest::from_spec(&spec, None) }.unwrap();
        IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()))
    }

    /// The SQE's `ioprio` (offset 2 of `io_uring_sqe`).
    fn sqe_ioprio(entry: &squeue::Entry) -> u16 {
        // SAFETY: as in `sqe`: a repr(C) wrapper of the 64-byte `io_uring_sqe`.
        let b: [u8; 64] = unsafe { std::ptr::from_ref(entry).cast::<[u8; 64]>().read() };
        u16::from_ne_bytes([b[2], b[3]])
    }

    #[test]
    fn the_class_ioprio_reaches_the_sqe() {
        let buf = 0x1000 as *mut u8;
        for (op, ioprio) in [
            (Op::Read, (3 << 13) as u16),
            (Op::Write, (2 << 13) | 7),
            (Op::Read, 0),
        ] {
            let req = IoRequest::new(op, Priority::Normal, 0, buf, 4096, 0).unwrap();
            let mut event = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
            event.ioprio = ioprio;
            assert_eq!(sqe_ioprio(&entry_for(1, &event)), ioprio);
        }
    }

    #[test]
    fn fallocate_sqe_carries_mode_range_and_a_64_bit_length() {
        let mode = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
        let ev = event(Op::Fallocate, 7, 1 << 20, 5 << 30, mode);
        let want = Sqe {
            opcode: opcode::Fallocate::CODE,
            fd: 7,
            off: 1 << 20,
            addr: 5 << 30,
            len: mode,
            op_flags: 0,
            user_data: 3,
        };
        assert_eq!(sqe(&entry_for(3, &ev)), want);
    }

    #[test]
    fn sync_file_range_sqes_split_a_range_of_4_gib_or_more() {
        let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        let len = 5u64 << 30;
        let file = big_file();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let mut ev = event(Op::SyncFileRange, fd, 4096, len, flags);
        let first = sqe(&entry_for(9, &ev));
        let want = Sqe {
            opcode: opcode::SyncFileRange::CODE,
            fd,
            off: 4096,
            addr: 0,
            len: MAX_SYNC_RANGE_PIECE as u32,
            op_flags: flags,
            user_data: 9,
        };
        assert_eq!(first, want);
        assert_eq!(ev.settle(0), Outcome::Resubmit);
        let second = sqe(&entry_for(9, &ev));
        assert_eq!(
            (second.off, u64::from(second.len), second.op_flags),
            (
                4096 + MAX_SYNC_RANGE_PIECE,
                len - MAX_SYNC_RANGE_PIECE,
                flags
            )
        );
        assert_eq!(ev.settle(0), Outcome::Done(0));
        // Below 4 GiB: one SQE with the whole length; 0 (to the end of the file) stays 0.
        let ev = event(Op::SyncFileRange, fd, 0, 12345, flags);
        assert_eq!(sqe(&entry_for(1, &ev)).len, 12345);
        let ev = event(Op::SyncFileRange, fd, 0, 0, flags);
        assert_eq!(sqe(&entry_for(1, &ev)).len, 0);
    }

    #[test]
    fn tty_transfers_go_to_a_worker_and_others_do_not() {
        use std::os::fd::AsRawFd;
        // SAFETY: posix_openpt returns a new fd or -1.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(master >= 0, "posix_openpt");
        // SAFETY: `master` is ours, opened above; the OwnedFd closes it.
        let master =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(master) };
        let file = big_file();
        let mut byte = 0u8;
        let buf: *mut u8 = &raw mut byte;
        let transfer = |op, fd| {
            let spec = RequestSpec {
                op,
                priority: Priority::Normal,
                fd,
                buf,
                len: 1,
                offset: 0,
                flags: Flags::default(),
                tag: 0,
                deadline_ns: 0,
                buf_index: 0,
                class_id: 0,
            };
            // SAFETY: not vectored; the buffer outlives the events, which never reach
            // the kernel.
            let req = unsafe { IoRequest::from_spec(&spec, None) }.unwrap();
            IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()))
        };
        let mut last = None;
        let mut tty_write = transfer(Op::Write, master.as_raw_fd());
        assert!(on_worker(&mut tty_write, &mut last));
        assert_eq!(last, Some((master.as_raw_fd(), true)));
        let mut file_read = transfer(Op::Read, file.as_raw_fd());
        assert!(!on_worker(&mut file_read, &mut last));
        // Asked once: the answer travels with the request, even if `last` forgets it.
        assert!(on_worker(&mut tty_write, &mut None));
        // A file command on a tty fd is no transfer.
        let mut fsync = event(Op::Fsync, master.as_raw_fd(), 0, 0, 0);
        assert!(!on_worker(&mut fsync, &mut last));
        let entry = entry_for(1, &tty_write).flags(squeue::Flags::ASYNC);
        // SAFETY: see `sqe`; byte 1 of `io_uring_sqe` is `flags`.
        let flags = unsafe { std::ptr::from_ref(&entry).cast::<[u8; 64]>().read() }[1];
        assert_eq!(flags, 1 << 4, "IOSQE_ASYNC is bit 4");
    }
}
