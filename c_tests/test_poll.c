/*
 * test_poll: IOENG_MODE_POLLED semantics (ioeng_poll, ioeng_event_fd; see them in
 * include/ioeng.h). Opens its engines itself, in the mode each check needs, on the backend
 * of IOENG_TEST_BACKEND (the THREADS configuration, CPU pinning and idle CPU use are in
 * test_threads_policy.c):
 *  1. THREADS engine: ioeng_poll/ioeng_event_fd -> -EINVAL; a NULL handle or a timeout
 *     below -1 -> -EINVAL.
 *  2. min_complete: ioeng_poll(h, 8, -1) returns once 8 callbacks ran; (h, 0, 0) with
 *     nothing to do returns 0.
 *  3. A timeout does not spin: ioeng_poll(h, 1, 200 ms) on an idle engine returns 0 after
 *     >= 200 ms having used < 20 ms of its thread's CPU (CLOCK_THREAD_CPUTIME_ID); a
 *     submit from another thread ends an unlimited wait.
 *  4. One poller: a second ioeng_poll (and ioeng_close) while one polls -> -EBUSY.
 *  5. The event fd is readable after a submit and after a completion, and not after a
 *     poll that left nothing to do, also when it held a count no work accounts for; it
 *     stays readable across polls that each leave a completion ready (callbacks
 *     resubmitting), also after a poll that slept before its callback ran.
 *  6. Callbacks run on the polling thread and may submit (the follow-up completes in the
 *     same poll); from a callback ioeng_poll -> -EBUSY and ioeng_close -> -EDEADLK.
 *     A callback may close another engine, POLLED (drained on this thread) or THREADS:
 *     0; the nested callbacks closing the first engine get -EBUSY.
 *  7. ioeng_close drains on the calling thread: every callback ran there before it returned.
 *  8. Same callback order and res as THREADS mode (depth = batch = 1, paused backlog of
 *     HIGH/READ/WRITE, EOF read, closed fd).
 */
#include "test_util.h"

#include <stdatomic.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>

static ioeng_backend_t g_be;

static ioeng_config_t cfg_for(ioeng_mode_t mode, uint32_t depth)
{
    return tu_config(g_be, mode, depth);
}

/* A POLLED engine without the test driver thread: this test polls it itself. */
static ioeng_t *open_polled(uint32_t depth, uint32_t paused)
{
    ioeng_config_t c = cfg_for(IOENG_MODE_POLLED, depth);
    c.start_paused = paused;
    ioeng_t *h = NULL;
    int rc = ioeng_open(&c, &h);
    CHECK(rc == 0 && h, "ioeng_open(POLLED) = %s", tu_errname(rc));
    return h;
}

static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- callbacks that record what ran where -------------------------------- */

typedef struct {
    atomic_int n;
    int64_t res[64];
    int order[64];
    pthread_t thread[64];
} log_t;

typedef struct {
    log_t *log;
    int id;
} tagged_t;

static void log_cb(void *ctx, int64_t res)
{
    tagged_t *t = ctx;
    int i = atomic_fetch_add(&t->log->n, 1);
    CHECK(i < 64, "too many callbacks");
    t->log->res[i] = res;
    t->log->order[i] = t->id;
    t->log->thread[i] = pthread_self();
}

static void submit_tagged(ioeng_t *h, ioeng_req_t r, tagged_t *t)
{
    int rc = ioeng_submit(h, &r, log_cb, t);
    CHECK(rc == 0, "ioeng_submit = %s", tu_errname(rc));
}

/* Polls until `log` has `n` entries (5 s at most). */
static void poll_until(ioeng_t *h, log_t *log, int n)
{
    uint64_t end = now_ns(CLOCK_MONOTONIC) + 5000000000ull;
    while (atomic_load(&log->n) < n) {
        CHECK(now_ns(CLOCK_MONOTONIC) < end, "only %d of %d callbacks after 5 s", atomic_load(&log->n), n);
        int rc = ioeng_poll(h, 1, 100000000);
        CHECK(rc >= 0, "ioeng_poll = %s", tu_errname(rc));
    }
}

/* ---- 1. wrong mode ---------------------------------------------------------- */

static void check_threads_mode(void)
{
    ioeng_config_t c = cfg_for(IOENG_MODE_THREADS, 8);
    ioeng_t *h = NULL;
    CHECK_EQ(ioeng_open(&c, &h), 0, "open THREADS");
    CHECK_EQ(ioeng_poll(h, 0, 0), -EINVAL, "ioeng_poll on a THREADS engine");
    CHECK_EQ(ioeng_event_fd(h), -EINVAL, "ioeng_event_fd on a THREADS engine");
    CHECK_EQ(ioeng_close(h), 0, "close");
    CHECK_EQ(ioeng_poll(NULL, 0, 0), -EINVAL, "ioeng_poll(NULL)");
    CHECK_EQ(ioeng_event_fd(NULL), -EINVAL, "ioeng_event_fd(NULL)");

    ioeng_t *p = open_polled(8, 0);
    CHECK_EQ(ioeng_poll(p, 0, -2), -EINVAL, "timeout -2");
    CHECK_EQ(ioeng_close(p), 0, "close");

}

/* ---- 2. min_complete, 3. timeouts -------------------------------------------- */

static void check_min_complete_and_timeout(int fd, char *buf)
{
    ioeng_t *h = open_polled(32, 0);
    log_t log = {0};
    tagged_t tags[8];
    for (int i = 0; i < 8; i++) {
        tags[i] = (tagged_t){&log, i};
        submit_tagged(h, tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf + i * 4096, 4096, 4096 * (uint64_t)i), &tags[i]);
    }
    CHECK_EQ(atomic_load(&log.n), 0, "no callback before ioeng_poll");
    int rc = ioeng_poll(h, 8, -1);
    CHECK(rc >= 8, "ioeng_poll(min 8) = %s", tu_errname(rc));
    CHECK_EQ(atomic_load(&log.n), 8, "callbacks after ioeng_poll(min 8)");
    for (int i = 0; i < 8; i++)
        CHECK_EQ(log.res[i], 4096, "res of read %d", i);
    CHECK_EQ(ioeng_poll(h, 0, 0), 0, "ioeng_poll(0, 0) with nothing to do");

    uint64_t t0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    rc = ioeng_poll(h, 1, 200000000);
    uint64_t dt = now_ns(CLOCK_MONOTONIC) - t0, dc = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    CHECK_EQ(rc, 0, "ioeng_poll(1, 200 ms) on an idle engine");
    CHECK(dt >= 200000000ull, "returned after %" PRIu64 " ns, before the 200 ms timeout", dt);
    CHECK(dc < 20000000ull, "the 200 ms wait used %" PRIu64 " ns of CPU: it spins", dc);
    printf("idle ioeng_poll(1, 200 ms): %.1f ms wall, %.3f ms CPU\n", dt / 1e6, dc / 1e6);
    CHECK_EQ(ioeng_close(h), 0, "close");
}

typedef struct {
    ioeng_t *h;
    ioeng_req_t req;
    tagged_t *tag;
    int delay_ms;
    atomic_int state; /* 1: polling */
    int rc;
    pid_t poller_tid;    /* nonzero: record the poller's syscall before submitting */
    long poller_syscall; /* what /proc/self/task/<tid>/syscall said, -1 unknown */
} helper_t;

/* The syscall number thread `tid` of this process sleeps in, or -1. */
static long syscall_of(pid_t tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long nr = -1;
    if (!fgets(line, sizeof line, f) || sscanf(line, "%ld", &nr) != 1)
        nr = -1;
    fclose(f);
    return nr;
}

static void *submit_later(void *arg)
{
    helper_t *a = arg;
    usleep((useconds_t)a->delay_ms * 1000);
    if (a->poller_tid)
        a->poller_syscall = syscall_of(a->poller_tid);
    submit_tagged(a->h, a->req, a->tag);
    return NULL;
}

static void *poll_for_500ms(void *arg)
{
    helper_t *a = arg;
    atomic_store(&a->state, 1);
    a->rc = ioeng_poll(a->h, 1, 500000000);
    return NULL;
}

static void check_wake_by_submit_and_one_poller(int fd, char *buf)
{
    ioeng_t *h = open_polled(8, 0);
    log_t log = {0};
    tagged_t tag = {&log, 1};
    helper_t a = {.h = h, .req = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, 4096, 0), .tag = &tag, .delay_ms = 100};
    pthread_t t;
    CHECK_EQ(pthread_create(&t, NULL, submit_later, &a), 0, "pthread_create");
    uint64_t c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
    int rc = ioeng_poll(h, 1, -1);
    uint64_t dc = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
    pthread_join(t, NULL);
    CHECK_EQ(rc, 1, "unlimited ioeng_poll ended by another thread's submit");
    CHECK(dc < 20000000ull, "waiting ~100 ms for a submit used %" PRIu64 " ns of CPU", dc);

    /* A second poller and a close while one polls: -EBUSY. */
    helper_t b = {.h = h};
    CHECK_EQ(pthread_create(&t, NULL, poll_for_500ms, &b), 0, "pthread_create");
    while (!atomic_load(&b.state))
        usleep(1000);
    int busy = 0, closed = 0;
    for (int i = 0; i < 30 && !(busy && closed); i++) {
        usleep(5000);
        rc = ioeng_poll(h, 0, 0);
        CHECK(rc == 0 || rc == -EBUSY, "second poller got %s", tu_errname(rc));
        busy |= rc == -EBUSY;
        if (rc == -EBUSY) {
            rc = ioeng_close(h);
            CHECK(rc == -EBUSY, "ioeng_close during another thread's poll = %s", tu_errname(rc));
            closed = 1;
        }
    }
    pthread_join(t, NULL);
    CHECK(busy && closed, "never saw -EBUSY while another thread polled for 500 ms");
    CHECK_EQ(b.rc, 0, "the first poller timed out normally");
    CHECK_EQ(ioeng_close(h), 0, "close");
}

/* Whether the poller should wait inside io_uring_enter (kernel >= 5.11: EXT_ARG; not
 * under valgrind, where libioeng sleeps on the event fd instead); prints why not. */
static int expect_wait_in_io_uring_enter(void)
{
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) {
        printf("not checking where the poller sleeps: valgrind (libioeng sleeps on the event fd)\n");
        return 0;
    }
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2 || major * 100 + minor < 511) {
        printf("not checking where the poller sleeps: kernel %s has no IORING_FEAT_EXT_ARG (5.11)\n", u.release);
        return 0;
    }
    return 1;
}

static void on_sigusr1(int sig)
{
    (void)sig;
}

static void *signal_later(void *arg)
{
    pthread_t *target = arg;
    usleep(100000);
    pthread_kill(*target, SIGUSR1);
    return NULL;
}

/* io_uring: a poller waiting in the kernel for an IO in flight (a pipe read) is woken
 * by another thread's submit, twice (the wake-up is re-armed), without spinning, and it
 * waits inside io_uring_enter; a signal ends such a wait with -EINTR, also in the poll
 * that arms the wake-up. */
static void check_wake_with_io_in_flight(int fd, char *buf)
{
    if (g_be != IOENG_BACKEND_URING)
        return; /* AIO runs a blocking pipe read inside io_submit: nothing stays in flight */
    int check_syscall = expect_wait_in_io_uring_enter();
    ioeng_t *h = open_polled(8, 0);
    log_t log = {0};
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    tagged_t pending = {&log, 0};
    submit_tagged(h, tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, p[0], buf + 8192, 16, 0), &pending);
    CHECK_EQ(ioeng_poll(h, 0, 0), 0, "pipe read in flight");
    tagged_t tags[2] = {{&log, 1}, {&log, 2}};
    for (int round = 0; round < 2; round++) {
        helper_t a = {.h = h, .req = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, 4096, 0),
                      .tag = &tags[round], .delay_ms = 100, .poller_tid = (pid_t)syscall(SYS_gettid)};
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, submit_later, &a), 0, "pthread_create");
        uint64_t t0 = now_ns(CLOCK_MONOTONIC), c0 = now_ns(CLOCK_THREAD_CPUTIME_ID);
        int rc = ioeng_poll(h, 1, 5000000000);
        uint64_t dt = now_ns(CLOCK_MONOTONIC) - t0, dc = now_ns(CLOCK_THREAD_CPUTIME_ID) - c0;
        pthread_join(t, NULL);
        CHECK_EQ(rc, 1, "round %d: poll with a pipe read in flight ended by another thread's submit", round);
        CHECK(dt < 4000000000ull, "round %d: woken only after %" PRIu64 " ns", round, dt);
        if (check_syscall)
            CHECK_EQ(a.poller_syscall, (long)SYS_io_uring_enter, "round %d: the poller's syscall while waiting", round);
        CHECK(dc < 20000000ull, "round %d: waiting ~100 ms used %" PRIu64 " ns of CPU", round, dc);
        CHECK_EQ(log.order[round], round + 1, "round %d: the file read completed", round);
        CHECK_EQ(log.res[round], 4096, "round %d: file read res", round);
    }
    CHECK_EQ(atomic_load(&log.n), 2, "the pipe read is still in flight");
    CHECK(write(p[1], "0123456789abcdef", 16) == 16, "write pipe");
    CHECK_EQ(ioeng_poll(h, 1, 5000000000), 1, "the pipe read completes");
    CHECK_EQ(log.order[2], 0, "the pipe read completed last");
    CHECK_EQ(log.res[2], 16, "pipe read res");

    /* A signal during such a wait: -EINTR, in the poll that arms the wake-up (a fresh
     * engine) and in the next one. */
    ioeng_t *h2 = open_polled(8, 0);
    log_t log2 = {0};
    tagged_t pending2 = {&log2, 0};
    submit_tagged(h2, tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, p[0], buf + 8192, 16, 0), &pending2);
    struct sigaction sa = {.sa_handler = on_sigusr1}, old;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, &old) == 0, "sigaction: %s", strerror(errno));
    pthread_t self = pthread_self();
    for (int round = 0; round < 2; round++) {
        pthread_t t;
        CHECK_EQ(pthread_create(&t, NULL, signal_later, &self), 0, "pthread_create");
        uint64_t t0 = now_ns(CLOCK_MONOTONIC);
        int rc = ioeng_poll(h2, 1, 3000000000);
        uint64_t dt = now_ns(CLOCK_MONOTONIC) - t0;
        pthread_join(t, NULL);
        CHECK_EQ(rc, -EINTR, "round %d: a signal during the wait for a pipe read", round);
        CHECK(dt < 2000000000ull, "round %d: -EINTR only after %" PRIu64 " ns", round, dt);
    }
    CHECK(sigaction(SIGUSR1, &old, NULL) == 0, "sigaction: %s", strerror(errno));
    CHECK(write(p[1], "0123456789abcdef", 16) == 16, "write pipe");
    CHECK_EQ(ioeng_poll(h2, 1, 5000000000), 1, "the pipe read completes");
    CHECK_EQ(log2.res[0], 16, "pipe read res");
    CHECK_EQ(ioeng_close(h2), 0, "close");
    close(p[0]);
    close(p[1]);
    CHECK_EQ(ioeng_close(h), 0, "close");
}

typedef struct {
    ioeng_t *h;
    atomic_int armed; /* 1: polled once (the wake-up is armed), now sleeping */
} armer_t;

/* Polls once, so that this thread arms io_uring's wake-up poll, then sleeps 1.5 s
 * uninterruptibly outside the engine: vfork() suspends it until the child exits, and
 * the kernel runs its task_work (which posts the wake-up poll's CQE) only after that.
 * (An interruptible sleep would be cut short by the task_work notification.) */
static void *arm_then_sleep(void *arg)
{
    armer_t *a = arg;
    int rc = ioeng_poll(a->h, 1, 20000000); /* waits 20 ms in the kernel: arms */
    CHECK_EQ(rc, 0, "arming poll");
    atomic_store(&a->armed, 1);
    pid_t pid = vfork();
    if (pid == 0) {
        struct timespec ts = {1, 500000000};
        nanosleep(&ts, NULL);
        _exit(0);
    }
    CHECK(pid > 0, "vfork: %s", strerror(errno));
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    return NULL;
}

/* io_uring: the wake-up poll armed by another thread must not delay this poller: a
 * submit from a third thread ends its wait at once, not when the arming thread wakes. */
static void check_wake_armed_by_another_thread(int fd, char *buf)
{
    if (g_be != IOENG_BACKEND_URING)
        return;
    ioeng_t *h = open_polled(8, 0);
    log_t log = {0};
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    tagged_t pending = {&log, 0}, tag = {&log, 1};
    submit_tagged(h, tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, p[0], buf + 8192, 16, 0), &pending);
    armer_t arm = {.h = h};
    pthread_t armer, submitter;
    CHECK_EQ(pthread_create(&armer, NULL, arm_then_sleep, &arm), 0, "pthread_create");
    while (!atomic_load(&arm.armed))
        usleep(1000);
    helper_t a = {.h = h, .req = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, 4096, 0), .tag = &tag,
                  .delay_ms = 100};
    CHECK_EQ(pthread_create(&submitter, NULL, submit_later, &a), 0, "pthread_create");
    uint64_t t0 = now_ns(CLOCK_MONOTONIC);
    int rc = ioeng_poll(h, 1, 5000000000);
    uint64_t dt = now_ns(CLOCK_MONOTONIC) - t0;
    pthread_join(submitter, NULL);
    CHECK_EQ(rc, 1, "poll ended by another thread's submit");
    CHECK(dt < 1000000000ull, "woken after %" PRIu64 " ns: it waited for the arming thread", dt);
    pthread_join(armer, NULL);
    CHECK(write(p[1], "0123456789abcdef", 16) == 16, "write pipe");
    CHECK_EQ(ioeng_poll(h, 1, 5000000000), 1, "the pipe read completes");
    close(p[0]);
    close(p[1]);
    CHECK_EQ(ioeng_close(h), 0, "close");
}

/* ---- 5. event fd ------------------------------------------------------------ */

static void check_event_fd(int fd, char *buf)
{
    ioeng_t *h = open_polled(8, 0);
    int efd = ioeng_event_fd(h);
    CHECK(efd >= 0, "ioeng_event_fd = %s", tu_errname(efd));
    CHECK_EQ(ioeng_event_fd(h), efd, "the same fd every time");
    CHECK(!tu_readable(efd, 0), "event fd readable on a fresh engine");
    log_t log = {0};
    tagged_t tag = {&log, 1};
    submit_tagged(h, tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, 4096, 0), &tag);
    CHECK(tu_readable(efd, 0), "event fd not readable after ioeng_submit");
    poll_until(h, &log, 1);
    CHECK_EQ(ioeng_poll(h, 0, 0), 0, "nothing left");
    CHECK(!tu_readable(efd, 0), "event fd readable with nothing to do");

    /* Readable on completion: a READ that stays in the kernel until this test acts. */
    int completion_seen = 0;
    if (g_be == IOENG_BACKEND_URING) {
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
        tagged_t t2 = {&log, 2};
        submit_tagged(h, tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, p[0], buf, 16, 0), &t2);
        CHECK_EQ(ioeng_poll(h, 0, 0), 0, "pipe read pending");
        /* The engine checks a transfer in flight once, 50-100 ms after dispatch, for
         * files that can never transfer (docs/ARCHITECTURE.md, "Timers"): its timer
         * (and the one armed while the file read above was in flight) may make the fd
         * readable; such polls run nothing, and then the fd stays quiet. */
        for (int wakes = 0; tu_readable(efd, 150); wakes++) {
            CHECK(wakes < 3, "event fd keeps waking while the pipe read waits");
            CHECK_EQ(ioeng_poll(h, 0, 0), 0, "a timer's wake-up runs nothing");
        }
        CHECK(!tu_readable(efd, 200), "event fd readable while the pipe read waits");
        CHECK(write(p[1], "0123456789abcdef", 16) == 16, "write pipe");
        CHECK(tu_readable(efd, 5000), "event fd not readable after the pipe read completed");
        CHECK_EQ(ioeng_poll(h, 0, 0), 1, "the completion's callback");
        CHECK_EQ(log.res[1], 16, "pipe read res");
        close(p[0]);
        close(p[1]);
        completion_seen = 1;
    } else {
        /* AIO: an 8 MiB O_DIRECT read on ext4, slow enough to outlast one poll pass. */
        int dfd = tu_scratch(TU_EXT4, 1, NULL);
        size_t big = 8u << 20;
        char *dbuf = tu_alloc(big);
        tu_pwrite_all(dfd, dbuf, big, 0);
        for (int i = 0; i < 20 && !completion_seen; i++) {
            tagged_t t2 = {&log, 2};
            int before = atomic_load(&log.n);
            submit_tagged(h, tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, dfd, dbuf, big, 0), &t2);
            int rc = ioeng_poll(h, 0, 0);
            CHECK(rc == 0 || rc == 1, "ioeng_poll = %s", tu_errname(rc));
            if (rc == 0) {
                CHECK(tu_readable(efd, 5000), "event fd not readable after the O_DIRECT read completed");
                CHECK_EQ(ioeng_poll(h, 1, 5000000000), 1, "the completion's callback");
                completion_seen = 1;
            }
            CHECK_EQ(atomic_load(&log.n), before + 1, "one callback");
            CHECK_EQ(log.res[before], (int64_t)big, "O_DIRECT read res");
            atomic_store(&log.n, before); /* reuse the slot */
        }
        free(dbuf);
        close(dfd);
        CHECK(completion_seen, "an 8 MiB O_DIRECT read always completed within one poll pass");
    }
    CHECK(!tu_readable(efd, 0), "event fd readable after everything completed");

    /* A count nothing accounts for (the kernel may signal a completion's eventfd after
     * the poll that reaped it; simulated here by writing the fd): the next poll that
     * finds nothing to do clears it, so a level-triggered loop does not spin on it. */
    uint64_t one = 1;
    CHECK(write(efd, &one, sizeof one) == (ssize_t)sizeof one, "write event fd");
    CHECK(tu_readable(efd, 0), "event fd not readable after the write");
    CHECK_EQ(ioeng_poll(h, 0, 0), 0, "a stale count: no work");
    CHECK(!tu_readable(efd, 0), "event fd still readable after a poll found nothing to do");
    CHECK_EQ(ioeng_close(h), 0, "close");
}

/* A chain of 16-byte pipe reads: each callback submits the next until `left` is 0. */
typedef struct {
    ioeng_t *h;
    int rfd;
    int left;
    atomic_int done;
    char buf[16];
} chain_t;

static void chain_cb(void *ctx, int64_t res)
{
    chain_t *c = ctx;
    CHECK_EQ(res, 16, "chained pipe read res");
    atomic_fetch_add(&c->done, 1);
    if (c->left > 0) {
        c->left--;
        ioeng_req_t r = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, c->rfd, c->buf, 16, 0);
        int rc = ioeng_submit(c->h, &r, chain_cb, c);
        CHECK(rc == 0, "follow-up ioeng_submit = %s", tu_errname(rc));
    }
}

static void *write_pipe_later(void *arg)
{
    usleep(100 * 1000);
    CHECK(write(*(int *)arg, "0123456789abcdef0123456789abcdef", 32) == 32, "write pipe");
    return NULL;
}

/* A poll that returns with a completion ready leaves the fd readable; the next such poll
 * may rely on that count instead of writing again, but only while no poll drained it. */
static void check_event_fd_left_readable(void)
{
    ioeng_t *h = open_polled(8, 0);
    int efd = ioeng_event_fd(h);
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    chain_t c = {.h = h, .rfd = p[0], .left = 4};

    /* Data waits in the pipe: every follow-up completes inside the poll that submits it,
     * and that poll returns (min_complete 1) with its completion ready. */
    CHECK(write(p[1], "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 80) == 80,
          "fill pipe");
    ioeng_req_t r = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, p[0], c.buf, 16, 0);
    CHECK_EQ(ioeng_submit(h, &r, chain_cb, &c), 0, "first chained read");
    for (int i = 1; i <= 4; i++) {
        CHECK_EQ(ioeng_poll(h, 1, 5000000000), 1, "poll %d: one callback", i);
        CHECK_EQ(atomic_load(&c.done), i, "callbacks after poll %d", i);
        CHECK(tu_readable(efd, 0), "event fd not readable after poll %d left a completion ready", i);
    }
    CHECK_EQ(ioeng_poll(h, 1, 5000000000), 1, "the last chained read");
    CHECK(!tu_readable(efd, 0), "event fd readable after the chain ended");

    /* A poll returns with a completion ready (the fd holds its count); the next poll
     * runs that callback, whose read waits for data, so it drains the fd and sleeps
     * (min_complete 2); the read's callback then submits one whose completion is ready
     * when the poll returns: the fd must be written again. On AIO the kernel signals the
     * fd for each completion, and the read of the empty pipe runs inside io_submit. */
    CHECK(write(p[1], "0123456789abcdef0123456789abcdef", 32) == 32, "write pipe");
    c.left = 3;
    CHECK_EQ(ioeng_submit(h, &r, chain_cb, &c), 0, "first read of the second chain");
    CHECK_EQ(ioeng_poll(h, 1, 5000000000), 1, "first callback of the second chain");
    CHECK(tu_readable(efd, 0), "event fd not readable with the second read's completion ready");
    pthread_t writer;
    CHECK(pthread_create(&writer, NULL, write_pipe_later, &p[1]) == 0, "pthread_create");
    CHECK_EQ(ioeng_poll(h, 2, 5000000000), 2, "second callback, then the one after the sleep");
    CHECK(tu_readable(efd, 0), "event fd not readable after a poll that slept left a completion ready");
    CHECK_EQ(ioeng_poll(h, 1, 5000000000), 1, "the last read");
    CHECK(!tu_readable(efd, 0), "event fd readable after the second chain ended");
    pthread_join(writer, NULL);
    CHECK_EQ(atomic_load(&c.done), 9, "callbacks of the two chains");
    CHECK_EQ(ioeng_close(h), 0, "close");
    close(p[0]);
    close(p[1]);
}

/* ---- 6b. a POLLED callback closes other engines -------------------------------- */
static ioeng_t *g_outer, *g_inner_polled, *g_inner_threads;
static int g_close_polled_rc = 1, g_close_threads_rc = 1, g_reclose_rc = 1;
static pthread_t g_inner_cb_thread;
static int g_inner_done;

static void inner_cb(void *ctx, int64_t res)
{
    (void)ctx;
    CHECK_EQ(res, 16, "inner read");
    g_inner_cb_thread = pthread_self();
    /* Nested in the outer engine's callback: the outer poll holds that engine. */
    g_reclose_rc = ioeng_close(g_outer);
    __atomic_add_fetch(&g_inner_done, 1, __ATOMIC_SEQ_CST);
}

static void inner_threads_cb(void *ctx, int64_t res)
{
    (void)ctx;
    CHECK_EQ(res, 16, "inner THREADS read");
    __atomic_add_fetch(&g_inner_done, 1, __ATOMIC_SEQ_CST);
}

static void outer_cb(void *ctx, int64_t res)
{
    (void)ctx;
    CHECK_EQ(res, 16, "outer read");
    g_close_polled_rc = ioeng_close(g_inner_polled);
    g_close_threads_rc = ioeng_close(g_inner_threads);
}

static void check_close_other_from_callback(int fd, char *buf)
{
    g_outer = open_polled(4, 0);
    g_inner_polled = open_polled(4, 0);
    ioeng_config_t c = cfg_for(IOENG_MODE_THREADS, 4);
    CHECK_EQ(ioeng_open(&c, &g_inner_threads), 0, "open THREADS engine");
    ioeng_req_t r = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, 16, 0);
    CHECK_EQ(ioeng_submit(g_inner_polled, &r, inner_cb, NULL), 0, "inner submit");
    CHECK_EQ(ioeng_submit(g_inner_threads, &r, inner_threads_cb, NULL), 0, "inner THREADS submit");
    CHECK_EQ(ioeng_submit(g_outer, &r, outer_cb, NULL), 0, "outer submit");
    CHECK_EQ(ioeng_poll(g_outer, 1, 5000000000), 1, "the outer callback");
    CHECK_EQ(g_close_polled_rc, 0, "close of another POLLED engine from a callback");
    CHECK_EQ(g_close_threads_rc, 0, "close of a THREADS engine from a POLLED callback");
    CHECK_EQ(__atomic_load_n(&g_inner_done, __ATOMIC_SEQ_CST), 2, "both closed engines' callbacks ran first");
    CHECK(pthread_equal(g_inner_cb_thread, pthread_self()), "the closed POLLED engine drained on this thread");
    CHECK_EQ(g_reclose_rc, -EBUSY, "closing the outer engine from the nested callback");
    CHECK_EQ(ioeng_close(g_outer), 0, "close the outer engine");
}

/* ---- 6. callbacks on the polling thread, submitting -------------------------- */

static ioeng_t *g_h;
static int g_fd;
static char *g_buf;
static pthread_t g_poller;
static tagged_t g_follow;
static atomic_int g_nested_checked;

static void first_cb(void *ctx, int64_t res)
{
    log_cb(ctx, res);
    CHECK(pthread_equal(pthread_self(), g_poller), "callback not on the polling thread");
    CHECK_EQ(ioeng_poll(g_h, 0, 0), -EBUSY, "ioeng_poll from a callback of the same engine");
    CHECK_EQ(ioeng_close(g_h), -EDEADLK, "ioeng_close from a callback");
    ioeng_req_t r = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, g_fd, g_buf + 4096, 4096, 4096);
    CHECK_EQ(ioeng_submit(g_h, &r, log_cb, &g_follow), 0, "submit from a callback");
    atomic_store(&g_nested_checked, 1);
}

static void check_callbacks_on_poller(int fd, char *buf)
{
    g_h = open_polled(8, 0);
    g_fd = fd;
    g_buf = buf;
    g_poller = pthread_self();
    log_t log = {0};
    tagged_t first = {&log, 1};
    g_follow = (tagged_t){&log, 2};
    ioeng_req_t r = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, 4096, 0);
    CHECK_EQ(ioeng_submit(g_h, &r, first_cb, &first), 0, "submit");
    int rc = ioeng_poll(g_h, 2, 5000000000);
    CHECK_EQ(rc, 2, "one poll ran the callback and the follow-up it submitted");
    CHECK(atomic_load(&g_nested_checked), "first callback ran");
    for (int i = 0; i < 2; i++) {
        CHECK(pthread_equal(log.thread[i], pthread_self()), "callback %d not on the polling thread", i);
        CHECK_EQ(log.res[i], 4096, "res %d", i);
    }

    /* 7. close drains on the calling thread. */
    log_t clog = {0};
    tagged_t tags[16];
    for (int i = 0; i < 16; i++) {
        tags[i] = (tagged_t){&clog, i};
        submit_tagged(g_h, tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf + i * 4096, 4096, 4096 * (uint64_t)i), &tags[i]);
    }
    CHECK_EQ(atomic_load(&clog.n), 0, "nothing runs between polls");
    CHECK_EQ(ioeng_close(g_h), 0, "close with 16 queued");
    CHECK_EQ(atomic_load(&clog.n), 16, "callbacks run by ioeng_close");
    for (int i = 0; i < 16; i++) {
        CHECK(pthread_equal(clog.thread[i], pthread_self()), "close ran callback %d on another thread", i);
        CHECK_EQ(clog.res[i], 4096, "res %d", i);
    }
}

/* ---- 8. same order and res as THREADS ----------------------------------------- */

static void run_backlog(ioeng_mode_t mode, int fd, char *buf, log_t *log, int closed_fd)
{
    ioeng_config_t c = cfg_for(mode, 1);
    c.batch = 1;
    c.start_paused = 1;
    ioeng_t *h = NULL;
    CHECK_EQ(ioeng_open(&c, &h), 0, "open");
    static tagged_t tags[12];
    struct { ioeng_op_t op; ioeng_prio_t prio; int fd; uint64_t off; } reqs[12] = {
        {IOENG_OP_READ, IOENG_PRIO_NORMAL, 0, 0},      {IOENG_OP_WRITE, IOENG_PRIO_NORMAL, 0, 8192},
        {IOENG_OP_READ, IOENG_PRIO_NORMAL, 0, 4096},   {IOENG_OP_WRITE, IOENG_PRIO_NORMAL, 0, 12288},
        {IOENG_OP_READ, IOENG_PRIO_HIGH, 0, 0},        {IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, 0, 0},
        {IOENG_OP_READ, IOENG_PRIO_NORMAL, 0, 1 << 30}, {IOENG_OP_READ, IOENG_PRIO_NORMAL, 1, 0},
        {IOENG_OP_WRITE, IOENG_PRIO_HIGH, 0, 16384},   {IOENG_OP_READ, IOENG_PRIO_NORMAL, 0, 8192},
        {IOENG_OP_READ, IOENG_PRIO_NORMAL, 0, 65536 - 100}, {IOENG_OP_WRITE, IOENG_PRIO_NORMAL, 0, 20480},
    };
    for (int i = 0; i < 12; i++) {
        tags[i] = (tagged_t){log, i};
        submit_tagged(h, tu_req(reqs[i].op, reqs[i].prio, reqs[i].fd ? closed_fd : fd, buf + i * 4096, 4096, reqs[i].off), &tags[i]);
    }
    CHECK_EQ(ioeng_resume(h), 0, "resume");
    if (mode == IOENG_MODE_POLLED)
        poll_until(h, log, 12);
    else
        for (int i = 0; i < 5000 && atomic_load(&log->n) < 12; i++)
            usleep(1000);
    CHECK_EQ(atomic_load(&log->n), 12, "callbacks");
    CHECK_EQ(ioeng_close(h), 0, "close");
}

static void check_same_as_threads(int fd, char *buf)
{
    int closed = tu_closed_fd(900);
    static log_t a, b;
    run_backlog(IOENG_MODE_THREADS, fd, buf, &a, closed);
    run_backlog(IOENG_MODE_POLLED, fd, buf, &b, closed);
    tu_check_still_closed(closed);
    for (int i = 0; i < 12; i++) {
        CHECK(a.order[i] == b.order[i] && a.res[i] == b.res[i],
              "callback %d: THREADS request %d res %s, POLLED request %d res %s", i, a.order[i],
              tu_errname(a.res[i]), b.order[i], tu_errname(b.res[i]));
    }
    CHECK_EQ(a.order[0], 4, "HIGH first");
}

int main(void)
{
    tu_init("test_poll", 60);
    g_be = tu_backend();
    require_backend(g_be);
    char *buf;
    int fd = tu_scratch_filled(64 * 4096, 7, &buf);

    check_threads_mode();
    check_min_complete_and_timeout(fd, buf);
    check_wake_by_submit_and_one_poller(fd, buf);
    check_wake_with_io_in_flight(fd, buf);
    check_wake_armed_by_another_thread(fd, buf);
    check_event_fd(fd, buf);
    check_event_fd_left_readable();
    check_callbacks_on_poller(fd, buf);
    check_close_other_from_callback(fd, buf);
    check_same_as_threads(fd, buf);
    printf("test_poll [%s]: OK: poll -EINVAL in THREADS; min_complete; 200 ms timeout "
           "without spinning; woken by another thread's submit; second poller/close -EBUSY; event fd on "
           "submit and completion, kept across polls leaving work; callbacks on the poller, submitting, nested poll -EBUSY, close -EDEADLK, close of other engines 0; "
           "close drains on the caller; same order+res as THREADS\n",
           tu_backend_name(g_be));
    free(buf);
    return 0;
}
