/*
 * ioeng_submit_batch (ABI v1): a batch is accepted whole and each request gets its own
 * ctx (or NULL with ctxs == NULL); an invalid request at index k returns k with exactly
 * k callbacks; an invalid first request returns its -errno with none; n == 0 returns 0;
 * a full queue ends the prefix; 32 requests batched on a paused engine go to the kernel
 * in one submit call after resume.
 */
#include "test_util.h"

static int fired[256];
static void *ctx_seen[256];
static int null_ctx_calls;
static int64_t res_seen[256];
static tu_waiter_t waiter;

static void batch_cb(void *ctx, int64_t res)
{
    if (ctx == NULL) {
        __atomic_add_fetch(&null_ctx_calls, 1, __ATOMIC_SEQ_CST);
    } else {
        int i = (int)((int *)ctx - (int *)fired);
        __atomic_add_fetch(&fired[i], 1, __ATOMIC_SEQ_CST);
        ctx_seen[i] = ctx;
        res_seen[i] = res;
    }
    tu_waiter_add(&waiter, 1);
}

int main(void)
{
    tu_init("test_submit_batch", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&waiter);
    int shm = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *data = tu_alloc(1 << 20), *rbuf = tu_alloc(1 << 20);
    tu_fill(data, 1 << 20, 8);
    tu_pwrite_all(shm, data, 1 << 20, 0);

    ioeng_t *h = tu_open(be, 32, 0, 0, 0);
    ioeng_req_t reqs[64];
    void *ctxs[64];
    for (int i = 0; i < 64; i++) {
        reqs[i] = tu_req(IOENG_OP_READ, 0, shm, rbuf + i * 4096, 4096, (uint64_t)i * 4096);
        ctxs[i] = &fired[i];
    }
    CHECK(ioeng_submit_batch(h, reqs, 0, batch_cb, ctxs) == 0, "n = 0");
    CHECK(ioeng_submit_batch(NULL, reqs, 1, batch_cb, ctxs) == -EINVAL, "NULL h");
    CHECK(ioeng_submit_batch(h, reqs, 1, NULL, ctxs) == -EINVAL, "NULL cb");
    CHECK(ioeng_submit_batch(h, NULL, 1, batch_cb, ctxs) == -EINVAL, "NULL reqs");
    int rc = ioeng_submit_batch(h, reqs, 64, batch_cb, ctxs);
    CHECK(rc == 64, "batch of 64 = %s", tu_errname(rc));
    tu_waiter_wait(&waiter, 64, 10);
    for (int i = 0; i < 64; i++)
        CHECK(fired[i] == 1 && ctx_seen[i] == &fired[i] && res_seen[i] == 4096,
              "request %d: %d callbacks, res %s", i, fired[i], tu_errname(res_seen[i]));
    CHECK(memcmp(rbuf, data, 64 * 4096) == 0, "batch read data");

    /* ctxs == NULL: every callback gets NULL. */
    rc = ioeng_submit_batch(h, reqs, 16, batch_cb, NULL);
    CHECK(rc == 16, "batch with NULL ctxs = %s", tu_errname(rc));
    tu_waiter_wait(&waiter, 80, 10);
    CHECK(null_ctx_calls == 16, "NULL ctx callbacks %d", null_ctx_calls);

    /* Invalid request at index k: returns k, exactly k callbacks. */
    memset(fired, 0, sizeof fired);
    const struct {
        int k;
        const char *what;
    } bad[] = { { 5, "unknown op" }, { 1, "fd -1" }, { 9, "DSYNC on READ" }, { 3, "len 0" } };
    uint64_t expect = 80;
    for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++) {
        int k = bad[b].k;
        ioeng_req_t copy[10];
        memcpy(copy, reqs, sizeof copy);
        if (b == 0)
            copy[k].op = 99;
        else if (b == 1)
            copy[k].fd = -1;
        else if (b == 2)
            copy[k].flags = IOENG_REQ_DSYNC;
        else
            copy[k].len = 0;
        memset(fired, 0, sizeof fired);
        rc = ioeng_submit_batch(h, copy, 10, batch_cb, ctxs);
        CHECK(rc == k, "invalid (%s) at index %d: returned %s", bad[b].what, k, tu_errname(rc));
        expect += (uint64_t)k;
        tu_waiter_wait(&waiter, expect, 10);
        tu_wait_idle(h, expect);
        usleep(20000);
        int total = 0;
        for (int i = 0; i < 10; i++) {
            CHECK(fired[i] == (i < k), "index %d: %d callbacks (k=%d)", i, fired[i], k);
            total += fired[i];
        }
        CHECK(total == k, "%d callbacks, want %d", total, k);
    }
    /* Invalid first request: its errno, no callback. */
    ioeng_req_t first_bad[2] = { reqs[0], reqs[1] };
    first_bad[0].fd = -3;
    CHECK(ioeng_submit_batch(h, first_bad, 2, batch_cb, ctxs) == -EBADF, "first invalid: -EBADF");
    first_bad[0].fd = shm;
    first_bad[0].reserved = 1;
    CHECK(ioeng_submit_batch(h, first_bad, 2, batch_cb, ctxs) == -EINVAL, "first invalid: -EINVAL");
    usleep(20000);
    CHECK(tu_waiter_get(&waiter) == expect, "callbacks for a refused batch");
    tu_close(h);

    /* A full queue ends the prefix; a paused batch dispatches in one kernel call. */
    h = tu_open(be, 32, 0, 10, 1);
    memset(fired, 0, sizeof fired);
    rc = ioeng_submit_batch(h, reqs, 16, batch_cb, ctxs);
    CHECK(rc == 10, "batch of 16 into a queue of capacity 10 = %s", tu_errname(rc));
    CHECK(ioeng_submit_batch(h, reqs, 4, batch_cb, ctxs) == -EAGAIN, "full queue: -EAGAIN");
    tu_close(h);
    expect += 10;
    CHECK(tu_waiter_get(&waiter) == expect, "close ran the 10 accepted");
    h = tu_open(be, 32, 0, 0, 1);
    rc = ioeng_submit_batch(h, reqs, 32, batch_cb, ctxs);
    CHECK(rc == 32, "batch of 32 = %s", tu_errname(rc));
    CHECK(ioeng_resume(h) == 0, "resume");
    ioeng_stats_t s = tu_wait_idle(h, 32);
    CHECK(s.kernel_submit_calls == 1, "32 batched requests took %" PRIu64 " kernel submit calls",
          s.kernel_submit_calls);
    tu_close(h);
    printf("test_submit_batch [%s]: OK: 64 accepted with their ctxs, NULL ctxs, invalid at k "
           "returns k with k callbacks (4 cases), invalid first -> its errno, full queue ends the "
           "prefix, 32 batched -> 1 kernel submit call\n",
           tu_backend_name(be));
    return 0;
}
