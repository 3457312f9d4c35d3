/*
 * ioeng_nbd_fuzz.c - libFuzzer target for the ioeng_nbd server: the server's own files
 * (compiled with -DIOENG_NBD_NO_MAIN), its real event loop, accept path and engine
 * (libioeng on IOENG_TEST_BACKEND, in IOENG_TEST_MODE: POLLED, the server's default, unless
 * "threads"), a real export file on /tmp (O_DIRECT
 * when the file system has it, so the read-modify-write path runs too). Each input is
 * one client connection over 127.0.0.1:
 *
 *   byte 0: flags: bit 0 end with a reset (else a FIN, then read to EOF); bit 1 the
 *           harness does the handshake (fixed newstyle, NBD_OPT_GO "") so the rest goes
 *           straight to request parsing; bit 2 a small client receive buffer
 *   byte 1: chunk size for sending the rest (0: all at once); the server runs a loop
 *           round between chunks, so messages arrive split
 *   rest:   bytes sent to the server
 *
 * Every input must end with the server having closed the connection and freed it (every
 * request back from the engine) within 10 s; otherwise the target aborts (a hang). Any
 * sanitizer report, leak or exit is a failure. Run: see examples_c/Makefile fuzz-nbd.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../ioeng_nbd.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct server srv;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static char path[] = "/tmp/ioeng_nbd_fuzz.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || ftruncate(fd, 1 << 20) != 0) {
        perror("export file");
        abort();
    }
    close(fd);
    const char *be = getenv("IOENG_TEST_BACKEND");
    const char *mode = getenv("IOENG_TEST_MODE"); /* the server's default, POLLED, if unset */
    srv.opt = (struct nbd_opts){
        .path = path, .name = "", .bind = "127.0.0.1", .depth = 64, .port = 0,
        .idle_poll_us = IOENG_IDLE_POLL_NEVER, .max_conns = 4, .hs_timeout_s = 10,
        .max_buf = 2u << 20, /* small: back-pressure is part of what is fuzzed */
        .polled = !(mode && !strcmp(mode, "threads")),
        .backend = be && !strcmp(be, "aio")     ? IOENG_BACKEND_AIO
                   : be && !strcmp(be, "uring") ? IOENG_BACKEND_URING
                                                : IOENG_BACKEND_AUTO,
    };
    srv.ex.fd_buf = srv.ex.fd_direct = -1;
    srv.epfd = srv.evfd = srv.sigfd = srv.lfd = -1;
    signal(SIGPIPE, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    server_open(&srv, &none);
    unlink(path); /* the server holds it open */
    /* Quiet from now on (IOENG_NBD_FUZZ_LOG=1 keeps the server's messages). */
    const char *log = getenv("IOENG_NBD_FUZZ_LOG");
    nbd_quiet = !(log && !strcmp(log, "1"));
    return 0;
}

static double elapsed(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Reads and drops whatever the server sent; false once the server has closed. */
static bool drain(int fd)
{
    char buf[65536];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        if (n < 0 && errno == EINTR)
            continue;
        return false; /* EOF or reset */
    }
}

static void hang(const char *what)
{
    fprintf(stderr, "ioeng_nbd_fuzz: HANG: %s (conns %u, live requests %u)\n", what, srv.nconns,
            srv.live_reqs);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return -1; /* not added to the corpus */
    uint8_t flags = data[0];
    size_t chunk = data[1] ? data[1] : (size_t)-1;
    data += 2;
    size -= 2;

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        abort();
    if (flags & 4) {
        int small = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    }
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)srv.opt.port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Non-blocking, with the server running meanwhile: the server and this client share
     * the thread, so a blocking connect that waits for room in the listen backlog could
     * only end by a signal (libFuzzer's -timeout alarm: EINTR). */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0)
        abort();
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        if (errno != EINPROGRESS && errno != EINTR) {
            perror("connect");
            abort();
        }
        for (;;) {
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            if (poll(&p, 1, 0) == 1)
                break;
            server_round(&srv, 1);
            if (elapsed(&t0) > 10)
                hang("connecting");
        }
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            fprintf(stderr, "connect: %s\n", strerror(err));
            abort();
        }
    }
    if (flags & 2) {
        uint8_t hs[4 + 16 + 6];
        put32(hs, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
        put64(hs + 4, NBD_IHAVEOPT);
        put32(hs + 12, NBD_OPT_GO);
        put32(hs + 16, 6);
        put32(hs + 20, 0); /* name "" */
        put16(hs + 24, 0); /* no info requests */
        if (send(fd, hs, sizeof(hs), MSG_NOSIGNAL) != (ssize_t)sizeof(hs))
            abort();
    }
    /* Send the input (in chunks), running the server in between. */
    size_t sent = 0;
    bool open = true;
    while (sent < size && open) {
        size_t n = size - sent < chunk ? size - sent : chunk;
        ssize_t w = send(fd, data + sent, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0)
            sent += (size_t)w;
        else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break; /* the server closed the connection */
        server_round(&srv, w > 0 ? 0 : 1);
        open = drain(fd);
        if (elapsed(&t0) > 10)
            hang("sending the input");
    }
    if (flags & 1) {
        struct linger lg = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
        fd = -1;
    } else {
        shutdown(fd, SHUT_WR);
    }
    /* The server must close its side and free the connection. */
    while (srv.conns || (fd >= 0 && open)) {
        server_round(&srv, 1);
        if (fd >= 0 && open)
            open = drain(fd);
        if (elapsed(&t0) > 10)
            hang(fd >= 0 && open ? "the server never closed the connection"
                                 : "the connection was never freed");
    }
    if (fd >= 0)
        close(fd);
    return 0;
}
