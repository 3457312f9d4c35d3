#!/usr/bin/env bash
# Smoke test of examples_c/compare_fio.sh for the backend in IOENG_TEST_BACKEND: two short
# rounds of jobs 1 (tmpfs QD32), 3 (ext4 QD1) and 5 (HIGH/NORMAL mix) must print a table
# with non-zero IOPS for every row and, when fio is installed, a numeric ratio against fio.
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
out=$(bash "$here/../examples_c/compare_fio.sh" --no-build --backends "$backend" --jobs 1,3,5 \
        --runtime 0.3 --size 4m --repeat 2 "${dir_args[@]}" 2>&1) || { echo "$out"; echo "FAIL: compare_fio.sh exited $?"; exit 1; }
echo "$out" | sed -n '/^libioeng /,$p'
python3 - "$backend" "$have_fio" "$out" <<'PY'
import re, sys
backend, have_fio, text = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
fio_name = {"uring": "fio-io_uring", "aio": "fio-libaio"}[backend]
rows, job = {}, None
for line in text.splitlines():
    cells = [c.strip() for c in line.split("|")]
    if len(cells) != 7 or cells[0] == "job":
        continue
    job = cells[0] or job
    rows[(job.split()[0], cells[1])] = cells
assert "medians of 2 rounds" in text, "no repeat note in the table header"
expected = {("1", f"ioeng-{backend}"), ("3", f"ioeng-{backend}"),
            ("5", f"ioeng-{backend} HIGH"), ("5", f"ioeng-{backend} NORMAL")}
if have_fio:
    expected |= {("1", fio_name), ("3", fio_name)}
missing = expected - rows.keys()
assert not missing, f"rows missing from the table: {sorted(missing)}"
for key in expected:
    cells = rows[key]
    assert "failed" not in cells[5], f"{key}: {cells[5]}"
    assert float(cells[2]) > 0, f"{key}: IOPS {cells[2]}"
    assert float(cells[3]) > 0, f"{key}: p50 {cells[3]}"
ratio = re.compile(r"^(p50 |p99 H/N )?\d+\.\d\d \(\d+\.\d\d-\d+\.\d\d\)$")
checks = [("5", f"ioeng-{backend} HIGH")]
if have_fio:
    checks += [("1", f"ioeng-{backend}"), ("3", f"ioeng-{backend}")]
for key in checks:
    assert ratio.match(rows[key][5]), f"{key}: ratio column '{rows[key][5]}'"
print(f"test_compare [{backend}]: OK: {len(expected)} rows, ratios {[rows[k][5] for k in checks]}")
PY
