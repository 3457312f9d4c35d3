#!/usr/bin/env bash
# The ioeng_nbd libFuzzer target (examples_c/fuzz/ioeng_nbd_fuzz.c: the server's own files,
# its accept/epoll/reply code and the real engine on IOENG_TEST_BACKEND, ASan + UBSan)
# for IOENG_FUZZ_SECONDS (default 30 per backend) from the committed seed corpus. Any
# crash, leak, sanitizer report, hang (a connection not closed and freed within 10 s) or
# exit of the target fails. Needs clang (installed by .ci/run).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/nbd_lib.sh"
backend="${IOENG_TEST_BACKEND:-aio}"
export LIBDIR="${LIBDIR:-$here/../target/lib}"
. "$here/uring_guard.sh"
if ! command -v clang >/dev/null 2>&1; then
    [ -n "${CI:-}" ] && nbd_fail "clang missing (apt-get install clang)"
    echo "SKIP: clang missing (apt-get install clang): the NBD fuzz target was not run"
    exit 77
fi
make -s -C "$here/../examples_c" ioeng_nbd_fuzz >/dev/null
secs=${IOENG_FUZZ_SECONDS:-30}
log=$(mktemp /tmp/ioeng_nbd_fuzz_log.XXXXXX)
trap 'rm -f "$log"' EXIT
if ! IOENG_TEST_BACKEND=$backend make -s -C "$here/../examples_c" fuzz-nbd FUZZ_SECONDS="$secs" >"$log" 2>&1; then
    grep -v '^"' "$log" | tail -n 60
    nbd_fail "the fuzz target failed (the input is in $(grep -o '/tmp/ioeng_nbd_fuzz-[a-z]*-[0-9a-f]*' "$log" | head -n 1))"
fi
grep -q 'Done [0-9]* runs' "$log" || { tail -n 30 "$log"; nbd_fail "no 'Done N runs' line from libFuzzer"; }
runs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log")
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
[ "$runs" -ge 100 ] || nbd_fail "only $runs fuzz runs in $secs s"
echo "test_nbd_fuzz [$backend]: OK: $runs sessions in $secs s, $cov, no crash, leak, sanitizer report or hang"
