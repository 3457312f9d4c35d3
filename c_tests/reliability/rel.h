/*
 * Helpers of the libioeng reliability tests (c_tests/reliability/), on top of the
 * shared ../test_util.h (CHECK/CHECK_EQ/FAILF, backend selection and SKIP, tu_open,
 * scratch files, aligned buffers, pread/pwrite loops, waiters, closed fds, ...).
 *
 *  - rel_init(name, watchdog_sec) first in main(): tu_init() plus the watchdog
 *    override env IOENG_REL_WATCHDOG (seconds; run.sh raises it under valgrind/ASan).
 *  - Backend from env IOENG_TEST_BACKEND=aio|uring (default aio).
 *    require_backend(): io_uring unavailable -> "SKIP: <reason>" + exit 77,
 *    or a FAIL (exit 1) when IOENG_REQUIRE_URING=1.
 *  - Figures are printed as "figure: key=value" lines by each test.
 */
#ifndef IOENG_REL_H
#define IOENG_REL_H

#include <dirent.h>
#include <stdatomic.h>
#include <sys/syscall.h>

#include "../test_util.h"

/* Call first. The watchdog may be raised with env IOENG_REL_WATCHDOG (seconds),
 * e.g. under valgrind; 0 there disables it. */
static inline void rel_init(const char *name, unsigned watchdog_sec)
{
    tu_init(name, watchdog_sec);
    alarm((unsigned)tu_env_ll("IOENG_REL_WATCHDOG", (long long)watchdog_sec));
}

/* ---------------------------------------------------------------- valgrind */

/* Prepares a buffer for a READ. Natively: fills it with 0xEE (a sentinel, so data the
 * kernel did not write is caught by the test's compare). Under valgrind: marks it
 * uninitialised instead, as a fresh malloc'ed buffer is, so memcheck reports any byte
 * the test uses that libioeng did not get the kernel (or valgrind) to define — the
 * way a database reading into fresh buffers runs under valgrind. */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define REL_HAVE_VALGRIND 1
#endif
#endif
static inline void rel_prep_read_buf(void *buf, size_t len)
{
#ifdef REL_HAVE_VALGRIND
    if (RUNNING_ON_VALGRIND) {
        (void)VALGRIND_MAKE_MEM_UNDEFINED(buf, len);
        return;
    }
#endif
    memset(buf, 0xEE, len);
}

/* ---------------------------------------------------------------- engine */

/* Once every callback of `n` accepted requests was observed: the stats are exact. */
#define REL_CHECK_IDLE_STATS(h, n)                                                   \
    do {                                                                            \
        ioeng_stats_t st_ = tu_stats(h);                                            \
        uint64_t n_ = (uint64_t)(n);                                                \
        if (st_.submitted != n_ || st_.completed != n_ || st_.in_flight != 0 ||     \
            st_.queued_high != 0 || st_.queued_read != 0 || st_.queued_write != 0)  \
            FAILF("stats not idle/exact: submitted=%" PRIu64 " completed=%" PRIu64   \
                  " (expected %" PRIu64 ") in_flight=%" PRIu64 " queued h/r/w=%"     \
                  PRIu64 "/%" PRIu64 "/%" PRIu64,                                    \
                  st_.submitted, st_.completed, n_, st_.in_flight, st_.queued_high, \
                  st_.queued_read, st_.queued_write);                               \
    } while (0)

/* Callback record polled by the test: the last res and how many callbacks ran. */
struct rel_done {
    _Atomic int ncb;
    int64_t res;
};

static inline void rel_on_done(void *ctx, int64_t res)
{
    struct rel_done *d = ctx;
    d->res = res;
    atomic_fetch_add(&d->ncb, 1);
}

/* ---------------------------------------------------------------- files */

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

/* xorshift64* PRNG (the sequences of a seed are what IOENG_*_SEED reproduce);
 * state must be non-zero. */
typedef struct {
    uint64_t s;
} rel_rng_t;

static inline void rel_rng_seed(rel_rng_t *r, uint64_t seed)
{
    r->s = tu_mix64(seed) | 1;
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

/* fds open now, and threads of this process. */
static inline int rel_count_fds(void) { return tu_count_fds(); }
static inline int rel_count_threads(void) { return tu_count_dir("/proc/self/task"); }

/* Prints each open fd and what it names, for a failed fd count. */
static inline void rel_dump_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
            continue;
        char path[300], target[256];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        printf("    fd %s -> %s\n", e->d_name, target);
    }
    closedir(d);
}

/* The fd count once it equals `want`, or after 200 ms: the last count, with every open fd
 * printed. An engine thread that just started opens files for a moment: its first malloc
 * makes glibc size its arenas with get_nprocs(), which reads /sys/devices/system/cpu/online
 * (or /proc/stat). Those are gone within microseconds; a leaked fd never goes. */
static inline int rel_count_fds_settled(int want)
{
    int n = rel_count_fds();
    for (int k = 0; k < 200 && n != want; k++) {
        rel_sleep_us(1000);
        n = rel_count_fds();
    }
    if (n != want)
        rel_dump_fds();
    return n;
}

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
