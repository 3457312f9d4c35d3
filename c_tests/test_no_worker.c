/*
 * A process that may not start another thread (a pids cgroup at its limit, as in a
 * container): io_uring cancels an IO for which it cannot start an io-wq worker
 * (buffered writes, FSYNC and FALLOCATE go there). That is no cancel the caller asked
 * for, and the IO did not run: the engine retries it, so no callback may get
 * -ECANCELED. Once the limit is lifted every request completes with its real result; a
 * cancel the caller does ask for still ends a retried request with -ECANCELED, and
 * close then returns at once. The AIO engine, which cannot start its helper thread for
 * FALLOCATE, runs it on the submitting thread instead: all three complete while the
 * limit holds.
 * Both backends and modes; the work runs in a child moved into its own pids cgroup.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include "test_util.h"

#define CGROUP_ROOT "/sys/fs/cgroup/pids"

static char cgroup[256];

static void put(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    CHECK(write(fd, value, strlen(value)) == (ssize_t)strlen(value), "write %s to %s: %s", value,
          path, strerror(errno));
    close(fd);
}

static void set_pids_max(const char *value)
{
    char path[300];
    snprintf(path, sizeof path, "%s/pids.max", cgroup);
    put(path, value);
}

static int threads_now(void) { return tu_count_dir("/proc/self/task"); }

/* Waits up to `ms` for `w` to reach `n` (a POLLED engine has tu_open's poller thread). */
static uint64_t wait_for(tu_waiter_t *w, uint64_t n, int ms)
{
    uint64_t until = tu_now_ns() + (uint64_t)ms * 1000000u;
    while (tu_waiter_get(w) < n && tu_now_ns() < until)
        usleep(2000);
    return tu_waiter_get(w);
}

static int child(ioeng_backend_t be)
{
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    char procs[300];
    snprintf(procs, sizeof procs, "%s/cgroup.procs", cgroup);
    put(procs, pid);
    int fd = tu_scratch(TU_EXT4, 0, NULL);
    tu_recs_t recs;
    recs.n = 0;
    tu_waiter_init(&recs.w);
    ioeng_t *h = tu_open(be, 8, 0, 0, 0);
    /* No room for one more thread in this process. */
    char limit[32];
    snprintf(limit, sizeof limit, "%d", threads_now());
    set_pids_max(limit);

    static char data[65536];
    memset(data, 'x', sizeof data);
    tu_recs_sub(h, &recs, "WRITE 64 KiB buffered", IOENG_OP_WRITE, 0, fd, data, sizeof data, 0,
                sizeof data);
    ioeng_req_t fsync_req = ioeng_req_fsync(fd);
    tu_rec_submit(h, &recs.r[recs.n++], &recs.w, "FSYNC", fsync_req, 0);
    ioeng_req_t falloc = ioeng_req_fallocate(fd, 0, 0, 1 << 20);
    tu_rec_submit(h, &recs.r[recs.n++], &recs.w, "FALLOCATE 1 MiB", falloc, 0);
    /* Long enough for the kernel to try (and, before the fix, cancel) every one. */
    uint64_t early = wait_for(&recs.w, 3, 300);
    for (int i = 0; i < recs.n; i++)
        CHECK(recs.r[i].fired == 0 || recs.r[i].res == recs.r[i].want,
              "%s while no thread could start: %s (nobody cancelled it)", recs.r[i].what,
              tu_errname(recs.r[i].res));
    /* AIO runs FALLOCATE on the submitting thread when its helper cannot start, so all
     * three finish while the limit holds (before: FALLOCATE waited for the limit). */
    if (be == IOENG_BACKEND_AIO)
        CHECK(early == 3, "AIO: %llu of 3 done while no thread could start; FALLOCATE must run "
                          "on the submitting thread when the helper cannot start",
              (unsigned long long)early);
    int limited_threads = threads_now();

    /* A cancel that is asked for still ends a waiting request, and close is prompt. */
    uint64_t asked = 0;
    if (early < 3) {
        /* FALLOCATE waits on both backends (io-wq; AIO's helper thread). */
        ioeng_req_t second = ioeng_req_fallocate(fd, 0, 1 << 20, 1 << 20);
        second.tag = 7;
        tu_rec_submit(h, &recs.r[recs.n++], &recs.w, "FALLOCATE cancelled while retried", second,
                      -ECANCELED);
        wait_for(&recs.w, 99, 50); /* let it reach the kernel and be refused */
        asked = (uint64_t)ioeng_cancel(h, 7);
        CHECK(asked == 1, "ioeng_cancel(7) found %llu", (unsigned long long)asked);
        CHECK(wait_for(&recs.w, early + 1, 2000) >= early + 1,
              "the cancelled request got no callback");
    }

    set_pids_max("max");
    uint64_t all = (uint64_t)recs.n;
    CHECK(wait_for(&recs.w, all, 5000) == all, "%llu of %llu callbacks after lifting the limit",
          (unsigned long long)tu_waiter_get(&recs.w), (unsigned long long)all);
    tu_close(h);
    CHECK(tu_recs_report(&recs, be) == 0, "wrong results (listed above)");
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == 1 << 20, "file size %lld after FALLOCATE",
          (long long)st.st_size);
    printf("  %llu of 3 done while no thread could start (%d threads), the rest after the limit "
           "was lifted; %s\n",
           (unsigned long long)early, limited_threads,
           asked ? "a requested cancel still gave -ECANCELED" : "nothing left to cancel");
    return 0;
}

int main(void)
{
    tu_init("test_no_worker", 60);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    if (access(CGROUP_ROOT "/cgroup.procs", W_OK) != 0) {
        if (getenv("CI"))
            FAILF("no writable pids cgroup at %s (CI must run this test)", CGROUP_ROOT);
        tu_skip("no writable pids cgroup (v1) at %s", CGROUP_ROOT);
    }
    snprintf(cgroup, sizeof cgroup, "%s/ioeng_test_%d", CGROUP_ROOT, (int)getpid());
    CHECK(mkdir(cgroup, 0755) == 0, "mkdir %s: %s", cgroup, strerror(errno));
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        tu_scratch_fork_child();
        _exit(child(be));
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    rmdir(cgroup);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %d)", status);
    printf("test_no_worker [%s %s]: OK: no -ECANCELED nobody asked for while the process could "
           "not start a thread\n",
           tu_backend_name(be), tu_mode_name());
    return 0;
}
