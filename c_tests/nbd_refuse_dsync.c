/*
 * nbd_refuse_dsync.so: an LD_PRELOAD wrapper of ioeng_submit for test_nbd_safety.sh. It
 * answers -EINVAL to the second WRITE that carries IOENG_REQ_DSYNC (the first is
 * ioeng_nbd's start-up probe on a memfd), as a library that refuses the flag at submit
 * would, and so drives the server's fallback to WRITE + FDATASYNC. Every other call goes
 * to the real function.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>

#include "ioeng.h"

typedef int (*submit_fn)(ioeng_t *, const ioeng_req_t *, ioeng_cb_t, void *);

int ioeng_submit(ioeng_t *h, const ioeng_req_t *req, ioeng_cb_t cb, void *ctx)
{
    static atomic_int dsync_writes;
    submit_fn real = (submit_fn)dlsym(RTLD_NEXT, "ioeng_submit");
    if (!real)
        return -ENOSYS;
    if (req && req->op == IOENG_OP_WRITE && (req->flags & IOENG_REQ_DSYNC) &&
        atomic_fetch_add(&dsync_writes, 1) + 1 == 2)
        return -EINVAL;
    return real(h, req, cb, ctx);
}
