#!/usr/bin/env python3
"""Small NBD test client for examples_c/ioeng_nbd: speaks the protocol by hand, so it can
send what real clients never do (malformed, out-of-range, oversized, truncated requests).

  nbd_client.py protocol PORT FILE     handshake + malformed input; FILE is the export's
                                       path, used to check that nothing was corrupted
  nbd_client.py readonly PORT          writes to a --read-only export are refused
  nbd_client.py shutdown PORT PID LOG  pipelined reads, SIGTERM to PID, every reply arrives;
                                       requests sent after LOG shows the signal: ESHUTDOWN
  nbd_client.py hs_shutdown PORT PID LOG  SIGTERM to PID while clients negotiate: their
                                       options get NBD_REP_ERR_SHUTDOWN, ABORT an ACK
  nbd_client.py abandon PORT           pipelined writes and reads, then a reset (RST)
  nbd_client.py flood PORT PID         options sent without reading replies: memory stays bounded
  nbd_client.py serve-check PORT       one verified write + read (the server still serves)
  nbd_client.py idle PORT N TIMEOUT     N idle connections (the limit) lock nobody out
                                       after the handshake timeout
  nbd_client.py memory PORT PID CAP    unread reads on 17 connections: RSS stays under
                                       CAP MiB + a bound, falls when they leave
  nbd_client.py emfile PORT PID N      N connections beyond the server's fd limit: no spin
  nbd_client.py blkdev PORT fast|slow   a block-device export: unaligned WRITE_ZEROES, and
                                       FAST_ZERO with NO_HOLE done (fast) or refused (slow)
  nbd_client.py reset_disc ADDR PID FILE  700 WRITEs + DISC queued while PID is stopped, then
                                       a close with a reply unread (a reset): every write ran
  nbd_client.py mixed PORT ROUNDS SEED concurrent non-overlapping writes of mixed alignment
                                       (pairs sharing a 4 KiB page, 1 B to 256 KiB at every
                                       offset, FUA or not, FLUSH), each batch read back and
                                       compared byte for byte with what was acknowledged

Every socket operation has a timeout; any failed check raises and exits non-zero.
"""
import os
import random
import signal
import socket
import struct
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPMAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO, OPT_STRUCTURED = 1, 2, 3, 6, 7, 8
OPT_LIST_META, OPT_SET_META, REP_META = 9, 10, 4
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
ERR_UNSUP, ERR_INVALID, ERR_UNKNOWN, ERR_TOO_BIG = (1 << 31) + 1, (1 << 31) + 3, (1 << 31) + 6, (1 << 31) + 9
ERR_SHUTDOWN = (1 << 31) + 7
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WZ, CMD_BS = 0, 1, 2, 3, 4, 5, 6, 7
FLAG_FUA, FLAG_NO_HOLE, FLAG_DF, FLAG_FAST_ZERO = 1, 2, 4, 16
EPERM, EINVAL, ENOSPC, ENOTSUP = 1, 22, 28, 95
TF_READ_ONLY, TF_FLUSH, TF_FUA, TF_TRIM, TF_WZ, TF_MULTI = 2, 4, 8, 32, 64, 256
TF_CACHE, TF_FAST_ZERO = 1 << 10, 1 << 11

TIMEOUT = 20.0


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def server_addr(a):
    """A port (127.0.0.1), "[ADDR]:PORT" (IPv6) or "unix:PATH"."""
    return int(a) if a.isdigit() else a


def sock_for(port):
    """A socket and the address to connect it to, for server_addr()'s forms."""
    if isinstance(port, str) and port.startswith("unix:"):
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), port[5:]
    if isinstance(port, str) and port.startswith("["):
        host, p = port[1:].split("]:")
        return socket.socket(socket.AF_INET6, socket.SOCK_STREAM), (host, int(p))
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM), ("127.0.0.1", port)


class Conn:
    def __init__(self, port, rcvbuf=0):
        self.s, where = sock_for(port)
        if rcvbuf:  # before connect, so the TCP window is small from the start
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.settimeout(TIMEOUT)
        self.s.connect(where)
        self.pending = {}  # cookie -> expected read length

    def recv_exact(self, n):
        b = bytearray()
        while len(b) < n:
            chunk = self.s.recv(min(n - len(b), 1 << 20))
            if not chunk:
                raise EOFError(f"connection closed after {len(b)} of {n} bytes")
            b += chunk
        return bytes(b)

    def is_closed(self):
        """True when the server closed the connection (EOF or reset) within the timeout."""
        try:
            while True:
                if not self.s.recv(65536):
                    return True
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def greeting(self, cflags=3):
        magic, opt, hflags = struct.unpack(">QQH", self.recv_exact(18))
        check(magic == NBDMAGIC and opt == IHAVEOPT, "greeting magic")
        check(hflags & 1 and hflags & 2, f"handshake flags {hflags:#x}: fixed newstyle + no zeroes")
        self.s.sendall(struct.pack(">I", cflags))

    def option(self, opt, data=b""):
        self.s.sendall(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def opt_reply(self, opt):
        magic, ropt, rtype, rlen = struct.unpack(">QIII", self.recv_exact(20))
        check(magic == REPMAGIC, f"option reply magic {magic:#x}")
        check(ropt == opt, f"option reply for {ropt}, expected {opt}")
        return rtype, self.recv_exact(rlen)

    def info_go(self, opt, name=b"", infos=(3,)):
        data = struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos))
        data += b"".join(struct.pack(">H", i) for i in infos)
        self.option(opt, data)
        size = tflags = None
        while True:
            rtype, d = self.opt_reply(opt)
            if rtype == REP_INFO:
                (itype,) = struct.unpack(">H", d[:2])
                if itype == 0:
                    check(len(d) == 12, "NBD_INFO_EXPORT length")
                    size, tflags = struct.unpack(">QH", d[2:])
                elif itype == 3:
                    check(len(d) == 14, "NBD_INFO_BLOCK_SIZE length")
                    mn, pref, mx = struct.unpack(">III", d[2:])
                    check(mn == 1 and pref == 4096 and mx >= 1 << 25, f"block sizes {mn} {pref} {mx}")
                continue
            return rtype, size, tflags

    def connect_go(self):
        self.greeting()
        rtype, size, tflags = self.info_go(OPT_GO)
        check(rtype == REP_ACK, f"NBD_OPT_GO reply {rtype:#x}")
        return size, tflags

    def request(self, cmd, cookie, off=0, length=0, flags=0, payload=b"", read_len=None):
        self.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, off, length) + payload)
        if read_len is None:
            read_len = length if cmd == CMD_READ else 0
        self.pending[cookie] = read_len

    def reply(self):
        magic, err, cookie = struct.unpack(">IIQ", self.recv_exact(16))
        check(magic == SIMPLE_MAGIC, f"reply magic {magic:#x}")
        check(cookie in self.pending, f"reply for unknown cookie {cookie}")
        n = self.pending.pop(cookie)
        data = self.recv_exact(n) if err == 0 and n else b""
        return cookie, err, data

    def call(self, cmd, off=0, length=0, flags=0, payload=b"", read_len=None):
        cookie = random.getrandbits(64)
        self.request(cmd, cookie, off, length, flags, payload, read_len)
        c, err, data = self.reply()
        check(c == cookie, "cookie echoed")
        return err, data

    def disc(self):
        try:
            self.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, 0, 0, 0))
        except (BrokenPipeError, ConnectionResetError):
            pass
        check(self.is_closed(), "server closes after NBD_CMD_DISC")
        self.s.close()


def pattern(seed, n):
    return random.Random(seed).randbytes(n)


def file_read(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def test_handshake(port):
    c = Conn(port)
    c.greeting()
    c.option(99, b"xyz")
    check(c.opt_reply(99)[0] == ERR_UNSUP, "unknown option -> NBD_REP_ERR_UNSUP")
    # Meta contexts need structured replies first; then base:allocation is listed and
    # selected, anything else ignored, a malformed query refused.
    meta = lambda *qs: (struct.pack(">I", 0) + struct.pack(">I", len(qs)) +
                        b"".join(struct.pack(">I", len(q)) + q for q in qs))
    c.option(OPT_SET_META, meta(b"base:allocation"))
    check(c.opt_reply(OPT_SET_META)[0] == ERR_INVALID, "SET_META_CONTEXT before structured replies")
    c.option(OPT_STRUCTURED, b"x")
    check(c.opt_reply(OPT_STRUCTURED)[0] == ERR_INVALID, "STRUCTURED_REPLY with data")
    c.option(OPT_STRUCTURED)
    check(c.opt_reply(OPT_STRUCTURED)[0] == REP_ACK, "structured replies offered")
    for o, qs in ((OPT_LIST_META, ()), (OPT_LIST_META, (b"base:",)), (OPT_SET_META, (b"x-a:b", b"base:allocation"))):
        c.option(o, meta(*qs))
        rtype, d = c.opt_reply(o)
        check(rtype == REP_META and d[4:] == b"base:allocation", f"meta context {o} {qs}: {rtype:#x} {d!r}")
        check(c.opt_reply(o)[0] == REP_ACK, "meta context list ends with ACK")
    c.option(OPT_SET_META, meta(b"base:nothing", b"qemu:dirty-bitmap:x"))
    check(c.opt_reply(OPT_SET_META)[0] == REP_ACK, "unknown contexts are ignored")
    c.option(OPT_SET_META, meta(b"base:allocation")[:-3])
    check(c.opt_reply(OPT_SET_META)[0] == ERR_INVALID, "a truncated query -> ERR_INVALID")
    c.option(OPT_LIST)
    rtype, d = c.opt_reply(OPT_LIST)
    check(rtype == REP_SERVER and d == b"\0\0\0\0", "NBD_OPT_LIST gives the default export")
    check(c.opt_reply(OPT_LIST)[0] == REP_ACK, "NBD_OPT_LIST ends with ACK")
    c.option(OPT_LIST, b"junk")
    check(c.opt_reply(OPT_LIST)[0] == ERR_INVALID, "NBD_OPT_LIST with data -> ERR_INVALID")
    c.option(OPT_INFO, b"\0\0\0\x09ab")  # name length beyond the data
    check(c.opt_reply(OPT_INFO)[0] == ERR_INVALID, "INFO with a bad name length -> ERR_INVALID")
    c.option(OPT_GO, b"\0\0")
    check(c.opt_reply(OPT_GO)[0] == ERR_INVALID, "GO shorter than 6 bytes -> ERR_INVALID")
    rtype, _, _ = c.info_go(OPT_INFO, b"nosuch")
    check(rtype == ERR_UNKNOWN, "INFO for an unknown export -> ERR_UNKNOWN")
    c.option(77, b"\0" * (100 << 10))  # longer than the server keeps: skipped, answered
    check(c.opt_reply(77)[0] in (ERR_TOO_BIG, ERR_UNSUP), "oversized option answered")
    rtype, size, tflags = c.info_go(OPT_INFO)
    check(rtype == REP_ACK and size > 0, "INFO for the default export")
    check(tflags & 0x80, f"DF offered with structured replies: tflags {tflags:#x}")
    check(tflags & 1 and tflags & TF_FLUSH and tflags & TF_FUA and tflags & TF_MULTI, f"tflags {tflags:#x}")
    check(tflags & TF_TRIM and tflags & TF_CACHE and tflags & TF_FAST_ZERO,
          f"TRIM, CACHE and FAST_ZERO advertised: tflags {tflags:#x}")
    c.option(OPT_ABORT)
    check(c.opt_reply(OPT_ABORT)[0] == REP_ACK, "ABORT is acknowledged")
    check(c.is_closed(), "server closes after ABORT")

    # EXPORT_NAME, with and without the 124 zero bytes.
    for cflags, extra in ((1, 124), (3, 0)):
        c = Conn(port)
        c.greeting(cflags)
        c.option(OPT_EXPORT_NAME)
        esize, eflags = struct.unpack(">QH", c.recv_exact(10))
        # (DF, bit 7, only where structured replies were negotiated, as on the INFO's)
        check(esize == size and eflags == tflags & ~0x80, "EXPORT_NAME gives the same size and flags")
        check(c.recv_exact(extra) == b"\0" * extra, "zero padding")
        err, data = c.call(CMD_READ, 0, 512)
        check(err == 0 and len(data) == 512, "read after EXPORT_NAME")
        c.disc()
    # EXPORT_NAME for an unknown export, and unknown client flags: the server closes.
    c = Conn(port)
    c.greeting()
    c.option(OPT_EXPORT_NAME, b"nosuch")
    check(c.is_closed(), "EXPORT_NAME for an unknown export closes")
    c = Conn(port)
    c.greeting(cflags=0x80)
    check(c.is_closed(), "unknown client flags close the connection")
    return size


def test_transmission(port, path):
    c = Conn(port)
    size, tflags = c.connect_go()
    check(size == os.path.getsize(path), "export size is the file size")
    check(tflags & TF_WZ and not tflags & TF_READ_ONLY, f"tflags {tflags:#x}")
    blk = pattern(1, 65536)
    check(c.call(CMD_WRITE, 0, len(blk), payload=blk)[0] == 0, "write")
    check(c.call(CMD_READ, 0, len(blk))[1] == blk, "read back")
    fua = pattern(2, 4096)
    check(c.call(CMD_WRITE, 8192, 4096, flags=FLAG_FUA, payload=fua)[0] == 0, "FUA write")
    check(file_read(path, 8192, 4096) == fua, "FUA write is in the file")
    check(c.call(CMD_WRITE, 100001, 777, payload=fua[:777])[0] == 0, "unaligned write")
    check(c.call(CMD_READ, 100001, 777)[1] == fua[:777], "unaligned read")
    check(c.call(CMD_FLUSH)[0] == 0, "flush")
    check(c.call(CMD_FLUSH, flags=FLAG_FUA)[0] == 0, "flush with FUA")
    check(c.call(CMD_WZ, 4096, 4096, flags=FLAG_NO_HOLE | FLAG_FUA)[0] == 0, "write zeroes")
    check(c.call(CMD_READ, 0, 16384)[1] == blk[:4096] + b"\0" * 4096 + fua + blk[12288:16384],
          "zeroed range reads back zero, neighbours intact")
    big = 3 << 20
    check(c.call(CMD_WZ, size - big, big)[0] == 0, "multi-chunk write zeroes at the end")
    check(c.call(CMD_READ, size - big, big)[1] == b"\0" * big, "it reads back zero")

    snapshot = file_read(path, 0, 1 << 20)
    fua_sent = 2

    # Malformed and refused requests, pipelined; each gets its own error reply and the
    # stream stays in step (payloads of refused writes are consumed).
    cases = [
        ("read past the end", CMD_READ, 0, size - 512, 1024, b"", EINVAL),
        ("read at the end", CMD_READ, 0, size, 1, b"", EINVAL),
        ("read offset overflow", CMD_READ, 0, (1 << 64) - 4096, 8192, b"", EINVAL),
        ("oversized read", CMD_READ, 0, 0, (32 << 20) + 1, b"", EINVAL),
        ("write past the end", CMD_WRITE, 0, size - 100, 4096, b"\xee" * 4096, ENOSPC),
        ("unknown command", 42, 0, 0, 4096, b"", EINVAL),
        ("TRIM past the end", CMD_TRIM, 0, size - 512, 4096, b"", ENOSPC),
        ("TRIM with NO_HOLE", CMD_TRIM, FLAG_NO_HOLE, 0, 4096, b"", EINVAL),
        ("CACHE past the end", CMD_CACHE, 0, size, 4096, b"", EINVAL),
        ("CACHE with NO_HOLE", CMD_CACHE, FLAG_NO_HOLE, 0, 4096, b"", EINVAL),
        ("unknown flag on read", CMD_READ, 1 << 9, 0, 4096, b"", EINVAL),
        ("DF without structured replies", CMD_READ, FLAG_DF, 0, 4096, b"", EINVAL),
        ("unknown flag on write", CMD_WRITE, 1 << 12, 0, 4096, b"\xee" * 4096, EINVAL),
        ("flush with a length", CMD_FLUSH, 0, 0, 4096, b"", EINVAL),
        ("fast zero on a write", CMD_WRITE, FLAG_FAST_ZERO, 0, 4096, b"\xee" * 4096, EINVAL),
        ("write zeroes past the end", CMD_WZ, 0, size, 4096, b"", ENOSPC),
    ]
    expect = {}
    for i, (what, cmd, flags, off, length, payload, err) in enumerate(cases):
        cookie = 1000 + i
        c.request(cmd, cookie, off, length, flags, payload, read_len=length if cmd == CMD_READ else 0)
        expect[cookie] = (what, err)
    while expect:
        cookie, err, _ = c.reply()
        what, want = expect.pop(cookie)
        check(err == want, f"{what}: error {err}, expected {want}")
    check(c.call(CMD_READ, 0, 1 << 20)[1] == snapshot, "refused requests changed nothing")
    check(file_read(path, 0, 1 << 20) == snapshot, "file unchanged by refused requests")
    check(c.call(CMD_READ, 0, 0) == (0, b""), "zero-length read succeeds with no data")

    # Many requests in flight: 256 pipelined writes then reads, distinct cookies; every
    # reply comes back with its own cookie and data (order is the server's choice).
    rnd = random.Random(3)
    slots = rnd.sample(range(1, 200), 128)
    for i, s in enumerate(slots):
        c.request(CMD_WRITE, 5000 + i, s * 4096, 4096, 0, pattern(100 + s, 4096))
    got = {}
    for _ in slots:
        cookie, err, _ = c.reply()
        check(err == 0, "pipelined write")
        got[cookie] = 1
    check(len(got) == len(slots), "every write answered once")
    order = []
    for i, s in enumerate(slots):
        c.request(CMD_READ, 9000 + i, s * 4096, 4096)
    for _ in slots:
        cookie, err, data = c.reply()
        s = slots[cookie - 9000]
        check(err == 0 and data == pattern(100 + s, 4096), f"pipelined read of slot {s}")
        order.append(cookie)
    check(sorted(order) == [9000 + i for i in range(len(slots))], "every read answered once")
    reordered = order != sorted(order)
    c.disc()

    # A WRITE longer than 32 MiB: EINVAL, then the server disconnects (as qemu-nbd)
    # instead of reading up to 4 GiB of payload.
    snapshot = file_read(path, 0, 1 << 20)
    for length in ((32 << 20) + 4096, 0xFFFFFFF0):
        c = Conn(port)
        c.connect_go()
        try:
            c.request(CMD_WRITE, 77, 0, length, 0, b"\xee" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            # The server may close as soon as it has the header: the rest of the payload
            # then cannot be sent (a Unix socket sends it in pieces of about 36 KiB, and
            # the server can run between two), while its reply stays readable.
            c.pending[77] = 0
        cookie, err, _ = c.reply()
        check(cookie == 77 and err == EINVAL, f"WRITE of {length:#x} bytes: error {err}, expected EINVAL")
        check(c.is_closed(), f"WRITE of {length:#x} bytes: the server disconnects")
    check(file_read(path, 0, 1 << 20) == snapshot, "file unchanged by oversized writes")

    # A bad magic number closes that connection only.
    c = Conn(port)
    c.connect_go()
    c.s.sendall(struct.pack(">IHHQQI", 0xDEADBEEF, 0, CMD_READ, 1, 0, 512))
    check(c.is_closed(), "bad request magic closes the connection")
    # Truncated header, then close.
    c = Conn(port)
    c.connect_go()
    c.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, 1, 0, 512)[:11])
    c.s.close()
    # Truncated write payload: the write must not happen.
    c = Conn(port)
    c.connect_go()
    before = file_read(path, 2 << 20, 4096)
    c.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 1, 2 << 20, 4096) + b"\xaa" * 100)
    c.s.close()
    # Truncated handshake.
    c = Conn(port)
    c.greeting()
    c.s.sendall(struct.pack(">QI", IHAVEOPT, OPT_GO)[:10])
    c.s.close()
    c = Conn(port)
    c.connect_go()
    err, data = c.call(CMD_READ, 2 << 20, 4096)
    check(err == 0 and data == before, "a truncated write changed nothing")
    c.disc()
    return fua_sent, reordered


def test_fua_all(port):
    """NBD_CMD_FLAG_FUA is valid on every command once NBD_FLAG_SEND_FUA is negotiated:
    the server MUST accept it (even by ignoring it), structured replies and
    base:allocation selected so that BLOCK_STATUS is valid too."""
    c = Conn(port)
    c.greeting()
    c.option(OPT_STRUCTURED)
    check(c.opt_reply(OPT_STRUCTURED)[0] == REP_ACK, "structured replies")
    q = b"base:allocation"
    c.option(OPT_SET_META, struct.pack(">II", 0, 1) + struct.pack(">I", len(q)) + q)
    while c.opt_reply(OPT_SET_META)[0] != REP_ACK:
        pass
    rtype, size, tflags = c.info_go(OPT_GO)
    check(rtype == REP_ACK and tflags & TF_FUA, f"GO: {rtype:#x}, tflags {tflags:#x}")
    for cmd, name, off, n, payload in ((CMD_READ, "READ", 0, 512, b""), (CMD_WRITE, "WRITE", 0, 512, b"f" * 512),
                                       (CMD_FLUSH, "FLUSH", 0, 0, b""), (CMD_TRIM, "TRIM", 65536, 4096, b""),
                                       (CMD_CACHE, "CACHE", 0, 4096, b""), (CMD_WZ, "WRITE_ZEROES", 65536, 4096, b""),
                                       (CMD_BS, "BLOCK_STATUS", 0, 4096, b"")):
        cookie = 100 + cmd
        c.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, FLAG_FUA, cmd, cookie, off, n) + payload)
        err = 0
        while True:  # simple reply, or structured chunks up to the one flagged DONE
            magic, = struct.unpack(">I", c.recv_exact(4))
            if magic == SIMPLE_MAGIC:
                e, ck = struct.unpack(">IQ", c.recv_exact(12))
                check(ck == cookie, f"{name}: reply cookie")
                err = e
                if e == 0 and cmd == CMD_READ:
                    c.recv_exact(n)
                break
            check(magic == 0x668E33EF, f"{name}: reply magic {magic:#x}")
            flags, ctype, ck, ln = struct.unpack(">HHQI", c.recv_exact(16))
            check(ck == cookie, f"{name}: chunk cookie")
            d = c.recv_exact(ln)
            if ctype & 0x8000:
                err = struct.unpack(">I", d[:4])[0]
            if flags & 1:
                break
        check(err == 0, f"{name} with FUA: error {err}, expected success")
    c.disc()


def cmd_protocol(port, path):
    test_handshake(port)
    test_fua_all(port)
    fua_sent, reordered = test_transmission(port, path)
    fua_sent += 1  # test_fua_all's WRITE
    print(f"nbd_client protocol: OK (FUA writes sent: {fua_sent}; replies reordered: {reordered})")


def cmd_readonly(port):
    c = Conn(port)
    size, tflags = c.connect_go()
    check(tflags & TF_READ_ONLY and not tflags & TF_WZ, f"read-only tflags {tflags:#x}")
    check(c.call(CMD_WRITE, 0, 4096, payload=b"x" * 4096)[0] == EPERM, "write -> EPERM")
    # Not advertised there, but a write or trim on a read-only export SHOULD get EPERM.
    check(c.call(CMD_WZ, 0, 4096)[0] == EPERM, "write zeroes -> EPERM")
    check(c.call(CMD_WZ, 0, 4096, flags=FLAG_NO_HOLE | FLAG_FUA)[0] == EPERM, "write zeroes, NO_HOLE|FUA -> EPERM")
    check(c.call(CMD_TRIM, 0, 4096)[0] == EPERM, "trim -> EPERM")
    check(c.call(CMD_CACHE, 0, 4096)[0] == 0, "cache works")
    check(c.call(CMD_READ, 0, 4096)[0] == 0, "read works")
    check(c.call(CMD_FLUSH)[0] == 0, "flush works")
    c.disc()
    print("nbd_client readonly: OK")


def sigterm_and_wait(pid, log):
    """SIGTERM to the server, then a bounded wait until its log says it saw the signal."""
    os.kill(pid, signal.SIGTERM)
    for _ in range(400):
        if "signal: no new connections" in open(log).read():
            return
        time.sleep(0.05)
    raise AssertionError("server did not log the signal")


def cmd_shutdown(port, pid, log):
    # 64 MiB of reads and a small receive buffer: far more than the socket buffers hold,
    # so the server still has replies to send (and the connection is not idle) while
    # this client is not reading.
    c = Conn(port, rcvbuf=65536)
    size, _ = c.connect_go()
    n, length = 64, 1 << 20
    offs = [(i * length) % (size - length + 1) for i in range(n)]
    # One send: the server reads all 64 headers with one recv and submits them before it
    # replies to any, so the first reply header proves all 64 are in flight.
    c.s.sendall(b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, i + 1, offs[i], length)
                         for i in range(n)))
    c.pending.update({i + 1: length for i in range(n)})
    # Signal the server once it is working on them.
    magic, err, cookie = struct.unpack(">IIQ", c.recv_exact(16))
    check(magic == SIMPLE_MAGIC and err == 0 and cookie in c.pending, "first reply")
    sigterm_and_wait(pid, log)
    # Requests read after the signal: NBD_ESHUTDOWN (a write's payload is consumed).
    c.request(CMD_READ, 1001, 0, 4096)
    c.request(CMD_WRITE, 1002, 0, 4096, payload=b"\x99" * 4096)
    c.pending.pop(cookie)
    check(len(c.recv_exact(length)) == length, "first reply data")
    ok = 0
    for _ in range(n - 1 + 2):
        cookie, err, data = c.reply()
        if cookie > 1000:
            check(err == 108, f"request {cookie} sent after SIGTERM: error {err}, expected ESHUTDOWN")
        else:
            check(err == 0 and len(data) == length, f"in-flight read {cookie}: error {err}")
            ok += 1
    check(not c.pending, "every request answered")
    c.disc()  # a client told NBD_ESHUTDOWN disconnects
    print(f"nbd_client shutdown: OK ({ok} in-flight reads answered with data after SIGTERM, 2 later requests got ESHUTDOWN)")


def cmd_hs_shutdown(port, pid, log):
    """SIGTERM while clients negotiate: the server must not hang up on them (the protocol
    allows no hard disconnect there) but answer each further option but NBD_OPT_ABORT
    with NBD_REP_ERR_SHUTDOWN; ABORT is acknowledged, EXPORT_NAME (which has no error
    reply) closes."""
    a, b, e = Conn(port), Conn(port), Conn(port)
    a.greeting()
    a.option(OPT_STRUCTURED)
    check(a.opt_reply(OPT_STRUCTURED)[0] == REP_ACK, "structured replies before the signal")
    b.greeting()
    e.greeting()
    sigterm_and_wait(pid, log)
    time.sleep(0.1)
    for conn, what in ((a, "a"), (b, "b")):
        rtype, _, _ = conn.info_go(OPT_GO)
        check(rtype == ERR_SHUTDOWN, f"{what}: NBD_OPT_GO after SIGTERM: {rtype:#x}, expected ERR_SHUTDOWN")
    a.option(OPT_LIST)
    check(a.opt_reply(OPT_LIST)[0] == ERR_SHUTDOWN, "NBD_OPT_LIST after SIGTERM")
    a.option(99, b"xyz")
    check(a.opt_reply(99)[0] == ERR_SHUTDOWN, "an unknown option after SIGTERM")
    a.option(OPT_ABORT)
    check(a.opt_reply(OPT_ABORT)[0] == REP_ACK, "NBD_OPT_ABORT after SIGTERM is acknowledged")
    check(a.is_closed(), "the server closes after ABORT")
    e.option(OPT_EXPORT_NAME)
    check(e.is_closed(), "NBD_OPT_EXPORT_NAME after SIGTERM closes")
    b.s.close()
    print("nbd_client hs_shutdown: OK (options after SIGTERM got NBD_REP_ERR_SHUTDOWN, ABORT an ACK)")


def cmd_abandon(port):
    c = Conn(port)
    size, _ = c.connect_go()
    for i in range(200):
        c.request(CMD_READ, i, (i * 65536) % (size - 65536), 65536)
    c.s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, 7, 0, 1 << 20) + b"\x55" * 1000)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.s.close()  # reset with requests in flight and a write half sent
    print("nbd_client abandon: OK (reset with 200 reads in flight)")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cmd_flood(port, pid):
    """Options sent without reading a reply: the server must stop reading (bounded
    memory), not queue replies without limit."""
    before = rss_kib(pid)
    c = Conn(port, rcvbuf=65536)
    c.greeting()
    c.s.settimeout(3)
    chunk = struct.pack(">QII", IHAVEOPT, OPT_LIST, 0) * 4096
    sent = 0
    try:
        for _ in range(256):  # up to 16 MiB of options, 44 MiB of replies
            c.s.sendall(chunk)
            sent += len(chunk)
    except socket.timeout:
        pass
    grown = rss_kib(pid) - before
    check(sent < 256 * len(chunk), "the server stopped reading a client that reads no replies")
    check(grown < 48 * 1024, f"server RSS grew by {grown} KiB")
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.s.close()
    print(f"nbd_client flood: OK (server stopped reading after {sent >> 10} KiB of options; RSS +{grown} KiB)")


def cmd_serve_check(port):
    c = Conn(port)
    size, _ = c.connect_go()
    data = pattern(7, 65536)
    off = size - 65536
    check(c.call(CMD_WRITE, off, len(data), payload=data)[0] == 0, "write")
    check(c.call(CMD_READ, off, len(data))[1] == data, "read back")
    c.disc()
    print("nbd_client serve-check: OK")


def cmd_blkdev(port, fast):
    """A block-device export (a loop device): WRITE_ZEROES of every alignment, with and
    without NO_HOLE and FUA, reads back zero with the bytes around it intact (a block
    device's fallocate refuses ranges not aligned to its logical sector); FAST_ZERO with
    NO_HOLE succeeds where the device zeroes by command (fast = 1) and is refused with
    ENOTSUP, changing nothing, where the kernel would write zero pages (fast = 0)."""
    c = Conn(port)
    size, tflags = c.connect_go()
    check(tflags & TF_FAST_ZERO, f"tflags {tflags:#x}: no FAST_ZERO")
    # FAST_ZERO without NO_HOLE (a punch) over a write not yet flushed: a block device's
    # punch drops the range's page cache, dirty pages too, before it tries the device's
    # command; a refusal must still leave the unflushed write in place. First, while the
    # server has not learned yet what the device cannot do.
    older, newer = pattern(13, 65536), pattern(14, 65536)
    at2 = 12 << 20
    check(c.call(CMD_WRITE, at2, len(older), payload=older)[0] == 0, "write A")
    check(c.call(CMD_FLUSH, 0, 0)[0] == 0, "flush A")
    check(c.call(CMD_WRITE, at2, len(newer), payload=newer)[0] == 0, "write B (not flushed)")
    err = c.call(CMD_WZ, at2, len(newer), flags=FLAG_FAST_ZERO)[0]
    got = c.call(CMD_READ, at2, len(newer))[1]
    if err == 0:
        check(got == bytes(len(newer)), "FAST_ZERO (punch) done: reads back zero")
    else:
        check(err == ENOTSUP, f"FAST_ZERO (punch): error {err}, expected 0 or ENOTSUP")
        check(got == newer, "a refused FAST_ZERO lost an acknowledged, unflushed write"
              + (" (older data back)" if got == older else ""))
    span = 1 << 20
    model = bytearray(pattern(11, span))
    check(c.call(CMD_WRITE, 0, span, payload=bytes(model))[0] == 0, "fill")
    cases = [(4096, 8192, 0), (100, 1000, 0), (1100, 1000, FLAG_NO_HOLE), (5000, 20000, 0),
             (30001, 20000, FLAG_NO_HOLE | FLAG_FUA), (70000, 300, FLAG_FAST_ZERO),
             (200003, 4096, FLAG_FUA), (300000, 100000, 0), (511, 2, FLAG_NO_HOLE),
             (600000, 65536 + 513, FLAG_NO_HOLE)]
    for off, n, fl in cases:
        err = c.call(CMD_WZ, off, n, flags=fl)[0]
        if fl & FLAG_FAST_ZERO and err == ENOTSUP:
            continue
        check(err == 0, f"WRITE_ZEROES {off}+{n} flags {fl:#x}: error {err}")
        model[off:off + n] = bytes(n)
    check(c.call(CMD_READ, 0, span)[1] == model, "zeroed ranges read back zero, the rest intact")
    big, at = 8 << 20, 2 << 20
    data = pattern(12, big)
    check(c.call(CMD_WRITE, at, big, payload=data)[0] == 0, "fill for FAST_ZERO")
    err = c.call(CMD_WZ, at, big, flags=FLAG_NO_HOLE | FLAG_FAST_ZERO)[0]
    if fast:
        check(err == 0, f"FAST_ZERO|NO_HOLE on a device with write zeroes: error {err}")
        check(c.call(CMD_READ, at, big)[1] == bytes(big), "FAST_ZERO|NO_HOLE reads back zero")
    else:
        check(err == ENOTSUP, f"FAST_ZERO|NO_HOLE where the kernel would write zeros: error {err}, expected ENOTSUP")
        check(c.call(CMD_READ, at, big)[1] == data, "a refused FAST_ZERO changed data")
    c.disc()
    print(f"nbd_client blkdev: OK ({len(cases)} WRITE_ZEROES of mixed alignment read back; "
          f"FAST_ZERO|NO_HOLE {'done' if fast else 'refused with ENOTSUP'})")


def cmd_mixed(port, rounds, seed, zeroing=False, hole=4096):
    """Acknowledged writes must be readable, whatever mix of alignments was in flight. A
    batch is sent whole (every request pipelined, in random order), then every reply is
    collected (all must succeed), then the region is read back and compared with the
    model. Writes in a batch never overlap, but share pages: that is the case where an
    O_DIRECT write and a buffered write of the same page used to collide.

    With `zeroing`, TRIMs and WRITE_ZEROES with FAST_ZERO join the batches: a TRIM must
    zero exactly the whole `hole`-byte blocks inside its range (the server punches those
    and leaves partial blocks alone), and a FAST_ZERO refused with ENOTSUP must have
    changed nothing."""
    rnd = random.Random(seed)
    c = Conn(port)
    size, tflags = c.connect_go()
    region = min(size, 8 << 20)
    model = bytearray()
    for off in range(0, region, 1 << 20):
        err, d = c.call(CMD_READ, off, min(1 << 20, region - off))
        check(err == 0, "initial read")
        model += d
    cookie = 1
    bad_total = errors = fast_refused = trims = 0
    for rnd_i in range(rounds):
        writes = []  # (off, data, flags)
        taken = []  # intervals used in this batch

        def free(o, n):
            return all(o + n <= a or b <= o for a, b in taken)

        # Pairs on one page: a 512-aligned half and an unaligned rest.
        for page in rnd.sample(range(region // 4096), 48):
            p = page * 4096
            split = rnd.randrange(1, 8) * 512
            if not free(p, 4096):
                continue
            writes.append((p, rnd.randbytes(split), 0))
            tail = 4096 - split - rnd.randrange(1, 64)
            writes.append((p + split, rnd.randbytes(tail), rnd.choice((0, FLAG_FUA))))
            taken.append((p, p + 4096))
        # Pairs inside one 512-byte sector, both unaligned: on the direct descriptor both
        # are read-modify-writes of that sector (the second must wait for the first).
        for sec in rnd.sample(range(region // 512), 8):
            b = sec * 512
            a1 = rnd.randrange(1, 200)
            a2 = a1 + rnd.randrange(1, 100)
            e2 = rnd.randrange(a2 + 1, 511)
            if free(b, 512):
                writes.append((b + 1, rnd.randbytes(a1), rnd.choice((0, FLAG_FUA))))
                writes.append((b + a2, rnd.randbytes(e2 - a2), 0))
                taken.append((b, b + 512))
        # Anything: 1 B to 256 KiB at any offset, biased to small and to page edges.
        for _ in range(96):
            n = rnd.choice((rnd.randrange(1, 600), rnd.randrange(1, 9000), rnd.randrange(1, 256 << 10)))
            o = rnd.randrange(0, region - n)
            if rnd.random() < 0.5:
                o = (o & ~4095) + rnd.choice((0, 512, 4096 - 1, rnd.randrange(4096)))
                o = min(o, region - n)
            if free(o, n):
                taken.append((o, o + n))
                writes.append((o, rnd.randbytes(n), rnd.choice((0, 0, FLAG_FUA))))
        # WRITE_ZEROES (an int: its length), up to 2 MiB at any offset.
        for _ in range(12):
            n = rnd.choice((rnd.randrange(1, 9000), rnd.randrange(1, 2 << 20)))
            o = rnd.randrange(0, region - n)
            if free(o, n):
                taken.append((o, o + n))
                writes.append((o, n, rnd.choice((0, FLAG_FUA, FLAG_NO_HOLE))))
        # TRIM (a tuple: its length) and FAST_ZERO write zeroes, unaligned, up to 1 MiB.
        for _ in range(12 if zeroing else 0):
            n = rnd.choice((rnd.randrange(1, 3 * hole), rnd.randrange(1, 1 << 20)))
            o = rnd.randrange(0, region - n)
            if rnd.random() < 0.3:
                o = min(o & ~(hole - 1), region - n)
            if free(o, n):
                taken.append((o, o + n))
                if rnd.random() < 0.5:
                    writes.append((o, (n,), rnd.choice((0, FLAG_FUA))))
                else:
                    writes.append((o, n, FLAG_FAST_ZERO | rnd.choice((0, FLAG_NO_HOLE, FLAG_FUA))))
        # Reads (unaligned too) of ranges no write of the batch touches: the model holds
        # their content already.
        reads = []
        for _ in range(24):
            n = rnd.randrange(1, 64 << 10)
            o = rnd.randrange(0, region - n)
            if free(o, n):
                taken.append((o, o + n))
                reads.append((o, n))
        rnd.shuffle(writes)
        msg = bytearray()
        of_cookie = {}
        of_read = {}
        for o, n in reads:
            msg += struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, cookie, o, n)
            c.pending[cookie] = n
            of_read[cookie] = (o, n)
            cookie += 1
        for i, (o, d, fl) in enumerate(writes):
            if isinstance(d, int):  # WRITE_ZEROES of d bytes
                msg += struct.pack(">IHHQQI", REQ_MAGIC, fl, CMD_WZ, cookie, o, d)
            elif isinstance(d, tuple):  # TRIM of d[0] bytes
                msg += struct.pack(">IHHQQI", REQ_MAGIC, fl, CMD_TRIM, cookie, o, d[0])
            else:
                msg += struct.pack(">IHHQQI", REQ_MAGIC, fl, CMD_WRITE, cookie, o, len(d)) + d
            c.pending[cookie] = 0
            of_cookie[cookie] = i
            cookie += 1
            if i == len(writes) // 2:
                msg += struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_FLUSH, cookie, 0, 0)
                c.pending[cookie] = 0
                cookie += 1
        c.s.sendall(msg)
        failed = []
        refused = set()  # FAST_ZERO answered ENOTSUP: must have changed nothing
        for _ in range(len(writes) + len(reads) + 1):
            ck, err, data = c.reply()
            if ck in of_read:
                o, n = of_read[ck]
                check(err == 0 and data == model[o:o + n],
                      f"round {rnd_i}: read of {n} bytes at {o} (error {err})")
                continue
            if err == ENOTSUP and ck in of_cookie and writes[of_cookie[ck]][2] & FLAG_FAST_ZERO:
                refused.add(of_cookie[ck])
                fast_refused += 1
                continue
            if err:
                errors += 1
                print(f"round {rnd_i}: error {err} for a " +
                      ("write" if ck in of_cookie else "flush"))
                if ck in of_cookie:
                    failed.append(writes[of_cookie[ck]])
        for i, (o, d, _) in enumerate(writes):
            if i in refused:
                continue
            if isinstance(d, tuple):  # TRIM: whole blocks only
                lo, hi = (o + hole - 1) // hole * hole, (o + d[0]) // hole * hole
                if lo < hi:
                    model[lo:hi] = bytes(hi - lo)
                trims += 1
                continue
            if isinstance(d, int):
                d = bytes(d)
            model[o:o + len(d)] = d
        back = bytearray()
        for off in range(0, region, 1 << 20):
            err, d = c.call(CMD_READ, off, min(1 << 20, region - off))
            check(err == 0, "read back")
            back += d
        for o, d, _ in failed:  # not acknowledged: either content is fine
            n = d if isinstance(d, int) else d[0] if isinstance(d, tuple) else len(d)
            model[o:o + n] = back[o:o + n]
        if back != model:
            bad = [i for i in range(0, region, 512) if back[i:i + 512] != model[i:i + 512]]
            bad_total += len(bad)
            print(f"round {rnd_i}: {len(bad)} of {region // 512} 512-byte sectors differ "
                  f"from what was acknowledged (first at {bad[0]})")
            model[:] = back  # count each round's losses separately
    c.disc()
    check(bad_total == 0 and errors == 0,
          f"acknowledged writes lost: {bad_total} sectors differ; {errors} error replies")
    if zeroing:
        print(f"nbd_client mixed: {trims} TRIMs, {fast_refused} FAST_ZERO refused (ENOTSUP)")
    print(f"nbd_client mixed: OK ({rounds} rounds, every acknowledged byte read back)")


def cmd_idle(port, n, timeout_s):
    """n connections that never send a byte fill the connection limit; a real client is
    refused meanwhile, and served once the handshake timeout closed them."""
    idle = [Conn(port) for _ in range(n)]
    for c in idle:  # every one got its greeting: accepted, counted
        c.recv_exact(18)
    late = Conn(port)
    check(late.is_closed(), "a connection beyond --max-connections is closed at once")
    t0 = time.time()
    for c in idle:
        c.s.settimeout(timeout_s + 10)
        check(c.is_closed(), "an idle connection is closed by the handshake timeout")
    waited = time.time() - t0
    check(waited < timeout_s + 5, f"idle connections closed after {waited:.1f} s")
    cmd_serve_check(port)
    for c in idle:
        c.s.close()
    print(f"nbd_client idle: OK ({n} idle connections closed after {waited:.1f} s; then served)")


def cmd_memory(port, pid, cap_mib):
    """16 connections x 128 pipelined 1 MiB reads whose replies are not read, and one
    connection of 8 x 32 MiB reads: the server's RSS stays under the cap plus a bound
    (it stops reading requests), every reply then arrives, and RSS falls again once the
    clients are gone (pool freed, heap trimmed)."""
    base = rss_kib(pid)
    conns = []
    for i in range(16):
        c = Conn(port, rcvbuf=65536)
        c.connect_go()
        msg = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, k, (k % 48) << 20, 1 << 20)
                       for k in range(128))
        c.s.sendall(msg)
        c.pending.update({k: 1 << 20 for k in range(128)})
        conns.append(c)
    big = Conn(port, rcvbuf=65536)
    big.connect_go()
    big.s.sendall(b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, k, (k % 2) << 25, 32 << 20)
                           for k in range(8)))
    big.pending.update({k: 32 << 20 for k in range(8)})
    conns.append(big)
    peak = 0
    for _ in range(30):  # 3 s: the server takes what the cap lets it take
        peak = max(peak, rss_kib(pid))
        time.sleep(0.1)
    bound = (cap_mib + 48) * 1024
    check(peak < bound, f"server RSS {peak} KiB with {cap_mib} MiB cap (bound {bound} KiB)")
    for c in conns:  # back-pressure is no deadlock: every reply arrives
        while c.pending:
            _, err, data = c.reply()
            check(err == 0, "read under memory pressure")
        c.disc()
    time.sleep(2.5)  # idle: pool freed, heap trimmed (after 1 s)
    after = rss_kib(pid)
    check(after < base + 24 * 1024, f"server RSS {after} KiB after the clients left (was {base} KiB)")
    print(f"nbd_client memory: OK (RSS {base} -> peak {peak} -> {after} KiB, cap {cap_mib} MiB)")


def cmd_busy_shutdown(port, pid):
    """SIGTERM while 4 connections each keep 32 writes in flight, sending the next one as
    each reply arrives and stopping at the first NBD_ESHUTDOWN, as a client should: every
    request sent must get a reply (0 or ESHUTDOWN), none an EOF or a reset."""
    import threading
    results = []

    def worker(seed):
        rnd = random.Random(seed)
        c = Conn(port)
        size, _ = c.connect_go()
        cookie, sent, shut, stop = 0, 0, 0, False

        def send_one():
            nonlocal cookie, sent
            cookie += 1
            n = rnd.choice([512, 4096, 65536])
            c.request(CMD_WRITE, cookie, rnd.randrange(0, size - n), n, payload=rnd.randbytes(n))
            sent += 1
        try:
            for _ in range(32):
                send_one()
            while c.pending:
                _, err, _ = c.reply()
                check(err in (0, 108), f"write reply error {err}")
                if err == 108:
                    shut += 1
                    stop = True
                if not stop:
                    send_one()
            c.disc()
            results.append((sent, shut, None))
        except Exception as e:  # an EOF or reset with requests unanswered
            results.append((sent, shut, f"{len(c.pending)} of {sent} requests unanswered: {e!r}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGTERM)
    for t in threads:
        t.join(60)
    check(len(results) == 4, "a connection's client did not finish")
    for sent, shut, err in results:
        check(err is None, err or "")
    check(any(shut for _, shut, _ in results), "no request got NBD_ESHUTDOWN after SIGTERM")
    print("nbd_client busy_shutdown: OK (" + ", ".join(f"{s} writes/{sh} ESHUTDOWN" for s, sh, _ in results)
          + "; every request answered)")


def writes_landed(path, payload, n, each):
    """How many of `n` WRITEs of `each` bytes of `payload` at 8192 are in the file, after
    waiting up to 5 s for all of them (the server runs them after the client left)."""
    for _ in range(100):
        if file_read(path, 8192, n * each) == payload:
            break
        time.sleep(0.05)
    got = file_read(path, 8192, n * each)
    return sum(got[i * each:(i + 1) * each] == payload[i * each:(i + 1) * each] for i in range(n))


def cmd_hup_disc(addr, pid, path):
    """A client that sends a WRITE, FLUSH and DISC and closes at once, while the server is
    stopped (SIGSTOP): on a Unix socket the server then sees the data and the hang-up
    together. The WRITE must still run (NBD_CMD_DISC: handle all outstanding requests)."""
    c = Conn(addr)
    c.connect_go()
    # More requests than a connection may hold at once (512): the server must pause and
    # read on as they finish, although no reply can be delivered any more.
    n, each = 700, 16
    payload = os.urandom(n * each)  # not what the file held before
    msg = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, i + 1, 8192 + i * each, each) +
                   payload[i * each:(i + 1) * each] for i in range(n))
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(0.2)
        c.s.sendall(msg + struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_FLUSH, n + 1, 0, 0) +
                    struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, n + 2, 0, 0))
        c.s.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    ran = writes_landed(path, payload, n, each)
    check(ran == n, f"{ran} of the {n} WRITEs sent before DISC and close ran")
    d = Conn(addr)
    d.connect_go()
    err, data = d.call(CMD_READ, 8192, n * each)
    check(err == 0 and data == payload, "the server reads back the WRITEs sent before DISC")
    d.disc()
    print(f"nbd_client hup_disc: OK ({n} WRITEs + FLUSH + DISC then close: every write ran)")


def cmd_reset_disc(addr, pid, path):
    """A client that pipelines WRITEs + DISC and closes with replies unread: its close
    resets the connection (RST on TCP, ECONNRESET on a Unix socket), which the server
    sees together with the requests still queued in its socket (sent while it was
    stopped with SIGSTOP). Linux returns those before the reset: every WRITE must run."""
    c = Conn(addr)
    c.connect_go()
    # A reply left unread in our socket: our close() then resets the connection.
    c.request(CMD_WRITE, 1, 0, 16, payload=b"\x01" * 16)
    c.s.recv(1, socket.MSG_PEEK)
    n, each = 700, 16  # more than a connection holds at once (512): it pauses and reads on
    payload = os.urandom(n * each)
    msg = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, i + 2, 8192 + i * each, each) +
                   payload[i * each:(i + 1) * each] for i in range(n))
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(0.2)
        c.s.sendall(msg + struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, n + 2, 0, 0))
        if c.s.family != socket.AF_UNIX:  # until the server's kernel has every byte
            import array, fcntl, termios
            for _ in range(400):
                q = array.array("i", [0])
                fcntl.ioctl(c.s.fileno(), termios.TIOCOUTQ, q)
                if q[0] == 0:
                    break
                time.sleep(0.01)
            check(q[0] == 0, f"{q[0]} bytes never reached the stopped server")
        c.s.close()
    finally:
        os.kill(pid, signal.SIGCONT)
    ran = writes_landed(path, payload, n, each)
    check(ran == n, f"{ran} of the {n} WRITEs sent before DISC and a resetting close ran")
    cmd_serve_check(addr)
    print(f"nbd_client reset_disc: OK ({n} WRITEs + DISC then a close with a reply unread: every write ran)")


def cmd_hs_memory(port, pid, n):
    """n connections pipeline NBD_OPT_LIST during the handshake and never read the
    replies: the option replies the server holds are capped (a quarter of
    --max-buffer-bytes, 16 MiB here, with their allocation overhead), so RSS stays
    bounded, an established client's READ is not held up, and the memory goes back once
    the connections are gone."""
    base = rss_kib(pid)
    est = Conn(port)  # an established client, which they must not hold up
    est.connect_go()
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hdr = b""
        while len(hdr) < 18:
            hdr += s.recv(18 - len(hdr))
        s.sendall(struct.pack(">I", 3))
        s.setblocking(False)
        blob = struct.pack(">QII", IHAVEOPT, OPT_LIST, 0) * 4096
        for _ in range(100):
            try:
                s.send(blob)
            except BlockingIOError:
                break
        socks.append(s)
    peak = 0
    for _ in range(20):  # 2 s: the server answers what the caps let it hold
        peak = max(peak, rss_kib(pid))
        time.sleep(0.1)
    bound = base + (16 + 48) * 1024
    check(peak < bound, f"server RSS {peak} KiB with {n} handshake connections not reading (bound {bound} KiB)")
    t0 = time.monotonic()
    err, _ = est.call(CMD_READ, 0, 1 << 20)
    took = time.monotonic() - t0
    check(err == 0 and took < 2, f"an established client's READ took {took:.2f} s (error {err}) "
          "while handshake clients held option replies")
    est.disc()
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(2.5)  # idle: heap trimmed (after 1 s)
    after = rss_kib(pid)
    check(after < base + 24 * 1024, f"server RSS {after} KiB after the connections left (was {base} KiB)")
    print(f"nbd_client hs_memory: OK (RSS {base} -> peak {peak} -> {after} KiB, {n} connections)")


def cmd_fua_fallback(addr, path, out_path):
    """FUA WRITEs on a server whose engine refuses IOENG_REQ_DSYNC at submit (the test's
    LD_PRELOAD wrapper refuses the first after the server's probe): the refused write
    and the ones after it (WRITE + FDATASYNC from then on) land in the export, read back
    equal, and none of their bytes go anywhere else (the server's stdout included)."""
    c = Conn(addr)
    c.connect_go()
    payloads = [pattern(900 + i, 8192) for i in range(3)]
    for i, data in enumerate(payloads):
        err, _ = c.call(CMD_WRITE, off=8192 * (i + 1), length=len(data), flags=FLAG_FUA,
                        payload=data)
        check(err == 0, f"FUA write {i}: error {err}")
    for i, data in enumerate(payloads):
        err, back = c.call(CMD_READ, off=8192 * (i + 1), length=len(data), read_len=len(data))
        check(err == 0 and back == data, f"FUA write {i} reads back")
        check(file_read(path, 8192 * (i + 1), len(data)) == data, f"FUA write {i} is in the export")
    c.disc()
    with open(out_path, "rb") as f:
        out = f.read()
    check(all(d[:64] not in out for d in payloads), "client data on the server's stdout")


def cpu_s(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cmd_emfile(port, pid, n):
    """More connections than the server has descriptors (its RLIMIT_NOFILE is low): the
    listener stays readable, but the server must not spin on it."""
    conns = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        conns.append(s)
    time.sleep(0.3)
    c0 = cpu_s(pid)
    time.sleep(2)
    used = cpu_s(pid) - c0
    check(used < 0.3, f"server used {used:.2f} s of CPU in 2 s with accept4 failing (spinning)")
    for s in conns:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    time.sleep(0.5)
    cmd_serve_check(port)
    print(f"nbd_client emfile: OK ({n} connections beyond the fd limit: {used:.2f} s CPU in 2 s; then served)")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "protocol":
        cmd_protocol(server_addr(args[0]), args[1])
    elif cmd == "readonly":
        cmd_readonly(int(args[0]))
    elif cmd == "shutdown":
        cmd_shutdown(int(args[0]), int(args[1]), args[2])
    elif cmd == "hs_shutdown":
        cmd_hs_shutdown(int(args[0]), int(args[1]), args[2])
    elif cmd == "abandon":
        cmd_abandon(int(args[0]))
    elif cmd == "flood":
        cmd_flood(int(args[0]), int(args[1]))
    elif cmd == "mixed":
        cmd_mixed(server_addr(args[0]), int(args[1]), int(args[2]))
    elif cmd == "zeromix":
        cmd_mixed(server_addr(args[0]), int(args[1]), int(args[2]), True, int(args[3]))
    elif cmd == "idle":
        cmd_idle(int(args[0]), int(args[1]), float(args[2]))
    elif cmd == "memory":
        cmd_memory(int(args[0]), int(args[1]), int(args[2]))
    elif cmd == "emfile":
        cmd_emfile(int(args[0]), int(args[1]), int(args[2]))
    elif cmd == "busy_shutdown":
        cmd_busy_shutdown(int(args[0]), int(args[1]))
    elif cmd == "hup_disc":
        cmd_hup_disc(server_addr(args[0]), int(args[1]), args[2])
    elif cmd == "reset_disc":
        cmd_reset_disc(server_addr(args[0]), int(args[1]), args[2])
    elif cmd == "hs_memory":
        cmd_hs_memory(int(args[0]), int(args[1]), int(args[2]))
    elif cmd == "blkdev":
        cmd_blkdev(server_addr(args[0]), args[1] == "fast")
    elif cmd == "fua_fallback":
        cmd_fua_fallback(server_addr(args[0]), args[1], args[2])
    elif cmd == "serve-check":
        cmd_serve_check(server_addr(args[0]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
