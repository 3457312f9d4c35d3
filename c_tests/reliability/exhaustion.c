/*
 * exhaustion: open engines until ioeng_open fails, then check the failure was clean.
 *
 *  aio:   a few depth-128 engines, then depth-32768 engines until io_setup runs out of
 *         fs.aio-max-nr (-EAGAIN expected; any negative errno accepted and printed).
 *  uring: in a forked child, RLIMIT_NOFILE is lowered to (open fds + 5) and depth-8
 *         io_uring engines are opened until the ring fd cannot be created (-EMFILE
 *         expected; any negative errno accepted and printed).
 *
 * Then: the failed open left nothing behind (no extra threads, no extra fds), every
 * engine opened before still does a write + read with correct data and closes with 0,
 * a new open succeeds once resources are freed, and at the end the thread and fd counts
 * are back to their starting values.
 *
 * Env: IOENG_TEST_BACKEND.
 */
#include <sys/resource.h>
#include <sys/wait.h>

#include "rel.h"

#define MAXENG 256

static void wait_all(struct rel_done *d, int n, const char *what)
{
    for (int ms = 0; ms < 30000; ms++) {
        int ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = atomic_load(&d[i].ncb) >= 1;
        if (ok)
            break;
        rel_sleep_us(1000);
    }
    rel_sleep_us(1000);
    for (int i = 0; i < n; i++)
        CHECK(atomic_load(&d[i].ncb) == 1, "%s: engine %d: %d callbacks", what, i,
              atomic_load(&d[i].ncb));
}

/* Every engine writes its own 4 KiB block, then reads it back. */
static void io_on_all(ioeng_t **e, int n, int fd)
{
    enum { B = 4096 };
    unsigned char *w = malloc((size_t)n * B), *r = malloc((size_t)n * B);
    struct rel_done *d = calloc((size_t)n, sizeof *d);
    CHECK(w && r && d, "malloc");
    rel_rng_t rng;
    rel_rng_seed(&rng, (uint64_t)n);
    rel_fill_random(&rng, w, (size_t)n * B);
    memset(r, 0, (size_t)n * B);
    for (int i = 0; i < n; i++) {
        ioeng_req_t q = {.op = IOENG_OP_WRITE, .prio = IOENG_PRIO_NORMAL, .fd = fd,
                         .buf = w + (size_t)i * B, .len = B, .offset = (uint64_t)i * B};
        CHECK(ioeng_submit(e[i], &q, rel_on_done, &d[i]) == 0, "engine %d: submit write", i);
    }
    wait_all(d, n, "write");
    for (int i = 0; i < n; i++) {
        CHECK(d[i].res == B, "engine %d: write res=%" PRId64, i, d[i].res);
        atomic_store(&d[i].ncb, 0);
        ioeng_req_t q = {.op = IOENG_OP_READ, .prio = IOENG_PRIO_HIGH, .fd = fd,
                         .buf = r + (size_t)i * B, .len = B, .offset = (uint64_t)i * B};
        CHECK(ioeng_submit(e[i], &q, rel_on_done, &d[i]) == 0, "engine %d: submit read", i);
    }
    wait_all(d, n, "read");
    for (int i = 0; i < n; i++)
        CHECK(d[i].res == B, "engine %d: read res=%" PRId64, i, d[i].res);
    CHECK(memcmp(w, r, (size_t)n * B) == 0, "data read back differs");
    free(w);
    free(r);
    free(d);
}

static const char *errname(int e)
{
    switch (e) {
    case EAGAIN: return "EAGAIN";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOMEM: return "ENOMEM";
    case EPERM: return "EPERM";
    default: return "other";
    }
}

static int run_aio(void)
{
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    int t0 = rel_count_threads(), f0 = rel_count_fds();
    ioeng_t *e[MAXENG];
    int n = 0, nbig = 0, rc = 0;
    for (int i = 0; i < 3; i++)
        e[n++] = tu_open(IOENG_BACKEND_AIO, 128, 0, 0, 0);
    for (int i = 0; i < 64; i++) {
        ioeng_config_t cfg;
        ioeng_config_init(&cfg);
        cfg.backend = IOENG_BACKEND_AIO;
        cfg.depth = IOENG_MAX_DEPTH;
        ioeng_t *h = (ioeng_t *)(uintptr_t)0xdeadbeef;
        rc = ioeng_open(&cfg, &h);
        if (rc != 0) {
            CHECK(h == (ioeng_t *)(uintptr_t)0xdeadbeef, "failed open modified *out");
            break;
        }
        e[n++] = h;
        nbig++;
    }
    CHECK(rc < 0, "64 depth-32768 AIO engines opened without hitting fs.aio-max-nr?");
    CHECK(rc > -4096, "failure is not a -errno: %d", rc);
    printf("figure: exhaustion [aio]: %d engines open (3 x depth 128, %d x depth 32768), next "
           "ioeng_open = %d (-%s)%s\n", n, nbig, rc, errname(-rc),
           rc == -EAGAIN ? "" : " (expected -EAGAIN)");
    /* The failed open left no thread and no fd behind. */
    CHECK_EQ(rel_count_threads(), t0 + 2 * n, "threads after the failed open");
    CHECK_EQ(rel_count_fds_settled(f0 + n), f0 + n,
             "fds after the failed open (one per AIO engine: its helper's pipe)");
    io_on_all(e, n, fd);
    for (int i = 0; i < n; i++)
        tu_close(e[i]);
    CHECK_EQ(rel_count_threads(), t0, "threads after closing every engine");
    CHECK_EQ(rel_count_fds_settled(f0), f0, "fds after closing every engine");
    /* The kernel context was released: a big engine opens again (retry briefly in case
     * another process holds AIO contexts right now). */
    if (nbig > 0) {
        ioeng_config_t cfg;
        ioeng_config_init(&cfg);
        cfg.backend = IOENG_BACKEND_AIO;
        cfg.depth = IOENG_MAX_DEPTH;
        ioeng_t *h = NULL;
        int r2 = -1;
        for (int i = 0; i < 40 && r2 != 0; i++) {
            r2 = ioeng_open(&cfg, &h);
            if (r2 != 0)
                rel_sleep_us(50000);
        }
        CHECK(r2 == 0, "depth-32768 open after closing everything = %d (io_destroy missing?)", r2);
        io_on_all(&h, 1, fd);
        tu_close(h);
    }
    close(fd);
    CHECK_EQ(rel_count_threads(), t0, "threads at the end");
    printf("figure: exhaustion [aio]: all %d engines did write+read and closed with 0; reopen ok\n", n);
    return 0;
}

static int uring_child(void)
{
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    int t0 = rel_count_threads(), f0 = rel_count_fds();
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    rl.rlim_cur = (rlim_t)f0 + 5;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit: %s", strerror(errno));
    ioeng_t *e[MAXENG];
    int n = 0, rc = 0;
    for (int i = 0; i < 100; i++) {
        ioeng_config_t cfg;
        ioeng_config_init(&cfg);
        cfg.backend = IOENG_BACKEND_URING;
        cfg.depth = 8;
        ioeng_t *h = (ioeng_t *)(uintptr_t)0xdeadbeef;
        rc = ioeng_open(&cfg, &h);
        if (rc != 0) {
            CHECK(h == (ioeng_t *)(uintptr_t)0xdeadbeef, "failed open modified *out");
            break;
        }
        CHECK(ioeng_backend(h) == IOENG_BACKEND_URING, "backend");
        e[n++] = h;
    }
    CHECK(rc < 0 && rc > -4096, "no clean -errno after %d engines with RLIMIT_NOFILE=%d: rc=%d", n,
          f0 + 5, rc);
    CHECK(n >= 1, "not even one engine opened with 5 free fds");
    printf("figure: exhaustion [uring]: RLIMIT_NOFILE=%d (fds in use %d), %d engines opened, next "
           "ioeng_open = %d (-%s)%s\n", f0 + 5, f0, n, rc, errname(-rc),
           rc == -EMFILE ? "" : " (expected -EMFILE)");
    /* Counting needs an fd for opendir, which may be the one missing: count with the
     * limit raised again. */
    rl.rlim_cur = rl.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit back");
    CHECK_EQ(rel_count_threads(), t0 + 2 * n, "threads after the failed open");
    CHECK_EQ(rel_count_fds_settled(f0 + n), f0 + n,
             "fds after the failed open (one ring fd per engine)");
    rl.rlim_cur = (rlim_t)f0 + 5;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit again");
    io_on_all(e, n, fd);
    /* Closing one engine frees its ring fd: an open succeeds again. */
    tu_close(e[n - 1]);
    ioeng_t *h = NULL;
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = IOENG_BACKEND_URING;
    cfg.depth = 8;
    int r2 = ioeng_open(&cfg, &h);
    CHECK(r2 == 0, "open after closing one engine = %d (ring fd not released?)", r2);
    e[n - 1] = h;
    io_on_all(e, n, fd);
    for (int i = 0; i < n; i++)
        tu_close(e[i]);
    rl.rlim_cur = rl.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit back");
    CHECK_EQ(rel_count_threads(), t0, "threads after closing every engine");
    CHECK_EQ(rel_count_fds_settled(f0), f0, "fds after closing every engine");
    close(fd);
    printf("figure: exhaustion [uring]: all %d engines did write+read and closed with 0; reopen "
           "after close ok\n", n);
    return 0;
}

static int run_uring(void)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        tu_scratch_fork_child(); /* the child owns its own scratch file */
        int rc = uring_child();
        tu_remove_scratch();
        fflush(stdout);
        _exit(rc);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
    if (WIFSIGNALED(st))
        FAILF("uring child killed by signal %d", WTERMSIG(st));
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "uring child failed (exit %d)", WEXITSTATUS(st));
    return 0;
}

int main(void)
{
    rel_init("exhaustion", 120);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    printf("exhaustion: backend=%s fs.aio-max-nr=", tu_backend_name(be));
    FILE *f = fopen("/proc/sys/fs/aio-max-nr", "re");
    char line[64] = "?";
    if (f) {
        if (!fgets(line, sizeof line, f))
            strcpy(line, "?");
        fclose(f);
    }
    printf("%s%s", line, strchr(line, '\n') ? "" : "\n");
    int rc = be == IOENG_BACKEND_AIO ? run_aio() : run_uring();
    printf("exhaustion [%s]: OK\n", tu_backend_name(be));
    return rc;
}
