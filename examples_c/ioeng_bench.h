/*
 * ioeng_bench.h - types and state shared by the ioeng_bench files:
 *   ioeng_bench.c          main: signals, the scratch file, the engine, the timed phases
 *   ioeng_bench_opts.c     options: parsing, checks, --help
 *   ioeng_bench_job.c      the job loops (THREADS and POLLED) and the IO issue logic
 *   ioeng_bench_report.c   latency percentiles, normal and JSON output, the exit status
 *
 * The hot-path helpers (clock, PRNG, histogram insert) are static inline here so that
 * the completion callback in ioeng_bench_job.c pays no call across files for them.
 */
#ifndef IOENG_BENCH_H
#define IOENG_BENCH_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#include "ioeng.h"

#define ALIGN 4096u
#define MAX_IODEPTH (1u << 20)
#define MAX_NUMJOBS 1024u
#define FILL_CHUNK (1u << 20)

/* ======================================================================== */
/* Options (ioeng_bench_opts.c)                                             */
/* ======================================================================== */

enum rw_mode { RW_READ, RW_WRITE, RW_RANDREAD, RW_RANDWRITE, RW_RANDRW, RW_RW };
extern const char *const rw_names[6];

/* --job-class: one job thread in its own IO class (ioeng_class_open). */
#define MAX_JOB_CLASSES 63u
struct job_class {
    ioeng_class_config_t cfg; /* weight, kernel_ioprio, iops_limit, bytes_per_sec_limit */
    enum rw_mode rw;          /* default: --rw */
    uint64_t bs;              /* 0: --bs */
    unsigned qd;              /* requests outstanding; 0: --iodepth split evenly */
};

struct bench_opts {
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
    bool noatime;           /* open with O_NOATIME (as fio's t/io_uring does) */
    int latency;            /* time every IO (1, default) or none (0, as t/io_uring) */
    unsigned poll_min;      /* POLLED: ioeng_poll's min_complete (default 1) */
    unsigned numjobs;
    double prio_mix;
    const char *filename;
    bool json;
    bool check_serial;
    uint64_t seed;
    bool fixedbufs;         /* register the slot buffers, IOENG_REQ_FIXED_BUF */
    bool fixedfiles;        /* register the file, IOENG_REQ_FIXED_FILE (fd = index 0) */
    bool dsync;             /* IOENG_REQ_DSYNC on writes */
    bool single_poller;     /* POLLED: IOENG_CONFIG_SINGLE_POLLER; the job thread closes */
    unsigned batch_submit;  /* 0: one ioeng_submit per IO; N: reissue in groups of N */
    bool group_singles;     /* with batch_submit: a group goes out as N ioeng_submit calls */
    ioeng_mode_t mode;
    uint32_t idle_poll_us;
    uint32_t latency_stats; /* ioeng_config_t.latency_stats (IO class histograms) */
    uint32_t normal_min_percent; /* ioeng_config_t.normal_min_percent (starvation guard) */
    struct job_class job_classes[MAX_JOB_CLASSES];
    unsigned njob_classes;  /* 0: every job in class 0 with the global options */
};

extern struct bench_opts opt;
extern const char *prog;

_Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void parse_args(int argc, char **argv);

/* ======================================================================== */
/* Time, PRNG                                                               */
/* ======================================================================== */

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t splitmix64(uint64_t *x)
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
/* Latency histogram: log-linear, HDR style (read out in ioeng_bench_report.c) */
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

static inline void h_add(struct hist *h, uint64_t v)
{
    h->b[h_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min) h->min = v;
    if (v > h->max) h->max = v;
}

/* Classes: HIGH/NORMAL x read/write. */
enum { C_NORMAL_READ, C_NORMAL_WRITE, C_HIGH_READ, C_HIGH_WRITE, NCLASS };
extern struct hist hist[NCLASS];

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
    /* What it issues: the global options, or its --job-class. */
    enum rw_mode rw;
    uint64_t bs, nblocks;
    uint16_t class_id;
    /* Measured phase, by callbacks (one at a time): completions, bytes, latency. */
    uint64_t ios, bytes;
    struct hist lat;
    ioeng_class_stats_t cstats; /* its class over the measured phase (--job-class) */
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

struct bench_state {
    ioeng_t *eng;
    int close_rc;           /* --single-poller: the job thread's ioeng_close() result */
    int fd;
    uint64_t nblocks;
    uint64_t prio_thresh; /* request is HIGH if xrand() < prio_thresh */
    bool prio_all;
    atomic_bool stop;
    atomic_uint first_submits_done; /* POLLED: job threads past their first submits (job 0
                                       closes the engine only when all are: a thread still
                                       inside ioeng_submit must not see it freed) */
    atomic_bool recording;
    atomic_uint_fast64_t errors;
    atomic_int first_error;        /* -errno or short res of the first failed IO */
    atomic_int in_callback;        /* --check-serial */
    atomic_uint_fast64_t overlaps;
    atomic_uint_fast64_t eagain_fallbacks;
    struct job *jobs;
    struct slot *slots;            /* all opt.iodepth slots; jobs point into it */
    pthread_barrier_t start;
};

extern struct bench_state g;

/* SIGINT/SIGTERM seen (ioeng_bench.c's handler sets it). */
extern volatile sig_atomic_t interrupted;

/* ioeng_bench_job.c */
void setup_jobs(void);
void start_jobs(void);
void stop_jobs(void);
void free_jobs(void);

/* ioeng_bench_report.c */
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

/* The clock, the engine's counters and the CPU use at one moment of the run. */
struct sample {
    uint64_t t;
    ioeng_stats_t st;
    struct rusage ru;
};

const char *backend_str(ioeng_backend_t b);
void make_result(struct result *r, const struct sample *a, const struct sample *b);
void progress(bool tty, const char *phase, double t, double total, const ioeng_stats_t *a,
              const ioeng_stats_t *b, double dt);
void report(const struct result *r);
int error_status(void);

#endif /* IOENG_BENCH_H */
