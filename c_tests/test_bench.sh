#!/usr/bin/env bash
# Smoke test of examples_c/ioeng_bench on the backend in IOENG_TEST_BACKEND and the mode in
# IOENG_TEST_MODE (threads|polled): a short run with JSON output must parse and report
# non-zero IOPS and a p50 latency; also with --batch-submit and --group-submit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench="$here/../examples_c/ioeng_bench"
backend="${IOENG_TEST_BACKEND:-aio}"
mode="${IOENG_TEST_MODE:-threads}"
. "$here/uring_guard.sh"
for run in "randread" "randrw" "randread --batch-submit 8" "randread --group-submit 8"; do
    read -r rw extra <<<"$run"
    # shellcheck disable=SC2086 # $extra is an option and its value
    out=$("$bench" --backend "$backend" --mode "$mode" --rw "$rw" --bs 4k --iodepth 16 --size 32m \
        --runtime 0.5 --direct 1 --prio-mix 0.1 --output-format json $extra)
    python3 - "$backend" "$rw" "$out" "$mode" "$extra" <<'PY'
import json, sys
backend, rw, text, mode, extra = sys.argv[1:6]
doc = json.loads(text)
assert doc["backend"] == backend, doc["backend"]
assert doc["mode"] == mode, doc["mode"]
want_groups = 8 if extra else 0
assert doc["batch_submit"] == want_groups, doc["batch_submit"]
assert doc["group_singles"] == extra.startswith("--group-submit"), doc["group_singles"]
assert doc["iops"] > 0 and doc["ios"] > 0, doc
lat = doc["lat_us"]
assert lat, "no latency classes"
for name, cls in lat.items():
    assert cls["count"] > 0 and 0 < cls["p50"] <= cls["max"], (name, cls)
print(f"{backend} {rw} {extra}: {doc['iops']:.0f} IOPS, classes {sorted(lat)}")
PY
done
echo "test_bench [$backend $mode]: OK: ioeng_bench JSON parses, IOPS > 0, latency classes sane (randread, randrw, groups of 8 via submit_batch and via submit)"
