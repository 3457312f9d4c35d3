//! The IO event: one accepted request, its callback, and how far the kernel has got.
//!
//! Both drivers turn an [`IoEvent`] into kernel IOs with [`IoEvent::next_chunk`] and fold
//! each kernel result back with [`IoEvent::settle`]; because that arithmetic lives here,
//! the `res` a caller sees is the same on every backend.

use std::ffi::c_void;
use std::time::{Duration, Instant};

use crate::error::Error;

/// What to do with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Fsync,
    Fdatasync,
}

/// Which queue a request waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Normal,
    High,
}

/// The most bytes Linux moves in one read/write call (`MAX_RW_COUNT`, `INT_MAX` rounded
/// down to a page). Larger requests are split into kernel IOs of at most this size, so
/// both backends split identically (an io_uring SQE length is only 32 bits anyway).
pub const MAX_KERNEL_IO: u64 = 0x7fff_f000;

/// The C callback and its context pointer.
pub struct Callback {
    func: unsafe extern "C" fn(*mut c_void, i64),
    ctx: *mut c_void,
}

// SAFETY: the contract of ioeng_submit hands `ctx` to an engine thread, which passes it
// back to `func` untouched; making that cross-thread use sound is the caller's promise.
unsafe impl Send for Callback {}

impl Callback {
    /// Called on the submitting thread (which is what the ThreadSanitizer hook relies on).
    pub fn new(func: unsafe extern "C" fn(*mut c_void, i64), ctx: *mut c_void) -> Self {
        crate::tsan::release();
        Callback { func, ctx }
    }

    /// Runs the callback once; consuming `self` makes "exactly once" a type-level fact.
    pub(crate) fn invoke(self, res: i64) {
        crate::tsan::acquire();
        // SAFETY: `func` is the caller's callback and `ctx` its own argument, as given to
        // ioeng_submit; the header makes the callee's soundness the caller's contract.
        unsafe { (self.func)(self.ctx, res) };
        crate::tsan::release();
    }
}

/// A validated request, as accepted by `submit`.
#[derive(Debug, Clone, Copy)]
pub struct IoRequest {
    pub op: Op,
    pub priority: Priority,
    pub fd: i32,
    pub buf: *mut u8,
    pub len: u64,
    pub offset: u64,
}

// SAFETY: `buf` is caller-owned memory that the contract keeps valid until the callback;
// the engine threads only hand it to the kernel.
unsafe impl Send for IoRequest {}

impl IoRequest {
    /// Checks everything the contract says `ioeng_submit` must refuse synchronously.
    pub fn new(
        op: Op,
        priority: Priority,
        fd: i32,
        buf: *mut u8,
        len: u64,
        offset: u64,
    ) -> Result<Self, Error> {
        let (len, offset, buf) = match op {
            Op::Read | Op::Write => {
                if buf.is_null() {
                    return Err(Error::InvalidArgument("READ/WRITE need a buffer"));
                }
                if len == 0 {
                    return Err(Error::InvalidArgument("READ/WRITE need len > 0"));
                }
                // The kernel takes offsets as loff_t (i64); refuse what it could not
                // address rather than let a chunk's offset wrap negative.
                match offset.checked_add(len) {
                    Some(end) if end <= i64::MAX as u64 => {}
                    _ => return Err(Error::InvalidArgument("offset + len exceeds INT64_MAX")),
                }
                (len, offset, buf)
            }
            // fsync ignores the range; normalize so nothing stale reaches the kernel.
            Op::Fsync | Op::Fdatasync => (0, 0, std::ptr::null_mut()),
        };
        if fd < 0 {
            return Err(Error::BadFd);
        }
        Ok(IoRequest {
            op,
            priority,
            fd,
            buf,
            len,
            offset,
        })
    }

    /// The queue this request waits in.
    pub(crate) fn class(&self) -> QueueClass {
        match (self.priority, self.op) {
            (Priority::High, _) => QueueClass::High,
            (Priority::Normal, Op::Read) => QueueClass::Read,
            (Priority::Normal, _) => QueueClass::Write,
        }
    }
}

/// The three queues of DESIGN §1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueClass {
    High,
    Read,
    Write,
}

/// One kernel IO: the remainder of a request, capped at [`MAX_KERNEL_IO`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub op: Op,
    pub fd: i32,
    pub buf: *mut u8,
    pub len: u64,
    pub offset: u64,
}

/// What the completer does after a kernel result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request needs another kernel IO (short transfer, `EAGAIN`, `EINTR`).
    Resubmit,
    /// The request is finished; deliver this `res` to the callback.
    Done(i64),
}

/// Retries after `EAGAIN`/`EINTR` that go back to the kernel at once; after these, each
/// further retry in a row waits [`FIRST_RETRY_DELAY`], doubling up to [`MAX_RETRY_DELAY`].
///
/// Regular files practically never return `EAGAIN`; a non-blocking pipe or socket with
/// no data does, on AIO for as long as it stays empty (io_uring waits for readiness
/// instead). Retrying that at once kept a CPU busy with hundreds of thousands of
/// `io_submit` calls a second; the backoff bounds the cost at about one retry per
/// millisecond, at the price of up to that much latency once data arrives.
pub const FREE_RETRIES: u32 = 4;
pub const FIRST_RETRY_DELAY: Duration = Duration::from_micros(10);
pub const MAX_RETRY_DELAY: Duration = Duration::from_millis(1);

/// An accepted request in a queue or a slot: the request, its callback, and progress.
pub struct IoEvent {
    pub request: IoRequest,
    callback: Callback,
    /// Bytes already transferred by earlier kernel IOs; `done < request.len` while the
    /// event is in flight for READ/WRITE.
    done: u64,
    /// `EAGAIN`/`EINTR` results in a row (reset by any other result).
    retry_streak: u32,
    /// Set with a resubmission that must wait: the earliest time to issue it.
    retry_at: Option<Instant>,
}

impl IoEvent {
    pub fn new(request: IoRequest, callback: Callback) -> Self {
        IoEvent {
            request,
            callback,
            done: 0,
            retry_streak: 0,
            retry_at: None,
        }
    }

    /// The kernel IO that moves the next part of the request.
    pub fn next_chunk(&self) -> Chunk {
        let req = &self.request;
        debug_assert!(req.len == 0 || self.done < req.len);
        let remaining = req.len - self.done;
        Chunk {
            op: req.op,
            fd: req.fd,
            // `wrapping_add` keeps this safe code; `done <= len` and the caller's buffer
            // spans `len` bytes, so the pointer stays inside it.
            buf: req.buf.wrapping_add(self.done as usize),
            len: remaining.min(MAX_KERNEL_IO),
            offset: req.offset + self.done,
        }
    }

    /// For a resubmission: the earliest time the submitter may issue it (`None`: now).
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// How long the next resubmission waits after `streak` retryable errors in a row.
    fn retry_delay(streak: u32) -> Option<Duration> {
        let delayed = streak.checked_sub(FREE_RETRIES + 1)?;
        // 2^7 * 10 µs already exceeds the 1 ms cap, so the shift never overflows.
        Some((FIRST_RETRY_DELAY * (1 << delayed.min(7))).min(MAX_RETRY_DELAY))
    }

    /// Folds one kernel result (`res` of the last chunk) into the request.
    pub fn settle(&mut self, res: i64) -> Outcome {
        if res == -i64::from(libc::EAGAIN) || res == -i64::from(libc::EINTR) {
            self.retry_streak = self.retry_streak.saturating_add(1);
            self.retry_at = Self::retry_delay(self.retry_streak).map(|d| Instant::now() + d);
            return Outcome::Resubmit;
        }
        self.retry_streak = 0;
        self.retry_at = None;
        if res < 0 {
            return Outcome::Done(res);
        }
        match self.request.op {
            Op::Fsync | Op::Fdatasync => Outcome::Done(0),
            // Zero bytes on a read means end of file: report what we have.
            Op::Read if res == 0 => Outcome::Done(self.done as i64),
            // A regular file never accepts zero bytes of a non-empty write; retrying
            // would spin forever, so report it as an IO error.
            Op::Write if res == 0 => Outcome::Done(-i64::from(libc::EIO)),
            Op::Read | Op::Write => {
                let chunk_len = self.next_chunk().len;
                debug_assert!(res as u64 <= chunk_len, "kernel moved more than asked");
                self.done += (res as u64).min(chunk_len);
                if self.done == self.request.len {
                    Outcome::Done(self.done as i64)
                } else {
                    Outcome::Resubmit
                }
            }
        }
    }

    /// Ends the request: runs its callback with `res`.
    pub(crate) fn finish(self, res: i64) {
        self.callback.invoke(res);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn ignore(_: *mut c_void, _: i64) {}

    fn event(op: Op, len: u64) -> IoEvent {
        let buf = 0x1000 as *mut u8;
        let req = IoRequest::new(op, Priority::Normal, 3, buf, len, 4096).unwrap();
        IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()))
    }

    #[test]
    fn validation_matches_the_contract() {
        let buf = 0x1000 as *mut u8;
        let null = std::ptr::null_mut();
        let n = Priority::Normal;
        assert!(matches!(
            IoRequest::new(Op::Read, n, 3, null, 1, 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            IoRequest::new(Op::Write, n, 3, buf, 0, 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            IoRequest::new(Op::Read, n, -1, buf, 1, 0),
            Err(Error::BadFd)
        ));
        assert!(matches!(
            IoRequest::new(Op::Read, n, 3, buf, 2, i64::MAX as u64 - 1),
            Err(Error::InvalidArgument(_))
        ));
        assert!(IoRequest::new(Op::Read, n, 3, buf, 1, i64::MAX as u64 - 1).is_ok());
        assert!(IoRequest::new(Op::Fsync, n, 3, null, 0, 0).is_ok());
        assert!(matches!(
            IoRequest::new(Op::Fdatasync, n, -5, null, 0, 0),
            Err(Error::BadFd)
        ));
    }

    #[test]
    fn short_transfers_resubmit_the_remainder() {
        let mut ev = event(Op::Write, 10_000);
        assert_eq!(ev.settle(4096), Outcome::Resubmit);
        let chunk = ev.next_chunk();
        assert_eq!((chunk.len, chunk.offset), (10_000 - 4096, 4096 + 4096));
        assert_eq!(chunk.buf as usize, 0x1000 + 4096);
        assert_eq!(ev.settle(10_000 - 4096), Outcome::Done(10_000));
    }

    #[test]
    fn read_at_eof_returns_bytes_so_far() {
        let mut ev = event(Op::Read, 8192);
        assert_eq!(ev.settle(1808), Outcome::Resubmit);
        assert_eq!(ev.settle(0), Outcome::Done(1808));
        assert_eq!(event(Op::Read, 8192).settle(0), Outcome::Done(0));
    }

    #[test]
    fn retryable_errors_resubmit_and_others_finish() {
        let mut ev = event(Op::Read, 512);
        assert_eq!(ev.settle(-i64::from(libc::EAGAIN)), Outcome::Resubmit);
        assert_eq!(ev.settle(-i64::from(libc::EINTR)), Outcome::Resubmit);
        assert_eq!(ev.settle(-i64::from(libc::EBADF)), Outcome::Done(-9));
        assert_eq!(
            event(Op::Write, 512).settle(0),
            Outcome::Done(-i64::from(libc::EIO))
        );
        assert_eq!(event(Op::Fsync, 0).settle(0), Outcome::Done(0));
    }

    #[test]
    fn repeated_eagain_backs_off_up_to_the_cap_and_progress_resets_it() {
        let eagain = -i64::from(libc::EAGAIN);
        let mut ev = event(Op::Read, 8192);
        for _ in 0..FREE_RETRIES {
            assert_eq!(ev.settle(eagain), Outcome::Resubmit);
            assert_eq!(ev.retry_at(), None, "the first retries go out at once");
        }
        let mut delays = Vec::new();
        for _ in 0..12 {
            let before = Instant::now();
            assert_eq!(ev.settle(-i64::from(libc::EINTR)), Outcome::Resubmit);
            let at = ev.retry_at().expect("a delayed retry");
            delays.push(at.duration_since(before));
        }
        assert!(delays[0] >= FIRST_RETRY_DELAY && delays[0] < MAX_RETRY_DELAY);
        assert!(
            delays
                .windows(2)
                .all(|w| w[1] + Duration::from_micros(50) >= w[0])
        );
        assert!(
            delays
                .iter()
                .all(|&d| d <= MAX_RETRY_DELAY + Duration::from_millis(50))
        );
        assert!(delays[11] >= MAX_RETRY_DELAY, "capped at the maximum");
        // Progress ends the streak: the next EAGAIN is retried at once again.
        assert_eq!(ev.settle(100), Outcome::Resubmit);
        assert_eq!(ev.retry_at(), None);
        assert_eq!(ev.settle(eagain), Outcome::Resubmit);
        assert_eq!(ev.retry_at(), None);
        assert_eq!(
            (1..=40).map(IoEvent::retry_delay).max().flatten(),
            Some(MAX_RETRY_DELAY)
        );
    }

    #[test]
    fn huge_requests_are_split_at_the_kernel_maximum() {
        let len = 5 * (1u64 << 30);
        let mut ev = event(Op::Read, len);
        assert_eq!(ev.next_chunk().len, MAX_KERNEL_IO);
        assert_eq!(ev.settle(MAX_KERNEL_IO as i64), Outcome::Resubmit);
        assert_eq!(ev.next_chunk().len, MAX_KERNEL_IO);
        assert_eq!(ev.settle(MAX_KERNEL_IO as i64), Outcome::Resubmit);
        assert_eq!(ev.next_chunk().len, len - 2 * MAX_KERNEL_IO);
        assert_eq!(
            ev.settle((len - 2 * MAX_KERNEL_IO) as i64),
            Outcome::Done(len as i64)
        );
    }
}
