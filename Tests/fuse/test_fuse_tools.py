"""FUSE tier: everyday tools through the kernel against a live objmount mount.

Run:  OBJMOUNT_BIN=/path/to/objmount python3 -m pytest -q Tests/fuse
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from conftest import (
    MiB,
    OBJMOUNT_BIN,
    SAMPLE_FILES,
    UNICODE_NAME,
    Mounter,
    Mounted,
    Remote,
    fuse_unavailable_reason,
    hashes,
    is_mounted,
    listing,
    make_tree,
    mounts_at,
    pid_alive,
    pid_file_for,
    require_memory,
    run,
    sha256_file,
    stat_of,
)

# Without root or /dev/fuse every test here is collected and skipped with this reason
# (so "no tests collected", pytest exit 5, still means a broken setup).
_skip_reason = fuse_unavailable_reason()
pytestmark = pytest.mark.skipif(_skip_reason is not None, reason=f"FUSE tier skipped: {_skip_reason}")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A local sample tree: nested dirs, empty dirs, files of 0, 1, 4095, 4096, 1 MiB+3 bytes,
    names with spaces and unicode, distinct old mtimes."""
    return make_tree(tmp_path / "src")


def assert_same_tree(src: Path, dst: Path, *, mtimes: bool = True, modes: bool = True) -> None:
    assert listing(dst) == listing(src), "find listing differs"
    src_h, dst_h = hashes(src), hashes(dst)
    assert dst_h == src_h, "sha256 differs"
    assert set(src_h) >= {str(Path(p)) for p in SAMPLE_FILES} or not src_h
    assert stat_of(dst, "%s") == stat_of(src, "%s"), "sizes differ"
    if modes:
        assert stat_of(dst, "%a") == stat_of(src, "%a"), "file modes differ"
    if mtimes:
        assert stat_of(dst, "%Y") == stat_of(src, "%Y"), "file mtimes (stat -c %Y) differ"


# ------------------------------------------------------------------------------------------
# copying
# ------------------------------------------------------------------------------------------


def test_cp_a_tree(mount: Mounted, tree: Path) -> None:
    run(["cp", "-a", tree, mount.path])
    dst = mount.path / tree.name
    assert_same_tree(tree, dst)
    # The odd names made it, byte for byte.
    assert (dst / UNICODE_NAME).stat().st_size == SAMPLE_FILES[UNICODE_NAME]
    assert (dst / "empty.bin").stat().st_size == 0
    assert (dst / "big/one-mib-plus-3.bin").stat().st_size == MiB + 3


def test_cp_a_usr_share_doc_apt(mount: Mounted) -> None:
    src = Path("/usr/share/doc/apt")
    if not src.is_dir():
        pytest.skip("/usr/share/doc/apt is not installed")
    run(["cp", "-a", src, mount.path])
    p = run(["diff", "-r", src, mount.path / "apt"], check=False)
    assert p.returncode == 0 and p.stdout == b"", f"diff -r reported differences:\n{p.stdout.decode()}{p.stderr.decode()}"
    assert listing(mount.path / "apt") == listing(src)


def test_rsync_twice(mount: Mounted, tree: Path) -> None:
    if shutil.which("rsync") is None:
        pytest.fail("rsync is not installed (apt-get install rsync)")
    dst = mount.path / "dst"
    run(["rsync", "-a", f"{tree}/", f"{dst}/"])
    assert_same_tree(tree, dst)
    p = run(["rsync", "-a", "--stats", f"{tree}/", f"{dst}/"])
    out = p.stdout.decode()
    m = re.search(r"Number of regular files transferred: ([\d,]+)", out)
    assert m, f"no transfer count in rsync --stats output:\n{out}"
    assert m.group(1) == "0", f"second rsync pass transferred files again:\n{out}"
    assert stat_of(dst, "%Y") == stat_of(tree, "%Y"), "mtimes did not survive"
    assert hashes(dst) == hashes(tree)


# ------------------------------------------------------------------------------------------
# namespace operations
# ------------------------------------------------------------------------------------------


def test_mv_file_and_directory(mount: Mounted, tree: Path) -> None:
    run(["cp", "-a", tree, mount.path])
    root = mount.path / tree.name
    before = hashes(root)

    # a file
    run(["mv", root / "page.bin", root / "renamed page.bin"])
    assert not (root / "page.bin").exists()
    assert "page.bin" not in os.listdir(root)
    assert sha256_file(root / "renamed page.bin") == before["page.bin"]

    # a directory with nested content, to a new parent
    (root / "moved").mkdir()
    run(["mv", root / "a", root / "moved/a2"])
    assert not (root / "a").exists()
    assert "a" not in os.listdir(root)
    after = hashes(root)
    expected = {}
    for rel, h in before.items():
        if rel == "page.bin":
            rel = "renamed page.bin"
        elif rel.startswith("a/"):
            rel = "moved/a2/" + rel[2:]
        expected[rel] = h
    assert after == expected
    assert listing(root / "moved/a2") == listing(tree / "a")
    assert stat_of(root / "moved/a2", "%Y") == stat_of(tree / "a", "%Y"), "mtimes changed by mv"


def test_rm_r_mkdir_p_rmdir(mount: Mounted, tree: Path) -> None:
    run(["cp", "-a", tree, mount.path])
    run(["rm", "-r", mount.path / tree.name])
    assert not (mount.path / tree.name).exists()
    assert os.listdir(mount.path) == []
    assert listing(mount.path) == []

    run(["mkdir", "-p", mount.path / "a/b/c"])
    assert (mount.path / "a/b/c").is_dir()
    assert listing(mount.path) == ["d a", "d a/b", "d a/b/c"]

    with pytest.raises(OSError) as ei:
        os.rmdir(mount.path / "a")
    assert ei.value.errno == errno.ENOTEMPTY, f"rmdir of a non-empty dir: {ei.value!r}"
    p = run(["rmdir", mount.path / "a/b"], check=False)
    assert p.returncode != 0
    assert (mount.path / "a/b/c").is_dir()

    run(["rmdir", mount.path / "a/b/c"])
    run(["rmdir", mount.path / "a/b"])
    assert listing(mount.path) == ["d a"]


def test_tar_x(mount: Mounted, tree: Path, tmp_path: Path) -> None:
    tarball = tmp_path / "tree.tar"
    run(["tar", "-C", tree.parent, "-cf", tarball, tree.name])
    run(["tar", "-xf", tarball, "-C", mount.path])
    assert_same_tree(tree, mount.path / tree.name)
    # and back out through the mount: tar c of the mounted copy lists the same members
    with tarfile.open(tarball) as t:
        members = sorted(m.name.rstrip("/") for m in t.getmembers())
    p = run(["tar", "-C", mount.path, "-cf", "-", tree.name])
    out = tmp_path / "back.tar"
    out.write_bytes(p.stdout)
    with tarfile.open(out) as t:
        assert sorted(m.name.rstrip("/") for m in t.getmembers()) == members


def test_find_and_stat_after_chmod(mount: Mounted) -> None:
    mp = mount.path
    run(["mkdir", "-p", mp / "d1/d2", mp / "e"])
    run(["touch", mp / "d1/f0"])
    run(["dd", "if=/dev/zero", f"of={mp / 'd1/d2/f5000'}", "bs=5000", "count=1", "status=none"])
    run(["sh", "-c", 'printf hello > "$1"', "sh", mp / "top.txt"])
    p = run(["find", mp, "-mindepth", "1", "-printf", r"%y %P\n"])
    assert sorted(p.stdout.decode().splitlines()) == sorted(
        ["d d1", "d d1/d2", "d e", "f d1/f0", "f d1/d2/f5000", "f top.txt"])
    p = run(["find", mp, "-type", "f", "-size", "+1k", "-printf", r"%P\n"])
    assert p.stdout.decode().split() == ["d1/d2/f5000"]

    f = mp / "d1/d2/f5000"
    run(["chmod", "600", f])
    assert run(["stat", "-c", "%a %s %F", f]).stdout.decode().strip() == "600 5000 regular file"
    run(["chmod", "640", mp / "top.txt"])
    assert run(["stat", "-c", "%a %s", mp / "top.txt"]).stdout.decode().strip() == "640 5"
    run(["chmod", "700", mp / "e"])
    assert run(["stat", "-c", "%a %F", mp / "e"]).stdout.decode().strip() == "700 directory"
    # and the same seen through a walk of the tree (find + stat)
    modes = stat_of(mp, "%a")
    assert (modes["d1/d2/f5000"], modes["top.txt"]) == ("600", "640")


def test_dd_64mib(mount: Mounted, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    run(["dd", "if=/dev/urandom", f"of={src}", "bs=1M", "count=64", "iflag=fullblock", "status=none"])
    dst = mount.path / "big.bin"
    run(["dd", f"if={src}", f"of={dst}", "bs=1M", "conv=fsync", "status=none"], timeout=300)
    assert dst.stat().st_size == 64 * MiB
    back = tmp_path / "back.bin"
    run(["dd", f"if={dst}", f"of={back}", "bs=1M", "status=none"], timeout=300)
    want = sha256_file(src)
    assert sha256_file(back) == want
    assert sha256_file(dst) == want


def test_df(mount: Mounted) -> None:
    p = run(["df", "-T", mount.path])
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 2, p.stdout.decode()
    fields = lines[1].split()
    assert fields[0].startswith("objmount"), f"df source: {lines[1]}"
    assert fields[1] == "fuse.objmount", f"df type: {lines[1]}"
    assert fields[-1] == str(mount.path)
    p = run(["df", "-h", mount.path])
    assert "objmount" in p.stdout.decode()
    p = run(["stat", "-f", "-c", "%T", mount.path])
    assert p.stdout.decode().strip().startswith("fuse")


# ------------------------------------------------------------------------------------------
# lifecycle
# ------------------------------------------------------------------------------------------


def test_unmount_removes_mount_and_daemon(mounter: Mounter, remote: Remote) -> None:
    m = mounter.mount(remote)
    (m.path / "file").write_bytes(b"x" * 10)
    assert m.pid is not None, f"no daemon pid found (pid file {pid_file_for(str(m.path))} or pgrep)"
    assert pid_alive(m.pid)
    run([OBJMOUNT_BIN, "unmount", m.path], timeout=60, env=remote.env)
    assert not is_mounted(m.path), f"still in /proc/self/mountinfo: {mounts_at(m.path)}"
    assert not pid_alive(m.pid), f"daemon pid {m.pid} still running after `objmount unmount` returned"
    assert not os.path.exists(pid_file_for(str(m.path))), "pid file left behind"
    assert m.path.is_dir() and os.listdir(m.path) == []
    # the same mount point can be mounted again
    again = mounter.mount(remote, mountpoint=m.path)
    assert is_mounted(again.path)
    if remote.scheme == "memory":
        assert os.listdir(again.path) == [], "memory:// must start empty"
    else:
        assert (again.path / "file").read_bytes() == b"x" * 10


def test_unmount_not_mounted_is_an_error(mounter: Mounter) -> None:
    mp = mounter.new_mountpoint()
    p = run([OBJMOUNT_BIN, "unmount", mp], check=False, timeout=60)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert len(err.splitlines()) == 1 and "not mounted" in err, err


# ------------------------------------------------------------------------------------------
# CLI errors: exit non-zero, one line on stderr, no crash output, nothing mounted
# ------------------------------------------------------------------------------------------

CRASH_MARKERS = re.compile(r"Traceback|Fatal error|Stack dump|backtrace|Segmentation|Illegal instruction|\bat /|0x[0-9a-f]{8}")


@pytest.mark.parametrize(
    "case, expected",
    [
        ("non_empty_mountpoint", "not empty"),
        ("missing_mountpoint", "does not exist"),
        ("unknown_scheme", "unknown remote scheme"),
        ("bogus_option", "unknown mount option"),
    ],
)
def test_mount_errors(mounter: Mounter, tmp_path: Path, case: str, expected: str) -> None:
    mp = mounter.new_mountpoint()
    cache = tmp_path / "cache"
    remote, extra = "memory://b", []
    if case == "non_empty_mountpoint":
        (mp / "something").write_text("x")
    elif case == "missing_mountpoint":
        mp = mp / "does-not-exist"
    elif case == "unknown_scheme":
        remote = "foo://x"
    elif case == "bogus_option":
        extra = ["-o", "bogus"]
    before = [m for m in mounts_at(mp)]
    p = run([OBJMOUNT_BIN, "mount", remote, mp, "--cache-dir", cache, *extra], check=False, timeout=60)
    err = p.stderr.decode(errors="replace")
    assert p.returncode != 0, f"expected failure, got exit 0; stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line, got {len(lines)}: {err!r}"
    assert lines[0].startswith("objmount: "), lines[0]
    assert expected in lines[0], f"expected {expected!r} in {lines[0]!r}"
    assert not CRASH_MARKERS.search(err), f"crash/trace text in stderr: {err!r}"
    assert p.stdout == b"", f"unexpected stdout: {p.stdout!r}"
    assert mounts_at(mp) == before, "a failed mount left something mounted"


# ------------------------------------------------------------------------------------------
# options
# ------------------------------------------------------------------------------------------


def test_read_only(mounter: Mounter, remote: Remote) -> None:
    m = mounter.mount(remote, options="ro")
    with pytest.raises(OSError) as ei:
        with open(m.path / "new.txt", "wb") as f:
            f.write(b"x")
    assert ei.value.errno == errno.EROFS, repr(ei.value)
    with pytest.raises(OSError) as ei:
        os.mkdir(m.path / "newdir")
    assert ei.value.errno == errno.EROFS, repr(ei.value)
    p = run(["touch", m.path / "t"], check=False)
    assert p.returncode != 0 and b"Read-only file system" in p.stderr, p.stderr
    assert os.listdir(m.path) == []


def test_read_only_seeded(mounter: Mounter, remote: Remote, tree: Path) -> None:
    require_memory(remote)
    m = mounter.mount(remote, options="ro", seed=tree)
    assert hashes(m.path) == hashes(tree)
    target = m.path / "a/x.txt"
    for action in (
        lambda: open(target, "ab").close(),
        lambda: open(target, "r+b").close(),
        lambda: os.unlink(target),
        lambda: os.rename(target, m.path / "a/y.txt"),
        lambda: os.chmod(target, 0o644),
        lambda: os.truncate(target, 0),
        lambda: os.rmdir(m.path / "empty-dir"),
    ):
        with pytest.raises(OSError) as ei:
            action()
        assert ei.value.errno == errno.EROFS, repr(ei.value)
    assert hashes(m.path) == hashes(tree)


def test_seed(mounter: Mounter, remote: Remote, tree: Path) -> None:
    require_memory(remote)
    m = mounter.mount(remote, seed=tree)
    assert listing(m.path) == listing(tree)
    assert hashes(m.path) == hashes(tree)
    assert stat_of(m.path, "%s") == stat_of(tree, "%s")
    assert stat_of(m.path, "%Y") == stat_of(tree, "%Y"), "seeded mtimes differ"
    assert stat_of(m.path, "%a") == stat_of(tree, "%a"), "seeded modes differ"
    # and the seeded files are writable like any other
    run(["sh", "-c", 'printf more >> "$1"', "sh", m.path / "a/x.txt"])
    assert (m.path / "a/x.txt").stat().st_size == SAMPLE_FILES["a/x.txt"] + 4


def test_seed_under_prefix(mounter: Mounter, remote: Remote, tree: Path) -> None:
    require_memory(remote)
    r = Remote(url=remote.url + "/some/prefix", spec=remote.spec)
    m = mounter.mount(r, seed=tree)
    assert listing(m.path) == listing(tree)
    assert hashes(m.path) == hashes(tree)
