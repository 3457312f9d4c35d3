/*
 * Queue deadlines (ABI v1): a request still queued when CLOCK_MONOTONIC passes its
 * deadline_ns completes with -ETIMEDOUT and never reaches the kernel:
 *  - 200 requests with deadlines 2..40 ms behind a paused engine: none fires early,
 *    p99 lateness <= 2 ms (printed), kernel_submit_calls stays 0, stats.timed_out = 200;
 *    lateness is scheduling latency of the engine thread, so on a loaded machine (the
 *    load average is printed) a scenario is measured up to 10 times and passes when one
 *    attempt meets the bound; "none early" and every other check hold in every attempt;
 *    untagged requests without a deadline in the same queues are unaffected;
 *  - 50 requests with deadlines 2..20 ms behind the engine's only slot, held by a read
 *    of an empty pipe: the same;
 *  - the same with the pipe read and 20 deadlines 2..20 ms submitted from a callback (on
 *    the engine's completer in THREADS mode, where a push from a callback wakes nobody:
 *    the submitter asleep with no timer must still be woken for the new deadline);
 *  - a deadline already past at submit times out at once (through the callback);
 *  - a request dispatched before its deadline completes normally.
 */
#include "test_util.h"

enum { MAXN = 512 }; /* every request of every scenario has its own index (up to 258) */
static int64_t results[MAXN];
static uint64_t fired_at[MAXN];
static uint64_t deadline_of[MAXN];
static tu_waiter_t waiter;

static void timed_cb(void *ctx, int64_t res)
{
    size_t i = (size_t)(uintptr_t)ctx;
    fired_at[i] = tu_now_ns();
    results[i] = res;
    tu_waiter_add(&waiter, 1);
}

/* Scenario 2b: a callback submits the pipe read that takes the only slot, then requests
 * with deadlines. */
enum { FROM_CB_N = 20 };
static struct {
    ioeng_t *h;
    int pipe_fd;
    char *pipe_buf;
    int shm;
    unsigned char *rbuf;
    int pipe_idx, first;
    int rc; /* first failed ioeng_submit inside the callback, 0 if none */
} from_cb;

static void submit_from_cb(void *ctx, int64_t res)
{
    timed_cb(ctx, res);
    ioeng_req_t pq = tu_req(IOENG_OP_READ, 0, from_cb.pipe_fd, from_cb.pipe_buf, 4, 0);
    int rc = ioeng_submit(from_cb.h, &pq, timed_cb, (void *)(uintptr_t)from_cb.pipe_idx);
    uint64_t t0 = tu_now_ns();
    for (int i = 0; i < FROM_CB_N && rc == 0; i++) {
        int k = from_cb.first + i;
        ioeng_req_t q = tu_req(IOENG_OP_READ, 0, from_cb.shm, from_cb.rbuf, 512, 0);
        q.deadline_ns = t0 + 2000000ull + (uint64_t)((i * 7) % FROM_CB_N) * 18000000ull /
                                              (FROM_CB_N - 1);
        deadline_of[k] = q.deadline_ns;
        rc = ioeng_submit(from_cb.h, &q, timed_cb, (void *)(uintptr_t)k);
    }
    from_cb.rc = rc;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Checks requests [first, first+n): all -ETIMEDOUT, none early; prints lateness;
 * returns p99 lateness in ns. */
static int64_t check_lateness(const char *what, int first, int n, ioeng_backend_t be)
{
    static int64_t late[MAXN];
    for (int i = 0; i < n; i++) {
        int k = first + i;
        CHECK(results[k] == -ETIMEDOUT, "%s: request %d res %s, want -ETIMEDOUT", what, k,
              tu_errname(results[k]));
        late[i] = (int64_t)(fired_at[k] - deadline_of[k]);
        CHECK(fired_at[k] >= deadline_of[k], "%s: request %d fired %.3f ms early", what, k,
              (double)(deadline_of[k] - fired_at[k]) / 1e6);
    }
    qsort(late, (size_t)n, sizeof late[0], cmp_i64);
    int64_t p99 = late[(n * 99 + 99) / 100 - 1];
    printf("[%s] %s: lateness min %.3f ms, median %.3f ms, p99 %.3f ms, max %.3f ms (n=%d)\n",
           tu_backend_name(be), what, late[0] / 1e6, late[n / 2] / 1e6, p99 / 1e6,
           late[n - 1] / 1e6, n);
    return p99;
}

int main(void)
{
    tu_init("test_deadline", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&waiter);
    int shm = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *data = tu_alloc(65536), *rbuf = tu_alloc(65536);
    tu_fill(data, 65536, 3);
    tu_pwrite_all(shm, data, 65536, 0);
    int idx = 0;
    int64_t p99_paused = INT64_MAX, p99_busy = INT64_MAX, p99_cb = INT64_MAX;
    int attempts = 0;
    ioeng_t *h;
    ioeng_stats_t s;
    for (; attempts < 10 && (p99_paused > 2000000 || p99_busy > 2000000 || p99_cb > 2000000);
         attempts++) {
    idx = 0;
    memset(results, 0, sizeof results);
    tu_waiter_destroy(&waiter);
    tu_waiter_init(&waiter);

    /* 1. 200 deadlines behind a paused engine, plus 5 requests without deadline. */
    h = tu_open(be, 4, 0, 0, 1);
    uint64_t t0 = tu_now_ns();
    for (int i = 0; i < 200; i++) {
        ioeng_req_t q = tu_req(i % 2 ? IOENG_OP_READ : IOENG_OP_WRITE, (ioeng_prio_t)(i % 3 == 0),
                               shm, i % 2 ? rbuf : data, 512, (uint64_t)(i % 64) * 512);
        /* Deadlines 2..40 ms, submitted in a shuffled order. */
        int j = (i * 37) % 200;
        q.deadline_ns = t0 + 2000000ull + (uint64_t)j * 38000000ull / 199;
        deadline_of[idx] = q.deadline_ns;
        CHECK(ioeng_submit(h, &q, timed_cb, (void *)(uintptr_t)idx) == 0, "submit");
        idx++;
    }
    int plain = idx;
    for (int i = 0; i < 5; i++) {
        ioeng_req_t q = tu_req(IOENG_OP_READ, 0, shm, rbuf + 4096 * (i + 1), 4096, 4096);
        CHECK(ioeng_submit(h, &q, timed_cb, (void *)(uintptr_t)idx++) == 0, "submit");
    }
    tu_waiter_wait(&waiter, 200, 10);
    usleep(5000);
    s = tu_stats(h);
    CHECK(s.kernel_submit_calls == 0, "timed-out requests reached the kernel");
    CHECK(s.timed_out == 200 && s.completed == 200, "timed_out %" PRIu64 " completed %" PRIu64,
          s.timed_out, s.completed);
    CHECK(s.queued_read == 5, "the 5 requests without deadline must still be queued");
    int64_t p99 = check_lateness("paused, 200 deadlines 2..40 ms", 0, 200, be);
    if (p99 < p99_paused)
        p99_paused = p99;
    CHECK(ioeng_resume(h) == 0, "resume");
    tu_waiter_wait(&waiter, 205, 10);
    for (int i = plain; i < plain + 5; i++)
        CHECK(results[i] == 4096, "request without deadline: %s", tu_errname(results[i]));
    tu_close(h);

    /* 2. Every slot busy: depth 1, held by a read of an empty O_NONBLOCK pipe. */
    int np[2];
    CHECK(pipe2(np, O_NONBLOCK | O_CLOEXEC) == 0, "pipe2");
    char pbuf[4];
    h = tu_open(be, 1, 0, 0, 0);
    int pipe_idx = idx++;
    ioeng_req_t pq = tu_req(IOENG_OP_READ, 0, np[0], pbuf, 4, 0);
    CHECK(ioeng_submit(h, &pq, timed_cb, (void *)(uintptr_t)pipe_idx) == 0, "submit pipe read");
    usleep(20000);
    int busy_first = idx;
    t0 = tu_now_ns();
    for (int i = 0; i < 50; i++) {
        ioeng_req_t q = tu_req(IOENG_OP_READ, 0, shm, rbuf, 512, 0);
        q.deadline_ns = t0 + 2000000ull + (uint64_t)((i * 7) % 50) * 18000000ull / 49;
        deadline_of[idx] = q.deadline_ns;
        CHECK(ioeng_submit(h, &q, timed_cb, (void *)(uintptr_t)idx++) == 0, "submit");
    }
    tu_waiter_wait(&waiter, 205 + 50, 10);
    p99 = check_lateness("every slot busy, 50 deadlines 2..20 ms", busy_first, 50, be);
    if (p99 < p99_busy)
        p99_busy = p99;
    CHECK(write(np[1], "abcd", 4) == 4, "pipe write");
    tu_waiter_wait(&waiter, 205 + 51, 10);
    CHECK(results[pipe_idx] == 4, "pipe read: %s", tu_errname(results[pipe_idx]));

    /* 3. Past deadline at submit: accepted, -ETIMEDOUT at once. 4. Future deadline on
     *    an idle engine: dispatched, normal result. */
    int past = idx++;
    ioeng_req_t q = tu_req(IOENG_OP_READ, 0, shm, rbuf, 512, 0);
    q.deadline_ns = 1;
    deadline_of[past] = 1;
    CHECK(ioeng_submit(h, &q, timed_cb, (void *)(uintptr_t)past) == 0, "submit past deadline");
    int future = idx++;
    q.deadline_ns = tu_now_ns() + 10ull * 1000000000ull;
    CHECK(ioeng_submit(h, &q, timed_cb, (void *)(uintptr_t)future) == 0, "submit future deadline");
    tu_waiter_wait(&waiter, 205 + 53, 10);
    CHECK(results[past] == -ETIMEDOUT, "past deadline: %s", tu_errname(results[past]));
    CHECK(results[future] == 512, "future deadline: %s", tu_errname(results[future]));
    s = tu_wait_idle(h, 53);
    CHECK(s.timed_out == 51, "timed_out = %" PRIu64, s.timed_out);
    tu_close(h);

    /* 2b. Like 2, but the pipe read and the deadlines come from a callback. */
    h = tu_open(be, 1, 0, 0, 0);
    int trigger = idx++;
    from_cb.h = h;
    from_cb.pipe_fd = np[0];
    from_cb.pipe_buf = pbuf;
    from_cb.shm = shm;
    from_cb.rbuf = rbuf;
    from_cb.pipe_idx = idx++;
    from_cb.first = idx;
    from_cb.rc = 0;
    idx += FROM_CB_N;
    results[from_cb.pipe_idx] = 0;
    q = tu_req(IOENG_OP_READ, 0, shm, rbuf, 512, 0);
    CHECK(ioeng_submit(h, &q, submit_from_cb, (void *)(uintptr_t)trigger) == 0, "submit trigger");
    /* The trigger, then the 20 deadlines; the pipe read is still in its slot. */
    tu_waiter_wait(&waiter, 205 + 53 + 1 + FROM_CB_N, 10);
    CHECK(from_cb.rc == 0, "ioeng_submit in the callback: %s", tu_errname(from_cb.rc));
    CHECK(results[trigger] == 512, "trigger read: %s", tu_errname(results[trigger]));
    CHECK(results[from_cb.pipe_idx] == 0, "the pipe read completed before the pipe was written");
    p99 = check_lateness("every slot busy, 20 deadlines 2..20 ms submitted from a callback",
                         from_cb.first, FROM_CB_N, be);
    if (p99 < p99_cb)
        p99_cb = p99;
    CHECK(write(np[1], "efgh", 4) == 4, "pipe write");
    tu_waiter_wait(&waiter, 205 + 53 + 1 + FROM_CB_N + 1, 10);
    CHECK(results[from_cb.pipe_idx] == 4, "pipe read: %s", tu_errname(results[from_cb.pipe_idx]));
    s = tu_wait_idle(h, 2 + FROM_CB_N);
    CHECK(s.timed_out == FROM_CB_N, "timed_out = %" PRIu64, s.timed_out);
    tu_close(h);
    close(np[0]);
    close(np[1]);
    }
    double load[1] = { -1 };
    getloadavg(load, 1);

    CHECK(p99_paused <= 2000000, "p99 lateness %.3f ms > 2 ms (paused)", p99_paused / 1e6);
    CHECK(p99_busy <= 2000000, "p99 lateness %.3f ms > 2 ms (slots busy)", p99_busy / 1e6);
    CHECK(p99_cb <= 2000000, "p99 lateness %.3f ms > 2 ms (slots busy, from a callback)",
          p99_cb / 1e6);
    printf("test_deadline [%s]: OK: none early; best p99 lateness %.3f ms paused, %.3f ms with "
           "every slot busy, %.3f ms submitted from a callback (%d attempt(s), load average "
           "%.1f); none reached the kernel; past deadline -> -ETIMEDOUT at once; dispatched "
           "before its deadline -> normal result\n",
           tu_backend_name(be), p99_paused / 1e6, p99_busy / 1e6, p99_cb / 1e6, attempts,
           load[0]);
    return 0;
}
