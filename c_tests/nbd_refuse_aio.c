/*
 * nbd_refuse_aio.so: an LD_PRELOAD wrapper of ioeng_open for test_nbd.sh. It answers
 * -EAGAIN to every open that asks for the Linux AIO backend, as the library does when
 * io_setup fails (fs.aio-max-nr used up), and so drives ioeng_nbd's fallback from its
 * --backend auto pick for a tmpfs export to the library's own choice. Every other call
 * goes to the real function.
 */
#include <dlfcn.h>
#include <errno.h>

#include "ioeng.h"

typedef int (*open_fn)(const ioeng_config_t *, ioeng_t **);

int ioeng_open(const ioeng_config_t *cfg, ioeng_t **out)
{
    open_fn real = (open_fn)dlsym(RTLD_NEXT, "ioeng_open");
    if (!real)
        return -ENOSYS;
    if (cfg && cfg->backend == IOENG_BACKEND_AIO)
        return -EAGAIN;
    return real(cfg, out);
}
