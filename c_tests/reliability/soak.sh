#!/usr/bin/env bash
# Soak test: runs stress_verify and signals over and over, alternating the AIO and
# io_uring backends, for a long time.
#
#   cd c_tests/reliability && ./soak.sh --minutes 10          (default 10 minutes)
#   ./soak.sh --minutes 60 --chunk 60 --keep-going
#
# Options:
#   --minutes N    total wall time (default 10)
#   --chunk S      seconds per run: stress_verify gets S per file (ext4 O_DIRECT, then
#                  tmpfs), signals gets S (default 30)
#   --keep-going   do not stop at the first failure
# Each run uses a fresh seed (printed in its log); a failing run's log is kept in
# logs/soak-*.log and its seed can be replayed with IOENG_STRESS_SEED / IOENG_SIGNALS_SEED.
# io_uring unavailable: those runs SKIP (exit 77) unless IOENG_REQUIRE_URING=1.
# Exit status: 0 if every run passed (or skipped), 1 otherwise.
set -u
cd "$(dirname "$0")"
minutes=10 chunk=30 keep=0
while [ $# -gt 0 ]; do
    case "$1" in
    --minutes) minutes=$2; shift 2 ;;
    --chunk) chunk=$2; shift 2 ;;
    --keep-going) keep=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
make -s all || exit 1
mkdir -p logs
end=$(( $(date +%s) + minutes * 60 ))
runs=0 fails=0 skips=0 iter=0
echo "soak: ${minutes} min, ${chunk} s per run, started $(date)"
while [ "$(date +%s)" -lt "$end" ]; do
    for b in aio uring; do
        for t in stress_verify signals; do
            [ "$(date +%s)" -ge "$end" ] && break 3
            iter=$((iter + 1))
            log=logs/soak-$iter-$t-$b.log
            env IOENG_TEST_BACKEND=$b IOENG_STRESS_SECONDS="$chunk" IOENG_SIGNALS_SECONDS="$chunk" \
                IOENG_STRESS_SEED=$((RANDOM * 32768 + RANDOM)) \
                IOENG_SIGNALS_SEED=$((RANDOM * 32768 + RANDOM)) \
                IOENG_REL_WATCHDOG=$((chunk * 4 + 120)) \
                timeout -k 10 $((chunk * 4 + 180)) ./$t >"$log" 2>&1
            rc=$?
            runs=$((runs + 1))
            if [ $rc -eq 0 ]; then
                printf '%s PASS %-14s [%-5s]\n' "$(date +%T)" "$t" "$b"
                grep '^figure' "$log" | sed 's/^/      /'
                rm -f "$log"
            elif [ $rc -eq 77 ]; then
                skips=$((skips + 1))
                printf '%s SKIP %-14s [%-5s] %s\n' "$(date +%T)" "$t" "$b" "$(grep -m1 '^SKIP' "$log")"
            else
                fails=$((fails + 1))
                printf '%s FAIL %-14s [%-5s] exit %d, log kept: %s\n' "$(date +%T)" "$t" "$b" $rc "$log"
                tail -n 30 "$log" | sed 's/^/    | /'
                [ $keep -eq 0 ] && break 3
            fi
        done
    done
done
echo "soak: $runs runs, $fails failed, $skips skipped, finished $(date)"
[ $fails -eq 0 ]
