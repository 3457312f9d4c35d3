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
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ioeng.h"

#define ALIGN 4096u
#define MAX_IODEPTH (1u << 20)
#define MAX_NUMJOBS 1024u
#define FILL_CHUNK (1u << 20)

/* ======================================================================== */
/* Options                                                                  */
/* ======================================================================== */

enum rw_mode { RW_READ, RW_WRITE, RW_RANDREAD, RW_RANDWRITE, RW_RANDRW, RW_RW };
static const char *const rw_names[] = { "read", "write", "randread", "randwrite", "randrw", "rw" };

static struct {
    ioeng_backend_t backend;
    enum rw_mode rw;
    unsigned rwmixread;     /* percent of reads for randrw / rw */
    uint64_t bs;
    unsigned iodepth;       /* outstanding requests, total over jobs */
    unsigned engine_depth;  /* ioeng_config_t.depth */
    unsigned batch;         /* ioeng_config_t.batch, 0 = depth */
    unsigned queue_capacity;
    uint64_t size;
    bool size_given;
    double runtime;
    double ramp_time;
    int direct;
    unsigned numjobs;
    double prio_mix;
    const char *filename;
    bool json;
    bool check_serial;
    uint64_t seed;
    bool fixedbufs;         /* register the slot buffers, IOENG_REQ_FIXED_BUF */
    bool dsync;             /* IOENG_REQ_DSYNC on writes */
    unsigned batch_submit;  /* 0: one ioeng_submit per IO; N: reissue in groups of N */
    bool group_singles;     /* with batch_submit: a group goes out as N ioeng_submit calls */
    ioeng_mode_t mode;
    uint32_t idle_poll_us;
} opt = {
    .backend = IOENG_BACKEND_AUTO,
    .rw = RW_RANDREAD,
    .rwmixread = 50,
    .bs = 4096,
    .iodepth = 32,
    .size = 1ull << 30,
    .runtime = 10.0,
    .direct = 1,
    .numjobs = 1,
    .seed = 0x10e9b3c4d5e6f708ull,
};

static const char *prog = "ioeng_bench";

static void usage(FILE *f)
{
    fprintf(f,
"usage: %s [options]\n"
"fio-like closed-loop benchmark of libioeng.\n"
"\n"
"  --backend aio|uring|auto   engine backend (default auto)\n"
"  --mode threads|polled      engine mode (default threads); polled: the one job thread\n"
"                             submits and drives the engine with ioeng_poll() (--numjobs 1)\n"
"  --idle-poll-us N|never     THREADS: idle_poll_us, how long idle engine threads poll\n"
"                             (default: the engine's policy)\n"
"  --rw MODE                  read|write|randread|randwrite|randrw|rw (default randread)\n"
"  --rwmixread N              percent reads for randrw/rw, 0..100 (default 50)\n"
"  --bs SIZE                  block size, e.g. 4k, 64k, 1m (default 4k)\n"
"  --iodepth N                requests kept outstanding, total over jobs (default 32)\n"
"  --engine-depth N           engine in-flight budget, 1..%u (default min(iodepth, %u))\n"
"  --batch N                  max IOs per kernel submit call (default 0 = engine depth)\n"
"  --queue-capacity N         engine queue limit, 0 = unbounded (default 0)\n"
"  --size SIZE                file size / region used (default 1g)\n"
"  --runtime T                measured run time, e.g. 10, 0.5, 3s, 500ms (default 10s)\n"
"  --ramp_time T              run this long before measuring (default 0)\n"
"  --direct 0|1               O_DIRECT (default 1)\n"
"  --numjobs N                submitting threads sharing one engine (default 1);\n"
"                             each keeps iodepth/numjobs requests outstanding\n"
"  --prio-mix F               fraction 0..1 of requests sent IOENG_PRIO_HIGH (default 0)\n"
"  --filename PATH            file or block device; default: a scratch file in $TMPDIR\n"
"                             or /tmp, filled with data and removed at exit. A missing\n"
"                             file is created, filled and removed; a regular file smaller\n"
"                             than --size is extended and filled (and kept).\n"
"  --output-format normal|json\n"
"  --seed N                   PRNG seed (default fixed)\n"
"  --check-serial             verify that callbacks never overlap (costs 2 atomics/IO)\n"
"  --fixedbufs[=0|1]          register the IO buffers (ioeng_register_buffers) and send\n"
"                             IOENG_REQ_FIXED_BUF requests (io_uring READ/WRITE_FIXED)\n"
"  --dsync[=0|1]              writes carry IOENG_REQ_DSYNC (durable at completion)\n"
"  --batch-submit N           reissue completed slots in groups of N with one\n"
"                             ioeng_submit_batch() call (a group also goes out when\n"
"                             nothing else of its job is in flight); default: one\n"
"                             ioeng_submit() per IO, at once\n"
"  --group-submit N           the same groups of N as --batch-submit, each sent with N\n"
"                             ioeng_submit() calls: the baseline for ioeng_submit_batch()\n"
"  -h, --help\n"
"\n"
"Sizes take k/m/g/t suffixes (powers of 1024). Latency is measured from just before\n"
"ioeng_submit() to the start of the completion callback.\n",
            prog, IOENG_MAX_DEPTH, IOENG_MAX_DEPTH);
}

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2); /* atexit handlers remove the scratch file */
}

/* "4k", "1m", "1g", "512", "1.5m", "4KiB" -> bytes (powers of 1024, like fio). */
static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v > 0) || isspace((unsigned char)*s))
        return false;
    double mul = 1;
    switch (tolower((unsigned char)*end)) {
    case 'k': mul = 1024.0; end++; break;
    case 'm': mul = 1024.0 * 1024; end++; break;
    case 'g': mul = 1024.0 * 1024 * 1024; end++; break;
    case 't': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    case 'p': mul = 1024.0 * 1024 * 1024 * 1024 * 1024; end++; break;
    default: break;
    }
    if (mul > 1 && tolower((unsigned char)*end) == 'i')
        end++;
    if (tolower((unsigned char)*end) == 'b')
        end++;
    if (*end)
        return false;
    double bytes = v * mul;
    if (bytes >= 18446744073709551616.0 || bytes != floor(bytes))
        return false;
    *out = (uint64_t)bytes;
    return *out > 0;
}

/* "10", "0.5", "3s", "500ms", "2m", "1h" -> seconds. */
static bool parse_time(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0) || isinf(v) || isspace((unsigned char)*s))
        return false;
    double mul;
    if (!*end || !strcmp(end, "s")) mul = 1;
    else if (!strcmp(end, "ms")) mul = 1e-3;
    else if (!strcmp(end, "us")) mul = 1e-6;
    else if (!strcmp(end, "m")) mul = 60;
    else if (!strcmp(end, "h")) mul = 3600;
    else return false;
    *out = v * mul;
    return true;
}

static unsigned parse_uint(const char *name, const char *s, unsigned lo, unsigned hi)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || errno || *s == '-' || v < lo || v > hi)
        die("%s: expected an integer in %u..%u, got '%s'", name, lo, hi, s);
    return (unsigned)v;
}

enum {
    OPT_BACKEND = 256, OPT_RW, OPT_RWMIX, OPT_BS, OPT_IODEPTH, OPT_ENGDEPTH, OPT_BATCH, OPT_QCAP, OPT_SIZE,
    OPT_RUNTIME, OPT_RAMP, OPT_DIRECT, OPT_NUMJOBS, OPT_PRIOMIX, OPT_FILENAME, OPT_OUTFMT, OPT_SEED, OPT_CHECK,
    OPT_FIXEDBUFS, OPT_DSYNC, OPT_BATCHSUB, OPT_GROUPSUB,
    OPT_MODE, OPT_IDLEPOLL,
};

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        { "backend", required_argument, 0, OPT_BACKEND },
        { "mode", required_argument, 0, OPT_MODE },
        { "idle-poll-us", required_argument, 0, OPT_IDLEPOLL },
        { "rw", required_argument, 0, OPT_RW },
        { "readwrite", required_argument, 0, OPT_RW },
        { "rwmixread", required_argument, 0, OPT_RWMIX },
        { "bs", required_argument, 0, OPT_BS },
        { "blocksize", required_argument, 0, OPT_BS },
        { "iodepth", required_argument, 0, OPT_IODEPTH },
        { "engine-depth", required_argument, 0, OPT_ENGDEPTH },
        { "engine_depth", required_argument, 0, OPT_ENGDEPTH },
        { "batch", required_argument, 0, OPT_BATCH },
        { "queue-capacity", required_argument, 0, OPT_QCAP },
        { "size", required_argument, 0, OPT_SIZE },
        { "runtime", required_argument, 0, OPT_RUNTIME },
        { "ramp_time", required_argument, 0, OPT_RAMP },
        { "ramp-time", required_argument, 0, OPT_RAMP },
        { "direct", required_argument, 0, OPT_DIRECT },
        { "numjobs", required_argument, 0, OPT_NUMJOBS },
        { "prio-mix", required_argument, 0, OPT_PRIOMIX },
        { "prio_mix", required_argument, 0, OPT_PRIOMIX },
        { "filename", required_argument, 0, OPT_FILENAME },
        { "output-format", required_argument, 0, OPT_OUTFMT },
        { "output_format", required_argument, 0, OPT_OUTFMT },
        { "seed", required_argument, 0, OPT_SEED },
        { "check-serial", no_argument, 0, OPT_CHECK },
        { "fixedbufs", optional_argument, 0, OPT_FIXEDBUFS },
        { "dsync", optional_argument, 0, OPT_DSYNC },
        { "batch-submit", required_argument, 0, OPT_BATCHSUB },
        { "batch_submit", required_argument, 0, OPT_BATCHSUB },
        { "group-submit", required_argument, 0, OPT_GROUPSUB },
        { "group_submit", required_argument, 0, OPT_GROUPSUB },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    bool engine_depth_given = false;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case OPT_MODE:
            if (!strcmp(optarg, "threads")) opt.mode = IOENG_MODE_THREADS;
            else if (!strcmp(optarg, "polled")) opt.mode = IOENG_MODE_POLLED;
            else die("--mode: expected threads or polled, got '%s'", optarg);
            break;
        case OPT_IDLEPOLL:
            opt.idle_poll_us = !strcmp(optarg, "never") ? IOENG_POLL_NEVER
                                                       : parse_uint("--idle-poll-us", optarg, 0, UINT32_MAX - 1);
            break;
        case OPT_BACKEND:
            if (!strcmp(optarg, "aio")) opt.backend = IOENG_BACKEND_AIO;
            else if (!strcmp(optarg, "uring") || !strcmp(optarg, "io_uring")) opt.backend = IOENG_BACKEND_URING;
            else if (!strcmp(optarg, "auto")) opt.backend = IOENG_BACKEND_AUTO;
            else die("--backend: expected aio, uring or auto, got '%s'", optarg);
            break;
        case OPT_RW: {
            bool ok = false;
            for (unsigned i = 0; i < sizeof rw_names / sizeof rw_names[0]; i++) {
                if (!strcmp(optarg, rw_names[i])) { opt.rw = (enum rw_mode)i; ok = true; }
            }
            if (!strcmp(optarg, "readwrite")) { opt.rw = RW_RW; ok = true; }
            if (!ok) die("--rw: expected read, write, randread, randwrite, randrw or rw, got '%s'", optarg);
            break;
        }
        case OPT_RWMIX: opt.rwmixread = parse_uint("--rwmixread", optarg, 0, 100); break;
        case OPT_BS:
            if (!parse_size(optarg, &opt.bs) || opt.bs > (1ull << 30))
                die("--bs: expected a size between 1 and 1g (e.g. 4k, 1m), got '%s'", optarg);
            break;
        case OPT_IODEPTH: opt.iodepth = parse_uint("--iodepth", optarg, 1, MAX_IODEPTH); break;
        case OPT_ENGDEPTH:
            opt.engine_depth = parse_uint("--engine-depth", optarg, 1, IOENG_MAX_DEPTH);
            engine_depth_given = true;
            break;
        case OPT_BATCH: opt.batch = parse_uint("--batch", optarg, 0, IOENG_MAX_DEPTH); break;
        case OPT_QCAP: opt.queue_capacity = parse_uint("--queue-capacity", optarg, 0, UINT32_MAX); break;
        case OPT_SIZE:
            if (!parse_size(optarg, &opt.size))
                die("--size: expected a size such as 256m or 1g, got '%s'", optarg);
            opt.size_given = true;
            break;
        case OPT_RUNTIME:
            if (!parse_time(optarg, &opt.runtime) || opt.runtime <= 0 || opt.runtime > 1e7)
                die("--runtime: expected a positive time such as 10, 0.5, 3s or 500ms, got '%s'", optarg);
            break;
        case OPT_RAMP:
            if (!parse_time(optarg, &opt.ramp_time) || opt.ramp_time > 1e7)
                die("--ramp_time: expected a time such as 2 or 500ms, got '%s'", optarg);
            break;
        case OPT_DIRECT: opt.direct = (int)parse_uint("--direct", optarg, 0, 1); break;
        case OPT_NUMJOBS: opt.numjobs = parse_uint("--numjobs", optarg, 1, MAX_NUMJOBS); break;
        case OPT_PRIOMIX: {
            char *end;
            errno = 0;
            opt.prio_mix = strtod(optarg, &end);
            if (end == optarg || *end || errno || !(opt.prio_mix >= 0 && opt.prio_mix <= 1))
                die("--prio-mix: expected a fraction between 0 and 1, got '%s'", optarg);
            break;
        }
        case OPT_FILENAME:
            if (!*optarg) die("--filename: empty path");
            opt.filename = optarg;
            break;
        case OPT_OUTFMT:
            if (!strcmp(optarg, "json")) opt.json = true;
            else if (!strcmp(optarg, "normal")) opt.json = false;
            else die("--output-format: expected normal or json, got '%s'", optarg);
            break;
        case OPT_SEED: {
            char *end;
            errno = 0;
            opt.seed = strtoull(optarg, &end, 0);
            if (end == optarg || *end || errno) die("--seed: expected an integer, got '%s'", optarg);
            break;
        }
        case OPT_CHECK: opt.check_serial = true; break;
        case OPT_FIXEDBUFS: opt.fixedbufs = !optarg || parse_uint("--fixedbufs", optarg, 0, 1); break;
        case OPT_DSYNC: opt.dsync = !optarg || parse_uint("--dsync", optarg, 0, 1); break;
        case OPT_BATCHSUB:
            opt.batch_submit = parse_uint("--batch-submit", optarg, 1, MAX_IODEPTH);
            opt.group_singles = false;
            break;
        case OPT_GROUPSUB:
            opt.batch_submit = parse_uint("--group-submit", optarg, 1, MAX_IODEPTH);
            opt.group_singles = true;
            break;
        case 'h': usage(stdout); exit(0);
        case '?':
        default:
            if (optopt)
                die("option '%s' needs a value or takes none (see --help)", argv[optind - 1]);
            die("unknown option '%s' (see --help)", argv[optind - 1]);
        }
    }
    if (optind < argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);

    if (opt.numjobs > opt.iodepth)
        die("--numjobs (%u) must not exceed --iodepth (%u): each job keeps at least one request outstanding",
            opt.numjobs, opt.iodepth);
    if (opt.mode == IOENG_MODE_POLLED && opt.numjobs != 1)
        die("--mode polled runs one job thread, which drives the engine (--numjobs 1)");
    if (!engine_depth_given)
        opt.engine_depth = opt.iodepth < IOENG_MAX_DEPTH ? opt.iodepth : IOENG_MAX_DEPTH;
    if (opt.batch > opt.engine_depth)
        die("--batch (%u) must not exceed the engine depth (%u)", opt.batch, opt.engine_depth);
    if (opt.size < opt.bs)
        die("--size (%" PRIu64 ") is smaller than --bs (%" PRIu64 ")", opt.size, opt.bs);
    if (opt.direct && opt.bs % 512)
        die("--bs %" PRIu64 " is not a multiple of 512, which O_DIRECT requires (use --direct 0)", opt.bs);
    if ((uint64_t)opt.iodepth * opt.bs > (64ull << 30))
        die("--iodepth x --bs needs %" PRIu64 " MiB of buffers; that is too much",
            (uint64_t)opt.iodepth * opt.bs >> 20);
}

/* ======================================================================== */
/* Time, PRNG                                                               */
/* ======================================================================== */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double tv_sec(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* xorshift64*: a few cycles per number, fine for offsets and mixes. */
static inline uint64_t xrand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [0, n) without division (Lemire's multiply-shift). */
static inline uint64_t xrand_below(uint64_t *s, uint64_t n)
{
    return (uint64_t)(((unsigned __int128)xrand(s) * n) >> 64);
}

/* ======================================================================== */
/* Latency histogram: log-linear, HDR style                                 */
/* ======================================================================== */
/*
 * Values (ns) below 256 have one bucket each. Above, each power of two [2^m, 2^(m+1))
 * is split into 128 equal buckets, so a bucket is at most 1/128 of its value wide.
 * 256 + 56 * 128 buckets cover all of uint64_t.
 */
#define H_SUB_BITS 8
#define H_SUB (1u << H_SUB_BITS)
#define H_HALF (H_SUB / 2)
#define H_BUCKETS (H_SUB + (64 - H_SUB_BITS) * H_HALF)

struct hist {
    uint64_t count, sum, min, max;
    uint64_t b[H_BUCKETS];
};

static inline unsigned h_index(uint64_t v)
{
    if (v < H_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - (H_SUB_BITS - 1);
    return H_SUB + (shift - 1) * H_HALF + (unsigned)((v >> shift) - H_HALF);
}

static uint64_t h_low(unsigned i)
{
    if (i < H_SUB)
        return i;
    unsigned shift = (i - H_SUB) / H_HALF + 1;
    return ((uint64_t)((i - H_SUB) % H_HALF) + H_HALF) << shift;
}

static uint64_t h_width(unsigned i)
{
    return i < H_SUB ? 1 : 1ull << ((i - H_SUB) / H_HALF + 1);
}

static inline void h_add(struct hist *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
}

/* Value at percentile p (0..100): middle of the bucket holding the ceil(p% * count)-th
 * sample, clamped to the exact min/max. */
static double h_percentile(const struct hist *h, double p)
{
    if (!h->count)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            double v = (double)h_low(i) + (double)(h_width(i) - 1) / 2.0;
            if (v < (double)h->min) v = (double)h->min;
            if (v > (double)h->max) v = (double)h->max;
            return v;
        }
    }
    return (double)h->max;
}

/* Classes: HIGH/NORMAL x read/write. */
enum { C_NORMAL_READ, C_NORMAL_WRITE, C_HIGH_READ, C_HIGH_WRITE, NCLASS };
static const char *const class_names[NCLASS] = { "normal_read", "normal_write", "high_read", "high_write" };
static struct hist hist[NCLASS];

/* ======================================================================== */
/* Run state                                                                */
/* ======================================================================== */

struct job;

/* One outstanding request with its own buffer. */
struct slot {
    struct job *job;
    struct slot *next;   /* on job->retry list */
    uint64_t t_submit;   /* ns */
    ioeng_req_t req;
};

/* One submitting thread and its share of the slots. */
struct job {
    unsigned id;
    pthread_t thread;
    unsigned nslots;
    struct slot *slots;
    /* Touched by this thread only before its first submit, then only by callbacks
     * (which run one at a time): no locking needed. */
    uint64_t rng;
    uint64_t seq_off;
    /* Slots not in the engine's hands (-EAGAIN fallback) plus slots in flight. */
    atomic_uint outstanding;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct slot *retry;  /* slots whose resubmit from a callback got -EAGAIN */
    /* --batch-submit: completed slots waiting for their group (callbacks only). */
    struct slot **group;
    unsigned ngroup;
    atomic_uint in_engine; /* slots accepted and not yet completed */
    ioeng_req_t *group_reqs;
    void **group_ctxs;
};

static struct {
    ioeng_t *eng;
    int fd;
    uint64_t nblocks;
    uint64_t prio_thresh; /* request is HIGH if xrand() < prio_thresh */
    bool prio_all;
    atomic_bool stop;
    atomic_bool recording;
    atomic_uint_fast64_t errors;
    atomic_int first_error;        /* -errno or short res of the first failed IO */
    atomic_int in_callback;        /* --check-serial */
    atomic_uint_fast64_t overlaps;
    atomic_uint_fast64_t eagain_fallbacks;
    struct job *jobs;
    pthread_barrier_t start;
} g;

/* Scratch-file removal, also from the signal handler. */
static char rm_path[PATH_MAX];
static volatile sig_atomic_t rm_armed;
static volatile sig_atomic_t interrupted;

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
/* The IO loop                                                              */
/* ======================================================================== */

static inline bool is_random(void)
{
    return opt.rw == RW_RANDREAD || opt.rw == RW_RANDWRITE || opt.rw == RW_RANDRW;
}

/* Choose the slot's next request: op, priority, offset. */
static inline void prepare(struct job *j, struct slot *s)
{
    bool read;
    switch (opt.rw) {
    case RW_READ:
    case RW_RANDREAD: read = true; break;
    case RW_WRITE:
    case RW_RANDWRITE: read = false; break;
    default: read = xrand_below(&j->rng, 100) < opt.rwmixread; break;
    }
    uint64_t block;
    if (is_random()) {
        block = xrand_below(&j->rng, g.nblocks);
    } else {
        block = j->seq_off;
        if (++j->seq_off >= g.nblocks)
            j->seq_off = 0;
    }
    bool high = g.prio_all || (g.prio_thresh && xrand(&j->rng) < g.prio_thresh);
    s->req.op = read ? IOENG_OP_READ : IOENG_OP_WRITE;
    s->req.prio = high ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL;
    s->req.offset = block * opt.bs;
    s->req.flags = (opt.fixedbufs ? IOENG_REQ_FIXED_BUF : 0) |
                   (opt.dsync && !read ? IOENG_REQ_DSYNC : 0);
}

static void note_error(int64_t res)
{
    if (atomic_fetch_add(&g.errors, 1) == 0) {
        atomic_store(&g.first_error, (int)(res < INT_MIN ? INT_MIN : res));
    }
    atomic_store(&g.stop, true); /* stop the run; main notices */
}

static void wake_job(struct job *j)
{
    pthread_mutex_lock(&j->lock);
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

/* A slot leaves the loop for good (stopping or failed). */
static void retire(struct job *j)
{
    if (atomic_fetch_sub(&j->outstanding, 1) == 1)
        wake_job(j);
}

static void on_complete(void *ctx, int64_t res);

static inline int issue(struct slot *s, uint64_t now)
{
    s->t_submit = now;
    if (opt.batch_submit)
        atomic_fetch_add_explicit(&s->job->in_engine, 1, memory_order_relaxed);
    int rc = ioeng_submit(g.eng, &s->req, on_complete, s);
    if (rc != 0 && opt.batch_submit)
        atomic_fetch_sub_explicit(&s->job->in_engine, 1, memory_order_relaxed);
    return rc;
}

/* --batch-submit, from a callback: sends the job's waiting group with one
 * ioeng_submit_batch() (--group-submit: one ioeng_submit() per slot, stopping at the
 * first refusal); slots not accepted go to the retry list (-EAGAIN) or fail. */
static void flush_group(struct job *j, uint64_t now)
{
    unsigned n = j->ngroup;
    for (unsigned i = 0; i < n; i++) {
        j->group[i]->t_submit = now;
        j->group_reqs[i] = j->group[i]->req;
        j->group_ctxs[i] = j->group[i];
    }
    j->ngroup = 0;
    atomic_fetch_add_explicit(&j->in_engine, n, memory_order_relaxed);
    int rc;
    if (opt.group_singles) {
        unsigned i = 0;
        rc = 0;
        while (i < n && (rc = ioeng_submit(g.eng, &j->group_reqs[i], on_complete, j->group_ctxs[i])) == 0)
            i++;
        if (i > 0)
            rc = (int)i;
    } else {
        rc = ioeng_submit_batch(g.eng, j->group_reqs, n, on_complete, j->group_ctxs);
    }
    unsigned accepted = rc > 0 ? (unsigned)rc : 0;
    if (accepted == n)
        return;
    atomic_fetch_sub_explicit(&j->in_engine, n - accepted, memory_order_relaxed);
    if (rc < 0 && rc != -EAGAIN) {
        for (unsigned i = accepted; i < n; i++) {
            note_error(rc);
            retire(j);
        }
        return;
    }
    atomic_fetch_add_explicit(&g.eagain_fallbacks, n - accepted, memory_order_relaxed);
    pthread_mutex_lock(&j->lock);
    for (unsigned i = accepted; i < n; i++) {
        struct slot *s = j->group[i];
        s->next = j->retry;
        j->retry = s;
    }
    pthread_cond_broadcast(&j->cond);
    pthread_mutex_unlock(&j->lock);
}

static void on_complete(void *ctx, int64_t res)
{
    uint64_t now = now_ns();
    struct slot *s = ctx;
    struct job *j = s->job;

    if (opt.check_serial && atomic_fetch_add(&g.in_callback, 1) != 0)
        atomic_fetch_add(&g.overlaps, 1);

    if (res != (int64_t)s->req.len) {
        note_error(res);
    } else if (atomic_load_explicit(&g.recording, memory_order_relaxed)) {
        unsigned c = (s->req.prio == IOENG_PRIO_HIGH ? 2 : 0) + (s->req.op == IOENG_OP_WRITE);
        h_add(&hist[c], now - s->t_submit);
    }

    if (opt.batch_submit)
        atomic_fetch_sub_explicit(&j->in_engine, 1, memory_order_relaxed);
    if (opt.batch_submit && !atomic_load_explicit(&g.stop, memory_order_relaxed)) {
        prepare(j, s);
        j->group[j->ngroup++] = s;
        if (j->ngroup >= opt.batch_submit ||
            atomic_load_explicit(&j->in_engine, memory_order_relaxed) == 0)
            flush_group(j, now);
        goto out;
    }
    if (opt.batch_submit) {
        /* Stopping: the slot retires; so do the ones waiting in its group. */
        for (unsigned i = 0; i < j->ngroup; i++)
            retire(j);
        j->ngroup = 0;
    }
    if (!atomic_load_explicit(&g.stop, memory_order_relaxed)) {
        prepare(j, s);
        int rc = issue(s, now);
        if (rc == 0)
            goto out;
        if (rc == -EAGAIN) {
            /* Queue full: hand the slot to its submitting thread. */
            atomic_fetch_add_explicit(&g.eagain_fallbacks, 1, memory_order_relaxed);
            pthread_mutex_lock(&j->lock);
            s->next = j->retry;
            j->retry = s;
            pthread_cond_broadcast(&j->cond);
            pthread_mutex_unlock(&j->lock);
            goto out;
        }
        note_error(rc);
    }
    retire(j);
out:
    if (opt.check_serial)
        atomic_fetch_sub(&g.in_callback, 1);
}

/* Issues `s` from a submitting thread (or, with `park_only`, skips straight to the
 * refusal path). A slot refused with -EAGAIN (queue at capacity) is parked on the job's
 * retry list; any other error is counted and the slot retired. Returns the rc. */
static int issue_or_park(struct job *j, struct slot *s, bool park_only)
{
    int rc = park_only ? -EAGAIN : issue(s, now_ns());
    if (rc == -EAGAIN) {
        pthread_mutex_lock(&j->lock);
        s->next = j->retry;
        j->retry = s;
        pthread_mutex_unlock(&j->lock);
    } else if (rc < 0) {
        note_error(rc);
        retire(j);
    }
    return rc;
}

/* Issues a detached retry list in order. Once one is refused, the queue is still full:
 * the rest are parked for the next round. Returns whether any was refused. */
static bool issue_list(struct job *j, struct slot *list)
{
    bool refused = false;
    while (list) {
        struct slot *s = list;
        list = s->next;
        if (issue_or_park(j, s, refused) == -EAGAIN)
            refused = true;
    }
    return refused;
}

/* POLLED mode: this job's thread is the engine's only driver. It polls (callbacks run
 * here and issue each slot's next request) and re-issues slots refused with -EAGAIN,
 * until the run stops and every slot is back. */
static void poll_loop(struct job *j)
{
    for (;;) {
        pthread_mutex_lock(&j->lock);
        struct slot *list = j->retry;
        j->retry = NULL;
        pthread_mutex_unlock(&j->lock);
        if (atomic_load(&g.stop)) {
            for (; list; list = list->next)
                atomic_fetch_sub(&j->outstanding, 1);
            if (atomic_load(&j->outstanding) == 0)
                return;
        }
        issue_list(j, list);
        int rc = ioeng_poll(g.eng, 1, 10000000);
        if (rc < 0 && rc != -EINTR)
            die("ioeng_poll: %s", strerror(-rc));
    }
}

static void *job_main(void *arg)
{
    struct job *j = arg;

    /* Prepare every slot before the first submit: from then on only callbacks touch
     * the job's PRNG and sequential offset. */
    for (unsigned i = 0; i < j->nslots; i++)
        prepare(j, &j->slots[i]);
    atomic_store(&j->outstanding, j->nslots);
    pthread_barrier_wait(&g.start);

    for (unsigned i = 0; i < j->nslots; i++)
        issue_or_park(j, &j->slots[i], false);

    if (opt.mode == IOENG_MODE_POLLED) {
        poll_loop(j);
        return NULL;
    }

    /* Retry slots refused with -EAGAIN until the run stops, then wait for the rest. */
    pthread_mutex_lock(&j->lock);
    for (;;) {
        if (atomic_load(&g.stop)) {
            unsigned dropped = 0;
            for (struct slot *s = j->retry; s; s = s->next)
                dropped++;
            j->retry = NULL;
            if (dropped)
                atomic_fetch_sub(&j->outstanding, dropped);
            if (atomic_load(&j->outstanding) == 0)
                break;
            pthread_cond_wait(&j->cond, &j->lock);
            continue;
        }
        if (!j->retry) {
            pthread_cond_wait(&j->cond, &j->lock);
            continue;
        }
        struct slot *list = j->retry;
        j->retry = NULL;
        pthread_mutex_unlock(&j->lock);
        if (issue_list(j, list)) {
            /* Let completions drain the queue a little before retrying. */
            struct timespec ts = { 0, 20000 };
            nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&j->lock);
    }
    pthread_mutex_unlock(&j->lock);
    return NULL;
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
    int fd = open(path, flags);
    if (fd < 0) {
        if (errno == EINVAL && opt.direct)
            die("%s: this filesystem does not support O_DIRECT (use --direct 0)", path);
        die("cannot open %s: %s", path, strerror(errno));
    }
    *path_out = path;
    return fd;
}

/* ======================================================================== */
/* Reporting                                                                */
/* ======================================================================== */

static const char *backend_str(ioeng_backend_t b)
{
    return b == IOENG_BACKEND_AIO ? "aio" : b == IOENG_BACKEND_URING ? "uring" : "auto";
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

struct result {
    ioeng_backend_t backend;
    const char *path;
    double elapsed;
    uint64_t ios;
    double iops, mib_s;
    double usr_pct, sys_pct;
    uint64_t submit_calls, completed_delta;
    double ios_per_submit;
    uint64_t resubmits;
};

static const double pcts[] = { 50, 90, 99, 99.9 };
static const char *const pct_keys[] = { "p50", "p90", "p99", "p99.9" };

static void report_json(const struct result *r)
{
    printf("{\"backend\":\"%s\",\"mode\":\"%s\",\"rw\":\"%s\",\"bs\":%" PRIu64 ",\"iodepth\":%u,\"engine_depth\":%u,"
           "\"numjobs\":%u,\"direct\":%d,\"runtime_s\":%.3f,\"iops\":%.1f,\"mib_s\":%.2f,"
           "\"ios\":%" PRIu64 ",\"cpu_usr_pct\":%.2f,\"cpu_sys_pct\":%.2f,\"ios_per_submit\":%.3f,",
           backend_str(r->backend), opt.mode == IOENG_MODE_POLLED ? "polled" : "threads",
           rw_names[opt.rw], opt.bs, opt.iodepth, opt.engine_depth, opt.numjobs, opt.direct, r->elapsed, r->iops, r->mib_s, r->ios, r->usr_pct, r->sys_pct,
           r->ios_per_submit);
    printf("\"kernel_submit_calls\":%" PRIu64 ",\"resubmits\":%" PRIu64 ",\"batch\":%u,"
           "\"size\":%" PRIu64 ",\"rwmixread\":%u,\"prio_mix\":%g,\"ramp_time_s\":%g,"
           "\"errors\":%" PRIu64 ",\"eagain_fallbacks\":%" PRIu64 ",\"interrupted\":%s,"
           "\"version\":\"%s\",\"fixedbufs\":%d,\"dsync\":%d,\"batch_submit\":%u,\"group_singles\":%s,\"filename\":",
           r->submit_calls, r->resubmits, opt.batch, opt.size, opt.rwmixread, opt.prio_mix,
           opt.ramp_time, (uint64_t)atomic_load(&g.errors), (uint64_t)atomic_load(&g.eagain_fallbacks),
           interrupted ? "true" : "false", ioeng_version(), opt.fixedbufs, opt.dsync,
           opt.batch_submit, opt.group_singles ? "true" : "false");
    json_string(r->path);
    printf(",\"lat_us\":{");
    bool first = true;
    for (unsigned c = 0; c < NCLASS; c++) {
        const struct hist *h = &hist[c];
        if (!h->count)
            continue;
        printf("%s\"%s\":{\"min\":%.3f,\"avg\":%.3f", first ? "" : ",", class_names[c],
               (double)h->min / 1e3, (double)h->sum / (double)h->count / 1e3);
        for (unsigned k = 0; k < sizeof pcts / sizeof pcts[0]; k++)
            printf(",\"%s\":%.3f", pct_keys[k], h_percentile(h, pcts[k]) / 1e3);
        printf(",\"max\":%.3f,\"count\":%" PRIu64 "}", (double)h->max / 1e3, h->count);
        first = false;
    }
    printf("}}\n");
}

static void report_normal(const struct result *r)
{
    printf("ioeng_bench (libioeng %s): backend=%s mode=%s rw=%s bs=%" PRIu64 " iodepth=%u engine_depth=%u "
           "numjobs=%u direct=%d\n",
           ioeng_version(), backend_str(r->backend), opt.mode == IOENG_MODE_POLLED ? "polled" : "threads",
           rw_names[opt.rw], opt.bs, opt.iodepth,
           opt.engine_depth, opt.numjobs, opt.direct);
    printf("  file=%s size=%.1fMiB", r->path, (double)opt.size / 1048576.0);
    if (opt.rw == RW_RANDRW || opt.rw == RW_RW) printf(" rwmixread=%u", opt.rwmixread);
    if (opt.prio_mix > 0) printf(" prio-mix=%g", opt.prio_mix);
    if (opt.ramp_time > 0) printf(" ramp_time=%gs", opt.ramp_time);
    if (opt.fixedbufs) printf(" fixedbufs=1");
    if (opt.dsync) printf(" dsync=1");
    if (opt.batch_submit) printf(" %s=%u", opt.group_singles ? "group-submit" : "batch-submit", opt.batch_submit);
    printf("%s\n", interrupted ? "  (interrupted)" : "");
    printf("  IOPS=%.1f, BW=%.1fMiB/s, ios=%" PRIu64 " in %.2fs\n", r->iops, r->mib_s, r->ios, r->elapsed);
    printf("  cpu: usr=%.1f%%, sys=%.1f%% of wall time (100%% = one CPU)\n", r->usr_pct, r->sys_pct);
    printf("  kernel submit calls=%" PRIu64 ", IOs per submit=%.2f, resubmits=%" PRIu64, r->submit_calls,
           r->ios_per_submit, r->resubmits);
    if (atomic_load(&g.eagain_fallbacks))
        printf(", -EAGAIN fallbacks=%" PRIu64, (uint64_t)atomic_load(&g.eagain_fallbacks));
    printf("\n  completion latency (usec, submit -> callback):\n");
    printf("    %-13s %10s %9s %9s %9s %9s %9s %9s %9s\n", "class", "count", "min", "avg", "p50", "p90",
           "p99", "p99.9", "max");
    for (unsigned c = 0; c < NCLASS; c++) {
        const struct hist *h = &hist[c];
        if (!h->count)
            continue;
        printf("    %-13s %10" PRIu64 " %9.2f %9.2f", class_names[c], h->count, (double)h->min / 1e3,
               (double)h->sum / (double)h->count / 1e3);
        for (unsigned k = 0; k < sizeof pcts / sizeof pcts[0]; k++)
            printf(" %9.2f", h_percentile(h, pcts[k]) / 1e3);
        printf(" %9.2f\n", (double)h->max / 1e3);
    }
}

/* ======================================================================== */
/* main                                                                     */
/* ======================================================================== */

static void sleep_until(uint64_t deadline_ns)
{
    uint64_t now = now_ns();
    if (now >= deadline_ns)
        return;
    uint64_t d = deadline_ns - now;
    struct timespec ts = { (time_t)(d / 1000000000ull), (long)(d % 1000000000ull) };
    nanosleep(&ts, NULL); /* EINTR on SIGINT: the caller re-checks */
}

static void progress(bool tty, const char *phase, double t, double total, const ioeng_stats_t *a,
                     const ioeng_stats_t *b, double dt)
{
    if (!tty)
        return;
    double iops = dt > 0 ? (double)(b->completed - a->completed) / dt : 0;
    fprintf(stderr, "\r[%s %s] %-4s %5.1f/%.1fs  IOPS %9.0f  %8.1f MiB/s  in_flight %4" PRIu64
            "  queued %5" PRIu64 "\033[K",
            prog, backend_str(ioeng_backend(g.eng)), phase, t, total, iops,
            iops * (double)opt.bs / 1048576.0, b->in_flight, b->queued_high + b->queued_read + b->queued_write);
    fflush(stderr);
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

int main(int argc, char **argv)
{
    parse_args(argc, argv);
    atexit(remove_scratch);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal; /* no SA_RESTART: sleeps return EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

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

    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = opt.backend;
    cfg.depth = opt.engine_depth;
    cfg.batch = opt.batch;
    cfg.queue_capacity = opt.queue_capacity;
    cfg.mode = opt.mode;
    cfg.idle_poll_us = opt.idle_poll_us;
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

    /* Jobs and slots: iodepth split as evenly as possible over numjobs. */
    g.jobs = calloc(opt.numjobs, sizeof *g.jobs);
    struct slot *slots = calloc(opt.iodepth, sizeof *slots);
    if (!g.jobs || !slots)
        die("out of memory");
    pthread_barrier_init(&g.start, NULL, opt.numjobs + 1);
    uint64_t seed = opt.seed;
    unsigned next_slot = 0;
    for (unsigned i = 0; i < opt.numjobs; i++) {
        struct job *j = &g.jobs[i];
        j->id = i;
        j->nslots = opt.iodepth / opt.numjobs + (i < opt.iodepth % opt.numjobs);
        j->slots = &slots[next_slot];
        next_slot += j->nslots;
        j->rng = splitmix64(&seed) | 1;
        j->seq_off = g.nblocks * i / opt.numjobs;
        pthread_mutex_init(&j->lock, NULL);
        pthread_cond_init(&j->cond, NULL);
        for (unsigned k = 0; k < j->nslots; k++) {
            struct slot *s = &j->slots[k];
            void *buf;
            if (posix_memalign(&buf, ALIGN, opt.bs))
                die("out of memory for %u buffers of %" PRIu64 " bytes", opt.iodepth, opt.bs);
            /* Write data: something other than zeros. */
            for (uint64_t b = 0; b + 8 <= opt.bs; b += 8) {
                uint64_t v = splitmix64(&seed);
                memcpy((char *)buf + b, &v, 8);
            }
            s->job = j;
            s->req.fd = g.fd;
            s->req.buf = buf;
            s->req.len = opt.bs;
            s->req.buf_index = (uint32_t)(s - slots);
        }
        if (opt.batch_submit) {
            j->group = calloc(j->nslots, sizeof *j->group);
            j->group_reqs = calloc(j->nslots, sizeof *j->group_reqs);
            j->group_ctxs = calloc(j->nslots, sizeof *j->group_ctxs);
            if (!j->group || !j->group_reqs || !j->group_ctxs)
                die("out of memory");
        }
    }
    if (opt.fixedbufs) {
        struct iovec *iov = calloc(opt.iodepth, sizeof *iov);
        if (!iov)
            die("out of memory");
        for (unsigned i = 0; i < opt.iodepth; i++)
            iov[i] = (struct iovec){ slots[i].req.buf, opt.bs };
        rc = ioeng_register_buffers(g.eng, iov, opt.iodepth);
        if (rc < 0)
            die("ioeng_register_buffers(%u x %" PRIu64 " bytes): %s", opt.iodepth, opt.bs,
                strerror(-rc));
        free(iov);
    }
    for (unsigned i = 0; i < opt.numjobs; i++) {
        rc = pthread_create(&g.jobs[i].thread, NULL, job_main, &g.jobs[i]);
        if (rc)
            die("pthread_create: %s", strerror(rc));
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    bool tty = isatty(STDERR_FILENO);
    ioeng_stats_t st0, st1, prev;
    struct rusage ru0, ru1;

    pthread_barrier_wait(&g.start);
    uint64_t t_begin = now_ns();
    ioeng_stats(g.eng, &prev);

    /* Ramp: run unmeasured. */
    run_phase(tty, "ramp", t_begin, opt.ramp_time, &prev);

    /* Measured phase. */
    getrusage(RUSAGE_SELF, &ru0);
    ioeng_stats(g.eng, &st0);
    uint64_t t0 = now_ns();
    atomic_store(&g.recording, true);
    prev = st0;
    run_phase(tty, "run", t0, opt.runtime, &prev);
    atomic_store(&g.recording, false);
    uint64_t t1 = now_ns();
    ioeng_stats(g.eng, &st1);
    getrusage(RUSAGE_SELF, &ru1);
    if (tty)
        fprintf(stderr, "\r\033[K");

    /* Stop issuing, wait for everything outstanding, close. */
    atomic_store(&g.stop, true);
    for (unsigned i = 0; i < opt.numjobs; i++)
        wake_job(&g.jobs[i]);
    for (unsigned i = 0; i < opt.numjobs; i++)
        pthread_join(g.jobs[i].thread, NULL);
    rc = ioeng_close(g.eng);
    if (rc < 0)
        fprintf(stderr, "%s: ioeng_close: %s\n", prog, strerror(-rc));
    close(g.fd);

    struct result r = { .backend = backend, .path = path };
    r.elapsed = (double)(t1 - t0) / 1e9;
    for (unsigned c = 0; c < NCLASS; c++)
        r.ios += hist[c].count;
    r.iops = r.elapsed > 0 ? (double)r.ios / r.elapsed : 0;
    r.mib_s = r.iops * (double)opt.bs / 1048576.0;
    r.usr_pct = r.elapsed > 0 ? 100.0 * (tv_sec(ru1.ru_utime) - tv_sec(ru0.ru_utime)) / r.elapsed : 0;
    r.sys_pct = r.elapsed > 0 ? 100.0 * (tv_sec(ru1.ru_stime) - tv_sec(ru0.ru_stime)) / r.elapsed : 0;
    r.submit_calls = st1.kernel_submit_calls - st0.kernel_submit_calls;
    r.completed_delta = st1.completed - st0.completed;
    r.ios_per_submit = r.submit_calls ? (double)r.completed_delta / (double)r.submit_calls : 0;
    r.resubmits = st1.resubmits - st0.resubmits;

    if (opt.json) report_json(&r);
    else report_normal(&r);
    fflush(stdout);

    int status = 0;
    uint64_t nerr = atomic_load(&g.errors);
    if (nerr) {
        int e = atomic_load(&g.first_error);
        if (e < 0)
            fprintf(stderr, "%s: %" PRIu64 " failed IOs/submits; first: %s%s\n", prog, nerr, strerror(-e),
                    e == -EINVAL && opt.direct
                        ? " (O_DIRECT needs bs and offsets aligned to the device's logical block size)"
                        : "");
        else
            fprintf(stderr, "%s: %" PRIu64 " failed IOs; first: short transfer of %d of %" PRIu64 " bytes\n",
                    prog, nerr, e, opt.bs);
        status = 1;
    }
    if (atomic_load(&g.overlaps)) {
        fprintf(stderr, "%s: LIBRARY BUG: %" PRIu64 " callbacks overlapped another callback\n", prog,
                (uint64_t)atomic_load(&g.overlaps));
        status = 1;
    }

    for (unsigned i = 0; i < opt.iodepth; i++)
        free(slots[i].req.buf);
    free(slots);
    for (unsigned i = 0; i < opt.numjobs; i++) {
        free(g.jobs[i].group);
        free(g.jobs[i].group_reqs);
        free(g.jobs[i].group_ctxs);
    }
    free(g.jobs);
    if (interrupted)
        status = status ? status : 128 + interrupted;
    return status;
}
