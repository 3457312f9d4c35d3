#!/usr/bin/env bash
# Smoke test of examples_c/compare_fio.sh for the backend in IOENG_TEST_BACKEND: two short
# rounds of jobs 1 (tmpfs QD32), 3 (ext4 QD1) and 5 (HIGH/NORMAL mix) must print a table
# with non-zero IOPS for every row (THREADS and POLLED libioeng rows), job 5's HIGH p99 below
# NORMAL's, a positive IO/CPU-ms for every engine (CPU from wait4 of each child) and, when fio
# is installed, each job's kind of ratio against fio and the IO/CPU-ms ratio.
# IOENG_REQUIRE_FIO=1 (set by .ci/run) fails instead of testing without fio.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
backend="${IOENG_TEST_BACKEND:-aio}"
. "$here/uring_guard.sh"

have_fio=1
if ! command -v fio >/dev/null 2>&1; then
    if [ "${IOENG_REQUIRE_FIO:-0}" = 1 ]; then echo "FAIL: fio required (IOENG_REQUIRE_FIO=1) but not installed"; exit 1; fi
    echo "note: fio not installed; checking the libioeng rows only"
    have_fio=0
fi
dir_args=()
[ -n "${IOENG_TEST_DIR:-}" ] && dir_args=(--dir "$IOENG_TEST_DIR")
# Job 1 needs O_DIRECT on tmpfs (Linux >= 6.6) in /dev/shm; without it, test jobs 3 and 5.
jobs=1,3,5
probe=$(mktemp /dev/shm/ioeng_probe.XXXXXX 2>/dev/null) || probe=""
if [ -z "$probe" ] || ! dd if=/dev/zero of="$probe" bs=4k count=1 oflag=direct status=none 2>/dev/null; then
    echo "note: no O_DIRECT tmpfs in /dev/shm here; leaving out job 1"
    jobs=3,5
fi
[ -n "$probe" ] && rm -f "$probe"
out=$(bash "$here/../examples_c/compare_fio.sh" --no-build --backends "$backend" --jobs "$jobs" \
        --runtime 0.3 --size 4m --repeat 2 "${dir_args[@]}" 2>&1) ||
    { rc=$?; echo "$out"; echo "FAIL: compare_fio.sh exited $rc"; exit 1; }
echo "$out" | sed -n '/^libioeng /,$p'
python3 - "$backend" "$have_fio" "$jobs" "$out" <<'PY'
import re, sys
backend, have_fio, jobs, text = sys.argv[1], sys.argv[2] == "1", sys.argv[3].split(","), sys.argv[4]
fio_name = {"uring": "fio-io_uring", "aio": "fio-libaio"}[backend]
rows, job = {}, None
for line in text.splitlines():
    cells = [c.strip() for c in line.split("|")]
    if len(cells) != 9 or cells[0] == "job":
        continue
    job = cells[0] or job
    rows[(job.split()[0], cells[1])] = cells
assert "medians of 2 rounds" in text, "no repeat note in the table header"
# The machine's wake-up cost, measured on two CPUs (examples_c/wake_cost; "?" on one).
wake = r"[0-9.]+ us" if len(__import__("os").sched_getaffinity(0)) >= 2 else r"(\?|[0-9.]+ us)"
assert re.search(rf"cross-CPU sleep \+ wake-up round trip \(examples_c/wake_cost 20000\): "
                 rf"{wake} before the runs, {wake} after", text), "no wake-up round trip line"
engines = [f"ioeng-{backend}", f"ioeng-{backend}-polled"]
expected = {("5", f"{e} {c}") for e in engines for c in ("HIGH", "NORMAL")}
expected |= {(j, e) for j in jobs if j != "5" for e in engines}
if have_fio:
    expected |= {(j, fio_name) for j in jobs if j != "5"}
missing = expected - rows.keys()
assert not missing, f"rows missing from the table: {sorted(missing)}"
for key in expected:
    cells = rows[key]
    assert "failed" not in cells[5], f"{key}: {cells[5]}"
    assert float(cells[2]) > 0, f"{key}: IOPS {cells[2]}"
    assert float(cells[3]) > 0, f"{key}: p50 {cells[3]}"
    if not key[1].endswith("NORMAL"):
        assert float(cells[7]) > 0, f"{key}: IO/CPU-ms {cells[7]}"
# Each job's ratio kind: IOPS for job 1, p50 latency for job 3, HIGH/NORMAL p99 for job 5;
# each a median with its min-max range over the 2 rounds.
kind = {"1": "", "3": "p50 ", "5": "p99 H/N "}
checks = [("5", f"{e} HIGH") for e in engines]
if have_fio:
    checks += [(j, e) for j in jobs if j != "5" for e in engines]
ranged = r"(\d+\.\d\d) \(\d+\.\d\d-\d+\.\d\d\)$"
for key in checks:
    pattern = "^" + re.escape(kind[key[0]]) + ranged
    m = re.match(pattern, rows[key][5])
    assert m, f"{key}: ratio column '{rows[key][5]}' does not match {pattern}"
    if key[0] == "5":
        assert float(m.group(1)) < 1, f"HIGH p99 not below NORMAL p99: {rows[key][5]}"
    else:
        assert re.match("^" + ranged, rows[key][8]), f"{key}: IO/CPU-ms ratio '{rows[key][8]}'"
print(f"test_compare [{backend}]: OK: {len(expected)} rows, ratios {[rows[k][5] for k in checks]}")
PY

# --cpus: every run confined to one CPU this process may use; a CPU outside that set is
# refused before anything runs.
cpu=$(python3 -c 'import os; print(max(os.sched_getaffinity(0)))')
out=$(bash "$here/../examples_c/compare_fio.sh" --no-build --backends "$backend" --jobs 3 \
        --runtime 0.2 --size 4m --cpus "$cpu" "${dir_args[@]}" 2>&1) ||
    { rc=$?; echo "$out"; echo "FAIL: compare_fio.sh --cpus $cpu exited $rc"; exit 1; }
echo "$out" | grep -q "on CPUs $cpu" || { echo "$out"; echo "FAIL: --cpus not in the run header"; exit 1; }
pinned_rows=$(echo "$out" | grep -cE "^ *(3 [^|]*)?\| *ioeng-$backend(-polled)? *\| *[0-9]" || true)
[ "$pinned_rows" -eq 2 ] || { echo "$out"; echo "FAIL: expected 2 libioeng rows with IOPS under --cpus, got $pinned_rows"; exit 1; }
bad=$(python3 -c 'import os; print(max(os.sched_getaffinity(0)) + 1000)')
if out=$(bash "$here/../examples_c/compare_fio.sh" --no-build --jobs 3 --cpus "$bad" 2>&1); then
    echo "$out"; echo "FAIL: --cpus $bad accepted"; exit 1
fi
echo "$out" | grep -q "CPU $bad is not available" || { echo "$out"; echo "FAIL: no clear error for --cpus $bad"; exit 1; }
echo "test_compare [$backend]: OK: --cpus $cpu runs pinned, --cpus $bad refused"
