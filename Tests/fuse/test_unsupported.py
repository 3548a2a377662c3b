"""FUSE tier: what a user sees for the calls objmount does not (or not fully) serve.

Object stores have no hard links, FIFOs, sockets or device nodes, and no preallocation, so
objmount answers those with a plain errno (FuseKit's defaults): link -> EPERM, mknod/mkfifo of
anything but a regular file -> EPERM, fallocate -> EOPNOTSUPP. It implements no locking
operations, so the kernel keeps flock and fcntl locks local to the mount: they work between
processes on this machine and are invisible to other clients of the store. O_DIRECT and
shared writable mmap go through the ordinary read/write requests.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import mmap
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import OBJMOUNT_BIN, Mounted, Mounter, Remote, fuse_unavailable_reason, run

_skip_reason = fuse_unavailable_reason()
pytestmark = pytest.mark.skipif(_skip_reason is not None, reason=f"FUSE tier skipped: {_skip_reason}")

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
libc.fallocate.restype = ctypes.c_int


def errno_of(fn, *args) -> int | None:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return None


# ---- link, mknod, mkfifo -------------------------------------------------------------------


def test_link_is_eperm(mount: Mounted) -> None:
    src = mount / "src"
    src.write_bytes(b"data")
    assert errno_of(os.link, src, mount / "hard") == errno.EPERM
    assert not (mount / "hard").exists()
    assert os.stat(src).st_nlink == 1
    # the tool a user runs says so too
    p = run(["ln", str(src), str(mount / "hard2")], check=False)
    assert p.returncode != 0 and b"Operation not permitted" in p.stderr


def test_mkfifo_and_device_nodes_are_eperm(mount: Mounted) -> None:
    assert errno_of(os.mkfifo, mount / "fifo") == errno.EPERM
    assert errno_of(os.mknod, mount / "fifo2", 0o644 | stat.S_IFIFO) == errno.EPERM
    assert errno_of(os.mknod, mount / "chr", 0o644 | stat.S_IFCHR, os.makedev(1, 3)) == errno.EPERM
    assert errno_of(os.mknod, mount / "blk", 0o644 | stat.S_IFBLK, os.makedev(7, 0)) == errno.EPERM
    # bind(2) of a unix socket is a mknod(S_IFSOCK)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        assert errno_of(s.bind, str(mount / "sock")) == errno.EPERM
    assert sorted(os.listdir(mount)) == []


def test_mknod_of_a_regular_file_creates_it(mount: Mounted) -> None:
    # FuseKit's default mknod makes a regular file through create + flush + release.
    os.mknod(mount / "plain", 0o640 | stat.S_IFREG)
    st = os.stat(mount / "plain")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    assert stat.S_IMODE(st.st_mode) == 0o640 & ~_umask()
    (mount / "plain").write_bytes(b"then written")
    assert (mount / "plain").read_bytes() == b"then written"


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# ---- fallocate -----------------------------------------------------------------------------


def test_fallocate_is_eopnotsupp(mount: Mounted) -> None:
    f = mount / "f"
    f.write_bytes(b"x" * 100)
    fd = os.open(f, os.O_RDWR)
    try:
        # fallocate(2) itself, beyond EOF and inside the file: EOPNOTSUPP (== ENOTSUP on Linux).
        for offset, length in ((0, 1 << 20), (0, 50), (4096, 4096)):
            ctypes.set_errno(0)
            assert libc.fallocate(fd, 0, offset, length) == -1
            assert ctypes.get_errno() == errno.EOPNOTSUPP == errno.ENOTSUP
        # FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE too
        ctypes.set_errno(0)
        assert libc.fallocate(fd, 0x01 | 0x02, 0, 50) == -1
        assert ctypes.get_errno() == errno.EOPNOTSUPP
    finally:
        os.close(fd)
    assert os.stat(f).st_size == 100
    # util-linux's fallocate(1) calls fallocate(2) and reports the error.
    p = run(["fallocate", "-l", "1M", str(f)], check=False)
    assert p.returncode != 0 and b"Operation not supported" in p.stderr
    assert f.read_bytes() == b"x" * 100


def test_posix_fallocate_is_emulated_by_glibc(mount: Mounted) -> None:
    # What a Python (or C) program calling posix_fallocate(3) sees: glibc turns fallocate's
    # EOPNOTSUPP into an emulation that writes one zero byte per block beyond EOF, so the
    # call succeeds and the file grows (with zeros); nothing is reserved on the server.
    f = mount / "g"
    f.write_bytes(b"abc")
    fd = os.open(f, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, 3 * 1024 * 1024 + 5)
    finally:
        os.close(fd)
    data = f.read_bytes()
    assert len(data) == 3 * 1024 * 1024 + 5
    assert data[:3] == b"abc" and data[3:].count(0) == len(data) - 3


# ---- locks: local to the mount ---------------------------------------------------------------

CHILD_FLOCK = r"""
import errno, fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("locked")
except OSError as e:
    print(errno.errorcode[e.errno])
"""

CHILD_FCNTL = r"""
import errno, fcntl, os, struct, sys
fd = os.open(sys.argv[1], os.O_RDWR)
# F_GETLK: who holds a conflicting lock (struct flock: short, short, off_t, off_t, pid_t)
got = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
l_type, _, _, _, l_pid = struct.unpack("hhqqi4x", got)
try:
    fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))
    result = "locked"
except OSError as e:
    result = errno.errorcode[e.errno]
print(result, "unlocked" if l_type == fcntl.F_UNLCK else "held", l_pid)
"""


def _child(code: str, path: Path) -> str:
    p = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return p.stdout.decode().strip()


def test_flock_conflicts_between_processes(mount: Mounted) -> None:
    f = mount / "lockme"
    f.write_bytes(b"")
    fd = os.open(f, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # EWOULDBLOCK is EAGAIN on Linux (errorcode names it EAGAIN)
        assert _child(CHILD_FLOCK, f) in ("EWOULDBLOCK", "EAGAIN")
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert _child(CHILD_FLOCK, f) == "locked"
    finally:
        os.close(fd)


def test_fcntl_setlk_conflicts_between_processes(mount: Mounted) -> None:
    f = mount / "lockme"
    f.write_bytes(b"0123456789")
    fd = os.open(f, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # F_SETLK, F_WRLCK, whole file
        result, state, holder = _child(CHILD_FCNTL, f).split()
        assert result in ("EAGAIN", "EACCES")  # POSIX allows either; Linux gives EAGAIN
        assert state == "held" and int(holder) == os.getpid()
        fcntl.lockf(fd, fcntl.LOCK_UN)
        result, state, _ = _child(CHILD_FCNTL, f).split()
        assert (result, state) == ("locked", "unlocked")
    finally:
        os.close(fd)


# ---- O_DIRECT and mmap ---------------------------------------------------------------------


def _pattern(n: int, seed: int = 7) -> bytes:
    out = bytearray()
    block = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{block}".encode()).digest()
        block += 1
    return bytes(out[:n])


def _read_direct(path: Path, size: int) -> bytes:
    """Reads a whole file with O_DIRECT into a page-aligned buffer (an anonymous mmap)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, 1 << 20)
    try:
        out = bytearray()
        while True:
            n = os.preadv(fd, [buf], len(out))
            if n == 0:
                break
            out += buf[:n]
            assert len(out) <= size, "read past the end"
        return bytes(out)
    finally:
        buf.close()
        os.close(fd)


def test_o_direct_read(mount: Mounted) -> None:
    data = _pattern(3 * 1024 * 1024 + 1234)
    (mount / "direct").write_bytes(data)
    assert hashlib.sha256(_read_direct(mount / "direct", len(data))).digest() == hashlib.sha256(data).digest()


def test_shared_writable_mmap(mounter: Mounter, remote: Remote) -> None:
    m = mounter.mount(remote)
    size = 5 * 4096 + 100
    base = _pattern(size, seed=1)
    (m / "mapped").write_bytes(base)
    expected = bytearray(base)
    fd = os.open(m / "mapped", os.O_RDWR)
    try:
        mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            assert mm[:64] == base[:64]
            for off, chunk in ((0, b"HEAD"), (4096 * 2 + 17, b"in the middle"), (size - 6, b"TAIL!!")):
                mm[off:off + len(chunk)] = chunk
                expected[off:off + len(chunk)] = chunk
            mm.flush()  # msync(MS_SYNC)
        finally:
            mm.close()
    finally:
        os.close(fd)
    want = hashlib.sha256(expected).hexdigest()
    # A fresh open with O_DIRECT reads from the daemon, not from the page cache.
    assert hashlib.sha256(_read_direct(m / "mapped", size)).hexdigest() == want
    if remote.scheme == "memory":
        return  # a memory:// store lives in the daemon: it does not survive an unmount
    # A persistent remote: unmount, mount the same remote again, read through the new mount.
    run([OBJMOUNT_BIN, "unmount", str(m.path)], env=remote.env)
    m2 = mounter.mount(remote, mountpoint=m.path)
    assert hashlib.sha256((m2 / "mapped").read_bytes()).hexdigest() == want
