/*
 * IOENG_OP_FALLOCATE and IOENG_OP_SYNC_FILE_RANGE (interface 1.1, DESIGN.md §6.0):
 * every request's res is what fallocate(2)/sync_file_range(2) answer for an identical
 * file (a twin file gets the direct syscall), on ext4 and tmpfs, buffered and O_DIRECT:
 *  - FALLOCATE: plain allocation extending the size; KEEP_SIZE (size unchanged, blocks
 *    grow); PUNCH_HOLE|KEEP_SIZE (zeros read back, size unchanged, SEEK_HOLE/SEEK_DATA
 *    find the hole); ZERO_RANGE (ext4: zeros; tmpfs: the kernel's -EOPNOTSUPP); invalid
 *    modes, len 0, a range past s_maxbytes, a pipe, a read-only fd: the kernel's errno;
 *  - SYNC_FILE_RANGE: WAIT_BEFORE|WRITE|WAIT_AFTER over dirty data, len 0, bad flags, a
 *    pipe; a range of 5 GiB on a sparse file (io_uring's 32-bit SQE length: two pieces,
 *    seen as one resubmit) and one to INT64_MAX (stops at the file's end); a FALLOCATE
 *    punch of 5 GiB (its length is 64 bits: the data at 4.5 GiB is zeroed);
 *  - any IOENG_REQ_* flag, offset + len above INT64_MAX, fd < 0: synchronous error, no
 *    callback; a queued command can be cancelled; cancels of queued and in-flight
 *    commands: one callback each (0 or -ECANCELED); one kernel round mixing commands with
 *    requests AIO's io_submit refuses (closed fd): each request gets its own result;
 *  - a mix of FALLOCATE/SYNC_FILE_RANGE (NORMAL and HIGH) with READs and WRITEs in flight;
 *  - the AIO helper thread: started at the first command (not at open, not in POLLED's
 *    ioeng_poll), named ioeng-aio-helper, all asynchronous signals blocked; a POLLED
 *    ioeng_poll with a timeout returns the command's completion; after ioeng_close the
 *    process has exactly the threads it had before open; a child forked while the helper
 *    runs closes the inherited handle and uses FALLOCATE on an engine of its own;
 *  - with the fd table filled after open (RLIMIT_NOFILE): FALLOCATE and SYNC_FILE_RANGE
 *    give 0 (the AIO helper's pipe exists from open), and another ioeng_open -EMFILE.
 * Run per backend and mode (IOENG_TEST_BACKEND, IOENG_TEST_MODE; see run.sh).
 */
#include "test_util.h"

#include <linux/falloc.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)

static ioeng_backend_t be;

static ioeng_req_t cmd(ioeng_op_t op, int fd, uint64_t off, uint64_t len, uint32_t arg)
{
    ioeng_req_t r = tu_req(op, IOENG_PRIO_NORMAL, fd, NULL, len, off);
    r.buf_index = arg;
    return r;
}

/* Runs one request through `h` and returns its callback's res (exactly one callback). */
static int64_t run(ioeng_t *h, ioeng_req_t q, const char *what)
{
    tu_waiter_t w;
    tu_rec_t r;
    tu_waiter_init(&w);
    tu_rec_submit(h, &r, &w, what, q, 0);
    tu_waiter_wait(&w, 1, 60);
    usleep(1000); /* a second callback would show here */
    CHECK_EQ(__atomic_load_n(&r.fired, __ATOMIC_SEQ_CST), 1, "%s: callbacks", what);
    tu_waiter_destroy(&w);
    return r.res;
}

static int64_t direct_fallocate(int fd, uint32_t mode, uint64_t off, uint64_t len)
{
    return fallocate(fd, (int)mode, (off_t)off, (off_t)len) == 0 ? 0 : -(int64_t)errno;
}

static int64_t direct_sfr(int fd, uint64_t off, uint64_t len, uint32_t flags)
{
    return sync_file_range(fd, (off64_t)off, (off64_t)len, flags) == 0 ? 0 : -(int64_t)errno;
}

static struct stat st(int fd)
{
    struct stat s;
    CHECK(fstat(fd, &s) == 0, "fstat: %s", strerror(errno));
    return s;
}

/* ---- one filesystem configuration: a twin pair of files ------------------------- */

typedef struct {
    enum tu_fs fs;
    int direct;
    char name[32];
} fcfg_t;

/* Whether this kernel opens tmpfs files with O_DIRECT (6.6+); said out loud if not. */
static int tmpfs_direct_ok(void)
{
    char path[] = "/dev/shm/ioeng-test_fallocate-probe-XXXXXX";
    int fd = mkostemp(path, O_CLOEXEC);
    CHECK(fd >= 0, "mkostemp: %s", strerror(errno));
    int dfd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
    int err = errno;
    unlink(path);
    close(fd);
    if (dfd >= 0) {
        close(dfd);
        return 1;
    }
    printf("note: tmpfs refuses O_DIRECT here (%s): tmpfs runs buffered only\n", strerror(err));
    return 0;
}

/* Same bytes in both files over [0, size) (size a multiple of 4096: O_DIRECT reads). */
static void check_twins_equal(const fcfg_t *c, int a, int b, const char *what)
{
    uint64_t size = (uint64_t)st(a).st_size;
    CHECK_EQ(size, (uint64_t)st(b).st_size, "%s %s: sizes of the twins", c->name, what);
    if (size == 0)
        return;
    CHECK(size % 4096 == 0, "test bug: size %" PRIu64, size);
    char *x = tu_alloc(size), *y = tu_alloc(size);
    tu_pread_all(a, x, size, 0);
    tu_pread_all(b, y, size, 0);
    CHECK(memcmp(x, y, size) == 0, "%s %s: the twins' data differ", c->name, what);
    free(x);
    free(y);
}

static void fill_twins(int a, int b, uint64_t len, uint64_t seed)
{
    char *buf = tu_alloc(len);
    tu_fill(buf, len, seed);
    tu_pwrite_all(a, buf, len, 0);
    tu_pwrite_all(b, buf, len, 0);
    CHECK(fsync(a) == 0 && fsync(b) == 0, "fsync: %s", strerror(errno));
    free(buf);
}

static int all_zero(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

/* FALLOCATE `mode` over [off, off+len) through the engine on `a` and directly on `b`:
 * same result; returns it. */
static int64_t falloc_twins(ioeng_t *h, const fcfg_t *c, int a, int b, uint32_t mode,
                            uint64_t off, uint64_t len, const char *what)
{
    int64_t got = run(h, cmd(IOENG_OP_FALLOCATE, a, off, len, mode), what);
    int64_t want = direct_fallocate(b, mode, off, len);
    CHECK_EQ(got, want, "%s %s (mode %#x off %" PRIu64 " len %" PRIu64
             "): engine %s, fallocate(2) %s", c->name, what, mode, off, len,
             tu_errname(got), tu_errname(want));
    return got;
}

static int64_t sfr_twins(ioeng_t *h, const fcfg_t *c, int a, int b, uint32_t flags,
                         uint64_t off, uint64_t len, const char *what)
{
    int64_t got = run(h, cmd(IOENG_OP_SYNC_FILE_RANGE, a, off, len, flags), what);
    int64_t want = direct_sfr(b, off, len, flags);
    CHECK_EQ(got, want, "%s %s (flags %#x off %" PRIu64 " len %" PRIu64
             "): engine %s, sync_file_range(2) %s", c->name, what, flags, off, len,
             tu_errname(got), tu_errname(want));
    return got;
}

static void pair(const fcfg_t *c, int *a, int *b)
{
    *a = tu_scratch(c->fs, c->direct, NULL);
    *b = tu_scratch(c->fs, c->direct, NULL);
}

static void fallocate_modes(ioeng_t *h, const fcfg_t *c)
{
    int a, b;
    /* Plain allocation extends the size and allocates the blocks. */
    pair(c, &a, &b);
    CHECK_EQ(falloc_twins(h, c, a, b, 0, 0, 1 * MiB, "allocate"), 0, "%s allocate", c->name);
    CHECK_EQ(st(a).st_size, 1 * MiB, "%s: allocate extends the size", c->name);
    CHECK(st(a).st_blocks * 512 >= (blkcnt_t)(1 * MiB), "%s: allocate: %lld blocks", c->name,
          (long long)st(a).st_blocks);
    check_twins_equal(c, a, b, "allocate");
    close(a);
    close(b);

    /* KEEP_SIZE past the end: size unchanged, blocks grow. */
    pair(c, &a, &b);
    fill_twins(a, b, 64 * KiB, 1);
    blkcnt_t before = st(a).st_blocks;
    CHECK_EQ(falloc_twins(h, c, a, b, FALLOC_FL_KEEP_SIZE, 64 * KiB, 1 * MiB, "keep size"), 0,
             "%s keep size", c->name);
    CHECK_EQ(st(a).st_size, 64 * KiB, "%s: KEEP_SIZE changed the size", c->name);
    CHECK(st(a).st_blocks >= before + (blkcnt_t)(1 * MiB / 512),
          "%s: KEEP_SIZE: blocks %lld -> %lld", c->name, (long long)before,
          (long long)st(a).st_blocks);
    check_twins_equal(c, a, b, "keep size");
    close(a);
    close(b);

    /* PUNCH_HOLE|KEEP_SIZE: zeros, same size, a hole SEEK_HOLE finds. */
    pair(c, &a, &b);
    fill_twins(a, b, 1 * MiB, 2);
    CHECK_EQ(falloc_twins(h, c, a, b, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 * KiB,
                          128 * KiB, "punch hole"),
             0, "%s punch hole", c->name);
    CHECK_EQ(st(a).st_size, 1 * MiB, "%s: punch hole changed the size", c->name);
    char *buf = tu_alloc(1 * MiB), *orig = tu_alloc(1 * MiB);
    tu_fill(orig, 1 * MiB, 2);
    tu_pread_all(a, buf, 1 * MiB, 0);
    CHECK(all_zero(buf + 256 * KiB, 128 * KiB), "%s: the punched range is not zeros", c->name);
    CHECK(memcmp(buf, orig, 256 * KiB) == 0 &&
              memcmp(buf + 384 * KiB, orig + 384 * KiB, 640 * KiB) == 0,
          "%s: data around the hole changed", c->name);
    CHECK_EQ(lseek(a, 0, SEEK_HOLE), 256 * KiB, "%s: SEEK_HOLE", c->name);
    CHECK_EQ(lseek(a, 256 * KiB, SEEK_DATA), 384 * KiB, "%s: SEEK_DATA after the hole", c->name);
    check_twins_equal(c, a, b, "punch hole");

    /* ZERO_RANGE inside the file: ext4 zeros it (size unchanged); tmpfs has no such mode. */
    int64_t zr = falloc_twins(h, c, a, b, FALLOC_FL_ZERO_RANGE, 512 * KiB, 64 * KiB, "zero range");
    if (c->fs == TU_EXT4) {
        CHECK_EQ(zr, 0, "%s: zero range", c->name);
        tu_pread_all(a, buf, 1 * MiB, 0);
        CHECK(all_zero(buf + 512 * KiB, 64 * KiB), "%s: zero range left data", c->name);
        CHECK(memcmp(buf + 576 * KiB, orig + 576 * KiB, 448 * KiB) == 0,
              "%s: data after the zeroed range changed", c->name);
    } else {
        CHECK_EQ(zr, -EOPNOTSUPP, "%s: zero range on tmpfs", c->name);
    }
    CHECK_EQ(st(a).st_size, 1 * MiB, "%s: zero range changed the size", c->name);
    check_twins_equal(c, a, b, "zero range");
    free(buf);
    free(orig);

    /* What the kernel refuses, it refuses in the callback with its own errno. */
    CHECK_EQ(falloc_twins(h, c, a, b, FALLOC_FL_PUNCH_HOLE, 0, 4096, "punch without keep"),
             -EOPNOTSUPP, "%s", c->name);
    CHECK_EQ(falloc_twins(h, c, a, b, 0x80000000u, 0, 4096, "unknown mode bit"), -EOPNOTSUPP,
             "%s", c->name);
    CHECK_EQ(falloc_twins(h, c, a, b, 0, 0, 0, "len 0"), -EINVAL, "%s", c->name);
    /* ext4 files end at 16 TiB (-EFBIG); tmpfs's at INT64_MAX (KEEP_SIZE keeps the
     * twins readable). */
    int64_t big = falloc_twins(h, c, a, b, c->fs == TU_EXT4 ? 0 : FALLOC_FL_KEEP_SIZE,
                               (uint64_t)INT64_MAX - 4096, 4096, "near INT64_MAX");
    CHECK(c->fs != TU_EXT4 || big == -EFBIG, "%s: past s_maxbytes: %s", c->name,
          tu_errname(big));
    falloc_twins(h, c, a, b, FALLOC_FL_COLLAPSE_RANGE, 1000, 4096, "unaligned collapse");
    falloc_twins(h, c, a, b, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
                 0, 4096, "punch + zero");
    check_twins_equal(c, a, b, "refused modes");
    close(a);
    close(b);
}

static void sync_ranges(ioeng_t *h, const fcfg_t *c)
{
    const uint32_t all = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                         SYNC_FILE_RANGE_WAIT_AFTER;
    int a, b;
    pair(c, &a, &b);
    char *buf = tu_alloc(256 * KiB);
    tu_fill(buf, 256 * KiB, 3);
    tu_pwrite_all(a, buf, 256 * KiB, 0); /* dirty (buffered configurations) */
    tu_pwrite_all(b, buf, 256 * KiB, 0);
    CHECK_EQ(sfr_twins(h, c, a, b, all, 0, 256 * KiB, "wait+write+wait"), 0, "%s", c->name);
    CHECK_EQ(sfr_twins(h, c, a, b, SYNC_FILE_RANGE_WRITE, 4096, 0, "to the end"), 0, "%s",
             c->name);
    CHECK_EQ(sfr_twins(h, c, a, b, all | 8, 0, 4096, "bad flags"), -EINVAL, "%s", c->name);
    CHECK_EQ(sfr_twins(h, c, a, b, 0x80000000u, 0, 4096, "high bad flag"), -EINVAL, "%s",
             c->name);
    CHECK_EQ(sfr_twins(h, c, a, b, 0, 0, 4096, "no flags"), 0, "%s", c->name);
    close(a);
    close(b);

    /* 5 GiB on a sparse 6 GiB file with dirty pages at 1 GiB and 4.5 GiB: two pieces (one
     * resubmit) on both backends; to INT64_MAX: stops at the end (two pieces too). */
    pair(c, &a, &b);
    CHECK(ftruncate(a, (off_t)(6 * GiB)) == 0 && ftruncate(b, (off_t)(6 * GiB)) == 0,
          "ftruncate 6 GiB: %s", strerror(errno));
    uint64_t dirty[2] = {1 * GiB, 4 * GiB + 512 * MiB};
    for (int i = 0; i < 2; i++) {
        tu_pwrite_all(a, buf, 64 * KiB, (off_t)dirty[i]);
        tu_pwrite_all(b, buf, 64 * KiB, (off_t)dirty[i]);
    }
    uint64_t r0 = tu_stats(h).resubmits;
    CHECK_EQ(sfr_twins(h, c, a, b, all, 0, 5 * GiB, "5 GiB"), 0, "%s", c->name);
    uint64_t r1 = tu_stats(h).resubmits;
    CHECK_EQ(r1 - r0, 1, "%s: a 5 GiB range goes in two pieces", c->name);
    CHECK_EQ(sfr_twins(h, c, a, b, all, 0, (uint64_t)INT64_MAX, "to INT64_MAX"), 0, "%s",
             c->name);
    CHECK_EQ(tu_stats(h).resubmits - r1, 1, "%s: to INT64_MAX: pieces only to the end",
             c->name);
    CHECK_EQ(sfr_twins(h, c, a, b, all, 4 * GiB, 2 * GiB - 4096, "below 4 GiB at 4 GiB"), 0,
             "%s", c->name);
    /* FALLOCATE's length has 64 bits on both backends: a 5 GiB punch reaches the data at
     * 4.5 GiB (a length cut to 32 bits would stop at 1 GiB), and not the data at 5.5 GiB. */
    tu_pwrite_all(a, buf, 64 * KiB, (off_t)(5 * GiB + 512 * MiB));
    tu_pwrite_all(b, buf, 64 * KiB, (off_t)(5 * GiB + 512 * MiB));
    CHECK_EQ(falloc_twins(h, c, a, b, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 5 * GiB,
                          "punch 5 GiB"),
             0, "%s", c->name);
    char *got = tu_alloc(64 * KiB);
    for (int i = 0; i < 2; i++) {
        tu_pread_all(a, got, 64 * KiB, (off_t)dirty[i]);
        CHECK(all_zero(got, 64 * KiB), "%s: punch 5 GiB left data at %" PRIu64, c->name,
              dirty[i]);
    }
    tu_pread_all(a, got, 64 * KiB, (off_t)(5 * GiB + 512 * MiB));
    CHECK(memcmp(got, buf, 64 * KiB) == 0, "%s: punch 5 GiB went past its end", c->name);
    CHECK_EQ(st(a).st_size, 6 * GiB, "%s: punch 5 GiB changed the size", c->name);
    free(got);
    close(a);
    close(b);
    free(buf);
}

/* Errors outside a file: a pipe, a read-only fd, a closed fd. */
static void other_files(ioeng_t *h)
{
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    CHECK_EQ(run(h, cmd(IOENG_OP_FALLOCATE, p[1], 0, 4096, 0), "fallocate pipe"),
             direct_fallocate(p[1], 0, 0, 4096), "fallocate on a pipe");
    CHECK_EQ(run(h, cmd(IOENG_OP_SYNC_FILE_RANGE, p[1], 0, 4096, SYNC_FILE_RANGE_WRITE),
                 "sfr pipe"),
             direct_sfr(p[1], 0, 4096, SYNC_FILE_RANGE_WRITE), "sync_file_range on a pipe");
    CHECK_EQ(direct_sfr(p[1], 0, 4096, SYNC_FILE_RANGE_WRITE), -ESPIPE, "the kernel's answer");
    char path[PATH_MAX];
    int rw = tu_scratch(TU_EXT4, 0, path);
    int ro = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(ro >= 0, "open ro: %s", strerror(errno));
    CHECK_EQ(run(h, cmd(IOENG_OP_FALLOCATE, ro, 0, 4096, 0), "fallocate read-only"), -EBADF,
             "fallocate on an O_RDONLY fd");
    CHECK_EQ(direct_fallocate(ro, 0, 0, 4096), -EBADF, "the kernel's answer");
    int closed = tu_closed_fd(900);
    CHECK_EQ(run(h, cmd(IOENG_OP_FALLOCATE, closed, 0, 4096, 0), "fallocate closed"), -EBADF,
             "closed fd");
    CHECK_EQ(run(h, cmd(IOENG_OP_SYNC_FILE_RANGE, closed, 0, 0, 0), "sfr closed"), -EBADF,
             "closed fd");
    tu_check_still_closed(closed);
    close(ro);
    close(rw);
    close(p[0]);
    close(p[1]);
}

/* Flags, a range past INT64_MAX, fd < 0: refused synchronously, no callback. Cancel of a
 * queued command. */
static void refusals(void)
{
    ioeng_t *h = tu_open(be, 8, 0, 0, 1 /* paused */);
    int fd = tu_scratch(TU_EXT4, 0, NULL);
    const uint32_t flags[] = {IOENG_REQ_DSYNC, IOENG_REQ_SYNC, IOENG_REQ_NOWAIT,
                              IOENG_REQ_FIXED_BUF, IOENG_REQ_SHORT_OK, 1u << 20};
    const ioeng_op_t ops[] = {IOENG_OP_FALLOCATE, IOENG_OP_SYNC_FILE_RANGE};
    for (int o = 0; o < 2; o++) {
        for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
            ioeng_req_t q = cmd(ops[o], fd, 0, 4096, 0);
            q.flags = flags[f];
            CHECK_EQ(ioeng_submit(h, &q, tu_count_cb, NULL), -EINVAL, "op %u flag %#x", ops[o],
                     flags[f]);
        }
        ioeng_req_t q = cmd(ops[o], fd, (uint64_t)INT64_MAX - 100, 101, 0);
        CHECK_EQ(ioeng_submit(h, &q, tu_count_cb, NULL), -EINVAL, "op %u past INT64_MAX", ops[o]);
        q = cmd(ops[o], fd, (uint64_t)INT64_MAX + 1, 0, 0);
        CHECK_EQ(ioeng_submit(h, &q, tu_count_cb, NULL), -EINVAL, "op %u offset > INT64_MAX",
                 ops[o]);
        q = cmd(ops[o], -1, 0, 4096, 0);
        CHECK_EQ(ioeng_submit(h, &q, tu_count_cb, NULL), -EBADF, "op %u fd -1", ops[o]);
        q = cmd(ops[o], fd, 0, 4096, 0);
        q.reserved = 1;
        CHECK_EQ(ioeng_submit(h, &q, tu_count_cb, NULL), -EINVAL, "op %u reserved", ops[o]);
        /* Accepted at the limit: offset + len == INT64_MAX (the kernel answers). */
        q = cmd(ops[o], fd, (uint64_t)INT64_MAX - 100, 100, 0);
        q.tag = 77;
        CHECK_EQ(ioeng_submit(h, &q, tu_count_cb, NULL), 0, "op %u at INT64_MAX", ops[o]);
        /* buf is ignored, whatever it holds. */
        q = cmd(ops[o], fd, 0, 4096, 0);
        q.buf = (void *)0x1;
        q.tag = 77;
        CHECK_EQ(ioeng_submit(h, &q, tu_count_cb, NULL), 0, "op %u with a junk buf", ops[o]);
    }
    /* The paused engine holds the four accepted commands: cancelled while queued. */
    CHECK_EQ(ioeng_cancel(h, 77), 4, "cancel of queued commands");
    CHECK_EQ(ioeng_resume(h), 0, "resume");
    tu_wait_idle(h, 4);
    ioeng_stats_t s = tu_stats(h);
    CHECK_EQ(s.cancelled, 4, "cancelled");
    CHECK_EQ(tu_counted, 4, "callbacks: only the four accepted ones");
    CHECK_EQ(st(fd).st_size, 0, "a cancelled FALLOCATE did nothing");
    tu_close(h);
    close(fd);
    tu_counted = 0;
}

/* FALLOCATE/SYNC_FILE_RANGE among READs and WRITEs in flight (depth 8, 240 requests). */
static void mixed(const fcfg_t *c)
{
    static tu_recs_t l;
    memset(&l, 0, sizeof l);
    tu_waiter_init(&l.w);
    ioeng_t *h = tu_open(be, 8, 0, 0, 0);
    int fd = tu_scratch(c->fs, c->direct, NULL);
    const uint64_t n = 240, rd_base = 4 * MiB, fa_base = 16 * MiB;
    char *ref = tu_alloc(1 * MiB);
    tu_fill(ref, 1 * MiB, 40);
    tu_pwrite_all(fd, ref, 1 * MiB, (off_t)rd_base); /* what the READs read */
    char *wbuf = tu_alloc(n * 4096), *rbuf = tu_alloc(n * 4096);
    for (uint64_t i = 0; i < n; i++)
        tu_fill(wbuf + i * 4096, 4096, 100 + i);
    for (uint64_t i = 0; i < n; i++) {
        ioeng_prio_t prio = i % 10 == 9 ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL;
        switch (i % 4) {
        case 0:
            tu_recs_sub(h, &l, "WRITE", IOENG_OP_WRITE, prio, fd, wbuf + i * 4096, 4096, i * 4096,
                        4096);
            break;
        case 1:
            tu_recs_sub(h, &l, "READ", IOENG_OP_READ, prio, fd, rbuf + i * 4096, 4096,
                        rd_base + (i % 256) * 4096, 4096);
            break;
        case 2: {
            ioeng_req_t q = cmd(IOENG_OP_FALLOCATE, fd, fa_base + i * 64 * KiB, 64 * KiB,
                                FALLOC_FL_KEEP_SIZE);
            q.prio = prio;
            CHECK(l.n < TU_MAX_RECS, "too many");
            tu_rec_submit(h, &l.r[l.n++], &l.w, "FALLOCATE KEEP_SIZE", q, 0);
            break;
        }
        default: {
            ioeng_req_t q = cmd(IOENG_OP_SYNC_FILE_RANGE, fd, 0, 1 * MiB,
                                SYNC_FILE_RANGE_WRITE);
            q.prio = prio;
            CHECK(l.n < TU_MAX_RECS, "too many");
            tu_rec_submit(h, &l.r[l.n++], &l.w, "SYNC_FILE_RANGE", q, 0);
        }
        }
    }
    tu_waiter_wait(&l.w, n, 60);
    tu_close(h);
    CHECK(tu_recs_report(&l, be) == 0, "%s: mixed requests wrong (listed above)", c->name);
    for (uint64_t i = 0; i < n; i += 4) {
        char got[4096] __attribute__((aligned(4096)));
        tu_pread_all(fd, got, 4096, (off_t)(i * 4096));
        CHECK(memcmp(got, wbuf + i * 4096, 4096) == 0, "%s: WRITE %" PRIu64 " content", c->name,
              i);
    }
    for (uint64_t i = 1; i < n; i += 4)
        CHECK(memcmp(rbuf + i * 4096, ref + (i % 256) * 4096, 4096) == 0,
              "%s: READ %" PRIu64 " content", c->name, i);
    CHECK_EQ(st(fd).st_size, rd_base + 1 * MiB, "%s: KEEP_SIZE changed the size", c->name);
    CHECK(st(fd).st_blocks * 512 >= (blkcnt_t)(n / 4 * 64 * KiB),
          "%s: the KEEP_SIZE allocations are not there", c->name);
    close(fd);
    free(ref);
    free(wbuf);
    free(rbuf);
    tu_waiter_destroy(&l.w);
}

/* Cancels that land while commands are queued or in flight (on AIO: with the helper):
 * exactly one callback each, with the syscall's 0 or -ECANCELED. */
static int cancel_seen[2];
static void cancel_cb(void *ctx, int64_t res)
{
    int *fired = ctx;
    __atomic_add_fetch(fired, 1, __ATOMIC_SEQ_CST);
    CHECK(res == 0 || res == -ECANCELED, "cancelled command: res %s", tu_errname(res));
    __atomic_add_fetch(&cancel_seen[res == 0 ? 0 : 1], 1, __ATOMIC_SEQ_CST);
}

static void cancel_commands(void)
{
    enum { N = 64 };
    static int fired[N];
    memset(fired, 0, sizeof fired);
    cancel_seen[0] = cancel_seen[1] = 0;
    ioeng_t *h = tu_open(be, 4, 0, 0, 0);
    int fd = tu_scratch(TU_EXT4, 0, NULL);
    char *buf = tu_alloc(1 * MiB);
    tu_fill(buf, 1 * MiB, 5);
    for (int round = 0; round < 4; round++) {
        tu_pwrite_all(fd, buf, 1 * MiB, 0); /* dirty again: the syncs have work */
        for (int i = 0; i < N / 4; i++) {
            int k = round * (N / 4) + i;
            ioeng_req_t q = i % 2 ? cmd(IOENG_OP_SYNC_FILE_RANGE, fd, 0, 1 * MiB,
                                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                            SYNC_FILE_RANGE_WAIT_AFTER)
                                  : cmd(IOENG_OP_FALLOCATE, fd, 2 * MiB + (uint64_t)k * 4096,
                                        4096, FALLOC_FL_KEEP_SIZE);
            q.tag = 500 + (uint64_t)round;
            CHECK_EQ(ioeng_submit(h, &q, cancel_cb, &fired[k]), 0, "submit");
        }
        if (round % 2)
            usleep(200); /* some in flight by now */
        int found = ioeng_cancel(h, 500 + (uint64_t)round);
        CHECK(found >= 0 && found <= N / 4, "cancel found %d", found);
    }
    tu_wait_idle(h, N);
    tu_close(h);
    for (int k = 0; k < N; k++)
        CHECK_EQ(fired[k], 1, "command %d: callbacks", k);
    printf("cancel of commands: %d ran (0), %d cancelled\n", cancel_seen[0], cancel_seen[1]);
    close(fd);
    free(buf);
}

/* One kernel round with commands between requests that AIO's io_submit refuses (a
 * closed fd): each request gets its own result (the refused iocb names its slot). */
static void round_with_refusals(void)
{
    static tu_recs_t l;
    memset(&l, 0, sizeof l);
    tu_waiter_init(&l.w);
    ioeng_t *h = tu_open(be, 16, 0, 0, 1 /* paused: one round */);
    int fd = tu_scratch(TU_EXT4, 0, NULL);
    int closed = tu_closed_fd(900);
    char *buf = tu_alloc(4096);
    for (int k = 0; k < 3; k++) {
        ioeng_req_t q = cmd(IOENG_OP_FALLOCATE, fd, (uint64_t)k * 8192, 4096, 0);
        tu_rec_submit(h, &l.r[l.n++], &l.w, "FALLOCATE", q, 0);
        tu_recs_sub(h, &l, "READ closed fd", IOENG_OP_READ, IOENG_PRIO_NORMAL, closed, buf, 4096,
                    0, -EBADF);
        tu_recs_sub(h, &l, "FSYNC", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, fd, NULL, 0, 0, 0);
        q = cmd(IOENG_OP_SYNC_FILE_RANGE, closed, 0, 4096, SYNC_FILE_RANGE_WRITE);
        tu_rec_submit(h, &l.r[l.n++], &l.w, "SYNC_FILE_RANGE closed fd", q, -EBADF);
        tu_recs_sub(h, &l, "WRITE closed fd", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, closed, buf,
                    4096, 0, -EBADF);
    }
    CHECK_EQ(ioeng_resume(h), 0, "resume");
    tu_waiter_wait(&l.w, (uint64_t)l.n, 30);
    tu_close(h);
    tu_check_still_closed(closed);
    CHECK(tu_recs_report(&l, be) == 0, "a round with refusals: wrong results (listed above)");
    CHECK_EQ(st(fd).st_size, 2 * 8192 + 4096, "the FALLOCATEs");
    close(fd);
    free(buf);
    tu_waiter_destroy(&l.w);
}

/* ---- the AIO helper thread --------------------------------------------------------- */

/* The tid of this process's thread named `comm` (15 characters at most), or 0. */
static pid_t thread_named(const char *comm)
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL, "opendir: %s", strerror(errno));
    pid_t found = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && !found) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], name[32] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue; /* the thread is gone */
        if (fgets(name, sizeof name, f)) {
            name[strcspn(name, "\n")] = 0;
            if (strcmp(name, comm) == 0)
                found = (pid_t)atoi(e->d_name);
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

#define HELPER_COMM "ioeng-aio-helpe" /* "ioeng-aio-helper", cut to 15 characters */

/* This process's live threads, not counting io_uring's io-wq workers, which the kernel
 * starts for FALLOCATE/SYNC_FILE_RANGE and ends on its own schedule, nor threads on their
 * way out: pthread_join returns when the thread's tid is cleared, which is before the
 * kernel takes it out of /proc/self/task. Both are known by their task flags (the 9th
 * field of /proc/<tid>/stat: PF_IO_WORKER, PF_EXITING) and state, not by name: a new
 * worker carries its creator's name until it renames itself "iou-wrk-*". */
#define TASK_PF_EXITING 0x4u
#define TASK_PF_IO_WORKER 0x10u
static int user_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d != NULL, "opendir: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], line[1024] = {0};
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue; /* the thread is gone */
        size_t len = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[len] = 0;
        /* After "(comm)": state ppid pgrp session tty_nr tpgid flags. */
        const char *p = strrchr(line, ')');
        char state = 0;
        unsigned flags = 0;
        CHECK(p != NULL && sscanf(p + 1, " %c %*d %*d %*d %*d %*d %u", &state, &flags) == 2,
              "cannot parse %s", path);
        if (!(flags & (TASK_PF_IO_WORKER | TASK_PF_EXITING)) && state != 'Z' && state != 'X')
            n++;
    }
    closedir(d);
    return n;
}

/* The helper's blocked-signal mask holds every asynchronous signal. */
static void check_helper_signals(pid_t tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/status", (int)tid);
    FILE *f = fopen(path, "re");
    CHECK(f, "open %s: %s", path, strerror(errno));
    unsigned long long blk = 0;
    int seen = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "SigBlk: %llx", &blk) == 1)
            seen = 1;
    fclose(f);
    CHECK(seen, "no SigBlk line");
    const int sigs[] = {SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGCHLD, SIGPIPE, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        CHECK(blk & (1ull << (sigs[i] - 1)), "the helper does not block signal %d (SigBlk %llx)",
              sigs[i], blk);
}

static volatile int64_t poll_res = INT64_MIN;
static volatile pthread_t poll_cb_thread;
static void poll_cb(void *ctx, int64_t res)
{
    (void)ctx;
    poll_res = res;
    poll_cb_thread = pthread_self();
}

/* Opens an engine of `mode` directly (POLLED: this thread polls it), runs FALLOCATEs, and
 * checks the helper's lifecycle by /proc/self/task. */
static void helper_lifecycle(ioeng_mode_t mode)
{
    const char *mname = mode == IOENG_MODE_POLLED ? "polled" : "threads";
    int threads0 = user_threads();
    ioeng_config_t cfg = tu_config(be, mode, 8);
    ioeng_t *h = NULL;
    CHECK_EQ(ioeng_open(&cfg, &h), 0, "open");
    int engine_threads = mode == IOENG_MODE_POLLED ? 0 : 2;
    CHECK_EQ(user_threads(), threads0 + engine_threads,
             "%s: threads after open", mname);
    CHECK(!thread_named(HELPER_COMM), "%s: a helper thread at open", mname);
    int fd = tu_scratch(TU_EXT4, 0, NULL);
    ioeng_req_t q = cmd(IOENG_OP_FALLOCATE, fd, 0, 64 * KiB, 0);
    poll_res = INT64_MIN;
    CHECK_EQ(ioeng_submit(h, &q, poll_cb, NULL), 0, "submit");
    if (mode == IOENG_MODE_POLLED) {
        /* Only queued: nothing runs between polls, so no helper yet. */
        usleep(20000);
        CHECK(!thread_named(HELPER_COMM), "polled: a helper before any poll");
        CHECK_EQ(poll_res, INT64_MIN, "polled: a callback before any poll");
        uint64_t t0 = tu_now_ns();
        int n = ioeng_poll(h, 1, 10 * 1000000000ll);
        uint64_t took = tu_now_ns() - t0;
        CHECK_EQ(n, 1, "polled: ioeng_poll with a timeout returns the FALLOCATE's completion");
        CHECK(took < 2000000000ull, "polled: the completion took %" PRIu64 " ms to wake the poll",
              took / 1000000);
        CHECK(pthread_equal(poll_cb_thread, pthread_self()), "polled: callback off the poller");
        /* Outside any poll, a command's completion makes the event fd readable (the
         * stand-in iocb carries IOCB_FLAG_RESFD): one pass hands over a sync of 32 MiB of
         * dirty data, which takes far longer than the pass, then only the fd is watched. */
        int big = tu_scratch(TU_EXT4, 0, NULL);
        char *dirty = tu_alloc(32 * MiB);
        tu_fill(dirty, 32 * MiB, 6);
        tu_pwrite_all(big, dirty, 32 * MiB, 0);
        free(dirty);
        q = cmd(IOENG_OP_SYNC_FILE_RANGE, big, 0, 32 * MiB,
                SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
        poll_res = INT64_MIN;
        CHECK_EQ(ioeng_submit(h, &q, poll_cb, NULL), 0, "submit");
        CHECK_EQ(ioeng_poll(h, 0, 0), 0, "one pass: the sync is handed over, not done");
        CHECK_EQ(poll_res, INT64_MIN, "polled: the 32 MiB sync finished within one pass");
        struct pollfd pfd = {.fd = ioeng_event_fd(h), .events = POLLIN};
        CHECK_EQ(poll(&pfd, 1, 10000), 1, "polled: the event fd did not become readable");
        CHECK_EQ(ioeng_poll(h, 1, 0), 1, "polled: the readable fd's completion");
        CHECK_EQ(poll_res, 0, "polled: SYNC_FILE_RANGE res");
        close(big);
    } else {
        for (int i = 0; i < 10000 && poll_res == INT64_MIN; i++)
            usleep(1000);
    }
    CHECK_EQ(poll_res, 0, "%s: FALLOCATE res", mname);
    CHECK_EQ(st(fd).st_size, 64 * KiB, "%s: FALLOCATE done", mname);
    pid_t helper = thread_named(HELPER_COMM);
    if (be == IOENG_BACKEND_AIO) {
        CHECK(helper != 0, "%s: no helper thread after the first FALLOCATE", mname);
        CHECK(helper != (pid_t)gettid(), "%s: the helper is this thread", mname);
        check_helper_signals(helper);
        CHECK_EQ(user_threads(), threads0 + engine_threads + 1,
                 "%s: one helper thread", mname);
        /* Many more commands: still one helper. */
        for (int i = 0; i < 20; i++) {
            q = cmd(i % 2 ? IOENG_OP_SYNC_FILE_RANGE : IOENG_OP_FALLOCATE, fd,
                    (uint64_t)i * 4096, 4096, i % 2 ? SYNC_FILE_RANGE_WRITE : 0);
            poll_res = INT64_MIN;
            CHECK_EQ(ioeng_submit(h, &q, poll_cb, NULL), 0, "submit");
            if (mode == IOENG_MODE_POLLED)
                CHECK_EQ(ioeng_poll(h, 1, 10 * 1000000000ll), 1, "poll");
            else
                for (int k = 0; k < 10000 && poll_res == INT64_MIN; k++)
                    usleep(100);
            CHECK_EQ(poll_res, 0, "%s: command %d", mname, i);
        }
        CHECK_EQ(user_threads(), threads0 + engine_threads + 1,
                 "%s: still one helper thread", mname);
    } else {
        CHECK(helper == 0, "io_uring has no helper thread");
    }
    /* Queued and in flight at close: close drains them, then joins the helper. */
    for (int i = 0; i < 16; i++) {
        q = cmd(IOENG_OP_FALLOCATE, fd, 1 * MiB + (uint64_t)i * 64 * KiB, 64 * KiB,
                FALLOC_FL_KEEP_SIZE);
        CHECK_EQ(ioeng_submit(h, &q, tu_count_cb, NULL), 0, "submit");
    }
    CHECK_EQ(ioeng_close(h), 0, "close");
    CHECK_EQ(tu_counted, 16, "%s: close ran every callback", mname);
    tu_counted = 0;
    CHECK(!thread_named(HELPER_COMM), "%s: the helper outlived ioeng_close", mname);
    CHECK_EQ(user_threads(), threads0, "%s: after close, the threads of before open", mname);
    close(fd);
}

/* A child forked while the parent's helper runs: it closes the inherited handle (its copy
 * of the helper does not exist and is not touched) and uses FALLOCATE on its own engine. */
/* The fd table fills up after open: FALLOCATE and SYNC_FILE_RANGE still give the
 * syscall's 0 (they need no fd; an AIO engine creates its helper's pipe at open, and its
 * helper thread here, at the first command, needs none either), and a new ioeng_open
 * fails cleanly with -EMFILE. */
static void full_fd_table(void)
{
    ioeng_t *h = tu_open(be, 8, 0, 0, 0); /* this run's mode */
    int fd = tu_scratch(TU_EXT4, 0, NULL);
    tu_pwrite_all(fd, "dirty", 5, 0);
    struct rlimit saved, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0, "getrlimit: %s", strerror(errno));
    low = saved;
    low.rlim_cur = (rlim_t)tu_count_fds() + 8;
    CHECK(low.rlim_cur <= saved.rlim_cur, "RLIMIT_NOFILE %llu already below %llu",
          (unsigned long long)saved.rlim_cur, (unsigned long long)low.rlim_cur);
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0, "setrlimit: %s", strerror(errno));
    int *fill = malloc(sizeof *fill * (size_t)low.rlim_cur);
    CHECK(fill != NULL, "malloc");
    int nfill = 0, d;
    while ((d = fcntl(fd, F_DUPFD_CLOEXEC, 0)) >= 0)
        fill[nfill++] = d;
    CHECK_EQ(errno, EMFILE, "dup until the table is full");

    CHECK_EQ(run(h, cmd(IOENG_OP_FALLOCATE, fd, 0, 1 * MiB, 0), "fallocate, no fd left"), 0,
             "FALLOCATE with the fd table full");
    CHECK_EQ(run(h, cmd(IOENG_OP_SYNC_FILE_RANGE, fd, 0, 0,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER),
                 "sync_file_range, no fd left"),
             0, "SYNC_FILE_RANGE with the fd table full");
    CHECK_EQ(st(fd).st_size, (off_t)(1 * MiB), "FALLOCATE's size");
    ioeng_config_t cfg = tu_config(be, tu_mode(), 8);
    ioeng_t *other = NULL;
    CHECK_EQ(ioeng_open(&cfg, &other), -EMFILE, "ioeng_open with the fd table full");
    CHECK(other == NULL, "a failed open set *out");

    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    free(fill);
    CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0, "setrlimit back: %s", strerror(errno));
    tu_close(h);
    close(fd);
}

static void fork_after_helper(void)
{
    ioeng_config_t cfg = tu_config(be, IOENG_MODE_THREADS, 8);
    ioeng_t *h = NULL;
    CHECK_EQ(ioeng_open(&cfg, &h), 0, "open");
    int fd = tu_scratch(TU_EXT4, 0, NULL);
    poll_res = INT64_MIN;
    ioeng_req_t q = cmd(IOENG_OP_FALLOCATE, fd, 0, 4096, 0);
    CHECK_EQ(ioeng_submit(h, &q, poll_cb, NULL), 0, "submit");
    for (int i = 0; i < 10000 && poll_res == INT64_MIN; i++)
        usleep(1000);
    CHECK_EQ(poll_res, 0, "parent FALLOCATE");
    CHECK(be != IOENG_BACKEND_AIO || thread_named(HELPER_COMM), "the helper runs at the fork");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        tu_scratch_fork_child();
        tu_pollers_fork_child();
        alarm(20);
        int threads0 = user_threads();
        ioeng_req_t inherited = cmd(IOENG_OP_FALLOCATE, fd, 0, 8192, 0);
        if (ioeng_submit(h, &inherited, tu_count_cb, NULL) != -ESRCH)
            _exit(10);
        if (ioeng_close(h) != 0)
            _exit(11);
        int cfd = tu_scratch(TU_TMPFS, 0, NULL);
        ioeng_t *mine = tu_open(be, 4, 0, 0, 0); /* this run's mode */
        if (run(mine, cmd(IOENG_OP_FALLOCATE, cfd, 0, 1 * MiB, 0), "child FALLOCATE") != 0)
            _exit(12);
        if (run(mine, cmd(IOENG_OP_SYNC_FILE_RANGE, cfd, 0, 0, SYNC_FILE_RANGE_WRITE),
                "child SFR") != 0)
            _exit(13);
        struct stat s;
        if (fstat(cfd, &s) != 0 || s.st_size != (off_t)(1 * MiB))
            _exit(14);
        if (be == IOENG_BACKEND_AIO && !thread_named(HELPER_COMM))
            _exit(15);
        tu_close(mine);
        if (thread_named(HELPER_COMM))
            _exit(16);
        if (user_threads() != threads0)
            _exit(17);
        _exit(tu_counted == 0 ? 0 : 18);
    }
    int status = 0;
    CHECK_EQ(waitpid(pid, &status, 0), pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %#x (exit code %d)",
          status, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    /* The parent's engine and helper go on. */
    poll_res = INT64_MIN;
    q = cmd(IOENG_OP_FALLOCATE, fd, 0, 8192, 0);
    CHECK_EQ(ioeng_submit(h, &q, poll_cb, NULL), 0, "submit after the fork");
    for (int i = 0; i < 10000 && poll_res == INT64_MIN; i++)
        usleep(1000);
    CHECK_EQ(poll_res, 0, "parent FALLOCATE after the fork");
    CHECK_EQ(st(fd).st_size, 8192, "parent FALLOCATE after the fork");
    CHECK_EQ(ioeng_close(h), 0, "close");
    close(fd);
}

int main(void)
{
    tu_init("test_fallocate", 240);
    be = tu_backend();
    require_backend(be);

    fcfg_t cfgs[4];
    int ncfg = 0;
    int tmpfs_direct = tmpfs_direct_ok();
    for (int fs = 0; fs < 2; fs++)
        for (int direct = 0; direct < 2; direct++) {
            if (fs == TU_TMPFS && direct && !tmpfs_direct)
                continue;
            cfgs[ncfg] = (fcfg_t){.fs = (enum tu_fs)fs, .direct = direct};
            snprintf(cfgs[ncfg].name, sizeof cfgs[ncfg].name, "%s%s", tu_fs_name(fs),
                     direct ? " O_DIRECT" : "");
            ncfg++;
        }

    ioeng_t *h = tu_open(be, 16, 0, 0, 0);
    for (int i = 0; i < ncfg; i++) {
        fallocate_modes(h, &cfgs[i]);
        sync_ranges(h, &cfgs[i]);
    }
    other_files(h);
    tu_close(h);
    refusals();
    round_with_refusals();
    cancel_commands();
    for (int i = 0; i < ncfg; i++)
        mixed(&cfgs[i]);
    helper_lifecycle(IOENG_MODE_THREADS);
    helper_lifecycle(IOENG_MODE_POLLED);
    fork_after_helper();
    full_fd_table();

    printf("test_fallocate [%s %s]: OK on", tu_backend_name(be), tu_mode_name());
    for (int i = 0; i < ncfg; i++)
        printf(" %s%s", cfgs[i].name, i + 1 < ncfg ? "," : "");
    printf(": FALLOCATE/SYNC_FILE_RANGE give the syscall's res; flags -> -EINVAL; mixed "
           "with IO; 0 with no fd left; %s\n",
           be == IOENG_BACKEND_AIO ? "helper thread started at first use, joined at close, "
                                     "not in a forked child"
                                   : "native io_uring ops, 5 GiB range split");
    return 0;
}
