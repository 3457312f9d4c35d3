#!/usr/bin/env bash
# instructions_per_io.sh - user-space instructions per IO of one ioeng_bench run, counted by
# valgrind's callgrind. The count hardly depends on what else the machine does (within
# about 2% from run to run on the VM it was written on, up to 10% on another: how many
# poll passes an IO takes follows the kernel's timing; run each build twice or more), so
# two builds of the library compare without the round-to-round noise of CPU time on a
# small VM, where a 5% change hides in it (README, "CPU per IO against fio's
# t/io_uring").
#
#   bash examples_c/instructions_per_io.sh [--bench PATH] [--top N] [-- IOENG_BENCH_ARGS...]
#
# --bench    the ioeng_bench to run (default: examples_c/ioeng_bench of this checkout, built
#            if missing); a bench built in another checkout runs against that checkout's
#            library (its rpath), which is how two builds are compared
# --top N    also list the N functions with the most instructions of their own, per IO
#            (default 12; 0: none)
# Without bench arguments it runs the tmpfs QD32 job of compare_fio.sh --t-io-uring-job:
# io_uring POLLED + SINGLE_POLLER, 4 KiB O_DIRECT random reads, fixed buffers and files,
# 2 s, on a 256 MiB file in /dev/shm made for the run.
#
# Prints the IOs done, the instructions per IO of the whole process in user space
# (ioeng_bench, libioeng, libc; the kernel's work is not counted: callgrind sees user
# space only) and the memcpy share. Under valgrind the io_uring driver also marks each
# READ's buffer defined (memcheck cannot see the kernel's writes), which builds the
# request's chunk once more: about 67 instructions per READ, in every build alike.
# The run is about 30 times slower than natively, so IO counts are lower; what is
# compared is instructions per IO, not IOPS.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bench="$here/ioeng_bench"
top=12
while [[ $# -gt 0 ]]; do
    case $1 in
        --bench) bench=$2; shift 2 ;;
        --top) top=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "instructions_per_io.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
for tool in valgrind callgrind_annotate python3; do
    command -v "$tool" >/dev/null || { echo "instructions_per_io.sh: needs $tool" >&2; exit 2; }
done
if [[ ! -x $bench ]]; then
    make -s -C "$here" ioeng_bench >&2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $# -eq 0 ]]; then
    file=$(mktemp /dev/shm/ioeng_instr.XXXXXX)
    trap 'rm -rf "$work" "$file"' EXIT
    head -c $((256 << 20)) /dev/urandom >"$file"
    set -- --backend uring --mode polled --single-poller --fixedbufs --fixedfiles \
        --rw randread --bs 4096 --iodepth 32 --direct 1 --numjobs 1 --size 268435456 \
        --runtime 2000ms --noatime --latency 0 --poll-min 8 --filename "$file"
fi
echo "valgrind --tool=callgrind $bench $* --output-format json" >&2
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bench" "$@" --output-format json \
    >"$work/bench.json" 2>"$work/valgrind.log" || {
    echo "instructions_per_io.sh: the run failed:" >&2
    tail -n 5 "$work/valgrind.log" >&2
    exit 1
}
callgrind_annotate --auto=no --threshold=100 "$work/cg.out" >"$work/annotate.txt" 2>/dev/null
python3 - "$work/bench.json" "$work/annotate.txt" "$top" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
bench = json.loads(text[text.index('{'):])
ios = bench.get('ios')
if not ios:
    sys.exit("instructions_per_io.sh: the bench reported no IOs")
total, rows = None, []
for line in open(sys.argv[2]):
    m = re.match(r'\s*([\d,]+) \([\s\d.]+%\)\s+(\S.*)$', line)
    if not m:
        continue
    ir, name = int(m.group(1).replace(',', '')), m.group(2)
    if name.startswith('PROGRAM TOTALS'):
        total = ir
    elif total is not None:
        rows.append((ir, name))
memcpy = sum(ir for ir, name in rows if re.search(r'__mem(cpy|move)', name))
print(f"ios {ios}  instructions per IO {total / ios:.0f}  (memcpy/memmove {memcpy / ios:.0f})")
for ir, name in rows[:int(sys.argv[3])]:
    name = re.sub(r'\s*\[[^\]]*\]$', '', name)
    print(f"  {ir / ios:7.1f}  {name.split(':', 1)[-1]}")
PY
