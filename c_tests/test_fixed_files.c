/*
 * Registered files (1.1): ioeng_register_files once before the first submit; a request
 * with IOENG_REQ_FIXED_FILE names a file by its index. Checked on both backends and
 * modes: every op by index (O_DIRECT ext4 with FIXED_BUF too, tmpfs), data verified
 * through the caller's own descriptors; after the caller closes a registered descriptor
 * and another file takes its number, a request by index still reaches the registered
 * file and never the new one; the engine's copies are open while it lives and closed by
 * ioeng_close (io_uring: the ring shows them as UserFiles); bad registrations and bad
 * indices refused synchronously with nothing left open.
 */
#include <dirent.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "seccomp_util.h"

static tu_recs_t recs;

static void sub_idx(ioeng_t *h, const char *what, ioeng_op_t op, int index, void *buf,
                    uint64_t len, uint64_t off, uint32_t extra_flags, int64_t want)
{
    ioeng_req_t q = tu_req(op, 0, index, buf, len, off);
    q.flags = IOENG_REQ_FIXED_FILE | extra_flags;
    CHECK(recs.n < TU_MAX_RECS, "too many");
    tu_rec_submit(h, &recs.r[recs.n++], &recs.w, what, q, want);
}

static int submit_idx(ioeng_t *h, int index, void *buf)
{
    ioeng_req_t q = tu_req(IOENG_OP_READ, 0, index, buf, 512, 0);
    q.flags = IOENG_REQ_FIXED_FILE;
    return ioeng_submit(h, &q, tu_count_cb, NULL);
}

/* The most files an io_uring ring of this process has registered (its fdinfo's
 * "UserFiles:" line); -1 when no ring is open. */
static int ring_user_files(void)
{
    DIR *d = opendir("/proc/self/fdinfo");
    CHECK(d != NULL, "opendir /proc/self/fdinfo: %s", strerror(errno));
    int most = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[300], line[256];
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        while (fgets(line, sizeof line, f)) {
            int n;
            if (sscanf(line, "UserFiles: %d", &n) == 1 && n > most)
                most = n;
        }
        fclose(f);
    }
    closedir(d);
    return most;
}

/* From here on every fstat of this thread fails with EPERM (seccomp; for good). */
static void forbid_fstat(void)
{
#ifdef SYS_fstat
    const long refused[] = {SYS_newfstatat, SYS_fstat};
#else
    const long refused[] = {SYS_newfstatat};
#endif
    tu_refuse_syscalls(refused, sizeof refused / sizeof refused[0]);
    struct stat st;
    CHECK(fstat(0, &st) == -1 && errno == EPERM, "the filter does not refuse fstat");
}

static int64_t pipe_res = 1;
static void pipe_cb(void *ctx, int64_t res) { (void)ctx; pipe_res = res; }

/* AIO classifies a registered file once, at registration: a FIXED_FILE request makes
 * no fstat. Checked in a child whose fstat fails from after registration on (AIO takes
 * an fd whose fstat fails for a file, and io_submit of a read on an empty pipe then
 * blocks the poller): a FIXED_FILE read of an empty registered pipe does not block
 * ioeng_poll, and returns what is written later (up to EOF). POLLED, so the one thread the filter
 * covers is the engine's. Exits 0 if so. */
static void registered_kind_child(void)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe: %s", strerror(errno));
    ioeng_config_t cfg = tu_config(IOENG_BACKEND_AIO, IOENG_MODE_POLLED, 4);
    ioeng_t *h = NULL;
    CHECK(ioeng_open(&cfg, &h) == 0, "open AIO POLLED");
    CHECK(ioeng_register_files(h, &p[0], 1) == 0, "register the pipe's read end");
    forbid_fstat();
    static char data[16];
    ioeng_req_t q = tu_req(IOENG_OP_READ, 0, 0, data, sizeof data, 0);
    q.flags = IOENG_REQ_FIXED_FILE;
    CHECK(ioeng_submit(h, &q, pipe_cb, NULL) == 0, "submit");
    CHECK(ioeng_poll(h, 0, 0) == 0, "a poll with the pipe empty");
    /* A stream READ runs until its length or EOF: write 5 bytes, then end the pipe. */
    CHECK(write(p[1], "hello", 5) == 5, "write");
    close(p[1]);
    int polled = ioeng_poll(h, 1, 5000000000ll);
    CHECK(polled == 1, "a poll after the write: %d, res %" PRId64, polled, pipe_res);
    CHECK(pipe_res == 5 && memcmp(data, "hello", 5) == 0, "read %" PRId64 " bytes", pipe_res);
    CHECK(ioeng_close(h) == 0, "close");
    _exit(0);
}

static void registered_kind_case(void)
{
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0)
        registered_kind_child();
    int status = 0;
    for (int ms = 0; waitpid(pid, &status, WNOHANG) == 0; ms += 10) {
        if (ms >= 10000) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            CHECK(0, "AIO blocked on a registered empty pipe (its kind asked per request, "
                     "by an fstat that failed: taken for a file)");
        }
        usleep(10000);
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
}

int main(void)
{
    tu_init("test_fixed_files", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&recs.w);
    enum { BSZ = 65536 };
    char shm_path[PATH_MAX];
    int direct = tu_scratch(TU_EXT4, 1, NULL);
    int shm = tu_scratch(TU_TMPFS, 0, shm_path);
    int fds_before = tu_count_fds();
    ioeng_t *h = tu_open(be, 16, 0, 0, 0);
    int fds_engine = tu_count_fds();

    /* Bad registrations: refused, nothing registered, no copy left open. */
    int two[2] = { direct, shm };
    int closed = tu_closed_fd(900);
    int with_closed[3] = { direct, closed, shm };
    int with_negative[2] = { shm, -1 };
    CHECK(ioeng_register_files(NULL, two, 2) == -EINVAL, "NULL h");
    CHECK(ioeng_register_files(h, NULL, 2) == -EINVAL, "NULL fds");
    CHECK(ioeng_register_files(h, two, 0) == -EINVAL, "n = 0");
    CHECK(IOENG_MAX_REGISTERED_FILES == 32768, "IOENG_MAX_REGISTERED_FILES");
    CHECK(ioeng_register_files(h, two, IOENG_MAX_REGISTERED_FILES + 1) == -EINVAL, "n = 32769");
    int rc = ioeng_register_files(h, with_closed, 3);
    CHECK(rc == -EBADF, "registering a closed fd = %s, want -EBADF", tu_errname(rc));
    rc = ioeng_register_files(h, with_negative, 2);
    CHECK(rc == -EBADF, "registering fd -1 = %s, want -EBADF", tu_errname(rc));
    tu_check_still_closed(closed);
    CHECK(tu_count_fds() == fds_engine, "a refused registration left %d fds open",
          tu_count_fds() - fds_engine);
    unsigned char junk[512];
    CHECK(submit_idx(h, 0, junk) == -EINVAL, "FIXED_FILE before any registration");

    /* Register both files, and buffers beside them (independent registrations). */
    unsigned char *buf = tu_alloc(BSZ), *back = tu_alloc(BSZ);
    struct iovec reg = { buf, BSZ };
    rc = ioeng_register_files(h, two, 2);
    CHECK(rc == 0, "ioeng_register_files = %s", tu_errname(rc));
    CHECK(ioeng_register_buffers(h, &reg, 1) == 0, "ioeng_register_buffers after files");
    CHECK(ioeng_register_files(h, two, 2) == -EBUSY, "second registration must be -EBUSY");
    CHECK(tu_count_fds() == fds_engine + 2, "the engine holds %d copies, want 2",
          tu_count_fds() - fds_engine);
    if (be == IOENG_BACKEND_URING)
        CHECK(ring_user_files() == 2, "the ring registered %d files, want 2", ring_user_files());

    /* Bad indices: -EINVAL at submit, no callback. */
    CHECK(submit_idx(h, 2, junk) == -EINVAL, "index == n");
    CHECK(submit_idx(h, -1, junk) == -EINVAL, "index -1");
    CHECK(submit_idx(h, INT32_MAX, junk) == -EINVAL, "index INT32_MAX");

    /* Every op by index. File 0: ext4 O_DIRECT (FIXED_BUF too); file 1: tmpfs. */
    tu_fill(buf, BSZ, 7);
    sub_idx(h, "WRITE FIXED_FILE|FIXED_BUF O_DIRECT", IOENG_OP_WRITE, 0, buf, BSZ, 0,
            IOENG_REQ_FIXED_BUF, BSZ);
    struct iovec halves[2] = { { buf, 1000 }, { buf + 1000, 3000 } };
    sub_idx(h, "WRITEV FIXED_FILE tmpfs", IOENG_OP_WRITEV, 1, halves, 2, 4096, 0, 4000);
    tu_waiter_wait(&recs.w, 2, 30);
    sub_idx(h, "FSYNC FIXED_FILE", IOENG_OP_FSYNC, 0, NULL, 0, 0, 0, 0);
    sub_idx(h, "FDATASYNC FIXED_FILE", IOENG_OP_FDATASYNC, 1, NULL, 0, 0, 0, 0);
    sub_idx(h, "SYNC_FILE_RANGE FIXED_FILE", IOENG_OP_SYNC_FILE_RANGE, 0, NULL, BSZ, 0, 0, 0);
    /* FALLOCATE extends the tmpfs file to 1 MiB (mode 0 in buf_index). */
    sub_idx(h, "FALLOCATE FIXED_FILE", IOENG_OP_FALLOCATE, 1, NULL, 1 << 20, 0, 0, 0);
    sub_idx(h, "READ FIXED_FILE O_DIRECT", IOENG_OP_READ, 0, back, BSZ, 0, 0, BSZ);
    tu_waiter_wait(&recs.w, 7, 30);
    CHECK(memcmp(back, buf, BSZ) == 0, "READ by index differs from the WRITE by index");
    unsigned char check[4000];
    tu_pread_all(shm, check, sizeof check, 4096);
    CHECK(memcmp(check, buf, sizeof check) == 0, "WRITEV by index not in the file (its own fd)");
    struct stat st;
    CHECK(fstat(shm, &st) == 0 && st.st_size == 1 << 20, "FALLOCATE by index: size %lld",
          (long long)st.st_size);

    /* The caller closes its tmpfs fd; a new file takes the number. Index 1 still means
     * the registered file: the new one is never touched. */
    int old_number = shm;
    CHECK(close(shm) == 0, "close");
    int other = tu_scratch(TU_TMPFS, 0, NULL);
    CHECK(other == old_number, "test bug: the new file got fd %d, not %d", other, old_number);
    memcpy(junk, "registered-file-marker", 22);
    sub_idx(h, "WRITE FIXED_FILE after the fd's number was reused", IOENG_OP_WRITE, 1, junk, 22,
            100, 0, 22);
    tu_waiter_wait(&recs.w, 8, 30);
    CHECK(fstat(other, &st) == 0 && st.st_size == 0, "the file that reused the number got %lld bytes",
          (long long)st.st_size);
    int again = open(shm_path, O_RDONLY | O_CLOEXEC);
    CHECK(again >= 0, "reopen %s: %s", shm_path, strerror(errno));
    char marker[22];
    tu_pread_all(again, marker, sizeof marker, 100);
    CHECK(memcmp(marker, "registered-file-marker", 22) == 0, "the registered file lacks the write");
    close(again);
    close(other);

    tu_close(h);
    CHECK(tu_counted == 0, "%d callbacks for refused requests", tu_counted);
    CHECK(tu_count_fds() == fds_before - 1, "after close %d fds, want %d (copies closed)",
          tu_count_fds(), fds_before - 1);

    /* Registering after the first submit: -EBUSY, and FIXED_FILE stays refused. */
    h = tu_open(be, 4, 0, 0, 0);
    tu_recs_sub(h, &recs, "READ before registering", IOENG_OP_READ, 0, direct, buf, 4096, 0, 4096);
    CHECK(ioeng_register_files(h, &direct, 1) == -EBUSY, "register after a submit must be -EBUSY");
    CHECK(submit_idx(h, 0, junk) == -EINVAL, "FIXED_FILE unregistered");
    tu_close(h);
    CHECK(tu_recs_report(&recs, be) == 0, "wrong results (listed above)");
    registered_kind_case();
    printf("test_fixed_files [%s %s]: OK: every op by index (O_DIRECT + FIXED_BUF, tmpfs), a "
           "reused fd number never reached, copies open%s and closed by close; 9 bad "
           "registrations/indices refused; AIO reads a registered pipe with fstat forbidden\n",
           tu_backend_name(be), tu_mode_name(),
           be == IOENG_BACKEND_URING ? " (ring: 2 UserFiles)" : "");
    return 0;
}
