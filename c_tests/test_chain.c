/*
 * Callback chain: each callback submits the next request from inside the callback,
 * 10 000 links. All must run, in order, each exactly once, with correct results and
 * data; ioeng_close() then returns 0. A second run drives 4 chains concurrently
 * (2 500 links each) to exercise callback-side submits racing each other.
 */
#include "test_util.h"

#define NLINK 10000
#define NCHAIN_PAR 4

typedef struct chain chain_t;
typedef struct {
    chain_t *c;
    int idx;
    int fired;
    int64_t res;
} link_t;

struct chain {
    ioeng_t *h;
    int fd;
    int n;           /* links */
    int next;        /* next expected link index */
    int order_err;   /* first out-of-order index + 1 */
    int submit_err;  /* first failing submit rc */
    int bad_res;     /* first link with a wrong res + 1 */
    int data_err;
    link_t *links;
    unsigned char *buf; /* per chain 4 KiB */
    uint64_t base;      /* file offset of this chain's area */
    tu_waiter_t *w;
};

static ioeng_req_t link_req(chain_t *c, int i)
{
    /* WRITE, READ, HIGH READ in rotation, all three at the same 4 KiB block; every
     * 97th link is an FDATASYNC instead */
    uint64_t off = c->base + (uint64_t)((i - i % 3) % 16) * 4096;
    if (i % 97 == 96)
        return tu_req(IOENG_OP_FDATASYNC, IOENG_PRIO_NORMAL, c->fd, NULL, 0, 0);
    switch (i % 3) {
    case 0: return tu_req(IOENG_OP_WRITE, IOENG_PRIO_NORMAL, c->fd, c->buf, 4096, off);
    case 1: return tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, c->fd, c->buf, 4096, off);
    default: return tu_req(IOENG_OP_READ, IOENG_PRIO_HIGH, c->fd, c->buf, 4096, off);
    }
}

static void link_cb(void *ctx, int64_t res)
{
    link_t *l = ctx;
    chain_t *c = l->c;
    l->res = res;
    l->fired++;
    if (l->idx != c->next && !c->order_err)
        c->order_err = l->idx + 1;
    c->next = l->idx + 1;
    ioeng_req_t q = link_req(c, l->idx);
    int64_t want = (q.op == IOENG_OP_FDATASYNC) ? 0 : 4096;
    if (res != want && !c->bad_res)
        c->bad_res = l->idx + 1;
    /* WRITE link 3k stored k*3 as first word; READ links 3k+1, 3k+2 check it */
    int wi = l->idx - l->idx % 3;
    if (q.op == IOENG_OP_READ && wi % 97 != 96) {
        uint32_t v;
        memcpy(&v, c->buf, 4);
        if (v != (uint32_t)wi && !c->data_err)
            c->data_err = l->idx + 1;
    }
    if (l->idx + 1 < c->n) {
        link_t *nl = &c->links[l->idx + 1];
        ioeng_req_t nq = link_req(c, nl->idx);
        if (nq.op == IOENG_OP_WRITE) {
            uint32_t v = (uint32_t)nl->idx;
            memcpy(c->buf, &v, 4);
        }
        int rc = ioeng_submit(c->h, &nq, link_cb, nl);
        if (rc != 0) {
            if (!c->submit_err)
                c->submit_err = rc;
            tu_waiter_add(c->w, 1); /* chain ends */
        }
    } else {
        tu_waiter_add(c->w, 1);
    }
}

static void chain_init(chain_t *c, ioeng_t *h, int fd, int n, uint64_t base, tu_waiter_t *w)
{
    memset(c, 0, sizeof *c);
    c->h = h;
    c->fd = fd;
    c->n = n;
    c->base = base;
    c->w = w;
    c->links = calloc((size_t)n, sizeof(link_t));
    c->buf = tu_alloc(4096);
    CHECK(c->links, "calloc");
    for (int i = 0; i < n; i++) {
        c->links[i].c = c;
        c->links[i].idx = i;
        c->links[i].res = INT64_MIN;
    }
}

static void chain_start(chain_t *c)
{
    ioeng_req_t q = link_req(c, 0);
    uint32_t v = 0;
    memcpy(c->buf, &v, 4);
    CHECK_EQ(ioeng_submit(c->h, &q, link_cb, &c->links[0]), 0, "submit first link");
}

static void chain_verify(chain_t *c, const char *what)
{
    CHECK(c->submit_err == 0, "%s: submit from callback failed: %s", what,
          tu_errname(c->submit_err));
    CHECK(c->order_err == 0, "%s: link %d ran out of order", what, c->order_err - 1);
    CHECK_EQ(c->next, c->n, "%s: links that ran", what);
    CHECK(c->bad_res == 0, "%s: link %d res %s", what, c->bad_res - 1,
          c->bad_res ? tu_errname(c->links[c->bad_res - 1].res) : "");
    CHECK(c->data_err == 0, "%s: link %d read back wrong data", what, c->data_err - 1);
    for (int i = 0; i < c->n; i++)
        CHECK_EQ(c->links[i].fired, 1, "%s: callbacks of link %d", what, i);
    free(c->links);
    free(c->buf);
}

int main(void)
{
    tu_init("test_chain", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    tu_waiter_t w;
    tu_waiter_init(&w);

    /* one chain of 10 000 */
    static chain_t c1;
    ioeng_t *h = tu_open(be, 8, 0, 0, 0);
    chain_init(&c1, h, fd, NLINK, 0, &w);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    chain_start(&c1);
    tu_waiter_wait(&w, 1, 60);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ioeng_stats_t st = tu_wait_idle(h, NLINK);
    CHECK_EQ(st.submitted, NLINK, "submitted");
    CHECK_EQ(st.completed, NLINK, "completed");
    tu_close(h);
    chain_verify(&c1, "single chain");
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

    /* 4 concurrent chains */
    static chain_t cp[NCHAIN_PAR];
    tu_waiter_t w2;
    tu_waiter_init(&w2);
    h = tu_open(be, 4, 2, 0, 0);
    for (int i = 0; i < NCHAIN_PAR; i++)
        chain_init(&cp[i], h, fd, NLINK / NCHAIN_PAR, (uint64_t)(i + 1) << 20, &w2);
    for (int i = 0; i < NCHAIN_PAR; i++)
        chain_start(&cp[i]);
    tu_waiter_wait(&w2, NCHAIN_PAR, 60);
    st = tu_wait_idle(h, NLINK);
    CHECK_EQ(st.completed, NLINK, "parallel chains: completed");
    tu_close(h);
    for (int i = 0; i < NCHAIN_PAR; i++)
        chain_verify(&cp[i], "parallel chain");

    close(fd);
    printf("test_chain [%s]: OK: 10000-link chain submitted from callbacks ran in order, each "
           "once, res + data checked (%.0f links/s); 4 concurrent chains x 2500 likewise; close "
           "returned 0\n", tu_backend_name(be), NLINK / secs);
    tu_waiter_destroy(&w);
    tu_waiter_destroy(&w2);
    return 0;
}
