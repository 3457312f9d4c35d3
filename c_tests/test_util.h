/*
 * Shared helpers for the libioeng C tests (c_tests/test_*.c and, through
 * reliability/rel.h, the reliability suite). Header-only (static inline).
 *
 * Conventions:
 *  - Every test calls tu_init("name", watchdog_sec) first (line-buffered stdout, a
 *    watchdog alarm that fails a hung test, scratch-file cleanup at exit).
 *  - The backend comes from env IOENG_TEST_BACKEND=aio|uring (default aio);
 *    require_backend() exits 77 (SKIP) when io_uring is unavailable, or 1 (FAIL)
 *    when IOENG_REQUIRE_URING=1.
 *  - The mode comes from env IOENG_TEST_MODE=threads|polled (default threads). In
 *    polled mode tu_open_cfg() gives every engine a driver thread (tu_poller_*) that
 *    waits on ioeng_event_fd() and calls ioeng_poll() (which also waits in the kernel
 *    itself), so the tests' waits work unchanged; callbacks then run on that thread.
 *    Close engines with tu_close()/tu_engine_close(): the driver thread itself calls
 *    ioeng_close (which drains there) and exits. (Not the test's thread: io_uring cancels
 *    a thread's pending stream reads when that thread exits, so the thread that submitted
 *    must outlive them.)
 *  - CHECK()/CHECK_EQ()/FAILF() print "FAIL <test>: file:line: ...", remove scratch
 *    files and _exit(1); they may be used from engine callbacks and any thread.
 */
#ifndef IOENG_TEST_UTIL_H
#define IOENG_TEST_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/statfs.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ioeng.h"

#define TU_SKIP_EXIT 77

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef RAMFS_MAGIC
#define RAMFS_MAGIC 0x858458f6
#endif

/* ------------------------------------------------------------------ */
/* Scratch file registry (removed at exit and on CHECK failure).       */
/* ------------------------------------------------------------------ */

#define TU_MAX_SCRATCH 64
static char tu_scratch_paths[TU_MAX_SCRATCH][PATH_MAX];
static int tu_scratch_count;
static pthread_mutex_t tu_scratch_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t tu_scratch_owner; /* set by tu_init() */
static const char *tu_test_name = "test";

/* Async-signal-safe (getpid, unlink), so usable from the alarm handler. Only the
 * process that created the files removes them (a forked child shares the registry
 * but must not unlink; see tu_scratch_fork_child()). */
static inline void tu_remove_scratch(void)
{
    if (getpid() != tu_scratch_owner)
        return;
    for (int i = 0; i < tu_scratch_count; i++)
        if (tu_scratch_paths[i][0])
            unlink(tu_scratch_paths[i]);
}

static inline void tu_atexit_cleanup(void) { tu_remove_scratch(); }

/* Call in a forked child that creates scratch files of its own: it owns (and
 * removes) only those, not the parent's. */
static inline void tu_scratch_fork_child(void)
{
    tu_scratch_owner = getpid();
    tu_scratch_count = 0;
}

static inline __attribute__((noreturn)) void tu_fail_exit(void)
{
    fflush(stdout);
    fflush(stderr);
    tu_remove_scratch();
    _exit(1);
}

static inline __attribute__((noreturn, format(printf, 3, 4))) void
tu_fail_at(const char *file, int line, const char *fmt, ...)
{
    char msg[1024]; /* one write, so lines of failing threads do not interleave */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "FAIL %s: %s:%d: %s\n", tu_test_name, file, line, msg);
    tu_fail_exit();
}

/* CHECK(cond, fmt, ...): abort the test (exit 1) with file:line and a message. */
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "  check failed: %s\n", #cond);                     \
            tu_fail_at(__FILE__, __LINE__, __VA_ARGS__);                        \
        }                                                                       \
    } while (0)

/* CHECK_EQ(a, b, fmt, ...): integer equality, prints both values. */
#define CHECK_EQ(a, b, ...)                                                     \
    do {                                                                        \
        long long tu_a_ = (long long)(a), tu_b_ = (long long)(b);               \
        if (tu_a_ != tu_b_) {                                                   \
            fprintf(stderr, "  check failed: %s == %s  (%lld != %lld)\n", #a,   \
                    #b, tu_a_, tu_b_);                                          \
            tu_fail_at(__FILE__, __LINE__, __VA_ARGS__);                        \
        }                                                                       \
    } while (0)

#define FAILF(...) tu_fail_at(__FILE__, __LINE__, __VA_ARGS__)

static inline void tu_alarm_handler(int sig)
{
    static const char msg[] = "FAIL: watchdog timeout (test hung)\n";
    (void)sig;
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    tu_remove_scratch();
    _exit(1);
}

/* Integer from env `name` (strtoll base 0), `def` when unset or empty; anything
 * else fails the test. */
static inline long long tu_env_ll(const char *name, long long def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end) {
        fprintf(stderr, "FAIL %s: bad integer in env %s='%s'\n", tu_test_name, name, s);
        tu_fail_exit();
    }
    return v;
}

/* Call first in main(). `watchdog_sec` kills a hung test (0 = default 90 s). */
static inline void tu_init(const char *name, unsigned watchdog_sec)
{
    tu_test_name = name;
    tu_scratch_owner = getpid();
    setvbuf(stdout, NULL, _IOLBF, 0);
    atexit(tu_atexit_cleanup);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = tu_alarm_handler;
    sigaction(SIGALRM, &sa, NULL);
    alarm(watchdog_sec ? watchdog_sec : 90);
}

/* Prints "SKIP: <message>" and exits 77. */
static inline __attribute__((noreturn, format(printf, 1, 2))) void tu_skip(const char *fmt, ...)
{
    va_list ap;
    printf("SKIP: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    tu_remove_scratch();
    _exit(TU_SKIP_EXIT);
}

/* ------------------------------------------------------------------ */
/* Backend selection.                                                  */
/* ------------------------------------------------------------------ */

static inline const char *tu_backend_name(ioeng_backend_t b)
{
    switch (b) {
    case IOENG_BACKEND_AUTO: return "auto";
    case IOENG_BACKEND_AIO: return "aio";
    case IOENG_BACKEND_URING: return "uring";
    default: return "?";
    }
}

/* IOENG_TEST_BACKEND=aio|uring (default aio). Anything else is a test error. */
static inline ioeng_backend_t tu_backend(void)
{
    const char *s = getenv("IOENG_TEST_BACKEND");
    if (!s || !*s || strcmp(s, "aio") == 0)
        return IOENG_BACKEND_AIO;
    if (strcmp(s, "uring") == 0 || strcmp(s, "io_uring") == 0)
        return IOENG_BACKEND_URING;
    FAILF("IOENG_TEST_BACKEND='%s' is neither aio nor uring", s);
}

static inline int tu_uring_required(void)
{
    const char *s = getenv("IOENG_REQUIRE_URING");
    return s && strcmp(s, "1") == 0;
}

/* Exits 77 (SKIP) if `b` is io_uring and io_uring is unusable here; FAIL instead
 * when IOENG_REQUIRE_URING=1. */
static inline void require_backend(ioeng_backend_t b)
{
    if (b != IOENG_BACKEND_URING)
        return;
    const char *why = ioeng_uring_unavailable_reason();
    if (!why)
        return;
    if (tu_uring_required()) {
        fprintf(stderr,
                "FAIL %s: io_uring unavailable but IOENG_REQUIRE_URING=1: %s\n",
                tu_test_name, why);
        tu_fail_exit();
    }
    tu_skip("io_uring unavailable: %s", why);
}

/* ------------------------------------------------------------------ */
/* Mode selection and the POLLED driver thread.                        */
/* ------------------------------------------------------------------ */

/* IOENG_TEST_MODE=threads|polled (default threads). Anything else is a test error. */
static inline ioeng_mode_t tu_mode(void)
{
    const char *s = getenv("IOENG_TEST_MODE");
    if (!s || !*s || strcmp(s, "threads") == 0)
        return IOENG_MODE_THREADS;
    if (strcmp(s, "polled") == 0)
        return IOENG_MODE_POLLED;
    FAILF("IOENG_TEST_MODE='%s' is neither threads nor polled", s);
}

static inline const char *tu_mode_name(void)
{
    return tu_mode() == IOENG_MODE_POLLED ? "polled" : "threads";
}

/* One driver thread per POLLED engine opened with tu_open_cfg(). */
#define TU_MAX_POLLERS 64
typedef struct {
    ioeng_t *h;
    pthread_t tid;
    int stop_fd;  /* eventfd: written to make the thread close the engine and exit */
    int close_rc; /* what its ioeng_close returned */
} tu_poller_t;
static tu_poller_t tu_pollers[TU_MAX_POLLERS];
static pthread_mutex_t tu_pollers_lock = PTHREAD_MUTEX_INITIALIZER;

/* Waits for the engine's event fd (or the stop fd), then polls: min_complete 1 with a
 * 1 ms timeout, so ioeng_poll's own in-kernel wait is exercised too. The wait on the fd
 * ends after 1 ms as well: the fd does not fire for a delayed -EAGAIN retry or a queued
 * deadline (see ioeng_event_fd), so a loop must poll now and then, as the header says. */
static inline void *tu_poller_main(void *arg)
{
    tu_poller_t *p = arg;
    int efd = ioeng_event_fd(p->h);
    CHECK(efd >= 0, "ioeng_event_fd = %d", efd);
    for (;;) {
        struct pollfd fds[2] = {{.fd = efd, .events = POLLIN}, {.fd = p->stop_fd, .events = POLLIN}};
        int n = poll(fds, 2, 1);
        CHECK(n >= 0 || errno == EINTR, "poll: %s", strerror(errno));
        if (fds[1].revents) {
            p->close_rc = ioeng_close(p->h);
            return NULL;
        }
        int rc = ioeng_poll(p->h, 1, 1000000);
        CHECK(rc >= 0 || rc == -EINTR, "ioeng_poll = %d (%s)", rc, strerror(-rc));
    }
}

/* Call in a forked child: the parent's driver threads do not exist here (and may have
 * held the lock at the fork), so the child starts with an empty registry. Otherwise a
 * child engine allocated at a freed inherited handle's address would be taken for it. */
static inline void tu_pollers_fork_child(void)
{
    pthread_mutex_init(&tu_pollers_lock, NULL);
    memset(tu_pollers, 0, sizeof tu_pollers);
}

static inline void tu_poller_start(ioeng_t *h)
{
    pthread_mutex_lock(&tu_pollers_lock);
    tu_poller_t *p = NULL;
    for (int i = 0; i < TU_MAX_POLLERS && !p; i++)
        if (!tu_pollers[i].h)
            p = &tu_pollers[i];
    CHECK(p, "more than %d POLLED engines open", TU_MAX_POLLERS);
    p->h = h;
    p->stop_fd = eventfd(0, EFD_CLOEXEC);
    CHECK(p->stop_fd >= 0, "eventfd: %s", strerror(errno));
    int rc = pthread_create(&p->tid, NULL, tu_poller_main, p);
    CHECK(rc == 0, "pthread_create: %s", strerror(rc));
    pthread_mutex_unlock(&tu_pollers_lock);
}

/* A callback that only counts its runs (any thread) in tu_counted. */
static int tu_counted;
static inline void tu_count_cb(void *ctx, int64_t res)
{
    (void)ctx;
    (void)res;
    __atomic_add_fetch(&tu_counted, 1, __ATOMIC_SEQ_CST);
}

/* Has the driver thread of `h` close it, joins it and returns ioeng_close's result;
 * -ENOENT when `h` has no driver thread or this is that thread (a callback). */
static inline int tu_poller_close(ioeng_t *h)
{
    pthread_mutex_lock(&tu_pollers_lock);
    tu_poller_t *p = NULL;
    for (int i = 0; i < TU_MAX_POLLERS && !p; i++)
        if (h && tu_pollers[i].h == h)
            p = &tu_pollers[i];
    if (!p || pthread_equal(p->tid, pthread_self())) {
        pthread_mutex_unlock(&tu_pollers_lock);
        return -ENOENT;
    }
    uint64_t one = 1;
    CHECK(write(p->stop_fd, &one, 8) == 8, "write stop fd: %s", strerror(errno));
    pthread_t tid = p->tid;
    pthread_mutex_unlock(&tu_pollers_lock);
    pthread_join(tid, NULL);
    pthread_mutex_lock(&tu_pollers_lock);
    close(p->stop_fd);
    p->h = NULL;
    int rc = p->close_rc;
    pthread_mutex_unlock(&tu_pollers_lock);
    return rc;
}

/* ioeng_close() for tests: a POLLED engine is closed by its driver thread. */
static inline int tu_engine_close(ioeng_t *h)
{
    int rc = tu_poller_close(h);
    return rc == -ENOENT ? ioeng_close(h) : rc;
}

/* Opens an engine with `cfg` or fails the test; checks it got cfg->backend. A THREADS
 * config gets the mode of IOENG_TEST_MODE; a POLLED engine gets a driver thread. */
static inline ioeng_t *tu_open_cfg(const ioeng_config_t *cfg_in)
{
    ioeng_config_t copy = *cfg_in;
    const ioeng_config_t *cfg = &copy;
    if (copy.mode == IOENG_MODE_THREADS)
        copy.mode = tu_mode();
    ioeng_t *h = NULL;
    int rc = ioeng_open(cfg, &h);
    CHECK(rc == 0 && h != NULL,
          "ioeng_open(backend=%s depth=%u batch=%u cap=%u paused=%u) = %d (%s)",
          tu_backend_name(cfg->backend), cfg->depth, cfg->batch, cfg->queue_capacity,
          cfg->start_paused, rc, rc < 0 ? strerror(-rc) : "ok");
    CHECK(ioeng_backend(h) == cfg->backend, "ioeng_backend() = %u, wanted %s",
          (unsigned)ioeng_backend(h), tu_backend_name(cfg->backend));
    if (cfg->mode == IOENG_MODE_POLLED)
        tu_poller_start(h);
    return h;
}

static inline ioeng_t *tu_open(ioeng_backend_t b, uint32_t depth, uint32_t batch,
                               uint32_t queue_capacity, uint32_t start_paused)
{
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = b;
    cfg.depth = depth;
    cfg.batch = batch;
    cfg.queue_capacity = queue_capacity;
    cfg.start_paused = start_paused;
    return tu_open_cfg(&cfg);
}

static inline void tu_close(ioeng_t *h)
{
    int rc = tu_engine_close(h);
    CHECK(rc == 0, "ioeng_close() = %d", rc);
}

static inline ioeng_stats_t tu_stats(ioeng_t *h)
{
    ioeng_stats_t s;
    int rc = ioeng_stats(h, &s);
    CHECK(rc == 0, "ioeng_stats = %d", rc);
    return s;
}

/* ------------------------------------------------------------------ */
/* Scratch files.                                                       */
/* ------------------------------------------------------------------ */

enum tu_fs { TU_EXT4 = 0, TU_TMPFS = 1 };

static inline const char *tu_fs_name(enum tu_fs fs) { return fs == TU_EXT4 ? "ext4" : "tmpfs"; }

static inline const char *tu_dir_for(enum tu_fs fs)
{
    if (fs == TU_TMPFS)
        return "/dev/shm";
    const char *d = getenv("IOENG_TEST_DIR");
    if (d && *d)
        return d;
    if (access("/var/tmp", W_OK | X_OK) == 0)
        return "/var/tmp";
    return "/tmp";
}

/* Creates a scratch file and returns an fd opened O_RDWR | O_CLOEXEC (| O_DIRECT if
 * `direct`). With `path_out` (PATH_MAX bytes) it receives the path and the file is
 * removed at exit; without it the file is unlinked at once (nothing is left behind
 * even if the test is killed). The "ext4" directory must be on a block filesystem
 * (not tmpfs/ramfs): the O_DIRECT tests need real alignment rules. */
static inline int tu_scratch(enum tu_fs fs, int direct, char *path_out)
{
    const char *dir = tu_dir_for(fs);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/ioeng-%s-XXXXXX", dir, tu_test_name);
    int fd = mkostemp(path, O_CLOEXEC);
    CHECK(fd >= 0, "mkstemp(%s): %s", path, strerror(errno));
    pthread_mutex_lock(&tu_scratch_lock);
    CHECK(tu_scratch_count < TU_MAX_SCRATCH, "too many scratch files");
    int slot = tu_scratch_count++;
    snprintf(tu_scratch_paths[slot], PATH_MAX, "%s", path);
    pthread_mutex_unlock(&tu_scratch_lock);
    struct statfs sf;
    CHECK(fstatfs(fd, &sf) == 0, "fstatfs: %s", strerror(errno));
    if (fs == TU_TMPFS)
        CHECK(sf.f_type == TMPFS_MAGIC, "%s is not tmpfs", dir);
    else
        CHECK(sf.f_type != TMPFS_MAGIC && sf.f_type != RAMFS_MAGIC,
              "%s is tmpfs/ramfs; set IOENG_TEST_DIR to an ext4 directory", dir);
    if (direct) {
        int dfd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
        CHECK(dfd >= 0, "open(%s, O_DIRECT): %s", path, strerror(errno));
        close(fd);
        fd = dfd;
    }
    if (path_out) {
        snprintf(path_out, PATH_MAX, "%s", path);
    } else {
        unlink(path);
        pthread_mutex_lock(&tu_scratch_lock);
        tu_scratch_paths[slot][0] = 0; /* gone: nothing to remove at exit */
        pthread_mutex_unlock(&tu_scratch_lock);
    }
    return fd;
}

/* 4096-aligned buffer (for O_DIRECT), left uninitialized (so valgrind still sees a
 * test that uses bytes it never wrote). */
static inline void *tu_alloc_uninit(size_t len)
{
    void *p = NULL;
    int rc = posix_memalign(&p, 4096, len ? len : 1);
    CHECK(rc == 0 && p, "posix_memalign(%zu): %s", len, strerror(rc));
    return p;
}

/* 4096-aligned zeroed buffer (for O_DIRECT). */
static inline void *tu_alloc(size_t len)
{
    void *p = tu_alloc_uninit(len);
    memset(p, 0, len);
    return p;
}

/* Writes `len` bytes at `off` with pwrite (test setup, not through the engine). */
static inline void tu_pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t n = pwrite(fd, p, len, off);
        CHECK(n > 0, "pwrite: %s", n < 0 ? strerror(errno) : "0 bytes");
        p += n;
        len -= (size_t)n;
        off += n;
    }
}

static inline void tu_pread_all(int fd, void *buf, size_t len, off_t off)
{
    char *p = buf;
    while (len) {
        ssize_t n = pread(fd, p, len, off);
        CHECK(n > 0, "pread: %s", n < 0 ? strerror(errno) : "unexpected EOF");
        p += n;
        len -= (size_t)n;
        off += n;
    }
}

/* An fd number that is guaranteed closed: the number (>= `want`) of a file that was
 * opened and closed, chosen high (e.g. >= 900) so the kernel's lowest-free allocation
 * will not hand it out again during the test (we keep far fewer fds open). */
static inline int tu_closed_fd(int want)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open /dev/null: %s", strerror(errno));
    for (int n = want; n < want + 1000; n++) {
        if (fcntl(n, F_GETFD) == -1 && errno == EBADF) {
            CHECK(dup2(fd, n) == n, "dup2: %s", strerror(errno));
            close(n);
            close(fd);
            CHECK(fcntl(n, F_GETFD) == -1 && errno == EBADF, "fd %d still open", n);
            return n;
        }
    }
    FAILF("no free fd number near %d", want);
}

static inline void tu_check_still_closed(int fd)
{
    CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF,
          "test bug: fd %d got reused by someone", fd);
}

/* ------------------------------------------------------------------ */
/* Completion waiter.                                                  */
/* ------------------------------------------------------------------ */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t count;
} tu_waiter_t;

static inline void tu_waiter_init(tu_waiter_t *w)
{
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->count = 0;
}

static inline void tu_waiter_destroy(tu_waiter_t *w)
{
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
}

static inline void tu_waiter_add(tu_waiter_t *w, uint64_t n)
{
    pthread_mutex_lock(&w->mu);
    w->count += n;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static inline uint64_t tu_waiter_get(tu_waiter_t *w)
{
    pthread_mutex_lock(&w->mu);
    uint64_t c = w->count;
    pthread_mutex_unlock(&w->mu);
    return c;
}

/* Waits until count >= target, at most `timeout_sec`; returns the count reached
 * (< target on timeout). */
static inline uint64_t tu_waiter_wait_for(tu_waiter_t *w, uint64_t target, int timeout_sec)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_sec;
    pthread_mutex_lock(&w->mu);
    while (w->count < target)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &dl) == ETIMEDOUT)
            break;
    uint64_t c = w->count;
    pthread_mutex_unlock(&w->mu);
    return c;
}

/* Waits until count >= target; fails the test after `timeout_sec`. */
static inline void tu_waiter_wait_at(tu_waiter_t *w, uint64_t target, int timeout_sec,
                                     const char *file, int line)
{
    uint64_t c = tu_waiter_wait_for(w, target, timeout_sec);
    if (c < target)
        tu_fail_at(file, line, "timeout after %d s: %" PRIu64 " of %" PRIu64
                   " callbacks arrived", timeout_sec, c, target);
}
#define tu_waiter_wait(w, target, timeout_sec) \
    tu_waiter_wait_at((w), (target), (timeout_sec), __FILE__, __LINE__)

/* Polls ioeng_stats until the engine is idle with `completed == n`. */
static inline ioeng_stats_t tu_wait_idle_at(ioeng_t *h, uint64_t n, const char *file, int line)
{
    ioeng_stats_t s;
    for (int i = 0; i < 5000; i++) {
        int rc = ioeng_stats(h, &s);
        if (rc != 0)
            tu_fail_at(file, line, "ioeng_stats = %d", rc);
        if (s.completed >= n && s.in_flight == 0 && s.queued_high == 0 &&
            s.queued_read == 0 && s.queued_write == 0)
            return s;
        usleep(1000);
    }
    tu_fail_at(file, line, "engine not idle after 5 s: completed=%" PRIu64 "/%" PRIu64
               " in_flight=%" PRIu64 " queued h/r/w=%" PRIu64 "/%" PRIu64 "/%" PRIu64,
               s.completed, n, s.in_flight, s.queued_high, s.queued_read, s.queued_write);
}
#define tu_wait_idle(h, n) tu_wait_idle_at((h), (n), __FILE__, __LINE__)

/* ------------------------------------------------------------------ */
/* Checksums and deterministic data.                                   */
/* ------------------------------------------------------------------ */

static inline uint64_t tu_fnv1a(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static inline uint64_t tu_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* splitmix64 as a stateless mixer: seeding and cheap hashing. */
static inline uint64_t tu_mix64(uint64_t x) { return tu_splitmix64(&x); }

/* Counts entries of a /proc directory (fds, tasks). */
static inline int tu_count_dir(const char *path)
{
    DIR *d = opendir(path);
    CHECK(d != NULL, "opendir(%s): %s", path, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* fds open now, not counting the one opendir() uses to list them. */
static inline int tu_count_fds(void) { return tu_count_dir("/proc/self/fd") - 1; }

/* CLOCK_MONOTONIC now in ns: the clock of ioeng_req_t.deadline_ns. */
static inline uint64_t tu_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Fills `buf` with bytes that depend only on (seed, len). */
static inline void tu_fill(void *buf, size_t len, uint64_t seed)
{
    unsigned char *p = buf;
    uint64_t st = seed ^ 0x5eed5eed5eed5eedULL;
    size_t i = 0;
    while (i + 8 <= len) {
        uint64_t v = tu_splitmix64(&st);
        memcpy(p + i, &v, 8);
        i += 8;
    }
    if (i < len) {
        uint64_t v = tu_splitmix64(&st);
        memcpy(p + i, &v, len - i);
    }
}

/* Uniform-ish pseudo-random number in [lo, hi]. */
static inline uint64_t tu_rand_range(uint64_t *state, uint64_t lo, uint64_t hi)
{
    return lo + tu_splitmix64(state) % (hi - lo + 1);
}

static inline ioeng_req_t tu_req(ioeng_op_t op, ioeng_prio_t prio, int fd, void *buf,
                                 uint64_t len, uint64_t off)
{
    ioeng_req_t r;
    memset(&r, 0, sizeof r);
    r.op = op;
    r.prio = prio;
    r.fd = fd;
    r.buf = buf;
    r.len = len;
    r.offset = off;
    return r;
}

static inline const char *tu_errname(int64_t res)
{
    static __thread char ring[4][64];
    static __thread unsigned nxt;
    char *b = ring[nxt++ % 4]; /* several calls may appear in one printf */
    if (res >= 0) {
        snprintf(b, 64, "%" PRId64, res);
        return b;
    }
    switch (-res) {
    case EINVAL: return "-EINVAL";
    case EBADF: return "-EBADF";
    case EAGAIN: return "-EAGAIN";
    case EPERM: return "-EPERM";
    case ENOSYS: return "-ENOSYS";
    case ESHUTDOWN: return "-ESHUTDOWN";
    case EDEADLK: return "-EDEADLK";
    case EISDIR: return "-EISDIR";
    case EFAULT: return "-EFAULT";
    case ENOSPC: return "-ENOSPC";
    default:
        snprintf(b, 64, "-%" PRId64 "(%s)", -res, strerror((int)-res));
        return b;
    }
}

/* The config of an engine a test opens itself (not through tu_open): `be`, `mode`,
 * `depth`, the rest default. */
static inline ioeng_config_t tu_config(ioeng_backend_t be, ioeng_mode_t mode, uint32_t depth)
{
    ioeng_config_t c;
    ioeng_config_init(&c);
    c.backend = be;
    c.mode = mode;
    c.depth = depth;
    return c;
}

/* A tmpfs scratch file of `len` bytes of tu_fill(seed) data; *buf_out gets a buffer of
 * `len` bytes holding the same data. */
static inline int tu_scratch_filled(size_t len, uint64_t seed, char **buf_out)
{
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    char *buf = tu_alloc(len);
    tu_fill(buf, len, seed);
    tu_pwrite_all(fd, buf, len, 0);
    *buf_out = buf;
    return fd;
}

/* Whether `fd` is readable within `timeout_ms` (0: now), by poll(2). */
static inline int tu_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, timeout_ms);
    CHECK(n >= 0, "poll: %s", strerror(errno));
    return n == 1 && (p.revents & POLLIN);
}

/* ------------------------------------------------------------------ */
/* A request's result and whether its callback ran (polled by the test's own loop). */
/* ------------------------------------------------------------------ */

typedef struct {
    int64_t res;
    int done;
} tu_done_t;

static inline void tu_done_cb(void *ctx, int64_t res)
{
    tu_done_t *r = ctx;
    r->res = res;
    __atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
}

static inline int tu_done(tu_done_t *r) { return __atomic_load_n(&r->done, __ATOMIC_ACQUIRE); }

/* ------------------------------------------------------------------ */
/* Recorded requests: each callback stores its res and counts on a waiter. */
/* ------------------------------------------------------------------ */

typedef struct {
    const char *what;
    int64_t want, res;
    int fired;        /* callbacks seen */
    tu_waiter_t *w;   /* counted on once per callback */
} tu_rec_t;

static inline void tu_rec_cb(void *ctx, int64_t res)
{
    tu_rec_t *r = ctx;
    r->res = res;
    __atomic_add_fetch(&r->fired, 1, __ATOMIC_SEQ_CST);
    tu_waiter_add(r->w, 1);
}

/* Submits `q` with tu_rec_cb into `r` (expecting `want` in the callback); fails the
 * test unless ioeng_submit accepts it (kernel errors must come via the callback). */
static inline void tu_rec_submit(ioeng_t *h, tu_rec_t *r, tu_waiter_t *w, const char *what,
                                 ioeng_req_t q, int64_t want)
{
    r->what = what;
    r->want = want;
    r->res = INT64_MIN;
    r->fired = 0;
    r->w = w;
    int rc = ioeng_submit(h, &q, tu_rec_cb, r);
    CHECK(rc == 0, "ioeng_submit(%s) = %s: kernel errors must come via the callback", what,
          tu_errname(rc));
}

/* A list of recorded requests sharing one waiter (w.count = callbacks so far). */
#define TU_MAX_RECS 256
typedef struct {
    tu_waiter_t w;
    int n;
    tu_rec_t r[TU_MAX_RECS];
} tu_recs_t;

/* Submits a request recorded as the next entry of `l` (see tu_rec_submit). */
static inline void tu_recs_sub(ioeng_t *h, tu_recs_t *l, const char *what, ioeng_op_t op,
                               ioeng_prio_t prio, int fd, void *buf, uint64_t len, uint64_t off,
                               int64_t want)
{
    CHECK(l->n < TU_MAX_RECS, "too many recorded requests");
    tu_rec_submit(h, &l->r[l->n++], &l->w, what, tu_req(op, prio, fd, buf, len, off), want);
}

/* Lists on stderr every entry without exactly one callback or with res != want;
 * returns how many there are. */
static inline int tu_recs_report(const tu_recs_t *l, ioeng_backend_t be)
{
    int bad = 0;
    for (int i = 0; i < l->n; i++) {
        const tu_rec_t *r = &l->r[i];
        if (r->fired != 1 || r->res != r->want) {
            fprintf(stderr, "  [%s] %-36s res %-10s expected %-8s (callbacks: %d)\n",
                    tu_backend_name(be), r->what, tu_errname(r->res), tu_errname(r->want),
                    r->fired);
            bad++;
        }
    }
    return bad;
}

/* The frame of a test made of recorded requests (test_flags, test_vectored_io): tu_init(name),
 * the backend of IOENG_TEST_BACKEND (skipped if unavailable), l's waiter, an engine of
 * depth 16 and two ext4 scratch files, buffered and O_DIRECT. */
typedef struct {
    ioeng_backend_t be;
    ioeng_t *h;
    int ext4, direct;
} tu_recs_test_t;

static inline tu_recs_test_t tu_recs_begin(const char *name, tu_recs_t *l)
{
    tu_recs_test_t t;
    tu_init(name, 0);
    t.be = tu_backend();
    require_backend(t.be);
    tu_waiter_init(&l->w);
    t.h = tu_open(t.be, 16, 0, 0, 0);
    t.ext4 = tu_scratch(TU_EXT4, 0, NULL);
    t.direct = tu_scratch(TU_EXT4, 1, NULL);
    return t;
}

/* Closes the engine; fails the test if a refused request (submitted with tu_count_cb)
 * got a callback or a recorded one is wrong (listed by tu_recs_report). */
static inline void tu_recs_end(tu_recs_test_t *t, const tu_recs_t *l)
{
    tu_close(t->h);
    CHECK(tu_counted == 0, "%d callbacks for refused requests", tu_counted);
    CHECK(tu_recs_report(l, t->be) == 0, "wrong results (listed above)");
}

#endif /* IOENG_TEST_UTIL_H */
