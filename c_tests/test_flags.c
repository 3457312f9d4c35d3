/*
 * Per-request flags (ABI v1): DSYNC and SYNC writes (WRITE and WRITEV) complete with the
 * full length and the data is there; NOWAIT's -EAGAIN reaches the callback (a READ of an
 * empty pipe, blocking and O_NONBLOCK) instead of being retried, and a NOWAIT buffered
 * ext4 write gets -EAGAIN on both backends; on files without read_iter/write_iter
 * (eventfd, /dev/full, timerfd, signalfd) both backends give write(2)'s result, NOWAIT
 * -EAGAIN unless the fd is O_NONBLOCK, and never wait for a readiness that cannot come; SHORT_OK
 * READ/READV of a socket or pipe completes with what has arrived; every invalid
 * combination is refused at submit with -EINVAL and no callback.
 */
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>

#include "test_util.h"

static tu_recs_t recs;

static void sub_flags(ioeng_t *h, const char *what, ioeng_req_t q, uint32_t flags, int64_t want)
{
    CHECK(recs.n < TU_MAX_RECS, "too many");
    q.flags = flags;
    tu_rec_submit(h, &recs.r[recs.n++], &recs.w, what, q, want);
}

int main(void)
{
    tu_recs_test_t t = tu_recs_begin("test_flags", &recs);
    ioeng_backend_t be = t.be;
    ioeng_t *h = t.h;
    int ext4 = t.ext4, direct = t.direct;
    unsigned char *src = tu_alloc(65536), *dst = tu_alloc(65536);
    tu_fill(src, 65536, 5);

    sub_flags(h, "WRITE DSYNC ext4", tu_req(IOENG_OP_WRITE, 0, ext4, src, 16384, 0),
              IOENG_REQ_DSYNC, 16384);
    sub_flags(h, "WRITE SYNC ext4", tu_req(IOENG_OP_WRITE, 0, ext4, src + 16384, 16384, 16384),
              IOENG_REQ_SYNC, 16384);
    sub_flags(h, "WRITE DSYNC O_DIRECT", tu_req(IOENG_OP_WRITE, 0, direct, src, 65536, 0),
              IOENG_REQ_DSYNC, 65536);
    struct iovec wv[2] = { { src + 32768, 4096 }, { src + 36864, 28672 } };
    sub_flags(h, "WRITEV DSYNC|SYNC ext4", tu_req(IOENG_OP_WRITEV, 0, ext4, wv, 2, 32768),
              IOENG_REQ_DSYNC | IOENG_REQ_SYNC, 32768);
    tu_waiter_wait(&recs.w, 4, 30);
    tu_pread_all(ext4, dst, 65536, 0);
    CHECK(memcmp(src, dst, 65536) == 0, "DSYNC/SYNC data differs");
    memset(dst, 0, 65536);
    sub_flags(h, "READ NOWAIT O_DIRECT", tu_req(IOENG_OP_READ, 0, direct, dst, 65536, 0),
              IOENG_REQ_NOWAIT, 65536);
    tu_waiter_wait(&recs.w, 5, 30);
    /* A NOWAIT O_DIRECT read may legitimately be refused with -EAGAIN (the kernel
     * would have had to block); anything else is the data. */
    if (recs.r[4].res == -EAGAIN)
        recs.r[4].want = -EAGAIN;
    else
        CHECK(memcmp(src, dst, 65536) == 0, "NOWAIT O_DIRECT read data differs");

    /* NOWAIT on an empty pipe: -EAGAIN is delivered, not retried (without NOWAIT the
     * request would wait for data; test_nonblock shows that). */
    int bp[2], np[2];
    CHECK(pipe2(bp, O_CLOEXEC) == 0 && pipe2(np, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    char pbuf[16];
    ioeng_stats_t before = tu_stats(h);
    sub_flags(h, "READ NOWAIT empty pipe", tu_req(IOENG_OP_READ, 0, bp[0], pbuf, 16, 0),
              IOENG_REQ_NOWAIT, -EAGAIN);
    sub_flags(h, "READ NOWAIT empty O_NONBLOCK pipe", tu_req(IOENG_OP_READ, 0, np[0], pbuf, 16, 0),
              IOENG_REQ_NOWAIT, -EAGAIN);
    tu_waiter_wait(&recs.w, 7, 30);
    ioeng_stats_t after = tu_stats(h);
    CHECK(after.resubmits == before.resubmits, "NOWAIT's -EAGAIN was retried (%" PRIu64 ")",
          after.resubmits - before.resubmits);
    /* With data there, NOWAIT reads it. */
    CHECK(write(bp[1], "abc", 3) == 3, "pipe write");
    sub_flags(h, "READ NOWAIT pipe with 3 bytes", tu_req(IOENG_OP_READ, 0, bp[0], pbuf, 3, 0),
              IOENG_REQ_NOWAIT, 3);
    tu_waiter_wait(&recs.w, 8, 30);

    /* NOWAIT on a buffered ext4 write, which ext4 will not do without blocking: io_uring
     * says -EAGAIN ("retry without NOWAIT"), and AIO must say the same, not the
     * -EOPNOTSUPP the kernel's AIO path passes through. (4096, if a kernel learns to do
     * it.) */
    sub_flags(h, "WRITE NOWAIT ext4 buffered", tu_req(IOENG_OP_WRITE, 0, ext4, src, 4096, 0),
              IOENG_REQ_NOWAIT, -EAGAIN);
    tu_waiter_wait(&recs.w, 9, 30);
    if (recs.r[8].res == 4096)
        recs.r[8].want = 4096;

    /* SHORT_OK: a READ of a socket or pipe that holds 100 bytes completes with them, as
     * read(2) would, instead of waiting for the full 4096 (which never come here); READV
     * too; a short WRITE would likewise complete as it is. Without the flag such a READ
     * is continued (test_stream). */
    int sp[2], sp2[2], spp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0 &&
          socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp2) == 0 &&
          pipe2(spp, O_CLOEXEC) == 0, "socketpair/pipe");
    CHECK(write(sp[1], src, 100) == 100 && write(sp2[1], src, 100) == 100 &&
          write(spp[1], src, 100) == 100, "write 100 bytes");
    static unsigned char sbuf[3][4096];
    struct iovec sv[2] = { { sbuf[1], 60 }, { sbuf[1] + 60, 4036 } };
    sub_flags(h, "READ SHORT_OK socket with 100 bytes", tu_req(IOENG_OP_READ, 0, sp[0], sbuf[0], 4096, 0),
              IOENG_REQ_SHORT_OK, 100);
    sub_flags(h, "READV SHORT_OK socket with 100 bytes", tu_req(IOENG_OP_READV, 0, sp2[0], sv, 2, 0),
              IOENG_REQ_SHORT_OK, 100);
    sub_flags(h, "READ SHORT_OK pipe with 100 bytes", tu_req(IOENG_OP_READ, 0, spp[0], sbuf[2], 4096, 0),
              IOENG_REQ_SHORT_OK, 100);
    tu_waiter_wait(&recs.w, 12, 30);
    for (int i = 0; i < 3; i++)
        CHECK(memcmp(sbuf[i], src, 100) == 0, "SHORT_OK read %d: data differs", i);
    /* A file read that the kernel completes in full is not short. */
    sub_flags(h, "READ SHORT_OK ext4 file", tu_req(IOENG_OP_READ, 0, ext4, dst, 16384, 0),
              IOENG_REQ_SHORT_OK, 16384);
    tu_waiter_wait(&recs.w, 13, 30);
    for (int i = 0; i < 2; i++) {
        close(sp[i]);
        close(sp2[i]);
        close(spp[i]);
    }

    /* Invalid combinations: -EINVAL at submit, no callback. */
    struct {
        const char *what;
        ioeng_op_t op;
        uint32_t flags;
    } bad[] = {
        { "FSYNC NOWAIT", IOENG_OP_FSYNC, IOENG_REQ_NOWAIT },
        { "FSYNC DSYNC", IOENG_OP_FSYNC, IOENG_REQ_DSYNC },
        { "FDATASYNC SYNC", IOENG_OP_FDATASYNC, IOENG_REQ_SYNC },
        { "FDATASYNC FIXED_BUF", IOENG_OP_FDATASYNC, IOENG_REQ_FIXED_BUF },
        { "READ DSYNC", IOENG_OP_READ, IOENG_REQ_DSYNC },
        { "READ SYNC", IOENG_OP_READ, IOENG_REQ_SYNC },
        { "READ SYNC|NOWAIT", IOENG_OP_READ, IOENG_REQ_SYNC | IOENG_REQ_NOWAIT },
        { "WRITE unknown bit 5", IOENG_OP_WRITE, 1u << 5 },
        { "FSYNC SHORT_OK", IOENG_OP_FSYNC, IOENG_REQ_SHORT_OK },
        { "WRITE unknown bit 31", IOENG_OP_WRITE, 1u << 31 },
        { "WRITE FIXED_BUF, nothing registered", IOENG_OP_WRITE, IOENG_REQ_FIXED_BUF },
    };
    /* Files without read_iter/write_iter: AIO's io_submit refuses them and libioeng does
     * the transfer once itself, as io_uring does: DSYNC/SYNC mean nothing there (write(2)'s
     * result), NOWAIT gives -EAGAIN on a blocking fd, and a file that cannot be written at all (timerfd,
     * signalfd) gives write(2)'s -EINVAL at once instead of waiting to become writable. */
    static uint64_t one = 1;
    int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    int befd = eventfd(0, EFD_CLOEXEC);
    int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    int sfd = signalfd(-1, &usr2, SFD_CLOEXEC);
    CHECK(efd >= 0 && befd >= 0 && full >= 0 && tfd >= 0 && sfd >= 0, "eventfd/dev/full/timerfd/signalfd");
    sub_flags(h, "eventfd WRITE DSYNC", tu_req(IOENG_OP_WRITE, 0, efd, &one, 8, 0), IOENG_REQ_DSYNC, 8);
    sub_flags(h, "eventfd WRITE SYNC", tu_req(IOENG_OP_WRITE, 0, efd, &one, 8, 0), IOENG_REQ_SYNC, 8);
    sub_flags(h, "O_NONBLOCK eventfd WRITE NOWAIT", tu_req(IOENG_OP_WRITE, 0, efd, &one, 8, 0),
              IOENG_REQ_NOWAIT, 8);
    sub_flags(h, "blocking eventfd WRITE NOWAIT", tu_req(IOENG_OP_WRITE, 0, befd, &one, 8, 0),
              IOENG_REQ_NOWAIT, -EAGAIN);
    sub_flags(h, "/dev/full WRITE DSYNC", tu_req(IOENG_OP_WRITE, 0, full, src, 16, 0), IOENG_REQ_DSYNC,
              -ENOSPC);
    sub_flags(h, "timerfd WRITE", tu_req(IOENG_OP_WRITE, 0, tfd, &one, 8, 0), 0, -EINVAL);
    sub_flags(h, "signalfd WRITE", tu_req(IOENG_OP_WRITE, 0, sfd, src, 128, 0), 0, -EINVAL);
    tu_waiter_wait(&recs.w, (uint64_t)recs.n, 10);
    close(efd);
    close(befd);
    close(full);
    close(tfd);
    close(sfd);

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ioeng_req_t q = tu_req(bad[i].op, 0, ext4, src, 4096, 0);
        q.flags = bad[i].flags;
        int rc = ioeng_submit(h, &q, tu_count_cb, NULL);
        CHECK(rc == -EINVAL, "%s: ioeng_submit = %s, want -EINVAL", bad[i].what, tu_errname(rc));
    }
    tu_recs_end(&t, &recs);
    printf("test_flags [%s]: OK: DSYNC/SYNC WRITE and WRITEV durable with full length, NOWAIT "
           "O_DIRECT read %s, NOWAIT on empty pipes -> -EAGAIN delivered (0 retries), NOWAIT "
           "buffered ext4 write %s, eventfd//dev/full DSYNC/SYNC/NOWAIT and timerfd/signalfd "
           "writes as write(2), SHORT_OK socket/pipe READ(V) -> what arrived, %zu invalid "
           "combinations -> -EINVAL\n",
           tu_backend_name(be), tu_errname(recs.r[4].res), tu_errname(recs.r[8].res),
           sizeof bad / sizeof bad[0]);
    return 0;
}
