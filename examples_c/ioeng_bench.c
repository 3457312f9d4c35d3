/*
 * ioeng_bench.c - fio-like closed-loop benchmark for libioeng (uses only ioeng.h).
 *
 *   ioeng_bench [--backend aio|uring|auto] [--rw randread] [--bs 4k] [--iodepth 32]
 *               [--runtime 10] [--size 1g] [--direct 1] [--filename PATH] ...
 *   ioeng_bench --help     for every option
 *
 * Model: `iodepth` requests are kept outstanding (split over `numjobs` submitting
 * threads that share one engine). Each request owns a 4096-aligned buffer (a "slot").
 * When a request completes, its callback records the latency (submit -> callback) and
 * immediately issues the slot's next request with ioeng_submit() from inside the
 * callback; if that returns -EAGAIN (queue full) the slot is handed back to its
 * submitting thread, which retries. After the runtime no new requests are issued, the
 * outstanding ones are waited for and the engine is closed.
 *
 * Latency histograms are log-linear (HDR style, 256 sub-buckets per power of two,
 * < 0.8% relative error). They are plain counters without atomics: they are written
 * only from completion callbacks, and libioeng runs the callbacks of one engine one at
 * a time (--check-serial verifies this at a small cost).
 *
 * This file: main, signals, the scratch file, the engine and the timed phases; see
 * ioeng_bench.h for the others.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ioeng_bench.h"

/* Scratch-file removal, also from the signal handler. */
static char rm_path[PATH_MAX];
static volatile sig_atomic_t rm_armed;
volatile sig_atomic_t interrupted;

static void remove_scratch(void)
{
    if (rm_armed) {
        rm_armed = 0;
        unlink(rm_path);
    }
}

static void on_signal(int sig)
{
    if (interrupted) {
        /* Second signal: give up immediately, but do not leave the file behind. */
        if (rm_armed)
            unlink(rm_path);
        _exit(128 + sig);
    }
    interrupted = sig;
}

/* ======================================================================== */
/* File setup                                                               */
/* ======================================================================== */

/* Writes [from, to) with large sequential buffered writes of non-trivial data and
 * fdatasyncs, so that reads hit real allocated blocks. */
static void fill_file(const char *path, uint64_t from, uint64_t to)
{
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        die("cannot open %s to fill it: %s", path, strerror(errno));
    uint64_t *buf;
    if (posix_memalign((void **)&buf, ALIGN, FILL_CHUNK))
        die("out of memory");
    uint64_t x = 0x5eed;
    for (size_t i = 0; i < FILL_CHUNK / 8; i++)
        buf[i] = splitmix64(&x);
    if (!opt.json)
        fprintf(stderr, "%s: filling %s (%.1f MiB)...\n", prog, path, (double)(to - from) / 1048576.0);
    for (uint64_t off = from; off < to;) {
        if (interrupted)
        {
            fprintf(stderr, "%s: interrupted while filling %s\n", prog, path);
            exit(128 + interrupted);
        }
        size_t n = to - off < FILL_CHUNK ? (size_t)(to - off) : FILL_CHUNK;
        buf[0] = off; /* make every chunk distinct */
        ssize_t w = pwrite(fd, buf, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            die("writing %s: %s", path, strerror(errno));
        }
        off += (uint64_t)w;
    }
    if (fdatasync(fd) < 0)
        die("fdatasync %s: %s", path, strerror(errno));
    close(fd);
    free(buf);
}

/* A file this run just created (`fd` open on it): removed at exit, filled up to opt.size. */
static void fill_new_file(int fd, const char *path)
{
    close(fd);
    strcpy(rm_path, path);
    rm_armed = 1;
    fill_file(path, 0, opt.size);
}

static bool reads_only(void)
{
    for (unsigned i = 0; i < opt.njob_classes; i++)
        if (opt.job_classes[i].rw != RW_READ && opt.job_classes[i].rw != RW_RANDREAD)
            return false;
    return opt.rw == RW_READ || opt.rw == RW_RANDREAD;
}

/* Creates or checks the file, sets opt.size to the region used, returns the open fd. */
static int setup_file(const char **path_out)
{
    static char path[PATH_MAX];
    struct stat st;
    uint64_t have = 0;

    if (!opt.filename) {
        const char *dir = getenv("TMPDIR");
        if (!dir || !*dir) dir = "/tmp";
        if (snprintf(path, sizeof path, "%s/ioeng_bench.XXXXXX", dir) >= (int)sizeof path)
            die("$TMPDIR is too long");
        int fd = mkstemp(path);
        if (fd < 0)
            die("cannot create a scratch file in %s: %s", dir, strerror(errno));
        fill_new_file(fd, path);
    } else {
        if (strlen(opt.filename) >= sizeof path)
            die("--filename is too long");
        strcpy(path, opt.filename);
        if (stat(path, &st) == 0) {
            if (S_ISBLK(st.st_mode)) {
                int fd = open(path, O_RDONLY);
                if (fd < 0 || ioctl(fd, BLKGETSIZE64, &have) < 0)
                    die("cannot get the size of %s: %s", path, strerror(errno));
                close(fd);
                if (!opt.size_given || opt.size > have)
                    opt.size = have;
            } else if (S_ISREG(st.st_mode)) {
                have = (uint64_t)st.st_size;
                if (have < opt.size) {
                    uint64_t from = have & ~(uint64_t)(FILL_CHUNK - 1);
                    fill_file(path, from, opt.size);
                }
            } else {
                die("%s is neither a regular file nor a block device", path);
            }
        } else if (errno == ENOENT) {
            int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
            if (fd < 0)
                die("cannot create %s: %s", path, strerror(errno));
            fill_new_file(fd, path);
        } else {
            die("%s: %s", path, strerror(errno));
        }
    }

    g.nblocks = opt.size / opt.bs;
    if (g.nblocks == 0)
        die("--size (%" PRIu64 ") is smaller than --bs (%" PRIu64 ")", opt.size, opt.bs);

    int flags = (reads_only() ? O_RDONLY : O_RDWR) | (opt.direct ? O_DIRECT : 0);
    int fd = open(path, flags | (opt.noatime ? O_NOATIME : 0));
    if (fd < 0 && errno == EPERM && opt.noatime) {
        fprintf(stderr, "%s: %s: O_NOATIME refused (not the file's owner): opened without it\n", prog,
                path);
        fd = open(path, flags);
    }
    if (fd < 0) {
        if (errno == EINVAL && opt.direct)
            die("%s: this filesystem does not support O_DIRECT (use --direct 0)", path);
        die("cannot open %s: %s", path, strerror(errno));
    }
    *path_out = path;
    return fd;
}
/* ======================================================================== */
/* Engine, phases, main                                                     */
/* ======================================================================== */

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: sleeps return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Opens g.eng as the options say; returns the backend it runs on. */
static ioeng_backend_t open_engine(void)
{
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = opt.backend;
    cfg.depth = opt.engine_depth;
    cfg.batch = opt.batch;
    cfg.queue_capacity = opt.queue_capacity;
    cfg.mode = opt.mode;
    cfg.idle_poll_us = opt.idle_poll_us;
    cfg.latency_stats = opt.latency_stats;
    cfg.normal_min_percent = opt.normal_min_percent;
    if (opt.single_poller)
        cfg.flags |= IOENG_CONFIG_SINGLE_POLLER;
    int rc = ioeng_open(&cfg, &g.eng);
    if (rc < 0) {
        const char *why = opt.backend == IOENG_BACKEND_URING ? ioeng_uring_unavailable_reason() : NULL;
        die("ioeng_open(backend=%s, depth=%u): %s%s%s", backend_str(opt.backend), opt.engine_depth,
            strerror(-rc), why ? "; " : "", why ? why : "");
    }
    ioeng_backend_t backend = ioeng_backend(g.eng);
    if (opt.backend == IOENG_BACKEND_AUTO && backend == IOENG_BACKEND_AIO && !opt.json) {
        const char *why = ioeng_uring_unavailable_reason();
        fprintf(stderr, "%s: AUTO uses Linux AIO: %s\n", prog, why ? why : "io_uring unavailable");
    }
    return backend;
}

static void sleep_until(uint64_t deadline_ns)
{
    uint64_t now = now_ns();
    if (now >= deadline_ns)
        return;
    uint64_t d = deadline_ns - now;
    struct timespec ts = { (time_t)(d / 1000000000ull), (long)(d % 1000000000ull) };
    nanosleep(&ts, NULL); /* EINTR on SIGINT: the caller re-checks */
}
/* Sleeps through one phase (`seconds` from `start`), refreshing the progress line about
 * every 0.5 s from the engine's stats; `prev` carries the last stats snapshot. */
static void run_phase(bool tty, const char *phase, uint64_t start, double seconds,
                      ioeng_stats_t *prev)
{
    const uint64_t tick = 500000000ull;
    uint64_t end = start + (uint64_t)(seconds * 1e9);
    uint64_t t_prev = now_ns();
    while (!interrupted && !atomic_load(&g.stop) && now_ns() < end) {
        sleep_until(t_prev + tick < end ? t_prev + tick : end);
        uint64_t t = now_ns();
        if (t - t_prev >= tick / 2) {
            ioeng_stats_t cur;
            ioeng_stats(g.eng, &cur);
            progress(tty, phase, (double)(t - start) / 1e9, seconds, prev, &cur,
                     (double)(t - t_prev) / 1e9);
            *prev = cur;
            t_prev = t;
        }
    }
}
/* Releases the job threads, runs the ramp and the measured phase; `a` and `b` are the
 * samples at the start and the end of the measured phase. */
static void run_phases(struct sample *a, struct sample *b)
{
    bool tty = isatty(STDERR_FILENO);
    ioeng_stats_t prev;

    pthread_barrier_wait(&g.start);
    uint64_t t_begin = now_ns();
    ioeng_stats(g.eng, &prev);

    /* Ramp: run unmeasured. */
    run_phase(tty, "ramp", t_begin, opt.ramp_time, &prev);

    /* Measured phase. */
    getrusage(RUSAGE_SELF, &a->ru);
    ioeng_stats(g.eng, &a->st);
    a->t = now_ns();
    for (unsigned i = 0; i < opt.njob_classes; i++)
        ioeng_class_stats(g.eng, g.jobs[i].class_id, &g.jobs[i].cstats, IOENG_STATS_RESET);
    atomic_store(&g.recording, true);
    prev = a->st;
    run_phase(tty, "run", a->t, opt.runtime, &prev);
    atomic_store(&g.recording, false);
    for (unsigned i = 0; i < opt.njob_classes; i++)
        ioeng_class_stats(g.eng, g.jobs[i].class_id, &g.jobs[i].cstats, 0);
    b->t = now_ns();
    ioeng_stats(g.eng, &b->st);
    getrusage(RUSAGE_SELF, &b->ru);
    if (tty)
        fprintf(stderr, "\r\033[K");
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    atexit(remove_scratch);
    install_signals();

    const char *path;
    g.fd = setup_file(&path);
    if (interrupted)
        exit(128 + interrupted);

    /* Priority mix as an integer threshold on a 64-bit random number. */
    if (opt.prio_mix >= 1.0) g.prio_all = true;
    else g.prio_thresh = (uint64_t)ldexp(opt.prio_mix, 64);

    for (unsigned c = 0; c < NCLASS; c++)
        hist[c].min = UINT64_MAX;

    /* Engine and worker threads (and their children) never see SIGINT/SIGTERM; only
     * this thread handles them. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    ioeng_backend_t backend = open_engine();
    setup_jobs();
    start_jobs();
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    struct sample s0, s1;
    run_phases(&s0, &s1);

    /* Stop issuing, wait for everything outstanding, close. */
    stop_jobs();
    /* --single-poller: the polling job thread closed it (the promise's other half). */
    int rc = opt.single_poller && opt.mode == IOENG_MODE_POLLED ? g.close_rc : ioeng_close(g.eng);
    if (rc < 0)
        fprintf(stderr, "%s: ioeng_close: %s\n", prog, strerror(-rc));
    close(g.fd);

    struct result r = { .backend = backend, .path = path };
    make_result(&r, &s0, &s1);
    report(&r);

    int status = error_status();
    free_jobs();
    if (interrupted)
        status = status ? status : 128 + interrupted;
    return status;
}
