#!/usr/bin/env python3
"""I/O probes that scripts/bench.sh runs as child processes (so a hung mount can be killed).

    iohelper.py read PATH CAP_SECONDS      sequential read, 1 MiB blocks, stops at EOF or after
                                           CAP_SECONDS; prints {"bytes", "secs", "partial"}
    iohelper.py randread PATH SECONDS SEED random 4 KiB preads at 4 KiB-aligned offsets, one at a
                                           time, for SECONDS; prints {"ops", "secs", "p50_ms",
                                           "p99_ms", "mean_ms", "max_ms"}
    iohelper.py parread CAP_SECONDS PATH...
                                           the files read at the same time, one thread each
                                           (started together), 1 MiB blocks to EOF or CAP_SECONDS;
                                           prints {"bytes", "secs" (first start to last end),
                                           "partial", "files": [{"path", "bytes", "size", "secs",
                                           "partial"}]}; a read error or a file read short (EOF
                                           before its size, no cap) exits non-zero
"""

import json
import os
import random
import sys
import threading
import time

BLOCK = 1 << 20


def read_to_end(fd: int, deadline: float, progress: list) -> bool:
    """Reads `fd` to its end in 1 MiB reads (closing it), adding the bytes read to progress[0]
    as it goes; True if it stopped at `deadline` instead (a partial read)."""
    view = memoryview(bytearray(BLOCK))
    with os.fdopen(fd, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                return False
            progress[0] += n
            if time.monotonic() > deadline:
                return True


def seq_read(path: str, cap: float) -> dict:
    progress = [0]
    t0 = time.monotonic()
    partial = False
    fd = os.open(path, os.O_RDONLY)
    try:
        partial = read_to_end(fd, t0 + cap, progress)
    finally:
        secs = time.monotonic() - t0
    return {"bytes": progress[0], "secs": secs, "partial": partial}


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


def par_read(paths: list, cap: float) -> dict:
    n = len(paths)
    start = threading.Barrier(n + 1)
    out: list = [None] * n

    def worker(i):
        try:
            fd = os.open(paths[i], os.O_RDONLY)
        except OSError as e:
            out[i] = {"path": paths[i], "error": f"open: {e}"}
            start.wait()
            return
        size = os.fstat(fd).st_size
        progress = [0]
        start.wait()
        t0 = time.monotonic()
        try:
            partial = read_to_end(fd, t0 + cap, progress)
        except OSError as e:
            out[i] = {"path": paths[i], "error": f"read at {progress[0]}: {e}"}
            return
        t1 = time.monotonic()
        out[i] = {"path": paths[i], "bytes": progress[0], "size": size, "secs": t1 - t0, "end": t1,
                  "partial": partial}

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    errors = [f"{o['path']}: {o['error']}" for o in out if "error" in o]
    if errors:
        raise SystemExit("; ".join(errors))
    short = [f"{o['path']}: {o['bytes']} of {o['size']} bytes" for o in out
             if not o["partial"] and o["bytes"] != o["size"]]
    if short:
        raise SystemExit("short read: " + "; ".join(short))
    secs = max(o.pop("end") for o in out) - t0
    return {"bytes": sum(o["bytes"] for o in out), "secs": secs,
            "partial": any(o["partial"] for o in out), "files": out}


def main(argv):
    if len(argv) >= 3 and argv[0] == "read":
        out = seq_read(argv[1], float(argv[2]))
    elif len(argv) >= 4 and argv[0] == "randread":
        out = rand_read(argv[1], float(argv[2]), int(argv[3]))
    elif len(argv) >= 3 and argv[0] == "parread":
        out = par_read(argv[2:], float(argv[1]))
    else:
        sys.stderr.write(__doc__)
        return 2
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
