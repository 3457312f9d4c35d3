/*
 * READV/WRITEV (ABI v1): round trips on ext4 (buffered and O_DIRECT) and tmpfs; a READV
 * from a pipe fed in pieces (short transfers continued across segment boundaries); the
 * caller's iovec array is never written; IOV_MAX segments accepted, IOV_MAX + 1 and the
 * other bad vectors refused at submit with no callback; empty segments before a 3 GiB one
 * (to /dev/null) stepped over.
 */
#include <sys/uio.h>

#include "test_util.h"

static tu_recs_t recs;

/* Writes `len` bytes of `data` into a vector of `nseg` uneven segments, reads them back
 * into another vector, and compares. */
static void round_trip(ioeng_t *h, int fd, int direct, const char *what)
{
    enum { NSEG = 5 };
    size_t unit = direct ? 4096 : 1;
    size_t seglen[NSEG] = { 3 * unit, 1 * unit, 7 * unit, 2 * unit, 5 * unit };
    size_t total = 0;
    for (int i = 0; i < NSEG; i++)
        total += seglen[i] * (direct ? 1 : 111);
    unsigned char *src = tu_alloc(total), *dst = tu_alloc(total);
    tu_fill(src, total, 42);
    struct iovec wv[NSEG], rv[NSEG];
    size_t at = 0;
    for (int i = 0; i < NSEG; i++) {
        size_t l = seglen[i] * (direct ? 1 : 111);
        wv[i] = (struct iovec){ src + at, l };
        rv[i] = (struct iovec){ dst + at, l };
        at += l;
    }
    struct iovec wcopy[NSEG], rcopy[NSEG];
    memcpy(wcopy, wv, sizeof wv);
    memcpy(rcopy, rv, sizeof rv);
    uint64_t base = recs.w.count;
    tu_recs_sub(h, &recs, what, IOENG_OP_WRITEV, IOENG_PRIO_NORMAL, fd, wv, NSEG, 8192,
                (int64_t)total);
    tu_waiter_wait(&recs.w, base + 1, 20);
    tu_recs_sub(h, &recs, what, IOENG_OP_READV, IOENG_PRIO_NORMAL, fd, rv, NSEG, 8192,
                (int64_t)total);
    tu_waiter_wait(&recs.w, base + 2, 20);
    CHECK(memcmp(src, dst, total) == 0, "%s: data read back differs", what);
    CHECK(memcmp(wv, wcopy, sizeof wv) == 0 && memcmp(rv, rcopy, sizeof rv) == 0,
          "%s: the engine wrote to the caller's iovec array", what);
    free(src);
    free(dst);
}

struct feeder {
    int fd;
    const unsigned char *data;
};

/* Feeds 40 bytes into the pipe in pieces that straddle the reader's segments. */
static void *feed_pieces(void *arg)
{
    struct feeder *f = arg;
    static const int pieces[] = { 2, 5, 1, 9, 4, 11, 8 };
    int at = 0;
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        usleep(5000);
        CHECK(write(f->fd, f->data + at, (size_t)pieces[i]) == pieces[i], "pipe write");
        at += pieces[i];
    }
    CHECK(at == 40, "test bug: pieces sum to %d", at);
    return NULL;
}

int main(void)
{
    tu_recs_test_t t = tu_recs_begin("test_vectored_io", &recs);
    ioeng_backend_t be = t.be;
    ioeng_t *h = t.h;
    int ext4 = t.ext4, direct = t.direct;
    int shm = tu_scratch(TU_TMPFS, 0, NULL);
    round_trip(h, ext4, 0, "WRITEV/READV ext4 buffered");
    round_trip(h, direct, 1, "WRITEV/READV ext4 O_DIRECT");
    round_trip(h, shm, 0, "WRITEV/READV tmpfs");

    /* READV from a pipe fed in pieces: every piece is a short read, continued where
     * it stopped, inside a segment or at its boundary. O_NONBLOCK, so AIO does not
     * block io_submit while the pipe is empty (it retries with backoff). */
    int pfd[2];
    CHECK(pipe2(pfd, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    unsigned char pdata[40], pout[40];
    tu_fill(pdata, sizeof pdata, 9);
    memset(pout, 0, sizeof pout);
    struct iovec pv[4] = { { pout, 3 }, { pout + 3, 10 }, { pout + 13, 1 }, { pout + 14, 26 } };
    struct iovec pcopy[4];
    memcpy(pcopy, pv, sizeof pv);
    struct feeder f = { pfd[1], pdata };
    pthread_t feeder;
    uint64_t base = recs.w.count;
    ioeng_stats_t before = tu_stats(h);
    tu_recs_sub(h, &recs, "READV pipe fed in 7 pieces", IOENG_OP_READV, IOENG_PRIO_NORMAL, pfd[0],
                pv, 4, 0, 40);
    CHECK(pthread_create(&feeder, NULL, feed_pieces, &f) == 0, "pthread_create");
    tu_waiter_wait(&recs.w, base + 1, 20);
    CHECK(pthread_join(feeder, NULL) == 0, "join");
    ioeng_stats_t after = tu_stats(h);
    CHECK(memcmp(pout, pdata, 40) == 0, "pipe READV data differs");
    CHECK(memcmp(pv, pcopy, sizeof pv) == 0, "pipe READV: the iovec array was written");
    CHECK(after.resubmits - before.resubmits >= 6, "pieces should need continuations (%" PRIu64 ")",
          after.resubmits - before.resubmits);

    /* IOV_MAX one-byte segments: accepted, and the round trip is exact. */
    struct iovec *big = calloc(IOV_MAX + 1, sizeof *big);
    unsigned char *bsrc = tu_alloc(IOV_MAX + 1), *bdst = tu_alloc(IOV_MAX + 1);
    tu_fill(bsrc, IOV_MAX, 77);
    for (int i = 0; i <= IOV_MAX; i++)
        big[i] = (struct iovec){ bsrc + i, 1 };
    base = recs.w.count;
    tu_recs_sub(h, &recs, "WRITEV IOV_MAX segments", IOENG_OP_WRITEV, IOENG_PRIO_NORMAL, shm, big,
                IOV_MAX, 1 << 20, IOV_MAX);
    tu_waiter_wait(&recs.w, base + 1, 20);
    for (int i = 0; i <= IOV_MAX; i++)
        big[i] = (struct iovec){ bdst + i, 1 };
    tu_recs_sub(h, &recs, "READV IOV_MAX segments", IOENG_OP_READV, IOENG_PRIO_NORMAL, shm, big,
                IOV_MAX, 1 << 20, IOV_MAX);
    tu_waiter_wait(&recs.w, base + 2, 20);
    CHECK(memcmp(bsrc, bdst, IOV_MAX) == 0, "IOV_MAX round trip differs");

    /* Empty segments before one above the kernel's per-call maximum (3 GiB to /dev/null,
     * which reads none of it): the empty ones are stepped over, the big one is split. A
     * run of only empty segments would move 0 bytes and be reissued forever. */
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    CHECK(devnull >= 0, "open /dev/null: %s", strerror(errno));
    const uint64_t three_gib = 3ull << 30;
    struct iovec empty_first[2] = { { bsrc, 0 }, { bsrc, three_gib } };
    struct iovec empty_between[3] = { { bsrc, 4096 }, { bsrc, 0 }, { bsrc, three_gib } };
    base = recs.w.count;
    tu_recs_sub(h, &recs, "WRITEV [0, 3 GiB] to /dev/null", IOENG_OP_WRITEV, IOENG_PRIO_NORMAL,
                devnull, empty_first, 2, 0, (int64_t)three_gib);
    tu_recs_sub(h, &recs, "WRITEV [4096, 0, 3 GiB] to /dev/null", IOENG_OP_WRITEV,
                IOENG_PRIO_NORMAL, devnull, empty_between, 3, 0, (int64_t)three_gib + 4096);
    tu_waiter_wait(&recs.w, base + 2, 20);
    close(devnull);

    /* Refused at submit, no callback. */
    struct {
        const char *what;
        ioeng_req_t q;
        int want;
    } bad[] = {
        { "READV IOV_MAX+1", tu_req(IOENG_OP_READV, 0, shm, big, IOV_MAX + 1, 0), -EINVAL },
        { "WRITEV count 0", tu_req(IOENG_OP_WRITEV, 0, shm, big, 0, 0), -EINVAL },
        { "READV NULL array", tu_req(IOENG_OP_READV, 0, shm, NULL, 1, 0), -EINVAL },
        { "READV fd -1", tu_req(IOENG_OP_READV, 0, -1, big, 1, 0), -EBADF },
        { "READV DSYNC", tu_req(IOENG_OP_READV, 0, shm, big, 1, 0), -EINVAL },
        { "WRITEV FIXED_BUF", tu_req(IOENG_OP_WRITEV, 0, shm, big, 1, 0), -EINVAL },
        { "READV past INT64_MAX", tu_req(IOENG_OP_READV, 0, shm, big, 2, INT64_MAX - 1), -EINVAL },
    };
    bad[4].q.flags = IOENG_REQ_DSYNC;
    bad[5].q.flags = IOENG_REQ_FIXED_BUF;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = ioeng_submit(h, &bad[i].q, tu_count_cb, NULL);
        CHECK(rc == bad[i].want, "%s: ioeng_submit = %s, want %s", bad[i].what, tu_errname(rc),
              tu_errname(bad[i].want));
    }
    tu_recs_end(&t, &recs);
    printf("test_vectored_io [%s]: OK: WRITEV/READV round trips (ext4, O_DIRECT, tmpfs), pipe READV fed "
           "in 7 pieces (%" PRIu64 " continuations), IOV_MAX accepted, empty segments before a "
           "3 GiB one, 7 bad vectors refused, iovec arrays untouched\n",
           tu_backend_name(be), after.resubmits - before.resubmits);
    return 0;
}
