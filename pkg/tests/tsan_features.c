/*
 * ThreadSanitizer and libioeng beyond plain submits: a correct program that uses deadlines,
 * ioeng_cancel, ioeng_cancel_all, ioeng_submit_batch with ctxs and callbacks that submit
 * must run without a race report. Built like tsan_callbacks.c (gcc -fsanitize=thread against the library).
 *
 *   phase "paused":  an engine opened with start_paused; requests whose deadline passes
 *                    while the engine is paused (-ETIMEDOUT), requests with a far deadline
 *                    or none (complete), and tagged ones cancelled while queued from the
 *                    main thread (-ECANCELED); then ioeng_resume.
 *   phase "blocker": depth 1, the only slot held by a read of an empty pipe (tagged);
 *                    requests queued behind it with a short deadline (-ETIMEDOUT), tagged
 *                    ones cancelled from another thread (-ECANCELED), then the in-flight
 *                    blocker cancelled from the main thread (-ECANCELED, or its data if the
 *                    kernel finished it first).
 *   phase "batch":   ioeng_submit_batch with one ctx per request (tags and deadlines mixed),
 *                    a thread cancelling the tagged ones while they run (-ECANCELED or
 *                    done), and a main-thread cancel of a tag with nothing pending.
 *   phase "threads": four threads submitting at once into a paused engine (some requests
 *                    with a deadline that passes before ioeng_resume).
 *   phase "commands": FALLOCATE and SYNC_FILE_RANGE (on AIO: run by the engine's helper
 *                    thread), each of whose callbacks submits the job's write.
 *   phase "cancel_all": depth 1, ioeng_cancel_all from another thread while untagged
 *                    writes wait behind an untagged read of an empty blocking pipe
 *                    (all -ECANCELED).
 *   phase "classes": latency statistics on; two IO classes opened (one limited to 4000
 *                    IOPS), writes into both and class 0 from three threads while another
 *                    thread updates the limited class live and reads every class's
 *                    statistics (with and without IOENG_STATS_RESET), and the main thread
 *                    asks ioeng_dio_alignment, ioeng_backend_name, ioeng_event_fd and
 *                    ioeng_next_timeout_ns.
 *
 * Every write whose callback sees it done submits, from the callback, a read of the same
 * block, whose callback compares the data. Each job's fields are plain memory: the main
 * thread writes them before submitting, callbacks read and update them (one callback at a
 * time per engine), and the main thread reads the results after waiting on a
 * mutex/condvar that the last callback signals. Every callback must run exactly once.
 *
 * Usage: tsan_features [PHASE...] (default: every phase, in the order above).
 * IOENG_TEST_BACKEND=aio|uring|auto (default auto), IOENG_TEST_MODE=threads|polled
 * (default threads; polled: a thread of ours drives ioeng_poll). Exit 0 = pass (TSan itself
 * exits 66 when it reported anything).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ioeng.h>

#define BS 4096
#define NJOBS 800

/* Tags (non-zero; each phase uses its own). */
#define TAG_PAUSED_CANCEL 11
#define TAG_BLOCKER 21
#define TAG_QUEUED_CANCEL 22
#define TAG_BATCH_CANCEL 31
#define TAG_NOTHING 99

/* Which results a job's write may get. */
enum expect {
    EXPECT_DONE,                /* BS */
    EXPECT_TIMEDOUT,            /* -ETIMEDOUT */
    EXPECT_CANCELED,            /* -ECANCELED */
    EXPECT_DONE_OR_CANCELED,    /* a cancel raced the IO */
    EXPECT_DONE_OR_TIMEDOUT,    /* a deadline raced the dispatch */
};

struct job {
    /* Written by main before submit, read by the callbacks. */
    int id;
    int input;
    enum expect expect;
    int fd;
    /* Written by the callbacks, read by main after waiting. */
    int calls;       /* callbacks of the write (or blocker read) */
    int read_calls;  /* callbacks of the follow-up read */
    int cmd_calls;   /* callbacks of the command before the write (phase "commands") */
    int64_t res;
    long checked;    /* input seen by the callback */
    char buf[BS];    /* filled by main before the write */
    char rbuf[BS];   /* filled by the follow-up read */
};

static struct job jobs[NJOBS];
static int next_job;
static ioeng_t *eng;
static const char *mode_name = "threads";
static int polled;

/* Outstanding callbacks, under lock: raised before each submit, lowered by each callback. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int outstanding;
static long callbacks_run; /* plain: only callbacks touch it (serialized per engine) */

static atomic_int stop_poller;
static pthread_t poller;

#define DIE(...)                                                                                \
    do {                                                                                       \
        fprintf(stderr, "FAIL tsan_features [%s]: ", mode_name);                              \
        fprintf(stderr, __VA_ARGS__);                                                          \
        fputc('\n', stderr);                                                                   \
        exit(1);                                                                               \
    } while (0)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void outstanding_add(int n)
{
    pthread_mutex_lock(&lock);
    outstanding += n;
    if (outstanding == 0)
        pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void wait_all(const char *phase)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&lock);
    while (outstanding > 0)
        if (pthread_cond_timedwait(&cond, &lock, &until) == ETIMEDOUT)
            DIE("%s: %d callbacks still missing after 60 s", phase, outstanding);
    pthread_mutex_unlock(&lock);
}

static int res_ok(enum expect e, int64_t res)
{
    switch (e) {
    case EXPECT_DONE:
        return res == BS;
    case EXPECT_TIMEDOUT:
        return res == -ETIMEDOUT;
    case EXPECT_CANCELED:
        return res == -ECANCELED;
    case EXPECT_DONE_OR_CANCELED:
        return res == BS || res == -ECANCELED;
    case EXPECT_DONE_OR_TIMEDOUT:
        return res == BS || res == -ETIMEDOUT;
    }
    return 0;
}

static void on_read(void *ctx, int64_t res)
{
    struct job *j = ctx;
    callbacks_run++;
    j->read_calls++;
    if (res != BS)
        DIE("job %d: follow-up read res %lld", j->id, (long long)res);
    if (memcmp(j->rbuf, j->buf, BS) != 0)
        DIE("job %d: read back other data", j->id);
    outstanding_add(-1);
}

static void on_write(void *ctx, int64_t res)
{
    struct job *j = ctx;
    callbacks_run++;
    j->calls++;
    j->res = res;
    j->checked = j->input; /* plain read of what main wrote before submit */
    if (j->input != j->id * 7 + 1)
        DIE("job %d: input %d", j->id, j->input);
    if (!res_ok(j->expect, res))
        DIE("job %d: res %lld unexpected (expect %d)", j->id, (long long)res, (int)j->expect);
    for (int k = 0; k < BS; k += 512)
        if (j->buf[k] != (char)('a' + j->id % 26))
            DIE("job %d: buffer byte %d is %d", j->id, k, j->buf[k]);
    if (res == BS) {
        /* A callback that submits: read the block back. */
        ioeng_req_t req = {0};
        req.op = IOENG_OP_READ;
        req.fd = j->fd;
        req.buf = j->rbuf;
        req.len = BS;
        req.offset = (uint64_t)j->id * BS;
        outstanding_add(1);
        int rc = ioeng_submit(eng, &req, on_read, j);
        if (rc != 0)
            DIE("job %d: submit from callback: %d", j->id, rc);
    }
    outstanding_add(-1);
}

/* The pipe reader: its data, if the kernel finished it before the cancel, is "x". */
static void on_blocker(void *ctx, int64_t res)
{
    struct job *j = ctx;
    callbacks_run++;
    j->calls++;
    j->res = res;
    j->checked = j->input;
    if (j->input != j->id * 7 + 1)
        DIE("blocker: input %d", j->input);
    if (res != -ECANCELED && !(res == 1 && j->rbuf[0] == 'x'))
        DIE("blocker: res %lld", (long long)res);
    outstanding_add(-1);
}

static struct job *new_job(int fd, enum expect e)
{
    if (next_job == NJOBS)
        DIE("out of jobs");
    struct job *j = &jobs[next_job];
    j->id = next_job++;
    j->input = j->id * 7 + 1;
    j->expect = e;
    j->fd = fd;
    memset(j->buf, 'a' + j->id % 26, BS);
    return j;
}

static ioeng_req_t write_req(struct job *j, uint64_t tag, uint64_t deadline_ns)
{
    ioeng_req_t req = {0};
    req.op = IOENG_OP_WRITE;
    req.fd = j->fd;
    req.buf = j->buf;
    req.len = BS;
    req.offset = (uint64_t)j->id * BS;
    req.tag = tag;
    req.deadline_ns = deadline_ns;
    return req;
}

static void submit_write(struct job *j, uint64_t tag, uint64_t deadline_ns)
{
    ioeng_req_t req = write_req(j, tag, deadline_ns);
    outstanding_add(1);
    int rc = ioeng_submit(eng, &req, on_write, j);
    if (rc != 0)
        DIE("submit job %d: %s", j->id, strerror(-rc));
}

static void *poll_loop(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop_poller)) {
        int rc = ioeng_poll(eng, 1, 5 * 1000000LL);
        if (rc < 0 && rc != -EINTR)
            DIE("ioeng_poll: %s", strerror(-rc));
    }
    return NULL;
}

static uint32_t open_latency_stats; /* ioeng_config_t.latency_stats for open_engine */

static void open_engine(uint32_t depth, int paused)
{
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.latency_stats = open_latency_stats;
    const char *be = getenv("IOENG_TEST_BACKEND");
    if (be && strcmp(be, "aio") == 0)
        cfg.backend = IOENG_BACKEND_AIO;
    else if (be && strcmp(be, "uring") == 0)
        cfg.backend = IOENG_BACKEND_URING;
    cfg.depth = depth;
    cfg.start_paused = paused ? 1 : 0;
    cfg.mode = polled ? IOENG_MODE_POLLED : IOENG_MODE_THREADS;
    int rc = ioeng_open(&cfg, &eng);
    if (rc != 0)
        DIE("ioeng_open: %s", strerror(-rc));
    if (polled) {
        atomic_store(&stop_poller, 0);
        if (pthread_create(&poller, NULL, poll_loop, NULL) != 0)
            DIE("pthread_create poller");
    }
}

static void close_engine(void)
{
    if (polled) {
        atomic_store(&stop_poller, 1);
        pthread_join(poller, NULL);
    }
    int rc = ioeng_close(eng);
    if (rc != 0)
        DIE("ioeng_close: %d", rc);
    eng = NULL;
}

struct cancel_arg {
    uint64_t tag;
    int result;
};

static void *cancel_thread(void *p)
{
    struct cancel_arg *a = p;
    a->result = ioeng_cancel(eng, a->tag);
    return NULL;
}

static int cancel_from_thread(uint64_t tag)
{
    struct cancel_arg a = {tag, 0};
    pthread_t t;
    if (pthread_create(&t, NULL, cancel_thread, &a) != 0)
        DIE("pthread_create canceller");
    pthread_join(t, NULL);
    return a.result;
}

static void check_stats(const char *phase, uint64_t timed_out, uint64_t cancelled)
{
    ioeng_stats_t st;
    if (ioeng_stats(eng, &st) != 0)
        DIE("ioeng_stats");
    /* 1.1, from a thread that is not the poller: -EINVAL in THREADS mode, else >= -1. */
    int64_t next = ioeng_next_timeout_ns(eng);
    if (next < -1 && next != -EINVAL)
        DIE("%s: ioeng_next_timeout_ns %lld", phase, (long long)next);
    if (st.timed_out != timed_out || st.cancelled != cancelled || st.completed != st.submitted)
        DIE("%s: stats timed_out %llu (want %llu), cancelled %llu (want %llu), "
            "completed %llu of %llu",
            phase, (unsigned long long)st.timed_out, (unsigned long long)timed_out,
            (unsigned long long)st.cancelled, (unsigned long long)cancelled,
            (unsigned long long)st.completed, (unsigned long long)st.submitted);
}

/* Counts the results of jobs [from, to) and checks every callback ran exactly once. */
static void tally(int from, int to, int *done, int *timed_out, int *cancelled)
{
    *done = *timed_out = *cancelled = 0;
    for (int i = from; i < to; i++) {
        struct job *j = &jobs[i];
        if (j->calls != 1)
            DIE("job %d: %d callbacks", i, j->calls);
        if (j->checked != j->input)
            DIE("job %d: callback saw input %ld", i, j->checked);
        if (j->read_calls != (j->res == BS ? 1 : 0))
            DIE("job %d: %d follow-up read callbacks", i, j->read_calls);
        *done += j->res == BS;
        *timed_out += j->res == -ETIMEDOUT;
        *cancelled += j->res == -ECANCELED;
    }
}

/* start_paused: deadlines pass while queued, a main-thread cancel of queued requests. */
static void phase_paused(int fd)
{
    open_engine(8, 1);
    int first = next_job;
    uint64_t now = now_ns();
    int want_to = 0, want_cancel = 0;
    for (int i = 0; i < 48; i++) {
        switch (i % 4) {
        case 0: /* expires while the engine is paused */
            submit_write(new_job(fd, EXPECT_TIMEDOUT), 0, now + 2 * 1000000u);
            want_to++;
            break;
        case 1: /* far deadline: completes */
            submit_write(new_job(fd, EXPECT_DONE), 0, now + 60 * 1000000000ull);
            break;
        case 2: /* tagged, cancelled while queued (with or without a deadline) */
            submit_write(new_job(fd, EXPECT_CANCELED), TAG_PAUSED_CANCEL,
                         i % 8 == 2 ? now + 60 * 1000000000ull : 0);
            want_cancel++;
            break;
        default: /* no deadline: completes */
            submit_write(new_job(fd, EXPECT_DONE), 0, 0);
            break;
        }
    }
    sleep_ms(30); /* the short deadlines pass while paused */
    int n = ioeng_cancel(eng, TAG_PAUSED_CANCEL);
    if (n != want_cancel)
        DIE("paused: cancel found %d, expected %d", n, want_cancel);
    if (ioeng_resume(eng) != 0)
        DIE("ioeng_resume");
    wait_all("paused");
    int done, to, cancelled;
    tally(first, next_job, &done, &to, &cancelled);
    if (to != want_to || cancelled != want_cancel || done != 48 - want_to - want_cancel)
        DIE("paused: %d done, %d timed out, %d cancelled", done, to, cancelled);
    check_stats("paused", (uint64_t)want_to, (uint64_t)want_cancel);
    close_engine();
    printf("paused: %d done (+%d reads), %d timed out, %d cancelled\n", done, done, to,
           cancelled);
}

/* Submits job `b`'s 1-byte read of `rfd` (a pipe nobody writes) with `tag`, and waits until
 * it left the queue for the engine's only slot (depth 1). */
static void submit_blocker(struct job *b, int rfd, uint64_t tag, const char *phase)
{
    ioeng_req_t req = {0};
    req.op = IOENG_OP_READ;
    req.fd = rfd;
    req.buf = b->rbuf;
    req.len = 1;
    req.tag = tag;
    outstanding_add(1);
    int rc = ioeng_submit(eng, &req, on_blocker, b);
    if (rc != 0)
        DIE("%s: submit blocker: %s", phase, strerror(-rc));
    for (int tries = 0;; tries++) {
        ioeng_stats_t st;
        ioeng_stats(eng, &st);
        if (st.queued_read == 0)
            break;
        if (tries == 5000)
            DIE("%s: blocker never dispatched", phase);
        sleep_ms(1);
    }
}

/* depth 1, a pipe read holding the slot: expiry and cancels of queued requests behind it,
 * then the cancel of the in-flight read. */
static void phase_blocker(int fd)
{
    open_engine(1, 0);
    int pfd[2];
    /* io_uring waits for a blocking pipe asynchronously (and cancels it in the kernel);
     * AIO would read it inside io_submit and stop the engine, so it gets a non-blocking
     * one (retried by the engine until the cancel). */
    int nonblock = ioeng_backend(eng) == IOENG_BACKEND_AIO ? O_NONBLOCK : 0;
    if (pipe2(pfd, O_CLOEXEC | nonblock) != 0)
        DIE("pipe2: %s", strerror(errno));
    int first = next_job;
    struct job *b = new_job(pfd[0], EXPECT_CANCELED);
    submit_blocker(b, pfd[0], TAG_BLOCKER, "blocker");
    uint64_t now = now_ns();
    int want_to = 0, want_cancel = 0;
    for (int i = 0; i < 48; i++) {
        switch (i % 3) {
        case 0: /* expires behind the blocker */
            submit_write(new_job(fd, EXPECT_TIMEDOUT), 0, now + 5 * 1000000u);
            want_to++;
            break;
        case 1: /* cancelled from another thread while queued */
            submit_write(new_job(fd, EXPECT_CANCELED), TAG_QUEUED_CANCEL,
                         i % 2 ? now + 60 * 1000000000ull : 0);
            want_cancel++;
            break;
        default: /* far deadline: runs once the blocker is gone */
            submit_write(new_job(fd, EXPECT_DONE), 0, now + 60 * 1000000000ull);
            break;
        }
    }
    sleep_ms(30); /* the short deadlines pass */
    int n = cancel_from_thread(TAG_QUEUED_CANCEL);
    if (n != want_cancel)
        DIE("blocker: cancel (other thread) found %d, expected %d", n, want_cancel);
    n = ioeng_cancel(eng, TAG_BLOCKER);
    if (n != 1)
        DIE("blocker: in-flight cancel found %d", n);
    /* Should the kernel not stop the read, give it its byte. */
    for (int tries = 0;; tries++) {
        pthread_mutex_lock(&lock);
        int left = outstanding;
        pthread_mutex_unlock(&lock);
        if (left == 0)
            break;
        if (tries == 2000) {
            if (write(pfd[1], "x", 1) != 1)
                DIE("write pipe: %s", strerror(errno));
            break;
        }
        sleep_ms(1);
    }
    wait_all("blocker");
    int done, to, cancelled;
    tally(first + 1, next_job, &done, &to, &cancelled);
    if (to != want_to || cancelled != want_cancel || done != 48 - want_to - want_cancel)
        DIE("blocker: %d done, %d timed out, %d cancelled", done, to, cancelled);
    if (b->calls != 1 || b->checked != b->input)
        DIE("blocker: %d callbacks", b->calls);
    int blocker_cancelled = b->res == -ECANCELED;
    check_stats("blocker", (uint64_t)want_to, (uint64_t)(want_cancel + blocker_cancelled));
    close_engine();
    close(pfd[0]);
    close(pfd[1]);
    printf("blocker: %d done (+%d reads), %d timed out, %d cancelled queued, in-flight %s\n",
           done, done, to, cancelled, blocker_cancelled ? "cancelled" : "completed");
}

/* ioeng_cancel_all from another thread while untagged writes wait behind a blocking pipe
 * read in the only slot (both backends wait for the pipe in the kernel, AIO with a poll
 * iocb). Depth 1, so that no write completes first: its callback's follow-up read,
 * queued before the cancel, would be cancelled too. */
static void *cancel_all_thread(void *p)
{
    *(int *)p = ioeng_cancel_all(eng);
    return NULL;
}

static void phase_cancel_all(int fd)
{
    enum { N = 60 };
    open_engine(1, 0);
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0)
        DIE("pipe2: %s", strerror(errno));
    int first = next_job;
    struct job *b = new_job(pfd[0], EXPECT_CANCELED);
    submit_blocker(b, pfd[0], 0, "cancel_all");
    for (int i = 0; i < N; i++)
        submit_write(new_job(fd, EXPECT_CANCELED), 0, 0);
    int n = -1;
    pthread_t t;
    if (pthread_create(&t, NULL, cancel_all_thread, &n) != 0)
        DIE("pthread_create canceller");
    pthread_join(t, NULL);
    if (n != N + 1)
        DIE("cancel_all: found %d of %d", n, N + 1);
    wait_all("cancel_all");
    int done, to, cancelled;
    tally(first + 1, next_job, &done, &to, &cancelled);
    if (to != 0 || done != 0 || cancelled != N)
        DIE("cancel_all: %d done, %d timed out, %d cancelled", done, to, cancelled);
    if (b->calls != 1 || b->res != -ECANCELED)
        DIE("cancel_all: blocker %d callbacks, res %lld", b->calls, (long long)b->res);
    check_stats("cancel_all", 0, (uint64_t)cancelled + 1);
    close_engine();
    close(pfd[0]);
    close(pfd[1]);
    printf("cancel_all: found %d; %d done (+%d reads), %d cancelled, blocking pipe read "
           "cancelled\n", n, done, done, cancelled);
}

/* ioeng_submit_batch with ctxs while another thread cancels part of it. */
static void phase_batch(int fd)
{
    enum { N = 64 };
    open_engine(16, 0);
    int first = next_job;
    ioeng_req_t reqs[N];
    void *ctxs[N];
    uint64_t now = now_ns();
    for (int i = 0; i < N; i++) {
        struct job *j;
        switch (i % 4) {
        case 0:
            j = new_job(fd, EXPECT_DONE_OR_CANCELED);
            reqs[i] = write_req(j, TAG_BATCH_CANCEL, 0);
            break;
        case 1:
            j = new_job(fd, EXPECT_DONE);
            reqs[i] = write_req(j, 0, now + 60 * 1000000000ull);
            break;
        case 2: /* a deadline that may pass before dispatch */
            j = new_job(fd, EXPECT_DONE_OR_TIMEDOUT);
            reqs[i] = write_req(j, 0, now + 1000);
            break;
        default:
            j = new_job(fd, EXPECT_DONE_OR_CANCELED);
            reqs[i] = write_req(j, TAG_BATCH_CANCEL, now + 60 * 1000000000ull);
            break;
        }
        ctxs[i] = j;
    }
    outstanding_add(N);
    int rc = ioeng_submit_batch(eng, reqs, N, on_write, ctxs);
    if (rc != N)
        DIE("submit_batch: %d", rc);
    int n = cancel_from_thread(TAG_BATCH_CANCEL);
    if (n < 0 || n > N / 2)
        DIE("batch: cancel found %d", n);
    if (ioeng_cancel(eng, TAG_NOTHING) != 0)
        DIE("batch: cancel of an unused tag found something");
    wait_all("batch");
    int done, to, cancelled;
    tally(first, next_job, &done, &to, &cancelled);
    if (cancelled > n || done + to + cancelled != N)
        DIE("batch: %d done, %d timed out, %d cancelled (cancel found %d)", done, to,
            cancelled, n);
    check_stats("batch", (uint64_t)to, (uint64_t)cancelled);
    close_engine();
    printf("batch: %d done (+%d reads), %d timed out, %d cancelled (cancel found %d)\n", done,
           done, to, cancelled, n);
}

/* Several threads submitting at once (each its own jobs, no other synchronization between
 * them) into a paused engine, so that the queues grow on all of them; some with deadlines
 * that pass before the resume. */
enum { SUBMITTERS = 4, PER_SUBMITTER = 24 };
struct submitter {
    int fd;
    int first;
    uint64_t now;
};

static void *submitter_thread(void *p)
{
    struct submitter *s = p;
    for (int i = 0; i < PER_SUBMITTER; i++) {
        struct job *j = &jobs[s->first + i];
        uint64_t deadline = i % 3 == 0 ? s->now + 2 * 1000000u : 0;
        submit_write(j, 0, deadline);
    }
    return NULL;
}

static void phase_threads(int fd)
{
    open_engine(8, 1);
    int first = next_job;
    struct submitter subs[SUBMITTERS];
    pthread_t t[SUBMITTERS];
    uint64_t now = now_ns();
    /* The jobs are set up here; each thread submits its own. */
    for (int k = 0; k < SUBMITTERS; k++) {
        subs[k].fd = fd;
        subs[k].first = next_job;
        subs[k].now = now;
        for (int i = 0; i < PER_SUBMITTER; i++)
            new_job(fd, i % 3 == 0 ? EXPECT_TIMEDOUT : EXPECT_DONE);
    }
    for (int k = 0; k < SUBMITTERS; k++)
        if (pthread_create(&t[k], NULL, submitter_thread, &subs[k]) != 0)
            DIE("pthread_create submitter");
    for (int k = 0; k < SUBMITTERS; k++)
        pthread_join(t[k], NULL);
    sleep_ms(30);
    if (ioeng_resume(eng) != 0)
        DIE("ioeng_resume");
    wait_all("threads");
    int done, to, cancelled;
    tally(first, next_job, &done, &to, &cancelled);
    int want_to = SUBMITTERS * ((PER_SUBMITTER + 2) / 3);
    if (to != want_to || cancelled != 0 || done != SUBMITTERS * PER_SUBMITTER - want_to)
        DIE("threads: %d done, %d timed out, %d cancelled", done, to, cancelled);
    check_stats("threads", (uint64_t)want_to, 0);
    close_engine();
    printf("threads: %d submitters: %d done (+%d reads), %d timed out\n", SUBMITTERS, done, done,
           to);
}

/* A FALLOCATE/SYNC_FILE_RANGE done: plain reads of what main wrote, then the job's write. */
static void on_command(void *ctx, int64_t res)
{
    struct job *j = ctx;
    callbacks_run++;
    j->cmd_calls++;
    if (j->input != j->id * 7 + 1)
        DIE("job %d: command saw input %d", j->id, j->input);
    if (res != 0)
        DIE("job %d: command res %lld", j->id, (long long)res);
    submit_write(j, 0, 0);
    outstanding_add(-1);
}

static void phase_commands(int fd)
{
    open_engine(8, 0);
    int first = next_job;
    for (int i = 0; i < 64; i++) {
        struct job *j = new_job(fd, EXPECT_DONE);
        ioeng_req_t req = {0};
        req.fd = fd;
        if (i % 2 == 0) {
            req.op = IOENG_OP_FALLOCATE;
            req.buf_index = 1; /* FALLOC_FL_KEEP_SIZE */
            req.offset = (64 + (uint64_t)i) * 65536;
            req.len = 65536;
        } else {
            req.op = IOENG_OP_SYNC_FILE_RANGE;
            req.buf_index = 2; /* SYNC_FILE_RANGE_WRITE */
            req.len = 1 << 20;
        }
        outstanding_add(1);
        int rc = ioeng_submit(eng, &req, on_command, j);
        if (rc != 0)
            DIE("submit command %d: %s", i, strerror(-rc));
    }
    wait_all("commands");
    int done, to, cancelled;
    tally(first, next_job, &done, &to, &cancelled);
    for (int i = first; i < next_job; i++)
        if (jobs[i].cmd_calls != 1)
            DIE("job %d: %d command callbacks", i, jobs[i].cmd_calls);
    if (done != next_job - first)
        DIE("commands: %d of %d writes done", done, next_job - first);
    check_stats("commands", 0, 0);
    close_engine();
    printf("commands: %d FALLOCATE/SYNC_FILE_RANGE, each followed by a write and a read\n",
           next_job - first);
}

enum { CLASS_WRITERS = 3, PER_CLASS_WRITER = 32 };
static uint16_t class_ids[3]; /* 0 and two opened; written before the threads start */
static atomic_int classes_done;

struct class_writer {
    int first;
    uint16_t class_id;
};

static void *class_writer_thread(void *p)
{
    struct class_writer *w = p;
    for (int i = 0; i < PER_CLASS_WRITER; i++) {
        struct job *j = &jobs[w->first + i];
        ioeng_req_t req = write_req(j, 0, 0);
        req.class_id = w->class_id;
        outstanding_add(1);
        int rc = ioeng_submit(eng, &req, on_write, j);
        if (rc != 0)
            DIE("submit class %u job %d: %s", w->class_id, j->id, strerror(-rc));
    }
    return NULL;
}

/* Live updates and statistics of every class while the writers run. */
static void *class_admin_thread(void *p)
{
    (void)p;
    int rounds = 0;
    while (!atomic_load(&classes_done) || rounds < 10) {
        ioeng_class_config_t c;
        ioeng_class_config_init(&c);
        c.weight = 100 + (uint32_t)(rounds % 5) * 100;
        c.iops_limit = 4000 + (uint64_t)(rounds % 2) * 1000;
        int rc = ioeng_class_update(eng, class_ids[2], &c);
        if (rc != 0)
            DIE("ioeng_class_update: %s", strerror(-rc));
        uint16_t ids[4] = {class_ids[0], class_ids[1], class_ids[2], IOENG_CLASS_HIGH};
        for (int k = 0; k < 4; k++) {
            ioeng_class_stats_t st;
            rc = ioeng_class_stats(eng, ids[k], &st, rounds % 3 == 0 ? IOENG_STATS_RESET : 0);
            if (rc != 0)
                DIE("ioeng_class_stats(%u): %s", ids[k], strerror(-rc));
        }
        rounds++;
        sleep_ms(1);
    }
    return NULL;
}

static void phase_classes(int fd)
{
    open_latency_stats = IOENG_LATENCY_STATS_ON;
    open_engine(4, 0);
    open_latency_stats = 0;
    ioeng_class_config_t c;
    ioeng_class_config_init(&c);
    c.weight = 300;
    class_ids[0] = 0;
    if (ioeng_class_open(eng, &c, &class_ids[1]) != 0)
        DIE("ioeng_class_open");
    c.weight = 100;
    c.iops_limit = 4000;
    if (ioeng_class_open(eng, &c, &class_ids[2]) != 0)
        DIE("ioeng_class_open (limited)");
    int first = next_job;
    struct class_writer w[CLASS_WRITERS];
    for (int k = 0; k < CLASS_WRITERS; k++) {
        w[k].first = next_job;
        w[k].class_id = class_ids[k];
        for (int i = 0; i < PER_CLASS_WRITER; i++)
            new_job(fd, EXPECT_DONE);
    }
    atomic_store(&classes_done, 0);
    pthread_t admin, t[CLASS_WRITERS];
    if (pthread_create(&admin, NULL, class_admin_thread, NULL) != 0)
        DIE("pthread_create admin");
    for (int k = 0; k < CLASS_WRITERS; k++)
        if (pthread_create(&t[k], NULL, class_writer_thread, &w[k]) != 0)
            DIE("pthread_create class writer");
    uint32_t mem_align = 0, offset_align = 0;
    int rc = ioeng_dio_alignment(fd, &mem_align, &offset_align);
    if (rc != 0 || mem_align == 0 || offset_align == 0)
        DIE("ioeng_dio_alignment: %d (%u, %u)", rc, mem_align, offset_align);
    const char *name = ioeng_backend_name(eng);
    if (!name || !*name)
        DIE("ioeng_backend_name");
    if (ioeng_event_fd(eng) < 0 && polled)
        DIE("ioeng_event_fd");
    (void)ioeng_next_timeout_ns(eng);
    for (int k = 0; k < CLASS_WRITERS; k++)
        pthread_join(t[k], NULL);
    wait_all("classes");
    atomic_store(&classes_done, 1);
    pthread_join(admin, NULL);
    int done, to, cancelled;
    tally(first, next_job, &done, &to, &cancelled);
    if (done != next_job - first)
        DIE("classes: %d of %d writes done", done, next_job - first);
    ioeng_class_stats_t st;
    if (ioeng_class_stats(eng, class_ids[1], &st, 0) != 0)
        DIE("ioeng_class_stats");
    close_engine();
    printf("classes: %d writes (+ reads) in class 0 and two opened, %s backend, live updates and "
           "statistics from another thread\n", next_job - first, name);
}

int main(int argc, char **argv)
{
    const char *be = getenv("IOENG_TEST_BACKEND");
    const char *m = getenv("IOENG_TEST_MODE");
    if (m && strcmp(m, "polled") == 0) {
        polled = 1;
        mode_name = "polled";
    } else if (m && strcmp(m, "threads") != 0 && *m) {
        DIE("IOENG_TEST_MODE=%s: threads or polled", m);
    }
    char path[] = "/tmp/ioeng_tsan_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        DIE("mkstemp: %s", strerror(errno));
    unlink(path);

    static const struct {
        const char *name;
        void (*run)(int fd);
    } phases[] = {{"paused", phase_paused},
                  {"blocker", phase_blocker},
                  {"batch", phase_batch},
                  {"threads", phase_threads},
                  {"commands", phase_commands},
                  {"cancel_all", phase_cancel_all},
                  {"classes", phase_classes}};
    int nphases = (int)(sizeof phases / sizeof phases[0]);
    for (int a = 1; a < argc; a++) {
        int known = 0;
        for (int p = 0; p < nphases; p++)
            known |= strcmp(argv[a], phases[p].name) == 0;
        if (!known)
            DIE("unknown phase %s (paused, blocker, batch, threads, commands, cancel_all, "
                "classes)",
                argv[a]);
    }
    for (int p = 0; p < nphases; p++) {
        int run = argc == 1;
        for (int a = 1; a < argc; a++)
            run |= strcmp(argv[a], phases[p].name) == 0;
        if (run)
            phases[p].run(fd);
    }

    long expect = 0;
    for (int i = 0; i < next_job; i++)
        expect += jobs[i].calls + jobs[i].read_calls + jobs[i].cmd_calls;
    if (callbacks_run != expect)
        DIE("callback counter %ld, expected %ld", callbacks_run, expect);
    close(fd);
    printf("tsan_features [%s/%s]: OK: %d requests, %ld callbacks\n", be ? be : "auto",
           mode_name, next_job, callbacks_run);
    return 0;
}
