/* The request builders of ioeng.h, compiled as C99, C11, C++11, C++17 and C++20 with
 * -Wall -Wextra -Werror -pedantic -Wmissing-field-initializers (c_tests/Makefile,
 * header-builders), and run in each: every builder sets exactly its fields, the rest is
 * zero; const buffers and iovecs go in without a cast at the call; the deprecated 1.0
 * idle-poll names still compile. Needs no library (the builders are static inline). */
#include "ioeng.h"
#include <stdio.h>
#include <string.h>

static int failures;

#define EXPECT(cond)                                                                      \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                        \
            failures++;                                                                   \
        }                                                                                 \
    } while (0)

/* Fields a builder does not take must be zero. */
static void expect_rest_zero(ioeng_req_t r)
{
    EXPECT(r.prio == IOENG_PRIO_NORMAL);
    EXPECT(r.flags == 0);
    EXPECT(r.tag == 0);
    EXPECT(r.deadline_ns == 0);
    EXPECT(r.class_id == 0);
    EXPECT(r.reserved == 0);
}

int main(void)
{
    char buf[64];
    static const char message[] = "const data";
    const struct iovec iov[2] = {{buf, 8}, {buf + 8, 8}};
    ioeng_req_t r;

    r = ioeng_req_read(3, buf, sizeof buf, 4096);
    EXPECT(r.op == IOENG_OP_READ && r.fd == 3 && r.buf == (void *)buf && r.len == 64 &&
           r.offset == 4096 && r.buf_index == 0);
    expect_rest_zero(r);

    r = ioeng_req_write(4, message, sizeof message, 8);
    EXPECT(r.op == IOENG_OP_WRITE && r.fd == 4 && r.buf == (const void *)message &&
           r.len == sizeof message && r.offset == 8 && r.buf_index == 0);
    expect_rest_zero(r);

    r = ioeng_req_readv(5, iov, 2, 512);
    EXPECT(r.op == IOENG_OP_READV && r.fd == 5 && r.buf == (const void *)iov && r.len == 2 &&
           r.offset == 512 && r.buf_index == 0);
    expect_rest_zero(r);

    r = ioeng_req_writev(6, iov, 2, UINT64_C(1) << 40);
    EXPECT(r.op == IOENG_OP_WRITEV && r.fd == 6 && r.buf == (const void *)iov && r.len == 2 &&
           r.offset == UINT64_C(1) << 40 && r.buf_index == 0);
    expect_rest_zero(r);

    r = ioeng_req_fsync(7);
    EXPECT(r.op == IOENG_OP_FSYNC && r.fd == 7 && r.buf == NULL && r.len == 0 && r.offset == 0 &&
           r.buf_index == 0);
    expect_rest_zero(r);

    r = ioeng_req_fdatasync(8);
    EXPECT(r.op == IOENG_OP_FDATASYNC && r.fd == 8 && r.buf == NULL && r.len == 0 &&
           r.offset == 0 && r.buf_index == 0);
    expect_rest_zero(r);

    r = ioeng_req_fallocate(9, 0x3 /* FALLOC_FL_KEEP_SIZE | PUNCH_HOLE */, 4096, 8192);
    EXPECT(r.op == IOENG_OP_FALLOCATE && r.fd == 9 && r.buf == NULL && r.offset == 4096 &&
           r.len == 8192 && r.buf_index == 0x3);
    expect_rest_zero(r);

    r = ioeng_req_sync_file_range(10, 100, 200, 0x2 /* SYNC_FILE_RANGE_WRITE */);
    EXPECT(r.op == IOENG_OP_SYNC_FILE_RANGE && r.fd == 10 && r.buf == NULL && r.offset == 100 &&
           r.len == 200 && r.buf_index == 0x2);
    expect_rest_zero(r);

    /* Byte for byte: a builder's request equals a zeroed one with the same fields set. */
    {
        ioeng_req_t z;
        memset(&z, 0, sizeof z);
        z.op = IOENG_OP_READ;
        z.fd = 3;
        z.buf = buf;
        z.len = 64;
        z.offset = 4096;
        r = ioeng_req_read(3, buf, 64, 4096);
        EXPECT(memcmp(&r, &z, sizeof r) == 0);
    }

#ifdef CLOCK_MONOTONIC
    {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t before = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        uint64_t d = ioeng_deadline_in_ns(5000000);
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t after = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        EXPECT(d >= before + 5000000 && d <= after + 5000000);
        EXPECT(ioeng_deadline_in_ns(UINT64_MAX) == UINT64_MAX);
        EXPECT(ioeng_deadline_in_ns(UINT64_MAX - 1) == UINT64_MAX);
        EXPECT(ioeng_deadline_in_ns(0) >= after);
    }
    const char *deadline = "ioeng_deadline_in_ns checked";
#else
    const char *deadline = "no CLOCK_MONOTONIC in strict ISO C: ioeng_deadline_in_ns not defined";
#endif

    /* The deprecated 1.0 names are the new ones. */
    EXPECT(IOENG_POLL_DEFAULT == IOENG_IDLE_POLL_DEFAULT && IOENG_IDLE_POLL_DEFAULT == 0);
    EXPECT(IOENG_POLL_NEVER == IOENG_IDLE_POLL_NEVER && IOENG_IDLE_POLL_NEVER == UINT32_MAX);

    if (failures)
        return 1;
    printf("PASS header_builders (%s): 8 builders, fields exact; %s\n",
#ifdef __cplusplus
           "C++",
#else
           "C",
#endif
           deadline);
    return 0;
}
