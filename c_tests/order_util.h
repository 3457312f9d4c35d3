/*
 * Ordered-scenario runner shared by test_order and test_backend_parity.
 *
 * A scenario is a list of labelled requests submitted by one thread into an engine
 * opened with depth = batch = 1 and start_paused = 1; after ioeng_resume() the
 * callbacks run in dispatch order, which is recorded (label + res).
 */
#ifndef IOENG_ORDER_UTIL_H
#define IOENG_ORDER_UTIL_H

#include "test_util.h"

#define ORD_MAX 256

typedef struct {
    char label[16];
    ioeng_req_t req;
} ord_item_t;

typedef struct {
    int n;                      /* callbacks recorded */
    char label[ORD_MAX][16];
    int64_t res[ORD_MAX];
    int fired[ORD_MAX];         /* per item index */
    pthread_mutex_t mu;
    tu_waiter_t w;
} ord_log_t;

typedef struct {
    ord_log_t *log;
    int idx;
    const char *label;
} ord_ctx_t;

static inline void ord_cb(void *ctx, int64_t res)
{
    ord_ctx_t *c = ctx;
    ord_log_t *l = c->log;
    pthread_mutex_lock(&l->mu);
    if (l->n < ORD_MAX) {
        snprintf(l->label[l->n], sizeof l->label[0], "%s", c->label);
        l->res[l->n] = res;
    }
    l->n++;
    l->fired[c->idx]++;
    pthread_mutex_unlock(&l->mu);
    tu_waiter_add(&l->w, 1);
}

static inline void ord_log_init(ord_log_t *l)
{
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
    tu_waiter_init(&l->w);
}

/* "H0 H1 R0 ..." of the recorded sequence into buf. */
static inline const char *ord_seq_str(const ord_log_t *l, char *buf, size_t cap)
{
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < l->n && i < ORD_MAX && o + 20 < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%s", i ? " " : "", l->label[i]);
    return buf;
}

/* Runs `items` on a fresh paused depth=batch=1 engine of backend `be`; fills `log`. */
static inline void ord_run(ioeng_backend_t be, const ord_item_t *items, int n, ord_log_t *log)
{
    static ord_ctx_t ctx[ORD_MAX];
    CHECK(n <= ORD_MAX, "scenario too long");
    ord_log_init(log);
    ioeng_t *h = tu_open(be, 1, 1, 0, 1);
    for (int i = 0; i < n; i++) {
        ctx[i].log = log;
        ctx[i].idx = i;
        ctx[i].label = items[i].label;
        int rc = ioeng_submit(h, &items[i].req, ord_cb, &ctx[i]);
        CHECK(rc == 0, "[%s] submit %s = %d", tu_backend_name(be), items[i].label, rc);
    }
    /* Paused: nothing may have run yet. */
    ioeng_stats_t st;
    CHECK(ioeng_stats(h, &st) == 0, "ioeng_stats");
    CHECK_EQ(st.completed, 0, "[%s] completed before resume", tu_backend_name(be));
    CHECK_EQ(st.in_flight, 0, "[%s] in_flight before resume", tu_backend_name(be));
    CHECK_EQ(st.submitted, (uint64_t)n, "[%s] submitted before resume", tu_backend_name(be));
    CHECK_EQ(st.queued_high + st.queued_read + st.queued_write, (uint64_t)n,
             "[%s] queued total before resume", tu_backend_name(be));
    CHECK_EQ(tu_waiter_get(&log->w), 0, "[%s] a callback ran on a paused engine",
             tu_backend_name(be));
    CHECK(ioeng_resume(h) == 0, "ioeng_resume");
    tu_waiter_wait(&log->w, (uint64_t)n, 30);
    tu_close(h);
    CHECK_EQ(log->n, n, "[%s] callbacks", tu_backend_name(be));
    for (int i = 0; i < n; i++)
        CHECK_EQ(log->fired[i], 1, "[%s] callbacks of %s", tu_backend_name(be), items[i].label);
}

/* Asserts that the recorded sequence equals `expected` ("H0 H1 R0 ..."). */
static inline void ord_expect(ioeng_backend_t be, const char *what, const ord_log_t *log,
                              const char *expected)
{
    static char got[ORD_MAX * 17];
    ord_seq_str(log, got, sizeof got);
    if (strcmp(got, expected) != 0)
        FAILF("[%s] %s: wrong callback order\n  expected: %s\n  observed: %s", tu_backend_name(be),
              what, expected, got);
}

/*
 * The canonical fairness scenarios. `rfd` is a buffered tmpfs file of at least
 * 256 KiB; READs read from [0, 128K), WRITEs write to [128K, 256K).
 * Returns the number of items; writes the expected order to `expected`.
 */
enum { ORD_HIGH_FIRST = 0, ORD_RW_ONLY = 1, ORD_RW_WRITES_FIRST = 2, ORD_HIGH_LATE = 3,
       ORD_NSCEN = 4 };

static unsigned char ord_bufs[ORD_MAX][4096] __attribute__((aligned(4096)));

static inline int ord_add(ord_item_t *it, int n, const char *label, ioeng_op_t op, ioeng_prio_t prio,
                          int fd)
{
    uint64_t len = (n % 2) ? 512 : 4096;
    uint64_t off = (uint64_t)(n % 32) * 4096 + (op == IOENG_OP_READ ? 0 : 128 * 1024);
    void *buf = ord_bufs[n];
    if (op == IOENG_OP_WRITE)
        memset(buf, 'a' + n % 26, len);
    if (op == IOENG_OP_FSYNC || op == IOENG_OP_FDATASYNC) {
        buf = NULL;
        len = 0;
        off = 0;
    }
    snprintf(it[n].label, sizeof it[n].label, "%s", label);
    it[n].req = tu_req(op, prio, fd, buf, len, off);
    return n + 1;
}

static inline int ord_scenario(int which, int fd, ord_item_t *it, char *expected, size_t cap,
                               const char **name)
{
    int n = 0;
    char lb[16];
    size_t o = 0;
    expected[0] = 0;
#define ORD_EXP(s) (o += (size_t)snprintf(expected + o, cap - o, "%s%s", o ? " " : "", (s)))
    switch (which) {
    case ORD_HIGH_FIRST:
        /* R0..R3, W0..W3, then H0 (READ), H1 (WRITE). Rounds 0,1 = HIGH; round 2 is
         * even -> READ first. */
        *name = "R0-3 W0-3 H0 H1";
        for (int i = 0; i < 4; i++) { snprintf(lb, sizeof lb, "R%d", i); n = ord_add(it, n, lb, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd); }
        for (int i = 0; i < 4; i++) { snprintf(lb, sizeof lb, "W%d", i); n = ord_add(it, n, lb, IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd); }
        n = ord_add(it, n, "H0", IOENG_OP_READ, IOENG_PRIO_HIGH, fd);
        n = ord_add(it, n, "H1", IOENG_OP_WRITE, IOENG_PRIO_HIGH, fd);
        ORD_EXP("H0 H1 R0 W0 R1 W1 R2 W2 R3 W3");
        break;
    case ORD_RW_ONLY:
        /* 50 READs then 50 WRITEs: strict alternation, READ first (round 0). */
        *name = "R0-49 W0-49";
        for (int i = 0; i < 50; i++) { snprintf(lb, sizeof lb, "R%d", i); n = ord_add(it, n, lb, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd); }
        for (int i = 0; i < 50; i++) { snprintf(lb, sizeof lb, "W%d", i); n = ord_add(it, n, lb, IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd); }
        for (int i = 0; i < 50; i++) {
            snprintf(lb, sizeof lb, "R%d", i); ORD_EXP(lb);
            snprintf(lb, sizeof lb, "W%d", i); ORD_EXP(lb);
        }
        break;
    case ORD_RW_WRITES_FIRST:
        /* WRITE-queue items submitted first (W2 is an FSYNC, W3 an FDATASYNC: they go
         * to the WRITE queue); order still starts with READ. */
        *name = "W0-3(fsync,fdatasync) R0-3";
        n = ord_add(it, n, "W0", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd);
        n = ord_add(it, n, "W1", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd);
        n = ord_add(it, n, "W2", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, fd);
        n = ord_add(it, n, "W3", IOENG_OP_FDATASYNC, IOENG_PRIO_NORMAL, fd);
        for (int i = 0; i < 4; i++) { snprintf(lb, sizeof lb, "R%d", i); n = ord_add(it, n, lb, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd); }
        ORD_EXP("R0 W0 R1 W1 R2 W2 R3 W3");
        break;
    case ORD_HIGH_LATE:
        /* HIGH requests submitted in between and after queued normal ones (one is an
         * FSYNC): all HIGH first, in FIFO order. Rounds that HIGH filled alone do not
         * advance the READ/WRITE alternation, so the first normal round is READ first. */
        *name = "R0 R1 W0 W1 H0 R2 W2 H1(fsync) H2";
        n = ord_add(it, n, "R0", IOENG_OP_READ, IOENG_PRIO_NORMAL, fd);
        n = ord_add(it, n, "R1", IOENG_OP_READ, IOENG_PRIO_NORMAL, fd);
        n = ord_add(it, n, "W0", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd);
        n = ord_add(it, n, "W1", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd);
        n = ord_add(it, n, "H0", IOENG_OP_WRITE, IOENG_PRIO_HIGH, fd);
        n = ord_add(it, n, "R2", IOENG_OP_READ, IOENG_PRIO_NORMAL, fd);
        n = ord_add(it, n, "W2", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd);
        n = ord_add(it, n, "H1", IOENG_OP_FSYNC, IOENG_PRIO_HIGH, fd);
        n = ord_add(it, n, "H2", IOENG_OP_READ, IOENG_PRIO_HIGH, fd);
        ORD_EXP("H0 H1 H2 R0 W0 R1 W1 R2 W2");
        break;
    default:
        FAILF("bad scenario %d", which);
    }
#undef ORD_EXP
    return n;
}

/* Expected res of item i of a scenario (all requests are in range: full len; syncs: 0). */
static inline int64_t ord_expected_res(const ord_item_t *it)
{
    if (it->req.op == IOENG_OP_FSYNC || it->req.op == IOENG_OP_FDATASYNC)
        return 0;
    return (int64_t)it->req.len;
}

#endif /* IOENG_ORDER_UTIL_H */
