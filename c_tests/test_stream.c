/*
 * Streams lose no byte: READ and WRITE on a pipe and on a stream socketpair, the
 * engine's end blocking and O_NONBLOCK, with the peer's data arriving in pieces, the
 * peer shutting down mid-request, a slow reader, and a reader that goes away. Every
 * byte is checked. A continuation of a short transfer on a stream must not carry a
 * position (a socket refuses one with -ESPIPE); a READ that got bytes and then meets
 * EOF returns those bytes; a WRITE that moved bytes and then failed (-EPIPE) returns
 * the bytes moved, as write(2) does.
 */
#include <sys/socket.h>
#include <termios.h>

#include "test_util.h"

#define PIECES_LEN 65536     /* READ size for the "pieces" case */
#define FIRST 100            /* bytes waiting before the READ is submitted */
#define BIG (1u << 20)       /* WRITE size for the slow-reader cases */
#define TAKEN 65536          /* what the reader takes before it goes away */

enum kind { PIPE, SOCKET };
static const char *kind_name(enum kind k) { return k == PIPE ? "pipe" : "socket"; }

typedef struct {
    enum kind kind;
    int engine_fd, peer_fd;
    const unsigned char *data; /* what the peer writes / the engine writes */
    size_t len;
    size_t got;                /* reader threads: bytes received */
    unsigned char *rbuf;       /* reader threads: where they go */
} peer_t;

/* A connected pair: `engine_fd` is the end the engine reads (`engine_writes` = 0) or
 * writes; O_NONBLOCK only on that end when `nonblock`. */
static void make_pair(peer_t *p, enum kind kind, int engine_writes, int nonblock)
{
    int fds[2];
    p->kind = kind;
    if (kind == PIPE) {
        CHECK(pipe2(fds, O_CLOEXEC) == 0, "pipe2: %s", strerror(errno));
        p->engine_fd = engine_writes ? fds[1] : fds[0];
        p->peer_fd = engine_writes ? fds[0] : fds[1];
    } else {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0, "socketpair: %s",
              strerror(errno));
        p->engine_fd = fds[0];
        p->peer_fd = fds[1];
    }
    if (nonblock) {
        int fl = fcntl(p->engine_fd, F_GETFL);
        CHECK(fl >= 0 && fcntl(p->engine_fd, F_SETFL, fl | O_NONBLOCK) == 0, "O_NONBLOCK");
    }
}

static void write_all(int fd, const unsigned char *p, size_t len)
{
    while (len) {
        ssize_t n = write(fd, p, len);
        CHECK(n > 0, "peer write: %s", n < 0 ? strerror(errno) : "0");
        p += n;
        len -= (size_t)n;
    }
}

/* The peer's end of the stream is done: EOF for the engine's reads. */
static void peer_shutdown(peer_t *p)
{
    if (p->kind == SOCKET)
        CHECK(shutdown(p->peer_fd, SHUT_WR) == 0, "shutdown: %s", strerror(errno));
    else {
        close(p->peer_fd);
        p->peer_fd = -1;
    }
}

/* Writes data[FIRST..len] in pieces of 1000 bytes, 1 ms apart, after 30 ms. */
static void *writer_pieces(void *arg)
{
    peer_t *p = arg;
    usleep(30 * 1000);
    for (size_t off = FIRST; off < p->len; off += 1000) {
        size_t n = p->len - off < 1000 ? p->len - off : 1000;
        write_all(p->peer_fd, p->data + off, n);
        usleep(1000);
    }
    return NULL;
}

/* Shuts the peer's end down after 30 ms (the engine's READ holds FIRST bytes by then). */
static void *shutdown_later(void *arg)
{
    usleep(30 * 1000);
    peer_shutdown(arg);
    return NULL;
}

/* Reads `len` bytes in pieces of at most 8 KiB with 200 µs pauses; with `len` <
 * the engine's WRITE, then closes its end (the reader goes away). */
static void *slow_reader(void *arg)
{
    peer_t *p = arg;
    while (p->got < p->len) {
        size_t want = p->len - p->got < 8192 ? p->len - p->got : 8192;
        ssize_t n = read(p->peer_fd, p->rbuf + p->got, want);
        CHECK(n > 0, "slow reader: %s", n < 0 ? strerror(errno) : "early EOF");
        p->got += (size_t)n;
        usleep(200);
    }
    return NULL;
}

static tu_waiter_t w;
static int64_t res;

static void on_done(void *ctx, int64_t r)
{
    (void)ctx;
    res = r;
    tu_waiter_add(&w, 1);
}

static void submit(ioeng_t *h, ioeng_op_t op, int fd, void *buf, uint64_t len, uint64_t off)
{
    ioeng_req_t q = tu_req(op, IOENG_PRIO_NORMAL, fd, buf, len, off);
    int rc = ioeng_submit(h, &q, on_done, NULL);
    CHECK(rc == 0, "ioeng_submit = %d", rc);
}

static uint64_t waited;
static void wait_done(void) { tu_waiter_wait(&w, ++waited, 30); }

static void close_pair(peer_t *p)
{
    close(p->engine_fd);
    if (p->peer_fd >= 0)
        close(p->peer_fd);
}

int main(void)
{
    tu_init("test_stream", 120);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&w);
    /* Engine threads block SIGPIPE anyway; this is for the test's own peer writes. */
    signal(SIGPIPE, SIG_IGN);

    unsigned char *data = tu_alloc(BIG), *buf = tu_alloc(BIG), *rbuf = tu_alloc(BIG);
    tu_fill(data, BIG, 42);
    ioeng_t *h = tu_open(be, 4, 0, 0, 0);
    int cases = 0;

    for (int k = PIPE; k <= SOCKET; k++) {
        for (int nb = 0; nb <= 1; nb++) {
            const char *mode = nb ? "O_NONBLOCK" : "blocking";
            peer_t p;
            pthread_t t;

            /* 1. A READ finds FIRST bytes; the rest arrives in pieces later. The offset
             * given is not 0: streams ignore it. */
            make_pair(&p, (enum kind)k, 0, nb);
            p.data = data;
            p.len = PIECES_LEN;
            write_all(p.peer_fd, data, FIRST);
            memset(buf, 0, PIECES_LEN);
            submit(h, IOENG_OP_READ, p.engine_fd, buf, PIECES_LEN, 4096);
            CHECK(pthread_create(&t, NULL, writer_pieces, &p) == 0, "pthread_create");
            wait_done();
            pthread_join(t, NULL);
            CHECK(res == PIECES_LEN, "%s %s: READ in pieces: res %s, want %d",
                  kind_name(p.kind), mode, tu_errname(res), PIECES_LEN);
            CHECK(memcmp(buf, data, PIECES_LEN) == 0, "%s %s: READ in pieces: data differs",
                  kind_name(p.kind), mode);
            close_pair(&p);
            cases++;

            /* 2. A READ finds FIRST bytes, then the peer shuts down: those bytes. */
            make_pair(&p, (enum kind)k, 0, nb);
            write_all(p.peer_fd, data, FIRST);
            memset(buf, 0, 4096);
            submit(h, IOENG_OP_READ, p.engine_fd, buf, 4096, 0);
            CHECK(pthread_create(&t, NULL, shutdown_later, &p) == 0, "pthread_create");
            wait_done();
            pthread_join(t, NULL);
            CHECK(res == FIRST, "%s %s: READ then peer shutdown: res %s, want %d",
                  kind_name(p.kind), mode, tu_errname(res), FIRST);
            CHECK(memcmp(buf, data, FIRST) == 0, "%s %s: READ then shutdown: data differs",
                  kind_name(p.kind), mode);
            close_pair(&p);
            cases++;

            /* 3. A 1 MiB WRITE to a slow reader: all of it, in order. */
            make_pair(&p, (enum kind)k, 1, nb);
            p.len = BIG;
            p.got = 0;
            p.rbuf = rbuf;
            memset(rbuf, 0, BIG);
            CHECK(pthread_create(&t, NULL, slow_reader, &p) == 0, "pthread_create");
            submit(h, IOENG_OP_WRITE, p.engine_fd, data, BIG, 0);
            wait_done();
            pthread_join(t, NULL);
            CHECK(res == BIG, "%s %s: WRITE to a slow reader: res %s, want %u",
                  kind_name(p.kind), mode, tu_errname(res), BIG);
            CHECK(memcmp(rbuf, data, BIG) == 0, "%s %s: slow reader got different bytes",
                  kind_name(p.kind), mode);
            close_pair(&p);
            cases++;

            /* 4. The reader takes TAKEN bytes and goes away: the WRITE reports the bytes
             * it moved (at least what the reader got, less than all), not -EPIPE. */
            make_pair(&p, (enum kind)k, 1, nb);
            p.len = TAKEN;
            p.got = 0;
            p.rbuf = rbuf;
            CHECK(pthread_create(&t, NULL, slow_reader, &p) == 0, "pthread_create");
            submit(h, IOENG_OP_WRITE, p.engine_fd, data, BIG, 0);
            pthread_join(t, NULL);
            close(p.peer_fd);
            p.peer_fd = -1;
            wait_done();
            CHECK(res >= TAKEN && res < BIG,
                  "%s %s: WRITE whose reader left after %d bytes: res %s, want the bytes "
                  "moved (%d..%u)", kind_name(p.kind), mode, TAKEN, tu_errname(res), TAKEN,
                  BIG - 1);
            CHECK(memcmp(rbuf, data, TAKEN) == 0, "%s %s: the reader got different bytes",
                  kind_name(p.kind), mode);
            printf("%-6s %-10s  pieces %d  shutdown %d  slow reader %u  reader gone: %" PRId64
                   " bytes moved\n", kind_name(p.kind), mode, PIECES_LEN, FIRST, BIG, res);
            close_pair(&p);
            cases++;
        }
    }
    /* A character device: the slave side of a pty in raw mode. A READ finds FIRST
     * bytes and the rest arrives in pieces; then a READ finds FIRST bytes and the
     * master hangs up (the slave's read(2) then fails with EIO: the bytes it got are
     * the answer). */
    for (int nb = 0; nb <= 1; nb++) {
        const char *mode = nb ? "O_NONBLOCK" : "blocking";
        for (int hangup = 0; hangup <= 1; hangup++) {
            int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
            CHECK(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0, "posix_openpt");
            int slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC | (nb ? O_NONBLOCK : 0));
            CHECK(slave >= 0, "open pty slave: %s", strerror(errno));
            struct termios tio;
            CHECK(tcgetattr(slave, &tio) == 0, "tcgetattr");
            cfmakeraw(&tio);
            CHECK(tcsetattr(slave, TCSANOW, &tio) == 0, "tcsetattr");
            peer_t p = { .kind = PIPE, .engine_fd = slave, .peer_fd = master, .data = data,
                         .len = 4096 };
            write_all(master, data, FIRST);
            usleep(10 * 1000); /* let the line discipline pass the first bytes on */
            memset(buf, 0, 4096);
            submit(h, IOENG_OP_READ, slave, buf, 4096, 512);
            pthread_t t;
            CHECK(pthread_create(&t, NULL, hangup ? shutdown_later : writer_pieces, &p) == 0,
                  "pthread_create");
            wait_done();
            pthread_join(t, NULL);
            int64_t want = hangup ? FIRST : 4096;
            CHECK(res == want, "pty %s %s: READ res %s, want %" PRId64, mode,
                  hangup ? "hang-up" : "pieces", tu_errname(res), want);
            CHECK(memcmp(buf, data, (size_t)want) == 0, "pty %s: data differs", mode);
            close(slave);
            if (p.peer_fd >= 0)
                close(p.peer_fd);
            cases++;
        }
        printf("pty    %-10s  pieces 4096  hang-up %d\n", mode, FIRST);
    }

    tu_close(h);
    free(data);
    free(buf);
    free(rbuf);
    tu_waiter_destroy(&w);
    printf("test_stream [%s]: %d stream cases, every byte checked\n", tu_backend_name(be),
           cases);
    return 0;
}
