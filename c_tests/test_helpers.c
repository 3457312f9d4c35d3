/* The 1.1 helpers (DESIGN §6.4) on real files, on the backend x mode of IOENG_TEST_BACKEND /
 * IOENG_TEST_MODE:
 *  - requests made by the builders (WRITE from a const buffer, WRITEV with DSYNC, READ,
 *    READV, FDATASYNC, FSYNC, a deadline from ioeng_deadline_in_ns) run and give the
 *    expected results and bytes on ext4 and tmpfs;
 *  - ioeng_backend_name() names the backend ioeng_backend() reports; NULL for NULL;
 *  - ioeng_dio_alignment(): on ext4 and tmpfs it answers 0 exactly when open(O_DIRECT)
 *    works, and an O_DIRECT READ through the engine with that alignment succeeds; on a
 *    block device (/dev/vda when readable; a loop device with 4096-byte sectors, made
 *    with losetup when root) it gives the logical block size (BLKSSZGET) and an O_DIRECT
 *    READ of the loop device with it works;
 *    a pipe, a socket, a directory and files that open(O_DIRECT) refuses with EINVAL
 *    (/proc/self/status, /proc/version, a /sys file) give -EOPNOTSUPP; bad fds -EBADF;
 *    NULL -EINVAL;
 *    nothing is written on failure. */
#include "test_util.h"

#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

static tu_waiter_t waiter;
static int64_t results[8];

static void on_done(void *ctx, int64_t res)
{
    results[(uintptr_t)ctx] = res;
    tu_waiter_add(&waiter, 1);
}

/* Submits `r` as slot `i` and waits for its result. */
static int64_t run(ioeng_t *h, ioeng_req_t r, uintptr_t i)
{
    uint64_t before = tu_waiter_get(&waiter);
    int rc = ioeng_submit(h, &r, on_done, (void *)i);
    CHECK_EQ(rc, 0, "submit op %u", r.op);
    tu_waiter_wait(&waiter, before + 1, 10);
    return results[i];
}

static void builders_on(ioeng_t *h, enum tu_fs fs)
{
    int fd = tu_scratch(fs, 0, NULL);
    static const char header[16] = "WAL-HEADER-0001";
    char rec_a[100], rec_b[28];
    tu_fill(rec_a, sizeof rec_a, 1);
    tu_fill(rec_b, sizeof rec_b, 2);
    const struct iovec recs[2] = {{rec_a, sizeof rec_a}, {rec_b, sizeof rec_b}};

    CHECK_EQ(run(h, ioeng_req_write(fd, header, sizeof header, 0), 0), 16, "%s WRITE",
             tu_fs_name(fs));
    ioeng_req_t w = ioeng_req_writev(fd, recs, 2, 16);
    w.flags = IOENG_REQ_DSYNC;
    w.deadline_ns = ioeng_deadline_in_ns(10ull * 1000 * 1000 * 1000);
    CHECK_EQ(run(h, w, 1), 128, "%s WRITEV+DSYNC", tu_fs_name(fs));
    CHECK_EQ(run(h, ioeng_req_fdatasync(fd), 2), 0, "%s FDATASYNC", tu_fs_name(fs));
    CHECK_EQ(run(h, ioeng_req_fsync(fd), 3), 0, "%s FSYNC", tu_fs_name(fs));

    char back[144];
    memset(back, 0, sizeof back);
    ioeng_req_t r = ioeng_req_read(fd, back, sizeof back, 0);
    r.prio = IOENG_PRIO_HIGH;
    CHECK_EQ(run(h, r, 4), 144, "%s READ (EOF at 144)", tu_fs_name(fs));
    CHECK(memcmp(back, header, 16) == 0 && memcmp(back + 16, rec_a, 100) == 0 &&
              memcmp(back + 116, rec_b, 28) == 0,
          "%s: bytes read back differ", tu_fs_name(fs));

    char va[16], vb[16];
    const struct iovec into[2] = {{va, sizeof va}, {vb, sizeof vb}};
    CHECK_EQ(run(h, ioeng_req_readv(fd, into, 2, 0), 5), 32, "%s READV", tu_fs_name(fs));
    CHECK(memcmp(va, header, 16) == 0 && memcmp(vb, rec_a, 16) == 0, "%s: READV bytes",
          tu_fs_name(fs));

    /* A deadline already past: accepted, times out at once (§5.4). */
    ioeng_req_t late = ioeng_req_read(fd, back, 16, 0);
    late.deadline_ns = ioeng_deadline_in_ns(0) - 1;
    CHECK_EQ(run(h, late, 6), -ETIMEDOUT, "%s READ with a past deadline", tu_fs_name(fs));
    close(fd);
}

/* Whether open(O_DIRECT) works on `path`. */
static int direct_open_works(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

/* Whether another process sees a write lock on [0, 1) of `fd`'s file (F_GETLK in a
 * child: a process never conflicts with its own locks). */
static int lock_seen_by_others(int fd)
{
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        _exit(fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type != F_UNLCK ? 0 : 1);
    }
    int st;
    CHECK_EQ(waitpid(pid, &st, 0), pid, "waitpid");
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void alignment_of_file(ioeng_t *h, enum tu_fs fs)
{
    char path[PATH_MAX];
    int fd = tu_scratch(fs, 0, path);
    size_t len = 1 << 16;
    char *data = tu_alloc(len);
    tu_fill(data, len, 9);
    tu_pwrite_all(fd, data, len, 0);
    uint32_t mem = 7, off = 7;
    /* A pure query: the caller's POSIX record lock on the file survives it (a second
     * open and close of the file would have dropped it). */
    struct flock lock = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    CHECK(fcntl(fd, F_SETLK, &lock) == 0, "F_SETLK: %s", strerror(errno));
    CHECK(lock_seen_by_others(fd), "%s: test bug: the lock is not visible", tu_fs_name(fs));
    int rc = ioeng_dio_alignment(fd, &mem, &off);
    CHECK(lock_seen_by_others(fd), "%s: ioeng_dio_alignment dropped the caller's record lock",
          tu_fs_name(fs));
    int direct = direct_open_works(path);
    if (!direct) {
        CHECK_EQ(rc, -EOPNOTSUPP, "%s: open(O_DIRECT) fails, dio_alignment", tu_fs_name(fs));
        CHECK(mem == 7 && off == 7, "outputs written on failure");
        printf("  %s: O_DIRECT unsupported, ioeng_dio_alignment = -EOPNOTSUPP\n", tu_fs_name(fs));
        free(data);
        close(fd);
        return;
    }
    CHECK_EQ(rc, 0, "%s: ioeng_dio_alignment", tu_fs_name(fs));
    CHECK(mem && !(mem & (mem - 1)) && off && !(off & (off - 1)) && off <= 65536 && mem <= 65536,
          "%s: alignments %u / %u not powers of two", tu_fs_name(fs), mem, off);
    /* The answer works: an O_DIRECT READ of `off` bytes at offset `off` into a buffer
     * aligned to exactly `mem` (and not to 2*mem where possible). */
    int dfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    CHECK(dfd >= 0, "open O_DIRECT: %s", strerror(errno));
    char *raw = tu_alloc(3 * 65536);
    char *buf = (char *)(((uintptr_t)raw + 2 * 65536 - 1) / (2 * 65536) * (2 * 65536)) + mem;
    CHECK_EQ(run(h, ioeng_req_read(dfd, buf, off, off), 7), (int64_t)off,
             "%s: O_DIRECT READ aligned to mem %u offset %u", tu_fs_name(fs), mem, off);
    CHECK(memcmp(buf, data + off, off) == 0, "%s: O_DIRECT bytes differ", tu_fs_name(fs));
    printf("  %s: ioeng_dio_alignment = 0, mem_align %u, offset_align %u; O_DIRECT READ ok\n",
           tu_fs_name(fs), mem, off);
    close(dfd);
    free(raw);
    free(data);
    close(fd);
}

static void alignment_of_block_device(void)
{
    int fd = open("/dev/vda", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("  no block device: /dev/vda: %s (row not run)\n", strerror(errno));
        return;
    }
    int lbs = 0;
    CHECK(ioctl(fd, BLKSSZGET, &lbs) == 0, "BLKSSZGET: %s", strerror(errno));
    uint32_t mem = 0, off = 0;
    CHECK_EQ(ioeng_dio_alignment(fd, &mem, &off), 0, "/dev/vda");
    CHECK_EQ(off, (uint32_t)lbs, "/dev/vda offset_align vs BLKSSZGET");
    CHECK(mem && mem <= off && !(mem & (mem - 1)), "/dev/vda mem_align %u", mem);
    printf("  /dev/vda: mem_align %u, offset_align %u (BLKSSZGET %d)\n", mem, off, lbs);
    close(fd);
}

/* A loop device with 4096-byte logical blocks over an ext4 file (root and losetup): the
 * alignment is the device's own (4096, not the 512 of the disk under /tmp), and an
 * O_DIRECT READ of the device through the engine with it works. */
static void alignment_of_loop_device(ioeng_t *h)
{
    if (geteuid() != 0) {
        printf("  loop device row not run: not root (losetup needs CAP_SYS_ADMIN)\n");
        return;
    }
    char file[PATH_MAX], cmd[PATH_MAX + 64], dev[64] = "";
    int ffd = tu_scratch(TU_EXT4, 0, file);
    char *data = tu_alloc(1 << 20);
    tu_fill(data, 1 << 20, 5);
    tu_pwrite_all(ffd, data, 1 << 20, 0);
    close(ffd);
    snprintf(cmd, sizeof cmd, "losetup -f --show -b 4096 '%s' 2>&1", file);
    FILE *p = popen(cmd, "r");
    CHECK(p, "popen losetup");
    if (!fgets(dev, sizeof dev, p))
        dev[0] = 0;
    int st = pclose(p);
    dev[strcspn(dev, "\n")] = 0;
    if (st != 0 || strncmp(dev, "/dev/loop", 9) != 0) {
        printf("  loop device row not run: losetup failed: %s\n", dev);
        free(data);
        return;
    }
    int fd = open(dev, O_RDONLY | O_DIRECT | O_CLOEXEC);
    CHECK(fd >= 0, "open %s O_DIRECT: %s", dev, strerror(errno));
    int lbs = 0;
    CHECK(ioctl(fd, BLKSSZGET, &lbs) == 0, "BLKSSZGET: %s", strerror(errno));
    uint32_t mem = 0, off = 0;
    CHECK_EQ(ioeng_dio_alignment(fd, &mem, &off), 0, "%s", dev);
    CHECK(lbs == 4096 && off == 4096, "%s: offset_align %u, BLKSSZGET %d (want 4096)", dev, off,
          lbs);
    CHECK(mem && mem <= off && !(mem & (mem - 1)), "%s: mem_align %u", dev, mem);
    char *raw = tu_alloc(3 * 65536);
    char *buf = (char *)(((uintptr_t)raw + 65535) / 65536 * 65536) + mem;
    CHECK_EQ(run(h, ioeng_req_read(fd, buf, off, 2 * off), 7), (int64_t)off,
             "%s: O_DIRECT READ with mem %u offset %u", dev, mem, off);
    CHECK(memcmp(buf, data + 2 * off, off) == 0, "%s: bytes differ", dev);
    printf("  %s (4096-byte sectors): mem_align %u, offset_align %u; O_DIRECT READ ok\n", dev,
           mem, off);
    close(fd);
    snprintf(cmd, sizeof cmd, "losetup -d %s", dev);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    free(raw);
    free(data);
}

static void alignment_refusals(void)
{
    uint32_t mem = 7, off = 7;
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    CHECK_EQ(ioeng_dio_alignment(p[0], &mem, &off), -EOPNOTSUPP, "pipe");
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    CHECK_EQ(ioeng_dio_alignment(sv[0], &mem, &off), -EOPNOTSUPP, "socket");
    int dir = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK_EQ(ioeng_dio_alignment(dir, &mem, &off), -EOPNOTSUPP, "directory");
    /* Regular files without direct IO (open(O_DIRECT) says EINVAL), where the kernel
     * reports no STATX_DIOALIGN: not 4096. */
    const char *no_direct[] = {"/proc/self/status", "/proc/version",
                               "/sys/kernel/uevent_seqnum"};
    for (size_t i = 0; i < sizeof no_direct / sizeof *no_direct; i++) {
        int fd = open(no_direct[i], O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0, "open %s: %s", no_direct[i], strerror(errno));
        int dfd = open(no_direct[i], O_RDONLY | O_DIRECT | O_CLOEXEC);
        CHECK(dfd < 0 && errno == EINVAL, "%s: open(O_DIRECT) = %d (%s), want EINVAL",
              no_direct[i], dfd, dfd < 0 ? strerror(errno) : "ok");
        CHECK_EQ(ioeng_dio_alignment(fd, &mem, &off), -EOPNOTSUPP, "%s", no_direct[i]);
        close(fd);
    }
    CHECK_EQ(ioeng_dio_alignment(-1, &mem, &off), -EBADF, "fd -1");
    CHECK_EQ(ioeng_dio_alignment(tu_closed_fd(900), &mem, &off), -EBADF, "closed fd");
    CHECK_EQ(ioeng_dio_alignment(p[0], NULL, &off), -EINVAL, "NULL mem_align");
    CHECK_EQ(ioeng_dio_alignment(p[0], &mem, NULL), -EINVAL, "NULL offset_align");
    CHECK_EQ(ioeng_dio_alignment(-1, NULL, NULL), -EINVAL, "NULL before a bad fd");
    CHECK(mem == 7 && off == 7, "outputs written on failure");
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    close(dir);
}

int main(void)
{
    tu_init("test_helpers", 60);
    ioeng_backend_t b = tu_backend();
    require_backend(b);
    tu_waiter_init(&waiter);
    ioeng_t *h = tu_open(b, 32, 0, 0, 0);

    const char *name = ioeng_backend_name(h);
    const char *want = b == IOENG_BACKEND_AIO ? "aio" : "io_uring";
    CHECK(name && strcmp(name, want) == 0, "ioeng_backend_name = %s, want %s",
          name ? name : "(null)", want);
    CHECK(ioeng_backend_name(h) == name, "not a static string");
    CHECK(ioeng_backend_name(NULL) == NULL, "ioeng_backend_name(NULL) not NULL");

    builders_on(h, TU_EXT4);
    builders_on(h, TU_TMPFS);
    alignment_of_file(h, TU_EXT4);
    alignment_of_file(h, TU_TMPFS);
    alignment_of_block_device();
    alignment_of_loop_device(h);
    alignment_refusals();

    tu_close(h);
    tu_waiter_destroy(&waiter);
    printf("PASS test_helpers [%s %s]: builders on ext4+tmpfs, backend name %s, "
           "dio alignment\n", tu_backend_name(b), tu_mode_name(), want);
    return 0;
}
