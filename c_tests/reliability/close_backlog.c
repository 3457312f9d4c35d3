/*
 * close_backlog: N (default 100 000) small reads/writes on a tmpfs file are submitted as
 * fast as possible from 2 threads to an engine of depth 32, then ioeng_close() is called
 * with a large backlog. Asserts that every accepted request's callback ran exactly once
 * before ioeng_close() returned, with the exact res, and that the data is right
 * (reads compared with the known file content, writes checked with pread afterwards).
 *
 * Two variants:
 *  - running: the engine dispatches while the threads submit; some callbacks submit a
 *    follow-up read (accepted until close begins, then -ESHUTDOWN and never again 0);
 *    the first callback checks that ioeng_close() from a callback gives -EDEADLK, and a
 *    few callbacks read ioeng_stats().
 *  - paused: start_paused = 1, everything queued, ioeng_close() without ioeng_resume()
 *    (the header: every pending callback runs, even on a paused engine); every callback
 *    tries a follow-up submit and must get -ESHUTDOWN.
 *
 * Env: IOENG_TEST_BACKEND, IOENG_BACKLOG_N (default 100000), IOENG_BACKLOG_DEPTH (default 32).
 */
#include "rel.h"

#define BLK 64
#define NTHR 2
#define A_BLOCKS 16384 /* region A: 1 MiB of known content for reads */
#define B_BASE ((uint64_t)A_BLOCKS * BLK)

struct rec {
    _Atomic int cb;
    int is_write;
    int64_t res;
};

static ioeng_t *g_eng;
static int g_fd;
static uint64_t g_n;
static uint32_t g_depth = 32;
static struct rec *g_rec;
static unsigned char *g_buf; /* g_n * BLK: per-request buffer */
static struct rec *g_fu;     /* follow-ups, at most g_n */
static unsigned char *g_fubuf;
static _Atomic uint64_t g_fu_next, g_fu_accepted, g_fu_shutdown;
static _Atomic uint64_t g_callbacks;
static _Atomic int g_close_returned, g_seen_shutdown, g_deadlk_checked;
static int g_paused;
static _Atomic uint64_t g_stats_in_cb;

static void block_pattern(uint64_t tag, unsigned char *out)
{
    for (int i = 0; i < BLK; i += 8) {
        uint64_t v = tu_mix64(tag * 131 + (uint64_t)i);
        memcpy(out + i, &v, 8);
    }
}

static void on_followup(void *ctx, int64_t res)
{
    struct rec *r = ctx;
    CHECK(!atomic_load(&g_close_returned), "follow-up callback after ioeng_close returned");
    CHECK(atomic_fetch_add(&r->cb, 1) == 0, "follow-up: duplicate callback");
    CHECK(res == BLK, "follow-up read: res=%" PRId64 " want %d", res, BLK);
    r->res = res;
    atomic_fetch_add(&g_callbacks, 1);
}

static void on_done(void *ctx, int64_t res)
{
    struct rec *r = ctx;
    uint64_t i = (uint64_t)(r - g_rec);
    CHECK(!atomic_load(&g_close_returned), "callback after ioeng_close returned");
    CHECK(i < g_n, "callback with a foreign ctx");
    int prev = atomic_fetch_add(&r->cb, 1);
    CHECK(prev == 0, "request %" PRIu64 ": callback #%d (duplicate)", i, prev + 1);
    CHECK(res == BLK, "request %" PRIu64 " (%s): res=%" PRId64 " want %d", i,
          r->is_write ? "write" : "read", res, BLK);
    r->res = res;
    uint64_t c = atomic_fetch_add(&g_callbacks, 1);

    if (!g_paused && !atomic_load(&g_deadlk_checked)) {
        int rc = ioeng_close(g_eng);
        CHECK(rc == -EDEADLK, "ioeng_close from a callback = %d, want -EDEADLK", rc);
        atomic_store(&g_deadlk_checked, 1);
    }
    if (c % 4096 == 0) {
        ioeng_stats_t st;
        CHECK(ioeng_stats(g_eng, &st) == 0, "ioeng_stats from a callback");
        CHECK(st.completed >= 1 && st.submitted >= st.completed,
              "stats in callback: submitted=%" PRIu64 " completed=%" PRIu64, st.submitted,
              st.completed);
        atomic_fetch_add(&g_stats_in_cb, 1);
    }
    /* Follow-up submission from the callback. */
    if (g_paused || i % 8 == 0) {
        uint64_t k = atomic_fetch_add(&g_fu_next, 1);
        CHECK(k < g_n, "too many follow-ups");
        rel_prep_read_buf(g_fubuf + k * BLK, BLK);
        ioeng_req_t req = {.op = IOENG_OP_READ, .prio = IOENG_PRIO_NORMAL, .fd = g_fd,
                           .buf = g_fubuf + k * BLK, .len = BLK, .offset = (k % A_BLOCKS) * BLK};
        int rc = ioeng_submit(g_eng, &req, on_followup, &g_fu[k]);
        if (rc == 0) {
            CHECK(!g_paused, "paused variant: a submit from a callback during close was accepted");
            CHECK(!atomic_load(&g_seen_shutdown),
                  "a callback submit was accepted after an earlier one got -ESHUTDOWN");
            atomic_fetch_add(&g_fu_accepted, 1);
        } else {
            CHECK(rc == -ESHUTDOWN, "submit from a callback = %d (want 0 or -ESHUTDOWN)", rc);
            atomic_store(&g_seen_shutdown, 1);
            atomic_store(&g_fu[k].cb, -1000); /* refused: must never be called */
            atomic_fetch_add(&g_fu_shutdown, 1);
        }
    }
}

struct sub {
    int t;
    pthread_t th;
    double secs;
};

static void *submitter(void *arg)
{
    struct sub *s = arg;
    double t0 = rel_now();
    for (uint64_t i = (uint64_t)s->t; i < g_n; i += NTHR) {
        struct rec *r = &g_rec[i];
        r->is_write = (i % 3 == 1);
        ioeng_req_t req = {.prio = (i % 5 == 0) ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL,
                           .fd = g_fd, .buf = g_buf + i * BLK, .len = BLK};
        if (r->is_write) {
            block_pattern(1000000 + i, g_buf + i * BLK);
            req.op = IOENG_OP_WRITE;
            req.offset = B_BASE + i * BLK;
        } else {
            rel_prep_read_buf(g_buf + i * BLK, BLK);
            req.op = IOENG_OP_READ;
            req.offset = (i % A_BLOCKS) * BLK;
        }
        int rc = ioeng_submit(g_eng, &req, on_done, r);
        CHECK(rc == 0, "submit #%" PRIu64 " = %d (unbounded queue must accept)", i, rc);
    }
    s->secs = rel_now() - t0;
    return NULL;
}

static void run(ioeng_backend_t be, int paused)
{
    g_paused = paused;
    memset(g_rec, 0, g_n * sizeof *g_rec);
    memset(g_fu, 0, g_n * sizeof *g_fu);
    atomic_store(&g_fu_next, 0);
    atomic_store(&g_fu_accepted, 0);
    atomic_store(&g_fu_shutdown, 0);
    atomic_store(&g_callbacks, 0);
    atomic_store(&g_close_returned, 0);
    atomic_store(&g_seen_shutdown, 0);
    atomic_store(&g_deadlk_checked, 0);
    atomic_store(&g_stats_in_cb, 0);

    g_eng = tu_open(be, g_depth, 0, 0, (uint32_t)paused);
    struct sub subs[NTHR];
    double t0 = rel_now();
    for (int t = 0; t < NTHR; t++) {
        subs[t].t = t;
        CHECK(pthread_create(&subs[t].th, NULL, submitter, &subs[t]) == 0, "pthread_create");
    }
    for (int t = 0; t < NTHR; t++)
        pthread_join(subs[t].th, NULL);
    double tsub = rel_now() - t0;
    if (!paused) {
        /* The EDEADLK probe must finish before we close (no concurrent close calls). */
        for (int i = 0; i < 20000 && !atomic_load(&g_deadlk_checked); i++)
            rel_sleep_us(500);
        CHECK(atomic_load(&g_deadlk_checked), "no callback within 10 s");
    }
    ioeng_stats_t st = tu_stats(g_eng);
    uint64_t backlog = st.submitted - st.completed;
    CHECK(st.submitted >= g_n, "stats.submitted=%" PRIu64 " < %" PRIu64, st.submitted, g_n);
    double tc = rel_now();
    tu_close(g_eng);
    double tclose = rel_now() - tc;
    atomic_store(&g_close_returned, 1);

    /* Everything accepted has completed, exactly once, before ioeng_close returned. */
    uint64_t fu_acc = atomic_load(&g_fu_accepted);
    uint64_t cbs = atomic_load(&g_callbacks);
    CHECK_EQ(cbs, g_n + fu_acc, "callbacks that ran before ioeng_close returned");
    for (uint64_t i = 0; i < g_n; i++)
        CHECK(atomic_load(&g_rec[i].cb) == 1, "request %" PRIu64 ": %d callbacks", i,
              atomic_load(&g_rec[i].cb));
    uint64_t nfu = atomic_load(&g_fu_next);
    for (uint64_t k = 0; k < nfu; k++) {
        int c = atomic_load(&g_fu[k].cb);
        CHECK(c == 1 || c == -1000, "follow-up %" PRIu64 ": callback count %d", k, c);
    }
    CHECK_EQ(nfu, atomic_load(&g_fu_accepted) + atomic_load(&g_fu_shutdown), "follow-ups");
    if (paused)
        CHECK_EQ(atomic_load(&g_fu_shutdown), g_n, "paused: every callback submit refused");

    /* Data: reads got region A, writes landed in region B. */
    unsigned char want[BLK];
    uint64_t nreads = 0, nwrites = 0;
    for (uint64_t i = 0; i < g_n; i++) {
        if (g_rec[i].is_write)
            continue;
        block_pattern(i % A_BLOCKS, want);
        CHECK(memcmp(g_buf + i * BLK, want, BLK) == 0, "read %" PRIu64 ": wrong data", i);
        nreads++;
    }
    for (uint64_t k = 0; k < nfu; k++) {
        if (atomic_load(&g_fu[k].cb) != 1)
            continue;
        block_pattern(k % A_BLOCKS, want);
        CHECK(memcmp(g_fubuf + k * BLK, want, BLK) == 0, "follow-up read %" PRIu64 ": wrong data", k);
        nreads++;
    }
    unsigned char *fileb = malloc(g_n * BLK);
    CHECK(fileb != NULL, "malloc");
    tu_pread_all(g_fd, fileb, g_n * BLK, (off_t)B_BASE);
    for (uint64_t i = 0; i < g_n; i++) {
        if (!g_rec[i].is_write)
            continue;
        block_pattern(1000000 + i, want);
        CHECK(memcmp(fileb + i * BLK, want, BLK) == 0, "write %" PRIu64 ": not in the file", i);
        nwrites++;
    }
    free(fileb);
    rel_sleep_us(20000);
    CHECK_EQ(atomic_load(&g_callbacks), cbs, "no callback after ioeng_close returned");

    printf("figure: %s [%s]: accepted=%" PRIu64 " (+%" PRIu64 " follow-ups from callbacks, %"
           PRIu64 " refused with -ESHUTDOWN), backlog at close=%" PRIu64 ", callbacks before "
           "close returned=%" PRIu64 ", verified reads=%" PRIu64 " writes=%" PRIu64
           ", submit %.2f s, close %.2f s, stats-in-callback=%" PRIu64 "%s\n",
           paused ? "paused" : "running", tu_backend_name(be), g_n, fu_acc,
           atomic_load(&g_fu_shutdown), backlog, cbs, nreads, nwrites, tsub, tclose,
           atomic_load(&g_stats_in_cb), paused ? "" : ", EDEADLK from callback checked");
}

int main(void)
{
    rel_init("close_backlog", 300);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    g_n = (uint64_t)tu_env_ll("IOENG_BACKLOG_N", 100000);
    g_depth = (uint32_t)tu_env_ll("IOENG_BACKLOG_DEPTH", 32);
    CHECK(g_depth >= 1 && g_depth <= IOENG_MAX_DEPTH, "IOENG_BACKLOG_DEPTH out of range");
    CHECK(g_n >= 16, "IOENG_BACKLOG_N too small");
    g_rec = calloc(g_n, sizeof *g_rec);
    g_fu = calloc(g_n, sizeof *g_fu);
    g_buf = malloc(g_n * BLK);
    g_fubuf = malloc(g_n * BLK);
    CHECK(g_rec && g_fu && g_buf && g_fubuf, "malloc");
    g_fd = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *a = malloc(B_BASE);
    CHECK(a != NULL, "malloc");
    for (uint64_t b = 0; b < A_BLOCKS; b++)
        block_pattern(b, a + b * BLK);
    tu_pwrite_all(g_fd, a, B_BASE, 0);
    free(a);
    CHECK(ftruncate(g_fd, (off_t)(B_BASE + g_n * BLK)) == 0, "ftruncate");

    printf("close_backlog: backend=%s N=%" PRIu64 " threads=%d depth=%u block=%d B\n",
           tu_backend_name(be), g_n, NTHR, g_depth, BLK);
    run(be, 0);
    CHECK(ftruncate(g_fd, (off_t)B_BASE) == 0 && ftruncate(g_fd, (off_t)(B_BASE + g_n * BLK)) == 0,
          "ftruncate");
    run(be, 1);
    close(g_fd);
    free(g_rec);
    free(g_fu);
    free(g_buf);
    free(g_fubuf);
    printf("close_backlog [%s]: OK\n", tu_backend_name(be));
    return 0;
}
