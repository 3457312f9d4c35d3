/*
 * ioeng_bench_opts.c - ioeng_bench's options: --help, value parsing and the checks
 * across options (see ioeng_bench.h for the other files).
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ioeng_bench.h"

const char *const rw_names[6] = { "read", "write", "randread", "randwrite", "randrw", "rw" };

struct bench_opts opt = {
    .backend = IOENG_BACKEND_AUTO,
    .rw = RW_RANDREAD,
    .rwmixread = 50,
    .bs = 4096,
    .iodepth = 32,
    .size = 1ull << 30,
    .runtime = 10.0,
    .direct = 1,
    .latency = 1,
    .poll_min = 1,
    .numjobs = 1,
    .seed = 0x10e9b3c4d5e6f708ull,
};

const char *prog = "ioeng_bench";

static void usage(FILE *f)
{
    fprintf(f,
"usage: %s [options]\n"
"fio-like closed-loop benchmark of libioeng.\n"
"\n"
"  --backend aio|uring|auto   engine backend (default auto)\n"
"  --mode threads|polled      engine mode (default threads); polled: the first job's\n"
"                             thread drives the engine with ioeng_poll() for every job\n"
"                             (the others only submit their first requests)\n"
"  --idle-poll-us N|never     THREADS: idle_poll_us, how long idle engine threads poll\n"
"                             (default: the engine's policy)\n"
"  --latency-stats 0|1|2      ioeng_config_t.latency_stats: per-class latency histograms\n"
"                             (0 = the engine's default, 1 = on, 2 = off)\n"
"  --job-class SPEC           one job thread in its own IO class (repeat: one per job;\n"
"                             sets --numjobs). SPEC = WEIGHT[,iops=N][,bps=N][,ioprio=N]\n"
"                             [,rw=MODE][,bs=SIZE][,qd=N]: ioeng_class_config_t fields, and\n"
"                             the job's own rw, bs and queue depth (qd on all or none; their\n"
"                             sum is the iodepth). Reports per-job IOPS, bandwidth and\n"
"                             latency next to ioeng_class_stats()\n"
"  --normal-min-percent N     ioeng_config_t.normal_min_percent, 0..50: NORMAL's share of\n"
"                             the dispatches while HIGH requests also wait (--prio-mix)\n"
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
"  --noatime                  open the file with O_NOATIME (no access-time check per read,\n"
"                             as fio's t/io_uring opens its files); falls back without it\n"
"                             when the kernel refuses (EPERM: not the file's owner)\n"
"  --latency 0|1              1 (default): time every IO (one clock read per completion);\n"
"                             0: time none, as t/io_uring by default (no lat_us in the report)\n"
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
"  --fixedfiles[=0|1]         register the file (ioeng_register_files) and send\n"
"                             IOENG_REQ_FIXED_FILE requests by its index (io_uring: no\n"
"                             file lookup per IO, as t/io_uring -F1)\n"
"  --dsync[=0|1]              writes carry IOENG_REQ_DSYNC (durable at completion)\n"
"  --poll-min N               POLLED: ioeng_poll's min_complete, 1..iodepth (default 1):\n"
"                             callbacks run per poll call (t/io_uring -c N reaps N)\n"
"  --single-poller            POLLED: promise IOENG_CONFIG_SINGLE_POLLER (the job thread\n"
"                             polls and closes the engine)\n"
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
_Noreturn void die(const char *fmt, ...)
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
    OPT_RUNTIME, OPT_RAMP, OPT_DIRECT, OPT_NUMJOBS, OPT_PRIOMIX, OPT_FILENAME, OPT_OUTFMT, OPT_SEED, OPT_CHECK, OPT_NOATIME, OPT_LATENCY, OPT_POLLMIN,
    OPT_FIXEDBUFS, OPT_FIXEDFILES, OPT_DSYNC, OPT_SINGLEPOLLER, OPT_BATCHSUB, OPT_GROUPSUB,
    OPT_MODE, OPT_IDLEPOLL, OPT_LATSTATS, OPT_JOBCLASS, OPT_NORMALMIN,
};

static const struct option long_opts[] = {
    { "backend", required_argument, 0, OPT_BACKEND },
    { "mode", required_argument, 0, OPT_MODE },
    { "idle-poll-us", required_argument, 0, OPT_IDLEPOLL },
    { "latency-stats", required_argument, 0, OPT_LATSTATS },
    { "job-class", required_argument, 0, OPT_JOBCLASS },
    { "normal-min-percent", required_argument, 0, OPT_NORMALMIN },
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
    { "noatime", no_argument, 0, OPT_NOATIME },
    { "latency", required_argument, 0, OPT_LATENCY },
    { "poll-min", required_argument, 0, OPT_POLLMIN },
    { "fixedbufs", optional_argument, 0, OPT_FIXEDBUFS },
    { "fixedfiles", optional_argument, 0, OPT_FIXEDFILES },
    { "dsync", optional_argument, 0, OPT_DSYNC },
    { "single-poller", no_argument, 0, OPT_SINGLEPOLLER },
    { "batch-submit", required_argument, 0, OPT_BATCHSUB },
    { "batch_submit", required_argument, 0, OPT_BATCHSUB },
    { "group-submit", required_argument, 0, OPT_GROUPSUB },
    { "group_submit", required_argument, 0, OPT_GROUPSUB },
    { "help", no_argument, 0, 'h' },
    { 0, 0, 0, 0 },
};

/* --engine-depth was given: otherwise it follows --iodepth (check_args). */
static bool engine_depth_given;

static ioeng_mode_t parse_mode(const char *arg)
{
    if (!strcmp(arg, "threads")) return IOENG_MODE_THREADS;
    if (!strcmp(arg, "polled")) return IOENG_MODE_POLLED;
    die("--mode: expected threads or polled, got '%s'", arg);
}

static ioeng_backend_t parse_backend(const char *arg)
{
    if (!strcmp(arg, "aio")) return IOENG_BACKEND_AIO;
    if (!strcmp(arg, "uring") || !strcmp(arg, "io_uring")) return IOENG_BACKEND_URING;
    if (!strcmp(arg, "auto")) return IOENG_BACKEND_AUTO;
    die("--backend: expected aio, uring or auto, got '%s'", arg);
}

static enum rw_mode parse_rw(const char *arg)
{
    for (unsigned i = 0; i < sizeof rw_names / sizeof rw_names[0]; i++) {
        if (!strcmp(arg, rw_names[i]))
            return (enum rw_mode)i;
    }
    if (!strcmp(arg, "readwrite"))
        return RW_RW;
    die("--rw: expected read, write, randread, randwrite, randrw or rw, got '%s'", arg);
}

static bool parse_json(const char *arg)
{
    if (!strcmp(arg, "json")) return true;
    if (!strcmp(arg, "normal")) return false;
    die("--output-format: expected normal or json, got '%s'", arg);
}

static double parse_prio_mix(const char *arg)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (end == arg || *end || errno || !(v >= 0 && v <= 1))
        die("--prio-mix: expected a fraction between 0 and 1, got '%s'", arg);
    return v;
}

static uint64_t parse_seed(const char *arg)
{
    char *end;
    errno = 0;
    uint64_t v = strtoull(arg, &end, 0);
    if (end == arg || *end || errno) die("--seed: expected an integer, got '%s'", arg);
    return v;
}

/* --job-class WEIGHT[,iops=N][,bps=N][,ioprio=N][,rw=MODE][,bs=SIZE][,qd=N] */
static void parse_job_class(const char *arg)
{
    if (opt.njob_classes == MAX_JOB_CLASSES)
        die("--job-class: at most %u (one IO class each)", MAX_JOB_CLASSES);
    struct job_class *jc = &opt.job_classes[opt.njob_classes++];
    memset(jc, 0, sizeof *jc);
    ioeng_class_config_init(&jc->cfg);
    jc->rw = (enum rw_mode)-1; /* --rw, filled in by check_args */
    char copy[256];
    if (strlen(arg) >= sizeof copy)
        die("--job-class: too long: '%s'", arg);
    strcpy(copy, arg);
    char *save = NULL;
    char *tok = strtok_r(copy, ",", &save);
    if (!tok)
        die("--job-class: expected WEIGHT[,key=value...], got '%s'", arg);
    jc->cfg.weight = parse_uint("--job-class weight", tok, 1, 10000);
    while ((tok = strtok_r(NULL, ",", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq)
            die("--job-class: expected key=value, got '%s'", tok);
        *eq = 0;
        const char *k = tok, *v = eq + 1;
        if (!strcmp(k, "iops")) {
            if (!parse_size(v, &jc->cfg.iops_limit)) die("--job-class iops: bad value '%s'", v);
        } else if (!strcmp(k, "bps")) {
            if (!parse_size(v, &jc->cfg.bytes_per_sec_limit)) die("--job-class bps: bad value '%s'", v);
        } else if (!strcmp(k, "ioprio")) {
            jc->cfg.kernel_ioprio = (int32_t)parse_uint("--job-class ioprio", v, 0, 0xffff);
        } else if (!strcmp(k, "rw")) {
            jc->rw = parse_rw(v);
        } else if (!strcmp(k, "bs")) {
            if (!parse_size(v, &jc->bs) || jc->bs == 0 || jc->bs > (1ull << 30))
                die("--job-class bs: expected a size up to 1g, got '%s'", v);
        } else if (!strcmp(k, "qd")) {
            jc->qd = parse_uint("--job-class qd", v, 1, MAX_IODEPTH);
        } else {
            die("--job-class: unknown key '%s' (iops, bps, ioprio, rw, bs, qd)", k);
        }
    }
}

/* One option `c` (getopt_long's value) with its argument; exits on a bad value. */
static void parse_opt(int c, const char *arg, char **argv)
{
    switch (c) {
    case OPT_MODE: opt.mode = parse_mode(arg); break;
    case OPT_IDLEPOLL:
        opt.idle_poll_us = !strcmp(arg, "never") ? IOENG_IDLE_POLL_NEVER
                                                  : parse_uint("--idle-poll-us", arg, 0, UINT32_MAX - 1);
        break;
    case OPT_LATSTATS: opt.latency_stats = parse_uint("--latency-stats", arg, 0, 2); break;
    case OPT_JOBCLASS: parse_job_class(arg); break;
    case OPT_NORMALMIN: opt.normal_min_percent = parse_uint("--normal-min-percent", arg, 0, 50); break;
    case OPT_BACKEND: opt.backend = parse_backend(arg); break;
    case OPT_RW: opt.rw = parse_rw(arg); break;
    case OPT_RWMIX: opt.rwmixread = parse_uint("--rwmixread", arg, 0, 100); break;
    case OPT_BS:
        if (!parse_size(arg, &opt.bs) || opt.bs > (1ull << 30))
            die("--bs: expected a size between 1 and 1g (e.g. 4k, 1m), got '%s'", arg);
        break;
    case OPT_IODEPTH: opt.iodepth = parse_uint("--iodepth", arg, 1, MAX_IODEPTH); break;
    case OPT_ENGDEPTH:
        opt.engine_depth = parse_uint("--engine-depth", arg, 1, IOENG_MAX_DEPTH);
        engine_depth_given = true;
        break;
    case OPT_BATCH: opt.batch = parse_uint("--batch", arg, 0, IOENG_MAX_DEPTH); break;
    case OPT_QCAP: opt.queue_capacity = parse_uint("--queue-capacity", arg, 0, UINT32_MAX); break;
    case OPT_SIZE:
        if (!parse_size(arg, &opt.size))
            die("--size: expected a size such as 256m or 1g, got '%s'", arg);
        opt.size_given = true;
        break;
    case OPT_RUNTIME:
        if (!parse_time(arg, &opt.runtime) || opt.runtime <= 0 || opt.runtime > 1e7)
            die("--runtime: expected a positive time such as 10, 0.5, 3s or 500ms, got '%s'", arg);
        break;
    case OPT_RAMP:
        if (!parse_time(arg, &opt.ramp_time) || opt.ramp_time > 1e7)
            die("--ramp_time: expected a time such as 2 or 500ms, got '%s'", arg);
        break;
    case OPT_DIRECT: opt.direct = (int)parse_uint("--direct", arg, 0, 1); break;
    case OPT_NUMJOBS: opt.numjobs = parse_uint("--numjobs", arg, 1, MAX_NUMJOBS); break;
    case OPT_PRIOMIX: opt.prio_mix = parse_prio_mix(arg); break;
    case OPT_FILENAME:
        if (!*arg) die("--filename: empty path");
        opt.filename = arg;
        break;
    case OPT_OUTFMT: opt.json = parse_json(arg); break;
    case OPT_SEED: opt.seed = parse_seed(arg); break;
    case OPT_CHECK: opt.check_serial = true; break;
    case OPT_NOATIME: opt.noatime = true; break;
    case OPT_POLLMIN: opt.poll_min = (unsigned)parse_uint("--poll-min", arg, 1, IOENG_MAX_DEPTH); break;
    case OPT_LATENCY: opt.latency = (int)parse_uint("--latency", arg, 0, 1); break;
    case OPT_FIXEDBUFS: opt.fixedbufs = !arg || parse_uint("--fixedbufs", arg, 0, 1); break;
    case OPT_FIXEDFILES: opt.fixedfiles = !arg || parse_uint("--fixedfiles", arg, 0, 1); break;
    case OPT_DSYNC: opt.dsync = !arg || parse_uint("--dsync", arg, 0, 1); break;
    case OPT_SINGLEPOLLER: opt.single_poller = true; break;
    case OPT_BATCHSUB:
        opt.batch_submit = parse_uint("--batch-submit", arg, 1, MAX_IODEPTH);
        opt.group_singles = false;
        break;
    case OPT_GROUPSUB:
        opt.batch_submit = parse_uint("--group-submit", arg, 1, MAX_IODEPTH);
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

/* Rules across options, once all are known; fills in the default engine depth. */
static void check_args(void)
{
    if (opt.njob_classes) {
        /* One job per class; their qd= sum to the iodepth when every one has it. */
        unsigned with_qd = 0, sum = 0;
        opt.numjobs = opt.njob_classes;
        for (unsigned i = 0; i < opt.njob_classes; i++) {
            struct job_class *jc = &opt.job_classes[i];
            if ((int)jc->rw < 0)
                jc->rw = opt.rw;
            uint64_t bs = jc->bs ? jc->bs : opt.bs;
            if (opt.size < bs || (opt.direct && bs % 512))
                die("--job-class %u: bs %" PRIu64 " must be at most --size and, with O_DIRECT, a "
                    "multiple of 512", i, bs);
            if (jc->qd) {
                with_qd++;
                sum += jc->qd;
            }
        }
        if (with_qd && with_qd != opt.njob_classes)
            die("--job-class: give qd= to every job or to none");
        if (with_qd)
            opt.iodepth = sum;
    }
    if (opt.poll_min != 1 && opt.mode != IOENG_MODE_POLLED)
        die("--poll-min is ioeng_poll's min_complete: it needs --mode polled");
    if (opt.poll_min > opt.iodepth)
        die("--poll-min (%u) must not exceed --iodepth (%u): a poll would wait for more callbacks "
            "than there are requests", opt.poll_min, opt.iodepth);
    if (!opt.latency && opt.njob_classes)
        die("--latency 0 and --job-class: the per-job table reports latency; drop one");
    if (opt.numjobs > opt.iodepth)
        die("--numjobs (%u) must not exceed --iodepth (%u): each job keeps at least one request outstanding",
            opt.numjobs, opt.iodepth);
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

void parse_args(int argc, char **argv)
{
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", long_opts, NULL)) != -1)
        parse_opt(c, optarg, argv);
    if (optind < argc)
        die("unexpected argument '%s' (see --help)", argv[optind]);
    check_args();
}
