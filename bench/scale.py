#!/usr/bin/env python3
"""Metadata at scale, for scripts/scale.sh (issue 13): how listing time and the daemon's memory
grow with the number of objects. Python standard library only.

For each COUNT: bench/s3server.py starts with COUNT objects (`--fill`): COUNT/10 in `big/`,
the rest in directories of 1,000 (`dNNNNN/`), and one directory of 10,000 (`ten/`). objmount
mounts the bucket; then, each on a fresh mount with the kernel's caches dropped:
  - `find MNT | wc -l`: time and time per object, the CPU time per object of the daemon and
    of the server apart, and the server's requests per object by kind;
  - `ls -f MNT/big`: time to its first line and in all;
  - `ls -l MNT/ten`: 10,000 stats;
and the daemon's VmHWM after each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request


def log(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def drop_caches() -> None:
    subprocess.run(["sync"], check=False)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def daemon_pid(mountpoint: str) -> int | None:
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 3 and argv[1] == b"mount" and argv[3] == mountpoint.encode():
            return int(d)
    return None


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hwm_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        m = re.search(r"VmHWM:\s+(\d+) kB", f.read())
    return int(m.group(1)) / 1024 if m else float("nan")


class Mount:
    def __init__(self, objmount: str, port: int, mountpoint: str, cache: str):
        self.mp = mountpoint
        env = dict(os.environ, AWS_ACCESS_KEY_ID="scale", AWS_SECRET_ACCESS_KEY="scale")
        subprocess.run([objmount, "mount", "s3://b", mountpoint, "--endpoint", f"http://127.0.0.1:{port}",
                        "--cache-dir", cache], env=env, check=True, timeout=120)
        self.objmount = objmount
        self.env = env
        self.pid = daemon_pid(mountpoint)

    def close(self) -> None:
        r = subprocess.run([self.objmount, "unmount", self.mp], env=self.env, timeout=300, check=False,
                           capture_output=True)
        if r.returncode != 0:
            subprocess.run(["fusermount3", "-uz", self.mp], check=False)


def timed(cmd: list[str]) -> tuple[float, float, int]:
    """(seconds to the first line, seconds in all, lines)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    first = None
    lines = 0
    for chunk in iter(lambda: p.stdout.read(65536), b""):
        if first is None:
            first = time.monotonic() - t0
        lines += chunk.count(b"\n")
    p.wait()
    if p.returncode != 0:
        raise SystemExit(f"{cmd} exited with {p.returncode}")
    return first or 0.0, time.monotonic() - t0, lines


def requests(port: int) -> dict:
    """The server's requests so far, by kind (bench/s3server.py's GET /-/requests)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/requests", timeout=30) as r:
        return json.loads(r.read())


def run_count(args, count: int) -> dict:
    work = tempfile.mkdtemp(prefix="objmount-scale.")
    root = tempfile.mkdtemp(prefix="objmount-scale-s3.", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    big = count // 10
    rest = count - big - 10_000
    fills = [f"b/big:{big}:{big}", f"b/ten:10000:10000", f"b/:{rest}:1000"]
    log(f"{count:,} objects: starting the server ({', '.join(fills)})")
    t0 = time.monotonic()
    server = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "s3server.py"),
                               "--root", root, "--port", "0", "--bucket", "b"] + sum((["--fill", f] for f in fills), []),
                              stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline()
    port = int(line.split(":")[-1])
    made = time.monotonic() - t0
    out = {"objects": count, "fill_s": round(made, 1)}
    mp = os.path.join(work, "mnt")
    os.mkdir(mp)
    try:
        for step in ("find", "ls_f", "ls_l"):
            drop_caches()
            m = Mount(args.objmount, port, mp, os.path.join(work, f"cache-{step}"))
            try:
                if step == "find":
                    # CPU per object, the daemon's and the server's apart: which one grows
                    # faster than the count.
                    before = (cpu_s(m.pid) if m.pid else 0.0, cpu_s(server.pid))
                    asked = requests(port)
                    first, total, lines = timed(["find", mp])
                    after = (cpu_s(m.pid) if m.pid else 0.0, cpu_s(server.pid))
                    # Requests per object by kind ("HEAD object", "GET bucket" = a listing page).
                    for kind, n in sorted(requests(port).items()):
                        per = (n - asked.get(kind, 0)) / max(1, lines)
                        out["find_" + kind.lower().replace(" ", "_") + "_per_object"] = round(per, 3)
                    out.update(find_s=round(total, 2), find_lines=lines,
                               find_us_per_object=round(total / max(1, lines) * 1e6, 1),
                               find_daemon_cpu_us_per_object=round((after[0] - before[0]) / max(1, lines) * 1e6, 1),
                               find_server_cpu_us_per_object=round((after[1] - before[1]) / max(1, lines) * 1e6, 1))
                elif step == "ls_f":
                    first, total, lines = timed(["ls", "-f", os.path.join(mp, "big")])
                    out.update(ls_f_first_line_s=round(first, 3), ls_f_s=round(total, 2), ls_f_lines=lines)
                else:
                    first, total, lines = timed(["ls", "-l", os.path.join(mp, "ten")])
                    out.update(ls_l_10000_s=round(total, 2))
                out[f"{step}_hwm_mib"] = round(hwm_mib(m.pid), 1) if m.pid else None
            finally:
                m.close()
            log(f"{count:,} objects, {step}: " + json.dumps({k: v for k, v in out.items() if k.startswith(step)}))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--objmount", required=True)
    ap.add_argument("counts", nargs="*", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    results = [run_count(args, n) for n in args.counts]
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
