/*
 * Small helper header for the libioeng reliability tests (c_tests/reliability/).
 * Header-only (static inline); independent of ../test_util.h on purpose so that
 * this directory builds and runs on its own.
 *
 *  - rel_init(name, watchdog_sec) first in main(): line-buffered stdout, a
 *    watchdog alarm (fails a hung test), scratch-file cleanup at exit.
 *  - Backend from env IOENG_TEST_BACKEND=aio|uring (default aio).
 *    rel_require_backend(): io_uring unavailable -> "SKIP: <reason>" + exit 77,
 *    or a FAIL (exit 1) when IOENG_REQUIRE_URING=1.
 *  - CHECK()/CHECK_EQ()/FAILF() print "FAIL <test>: file:line: ..." and _exit(1);
 *    usable from engine callbacks and any thread.
 *  - Figures are printed as "figure: key=value" lines by each test.
 */
#ifndef IOENG_REL_H
#define IOENG_REL_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ioeng.h"

#define REL_SKIP 77

#ifndef TMPFS_MAGIC
#define TMPFS_MAGIC 0x01021994
#endif
#ifndef RAMFS_MAGIC
#define RAMFS_MAGIC 0x858458f6
#endif

static const char *rel_name = "reliability";

/* ---------------------------------------------------------------- scratch files */

#define REL_MAX_SCRATCH 32
static char rel_scratch[REL_MAX_SCRATCH][PATH_MAX];
static int rel_nscratch;
static pthread_mutex_t rel_scratch_mu = PTHREAD_MUTEX_INITIALIZER;
static pid_t rel_owner_pid;

/* Async-signal-safe: only unlink(). Only the process that created the files
 * removes them (forked children share the registry but must not unlink). */
static inline void rel_cleanup(void)
{
    if (getpid() != rel_owner_pid)
        return;
    for (int i = 0; i < rel_nscratch; i++)
        if (rel_scratch[i][0])
            unlink(rel_scratch[i]);
}

static inline void rel_atexit(void) { rel_cleanup(); }

static inline __attribute__((noreturn)) void rel_die(void)
{
    fflush(stdout);
    fflush(stderr);
    rel_cleanup();
    _exit(1);
}

static inline __attribute__((noreturn, format(printf, 3, 4))) void
rel_fail_at(const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    fprintf(stderr, "FAIL %s: %s:%d: %s\n", rel_name, file, line, msg);
    rel_die();
}

#define FAILF(...) rel_fail_at(__FILE__, __LINE__, __VA_ARGS__)

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "  check failed: %s\n", #cond);                   \
            rel_fail_at(__FILE__, __LINE__, __VA_ARGS__);                     \
        }                                                                     \
    } while (0)

#define CHECK_EQ(a, b, ...)                                                   \
    do {                                                                      \
        long long rel_a_ = (long long)(a), rel_b_ = (long long)(b);           \
        if (rel_a_ != rel_b_) {                                               \
            fprintf(stderr, "  check failed: %s == %s  (%lld != %lld)\n", #a, \
                    #b, rel_a_, rel_b_);                                      \
            rel_fail_at(__FILE__, __LINE__, __VA_ARGS__);                     \
        }                                                                     \
    } while (0)

static inline void rel_alarm(int sig)
{
    static const char msg[] = "FAIL: watchdog timeout (test hung)\n";
    (void)sig;
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    rel_cleanup();
    _exit(1);
}

/* Environment integer with default. */
static inline long long rel_env_ll(const char *name, long long def)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return def;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || *end) {
        fprintf(stderr, "FAIL %s: bad integer in env %s='%s'\n", rel_name, name, s);
        rel_die();
    }
    return v;
}

/* Call first. The watchdog may be raised with env IOENG_REL_WATCHDOG (seconds),
 * e.g. under valgrind. */
static inline void rel_init(const char *name, unsigned watchdog_sec)
{
    rel_name = name;
    rel_owner_pid = getpid();
    setvbuf(stdout, NULL, _IOLBF, 0);
    atexit(rel_atexit);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = rel_alarm;
    sigaction(SIGALRM, &sa, NULL);
    long long w = rel_env_ll("IOENG_REL_WATCHDOG", (long long)watchdog_sec);
    alarm((unsigned)w);
}

/* ---------------------------------------------------------------- backend */

static inline const char *rel_backend_name(ioeng_backend_t b)
{
    switch (b) {
    case IOENG_BACKEND_AUTO: return "auto";
    case IOENG_BACKEND_AIO: return "aio";
    case IOENG_BACKEND_URING: return "uring";
    default: return "?";
    }
}

static inline ioeng_backend_t rel_backend(void)
{
    const char *s = getenv("IOENG_TEST_BACKEND");
    if (!s || !*s || strcmp(s, "aio") == 0)
        return IOENG_BACKEND_AIO;
    if (strcmp(s, "uring") == 0 || strcmp(s, "io_uring") == 0)
        return IOENG_BACKEND_URING;
    FAILF("IOENG_TEST_BACKEND='%s' is neither aio nor uring", s);
}

static inline int rel_uring_required(void)
{
    const char *s = getenv("IOENG_REQUIRE_URING");
    return s && strcmp(s, "1") == 0;
}

/* NULL when io_uring is usable. */
static inline const char *rel_uring_reason(void) { return ioeng_uring_unavailable_reason(); }

static inline void rel_require_backend(ioeng_backend_t b)
{
    if (b != IOENG_BACKEND_URING)
        return;
    const char *why = rel_uring_reason();
    if (!why)
        return;
    if (rel_uring_required()) {
        fprintf(stderr, "FAIL %s: io_uring unavailable but IOENG_REQUIRE_URING=1: %s\n",
                rel_name, why);
        rel_die();
    }
    printf("SKIP: %s\n", why);
    fflush(stdout);
    rel_cleanup();
    _exit(REL_SKIP);
}

static inline __attribute__((noreturn, format(printf, 1, 2))) void rel_skip(const char *fmt, ...)
{
    va_list ap;
    printf("SKIP: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    rel_cleanup();
    _exit(REL_SKIP);
}

static inline ioeng_t *rel_open_cfg(const ioeng_config_t *cfg)
{
    ioeng_t *h = NULL;
    int rc = ioeng_open(cfg, &h);
    CHECK(rc == 0 && h != NULL, "ioeng_open(backend=%s depth=%u batch=%u cap=%u paused=%u) = %d (%s)",
          rel_backend_name(cfg->backend), cfg->depth, cfg->batch, cfg->queue_capacity,
          cfg->start_paused, rc, rc < 0 ? strerror(-rc) : "ok");
    CHECK(ioeng_backend(h) == cfg->backend, "ioeng_backend() = %u, wanted %s",
          (unsigned)ioeng_backend(h), rel_backend_name(cfg->backend));
    return h;
}

static inline ioeng_t *rel_open(ioeng_backend_t b, uint32_t depth, uint32_t batch,
                                uint32_t cap, uint32_t paused)
{
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = b;
    cfg.depth = depth;
    cfg.batch = batch;
    cfg.queue_capacity = cap;
    cfg.start_paused = paused;
    return rel_open_cfg(&cfg);
}

static inline void rel_close(ioeng_t *h)
{
    int rc = ioeng_close(h);
    CHECK(rc == 0, "ioeng_close() = %d", rc);
}

static inline ioeng_stats_t rel_stats(ioeng_t *h)
{
    ioeng_stats_t s;
    int rc = ioeng_stats(h, &s);
    CHECK(rc == 0, "ioeng_stats = %d", rc);
    return s;
}

/* Once every callback of `n` accepted requests was observed: the stats are exact. */
#define REL_CHECK_IDLE_STATS(h, n)                                                   \
    do {                                                                            \
        ioeng_stats_t st_ = rel_stats(h);                                           \
        uint64_t n_ = (uint64_t)(n);                                                \
        if (st_.submitted != n_ || st_.completed != n_ || st_.in_flight != 0 ||     \
            st_.queued_high != 0 || st_.queued_read != 0 || st_.queued_write != 0)  \
            FAILF("stats not idle/exact: submitted=%" PRIu64 " completed=%" PRIu64   \
                  " (expected %" PRIu64 ") in_flight=%" PRIu64 " queued h/r/w=%"     \
                  PRIu64 "/%" PRIu64 "/%" PRIu64,                                    \
                  st_.submitted, st_.completed, n_, st_.in_flight, st_.queued_high, \
                  st_.queued_read, st_.queued_write);                               \
    } while (0)

/* ---------------------------------------------------------------- files */

enum rel_fs { REL_EXT4 = 0, REL_TMPFS = 1 };

static inline const char *rel_dir_for(enum rel_fs fs)
{
    if (fs == REL_TMPFS)
        return "/dev/shm";
    const char *d = getenv("IOENG_TEST_DIR");
    return (d && *d) ? d : "/tmp";
}

static inline void rel_register_scratch(const char *path)
{
    pthread_mutex_lock(&rel_scratch_mu);
    CHECK(rel_nscratch < REL_MAX_SCRATCH, "too many scratch files");
    snprintf(rel_scratch[rel_nscratch++], PATH_MAX, "%s", path);
    pthread_mutex_unlock(&rel_scratch_mu);
}

/* Creates a scratch file and returns an O_RDWR fd (| O_DIRECT). Without `path_out`
 * the file is unlinked at once; with it, it is removed at exit. */
static inline int rel_scratch_file(enum rel_fs fs, int direct, char *path_out)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/ioeng-rel-%s-XXXXXX", rel_dir_for(fs), rel_name);
    int fd = mkostemp(path, O_CLOEXEC);
    CHECK(fd >= 0, "mkstemp(%s): %s", path, strerror(errno));
    rel_register_scratch(path);
    struct statfs sf;
    CHECK(fstatfs(fd, &sf) == 0, "fstatfs: %s", strerror(errno));
    if (fs == REL_TMPFS)
        CHECK(sf.f_type == TMPFS_MAGIC, "%s is not tmpfs", rel_dir_for(fs));
    else
        CHECK(sf.f_type != TMPFS_MAGIC && sf.f_type != RAMFS_MAGIC,
              "%s is tmpfs; set IOENG_TEST_DIR to an ext4 directory", rel_dir_for(fs));
    if (direct) {
        int dfd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
        CHECK(dfd >= 0, "open(%s, O_DIRECT): %s", path, strerror(errno));
        close(fd);
        fd = dfd;
    }
    if (path_out)
        snprintf(path_out, PATH_MAX, "%s", path);
    else
        unlink(path); /* anonymous from now on: nothing is left behind even on a crash */
    return fd;
}

static inline void *rel_alloc_aligned(size_t len, size_t align)
{
    void *p = NULL;
    int rc = posix_memalign(&p, align, len ? len : 1);
    CHECK(rc == 0 && p, "posix_memalign(%zu): %s", len, strerror(rc));
    return p;
}

static inline void rel_pwrite_all(int fd, const void *buf, size_t len, off_t off)
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

static inline void rel_pread_all(int fd, void *buf, size_t len, off_t off)
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

/* A closed fd number >= `want` that the kernel will not hand out again during the
 * test (it always picks the lowest free number, and we keep far fewer fds open). */
static inline int rel_closed_fd(int want)
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

/* Moves `fd` to a free number >= `want` (closing the original). */
static inline int rel_move_fd_high(int fd, int want)
{
    int hi = fcntl(fd, F_DUPFD_CLOEXEC, want);
    CHECK(hi >= want, "F_DUPFD(%d): %s", want, strerror(errno));
    close(fd);
    return hi;
}

/* ---------------------------------------------------------------- misc */

static inline pid_t rel_gettid(void) { return (pid_t)syscall(SYS_gettid); }

static inline double rel_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void rel_sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* splitmix64: seeding and cheap hashing. */
static inline uint64_t rel_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* xorshift64* PRNG; state must be non-zero. */
typedef struct {
    uint64_t s;
} rel_rng_t;

static inline void rel_rng_seed(rel_rng_t *r, uint64_t seed)
{
    r->s = rel_mix64(seed) | 1;
}

static inline uint64_t rel_rand(rel_rng_t *r)
{
    uint64_t x = r->s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    r->s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [lo, hi] (hi - lo < 2^63). */
static inline uint64_t rel_range(rel_rng_t *r, uint64_t lo, uint64_t hi)
{
    return lo + rel_rand(r) % (hi - lo + 1);
}

/* Fills `len` bytes with pseudo-random data. */
static inline void rel_fill_random(rel_rng_t *r, void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len >= 8) {
        uint64_t v = rel_rand(r);
        memcpy(p, &v, 8);
        p += 8;
        len -= 8;
    }
    if (len) {
        uint64_t v = rel_rand(r);
        memcpy(p, &v, len);
    }
}

/* Counts entries of a /proc directory (fds, tasks). */
static inline int rel_count_dir(const char *path)
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
static inline int rel_count_fds(void) { return rel_count_dir("/proc/self/fd") - 1; }
static inline int rel_count_threads(void) { return rel_count_dir("/proc/self/task"); }

/* Reads /proc/self/task/<tid>/comm into `out` (empty string if the thread is gone). */
static inline void rel_thread_comm(pid_t tid, char *out, size_t n)
{
    char path[64];
    out[0] = 0;
    snprintf(path, sizeof path, "/proc/self/task/%d/comm", (int)tid);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (fgets(out, (int)n, f)) {
        size_t l = strlen(out);
        if (l && out[l - 1] == '\n')
            out[l - 1] = 0;
    }
    fclose(f);
}

/* First index where a and b differ, or -1. */
static inline long rel_first_diff(const void *a, const void *b, size_t len)
{
    const unsigned char *x = a, *y = b;
    for (size_t i = 0; i < len; i++)
        if (x[i] != y[i])
            return (long)i;
    return -1;
}

#endif /* IOENG_REL_H */
