/*
 * ioeng_cancel (ABI v1):
 *  - on a paused engine, queued requests with the tag complete with -ECANCELED and
 *    kernel_submit_calls shows none of them reached the kernel; the others run after
 *    resume; the return value counts them; tag 0 / NULL h are -EINVAL;
 *  - a request between kernel IOs (an empty O_NONBLOCK pipe read being retried, holding
 *    the only slot) is cancelled on both backends, together with a queued one;
 *  - ioeng_cancel from a callback cancels the queued rest of a tag (no deadlock);
 *  - a pipe read cancelled after part of it arrived gets those bytes as its result
 *    (they left the pipe and cannot go back), on both backends;
 *  - io_uring: an in-flight blocked pipe read completes with -ECANCELED (ASYNC_CANCEL).
 * Exactly one callback per request throughout; stats.cancelled counts them.
 */
#include <stdatomic.h>

#include "test_util.h"

#include <sys/ioctl.h>

static tu_recs_t recs;

/* For 2b: the first request's callback calls ioeng_cancel(h, 40). */
static struct {
    ioeng_t *h;
    int found;
    int64_t res;
} cancel_from_cb;

static void cancel_cb(void *ctx, int64_t res)
{
    (void)ctx;
    cancel_from_cb.res = res;
    cancel_from_cb.found = ioeng_cancel(cancel_from_cb.h, 40);
    tu_waiter_add(&recs.w, 1);
}

static ioeng_req_t tagged(ioeng_op_t op, int fd, void *buf, uint64_t len, uint64_t off,
                          uint64_t tag)
{
    ioeng_req_t q = tu_req(op, 0, fd, buf, len, off);
    q.tag = tag;
    return q;
}

static atomic_int inflight_fired;

static void count_cb(void *ctx, int64_t res)
{
    (void)ctx;
    CHECK(res == -ECANCELED, "cancelled pipe read: %s", tu_errname(res));
    atomic_fetch_add(&inflight_fired, 1);
}

static void sub(ioeng_t *h, const char *what, ioeng_req_t q, int64_t want)
{
    CHECK(recs.n < TU_MAX_RECS, "too many");
    tu_rec_submit(h, &recs.r[recs.n++], &recs.w, what, q, want);
}

int main(void)
{
    tu_init("test_cancel", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&recs.w);
    int shm = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *data = tu_alloc(65536), *rbuf = tu_alloc(65536);
    tu_fill(data, 65536, 1);
    tu_pwrite_all(shm, data, 65536, 0);

    /* 1. Paused engine. */
    ioeng_t *h = tu_open(be, 8, 0, 0, 1);
    for (int i = 0; i < 40; i++)
        sub(h, "queued READ tag 7", tagged(IOENG_OP_READ, shm, rbuf + i * 1024, 1024,
                                           (uint64_t)i * 1024, 7), -ECANCELED);
    for (int i = 0; i < 10; i++)
        sub(h, "queued READ tag 8", tagged(IOENG_OP_READ, shm, rbuf + 40960 + i * 1024, 1024,
                                           40960 + (uint64_t)i * 1024, 8), 1024);
    sub(h, "queued WRITE tag 7", tagged(IOENG_OP_WRITE, shm, data, 4096, 1 << 20, 7), -ECANCELED);
    sub(h, "queued FSYNC untagged", tagged(IOENG_OP_FSYNC, shm, NULL, 0, 0, 0), 0);
    CHECK(ioeng_cancel(h, 0) == -EINVAL, "tag 0 must be -EINVAL");
    CHECK(ioeng_cancel(NULL, 7) == -EINVAL, "NULL h must be -EINVAL");
    CHECK(ioeng_cancel(h, 12345) == 0, "unknown tag must give 0");
    int n = ioeng_cancel(h, 7);
    CHECK(n == 41, "ioeng_cancel(7) = %d, want 41", n);
    tu_waiter_wait(&recs.w, 41, 10);
    ioeng_stats_t s = tu_stats(h);
    CHECK(s.kernel_submit_calls == 0, "cancelled requests reached the kernel (%" PRIu64 " calls)",
          s.kernel_submit_calls);
    CHECK(s.cancelled == 41 && s.completed == 41, "cancelled %" PRIu64 " completed %" PRIu64,
          s.cancelled, s.completed);
    CHECK(s.queued_read == 10 && s.queued_write == 1, "queued %" PRIu64 "/%" PRIu64,
          s.queued_read, s.queued_write);
    CHECK(ioeng_cancel(h, 7) == 0, "a second cancel finds nothing");
    CHECK(ioeng_resume(h) == 0, "resume");
    tu_waiter_wait(&recs.w, 52, 10);
    CHECK(memcmp(rbuf + 40960, data + 40960, 10240) == 0, "tag 8 reads' data");
    s = tu_wait_idle(h, 52);
    CHECK(s.cancelled == 41, "cancelled = %" PRIu64, s.cancelled);
    uint64_t paused_calls = s.kernel_submit_calls;
    tu_close(h);

    /* 2. The only slot held by a read of an empty O_NONBLOCK pipe (on AIO between kernel
     *    IOs: the kernel says EAGAIN and the engine retries; on io_uring in the kernel),
     *    one more of its tag queued. */
    int np[2];
    CHECK(pipe2(np, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    char pbuf[8];
    h = tu_open(be, 1, 0, 0, 0);
    int base = recs.n;
    sub(h, "READ empty O_NONBLOCK pipe tag 20", tagged(IOENG_OP_READ, np[0], pbuf, 8, 0, 20),
        -ECANCELED);
    sub(h, "READ queued behind it, tag 20", tagged(IOENG_OP_READ, shm, rbuf, 512, 0, 20),
        -ECANCELED);
    sub(h, "READ queued behind it, tag 21", tagged(IOENG_OP_READ, shm, rbuf + 512, 512, 512, 21),
        512);
    /* AIO gets EAGAIN back and retries; io_uring waits for the pipe in the kernel. */
    int waiting = 0;
    for (int i = 0; i < 2000 && !waiting; i++) {
        s = tu_stats(h);
        waiting = be == IOENG_BACKEND_AIO ? s.resubmits > 2 : s.in_flight == 1;
        usleep(1000);
    }
    CHECK(waiting, "the pipe read should be waiting (retrying on AIO, in the kernel on io_uring)");
    n = ioeng_cancel(h, 20);
    CHECK(n == 2, "ioeng_cancel(20) = %d, want 2", n);
    tu_waiter_wait(&recs.w, (uint64_t)base + 3, 10);
    s = tu_wait_idle(h, 3);
    CHECK(s.cancelled == 2, "cancelled = %" PRIu64, s.cancelled);
    tu_close(h);

    /* 2b. ioeng_cancel from a callback: the first read's callback cancels the queued
     *     rest of tag 40 (no deadlock; their callbacks run after it returned). */
    h = tu_open(be, 1, 0, 0, 1);
    base = recs.n;
    cancel_from_cb.h = h;
    cancel_from_cb.found = -1;
    ioeng_req_t first = tagged(IOENG_OP_READ, shm, rbuf, 512, 0, 41);
    CHECK(ioeng_submit(h, &first, cancel_cb, NULL) == 0, "submit");
    for (int i = 0; i < 5; i++)
        sub(h, "READ tag 40 cancelled from a callback", tagged(IOENG_OP_READ, shm, rbuf + 512, 512,
                                                              512, 40), -ECANCELED);
    CHECK(ioeng_resume(h) == 0, "resume");
    tu_waiter_wait(&recs.w, (uint64_t)base + 6, 10);
    CHECK(cancel_from_cb.found == 5, "ioeng_cancel in a callback = %d, want 5", cancel_from_cb.found);
    CHECK(cancel_from_cb.res == 512, "the cancelling request's own res %s",
          tu_errname(cancel_from_cb.res));
    tu_close(h);

    /* 2c. A read of 8 bytes from a pipe holding 3, cancelled once those 3 left the pipe
     *     and the rest is awaited (on AIO retried, on io_uring in the kernel). */
    int sp[2];
    CHECK(pipe2(sp, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    char sbuf[8] = {0};
    CHECK(write(sp[1], "xyz", 3) == 3, "pipe write");
    h = tu_open(be, 1, 0, 0, 0);
    base = recs.n;
    sub(h, "READ 8 of a pipe holding 3, cancelled after them, tag 50",
        tagged(IOENG_OP_READ, sp[0], sbuf, 8, 0, 50), 3);
    int left = 3, continued = 0;
    for (int i = 0; i < 2000 && !(left == 0 && continued); i++) {
        CHECK(ioctl(sp[0], FIONREAD, &left) == 0, "FIONREAD: %s", strerror(errno));
        continued = tu_stats(h).resubmits >= 1;
        usleep(1000);
    }
    CHECK(left == 0 && continued, "the pipe read should have taken 3 bytes and be continuing");
    CHECK(recs.r[base].fired == 0, "the partial pipe read completed before the cancel");
    n = ioeng_cancel(h, 50);
    CHECK(n == 1, "ioeng_cancel(50) = %d, want 1", n);
    tu_waiter_wait(&recs.w, (uint64_t)base + 1, 10);
    CHECK(memcmp(sbuf, "xyz", 3) == 0, "the 3 bytes taken from the pipe");
    s = tu_wait_idle(h, 1);
    CHECK(s.cancelled == 0, "a callback with bytes counted as cancelled (%" PRIu64 ")",
          s.cancelled);
    tu_close(h);
    close(sp[0]);
    close(sp[1]);

    /* 3. io_uring: an in-flight read of an empty blocking pipe. */
    const char *inflight = "in-flight blocking pipe read not tried (AIO would block io_submit)";
    if (be == IOENG_BACKEND_URING) {
        int bp[2];
        CHECK(pipe2(bp, O_CLOEXEC) == 0, "pipe2");
        h = tu_open(be, 4, 0, 0, 0);
        base = recs.n;
        sub(h, "READ blocked pipe tag 30", tagged(IOENG_OP_READ, bp[0], pbuf, 8, 0, 30),
            -ECANCELED);
        for (int i = 0; i < 2000 && tu_stats(h).in_flight < 1; i++)
            usleep(1000);
        CHECK(tu_stats(h).in_flight == 1, "the pipe read should be in the kernel");
        usleep(20000);
        CHECK(recs.r[base].fired == 0, "the blocked read completed early");
        n = ioeng_cancel(h, 30);
        CHECK(n == 1, "ioeng_cancel(30) = %d, want 1", n);
        tu_waiter_wait(&recs.w, (uint64_t)base + 1, 10);
        /* The slot works again afterwards, and the cancel's own completion did not
         * count as anyone's. */
        sub(h, "READ after the cancel", tagged(IOENG_OP_READ, shm, rbuf, 4096, 0, 30), 4096);
        tu_waiter_wait(&recs.w, (uint64_t)base + 2, 10);
        s = tu_wait_idle(h, 2);
        CHECK(s.cancelled == 1 && s.in_flight == 0, "cancelled %" PRIu64 " in_flight %" PRIu64,
              s.cancelled, s.in_flight);
        tu_close(h);

        /* The ASYNC_CANCEL itself is no request's IO: stats.in_flight never counts it
         * (at depth 1 it would read 2 while a cancel's completion waits to be reaped
         * and the next read is already in the kernel). */
        ioeng_t *h1 = tu_open(be, 1, 1, 0, 0);
        uint64_t max_in_flight = 0;
        for (int round = 0; round < 300; round++) {
            int fired_before = atomic_load(&inflight_fired);
            ioeng_req_t q = tagged(IOENG_OP_READ, bp[0], pbuf, 8, 0, 31);
            CHECK_EQ(ioeng_submit(h1, &q, count_cb, NULL), 0, "submit pipe read %d", round);
            /* Bounded by time, not by a count of tries: on a loaded 2-core machine the
             * submitter may not run for a while after ioeng_submit returns. */
            uint64_t seen = 0;
            for (uint64_t t0 = tu_now_ns(); seen == 0 && tu_now_ns() - t0 < 5000000000ull;) {
                seen = tu_stats(h1).in_flight;
                if (seen > max_in_flight)
                    max_in_flight = seen;
            }
            CHECK(seen >= 1, "round %d: the pipe read never reached the kernel", round);
            CHECK_EQ(ioeng_cancel(h1, 31), 1, "cancel round %d", round);
            for (int i = 0; i < 20000000 && atomic_load(&inflight_fired) == fired_before; i++) {
                uint64_t now = tu_stats(h1).in_flight;
                if (now > max_in_flight)
                    max_in_flight = now;
            }
            CHECK(atomic_load(&inflight_fired) > fired_before, "round %d: no callback", round);
        }
        tu_close(h1);
        CHECK(max_in_flight <= 1, "stats.in_flight reached %" PRIu64 " at depth 1 with cancels",
              max_in_flight);
        inflight = "in-flight blocked pipe read -> -ECANCELED (ASYNC_CANCEL); in_flight <= depth "
                   "across 300 cancels at depth 1";
    }
    usleep(20000);
    CHECK(tu_recs_report(&recs, be) == 0, "wrong results (listed above)");
    printf("test_cancel [%s]: OK: 41 queued cancelled on a paused engine with 0 kernel submit "
           "calls (%" PRIu64 " after resume, for the others); retrying slot + queued cancelled; "
           "5 cancelled from a callback; a partial pipe read cancelled -> its 3 bytes; "
           "%s\n",
           tu_backend_name(be), paused_calls, inflight);
    return 0;
}
