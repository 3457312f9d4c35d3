/*
 * ioeng_nbd.c - an NBD server that exports one file or block device through libioeng.
 *
 *   ioeng_nbd [--backend aio|uring|auto] [--depth N] [--port N] [--bind ADDR]
 *             [--read-only] [--name NAME] [--no-direct] FILE
 *
 * Protocol: fixed newstyle handshake (NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_EXPORT_NAME,
 * NBD_OPT_ABORT, NBD_OPT_LIST; anything else gets NBD_REP_ERR_UNSUP, so clients fall
 * back to simple replies), then READ, WRITE (FUA), FLUSH, WRITE_ZEROES (NO_HOLE, FUA)
 * and DISC with simple replies. TRIM is not advertised and is refused with EINVAL.
 *
 * Threads: one event-loop thread (this file: epoll over the listening socket, a
 * signalfd, the completion eventfd and every client socket, all non-blocking) plus the
 * engine's submitter and completer (IOENG_MODE_THREADS). Requests are read and checked
 * on the loop thread and submitted with ioeng_submit(); the completion callback, on the
 * engine's completer thread, only pushes the request onto a lock-free stack and, when
 * the stack was empty, writes the eventfd. The loop drains the stack, queues the reply
 * (replies go out in completion order, matched by the client's cookie) and writes them
 * with one sendmsg per connection per loop round. Callbacks therefore never block on a
 * slow client.
 *
 * Ownership of a request (struct req): the loop thread owns it, except between a
 * successful ioeng_submit() and the callback that brings `pending` to zero; in that
 * window the engine owns its buffer and the callbacks write only `ioerr`/`pending`
 * (atomics). The push onto the completion stack (release) and the loop's exchange
 * (acquire) hand it back.
 *
 * The export is opened twice when the file system allows: with O_DIRECT for requests
 * whose offset and length are multiples of the direct-IO alignment (statx
 * STATX_DIOALIGN, else 4096; buffers are 4096-aligned), and buffered for the rest.
 * The kernel keeps the two coherent (direct IO writes back and invalidates cached pages
 * of its range). FUA writes use IOENG_REQ_DSYNC when the engine accepts it (probed at
 * start on a memfd), otherwise WRITE then FDATASYNC before the reply. FLUSH is one
 * FDATASYNC (per inode, so it covers both descriptors and every connection: hence
 * NBD_FLAG_CAN_MULTI_CONN).
 *
 * Bad input: a request out of range, too long (> 32 MiB payload), with unknown flags or
 * of an unknown type gets an error reply (a WRITE's payload is read and dropped first,
 * so the stream stays in step); a bad magic number or a connection that ends in the
 * middle of a message closes that connection only. SIGINT/SIGTERM: stop accepting,
 * close connections still negotiating, answer requests read from then on with
 * NBD_ESHUTDOWN (the client must then disconnect), send every in-flight reply, close
 * each connection once it is idle (after at most 30 s regardless), close the engine,
 * print counters to stderr and exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "ioeng.h"
#include "ioeng_nbd_proto.h"

#define MAX_PAYLOAD     (32u << 20) /* largest READ/WRITE accepted (spec default) */
#define BUF_ALIGN       4096u
#define RBUF_SIZE       (256u << 10) /* per-connection receive buffer */
#define OPT_MAX         (64u << 10)  /* option data kept; longer options are skipped */
#define ZERO_CHUNK      (1u << 20)   /* WRITE_ZEROES is written in chunks of this */
#define CONN_MAX_REQS   512u         /* stop reading a connection at this many requests ... */
#define CONN_MAX_BYTES  (128ull << 20) /* ... or this many buffered bytes */
#define MAX_CONNS       256u
#define POOL_KEEP_CAP   (1u << 20)   /* request buffers up to this size are reused */
#define POOL_KEEP_N     2048u
#define MAX_IOV         64
#define SHUTDOWN_GRACE_S 30

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logmsg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ioeng_nbd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ioeng_nbd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ======================================================================== */
/* State                                                                    */
/* ======================================================================== */

static struct {
    const char *path;
    const char *name;
    const char *bind;
    ioeng_backend_t backend;
    unsigned depth;
    int port;
    bool read_only;
    bool no_direct;
    bool verbose;
    uint32_t idle_poll_us;
} opt = { .name = "", .bind = "127.0.0.1", .backend = IOENG_BACKEND_AUTO, .depth = 128,
          .port = 10809, .idle_poll_us = IOENG_POLL_NEVER };

static struct {
    int fd_buf;          /* buffered descriptor: every request may use it */
    int fd_direct;       /* O_DIRECT descriptor or -1 */
    uint32_t dio_align;  /* offset/length alignment for fd_direct */
    uint64_t size;
    uint16_t tflags;     /* transmission flags */
} ex = { .fd_buf = -1, .fd_direct = -1 };

static ioeng_t *eng;
static int epfd = -1, evfd = -1, sigfd = -1, lfd = -1;
static void *zero_buf;
static bool dsync_ok;     /* the engine accepts IOENG_REQ_DSYNC */
static bool stopping;
static struct timespec stop_at;

/* Counters printed at exit (loop thread only). */
static struct {
    uint64_t conns, cmds[NBD_CMD_COUNT + 1], errors, fua_dsync, fua_fallback;
    uint64_t bytes_read, bytes_written, malformed_closes;
} st;

struct conn;

/* One queued piece of output: a header plus optional payload. */
struct out {
    struct out *next;
    uint8_t *hdr;
    size_t hlen;
    const void *data;
    size_t dlen;
    struct req *owner;   /* released when sent; NULL: the item was malloc'ed, free it */
};

struct req {
    struct req *next;    /* free list, or the completion stack while pushed */
    struct conn *conn;
    uint8_t cookie[8];   /* opaque, echoed back */
    uint16_t type, flags;
    uint64_t off;
    uint32_t len;
    uint32_t err;        /* NBD error for the reply */
    void *buf;
    size_t cap;
    bool need_sync;      /* FUA without DSYNC: FDATASYNC after the write */
    atomic_uint pending; /* callbacks still due (+1 while the loop is still submitting) */
    _Atomic int64_t ioerr; /* first -errno seen by a callback */
    struct out out;
    uint8_t rhdr[NBD_REPLY_HDR_LEN];
};

enum cstate { ST_HS_FLAGS, ST_OPT_HDR, ST_OPT_DATA, ST_OPT_SKIP, ST_REQ_HDR, ST_PAYLOAD,
              ST_DISCARD };

struct conn {
    int fd;
    unsigned id;
    enum cstate st;
    bool no_zeroes, transmission, closing, dead, paused, in_work, in_grave;
    uint32_t events;     /* epoll interest now registered */
    uint8_t *rbuf;
    size_t rpos, rlen;
    uint32_t opt, optlen, optgot;
    uint8_t *optbuf;
    uint64_t skip_left;  /* ST_OPT_SKIP / ST_DISCARD */
    struct req *cur;     /* request whose payload is being received */
    size_t got;
    struct out *oq_head, *oq_tail;
    size_t oq_off;       /* bytes of oq_head already sent */
    unsigned nreq;       /* live requests (receiving, in the engine, or replying) */
    uint64_t nbytes;     /* their buffer bytes */
    struct conn *prev, *next;  /* all connections */
    struct conn *work_next;    /* work list */
    struct conn *grave_next;   /* graveyard */
};

static struct conn *conns;          /* all live connections */
static unsigned nconns;
static struct conn *work_head;      /* connections to flush / resume / check this round */
static struct conn *graveyard;      /* dead, no requests: freed at the end of the round */
static struct req *free_reqs;
static unsigned nfree_reqs;
static _Atomic(struct req *) done_head; /* completion stack (engine thread -> loop) */

static char tag_listen, tag_signal, tag_event; /* epoll data for the non-client fds */

/* ======================================================================== */
/* Requests and buffers                                                     */
/* ======================================================================== */

static struct req *req_get(struct conn *c)
{
    struct req *r = free_reqs;
    if (r) {
        free_reqs = r->next;
        nfree_reqs--;
    } else {
        r = calloc(1, sizeof(*r));
        if (!r)
            die("out of memory");
    }
    r->next = NULL;
    r->conn = c;
    r->err = 0;
    r->need_sync = false;
    atomic_store(&r->ioerr, 0);
    atomic_store(&r->pending, 0);
    c->nreq++;
    c->nbytes += r->cap;
    return r;
}

/* Makes r->buf hold at least len bytes (4096-aligned). */
static bool req_reserve(struct req *r, size_t len)
{
    if (r->cap >= len)
        return true;
    size_t cap = (len + BUF_ALIGN - 1) & ~(size_t)(BUF_ALIGN - 1);
    void *p;
    if (posix_memalign(&p, BUF_ALIGN, cap) != 0)
        return false;
    if (r->conn)
        r->conn->nbytes += cap - r->cap;
    free(r->buf);
    r->buf = p;
    r->cap = cap;
    return true;
}

static void conn_touch(struct conn *c);

static void req_put(struct req *r)
{
    struct conn *c = r->conn;
    c->nreq--;
    c->nbytes -= r->cap;
    r->conn = NULL;
    if (r->cap > POOL_KEEP_CAP || nfree_reqs >= POOL_KEEP_N) {
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
    }
    if (nfree_reqs >= POOL_KEEP_N) {
        free(r);
    } else {
        r->next = free_reqs;
        free_reqs = r;
        nfree_reqs++;
    }
    conn_touch(c); /* may resume reading, or finish closing */
}

/* ======================================================================== */
/* Connections: output                                                      */
/* ======================================================================== */

static void conn_update_events(struct conn *c)
{
    if (c->dead)
        return;
    uint32_t ev = 0;
    if (!c->closing && !c->paused)
        ev |= EPOLLIN;
    if (c->oq_head)
        ev |= EPOLLOUT;
    if (ev == c->events)
        return;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) != 0)
        die("epoll_ctl MOD: %s", strerror(errno));
    c->events = ev;
}

static void conn_touch(struct conn *c)
{
    if (c->in_work)
        return;
    c->in_work = true;
    c->work_next = work_head;
    work_head = c;
}

static void out_release(struct out *o)
{
    if (o->owner)
        req_put(o->owner);
    else
        free(o);
}

/* Drops everything queued and closes the socket; the struct lives on until its last
 * request came back from the engine. */
static void conn_fail(struct conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    while (c->oq_head) {
        struct out *o = c->oq_head;
        c->oq_head = o->next;
        out_release(o);
    }
    c->oq_tail = NULL;
    if (c->cur) {
        struct req *r = c->cur;
        c->cur = NULL;
        req_put(r);
    }
    free(c->optbuf);
    c->optbuf = NULL;
    conn_touch(c);
}

static void conn_enqueue(struct conn *c, struct out *o)
{
    if (c->dead) {
        out_release(o);
        return;
    }
    o->next = NULL;
    if (c->oq_tail)
        c->oq_tail->next = o;
    else
        c->oq_head = o;
    c->oq_tail = o;
    conn_touch(c);
}

/* Queues handshake bytes (copied). */
static void conn_send_copy(struct conn *c, const void *hdr, size_t hlen, const void *data,
                           size_t dlen)
{
    struct out *o = malloc(sizeof(*o) + hlen + dlen);
    if (!o)
        die("out of memory");
    uint8_t *p = (uint8_t *)(o + 1);
    memcpy(p, hdr, hlen);
    if (dlen)
        memcpy(p + hlen, data, dlen);
    *o = (struct out){ .hdr = p, .hlen = hlen + dlen };
    conn_enqueue(c, o);
}

/* Sends what the socket takes now; the rest waits for EPOLLOUT. */
static void conn_flush(struct conn *c)
{
    while (!c->dead && c->oq_head) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        size_t skip = c->oq_off;
        for (struct out *o = c->oq_head; o && n < MAX_IOV - 1; o = o->next) {
            if (skip < o->hlen) {
                iov[n++] = (struct iovec){ o->hdr + skip, o->hlen - skip };
                skip = 0;
            } else {
                skip -= o->hlen;
            }
            if (o->dlen) {
                iov[n++] = (struct iovec){ (uint8_t *)o->data + skip, o->dlen - skip };
                skip = 0;
            }
        }
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_fail(c); /* peer gone: its replies cannot be delivered */
            return;
        }
        size_t done = (size_t)w + c->oq_off;
        while (c->oq_head && done >= c->oq_head->hlen + c->oq_head->dlen) {
            struct out *o = c->oq_head;
            done -= o->hlen + o->dlen;
            c->oq_head = o->next;
            if (!c->oq_head)
                c->oq_tail = NULL;
            out_release(o);
        }
        c->oq_off = done;
    }
    conn_update_events(c);
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
    case EINVAL: return NBD_EINVAL;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EIO;
    }
}

static void reply(struct req *r)
{
    struct conn *c = r->conn;
    if (r->err) {
        st.errors++;
        if (opt.verbose)
            logmsg("conn %u: error %u for type %u flags 0x%x offset %" PRIu64 " length %u",
                   c->id, r->err, r->type, r->flags, r->off, r->len);
    }
    put32(r->rhdr, NBD_SIMPLE_REPLY_MAGIC);
    put32(r->rhdr + 4, r->err);
    memcpy(r->rhdr + 8, r->cookie, 8);
    bool data = r->type == NBD_CMD_READ && r->err == 0;
    r->out = (struct out){ .hdr = r->rhdr, .hlen = NBD_REPLY_HDR_LEN,
                           .data = data ? r->buf : NULL, .dlen = data ? r->len : 0,
                           .owner = r };
    if (data)
        st.bytes_read += r->len;
    conn_enqueue(c, &r->out);
}

static void reply_err(struct req *r, uint32_t err)
{
    r->err = err;
    reply(r);
}

/* ======================================================================== */
/* Engine glue                                                              */
/* ======================================================================== */

static void push_done(struct req *r)
{
    struct req *old = atomic_load_explicit(&done_head, memory_order_relaxed);
    do {
        r->next = old;
    } while (!atomic_compare_exchange_weak_explicit(&done_head, &old, r, memory_order_release,
                                                    memory_order_relaxed));
    if (!old) {
        /* The stack was empty, so the loop may be asleep: wake it. A write to an
         * eventfd only fails on counter overflow, which cannot happen with 1s. */
        uint64_t one = 1;
        ssize_t w = write(evfd, &one, sizeof(one));
        (void)w;
    }
}

/* Completion callback: runs on the engine's completer thread. */
static void on_io_done(void *ctx, int64_t res)
{
    struct req *r = ctx;
    if (res >= 0 && r->type == NBD_CMD_READ && (uint64_t)res != r->len)
        res = -EIO; /* short read: the file shrank under us */
    if (res < 0) {
        int64_t zero = 0;
        atomic_compare_exchange_strong(&r->ioerr, &zero, res);
    }
    if (atomic_fetch_sub_explicit(&r->pending, 1, memory_order_acq_rel) == 1)
        push_done(r);
}

static void io_finished(struct req *r);

/* Drops the loop's own reference; completes the request when nothing is pending. */
static void req_unref(struct req *r)
{
    if (atomic_fetch_sub_explicit(&r->pending, 1, memory_order_acq_rel) == 1)
        io_finished(r);
}

static bool aligned_for_direct(uint64_t off, uint64_t len)
{
    return ex.fd_direct >= 0 && off % ex.dio_align == 0 && len % ex.dio_align == 0;
}

/* Submits op over [off, off+len) in pieces of at most `chunk` bytes from `buf` (which,
 * when `same_buf`, is reused for every piece). The caller holds one reference in
 * `pending`; every accepted piece adds one. */
static void submit_pieces(struct req *r, uint32_t op, void *buf, uint64_t off, uint64_t len,
                          uint64_t chunk, bool same_buf, uint32_t flags)
{
    int fd = aligned_for_direct(off, len) ? ex.fd_direct : ex.fd_buf;
    for (uint64_t done = 0; done < len;) {
        uint64_t n = len - done < chunk ? len - done : chunk;
        ioeng_req_t q = { .op = op, .prio = IOENG_PRIO_NORMAL, .fd = fd, .flags = flags,
                          .buf = (uint8_t *)buf + (same_buf ? 0 : done), .len = n,
                          .offset = off + done };
        atomic_fetch_add(&r->pending, 1);
        int rc = ioeng_submit(eng, &q, on_io_done, r);
        if (rc == -EINVAL && (flags & IOENG_REQ_DSYNC)) {
            /* The engine refuses RWF_DSYNC (an interface without flags): fall back to
             * WRITE + FDATASYNC from now on. */
            logmsg("engine refused IOENG_REQ_DSYNC at submit; FUA now uses WRITE + FDATASYNC");
            dsync_ok = false;
            flags &= ~(uint32_t)IOENG_REQ_DSYNC;
            r->need_sync = true;
            q.flags = flags;
            rc = ioeng_submit(eng, &q, on_io_done, r);
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
    atomic_store(&r->pending, 1);
    ioeng_req_t q = { .op = IOENG_OP_FDATASYNC, .prio = IOENG_PRIO_NORMAL, .fd = ex.fd_buf };
    atomic_fetch_add(&r->pending, 1);
    int rc = ioeng_submit(eng, &q, on_io_done, r);
    if (rc != 0) {
        atomic_fetch_sub(&r->pending, 1);
        atomic_store(&r->ioerr, (int64_t)rc);
    }
    req_unref(r);
}

/* Starts a checked request. */
static void start_io(struct req *r)
{
    bool fua = (r->flags & NBD_CMD_FLAG_FUA) != 0;
    uint32_t wflags = 0;
    if (fua && r->type != NBD_CMD_READ && r->type != NBD_CMD_FLUSH) {
        if (dsync_ok) {
            wflags = IOENG_REQ_DSYNC;
        } else {
            r->need_sync = true;
        }
    }
    atomic_store(&r->pending, 1);
    switch (r->type) {
    case NBD_CMD_READ:
        submit_pieces(r, IOENG_OP_READ, r->buf, r->off, r->len, r->len, false, 0);
        break;
    case NBD_CMD_WRITE:
        submit_pieces(r, IOENG_OP_WRITE, r->buf, r->off, r->len, r->len, false, wflags);
        break;
    case NBD_CMD_WRITE_ZEROES:
        submit_pieces(r, IOENG_OP_WRITE, zero_buf, r->off, r->len, ZERO_CHUNK, true, wflags);
        break;
    case NBD_CMD_FLUSH: {
        ioeng_req_t q = { .op = IOENG_OP_FDATASYNC, .prio = IOENG_PRIO_NORMAL, .fd = ex.fd_buf };
        atomic_fetch_add(&r->pending, 1);
        int rc = ioeng_submit(eng, &q, on_io_done, r);
        if (rc != 0) {
            atomic_fetch_sub(&r->pending, 1);
            atomic_store(&r->ioerr, (int64_t)rc);
        }
        break;
    }
    }
    if (fua && (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES)) {
        if (r->need_sync)
            st.fua_fallback++;
        else
            st.fua_dsync++;
    }
    req_unref(r);
}

/* Every piece of a request is back (called on the loop thread). */
static void io_finished(struct req *r)
{
    int64_t e = atomic_load(&r->ioerr);
    if (e == 0 && r->need_sync) {
        r->need_sync = false;
        submit_sync(r);
        return;
    }
    if (e == 0 && (r->type == NBD_CMD_WRITE))
        st.bytes_written += r->len;
    if (r->conn->dead) {
        req_put(r);
        return;
    }
    r->err = e ? errno_to_nbd((int)-e) : 0;
    reply(r);
}

static void drain_completions(void)
{
    uint64_t v;
    ssize_t n = read(evfd, &v, sizeof(v)); /* reset before draining: no lost wake-up */
    (void)n;
    struct req *list = atomic_exchange_explicit(&done_head, NULL, memory_order_acquire);
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
    }
}

/* Whether the engine takes IOENG_REQ_DSYNC: one 4 KiB DSYNC write to a memfd. */
static struct {
    atomic_int done;
    int64_t res;
} probe;

static void probe_cb(void *ctx, int64_t res)
{
    (void)ctx;
    probe.res = res;
    atomic_store(&probe.done, 1);
}

static void probe_dsync(void)
{
    int fd = memfd_create("ioeng_nbd_dsync_probe", MFD_CLOEXEC);
    if (fd < 0) {
        logmsg("memfd_create: %s; FUA uses WRITE + FDATASYNC", strerror(errno));
        return;
    }
    ioeng_req_t q = { .op = IOENG_OP_WRITE, .prio = IOENG_PRIO_NORMAL, .fd = fd,
                      .flags = IOENG_REQ_DSYNC, .buf = zero_buf, .len = 4096 };
    int rc = ioeng_submit(eng, &q, probe_cb, NULL);
    if (rc == 0) {
        for (int i = 0; i < 10000 && !atomic_load(&probe.done); i++)
            nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
        if (!atomic_load(&probe.done))
            die("DSYNC probe write did not complete in 10 s");
        dsync_ok = probe.res == 4096;
        if (!dsync_ok)
            logmsg("DSYNC probe write gave %" PRId64 "; FUA uses WRITE + FDATASYNC", probe.res);
    } else {
        logmsg("engine refuses IOENG_REQ_DSYNC (%s); FUA uses WRITE + FDATASYNC",
               strerror(-rc));
    }
    close(fd);
}

/* ======================================================================== */
/* Handshake                                                                */
/* ======================================================================== */

static void opt_reply(struct conn *c, uint32_t optv, uint32_t type, const void *data,
                      uint32_t len)
{
    uint8_t h[20];
    put64(h, NBD_REP_MAGIC);
    put32(h + 8, optv);
    put32(h + 12, type);
    put32(h + 16, len);
    conn_send_copy(c, h, sizeof(h), data, len);
}

static void enter_transmission(struct conn *c)
{
    c->transmission = true;
    c->st = ST_REQ_HDR;
    free(c->optbuf);
    c->optbuf = NULL;
}

static bool name_matches(const uint8_t *name, uint32_t len)
{
    return len == strlen(opt.name) && memcmp(name, opt.name, len) == 0;
}

/* NBD_OPT_INFO / NBD_OPT_GO. */
static void opt_info_go(struct conn *c, uint32_t optv, const uint8_t *d, uint32_t len)
{
    if (len < 6) {
        opt_reply(c, optv, NBD_REP_ERR_INVALID, NULL, 0);
        return;
    }
    uint32_t nlen = get32(d);
    if (nlen > len - 6) {
        opt_reply(c, optv, NBD_REP_ERR_INVALID, NULL, 0);
        return;
    }
    uint16_t ninfo = get16(d + 4 + nlen);
    if ((uint64_t)len != 6ull + nlen + 2ull * ninfo) {
        opt_reply(c, optv, NBD_REP_ERR_INVALID, NULL, 0);
        return;
    }
    if (!name_matches(d + 4, nlen)) {
        static const char msg[] = "unknown export name";
        opt_reply(c, optv, NBD_REP_ERR_UNKNOWN, msg, sizeof(msg) - 1);
        return;
    }
    bool want_name = false;
    for (uint16_t i = 0; i < ninfo; i++)
        if (get16(d + 6 + nlen + 2u * i) == NBD_INFO_NAME)
            want_name = true;
    uint8_t b[14];
    put16(b, NBD_INFO_EXPORT);
    put64(b + 2, ex.size);
    put16(b + 10, ex.tflags);
    opt_reply(c, optv, NBD_REP_INFO, b, 12);
    /* Our constraints are the defaults; saying so helps clients pick request sizes. */
    put16(b, NBD_INFO_BLOCK_SIZE);
    put32(b + 2, 1);
    put32(b + 6, 4096);
    put32(b + 10, MAX_PAYLOAD);
    opt_reply(c, optv, NBD_REP_INFO, b, 14);
    if (want_name) {
        size_t n = strlen(opt.name);
        uint8_t *nb = malloc(2 + n);
        if (!nb)
            die("out of memory");
        put16(nb, NBD_INFO_NAME);
        memcpy(nb + 2, opt.name, n);
        opt_reply(c, optv, NBD_REP_INFO, nb, (uint32_t)(2 + n));
        free(nb);
    }
    opt_reply(c, optv, NBD_REP_ACK, NULL, 0);
    if (optv == NBD_OPT_GO)
        enter_transmission(c);
}

static void handle_option(struct conn *c, uint32_t optv, const uint8_t *d, uint32_t len)
{
    switch (optv) {
    case NBD_OPT_EXPORT_NAME: {
        if (!name_matches(d, len)) {
            logmsg("conn %u: NBD_OPT_EXPORT_NAME for an unknown export; closing", c->id);
            conn_fail(c); /* the spec's only way to refuse EXPORT_NAME */
            return;
        }
        uint8_t b[10 + 124] = { 0 };
        put64(b, ex.size);
        put16(b + 8, ex.tflags);
        conn_send_copy(c, b, c->no_zeroes ? 10 : sizeof(b), NULL, 0);
        enter_transmission(c);
        return;
    }
    case NBD_OPT_ABORT:
        opt_reply(c, optv, NBD_REP_ACK, NULL, 0);
        c->closing = true; /* close once the ACK is out */
        conn_update_events(c);
        return;
    case NBD_OPT_LIST: {
        if (len != 0) {
            opt_reply(c, optv, NBD_REP_ERR_INVALID, NULL, 0);
            return;
        }
        size_t n = strlen(opt.name);
        uint8_t *b = malloc(4 + n);
        if (!b)
            die("out of memory");
        put32(b, (uint32_t)n);
        memcpy(b + 4, opt.name, n);
        opt_reply(c, optv, NBD_REP_SERVER, b, (uint32_t)(4 + n));
        free(b);
        opt_reply(c, optv, NBD_REP_ACK, NULL, 0);
        return;
    }
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        opt_info_go(c, optv, d, len);
        return;
    default:
        /* STARTTLS, STRUCTURED_REPLY, meta contexts, extended headers, ...: not here.
         * Clients then use simple replies. */
        opt_reply(c, optv, NBD_REP_ERR_UNSUP, NULL, 0);
        return;
    }
}

/* ======================================================================== */
/* Transmission: request parsing                                            */
/* ======================================================================== */

/* Checks a request header; returns 0 or the NBD error to reply. */
static uint32_t check_request(const struct req *r)
{
    uint16_t allowed;
    switch (r->type) {
    case NBD_CMD_READ: allowed = NBD_CMD_FLAG_FUA; break;
    case NBD_CMD_WRITE: allowed = NBD_CMD_FLAG_FUA; break;
    case NBD_CMD_FLUSH: allowed = NBD_CMD_FLAG_FUA; break;
    case NBD_CMD_WRITE_ZEROES:
        if (opt.read_only)
            return NBD_EINVAL; /* not advertised on a read-only export */
        allowed = NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE;
        break;
    default: return NBD_EINVAL; /* TRIM, CACHE, BLOCK_STATUS, unknown */
    }
    if (r->flags & ~allowed)
        return NBD_EINVAL;
    if (r->type == NBD_CMD_FLUSH)
        return (r->off || r->len) ? NBD_EINVAL : 0;
    if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) && r->len > MAX_PAYLOAD)
        return NBD_EINVAL;
    if (r->type != NBD_CMD_READ && opt.read_only)
        return NBD_EPERM;
    if (r->off > ex.size || r->len > ex.size - r->off)
        return r->type == NBD_CMD_READ ? NBD_EINVAL : NBD_ENOSPC;
    return 0;
}

/* Pauses reading when the connection holds too much; conn_touch() resumes it. */
static bool conn_over_limit(const struct conn *c)
{
    return c->nreq >= CONN_MAX_REQS || c->nbytes >= CONN_MAX_BYTES;
}

static void handle_request_header(struct conn *c, const uint8_t *h)
{
    if (get32(h) != NBD_REQUEST_MAGIC) {
        logmsg("conn %u: bad request magic 0x%08x; closing", c->id, get32(h));
        st.malformed_closes++;
        conn_fail(c);
        return;
    }
    struct req *r = req_get(c);
    r->flags = get16(h + 4);
    r->type = get16(h + 6);
    memcpy(r->cookie, h + 8, 8);
    r->off = get64(h + 16);
    r->len = get32(h + 24);
    st.cmds[r->type < NBD_CMD_COUNT ? r->type : NBD_CMD_COUNT]++;

    if (r->type == NBD_CMD_DISC) {
        /* No reply; finish what is in flight, then close. */
        req_put(r);
        c->closing = true;
        conn_update_events(c);
        return;
    }
    /* After SIGTERM/SIGINT, requests read from now on get NBD_ESHUTDOWN (the client
     * then disconnects); the ones read before still run. */
    uint32_t err = stopping ? NBD_ESHUTDOWN : check_request(r);
    if (r->type == NBD_CMD_WRITE) {
        /* The payload follows whatever we answer: receive it, or read and drop it. */
        if (err == NBD_ESHUTDOWN && r->len > MAX_PAYLOAD)
            err = NBD_EINVAL;
        if (err == 0 && r->len > 0 && !req_reserve(r, r->len))
            err = NBD_ENOMEM;
        if (r->len == 0) {
            reply_err(r, err); /* nothing to write */
            return;
        }
        c->cur = r;
        if (err) {
            r->err = err;
            c->skip_left = r->len;
            c->st = ST_DISCARD;
        } else {
            c->got = 0;
            c->st = ST_PAYLOAD;
        }
        return;
    }
    if (err) {
        reply_err(r, err);
        return;
    }
    if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE_ZEROES) {
        if (r->len == 0) {
            reply(r); /* the spec leaves a zero length unspecified: succeed, no data */
            return;
        }
        if (r->type == NBD_CMD_READ && !req_reserve(r, r->len)) {
            reply_err(r, NBD_ENOMEM);
            return;
        }
    }
    start_io(r);
}

static void payload_done(struct conn *c)
{
    struct req *r = c->cur;
    c->cur = NULL;
    c->st = ST_REQ_HDR;
    start_io(r);
}

/* Consumes buffered input. Returns when it needs more bytes, or stops reading. */
static void conn_parse(struct conn *c)
{
    while (!c->dead && !c->closing && !c->paused) {
        size_t avail = c->rlen - c->rpos;
        uint8_t *p = c->rbuf + c->rpos;
        switch (c->st) {
        case ST_HS_FLAGS: {
            if (avail < 4)
                return;
            uint32_t f = get32(p);
            c->rpos += 4;
            if (f & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
                logmsg("conn %u: unknown client flags 0x%x; closing", c->id, f);
                st.malformed_closes++;
                conn_fail(c);
                return;
            }
            c->no_zeroes = (f & NBD_FLAG_C_NO_ZEROES) != 0;
            c->st = ST_OPT_HDR;
            break;
        }
        case ST_OPT_HDR:
            if (avail < 16)
                return;
            if (get64(p) != NBD_IHAVEOPT) {
                logmsg("conn %u: bad option magic; closing", c->id);
                st.malformed_closes++;
                conn_fail(c);
                return;
            }
            c->opt = get32(p + 8);
            c->optlen = get32(p + 12);
            c->rpos += 16;
            if (c->optlen > OPT_MAX) {
                if (c->opt == NBD_OPT_EXPORT_NAME) { /* cannot answer it with an error */
                    st.malformed_closes++;
                    conn_fail(c);
                    return;
                }
                c->skip_left = c->optlen;
                c->st = ST_OPT_SKIP;
                break;
            }
            free(c->optbuf);
            c->optbuf = malloc(c->optlen ? c->optlen : 1);
            if (!c->optbuf)
                die("out of memory");
            c->optgot = 0;
            c->st = ST_OPT_DATA;
            break;
        case ST_OPT_DATA: {
            size_t n = c->optlen - c->optgot;
            if (n > avail)
                n = avail;
            memcpy(c->optbuf + c->optgot, p, n);
            c->optgot += (uint32_t)n;
            c->rpos += n;
            if (c->optgot < c->optlen)
                return;
            c->st = ST_OPT_HDR;
            handle_option(c, c->opt, c->optbuf, c->optlen);
            break;
        }
        case ST_OPT_SKIP: {
            size_t n = c->skip_left < avail ? (size_t)c->skip_left : avail;
            c->skip_left -= n;
            c->rpos += n;
            if (c->skip_left)
                return;
            c->st = ST_OPT_HDR;
            opt_reply(c, c->opt, NBD_REP_ERR_TOO_BIG, NULL, 0);
            break;
        }
        case ST_REQ_HDR:
            if (conn_over_limit(c)) {
                c->paused = true;
                conn_update_events(c);
                return;
            }
            if (avail < NBD_REQ_HDR_LEN)
                return;
            c->rpos += NBD_REQ_HDR_LEN;
            handle_request_header(c, p);
            break;
        case ST_PAYLOAD: {
            struct req *r = c->cur;
            size_t n = r->len - c->got;
            if (n > avail)
                n = avail;
            memcpy((uint8_t *)r->buf + c->got, p, n);
            c->got += n;
            c->rpos += n;
            if (c->got < r->len)
                return;
            payload_done(c);
            break;
        }
        case ST_DISCARD: {
            size_t n = c->skip_left < avail ? (size_t)c->skip_left : avail;
            c->skip_left -= n;
            c->rpos += n;
            if (c->skip_left)
                return;
            struct req *r = c->cur;
            c->cur = NULL;
            c->st = ST_REQ_HDR;
            reply(r);
            break;
        }
        }
    }
}

/* Whether the connection stopped at a message boundary (EOF there is no truncation). */
static bool at_boundary(const struct conn *c)
{
    return c->rpos == c->rlen && (c->st == ST_REQ_HDR || c->st == ST_OPT_HDR);
}

static void conn_readable(struct conn *c)
{
    for (int round = 0; round < 8 && !c->dead && !c->closing && !c->paused; round++) {
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        ssize_t n;
        if (c->st == ST_PAYLOAD && c->rpos == c->rlen && c->cur->len - c->got >= RBUF_SIZE / 4) {
            /* Large payload: receive straight into the request's buffer. */
            struct req *r = c->cur;
            n = recv(c->fd, (uint8_t *)r->buf + c->got, r->len - c->got, MSG_DONTWAIT);
            if (n > 0) {
                c->got += (size_t)n;
                if (c->got == r->len)
                    payload_done(c);
                conn_parse(c);
                continue;
            }
        } else {
            if (c->rpos > 0 && c->rlen == RBUF_SIZE) {
                memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
                c->rlen -= c->rpos;
                c->rpos = 0;
            }
            n = recv(c->fd, c->rbuf + c->rlen, RBUF_SIZE - c->rlen, MSG_DONTWAIT);
            if (n > 0) {
                c->rlen += (size_t)n;
                conn_parse(c);
                continue;
            }
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0 || !at_boundary(c)) {
            /* Reset, or the peer closed in the middle of a message: this connection
             * only is closed; requests it has in the engine finish and are dropped. */
            if (n == 0) {
                logmsg("conn %u: closed in the middle of a message; closing", c->id);
                st.malformed_closes++;
            }
            conn_fail(c);
            return;
        }
        /* Clean EOF: reply to what is in flight (if the peer still reads), then close. */
        c->closing = true;
        conn_update_events(c);
        conn_touch(c);
        return;
    }
}

/* ======================================================================== */
/* Connections: lifecycle                                                   */
/* ======================================================================== */

static void conn_free(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    nconns--;
    free(c->rbuf);
    free(c->optbuf);
    free(c);
}

/* Deferred work on a connection: resume reading, flush output, finish closing. */
static void conn_work(struct conn *c)
{
    if (!c->dead && c->paused && !conn_over_limit(c)) {
        c->paused = false;
        conn_update_events(c);
        conn_parse(c);
    }
    if (!c->dead && c->oq_head)
        conn_flush(c);
    /* Closing (DISC, ABORT, EOF), or shutting down and idle at a message boundary. */
    if (!c->dead && (c->closing || (stopping && c->transmission && at_boundary(c))) &&
        c->nreq == 0 && !c->oq_head)
        conn_fail(c);
    if (c->dead && c->nreq == 0 && !c->in_grave) {
        c->in_grave = true;
        c->grave_next = graveyard;
        graveyard = c;
    }
}

static void run_work(void)
{
    while (work_head) {
        struct conn *c = work_head;
        work_head = c->work_next;
        c->in_work = false;
        conn_work(c);
    }
    while (graveyard) {
        struct conn *c = graveyard;
        graveyard = c->grave_next;
        conn_free(c);
    }
}

static void accept_all(void)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                logmsg("accept: %s", strerror(errno));
            return;
        }
        if (nconns >= MAX_CONNS) {
            logmsg("too many connections (%u); refusing one", nconns);
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        uint8_t *rb = malloc(RBUF_SIZE);
        if (!c || !rb)
            die("out of memory");
        c->fd = fd;
        c->rbuf = rb;
        c->id = (unsigned)++st.conns;
        c->st = ST_HS_FLAGS;
        c->events = EPOLLIN;
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) != 0)
            die("epoll_ctl ADD: %s", strerror(errno));
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
        nconns++;
        uint8_t g[18];
        put64(g, NBD_MAGIC);
        put64(g + 8, NBD_IHAVEOPT);
        put16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        conn_send_copy(c, g, sizeof(g), NULL, 0);
    }
}

static void begin_shutdown(void)
{
    if (stopping) {
        logmsg("second signal: dropping every connection now");
        for (struct conn *c = conns; c; c = c->next)
            conn_fail(c);
        return;
    }
    stopping = true;
    clock_gettime(CLOCK_MONOTONIC, &stop_at);
    logmsg("signal: no new connections; finishing in-flight requests");
    epoll_ctl(epfd, EPOLL_CTL_DEL, lfd, NULL);
    close(lfd);
    lfd = -1;
    /* Connections still negotiating are closed. The others are closed as soon as
     * they are idle: every request read so far answered, nothing half received. */
    for (struct conn *c = conns; c; c = c->next) {
        if (!c->transmission)
            conn_fail(c);
        else
            conn_touch(c);
    }
}

/* ======================================================================== */
/* Setup                                                                    */
/* ======================================================================== */

static void open_export(void)
{
    int mode = opt.read_only ? O_RDONLY : O_RDWR;
    ex.fd_buf = open(opt.path, mode | O_CLOEXEC);
    if (ex.fd_buf < 0)
        die("open %s: %s", opt.path, strerror(errno));
    struct stat sb;
    if (fstat(ex.fd_buf, &sb) != 0)
        die("fstat %s: %s", opt.path, strerror(errno));
    if (S_ISBLK(sb.st_mode)) {
        if (ioctl(ex.fd_buf, BLKGETSIZE64, &ex.size) != 0)
            die("BLKGETSIZE64 %s: %s", opt.path, strerror(errno));
    } else if (S_ISREG(sb.st_mode)) {
        ex.size = (uint64_t)sb.st_size;
    } else {
        die("%s: not a regular file or block device", opt.path);
    }
    if (!opt.no_direct) {
        ex.fd_direct = open(opt.path, mode | O_CLOEXEC | O_DIRECT);
        if (ex.fd_direct < 0)
            logmsg("O_DIRECT open of %s failed (%s); every request is buffered", opt.path,
                   strerror(errno));
    }
    ex.dio_align = 4096;
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (ex.fd_direct >= 0 && statx(ex.fd_direct, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align > 0 &&
        sx.stx_dio_mem_align <= BUF_ALIGN)
        ex.dio_align = sx.stx_dio_offset_align;
#endif
    ex.tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                NBD_FLAG_CAN_MULTI_CONN;
    if (opt.read_only)
        ex.tflags |= NBD_FLAG_READ_ONLY;
    else
        ex.tflags |= NBD_FLAG_SEND_WRITE_ZEROES;
}

static void open_listener(void)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port) };
    if (inet_pton(AF_INET, opt.bind, &a.sin_addr) != 1)
        die("--bind %s: not an IPv4 address", opt.bind);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket: %s", strerror(errno));
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) != 0)
        die("bind %s:%d: %s", opt.bind, opt.port, strerror(errno));
    if (listen(lfd, 128) != 0)
        die("listen: %s", strerror(errno));
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    opt.port = ntohs(a.sin_port);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ioeng_nbd [options] FILE|BLOCKDEV\n"
            "  --backend aio|uring|auto  libioeng backend (default auto)\n"
            "  --depth N                 engine in-flight budget (default 128)\n"
            "  --port N                  TCP port (default 10809; 0 = any free port)\n"
            "  --bind ADDR               IPv4 address to listen on (default 127.0.0.1)\n"
            "  --read-only               export read-only\n"
            "  --name NAME               export name (default \"\")\n"
            "  --no-direct               never use O_DIRECT\n"
            "  --verbose                 log every error reply\n"
            "  --idle-poll-us N|never|default  how long idle engine threads poll before\n"
            "                            sleeping (default never: least CPU per IO)\n"
            "Prints \"listening on ADDR:PORT\" on stdout when ready. SIGINT/SIGTERM stop it.\n");
}

static void parse_args(int argc, char **argv)
{
    static const struct option lo[] = {
        { "backend", required_argument, NULL, 'b' }, { "depth", required_argument, NULL, 'd' },
        { "port", required_argument, NULL, 'p' },    { "bind", required_argument, NULL, 'B' },
        { "read-only", no_argument, NULL, 'r' },     { "name", required_argument, NULL, 'n' },
        { "no-direct", no_argument, NULL, 'D' },     { "help", no_argument, NULL, 'h' },
        { "verbose", no_argument, NULL, 'v' },       { "idle-poll-us", required_argument, NULL, 'i' },
        { NULL, 0, NULL, 0 }
    };
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'b':
            if (!strcmp(optarg, "aio"))
                opt.backend = IOENG_BACKEND_AIO;
            else if (!strcmp(optarg, "uring"))
                opt.backend = IOENG_BACKEND_URING;
            else if (!strcmp(optarg, "auto"))
                opt.backend = IOENG_BACKEND_AUTO;
            else
                die("--backend: aio, uring or auto");
            break;
        case 'd': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > IOENG_MAX_DEPTH)
                die("--depth: 1..%d", IOENG_MAX_DEPTH);
            opt.depth = (unsigned)v;
            break;
        }
        case 'p': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v > 65535)
                die("--port: 0..65535");
            opt.port = (int)v;
            break;
        }
        case 'B': opt.bind = optarg; break;
        case 'r': opt.read_only = true; break;
        case 'n':
            if (strlen(optarg) > NBD_MAX_STRING)
                die("--name: at most %u bytes", NBD_MAX_STRING);
            opt.name = optarg;
            break;
        case 'D': opt.no_direct = true; break;
        case 'v': opt.verbose = true; break;
        case 'i':
            if (!strcmp(optarg, "never")) {
                opt.idle_poll_us = IOENG_POLL_NEVER;
            } else if (!strcmp(optarg, "default")) {
                opt.idle_poll_us = IOENG_POLL_DEFAULT;
            } else {
                unsigned long v = strtoul(optarg, &end, 10);
                if (*end || v < 1 || v > 1000000)
                    die("--idle-poll-us: never, default or 1..1000000");
                opt.idle_poll_us = (uint32_t)v;
            }
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        exit(2);
    }
    opt.path = argv[optind];
}

static double since_stop(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - stop_at.tv_sec) + (double)(now.tv_nsec - stop_at.tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv);

    /* Block the signals before any thread exists (the engine's threads inherit the
     * mask): they arrive only through the signalfd. */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &ss, NULL) != 0)
        die("sigprocmask: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);

    if (posix_memalign(&zero_buf, BUF_ALIGN, ZERO_CHUNK) != 0)
        die("out of memory");
    memset(zero_buf, 0, ZERO_CHUNK);
    open_export();
    open_listener();

    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = opt.backend;
    cfg.depth = opt.depth;
    /* Idle engine threads sleep at once by default: the event loop already batches, and
     * polling threads compete with the loop (and io_uring's workers) for the CPU, which
     * costs more CPU per IO than the wake-ups save. Builds that read the bound only from
     * the environment get it there too (unless the user set it). */
    cfg.idle_poll_us = opt.idle_poll_us;
    if (opt.idle_poll_us != IOENG_POLL_DEFAULT) {
        char v[16];
        snprintf(v, sizeof(v), "%u", opt.idle_poll_us == IOENG_POLL_NEVER ? 0u : opt.idle_poll_us);
        setenv("IOENG_IDLE_POLL_US", v, 0);
    }
    int rc = ioeng_open(&cfg, &eng);
    if (rc != 0)
        die("ioeng_open: %s", strerror(-rc));
    probe_dsync();

    epfd = epoll_create1(EPOLL_CLOEXEC);
    evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    sigfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    if (epfd < 0 || evfd < 0 || sigfd < 0)
        die("epoll/eventfd/signalfd: %s", strerror(errno));
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = &tag_listen };
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &e);
    e.data.ptr = &tag_signal;
    epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &e);
    e.data.ptr = &tag_event;
    epoll_ctl(epfd, EPOLL_CTL_ADD, evfd, &e);

    logmsg("exporting %s (%" PRIu64 " bytes%s), backend %s, depth %u, O_DIRECT %s (align %u), "
           "FUA via %s, idle poll %s",
           opt.path, ex.size, opt.read_only ? ", read-only" : "",
           ioeng_backend(eng) == IOENG_BACKEND_URING ? "uring" : "aio", opt.depth,
           ex.fd_direct >= 0 ? "on" : "off", ex.dio_align,
           dsync_ok ? "IOENG_REQ_DSYNC" : "WRITE+FDATASYNC",
           opt.idle_poll_us == IOENG_POLL_NEVER ? "never"
           : opt.idle_poll_us == IOENG_POLL_DEFAULT ? "default" : "bounded");
    printf("listening on %s:%d\n", opt.bind, opt.port);
    fflush(stdout);

    struct epoll_event evs[64];
    while (!stopping || conns) {
        if (stopping && since_stop() > SHUTDOWN_GRACE_S) {
            logmsg("shutdown grace of %d s over: dropping %u connection(s)", SHUTDOWN_GRACE_S,
                   nconns);
            for (struct conn *c = conns; c; c = c->next)
                conn_fail(c);
            run_work();
            break;
        }
        int n = epoll_wait(epfd, evs, 64, stopping ? 100 : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &tag_listen) {
                accept_all();
            } else if (p == &tag_event) {
                drain_completions();
            } else if (p == &tag_signal) {
                struct signalfd_siginfo si;
                while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                    begin_shutdown();
            } else {
                struct conn *c = p;
                if (c->dead)
                    continue;
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    conn_readable(c);
                if (!c->dead && (evs[i].events & EPOLLOUT))
                    conn_touch(c);
                if (!c->dead && c->closing && (evs[i].events & (EPOLLHUP | EPOLLERR)))
                    conn_fail(c); /* nobody left to read the replies */
            }
        }
        run_work();
    }

    /* Every connection is gone; close the engine (it completes whatever is left, e.g.
     * requests of connections dropped by the grace timeout) and free those requests. */
    rc = ioeng_close(eng);
    if (rc != 0)
        logmsg("ioeng_close: %s", strerror(-rc));
    struct req *left = atomic_exchange(&done_head, NULL);
    while (left) {
        struct req *nx = left->next;
        free(left->buf);
        free(left);
        left = nx;
    }
    while (conns) {
        struct conn *c = conns;
        conn_free(c);
    }
    while (free_reqs) {
        struct req *r = free_reqs;
        free_reqs = r->next;
        free(r->buf);
        free(r);
    }
    logmsg("stats: conns=%" PRIu64 " read=%" PRIu64 " write=%" PRIu64 " flush=%" PRIu64
           " write_zeroes=%" PRIu64 " disc=%" PRIu64 " other=%" PRIu64 " error_replies=%" PRIu64
           " fua_dsync=%" PRIu64 " fua_fallback=%" PRIu64 " malformed_closes=%" PRIu64
           " bytes_read=%" PRIu64 " bytes_written=%" PRIu64,
           st.conns, st.cmds[NBD_CMD_READ], st.cmds[NBD_CMD_WRITE], st.cmds[NBD_CMD_FLUSH],
           st.cmds[NBD_CMD_WRITE_ZEROES], st.cmds[NBD_CMD_DISC],
           st.cmds[NBD_CMD_TRIM] + st.cmds[NBD_CMD_CACHE] + st.cmds[NBD_CMD_COUNT], st.errors,
           st.fua_dsync, st.fua_fallback, st.malformed_closes, st.bytes_read, st.bytes_written);
    close(ex.fd_buf);
    if (ex.fd_direct >= 0)
        close(ex.fd_direct);
    close(epfd);
    close(evfd);
    close(sigfd);
    free(zero_buf);
    return 0;
}
