/*
 * Every synchronous error of the C interface, with exact return values, and the
 * rule "return < 0 => the callback never runs" (callbacks are counted). ioeng_open of
 * the largest depth, in a child whose address space (RLIMIT_AS) leaves 0 to 16 MiB,
 * returns -ENOMEM or 0 and is never killed (both modes).
 */
#include "test_util.h"

#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>

static tu_waiter_t w;
static int64_t total_cbs;

typedef struct {
    int64_t res;
    int fired;
} slot_t;

static void cb(void *ctx, int64_t res)
{
    slot_t *s = ctx;
    s->res = res;
    __atomic_add_fetch(&s->fired, 1, __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&total_cbs, 1, __ATOMIC_SEQ_CST);
    tu_waiter_add(&w, 1);
}

static ioeng_t *const SENTINEL = (ioeng_t *)(uintptr_t)0x5a5a5a50;

static void expect_open_fails(const ioeng_config_t *cfg, int want, const char *what)
{
    ioeng_t *h = SENTINEL;
    int rc = ioeng_open(cfg, &h);
    if (rc == 0 && h != SENTINEL && h != NULL)
        ioeng_close(h);
    CHECK(rc == want, "ioeng_open(%s) = %s, expected %s", what, tu_errname(rc), tu_errname(want));
    CHECK(h == SENTINEL, "ioeng_open(%s) failed but changed *out", what);
}

static void open_ok_and_close(const ioeng_config_t *cfg, const char *what)
{
    ioeng_t *h = NULL;
    int rc = ioeng_open(cfg, &h);
    CHECK(rc == 0 && h, "ioeng_open(%s) = %s, expected 0", what, tu_errname(rc));
    tu_close(h);
}

static ioeng_config_t base_cfg(ioeng_backend_t be)
{
    ioeng_config_t c;
    ioeng_config_init(&c);
    c.backend = be;
    return c;
}

static long vm_size_kib(void)
{
    FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmSize:", 7) == 0)
            kib = atol(line + 7);
    if (f)
        fclose(f);
    return kib;
}

/* A fresh process (test_errors --short-of-memory BACKEND MODE MARGIN_KIB, started with
 * MALLOC_ARENA_MAX=1): an address space (RLIMIT_AS) `margin_kib` above what it maps after
 * a warm-up open, then an engine of the largest depth (and batch, with latency
 * histograms). Exit 0: it opened and closed; 1: -ENOMEM; 8: -EAGAIN; 2: anything else. Fresh, with
 * one malloc arena and no dynamic mmap threshold, so that the margin is what the open
 * gets: a forked child would inherit heap memory and the reserved (already counted)
 * address space of other threads' arenas, which glibc falls back to. */
static int short_of_memory_child(char **argv)
{
    ioeng_config_t c = base_cfg((ioeng_backend_t)atoi(argv[2]));
    c.mode = (ioeng_mode_t)atoi(argv[3]);
    long margin_kib = atol(argv[4]);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    c.depth = 1;
    ioeng_t *h = NULL;
    if (ioeng_open(&c, &h) != 0 || ioeng_close(h) != 0) /* lazy init, thread stacks */
        return 3;
    c.depth = IOENG_MAX_DEPTH;
    c.latency_stats = IOENG_LATENCY_STATS_ON;
    malloc_trim(0);
    long kib = vm_size_kib();
    if (kib < 0)
        return 4;
    struct rlimit r = {.rlim_cur = (rlim_t)(kib + margin_kib) * 1024, .rlim_max = RLIM_INFINITY};
    if (setrlimit(RLIMIT_AS, &r) != 0)
        return 5;
    h = NULL;
    int rc = ioeng_open(&c, &h);
    if (rc == 0)
        return ioeng_close(h) == 0 ? 0 : 6;
    if (rc == -ENOMEM)
        return 1;
    /* The other errno ioeng_open documents for exhausted kernel resources (io_setup,
     * an eventfd or a thread short of memory may say so): refused cleanly too. */
    if (rc == -EAGAIN)
        return 8;
    fprintf(stderr, "short of memory (margin %ld KiB): ioeng_open = %d\n", margin_kib, rc);
    return 2;
}

/* ioeng_open short of memory returns -ENOMEM (or 0 where the engine fits) and never
 * aborts (Rust's allocation failure), at every margin from nothing to 16 MiB, where the
 * arrays sized by depth (slots, budget, cancel marks, scratch lists) fail one by one. */
static void test_open_short_of_memory(ioeng_backend_t be)
{
    ioeng_mode_t modes[] = {IOENG_MODE_THREADS, IOENG_MODE_POLLED};
    for (int m = 0; m < 2; m++) {
        const char *mode = modes[m] == IOENG_MODE_POLLED ? "polled" : "threads";
        int enomem = 0, eagain = 0, opened = 0;
        for (long margin = 0; margin <= 16384; margin += 256) {
            char sbe[16], smode[16], smargin[32];
            snprintf(sbe, sizeof sbe, "%d", (int)be);
            snprintf(smode, sizeof smode, "%d", (int)modes[m]);
            snprintf(smargin, sizeof smargin, "%ld", margin);
            fflush(stdout);
            pid_t pid = fork();
            CHECK(pid >= 0, "fork: %s", strerror(errno));
            if (pid == 0) {
                char *args[] = {"test_errors", "--short-of-memory", sbe, smode, smargin, NULL};
                setenv("MALLOC_ARENA_MAX", "1", 1);
                execv("/proc/self/exe", args);
                _exit(7);
            }
            int st = 0;
            CHECK_EQ(waitpid(pid, &st, 0), pid, "waitpid");
            CHECK(!WIFSIGNALED(st), "%s: ioeng_open with RLIMIT_AS = VmSize + %ld KiB: killed "
                  "by signal %d (%s)", mode, margin, WTERMSIG(st), strsignal(WTERMSIG(st)));
            CHECK(WIFEXITED(st) && (WEXITSTATUS(st) <= 1 || WEXITSTATUS(st) == 8),
                  "%s: ioeng_open with RLIMIT_AS = VmSize + %ld KiB: child exit %d (2: neither "
                  "0, -ENOMEM nor -EAGAIN)", mode, margin, WEXITSTATUS(st));
            enomem += WEXITSTATUS(st) == 1;
            eagain += WEXITSTATUS(st) == 8;
            opened += WEXITSTATUS(st) == 0;
        }
        CHECK(enomem > 0, "%s: never -ENOMEM, even with no memory to spare", mode);
        printf("  %s: depth %u with RLIMIT_AS = VmSize + 0..16 MiB: %d x -ENOMEM, %d x -EAGAIN, "
               "%d x opened\n", mode, IOENG_MAX_DEPTH, enomem, eagain, opened);
    }
}

static void test_open(ioeng_backend_t be, int fd)
{
    ioeng_config_t c;

    /* defaults */
    memset(&c, 0xAB, sizeof c);
    ioeng_config_init(&c);
    CHECK_EQ(c.backend, IOENG_BACKEND_AUTO, "default backend");
    CHECK_EQ(c.depth, 128, "default depth");
    CHECK(c.batch == 0 || c.batch == 128, "default batch %u (expected 0 = depth)", c.batch);
    CHECK_EQ(c.queue_capacity, 0, "default queue_capacity");
    CHECK_EQ(c.start_paused, 0, "default start_paused");
    CHECK_EQ(c.mode, IOENG_MODE_THREADS, "default mode");
    CHECK_EQ(c.idle_poll_us, IOENG_IDLE_POLL_DEFAULT, "default idle_poll_us");
    CHECK_EQ(c.submitter_cpu, -1, "default submitter_cpu");
    CHECK_EQ(c.completer_cpu, -1, "default completer_cpu");
    CHECK_EQ(c.normal_min_percent, 0, "default normal_min_percent");
    CHECK_EQ(c.latency_stats, IOENG_LATENCY_STATS_DEFAULT, "default latency_stats");
    CHECK_EQ(c.flags, 0, "default flags");
    CHECK_EQ(c.reserved[0], 0, "default reserved[0]");
    ioeng_config_init(NULL); /* ignored, must not crash */

    /* bad configs */
    c = base_cfg(be); c.depth = 0;
    expect_open_fails(&c, -EINVAL, "depth 0");
    c = base_cfg(be); c.depth = 32769;
    expect_open_fails(&c, -EINVAL, "depth 32769");
    c = base_cfg(be); c.depth = UINT32_MAX;
    expect_open_fails(&c, -EINVAL, "depth UINT32_MAX");
    c = base_cfg(be); c.depth = 16; c.batch = 17;
    expect_open_fails(&c, -EINVAL, "batch 17 > depth 16");
    c = base_cfg(be); c.batch = 129;
    expect_open_fails(&c, -EINVAL, "batch 129 > default depth 128");
    c = base_cfg(be); c.backend = 7;
    expect_open_fails(&c, -EINVAL, "backend 7");
    c = base_cfg(be); c.backend = 3;
    expect_open_fails(&c, -EINVAL, "backend 3");
    c = base_cfg(be); c.reserved[0] = 1;
    expect_open_fails(&c, -EINVAL, "reserved[0]=1");
    c = base_cfg(be); c.flags = 2;
    expect_open_fails(&c, -EINVAL, "unknown flags bit 2");
    c = base_cfg(be); c.flags = 0x80000000u | IOENG_CONFIG_SINGLE_POLLER;
    expect_open_fails(&c, -EINVAL, "unknown flags bit 31");
    c = base_cfg(be); c.reserved[0] = 0x80000000u;
    expect_open_fails(&c, -EINVAL, "reserved[0]!=0");
    c = base_cfg(be); c.normal_min_percent = 51;
    expect_open_fails(&c, -EINVAL, "normal_min_percent 51");
    c = base_cfg(be); c.latency_stats = 3;
    expect_open_fails(&c, -EINVAL, "latency_stats 3");
    c = base_cfg(be); c.mode = 2;
    expect_open_fails(&c, -EINVAL, "mode=2");
    c = base_cfg(be); c.start_paused = 2;
    expect_open_fails(&c, -EINVAL, "start_paused 2");
    c = base_cfg(be);
    CHECK_EQ(ioeng_open(&c, NULL), -EINVAL, "ioeng_open(out NULL)");
    CHECK_EQ(ioeng_open(NULL, NULL), -EINVAL, "ioeng_open(NULL, NULL)");

    /* boundary configs that must work */
    c = base_cfg(be); c.depth = 1;
    open_ok_and_close(&c, "depth 1");
    c = base_cfg(be); c.depth = 32; /* batch left at its default: must mean "= depth" */
    open_ok_and_close(&c, "config_init + depth 32");
    c = base_cfg(be); c.depth = 32768; c.batch = 32768;
    open_ok_and_close(&c, "depth 32768 batch 32768");
    c = base_cfg(be); c.depth = 8; c.batch = 8; c.queue_capacity = 1; c.start_paused = 1;
    open_ok_and_close(&c, "batch == depth, capacity 1, paused");

    /* cfg NULL: defaults (AUTO) -> io_uring iff the probe says it is usable */
    ioeng_t *h = NULL;
    CHECK_EQ(ioeng_open(NULL, &h), 0, "ioeng_open(NULL cfg)");
    CHECK(h != NULL, "ioeng_open(NULL cfg) gave NULL handle");
    ioeng_backend_t got = ioeng_backend(h);
    ioeng_backend_t want = ioeng_uring_unavailable_reason() ? IOENG_BACKEND_AIO : IOENG_BACKEND_URING;
    CHECK(got == want, "AUTO chose %s, expected %s (unavailable reason: %s)", tu_backend_name(got),
          tu_backend_name(want),
          ioeng_uring_unavailable_reason() ? ioeng_uring_unavailable_reason() : "none");
    static unsigned char buf[4096] __attribute__((aligned(4096)));
    static slot_t s;
    uint64_t before = tu_waiter_get(&w);
    ioeng_req_t q = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, 4096, 0);
    CHECK_EQ(ioeng_submit(h, &q, cb, &s), 0, "submit on default engine");
    tu_waiter_wait(&w, before + 1, 10);
    CHECK_EQ(s.res, 4096, "read on default engine");
    tu_close(h);
}

static void expect_submit(ioeng_t *h, const ioeng_req_t *q, ioeng_cb_t f, int want,
                          const char *what, int *refused)
{
    static slot_t never;
    int rc = ioeng_submit(h, q, f, &never);
    CHECK(rc == want, "ioeng_submit(%s) = %s, expected %s", what, tu_errname(rc),
          tu_errname(want));
    (*refused)++;
}

static int test_submit(ioeng_backend_t be, int fd, int *accepted_out)
{
    static unsigned char buf[8192] __attribute__((aligned(4096)));
    static slot_t ok[16];
    int refused = 0, accepted = 0;
    ioeng_t *h = tu_open(be, 16, 0, 0, 0);
    ioeng_req_t good = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf, 4096, 0);
    ioeng_req_t q;

    expect_submit(NULL, &good, cb, -EINVAL, "NULL h", &refused);
    expect_submit(h, NULL, cb, -EINVAL, "NULL req", &refused);
    expect_submit(h, &good, NULL, -EINVAL, "NULL cb", &refused);
    q = good; q.op = 9;
    expect_submit(h, &q, cb, -EINVAL, "op 9", &refused);
    q = good; q.op = 8; /* the first after IOENG_OP_SYNC_FILE_RANGE */
    expect_submit(h, &q, cb, -EINVAL, "op 8", &refused);
    q = good; q.op = UINT32_MAX;
    expect_submit(h, &q, cb, -EINVAL, "op UINT32_MAX", &refused);
    q = good; q.prio = 5;
    expect_submit(h, &q, cb, -EINVAL, "prio 5", &refused);
    q = good; q.prio = 2;
    expect_submit(h, &q, cb, -EINVAL, "prio 2", &refused);
    q = good; q.reserved = 1;
    expect_submit(h, &q, cb, -EINVAL, "reserved 1", &refused);
    q = good; q.class_id = 1;
    expect_submit(h, &q, cb, -EINVAL, "class_id 1 (no class open)", &refused);
    q = good; q.class_id = UINT16_MAX;
    expect_submit(h, &q, cb, -EINVAL, "class_id 0xffff", &refused);
    q = good; q.buf = NULL;
    expect_submit(h, &q, cb, -EINVAL, "READ NULL buf", &refused);
    q = good; q.op = IOENG_OP_WRITE; q.buf = NULL;
    expect_submit(h, &q, cb, -EINVAL, "WRITE NULL buf", &refused);
    q = good; q.len = 0;
    expect_submit(h, &q, cb, -EINVAL, "READ len 0", &refused);
    q = good; q.op = IOENG_OP_WRITE; q.len = 0;
    expect_submit(h, &q, cb, -EINVAL, "WRITE len 0", &refused);
    q = good; q.fd = -1;
    expect_submit(h, &q, cb, -EBADF, "READ fd -1", &refused);
    q = good; q.fd = INT32_MIN;
    expect_submit(h, &q, cb, -EBADF, "READ fd INT_MIN", &refused);
    q = good; q.op = IOENG_OP_WRITE; q.fd = -1;
    expect_submit(h, &q, cb, -EBADF, "WRITE fd -1", &refused);
    q = tu_req(IOENG_OP_FSYNC, IOENG_PRIO_HIGH, -1, NULL, 0, 0);
    expect_submit(h, &q, cb, -EBADF, "FSYNC fd -1", &refused);
    q = good; q.offset = INT64_MAX; q.len = 1;
    expect_submit(h, &q, cb, -EINVAL, "offset INT64_MAX len 1", &refused);
    q = good; q.offset = (uint64_t)INT64_MAX + 1; q.len = 1;
    expect_submit(h, &q, cb, -EINVAL, "offset 2^63", &refused);
    q = good; q.offset = UINT64_MAX - 10; q.len = 100; /* wraps around in u64 */
    expect_submit(h, &q, cb, -EINVAL, "offset UINT64_MAX-10 len 100 (wraps)", &refused);
    q = good; q.offset = 4096; q.len = UINT64_MAX; /* wraps around in u64 */
    expect_submit(h, &q, cb, -EINVAL, "offset 4096 len UINT64_MAX (wraps)", &refused);
    q = good; q.op = IOENG_OP_WRITE; q.offset = INT64_MAX - 100; q.len = 4096;
    expect_submit(h, &q, cb, -EINVAL, "WRITE offset+len > INT64_MAX", &refused);

    /* valid edge cases: accepted, callback exactly once with the documented res */
    int64_t want[16];
    const char *what[16];
    q = tu_req(IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, fd, NULL, 0, 0);
    what[accepted] = "FSYNC NULL buf len 0"; want[accepted] = 0;
    CHECK_EQ(ioeng_submit(h, &q, cb, &ok[accepted]), 0, "%s", what[accepted]); accepted++;
    q = tu_req(IOENG_OP_FDATASYNC, IOENG_PRIO_HIGH, fd, NULL, 0, 0);
    what[accepted] = "FDATASYNC HIGH NULL buf len 0"; want[accepted] = 0;
    CHECK_EQ(ioeng_submit(h, &q, cb, &ok[accepted]), 0, "%s", what[accepted]); accepted++;
    q = tu_req(IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, fd, (void *)buf, 12345, 4097);
    what[accepted] = "FSYNC with ignored buf/len/offset"; want[accepted] = 0;
    CHECK_EQ(ioeng_submit(h, &q, cb, &ok[accepted]), 0, "%s", what[accepted]); accepted++;
    q = good; q.offset = INT64_MAX - 4096; q.len = 4096; /* offset + len == INT64_MAX */
    what[accepted] = "READ ending exactly at INT64_MAX (after EOF)"; want[accepted] = 0;
    CHECK_EQ(ioeng_submit(h, &q, cb, &ok[accepted]), 0, "%s", what[accepted]); accepted++;
    q = good;
    what[accepted] = "plain READ"; want[accepted] = 4096;
    CHECK_EQ(ioeng_submit(h, &q, cb, &ok[accepted]), 0, "%s", what[accepted]); accepted++;
    q = good; q.op = IOENG_OP_WRITE; q.prio = IOENG_PRIO_HIGH; q.buf = buf + 4096; q.offset = 65536;
    what[accepted] = "HIGH WRITE"; want[accepted] = 4096;
    CHECK_EQ(ioeng_submit(h, &q, cb, &ok[accepted]), 0, "%s", what[accepted]); accepted++;

    /* NULL handling of the other entry points */
    ioeng_stats_t st;
    CHECK_EQ(ioeng_stats(NULL, &st), -EINVAL, "ioeng_stats(NULL, st)");
    CHECK_EQ(ioeng_stats(h, NULL), -EINVAL, "ioeng_stats(h, NULL)");
    CHECK_EQ(ioeng_resume(NULL), -EINVAL, "ioeng_resume(NULL)");
    CHECK_EQ(ioeng_resume(h), 0, "ioeng_resume on a running engine (idempotent)");
    CHECK_EQ(ioeng_close(NULL), -EINVAL, "ioeng_close(NULL)");
    CHECK_EQ(ioeng_backend(NULL), IOENG_BACKEND_AUTO, "ioeng_backend(NULL)");
    CHECK_EQ(ioeng_backend(h), be, "ioeng_backend(h)");

    st = tu_wait_idle(h, (uint64_t)accepted);
    CHECK_EQ(st.submitted, accepted, "stats.submitted counts only accepted requests");
    CHECK_EQ(st.completed, accepted, "stats.completed");
    tu_close(h);
    for (int i = 0; i < accepted; i++) {
        CHECK_EQ(ok[i].fired, 1, "callbacks of '%s'", what[i]);
        CHECK(ok[i].res == want[i], "'%s' res %s, expected %s", what[i], tu_errname(ok[i].res),
              tu_errname(want[i]));
    }
    *accepted_out = accepted;
    return refused;
}

/* queue_capacity = 4 on a paused engine: the 5th submit is -EAGAIN. */
static int test_capacity(ioeng_backend_t be, int fd, int *accepted_out)
{
    static unsigned char buf[8][4096] __attribute__((aligned(4096)));
    static slot_t s[8];
    int refused = 0;
    ioeng_t *h = tu_open(be, 4, 0, 4, 1);
    ioeng_req_t r = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf[0], 4096, 0);
    ioeng_req_t wr = tu_req(IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd, buf[1], 4096, 131072);
    ioeng_req_t hi = tu_req(IOENG_OP_READ, IOENG_PRIO_HIGH, fd, buf[2], 4096, 8192);
    ioeng_req_t fs = tu_req(IOENG_OP_FSYNC, IOENG_PRIO_NORMAL, fd, NULL, 0, 0);
    CHECK_EQ(ioeng_submit(h, &r, cb, &s[0]), 0, "cap: READ 1");
    CHECK_EQ(ioeng_submit(h, &wr, cb, &s[1]), 0, "cap: WRITE 2");
    CHECK_EQ(ioeng_submit(h, &hi, cb, &s[2]), 0, "cap: HIGH 3");
    CHECK_EQ(ioeng_submit(h, &fs, cb, &s[3]), 0, "cap: FSYNC 4");
    expect_submit(h, &r, cb, -EAGAIN, "5th READ with queue_capacity 4", &refused);
    expect_submit(h, &hi, cb, -EAGAIN, "5th HIGH with queue_capacity 4", &refused);
    expect_submit(h, &fs, cb, -EAGAIN, "5th FSYNC with queue_capacity 4", &refused);
    ioeng_stats_t st;
    CHECK_EQ(ioeng_stats(h, &st), 0, "stats");
    CHECK_EQ(st.submitted, 4, "cap: submitted");
    CHECK_EQ(st.queued_high, 1, "cap: queued_high");
    CHECK_EQ(st.queued_read, 1, "cap: queued_read");
    CHECK_EQ(st.queued_write, 2, "cap: queued_write (WRITE + FSYNC)");
    CHECK_EQ(st.completed, 0, "cap: completed while paused");
    uint64_t base = tu_waiter_get(&w);
    CHECK_EQ(ioeng_resume(h), 0, "resume");
    tu_waiter_wait(&w, base + 4, 10);
    tu_wait_idle(h, 4);
    /* room again */
    CHECK_EQ(ioeng_submit(h, &r, cb, &s[4]), 0, "cap: READ after drain");
    tu_waiter_wait(&w, base + 5, 10);
    tu_close(h);
    int64_t want[5] = {4096, 4096, 4096, 0, 4096};
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(s[i].fired, 1, "cap: callbacks of request %d", i);
        CHECK_EQ(s[i].res, want[i], "cap: res of request %d", i);
    }
    *accepted_out = 5;
    return refused;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--short-of-memory") == 0)
        return short_of_memory_child(argv);
    tu_init("test_errors", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&w);

    const char *v = ioeng_version();
    CHECK(v != NULL && v[0] >= '0' && v[0] <= '9', "ioeng_version() = %s", v ? v : "(null)");
    CHECK(ioeng_version() == v || strcmp(ioeng_version(), v) == 0, "version not stable");

    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    unsigned char *init = tu_alloc(256 * 1024);
    tu_fill(init, 256 * 1024, 5);
    tu_pwrite_all(fd, init, 256 * 1024, 0);
    free(init);

    test_open(be, fd);
    test_open_short_of_memory(be);
    int64_t cbs_before = __atomic_load_n(&total_cbs, __ATOMIC_SEQ_CST); /* 1 from test_open */
    int acc1 = 0, acc2 = 0;
    int ref1 = test_submit(be, fd, &acc1);
    int ref2 = test_capacity(be, fd, &acc2);
    int64_t cbs = __atomic_load_n(&total_cbs, __ATOMIC_SEQ_CST) - cbs_before;
    CHECK(cbs == acc1 + acc2, "%" PRId64 " callbacks ran for %d accepted requests (%d refused)",
          cbs, acc1 + acc2, ref1 + ref2);
    close(fd);
    printf("test_errors [%s]: OK: config defaults, 13 bad configs (-EINVAL, *out untouched), "
           "4 edge configs, AUTO=%s; -ENOMEM short of memory; %d refused submits with exact errno, 0 callbacks for them; "
           "%d accepted edge requests with exact res; NULL handle/out checks; version %s\n",
           tu_backend_name(be),
           tu_backend_name(ioeng_uring_unavailable_reason() ? IOENG_BACKEND_AIO : IOENG_BACKEND_URING),
           ref1 + ref2, acc1 + acc2, v);
    tu_waiter_destroy(&w);
    return 0;
}
