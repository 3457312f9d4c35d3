/*
 * test_poll_after_submit: IOENG_CONFIG_POLL_AFTER_SUBMIT (with IOENG_CONFIG_SINGLE_POLLER,
 * POLLED): the polling thread promises to poll after its own submits, which then leave
 * the event fd alone (README "Two modes", ioeng_open(3)).
 *
 * Each backend; THREADS mode only checks that the flag is accepted and ignored (an IO
 * completes). POLLED, on an ext4 O_DIRECT file, an ext4 file through the page cache and
 * a tmpfs file:
 *  - the flag without IOENG_CONFIG_SINGLE_POLLER is -EINVAL;
 *  - before the first poll there is no polling thread: a submit makes the fd readable;
 *  - after a poll, the same thread's submit leaves the fd quiet (poll(2) says so at
 *    once) and the next ioeng_poll() completes it; without the flag the same submit
 *    makes the fd readable (the 1.0 contract, unchanged);
 *  - another thread's submit makes the fd readable, also that of a thread started after
 *    a thread that polled once exited (glibc hands it that thread's stack and
 *    thread-local area), and a submit from a callback inside another engine's poll;
 *  - a loop that keeps the promise (submit one read, ioeng_poll(h, 0, 0), then
 *    epoll_wait on the fd until the read's callback ran) finishes 300 reads in a row,
 *    each checked byte for byte, with no wait of more than 5 s (a lost wake-up fails);
 *  - on a paused engine a quiet submit with a deadline expires by the engine's timer:
 *    the promised poll arms it, the fd becomes readable about 50 ms later, and the
 *    callback gets -ETIMEDOUT.
 */
#include <poll.h>
#include <sys/epoll.h>

#include "test_util.h"

#define BLK 4096
#define NBLK 64
#define LOOP_READS 300

static char *data; /* NBLK blocks, the file's contents */
static char *buf;  /* one block, 4096-aligned */

static ioeng_t *open_with(ioeng_backend_t be, ioeng_mode_t mode, uint32_t flags, int paused)
{
    ioeng_config_t c = tu_config(be, mode, 8);
    c.flags = flags;
    c.start_paused = (uint32_t)paused;
    ioeng_t *h = NULL;
    int rc = ioeng_open(&c, &h);
    CHECK_EQ(rc, 0, "ioeng_open(flags %u): %s", flags, tu_errname(rc));
    return h;
}

static void submit_read(ioeng_t *h, int fd, int blk, tu_done_t *r, uint64_t deadline_ns)
{
    memset(r, 0, sizeof *r);
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, BLK, (uint64_t)blk * BLK);
    q.deadline_ns = deadline_ns;
    int rc = ioeng_submit(h, &q, tu_done_cb, r);
    CHECK_EQ(rc, 0, "ioeng_submit: %s", tu_errname(rc));
}

/* Polls until `r` is done, sleeping on the event fd between polls (at most 5 s each). */
static void poll_until(ioeng_t *h, int ep, tu_done_t *r, const char *what)
{
    for (;;) {
        int rc = ioeng_poll(h, 0, 0);
        CHECK(rc >= 0, "%s: ioeng_poll: %s", what, tu_errname(rc));
        if (tu_done(r))
            return;
        struct epoll_event ev;
        int n = epoll_wait(ep, &ev, 1, 5000);
        CHECK(n != 0, "%s: the event fd stayed quiet for 5 s with a request pending", what);
        CHECK(n > 0 || errno == EINTR, "epoll_wait: %s", strerror(errno));
    }
}

/* One more poll, which runs no callback and so drains a count the kernel may still add
 * for a completion that an earlier poll reaped (AIO posts the event, then signals the
 * fd): the checks of a quiet fd below are about submits, not about that. */
static void quiesce(ioeng_t *h)
{
    int rc = ioeng_poll(h, 0, 0);
    CHECK(rc == 0, "a poll with nothing left: %s", tu_errname(rc));
}

static void check_block(tu_done_t *r, int blk, const char *what)
{
    CHECK(r->res == BLK, "%s: res %s, want %d", what, tu_errname(r->res), BLK);
    CHECK(memcmp(buf, data + (size_t)blk * BLK, BLK) == 0, "%s: block %d differs", what, blk);
}

static int other_fd;
static ioeng_t *other_h;
static tu_done_t other_rec;

static void *other_thread(void *arg)
{
    (void)arg;
    submit_read(other_h, other_fd, 7, &other_rec, 0);
    return NULL;
}

/* A thread that polls once and exits: glibc gives the next thread its stack and
 * thread-local area, which must not make that one the polling thread. */
static void *poll_once_thread(void *arg)
{
    int rc = ioeng_poll(arg, 0, 0);
    CHECK(rc >= 0, "the short-lived poller's poll: %s", tu_errname(rc));
    return NULL;
}

/* Engine B's request submitted from a callback of engine A (inside A's poll). */
static ioeng_t *cross_b;
static int cross_fd;
static tu_done_t cross_rec;

static void cross_cb(void *ctx, int64_t res)
{
    tu_done_cb(ctx, res);
    submit_read(cross_b, cross_fd, 9, &cross_rec, 0);
}

static int epoll_on(ioeng_t *h)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0, "epoll_create1: %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ioeng_event_fd(h), &ev) == 0, "epoll_ctl: %s",
          strerror(errno));
    return ep;
}

static void polled_case(ioeng_backend_t be, int fd, const char *fs)
{
    const uint32_t both = IOENG_CONFIG_SINGLE_POLLER | IOENG_CONFIG_POLL_AFTER_SUBMIT;
    tu_done_t r;

    /* The promise alone is not enough: the polling thread must be one thread. */
    ioeng_config_t c = tu_config(be, IOENG_MODE_POLLED, 8);
    c.flags = IOENG_CONFIG_POLL_AFTER_SUBMIT;
    ioeng_t *bad = NULL;
    int rc = ioeng_open(&c, &bad);
    CHECK(rc == -EINVAL && bad == NULL, "POLL_AFTER_SUBMIT without SINGLE_POLLER: %s",
          tu_errname(rc));

    for (int promised = 0; promised <= 1; promised++) {
        ioeng_t *h = open_with(be, IOENG_MODE_POLLED,
                               promised ? both : IOENG_CONFIG_SINGLE_POLLER, 0);
        int efd = ioeng_event_fd(h);
        int ep = epoll_on(h);

        /* No poll yet, so no polling thread: the submit signals. */
        submit_read(h, fd, 1, &r, 0);
        CHECK(tu_readable(efd, 0), "%s: before the first poll a submit makes the fd readable", fs);
        poll_until(h, ep, &r, "first read");
        check_block(&r, 1, "first read");
        quiesce(h);
        CHECK(!tu_readable(efd, 0), "%s: quiet after the poll that finished everything", fs);

        /* This thread polled: its submit is quiet only with the promise. */
        submit_read(h, fd, 2, &r, 0);
        CHECK(tu_readable(efd, 0) == !promised, "%s: the poller's submit: fd %s (flag %s)", fs,
              promised ? "readable" : "quiet", promised ? "set" : "unset");
        poll_until(h, ep, &r, "the poller's read");
        check_block(&r, 2, "the poller's read");
        quiesce(h);

        /* Another thread's submit always signals. */
        CHECK(!tu_readable(efd, 0), "%s: quiet before the other thread's submit", fs);
        other_h = h;
        other_fd = fd;
        pthread_t t;
        CHECK(pthread_create(&t, NULL, other_thread, NULL) == 0, "pthread_create");
        pthread_join(t, NULL);
        CHECK(tu_readable(efd, 0), "%s: another thread's submit makes the fd readable", fs);
        poll_until(h, ep, &other_rec, "the other thread's read");
        check_block(&other_rec, 7, "the other thread's read");

        /* A loop that keeps the promise never waits for nothing. */
        for (int i = 0; i < LOOP_READS; i++) {
            int blk = (i * 13) % NBLK;
            submit_read(h, fd, blk, &r, 0);
            poll_until(h, ep, &r, "loop read");
            check_block(&r, blk, "loop read");
        }
        close(ep);
        rc = ioeng_close(h);
        CHECK_EQ(rc, 0, "ioeng_close: %s", tu_errname(rc));
    }

    /* Paused: a quiet submit with a deadline; the promised poll arms the timer. */
    ioeng_t *h = open_with(be, IOENG_MODE_POLLED, both, 1);
    int efd = ioeng_event_fd(h);
    int ep = epoll_on(h);
    CHECK(ioeng_poll(h, 0, 0) == 0, "a poll with nothing to do");
    uint64_t t0 = tu_now_ns();
    submit_read(h, fd, 3, &r, ioeng_deadline_in_ns(50 * 1000000ull));
    CHECK(!tu_readable(efd, 0), "%s: paused, the poller's submit with a deadline: quiet", fs);
    poll_until(h, ep, &r, "the expiring read");
    uint64_t waited_ms = (tu_now_ns() - t0) / 1000000;
    CHECK(r.res == -ETIMEDOUT, "%s: the paused read's deadline: %s, want -ETIMEDOUT", fs,
          tu_errname(r.res));
    CHECK(waited_ms >= 45 && waited_ms < 4000, "%s: expired after %" PRIu64 " ms, want ~50", fs,
          waited_ms);
    close(ep);
    rc = ioeng_close(h);
    CHECK_EQ(rc, 0, "ioeng_close: %s", tu_errname(rc));
    printf("  %s: poller's submits quiet with the flag (readable without it, from another "
           "thread and before the first poll), %d reads by a promise-keeping loop, "
           "deadline expired after %" PRIu64 " ms\n",
           fs, LOOP_READS, waited_ms);
}

/* A thread that is an engine's first poller and exits, then a new thread (glibc hands it
 * the old one's stack and thread-local area) that submits: it never polled, so its
 * submit makes the fd readable. On io_uring the engine is then tied to the exited
 * thread (IOENG_CONFIG_SINGLE_POLLER), and only it could poll or close: leaked, as in
 * test_single_poller. */
static void reused_thread_case(ioeng_backend_t be, int fd)
{
    ioeng_t *h = open_with(be, IOENG_MODE_POLLED,
                           IOENG_CONFIG_SINGLE_POLLER | IOENG_CONFIG_POLL_AFTER_SUBMIT, 0);
    int efd = ioeng_event_fd(h);
    pthread_t t1, t2;
    CHECK(pthread_create(&t1, NULL, poll_once_thread, h) == 0, "pthread_create");
    pthread_join(t1, NULL);
    CHECK(!tu_readable(efd, 0), "quiet before the new thread's submit");
    other_h = h;
    other_fd = fd;
    CHECK(pthread_create(&t2, NULL, other_thread, NULL) == 0, "pthread_create");
    pthread_join(t2, NULL);
    CHECK(tu_readable(efd, 0), "a thread started after the poller exited submitted: the fd "
          "must be readable (that thread never polled)");
    if (be == IOENG_BACKEND_AIO) {
        int ep = epoll_on(h);
        poll_until(h, ep, &other_rec, "the new thread's read");
        check_block(&other_rec, 7, "the new thread's read");
        close(ep);
        CHECK_EQ(ioeng_close(h), 0, "ioeng_close");
    }
    printf("  a thread started after a poller exited is not the polling thread\n");
}

/* One thread polls engines A and B; a callback of A (inside A's poll) submits to B,
 * which this thread polled last: that submit makes B's fd readable. */
static void cross_engine_case(ioeng_backend_t be, int fd)
{
    const uint32_t both = IOENG_CONFIG_SINGLE_POLLER | IOENG_CONFIG_POLL_AFTER_SUBMIT;
    ioeng_t *a = open_with(be, IOENG_MODE_POLLED, both, 0);
    ioeng_t *b = open_with(be, IOENG_MODE_POLLED, both, 0);
    CHECK(ioeng_poll(b, 0, 0) == 0, "B's first poll");
    int ep = epoll_on(a);
    tu_done_t ra = {0};
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, BLK, 0);
    cross_b = b;
    cross_fd = fd;
    int rc = ioeng_submit(a, &q, cross_cb, &ra);
    CHECK_EQ(rc, 0, "submit to A: %s", tu_errname(rc));
    poll_until(a, ep, &ra, "A's read");
    CHECK(tu_readable(ioeng_event_fd(b), 0),
          "a submit to B from A's callback must make B's fd readable");
    close(ep);
    ep = epoll_on(b);
    poll_until(b, ep, &cross_rec, "B's read");
    check_block(&cross_rec, 9, "B's read");
    close(ep);
    CHECK_EQ(ioeng_close(a), 0, "close A");
    CHECK_EQ(ioeng_close(b), 0, "close B");
    printf("  a submit from another engine's callback makes the fd readable\n");
}

int main(void)
{
    tu_init("test_poll_after_submit", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    data = tu_alloc((size_t)NBLK * BLK);
    buf = tu_alloc(BLK);
    tu_fill(data, (size_t)NBLK * BLK, 42);

    int ext4 = tu_scratch(TU_EXT4, 1, NULL);
    int shm = tu_scratch(TU_TMPFS, 0, NULL);
    tu_pwrite_all(shm, data, (size_t)NBLK * BLK, 0);
    int plain = tu_scratch(TU_EXT4, 0, NULL);
    tu_pwrite_all(plain, data, (size_t)NBLK * BLK, 0);
    CHECK(fsync(plain) == 0, "fsync: %s", strerror(errno));
    tu_pwrite_all(ext4, data, (size_t)NBLK * BLK, 0);

    if (tu_mode() == IOENG_MODE_THREADS) {
        /* No event fd: the flag is accepted and ignored. */
        ioeng_t *h = open_with(be, IOENG_MODE_THREADS,
                               IOENG_CONFIG_SINGLE_POLLER | IOENG_CONFIG_POLL_AFTER_SUBMIT, 0);
        tu_done_t r;
        submit_read(h, ext4, 5, &r, 0);
        for (int i = 0; i < 5000 && !tu_done(&r); i++)
            usleep(1000);
        CHECK(tu_done(&r), "THREADS: the read never completed");
        check_block(&r, 5, "THREADS read");
        int rc = ioeng_close(h);
        CHECK_EQ(rc, 0, "ioeng_close: %s", tu_errname(rc));
        printf("test_poll_after_submit [%s threads]: OK: the flag is ignored in THREADS mode\n",
               tu_backend_name(be));
        return 0;
    }
    polled_case(be, ext4, "ext4 O_DIRECT");
    polled_case(be, shm, "tmpfs");
    polled_case(be, plain, "ext4 page cache");
    cross_engine_case(be, shm);
    reused_thread_case(be, shm);
    printf("test_poll_after_submit [%s polled]: OK\n", tu_backend_name(be));
    return 0;
}
