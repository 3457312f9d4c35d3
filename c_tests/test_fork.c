/*
 * (f) fork(): an engine belongs to the process that opened it (DESIGN §5.9). In a
 * forked child every call on an inherited handle returns -ESRCH and runs no callback;
 * ioeng_close there releases the child's copy and returns 0, printing nothing and leaving
 * the parent's threads and kernel objects alone (also when the parent's engine is busy
 * at the fork: 100 children must each close within 5 s and close the copy's fds):
 * afterwards the parent's engines
 * (one busy with a pending read, one paused with queued requests) work and close
 * normally. The child can open and use an engine of its own.
 */
#include <stdatomic.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "test_util.h"

static tu_waiter_t w;
static int callbacks; /* per process: the child's copy counts its own */

static void on_done(void *ctx, int64_t res)
{
    int64_t *out = ctx;
    *out = res;
    __atomic_add_fetch(&callbacks, 1, __ATOMIC_SEQ_CST);
    tu_waiter_add(&w, 1);
}

static int submit(ioeng_t *h, ioeng_op_t op, int fd, void *buf, uint64_t len, int64_t *out)
{
    ioeng_req_t q = tu_req(op, IOENG_PRIO_NORMAL, fd, buf, len, 0);
    return ioeng_submit(h, &q, on_done, out);
}

static void child(ioeng_backend_t be, ioeng_t *busy, ioeng_t *paused, int zero)
{
    tu_scratch_fork_child();
    tu_pollers_fork_child();
    tu_waiter_init(&w); /* the parent's may have been locked at the fork */
    int before = callbacks;
    static int64_t r;
    static char buf[16];
    ioeng_stats_t st;
    CHECK_EQ(submit(busy, IOENG_OP_READ, zero, buf, 4, &r), -ESRCH, "submit in the child");
    CHECK_EQ(submit(paused, IOENG_OP_READ, zero, buf, 4, &r), -ESRCH, "submit in the child");
    CHECK_EQ(ioeng_resume(paused), -ESRCH, "resume in the child");
    CHECK_EQ(ioeng_stats(busy, &st), -ESRCH, "stats in the child");
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, zero, buf, 4, 0);
    CHECK_EQ(ioeng_submit_batch(busy, &q, 1, on_done, NULL), -ESRCH, "submit_batch in the child");
    CHECK_EQ(ioeng_submit_batch(busy, &q, 0, on_done, NULL), -ESRCH, "empty submit_batch in the child");
    CHECK_EQ(ioeng_cancel(busy, 7), -ESRCH, "cancel in the child");
    struct iovec iov = { buf, sizeof buf };
    CHECK_EQ(ioeng_register_buffers(paused, &iov, 1), -ESRCH, "register_buffers in the child");
    CHECK(ioeng_backend(busy) == be, "ioeng_backend in the child");
    CHECK_EQ(ioeng_close(busy), 0, "close of the busy engine in the child");
    CHECK_EQ(ioeng_close(paused), 0, "close of the paused engine in the child");
    usleep(50 * 1000);
    CHECK_EQ(callbacks, before, "no callback may run in the child");

    /* An engine of its own works in the child. */
    ioeng_t *mine = tu_open(be, 4, 0, 0, 0);
    CHECK_EQ(submit(mine, IOENG_OP_READ, zero, buf, 16, &r), 0, "submit on the child's engine");
    tu_waiter_wait(&w, 1, 10);
    CHECK_EQ(r, 16, "READ on the child's own engine");
    tu_close(mine);
    _exit(0);
}

/* ---- children of a busy process ---------------------------------------------- */
/* At the fork the parent's engine threads (or poller) may hold the engine's locks; the
 * child's close must not wait for them, and it closes the child's copies of the
 * engine's fds (an io_uring ring at least). */
static ioeng_t *churn_h;
static int churn_zero;
static atomic_int churn_stop;
static char churn_buf[16][512];

static void churn_cb(void *ctx, int64_t res)
{
    CHECK_EQ(res, 512, "churn read");
    if (atomic_load(&churn_stop)) {
        tu_waiter_add(&w, 1);
        return;
    }
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, churn_zero, ctx, 512, 0);
    q.tag = 1;
    CHECK_EQ(ioeng_submit(churn_h, &q, churn_cb, ctx), 0, "churn resubmit");
}

static void close_in_children_of_a_busy_process(ioeng_backend_t be, int zero)
{
    churn_zero = zero;
    atomic_store(&churn_stop, 0);
    tu_waiter_init(&w);
    churn_h = tu_open(be, 8, 0, 0, 0);
    for (int i = 0; i < 16; i++)
        churn_cb(churn_buf[i], 512);
    int min_closed = 1 << 30;
    for (int i = 0; i < 100; i++) {
        int fds[2];
        CHECK(pipe(fds) == 0, "pipe");
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            alarm(5); /* a hang in close ends the child with SIGALRM */
            int before = tu_count_fds();
            int rc = ioeng_close(churn_h);
            int closed = before - tu_count_fds();
            (void)!write(fds[1], &closed, sizeof closed);
            _exit(rc == 0 ? 0 : 1);
        }
        int status, closed = -1;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "[%s] child %d: close of a busy engine's copy %s (status %#x)",
              tu_backend_name(be), i,
              WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM ? "hung" : "failed", status);
        CHECK(read(fds[0], &closed, sizeof closed) == (ssize_t)sizeof closed, "read pipe");
        close(fds[0]);
        close(fds[1]);
        if (closed < min_closed)
            min_closed = closed;
    }
    /* io_uring: the ring (and the POLLED event fd); AIO has only the POLLED event fd. */
    int want = (be == IOENG_BACKEND_URING) + (tu_mode() == IOENG_MODE_POLLED);
    CHECK(min_closed >= want, "[%s] the child's close closed %d fds, expected at least %d",
          tu_backend_name(be), min_closed, want);
    atomic_store(&churn_stop, 1);
    tu_waiter_wait(&w, 16, 10);
    tu_close(churn_h);
    printf("100 children of a busy engine closed their copies (at least %d fds each)\n",
           min_closed);
}

int main(void)
{
    tu_init("test_fork", 60);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&w);
    int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    CHECK(zero >= 0, "open /dev/zero");
    int pfd[2];
    CHECK(pipe2(pfd, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");

    ioeng_t *busy = tu_open(be, 8, 0, 0, 0);
    ioeng_t *paused = tu_open(be, 8, 0, 0, 1);
    static char pbuf[8], qbuf[4][64];
    static int64_t pres = INT64_MIN, qres[4];
    /* Pending across the fork: a read of an empty pipe, and four queued reads. */
    CHECK_EQ(submit(busy, IOENG_OP_READ, pfd[0], pbuf, 5, &pres), 0, "submit pipe read");
    for (int i = 0; i < 4; i++)
        CHECK_EQ(submit(paused, IOENG_OP_READ, zero, qbuf[i], 64, &qres[i]), 0, "submit");
    usleep(20 * 1000);

    int errp[2];
    CHECK(pipe(errp) == 0, "pipe");
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(errp[0]);
        /* Anything libioeng prints (a panic message) lands in the parent's check. */
        CHECK(dup2(errp[1], 2) == 2, "dup2");
        child(be, busy, paused, zero);
    }
    close(errp[1]);
    char out[4096];
    ssize_t n = 0, got;
    while ((got = read(errp[0], out + n, sizeof out - 1 - (size_t)n)) > 0)
        n += got;
    out[n] = 0;
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %d): %s",
          status, out);
    CHECK(n == 0, "the child printed on stderr: %s", out);

    /* The parent's engines are untouched: the pending read completes, the paused
     * engine runs its queue, new requests work, and both close cleanly. */
    CHECK_EQ(callbacks, 0, "nothing completed in the parent yet");
    CHECK(write(pfd[1], "hello", 5) == 5, "write pipe");
    tu_waiter_wait(&w, 1, 10);
    CHECK_EQ(pres, 5, "the read pending at the fork");
    CHECK(memcmp(pbuf, "hello", 5) == 0, "pipe data");
    CHECK_EQ(ioeng_resume(paused), 0, "resume");
    tu_waiter_wait(&w, 5, 10);
    for (int i = 0; i < 4; i++)
        CHECK_EQ(qres[i], 64, "queued read %d", i);
    static int64_t r2;
    CHECK_EQ(submit(busy, IOENG_OP_READ, zero, qbuf[0], 64, &r2), 0, "submit after the fork");
    tu_waiter_wait(&w, 6, 10);
    CHECK_EQ(r2, 64, "READ after the child closed its copy");
    tu_close(busy);
    tu_close(paused);
    close_in_children_of_a_busy_process(be, zero);
    printf("test_fork [%s]: child: -ESRCH from submit/submit_batch/cancel/register_buffers/resume/stats, close releases its copy "
           "silently, also while the parent's engine is busy, and closes its fds; parent's engines unaffected\n",
           tu_backend_name(be));
    return 0;
}
