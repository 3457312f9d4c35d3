#!/usr/bin/env bash
# compare_fio.sh - run the same jobs through fio and through ioeng_bench and print one table.
#
#   bash examples_c/compare_fio.sh [--quick] [--runtime S] [--size SIZE] [--jobs 1,2,5]
#                                  [--repeat N] [--backends uring,aio] [--no-fio] [--dir DIR]
#                                  [--shm-dir DIR] [--no-build] [--ioeng-args ARGS] [--cpus LIST]
#                                  [--t-io-uring PATH]
#
# Jobs (all O_DIRECT, 4 KiB, one job/thread, same file for every engine):
#   1 shm-randread-qd32    randread  QD32  on a tmpfs file (/dev/shm): CPU-bound, measures overhead
#   2 ext4-randread-qd128  randread  QD128 on an ext4 file (/var/tmp or /tmp)
#   3 ext4-randread-qd1    randread  QD1   on ext4: pure latency
#   4 ext4-randwrite-qd32  randwrite QD32  on ext4
#   5 ext4-prio-mix        ioeng_bench only: randread, 5% HIGH priority, iodepth 256 over an
#                          engine depth of 16 (requests queue in the engine), HIGH vs NORMAL p99
#   6 shm-fixedbufs-qd32   job 1 with registered buffers: fio --fixedbufs=1 vs ioeng_bench
#                          --fixedbufs (io_uring only: AIO has no registered buffers)
#   7 shm-batch32-qd32     ioeng_bench only: job 1 reissuing in groups of 32 through
#                          ioeng_submit_batch (--batch-submit 32) vs the same groups sent
#                          with 32 ioeng_submit calls (--group-submit 32, row "-group32"),
#                          and vs one ioeng_submit per IO at once (plain row)
#   8 ext4-dsync-qd32      job 4 with durable writes: fio --sync=dsync (O_DSYNC) vs
#                          ioeng_bench --dsync (RWF_DSYNC per write)
# Engines: fio ioengine=io_uring vs ioeng_bench --backend uring in both modes (THREADS, and
# POLLED: rows "ioeng-uring-polled"), fio ioengine=libaio vs ioeng_bench --backend aio likewise.
# The ratio column is IOPS(libioeng) / IOPS(fio) for the same kernel interface; for job 3
# (latency) it is p50(libioeng) / p50(fio), for job 5 p99(HIGH) / p99(NORMAL), for job 7
# IOPS(batch) / IOPS(the same groups as single submits), and IOPS(groups) / IOPS(single
# submits at once).
# CPU is measured the same way for every engine: the whole process (all its threads, io_uring's
# io-wq workers included), user + system, from wait4() on the child. "IO/CPU-ms" is the IOs the
# run completed per millisecond of that CPU; its ratio column compares it with fio's.
# Latencies are total latency (fio lat_ns: submit -> completion; ioeng_bench: before
# ioeng_submit -> callback).
# With --repeat N every job runs N rounds; each round runs every engine once, each backend's
# fio and ioeng_bench back to back, fio first in odd rounds and second in even ones, starting
# with a different backend each round (so drift such as a disk cache warming up favours
# neither side of a ratio), and the table shows medians: ratios are the median of the
# per-round ratios, with their min-max range.
# With --t-io-uring PATH (fio's t/io_uring, built from fio's source: ./configure && make
# t/io_uring), the randread jobs (1, 2, 3, 6) also run the peak-IOPS reference for io_uring,
# `t/io_uring -d QD -s min(QD,8) -c min(QD,8) -p0 -B1 -F1 -n1 -r T FILE` (fixed buffers,
# registered files, batched submit and reap), in the io_uring unit of each round. Its IOPS is
# the median of its per-second lines; its IO/CPU-ms is that IOPS x its wall time over its whole
# process CPU (t/io_uring prints no IO count). The last column compares each libioeng row's
# IO/CPU-ms with t/io_uring's in the same round. With --t-io-uring-job the libioeng runs do
# the job t/io_uring does: it opens its file O_NOATIME (no access-time check per read),
# times no IO, and reaps min(QD,8) completions per io_uring_enter (-c), which a POLLED
# ioeng_poll(h, min(QD,8), ...) does too; without it ioeng_bench opens the file as fio does
# and times every IO.
# With --cpus LIST every fio and ioeng_bench run is confined to those CPUs (sched_setaffinity
# before exec, so every thread of the run inherits it): both sides then get the same place
# (unpinned, where the scheduler puts the IO thread relative to the CPU that takes the disk's
# interrupts is luck, per run), or a database's share of the machine (--cpus 1: one core).
# The table's header gives the machine's cross-CPU sleep + wake-up round trip before and
# after all runs (examples_c/wake_cost): on a VM it shifts, and so do the ratios.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$HERE/ioeng_bench

RUNTIME=""
SIZE=""
QUICK=0
REPEAT=1
BACKENDS="uring,aio"
JOBS="1,2,3,4,5"
USE_FIO=1
IOENG_ARGS=''
CPUS=''
EXT4_DIR=""
SHM_DIR=/dev/shm
BUILD=1
T_IO_URING='' T_JOB=0

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -n 's/^# \{0,1\}//p'
    cat <<'EOF'
Options:
  --runtime S     seconds per run (default 10; fractions allowed)
  --size SIZE     file size, e.g. 256m, 1g (default 1g)
  --quick         smoke run: --runtime 2 --size 256m (explicit options still win)
  --jobs LIST     comma-separated job numbers (default 1,2,3,4,5; 6-8 on request)
  --repeat N      rounds per job, medians in the table (default 1; use 5+ on noisy machines)
  --backends LIST libioeng backends to run, with their fio counterpart (default uring,aio)
  --no-fio        only the ioeng_bench rows
  --dir DIR       directory for the ext4 file (default: first ext4 of /var/tmp, /tmp)
  --shm-dir DIR   directory for the tmpfs file (default /dev/shm)
  --no-build      do not run make first (use the existing ioeng_bench)
  --ioeng-args ARGS  extra ioeng_bench options for every libioeng run, e.g. "--batch 4"
  --cpus LIST     run fio and ioeng_bench only on these CPUs, e.g. 1 or 0,1 (default: any)
  --t-io-uring PATH  also run fio's t/io_uring (the io_uring peak-IOPS tool) on jobs 1, 2, 3, 6
  --t-io-uring-job   libioeng runs do t/io_uring's job: open the file O_NOATIME, time no IO
                  (ioeng_bench --noatime --latency 0: no latency columns) and, POLLED, wait
                  for min(QD,8) callbacks per ioeng_poll (--poll-min; t/io_uring's -c)
EOF
}

die() { echo "compare_fio.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --runtime) [[ $# -ge 2 ]] || die "--runtime needs a value"; RUNTIME=$2; shift 2 ;;
        --runtime=*) RUNTIME=${1#*=}; shift ;;
        --size) [[ $# -ge 2 ]] || die "--size needs a value"; SIZE=$2; shift 2 ;;
        --size=*) SIZE=${1#*=}; shift ;;
        --quick) QUICK=1; shift ;;
        --jobs) [[ $# -ge 2 ]] || die "--jobs needs a value"; JOBS=$2; shift 2 ;;
        --jobs=*) JOBS=${1#*=}; shift ;;
        --no-fio) USE_FIO=0; shift ;;
        --dir) [[ $# -ge 2 ]] || die "--dir needs a value"; EXT4_DIR=$2; shift 2 ;;
        --dir=*) EXT4_DIR=${1#*=}; shift ;;
        --shm-dir) [[ $# -ge 2 ]] || die "--shm-dir needs a value"; SHM_DIR=$2; shift 2 ;;
        --shm-dir=*) SHM_DIR=${1#*=}; shift ;;
        --repeat) [[ $# -ge 2 ]] || die "--repeat needs a value"; REPEAT=$2; shift 2 ;;
        --repeat=*) REPEAT=${1#*=}; shift ;;
        --backends) [[ $# -ge 2 ]] || die "--backends needs a value"; BACKENDS=$2; shift 2 ;;
        --backends=*) BACKENDS=${1#*=}; shift ;;
        --no-build) BUILD=0; shift ;;
        --ioeng-args) [[ $# -ge 2 ]] || die "--ioeng-args needs a value"; IOENG_ARGS=$2; shift 2 ;;
        --ioeng-args=*) IOENG_ARGS=${1#*=}; shift ;;
        --cpus) [[ $# -ge 2 ]] || die "--cpus needs a value"; CPUS=$2; shift 2 ;;
        --cpus=*) CPUS=${1#*=}; shift ;;
        --t-io-uring) [[ $# -ge 2 ]] || die "--t-io-uring needs a value"; T_IO_URING=$2; shift 2 ;;
        --t-io-uring=*) T_IO_URING=${1#*=}; shift ;;
        --t-io-uring-job) T_JOB=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
if [[ $QUICK == 1 ]]; then
    RUNTIME=${RUNTIME:-2}
    SIZE=${SIZE:-256m}
fi
RUNTIME=${RUNTIME:-10}
SIZE=${SIZE:-1g}
if [[ -n $T_IO_URING ]]; then
    [[ -x $T_IO_URING ]] || die "--t-io-uring: '$T_IO_URING' is not an executable (build it in fio's source: ./configure && make t/io_uring)"
fi

# --- validate -------------------------------------------------------------------------------
[[ $RUNTIME =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--runtime: expected seconds such as 10 or 0.5, got '$RUNTIME'"
RUNTIME_MS=$(python3 -c 'import sys; print(int(round(float(sys.argv[1]) * 1000)))' "$RUNTIME")
[[ $RUNTIME_MS -ge 100 ]] || die "--runtime must be at least 0.1 s"
[[ $REPEAT =~ ^[0-9]+$ ]] && REPEAT=$((10#$REPEAT))
[[ $REPEAT =~ ^[0-9]+$ && $REPEAT -ge 1 && $REPEAT -le 100 ]] || die "--repeat: expected 1..100, got '$REPEAT'"

to_bytes() {  # 4k, 256m, 1g, 1G, 1GiB, 1048576 -> bytes (powers of 1024)
    local s=${1,,} n unit
    [[ $s =~ ^([0-9]+)([kmgt]?)(i?b)?$ ]] || return 1
    n=${BASH_REMATCH[1]}
    unit=${BASH_REMATCH[2]}
    case $unit in
        k) n=$((n << 10)) ;; m) n=$((n << 20)) ;; g) n=$((n << 30)) ;; t) n=$((n << 40)) ;;
    esac
    echo "$n"
}
SIZE_BYTES=$(to_bytes "$SIZE") || die "--size: expected a size such as 256m or 1g, got '$SIZE'"
[[ $SIZE_BYTES -ge $((1 << 20)) ]] || die "--size must be at least 1m"
(( SIZE_BYTES % 4096 == 0 )) || die "--size must be a multiple of 4k"

# parse_list ARRAY OPTION VALUE PATTERN EXPECTED ITEM: splits the comma-separated VALUE into
# ARRAY; every entry must match PATTERN (else "OPTION: expected EXPECTED") and none may repeat.
parse_list() {
    local -n list=$1
    local opt=$2 value=$3 pattern=$4 expected=$5 item=$6 entry
    IFS=',' read -r -a list <<<"$value"
    [[ ${#list[@]} -gt 0 ]] || die "$opt: empty list"
    for entry in "${list[@]}"; do
        [[ $entry =~ $pattern ]] || die "$opt: expected $expected, got '$value'"
    done
    [[ $(printf '%s\n' "${list[@]}" | sort | uniq -d) == "" ]] || die "$opt: $item is listed twice in '$value'"
}
declare -a SEL=() BES=()
parse_list SEL --jobs "$JOBS" '^[1-8]$' "numbers 1..8 separated by commas" "a job"
parse_list BES --backends "$BACKENDS" '^(uring|aio)$' "uring and/or aio" "a backend"
if [[ -n $CPUS ]]; then
    declare -a CPU_LIST=()
    parse_list CPU_LIST --cpus "$CPUS" '^[0-9]+$' "CPU numbers separated by commas" "a CPU"
    for c in "${CPU_LIST[@]}"; do
        python3 -c 'import os, sys; sys.exit(int(sys.argv[1]) not in os.sched_getaffinity(0))' "$c" ||
            die "--cpus: CPU $c is not available to this process (allowed: $(taskset -pc $$ 2>/dev/null | sed 's/.*: //'))"
    done
fi

# Job table: name fs rw bs iodepth
job_name() { case $1 in 1) echo shm-randread-qd32 ;; 2) echo ext4-randread-qd128 ;; 3) echo ext4-randread-qd1 ;;
                        4) echo ext4-randwrite-qd32 ;; 5) echo ext4-prio-mix ;; 6) echo shm-fixedbufs-qd32 ;;
                        7) echo shm-batch32-qd32 ;; 8) echo ext4-dsync-qd32 ;; esac; }
job_fs()   { case $1 in 1|6|7) echo shm ;; *) echo ext4 ;; esac; }
job_rw()   { case $1 in 4|8) echo randwrite ;; *) echo randread ;; esac; }
job_qd()   { case $1 in 1|4|6|7|8) echo 32 ;; 2) echo 128 ;; 3) echo 1 ;; 5) echo 256 ;; esac; }
# Per-job extra options: fio, and ioeng_bench.
job_fio_args()   { case $1 in 6) echo --fixedbufs=1 ;; 8) echo --sync=dsync ;; esac; }
job_ioeng_args() { case $1 in 6) echo --fixedbufs ;; 8) echo --dsync ;; esac; }
BS=4k

if [[ $USE_FIO == 1 ]] && ! command -v fio >/dev/null 2>&1; then
    echo "compare_fio.sh: fio is not installed; showing only the libioeng rows." >&2
    echo "compare_fio.sh: to compare against fio install it, e.g. 'apt-get install fio' (Debian/Ubuntu) or 'dnf install fio'." >&2
    USE_FIO=0
fi

# --- JSON helper: jq if present, else python3 -------------------------------------------------
# jget FILE a/b/0/c  -> value at that path ('' when missing). Path parts that are integers index arrays.
if command -v jq >/dev/null 2>&1; then
    jget() {
        jq -r --arg p "$2" '($p | split("/") | map(if test("^[0-9]+$") then tonumber else . end)) as $k
                            | getpath($k) // "" | tostring' "$1"
    }
else
    jget() {
        python3 - "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
try:
    for k in sys.argv[2].split("/"):
        d = d[int(k)] if isinstance(d, list) else d[k]
    print("" if d is None else d)
except (KeyError, IndexError, ValueError, TypeError):
    print("")
PY
    }
fi

# --- build -------------------------------------------------------------------------------------
if [[ $BUILD == 1 ]]; then
    echo "building ioeng_bench (make -C $HERE) ..." >&2
    make -s -C "$HERE" all >&2
fi
[[ -x $BENCH ]] || die "$BENCH not found; run 'make -C $HERE' first"

# --- files ---------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ioeng_cmp.XXXXXX")
SHM_FILE=""
EXT4_FILE=""
cleanup() {
    local f
    for f in "$SHM_FILE" "$EXT4_FILE"; do [[ -n $f ]] && rm -f -- "$f"; done
    rm -rf -- "$WORK"
}
trap cleanup EXIT
trap 'echo "compare_fio.sh: interrupted" >&2; exit 130' INT TERM

fstype() { stat -f -c %T "$1" 2>/dev/null || echo unknown; }

need_shm=0; need_ext4=0
for j in "${SEL[@]}"; do
    if [[ $(job_fs "$j") == shm ]]; then need_shm=1; else need_ext4=1; fi
done

fill() {  # fill FILE: SIZE_BYTES of random data, flushed
    echo "filling $1 ($((SIZE_BYTES >> 20)) MiB) ..." >&2
    dd if=/dev/urandom of="$1" bs=1M count="$SIZE_BYTES" iflag=fullblock,count_bytes conv=fdatasync status=none
}

if [[ $need_ext4 == 1 ]]; then
    if [[ -z $EXT4_DIR ]]; then
        for d in /var/tmp /tmp; do
            if [[ -d $d && -w $d && $(fstype "$d") == ext2/ext3 ]]; then EXT4_DIR=$d; break; fi
        done
        if [[ -z $EXT4_DIR ]]; then
            EXT4_DIR=/var/tmp
            echo "compare_fio.sh: warning: neither /var/tmp nor /tmp is ext4; using $EXT4_DIR ($(fstype $EXT4_DIR))" >&2
        fi
    fi
    [[ -d $EXT4_DIR && -w $EXT4_DIR ]] || die "--dir $EXT4_DIR is not a writable directory"
    EXT4_FILE=$(mktemp "$EXT4_DIR/ioeng_cmp_ext4.XXXXXX")
    fill "$EXT4_FILE"
fi
if [[ $need_shm == 1 ]]; then
    [[ -d $SHM_DIR && -w $SHM_DIR ]] || die "$SHM_DIR is not a writable directory (use --shm-dir)"
    [[ $(fstype "$SHM_DIR") == tmpfs ]] ||
        echo "compare_fio.sh: warning: $SHM_DIR is $(fstype "$SHM_DIR"), not tmpfs" >&2
    SHM_FILE=$(mktemp "$SHM_DIR/ioeng_cmp_shm.XXXXXX")
    fill "$SHM_FILE"
fi

# --- runners -------------------------------------------------------------------------------------
LIBVER=""
RESULTS=$WORK/results.tsv   # one line per run: job engine round iops p50 p99 cpu io_per_cpu_ms ('-' = failed)
: >"$RESULTS"
record() { local IFS=$'\t'; echo "$*" >>"$RESULTS"; }

# timed OUT.cpu CMD...: runs CMD as a child (on the --cpus CPUs, if given) and writes
# "cpu_seconds wall_seconds" of the whole child process (wait4 rusage: user + system over all
# its threads) to OUT.cpu.
timed() {
    local cpu_out=$1
    shift
    python3 - "$cpu_out" "$CPUS" "$@" <<'PY'
import os, sys, time
out, cpus, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    try:
        if cpus:
            os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    f.write("%f %f\n" % (ru.ru_utime + ru.ru_stime, time.monotonic() - t0))
sys.exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)
PY
}

# cpu_cols OUT.cpu IOS -> "cpu% io_per_cpu_ms" (cpu% of one CPU over the child's wall time)
cpu_cols() {
    python3 - "$1" "$2" <<'PY'
import sys
try:
    cpu, wall = map(float, open(sys.argv[1]).read().split())
    ios = float(sys.argv[2])
    print("%s %s" % (100.0 * cpu / wall, ios / (cpu * 1000.0)))
except (OSError, ValueError, ZeroDivisionError):
    print("- -")
PY
}

run_fio() {  # run_fio JOB ENGINE FILE OUT -> 0 if OUT is valid fio JSON
    local j=$1 eng=$2 file=$3 out=$4
    local args=(--name="$(job_name "$j")" --filename="$file" --ioengine="$eng" --rw="$(job_rw "$j")"
                --bs=$BS --iodepth="$(job_qd "$j")" --direct=1 --numjobs=1 --size="$SIZE_BYTES"
                --runtime="${RUNTIME_MS}ms" --time_based=1 --norandommap=1 --randrepeat=0
                --lat_percentiles=1 --percentile_list=50:90:99:99.9
                --output-format=json --output="$out" $(job_fio_args "$j"))
    echo "  fio --ioengine=$eng ..." >&2
    if ! timed "$out.cpu" fio "${args[@]}" >"$out.log" 2>&1 || [[ -z $(jget "$out" jobs/0/jobname 2>/dev/null) ]]; then
        echo "compare_fio.sh: fio ioengine=$eng failed for job $j:" >&2
        tail -n 5 "$out.log" >&2 || true
        return 1
    fi
}

run_ioeng() {  # run_ioeng JOB BACKEND FILE OUT [extra args] -> 0 if OUT is valid JSON
    local j=$1 be=$2 file=$3 out=$4 qd
    shift 4
    if [[ $T_JOB == 1 ]]; then
        qd=$(job_qd "$j")
        set -- "$@" --noatime --latency 0
        [[ " $* " == *" --mode polled "* ]] && set -- "$@" --poll-min $((qd < 8 ? qd : 8))
    fi
    echo "  ioeng_bench --backend $be $IOENG_ARGS $* ..." >&2
    if ! timed "$out.cpu" "$BENCH" --backend "$be" --rw "$(job_rw "$j")" --bs $BS --iodepth "$(job_qd "$j")" --direct 1 \
            --numjobs 1 --size "$SIZE_BYTES" --runtime "${RUNTIME_MS}ms" --filename "$file" \
            --output-format json $(job_ioeng_args "$j") $IOENG_ARGS "$@" >"$out" 2>"$out.log" ||
            [[ -z $(jget "$out" backend 2>/dev/null) ]]; then
        echo "compare_fio.sh: ioeng_bench --backend $be failed for job $j:" >&2
        tail -n 5 "$out.log" >&2 || true
        return 1
    fi
    LIBVER=$(jget "$out" version)
}

# run_t_io_uring JOB FILE OUT -> prints "iops cpu% io_per_cpu_ms"; 1 if it failed. Whole
# seconds only (-r); the per-second "IOPS=..." lines, median.
run_t_io_uring() {
    local j=$1 file=$2 out=$3 qd secs batch
    qd=$(job_qd "$j")
    batch=$((qd < 8 ? qd : 8))
    secs=$(( (RUNTIME_MS + 999) / 1000 ))
    echo "  t/io_uring -d $qd -s $batch -c $batch -p0 -B1 -F1 -n1 -r $secs ..." >&2
    if ! timed "$out.cpu" "$T_IO_URING" -d "$qd" -s "$batch" -c "$batch" -p0 -B1 -F1 -n1 -r "$secs" "$file" \
            >"$out" 2>&1; then
        echo "compare_fio.sh: t/io_uring failed for job $j:" >&2
        tail -n 5 "$out" >&2 || true
        return 1
    fi
    python3 - "$out" "$out.cpu" <<'PY'
import re, statistics, sys
rates = []
for line in open(sys.argv[1]):
    m = re.match(r"IOPS=([0-9.]+)([KM]?),", line)
    if m:
        rates.append(float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6}[m.group(2)])
cpu, wall = map(float, open(sys.argv[2]).read().split())
if not rates or cpu <= 0:
    sys.exit(1)
iops = statistics.median(rates)
print("%s %s %s" % (iops, 100.0 * cpu / wall, iops * wall / (cpu * 1000.0)))
PY
}

# fio: section read or write, lat_ns percentiles (clat_ns if lat is missing), ns -> us
fio_row() {  # fio_row OUT SECTION -> prints "iops p50 p99"
    local out=$1 sec=$2 kind p50 p99
    kind=lat_ns
    [[ -n $(jget "$out" "jobs/0/$sec/lat_ns/percentile/50.000000") ]] || kind=clat_ns
    p50=$(jget "$out" "jobs/0/$sec/$kind/percentile/50.000000")
    p99=$(jget "$out" "jobs/0/$sec/$kind/percentile/99.000000")
    local iops
    iops=$(jget "$out" "jobs/0/$sec/iops")
    python3 -c 'import sys
a = sys.argv[1:]
f = lambda x: float(x) if x else float("nan")
print("%s %s %s" % (f(a[0]), f(a[1]) / 1000, f(a[2]) / 1000))' "$iops" "$p50" "$p99"
}

file_for() { if [[ $(job_fs "$1") == shm ]]; then echo "$SHM_FILE"; else echo "$EXT4_FILE"; fi; }

# run_engine JOB ROUND ENGINE: one run, recorded in $RESULTS. ENGINE is fio-io_uring,
# fio-libaio, ioeng-uring, ioeng-aio, ioeng-uring-polled or ioeng-aio-polled; job 5 records a
# HIGH and a NORMAL line per backend.
run_engine() {
    local j=$1 r=$2 eng=$3 file sec out iops p50 p99 cpu cnt rt cls mode=threads
    file=$(file_for "$j")
    sec=read; [[ $(job_rw "$j") == randwrite ]] && sec=write
    out=$WORK/${eng}_${j}_$r.json
    case $eng in
        fio-*)
            if run_fio "$j" "${eng#fio-}" "$file" "$out"; then
                read -r iops p50 p99 <<<"$(fio_row "$out" "$sec")"
                record "$j" "$eng" "$r" "$iops" "$p50" "$p99" \
                    $(cpu_cols "$out.cpu" "$(jget "$out" "jobs/0/$sec/total_ios")")
            else
                record "$j" "$eng" "$r" - - - - -
            fi ;;
        t-io_uring)
            local tcols
            if tcols=$(run_t_io_uring "$j" "$file" "$out"); then
                read -r iops cpu cnt <<<"$tcols"
                record "$j" "$eng" "$r" "$iops" - - "$cpu" "$cnt"
            else
                record "$j" "$eng" "$r" - - - - -
            fi ;;
        ioeng-*)
            local be=${eng#ioeng-} extra=()
            if [[ $be == *-batch32 ]]; then
                be=${be%-batch32}
                extra=(--batch-submit 32)
            elif [[ $be == *-group32 ]]; then
                be=${be%-group32}
                extra=(--group-submit 32)
            fi
            if [[ $be == *-polled ]]; then be=${be%-polled}; mode=polled; fi
            if [[ $j == 5 ]]; then
                if run_ioeng "$j" "$be" "$file" "$out" --mode $mode --engine-depth 16 --prio-mix 0.05; then
                    rt=$(jget "$out" runtime_s)
                    cpu=$(cpu_cols "$out.cpu" "$(jget "$out" ios)")
                    for cls in high normal; do
                        cnt=$(jget "$out" "lat_us/${cls}_read/count")
                        iops=$(python3 -c 'import sys
try:
    print(float(sys.argv[1]) / float(sys.argv[2]))
except (ValueError, ZeroDivisionError):
    print("-")' "$cnt" "$rt")
                        record "$j" "$eng ${cls^^}" "$r" "$iops" "$(jget "$out" "lat_us/${cls}_read/p50")" \
                            "$(jget "$out" "lat_us/${cls}_read/p99")" $cpu
                    done
                else
                    record "$j" "$eng HIGH" "$r" - - - - -
                    record "$j" "$eng NORMAL" "$r" - - - - -
                fi
            elif run_ioeng "$j" "$be" "$file" "$out" --mode $mode "${extra[@]}"; then
                cls=normal_$sec
                record "$j" "$eng" "$r" "$(jget "$out" iops)" "$(jget "$out" "lat_us/$cls/p50")" \
                    "$(jget "$out" "lat_us/$cls/p99")" $(cpu_cols "$out.cpu" "$(jget "$out" ios)")
            else
                record "$j" "$eng" "$r" - - - - -
            fi ;;
    esac
}

# The machine's cross-CPU sleep + wake-up round trip now (examples_c/wake_cost), or "?": on a
# VM it shifts over an hour, and the QD1 and THREADS rows follow it.
wake_round_trip() {
    local out
    out=$("$HERE/wake_cost" 20000 2>/dev/null) || true
    out=$(sed -n 's/.*: \([0-9.]*\) us per round trip.*/\1 us/p' <<<"$out")
    echo "${out:-?}"
}

# --- run -----------------------------------------------------------------------------------------
WAKE_BEFORE=$(wake_round_trip)
echo "runtime ${RUNTIME}s per run, $REPEAT round(s) per job, size $SIZE, bs $BS, O_DIRECT;" \
     "ext4 file: ${EXT4_FILE:-none}; tmpfs file: ${SHM_FILE:-none}${IOENG_ARGS:+; ioeng_bench $IOENG_ARGS}${CPUS:+; on CPUs $CPUS}" >&2
for j in "${SEL[@]}"; do
    # A unit is one backend: its fio counterpart and ioeng_bench, run back to back.
    units=()
    for be in "${BES[@]}"; do
        if [[ $j == 6 && $be == aio ]]; then
            continue  # registered buffers are an io_uring feature; fio has no libaio twin
        elif [[ $j == 7 ]]; then
            units+=("ioeng-$be ioeng-$be-batch32 ioeng-$be-group32")
        elif [[ $j != 5 && $USE_FIO == 1 ]]; then
            units+=("fio-$([[ $be == uring ]] && echo io_uring || echo libaio) ioeng-$be ioeng-$be-polled")
        else
            units+=("ioeng-$be ioeng-$be-polled")
        fi
        if [[ -n $T_IO_URING && $be == uring && $(job_rw "$j") == randread && $j != 5 && $j != 7 ]]; then
            units[-1]+=" t-io_uring"
        fi
    done
    n=${#units[@]}
    for ((r = 1; r <= REPEAT; r++)); do
        echo "job $j $(job_name "$j"), round $r/$REPEAT:" >&2
        # Round r starts at a different unit, and within each unit fio runs first in odd
        # rounds and second in even ones, so slow drift favours neither side of a ratio.
        for ((k = 0; k < n; k++)); do
            read -r -a pair <<<"${units[(k + r - 1) % n]}"
            if ((r % 2 == 0 && ${#pair[@]} >= 3)); then pair=("${pair[@]:1}" "${pair[0]}"); fi
            for eng in "${pair[@]}"; do
                run_engine "$j" "$r" "$eng"
            done
        done
    done
done

# --- table ---------------------------------------------------------------------------------------
echo
echo "libioeng ${LIBVER:-?} vs" \
     "$([[ $USE_FIO == 1 ]] && fio --version || echo 'no fio')," \
     "kernel $(uname -r), $(nproc) CPUs, runtime ${RUNTIME}s, size $SIZE, bs $BS," \
     "O_DIRECT$([[ $REPEAT -gt 1 ]] && echo "; medians of $REPEAT rounds")"
echo "cross-CPU sleep + wake-up round trip (examples_c/wake_cost 20000): $WAKE_BEFORE before the" \
     "runs, $(wake_round_trip) after"
JOB_NAMES=$(for j in 1 2 3 4 5 6 7 8; do echo "$j $(job_name "$j")"; done)
python3 - "$RESULTS" "$JOB_NAMES" <<'PY'
import math, statistics, sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
names = dict(line.split(" ", 1) for line in sys.argv[2].splitlines())

def num(x):
    try:
        v = float(x)
    except ValueError:
        return None
    return v if math.isfinite(v) else None

runs = {}  # (job, engine) -> {round: (iops, p50, p99, cpu, io_per_cpu_ms)}
order = []
for job, eng, rnd, *vals in rows:
    key = (job, eng)
    if key not in runs:
        runs[key] = {}
        order.append(key)
    runs[key][rnd] = tuple(num(v) for v in vals)

def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def fmt(v, spec):
    return "-" if v is None else spec % v

def ratio_text(pairs):
    """Median of per-round ratios a/b, with the min-max range when there are several."""
    rs = sorted(a / b for a, b in pairs if a is not None and b)
    if not rs:
        return "-"
    text = "%.2f" % statistics.median(rs)
    if len(rs) > 1:
        text += " (%.2f-%.2f)" % (rs[0], rs[-1])
    return text

partner = {"ioeng-uring": "fio-io_uring", "ioeng-aio": "fio-libaio",
           "ioeng-uring-polled": "fio-io_uring", "ioeng-aio-polled": "fio-libaio"}
with_t = any(eng == "t-io_uring" for _, eng in order)
fmt_row = "%-24s | %-25s | %10s | %9s | %9s | %-26s | %5s | %9s | %-22s" + (" | %-22s" if with_t else "%s")
print(fmt_row % ("job", "engine", "IOPS", "p50 us", "p99 us", "ratio ioeng/fio", "cpu%",
                 "IO/CPU-ms", "IO/CPU-ms ioeng/fio", "IO/CPU-ms ioeng/t_io" if with_t else ""))
print("+".join("-" * n for n in (25, 27, 12, 11, 11, 28, 7, 11, 23) + ((23,) if with_t else ())))
prev = None
for job, eng in order:
    by_round = runs[(job, eng)]
    cols = list(zip(*by_round.values()))
    iops, p50, p99, cpu, per_cpu = (med(c) for c in cols)
    ratio = ""
    cpu_ratio = ""
    if eng.endswith("-batch32") and (job, eng[:-8] + "-group32") in runs:
        groups = runs[(job, eng[:-8] + "-group32")]
        ratio = "vs group32 " + ratio_text((v[0], groups[r][0]) for r, v in by_round.items() if r in groups)
    elif eng.endswith(("-batch32", "-group32")) and (job, eng[:-8]) in runs:
        single = runs[(job, eng[:-8])]
        ratio = "vs single " + ratio_text((v[0], single[r][0]) for r, v in by_round.items() if r in single)
    elif eng in partner and (job, partner[eng]) in runs:
        fio = runs[(job, partner[eng])]
        cpu_ratio = ratio_text((v[4], fio[r][4]) for r, v in by_round.items() if r in fio)
        if job == "3":  # the latency job: compare p50 latency (lower is better)
            ratio = "p50 " + ratio_text((v[1], fio[r][1]) for r, v in by_round.items() if r in fio)
        else:
            ratio = ratio_text((v[0], fio[r][0]) for r, v in by_round.items() if r in fio)
    elif eng.endswith(" HIGH"):
        normal = runs.get((job, eng[:-5] + " NORMAL"), {})
        ratio = "p99 H/N " + ratio_text((v[2], normal[r][2]) for r, v in by_round.items() if r in normal)
    elif eng.startswith("ioeng-") and not eng.endswith(" NORMAL"):
        ratio = "-"
    label = "%s %s" % (job, names.get(job, "?"))
    if label == prev:
        label = ""
    else:
        prev = label
    failed = sum(1 for v in by_round.values() if v[0] is None)
    if failed:
        ratio = (ratio + " " if ratio else "") + "[%d failed]" % failed
    show_cpu = not eng.endswith(" NORMAL")
    t_ratio = ""
    if eng.startswith("ioeng-uring") and (job, "t-io_uring") in runs:
        t_runs = runs[(job, "t-io_uring")]
        t_ratio = ratio_text((v[4], t_runs[r][4]) for r, v in by_round.items() if r in t_runs)
    print(fmt_row % (label, eng, fmt(iops, "%.0f"), fmt(p50, "%.1f"), fmt(p99, "%.1f"), ratio,
                     fmt(cpu, "%.0f") if show_cpu else "", fmt(per_cpu, "%.1f") if show_cpu else "",
                     cpu_ratio, t_ratio))
PY
echo
echo "ratio: IOPS(libioeng) / IOPS(fio) on the same kernel interface; job 3: p50(libioeng) / p50(fio);"
echo "job 5: p99(HIGH) / p99(NORMAL); job 7: batch32 = IOPS(groups of 32 via ioeng_submit_batch) /"
echo "IOPS(the same groups via 32 ioeng_submit calls, row group32); group32 / single: the cost of the"
echo "grouping itself (the queue drains before each group) against one ioeng_submit per IO at once."
echo "Ranges in brackets: lowest-highest per-round ratio."
echo "latency: submit -> completion (fio lat_ns; ioeng_bench submit -> callback). cpu%: usr+sys of"
echo "the whole process (all threads, io_uring's io-wq workers included; from wait4) as % of one CPU"
echo "over its wall time; IO/CPU-ms: IOs completed per CPU-millisecond (higher is better); its ratio"
echo "column: median of per-round ratios to fio's. *-polled rows: IOENG_MODE_POLLED (one thread)."
if [[ -n $T_IO_URING ]]; then
    echo "t-io_uring: fio's t/io_uring (fixed buffers, registered files, batch min(QD,8)); IOPS = median"
    echo "of its per-second lines, IO/CPU-ms = IOPS x wall / CPU; last column: libioeng's IO/CPU-ms over"
    echo "t/io_uring's in the same round (median of per-round ratios)."
fi
