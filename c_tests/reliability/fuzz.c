/*
 * fuzz: a randomized, seed-reproducible storm of valid and invalid ioeng_submit() calls.
 *
 * The seed comes from IOENG_FUZZ_SEED (else time ^ pid) and is printed first; the case
 * sequence is reproducible from it (only which valid requests meet a full queue depends
 * on timing). IOENG_FUZZ_CASES (default 200000) cases are thrown at one engine with
 * depth 8 and queue_capacity 64 (constant -EAGAIN pressure):
 * bad op / prio values (random uint32), NULL buf, len 0, huge len, offsets near and
 * beyond INT64_MAX, wrapping offset + len, negative fds, a closed fd, NULL h/req/cb,
 * fsync with garbage buf/len/offset, random mixes of all of these, and valid small IOs
 * on two tmpfs files (reads of a known file incl. at/after EOF, writes of
 * offset-determined data).
 *
 * ABI v1 cases (about 30%): valid READV/WRITEV (1..4 segments) of the same files, WRITEs
 * with DSYNC/SYNC, FIXED_BUF READ/WRITE (the pool is registered as buffer 0 of the main
 * engine; the paused engine has none), tags and far deadlines (no effect), deadlines
 * already past (-ETIMEDOUT in the callback), and each invalid combination with its
 * errno: unknown flag bits, flags on FSYNC/FDATASYNC, DSYNC/SYNC on READ/READV,
 * FIXED_BUF on READV/WRITEV, FIXED_BUF outside the buffer or with a bad index, iovec
 * count 0 or above IOV_MAX, NULL iovec array, iovec lengths overflowing, reserved != 0,
 * a class_id no class has.
 *
 * IO classes: the main engine opens three (weights 100, 300 and 50, the last also limited
 * to 100,000 IOPS with a kernel ioprio), and half the cases name one of the four classes
 * (0..3) at random; so the storm runs through the weighted, rate-limited dispatch.
 *
 * For every call the expected synchronous return is computed from the header's
 * documented checks, in this precedence (the header lists EINVAL before EBADF and does
 * not spell out an order; this is also the library's observed order):
 *   NULL h/req/cb -> unknown op -> unknown prio -> READ/WRITE: NULL buf, len 0,
 *   offset + len > INT64_MAX (FALLOCATE/SYNC_FILE_RANGE: any flag, offset + len above
 *   INT64_MAX) -> -EINVAL;  then fd < 0 -> -EBADF;  then queue full ->
 *   -EAGAIN (only allowed when our outstanding count >= queue_capacity);  else 0.
 * For accepted requests the expected callback res is modelled: READ of the known file
 * -> min(len, size - offset) (0 at/after EOF) with the data checked, WRITE -> len,
 * FSYNC/FDATASYNC -> 0, closed fd -> -EBADF. Exactly one callback per accepted request,
 * none for refused ones; callbacks never overlap (AIO fails a closed-fd request on the
 * submitter thread, the rest run on the completer), and stats.completed already counts
 * a callback when it starts. A deterministic paused phase first checks that validation
 * errors take precedence over -EAGAIN.
 */
#include <sched.h>
#include <sys/uio.h>

#include "rel.h"

#define CAP 64
#define DEPTH 8
#define NBUF 512
#define BUFSZ 16384
#define RSIZE (256 * 1024 + 123) /* the known read-only file */
#define WSIZE (1 << 20)          /* the write area */

static const uint64_t M = (uint64_t)INT64_MAX;

enum exp_kind { E_READ, E_WRITE, E_ZERO, E_EBADF, E_TIMEDOUT };

struct rec {
    _Atomic int ncb;
    uint8_t accepted;
    uint8_t kind; /* enum exp_kind */
    int16_t buf;  /* pool index or -1 */
    uint64_t id;
    uint64_t off, len;
    unsigned char *data; /* READ destination */
    struct iovec iov[4]; /* READV/WRITEV: the request's array (valid until its callback) */
};

static int g_registered; /* the engine under test has the pool as buffer 0 */
static struct iovec g_bad_iov[IOV_MAX + 2]; /* for refused vectors: 1-byte segments */
static struct iovec g_huge_iov[2];          /* lengths that overflow INT64_MAX */

static ioeng_t *g_eng;
static struct rec *g_rec;
static unsigned char *g_pool;
static _Atomic int g_busy[NBUF];
static _Atomic uint64_t g_cbs, g_started;
static _Atomic int g_in_cb;
static int g_rfd, g_wfd, g_closed;

static inline unsigned char rbyte(uint64_t x) { return (unsigned char)tu_mix64(x ^ 0x77); }
static inline unsigned char wbyte(uint64_t x) { return (unsigned char)tu_mix64(x ^ 0x1234567); }

static void on_cb(void *ctx, int64_t res)
{
    struct rec *r = ctx;
    uint64_t i = r->id;
    if (atomic_fetch_add(&g_in_cb, 1) != 0)
        FAILF("case %" PRIu64 ": two callbacks of one engine ran concurrently", i);
    uint64_t started = atomic_fetch_add(&g_started, 1) + 1;
    if (started % 256 == 0 && g_eng) {
        /* stats.completed counts callbacks as each one starts */
        ioeng_stats_t st;
        CHECK(ioeng_stats(g_eng, &st) == 0, "ioeng_stats in a callback");
        CHECK(st.completed >= started && st.submitted >= st.completed,
              "stats in callback: completed=%" PRIu64 " < callbacks started %" PRIu64
              " (or submitted %" PRIu64 " < completed)", st.completed, started, st.submitted);
    }
    int prev = atomic_fetch_add(&r->ncb, 1);
    if (!r->accepted)
        FAILF("case %" PRIu64 ": callback (res %" PRId64 ") for a REFUSED request", i, res);
    if (prev != 0)
        FAILF("case %" PRIu64 ": duplicate callback #%d (res %" PRId64 ")", i, prev + 1, res);
    switch (r->kind) {
    case E_READ: {
        uint64_t want = r->off >= RSIZE ? 0 : (RSIZE - r->off < r->len ? RSIZE - r->off : r->len);
        if (res != (int64_t)want)
            FAILF("case %" PRIu64 ": READ off=%" PRIu64 " len=%" PRIu64 " of a %d-byte file: res=%"
                  PRId64 " want %" PRIu64, i, r->off, r->len, RSIZE, res, want);
        const unsigned char *b = r->data;
        for (uint64_t k = 0; k < want; k++)
            if (b[k] != rbyte(r->off + k))
                FAILF("case %" PRIu64 ": READ data wrong at file offset %" PRIu64, i, r->off + k);
        break;
    }
    case E_WRITE:
        if (res != (int64_t)r->len)
            FAILF("case %" PRIu64 ": WRITE off=%" PRIu64 " len=%" PRIu64 ": res=%" PRId64, i, r->off,
                  r->len, res);
        break;
    case E_ZERO:
        if (res != 0)
            FAILF("case %" PRIu64 ": expected res 0 (fsync / read past EOF), got %" PRId64, i, res);
        break;
    case E_TIMEDOUT:
        if (res != -ETIMEDOUT)
            FAILF("case %" PRIu64 ": deadline already past: res=%" PRId64 " want -ETIMEDOUT", i,
                  res);
        break;
    case E_EBADF:
        if (res != -EBADF)
            FAILF("case %" PRIu64 ": request on closed fd %d: res=%" PRId64 " want -EBADF", i,
                  g_closed, res);
        break;
    }
    if (r->buf >= 0)
        atomic_store(&g_busy[r->buf], 0);
    atomic_fetch_sub(&g_in_cb, 1);
    atomic_fetch_add(&g_cbs, 1);
}

/* The header's synchronous checks: every -EINVAL condition, then fd < 0 -> -EBADF. */
/* IO classes open on the engine the cases go to (ids 1..g_nclasses). */
static unsigned g_nclasses;

static int expected_sync(int h_null, int req_null, int cb_null, const ioeng_req_t *q)
{
    if (h_null || req_null || cb_null)
        return -EINVAL;
    if (q->op > IOENG_OP_SYNC_FILE_RANGE || q->prio > IOENG_PRIO_HIGH || q->reserved ||
        q->class_id > g_nclasses)
        return -EINVAL;
    /* FALLOCATE/SYNC_FILE_RANGE: no flag but FIXED_FILE, offset + len <= INT64_MAX; the
     * kernel judges the rest (buf is ignored, len 0 is the kernel's to refuse). No files
     * are registered here, so FIXED_FILE is -EINVAL (fd is then an index, not checked
     * for -EBADF). */
    int range = q->op == IOENG_OP_FALLOCATE || q->op == IOENG_OP_SYNC_FILE_RANGE;
    if (range) {
        if ((q->flags & ~IOENG_REQ_FIXED_FILE) || q->offset > M || q->len > M - q->offset)
            return -EINVAL;
        if (q->flags & IOENG_REQ_FIXED_FILE)
            return -EINVAL;
        return q->fd < 0 ? -EBADF : 0;
    }
    int sync = q->op == IOENG_OP_FSYNC || q->op == IOENG_OP_FDATASYNC;
    int vec = q->op == IOENG_OP_READV || q->op == IOENG_OP_WRITEV;
    int reads = q->op == IOENG_OP_READ || q->op == IOENG_OP_READV;
    if (q->flags & ~IOENG_REQ_KNOWN_FLAGS)
        return -EINVAL;
    if (sync && (q->flags & ~IOENG_REQ_FIXED_FILE))
        return -EINVAL;
    if (reads && (q->flags & (IOENG_REQ_DSYNC | IOENG_REQ_SYNC)))
        return -EINVAL;
    if (vec && (q->flags & IOENG_REQ_FIXED_BUF))
        return -EINVAL;
    if (!sync) {
        uint64_t total = q->len;
        if (vec) {
            if (!q->buf || q->len == 0 || q->len > IOV_MAX)
                return -EINVAL;
            const struct iovec *v = q->buf;
            total = 0;
            for (uint64_t k = 0; k < q->len; k++) {
                if (v[k].iov_len > M - total)
                    return -EINVAL;
                total += v[k].iov_len;
            }
        } else if (!q->buf || q->len == 0) {
            return -EINVAL;
        }
        if (q->offset > M || total > M - q->offset)
            return -EINVAL;
    }
    if (q->flags & IOENG_REQ_FIXED_BUF) {
        const unsigned char *b = q->buf;
        const unsigned char *end = g_pool + (size_t)NBUF * BUFSZ;
        if (!g_registered || q->buf_index != 0 || b < g_pool || b > end ||
            q->len > (uint64_t)(end - b))
            return -EINVAL;
    }
    if (q->flags & IOENG_REQ_FIXED_FILE)
        return -EINVAL;
    if (q->fd < 0)
        return -EBADF;
    return 0;
}

static int get_buf(void)
{
    static int next;
    for (int spins = 0;; spins++) {
        for (int k = 0; k < NBUF; k++) {
            int i = (next + k) % NBUF;
            if (!atomic_load(&g_busy[i])) {
                atomic_store(&g_busy[i], 1);
                next = i + 1;
                return i;
            }
        }
        CHECK(spins < 200000, "no free buffer for 10 s (callbacks lost?)");
        rel_sleep_us(50);
    }
}

static uint64_t pick_u64(rel_rng_t *r)
{
    switch (rel_rand(r) % 10) {
    case 0: return 0;
    case 1: return 1;
    case 2: return M;
    case 3: return M - rel_range(r, 0, 8192);
    case 4: return M + 1;
    case 5: return UINT64_MAX - rel_range(r, 0, 8192);
    case 6: return rel_range(r, 0, 1 << 20);
    case 7: return 1ULL << rel_range(r, 0, 63);
    default: return rel_rand(r);
    }
}

struct counts {
    uint64_t cases, accepted, einval, ebadf, eagain, prec_both, by_kind[5], null_args;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ABI v1 cases. *need_buf: 1 = a pool buffer of q->len bytes, 2 = a vector of *nseg
 * contiguous segments over a pool buffer of *vbytes bytes (q->len = *nseg). */
static void gen_v1_case(rel_rng_t *r, ioeng_req_t *q, int *kind, int *need_buf, int *nseg,
                        uint64_t *vbytes)
{
    unsigned c = (unsigned)(rel_rand(r) % 100);
    int write = (int)(rel_rand(r) & 1);
    q->fd = write ? g_wfd : g_rfd;
    q->tag = (rel_rand(r) & 1) ? rel_rand(r) : 0;
    if (rel_rand(r) % 4 == 0)
        q->deadline_ns = now_ns() + 3600ull * 1000000000ull; /* far: no effect */
    if (c < 35) { /* valid READV / WRITEV */
        q->op = write ? IOENG_OP_WRITEV : IOENG_OP_READV;
        *nseg = 1 + (int)(rel_rand(r) % 4);
        *vbytes = rel_range(r, (uint64_t)*nseg, BUFSZ);
        q->offset = write ? rel_range(r, 0, WSIZE - *vbytes) : rel_range(r, 0, RSIZE + 8192);
        q->flags = write && (rel_rand(r) & 1) ? IOENG_REQ_DSYNC : 0;
        *need_buf = 2;
        *kind = write ? E_WRITE : E_READ;
    } else if (c < 52) { /* valid READ/WRITE with flags, FIXED_BUF when registered */
        q->op = write ? IOENG_OP_WRITE : IOENG_OP_READ;
        q->len = rel_range(r, 1, BUFSZ);
        q->offset = write ? rel_range(r, 0, WSIZE - q->len) : rel_range(r, 0, RSIZE + 8192);
        if (write)
            q->flags = (uint32_t)(rel_rand(r) % 4); /* none, DSYNC, SYNC, both */
        if (g_registered && (rel_rand(r) & 1))
            q->flags |= IOENG_REQ_FIXED_BUF;
        *need_buf = 1;
        *kind = write ? E_WRITE : E_READ;
    } else if (c < 57) { /* deadline already past: accepted, -ETIMEDOUT */
        q->op = IOENG_OP_READ;
        q->fd = g_rfd;
        q->len = rel_range(r, 1, BUFSZ);
        q->deadline_ns = rel_range(r, 1, now_ns());
        *need_buf = 1;
        *kind = E_TIMEDOUT;
    } else if (c < 62) { /* unknown flag bits */
        q->op = (uint32_t)write;
        q->buf = g_pool;
        q->len = 1;
        q->flags = (uint32_t)rel_rand(r) | (1u << rel_range(r, 4, 31));
    } else if (c < 67) { /* any flag on FSYNC/FDATASYNC */
        q->op = IOENG_OP_FSYNC + (uint32_t)(rel_rand(r) & 1);
        q->flags = 1u << rel_range(r, 0, 3);
    } else if (c < 72) { /* DSYNC/SYNC on READ/READV */
        q->op = (rel_rand(r) & 1) ? IOENG_OP_READ : IOENG_OP_READV;
        q->buf = q->op == IOENG_OP_READ ? (void *)g_pool : (void *)g_bad_iov;
        q->len = 1;
        q->flags = (rel_rand(r) & 1) ? IOENG_REQ_DSYNC : IOENG_REQ_SYNC;
    } else if (c < 76) { /* FIXED_BUF on READV/WRITEV */
        q->op = write ? IOENG_OP_WRITEV : IOENG_OP_READV;
        q->buf = g_bad_iov;
        q->len = 1;
        q->flags = IOENG_REQ_FIXED_BUF;
    } else if (c < 81) { /* FIXED_BUF outside the buffer or with a bad index */
        q->op = (uint32_t)write;
        q->flags = IOENG_REQ_FIXED_BUF;
        q->len = rel_range(r, 1, BUFSZ);
        if (rel_rand(r) & 1) {
            q->buf = g_pool;
            q->buf_index = (uint32_t)rel_range(r, 1, UINT32_MAX);
        } else {
            q->buf = (rel_rand(r) & 1) ? g_pool - rel_range(r, 1, 4096)
                                       : g_pool + (size_t)NBUF * BUFSZ - q->len + rel_range(r, 1, 4096);
        }
    } else if (c < 86) { /* iovec count 0 or above IOV_MAX */
        q->op = write ? IOENG_OP_WRITEV : IOENG_OP_READV;
        q->buf = g_bad_iov;
        q->len = (rel_rand(r) & 1) ? 0 : (rel_rand(r) & 1) ? IOV_MAX + 1 : pick_u64(r) | (IOV_MAX + 1);
    } else if (c < 89) { /* NULL iovec array */
        q->op = write ? IOENG_OP_WRITEV : IOENG_OP_READV;
        q->len = rel_range(r, 1, IOV_MAX);
    } else if (c < 92) { /* iovec lengths overflowing INT64_MAX */
        q->op = write ? IOENG_OP_WRITEV : IOENG_OP_READV;
        q->buf = g_huge_iov;
        q->len = 2;
    } else if (c < 96) { /* reserved != 0, or a class_id no class has */
        q->op = (uint32_t)write;
        q->buf = g_pool;
        q->len = 1;
        if (rel_rand(r) & 1)
            q->reserved = (uint16_t)(rel_rand(r) | 1);
        else
            q->class_id = (uint16_t)(4 + rel_rand(r) % (UINT16_MAX - 3));
    } else { /* random mix of v1 fields; fds never open, accepted ones end in -EBADF */
        q->op = (uint32_t)(rel_rand(r) % 9); /* 8: unknown */
        q->flags = (uint32_t)(rel_rand(r) % 64); /* every known bit, FIXED_FILE included */
        int fds[] = {-1, INT32_MIN, g_closed};
        q->fd = fds[rel_rand(r) % 3];
        q->buf = (rel_rand(r) & 1) ? NULL : (q->op >= IOENG_OP_READV ? (void *)g_bad_iov : g_pool);
        q->len = (rel_rand(r) & 1) ? rel_range(r, 0, IOV_MAX + 1) : pick_u64(r);
        if (q->buf == g_pool && q->len > BUFSZ)
            q->len = 1 + q->len % BUFSZ; /* AIO looks at [buf, buf+len) even for a bad fd */
        q->offset = rel_range(r, 0, 1 << 20);
        q->buf_index = (uint32_t)(rel_rand(r) % 2);
        *kind = E_EBADF;
    }
}

/* Builds one case. Sets *need_buf when the request needs a pool buffer (see gen_v1_case). */
static void gen_case(rel_rng_t *r, ioeng_req_t *q, int *hn, int *qn, int *cn, int *kind,
                     int *need_buf, int *nseg, uint64_t *vbytes)
{
    memset(q, 0, sizeof *q);
    *hn = *qn = *cn = 0;
    *need_buf = 0;
    *kind = -1;
    q->prio = rel_rand(r) & 1;
    if (g_nclasses && (rel_rand(r) & 1))
        q->class_id = (uint16_t)(rel_rand(r) % (g_nclasses + 1));
    if (rel_rand(r) % 100 < 30) {
        gen_v1_case(r, q, kind, need_buf, nseg, vbytes);
        if (*need_buf == 1)
            q->buf = g_pool; /* placeholder, as below */
        return;
    }
    unsigned c = (unsigned)(rel_rand(r) % 100);
    if (c < 22) { /* valid read of the known file, incl. at/after EOF */
        q->op = IOENG_OP_READ;
        q->fd = g_rfd;
        q->len = rel_range(r, 1, BUFSZ);
        q->offset = rel_range(r, 0, RSIZE + 8192);
        *need_buf = 1;
        *kind = E_READ;
    } else if (c < 36) { /* valid write */
        q->op = IOENG_OP_WRITE;
        q->fd = g_wfd;
        q->len = rel_range(r, 1, BUFSZ);
        q->offset = rel_range(r, 0, WSIZE - q->len);
        *need_buf = 1;
        *kind = E_WRITE;
    } else if (c < 42) { /* fsync/fdatasync, garbage in the ignored fields */
        q->op = IOENG_OP_FSYNC + (uint32_t)(rel_rand(r) & 1);
        q->fd = (rel_rand(r) & 1) ? g_rfd : g_wfd;
        q->buf = (rel_rand(r) & 1) ? NULL : g_pool;
        q->len = pick_u64(r);
        q->offset = pick_u64(r);
        *kind = E_ZERO;
    } else if (c < 48) { /* closed fd: accepted, -EBADF in the callback */
        q->op = (uint32_t)(rel_rand(r) % 4);
        q->fd = g_closed;
        q->len = rel_range(r, 1, BUFSZ);
        q->offset = rel_range(r, 0, 1 << 20);
        *need_buf = 1;
        *kind = E_EBADF;
    } else if (c < 52) { /* read near INT64_MAX, valid: EOF */
        q->op = IOENG_OP_READ;
        q->fd = g_rfd;
        q->len = rel_range(r, 1, BUFSZ);
        q->offset = M - q->len - rel_range(r, 0, 4096);
        *need_buf = 1;
        *kind = E_ZERO;
    } else if (c < 58) { /* bad op */
        q->op = (uint32_t)rel_rand(r);
        if (q->op <= IOENG_OP_SYNC_FILE_RANGE)
            q->op += IOENG_OP_SYNC_FILE_RANGE + 1;
        q->fd = g_rfd;
        q->buf = g_pool;
        q->len = 1;
    } else if (c < 64) { /* bad prio */
        q->op = (uint32_t)(rel_rand(r) % 4);
        q->prio = (uint32_t)rel_rand(r);
        if (q->prio <= 1)
            q->prio += 2;
        q->fd = g_rfd;
        q->buf = g_pool;
        q->len = 1;
    } else if (c < 68) { /* NULL buf */
        q->op = (uint32_t)(rel_rand(r) & 1);
        q->fd = g_rfd;
        q->len = rel_range(r, 1, BUFSZ);
    } else if (c < 72) { /* len 0 */
        q->op = (uint32_t)(rel_rand(r) & 1);
        q->fd = g_wfd;
        q->buf = g_pool;
        q->offset = pick_u64(r);
    } else if (c < 78) { /* huge len / overflowing range */
        q->op = (uint32_t)(rel_rand(r) & 1);
        q->fd = g_rfd;
        q->buf = g_pool;
        do {
            q->len = pick_u64(r);
            q->offset = pick_u64(r);
        } while (q->len == 0 || (q->offset <= M && q->len <= M - q->offset));
    } else if (c < 83) { /* negative fd, otherwise fine */
        q->op = (uint32_t)(rel_rand(r) % 4);
        q->fd = (rel_rand(r) & 1) ? -1 : (int)(rel_rand(r) | 0x80000000u);
        q->buf = g_pool;
        q->len = rel_range(r, 1, BUFSZ);
    } else if (c < 85) { /* NULL h / req / cb */
        q->op = IOENG_OP_READ;
        q->fd = g_rfd;
        q->buf = g_pool;
        q->len = 1;
        unsigned w = (unsigned)(rel_rand(r) % 3);
        *hn = w == 0;
        *qn = w == 1;
        *cn = w == 2;
    } else { /* everything random; fds never open, so accepted ones end in -EBADF */
        static const uint32_t ops[] = {0, 1, 2, 3, 6, 0xffffffffu, 0x80000000u};
        uint32_t v = (uint32_t)rel_rand(r);
        q->op = (rel_rand(r) & 3) ? ops[rel_rand(r) % 7] : v;
        q->prio = (rel_rand(r) & 3) ? (uint32_t)(rel_rand(r) % 3) : (uint32_t)rel_rand(r);
        int fds[] = {-1, INT32_MIN, -4096, g_closed};
        q->fd = fds[rel_rand(r) % 4];
        q->buf = (rel_rand(r) & 1) ? NULL : (void *)g_pool;
        q->len = pick_u64(r);
        q->offset = pick_u64(r);
        *kind = E_EBADF;
        /* The contract makes buf valid for len bytes; AIO's io_submit (and valgrind's
         * io_submit wrapper) look at [buf, buf+len) even for a bad fd. So a READ/WRITE
         * that would pass validation gets a len our pool buffer really has. */
        if (q->buf && q->op <= IOENG_OP_WRITE && q->len && q->offset <= M &&
            q->len <= M - q->offset)
            q->len = 1 + q->len % BUFSZ;
        if (q->buf) /* an accepted one must have its own buffer (never touched: bad fd) */
            *need_buf = 1;
    }
    if (*need_buf)
        q->buf = g_pool; /* placeholder; an accepted request gets its own pool buffer */
}

static void wait_idle(uint64_t accepted)
{
    for (int i = 0; i < 30000 && atomic_load(&g_cbs) < accepted; i++)
        rel_sleep_us(1000);
    CHECK_EQ(atomic_load(&g_cbs), accepted, "callbacks of accepted requests");
    REL_CHECK_IDLE_STATS(g_eng, accepted);
}

/* Deterministic: on a paused engine with a full queue, validation errors still win. */
static void paused_phase(ioeng_backend_t be, rel_rng_t *rng, struct counts *ct)
{
    ioeng_t *h = tu_open(be, DEPTH, 0, CAP, 1);
    static struct rec rr[CAP + 1];
    memset(rr, 0, sizeof rr);
    static unsigned char pb[CAP][64];
    for (int i = 0; i < CAP; i++) {
        rr[i].accepted = 1;
        rr[i].kind = E_READ;
        rr[i].buf = -1;
        rr[i].id = 1000000000 + (uint64_t)i;
        rr[i].off = (uint64_t)i * 64;
        rr[i].len = 64;
        rr[i].data = pb[i];
        ioeng_req_t q = {.op = IOENG_OP_READ, .prio = (uint32_t)(i & 1), .fd = g_rfd, .buf = pb[i],
                         .len = 64, .offset = (uint64_t)i * 64};
        CHECK(ioeng_submit(h, &q, on_cb, &rr[i]) == 0, "paused: submit %d of %d", i, CAP);
    }
    /* Queue full now. */
    int checked = 0;
    for (int k = 0; k < 2000; k++) {
        ioeng_req_t q;
        int hn, qn, cn, kind, nb, nseg = 0;
        uint64_t vbytes = 0;
        struct iovec piov[4];
        gen_case(rng, &q, &hn, &qn, &cn, &kind, &nb, &nseg, &vbytes);
        if (nb == 1)
            q.buf = pb[0];
        if (nb == 2) { /* a real (never used) vector, so the model can read it */
            for (int k = 0; k < nseg; k++)
                piov[k] = (struct iovec){ pb[0], 1 };
            q.buf = piov;
            q.len = (uint64_t)nseg;
        }
        int want = expected_sync(hn, qn, cn, &q);
        if (want == 0)
            want = -EAGAIN; /* valid but the queue is full */
        rr[CAP].accepted = 0;
    rr[CAP].id = 2000000000;
        int rc = ioeng_submit(hn ? NULL : h, qn ? NULL : &q, cn ? NULL : on_cb, &rr[CAP]);
        if (rc != want)
            FAILF("paused full queue: op=%u prio=%u fd=%d buf=%p len=%" PRIu64 " off=%" PRIu64
                  " h/req/cb NULL=%d/%d/%d: rc=%d want %d", q.op, q.prio, q.fd, q.buf, q.len,
                  q.offset, hn, qn, cn, rc, want);
        checked++;
    }
    ioeng_stats_t st = tu_stats(h);
    CHECK(st.submitted == CAP && st.completed == 0 && st.queued_high + st.queued_read == CAP,
          "paused: stats submitted=%" PRIu64 " completed=%" PRIu64, st.submitted, st.completed);
    CHECK(ioeng_resume(h) == 0, "resume");
    CHECK(ioeng_resume(h) == 0, "resume is idempotent");
    for (int i = 0; i < 10000; i++) {
        int all = 1;
        for (int k = 0; k < CAP && all; k++)
            all = atomic_load(&rr[k].ncb) == 1;
        if (all)
            break;
        rel_sleep_us(1000);
    }
    ioeng_stats_t s2 = tu_stats(h);
    CHECK(s2.completed == CAP && s2.in_flight == 0, "paused phase: completed=%" PRIu64,
          s2.completed);
    tu_close(h);
    for (int i = 0; i < CAP; i++) {
        CHECK(atomic_load(&rr[i].ncb) == 1, "paused phase request %d: %d callbacks", i,
              atomic_load(&rr[i].ncb));
        for (int k = 0; k < 64; k++)
            CHECK(pb[i][k] == rbyte((uint64_t)i * 64 + (uint64_t)k), "paused phase read %d data", i);
    }
    CHECK(atomic_load(&rr[CAP].ncb) == 0, "callback for a refused request in the paused phase");
    ct->cases += (uint64_t)checked;
    atomic_store(&g_cbs, 0);
    atomic_store(&g_started, 0);
    printf("figure: fuzz paused phase [%s]: %d requests checked against a full queue "
           "(validation errors before -EAGAIN)\n", tu_backend_name(be), checked);
}

int main(void)
{
    uint64_t seed = (uint64_t)tu_env_ll("IOENG_FUZZ_SEED",
                                         (long long)((uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20)));
    printf("fuzz: seed=%" PRIu64 " (reproduce: IOENG_FUZZ_SEED=%" PRIu64 ")\n", seed, seed);
    rel_init("fuzz", 300);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    uint64_t n = (uint64_t)tu_env_ll("IOENG_FUZZ_CASES", 200000);
    printf("fuzz: backend=%s cases=%" PRIu64 " depth=%d queue_capacity=%d\n", tu_backend_name(be),
           n, DEPTH, CAP);

    g_rfd = tu_scratch(TU_TMPFS, 0, NULL);
    g_wfd = tu_scratch(TU_TMPFS, 0, NULL);
    g_closed = tu_closed_fd(3000);
    unsigned char *content = malloc(RSIZE);
    CHECK(content != NULL, "malloc");
    for (uint64_t i = 0; i < RSIZE; i++)
        content[i] = rbyte(i);
    tu_pwrite_all(g_rfd, content, RSIZE, 0);
    free(content);
    g_pool = tu_alloc_uninit((size_t)NBUF * BUFSZ);
    for (int k = 0; k < IOV_MAX + 2; k++)
        g_bad_iov[k] = (struct iovec){ g_pool, 1 };
    g_huge_iov[0] = (struct iovec){ g_pool, (size_t)M };
    g_huge_iov[1] = (struct iovec){ g_pool, 2 };
    memset(g_pool, 0x3C, (size_t)NBUF * BUFSZ); /* WRITEs to the closed fd send this */
    g_rec = calloc(n, sizeof *g_rec);
    unsigned char *written = calloc(WSIZE, 1);
    CHECK(g_rec && written, "calloc");

    rel_rng_t rng;
    rel_rng_seed(&rng, seed);
    struct counts ct;
    memset(&ct, 0, sizeof ct);
    paused_phase(be, &rng, &ct);

    g_eng = tu_open(be, DEPTH, 0, CAP, 0);
    struct iovec pool_iov = { g_pool, (size_t)NBUF * BUFSZ };
    int reg = ioeng_register_buffers(g_eng, &pool_iov, 1);
    CHECK(reg == 0, "ioeng_register_buffers(pool) = %d", reg);
    g_registered = 1;
    uint32_t weights[] = {100, 300, 50};
    for (unsigned k = 0; k < 3; k++) {
        ioeng_class_config_t cc;
        ioeng_class_config_init(&cc);
        cc.weight = weights[k];
        if (k == 2) {
            cc.iops_limit = 100000;
            cc.kernel_ioprio = (2 << 13) | 4; /* IOPRIO_CLASS_BE, level 4 */
        }
        uint16_t id = 0;
        int orc = ioeng_class_open(g_eng, &cc, &id);
        CHECK(orc == 0 && id == k + 1, "ioeng_class_open = %d (id %u)", orc, id);
    }
    g_nclasses = 3;
    double t0 = rel_now();
    for (uint64_t i = 0; i < n; i++) {
        struct rec *r = &g_rec[i];
        ioeng_req_t q;
        int hn, qn, cn, kind, need_buf, nseg = 0;
        uint64_t vbytes = 0;
        gen_case(&rng, &q, &hn, &qn, &cn, &kind, &need_buf, &nseg, &vbytes);
        if (need_buf == 2) { /* placeholder vector for the model; real one below */
            for (int k = 0; k < nseg; k++)
                r->iov[k] = (struct iovec){ g_pool, vbytes / (uint64_t)nseg };
            q.buf = r->iov;
            q.len = (uint64_t)nseg;
        }
        int want = expected_sync(hn, qn, cn, &q);
        if (want == -EINVAL && !hn && !qn && !cn && q.fd < 0)
            ct.prec_both++; /* both an EINVAL condition and fd < 0: EINVAL must win */
        r->buf = -1;
        r->id = i;
        uint64_t bytes = need_buf == 2 ? vbytes : q.len;
        if (want == 0 && need_buf) {
            r->buf = (int16_t)get_buf();
            unsigned char *b = g_pool + (size_t)r->buf * BUFSZ;
            r->data = b;
            if (need_buf == 2) { /* nseg uneven contiguous segments over b */
                uint64_t at = 0;
                for (int k = 0; k < nseg; k++) {
                    uint64_t left = bytes - at, segs_left = (uint64_t)(nseg - k);
                    uint64_t l = k == nseg - 1 ? left : 1 + (at * 7 + 13) % (left - segs_left + 1);
                    r->iov[k] = (struct iovec){ b + at, l };
                    at += l;
                }
            } else {
                q.buf = b;
            }
            if (kind == E_WRITE)
                for (uint64_t k = 0; k < bytes; k++)
                    b[k] = wbyte(q.offset + k);
            else if (kind == E_READ)
                memset(b, 0xEE, bytes < BUFSZ ? bytes : BUFSZ);
        }
        r->kind = (uint8_t)(kind < 0 ? E_ZERO : kind);
        r->off = q.offset;
        r->len = bytes;
        r->accepted = (want == 0);
        uint64_t outstanding = ct.accepted - atomic_load(&g_cbs);
        int rc = ioeng_submit(hn ? NULL : g_eng, qn ? NULL : &q, cn ? NULL : on_cb, r);
        ct.cases++;
        if (want == 0) {
            if (rc == 0) {
                ct.accepted++;
                ct.by_kind[r->kind]++;
                if (kind == E_WRITE)
                    memset(written + q.offset, 1, bytes);
                continue;
            }
            if (rc == -EAGAIN) {
                if (outstanding < CAP)
                    FAILF("case %" PRIu64 ": -EAGAIN with only %" PRIu64 " requests outstanding "
                          "(queue_capacity %d)", i, outstanding, CAP);
                r->accepted = 0;
                if (r->buf >= 0)
                    atomic_store(&g_busy[r->buf], 0);
                ct.eagain++;
                if (ct.eagain & 1) /* not from rng: the case sequence must not depend on timing */
                    sched_yield();
                continue;
            }
            FAILF("case %" PRIu64 " (seed %" PRIu64 "): valid request op=%u prio=%u fd=%d len=%"
                  PRIu64 " off=%" PRIu64 " flags=%#x buf_index=%u deadline=%" PRIu64
                  " refused with %d", i, seed, q.op, q.prio, q.fd, q.len, q.offset, q.flags,
                  q.buf_index, q.deadline_ns, rc);
        }
        if (rc != want)
            FAILF("case %" PRIu64 " (seed %" PRIu64 "): op=%u prio=%u fd=%d buf=%p len=%" PRIu64
                  " off=%" PRIu64 " flags=%#x buf_index=%u reserved=%u NULL h/req/cb=%d/%d/%d: "
                  "rc=%d, want %d", i, seed, q.op, q.prio, q.fd, q.buf, q.len, q.offset, q.flags,
                  q.buf_index, q.reserved, hn, qn, cn, rc, want);
        if (hn || qn || cn)
            ct.null_args++;
        if (rc == -EINVAL)
            ct.einval++;
        else
            ct.ebadf++;
        if ((i + 1) % 50000 == 0)
            wait_idle(ct.accepted);
    }
    wait_idle(ct.accepted);
    double el = rel_now() - t0;
    tu_close(g_eng);
    uint64_t cb = atomic_load(&g_cbs);
    CHECK_EQ(cb, ct.accepted, "callbacks after close");
    for (uint64_t i = 0; i < n; i++) {
        int c = atomic_load(&g_rec[i].ncb);
        if (g_rec[i].accepted)
            CHECK(c == 1, "case %" PRIu64 ": %d callbacks for an accepted request", i, c);
        else
            CHECK(c == 0, "case %" PRIu64 ": %d callbacks for a refused request", i, c);
    }
    /* Written bytes are the offset-determined pattern; the rest is a hole. */
    unsigned char *wf = calloc(WSIZE, 1);
    CHECK(wf != NULL, "calloc");
    ssize_t got = pread(g_wfd, wf, WSIZE, 0);
    CHECK(got >= 0, "pread");
    uint64_t wbytes = 0;
    for (uint64_t x = 0; x < WSIZE; x++) {
        if (written[x]) {
            CHECK((uint64_t)got > x && wf[x] == wbyte(x), "write area byte %" PRIu64 " wrong", x);
            wbytes++;
        } else {
            CHECK(wf[x] == 0, "write area byte %" PRIu64 " written but no write covered it", x);
        }
    }
    tu_check_still_closed(g_closed);
    CHECK(ct.eagain > 0, "no -EAGAIN pressure was created");
    printf("figure: fuzz [%s]: seed=%" PRIu64 " cases=%" PRIu64 " in %.2f s: accepted=%" PRIu64
           " (reads %" PRIu64 ", writes %" PRIu64 ", zero-res %" PRIu64 ", -EBADF callbacks %"
           PRIu64 ", -ETIMEDOUT %" PRIu64 "), refused: -EINVAL %" PRIu64 " (of which NULL h/req/cb %" PRIu64
           ", EINVAL-and-fd<0 precedence %" PRIu64 "), -EBADF %" PRIu64 ", -EAGAIN %" PRIu64
           "; write area bytes verified %" PRIu64 "\n",
           tu_backend_name(be), seed, ct.cases, el, ct.accepted, ct.by_kind[E_READ],
           ct.by_kind[E_WRITE], ct.by_kind[E_ZERO], ct.by_kind[E_EBADF], ct.by_kind[E_TIMEDOUT], ct.einval, ct.null_args,
           ct.prec_both, ct.ebadf, ct.eagain, wbytes);
    free(wf);
    free(written);
    free(g_rec);
    free(g_pool);
    close(g_rfd);
    close(g_wfd);
    printf("fuzz [%s]: OK\n", tu_backend_name(be));
    return 0;
}
