#!/usr/bin/env bash
# compare_nbd.sh - ioeng_nbd against qemu-nbd and nbdkit under fio's nbd engine, side by side.
#
#   bash examples_c/compare_nbd.sh [--runtime S] [--repeat N] [--size SIZE]
#                                  [--fs tmpfs,ext4,ext4-buffered] [--rw randread,randwrite]
#                                  [--jobs 32x1,1x1,8x4] [--servers LIST] [--depth N]
#                                  [--nbd-args ARGS] [--quick] [--dir DIR] [--shm-dir DIR]
#                                  [--no-build] [--json]
#
# Every run: fio --ioengine=nbd, 4 KiB, time based, against one server exporting the same
# file (filled with random data) over 127.0.0.1. --jobs lists QDxCONNS: 8x4 is fio
# --numjobs=4 --iodepth=8 --group_reporting, i.e. 4 connections of 8 requests in flight
# each; IOPS are summed over the connections, p99 is of all of them together.
# Servers (--servers), and how each one reaches the file in each storage row (--fs):
#                  tmpfs (/dev/shm)      ext4 (page cache bypassed)   ext4-buffered (page cache)
#   ioeng-uring    ioeng_nbd --backend uring: O_DIRECT               ... --no-direct
#   ioeng-aio      ioeng_nbd --backend aio:   O_DIRECT               ... --no-direct
#   qemu-uring     qemu-nbd -f raw --cache=none --aio=io_uring       -
#   qemu-native    qemu-nbd -f raw --cache=none --aio=native         -
#   qemu-buffered  -                     -                           qemu-nbd -f raw (defaults:
#                                                                    --cache=writeback --aio=threads)
#   nbdkit         nbdkit file           nbdkit file cache=none      nbdkit file
# On ext4-buffered, qemu-uring and qemu-native are replaced by one qemu-buffered. nbdkit
# (1.32, thread model parallel, 16 threads per connection: its defaults) has no O_DIRECT:
# its cache=none is the nearest it has, and it does NOT bypass the page cache: reads and
# writes are buffered pread/pwrite, then sync_file_range starts writeback and
# posix_fadvise(POSIX_FADV_DONTNEED) drops the pages again. The table's "path" column
# says which: direct (O_DIRECT), cached (page cache) or evict (nbdkit cache=none). In the
# ext4 row nbdkit cache=none is shown but is not a peer for the ratios (it is not like
# with like: its writes return from the page cache).
# Before every run the file is fsynced (one server's dirty pages are not written back
# during the next one's run), and on ext4 dropped from the page cache, on ext4-buffered
# read into it, so every server starts from the same state.
# Server CPU is the whole server process (all threads): utime+stime from /proc/PID/stat
# before and after the run (servers run in the foreground, so that PID is the server).
# The table's header gives the machine's cross-CPU sleep + wake-up round trip before and
# after all runs (examples_c/wake_cost): on a VM it decides the QD1 rows and it shifts.
# With --repeat N each (fs, rw, jobs) row runs N rounds; each round runs every server once,
# in an order that rotates by one every round and is reversed on odd rounds (so drift
# favours nobody), and the table shows medians. Ratios compare each ioeng_nbd backend with
# the BEST PEER (qemu-* and nbdkit in that row) per metric and per round: IOPS ratio =
# ioeng IOPS / the highest peer IOPS (want >= 1), CPU ratio = ioeng CPU us per IO / the
# lowest peer CPU us per IO (want <= 1); shown as median (min-max) over rounds with the
# peer that was best most often. A "verdict" line per row says PASS (both medians met) or
# MISS for each ioeng backend, and which of them ioeng_nbd's default (--backend auto:
# AIO for a tmpfs export, io_uring elsewhere) is, asked from the server itself.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

RUNTIME=10 REPEAT=1 SIZE=1g FS=tmpfs,ext4,ext4-buffered RW=randread,randwrite DEPTH=128
JOBS=32x1,1x1,8x4
SERVERS=ioeng-uring,ioeng-aio,qemu-uring,qemu-native,nbdkit SERVERS_SET=0
EXT4_DIR="" SHM_DIR=/dev/shm BUILD=1 JSON=0 QUICK=0 SIZE_SET=0 RT_SET=0 NBD_ARGS= PIN=0

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    cat <<'EOF'
Options:
  --runtime S      seconds per fio run (default 10)
  --repeat N       rounds, medians in the table (default 1; the issue's target uses 5)
  --size SIZE      export file size (default 1g)
  --fs LIST        tmpfs,ext4,ext4-buffered (default all three)
  --rw LIST        randread,randwrite (default both; read and write work too)
  --jobs LIST      QDxCONNS list (default 32x1,1x1,8x4)
  --servers LIST   ioeng-uring,ioeng-aio,qemu-uring,qemu-native,qemu-buffered,nbdkit
                   (default all but qemu-buffered: that one runs only on ext4-buffered,
                   where it replaces qemu-uring and qemu-native by itself; a default list
                   drops nbdkit with a warning if it is not installed)
  --depth N        ioeng_nbd --depth (engine in-flight budget, default 128)
  --nbd-args ARGS  more ioeng_nbd options, e.g. "--idle-poll-us default"
  --quick          --runtime 2 --size 256m (explicit options win)
  --dir DIR        directory for the ext4 file; --shm-dir DIR for the tmpfs one
  --no-build       do not run make first
  --json           also print every run, and every ratio row, as one JSON line
  --pin            server on the last CPU, fio on the others (see the script: placement
                   decides QD1 on a small VM)
Exit status: 0, or 1 if a server failed to start or a fio run failed (the rest still runs).
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
        --jobs) JOBS=${2:?}; shift 2 ;;
        --servers) SERVERS=${2:?}; SERVERS_SET=1; shift 2 ;;
        --depth) DEPTH=${2:?}; shift 2 ;;
        --nbd-args) NBD_ARGS=${2?}; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --dir) EXT4_DIR=${2:?}; shift 2 ;;
        --shm-dir) SHM_DIR=${2:?}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --json) JSON=1; shift ;;
        --pin) PIN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
done
if [[ $QUICK = 1 ]]; then
    [[ $RT_SET = 1 ]] || RUNTIME=2
    [[ $SIZE_SET = 1 ]] || SIZE=256m
fi
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "--repeat: a positive integer"
[[ $JOBS =~ ^[1-9][0-9]*x[1-9][0-9]*(,[1-9][0-9]*x[1-9][0-9]*)*$ ]] ||
    die "--jobs: a list of QDxCONNS, e.g. 32x1,1x1,8x4"
command -v fio >/dev/null || die "fio is missing (apt-get install fio)"
fio --enghelp=nbd 2>&1 | grep -q uri || die "this fio has no nbd engine"
if [[ ,$SERVERS, == *,qemu-* ]]; then
    command -v qemu-nbd >/dev/null || die "qemu-nbd is missing (apt-get install qemu-utils), or pass --servers without qemu-*"
fi
if [[ ,$SERVERS, == *,nbdkit,* ]] && ! nbdkit --dump-plugin file >/dev/null 2>&1; then
    # The default list has nbdkit; a machine without it still compares with qemu-nbd.
    [[ $SERVERS_SET = 0 ]] || die "nbdkit or its file plugin is missing (apt-get install nbdkit)"
    echo "compare_nbd.sh: nbdkit (file plugin) is missing: running without it" >&2
    SERVERS=$(tr , '\n' <<<"$SERVERS" | grep -vx nbdkit | paste -sd,)
fi
if [[ $BUILD = 1 ]]; then
    make -s -C "$HERE" ioeng_nbd wake_cost >/dev/null
fi
if [[ -z $EXT4_DIR ]]; then
    for d in /var/tmp /tmp; do
        if [[ $(stat -f -c %T "$d" 2>/dev/null) == ext2/ext3 ]]; then EXT4_DIR=$d; break; fi
    done
    [[ -n $EXT4_DIR ]] || EXT4_DIR=/var/tmp
fi

export NBD_BIN=$HERE/ioeng_nbd WAKE_COST=$HERE/wake_cost NBD_ARGS RUNTIME REPEAT SIZE FS RW JOBS SERVERS DEPTH EXT4_DIR SHM_DIR JSON PIN
exec python3 - <<'PY'
import collections, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, threading, time

E = os.environ
RUNTIME, REPEAT, DEPTH = float(E["RUNTIME"]), int(E["REPEAT"]), int(E["DEPTH"])
SERVERS = E["SERVERS"].split(",")
FSES = E["FS"].split(",")
RWS = E["RW"].split(",")
JOBS = [tuple(int(x) for x in j.split("x")) for j in E["JOBS"].split(",")]  # (qd, conns)
CLK = os.sysconf("SC_CLK_TCK")
KNOWN = ("ioeng-uring", "ioeng-aio", "qemu-uring", "qemu-native", "qemu-buffered", "nbdkit")
for s in SERVERS:
    if s not in KNOWN:
        sys.exit(f"compare_nbd.sh: unknown server {s} (known: {', '.join(KNOWN)})")
for fs in FSES:
    if fs not in ("tmpfs", "ext4", "ext4-buffered"):
        sys.exit(f"compare_nbd.sh: unknown --fs {fs} (tmpfs, ext4, ext4-buffered)")
for rw in RWS:
    if rw not in ("randread", "randwrite", "read", "write"):
        sys.exit(f"compare_nbd.sh: unsupported --rw {rw} (randread, randwrite, read, write)")


def parse_size(s):
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    return int(float(s[:-1]) * mult[s[-1].lower()]) if s[-1].lower() in mult else int(s)


SIZE = parse_size(E["SIZE"])


def is_ioeng(server):
    return server.startswith("ioeng-")


def servers_for(fs):
    """The servers of one storage row: like with like (see the header)."""
    if fs == "ext4-buffered":
        out = []
        for s in SERVERS:
            s = "qemu-buffered" if s.startswith("qemu-") else s
            if s not in out:
                out.append(s)
        return out
    return [s for s in SERVERS if s != "qemu-buffered"]


def io_path(fs, server):
    """How the server reaches the file: direct (O_DIRECT), cached, or evict (nbdkit cache=none)."""
    if fs == "ext4-buffered" or server == "qemu-buffered":
        return "cached"
    if server == "nbdkit":
        return "evict" if fs == "ext4" else "cached"
    return "direct"


def command(fs, server, path, port):
    if is_ioeng(server):
        return [E["NBD_BIN"], "--backend", server[6:], "--depth", str(DEPTH), "--port", str(port),
                *E["NBD_ARGS"].split(), *(["--no-direct"] if fs == "ext4-buffered" else []), path]
    if server == "nbdkit":
        # --foreground: the PID we read CPU from is the server itself (no daemon child).
        return ["nbdkit", "--foreground", "--exit-with-parent", "-i", "127.0.0.1", "-p", str(port),
                "--exportname", "", "file", f"file={path}", *(["cache=none"] if fs == "ext4" else [])]
    cache = {"qemu-uring": ["--cache=none", "--aio=io_uring"],
             "qemu-native": ["--cache=none", "--aio=native"],
             "qemu-buffered": ["--cache=writeback", "--aio=threads"]}[server]
    return ["qemu-nbd", "-f", "raw", *cache, "-b", "127.0.0.1", "-p", str(port), "-x", "",
            "--persistent", "--shared=16", path]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15), all threads


class Failed(Exception):
    pass


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            raise Failed(f"{what} exited at start ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise Failed(f"{what} not listening after 10 s")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --pin: the server (every thread of it) on the last CPU, fio on the others. Loopback on a
# small VM otherwise measures where the scheduler happens to put the two: at QD1 a server
# that runs on the client's CPU skips the cross-CPU wake-up (an IPI and a VM exit) twice
# per IO, which a server with a pool of threads that migrate gets more often than one
# event-loop thread. With a real network the client is on another machine.
NCPU = os.cpu_count() or 1
PIN_SERVER = ["taskset", "-c", str(NCPU - 1)] if E.get("PIN") == "1" and NCPU > 1 else []
PIN_CLIENT = ["taskset", "-c", f"0-{NCPU - 2}"] if PIN_SERVER else []


def start(fs, server, path, log):
    port = free_port()
    cmd = command(fs, server, path, port)
    log.write(f"### {fs} {server}: {' '.join(cmd)}\n")
    log.flush()
    proc = subprocess.Popen(PIN_SERVER + cmd, stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_port(port, proc, server)
    except Failed:
        if proc.poll() is None:
            stop(proc)
        raise
    return proc, port


def auto_backend(fs, path):
    """The backend ioeng_nbd's default (--backend auto) picks for this file, from its log."""
    cmd = command(fs, "ioeng-auto", path, 0)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # A server that hangs before it listens must not hang the benchmark: killed after 30 s.
    watchdog = threading.Timer(30, proc.kill)
    watchdog.start()
    try:
        proc.stdout.readline()  # "listening on ...": the engine is open and announced
    finally:
        watchdog.cancel()
        proc.terminate()
    err = proc.communicate(timeout=30)[1]
    for word in err.split("backend ")[1:]:
        if word.split(",")[0] in ("uring", "aio"):
            return word.split(",")[0]
    raise Failed(f"ioeng_nbd --backend auto did not say its backend: {err.strip()[-300:]}")


def wake_round_trip():
    """This machine's cross-CPU sleep and wake-up round trip now (examples_c/wake_cost), or
    '?'. QD1 rows follow it on a VM (README "NBD server"), and it shifts over an hour."""
    try:
        out = subprocess.run([E["WAKE_COST"], "20000"], capture_output=True, text=True,
                             timeout=60).stdout
        return out.split(": ", 1)[1].split(" us per round trip")[0] + " us"
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def run_fio(port, rw, qd, conns, out):
    cmd = PIN_CLIENT + ["fio", "--name=nbd", "--ioengine=nbd", f"--uri=nbd://127.0.0.1:{port}", f"--rw={rw}",
           "--bs=4k", f"--iodepth={qd}", f"--numjobs={conns}", "--group_reporting",
           f"--size={SIZE}", "--time_based", f"--runtime={RUNTIME}", "--randrepeat=0",
           "--output-format=json", f"--output={out}"]
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                       timeout=RUNTIME + 120)
    if r.returncode:
        raise Failed(f"fio exited {r.returncode}: {r.stderr.strip()[-400:]}")
    jobs = json.load(open(out))["jobs"]  # one entry: --group_reporting sums the connections
    d = [j["read" if rw.endswith("read") else "write"] for j in jobs]
    iops = sum(x["iops"] for x in d)
    ios = sum(x["total_ios"] for x in d)
    p99 = max(x["clat_ns"]["percentile"].get("99.000000", 0) for x in d) / 1000.0
    if ios == 0 or any(j.get("error") for j in jobs):
        raise Failed(f"fio: no IO completed (error {[j.get('error') for j in jobs]})")
    return iops, p99, ios


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


def settle(fs, path):
    """The same page-cache state before every run, whatever the previous server left."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # the last server's buffered writes go to disk now, not during this run
        if fs == "ext4":
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # nothing cached: all bypass it
        elif fs == "ext4-buffered":
            buf = bytearray(1 << 20)  # everything cached: all go through it
            off = 0
            while off < SIZE:
                n = os.preadv(fd, [buf], off)
                if n <= 0:
                    break
                off += n
    finally:
        os.close(fd)


def job_name(job):
    return f"{job[0]}x{job[1]}"


work = tempfile.mkdtemp(prefix="compare_nbd.")
results = {}   # (fs, rw, job, server) -> list of (iops, p99, cpu_us_per_io)
rounds = {}    # (fs, rw, job, round) -> {server: (iops, cpu_us_per_io)}
failures = []  # (fs, rw, job, round, server, why)
log_path = os.path.join(work, "servers.log")
log = open(log_path, "w")
files = []
auto = {}  # fs -> the backend ioeng_nbd's default picks there
wake_before = wake_round_trip()
try:
    for fs in FSES:
        d = E["SHM_DIR"] if fs == "tmpfs" else E["EXT4_DIR"]
        path = os.path.join(d, f"compare_nbd.{os.getpid()}.{fs}.img")
        files.append(path)
        print(f"# {fs}: filling {path} ({SIZE >> 20} MiB)", file=sys.stderr)
        fill(path)
        auto[fs] = auto_backend(fs, path)
        servers = servers_for(fs)
        for job in JOBS:
            for rw in RWS:
                for r in range(REPEAT):
                    k = r % len(servers)
                    order = servers[k:] + servers[:k]
                    if r % 2:
                        order.reverse()
                    for server in order:
                        settle(fs, path)
                        try:
                            proc, port = start(fs, server, path, log)
                            try:
                                t0 = cpu_ticks(proc.pid)
                                iops, p99, ios = run_fio(port, rw, *job, os.path.join(work, "fio.json"))
                                t1 = cpu_ticks(proc.pid)
                            finally:
                                stop(proc)
                        except (Failed, subprocess.TimeoutExpired, OSError, ValueError, KeyError) as e:
                            failures.append((fs, rw, job_name(job), r, server, str(e)))
                            print(f"# FAILED {fs} {rw} {job_name(job)} round {r} {server}: {e}",
                                  file=sys.stderr)
                            continue
                        cpu_us = (t1 - t0) / CLK * 1e6 / ios
                        results.setdefault((fs, rw, job, server), []).append((iops, p99, cpu_us))
                        rounds.setdefault((fs, rw, job, r), {})[server] = (iops, cpu_us)
                        line = dict(fs=fs, rw=rw, qd=job[0], conns=job[1], round=r, server=server,
                                    path=io_path(fs, server), iops=round(iops),
                                    p99_us=round(p99, 1), cpu_us_per_io=round(cpu_us, 2),
                                    cpu_s=round((t1 - t0) / CLK, 2))
                        print("# " + json.dumps(line), file=sys.stderr)
                        if E["JSON"] == "1":
                            print(json.dumps(line), flush=True)
        os.unlink(path)
finally:
    for p in files:
        if os.path.exists(p):
            os.unlink(p)
    log.close()

med = statistics.median
wake_after = wake_round_trip()


def vs_best_peer(fs, rw, job, server):
    """Per round: server / best peer, for IOPS (highest) and CPU per IO (lowest)."""
    ir, cr, bi, bc = [], [], collections.Counter(), collections.Counter()
    for r in range(REPEAT):
        rd = rounds.get((fs, rw, job, r), {})
        # Like with like: in the row that bypasses the page cache, nbdkit's cache=none
        # (buffered IO, then eviction: a write returns once it is in the page cache) is
        # shown but is no peer.
        peers = [p for p in rd if not is_ioeng(p) and io_path(fs, p) != "evict"]
        if server not in rd or not peers:
            continue
        pi = max(peers, key=lambda p: rd[p][0])
        pc = min(peers, key=lambda p: rd[p][1])
        ir.append(rd[server][0] / max(rd[pi][0], 1e-9))
        cr.append(rd[server][1] / max(rd[pc][1], 1e-9))
        bi[pi] += 1
        bc[pc] += 1
    if not ir:
        return None
    return dict(iops=med(ir), iops_min=min(ir), iops_max=max(ir), iops_peer=bi.most_common(1)[0][0],
                cpu=med(cr), cpu_min=min(cr), cpu_max=max(cr), cpu_peer=bc.most_common(1)[0][0],
                rounds=len(ir))


print(f"\nfio --ioengine=nbd, 4 KiB, {RUNTIME:g} s per run, {REPEAT} round(s), medians; "
      f"export {SIZE >> 20} MiB; QDxC = iodepth x connections; server CPU = whole process"
      + (f"; server pinned to CPU {NCPU - 1}, fio to the others" if PIN_SERVER else
         "; no pinning"))
print(f"cross-CPU sleep + wake-up round trip (examples_c/wake_cost 20000): {wake_before} before "
      f"the runs, {wake_after} after (QD1 rows follow it: README, NBD server)")
hdr = (f"{'fs':13} {'rw':9} {'server':13} {'IOPS':>8} {'p99 us':>9} {'CPU us/IO':>9} {'QDxC':>5} "
       f"{'path':6}   {'IOPS / best peer':32} {'CPU per IO / best peer'}")
print(hdr)
print("-" * len(hdr))
verdicts, ratio_json = [], []
for fs in FSES:
    for job in JOBS:
        for rw in RWS:
            row_verdict, default_verdict = [], None
            for server in servers_for(fs):
                rs = results.get((fs, rw, job, server))
                if not rs:
                    print(f"{fs:13} {rw:9} {server:13} {'-':>8} (every run failed)")
                    continue
                iops = med([x[0] for x in rs])
                p99 = med([x[1] for x in rs])
                cpu = med([x[2] for x in rs])
                ratio = cpu_ratio = ""
                v = vs_best_peer(fs, rw, job, server) if is_ioeng(server) else None
                if v:
                    ratio = f"{v['iops']:.2f} ({v['iops_min']:.2f}-{v['iops_max']:.2f}) vs {v['iops_peer']}"
                    cpu_ratio = f"{v['cpu']:.2f} ({v['cpu_min']:.2f}-{v['cpu_max']:.2f}) vs {v['cpu_peer']}"
                    ok = v["iops"] >= 1.0 and v["cpu"] <= 1.0
                    row_verdict.append(f"{server} {'PASS' if ok else 'MISS'} "
                                       f"(IOPS {v['iops']:.2f}x, CPU/IO {v['cpu']:.2f}x)")
                    if server == f"ioeng-{auto.get(fs)}":
                        default_verdict = f"default (auto: {auto[fs]}) {'PASS' if ok else 'MISS'}"
                    rounded = {k: (round(x, 3) if isinstance(x, float) else x) for k, x in v.items()}
                    ratio_json.append(json.dumps(dict(kind="ratio", fs=fs, rw=rw, qd=job[0],
                                                      conns=job[1], server=server,
                                                      verdict="PASS" if ok else "MISS", **rounded)))
                elif is_ioeng(server):
                    row_verdict.append(f"{server} - (no peer)")
                print(f"{fs:13} {rw:9} {server:13} {iops:8.0f} {p99:9.1f} {cpu:9.2f} "
                      f"{job_name(job):>5} {io_path(fs, server):6}   {ratio:32} {cpu_ratio:32}".rstrip())
            if default_verdict:
                row_verdict.append(default_verdict)
            if row_verdict:
                verdicts.append(f"verdict {fs:13} {rw:9} {job_name(job):>5}  " + "  ".join(row_verdict))
print("IOPS ratio: ioeng_nbd / the highest peer IOPS in the same round (>= 1 is better); CPU per IO "
      "ratio: ioeng_nbd / the lowest peer CPU per IO in the same round (<= 1 is better); median "
      "(min-max) over rounds, vs the peer that was best most often. Peers: qemu-* and nbdkit "
      "(not nbdkit cache=none in the ext4 row: it does not bypass the page cache).")
print("path: direct = O_DIRECT (ioeng_nbd default, qemu-nbd --cache=none); cached = through the "
      "page cache (ioeng_nbd --no-direct, qemu-nbd --cache=writeback "
      "--aio=threads, nbdkit default); evict = nbdkit cache=none: buffered IO, then "
      "sync_file_range + POSIX_FADV_DONTNEED (not O_DIRECT; the nearest nbdkit has)")
print("\nverdicts (PASS: IOPS ratio >= 1 and CPU per IO ratio <= 1, medians vs the best peer):")
for v in verdicts:
    print(v)
if not verdicts:
    print("(none: no ioeng_nbd row with a peer beside it)")
if E["JSON"] == "1":  # one line per ioeng row, after the table so that stays readable
    for j in ratio_json:
        print(j)
if failures:
    print(f"\n{len(failures)} run(s) FAILED (server log: {log_path}):")
    for f in failures:
        print("  %s %s %s round %d %s: %s" % f)
    sys.exit(1)
shutil.rmtree(work)
PY
