/*
 * fork(): an engine belongs to the process that opened it (docs/ARCHITECTURE.md,
 * "Fork"). In a
 * forked child every call on an inherited handle returns -ESRCH and runs no callback;
 * ioeng_close there releases the child's copy and returns 0, printing nothing and leaving
 * the parent's threads and kernel objects alone (also when the parent's engine is busy
 * at the fork: 100 children must each close within 5 s and close the copy's ring; a
 * child that closed the inherited descriptors and reused their numbers keeps its files):
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
    /* io_uring: its ring. The event fd stays (an eventfd cannot be told from one the
     * child made itself under the same number; see close_after_fd_reuse). */
    int want = be == IOENG_BACKEND_URING;
    CHECK(min_closed >= want, "[%s] the child's close closed %d fds, expected at least %d",
          tu_backend_name(be), min_closed, want);
    atomic_store(&churn_stop, 1);
    tu_waiter_wait(&w, 16, 10);
    tu_close(churn_h);
    printf("100 children of a busy engine closed their copies (at least %d fds each)\n",
           min_closed);
}

/* ---- a child that closed the inherited fds and reused their numbers ---------------- */
/* The daemon pattern: the child closes every inherited descriptor (closefrom), opens
 * files of its own, which get the lowest numbers (the engine's old ones among them), and
 * then releases the inherited handle, or a global destructor does at exit. That close
 * must not close the child's files: each must still be open, the same file (st_ino), and
 * writable afterwards. */
static void close_after_fd_reuse(ioeng_backend_t be, int zero)
{
    ioeng_t *h = tu_open(be, 8, 0, 0, 0);
    static int64_t r = INT64_MIN;
    static char buf[64];
    /* Counted before the submit: its callback may run before the submit returns. */
    uint64_t done = tu_waiter_get(&w);
    CHECK_EQ(submit(h, IOENG_OP_READ, zero, buf, sizeof buf, &r), 0, "submit");
    tu_waiter_wait(&w, done + 1, 10);
    int report[2];
    CHECK(pipe(report) == 0, "pipe");
    /* The report pipe's write end far above the engine's descriptors, so that it
     * survives the child's cull. */
    CHECK(dup2(report[1], 900) == 900, "dup2");
    close(report[1]);
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        alarm(5);
        for (int fd = 3; fd < 900; fd++)
            close(fd);
        enum { MINE = 8 };
        int mine[MINE];
        struct stat st[MINE];
        char path[MINE][64];
        for (int i = 0; i < MINE; i++) {
            snprintf(path[i], sizeof path[i], "/dev/shm/ioeng_fork_reuse.%d.%d", (int)getpid(), i);
            mine[i] = open(path[i], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
            if (mine[i] < 0 || fstat(mine[i], &st[i]) != 0)
                _exit(2);
        }
        int rc = ioeng_close(h);
        char verdict = rc == 0 ? 'K' : 'c';
        for (int i = 0; i < MINE; i++) {
            struct stat now;
            if (fstat(mine[i], &now) != 0 || now.st_ino != st[i].st_ino || now.st_dev != st[i].st_dev ||
                pwrite(mine[i], "x", 1, 0) != 1)
                verdict = (char)('0' + i); /* the child's file i was closed or replaced */
            close(mine[i]);
            unlink(path[i]);
        }
        (void)!write(900, &verdict, 1);
        _exit(0);
    }
    close(900);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "[%s] child status %#x", tu_backend_name(be),
          status);
    char verdict = 0;
    CHECK(read(report[0], &verdict, 1) == 1, "the child reported nothing");
    close(report[0]);
    CHECK(verdict != 'c', "[%s] ioeng_close of the inherited handle failed in the child", tu_backend_name(be));
    CHECK(verdict == 'K', "[%s] the child's ioeng_close of the inherited handle closed the child's own "
          "file %c (it had reused the engine's descriptor number)", tu_backend_name(be), verdict);
    CHECK_EQ(r, 64, "the READ before the fork");
    /* The parent's engine is untouched. */
    done = tu_waiter_get(&w);
    CHECK_EQ(submit(h, IOENG_OP_READ, zero, buf, sizeof buf, &r), 0, "submit after the fork");
    tu_waiter_wait(&w, done + 1, 10);
    CHECK_EQ(r, 64, "READ after the child's close");
    tu_close(h);
    printf("a child that reused the engine's descriptor numbers kept its files through the close "
           "of the inherited handle\n");
}

/* ---- fork() inside a callback ---------------------------------------------------- */
/* A callback forks. In the child (which is a copy of the engine thread, or of the POLLED
 * caller) it opens, uses and closes an engine of its own, then returns from the
 * callback. libioeng must not run the parent's engine there: THREADS ends the child
 * with _exit(0); POLLED makes the child's ioeng_poll return -ESRCH. No parent callback
 * may run in the child, and the parent's engine goes on untouched. */
static ioeng_t *fk_h;
static int fk_zero, fk_report[2];
static pid_t fk_parent, fk_child;
static atomic_int fk_stop, fk_forked;
static char fk_buf[8][512];
static _Atomic int64_t fk_mine_res;

static void fk_report_byte(char c) { (void)!write(fk_report[1], &c, 1); }

static void fk_mine_cb(void *ctx, int64_t res)
{
    (void)ctx;
    atomic_store(&fk_mine_res, res);
}

static void fk_cb(void *ctx, int64_t res)
{
    if (getpid() != fk_parent) {
        fk_report_byte('X'); /* a parent's callback ran in the child */
        return;
    }
    CHECK_EQ(res, 512, "fork-in-callback churn read");
    int expected = 0;
    if (ctx == fk_buf[0] && atomic_compare_exchange_strong(&fk_forked, &expected, 1)) {
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork in a callback: %s", strerror(errno));
        if (pid == 0) {
            /* An engine of its own, opened and closed from inside the callback. */
            ioeng_config_t cfg;
            ioeng_config_init(&cfg);
            cfg.backend = tu_backend();
            ioeng_t *mine = NULL;
            if (ioeng_open(&cfg, &mine) != 0) {
                fk_report_byte('O');
                _exit(2);
            }
            atomic_store(&fk_mine_res, INT64_MIN);
            ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fk_zero, fk_buf[7], 16, 0);
            if (ioeng_submit(mine, &q, fk_mine_cb, NULL) != 0)
                fk_report_byte('S');
            for (int i = 0; i < 5000 && atomic_load(&fk_mine_res) == INT64_MIN; i++)
                usleep(1000);
            fk_report_byte(atomic_load(&fk_mine_res) == 16 ? 'R' : 'r');
            fk_report_byte(ioeng_close(mine) == 0 ? 'C' : 'D');
            return; /* back into libioeng, in the child */
        }
        fk_child = pid;
    }
    if (atomic_load(&fk_stop)) {
        tu_waiter_add(&w, 1);
        return;
    }
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fk_zero, ctx, 512, 0);
    CHECK_EQ(ioeng_submit(fk_h, &q, fk_cb, ctx), 0, "churn resubmit");
}

static void fork_in_callback(int zero)
{
    fk_zero = zero;
    fk_parent = getpid();
    atomic_store(&fk_stop, 0);
    atomic_store(&fk_forked, 0);
    tu_waiter_init(&w);
    CHECK(pipe(fk_report) == 0, "pipe");
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = tu_backend();
    cfg.mode = tu_mode();
    cfg.depth = 4;
    CHECK_EQ(ioeng_open(&cfg, &fk_h), 0, "open");
    for (int i = 0; i < 6; i++) {
        ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, zero, fk_buf[i], 512, 0);
        CHECK_EQ(ioeng_submit(fk_h, &q, fk_cb, fk_buf[i]), 0, "submit");
    }
    int polled = tu_mode() == IOENG_MODE_POLLED;
    int child_poll_rc = 1;
    for (int i = 0; i < 2000 && !fk_child; i++) {
        if (polled) {
            int rc = ioeng_poll(fk_h, 1, 1000000);
            if (getpid() != fk_parent) {
                /* The child, back from the forking callback. */
                child_poll_rc = rc;
                fk_report_byte(rc == -ESRCH ? 'E' : 'P');
                _exit(rc == -ESRCH ? 0 : 3);
            }
            CHECK(rc >= 0, "ioeng_poll: %d", rc);
        } else {
            usleep(1000);
        }
    }
    (void)child_poll_rc;
    CHECK(fk_child > 0, "no callback forked");
    /* The parent keeps its engine busy while the child runs. */
    int status = 0;
    for (int i = 0; i < 6000; i++) {
        if (polled)
            CHECK(ioeng_poll(fk_h, 0, 0) >= 0, "poll");
        pid_t got = waitpid(fk_child, &status, WNOHANG);
        CHECK(got >= 0, "waitpid: %s", strerror(errno));
        if (got == fk_child)
            break;
        usleep(1000);
        if (i == 5999) {
            /* (An engine thread blocks signals, so the child's alarm cannot end it.) */
            kill(fk_child, SIGKILL);
            waitpid(fk_child, &status, 0);
            CHECK(0, "the child forked in a callback was still running after 6 s");
        }
    }
    close(fk_report[1]);
    char report[64] = {0};
    ssize_t n = read(fk_report[0], report, sizeof report - 1);
    close(fk_report[0]);
    CHECK(n > 0, "the child reported nothing");
    CHECK(!strchr(report, 'X'), "a parent's callback ran in the child (report '%s')", report);
    CHECK(strchr(report, 'R') && strchr(report, 'C'),
          "the child's own engine: READ and close from inside the callback (report '%s': "
          "R/r read ok/bad, C/D close 0/failed)", report);
    if (polled)
        CHECK(strchr(report, 'E'), "the child's ioeng_poll after the callback: not -ESRCH "
              "(report '%s')", report);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "the child returning from the forking callback: status %#x", status);
    atomic_store(&fk_stop, 1);
    for (int i = 0; polled && i < 5000 && tu_waiter_get(&w) < 6; i++)
        CHECK(ioeng_poll(fk_h, 1, 1000000) >= 0, "poll");
    tu_waiter_wait(&w, 6, 10);
    CHECK_EQ(ioeng_close(fk_h), 0, "close in the parent");
    printf("fork in a %s callback: the child's own engine opened/read/closed (0), the child "
           "ran no parent callback and %s; the parent's engine went on\n",
           tu_mode_name(), polled ? "its ioeng_poll returned -ESRCH" : "ended with _exit(0)");
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
    close_after_fd_reuse(be, zero);
    fork_in_callback(zero);
    printf("test_fork [%s]: child: -ESRCH from submit/submit_batch/cancel/register_buffers/resume/stats, close releases its copy "
           "silently, also while the parent's engine is busy, and closes its ring (never a descriptor the child reused); parent's engines unaffected; "
           "fork inside a callback\n",
           tu_backend_name(be));
    return 0;
}
