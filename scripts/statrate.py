#!/usr/bin/env python3
"""Cached metadata requests per second from one thread, through the daemon (issue 13, item 1).

    python3 scripts/statrate.py DIR [--seconds 3]

Stats every file of DIR in a loop with statx(AT_STATX_FORCE_SYNC), which makes the kernel ask
the filesystem (a FUSE GETATTR) even while it caches the attributes: what is measured is the
round trip through the daemon for an answer it holds, not the kernel's cache. List DIR first
(`ls -l DIR`) so that the daemon holds every answer; keep the run within the metadata TTL.
Python standard library only (statx through ctypes).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_STATX_FORCE_SYNC = 0x2000
STATX_BASIC_STATS = 0x7FF


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)  # struct statx
    names = [os.path.join(a.dir, n).encode() for n in sorted(os.listdir(a.dir))]
    if not names:
        raise SystemExit(f"{a.dir} is empty")
    flags = AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < a.seconds:
        for n in names[:1000]:
            if libc.statx(AT_FDCWD, n, flags, STATX_BASIC_STATS, buf) != 0:
                e = ctypes.get_errno()
                raise SystemExit(f"statx {n.decode()}: {os.strerror(e)}")
        done += min(1000, len(names))
    dt = time.perf_counter() - t0
    print(f"{done / dt:,.0f} forced getattr/s from one thread ({done:,} in {dt:.2f} s, {dt / done * 1e6:.1f} us each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
