// Compile-only check (make header-hpp): ioeng.hpp included with -I in a strict C++ build
// (-Wold-style-cast, -Wuseless-cast, -Wshadow, clang's -Wzero-as-null-pointer-constant,
// ... see the Makefile) gives no warning, from ioeng.h's helpers either.
//
// It also keeps ioeng.hpp off ioeng.h's static inline functions: they have internal
// linkage, so an external inline function of ioeng.hpp calling them would be a different
// definition in every translation unit (ODR violation, ill-formed NDR). ioeng.h is
// included first, then those names are poisoned: any use left in ioeng.hpp is an error.
#include "ioeng.h"

#pragma GCC poison ioeng_req_make_ ioeng_req_read ioeng_req_write ioeng_req_readv
#pragma GCC poison ioeng_req_writev ioeng_req_fsync ioeng_req_fdatasync ioeng_req_fallocate
#pragma GCC poison ioeng_req_sync_file_range ioeng_deadline_in_ns

#include "ioeng.hpp"

#include <chrono>

int header_hpp_use(int fd, char *buf);
int header_hpp_use(int fd, char *buf)
{
    ioeng_cpp::engine e(ioeng_cpp::config().with_backend(IOENG_BACKEND_AIO).polled());
    const ioeng_req_t reqs[2] = {ioeng_cpp::fsync(fd), ioeng_cpp::sync_file_range(fd, 0, 1, 0)};
    int rc = e.submit(ioeng_cpp::read(fd, buf, 1, 0).with_deadline_in(std::chrono::seconds(1)),
                      [](int64_t) {});
    rc += e.submit_batch(reqs, 2, [](uint32_t, int64_t) {});
    return rc + e.poll(1, std::chrono::hours(1));
}
