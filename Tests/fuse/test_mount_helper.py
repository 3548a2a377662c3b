"""objmount as a mount helper (issue 15, item 2): `mount -t fuse.TYPE SOURCE DIR -o …` and an
fstab line run `TYPE SOURCE DIR -o OPTIONS` through mount.fuse3, which keeps the kernel's and
FUSE's options and drops mount(8)'s (`noauto`, `nofail`, `_netdev`, `x-systemd.*`, `user`…).
objmount takes that form as `objmount mount`, passes nosuid/nodev/noexec/noatime on to the
kernel, and ignores fstab's own options when they reach it directly (`objmount mount -o`).

mount.fuse3 finds the program by name on root's safe PATH: the tests link the objmount under
test as /usr/local/bin/objmount-test-<random> (type `fuse.objmount-test-<random>`) and remove
the link afterwards. memory:// sources need no credentials."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from conftest import OBJMOUNT_BIN, fuse_unavailable_reason, is_mounted, mounts_at

pytestmark = pytest.mark.skipif(fuse_unavailable_reason() is not None or not os.path.isdir("/usr/local/bin"),
                                reason=fuse_unavailable_reason() or "no /usr/local/bin for the helper's link")


@pytest.fixture
def helper(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], list[Path]]]:
    """The fstab type's program (a link to the objmount under test), an environment whose cache
    directory is under tmp_path, and a list the test adds its mount points to: each is
    unmounted at the end whatever happened."""
    name = f"objmount-test-{uuid.uuid4().hex[:8]}"
    link = Path("/usr/local/bin") / name
    link.symlink_to(os.path.abspath(OBJMOUNT_BIN))
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"))
    mounted: list[Path] = []
    try:
        yield name, env, mounted
    finally:
        for mp in mounted:
            if is_mounted(mp):
                r = subprocess.run([OBJMOUNT_BIN, "unmount", str(mp)], capture_output=True, timeout=60, env=env)
                if r.returncode != 0 or is_mounted(mp):
                    subprocess.run(["fusermount3", "-uz", str(mp)], capture_output=True, timeout=30)
        link.unlink()


def mount(args: list[str], env: dict[str, str]) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, f"mount {' '.join(args)}: {r.stderr}"


def test_an_fstab_line_mounts_with_its_options_and_ignores_fstabs_own(
        helper: tuple[str, dict[str, str], list[Path]], tmp_path: Path) -> None:
    name, env, mounted = helper
    mp = tmp_path / "mnt"
    mp.mkdir()
    mounted.append(mp)
    fstab = tmp_path / "fstab"
    fstab.write_text(f"memory://fstab {mp} fuse.{name} noauto,_netdev,nofail,x-systemd.automount,"
                     "x-systemd.requires=network-online.target,users,allow_other,ro,comment=test 0 0\n")
    # `noauto`: `mount -a` leaves it alone.
    mount(["-a", "-T", str(fstab)], env)
    assert not is_mounted(mp)
    mount(["-T", str(fstab), str(mp)], env)
    (entry,) = mounts_at(mp)
    assert entry.fstype == "fuse.objmount" and entry.source == "objmount:memory://fstab"
    options = entry.options.split(",")
    # `users` means nosuid,nodev,noexec, which reach the kernel; `ro` is objmount's.
    assert {"ro", "nosuid", "nodev", "noexec"} <= set(options), options
    with pytest.raises(OSError) as e:
        (mp / "x").write_bytes(b"x")
    assert e.value.errno == errno.EROFS
    subprocess.run([OBJMOUNT_BIN, "unmount", str(mp)], check=True, capture_output=True, timeout=60, env=env)
    assert not is_mounted(mp)
    # Without `noauto`, `mount -a` mounts it.
    fstab.write_text(f"memory://fstab2 {mp} fuse.{name} _netdev,nofail,x-systemd.automount,noatime 0 0\n")
    mount(["-a", "-T", str(fstab)], env)
    (entry,) = mounts_at(mp)
    assert "noatime" in entry.options.split(",") and "rw" in entry.options.split(",")
    (mp / "f").write_bytes(b"written through an fstab mount")
    assert (mp / "f").read_bytes() == b"written through an fstab mount"


def test_mount_t_and_objmount_with_fstab_options_directly(
        helper: tuple[str, dict[str, str], list[Path]], tmp_path: Path) -> None:
    name, env, mounted = helper
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    mounted += [a, b]
    mount(["-t", f"fuse.{name}", "memory://typed", str(a), "-o", "rw,nodev,nosuid"], env)
    (a / "f").write_text("hello")
    assert (a / "f").read_text() == "hello"
    # What a systemd mount unit or a script may pass straight to objmount.
    r = subprocess.run([OBJMOUNT_BIN, "mount", "memory://direct", str(b), "-o",
                        "defaults,_netdev,nofail,noauto,x-systemd.idle-timeout=60,comment=x,noexec"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "noexec" in mounts_at(b)[0].options.split(",")
    # An option nobody knows is still refused, with what is known.
    r = subprocess.run([OBJMOUNT_BIN, "memory://bad", str(tmp_path), "-o", "frobnicate"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode != 0 and "unknown mount option 'frobnicate'" in r.stderr


def test_the_systemd_units_in_doc_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """doc/systemd's example units are valid (unit names matching their Where=, known
    settings)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (scripts/lib.sh installs systemd)"
    units = sorted((Path(__file__).resolve().parents[2] / "doc" / "systemd").glob("*.*mount"))
    assert {u.name for u in units} == {"mnt-photos.mount", "mnt-photos.automount"}
    r = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "mnt-photos" not in r.stderr, r.stderr
