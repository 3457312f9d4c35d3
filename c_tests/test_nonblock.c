/*
 * An fd that keeps returning EAGAIN: a READ of an empty O_NONBLOCK pipe never
 * surfaces -EAGAIN. It stays pending while the engine serves other requests, its
 * retries back off instead of spinning (both backends wait for the pipe in the kernel:
 * io_uring itself, AIO with a poll iocb since 1.1; an fd AIO cannot poll is retried with
 * the backoff), ioeng_close waits for it, and it completes with the data once a writer
 * supplies some. The same for a blocking pipe.
 */
#include "test_util.h"

static tu_recs_t recs;

/* Writes "hello" into the pipe after a pause, while the main thread is in close. */
static void *late_writer(void *arg)
{
    int fd = *(int *)arg;
    usleep(100 * 1000);
    CHECK(write(fd, "hello", 5) == 5, "write to the pipe");
    return NULL;
}

int main(void)
{
    tu_init("test_nonblock", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&recs.w);

    int pfd[2];
    CHECK(pipe2(pfd, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    int tfd = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *data = tu_alloc(4096), *rbuf = tu_alloc(4096);
    tu_fill(data, 4096, 3);
    tu_pwrite_all(tfd, data, 4096, 0);
    char pbuf[8] = { 0 };

    ioeng_t *h = tu_open(be, 8, 0, 0, 0);
    tu_recs_sub(h, &recs, "READ empty O_NONBLOCK pipe", IOENG_OP_READ, IOENG_PRIO_NORMAL, pfd[0],
                pbuf, 5, 0, 5);
    tu_recs_sub(h, &recs, "READ tmpfs while the pipe waits", IOENG_OP_READ, IOENG_PRIO_NORMAL, tfd,
                rbuf, 4096, 0, 4096);
    tu_waiter_wait(&recs.w, 1, 20);
    CHECK(recs.r[1].fired == 1 && recs.r[0].fired == 0,
          "the tmpfs read must complete while the pipe read waits (pipe: %d callbacks, %s)",
          recs.r[0].fired, tu_errname(recs.r[0].res));
    CHECK(memcmp(rbuf, data, 4096) == 0, "tmpfs read data");

    /* 300 ms with nothing to read: no callback, and a bounded number of retries
     * (about one per millisecond at most once backed off; a busy loop does ~10^5). */
    ioeng_stats_t before = tu_stats(h);
    usleep(300 * 1000);
    ioeng_stats_t after = tu_stats(h);
    CHECK(recs.r[0].fired == 0, "the empty pipe read completed early: %s",
          tu_errname(recs.r[0].res));
    uint64_t retries = after.resubmits - before.resubmits;
    uint64_t calls = after.kernel_submit_calls - before.kernel_submit_calls;
    CHECK(retries < 3000, "%" PRIu64 " EAGAIN retries in 300 ms: the engine busy-loops", retries);
    CHECK(calls < 3000, "%" PRIu64 " kernel submit calls in 300 ms for one waiting read", calls);

    /* close waits for the pending read, which completes when the writer supplies data. */
    pthread_t writer;
    CHECK(pthread_create(&writer, NULL, late_writer, &pfd[1]) == 0, "pthread_create");
    tu_close(h);
    CHECK(pthread_join(writer, NULL) == 0, "pthread_join");
    CHECK_EQ(recs.r[0].fired, 1, "pipe read callbacks after close");
    CHECK(memcmp(pbuf, "hello", 5) == 0, "pipe read data '%.5s' res %s", pbuf, tu_errname(recs.r[0].res));
    CHECK(tu_recs_report(&recs, be) == 0, "wrong results (listed above)");

    /* A blocking pipe: io_uring waits for it in the kernel, AIO with a poll iocb after an
     * RWF_NOWAIT try (before 1.1 it blocked io_submit); neither holds up other IO. */
    const char *blocking;
    {
        int bfd[2];
        CHECK(pipe2(bfd, O_CLOEXEC) == 0, "pipe2");
        memset(pbuf, 0, sizeof pbuf);
        memset(rbuf, 0, 4096);
        ioeng_t *u = tu_open(be, 8, 0, 0, 0);
        int first = recs.n;
        tu_recs_sub(u, &recs, "READ empty blocking pipe", IOENG_OP_READ, IOENG_PRIO_NORMAL,
                    bfd[0], pbuf, 5, 0, 5);
        tu_recs_sub(u, &recs, "READ tmpfs behind the blocking pipe", IOENG_OP_READ,
                    IOENG_PRIO_NORMAL, tfd, rbuf, 4096, 0, 4096);
        tu_waiter_wait(&recs.w, (uint64_t)first + 1, 20);
        CHECK(recs.r[first + 1].fired == 1 && recs.r[first].fired == 0,
              "a blocking pipe read held up the tmpfs read");
        CHECK(memcmp(rbuf, data, 4096) == 0, "tmpfs read data");
        CHECK(pthread_create(&writer, NULL, late_writer, &bfd[1]) == 0, "pthread_create");
        tu_close(u);
        CHECK(pthread_join(writer, NULL) == 0, "pthread_join");
        CHECK(memcmp(pbuf, "hello", 5) == 0, "blocking pipe read data '%.5s'", pbuf);
        CHECK(tu_recs_report(&recs, be) == 0, "wrong results (listed above)");
        blocking = "blocking pipe read likewise pending without holding up a tmpfs read";
    }

    printf("test_nonblock [%s]: OK: empty O_NONBLOCK pipe read stayed pending while a tmpfs read "
           "completed; %" PRIu64 " retries / %" PRIu64 " submit calls in 300 ms (backoff); close "
           "waited, then res 5 with the data; %s\n",
           tu_backend_name(be), retries, calls, blocking);
    return 0;
}
