/*
 * FSYNC and FDATASYNC: res 0 on ext4 (buffered and O_DIRECT), tmpfs and an
 * O_RDONLY ext4 fd, NORMAL and HIGH, after engine writes and many at once;
 * -EBADF on a closed fd; -EINVAL on a pipe (no fsync method).
 */
#include "test_util.h"

static tu_recs_t recs; /* recs.w counts the callbacks */
#define sub(h, ...) tu_recs_sub((h), &recs, __VA_ARGS__)

int main(void)
{
    tu_init("test_fsync", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&recs.w);

    char epath[PATH_MAX];
    int efd = tu_scratch(TU_EXT4, 0, epath);
    int dfd = tu_scratch(TU_EXT4, 1, NULL);
    int tfd = tu_scratch(TU_TMPFS, 0, NULL);
    int rofd = open(epath, O_RDONLY | O_CLOEXEC);
    CHECK(rofd >= 0, "open ro");
    int pfd[2];
    CHECK(pipe2(pfd, O_CLOEXEC) == 0, "pipe");
    int closed = tu_closed_fd(900);
    unsigned char *buf = tu_alloc(65536);
    tu_fill(buf, 65536, 9);

    ioeng_t *h = tu_open(be, 16, 0, 0, 0);
    /* engine writes first, then sync them */
    sub(h, "WRITE ext4", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, efd, buf, 65536, 0, 65536);
    sub(h, "WRITE ext4 O_DIRECT", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, dfd, buf, 65536, 0, 65536);
    sub(h, "WRITE tmpfs", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, tfd, buf, 65536, 0, 65536);
    tu_waiter_wait(&recs.w, (uint64_t)recs.n, 20);

    sub(h, "FSYNC ext4", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, efd, NULL, 0, 0, 0);
    sub(h, "FDATASYNC ext4", IOENG_OP_FDATASYNC, IOENG_PRIO_NORMAL, efd, NULL, 0, 0, 0);
    sub(h, "HIGH FSYNC ext4", IOENG_OP_FSYNC, IOENG_PRIO_HIGH, efd, NULL, 0, 0, 0);
    sub(h, "HIGH FDATASYNC ext4", IOENG_OP_FDATASYNC, IOENG_PRIO_HIGH, efd, NULL, 0, 0, 0);
    sub(h, "FSYNC ext4 O_DIRECT", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, dfd, NULL, 0, 0, 0);
    sub(h, "FDATASYNC ext4 O_DIRECT", IOENG_OP_FDATASYNC, IOENG_PRIO_HIGH, dfd, NULL, 0, 0, 0);
    sub(h, "FSYNC tmpfs", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, tfd, NULL, 0, 0, 0);
    sub(h, "FDATASYNC tmpfs", IOENG_OP_FDATASYNC, IOENG_PRIO_NORMAL, tfd, NULL, 0, 0, 0);
    sub(h, "FSYNC ext4 O_RDONLY fd", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, rofd, NULL, 0, 0, 0);
    sub(h, "FSYNC closed fd", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, closed, NULL, 0, 0, -EBADF);
    sub(h, "FDATASYNC closed fd", IOENG_OP_FDATASYNC, IOENG_PRIO_NORMAL, closed, NULL, 0, 0, -EBADF);
    sub(h, "HIGH FSYNC closed fd", IOENG_OP_FSYNC, IOENG_PRIO_HIGH, closed, NULL, 0, 0, -EBADF);
    sub(h, "FSYNC pipe", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, pfd[1], NULL, 0, 0, -EINVAL);
    sub(h, "FDATASYNC pipe", IOENG_OP_FDATASYNC, IOENG_PRIO_NORMAL, pfd[0], NULL, 0, 0, -EINVAL);
    /* many at once (more than depth), interleaved with writes */
    for (int i = 0; i < 60; i++) {
        if (i % 3 == 0)
            sub(h, "bulk WRITE ext4", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, efd, buf + (i % 16) * 4096,
                4096, 65536 + (uint64_t)i * 4096, 4096);
        else
            sub(h, i % 3 == 1 ? "bulk FSYNC ext4" : "bulk FDATASYNC ext4",
                i % 3 == 1 ? IOENG_OP_FSYNC : IOENG_OP_FDATASYNC, IOENG_PRIO_NORMAL, efd, NULL, 0,
                0, 0);
    }
    tu_waiter_wait(&recs.w, (uint64_t)recs.n, 60);
    tu_close(h);
    tu_check_still_closed(closed);

    int bad = tu_recs_report(&recs, be);
    CHECK(bad == 0, "%d of %d requests wrong (listed above)", bad, recs.n);

    /* the engine writes are there */
    unsigned char *chk = malloc(65536);
    CHECK(chk, "malloc");
    tu_pread_all(rofd, chk, 65536, 0);
    CHECK(memcmp(chk, buf, 65536) == 0, "ext4 content after fsync");
    tu_pread_all(tfd, chk, 65536, 0);
    CHECK(memcmp(chk, buf, 65536) == 0, "tmpfs content after fsync");
    free(chk);
    free(buf);
    close(pfd[0]);
    close(pfd[1]);
    close(rofd);
    close(efd);
    close(dfd);
    close(tfd);
    printf("test_fsync [%s]: OK: %d requests: FSYNC/FDATASYNC -> 0 on ext4, ext4 O_DIRECT, tmpfs, "
           "O_RDONLY fd (NORMAL+HIGH, 40 mixed with writes); closed fd -> -EBADF; pipe -> "
           "-EINVAL\n", tu_backend_name(be), recs.n);
    tu_waiter_destroy(&recs.w);
    return 0;
}
