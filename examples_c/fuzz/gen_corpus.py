#!/usr/bin/env python3
"""Writes the seed corpus of ioeng_nbd_fuzz (fuzz/corpus/): one file per client session,
in the harness's format (flags byte, chunk byte, bytes to send; see ioeng_nbd_fuzz.c).
The corpus is committed; rerun this after changing it:  python3 gen_corpus.py corpus"""
import os
import struct
import sys

IHAVEOPT = 0x49484156454F5054
REQ = 0x25609513
GO, INFO, LIST, ABORT, EXPORT_NAME, STRUCTURED = 7, 6, 3, 2, 1, 8
LIST_META, SET_META = 9, 10
READ, WRITE, DISC, FLUSH, TRIM, CACHE, WZ, BLOCK_STATUS = 0, 1, 2, 3, 4, 5, 6, 7
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16
HS = 0, 0  # flags byte, chunk byte


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def go(name=b"", infos=(3,)):
    d = struct.pack(">I", len(name)) + name + struct.pack(">H", len(infos))
    return opt(GO, d + b"".join(struct.pack(">H", i) for i in infos))


def req(cmd, off=0, length=0, flags=0, payload=b"", cookie=1):
    return struct.pack(">IHHQQI", REQ, flags, cmd, cookie, off, length) + payload


def meta(*queries, name=b""):
    return (struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries)) +
            b"".join(struct.pack(">I", len(q)) + q for q in queries))


def session(flags, chunk, body):
    return bytes([flags, chunk]) + body


def main(out):
    os.makedirs(out, exist_ok=True)
    hello = struct.pack(">I", 3)
    seeds = {
        "go_rw": session(0, 0, hello + go() + req(WRITE, 4096, 4096, 0, b"\x5a" * 4096) +
                         req(READ, 4096, 4096, cookie=2) + req(FLUSH, cookie=3) + req(DISC)),
        "go_unaligned": session(2, 0, req(WRITE, 1000, 3000, FUA, b"\x11" * 3000) +
                                req(WRITE, 4096 + 512, 512, 0, b"\x22" * 512, cookie=2) +
                                req(READ, 999, 3333, cookie=3) +
                                req(WZ, 5000, 70000, NO_HOLE, cookie=4) + req(DISC)),
        "go_rmw_overlap": session(2, 0, req(WRITE, 100, 50, 0, b"\x01" * 50) +
                                  req(WRITE, 200, 50, FUA, b"\x02" * 50, cookie=2) +
                                  req(WZ, 120, 1000, 0, cookie=3) +
                                  req(WRITE, 0, 4096, 0, b"\x03" * 4096, cookie=4) +
                                  req(WRITE, 130, 10, 0, b"\x04" * 10, cookie=5) +
                                  req(READ, 90, 200, cookie=6) + req(DISC)),
        "go_bad": session(2, 0, req(READ, 1 << 20, 4096) + req(TRIM, 0, 4096, cookie=2) +
                          req(CACHE, cookie=3) + req(WRITE, 0, 16, 1 << 9, b"\0" * 16, cookie=4) +
                          req(99, cookie=5) + req(READ, 0, (32 << 20) + 1, cookie=6) +
                          req(WRITE, 0, 0xFFFFFFF0, cookie=7)),
        "go_many": session(2, 7, b"".join(req(READ if i % 2 else WRITE, i * 4096 + 512, 512,
                                              0, b"" if i % 2 else bytes([i]) * 512, cookie=i)
                                          for i in range(16))),
        "options": session(0, 3, hello + opt(LIST) + opt(STRUCTURED) + opt(99, b"xyz") +
                           opt(INFO, struct.pack(">IH", 0, 1) + struct.pack(">H", 1)) +
                           go(b"nope") + opt(GO, b"\0\0") + opt(ABORT)),
        "export_name": session(1, 0, struct.pack(">I", 1) + opt(EXPORT_NAME) +
                               req(READ, 0, 65536) + req(WRITE, 65536, 100, 0, b"x" * 100)),
        "bad_magic": session(2, 0, struct.pack(">IHHQQI", 0xDEADBEEF, 0, 0, 1, 0, 512)),
        "truncated": session(2, 1, req(WRITE, 8192, 4096, 0, b"\xaa" * 100)),
        "zeroing": session(2, 0, req(WRITE, 0, 65536, 0, b"\x77" * 65536) +
                           req(TRIM, 100, 20000, cookie=2) + req(TRIM, 8192, 8192, FUA, cookie=3) +
                           req(WZ, 30000, 9000, FAST_ZERO, cookie=4) +
                           req(WZ, 40000, 70000, NO_HOLE | FAST_ZERO | FUA, cookie=5) +
                           req(WRITE, 30001, 10, 0, b"\x01" * 10, cookie=6) +
                           req(CACHE, 0, 1 << 20, cookie=7) + req(CACHE, 0, 10, FUA, cookie=8) +
                           req(TRIM, 0, 4096, NO_HOLE, cookie=9) + req(READ, 0, 65536, cookie=10) +
                           req(DISC)),
        "structured": session(0, 5, hello + opt(SET_META, meta(b"base:allocation")) +
                              opt(STRUCTURED) + opt(LIST_META, meta()) +
                              opt(LIST_META, meta(b"base:")) +
                              opt(SET_META, meta(b"x-y:z", b"base:allocation")) +
                              opt(SET_META, meta(b"base:allocation")[:-2]) +
                              opt(SET_META, meta(b"base:allocation")) + go() +
                              req(WRITE, 4096, 4096, 0, b"\x33" * 4096) +
                              req(BLOCK_STATUS, 0, 1 << 20, cookie=2) +
                              req(BLOCK_STATUS, 0, 1 << 20, REQ_ONE, cookie=3) +
                              req(BLOCK_STATUS, 0, 0, cookie=4) +
                              req(BLOCK_STATUS, 1 << 40, 4096, cookie=5) +
                              req(READ, 4000, 200, DF, cookie=6) + req(READ, 0, 0, cookie=7) +
                              req(READ, 1 << 40, 512, cookie=8) + req(DISC)),
        "big_reads": session(6, 0, b"".join(req(READ, 0, 1 << 20, cookie=i) for i in range(8)) +
                             req(DISC)),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus"))
