/*
 * Kernel errors come back through the callback as -errno (never a crash, never a
 * synchronous error from ioeng_submit):
 *  - fd number of a file that was opened and closed (number kept unused) -> -EBADF
 *  - misaligned O_DIRECT on ext4 (buffer + 1, len 100, offset 1)         -> -EINVAL
 *  - WRITE to an O_RDONLY fd / READ from an O_WRONLY fd                   -> -EBADF
 *  - buffer in inaccessible (PROT_NONE) memory (buffered tmpfs)           -> -EFAULT
 * The engine keeps working afterwards, and failed writes changed nothing.
 */
#include <sys/mman.h>

#include "test_util.h"

static tu_recs_t recs; /* recs.w counts the callbacks */
#define sub(h, ...) tu_recs_sub((h), &recs, __VA_ARGS__)

/* The synchronous syscall must agree (guards against a filesystem that accepts
 * misaligned O_DIRECT, which would make the test meaningless). */
static void kernel_agrees_einval(int fd, void *buf, size_t len, off_t off, const char *what)
{
    errno = 0;
    ssize_t n = pread(fd, buf, len, off);
    int e = errno;
    CHECK(n == -1 && e == EINVAL, "environment: pread(O_DIRECT, %s) = %zd errno %d; need a "
          "filesystem that rejects misaligned O_DIRECT (set IOENG_TEST_DIR to ext4)", what, n, e);
}

int main(void)
{
    tu_init("test_kernel_errors", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&recs.w);

    /* ext4 O_DIRECT file with 1 MiB of known data */
    const size_t FSZ = 1u << 20;
    char dpath[PATH_MAX];
    int dfd = tu_scratch(TU_EXT4, 1, dpath);
    unsigned char *init = tu_alloc(FSZ);
    tu_fill(init, FSZ, 42);
    tu_pwrite_all(dfd, init, FSZ, 0);
    unsigned char *dbuf = tu_alloc(3 * 65536);
    kernel_agrees_einval(dfd, dbuf + 1, 4096, 0, "buf+1");
    kernel_agrees_einval(dfd, dbuf, 100, 0, "len 100");
    kernel_agrees_einval(dfd, dbuf, 4096, 1, "offset 1");

    /* tmpfs buffered file, and O_RDONLY / O_WRONLY fds of it */
    char tpath[PATH_MAX];
    int tfd = tu_scratch(TU_TMPFS, 0, tpath);
    tu_pwrite_all(tfd, init, 65536, 0);
    int rofd = open(tpath, O_RDONLY | O_CLOEXEC);
    int wofd = open(tpath, O_WRONLY | O_CLOEXEC);
    CHECK(rofd >= 0 && wofd >= 0, "open ro/wo: %s", strerror(errno));

    int closed = tu_closed_fd(900);

    /* inaccessible memory: a PROT_NONE reservation (an munmap'ed hole could be
     * reused by a later mapping, e.g. the AIO ring, and then get overwritten) */
    long pg = sysconf(_SC_PAGESIZE);
    void *hole = mmap(NULL, (size_t)pg * 4, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(hole != MAP_FAILED, "mmap");

    unsigned char *wsrc = tu_alloc(65536);
    memset(wsrc, 0xCD, 65536);
    unsigned char *rb = tu_alloc(16 * 8192);

    ioeng_t *h = tu_open(be, 8, 0, 0, 0);
    sub(h, "READ closed fd", IOENG_OP_READ, IOENG_PRIO_NORMAL, closed, rb, 4096, 0, -EBADF);
    sub(h, "WRITE closed fd", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, closed, wsrc, 4096, 0, -EBADF);
    sub(h, "HIGH READ closed fd", IOENG_OP_READ, IOENG_PRIO_HIGH, closed, rb, 4096, 0, -EBADF);
    sub(h, "FSYNC closed fd", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, closed, NULL, 0, 0, -EBADF);
    sub(h, "FDATASYNC closed fd", IOENG_OP_FDATASYNC, IOENG_PRIO_HIGH, closed, NULL, 0, 0, -EBADF);

    sub(h, "O_DIRECT READ buf+1", IOENG_OP_READ, IOENG_PRIO_NORMAL, dfd, dbuf + 1, 4096, 0, -EINVAL);
    sub(h, "O_DIRECT READ len 100", IOENG_OP_READ, IOENG_PRIO_NORMAL, dfd, dbuf + 65536, 100, 4096,
        -EINVAL);
    sub(h, "O_DIRECT READ offset 1", IOENG_OP_READ, IOENG_PRIO_HIGH, dfd, dbuf + 131072, 4096, 1,
        -EINVAL);
    sub(h, "O_DIRECT WRITE buf+1", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, dfd, wsrc + 1, 4096, 8192,
        -EINVAL);
    sub(h, "O_DIRECT WRITE len 100", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, dfd, wsrc, 100, 16384,
        -EINVAL);
    sub(h, "O_DIRECT WRITE offset 1", IOENG_OP_WRITE, IOENG_PRIO_HIGH, dfd, wsrc, 4096, 32769,
        -EINVAL);

    sub(h, "WRITE to O_RDONLY fd", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, rofd, wsrc, 4096, 0, -EBADF);
    sub(h, "HIGH WRITE to O_RDONLY fd", IOENG_OP_WRITE, IOENG_PRIO_HIGH, rofd, wsrc, 512, 4096,
        -EBADF);
    sub(h, "READ from O_WRONLY fd", IOENG_OP_READ, IOENG_PRIO_NORMAL, wofd, rb, 4096, 0, -EBADF);
    sub(h, "FSYNC on O_RDONLY fd (allowed)", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, rofd, NULL, 0, 0, 0);

    sub(h, "READ into PROT_NONE memory", IOENG_OP_READ, IOENG_PRIO_NORMAL, tfd, hole, 4096, 0,
        -EFAULT);
    sub(h, "WRITE from PROT_NONE memory", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, tfd, hole, 4096, 8192,
        -EFAULT);

    int first_batch = recs.n;
    tu_waiter_wait(&recs.w, (uint64_t)first_batch, 20);
    /* the engine still works: aligned O_DIRECT read and a buffered read */
    sub(h, "O_DIRECT aligned READ after errors", IOENG_OP_READ, IOENG_PRIO_NORMAL, dfd,
        dbuf + 65536, 65536, 65536, 65536);
    sub(h, "buffered READ after errors", IOENG_OP_READ, IOENG_PRIO_NORMAL, tfd, rb, 8192, 0, 8192);
    tu_waiter_wait(&recs.w, (uint64_t)recs.n, 20);
    tu_close(h);
    tu_check_still_closed(closed);

    int bad = tu_recs_report(&recs, be);
    CHECK(bad == 0, "%d of %d requests gave the wrong result (listed above)", bad, recs.n);

    CHECK(memcmp(dbuf + 65536, init + 65536, 65536) == 0, "O_DIRECT read-back after errors");
    CHECK(memcmp(rb, init, 8192) == 0, "buffered read-back after errors");
    /* failed writes wrote nothing */
    unsigned char *now = malloc(FSZ);
    int vfd = open(dpath, O_RDONLY | O_CLOEXEC);
    CHECK(now && vfd >= 0, "open %s", dpath);
    tu_pread_all(vfd, now, FSZ, 0);
    CHECK(memcmp(now, init, FSZ) == 0, "a failed O_DIRECT write changed the file");
    close(vfd);
    tu_pread_all(tfd, now, 65536, 0);
    CHECK(memcmp(now, init, 65536) == 0, "a failed write changed the tmpfs file");
    struct stat sb;
    CHECK(fstat(tfd, &sb) == 0 && sb.st_size == 65536, "tmpfs file size changed");

    munmap(hole, (size_t)pg * 4);
    free(now);
    free(init);
    free(dbuf);
    free(wsrc);
    free(rb);
    close(rofd);
    close(wofd);
    close(dfd);
    close(tfd);
    printf("test_kernel_errors [%s]: OK: %d requests: closed fd -> -EBADF (R/W/FSYNC/FDATASYNC), misaligned "
           "O_DIRECT on ext4 -> -EINVAL (buf+1, len 100, offset 1; R and W), wrong-mode fd -> "
           "-EBADF, PROT_NONE buffer -> -EFAULT; engine keeps working; failed writes wrote "
           "nothing\n", tu_backend_name(be), recs.n);
    tu_waiter_destroy(&recs.w);
    return 0;
}
