/*
 * libioeng: Linux AIO / io_uring IO engine with one scheduler.
 *
 * Linking: `pkg-config --cflags --libs ioeng` (static: `pkg-config --static --libs
 * ioeng`, see README), or CMake `find_package(ioeng)` with ioeng::ioeng
 * (libioeng.so.1) or ioeng::ioeng_static (libioeng.a). C++: ioeng.hpp (C++17) wraps
 * this header. Manual: libioeng(7) and one page per function (man 3 ioeng_open).
 * IOENG_VERSION_MAJOR/MINOR/PATCH give the version compiled against, ioeng_version()
 * the one running.
 *
 * Versions: functions of 1.0 are exported at symbol version IOENG_1.0, those added in
 * 1.1 (their comments say "Since 1.1") at IOENG_1.1, so a program using one fails to
 * load on a 1.0 library ("version IOENG_1.1 not found") instead of failing at the call.
 * 1.1 changes no size or offset: ioeng_req_t.class_id is carved from reserved (0 is
 * 1.0's behaviour), IOENG_REQ_SHORT_OK and the FALLOCATE/SYNC_FILE_RANGE ops are new
 * (a 1.0 library refuses them with -EINVAL); a 1.0 program runs unchanged on 1.1. The
 * static inline request builders (ioeng_req_read() ...) at the end of this header are
 * compiled into your program and need no 1.1 symbol. IOENG_POLL_DEFAULT/NEVER are
 * deprecated 1.0 names of IOENG_IDLE_POLL_DEFAULT/NEVER.
 *
 * IO classes (1.1): ioeng_class_open() and friends, ioeng_config_t.normal_min_percent
 * and latency_stats (carved from reserved; 0 is 1.0's behaviour).
 *
 * Conventions (liburing style):
 *  - Functions return 0 on success or a negative errno (-EINVAL, -EBADF, ...).
 *  - -EIO returned by a call (not passed to a callback) means libioeng caught a bug of
 *    its own at the C boundary (a Rust panic) instead of unwinding into your code; the
 *    call had no effect you can rely on. Please report it. -EIO given to a callback is
 *    the kernel's IO error for that request.
 *  - ioeng_submit() returning 0 means the callback will run exactly once;
 *    returning < 0 means it never runs.
 *  - Threads: every function may be called from any thread, and on one engine any
 *    number of threads may be inside any of them at once, with two exceptions:
 *    ioeng_poll() admits one caller per engine at a time (a second one gets -EBUSY at
 *    once; it does not wait), and ioeng_close() must be the last call on a handle (no
 *    other call may run during or after it; see there).
 *  - Enumerated fields are fixed-width integers so that the ABI does not
 *    depend on the compiler's enum size; values outside the listed
 *    constants are rejected with -EINVAL.
 *
 * Callbacks:
 *  - Where they run: IOENG_MODE_THREADS: on one of the engine's two threads, never on a
 *    thread of yours (so never on the thread that called ioeng_submit()): the
 *    completer for IO the kernel completed; the submitter for requests that end
 *    without it (cancelled or timed out while queued or between kernel IOs, refused
 *    at submit, and on AIO the transfers of fds without an AIO path, which it does
 *    itself: an eventfd, /dev/full, a directory, a tty that is not ready).
 *    IOENG_MODE_POLLED: inside ioeng_poll() or ioeng_close(), on the thread that called
 *    it, which may well be the thread that submitted (never inside ioeng_submit(),
 *    ioeng_submit_batch() or ioeng_cancel() themselves). In both modes one at a time
 *    per engine. A callback may call ioeng_submit() (never blocks there);
 *    ioeng_close() from a callback returns -EDEADLK.
 *  - A callback must return normally: it must not throw a C++ exception nor
 *    longjmp/siglongjmp out of it. Unwinding or jumping through libioeng's frames is
 *    undefined behaviour. ioeng.hpp's lambdas catch and carry exceptions for you.
 *  - A callback that blocks (a lock held elsewhere, a sleep, synchronous IO)
 *    stalls every completion of its engine until it returns. Hand long work to
 *    your own threads.
 *
 * Processes and threads:
 *  - fork(): an engine belongs to the process that opened it. A forked child
 *    inherits the handle but not the engine's threads or kernel objects; there
 *    calls on the inherited handle return a negative errno (-ESRCH; details at
 *    ioeng_t) and run no callback, and ioeng_close() only releases the child's copy.
 *    Open a new engine in the child.
 *  - CPU affinity: the engine threads start with the CPU mask (and scheduling
 *    policy, priority and cgroup) of the thread that called ioeng_open(), unless
 *    ioeng_config_t.submitter_cpu / completer_cpu pin them. Call ioeng_open() from
 *    the thread whose placement the engine should share.
 *  - Configuration (ioeng_config_t) is read in ioeng_open(), never later; changing it
 *    afterwards does not affect an open engine. libioeng reads no environment variable.
 *  - Engine threads block asynchronous signals; your handlers run on your threads.
 *  - ThreadSanitizer: libioeng is not instrumented, so TSan cannot see its
 *    internal synchronization. libioeng annotates it instead, under TSan (its
 *    runtime found at run time with dlsym: __tsan_acquire, __tsan_release,
 *    __tsan_ignore_thread_begin, __tsan_ignore_thread_end): everything a thread
 *    did before ioeng_submit() happens-before the request's callback, each
 *    callback happens-before the next one, and libioeng's own memory traffic is
 *    hidden from TSan (callbacks are checked as usual). So a correct program gets
 *    no false race report from any function, 1.0 or 1.1 (`make test` runs submit,
 *    submit_batch, cancel, deadlines, POLLED mode and ioeng.hpp under TSan), and real
 *    races in your code, also between two threads that both submit, are still reported.
 *    dlsym finds the runtime when it is a shared library (gcc's default: check with
 *    `ldd your_program | grep libtsan`, which must list libtsan.so) or when the
 *    program exports the four functions. A statically linked runtime (gcc
 *    -static-libtsan) exports nothing by itself (`nm -D your_program | grep __tsan_`
 *    prints nothing: then libioeng cannot see TSan, and TSan reports false races
 *    inside libioeng); link it with
 *    -Wl,--export-dynamic-symbol=__tsan_acquire,--export-dynamic-symbol=__tsan_release,--export-dynamic-symbol=__tsan_ignore_thread_begin,--export-dynamic-symbol=__tsan_ignore_thread_end
 *    (then `nm -D --defined-only your_program | grep __tsan_` lists the four), or run
 *    with TSAN_OPTIONS=suppressions=<prefix>/share/ioeng/tsan.supp (blunt: it hides
 *    every race whose stack passes through libioeng.so).
 */

#ifndef IOENG_H
#define IOENG_H

/* Generated by cbindgen from src/ffi.rs (build.rs). Do not edit: change src/ffi.rs. */

#include <stdint.h>
#include <stddef.h>
#include <sys/uio.h>
#include <time.h>
typedef struct ioeng ioeng_t;
typedef struct ioeng_req ioeng_req_t;
typedef struct ioeng_config ioeng_config_t;
typedef struct ioeng_stats ioeng_stats_t;
typedef struct ioeng_class_config ioeng_class_config_t;
typedef struct ioeng_class_stats ioeng_class_stats_t;

/* ioeng_stats() and ioeng_class_stats() share their names with their structs, as stat()
 * does with struct stat; g++ -Wshadow calls that hiding a constructor. Popped in the
 * helpers at the end. */
#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#endif


/**
 * Most buffers ioeng_register_buffers() takes.
 */
#define IOENG_MAX_REGISTERED_BUFFERS 16384

/**
 * Most files ioeng_register_files() takes (since 1.1).
 */
#define IOENG_MAX_REGISTERED_FILES 32768

/**
 * `ioeng_config_t.idle_poll_us` (THREADS mode; nothing to do with ioeng_poll()): let the
 * engine choose how long idle threads poll: up to 10 µs (about the CPU a sleep and its
 * wake-up cost, so polling does not cost more CPU than it saves; set a longer limit to
 * buy latency with CPU), only while work recently arrived within that time, one engine
 * thread at a time, and never on a thread allowed a single CPU. Since 1.1; 1.0 called it
 * IOENG_POLL_DEFAULT (still defined, deprecated).
 */
#define IOENG_IDLE_POLL_DEFAULT 0

/**
 * `ioeng_config_t.idle_poll_us`: idle engine threads never poll; they sleep at once.
 * Since 1.1; 1.0 called it IOENG_POLL_NEVER (still defined, deprecated).
 */
#define IOENG_IDLE_POLL_NEVER UINT32_MAX

/**
 * `latency_stats`: the engine's default (off: the histograms' clock reads are not
 * free on the most CPU-bound jobs).
 */
#define IOENG_LATENCY_STATS_DEFAULT 0

/**
 * `latency_stats`: keep per-class latency histograms.
 */
#define IOENG_LATENCY_STATS_ON 1

/**
 * `latency_stats`: no histograms (percentiles read 0).
 */
#define IOENG_LATENCY_STATS_OFF 2

/**
 * ioeng_class_stats() `id`: every HIGH request, whatever its class (a HIGH request
 * counts there and in its own class).
 */
#define IOENG_CLASS_HIGH 65535

/**
 * ioeng_class_stats() `flags`: read, then zero the counters and the histogram.
 */
#define IOENG_STATS_RESET 1

/**
 * Most IO classes an engine has: class 0 and ids 1..=63 from ioeng_class_open().
 */
#define IOENG_MAX_CLASSES 64

/**
 * `flags` bit (since 1.1): the caller promises that one thread, the same one every time,
 * calls ioeng_poll() and ioeng_close() on this engine, and that ioeng_register_buffers()
 * and ioeng_register_files() run before the first ioeng_poll() or on that thread. In exchange, a POLLED io_uring
 * engine lets the kernel batch its completion work for that thread
 * (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, Linux 6.1): less CPU per IO.
 * The first thread to poll (or to close, if none polled) becomes that thread; from then
 * on ioeng_poll() and ioeng_close() on any other thread return -EINVAL and do nothing
 * (the kernel would refuse that thread's calls on the ring), and ioeng_register_buffers()
 * or ioeng_register_files() on another thread fails with the kernel's -EEXIST. Keep that thread alive until it
 * closed the engine. Ignored in THREADS mode, on AIO, and on kernels without these
 * io_uring flags (the engine then behaves as without the flag, and accepts calls from
 * any thread). Any other `flags` bit gives -EINVAL.
 * For files, not streams: the completion of a READ or WRITE that waits for its fd to
 * become ready (a pipe, socket or tty) is deferred kernel work that signalled the event
 * fd about 16 ms after the peer's write on Linux 6.18 (0.1 ms without the flag); a poller
 * waiting inside ioeng_poll() with a timeout is woken at once. File IO is not delayed.
 */
#define IOENG_CONFIG_SINGLE_POLLER 1

/**
 * `flags` bit (since 1.1), with IOENG_CONFIG_SINGLE_POLLER (-EINVAL without it, in
 * either mode), POLLED mode (ignored in THREADS mode, which has no event fd): the caller
 * also promises that a thread, from its ioeng_poll() on until another thread polls the
 * engine, calls ioeng_poll() again after each of its submits before it (or anyone)
 * waits on the event fd for that request: an event loop that submits while it handles
 * events and polls at the end of each round. In exchange those submits (ioeng_submit(),
 * ioeng_submit_batch()) do not make the event fd readable: no write of the fd at the
 * submit and no drain of it in the poll, which such a loop pays per round
 * (examples_c/ioeng_nbd at QD1, io_uring, a page-cache file: 4 syscalls per request
 * instead of 6). So a thread that hands polling over to another does not submit until
 * that one has polled, or polls after its submits itself. Submits on other threads,
 * before the first poll, and from callbacks that run inside a poll of another engine
 * make the fd readable as without the flag (callbacks of this engine's own poll need
 * no signal either way). ioeng_next_timeout_ns() does not answer 0 for a request
 * submitted quietly (it does count its deadline) until that poll takes it.
 */
#define IOENG_CONFIG_POLL_AFTER_SUBMIT 2

/**
 * Library version (semantic versioning); ioeng_version() returns the same as a string.
 */
#define IOENG_VERSION_MAJOR 1

/**
 * See IOENG_VERSION_MAJOR.
 */
#define IOENG_VERSION_MINOR 1

/**
 * See IOENG_VERSION_MAJOR.
 */
#define IOENG_VERSION_PATCH 0

/**
 * Largest accepted `depth`.
 */
#define IOENG_MAX_DEPTH 32768

/**
 * An engine. Opaque; created by ioeng_open(), freed by ioeng_close().
 *
 * An engine belongs to the process that opened it. In a child created by fork() (which
 * copies the handle but not the engine's threads or kernel objects), every call on an
 * inherited handle returns -ESRCH and runs no callback, except ioeng_close(), which
 * releases the child's copy (returning 0, without blocking) without touching the
 * parent's engine, and ioeng_backend(), which still reports the backend. Requests
 * pending at the fork belong to the parent; the child gets no callback for them. The
 * child is recognised through pthread_atfork(): a fork() child is; one made by a raw
 * clone() or syscall(SYS_fork), which run no fork handlers, is not (do not use the
 * handle there).
 *
 * fork() inside a callback: the child is a copy of the thread running the callback
 * (an engine thread, or the thread in ioeng_poll()/ioeng_close()), but not an engine
 * thread of its own process: it may open, use and close engines of its own (no
 * -EDEADLK). It should exec or _exit() before returning from the callback. If it
 * returns, libioeng runs nothing of the parent's engine in it (an io_uring ring is
 * memory shared with the parent): in THREADS mode the child ends with _exit(0); in
 * POLLED mode the ioeng_poll() or ioeng_close() that ran the callback returns -ESRCH.
 */
struct ioeng;

/**
 * Backend selector (`IOENG_BACKEND_*`).
 */
typedef uint32_t ioeng_backend_t;

/**
 * Engine mode (`IOENG_MODE_*`).
 */
typedef uint32_t ioeng_mode_t;

/**
 * Engine configuration. Initialize with ioeng_config_init(), then change fields.
 */
struct ioeng_config {
  /**
   * IOENG_BACKEND_*; default AUTO.
   */
  ioeng_backend_t backend;
  /**
   * Maximum IOs in flight in the kernel, 1..=32768; default 128.
   */
  uint32_t depth;
  /**
   * Maximum IOs per kernel submit call, 0..=depth; 0 (default) means `depth`.
   */
  uint32_t batch;
  /**
   * Maximum requests waiting in the three queues; 0 (default) = unbounded.
   */
  uint32_t queue_capacity;
  /**
   * 1: queue requests but dispatch nothing until ioeng_resume(); 0 (default) or 1.
   */
  uint32_t start_paused;
  /**
   * IOENG_MODE_THREADS (default) or IOENG_MODE_POLLED; anything else gives -EINVAL.
   */
  ioeng_mode_t mode;
  /**
   * THREADS: how long an idle engine thread polls before it sleeps, in µs (polling saves
   * a wake-up when work arrives within that time, and burns a CPU meanwhile);
   * IOENG_IDLE_POLL_DEFAULT (0) lets the engine decide, IOENG_IDLE_POLL_NEVER never polls.
   * Ignored in POLLED mode (ioeng_poll never spins).
   */
  uint32_t idle_poll_us;
  /**
   * THREADS: pin the submitter thread to this CPU; -1 (the default) inherits the
   * CPU mask of the thread that called ioeng_open(). A CPU the thread may not run on
   * (offline, outside the cpuset) makes ioeng_open() fail with the kernel's -errno
   * (-EINVAL); one at or above CPU_SETSIZE, or below -1, gives -EINVAL (also in
   * POLLED mode, which otherwise ignores it).
   */
  int32_t submitter_cpu;
  /**
   * THREADS: pin the completer thread to this CPU; -1 (the default) inherits.
   */
  int32_t completer_cpu;
  /**
   * Since 1.1: 0 (default) = HIGH is strict priority; 1..=50 = while both HIGH and
   * NORMAL requests wait, NORMAL gets this percent of the dispatches (over any n
   * such dispatches floor(p·n/100) ± 1); above 50 gives -EINVAL. Counted among the
   * requests their classes' rate limits let go: a class whose HIGH request its limits
   * hold offers no NORMAL request meanwhile (see IOENG_PRIO_HIGH), so a limited class
   * busy with HIGH requests gives its NORMAL ones this share of its own dispatches.
   */
  uint32_t normal_min_percent;
  /**
   * Since 1.1: per-class latency histograms for ioeng_class_stats(): 0 = the
   * engine's default (off), 1 = on, 2 = off; anything else gives -EINVAL. The
   * counters are always kept.
   */
  uint32_t latency_stats;
  /**
   * Since 1.1 (was `reserved[2]`): IOENG_CONFIG_* bits; 0 (the default) is 1.0's
   * behaviour. A 1.0 library refuses any bit (-EINVAL: reserved not zero).
   */
  uint32_t flags;
  /**
   * Must be zero.
   */
  uint32_t reserved[1];
};

/**
 * Operation (`IOENG_OP_*`).
 */
typedef uint32_t ioeng_op_t;

/**
 * Priority (`IOENG_PRIO_*`).
 */
typedef uint32_t ioeng_prio_t;

/**
 * Per-request flags (`IOENG_REQ_*`, or-ed into `ioeng_req_t.flags`).
 */
typedef uint32_t ioeng_req_flags_t;

/**
 * One IO request (64 bytes; the layout is frozen from version 1 on). Copied by
 * ioeng_submit(); the struct itself need not outlive the call. Build it with the
 * ioeng_req_*() builders at the end of this header (since 1.1; every field they do not
 * take is zero), then set `prio`, `flags`, `tag`, `deadline_ns` as needed: zero means
 * "none" for every optional field. By hand, zero it first: `ioeng_req_t req = {0};` in
 * C, `ioeng_req_t req{};` in C++ (where `= {0}` warns with -Wmissing-field-initializers).
 */
struct ioeng_req {
  /**
   * IOENG_OP_*; anything else gives -EINVAL.
   */
  ioeng_op_t op;
  /**
   * IOENG_PRIO_*; anything else gives -EINVAL.
   */
  ioeng_prio_t prio;
  /**
   * Open file descriptor; < 0 gives -EBADF. It must stay open until the callback ran
   * (closing it earlier gives -EBADF in the callback, or IO on whatever file reuses the
   * number: also for a request already in the kernel, whose continuation after a short
   * transfer looks the number up again). With IOENG_REQ_FIXED_FILE: the index of a
   * file given to ioeng_register_files() instead (out of range: -EINVAL), which the
   * engine holds open itself.
   */
  int32_t fd;
  /**
   * IOENG_REQ_* bits; an unknown bit gives -EINVAL. Flags other than FIXED_FILE on
   * FSYNC/FDATASYNC/FALLOCATE/SYNC_FILE_RANGE, and DSYNC/SYNC on READ/READV, give
   * -EINVAL.
   */
  ioeng_req_flags_t flags;
  /**
   * READ/WRITE: caller-owned memory of `len` bytes. READV/WRITEV: a caller-owned
   * `const struct iovec *` array of `len` entries. Not `const` for ABI reasons only:
   * for WRITE/WRITEV (and the iovec array of READV) the engine never writes through
   * it, so a const buffer may be cast; ioeng_req_write()/ioeng_req_writev()/
   * ioeng_req_readv() take `const` pointers and do that cast. Memory (the array and every buffer
   * it names) must stay valid (and, for reads, untouched) until the callback ran; the
   * engine never writes to the iovec array. O_DIRECT alignment is the caller's
   * business: the kernel's answer to a misaligned request (-EINVAL where the file
   * requires the alignment ioeng_dio_alignment() reports) comes in the callback.
   */
  void *buf;
  /**
   * READ/WRITE: bytes, > 0. READV/WRITEV: iovec count, 1..=IOV_MAX. Transfers above
   * the kernel's per-call maximum (0x7ffff000 bytes) are split internally.
   * FALLOCATE/SYNC_FILE_RANGE: the length of the range, passed on as it is.
   */
  uint64_t len;
  /**
   * Byte offset in the file. Streams (pipes, FIFOs, sockets, ttys: files where lseek
   * fails with ESPIPE) have no position and ignore it: a short transfer on a stream
   * is continued without a position (offset 0, which sockets require), so no byte is
   * lost or repeated. `offset` plus the transfer size must not exceed INT64_MAX
   * (-EINVAL).
   */
  uint64_t offset;
  /**
   * The caller's id for ioeng_cancel(); 0 = none. Need not be unique.
   */
  uint64_t tag;
  /**
   * CLOCK_MONOTONIC nanoseconds; 0 = none. A request still queued (not yet handed to
   * the kernel) at this time completes with -ETIMEDOUT.
   */
  uint64_t deadline_ns;
  /**
   * With IOENG_REQ_FIXED_BUF: index into the buffers given to ioeng_register_buffers().
   * FALLOCATE: the mode (FALLOC_FL_*). SYNC_FILE_RANGE: the flags (SYNC_FILE_RANGE_*).
   */
  uint32_t buf_index;
  /**
   * Since 1.1 (was part of `reserved`): the request's IO class; 0 = the default class,
   * which is all a 1.0 program uses; else an id from ioeng_class_open() on this
   * engine. Any other value gives -EINVAL.
   */
  uint16_t class_id;
  /**
   * Must be zero (-EINVAL otherwise).
   */
  uint16_t reserved;
};

/**
 * Completion callback. `res`: READ → bytes read (short only at end of file, 0 at or after
 * EOF); WRITE → `len`; READV/WRITEV → the same over the whole vector; FSYNC/FDATASYNC/
 * FALLOCATE/SYNC_FILE_RANGE → 0; -ECANCELED after ioeng_cancel(), or from a file that
 * fails IO with ECANCELED itself (a FUSE server); an IO that io_uring cancels on its own
 * (no worker thread can start under a pids limit, its submitting poller exited) is
 * issued again, backing off up to 1 ms between tries, until such cancels have come in a
 * row for a second (a request may then complete as late as that) before its
 * -ECANCELED is reported; -ETIMEDOUT when
 * `deadline_ns` passed while the request was queued; failure → -errno from the kernel.
 * With IOENG_REQ_NOWAIT, -EAGAIN (when nothing was moved) or the bytes moved before the
 * kernel would have blocked.
 * READ at end of file: for a stream, when the peer shut down or the writer closed. On
 * message-oriented fds (datagram/seqpacket sockets, inotify, eventfd, signalfd,
 * timerfd, and character devices without a position other than ttys: /dev/fuse,
 * /dev/kmsg, tun, input events) a READ or WRITE is one read(2)/write(2): a short result
 * is a whole message, returned as it is.
 * Streams (pipes, sockets, ttys): bytes already moved cannot be moved back, so when a
 * READ or WRITE fails after moving some bytes, `res` is the count moved (as read(2)/
 * write(2) report it: a WRITE to a pipe whose reader took 64 KiB and closed → 65536,
 * not -EPIPE) and the error shows on the next request. On files a failure is -errno even
 * after a partial transfer (the data stays at its offset).
 * Both backends give the same `res`, equal to what read(2)/write(2) (pread/pwrite on
 * files with a position) give, for any fd the kernel can read or write: AIO does the
 * transfer once with preadv2/pwritev2 where the kernel has no AIO path for the file
 * (/dev/full, eventfd writes, inotify, /proc files, directories), without blocking.
 * A file that cannot do the transfer at all (a READ or WRITE of an epoll fd or a
 * pidfd) gets read(2)'s -EINVAL on both: io_uring, which would wait for readiness
 * forever, has such a request probed after about 50–120 ms in flight (at most two 50 ms
 * sweeps, each up to two clock ticks late) and cancelled. (Not covered: a WRITE of a
 * fanotify fd or /dev/kmsg waits on io_uring.)
 * Short transfers, -EAGAIN and -EINTR never reach it: they are issued again (after 4
 * -EAGAIN/-EINTR in a row, with a delay growing from 10 µs to 1 ms, so an fd that stays
 * unready and that the kernel cannot wait for — a tty on AIO — costs about one retry per
 * ms, not a busy CPU; pipes and sockets wait in the kernel on both backends; such a
 * request keeps its callback, and ioeng_close, waiting until the fd is ready, unless it
 * is cancelled: see ioeng_cancel_all()).
 * THREADS mode: runs on an engine thread, one callback at a time per engine. POLLED mode:
 * runs on the thread inside ioeng_poll() or ioeng_close(). A callback may submit; it must
 * not block (that stalls every completion of its engine), throw (C++) or longjmp.
 */
typedef void (*ioeng_cb_t)(void *ctx, int64_t res);

/**
 * Counters, read with ioeng_stats(). Each is exact when the engine is idle; while IO runs
 * they are read one by one and need not be mutually consistent.
 */
struct ioeng_stats {
  /**
   * Requests accepted by ioeng_submit().
   */
  uint64_t submitted;
  /**
   * Callbacks invoked (counted as each one starts).
   */
  uint64_t completed;
  /**
   * IOs in the kernel now.
   */
  uint64_t in_flight;
  /**
   * Requests waiting in the HIGH queue.
   */
  uint64_t queued_high;
  /**
   * Requests waiting in the READ queue.
   */
  uint64_t queued_read;
  /**
   * Requests waiting in the WRITE queue.
   */
  uint64_t queued_write;
  /**
   * io_submit / io_uring_enter calls that submitted at least one IO (on AIO, handing
   * FALLOCATE/SYNC_FILE_RANGE commands to the engine's helper thread counts as one).
   */
  uint64_t kernel_submit_calls;
  /**
   * Kernel IOs issued again: short reads/writes before EOF, -EAGAIN/-EINTR.
   */
  uint64_t resubmits;
  /**
   * Callbacks that got -ECANCELED.
   */
  uint64_t cancelled;
  /**
   * Requests whose deadline passed while queued (their callbacks get -ETIMEDOUT; a
   * kernel's own -ETIMEDOUT, e.g. from a socket, is not counted).
   */
  uint64_t timed_out;
  /**
   * Zero; room for later counters.
   */
  uint64_t reserved[6];
};

/**
 * An IO class's settings (since 1.1). Initialize with ioeng_class_config_init(), then
 * change fields.
 */
struct ioeng_class_config {
  /**
   * Share of the NORMAL dispatches while the class has requests waiting, 1..=10000
   * (default 100): classes get dispatch cost (1 + bytes/65536 per request) in
   * proportion to their weights. 0 or above 10000 gives -EINVAL.
   */
  uint32_t weight;
  /**
   * -1 (default) = none; else IOPRIO_PRIO_VALUE(class, level) with class RT (1),
   * BE (2) or IDLE (3) and level 0..7, given to the kernel with each request
   * (io_uring sqe ioprio, AIO IOCB_FLAG_IOPRIO); RT needs CAP_SYS_ADMIN or
   * CAP_SYS_NICE (else the requests complete with -EPERM). Anything else gives -EINVAL.
   */
  int32_t kernel_ioprio;
  /**
   * Most requests per second (HIGH ones included); 0 (default) = no limit.
   */
  uint64_t iops_limit;
  /**
   * Most bytes per second (HIGH ones included); 0 (default) = no limit. Bursts up
   * to 10 ms of the rate, or one request when that is larger.
   */
  uint64_t bytes_per_sec_limit;
  /**
   * Must be zero.
   */
  uint64_t reserved[4];
};

/**
 * One IO class's statistics, read with ioeng_class_stats() (since 1.1). Counters count
 * callbacks (a request that was cancelled or timed out counts too, with the bytes it
 * moved: none); each is exact when the engine is idle.
 */
struct ioeng_class_stats {
  /**
   * Completed READ and READV requests.
   */
  uint64_t reads;
  /**
   * Completed WRITE and WRITEV requests.
   */
  uint64_t writes;
  /**
   * Completed requests of the other ops (FSYNC, FDATASYNC, ...).
   */
  uint64_t others;
  /**
   * Bytes moved by the completed reads.
   */
  uint64_t bytes_read;
  /**
   * Bytes moved by the completed writes.
   */
  uint64_t bytes_written;
  /**
   * Requests of the class waiting in the engine now.
   */
  uint64_t queued;
  /**
   * Requests of the class in the kernel now.
   */
  uint64_t in_flight;
  /**
   * Time the class was held by its iops/bytes limits, in ns (0 for IOENG_CLASS_HIGH:
   * limits belong to classes).
   */
  uint64_t throttled_ns;
  /**
   * Latency percentiles (queued by ioeng_submit → callback start), in ns: bucket
   * values (within 3 %, for latencies up to 2^44 ns, about 4.9 hours; one above
   * reads as `max_ns`) clamped to `max_ns`; 0 when nothing completed or when
   * `latency_stats` is off.
   */
  uint64_t p50_ns;
  uint64_t p90_ns;
  uint64_t p99_ns;
  uint64_t p999_ns;
  /**
   * The largest latency seen (0 with `latency_stats` off).
   */
  uint64_t max_ns;
  /**
   * Zero; room for later counters.
   */
  uint64_t reserved[7];
};

/**
 * Use io_uring when a ring can be created and read/write/fsync are supported, else Linux AIO.
 */
#define IOENG_BACKEND_AUTO 0

/**
 * Linux AIO (io_setup/io_submit/io_getevents). Asynchronous only for O_DIRECT on
 * regular files and block devices: a buffered READ/WRITE of a regular file may still run
 * inside io_submit on the engine's submitting thread (in IOENG_MODE_POLLED, inside
 * ioeng_poll()), for as long as the filesystem takes. Streams (pipes, FIFOs, sockets,
 * ttys, blocking or not) never block there (since 1.1): a transfer is tried without
 * blocking (RWF_NOWAIT) and, when nothing can move, waits for readiness in the kernel
 * (IOCB_CMD_POLL, which cancel stops), so a silent peer delays only its own request.
 * Ttys and FIFOs opened read-write, which AIO cannot poll, are asked with poll(2) and
 * retried with the -EAGAIN backoff (see ioeng_cb_t); a blocking tty is then read or
 * written through a non-blocking second open of it (/proc/self/fd), and a blocking pty
 * master (which cannot be opened twice) is written in pieces of 1024 bytes, each once
 * poll says writable, which the kernel takes without waiting. Unless another thread
 * writes the same blocking pty master at the same time (it may take the room first).
 * FALLOCATE and SYNC_FILE_RANGE, which Linux AIO has no command for, run on one helper
 * thread of the engine, in POLLED mode too: started by the first of them (never at
 * open), it blocks asynchronous signals and is joined by ioeng_close(). Where no thread
 * can be started (a pids or thread limit), they run instead, one at a time, on the
 * thread that hands requests to the kernel: in THREADS mode the submitter, or the
 * completer right after its callbacks; in POLLED mode the thread inside ioeng_poll()
 * or ioeng_close(). That thread, and the completions it would reap, wait meanwhile.
 */
#define IOENG_BACKEND_AIO 1

/**
 * io_uring. A READ/WRITE of a tty (blocking or not) runs on one of the kernel's io-wq
 * worker threads of the process (IOSQE_ASYNC), never on the submitting thread, where
 * io_uring would otherwise run a blocking tty write that waits for room (since 1.1);
 * cancel interrupts it there, and it completes with the bytes it had moved.
 */
#define IOENG_BACKEND_URING 2

/**
 * Read `len` bytes at `offset` into `buf`.
 */
#define IOENG_OP_READ 0

/**
 * Write `len` bytes from `buf` at `offset`.
 */
#define IOENG_OP_WRITE 1

/**
 * fsync(2) of `fd`; `buf`, `len`, `offset` are ignored.
 */
#define IOENG_OP_FSYNC 2

/**
 * fdatasync(2) of `fd`; `buf`, `len`, `offset` are ignored.
 */
#define IOENG_OP_FDATASYNC 3

/**
 * Scatter read (preadv2): `buf` is a `const struct iovec *`, `len` the iovec count.
 */
#define IOENG_OP_READV 4

/**
 * Gather write (pwritev2): `buf` is a `const struct iovec *`, `len` the iovec count.
 */
#define IOENG_OP_WRITEV 5

/**
 * Since 1.1: fallocate(2) of `fd` over `offset`..`offset + len`, mode (FALLOC_FL_*) in
 * `buf_index`; `buf` ignored; no flags. Goes to the WRITE queue. Gives fallocate's result:
 * 0, or the kernel's -errno for whatever it refuses (an unsupported mode: -EOPNOTSUPP;
 * `len` 0: -EINVAL); only `offset + len` above INT64_MAX is refused at submit.
 */
#define IOENG_OP_FALLOCATE 6

/**
 * Since 1.1: sync_file_range(2) of `fd` over `offset`..`offset + len` (len 0 = to the end
 * of the file), flags (SYNC_FILE_RANGE_*) in `buf_index`; `buf` ignored; no flags. Goes to
 * the WRITE queue. Gives sync_file_range's result (0, or the kernel's -errno, e.g. -EINVAL
 * for unknown flags). A range of 4 GiB or more is synced in pieces of less than 4 GiB, one
 * after the other, as far as the file's (or block device's) data reaches (io_uring's
 * length field is 32 bits; both backends do the same); `res` is 0 only if every piece
 * gave 0, else the first error.
 */
#define IOENG_OP_SYNC_FILE_RANGE 7

/**
 * RWF_DSYNC: this WRITE/WRITEV is durable (data + needed metadata) when its callback runs.
 */
#define IOENG_REQ_DSYNC (1 << 0)

/**
 * RWF_SYNC: like DSYNC, and all metadata too (as after fsync).
 */
#define IOENG_REQ_SYNC (1 << 1)

/**
 * RWF_NOWAIT: the kernel fails with -EAGAIN instead of blocking; that -EAGAIN reaches the
 * callback instead of being retried. Also -EAGAIN, on both backends, for a write the
 * filesystem will not do without blocking at all (a buffered ext4 write; the kernel's
 * AIO path says -EOPNOTSUPP there, io_uring -EAGAIN). A file without NOWAIT support
 * (e.g. tmpfs) gives -EOPNOTSUPP.
 */
#define IOENG_REQ_NOWAIT (1 << 2)

/**
 * Use the registered buffer `buf_index` (see ioeng_register_buffers()); `[buf, buf+len)`
 * must lie inside it. READ/WRITE only.
 */
#define IOENG_REQ_FIXED_BUF (1 << 3)

/**
 * Since 1.1. A short READ/WRITE (READV/WRITEV) completes as the kernel left it, like
 * read(2)/recv(2), instead of being continued: for sockets and pipes, "whatever has
 * arrived" (at least one byte; a READ at end of file or of a stream still gives 0).
 * -EAGAIN/-EINTR are still retried, and a transfer above the kernel's per-call maximum
 * is still split (a full part is not short).
 */
#define IOENG_REQ_SHORT_OK (1 << 4)

/**
 * Since 1.1. `fd` is an index into the files given to ioeng_register_files(), not a
 * descriptor: the request runs on the file registered there (on io_uring without a
 * file lookup per request). Any op.
 */
#define IOENG_REQ_FIXED_FILE (1 << 5)

/**
 * Every flag this version knows; any other bit gives -EINVAL.
 */
#define IOENG_REQ_KNOWN_FLAGS (((((IOENG_REQ_DSYNC | IOENG_REQ_SYNC) | IOENG_REQ_NOWAIT) | IOENG_REQ_FIXED_BUF) | IOENG_REQ_SHORT_OK) | IOENG_REQ_FIXED_FILE)

/**
 * A submitter and a completer thread per engine; callbacks run on an engine thread.
 */
#define IOENG_MODE_THREADS 0

/**
 * No engine thread (one exception: on AIO, the helper thread of FALLOCATE and
 * SYNC_FILE_RANGE, see IOENG_BACKEND_AIO): the caller drives the engine with ioeng_poll()
 * (from any thread, one at a time), which dispatches, submits, reaps and runs the
 * callbacks on the calling thread; ioeng_event_fd() tells an epoll/poll loop when to call
 * it. Nothing happens between polls: ioeng_submit() only queues. For thread-per-core
 * programs and event loops.
 */
#define IOENG_MODE_POLLED 1

/**
 * READ and READV go to the READ queue; WRITE, WRITEV, FSYNC, FDATASYNC, FALLOCATE and
 * SYNC_FILE_RANGE go to the WRITE queue.
 */
#define IOENG_PRIO_NORMAL 0

/**
 * Strict priority queue: dispatched before any queued NORMAL request. With IO classes
 * whose rate limits hold a HIGH request (limits count HIGH requests too), it waits for
 * its class's tokens, the NORMAL requests of its class wait behind it, and other
 * classes' requests go meanwhile (`normal_min_percent` may also let NORMAL go first).
 */
#define IOENG_PRIO_HIGH 1

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * Fills `cfg` with the defaults: AUTO backend, depth 128, batch 0 (= depth), unbounded queues,
 * not paused, reserved zero. NULL is ignored.
 *
 * # Safety
 * `cfg` is NULL or points to writable memory for one ioeng_config_t.
 */
void ioeng_config_init(struct ioeng_config *cfg);

/**
 * Creates an engine; in THREADS mode starts (and pins, see `submitter_cpu`) its submitter
 * and completer threads; in POLLED mode creates its event fd and starts no thread.
 *
 * `cfg` NULL means defaults (see ioeng_config_init). On success stores the handle in
 * `*out` and returns 0; on failure `*out` is left unchanged and the return is:
 *  -EINVAL  NULL `out`, or a bad config (depth 0 or above 32768, batch above depth,
 *           unknown backend, start_paused not 0/1, reserved not zero, unknown `flags`);
 *  -EPERM, -ENOSYS, ...  an explicitly requested backend that cannot start (never a
 *           silent switch to the other backend; AUTO falls back to AIO, see
 *           ioeng_uring_unavailable_reason());
 *  -EAGAIN, -ENOMEM, -EMFILE  kernel resources exhausted (fs.aio-max-nr, locked memory,
 *           threads, fds);
 *  -ENOMEM  (also) no memory for the engine's own arrays, which grow with `depth` and
 *           `batch` (RLIMIT_AS, no overcommit): reported, never an abort;
 *  -EINVAL  (also) `submitter_cpu`/`completer_cpu` names a CPU the thread may not use.
 * Configuration is read here only, never later from the environment.
 *
 * # Safety
 * `cfg` is NULL or points to a readable ioeng_config_t; `out` is NULL or writable.
 */
int ioeng_open(const struct ioeng_config *cfg, struct ioeng **out);

/**
 * Queues one request. Never blocks on kernel progress. In POLLED mode it only queues
 * (and makes the event fd readable, except on the polling thread of an engine opened
 * with IOENG_CONFIG_POLL_AFTER_SUBMIT): the request reaches the kernel in the next
 * ioeng_poll().
 *
 * Returns 0 when accepted: `cb(ctx, res)` will then run exactly once, on an engine
 * thread (THREADS) or inside ioeng_poll()/ioeng_close() (POLLED). Returns < 0 when
 * refused, and then `cb` never runs:
 *  -EINVAL      NULL `h`, `req` or `cb`; unknown op or prio; READ/WRITE with NULL
 *               `buf` or `len == 0`; READV/WRITEV with NULL `buf`, an iovec count
 *               outside 1..=IOV_MAX or iovec lengths summing above INT64_MAX;
 *               `offset` + bytes (FALLOCATE/SYNC_FILE_RANGE: + `len`) above
 *               INT64_MAX; an unknown flag bit; any flag on FSYNC/FDATASYNC/
 *               FALLOCATE/SYNC_FILE_RANGE but FIXED_FILE; DSYNC or SYNC on READ/READV;
 *               FIXED_BUF on READV/WRITEV, without registered buffers, with
 *               `buf_index` out of range or `[buf, buf+len)` not inside that buffer;
 *               FIXED_FILE without registered files or with `fd` not an index of
 *               one; `reserved` not 0;
 *  -EBADF       `fd < 0` (without FIXED_FILE);
 *  -ESHUTDOWN   ioeng_close() has begun (e.g. a callback submitting during close);
 *  -EAGAIN      the queues hold `queue_capacity` requests; retry after completions;
 *  -ESRCH       `h` was inherited across fork() (see ioeng_t).
 *
 * `*req` is copied; `req->buf` stays owned by the caller and must remain valid until the
 * callback ran. Thread-safe: any number of threads (and callbacks) may submit at once.
 *
 * # Safety
 * `h` is NULL or a live handle from ioeng_open; `req` is NULL or readable; `ctx` is
 * passed to `cb` untouched.
 */
int ioeng_submit(struct ioeng *h, const struct ioeng_req *req, ioeng_cb_t cb, void *ctx);

/**
 * Queues `n` requests as ioeng_submit() would, in order, taking the queue lock once and
 * waking the engine at most once for the whole batch.
 *
 * Request `i` gets `cb(ctxs[i], res)`; `ctxs == NULL` means every ctx is NULL.
 * `ctxs` is `void *const *` (the engine only reads the array; each ctx is handed to
 * the callback as `void *`): C++ code holding `const void *` contexts casts once with
 * const_cast, as ioeng.hpp does; no copy is needed.
 * Validates in order and accepts the longest valid prefix: returns how many requests
 * were accepted (each of them gets exactly one callback; the others none), or, when
 * the first one is refused, its -errno (the same as ioeng_submit() would give). So an
 * invalid request at index k > 0 returns k. The queues filling up (-EAGAIN) or close
 * beginning (-ESHUTDOWN) also end the prefix. `n == 0` returns 0 (after the checks of
 * `h` and `cb`).
 *  -EINVAL      NULL `h` or `cb`; NULL `reqs` with `n > 0`; `n` above INT32_MAX;
 *               or request 0 invalid (see ioeng_submit());
 *  -ESRCH       `h` was inherited across fork() (see ioeng_t).
 *
 * The requests are copied; `ctxs` is read during the call only. Thread-safe, callable
 * from callbacks; never blocks on kernel progress.
 *
 * # Safety
 * `h` is NULL or a live handle; `reqs` is NULL or readable for `n` requests; `ctxs`
 * is NULL or readable for `n` pointers.
 */
int ioeng_submit_batch(struct ioeng *h,
                       const struct ioeng_req *reqs,
                       uint32_t n,
                       ioeng_cb_t cb,
                       void *const *ctxs);

/**
 * Cancels every accepted request whose callback has not yet started and whose `tag`
 * equals `tag`. Returns how many there were (0 if none), -EINVAL for NULL `h` or
 * `tag == 0`, or -ESRCH in a forked child.
 *
 * Each of them still gets exactly one callback:
 *  - queued ones (also on a paused engine, and whatever their deadline) complete with
 *    -ECANCELED and never reach the kernel;
 *  - ones already handed to the kernel are asked to stop (io_uring ASYNC_CANCEL, AIO
 *    io_cancel) and complete with -ECANCELED, or with their normal result when the
 *    kernel had finished them or cannot stop them (most AIO file IO, and any IO the
 *    kernel is already running). A request between two kernel IOs (a short transfer
 *    being continued) completes with -ECANCELED, except on a pipe or socket that
 *    already moved bytes for it: those cannot be moved back, so, like read(2) and
 *    write(2), its callback gets their count.
 *
 * The callbacks never run inside this call (so it may be called from a callback, and
 * with your own locks held): THREADS mode runs them on an engine thread (the submitter
 * for the requests that had not reached the kernel, see "Callbacks" above), POLLED mode
 * in the next ioeng_poll() or ioeng_close(), on whichever thread calls it,
 * possibly the one that called ioeng_cancel(). Requests submitted after this returns are not affected.
 * Thread-safe. Costs a scan of the queues and of `depth` slots.
 *
 * # Safety
 * `h` is NULL or a live handle.
 */
int ioeng_cancel(struct ioeng *h,
                 uint64_t tag);

/**
 * Since 1.1. Cancels every accepted request whose callback has not yet started, tagged
 * or not (tag 0 included), as ioeng_cancel() does for one tag: queued ones (also on a
 * paused engine) complete with -ECANCELED without reaching the kernel; ones handed to
 * the kernel are asked to stop and complete with -ECANCELED or, when the kernel had
 * finished them or cannot stop them, their normal result (a stream that already moved
 * bytes for one: their count); ones already cancelled or timed out keep their result.
 * Returns how many there were: the requests accepted and not yet called back when the
 * call took the queue lock (0 if none; capped at INT_MAX), -EINVAL for NULL `h`, or
 * -ESRCH in a forked child.
 *
 * A request waiting for a stream (pipe, FIFO, socket, tty) is stopped on both backends
 * (io_uring ASYNC_CANCEL; AIO waits for streams with a cancellable IOCB_CMD_POLL, or
 * between two tries), so ioeng_cancel_all() then ioeng_close() returns promptly (well
 * within a second) whatever is in flight: only IO that the kernel is running on a file,
 * which finishes by itself, is waited for. A WRITE to a blocking tty is stopped too
 * (see IOENG_BACKEND_AIO and IOENG_BACKEND_URING) and reports the bytes it had moved.
 *
 * The callbacks run on an engine thread (THREADS) or in the next ioeng_poll()/
 * ioeng_close() (POLLED), never inside this call, so it may be called from a callback.
 * Requests submitted
 * after this returns are not affected; one submitted by another thread during the call
 * is either cancelled or not affected. Thread-safe: any thread may call it, also while
 * another is in ioeng_poll() or ioeng_submit(). It takes no ownership: each request's
 * memory stays the caller's until its callback, as always. Costs a scan of the queues
 * and of `depth` slots.
 *
 * # Safety
 * `h` is NULL or a live handle.
 */
int ioeng_cancel_all(struct ioeng *h);

/**
 * Registers `n` buffers for requests with IOENG_REQ_FIXED_BUF (`buf_index` = position
 * in `iov`). io_uring registers them with the kernel (IORING_REGISTER_BUFFERS: pinned
 * once instead of on every IO) and runs FIXED_BUF requests as READ_FIXED/WRITE_FIXED;
 * AIO only records them (FIXED_BUF then runs as plain READ/WRITE). On both, the range
 * of each FIXED_BUF request is checked at submit.
 *
 * Once per engine, before its first accepted request (ioeng_submit() or
 * ioeng_submit_batch(); a refused one does not count). Returns 0, or:
 *  -EINVAL      NULL `h` or `iov`; `n` outside 1..=16384 (IOENG_MAX_REGISTERED_BUFFERS);
 *               a buffer that is NULL, empty or above 1 GiB (io_uring's limits,
 *               checked on both backends before anything else);
 *  -EBUSY       buffers already registered, or a request was already submitted;
 *  -ESRCH       `h` was inherited across fork() (see ioeng_t);
 *  -ENOMEM, -EPERM, -EFAULT  io_uring refused the registration (locked-memory limit,
 *               RLIMIT_MEMLOCK, memory not mapped; AIO, which pins nothing, accepts
 *               those and a FIXED_BUF request there gets -EFAULT from its IO). Nothing
 *               is registered then, the engine
 *               stays usable without FIXED_BUF, and registering may be tried again.
 *
 * `iov` (the array) is copied; the buffers stay owned by the caller and must remain
 * valid, and not be unmapped, until ioeng_close() returned. Thread-safe, but racing
 * the first submit gives -EBUSY or -EINVAL for FIXED_BUF requests.
 *
 * # Safety
 * `h` is NULL or a live handle; `iov` is NULL or readable for `n` iovecs.
 */
int ioeng_register_buffers(struct ioeng *h, const struct iovec *iov, uint32_t n);

/**
 * Since 1.1. Registers `n` files for requests with IOENG_REQ_FIXED_FILE (their `fd` is
 * the position in `fds`). The engine keeps a descriptor of its own for each (a
 * close-on-exec duplicate, closed by ioeng_close()), so the caller may close its
 * descriptors at any time: a FIXED_FILE request still reaches the file registered at
 * its index, never a file that reused the number. io_uring registers those descriptors
 * with the kernel (IORING_REGISTER_FILES: no file lookup and reference count per
 * request, as liburing's fixed files); AIO submits on them, and tells file from stream
 * once, here, instead of by an fstat per request. Any op may use FIXED_FILE.
 *
 * Once per engine, before its first accepted request (ioeng_submit() or
 * ioeng_submit_batch(); a refused one does not count); independent of
 * ioeng_register_buffers(). Returns 0, or:
 *  -EINVAL      NULL `h` or `fds`; `n` outside 1..=32768 (IOENG_MAX_REGISTERED_FILES);
 *  -EBADF       an entry that is not an open descriptor;
 *  -EBUSY       files already registered, or a request was already submitted;
 *  -ESRCH       `h` was inherited across fork() (see ioeng_t);
 *  -EMFILE, -ENFILE  no descriptor left for the engine's copies (RLIMIT_NOFILE);
 *  other        io_uring refused the registration (its -errno: -EBADF for an io_uring
 *               descriptor, -EMFILE for more files than RLIMIT_NOFILE, -EEXIST from
 *               another thread than the IOENG_CONFIG_SINGLE_POLLER poller's).
 * On an error nothing is registered, none of the engine's copies stays open, and
 * registering may be tried again.
 *
 * `fds` is read during the call only. Thread-safe, but racing the first submit gives
 * -EBUSY or -EINVAL for FIXED_FILE requests. In a forked child the engine's copies
 * stay open (like its event fd: closing them could close numbers the child reused).
 *
 * # Safety
 * `h` is NULL or a live handle; `fds` is NULL or readable for `n` ints.
 */
int ioeng_register_files(struct ioeng *h, const int *fds, uint32_t n);

/**
 * Starts dispatching on an engine opened with `start_paused = 1`. Idempotent.
 * Returns 0, -EINVAL for NULL `h`, or -ESRCH in a forked child. Thread-safe.
 *
 * # Safety
 * `h` is NULL or a live handle.
 */
int ioeng_resume(struct ioeng *h);

/**
 * Copies the counters into `*out`. Returns 0, -EINVAL for NULL `h` or `out`, or -ESRCH
 * in a forked child.
 * Thread-safe; may be called from a callback.
 *
 * # Safety
 * `h` is NULL or a live handle; `out` is NULL or writable.
 */
int ioeng_stats(const struct ioeng *h, struct ioeng_stats *out);

/**
 * Fills `c` with the defaults: weight 100, no kernel ioprio, no limits. NULL is ignored.
 *
 * # Safety
 * `c` is NULL or points to writable memory for one ioeng_class_config_t.
 */
void ioeng_class_config_init(struct ioeng_class_config *c);

/**
 * Opens an IO class (since 1.1) and stores its id (1..=63) in `*out_id`; requests
 * name it in `class_id`. Classes live as long as the engine. Returns 0, or:
 *  -EINVAL  NULL `h`, `c` or `out_id`; weight 0 or above 10000; a bad
 *           `kernel_ioprio`; `reserved` not zero;
 *  -ENOSPC  63 classes are open already;
 *  -ESRCH   `h` was inherited across fork().
 * Thread-safe; may be called from a callback.
 *
 * # Safety
 * `h` is NULL or a live handle; `c` is NULL or readable; `out_id` is NULL or writable.
 */
int ioeng_class_open(struct ioeng *h, const struct ioeng_class_config *c, uint16_t *out_id);

/**
 * Changes class `id` (0, or one opened) to the settings in `*c` (since 1.1), from the
 * next dispatch round on; requests already queued follow the new settings. Class 0
 * starts as ioeng_class_config_init() gives. Returns 0, or -EINVAL (NULL `h` or `c`, an
 * unknown `id`, a bad config as for ioeng_class_open()), or -ESRCH in a forked child.
 * Thread-safe; may be called from a callback.
 *
 * # Safety
 * `h` is NULL or a live handle; `c` is NULL or readable.
 */
int ioeng_class_update(struct ioeng *h, uint16_t id, const struct ioeng_class_config *c);

/**
 * Copies the statistics of class `id` (0, one opened, or IOENG_CLASS_HIGH) into `*out`
 * (since 1.1); with `flags` IOENG_STATS_RESET, also zeroes its counters, throttled
 * time and histogram (`queued` and `in_flight` are states and stay). Returns 0, or
 * -EINVAL (NULL `h` or `out`, an unknown `id`, an unknown flag), or -ESRCH in a forked
 * child. Thread-safe; may be called from a callback.
 *
 * # Safety
 * `h` is NULL or a live handle; `out` is NULL or writable.
 */
int ioeng_class_stats(const struct ioeng *h,
                      uint16_t id,
                      struct ioeng_class_stats *out,
                      uint32_t flags);

/**
 * The backend this engine runs: IOENG_BACKEND_AIO or IOENG_BACKEND_URING (never AUTO).
 * Returns IOENG_BACKEND_AUTO only for a NULL `h`. Thread-safe.
 *
 * # Safety
 * `h` is NULL or a live handle.
 */
ioeng_backend_t ioeng_backend(const struct ioeng *h);

/**
 * Since 1.1. The name of the backend this engine runs: "aio" or "io_uring" (static
 * strings; do not free). NULL for a NULL `h`. Like ioeng_backend(), it also answers on
 * a handle inherited across fork(). Thread-safe.
 *
 * # Safety
 * `h` is NULL or a live handle.
 */
const char *ioeng_backend_name(const struct ioeng *h);

/**
 * Since 1.1. The alignment O_DIRECT IO on `fd` needs: buffers at multiples of
 * `*mem_align` bytes in memory, offsets and lengths multiples of `*offset_align`. From
 * statx(2) STATX_DIOALIGN where the kernel reports it (Linux 6.1+ for files on ext4,
 * xfs, f2fs, btrfs; 6.11+ for block devices); else the logical block size of the block
 * device (BLKSSZGET for a block device, /sys/dev/block/MAJ:MIN/queue/logical_block_size
 * for a file on one); else 4096. `fd` need not be open with O_DIRECT: the answer is
 * what an O_DIRECT fd of the same file would need. Returns 0 and fills both, or (both
 * left unchanged):
 *  -EINVAL      NULL `mem_align` or `offset_align`;
 *  -EBADF       `fd` is not an open file descriptor;
 *  -EOPNOTSUPP  the file cannot do O_DIRECT IO: the kernel reports no direct-IO support
 *               for it (e.g. tmpfs before Linux 6.6); or, where it reports nothing (no
 *               STATX_DIOALIGN), the file lives on one of the kernel's pseudo
 *               filesystems, which have none (procfs, sysfs, debugfs, tracefs, cgroupfs,
 *               securityfs, bpffs, configfs, pstore, efivarfs); or it is not a regular
 *               file or a block device (a pipe, socket, tty, directory);
 *  other -errno from statx(2).
 * Needs no engine; thread-safe; a pure query: one statx call (where the kernel reports
 * no STATX_DIOALIGN, also an fstatfs and a sysfs read). It never opens the file again,
 * so the caller's record locks, leases and notifications are untouched.
 *
 * # Safety
 * `mem_align` and `offset_align` are NULL or writable.
 */
int ioeng_dio_alignment(int fd, uint32_t *mem_align, uint32_t *offset_align);

/**
 * Why IOENG_BACKEND_AUTO does not use io_uring on this machine, e.g.
 * "io_uring_setup failed: EPERM (Operation not permitted)"; NULL when io_uring is usable.
 * The probe runs once per process (first call of this or of an AUTO/URING ioeng_open)
 * and is cached. The string is static; do not free it. Thread-safe.
 */
const char *ioeng_uring_unavailable_reason(void);

/**
 * Shuts the engine down and frees it: stops accepting (-ESHUTDOWN), dispatches and
 * completes everything already accepted (every pending callback runs before this
 * returns, even on a paused engine), joins both engine threads (THREADS) or drives the
 * engine on the calling thread, running the callbacks there (POLLED), releases the
 * kernel context (io_destroy / ring) and the event fd, and frees `h`. Returns 0;
 * -EINVAL for NULL `h`, or (IOENG_CONFIG_SINGLE_POLLER) from another thread than the
 * engine's poller (nothing is done and `h` stays valid); -EDEADLK when called from a callback of `h`, or from any thread
 * of a THREADS engine (its callbacks included: two engines whose callbacks closed each
 * other would otherwise wait for each other forever); -EBUSY (POLLED) while another
 * thread is inside ioeng_poll() on `h`, or this thread is, from a callback of another
 * engine that `h`'s callback is closing (nothing is done in these cases and `h` stays
 * valid). A callback of a POLLED engine may close another engine: that close drains it
 * there and returns 0. Callbacks
 * that run during the drain may still call on `h` every function documented as
 * callable from a callback (ioeng_submit() then gives -ESHUTDOWN, ioeng_close()
 * -EDEADLK; ioeng_cancel(), ioeng_cancel_all(), ioeng_stats(), ioeng_resume() and the
 * ioeng_class_* functions work as usual); apart from them and from the -EBUSY case
 * above (a POLLED close while another thread polls is refused, not undefined), the
 * caller must ensure no other call on `h` is running or follows. In a forked child: releases the child's
 * copy of the handle and returns 0, touching none of the parent's threads or kernel
 * objects and running no callback. It closes the copy of an io_uring ring (so that the
 * child does not keep the parent's ring and registered buffers alive), but only while
 * that descriptor number still refers to the ring: a child that closed the inherited
 * descriptors may have reused the numbers for files of its own, which stay open. The
 * event fd and the engine's other descriptors (all close-on-exec) and the copy's memory
 * stay until the child exits or execs: an eventfd cannot be told from one the child
 * made under the same number, and the parent's threads may have held the copy's
 * locks at the fork, so freeing it could block forever.
 * Close waits for every accepted request, also one that waits for a silent stream peer
 * or for its IO class's rate limit (N requests queued at a limit of L IOPS take N / L
 * seconds; the engine sleeps meanwhile): call ioeng_cancel_all() first to end those at
 * once. A paused engine is resumed, and a queued request whose deadline has not passed
 * is dispatched, not failed.
 *
 * # Safety
 * `h` is NULL or a live handle that no other thread uses during or after the call.
 */
int ioeng_close(struct ioeng *h);

/**
 * POLLED mode: runs the engine on the calling thread. Each pass dispatches queued
 * requests (the same fairness rounds as THREADS mode) and hands them to the kernel in
 * one submit call per round, reaps completions and runs their callbacks here (callbacks
 * may submit; what they submit goes to the kernel before this returns). Between passes
 * it sleeps in the kernel, never spinning, until at least `min_complete` callbacks ran
 * in this call or `timeout_ns` nanoseconds passed (0: never wait; -1: no limit; a
 * request queued from another thread, a completion, a cancel, a delayed internal retry
 * or the earliest queued request's deadline falling due wakes it). Cancelled and
 * timed-out requests get their callbacks here too. With `min_complete == 0` it makes
 * one pass and returns. Returning with nothing to do now, it leaves the event fd quiet
 * and arms the engine's timer for it (see ioeng_event_fd(), ioeng_next_timeout_ns()).
 *
 * Returns the number of callbacks run (0 on timeout), or:
 *  -EINVAL  NULL `h`, a THREADS engine, `timeout_ns < -1`, or (IOENG_CONFIG_SINGLE_POLLER)
 *           another thread than the one that polled (or closed) first;
 *  -EBUSY   another thread is in ioeng_poll() on `h` (one poller at a time), a
 *           callback of this poll calls it again for the same engine, or
 *           ioeng_close() of `h` has begun (a contract violation, answered rather
 *           than crashing: close drains on its own thread);
 *  -EINTR   a signal interrupted the wait before any callback ran;
 *  -ESRCH   `h` was inherited across fork(), or in the child of a callback that
 *           forked and returned (see ioeng_t).
 * Thread-safe (any thread may poll, one at a time). On AIO, a request that the kernel
 * runs synchronously inside io_submit (buffered regular-file IO, see IOENG_BACKEND_AIO)
 * runs inside this call, as write(2) would on this thread (a buffered write past
 * RLIMIT_FSIZE raises SIGXFSZ here, which kills the process unless it is ignored or
 * handled; ignored, the write gets -EFBIG); a stream never blocks it. On io_uring, the kernel ties a
 * request to the thread that submitted it (the poller): if that thread exits while a
 * request still waits for a stream (pipe, socket), the kernel cancels it, and the
 * engine issues it again in the next ioeng_poll() (or ioeng_close()), from whichever
 * thread that is.
 *
 * # Safety
 * `h` is NULL or a live handle.
 */
int ioeng_poll(struct ioeng *h,
               uint32_t min_complete,
               int64_t timeout_ns);

/**
 * POLLED mode: an eventfd, owned by the engine (do not close or read it), that is
 * readable while ioeng_poll() can make progress now: completions are ready, queued
 * requests may be dispatched (not paused, a slot free), or a timer is due: a queued
 * request's deadline passed, a delayed retry of -EAGAIN is due, or a rate-limited class
 * getting tokens again may dispatch its held requests. Add it to
 * epoll/poll/select and call ioeng_poll(h, 0, 0) when it is readable; the loop needs
 * no timer of its own for the engine (see examples_c/epoll_loop.c). The kernel signals
 * it for each completion (io_uring IORING_REGISTER_EVENTFD, AIO IOCB_FLAG_RESFD; on
 * io_uring only while no thread is inside ioeng_poll(), which sees completions
 * itself); ioeng_submit() from any thread signals it (on a paused engine only for a
 * request whose deadline is earlier than any queued one; with
 * IOENG_CONFIG_POLL_AFTER_SUBMIT not on the polling thread, which polls next); an engine-owned kernel timer
 * (io_uring IORING_OP_TIMEOUT, AIO a timerfd watched with IOCB_CMD_POLL) signals it
 * when the earliest deadline, retry or refill of a rate-limited class falls due (on
 * io_uring also for the check of transfers that can never happen, see
 * ioeng_next_timeout_ns()), armed by ioeng_poll() as it returns;
 * ioeng_poll() leaves it readable only when work remains (a poll before the first
 * ioeng_event_fd() or ioeng_next_timeout_ns() need not: nobody could see it, and the
 * first of those calls makes the fd readable if that poll left work). So a paused engine's fd
 * stays quiet until a deadline fires. It may be readable with nothing to do (a
 * spurious wake-up, e.g. the timer of a request that was cancelled or dispatched
 * meanwhile: ioeng_poll then returns 0). On io_uring the kernel posts completions
 * (the timer's too) through work queued to the thread that submitted them, the one in
 * ioeng_poll(): a blocking call of that thread, such as epoll_wait(), may return EINTR
 * for it; retry it, as for a signal. Valid until ioeng_close().
 * Returns the fd, or -EINVAL for NULL `h` or a THREADS engine, or -ESRCH in a forked
 * child. Thread-safe.
 *
 * # Safety
 * `h` is NULL or a live handle.
 */
int ioeng_event_fd(const struct ioeng *h);

/**
 * Since 1.1. POLLED mode: how long an event loop may sleep before ioeng_poll() has
 * work, for loops that want a timeout rather than (or next to) the event fd: 0 when
 * the event fd is readable (progress is possible now: call ioeng_poll()) or a timer is
 * due; else the nanoseconds from now until the engine's earliest timer: a queued
 * request's deadline, a delayed retry of -EAGAIN, a rate-limited class getting tokens
 * again, or (io_uring, while IO is in flight) the engine's check for transfers that can
 * never happen (at most every 50 ms, until
 * each in-flight transfer was checked once); -1 when there is none (only new work or
 * completions end the wait). The event fd fires by itself at that time: a loop that
 * waits on the fd needs neither this call nor a timer. Exact only between polls: while a
 * thread is inside ioeng_poll(), that thread serves the engine (and the fd may be quiet);
 * with IOENG_CONFIG_POLL_AFTER_SUBMIT a request the polling thread submitted quietly
 * does not make it 0 (its deadline does count): that thread polls next.
 * Returns -EINVAL for a NULL `h` or a THREADS engine (its engine threads keep the
 * timers; there is no fd to wait on and nothing for the caller to schedule), -ESRCH in
 * a forked child; errors are below -1. Thread-safe; may be called from a callback.
 *
 * # Safety
 * `h` is NULL or a live handle.
 */
int64_t ioeng_next_timeout_ns(const struct ioeng *h);

/**
 * Library version, e.g. "1.1.0" (IOENG_VERSION_MAJOR.MINOR.PATCH of the library
 * actually loaded). Static string; do not free.
 */
const char *ioeng_version(void);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* IOENG_H */

/* (cbindgen puts this after the include guard's #endif, hence a guard of its own.) */
#ifndef IOENG_H_HELPERS
#define IOENG_H_HELPERS

#if defined(__cplusplus) && defined(__GNUC__)
#pragma GCC diagnostic pop /* -Wshadow, pushed before the prototypes */
#endif

/*
 * Request builders (since 1.1; static inline, so they need no 1.1 library symbol).
 * Each returns a request with the given fields set, `op` set, and every other field
 * zero: prio NORMAL, no flags, tag 0, no deadline, class 0. Set those afterwards:
 *
 *     ioeng_req_t r = ioeng_req_writev(fd, iov, 2, tail);
 *     r.flags = IOENG_REQ_DSYNC;
 *     r.deadline_ns = ioeng_deadline_in_ns(50 * 1000 * 1000);
 *
 * The write builders take `const` buffers and cast the const away into `buf`, which the
 * engine never writes through for a WRITE, WRITEV or an iovec array.
 */
#ifdef __cplusplus
#define IOENG_NULL_ nullptr
#else
#define IOENG_NULL_ NULL
#endif

static inline ioeng_req_t ioeng_req_make_(ioeng_op_t op, int fd, const void *buf,
                                          uint64_t len, uint64_t offset)
{
    ioeng_req_t r;
    r.op = op;
    r.prio = IOENG_PRIO_NORMAL;
    r.fd = fd;
    r.flags = 0;
#ifdef __cplusplus
    r.buf = const_cast<void *>(buf);
#else
    r.buf = (void *)(uintptr_t)buf; /* through uintptr_t: no -Wcast-qual */
#endif
    r.len = len;
    r.offset = offset;
    r.tag = 0;
    r.deadline_ns = 0;
    r.buf_index = 0;
    r.class_id = 0;
    r.reserved = 0;
    return r;
}

/** READ `len` bytes at `offset` into `buf`. */
static inline ioeng_req_t ioeng_req_read(int fd, void *buf, uint64_t len, uint64_t offset)
{
    return ioeng_req_make_(IOENG_OP_READ, fd, buf, len, offset);
}

/** WRITE `len` bytes of `buf` at `offset`. */
static inline ioeng_req_t ioeng_req_write(int fd, const void *buf, uint64_t len,
                                          uint64_t offset)
{
    return ioeng_req_make_(IOENG_OP_WRITE, fd, buf, len, offset);
}

/** READV into the `iovcnt` buffers of `iov` (the array stays yours until the callback). */
static inline ioeng_req_t ioeng_req_readv(int fd, const struct iovec *iov, uint32_t iovcnt,
                                          uint64_t offset)
{
    return ioeng_req_make_(IOENG_OP_READV, fd, iov, iovcnt, offset);
}

/** WRITEV of the `iovcnt` buffers of `iov`. */
static inline ioeng_req_t ioeng_req_writev(int fd, const struct iovec *iov, uint32_t iovcnt,
                                           uint64_t offset)
{
    return ioeng_req_make_(IOENG_OP_WRITEV, fd, iov, iovcnt, offset);
}

/** FSYNC of `fd`. */
static inline ioeng_req_t ioeng_req_fsync(int fd)
{
    return ioeng_req_make_(IOENG_OP_FSYNC, fd, IOENG_NULL_, 0, 0);
}

/** FDATASYNC of `fd`. */
static inline ioeng_req_t ioeng_req_fdatasync(int fd)
{
    return ioeng_req_make_(IOENG_OP_FDATASYNC, fd, IOENG_NULL_, 0, 0);
}

/** FALLOCATE of `offset`..`offset + len` with `mode` (FALLOC_FL_*; goes in buf_index). */
static inline ioeng_req_t ioeng_req_fallocate(int fd, uint32_t mode, uint64_t offset,
                                              uint64_t len)
{
    ioeng_req_t r = ioeng_req_make_(IOENG_OP_FALLOCATE, fd, IOENG_NULL_, len, offset);
    r.buf_index = mode;
    return r;
}

/** SYNC_FILE_RANGE of `offset`..`offset + len` with `flags` (SYNC_FILE_RANGE_*; goes in
 *  buf_index, not in `flags`, which takes only IOENG_REQ_* bits). */
static inline ioeng_req_t ioeng_req_sync_file_range(int fd, uint64_t offset, uint64_t len,
                                                    uint32_t flags)
{
    ioeng_req_t r = ioeng_req_make_(IOENG_OP_SYNC_FILE_RANGE, fd, IOENG_NULL_, len, offset);
    r.buf_index = flags;
    return r;
}

/*
 * ioeng_deadline_in_ns(ns): CLOCK_MONOTONIC now + `ns`, for ioeng_req_t.deadline_ns
 * (saturating at UINT64_MAX instead of wrapping). It calls clock_gettime(), so it is
 * defined where <time.h> declares CLOCK_MONOTONIC: always in C++ and in GNU C (gcc's
 * default), and in strict ISO C (-std=c99/c11) once _POSIX_C_SOURCE >= 199309L (or
 * _GNU_SOURCE) is defined before the first #include.
 */
#ifdef CLOCK_MONOTONIC
static inline uint64_t ioeng_deadline_in_ns(uint64_t ns)
{
    struct timespec ts;
    uint64_t now;
    clock_gettime(CLOCK_MONOTONIC, &ts);
#ifdef __cplusplus
    now = static_cast<uint64_t>(ts.tv_sec) * UINT64_C(1000000000) +
          static_cast<uint64_t>(ts.tv_nsec);
#else
    now = (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
#endif
    return ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
}
#endif

/*
 * Deprecated 1.0 names of the idle-poll constants, which belong to
 * ioeng_config_t.idle_poll_us (THREADS mode) and not to ioeng_poll(). Still defined so
 * 1.0 code compiles unchanged; new code uses IOENG_IDLE_POLL_DEFAULT/NEVER.
 */
#define IOENG_POLL_DEFAULT IOENG_IDLE_POLL_DEFAULT
#define IOENG_POLL_NEVER IOENG_IDLE_POLL_NEVER

#endif /* IOENG_H_HELPERS */
