//! The IO event: one accepted request, its callback, and how far the kernel has got.
//!
//! Both drivers turn an [`IoEvent`] into kernel IOs with [`IoEvent::next_chunk`] and fold
//! each kernel result back with [`IoEvent::settle`]; because that arithmetic lives here,
//! the `res` a caller sees is the same on every backend.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::error::Error;
use crate::sys::fd::FdKind;

/// What to do with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Fsync,
    Fdatasync,
    /// Scatter read: `buf` is the caller's `iovec` array, `len` its count.
    Readv,
    /// Gather write: `buf` is the caller's `iovec` array, `len` its count.
    Writev,
    /// fallocate(2) of `offset..offset + len`; the mode (FALLOC_FL_*) in `buf_index`.
    Fallocate,
    /// sync_file_range(2) of `offset..offset + len` (`len` 0: to the end of the file);
    /// the flags (SYNC_FILE_RANGE_*) in `buf_index`.
    SyncFileRange,
}

impl Op {
    fn is_vectored(self) -> bool {
        matches!(self, Op::Readv | Op::Writev)
    }

    pub(crate) fn reads(self) -> bool {
        matches!(self, Op::Read | Op::Readv)
    }

    /// Whether the op moves data (READ, WRITE and their vectors). FSYNC, FDATASYNC,
    /// FALLOCATE and SYNC_FILE_RANGE do not: they take no flags, no buffer, complete
    /// with 0 or `-errno`, and count as one unit of work whatever their range (the cost
    /// of 1 in DESIGN.md §6.1).
    pub(crate) fn transfers(self) -> bool {
        !self.is_file_command()
    }

    /// A command on the file itself rather than a transfer: FSYNC, FDATASYNC, FALLOCATE,
    /// SYNC_FILE_RANGE (the complement of [`Op::transfers`]).
    pub(crate) fn is_file_command(self) -> bool {
        matches!(
            self,
            Op::Fsync | Op::Fdatasync | Op::Fallocate | Op::SyncFileRange
        )
    }

    /// Whether `buf_index` is the command's argument (FALLOCATE's mode, SYNC_FILE_RANGE's
    /// flags) rather than a registered buffer's index.
    pub(crate) fn takes_range_arg(self) -> bool {
        matches!(self, Op::Fallocate | Op::SyncFileRange)
    }

    /// The non-vectored op moving the same direction (for single-segment chunks).
    fn flat(self) -> Op {
        match self {
            Op::Readv => Op::Read,
            Op::Writev => Op::Write,
            op => op,
        }
    }
}

/// Which queue a request waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    Normal,
    High,
}

/// Per-request flags (the values of `IOENG_REQ_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags(pub u32);

impl Flags {
    pub const DSYNC: u32 = 1 << 0;
    pub const SYNC: u32 = 1 << 1;
    pub const NOWAIT: u32 = 1 << 2;
    pub const FIXED_BUF: u32 = 1 << 3;
    pub const SHORT_OK: u32 = 1 << 4;
    pub const FIXED_FILE: u32 = 1 << 5;
    pub const KNOWN: u32 = Self::DSYNC
        | Self::SYNC
        | Self::NOWAIT
        | Self::FIXED_BUF
        | Self::SHORT_OK
        | Self::FIXED_FILE;

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }

    /// The `RWF_*` bits the kernel gets (`aio_rw_flags` / SQE `rw_flags`).
    pub fn rw_flags(self) -> i32 {
        let mut rwf = 0;
        if self.has(Self::DSYNC) {
            rwf |= libc::RWF_DSYNC;
        }
        if self.has(Self::SYNC) {
            rwf |= libc::RWF_SYNC;
        }
        if self.has(Self::NOWAIT) {
            rwf |= libc::RWF_NOWAIT;
        }
        rwf
    }
}

/// The most bytes Linux moves in one read/write call (`MAX_RW_COUNT`, `INT_MAX` rounded
/// down to a page). Larger requests are split into kernel IOs of at most this size, so
/// both backends split identically (an io_uring SQE length is only 32 bits anyway).
pub const MAX_KERNEL_IO: u64 = 0x7fff_f000;

/// The longest range one SYNC_FILE_RANGE kernel call covers: an io_uring SQE's length
/// is 32 bits, so a longer range is synced in pieces of this size (a multiple of the
/// page size), one after the other, by the continuation path of a short transfer, and
/// only as far as the file has data (see `IoEvent::settle`). Both backends split alike;
/// the result is 0 only if every piece gave 0.
pub const MAX_SYNC_RANGE_PIECE: u64 = 0xffff_f000;

/// Most `iovec` entries in one READV/WRITEV (`IOV_MAX`, `UIO_MAXIOV` in the kernel).
pub const IOV_MAX: u64 = 1024;

/// How long a request whose IOs the kernel keeps cancelling without anyone asking is
/// issued again (`IoEvent::retry_kernel_cancel`), in ns: a second of such results in a
/// row, long enough for a brief pids-limit squeeze to pass and short enough for a file
/// that fails with ECANCELED itself to report it. A time, not a count of tries: under a
/// pids limit each try takes the kernel ~50 ms (io-wq's own retries of the worker).
pub const KERNEL_CANCEL_RETRY_NS: u64 = 1_000_000_000;

/// Most buffers `ioeng_register_buffers` takes (io_uring's `IORING_MAX_REG_BUFFERS`).
pub const MAX_REGISTERED_BUFFERS: u32 = 1 << 14;

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
        let generation = crate::sys::fork::generation();
        // The callback is the user's code: TSan checks it (see `tsan::Ignored`).
        crate::tsan::unignored(|| {
            crate::tsan::acquire();
            // SAFETY: `func` is the caller's callback and `ctx` its own argument, as given
            // to ioeng_submit; the header makes the callee's soundness the caller's contract.
            unsafe { (self.func)(self.ctx, res) };
            crate::tsan::release();
        });
        // A callback that forked and returned in the child goes no further there.
        crate::sys::fork::after_callback(generation);
    }
}

/// A request as C describes it, before validation (`ioeng_req_t` minus the enums); the
/// fields of a validated `IoRequest` too.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpec {
    pub op: Op,
    pub priority: Priority,
    pub fd: i32,
    pub buf: *mut u8,
    pub len: u64,
    pub offset: u64,
    pub flags: Flags,
    pub tag: u64,
    pub deadline_ns: u64,
    pub buf_index: u32,
    /// The IO class (§6.1); 0 = the default class. Checked against the open classes
    /// before the request is built.
    pub class_id: u16,
}

impl RequestSpec {
    /// A plain request: no flags, tag, deadline or registered buffer.
    #[cfg(test)]
    pub fn plain(op: Op, priority: Priority, fd: i32, buf: *mut u8, len: u64, offset: u64) -> Self {
        RequestSpec {
            op,
            priority,
            fd,
            buf,
            len,
            offset,
            flags: Flags::default(),
            tag: 0,
            deadline_ns: 0,
            buf_index: 0,
            class_id: 0,
        }
    }
}

/// A validated request, as accepted by `submit`: its fields (read through `Deref`) are
/// the spec's, normalized (FSYNC: no buffer, length or offset; `buf_index` 0 without
/// FIXED_BUF), plus what validation computed.
#[derive(Debug, Clone, Copy)]
pub struct IoRequest {
    spec: RequestSpec,
    /// Bytes the whole request moves (READ/WRITE: `len`; vectors: the sum; file
    /// commands: 0).
    pub total: u64,
    /// FIXED_FILE: the registered file's index (`spec.fd` is then the engine's own
    /// descriptor of that file, see `use_registered_file`).
    pub fixed_file: Option<u32>,
}

impl std::ops::Deref for IoRequest {
    type Target = RequestSpec;

    fn deref(&self) -> &RequestSpec {
        &self.spec
    }
}

impl std::ops::DerefMut for IoRequest {
    fn deref_mut(&mut self) -> &mut RequestSpec {
        &mut self.spec
    }
}

// SAFETY: `buf` is caller-owned memory that the contract keeps valid until the callback;
// the engine threads only hand it to the kernel (and read a vector's iovec array).
unsafe impl Send for IoRequest {}

/// The `i`-th entry of an iovec array as (base, len).
///
/// # Safety
/// `iov` points to at least `i + 1` readable `iovec`s.
unsafe fn segment(iov: *const u8, i: usize) -> (*mut u8, u64) {
    // SAFETY: the caller vouches for `i + 1` readable entries; read_unaligned because
    // C only promises the array, and an unaligned one must not be UB here.
    let entry = unsafe { iov.cast::<libc::iovec>().add(i).read_unaligned() };
    (entry.iov_base.cast(), entry.iov_len as u64)
}

impl IoRequest {
    /// A plain READ/WRITE/FSYNC/FDATASYNC; see [`IoRequest::from_spec`].
    #[cfg(test)]
    pub fn new(
        op: Op,
        priority: Priority,
        fd: i32,
        buf: *mut u8,
        len: u64,
        offset: u64,
    ) -> Result<Self, Error> {
        if op.is_vectored() {
            return Err(Error::InvalidArgument("vectored requests need from_spec"));
        }
        // SAFETY: not vectored, so `from_spec` reads no caller memory.
        unsafe {
            Self::from_spec(
                &RequestSpec::plain(op, priority, fd, buf, len, offset),
                None,
            )
        }
    }

    /// Checks everything the contract says `ioeng_submit` must refuse synchronously;
    /// `registered` holds the engine's registered buffers as `(base, len)` (FIXED_BUF).
    /// Every -EINVAL condition is checked before the -EBADF one.
    ///
    /// # Safety
    /// For READV/WRITEV with `buf` non-NULL and `len` in 1..=IOV_MAX, `buf` points to
    /// `len` readable `iovec`s that stay valid and unchanged until the callback (the
    /// ioeng_req_t contract): they are read here and again for every kernel IO.
    pub unsafe fn from_spec(
        spec: &RequestSpec,
        registered: Option<&[(usize, usize)]>,
    ) -> Result<Self, Error> {
        let RequestSpec {
            op,
            fd,
            buf,
            len,
            offset,
            flags,
            buf_index,
            ..
        } = *spec;
        if flags.0 & !Flags::KNOWN != 0 {
            return Err(Error::InvalidArgument("unknown flag"));
        }
        if op.is_file_command() && flags.0 & !Flags::FIXED_FILE != 0 {
            return Err(Error::InvalidArgument(
                "FSYNC/FDATASYNC/FALLOCATE/SYNC_FILE_RANGE take no flag but FIXED_FILE",
            ));
        }
        if op.reads() && flags.has(Flags::DSYNC | Flags::SYNC) {
            return Err(Error::InvalidArgument("DSYNC/SYNC on a read"));
        }
        if op.is_vectored() && flags.has(Flags::FIXED_BUF) {
            return Err(Error::InvalidArgument("FIXED_BUF on a vectored request"));
        }
        let (len, offset, buf, total) = match op {
            Op::Read | Op::Write => {
                if buf.is_null() {
                    return Err(Error::InvalidArgument("READ/WRITE need a buffer"));
                }
                if len == 0 {
                    return Err(Error::InvalidArgument("READ/WRITE need len > 0"));
                }
                (len, offset, buf, len)
            }
            Op::Readv | Op::Writev => {
                if buf.is_null() {
                    return Err(Error::InvalidArgument("READV/WRITEV need an iovec array"));
                }
                if len == 0 || len > IOV_MAX {
                    return Err(Error::InvalidArgument("iovec count must be 1..=IOV_MAX"));
                }
                let mut total: u64 = 0;
                for i in 0..len as usize {
                    // SAFETY: `len` entries are readable (this function's contract).
                    let (_, seg_len) = unsafe { segment(buf, i) };
                    total = total
                        .checked_add(seg_len)
                        .filter(|&t| t <= i64::MAX as u64)
                        .ok_or(Error::InvalidArgument("iovec lengths overflow"))?;
                }
                (len, offset, buf, total)
            }
            // fsync ignores the range; normalize so nothing stale reaches the kernel.
            Op::Fsync | Op::Fdatasync => (0, 0, std::ptr::null_mut(), 0),
            // The range goes to the kernel as given (len 0 included: fallocate refuses
            // it, sync_file_range reads it as "to the end"); `buf` is ignored.
            Op::Fallocate | Op::SyncFileRange => (len, offset, std::ptr::null_mut(), 0),
        };
        // The kernel takes offsets as loff_t (i64); refuse what it could not address
        // rather than let a chunk's offset wrap negative.
        let end = if op.takes_range_arg() { len } else { total };
        match offset.checked_add(end) {
            Some(end) if end <= i64::MAX as u64 => {}
            _ => return Err(Error::InvalidArgument("offset + len exceeds INT64_MAX")),
        }
        let buf_index = if flags.has(Flags::FIXED_BUF) || op.takes_range_arg() {
            buf_index
        } else {
            0
        };
        let request = IoRequest {
            spec: RequestSpec {
                buf,
                len,
                offset,
                buf_index,
                ..*spec
            },
            total,
            fixed_file: None,
        };
        request.check_fixed(registered)?;
        // With FIXED_FILE `fd` is an index, checked by `use_registered_file`.
        if fd < 0 && !flags.has(Flags::FIXED_FILE) {
            return Err(Error::BadFd);
        }
        Ok(request)
    }

    /// With FIXED_FILE: `fd` is an index into the engine's registered files (`files`,
    /// the engine's own descriptors); the request then runs on that file, whatever the
    /// caller's descriptor numbers refer to by now. Without it: nothing to do.
    pub fn use_registered_file(&mut self, files: Option<&[OwnedFd]>) -> Result<(), Error> {
        if !self.flags.has(Flags::FIXED_FILE) {
            return Ok(());
        }
        let files = files.ok_or(Error::InvalidArgument(
            "FIXED_FILE without registered files",
        ))?;
        let (index, file) = u32::try_from(self.fd)
            .ok()
            .and_then(|index| Some((index, files.get(index as usize)?)))
            .ok_or(Error::InvalidArgument("FIXED_FILE index (fd) out of range"))?;
        self.fixed_file = Some(index);
        self.spec.fd = file.as_raw_fd();
        Ok(())
    }

    /// With FIXED_BUF: `[buf, buf+len)` must lie inside registered buffer `buf_index`
    /// (`registered` holds `(base, len)` of each; `None`: nothing registered).
    fn check_fixed(&self, registered: Option<&[(usize, usize)]>) -> Result<(), Error> {
        if !self.flags.has(Flags::FIXED_BUF) {
            return Ok(());
        }
        let registered = registered.ok_or(Error::InvalidArgument(
            "FIXED_BUF without registered buffers",
        ))?;
        let &(base, size) = registered
            .get(self.buf_index as usize)
            .ok_or(Error::InvalidArgument("buf_index out of range"))?;
        let start = self.buf as usize;
        let inside = start >= base
            && (start - base) as u64 <= size as u64
            && self.len <= size as u64 - (start - base) as u64;
        if !inside {
            return Err(Error::InvalidArgument("FIXED_BUF range outside its buffer"));
        }
        Ok(())
    }

    /// The queue this request waits in.
    pub(crate) fn class(&self) -> QueueClass {
        match (self.priority, self.op) {
            (Priority::High, _) => QueueClass::High,
            (Priority::Normal, Op::Read | Op::Readv) => QueueClass::Read,
            (Priority::Normal, _) => QueueClass::Write,
        }
    }
}

/// The three queues (docs/ARCHITECTURE.md, "Fairness").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum QueueClass {
    High,
    Read,
    Write,
}

/// One kernel IO: the next part of a request, at most [`MAX_KERNEL_IO`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// READV/WRITEV only when the chunk is a run of whole segments; a continuation
    /// inside a segment (or of a segment above the maximum) is a plain READ/WRITE.
    pub op: Op,
    pub fd: i32,
    /// READ/WRITE: the bytes. READV/WRITEV: the first `iovec` of the run, inside the
    /// caller's array (never written by the engine or the kernel).
    pub buf: *mut u8,
    /// READ/WRITE: bytes. READV/WRITEV: iovec count.
    pub len: u64,
    /// Bytes this IO moves at most.
    pub bytes: u64,
    pub offset: u64,
    /// `RWF_*` for the kernel.
    pub rw_flags: i32,
    /// Registered buffer index (FIXED_BUF requests).
    pub fixed: Option<u16>,
    /// Registered file index (FIXED_FILE requests; `fd` is the engine's descriptor of
    /// the same file, for the drivers that have no registered files).
    pub fixed_file: Option<u32>,
    /// FALLOCATE: the mode; SYNC_FILE_RANGE: the flags; 0 for the other ops.
    pub range_arg: u32,
    /// IOPRIO_PRIO_VALUE for the kernel (its class's `kernel_ioprio`); 0 = none.
    pub ioprio: u16,
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
/// Regular files practically never return `EAGAIN`; a non-blocking file the kernel cannot
/// wait for does, for as long as it stays unready (on AIO a tty: pipes and sockets wait
/// in a poll iocb, see `aio_stream`; io_uring waits for readiness itself). Retrying that
/// at once kept a CPU busy with hundreds of thousands of
/// `io_submit` calls a second; the backoff bounds the cost at about one retry per
/// millisecond, at the price of up to that much latency once data arrives.
pub const FREE_RETRIES: u32 = 4;
pub const FIRST_RETRY_DELAY: Duration = Duration::from_micros(10);
pub const MAX_RETRY_DELAY: Duration = Duration::from_millis(1);

/// A "result" a driver passes to [`IoEvent::settle`] when a step of its own ended (the
/// AIO driver's wait for a stream's readiness): issue the request's next IO at once. It
/// is no kernel result: nothing moved, and no retry backoff applies.
pub const RESUBMIT_NOW: i64 = i64::MIN;

/// Whether a request's file has a position, which decides where a continuation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// Not asked yet: the first kernel IO goes out at the caller's offset either way,
    /// so regular files never pay for the question on the hot path.
    Unknown,
    /// A file with a position: a continuation goes to `offset + done`.
    File,
    /// A stream (pipe, socket, tty: `lseek` says ESPIPE): every kernel IO goes at offset
    /// 0 — streams ignore the offset, except sockets, which refuse any other.
    Stream,
    /// Message-oriented (datagram socket, inotify, eventfd, ...): no position either,
    /// and a short transfer is a whole message, final as read(2) reports it.
    Message,
}

impl Position {
    fn of(fd: i32) -> Self {
        match crate::sys::fd::kind(fd) {
            FdKind::File => Position::File,
            FdKind::Stream => Position::Stream,
            FdKind::Message => Position::Message,
        }
    }
}

/// An accepted request in a queue or a slot: the request, its callback, and progress.
pub struct IoEvent {
    pub request: IoRequest,
    callback: Callback,
    /// Bytes already transferred by earlier kernel IOs; `done < request.total` while
    /// the event is in flight for a transfer. SYNC_FILE_RANGE: the part of the range
    /// already synced.
    done: u64,
    /// Vectors: the segment the next IO starts in, and the bytes of it already moved.
    /// A cursor over the caller's array, which is never modified.
    seg: usize,
    seg_done: u64,
    /// `EAGAIN`/`EINTR` results in a row (reset by any other result).
    retry_streak: u32,
    /// CLOCK_MONOTONIC ns of the first of the `-ECANCELED` results nobody asked for in a
    /// row (`retry_kernel_cancel`); 0: the last result was another one.
    kernel_cancels_since: u64,
    /// Set with a resubmission that must wait: the earliest time to issue it
    /// (CLOCK_MONOTONIC ns, the clock of every engine timer: see `IoContext::next_wake_ns`).
    retry_at: Option<u64>,
    /// Asked (`sys::fd::kind`) at the first continuation or at an ESPIPE, or by a
    /// driver that needs it before the first IO (`classify`).
    position: Position,
    /// The driver's own per-request state (0 when accepted); the AIO driver keeps what
    /// it learned about a stream here (`aio_stream::StreamState`).
    pub(crate) driver_state: u8,
    /// Its class's kernel ioprio, set when it is dispatched (0 = none).
    pub(crate) ioprio: u16,
    /// CLOCK_MONOTONIC ns when it was queued, for the class latency histograms; 0 when
    /// they are off (no clock is read for it then).
    pub(crate) queued_ns: u64,
}

impl IoEvent {
    pub fn new(request: IoRequest, callback: Callback) -> Self {
        IoEvent {
            request,
            callback,
            done: 0,
            seg: 0,
            seg_done: 0,
            retry_streak: 0,
            kernel_cancels_since: 0,
            retry_at: None,
            position: Position::Unknown,
            driver_state: 0,
            ioprio: 0,
            queued_ns: 0,
        }
    }

    /// Segment `i` of a vectored request.
    fn segment(&self, i: usize) -> (*mut u8, u64) {
        debug_assert!(self.request.op.is_vectored() && (i as u64) < self.request.len);
        // SAFETY: `from_spec` checked that the caller's array has `len` entries, which
        // the contract keeps valid and unchanged until the callback; `i < len`.
        unsafe { segment(self.request.buf, i) }
    }

    /// The kernel IO that moves the next part of the request.
    pub fn next_chunk(&self) -> Chunk {
        let req = &self.request;
        debug_assert!(req.total == 0 || self.done < req.total);
        let mut chunk = Chunk {
            op: req.op,
            fd: req.fd,
            buf: req.buf,
            len: 0,
            bytes: 0,
            offset: match self.position {
                Position::Stream | Position::Message => 0,
                Position::Unknown | Position::File => req.offset + self.done,
            },
            rw_flags: req.flags.rw_flags(),
            fixed: req
                .flags
                .has(Flags::FIXED_BUF)
                .then_some(req.buf_index as u16),
            fixed_file: req.fixed_file,
            range_arg: if req.op.takes_range_arg() {
                req.buf_index
            } else {
                0
            },
            ioprio: self.ioprio,
        };
        match req.op {
            Op::Fsync | Op::Fdatasync => {}
            Op::Fallocate => chunk.len = req.len,
            // `done` counts the range already synced; `len` 0 (to the end) is one piece.
            Op::SyncFileRange => chunk.len = (req.len - self.done).min(MAX_SYNC_RANGE_PIECE),
            Op::Read | Op::Write => {
                // `wrapping_add` keeps this safe code; `done <= len` and the caller's
                // buffer spans `len` bytes, so the pointer stays inside it.
                chunk.buf = req.buf.wrapping_add(self.done as usize);
                chunk.len = (req.total - self.done).min(MAX_KERNEL_IO);
                chunk.bytes = chunk.len;
            }
            Op::Readv | Op::Writev => self.vector_chunk(&mut chunk),
        }
        // A kernel IO of 0 bytes reports no progress; only a 0-byte request may issue one.
        debug_assert!(!req.op.transfers() || chunk.bytes > 0 || req.total == 0);
        chunk
    }

    /// `next_chunk().bytes`, asked once per completion: a plain transfer's without
    /// building the whole chunk.
    fn next_chunk_bytes(&self) -> u64 {
        let bytes = match self.request.op {
            Op::Read | Op::Write => (self.request.total - self.done).min(MAX_KERNEL_IO),
            _ => self.next_chunk().bytes,
        };
        debug_assert_eq!(bytes, self.next_chunk().bytes);
        bytes
    }

    /// A vector's next IO: the longest run of whole segments from the cursor within
    /// [`MAX_KERNEL_IO`] bytes, or, when the cursor is inside a segment (after a short
    /// transfer) or one segment alone exceeds the maximum, a plain IO of that segment.
    fn vector_chunk(&self, chunk: &mut Chunk) {
        let count = self.request.len as usize;
        let mut seg = self.seg;
        if self.seg_done == 0 {
            // Empty segments move nothing: start at the first one that does, else a run
            // of empty segments before one above the maximum would move 0 bytes, again
            // and again. (`advance_cursor` steps over them as it moves the cursor.) Only
            // an all-empty rest, i.e. a request of 0 bytes, keeps its last segment.
            while seg + 1 < count && self.segment(seg).1 == 0 {
                seg += 1;
            }
            let mut n = 0;
            let mut bytes = 0u64;
            while seg + n < count {
                let (_, seg_len) = self.segment(seg + n);
                if bytes + seg_len > MAX_KERNEL_IO {
                    break;
                }
                bytes += seg_len;
                n += 1;
            }
            if n > 0 {
                // Points into the caller's array; the kernel only reads it.
                chunk.buf = self
                    .request
                    .buf
                    .wrapping_add(seg * size_of::<libc::iovec>());
                chunk.len = n as u64;
                chunk.bytes = bytes;
                return;
            }
        }
        let (base, first_len) = self.segment(seg);
        chunk.op = self.request.op.flat();
        chunk.buf = base.wrapping_add(self.seg_done as usize);
        chunk.len = (first_len - self.seg_done).min(MAX_KERNEL_IO);
        chunk.bytes = chunk.len;
    }

    /// Moves the vector cursor past `moved` bytes.
    fn advance_cursor(&mut self, mut moved: u64) {
        let count = self.request.len as usize;
        while moved > 0 && self.seg < count {
            let left_in_seg = self.segment(self.seg).1 - self.seg_done;
            if moved >= left_in_seg {
                moved -= left_in_seg;
                self.seg += 1;
                self.seg_done = 0;
            } else {
                self.seg_done += moved;
                moved = 0;
            }
        }
    }

    /// Whether the request's file has no position (stream or message fd), asking the
    /// kernel now if nobody did yet; `kind` gives the answer (`sys::fd::kind`, which a
    /// driver may memoize per fd for a round).
    pub(crate) fn classify(&mut self, kind: impl FnOnce(i32) -> FdKind) -> bool {
        if self.position == Position::Unknown {
            self.position = match kind(self.request.fd) {
                FdKind::File => Position::File,
                FdKind::Stream => Position::Stream,
                FdKind::Message => Position::Message,
            };
        }
        matches!(self.position, Position::Stream | Position::Message)
    }

    /// A WRITE/WRITEV with `IOENG_REQ_NOWAIT`.
    pub(crate) fn is_nowait_write(&self) -> bool {
        let op = self.request.op;
        op.transfers() && !op.reads() && self.request.flags.has(Flags::NOWAIT)
    }

    /// The caller's tag (0 = none).
    pub fn tag(&self) -> u64 {
        self.request.tag
    }

    /// For a resubmission: the earliest time the submitter may issue it, CLOCK_MONOTONIC
    /// ns (`None`: now).
    pub fn retry_at(&self) -> Option<u64> {
        self.retry_at
    }

    /// How long the next resubmission waits after `streak` retryable errors in a row.
    fn retry_delay(streak: u32) -> Option<Duration> {
        let delayed = streak.checked_sub(FREE_RETRIES + 1)?;
        // 2^7 * 10 µs already exceeds the 1 ms cap, so the shift never overflows.
        Some((FIRST_RETRY_DELAY * (1 << delayed.min(7))).min(MAX_RETRY_DELAY))
    }

    /// A kernel `-ECANCELED` that nobody asked for at `now_ns`, on a backend whose kernel
    /// cancels IO on its own (`Slot::KERNEL_CANCELS_ON_ITS_OWN`): true while it is to be
    /// issued again, as after EINTR (a cancelled IO ran nothing). Only until such results
    /// have come in a row for [`KERNEL_CANCEL_RETRY_NS`]: a file may fail IO with
    /// ECANCELED itself (a FUSE server, a driver), and that error must reach the
    /// callback, not be retried forever.
    pub fn retry_kernel_cancel(&mut self, now_ns: u64) -> bool {
        if self.kernel_cancels_since == 0 {
            self.kernel_cancels_since = now_ns.max(1);
        }
        now_ns.saturating_sub(self.kernel_cancels_since) < KERNEL_CANCEL_RETRY_NS
    }

    /// Any other kernel result: a later `-ECANCELED` starts a new row.
    pub fn kernel_cancels_end(&mut self) {
        self.kernel_cancels_since = 0;
    }

    /// Folds one kernel result (`res` of the last chunk) into the request.
    pub fn settle(&mut self, res: i64) -> Outcome {
        if res == RESUBMIT_NOW {
            self.retry_streak = 0;
            self.retry_at = None;
            return Outcome::Resubmit;
        }
        let eagain = res == -i64::from(libc::EAGAIN);
        if eagain && self.request.flags.has(Flags::NOWAIT) {
            // NOWAIT: the caller asked to hear about it. Bytes an earlier IO of this
            // request already moved are not lost: they are the result.
            self.retry_streak = 0;
            self.retry_at = None;
            return Outcome::Done(if self.done > 0 { self.done as i64 } else { res });
        }
        if eagain || res == -i64::from(libc::EINTR) {
            self.retry_streak = self.retry_streak.saturating_add(1);
            self.retry_at = Self::retry_delay(self.retry_streak)
                .map(|d| crate::sys::monotonic_ns() + d.as_nanos() as u64);
            return Outcome::Resubmit;
        }
        self.retry_streak = 0;
        self.retry_at = None;
        let op = self.request.op;
        // A socket refuses a position other than 0; a stream ignores the offset, so it
        // goes again at 0 (cold path: an error result).
        if res == -i64::from(libc::ESPIPE)
            && op.transfers()
            && matches!(self.position, Position::Unknown | Position::File)
            && self.next_chunk().offset != 0
        {
            let position = Position::of(self.request.fd);
            if position != Position::File {
                self.position = position;
                return Outcome::Resubmit;
            }
        }
        let failed = if res < 0 {
            res
        } else if op == Op::SyncFileRange {
            // One piece of the range synced (see `MAX_SYNC_RANGE_PIECE`); the next one
            // goes like a short transfer's continuation, unless the rest lies wholly past
            // the file's data, where there is no page to write or wait for (a range to
            // INT64_MAX must not take 2^31 kernel calls). Asked at each continuation, so
            // a file that grew since the request was queued is covered.
            self.done += self.next_chunk().len;
            let rest = self.request.offset + self.done;
            if self.done < self.request.len
                && crate::sys::range::data_end(self.request.fd).is_none_or(|end| rest < end)
            {
                return Outcome::Resubmit;
            }
            return Outcome::Done(0);
        } else if !op.transfers() {
            return Outcome::Done(0);
        } else {
            let chunk_len = self.next_chunk_bytes();
            if res == 0 && chunk_len > 0 {
                if op.reads() {
                    // Zero bytes on a read means end of file (or a stream's peer shut
                    // down): report what we have.
                    return Outcome::Done(self.done as i64);
                }
                // A file never accepts zero bytes of a non-empty write; retrying would
                // spin forever, so report it as an IO error.
                -i64::from(libc::EIO)
            } else {
                debug_assert!(res as u64 <= chunk_len, "kernel moved more than asked");
                let moved = (res as u64).min(chunk_len);
                self.done += moved;
                if op.is_vectored() {
                    self.advance_cursor(moved);
                }
                if self.done == self.request.total
                    || (moved < chunk_len && self.request.flags.has(Flags::SHORT_OK))
                {
                    return Outcome::Done(self.done as i64);
                }
                if self.position == Position::Unknown {
                    self.position = Position::of(self.request.fd);
                }
                if self.position == Position::Message {
                    return Outcome::Done(self.done as i64);
                }
                return Outcome::Resubmit;
            }
        };
        // Bytes already taken from or given to a stream cannot be moved again: like
        // read(2)/write(2), report them; the error shows on the next request. A file
        // keeps its data at its offset, so there the error is the more useful answer.
        if self.done > 0 && matches!(self.position, Position::Stream | Position::Message) {
            Outcome::Done(self.done as i64)
        } else {
            Outcome::Done(failed)
        }
    }

    /// Ends the request: runs its callback with `res`.
    pub(crate) fn finish(self, res: i64) {
        self.callback.invoke(res);
    }

    /// The callback alone, for a finished request that is taken out of its slot
    /// (`slot.take()`, then this): the rest of the event is never copied.
    pub(crate) fn into_callback(self) -> Callback {
        self.callback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn ignore(_: *mut c_void, _: i64) {}

    /// An fd with a position (lseek works on /dev/zero), open for the whole test run.
    fn file_fd() -> i32 {
        static FILE: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
        let file = FILE.get_or_init(|| std::fs::File::open("/dev/zero").expect("/dev/zero"));
        std::os::fd::AsRawFd::as_raw_fd(file)
    }

    fn event_on(fd: i32, op: Op, len: u64) -> IoEvent {
        let buf = 0x1000 as *mut u8;
        let req = IoRequest::new(op, Priority::Normal, fd, buf, len, 4096).unwrap();
        IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()))
    }

    fn event(op: Op, len: u64) -> IoEvent {
        event_on(file_fd(), op, len)
    }

    /// A pipe's two ends, closed on drop.
    struct Pipe([std::os::fd::OwnedFd; 2]);
    fn pipe() -> Pipe {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe(2) returns.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both descriptors were just created and are owned by nobody else.
        Pipe(fds.map(|fd| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }))
    }
    impl Pipe {
        fn fd(&self, end: usize) -> i32 {
            std::os::fd::AsRawFd::as_raw_fd(&self.0[end])
        }
    }

    #[test]
    fn stream_continuations_carry_no_position_and_keep_moved_bytes() {
        let p = pipe();
        let mut ev = event_on(p.fd(0), Op::Read, 4096);
        assert_eq!(
            ev.next_chunk().offset,
            4096,
            "the first IO: no question asked"
        );
        assert_eq!(ev.settle(100), Outcome::Resubmit);
        let chunk = ev.next_chunk();
        assert_eq!((chunk.offset, chunk.len), (0, 3996));
        assert_eq!(chunk.buf as usize, 0x1000 + 100);
        assert_eq!(
            ev.settle(0),
            Outcome::Done(100),
            "peer shut down: bytes so far"
        );
        // A write that moved bytes and then failed reports the bytes moved.
        let mut ev = event_on(p.fd(1), Op::Write, 1 << 20);
        assert_eq!(ev.settle(65536), Outcome::Resubmit);
        assert_eq!(ev.settle(-i64::from(libc::EAGAIN)), Outcome::Resubmit);
        assert_eq!(ev.settle(-i64::from(libc::EPIPE)), Outcome::Done(65536));
        // Nothing moved: the error itself.
        let mut ev = event_on(p.fd(1), Op::Write, 10);
        assert_eq!(
            ev.settle(-i64::from(libc::EPIPE)),
            Outcome::Done(-i64::from(libc::EPIPE))
        );
    }

    #[test]
    fn a_short_message_is_final() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors socketpair(2) returns.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_DGRAM, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0);
        let mut ev = event_on(fds[0], Op::Read, 4096);
        assert_eq!(
            ev.settle(100),
            Outcome::Done(100),
            "one datagram, as read(2)"
        );
        for fd in fds {
            // SAFETY: both descriptors were created above and are closed once.
            unsafe { libc::close(fd) };
        }
    }

    #[test]
    fn espipe_on_a_stream_goes_again_without_a_position() {
        let p = pipe();
        let espipe = -i64::from(libc::ESPIPE);
        let mut ev = event_on(p.fd(0), Op::Read, 10);
        assert_eq!(ev.settle(espipe), Outcome::Resubmit);
        assert_eq!(ev.next_chunk().offset, 0);
        assert_eq!(ev.settle(espipe), Outcome::Done(espipe), "asked once only");
        // A file with a position keeps ESPIPE as its answer.
        assert_eq!(event(Op::Read, 10).settle(espipe), Outcome::Done(espipe));
    }

    #[test]
    fn file_errors_after_a_partial_transfer_stay_errors() {
        let mut ev = event(Op::Write, 8192);
        assert_eq!(ev.settle(4096), Outcome::Resubmit);
        assert_eq!(ev.next_chunk().offset, 8192);
        assert_eq!(
            ev.settle(-i64::from(libc::ENOSPC)),
            Outcome::Done(-i64::from(libc::ENOSPC))
        );
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
    fn short_ok_finishes_a_short_transfer_as_the_kernel_left_it() {
        for op in [Op::Read, Op::Write] {
            let mut ev = event(op, 10_000);
            ev.request.flags = Flags(Flags::SHORT_OK);
            assert_eq!(ev.settle(-i64::from(libc::EAGAIN)), Outcome::Resubmit);
            assert_eq!(ev.settle(4096), Outcome::Done(4096), "{op:?}");
        }
        // A part of a split transfer that moved in full is not short.
        let mut ev = event(Op::Read, MAX_KERNEL_IO + 10);
        ev.request.flags = Flags(Flags::SHORT_OK);
        assert_eq!(ev.settle(MAX_KERNEL_IO as i64), Outcome::Resubmit);
        assert_eq!(ev.settle(3), Outcome::Done(MAX_KERNEL_IO as i64 + 3));
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
        // Each delay lies between `at - after` and `at - before` (the clock is read inside
        // `settle`): lower bounds are checked on the first, upper bounds on the second, so
        // a thread descheduled between the reads cannot fail the test.
        let (mut low, mut high) = (Vec::new(), Vec::new());
        for _ in 0..12 {
            let before = crate::sys::monotonic_ns();
            assert_eq!(ev.settle(-i64::from(libc::EINTR)), Outcome::Resubmit);
            let after = crate::sys::monotonic_ns();
            let at = ev.retry_at().expect("a delayed retry");
            low.push(Duration::from_nanos(at.saturating_sub(after)));
            high.push(Duration::from_nanos(at - before));
        }
        assert!(high[0] >= FIRST_RETRY_DELAY && low[0] < MAX_RETRY_DELAY);
        assert!(
            (1..12).all(|i| high[i] >= low[i - 1]),
            "never shorter than the last"
        );
        assert!(low.iter().all(|&d| d <= MAX_RETRY_DELAY));
        assert!(high[11] >= MAX_RETRY_DELAY, "capped at the maximum");
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

    fn iov(segs: &[(usize, u64)]) -> Vec<libc::iovec> {
        segs.iter()
            .map(|&(base, len)| libc::iovec {
                iov_base: base as *mut c_void,
                iov_len: len as usize,
            })
            .collect()
    }

    fn spec(op: Op, buf: *mut u8, len: u64) -> RequestSpec {
        RequestSpec::plain(op, Priority::Normal, 3, buf, len, 0)
    }

    fn vector(op: Op, iovs: &[libc::iovec]) -> IoEvent {
        let s = spec(op, iovs.as_ptr() as *mut u8, iovs.len() as u64);
        // SAFETY: `iovs` holds `len` entries and outlives the event in each test.
        let req = unsafe { IoRequest::from_spec(&s, None) }.unwrap();
        IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()))
    }

    fn refused(s: RequestSpec) -> bool {
        matches!(
            // SAFETY: vector specs in these tests point at live arrays of `len` entries.
            unsafe { IoRequest::from_spec(&s, None) },
            Err(Error::InvalidArgument(_))
        )
    }

    #[test]
    fn kernel_cancels_are_retried_for_a_second_in_a_row() {
        let req = IoRequest::new(Op::Read, Priority::Normal, 0, 8 as *mut u8, 1, 0).unwrap();
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        let t0 = 5 * KERNEL_CANCEL_RETRY_NS;
        assert!(ev.retry_kernel_cancel(t0));
        assert!(ev.retry_kernel_cancel(t0 + KERNEL_CANCEL_RETRY_NS - 1));
        assert!(
            !ev.retry_kernel_cancel(t0 + KERNEL_CANCEL_RETRY_NS),
            "a second in a row"
        );
        // Another result between them starts a new row.
        ev.kernel_cancels_end();
        assert!(ev.retry_kernel_cancel(t0 + 10 * KERNEL_CANCEL_RETRY_NS));
    }

    #[test]
    fn a_fixed_file_request_runs_on_the_engines_copy_of_its_index() {
        let files: Vec<OwnedFd> = (0..2)
            .map(|_| std::fs::File::open("/dev/null").unwrap().into())
            .collect();
        let buf = 0x1000 as *mut u8;
        let fixed = |index| RequestSpec {
            flags: Flags(Flags::FIXED_FILE),
            ..RequestSpec::plain(Op::Read, Priority::Normal, index, buf, 1, 0)
        };
        // SAFETY: not vectored, so `from_spec` reads no caller memory.
        let checked = |spec: RequestSpec| unsafe { IoRequest::from_spec(&spec, None) };
        let mut request = checked(fixed(1)).unwrap();
        request.use_registered_file(Some(&files)).unwrap();
        assert_eq!(request.fd, files[1].as_raw_fd());
        assert_eq!(request.fixed_file, Some(1));
        let event = IoEvent::new(request, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(event.next_chunk().fixed_file, Some(1));
        // A negative index is not a bad descriptor: -EINVAL, like any index out of range.
        let mut negative = checked(fixed(-1)).expect("no -EBADF check for an index");
        assert!(matches!(
            negative.use_registered_file(Some(&files)),
            Err(Error::InvalidArgument(_))
        ));
        let mut past = checked(fixed(2)).unwrap();
        assert!(past.use_registered_file(Some(&files)).is_err());
        let mut unregistered = checked(fixed(0)).unwrap();
        assert!(unregistered.use_registered_file(None).is_err());
        // Without the flag `fd` stays the caller's descriptor.
        let mut plain =
            checked(RequestSpec::plain(Op::Read, Priority::Normal, 7, buf, 1, 0)).unwrap();
        plain.use_registered_file(Some(&files)).unwrap();
        assert_eq!((plain.fd, plain.fixed_file), (7, None));
    }

    #[test]
    fn flag_combinations_are_validated() {
        let buf = 0x1000 as *mut u8;
        let with = |op, flags| RequestSpec {
            flags: Flags(flags),
            ..spec(op, buf, if op == Op::Fsync { 0 } else { 1 })
        };
        assert!(refused(with(Op::Read, 1 << 6)), "unknown bit");
        assert!(!refused(with(Op::Read, Flags::SHORT_OK)));
        assert!(
            refused(with(Op::Fsync, Flags::SHORT_OK)),
            "no flags on FSYNC"
        );
        // FIXED_FILE is the one flag a file command takes (its index is checked later,
        // by `use_registered_file`).
        assert!(!refused(with(Op::Fsync, Flags::FIXED_FILE)));
        assert!(refused(with(Op::Fsync, Flags::FIXED_FILE | Flags::NOWAIT)));
        assert!(refused(with(Op::Fsync, Flags::NOWAIT)));
        assert!(refused(with(Op::Fdatasync, Flags::DSYNC)));
        assert!(refused(with(Op::Read, Flags::DSYNC)));
        assert!(refused(with(Op::Read, Flags::SYNC)));
        assert!(!refused(with(Op::Read, Flags::NOWAIT)));
        assert!(!refused(with(
            Op::Write,
            Flags::DSYNC | Flags::SYNC | Flags::NOWAIT
        )));
        let one = iov(&[(0x1000, 8)]);
        let v = |op, flags| RequestSpec {
            flags: Flags(flags),
            ..spec(op, one.as_ptr() as *mut u8, 1)
        };
        assert!(refused(v(Op::Readv, Flags::FIXED_BUF)));
        assert!(refused(v(Op::Writev, Flags::FIXED_BUF)));
        assert!(refused(v(Op::Readv, Flags::DSYNC)));
        assert!(!refused(v(Op::Writev, Flags::DSYNC)));
        assert_eq!(
            Flags(Flags::DSYNC | Flags::NOWAIT).rw_flags(),
            libc::RWF_DSYNC | libc::RWF_NOWAIT
        );
    }

    #[test]
    fn vector_counts_and_totals_are_validated() {
        let many = iov(&vec![(0x1000, 1); IOV_MAX as usize + 1]);
        let ptr = many.as_ptr() as *mut u8;
        assert!(refused(spec(Op::Readv, ptr, 0)));
        assert!(refused(spec(Op::Readv, std::ptr::null_mut(), 1)));
        assert!(refused(spec(Op::Writev, ptr, IOV_MAX + 1)));
        // SAFETY: `many` has more than IOV_MAX entries.
        let max = unsafe { IoRequest::from_spec(&spec(Op::Writev, ptr, IOV_MAX), None) }.unwrap();
        assert_eq!(max.total, IOV_MAX);
        let huge = iov(&[(0x1000, u64::MAX / 2), (0x1000, u64::MAX / 2)]);
        assert!(refused(spec(Op::Readv, huge.as_ptr() as *mut u8, 2)));
        let sixteen = iov(&[(0x1000, 16)]);
        let near_end = RequestSpec {
            offset: i64::MAX as u64 - 8,
            ..spec(Op::Readv, sixteen.as_ptr() as *mut u8, 1)
        };
        assert!(refused(near_end));
    }

    #[test]
    fn fixed_buffers_are_range_checked() {
        let table = [(0x10000usize, 4096usize), (0x20000, 8192)];
        let fixed =
            |buf: usize, len: u64, index: u32, fd: i32, table: Option<&[(usize, usize)]>| {
                let s = RequestSpec {
                    flags: Flags(Flags::FIXED_BUF),
                    buf_index: index,
                    fd,
                    ..spec(Op::Read, buf as *mut u8, len)
                };
                // SAFETY: not vectored.
                unsafe { IoRequest::from_spec(&s, table) }
            };
        let t = Some(&table[..]);
        assert!(fixed(0x10000, 4096, 0, 3, t).is_ok());
        assert!(fixed(0x21000, 4096, 1, 3, t).is_ok());
        assert!(fixed(0x10001, 4096, 0, 3, t).is_err());
        assert!(fixed(0x0ffff, 2, 0, 3, t).is_err());
        assert!(fixed(0x10000, 4096, 2, 3, t).is_err());
        assert!(fixed(0x10000, 1, 0, 3, None).is_err());
        // -EINVAL before -EBADF.
        assert!(matches!(
            fixed(0x10000, 1, 9, -1, t),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(fixed(0x10000, 1, 0, -1, t), Err(Error::BadFd)));
        let req = fixed(0x21000, 4096, 1, 3, t).unwrap();
        let ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(ev.next_chunk().fixed, Some(1));
    }

    #[test]
    fn vector_continues_inside_a_segment_without_touching_the_array() {
        let iovs = iov(&[(0x1000, 10), (0x2000, 20), (0x3000, 30)]);
        let before = format!("{iovs:?}");
        let mut ev = vector(Op::Readv, &iovs);
        let first = ev.next_chunk();
        assert_eq!((first.op, first.len, first.bytes), (Op::Readv, 3, 60));
        assert_eq!(first.buf as usize, iovs.as_ptr() as usize);
        // 15 bytes: all of segment 0 and 5 of segment 1.
        assert_eq!(ev.settle(15), Outcome::Resubmit);
        let c = ev.next_chunk();
        assert_eq!(
            (c.op, c.buf as usize, c.len, c.offset),
            (Op::Read, 0x2005, 15, 15)
        );
        assert_eq!(ev.settle(15), Outcome::Resubmit);
        // Back on a segment boundary: the rest of the caller's array, in place.
        let c = ev.next_chunk();
        assert_eq!((c.op, c.len, c.bytes, c.offset), (Op::Readv, 1, 30, 30));
        assert_eq!(c.buf as usize, iovs.as_ptr().wrapping_add(2) as usize);
        assert_eq!(ev.settle(0), Outcome::Done(30), "EOF: bytes so far");
        assert_eq!(
            format!("{iovs:?}"),
            before,
            "the caller's array is unchanged"
        );
        let mut w = vector(Op::Writev, &iovs);
        assert_eq!(w.settle(60), Outcome::Done(60));
        let mut w = vector(Op::Writev, &iovs);
        assert_eq!(w.settle(0), Outcome::Done(-i64::from(libc::EIO)));
    }

    #[test]
    fn vectors_above_the_kernel_maximum_are_split() {
        let g = 1u64 << 30;
        let iovs = iov(&[(0x1000, g), (0x1000, g), (0x1000, 3 * g)]);
        let mut ev = vector(Op::Writev, &iovs);
        let c = ev.next_chunk();
        assert_eq!(
            (c.op, c.len, c.bytes),
            (Op::Writev, 1, g),
            "2 GiB would exceed"
        );
        assert_eq!(ev.settle(g as i64), Outcome::Resubmit);
        let c = ev.next_chunk();
        assert_eq!((c.op, c.len, c.bytes), (Op::Writev, 1, g));
        assert_eq!(ev.settle(g as i64), Outcome::Resubmit);
        // One segment above the maximum: plain IOs of at most the maximum.
        let c = ev.next_chunk();
        assert_eq!((c.op, c.bytes, c.offset), (Op::Write, MAX_KERNEL_IO, 2 * g));
        assert_eq!(ev.settle(MAX_KERNEL_IO as i64), Outcome::Resubmit);
        let c = ev.next_chunk();
        assert_eq!((c.op, c.bytes), (Op::Write, 3 * g - MAX_KERNEL_IO));
        assert_eq!(c.buf as usize, 0x1000 + MAX_KERNEL_IO as usize);
        assert_eq!(
            ev.settle((3 * g - MAX_KERNEL_IO) as i64),
            Outcome::Done(5 * g as i64)
        );
    }

    /// Expects the next two IOs of `ev` to move its segment at `buf` of `len` bytes (above
    /// the maximum) at file offset `offset`: a plain IO of the maximum, then one of the
    /// rest, after which the request finishes with `total`.
    fn expect_big_segment(ev: &mut IoEvent, buf: usize, offset: u64, len: u64, total: u64) {
        let op = ev.request.op.flat();
        let c = ev.next_chunk();
        assert_eq!(
            (c.op, c.buf as usize, c.bytes, c.offset),
            (op, buf, MAX_KERNEL_IO, offset)
        );
        assert_eq!(ev.settle(MAX_KERNEL_IO as i64), Outcome::Resubmit);
        let c = ev.next_chunk();
        assert_eq!(
            (c.op, c.buf as usize, c.bytes, c.offset),
            (
                op,
                buf + MAX_KERNEL_IO as usize,
                len - MAX_KERNEL_IO,
                offset + MAX_KERNEL_IO
            )
        );
        assert_eq!(
            ev.settle((len - MAX_KERNEL_IO) as i64),
            Outcome::Done(total as i64)
        );
    }

    #[test]
    fn empty_segments_before_one_above_the_maximum_are_stepped_over() {
        let big = 3u64 << 30;
        // Empty segments first, then one segment above the maximum.
        let iovs = iov(&[(0x1000, 0), (0x1000, 0), (0x2000, big)]);
        expect_big_segment(&mut vector(Op::Writev, &iovs), 0x2000, 0, big, big);
        // The cursor comes to rest on an empty segment after a run.
        let iovs = iov(&[(0x1000, 4096), (0x1000, 0), (0x2000, big), (0x3000, 0)]);
        let mut ev = vector(Op::Readv, &iovs);
        let c = ev.next_chunk();
        assert_eq!((c.op, c.len, c.bytes), (Op::Readv, 2, 4096));
        assert_eq!(ev.settle(4096), Outcome::Resubmit);
        expect_big_segment(&mut ev, 0x2000, 4096, big, big + 4096);
        // A request of only empty segments is one kernel IO of 0 bytes.
        let iovs = iov(&[(0x1000, 0), (0x2000, 0)]);
        let mut ev = vector(Op::Readv, &iovs);
        let c = ev.next_chunk();
        assert_eq!((c.op, c.len, c.bytes), (Op::Readv, 1, 0));
        assert_eq!(ev.settle(0), Outcome::Done(0));
    }

    #[test]
    fn nowait_delivers_eagain() {
        let eagain = -i64::from(libc::EAGAIN);
        let s = RequestSpec {
            flags: Flags(Flags::NOWAIT),
            ..spec(Op::Read, 0x1000 as *mut u8, 100)
        };
        // SAFETY: not vectored.
        let req = unsafe { IoRequest::from_spec(&s, None) }.unwrap();
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(ev.settle(eagain), Outcome::Done(eagain));
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(ev.settle(40), Outcome::Resubmit);
        assert_eq!(ev.settle(eagain), Outcome::Done(40), "bytes moved are kept");
        assert_eq!(ev.next_chunk().rw_flags, libc::RWF_NOWAIT);
    }

    /// An unlinked scratch file (in the ext4 temp dir) of `size` bytes, sparse.
    fn sparse_file(size: u64) -> std::fs::File {
        crate::sys::scratch::sparse_file("tasks", size)
    }

    /// A 6 GiB sparse file, open for the whole test run.
    fn big_fd() -> i32 {
        static FILE: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
        std::os::fd::AsRawFd::as_raw_fd(FILE.get_or_init(|| sparse_file(6 << 30)))
    }

    fn command(op: Op, offset: u64, len: u64, arg: u32, flags: u32) -> Result<IoRequest, Error> {
        let s = RequestSpec {
            flags: Flags(flags),
            buf_index: arg,
            offset,
            fd: big_fd(),
            ..spec(op, 0x1000 as *mut u8, len)
        };
        // SAFETY: not vectored.
        unsafe { IoRequest::from_spec(&s, None) }
    }

    #[test]
    fn range_commands_are_validated_and_keep_their_argument() {
        let max = i64::MAX as u64;
        for op in [Op::Fallocate, Op::SyncFileRange] {
            assert!(!op.transfers() && op.is_file_command() && op.takes_range_arg());
            let req = command(op, 4096, 8192, 0x11, 0).unwrap();
            assert_eq!(
                (req.offset, req.len, req.buf_index, req.total),
                (4096, 8192, 0x11, 0)
            );
            assert!(req.buf.is_null(), "buf is ignored");
            assert_eq!(req.class(), QueueClass::Write);
            // Whatever the mode, flags or length: the kernel's to judge (len 0 included).
            assert!(command(op, 0, 0, u32::MAX, 0).is_ok());
            assert!(command(op, max - 10, 10, 0, 0).is_ok());
            for flag in [
                Flags::DSYNC,
                Flags::SYNC,
                Flags::NOWAIT,
                Flags::FIXED_BUF,
                Flags::SHORT_OK,
            ] {
                assert!(matches!(
                    command(op, 0, 1, 0, flag),
                    Err(Error::InvalidArgument(_))
                ));
            }
            assert!(matches!(
                command(op, max - 10, 11, 0, 0),
                Err(Error::InvalidArgument(_))
            ));
            assert!(matches!(
                command(op, u64::MAX, 0, 0, 0),
                Err(Error::InvalidArgument(_))
            ));
            let bad_fd = RequestSpec {
                fd: -1,
                ..spec(op, std::ptr::null_mut(), 1)
            };
            // SAFETY: not vectored.
            let refused = unsafe { IoRequest::from_spec(&bad_fd, None) };
            assert!(matches!(refused, Err(Error::BadFd)));
            let high = RequestSpec {
                priority: Priority::High,
                ..spec(op, std::ptr::null_mut(), 1)
            };
            // SAFETY: not vectored.
            let high = unsafe { IoRequest::from_spec(&high, None) }.unwrap();
            assert_eq!(high.class(), QueueClass::High);
        }
        for op in [Op::Fsync, Op::Fdatasync] {
            assert!(!op.transfers() && op.is_file_command() && !op.takes_range_arg());
        }
        for op in [Op::Read, Op::Write, Op::Readv, Op::Writev] {
            assert!(op.transfers() && !op.is_file_command() && !op.takes_range_arg());
        }
    }

    #[test]
    fn fallocate_is_one_kernel_call_with_its_result() {
        let mode = (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE) as u32;
        let req = command(Op::Fallocate, 1 << 20, 5 << 30, mode, 0).unwrap();
        let ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        let c = ev.next_chunk();
        assert_eq!(
            (c.op, c.offset, c.len, c.range_arg),
            (Op::Fallocate, 1 << 20, 5 << 30, mode)
        );
        assert_eq!((c.fixed, c.rw_flags, c.bytes), (None, 0, 0));
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(ev.settle(0), Outcome::Done(0));
        let eopnotsupp = -i64::from(libc::EOPNOTSUPP);
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(ev.settle(eopnotsupp), Outcome::Done(eopnotsupp));
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(
            ev.settle(-i64::from(libc::EINTR)),
            Outcome::Resubmit,
            "retried"
        );
        assert_eq!(ev.next_chunk().len, 5 << 30);
        assert_eq!(ev.settle(0), Outcome::Done(0));
    }

    #[test]
    fn a_sync_range_of_4_gib_or_more_goes_in_pieces() {
        let flags = libc::SYNC_FILE_RANGE_WRITE;
        let len = 5u64 << 30;
        let req = command(Op::SyncFileRange, 4096, len, flags, 0).unwrap();
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        let c = ev.next_chunk();
        assert_eq!(
            (c.op, c.offset, c.len, c.range_arg),
            (Op::SyncFileRange, 4096, MAX_SYNC_RANGE_PIECE, flags)
        );
        assert_eq!(ev.settle(0), Outcome::Resubmit);
        let c = ev.next_chunk();
        assert_eq!(
            (c.offset, c.len),
            (4096 + MAX_SYNC_RANGE_PIECE, len - MAX_SYNC_RANGE_PIECE)
        );
        assert_eq!(ev.settle(0), Outcome::Done(0));
        // Just below 4 GiB: one piece. Exactly 4 GiB: two.
        let one = command(Op::SyncFileRange, 0, (1 << 32) - 1, flags, 0).unwrap();
        let mut ev = IoEvent::new(one, Callback::new(ignore, std::ptr::null_mut()));
        assert!(ev.next_chunk().len <= u64::from(u32::MAX));
        assert_eq!(
            ev.settle(0),
            Outcome::Resubmit,
            "2^32 - 1 > the page-aligned piece"
        );
        assert_eq!(ev.next_chunk().len, (1 << 32) - 1 - MAX_SYNC_RANGE_PIECE);
        assert_eq!(ev.settle(0), Outcome::Done(0));
        let small = command(Op::SyncFileRange, 0, MAX_SYNC_RANGE_PIECE, flags, 0).unwrap();
        let mut ev = IoEvent::new(small, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(ev.settle(0), Outcome::Done(0));
        // A failing piece ends the request with its error.
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(ev.settle(0), Outcome::Resubmit);
        assert_eq!(
            ev.settle(-i64::from(libc::EIO)),
            Outcome::Done(-i64::from(libc::EIO))
        );
        // len 0 (to the end of the file): one call with len 0.
        let to_end = command(Op::SyncFileRange, 8192, 0, flags, 0).unwrap();
        let mut ev = IoEvent::new(to_end, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!((ev.next_chunk().offset, ev.next_chunk().len), (8192, 0));
        assert_eq!(ev.settle(0), Outcome::Done(0));
    }

    #[test]
    fn a_sync_range_stops_where_the_files_data_ends() {
        let flags = libc::SYNC_FILE_RANGE_WRITE;
        let max = i64::MAX as u64;
        // To INT64_MAX on the 6 GiB file: two pieces reach past its end, no more.
        let req = command(Op::SyncFileRange, 0, max, flags, 0).unwrap();
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(ev.settle(0), Outcome::Resubmit);
        assert_eq!(ev.next_chunk().offset, MAX_SYNC_RANGE_PIECE);
        assert_eq!(ev.settle(0), Outcome::Done(0), "8 GiB - 8 KiB > 6 GiB");
        // A small file: the first piece covers it all.
        let small = sparse_file(8192);
        let s = RequestSpec {
            buf_index: flags,
            fd: std::os::fd::AsRawFd::as_raw_fd(&small),
            ..spec(Op::SyncFileRange, std::ptr::null_mut(), max)
        };
        // SAFETY: not vectored.
        let req = unsafe { IoRequest::from_spec(&s, None) }.unwrap();
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        assert_eq!(ev.settle(0), Outcome::Done(0));
        // A file that grew meanwhile is covered to its new end.
        let mut ev = IoEvent::new(req, Callback::new(ignore, std::ptr::null_mut()));
        small.set_len(5 << 30).unwrap();
        assert_eq!(ev.settle(0), Outcome::Resubmit);
        assert_eq!(ev.settle(0), Outcome::Done(0));
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
