/*
 * Registered buffers (ABI v1): ioeng_register_buffers once before the first submit
 * (a NULL, empty or over-1-GiB buffer is -EINVAL on both backends);
 * FIXED_BUF READ/WRITE round trips (io_uring READ_FIXED/WRITE_FIXED, AIO plain IO) on
 * ext4 O_DIRECT and tmpfs, including a sub-range of a buffer; range, index, vector and
 * registration errors refused synchronously; a memlock refusal (io_uring, without
 * CAP_IPC_LOCK and with a small RLIMIT_MEMLOCK) is returned and leaves the engine usable.
 */
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include <sys/mman.h>

#include "test_util.h"

static tu_recs_t recs;

static void sub_fixed(ioeng_t *h, const char *what, ioeng_op_t op, int fd, void *buf, uint64_t len,
                      uint64_t off, uint32_t index, int64_t want)
{
    ioeng_req_t q = tu_req(op, 0, fd, buf, len, off);
    q.flags = IOENG_REQ_FIXED_BUF;
    q.buf_index = index;
    CHECK(recs.n < TU_MAX_RECS, "too many");
    tu_rec_submit(h, &recs.r[recs.n++], &recs.w, what, q, want);
}

static int submit_fixed(ioeng_t *h, ioeng_op_t op, int fd, void *buf, uint64_t len, uint32_t index)
{
    ioeng_req_t q = tu_req(op, 0, fd, buf, len, 0);
    q.flags = IOENG_REQ_FIXED_BUF;
    q.buf_index = index;
    return ioeng_submit(h, &q, tu_count_cb, NULL);
}

/* Child process: without CAP_IPC_LOCK and with RLIMIT_MEMLOCK = 64 KiB, registering
 * 4 MiB must fail with -ENOMEM/-EPERM, and the engine must keep working. Exit 0 = ok. */
static int memlock_child(void)
{
    struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    CHECK(syscall(SYS_capget, &hdr, data) == 0, "capget: %s", strerror(errno));
    data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    CHECK(syscall(SYS_capset, &hdr, data) == 0, "capset: %s", strerror(errno));
    struct rlimit rl = { 64 << 10, 64 << 10 };
    CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0, "setrlimit: %s", strerror(errno));
    ioeng_t *h = tu_open(IOENG_BACKEND_URING, 8, 0, 0, 0);
    size_t big = 4 << 20;
    unsigned char *buf = tu_alloc(big);
    struct iovec iov = { buf, big };
    int refused = ioeng_register_buffers(h, &iov, 1);
    CHECK(refused == -ENOMEM || refused == -EPERM,
          "register 4 MiB over a 64 KiB memlock limit = %s", tu_errname(refused));
    /* Usable without: plain IO works, FIXED_BUF is refused. */
    CHECK(submit_fixed(h, IOENG_OP_READ, 0, buf, 4096, 0) == -EINVAL,
          "FIXED_BUF after a refused registration must be -EINVAL");
    int fd = tu_scratch(TU_TMPFS, 0, NULL);
    tu_pwrite_all(fd, "hello", 5, 0);
    tu_recs_sub(h, &recs, "READ after refused registration", IOENG_OP_READ, 0, fd, buf, 5, 0, 5);
    tu_waiter_wait(&recs.w, 1, 20);
    /* Once a request was submitted, registering is too late. */
    struct iovec small = { buf, 16384 };
    int rc = ioeng_register_buffers(h, &small, 1);
    CHECK(rc == -EBUSY, "register after a submit = %s, want -EBUSY", tu_errname(rc));
    tu_close(h);
    CHECK(tu_recs_report(&recs, IOENG_BACKEND_URING) == 0, "wrong results");
    printf("memlock refusal: register = %s, engine usable\n", tu_errname(refused));
    return 0;
}

int main(void)
{
    tu_init("test_fixed_buffers", 0);
    ioeng_backend_t be = tu_backend();
    require_backend(be);
    tu_waiter_init(&recs.w);
    ioeng_t *h = tu_open(be, 16, 0, 0, 0);

    enum { NB = 4, BSZ = 65536 };
    unsigned char *bufs[NB];
    struct iovec iov[NB];
    for (int i = 0; i < NB; i++) {
        bufs[i] = tu_alloc(BSZ);
        iov[i] = (struct iovec){ bufs[i], BSZ };
    }
    /* Bad registrations first: nothing is registered by them. */
    CHECK(ioeng_register_buffers(NULL, iov, 1) == -EINVAL, "NULL h");
    CHECK(ioeng_register_buffers(h, NULL, 1) == -EINVAL, "NULL iov");
    CHECK(ioeng_register_buffers(h, iov, 0) == -EINVAL, "n = 0");
    CHECK(IOENG_MAX_REGISTERED_BUFFERS == 16384, "IOENG_MAX_REGISTERED_BUFFERS");
    CHECK(ioeng_register_buffers(h, iov, IOENG_MAX_REGISTERED_BUFFERS + 1) == -EINVAL, "n = 16385");
    {
        /* io_uring's limits, refused alike on both backends before the kernel sees
         * them: NULL, empty, above 1 GiB (mapped, so the kernel would not say EFAULT). */
        size_t big = (1ul << 30) + 4096;
        void *m = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        CHECK(m != MAP_FAILED, "mmap 1 GiB + 4 KiB");
        struct iovec bad[4][2] = {
            { iov[0], { NULL, 4096 } },
            { iov[0], { bufs[1], 0 } },
            { iov[0], { NULL, 0 } },
            { iov[0], { m, big } },
        };
        const char *what[4] = { "a NULL buffer", "an empty buffer", "{NULL, 0}", "a buffer above 1 GiB" };
        for (int i = 0; i < 4; i++) {
            int bad_rc = ioeng_register_buffers(h, bad[i], 2);
            CHECK(bad_rc == -EINVAL, "registering %s = %s, want -EINVAL", what[i], tu_errname(bad_rc));
        }
        struct iovec gib = { m, 1ul << 30 };
        int gib_rc = ioeng_register_buffers(h, &gib, 0);
        CHECK(gib_rc == -EINVAL, "n = 0 with a 1 GiB buffer");
        munmap(m, big);
    }
    int rc = ioeng_register_buffers(h, iov, NB);
    CHECK(rc == 0, "ioeng_register_buffers = %s", tu_errname(rc));
    CHECK(ioeng_register_buffers(h, iov, NB) == -EBUSY, "second registration must be -EBUSY");

    int direct = tu_scratch(TU_EXT4, 1, NULL);
    int shm = tu_scratch(TU_TMPFS, 0, NULL);
    for (int i = 0; i < NB; i++)
        tu_fill(bufs[i], BSZ, (uint64_t)i + 100);
    unsigned char *expect = tu_alloc((size_t)NB * BSZ);
    for (int i = 0; i < NB; i++)
        memcpy(expect + (size_t)i * BSZ, bufs[i], BSZ);
    for (int i = 0; i < NB; i++)
        sub_fixed(h, "WRITE FIXED O_DIRECT", IOENG_OP_WRITE, direct, bufs[i], BSZ,
                  (uint64_t)i * BSZ, (uint32_t)i, BSZ);
    /* A sub-range of buffer 2, at an offset inside it. */
    sub_fixed(h, "WRITE FIXED tmpfs sub-range", IOENG_OP_WRITE, shm, bufs[2] + 100, 5000, 0, 2, 5000);
    tu_waiter_wait(&recs.w, NB + 1, 30);
    for (int i = 0; i < NB; i++)
        memset(bufs[i], 0, BSZ);
    /* Read back into different buffers than written from. */
    for (int i = 0; i < NB; i++)
        sub_fixed(h, "READ FIXED O_DIRECT", IOENG_OP_READ, direct, bufs[(i + 1) % NB], BSZ,
                  (uint64_t)i * BSZ, (uint32_t)((i + 1) % NB), BSZ);
    tu_waiter_wait(&recs.w, 2 * NB + 1, 30);
    for (int i = 0; i < NB; i++)
        CHECK(memcmp(bufs[(i + 1) % NB], expect + (size_t)i * BSZ, BSZ) == 0,
              "FIXED round trip of block %d differs", i);
    sub_fixed(h, "READ FIXED tmpfs sub-range", IOENG_OP_READ, shm, bufs[3] + BSZ - 5000, 5000, 0, 3,
              5000);
    tu_waiter_wait(&recs.w, 2 * NB + 2, 30);
    CHECK(memcmp(bufs[3] + BSZ - 5000, expect + 2 * BSZ + 100, 5000) == 0,
          "sub-range round trip differs");

    /* Range and index errors: -EINVAL at submit, no callback. */
    CHECK(submit_fixed(h, IOENG_OP_READ, shm, bufs[0], BSZ + 1, 0) == -EINVAL, "len past the end");
    CHECK(submit_fixed(h, IOENG_OP_READ, shm, bufs[0] + 1, BSZ, 0) == -EINVAL, "end past the end");
    CHECK(submit_fixed(h, IOENG_OP_READ, shm, bufs[0] - 1, 2, 0) == -EINVAL, "start before");
    CHECK(submit_fixed(h, IOENG_OP_READ, shm, bufs[1], 4096, 0) == -EINVAL, "wrong buffer index");
    CHECK(submit_fixed(h, IOENG_OP_WRITE, shm, bufs[0], 4096, NB) == -EINVAL, "index == n");
    CHECK(submit_fixed(h, IOENG_OP_WRITE, shm, bufs[0], 4096, UINT32_MAX) == -EINVAL, "index max");
    struct iovec one = { bufs[0], 4096 };
    CHECK(submit_fixed(h, IOENG_OP_READV, shm, &one, 1, 0) == -EINVAL, "READV + FIXED_BUF");
    CHECK(submit_fixed(h, IOENG_OP_WRITEV, shm, &one, 1, 0) == -EINVAL, "WRITEV + FIXED_BUF");
    tu_close(h);
    CHECK(tu_counted == 0, "%d callbacks for refused requests", tu_counted);

    /* Registering after the first submit: -EBUSY. */
    h = tu_open(be, 4, 0, 0, 0);
    tu_recs_sub(h, &recs, "READ before registering", IOENG_OP_READ, 0, shm, bufs[0], 10, 0, 10);
    CHECK(ioeng_register_buffers(h, iov, NB) == -EBUSY, "register after submit must be -EBUSY");
    CHECK(submit_fixed(h, IOENG_OP_READ, shm, bufs[0], 10, 0) == -EINVAL, "FIXED_BUF unregistered");
    tu_close(h);
    CHECK(tu_recs_report(&recs, be) == 0, "wrong results (listed above)");

    const char *memlock = "memlock refusal not applicable (AIO only records buffers)";
    if (be == IOENG_BACKEND_URING) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0, "fork");
        if (pid == 0) {
            tu_scratch_fork_child();
            recs.n = 0;
            tu_waiter_init(&recs.w);
            _exit(memlock_child());
        }
        int status;
        CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "memlock child failed (status %d)",
              status);
        memlock = "memlock refusal returned and engine usable";
    }
    printf("test_fixed_buffers [%s]: OK: %d buffers registered, FIXED_BUF round trips (O_DIRECT, tmpfs "
           "sub-range), 8 range/index/vector errors and -EBUSY cases refused; %s\n",
           tu_backend_name(be), NB, memlock);
    return 0;
}
