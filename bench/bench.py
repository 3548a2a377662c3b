#!/usr/bin/env python3
"""Side-by-side benchmark: objmount against s3fs and rclone mount, same servers, same run.

Run it through scripts/bench.sh, which installs the peers and passes their paths:

    python3 bench/bench.py --objmount BIN --rclone RCLONE [--moto MOTO_SERVER] [--quick]
                           [--json OUT.json] [--envs loopback,20ms] [--systems ...]
                           [--objmount-args="--memory-limit 32M"] [--repeat 3]
    python3 bench/bench.py --cleanup WORKDIR      (what bench.sh's EXIT trap runs)

What one run does (doc/BENCHMARKS.md has the method in prose):
 1. S3 server candidates (this directory's s3server.py, `rclone serve s3`, moto, Swift's s3api)
    are probed on 127.0.0.1 with a plain client: correctness checks (206 ranges, user metadata,
    a `d/` marker next to `d/x`, copy with REPLACE, multipart) and quick speeds; the fastest
    one that passes every check serves the s3:// runs. The Swift test server
    (scripts/swift-server.sh, started by bench.sh) serves the swift:// runs.
 2. For each environment (loopback, and ~20 ms of round trip through bench/delayproxy.py),
    every server's ceiling is measured through the same proxy the mounts use, then each system
    mounts the same bucket/container and runs the fixed workload, every step under a timeout.
 3. One table per environment is printed, and the raw JSON written.

Python standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from clients import S3Client, SwiftClient  # noqa: E402

MiB = 1 << 20
S3_KEY, S3_SECRET = "benchkey", "benchsecret"
BUCKET = "objbench"          # the S3 bucket and the Swift container every system mounts
T0 = time.monotonic()


# =============================================================================================
# Sizes
# =============================================================================================

@dataclasses.dataclass
class Sizes:
    big_mib: int        # sequential write/read file
    read_cap_s: float   # each sequential read pass stops after this (figure marked partial)
    rand_s: float       # random 4 KiB reads duration
    small_files: int    # cp -r of this many 4 KiB files, then mv
    list_objects: int   # ls -l / find of a directory of this many API-created objects
    rsync_files: int    # about this many entries (files + symlinks) of /usr/share/doc
    tar_mb: float       # tarball size (uncompressed tar of source files)
    step_timeout: float  # default timeout of one step
    cat_mib: int = 20   # `cat` of one API-made object of this size, cold
    par_mib: int = 64   # PAR_FILES API-made objects of this size, read at the same time, cold
    append_mib: int = 256  # an API-made object of this size gets 1 MiB appended through the mount


# Sizes per environment and API. On s3:// at loopback they are the issue's. The Swift test
# server creates about 100 small objects per second, so on swift:// every created-file figure
# costs ten times what it costs on the S3 server: the swift:// columns use a fifth of the
# counts (the ceiling table shows the server's rate). At 20 ms every created file costs several
# round trips: that environment uses a 256 MiB file, 30 files, 300 objects, about 30 rsync
# entries, a 1 MB tarball and 10 s of random reads. The `cat` file is 20 MiB everywhere; the
# 8 files read in parallel are 64 MiB each on loopback, 16 MiB at 20 ms and in --quick (a
# sixteenth of the sequential file, but not less than 16 MiB, so that read-ahead has room). With
# those, a full run (both environments, six systems each) takes about 21 minutes on the 2-core
# VM, and bench.sh on a fresh clone (installs and release build included) about 29. Every table
# label says which sizes its columns used.
PROFILES = {
    "full": {
        "loopback": {"s3": Sizes(1024, 30, 20, 1000, 10000, 1500, 30, 240, cat_mib=20, par_mib=64),
                     "swift": Sizes(1024, 30, 20, 200, 2000, 300, 6, 240, cat_mib=20, par_mib=64)},
        "20ms": {"s3": Sizes(256, 15, 10, 30, 300, 30, 1, 120, cat_mib=20, par_mib=16),
                 "swift": Sizes(256, 15, 10, 30, 300, 30, 1, 120, cat_mib=20, par_mib=16)},
    },
    "quick": {
        "loopback": {"s3": Sizes(64, 10, 5, 200, 1000, 300, 5, 120, cat_mib=20, par_mib=16, append_mib=64),
                     "swift": Sizes(64, 10, 5, 100, 500, 150, 2.5, 120, cat_mib=20, par_mib=16, append_mib=64)},
        "20ms": {"s3": Sizes(64, 10, 5, 30, 200, 30, 0.5, 90, cat_mib=20, par_mib=16, append_mib=64),
                 "swift": Sizes(64, 10, 5, 30, 200, 30, 0.5, 90, cat_mib=20, par_mib=16, append_mib=64)},
    },
}
PAR_FILES = 8          # files read at the same time in the parallel-read step
RAND_SEED = 42         # both random-read passes use this seed: the 2nd pass asks for the same offsets
RSS_INTERVAL = 0.2     # seconds between two samples of the daemon's VmRSS
BACKENDS = ("s3", "swift")
ENV_RTT = {"loopback": 0.0, "20ms": 20.0}

SYSTEMS = {
    # name: (backend, kind, mode)
    "objmount-s3": ("s3", "objmount", None),
    # with --encryption-key-file (ks3sdk's client-side encryption): only with --systems
    "objmount-encrypted-s3": ("s3", "objmount", "encrypted"),
    "s3fs": ("s3", "s3fs", None),
    "rclone-off-s3": ("s3", "rclone", "off"),
    "rclone-full-s3": ("s3", "rclone", "full"),
    "objmount-swift": ("swift", "objmount", None),
    "rclone-off-swift": ("swift", "rclone", "off"),
    "rclone-full-swift": ("swift", "rclone", "full"),
}
# rclone's Swift backend runs in its default mode, `off` (like objmount, a file is stored when
# close returns); `full` on Swift is available with --systems but left out of the default run
# to keep it under 30 minutes (the s3:// table has both modes).
DEFAULT_SYSTEMS = ["objmount-s3", "s3fs", "rclone-off-s3", "rclone-full-s3", "objmount-swift", "rclone-off-swift"]
COLUMN = {
    "objmount-s3": "objmount", "objmount-encrypted-s3": "objmount encrypted", "s3fs": "s3fs",
    "rclone-off-s3": "rclone off",
    "rclone-full-s3": "rclone full", "objmount-swift": "objmount",
    "rclone-off-swift": "rclone off", "rclone-full-swift": "rclone full",
}


# =============================================================================================
# Small utilities
# =============================================================================================

def log(msg: str) -> None:
    el = time.monotonic() - T0
    sys.stdout.write(f"[{int(el // 60):3d}:{int(el % 60):02d}] {msg}\n")
    sys.stdout.flush()


class StepTimeout(Exception):
    pass


class StepError(Exception):
    pass


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def kill_group(pid: int, sig: int) -> None:
    """Signals the process group `pid` leads (everything here starts its children in a new
    session), or the process alone where the group cannot be signalled; one already gone is
    not an error."""
    try:
        os.killpg(pid, sig)
    except PermissionError:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    except ProcessLookupError:
        pass


def command_text(cmd) -> str:
    return cmd if isinstance(cmd, str) else " ".join(map(str, cmd))


def run(cmd, timeout: float, cwd=None, env=None, check=False, input_=None, logfile=None):
    """Runs cmd in its own session; on timeout kills the whole group and raises StepTimeout.
    Returns (rc, stdout, stderr, seconds). With logfile, output goes there instead (for
    commands that leave a daemon behind, which would hold a pipe open)."""
    t0 = time.monotonic()
    if logfile is not None:
        out_f = open(logfile, "ab")
        p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out_f, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True, shell=isinstance(cmd, str))
        out_f.close()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(p.pid, signal.SIGKILL)
            raise StepTimeout(f"{command_text(cmd)} > {timeout:.0f} s")
        if check and p.returncode != 0:
            try:
                tail = open(logfile, "rb").read()[-400:].decode(errors="replace").strip()
            except OSError:
                tail = ""
            raise StepError(f"{command_text(cmd)}: rc {p.returncode}: {tail}")
        return p.returncode, "", "", time.monotonic() - t0
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.PIPE if input_ is not None else subprocess.DEVNULL,
                         start_new_session=True, shell=isinstance(cmd, str))
    try:
        out, err = p.communicate(input_, timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p.pid, signal.SIGKILL)
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            pass  # stuck in the kernel on a dead mount: the recovery aborts the mount
        raise StepTimeout(f"{command_text(cmd)} > {timeout:.0f} s")
    secs = time.monotonic() - t0
    out = out.decode(errors="replace")
    err = err.decode(errors="replace")
    if check and p.returncode != 0:
        raise StepError(f"{command_text(cmd)}: rc {p.returncode}: "
                        f"{err.strip()[-400:]}")
    return p.returncode, out, err, secs


def drop_caches() -> None:
    try:
        subprocess.run(["sync"], timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        log(f"warning: cannot drop the page cache ({e}); cold figures are not cold")


def proc_start_time(pid: int):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def cmdline(pid: int) -> list:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def daemon_pids(mountpoint: str) -> list:
    """Processes whose command line names this mountpoint and a mount verb (the FUSE daemon)."""
    out = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        args = cmdline(int(d))
        if not args or mountpoint not in args:
            continue
        exe = os.path.basename(args[0])
        if exe in ("objmount", "s3fs", "rclone") and "unmount" not in args and alive(int(d)):
            out.append(int(d))
    return out


def objmount_pids(objmount: str, mountpoint: str) -> list:
    """The pid of the objmount daemon serving mountpoint, as `objmount status --json` says."""
    try:
        p = subprocess.run([objmount, "status", mountpoint, "--json"], capture_output=True, text=True, timeout=30)
        pid = json.loads(p.stdout)[0].get("pid") if p.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        pid = None
    return [pid] if isinstance(pid, int) else []


def fuse_mounts_under(root: str) -> list:
    out = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                sep = parts.index("-")
                mp = parts[4].replace("\\040", " ")
                if parts[sep + 1].startswith("fuse") and (mp == root or mp.startswith(root.rstrip("/") + "/")):
                    out.append(mp)
    except OSError:
        pass
    return out


def is_mounted(mp: str) -> bool:
    return mp in fuse_mounts_under(mp)


def proc_status_mib(pid: int, field: str):
    """A kB field of /proc/<pid>/status (VmHWM, VmRSS) in MiB, or None (no such process)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def vm_hwm_mib(pid: int):
    return proc_status_mib(pid, "VmHWM")


def dir_usage_mib(path) -> float:
    """Disk space the files under path take (allocated blocks: a sparse cache file counts for
    what it holds, not for its length)."""
    total = 0
    for r, _, fs in os.walk(path):
        for x in fs:
            try:
                total += os.lstat(os.path.join(r, x)).st_blocks * 512
            except OSError:
                pass
    return total / MiB


class RssSampler:
    """Samples the FUSE daemon's VmRSS every RSS_INTERVAL s in a background thread while a step
    runs (mount.pid, which follows the remounts a step makes; nothing while unmounted), and
    keeps the largest value per step. VmHWM is a high-water mark over the daemon's whole life;
    these samples say what each step took, to within the sampling interval."""

    def __init__(self, mount):
        self.m = mount
        self.lock = threading.Lock()
        self.step = None
        self.samples: list = []   # (monotonic time, MiB) of the current step
        self.by_step: dict = {}   # step -> {"max_rss_mib", "samples"}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stopped.set()
        self.thread.join(5)

    def _loop(self):
        while not self.stopped.wait(RSS_INTERVAL):
            self.sample()

    def sample(self):
        pid = self.m.pid
        v = proc_status_mib(pid, "VmRSS") if pid else None
        if v is not None:
            with self.lock:
                if self.step is not None:
                    self.samples.append((time.monotonic(), v))

    def begin(self, step: str):
        with self.lock:
            self.step, self.samples = step, []
        self.sample()

    def end(self):
        self.sample()
        with self.lock:
            step, samples = self.step, self.samples
            self.step, self.samples = None, []
        if step is not None:
            # The high-water mark after the step: the step that raised it took a peak the
            # samples may have missed.
            self.by_step[step] = {"max_rss_mib": max((v for _, v in samples), default=None),
                                  "samples": len(samples),
                                  "hwm_after_mib": vm_hwm_mib(self.m.pid) if self.m.pid else None}

    def max_since(self, t0: float) -> tuple:
        """(largest sample taken since t0 in the current step, number of such samples)."""
        with self.lock:
            vals = [v for t, v in self.samples if t >= t0]
        return max(vals, default=None), len(vals)


class Registry:
    """Every process this run starts (pid + start time, in WORK/pids) and every mountpoint,
    so that --cleanup can end exactly those even if this process is killed."""

    def __init__(self, work: Path):
        self.work = work
        self.procs: list = []
        self.lock = threading.Lock()

    def add(self, p: subprocess.Popen, name: str):
        with self.lock:
            self.procs.append((p, name))
            with open(self.work / "pids", "a") as f:
                f.write(f"{p.pid} {proc_start_time(p.pid)} {name}\n")

    def stop(self, p: subprocess.Popen, timeout: float = 10):
        if p.poll() is None:
            kill_group(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_group(p.pid, signal.SIGKILL)
                p.wait(5)

    def stop_all(self):
        for p, _ in reversed(self.procs):
            try:
                self.stop(p)
            except Exception:
                pass


def cleanup_workdir(work: str) -> None:
    """Unmounts every FUSE mount under work (killing its daemon) and ends the processes recorded
    in work/pids (only if the pid still has the recorded start time)."""
    for mp in fuse_mounts_under(work):
        pids = daemon_pids(mp)
        subprocess.run(["fusermount3", "-u", mp], stderr=subprocess.DEVNULL, timeout=30)
        if is_mounted(mp):
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["fusermount3", "-uz", mp], stderr=subprocess.DEVNULL, timeout=30)
        for pid in pids:
            for _ in range(50):
                if not alive(pid):
                    break
                time.sleep(0.1)
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    try:
        lines = open(os.path.join(work, "pids")).read().splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        parts = line.split()
        if len(parts) < 2:
            continue
        pid, start = int(parts[0]), parts[1]
        if alive(pid) and proc_start_time(pid) == start:
            kill_group(pid, signal.SIGTERM)
            for _ in range(50):
                if not alive(pid):
                    break
                time.sleep(0.1)
            if alive(pid) and proc_start_time(pid) == start:
                kill_group(pid, signal.SIGKILL)


# =============================================================================================
# Source data (made once per run from files on this machine)
# =============================================================================================

class Sources:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.info = {}

    def big(self, mib: int) -> Path:
        p = self.root / f"big-{mib}M"
        if not p.exists():
            rnd = random.Random(1)
            with open(p, "wb") as f:
                block = os.urandom(MiB)
                for i in range(mib):
                    # cheap, incompressible, and no two MiB alike
                    f.write(rnd.randbytes(16) + block[16:])
        return p

    def small(self, n: int) -> Path:
        d = self.root / f"small-{n}"
        if not d.exists():
            tmp = self.root / f".small-{n}.tmp"
            tmp.mkdir()
            for i in range(n):
                (tmp / f"f{i:05d}").write_bytes(os.urandom(4096))
            tmp.rename(d)
        return d

    def doc_tree(self, entries: int) -> tuple:
        """A copy of whole package directories of /usr/share/doc, in name order, until about
        `entries` files + symlinks. Returns (path, files, symlinks, bytes)."""
        d = self.root / f"doc-{entries}"
        if not d.exists():
            tmp = self.root / f".doc-{entries}.tmp"
            tmp.mkdir()
            count = 0
            for name in sorted(os.listdir("/usr/share/doc")):
                src = os.path.join("/usr/share/doc", name)
                if count >= entries:
                    break
                if os.path.islink(src):
                    os.symlink(os.readlink(src), tmp / name)
                    count += 1
                    continue
                n = sum(len(fs) + sum(1 for x in ds if os.path.islink(os.path.join(r, x)))
                        for r, ds, fs in os.walk(src))
                subprocess.run(["cp", "-a", src, str(tmp / name)], check=True)
                count += n
            tmp.rename(d)
        files = links = size = 0
        for r, ds, fs in os.walk(d):
            for x in ds + fs:
                p = os.path.join(r, x)
                if os.path.islink(p):
                    links += 1
                elif os.path.isfile(p):
                    files += 1
                    size += os.path.getsize(p)
        return d, files, links, size

    def tarball(self, mb: float) -> tuple:
        """An uncompressed tar of source files (Python's standard library, then C headers; no
        symlinks) of about `mb` MB. Returns (path, {member path: sha256} of regular files, files, bytes)."""
        p = self.root / f"src-{mb:g}MB.tar"
        manifest = self.root / f"src-{mb:g}MB.json"
        if not p.exists():
            limit = int(mb * 1e6)
            total = 0
            sums = {}
            tmp = self.root / f".src-{mb:g}.tar.tmp"
            with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
                done = False
                for base in ("/usr/lib/python3.11", "/usr/include"):
                    if done:
                        break
                    for r, ds, fs in os.walk(base):
                        ds[:] = sorted(x for x in ds if x not in ("__pycache__", "test", "tests",
                                                                    "config-3.11-x86_64-linux-gnu"))
                        for x in sorted(fs):
                            src = os.path.join(r, x)
                            if x.endswith((".pyc", ".so", ".a")) or not (os.path.isfile(src) or os.path.islink(src)):
                                continue
                            arc = "src/" + os.path.relpath(src, "/usr/lib" if base.startswith("/usr/lib") else "/usr")
                            if os.path.islink(src):
                                continue  # symlinks are the rsync step's business
                            ti = tar.gettarinfo(src, arc)
                            data = open(src, "rb").read()
                            sums[arc] = hashlib.sha256(data).hexdigest()
                            total += len(data)
                            with open(src, "rb") as f:
                                tar.addfile(ti, f)
                            if total >= limit:
                                done = True
                                break
                        if done:
                            break
            tmp.rename(p)
            manifest.write_text(json.dumps(sums))
        sums = json.loads(manifest.read_text())
        return p, sums, len(sums), os.path.getsize(p)


# =============================================================================================
# Servers: S3 candidates, probe, ceilings
# =============================================================================================

class S3Server:
    def __init__(self, name, endpoint, ak, sk, proc=None, note=""):
        self.name, self.endpoint, self.ak, self.sk, self.proc, self.note = name, endpoint, ak, sk, proc, note
        self.port = int(endpoint.rsplit(":", 1)[1])

    def client(self, endpoint=None, bucket=BUCKET):
        return S3Client(endpoint or self.endpoint, bucket, self.ak, self.sk)


def start_candidate(name, args, reg: Registry, work: Path):
    port = free_port()
    logf = open(work / f"server-{name}.log", "ab")
    if name == "bench-s3server":
        root = args.server_dir / "s3data"
        root.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(HERE / "s3server.py"), "--root", str(root), "--port", str(port)]
        ak, sk, note = S3_KEY, S3_SECRET, "bench/s3server.py (Python stdlib), data on " + str(root)
    elif name == "rclone-serve-s3":
        root = work / "rclone-serve-root"
        root.mkdir(exist_ok=True)
        cmd = [args.rclone, "serve", "s3", str(root), "--addr", f"127.0.0.1:{port}",
               "--auth-key", f"{S3_KEY},{S3_SECRET}", "--config", "/dev/null"]
        ak, sk, note = S3_KEY, S3_SECRET, "rclone serve s3 on a local directory"
    elif name == "moto":
        if not args.moto:
            return None
        cmd = [args.moto, "-H", "127.0.0.1", "-p", str(port)]
        ak, sk, note = S3_KEY, S3_SECRET, "moto_server (in memory)"
    elif name == "swift-s3api":
        return S3Server(name, args.swift_s3_endpoint, args.swift_user, args.swift_key,
                        note="Swift 2.30 s3api (scripts/swift-server.sh)")
    else:
        raise ValueError(name)
    p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    reg.add(p, name)
    if not wait_port(port, 60):
        reg.stop(p)
        raise StepError(f"{name} did not start; see {work}/server-{name}.log")
    return S3Server(name, f"http://127.0.0.1:{port}", ak, sk, p, note)


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def probe_checks(c: S3Client) -> dict:
    """Correctness checks a mount relies on. Each value: True, or a string saying what failed."""
    out = {}
    data = os.urandom(MiB)

    def check(name, fn):
        try:
            r = fn()
            out[name] = True if r is None else r
        except Exception as e:
            out[name] = f"{type(e).__name__}: {str(e)[:160]}"

    def ranged():
        c.put("probe/range", data)
        status, h, body = c.get_response("probe/range", (1000, 5096))
        if status != 206:
            return f"status {status} (not 206)"
        if h.get("content-range") != f"bytes 1000-5095/{len(data)}":
            return f"Content-Range {h.get('content-range')!r}"
        if body != data[1000:5096]:
            return "wrong bytes"

    def metadata():
        c.put("probe/meta", b"m", headers={"x-amz-meta-mtime": "1700000000.5", "Content-Type": "text/plain"})
        h = c.head("probe/meta")
        if (h or {}).get("x-amz-meta-mtime") != "1700000000.5":
            return "x-amz-meta-mtime not kept"

    def marker():
        c.put("probe/d/", b"")
        c.put("probe/d/x", b"x")
        keys = [k for k, _ in c.list_keys("probe/d")]
        if "probe/d/" not in keys or "probe/d/x" not in keys:
            return f"listing {keys}"
        if c.head("probe/d/") is None:
            return "HEAD d/ is 404"

    def copy():
        c.put("probe/c1", b"copy me", headers={"x-amz-meta-a": "1"})
        c.copy("probe/c1", "probe/c2", {"x-amz-metadata-directive": "REPLACE", "x-amz-meta-b": "2"})
        h = c.head("probe/c2") or {}
        if h.get("x-amz-meta-b") != "2" or "x-amz-meta-a" in h:
            return "REPLACE directive not honoured"

    def multipart():
        part = os.urandom(5 * MiB)
        c.multipart("probe/mp", [part, b"tail"])
        h = c.head("probe/mp") or {}
        if int(h.get("content-length", -1)) != len(part) + 4:
            return f"size {h.get('content-length')}"
        status, _, body = c.get_response("probe/mp", (5 * MiB - 2, 5 * MiB + 2))
        if body != part[-2:] + b"ta":
            return "wrong bytes across the part boundary"

    for name, fn in (("range 206", ranged), ("user metadata", metadata), ("dir marker d/ + d/x", marker),
                     ("copy REPLACE", copy), ("multipart", multipart)):
        check(name, fn)
    try:
        c.delete_keys([k for k, _ in c.list_keys("probe/")])
    except Exception:
        pass
    return out


def measure_ceiling(make_client, big_path: Path, big_bytes: int, small_n: int, ranged_n: int,
                    time_cap: float = 30, parallel: int = 8, cold_get=None) -> dict:
    """A plain client's figures against one server (through whatever endpoint make_client
    uses): large PUT/GET MB/s (one stream), small 4 KiB PUT/GET objects/s (one connection,
    and PUT with `parallel` connections), 4 KiB ranged GET latency."""
    c = make_client()
    out = {}
    key = "ceiling/big"
    t = timed(lambda: c.put(key, path=str(big_path), size=big_bytes))
    out["large_put_mbps"] = big_bytes / 1e6 / t
    if cold_get:
        cold_get()
        t = timed(lambda: c.get(key))
        out["large_get_cold_mbps"] = big_bytes / 1e6 / t
    t = timed(lambda: c.get(key))
    out["large_get_mbps"] = big_bytes / 1e6 / t
    payload = os.urandom(4096)
    n = 0
    t0 = time.monotonic()
    while n < small_n and time.monotonic() - t0 < time_cap:
        c.put(f"ceiling/s/{n:05d}", payload)
        n += 1
    out["small_put_per_s"] = n / (time.monotonic() - t0)
    m = 0
    t0 = time.monotonic()
    while m < n and time.monotonic() - t0 < time_cap:
        c.get(f"ceiling/s/{m:05d}")
        m += 1
    out["small_get_per_s"] = m / (time.monotonic() - t0)
    # parallel small PUTs
    counts = [0] * parallel
    stop_at = time.monotonic() + min(time_cap, 10)

    def worker(i):
        cc = make_client()
        k = 0
        while k < small_n // parallel + 1 and time.monotonic() < stop_at:
            cc.put(f"ceiling/p/{i}-{k:05d}", payload)
            k += 1
        counts[i] = k
        cc.close()

    t0 = time.monotonic()
    with ThreadPoolExecutor(parallel) as ex:
        list(ex.map(worker, range(parallel)))
    out["small_put_parallel_per_s"] = sum(counts) / (time.monotonic() - t0)
    out["parallel"] = parallel
    lat = []
    rng = random.Random(7)
    t0 = time.monotonic()
    while len(lat) < ranged_n and time.monotonic() - t0 < min(time_cap, 10):
        off = rng.randrange(big_bytes // 4096) * 4096
        a = time.perf_counter()
        c.get(key, range_=(off, off + 4096))
        lat.append(time.perf_counter() - a)
    lat.sort()
    out["ranged_4k_p50_ms"] = lat[len(lat) // 2] * 1000
    out["ranged_4k_per_s"] = len(lat) / sum(lat)
    keys = [key] + [f"ceiling/s/{i:05d}" for i in range(n)] + \
        [f"ceiling/p/{i}-{k:05d}" for i in range(parallel) for k in range(counts[i])]
    try:
        c.delete_keys(keys)
    except Exception as e:
        log(f"warning: ceiling cleanup: {e}")
    c.close()
    return out


def choose_s3_server(args, reg: Registry, work: Path, sources: Sources) -> tuple:
    """Probes each candidate; returns (chosen S3Server, probe report)."""
    report = {}
    chosen = None
    big = sources.big(64)
    for name in args.candidates:
        log(f"probe: {name}")
        try:
            srv = start_candidate(name, args, reg, work)
        except Exception as e:
            report[name] = {"error": str(e)}
            continue
        if srv is None:
            report[name] = {"error": "not installed"}
            continue
        entry = {"note": srv.note}
        try:
            c = srv.client()
            c.create_bucket(BUCKET)
            entry["checks"] = probe_checks(c)
            entry["speeds"] = measure_ceiling(srv.client, big, 64 * MiB, 100, 40, time_cap=8, parallel=4)
        except Exception as e:
            entry["error"] = f"{type(e).__name__}: {e}"
        ok = "error" not in entry and all(v is True for v in entry["checks"].values())
        entry["passes"] = ok
        if ok:
            s = entry["speeds"]
            entry["score"] = math.exp(statistics.mean(math.log(max(1e-9, s[k])) for k in (
                "large_put_mbps", "large_get_mbps", "small_put_per_s", "small_get_per_s", "ranged_4k_per_s")))
        report[name] = entry
        line = ", ".join(f"{k} {v if v is True else 'FAIL: ' + str(v)}" for k, v in entry.get("checks", {}).items())
        log(f"  {name}: {entry.get('error', '')}{line}")
        if "speeds" in entry:
            s = entry["speeds"]
            log(f"  {name}: PUT {s['large_put_mbps']:.0f} MB/s, GET {s['large_get_mbps']:.0f} MB/s, "
                f"4 KiB PUT {s['small_put_per_s']:.0f}/s, GET {s['small_get_per_s']:.0f}/s, "
                f"ranged 4 KiB p50 {s['ranged_4k_p50_ms']:.1f} ms")
        srv.entry = entry
        if ok and (chosen is None or entry["score"] > chosen.entry["score"]):
            if chosen is not None and chosen.proc is not None:
                reg.stop(chosen.proc)
            chosen = srv
        elif srv.proc is not None:
            reg.stop(srv.proc)
    if chosen is None:
        raise StepError("no S3 server candidate passed the checks: " + json.dumps(report)[:600])
    # a fresh bucket on the chosen server (the probe's bucket may hold leftovers)
    reasons = []
    for name, e in report.items():
        if name == chosen.name:
            continue
        if "error" in e:
            reasons.append(f"{name}: {e['error'][:120]}")
        elif not e["passes"]:
            bad = "; ".join(f"{k}: {' '.join(str(v).split())[:70]}" for k, v in e["checks"].items() if v is not True)
            reasons.append(f"{name} fails {bad}")
        else:
            reasons.append(f"{name} passes but scores {e['score']:.0f} vs {chosen.entry['score']:.0f}")
    why = (f"{chosen.name}: passes every check and has the best geometric mean of PUT/GET MB/s, "
           f"4 KiB PUT/GET/s and ranged-GET/s ({chosen.entry['score']:.0f}); " + "; ".join(reasons))
    log("chosen S3 server: " + why)
    return chosen, {"candidates": report, "chosen": chosen.name, "why": why}


def ensure_swift(args) -> None:
    """The Swift test server is shared (scripts/test.sh stops it when it ends): start it again
    if it went away, as bench.sh does at the start."""
    url = args.swift_auth.split("/auth/")[0] + "/info"
    try:
        with urllib.request.urlopen(url, timeout=10):
            return
    except Exception:
        pass
    log("the Swift test server is not running: starting it (scripts/swift-server.sh start)")
    r = subprocess.run([str(HERE.parent / "scripts" / "swift-server.sh"), "start"], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        raise StepError(f"scripts/swift-server.sh start failed: {r.stderr.strip()[-300:]}")
    m = re.search(r"ST_AUTH=(\S+)", r.stdout)
    if m and m.group(1) != args.swift_auth:
        raise StepError(f"the Swift server came back at {m.group(1)}, not {args.swift_auth}")


# =============================================================================================
# Proxies (latency and byte counting)
# =============================================================================================

class Proxy:
    def __init__(self, reg: Registry, work: Path, target_port: int, rtt_ms: float, name: str):
        self.port, self.control = free_port(), free_port()
        logf = open(work / f"proxy-{name}.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "delayproxy.py"), "--listen", str(self.port), "--to",
             f"127.0.0.1:{target_port}", "--rtt-ms", str(rtt_ms), "--control", str(self.control)],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        reg.add(self.proc, f"proxy-{name}")
        self.reg = reg
        if not wait_port(self.port) or not wait_port(self.control):
            raise StepError(f"proxy {name} did not start")

    def counters(self) -> dict:
        with socket.create_connection(("127.0.0.1", self.control), timeout=10) as s:
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)

    def stop(self):
        self.reg.stop(self.proc)


# =============================================================================================
# Mounts
# =============================================================================================

class Mount:
    """One system's mount at one mountpoint: up, down (clean), force_down, cold remount,
    waiting for write-back uploads (rclone full, through its rc), peak RSS over sessions."""

    def __init__(self, ctx, system: str, env_name: str):
        self.ctx = ctx
        self.system = system
        self.backend, self.kind, self.mode = SYSTEMS[system]
        self.mp = str(ctx.work / "mnt" / f"{env_name}-{system}")
        os.makedirs(self.mp, exist_ok=True)
        self.cache = ctx.work / "cache" / f"{env_name}-{system}"
        self.pid = None
        self.proc = None
        self.rc_port = None
        self.peak_rss = None
        self.env = ctx.env

    def up(self):
        if os.listdir(self.mp) and not is_mounted(self.mp):
            raise StepError(f"mountpoint {self.mp} is not empty")
        self.cache.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        e = self.env
        if self.kind == "objmount":
            if self.backend == "s3":
                env.update(AWS_ACCESS_KEY_ID=e.s3.ak, AWS_SECRET_ACCESS_KEY=e.s3.sk)
                cmd = [self.ctx.args.objmount, "mount", f"s3://{BUCKET}", self.mp, "--endpoint",
                       e.s3_endpoint, "--region", "us-east-1", "--cache-dir", str(self.cache)]
            else:
                env.update(ST_AUTH=e.swift_auth, ST_USER=self.ctx.args.swift_user, ST_KEY=self.ctx.args.swift_key)
                for k in ("OS_AUTH_URL", "OS_USERNAME", "OS_PASSWORD"):
                    env.pop(k, None)
                cmd = [self.ctx.args.objmount, "mount", f"swift://{BUCKET}", self.mp, "--cache-dir", str(self.cache)]
            if self.mode == "encrypted":
                key = self.ctx.work / "encryption.key"
                if not key.exists():
                    run([self.ctx.args.objmount, "keygen", str(key)], 30, check=True)
                cmd += ["--encryption-key-file", str(key)]
            cmd += self.ctx.args.objmount_extra
            run(cmd, 120, env=env, check=True, logfile=self.ctx.work / f"mount-{self.system}.log")
        elif self.kind == "s3fs":
            pw = self.ctx.work / "s3fs-passwd"
            pw.write_text(f"{e.s3.ak}:{e.s3.sk}\n")
            os.chmod(pw, 0o600)
            cmd = ["s3fs", BUCKET, self.mp, "-o",
                   f"url={e.s3_endpoint},use_path_request_style,passwd_file={pw},endpoint=us-east-1"]
            run(cmd, 120, env=env, check=True, logfile=self.ctx.work / f"mount-{self.system}.log")
        else:
            self.rc_port = free_port()
            remote = ("bs3" if self.backend == "s3" else "bsw") + ":" + BUCKET
            cmd = [self.ctx.args.rclone, "mount", remote, self.mp, "--config", str(e.rclone_conf),
                   "--vfs-cache-mode", self.mode, "--cache-dir", str(self.cache), "--links",
                   "--rc", "--rc-addr", f"127.0.0.1:{self.rc_port}", "--rc-no-auth",
                   "--log-level", "NOTICE", "--log-file", str(self.ctx.work / f"rclone-{self.system}.log")]
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
            self.ctx.reg.add(self.proc, f"rclone-mount-{self.system}")
        deadline = time.monotonic() + 60
        while not is_mounted(self.mp):
            if self.proc is not None and self.proc.poll() is not None:
                raise StepError(f"rclone mount exited with {self.proc.returncode}; see rclone-{self.system}.log")
            if time.monotonic() > deadline:
                raise StepError(f"{self.system}: mount did not appear within 60 s")
            time.sleep(0.05)
        if self.proc is not None:
            self.pid = self.proc.pid
        else:
            for _ in range(100):
                # objmount's daemon says its pid itself (`objmount status --json`); s3fs's is
                # found by its command line.
                pids = objmount_pids(self.ctx.args.objmount, self.mp) if self.kind == "objmount" \
                    else daemon_pids(self.mp)
                if pids:
                    self.pid = pids[0]
                    break
                time.sleep(0.05)
        if self.kind == "rclone":
            wait_port(self.rc_port, 30)

    def note_rss(self):
        if self.pid:
            v = vm_hwm_mib(self.pid)
            if v is not None:
                self.peak_rss = max(self.peak_rss or 0, v)

    def pending_uploads(self) -> int:
        if self.kind != "rclone" or self.mode == "off" or not self.rc_port:
            return 0
        req = urllib.request.Request(f"http://127.0.0.1:{self.rc_port}/vfs/stats", data=b"{}",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            st = json.loads(r.read())
        dc = st.get("diskCache") or {}
        return int(dc.get("uploadsInProgress", 0)) + int(dc.get("uploadsQueued", 0))

    def drain(self, timeout: float) -> float:
        """Waits until the write-back peer has uploaded everything; returns seconds waited."""
        t0 = time.monotonic()
        if self.kind == "objmount":
            # objmount's write-back: `objmount sync` returns once everything closed is stored.
            run([self.ctx.args.objmount, "sync", self.mp], max(1.0, timeout), check=True)
            return time.monotonic() - t0
        if self.kind != "rclone" or self.mode == "off":
            return 0.0
        time.sleep(0.2)  # let the last close reach the VFS
        while self.pending_uploads():
            if time.monotonic() - t0 > timeout:
                raise StepTimeout(f"uploads still pending after {timeout:.0f} s")
            time.sleep(0.1)
        return time.monotonic() - t0

    def down(self, timeout: float = 120):
        if not is_mounted(self.mp):
            self.pid = None
            return
        self.note_rss()
        try:
            if self.kind == "rclone":
                try:
                    self.drain(timeout)
                except Exception:
                    pass
            if self.kind == "objmount":
                run([self.ctx.args.objmount, "unmount", self.mp], timeout, check=True)
            else:
                run(["fusermount3", "-u", self.mp], 30, check=True)
            if self.pid:
                deadline = time.monotonic() + timeout
                while alive(self.pid):
                    if time.monotonic() > deadline:
                        raise StepTimeout("daemon did not exit after unmount")
                    time.sleep(0.05)
            if self.proc is not None:
                self.proc.wait(10)
        except (StepError, StepTimeout, subprocess.TimeoutExpired) as e:
            log(f"  {self.system}: clean unmount failed ({e}); forcing")
            self.force_down()
        self.pid = None
        self.proc = None

    def force_down(self):
        self.note_rss()
        pids = set(daemon_pids(self.mp))
        if self.pid:
            pids.add(self.pid)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["fusermount3", "-uz", self.mp], stderr=subprocess.DEVNULL, timeout=30)
        for pid in pids:
            for _ in range(100):
                if not alive(pid):
                    break
                time.sleep(0.05)
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.pid = None
        self.proc = None

    def clear_cache(self):
        shutil.rmtree(self.cache, ignore_errors=True)
        self.cache.mkdir(parents=True, exist_ok=True)

    def cold(self):
        """Unmount, drop the page cache and the system's own cache, mount again."""
        self.down()
        drop_caches()
        self.clear_cache()
        self.up()

    def remount_keeping_cache(self) -> float:
        """Unmount, drop the page cache, mount again; the system's cache directory stays as the
        daemon left it. Returns the disk space that directory took while unmounted (MiB)."""
        self.down()
        drop_caches()
        used = dir_usage_mib(self.cache)
        self.up()
        return used


# =============================================================================================
# Environments
# =============================================================================================

class Env:
    def __init__(self, ctx, name: str, rtt: float):
        self.name, self.rtt = name, rtt
        self.ctx = ctx
        self.s3 = ctx.s3
        self.s3_proxy = Proxy(ctx.reg, ctx.work, ctx.s3.port, rtt, f"s3-{name}")
        self.swift_proxy = Proxy(ctx.reg, ctx.work, ctx.args.swift_port, rtt, f"swift-{name}")
        self.s3_endpoint = f"http://127.0.0.1:{self.s3_proxy.port}"
        self.swift_auth = f"http://127.0.0.1:{self.swift_proxy.port}/auth/v1.0"
        self.rclone_conf = ctx.work / f"rclone-{name}.conf"
        self.rclone_conf.write_text(
            f"[bs3]\ntype = s3\nprovider = Other\nendpoint = {self.s3_endpoint}\n"
            f"access_key_id = {self.s3.ak}\nsecret_access_key = {self.s3.sk}\nregion = us-east-1\n"
            "force_path_style = true\n\n"
            f"[bsw]\ntype = swift\nauth = {self.swift_auth}\nuser = {ctx.args.swift_user}\n"
            f"key = {ctx.args.swift_key}\n")

    def proxy(self, backend):
        return self.s3_proxy if backend == "s3" else self.swift_proxy

    def api(self, backend, direct=True):
        """A plain client: direct to the server (polling) or through this env's proxy."""
        if backend == "s3":
            return self.s3.client(None if direct else self.s3_endpoint)
        auth = self.ctx.args.swift_auth if direct else self.swift_auth
        return SwiftClient(auth, self.ctx.args.swift_user, self.ctx.args.swift_key, BUCKET)

    def stop(self):
        self.s3_proxy.stop()
        self.swift_proxy.stop()


# =============================================================================================
# Fixtures made through the API (shared by every system of a server)
# =============================================================================================

def ensure_fixtures(ctx, backend: str, sizes_list, mib: int) -> None:
    c = ctx.direct_client(backend)
    c.create_bucket()
    if backend == "swift":
        c.create_bucket(BUCKET + "_segments")
    # leftovers of an interrupted run
    stale = [k for k, _ in c.list_keys("w-")]
    if stale:
        log(f"{backend}: deleting {len(stale)} objects left by an earlier run")
        c.delete_keys(stale)
    if backend == "swift":
        seg = c.list_keys("", container=BUCKET + "_segments")
        if seg:
            c.delete_keys([k for k, _ in seg], container=BUCKET + "_segments")
    key = f"fixtures/big-{mib}M"
    h = c.head(key)
    if h is None or int(h.get("content-length", -1)) != mib * MiB:
        log(f"{backend}: uploading {key}")
        c.put(key, path=str(ctx.sources.big(mib)), size=mib * MiB)
    # the `cat` object and the files read in parallel: incompressible, no two MiB alike
    wanted = [(f"fixtures/cat-{m}M", m) for m in sorted({s.cat_mib for s in sizes_list})]
    wanted += [(f"fixtures/par-{m}M-{i}", m) for m in sorted({s.par_mib for s in sizes_list}) for i in range(PAR_FILES)]
    made = []
    t0 = time.monotonic()
    for key_, m in wanted:
        h = c.head(key_)
        if h is not None and int(h.get("content-length", -1)) == m * MiB:
            continue
        block = os.urandom(MiB)
        c.put(key_, b"".join(os.urandom(16) + block[16:] for _ in range(m)))
        made.append(key_)
    if made:
        log(f"{backend}: uploaded {len(made)} objects ({', '.join(made[:3])}{', ...' if len(made) > 3 else ''}) "
            f"through the API in {time.monotonic() - t0:.1f} s")
    for n in sorted({s.list_objects for s in sizes_list}):
        prefix = f"list{n}/"
        have = c.list_keys(prefix)
        if len(have) == n:
            continue
        t0 = time.monotonic()
        if have:
            c.delete_keys([k for k, _ in have])
        names = [f"{prefix}file-{i:05d}.txt" for i in range(n)]
        body = b"x" * 100
        if backend == "swift":
            # one extract-archive request per 1000 objects (the bulk middleware)
            import io
            for i in range(0, n, 1000):
                buf = io.BytesIO()
                with tarfile.open(fileobj=buf, mode="w") as tar:
                    for name in names[i:i + 1000]:
                        ti = tarfile.TarInfo(name)
                        ti.size = len(body)
                        ti.mtime = time.time()
                        tar.addfile(ti, io.BytesIO(body))
                res = c.extract_archive(buf.getvalue())
                if res.get("Errors"):
                    raise StepError(f"extract-archive: {res['Errors'][:3]}")
        else:
            def put_range(chunk):
                cc = ctx.direct_client(backend)
                for name in chunk:
                    cc.put(name, body)
                cc.close()
            with ThreadPoolExecutor(8) as ex:
                list(ex.map(put_range, [names[i::8] for i in range(8)]))
        got = len(c.list_keys(prefix))
        if got != n:
            raise StepError(f"{backend}: {prefix} has {got} objects, not {n}")
        log(f"{backend}: created {n} objects under {prefix} through the API in {time.monotonic() - t0:.1f} s")
    c.close()


# =============================================================================================
# The workload
# =============================================================================================

FIGURES = [
    # key, label (format fields: sizes), unit, higher is better
    ("write_close_mbps", "seq write {big} MiB: to close", "MB/s", True),
    ("write_stored_mbps", "seq write {big} MiB: until stored", "MB/s", True),
    ("read_cold_mbps", "seq read cold", "MB/s", True),
    ("read_warm_mbps", "seq read warm", "MB/s", True),
    ("rand_iops", "random 4 KiB reads ({rand:g} s): IOPS", "IOPS", True),
    ("rand_p50_ms", "random 4 KiB reads: p50", "ms", False),
    ("rand_p99_ms", "random 4 KiB reads: p99", "ms", False),
    ("rand_server_mib", "random 4 KiB reads: bytes the server sent", "MiB", False),
    ("rand2_iops", "random 4 KiB reads, 2nd pass after remount ({rand:g} s): IOPS", "IOPS", True),
    ("rand2_p50_ms", "random 4 KiB reads, 2nd pass: p50", "ms", False),
    ("rand2_p99_ms", "random 4 KiB reads, 2nd pass: p99", "ms", False),
    ("rand2_server_mib", "random 4 KiB reads, 2nd pass: bytes the server sent", "MiB", False),
    ("cat_s", "cat of a {cat} MiB file, cold", "s", False),
    ("cat_ratio", "cat: bytes the server sent ÷ file size", "×", False),
    ("par_mbps", "8 files × {par} MiB read in parallel, cold: total", "MB/s", True),
    ("par_rss_mib", "8 files in parallel: daemon VmRSS, max (sampled every 0.2 s)", "MiB", False),
    ("par_hwm_mib", "8 files in parallel: daemon VmHWM after it (fresh mount)", "MiB", False),
    ("cp_s", "cp -r {small}×4 KiB files (until stored)", "s", False),
    ("mv_s", "mv of that directory", "s", False),
    ("ls_cold_s", "ls -l {list} objects, cold", "s", False),
    ("ls_warm_s", "ls -l {list} objects, warm", "s", False),
    ("ls_warm5_s", "ls -l {list} objects, warm, 5 s after the last", "s", False),
    ("find_cold_s", "find {list} objects, cold", "s", False),
    ("find_warm_s", "find {list} objects, warm", "s", False),
    ("rsync1_s", "rsync -a {rsync} entries (until stored)", "s", False),
    ("rsync2_s", "rsync -a again, no change (after remount)", "s", False),
    ("rsync2_resent", "rsync again: files re-sent", "files", False),
    ("tar_s", "tar x {tar} (until stored)", "s", False),
    ("append_s", "append 1 MiB to a {append} MiB object (`>>`, until stored)", "s", False),
    ("append_sent_mib", "append: bytes sent to the server", "MiB", False),
    ("sha_s", "sha256sum every file after remount", "s", False),
    ("sha_bad", "sha256 mismatches or missing files", "files", False),
    ("rss_mib", "peak RSS of the FUSE daemon", "MiB", False),
    ("rss_sampled_mib", "max RSS during any step (VmRSS every 0.2 s)", "MiB", False),
]


def ok(value, **extra):
    d = {"status": "ok", "value": value}
    d.update(extra)
    return d


def median_of(outs: list) -> dict:
    """One result per figure from the results of several runs of one step: the median run's
    (by value; the lower middle one of an even count), with every run's value in `runs`, in
    the order they ran. A figure that was not ok in some run keeps that run's result."""
    merged = {}
    for key in outs[0]:
        results = [o.get(key) for o in outs]
        bad = [r for r in results if not r or r.get("status") != "ok"]
        if bad:
            merged[key] = bad[0] or {"status": "error", "note": "missing in a repeated run"}
            continue
        ranked = sorted(results, key=lambda r: r["value"])
        merged[key] = dict(ranked[(len(ranked) - 1) // 2], runs=[r["value"] for r in results])
    return merged


class SystemRun:
    def __init__(self, ctx, env: Env, system: str, sizes: Sizes, fx: dict):
        self.ctx, self.env, self.system, self.s, self.fx = ctx, env, system, sizes, fx
        self.backend = SYSTEMS[system][0]
        self.m = Mount(ctx, system, env.name)
        self.prefix = f"w-{env.name}-{system}"
        self.res: dict = {}
        self.failed = set()
        self.rss = RssSampler(self.m)
        self.step_secs: dict = {}  # step -> seconds it took (remounts included)
        self.write_runs = 0  # runs of the write step so far (see s_write)

    @property
    def w(self) -> str:
        return os.path.join(self.m.mp, self.prefix)

    @property
    def encrypted(self) -> bool:
        return self.m.mode == "encrypted"

    def stored_size(self, size: int) -> int:
        """The object's size on the server for a file of `size` bytes: with encryption, the IV
        and the pad (1-16 bytes) around the ciphertext."""
        return size + 16 + (16 - size % 16) if self.encrypted and size else size

    def big_path(self) -> str:
        """The large file the read steps read: the fixture, or in an encrypted mount the file
        the write step wrote through it (the fixture was stored unencrypted)."""
        return os.path.join(self.w, "big") if self.encrypted else os.path.join(self.m.mp, self.fx["big_key"])

    def api(self):
        return self.env.api(self.backend, direct=True)

    def step(self, sid, names, fn, timeout=None, needs=(), repeated=False):
        """Runs fn(timeout) -> {figure: result}; on timeout/error marks names and recovers.
        sid names the step in the JSON's per-step RSS (rss_by_step). A `repeated` step (one
        whose runs are alike: the reads start from a cold remount, the write writes a new
        file) runs fn `--repeat` times and each figure is the median run's (see `median_of`)."""
        names = [names] if isinstance(names, str) else names
        if self.ctx.args.steps and sid not in self.ctx.args.steps:
            for n in names:
                self.res[n] = {"status": "skipped", "note": "not in --steps"}
            self.failed.update(names)
            return
        if any(n in self.failed for n in needs):
            for n in names:
                self.res[n] = {"status": "skipped", "note": "an earlier step failed"}
            self.failed.update(names)
            return
        timeout = timeout or self.s.step_timeout
        t0 = time.monotonic()
        self.rss.begin(sid)
        runs = max(1, self.ctx.args.repeat) if repeated else 1
        try:
            self._step(names, fn if runs == 1 else lambda t: median_of([fn(t) for _ in range(runs)]), timeout, t0)
        finally:
            self.rss.end()
            self.step_secs[sid] = time.monotonic() - t0

    def _step(self, names, fn, timeout, t0):
        try:
            if not is_mounted(self.m.mp):
                raise StepError("the mount is gone (lost after an earlier failure)")
            out = fn(timeout)
            if not is_mounted(self.m.mp):
                raise StepError("the mount disappeared during the step (daemon died?)")
            self.res.update(out)
            for n in names:
                if self.res.get(n, {}).get("status") != "ok":
                    self.failed.add(n)
        except StepTimeout as e:
            for n in names:
                self.res[n] = {"status": "timeout", "note": str(e)[:300]}
            self.failed.update(names)
            log(f"  {self.system}: {names[0]}: TIMEOUT ({e})")
            self.recover()
        except Exception as e:
            for n in names:
                self.res[n] = {"status": "error", "note": f"{type(e).__name__}: {str(e)[:300]}"}
            self.failed.update(names)
            log(f"  {self.system}: {names[0]}: ERROR {type(e).__name__}: {e}")
            self.recover()
        else:
            shown = ", ".join(f"{n} {fmt_result(self.res.get(n))}" for n in names)
            log(f"  {self.system}: {shown} [{time.monotonic() - t0:.1f} s]")

    def recover(self):
        try:
            self.m.force_down()
            self.m.clear_cache()
            self.m.up()
        except Exception as e:
            log(f"  {self.system}: remount after failure failed: {e}")

    # --- steps ---------------------------------------------------------------------------------

    def s_write(self, timeout):
        src = self.fx["big_src"]
        size = self.s.big_mib * MiB
        run(f"cat '{src}' > /dev/null", 120, check=True)  # the source in the page cache
        # Dirty pages of earlier work (a build, the fixtures) are written out first: mounts that
        # stage on local disk would otherwise share the disk with them.
        os.sync()
        # The same warm-up for every system, right before its write: this VM's disk writes up
        # to 5 times slower after resting a few seconds once space was freed (see the caveats),
        # and the system whose step came first after the fixtures paid it alone.
        self.warm_disk(src)
        # Repeated runs (`--repeat`) write beside the first one's file and remove theirs once
        # measured: the first one's stays (an encrypted mount's read steps read it).
        self.write_runs += 1
        name = "big" if self.write_runs == 1 else f"big-{self.write_runs}"
        dst = os.path.join(self.w, name)
        key = f"{self.prefix}/{name}"
        api = self.api()
        try:
            t0 = time.monotonic()
            rc, _, err, secs = run(["dd", f"if={src}", f"of={dst}", "bs=1M", "status=none"], timeout)
            if rc != 0:
                raise StepError(f"dd rc {rc}: {err.strip()[-300:]}")
            close_t = time.monotonic() - t0
            while True:
                h = api.head(key)
                if h is not None and int(h.get("content-length", -1)) == self.stored_size(size):
                    break
                if time.monotonic() - t0 > timeout:
                    raise StepTimeout(f"object not stored after {timeout:.0f} s")
                time.sleep(0.05)
            stored_t = time.monotonic() - t0
        finally:
            api.close()
            if self.write_runs > 1 and os.path.exists(dst):
                try:
                    os.remove(dst)
                except OSError:
                    pass
        if self.write_runs > 1:
            self.m.drain(timeout)
        return {"write_close_mbps": ok(size / 1e6 / close_t, secs=close_t),
                "write_stored_mbps": ok(size / 1e6 / stored_t, secs=stored_t)}

    def warm_disk(self, src):
        """Writes `src` to a local file beside the cache directories, removes it and syncs:
        the timed write then starts on a disk that has just been written, whichever system
        it is."""
        warm = self.ctx.work / "cache" / "warm-up"
        warm.parent.mkdir(parents=True, exist_ok=True)
        run(["dd", f"if={src}", f"of={warm}", "bs=1M", "conv=fsync", "status=none"], 120, check=True)
        warm.unlink()
        os.sync()

    def s_reads(self, timeout):
        self.m.cold()
        path = self.big_path()
        out = {}
        for name in ("read_cold_mbps", "read_warm_mbps"):
            _, o, err, _ = run([sys.executable, str(HERE / "iohelper.py"), "read", path, str(self.s.read_cap_s)],
                               self.s.read_cap_s + 60, check=True)
            r = json.loads(o)
            out[name] = ok(r["bytes"] / 1e6 / r["secs"], partial=r["partial"], bytes=r["bytes"], secs=r["secs"])
        return out

    def randread(self) -> tuple:
        """The random 4 KiB read probe on the big object: (iohelper's result, bytes the server
        sent meanwhile)."""
        path = self.big_path()
        proxy = self.env.proxy(self.backend)
        before = proxy.counters()["down"]
        _, o, _, _ = run([sys.executable, str(HERE / "iohelper.py"), "randread", path, str(self.s.rand_s),
                          str(RAND_SEED)], self.s.rand_s + 120, check=True)
        time.sleep(0.3)  # let read-ahead in flight land in the count
        sent = proxy.counters()["down"] - before
        return json.loads(o), sent

    def s_random(self, timeout):
        self.m.cold()
        r, sent = self.randread()
        return {"rand_iops": ok(r["ops"] / r["secs"], ops=r["ops"], secs=r["secs"]),
                "rand_p50_ms": ok(r["p50_ms"]), "rand_p99_ms": ok(r["p99_ms"]),
                "rand_server_mib": ok(sent / MiB, kib_per_read=sent / 1024 / max(1, r["ops"]))}

    def s_random2(self, timeout):
        """The same probe (same seed: the same offsets, in the same order) after an unmount, a
        drop of the page cache and a mount again, the system's cache directory kept: what a
        persistent cache keeps across a remount."""
        cache_mib = self.m.remount_keeping_cache()
        r, sent = self.randread()
        return {"rand2_iops": ok(r["ops"] / r["secs"], ops=r["ops"], secs=r["secs"], seed=RAND_SEED,
                                 cache_dir_mib=cache_mib),
                "rand2_p50_ms": ok(r["p50_ms"]), "rand2_p99_ms": ok(r["p99_ms"]),
                "rand2_server_mib": ok(sent / MiB, kib_per_read=sent / 1024 / max(1, r["ops"]))}

    def s_cat(self, timeout):
        self.m.cold()
        path = os.path.join(self.m.mp, self.fx["cat_key"])
        size = self.fx["cat_bytes"]
        proxy = self.env.proxy(self.backend)
        before = proxy.counters()["down"]
        rc, _, err, secs = run(f"cat {shlex.quote(path)} > /dev/null", timeout)
        if rc != 0:
            raise StepError(f"cat rc {rc}: {err.strip()[-300:]}")
        time.sleep(0.3)  # let read-ahead in flight land in the count
        sent = proxy.counters()["down"] - before
        return {"cat_s": ok(secs, mbps=size / 1e6 / secs, bytes=size),
                "cat_ratio": ok(sent / size, server_bytes=sent)}

    def s_parallel(self, timeout):
        self.m.cold()
        paths = [os.path.join(self.m.mp, k) for k in self.fx["par_keys"]]
        proxy = self.env.proxy(self.backend)
        before = proxy.counters()["down"]
        t_read = time.monotonic()
        self.rss.sample()
        cap = self.s.read_cap_s
        _, o, _, _ = run([sys.executable, str(HERE / "iohelper.py"), "parread", str(cap)] + paths,
                         cap + 60, check=True)
        self.rss.sample()
        hwm = vm_hwm_mib(self.m.pid) if self.m.pid else None
        rss_max, n = self.rss.max_since(t_read)
        time.sleep(0.3)
        sent = proxy.counters()["down"] - before
        r = json.loads(o)
        out = {"par_mbps": ok(r["bytes"] / 1e6 / r["secs"], partial=r["partial"], bytes=r["bytes"], secs=r["secs"],
                              files=len(paths), slowest_file_s=max(f["secs"] for f in r["files"]),
                              fastest_file_s=min(f["secs"] for f in r["files"]), server_mib=sent / MiB)}
        out["par_rss_mib"] = ok(rss_max, samples=n, interval_s=RSS_INTERVAL) if rss_max is not None else \
            {"status": "error", "note": "no VmRSS sample of the daemon"}
        out["par_hwm_mib"] = ok(hwm, pid=self.m.pid) if hwm is not None else \
            {"status": "error", "note": "daemon pid not found"}
        return out

    def stored_count(self, prefix: str) -> int:
        api = self.api()
        try:
            return sum(1 for k, _ in api.list_keys(prefix) if not k.endswith("/"))
        finally:
            api.close()

    def s_cp(self, timeout):
        src = self.fx["small_src"]
        t0 = time.monotonic()
        run(["cp", "-r", str(src), os.path.join(self.w, "small")], timeout, check=True)
        returned = time.monotonic() - t0
        self.m.drain(timeout - returned)
        total = time.monotonic() - t0
        n = self.stored_count(f"{self.prefix}/small/")
        if n != self.s.small_files:
            return {"cp_s": {"status": "fail", "value": total, "note": f"{n} of {self.s.small_files} objects stored"}}
        return {"cp_s": ok(total, returned_s=returned)}

    def s_mv(self, timeout):
        t0 = time.monotonic()
        run(["mv", os.path.join(self.w, "small"), os.path.join(self.w, "small-moved")], timeout, check=True)
        returned = time.monotonic() - t0
        self.m.drain(timeout - returned)
        total = time.monotonic() - t0
        moved = self.stored_count(f"{self.prefix}/small-moved/")
        left = self.stored_count(f"{self.prefix}/small/")
        if moved != self.s.small_files or left:
            return {"mv_s": {"status": "fail", "value": total,
                             "note": f"{moved} objects under the new name, {left} under the old"}}
        return {"mv_s": ok(total, returned_s=returned)}

    def s_list(self, timeout, tool):
        self.m.cold()
        d = os.path.join(self.m.mp, self.fx["list_prefix"])
        cmd = ["ls", "-l", d] if tool == "ls" else ["find", d]
        out = {}
        # `ls -l` once more 5 s after the warm one: past the kernel's old 1 s entry timeout,
        # within the metadata TTL (issue 13 asks for both).
        for phase in ("cold", "warm", "warm5") if tool == "ls" else ("cold", "warm"):
            if phase == "warm5":
                time.sleep(5)
            rc, o, err, secs = run(cmd, timeout)
            if rc != 0:
                raise StepError(f"{tool} rc {rc}: {err.strip()[-300:]}")
            lines = o.count("\n")
            want = self.s.list_objects + 1
            key = f"{tool}_{phase}_s"
            out[key] = ok(secs, lines=lines) if lines == want else \
                {"status": "fail", "value": secs, "note": f"{lines} lines, expected {want}"}
        return out

    def rsync(self, timeout):
        src = str(self.fx["doc_src"]) + "/"
        dst = os.path.join(self.w, "doc") + "/"
        t0 = time.monotonic()
        rc, o, err, _ = run(["rsync", "-a", "--stats", src, dst], timeout)
        returned = time.monotonic() - t0
        self.m.drain(timeout - returned)
        total = time.monotonic() - t0
        m = re.search(r"Number of regular files transferred: ([\d,]+)", o)
        sent = int(m.group(1).replace(",", "")) if m else None
        errors = [line for line in err.splitlines() if line.strip()]
        extra = {"rc": rc, "files_sent": sent, "returned_s": returned}
        if errors:
            extra["stderr_lines"] = len(errors)
            extra["stderr_sample"] = errors[:3]
        if rc not in (0, 23, 24) or sent is None:
            raise StepError(f"rsync rc {rc}: {err.strip()[-300:]}")
        return total, sent, rc, extra

    def s_rsync1(self, timeout):
        total, sent, rc, extra = self.rsync(timeout)
        r = ok(total, **extra)
        if rc:
            r["note"] = f"rsync rc {rc}: " + "; ".join(extra.get("stderr_sample", []))[:200]
        return {"rsync1_s": r}

    def s_rsync2(self, timeout):
        self.m.cold()
        total, sent, rc, extra = self.rsync(timeout)
        r = ok(total, **extra)
        if rc:
            r["note"] = f"rsync rc {rc}"
        return {"rsync2_s": r, "rsync2_resent": ok(sent)}

    def s_tar(self, timeout):
        d = os.path.join(self.w, "tar")
        os.mkdir(d)
        t0 = time.monotonic()
        rc, _, err, _ = run(["tar", "xf", str(self.fx["tarball"]), "-C", d], timeout)
        returned = time.monotonic() - t0
        if rc != 0:
            raise StepError(f"tar rc {rc}: {err.strip()[-300:]}")
        self.m.drain(timeout - returned)
        return {"tar_s": ok(time.monotonic() - t0, returned_s=returned)}

    def s_append(self, timeout):
        """1 MiB appended (`>>`) to an object made through the API: the time until the longer
        object is stored, and the bytes sent to the server meanwhile (the proxy's count: a
        system that uploads the whole file again sends the whole file)."""
        size = self.s.append_mib * MiB
        key = f"{self.prefix}/append/log.bin"
        api = self.api()
        api.put(key, os.urandom(size))
        self.m.cold()  # a fresh mount sees the new object (rclone keeps directory listings)
        proxy = self.env.proxy(self.backend)
        before = proxy.counters()["up"]
        t0 = time.monotonic()
        rc, _, err, _ = run(f"head -c {MiB} /dev/urandom >> {shlex.quote(os.path.join(self.w, 'append', 'log.bin'))}",
                            timeout)
        if rc != 0:
            raise StepError(f"append rc {rc}: {err.strip()[-300:]}")
        self.m.drain(timeout)
        while True:
            h = api.head(key)
            if h is not None and int(h.get("content-length", -1)) == self.stored_size(size + MiB):
                break
            if time.monotonic() - t0 > timeout:
                raise StepTimeout(f"the longer object is not stored after {timeout:.0f} s")
            time.sleep(0.05)
        secs = time.monotonic() - t0
        time.sleep(0.3)
        sent = proxy.counters()["up"] - before
        api.close()
        return {"append_s": ok(secs), "append_sent_mib": ok(sent / MiB, bytes=sent)}

    def s_sha(self, timeout):
        self.m.cold()
        d = os.path.join(self.w, "tar")
        rc, o, err, secs = run(f"cd '{d}' && find src -type f -print0 | xargs -0 -r sha256sum", timeout)
        got = {}
        for line in o.splitlines():
            h, _, p = line.partition("  ")
            got[p] = h
        want = self.fx["tar_sums"]
        bad = sorted(p for p, h in want.items() if got.get(p) != h)
        r = ok(secs, files=len(got)) if rc == 0 else {"status": "error", "value": secs, "note": err[-300:]}
        return {"sha_s": r, "sha_bad": ok(len(bad), examples=bad[:5]) if not bad else
                {"status": "fail", "value": len(bad), "note": f"{len(bad)} of {len(want)}: {bad[:3]}"}}

    # --- the whole workload ----------------------------------------------------------------------

    def run_all(self):
        t0 = time.monotonic()
        log(f"== {self.env.name}: {self.system}")
        self.rss.start()
        try:
            self.m.up()
        except Exception as e:
            log(f"  {self.system}: mount failed: {e}")
            self.m.force_down()
            for key, *_ in FIGURES:
                self.res[key] = {"status": "error", "note": f"mount failed: {e}"[:300]}
            self.rss.stop()
            return self.finish(t0)
        try:
            os.makedirs(self.w, exist_ok=True)
            self.step("write", ["write_close_mbps", "write_stored_mbps"], self.s_write,
                      timeout=max(self.s.step_timeout, self.s.big_mib / 8), repeated=True)
            self.step("read", ["read_cold_mbps", "read_warm_mbps"], self.s_reads, repeated=True)
            self.step("random", ["rand_iops", "rand_p50_ms", "rand_p99_ms", "rand_server_mib"], self.s_random)
            self.step("random2", ["rand2_iops", "rand2_p50_ms", "rand2_p99_ms", "rand2_server_mib"], self.s_random2,
                      needs=("rand_iops",))
            self.step("cat", ["cat_s", "cat_ratio"], self.s_cat)
            self.step("parallel", ["par_mbps", "par_rss_mib", "par_hwm_mib"], self.s_parallel)
            self.step("cp", "cp_s", self.s_cp)
            self.step("mv", "mv_s", self.s_mv, needs=("cp_s",))
            self.step("ls", ["ls_cold_s", "ls_warm_s", "ls_warm5_s"], lambda t: self.s_list(t, "ls"), repeated=True)
            self.step("find", ["find_cold_s", "find_warm_s"], lambda t: self.s_list(t, "find"), repeated=True)
            self.step("rsync1", "rsync1_s", self.s_rsync1)
            self.step("rsync2", ["rsync2_s", "rsync2_resent"], self.s_rsync2, needs=("rsync1_s",))
            self.step("tar", "tar_s", self.s_tar)
            self.step("sha", ["sha_s", "sha_bad"], self.s_sha, needs=("tar_s",))
            self.step("append", ["append_s", "append_sent_mib"], self.s_append)
        finally:
            self.rss.stop()
            self.m.down()
        return self.finish(t0)

    def finish(self, t0):
        if self.m.peak_rss is not None:
            self.res["rss_mib"] = ok(self.m.peak_rss)
        elif "rss_mib" not in self.res:
            self.res["rss_mib"] = {"status": "error", "note": "daemon pid not found"}
        # the largest VmRSS sample of each step, and of all of them
        self.res["rss_by_step"] = self.rss.by_step
        self.res["step_s"] = self.step_secs
        sampled = [(v["max_rss_mib"], k) for k, v in self.rss.by_step.items() if v["max_rss_mib"] is not None]
        if sampled:
            top, where = max(sampled)
            self.res["rss_sampled_mib"] = ok(top, step=where, interval_s=RSS_INTERVAL)
        elif "rss_sampled_mib" not in self.res:
            self.res["rss_sampled_mib"] = {"status": "error", "note": "no VmRSS sample of the daemon"}
        # the system's objects go, so the next system starts from the same server state
        try:
            api = self.api()
            keys = [k for k, _ in api.list_keys(self.prefix + "/")]
            keys += [k for k, _ in api.list_keys(self.prefix)]  # the directory marker itself
            if keys:
                api.delete_keys(sorted(set(keys)))
            if self.backend == "swift":
                seg = api.list_keys("", container=BUCKET + "_segments")
                if seg:
                    api.delete_keys([k for k, _ in seg], container=BUCKET + "_segments")
            api.close()
        except Exception as e:
            log(f"  {self.system}: cleanup of {self.prefix}: {e}")
        elapsed = time.monotonic() - t0
        self.res["elapsed_s"] = elapsed
        log(f"== {self.env.name}: {self.system} done in {elapsed:.0f} s")
        return self.res


# =============================================================================================
# Output
# =============================================================================================

def fmt_num(v) -> str:
    if v is None:
        return "?"
    if not isinstance(v, (int, float)):
        return " ".join(str(v).split())[:80]
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) >= 100):
        return f"{int(v):,}"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def fmt_result(r) -> str:
    if not r:
        return "—"
    st = r.get("status")
    if st == "ok":
        s = fmt_num(r.get("value"))
        if r.get("partial"):
            s += "*"
        if r.get("rc"):
            s += "!"
        return s
    if st == "fail":
        return f"FAIL ({fmt_num(r.get('value'))})" if r.get("value") is not None else "FAIL"
    if st == "skipped":
        return "skipped"
    return st or "?"


def labels(sizes: Sizes, fx: dict) -> dict:
    return {"big": sizes.big_mib, "rand": sizes.rand_s, "small": f"{sizes.small_files:,}",
            "list": f"{sizes.list_objects:,}", "rsync": f"{fx['doc_entries']:,}",
            "tar": f"{fx['tar_bytes'] / 1e6:.0f} MB, {fx['tar_files']:,} files",
            "cat": sizes.cat_mib, "par": sizes.par_mib, "append": sizes.append_mib}


def ratio(results: dict, om: str, peers: list, key: str, higher: bool):
    r = results.get(om, {}).get(key)
    if not r or r.get("status") != "ok" or not isinstance(r.get("value"), (int, float)):
        return "—"
    vals = [results[p][key]["value"] for p in peers
            if results.get(p, {}).get(key, {}).get("status") == "ok"
            and isinstance(results[p][key].get("value"), (int, float))]
    if not vals:
        return "—"
    best = max(vals) if higher else min(vals)
    if best == 0:
        return "—" if r["value"] == 0 else "∞"
    q = r["value"] / best
    return f"{q:.2f}" if 0.1 <= q < 100 else f"{q:.2g}"


def row_label(label: str, lab: dict) -> str:
    """The figure's label with the s3:// sizes, and the swift:// ones where they differ."""
    main = lab.get("s3") or lab.get("swift")
    text = label.format(**main)
    if "s3" in lab and "swift" in lab:
        fields = [f for f in re.findall(r"{(\w+)", label) if lab["s3"][f] != lab["swift"][f]]
        if fields:
            text += " [swift: " + ", ".join(str(lab["swift"][f]) for f in fields) + "]"
    return text


def table(env_name: str, results: dict, sizes: dict, fx: dict, systems: list) -> str:
    s3 = [s for s in systems if SYSTEMS[s][0] == "s3"]
    sw = [s for s in systems if SYSTEMS[s][0] == "swift"]
    head = ["figure"]
    for group, name in ((s3, "s3"), (sw, "swift")):
        if group:
            head += [f"{name}: {COLUMN[s]}" if i == 0 else COLUMN[s] for i, s in enumerate(group)]
            head.append("objmount ÷ best peer")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lab = {b: labels(sizes[b], fx[b]) for b in sizes if b in fx}
    for key, label, unit, higher in FIGURES:
        row = [f"{row_label(label, lab)} ({unit} {'↑' if higher else '↓'})"]
        for group in (s3, sw):
            if not group:
                continue
            cells = [fmt_result(results.get(s, {}).get(key)) for s in group]
            if unit == "×":
                cells = [c + "×" if results.get(s, {}).get(key, {}).get("status") == "ok" else c
                         for s, c in zip(group, cells)]
            row += cells
            om = [s for s in group if SYSTEMS[s][1] == "objmount"]
            peers = [s for s in group if SYSTEMS[s][1] != "objmount"]
            row.append(ratio(results, om[0], peers, key, higher) if om and peers and key != "sha_bad" else "—")
        rows.append("| " + " | ".join(row) + " |")
    row = ["elapsed for this system (s)"]
    for group in (s3, sw):
        if group:
            row += [fmt_num(results.get(s, {}).get("elapsed_s")) for s in group] + [""]
    rows.append("| " + " | ".join(row) + " |")
    return "\n".join(rows)


def ceiling_table(ceilings: dict) -> str:
    cols = [("large_put_mbps", "large PUT MB/s"), ("large_get_cold_mbps", "large GET MB/s (server cache dropped)"),
            ("large_get_mbps", "large GET MB/s"), ("small_put_per_s", "4 KiB PUT/s"),
            ("small_put_parallel_per_s", "4 KiB PUT/s, 8 conns"), ("small_get_per_s", "4 KiB GET/s"),
            ("ranged_4k_p50_ms", "4 KiB ranged GET p50 ms")]
    rows = ["| server | " + " | ".join(c[1] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for name, c in ceilings.items():
        if "error" in c:
            rows.append(f"| {name} | error: {c['error'][:80]} |" + " |" * (len(cols) - 1))
            continue
        rows.append(f"| {name} | " + " | ".join(fmt_num(c.get(k)) if k in c else "—" for k, _ in cols) + " |")
    return "\n".join(rows)


def probe_table(report: dict) -> str:
    rows = ["| candidate | checks | PUT MB/s | GET MB/s | 4 KiB PUT/s | 4 KiB GET/s | ranged 4 KiB p50 ms |",
            "|---|---|---|---|---|---|---|"]
    for name, e in report["candidates"].items():
        if "error" in e and "checks" not in e:
            rows.append(f"| {name} | {e['error'][:80]} | | | | | |")
            continue
        bad = [f"{k}: {' '.join(str(v).split())[:60]}" for k, v in e.get("checks", {}).items() if v is not True]
        checks = "all pass" if not bad else "FAIL " + "; ".join(bad).replace("|", "/")
        s = e.get("speeds", {})
        rows.append(f"| {name}{' (chosen)' if name == report['chosen'] else ''} | {checks[:240]} | "
                    + " | ".join(fmt_num(s.get(k)) for k in ("large_put_mbps", "large_get_mbps", "small_put_per_s",
                                                             "small_get_per_s", "ranged_4k_p50_ms")) + " |")
    return "\n".join(rows)


def machine_info() -> dict:
    info = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "kernel": platform.release(), "cores": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        info["load_at_start"] = open("/proc/loadavg").read().split()[:3]
    except OSError:
        pass
    return info


def versions(args) -> dict:
    def first_line(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except Exception as e:
            return f"? ({e})"
    v = {"objmount": first_line(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"]),
         "s3fs": first_line(["s3fs", "--version"]),
         "rclone": first_line([args.rclone, "version"]),
         "swift": first_line(["dpkg-query", "-W", "-f", "${Version}", "swift-proxy"]),
         "fuse3": first_line(["dpkg-query", "-W", "-f", "${Version}", "fuse3"]),
         "python": platform.python_version()}
    return v


# =============================================================================================
# Main
# =============================================================================================

class Ctx:
    pass


def parse_args(argv):
    ap = argparse.ArgumentParser(description="objmount vs s3fs and rclone mount (see doc/BENCHMARKS.md)")
    ap.add_argument("--cleanup", metavar="WORKDIR", help="unmount and stop what a run left in WORKDIR, then exit")
    ap.add_argument("--objmount")
    ap.add_argument("--rclone")
    ap.add_argument("--moto", default="")
    ap.add_argument("--quick", action="store_true", help="small sizes (a trial, minutes)")
    ap.add_argument("--envs", default="loopback,20ms")
    ap.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                    help=f"comma-separated, from {', '.join(SYSTEMS)} (default: all but rclone-full-swift, "
                    "which adds about 5 minutes)")
    ap.add_argument("--candidates", default="bench-s3server,rclone-serve-s3,moto,swift-s3api",
                    help="S3 servers to probe (comma-separated)")
    ap.add_argument("--work", help="work directory (default: a new /tmp/objmount-bench.*)")
    ap.add_argument("--server-dir", help="where the bench S3 server keeps data (default /dev/shm if "
                    "it has room, else the work directory)")
    ap.add_argument("--json", help="write the raw results here (default WORK/results.json)")
    ap.add_argument("--markdown", help="also write the tables here")
    ap.add_argument("--swift-auth", default=os.environ.get("ST_AUTH", "http://127.0.0.1:8080/auth/v1.0"))
    ap.add_argument("--swift-user", default=os.environ.get("ST_USER", "test:tester"))
    ap.add_argument("--swift-key", default=os.environ.get("ST_KEY", "testing"))
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every count and size (trials)")
    ap.add_argument("--steps", default="", type=lambda v: [x for x in v.split(",") if x],
                    help="only these steps (comma-separated: write,read,random,random2,cat,parallel,cp,mv,ls,find,"
                    "rsync1,rsync2,tar,sha,append; default all), e.g. to repeat a few figures")
    ap.add_argument("--repeat", type=int, default=3, metavar="N",
                    help="run the write, read, ls and find steps N times each (the reads every time from a cold "
                    "remount; each repeated write to a new file, removed once measured) and show the median run's "
                    "figures (default 3; 1: once)")
    ap.add_argument("--objmount-args", default="", metavar="ARGS",
                    help="extra arguments appended to every `objmount mount` command, as one shell-quoted "
                    "string, e.g. --objmount-args='--memory-limit 32M' (recorded in the JSON and the header)")
    a = ap.parse_args(argv)
    try:
        a.objmount_extra = shlex.split(a.objmount_args)
    except ValueError as e:
        ap.error(f"--objmount-args: {e}")
    a.candidates = [c for c in a.candidates.split(",") if c]
    a.envs = [e for e in a.envs.split(",") if e]
    a.systems = [s for s in a.systems.split(",") if s]
    for s in a.systems:
        if s not in SYSTEMS:
            ap.error(f"unknown system {s}; known: {', '.join(SYSTEMS)}")
    for e in a.envs:
        if e not in ENV_RTT:
            ap.error(f"unknown environment {e}; known: {', '.join(ENV_RTT)}")
    if not a.cleanup and not (a.objmount and a.rclone):
        ap.error("--objmount and --rclone are required")
    swift = a.swift_auth.split("/auth/")[0]
    a.swift_s3_endpoint = swift
    a.swift_port = int(swift.rsplit(":", 1)[1])
    return a


def main(argv=None) -> int:
    args = parse_args(argv if argv is not None else sys.argv[1:])
    if args.cleanup:
        cleanup_workdir(args.cleanup)
        return 0
    work = Path(args.work) if args.work else Path(subprocess.check_output(
        ["mktemp", "-d", "/tmp/objmount-bench.XXXXXX"], text=True).strip())
    work.mkdir(parents=True, exist_ok=True)
    if args.server_dir:
        args.server_dir = Path(args.server_dir)
    else:
        shm = shutil.disk_usage("/dev/shm").free if os.path.isdir("/dev/shm") else 0
        args.server_dir = Path(subprocess.check_output(["mktemp", "-d", "/dev/shm/objmount-bench-s3.XXXXXX"], text=True)
                               .strip()) if shm > 6 * (1 << 30) else work
    profile = PROFILES["quick" if args.quick else "full"]
    # sizes[env][backend]
    sizes = {e: dict(profile[e]) for e in args.envs}
    if args.scale != 1.0:
        for e in sizes:
            for b, s in sizes[e].items():
                sizes[e][b] = Sizes(max(8, int(s.big_mib * args.scale)), s.read_cap_s, max(2, s.rand_s * args.scale),
                                    max(10, int(s.small_files * args.scale)), max(10, int(s.list_objects * args.scale)),
                                    max(10, int(s.rsync_files * args.scale)), max(0.5, s.tar_mb * args.scale),
                                    s.step_timeout, cat_mib=max(1, int(s.cat_mib * args.scale)),
                                    par_mib=max(1, int(s.par_mib * args.scale)))
    ctx = Ctx()
    ctx.args, ctx.work = args, work
    ctx.reg = Registry(work)
    result = {"machine": machine_info(), "versions": versions(args), "profile": "quick" if args.quick else "full",
              "command": " ".join([os.path.basename(sys.argv[0])] + [shlex.quote(a) for a in
                                                                      (argv if argv is not None else sys.argv[1:])]),
              "objmount_args": args.objmount_args, "objmount_args_split": args.objmount_extra,
              "repeat": args.repeat, "sizes": {e: {b: dataclasses.asdict(s) for b, s in by.items()} for e, by in sizes.items()}, "envs": {}}
    json_path = Path(args.json) if args.json else work / "results.json"
    log(f"work directory {work}; S3 server data in {args.server_dir}; results -> {json_path}")
    log(f"machine: {result['machine']}")
    log(f"versions: {result['versions']}")
    log(f"objmount mount extra arguments (--objmount-args): {args.objmount_args or 'none'}")

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    rc = 0
    try:
        ctx.sources = Sources(work / "src")
        log("preparing source data")
        backends = sorted({SYSTEMS[s][0] for s in args.systems})
        biggest = max(x.big_mib for by in sizes.values() for x in by.values())
        fx_by_env = {}  # [env][backend]
        for e, by in sizes.items():
            fx_by_env[e] = {}
            for b in backends:
                s = by[b]
                doc, files, links, doc_bytes = ctx.sources.doc_tree(s.rsync_files)
                tarball, sums, tar_files, tar_bytes = ctx.sources.tarball(s.tar_mb)
                fx_by_env[e][b] = {
                    "big_src": ctx.sources.big(s.big_mib), "small_src": ctx.sources.small(s.small_files),
                    "doc_src": doc, "doc_entries": files + links, "doc_files": files, "doc_links": links,
                    "doc_bytes": doc_bytes, "tarball": tarball, "tar_sums": sums, "tar_files": tar_files,
                    "tar_bytes": tar_bytes, "big_key": f"fixtures/big-{biggest}M", "list_prefix": f"list{s.list_objects}",
                    "cat_key": f"fixtures/cat-{s.cat_mib}M", "cat_bytes": s.cat_mib * MiB,
                    "par_keys": [f"fixtures/par-{s.par_mib}M-{i}" for i in range(PAR_FILES)],
                    "par_bytes": s.par_mib * MiB}
                log(f"{e}, {b}: rsync tree {files} files + {links} symlinks ({doc_bytes / 1e6:.0f} MB); "
                    f"tarball {tar_bytes / 1e6:.1f} MB, {tar_files} files")
        ctx.s3, probe = choose_s3_server(args, ctx.reg, work, ctx.sources)
        result["s3_server"] = probe
        ctx.direct_client = lambda backend: ctx.s3.client() if backend == "s3" else SwiftClient(
            args.swift_auth, args.swift_user, args.swift_key, BUCKET)
        for b in backends:
            if b == "swift":
                ensure_swift(args)
            ensure_fixtures(ctx, b, [by[b] for by in sizes.values()], biggest)
        for e in args.envs:
            env = Env(ctx, e, ENV_RTT[e])
            ctx.env = env
            envres = {"rtt_ms": ENV_RTT[e], "ceilings": {}, "systems": {},
                      "fixtures": {b: {k: (str(v) if isinstance(v, Path) else v) for k, v in fx.items() if k != "tar_sums"}
                                   for b, fx in fx_by_env[e].items()}}
            result["envs"][e] = envres
            t_env = time.monotonic()
            log(f"=== environment {e} (round trip +{ENV_RTT[e]:g} ms through bench/delayproxy.py)")
            for b in backends:
                name = f"{ctx.s3.name} (s3)" if b == "s3" else "swift 2.30 (swift API)"
                try:
                    if b == "swift":
                        ensure_swift(args)
                    big_bytes = sizes[e][b].big_mib * MiB
                    envres["ceilings"][name] = measure_ceiling(
                        lambda b=b: env.api(b, direct=False), fx_by_env[e][b]["big_src"], big_bytes,
                        # at 20 ms every small request is a round trip: fewer of them
                        (200 if not args.quick else 100) if ENV_RTT[e] == 0 else 60,
                        100 if ENV_RTT[e] == 0 else 40, time_cap=20 if not args.quick else 8,
                        cold_get=drop_caches)
                except Exception as ex:
                    envres["ceilings"][name] = {"error": f"{type(ex).__name__}: {ex}"}
                c = envres["ceilings"][name]
                log(f"ceiling {name}: " + ", ".join(f"{k} {fmt_num(v)}" for k, v in c.items()))
            for system in args.systems:
                if SYSTEMS[system][0] == "swift":
                    try:
                        ensure_swift(args)
                    except Exception as ex:
                        log(f"warning: {ex}")
                b = SYSTEMS[system][0]
                sr = SystemRun(ctx, env, system, sizes[e][b], fx_by_env[e][b])
                envres["systems"][system] = sr.run_all()
                with open(json_path, "w") as f:
                    json.dump(result, f, indent=1, default=str)
            envres["elapsed_s"] = time.monotonic() - t_env
            env.stop()
        result["elapsed_s"] = time.monotonic() - T0
    except KeyboardInterrupt as e:
        log(f"interrupted: {e}")
        rc = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        log(f"error: {e}")
        rc = 1
    finally:
        cleanup_workdir(str(work))
        ctx.reg.stop_all()
        if args.server_dir != work and str(args.server_dir).startswith("/dev/shm/objmount-bench-s3."):
            shutil.rmtree(args.server_dir, ignore_errors=True)
    with open(json_path, "w") as f:
        json.dump(result, f, indent=1, default=str)
    md = render(result, args.systems)
    print()
    print(md)
    if args.markdown:
        Path(args.markdown).write_text(md + "\n")
    log(f"raw results: {json_path}; total {time.monotonic() - T0:.0f} s")
    return rc


def render(result: dict, systems: list) -> str:
    out = []
    m = result["machine"]
    out.append(f"Run {result['machine'].get('date')}, profile {result['profile']}, {m.get('cores')} cores "
               f"{m.get('cpu', '')}, {m.get('mem_gib')} GiB, kernel {m.get('kernel')}, load at start "
               f"{' '.join(m.get('load_at_start', []))}\n")
    out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    if "objmount_args" in result:
        extra = result["objmount_args"]
        out.append(f"\nobjmount mount extra arguments (--objmount-args): {f'`{extra}`' if extra else 'none'}")
    if result.get("repeat", 1) > 1:
        out.append(f"\nseq write, seq read, `ls -l` and `find`: the median of {result['repeat']} runs (the reads "
                   "each from a cold remount; every run's value in the JSON: `runs`)")
    if "s3_server" in result:
        out.append("\nS3 server candidates (127.0.0.1, plain client, 64 MiB / 100 objects):\n")
        out.append(probe_table(result["s3_server"]))
        out.append("\nChosen: " + result["s3_server"]["why"])
    for e, er in result["envs"].items():
        sz = {b: Sizes(**v) for b, v in result["sizes"][e].items()}
        out.append(f"\n### {e} (server round trip +{er['rtt_ms']:g} ms)\n")
        out.append("Server ceilings through the same path as the mounts (plain client, one connection "
                   "unless stated):\n")
        out.append(ceiling_table(er["ceilings"]))
        out.append("")
        fx = er["fixtures"]
        out.append(table(e, er["systems"], sz, fx, [s for s in systems if s in er["systems"]]))
        out.append(f"\n(environment {e}: {fmt_num(er.get('elapsed_s'))} s; "
                   "* = read stopped at the time cap, rate over the part read; "
                   "! = the tool exited non-zero, see the JSON notes)")
        notes = []
        for sname, r in er["systems"].items():
            for k, v in r.items():
                if isinstance(v, dict) and v.get("note") and v.get("status") != "skipped":
                    notes.append(f"- {sname} {k}: {v['status']}: {' '.join(str(v['note']).split())[:240]}")
        if notes:
            out.append("\nNotes:\n" + "\n".join(notes))
    if "elapsed_s" in result:
        out.append(f"\nTotal run time {fmt_num(result['elapsed_s'])} s")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
