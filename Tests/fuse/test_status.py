"""`objmount status` (issue 15, item 3): each daemon answers over a unix socket in its
runtime directory (0700, the socket 0600): a file being written, or closed and uploading to a
slowed server (Tests/fuse/faultproxy.py), shows as pending with its bytes, nothing once it is
stored; the block cache's use and hit rate; `--json` for scripts, one line per mount
otherwise. `objmount unmount` shows what is left each second (item 4). And the background log
(item 5): its place is printed at mount, it rotates at --log-max-size."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time

import pytest

from conftest import OBJMOUNT_BIN, RUNTIME_DIR, Mounted, Mounter, Remote, RemoteSpec, fuse_unavailable_reason
from test_faults import faulty  # noqa: F401 (a fixture)
from test_swift_driver import _skip as swift_skip

pytestmark = pytest.mark.skipif(fuse_unavailable_reason() is not None, reason=fuse_unavailable_reason() or "")


def status(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OBJMOUNT_BIN, "status", *args], capture_output=True, text=True, timeout=60)


# A file being written, held open by a process of its own: a process this test starts while
# the test itself held the file open would close its inherited descriptor at exec, and that
# close is a FLUSH, which stores the file.
WRITER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"x" * int(sys.argv[2]))
print("written", flush=True)
sys.stdin.read()
os.close(fd)
"""


def start_writer(path, size: int) -> subprocess.Popen:
    w = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(size)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert w.stdout.readline() == "written\n"
    return w


def stop_writer(w: subprocess.Popen) -> None:
    w.stdin.close()
    assert w.wait(timeout=60) == 0


def test_status_shows_a_pending_file_then_nothing(mount: Mounted) -> None:
    writer = start_writer(mount / "being-written.bin", 100_000)
    try:
        r = status(str(mount.path), "--json")
        assert r.returncode == 0, r.stderr
        (daemon,) = json.loads(r.stdout)
        assert daemon["mountpoint"] == str(mount.path) and daemon["remote"].startswith(mount.remote.scheme)
        assert daemon["pending"]["files"] == 1 and daemon["pending"]["bytes"] == 100_000, daemon
        assert daemon["pending"]["oldest_s"] >= 0 and daemon["open_handles"] == 1
        assert daemon["upload_errors"] == 0 and daemon["memory"]["limit"] > 0
    finally:
        stop_writer(writer)
    mount.settle()
    (daemon,) = json.loads(status(str(mount.path), "--json").stdout)
    assert daemon["pending"] == {"files": 0, "bytes": 0, "oldest_s": None}, daemon
    if mount.remote.scheme != "memory":
        # The upload went over HTTP: a request at least, and its 100,000 bytes.
        assert daemon["requests"] >= 1 and daemon["bytes_up"] >= 100_000 and daemon["retries"] >= 0, daemon
    # Without arguments: a line for every mount, this one among them.
    r = status()
    assert r.returncode == 0 and any(line.startswith(f"{mount.path}: ") and "nothing pending" in line
                                     for line in r.stdout.splitlines()), r.stdout
    # Only the user's own: the runtime directory is 0700, the socket 0600.
    assert stat.S_IMODE(os.stat(RUNTIME_DIR).st_mode) & 0o077 == 0
    sock = os.path.join(RUNTIME_DIR, f"status-{daemon['pid']}.sock")
    assert stat.S_ISSOCK(os.stat(sock).st_mode) and stat.S_IMODE(os.stat(sock).st_mode) == 0o600


def test_status_wait_shows_what_is_left_until_nothing_is(mount: Mounted) -> None:
    writer = start_writer(mount / "slow.bin", 300_000)
    try:
        waiter = subprocess.Popen([OBJMOUNT_BIN, "status", str(mount.path), "--wait"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(2.5)
        assert waiter.poll() is None  # the file is still being written: pending
    finally:
        stop_writer(writer)
    out, err = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, err
    assert out == f"{mount.path}: nothing pending\n"
    assert err.count(f"objmount: {mount.path}: storing 1 file(s), ") >= 2, err


def test_status_of_a_directory_that_is_no_mount_is_an_error(tmp_path) -> None:
    r = status(str(tmp_path))
    assert r.returncode != 0 and "is not an objmount mount" in r.stderr


def test_the_log_is_named_at_mount_and_rotates_at_its_size(mounter: Mounter, remote: Remote, tmp_path) -> None:
    cache = tmp_path / "cache"
    mp = tmp_path / "mnt"
    mp.mkdir()
    m = mounter.mount(remote, mountpoint=mp, cache=cache, extra=["--log-level", "debug", "--log-max-size", "8K"])
    log = cache / "objmount.log"
    # A debug line for every lookup of a name that is not there: 400 fill 8 KiB several times.
    for i in range(400):
        assert not (m / f"missing-{i}").exists()
    old = cache / "objmount.log.1"
    assert old.exists() and log.exists()
    # Each at most the cap and the line that crossed it; only two files.
    assert old.stat().st_size < 8192 + 4096 and log.stat().st_size < 8192 + 4096
    assert sorted(p.name for p in cache.glob("objmount.log*")) == ["objmount.log", "objmount.log.1"]
    # `objmount mount` says where the log is.
    other = tmp_path / "other"
    other.mkdir()
    r = subprocess.run([OBJMOUNT_BIN, "mount", remote.url, str(other), "--cache-dir", str(tmp_path / "c2")],
                       capture_output=True, text=True, timeout=60, env={**os.environ, **remote.env})
    try:
        assert r.returncode == 0, r.stderr
        assert f"its log is {tmp_path / 'c2' / 'objmount.log'}" in r.stdout, r.stdout
    finally:
        subprocess.run([OBJMOUNT_BIN, "unmount", str(other)], capture_output=True, timeout=60)


def slowed_swift_mount(mounter: Mounter, faulty, extra: list[str] = ()) -> Mounted:
    """A mount of the Swift server through the fault proxy (no faults), on a fresh prefix."""
    from test_swift_driver import CONTAINER, SWIFT_ENV
    spec = RemoteSpec(base=f"swift://{CONTAINER}", env=tuple({**SWIFT_ENV, "ST_AUTH": faulty.auth}.items()))
    return mounter.mount(Remote(url=spec.unique_url(), spec=spec), extra=extra)


@pytest.mark.skipif(swift_skip is not None, reason=f"needs the Swift server: {swift_skip}")
def test_status_shows_uploads_pending_while_the_server_is_slow_and_none_after(mounter: Mounter, faulty) -> None:
    m = slowed_swift_mount(mounter, faulty)
    faulty.command("slow 200000")  # 200 kB/s: 600 kB take 3 s
    data = os.urandom(600_000)
    t0 = time.monotonic()
    (m.path / "slow.bin").write_bytes(data)  # write-back: close does not wait for the upload
    assert time.monotonic() - t0 < 2
    (daemon,) = json.loads(status(str(m.path), "--json").stdout)
    assert daemon["pending"]["files"] == 1 and daemon["pending"]["bytes"] == 600_000, daemon
    assert daemon["open_handles"] == 0 and daemon["upload_errors"] == 0, daemon
    m.settle()
    (daemon,) = json.loads(status(str(m.path), "--json").stdout)
    assert daemon["pending"] == {"files": 0, "bytes": 0, "oldest_s": None}, daemon
    assert daemon["bytes_up"] >= 600_000, daemon
    faulty.command("slow 0")
    assert (m.path / "slow.bin").read_bytes() == data


@pytest.mark.skipif(swift_skip is not None, reason=f"needs the Swift server: {swift_skip}")
def test_unmount_shows_files_and_bytes_left_each_second_while_uploads_are_pending(mounter: Mounter, faulty) -> None:
    # 1 MiB parts: the 8 MiB file's bytes left go down as its parts are stored, 4 at a time.
    m = slowed_swift_mount(mounter, faulty, extra=["--segment-size", "1"])
    faulty.command("slow 400000")
    sums = {}
    for i, size in enumerate([200_000, 400_000, 8 << 20]):
        data = os.urandom(size)
        (m.path / f"f{i}.bin").write_bytes(data)
        sums[f"f{i}.bin"] = data
    r = subprocess.run([OBJMOUNT_BIN, "unmount", str(m.path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # Not a terminal: a line a second, what is left as the daemon counts it.
    lines = [line for line in r.stderr.splitlines() if line.startswith(f"objmount: {m.path}: storing ")]
    assert len(lines) >= 2, r.stderr
    assert re.fullmatch(rf"objmount: {re.escape(str(m.path))}: storing [1-3] file\(s\), [0-9.]+ (KiB|MiB) left.*",
                        lines[0]), lines
    # Once some bytes went: the rate and the time to go.
    assert any(re.search(r"left, [0-9.]+ (KiB|MiB)/s, about [0-9]+ s to go$", line) for line in lines), lines
    faulty.command("slow 0")
    fresh = mounter.mount(m.remote)
    assert {p.name: p.read_bytes() for p in fresh.path.iterdir()} == sums
