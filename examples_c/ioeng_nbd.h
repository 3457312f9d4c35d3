/*
 * ioeng_nbd.h - types and state shared by the ioeng_nbd server's files:
 *   ioeng_nbd.c            options, setup, accept, the event loop, shutdown
 *   ioeng_nbd_conn.c       per-connection input parsing, output queue, lifecycle
 *   ioeng_nbd_handshake.c  option haggling (fixed newstyle)
 *   ioeng_nbd_io.c         requests: checks, buffers, libioeng submission, replies
 * Everything here is used by the event-loop thread only, except where a comment says
 * otherwise (struct req's atomics, struct server's done_head and evfd, and struct
 * conn's srv, touched by the engine's completer).
 */
#ifndef IOENG_NBD_H
#define IOENG_NBD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>

#include "ioeng.h"
#include "ioeng_nbd_proto.h"

#define MAX_PAYLOAD     (32u << 20) /* largest READ/WRITE accepted (spec default) */
#define BUF_ALIGN       4096u
#define RBUF_SIZE       (256u << 10) /* per-connection receive buffer */
#define OPT_MAX         (64u << 10)  /* option data kept; longer options are skipped */
#define ZERO_CHUNK      (1u << 20)   /* WRITE_ZEROES is written in chunks of this */
#define BS_MAX_EXTENTS  1024u        /* descriptors in one BLOCK_STATUS reply (the rest:
                                        the client asks again from where it ends) */
#define CONN_MAX_REQS   512u         /* stop reading a connection at this many requests ... */
#define CONN_MAX_BYTES  (128ull << 20) /* ... or when one more would pass this many buffered
                                          bytes (or --max-buffer-bytes, if lower) */
#define HS_MAX_BYTES    (1u << 20)   /* ... or this many bytes of unsent option replies */
#define DEF_MAX_CONNS   256u         /* --max-connections */
#define DEF_HS_TIMEOUT_S 10u         /* --handshake-timeout (as qemu-nbd) */
#define DEF_MAX_BUF     (256ull << 20) /* --max-buffer-bytes: request buffers, all connections */
#define POOL_KEEP_CAP   (1u << 20)   /* request buffers up to this size are reused ... */
#define POOL_KEEP_N     64u          /* ... at most this many requests ... */
#define POOL_KEEP_BYTES (8u << 20)   /* ... holding at most this many bytes */
#define IDLE_TRIM_MS    1000         /* no request for this long: free the pool, trim the heap */
#define ACCEPT_PAUSE_MS 100          /* accept4 out of fds/memory: stop accepting this long */
#define MAX_IOV         64
#define SHUTDOWN_GRACE_S 30
#define SHUTDOWN_QUIET_MS 200  /* shutting down: a connection that sent no request for this
                                  long (since the signal) and has nothing in flight is done */

struct nbd_opts {
    const char *path;
    const char *name;
    const char *bind;        /* IPv4 or IPv6 address ("::" takes both) */
    const char *socket_path; /* --socket: listen on this Unix socket instead of TCP */
    bool bind_v6;            /* the TCP listener is IPv6 */
    ioeng_backend_t backend;
    bool polled;             /* --mode polled: the loop thread runs the engine (see
                              * ioeng_nbd.c, "Threads") */
    unsigned depth;
    int port;
    bool read_only;
    bool no_direct;
    bool verbose;
    uint32_t idle_poll_us;
    unsigned max_conns;      /* connections beyond this are closed at accept */
    unsigned hs_timeout_s;   /* a connection still negotiating after this is closed; 0: never */
    uint64_t max_buf;        /* request buffer bytes held by the whole server (back-pressure) */
};

struct nbd_export {
    int fd_buf;          /* buffered descriptor: the only one when fd_direct is -1 */
    int fd_direct;       /* O_DIRECT descriptor or -1; when open, every READ and WRITE
                          * uses it (one IO path per file: see ioeng_nbd_io.c) */
    uint32_t dio_align;  /* offset/length alignment for fd_direct */
    uint32_t hole_align; /* the file system's block: the direct export punches and
                          * zero-ranges whole blocks only (ioeng_nbd_io.c, "Zeroing") */
    bool can_punch;      /* FALLOC_FL_PUNCH_HOLE works (until it gave EOPNOTSUPP) */
    bool can_zero_range; /* FALLOC_FL_ZERO_RANGE works (likewise) */
    bool blkdev;         /* a block device, not a regular file */
    bool registered;     /* the engine holds fd_buf as registered file 0 and fd_direct as
                          * 1 (ioeng_register_files): requests name them by index */
    uint32_t falloc_align; /* the buffered export's WRITE_ZEROES fallocate granularity: 1
                            * on a file, the logical sector on a block device (which
                            * refuses any other range with EINVAL) */
    int wz_fd;           /* block device: its sysfs queue/write_zeroes_max_bytes (read at
                          * each FAST_ZERO with NO_HOLE, see ioeng_nbd_io.c), else -1 */
    uint64_t size;
    uint16_t tflags;     /* transmission flags */
};

/* Counters printed at exit. */
struct nbd_stats {
    uint64_t conns, cmds[NBD_CMD_COUNT + 1], errors, fua_dsync, fua_fallback;
    uint64_t bytes_read, bytes_written, malformed_closes;
    uint64_t hs_timeouts, refused_conns, accept_pauses, trims;
    uint64_t rmw_writes, write_waits; /* read-modify-writes; writes that waited for one */
    uint64_t punches, zero_ranges, zero_writes; /* how zeroing was done: fallocate modes, or
                                                   written zeros (fallback or fringes) */
    uint64_t fast_zero_refused; /* FAST_ZERO answered ENOTSUP */
    uint64_t extents;           /* BLOCK_STATUS descriptors sent */
};

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

/* Phases of a request on the direct descriptor whose edges are not aligned, and of
 * TRIM / WRITE_ZEROES (the fallocate first, then the rest). */
enum rphase { PH_IO, PH_EDGE_READ, PH_FALLOC };

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
    /* Layout (req_layout): the request's data is at buf + boff; [lo, hi) is the range
     * the IO covers on the file (off..off+len rounded out to dio_align on the direct
     * descriptor). `rmw`: a write whose edges must be read, merged and written whole;
     * ebuf holds those edge blocks (2 x dio_align). */
    uint64_t lo, hi;
    size_t boff;
    uint8_t *ebuf;
    bool rmw;
    enum rphase phase;
    uint64_t rd_piece;   /* expected length of each read piece (short read -> EIO) */
    /* Write range list (struct server wl_*): writes in flight or waiting for an
     * overlapping read-modify-write. */
    struct req *wprev, *wnext;
    bool in_wl, waiting;
    bool need_sync;      /* FUA without DSYNC: FDATASYNC after the write */
    uint32_t zmode;      /* TRIM / WRITE_ZEROES: the fallocate mode of the middle (0: zeros
                          * are written) */
    atomic_uint pending; /* callbacks still due (+1 while the loop is still submitting) */
    _Atomic int64_t ioerr; /* first -errno seen by a callback */
    struct out out;
    uint32_t bs_len;     /* BLOCK_STATUS: payload bytes in buf */
    uint8_t rhdr[32];    /* reply header: simple (16), or a structured chunk's (20) with
                          * the OFFSET_DATA offset or ERROR fields after it */
};

enum cstate { ST_HS_FLAGS, ST_OPT_HDR, ST_OPT_DATA, ST_OPT_SKIP, ST_REQ_HDR, ST_PAYLOAD,
              ST_DISCARD };

struct conn {
    struct server *srv;  /* set at accept, never changed: the completer thread reads it too */
    int fd;
    unsigned id;
    enum cstate st;
    bool no_zeroes, transmission, closing, dead, paused, in_work, in_grave;
    bool structured;     /* NBD_OPT_STRUCTURED_REPLY negotiated */
    bool meta_alloc;     /* base:allocation selected (NBD_OPT_SET_META_CONTEXT) */
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
    size_t hs_bytes;     /* memory of queued option replies (not owned by a request),
                            allocation overhead included (out_charge) */
    bool hup;            /* the peer shut both directions (EPOLLHUP) or reset the
                            connection (EPOLLERR): read what it sent, then drop it */
    bool mute;           /* a send failed (the peer reset or closed): replies are dropped,
                            input is still read until EOF or a read error */
    bool lingering;      /* shutting down: our side is shut (FIN sent), input discarded
                            until the peer closes, so that close() sends no RST */
    uint64_t last_req_ns;  /* CLOCK_MONOTONIC when its last request header was read */
    unsigned nreq;       /* live requests (receiving, in the engine, or replying) */
    uint64_t nbytes;     /* their buffer bytes */
    struct conn *prev, *next;  /* all connections */
    struct conn *work_next;    /* work list */
    struct conn *grave_next;   /* graveyard */
    struct conn *hs_prev, *hs_next; /* still negotiating, oldest first (handshake timeout) */
    bool in_hs;
    uint64_t hs_deadline_ns;   /* CLOCK_MONOTONIC */
};

/* The server: everything its files share, passed explicitly (a struct server * argument,
 * or c->srv from a connection, r->conn->srv from a request). */
struct server {
    struct nbd_opts opt;
    struct nbd_export ex;
    struct nbd_stats stats;
    ioeng_t *eng;
    int epfd, evfd, sigfd, lfd;   /* evfd: completions of a THREADS engine */
    int engfd;                    /* POLLED: the engine's event fd (engine-owned), else -1 */
    void *zero_buf;               /* ZERO_CHUNK zero bytes, 4096-aligned, never written */
    bool dsync_ok;                /* the engine accepts IOENG_REQ_DSYNC */
    bool stopping;                /* SIGINT/SIGTERM seen */
    struct timespec stop_at;      /* when stopping began (the shutdown grace runs from it) */
    uint64_t stop_ns;             /* the same, CLOCK_MONOTONIC ns */
    struct conn *conns;           /* all live connections */
    unsigned nconns;
    struct conn *work_head;       /* connections to flush / resume / check this round */
    struct conn *graveyard;       /* dead, no requests: freed at the end of the round */
    uint64_t submitted;           /* ioeng_submit() calls for requests (pump_engine) */
    struct req *free_reqs;        /* request pool */
    unsigned nfree_reqs;
    size_t pool_bytes;            /* buffer bytes in the pool */
    unsigned live_reqs;           /* requests out of the pool */
    uint64_t buf_bytes;           /* their buffer bytes (capped by opt.max_buf) */
    bool buf_waiters;             /* a connection paused for lack of room in max_buf */
    uint64_t hs_bytes;            /* option replies queued by all connections (memory,
                                     see out_charge), capped at max_buf / 4 */
    bool hs_waiters;              /* a connection paused for lack of room in that cap */
    uint64_t trim_at_ns;          /* idle since: free the pool at this time (0: not due) */
    uint64_t accept_resume_ns;    /* accepting paused until then (0: not paused) */
    struct conn *hs_head, *hs_tail; /* connections negotiating, oldest first */
    /* Writes on the direct descriptor, in arrival order: running, or waiting because a
     * read-modify-write overlaps (ioeng_nbd_io.c, "Write ordering"). */
    struct req *wl_head, *wl_tail;
    unsigned wl_rmw, wl_waiting;  /* how many of them are RMW, and waiting */
    /* Completion stack: pushed by the engine's completer thread (THREADS) or by callbacks
     * inside the loop's own ioeng_poll() (POLLED), drained by the loop. */
    _Atomic(struct req *) done_head;
};

/* ioeng_nbd.c */
void server_open(struct server *srv, const sigset_t *ss);
int server_round(struct server *srv, int timeout);
void server_finish(struct server *srv);
uint64_t now_ns(void);
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern bool nbd_quiet;

/* ioeng_nbd_io.c */
struct req *req_get(struct conn *c);
bool req_reserve(struct req *r, size_t len);
bool req_layout(struct req *r);
size_t req_need(const struct server *srv, const uint8_t *hdr);
void free_waiting_writes(struct server *srv);
void req_put(struct req *r);
uint32_t check_request(const struct req *r);
void reply(struct req *r);
void reply_err(struct req *r, uint32_t err);
void start_io(struct req *r);
void drain_completions(struct server *srv);
bool pump_engine(struct server *srv);
void probe_dsync(struct server *srv);

/* Points `q` at the export: at fd_direct when it is open and `buffered` is false, else
 * at fd_buf; by registered index when the engine took the two (no file lookup per
 * request on io_uring, no fstat per request on AIO). */
static inline void target_export(const struct server *srv, ioeng_req_t *q, bool buffered)
{
    bool direct = !buffered && srv->ex.fd_direct >= 0;
    if (srv->ex.registered) {
        q->fd = direct ? 1 : 0;
        q->flags |= IOENG_REQ_FIXED_FILE;
    } else {
        q->fd = direct ? srv->ex.fd_direct : srv->ex.fd_buf;
    }
}
void free_pool(struct server *srv);

/* ioeng_nbd_conn.c */
void conn_touch(struct conn *c);
void conn_fail(struct conn *c);
void conn_hup(struct conn *c);
void conn_update_events(struct conn *c);
void conn_send_copy(struct conn *c, const void *hdr, size_t hlen, const void *data, size_t dlen);
void conn_enqueue(struct conn *c, struct out *o);
void conn_readable(struct conn *c);
void conn_free(struct conn *c);
void conn_hs_unlink(struct conn *c);
void conns_wake_paused(struct server *srv);
void run_work(struct server *srv);

/* ioeng_nbd_handshake.c */
void handle_option(struct conn *c, uint32_t optv, const uint8_t *d, uint32_t len);
void enter_transmission(struct conn *c);
void opt_reply(struct conn *c, uint32_t optv, uint32_t type, const void *data, uint32_t len);

#endif /* IOENG_NBD_H */
