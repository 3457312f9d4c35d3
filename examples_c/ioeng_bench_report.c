/*
 * ioeng_bench_report.c - what ioeng_bench prints: the progress line, the result in
 * normal or JSON form with latency percentiles from the histograms, and the failure
 * summary that sets the exit status. See ioeng_bench.h for the other files.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "ioeng_bench.h"

static const char *const class_names[NCLASS] = { "normal_read", "normal_write", "high_read", "high_write" };

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
const char *backend_str(ioeng_backend_t b)
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
           "\"version\":\"%s\",\"noatime\":%s,\"latency\":%d,\"fixedbufs\":%d,\"fixedfiles\":%d,\"dsync\":%d,\"batch_submit\":%u,\"group_singles\":%s,\"filename\":",
           r->submit_calls, r->resubmits, opt.batch, opt.size, opt.rwmixread, opt.prio_mix,
           opt.ramp_time, (uint64_t)atomic_load(&g.errors), (uint64_t)atomic_load(&g.eagain_fallbacks),
           interrupted ? "true" : "false", ioeng_version(), opt.noatime ? "true" : "false", opt.latency, opt.fixedbufs, opt.fixedfiles, opt.dsync,
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
    printf("}");
    if (opt.njob_classes) {
        printf(",\"job_classes\":[");
        for (unsigned i = 0; i < opt.njob_classes; i++) {
            const struct job *j = &g.jobs[i];
            const ioeng_class_stats_t *cs = &j->cstats;
            const ioeng_class_config_t *cfg = &opt.job_classes[i].cfg;
            printf("%s{\"job\":%u,\"class_id\":%u,\"weight\":%u,\"iops_limit\":%" PRIu64
                   ",\"bytes_per_sec_limit\":%" PRIu64 ",\"kernel_ioprio\":%d,\"rw\":\"%s\",\"bs\":%" PRIu64
                   ",\"qd\":%u,\"ios\":%" PRIu64 ",\"iops\":%.1f,\"mib_s\":%.2f",
                   i ? "," : "", i, j->class_id, cfg->weight, cfg->iops_limit, cfg->bytes_per_sec_limit,
                   cfg->kernel_ioprio, rw_names[j->rw], j->bs, j->nslots, j->ios,
                   r->elapsed > 0 ? (double)j->ios / r->elapsed : 0,
                   r->elapsed > 0 ? (double)j->bytes / r->elapsed / 1048576.0 : 0);
            printf(",\"lat_us\":{");
            for (unsigned k = 0; k < sizeof pcts / sizeof pcts[0]; k++)
                printf("%s\"%s\":%.3f", k ? "," : "", pct_keys[k], h_percentile(&j->lat, pcts[k]) / 1e3);
            printf("},\"class_stats\":{\"reads\":%" PRIu64 ",\"writes\":%" PRIu64
                   ",\"throttled_ms\":%.3f,\"p50_us\":%.3f,\"p90_us\":%.3f,\"p99_us\":%.3f,\"p99.9_us\":%.3f,"
                   "\"max_us\":%.3f}}",
                   cs->reads, cs->writes, (double)cs->throttled_ns / 1e6, (double)cs->p50_ns / 1e3,
                   (double)cs->p90_ns / 1e3, (double)cs->p99_ns / 1e3, (double)cs->p999_ns / 1e3,
                   (double)cs->max_ns / 1e3);
        }
        printf("]");
    }
    printf("}\n");
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
    if (opt.fixedfiles) printf(" fixedfiles=1");
    if (opt.dsync) printf(" dsync=1");
    if (opt.batch_submit) printf(" %s=%u", opt.group_singles ? "group-submit" : "batch-submit", opt.batch_submit);
    printf("%s\n", interrupted ? "  (interrupted)" : "");
    printf("  IOPS=%.1f, BW=%.1fMiB/s, ios=%" PRIu64 " in %.2fs\n", r->iops, r->mib_s, r->ios, r->elapsed);
    printf("  cpu: usr=%.1f%%, sys=%.1f%% of wall time (100%% = one CPU)\n", r->usr_pct, r->sys_pct);
    printf("  kernel submit calls=%" PRIu64 ", IOs per submit=%.2f, resubmits=%" PRIu64, r->submit_calls,
           r->ios_per_submit, r->resubmits);
    if (atomic_load(&g.eagain_fallbacks))
        printf(", -EAGAIN fallbacks=%" PRIu64, (uint64_t)atomic_load(&g.eagain_fallbacks));
    if (!opt.latency) {
        printf("\n  completion latency: not measured (--latency 0)\n");
        return;
    }
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
    if (!opt.njob_classes)
        return;
    printf("  jobs in IO classes (bench: its own per-request latency; class: ioeng_class_stats,\n"
           "  latency 0 unless --latency-stats 1), usec:\n");
    printf("    %3s %5s %6s %-9s %7s %4s %10s %9s %9s %9s %9s | %9s %9s %9s %11s\n", "job", "class",
           "weight", "rw", "bs", "qd", "IOPS", "MiB/s", "p50", "p99", "p99.9", "cls p50", "cls p99",
           "cls p99.9", "throttled%");
    for (unsigned i = 0; i < opt.njob_classes; i++) {
        const struct job *j = &g.jobs[i];
        const ioeng_class_stats_t *cs = &j->cstats;
        printf("    %3u %5u %6u %-9s %7" PRIu64 " %4u %10.1f %9.1f %9.2f %9.2f %9.2f | %9.2f %9.2f %9.2f %10.1f%%\n",
               i, j->class_id, opt.job_classes[i].cfg.weight, rw_names[j->rw], j->bs, j->nslots,
               r->elapsed > 0 ? (double)j->ios / r->elapsed : 0,
               r->elapsed > 0 ? (double)j->bytes / r->elapsed / 1048576.0 : 0,
               h_percentile(&j->lat, 50) / 1e3, h_percentile(&j->lat, 99) / 1e3,
               h_percentile(&j->lat, 99.9) / 1e3, (double)cs->p50_ns / 1e3, (double)cs->p99_ns / 1e3,
               (double)cs->p999_ns / 1e3,
               r->elapsed > 0 ? 100.0 * (double)cs->throttled_ns / 1e9 / r->elapsed : 0);
    }
}
static double tv_sec(struct timeval tv)
{
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* The measured phase's figures, from the samples taken at its start and its end. */
void make_result(struct result *r, const struct sample *a, const struct sample *b)
{
    r->elapsed = (double)(b->t - a->t) / 1e9;
    for (unsigned i = 0; i < opt.numjobs; i++)
        r->ios += g.jobs[i].ios;
    r->iops = r->elapsed > 0 ? (double)r->ios / r->elapsed : 0;
    r->mib_s = r->iops * (double)opt.bs / 1048576.0;
    if (opt.njob_classes) {
        uint64_t bytes = 0;
        for (unsigned i = 0; i < opt.numjobs; i++)
            bytes += g.jobs[i].bytes;
        r->mib_s = r->elapsed > 0 ? (double)bytes / r->elapsed / 1048576.0 : 0;
    }
    r->usr_pct = r->elapsed > 0 ? 100.0 * (tv_sec(b->ru.ru_utime) - tv_sec(a->ru.ru_utime)) / r->elapsed : 0;
    r->sys_pct = r->elapsed > 0 ? 100.0 * (tv_sec(b->ru.ru_stime) - tv_sec(a->ru.ru_stime)) / r->elapsed : 0;
    r->submit_calls = b->st.kernel_submit_calls - a->st.kernel_submit_calls;
    r->completed_delta = b->st.completed - a->st.completed;
    r->ios_per_submit = r->submit_calls ? (double)r->completed_delta / (double)r->submit_calls : 0;
    r->resubmits = b->st.resubmits - a->st.resubmits;
}

void report(const struct result *r)
{
    if (opt.json) report_json(r);
    else report_normal(r);
    fflush(stdout);
}

void progress(bool tty, const char *phase, double t, double total, const ioeng_stats_t *a,
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
/* Prints what failed (IO errors, overlapping callbacks) to stderr; returns the exit
 * status so far: 1 if anything did, else 0. */
int error_status(void)
{
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
    return status;
}
