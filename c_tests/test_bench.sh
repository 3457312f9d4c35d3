#!/usr/bin/env bash
# Smoke test of examples_c/ioeng_bench on the backend in IOENG_TEST_BACKEND and the mode in
# IOENG_TEST_MODE (threads|polled): a short run with JSON output must parse and report
# non-zero IOPS and a p50 latency.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench="$here/../examples_c/ioeng_bench"
backend="${IOENG_TEST_BACKEND:-aio}"
mode="${IOENG_TEST_MODE:-threads}"
. "$here/uring_guard.sh"
for rw in randread randrw; do
    out=$("$bench" --backend "$backend" --mode "$mode" --rw "$rw" --bs 4k --iodepth 16 --size 32m \
        --runtime 0.5 --direct 1 --prio-mix 0.1 --output-format json)
    python3 - "$backend" "$rw" "$out" "$mode" <<'PY'
import json, sys
backend, rw, text, mode = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
doc = json.loads(text)
assert doc["backend"] == backend, doc["backend"]
assert doc["mode"] == mode, doc["mode"]
assert doc["iops"] > 0 and doc["ios"] > 0, doc
lat = doc["lat_us"]
assert lat, "no latency classes"
for name, cls in lat.items():
    assert cls["count"] > 0 and 0 < cls["p50"] <= cls["max"], (name, cls)
print(f"{backend} {rw}: {doc['iops']:.0f} IOPS, classes {sorted(lat)}")
PY
done
echo "test_bench [$backend $mode]: OK: ioeng_bench JSON parses, IOPS > 0, latency classes sane (randread, randrw)"
