#!/usr/bin/env bash
# Runs the C tests (and the shell tests) named on the command line on both backends
# (IOENG_TEST_BACKEND=aio, =uring) and both modes (IOENG_TEST_MODE=threads, =polled), and
# prints one PASS/FAIL/SKIP line per test + backend + mode (a PASS with the last line the
# test printed, a FAIL with the tail of its log). Called by `make check` with every test:
#
#   ./run.sh test_rw test_order ... test_races test_bench.sh ...
#
# Logs: logs/<test>.<backend>.<mode>.log. Exit 77 from a test = SKIP.
# Exit status: 0 when nothing failed (SKIPs are allowed, and loudly reported), 1 otherwise.
# Env: LIBDIR (the directory of libioeng.so, for the shell tests; default ../target/lib),
# TEST_TIMEOUT (seconds per run; default 120), MODES (default "threads polled"),
# IOENG_REQUIRE_URING=1 (an unavailable io_uring fails instead of skipping: the tests do
# that).
set -u
cd "$(dirname "$0")"
if [ $# -eq 0 ]; then
    echo "usage: $0 TEST..." >&2
    exit 2
fi
timeout_s=${TEST_TIMEOUT:-120}
modes=${MODES:-threads polled}
export LIBDIR=${LIBDIR:-$(cd .. && pwd)/target/lib}

# Runs in THREADS mode only: test_compare.sh compares both modes itself (its POLLED rows);
# test_epoll.sh runs examples_c/epoll_loop, which is POLLED by design.
# test_crossclose checks a THREADS rule (close from any engine's callback is -EDEADLK: see
# ioeng_close in include/ioeng.h); in POLLED mode the other engine's poller makes that
# close -EBUSY instead.
one_mode=" test_compare.sh test_epoll.sh test_crossclose "
# The NBD server tests run examples_c/ioeng_nbd with --mode IOENG_TEST_MODE: the protocol
# and data-safety ones in both modes, the rest in its default (POLLED) mode only.
polled_only=" test_nbd_fio.sh test_nbd_fuzz.sh test_nbd_features.sh "

mkdir -p logs
fail=0 npass=0 nfail=0 nskip=0
for t in "$@"; do
    t_modes=$modes
    [[ $one_mode == *" $t "* ]] && t_modes=threads
    [[ $polled_only == *" $t "* ]] && t_modes=polled
    for m in $t_modes; do
    for b in aio uring; do
        log=logs/$t.$b.$m.log
        IOENG_TEST_BACKEND=$b IOENG_TEST_MODE=$m timeout -k 5 "$timeout_s" ./"$t" >"$log" 2>&1
        rc=$?
        if [ $rc -eq 0 ]; then
            npass=$((npass + 1))
            printf 'PASS  %-14s [%-5s %-7s] %s\n' "$t" "$b" "$m" "$(tail -n 1 "$log")"
        elif [ $rc -eq 77 ]; then
            nskip=$((nskip + 1))
            printf '*** SKIP  %-14s [%-5s %-7s] %s ***\n' "$t" "$b" "$m" "$(tail -n 1 "$log")"
        else
            nfail=$((nfail + 1))
            fail=1
            if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then why="timeout ${timeout_s}s"; else why="exit $rc"; fi
            printf 'FAIL  %-14s [%-5s %-7s] (%s)\n' "$t" "$b" "$m" "$why"
            sed 's/^/    | /' "$log" | tail -n 40
        fi
    done
    done
done
echo "c_tests: $npass passed, $nfail failed, $nskip skipped"
if [ $nskip -ne 0 ]; then echo "*** WARNING: $nskip test run(s) SKIPPED (see above) ***"; fi
exit $fail
