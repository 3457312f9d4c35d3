/*
 * Batching visible in ioeng_stats: 1000 requests queued on a paused engine,
 * then resumed. Depth 1024 / batch 128 (everything fits): exactly ceil(1000/128) = 8
 * kernel submit calls. Depth 128 (batch = depth): well below 1000 (<= 500). Depth 128 /
 * batch 16: at least ceil(1000/16) = 63 (a call never carries more than `batch`).
 * Every counter must be exact once idle.
 */
#include "test_util.h"

#define N 1000

static unsigned char bufs[N][4096] __attribute__((aligned(4096)));
static int fired[N];
static int64_t bad_res_idx = -1, bad_res;
static tu_waiter_t w;

static void cb(void *ctx, int64_t res)
{
    int i = (int)(intptr_t)ctx;
    __atomic_add_fetch(&fired[i], 1, __ATOMIC_SEQ_CST);
    if (res != 4096 && bad_res_idx < 0) {
        bad_res_idx = i;
        bad_res = res;
    }
    tu_waiter_add(&w, 1);
}

static uint64_t run(ioeng_backend_t be, int fd, uint32_t depth, uint32_t batch)
{
    tu_waiter_init(&w);
    memset(fired, 0, sizeof fired);
    bad_res_idx = -1;
    ioeng_t *h = tu_open(be, depth, batch, 0, 1);
    uint64_t nh = 0, nr = 0, nw = 0;
    for (int i = 0; i < N; i++) {
        ioeng_op_t op = (i % 3 == 2) ? IOENG_OP_WRITE : IOENG_OP_READ;
        ioeng_prio_t pr = (i % 10 == 0) ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL;
        if (pr == IOENG_PRIO_HIGH)
            nh++;
        else if (op == IOENG_OP_READ)
            nr++;
        else
            nw++;
        uint64_t off = (uint64_t)(i % 256) * 4096 + (op == IOENG_OP_WRITE ? (1u << 20) : 0);
        ioeng_req_t q = tu_req(op, pr, fd, bufs[i], 4096, off);
        int rc = ioeng_submit(h, &q, cb, (void *)(intptr_t)i);
        CHECK(rc == 0, "submit %d = %d", i, rc);
    }
    ioeng_stats_t s;
    CHECK(ioeng_stats(h, &s) == 0, "stats");
    CHECK_EQ(s.submitted, N, "submitted while paused");
    CHECK_EQ(s.completed, 0, "completed while paused");
    CHECK_EQ(s.in_flight, 0, "in_flight while paused");
    CHECK_EQ(s.kernel_submit_calls, 0, "kernel_submit_calls while paused");
    CHECK_EQ(s.queued_high, nh, "queued_high while paused");
    CHECK_EQ(s.queued_read, nr, "queued_read while paused");
    CHECK_EQ(s.queued_write, nw, "queued_write while paused");

    CHECK(ioeng_resume(h) == 0, "resume");
    CHECK(ioeng_resume(h) == 0, "second resume (idempotent)");
    tu_waiter_wait(&w, N, 30);
    s = tu_wait_idle(h, N);
    CHECK_EQ(s.submitted, N, "submitted");
    CHECK_EQ(s.completed, N, "completed");
    CHECK_EQ(s.in_flight, 0, "in_flight");
    CHECK_EQ(s.queued_high + s.queued_read + s.queued_write, 0, "queued");
    uint32_t eff_batch = batch ? batch : depth;
    uint64_t lower = (N + eff_batch - 1) / eff_batch;
    /* With all N requests fitting in `depth` slots every round is full: exactly
     * ceil(N / batch) calls (plus resubmissions, if any). Otherwise slots come back
     * while completions trickle in and rounds may be partial; the contract then only
     * bounds the count from below; "well below N" (<= N/2) is asserted (observed:
     * aio 9..90, uring 40..230 on an idle 2-core VM). */
    uint64_t upper = depth >= N ? lower + s.resubmits : N / 2;
    if (s.kernel_submit_calls < lower) {
        /* Distinguish "a call carried > batch IOs" from "the counter is bumped only after
         * the IOs of that call already completed" (stats not exact once idle). */
        ioeng_stats_t s2;
        usleep(100000);
        CHECK(ioeng_stats(h, &s2) == 0, "stats");
        CHECK(s2.kernel_submit_calls == s.kernel_submit_calls,
              "depth %u batch %u: stats not exact when idle: all %d callbacks had returned "
              "(completed=%" PRIu64 ", in_flight=0, queues empty) but kernel_submit_calls was %"
              PRIu64 " and became %" PRIu64 " 100 ms later", depth, batch, N, s.completed,
              s.kernel_submit_calls, s2.kernel_submit_calls);
    }
    CHECK(s.kernel_submit_calls >= lower,
          "depth %u batch %u: kernel_submit_calls %" PRIu64 " < ceil(%d/%u) = %" PRIu64
          ": a submit call carried more than `batch` IOs",
          depth, batch, s.kernel_submit_calls, N, eff_batch, lower);
    CHECK(s.kernel_submit_calls <= upper,
          "depth %u batch %u: kernel_submit_calls %" PRIu64 " > %" PRIu64 ": no batching",
          depth, batch, s.kernel_submit_calls, upper);
    tu_close(h);
    CHECK(bad_res_idx < 0, "request %" PRId64 " res %s, expected 4096", bad_res_idx,
          tu_errname(bad_res));
    for (int i = 0; i < N; i++)
        CHECK_EQ(fired[i], 1, "callbacks of request %d", i);
    tu_waiter_destroy(&w);
    return s.kernel_submit_calls;
}

int main(void)
{
    tu_init("test_batch", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *init = tu_alloc(2u << 20);
    tu_fill(init, 2u << 20, 11);
    tu_pwrite_all(fd, init, 2u << 20, 0);
    free(init);

    uint64_t c0 = run(be, fd, 1024, 128);
    uint64_t c1 = run(be, fd, 128, 0);
    uint64_t c2 = run(be, fd, 128, 16);
    close(fd);
    printf("test_batch [%s]: OK: 1000 reqs queued paused; kernel submit calls: depth 1024 "
           "batch 128: %" PRIu64 " (== 8); depth 128: %" PRIu64 " (8..500); depth 128 batch 16: %"
           PRIu64 " (63..500); counters exact\n", tu_backend_name(be), c0, c1, c2);
    return 0;
}
