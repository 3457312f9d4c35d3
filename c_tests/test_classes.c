/*
 * IO classes (DESIGN §6.1, docs/ARCHITECTURE.md "IO classes"), on the backend and mode
 * of IOENG_TEST_BACKEND / IOENG_TEST_MODE:
 *  - shares: a paused engine at depth 1 with N requests queued per class; after
 *    ioeng_resume() the callback order is the dispatch order, and every prefix of it
 *    must give each backlogged class its weighted share of the cost (1 + bytes/65536
 *    per request) within one request's cost: 300:100 with equal 4 KiB reads, and 1:1
 *    with 4 KiB against 128 KiB reads (equal cost, not equal count);
 *  - normal_min_percent 10 at depth 1: NORMAL gets floor(10·n/100) ± 1 of every prefix
 *    of n dispatches made while HIGH and NORMAL both wait;
 *  - limits: an iops limit on tmpfs and a bytes/s limit on /dev/zero hold (rate within
 *    the tolerance a noisy shared machine allows), HIGH requests of the class included,
 *    while an unlimited class beside them runs at full speed; the engine wakes by
 *    itself at each refill (also POLLED);
 *  - ioeng_class_update() live: lifting a limit lets the held requests go at once, and
 *    ends the class's throttled time then (class 0's too, back to the unclassed path);
 *    a raised weight applies from the next dispatch;
 *  - a HIGH request larger than its bytes-limited class's burst goes once the bucket is
 *    full, not after the class's small NORMAL requests that would spend it as it fills;
 *  - deadlines and cancel of requests held by a limit; held requests that leave by
 *    ioeng_cancel_all, ioeng_cancel or their deadline leave an idle engine (no spin, no
 *    timer, a quiet event fd, throttled time stopped); a POLLED close waits for refills
 *    asleep;
 *  - IOENG_CLASS_HIGH statistics, latency percentiles, throttled time, IOENG_STATS_RESET;
 *  - kernel_ioprio (IDLE, BE 4) accepted by the kernel with normal results;
 *  - bad input: unknown class_id, weight 0 and 10001, a bad kernel_ioprio, the 64th
 *    class (-ENOSPC), unknown ids and flags: each a synchronous errno, no callback.
 */
#include "test_util.h"

#include <sys/mman.h>
#include <sys/stat.h>

#define NREQ 120
#define MAXREC 4096

static unsigned char buf4k[4096] __attribute__((aligned(4096)));
static unsigned char *buf128k;

/* Dispatch log: the class label (a small int) of each callback, in order. */
static int rec_label[MAXREC];
static int64_t rec_res[MAXREC];
static int rec_n;
static tu_waiter_t rec_w;

static void rec_cb(void *ctx, int64_t res)
{
    /* callbacks run one at a time per engine */
    if (rec_n < MAXREC) {
        rec_label[rec_n] = (int)(intptr_t)ctx;
        rec_res[rec_n] = res;
    }
    rec_n++;
    tu_waiter_add(&rec_w, 1);
}

static void rec_reset(void)
{
    rec_n = 0;
    tu_waiter_destroy(&rec_w);
    tu_waiter_init(&rec_w);
}

static ioeng_class_config_t class_cfg(uint32_t weight)
{
    ioeng_class_config_t c;
    ioeng_class_config_init(&c);
    c.weight = weight;
    return c;
}

static uint16_t open_class(ioeng_t *h, ioeng_class_config_t c)
{
    uint16_t id = 0;
    int rc = ioeng_class_open(h, &c, &id);
    CHECK(rc == 0, "ioeng_class_open = %s", tu_errname(rc));
    CHECK(id >= 1 && id <= 63, "class id %u", id);
    return id;
}

static void submit(ioeng_t *h, ioeng_op_t op, ioeng_prio_t prio, int fd, void *buf, uint64_t len,
                   uint64_t off, uint16_t class_id, int label)
{
    ioeng_req_t q = tu_req(op, prio, fd, buf, len, off);
    q.class_id = class_id;
    int rc = ioeng_submit(h, &q, rec_cb, (void *)(intptr_t)label);
    CHECK(rc == 0, "submit class %u = %s", class_id, tu_errname(rc));
}

static double now_s(void) { return (double)tu_now_ns() / 1e9; }

/* ------------------------------------------------------------------ */

/* Labels 0 and 1, weights w0:w1, request sizes len0/len1: queued paused at depth 1. */
static void share_case(ioeng_backend_t be, int fd, uint32_t w0, uint32_t w1, uint64_t len0,
                       uint64_t len1, const char *what)
{
    rec_reset();
    ioeng_t *h = tu_open(be, 1, 1, 0, 1);
    uint16_t a = open_class(h, class_cfg(w0));
    uint16_t b = open_class(h, class_cfg(w1));
    for (int i = 0; i < NREQ; i++) {
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, len0 > 4096 ? buf128k : buf4k, len0,
               0, a, 0);
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, len1 > 4096 ? buf128k : buf4k, len1,
               0, b, 1);
    }
    CHECK(ioeng_resume(h) == 0, "resume");
    tu_waiter_wait(&rec_w, 2 * NREQ, 60);
    tu_close(h);
    /* Costs in 1/65536 units: 65536 + bytes. */
    double cost[2] = {65536.0 + (double)len0, 65536.0 + (double)len1};
    double max_cost = cost[0] > cost[1] ? cost[0] : cost[1];
    double got[2] = {0, 0};
    int left[2] = {NREQ, NREQ};
    for (int i = 0; i < rec_n; i++) {
        int l = rec_label[i];
        CHECK(rec_res[i] == (int64_t)(l ? len1 : len0), "%s: res %s", what,
              tu_errname(rec_res[i]));
        got[l] += cost[l];
        left[l]--;
        if (left[0] == 0 || left[1] == 0)
            break; /* one class ran dry: the rule covers backlogged classes */
        double total = got[0] + got[1];
        for (int c = 0; c < 2; c++) {
            double share = total * (c ? w1 : w0) / (double)(w0 + w1);
            CHECK(got[c] - share <= max_cost && share - got[c] <= max_cost,
                  "%s: after %d dispatches class %d has cost %.0f, share %.0f (max cost %.0f)",
                  what, i + 1, c, got[c], share, max_cost);
        }
    }
}

/* ------------------------------------------------------------------ */

static void guard_case(ioeng_backend_t be, int fd)
{
    rec_reset();
    ioeng_config_t cfg = tu_config(be, IOENG_MODE_THREADS, 1);
    cfg.batch = 1;
    cfg.start_paused = 1;
    cfg.normal_min_percent = 10;
    ioeng_t *h = tu_open_cfg(&cfg);
    for (int i = 0; i < 300; i++) {
        submit(h, IOENG_OP_READ, IOENG_PRIO_HIGH, fd, buf4k, 4096, 0, 0, 1);
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, 0, 0);
    }
    CHECK(ioeng_resume(h) == 0, "resume");
    tu_waiter_wait(&rec_w, 600, 60);
    tu_close(h);
    int normal = 0, high = 0;
    for (int n = 1; n <= rec_n && high < 300 && normal < 300; n++) {
        if (rec_label[n - 1])
            high++;
        else
            normal++;
        int floor_ = 10 * n / 100;
        CHECK(normal >= floor_ - 1 && normal <= floor_ + 1,
              "normal_min_percent 10: %d NORMAL in the first %d contested dispatches", normal, n);
    }
}

/* ------------------------------------------------------------------ */

/* A limited class (label 1) beside an unlimited one (label 0): the limited one runs at
 * its rate, its HIGH requests too; the other finishes first. Returns the measured rate. */
static double limit_case(ioeng_backend_t be, int fd, int write, uint64_t iops, uint64_t bps,
                         uint64_t len, int n, const char *what)
{
    rec_reset();
    ioeng_t *h = tu_open(be, 8, 8, 0, 0);
    ioeng_class_config_t c = class_cfg(100);
    c.iops_limit = iops;
    c.bytes_per_sec_limit = bps;
    uint16_t slow = open_class(h, c);
    unsigned char *buf = len > 4096 ? buf128k : buf4k;
    ioeng_op_t op = write ? IOENG_OP_WRITE : IOENG_OP_READ;
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        submit(h, op, i % 10 == 0 ? IOENG_PRIO_HIGH : IOENG_PRIO_NORMAL, fd, buf, len,
               write ? (uint64_t)(i % 16) * len : 0, slow, 1);
        submit(h, op, IOENG_PRIO_NORMAL, fd, buf, len, write ? (uint64_t)(i % 16) * len : 0, 0, 0);
    }
    tu_waiter_wait(&rec_w, 2 * (uint64_t)n, 60);
    double t1 = now_s();
    int last_fast = -1, last_slow = -1;
    for (int i = 0; i < rec_n; i++) {
        CHECK(rec_res[i] == (int64_t)len, "%s: res %s", what, tu_errname(rec_res[i]));
        if (rec_label[i])
            last_slow = i;
        else
            last_fast = i;
    }
    CHECK(last_fast < last_slow, "%s: the unlimited class waited for the limited one", what);
    ioeng_class_stats_t st;
    CHECK(ioeng_class_stats(h, slow, &st, 0) == 0, "class stats");
    CHECK_EQ(write ? st.writes : st.reads, n, "%s: class counter", what);
    CHECK(st.throttled_ns > 0, "%s: throttled time counted", what);
    tu_close(h);
    /* Units beyond the initial burst of 10 ms of the rate, over the time taken. */
    double units = iops ? n : (double)n * (double)len;
    double rate = iops ? (double)iops : (double)bps;
    double measured = (units - rate * 0.01) / (t1 - t0);
    printf("  %s: %.0f per s for a limit of %.0f\n", what, measured, rate);
    /* Tokens never run ahead of the rate; a loaded machine may run behind it. */
    CHECK(measured <= rate * 1.05, "%s: %.0f per s above the limit %.0f", what, measured, rate);
    CHECK(measured >= rate * 0.6, "%s: %.0f per s, far below the limit %.0f", what, measured,
          rate);
    return measured;
}

/* A class's limit holds for its HIGH requests too: 30 HIGH at 100 IOPS take 0.29 s. */
static void high_limit_case(ioeng_backend_t be, int fd)
{
    rec_reset();
    ioeng_t *h = tu_open(be, 8, 8, 0, 0);
    ioeng_class_config_t c = class_cfg(100);
    c.iops_limit = 100;
    uint16_t id = open_class(h, c);
    double t0 = now_s();
    for (int i = 0; i < 30; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_HIGH, fd, buf4k, 4096, 0, id, 0);
    tu_waiter_wait(&rec_w, 30, 30);
    double took = now_s() - t0;
    CHECK(took >= 0.28, "30 HIGH requests of a 100 IOPS class took %.3f s", took);
    tu_close(h);
}

/* POLLED, polled by this thread alone with no timeout: ioeng_poll must wake by itself
 * at each refill of a limited class (nothing else happens meanwhile). */
/* A fresh engine (depth 4) in `mode` with one class of weight 100 limited to `iops`
 * (*id); the dispatch log reset. */
static ioeng_t *open_limited(ioeng_backend_t be, ioeng_mode_t mode, uint64_t iops, uint16_t *id)
{
    rec_reset();
    ioeng_config_t cfg = tu_config(be, mode, 4);
    ioeng_t *h = NULL;
    CHECK(ioeng_open(&cfg, &h) == 0, "open %s", mode == IOENG_MODE_POLLED ? "POLLED" : "THREADS");
    ioeng_class_config_t c = class_cfg(100);
    c.iops_limit = iops;
    *id = open_class(h, c);
    return h;
}

static void polled_refill_case(ioeng_backend_t be, int fd)
{
    uint16_t id;
    ioeng_t *h = open_limited(be, IOENG_MODE_POLLED, 50, &id);
    double t0 = now_s();
    for (int i = 0; i < 10; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, id, 0);
    int ran = 0;
    while (ran < 10) {
        int rc = ioeng_poll(h, 10 - (uint32_t)ran, -1);
        CHECK(rc > 0, "ioeng_poll = %s", tu_errname(rc));
        ran += rc;
    }
    double took = now_s() - t0;
    CHECK(took >= 0.17 && took < 5, "10 requests at 50 IOPS through ioeng_poll(-1): %.3f s", took);
    CHECK(ioeng_close(h) == 0, "close");
}

/* POLLED, driven by an epoll-style loop on the event fd alone (DESIGN §6.3): the fd must
 * become readable by itself at each refill of a limited class. A wait on the fd that
 * times out (2 s) while requests are held would mean a lost refill. */
static void eventfd_refill_case(ioeng_backend_t be, int fd)
{
    uint16_t id;
    ioeng_t *h = open_limited(be, IOENG_MODE_POLLED, 50, &id);
    int efd = ioeng_event_fd(h);
    CHECK(efd >= 0, "ioeng_event_fd = %d", efd);
    double t0 = now_s();
    for (int i = 0; i < 6; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, id, 0);
    int wakes = 0;
    while (rec_n < 6) {
        struct pollfd p = {.fd = efd, .events = POLLIN};
        int n = poll(&p, 1, 2000);
        CHECK(n == 1, "the event fd stayed quiet for 2 s with %d of 6 requests done", rec_n);
        wakes++;
        int rc = ioeng_poll(h, 0, 0);
        CHECK(rc >= 0, "ioeng_poll = %s", tu_errname(rc));
    }
    double took = now_s() - t0;
    CHECK(took >= 0.09 && took < 5, "6 requests at 50 IOPS through the event fd: %.3f s", took);
    CHECK(ioeng_close(h) == 0, "close");
}

/* ------------------------------------------------------------------ */

static void update_case(ioeng_backend_t be, int fd)
{
    rec_reset();
    ioeng_t *h = tu_open(be, 4, 4, 0, 0);
    ioeng_class_config_t c = class_cfg(100);
    c.iops_limit = 20; /* 200 requests would take 10 s */
    uint16_t id = open_class(h, c);
    for (int i = 0; i < 200; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, id, 1);
    usleep(200 * 1000);
    uint64_t before = tu_waiter_get(&rec_w);
    CHECK(before <= 10, "%" PRIu64 " done in 200 ms at 20 IOPS", before);
    c.iops_limit = 0;
    double t0 = now_s();
    CHECK(ioeng_class_update(h, id, &c) == 0, "update");
    tu_waiter_wait(&rec_w, 200, 30);
    double took = now_s() - t0;
    CHECK(took < 2.0, "lifting the limit took %.2f s to drain", took);
    /* Class 0 can be updated too. */
    ioeng_class_config_t zero = class_cfg(500);
    CHECK(ioeng_class_update(h, 0, &zero) == 0, "update class 0");
    tu_close(h);
}

/* ------------------------------------------------------------------ */

/* Callbacks so far with `label` and `res` (read while callbacks may run: a count that
 * is low by one is retried by the callers). */
static int count_label_res(int label, int64_t res)
{
    int n = 0, total = __atomic_load_n(&rec_n, __ATOMIC_ACQUIRE);
    for (int i = 0; i < total && i < MAXREC; i++)
        n += rec_label[i] == label && rec_res[i] == res;
    return n;
}

static void deadline_cancel_case(ioeng_backend_t be, int fd)
{
    rec_reset();
    ioeng_t *h = tu_open(be, 4, 4, 0, 0);
    ioeng_class_config_t c = class_cfg(100);
    c.iops_limit = 10; /* one request now, then one per 100 ms */
    uint16_t id = open_class(h, c);
    uint64_t deadline = tu_now_ns() + 50 * 1000000ull;
    for (int i = 0; i < 30; i++) {
        ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0);
        q.class_id = id;
        if (i >= 10 && i < 20)
            q.deadline_ns = deadline;
        if (i >= 20)
            q.tag = 77;
        CHECK(ioeng_submit(h, &q, rec_cb, (void *)(intptr_t)(i < 10 ? 0 : i < 20 ? 1 : 2)) == 0,
              "submit");
    }
    /* The ten with a deadline time out on time, held as they are. */
    int timed_out = 0;
    while (timed_out < 10 && tu_now_ns() < deadline + 5000000000ull) {
        tu_waiter_wait_for(&rec_w, (uint64_t)rec_n + 1, 1);
        timed_out = count_label_res(1, -ETIMEDOUT);
    }
    double late_ms = (double)(tu_now_ns() - deadline) / 1e6;
    CHECK(timed_out == 10 && late_ms < 200, "%d timed out, %.1f ms after the deadline", timed_out,
          late_ms);
    int rc = ioeng_cancel(h, 77);
    CHECK_EQ(rc, 10, "cancelled held requests");
    int cancelled = 0;
    for (int tries = 0; cancelled < 10 && tries < 50; tries++) {
        tu_waiter_wait_for(&rec_w, (uint64_t)rec_n + 1, 1);
        cancelled = count_label_res(2, -ECANCELED);
    }
    CHECK_EQ(cancelled, 10, "-ECANCELED callbacks");
    ioeng_class_stats_t st;
    CHECK(ioeng_class_stats(h, id, &st, 0) == 0, "stats");
    CHECK(st.queued > 0 && st.queued <= 9, "queued %" PRIu64, st.queued);
    tu_waiter_wait(&rec_w, 30, 10);
    tu_close(h);
}

/* ------------------------------------------------------------------ */

static uint64_t cpu_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t throttled_ns(ioeng_t *h, uint16_t id)
{
    ioeng_class_stats_t st;
    CHECK(ioeng_class_stats(h, id, &st, 0) == 0, "class stats");
    return st.throttled_ns;
}

/* Until `n` callbacks were recorded: polls (POLLED) or waits for the completer. */
static void wait_recs(ioeng_t *h, ioeng_mode_t mode, int n)
{
    while (rec_n < n) {
        if (mode == IOENG_MODE_POLLED)
            CHECK(ioeng_poll(h, (uint32_t)(n - rec_n), 2000000000) >= 0, "poll");
        else
            tu_waiter_wait_for(&rec_w, n, 5);
    }
}

/* Requests held by a limit that leave the queues otherwise (cancel_all, ioeng_cancel,
 * their deadline) leave an idle engine: no timer for the refill nobody waits for, so
 * THREADS engine threads sleep (< 30 ms of process CPU in 300 ms), a POLLED engine's
 * event fd stays quiet with no timeout left (ioeng_next_timeout_ns -1), and the class's
 * throttled time stops growing. `how`: 0 cancel_all, 1 cancel(tag), 2 deadline. */
static void held_then_gone_case(ioeng_backend_t be, int fd, ioeng_mode_t mode, int how)
{
    static const char *const names[] = {"ioeng_cancel_all", "ioeng_cancel", "deadline"};
    uint16_t id;
    ioeng_t *h = open_limited(be, mode, 10, &id); /* one request now, the next in 100 ms */
    uint64_t deadline = tu_now_ns() + 50 * 1000000ull;
    for (int i = 0; i < 5; i++) {
        ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0);
        q.class_id = id;
        q.tag = 5;
        if (how == 2 && i > 0)
            q.deadline_ns = deadline;
        CHECK(ioeng_submit(h, &q, rec_cb, (void *)(intptr_t)i) == 0, "submit");
    }
    int efd = mode == IOENG_MODE_POLLED ? ioeng_event_fd(h) : -1;
    /* The first read goes; the other four are held. */
    wait_recs(h, mode, 1);
    int64_t gone_res = how == 2 ? -ETIMEDOUT : -ECANCELED;
    if (how == 0)
        CHECK_EQ(ioeng_cancel_all(h), 4, "ioeng_cancel_all of the held requests");
    else if (how == 1)
        CHECK_EQ(ioeng_cancel(h, 5), 4, "ioeng_cancel of the held requests");
    wait_recs(h, mode, 5);
    CHECK_EQ(count_label_res(0, 4096), 1, "the read that went");
    for (int i = 1; i < 5; i++)
        CHECK_EQ(rec_res[i], gone_res, "%s: held request %d", names[how], i);
    /* Idle now: 300 ms past the refill the four waited for. */
    uint64_t thr0 = throttled_ns(h, id), cpu0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    if (mode == IOENG_MODE_POLLED) {
        CHECK_EQ(ioeng_poll(h, 0, 0), 0, "a poll with nothing to do");
        int64_t left = ioeng_next_timeout_ns(h);
        CHECK_EQ(left, -1, "%s: ioeng_next_timeout_ns of an idle engine", names[how]);
        /* A timer armed for the refill before the requests left fires once anyway
         * (ioeng_event_fd: a spurious wake-up); after that the fd stays quiet. */
        int wakes = 0;
        uint64_t until = tu_now_ns() + 300 * 1000000ull;
        for (uint64_t now = tu_now_ns(); now < until; now = tu_now_ns()) {
            struct pollfd p = {.fd = efd, .events = POLLIN};
            if (poll(&p, 1, (int)((until - now) / 1000000 + 1)) != 1)
                continue;
            wakes++;
            CHECK_EQ(ioeng_poll(h, 0, 0), 0, "%s: a poll of the idle engine", names[how]);
            CHECK(wakes <= 2, "%s: the idle engine's event fd woke a loop %d times", names[how], wakes);
        }
        CHECK_EQ(ioeng_next_timeout_ns(h), -1, "%s: ioeng_next_timeout_ns after the wait", names[how]);
    } else {
        usleep(300 * 1000);
    }
    uint64_t cpu = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0, thr = throttled_ns(h, id) - thr0;
    CHECK(cpu < 30000000ull, "%s: an idle %s engine used %.1f ms of CPU in 300 ms", names[how],
          mode == IOENG_MODE_POLLED ? "POLLED" : "THREADS", cpu / 1e6);
    CHECK_EQ(thr, 0, "%s: throttled_ns grew by %" PRIu64 " ns with the class empty", names[how], thr);
    CHECK(ioeng_close(h) == 0, "close");
}

/* A debt longer than the engine's clock can count: a class limited to 1 byte/s is
 * charged a 32 GiB read (at EOF: it moves nothing, but a class pays what was asked), so
 * the next request waits about 1,100 years. That wait is still a time to sleep until:
 * THREADS engine threads sleep (< 30 ms of process CPU in 300 ms), a POLLED engine's
 * event fd stays quiet and ioeng_next_timeout_ns is not 0 (the refill time once
 * saturated to the value that means "no refill pending", and the engine spun a CPU);
 * cancel_all then ends the held request. */
static void endless_debt_case(ioeng_backend_t be, int fd, ioeng_mode_t mode)
{
    const uint64_t huge = 1ull << 35;
    /* A buffer the read could really fill: address space only. */
    void *area = mmap(NULL, huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CHECK(area != MAP_FAILED, "mmap of 32 GiB of address space: %s", strerror(errno));
    rec_reset();
    ioeng_config_t cfg = tu_config(be, mode, 4);
    ioeng_t *h = NULL;
    CHECK(ioeng_open(&cfg, &h) == 0, "open");
    ioeng_class_config_t c = class_cfg(100);
    c.bytes_per_sec_limit = 1;
    uint16_t id = open_class(h, c);
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat");
    submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, area, huge, (uint64_t)st.st_size, id, 0);
    submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, id, 1);
    wait_recs(h, mode, 1);
    CHECK_EQ(count_label_res(0, 0), 1, "the 32 GiB read at EOF");
    uint64_t cpu0 = cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
    if (mode == IOENG_MODE_POLLED) {
        CHECK_EQ(ioeng_poll(h, 0, 0), 0, "a poll while the class is held");
        int64_t left = ioeng_next_timeout_ns(h);
        CHECK(left > 1000000000ll, "ioeng_next_timeout_ns with a debt of centuries: %" PRId64, left);
        struct pollfd p = {.fd = ioeng_event_fd(h), .events = POLLIN};
        CHECK_EQ(poll(&p, 1, 300), 0, "the event fd of an engine held for centuries");
    } else {
        usleep(300 * 1000);
    }
    uint64_t cpu = cpu_ns(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
    CHECK(cpu < 30000000ull, "%s engine held for centuries used %.1f ms of CPU in 300 ms",
          mode == IOENG_MODE_POLLED ? "POLLED" : "THREADS", cpu / 1e6);
    CHECK_EQ(rec_n, 1, "the held read still waits");
    CHECK_EQ(ioeng_cancel_all(h), 1, "cancel_all of the held read");
    wait_recs(h, mode, 2);
    CHECK_EQ(count_label_res(1, -ECANCELED), 1, "the held read, cancelled");
    CHECK(ioeng_close(h) == 0, "close");
    munmap(area, huge);
}

/* POLLED close of an engine whose queued requests wait for their class's refills:
 * close dispatches them as the limit allows (3 reads at 5 IOPS: ~400 ms) and sleeps
 * in between (< 50 ms of its thread's CPU). */
static void polled_close_held_case(ioeng_backend_t be, int fd)
{
    uint16_t id;
    ioeng_t *h = open_limited(be, IOENG_MODE_POLLED, 5, &id);
    for (int i = 0; i < 3; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, id, 0);
    uint64_t t0 = tu_now_ns(), c0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
    CHECK(ioeng_close(h) == 0, "close");
    double took = (double)(tu_now_ns() - t0) / 1e9, cpu = (double)(cpu_ns(CLOCK_THREAD_CPUTIME_ID) - c0) / 1e9;
    CHECK_EQ(count_label_res(0, 4096), 3, "reads done by close");
    CHECK(took >= 0.3 && took < 5, "3 reads at 5 IOPS drained by close in %.3f s", took);
    CHECK(cpu < 0.05, "close used %.3f s of CPU to wait %.3f s for refills", cpu, took);
}

/* ------------------------------------------------------------------ */

/* Class `raise_id` of `raise_h` gets weight 10000 in the third callback. */
static ioeng_t *raise_h;
static uint16_t raise_id;

static void raise_cb(void *ctx, int64_t res)
{
    rec_cb(ctx, res);
    if (rec_n == 3) {
        ioeng_class_config_t c = class_cfg(10000);
        int rc = ioeng_class_update(raise_h, raise_id, &c);
        CHECK(rc == 0, "update from a callback = %s", tu_errname(rc));
    }
}

/* Depth 1, paused: A (weight 100, label 0) and B (weight 1, label 1) with 300 4 KiB reads
 * each; B raised to 10000 in the third callback must get ~100 of every 101 dispatches
 * from then on (at most the one dispatch already made before the update for A), not
 * wait out the step its tag took at weight 1 (100 of A's). */
static void weight_raise_case(ioeng_backend_t be, int fd)
{
    rec_reset();
    raise_h = tu_open(be, 1, 1, 0, 1);
    uint16_t a = open_class(raise_h, class_cfg(100));
    raise_id = open_class(raise_h, class_cfg(1));
    for (int label = 0; label < 2; label++)
        for (int i = 0; i < 300; i++) {
            ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0);
            q.class_id = label ? raise_id : a;
            CHECK(ioeng_submit(raise_h, &q, raise_cb, (void *)(intptr_t)label) == 0, "submit");
        }
    CHECK(ioeng_resume(raise_h) == 0, "resume");
    tu_waiter_wait(&rec_w, 600, 60);
    tu_close(raise_h);
    int a_first = 0, b_of_100 = 0;
    while (3 + a_first < rec_n && rec_label[3 + a_first] == 0)
        a_first++;
    for (int i = 3; i < 103; i++)
        b_of_100 += rec_label[i];
    CHECK(a_first <= 2 && b_of_100 >= 95,
          "weight 1 -> 10000 after 3 dispatches: %d of A before B's next, B got %d of the next 100",
          a_first, b_of_100);
}

/* A class held by its iops limit (label 0 reads) has it removed by ioeng_class_update():
 * its throttled time counts the held period up to then, no less, and stops growing
 * (class 0 then runs the unclassed path, which keeps no throttled time). */
static void limit_removed_case(ioeng_backend_t be, int fd, int class0)
{
    rec_reset();
    ioeng_t *h = tu_open(be, 4, 4, 0, 0);
    ioeng_class_config_t c = class_cfg(100);
    c.iops_limit = 10; /* one request now, then one per 100 ms */
    uint16_t id = 0;
    if (class0)
        CHECK(ioeng_class_update(h, 0, &c) == 0, "update class 0");
    else
        id = open_class(h, c);
    for (int i = 0; i < 5; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, id, 0);
    usleep(250 * 1000);
    uint64_t held = throttled_ns(h, id);
    CHECK(held >= 150000000ull, "class %u: throttled %.1f ms in 250 ms", id, held / 1e6);
    c.iops_limit = 0;
    CHECK(ioeng_class_update(h, id, &c) == 0, "remove the limit");
    tu_waiter_wait(&rec_w, 5, 30);
    uint64_t after = throttled_ns(h, id);
    CHECK(after >= held && after - held < 100000000ull,
          "class %u: throttled %.1f ms before the limit was removed, %.1f ms after", id,
          held / 1e6, after / 1e6);
    usleep(100 * 1000);
    uint64_t idle = throttled_ns(h, id);
    CHECK_EQ(idle, after, "class %u: throttled_ns with no limit and nothing queued", id);
    tu_close(h);
}

/* A bytes limit of 1 MB/s (burst 10,000 bytes) with 400 NORMAL 512-byte reads (label 0)
 * in flight: a 64 KiB HIGH read (label 1) needs a full bucket (~10 ms) and must go then,
 * ahead of the NORMAL reads queued in its class: at most the depth's worth (and those a
 * round was dispatching) complete before it, not the ~350 still queued. */
static void high_behind_limit_case(ioeng_backend_t be, int fd)
{
    rec_reset();
    ioeng_t *h = tu_open(be, 8, 8, 0, 0);
    ioeng_class_config_t c = class_cfg(100);
    c.bytes_per_sec_limit = 1000000;
    uint16_t id = open_class(h, c);
    for (int i = 0; i < 400; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 512, 0, id, 0);
    tu_waiter_wait(&rec_w, 40, 30); /* past the burst: 512 bytes every 0.5 ms */
    int before = __atomic_load_n(&rec_n, __ATOMIC_ACQUIRE);
    submit(h, IOENG_OP_READ, IOENG_PRIO_HIGH, fd, buf128k, 65536, 0, id, 1);
    int high_at = -1;
    for (int seen = before; high_at < 0 && seen < 401; seen++) {
        tu_waiter_wait(&rec_w, (uint64_t)seen + 1, 30);
        if (rec_label[seen] == 1)
            high_at = seen;
    }
    CHECK(high_at >= 0 && rec_res[high_at] == 65536, "HIGH read: %s",
          high_at < 0 ? "no callback" : tu_errname(rec_res[high_at]));
    CHECK(high_at - before <= 24, "%d NORMAL reads of its class completed before the HIGH one",
          high_at - before);
    ioeng_cancel_all(h);
    tu_waiter_wait(&rec_w, 401, 30);
    tu_close(h);
}

/* ------------------------------------------------------------------ */

static void stats_case(ioeng_backend_t be, int fd)
{
    rec_reset();
    ioeng_config_t cfg = tu_config(be, IOENG_MODE_THREADS, 8);
    cfg.latency_stats = IOENG_LATENCY_STATS_ON;
    ioeng_t *h = tu_open_cfg(&cfg);
    uint16_t a = open_class(h, class_cfg(100));
    for (int i = 0; i < 50; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_HIGH, fd, buf4k, 4096, 0, a, 0);
    for (int i = 0; i < 30; i++)
        submit(h, IOENG_OP_WRITE, IOENG_PRIO_HIGH, fd, buf4k, 4096, 0, 0, 0);
    for (int i = 0; i < 20; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, a, 0);
    ioeng_req_t sync = tu_req(IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, fd, NULL, 0, 0);
    sync.class_id = a;
    CHECK(ioeng_submit(h, &sync, rec_cb, NULL) == 0, "fsync");
    tu_waiter_wait(&rec_w, 101, 30);
    tu_wait_idle(h, 101);
    ioeng_class_stats_t s;
    CHECK(ioeng_class_stats(h, IOENG_CLASS_HIGH, &s, 0) == 0, "HIGH stats");
    CHECK(s.reads == 50 && s.writes == 30 && s.others == 0, "HIGH: %" PRIu64 " reads %" PRIu64
          " writes %" PRIu64 " others", s.reads, s.writes, s.others);
    CHECK(s.bytes_read == 50 * 4096 && s.bytes_written == 30 * 4096, "HIGH bytes");
    CHECK(s.queued == 0 && s.in_flight == 0, "HIGH idle");
    CHECK(s.p50_ns > 0 && s.p50_ns <= s.p90_ns && s.p90_ns <= s.p99_ns && s.p99_ns <= s.p999_ns &&
              s.p999_ns <= s.max_ns,
          "HIGH percentiles %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " max %" PRIu64,
          s.p50_ns, s.p90_ns, s.p99_ns, s.p999_ns, s.max_ns);
    CHECK(ioeng_class_stats(h, a, &s, 0) == 0, "class stats");
    CHECK(s.reads == 70 && s.writes == 0 && s.others == 1, "class a: %" PRIu64 " reads %" PRIu64
          " writes %" PRIu64 " others", s.reads, s.writes, s.others);
    CHECK(ioeng_class_stats(h, 0, &s, IOENG_STATS_RESET) == 0, "class 0 stats + reset");
    CHECK(s.writes == 30 && s.p50_ns > 0, "class 0 before reset: %" PRIu64 " writes", s.writes);
    CHECK(ioeng_class_stats(h, 0, &s, 0) == 0, "class 0 stats");
    CHECK(s.writes == 0 && s.reads == 0 && s.p50_ns == 0 && s.max_ns == 0,
          "after IOENG_STATS_RESET: %" PRIu64 " writes, p50 %" PRIu64, s.writes, s.p50_ns);
    tu_close(h);

    /* latency_stats off (the default): counters yes, percentiles 0. */
    rec_reset();
    h = tu_open(be, 8, 8, 0, 0);
    for (int i = 0; i < 10; i++)
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, 0, 0);
    tu_waiter_wait(&rec_w, 10, 30);
    tu_wait_idle(h, 10);
    CHECK(ioeng_class_stats(h, 0, &s, 0) == 0, "stats");
    CHECK(s.reads == 10 && s.p50_ns == 0 && s.max_ns == 0, "latency off: %" PRIu64 " reads",
          s.reads);
    tu_close(h);
}

/* ------------------------------------------------------------------ */

static void ioprio_case(ioeng_backend_t be, int fd)
{
    rec_reset();
    ioeng_t *h = tu_open(be, 4, 4, 0, 0);
    ioeng_class_config_t c = class_cfg(100);
    c.kernel_ioprio = (3 << 13); /* IOPRIO_CLASS_IDLE */
    uint16_t idle = open_class(h, c);
    c.kernel_ioprio = (2 << 13) | 4; /* IOPRIO_CLASS_BE, level 4 */
    uint16_t be4 = open_class(h, c);
    for (int i = 0; i < 8; i++) {
        submit(h, IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, idle, 0);
        submit(h, IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0, be4, 1);
    }
    tu_waiter_wait(&rec_w, 16, 30);
    for (int i = 0; i < rec_n; i++)
        CHECK(rec_res[i] == 4096, "request with a kernel ioprio: %s", tu_errname(rec_res[i]));
    tu_close(h);
}

/* ------------------------------------------------------------------ */

static void bad_input_case(ioeng_backend_t be, int fd)
{
    rec_reset();
    ioeng_t *h = tu_open(be, 4, 4, 0, 0);
    ioeng_class_config_t c = class_cfg(100);
    uint16_t id = 0xBEEF;
    c.weight = 0;
    CHECK_EQ(ioeng_class_open(h, &c, &id), -EINVAL, "weight 0");
    c.weight = 10001;
    CHECK_EQ(ioeng_class_open(h, &c, &id), -EINVAL, "weight 10001");
    c = class_cfg(100);
    int bad_prio[] = {-2, 0, 7, 4 << 13, (2 << 13) | 8, 1 << 20};
    for (size_t i = 0; i < sizeof bad_prio / sizeof bad_prio[0]; i++) {
        c.kernel_ioprio = bad_prio[i];
        CHECK_EQ(ioeng_class_open(h, &c, &id), -EINVAL, "kernel_ioprio %d", bad_prio[i]);
    }
    c = class_cfg(100);
    c.reserved[3] = 1;
    CHECK_EQ(ioeng_class_open(h, &c, &id), -EINVAL, "reserved");
    CHECK_EQ(id, 0xBEEF, "*out_id untouched on failure");
    c = class_cfg(100);
    CHECK_EQ(ioeng_class_open(h, NULL, &id), -EINVAL, "NULL config");
    CHECK_EQ(ioeng_class_open(h, &c, NULL), -EINVAL, "NULL out_id");
    CHECK_EQ(ioeng_class_open(NULL, &c, &id), -EINVAL, "NULL handle");

    /* Unknown class_id: before any class is open, and one past the last. */
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0);
    q.class_id = 1;
    CHECK_EQ(ioeng_submit(h, &q, rec_cb, NULL), -EINVAL, "class_id 1 before any open");
    uint16_t first = open_class(h, c);
    CHECK_EQ(first, 1, "first class id");
    for (int i = 2; i <= 63; i++)
        CHECK_EQ(open_class(h, c), i, "class id");
    CHECK_EQ(ioeng_class_open(h, &c, &id), -ENOSPC, "the 64th class");
    q.class_id = 64;
    CHECK_EQ(ioeng_submit(h, &q, rec_cb, NULL), -EINVAL, "class_id 64");
    q.class_id = IOENG_CLASS_HIGH;
    CHECK_EQ(ioeng_submit(h, &q, rec_cb, NULL), -EINVAL, "class_id IOENG_CLASS_HIGH");
    ioeng_req_t two[2] = {tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf4k, 4096, 0), q};
    two[0].class_id = 63;
    CHECK_EQ(ioeng_submit_batch(h, two, 2, rec_cb, NULL), 1, "batch stops at the unknown class");

    /* Update and stats: bad weight, unknown id, bad flag. */
    c.weight = 0;
    CHECK_EQ(ioeng_class_update(h, 1, &c), -EINVAL, "update weight 0");
    c.weight = 10001;
    CHECK_EQ(ioeng_class_update(h, 0, &c), -EINVAL, "update weight 10001");
    c = class_cfg(100);
    CHECK_EQ(ioeng_class_update(h, 64, &c), -EINVAL, "update class 64");
    CHECK_EQ(ioeng_class_update(h, IOENG_CLASS_HIGH, &c), -EINVAL, "update IOENG_CLASS_HIGH");
    ioeng_class_stats_t s;
    CHECK_EQ(ioeng_class_stats(h, 64, &s, 0), -EINVAL, "stats class 64");
    CHECK_EQ(ioeng_class_stats(h, 1, &s, 2), -EINVAL, "stats flag 2");
    CHECK_EQ(ioeng_class_stats(h, 1, NULL, 0), -EINVAL, "stats NULL out");
    tu_waiter_wait(&rec_w, 1, 10);
    tu_wait_idle(h, 1);
    CHECK_EQ(rec_n, 1, "callbacks: only the accepted request's");

    /* normal_min_percent above 50 at open. */
    ioeng_config_t cfg = tu_config(be, IOENG_MODE_THREADS, 4);
    cfg.normal_min_percent = 51;
    ioeng_t *h2 = NULL;
    CHECK_EQ(ioeng_open(&cfg, &h2), -EINVAL, "normal_min_percent 51");
    tu_close(h);
}

int main(void)
{
    tu_init("test_classes", 240);
    ioeng_backend_t be = tu_backend();
    tu_waiter_init(&rec_w);
    buf128k = tu_alloc(131072);
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    tu_pwrite_all(fd, buf128k, 131072, 0);
    tu_pwrite_all(fd, buf128k, 131072, 131072 * 8);
    int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    CHECK(zero >= 0, "/dev/zero: %s", strerror(errno));

    share_case(be, fd, 300, 100, 4096, 4096, "300:100 4k");
    share_case(be, fd, 100, 100, 4096, 131072, "1:1 4k vs 128k");
    share_case(be, fd, 1, 10000, 131072, 4096, "1:10000 128k vs 4k");
    guard_case(be, fd);
    double iops = limit_case(be, fd, 0, 2000, 0, 4096, 800, "tmpfs 4k reads at 2000 IOPS");
    double bps = limit_case(be, zero, 0, 0, 16 << 20, 131072, 100, "/dev/zero 128k reads at 16 MiB/s");
    double wbps = limit_case(be, fd, 1, 0, 8 << 20, 131072, 60, "tmpfs 128k writes at 8 MiB/s");
    high_limit_case(be, fd);
    polled_refill_case(be, fd);
    eventfd_refill_case(be, fd);
    update_case(be, fd);
    weight_raise_case(be, fd);
    limit_removed_case(be, fd, 0);
    limit_removed_case(be, fd, 1);
    high_behind_limit_case(be, fd);
    deadline_cancel_case(be, zero);
    for (int how = 0; how < 3; how++) {
        held_then_gone_case(be, fd, IOENG_MODE_THREADS, how);
        held_then_gone_case(be, fd, IOENG_MODE_POLLED, how);
    }
    polled_close_held_case(be, fd);
    endless_debt_case(be, fd, IOENG_MODE_THREADS);
    endless_debt_case(be, fd, IOENG_MODE_POLLED);
    stats_case(be, fd);
    ioprio_case(be, fd);
    bad_input_case(be, fd);
    close(zero);
    printf("test_classes [%s %s]: OK: cost shares within one request at depth 1 (300:100, "
           "4k vs 128k, 1:10000); normal_min_percent 10 within +-1; limits %.0f IOPS/2000, "
           "%.1f/16 MiB/s read, %.1f/8 MiB/s write, HIGH included; live update (limit removed: throttled time "
           "kept and stopped; weight raised: at once); HIGH ahead of its class's NORMAL under a "
           "bytes limit; deadline + cancel "
           "of held requests, then an idle engine; a debt of centuries sleeps; POLLED close sleeps between refills; ioeng_poll and the event fd wake at refills; HIGH stats, percentiles, reset; kernel ioprio; bad input\n",
           tu_backend_name(be), tu_mode_name(), iops, bps / (1 << 20), wbps / (1 << 20));
    return 0;
}
