/*
 * ioeng_nbd_io.c - requests of the ioeng_nbd server: checks, pooled buffers, submission to
 * libioeng (FUA, WRITE_ZEROES pieces, the FDATASYNC fallback), the completion hand-off
 * to the event loop (from the engine's completer thread, or from the loop's own
 * ioeng_poll() in POLLED mode), and replies.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ioeng_nbd.h"

/* ======================================================================== */
/* Requests and buffers                                                     */
/* ======================================================================== */

struct req *req_get(struct conn *c)
{
    struct server *srv = c->srv;
    struct req *r = srv->free_reqs;
    if (r) {
        srv->free_reqs = r->next;
        srv->nfree_reqs--;
        srv->pool_bytes -= r->cap;
    } else {
        r = calloc(1, sizeof(*r));
        if (!r)
            die("out of memory");
    }
    r->next = NULL;
    r->conn = c;
    r->err = 0;
    r->need_sync = false;
    r->zmode = 0;
    r->boff = 0;
    r->ebuf = NULL;
    r->rmw = false;
    r->phase = PH_IO;
    r->in_wl = r->waiting = false;
    atomic_store(&r->ioerr, 0);
    atomic_store(&r->pending, 0);
    c->nreq++;
    c->nbytes += r->cap;
    srv->live_reqs++;
    srv->buf_bytes += r->cap;
    srv->trim_at_ns = 0;
    return r;
}

/* Makes r->buf hold at least len bytes (4096-aligned). */
bool req_reserve(struct req *r, size_t len)
{
    if (r->cap >= len)
        return true;
    size_t cap = (len + BUF_ALIGN - 1) & ~(size_t)(BUF_ALIGN - 1);
    void *p;
    if (posix_memalign(&p, BUF_ALIGN, cap) != 0)
        return false;
    if (r->conn) {
        r->conn->nbytes += cap - r->cap;
        r->conn->srv->buf_bytes += cap - r->cap;
    }
    free(r->buf);
    r->buf = p;
    r->cap = cap;
    return true;
}

/* Where a request's data goes and what range of the file its IO covers; reserves its
 * buffer. On the direct descriptor a READ or WRITE whose offset or length is not a
 * multiple of dio_align covers [lo, hi), the range rounded out to dio_align: a READ reads
 * all of it and replies from buf + boff; a WRITE receives its payload at buf + boff, reads
 * the partial edge blocks into ebuf, copies their outside bytes around the payload and
 * writes [lo, hi) (read-modify-write). An unaligned WRITE_ZEROES only needs ebuf. Returns
 * false when out of memory. */
bool req_layout(struct req *r)
{
    const struct nbd_export *ex = &r->conn->srv->ex;
    uint64_t a = ex->dio_align, end = r->off + r->len;
    r->lo = r->off;
    r->hi = end;
    r->boff = 0;
    r->ebuf = NULL;
    r->rmw = false;
    bool data = r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE;
    if (r->type == NBD_CMD_TRIM)
        return true; /* punches whole blocks inside [off, end) only: no edges */
    if (ex->fd_direct < 0 || (r->off % a == 0 && r->len % a == 0))
        return !data || req_reserve(r, r->len);
    r->lo = r->off / a * a;
    r->hi = (end + a - 1) / a * a;
    r->boff = (size_t)(r->off - r->lo);
    size_t span = (size_t)(r->hi - r->lo);
    if (r->type == NBD_CMD_READ)
        return req_reserve(r, span);
    r->rmw = true;
    size_t eoff = data ? (span + BUF_ALIGN - 1) / BUF_ALIGN * BUF_ALIGN : 0;
    if (!req_reserve(r, eoff + 2 * a))
        return false;
    r->ebuf = (uint8_t *)r->buf + eoff;
    return true;
}

void req_put(struct req *r)
{
    struct conn *c = r->conn;
    struct server *srv = c->srv;
    c->nreq--;
    c->nbytes -= r->cap;
    srv->live_reqs--;
    srv->buf_bytes -= r->cap;
    r->conn = NULL;
    /* The pool is bounded in requests and bytes, so a burst of big requests does not
     * stay resident. */
    if (r->cap > POOL_KEEP_CAP || srv->nfree_reqs >= POOL_KEEP_N ||
        srv->pool_bytes + r->cap > POOL_KEEP_BYTES) {
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
    }
    if (srv->nfree_reqs >= POOL_KEEP_N) {
        free(r);
    } else {
        r->next = srv->free_reqs;
        srv->free_reqs = r;
        srv->nfree_reqs++;
        srv->pool_bytes += r->cap;
    }
    if (!srv->live_reqs)
        srv->trim_at_ns = now_ns() + IDLE_TRIM_MS * 1000000ull;
    if (srv->buf_waiters)
        conns_wake_paused(srv); /* room freed in max_buf */
    conn_touch(c); /* may resume reading, or finish closing */
}

/* ======================================================================== */
/* Replies                                                                  */
/* ======================================================================== */

static uint32_t errno_to_nbd(int e)
{
    switch (e) {
    case EPERM: case EACCES: case EROFS: return NBD_EPERM;
    case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
    case ENOMEM: return NBD_ENOMEM;
    case EOPNOTSUPP: return NBD_ENOTSUP; /* FAST_ZERO that would not be fast */
    case EINVAL: return NBD_EINVAL;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO;
    }
}

/* With structured replies a READ (which must not get a simple reply) and BLOCK_STATUS get
 * one chunk, flagged DONE: the data in one OFFSET_DATA chunk (so DF always holds), the
 * descriptors in one BLOCK_STATUS chunk, an ERROR chunk (no message), or NONE for a READ
 * of length 0. Other commands keep simple replies, which the protocol allows for replies
 * without payload. */
static void structured_reply(struct req *r)
{
    struct conn *c = r->conn;
    uint16_t type;
    uint32_t plen = 0;
    size_t hlen = NBD_SREPLY_HDR_LEN;
    const void *data = NULL;
    size_t dlen = 0;
    if (r->err) {
        type = NBD_REPLY_TYPE_ERROR;
        put32(r->rhdr + 20, r->err);
        put16(r->rhdr + 24, 0); /* message length */
        hlen += 6;
        plen = 6;
    } else if (r->type == NBD_CMD_BLOCK_STATUS) {
        type = NBD_REPLY_TYPE_BLOCK_STATUS;
        data = r->buf;
        dlen = plen = r->bs_len;
    } else if (r->len == 0) {
        type = NBD_REPLY_TYPE_NONE;
    } else {
        type = NBD_REPLY_TYPE_OFFSET_DATA;
        put64(r->rhdr + 20, r->off);
        hlen += 8;
        data = (uint8_t *)r->buf + r->boff;
        dlen = r->len;
        plen = 8 + r->len;
        c->srv->stats.bytes_read += r->len;
    }
    put32(r->rhdr, NBD_STRUCTURED_REPLY_MAGIC);
    put16(r->rhdr + 4, NBD_REPLY_FLAG_DONE);
    put16(r->rhdr + 6, type);
    memcpy(r->rhdr + 8, r->cookie, 8);
    put32(r->rhdr + 16, plen);
    r->out = (struct out){ .hdr = r->rhdr, .hlen = hlen, .data = data, .dlen = dlen, .owner = r };
    conn_enqueue(c, &r->out);
}

void reply(struct req *r)
{
    struct conn *c = r->conn;
    struct server *srv = c->srv;
    if (r->err) {
        srv->stats.errors++;
        if (srv->opt.verbose)
            logmsg("conn %u: error %u for type %u flags 0x%x offset %" PRIu64 " length %u",
                   c->id, r->err, r->type, r->flags, r->off, r->len);
    }
    if (c->structured && (r->type == NBD_CMD_READ || r->type == NBD_CMD_BLOCK_STATUS)) {
        structured_reply(r);
        return;
    }
    put32(r->rhdr, NBD_SIMPLE_REPLY_MAGIC);
    put32(r->rhdr + 4, r->err);
    memcpy(r->rhdr + 8, r->cookie, 8);
    bool data = r->type == NBD_CMD_READ && r->err == 0;
    r->out = (struct out){ .hdr = r->rhdr, .hlen = NBD_REPLY_HDR_LEN,
                           .data = data ? (uint8_t *)r->buf + r->boff : NULL,
                           .dlen = data ? r->len : 0,
                           .owner = r };
    if (data)
        srv->stats.bytes_read += r->len;
    conn_enqueue(c, &r->out);
}

void reply_err(struct req *r, uint32_t err)
{
    r->err = err;
    reply(r);
}

/* ======================================================================== */
/* Engine glue                                                              */
/* ======================================================================== */

static void push_done(struct req *r)
{
    /* r->conn (and its srv) stays put while the request is in the engine. */
    struct server *srv = r->conn->srv;
    struct req *old = atomic_load_explicit(&srv->done_head, memory_order_relaxed);
    do {
        r->next = old;
    } while (!atomic_compare_exchange_weak_explicit(&srv->done_head, &old, r, memory_order_release,
                                                    memory_order_relaxed));
    if (!old && !srv->opt.polled) {
        /* The stack was empty, so the loop may be asleep: wake it. A write to an
         * eventfd only fails on counter overflow, which cannot happen with 1s. (A POLLED
         * engine runs this inside the loop's own ioeng_poll(), which drains next.) */
        uint64_t one = 1;
        ssize_t w = write(srv->evfd, &one, sizeof(one));
        (void)w;
    }
}

/* Completion callback: runs on the engine's completer thread (THREADS) or inside the
 * loop's ioeng_poll() (POLLED). */
static void on_io_done(void *ctx, int64_t res)
{
    struct req *r = ctx;
    if (res >= 0 && r->rd_piece && (uint64_t)res != r->rd_piece)
        res = -EIO; /* short read: the file shrank under us */
    if (res < 0) {
        int64_t zero = 0;
        atomic_compare_exchange_strong(&r->ioerr, &zero, res);
    }
    if (atomic_fetch_sub_explicit(&r->pending, 1, memory_order_acq_rel) == 1)
        push_done(r);
}

static void io_finished(struct req *r);

/* Every IO of a request goes through here: counted, so that pump_engine() knows whether
 * finishing requests submitted more. */
static int engine_submit(struct server *srv, const ioeng_req_t *q, struct req *r)
{
    srv->submitted++;
    return ioeng_submit(srv->eng, q, on_io_done, r);
}

/* Drops the loop's own reference; completes the request when nothing is pending. */
static void req_unref(struct req *r)
{
    if (atomic_fetch_sub_explicit(&r->pending, 1, memory_order_acq_rel) == 1)
        io_finished(r);
}

/* Submits op over [off, off+len) in pieces of at most `chunk` bytes from `buf` (which,
 * when `same_buf`, is reused for every piece). The caller holds one reference in
 * `pending`; every accepted piece adds one. */
static void submit_pieces(struct req *r, uint32_t op, void *buf, uint64_t off, uint64_t len,
                          uint64_t chunk, bool same_buf, uint32_t flags)
{
    struct server *srv = r->conn->srv;
    /* One descriptor per export (see "Write ordering"): callers pass aligned ranges
     * whenever it is the direct one. */
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done < chunk ? len - done : chunk;
        ioeng_req_t q = { .op = op, .prio = IOENG_PRIO_NORMAL, .flags = flags,
                          .buf = (uint8_t *)buf + (same_buf ? 0 : done), .len = n,
                          .offset = off + done };
        target_export(srv, &q, false);
        atomic_fetch_add(&r->pending, 1);
        int rc = engine_submit(srv, &q, r);
        if (rc == -EINVAL && (flags & IOENG_REQ_DSYNC)) {
            /* The engine refuses RWF_DSYNC (an interface without flags): fall back to
             * WRITE + FDATASYNC from now on. */
            logmsg("engine refused IOENG_REQ_DSYNC at submit; FUA now uses WRITE + FDATASYNC");
            srv->dsync_ok = false;
            flags &= ~(uint32_t)IOENG_REQ_DSYNC;
            r->need_sync = true;
            /* Only DSYNC goes: q.flags also holds target_export's FIXED_FILE, without
             * which q.fd (an index) would name the server's stdin or stdout. */
            q.flags &= ~(uint32_t)IOENG_REQ_DSYNC;
            rc = engine_submit(srv, &q, r);
        }
        if (rc != 0) {
            atomic_fetch_sub(&r->pending, 1);
            int64_t zero = 0;
            atomic_compare_exchange_strong(&r->ioerr, &zero, (int64_t)rc);
            return;
        }
        done += n;
    }
}

static void submit_sync(struct req *r)
{
    struct server *srv = r->conn->srv;
    atomic_store(&r->pending, 1);
    ioeng_req_t q = { .op = IOENG_OP_FDATASYNC, .prio = IOENG_PRIO_NORMAL };
    target_export(srv, &q, true);
    atomic_fetch_add(&r->pending, 1);
    int rc = engine_submit(srv, &q, r);
    if (rc != 0) {
        atomic_fetch_sub(&r->pending, 1);
        atomic_store(&r->ioerr, (int64_t)rc);
    }
    req_unref(r);
}

/* ------------------------------------------------------------------------ */
/* Write ordering                                                           */
/* ------------------------------------------------------------------------ */
/* The export is never written through two paths: mixing O_DIRECT and buffered writes on
 * one page lets the kernel's invalidation of cached pages after a direct write fail
 * ("Page cache invalidation failure on direct I/O"), which loses acknowledged data and
 * turns later fsyncs into EIO. So with a direct descriptor every request uses it, and a
 * write not aligned to dio_align is a read-modify-write of its edge blocks. That RMW must
 * not run beside another write to the same blocks (it would write back the stale edge it
 * read): writes are listed in arrival order, and a write overlapping an earlier listed
 * write, where either of the two is an RMW, waits until that one is done. Aligned writes
 * with no RMW in the list skip the scan: the fast path costs one list insert. */

static bool wl_conflict(const struct req *a, const struct req *b)
{
    return (a->rmw || b->rmw) && a->lo < b->hi && b->lo < a->hi;
}

/* Lists a write; returns whether it may start now. */
static bool wl_acquire(struct req *r)
{
    struct server *srv = r->conn->srv;
    bool blocked = false;
    if (r->rmw || srv->wl_rmw)
        for (const struct req *e = srv->wl_head; e && !blocked; e = e->wnext)
            blocked = wl_conflict(e, r);
    r->wnext = NULL;
    r->wprev = srv->wl_tail;
    if (srv->wl_tail)
        srv->wl_tail->wnext = r;
    else
        srv->wl_head = r;
    srv->wl_tail = r;
    r->in_wl = true;
    r->waiting = blocked;
    srv->wl_rmw += r->rmw;
    srv->wl_waiting += blocked;
    srv->stats.rmw_writes += r->rmw;
    srv->stats.write_waits += blocked;
    return !blocked;
}

static void dispatch(struct req *r);

/* Unlists a finished write and starts the waiting writes it no longer blocks. */
static void wl_release(struct req *r)
{
    struct server *srv = r->conn->srv;
    if (r->wprev)
        r->wprev->wnext = r->wnext;
    else
        srv->wl_head = r->wnext;
    if (r->wnext)
        r->wnext->wprev = r->wprev;
    else
        srv->wl_tail = r->wprev;
    r->in_wl = false;
    srv->wl_rmw -= r->rmw;
    if (!srv->wl_waiting)
        return;
    /* Decide first, dispatch after: a dispatch may finish (and unlist) at once. */
    struct req *go = NULL, **tail = &go;
    for (struct req *e = srv->wl_head; e; e = e->wnext) {
        if (!e->waiting)
            continue;
        bool blocked = false;
        for (const struct req *f = srv->wl_head; f != e && !blocked; f = f->wnext)
            blocked = wl_conflict(f, e);
        if (!blocked) {
            e->waiting = false;
            srv->wl_waiting--;
            e->next = NULL;
            *tail = e;
            tail = &e->next;
        }
    }
    while (go) {
        struct req *nx = go->next;
        go->next = NULL;
        dispatch(go);
        go = nx;
    }
}

/* Frees writes still waiting when the server gives up on them (shutdown grace over). */
void free_waiting_writes(struct server *srv)
{
    for (struct req *e = srv->wl_head; e;) {
        struct req *nx = e->wnext;
        if (e->waiting) {
            free(e->buf);
            free(e);
        }
        e = nx;
    }
    srv->wl_head = srv->wl_tail = NULL;
}

/* The partial edge blocks of [lo, hi): the first when off is not aligned, the last when
 * the end is not (possibly the same block). */
static void edge_blocks(const struct req *r, uint64_t a, uint64_t *head, uint64_t *tail)
{
    *head = r->off != r->lo ? r->lo : UINT64_MAX;
    *tail = r->off + r->len != r->hi ? r->hi - a : UINT64_MAX;
}

/* Phase 1 of an RMW: read the edge blocks into ebuf (head at 0, tail at a). */
static void submit_edge_reads(struct req *r)
{
    uint64_t a = r->conn->srv->ex.dio_align, h, t;
    edge_blocks(r, a, &h, &t);
    r->phase = PH_EDGE_READ;
    r->rd_piece = a;
    if (h != UINT64_MAX)
        submit_pieces(r, IOENG_OP_READ, r->ebuf, h, a, a, false, 0);
    if (t != UINT64_MAX && t != h)
        submit_pieces(r, IOENG_OP_READ, r->ebuf + a, t, a, a, false, 0);
}

/* The edge block holding file offset `at` (head or tail) in ebuf. */
static uint8_t *edge_at(const struct req *r, uint64_t a, uint64_t at)
{
    uint64_t h, t;
    edge_blocks(r, a, &h, &t);
    return h != UINT64_MAX && at < h + a ? r->ebuf : r->ebuf + a;
}

/* ------------------------------------------------------------------------ */
/* Zeroing: TRIM and WRITE_ZEROES                                           */
/* ------------------------------------------------------------------------ */
/* TRIM punches a hole (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE) over the whole file-system blocks
 * inside its range and leaves the partial blocks at its ends alone (the protocol lets a
 * TRIMmed range read back as anything; qemu-nbd likewise drops unaligned parts). It never
 * writes, so it needs no read-modify-write; if the file system cannot punch, it is a
 * no-op that succeeds.
 *
 * WRITE_ZEROES must read back as zeros. Without NBD_CMD_FLAG_NO_HOLE it punches a hole,
 * with it FALLOC_FL_ZERO_RANGE | KEEP_SIZE keeps the blocks allocated; where the file
 * system refuses the mode (EOPNOTSUPP: tmpfs has no ZERO_RANGE, some block devices no
 * punch) it is remembered and zeros are written instead. On the direct export fallocate
 * only gets whole file-system blocks: on a partial block the kernel zeroes the rest
 * through the page cache, a buffered write beside the direct ones (the data loss of "Write
 * ordering"). So the range splits into: partial dio blocks at the ends (read-modify-write,
 * serialised like a WRITE's), dio-aligned fringes short of a file-system block (zeros
 * written through the direct descriptor) and the whole blocks between (fallocate). On the
 * buffered export the whole range goes to fallocate (partial blocks through the page
 * cache are that export's only path anyway), except on a block device, whose fallocate
 * takes whole logical sectors only (EINVAL otherwise): the partial sectors at the ends
 * are written as zeros there, after the fallocate.
 *
 * NBD_CMD_FLAG_FAST_ZERO: the client would rather get ENOTSUP than have zeros written.
 * It is refused before any IO when the mode is known to be missing, and when fallocate
 * answers EOPNOTSUPP (nothing was changed: the fallocate runs before the edges and
 * fringes, which are at most a few blocks and count as fast). On a block device
 * ZERO_RANGE (NO_HOLE) never fails for want of support: where the device has no
 * write-zeroes command the kernel writes zero pages itself. So FAST_ZERO with NO_HOLE
 * there is refused unless the device's queue/write_zeroes_max_bytes, read at each such
 * request, is non-zero. A device that advertises the command but fails it (a loop device
 * over a file system without ZERO_RANGE, e.g. tmpfs) has the kernel write the zeros of
 * the first one; the kernel then clears the limit and the later ones are refused.
 * Without NO_HOLE a block device is zeroed with PUNCH_HOLE, which the kernel never does
 * by writing (EOPNOTSUPP instead), but only after dropping the range's page cache: so
 * FAST_ZERO refuses it up front too without the command, and on the buffered export
 * writes the range back first (an advertised command may still fail). FUA on either is an FDATASYNC after everything (the
 * engine takes no flags on FALLOCATE). */

/* Whether a block device zeroes with a command of its own: write_zeroes_max_bytes > 0
 * (the kernel clears it when the device fails the command, hence read each time). */
static bool blk_zeroes_fast(const struct nbd_export *ex)
{
    char b[32];
    ssize_t n = ex->wz_fd >= 0 ? pread(ex->wz_fd, b, sizeof(b) - 1, 0) : -1;
    if (n <= 0)
        return false;
    b[n] = '\0';
    return strtoull(b, NULL, 10) > 0;
}

/* [*mlo, *mhi): the part between the partial dio blocks (or the whole range on the
 * buffered export); [*flo, *fhi) inside it: the part for fallocate (empty: flo == fhi). */
static void zero_plan(const struct req *r, uint64_t *mlo, uint64_t *mhi, uint64_t *flo,
                      uint64_t *fhi)
{
    const struct nbd_export *ex = &r->conn->srv->ex;
    uint64_t end = r->off + r->len, h = ex->hole_align;
    if (ex->fd_direct < 0 && r->type == NBD_CMD_WRITE_ZEROES) {
        uint64_t s = ex->falloc_align;
        *mlo = r->off;
        *mhi = end;
        *flo = (r->off + s - 1) / s * s;
        *fhi = end / s * s;
        if (*fhi <= *flo)
            *flo = *fhi = *mlo;
        return;
    }
    uint64_t a = ex->fd_direct >= 0 ? ex->dio_align : 1;
    *mlo = (r->off + a - 1) / a * a;
    *mhi = end / a * a;
    if (*mhi < *mlo)
        *mhi = *mlo; /* inside one dio block: all of it is edge */
    *flo = (*mlo + h - 1) / h * h;
    *fhi = *mhi / h * h;
    if (*fhi <= *flo)
        *flo = *fhi = *mlo;
}

/* The zeros WRITE_ZEROES writes itself: the fringes around the fallocate'd part, or the
 * whole middle when there is none (r->zmode 0). */
static void zero_middle_writes(struct req *r)
{
    struct server *srv = r->conn->srv;
    uint64_t mlo, mhi, flo, fhi;
    zero_plan(r, &mlo, &mhi, &flo, &fhi);
    if (!r->zmode)
        flo = fhi = mhi;
    if (mlo < flo)
        submit_pieces(r, IOENG_OP_WRITE, srv->zero_buf, mlo, flo - mlo, ZERO_CHUNK, true, 0);
    if (fhi < mhi)
        submit_pieces(r, IOENG_OP_WRITE, srv->zero_buf, fhi, mhi - fhi, ZERO_CHUNK, true, 0);
    if (!r->zmode && mlo < mhi)
        srv->stats.zero_writes++;
}

/* After the fallocate (or without one): the writes of WRITE_ZEROES, edges first. */
static void zero_rest(struct req *r)
{
    r->phase = PH_IO;
    if (r->type == NBD_CMD_TRIM)
        return;
    if (r->rmw)
        submit_edge_reads(r); /* then submit_rmw_writes() */
    else
        zero_middle_writes(r);
}

/* Starts a TRIM or WRITE_ZEROES (the caller holds a reference in `pending`); a FAST_ZERO
 * that would not be fast submits nothing and fails with EOPNOTSUPP (NBD_ENOTSUP). */
static void zero_start(struct req *r)
{
    struct server *srv = r->conn->srv;
    struct nbd_export *ex = &srv->ex;
    bool hole = r->type == NBD_CMD_TRIM || !(r->flags & NBD_CMD_FLAG_NO_HOLE);
    bool have = hole ? ex->can_punch : ex->can_zero_range;
    uint64_t mlo, mhi, flo, fhi;
    zero_plan(r, &mlo, &mhi, &flo, &fhi);
    /* NO_HOLE: the kernel would write the zeros itself. A punch: it needs the command too,
     * and refuses only after dropping the range's page cache (see below). */
    if (have && ex->blkdev && (r->flags & NBD_CMD_FLAG_FAST_ZERO) && flo < fhi &&
        !blk_zeroes_fast(ex))
        have = false;
    if (!have && (r->flags & NBD_CMD_FLAG_FAST_ZERO) && flo < fhi) {
        srv->stats.fast_zero_refused++;
        atomic_store(&r->ioerr, -EOPNOTSUPP); /* replied as NBD_ENOTSUP */
        return;
    }
    r->zmode = have ? (hole ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE
                    : 0;
    if (!r->zmode || flo == fhi) {
        zero_rest(r);
        return;
    }
    if (hole && ex->blkdev && ex->fd_direct < 0 && (r->flags & NBD_CMD_FLAG_FAST_ZERO)) {
        /* A block device's punch drops the range's page cache, dirty pages too, before it
         * asks the device, which may still refuse (one that advertises the command and
         * fails it): ENOTSUP would then leave older data where an acknowledged write was.
         * Written back first, on this thread (a rare request; its range only). */
        if (sync_file_range(ex->fd_buf, (off64_t)flo, (off64_t)(fhi - flo),
                            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
            int64_t zero = 0;
            atomic_compare_exchange_strong(&r->ioerr, &zero, (int64_t)-errno);
            return;
        }
    }
    r->phase = PH_FALLOC;
    ioeng_req_t q = ioeng_req_fallocate(-1, r->zmode, flo, fhi - flo);
    target_export(srv, &q, false);
    atomic_fetch_add(&r->pending, 1);
    int rc = engine_submit(srv, &q, r);
    if (rc != 0) {
        atomic_fetch_sub(&r->pending, 1);
        int64_t zero = 0;
        atomic_compare_exchange_strong(&r->ioerr, &zero, (int64_t)rc);
    }
    if (hole)
        srv->stats.punches++;
    else
        srv->stats.zero_ranges++;
}

/* The fallocate of a TRIM / WRITE_ZEROES is back with `e`: goes on with the rest, or
 * finishes the request. Returns true when it submitted more (the request goes on). */
static bool zero_after_falloc(struct req *r, int64_t *e)
{
    struct server *srv = r->conn->srv;
    if (*e == -EOPNOTSUPP) {
        bool hole = (r->zmode & FALLOC_FL_PUNCH_HOLE) != 0;
        bool *have = hole ? &srv->ex.can_punch : &srv->ex.can_zero_range;
        if (*have)
            logmsg("fallocate %s: not supported here; %s", hole ? "PUNCH_HOLE" : "ZERO_RANGE",
                   r->type == NBD_CMD_TRIM ? "TRIM does nothing" : "zeros are written");
        *have = false;
        r->zmode = 0;
        if (r->flags & NBD_CMD_FLAG_FAST_ZERO) {
            srv->stats.fast_zero_refused++;
            return false; /* ENOTSUP, nothing changed */
        }
        *e = 0;
        atomic_store(&r->ioerr, 0);
    }
    if (*e != 0 || r->type == NBD_CMD_TRIM)
        return false;
    atomic_store(&r->pending, 1);
    zero_rest(r);
    req_unref(r);
    return true;
}

/* Phase 2 of an RMW: merge the edges and write. */
static void submit_rmw_writes(struct req *r, uint32_t wflags)
{
    struct server *srv = r->conn->srv;
    uint64_t a = srv->ex.dio_align, end = r->off + r->len, h, t;
    edge_blocks(r, a, &h, &t);
    r->phase = PH_IO;
    r->rd_piece = 0;
    uint8_t *b = r->buf;
    if (r->type == NBD_CMD_WRITE) {
        /* Around the payload (at b + boff): the edges' bytes outside the request. */
        if (h != UINT64_MAX)
            memcpy(b, r->ebuf, r->boff);
        if (t != UINT64_MAX)
            memcpy(b + (end - r->lo), edge_at(r, a, t) + (end - t), r->hi - end);
        submit_pieces(r, IOENG_OP_WRITE, b, r->lo, r->hi - r->lo, r->hi - r->lo, false, wflags);
        return;
    }
    /* WRITE_ZEROES: zero the request's part of each edge block and write them; then the
     * middle. */
    if (h != UINT64_MAX) {
        uint64_t stop = end < h + a ? end : h + a;
        memset(r->ebuf + (r->off - h), 0, stop - r->off);
        submit_pieces(r, IOENG_OP_WRITE, r->ebuf, h, a, a, false, wflags);
    }
    if (t != UINT64_MAX && t != h) {
        memset(r->ebuf + a, 0, end - t);
        submit_pieces(r, IOENG_OP_WRITE, r->ebuf + a, t, a, a, false, wflags);
    }
    zero_middle_writes(r);
}

static uint32_t write_flags(struct req *r)
{
    bool fua = (r->flags & NBD_CMD_FLAG_FUA) != 0;
    if (!fua || r->type != NBD_CMD_WRITE) {
        if (fua && (r->type == NBD_CMD_TRIM || r->type == NBD_CMD_WRITE_ZEROES))
            r->need_sync = true; /* see "Zeroing" */
        return 0;
    }
    if (r->conn->srv->dsync_ok)
        return IOENG_REQ_DSYNC;
    r->need_sync = true;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Block status                                                             */
/* ------------------------------------------------------------------------ */
/* base:allocation from the file's holes: SEEK_DATA / SEEK_HOLE on the loop thread (two
 * lseeks per extent, no data IO; at most BS_MAX_EXTENTS descriptors, the protocol lets the
 * client ask again for the rest). A hole is NBD_STATE_HOLE | NBD_STATE_ZERO; data is 0
 * (allocated, content unknown). Where the file system or a block device cannot seek
 * holes, the whole range is reported as data, which the protocol allows. Fills r->buf
 * with the BLOCK_STATUS payload; returns 0 or -errno. */
static int block_status(struct req *r)
{
    const struct nbd_export *ex = &r->conn->srv->ex;
    if (!req_reserve(r, 4 + 8 * (size_t)BS_MAX_EXTENTS))
        return -ENOMEM;
    uint8_t *p = r->buf;
    put32(p, NBD_META_ALLOC_ID);
    uint32_t n = 0, max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : BS_MAX_EXTENTS;
    uint64_t pos = r->off, end = r->off + r->len;
    while (pos < end && n < max) {
        uint64_t next = end;
        uint32_t st = 0;
        off_t d = lseek(ex->fd_buf, (off_t)pos, SEEK_DATA);
        if (d < 0 && errno == ENXIO) {
            st = NBD_STATE_HOLE | NBD_STATE_ZERO; /* a hole up to the end of the file */
        } else if (d < 0) {
            st = 0; /* cannot tell: data */
        } else if ((uint64_t)d > pos) {
            st = NBD_STATE_HOLE | NBD_STATE_ZERO;
            if ((uint64_t)d < end)
                next = (uint64_t)d;
        } else {
            off_t h = lseek(ex->fd_buf, (off_t)pos, SEEK_HOLE);
            if (h >= 0 && (uint64_t)h > pos && (uint64_t)h < end)
                next = (uint64_t)h;
        }
        put32(p + 4 + 8 * n, (uint32_t)(next - pos));
        put32(p + 8 + 8 * n, st);
        n++;
        pos = next;
    }
    r->bs_len = 4 + 8 * n;
    r->conn->srv->stats.extents += n;
    return 0;
}

/* Submits a request whose turn it is (its write range is free). */
static void dispatch(struct req *r)
{
    struct server *srv = r->conn->srv;
    uint32_t wflags = write_flags(r);
    atomic_store(&r->pending, 1);
    r->rd_piece = 0;
    switch (r->type) {
    case NBD_CMD_READ:
        r->rd_piece = r->hi - r->lo;
        submit_pieces(r, IOENG_OP_READ, r->buf, r->lo, r->hi - r->lo, r->hi - r->lo, false, 0);
        break;
    case NBD_CMD_WRITE:
        if (r->rmw)
            submit_edge_reads(r);
        else
            submit_pieces(r, IOENG_OP_WRITE, r->buf, r->off, r->len, r->len, false, wflags);
        break;
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
        zero_start(r);
        break;
    case NBD_CMD_BLOCK_STATUS: {
        int rc = block_status(r);
        if (rc != 0)
            atomic_store(&r->ioerr, (int64_t)rc);
        break;
    }
    case NBD_CMD_CACHE:
        /* The buffered export: start readahead into the page cache (posix_fadvise returns
         * once the reads are queued). The direct export has no cache to fill, and a direct
         * read would fill nothing either (only a device cache, if any), so CACHE there is
         * a no-op that succeeds: the next READ goes to the device as it would anyway. */
        if (srv->ex.fd_direct < 0) {
            int rc = posix_fadvise(srv->ex.fd_buf, (off_t)r->off, (off_t)r->len,
                                   POSIX_FADV_WILLNEED);
            if (rc != 0)
                atomic_store(&r->ioerr, -(int64_t)rc);
        }
        break;
    case NBD_CMD_FLUSH: {
        ioeng_req_t q = { .op = IOENG_OP_FDATASYNC, .prio = IOENG_PRIO_NORMAL };
        target_export(srv, &q, true);
        atomic_fetch_add(&r->pending, 1);
        int rc = engine_submit(srv, &q, r);
        if (rc != 0) {
            atomic_fetch_sub(&r->pending, 1);
            atomic_store(&r->ioerr, (int64_t)rc);
        }
        break;
    }
    }
    if (r->flags & NBD_CMD_FLAG_FUA && r->type == NBD_CMD_WRITE) {
        if (r->need_sync)
            srv->stats.fua_fallback++;
        else
            srv->stats.fua_dsync++;
    }
    req_unref(r);
}

/* Starts a checked request (req_layout done): writes on the direct descriptor wait
 * their turn in the write list first. */
void start_io(struct req *r)
{
    struct server *srv = r->conn->srv;
    bool write = r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES ||
                 r->type == NBD_CMD_TRIM;
    if (write && srv->ex.fd_direct >= 0 && !wl_acquire(r))
        return; /* wl_release() dispatches it */
    dispatch(r);
}

/* Every piece of a request is back (called on the loop thread). */
static void io_finished(struct req *r)
{
    int64_t e = atomic_load(&r->ioerr);
    if (r->phase == PH_FALLOC && zero_after_falloc(r, &e))
        return;
    if (e == 0 && r->phase == PH_EDGE_READ) {
        /* Edges read: merge and write (the FUA flag, or need_sync, still applies). */
        atomic_store(&r->pending, 1);
        submit_rmw_writes(r, r->need_sync ? 0 : write_flags(r));
        req_unref(r);
        return;
    }
    r->phase = PH_IO;
    if (e == 0 && r->need_sync) {
        r->need_sync = false;
        submit_sync(r);
        return;
    }
    if (r->in_wl)
        wl_release(r);
    if (e == 0 && (r->type == NBD_CMD_WRITE))
        r->conn->srv->stats.bytes_written += r->len;
    if (r->conn->dead) {
        req_put(r);
        return;
    }
    r->err = e ? errno_to_nbd((int)-e) : 0;
    reply(r);
}

/* Finishes every request on the completion stack, oldest first; returns how many. */
static unsigned drain_stack(struct server *srv)
{
    unsigned n = 0;
    struct req *list = atomic_exchange_explicit(&srv->done_head, NULL, memory_order_acquire);
    struct req *rev = NULL; /* oldest first */
    while (list) {
        struct req *nx = list->next;
        list->next = rev;
        rev = list;
        list = nx;
    }
    while (rev) {
        struct req *nx = rev->next;
        rev->next = NULL;
        io_finished(rev);
        rev = nx;
        n++;
    }
    return n;
}

/* THREADS: the completion eventfd fired. */
void drain_completions(struct server *srv)
{
    uint64_t v;
    ssize_t n = read(srv->evfd, &v, sizeof(v)); /* reset before draining: no lost wake-up */
    (void)n;
    drain_stack(srv);
}

/* POLLED: one pass of the engine (what was submitted goes to the kernel, finished IO
 * runs its callbacks here), then the finished requests; again while finishing them
 * submitted more (a read-modify-write's second step, a FUA's FDATASYNC, a write that
 * waited), so that nothing submitted here waits for the next epoll round. Returns
 * whether any request finished (replies to flush). */
bool pump_engine(struct server *srv)
{
    bool any = false;
    for (;;) {
        int rc = ioeng_poll(srv->eng, 0, 0);
        if (rc < 0 && rc != -EINTR)
            die("ioeng_poll: %s", strerror(-rc));
        uint64_t submitted = srv->submitted;
        if (drain_stack(srv) > 0)
            any = true;
        if (srv->submitted == submitted)
            return any;
    }
}

/* The DSYNC probe's result, written by its callback (on the engine's completer thread,
 * or inside the poll of probe_dsync itself). */
struct probe {
    atomic_int done;
    int64_t res;
};

static void probe_cb(void *ctx, int64_t res)
{
    struct probe *probe = ctx;
    probe->res = res;
    atomic_store(&probe->done, 1);
}

/* Whether the engine takes IOENG_REQ_DSYNC: one 4 KiB DSYNC write to a memfd. Sets
 * srv->dsync_ok. */
void probe_dsync(struct server *srv)
{
    struct probe probe = { 0 };
    int fd = memfd_create("ioeng_nbd_dsync_probe", MFD_CLOEXEC);
    if (fd < 0) {
        logmsg("memfd_create: %s; FUA uses WRITE + FDATASYNC", strerror(errno));
        return;
    }
    ioeng_req_t q = { .op = IOENG_OP_WRITE, .prio = IOENG_PRIO_NORMAL, .fd = fd,
                      .flags = IOENG_REQ_DSYNC, .buf = srv->zero_buf, .len = 4096 };
    int rc = ioeng_submit(srv->eng, &q, probe_cb, &probe);
    if (rc == 0) {
        for (int i = 0; i < 10000 && !atomic_load(&probe.done); i++) {
            if (srv->opt.polled) {
                int prc = ioeng_poll(srv->eng, 1, 1000000); /* runs the callback here */
                if (prc < 0 && prc != -EINTR)
                    die("ioeng_poll (DSYNC probe): %s", strerror(-prc));
            } else
                nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
        }
        if (!atomic_load(&probe.done))
            die("DSYNC probe write did not complete in 10 s");
        srv->dsync_ok = probe.res == 4096;
        if (!srv->dsync_ok)
            logmsg("DSYNC probe write gave %" PRId64 "; FUA uses WRITE + FDATASYNC", probe.res);
    } else {
        logmsg("engine refuses IOENG_REQ_DSYNC (%s); FUA uses WRITE + FDATASYNC",
               strerror(-rc));
    }
    close(fd);
}

/* Checks a request header; returns 0 or the NBD error to reply. */
uint32_t check_request(const struct req *r)
{
    const struct server *srv = r->conn->srv;
    /* FUA is valid on every command once NBD_FLAG_SEND_FUA is negotiated (always here):
     * the server must accept it, even by ignoring it (READ, CACHE, BLOCK_STATUS). */
    uint16_t allowed = NBD_CMD_FLAG_FUA;
    switch (r->type) {
    case NBD_CMD_READ:
        if (r->conn->structured)
            allowed |= NBD_CMD_FLAG_DF;
        break;
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_CACHE: break;
    case NBD_CMD_WRITE_ZEROES: allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO; break;
    case NBD_CMD_BLOCK_STATUS:
        if (!r->conn->meta_alloc || r->len == 0)
            return NBD_EINVAL; /* no context selected; a length of 0 */
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    default: return NBD_EINVAL; /* unknown */
    }
    if (r->flags & ~allowed)
        return NBD_EINVAL;
    if (r->type == NBD_CMD_FLUSH)
        return (r->off || r->len) ? NBD_EINVAL : 0;
    if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) && r->len > MAX_PAYLOAD)
        return NBD_EINVAL;
    bool reads = r->type == NBD_CMD_READ || r->type == NBD_CMD_CACHE ||
                 r->type == NBD_CMD_BLOCK_STATUS;
    if (!reads && srv->opt.read_only)
        return NBD_EPERM; /* WRITE, TRIM, WRITE_ZEROES: the protocol asks for EPERM, even
                             where TRIM and WRITE_ZEROES are not advertised */
    if (r->off > srv->ex.size || r->len > srv->ex.size - r->off)
        return reads ? NBD_EINVAL : NBD_ENOSPC;
    return 0;
}

void free_pool(struct server *srv)
{
    while (srv->free_reqs) {
        struct req *r = srv->free_reqs;
        srv->free_reqs = r->next;
        free(r->buf);
        free(r);
    }
    srv->nfree_reqs = 0;
    srv->pool_bytes = 0;
}

/* The buffer bytes the request in header `hdr` (28 bytes, not yet consumed) will hold:
 * an upper bound of req_layout's reservation, so the per-connection and server limits
 * can be checked before the request is taken (0 for requests without a buffer, and for
 * those refused without one). */
size_t req_need(const struct server *srv, const uint8_t *hdr)
{
    uint16_t type = get16(hdr + 6);
    uint32_t len = get32(hdr + 24);
    if (type == NBD_CMD_BLOCK_STATUS)
        return 4 + 8 * (size_t)BS_MAX_EXTENTS + BUF_ALIGN;
    if (get32(hdr) != NBD_REQUEST_MAGIC || len > MAX_PAYLOAD || len == 0)
        return 0;
    if (type == NBD_CMD_READ || type == NBD_CMD_WRITE)
        return (size_t)len + 2 * (size_t)srv->ex.dio_align + 2 * BUF_ALIGN;
    if (type == NBD_CMD_WRITE_ZEROES)
        return 2 * (size_t)srv->ex.dio_align + BUF_ALIGN;
    return 0;
}
