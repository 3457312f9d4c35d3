# Sourced by test_nbd.sh and test_nbd_fio.sh (after setting `here`, the c_tests dir):
# their common setup (`nbd_setup`), and start/stop of examples_c/ioeng_nbd servers on
# 127.0.0.1 (port 0: the kernel picks a free port, so parallel runs never clash), with
# bounded waits; every server this script started is killed when it exits.
nbd_bin="${IOENG_NBD_BIN:-$here/../examples_c/ioeng_nbd}"
nbd_pids=()
nbd_loops=()

nbd_fail() { echo "FAIL: $*"; exit 1; }

# nbd_setup NAME: the backend (IOENG_TEST_BACKEND) and server mode (IOENG_TEST_MODE), the library dir, the io_uring guard,
# scratch dirs $work (ext4: IOENG_TEST_DIR, /var/tmp or /tmp) and $shm (tmpfs) named after
# NAME and removed on exit with every server, and a built server binary.
nbd_setup() {
    backend="${IOENG_TEST_BACKEND:-aio}"
    nbd_mode="${IOENG_TEST_MODE:-polled}" # the server's --mode
    export LIBDIR="${LIBDIR:-$here/../target/lib}"
    . "$here/uring_guard.sh"
    local dir="${IOENG_TEST_DIR:-$( [ -d /var/tmp ] && echo /var/tmp || echo /tmp)}"
    work=$(mktemp -d "$dir/$1.XXXXXX")
    shm=$(mktemp -d "/dev/shm/$1.XXXXXX")
    trap 'nbd_kill_all; nbd_detach_loops; rm -rf "$work" "$shm"' EXIT
    [ -x "$nbd_bin" ] || nbd_fail "$nbd_bin not built (make -C examples_c ioeng_nbd)"
}

# Tools a test needs; missing ones fail under CI (where .ci/run installs them) and
# otherwise skip loudly.
nbd_require() {
    local t missing=()
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    ((${#missing[@]} == 0)) && return 0
    if [ -n "${CI:-}" ] || [ "${IOENG_REQUIRE_NBD_CLIENTS:-0}" = 1 ]; then
        nbd_fail "missing ${missing[*]} (apt-get install qemu-utils fio libnbd-bin python3-libnbd nbdkit)"
    fi
    echo "SKIP: missing ${missing[*]} (apt-get install qemu-utils fio libnbd-bin python3-libnbd nbdkit)"
    exit 77
}

# nbd_loop FILE: attaches FILE to a free loop device, sets NBD_LOOP (detached on exit).
# Returns 1 where that is impossible (not root, no loop driver): under CI (CI set, or
# IOENG_REQUIRE_LOOP=1) that fails the test instead, so block devices are never untested
# there without notice.
nbd_loop() {
    NBD_LOOP=$(losetup -f --show "$1" 2>&1) && [ -b "$NBD_LOOP" ] && {
        nbd_loops+=("$NBD_LOOP")
        return 0
    }
    if [ -n "${CI:-}" ] || [ "${IOENG_REQUIRE_LOOP:-0}" = 1 ]; then
        nbd_fail "no loop device for $1: $NBD_LOOP"
    fi
    echo "SKIP: no loop device for $1 ($NBD_LOOP): block devices not tested"
    return 1
}

nbd_detach_loops() {
    local l
    for l in "${nbd_loops[@]}"; do losetup -d "$l" 2>/dev/null || true; done
}

nbd_kill_all() {
    local p
    for p in "${nbd_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
}

# nbd_start NAME ARGS... : starts a server; sets NBD_PID, NBD_LISTEN (what follows
# "listening on": 127.0.0.1:PORT, [ADDR]:PORT or unix:PATH) and NBD_PORT (TCP only).
# Logs: $work/NAME.out (stdout), $work/NAME.err (stderr).
nbd_start() {
    local name=$1 i
    shift
    : >"$work/$name.out" # created now: the background job opens them only later
    : >"$work/$name.err"
    "$nbd_bin" --backend "$backend" --mode "$nbd_mode" --port 0 "$@" >"$work/$name.out" 2>"$work/$name.err" &
    NBD_PID=$!
    nbd_pids+=("$NBD_PID")
    NBD_PORT=
    NBD_LISTEN=
    for ((i = 0; i < 200; i++)); do
        NBD_LISTEN=$(sed -n 's/^listening on \(.*\)$/\1/p' "$work/$name.out")
        NBD_PORT=$(printf '%s' "$NBD_LISTEN" | sed -n 's/^[^u].*:\([0-9][0-9]*\)$/\1/p')
        [ -n "$NBD_LISTEN" ] && break
        kill -0 "$NBD_PID" 2>/dev/null || { cat "$work/$name.err"; nbd_fail "server $name died at start"; }
        sleep 0.05
    done
    [ -n "$NBD_LISTEN" ] || nbd_fail "server $name did not start listening in 10 s"
    echo "server $name: pid $NBD_PID on $NBD_LISTEN ($(grep -o 'backend [a-z]*,.*' "$work/$name.err"))"
}

# nbd_start_wrapped NAME SETUP ARGS...: nbd_start through a wrapper script that runs the
# shell text SETUP and then execs the server ("ulimit -n 48 &&", "LD_PRELOAD=LIB").
nbd_start_wrapped() {
    local name=$1 setup=$2 plain=$nbd_bin
    shift 2
    printf '#!/bin/sh\n%s exec "%s" "$@"\n' "$setup" "$plain" >"$work/$name.sh"
    chmod +x "$work/$name.sh"
    nbd_bin=$work/$name.sh
    nbd_start "$name" "$@"
    nbd_bin=$plain
}

# nbd_wait_exit NAME PID: waits (at most 40 s) for a server that was signalled; it must
# exit 0 and print its stats line.
nbd_wait_exit() {
    local name=$1 pid=$2 i rc=0
    for ((i = 0; i < 400; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        cat "$work/$name.err"
        nbd_fail "server $name still running 40 s after SIGTERM"
    fi
    wait "$pid" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$work/$name.err"; nbd_fail "server $name exited with $rc"; }
    grep -q '^ioeng_nbd: stats: ' "$work/$name.err" || nbd_fail "server $name printed no stats"
    echo "server $name: $(grep '^ioeng_nbd: stats: ' "$work/$name.err" | sed 's/^ioeng_nbd: //')"
}

nbd_stop() {
    kill -TERM "$2"
    nbd_wait_exit "$1" "$2"
}

# nbd_stat NAME KEY: a counter from the server's stats line.
nbd_stat() {
    sed -n "s/^ioeng_nbd: stats: .*\b$2=\([0-9]*\).*/\1/p" "$work/$1.err"
}

# Whether this libioeng accepts IOENG_REQ_DSYNC on a WRITE, asked independently of the
# server (ctypes, one write to a scratch file): prints 1 or 0.
nbd_engine_takes_dsync() {
    python3 - "$LIBDIR/libioeng.so" "$work/dsync_probe" <<'PY'
import ctypes, os, sys
lib = ctypes.CDLL(sys.argv[1])
CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64)
class Req(ctypes.Structure):  # struct ioeng_req, 64 bytes (ABI v1)
    _fields_ = [("op", ctypes.c_uint32), ("prio", ctypes.c_uint32), ("fd", ctypes.c_int32),
                ("flags", ctypes.c_uint32), ("buf", ctypes.c_void_p), ("len", ctypes.c_uint64),
                ("offset", ctypes.c_uint64), ("tag", ctypes.c_uint64),
                ("deadline_ns", ctypes.c_uint64), ("buf_index", ctypes.c_uint32),
                ("reserved", ctypes.c_uint32)]
assert ctypes.sizeof(Req) == 64
cfg = ctypes.create_string_buffer(52)
lib.ioeng_config_init(cfg)
h = ctypes.c_void_p()
assert lib.ioeng_open(cfg, ctypes.byref(h)) == 0
fd = os.open(sys.argv[2], os.O_RDWR | os.O_CREAT, 0o600)
buf = ctypes.create_string_buffer(4096)
done = CB(lambda ctx, res: None)
req = Req(op=1, prio=0, fd=fd, flags=1, buf=ctypes.cast(buf, ctypes.c_void_p), len=4096)
rc = lib.ioeng_submit(h, ctypes.byref(req), done, None)
lib.ioeng_close(h)  # runs the callback, if any, before returning
os.close(fd)
print(1 if rc == 0 else 0)
PY
}

# nbd_check_fua NAME MIN: every FUA write (at least MIN) went through one path: the one
# the server announced, which must be IOENG_REQ_DSYNC whenever this libioeng accepts the
# flag (WRITE + FDATASYNC only where the engine refuses it).
nbd_check_fua() {
    local name=$1 min=$2 dsync fallback engine
    dsync=$(nbd_stat "$name" fua_dsync)
    fallback=$(nbd_stat "$name" fua_fallback)
    engine=$(nbd_engine_takes_dsync)
    if grep -q 'FUA via IOENG_REQ_DSYNC' "$work/$name.err"; then
        [ "$dsync" -ge "$min" ] && [ "$fallback" -eq 0 ] ||
            nbd_fail "FUA via DSYNC expected: fua_dsync=$dsync fua_fallback=$fallback (min $min)"
        echo "FUA: $dsync writes via IOENG_REQ_DSYNC"
    else
        [ "$engine" = 0 ] || nbd_fail "libioeng accepts IOENG_REQ_DSYNC but the server used WRITE + FDATASYNC"
        [ "$fallback" -ge "$min" ] && [ "$dsync" -eq 0 ] ||
            nbd_fail "FUA fallback expected: fua_dsync=$dsync fua_fallback=$fallback (min $min)"
        if [ "${IOENG_NBD_REQUIRE_DSYNC:-0}" = 1 ]; then
            nbd_fail "the engine refused IOENG_REQ_DSYNC ($(grep -m1 DSYNC "$work/$name.err"))"
        fi
        echo "NOTE: FUA: $fallback writes via WRITE + FDATASYNC (this libioeng refuses IOENG_REQ_DSYNC)"
    fi
}
