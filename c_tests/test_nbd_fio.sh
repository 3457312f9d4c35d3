#!/usr/bin/env bash
# examples_c/ioeng_nbd under fio's nbd engine (libnbd), on the backend in
# IOENG_TEST_BACKEND, exports on ext4 and tmpfs, 127.0.0.1 only:
#  1. verified load: 2 jobs (2 connections) of 4 KiB random writes at QD32 with
#     --verify=crc32c, each job's data then read back and checked; a second, read-only
#     fio pass (--verify_only, new connections) checks it again
#  2. a fio killed with SIGKILL in the middle of a QD32 random read/write run; the server
#     keeps serving (the verified data is checked once more), then exits 0 on SIGTERM
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/nbd_lib.sh"
nbd_setup ioeng_nbd_fio
nbd_require fio
fio --enghelp=nbd 2>&1 | grep -q uri || nbd_fail "this fio has no nbd engine (fio --enghelp=nbd)"

# fio with the nbd engine; 2 jobs = 2 connections, each on its own 16 MiB region.
nbd_fio() { # (run in $work: fio may leave state files in its cwd)
    local port=$1 log=$2
    shift 2
    timeout -k 5 90 fio --name=nbd --ioengine=nbd --uri="nbd://127.0.0.1:$port" \
        --bs=4k --iodepth=32 --numjobs=2 --size=16m --offset_increment=16m \
        --verify=crc32c --verify_fatal=1 --verify_state_save=0 --randseed=7 --group_reporting \
        --output-format=json --output="$log" "$@" >"$log.err" 2>&1 ||
        { cat "$log.err"; tail -n 30 "$log"; nbd_fail "fio $*"; }
    python3 - "$log" <<'PY'
import json, sys
job = json.load(open(sys.argv[1]))["jobs"][0]
assert job["error"] == 0, job["error"]
r = job["read"]["io_bytes"]
assert r >= 32 << 20, r
print(f"  fio: error 0, {r >> 20} MiB read and crc32c-verified")
PY
}

cd "$work"
for fs in ext4 tmpfs; do
    if [ $fs = ext4 ]; then img="$work/disk.img"; else img="$shm/disk.img"; fi
    truncate -s 64M "$img"
    nbd_start "$fs" "$img"
    port=$NBD_PORT pid=$NBD_PID
    echo "$fs: randwrite QD32 x 2 connections, crc32c verify"
    nbd_fio "$port" "$work/$fs.1.json" --rw=randwrite --do_verify=1
    echo "$fs: verify again from new connections (read only)"
    nbd_fio "$port" "$work/$fs.2.json" --rw=randwrite --verify_only

    echo "$fs: fio killed mid-stream"
    # Its own region (32..48 MiB) so the verified data stays intact.
    # --thread: both jobs are threads of one process, so one SIGKILL ends them all.
    fio --name=victim --thread --ioengine=nbd --uri="nbd://127.0.0.1:$port" --bs=4k \
        --iodepth=32 --numjobs=2 --size=8m --offset=32m --offset_increment=8m --rw=randrw \
        --time_based --runtime=60 >/dev/null 2>&1 &
    victim=$!
    sleep 1.5
    kill -KILL "$victim" 2>/dev/null || nbd_fail "the fio to kill had already finished"
    wait "$victim" 2>/dev/null || true
    nbd_fio "$port" "$work/$fs.3.json" --rw=randwrite --verify_only
    nbd_stop "$fs" "$pid"
    [ "$(nbd_stat "$fs" conns)" -ge 6 ] || nbd_fail "expected at least 6 connections"
done
# The benchmark script runs end to end (once, on the uring pass; it covers both backends).
if [ "$backend" = uring ]; then
    nbd_require qemu-nbd
    out=$(timeout -k 5 120 bash "$here/../examples_c/compare_nbd.sh" --no-build --runtime 1 \
        --size 32m --fs tmpfs --rw randread 2>&1) || { echo "$out"; nbd_fail "compare_nbd.sh"; }
    echo "$out" | tail -n 7
    grep -Eq 'cross-CPU sleep \+ wake-up round trip \(examples_c/wake_cost 20000\): [0-9.]+ us before the runs, [0-9.]+ us after' <<<"$out" ||
        nbd_fail "compare_nbd.sh: no wake-up round trip line"
    for s in ioeng-uring ioeng-aio qemu-uring qemu-native; do
        awk -v s="$s" '$1 == "tmpfs" && $3 == s && $4 > 0 { ok = 1 } END { exit !ok }' <<<"$out" ||
            nbd_fail "compare_nbd.sh: no IOPS row for $s"
    done
fi
echo "test_nbd_fio [$backend]: OK: fio nbd QD32 x 2 connections crc32c-verified on ext4 and tmpfs; killed fio; clean exit"
