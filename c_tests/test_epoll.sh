#!/usr/bin/env bash
# Runs examples_c/epoll_loop (IOENG_MODE_POLLED inside a one-thread epoll loop with a
# timerfd, 32 reads in flight) for 0.5 s on the backend in IOENG_TEST_BACKEND: it must exit
# 0 (every read verified, nothing left in flight after close) having ticked and read.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
backend="${IOENG_TEST_BACKEND:-aio}"
. "$here/uring_guard.sh"
out=$("$here/../examples_c/epoll_loop" --backend "$backend" --seconds 0.5 2>&1) ||
    { rc=$?; echo "$out"; echo "FAIL: epoll_loop exited $rc"; exit 1; }
echo "$out" | tail -n 3
summary=$(echo "$out" | tail -n 1)
[[ $summary =~ ,\ ([0-9]+)\ reads\ verified ]] || { echo "FAIL: no summary line"; exit 1; }
reads=${BASH_REMATCH[1]}
[[ $reads -gt 32 ]] || { echo "FAIL: only $reads reads"; exit 1; }
# Expirations that a busy machine merged into one wake-up count too.
[[ $summary =~ ,\ ([0-9]+)\ ticks ]] || { echo "FAIL: no tick count in the summary"; exit 1; }
[[ ${BASH_REMATCH[1]} -ge 5 ]] || { echo "FAIL: the timerfd ticked ${BASH_REMATCH[1]} times in 0.5 s, not 5"; exit 1; }
echo "test_epoll [$backend]: OK: one-thread epoll loop with event fd + timerfd, $reads reads verified, ticks served"
