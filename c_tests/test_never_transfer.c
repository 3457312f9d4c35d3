/*
 * Fds that can never do the transfer (docs/ARCHITECTURE.md, "Transfers that can never
 * happen"): a READ or WRITE of an epoll fd or a pidfd gets what read(2)/write(2) give
 * (-EINVAL) on both backends, within the sweep interval, and close does not wait for
 * them. io_uring would otherwise wait for readiness forever. The control: a READ of an
 * empty pipe that waits through several sweeps is left alone and gets its data.
 */
#include <sys/epoll.h>
#include <sys/syscall.h>

#include "test_util.h"

static tu_waiter_t w;

struct rec {
    int64_t res;
    uint64_t at_ns;
};

static void on_done(void *ctx, int64_t res)
{
    struct rec *r = ctx;
    r->res = res;
    r->at_ns = tu_now_ns();
    tu_waiter_add(&w, 1);
}

static char buf[64];
static struct iovec iov = {buf, sizeof buf};

/* What read(2)/write(2) (readv(2) for READV) give on `fd`. */
static int64_t syscall_res(ioeng_op_t op, int fd)
{
    ssize_t rc;
    switch (op) {
    case IOENG_OP_READ: rc = read(fd, buf, sizeof buf); break;
    case IOENG_OP_WRITE: rc = write(fd, buf, sizeof buf); break;
    default: rc = readv(fd, &iov, 1); break;
    }
    return rc < 0 ? -errno : rc;
}

int main(void)
{
    tu_init("test_never_transfer", 60);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&w);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CHECK(ep >= 0, "epoll_create1: %s", strerror(errno));
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    CHECK(pidfd >= 0, "pidfd_open: %s", strerror(errno));
    struct {
        const char *name;
        ioeng_op_t op;
        int fd;
    } cases[] = {
        {"epoll READ", IOENG_OP_READ, ep},
        {"epoll WRITE", IOENG_OP_WRITE, ep},
        {"epoll READV", IOENG_OP_READV, ep},
        {"pidfd READ", IOENG_OP_READ, pidfd},
        {"pidfd WRITE", IOENG_OP_WRITE, pidfd},
    };
    enum { N = sizeof cases / sizeof cases[0] };
    static struct rec recs[N + 1];
    ioeng_t *h = tu_open(be, 8, 0, 0, 0);

    /* The control: a pipe READ that waits through several sweeps (O_NONBLOCK on AIO,
     * which would run a blocking pipe's read inside io_submit). */
    int p[2];
    CHECK(pipe2(p, be == IOENG_BACKEND_AIO ? O_NONBLOCK : 0) == 0, "pipe");
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, p[0], buf, 5, 0);
    CHECK_EQ(ioeng_submit(h, &q, on_done, &recs[N]), 0, "submit pipe read");

    uint64_t t0 = tu_now_ns();
    for (int i = 0; i < N; i++) {
        q = tu_req(cases[i].op, IOENG_PRIO_NORMAL, cases[i].fd, buf, sizeof buf, 0);
        if (cases[i].op == IOENG_OP_READV) {
            q.buf = &iov;
            q.len = 1;
        }
        recs[i].res = INT64_MIN;
        CHECK_EQ(ioeng_submit(h, &q, on_done, &recs[i]), 0, "submit %s", cases[i].name);
    }
    tu_waiter_wait(&w, N, 5);
    double worst_ms = 0;
    for (int i = 0; i < N; i++) {
        int64_t want = syscall_res(cases[i].op, cases[i].fd);
        CHECK_EQ(recs[i].res, want, "[%s] %s: res %s, read(2)/write(2) give %s",
                 tu_backend_name(be), cases[i].name, tu_errname(recs[i].res), tu_errname(want));
        double ms = (double)(recs[i].at_ns - t0) / 1e6;
        if (ms > worst_ms)
            worst_ms = ms;
    }
    usleep(300 * 1000); /* several sweeps: the pipe read must still wait */
    CHECK_EQ(tu_waiter_get(&w), (uint64_t)N, "the pipe read completed without data");
    CHECK(write(p[1], "hello", 5) == 5, "write pipe");
    tu_waiter_wait(&w, N + 1, 5);
    CHECK_EQ(recs[N].res, 5, "the pipe read that waited through the sweeps");

    /* Close with such a request in flight returns at once. */
    q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, ep, buf, sizeof buf, 0);
    static struct rec last;
    CHECK_EQ(ioeng_submit(h, &q, on_done, &last), 0, "submit before close");
    uint64_t c0 = tu_now_ns();
    tu_close(h);
    double close_ms = (double)(tu_now_ns() - c0) / 1e6;
    CHECK_EQ(last.res, -EINVAL, "the epoll READ in flight at close");
    CHECK(close_ms < 1000, "close took %.0f ms", close_ms);
    printf("test_never_transfer [%s %s]: OK: epoll READ/WRITE/READV, pidfd READ/WRITE give "
           "read(2)'s -EINVAL (slowest %.0f ms); a pipe READ waits through the sweeps; close "
           "with an epoll READ in flight %.0f ms\n",
           tu_backend_name(be), tu_mode_name(), worst_ms, close_ms);
    return 0;
}
