/*
 * ioeng_nbd.c - an NBD server that exports one file or block device through libioeng.
 *
 *   ioeng_nbd [--backend aio|uring|auto] [--mode polled|threads] [--depth N] [--port N] [--bind ADDR]
 *             [--socket PATH] [--read-only] [--name NAME] [--no-direct] [--idle-poll-us N|never|default]
 *             [--handshake-timeout S] [--max-connections N] [--max-buffer-bytes N[KMG]]
 *             [--verbose] FILE|BLOCKDEV
 *
 * Files: this one (options, setup, accept, event loop, shutdown), ioeng_nbd_conn.c
 * (connections), ioeng_nbd_handshake.c (options), ioeng_nbd_io.c (requests and the
 * engine), ioeng_nbd.h (shared types), ioeng_nbd_proto.h (wire constants).
 *
 * Protocol: fixed newstyle handshake (NBD_OPT_GO, NBD_OPT_INFO, NBD_OPT_EXPORT_NAME,
 * NBD_OPT_ABORT, NBD_OPT_LIST, NBD_OPT_STRUCTURED_REPLY, and NBD_OPT_LIST_META_CONTEXT /
 * NBD_OPT_SET_META_CONTEXT for base:allocation; anything else gets NBD_REP_ERR_UNSUP),
 * then READ, WRITE (FUA), FLUSH, TRIM (FUA), WRITE_ZEROES (NO_HOLE, FAST_ZERO, FUA), CACHE,
 * BLOCK_STATUS (holes by SEEK_DATA/SEEK_HOLE) and DISC. With structured replies READ and
 * BLOCK_STATUS get one chunk each, everything else simple replies. TRIM and WRITE_ZEROES
 * punch holes or zero ranges with the engine's FALLOCATE (ioeng_nbd_io.c, "Zeroing").
 * Listens on TCP (--bind: IPv4, or IPv6 where "::" takes both) or a Unix socket
 * (--socket PATH, for nbd+unix:// clients).
 *
 * Threads: one event-loop thread (this file: epoll over the listening socket, a
 * signalfd, the engine's event fd or the completion eventfd, and every client socket,
 * all non-blocking). Requests are read and checked on the loop thread and submitted
 * with ioeng_submit(); the completion callback only pushes the request onto a lock-free
 * stack. The loop drains the stack, queues the reply (replies go out in completion
 * order, matched by the client's cookie) and writes them with one sendmsg per connection
 * per loop round. Callbacks therefore never block on a slow client.
 *   --mode polled (the default): the engine is IOENG_MODE_POLLED with
 * IOENG_CONFIG_SINGLE_POLLER, run by the loop thread itself: after each round's socket
 * input it calls ioeng_poll(h, 0, 0), which hands what was submitted to the kernel and
 * runs the callbacks of finished IO there, and the engine's event fd in the epoll set
 * wakes the loop for completions and engine timers. No thread hand-off per request:
 * with AIO on tmpfs or a buffered export the IO even completes inside that poll, and
 * the reply leaves in the same round.
 *   --mode threads: IOENG_MODE_THREADS; the callbacks run on the engine's completer
 * thread, which writes the completion eventfd when the stack was empty.
 *
 * Ownership of a request (struct req): the loop thread owns it, except between a
 * successful ioeng_submit() and the callback that brings `pending` to zero; in that
 * window the engine owns its buffer and the callbacks write only `ioerr`/`pending`
 * (atomics). The push onto the completion stack (release) and the loop's exchange
 * (acquire) hand it back.
 *
 * One IO path per file: with O_DIRECT when the file system allows (not --no-direct,
 * and the size is a multiple of the direct-IO alignment: statx STATX_DIOALIGN, else
 * 4096), every READ and WRITE goes through the O_DIRECT descriptor; otherwise every one
 * is buffered. Mixing the two on one page loses acknowledged writes (the kernel cannot
 * invalidate a cached page a buffered write dirtied beside a direct write). Unaligned
 * requests on the direct descriptor read the rounded-out range, and writes are a
 * read-modify-write of their edge blocks, serialised against overlapping writes
 * (ioeng_nbd_io.c, "Write ordering"). FUA writes use IOENG_REQ_DSYNC when the engine
 * accepts it (probed at start on a memfd), otherwise WRITE then FDATASYNC before the reply. FLUSH is one
 * FDATASYNC (per inode, so it covers both descriptors and every connection: hence
 * NBD_FLAG_CAN_MULTI_CONN).
 *
 * Bad input: a request out of range, a READ too long (> 32 MiB), one with unknown flags
 * or of an unknown type gets an error reply (a WRITE's payload is read and dropped
 * first, so the stream stays in step); a WRITE longer than 32 MiB gets EINVAL and the
 * connection is closed (as qemu-nbd); a bad magic number or a connection that ends in
 * the middle of a message closes that connection only.
 *
 * Limits (abuse must not lock others out or take unbounded memory): at most
 * --max-connections (default 256) connections, each closed if still negotiating after
 * --handshake-timeout (default 10 s, as qemu-nbd); request buffers held by the whole
 * server are capped by --max-buffer-bytes (default 256 MiB): a request header is not
 * consumed while its buffer would pass the cap or its connection's limit (back-pressure:
 * that socket is not read). The request pool is bounded, and after 1 s without a request
 * it is freed and the heap trimmed. If accept4 runs out of descriptors or memory the
 * listener is left alone for 100 ms (it stays readable: retrying at once would spin). SIGINT/SIGTERM: stop accepting,
 * close connections still negotiating, answer requests read from then on with
 * NBD_ESHUTDOWN (the client must then disconnect), send every in-flight reply, close
 * each connection once it is quiet (SHUTDOWN_QUIET_MS without a request, every reply
 * sent; if the peer has not acknowledged the replies yet, shut the write side and drop
 * input until the peer closes: a close with unread input resets the connection, which
 * loses them), or after 30 s regardless, close the engine, print counters to stderr and
 * exit 0. Option replies queued during the handshake are capped apart, at a quarter of
 * --max-buffer-bytes.
 * A peer's hang-up (EPOLLHUP: at once on a Unix socket) first reads and runs what the
 * peer sent before it closed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <malloc.h>
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
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "ioeng_nbd.h"

bool nbd_quiet; /* logmsg() prints nothing (the fuzz target's millions of sessions) */

void logmsg(const char *fmt, ...)
{
    if (nbd_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("ioeng_nbd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("ioeng_nbd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* epoll data for the non-client fds: only their addresses matter (no state). */
static char tag_listen, tag_signal, tag_event, tag_engine;

static void accept_all(struct server *srv)
{
    for (;;) {
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM, ...: the pending connection stays queued
             * and the listener readable; stop watching it for a while instead of
             * spinning (serve() resumes it). */
            logmsg("accept: %s; not accepting for %d ms", strerror(errno), ACCEPT_PAUSE_MS);
            srv->stats.accept_pauses++;
            epoll_ctl(srv->epfd, EPOLL_CTL_DEL, srv->lfd, NULL);
            srv->accept_resume_ns = now_ns() + ACCEPT_PAUSE_MS * 1000000ull;
            return;
        }
        if (srv->nconns >= srv->opt.max_conns) {
            logmsg("too many connections (%u); refusing one", srv->nconns);
            srv->stats.refused_conns++;
            close(fd);
            continue;
        }
        int one = 1;
        if (!srv->opt.socket_path)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        uint8_t *rb = malloc(RBUF_SIZE);
        if (!c || !rb)
            die("out of memory");
        c->srv = srv;
        c->fd = fd;
        c->rbuf = rb;
        c->id = (unsigned)++srv->stats.conns;
        c->st = ST_HS_FLAGS;
        c->events = EPOLLIN;
        struct epoll_event e = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(srv->epfd, EPOLL_CTL_ADD, fd, &e) != 0)
            die("epoll_ctl ADD: %s", strerror(errno));
        c->next = srv->conns;
        if (srv->conns)
            srv->conns->prev = c;
        srv->conns = c;
        srv->nconns++;
        if (srv->opt.hs_timeout_s) { /* same timeout for all: the list stays sorted */
            c->hs_deadline_ns = now_ns() + srv->opt.hs_timeout_s * 1000000000ull;
            c->in_hs = true;
            c->hs_prev = srv->hs_tail;
            if (srv->hs_tail)
                srv->hs_tail->hs_next = c;
            else
                srv->hs_head = c;
            srv->hs_tail = c;
        }
        uint8_t g[18];
        put64(g, NBD_MAGIC);
        put64(g + 8, NBD_IHAVEOPT);
        put16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
        conn_send_copy(c, g, sizeof(g), NULL, 0);
    }
}

static void begin_shutdown(struct server *srv)
{
    if (srv->stopping) {
        logmsg("second signal: dropping every connection now");
        for (struct conn *c = srv->conns; c; c = c->next)
            conn_fail(c);
        return;
    }
    srv->stopping = true;
    clock_gettime(CLOCK_MONOTONIC, &srv->stop_at);
    srv->stop_ns = now_ns();
    logmsg("signal: no new connections; finishing in-flight requests");
    epoll_ctl(srv->epfd, EPOLL_CTL_DEL, srv->lfd, NULL);
    close(srv->lfd);
    srv->lfd = -1;
    if (srv->opt.socket_path)
        unlink(srv->opt.socket_path);
    srv->accept_resume_ns = 0;
    /* Every connection goes on reading. One still negotiating answers each option from
     * now on with NBD_REP_ERR_SHUTDOWN (but NBD_OPT_ABORT: handle_option), which the
     * protocol asks for instead of a hard disconnect; it is closed when the client
     * aborts or closes, or by the handshake timeout. In transmission each request read
     * from now on gets NBD_ESHUTDOWN, on which a client disconnects; such a connection
     * is closed once it is quiet (SHUTDOWN_QUIET_MS without a request, every request
     * answered, nothing half received: conn_work). The grace bounds both. */
    for (struct conn *c = srv->conns; c; c = c->next)
        conn_touch(c);
}

/* ======================================================================== */
/* Setup                                                                    */
/* ======================================================================== */

static void open_export(struct server *srv)
{
    const struct nbd_opts *opt = &srv->opt;
    struct nbd_export *ex = &srv->ex;
    int mode = opt->read_only ? O_RDONLY : O_RDWR;
    ex->fd_buf = open(opt->path, mode | O_CLOEXEC);
    if (ex->fd_buf < 0)
        die("open %s: %s", opt->path, strerror(errno));
    struct stat sb;
    if (fstat(ex->fd_buf, &sb) != 0)
        die("fstat %s: %s", opt->path, strerror(errno));
    ex->falloc_align = 1;
    ex->wz_fd = -1;
    ex->blkdev = S_ISBLK(sb.st_mode);
    if (ex->blkdev) {
        if (ioctl(ex->fd_buf, BLKGETSIZE64, &ex->size) != 0)
            die("BLKGETSIZE64 %s: %s", opt->path, strerror(errno));
        int lbs = 0;
        if (ioctl(ex->fd_buf, BLKSSZGET, &lbs) == 0 && lbs > 0)
            ex->falloc_align = (uint32_t)lbs;
        else
            ex->falloc_align = 4096; /* cannot tell: the largest common sector */
        /* A partition has no queue of its own: its disk's is one directory up. */
        static const char *const up[] = {"", "../"};
        for (size_t i = 0; i < sizeof(up) / sizeof(up[0]) && ex->wz_fd < 0; i++) {
            char p[96];
            snprintf(p, sizeof(p), "/sys/dev/block/%u:%u/%squeue/write_zeroes_max_bytes",
                     major(sb.st_rdev), minor(sb.st_rdev), up[i]);
            ex->wz_fd = open(p, O_RDONLY | O_CLOEXEC);
        }
        if (ex->wz_fd < 0 && !opt->read_only)
            logmsg("%s: no write_zeroes_max_bytes in sysfs; FAST_ZERO with NO_HOLE is refused",
                   opt->path);
    } else if (S_ISREG(sb.st_mode)) {
        ex->size = (uint64_t)sb.st_size;
    } else {
        die("%s: not a regular file or block device", opt->path);
    }
    if (!opt->no_direct) {
        ex->fd_direct = open(opt->path, mode | O_CLOEXEC | O_DIRECT);
        if (ex->fd_direct < 0)
            logmsg("O_DIRECT open of %s failed (%s); every request is buffered", opt->path,
                   strerror(errno));
    }
    ex->dio_align = 4096;
#ifdef STATX_DIOALIGN
    struct statx sx;
    if (ex->fd_direct >= 0 && statx(ex->fd_direct, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
        (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align > 0 &&
        sx.stx_dio_mem_align <= BUF_ALIGN)
        ex->dio_align = sx.stx_dio_offset_align;
#endif
    if (ex->fd_direct >= 0 && ex->size % ex->dio_align != 0) {
        /* The last block is partial: a direct RMW of it would extend the file. */
        logmsg("size of %s is not a multiple of %u; every request is buffered", opt->path,
               ex->dio_align);
        close(ex->fd_direct);
        ex->fd_direct = -1;
    }
    /* Punch / zero-range granularity: the file system's block (a block device's
     * st_blksize is its page-cache block); at least the direct alignment. */
    ex->hole_align = 4096;
    if (sb.st_blksize >= 512 && sb.st_blksize <= (1 << 20) &&
        (sb.st_blksize & (sb.st_blksize - 1)) == 0)
        ex->hole_align = (uint32_t)sb.st_blksize;
    if (ex->hole_align < ex->dio_align)
        ex->hole_align = ex->dio_align;
    if (ex->hole_align < ex->falloc_align)
        ex->hole_align = ex->falloc_align;
    ex->can_punch = ex->can_zero_range = true; /* until fallocate says EOPNOTSUPP */
    ex->tflags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE;
    if (opt->read_only)
        ex->tflags |= NBD_FLAG_READ_ONLY;
    else
        ex->tflags |= NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_FAST_ZERO;
}

/* A Unix socket at --socket PATH (an old socket there is replaced; any other file is an
 * error), else TCP on --bind: an IPv4 or IPv6 address (brackets allowed); "::" listens
 * on IPv6 and IPv4 (IPV6_V6ONLY off), whatever the system default. */
static void open_listener(struct server *srv)
{
    struct nbd_opts *opt = &srv->opt;
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } a;
    memset(&a, 0, sizeof(a));
    socklen_t alen;
    if (opt->socket_path) {
        if (strlen(opt->socket_path) >= sizeof(a.un.sun_path))
            die("--socket %s: path too long", opt->socket_path);
        struct stat st;
        if (lstat(opt->socket_path, &st) == 0) {
            if (!S_ISSOCK(st.st_mode))
                die("--socket %s: exists and is not a socket", opt->socket_path);
            unlink(opt->socket_path);
        }
        a.un.sun_family = AF_UNIX;
        strcpy(a.un.sun_path, opt->socket_path);
        alen = sizeof(a.un);
    } else {
        char host[INET6_ADDRSTRLEN + 2];
        size_t n = strlen(opt->bind);
        if (n >= sizeof(host))
            die("--bind %s: not an IPv4 or IPv6 address", opt->bind);
        if (n >= 2 && opt->bind[0] == '[' && opt->bind[n - 1] == ']') {
            memcpy(host, opt->bind + 1, n - 2);
            host[n - 2] = '\0';
        } else {
            memcpy(host, opt->bind, n + 1);
        }
        if (inet_pton(AF_INET, host, &a.in.sin_addr) == 1) {
            a.in.sin_family = AF_INET;
            a.in.sin_port = htons((uint16_t)opt->port);
            alen = sizeof(a.in);
        } else if (inet_pton(AF_INET6, host, &a.in6.sin6_addr) == 1) {
            a.in6.sin6_family = AF_INET6;
            a.in6.sin6_port = htons((uint16_t)opt->port);
            alen = sizeof(a.in6);
        } else {
            die("--bind %s: not an IPv4 or IPv6 address", opt->bind);
        }
    }
    srv->lfd = socket(a.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (srv->lfd < 0)
        die("socket: %s", strerror(errno));
    int one = 1, zero = 0;
    if (a.sa.sa_family != AF_UNIX)
        setsockopt(srv->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a.sa.sa_family == AF_INET6 &&
        setsockopt(srv->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) != 0)
        die("IPV6_V6ONLY: %s", strerror(errno));
    if (bind(srv->lfd, &a.sa, alen) != 0) {
        if (opt->socket_path)
            die("bind %s: %s", opt->socket_path, strerror(errno));
        die("bind %s port %d: %s", opt->bind, opt->port, strerror(errno));
    }
    if (listen(srv->lfd, 128) != 0)
        die("listen: %s", strerror(errno));
    if (opt->socket_path)
        return;
    getsockname(srv->lfd, &a.sa, &alen);
    opt->port = ntohs(a.sa.sa_family == AF_INET ? a.in.sin_port : a.in6.sin6_port);
    opt->bind_v6 = a.sa.sa_family == AF_INET6;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ioeng_nbd [options] FILE|BLOCKDEV\n"
            "  --backend aio|uring|auto  libioeng backend (default auto: aio for a file on\n"
            "                            tmpfs, else, or if AIO is refused, the library's\n"
            "                            choice, io_uring where the kernel has it)\n"
            "  --mode polled|threads     run the engine on the loop thread (default) or on\n"
            "                            its own submitter and completer threads\n"
            "  --depth N                 engine in-flight budget (default 128)\n"
            "  --port N                  TCP port (default 10809; 0 = any free port)\n"
            "  --bind ADDR               IPv4 or IPv6 address to listen on (default\n"
            "                            127.0.0.1; :: = every IPv6 and IPv4 address)\n"
            "  --socket PATH             listen on this Unix socket instead of TCP\n"
            "  --read-only               export read-only\n"
            "  --name NAME               export name (default \"\")\n"
            "  --no-direct               never use O_DIRECT\n"
            "  --verbose                 log every error reply\n"
            "  --idle-poll-us N|never|default  how long idle engine threads poll before\n"
            "                            sleeping (default never: least CPU per IO)\n"
            "  --handshake-timeout S     close connections still negotiating after S seconds\n"
            "                            (default 10; 0 = never)\n"
            "  --max-connections N       connections at once (default 256)\n"
            "  --max-buffer-bytes N[KMG] request buffers held by the whole server; reading\n"
            "                            pauses above it (default 256M); option replies of\n"
            "                            connections negotiating: a quarter of it\n"
            "Prints \"listening on ADDR:PORT\" ([ADDR]:PORT for IPv6, unix:PATH for --socket)\n"
            "on stdout when ready. SIGINT/SIGTERM stop it.\n");
}

static void parse_args(struct nbd_opts *opt, int argc, char **argv)
{
    static const struct option lo[] = {
        { "backend", required_argument, NULL, 'b' }, { "depth", required_argument, NULL, 'd' },
        { "port", required_argument, NULL, 'p' },    { "bind", required_argument, NULL, 'B' },
        { "read-only", no_argument, NULL, 'r' },     { "name", required_argument, NULL, 'n' },
        { "no-direct", no_argument, NULL, 'D' },     { "help", no_argument, NULL, 'h' },
        { "verbose", no_argument, NULL, 'v' },       { "idle-poll-us", required_argument, NULL, 'i' },
        { "handshake-timeout", required_argument, NULL, 'T' },
        { "max-connections", required_argument, NULL, 'C' },
        { "max-buffer-bytes", required_argument, NULL, 'M' },
        { "socket", required_argument, NULL, 'S' },
        { "mode", required_argument, NULL, 'm' },
        { NULL, 0, NULL, 0 }
    };
    int ch;
    char *end;
    while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (ch) {
        case 'b':
            if (!strcmp(optarg, "aio"))
                opt->backend = IOENG_BACKEND_AIO;
            else if (!strcmp(optarg, "uring"))
                opt->backend = IOENG_BACKEND_URING;
            else if (!strcmp(optarg, "auto"))
                opt->backend = IOENG_BACKEND_AUTO;
            else
                die("--backend: aio, uring or auto");
            break;
        case 'm':
            if (!strcmp(optarg, "polled"))
                opt->polled = true;
            else if (!strcmp(optarg, "threads"))
                opt->polled = false;
            else
                die("--mode: polled or threads");
            break;
        case 'd': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > IOENG_MAX_DEPTH)
                die("--depth: 1..%d", IOENG_MAX_DEPTH);
            opt->depth = (unsigned)v;
            break;
        }
        case 'p': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v > 65535)
                die("--port: 0..65535");
            opt->port = (int)v;
            break;
        }
        case 'B': opt->bind = optarg; break;
        case 'S': opt->socket_path = optarg; break;
        case 'r': opt->read_only = true; break;
        case 'n':
            if (strlen(optarg) > NBD_MAX_STRING)
                die("--name: at most %u bytes", NBD_MAX_STRING);
            opt->name = optarg;
            break;
        case 'D': opt->no_direct = true; break;
        case 'v': opt->verbose = true; break;
        case 'i':
            if (!strcmp(optarg, "never")) {
                opt->idle_poll_us = IOENG_IDLE_POLL_NEVER;
            } else if (!strcmp(optarg, "default")) {
                opt->idle_poll_us = IOENG_IDLE_POLL_DEFAULT;
            } else {
                unsigned long v = strtoul(optarg, &end, 10);
                if (*end || v < 1 || v > 1000000)
                    die("--idle-poll-us: never, default or 1..1000000");
                opt->idle_poll_us = (uint32_t)v;
            }
            break;
        case 'T': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v > 3600)
                die("--handshake-timeout: 0..3600 seconds");
            opt->hs_timeout_s = (unsigned)v;
            break;
        }
        case 'C': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > 65536)
                die("--max-connections: 1..65536");
            opt->max_conns = (unsigned)v;
            break;
        }
        case 'M': {
            unsigned long long v = strtoull(optarg, &end, 10);
            unsigned shift = 0;
            if (*end == 'K' || *end == 'k')
                shift = 10, end++;
            else if (*end == 'M' || *end == 'm')
                shift = 20, end++;
            else if (*end == 'G' || *end == 'g')
                shift = 30, end++;
            if (*end || v < 1 || v > (1ull << 40) >> shift || (v << shift) < (1ull << 20))
                die("--max-buffer-bytes: 1M..1T (suffix K, M or G)");
            opt->max_buf = v << shift;
            break;
        }
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        exit(2);
    }
    opt->path = argv[optind];
}

static double since_stop(const struct server *srv)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - srv->stop_at.tv_sec) +
           (double)(now.tv_nsec - srv->stop_at.tv_nsec) / 1e9;
}

/* --backend auto: the library's choice (io_uring where the kernel has it), except for a
 * regular file on tmpfs. There io_uring cannot finish a read or write without blocking,
 * so it hands every one to an io-wq worker thread: a hop to another thread and back per
 * request, which costs more CPU per IO and, at QD1, latency. Linux AIO runs the same
 * request inside io_submit, a memory copy that never waits for a device (unless the
 * page was swapped out), on the loop thread. README "NBD server" has the numbers. A
 * block device's node is on devtmpfs, which says TMPFS_MAGIC too: hence regular files
 * only. */
static int auto_backend(const struct nbd_export *ex)
{
    struct statfs sf;
    if (!ex->blkdev && fstatfs(ex->fd_buf, &sf) == 0 && sf.f_type == TMPFS_MAGIC)
        return IOENG_BACKEND_AIO;
    return IOENG_BACKEND_AUTO;
}

/* The engine as the options say, then whether it takes IOENG_REQ_DSYNC. */
static void open_engine(struct server *srv)
{
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = srv->opt.backend;
    if (cfg.backend == IOENG_BACKEND_AUTO) {
        cfg.backend = auto_backend(&srv->ex);
        if (cfg.backend == IOENG_BACKEND_AIO)
            logmsg("backend auto: Linux AIO for a tmpfs export (io_uring would hand every "
                   "request to a worker thread)");
    }
    cfg.depth = srv->opt.depth;
    if (srv->opt.polled) {
        /* Only the loop thread polls and closes: the promise that lets io_uring batch
         * completion work for it (SINGLE_ISSUER | DEFER_TASKRUN). */
        cfg.mode = IOENG_MODE_POLLED;
        cfg.flags |= IOENG_CONFIG_SINGLE_POLLER;
        /* And every round polls after its submits (server_round), so they need not make
         * the event fd readable: no write of it per submit, and no drain per poll. */
        cfg.flags |= IOENG_CONFIG_POLL_AFTER_SUBMIT;
    }
    /* Idle engine threads sleep at once by default: the event loop already batches, and
     * polling threads compete with the loop (and io_uring's workers) for the CPU, which
     * costs more CPU per IO than the wake-ups save. */
    cfg.idle_poll_us = srv->opt.idle_poll_us;
    int rc = ioeng_open(&cfg, &srv->eng);
    if (rc != 0 && srv->opt.backend != cfg.backend) {
        /* AIO refused (aio-max-nr used up, AIO disabled): the default still starts, on the
         * library's own choice, as it did before it preferred AIO on tmpfs. */
        logmsg("backend auto: Linux AIO refused (ioeng_open: %s); using the library's choice",
               strerror(-rc));
        cfg.backend = IOENG_BACKEND_AUTO;
        rc = ioeng_open(&cfg, &srv->eng);
    }
    if (rc != 0)
        die("ioeng_open: %s", strerror(-rc));
    /* Before the first request (probe_dsync's), on the loop thread (the single poller). */
    int files[2] = { srv->ex.fd_buf, srv->ex.fd_direct };
    rc = ioeng_register_files(srv->eng, files, srv->ex.fd_direct >= 0 ? 2 : 1);
    if (rc == 0)
        srv->ex.registered = true;
    else
        logmsg("ioeng_register_files: %s; requests name the export's descriptors", strerror(-rc));
    probe_dsync(srv);
    srv->engfd = -1;
    if (srv->opt.polled) {
        srv->engfd = ioeng_event_fd(srv->eng);
        if (srv->engfd < 0)
            die("ioeng_event_fd: %s", strerror(-srv->engfd));
    }
}

/* epoll over the listener, a signalfd for the (blocked) signals in `ss` and the
 * engine's event fd (POLLED) or the completion eventfd (THREADS). */
static void open_loop_fds(struct server *srv, const sigset_t *ss)
{
    srv->epfd = epoll_create1(EPOLL_CLOEXEC);
    srv->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    srv->sigfd = signalfd(-1, ss, SFD_NONBLOCK | SFD_CLOEXEC);
    if (srv->epfd < 0 || srv->evfd < 0 || srv->sigfd < 0)
        die("epoll/eventfd/signalfd: %s", strerror(errno));
    struct epoll_event e = { .events = EPOLLIN, .data.ptr = &tag_listen };
    epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lfd, &e);
    e.data.ptr = &tag_signal;
    epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->sigfd, &e);
    if (srv->opt.polled) {
        e.data.ptr = &tag_engine;
        epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->engfd, &e);
    } else {
        e.data.ptr = &tag_event;
        epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->evfd, &e);
    }
}

static void announce(const struct server *srv)
{
    const struct nbd_opts *opt = &srv->opt;
    logmsg("exporting %s (%" PRIu64 " bytes%s), backend %s, mode %s, depth %u, O_DIRECT %s "
           "(align %u), FUA via %s, idle poll %s",
           opt->path, srv->ex.size, opt->read_only ? ", read-only" : "",
           ioeng_backend(srv->eng) == IOENG_BACKEND_URING ? "uring" : "aio",
           opt->polled ? "polled" : "threads", opt->depth,
           srv->ex.fd_direct >= 0 ? "on" : "off", srv->ex.dio_align,
           srv->dsync_ok ? "IOENG_REQ_DSYNC" : "WRITE+FDATASYNC",
           opt->idle_poll_us == IOENG_IDLE_POLL_NEVER ? "never"
           : opt->idle_poll_us == IOENG_IDLE_POLL_DEFAULT ? "default" : "bounded");
    if (opt->socket_path)
        printf("listening on unix:%s\n", opt->socket_path);
    else if (opt->bind_v6 && opt->bind[0] != '[')
        printf("listening on [%s]:%d\n", opt->bind, opt->port);
    else
        printf("listening on %s:%d\n", opt->bind, opt->port);
    fflush(stdout);
}

/* One epoll event: `p` is a tag or a connection. */
static void handle_event(struct server *srv, void *p, uint32_t events)
{
    if (p == &tag_listen) {
        accept_all(srv);
    } else if (p == &tag_event) {
        drain_completions(srv);
    } else if (p == &tag_engine) {
        /* Nothing here: every round ends with pump_engine(). */
    } else if (p == &tag_signal) {
        struct signalfd_siginfo si;
        while (read(srv->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
            begin_shutdown(srv);
    } else {
        struct conn *c = p;
        if (c->dead)
            return;
        if (events & (EPOLLHUP | EPOLLERR)) {
            /* Fully closed (an AF_UNIX peer's close() shows up so at once, while the
             * bytes it sent are still queued) or reset (a peer that closes with our
             * replies unread: Linux still returns the bytes queued before the reset,
             * TCP and AF_UNIX alike): no reply can be delivered, but the requests it
             * sent before closing still run (NBD_CMD_DISC: "handle all outstanding
             * requests"). conn_hup reads them, then drops the connection; HUP and ERR
             * stay reported while the fd is registered, so it leaves epoll. */
            conn_hup(c);
            return;
        }
        if (events & EPOLLIN)
            conn_readable(c);
        if (!c->dead && (events & EPOLLOUT))
            conn_touch(c);
    }
}

/* Timers of the loop, run after each round: handshake timeouts, the accept pause, the
 * idle trim. Returns the epoll_wait timeout until the next one (ms, -1: none). */
static int run_timers(struct server *srv)
{
    uint64_t now = now_ns(), next = UINT64_MAX;
    /* Shutting down: each round looks at every connection, which may have become quiet
     * (the rounds run at least every 100 ms then: serve). */
    if (srv->stopping)
        for (struct conn *c = srv->conns; c; c = c->next)
            if (!c->dead)
                conn_touch(c);
    while (srv->hs_head && srv->hs_head->hs_deadline_ns <= now) {
        struct conn *c = srv->hs_head;
        logmsg("conn %u: handshake not done in %u s; closing", c->id, srv->opt.hs_timeout_s);
        srv->stats.hs_timeouts++;
        conn_fail(c); /* unlinks it */
    }
    if (srv->hs_head)
        next = srv->hs_head->hs_deadline_ns;
    if (srv->accept_resume_ns && srv->lfd >= 0) {
        if (srv->accept_resume_ns <= now) {
            srv->accept_resume_ns = 0;
            struct epoll_event e = { .events = EPOLLIN, .data.ptr = &tag_listen };
            epoll_ctl(srv->epfd, EPOLL_CTL_ADD, srv->lfd, &e);
        } else if (srv->accept_resume_ns < next) {
            next = srv->accept_resume_ns;
        }
    }
    if (srv->trim_at_ns) {
        if (srv->trim_at_ns <= now) {
            /* Idle: give the memory of the last burst back. */
            srv->trim_at_ns = 0;
            free_pool(srv);
            malloc_trim(0);
            srv->stats.trims++;
        } else if (srv->trim_at_ns < next) {
            next = srv->trim_at_ns;
        }
    }
    if (next == UINT64_MAX)
        return -1;
    uint64_t ms = (next - now + 999999) / 1000000;
    return ms > 60000 ? 60000 : (int)ms;
}

/* POLLED: what this round submitted goes to the kernel now; replies of what finished
 * are flushed, which may resume paused connections that submit again: then once more
 * (an empty poll would cost a syscall). Nothing submitted is left for the next epoll
 * round: the engine's IOENG_CONFIG_POLL_AFTER_SUBMIT promise (open_engine). */
static void pump_round(struct server *srv)
{
    while (srv->opt.polled && pump_engine(srv)) {
        uint64_t submitted = srv->submitted;
        run_work(srv);
        if (srv->submitted == submitted)
            break;
    }
}

/* One round of the event loop: waits at most `timeout` ms (-1: no limit) for events,
 * handles them and the deferred work, runs the timers. Returns the wait for the next
 * round (the next timer). */
int server_round(struct server *srv, int timeout)
{
    struct epoll_event evs[64];
    int n = epoll_wait(srv->epfd, evs, 64, timeout);
    if (n < 0) {
        if (errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        n = 0;
    }
    for (int i = 0; i < n; i++)
        handle_event(srv, evs[i].data.ptr, evs[i].events);
    run_work(srv);
    pump_round(srv);
    timeout = run_timers(srv);
    uint64_t submitted = srv->submitted;
    run_work(srv); /* connections the timers closed, or resumed */
    if (srv->submitted != submitted)
        pump_round(srv);
    return timeout;
}

/* The event loop: until stopping and every connection is gone, or the shutdown grace is
 * over. */
static void serve(struct server *srv)
{
    int timeout = -1;
    while (!srv->stopping || srv->conns) {
        if (srv->stopping && since_stop(srv) > SHUTDOWN_GRACE_S) {
            logmsg("shutdown grace of %d s over: dropping %u connection(s)", SHUTDOWN_GRACE_S,
                   srv->nconns);
            for (struct conn *c = srv->conns; c; c = c->next)
                conn_fail(c);
            run_work(srv);
            break;
        }
        if (srv->stopping && (timeout < 0 || timeout > 100))
            timeout = 100;
        timeout = server_round(srv, timeout);
    }
}

/* Every connection is gone; close the engine (it completes whatever is left, e.g.
 * requests of connections dropped by the grace timeout), free those requests and the
 * rest, and print the counters. */
void server_finish(struct server *srv)
{
    int rc = ioeng_close(srv->eng);
    if (rc != 0)
        logmsg("ioeng_close: %s", strerror(-rc));
    struct req *left = atomic_exchange(&srv->done_head, NULL);
    while (left) {
        struct req *nx = left->next;
        free(left->buf);
        free(left);
        left = nx;
    }
    while (srv->conns) {
        struct conn *c = srv->conns;
        conn_free(c);
    }
    free_waiting_writes(srv);
    free_pool(srv);
    const struct nbd_stats *st = &srv->stats;
    logmsg("stats: conns=%" PRIu64 " read=%" PRIu64 " write=%" PRIu64 " flush=%" PRIu64
           " write_zeroes=%" PRIu64 " disc=%" PRIu64 " other=%" PRIu64 " error_replies=%" PRIu64
           " fua_dsync=%" PRIu64 " fua_fallback=%" PRIu64 " malformed_closes=%" PRIu64
           " bytes_read=%" PRIu64 " bytes_written=%" PRIu64 " handshake_timeouts=%" PRIu64
           " refused_conns=%" PRIu64 " accept_pauses=%" PRIu64 " trims=%" PRIu64
           " rmw_writes=%" PRIu64 " write_waits=%" PRIu64 " trim=%" PRIu64 " cache=%" PRIu64
           " punches=%" PRIu64 " zero_ranges=%" PRIu64 " zero_writes=%" PRIu64
           " fast_zero_refused=%" PRIu64 " block_status=%" PRIu64 " extents=%" PRIu64,
           st->conns, st->cmds[NBD_CMD_READ], st->cmds[NBD_CMD_WRITE], st->cmds[NBD_CMD_FLUSH],
           st->cmds[NBD_CMD_WRITE_ZEROES], st->cmds[NBD_CMD_DISC],
           st->cmds[NBD_CMD_COUNT], st->errors,
           st->fua_dsync, st->fua_fallback, st->malformed_closes, st->bytes_read, st->bytes_written,
           st->hs_timeouts, st->refused_conns, st->accept_pauses, st->trims, st->rmw_writes,
           st->write_waits, st->cmds[NBD_CMD_TRIM], st->cmds[NBD_CMD_CACHE], st->punches,
           st->zero_ranges, st->zero_writes, st->fast_zero_refused,
           st->cmds[NBD_CMD_BLOCK_STATUS], st->extents);
    close(srv->ex.fd_buf);
    if (srv->ex.fd_direct >= 0)
        close(srv->ex.fd_direct);
    if (srv->ex.wz_fd >= 0)
        close(srv->ex.wz_fd);
    close(srv->epfd);
    close(srv->evfd);
    close(srv->sigfd);
    free(srv->zero_buf);
}

/* Everything the loop needs: the zero buffer, the export, the listener, the engine, the
 * epoll set (with a signalfd for `ss`). */
void server_open(struct server *srv, const sigset_t *ss)
{
    /* Buffers above 1 MiB (beyond the pool's) come from mmap and go back to the kernel
     * when freed: a fixed threshold, where glibc would raise it after the first free and
     * keep later bursts on the heap. */
    mallopt(M_MMAP_THRESHOLD, POOL_KEEP_CAP + BUF_ALIGN);
    if (posix_memalign(&srv->zero_buf, BUF_ALIGN, ZERO_CHUNK) != 0)
        die("out of memory");
    memset(srv->zero_buf, 0, ZERO_CHUNK);
    open_export(srv);
    open_listener(srv);
    open_engine(srv);
    open_loop_fds(srv, ss);
}

#ifndef IOENG_NBD_NO_MAIN /* the fuzz target (fuzz/ioeng_nbd_fuzz.c) has its own */
int main(int argc, char **argv)
{
    /* The one server; it outlives the engine (closed in finish()), whose completer
     * thread reaches it through the requests. */
    struct server srv = {
        .opt = { .name = "", .bind = "127.0.0.1", .backend = IOENG_BACKEND_AUTO, .polled = true,
                 .depth = 128,
                 .port = 10809, .idle_poll_us = IOENG_IDLE_POLL_NEVER, .max_conns = DEF_MAX_CONNS,
                 .hs_timeout_s = DEF_HS_TIMEOUT_S, .max_buf = DEF_MAX_BUF },
        .ex = { .fd_buf = -1, .fd_direct = -1 },
        .epfd = -1, .evfd = -1, .sigfd = -1, .lfd = -1, .engfd = -1,
    };
    parse_args(&srv.opt, argc, argv);

    /* Block the signals before any thread exists (the engine's threads inherit the
     * mask): they arrive only through the signalfd. */
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &ss, NULL) != 0)
        die("sigprocmask: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
    server_open(&srv, &ss);
    announce(&srv);
    serve(&srv);
    server_finish(&srv);
    return 0;
}
#endif
