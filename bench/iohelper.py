#!/usr/bin/env python3
"""I/O probes that scripts/bench.sh runs as child processes (so a hung mount can be killed).

    iohelper.py read PATH CAP_SECONDS      sequential read, 1 MiB blocks, stops at EOF or after
                                           CAP_SECONDS; prints {"bytes", "secs", "partial"}
    iohelper.py randread PATH SECONDS SEED random 4 KiB preads at 4 KiB-aligned offsets, one at a
                                           time, for SECONDS; prints {"ops", "secs", "p50_ms",
                                           "p99_ms", "mean_ms", "max_ms"}
"""

import json
import os
import random
import sys
import time

BLOCK = 1 << 20


def seq_read(path: str, cap: float) -> dict:
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    total = 0
    t0 = time.monotonic()
    deadline = t0 + cap
    partial = False
    fd = os.open(path, os.O_RDONLY)
    try:
        with os.fdopen(fd, "rb", buffering=0) as f:
            while True:
                n = f.readinto(view)
                if not n:
                    break
                total += n
                if time.monotonic() > deadline:
                    partial = True
                    break
    finally:
        secs = time.monotonic() - t0
    return {"bytes": total, "secs": secs, "partial": partial}


def rand_read(path: str, seconds: float, seed: int) -> dict:
    rng = random.Random(seed)
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    blocks = max(1, size // 4096)
    lat = []
    t0 = time.perf_counter()
    end = t0 + seconds
    try:
        while True:
            off = rng.randrange(blocks) * 4096
            a = time.perf_counter()
            data = os.pread(fd, 4096, off)
            b = time.perf_counter()
            if len(data) != min(4096, size - off):
                raise SystemExit(f"short read at {off}: {len(data)}")
            lat.append(b - a)
            if b >= end:
                break
    finally:
        os.close(fd)
    secs = time.perf_counter() - t0
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return {"ops": len(lat), "secs": secs, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "mean_ms": sum(lat) / len(lat) * 1000, "max_ms": lat[-1] * 1000}


def main(argv):
    if len(argv) >= 3 and argv[0] == "read":
        out = seq_read(argv[1], float(argv[2]))
    elif len(argv) >= 4 and argv[0] == "randread":
        out = rand_read(argv[1], float(argv[2]), int(argv[3]))
    else:
        sys.stderr.write(__doc__)
        return 2
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
