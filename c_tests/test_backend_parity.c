/*
 * Identical behaviour of the two backends ("Both backends give the same `res`": see
 * ioeng_cb_t in include/ioeng.h, and "Layers" in docs/ARCHITECTURE.md). In ONE
 * process the same requests run on AIO and on io_uring, and the callback sequence and
 * every res must be identical (and, where the contract fixes it, equal to the
 * documented value):
 *  A. the four fairness scenarios of test_order (depth = batch = 1, paused);
 *  B. a mixed batch, ordered (depth = batch = 1, paused): EOF reads, closed fd,
 *     misaligned O_DIRECT, fsync/fdatasync, normal write/read, wrong-mode fds,
 *     EFAULT, EFBIG, pipe fsync, a directory read and a read that faults half-way
 *     (the last two only compared between backends: the contract fixes no value);
 *  C. the same batch unordered (depth 16, batch 4, running), res compared per request.
 * Ignores IOENG_TEST_BACKEND; skips (or fails with IOENG_REQUIRE_URING=1) without
 * io_uring.
 */
#include <sys/mman.h>

#include "order_util.h"

#define NOVAL INT64_MIN /* compare-only: no value fixed by the contract */

typedef struct {
    ord_item_t it;
    int64_t want;
    uint64_t sum[3]; /* checksum of the read data, per run: 0 = aio, 1 = uring */
} mix_t;

static mix_t mix[64];
static int nmix;
static int mismatches;

#define MISMATCH(...) do { fprintf(stderr, "  MISMATCH: " __VA_ARGS__); fputc('\n', stderr); mismatches++; } while (0)

static void add(const char *label, ioeng_op_t op, ioeng_prio_t pr, int fd, void *buf, uint64_t len,
                uint64_t off, int64_t want)
{
    CHECK(nmix < 64, "too many");
    mix_t *m = &mix[nmix++];
    snprintf(m->it.label, sizeof m->it.label, "%s", label);
    m->it.req = tu_req(op, pr, fd, buf, len, off);
    m->want = want;
}

static mix_t *find(const char *label)
{
    for (int i = 0; i < nmix; i++)
        if (strcmp(mix[i].it.label, label) == 0)
            return &mix[i];
    FAILF("unknown label %s", label);
}

/* ---- phase C: unordered run, res by item index ---- */
typedef struct {
    int64_t res[64];
    int fired[64];
    tu_waiter_t w;
} unord_t;
static unord_t *cur_unord;
static void unord_cb(void *ctx, int64_t res)
{
    int i = (int)(intptr_t)ctx;
    cur_unord->res[i] = res;
    __atomic_add_fetch(&cur_unord->fired[i], 1, __ATOMIC_SEQ_CST);
    tu_waiter_add(&cur_unord->w, 1);
}

static void run_unordered(ioeng_backend_t be, unord_t *u)
{
    memset(u, 0, sizeof *u);
    tu_waiter_init(&u->w);
    cur_unord = u;
    ioeng_t *h = tu_open(be, 16, 4, 0, 0);
    for (int i = 0; i < nmix; i++)
        CHECK_EQ(ioeng_submit(h, &mix[i].it.req, unord_cb, (void *)(intptr_t)i), 0,
                 "[%s] submit %s", tu_backend_name(be), mix[i].it.label);
    tu_waiter_wait(&u->w, (uint64_t)nmix, 30);
    tu_close(h);
    for (int i = 0; i < nmix; i++)
        CHECK_EQ(u->fired[i], 1, "[%s] callbacks of %s", tu_backend_name(be), mix[i].it.label);
}

static void record_sums(int run)
{
    for (int i = 0; i < nmix; i++) {
        mix_t *m = &mix[i];
        m->sum[run] = 0;
        if (m->it.req.op == IOENG_OP_READ && m->it.req.buf && m->want != NOVAL && m->want > 0)
            m->sum[run] = tu_fnv1a(m->it.req.buf, (size_t)m->want);
    }
}

int main(void)
{
    tu_init("test_backend_parity", 120);
    require_backend(IOENG_BACKEND_URING);
    const ioeng_backend_t B[2] = {IOENG_BACKEND_AIO, IOENG_BACKEND_URING};

    /* ---------------- A: fairness scenarios ---------------- */
    int ofd = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *init = tu_alloc(1u << 20);
    tu_fill(init, 1u << 20, 99);
    tu_pwrite_all(ofd, init, 256 * 1024, 0);
    static ord_item_t items[ORD_MAX];
    static ord_log_t log[2];
    static char expected[ORD_MAX * 17], s0[ORD_MAX * 17], s1[ORD_MAX * 17];
    for (int s = 0; s < ORD_NSCEN; s++) {
        const char *name = "";
        int n = ord_scenario(s, ofd, items, expected, sizeof expected, &name);
        for (int b = 0; b < 2; b++)
            ord_run(B[b], items, n, &log[b]);
        ord_seq_str(&log[0], s0, sizeof s0);
        ord_seq_str(&log[1], s1, sizeof s1);
        if (strcmp(s0, s1) != 0)
            MISMATCH("scenario %s: callback order differs\n    aio:   %s\n    uring: %s", name, s0, s1);
        for (int i = 0; i < n; i++)
            if (log[0].res[i] != log[1].res[i])
                MISMATCH("scenario %s: callback #%d (%s/%s) res aio %s vs uring %s", name, i,
                         log[0].label[i], log[1].label[i], tu_errname(log[0].res[i]),
                         tu_errname(log[1].res[i]));
        for (int b = 0; b < 2; b++)
            ord_expect(B[b], name, &log[b], expected);
    }

    /* ---------------- B/C: mixed batch ---------------- */
    unsigned char data[10000];
    tu_fill(data, sizeof data, 10000);
    int t10k = tu_scratch(TU_TMPFS, 0, NULL);
    tu_pwrite_all(t10k, data, sizeof data, 0);
    int tother = tu_scratch(TU_TMPFS, 0, NULL);

    char dpath[PATH_MAX], epath[PATH_MAX];
    int dfd = tu_scratch(TU_EXT4, 1, dpath);
    tu_pwrite_all(dfd, init, 1u << 20, 0);
    int efd = tu_scratch(TU_EXT4, 0, epath);
    tu_pwrite_all(efd, init, 1u << 20, 0);
    int rofd = open(epath, O_RDONLY | O_CLOEXEC);
    int wofd = open(epath, O_WRONLY | O_CLOEXEC);
    int dirfd = open(tu_dir_for(TU_EXT4), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int pfd[2];
    CHECK(rofd >= 0 && wofd >= 0 && dirfd >= 0 && pipe2(pfd, O_CLOEXEC) == 0, "open fds");
    int closed = tu_closed_fd(900);
    long pg = sysconf(_SC_PAGESIZE);
    unsigned char *half = mmap(NULL, 2 * (size_t)pg, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(half != MAP_FAILED && mprotect(half + pg, (size_t)pg, PROT_NONE) == 0, "mmap/mprotect");
    unsigned char *none = mmap(NULL, (size_t)pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(none != MAP_FAILED, "mmap");
    unsigned char *rb = tu_alloc(64 * 16384);
#define RB(i) (rb + (size_t)(i) * 16384)
    unsigned char *wsrc = tu_alloc(65536);
    tu_fill(wsrc, 65536, 1234);

    add("eof1808", IOENG_OP_READ, IOENG_PRIO_NORMAL, t10k, RB(0), 4096, 8192, 1808);
    add("eofAt", IOENG_OP_READ, IOENG_PRIO_HIGH, t10k, RB(1), 4096, 10000, 0);
    add("eofAfter", IOENG_OP_READ, IOENG_PRIO_NORMAL, t10k, RB(2), 4096, 20000, 0);
    add("eofAll", IOENG_OP_READ, IOENG_PRIO_NORMAL, t10k, RB(3), 16384, 0, 10000);
    add("eof1", IOENG_OP_READ, IOENG_PRIO_NORMAL, t10k, RB(4), 100, 9950, 50);
    add("clR", IOENG_OP_READ, IOENG_PRIO_HIGH, closed, RB(5), 4096, 0, -EBADF);
    add("clW", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, closed, wsrc, 4096, 0, -EBADF);
    add("clS", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, closed, NULL, 0, 0, -EBADF);
    add("clDS", IOENG_OP_FDATASYNC, IOENG_PRIO_NORMAL, closed, NULL, 0, 0, -EBADF);
    add("dioBuf1", IOENG_OP_READ, IOENG_PRIO_NORMAL, dfd, RB(6) + 1, 4096, 0, -EINVAL);
    add("dioLen100", IOENG_OP_READ, IOENG_PRIO_NORMAL, dfd, RB(7), 100, 4096, -EINVAL);
    add("dioOff1", IOENG_OP_READ, IOENG_PRIO_HIGH, dfd, RB(8), 4096, 1, -EINVAL);
    add("dioWBuf1", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, dfd, wsrc + 1, 4096, 8192, -EINVAL);
    add("dioWOff1", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, dfd, wsrc, 4096, 16385, -EINVAL);
    add("dioOk", IOENG_OP_READ, IOENG_PRIO_NORMAL, dfd, RB(9), 16384, 65536, 16384);
    add("dioW", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, dfd, wsrc, 16384, 1u << 20, 16384);
    add("fsE", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, efd, NULL, 0, 0, 0);
    add("fdsE", IOENG_OP_FDATASYNC, IOENG_PRIO_HIGH, efd, NULL, 0, 0, 0);
    add("fsT", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, t10k, NULL, 0, 0, 0);
    add("fsD", IOENG_OP_FDATASYNC, IOENG_PRIO_NORMAL, dfd, NULL, 0, 0, 0);
    add("wr", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, efd, wsrc, 8192, 2u << 20, 8192);
    add("rd", IOENG_OP_READ, IOENG_PRIO_NORMAL, efd, RB(10), 8192, 4096, 8192);
    add("rdHigh", IOENG_OP_READ, IOENG_PRIO_HIGH, efd, RB(11), 12288, 1u << 19, 12288);
    add("wRO", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, rofd, wsrc, 4096, 0, -EBADF);
    add("rWO", IOENG_OP_READ, IOENG_PRIO_NORMAL, wofd, RB(12), 4096, 0, -EBADF);
    add("fault", IOENG_OP_READ, IOENG_PRIO_NORMAL, t10k, none, 4096, 0, -EFAULT);
    /* (own file: a faulting write may still extend i_size on tmpfs, kernel behaviour) */
    add("faultW", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, tother, none, 4096, 20000, -EFAULT);
    add("pipeS", IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, pfd[1], NULL, 0, 0, -EINVAL);
    add("efbig", IOENG_OP_WRITE, IOENG_PRIO_NORMAL, efd, wsrc, 4096, (uint64_t)INT64_MAX - 4096, -EFBIG);
    add("farRead", IOENG_OP_READ, IOENG_PRIO_NORMAL, efd, RB(13), 4096, (uint64_t)INT64_MAX - 4096, 0);
    add("dirRead", IOENG_OP_READ, IOENG_PRIO_NORMAL, dirfd, RB(14), 4096, 0, NOVAL);
    add("halfFault", IOENG_OP_READ, IOENG_PRIO_NORMAL, t10k, half, 2 * (uint64_t)pg, 0, NOVAL);

    /* expected data of the successful reads */
    const unsigned char *src[64] = {0};
    src[0] = data + 8192; src[3] = data; src[4] = data + 9950;
    src[14] = init + 65536;  /* dioOk */
    src[21] = init + 4096;   /* rd */
    src[22] = init + (1u << 19); /* rdHigh */

    /* B: ordered, on both backends */
    static ord_item_t mitems[64];
    for (int i = 0; i < nmix; i++)
        mitems[i] = mix[i].it;
    for (int b = 0; b < 2; b++) {
        for (int i = 0; i < 16; i++)
            memset(RB(i), 0xEE, 16384);
        ord_run(B[b], mitems, nmix, &log[b]);
        record_sums(b);
        for (int i = 0; i < nmix; i++)
            if (src[i] && mix[i].want > 0)
                CHECK(memcmp(mix[i].it.req.buf, src[i], (size_t)mix[i].want) == 0,
                      "[%s] %s read wrong bytes", tu_backend_name(B[b]), mix[i].it.label);
    }
    ord_seq_str(&log[0], s0, sizeof s0);
    ord_seq_str(&log[1], s1, sizeof s1);
    if (strcmp(s0, s1) != 0)
        MISMATCH("mixed batch: callback order differs\n    aio:   %s\n    uring: %s", s0, s1);
    for (int i = 0; i < nmix; i++) {
        const char *l = log[0].label[i];
        if (strcmp(l, log[1].label[i]) != 0)
            continue; /* reported above */
        mix_t *m = find(l);
        if (log[0].res[i] != log[1].res[i])
            MISMATCH("mixed batch (ordered) %-9s res aio %s vs uring %s", l,
                     tu_errname(log[0].res[i]), tu_errname(log[1].res[i]));
        for (int b = 0; b < 2; b++)
            if (m->want != NOVAL && log[b].res[i] != m->want)
                MISMATCH("mixed batch (ordered) %-9s [%s] res %s, contract says %s", l,
                         tu_backend_name(B[b]), tu_errname(log[b].res[i]), tu_errname(m->want));
        if (m->sum[0] != m->sum[1])
            MISMATCH("mixed batch (ordered) %-9s read data differs between backends", l);
    }

    /* C: unordered, on both backends */
    static unord_t u[2];
    for (int b = 0; b < 2; b++)
        run_unordered(B[b], &u[b]);
    for (int i = 0; i < nmix; i++) {
        mix_t *m = &mix[i];
        if (u[0].res[i] != u[1].res[i])
            MISMATCH("mixed batch (depth 16) %-9s res aio %s vs uring %s", m->it.label,
                     tu_errname(u[0].res[i]), tu_errname(u[1].res[i]));
        for (int b = 0; b < 2; b++)
            if (m->want != NOVAL && u[b].res[i] != m->want)
                MISMATCH("mixed batch (depth 16) %-9s [%s] res %s, contract says %s", m->it.label,
                         tu_backend_name(B[b]), tu_errname(u[b].res[i]), tu_errname(m->want));
    }
    mix_t *dr = find("dirRead"), *hf = find("halfFault");
    int64_t dres = u[0].res[dr - mix], hres = u[0].res[hf - mix];
    CHECK(dres < 0, "READ of a directory fd returned %s", tu_errname(dres));
    tu_check_still_closed(closed);

    /* the successful writes landed; the failed ones wrote nothing */
    unsigned char *chk = tu_alloc(65536);
    tu_pread_all(efd, chk, 8192, 2u << 20);
    CHECK(memcmp(chk, wsrc, 8192) == 0, "'wr' data not in the file");
    int vfd = open(dpath, O_RDONLY | O_CLOEXEC);
    CHECK(vfd >= 0, "open");
    tu_pread_all(vfd, chk, 65536, 0);
    CHECK(memcmp(chk, init, 65536) == 0, "a failed O_DIRECT write changed the file");
    tu_pread_all(vfd, chk, 16384, 1u << 20);
    CHECK(memcmp(chk, wsrc, 16384) == 0, "'dioW' data not in the file");
    close(vfd);

    if (mismatches) {
        fprintf(stderr, "FAIL test_backend_parity: %d mismatch(es) between AIO and io_uring or against the "
                "contract (listed above)\n", mismatches);
        return 1;
    }
    printf("test_backend_parity [aio+uring]: OK: 4 fairness scenarios + %d-request mixed batch (EOF, closed "
           "fd, misaligned O_DIRECT, fsync, write/read, wrong-mode fd, EFAULT, EFBIG, pipe, dir "
           "read %s, half-faulting read %s) give identical order, res and data on AIO and "
           "io_uring, ordered and at depth 16\n", nmix, tu_errname(dres), tu_errname(hres));
    free(chk);
    free(rb);
    free(wsrc);
    free(init);
    return 0;
}
