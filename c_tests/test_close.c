/*
 * ioeng_close() semantics (see ioeng_close in include/ioeng.h):
 *  1. paused engine with 10 000 queued requests, closed without resume: returns 0 and
 *     every callback (with correct res) ran before it returned;
 *  2. a callback calling ioeng_submit() during close gets -ESHUTDOWN (and no extra
 *     callback happens);
 *  3. ioeng_close() from a callback returns -EDEADLK, the engine keeps working and is
 *     closed normally afterwards (also while a close is in progress);
 *  4. close with IO in flight (ext4 O_DIRECT) completes everything first;
 *  5. close of idle engines (fresh, paused-empty).
 */
#include "test_util.h"

#define NQ 10000

typedef struct {
    int fired;
    int64_t res;
    int64_t want;
} rec_t;

static rec_t recs[NQ];
static int64_t ncb;

static void count_cb(void *ctx, int64_t res)
{
    rec_t *r = ctx;
    r->res = res;
    __atomic_add_fetch(&r->fired, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&ncb, 1, __ATOMIC_SEQ_CST);
}

static void reset(void)
{
    memset(recs, 0, sizeof recs);
    ncb = 0;
}

static void verify(int n, const char *what)
{
    int64_t got = __atomic_load_n(&ncb, __ATOMIC_SEQ_CST);
    CHECK(got == n, "%s: %" PRId64 " of %d callbacks had run when ioeng_close returned", what, got,
          n);
    for (int i = 0; i < n; i++) {
        CHECK_EQ(recs[i].fired, 1, "%s: callbacks of request %d", what, i);
        CHECK(recs[i].res == recs[i].want, "%s: request %d res %s, expected %s", what, i,
              tu_errname(recs[i].res), tu_errname(recs[i].want));
    }
}

static unsigned char bufs[64][4096] __attribute__((aligned(4096)));

static ioeng_req_t mixed_req(int fd, int i, int64_t *want)
{
    *want = 4096;
    switch (i % 5) {
    case 0: return tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, bufs[i % 64], 4096, (uint64_t)(i % 64) * 4096);
    case 1: return tu_req(IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd, bufs[i % 64], 4096, (uint64_t)(i % 64) * 4096);
    case 2: return tu_req(IOENG_OP_READ, IOENG_PRIO_HIGH, fd, bufs[i % 64], 4096, (uint64_t)(i % 64) * 4096);
    case 3: *want = 0; return tu_req(IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, fd, NULL, 0, 0);
    default: *want = 0; return tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, bufs[i % 64], 4096, 1u << 30);
    }
}

/* ---- case 1 ---- */
static void backlog_close(ioeng_backend_t be, int fd)
{
    reset();
    ioeng_t *h = tu_open(be, 32, 0, 0, 1);
    for (int i = 0; i < NQ; i++) {
        ioeng_req_t q = mixed_req(fd, i, &recs[i].want);
        CHECK_EQ(ioeng_submit(h, &q, count_cb, &recs[i]), 0, "submit %d", i);
    }
    usleep(20000);
    CHECK_EQ(__atomic_load_n(&ncb, __ATOMIC_SEQ_CST), 0, "callbacks ran on a paused engine");
    ioeng_stats_t st;
    CHECK_EQ(ioeng_stats(h, &st), 0, "stats");
    CHECK_EQ(st.queued_high + st.queued_read + st.queued_write, NQ, "queued before close");
    CHECK_EQ(tu_engine_close(h), 0, "ioeng_close on paused engine with backlog");
    verify(NQ, "paused backlog close");
}

/* ---- case 2 ---- */
#define NSHUT 200
static ioeng_t *shut_h;
static int shut_fd;
static int shut_rc[NSHUT];
static void shutdown_cb(void *ctx, int64_t res)
{
    rec_t *r = ctx;
    int i = (int)(r - recs);
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_HIGH, shut_fd, bufs[0], 4096, 0);
    shut_rc[i] = ioeng_submit(shut_h, &q, count_cb, &recs[NQ - 1]); /* must be refused */
    count_cb(ctx, res);
}

static void submit_during_close(ioeng_backend_t be, int fd)
{
    reset();
    shut_fd = fd;
    shut_h = tu_open(be, 8, 0, 0, 1);
    for (int i = 0; i < NSHUT; i++) {
        shut_rc[i] = 12345;
        ioeng_req_t q = mixed_req(fd, i, &recs[i].want);
        CHECK_EQ(ioeng_submit(shut_h, &q, shutdown_cb, &recs[i]), 0, "submit %d", i);
    }
    CHECK_EQ(tu_engine_close(shut_h), 0, "ioeng_close");
    verify(NSHUT, "submit-during-close");
    CHECK_EQ(recs[NQ - 1].fired, 0, "a request refused with -ESHUTDOWN got a callback");
    for (int i = 0; i < NSHUT; i++)
        CHECK(shut_rc[i] == -ESHUTDOWN, "callback %d: ioeng_submit during close = %s, expected "
              "-ESHUTDOWN", i, tu_errname(shut_rc[i]));
}

/* ---- case 3 ---- */
static ioeng_t *dl_h;
static int dl_rc[64];
static int dl_n;
static ioeng_stats_t dl_stats;
static int dl_stats_rc = 1;
static int dl_do_stats;
static tu_waiter_t dl_w;
static void deadlock_cb(void *ctx, int64_t res)
{
    dl_rc[dl_n++] = ioeng_close(dl_h);
    if (dl_do_stats)
        dl_stats_rc = ioeng_stats(dl_h, &dl_stats); /* h must still be valid */
    count_cb(ctx, res);
    tu_waiter_add(&dl_w, 1);
}
static void plain_cb(void *ctx, int64_t res)
{
    count_cb(ctx, res);
    tu_waiter_add(&dl_w, 1);
}

static void close_from_callback(ioeng_backend_t be, int fd)
{
    reset();
    tu_waiter_init(&dl_w);
    dl_n = 0;
    dl_do_stats = 1;
    dl_h = tu_open(be, 4, 0, 0, 0);
    int n = 0;
    ioeng_req_t q = mixed_req(fd, 0, &recs[n].want);
    CHECK_EQ(ioeng_submit(dl_h, &q, deadlock_cb, &recs[n]), 0, "submit");
    n++;
    tu_waiter_wait(&dl_w, 1, 10);
    CHECK_EQ(dl_n, 1, "deadlock callback ran");
    CHECK(dl_rc[0] == -EDEADLK, "ioeng_close from a callback = %s, expected -EDEADLK",
          tu_errname(dl_rc[0]));
    CHECK_EQ(dl_stats_rc, 0, "ioeng_stats from the callback after the refused close");
    /* still works */
    for (int i = 0; i < 20; i++, n++) {
        q = mixed_req(fd, n, &recs[n].want);
        CHECK_EQ(ioeng_submit(dl_h, &q, plain_cb, &recs[n]), 0, "submit after -EDEADLK");
    }
    tu_waiter_wait(&dl_w, (uint64_t)n, 10);
    /* and close-from-callback while a real close drains a backlog */
    CHECK_EQ(tu_engine_close(dl_h), 0, "ioeng_close after a refused close");
    verify(n, "close-from-callback");

    reset();
    dl_n = 0;
    dl_do_stats = 0;
    dl_h = tu_open(be, 2, 0, 0, 1);
    for (int i = 0; i < 10; i++) {
        q = mixed_req(fd, i, &recs[i].want);
        CHECK_EQ(ioeng_submit(dl_h, &q, deadlock_cb, &recs[i]), 0, "submit");
    }
    CHECK_EQ(tu_engine_close(dl_h), 0, "ioeng_close while callbacks call ioeng_close");
    verify(10, "close-from-callback during close");
    CHECK_EQ(dl_n, 10, "callbacks");
    for (int i = 0; i < 10; i++)
        CHECK(dl_rc[i] == -EDEADLK, "ioeng_close from callback %d during close = %s, expected "
              "-EDEADLK", i, tu_errname(dl_rc[i]));
    tu_waiter_destroy(&dl_w);
}

/* ---- case 4 ---- */
static void inflight_close(ioeng_backend_t be)
{
    reset();
    int dfd = tu_scratch(TU_EXT4, 1, NULL);
    unsigned char *big = tu_alloc(64 * 65536);
    tu_fill(big, 64 * 65536, 3);
    CHECK(ftruncate(dfd, 64 * 65536) == 0, "ftruncate"); /* reads never hit EOF */
    ioeng_t *h = tu_open(be, 64, 16, 0, 0);
    const int n = 2000;
    for (int i = 0; i < n; i++) {
        int k = i % 64;
        ioeng_req_t q = tu_req((i / 64) % 2 ? IOENG_OP_READ : IOENG_OP_WRITE, IOENG_PRIO_NORMAL,
                               dfd, big + (size_t)k * 65536, 65536, (uint64_t)k * 65536);
        recs[i].want = 65536;
        CHECK_EQ(ioeng_submit(h, &q, count_cb, &recs[i]), 0, "submit %d", i);
    }
    CHECK_EQ(tu_engine_close(h), 0, "ioeng_close with IO in flight");
    verify(n, "in-flight close");
    free(big);
    close(dfd);
}

int main(void)
{
    tu_init("test_close", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *init = tu_alloc(256 * 1024);
    tu_pwrite_all(fd, init, 256 * 1024, 0);
    free(init);

    /* 5: idle closes */
    ioeng_t *h = tu_open(be, 128, 0, 0, 0);
    CHECK_EQ(tu_engine_close(h), 0, "close fresh engine");
    h = tu_open(be, 1, 0, 0, 1);
    CHECK_EQ(tu_engine_close(h), 0, "close paused empty engine");

    backlog_close(be, fd);
    submit_during_close(be, fd);
    close_from_callback(be, fd);
    inflight_close(be);
    close(fd);
    printf("test_close [%s]: OK: paused close ran all 10000 callbacks (correct res) before "
           "returning 0; submit during close -> -ESHUTDOWN (x%d, no callback); close from "
           "callback -> -EDEADLK, engine kept working, closed normally (also during close); "
           "close with 2000 O_DIRECT IOs in flight; idle closes\n",
           tu_backend_name(be), NSHUT);
    return 0;
}
