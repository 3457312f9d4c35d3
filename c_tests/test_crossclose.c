/*
 * THREADS mode: ioeng_close from a callback of ANY engine returns -EDEADLK (see
 * ioeng_close in include/ioeng.h). Two
 * engines whose callbacks close each other would otherwise wait for each other forever:
 * A's callback joins B's completer, which sits in B's callback joining A's completer.
 * The interleaving is forced with a barrier: both callbacks are running when both call
 * ioeng_close on the other engine. Without the rule this test hangs (watchdog: FAIL).
 */
#include "test_util.h"

static ioeng_t *eng[2];
static pthread_barrier_t both_in_callback;
static int close_rc[2] = { 1, 1 };
static int idle_rc = 1;
static tu_waiter_t w;

/* ctx = index of the engine this callback belongs to; closes the other one. */
static void close_other(void *ctx, int64_t res)
{
    int me = (int)(intptr_t)ctx;
    CHECK(res == 1, "READ of /dev/zero: %s", tu_errname(res));
    pthread_barrier_wait(&both_in_callback);
    close_rc[me] = ioeng_close(eng[1 - me]);
    tu_waiter_add(&w, 1);
}

/* A callback of engine 0 closes engine 1 while engine 1 is idle. */
static void close_idle(void *ctx, int64_t res)
{
    (void)ctx;
    CHECK(res == 1, "READ of /dev/zero: %s", tu_errname(res));
    idle_rc = ioeng_close(eng[1]);
    tu_waiter_add(&w, 1);
}

int main(void)
{
    tu_init("test_crossclose", 60);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&w);
    CHECK(pthread_barrier_init(&both_in_callback, NULL, 2) == 0, "barrier");
    int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    CHECK(zero >= 0, "open /dev/zero");
    static char buf[2][1];

    for (int i = 0; i < 2; i++)
        eng[i] = tu_open(be, 4, 0, 0, 0);
    for (int i = 0; i < 2; i++) {
        ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, zero, buf[i], 1, 0);
        CHECK(ioeng_submit(eng[i], &q, close_other, (void *)(intptr_t)i) == 0, "submit");
    }
    tu_waiter_wait(&w, 2, 20);
    CHECK(close_rc[0] == -EDEADLK && close_rc[1] == -EDEADLK,
          "cross close from callbacks: %s / %s, want -EDEADLK both", tu_errname(close_rc[0]),
          tu_errname(close_rc[1]));

    /* Both engines are still valid and working after the refused closes. */
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, zero, buf[0], 1, 0);
    CHECK(ioeng_submit(eng[0], &q, close_idle, NULL) == 0, "submit");
    tu_waiter_wait(&w, 3, 20);
    CHECK(idle_rc == -EDEADLK, "closing an idle engine from another's callback: %s",
          tu_errname(idle_rc));

    tu_close(eng[0]);
    tu_close(eng[1]);
    pthread_barrier_destroy(&both_in_callback);
    close(zero);
    printf("test_crossclose [%s]: cross close from callbacks -> -EDEADLK on both, engines "
           "then close cleanly\n", tu_backend_name(be));
    return 0;
}
