/*
 * io_uring blocked by seccomp: AUTO falls back to AIO, an explicit URING request
 * fails with -EPERM (never a silent switch).
 *
 * The parent re-execs /proc/self/exe as a child (the library caches its io_uring probe
 * per process, so a fresh process is required). The child sets PR_SET_NO_NEW_PRIVS,
 * installs a seccomp filter returning EPERM for io_uring_setup (other syscalls and
 * other architectures allowed) and then checks:
 *  - ioeng_uring_unavailable_reason() is non-NULL and mentions EPERM;
 *  - ioeng_open(AUTO) succeeds with ioeng_backend() == AIO, and a write + read-back
 *    through it is correct;
 *  - ioeng_open(URING) returns -EPERM and leaves *out untouched.
 * The parent checks the child's exit status. Skips only if io_uring is unavailable even
 * without the filter (IOENG_REQUIRE_URING=1 turns that into a failure).
 * Ignores IOENG_TEST_BACKEND (runs the same on both passes of `make check`).
 */
#include <sys/wait.h>

#include "seccomp_util.h"

#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif

static void install_filter(void)
{
    const long refused[] = {__NR_io_uring_setup};
    tu_refuse_syscalls(refused, 1);
    /* the filter really blocks it */
    errno = 0;
    long r = syscall(__NR_io_uring_setup, 4, NULL);
    CHECK(r == -1 && errno == EPERM, "filter not effective: io_uring_setup = %ld errno %d", r, errno);
}

static tu_waiter_t w;
static int64_t results[2];
static void cb(void *ctx, int64_t res)
{
    results[(intptr_t)ctx] = res;
    tu_waiter_add(&w, 1);
}

static int child(void)
{
    tu_init("test_seccomp(child)", 60);
    install_filter();
    tu_waiter_init(&w);

    const char *why = ioeng_uring_unavailable_reason();
    CHECK(why != NULL, "ioeng_uring_unavailable_reason() is NULL although io_uring_setup is "
          "blocked by seccomp");
    CHECK(strstr(why, "EPERM") || strstr(why, strerror(EPERM)),
          "unavailable reason does not mention EPERM: \"%s\"", why);
    CHECK(ioeng_uring_unavailable_reason() == why || strcmp(ioeng_uring_unavailable_reason(), why) == 0,
          "reason not stable");

    /* AUTO -> AIO, and it works */
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    ioeng_t *h = NULL;
    int rc = ioeng_open(&cfg, &h);
    CHECK(rc == 0 && h, "ioeng_open(AUTO) under seccomp = %s", tu_errname(rc));
    CHECK(ioeng_backend(h) == IOENG_BACKEND_AIO, "AUTO under seccomp chose %s, expected aio",
          tu_backend_name(ioeng_backend(h)));
    int fd = tu_scratch(TU_EXT4, 1, NULL);
    unsigned char *wb = tu_alloc(65536), *rb = tu_alloc(65536);
    tu_fill(wb, 65536, 4242);
    ioeng_req_t q = tu_req(IOENG_OP_WRITE, IOENG_PRIO_NORMAL, fd, wb, 65536, 4096);
    CHECK_EQ(ioeng_submit(h, &q, cb, (void *)0), 0, "submit write");
    tu_waiter_wait(&w, 1, 10);
    q = tu_req(IOENG_OP_READ, IOENG_PRIO_HIGH, fd, rb, 65536, 4096);
    CHECK_EQ(ioeng_submit(h, &q, cb, (void *)1), 0, "submit read");
    tu_waiter_wait(&w, 2, 10);
    CHECK(results[0] == 65536, "write res %s", tu_errname(results[0]));
    CHECK(results[1] == 65536, "read res %s", tu_errname(results[1]));
    CHECK(memcmp(wb, rb, 65536) == 0, "read-back mismatch");
    tu_close(h);

    /* explicit URING -> -EPERM, no silent switch */
    ioeng_t *const SENT = (ioeng_t *)(uintptr_t)0x7777770;
    h = SENT;
    cfg.backend = IOENG_BACKEND_URING;
    rc = ioeng_open(&cfg, &h);
    if (rc == 0 && h != SENT)
        ioeng_close(h);
    CHECK(rc == -EPERM, "ioeng_open(URING) under seccomp = %s, expected -EPERM", tu_errname(rc));
    CHECK(h == SENT, "failed ioeng_open(URING) changed *out");

    /* explicit AIO still fine */
    cfg.backend = IOENG_BACKEND_AIO;
    h = NULL;
    CHECK_EQ(ioeng_open(&cfg, &h), 0, "ioeng_open(AIO) under seccomp");
    tu_close(h);
    close(fd);
    free(wb);
    free(rb);
    printf("child: reason \"%s\"\n", why);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--seccomp-child") == 0)
        return child();

    tu_init("test_seccomp", 0);
    /* The parent's own probe: io_uring must work without the filter. */
    require_backend(IOENG_BACKEND_URING);

    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        execl("/proc/self/exe", argv[0], "--seccomp-child", (char *)NULL);
        fprintf(stderr, "execl /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(st), "child died by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    CHECK(WEXITSTATUS(st) == 0, "child exited with status %d (see its messages above)",
          WEXITSTATUS(st));
    printf("test_seccomp: OK: with io_uring_setup blocked by seccomp (EPERM) in a re-exec'd "
           "child: reason mentions EPERM, AUTO -> AIO with correct O_DIRECT write+read, URING -> "
           "-EPERM (*out untouched), AIO opens\n");
    return 0;
}
