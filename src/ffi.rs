//! The `extern "C"` layer: C types, validation of what C hands us, errno mapping.
//!
//! This file is the C interface (cbindgen reads only this file). It does no scheduling
//! itself: it validates, converts to the Rust types of `scheduler`, and maps `Error` to
//! `-errno`. No panic crosses this boundary: every entry point that can reach engine
//! code runs inside `catch_unwind` and turns a panic into `-EIO` (or NULL / AUTO for
//! the functions without an errno); the engine threads abort on a panic instead (see
//! `scheduler::engine`).

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

pub use crate::abi::{IoengClassStats, IoengStats};
use crate::error::Error;
use crate::scheduler::classes::{DEFAULT_WEIGHT, MAX_NORMAL_MIN_PERCENT};
use crate::scheduler::tasks::{
    Callback, Flags, IoRequest, MAX_REGISTERED_BUFFERS, Op, Priority, RequestSpec,
};
use crate::scheduler::{
    AnyEngine, BackendChoice, BackendKind, ClassConfig, Config, IdlePoll, Mode,
    uring_unavailable_reason,
};

/// `CPU_SETSIZE` of glibc's `cpu_set_t`: the CPUs a thread can be pinned to.
const CPU_SETSIZE: i32 = libc::CPU_SETSIZE;

/// Backend selector (`IOENG_BACKEND_*`).
pub type IoengBackend = u32;
/// Use io_uring when a ring can be created and read/write/fsync are supported, else Linux AIO.
pub const IOENG_BACKEND_AUTO: IoengBackend = 0;
/// Linux AIO (io_setup/io_submit/io_getevents). Asynchronous only for O_DIRECT on
/// regular files and block devices: a buffered READ/WRITE of a regular file may still run
/// inside io_submit on the engine's submitting thread (in IOENG_MODE_POLLED, inside
/// ioeng_poll()), for as long as the filesystem takes. Streams (pipes, FIFOs, sockets,
/// ttys, blocking or not) never block there (since 1.1): a transfer is tried without
/// blocking (RWF_NOWAIT) and, when nothing can move, waits for readiness in the kernel
/// (IOCB_CMD_POLL, which cancel stops), so a silent peer delays only its own request.
/// Ttys and FIFOs opened read-write, which AIO cannot poll, are asked with poll(2) and
/// retried with the -EAGAIN backoff (see ioeng_cb_t); a blocking tty is then read or
/// written through a non-blocking second open of it (/proc/self/fd), and a blocking pty
/// master (which cannot be opened twice) is written in pieces of 1024 bytes, each once
/// poll says writable, which the kernel takes without waiting. Unless another thread
/// writes the same blocking pty master at the same time (it may take the room first).
/// FALLOCATE and SYNC_FILE_RANGE, which Linux AIO has no command for, run on one helper
/// thread of the engine, in POLLED mode too: started by the first of them (never at
/// open), it blocks asynchronous signals and is joined by ioeng_close(). Where no thread
/// can be started (a pids or thread limit), they run instead, one at a time, on the
/// thread that hands requests to the kernel: in THREADS mode the submitter, or the
/// completer right after its callbacks; in POLLED mode the thread inside ioeng_poll()
/// or ioeng_close(). That thread, and the completions it would reap, wait meanwhile.
pub const IOENG_BACKEND_AIO: IoengBackend = 1;
/// io_uring. A READ/WRITE of a tty (blocking or not) runs on one of the kernel's io-wq
/// worker threads of the process (IOSQE_ASYNC), never on the submitting thread, where
/// io_uring would otherwise run a blocking tty write that waits for room (since 1.1);
/// cancel interrupts it there, and it completes with the bytes it had moved.
pub const IOENG_BACKEND_URING: IoengBackend = 2;

/// Operation (`IOENG_OP_*`).
pub type IoengOp = u32;
/// Read `len` bytes at `offset` into `buf`.
pub const IOENG_OP_READ: IoengOp = 0;
/// Write `len` bytes from `buf` at `offset`.
pub const IOENG_OP_WRITE: IoengOp = 1;
/// fsync(2) of `fd`; `buf`, `len`, `offset` are ignored.
pub const IOENG_OP_FSYNC: IoengOp = 2;
/// fdatasync(2) of `fd`; `buf`, `len`, `offset` are ignored.
pub const IOENG_OP_FDATASYNC: IoengOp = 3;
/// Scatter read (preadv2): `buf` is a `const struct iovec *`, `len` the iovec count.
pub const IOENG_OP_READV: IoengOp = 4;
/// Gather write (pwritev2): `buf` is a `const struct iovec *`, `len` the iovec count.
pub const IOENG_OP_WRITEV: IoengOp = 5;
/// Since 1.1: fallocate(2) of `fd` over `offset`..`offset + len`, mode (FALLOC_FL_*) in
/// `buf_index`; `buf` ignored; no flags. Goes to the WRITE queue. Gives fallocate's result:
/// 0, or the kernel's -errno for whatever it refuses (an unsupported mode: -EOPNOTSUPP;
/// `len` 0: -EINVAL); only `offset + len` above INT64_MAX is refused at submit.
pub const IOENG_OP_FALLOCATE: IoengOp = 6;
/// Since 1.1: sync_file_range(2) of `fd` over `offset`..`offset + len` (len 0 = to the end
/// of the file), flags (SYNC_FILE_RANGE_*) in `buf_index`; `buf` ignored; no flags. Goes to
/// the WRITE queue. Gives sync_file_range's result (0, or the kernel's -errno, e.g. -EINVAL
/// for unknown flags). A range of 4 GiB or more is synced in pieces of less than 4 GiB, one
/// after the other, as far as the file's (or block device's) data reaches (io_uring's
/// length field is 32 bits; both backends do the same); `res` is 0 only if every piece
/// gave 0, else the first error.
pub const IOENG_OP_SYNC_FILE_RANGE: IoengOp = 7;

/// Per-request flags (`IOENG_REQ_*`, or-ed into `ioeng_req_t.flags`).
pub type IoengReqFlags = u32;
/// RWF_DSYNC: this WRITE/WRITEV is durable (data + needed metadata) when its callback runs.
pub const IOENG_REQ_DSYNC: IoengReqFlags = 1 << 0;
/// RWF_SYNC: like DSYNC, and all metadata too (as after fsync).
pub const IOENG_REQ_SYNC: IoengReqFlags = 1 << 1;
/// RWF_NOWAIT: the kernel fails with -EAGAIN instead of blocking; that -EAGAIN reaches the
/// callback instead of being retried. Also -EAGAIN, on both backends, for a write the
/// filesystem will not do without blocking at all (a buffered ext4 write; the kernel's
/// AIO path says -EOPNOTSUPP there, io_uring -EAGAIN). A file without NOWAIT support
/// (e.g. tmpfs) gives -EOPNOTSUPP.
pub const IOENG_REQ_NOWAIT: IoengReqFlags = 1 << 2;
/// Use the registered buffer `buf_index` (see ioeng_register_buffers()); `[buf, buf+len)`
/// must lie inside it. READ/WRITE only.
pub const IOENG_REQ_FIXED_BUF: IoengReqFlags = 1 << 3;
/// Since 1.1. A short READ/WRITE (READV/WRITEV) completes as the kernel left it, like
/// read(2)/recv(2), instead of being continued: for sockets and pipes, "whatever has
/// arrived" (at least one byte; a READ at end of file or of a stream still gives 0).
/// -EAGAIN/-EINTR are still retried, and a transfer above the kernel's per-call maximum
/// is still split (a full part is not short).
pub const IOENG_REQ_SHORT_OK: IoengReqFlags = 1 << 4;
/// Since 1.1. `fd` is an index into the files given to ioeng_register_files(), not a
/// descriptor: the request runs on the file registered there (on io_uring without a
/// file lookup per request). Any op.
pub const IOENG_REQ_FIXED_FILE: IoengReqFlags = 1 << 5;
/// Every flag this version knows; any other bit gives -EINVAL.
pub const IOENG_REQ_KNOWN_FLAGS: IoengReqFlags = IOENG_REQ_DSYNC
    | IOENG_REQ_SYNC
    | IOENG_REQ_NOWAIT
    | IOENG_REQ_FIXED_BUF
    | IOENG_REQ_SHORT_OK
    | IOENG_REQ_FIXED_FILE;

const _: () = assert!(IOENG_REQ_DSYNC == Flags::DSYNC);
const _: () = assert!(IOENG_REQ_SYNC == Flags::SYNC);
const _: () = assert!(IOENG_REQ_NOWAIT == Flags::NOWAIT);
const _: () = assert!(IOENG_REQ_FIXED_BUF == Flags::FIXED_BUF);
const _: () = assert!(IOENG_REQ_SHORT_OK == Flags::SHORT_OK);
const _: () = assert!(IOENG_REQ_FIXED_FILE == Flags::FIXED_FILE);
const _: () = assert!(IOENG_REQ_KNOWN_FLAGS == Flags::KNOWN);

/// Most buffers ioeng_register_buffers() takes.
pub const IOENG_MAX_REGISTERED_BUFFERS: u32 = 16384;
const _: () = assert!(IOENG_MAX_REGISTERED_BUFFERS == MAX_REGISTERED_BUFFERS);

/// Most files ioeng_register_files() takes (since 1.1).
pub const IOENG_MAX_REGISTERED_FILES: u32 = 32768;

/// Engine mode (`IOENG_MODE_*`).
pub type IoengMode = u32;
/// A submitter and a completer thread per engine; callbacks run on an engine thread.
pub const IOENG_MODE_THREADS: IoengMode = 0;
/// No engine thread (one exception: on AIO, the helper thread of FALLOCATE and
/// SYNC_FILE_RANGE, see IOENG_BACKEND_AIO): the caller drives the engine with ioeng_poll()
/// (from any thread, one at a time), which dispatches, submits, reaps and runs the
/// callbacks on the calling thread; ioeng_event_fd() tells an epoll/poll loop when to call
/// it. Nothing happens between polls: ioeng_submit() only queues. For thread-per-core
/// programs and event loops.
pub const IOENG_MODE_POLLED: IoengMode = 1;

/// `ioeng_config_t.idle_poll_us` (THREADS mode; nothing to do with ioeng_poll()): let the
/// engine choose how long idle threads poll: up to 10 µs (about the CPU a sleep and its
/// wake-up cost, so polling does not cost more CPU than it saves; set a longer limit to
/// buy latency with CPU), only while work recently arrived within that time, one engine
/// thread at a time, and never on a thread allowed a single CPU. Since 1.1; 1.0 called it
/// IOENG_POLL_DEFAULT (still defined, deprecated).
pub const IOENG_IDLE_POLL_DEFAULT: u32 = 0;
/// `ioeng_config_t.idle_poll_us`: idle engine threads never poll; they sleep at once.
/// Since 1.1; 1.0 called it IOENG_POLL_NEVER (still defined, deprecated).
pub const IOENG_IDLE_POLL_NEVER: u32 = u32::MAX;

/// `latency_stats`: the engine's default (off: the histograms' clock reads are not
/// free on the most CPU-bound jobs).
pub const IOENG_LATENCY_STATS_DEFAULT: u32 = 0;
/// `latency_stats`: keep per-class latency histograms.
pub const IOENG_LATENCY_STATS_ON: u32 = 1;
/// `latency_stats`: no histograms (percentiles read 0).
pub const IOENG_LATENCY_STATS_OFF: u32 = 2;

/// ioeng_class_stats() `id`: every HIGH request, whatever its class (a HIGH request
/// counts there and in its own class).
pub const IOENG_CLASS_HIGH: u16 = 0xFFFF;
/// ioeng_class_stats() `flags`: read, then zero the counters and the histogram.
pub const IOENG_STATS_RESET: u32 = 1;
/// Most IO classes an engine has: class 0 and ids 1..=63 from ioeng_class_open().
pub const IOENG_MAX_CLASSES: u32 = 64;

/// `flags` bit (since 1.1): the caller promises that one thread, the same one every time,
/// calls ioeng_poll() and ioeng_close() on this engine, and that ioeng_register_buffers()
/// and ioeng_register_files() run before the first ioeng_poll() or on that thread. In exchange, a POLLED io_uring
/// engine lets the kernel batch its completion work for that thread
/// (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, Linux 6.1): less CPU per IO.
/// The first thread to poll (or to close, if none polled) becomes that thread; from then
/// on ioeng_poll() and ioeng_close() on any other thread return -EINVAL and do nothing
/// (the kernel would refuse that thread's calls on the ring), and ioeng_register_buffers()
/// or ioeng_register_files() on another thread fails with the kernel's -EEXIST. Keep that thread alive until it
/// closed the engine. Ignored in THREADS mode, on AIO, and on kernels without these
/// io_uring flags (the engine then behaves as without the flag, and accepts calls from
/// any thread). Any other `flags` bit gives -EINVAL.
/// For files, not streams: the completion of a READ or WRITE that waits for its fd to
/// become ready (a pipe, socket or tty) is deferred kernel work that signalled the event
/// fd about 16 ms after the peer's write on Linux 6.18 (0.1 ms without the flag); a poller
/// waiting inside ioeng_poll() with a timeout is woken at once. File IO is not delayed.
pub const IOENG_CONFIG_SINGLE_POLLER: u32 = 1;

/// `flags` bit (since 1.1), with IOENG_CONFIG_SINGLE_POLLER (-EINVAL without it, in
/// either mode), POLLED mode (ignored in THREADS mode, which has no event fd): the caller
/// also promises that a thread, from its ioeng_poll() on until another thread polls the
/// engine, calls ioeng_poll() again after each of its submits before it (or anyone)
/// waits on the event fd for that request: an event loop that submits while it handles
/// events and polls at the end of each round. In exchange those submits (ioeng_submit(),
/// ioeng_submit_batch()) do not make the event fd readable: no write of the fd at the
/// submit and no drain of it in the poll, which such a loop pays per round
/// (examples_c/ioeng_nbd at QD1, io_uring, a page-cache file: 4 syscalls per request
/// instead of 6). So a thread that hands polling over to another does not submit until
/// that one has polled, or polls after its submits itself. Submits on other threads,
/// before the first poll, and from callbacks that run inside a poll of another engine
/// make the fd readable as without the flag (callbacks of this engine's own poll need
/// no signal either way). ioeng_next_timeout_ns() does not answer 0 for a request
/// submitted quietly (it does count its deadline) until that poll takes it.
pub const IOENG_CONFIG_POLL_AFTER_SUBMIT: u32 = 2;

/// Library version (semantic versioning); ioeng_version() returns the same as a string.
pub const IOENG_VERSION_MAJOR: u32 = 1;
/// See IOENG_VERSION_MAJOR.
pub const IOENG_VERSION_MINOR: u32 = 1;
/// See IOENG_VERSION_MAJOR.
pub const IOENG_VERSION_PATCH: u32 = 0;

/// Priority (`IOENG_PRIO_*`).
pub type IoengPrio = u32;
/// READ and READV go to the READ queue; WRITE, WRITEV, FSYNC, FDATASYNC, FALLOCATE and
/// SYNC_FILE_RANGE go to the WRITE queue.
pub const IOENG_PRIO_NORMAL: IoengPrio = 0;
/// Strict priority queue: dispatched before any queued NORMAL request. With IO classes
/// whose rate limits hold a HIGH request (limits count HIGH requests too), it waits for
/// its class's tokens, the NORMAL requests of its class wait behind it, and other
/// classes' requests go meanwhile (`normal_min_percent` may also let NORMAL go first).
pub const IOENG_PRIO_HIGH: IoengPrio = 1;

/// Largest accepted `depth`.
pub const IOENG_MAX_DEPTH: u32 = 32768;

/// One IO request (64 bytes; the layout is frozen from version 1 on). Copied by
/// ioeng_submit(); the struct itself need not outlive the call. Build it with the
/// ioeng_req_*() builders at the end of this header (since 1.1; every field they do not
/// take is zero), then set `prio`, `flags`, `tag`, `deadline_ns` as needed: zero means
/// "none" for every optional field. By hand, zero it first: `ioeng_req_t req = {0};` in
/// C, `ioeng_req_t req{};` in C++ (where `= {0}` warns with -Wmissing-field-initializers).
#[repr(C)]
pub struct IoengReq {
    /// IOENG_OP_*; anything else gives -EINVAL.
    pub op: IoengOp,
    /// IOENG_PRIO_*; anything else gives -EINVAL.
    pub prio: IoengPrio,
    /// Open file descriptor; < 0 gives -EBADF. It must stay open until the callback ran
    /// (closing it earlier gives -EBADF in the callback, or IO on whatever file reuses the
    /// number: also for a request already in the kernel, whose continuation after a short
    /// transfer looks the number up again). With IOENG_REQ_FIXED_FILE: the index of a
    /// file given to ioeng_register_files() instead (out of range: -EINVAL), which the
    /// engine holds open itself.
    pub fd: i32,
    /// IOENG_REQ_* bits; an unknown bit gives -EINVAL. Flags other than FIXED_FILE on
    /// FSYNC/FDATASYNC/FALLOCATE/SYNC_FILE_RANGE, and DSYNC/SYNC on READ/READV, give
    /// -EINVAL.
    pub flags: IoengReqFlags,
    /// READ/WRITE: caller-owned memory of `len` bytes. READV/WRITEV: a caller-owned
    /// `const struct iovec *` array of `len` entries. Not `const` for ABI reasons only:
    /// for WRITE/WRITEV (and the iovec array of READV) the engine never writes through
    /// it, so a const buffer may be cast; ioeng_req_write()/ioeng_req_writev()/
    /// ioeng_req_readv() take `const` pointers and do that cast. Memory (the array and every buffer
    /// it names) must stay valid (and, for reads, untouched) until the callback ran; the
    /// engine never writes to the iovec array. O_DIRECT alignment is the caller's
    /// business: the kernel's answer to a misaligned request (-EINVAL where the file
    /// requires the alignment ioeng_dio_alignment() reports) comes in the callback.
    pub buf: *mut c_void,
    /// READ/WRITE: bytes, > 0. READV/WRITEV: iovec count, 1..=IOV_MAX. Transfers above
    /// the kernel's per-call maximum (0x7ffff000 bytes) are split internally.
    /// FALLOCATE/SYNC_FILE_RANGE: the length of the range, passed on as it is.
    pub len: u64,
    /// Byte offset in the file. Streams (pipes, FIFOs, sockets, ttys: files where lseek
    /// fails with ESPIPE) have no position and ignore it: a short transfer on a stream
    /// is continued without a position (offset 0, which sockets require), so no byte is
    /// lost or repeated. `offset` plus the transfer size must not exceed INT64_MAX
    /// (-EINVAL).
    pub offset: u64,
    /// The caller's id for ioeng_cancel(); 0 = none. Need not be unique.
    pub tag: u64,
    /// CLOCK_MONOTONIC nanoseconds; 0 = none. A request still queued (not yet handed to
    /// the kernel) at this time completes with -ETIMEDOUT.
    pub deadline_ns: u64,
    /// With IOENG_REQ_FIXED_BUF: index into the buffers given to ioeng_register_buffers().
    /// FALLOCATE: the mode (FALLOC_FL_*). SYNC_FILE_RANGE: the flags (SYNC_FILE_RANGE_*).
    pub buf_index: u32,
    /// Since 1.1 (was part of `reserved`): the request's IO class; 0 = the default class,
    /// which is all a 1.0 program uses; else an id from ioeng_class_open() on this
    /// engine. Any other value gives -EINVAL.
    pub class_id: u16,
    /// Must be zero (-EINVAL otherwise).
    pub reserved: u16,
}

const _: () = assert!(std::mem::size_of::<IoengReq>() == 64);
const _: () = assert!(std::mem::offset_of!(IoengReq, op) == 0);
const _: () = assert!(std::mem::offset_of!(IoengReq, prio) == 4);
const _: () = assert!(std::mem::offset_of!(IoengReq, fd) == 8);
const _: () = assert!(std::mem::offset_of!(IoengReq, flags) == 12);
const _: () = assert!(std::mem::offset_of!(IoengReq, buf) == 16);
const _: () = assert!(std::mem::offset_of!(IoengReq, len) == 24);
const _: () = assert!(std::mem::offset_of!(IoengReq, offset) == 32);
const _: () = assert!(std::mem::offset_of!(IoengReq, tag) == 40);
const _: () = assert!(std::mem::offset_of!(IoengReq, deadline_ns) == 48);
const _: () = assert!(std::mem::offset_of!(IoengReq, buf_index) == 56);
const _: () = assert!(std::mem::offset_of!(IoengReq, class_id) == 60);
const _: () = assert!(std::mem::offset_of!(IoengReq, reserved) == 62);

/// Completion callback. `res`: READ → bytes read (short only at end of file, 0 at or after
/// EOF); WRITE → `len`; READV/WRITEV → the same over the whole vector; FSYNC/FDATASYNC/
/// FALLOCATE/SYNC_FILE_RANGE → 0; -ECANCELED after ioeng_cancel(), or from a file that
/// fails IO with ECANCELED itself (a FUSE server); an IO that io_uring cancels on its own
/// (no worker thread can start under a pids limit, its submitting poller exited) is
/// issued again, backing off up to 1 ms between tries, until such cancels have come in a
/// row for a second (a request may then complete as late as that) before its
/// -ECANCELED is reported; -ETIMEDOUT when
/// `deadline_ns` passed while the request was queued; failure → -errno from the kernel.
/// With IOENG_REQ_NOWAIT, -EAGAIN (when nothing was moved) or the bytes moved before the
/// kernel would have blocked.
/// READ at end of file: for a stream, when the peer shut down or the writer closed. On
/// message-oriented fds (datagram/seqpacket sockets, inotify, eventfd, signalfd,
/// timerfd, and character devices without a position other than ttys: /dev/fuse,
/// /dev/kmsg, tun, input events) a READ or WRITE is one read(2)/write(2): a short result
/// is a whole message, returned as it is.
/// Streams (pipes, sockets, ttys): bytes already moved cannot be moved back, so when a
/// READ or WRITE fails after moving some bytes, `res` is the count moved (as read(2)/
/// write(2) report it: a WRITE to a pipe whose reader took 64 KiB and closed → 65536,
/// not -EPIPE) and the error shows on the next request. On files a failure is -errno even
/// after a partial transfer (the data stays at its offset).
/// Both backends give the same `res`, equal to what read(2)/write(2) (pread/pwrite on
/// files with a position) give, for any fd the kernel can read or write: AIO does the
/// transfer once with preadv2/pwritev2 where the kernel has no AIO path for the file
/// (/dev/full, eventfd writes, inotify, /proc files, directories), without blocking.
/// A file that cannot do the transfer at all (a READ or WRITE of an epoll fd or a
/// pidfd) gets read(2)'s -EINVAL on both: io_uring, which would wait for readiness
/// forever, has such a request probed after about 50–120 ms in flight (at most two 50 ms
/// sweeps, each up to two clock ticks late) and cancelled. (Not covered: a WRITE of a
/// fanotify fd or /dev/kmsg waits on io_uring.)
/// Short transfers, -EAGAIN and -EINTR never reach it: they are issued again (after 4
/// -EAGAIN/-EINTR in a row, with a delay growing from 10 µs to 1 ms, so an fd that stays
/// unready and that the kernel cannot wait for — a tty on AIO — costs about one retry per
/// ms, not a busy CPU; pipes and sockets wait in the kernel on both backends; such a
/// request keeps its callback, and ioeng_close, waiting until the fd is ready, unless it
/// is cancelled: see ioeng_cancel_all()).
/// THREADS mode: runs on an engine thread, one callback at a time per engine. POLLED mode:
/// runs on the thread inside ioeng_poll() or ioeng_close(). A callback may submit; it must
/// not block (that stalls every completion of its engine), throw (C++) or longjmp.
pub type IoengCallback = Option<unsafe extern "C" fn(ctx: *mut c_void, res: i64)>;

/// Engine configuration. Initialize with ioeng_config_init(), then change fields.
#[repr(C)]
pub struct IoengConfig {
    /// IOENG_BACKEND_*; default AUTO.
    pub backend: IoengBackend,
    /// Maximum IOs in flight in the kernel, 1..=32768; default 128.
    pub depth: u32,
    /// Maximum IOs per kernel submit call, 0..=depth; 0 (default) means `depth`.
    pub batch: u32,
    /// Maximum requests waiting in the three queues; 0 (default) = unbounded.
    pub queue_capacity: u32,
    /// 1: queue requests but dispatch nothing until ioeng_resume(); 0 (default) or 1.
    pub start_paused: u32,
    /// IOENG_MODE_THREADS (default) or IOENG_MODE_POLLED; anything else gives -EINVAL.
    pub mode: IoengMode,
    /// THREADS: how long an idle engine thread polls before it sleeps, in µs (polling saves
    /// a wake-up when work arrives within that time, and burns a CPU meanwhile);
    /// IOENG_IDLE_POLL_DEFAULT (0) lets the engine decide, IOENG_IDLE_POLL_NEVER never polls.
    /// Ignored in POLLED mode (ioeng_poll never spins).
    pub idle_poll_us: u32,
    /// THREADS: pin the submitter thread to this CPU; -1 (the default) inherits the
    /// CPU mask of the thread that called ioeng_open(). A CPU the thread may not run on
    /// (offline, outside the cpuset) makes ioeng_open() fail with the kernel's -errno
    /// (-EINVAL); one at or above CPU_SETSIZE, or below -1, gives -EINVAL (also in
    /// POLLED mode, which otherwise ignores it).
    pub submitter_cpu: i32,
    /// THREADS: pin the completer thread to this CPU; -1 (the default) inherits.
    pub completer_cpu: i32,
    /// Since 1.1: 0 (default) = HIGH is strict priority; 1..=50 = while both HIGH and
    /// NORMAL requests wait, NORMAL gets this percent of the dispatches (over any n
    /// such dispatches floor(p·n/100) ± 1); above 50 gives -EINVAL. Counted among the
    /// requests their classes' rate limits let go: a class whose HIGH request its limits
    /// hold offers no NORMAL request meanwhile (see IOENG_PRIO_HIGH), so a limited class
    /// busy with HIGH requests gives its NORMAL ones this share of its own dispatches.
    pub normal_min_percent: u32,
    /// Since 1.1: per-class latency histograms for ioeng_class_stats(): 0 = the
    /// engine's default (off), 1 = on, 2 = off; anything else gives -EINVAL. The
    /// counters are always kept.
    pub latency_stats: u32,
    /// Since 1.1 (was `reserved[2]`): IOENG_CONFIG_* bits; 0 (the default) is 1.0's
    /// behaviour. A 1.0 library refuses any bit (-EINVAL: reserved not zero).
    pub flags: u32,
    /// Must be zero.
    pub reserved: [u32; 1],
}

const _: () = assert!(std::mem::size_of::<IoengConfig>() == 52);
const _: () = assert!(std::mem::offset_of!(IoengConfig, backend) == 0);
const _: () = assert!(std::mem::offset_of!(IoengConfig, depth) == 4);
const _: () = assert!(std::mem::offset_of!(IoengConfig, batch) == 8);
const _: () = assert!(std::mem::offset_of!(IoengConfig, queue_capacity) == 12);
const _: () = assert!(std::mem::offset_of!(IoengConfig, start_paused) == 16);
const _: () = assert!(std::mem::offset_of!(IoengConfig, mode) == 20);
const _: () = assert!(std::mem::offset_of!(IoengConfig, idle_poll_us) == 24);
const _: () = assert!(std::mem::offset_of!(IoengConfig, submitter_cpu) == 28);
const _: () = assert!(std::mem::offset_of!(IoengConfig, completer_cpu) == 32);
const _: () = assert!(std::mem::offset_of!(IoengConfig, normal_min_percent) == 36);
const _: () = assert!(std::mem::offset_of!(IoengConfig, latency_stats) == 40);
const _: () = assert!(std::mem::offset_of!(IoengConfig, flags) == 44);
const _: () = assert!(std::mem::offset_of!(IoengConfig, reserved) == 48);

/// An engine. Opaque; created by ioeng_open(), freed by ioeng_close().
///
/// An engine belongs to the process that opened it. In a child created by fork() (which
/// copies the handle but not the engine's threads or kernel objects), every call on an
/// inherited handle returns -ESRCH and runs no callback, except ioeng_close(), which
/// releases the child's copy (returning 0, without blocking) without touching the
/// parent's engine, and ioeng_backend(), which still reports the backend. Requests
/// pending at the fork belong to the parent; the child gets no callback for them. The
/// child is recognised through pthread_atfork(): a fork() child is; one made by a raw
/// clone() or syscall(SYS_fork), which run no fork handlers, is not (do not use the
/// handle there).
///
/// fork() inside a callback: the child is a copy of the thread running the callback
/// (an engine thread, or the thread in ioeng_poll()/ioeng_close()), but not an engine
/// thread of its own process: it may open, use and close engines of its own (no
/// -EDEADLK). It should exec or _exit() before returning from the callback. If it
/// returns, libioeng runs nothing of the parent's engine in it (an io_uring ring is
/// memory shared with the parent): in THREADS mode the child ends with _exit(0); in
/// POLLED mode the ioeng_poll() or ioeng_close() that ran the callback returns -ESRCH.
pub struct Ioeng {
    engine: AnyEngine,
    /// `sys::fork::generation()` at open; another value means a forked child's copy.
    generation: u64,
}

/// What every call on a forked child's copy of a handle returns (see `Ioeng`).
const FORKED_CHILD: c_int = -libc::ESRCH;

impl Ioeng {
    /// True in a forked child holding a copy of its parent's engine. One atomic load.
    fn inherited(&self) -> bool {
        self.generation != crate::sys::fork::generation()
    }
}

/// The engine behind `h`, or `None` for a forked child's copy (the call then returns
/// [`FORKED_CHILD`]).
///
/// # Safety
/// `h` is non-NULL and live (the caller contract of every function that takes it).
unsafe fn engine_of<'a>(h: *const Ioeng) -> Option<&'a AnyEngine> {
    // SAFETY: non-NULL and live per this function's contract; only shared access is needed.
    let handle = unsafe { &*h };
    (!handle.inherited()).then_some(&handle.engine)
}

/// Runs `body`, turning a panic (a bug in libioeng) into -EIO instead of unwinding into C.
/// A child that a callback forked and that returned from the callback leaves the call
/// it was in with -ESRCH (see `sys::fork::after_callback`). Under TSan, libioeng's own
/// memory traffic is hidden from it meanwhile (`tsan::Ignored`).
fn guard<T: From<c_int>>(body: impl FnOnce() -> T) -> T {
    let _ignored = crate::tsan::Ignored::new();
    catch_unwind(AssertUnwindSafe(body)).unwrap_or_else(|payload| {
        if payload.is::<crate::sys::fork::ForkedInCallback>() {
            FORKED_CHILD.into()
        } else {
            (-libc::EIO).into()
        }
    })
}

fn to_errno(result: Result<(), Error>) -> c_int {
    match result {
        Ok(()) => 0,
        Err(err) => -err.errno(),
    }
}

/// Fills `cfg` with the defaults: AUTO backend, depth 128, batch 0 (= depth), unbounded queues,
/// not paused, reserved zero. NULL is ignored.
///
/// # Safety
/// `cfg` is NULL or points to writable memory for one ioeng_config_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_config_init(cfg: *mut IoengConfig) {
    if cfg.is_null() {
        return;
    }
    let defaults = IoengConfig {
        backend: IOENG_BACKEND_AUTO,
        depth: 128,
        batch: 0,
        queue_capacity: 0,
        start_paused: 0,
        mode: IOENG_MODE_THREADS,
        idle_poll_us: IOENG_IDLE_POLL_DEFAULT,
        submitter_cpu: -1,
        completer_cpu: -1,
        normal_min_percent: 0,
        latency_stats: IOENG_LATENCY_STATS_DEFAULT,
        flags: 0,
        reserved: [0; 1],
    };
    // SAFETY: the caller guarantees a non-NULL `cfg` is writable for one IoengConfig;
    // `write` does not read the (possibly uninitialized) old value.
    unsafe { cfg.write(defaults) };
}

fn config_from_c(cfg: &IoengConfig) -> Result<Config, Error> {
    let backend = match cfg.backend {
        IOENG_BACKEND_AUTO => BackendChoice::Auto,
        IOENG_BACKEND_AIO => BackendChoice::Aio,
        IOENG_BACKEND_URING => BackendChoice::Uring,
        _ => return Err(Error::InvalidArgument("unknown backend")),
    };
    if cfg.depth == 0 || cfg.depth > IOENG_MAX_DEPTH {
        return Err(Error::InvalidArgument("depth must be 1..=32768"));
    }
    if cfg.batch > cfg.depth {
        return Err(Error::InvalidArgument("batch must not exceed depth"));
    }
    let start_paused = match cfg.start_paused {
        0 => false,
        1 => true,
        _ => return Err(Error::InvalidArgument("start_paused must be 0 or 1")),
    };
    if cfg.reserved.iter().any(|&word| word != 0) {
        return Err(Error::InvalidArgument("reserved fields must be zero"));
    }
    if cfg.flags & !(IOENG_CONFIG_SINGLE_POLLER | IOENG_CONFIG_POLL_AFTER_SUBMIT) != 0 {
        return Err(Error::InvalidArgument("unknown config flags"));
    }
    let single_poller = cfg.flags & IOENG_CONFIG_SINGLE_POLLER != 0;
    let poll_after_submit = cfg.flags & IOENG_CONFIG_POLL_AFTER_SUBMIT != 0;
    if poll_after_submit && !single_poller {
        return Err(Error::InvalidArgument(
            "IOENG_CONFIG_POLL_AFTER_SUBMIT needs IOENG_CONFIG_SINGLE_POLLER",
        ));
    }
    let mode = match cfg.mode {
        IOENG_MODE_THREADS => Mode::Threads,
        IOENG_MODE_POLLED => Mode::Polled,
        _ => return Err(Error::InvalidArgument("unknown mode")),
    };
    let idle_poll = match cfg.idle_poll_us {
        IOENG_IDLE_POLL_DEFAULT => IdlePoll::Default,
        IOENG_IDLE_POLL_NEVER => IdlePoll::Never,
        us => IdlePoll::Max(Duration::from_micros(u64::from(us))),
    };
    if cfg.normal_min_percent > MAX_NORMAL_MIN_PERCENT {
        return Err(Error::InvalidArgument("normal_min_percent must be 0..=50"));
    }
    let latency_stats = match cfg.latency_stats {
        IOENG_LATENCY_STATS_DEFAULT | IOENG_LATENCY_STATS_OFF => false,
        IOENG_LATENCY_STATS_ON => true,
        _ => return Err(Error::InvalidArgument("latency_stats must be 0, 1 or 2")),
    };
    let cpu = |cpu: i32| match cpu {
        -1 => Ok(None),
        0..CPU_SETSIZE => Ok(Some(cpu as usize)),
        _ => Err(Error::InvalidArgument("a CPU must be -1 or 0..CPU_SETSIZE")),
    };
    Ok(Config {
        backend,
        depth: cfg.depth,
        batch: if cfg.batch == 0 { cfg.depth } else { cfg.batch },
        queue_capacity: cfg.queue_capacity,
        start_paused,
        mode,
        idle_poll,
        submitter_cpu: cpu(cfg.submitter_cpu)?,
        completer_cpu: cpu(cfg.completer_cpu)?,
        normal_min_percent: cfg.normal_min_percent,
        latency_stats,
        single_poller,
        poll_after_submit,
    })
}

/// Creates an engine; in THREADS mode starts (and pins, see `submitter_cpu`) its submitter
/// and completer threads; in POLLED mode creates its event fd and starts no thread.
///
/// `cfg` NULL means defaults (see ioeng_config_init). On success stores the handle in
/// `*out` and returns 0; on failure `*out` is left unchanged and the return is:
///  -EINVAL  NULL `out`, or a bad config (depth 0 or above 32768, batch above depth,
///           unknown backend, start_paused not 0/1, reserved not zero, unknown `flags`);
///  -EPERM, -ENOSYS, ...  an explicitly requested backend that cannot start (never a
///           silent switch to the other backend; AUTO falls back to AIO, see
///           ioeng_uring_unavailable_reason());
///  -EAGAIN, -ENOMEM, -EMFILE  kernel resources exhausted (fs.aio-max-nr, locked memory,
///           threads, fds);
///  -ENOMEM  (also) no memory for the engine's own arrays, which grow with `depth` and
///           `batch` (RLIMIT_AS, no overcommit): reported, never an abort;
///  -EINVAL  (also) `submitter_cpu`/`completer_cpu` names a CPU the thread may not use.
/// Configuration is read here only, never later from the environment.
///
/// # Safety
/// `cfg` is NULL or points to a readable ioeng_config_t; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_open(cfg: *const IoengConfig, out: *mut *mut Ioeng) -> c_int {
    guard(|| {
        if out.is_null() {
            return -libc::EINVAL;
        }
        let mut defaults = std::mem::MaybeUninit::<IoengConfig>::uninit();
        let cfg = if cfg.is_null() {
            // SAFETY: `defaults` is a valid, writable IoengConfig-sized location.
            unsafe { ioeng_config_init(defaults.as_mut_ptr()) };
            // SAFETY: ioeng_config_init initialized every field just above.
            unsafe { defaults.assume_init_ref() }
        } else {
            // SAFETY: the caller guarantees a non-NULL `cfg` points to a readable config.
            unsafe { &*cfg }
        };
        let config = match config_from_c(cfg) {
            Ok(config) => config,
            Err(err) => return -err.errno(),
        };
        crate::sys::fork::watch();
        let generation = crate::sys::fork::generation();
        match AnyEngine::open(&config) {
            Ok(engine) => {
                let handle = Box::into_raw(Box::new(Ioeng { engine, generation }));
                // SAFETY: `out` is non-NULL and writable per the caller contract.
                unsafe { out.write(handle) };
                0
            }
            Err(err) => -err.errno(),
        }
    })
}

/// Validates a C request for `engine` (whose registered buffers FIXED_BUF refers to).
///
/// # Safety
/// For READV/WRITEV, `req.buf` is NULL or points to `req.len` readable iovecs (the
/// ioeng_req_t contract; only read when `len` is in 1..=IOV_MAX).
unsafe fn request_from_c(engine: &AnyEngine, req: &IoengReq) -> Result<IoRequest, Error> {
    let op = match req.op {
        IOENG_OP_READ => Op::Read,
        IOENG_OP_WRITE => Op::Write,
        IOENG_OP_FSYNC => Op::Fsync,
        IOENG_OP_FDATASYNC => Op::Fdatasync,
        IOENG_OP_READV => Op::Readv,
        IOENG_OP_WRITEV => Op::Writev,
        IOENG_OP_FALLOCATE => Op::Fallocate,
        IOENG_OP_SYNC_FILE_RANGE => Op::SyncFileRange,
        _ => return Err(Error::InvalidArgument("unknown op")),
    };
    if req.reserved != 0 {
        return Err(Error::InvalidArgument("reserved must be zero"));
    }
    if !engine.class_exists(req.class_id) {
        return Err(Error::InvalidArgument("no IO class with this class_id"));
    }
    let priority = match req.prio {
        IOENG_PRIO_NORMAL => Priority::Normal,
        IOENG_PRIO_HIGH => Priority::High,
        _ => return Err(Error::InvalidArgument("unknown prio")),
    };
    let spec = RequestSpec {
        op,
        priority,
        fd: req.fd,
        buf: req.buf.cast(),
        len: req.len,
        offset: req.offset,
        flags: Flags(req.flags),
        tag: req.tag,
        deadline_ns: req.deadline_ns,
        buf_index: req.buf_index,
        class_id: req.class_id,
    };
    // SAFETY: forwarded from this function's contract.
    let mut request = unsafe { IoRequest::from_spec(&spec, engine.registered_buffers()) }?;
    request.use_registered_file(engine.registered_files())?;
    Ok(request)
}

/// Queues one request. Never blocks on kernel progress. In POLLED mode it only queues
/// (and makes the event fd readable, except on the polling thread of an engine opened
/// with IOENG_CONFIG_POLL_AFTER_SUBMIT): the request reaches the kernel in the next
/// ioeng_poll().
///
/// Returns 0 when accepted: `cb(ctx, res)` will then run exactly once, on an engine
/// thread (THREADS) or inside ioeng_poll()/ioeng_close() (POLLED). Returns < 0 when
/// refused, and then `cb` never runs:
///  -EINVAL      NULL `h`, `req` or `cb`; unknown op or prio; READ/WRITE with NULL
///               `buf` or `len == 0`; READV/WRITEV with NULL `buf`, an iovec count
///               outside 1..=IOV_MAX or iovec lengths summing above INT64_MAX;
///               `offset` + bytes (FALLOCATE/SYNC_FILE_RANGE: + `len`) above
///               INT64_MAX; an unknown flag bit; any flag on FSYNC/FDATASYNC/
///               FALLOCATE/SYNC_FILE_RANGE but FIXED_FILE; DSYNC or SYNC on READ/READV;
///               FIXED_BUF on READV/WRITEV, without registered buffers, with
///               `buf_index` out of range or `[buf, buf+len)` not inside that buffer;
///               FIXED_FILE without registered files or with `fd` not an index of
///               one; `reserved` not 0;
///  -EBADF       `fd < 0` (without FIXED_FILE);
///  -ESHUTDOWN   ioeng_close() has begun (e.g. a callback submitting during close);
///  -EAGAIN      the queues hold `queue_capacity` requests; retry after completions;
///  -ESRCH       `h` was inherited across fork() (see ioeng_t).
///
/// `*req` is copied; `req->buf` stays owned by the caller and must remain valid until the
/// callback ran. Thread-safe: any number of threads (and callbacks) may submit at once.
///
/// # Safety
/// `h` is NULL or a live handle from ioeng_open; `req` is NULL or readable; `ctx` is
/// passed to `cb` untouched.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_submit(
    h: *mut Ioeng,
    req: *const IoengReq,
    cb: IoengCallback,
    ctx: *mut c_void,
) -> c_int {
    guard(|| {
        let (Some(cb), false, false) = (cb, h.is_null(), req.is_null()) else {
            return -libc::EINVAL;
        };
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        // SAFETY: non-NULL and readable per the caller contract.
        let req = unsafe { &*req };
        // SAFETY: the caller vouches for a vector's iovec array (ioeng_req_t contract).
        let result = unsafe { request_from_c(engine, req) }
            .and_then(|request| engine.submit(request, Callback::new(cb, ctx)));
        to_errno(result)
    })
}

/// Queues `n` requests as ioeng_submit() would, in order, taking the queue lock once and
/// waking the engine at most once for the whole batch.
///
/// Request `i` gets `cb(ctxs[i], res)`; `ctxs == NULL` means every ctx is NULL.
/// `ctxs` is `void *const *` (the engine only reads the array; each ctx is handed to
/// the callback as `void *`): C++ code holding `const void *` contexts casts once with
/// const_cast, as ioeng.hpp does; no copy is needed.
/// Validates in order and accepts the longest valid prefix: returns how many requests
/// were accepted (each of them gets exactly one callback; the others none), or, when
/// the first one is refused, its -errno (the same as ioeng_submit() would give). So an
/// invalid request at index k > 0 returns k. The queues filling up (-EAGAIN) or close
/// beginning (-ESHUTDOWN) also end the prefix. `n == 0` returns 0 (after the checks of
/// `h` and `cb`).
///  -EINVAL      NULL `h` or `cb`; NULL `reqs` with `n > 0`; `n` above INT32_MAX;
///               or request 0 invalid (see ioeng_submit());
///  -ESRCH       `h` was inherited across fork() (see ioeng_t).
///
/// The requests are copied; `ctxs` is read during the call only. Thread-safe, callable
/// from callbacks; never blocks on kernel progress.
///
/// # Safety
/// `h` is NULL or a live handle; `reqs` is NULL or readable for `n` requests; `ctxs`
/// is NULL or readable for `n` pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_submit_batch(
    h: *mut Ioeng,
    reqs: *const IoengReq,
    n: u32,
    cb: IoengCallback,
    ctxs: *const *mut c_void,
) -> c_int {
    guard(|| {
        let (Some(cb), false) = (cb, h.is_null()) else {
            return -libc::EINVAL;
        };
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        if n == 0 {
            return 0;
        }
        if reqs.is_null() || n > i32::MAX as u32 {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL and readable for `n` requests per the caller contract.
        let reqs = unsafe { std::slice::from_raw_parts(reqs, n as usize) };
        let mut batch = Vec::with_capacity(reqs.len());
        let mut first_error = None;
        for (i, req) in reqs.iter().enumerate() {
            // SAFETY: the caller vouches for each vector's iovec array.
            match unsafe { request_from_c(engine, req) } {
                Ok(request) => {
                    let ctx = if ctxs.is_null() {
                        std::ptr::null_mut()
                    } else {
                        // SAFETY: `ctxs` is readable for `n` pointers and `i < n`.
                        unsafe { *ctxs.add(i) }
                    };
                    batch.push((request, Callback::new(cb, ctx)));
                }
                Err(err) => {
                    first_error = Some(err);
                    break;
                }
            }
        }
        if batch.is_empty() {
            return first_error.map_or(0, |err| -err.errno());
        }
        match engine.submit_batch(batch) {
            Ok(accepted) => accepted as c_int,
            Err(err) => -err.errno(),
        }
    })
}

/// Cancels every accepted request whose callback has not yet started and whose `tag`
/// equals `tag`. Returns how many there were (0 if none), -EINVAL for NULL `h` or
/// `tag == 0`, or -ESRCH in a forked child.
///
/// Each of them still gets exactly one callback:
///  - queued ones (also on a paused engine, and whatever their deadline) complete with
///    -ECANCELED and never reach the kernel;
///  - ones already handed to the kernel are asked to stop (io_uring ASYNC_CANCEL, AIO
///    io_cancel) and complete with -ECANCELED, or with their normal result when the
///    kernel had finished them or cannot stop them (most AIO file IO, and any IO the
///    kernel is already running). A request between two kernel IOs (a short transfer
///    being continued) completes with -ECANCELED, except on a pipe or socket that
///    already moved bytes for it: those cannot be moved back, so, like read(2) and
///    write(2), its callback gets their count.
///
/// The callbacks never run inside this call (so it may be called from a callback, and
/// with your own locks held): THREADS mode runs them on an engine thread (the submitter
/// for the requests that had not reached the kernel, see "Callbacks" above), POLLED mode
/// in the next ioeng_poll() or ioeng_close(), on whichever thread calls it,
/// possibly the one that called ioeng_cancel(). Requests submitted after this returns are not affected.
/// Thread-safe. Costs a scan of the queues and of `depth` slots.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_cancel(h: *mut Ioeng, tag: u64) -> c_int {
    guard(|| {
        if h.is_null() || tag == 0 {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        let found = engine.cancel(tag);
        found.min(i32::MAX as usize) as c_int
    })
}

/// Since 1.1. Cancels every accepted request whose callback has not yet started, tagged
/// or not (tag 0 included), as ioeng_cancel() does for one tag: queued ones (also on a
/// paused engine) complete with -ECANCELED without reaching the kernel; ones handed to
/// the kernel are asked to stop and complete with -ECANCELED or, when the kernel had
/// finished them or cannot stop them, their normal result (a stream that already moved
/// bytes for one: their count); ones already cancelled or timed out keep their result.
/// Returns how many there were: the requests accepted and not yet called back when the
/// call took the queue lock (0 if none; capped at INT_MAX), -EINVAL for NULL `h`, or
/// -ESRCH in a forked child.
///
/// A request waiting for a stream (pipe, FIFO, socket, tty) is stopped on both backends
/// (io_uring ASYNC_CANCEL; AIO waits for streams with a cancellable IOCB_CMD_POLL, or
/// between two tries), so ioeng_cancel_all() then ioeng_close() returns promptly (well
/// within a second) whatever is in flight: only IO that the kernel is running on a file,
/// which finishes by itself, is waited for. A WRITE to a blocking tty is stopped too
/// (see IOENG_BACKEND_AIO and IOENG_BACKEND_URING) and reports the bytes it had moved.
///
/// The callbacks run on an engine thread (THREADS) or in the next ioeng_poll()/
/// ioeng_close() (POLLED), never inside this call, so it may be called from a callback.
/// Requests submitted
/// after this returns are not affected; one submitted by another thread during the call
/// is either cancelled or not affected. Thread-safe: any thread may call it, also while
/// another is in ioeng_poll() or ioeng_submit(). It takes no ownership: each request's
/// memory stays the caller's until its callback, as always. Costs a scan of the queues
/// and of `depth` slots.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_cancel_all(h: *mut Ioeng) -> c_int {
    guard(|| {
        if h.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        let found = engine.cancel_all();
        found.min(i32::MAX as usize) as c_int
    })
}

/// Registers `n` buffers for requests with IOENG_REQ_FIXED_BUF (`buf_index` = position
/// in `iov`). io_uring registers them with the kernel (IORING_REGISTER_BUFFERS: pinned
/// once instead of on every IO) and runs FIXED_BUF requests as READ_FIXED/WRITE_FIXED;
/// AIO only records them (FIXED_BUF then runs as plain READ/WRITE). On both, the range
/// of each FIXED_BUF request is checked at submit.
///
/// Once per engine, before its first accepted request (ioeng_submit() or
/// ioeng_submit_batch(); a refused one does not count). Returns 0, or:
///  -EINVAL      NULL `h` or `iov`; `n` outside 1..=16384 (IOENG_MAX_REGISTERED_BUFFERS);
///               a buffer that is NULL, empty or above 1 GiB (io_uring's limits,
///               checked on both backends before anything else);
///  -EBUSY       buffers already registered, or a request was already submitted;
///  -ESRCH       `h` was inherited across fork() (see ioeng_t);
///  -ENOMEM, -EPERM, -EFAULT  io_uring refused the registration (locked-memory limit,
///               RLIMIT_MEMLOCK, memory not mapped; AIO, which pins nothing, accepts
///               those and a FIXED_BUF request there gets -EFAULT from its IO). Nothing
///               is registered then, the engine
///               stays usable without FIXED_BUF, and registering may be tried again.
///
/// `iov` (the array) is copied; the buffers stay owned by the caller and must remain
/// valid, and not be unmapped, until ioeng_close() returned. Thread-safe, but racing
/// the first submit gives -EBUSY or -EINVAL for FIXED_BUF requests.
///
/// # Safety
/// `h` is NULL or a live handle; `iov` is NULL or readable for `n` iovecs.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_register_buffers(
    h: *mut Ioeng,
    iov: *const libc::iovec,
    n: u32,
) -> c_int {
    guard(|| {
        if h.is_null() || iov.is_null() || n == 0 || n > MAX_REGISTERED_BUFFERS {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        // SAFETY: non-NULL and readable for `n` iovecs per the caller contract.
        let bufs = unsafe { std::slice::from_raw_parts(iov, n as usize) };
        to_errno(engine.register_buffers(bufs))
    })
}

/// Since 1.1. Registers `n` files for requests with IOENG_REQ_FIXED_FILE (their `fd` is
/// the position in `fds`). The engine keeps a descriptor of its own for each (a
/// close-on-exec duplicate, closed by ioeng_close()), so the caller may close its
/// descriptors at any time: a FIXED_FILE request still reaches the file registered at
/// its index, never a file that reused the number. io_uring registers those descriptors
/// with the kernel (IORING_REGISTER_FILES: no file lookup and reference count per
/// request, as liburing's fixed files); AIO submits on them, and tells file from stream
/// once, here, instead of by an fstat per request. Any op may use FIXED_FILE.
///
/// Once per engine, before its first accepted request (ioeng_submit() or
/// ioeng_submit_batch(); a refused one does not count); independent of
/// ioeng_register_buffers(). Returns 0, or:
///  -EINVAL      NULL `h` or `fds`; `n` outside 1..=32768 (IOENG_MAX_REGISTERED_FILES);
///  -EBADF       an entry that is not an open descriptor;
///  -EBUSY       files already registered, or a request was already submitted;
///  -ESRCH       `h` was inherited across fork() (see ioeng_t);
///  -EMFILE, -ENFILE  no descriptor left for the engine's copies (RLIMIT_NOFILE);
///  other        io_uring refused the registration (its -errno: -EBADF for an io_uring
///               descriptor, -EMFILE for more files than RLIMIT_NOFILE, -EEXIST from
///               another thread than the IOENG_CONFIG_SINGLE_POLLER poller's).
/// On an error nothing is registered, none of the engine's copies stays open, and
/// registering may be tried again.
///
/// `fds` is read during the call only. Thread-safe, but racing the first submit gives
/// -EBUSY or -EINVAL for FIXED_FILE requests. In a forked child the engine's copies
/// stay open (like its event fd: closing them could close numbers the child reused).
///
/// # Safety
/// `h` is NULL or a live handle; `fds` is NULL or readable for `n` ints.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_register_files(h: *mut Ioeng, fds: *const c_int, n: u32) -> c_int {
    guard(|| {
        if h.is_null() || fds.is_null() || n == 0 || n > IOENG_MAX_REGISTERED_FILES {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        // SAFETY: non-NULL and readable for `n` ints per the caller contract.
        let fds = unsafe { std::slice::from_raw_parts(fds, n as usize) };
        to_errno(engine.register_files(fds))
    })
}

/// Starts dispatching on an engine opened with `start_paused = 1`. Idempotent.
/// Returns 0, -EINVAL for NULL `h`, or -ESRCH in a forked child. Thread-safe.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_resume(h: *mut Ioeng) -> c_int {
    guard(|| {
        if h.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        engine.resume();
        0
    })
}

/// Copies the counters into `*out`. Returns 0, -EINVAL for NULL `h` or `out`, or -ESRCH
/// in a forked child.
/// Thread-safe; may be called from a callback.
///
/// # Safety
/// `h` is NULL or a live handle; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_stats(h: *const Ioeng, out: *mut IoengStats) -> c_int {
    guard(|| {
        if h.is_null() || out.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        let snapshot = engine.stats();
        // SAFETY: non-NULL and writable per the caller contract.
        unsafe { out.write(snapshot) };
        0
    })
}

/// An IO class's settings (since 1.1). Initialize with ioeng_class_config_init(), then
/// change fields.
#[repr(C)]
pub struct IoengClassConfig {
    /// Share of the NORMAL dispatches while the class has requests waiting, 1..=10000
    /// (default 100): classes get dispatch cost (1 + bytes/65536 per request) in
    /// proportion to their weights. 0 or above 10000 gives -EINVAL.
    pub weight: u32,
    /// -1 (default) = none; else IOPRIO_PRIO_VALUE(class, level) with class RT (1),
    /// BE (2) or IDLE (3) and level 0..7, given to the kernel with each request
    /// (io_uring sqe ioprio, AIO IOCB_FLAG_IOPRIO); RT needs CAP_SYS_ADMIN or
    /// CAP_SYS_NICE (else the requests complete with -EPERM). Anything else gives -EINVAL.
    pub kernel_ioprio: i32,
    /// Most requests per second (HIGH ones included); 0 (default) = no limit.
    pub iops_limit: u64,
    /// Most bytes per second (HIGH ones included); 0 (default) = no limit. Bursts up
    /// to 10 ms of the rate, or one request when that is larger.
    pub bytes_per_sec_limit: u64,
    /// Must be zero.
    pub reserved: [u64; 4],
}

const _: () = assert!(std::mem::size_of::<IoengClassConfig>() == 56);
const _: () = assert!(std::mem::offset_of!(IoengClassConfig, weight) == 0);
const _: () = assert!(std::mem::offset_of!(IoengClassConfig, kernel_ioprio) == 4);
const _: () = assert!(std::mem::offset_of!(IoengClassConfig, iops_limit) == 8);
const _: () = assert!(std::mem::offset_of!(IoengClassConfig, bytes_per_sec_limit) == 16);
const _: () = assert!(std::mem::offset_of!(IoengClassConfig, reserved) == 24);

/// Fills `c` with the defaults: weight 100, no kernel ioprio, no limits. NULL is ignored.
///
/// # Safety
/// `c` is NULL or points to writable memory for one ioeng_class_config_t.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_class_config_init(c: *mut IoengClassConfig) {
    if c.is_null() {
        return;
    }
    let defaults = IoengClassConfig {
        weight: DEFAULT_WEIGHT,
        kernel_ioprio: -1,
        iops_limit: 0,
        bytes_per_sec_limit: 0,
        reserved: [0; 4],
    };
    // SAFETY: the caller guarantees a non-NULL `c` is writable for one config; `write`
    // does not read the (possibly uninitialized) old value.
    unsafe { c.write(defaults) };
}

/// Validates a C class config.
fn class_config_from_c(c: &IoengClassConfig) -> Result<ClassConfig, Error> {
    if c.reserved.iter().any(|&word| word != 0) {
        return Err(Error::InvalidArgument("reserved fields must be zero"));
    }
    ClassConfig::new(
        c.weight,
        c.kernel_ioprio,
        c.iops_limit,
        c.bytes_per_sec_limit,
    )
}

/// The engine behind a non-NULL `h` and the config behind `c`, or the -errno to return.
///
/// # Safety
/// `h` is NULL or live; `c` is NULL or readable.
unsafe fn class_call<'a>(
    h: *const Ioeng,
    c: *const IoengClassConfig,
) -> Result<(&'a AnyEngine, ClassConfig), c_int> {
    if h.is_null() || c.is_null() {
        return Err(-libc::EINVAL);
    }
    // SAFETY: non-NULL (checked above) and live per the caller contract.
    let engine = unsafe { engine_of(h) }.ok_or(FORKED_CHILD)?;
    // SAFETY: non-NULL and readable per the caller contract.
    let config = class_config_from_c(unsafe { &*c }).map_err(|err| -err.errno())?;
    Ok((engine, config))
}

/// Opens an IO class (since 1.1) and stores its id (1..=63) in `*out_id`; requests
/// name it in `class_id`. Classes live as long as the engine. Returns 0, or:
///  -EINVAL  NULL `h`, `c` or `out_id`; weight 0 or above 10000; a bad
///           `kernel_ioprio`; `reserved` not zero;
///  -ENOSPC  63 classes are open already;
///  -ESRCH   `h` was inherited across fork().
/// Thread-safe; may be called from a callback.
///
/// # Safety
/// `h` is NULL or a live handle; `c` is NULL or readable; `out_id` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_class_open(
    h: *mut Ioeng,
    c: *const IoengClassConfig,
    out_id: *mut u16,
) -> c_int {
    guard(|| {
        if out_id.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: forwarded from this function's contract.
        let (engine, config) = match unsafe { class_call(h, c) } {
            Ok(found) => found,
            Err(errno) => return errno,
        };
        match engine.class_open(config) {
            Some(id) => {
                // SAFETY: non-NULL and writable per the caller contract.
                unsafe { out_id.write(id) };
                0
            }
            None => -libc::ENOSPC,
        }
    })
}

/// Changes class `id` (0, or one opened) to the settings in `*c` (since 1.1), from the
/// next dispatch round on; requests already queued follow the new settings. Class 0
/// starts as ioeng_class_config_init() gives. Returns 0, or -EINVAL (NULL `h` or `c`, an
/// unknown `id`, a bad config as for ioeng_class_open()), or -ESRCH in a forked child.
/// Thread-safe; may be called from a callback.
///
/// # Safety
/// `h` is NULL or a live handle; `c` is NULL or readable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_class_update(
    h: *mut Ioeng,
    id: u16,
    c: *const IoengClassConfig,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded from this function's contract.
        let (engine, config) = match unsafe { class_call(h, c) } {
            Ok(found) => found,
            Err(errno) => return errno,
        };
        to_errno(engine.class_update(id, config))
    })
}

/// Copies the statistics of class `id` (0, one opened, or IOENG_CLASS_HIGH) into `*out`
/// (since 1.1); with `flags` IOENG_STATS_RESET, also zeroes its counters, throttled
/// time and histogram (`queued` and `in_flight` are states and stay). Returns 0, or
/// -EINVAL (NULL `h` or `out`, an unknown `id`, an unknown flag), or -ESRCH in a forked
/// child. Thread-safe; may be called from a callback.
///
/// # Safety
/// `h` is NULL or a live handle; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_class_stats(
    h: *const Ioeng,
    id: u16,
    out: *mut IoengClassStats,
    flags: u32,
) -> c_int {
    guard(|| {
        if h.is_null() || out.is_null() || flags & !IOENG_STATS_RESET != 0 {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        let which = (id != IOENG_CLASS_HIGH).then_some(id);
        match engine.class_stats(which, flags & IOENG_STATS_RESET != 0) {
            Ok(stats) => {
                // SAFETY: non-NULL and writable per the caller contract.
                unsafe { out.write(stats) };
                0
            }
            Err(err) => -err.errno(),
        }
    })
}

/// The backend this engine runs: IOENG_BACKEND_AIO or IOENG_BACKEND_URING (never AUTO).
/// Returns IOENG_BACKEND_AUTO only for a NULL `h`. Thread-safe.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_backend(h: *const Ioeng) -> IoengBackend {
    if h.is_null() {
        return IOENG_BACKEND_AUTO;
    }
    // SAFETY: non-NULL and live per the caller contract.
    match unsafe { &*h }.engine.backend() {
        BackendKind::Aio => IOENG_BACKEND_AIO,
        BackendKind::Uring => IOENG_BACKEND_URING,
    }
}

/// Since 1.1. The name of the backend this engine runs: "aio" or "io_uring" (static
/// strings; do not free). NULL for a NULL `h`. Like ioeng_backend(), it also answers on
/// a handle inherited across fork(). Thread-safe.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_backend_name(h: *const Ioeng) -> *const c_char {
    let _ignored = crate::tsan::Ignored::new();
    // SAFETY: forwarded from this function's contract.
    match unsafe { ioeng_backend(h) } {
        IOENG_BACKEND_AIO => c"aio".as_ptr(),
        IOENG_BACKEND_URING => c"io_uring".as_ptr(),
        _ => std::ptr::null(),
    }
}

/// Since 1.1. The alignment O_DIRECT IO on `fd` needs: buffers at multiples of
/// `*mem_align` bytes in memory, offsets and lengths multiples of `*offset_align`. From
/// statx(2) STATX_DIOALIGN where the kernel reports it (Linux 6.1+ for files on ext4,
/// xfs, f2fs, btrfs; 6.11+ for block devices); else the logical block size of the block
/// device (BLKSSZGET for a block device, /sys/dev/block/MAJ:MIN/queue/logical_block_size
/// for a file on one); else 4096. `fd` need not be open with O_DIRECT: the answer is
/// what an O_DIRECT fd of the same file would need. Returns 0 and fills both, or (both
/// left unchanged):
///  -EINVAL      NULL `mem_align` or `offset_align`;
///  -EBADF       `fd` is not an open file descriptor;
///  -EOPNOTSUPP  the file cannot do O_DIRECT IO: the kernel reports no direct-IO support
///               for it (e.g. tmpfs before Linux 6.6); or, where it reports nothing (no
///               STATX_DIOALIGN), the file lives on one of the kernel's pseudo
///               filesystems, which have none (procfs, sysfs, debugfs, tracefs, cgroupfs,
///               securityfs, bpffs, configfs, pstore, efivarfs); or it is not a regular
///               file or a block device (a pipe, socket, tty, directory);
///  other -errno from statx(2).
/// Needs no engine; thread-safe; a pure query: one statx call (where the kernel reports
/// no STATX_DIOALIGN, also an fstatfs and a sysfs read). It never opens the file again,
/// so the caller's record locks, leases and notifications are untouched.
///
/// # Safety
/// `mem_align` and `offset_align` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_dio_alignment(
    fd: c_int,
    mem_align: *mut u32,
    offset_align: *mut u32,
) -> c_int {
    guard(|| {
        if mem_align.is_null() || offset_align.is_null() {
            return -libc::EINVAL;
        }
        if fd < 0 {
            return -libc::EBADF;
        }
        match crate::sys::dio::alignment(fd) {
            Ok((mem, offset)) => {
                // SAFETY: both non-NULL (checked above) and writable per the caller contract.
                unsafe {
                    mem_align.write(mem);
                    offset_align.write(offset);
                }
                0
            }
            Err(errno) => -errno,
        }
    })
}

/// Why IOENG_BACKEND_AUTO does not use io_uring on this machine, e.g.
/// "io_uring_setup failed: EPERM (Operation not permitted)"; NULL when io_uring is usable.
/// The probe runs once per process (first call of this or of an AUTO/URING ioeng_open)
/// and is cached. The string is static; do not free it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn ioeng_uring_unavailable_reason() -> *const c_char {
    let reason = catch_unwind(uring_unavailable_reason).unwrap_or(Some(c"probe failed"));
    reason.map_or(std::ptr::null(), CStr::as_ptr)
}

/// Shuts the engine down and frees it: stops accepting (-ESHUTDOWN), dispatches and
/// completes everything already accepted (every pending callback runs before this
/// returns, even on a paused engine), joins both engine threads (THREADS) or drives the
/// engine on the calling thread, running the callbacks there (POLLED), releases the
/// kernel context (io_destroy / ring) and the event fd, and frees `h`. Returns 0;
/// -EINVAL for NULL `h`, or (IOENG_CONFIG_SINGLE_POLLER) from another thread than the
/// engine's poller (nothing is done and `h` stays valid); -EDEADLK when called from a callback of `h`, or from any thread
/// of a THREADS engine (its callbacks included: two engines whose callbacks closed each
/// other would otherwise wait for each other forever); -EBUSY (POLLED) while another
/// thread is inside ioeng_poll() on `h`, or this thread is, from a callback of another
/// engine that `h`'s callback is closing (nothing is done in these cases and `h` stays
/// valid). A callback of a POLLED engine may close another engine: that close drains it
/// there and returns 0. Callbacks
/// that run during the drain may still call on `h` every function documented as
/// callable from a callback (ioeng_submit() then gives -ESHUTDOWN, ioeng_close()
/// -EDEADLK; ioeng_cancel(), ioeng_cancel_all(), ioeng_stats(), ioeng_resume() and the
/// ioeng_class_* functions work as usual); apart from them and from the -EBUSY case
/// above (a POLLED close while another thread polls is refused, not undefined), the
/// caller must ensure no other call on `h` is running or follows. In a forked child: releases the child's
/// copy of the handle and returns 0, touching none of the parent's threads or kernel
/// objects and running no callback. It closes the copy of an io_uring ring (so that the
/// child does not keep the parent's ring and registered buffers alive), but only while
/// that descriptor number still refers to the ring: a child that closed the inherited
/// descriptors may have reused the numbers for files of its own, which stay open. The
/// event fd and the engine's other descriptors (all close-on-exec) and the copy's memory
/// stay until the child exits or execs: an eventfd cannot be told from one the child
/// made under the same number, and the parent's threads may have held the copy's
/// locks at the fork, so freeing it could block forever.
/// Close waits for every accepted request, also one that waits for a silent stream peer
/// or for its IO class's rate limit (N requests queued at a limit of L IOPS take N / L
/// seconds; the engine sleeps meanwhile): call ioeng_cancel_all() first to end those at
/// once. A paused engine is resumed, and a queued request whose deadline has not passed
/// is dispatched, not failed.
///
/// # Safety
/// `h` is NULL or a live handle that no other thread uses during or after the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_close(h: *mut Ioeng) -> c_int {
    guard(|| {
        if h.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL and live per the caller contract.
        let handle = unsafe { &*h };
        if handle.inherited() {
            // SAFETY: `h` came from Box::into_raw in ioeng_open (in the parent; the child
            // has a copy of that memory), and in the child no engine thread exists and
            // the caller makes no other call on `h` during or after this one.
            let handle = unsafe { Box::from_raw(h) };
            handle.engine.abandon_in_forked_child();
            return 0;
        }
        if let Err(err) = handle.engine.begin_close() {
            return -err.errno();
        }
        // Drains and joins through a shared reference: until both engine threads are
        // joined, callbacks may still call ioeng_submit (-ESHUTDOWN) or ioeng_close
        // (-EDEADLK) on this handle, so it must stay in place and unaliased by a Box.
        handle.engine.finish_close();
        // SAFETY: `h` came from Box::into_raw in ioeng_open. Both engine threads are
        // joined, so no callback runs any more, and the caller guarantees no other
        // thread uses `h` during or after this call: no reference to it remains.
        drop(unsafe { Box::from_raw(h) });
        0
    })
}

/// POLLED mode: runs the engine on the calling thread. Each pass dispatches queued
/// requests (the same fairness rounds as THREADS mode) and hands them to the kernel in
/// one submit call per round, reaps completions and runs their callbacks here (callbacks
/// may submit; what they submit goes to the kernel before this returns). Between passes
/// it sleeps in the kernel, never spinning, until at least `min_complete` callbacks ran
/// in this call or `timeout_ns` nanoseconds passed (0: never wait; -1: no limit; a
/// request queued from another thread, a completion, a cancel, a delayed internal retry
/// or the earliest queued request's deadline falling due wakes it). Cancelled and
/// timed-out requests get their callbacks here too. With `min_complete == 0` it makes
/// one pass and returns. Returning with nothing to do now, it leaves the event fd quiet
/// and arms the engine's timer for it (see ioeng_event_fd(), ioeng_next_timeout_ns()).
///
/// Returns the number of callbacks run (0 on timeout), or:
///  -EINVAL  NULL `h`, a THREADS engine, `timeout_ns < -1`, or (IOENG_CONFIG_SINGLE_POLLER)
///           another thread than the one that polled (or closed) first;
///  -EBUSY   another thread is in ioeng_poll() on `h` (one poller at a time), a
///           callback of this poll calls it again for the same engine, or
///           ioeng_close() of `h` has begun (a contract violation, answered rather
///           than crashing: close drains on its own thread);
///  -EINTR   a signal interrupted the wait before any callback ran;
///  -ESRCH   `h` was inherited across fork(), or in the child of a callback that
///           forked and returned (see ioeng_t).
/// Thread-safe (any thread may poll, one at a time). On AIO, a request that the kernel
/// runs synchronously inside io_submit (buffered regular-file IO, see IOENG_BACKEND_AIO)
/// runs inside this call, as write(2) would on this thread (a buffered write past
/// RLIMIT_FSIZE raises SIGXFSZ here, which kills the process unless it is ignored or
/// handled; ignored, the write gets -EFBIG); a stream never blocks it. On io_uring, the kernel ties a
/// request to the thread that submitted it (the poller): if that thread exits while a
/// request still waits for a stream (pipe, socket), the kernel cancels it, and the
/// engine issues it again in the next ioeng_poll() (or ioeng_close()), from whichever
/// thread that is.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_poll(h: *mut Ioeng, min_complete: u32, timeout_ns: i64) -> c_int {
    guard(|| {
        if h.is_null() || timeout_ns < -1 {
            return -libc::EINVAL;
        }
        let timeout = u64::try_from(timeout_ns).ok().map(Duration::from_nanos);
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        match engine.poll(u64::from(min_complete), timeout) {
            Ok(ran) => ran.min(c_int::MAX as u64) as c_int,
            Err(err) => -err.errno(),
        }
    })
}

/// POLLED mode: an eventfd, owned by the engine (do not close or read it), that is
/// readable while ioeng_poll() can make progress now: completions are ready, queued
/// requests may be dispatched (not paused, a slot free), or a timer is due: a queued
/// request's deadline passed, a delayed retry of -EAGAIN is due, or a rate-limited class
/// getting tokens again may dispatch its held requests. Add it to
/// epoll/poll/select and call ioeng_poll(h, 0, 0) when it is readable; the loop needs
/// no timer of its own for the engine (see examples_c/epoll_loop.c). The kernel signals
/// it for each completion (io_uring IORING_REGISTER_EVENTFD, AIO IOCB_FLAG_RESFD; on
/// io_uring only while no thread is inside ioeng_poll(), which sees completions
/// itself); ioeng_submit() from any thread signals it (on a paused engine only for a
/// request whose deadline is earlier than any queued one; with
/// IOENG_CONFIG_POLL_AFTER_SUBMIT not on the polling thread, which polls next); an engine-owned kernel timer
/// (io_uring IORING_OP_TIMEOUT, AIO a timerfd watched with IOCB_CMD_POLL) signals it
/// when the earliest deadline, retry or refill of a rate-limited class falls due (on
/// io_uring also for the check of transfers that can never happen, see
/// ioeng_next_timeout_ns()), armed by ioeng_poll() as it returns;
/// ioeng_poll() leaves it readable only when work remains (a poll before the first
/// ioeng_event_fd() or ioeng_next_timeout_ns() need not: nobody could see it, and the
/// first of those calls makes the fd readable if that poll left work). So a paused engine's fd
/// stays quiet until a deadline fires. It may be readable with nothing to do (a
/// spurious wake-up, e.g. the timer of a request that was cancelled or dispatched
/// meanwhile: ioeng_poll then returns 0). On io_uring the kernel posts completions
/// (the timer's too) through work queued to the thread that submitted them, the one in
/// ioeng_poll(): a blocking call of that thread, such as epoll_wait(), may return EINTR
/// for it; retry it, as for a signal. Valid until ioeng_close().
/// Returns the fd, or -EINVAL for NULL `h` or a THREADS engine, or -ESRCH in a forked
/// child. Thread-safe.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_event_fd(h: *const Ioeng) -> c_int {
    guard(|| {
        if h.is_null() {
            return -libc::EINVAL;
        }
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return FORKED_CHILD;
        };
        match engine.event_fd() {
            Ok(fd) => fd,
            Err(err) => -err.errno(),
        }
    })
}

/// Since 1.1. POLLED mode: how long an event loop may sleep before ioeng_poll() has
/// work, for loops that want a timeout rather than (or next to) the event fd: 0 when
/// the event fd is readable (progress is possible now: call ioeng_poll()) or a timer is
/// due; else the nanoseconds from now until the engine's earliest timer: a queued
/// request's deadline, a delayed retry of -EAGAIN, a rate-limited class getting tokens
/// again, or (io_uring, while IO is in flight) the engine's check for transfers that can
/// never happen (at most every 50 ms, until
/// each in-flight transfer was checked once); -1 when there is none (only new work or
/// completions end the wait). The event fd fires by itself at that time: a loop that
/// waits on the fd needs neither this call nor a timer. Exact only between polls: while a
/// thread is inside ioeng_poll(), that thread serves the engine (and the fd may be quiet);
/// with IOENG_CONFIG_POLL_AFTER_SUBMIT a request the polling thread submitted quietly
/// does not make it 0 (its deadline does count): that thread polls next.
/// Returns -EINVAL for a NULL `h` or a THREADS engine (its engine threads keep the
/// timers; there is no fd to wait on and nothing for the caller to schedule), -ESRCH in
/// a forked child; errors are below -1. Thread-safe; may be called from a callback.
///
/// # Safety
/// `h` is NULL or a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioeng_next_timeout_ns(h: *const Ioeng) -> i64 {
    guard(|| {
        if h.is_null() {
            return -i64::from(libc::EINVAL);
        }
        // SAFETY: non-NULL (checked above) and live per the caller contract.
        let Some(engine) = (unsafe { engine_of(h) }) else {
            return i64::from(FORKED_CHILD);
        };
        match engine.next_timeout_ns() {
            Ok(ns) => ns,
            Err(err) => -i64::from(err.errno()),
        }
    })
}

/// Library version, e.g. "1.1.0" (IOENG_VERSION_MAJOR.MINOR.PATCH of the library
/// actually loaded). Static string; do not free.
#[unsafe(no_mangle)]
pub extern "C" fn ioeng_version() -> *const c_char {
    const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_macros_match_the_crate_version() {
        let expected = format!("{IOENG_VERSION_MAJOR}.{IOENG_VERSION_MINOR}.{IOENG_VERSION_PATCH}");
        assert_eq!(env!("CARGO_PKG_VERSION"), expected);
        // SAFETY: ioeng_version returns a static NUL-terminated string.
        let reported = unsafe { CStr::from_ptr(ioeng_version()) };
        assert_eq!(reported.to_str().unwrap(), expected);
    }
}
