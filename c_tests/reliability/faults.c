/*
 * faults: fault injection. Usage: faults enospc|closedfd|range|huge  (one per run, so a
 * skipped part does not hide the others).
 *
 *  enospc   (root) a 1 MiB tmpfs is mounted (mount(2), in a private mount namespace
 *           when unshare works) on a mkdtemp dir. Sequential 100000-byte writes fill
 *           it: each res is exactly len or -ENOSPC (the write that crosses the limit is
 *           short-written by the kernel first; the engine resubmits the remainder and
 *           must report -ENOSPC, never a short count), every later write -ENOSPC. Then
 *           concurrent writes (same rule), fsync on the full fs, and the SAME engine does
 *           correct IO on another file; after freeing space a write on the small fs
 *           succeeds again; umount must succeed after ioeng_close. Not root -> SKIP (77).
 *  closedfd requests queued on a paused engine for fd X (a high fd number that cannot be
 *           reused meanwhile), close(X), resume: every X request completes with -EBADF,
 *           interleaved requests on fd Y all succeed with correct data. Each -EBADF
 *           callback (on AIO it runs on the submitter thread) checks ioeng_close ->
 *           -EDEADLK and submits a follow-up read of Y, which must complete.
 *  range    offset + len > INT64_MAX (and wrapping sums) -> -EINVAL synchronously, no
 *           callback; boundary requests that are valid are accepted and give the
 *           kernel's answer (EOF read 0, tmpfs write at INT64_MAX-4096 == len, ext4
 *           -EFBIG); fsync ignores offset/len.
 *  huge     a 3 GiB + 12345 B READ from a sparse 4 GiB tmpfs file (markers around the
 *           internal split points) -> res == len, bytes zero except the markers, nothing
 *           written past len; a 3 GiB read of a 1 GiB file -> exactly 1 GiB; a
 *           2 GiB + 4097 B WRITE -> res == len and the file content is right.
 */
#include <sched.h>
#include <sys/mount.h>

#include "rel.h"

static ioeng_backend_t g_be;

/* ---------------------------------------------------------------- sync submit helper */

/* One request: its res, and its callbacks counted on a waiter. */
struct waitres {
    tu_waiter_t w;
    int64_t res;
};

static void on_wait(void *ctx, int64_t res)
{
    struct waitres *w = ctx;
    w->res = res;
    tu_waiter_add(&w->w, 1);
}

static void wr_init(struct waitres *w)
{
    tu_waiter_init(&w->w);
    w->res = INT64_MIN;
}

/* Waits until `w` has seen its callback. */
static void wr_wait(struct waitres *w, int timeout_s, const char *what)
{
    if (tu_waiter_wait_for(&w->w, 1, timeout_s) < 1)
        FAILF("%s: no callback after %d s", what, timeout_s);
}

/* Submits and waits; returns res. Asserts exactly one callback (after a short grace). */
static int64_t do_io(ioeng_t *h, uint32_t op, int fd, void *buf, uint64_t len, uint64_t off,
                     int timeout_s)
{
    struct waitres w;
    wr_init(&w);
    ioeng_req_t req = {.op = op, .prio = IOENG_PRIO_NORMAL, .fd = fd, .buf = buf, .len = len,
                       .offset = off};
    int rc = ioeng_submit(h, &req, on_wait, &w);
    CHECK(rc == 0, "submit(op %u fd %d len %" PRIu64 " off %" PRIu64 ") = %d", op, fd, len, off, rc);
    wr_wait(&w, timeout_s, "do_io");
    rel_sleep_us(200);
    uint64_t n = tu_waiter_get(&w.w);
    CHECK(n == 1, "op %u: %" PRIu64 " callbacks", op, n);
    int64_t res = w.res;
    tu_waiter_destroy(&w.w);
    return res;
}

/* ---------------------------------------------------------------- enospc */

static int test_enospc(void)
{
    if (geteuid() != 0)
        tu_skip("enospc needs root to mount a 1 MiB tmpfs (mount(2) needs CAP_SYS_ADMIN); "
                 "euid=%d", (int)geteuid());
    const char *ns = "private mount namespace";
    if (unshare(CLONE_NEWNS) != 0) {
        ns = "current mount namespace (unshare failed)";
    } else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        FAILF("make / private in the new namespace: %s", strerror(errno));
    }
    char dir[] = "/tmp/ioeng-rel-enospc-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
    if (mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700") != 0) {
        int e = errno;
        rmdir(dir);
        tu_skip("mount -t tmpfs -o size=1m failed: %s", strerror(e));
    }
    printf("enospc: 1 MiB tmpfs mounted on %s (%s)\n", dir, ns);
    const uint64_t cap = 1u << 20;

    ioeng_t *h = tu_open(g_be, 8, 0, 0, 0);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/fill", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));

    /* Phase 1: sequential 100000-byte writes until the fs is full, plus 3 more. */
    const uint64_t wl = 100000;
    unsigned char *buf = malloc(wl);
    CHECK(buf != NULL, "malloc");
    uint64_t ok_bytes = 0, nok = 0, nenospc = 0, crossing_resubmits = 0;
    rel_rng_t rng;
    rel_rng_seed(&rng, 42);
    unsigned char *expect = calloc(1, 2 * cap);
    CHECK(expect != NULL, "malloc");
    for (uint64_t k = 0; k < 40 && nenospc < 4; k++) {
        rel_fill_random(&rng, buf, wl);
        ioeng_stats_t before = tu_stats(h);
        int64_t res = do_io(h, IOENG_OP_WRITE, fd, buf, wl, k * wl, 30);
        ioeng_stats_t after = tu_stats(h);
        if (res == (int64_t)wl) {
            CHECK(nenospc == 0, "write %" PRIu64 " succeeded after an earlier -ENOSPC", k);
            memcpy(expect + k * wl, buf, wl);
            ok_bytes += wl;
            nok++;
        } else if (res == -ENOSPC) {
            if (nenospc == 0)
                crossing_resubmits = after.resubmits - before.resubmits;
            nenospc++;
        } else {
            FAILF("sequential write %" PRIu64 " (off %" PRIu64 ", len %" PRIu64 "): res=%" PRId64
                  " — want exactly len or -ENOSPC (a short count would mean the short write "
                  "was not resubmitted)", k, k * wl, wl, res);
        }
    }
    CHECK(nenospc >= 4, "no -ENOSPC on a 1 MiB tmpfs after %" PRIu64 " bytes", ok_bytes);
    CHECK(ok_bytes <= cap && ok_bytes + wl > cap - 2 * wl,
          "successful bytes %" PRIu64 " do not fit a 1 MiB fs", ok_bytes);
    /* The crossing write (offset nok*wl) straddles 1 MiB: the kernel writes up to the
     * last free page, then the engine must resubmit the rest (resubmits >= 1). */
    CHECK(crossing_resubmits >= 1,
          "the crossing write at %" PRIu64 " was not resubmitted after its short write "
          "(resubmits delta %" PRIu64 ")", nok * wl, crossing_resubmits);
    unsigned char *got = malloc(ok_bytes ? ok_bytes : 1);
    CHECK(got != NULL, "malloc");
    tu_pread_all(fd, got, ok_bytes, 0);
    CHECK(memcmp(got, expect, ok_bytes) == 0, "file content of the successful writes");
    free(got);
    int64_t fres = do_io(h, IOENG_OP_FSYNC, fd, NULL, 0, 0, 30);
    CHECK(fres == 0, "fsync on the full fs: %" PRId64, fres);
    printf("figure: enospc sequential [%s]: %" PRIu64 " writes ok (%" PRIu64 " B), %" PRIu64
           " x -ENOSPC, crossing write resubmits=%" PRIu64 "\n", tu_backend_name(g_be), nok,
           ok_bytes, nenospc, crossing_resubmits);
    close(fd);
    CHECK(unlink(path) == 0, "unlink: %s", strerror(errno));

    /* Phase 2: 24 concurrent writes of 65537 B (1.5 MiB total) on a fresh file. */
    snprintf(path, sizeof path, "%s/conc", dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    enum { NC = 24 };
    const uint64_t cl = 65537;
    unsigned char *cbuf = malloc(NC * cl);
    CHECK(cbuf != NULL, "malloc");
    rel_fill_random(&rng, cbuf, NC * cl);
    struct waitres ws[NC];
    for (int i = 0; i < NC; i++) {
        wr_init(&ws[i]);
        ioeng_req_t req = {.op = IOENG_OP_WRITE, .prio = i % 3 ? IOENG_PRIO_NORMAL : IOENG_PRIO_HIGH,
                           .fd = fd, .buf = cbuf + i * cl, .len = cl, .offset = (uint64_t)i * cl};
        CHECK(ioeng_submit(h, &req, on_wait, &ws[i]) == 0, "submit");
    }
    uint64_t cok = 0, cen = 0;
    for (int i = 0; i < NC; i++) {
        wr_wait(&ws[i], 30, "concurrent write");
        if (ws[i].res == (int64_t)cl) {
            unsigned char *g = malloc(cl);
            CHECK(g != NULL, "malloc");
            tu_pread_all(fd, g, cl, (off_t)(i * cl));
            CHECK(memcmp(g, cbuf + i * cl, cl) == 0, "concurrent write %d: content", i);
            free(g);
            cok++;
        } else {
            CHECK(ws[i].res == -ENOSPC, "concurrent write %d: res=%" PRId64
                  " — want len or -ENOSPC", i, ws[i].res);
            cen++;
        }
    }
    rel_sleep_us(1000);
    for (int i = 0; i < NC; i++) {
        uint64_t ncb = tu_waiter_get(&ws[i].w);
        CHECK(ncb == 1, "concurrent write %d: %" PRIu64 " callbacks", i, ncb);
        tu_waiter_destroy(&ws[i].w);
    }
    CHECK(cok >= 1 && cen >= 1 && cok * cl <= cap, "concurrent: ok=%" PRIu64 " enospc=%" PRIu64,
          cok, cen);
    printf("figure: enospc concurrent [%s]: %" PRIu64 " ok, %" PRIu64 " x -ENOSPC\n",
           tu_backend_name(g_be), cok, cen);

    /* Phase 3: the same engine does correct IO elsewhere, and again on the small fs
     * once space is freed. */
    int ofd = tu_scratch(TU_TMPFS, 0, NULL);
    const uint64_t ol = 1u << 20;
    unsigned char *ob = malloc(ol), *ib = malloc(ol);
    CHECK(ob && ib, "malloc");
    rel_fill_random(&rng, ob, ol);
    CHECK(do_io(h, IOENG_OP_WRITE, ofd, ob, ol, 12345, 30) == (int64_t)ol, "write other file");
    memset(ib, 0, ol);
    CHECK(do_io(h, IOENG_OP_READ, ofd, ib, ol, 12345, 30) == (int64_t)ol, "read other file");
    CHECK(memcmp(ob, ib, ol) == 0, "other file: data");
    close(fd);
    CHECK(unlink(path) == 0, "unlink: %s", strerror(errno));
    snprintf(path, sizeof path, "%s/again", dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    int64_t r = do_io(h, IOENG_OP_WRITE, fd, ob, 512 * 1024, 0, 30);
    CHECK(r == 512 * 1024, "write on the small fs after freeing space: res=%" PRId64, r);
    memset(ib, 0, ol);
    CHECK(do_io(h, IOENG_OP_READ, fd, ib, ol, 0, 30) == 512 * 1024, "read back (EOF-short)");
    CHECK(memcmp(ob, ib, 512 * 1024) == 0, "small fs: data after recovery");
    tu_close(h);
    close(fd);
    close(ofd);
    int um = umount2(dir, 0);
    CHECK(um == 0, "umount %s after ioeng_close: %s (something still holds the fs?)", dir,
          strerror(errno));
    CHECK(rmdir(dir) == 0, "rmdir %s: %s", dir, strerror(errno));
    free(buf);
    free(expect);
    free(cbuf);
    free(ob);
    free(ib);
    printf("figure: enospc [%s]: faults injected=%" PRIu64 " (-ENOSPC callbacks), engine "
           "healthy afterwards, umount ok\n", tu_backend_name(g_be), nenospc + cen);
    return 0;
}

/* ---------------------------------------------------------------- closedfd */

enum { CF_N = 48 };
struct cfreq {
    _Atomic int ncb;
    int64_t res;
    int on_x;
    uint32_t op;
    uint64_t off;
    uint64_t len;
    unsigned char *buf;
};
static _Atomic int g_cf_done, g_cf_fu_done, g_cf_fu_sent, g_cf_in_cb;
static ioeng_t *g_cf_h;
static int g_cf_y;
static unsigned char g_cf_fubuf[CF_N][512];

static void on_cf_followup(void *ctx, int64_t res)
{
    (void)ctx;
    CHECK(res == 512, "follow-up read submitted from a -EBADF callback: res=%" PRId64, res);
    atomic_fetch_add(&g_cf_fu_done, 1);
}

static void on_cf(void *ctx, int64_t res)
{
    struct cfreq *q = ctx;
    CHECK(atomic_fetch_add(&g_cf_in_cb, 1) == 0, "closedfd: two callbacks ran concurrently");
    CHECK(atomic_fetch_add(&q->ncb, 1) == 0, "closedfd: duplicate callback");
    q->res = res;
    if (q->on_x) {
        /* On AIO this callback runs on the submitter thread (io_submit refused the iocb);
         * close must still refuse and submit must still work from here. */
        int rc = ioeng_close(g_cf_h);
        CHECK(rc == -EDEADLK, "ioeng_close from a -EBADF callback = %d, want -EDEADLK", rc);
        int k = atomic_fetch_add(&g_cf_fu_sent, 1);
        rel_prep_read_buf(g_cf_fubuf[k], 512);
        ioeng_req_t f = {.op = IOENG_OP_READ, .prio = IOENG_PRIO_HIGH, .fd = g_cf_y,
                         .buf = g_cf_fubuf[k], .len = 512, .offset = 0};
        CHECK(ioeng_submit(g_cf_h, &f, on_cf_followup, NULL) == 0, "submit from a callback");
    }
    atomic_fetch_sub(&g_cf_in_cb, 1);
    atomic_fetch_add(&g_cf_done, 1);
}

static void closedfd_round(uint32_t depth, uint32_t batch, uint64_t *faults)
{
    int x = rel_move_fd_high(tu_scratch(TU_TMPFS, 0, NULL), 1500);
    int y = tu_scratch(TU_TMPFS, 0, NULL);
    const uint64_t bl = 8192;
    unsigned char *ydata = malloc(CF_N * bl);
    CHECK(ydata != NULL, "malloc");
    rel_rng_t rng;
    rel_rng_seed(&rng, depth * 7 + batch);
    rel_fill_random(&rng, ydata, CF_N * bl);
    tu_pwrite_all(y, ydata, CF_N * bl, 0); /* reads of Y see this */
    tu_pwrite_all(x, ydata, CF_N * bl, 0);

    ioeng_t *h = tu_open(g_be, depth, batch, 0, 1);
    struct cfreq q[CF_N];
    g_cf_h = h;
    g_cf_y = y;
    atomic_store(&g_cf_done, 0);
    atomic_store(&g_cf_fu_done, 0);
    atomic_store(&g_cf_fu_sent, 0);
    static const uint32_t ops[] = {IOENG_OP_READ, IOENG_OP_WRITE, IOENG_OP_FSYNC,
                                   IOENG_OP_FDATASYNC};
    int nx = 0;
    for (int i = 0; i < CF_N; i++) {
        memset(&q[i], 0, sizeof q[i]);
        q[i].on_x = (i % 2 == 0) || (i % 7 == 3);
        q[i].op = ops[(i / 2) % 4];
        q[i].len = bl;
        q[i].off = (uint64_t)i * bl;
        q[i].buf = malloc(bl);
        CHECK(q[i].buf != NULL, "malloc");
        if (q[i].op == IOENG_OP_WRITE)
            rel_fill_random(&rng, q[i].buf, bl);
        else
            rel_prep_read_buf(q[i].buf, bl);
        nx += q[i].on_x;
        ioeng_req_t req = {.op = q[i].op, .prio = (i % 5 == 1) ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL,
                           .fd = q[i].on_x ? x : y, .buf = q[i].buf, .len = bl, .offset = q[i].off};
        CHECK(ioeng_submit(h, &req, on_cf, &q[i]) == 0, "submit %d", i);
    }
    rel_sleep_us(20000);
    CHECK(atomic_load(&g_cf_done) == 0, "paused engine ran %d callbacks", atomic_load(&g_cf_done));
    ioeng_stats_t st = tu_stats(h);
    CHECK(st.queued_high + st.queued_read + st.queued_write == CF_N && st.in_flight == 0,
          "paused engine: queued=%" PRIu64 " in_flight=%" PRIu64,
          st.queued_high + st.queued_read + st.queued_write, st.in_flight);
    CHECK(close(x) == 0, "close(X)");
    CHECK(fcntl(x, F_GETFD) == -1 && errno == EBADF, "fd %d still open", x);
    CHECK(ioeng_resume(h) == 0, "resume");
    for (int i = 0; i < 10000 && atomic_load(&g_cf_done) < CF_N; i++)
        rel_sleep_us(1000);
    CHECK_EQ(atomic_load(&g_cf_done), CF_N, "callbacks after resume");
    for (int i = 0; i < 10000 && atomic_load(&g_cf_fu_done) < atomic_load(&g_cf_fu_sent); i++)
        rel_sleep_us(1000);
    CHECK_EQ(atomic_load(&g_cf_fu_done), atomic_load(&g_cf_fu_sent), "follow-up callbacks");
    rel_sleep_us(2000);
    tu_check_still_closed(x);
    REL_CHECK_IDLE_STATS(h, CF_N + atomic_load(&g_cf_fu_sent));
    for (int k = 0; k < atomic_load(&g_cf_fu_sent); k++)
        CHECK(memcmp(g_cf_fubuf[k], ydata, 512) == 0, "follow-up read %d: data", k);
    int yok = 0;
    for (int i = 0; i < CF_N; i++) {
        CHECK(atomic_load(&q[i].ncb) == 1, "request %d: %d callbacks", i, atomic_load(&q[i].ncb));
        if (q[i].on_x) {
            if (q[i].res != -EBADF)
                FAILF("[depth %u batch %u] request %d (op %u) on the closed fd %d: res=%" PRId64
                      " want -EBADF (%d)", depth, batch, i, q[i].op, x, q[i].res, -EBADF);
            (*faults)++;
            continue;
        }
        yok++;
        int64_t want = (q[i].op == IOENG_OP_READ || q[i].op == IOENG_OP_WRITE) ? (int64_t)bl : 0;
        CHECK(q[i].res == want, "[depth %u batch %u] request %d (op %u) on the open fd: res=%"
              PRId64 " want %" PRId64, depth, batch, i, q[i].op, q[i].res, want);
        if (q[i].op == IOENG_OP_READ)
            CHECK(memcmp(q[i].buf, ydata + q[i].off, bl) == 0, "read %d: data", i);
        if (q[i].op == IOENG_OP_WRITE) {
            unsigned char *g = malloc(bl);
            CHECK(g != NULL, "malloc");
            tu_pread_all(y, g, bl, (off_t)q[i].off);
            CHECK(memcmp(g, q[i].buf, bl) == 0, "write %d: data", i);
            free(g);
        }
    }
    tu_close(h);
    for (int i = 0; i < CF_N; i++)
        free(q[i].buf);
    free(ydata);
    close(y);
    printf("figure: closedfd [%s depth=%u batch=%u]: %d requests on closed fd %d -> -EBADF, "
           "%d on the open fd ok, %d follow-ups submitted from -EBADF callbacks ok, "
           "ioeng_close from them -> -EDEADLK\n", tu_backend_name(g_be), depth, batch, nx, x,
           yok, atomic_load(&g_cf_fu_sent));
}

static int test_closedfd(void)
{
    uint64_t faults = 0;
    closedfd_round(8, 0, &faults);
    closedfd_round(1, 1, &faults);
    closedfd_round(64, 16, &faults);
    printf("figure: closedfd [%s]: faults injected=%" PRIu64 " (-EBADF callbacks)\n",
           tu_backend_name(g_be), faults);
    return 0;
}

/* ---------------------------------------------------------------- range */

static void on_never(void *ctx, int64_t res)
{
    FAILF("callback ran for a refused request (case %s, res=%" PRId64 ")", (const char *)ctx, res);
}

static int test_range(void)
{
    ioeng_t *h = tu_open(g_be, 8, 0, 0, 0);
    int tfd = tu_scratch(TU_TMPFS, 0, NULL);
    int efd = tu_scratch(TU_EXT4, 0, NULL);
    unsigned char *buf = tu_alloc_uninit(8192);
    memset(buf, 0x5A, 8192);
    tu_pwrite_all(tfd, buf, 4096, 0);
    const uint64_t M = (uint64_t)INT64_MAX;
    struct {
        const char *name;
        uint64_t off, len;
    } bad[] = {
        {"off=INT64_MAX len=1", M, 1},
        {"off=INT64_MAX-1 len=2", M - 1, 2},
        {"off=INT64_MAX-4095 len=4097", M - 4095, 4097},
        {"off=0 len=INT64_MAX+1", 0, M + 1},
        {"off=1 len=INT64_MAX", 1, M},
        {"off=2^63 len=1", 1ULL << 63, 1},
        {"off=UINT64_MAX len=1 (wraps to 0)", UINT64_MAX, 1},
        {"off=UINT64_MAX-10 len=20 (wraps to 9)", UINT64_MAX - 10, 20},
        {"off=1 len=UINT64_MAX (wraps to 0)", 1, UINT64_MAX},
        {"off=UINT64_MAX len=UINT64_MAX", UINT64_MAX, UINT64_MAX},
    };
    int nbad = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (uint32_t op = IOENG_OP_READ; op <= IOENG_OP_WRITE; op++) {
            for (uint32_t prio = 0; prio <= 1; prio++) {
                ioeng_req_t req = {.op = op, .prio = prio, .fd = tfd, .buf = buf,
                                   .len = bad[i].len, .offset = bad[i].off};
                int rc = ioeng_submit(h, &req, on_never, (void *)bad[i].name);
                CHECK(rc == -EINVAL, "%s %s: ioeng_submit = %d, want -EINVAL",
                      op ? "WRITE" : "READ", bad[i].name, rc);
                nbad++;
            }
        }
    }
    rel_sleep_us(20000);
    REL_CHECK_IDLE_STATS(h, 0);

    /* Valid boundary requests: accepted; the kernel decides. */
    int64_t r;
    r = do_io(h, IOENG_OP_READ, tfd, buf, 1, M - 1, 30);
    CHECK(r == 0, "READ off=INT64_MAX-1 len=1 (past EOF): res=%" PRId64 " want 0", r);
    r = do_io(h, IOENG_OP_READ, tfd, buf, 4096, M - 4096, 30);
    CHECK(r == 0, "READ off=INT64_MAX-4096 len=4096 (past EOF): res=%" PRId64 " want 0", r);
    r = do_io(h, IOENG_OP_READ, efd, buf, 4096, M - 4096, 30);
    CHECK(r == 0, "ext4 READ off=INT64_MAX-4096 len=4096: res=%" PRId64 " want 0", r);
    r = do_io(h, IOENG_OP_WRITE, efd, buf, 4096, M - 4096, 30);
    CHECK(r == -EFBIG, "ext4 WRITE off=INT64_MAX-4096 len=4096: res=%" PRId64
          " want -EFBIG (beyond s_maxbytes)", r);
    /* tmpfs allows files up to INT64_MAX: the write at the very end must work, with the
     * offset passed through unmangled. */
    for (int i = 0; i < 4096; i++)
        buf[i] = (unsigned char)(i * 7 + 1);
    r = do_io(h, IOENG_OP_WRITE, tfd, buf, 4096, M - 4096, 30);
    CHECK(r == 4096, "tmpfs WRITE off=INT64_MAX-4096 len=4096: res=%" PRId64 " want 4096", r);
    memset(buf + 4096, 0, 4096);
    CHECK(pread(tfd, buf + 4096, 4096, (off_t)(M - 4096)) == 4096, "pread at INT64_MAX-4096");
    CHECK(memcmp(buf, buf + 4096, 4096) == 0, "tmpfs write at INT64_MAX-4096: data not there");
    memset(buf + 4096, 0, 4096);
    r = do_io(h, IOENG_OP_READ, tfd, buf + 4096, 4096, M - 4096, 30);
    CHECK(r == 4096 && memcmp(buf, buf + 4096, 4096) == 0,
          "tmpfs READ off=INT64_MAX-4096 len=4096: res=%" PRId64, r);
    r = do_io(h, IOENG_OP_READ, tfd, buf + 4096, 4096, M - 4097, 30);
    CHECK(r == 4096 && buf[4096] == 0 && memcmp(buf, buf + 4097, 4095) == 0,
          "tmpfs READ off=INT64_MAX-4097 len=4096: res=%" PRId64, r);
    memset(buf + 4096, 0, 4096);
    r = do_io(h, IOENG_OP_READ, tfd, buf + 4096, 100, M - 100, 30);
    CHECK(r == 100 && memcmp(buf + 3996, buf + 4096, 100) == 0,
          "tmpfs READ off=INT64_MAX-100 len=100 (ends exactly at INT64_MAX): res=%" PRId64, r);
    /* FSYNC/FDATASYNC ignore buf/len/offset (header), so absurd values are accepted. */
    r = do_io(h, IOENG_OP_FSYNC, tfd, NULL, UINT64_MAX, UINT64_MAX, 30);
    CHECK(r == 0, "FSYNC with off=len=UINT64_MAX: res=%" PRId64, r);
    r = do_io(h, IOENG_OP_FDATASYNC, efd, NULL, UINT64_MAX, M, 30);
    CHECK(r == 0, "FDATASYNC with off=INT64_MAX len=UINT64_MAX: res=%" PRId64, r);
    REL_CHECK_IDLE_STATS(h, 10);
    tu_close(h);
    close(tfd);
    close(efd);
    free(buf);
    printf("figure: range [%s]: %d refused synchronously with -EINVAL (no callback), 10 "
           "boundary requests exact (EOF reads 0, ext4 -EFBIG, tmpfs write at INT64_MAX-4096)\n",
           tu_backend_name(g_be), nbad);
    return 0;
}

/* ---------------------------------------------------------------- huge */

#define GiB (1ULL << 30)
#define KMAX 0x7ffff000ULL

static void put_marker(int fd, uint64_t off, uint64_t tag, unsigned char *expect_base,
                       uint64_t expect_off)
{
    unsigned char m[16];
    uint64_t a = tu_mix64(tag), b = tu_mix64(tag + 1);
    memcpy(m, &a, 8);
    memcpy(m + 8, &b, 8);
    tu_pwrite_all(fd, m, 16, (off_t)off);
    if (expect_base)
        memcpy(expect_base + expect_off, m, 16);
}

/* All bytes of [p, p+len) equal c? Returns first bad index or -1. */
static long long find_not(const unsigned char *p, uint64_t len, unsigned char c)
{
    uint64_t pat = 0x0101010101010101ULL * c;
    uint64_t i = 0;
    for (; i < len && ((uintptr_t)(p + i) & 7); i++)
        if (p[i] != c)
            return (long long)i;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        if (v != pat)
            break;
    }
    for (; i < len; i++)
        if (p[i] != c)
            return (long long)i;
    return -1;
}

static int test_huge(void)
{
    const uint64_t L = 3 * GiB + 12345, O = 3 * 4096 + 7, SLACK = 4096;
    unsigned char *buf = malloc(L + SLACK);
    CHECK(buf != NULL, "malloc(3 GiB)");
    ioeng_t *h = tu_open(g_be, 8, 0, 0, 0);
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    CHECK(ftruncate(fd, (off_t)(4 * GiB)) == 0, "ftruncate 4 GiB: %s", strerror(errno));
    /* Markers at the start, straddling the internal split point (the kernel maximum
     * 0x7ffff000 per IO), at the end; and two just outside the requested range. */
    struct {
        uint64_t rel; /* relative to O */
        int inside;
    } mk[] = {{0, 1}, {KMAX - 8, 1}, {KMAX + 4096, 1}, {L - 16, 1}, {L, 0}, {(uint64_t)-16, 0}};
    unsigned char marks[6][16];
    for (int i = 0; i < 6; i++)
        put_marker(fd, O + mk[i].rel, 100 + (uint64_t)i, marks[i], 0);
    memset(buf, 0xAA, L + SLACK);
    ioeng_stats_t s0 = tu_stats(h);
    double t0 = rel_now();
    int64_t r = do_io(h, IOENG_OP_READ, fd, buf, L, O, 200);
    double t1 = rel_now();
    CHECK(r == (int64_t)L, "READ of 3 GiB + 12345 B at %" PRIu64 ": res=%" PRId64 " want %" PRIu64,
          O, r, L);
    ioeng_stats_t s1 = tu_stats(h);
    for (int i = 0; i < 4; i++) {
        CHECK(memcmp(buf + mk[i].rel, marks[i], 16) == 0,
              "marker %d at relative offset %" PRIu64 " missing (split placed data wrongly)", i,
              mk[i].rel);
        memset(buf + mk[i].rel, 0, 16);
    }
    long long bad = find_not(buf, L, 0);
    CHECK(bad < 0, "byte %lld of the huge read is 0x%02x, want 0", bad, bad < 0 ? 0 : buf[bad]);
    bad = find_not(buf + L, SLACK, 0xAA);
    CHECK(bad < 0, "the engine wrote past len (byte len+%lld)", bad);
    printf("figure: huge read [%s]: 3 GiB + 12345 B from a sparse 4 GiB file, res=%" PRId64
           " in %.2f s, resubmits (split chunks)=%" PRIu64 ", bytes verified=%" PRIu64 "\n",
           tu_backend_name(g_be), r, t1 - t0, s1.resubmits - s0.resubmits, L);
    close(fd);

    /* 3 GiB read of a 1 GiB file: exactly 1 GiB. */
    fd = tu_scratch(TU_TMPFS, 0, NULL);
    CHECK(ftruncate(fd, (off_t)GiB) == 0, "ftruncate 1 GiB");
    unsigned char endm[16];
    put_marker(fd, GiB - 16, 7, endm, 0);
    memset(buf, 0xAA, L + SLACK);
    r = do_io(h, IOENG_OP_READ, fd, buf, 3 * GiB, 0, 200);
    CHECK(r == (int64_t)GiB, "READ 3 GiB of a 1 GiB file: res=%" PRId64 " want %llu", r, GiB);
    CHECK(memcmp(buf + GiB - 16, endm, 16) == 0, "1 GiB file: end marker");
    memset(buf + GiB - 16, 0, 16);
    bad = find_not(buf, GiB, 0);
    CHECK(bad < 0, "1 GiB file: byte %lld not zero", bad);
    bad = find_not(buf + GiB, L + SLACK - GiB, 0xAA);
    CHECK(bad < 0, "1 GiB file: buffer touched beyond EOF at 1 GiB + %lld", bad);
    close(fd);

    /* 2 GiB + 4097 B WRITE at an unaligned offset: res == len, content right. */
    const uint64_t WL = 2 * GiB + 4097, WO = 4095;
    for (uint64_t i = 0; i < WL; i += 8) {
        uint64_t v = tu_mix64(i);
        memcpy(buf + i, &v, WL - i < 8 ? WL - i : 8);
    }
    fd = tu_scratch(TU_TMPFS, 0, NULL);
    r = do_io(h, IOENG_OP_WRITE, fd, buf, WL, WO, 200);
    CHECK(r == (int64_t)WL, "WRITE 2 GiB + 4097 B: res=%" PRId64 " want %" PRIu64, r, WL);
    struct stat sb;
    CHECK(fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == WO + WL, "file size after huge write: %lld",
          (long long)sb.st_size);
    const uint64_t CH = 64ULL << 20;
    unsigned char *cmp = malloc(CH);
    CHECK(cmp != NULL, "malloc");
    for (uint64_t o = 0; o < WL; o += CH) {
        uint64_t n = WL - o < CH ? WL - o : CH;
        tu_pread_all(fd, cmp, n, (off_t)(WO + o));
        long d = rel_first_diff(cmp, buf + o, n);
        CHECK(d < 0, "huge write: file byte %" PRIu64 " wrong", WO + o + (uint64_t)d);
    }
    free(cmp);
    close(fd);
    REL_CHECK_IDLE_STATS(h, 3);
    tu_close(h);
    free(buf);
    printf("figure: huge [%s]: 3 GiB read of 1 GiB file -> 1 GiB exactly; 2 GiB + 4097 B write "
           "verified\n", tu_backend_name(g_be));
    return 0;
}

int main(int argc, char **argv)
{
    const char *which = argc > 1 ? argv[1] : "";
    char name[64];
    snprintf(name, sizeof name, "faults_%s", which);
    rel_init(strdup(name), 300);
    g_be = tu_backend();
    require_backend(g_be);
    printf("faults %s: backend=%s\n", which, tu_backend_name(g_be));
    int rc;
    if (strcmp(which, "enospc") == 0)
        rc = test_enospc();
    else if (strcmp(which, "closedfd") == 0)
        rc = test_closedfd();
    else if (strcmp(which, "range") == 0)
        rc = test_range();
    else if (strcmp(which, "huge") == 0)
        rc = test_huge();
    else {
        fprintf(stderr, "usage: faults enospc|closedfd|range|huge\n");
        return 2;
    }
    printf("faults %s [%s]: OK\n", which, tu_backend_name(g_be));
    return rc;
}
