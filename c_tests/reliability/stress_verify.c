/*
 * stress_verify: 8 submitting threads share one engine; each owns a disjoint region of
 * one file and, for a bounded time, keeps several requests outstanding: random reads,
 * writes (512 B .. 1 MiB, log-uniform) and fsync/fdatasync, HIGH or NORMAL priority,
 * never two overlapping reads/writes in flight. A per-thread model of the region's
 * bytes verifies every read when its callback runs, and a final full read-back (through
 * the engine, then with pread) verifies the file.
 *
 * ABI v1 mix: about a quarter of the reads and writes are READV/WRITEV over 1..8
 * segments of the slot's buffer, a sixth use FIXED_BUF (every slot buffer is registered
 * with ioeng_register_buffers), a sixth of the writes carry DSYNC or SYNC, and some reads
 * carry a unique tag that is cancelled right after submit (res -ECANCELED or the data)
 * or a deadline 0..3 ms ahead (res -ETIMEDOUT or the data).
 *
 * IO classes: the engine opens three (weights 100, 400 and 25; the last limited to
 * 400 MB/s and 20,000 IOPS, so it is held by its limits now and then, cancels and
 * deadlines included), and each request names one of the four classes (0..3) at random.
 *
 * Runs twice: an O_DIRECT file on ext4 (IOENG_TEST_DIR; sizes, offsets and buffers 4096-aligned)
 * and a buffered file on tmpfs (/dev/shm; unaligned sizes, offsets and buffers).
 *
 * Asserts: every accepted request gets exactly one callback (a state machine per
 * request slot plus a sequence number in ctx catches duplicates and stale callbacks),
 * callbacks never run concurrently (header: one at a time per engine),
 * exact res (write == len, read == len, fsync == 0), data, and idle stats at the end
 * (submitted == completed == accepted, in_flight == 0, queued_* == 0).
 *
 * Env: IOENG_TEST_BACKEND=aio|uring, IOENG_STRESS_SECONDS (per file, default 5),
 * IOENG_STRESS_REGION_MB (per thread, default 8), IOENG_STRESS_SEED,
 * IOENG_STRESS_FS=both|ext4|tmpfs, IOENG_STRESS_DEPTH (default 32), IOENG_STRESS_BATCH (0).
 */
#include "rel.h"

#define NTHREADS 8
#define MAXOUT 8 /* outstanding requests per thread */
#define MAXLEN (1u << 20)
#define MINLEN 512u
#define BUF_SLACK 4096 /* room for misaligning buffered-mode buffers */

enum { S_FREE = 0, S_INFLIGHT, S_COMPLETING, S_DONE };
enum { K_READ = 0, K_WRITE, K_FSYNC, K_FDATASYNC };

struct slot {
    _Atomic int state;
    uint64_t seq;
    int kind;
    uint32_t prio;
    uint64_t off; /* absolute file offset */
    uint64_t len;
    unsigned char *base; /* allocation (aligned) */
    unsigned char *buf;  /* buffer handed to the engine */
    int64_t res;
    struct iovec iov[8]; /* READV/WRITEV segments over buf (valid until the callback) */
    int may_cancel, may_time_out;
};

struct worker {
    int idx;
    pthread_t th;
    pid_t tid;
    rel_rng_t rng;
    uint64_t region_off, region_len;
    unsigned char *model; /* expected bytes of the region */
    struct slot slots[MAXOUT];
    uint64_t seq;
    tu_waiter_t done; /* counts callbacks */
    uint64_t reaped;  /* done count at the last reap */
    /* figures (owned by the worker thread) */
    uint64_t accepted, reads, writes, syncs, high, read_bytes, write_bytes;
    uint64_t vectored, fixed, dsync, cancels, deadlines;
};

static ioeng_t *g_eng;
static int g_direct;
static uint32_t g_depth = 32, g_batch = 0;
static int g_fd;
static double g_deadline;
static struct worker g_w[NTHREADS];
static _Atomic uint64_t g_verified_reads, g_cancelled_reads, g_timed_out_reads;
static _Atomic int g_in_cb; /* callbacks run one at a time per engine */

static inline void *encode_ctx(int t, int s, uint64_t seq)
{
    return (void *)(uintptr_t)(((uint64_t)t << 56) | ((uint64_t)s << 48) | (seq & 0xffffffffffffULL));
}

static void on_done(void *ctx, int64_t res)
{
    uint64_t v = (uint64_t)(uintptr_t)ctx;
    int t = (int)(v >> 56), s = (int)((v >> 48) & 0xff);
    uint64_t seq = v & 0xffffffffffffULL;
    CHECK(t < NTHREADS && s < MAXOUT, "callback with garbage ctx %p", ctx);
    CHECK(atomic_fetch_add(&g_in_cb, 1) == 0, "two callbacks of one engine ran concurrently");
    struct worker *w = &g_w[t];
    struct slot *sl = &w->slots[s];
    int expect = S_INFLIGHT;
    if (!atomic_compare_exchange_strong(&sl->state, &expect, S_COMPLETING))
        FAILF("thread %d slot %d: callback (res=%" PRId64 ") for a request that is not in flight "
              "(state %d): duplicate or stale callback", t, s, res, expect);
    if ((sl->seq & 0xffffffffffffULL) != seq)
        FAILF("thread %d slot %d: callback for seq %" PRIu64 " but seq %" PRIu64 " is in flight "
              "(duplicate/stale callback)", t, s, seq, sl->seq);
    switch (sl->kind) {
    case K_WRITE:
        if (res != (int64_t)sl->len)
            FAILF("thread %d: WRITE off=%" PRIu64 " len=%" PRIu64 " prio=%u: res=%" PRId64
                  " (want len)", t, sl->off, sl->len, sl->prio, res);
        break;
    case K_READ: {
        if ((sl->may_cancel && res == -ECANCELED) || (sl->may_time_out && res == -ETIMEDOUT)) {
            atomic_fetch_add(res == -ECANCELED ? &g_cancelled_reads : &g_timed_out_reads, 1);
            atomic_fetch_add(&g_verified_reads, 1);
            break;
        }
        if (res != (int64_t)sl->len)
            FAILF("thread %d: READ off=%" PRIu64 " len=%" PRIu64 " prio=%u: res=%" PRId64
                  " (want len; the range is inside the file)", t, sl->off, sl->len, sl->prio, res);
        const unsigned char *want = w->model + (sl->off - w->region_off);
        if (memcmp(sl->buf, want, sl->len) != 0) {
            long d = rel_first_diff(sl->buf, want, sl->len);
            FAILF("thread %d: READ off=%" PRIu64 " len=%" PRIu64 ": data mismatch at file "
                  "offset %" PRIu64 ": got 0x%02x want 0x%02x", t, sl->off, sl->len,
                  sl->off + (uint64_t)d, sl->buf[d], want[d]);
        }
        atomic_fetch_add(&g_verified_reads, 1);
        break;
    }
    default:
        if (res != 0)
            FAILF("thread %d: %s prio=%u: res=%" PRId64 " (want 0)", t,
                  sl->kind == K_FSYNC ? "FSYNC" : "FDATASYNC", sl->prio, res);
    }
    sl->res = res;
    atomic_fetch_sub(&g_in_cb, 1);
    atomic_store(&sl->state, S_DONE);
    tu_waiter_add(&w->done, 1);
}

static int overlaps_inflight(struct worker *w, uint64_t off, uint64_t len)
{
    for (int i = 0; i < MAXOUT; i++) {
        struct slot *o = &w->slots[i];
        if (atomic_load(&o->state) == S_FREE || o->kind >= K_FSYNC)
            continue;
        if (off < o->off + o->len && o->off < off + len)
            return 1;
    }
    return 0;
}

/* Log-uniform length in [MINLEN, MAXLEN]; aligned to 4096 in direct mode. */
static uint64_t pick_len(struct worker *w)
{
    uint64_t lo = (uint64_t)MINLEN << rel_range(&w->rng, 0, 10); /* 512 .. 512 KiB */
    uint64_t len = rel_range(&w->rng, lo, 2 * lo - 1);
    if (g_direct)
        len = (len + 4095) & ~4095ULL;
    if (len > MAXLEN)
        len = MAXLEN;
    return len;
}

static int start_one(struct worker *w, int s)
{
    struct slot *sl = &w->slots[s];
    unsigned r = (unsigned)(rel_rand(&w->rng) % 100);
    int kind = r < 45 ? K_READ : r < 92 ? K_WRITE : r < 96 ? K_FSYNC : K_FDATASYNC;
    uint64_t off = 0, len = 0;
    if (kind <= K_WRITE) {
        int found = 0;
        for (int tries = 0; tries < 16 && !found; tries++) {
            len = pick_len(w);
            uint64_t span = w->region_len - len;
            uint64_t rel = rel_range(&w->rng, 0, span);
            if (g_direct)
                rel &= ~4095ULL;
            off = w->region_off + rel;
            found = !overlaps_inflight(w, off, len);
        }
        if (!found)
            return 0;
    }
    sl->kind = kind;
    sl->prio = (rel_rand(&w->rng) % 4 == 0) ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL;
    sl->off = off;
    sl->len = len;
    sl->buf = g_direct ? sl->base : sl->base + rel_range(&w->rng, 0, 63);
    if (kind == K_WRITE) {
        rel_fill_random(&w->rng, sl->buf, len);
        memcpy(w->model + (off - w->region_off), sl->buf, len);
    } else if (kind == K_READ) {
        rel_prep_read_buf(sl->buf, len);
    }
    sl->seq = ++w->seq;
    sl->res = INT64_MIN;
    sl->may_cancel = sl->may_time_out = 0;
    static const uint32_t ops[] = {IOENG_OP_READ, IOENG_OP_WRITE, IOENG_OP_FSYNC, IOENG_OP_FDATASYNC};
    ioeng_req_t req = {.op = ops[kind], .prio = sl->prio, .fd = g_fd,
                       .buf = kind <= K_WRITE ? sl->buf : NULL, .len = len, .offset = off,
                       .class_id = (uint16_t)(rel_rand(&w->rng) % 4)};
    if (kind <= K_WRITE) {
        unsigned v = (unsigned)(rel_rand(&w->rng) % 12);
        if (v < 3) { /* READV/WRITEV over 1..8 uneven contiguous segments */
            uint64_t unit = g_direct ? 4096 : 1, units = len / unit;
            int nseg = 1 + (int)(rel_rand(&w->rng) % 8);
            if ((uint64_t)nseg > units)
                nseg = (int)units;
            uint64_t at = 0;
            for (int k = 0; k < nseg; k++) {
                uint64_t left = units - at / unit, later = (uint64_t)(nseg - k - 1);
                uint64_t u = k == nseg - 1 ? left : rel_range(&w->rng, 1, left - later);
                sl->iov[k] = (struct iovec){ sl->buf + at, u * unit };
                at += u * unit;
            }
            req.op = kind == K_READ ? IOENG_OP_READV : IOENG_OP_WRITEV;
            req.buf = sl->iov;
            req.len = (uint64_t)nseg;
            w->vectored++;
        } else if (v < 5) { /* FIXED_BUF: the slot's buffer is registered at its index */
            req.flags = IOENG_REQ_FIXED_BUF;
            req.buf_index = (uint32_t)(w->idx * MAXOUT + s);
            w->fixed++;
        }
        if (kind == K_WRITE && rel_rand(&w->rng) % 6 == 0) {
            req.flags |= (rel_rand(&w->rng) & 1) ? IOENG_REQ_DSYNC : IOENG_REQ_SYNC;
            w->dsync++;
        }
        if (kind == K_READ) {
            unsigned c = (unsigned)(rel_rand(&w->rng) % 25);
            if (c == 0) {
                req.tag = ((uint64_t)(w->idx + 1) << 48) | sl->seq;
                sl->may_cancel = 1;
            } else if (c == 1) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                req.deadline_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec +
                                  rel_range(&w->rng, 0, 3000000);
                sl->may_time_out = 1;
                w->deadlines++;
            }
        }
    }
    atomic_store(&sl->state, S_INFLIGHT);
    int rc = ioeng_submit(g_eng, &req, on_done, encode_ctx(w->idx, s, sl->seq));
    if (rc != 0)
        FAILF("thread %d: ioeng_submit(kind %d off %" PRIu64 " len %" PRIu64 ") = %d "
              "(unbounded queue: must accept)", w->idx, kind, off, len, rc);
    if (sl->may_cancel) {
        /* Only this request carries the tag, and its callback cannot have freed the
         * slot yet (only this thread frees slots): 1, or 0 once its callback started. */
        int n = ioeng_cancel(g_eng, req.tag);
        CHECK(n == 0 || n == 1, "ioeng_cancel(unique tag) = %d", n);
        w->cancels++;
    }
    w->accepted++;
    if (sl->prio == IOENG_PRIO_HIGH)
        w->high++;
    if (kind == K_READ) {
        w->reads++;
        w->read_bytes += len;
    } else if (kind == K_WRITE) {
        w->writes++;
        w->write_bytes += len;
    } else {
        w->syncs++;
    }
    return 1;
}

/* Waits for at least one completion, frees the finished slots; returns how many. */
static int reap(struct worker *w)
{
    uint64_t c = tu_waiter_wait_for(&w->done, w->reaped + 1, 60);
    if (c <= w->reaped) {
        ioeng_stats_t st = tu_stats(g_eng);
        FAILF("thread %d: no callback for 60 s (lost callback?) stats: submitted=%" PRIu64
              " completed=%" PRIu64 " in_flight=%" PRIu64 " queued h/r/w=%" PRIu64 "/%"
              PRIu64 "/%" PRIu64, w->idx, st.submitted, st.completed, st.in_flight,
              st.queued_high, st.queued_read, st.queued_write);
    }
    w->reaped = c;
    int n = 0;
    for (int i = 0; i < MAXOUT; i++) {
        if (atomic_load(&w->slots[i].state) == S_DONE) {
            atomic_store(&w->slots[i].state, S_FREE);
            n++;
        }
    }
    return n;
}

static int busy_slots(struct worker *w)
{
    int n = 0;
    for (int i = 0; i < MAXOUT; i++)
        n += atomic_load(&w->slots[i].state) != S_FREE;
    return n;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    w->tid = rel_gettid();
    while (rel_now() < g_deadline) {
        int started = 0;
        for (int s = 0; s < MAXOUT; s++)
            if (atomic_load(&w->slots[s].state) == S_FREE)
                started += start_one(w, s);
        if (busy_slots(w) > 0)
            reap(w);
        else if (!started)
            FAILF("thread %d: nothing in flight and nothing could start", w->idx);
    }
    while (busy_slots(w) > 0)
        reap(w);
    return NULL;
}

/* Final read-back of the whole file through the engine (16 x 1 MiB in flight). */
struct rb {
    _Atomic int done;
    _Atomic int ncb;
    int64_t res;
};
static void on_readback(void *ctx, int64_t res)
{
    struct rb *r = ctx;
    CHECK(atomic_fetch_add(&r->ncb, 1) == 0, "read-back: duplicate callback (res=%" PRId64 ")", res);
    r->res = res;
    atomic_store(&r->done, 1);
}

static uint64_t readback(uint64_t file_len, uint64_t *accepted)
{
    enum { NB = 16 };
    const uint64_t chunk = MAXLEN;
    unsigned char *bufs[NB];
    struct rb rbs[NB];
    uint64_t offs[NB];
    for (int i = 0; i < NB; i++) {
        bufs[i] = tu_alloc_uninit(chunk);
        atomic_store(&rbs[i].done, 1);
        offs[i] = UINT64_MAX;
    }
    uint64_t next = 0, verified = 0;
    for (;;) {
        int active = 0;
        for (int i = 0; i < NB; i++) {
            if (offs[i] != UINT64_MAX) {
                if (!atomic_load(&rbs[i].done)) {
                    active++;
                    continue;
                }
                uint64_t len = file_len - offs[i] < chunk ? file_len - offs[i] : chunk;
                CHECK(rbs[i].res == (int64_t)len, "read-back off=%" PRIu64 ": res=%" PRId64
                      " want %" PRIu64, offs[i], rbs[i].res, len);
                uint64_t t = offs[i] / g_w[0].region_len, in = offs[i] % g_w[0].region_len;
                const unsigned char *want = g_w[t].model + in;
                if (memcmp(bufs[i], want, len) != 0) {
                    long d = rel_first_diff(bufs[i], want, len);
                    FAILF("read-back: mismatch at file offset %" PRIu64 " (thread %" PRIu64
                          " region): got 0x%02x want 0x%02x", offs[i] + (uint64_t)d, t,
                          bufs[i][d], want[d]);
                }
                verified += len;
                offs[i] = UINT64_MAX;
            }
            if (next < file_len) {
                uint64_t len = file_len - next < chunk ? file_len - next : chunk;
                offs[i] = next;
                rel_prep_read_buf(bufs[i], len);
                atomic_store(&rbs[i].ncb, 0);
                atomic_store(&rbs[i].done, 0);
                ioeng_req_t req = {.op = IOENG_OP_READ, .prio = IOENG_PRIO_NORMAL, .fd = g_fd,
                                   .buf = bufs[i], .len = len, .offset = next};
                int rc = ioeng_submit(g_eng, &req, on_readback, &rbs[i]);
                CHECK(rc == 0, "read-back submit = %d", rc);
                (*accepted)++;
                next += len;
                active++;
            }
        }
        if (!active && next >= file_len)
            break;
        rel_sleep_us(200);
    }
    for (int i = 0; i < NB; i++)
        free(bufs[i]);
    return verified;
}

static void run_file(ioeng_backend_t be, enum tu_fs fs, int direct, double seconds,
                     uint64_t region, uint64_t seed)
{
    const char *what = direct ? "ext4 O_DIRECT" : "tmpfs buffered";
    g_direct = direct;
    g_fd = tu_scratch(fs, direct, NULL);
    uint64_t file_len = region * NTHREADS;
    rel_rng_t init;
    rel_rng_seed(&init, seed ^ 0xabcdef);
    for (int t = 0; t < NTHREADS; t++) {
        struct worker *w = &g_w[t];
        memset(w, 0, sizeof *w);
        w->idx = t;
        rel_rng_seed(&w->rng, seed * 31 + (uint64_t)t + (direct ? 1000 : 0));
        w->region_off = (uint64_t)t * region;
        w->region_len = region;
        w->model = tu_alloc_uninit(region);
        rel_fill_random(&init, w->model, region);
        tu_pwrite_all(g_fd, w->model, region, (off_t)w->region_off);
        tu_waiter_init(&w->done);
        for (int s = 0; s < MAXOUT; s++) {
            w->slots[s].base = tu_alloc_uninit(MAXLEN + BUF_SLACK);
            atomic_store(&w->slots[s].state, S_FREE);
        }
    }
    CHECK(fsync(g_fd) == 0, "fsync: %s", strerror(errno));
    atomic_store(&g_verified_reads, 0);

    g_eng = tu_open(be, g_depth, g_batch, 0, 0);
    static struct iovec regs[NTHREADS * MAXOUT];
    for (int t = 0; t < NTHREADS; t++)
        for (int s = 0; s < MAXOUT; s++)
            regs[t * MAXOUT + s] = (struct iovec){ g_w[t].slots[s].base, MAXLEN + BUF_SLACK };
    int reg = ioeng_register_buffers(g_eng, regs, NTHREADS * MAXOUT);
    CHECK(reg == 0, "ioeng_register_buffers(%d slot buffers) = %d", NTHREADS * MAXOUT, reg);
    static const uint32_t weights[] = {100, 400, 25};
    for (unsigned k = 0; k < 3; k++) {
        ioeng_class_config_t cc;
        ioeng_class_config_init(&cc);
        cc.weight = weights[k];
        if (k == 2) {
            cc.bytes_per_sec_limit = 400000000;
            cc.iops_limit = 20000;
        }
        uint16_t id = 0;
        int orc = ioeng_class_open(g_eng, &cc, &id);
        CHECK(orc == 0 && id == k + 1, "ioeng_class_open = %d (id %u)", orc, id);
    }
    atomic_store(&g_cancelled_reads, 0);
    atomic_store(&g_timed_out_reads, 0);
    double t0 = rel_now();
    g_deadline = t0 + seconds;
    for (int t = 0; t < NTHREADS; t++)
        CHECK(pthread_create(&g_w[t].th, NULL, worker_main, &g_w[t]) == 0, "pthread_create");
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(g_w[t].th, NULL);
    double elapsed = rel_now() - t0;

    uint64_t accepted = 0, reads = 0, writes = 0, syncs = 0, high = 0, rbytes = 0, wbytes = 0;
    uint64_t vectored = 0, fixed = 0, dsync = 0, cancels = 0, deadlines = 0;
    for (int t = 0; t < NTHREADS; t++) {
        struct worker *w = &g_w[t];
        accepted += w->accepted;
        reads += w->reads;
        writes += w->writes;
        syncs += w->syncs;
        high += w->high;
        rbytes += w->read_bytes;
        wbytes += w->write_bytes;
        vectored += w->vectored;
        fixed += w->fixed;
        dsync += w->dsync;
        cancels += w->cancels;
        deadlines += w->deadlines;
        for (int s = 0; s < MAXOUT; s++)
            CHECK(atomic_load(&w->slots[s].state) == S_FREE, "slot still busy");
    }
    CHECK_EQ(atomic_load(&g_verified_reads), reads, "every read verified exactly once");
    REL_CHECK_IDLE_STATS(g_eng, accepted);
    /* Every callback counted in exactly one class, none left queued or in flight. */
    uint64_t by_class = 0, throttled_ns = 0;
    for (uint16_t id = 0; id <= 3; id++) {
        ioeng_class_stats_t cs;
        CHECK(ioeng_class_stats(g_eng, id, &cs, 0) == 0, "class %u stats", id);
        CHECK(cs.queued == 0 && cs.in_flight == 0, "class %u: queued %" PRIu64 " in flight %" PRIu64,
              id, cs.queued, cs.in_flight);
        by_class += cs.reads + cs.writes + cs.others;
        throttled_ns += cs.throttled_ns;
    }
    CHECK_EQ(by_class, accepted, "class counters sum to the callbacks");
    printf("figure: %s [%s]: class 3 held by its limits for %.1f ms\n", what,
           tu_backend_name(be), (double)throttled_ns / 1e6);
    CHECK(reads > 0 && writes > 0 && syncs > 0, "mix incomplete: r=%" PRIu64 " w=%" PRIu64
          " s=%" PRIu64, reads, writes, syncs);

    uint64_t total = accepted;
    uint64_t rb = readback(file_len, &total);
    CHECK_EQ(rb, file_len, "read-back covered the file");
    REL_CHECK_IDLE_STATS(g_eng, total);
    ioeng_stats_t st = tu_stats(g_eng);
    tu_close(g_eng);

    /* Independent check with pread (not through the engine). */
    unsigned char *tmp = tu_alloc_uninit(region);
    for (int t = 0; t < NTHREADS; t++) {
        tu_pread_all(g_fd, tmp, region, (off_t)g_w[t].region_off);
        long d = rel_first_diff(tmp, g_w[t].model, region);
        CHECK(d < 0, "pread check: mismatch at file offset %" PRIu64,
              g_w[t].region_off + (uint64_t)d);
    }
    free(tmp);
    struct stat sb;
    CHECK(fstat(g_fd, &sb) == 0 && (uint64_t)sb.st_size == file_len, "file size changed");

    printf("figure: %s [%s]: %.1f s, requests=%" PRIu64 " (reads verified=%" PRIu64
           " %.1f MiB, writes=%" PRIu64 " %.1f MiB, fsync/fdatasync=%" PRIu64 ", HIGH=%" PRIu64
           "), read-back verified %.1f MiB, kernel_submit_calls=%" PRIu64 " resubmits=%" PRIu64
           ", %.0f IOs/s\n",
           what, tu_backend_name(be), elapsed, accepted, reads, (double)rbytes / 1048576.0,
           writes, (double)wbytes / 1048576.0, syncs, high, (double)rb / 1048576.0,
           st.kernel_submit_calls, st.resubmits, (double)accepted / elapsed);
    printf("figure: %s [%s]: v1 mix: vectored=%" PRIu64 " fixed_buf=%" PRIu64 " dsync/sync=%"
           PRIu64 ", cancels=%" PRIu64 " (-ECANCELED %" PRIu64 "), deadlines=%" PRIu64
           " (-ETIMEDOUT %" PRIu64 "); stats cancelled=%" PRIu64 " timed_out=%" PRIu64 "\n",
           what, tu_backend_name(be), vectored, fixed, dsync, cancels,
           (uint64_t)atomic_load(&g_cancelled_reads), deadlines,
           (uint64_t)atomic_load(&g_timed_out_reads), st.cancelled, st.timed_out);
    CHECK(st.cancelled == atomic_load(&g_cancelled_reads) &&
          st.timed_out == atomic_load(&g_timed_out_reads),
          "stats cancelled/timed_out disagree with the callbacks");
    CHECK(vectored > 0 && fixed > 0 && dsync > 0, "v1 mix incomplete");

    for (int t = 0; t < NTHREADS; t++) {
        struct worker *w = &g_w[t];
        for (int s = 0; s < MAXOUT; s++)
            free(w->slots[s].base);
        free(w->model);
        tu_waiter_destroy(&w->done);
    }
    close(g_fd);
}

int main(void)
{
    rel_init("stress_verify", 300);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    double seconds = (double)tu_env_ll("IOENG_STRESS_SECONDS", 5);
    uint64_t region = (uint64_t)tu_env_ll("IOENG_STRESS_REGION_MB", 8) << 20;
    uint64_t seed = (uint64_t)tu_env_ll("IOENG_STRESS_SEED", (long long)time(NULL));
    g_depth = (uint32_t)tu_env_ll("IOENG_STRESS_DEPTH", 32);
    g_batch = (uint32_t)tu_env_ll("IOENG_STRESS_BATCH", 0);
    const char *which = getenv("IOENG_STRESS_FS");
    if (!which || !*which)
        which = "both";
    CHECK(region >= MAXLEN * 2, "IOENG_STRESS_REGION_MB must be >= 2");
    printf("stress_verify: backend=%s seed=%" PRIu64 " seconds/file=%.0f threads=%d "
           "outstanding/thread=%d region/thread=%" PRIu64 " MiB engine depth=%u batch=%u\n",
           tu_backend_name(be), seed, seconds, NTHREADS, MAXOUT, region >> 20, g_depth, g_batch);
    if (strcmp(which, "both") == 0 || strcmp(which, "ext4") == 0)
        run_file(be, TU_EXT4, 1, seconds, region, seed);
    if (strcmp(which, "both") == 0 || strcmp(which, "tmpfs") == 0)
        run_file(be, TU_TMPFS, 0, seconds, region, seed);
    printf("stress_verify [%s]: OK\n", tu_backend_name(be));
    return 0;
}
