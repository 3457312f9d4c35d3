/*
 * The same `res` on every kind of fd: for READ, WRITE and FSYNC on a regular file,
 * an O_DIRECT file, a pipe, a stream and a datagram socket, an eventfd, /dev/null, /dev/zero, /dev/full, an
 * inotify fd (a READ of one event and a bigger one: a short read is a message), /proc files,
 * /dev/kmsg (one record per READ: a character device without a position hands out
 * messages), a directory and a loop block device (root only; otherwise skipped with the
 * reason printed; so is /dev/kmsg when it cannot be opened), the callback's `res` on AIO and on io_uring equals
 * what read(2)/write(2)/fsync(2) return on a freshly set up fd, and the bytes read are
 * the same. Each cell gets its own fresh fd (pipes, eventfds and inotify fds change as
 * they are read). The table is printed.
 *
 * Runs once per IOENG_TEST_BACKEND; that backend is required (io_uring: skip or, with
 * IOENG_REQUIRE_URING=1, fail), the other one is compared too when it is available.
 */
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "test_util.h"

#define LEN 4096

enum method { SYS, AIO, URING, NMETHODS };
static const char *method_name[NMETHODS] = { "read(2)", "aio", "uring" };

static char dirpath[PATH_MAX];   /* a scratch directory (inotify, directory case) */
static char loopdev[64];         /* "" when there is no loop device */
static char loop_skip[256];      /* why not */
static char loopfile[PATH_MAX];

/* Fds a case opened besides the one it returns; closed after each cell. */
static int extra[4], nextra;
static void keep(int fd) { extra[nextra++] = fd; }

static int must(int fd, const char *what)
{
    CHECK(fd >= 0, "%s: %s", what, strerror(errno));
    return fd;
}

static int open_file(int direct)
{
    int fd = tu_scratch(TU_EXT4, direct, NULL);
    static unsigned char *init;
    if (!init) {
        init = tu_alloc(2 * LEN);
        tu_fill(init, 2 * LEN, 7);
    }
    tu_pwrite_all(fd, init, 2 * LEN, 0);
    return fd;
}

static int c_file(int op) { (void)op; return open_file(0); }
static int c_direct(int op) { (void)op; return open_file(1); }

/* A pipe holding "hello" (write end closed: EOF after it) for READ; an empty pipe with
 * a reader for WRITE. */
static int c_pipe(int op)
{
    int p[2];
    must(pipe2(p, O_CLOEXEC), "pipe2");
    if (op == IOENG_OP_WRITE) {
        keep(p[0]);
        return p[1];
    }
    CHECK(write(p[1], "hello", 5) == 5, "write pipe");
    close(p[1]);
    return p[0];
}

static int c_socket(int op)
{
    int s[2];
    must(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s), "socketpair");
    keep(s[1]);
    if (op != IOENG_OP_WRITE) {
        CHECK(write(s[1], "hello", 5) == 5, "write socket");
        CHECK(shutdown(s[1], SHUT_WR) == 0, "shutdown");
    }
    return s[0];
}

/* A datagram socketpair with two datagrams queued: a READ gets the first one only. */
static int c_dgram(int op)
{
    int s[2];
    must(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, s), "socketpair(DGRAM)");
    keep(s[1]);
    if (op != IOENG_OP_WRITE) {
        CHECK(write(s[1], "hello", 5) == 5, "send datagram");
        CHECK(write(s[1], "world!", 6) == 6, "send datagram");
    }
    return s[0];
}

/* Counter 3: a READ of 8 bytes gets 3. */
static int c_eventfd(int op) { (void)op; return must(eventfd(3, EFD_CLOEXEC), "eventfd"); }

static int c_dev(const char *path) { return must(open(path, O_RDWR | O_CLOEXEC), path); }
static int c_null(int op) { (void)op; return c_dev("/dev/null"); }
static int c_zero(int op) { (void)op; return c_dev("/dev/zero"); }
static int c_full(int op) { (void)op; return c_dev("/dev/full"); }

/* An inotify fd (blocking) with one event pending: a watched file was modified. */
static int c_inotify(int op)
{
    (void)op;
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/watched", dirpath);
    int f = must(open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600), "create watched file");
    int in = must(inotify_init1(IN_CLOEXEC), "inotify_init1");
    CHECK(inotify_add_watch(in, path, IN_MODIFY) >= 0, "inotify_add_watch: %s", strerror(errno));
    CHECK(write(f, "x", 1) == 1, "modify watched file");
    close(f);
    return in;
}

static int c_pagemap(int op)
{
    (void)op;
    return must(open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC), "/proc/self/pagemap");
}

static int c_version(int op)
{
    (void)op;
    return must(open("/proc/version", O_RDONLY | O_CLOEXEC), "/proc/version");
}

/* The kernel log, read-only: a fresh reader starts at the oldest record, and a READ
 * gets one record (a message: its short read must not be continued). */
static char kmsg_skip[128];   /* "" when /dev/kmsg can be read */
static int c_kmsg(int op)
{
    (void)op;
    return must(open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC), "/dev/kmsg");
}

static int c_dir(int op)
{
    (void)op;
    return must(open(dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC), "open directory");
}

static int c_loop(int op)
{
    (void)op;
    return must(open(loopdev, O_RDWR | O_CLOEXEC), loopdev);
}

typedef struct {
    const char *name;
    int (*open)(int op);
    uint64_t len[3]; /* READ, WRITE bytes (FSYNC: none) */
} fdkind_t;

static const fdkind_t kinds[] = {
    { "regular file (ext4)", c_file, { LEN, LEN } },
    { "O_DIRECT file (ext4)", c_direct, { LEN, LEN } },
    { "pipe", c_pipe, { 16, 5 } },
    { "socket (unix stream)", c_socket, { 16, 5 } },
    { "eventfd", c_eventfd, { 8, 8 } },
    { "/dev/null", c_null, { 16, 16 } },
    { "/dev/zero", c_zero, { 16, 16 } },
    { "/dev/full", c_full, { 16, 16 } },
    { "datagram socket", c_dgram, { LEN, 5 } },
    { "inotify fd", c_inotify, { sizeof(struct inotify_event), 8 } },
    { "inotify fd, big READ", c_inotify, { LEN, 8 } },
    { "/proc/self/pagemap", c_pagemap, { 8, 8 } },
    { "/proc/version", c_version, { LEN, 8 } },
    { "/dev/kmsg", c_kmsg, { LEN, 8 } },
    { "directory", c_dir, { 16, 16 } },
    { "loop block device", c_loop, { LEN, LEN } },
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

static tu_waiter_t w;
static int64_t cb_res;
static void on_done(void *ctx, int64_t res)
{
    (void)ctx;
    cb_res = res;
    tu_waiter_add(&w, 1);
}
static uint64_t waited;

static int64_t run_sys(int op, int fd, void *buf, uint64_t len)
{
    ssize_t n;
    switch (op) {
    case IOENG_OP_READ: n = read(fd, buf, len); break;
    case IOENG_OP_WRITE: n = write(fd, buf, len); break;
    default: n = fsync(fd); break;
    }
    return n < 0 ? -(int64_t)errno : (int64_t)n;
}

static int64_t run_engine(ioeng_t *h, int op, int fd, void *buf, uint64_t len, const char *what)
{
    ioeng_req_t q = tu_req((ioeng_op_t)op, IOENG_PRIO_NORMAL, fd, op == IOENG_OP_FSYNC ? NULL : buf,
                           op == IOENG_OP_FSYNC ? 0 : len, 0);
    int rc = ioeng_submit(h, &q, on_done, NULL);
    CHECK(rc == 0, "%s: ioeng_submit = %s", what, tu_errname(rc));
    uint64_t got = tu_waiter_wait_for(&w, ++waited, 10);
    CHECK(got >= waited, "%s: no callback after 10 s", what);
    return cb_res;
}

/* Sets up a loop device over a 1 MiB ext4 file when root and losetup work. */
static void setup_loop(void)
{
    if (geteuid() != 0) {
        snprintf(loop_skip, sizeof loop_skip, "not root (losetup needs CAP_SYS_ADMIN)");
        return;
    }
    int fd = tu_scratch(TU_EXT4, 0, loopfile);
    CHECK(ftruncate(fd, 1 << 20) == 0, "ftruncate");
    close(fd);
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof cmd, "losetup -f --show '%s' 2>&1", loopfile);
    FILE *p = popen(cmd, "r");
    CHECK(p, "popen losetup");
    char line[256] = "";
    if (!fgets(line, sizeof line, p))
        line[0] = 0;
    int st = pclose(p);
    line[strcspn(line, "\n")] = 0;
    if (st != 0 || strncmp(line, "/dev/loop", 9) != 0) {
        snprintf(loop_skip, sizeof loop_skip, "losetup failed: %s", line);
        return;
    }
    snprintf(loopdev, sizeof loopdev, "%s", line);
}

static void teardown_loop(void)
{
    if (!loopdev[0])
        return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "losetup -d %s", loopdev);
    CHECK(system(cmd) == 0, "%s failed", cmd);
}

int main(void)
{
    tu_init("test_fd_kinds", 120);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&w);

    snprintf(dirpath, sizeof dirpath, "%s/ioeng-fd-kinds-XXXXXX", tu_dir_for(TU_EXT4));
    CHECK(mkdtemp(dirpath), "mkdtemp: %s", strerror(errno));
    setup_loop();
    int kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (kmsg < 0)
        snprintf(kmsg_skip, sizeof kmsg_skip, "open /dev/kmsg: %s", strerror(errno));
    else
        close(kmsg);

    ioeng_t *eng[NMETHODS] = { NULL, NULL, NULL };
    eng[AIO] = tu_open(IOENG_BACKEND_AIO, 8, 0, 0, 0);
    if (!ioeng_uring_unavailable_reason())
        eng[URING] = tu_open(IOENG_BACKEND_URING, 8, 0, 0, 0);
    else
        printf("NOTE: io_uring unavailable (%s): only read(2) and aio compared\n",
               ioeng_uring_unavailable_reason());

    unsigned char *wbuf = tu_alloc(LEN);
    memset(wbuf, 0, LEN);
    uint64_t one = 1;
    memcpy(wbuf, &one, sizeof one); /* an eventfd WRITE adds 1 */
    unsigned char *rbuf[NMETHODS];
    for (int m = 0; m < NMETHODS; m++)
        rbuf[m] = tu_alloc(LEN);

    static const int ops[] = { IOENG_OP_READ, IOENG_OP_WRITE, IOENG_OP_FSYNC };
    static const char *op_name[] = { "READ", "WRITE", "FSYNC" };
    printf("%-22s %-6s %5s | %-12s %-12s %-12s\n", "fd", "op", "len", method_name[SYS],
           method_name[AIO], method_name[URING]);
    int cells = 0, bad = 0;
    for (size_t k = 0; k < NKINDS; k++) {
        const fdkind_t *kind = &kinds[k];
        if (kind->open == c_loop && !loopdev[0]) {
            printf("%-22s  SKIPPED: %s\n", kind->name, loop_skip);
            continue;
        }
        if (kind->open == c_kmsg && kmsg_skip[0]) {
            printf("%-22s  SKIPPED: %s\n", kind->name, kmsg_skip);
            continue;
        }
        for (int o = 0; o < 3; o++) {
            int op = ops[o];
            uint64_t len = o < 2 ? kind->len[o] : 0;
            int64_t res[NMETHODS];
            char cell[NMETHODS][24];
            for (int m = 0; m < NMETHODS; m++) {
                if (m != SYS && !eng[m]) {
                    snprintf(cell[m], sizeof cell[m], "n/a");
                    continue;
                }
                nextra = 0;
                int fd = kind->open(op);
                memset(rbuf[m], 0xa5, LEN);
                void *buf = op == IOENG_OP_READ ? rbuf[m] : (void *)wbuf;
                char what[128];
                snprintf(what, sizeof what, "%s %s on %s", method_name[m], op_name[o], kind->name);
                res[m] = m == SYS ? run_sys(op, fd, buf, len) : run_engine(eng[m], op, fd, buf, len, what);
                snprintf(cell[m], sizeof cell[m], "%s", tu_errname(res[m]));
                close(fd);
                for (int i = 0; i < nextra; i++)
                    close(extra[i]);
                if (m != SYS) {
                    cells++;
                    int same = res[m] == res[SYS];
                    if (same && op == IOENG_OP_READ && res[m] > 0)
                        same = memcmp(rbuf[m], rbuf[SYS], (size_t)res[m]) == 0;
                    if (!same) {
                        bad++;
                        snprintf(cell[m], sizeof cell[m], "%s !=", tu_errname(res[m]));
                    }
                }
            }
            printf("%-22s %-6s %5" PRIu64 " | %-12s %-12s %-12s\n", kind->name, op_name[o], len,
                   cell[SYS], cell[AIO], cell[URING]);
        }
    }
    teardown_loop();

    /* An fd without an AIO path that is not ready (a blocking inotify fd with no event)
     * must not block the engine: AIO polls it and retries like -EAGAIN. A /dev/zero
     * READ completes meanwhile; the inotify READ completes once an event arrives. */
    for (int m = AIO; m < NMETHODS; m++) {
        if (!eng[m])
            continue;
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/watched", dirpath);
        int f = must(open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600), "create watched file");
        int in = must(inotify_init1(IN_CLOEXEC), "inotify_init1");
        CHECK(inotify_add_watch(in, path, IN_MODIFY) >= 0, "inotify_add_watch");
        static int64_t ires;
        static tu_rec_t rec;
        ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, in, rbuf[SYS],
                               sizeof(struct inotify_event), 0);
        tu_rec_submit(eng[m], &rec, &w, "inotify READ before any event", q,
                      sizeof(struct inotify_event));
        int zero = c_zero(IOENG_OP_READ);
        int64_t zres = run_engine(eng[m], IOENG_OP_READ, zero, rbuf[AIO], 16, "zero READ");
        close(zero);
        CHECK(zres == 16 && rec.fired == 0,
              "%s: /dev/zero READ while the inotify READ waits: %s (inotify callbacks %d)",
              method_name[m], tu_errname(zres), rec.fired);
        usleep(20 * 1000);
        CHECK(rec.fired == 0, "%s: inotify READ completed without an event: %s",
              method_name[m], tu_errname(rec.res));
        CHECK(write(f, "x", 1) == 1, "modify watched file");
        tu_waiter_wait(&w, ++waited, 10);
        ires = rec.res;
        CHECK(ires == (int64_t)sizeof(struct inotify_event), "%s: inotify READ: %s",
              method_name[m], tu_errname(ires));
        close(f);
        close(in);
        printf("%s: an unready inotify READ waited without blocking the engine, then got %" PRId64
               "\n", method_name[m], ires);
    }

    for (int m = AIO; m < NMETHODS; m++)
        if (eng[m])
            tu_close(eng[m]);
    char path[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/watched", dirpath);
    unlink(path);
    rmdir(dirpath);
    CHECK(bad == 0, "%d of %d cells differ from read(2)/write(2)/fsync(2) (marked '!=')", bad, cells);
    printf("test_fd_kinds [%s]: %d engine results equal read(2)/write(2)/fsync(2)%s\n",
           tu_backend_name(be), cells, loopdev[0] ? "" : " (no loop device)");
    return 0;
}
