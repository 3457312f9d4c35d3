#!/usr/bin/env bash
# compare_nbd.sh - ioeng_nbd against qemu-nbd under fio's nbd engine, side by side.
#
#   bash examples_c/compare_nbd.sh [--runtime S] [--repeat N] [--size SIZE] [--fs tmpfs,ext4]
#                                  [--rw randread,randwrite] [--servers LIST] [--depth N]
#                                  [--nbd-args ARGS] [--quick] [--dir DIR] [--shm-dir DIR]
#                                  [--no-build] [--json]
#
# Every run: fio --ioengine=nbd, 4 KiB, QD32, one job (one connection), time based, against
# one server exporting the same file (filled with random data) over 127.0.0.1:
#   ioeng-uring   examples_c/ioeng_nbd --backend uring   (O_DIRECT)
#   ioeng-aio     examples_c/ioeng_nbd --backend aio     (O_DIRECT)
#   qemu-uring    qemu-nbd -f raw --cache=none --aio=io_uring
#   qemu-native   qemu-nbd -f raw --cache=none --aio=native   (Linux AIO)
# on a tmpfs file (/dev/shm) and an ext4 file (/var/tmp or /tmp). Server CPU is the whole
# server process (all threads): utime+stime from /proc/PID/stat before and after the run.
# With --repeat N each (fs, rw) pair runs N rounds; each round runs every server once,
# in an order that rotates by one every round and is reversed on odd rounds (so drift
# favours nobody), and the table shows medians. Ratios compare ioeng_nbd with qemu-nbd on
# the same kernel interface (uring vs io_uring, aio vs native): IOPS ratio (want >= 1) and
# server CPU per IO ratio (want <= 1), each the median of the per-round ratios.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

RUNTIME=10 REPEAT=1 SIZE=1g FS=tmpfs,ext4 RW=randread,randwrite DEPTH=128
SERVERS=ioeng-uring,ioeng-aio,qemu-uring,qemu-native
EXT4_DIR="" SHM_DIR=/dev/shm BUILD=1 JSON=0 QUICK=0 SIZE_SET=0 RT_SET=0 NBD_ARGS=

usage() {
    sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --runtime S      seconds per fio run (default 10)
  --repeat N       rounds, medians in the table (default 1)
  --size SIZE      export file size (default 1g)
  --fs LIST        tmpfs,ext4 (default both)
  --rw LIST        randread,randwrite (default both)
  --servers LIST   ioeng-uring,ioeng-aio,qemu-uring,qemu-native (default all)
  --depth N        ioeng_nbd --depth (engine in-flight budget, default 128)
  --nbd-args ARGS  more ioeng_nbd options, e.g. "--idle-poll-us default"
  --quick          --runtime 2 --size 256m (explicit options win)
  --dir DIR        directory for the ext4 file; --shm-dir DIR for the tmpfs one
  --no-build       do not run make first
  --json           also print every run as one JSON line
EOF
}
die() { echo "compare_nbd.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runtime) RUNTIME=${2:?}; RT_SET=1; shift 2 ;;
        --repeat) REPEAT=${2:?}; shift 2 ;;
        --size) SIZE=${2:?}; SIZE_SET=1; shift 2 ;;
        --fs) FS=${2:?}; shift 2 ;;
        --rw) RW=${2:?}; shift 2 ;;
        --servers) SERVERS=${2:?}; shift 2 ;;
        --depth) DEPTH=${2:?}; shift 2 ;;
        --nbd-args) NBD_ARGS=${2?}; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --dir) EXT4_DIR=${2:?}; shift 2 ;;
        --shm-dir) SHM_DIR=${2:?}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --json) JSON=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
if [[ $QUICK = 1 ]]; then
    [[ $RT_SET = 1 ]] || RUNTIME=2
    [[ $SIZE_SET = 1 ]] || SIZE=256m
fi
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "--repeat: a positive integer"
command -v fio >/dev/null || die "fio is missing (apt-get install fio)"
fio --enghelp=nbd 2>&1 | grep -q uri || die "this fio has no nbd engine"
if [[ ,$SERVERS, == *,qemu-* ]]; then
    command -v qemu-nbd >/dev/null || die "qemu-nbd is missing (apt-get install qemu-utils), or pass --servers ioeng-uring,ioeng-aio"
fi
if [[ $BUILD = 1 ]]; then
    make -s -C "$HERE" ioeng_nbd >/dev/null
fi
if [[ -z $EXT4_DIR ]]; then
    for d in /var/tmp /tmp; do
        if [[ $(stat -f -c %T "$d" 2>/dev/null) == ext2/ext3 ]]; then EXT4_DIR=$d; break; fi
    done
    [[ -n $EXT4_DIR ]] || EXT4_DIR=/var/tmp
fi

export NBD_BIN=$HERE/ioeng_nbd NBD_ARGS RUNTIME REPEAT SIZE FS RW SERVERS DEPTH EXT4_DIR SHM_DIR JSON
exec python3 - <<'PY'
import json, os, signal, socket, statistics, subprocess, sys, tempfile, time

E = os.environ
RUNTIME, REPEAT, DEPTH = float(E["RUNTIME"]), int(E["REPEAT"]), int(E["DEPTH"])
SERVERS = E["SERVERS"].split(",")
CLK = os.sysconf("SC_CLK_TCK")
PAIR = {"ioeng-uring": "qemu-uring", "ioeng-aio": "qemu-native"}
for s in SERVERS:
    if s not in ("ioeng-uring", "ioeng-aio", "qemu-uring", "qemu-native"):
        sys.exit(f"compare_nbd.sh: unknown server {s}")


def parse_size(s):
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(float(s[:-1]) * mult[s[-1].lower()]) if s[-1].lower() in mult else int(s)


SIZE = parse_size(E["SIZE"])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            sys.exit(f"compare_nbd.sh: {what} exited at start ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"compare_nbd.sh: {what} not listening after 10 s")


def start(server, path, log):
    port = free_port()
    if server.startswith("ioeng-"):
        cmd = [E["NBD_BIN"], "--backend", server[6:], "--depth", str(DEPTH), "--port", str(port),
               *E["NBD_ARGS"].split(), path]
    else:
        aio = "io_uring" if server == "qemu-uring" else "native"
        cmd = ["qemu-nbd", "-f", "raw", "--cache=none", f"--aio={aio}", "-b", "127.0.0.1",
               "-p", str(port), "-x", "", "--persistent", "--shared=16", path]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    wait_port(port, proc, server)
    return proc, port


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_fio(port, rw, out):
    cmd = ["fio", "--name=nbd", "--ioengine=nbd", f"--uri=nbd://127.0.0.1:{port}", f"--rw={rw}",
           "--bs=4k", "--iodepth=32", "--numjobs=1", f"--size={SIZE}", "--time_based",
           f"--runtime={RUNTIME}", "--randrepeat=0", "--output-format=json", f"--output={out}"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=RUNTIME + 120)
    job = json.load(open(out))["jobs"][0]
    d = job["read" if rw.endswith("read") else "write"]
    p99 = d["clat_ns"]["percentile"].get("99.000000", 0) / 1000.0
    return d["iops"], p99, d["total_ios"]


def fill(path):
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        left = SIZE
        while left:
            n = min(left, len(chunk))
            f.write(chunk[:n])
            left -= n
        f.flush()
        os.fsync(f.fileno())


work = tempfile.mkdtemp(prefix="compare_nbd.")
results = {}  # (fs, rw, server) -> list of (iops, p99, cpu_us_per_io)
rounds = {}   # (fs, rw, round) -> {server: (iops, cpu_us_per_io)}
log = open(os.path.join(work, "servers.log"), "w")
files = []
try:
    for fs in E["FS"].split(","):
        d = E["SHM_DIR"] if fs == "tmpfs" else E["EXT4_DIR"]
        path = os.path.join(d, f"compare_nbd.{os.getpid()}.{fs}.img")
        files.append(path)
        print(f"# {fs}: filling {path} ({SIZE >> 20} MiB)", file=sys.stderr)
        fill(path)
        for rw in E["RW"].split(","):
            for r in range(REPEAT):
                k = r % len(SERVERS)
                order = SERVERS[k:] + SERVERS[:k]
                if r % 2:
                    order.reverse()
                for server in order:
                    proc, port = start(server, path, log)
                    try:
                        t0 = cpu_ticks(proc.pid)
                        iops, p99, ios = run_fio(port, rw, os.path.join(work, "fio.json"))
                        t1 = cpu_ticks(proc.pid)
                    finally:
                        stop(proc)
                    cpu_us = (t1 - t0) / CLK * 1e6 / max(ios, 1)
                    results.setdefault((fs, rw, server), []).append((iops, p99, cpu_us))
                    rounds.setdefault((fs, rw, r), {})[server] = (iops, cpu_us)
                    line = dict(fs=fs, rw=rw, round=r, server=server, iops=round(iops),
                                p99_us=round(p99, 1), cpu_us_per_io=round(cpu_us, 2),
                                cpu_s=round((t1 - t0) / CLK, 2))
                    print("# " + json.dumps(line), file=sys.stderr)
                    if E["JSON"] == "1":
                        print(json.dumps(line))
            os.sync()
        os.unlink(path)
finally:
    for p in files:
        if os.path.exists(p):
            os.unlink(p)
    log.close()

med = statistics.median
print(f"\nfio --ioengine=nbd, 4 KiB, QD32, 1 connection, {RUNTIME:g} s per run, {REPEAT} round(s), "
      f"medians; export {SIZE >> 20} MiB; server CPU = whole process")
hdr = f"{'fs':6} {'rw':10} {'server':12} {'IOPS':>9} {'p99 us':>9} {'CPU us/IO':>10}   {'IOPS ratio':>20} {'CPU/IO ratio':>20}"
print(hdr)
print("-" * len(hdr))
for fs in E["FS"].split(","):
    for rw in E["RW"].split(","):
        for server in SERVERS:
            rs = results.get((fs, rw, server))
            if not rs:
                continue
            iops = med([x[0] for x in rs])
            p99 = med([x[1] for x in rs])
            cpu = med([x[2] for x in rs])
            ratio = cpu_ratio = ""
            q = PAIR.get(server)
            if q in SERVERS:
                ir, cr = [], []
                for r in range(REPEAT):
                    rd = rounds[(fs, rw, r)]
                    ir.append(rd[server][0] / max(rd[q][0], 1e-9))
                    cr.append(rd[server][1] / max(rd[q][1], 1e-9))
                ratio = f"{med(ir):.2f} ({min(ir):.2f}-{max(ir):.2f}) vs {q[5:]}"
                cpu_ratio = f"{med(cr):.2f} ({min(cr):.2f}-{max(cr):.2f})"
            print(f"{fs:6} {rw:10} {server:12} {iops:9.0f} {p99:9.1f} {cpu:10.2f}   {ratio:>20} {cpu_ratio:>20}")
print("IOPS ratio: ioeng_nbd / qemu-nbd on the same kernel interface (>= 1 is better); "
      "CPU/IO ratio: server CPU per IO, ioeng_nbd / qemu-nbd (<= 1 is better); (min-max over rounds)")
PY
