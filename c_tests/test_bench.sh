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
# IO classes (--job-class: one job per class; POLLED: the first job's thread drives the
# engine for both): two 4k randread jobs at 300:100 over an engine depth of 4 (below the
# jobs' 32 outstanding, so requests wait in the engine and the weights decide) complete
# IOs 3:1; class latency stats are on.
polled_args=()
[ "$mode" = polled ] && polled_args=(--mode polled --single-poller)
out=$("$bench" --backend "$backend" "${polled_args[@]}" --rw randread --bs 4k --iodepth 32 \
    --engine-depth 4 --size 32m --runtime 0.5 --direct 1 --latency-stats 1 \
    --output-format json --job-class 300 --job-class 100)
python3 - "$out" <<'PY'
import json, sys
doc = json.loads(sys.argv[1])
jobs = doc["job_classes"]
assert [j["class_id"] for j in jobs] == [1, 2], jobs
assert [j["weight"] for j in jobs] == [300, 100], jobs
for j in jobs:
    assert j["ios"] > 0 and j["class_stats"]["reads"] > 0, j
    assert 0 < j["class_stats"]["p50_us"] <= j["class_stats"]["max_us"], j
ratio = jobs[0]["ios"] / jobs[1]["ios"]
assert abs(ratio - 3.0) <= 0.3, f"300:100 completed {jobs[0]['ios']}:{jobs[1]['ios']} = {ratio:.2f}"
print(f"job classes 300:100 -> {ratio:.2f}")
PY
jobs_note="; --job-class 300:100 -> 3:1"
# t/io_uring's job (compare_fio.sh --t-io-uring-job): O_NOATIME, no latency timing, and
# (POLLED) 8 callbacks per ioeng_poll: IOs are counted, lat_us stays empty; --poll-min
# above --iodepth and --latency 0 with --job-class are refused.
poll_min=()
[ "$mode" = polled ] && poll_min=(--poll-min 8)
out=$("$bench" --backend "$backend" --mode "$mode" --rw randread --bs 4k --iodepth 16 --size 32m \
    --runtime 0.5 --direct 1 --noatime --latency 0 --fixedbufs --fixedfiles "${poll_min[@]}" \
    --output-format json)
python3 - "$out" <<'PY'
import json, sys
doc = json.loads(sys.argv[1])
assert doc["noatime"] is True and doc["latency"] == 0, doc
assert doc["fixedbufs"] == 1 and doc["fixedfiles"] == 1, doc
assert doc["iops"] > 0 and doc["ios"] > 0, doc
assert doc["lat_us"] == {}, doc["lat_us"]
print(f"--noatime --latency 0 --fixedbufs --fixedfiles: {doc['iops']:.0f} IOPS")
PY
for bad in "--mode polled --poll-min 17" "--mode threads --poll-min 2" "--latency 0 --job-class 1"; do
    # shellcheck disable=SC2086 # $bad is options and their values
    if msg=$("$bench" --backend "$backend" --iodepth 16 --size 32m --runtime 0.2 $bad 2>&1); then
        echo "FAIL: ioeng_bench $bad was accepted" >&2
        exit 1
    fi
    echo "refused: $bad: $msg"
done
jobs_note="$jobs_note; t/io_uring's job (--noatime --latency 0 --poll-min, registered buffers and file) counts IOs, times none; bad combinations refused"
echo "test_bench [$backend $mode]: OK: ioeng_bench JSON parses, IOPS > 0, latency classes sane (randread, randrw, groups of 8 via submit_batch and via submit)$jobs_note"
