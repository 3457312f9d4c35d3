#!/usr/bin/env bash
# examples_c/ioeng_nbd under real NBD clients (qemu-io, qemu-img) and nbd_client.py, on
# the backend in IOENG_TEST_BACKEND, with exports on ext4 ($IOENG_TEST_DIR, /var/tmp or
# /tmp) and tmpfs (/dev/shm). Servers listen on 127.0.0.1 only, on kernel-chosen ports.
#  1. protocol: handshake options, malformed/out-of-range/oversized/unknown requests get
#     error replies and change nothing, truncated messages close that connection only,
#     256 pipelined requests answered by cookie, FUA accepted on every command
#     (nbd_client.py protocol)
#  2. qemu-io writes patterns (aligned, unaligned, FUA, zeroes) and reads them back with
#     -P, over a second connection too
#  3. qemu-img convert local -> export and export -> local, qemu-img compare + cmp
#  4. clients killed mid-stream (qemu-io -9, a reset with 200 reads in flight): the
#     server keeps serving a connection opened before and new ones
#  5. --read-only refuses writes (EPERM)
#  6. SIGTERM with 64 reads in flight: every one answered, exit 0; the file holds the data;
#     SIGTERM while clients negotiate: each option but ABORT gets NBD_REP_ERR_SHUTDOWN
#  7. --backend auto: AIO for a tmpfs export (the library's choice when AIO is refused),
#     io_uring (where the kernel has it) on ext4
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/nbd_lib.sh"
nbd_setup ioeng_nbd_test
nbd_require qemu-io qemu-img python3
client="$here/nbd_client.py"
T="timeout -k 5 60"

qio() { # qemu-io on an export; fails on any failed command or pattern mismatch
    local out
    out=$($T qemu-io -f raw "nbd://127.0.0.1:$1" "${@:2}" 2>&1) || { echo "$out"; nbd_fail "qemu-io $*"; }
    if grep -qi 'fail\|error' <<<"$out"; then echo "$out"; nbd_fail "qemu-io $*"; fi
}

# --- server A: ext4, 64 MiB --------------------------------------------------------
img="$work/disk.img"
truncate -s 64M "$img"
nbd_start A "$img"
portA=$NBD_PORT pidA=$NBD_PID

$T python3 "$client" protocol "$portA" "$img"

qio "$portA" -c 'write -P 0x5a 4M 1M' -c 'write -P 0xa5 5M 4096' -c 'write -P 0x33 6291457 12345' \
    -c 'write -f -P 0x77 7M 64k' -c 'write -z 8M 2M' -c 'flush' \
    -c 'read -P 0x5a 4M 1M' -c 'read -P 0xa5 5M 4096' -c 'read -P 0x33 6291457 12345' \
    -c 'read -P 0x77 7M 64k' -c 'read -P 0 8M 2M'
# A second connection sees what the first wrote.
qio "$portA" -c 'read -P 0x5a 4M 1M' -c 'read -P 0x33 6291457 12345' -c 'read -P 0x77 7M 64k'
echo "qemu-io: patterns written and verified (aligned, unaligned, FUA, zeroes), two connections"

# Clients killed mid-stream, while another connection (opened before) stays in use.
holder_py='
import struct, sys, time, importlib.util
spec = importlib.util.spec_from_file_location("nc", sys.argv[1]); nc = importlib.util.module_from_spec(spec); spec.loader.exec_module(nc)
c = nc.Conn(int(sys.argv[2])); c.connect_go()
data = nc.pattern(42, 65536)
nc.check(c.call(nc.CMD_WRITE, 32 << 20, 65536, payload=data)[0] == 0, "holder write")
open(sys.argv[3], "w").write("ready\n")
deadline = time.time() + 30
while time.time() < deadline:   # wait (bounded) until the kills are done
    try:
        if open(sys.argv[3]).read().strip() == "go": break
    except OSError: pass
    time.sleep(0.05)
for i in range(50):
    nc.check(c.call(nc.CMD_READ, 32 << 20, 65536)[1] == data, "holder read after kills")
c.disc()
print("holder connection: served before and after the killed clients")
'
$T python3 -c "$holder_py" "$client" "$portA" "$work/holder" &
holder=$!
for ((i = 0; i < 200; i++)); do grep -q ready "$work/holder" 2>/dev/null && break; sleep 0.05; done
grep -q ready "$work/holder" || nbd_fail "holder connection not ready"
cmds=()
for ((i = 0; i < 1000; i++)); do cmds+=(-c "read 0 4M" -c "write -P 0x11 16M 1M"); done
qemu-io -f raw "nbd://127.0.0.1:$portA" "${cmds[@]}" >/dev/null 2>&1 &
victim=$!
sleep 0.5
kill -KILL "$victim" 2>/dev/null || nbd_fail "the qemu-io to kill had already finished"
wait "$victim" 2>/dev/null || true
$T python3 "$client" abandon "$portA"
$T python3 "$client" flood "$portA" "$pidA"
echo go >"$work/holder"
wait "$holder" || nbd_fail "holder connection failed after the killed clients"
$T python3 "$client" serve-check "$portA"
qio "$portA" -c 'read -P 0x5a 4M 1M' -c 'read -P 0x77 7M 64k'
echo "killed clients (qemu-io -9 mid-stream, reset with 200 reads in flight): server keeps serving"

# SIGTERM with reads in flight: every reply arrives, then a clean exit.
$T python3 "$client" shutdown "$portA" "$pidA" "$work/A.err"
nbd_wait_exit A "$pidA"
nbd_check_fua A 3
[ "$(nbd_stat A malformed_closes)" -ge 4 ] || nbd_fail "malformed closes not counted"
# The data is in the file itself.
out=$($T qemu-io -f raw "$img" -c 'read -P 0x5a 4M 1M' -c 'read -P 0x33 6291457 12345' \
      -c 'read -P 0x77 7M 64k' -c 'read -P 0 8M 2M' 2>&1) || { echo "$out"; nbd_fail "file content"; }
! grep -qi fail <<<"$out" || { echo "$out"; nbd_fail "file content"; }
echo "shutdown: in-flight replies sent, exit 0; the file holds what the clients wrote"

# SIGTERM while clients negotiate: options answered with NBD_REP_ERR_SHUTDOWN, not a
# hang-up; the server exits as soon as they are gone (well before the handshake timeout).
nbd_start HS --handshake-timeout 20 "$img"
t0=$SECONDS
$T python3 "$client" hs_shutdown "$NBD_PORT" "$NBD_PID" "$work/HS.err"
nbd_wait_exit HS "$NBD_PID"
((SECONDS - t0 < 15)) || nbd_fail "HS: exit took $((SECONDS - t0)) s after the negotiating clients left"
echo "shutdown while negotiating: NBD_REP_ERR_SHUTDOWN for each option, ABORT acknowledged, exit once they left"

# --- server B: tmpfs, qemu-img convert both ways -------------------------------------
src="$work/src.raw"
python3 - "$src" <<'PY'
import random, sys
r = random.Random(5)
with open(sys.argv[1], "wb") as f:
    for i in range(40):  # 40 x 1 MiB + 4608: data, zero runs, a tail not 4096-aligned
        f.write(bytes(1 << 20) if i % 7 == 3 else r.randbytes(1 << 20))
    f.write(r.randbytes(4608))  # qemu-img convert rounds sizes up to 512
PY
size=$(stat -c %s "$src")
truncate -s "$size" "$shm/export.img"
head -c "$size" /dev/urandom >"$shm/export.img" # garbage that convert must overwrite
nbd_start B "$shm/export.img"
portB=$NBD_PORT pidB=$NBD_PID
$T qemu-img convert -n -f raw -O raw "$src" "nbd://127.0.0.1:$portB"
$T qemu-img compare -f raw -F raw "$src" "nbd://127.0.0.1:$portB"
$T qemu-img convert -f raw -O raw "nbd://127.0.0.1:$portB" "$work/back.raw"
$T qemu-img compare -f raw -F raw "$src" "$work/back.raw"
cmp "$src" "$work/back.raw" || nbd_fail "export -> local copy differs"
nbd_stop B "$pidB"
cmp "$src" "$shm/export.img" || nbd_fail "exported file differs from the source"
echo "qemu-img: convert to and from the export, compare and cmp equal ($size bytes)"

# --- server C: read-only --------------------------------------------------------------
nbd_start C --read-only "$shm/export.img"
$T python3 "$client" readonly "$NBD_PORT"
if $T qemu-io -f raw "nbd://127.0.0.1:$NBD_PORT" -c 'write 0 4k' >/dev/null 2>&1; then
    nbd_fail "qemu-io wrote to a read-only export"
fi
nbd_stop C "$NBD_PID"
cmp "$src" "$shm/export.img" || nbd_fail "read-only export changed"
echo "read-only: writes refused, file unchanged"

# --- servers D, E and F: --backend auto (the default) ----------------------------------
# AIO for a tmpfs export (io_uring would hand every request to an io-wq worker), the
# library's choice elsewhere: io_uring where this kernel has it.
nbd_start D --backend auto "$shm/export.img"
grep -q 'backend aio,' "$work/D.err" || nbd_fail "--backend auto on tmpfs: $(grep -o 'backend [a-z]*' "$work/D.err")"
qio "$NBD_PORT" -c 'write -P 0x6c 1M 64k' -c 'write -P 0x6d 3000 5000' -c 'flush' \
    -c 'read -P 0x6c 1M 64k' -c 'read -P 0x6d 3000 5000'
nbd_stop D "$NBD_PID"
uring_why=$(uring_unavailable_reason) # uring_guard.sh, sourced by nbd_setup
# $work is ext4 unless IOENG_TEST_DIR points elsewhere: on tmpfs, tmpfs's answer is right.
work_fs=$(stat -f -c %T "$work")
want=uring
[ -z "$uring_why" ] && [ "$work_fs" != tmpfs ] || want=aio
nbd_start E --backend auto "$img"
grep -q "backend $want," "$work/E.err" || nbd_fail "--backend auto on $work_fs: $(grep -o 'backend [a-z]*' "$work/E.err"), expected $want ${uring_why:+($uring_why)}"
qio "$NBD_PORT" -c 'write -P 0x6e 2M 64k' -c 'read -P 0x6e 2M 64k'
nbd_stop E "$NBD_PID"
# AIO refused (an LD_PRELOAD wrapper answers -EAGAIN to an AIO ioeng_open, as io_setup
# does when fs.aio-max-nr is used up): the default serves the tmpfs export anyway, with
# the library's choice.
if [ -z "$uring_why" ]; then
    nbd_start_wrapped F "LD_PRELOAD=$here/nbd_refuse_aio.so" --backend auto "$shm/export.img"
    grep -q 'Linux AIO refused' "$work/F.err" && grep -q 'backend uring,' "$work/F.err" ||
        nbd_fail "--backend auto with AIO refused: $(grep -o 'backend [a-z]*' "$work/F.err")"
    qio "$NBD_PORT" -c 'read -P 0x6c 1M 64k' -c 'write -P 0x6f 5M 4k' -c 'read -P 0x6f 5M 4k'
    nbd_stop F "$NBD_PID"
else
    echo "NOTE: AIO-refused fallback not checked: the library's choice would be AIO too ($uring_why)"
fi
echo "--backend auto: aio on tmpfs (io_uring when AIO is refused), $want on $work_fs${uring_why:+ (io_uring unavailable: $uring_why)}; data read back"

# --- server Z: the ASan/UBSan build under the malformed input, resets and shutdown ----
# (it aborts on a memory error, and LeakSanitizer fails its exit status on a leak).
asan_bin="$here/../examples_c/ioeng_nbd_asan"
[ -x "$asan_bin" ] || nbd_fail "$asan_bin not built (make -C examples_c ioeng_nbd_asan)"
nbd_bin=$asan_bin
truncate -s 64M "$work/asan.img"
nbd_start Z "$work/asan.img"
$T python3 "$client" protocol "$NBD_PORT" "$work/asan.img"
$T python3 "$client" abandon "$NBD_PORT"
$T python3 "$client" serve-check "$NBD_PORT"
$T python3 "$client" shutdown "$NBD_PORT" "$NBD_PID" "$work/Z.err"
nbd_wait_exit Z "$NBD_PID"
echo "ASan/UBSan server: malformed input, reset, shutdown: no error, no leak"

echo "test_nbd [$backend]: OK: protocol + malformed input (also under ASan), qemu-io patterns, qemu-img convert/compare, killed clients, read-only, --backend auto, graceful shutdown (also while negotiating)"
