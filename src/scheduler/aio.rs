//! The Linux AIO driver: `AioSlot` embeds the kernel `iocb`, slots sit in one contiguous
//! array, and `aio_data` carries the slot index from `io_submit` to the completion, which
//! the completer reads from the context's mapped ring when it is there, else from
//! `io_getevents`.

use std::cell::UnsafeCell;
use std::os::fd::{AsRawFd, RawFd};

use super::aio_helper::{self, Command, Helper, Job};
use super::aio_stream::{NextIo, PIPE_BUF, PTY_PIECE, StreamState};
use super::aio_timer::AioTimer;
use super::context::{IoContext, Slot};
use super::driver::Driver;
use super::tasks::{Chunk, Flags, IoEvent, Op, RESUBMIT_NOW};
use crate::error::{Error, try_vec, try_with_capacity};
use crate::sys::aio::{self as kernel, AioContextId, CompletionRing, Iocb};
use crate::sys::fd::FdKind;
use crate::sys::{self, report_unexpected};

/// One in-flight AIO request. `repr(C)` with the iocb first, so a slot's address is its
/// iocb's address and the array of slots is the array the kernel reads iocbs from. For
/// FALLOCATE and SYNC_FILE_RANGE the iocb is the helper's stand-in (see `aio_helper`).
#[repr(C)]
#[derive(Default)]
pub struct AioSlot {
    /// Read by the kernel from `io_submit` until the completion is reaped; written only
    /// by the submitter while it holds the slot and the kernel does not.
    iocb: Iocb,
    event: Option<IoEvent>,
}

impl Slot for AioSlot {
    fn event_mut(&mut self) -> &mut Option<IoEvent> {
        &mut self.event
    }
}

pub struct AioDriver {
    id: AioContextId,
    /// POLLED mode: every iocb carries IOCB_FLAG_RESFD with this eventfd, so each
    /// completion makes it readable.
    event_fd: Option<RawFd>,
    /// Submit-role scratch: the iocb pointer array of the current `io_submit`.
    iocb_ptrs: UnsafeCell<Vec<*mut Iocb>>,
    /// Submit-role scratch: the kinds of the fds classified in the current `submit`
    /// (an fd cannot change files while requests on it are live, so one answer serves
    /// the whole round).
    kinds: UnsafeCell<Vec<(i32, FdKind)>>,
    /// Submit role (and `drop`): the helper for the commands AIO has no iocb for; its
    /// pipe exists from open, its thread from the first command (see `aio_helper`).
    helper: UnsafeCell<Helper>,
    /// Reap-role scratch: the `io_getevents` result array.
    events: UnsafeCell<Vec<kernel::IoEvent>>,
    /// Reap role only: the context's completion ring, read without a syscall when it
    /// holds completions (`None` if its layout is not the one we know). Lives no longer
    /// than `id`: both go in `drop`.
    ring: Option<CompletionRing>,
    /// Whether `reap` takes completions from `ring` (not under valgrind, which does not
    /// know the ring's true size nor that reaping it wrote the read buffers).
    reap_from_ring: bool,
    /// The fork generation of the process that created `id` (see `sys::fork`).
    generation: u64,
    /// POLLED mode: the timer that makes the event fd readable (see `aio_timer`).
    timer: Option<AioTimer>,
}

// SAFETY: `id` and `event_fd` are plain integers; `iocb_ptrs`, `kinds` and `helper` are
// touched only by the submit role (`submit`; `helper` also by `drop`, which has the
// driver to itself), `events` and `ring` only by the reap role (`reap`,
// `completions_ready`), and the `Driver` contract gives each role to one thread at a
// time, so none of them is ever accessed from two threads at once.
unsafe impl Sync for AioDriver {}
// SAFETY: the raw pointers in `iocb_ptrs` are dead scratch between calls, and the ring
// mapping belongs to the process, not to a thread; moving the driver to another thread
// moves nothing the kernel or another thread still uses.
unsafe impl Send for AioDriver {}

/// `(slot index, res)` of a completion: `aio_data` carries the slot index (and, for a
/// helper's stand-in, the result of its command).
fn slot_result(event: &kernel::IoEvent) -> (usize, i64) {
    aio_helper::stand_in_result(event.data, event.res)
}

/// Whether AIO has no iocb for `op`, so the helper thread runs it.
fn runs_on_helper(op: Op) -> bool {
    matches!(op, Op::Fallocate | Op::SyncFileRange)
}

/// `aio_flags`: RESFD in POLLED mode; IOPRIO when the request's class has a kernel
/// ioprio (for transfers: the kernel reads `aio_reqprio` only there).
fn iocb_flags(resfd: bool, chunk: &Chunk) -> u32 {
    let mut flags = if resfd { kernel::IOCB_FLAG_RESFD } else { 0 };
    if chunk.ioprio != 0 && chunk.op.transfers() {
        flags |= kernel::IOCB_FLAG_IOPRIO;
    }
    flags
}

fn opcode(op: Op) -> u16 {
    match op {
        Op::Read => kernel::IOCB_CMD_PREAD,
        Op::Write => kernel::IOCB_CMD_PWRITE,
        Op::Fsync => kernel::IOCB_CMD_FSYNC,
        Op::Fdatasync => kernel::IOCB_CMD_FDSYNC,
        Op::Readv => kernel::IOCB_CMD_PREADV,
        Op::Writev => kernel::IOCB_CMD_PWRITEV,
        // The stand-in's 0-byte read (see `aio_helper`).
        Op::Fallocate | Op::SyncFileRange => kernel::IOCB_CMD_PREAD,
    }
}

/// The `res` for an iocb that `io_submit` refused with `errno`.
///
/// AIO refuses a READ/WRITE on a file without `read_iter`/`write_iter` (a directory,
/// `/dev/full` writes, eventfd writes, inotify, many /proc files) with EINVAL at submit
/// time, where read(2)/write(2) and io_uring work or give the real errno. On this cold
/// path the transfer is done once with preadv2/pwritev2 and the iocb's RWF flags (at
/// the current position on a file without one), as io_uring would — but only when
/// `poll(fd, 0)` says it will not block the submitter; otherwise the answer is EAGAIN,
/// which the engine retries with its usual backoff until the fd is ready, unless the
/// file cannot do that transfer at all (then read(2)/write(2)'s errno).
fn refused_result(errno: i32, iocb: *const Iocb) -> i64 {
    // SAFETY: `iocb` points into the slot array and the kernel refused it, so nobody else
    // reads or writes it now.
    let iocb = unsafe { &*iocb };
    let (write, vectored) = match iocb.aio_lio_opcode {
        kernel::IOCB_CMD_PREAD => (false, false),
        kernel::IOCB_CMD_PWRITE => (true, false),
        kernel::IOCB_CMD_PREADV => (false, true),
        kernel::IOCB_CMD_PWRITEV => (true, true),
        _ => return -i64::from(errno),
    };
    if errno != libc::EINVAL {
        return -i64::from(errno);
    }
    let fd = iocb.aio_fildes as i32;
    let one = libc::iovec {
        iov_base: iocb.aio_buf as *mut libc::c_void,
        iov_len: iocb.aio_nbytes as usize,
    };
    // READV/WRITEV: `aio_buf` is the iovec array and `aio_nbytes` its length.
    let (iov, count) = if vectored {
        (iocb.aio_buf as *const libc::iovec, iocb.aio_nbytes as i32)
    } else {
        (&raw const one, 1)
    };
    match sys::fd::ready_now(fd, write) {
        Err(errno) => -i64::from(errno),
        // Not ready, or never: a file without that operation (a timerfd written) is
        // never ready for it, and would be retried forever.
        Ok(false) => match sys::fd::transfer_possible(fd, write) {
            Ok(()) => -i64::from(libc::EAGAIN),
            Err(errno) => -i64::from(errno),
        },
        Ok(true) => {
            let transfer = |rw_flags| {
                // SAFETY: the iocb was built from the request's next chunk: its buffers
                // (and, vectored, its iovec array) are valid for the transfer until the
                // callback, which has not run.
                unsafe {
                    sys::fd::transfer_once(write, fd, iov, count, iocb.aio_offset as u64, rw_flags)
                }
            };
            let flags = iocb.aio_rw_flags;
            match transfer(flags) {
                // A file without read_iter/write_iter (eventfd, /dev/full) takes no RWF
                // flag through preadv2/pwritev2, moving nothing. io_uring runs such files
                // without them: DSYNC/SYNC mean nothing there, and NOWAIT gives -EAGAIN
                // unless the fd is O_NONBLOCK (then the plain transfer cannot block).
                res if res == -i64::from(libc::EOPNOTSUPP) && flags != 0 => {
                    if flags & libc::RWF_NOWAIT != 0 && !sys::fd::is_nonblocking(fd) {
                        -i64::from(libc::EAGAIN)
                    } else {
                        transfer(0)
                    }
                }
                res => res,
            }
        }
    }
}

/// A write to a blocking file without `RWF_NOWAIT`, after poll said writable: at most
/// `cap` bytes of the chunk's first non-empty segment ([`PIPE_BUF`]: a pipe buffer page
/// is free; [`PTY_PIECE`] for a tty; so that much does not wait; the rest is
/// continued like any short write).
fn cap_write(iocb: &mut Iocb, chunk: &Chunk, cap: u64) {
    match chunk.op {
        Op::Write => iocb.aio_nbytes = chunk.len.min(cap),
        Op::Writev => {
            for i in 0..chunk.len as usize {
                // SAFETY: a WRITEV chunk is a run of `len` iovecs inside the caller's
                // array, valid and unchanged until the callback (ioeng_req_t contract).
                let seg = unsafe { chunk.buf.cast::<libc::iovec>().add(i).read_unaligned() };
                if seg.iov_len > 0 {
                    iocb.aio_lio_opcode = kernel::IOCB_CMD_PWRITE;
                    iocb.aio_buf = seg.iov_base as u64;
                    iocb.aio_nbytes = (seg.iov_len as u64).min(cap);
                    return;
                }
            }
        }
        _ => {}
    }
}

/// Longest `io_getevents` result array; larger depths are reaped in several calls.
const MAX_EVENTS_PER_REAP: usize = 1024;

impl Driver for AioDriver {
    type Slot = AioSlot;

    fn open(depth: u32, batch: u32, event_fd: Option<RawFd>) -> Result<Self, Error> {
        // First, as it needs no cleanup: what the helper needs that can run out (an fd),
        // so that a FALLOCATE or SYNC_FILE_RANGE never fails for want of it later.
        let helper = Helper::new()?;
        // Likewise the scratch arrays sized by the configuration (`OutOfMemory`).
        let iocb_ptrs = try_with_capacity(batch as usize)?;
        let events = try_vec((depth as usize).min(MAX_EVENTS_PER_REAP), |_| {
            kernel::IoEvent::default()
        })?;
        // POLLED: room for the timer's poll too.
        let id = kernel::io_setup(depth + u32::from(event_fd.is_some())).map_err(|errno| {
            Error::Kernel {
                call: "io_setup",
                errno,
            }
        })?;
        let timer = match event_fd.map(AioTimer::new).transpose() {
            Ok(timer) => timer,
            Err(err) => {
                let _ = kernel::io_destroy(id);
                return Err(err);
            }
        };
        // SAFETY: `id` is live; the ring is dropped with the driver, right before
        // io_destroy unmaps it.
        let ring = unsafe { CompletionRing::of_context(id) };
        if event_fd.is_some() && ring.is_none() {
            // POLLED mode tells whether completions are ready from the ring (the eventfd
            // alone can lose one between a reap and the reset of the fd).
            let _ = kernel::io_destroy(id);
            return Err(Error::Kernel {
                call: "io_setup (completion ring of an unknown layout)",
                errno: libc::EOPNOTSUPP,
            });
        }
        Ok(AioDriver {
            id,
            event_fd,
            generation: sys::fork::generation(),
            // Under valgrind, reap only through io_getevents (see `running_on_valgrind`);
            // the ring's header stays readable for `completions_ready`.
            reap_from_ring: !sys::valgrind::running_on_valgrind(),
            ring,
            iocb_ptrs: UnsafeCell::new(iocb_ptrs),
            kinds: UnsafeCell::new(Vec::new()),
            helper: UnsafeCell::new(helper),
            events: UnsafeCell::new(events),
            timer,
        })
    }

    fn submit(&self, ctx: &IoContext<AioSlot>, batch: &[usize], busy: &mut impl FnMut()) {
        // SAFETY: only the submit role calls `submit`, one thread at a time (Driver contract).
        let ptrs = unsafe { &mut *self.iocb_ptrs.get() };
        ptrs.clear();
        // SAFETY: as for `ptrs`.
        let kinds = unsafe { &mut *self.kinds.get() };
        kinds.clear();
        // Allocates only when the batch holds a command for the helper.
        let mut jobs = Vec::new();
        let base = ctx.slots_base();
        for &index in batch {
            // SAFETY: the submitter holds every index of `batch`.
            let slot = unsafe { ctx.slot_mut(index) };
            let event = slot
                .event
                .as_mut()
                .expect("a dispatched slot holds a request");
            if runs_on_helper(event.request.op) {
                jobs.push((index, event.next_chunk()));
                continue;
            }
            let iocb = match self.stream_iocb(ctx, event, kinds) {
                Ok(Some(iocb)) => iocb,
                Ok(None) => self.iocb(&event.next_chunk()),
                Err(res) => {
                    // Settled without the kernel (a stream that is not ready, or an
                    // error); the slot stays ours until then.
                    ctx.fail_unsubmitted(index, res);
                    continue;
                }
            };
            slot.iocb = Iocb {
                aio_data: index as u64,
                ..iocb
            };
            // `AioSlot` is repr(C) with the iocb at offset 0, so the slot pointer is the
            // iocb pointer; derived from the array base, not from the `&mut` above.
            ptrs.push(base.wrapping_add(index).cast::<Iocb>());
        }
        if !jobs.is_empty() {
            self.hand_to_helper(ctx, jobs);
        }

        let mut next = 0;
        while next < ptrs.len() {
            let pending = &ptrs[next..];
            // SAFETY: each pointer targets an iocb filled above inside the slot array,
            // which lives until both threads are joined and the context destroyed. The
            // slot (iocb and event) stays untouched until the completer reaps it, and the
            // buffer is the caller's, valid until its callback by the ioeng_submit
            // contract — which runs only after that reap.
            match ctx.kernel_submit(|| unsafe { kernel::io_submit(self.id, pending) }) {
                Ok(0) => busy(),
                Ok(accepted) => next += accepted,
                Err(libc::EINTR) => {}
                // The kernel is short of resources: wait for completions, then retry.
                Err(libc::EAGAIN) => busy(),
                // The first remaining iocb is bad (EBADF, EINVAL, ...): it alone fails.
                Err(errno) => {
                    // `ptrs` leaves out the helper's commands and the streams settled
                    // without the kernel, so it is not parallel to `batch`: the iocb
                    // names its slot.
                    // SAFETY: the iocb was filled above and the kernel refused it, so
                    // nobody else reads or writes it now.
                    let index = unsafe { (*ptrs[next]).aio_data } as usize;
                    let res = Self::refused(ctx, index, errno, ptrs[next]);
                    ctx.fail_unsubmitted(index, res);
                    next += 1;
                }
            }
        }
    }

    fn cancel(&self, ctx: &IoContext<AioSlot>, targets: &[usize]) {
        for &index in targets {
            let iocb = ctx.slots_base().wrapping_add(index).cast::<Iocb>();
            // SAFETY: `iocb` is slot `index`'s iocb inside the slot array, which outlives
            // the context; the kernel only looks it up. Whatever it answers, the IO
            // completes through the ring exactly once, so the result is not needed.
            let _ = unsafe { kernel::io_cancel(self.id, iocb) };
        }
    }

    fn completions_ready(&self) -> Option<bool> {
        self.ring.as_ref().map(CompletionRing::has_events)
    }

    fn arm_timer(&self, at_ns: u64) -> bool {
        self.timer.as_ref().is_some_and(|t| t.arm(self.id, at_ns))
    }

    fn take_timer_fired(&self) -> bool {
        self.timer.as_ref().is_some_and(AioTimer::take_fired)
    }

    fn timer_count_on_event_fd(&self) -> bool {
        // IOCB_FLAG_RESFD: the timer's poll counts on the event fd like any completion.
        self.timer.as_ref().is_some_and(AioTimer::fired)
    }

    fn reap(&self, ctx: &IoContext<AioSlot>, out: &mut Vec<(usize, i64)>, wait: bool) {
        let first = out.len();
        self.take_completions(out, wait);
        if let Some(timer) = &self.timer {
            // The timer's completion is the driver's own.
            out.retain(|&(index, _)| !timer.take_completion(index as u64));
        }
        for (index, res) in &mut out[first..] {
            // SAFETY: the reap role holds every index it just reaped.
            let slot = unsafe { ctx.slot_mut(*index) };
            if let Some(event) = slot.event.as_mut()
                && StreamState(event.driver_state).is_stream()
            {
                let user_nowait = event.request.flags.has(Flags::NOWAIT);
                let (again, state) = StreamState(event.driver_state).completed(*res, user_nowait);
                event.driver_state = state.0;
                if again.is_some() {
                    // The readiness poll ended, or a try found nothing: go again.
                    *res = RESUBMIT_NOW;
                }
                continue;
            }
            if *res == -i64::from(libc::EOPNOTSUPP)
                && slot.event.as_ref().is_some_and(IoEvent::is_nowait_write)
            {
                // io_uring answers a NOWAIT write that the filesystem will not do
                // without blocking (ext4's buffered path says -EOPNOTSUPP) with
                // -EAGAIN, "retry without NOWAIT"; AIO passes -EOPNOTSUPP through.
                // A file with no NOWAIT support at all is refused at submit, with
                // -EOPNOTSUPP on both backends, and does not come this way.
                *res = -i64::from(libc::EAGAIN);
            }
        }
    }
}

impl AioDriver {
    /// Submit role: builds each command's stand-in iocb in its slot and hands the slots
    /// to the helper thread (started now if this is the first command), counting them
    /// as in flight. If the thread cannot be started (a pids or thread limit: no thread
    /// at all can start, which may last), the commands run here, on the submitting
    /// thread, and settle like a refused submit's fallback transfer: the engine stalls
    /// for the syscall, but nothing waits for a thread that may never come.
    fn hand_to_helper(&self, ctx: &IoContext<AioSlot>, jobs: Vec<(usize, Chunk)>) {
        // SAFETY: only the submit role calls this, one thread at a time (Driver contract).
        let helper = unsafe { &mut *self.helper.get() };
        if helper.start(self.id).is_err() {
            for (index, chunk) in jobs {
                ctx.fail_unsubmitted(index, Command::of(&chunk).run());
            }
            return;
        }
        let helper = &*helper;
        let base = ctx.slots_base();
        let jobs: Vec<Job> = jobs
            .into_iter()
            .map(|(index, chunk)| {
                let iocb = base.wrapping_add(index).cast::<Iocb>();
                // SAFETY: the submitter holds `index`; `iocb` is its slot's iocb (the slot
                // is repr(C) with the iocb first), derived from the array base.
                unsafe {
                    iocb.write(Iocb {
                        aio_data: index as u64,
                        aio_lio_opcode: kernel::IOCB_CMD_PREAD,
                        aio_fildes: helper.null_fd() as u32,
                        // RESFD in POLLED mode (never IOPRIO: a command is no transfer).
                        aio_flags: iocb_flags(self.event_fd.is_some(), &chunk),
                        aio_resfd: self.event_fd.unwrap_or(0) as u32,
                        ..Iocb::default()
                    });
                }
                Job {
                    iocb,
                    index,
                    command: Command::of(&chunk),
                }
            })
            .collect();
        let n = jobs.len();
        // Counted as one submit call whose IOs the kernel took: the completer waits for
        // their completions (the stand-ins) as for any IO.
        let _ = ctx.kernel_submit(|| {
            helper.push(jobs);
            Ok(n)
        });
    }

    /// The transfer iocb of `chunk` (without `aio_data`, which `submit` sets).
    fn iocb(&self, chunk: &Chunk) -> Iocb {
        Iocb {
            aio_lio_opcode: opcode(chunk.op),
            aio_fildes: chunk.fd as u32,
            // Vectors: the iovec run inside the caller's array, and its count.
            // FIXED_BUF needs nothing here: AIO only checks it at submit.
            aio_buf: chunk.buf as u64,
            aio_nbytes: chunk.len,
            aio_rw_flags: chunk.rw_flags,
            aio_offset: chunk.offset as i64,
            aio_flags: iocb_flags(self.event_fd.is_some(), chunk),
            aio_reqprio: chunk.ioprio as i16,
            aio_resfd: self.event_fd.unwrap_or(0) as u32,
            ..Iocb::default()
        }
    }

    /// Submit role: the next iocb of a transfer on a file without a position (see
    /// `aio_stream`), `Ok(None)` for any other request (the plain iocb of its chunk),
    /// or `Err(res)` when the request is settled without the kernel this time.
    fn stream_iocb(
        &self,
        ctx: &IoContext<AioSlot>,
        event: &mut IoEvent,
        kinds: &mut Vec<(i32, FdKind)>,
    ) -> Result<Option<Iocb>, i64> {
        let op = event.request.op;
        if !op.transfers() {
            return Ok(None);
        }
        let mut state = StreamState(event.driver_state);
        if !state.classified() {
            // A registered file was classified once, at registration; any other fd
            // number may name another file than at the last request, so it is asked
            // (once per fd per submit call).
            let registered = event
                .request
                .fixed_file
                .and_then(|index| ctx.registered_file_kind(index));
            let stream = event.classify(|fd| {
                if let Some(kind) = registered {
                    return kind;
                }
                match kinds.iter().find(|(f, _)| *f == fd) {
                    Some(&(_, kind)) => kind,
                    None => {
                        let kind = sys::fd::kind(fd);
                        kinds.push((fd, kind));
                        kind
                    }
                }
            });
            state = state.classify(stream);
            event.driver_state = state.0;
        }
        if !state.is_stream() {
            return Ok(None);
        }
        let fd = event.request.fd;
        let write = !op.reads();
        let nonblocking = || sys::fd::is_nonblocking(fd);
        let (mut io, mut next) = state.next(nonblocking);
        if io == NextIo::Probe {
            // No AIO poll for this file: ask poll(2), which does not block.
            match sys::fd::ready_now(fd, write) {
                Err(errno) => return Err(-i64::from(errno)),
                Ok(false) => {
                    // Not ready, or never (a file without that operation): -EAGAIN is
                    // retried with the engine's backoff.
                    return Err(match sys::fd::transfer_possible(fd, write) {
                        Ok(()) => -i64::from(libc::EAGAIN),
                        Err(errno) => -i64::from(errno),
                    });
                }
                Ok(true) => (io, next) = next.probed_ready().next(nonblocking),
            }
        }
        event.driver_state = next.0;
        let chunk = event.next_chunk();
        if let NextIo::Transfer { capped: true, .. } = io
            && let Some(twin) = sys::fd::nonblocking_tty_twin(fd, write)
        {
            // A blocking tty, ready: once through a non-blocking twin, so that a tty with
            // less room than the piece (or whose input another reader took) answers
            // -EAGAIN instead of holding this thread.
            let res = Self::transfer_on(twin.as_raw_fd(), &chunk, write);
            let user_nowait = event.request.flags.has(Flags::NOWAIT);
            let (again, after) = next.completed(res, user_nowait);
            event.driver_state = after.0;
            return Err(if again.is_some() { RESUBMIT_NOW } else { res });
        }
        let mut iocb = self.iocb(&chunk);
        match io {
            NextIo::Poll => {
                iocb.aio_lio_opcode = kernel::IOCB_CMD_POLL;
                // The poll iocb takes the event mask in aio_buf and nothing else.
                let events = if write { libc::POLLOUT } else { libc::POLLIN };
                iocb.aio_buf = events as u64;
                iocb.aio_nbytes = 0;
                iocb.aio_offset = 0;
                iocb.aio_rw_flags = 0;
            }
            NextIo::Transfer { nowait, capped } => {
                if nowait {
                    iocb.aio_rw_flags |= libc::RWF_NOWAIT;
                }
                if capped && write {
                    // A tty without a twin (a pty master, or no /proc) takes a piece
                    // of PTY_PIECE whenever poll said writable; a pipe or FIFO one free
                    // buffer page.
                    let cap = if sys::fd::is_tty(fd) {
                        PTY_PIECE
                    } else {
                        PIPE_BUF
                    };
                    cap_write(&mut iocb, &chunk, cap);
                }
            }
            NextIo::Probe => unreachable!("a ready probe is followed by the transfer"),
        }
        Ok(Some(iocb))
    }

    /// One non-blocking transfer of `chunk` on `fd` (a tty's twin), on this thread.
    fn transfer_on(fd: RawFd, chunk: &Chunk, write: bool) -> i64 {
        let one = libc::iovec {
            iov_base: chunk.buf.cast(),
            iov_len: chunk.len as usize,
        };
        let (iov, count) = match chunk.op {
            // READV/WRITEV: `buf` is the iovec run, `len` its count.
            Op::Readv | Op::Writev => (chunk.buf as *const libc::iovec, chunk.len as i32),
            _ => (&raw const one, 1),
        };
        // SAFETY: the chunk was built from the request, whose buffers (and, vectored, its
        // iovec array) are valid for the transfer until the callback, which has not run.
        unsafe { sys::fd::transfer_once(write, fd, iov, count, chunk.offset, 0) }
    }

    /// Submit role: the `res` for the iocb of slot `index` that `io_submit` refused with
    /// `errno` (a stream request may learn what its file cannot do and go again).
    fn refused(ctx: &IoContext<AioSlot>, index: usize, errno: i32, iocb: *mut Iocb) -> i64 {
        // SAFETY: the submitter holds `index`: the kernel refused its iocb.
        let slot = unsafe { ctx.slot_mut(index) };
        if let Some(event) = slot.event.as_mut()
            && StreamState(event.driver_state).is_stream()
        {
            let state = StreamState(event.driver_state);
            let (fd, write) = (event.request.fd, !event.request.op.reads());
            let user_nowait = event.request.flags.has(Flags::NOWAIT);
            match state.refused(errno, user_nowait, || sys::fd::transfer_possible(fd, write)) {
                Ok(Some(next)) => {
                    event.driver_state = next.0;
                    return RESUBMIT_NOW;
                }
                Ok(None) if !user_nowait => {
                    // The fallback transfer (a file without read_iter/write_iter, such
                    // as an eventfd written) runs only when poll says ready; without
                    // the RWF_NOWAIT we added, as the caller asked.
                    // SAFETY: `iocb` is this slot's, refused by the kernel: ours alone.
                    unsafe { (*iocb).aio_rw_flags &= !libc::RWF_NOWAIT };
                }
                Ok(None) => {}
                Err(errno) => return -i64::from(errno),
            }
        }
        refused_result(errno, iocb)
    }

    /// Reap role: appends the completions there are; with `wait`, first waits for one.
    fn take_completions(&self, out: &mut Vec<(usize, i64)>, wait: bool) {
        // Completions already in the ring are taken without a syscall (as libaio's
        // user-space reap does); only an empty ring waits in io_getevents.
        if let Some(ring) = self.ring.as_ref().filter(|_| self.reap_from_ring)
            && ring.take(&mut |e: &kernel::IoEvent| out.push(slot_result(e))) > 0
        {
            return;
        }
        if !wait && self.completions_ready() == Some(false) {
            return;
        }
        // SAFETY: only the reap role calls `reap`, one thread at a time (Driver contract).
        let events = unsafe { &mut *self.events.get() };
        match kernel::io_getevents(self.id, usize::from(wait), events, wait) {
            Ok(n) => out.extend(events[..n].iter().map(slot_result)),
            Err(libc::EINTR) => {}
            Err(errno) => report_unexpected("io_getevents", errno),
        }
    }
}

impl Drop for AioDriver {
    fn drop(&mut self) {
        // A forked child's copy names a context of its parent (contexts are not
        // inherited): leave it to the parent.
        if self.generation != sys::fork::generation() {
            return;
        }
        // Joins the helper thread (idle after a drained close) before the context it
        // submits to goes away.
        self.helper.get_mut().stop();
        // Waits for anything still in flight (nothing, after a drained close).
        let _ = kernel::io_destroy(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::tasks::{Callback, IoRequest, Priority};

    unsafe extern "C" fn ignore(_: *mut std::ffi::c_void, _: i64) {}

    #[test]
    fn the_class_ioprio_reaches_the_iocb() {
        let buf = 0x1000 as *mut u8;
        let chunk = |op, ioprio| {
            let len = if op == Op::Fsync { 0 } else { 4096 };
            let req = IoRequest::new(op, Priority::Normal, 0, buf, len, 0).unwrap();
            let mut event = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
            event.ioprio = ioprio;
            event.next_chunk()
        };
        let idle = 3 << 13;
        let c = chunk(Op::Read, idle);
        assert_eq!(c.ioprio, idle);
        assert_eq!(iocb_flags(false, &c), kernel::IOCB_FLAG_IOPRIO);
        assert_eq!(
            iocb_flags(true, &c),
            kernel::IOCB_FLAG_IOPRIO | kernel::IOCB_FLAG_RESFD
        );
        assert_eq!(iocb_flags(false, &chunk(Op::Write, 0)), 0);
        assert_eq!(
            iocb_flags(false, &chunk(Op::Fsync, idle)),
            0,
            "fsync takes none"
        );
    }
}
