// Compile-only check: ioeng.h must be usable from C++ (extern "C", no C-only syntax).
#include "ioeng.h"
#include <cstdint>

static_assert(sizeof(ioeng_op_t) == 4, "enum-like fields are uint32_t");
static_assert(sizeof(ioeng_backend_t) == 4, "enum-like fields are uint32_t");

extern "C" void header_cxx_cb(void *ctx, int64_t res);
extern "C" void header_cxx_cb(void *ctx, int64_t res) { (void)ctx; (void)res; }

int header_cxx_use(void);
int header_cxx_use(void)
{
    ioeng_config_t cfg;
    ioeng_config_init(&cfg);
    cfg.backend = IOENG_BACKEND_AIO;
    ioeng_t *h = nullptr;
    int rc = ioeng_open(&cfg, &h);
    if (rc != 0)
        return rc;
    ioeng_req_t req{};
    req.op = IOENG_OP_FSYNC;
    req.prio = IOENG_PRIO_HIGH;
    req.fd = 0;
    ioeng_cb_t cb = header_cxx_cb;
    rc = ioeng_submit(h, &req, cb, nullptr);
    ioeng_stats_t st;
    (void)ioeng_stats(h, &st);
    (void)ioeng_resume(h);
    (void)ioeng_backend(h);
    (void)ioeng_uring_unavailable_reason();
    (void)ioeng_version();
    return rc ? rc : ioeng_close(h);
}
