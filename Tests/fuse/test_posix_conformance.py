"""FUSE tier: a POSIX conformance run in the style of pjdfstest (the FreeBSD/ZFS suite).

pjdfstest itself is not available here (not in Debian's or PyPI's registries, and no other
source may be used), so this is our own suite, grouped like pjdfstest's directories: chmod,
chown, ftruncate, truncate, mkdir, rmdir, open, rename, unlink, symlink, link, mkfifo, mknod,
utimensat, plus write, stat and readdir. Every case is a small, independent check with a
stable ID (`rename/03`) that runs in a directory of its own on one shared mount per remote,
and asserts real outcomes: errno values, bytes read back, stat fields.

Expected failures live in posix_expected_failures.txt next to this file, one ID per line
(optionally `ID@scheme` for one remote only) with a `# reason`. Those cases are
xfail(strict=True): a new failure fails the run, and so does a case that starts passing (remove
its line when the feature lands). Behaviour that is objmount's choice by design (hard links,
FIFOs and device nodes: EPERM) is asserted directly, not listed as a failure.

Run: OBJMOUNT_BIN=... python3 -m pytest -q Tests/fuse/test_posix_conformance.py
A line `posix conformance <remote>: N passed, M xfailed (expected), ...` per remote ends the run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import random
import stat
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from conftest import REMOTES, Mounted, Mounter, Remote, RemoteSpec, fuse_unavailable_reason

_skip_reason = fuse_unavailable_reason()
pytestmark = pytest.mark.skipif(_skip_reason is not None, reason=f"FUSE tier skipped: {_skip_reason}")

EXPECTED_FAILURES_FILE = Path(__file__).with_name("posix_expected_failures.txt")

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE = 1
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2
NAME_255 = "n" * 251 + ".txt"  # 255 bytes: the longest valid name
NAME_256 = "n" * 252 + ".txt"  # 256 bytes: ENAMETOOLONG
OLD = 1_000_000_000  # 2001-09-09, a timestamp clearly in the past


class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(timespec), ctypes.c_int]
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]


def utimensat(path: Path, atime: tuple[int, int], mtime: tuple[int, int], flags: int = 0) -> None:
    times = (timespec * 2)(timespec(*atime), timespec(*mtime))
    if libc.utimensat(AT_FDCWD, os.fsencode(path), times, flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))


def renameat2(src: Path, dst: Path, flags: int) -> None:
    if libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(src))


def errno_of(fn: Callable, *args, **kwargs) -> int | None:
    """The errno `fn` fails with, or None if it succeeds."""
    try:
        r = fn(*args, **kwargs)
        if isinstance(r, int) and fn in (os.open,):
            os.close(r)
    except OSError as e:
        return e.errno
    return None


def expect_errno(expected: int | tuple[int, ...], fn: Callable, *args, **kwargs) -> None:
    got = errno_of(fn, *args, **kwargs)
    allowed = expected if isinstance(expected, tuple) else (expected,)
    name = lambda e: errno.errorcode.get(e, str(e)) if e is not None else "success"  # noqa: E731
    assert got in allowed, f"{getattr(fn, '__name__', fn)}{args}: expected {'/'.join(map(name, allowed))}, got {name(got)}"


def write(path: Path, data: bytes = b"hello") -> Path:
    path.write_bytes(data)
    return path


def perms(path: Path, follow: bool = True) -> int:
    return stat.S_IMODE(os.stat(path, follow_symlinks=follow).st_mode)


def make_old(path: Path) -> None:
    os.utime(path, (OLD, OLD), follow_symlinks=False)


def is_recent(t: float, slack: float = 120) -> bool:
    return abs(time.time() - t) < slack


def assert_changed_recently(path: Path, field: str = "st_mtime") -> None:
    """`path`'s field (set to OLD before the operation) now holds the time of the operation."""
    t = getattr(os.stat(path), field)
    assert t != OLD and is_recent(t), f"{field} of {path.name} is {t}, not updated to about {time.time():.0f}"


def missing(path: Path) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    return False


# --------------------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------------------

CASES: dict[str, Callable[[Path], None]] = {}


def case(cid: str) -> Callable[[Callable[[Path], None]], Callable[[Path], None]]:
    def register(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        assert cid not in CASES, f"duplicate case id {cid}"
        CASES[cid] = fn
        return fn
    return register


# ---- open ----------------------------------------------------------------------------------

@case("open/01")
def _(d: Path) -> None:
    """O_CREAT makes an empty regular file with the requested mode (umask 022)."""
    os.close(os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o640))
    st = os.stat(d / "f")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o640


@case("open/02")
def _(d: Path) -> None:
    """O_CREAT|O_EXCL on an existing file: EEXIST, data untouched."""
    write(d / "f", b"keep")
    expect_errno(errno.EEXIST, os.open, d / "f", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    assert (d / "f").read_bytes() == b"keep"


@case("open/03")
def _(d: Path) -> None:
    """O_CREAT|O_EXCL on an existing directory: EEXIST."""
    os.mkdir(d / "sub")
    expect_errno(errno.EEXIST, os.open, d / "sub", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)


@case("open/04")
def _(d: Path) -> None:
    """A missing file without O_CREAT: ENOENT."""
    expect_errno(errno.ENOENT, os.open, d / "nope", os.O_RDONLY)


@case("open/05")
def _(d: Path) -> None:
    """O_CREAT under a missing directory: ENOENT."""
    expect_errno(errno.ENOENT, os.open, d / "nodir" / "f", os.O_CREAT | os.O_WRONLY, 0o644)


@case("open/06")
def _(d: Path) -> None:
    """A regular file used as a directory: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.open, d / "f" / "x", os.O_RDONLY)
    expect_errno(errno.ENOTDIR, os.open, d / "f" / "x", os.O_CREAT | os.O_WRONLY, 0o644)


@case("open/07")
def _(d: Path) -> None:
    """A directory opened for writing: EISDIR."""
    expect_errno(errno.EISDIR, os.open, d, os.O_WRONLY)
    expect_errno(errno.EISDIR, os.open, d, os.O_RDWR)


@case("open/08")
def _(d: Path) -> None:
    """O_DIRECTORY on a regular file: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.open, d / "f", os.O_RDONLY | os.O_DIRECTORY)


@case("open/09")
def _(d: Path) -> None:
    """O_TRUNC empties an existing file."""
    write(d / "f", b"0123456789")
    os.close(os.open(d / "f", os.O_WRONLY | os.O_TRUNC))
    assert os.stat(d / "f").st_size == 0 and (d / "f").read_bytes() == b""


@case("open/10")
def _(d: Path) -> None:
    """O_TRUNC of a non-empty file updates its mtime."""
    write(d / "f", b"0123456789")
    make_old(d / "f")
    os.close(os.open(d / "f", os.O_WRONLY | os.O_TRUNC))
    assert_changed_recently(d / "f")


@case("open/11")
def _(d: Path) -> None:
    """O_APPEND: every write goes to the end, whatever the offset."""
    write(d / "f", b"abc")
    fd = os.open(d / "f", os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, b"def")
        os.lseek(fd, 1, os.SEEK_SET)
        os.write(fd, b"gh")
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == b"abcdefgh"


@case("open/12")
def _(d: Path) -> None:
    """A 255-byte name can be created and opened."""
    write(d / NAME_255, b"long")
    assert (d / NAME_255).read_bytes() == b"long" and NAME_255 in os.listdir(d)


@case("open/13")
def _(d: Path) -> None:
    """A 256-byte name: ENAMETOOLONG, and nothing is created."""
    expect_errno(errno.ENAMETOOLONG, os.open, d / NAME_256, os.O_CREAT | os.O_WRONLY, 0o644)
    assert os.listdir(d) == []


@case("open/14")
def _(d: Path) -> None:
    """A 256-byte intermediate component: ENAMETOOLONG."""
    expect_errno(errno.ENAMETOOLONG, os.open, d / NAME_256 / "f", os.O_RDONLY)


@case("open/15")
def _(d: Path) -> None:
    """O_CREAT without O_EXCL on an existing file opens it and keeps its data."""
    write(d / "f", b"kept")
    os.close(os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o600))
    assert (d / "f").read_bytes() == b"kept"


@case("open/16")
def _(d: Path) -> None:
    """A write on an O_RDONLY descriptor: EBADF; a read on an O_WRONLY one: EBADF."""
    write(d / "f")
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        expect_errno(errno.EBADF, os.write, fd, b"x")
    finally:
        os.close(fd)
    fd = os.open(d / "f", os.O_WRONLY)
    try:
        expect_errno(errno.EBADF, os.read, fd, 1)
    finally:
        os.close(fd)


@case("open/17")
def _(d: Path) -> None:
    """O_CREAT of a name with a trailing slash: EISDIR (Linux)."""
    expect_errno(errno.EISDIR, os.open, str(d / "f") + "/", os.O_CREAT | os.O_WRONLY, 0o644)


@case("open/18")
def _(d: Path) -> None:
    """O_CREAT creates the file owned by the caller (root)."""
    os.close(os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644))
    st = os.stat(d / "f")
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


@case("open/19")
def _(d: Path) -> None:
    """Creating a file updates the parent directory's mtime."""
    make_old(d)
    write(d / "f")
    assert_changed_recently(d)


@case("open/20")
def _(d: Path) -> None:
    """O_CREAT with mode 0 makes a file with no permission bits (root can still open it)."""
    os.close(os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0))
    assert perms(d / "f") == 0


@case("open/21")
def _(d: Path) -> None:
    """O_RDWR|O_TRUNC then write: only the new bytes remain."""
    write(d / "f", b"a long old content")
    fd = os.open(d / "f", os.O_RDWR | os.O_TRUNC)
    try:
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == b"new"


@case("open/22")
def _(d: Path) -> None:
    """O_EXCL without O_CREAT on an existing file is ignored (Linux)."""
    write(d / "f", b"x")
    os.close(os.open(d / "f", os.O_RDONLY | os.O_EXCL))


# ---- mkdir ---------------------------------------------------------------------------------

@case("mkdir/01")
def _(d: Path) -> None:
    """mkdir makes an empty directory with the requested mode."""
    os.mkdir(d / "sub", 0o750)
    st = os.stat(d / "sub")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert os.listdir(d / "sub") == []


@case("mkdir/02")
def _(d: Path) -> None:
    """mkdir over an existing directory: EEXIST."""
    os.mkdir(d / "sub")
    expect_errno(errno.EEXIST, os.mkdir, d / "sub")


@case("mkdir/03")
def _(d: Path) -> None:
    """mkdir over an existing file: EEXIST."""
    write(d / "f")
    expect_errno(errno.EEXIST, os.mkdir, d / "f")


@case("mkdir/04")
def _(d: Path) -> None:
    """mkdir under a missing directory: ENOENT."""
    expect_errno(errno.ENOENT, os.mkdir, d / "a" / "b")


@case("mkdir/05")
def _(d: Path) -> None:
    """mkdir under a regular file: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.mkdir, d / "f" / "sub")


@case("mkdir/06")
def _(d: Path) -> None:
    """A 256-byte name: ENAMETOOLONG; 255 bytes: fine."""
    expect_errno(errno.ENAMETOOLONG, os.mkdir, d / NAME_256)
    os.mkdir(d / NAME_255)
    assert stat.S_ISDIR(os.stat(d / NAME_255).st_mode)


@case("mkdir/07")
def _(d: Path) -> None:
    """mkdir updates the parent's mtime."""
    make_old(d)
    os.mkdir(d / "sub")
    assert_changed_recently(d)


@case("mkdir/08")
def _(d: Path) -> None:
    """A new directory has st_nlink 2 (itself and its '.')."""
    os.mkdir(d / "sub")
    assert os.stat(d / "sub").st_nlink == 2


@case("mkdir/09")
def _(d: Path) -> None:
    """A new directory is owned by the caller."""
    os.mkdir(d / "sub")
    st = os.stat(d / "sub")
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


@case("mkdir/10")
def _(d: Path) -> None:
    """A subdirectory adds one to the parent's st_nlink."""
    os.mkdir(d / "p")
    before = os.stat(d / "p").st_nlink
    os.mkdir(d / "p" / "c")
    assert os.stat(d / "p").st_nlink == before + 1


@case("mkdir/11")
def _(d: Path) -> None:
    """mkdir -p style: nested directories, each visible in its parent."""
    os.makedirs(d / "a" / "b" / "c")
    assert os.listdir(d / "a") == ["b"] and os.listdir(d / "a" / "b") == ["c"]
    assert os.listdir(d / "a" / "b" / "c") == []


@case("mkdir/12")
def _(d: Path) -> None:
    """mkdir with a trailing slash works."""
    os.mkdir(str(d / "sub") + "/")
    assert stat.S_ISDIR(os.stat(d / "sub").st_mode)


# ---- rmdir ---------------------------------------------------------------------------------

@case("rmdir/01")
def _(d: Path) -> None:
    """rmdir removes an empty directory."""
    os.mkdir(d / "sub")
    os.rmdir(d / "sub")
    assert missing(d / "sub") and os.listdir(d) == []


@case("rmdir/02")
def _(d: Path) -> None:
    """rmdir of a directory holding a file: ENOTEMPTY."""
    os.mkdir(d / "sub")
    write(d / "sub" / "f")
    expect_errno(errno.ENOTEMPTY, os.rmdir, d / "sub")
    assert (d / "sub" / "f").exists()


@case("rmdir/03")
def _(d: Path) -> None:
    """rmdir of a directory holding an empty directory: ENOTEMPTY."""
    os.makedirs(d / "sub" / "inner")
    expect_errno(errno.ENOTEMPTY, os.rmdir, d / "sub")


@case("rmdir/04")
def _(d: Path) -> None:
    """rmdir of a missing name: ENOENT."""
    expect_errno(errno.ENOENT, os.rmdir, d / "nope")


@case("rmdir/05")
def _(d: Path) -> None:
    """rmdir of a regular file: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.rmdir, d / "f")


@case("rmdir/06")
def _(d: Path) -> None:
    """rmdir of '.': EINVAL."""
    os.mkdir(d / "sub")
    expect_errno(errno.EINVAL, os.rmdir, str(d / "sub") + "/.")


@case("rmdir/07")
def _(d: Path) -> None:
    """rmdir of '..': ENOTEMPTY (Linux)."""
    os.mkdir(d / "sub")
    expect_errno((errno.ENOTEMPTY, errno.EBUSY), os.rmdir, str(d / "sub") + "/..")


@case("rmdir/08")
def _(d: Path) -> None:
    """rmdir updates the parent's mtime."""
    os.mkdir(d / "sub")
    make_old(d)
    os.rmdir(d / "sub")
    assert_changed_recently(d)


@case("rmdir/09")
def _(d: Path) -> None:
    """rmdir with a regular file as a path component: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.rmdir, d / "f" / "sub")


@case("rmdir/10")
def _(d: Path) -> None:
    """rmdir of a 256-byte name: ENAMETOOLONG."""
    expect_errno(errno.ENAMETOOLONG, os.rmdir, d / NAME_256)


@case("rmdir/11")
def _(d: Path) -> None:
    """A directory emptied by unlink can be removed."""
    os.mkdir(d / "sub")
    write(d / "sub" / "f")
    os.unlink(d / "sub" / "f")
    os.rmdir(d / "sub")
    assert missing(d / "sub")


@case("rmdir/12")
def _(d: Path) -> None:
    """A removed directory's name can be made again, empty."""
    os.mkdir(d / "sub")
    write(d / "sub" / "f")
    os.unlink(d / "sub" / "f")
    os.rmdir(d / "sub")
    os.mkdir(d / "sub")
    assert os.listdir(d / "sub") == []


# ---- unlink --------------------------------------------------------------------------------

@case("unlink/01")
def _(d: Path) -> None:
    """unlink removes a file and its directory entry."""
    write(d / "f")
    os.unlink(d / "f")
    assert missing(d / "f") and os.listdir(d) == []


@case("unlink/02")
def _(d: Path) -> None:
    """unlink of a missing name: ENOENT."""
    expect_errno(errno.ENOENT, os.unlink, d / "nope")


@case("unlink/03")
def _(d: Path) -> None:
    """unlink of a directory: EISDIR (Linux)."""
    os.mkdir(d / "sub")
    expect_errno(errno.EISDIR, os.unlink, d / "sub")


@case("unlink/04")
def _(d: Path) -> None:
    """unlink with a regular file as a path component: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.unlink, d / "f" / "x")


@case("unlink/05")
def _(d: Path) -> None:
    """unlink of a 256-byte name: ENAMETOOLONG."""
    expect_errno(errno.ENAMETOOLONG, os.unlink, d / NAME_256)


@case("unlink/06")
def _(d: Path) -> None:
    """An open descriptor still reads the data after the name is unlinked."""
    write(d / "f", b"still readable")
    # Stored, with no local copy left (write-back would otherwise still hold one).
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        os.unlink(d / "f")
        assert os.pread(fd, 100, 0) == b"still readable"
    finally:
        os.close(fd)


@case("unlink/07")
def _(d: Path) -> None:
    """unlink updates the parent's mtime."""
    write(d / "f")
    make_old(d)
    os.unlink(d / "f")
    assert_changed_recently(d)


@case("unlink/08")
def _(d: Path) -> None:
    """A name unlinked and created again is a new, empty file."""
    write(d / "f", b"old data")
    os.unlink(d / "f")
    os.close(os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644))
    assert (d / "f").read_bytes() == b""


@case("unlink/09")
def _(d: Path) -> None:
    """unlink of a file in a subdirectory leaves the (now empty) directory."""
    os.mkdir(d / "sub")
    write(d / "sub" / "f")
    os.unlink(d / "sub" / "f")
    assert stat.S_ISDIR(os.stat(d / "sub").st_mode) and os.listdir(d / "sub") == []


@case("unlink/10")
def _(d: Path) -> None:
    """unlink of one file leaves its siblings."""
    for n in ("a", "b", "c"):
        write(d / n, n.encode())
    os.unlink(d / "b")
    assert sorted(os.listdir(d)) == ["a", "c"] and (d / "c").read_bytes() == b"c"


@case("unlink/11")
def _(d: Path) -> None:
    """A descriptor open for writing survives unlink: writes and reads keep working."""
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"abc")
        os.unlink(d / "f")
        os.write(fd, b"def")
        assert os.pread(fd, 10, 0) == b"abcdef"
    finally:
        os.close(fd)
    assert missing(d / "f")


# ---- rename --------------------------------------------------------------------------------

@case("rename/01")
def _(d: Path) -> None:
    """rename of a file: the old name is gone, the new one has the data."""
    write(d / "a", b"payload")
    os.rename(d / "a", d / "b")
    assert missing(d / "a") and (d / "b").read_bytes() == b"payload"


@case("rename/02")
def _(d: Path) -> None:
    """rename over an existing file replaces it atomically."""
    write(d / "a", b"new")
    write(d / "b", b"old old old")
    os.rename(d / "a", d / "b")
    assert (d / "b").read_bytes() == b"new" and os.listdir(d) == ["b"]


@case("rename/03")
def _(d: Path) -> None:
    """rename of a directory moves its whole tree."""
    os.makedirs(d / "a" / "x" / "y")
    write(d / "a" / "x" / "y" / "f", b"deep")
    write(d / "a" / "top", b"top")
    os.rename(d / "a", d / "b")
    assert missing(d / "a")
    assert (d / "b" / "x" / "y" / "f").read_bytes() == b"deep" and (d / "b" / "top").read_bytes() == b"top"


@case("rename/04")
def _(d: Path) -> None:
    """rename of a directory into its own subdirectory: EINVAL."""
    os.makedirs(d / "a" / "sub")
    expect_errno(errno.EINVAL, os.rename, d / "a", d / "a" / "sub" / "a")
    expect_errno(errno.EINVAL, os.rename, d / "a", d / "a" / "x")


@case("rename/05")
def _(d: Path) -> None:
    """rename of a file over a directory: EISDIR."""
    write(d / "f")
    os.mkdir(d / "dir")
    expect_errno(errno.EISDIR, os.rename, d / "f", d / "dir")


@case("rename/06")
def _(d: Path) -> None:
    """rename of a directory over a file: ENOTDIR."""
    write(d / "f")
    os.mkdir(d / "dir")
    expect_errno(errno.ENOTDIR, os.rename, d / "dir", d / "f")


@case("rename/07")
def _(d: Path) -> None:
    """rename of a directory over a non-empty directory: ENOTEMPTY (or EEXIST)."""
    os.mkdir(d / "a")
    os.mkdir(d / "b")
    write(d / "b" / "f")
    expect_errno((errno.ENOTEMPTY, errno.EEXIST), os.rename, d / "a", d / "b")
    assert (d / "b" / "f").exists()


@case("rename/08")
def _(d: Path) -> None:
    """rename of a directory over an empty directory replaces it."""
    os.mkdir(d / "a")
    write(d / "a" / "f", b"moved")
    os.mkdir(d / "b")
    os.rename(d / "a", d / "b")
    assert missing(d / "a") and (d / "b" / "f").read_bytes() == b"moved"


@case("rename/09")
def _(d: Path) -> None:
    """rename of a missing source: ENOENT."""
    expect_errno(errno.ENOENT, os.rename, d / "nope", d / "b")


@case("rename/10")
def _(d: Path) -> None:
    """rename into a missing directory: ENOENT, source kept."""
    write(d / "a")
    expect_errno(errno.ENOENT, os.rename, d / "a", d / "nodir" / "b")
    assert (d / "a").exists()


@case("rename/11")
def _(d: Path) -> None:
    """rename with a regular file as a destination component: ENOTDIR."""
    write(d / "a")
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.rename, d / "a", d / "f" / "b")


@case("rename/12")
def _(d: Path) -> None:
    """rename of a name onto itself succeeds and changes nothing."""
    write(d / "a", b"same")
    os.rename(d / "a", d / "a")
    assert (d / "a").read_bytes() == b"same"


@case("rename/13")
def _(d: Path) -> None:
    """rename to a 256-byte name: ENAMETOOLONG; to 255 bytes: fine."""
    write(d / "a", b"x")
    expect_errno(errno.ENAMETOOLONG, os.rename, d / "a", d / NAME_256)
    os.rename(d / "a", d / NAME_255)
    assert (d / NAME_255).read_bytes() == b"x"


@case("rename/14")
def _(d: Path) -> None:
    """renameat2(RENAME_NOREPLACE) onto an existing name: EEXIST, both kept."""
    write(d / "a", b"a")
    write(d / "b", b"b")
    expect_errno(errno.EEXIST, renameat2, d / "a", d / "b", RENAME_NOREPLACE)
    assert (d / "a").read_bytes() == b"a" and (d / "b").read_bytes() == b"b"


@case("rename/15")
def _(d: Path) -> None:
    """renameat2(RENAME_NOREPLACE) onto a free name renames."""
    write(d / "a", b"a")
    renameat2(d / "a", d / "b", RENAME_NOREPLACE)
    assert missing(d / "a") and (d / "b").read_bytes() == b"a"


@case("rename/16")
def _(d: Path) -> None:
    """rename across directories."""
    os.mkdir(d / "src")
    os.mkdir(d / "dst")
    write(d / "src" / "f", b"travel")
    os.rename(d / "src" / "f", d / "dst" / "g")
    assert os.listdir(d / "src") == [] and (d / "dst" / "g").read_bytes() == b"travel"


@case("rename/17")
def _(d: Path) -> None:
    """rename keeps the file's mtime."""
    write(d / "a")
    os.utime(d / "a", (OLD + 5, OLD + 5))
    os.rename(d / "a", d / "b")
    assert os.stat(d / "b").st_mtime == OLD + 5


@case("rename/18")
def _(d: Path) -> None:
    """rename keeps the file's mode."""
    write(d / "a")
    os.chmod(d / "a", 0o604)
    os.rename(d / "a", d / "b")
    assert perms(d / "b") == 0o604


@case("rename/19")
def _(d: Path) -> None:
    """rename updates the mtime of both parent directories."""
    os.mkdir(d / "src")
    os.mkdir(d / "dst")
    write(d / "src" / "f")
    make_old(d / "src")
    make_old(d / "dst")
    os.rename(d / "src" / "f", d / "dst" / "f")
    assert_changed_recently(d / "src")
    assert_changed_recently(d / "dst")


@case("rename/20")
def _(d: Path) -> None:
    """rename of '.' or '..' as a source: EBUSY or EINVAL."""
    os.mkdir(d / "sub")
    expect_errno((errno.EBUSY, errno.EINVAL), os.rename, str(d / "sub") + "/.", d / "x")
    expect_errno((errno.EBUSY, errno.EINVAL, errno.ENOTEMPTY), os.rename, str(d / "sub") + "/..", d / "y")


@case("rename/21")
def _(d: Path) -> None:
    """An open descriptor keeps reading the file after a rename."""
    write(d / "a", b"opened before")
    fd = os.open(d / "a", os.O_RDONLY)
    try:
        os.rename(d / "a", d / "b")
        assert os.pread(fd, 100, 0) == b"opened before"
    finally:
        os.close(fd)


@case("rename/22")
def _(d: Path) -> None:
    """Data written through a descriptor lands in the renamed file."""
    fd = os.open(d / "a", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"written ")
        os.rename(d / "a", d / "b")
        os.write(fd, b"after rename")
    finally:
        os.close(fd)
    assert missing(d / "a") and (d / "b").read_bytes() == b"written after rename"


@case("rename/23")
def _(d: Path) -> None:
    """rename of a file keeps its inode number."""
    write(d / "a")
    ino = os.stat(d / "a").st_ino
    os.rename(d / "a", d / "b")
    assert os.stat(d / "b").st_ino == ino


@case("rename/24")
def _(d: Path) -> None:
    """rename of a directory moves its subdirectory count too: old parent nlink - 1."""
    os.mkdir(d / "p1")
    os.mkdir(d / "p2")
    os.mkdir(d / "p1" / "c")
    n1, n2 = os.stat(d / "p1").st_nlink, os.stat(d / "p2").st_nlink
    os.rename(d / "p1" / "c", d / "p2" / "c")
    assert (os.stat(d / "p1").st_nlink, os.stat(d / "p2").st_nlink) == (n1 - 1, n2 + 1)


# ---- chmod ---------------------------------------------------------------------------------

@case("chmod/01")
def _(d: Path) -> None:
    """chmod of a file sets its permission bits."""
    write(d / "f")
    os.chmod(d / "f", 0o600)
    assert perms(d / "f") == 0o600
    os.chmod(d / "f", 0o751)
    assert perms(d / "f") == 0o751


@case("chmod/02")
def _(d: Path) -> None:
    """chmod of a directory sets its permission bits."""
    os.mkdir(d / "sub")
    os.chmod(d / "sub", 0o701)
    assert perms(d / "sub") == 0o701 and stat.S_ISDIR(os.stat(d / "sub").st_mode)


@case("chmod/03")
def _(d: Path) -> None:
    """chmod keeps setuid, setgid and sticky bits."""
    write(d / "f")
    os.chmod(d / "f", 0o4755)
    assert perms(d / "f") == 0o4755
    os.chmod(d / "f", 0o2755)
    assert perms(d / "f") == 0o2755
    os.mkdir(d / "sub")
    os.chmod(d / "sub", 0o1777)
    assert perms(d / "sub") == 0o1777


@case("chmod/04")
def _(d: Path) -> None:
    """chmod of a missing name: ENOENT."""
    expect_errno(errno.ENOENT, os.chmod, d / "nope", 0o644)


@case("chmod/05")
def _(d: Path) -> None:
    """chmod with a regular file as a path component: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.chmod, d / "f" / "x", 0o644)


@case("chmod/06")
def _(d: Path) -> None:
    """chmod of a 256-byte name: ENAMETOOLONG."""
    expect_errno(errno.ENAMETOOLONG, os.chmod, d / NAME_256, 0o644)


@case("chmod/07")
def _(d: Path) -> None:
    """chmod updates ctime."""
    write(d / "f")
    make_old(d / "f")
    os.chmod(d / "f", 0o600)
    assert_changed_recently(d / "f", "st_ctime")


@case("chmod/08")
def _(d: Path) -> None:
    """chmod does not change mtime."""
    write(d / "f")
    make_old(d / "f")
    os.chmod(d / "f", 0o600)
    assert os.stat(d / "f").st_mtime == OLD


@case("chmod/09")
def _(d: Path) -> None:
    """fchmod on an open descriptor."""
    fd = os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.fchmod(fd, 0o640)
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o640
    finally:
        os.close(fd)
    assert perms(d / "f") == 0o640


@case("chmod/10")
def _(d: Path) -> None:
    """chmod 0 leaves a file with no permission bits."""
    write(d / "f")
    os.chmod(d / "f", 0)
    assert perms(d / "f") == 0


@case("chmod/11")
def _(d: Path) -> None:
    """A mode set while the file is open for writing survives the writes and the close."""
    fd = os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"before")
        os.fchmod(fd, 0o600)
        os.write(fd, b" after")
    finally:
        os.close(fd)
    assert perms(d / "f") == 0o600 and (d / "f").read_bytes() == b"before after"


@case("chmod/12")
def _(d: Path) -> None:
    """chmod keeps the file's data and size."""
    write(d / "f", b"data" * 1000)
    os.chmod(d / "f", 0o400)
    assert os.stat(d / "f").st_size == 4000 and (d / "f").read_bytes() == b"data" * 1000


# ---- chown ---------------------------------------------------------------------------------

@case("chown/01")
def _(d: Path) -> None:
    """chown sets owner and group."""
    write(d / "f")
    os.chown(d / "f", 65534, 65533)
    st = os.stat(d / "f")
    assert (st.st_uid, st.st_gid) == (65534, 65533)


@case("chown/02")
def _(d: Path) -> None:
    """chown with uid -1 changes only the group."""
    write(d / "f")
    os.chown(d / "f", 123, 456)
    os.chown(d / "f", -1, 789)
    st = os.stat(d / "f")
    assert (st.st_uid, st.st_gid) == (123, 789)


@case("chown/03")
def _(d: Path) -> None:
    """chown with gid -1 changes only the owner."""
    write(d / "f")
    os.chown(d / "f", 123, 456)
    os.chown(d / "f", 321, -1)
    st = os.stat(d / "f")
    assert (st.st_uid, st.st_gid) == (321, 456)


@case("chown/04")
def _(d: Path) -> None:
    """chown of a missing name: ENOENT."""
    expect_errno(errno.ENOENT, os.chown, d / "nope", 1, 1)


@case("chown/05")
def _(d: Path) -> None:
    """chown with a regular file as a path component: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.chown, d / "f" / "x", 1, 1)


@case("chown/06")
def _(d: Path) -> None:
    """chown of a directory."""
    os.mkdir(d / "sub")
    os.chown(d / "sub", 1000, 1000)
    st = os.stat(d / "sub")
    assert (st.st_uid, st.st_gid) == (1000, 1000)


@case("chown/07")
def _(d: Path) -> None:
    """chown of an executable file clears its setuid and setgid bits."""
    write(d / "f")
    os.chmod(d / "f", 0o6755)
    os.chown(d / "f", 1000, 1000)
    assert perms(d / "f") == 0o755


@case("chown/08")
def _(d: Path) -> None:
    """fchown on an open descriptor."""
    fd = os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.fchown(fd, 42, 43)
    finally:
        os.close(fd)
    st = os.stat(d / "f")
    assert (st.st_uid, st.st_gid) == (42, 43)


@case("chown/09")
def _(d: Path) -> None:
    """chown updates ctime."""
    write(d / "f")
    make_old(d / "f")
    os.chown(d / "f", 7, 7)
    assert_changed_recently(d / "f", "st_ctime")


@case("chown/10")
def _(d: Path) -> None:
    """chown of a 256-byte name: ENAMETOOLONG."""
    expect_errno(errno.ENAMETOOLONG, os.chown, d / NAME_256, 1, 1)


@case("chown/11")
def _(d: Path) -> None:
    """Owner and group survive a later write and close."""
    write(d / "f", b"a")
    os.chown(d / "f", 500, 501)
    with open(d / "f", "ab") as f:
        f.write(b"b")
    st = os.stat(d / "f")
    assert (st.st_uid, st.st_gid) == (500, 501) and (d / "f").read_bytes() == b"ab"


# ---- truncate ------------------------------------------------------------------------------

@case("truncate/01")
def _(d: Path) -> None:
    """truncate shrinks a file: size and bytes."""
    write(d / "f", b"0123456789")
    os.truncate(d / "f", 4)
    assert os.stat(d / "f").st_size == 4 and (d / "f").read_bytes() == b"0123"


@case("truncate/02")
def _(d: Path) -> None:
    """truncate grows a file with zero bytes."""
    write(d / "f", b"abc")
    os.truncate(d / "f", 4096 + 3)
    data = (d / "f").read_bytes()
    assert len(data) == 4099 and data[:3] == b"abc" and data[3:] == bytes(4096)


@case("truncate/03")
def _(d: Path) -> None:
    """truncate to 0 empties a file."""
    write(d / "f", b"abc" * 1000)
    os.truncate(d / "f", 0)
    assert os.stat(d / "f").st_size == 0 and (d / "f").read_bytes() == b""


@case("truncate/04")
def _(d: Path) -> None:
    """truncate of a missing name: ENOENT."""
    expect_errno(errno.ENOENT, os.truncate, d / "nope", 0)


@case("truncate/05")
def _(d: Path) -> None:
    """truncate of a directory: EISDIR."""
    os.mkdir(d / "sub")
    expect_errno(errno.EISDIR, os.truncate, d / "sub", 0)


@case("truncate/06")
def _(d: Path) -> None:
    """truncate to a negative length: EINVAL."""
    write(d / "f")
    expect_errno(errno.EINVAL, os.truncate, d / "f", -1)


@case("truncate/07")
def _(d: Path) -> None:
    """truncate with a regular file as a path component: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.truncate, d / "f" / "x", 0)


@case("truncate/08")
def _(d: Path) -> None:
    """truncate that changes the size updates mtime."""
    write(d / "f", b"0123456789")
    make_old(d / "f")
    os.truncate(d / "f", 5)
    assert_changed_recently(d / "f")


@case("truncate/09")
def _(d: Path) -> None:
    """truncate of a 256-byte name: ENAMETOOLONG."""
    expect_errno(errno.ENAMETOOLONG, os.truncate, d / NAME_256, 0)


@case("truncate/10")
def _(d: Path) -> None:
    """truncate to the same size keeps the bytes."""
    write(d / "f", b"unchanged")
    os.truncate(d / "f", 9)
    assert (d / "f").read_bytes() == b"unchanged"


@case("truncate/11")
def _(d: Path) -> None:
    """Shrink then grow: the cut bytes come back as zeros."""
    write(d / "f", b"ABCDEFGH")
    os.truncate(d / "f", 2)
    os.truncate(d / "f", 6)
    assert (d / "f").read_bytes() == b"AB\0\0\0\0"


@case("truncate/12")
def _(d: Path) -> None:
    """truncate of a file crossing a 1 MiB boundary keeps the bytes before the cut."""
    data = bytes(range(256)) * 4200  # 1,075,200 bytes
    write(d / "f", data)
    os.truncate(d / "f", (1 << 20) + 7)
    assert (d / "f").read_bytes() == data[: (1 << 20) + 7]


# ---- ftruncate -----------------------------------------------------------------------------

@case("ftruncate/01")
def _(d: Path) -> None:
    """ftruncate shrinks through the descriptor."""
    write(d / "f", b"0123456789")
    fd = os.open(d / "f", os.O_RDWR)
    try:
        os.ftruncate(fd, 3)
        assert os.fstat(fd).st_size == 3 and os.pread(fd, 100, 0) == b"012"
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == b"012"


@case("ftruncate/02")
def _(d: Path) -> None:
    """ftruncate grows with zeros."""
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"xy")
        os.ftruncate(fd, 10)
        assert os.pread(fd, 100, 0) == b"xy" + bytes(8)
    finally:
        os.close(fd)
    assert os.stat(d / "f").st_size == 10


@case("ftruncate/03")
def _(d: Path) -> None:
    """ftruncate on a read-only descriptor: EINVAL or EBADF."""
    write(d / "f", b"abc")
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        expect_errno((errno.EINVAL, errno.EBADF), os.ftruncate, fd, 0)
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == b"abc"


@case("ftruncate/04")
def _(d: Path) -> None:
    """ftruncate to a negative length: EINVAL."""
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        expect_errno(errno.EINVAL, os.ftruncate, fd, -1)
    finally:
        os.close(fd)


@case("ftruncate/05")
def _(d: Path) -> None:
    """A write past a truncated end leaves a hole of zeros."""
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"abcdef")
        os.ftruncate(fd, 2)
        os.pwrite(fd, b"Z", 5)
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == b"ab\0\0\0Z"


@case("ftruncate/06")
def _(d: Path) -> None:
    """ftruncate on a directory descriptor: EINVAL or EBADF."""
    os.mkdir(d / "sub")
    fd = os.open(d / "sub", os.O_RDONLY | os.O_DIRECTORY)
    try:
        expect_errno((errno.EINVAL, errno.EBADF, errno.EISDIR), os.ftruncate, fd, 0)
    finally:
        os.close(fd)


@case("ftruncate/07")
def _(d: Path) -> None:
    """ftruncate updates mtime."""
    write(d / "f", b"0123456789")
    make_old(d / "f")
    fd = os.open(d / "f", os.O_RDWR)
    try:
        os.ftruncate(fd, 1)
    finally:
        os.close(fd)
    assert_changed_recently(d / "f")


@case("ftruncate/08")
def _(d: Path) -> None:
    """O_TRUNC|O_CREAT then ftruncate to a size: the size sticks after close."""
    fd = os.open(d / "f", os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    try:
        os.ftruncate(fd, 12345)
    finally:
        os.close(fd)
    assert os.stat(d / "f").st_size == 12345 and (d / "f").read_bytes() == bytes(12345)


# ---- write, read and times -----------------------------------------------------------------

@case("write/01")
def _(d: Path) -> None:
    """write updates mtime."""
    write(d / "f", b"abc")
    make_old(d / "f")
    with open(d / "f", "r+b") as f:
        f.write(b"X")
    assert_changed_recently(d / "f")


@case("write/02")
def _(d: Path) -> None:
    """write beyond the end grows st_size."""
    write(d / "f", b"abc")
    with open(d / "f", "ab") as f:
        f.write(b"defg")
    assert os.stat(d / "f").st_size == 7


@case("write/03")
def _(d: Path) -> None:
    """pwrite far past the end leaves a hole of zeros."""
    fd = os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.pwrite(fd, b"end", 100_000)
    finally:
        os.close(fd)
    data = (d / "f").read_bytes()
    assert len(data) == 100_003 and data[:100_000] == bytes(100_000) and data[-3:] == b"end"


@case("write/04")
def _(d: Path) -> None:
    """A read on the same descriptor sees what was just written."""
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"read me back")
        assert os.pread(fd, 100, 0) == b"read me back"
    finally:
        os.close(fd)


@case("write/05")
def _(d: Path) -> None:
    """Another descriptor sees written data before the writer closes."""
    fd = os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"visible")
        fd2 = os.open(d / "f", os.O_RDONLY)
        try:
            assert os.read(fd2, 100) == b"visible"
        finally:
            os.close(fd2)
    finally:
        os.close(fd)


@case("write/06")
def _(d: Path) -> None:
    """Overwriting the middle of a file keeps the rest."""
    write(d / "f", b"0123456789")
    fd = os.open(d / "f", os.O_WRONLY)
    try:
        os.pwrite(fd, b"abc", 4)
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == b"0123abc789"


@case("write/07")
def _(d: Path) -> None:
    """Two O_APPEND descriptors interleave whole appends."""
    write(d / "f", b"")
    a = os.open(d / "f", os.O_WRONLY | os.O_APPEND)
    b = os.open(d / "f", os.O_WRONLY | os.O_APPEND)
    try:
        os.write(a, b"1")
        os.write(b, b"22")
        os.write(a, b"333")
    finally:
        os.close(a)
        os.close(b)
    assert (d / "f").read_bytes() == b"122333"


@case("write/08")
def _(d: Path) -> None:
    """A 3 MiB file with a non-repeating pattern reads back exactly."""
    data = b"".join(i.to_bytes(4, "little") for i in range(3 * 1024 * 1024 // 4)) + b"tail"
    write(d / "f", data)
    assert (d / "f").read_bytes() == data


@case("write/09")
def _(d: Path) -> None:
    """fsync and fdatasync succeed and the data is there."""
    fd = os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"synced")
        os.fsync(fd)
        os.write(fd, b" twice")
        os.fdatasync(fd)
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == b"synced twice"


@case("write/10")
def _(d: Path) -> None:
    """A write changes mtime but a read does not."""
    write(d / "f", b"abc")
    make_old(d / "f")
    assert (d / "f").read_bytes() == b"abc"
    assert os.stat(d / "f").st_mtime == OLD


@case("write/11")
def _(d: Path) -> None:
    """lseek SEEK_END and SEEK_CUR."""
    write(d / "f", b"0123456789")
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        assert os.lseek(fd, -3, os.SEEK_END) == 7
        assert os.read(fd, 2) == b"78"
        assert os.lseek(fd, -4, os.SEEK_CUR) == 5
        assert os.read(fd, 10) == b"56789"
        assert os.read(fd, 10) == b""
    finally:
        os.close(fd)


@case("write/12")
def _(d: Path) -> None:
    """A read past the end returns 0 bytes."""
    write(d / "f", b"abc")
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        assert os.pread(fd, 10, 3) == b"" and os.pread(fd, 10, 1000) == b""
    finally:
        os.close(fd)


@case("write/13")
def _(d: Path) -> None:
    """A zero-byte write succeeds and changes nothing."""
    write(d / "f", b"abc")
    fd = os.open(d / "f", os.O_WRONLY)
    try:
        assert os.write(fd, b"") == 0
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == b"abc"


@case("write/14")
def _(d: Path) -> None:
    """Random pwrites over a file match a reference buffer."""
    rnd = random.Random(42)
    ref = bytearray(300_000)
    fd = os.open(d / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, len(ref))
        for _ in range(200):
            off = rnd.randrange(len(ref) - 5000)
            chunk = rnd.randbytes(rnd.randrange(1, 5000))
            os.pwrite(fd, chunk, off)
            ref[off:off + len(chunk)] = chunk
    finally:
        os.close(fd)
    assert (d / "f").read_bytes() == bytes(ref)


# ---- utimensat -----------------------------------------------------------------------------

@case("utimensat/01")
def _(d: Path) -> None:
    """utimensat sets mtime to the second."""
    write(d / "f")
    os.utime(d / "f", (OLD, OLD + 77))
    assert os.stat(d / "f").st_mtime == OLD + 77


@case("utimensat/02")
def _(d: Path) -> None:
    """utimensat keeps nanoseconds of mtime."""
    write(d / "f")
    os.utime(d / "f", ns=(OLD * 10**9, OLD * 10**9 + 123_456_789))
    assert os.stat(d / "f").st_mtime_ns == OLD * 10**9 + 123_456_789


@case("utimensat/03")
def _(d: Path) -> None:
    """utimensat sets atime independently of mtime."""
    write(d / "f")
    os.utime(d / "f", (OLD + 1, OLD + 2))
    st = os.stat(d / "f")
    assert (st.st_atime, st.st_mtime) == (OLD + 1, OLD + 2)


@case("utimensat/04")
def _(d: Path) -> None:
    """utimensat with NULL times (UTIME_NOW) sets mtime to now."""
    write(d / "f")
    make_old(d / "f")
    os.utime(d / "f")
    assert_changed_recently(d / "f")


@case("utimensat/05")
def _(d: Path) -> None:
    """UTIME_OMIT for mtime leaves mtime alone."""
    write(d / "f")
    os.utime(d / "f", (OLD, OLD + 9))
    utimensat(d / "f", (OLD + 3, 0), (0, UTIME_OMIT))
    assert os.stat(d / "f").st_mtime == OLD + 9


@case("utimensat/06")
def _(d: Path) -> None:
    """UTIME_NOW for mtime only."""
    write(d / "f")
    make_old(d / "f")
    utimensat(d / "f", (0, UTIME_OMIT), (0, UTIME_NOW))
    assert_changed_recently(d / "f")


@case("utimensat/07")
def _(d: Path) -> None:
    """utimensat of a directory."""
    os.mkdir(d / "sub")
    os.utime(d / "sub", (OLD, OLD + 11))
    assert os.stat(d / "sub").st_mtime == OLD + 11


@case("utimensat/08")
def _(d: Path) -> None:
    """utimensat of a missing name: ENOENT."""
    expect_errno(errno.ENOENT, os.utime, d / "nope", (OLD, OLD))


@case("utimensat/09")
def _(d: Path) -> None:
    """Times near the epoch and in 2100."""
    write(d / "f")
    os.utime(d / "f", (1, 1))
    assert os.stat(d / "f").st_mtime == 1
    os.utime(d / "f", (4_102_444_800, 4_102_444_800))
    assert os.stat(d / "f").st_mtime == 4_102_444_800


@case("utimensat/10")
def _(d: Path) -> None:
    """futimens on an open descriptor."""
    fd = os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.utime(fd, (OLD, OLD + 5))
    finally:
        os.close(fd)
    assert os.stat(d / "f").st_mtime == OLD + 5


@case("utimensat/11")
def _(d: Path) -> None:
    """An mtime set after writes, before close, is the mtime after close (touch -r, cp -p)."""
    fd = os.open(d / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.write(fd, b"data")
        os.utime(fd, (OLD, OLD + 33))
    finally:
        os.close(fd)
    assert os.stat(d / "f").st_mtime == OLD + 33


@case("utimensat/12")
def _(d: Path) -> None:
    """utimensat with a regular file as a path component: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.utime, d / "f" / "x", (OLD, OLD))


@case("utimensat/13")
def _(d: Path) -> None:
    """An mtime before 1970."""
    write(d / "f")
    os.utime(d / "f", (-86400, -86400))
    assert os.stat(d / "f").st_mtime == -86400


@case("utimensat/14")
def _(d: Path) -> None:
    """A set mtime survives a later chmod."""
    write(d / "f")
    os.utime(d / "f", (OLD, OLD + 44))
    os.chmod(d / "f", 0o600)
    assert os.stat(d / "f").st_mtime == OLD + 44


# ---- symlink -------------------------------------------------------------------------------

@case("symlink/01")
def _(d: Path) -> None:
    """symlink makes a link that lstat reports as S_IFLNK."""
    os.symlink("target", d / "l")
    assert stat.S_ISLNK(os.lstat(d / "l").st_mode)


@case("symlink/02")
def _(d: Path) -> None:
    """readlink returns the target as given."""
    os.symlink("../some/where", d / "l")
    assert os.readlink(d / "l") == "../some/where"


@case("symlink/03")
def _(d: Path) -> None:
    """stat and open follow a link to a file."""
    write(d / "f", b"through the link")
    os.symlink("f", d / "l")
    assert stat.S_ISREG(os.stat(d / "l").st_mode) and (d / "l").read_bytes() == b"through the link"


@case("symlink/04")
def _(d: Path) -> None:
    """symlink over an existing name: EEXIST."""
    write(d / "f")
    expect_errno(errno.EEXIST, os.symlink, "x", d / "f")


@case("symlink/05")
def _(d: Path) -> None:
    """symlink in a missing directory: ENOENT."""
    expect_errno(errno.ENOENT, os.symlink, "x", d / "nodir" / "l")


@case("symlink/06")
def _(d: Path) -> None:
    """A dangling link: lstat works, stat gives ENOENT."""
    os.symlink("nothing-here", d / "l")
    assert stat.S_ISLNK(os.lstat(d / "l").st_mode)
    expect_errno(errno.ENOENT, os.stat, d / "l")


@case("symlink/07")
def _(d: Path) -> None:
    """symlink with a 256-byte name: ENAMETOOLONG."""
    expect_errno(errno.ENAMETOOLONG, os.symlink, "x", d / NAME_256)


@case("symlink/08")
def _(d: Path) -> None:
    """unlink of a link removes the link, not the target."""
    write(d / "f", b"stays")
    os.symlink("f", d / "l")
    os.unlink(d / "l")
    assert missing(d / "l") and (d / "f").read_bytes() == b"stays"


@case("symlink/09")
def _(d: Path) -> None:
    """A 1023-byte target is kept whole."""
    target = ("abcdefg/" * 128)[:1023]
    os.symlink(target, d / "l")
    assert os.readlink(d / "l") == target


@case("symlink/10")
def _(d: Path) -> None:
    """lstat's st_size of a link is the target's length."""
    os.symlink("twelve-bytes", d / "l")
    assert os.lstat(d / "l").st_size == 12


@case("symlink/11")
def _(d: Path) -> None:
    """rename of a link keeps its target."""
    os.symlink("tgt", d / "l")
    os.rename(d / "l", d / "m")
    assert os.readlink(d / "m") == "tgt" and missing(d / "l")


@case("symlink/12")
def _(d: Path) -> None:
    """utimensat(AT_SYMLINK_NOFOLLOW) sets the link's mtime, not the target's."""
    write(d / "f")
    os.utime(d / "f", (OLD, OLD))
    os.symlink("f", d / "l")
    utimensat(d / "l", (OLD + 1, 0), (OLD + 2, 0), AT_SYMLINK_NOFOLLOW)
    assert os.lstat(d / "l").st_mtime == OLD + 2 and os.stat(d / "f").st_mtime == OLD


@case("symlink/13")
def _(d: Path) -> None:
    """A link to a directory can be walked through."""
    os.mkdir(d / "dir")
    write(d / "dir" / "f", b"in dir")
    os.symlink("dir", d / "l")
    assert (d / "l" / "f").read_bytes() == b"in dir"


@case("symlink/14")
def _(d: Path) -> None:
    """A link shows in readdir with type 'link'."""
    os.symlink("x", d / "l")
    entries = {e.name: e for e in os.scandir(d)}
    assert entries["l"].is_symlink()


@case("symlink/15")
def _(d: Path) -> None:
    """readlink of a regular file: EINVAL."""
    write(d / "f")
    expect_errno(errno.EINVAL, os.readlink, d / "f")


# ---- link (hard links: EPERM by design) ----------------------------------------------------

@case("link/01")
def _(d: Path) -> None:
    """link of a file: EPERM (objects have no hard links), nothing created."""
    write(d / "f")
    expect_errno(errno.EPERM, os.link, d / "f", d / "g")
    assert missing(d / "g")


@case("link/02")
def _(d: Path) -> None:
    """link of a directory: EPERM."""
    os.mkdir(d / "sub")
    expect_errno(errno.EPERM, os.link, d / "sub", d / "g")


@case("link/03")
def _(d: Path) -> None:
    """link onto an existing name: EEXIST (checked before the filesystem is asked)."""
    write(d / "f")
    write(d / "g")
    expect_errno(errno.EEXIST, os.link, d / "f", d / "g")


@case("link/04")
def _(d: Path) -> None:
    """link of a missing source: ENOENT."""
    expect_errno(errno.ENOENT, os.link, d / "nope", d / "g")


@case("link/05")
def _(d: Path) -> None:
    """A regular file has st_nlink 1, still 1 after a refused link."""
    write(d / "f")
    assert os.stat(d / "f").st_nlink == 1
    errno_of(os.link, d / "f", d / "g")
    assert os.stat(d / "f").st_nlink == 1


@case("link/06")
def _(d: Path) -> None:
    """link into a missing directory: ENOENT."""
    write(d / "f")
    expect_errno(errno.ENOENT, os.link, d / "f", d / "nodir" / "g")


# ---- mkfifo / mknod (EPERM by design, regular files allowed) -------------------------------

@case("mkfifo/01")
def _(d: Path) -> None:
    """mkfifo: EPERM (object stores have no FIFOs), nothing created."""
    expect_errno(errno.EPERM, os.mkfifo, d / "p")
    assert os.listdir(d) == []


@case("mkfifo/02")
def _(d: Path) -> None:
    """mkfifo over an existing name: EEXIST."""
    write(d / "f")
    expect_errno(errno.EEXIST, os.mkfifo, d / "f")


@case("mkfifo/03")
def _(d: Path) -> None:
    """mkfifo in a missing directory: ENOENT."""
    expect_errno(errno.ENOENT, os.mkfifo, d / "nodir" / "p")


@case("mkfifo/04")
def _(d: Path) -> None:
    """mkfifo with a regular file as a path component: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.mkfifo, d / "f" / "p")


@case("mknod/01")
def _(d: Path) -> None:
    """mknod(S_IFREG) makes an empty regular file with the mode."""
    os.mknod(d / "f", stat.S_IFREG | 0o640)
    st = os.stat(d / "f")
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o640


@case("mknod/02")
def _(d: Path) -> None:
    """mknod of character and block devices: EPERM."""
    expect_errno(errno.EPERM, os.mknod, d / "c", stat.S_IFCHR | 0o644, os.makedev(1, 3))
    expect_errno(errno.EPERM, os.mknod, d / "b", stat.S_IFBLK | 0o644, os.makedev(7, 0))
    assert os.listdir(d) == []


@case("mknod/03")
def _(d: Path) -> None:
    """mknod over an existing name: EEXIST."""
    write(d / "f")
    expect_errno(errno.EEXIST, os.mknod, d / "f", stat.S_IFREG | 0o644)


@case("mknod/04")
def _(d: Path) -> None:
    """mknod(S_IFREG) with a 256-byte name: ENAMETOOLONG."""
    expect_errno(errno.ENAMETOOLONG, os.mknod, d / NAME_256, stat.S_IFREG | 0o644)


# ---- stat ----------------------------------------------------------------------------------

@case("stat/01")
def _(d: Path) -> None:
    """st_ino is stable across stats and open/fstat."""
    write(d / "f")
    a = os.stat(d / "f").st_ino
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        assert os.fstat(fd).st_ino == a
    finally:
        os.close(fd)
    assert os.stat(d / "f").st_ino == a


@case("stat/02")
def _(d: Path) -> None:
    """Different files have different st_ino."""
    for n in "abc":
        write(d / n)
    os.mkdir(d / "sub")
    inos = {os.stat(d / n).st_ino for n in ("a", "b", "c", "sub")}
    assert len(inos) == 4 and os.stat(d).st_ino not in inos


@case("stat/03")
def _(d: Path) -> None:
    """st_blocks covers st_size (512-byte units)."""
    write(d / "f", b"x" * 10_000)
    st = os.stat(d / "f")
    assert st.st_blocks * 512 >= st.st_size == 10_000


@case("stat/04")
def _(d: Path) -> None:
    """stat of a missing name: ENOENT; with a file component: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOENT, os.stat, d / "nope")
    expect_errno(errno.ENOTDIR, os.stat, d / "f" / "x")


@case("stat/05")
def _(d: Path) -> None:
    """stat of a 256-byte name: ENAMETOOLONG."""
    expect_errno(errno.ENAMETOOLONG, os.stat, d / NAME_256)


@case("stat/06")
def _(d: Path) -> None:
    """fstat and stat agree on size, mode and mtime."""
    write(d / "f", b"12345")
    os.utime(d / "f", (OLD, OLD))
    fd = os.open(d / "f", os.O_RDONLY)
    try:
        a, b = os.fstat(fd), os.stat(d / "f")
    finally:
        os.close(fd)
    assert (a.st_size, a.st_mode, a.st_mtime) == (b.st_size, b.st_mode, b.st_mtime) == (5, b.st_mode, OLD)


@case("stat/07")
def _(d: Path) -> None:
    """A directory's '.' and '..' stat like the directory and its parent."""
    os.mkdir(d / "sub")
    assert os.stat(str(d / "sub") + "/.").st_ino == os.stat(d / "sub").st_ino
    assert os.stat(str(d / "sub") + "/..").st_ino == os.stat(d).st_ino


@case("stat/08")
def _(d: Path) -> None:
    """st_size of a directory is non-negative and its type is S_IFDIR."""
    os.mkdir(d / "sub")
    st = os.stat(d / "sub")
    assert stat.S_ISDIR(st.st_mode) and st.st_size >= 0


@case("stat/09")
def _(d: Path) -> None:
    """statvfs reports a name limit of 255 and sane block counts."""
    v = os.statvfs(d)
    assert v.f_namemax == 255 and v.f_bsize > 0 and v.f_blocks >= v.f_bfree


@case("stat/10")
def _(d: Path) -> None:
    """Names with spaces, UTF-8 and shell characters round-trip."""
    names = ["with space", "ünïcödé-文件", "a'b\"c", "semi;colon", "tab\there", "#hash", "dash-", "%41"]
    for n in names:
        write(d / n, n.encode())
    assert sorted(os.listdir(d)) == sorted(names)
    for n in names:
        assert (d / n).read_bytes() == n.encode()


@case("stat/11")
def _(d: Path) -> None:
    """A name that is not UTF-8 is refused with EILSEQ (object keys are UTF-8), nothing made."""
    expect_errno(errno.EILSEQ, os.open, os.fsencode(d) + b"/bad\xff", os.O_CREAT | os.O_WRONLY, 0o644)
    assert os.listdir(d) == []


# ---- readdir -------------------------------------------------------------------------------

@case("readdir/01")
def _(d: Path) -> None:
    """readdir lists exactly the created names."""
    for n in ("b", "a", "c"):
        write(d / n)
    os.mkdir(d / "dir")
    assert sorted(os.listdir(d)) == ["a", "b", "c", "dir"]


@case("readdir/02")
def _(d: Path) -> None:
    """readdir reports the type of each entry."""
    write(d / "f")
    os.mkdir(d / "sub")
    kinds = {e.name: (e.is_file(follow_symlinks=False), e.is_dir(follow_symlinks=False)) for e in os.scandir(d)}
    assert kinds == {"f": (True, False), "sub": (False, True)}


@case("readdir/03")
def _(d: Path) -> None:
    """A directory of 600 entries lists all of them once."""
    names = {f"entry-{i:04d}" for i in range(600)}
    for n in names:
        os.close(os.open(d / n, os.O_CREAT | os.O_WRONLY, 0o644))
    listed = os.listdir(d)
    assert len(listed) == len(set(listed)) == 600 and set(listed) == names


@case("readdir/04")
def _(d: Path) -> None:
    """An entry's inode from readdir matches stat's."""
    write(d / "f")
    (entry,) = list(os.scandir(d))
    assert entry.inode() == os.stat(d / "f").st_ino


@case("readdir/05")
def _(d: Path) -> None:
    """An empty directory lists nothing (besides '.' and '..')."""
    os.mkdir(d / "sub")
    assert os.listdir(d / "sub") == []


@case("readdir/06")
def _(d: Path) -> None:
    """A name created while a directory stream is open shows in a new stream."""
    write(d / "a")
    it = os.scandir(d)
    try:
        first = [e.name for e in it]
        write(d / "b")
    finally:
        it.close()
    assert first == ["a"] and sorted(os.listdir(d)) == ["a", "b"]


@case("readdir/07")
def _(d: Path) -> None:
    """opendir of a regular file: ENOTDIR."""
    write(d / "f")
    expect_errno(errno.ENOTDIR, os.listdir, d / "f")


# --------------------------------------------------------------------------------------------
# Expected failures and parametrization
# --------------------------------------------------------------------------------------------


def load_expected_failures(path: Path = EXPECTED_FAILURES_FILE) -> dict[tuple[str, str | None], str]:
    """{(case id, scheme or None for every remote): reason}. Every line needs a known id and a
    reason, so a stale or unexplained entry fails the collection."""
    out: dict[tuple[str, str | None], str] = {}
    if not path.exists():
        return out
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        entry, _, reason = line.partition("#")
        entry, reason = entry.strip(), reason.strip()
        cid, _, scheme = entry.partition("@")
        if cid not in CASES:
            raise ValueError(f"{path.name}:{n}: unknown case id {cid!r}")
        if not reason:
            raise ValueError(f"{path.name}:{n}: {cid} has no '# reason'")
        out[(cid, scheme or None)] = reason
    return out


EXPECTED = load_expected_failures()


def expected_reason(cid: str, spec: RemoteSpec) -> str | None:
    return EXPECTED.get((cid, spec.scheme)) or EXPECTED.get((cid, None))


class Summary:
    """Counts outcomes per remote and prints one line per remote at the end of the run."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "test_posix_conformance.py::test_posix" not in report.nodeid or "[" not in report.nodeid:
            return
        params = report.nodeid.rsplit("[", 1)[1].rstrip("]")
        remote = next((r.id for r in REMOTES if params.startswith(r.id + "-") or params.endswith("-" + r.id)), "?")
        c = self.counts.setdefault(remote, {})
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if hasattr(report, "wasxfail"):
                key = "xfailed (expected)" if report.skipped else "xpassed"
            elif report.passed:
                key = "passed"
            elif report.skipped:
                key = "skipped"
            elif str(report.longrepr).startswith("[XPASS(strict)]"):
                key = "xpassed (strict: fails)"
            else:
                key = "failed" if report.when == "call" else "errors"
            c[key] = c.get(key, 0) + 1

    def pytest_terminal_summary(self, terminalreporter) -> None:
        order = ["passed", "xfailed (expected)", "failed", "xpassed (strict: fails)", "xpassed", "errors", "skipped"]
        for remote, c in self.counts.items():
            parts = [f"{c[k]} {k}" for k in order if c.get(k)]
            terminalreporter.write_line(f"posix conformance {remote}: {', '.join(parts)} (of {len(CASES)} cases)")


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> None:
    pm = request.config.pluginmanager
    if not pm.has_plugin("objmount-posix-summary"):
        pm.register(Summary(), "objmount-posix-summary")


@pytest.fixture(scope="module", params=REMOTES, ids=[r.id for r in REMOTES])
def posix_mount(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounted]:
    """One mount per remote for the whole module (each case works in a directory of its own)."""
    spec: RemoteSpec = request.param
    mounter = Mounter(tmp_path_factory)
    try:
        yield mounter.mount(Remote(url=spec.unique_url(), spec=spec))
    finally:
        mounter.cleanup()
    if mounter.problems:
        pytest.fail("unmount/teardown problems:\n  " + "\n  ".join(mounter.problems))


@pytest.fixture(scope="module", autouse=True)
def _umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("cid", list(CASES))
def test_posix(request: pytest.FixtureRequest, posix_mount: Mounted, cid: str) -> None:
    reason = expected_reason(cid, posix_mount.remote.spec)
    if reason:
        # Evaluated at call time (pytest's skipping plugin re-reads xfail marks then).
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=reason))
    d = posix_mount / cid.replace("/", "-")
    os.mkdir(d)
    CASES[cid](d)


def test_expected_failures_file_is_valid() -> None:
    """Every line of the expected-failures file names a case and gives a reason (checked at
    import too); ids are unique."""
    assert EXPECTED_FAILURES_FILE.exists()
    seen = [line.split("#")[0].strip() for line in EXPECTED_FAILURES_FILE.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]
    assert len(seen) == len(set(seen)), "duplicate ids in the expected-failures file"
