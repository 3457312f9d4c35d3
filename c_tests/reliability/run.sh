#!/usr/bin/env bash
# Runs the reliability tests on both backends and both modes (IOENG_TEST_MODE=threads,
# polled) and prints one PASS/FAIL/SKIP line per test + backend + mode (with the figures
# each test printed). Called by the Makefile:
#
#   ./run.sh check      every test, normal binaries, full sizes
#   ./run.sh valgrind   a representative subset under valgrind memcheck, smaller sizes
#   ./run.sh asan       every test built with -fsanitize=address,undefined (asan/), smaller sizes
#
# Exit status: 0 when nothing failed (SKIPs are allowed, and loudly reported), 1 otherwise.
# Env: IOENG_REQUIRE_URING=1 makes an unavailable io_uring a failure (the binaries do
# that), TEST_TIMEOUT (seconds per run; default 240), BACKENDS (default "aio uring"),
# MODES (default "threads polled").
set -u
cd "$(dirname "$0")"
mode=${1:-check}
timeout_s=${TEST_TIMEOUT:-240}
backends=${BACKENDS:-aio uring}
modes=${MODES:-threads polled}
# Runs in THREADS mode only: exhaustion counts the engine threads each open leaves and
# the threads and fds a failed open must not leave (POLLED opens the same kernel contexts
# and starts no thread).
threads_only=" exhaustion "
mkdir -p logs

# Every run, in order: a name, and the command line (relative to this dir) that the
# name gives with "faults_" -> "faults " (faults_enospc runs `faults enospc`).
all_runs=(stress_verify close_backlog faults_enospc faults_closedfd faults_range faults_huge
          exhaustion signals fuzz cycles)
declare -A extra=() # name -> extra env for this mode
case "$mode" in
check)
    bin=.
    runs=("${all_runs[@]}")
    wrap=()
    ;;
valgrind)
    bin=.
    # Default engine depth (128) and read buffers marked uninitialised before every
    # READ (rel_prep_read_buf), as a program reading into fresh malloc'ed memory has
    # them: libioeng must make valgrind see what the kernel wrote (AIO: reaping through
    # io_getevents under valgrind; io_uring: a MAKE_MEM_DEFINED client request).
    runs=(stress_verify close_backlog fuzz faults_closedfd faults_range)
    extra=([stress_verify]="IOENG_STRESS_SECONDS=2 IOENG_STRESS_REGION_MB=2 IOENG_STRESS_DEPTH=128"
           [close_backlog]="IOENG_BACKLOG_N=5000 IOENG_BACKLOG_DEPTH=128"
           [fuzz]="IOENG_FUZZ_CASES=20000")
    wrap=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite
          --show-leak-kinds=definite --track-fds=no)
    export IOENG_REL_WATCHDOG=600
    ;;
asan)
    bin=asan
    runs=("${all_runs[@]}")
    # ASan's allocator quarantine keeps freed memory resident by design, so RSS growth
    # says nothing in cycles; its fd/thread checks still apply.
    extra=([stress_verify]="IOENG_STRESS_SECONDS=2 IOENG_STRESS_REGION_MB=4"
           [signals]="IOENG_SIGNALS_SECONDS=2"
           [fuzz]="IOENG_FUZZ_CASES=100000"
           [cycles]="IOENG_CYCLES=200 IOENG_CYCLES_RSS_KB=1048576")
    wrap=()
    export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=1"
    export LSAN_OPTIONS="suppressions=$PWD/lsan.supp:print_suppressions=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=1"
    export IOENG_REL_WATCHDOG=600
    ;;
*)
    echo "usage: $0 check|valgrind|asan" >&2
    exit 2
    ;;
esac

npass=0 nfail=0 nskip=0
start=$(date +%s)
for name in "${runs[@]}"; do
    cmd=${name/#faults_/faults }
    env_extra=${extra[$name]:-}
    name_modes=$modes
    [[ $threads_only == *" $name "* ]] && name_modes=threads
    for m in $name_modes; do
    for b in $backends; do
        log=logs/$name.$b.$m.$mode.log
        t0=$(date +%s%N)
        # shellcheck disable=SC2086
        env IOENG_TEST_BACKEND="$b" IOENG_TEST_MODE="$m" $env_extra timeout -k 10 "$timeout_s" \
            "${wrap[@]}" "$bin"/$cmd >"$log" 2>&1
        rc=$?
        ms=$(( ($(date +%s%N) - t0) / 1000000 ))
        dt=$(printf '%d.%01d' $((ms / 1000)) $((ms % 1000 / 100)))
        tag="$name [$b $m]"
        [ "$mode" != check ] && tag="$name [$b $m, $mode]"
        if [ $rc -eq 0 ]; then
            npass=$((npass + 1))
            printf 'PASS  %-34s %6ss\n' "$tag" "$dt"
            grep -E '^(figure|fuzz: seed)' "$log" | sed 's/^/        /'
        elif [ $rc -eq 77 ]; then
            nskip=$((nskip + 1))
            printf '*** SKIP  %-30s %s ***\n' "$tag" "$(grep -m1 '^SKIP' "$log")"
        else
            nfail=$((nfail + 1))
            if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then why="timeout ${timeout_s}s"; else why="exit $rc"; fi
            printf 'FAIL  %-34s %6ss (%s) log: %s\n' "$tag" "$dt" "$why" "reliability/$log"
            tail -n 40 "$log" | sed 's/^/    | /'
        fi
    done
    done
done
echo "reliability $mode: $npass passed, $nfail failed, $nskip skipped ($(( $(date +%s) - start )) s)"
if [ $nskip -ne 0 ]; then echo "*** WARNING: $nskip reliability run(s) SKIPPED in $mode (see above) ***"; fi
[ $nfail -eq 0 ]
