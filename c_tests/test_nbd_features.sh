#!/usr/bin/env bash
# examples_c/ioeng_nbd's TRIM, WRITE_ZEROES that punches holes, FAST_ZERO, CACHE, Unix
# socket and IPv6 (issue 24 item 6), checked with libnbd's tools (nbdinfo, nbdsh), qemu-io
# and c_tests/nbd_client.py, on the backend in IOENG_TEST_BACKEND:
#  1. byte for byte, on ext4 with O_DIRECT, ext4 --no-direct and tmpfs: batches of
#     concurrent requests, all non-overlapping but sharing pages and sectors: writes of
#     every alignment, WRITE_ZEROES (NO_HOLE or not, FUA or not), unaligned TRIMs (the
#     whole blocks inside must read back zero, the bytes around them untouched) and
#     FAST_ZERO (ENOTSUP must change nothing), read back and compared with the model
#  2. nbdinfo --can trim / zero / fast-zero / cache, and per export with nbdsh: TRIM and
#     WRITE_ZEROES leave holes in the file (SEEK_HOLE, st_blocks), WRITE_ZEROES with
#     NO_HOLE keeps the blocks allocated (ext4: ZERO_RANGE; tmpfs: zeros written),
#     FAST_ZERO fails with ENOTSUP exactly where zeroing would not be fast (NO_HOLE on
#     tmpfs), CACHE succeeds; a read-only export advertises CACHE only
#  3. a Unix socket (--socket): nbdinfo and qemu-io with nbd+unix://, the protocol run
#  4. IPv6: --bind :: takes [::1] and 127.0.0.1; --bind ::1 only IPv6 (skipped, saying
#     so, where the host has no IPv6)
#  5. structured replies and BLOCK_STATUS base:allocation, on ext4 direct, buffered and
#     tmpfs: `nbdinfo --map` agrees with the file's SEEK_DATA/SEEK_HOLE map and with the
#     holes the test made (TRIM, WRITE_ZEROES with unmap), `qemu-img map` over NBD with `qemu-img map` of the file;
#     nbdsh: REQ_ONE gives one extent, DF reads, a READ error as an error chunk
#  6. block devices (loop devices over an ext4 and a tmpfs file; fails under CI where
#     none can be attached), O_DIRECT and --no-direct: WRITE_ZEROES of every alignment
#     reads back zero; FAST_ZERO with NO_HOLE done where the device zeroes by command
#     (sysfs write_zeroes_max_bytes > 0) and refused with ENOTSUP, changing nothing,
#     where the kernel would write zero pages; --backend auto leaves a block device to
#     the library's choice (not the tmpfs rule, though its node is on devtmpfs)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/nbd_lib.sh"
nbd_setup ioeng_nbd_features
nbd_require python3 nbdinfo nbdsh qemu-io
client="$here/nbd_client.py"
T="timeout -k 5 120"

# nbdsh runs `python3 -m nbd`: the python3 first on PATH must have libnbd's module
# (python3-libnbd, with libnbd-bin), which a pyenv python3 has not.
nbdpy=
for py in python3 /usr/bin/python3; do
    if "$py" -c 'import nbd' 2>/dev/null; then nbdpy=$(command -v "$py"); break; fi
done
[ -n "$nbdpy" ] || nbd_fail "no python3 with libnbd's module (apt-get install python3-libnbd)"
nbdsh() { PATH="$(dirname "$nbdpy"):$PATH" command nbdsh "$@"; }

# --- 1. concurrent zeroing and writes, byte for byte ---------------------------------
zeromix() { # NAME FILE ARGS...
    local name=$1 img=$2 hole
    shift 2
    truncate -s 32M "$img"
    hole=$(stat -c %o "$img")
    nbd_start "$name" "$@" "$img"
    $T python3 "$client" zeromix "$NBD_PORT" 60 "$RANDOM" "$hole" || nbd_fail "zeroing mix on $name"
    nbd_stop "$name" "$NBD_PID"
    [ "$(nbd_stat "$name" error_replies)" = "$(nbd_stat "$name" fast_zero_refused)" ] ||
        nbd_fail "$name: error replies other than FAST_ZERO refusals"
    [ "$(nbd_stat "$name" trim)" -gt 50 ] && [ "$(nbd_stat "$name" punches)" -gt 50 ] ||
        nbd_fail "$name: trim=$(nbd_stat "$name" trim) punches=$(nbd_stat "$name" punches)"
}
zeromix Z1 "$work/z.img"
# The collision the one-IO-path rule prevents (a fallocate zeroing partial blocks through
# the page cache beside direct writes) would show in the kernel log, when readable.
if dmesg >/dev/null 2>&1; then
    ! dmesg | grep -q -F "File: $work/z.img " || nbd_fail "kernel logged a direct/buffered IO collision on $work/z.img"
else
    echo "NOTE: dmesg not readable here; only the data was checked"
fi
grep -q 'O_DIRECT on' "$work/Z1.err" && direct=1 || direct=0
if ((direct)); then
    [ "$(nbd_stat Z1 rmw_writes)" -gt 100 ] || nbd_fail "Z1: rmw_writes=$(nbd_stat Z1 rmw_writes)"
else
    echo "NOTE: ext4 export without O_DIRECT: $(grep -m1 buffered "$work/Z1.err")"
fi
[ "$(nbd_stat Z1 zero_ranges)" -gt 0 ] && [ "$(nbd_stat Z1 fast_zero_refused)" = 0 ] ||
    nbd_fail "Z1 (ext4): zero_ranges=$(nbd_stat Z1 zero_ranges) fast_zero_refused=$(nbd_stat Z1 fast_zero_refused)"
zeromix Z2 "$work/z_nd.img" --no-direct
zeromix Z3 "$shm/z.img"
# tmpfs has no FALLOC_FL_ZERO_RANGE: NO_HOLE zeros are written, and FAST_ZERO with
# NO_HOLE is refused.
[ "$(nbd_stat Z3 fast_zero_refused)" -gt 0 ] && [ "$(nbd_stat Z3 zero_writes)" -gt 0 ] ||
    nbd_fail "Z3 (tmpfs): fast_zero_refused=$(nbd_stat Z3 fast_zero_refused) zero_writes=$(nbd_stat Z3 zero_writes)"
# The same under ASan/UBSan.
asan_bin="$here/../examples_c/ioeng_nbd_asan"
[ -x "$asan_bin" ] || nbd_fail "$asan_bin not built (make -C examples_c ioeng_nbd_asan)"
plain_bin=$nbd_bin
nbd_bin=$asan_bin
zeromix Z4 "$work/z_asan.img"
nbd_bin=$plain_bin
echo "zeroing mix: every acknowledged byte read back (ext4 O_DIRECT, ext4 buffered, tmpfs, ASan)"

# --- 2. the real tools -------------------------------------------------------------------
# allocated FILE OFF LEN: 1 when [OFF, OFF+LEN) holds no hole (SEEK_HOLE), else 0.
allocated() {
    python3 - "$@" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
off, n = int(sys.argv[2]), int(sys.argv[3])
print(1 if os.lseek(fd, off, os.SEEK_HOLE) >= off + n else 0)
PY
}
blocks() { stat -c %b "$1"; }

features() { # NAME FILE fast|slow ARGS...: fast: FAST_ZERO with NO_HOLE is fast there
    local name=$1 img=$2 mode=$3 uri t b0 b1 b2
    shift 3
    rm -f "$img"
    truncate -s 16M "$img"
    nbd_start "$name" "$@" "$img"
    uri="nbd://127.0.0.1:$NBD_PORT"
    for t in trim zero fast-zero cache; do
        nbdinfo --can "$t" "$uri" || nbd_fail "$name: nbdinfo --can $t says no"
    done
    # Fill 8 MiB, then: TRIM 1 MiB at 1 MiB + 100 (unaligned), WRITE_ZEROES 1 MiB at
    # 3 MiB (punch), WRITE_ZEROES with NO_HOLE 1 MiB at 5 MiB.
    nbdsh -u "$uri" -c 'h.pwrite(b"\xa5" * (8 << 20), 0); h.flush()'
    b0=$(blocks "$img")
    nbdsh -u "$uri" -c '
h.trim(1 << 20, (1 << 20) + 100)
h.zero(1 << 20, 3 << 20)
M = 1 << 20
d = h.pread(3 * M, M)  # 1 MiB .. 4 MiB
assert d[:4096] == b"\xa5" * 4096, "before an unaligned TRIM, or its partial block, changed"
assert bytes(d[4096:M]) == bytes(M - 4096), "the whole blocks of a TRIM are not zero"
assert d[M:2 * M] == b"\xa5" * M, "after a TRIM (and its partial block) changed"
assert bytes(d[2 * M:]) == bytes(M), "WRITE_ZEROES does not read back zero"
h.cache(8 << 20, 0)
h.flush()'
    [ "$(allocated "$img" $((3 << 20)) $((1 << 20)))" = 0 ] || nbd_fail "$name: WRITE_ZEROES left no hole"
    [ "$(allocated "$img" $((1 << 20 + 4096)) $((1 << 20 - 4096)))" = 0 ] || nbd_fail "$name: TRIM left no hole"
    b1=$(blocks "$img")
    ((b1 <= b0 - 2 * 2048 + 16)) || nbd_fail "$name: st_blocks $b0 -> $b1 after punching 2 MiB"
    # NO_HOLE: the blocks stay allocated (ZERO_RANGE, or written zeros).
    nbdsh -u "$uri" -c '
h.zero(1 << 20, 5 << 20, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FUA)
assert bytes(h.pread(1 << 20, 5 << 20)) == bytes(1 << 20)
h.flush()'
    b2=$(blocks "$img")
    ((b2 >= b1 - 16)) || nbd_fail "$name: st_blocks $b1 -> $b2 after a NO_HOLE WRITE_ZEROES"
    # FAST_ZERO with NO_HOLE: ENOTSUP where zeroing would mean writing zeros (tmpfs, no
    # ZERO_RANGE), and then nothing changed; done elsewhere. Without NO_HOLE: a punch.
    ZERO_MODE=$mode nbdsh -u "$uri" -c '
import errno, os
fast = os.environ["ZERO_MODE"] == "fast"
try:
    h.zero(1 << 20, 6 << 20, nbd.CMD_FLAG_NO_HOLE | nbd.CMD_FLAG_FAST_ZERO)
    assert fast, "FAST_ZERO with NO_HOLE succeeded where zeros would have been written"
    assert bytes(h.pread(1 << 20, 6 << 20)) == bytes(1 << 20)
except nbd.Error as e:
    assert not fast and e.errno in (errno.ENOTSUP, "ENOTSUP", "EOPNOTSUPP"), f"FAST_ZERO: {e}"
    assert h.pread(1 << 20, 6 << 20) == b"\xa5" * (1 << 20), "a refused FAST_ZERO changed data"
h.zero(1 << 20, 7 << 20, nbd.CMD_FLAG_FAST_ZERO)
assert bytes(h.pread(1 << 20, 7 << 20)) == bytes(1 << 20)'
    [ "$(allocated "$img" $((7 << 20)) $((1 << 20)))" = 0 ] || nbd_fail "$name: FAST_ZERO left no hole"
    # qemu-io's discard and write -z over the same export.
    qemu-io -f raw -c 'write -P 0x11 0 64k' -c 'discard 4k 56k' -c 'read -P 0x11 0 4k' \
        -c 'write -z 12m 1m' -c 'read -P 0 12m 1m' -c 'read -P 0x11 60k 4k' "$uri" >"$work/$name.qio" ||
        { cat "$work/$name.qio"; nbd_fail "$name: qemu-io discard / write -z"; }
    ! grep -q 'Pattern verification failed' "$work/$name.qio" || nbd_fail "$name: qemu-io pattern mismatch"
    nbd_stop "$name" "$NBD_PID"
    [ "$(nbd_stat "$name" error_replies)" = "$(nbd_stat "$name" fast_zero_refused)" ] ||
        nbd_fail "$name: unexpected error replies"
    echo "$name: nbdinfo, nbdsh, qemu-io: TRIM and WRITE_ZEROES punch holes, NO_HOLE keeps blocks, FAST_ZERO, CACHE"
}
features F1 "$work/f.img" fast
features F2 "$work/f_nd.img" fast --no-direct
features F3 "$shm/f.img" slow
truncate -s 16M "$work/ro.img"
nbd_start RO --read-only "$work/ro.img"
nbdinfo --can cache "nbd://127.0.0.1:$NBD_PORT" || nbd_fail "read-only: no CACHE"
for t in trim zero fast-zero; do
    ! nbdinfo --can "$t" "nbd://127.0.0.1:$NBD_PORT" || nbd_fail "read-only export advertises $t"
done
nbdsh -u "nbd://127.0.0.1:$NBD_PORT" -c 'h.cache(1 << 20, 0)'
nbd_stop RO "$NBD_PID"

# --- 3. Unix socket -------------------------------------------------------------------------
sock="$work/nbd.sock"
truncate -s 16M "$work/u.img"
nbd_start U --socket "$sock" "$work/u.img"
[ "$NBD_LISTEN" = "unix:$sock" ] || nbd_fail "U: listening on '$NBD_LISTEN'"
[ "$(nbdinfo --size "nbd+unix:///?socket=$sock")" = $((16 << 20)) ] || nbd_fail "nbdinfo over the Unix socket"
qemu-io -f raw -c 'write -P 0x42 1000 70000' -c 'read -P 0x42 1000 70000' \
    "nbd+unix:///?socket=$sock" >"$work/U.qio" || { cat "$work/U.qio"; nbd_fail "qemu-io over the Unix socket"; }
! grep -q 'Pattern verification failed' "$work/U.qio" || nbd_fail "qemu-io over the Unix socket: mismatch"
$T python3 "$client" protocol "unix:$sock" "$work/u.img" || nbd_fail "protocol run over the Unix socket"
nbd_stop U "$NBD_PID"
[ ! -e "$sock" ] || nbd_fail "the socket file is left after shutdown"
echo "Unix socket: nbdinfo, qemu-io and the protocol run over nbd+unix://"

# --- 4. IPv6 ---------------------------------------------------------------------------------
if python3 -c 'import socket; socket.socket(socket.AF_INET6).bind(("::1", 0))' 2>/dev/null; then
    truncate -s 16M "$work/v6.img"
    nbd_start V6 --bind :: "$work/v6.img"
    [ "$NBD_LISTEN" = "[::]:$NBD_PORT" ] || nbd_fail "V6: listening on '$NBD_LISTEN'"
    [ "$(nbdinfo --size "nbd://[::1]:$NBD_PORT")" = $((16 << 20)) ] || nbd_fail "nbdinfo over IPv6"
    [ "$(nbdinfo --size "nbd://127.0.0.1:$NBD_PORT")" = $((16 << 20)) ] || nbd_fail "--bind :: takes IPv4 too"
    $T python3 "$client" serve-check "[::1]:$NBD_PORT" || nbd_fail "serve-check over IPv6"
    nbd_stop V6 "$NBD_PID"
    nbd_start V6only --bind ::1 "$work/v6.img"
    $T python3 "$client" protocol "[::1]:$NBD_PORT" "$work/v6.img" || nbd_fail "protocol run over IPv6"
    ! nbdinfo --size "nbd://127.0.0.1:$NBD_PORT" 2>/dev/null || nbd_fail "--bind ::1 took IPv4"
    nbd_stop V6only "$NBD_PID"
    echo "IPv6: --bind :: serves [::1] and 127.0.0.1; --bind ::1 IPv6 only"
else
    echo "SKIP (part 4): cannot bind ::1 here (no IPv6 loopback): IPv6 not tested"
fi
# --- 5. structured replies, BLOCK_STATUS --------------------------------------------------
# seek_map FILE: the file's data/hole extents as nbdinfo --map prints them
# (offset length type), from SEEK_DATA / SEEK_HOLE.
seek_map() {
    python3 - "$1" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
pos = 0
while pos < size:
    try:
        d = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        d = size
    if d > pos:
        print(pos, d - pos, 3)
        pos = d
        continue
    h = os.lseek(fd, pos, os.SEEK_HOLE)
    print(pos, h - pos, 0)
    pos = h
PY
}
blockstatus() { # NAME FILE ARGS...
    local name=$1 img=$2 uri
    shift 2
    rm -f "$img"
    truncate -s 32M "$img"
    nbd_start "$name" "$@" "$img"
    uri="nbd://127.0.0.1:$NBD_PORT"
    nbdinfo "$uri" | grep -q 'using structured packets' || nbd_fail "$name: no structured replies"
    nbdinfo "$uri" | grep -q 'base:allocation' || nbd_fail "$name: base:allocation not listed"
    # Data at 1 MiB (1 MiB), 8 MiB + 4 KiB (64 KiB) and an unaligned 1000 bytes at
    # 20000; then 3 MiB written and 256 KiB of it punched by TRIM, 128 KiB by WRITE_ZEROES.
    qemu-io -f raw -c 'write -P 1 1M 1M' -c 'write -P 2 8196k 64k' -c 'write -P 3 20000 1000'         -c 'write -P 4 16M 3M' -c 'discard 17M 256k' -c 'write -z -u 18M 128k' -c 'flush' "$uri" >/dev/null ||
        nbd_fail "$name: qemu-io writes"
    nbdinfo --map "$uri" | awk '{print $1, $2, $3}' >"$work/$name.map"
    seek_map "$img" >"$work/$name.seek"
    diff "$work/$name.seek" "$work/$name.map" || nbd_fail "$name: nbdinfo --map differs from SEEK_DATA/SEEK_HOLE"
    grep -q "^$((17 << 20)) $((256 << 10)) 3$" "$work/$name.map" || nbd_fail "$name: the TRIMmed range is no hole in the map"
    grep -q "^$((18 << 20)) $((128 << 10)) 3$" "$work/$name.map" || nbd_fail "$name: the zeroed range is no hole in the map"
    grep -q "^$((1 << 20)) $((1 << 20)) 0$" "$work/$name.map" || nbd_fail "$name: the data at 1 MiB is not data in the map"
    qemu-img map --output=json -f raw "$uri" | sed 's/"offset": [0-9]*//' >"$work/$name.qmap"
    qemu-img map --output=json -f raw "$img" | sed 's/"offset": [0-9]*//' >"$work/$name.qfile"
    diff "$work/$name.qfile" "$work/$name.qmap" || nbd_fail "$name: qemu-img map over NBD differs from the file's"
    nbdsh --base-allocation -u "$uri" -c '
import errno
got = []
def cb(meta, off, ents, err):
    assert meta == "base:allocation", meta
    got.append(list(ents))
    return 0
h.block_status(4 << 20, 1 << 20, cb, nbd.CMD_FLAG_REQ_ONE)
assert len(got) == 1 and len(got[0]) == 2 and got[0][0] <= (4 << 20) and got[0][1] == 0, got
got.clear()
h.block_status(1 << 20, 1 << 20, cb)
assert got == [[1 << 20, 0]], got
got.clear()
h.block_status(100, 17 << 20, cb)  # inside a hole
assert got[0][0] >= 100 and got[0][1] == 3, got
assert h.can_df()
chunks = []
def chunk(sub, off, status, err):
    chunks.append((bytes(sub), off, status))
    return 0
assert h.pread_structured(1000, 20000, chunk, nbd.CMD_FLAG_DF) == b"\x03" * 1000
assert chunks == [(b"\x03" * 1000, 20000, nbd.READ_DATA)], chunks
try:
    h.pread(4096, 32 << 20)
    raise AssertionError("read past the end succeeded")
except nbd.Error as e:
    assert e.errno in (errno.EINVAL, "EINVAL"), e
try:
    h.block_status(4096, 32 << 20, cb)
    raise AssertionError("block status past the end succeeded")
except nbd.Error as e:
    assert e.errno in (errno.EINVAL, "EINVAL"), e
assert h.pread(3 << 20, 16 << 20) == b"\x04" * (1 << 20) + bytes(256 << 10) + b"\x04" * ((1 << 20) - (256 << 10)) + bytes(128 << 10) + b"\x04" * ((1 << 20) - (128 << 10))
'
    nbd_stop "$name" "$NBD_PID"
    [ "$(nbd_stat "$name" block_status)" -gt 5 ] || nbd_fail "$name: block_status=$(nbd_stat "$name" block_status)"
    echo "$name: structured replies; nbdinfo --map = SEEK_DATA/SEEK_HOLE map, qemu-img map over NBD = of the file"
}
blockstatus B1 "$work/b.img"
blockstatus B2 "$work/b_nd.img" --no-direct
blockstatus B3 "$shm/b.img"

# --- 6. block devices: loop devices over an ext4 and a tmpfs file ------------------------
# wz_max DEV: the device's write_zeroes_max_bytes (0: the kernel zeroes by writing pages).
wz_max() { cat "/sys/class/block/$(basename "$1")/queue/write_zeroes_max_bytes"; }
blkdev() { # NAME DEV ARGS...
    local name=$1 dev=$2 mode=slow
    shift 2
    [ "$(wz_max "$dev")" -gt 0 ] && mode=fast
    nbd_start "$name" "$@" "$dev"
    $T python3 "$client" blkdev "$NBD_PORT" "$mode" || nbd_fail "block device export $name"
    nbd_stop "$name" "$NBD_PID"
    echo "$name: block device ($dev, FAST_ZERO with NO_HOLE $mode there)"
}
truncate -s 16M "$work/loop.img" "$shm/loop.img"
if nbd_loop "$work/loop.img"; then
    dev_ext4=$NBD_LOOP
    nbd_loop "$shm/loop.img" || nbd_fail "a second loop device"
    dev_tmpfs=$NBD_LOOP
    # A loop device over tmpfs advertises write zeroes, fails the first one (tmpfs has no
    # ZERO_RANGE), then clears the limit; the kernel wrote zero pages instead. One
    # zeroing before the server starts teaches it that.
    fallocate -z -o 0 -l 4096 "$dev_tmpfs"
    [ "$(wz_max "$dev_tmpfs")" = 0 ] ||
        echo "NOTE: $dev_tmpfs (over tmpfs) still advertises write zeroes: FAST_ZERO is allowed there"
    blkdev K1 "$dev_ext4"
    blkdev K2 "$dev_ext4" --no-direct
    blkdev K3 "$dev_tmpfs"
    blkdev K4 "$dev_tmpfs" --no-direct
    # --backend auto on a block device: the library's choice. (Its node is on devtmpfs,
    # which fstatfs calls tmpfs: the tmpfs rule is for regular files only.)
    why=$(uring_unavailable_reason)
    nbd_start K5 --backend auto "$dev_tmpfs"
    grep -q "backend ${why:+aio}${why:-uring}," "$work/K5.err" ||
        nbd_fail "--backend auto on a block device: $(grep -o 'backend [a-z]*' "$work/K5.err")"
    ! grep -q 'tmpfs export' "$work/K5.err" || nbd_fail "K5: a block device taken for a tmpfs export"
    nbd_stop K5 "$NBD_PID"
    echo "K5: --backend auto on a block device: the library's choice ($(grep -o 'backend [a-z]*' "$work/K5.err"))"
fi

echo "test_nbd_features [$backend]: OK: TRIM, WRITE_ZEROES holes, FAST_ZERO, CACHE (byte for byte with concurrent writes; nbdinfo, nbdsh, qemu-io), Unix socket, IPv6, structured replies + BLOCK_STATUS, block devices"
