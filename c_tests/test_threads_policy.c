/*
 * test_threads_policy: the THREADS mode configuration of ioeng_config_t (see
 * submitter_cpu, completer_cpu and mode in include/ioeng.h, and "Threads and roles" in
 * docs/ARCHITECTURE.md). Opens its engines itself on the backend of IOENG_TEST_BACKEND:
 *  1. A bad mode or CPU -> -EINVAL from ioeng_open, *out untouched.
 *  2. submitter_cpu / completer_cpu pin the threads (Cpus_allowed_list in
 *     /proc/self/task/(tid)/status), and an idle THREADS engine's threads use < 1% CPU.
 *  3. idle_poll_us below the engine's shortest poll (1..4 µs) works: chained reads.
 */
#include "test_util.h"

#include <dirent.h>
#include <sched.h>
#include <stdatomic.h>

static ioeng_backend_t g_be;

static ioeng_config_t cfg_for(ioeng_mode_t mode, uint32_t depth)
{
    return tu_config(g_be, mode, depth);
}

/* ---- 1. bad mode, bad CPU ---------------------------------------------------- */

static void check_bad_config(void)
{
    ioeng_t *const sentinel = (ioeng_t *)(uintptr_t)0x5a5a5a50;
    struct { const char *what; int mode, scpu, ccpu; } bad[] = {
        {"mode 2", 2, -1, -1},
        {"submitter_cpu -2", 0, -2, -1},
        {"completer_cpu 1<<20", 0, -1, 1 << 20},
        {"submitter_cpu 1023 (not online here)", 0, 1023, -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ioeng_config_t c = cfg_for((ioeng_mode_t)bad[i].mode, 8);
        c.submitter_cpu = bad[i].scpu;
        c.completer_cpu = bad[i].ccpu;
        ioeng_t *h = sentinel;
        int rc = ioeng_open(&c, &h);
        CHECK(rc == -EINVAL, "ioeng_open(%s) = %s, expected -EINVAL", bad[i].what, tu_errname(rc));
        CHECK(h == sentinel, "failed ioeng_open(%s) changed *out", bad[i].what);
    }
}

/* ---- 2. pinning and idle CPU ------------------------------------------------- */

/* Finds this process's thread named `name`; returns its tid or -1. */
static int find_thread(const char *name)
{
    DIR *d = opendir("/proc/self/task");
    CHECK(d, "opendir /proc/self/task: %s", strerror(errno));
    struct dirent *e;
    int found = -1;
    while ((e = readdir(d)) && found < 0) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], comm[64] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        if (fgets(comm, sizeof comm, f)) {
            comm[strcspn(comm, "\n")] = 0;
            if (strcmp(comm, name) == 0)
                found = atoi(e->d_name);
        }
        fclose(f);
    }
    closedir(d);
    return found;
}

static void task_field(int tid, const char *file, const char *key, char *out, size_t n)
{
    char path[128], line[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/%s", tid, file);
    FILE *f = fopen(path, "re");
    CHECK(f, "open %s: %s", path, strerror(errno));
    out[0] = 0;
    while (fgets(line, sizeof line, f)) {
        if (!key || strncmp(line, key, strlen(key)) == 0) {
            const char *v = key ? line + strlen(key) : line;
            while (*v == ' ' || *v == '\t')
                v++;
            snprintf(out, n, "%s", v);
            out[strcspn(out, "\n")] = 0;
            break;
        }
    }
    fclose(f);
}

static uint64_t task_runtime_ns(int tid)
{
    char v[512];
    task_field(tid, "schedstat", NULL, v, sizeof v);
    return strtoull(v, NULL, 10);
}

static void check_pinning_and_idle(int fd, char *buf)
{
    cpu_set_t set;
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0, "sched_getaffinity: %s", strerror(errno));
    int first = -1, last = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set)) {
            if (first < 0)
                first = i;
            last = i;
        }
    ioeng_config_t c = cfg_for(IOENG_MODE_THREADS, 8);
    c.submitter_cpu = first;
    c.completer_cpu = last;
    ioeng_t *h = NULL;
    CHECK_EQ(ioeng_open(&c, &h), 0, "open pinned");
    /* A new thread names itself once it runs: look for a while. */
    int st = -1, ct = -1;
    for (int i = 0; i < 1000 && (st < 0 || ct < 0); i++) {
        st = find_thread("ioeng-submit");
        ct = find_thread("ioeng-complete");
        if (st < 0 || ct < 0)
            usleep(1000);
    }
    CHECK(st > 0 && ct > 0, "engine threads not found by name (%d, %d)", st, ct);
    char sl[512], cl[512], want_s[16], want_c[16];
    task_field(st, "status", "Cpus_allowed_list:", sl, sizeof sl);
    task_field(ct, "status", "Cpus_allowed_list:", cl, sizeof cl);
    snprintf(want_s, sizeof want_s, "%d", first);
    snprintf(want_c, sizeof want_c, "%d", last);
    CHECK(strcmp(sl, want_s) == 0, "submitter Cpus_allowed_list '%s', want '%s'", sl, want_s);
    CHECK(strcmp(cl, want_c) == 0, "completer Cpus_allowed_list '%s', want '%s'", cl, want_c);

    /* Some IO, then idle: both threads together under 1% of a CPU. */
    for (int i = 0; i < 32; i++) {
        ioeng_req_t r = tu_req(IOENG_OP_READ, IOENG_PRIO_NORMAL, fd, buf + (i % 16) * 4096, 4096, 0);
        int rc = ioeng_submit(h, &r, tu_count_cb, NULL);
        CHECK(rc == 0, "ioeng_submit = %s", tu_errname(rc));
    }
    for (int i = 0; i < 5000 && __atomic_load_n(&tu_counted, __ATOMIC_SEQ_CST) < 32; i++)
        usleep(1000);
    CHECK_EQ(__atomic_load_n(&tu_counted, __ATOMIC_SEQ_CST), 32, "callbacks");
    usleep(20000);
    uint64_t r0 = task_runtime_ns(st) + task_runtime_ns(ct);
    usleep(500000);
    uint64_t used = task_runtime_ns(st) + task_runtime_ns(ct) - r0;
    CHECK(used < 5000000ull, "an idle THREADS engine used %" PRIu64 " ns of CPU in 500 ms (>= 1%%)", used);
    printf("pinned submitter to CPU %s, completer to CPU %s; idle engine threads: %.3f ms CPU in 500 ms\n", sl, cl, used / 1e6);
    CHECK_EQ(ioeng_close(h), 0, "close");
}

/* ---- 3. idle_poll_us below the engine's shortest poll -------------------------- */

static ioeng_t *chain_h;
static int chain_fd;
static atomic_int chain_stop, chain_live, chain_bad;
static atomic_long chain_done;
static char chain_bufs[8][4096];

static void chain_cb(void *ctx, int64_t res)
{
    atomic_fetch_add(&chain_done, 1);
    if (res != 4096)
        atomic_fetch_add(&chain_bad, 1);
    if (atomic_load(&chain_stop)) {
        atomic_fetch_sub(&chain_live, 1);
        return;
    }
    uint64_t off = 4096 * (uint64_t)(atomic_load(&chain_done) % 64);
    ioeng_req_t q = ioeng_req_read(chain_fd, ctx, 4096, off);
    if (ioeng_submit(chain_h, &q, chain_cb, ctx) != 0)
        atomic_fetch_sub(&chain_live, 1);
}

/* idle_poll_us = 1..4 (any value but 0 and UINT32_MAX is a limit in µs): 8 chains of
 * reads at depth 2 keep the engine threads going idle and finding work within a few
 * µs; each time the poll limit adapts. A limit below the engine's shortest poll made
 * that adaptation panic, and the engine abort the process within 0.2 s. */
static void check_small_idle_poll(int fd)
{
    static const uint32_t limits[] = {1, 2, 4, 7};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        ioeng_config_t cfg = cfg_for(IOENG_MODE_THREADS, 2);
        cfg.idle_poll_us = limits[i];
        CHECK(ioeng_open(&cfg, &chain_h) == 0, "open with idle_poll_us %u", limits[i]);
        chain_fd = fd;
        atomic_store(&chain_stop, 0);
        atomic_store(&chain_done, 0);
        for (int c = 0; c < 8; c++) {
            ioeng_req_t q = ioeng_req_read(fd, chain_bufs[c], 4096, 0);
            CHECK(ioeng_submit(chain_h, &q, chain_cb, chain_bufs[c]) == 0, "submit");
            atomic_fetch_add(&chain_live, 1);
        }
        usleep(300 * 1000);
        atomic_store(&chain_stop, 1);
        for (int ms = 0; atomic_load(&chain_live) > 0; ms++) {
            CHECK(ms < 5000, "%d chains still running", atomic_load(&chain_live));
            usleep(1000);
        }
        CHECK(ioeng_close(chain_h) == 0, "close");
        CHECK(atomic_load(&chain_done) > 100, "idle_poll_us %u: %ld callbacks in 300 ms",
              limits[i], atomic_load(&chain_done));
    }
    CHECK_EQ(atomic_load(&chain_bad), 0, "reads with a result other than 4096");
}

int main(void)
{
    tu_init("test_threads_policy", 60);
    g_be = tu_backend();
    require_backend(g_be);
    char *buf;
    int fd = tu_scratch_filled(64 * 4096, 7, &buf);

    check_bad_config();
    check_pinning_and_idle(fd, buf);
    check_small_idle_poll(fd);
    printf("test_threads_policy [%s]: OK: bad mode/CPU -EINVAL; CPU pinning; idle CPU < 1%%; "
           "idle_poll_us 1, 2, 4, 7 with chained reads\n",
           tu_backend_name(g_be));
    free(buf);
    return 0;
}
