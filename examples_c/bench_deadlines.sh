#!/usr/bin/env bash
# Deadlines that never fire must cost (almost) nothing: runs bench_deadlines with and
# without deadlines, interleaved, ROUNDS times per backend, and prints the medians of
# completions per second and IOs per CPU-ms with the with/without ratio.
#
#   bash examples_c/bench_deadlines.sh [--rounds 5] [--seconds 2] [--no-build]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=5 seconds=2 build=1
while (($#)); do
    case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--no-build]" >&2; exit 2 ;;
    esac
done
((build)) && make -s -C "$here" bench_deadlines >/dev/null
bin=$here/bench_deadlines

median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

printf '%-6s %14s %14s %7s %16s %16s %7s\n' backend "IOPS none" "IOPS deadlines" ratio \
    "IO/CPU-ms none" "IO/CPU-ms dl" ratio
for backend in uring aio; do
    off=() on=()
    for ((r = 0; r < rounds; r++)); do
        off+=("$("$bin" --backend "$backend" --seconds "$seconds")")
        on+=("$("$bin" --backend "$backend" --seconds "$seconds" --deadlines)")
    done
    iops_off=$(printf '%s\n' "${off[@]}" | field completions_per_s | median)
    iops_on=$(printf '%s\n' "${on[@]}" | field completions_per_s | median)
    cpu_off=$(printf '%s\n' "${off[@]}" | field ios_per_cpu_ms | median)
    cpu_on=$(printf '%s\n' "${on[@]}" | field ios_per_cpu_ms | median)
    awk -v b="$backend" -v a="$iops_off" -v d="$iops_on" -v ca="$cpu_off" -v cd="$cpu_on" \
        'BEGIN { printf "%-6s %14.0f %14.0f %7.3f %16.1f %16.1f %7.3f\n", b, a, d, d / a, ca, cd, cd / ca }'
done
