#!/usr/bin/env bash
# compare_qos.sh - the IO class cases of DESIGN §6.1 (issue 22) through ioeng_bench
# --job-class, with fio's nearest equivalents beside them, medians of --rounds runs:
#
#   1a shares    two 4k randread jobs, weights 300:100: IOPS ratio (target 3.0 +- 10 %)
#   1b cost      a 4k and a 128k randread job at 1:1: ratio of cost (1 + bytes/65536 per
#                IO; target 1.0 +- 10 %)
#   2  limit     a 64k randwrite job limited to 20,000,000 bytes/s beside a 4k randread
#                job: the writer's bytes/s (target +- 5 %) and the reader's IOPS
#   3  latency   (ext4 only) foreground 4k randread QD4 weight 900 against background
#                128k randwrite QD64 weight 100: foreground p99 and IOPS, background MB/s
#   4  guard     4k randread QD64, 90 % HIGH (--prio-mix 0.9), normal_min_percent 10:
#                NORMAL's percent of the completions (target 10 +- 1), at the engine
#                depth and at depth 1 (libioeng only: fio has no such rule)
#
# fio: ioengine io_uring or libaio as --backend, jobs in one flow group (flow_id=1,
# flow=<weight>) for 1a/1b/3, rate=20000000 on the writer for 2. fio has no engine queue:
# its jobs' requests all go to the kernel, which is why libioeng's engine depth (--depth,
# default 8) is set below the jobs' total queue depth: only requests that wait in the
# engine can be ordered by it.
#
# usage: compare_qos.sh [--rounds N] [--runtime S] [--backend aio|uring] [--depth N]
#                       [--mode threads|polled] [--cases "1a 1b 2 3 4"] [--fs shm|ext4|both]
#                       [--no-fio]
# --mode polled: one job thread drives the engine for every job (ioeng_bench --mode
# polled --single-poller; callbacks issue each slot's next request on that thread).
# Files: /dev/shm/ioeng-qos (tmpfs, buffered, 256 MiB, removed at exit) and
# ${IOENG_TEST_DIR:-/var/tmp}/ioeng-qos (ext4, O_DIRECT, 1 GiB, kept for the next run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=$HERE/ioeng_bench
ROUNDS=5 RUNTIME=8 BACKEND=uring DEPTH=8 CASES="1a 1b 2 3 4" FS=both USE_FIO=1 MODE=threads
while [ $# -gt 0 ]; do
    case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --runtime) RUNTIME=$2; shift 2 ;;
    --backend) BACKEND=$2; shift 2 ;;
    --depth) DEPTH=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    --fs) FS=$2; shift 2 ;;
    --no-fio) USE_FIO=0; shift ;;
    -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "compare_qos.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -x "$BENCH" ] || make -C "$HERE" ioeng_bench >&2
case $MODE in
    threads) MODE_ARGS=(--mode threads) ;;
    polled) MODE_ARGS=(--mode polled --single-poller) ;;
    *) echo "compare_qos.sh: --mode threads or polled" >&2; exit 2 ;;
esac
if [ $USE_FIO = 1 ] && ! command -v fio >/dev/null; then
    echo "compare_qos.sh: fio not installed; libioeng rows only" >&2
    USE_FIO=0
fi
FIO_ENGINE=$([ "$BACKEND" = aio ] && echo libaio || echo io_uring)
SHM_FILE=/dev/shm/ioeng-qos
EXT4_FILE=${IOENG_TEST_DIR:-/var/tmp}/ioeng-qos
TMP=$(mktemp -d /tmp/ioeng-qos.XXXXXX)
# The tmpfs file is memory: removed at exit; the ext4 one is kept for the next run.
trap 'rm -rf "$TMP" "$SHM_FILE"' EXIT

# One job spec per case: "rw bs qd weight extra" (extra: bps=N or -).
case_jobs() {
    case $1 in
    1a) echo "randread 4k 16 300 -;randread 4k 16 100 -" ;;
    1b) echo "randread 4k 16 100 -;randread 128k 16 100 -" ;;
    2) echo "randwrite 64k 16 100 bps=20000000;randread 4k 16 100 -" ;;
    3) echo "randread 4k 4 900 -;randwrite 128k 64 100 -" ;;
    esac
}

run_ioeng() {  # CASE FILE DIRECT -> JSON on stdout
    if [ "$1" = 4 ]; then
        local d
        for d in "$DEPTH" 1; do
            "$BENCH" --backend "$BACKEND" "${MODE_ARGS[@]}" --engine-depth "$d" --iodepth 64 --rw randread --bs 4k \
                --runtime "$RUNTIME" --direct "$3" --filename "$2" --size "$(size_of "$2")" \
                --prio-mix 0.9 --normal-min-percent 10 --output-format json
        done | python3 -c 'import json,sys; print(json.dumps([json.loads(l) for l in sys.stdin]))'
        return
    fi
    local args=() IFS=';' spec
    for spec in $(case_jobs "$1"); do
        IFS=' ' read -r rw bs qd w extra <<<"$spec"
        local jc="$w,rw=$rw,bs=$bs,qd=$qd"
        [ "$extra" != - ] && jc="$jc,$extra"
        args+=(--job-class "$jc")
    done
    "$BENCH" --backend "$BACKEND" "${MODE_ARGS[@]}" --engine-depth "$DEPTH" --runtime "$RUNTIME" \
        --direct "$3" --filename "$2" --size "$(size_of "$2")" --latency-stats 1 --output-format json "${args[@]}"
}

run_fio() {  # CASE FILE DIRECT -> JSON on stdout
    local args=(--output-format=json --ioengine="$FIO_ENGINE" --direct="$3" --filename="$2"
                --size="$(size_of "$2")" --runtime="$RUNTIME" --time_based=1 --norandommap=1
                --randrepeat=0 --lat_percentiles=1 --percentile_list=50:99:99.9)
    local IFS=';' spec i=0
    for spec in $(case_jobs "$1"); do
        IFS=' ' read -r rw bs qd w extra <<<"$spec"
        args+=(--name="job$i" --rw="$rw" --bs="$bs" --iodepth="$qd")
        if [ "$1" = 2 ]; then
            [ "$extra" != - ] && args+=(--rate="${extra#bps=}")
        else
            args+=(--flow_id=1 --flow="$w")
        fi
        i=$((i + 1))
    done
    fio "${args[@]}" 2>/dev/null
}

# The case's figures from a JSON result (tool: ioeng|fio), one line of numbers.
figures() {  # CASE TOOL FILE
    python3 - "$@" <<'PY'
import json, sys
case, tool, path = sys.argv[1:4]
d = json.load(open(path))
if case == "4":
    pct = [100 * r["lat_us"]["normal_read"]["count"] /
           (r["lat_us"]["normal_read"]["count"] + r["lat_us"]["high_read"]["count"]) for r in d]
    print("%.2f %.2f" % tuple(pct))
    sys.exit(0)
def jobs():
    if tool == "ioeng":
        for j in d["job_classes"]:
            yield j["iops"], j["mib_s"] * 1048576, j["bs"], j["lat_us"]["p99"]
    else:
        for j in d["jobs"]:
            s = j["read"] if j["read"]["io_bytes"] else j["write"]
            bs = s["io_bytes"] / max(s["total_ios"], 1)
            p99 = s.get("lat_ns", s.get("clat_ns", {})).get("percentile", {}).get("99.000000", 0) / 1e3
            yield s["iops"], s["bw_bytes"], bs, p99
js = list(jobs())
if case == "1a":
    print("%.3f" % (js[0][0] / js[1][0]))
elif case == "1b":
    cost = [iops * (1 + bs / 65536) for iops, _, bs, _ in js]
    print("%.3f" % (cost[0] / cost[1]))
elif case == "2":
    print("%.0f %.0f" % (js[0][1], js[1][0]))
else:
    print("%.0f %.0f %.1f" % (js[0][3], js[0][0], js[1][1] / 1e6))
PY
}

median() { python3 -c 'import sys,statistics as s; rows=[list(map(float,l.split())) for l in sys.stdin if l.strip()]; print(" ".join("%g" % s.median(c) for c in zip(*rows)))'; }

header() {
    case $1 in
    1a) echo "IOPS ratio 300:100 (target 3.0)" ;;
    1b) echo "cost ratio 4k:128k at 1:1 (target 1.0)" ;;
    2) echo "writer bytes/s (limit 20000000), reader IOPS" ;;
    3) echo "fg p99 us, fg IOPS, bg MB/s" ;;
    4) echo "NORMAL % of completions at depth $DEPTH and 1 (target 10)" ;;
    esac
}

# 256 MiB on tmpfs (memory), 1 GiB on ext4 (the issue's files).
size_of() { [ "$1" = "$SHM_FILE" ] && echo $((256 << 20)) || echo $((1 << 30)); }

prepare() {  # FILE: a file of its size with data, made once
    local want
    want=$(size_of "$1")
    [ -f "$1" ] && [ "$(stat -c %s "$1")" -ge "$want" ] && return
    echo "creating $1 ..." >&2
    head -c "$want" /dev/urandom >"$1"
}

echo "compare_qos.sh: backend $BACKEND, engine depth $DEPTH, $ROUNDS round(s) of ${RUNTIME}s, medians"
for fs in shm ext4; do
    [ "$FS" = both ] || [ "$FS" = "$fs" ] || continue
    if [ $fs = shm ]; then file=$SHM_FILE direct=0; else file=$EXT4_FILE direct=1; fi
    prepare "$file"
    for c in $CASES; do
        [ "$c" = 3 ] && [ $fs = shm ] && continue
        for tool in ioeng fio; do
            [ $tool = fio ] && { [ $USE_FIO = 0 ] || [ "$c" = 4 ]; } && continue
            for r in $(seq 1 "$ROUNDS"); do
                out=$TMP/$fs.$c.$tool.$r.json
                if [ $tool = ioeng ]; then run_ioeng "$c" "$file" $direct >"$out"; else run_fio "$c" "$file" $direct >"$out"; fi
                figures "$c" $tool "$out"
            done | median | sed "s|^|$(printf '%-5s %-3s %-6s ' $fs "$c" $tool)|; s|\$|   ($(header "$c"))|"
        done
    done
done
