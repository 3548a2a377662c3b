"""Symlinks and user extended attributes through the kernel, on every remote of the run:
ln -s / readlink / lstat, tar and rsync -a of trees with symlinks, setfattr/getfattr of user.*
across a remount (the official clients' view is checked in the driver tests)."""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import time
from pathlib import Path

import pytest

from conftest import Mounted, Mounter, Remote, run


def remount(mounter: Mounter, m: Mounted, remote: Remote) -> Mounted:
    run([os.environ["OBJMOUNT_BIN"], "unmount", m.path], timeout=60, env=remote.env)
    return mounter.mount(remote, mountpoint=m.path)


def make_linked_tree(root: Path) -> Path:
    """A small tree with relative, absolute, dangling and directory symlinks."""
    (root / "dir/sub").mkdir(parents=True)
    (root / "dir/file.txt").write_bytes(b"hello\n")
    (root / "dir/sub/deep.bin").write_bytes(bytes(range(256)) * 5)
    os.symlink("file.txt", root / "dir/rel-link")
    os.symlink("/etc/hostname", root / "dir/abs-link")
    os.symlink("does/not/exist", root / "dir/dangling")
    os.symlink("sub", root / "dir/dir-link")
    os.symlink("../dir/sub/deep.bin", root / "dir/sub/up-link")
    return root


def test_ln_s_readlink_lstat(mount: Mounted) -> None:
    p = mount.path
    (p / "target.txt").write_bytes(b"x" * 10)
    (p / "d").mkdir()
    os.symlink("target.txt", p / "rel")
    os.symlink("/nonexistent/abs", p / "dangling")
    os.symlink("d", p / "to-dir")
    assert os.readlink(p / "rel") == "target.txt"
    assert os.readlink(p / "dangling") == "/nonexistent/abs"
    st = os.lstat(p / "rel")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("target.txt")
    # The kernel follows links: to the file, and into the directory.
    assert (p / "rel").read_bytes() == b"x" * 10
    (p / "to-dir" / "inside").write_bytes(b"in")
    assert (p / "d" / "inside").read_bytes() == b"in"
    assert not (p / "dangling").exists() and (p / "dangling").is_symlink()
    out = run(["ls", "-l", p]).stdout.decode()
    assert re.search(r"^l.* rel -> target\.txt$", out, re.M), out
    assert re.search(r"^l.* to-dir -> d$", out, re.M), out
    with pytest.raises(FileExistsError):
        os.symlink("x", p / "rel")
    # rename and unlink act on the link, not its target
    os.rename(p / "rel", p / "d" / "moved")
    assert os.readlink(p / "d" / "moved") == "target.txt"
    assert sorted(os.listdir(p)) == ["d", "dangling", "target.txt", "to-dir"]
    os.utime(p / "d" / "moved", (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    assert os.lstat(p / "d" / "moved").st_mtime == 1_000_000_000
    assert (p / "target.txt").stat().st_mtime != 1_000_000_000
    os.unlink(p / "d" / "moved")
    assert (p / "target.txt").read_bytes() == b"x" * 10
    # find sees the links as links (type from the listing or from a lookup)
    found = run(["find", p, "-type", "l"]).stdout.decode().split()
    assert sorted(Path(f).name for f in found) == ["dangling", "to-dir"]


def test_symlinks_survive_a_remount(mounter: Mounter, remote: Remote) -> None:
    if remote.scheme == "memory":
        pytest.skip("memory:// starts empty at every mount")
    m = mounter.mount(remote)
    os.symlink("../a/b", m.path / "l")
    (m.path / "f").write_bytes(b"data")
    m = remount(mounter, m, remote)
    assert os.readlink(m.path / "l") == "../a/b"
    assert stat.S_ISLNK(os.lstat(m.path / "l").st_mode)
    assert [e.name for e in os.scandir(m.path) if e.is_symlink()] == ["l"]


def test_tar_x_of_a_tree_with_symlinks(mount: Mounted, tmp_path: Path) -> None:
    src = make_linked_tree(tmp_path / "src")
    archive = tmp_path / "t.tar"
    run(["tar", "-C", src, "-cf", archive, "."])
    dst = mount.path / "x"
    dst.mkdir()
    run(["tar", "-C", dst, "-xf", archive])
    p = run(["diff", "-r", "--no-dereference", src, dst], check=False)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    assert os.readlink(dst / "dir/abs-link") == "/etc/hostname"


def test_rsync_a_with_symlinks_twice_and_cp_a(mount: Mounted, tmp_path: Path) -> None:
    src = make_linked_tree(tmp_path / "src")
    dst = mount.path / "r"
    run(["rsync", "-a", f"{src}/", f"{dst}/"])
    p = run(["diff", "-r", "--no-dereference", src, dst], check=False)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    out = run(["rsync", "-a", "-i", "--stats", f"{src}/", f"{dst}/"]).stdout.decode()
    assert re.search(r"Number of regular files transferred: 0\b", out), out
    changed = [line for line in out.splitlines() if re.match(r"^[<>ch.*][fdLDS]", line) and not line.startswith(".")]
    assert changed == [], f"second pass changed entries:\n{out}"
    run(["cp", "-a", dst, mount.path / "c"])
    p = run(["diff", "-r", "--no-dereference", src, mount.path / "c"], check=False)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


def test_rsync_a_usr_share_doc_twice(mount: Mounted, remote: Remote) -> None:
    src = Path("/usr/share/doc")
    dst = mount.path / "doc"
    # All of /usr/share/doc (~5,500 entries) on memory://; on the server remotes (one upload
    # and a copy + delete per file, ~15 files/s on this 2-core machine) the packages from a to
    # c, a few hundred entries with symlinked changelogs, so the FUSE tier fits CI's time.
    # OBJMOUNT_TEST_FULL_DOC=1 takes the whole tree on every remote (by hand: ~10 min a remote).
    full = remote.scheme == "memory" or os.environ.get("OBJMOUNT_TEST_FULL_DOC") == "1"
    first = "abcdefghijklmnopqrstuvwxyz" if full else "abc"
    selection = sorted(e for e in os.listdir(src) if e[0] in first)
    args = [f"{src}/{e}" for e in selection]
    run(["rsync", "-a", *args, f"{dst}/"], timeout=1800)
    again = run(["rsync", "-a", "--stats", *args, f"{dst}/"], timeout=900).stdout.decode()
    assert re.search(r"Number of regular files transferred: 0\b", again), again
    for e in selection[:20]:
        p = run(["diff", "-r", "--no-dereference", src / e, dst / e], check=False)
        assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()


def test_user_xattrs(mounter: Mounter, remote: Remote) -> None:
    if shutil.which("setfattr") is None:
        pytest.fail("setfattr is not installed (apt-get install attr)")
    m = mounter.mount(remote)
    f = m.path / "f"
    f.write_bytes(b"content")
    os.setxattr(f, "user.color", b"blue")
    os.setxattr(f, "user.Binary_Name", bytes([0, 1, 2, 255]))
    run(["setfattr", "-n", "user.comment", "-v", "written by setfattr", f])
    assert os.getxattr(f, "user.color") == b"blue"
    names = set(os.listxattr(f))
    assert {"user.color", "user.Binary_Name", "user.comment"} <= names
    with pytest.raises(OSError) as e:
        os.getxattr(f, "user.missing")
    assert e.value.errno == errno.ENODATA
    for name in ("security.foo", "trusted.foo"):
        with pytest.raises(OSError) as e:
            os.setxattr(f, name, b"x")
        assert e.value.errno in (errno.ENOTSUP, errno.EPERM), (name, e.value)
    # Reading a namespace the mount does not support is ENOTSUP (not ENODATA), on files and
    # directories: `ls -l` then stops asking for SELinux labels and ACLs on this mount.
    (m.path / "dir").mkdir()
    for path in (f, m.path / "dir"):
        for name in ("security.selinux", "system.posix_acl_access", "trusted.foo"):
            with pytest.raises(OSError) as e:
                os.getxattr(path, name, follow_symlinks=False)
            assert e.value.errno == errno.ENOTSUP, (path, name, e.value)
    with pytest.raises(OSError) as e:
        os.setxattr(f, "user.too-big", b"x" * 5000)
    assert e.value.errno in (errno.E2BIG, errno.ENOSPC)
    os.removexattr(f, "user.comment")
    # A new file: the attribute rides along with its upload; mv keeps it.
    with open(m.path / "g", "wb") as out:
        out.write(b"g")
        os.setxattr(out.fileno(), "user.origin", b"camera")
    os.rename(m.path / "g", m.path / "h")
    assert f.read_bytes() == b"content"
    if remote.scheme != "memory":
        m = remount(mounter, m, remote)
        f = m.path / "f"
    assert os.getxattr(f, "user.color") == b"blue"
    assert os.getxattr(f, "user.Binary_Name") == bytes([0, 1, 2, 255])
    assert "user.comment" not in os.listxattr(f)
    assert os.getxattr(m.path / "h", "user.origin") == b"camera"
    out = run(["getfattr", "-d", f]).stdout.decode()
    assert 'user.color="blue"' in out, out
    assert f.read_bytes() == b"content"


def test_directory_modes_and_mtimes_survive_a_remount(mounter: Mounter, remote: Remote, tmp_path: Path) -> None:
    """Directories keep mode and mtime on their marker: after a remount `rsync -a` finds
    nothing to change (no itemized line at all)."""
    src = make_linked_tree(tmp_path / "src")
    os.chmod(src / "dir/sub", 0o750)
    os.chmod(src / "dir", 0o711)
    os.utime(src / "dir/sub", (1_200_000_000, 1_200_000_000))
    m = mounter.mount(remote)
    run(["rsync", "-a", f"{src}/", f"{m.path}/r/"])
    if remote.scheme != "memory":
        m = remount(mounter, m, remote)
    assert (os.stat(m.path / "r/dir/sub").st_mode & 0o7777) == 0o750
    assert (os.stat(m.path / "r/dir").st_mode & 0o7777) == 0o711
    assert os.stat(m.path / "r/dir/sub").st_mtime == 1_200_000_000
    out = run(["rsync", "-a", "-i", f"{src}/", f"{m.path}/r/"]).stdout.decode()
    assert out.strip() == "", f"second pass after a remount changed:\n{out}"


def test_listing_mtime_shows_the_upload_time_and_still_reads_metadata_when_asked(
        mounter: Mounter, remote: Remote) -> None:
    if remote.scheme == "memory":
        pytest.skip("memory:// listings carry metadata: --listing-mtime changes nothing there")
    m = mounter.mount(remote)
    f = m.path / "old.txt"
    f.write_bytes(b"old")
    os.setxattr(f, "user.color", b"red")
    os.utime(f, (1_000_000_000, 1_000_000_000))
    run([os.environ["OBJMOUNT_BIN"], "unmount", m.path], timeout=60, env=remote.env)
    # With the flag: the listing's Last-Modified (the upload, a moment ago), not the mtime
    # metadata, and the default mode; a user attribute is still read (one HEAD) when asked.
    m = mounter.mount(remote, mountpoint=m.path, extra=["--listing-mtime"])
    assert "old.txt" in os.listdir(m.path)  # as `ls -l` does: the name comes from a listing
    st = os.stat(m.path / "old.txt")
    assert abs(st.st_mtime - time.time()) < 600, st.st_mtime
    assert os.getxattr(m.path / "old.txt", "user.color") == b"red"
    assert (m.path / "old.txt").read_bytes() == b"old"
    # Without it: the stored mtime.
    m = remount(mounter, m, remote)
    assert os.stat(m.path / "old.txt").st_mtime == 1_000_000_000
