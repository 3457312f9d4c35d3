/*
 * What deadlines cost when none fires: 20,000 queued self-resubmitting 512-byte reads of
 * /dev/zero at depth 32 (so about 20,000 requests always wait in the queues), each with
 * a deadline 1 s after its submission (--deadlines; a request waits some 20 ms, so none
 * fires, but the deadlines of dispatched requests keep coming due) or none. Prints completions per second and IOs
 * per CPU-ms of the whole process, as one line of `key=value` pairs.
 *
 *   bench_deadlines --backend aio|uring [--deadlines] [--seconds S] [--queued N]
 *
 * bench_deadlines.sh runs interleaved rounds of both variants on both backends and
 * prints the medians and their ratio (docs/ARCHITECTURE.md, "Deadlines").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <ioeng.h>

static ioeng_t *eng;
static int zero_fd;
static int with_deadlines;
static atomic_int stop;
static atomic_ullong completed;
static atomic_int drained;
static char buf[512];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* For the deadlines: 1 s away, a few ms of coarseness do not matter, and the clock read
 * per request should cost this program little next to what the engine does. */
static uint64_t coarse_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int submit_one(void);

static void on_done(void *ctx, int64_t res)
{
    (void)ctx;
    if (res != (int64_t)sizeof buf) {
        fprintf(stderr, "bench_deadlines: read gave %lld\n", (long long)res);
        exit(1);
    }
    atomic_fetch_add_explicit(&completed, 1, memory_order_relaxed);
    if (atomic_load_explicit(&stop, memory_order_relaxed) || submit_one() != 0)
        atomic_fetch_add(&drained, 1);
}

static int submit_one(void)
{
    ioeng_req_t q;
    memset(&q, 0, sizeof q);
    q.op = IOENG_OP_READ;
    q.fd = zero_fd;
    q.buf = buf;
    q.len = sizeof buf;
    q.deadline_ns = with_deadlines ? coarse_now_ns() + 1000000000u : 0;
    return ioeng_submit(eng, &q, on_done, NULL);
}

int main(int argc, char **argv)
{
    const char *backend = "uring";
    double seconds = 2;
    int queued = 20000, deadlines = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--queued") && i + 1 < argc)
            queued = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--deadlines"))
            deadlines = 1;
        else {
            fprintf(stderr, "usage: %s --backend aio|uring [--deadlines] [--seconds S] "
                            "[--queued N]\n", argv[0]);
            return 2;
        }
    }
    zero_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    if (zero_fd < 0) {
        perror("open /dev/zero");
        return 1;
    }
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = strcmp(backend, "aio") == 0 ? IOENG_BACKEND_AIO : IOENG_BACKEND_URING;
    cfg.depth = 32;
    int rc = ioeng_open(&cfg, &eng);
    if (rc != 0) {
        fprintf(stderr, "ioeng_open: %s\n", strerror(-rc));
        return 1;
    }
    with_deadlines = deadlines;
    for (int i = 0; i < queued; i++) {
        rc = submit_one();
        if (rc != 0) {
            fprintf(stderr, "submit: %s\n", strerror(-rc));
            return 1;
        }
    }
    usleep(200 * 1000); /* warm-up */
    unsigned long long c0 = atomic_load(&completed);
    double cpu0 = cpu_seconds();
    uint64_t t0 = now_ns();
    usleep((useconds_t)(seconds * 1e6));
    unsigned long long c1 = atomic_load(&completed);
    double cpu1 = cpu_seconds();
    uint64_t t1 = now_ns();
    atomic_store(&stop, 1);
    rc = ioeng_close(eng);
    if (rc != 0 || atomic_load(&drained) != queued) {
        fprintf(stderr, "close: %d, drained %d of %d\n", rc, atomic_load(&drained), queued);
        return 1;
    }
    double wall = (double)(t1 - t0) / 1e9;
    double ios = (double)(c1 - c0);
    printf("backend=%s deadlines=%d queued=%d completions_per_s=%.0f ios_per_cpu_ms=%.1f\n",
           backend, deadlines, queued, ios / wall, ios / ((cpu1 - cpu0) * 1e3));
    return 0;
}
