/*
 * (f) fork(): an engine belongs to the process that opened it (DESIGN §5.9). In a
 * forked child every call on an inherited handle returns -ESRCH and runs no callback;
 * ioeng_close there frees the child's copy and returns 0, printing nothing and leaving
 * the parent's threads and kernel objects alone: afterwards the parent's engines
 * (one busy with a pending read, one paused with queued requests) work and close
 * normally. The child can open and use an engine of its own.
 */
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
    printf("test_fork [%s]: child: -ESRCH from submit/submit_batch/cancel/register_buffers/resume/stats, close frees its copy "
           "silently; parent's engines unaffected\n", tu_backend_name(be));
    return 0;
}
