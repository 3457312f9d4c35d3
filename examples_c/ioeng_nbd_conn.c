/*
 * ioeng_nbd_conn.c - one client connection of the ioeng_nbd server: non-blocking input
 * parsed by a state machine (handshake, request headers, write payloads, payloads being
 * dropped), the output queue written with one sendmsg per round, backpressure, and the
 * connection's lifecycle (a failed connection lives on until its last request is back
 * from the engine).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ioeng_nbd.h"

/* ======================================================================== */
/* Connections: output                                                      */
/* ======================================================================== */

void conn_update_events(struct conn *c)
{
    if (c->dead || c->hup)
        return; /* a hung-up socket is out of epoll (conn_hup) */
    uint32_t ev = 0;
    if (!c->closing && !c->paused)
        ev |= EPOLLIN;
    if (c->oq_head)
        ev |= EPOLLOUT;
    if (ev == c->events)
        return;
    struct epoll_event e = { .events = ev, .data.ptr = c };
    if (epoll_ctl(c->srv->epfd, EPOLL_CTL_MOD, c->fd, &e) != 0)
        die("epoll_ctl MOD: %s", strerror(errno));
    c->events = ev;
}

void conn_touch(struct conn *c)
{
    if (c->in_work)
        return;
    c->in_work = true;
    c->work_next = c->srv->work_head;
    c->srv->work_head = c;
}

/* The server-wide cap on queued option replies: a quarter of --max-buffer-bytes, apart
 * from the request buffers, so that clients still negotiating (and not reading their
 * replies) can never hold up the requests of established ones. */
static uint64_t hs_cap(const struct server *srv)
{
    return srv->opt.max_buf / 4;
}

/* What a malloc'ed reply item (an option reply) costs: the item, its bytes, and the
 * allocator's overhead per chunk (glibc: 16 bytes, rounded to 16). Counted in full, so
 * that a client pipelining tiny options it never reads is held to HS_MAX_BYTES of real
 * memory, not of payload. */
static size_t out_charge(size_t bytes)
{
    return (sizeof(struct out) + bytes + 16 + 15) & ~(size_t)15;
}

/* An option reply leaves the connection (sent, or dropped by conn_fail): its memory
 * leaves the server's count, and a server left with neither requests nor option
 * replies gives its memory back soon (run_timers), as after request traffic. */
static void out_uncharge(struct conn *c, const struct out *o)
{
    struct server *srv = c->srv;
    size_t charge = out_charge(o->hlen + o->dlen);
    c->hs_bytes -= charge;
    srv->hs_bytes -= charge;
    if (!srv->live_reqs && !srv->trim_at_ns)
        srv->trim_at_ns = now_ns() + IDLE_TRIM_MS * 1000000ull;
    if (srv->hs_waiters) {
        srv->hs_waiters = false;
        conns_wake_paused(srv);
    }
}

static void out_release(struct conn *c, struct out *o)
{
    if (o->owner) {
        req_put(o->owner);
    } else {
        out_uncharge(c, o);
        free(o);
    }
}

/* Releases every queued reply unsent (the peer cannot receive them any more). */
static void drop_output(struct conn *c)
{
    while (c->oq_head) {
        struct out *o = c->oq_head;
        c->oq_head = o->next;
        out_release(c, o);
    }
    c->oq_tail = NULL;
    c->oq_off = 0;
}

/* Drops everything queued and closes the socket; the struct lives on until its last
 * request came back from the engine. */
void conn_fail(struct conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    conn_hs_unlink(c);
    epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    drop_output(c);
    if (c->cur) {
        struct req *r = c->cur;
        c->cur = NULL;
        req_put(r);
    }
    free(c->optbuf);
    c->optbuf = NULL;
    conn_touch(c);
}

void conn_enqueue(struct conn *c, struct out *o)
{
    if (c->dead || c->hup || c->mute) {
        /* No reply can reach a peer that hung up; a failed send would end the
         * connection before it has read everything the peer sent (conn_hup). */
        out_release(c, o);
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
void conn_send_copy(struct conn *c, const void *hdr, size_t hlen, const void *data, size_t dlen)
{
    struct out *o = malloc(sizeof(*o) + hlen + dlen);
    if (!o)
        die("out of memory");
    uint8_t *p = (uint8_t *)(o + 1);
    memcpy(p, hdr, hlen);
    if (dlen)
        memcpy(p + hlen, data, dlen);
    *o = (struct out){ .hdr = p, .hlen = hlen + dlen };
    size_t charge = out_charge(hlen + dlen);
    c->hs_bytes += charge;
    c->srv->hs_bytes += charge;
    c->srv->trim_at_ns = 0;
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
            /* Peer gone (EPIPE, ECONNRESET): its replies cannot be delivered, but what
             * it sent before is still queued (Linux returns it before the reset) and
             * runs: read on until EOF or a read error, as after a hang-up. */
            c->mute = true;
            drop_output(c);
            break;
        }
        size_t done = (size_t)w + c->oq_off;
        while (c->oq_head && done >= c->oq_head->hlen + c->oq_head->dlen) {
            struct out *o = c->oq_head;
            done -= o->hlen + o->dlen;
            c->oq_head = o->next;
            if (!c->oq_head)
                c->oq_tail = NULL;
            out_release(c, o);
        }
        c->oq_off = done;
    }
    conn_update_events(c);
}

/* ======================================================================== */
/* Transmission: request parsing                                            */
/* ======================================================================== */

/* Pauses reading when the connection holds too much (requests and their buffers, or
 * option replies a client does not read); conn_work() resumes it. */
static bool conn_over_limit(const struct conn *c)
{
    return c->nreq >= CONN_MAX_REQS || c->nbytes >= CONN_MAX_BYTES || c->hs_bytes >= HS_MAX_BYTES ||
           (c->hs_bytes && c->srv->hs_bytes >= hs_cap(c->srv));
}

static void conn_pause(struct conn *c)
{
    c->paused = true;
    if (c->hs_bytes && c->srv->hs_bytes >= hs_cap(c->srv))
        c->srv->hs_waiters = true; /* resumed when option replies go out (out_uncharge) */
    conn_update_events(c);
}

/* Whether a request holding `need` more buffer bytes may be taken now: within the
 * connection's byte limit and the server's (--max-buffer-bytes), except that a
 * connection holding nothing may always take one, and so may anyone while the server
 * holds nothing: each limit is passed by at most one request. Otherwise the connection
 * pauses; for the server's limit, until req_put() frees room (conns_wake_paused). */
static bool conn_room_for(struct conn *c, size_t need)
{
    struct server *srv = c->srv;
    uint64_t conn_max = CONN_MAX_BYTES < srv->opt.max_buf ? CONN_MAX_BYTES : srv->opt.max_buf;
    if (c->nreq && c->nbytes + need > conn_max)
        return false; /* resumed by this connection's own req_put */
    if (srv->buf_bytes && srv->buf_bytes + need > srv->opt.max_buf) {
        srv->buf_waiters = true;
        return false;
    }
    return true;
}

/* Whether a paused connection's next request (when its header is already buffered) now
 * has room; checked before resuming, so connections still short of room stay paused
 * without two epoll_ctl calls each time some room is freed. */
static bool conn_next_has_room(struct conn *c)
{
    if (!c->transmission || c->st != ST_REQ_HDR || c->rlen - c->rpos < NBD_REQ_HDR_LEN)
        return true;
    return conn_room_for(c, req_need(c->srv, c->rbuf + c->rpos));
}

/* Room freed in max_buf: every connection paused may try again (conn_work). */
void conns_wake_paused(struct server *srv)
{
    srv->buf_waiters = false;
    for (struct conn *c = srv->conns; c; c = c->next)
        if (c->paused && !c->dead)
            conn_touch(c);
}

static void handle_request_header(struct conn *c, const uint8_t *h)
{
    c->last_req_ns = now_ns();
    if (get32(h) != NBD_REQUEST_MAGIC) {
        logmsg("conn %u: bad request magic 0x%08x; closing", c->id, get32(h));
        c->srv->stats.malformed_closes++;
        conn_fail(c);
        return;
    }
    struct req *r = req_get(c);
    r->flags = get16(h + 4);
    r->type = get16(h + 6);
    memcpy(r->cookie, h + 8, 8);
    r->off = get64(h + 16);
    r->len = get32(h + 24);
    c->srv->stats.cmds[r->type < NBD_CMD_COUNT ? r->type : NBD_CMD_COUNT]++;

    if (r->type == NBD_CMD_DISC) {
        /* No reply; finish what is in flight, then close. */
        req_put(r);
        c->closing = true;
        conn_update_events(c);
        return;
    }
    /* After SIGTERM/SIGINT, requests read from now on get NBD_ESHUTDOWN (the client
     * then disconnects); the ones read before still run. */
    uint32_t err = c->srv->stopping ? NBD_ESHUTDOWN : check_request(r);
    if (r->type == NBD_CMD_WRITE && r->len > MAX_PAYLOAD) {
        /* Reading (up to 4 GiB of) payload to stay in step is not worth it: answer
         * EINVAL and disconnect, as qemu-nbd does. */
        logmsg("conn %u: WRITE of %u bytes (more than %u); closing", c->id, r->len, MAX_PAYLOAD);
        c->srv->stats.malformed_closes++;
        reply_err(r, NBD_EINVAL);
        c->closing = true;
        conn_update_events(c);
        return;
    }
    if (r->type == NBD_CMD_WRITE) {
        /* The payload follows whatever we answer: receive it, or read and drop it. */
        if (err == 0 && r->len > 0 && !req_layout(r))
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
    if (r->type != NBD_CMD_FLUSH) {
        if (r->len == 0) {
            reply(r); /* the spec leaves a zero length unspecified: succeed, no data */
            return;
        }
        if (r->type != NBD_CMD_CACHE && r->type != NBD_CMD_BLOCK_STATUS && !req_layout(r)) {
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

/* One step of the handshake states (client flags, option headers, option data, options
 * too long to keep). Returns false when it needs more bytes or has stopped reading. */
static bool parse_handshake(struct conn *c, const uint8_t *p, size_t avail)
{
    switch (c->st) {
    case ST_HS_FLAGS: {
        if (avail < 4)
            return false;
        uint32_t f = get32(p);
        c->rpos += 4;
        if (f & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
            logmsg("conn %u: unknown client flags 0x%x; closing", c->id, f);
            c->srv->stats.malformed_closes++;
            conn_fail(c);
            return false;
        }
        c->no_zeroes = (f & NBD_FLAG_C_NO_ZEROES) != 0;
        c->st = ST_OPT_HDR;
        return true;
    }
    case ST_OPT_HDR:
        if (conn_over_limit(c)) {
            conn_pause(c);
            return false;
        }
        if (avail < 16)
            return false;
        if (get64(p) != NBD_IHAVEOPT) {
            logmsg("conn %u: bad option magic; closing", c->id);
            c->srv->stats.malformed_closes++;
            conn_fail(c);
            return false;
        }
        c->opt = get32(p + 8);
        c->optlen = get32(p + 12);
        c->rpos += 16;
        if (c->optlen > OPT_MAX) {
            if (c->opt == NBD_OPT_EXPORT_NAME) { /* cannot answer it with an error */
                c->srv->stats.malformed_closes++;
                conn_fail(c);
                return false;
            }
            c->skip_left = c->optlen;
            c->st = ST_OPT_SKIP;
            return true;
        }
        free(c->optbuf);
        c->optbuf = malloc(c->optlen ? c->optlen : 1);
        if (!c->optbuf)
            die("out of memory");
        c->optgot = 0;
        c->st = ST_OPT_DATA;
        return true;
    case ST_OPT_DATA: {
        size_t n = c->optlen - c->optgot;
        if (n > avail)
            n = avail;
        memcpy(c->optbuf + c->optgot, p, n);
        c->optgot += (uint32_t)n;
        c->rpos += n;
        if (c->optgot < c->optlen)
            return false;
        c->st = ST_OPT_HDR;
        handle_option(c, c->opt, c->optbuf, c->optlen);
        return true;
    }
    case ST_OPT_SKIP: {
        size_t n = c->skip_left < avail ? (size_t)c->skip_left : avail;
        c->skip_left -= n;
        c->rpos += n;
        if (c->skip_left)
            return false;
        c->st = ST_OPT_HDR;
        opt_reply(c, c->opt, c->srv->stopping ? NBD_REP_ERR_SHUTDOWN : NBD_REP_ERR_TOO_BIG,
                  NULL, 0);
        return true;
    }
    default:
        return false; /* not a handshake state (c->transmission says which) */
    }
}

/* One step of the transmission states (request headers, write payloads, payloads being
 * dropped). Returns false when it needs more bytes or has stopped reading. */
static bool parse_transmission(struct conn *c, const uint8_t *p, size_t avail)
{
    switch (c->st) {
    case ST_REQ_HDR:
        if (conn_over_limit(c)) {
            conn_pause(c);
            return false;
        }
        if (avail < NBD_REQ_HDR_LEN)
            return false;
        if (!conn_room_for(c, req_need(c->srv, p))) {
            conn_pause(c); /* the header stays unread until there is room */
            return false;
        }
        c->rpos += NBD_REQ_HDR_LEN;
        handle_request_header(c, p);
        return true;
    case ST_PAYLOAD: {
        struct req *r = c->cur;
        size_t n = r->len - c->got;
        if (n > avail)
            n = avail;
        memcpy((uint8_t *)r->buf + r->boff + c->got, p, n);
        c->got += n;
        c->rpos += n;
        if (c->got < r->len)
            return false;
        payload_done(c);
        return true;
    }
    case ST_DISCARD: {
        size_t n = c->skip_left < avail ? (size_t)c->skip_left : avail;
        c->skip_left -= n;
        c->rpos += n;
        if (c->skip_left)
            return false;
        struct req *r = c->cur;
        c->cur = NULL;
        c->st = ST_REQ_HDR;
        reply(r);
        return true;
    }
    default:
        return false; /* not a transmission state (c->transmission says which) */
    }
}

/* Consumes buffered input. Returns when it needs more bytes, or stops reading.
 * enter_transmission() moves a connection from the handshake states to ST_REQ_HDR. */
static void conn_parse(struct conn *c)
{
    while (!c->dead && !c->closing && !c->paused) {
        size_t avail = c->rlen - c->rpos;
        const uint8_t *p = c->rbuf + c->rpos;
        bool more = c->transmission ? parse_transmission(c, p, avail)
                                    : parse_handshake(c, p, avail);
        if (!more)
            return;
    }
}

/* Shutting down: whether the connection sent no request for SHUTDOWN_QUIET_MS, counted
 * from the signal at the earliest. A client that keeps requests in flight gets
 * NBD_ESHUTDOWN for each one read after the signal and stops; closing it earlier, between
 * two of its requests, would leave those it has sent meanwhile without a reply. */
static bool quiet(const struct conn *c)
{
    uint64_t since = c->last_req_ns > c->srv->stop_ns ? c->last_req_ns : c->srv->stop_ns;
    return now_ns() - since >= SHUTDOWN_QUIET_MS * 1000000ull;
}

/* Whether bytes the peer sent wait in the socket (unread by conn_readable yet). */
static bool input_waiting(const struct conn *c)
{
    uint8_t b;
    ssize_t n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0;
}

/* Whether bytes we sent are still in the socket's send queue (not yet acknowledged by
 * the peer, or unread on a Unix socket): an RST now could throw them away. Unknown
 * counts as yes. */
static bool unacked_output(const struct conn *c)
{
    int queued = 0;
    return ioctl(c->fd, SIOCOUTQ, &queued) != 0 || queued > 0;
}

/* Whether the connection stopped at a message boundary (EOF there is no truncation). */
static bool at_boundary(const struct conn *c)
{
    return c->rpos == c->rlen && (c->st == ST_REQ_HDR || c->st == ST_OPT_HDR);
}

/* Reads and drops a lingering connection's input; closes it at EOF or on an error. */
static void conn_drain_lingering(struct conn *c)
{
    uint8_t scratch[4096];
    for (;;) {
        ssize_t n = recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* EPOLLIN stays on: the rest, or the EOF, wakes the next round */
        conn_fail(c);
        return;
    }
}

/* Shutting down, idle: every reply was handed to the socket. Our side is shut (FIN after
 * the replies), and what the peer still sends is read and dropped until it closes: a
 * close() with unread input would send an RST, which throws away replies the peer has
 * not received yet. The shutdown grace bounds the wait. */
static void conn_linger(struct conn *c)
{
    c->lingering = true;
    if (shutdown(c->fd, SHUT_WR) != 0) {
        conn_fail(c);
        return;
    }
    conn_drain_lingering(c);
}

/* EPOLLHUP or EPOLLERR: takes the connection out of epoll (neither can be masked: they
 * would be reported every round), then reads and runs what the peer sent before it
 * closed, as far as the connection's limits allow now (conn_work calls again as requests
 * finish), and drops the connection at EOF: the requests read run on, their replies go
 * nowhere. */
void conn_hup(struct conn *c)
{
    if (!c->hup) {
        c->hup = true;
        epoll_ctl(c->srv->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->events = 0;
        /* Replies still queued go nowhere; from now on they are dropped as they come
         * (conn_enqueue). */
        drop_output(c);
    }
    if (c->lingering) {
        conn_fail(c);
        return;
    }
    /* Everything the peer sent is queued already; each call reads up to 8 buffers. */
    for (int calls = 0; calls < 4096 && !c->dead && !c->closing && !c->paused; calls++)
        conn_readable(c);
    if (!c->dead && !c->paused)
        conn_fail(c);
}

void conn_readable(struct conn *c)
{
    if (c->lingering) {
        conn_drain_lingering(c);
        return;
    }
    for (int round = 0; round < 8 && !c->dead && !c->closing && !c->paused; round++) {
        if (c->rpos == c->rlen)
            c->rpos = c->rlen = 0;
        ssize_t n;
        if (c->st == ST_PAYLOAD && c->rpos == c->rlen && c->cur->len - c->got >= RBUF_SIZE / 4) {
            /* Large payload: receive straight into the request's buffer. */
            struct req *r = c->cur;
            size_t want = r->len - c->got;
            n = recv(c->fd, (uint8_t *)r->buf + r->boff + c->got, want, MSG_DONTWAIT);
            if (n > 0) {
                c->got += (size_t)n;
                if (c->got == r->len)
                    payload_done(c);
                conn_parse(c);
                if ((size_t)n < want)
                    return; /* drained (see below) */
                continue;
            }
        } else {
            if (c->rpos > 0 && c->rlen == RBUF_SIZE) {
                memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
                c->rlen -= c->rpos;
                c->rpos = 0;
            }
            size_t want = RBUF_SIZE - c->rlen;
            n = recv(c->fd, c->rbuf + c->rlen, want, MSG_DONTWAIT);
            if (n > 0) {
                c->rlen += (size_t)n;
                conn_parse(c);
                /* A short read took everything queued: no second recv just to hear
                 * EAGAIN (one syscall per request at QD1). The socket is watched
                 * level-triggered, so bytes that arrive meanwhile (or an EOF) wake the
                 * next round. */
                if ((size_t)n < want)
                    return;
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
                c->srv->stats.malformed_closes++;
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

/* Leaves the handshake list (negotiated, or dead). */
void conn_hs_unlink(struct conn *c)
{
    if (!c->in_hs)
        return;
    struct server *srv = c->srv;
    if (c->hs_prev)
        c->hs_prev->hs_next = c->hs_next;
    else
        srv->hs_head = c->hs_next;
    if (c->hs_next)
        c->hs_next->hs_prev = c->hs_prev;
    else
        srv->hs_tail = c->hs_prev;
    c->in_hs = false;
}

void conn_free(struct conn *c)
{
    conn_hs_unlink(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->srv->nconns--;
    free(c->rbuf);
    free(c->optbuf);
    free(c);
}

/* Deferred work on a connection: flush output, resume reading, finish closing. */
static void conn_work(struct conn *c)
{
    if (!c->dead && c->oq_head)
        conn_flush(c);
    if (!c->dead && c->paused && !conn_over_limit(c) && conn_next_has_room(c)) {
        c->paused = false;
        conn_update_events(c);
        conn_parse(c);
        if (!c->dead && c->oq_head)
            conn_flush(c);
    }
    /* A hung-up connection that was paused: read on now that there is room. */
    if (!c->dead && c->hup && !c->paused)
        conn_hup(c);
    /* Closing (DISC, ABORT, EOF): done once every reply went out. Shutting down: done
     * once quiet at a message boundary with nothing waiting in the socket (requests
     * there get NBD_ESHUTDOWN replies first); closed at once if the peer acknowledged
     * every reply, else after a lingering close (conn_linger). */
    if (!c->dead && !c->lingering && c->nreq == 0 && !c->oq_head) {
        if (c->closing)
            conn_fail(c);
        else if (c->srv->stopping && c->transmission && at_boundary(c) && quiet(c) && !input_waiting(c)) {
            if (unacked_output(c))
                conn_linger(c);
            else
                conn_fail(c); /* nothing of ours left to lose: an idle client does not
                                 hold up the shutdown */
        }
    }
    if (c->dead && c->nreq == 0 && !c->in_grave) {
        c->in_grave = true;
        c->grave_next = c->srv->graveyard;
        c->srv->graveyard = c;
    }
}

void run_work(struct server *srv)
{
    while (srv->work_head) {
        struct conn *c = srv->work_head;
        srv->work_head = c->work_next;
        c->in_work = false;
        conn_work(c);
    }
    while (srv->graveyard) {
        struct conn *c = srv->graveyard;
        srv->graveyard = c->grave_next;
        conn_free(c);
    }
}
