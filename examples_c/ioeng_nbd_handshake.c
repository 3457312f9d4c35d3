/*
 * ioeng_nbd_handshake.c - option haggling of the fixed newstyle handshake: GO, INFO,
 * EXPORT_NAME, ABORT, LIST, STRUCTURED_REPLY and LIST/SET_META_CONTEXT (base:allocation
 * only); every other option gets NBD_REP_ERR_UNSUP.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ioeng_nbd.h"

/* ======================================================================== */
/* Handshake                                                                */
/* ======================================================================== */

void opt_reply(struct conn *c, uint32_t optv, uint32_t type, const void *data,
                      uint32_t len)
{
    uint8_t h[20];
    put64(h, NBD_REP_MAGIC);
    put32(h + 8, optv);
    put32(h + 12, type);
    put32(h + 16, len);
    conn_send_copy(c, h, sizeof(h), data, len);
}

void enter_transmission(struct conn *c)
{
    c->transmission = true;
    c->st = ST_REQ_HDR;
    conn_hs_unlink(c); /* the handshake timeout no longer applies */
    free(c->optbuf);
    c->optbuf = NULL;
}

static bool name_matches(const struct server *srv, const uint8_t *name, uint32_t len)
{
    return len == strlen(srv->opt.name) && memcmp(name, srv->opt.name, len) == 0;
}

/* Whether `name` is the export's; if not, answers option `optv` with ERR_UNKNOWN. */
static bool export_known(struct conn *c, uint32_t optv, const uint8_t *name, uint32_t len)
{
    static const char msg[] = "unknown export name";
    if (name_matches(c->srv, name, len))
        return true;
    opt_reply(c, optv, NBD_REP_ERR_UNKNOWN, msg, sizeof(msg) - 1);
    return false;
}

/* The transmission flags for this connection: DF only with structured replies (a READ is
 * always answered with one data chunk, so "don't fragment" costs nothing). */
static uint16_t conn_tflags(const struct conn *c)
{
    return (uint16_t)(c->srv->ex.tflags | (c->structured ? NBD_FLAG_SEND_DF : 0));
}

/* NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: export name, then queries. The
 * only context is base:allocation; LIST answers it for no query, "base:" or
 * "base:allocation"; SET selects it for "base:allocation" (anything else is ignored, as
 * the protocol asks). */
static void opt_meta(struct conn *c, uint32_t optv, const uint8_t *d, uint32_t len)
{
    static const char ctx[] = NBD_META_BASE_ALLOCATION;
    const uint32_t clen = sizeof(ctx) - 1;
    if (!c->structured) {
        opt_reply(c, optv, NBD_REP_ERR_INVALID, NULL, 0); /* needs structured replies */
        if (optv == NBD_OPT_SET_META_CONTEXT)
            c->meta_alloc = false;
        return;
    }
    bool valid = len >= 8, match = false, all = false;
    uint32_t nlen = valid ? get32(d) : 0, pos = 0, nq = 0;
    valid = valid && nlen <= len - 8;
    if (valid) {
        nq = get32(d + 4 + nlen);
        pos = 8 + nlen;
        all = nq == 0 && optv == NBD_OPT_LIST_META_CONTEXT;
    }
    for (uint32_t i = 0; valid && i < nq; i++) {
        if (len - pos < 4) {
            valid = false;
            break;
        }
        uint32_t ql = get32(d + pos);
        pos += 4;
        if (ql > len - pos) {
            valid = false;
            break;
        }
        const uint8_t *q = d + pos;
        pos += ql;
        if (ql == clen && memcmp(q, ctx, clen) == 0)
            match = true;
        else if (optv == NBD_OPT_LIST_META_CONTEXT && ql == 5 && memcmp(q, "base:", 5) == 0)
            match = true; /* the namespace wildcard */
    }
    if (optv == NBD_OPT_SET_META_CONTEXT)
        c->meta_alloc = false; /* replaced, also when this one fails */
    if (!valid || pos != len) {
        opt_reply(c, optv, NBD_REP_ERR_INVALID, NULL, 0);
        return;
    }
    if (!export_known(c, optv, d + 4, nlen))
        return;
    if (match || all) {
        uint8_t b[4 + sizeof(ctx)];
        uint32_t id = optv == NBD_OPT_SET_META_CONTEXT ? NBD_META_ALLOC_ID : 0;
        put32(b, id);
        memcpy(b + 4, ctx, clen);
        opt_reply(c, optv, NBD_REP_META_CONTEXT, b, 4 + clen);
        if (optv == NBD_OPT_SET_META_CONTEXT)
            c->meta_alloc = true;
    }
    opt_reply(c, optv, NBD_REP_ACK, NULL, 0);
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
    if (!export_known(c, optv, d + 4, nlen))
        return;
    bool want_name = false;
    for (uint16_t i = 0; i < ninfo; i++)
        if (get16(d + 6 + nlen + 2u * i) == NBD_INFO_NAME)
            want_name = true;
    uint8_t b[14];
    put16(b, NBD_INFO_EXPORT);
    put64(b + 2, c->srv->ex.size);
    put16(b + 10, conn_tflags(c));
    opt_reply(c, optv, NBD_REP_INFO, b, 12);
    /* Our constraints are the defaults; saying so helps clients pick request sizes. */
    put16(b, NBD_INFO_BLOCK_SIZE);
    put32(b + 2, 1);
    put32(b + 6, 4096);
    put32(b + 10, MAX_PAYLOAD);
    opt_reply(c, optv, NBD_REP_INFO, b, 14);
    if (want_name) {
        size_t n = strlen(c->srv->opt.name);
        uint8_t *nb = malloc(2 + n);
        if (!nb)
            die("out of memory");
        put16(nb, NBD_INFO_NAME);
        memcpy(nb + 2, c->srv->opt.name, n);
        opt_reply(c, optv, NBD_REP_INFO, nb, (uint32_t)(2 + n));
        free(nb);
    }
    opt_reply(c, optv, NBD_REP_ACK, NULL, 0);
    if (optv == NBD_OPT_GO)
        enter_transmission(c);
}

void handle_option(struct conn *c, uint32_t optv, const uint8_t *d, uint32_t len)
{
    if (c->srv->stopping && optv != NBD_OPT_ABORT) {
        if (optv == NBD_OPT_EXPORT_NAME) {
            /* It has no error reply: closing is the protocol's only refusal. */
            logmsg("conn %u: NBD_OPT_EXPORT_NAME while shutting down; closing", c->id);
            conn_fail(c);
            return;
        }
        opt_reply(c, optv, NBD_REP_ERR_SHUTDOWN, NULL, 0);
        return;
    }
    switch (optv) {
    case NBD_OPT_EXPORT_NAME: {
        if (!name_matches(c->srv, d, len)) {
            logmsg("conn %u: NBD_OPT_EXPORT_NAME for an unknown export; closing", c->id);
            conn_fail(c); /* the spec's only way to refuse EXPORT_NAME */
            return;
        }
        uint8_t b[10 + 124] = { 0 };
        put64(b, c->srv->ex.size);
        put16(b + 8, conn_tflags(c));
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
        size_t n = strlen(c->srv->opt.name);
        uint8_t *b = malloc(4 + n);
        if (!b)
            die("out of memory");
        put32(b, (uint32_t)n);
        memcpy(b + 4, c->srv->opt.name, n);
        opt_reply(c, optv, NBD_REP_SERVER, b, (uint32_t)(4 + n));
        free(b);
        opt_reply(c, optv, NBD_REP_ACK, NULL, 0);
        return;
    }
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        opt_info_go(c, optv, d, len);
        return;
    case NBD_OPT_STRUCTURED_REPLY:
        if (len != 0) {
            opt_reply(c, optv, NBD_REP_ERR_INVALID, NULL, 0);
            return;
        }
        c->structured = true;
        opt_reply(c, optv, NBD_REP_ACK, NULL, 0);
        return;
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        opt_meta(c, optv, d, len);
        return;
    default:
        /* STARTTLS, extended headers, ...: not here. */
        opt_reply(c, optv, NBD_REP_ERR_UNSUP, NULL, 0);
        return;
    }
}
