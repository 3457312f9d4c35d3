//! The AIO driver's helper thread: runs the file commands Linux AIO has no iocb for
//! (FALLOCATE, SYNC_FILE_RANGE), and hands each result to the engine's normal reap path
//! through a stand-in iocb (docs/ARCHITECTURE.md, "The AIO helper thread").
//!
//! For such a request the submit role builds, in the request's slot, a *stand-in* iocb:
//! a read of 0 bytes from [`Helper::null_fd`] (a pipe with no writer, where such a read
//! completes at once), carrying the slot's usual `aio_data` and, in POLLED mode, the
//! event fd. It then hands the slot index to this thread ([`Helper::push`]) and counts it
//! as in flight, exactly as if `io_submit` had taken it. The helper runs the syscall,
//! writes its result into the stand-in's `aio_data` ([`stand_in_data`]) and submits the
//! stand-in; its completion is reaped like any other, and [`stand_in_result`] gives the
//! reaper the syscall's result in place of the stand-in's 0. So accounting, the event
//! fd, exactly-once and the close drain see one more IO, nothing new.
//!
//! Ownership of the slot (see `Budget`): submit role (fills the stand-in) → this thread
//! (from `push` until its `io_submit` of the stand-in returned success; it writes only
//! `aio_data`) → the kernel → the reap role. Cancel cannot stop a command already handed
//! over (`io_cancel` finds nothing: the stand-in is submitted only once the syscall ran
//! and completes inside `io_submit`); the callback gets the syscall's result.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::locks::lock;
use super::tasks::{Chunk, Op};
use crate::error::Error;
use crate::race_hooks::{self, Point};
use crate::sys::aio::{self as kernel, AioContextId, Iocb};
use crate::sys::{self, report_unexpected};

/// `aio_data` bit of a stand-in iocb. Slot indices are below 2^15 (`IOENG_MAX_DEPTH`),
/// results of the commands are 0 or `-errno`: both fit beside it.
const STAND_IN: u64 = 1 << 63;
const INDEX_BITS: u32 = 16;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

/// The `aio_data` of slot `index`'s stand-in once its command gave `res`.
pub(crate) fn stand_in_data(index: usize, res: i64) -> u64 {
    debug_assert!((index as u64) <= INDEX_MASK);
    // 0 or -errno; anything else (never seen) would not fit and is reported as -EIO.
    let res = i32::try_from(res).unwrap_or(-libc::EIO);
    STAND_IN | (u64::from(res as u32) << INDEX_BITS) | index as u64
}

/// `(slot index, res)` of a completion whose `aio_data` is `data`: for a stand-in, the
/// result its command gave (the stand-in's own `res` is that of its 0-byte read).
pub(crate) fn stand_in_result(data: u64, res: i64) -> (usize, i64) {
    if data & STAND_IN == 0 {
        return (data as usize, res);
    }
    let command_res = (data >> INDEX_BITS) as u32 as i32;
    ((data & INDEX_MASK) as usize, i64::from(command_res))
}

/// One command AIO has no iocb for (FALLOCATE or SYNC_FILE_RANGE): what its syscall
/// needs of the request's chunk.
pub(crate) struct Command {
    op: Op,
    fd: i32,
    offset: u64,
    len: u64,
    /// FALLOCATE: the mode; SYNC_FILE_RANGE: the flags.
    arg: u32,
}

impl Command {
    pub(crate) fn of(chunk: &Chunk) -> Self {
        debug_assert!(matches!(chunk.op, Op::Fallocate | Op::SyncFileRange));
        Command {
            op: chunk.op,
            fd: chunk.fd,
            offset: chunk.offset,
            len: chunk.len,
            arg: chunk.range_arg,
        }
    }

    /// Runs it: 0 or `-errno`, as the syscall answers. On the helper thread, or on the
    /// submitting thread when the helper cannot be started.
    pub(crate) fn run(&self) -> i64 {
        match self.op {
            Op::Fallocate => sys::range::fallocate(self.fd, self.arg, self.offset, self.len),
            Op::SyncFileRange => {
                sys::range::sync_file_range(self.fd, self.offset, self.len, self.arg)
            }
            op => unreachable!("{op:?} is not a helper command"),
        }
    }
}

/// One command handed to the helper, with the slot it stands in for.
pub(crate) struct Job {
    /// The slot's stand-in iocb, inside the slot array (which outlives the helper: the
    /// driver, which joins it, drops before the slots; see `Shared`).
    pub(crate) iocb: *mut Iocb,
    pub(crate) index: usize,
    pub(crate) command: Command,
}

// SAFETY: `iocb` points into the engine's slot array and is used only by the thread that
// holds the slot index, which the job carries from the submit role to the helper.
unsafe impl Send for Job {}

#[derive(Default)]
struct Jobs {
    pending: VecDeque<Job>,
    /// Set by `Helper::drop`: the thread exits once `pending` is empty.
    stop: bool,
}

#[derive(Default)]
struct Queue {
    jobs: Mutex<Jobs>,
    wake: Condvar,
}

/// The helper of one AIO engine. Its pipe is created at open, so that a command never
/// fails for want of an fd once the engine exists (fallocate(2) itself needs none); its
/// thread is started at the first command (so engines that use none have no extra
/// thread) and joined when the driver drops, i.e. in `ioeng_close` after the drain.
pub(crate) struct Helper {
    /// `None` until the first command.
    thread: Option<Thread>,
    /// The stand-ins' file; closed after the thread is joined.
    null_fd: OwnedFd,
    /// The fork generation the thread runs in (see `sys::fork`).
    generation: u64,
}

/// The running thread and its queue.
struct Thread {
    queue: Arc<Queue>,
    handle: JoinHandle<()>,
}

impl Helper {
    /// At open: the stand-ins' pipe (`EMFILE`/`ENFILE` when the process or the system has
    /// no fd left); no thread yet.
    pub(crate) fn new() -> Result<Self, Error> {
        let null_fd = sys::null_read_fd().map_err(|err| Error::kernel("pipe2", &err))?;
        Ok(Helper {
            thread: None,
            null_fd,
            generation: sys::fork::generation(),
        })
    }

    /// Starts the thread for the AIO context `id`, with every asynchronous signal
    /// blocked, unless it runs already; the errno when it cannot be started.
    pub(crate) fn start(&mut self, id: AioContextId) -> Result<(), i32> {
        if self.thread.is_some() {
            return Ok(());
        }
        let queue = Arc::new(Queue::default());
        let for_thread = Arc::clone(&queue);
        let handle = sys::spawn_signals_blocked("ioeng-aio-helper", move || {
            // A panic here is a libioeng bug that would lose callbacks: abort loudly, as
            // the other engine threads do.
            let run = std::panic::AssertUnwindSafe(|| run(&for_thread, id));
            if std::panic::catch_unwind(run).is_err() {
                eprintln!("libioeng: the AIO helper thread panicked; aborting");
                std::process::abort();
            }
        })
        .map_err(|err| err.raw_os_error().unwrap_or(libc::EIO))?;
        self.thread = Some(Thread { queue, handle });
        Ok(())
    }

    /// The fd of the stand-in iocbs' 0-byte reads.
    pub(crate) fn null_fd(&self) -> RawFd {
        self.null_fd.as_raw_fd()
    }

    /// Hands commands to the thread (`start` succeeded); each slot belongs to it from now
    /// on.
    pub(crate) fn push(&self, jobs: Vec<Job>) {
        let thread = self.thread.as_ref().expect("the helper thread was started");
        lock(&thread.queue.jobs).pending.extend(jobs);
        thread.queue.wake.notify_one();
    }

    /// Stops and joins the thread, if it was started (once the engine is drained, so it is
    /// idle); the driver calls it before the AIO context the thread submits to goes away.
    pub(crate) fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if self.generation != sys::fork::generation() {
            // A forked child's copy: the thread exists only in the parent, and may have
            // held the queue's lock at the fork. Touch neither (the handle is forgotten,
            // not detached).
            std::mem::forget(thread.handle);
            return;
        }
        lock(&thread.queue.jobs).stop = true;
        thread.queue.wake.notify_one();
        // A panic there has aborted the process already.
        let _ = thread.handle.join();
    }
}

/// The thread's loop: each command, then its stand-in, one after the other.
fn run(queue: &Queue, id: AioContextId) {
    loop {
        let job = {
            let mut jobs = lock(&queue.jobs);
            loop {
                if let Some(job) = jobs.pending.pop_front() {
                    break job;
                }
                if jobs.stop {
                    return;
                }
                jobs = queue
                    .wake
                    .wait(jobs)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        };
        let res = job.command.run();
        race_hooks::at(Point::HelperRan);
        // SAFETY: this thread holds the slot (see the module docs): nobody else writes
        // its iocb, and the kernel does not read it before the io_submit below.
        unsafe { (*job.iocb).aio_data = stand_in_data(job.index, res) };
        loop {
            // SAFETY: the stand-in is an initialized iocb in the slot array, which lives
            // until this thread is joined; a 0-byte read names no buffer.
            match unsafe { kernel::io_submit(id, &[job.iocb]) } {
                Ok(1) => break,
                Ok(_) | Err(libc::EINTR) => {}
                // The context is momentarily full: completions free room.
                Err(libc::EAGAIN) => std::thread::sleep(Duration::from_micros(100)),
                Err(errno) => report_unexpected("io_submit(stand-in)", errno),
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // The thread first; `null_fd` is closed after it, as the field drops.
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_in_data_carries_index_and_result() {
        for (index, res) in [(0, 0), (32767, -95), (5, -(libc::EINVAL as i64)), (9, 0)] {
            let data = stand_in_data(index, res);
            assert_eq!(stand_in_result(data, 0), (index, res));
        }
        assert_eq!(stand_in_result(7, 4096), (7, 4096), "not a stand-in");
        assert_eq!(stand_in_result(stand_in_data(3, 1 << 40), 0), (3, -5));
    }

    #[test]
    fn the_timers_completion_is_not_taken_for_a_stand_in() {
        use crate::scheduler::aio_timer::TIMER_DATA;
        // The reaper decodes every completion here first, then filters the timer's out.
        assert_eq!(stand_in_result(TIMER_DATA, 1), (TIMER_DATA as usize, 1));
    }
}
