/*
 * The version-1 ABI as C sees it, checked at compile time: the size of every public
 * struct of include/ioeng.h and the offset of each of its fields (the same sizes and
 * offsets src/ffi.rs asserts), the width of the enum-like typedefs, the values of the
 * backend, mode, op, priority and flag constants and of the limits, and the version
 * macros. This file failing to compile is the failure; at run time it only checks that
 * ioeng_version() is the version the header names, and prints OK.
 */
#include "test_util.h"

#include <stddef.h>

/* ioeng_req_t: one request, 64 bytes. */
_Static_assert(sizeof(ioeng_req_t) == 64, "ioeng_req_t is 64 bytes");
_Static_assert(offsetof(ioeng_req_t, op) == 0, "ioeng_req_t.op");
_Static_assert(offsetof(ioeng_req_t, prio) == 4, "ioeng_req_t.prio");
_Static_assert(offsetof(ioeng_req_t, fd) == 8, "ioeng_req_t.fd");
_Static_assert(offsetof(ioeng_req_t, flags) == 12, "ioeng_req_t.flags");
_Static_assert(offsetof(ioeng_req_t, buf) == 16, "ioeng_req_t.buf");
_Static_assert(offsetof(ioeng_req_t, len) == 24, "ioeng_req_t.len");
_Static_assert(offsetof(ioeng_req_t, offset) == 32, "ioeng_req_t.offset");
_Static_assert(offsetof(ioeng_req_t, tag) == 40, "ioeng_req_t.tag");
_Static_assert(offsetof(ioeng_req_t, deadline_ns) == 48, "ioeng_req_t.deadline_ns");
_Static_assert(offsetof(ioeng_req_t, buf_index) == 56, "ioeng_req_t.buf_index");
_Static_assert(offsetof(ioeng_req_t, class_id) == 60, "ioeng_req_t.class_id");
_Static_assert(sizeof(((ioeng_req_t *)0)->class_id) == 2, "ioeng_req_t.class_id is uint16_t");
_Static_assert(offsetof(ioeng_req_t, reserved) == 62, "ioeng_req_t.reserved");
_Static_assert(sizeof(((ioeng_req_t *)0)->reserved) == 2, "ioeng_req_t.reserved is uint16_t");

/* ioeng_config_t: 52 bytes, 4-byte fields only. */
_Static_assert(sizeof(ioeng_config_t) == 52, "ioeng_config_t is 52 bytes");
_Static_assert(offsetof(ioeng_config_t, backend) == 0, "ioeng_config_t.backend");
_Static_assert(offsetof(ioeng_config_t, depth) == 4, "ioeng_config_t.depth");
_Static_assert(offsetof(ioeng_config_t, batch) == 8, "ioeng_config_t.batch");
_Static_assert(offsetof(ioeng_config_t, queue_capacity) == 12, "ioeng_config_t.queue_capacity");
_Static_assert(offsetof(ioeng_config_t, start_paused) == 16, "ioeng_config_t.start_paused");
_Static_assert(offsetof(ioeng_config_t, mode) == 20, "ioeng_config_t.mode");
_Static_assert(offsetof(ioeng_config_t, idle_poll_us) == 24, "ioeng_config_t.idle_poll_us");
_Static_assert(offsetof(ioeng_config_t, submitter_cpu) == 28, "ioeng_config_t.submitter_cpu");
_Static_assert(offsetof(ioeng_config_t, completer_cpu) == 32, "ioeng_config_t.completer_cpu");
/* 1.1 carved normal_min_percent, latency_stats and flags from reserved[0..3]. */
_Static_assert(offsetof(ioeng_config_t, normal_min_percent) == 36, "ioeng_config_t.normal_min_percent");
_Static_assert(offsetof(ioeng_config_t, latency_stats) == 40, "ioeng_config_t.latency_stats");
_Static_assert(offsetof(ioeng_config_t, flags) == 44, "ioeng_config_t.flags (1.0's reserved[2])");
_Static_assert(offsetof(ioeng_config_t, reserved) == 48, "ioeng_config_t.reserved (1.0's reserved[3])");
_Static_assert(sizeof(((ioeng_config_t *)0)->reserved) == 4, "ioeng_config_t.reserved is uint32_t[1]");

/* 1.1 IO classes. */
_Static_assert(sizeof(ioeng_class_config_t) == 56, "ioeng_class_config_t is 56 bytes");
_Static_assert(offsetof(ioeng_class_config_t, weight) == 0, "ioeng_class_config_t.weight");
_Static_assert(offsetof(ioeng_class_config_t, kernel_ioprio) == 4, "ioeng_class_config_t.kernel_ioprio");
_Static_assert(offsetof(ioeng_class_config_t, iops_limit) == 8, "ioeng_class_config_t.iops_limit");
_Static_assert(offsetof(ioeng_class_config_t, bytes_per_sec_limit) == 16, "ioeng_class_config_t.bytes_per_sec_limit");
_Static_assert(offsetof(ioeng_class_config_t, reserved) == 24, "ioeng_class_config_t.reserved");
_Static_assert(sizeof(ioeng_class_stats_t) == 160, "ioeng_class_stats_t is 160 bytes");
_Static_assert(offsetof(ioeng_class_stats_t, queued) == 40, "ioeng_class_stats_t.queued");
_Static_assert(offsetof(ioeng_class_stats_t, throttled_ns) == 56, "ioeng_class_stats_t.throttled_ns");
_Static_assert(offsetof(ioeng_class_stats_t, p50_ns) == 64, "ioeng_class_stats_t.p50_ns");
_Static_assert(offsetof(ioeng_class_stats_t, max_ns) == 96, "ioeng_class_stats_t.max_ns");
_Static_assert(offsetof(ioeng_class_stats_t, reserved) == 104, "ioeng_class_stats_t.reserved");
_Static_assert(IOENG_CLASS_HIGH == 0xFFFF, "IOENG_CLASS_HIGH");

/* ioeng_stats_t: 128 bytes of uint64_t. */
_Static_assert(sizeof(ioeng_stats_t) == 128, "ioeng_stats_t is 128 bytes");
_Static_assert(offsetof(ioeng_stats_t, submitted) == 0, "ioeng_stats_t.submitted");
_Static_assert(offsetof(ioeng_stats_t, completed) == 8, "ioeng_stats_t.completed");
_Static_assert(offsetof(ioeng_stats_t, in_flight) == 16, "ioeng_stats_t.in_flight");
_Static_assert(offsetof(ioeng_stats_t, queued_high) == 24, "ioeng_stats_t.queued_high");
_Static_assert(offsetof(ioeng_stats_t, queued_read) == 32, "ioeng_stats_t.queued_read");
_Static_assert(offsetof(ioeng_stats_t, queued_write) == 40, "ioeng_stats_t.queued_write");
_Static_assert(offsetof(ioeng_stats_t, kernel_submit_calls) == 48, "ioeng_stats_t.kernel_submit_calls");
_Static_assert(offsetof(ioeng_stats_t, resubmits) == 56, "ioeng_stats_t.resubmits");
_Static_assert(offsetof(ioeng_stats_t, cancelled) == 64, "ioeng_stats_t.cancelled");
_Static_assert(offsetof(ioeng_stats_t, timed_out) == 72, "ioeng_stats_t.timed_out");
_Static_assert(offsetof(ioeng_stats_t, reserved) == 80, "ioeng_stats_t.reserved");
_Static_assert(sizeof(((ioeng_stats_t *)0)->reserved) == 48, "ioeng_stats_t.reserved is uint64_t[6]");

/* Named structs can be forward-declared, and agree with the typedefs. */
struct ioeng_req;
struct ioeng;
_Static_assert(sizeof(struct ioeng_req) == sizeof(ioeng_req_t), "struct ioeng_req");
_Static_assert(sizeof(struct ioeng_config) == sizeof(ioeng_config_t), "struct ioeng_config");
_Static_assert(sizeof(struct ioeng_stats) == sizeof(ioeng_stats_t), "struct ioeng_stats");

/* Enum-like typedefs are 32-bit. */
_Static_assert(sizeof(ioeng_backend_t) == 4, "ioeng_backend_t is 32-bit");
_Static_assert(sizeof(ioeng_mode_t) == 4, "ioeng_mode_t is 32-bit");
_Static_assert(sizeof(ioeng_op_t) == 4, "ioeng_op_t is 32-bit");
_Static_assert(sizeof(ioeng_prio_t) == 4, "ioeng_prio_t is 32-bit");
_Static_assert(sizeof(ioeng_req_flags_t) == 4, "ioeng_req_flags_t is 32-bit");

/* Constant values. */
_Static_assert(IOENG_BACKEND_AUTO == 0, "IOENG_BACKEND_AUTO");
_Static_assert(IOENG_BACKEND_AIO == 1, "IOENG_BACKEND_AIO");
_Static_assert(IOENG_BACKEND_URING == 2, "IOENG_BACKEND_URING");
_Static_assert(IOENG_MODE_THREADS == 0, "IOENG_MODE_THREADS");
_Static_assert(IOENG_MODE_POLLED == 1, "IOENG_MODE_POLLED");
_Static_assert(IOENG_OP_READ == 0, "IOENG_OP_READ");
_Static_assert(IOENG_OP_WRITE == 1, "IOENG_OP_WRITE");
_Static_assert(IOENG_OP_FSYNC == 2, "IOENG_OP_FSYNC");
_Static_assert(IOENG_OP_FDATASYNC == 3, "IOENG_OP_FDATASYNC");
_Static_assert(IOENG_OP_READV == 4, "IOENG_OP_READV");
_Static_assert(IOENG_OP_WRITEV == 5, "IOENG_OP_WRITEV");
_Static_assert(IOENG_OP_FALLOCATE == 6, "IOENG_OP_FALLOCATE");
_Static_assert(IOENG_OP_SYNC_FILE_RANGE == 7, "IOENG_OP_SYNC_FILE_RANGE");
_Static_assert(IOENG_PRIO_NORMAL == 0, "IOENG_PRIO_NORMAL");
_Static_assert(IOENG_PRIO_HIGH == 1, "IOENG_PRIO_HIGH");
_Static_assert(IOENG_REQ_DSYNC == 1, "IOENG_REQ_DSYNC");
_Static_assert(IOENG_REQ_SYNC == 2, "IOENG_REQ_SYNC");
_Static_assert(IOENG_REQ_NOWAIT == 4, "IOENG_REQ_NOWAIT");
_Static_assert(IOENG_REQ_FIXED_BUF == 8, "IOENG_REQ_FIXED_BUF");
_Static_assert(IOENG_REQ_SHORT_OK == 16, "IOENG_REQ_SHORT_OK");
_Static_assert(IOENG_REQ_FIXED_FILE == 32, "IOENG_REQ_FIXED_FILE");
_Static_assert(IOENG_REQ_KNOWN_FLAGS == 0x3f, "IOENG_REQ_KNOWN_FLAGS");
_Static_assert(IOENG_IDLE_POLL_DEFAULT == 0, "IOENG_IDLE_POLL_DEFAULT");
_Static_assert(IOENG_IDLE_POLL_NEVER == UINT32_MAX, "IOENG_IDLE_POLL_NEVER");
/* The deprecated 1.0 names stay defined, with the same values. */
_Static_assert(IOENG_POLL_DEFAULT == IOENG_IDLE_POLL_DEFAULT, "IOENG_POLL_DEFAULT");
_Static_assert(IOENG_POLL_NEVER == IOENG_IDLE_POLL_NEVER, "IOENG_POLL_NEVER");
_Static_assert(IOENG_MAX_DEPTH == 32768, "IOENG_MAX_DEPTH");
_Static_assert(IOENG_MAX_REGISTERED_BUFFERS == 16384, "IOENG_MAX_REGISTERED_BUFFERS");
_Static_assert(IOENG_MAX_REGISTERED_FILES == 32768, "IOENG_MAX_REGISTERED_FILES");

/* Version macros: ABI version 1. */
_Static_assert(IOENG_VERSION_MAJOR == 1, "IOENG_VERSION_MAJOR");
_Static_assert(IOENG_VERSION_MINOR >= 0, "IOENG_VERSION_MINOR");
_Static_assert(IOENG_VERSION_PATCH >= 0, "IOENG_VERSION_PATCH");

#define TU_STR_(x) #x
#define TU_STR(x) TU_STR_(x)

int main(void)
{
    tu_init("test_abi", 0);
    const char *want =
        TU_STR(IOENG_VERSION_MAJOR) "." TU_STR(IOENG_VERSION_MINOR) "." TU_STR(IOENG_VERSION_PATCH);
    const char *v = ioeng_version();
    CHECK(v && strcmp(v, want) == 0, "ioeng_version() = '%s', the header says %s", v ? v : "(null)",
          want);
    printf("test_abi [%s]: OK: sizes and field offsets of ioeng_req_t, ioeng_config_t, ioeng_stats_t, "
           "constant values and version %s checked at compile time\n",
           tu_backend_name(tu_backend()), v);
    return 0;
}
