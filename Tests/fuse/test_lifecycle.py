"""FUSE tier: the daemon's life — signals, a killed daemon, a busy unmount, and what unmount
guarantees about data written just before it."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (
    MOUNT_TIMEOUT,
    OBJMOUNT_BIN,
    Mounted,
    Mounter,
    Remote,
    fuse_unavailable_reason,
    is_mounted,
    objmount,
    pid_alive,
    require_memory,
    wait_for,
)

_skip_reason = fuse_unavailable_reason()
pytestmark = pytest.mark.skipif(_skip_reason is not None, reason=f"FUSE tier skipped: {_skip_reason}")


def start_foreground(mounter: Mounter, remote: Remote, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    mp = mounter.new_mountpoint()
    cache = tmp_path / "cache"
    # A new session, as a daemon started from a script would be; SIGINT must still work
    # (bash leaves SIGINT ignored for background jobs: FUSE-NOTES gotcha 1).
    proc = subprocess.Popen(
        [OBJMOUNT_BIN, "mount", remote.url, str(mp), "--foreground", "--cache-dir", str(cache)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, **remote.env}, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert wait_for(lambda: is_mounted(mp) or proc.poll() is not None, MOUNT_TIMEOUT), "mount did not appear"
    assert proc.poll() is None, proc.stderr.read().decode(errors="replace")
    return proc, mp


def stop(proc: subprocess.Popen, sig: signal.Signals) -> tuple[int, str]:
    """Sends `sig` to a foreground daemon and waits for it (killed after 60 s): its exit status
    and stderr."""
    os.kill(proc.pid, sig)
    try:
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    return rc, proc.stderr.read().decode(errors="replace")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_signals_unmount_cleanly(mounter: Mounter, remote: Remote, tmp_path: Path, sig: signal.Signals) -> None:
    proc, mp = start_foreground(mounter, remote, tmp_path)
    (mp / "f").write_bytes(b"before the signal")
    rc, stderr = stop(proc, sig)
    assert rc == 0, f"exit {rc}: {stderr}"
    assert not is_mounted(mp), f"{mp} still mounted after {sig.name}"
    assert "Fatal error" not in stderr


def test_a_file_still_being_written_when_the_daemon_stops_is_kept_not_stored(
        mounter: Mounter, remote: Remote, tmp_path: Path) -> None:
    """SIGTERM while a program rewrites a file: the object keeps its old version (never the
    prefix written so far), the new bytes are kept under <cache-dir>/unsaved/, the daemon says
    where and exits non-zero."""
    proc, mp = start_foreground(mounter, remote, tmp_path)
    (mp / "f").write_bytes(b"the whole old version")
    f = open(mp / "f", "r+b")
    try:
        f.truncate(0)
        f.write(b"half")
        f.flush()
        rc, stderr = stop(proc, signal.SIGTERM)
    finally:
        try:
            f.close()
        except OSError:
            pass  # the mount is gone
    assert rc != 0, f"the daemon exited 0 though a file was not stored: {stderr}"
    kept = [line.split(" is kept in ", 1)[1] for line in stderr.splitlines()
            if "still open for writing" in line and " is kept in " in line]
    assert len(kept) == 1, stderr
    assert Path(kept[0]).read_bytes() == b"half"
    if remote.scheme != "memory":
        m = mounter.mount(remote)
        assert (m.path / "f").read_bytes() == b"the whole old version"


def test_sigkill_leaves_no_dead_mount(mounter: Mounter, remote: Remote) -> None:
    m = mounter.mount(remote)
    assert m.pid is not None
    (m.path / "x").write_bytes(b"x")
    os.kill(m.pid, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(m.pid), 10)
    # auto_unmount: the fusermount3 helper removes the mount once the daemon is gone.
    # (Usually instant; 30 s leaves room for a loaded 2-core machine.)
    assert wait_for(lambda: not is_mounted(m.path), 30), "dead mount left after SIGKILL"
    # The mountpoint is usable again.
    m2 = mounter.mount(remote, mountpoint=m.path)
    assert os.listdir(m2.path) is not None


def test_busy_unmount_fails_and_keeps_the_mount(mounter: Mounter, remote: Remote) -> None:
    m = mounter.mount(remote)
    (m.path / "keep.txt").write_bytes(b"still here")
    fd = os.open(m.path / "keep.txt", os.O_RDONLY)
    try:
        p = objmount("unmount", m.path, remote=remote, check=False)
        err = p.stderr.decode(errors="replace").strip()
        assert p.returncode != 0
        assert len(err.splitlines()) == 1 and err.startswith("objmount: ") and "busy" in err.lower(), err
        assert is_mounted(m.path)
        assert os.pread(fd, 100, 0) == b"still here"
    finally:
        os.close(fd)
    objmount("unmount", m.path, remote=remote)
    assert not is_mounted(m.path)


def test_data_written_before_unmount_was_stored(mounter: Mounter, remote: Remote, tmp_path: Path) -> None:
    """close() returns only after the upload, so a file closed before unmount is on the server:
    here seen through a second mount of the same remote (memory:// lives in one process, so
    the check reads the file back through the same mount right after close instead)."""
    require_memory(remote)
    m = mounter.mount(remote)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with open(m.path / "data.bin", "wb") as f:
        f.write(payload)
    # Drop the kernel's cache of the file: the read below goes to the daemon, hence the store.
    subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=False, timeout=30)
    assert (m.path / "data.bin").read_bytes() == payload
    p = objmount("unmount", m.path, remote=remote)
    assert p.returncode == 0
    assert m.pid is None or wait_for(lambda: not pid_alive(m.pid), 10)


@pytest.mark.parametrize("scheme", ["s3", "ks3", "swift"])
def test_an_unreachable_server_fails_the_mount_at_once(mounter: Mounter, tmp_path: Path, scheme: str) -> None:
    """A server that refuses connections (wrong port, server down) fails the mount within a few
    seconds, with one line naming it — not after a minute of retries."""
    # A port bound but not listening: connections to it are refused for as long as it is held.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        server = f"http://127.0.0.1:{held.getsockname()[1]}"
        mp = mounter.new_mountpoint()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "KS3_", "ST_", "OS_", "HUBIC_"))}
        env.update({"LC_ALL": "C.UTF-8", "HOME": str(tmp_path)})
        argv = [OBJMOUNT_BIN, "mount", f"{scheme}://b", str(mp), "--cache-dir", str(tmp_path / "cache")]
        if scheme == "s3":
            env.update({"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"})
            argv += ["--endpoint", server]
        elif scheme == "ks3":
            env.update({"KS3_ACCESS_KEY_ID": "AK", "KS3_SECRET_ACCESS_KEY": "SK"})
            argv += ["--endpoint", server]
        else:
            env.update({"ST_AUTH": server + "/auth/v1.0", "ST_USER": "test:tester", "ST_KEY": "testing"})
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        elapsed = time.monotonic() - t0
    err = r.stderr.strip()
    assert r.returncode != 0, f"mounted an unreachable server: {err}"
    assert err == f"objmount: cannot connect to {server}: connection refused", err
    assert elapsed < 8, f"took {elapsed:.1f} s to give up"
    assert not is_mounted(mp)


def inode_count(m: Mounted) -> int:
    """The daemon's inode table size, from the state it logs on SIGUSR1."""
    log = m.cache_dir / "objmount.log"
    before = log.read_text(errors="replace").count("inodes,") if log.exists() else 0
    assert m.pid is not None
    os.kill(m.pid, signal.SIGUSR1)
    assert wait_for(lambda: log.exists() and log.read_text(errors="replace").count("inodes,") > before, 30)
    return int(re.findall(r"files: (\d+) inodes,", log.read_text(errors="replace"))[-1])


def test_the_daemon_forgets_the_inodes_the_kernel_forgot(mounter: Mounter, remote: Remote) -> None:
    if os.geteuid() != 0:
        pytest.skip("drop_caches needs root")
    m = mounter.mount(remote, extra=["--metadata-ttl", "1"])
    for d in range(3):
        (m / f"d{d}").mkdir()
        for f in range(40):
            (m / f"d{d}" / f"f{f}").write_bytes(b"%d/%d" % (d, f))
    # What this mount stored it keeps for a TTL (against lagging listings): a short one here.
    m.settle()
    time.sleep(1.5)
    found = subprocess.run(["find", str(m.path)], capture_output=True, text=True, check=True, timeout=120)
    assert len(found.stdout.splitlines()) == 1 + 3 + 120
    assert inode_count(m) >= 1 + 3 + 120
    # The kernel forgets its dentries and inodes; the daemon drops its nodes with them.
    subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], check=False, timeout=60)
    assert wait_for(lambda: inode_count(m) < 20, 30), inode_count(m)
    # Everything is still there, with the same bytes.
    assert (m / "d2" / "f39").read_bytes() == b"2/39"
    assert sorted(os.listdir(m / "d1")) == sorted(f"f{f}" for f in range(40))


@pytest.mark.parametrize("dirs,files", [(3, 80), (30, 5)], ids=["file-by-file", "whole-directories"])
def test_past_max_inodes_the_daemon_keeps_its_table_within_the_bound(
        mounter: Mounter, remote: Remote, dirs: int, files: int) -> None:
    # Directories of 80 go file by file; of 5 (at most 1/16 of the limit), whole.
    m = mounter.mount(remote, extra=["--metadata-ttl", "1", "--max-inodes", "100"])
    expected = {}
    for d in range(dirs):
        (m / f"d{d}").mkdir()
        for f in range(files):
            expected[f"d{d}/f{f}"] = hashlib.sha256(b"%d/%d" % (d, f)).hexdigest()
            (m / f"d{d}" / f"f{f}").write_bytes(b"%d/%d" % (d, f))
    # What this mount stored it keeps for a TTL (against lagging listings): a short one here.
    m.settle()
    time.sleep(1.5)
    found = subprocess.run(["find", str(m.path)], capture_output=True, text=True, check=True, timeout=120)
    assert len(found.stdout.splitlines()) == 1 + dirs + dirs * files
    # The kernel was asked to forget the oldest names; its forgets bring the table under the bound.
    assert wait_for(lambda: inode_count(m) <= 100, 30), inode_count(m)
    # Every name is still listed and found, with its bytes, and the table stays bounded.
    for d in range(dirs):
        assert sorted(os.listdir(m / f"d{d}")) == sorted(f"f{f}" for f in range(files))
    got = {f"d{d}/f{f}": hashlib.sha256((m / f"d{d}" / f"f{f}").read_bytes()).hexdigest()
           for d in range(dirs) for f in range(files)}
    assert got == expected
    assert wait_for(lambda: inode_count(m) <= 100, 30), inode_count(m)


def forced_stat(path: Path) -> tuple[int, int]:
    """(size, mode) from statx(AT_STATX_FORCE_SYNC): the kernel asks the daemon (a GETATTR)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)  # struct statx: stx_mode at 28 (u16), stx_size at 40 (u64)
    if libc.statx(-100, str(path).encode(), 0x100 | 0x2000, 0x7FF, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))
    return int.from_bytes(buf.raw[40:48], "little"), int.from_bytes(buf.raw[28:30], "little") & 0o7777


def test_a_stat_the_daemon_answers_from_memory_shows_local_changes_at_once(mounter: Mounter, remote: Remote) -> None:
    m = mounter.mount(remote)
    f = m / "f"
    f.write_bytes(b"0123456789")
    os.chmod(f, 0o644)
    # Asked twice: the second answer comes from what the daemon kept of the first.
    assert forced_stat(f) == (10, 0o644)
    assert forced_stat(f) == (10, 0o644)
    with open(f, "ab") as w:
        w.write(b"abcde")
        w.flush()
        assert forced_stat(f) == (15, 0o644)
    os.chmod(f, 0o600)
    assert forced_stat(f) == (15, 0o600)
    os.truncate(f, 3)
    assert forced_stat(f) == (3, 0o600)
    os.rename(f, m / "g")
    assert forced_stat(m / "g") == (3, 0o600)
    with pytest.raises(FileNotFoundError):
        forced_stat(f)
    assert (m / "g").read_bytes() == b"012"
