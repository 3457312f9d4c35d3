# Sourced by the shell tests: when the backend under test is io_uring and this kernel or
# sandbox cannot run it, print why and skip (exit 77), or fail under IOENG_REQUIRE_URING=1.
# Needs LIBDIR (the directory of libioeng.so) and IOENG_TEST_BACKEND.

# uring_unavailable_reason: prints why libioeng cannot use io_uring here (empty: it can),
# as the library itself says (ioeng_uring_unavailable_reason).
uring_unavailable_reason() {
    python3 - <<'PY'
import ctypes, os
lib = ctypes.CDLL(os.path.join(os.environ["LIBDIR"], "libioeng.so"))
lib.ioeng_uring_unavailable_reason.restype = ctypes.c_char_p
r = lib.ioeng_uring_unavailable_reason()
print(r.decode() if r else "")
PY
}

if [ "${IOENG_TEST_BACKEND:-aio}" = uring ]; then
    uring_reason=$(uring_unavailable_reason)
    if [ -n "$uring_reason" ]; then
        if [ "${IOENG_REQUIRE_URING:-0}" = 1 ]; then
            echo "FAIL: io_uring required but unavailable: $uring_reason"
            exit 1
        fi
        echo "SKIP: io_uring unavailable: $uring_reason"
        exit 77
    fi
fi
