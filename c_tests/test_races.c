/*
 * Races made to happen on every run (docs/ARCHITECTURE.md, "Testing races").
 *
 * Linked against a test build of libioeng with the race-hooks cargo feature, which
 * calls the function registered with ioeng_debug_race_hook() at named points inside
 * the engine (src/race_hooks.rs). At those points this test does what another thread
 * would do by bad luck, so each scenario below replays one interleaving exactly:
 *
 *  lost_dead_callback   (both modes) the engine thread takes the cancelled/timed-out
 *                       requests to run their callbacks; right then another cancel
 *                       adds one more. Its callback must still run (it used to be lost:
 *                       the waiting count was reset after the lock was released).
 *  cancel_counts_expired (both modes) a request timed out but its callback has not run:
 *                       ioeng_cancel() counts it, and the callback stays -ETIMEDOUT.
 *  completer_expiry     (THREADS) the completer times out the last queued request with
 *                       a deadline during its own dispatch while the submitter decides
 *                       to sleep: the -ETIMEDOUT callback must not wait for an unrelated
 *                       wake-up.
 *  completer_refill     (THREADS) with every slot busy the submitter goes to sleep with
 *                       no timer; right then the completer frees the slot and its round
 *                       dispatches one request of a rate-limited class and holds the
 *                       next until the class's refill. The submitter must wake for
 *                       that refill (on AIO nothing else would dispatch the held
 *                       request; on io_uring only the 50 ms stream sweep).
 *  poll_during_close    (POLLED) a poll that starts after close checked for pollers
 *                       gets -EBUSY; close drains every callback itself.
 *  completion_at_poll_end (POLLED, with and without IOENG_CONFIG_SINGLE_POLLER) a
 *                       stream read completes just as ioeng_poll(h, 0, 0) ends, while
 *                       the event fd is still quiet, or when it is loud again but not
 *                       yet drained (the drain eats the kernel's signal): an epoll loop
 *                       waiting on the fd must still be woken for it. (With SINGLE_POLLER on io_uring the
 *                       kernel's deferred completion work, not yet a CQE, was missed:
 *                       the fd stayed quiet until the engine's 50 ms check of stream
 *                       transfers; a file IO, which has no such check, was lost.)
 *                       The same with an fd nobody asked for until then: polls leave
 *                       such an fd as it is (nobody can see it), so the first
 *                       ioeng_event_fd() must find it readable, whether it comes after
 *                       the poll or inside it, just after the poll found it unwatched.
 *  helper_cancel_close  (AIO, both modes) the helper thread ran a FALLOCATE and has not
 *                       yet submitted its stand-in: right then the request is cancelled
 *                       and ioeng_close starts on another thread. Close must wait for the
 *                       helper, and the one callback gets the syscall's 0.
 *
 * IOENG_TEST_BACKEND=aio|uring, IOENG_TEST_MODE=threads|polled.
 */
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "test_util.h"

/* The test-build entry point (not in ioeng.h) and its points (src/race_hooks.rs). */
typedef void (*race_hook_t)(void *ctx, uint32_t point);
void ioeng_debug_race_hook(race_hook_t hook, void *ctx);
enum {
    P_SERVICE_TOOK_DEAD = 1,
    P_AFTER_SERVICE = 2,
    P_EXPIRED_BEFORE_BURY = 3,
    P_SERVICE_EXPIRED = 4,
    P_SUBMITTER_IDLE = 5,
    P_POLLED_CLOSE_CHECKED = 6,
    P_REAPED = 7,
    P_HELPER_RAN = 8,
    P_POLL_ENDING = 9,
    P_POLL_LOUD = 10,
    P_SUBMITTER_PARKING = 11,
    P_POLL_UNWATCHED = 12,
};

#define MAX_REQS 8
struct slot {
    _Atomic int calls;
    _Atomic int64_t res;
    _Atomic uint64_t at_ns;
};
static struct slot slots[MAX_REQS];
static ioeng_t *h;
static int zero_fd;
static char bufs[MAX_REQS][64];

static void on_done(void *ctx, int64_t res)
{
    struct slot *s = ctx;
    atomic_store(&s->res, res);
    atomic_store(&s->at_ns, tu_now_ns());
    atomic_fetch_add(&s->calls, 1);
}

static void reset_slots(void)
{
    for (int i = 0; i < MAX_REQS; i++) {
        atomic_store(&slots[i].calls, 0);
        atomic_store(&slots[i].res, INT64_MIN);
        atomic_store(&slots[i].at_ns, 0);
    }
}

static ioeng_t *open_engine_flags(uint32_t flags)
{
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = tu_backend();
    cfg.depth = 1;
    cfg.mode = tu_mode();
    cfg.flags = flags;
    cfg.idle_poll_us = IOENG_IDLE_POLL_NEVER; /* sleep at once: the interleavings below rely on it */
    ioeng_t *e = NULL;
    int rc = ioeng_open(&cfg, &e);
    CHECK(rc == 0, "ioeng_open: %d", rc);
    return e;
}

static ioeng_t *open_engine(void) { return open_engine_flags(0); }

static void submit(int i, int fd, uint64_t tag, uint64_t deadline_ns)
{
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, bufs[i], 1, 0);
    q.tag = tag;
    q.deadline_ns = deadline_ns;
    CHECK_EQ(ioeng_submit(h, &q, on_done, &slots[i]), 0, "submit %d", i);
}

/* Runs the engine until request i's callback ran or `sec` passed (POLLED: polls here). */
static int wait_for(int i, double sec)
{
    uint64_t end = tu_now_ns() + (uint64_t)(sec * 1e9);
    while (atomic_load(&slots[i].calls) == 0 && tu_now_ns() < end) {
        if (tu_mode() == IOENG_MODE_POLLED) {
            int rc = ioeng_poll(h, 1, 10 * 1000 * 1000);
            CHECK(rc >= 0, "ioeng_poll: %d", rc);
        } else {
            usleep(1000);
        }
    }
    return atomic_load(&slots[i].calls);
}

/* The read of an empty pipe that holds the engine's only slot. Linux AIO would run a
 * blocking pipe's read inside io_submit (stalling the engine thread, or the poll), so on
 * AIO the pipe is O_NONBLOCK and the slot is held by the engine's -EAGAIN retries. */
static int blocker[2];
static void start_blocker(int i)
{
    int nonblock = tu_backend() == IOENG_BACKEND_AIO ? O_NONBLOCK : 0;
    CHECK(pipe2(blocker, nonblock) == 0, "pipe");
    submit(i, blocker[0], 0, 0);
    uint64_t end = tu_now_ns() + 5000000000u;
    for (;;) {
        if (tu_mode() == IOENG_MODE_POLLED)
            CHECK(ioeng_poll(h, 0, 0) >= 0, "poll");
        ioeng_stats_t st;
        CHECK_EQ(ioeng_stats(h, &st), 0, "stats");
        if (st.queued_read == 0)
            break;
        CHECK(tu_now_ns() < end, "the blocker was never dispatched");
        usleep(1000);
    }
}

static void release_blocker(void)
{
    CHECK(write(blocker[1], "x", 1) == 1, "write pipe");
}

static void close_engine(int nreqs)
{
    ioeng_debug_race_hook(NULL, NULL);
    CHECK_EQ(ioeng_close(h), 0, "close");
    for (int i = 0; i < nreqs; i++)
        CHECK_EQ(atomic_load(&slots[i].calls), 1, "request %d: callbacks", i);
    if (blocker[0] > 0) {
        close(blocker[0]);
        close(blocker[1]);
        blocker[0] = blocker[1] = -1;
    }
}

static int thread_is(const char *name)
{
    char me[16] = {0};
    prctl(PR_GET_NAME, me);
    return strcmp(me, name) == 0;
}

/* ---- lost_dead_callback -------------------------------------------------------- */
static _Atomic int phase;
static _Atomic int hook_rc = INT32_MIN;

static void hook_lost_dead(void *ctx, uint32_t point)
{
    (void)ctx;
    int one = 1;
    if (point == P_SERVICE_TOOK_DEAD && atomic_compare_exchange_strong(&phase, &one, 2))
        atomic_store(&hook_rc, ioeng_cancel(h, 22)); /* request 2 joins the dead list now */
}

static void lost_dead_callback(void)
{
    reset_slots();
    h = open_engine();
    start_blocker(0);
    submit(1, zero_fd, 11, 0);
    submit(2, zero_fd, 22, 0);
    atomic_store(&phase, 1);
    ioeng_debug_race_hook(hook_lost_dead, NULL);
    CHECK_EQ(ioeng_cancel(h, 11), 1, "cancel request 1");
    CHECK(wait_for(1, 5) == 1, "request 1's callback");
    CHECK(wait_for(2, 2) == 1,
          "request 2, cancelled while its engine thread ran the cancelled callbacks, lost its "
          "callback (hook ran: %d, its cancel: %d)",
          atomic_load(&phase) == 2, atomic_load(&hook_rc));
    CHECK_EQ(atomic_load(&phase), 2, "the hook ran");
    CHECK_EQ(atomic_load(&hook_rc), 1, "the cancel inside the window found request 2");
    CHECK_EQ(atomic_load(&slots[1].res), -ECANCELED, "request 1");
    CHECK_EQ(atomic_load(&slots[2].res), -ECANCELED, "request 2");
    release_blocker();
    CHECK(wait_for(0, 5) == 1, "blocker");
    close_engine(3);
    printf("lost_dead_callback: a cancel while the engine ran the dead callbacks: callback ran\n");
}

/* ---- cancel_counts_expired ----------------------------------------------------- */
static void hook_cancel_expired(void *ctx, uint32_t point)
{
    (void)ctx;
    int one = 1;
    if (point == P_SERVICE_EXPIRED && atomic_compare_exchange_strong(&phase, &one, 2))
        atomic_store(&hook_rc, ioeng_cancel(h, 33));
}

static void cancel_counts_expired(void)
{
    reset_slots();
    h = open_engine();
    start_blocker(0);
    atomic_store(&phase, 1);
    atomic_store(&hook_rc, INT32_MIN);
    ioeng_debug_race_hook(hook_cancel_expired, NULL);
    submit(1, zero_fd, 33, tu_now_ns() + 20 * 1000 * 1000);
    CHECK(wait_for(1, 5) == 1, "the request with a deadline");
    CHECK_EQ(atomic_load(&phase), 2, "the hook ran");
    CHECK_EQ(atomic_load(&hook_rc), 1,
             "ioeng_cancel of a timed-out request whose callback had not run");
    CHECK_EQ(atomic_load(&slots[1].res), -ETIMEDOUT, "its callback keeps -ETIMEDOUT");
    ioeng_stats_t st;
    CHECK_EQ(ioeng_stats(h, &st), 0, "stats");
    CHECK(st.timed_out == 1 && st.cancelled == 0, "stats: timed_out %llu cancelled %llu",
          (unsigned long long)st.timed_out, (unsigned long long)st.cancelled);
    release_blocker();
    CHECK(wait_for(0, 5) == 1, "blocker");
    close_engine(2);
    printf("cancel_counts_expired: ioeng_cancel counted the expired request, callback -ETIMEDOUT\n");
}

/* ---- completer_expiry (THREADS) -------------------------------------------------- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static _Atomic pid_t submitter_tid;
static _Atomic int submitter_left;
static uint64_t deadline2;

static void set_phase(int p)
{
    pthread_mutex_lock(&mu);
    atomic_store(&phase, p);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static int wait_phase(int p, int sec)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += sec;
    pthread_mutex_lock(&mu);
    while (atomic_load(&phase) < p && pthread_cond_timedwait(&cv, &mu, &until) == 0)
        ;
    pthread_mutex_unlock(&mu);
    return atomic_load(&phase) >= p;
}

static char thread_state(pid_t tid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return '?';
    char *got = fgets(line, sizeof line, f);
    fclose(f);
    char *paren = got ? strrchr(line, ')') : NULL;
    return paren && paren[1] == ' ' ? paren[2] : '?';
}

/* Hook helper: on the completer, holds the completion of request 0 (so its slot, the
 * engine's only one, stays busy on either backend) until phase 2. Returns whether this
 * call was that. */
static int hold_first_completion(uint32_t point, int p, const char *why)
{
    if (point != P_REAPED || p >= 2 || !thread_is("ioeng-complete"))
        return 0;
    CHECK(wait_phase(2, 10), "%s", why);
    return 1;
}

/* Submits request 0 (a /dev/zero read) and returns once it left the queue for the
 * kernel; the scenario's hook then holds its completion (`hold_first_completion`). */
static void submit_first_and_wait_dispatched(void)
{
    submit(0, zero_fd, 0, 0);
    uint64_t end = tu_now_ns() + 5000000000u;
    for (ioeng_stats_t st = {0}; st.queued_read != 0 || st.submitted == 0;) {
        CHECK_EQ(ioeng_stats(h, &st), 0, "stats");
        CHECK(tu_now_ns() < end, "request 0 was never dispatched");
        usleep(1000);
    }
}

static void hook_completer_expiry(void *ctx, uint32_t point)
{
    (void)ctx;
    int p = atomic_load(&phase);
    if (hold_first_completion(point, p,
                              "the submitter never went idle after the first deadline")) {
        /* Held until the submitter went idle. */
    } else if (point == P_SUBMITTER_IDLE && p == 1 && thread_is("ioeng-submit")) {
        /* The submitter left its step (after the push, or at the first deadline's timer):
         * hold it here, outside the submit role, until the completer is inside its
         * expiry. */
        atomic_store(&submitter_tid, (pid_t)syscall(SYS_gettid));
        set_phase(2);
        CHECK(wait_phase(4, 10), "the completer never reached its expiry");
        atomic_store(&submitter_left, 1);
    } else if (point == P_AFTER_SERVICE && p == 2 && thread_is("ioeng-complete")) {
        /* The completer's housekeeping is done (it timed out request 1 if the first
         * deadline had passed); let the second deadline pass before its round, so that the
         * round's own check expires it. */
        set_phase(3);
        while (tu_now_ns() <= deadline2 + 1000000)
            usleep(1000);
    } else if (point == P_EXPIRED_BEFORE_BURY && p == 3 && thread_is("ioeng-complete")) {
        /* Request 2 left the queues and the timer is disarmed; let the submitter decide
         * now, and go on only once it sleeps. */
        set_phase(4);
        uint64_t end = tu_now_ns() + 5000000000u;
        while (!atomic_load(&submitter_left) && tu_now_ns() < end)
            usleep(100);
        while (thread_state(atomic_load(&submitter_tid)) != 'S' && tu_now_ns() < end)
            usleep(100);
        usleep(20 * 1000);
        set_phase(5);
    }
}

static void completer_expiry(void)
{
    reset_slots();
    h = open_engine();
    atomic_store(&phase, 0);
    atomic_store(&submitter_left, 0);
    ioeng_debug_race_hook(hook_completer_expiry, NULL);
    submit_first_and_wait_dispatched(); /* its completion is held at P_REAPED */
    /* One batch: the submitter, woken by it, finds no free slot and goes idle. */
    uint64_t t0 = tu_now_ns();
    deadline2 = t0 + 150 * 1000 * 1000;
    ioeng_req_t q[2] = {tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, zero_fd, bufs[1], 1, 0),
                        tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, zero_fd, bufs[2], 1, 0)};
    q[0].deadline_ns = t0 + 50 * 1000 * 1000;
    q[1].deadline_ns = deadline2;
    void *ctxs[2] = {&slots[1], &slots[2]};
    CHECK_EQ(ioeng_submit_batch(h, q, 2, on_done, ctxs), 2, "submit_batch");
    /* From here the hook holds the submitter at its next idle point, outside the submit
     * role: right after this push, or at the first deadline's timer if it went to sleep
     * before the phase was set. */
    set_phase(1);
    /* Then the completer settles request 0, frees the slot and runs a submit step. */
    CHECK(wait_phase(5, 10), "the interleaving did not happen (phase %d)", atomic_load(&phase));
    CHECK(wait_for(1, 2) == 1, "request 1's callback");
    CHECK_EQ(atomic_load(&slots[1].res), -ETIMEDOUT, "request 1");
    int got = wait_for(2, 1);
    CHECK(got == 1,
          "request 2 timed out in the completer's round, but its -ETIMEDOUT callback did not "
          "come within 1 s (the submitter sleeps without a timeout)");
    CHECK_EQ(atomic_load(&slots[2].res), -ETIMEDOUT, "request 2");
    double late_ms = (double)(atomic_load(&slots[2].at_ns) - deadline2) / 1e6;
    CHECK(late_ms < 500, "request 2's callback came %.1f ms after its deadline", late_ms);
    CHECK(wait_for(0, 5) == 1, "request 0");
    close_engine(3);
    printf("completer_expiry: the completer's round timed out the last deadline while the "
           "submitter went to sleep: callback %.1f ms after the deadline (hook delays incl.)\n",
           late_ms);
}

/* ---- completer_refill (THREADS) ---------------------------------------------------- */
static _Atomic int held_at_release = -1;
static void hook_completer_refill(void *ctx, uint32_t point)
{
    (void)ctx;
    int p = atomic_load(&phase);
    if (hold_first_completion(point, p,
                              "the submitter never went to sleep with requests queued")) {
        /* Held until the submitter has read its timer (none: nothing is held yet). */
    } else if (point == P_SUBMITTER_PARKING && p == 0 && thread_is("ioeng-submit")) {
        /* Its sleep after dispatching request 0: the test waits for it. */
        atomic_store(&submitter_tid, (pid_t)syscall(SYS_gettid));
    } else if (point == P_SUBMITTER_PARKING && p == 1 && thread_is("ioeng-submit")) {
        /* The submitter read "no timer"; before it announces its sleep, the completer
         * settles request 0, dispatches request 1 and finds request 2 held by the
         * class's limit (its own rounds, request 1's completion included). */
        set_phase(2);
        uint64_t end = tu_now_ns() + 5000000000u;
        while (atomic_load(&slots[1].calls) == 0 && tu_now_ns() < end)
            usleep(100);
        usleep(5 * 1000);
        ioeng_stats_t st;
        CHECK_EQ(ioeng_stats(h, &st), 0, "stats");
        atomic_store(&held_at_release, (int)(st.queued_read + st.queued_write));
        set_phase(3);
    }
}

static void completer_refill(void)
{
    reset_slots();
    h = open_engine();
    ioeng_class_config_t cc;
    ioeng_class_config_init(&cc);
    /* The burst (10 ms of the rate, at least one request) is one request; the next goes
     * 10 ms later, well before the 50 ms sweep timer of io_uring's stream check, which
     * would also wake the submitter. */
    cc.iops_limit = 100;
    uint16_t limited = 0;
    CHECK_EQ(ioeng_class_open(h, &cc, &limited), 0, "class_open");
    atomic_store(&phase, 0);
    atomic_store(&held_at_release, -1);
    atomic_store(&submitter_tid, 0);
    ioeng_debug_race_hook(hook_completer_refill, NULL);
    submit_first_and_wait_dispatched(); /* its completion is held at P_REAPED */
    /* Once the submitter sleeps (so that the push below wakes it, and not a park that
     * finds the push's token), its next sleep is the one the hook interrupts: it finds no
     * free slot for requests 1 and 2. */
    uint64_t end = tu_now_ns() + 5000000000u;
    while ((atomic_load(&submitter_tid) == 0 || thread_state(atomic_load(&submitter_tid)) != 'S') &&
           tu_now_ns() < end)
        usleep(100);
    CHECK(tu_now_ns() < end, "the submitter never went to sleep after dispatching request 0");
    set_phase(1);
    ioeng_req_t q[2] = {tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, zero_fd, bufs[1], 1, 0),
                        tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, zero_fd, bufs[2], 1, 0)};
    q[0].class_id = q[1].class_id = limited;
    void *ctxs[2] = {&slots[1], &slots[2]};
    CHECK_EQ(ioeng_submit_batch(h, q, 2, on_done, ctxs), 2, "submit_batch");
    CHECK(wait_phase(3, 10), "the interleaving did not happen (phase %d)", atomic_load(&phase));
    CHECK_EQ(atomic_load(&held_at_release), 1, "request 2 held by the class limit when the "
                                               "submitter was let go");
    CHECK(wait_for(0, 5) == 1 && wait_for(1, 5) == 1, "requests 0 and 1");
    int got = wait_for(2, 2);
    CHECK(got == 1, "request 2 was held until its class's refill (10 ms), but it was not "
                    "dispatched within 2 s: the submitter sleeps past the refill");
    CHECK_EQ(atomic_load(&slots[2].res), 1, "request 2");
    /* Request 1 completed right after its dispatch, which took the class's token. */
    double gap_ms = (double)(atomic_load(&slots[2].at_ns) - atomic_load(&slots[1].at_ns)) / 1e6;
    CHECK(gap_ms < 30, "request 2 came %.1f ms after request 1 for a refill of 10 ms: the "
                       "submitter slept past the refill (until some other timer)", gap_ms);
    close_engine(3);
    printf("completer_refill: the completer's round held a request while the submitter went "
           "to sleep: it went %.1f ms after the one before it (refill 10 ms)\n", gap_ms);
}

/* ---- poll_during_close (POLLED) ---------------------------------------------------- */
static _Atomic int poll_rc = INT32_MIN;
static void *poller(void *arg)
{
    (void)arg;
    atomic_store(&poll_rc, ioeng_poll(h, 1, 300 * 1000 * 1000));
    return NULL;
}

static void hook_poll_during_close(void *ctx, uint32_t point)
{
    (void)ctx;
    int one = 1;
    if (point == P_POLLED_CLOSE_CHECKED && atomic_compare_exchange_strong(&phase, &one, 2)) {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, poller, NULL) == 0, "pthread_create");
        pthread_join(t, NULL);
    }
}

static void poll_during_close(void)
{
    reset_slots();
    h = open_engine();
    for (int i = 0; i < 4; i++)
        submit(i, zero_fd, 0, 0);
    atomic_store(&phase, 1);
    ioeng_debug_race_hook(hook_poll_during_close, NULL);
    CHECK_EQ(ioeng_close(h), 0, "close");
    ioeng_debug_race_hook(NULL, NULL);
    CHECK_EQ(atomic_load(&phase), 2, "the hook ran");
    CHECK_EQ(atomic_load(&poll_rc), -EBUSY, "a poll started while close drains");
    for (int i = 0; i < 4; i++) {
        CHECK_EQ(atomic_load(&slots[i].calls), 1, "request %d: callbacks", i);
        CHECK_EQ(atomic_load(&slots[i].res), 1, "request %d", i);
    }
    printf("poll_during_close: a poll started inside close got -EBUSY; close ran all 4 callbacks\n");
}

/* ---- completion_at_poll_end (POLLED) ---------------------------------------------- */
static _Atomic uint32_t completion_point; /* P_POLL_ENDING or P_POLL_LOUD */
/* When the loop starts to watch the event fd (ioeng_event_fd): before any poll, inside
 * the poll that ends with the completion (at P_POLL_UNWATCHED: that poll had found the
 * fd unwatched and skipped leaving it readable), or after that poll returned. */
enum watch_at { WATCH_FIRST, WATCH_IN_POLL, WATCH_AFTER };
static _Atomic int watch_at;
static int loop_ep = -1;
static void watch_event_fd(void)
{
    struct epoll_event ev = {.events = EPOLLIN};
    CHECK(epoll_ctl(loop_ep, EPOLL_CTL_ADD, ioeng_event_fd(h), &ev) == 0, "epoll_ctl: %s",
          strerror(errno));
}
static void hook_poll_ending(void *ctx, uint32_t point)
{
    (void)ctx;
    int one = 1, two = 2;
    if (point == atomic_load(&completion_point) && atomic_compare_exchange_strong(&phase, &one, 2))
        release_blocker(); /* the kernel queues the read's completion right here */
    else if (point == P_POLL_UNWATCHED && atomic_load(&watch_at) == WATCH_IN_POLL &&
             atomic_compare_exchange_strong(&phase, &two, 3))
        watch_event_fd();
}

/* One try; returns 0 when it proved nothing (see below) and must be repeated. */
static int completion_at_poll_end_once(uint32_t flags, uint32_t point, enum watch_at when)
{
    atomic_store(&completion_point, point);
    atomic_store(&watch_at, when);
    reset_slots();
    h = open_engine_flags(flags);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    CHECK(ep >= 0, "epoll_create1: %s", strerror(errno));
    loop_ep = ep;
    if (when == WATCH_FIRST)
        watch_event_fd();
    uint64_t t0 = tu_now_ns();
    start_blocker(0); /* polls until the read is in flight */
    atomic_store(&phase, 1);
    ioeng_debug_race_hook(hook_poll_ending, NULL);
    CHECK(ioeng_poll(h, 0, 0) >= 0, "poll");
    CHECK_EQ(atomic_load(&phase), when == WATCH_IN_POLL ? 3 : 2, "the hook ran");
    if (when == WATCH_AFTER)
        watch_event_fd();
    int conclusive = 1;
    if (tu_backend() == IOENG_BACKEND_URING) {
        /* The pipe write in the hook ran on the polling thread, so the kernel queued the
         * completion before the poll ended (as a CQE: the task_work ran as the write
         * returned; or with SINGLE_POLLER as deferred work, not yet a CQE): the poll must
         * leave the fd readable. Without that only the engine's check of in-flight
         * stream transfers, due 50 ms after the read's dispatch, would wake the loop (a
         * file IO has no such check: it was lost for good). That check also makes the fd
         * readable, so a try that took 40 ms or more proves nothing. */
        int64_t next = ioeng_next_timeout_ns(h);
        if (tu_now_ns() - t0 >= 40000000ull)
            conclusive = 0;
        else
            CHECK_EQ(next, 0, "ioeng_next_timeout_ns after the poll (0: the event fd is readable)");
    }
    /* An event loop: sleep on the fd alone, poll when it is readable. */
    int wakes = 0;
    uint64_t end = tu_now_ns() + 5000000000ull;
    while (atomic_load(&slots[0].calls) == 0 && tu_now_ns() < end) {
        int n = epoll_wait(ep, &ev, 1, 1000);
        if (n == 0)
            continue; /* quiet: the completion was lost, unless the next second brings it */
        CHECK(n == 1 || errno == EINTR, "epoll_wait: %s", strerror(errno));
        wakes++;
        CHECK(ioeng_poll(h, 0, 0) >= 0, "poll");
    }
    CHECK_EQ(atomic_load(&slots[0].calls), 1,
             "the read that completed as the poll ended (the event fd stayed quiet)");
    CHECK_EQ(atomic_load(&slots[0].res), 1, "the read's result");
    close(ep);
    close_engine(1);
    if (conclusive)
        printf("completion_at_poll_end%s, %s, %s: a completion as the poll ended woke the loop "
               "(%d wake-up(s)), callback ran\n",
               flags ? " (SINGLE_POLLER)" : "",
               point == P_POLL_ENDING ? "fd still quiet" : "fd loud, before its drain",
               when == WATCH_FIRST     ? "fd watched from the start"
               : when == WATCH_IN_POLL ? "fd first asked for as that poll ended"
                                       : "fd first asked for after that poll",
               wakes);
    return conclusive;
}

static void completion_at_poll_end(uint32_t flags, uint32_t point, enum watch_at when)
{
    for (int i = 0; i < 5; i++) {
        if (completion_at_poll_end_once(flags, point, when))
            return;
        printf("completion_at_poll_end: try %d took 40 ms or more (a loaded machine): again\n",
               i + 1);
    }
    CHECK(0, "completion_at_poll_end: 5 tries of 40 ms or more each proved nothing");
}

/* ---- helper_cancel_close (AIO) ------------------------------------------------------ */
static _Atomic int closed_rc = INT32_MIN;
static _Atomic int cancel_found = -1;
static _Atomic int calls_while_held = -1;
static void *closer(void *arg)
{
    (void)arg;
    atomic_store(&closed_rc, ioeng_close(h));
    return NULL;
}
static pthread_t closer_tid;

static void hook_helper_cancel_close(void *ctx, uint32_t point)
{
    (void)ctx;
    int one = 1;
    if (point == P_HELPER_RAN && thread_is("ioeng-aio-helpe") &&
        atomic_compare_exchange_strong(&phase, &one, 2)) {
        atomic_store(&cancel_found, ioeng_cancel(h, 42));
        CHECK(pthread_create(&closer_tid, NULL, closer, NULL) == 0, "pthread_create");
        /* Only now may the main thread join closer_tid (phase 2 alone came too early:
         * it joined an unset thread id and read close's result before close ran). */
        atomic_store(&phase, 3);
        usleep(100 * 1000); /* close runs meanwhile, and must wait for this slot */
        atomic_store(&calls_while_held, atomic_load(&slots[0].calls));
        CHECK_EQ(atomic_load(&closed_rc), INT32_MIN, "close returned while the helper held a slot");
    }
}

static void helper_cancel_close(void)
{
    reset_slots();
    h = open_engine();
    int fd = tu_scratch(TU_EXT4, 0, NULL);
    ioeng_req_t q = tu_req(IOENG_OP_FALLOCATE, IOENG_PRIO_NORMAL, fd, NULL, 65536, 0);
    q.tag = 42;
    atomic_store(&phase, 1);
    ioeng_debug_race_hook(hook_helper_cancel_close, NULL);
    CHECK_EQ(ioeng_submit(h, &q, on_done, &slots[0]), 0, "submit");
    if (tu_mode() == IOENG_MODE_POLLED)
        CHECK(ioeng_poll(h, 0, 0) >= 0, "poll: hands the FALLOCATE over");
    uint64_t end = tu_now_ns() + 10000000000ull;
    while (atomic_load(&phase) != 3 && tu_now_ns() < end)
        usleep(1000);
    CHECK_EQ(atomic_load(&phase), 3, "the helper never reached its hook");
    pthread_join(closer_tid, NULL);
    ioeng_debug_race_hook(NULL, NULL);
    CHECK_EQ(atomic_load(&closed_rc), 0, "close");
    CHECK_EQ(atomic_load(&cancel_found), 1, "cancel found the command in its slot");
    CHECK_EQ(atomic_load(&calls_while_held), 0, "a callback while the helper held the slot");
    CHECK_EQ(atomic_load(&slots[0].calls), 1, "callbacks");
    CHECK_EQ(atomic_load(&slots[0].res), 0, "the syscall's result, not -ECANCELED");
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 65536, "the FALLOCATE ran");
    close(fd);
    printf("helper_cancel_close: a cancel and a close while the helper held the slot: close "
           "waited, one callback with the syscall's 0\n");
}

/* With arguments, runs only the scenarios named (to check one fix at a time). */
static int wanted(int argc, char **argv, const char *name)
{
    if (argc < 2)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    tu_init("test_races", 60);
    require_backend(tu_backend());
    zero_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    CHECK(zero_fd >= 0, "open /dev/zero");
    int threads = tu_mode() == IOENG_MODE_THREADS;
    if (wanted(argc, argv, "lost_dead_callback"))
        lost_dead_callback();
    if (wanted(argc, argv, "cancel_counts_expired"))
        cancel_counts_expired();
    if (threads && wanted(argc, argv, "completer_expiry"))
        completer_expiry();
    if (threads && wanted(argc, argv, "completer_refill"))
        completer_refill();
    if (!threads && wanted(argc, argv, "poll_during_close"))
        poll_during_close();
    if (!threads && wanted(argc, argv, "completion_at_poll_end")) {
        for (uint32_t p = P_POLL_ENDING; p <= P_POLL_LOUD; p++) {
            completion_at_poll_end(0, p, WATCH_FIRST);
            completion_at_poll_end(IOENG_CONFIG_SINGLE_POLLER, p, WATCH_FIRST);
        }
        /* Polls leave the fd as it is while nobody watches it: the first to ask for it
         * must find it readable for the completion those polls left. */
        for (int when = WATCH_IN_POLL; when <= WATCH_AFTER; when++) {
            completion_at_poll_end(0, P_POLL_ENDING, when);
            completion_at_poll_end(IOENG_CONFIG_SINGLE_POLLER, P_POLL_ENDING, when);
        }
    }
    int aio = tu_backend() == IOENG_BACKEND_AIO;
    if (aio && wanted(argc, argv, "helper_cancel_close"))
        helper_cancel_close();
    printf("test_races [%s %s]: OK: lost_dead_callback, cancel_counts_expired, %s%s "
           "(completer_expiry and completer_refill are THREADS-only, poll_during_close and completion_at_poll_end POLLED-only, "
           "helper_cancel_close AIO-only)\n",
           tu_backend_name(tu_backend()), tu_mode_name(),
           threads ? "completer_expiry, completer_refill" : "poll_during_close, completion_at_poll_end",
           aio ? ", helper_cancel_close" : "");
    return 0;
}
