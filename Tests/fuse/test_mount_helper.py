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

from conftest import (
    OBJMOUNT_BIN,
    REMOTES,
    Mounter,
    Remote,
    RemoteSpec,
    daemon_status,
    fuse_unavailable_reason,
    is_mounted,
    mounts_at,
)

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


# The variables each stored remote of the suite is configured by, and the named remote's
# setting each becomes.
SETTINGS = {
    "s3": {"AWS_ENDPOINT_URL": "endpoint", "AWS_REGION": "region", "AWS_ACCESS_KEY_ID": "access_key_id",
           "AWS_SECRET_ACCESS_KEY": "secret_access_key"},
    "ks3": {"KS3_ENDPOINT": "endpoint", "KS3_ACCESS_KEY_ID": "access_key_id",
            "KS3_SECRET_ACCESS_KEY": "secret_access_key"},
    "swift": {"ST_AUTH": "auth_url", "ST_USER": "user", "ST_KEY": "key"},
    "hubic": {"HUBIC_API_URL": "api_url", "HUBIC_CLIENT_ID": "client_id", "HUBIC_CLIENT_SECRET": "client_secret",
              "HUBIC_USERNAME": "user", "HUBIC_PASSWORD": "password"},
}
SECRETS = {"AWS_SECRET_ACCESS_KEY", "KS3_SECRET_ACCESS_KEY", "ST_KEY", "HUBIC_CLIENT_SECRET", "HUBIC_PASSWORD"}
CREDENTIAL_PREFIXES = ("AWS_", "KS3_", "ST_", "OS_", "HUBIC_")
STORED = [r for r in REMOTES if r.scheme in SETTINGS and all(v for k, v in r.env if k in SETTINGS[r.scheme])]


@pytest.fixture(params=STORED, ids=[r.id for r in STORED])
def stored(request: pytest.FixtureRequest) -> Remote:
    return Remote(url=request.param.unique_url(), spec=request.param)


def test_a_named_remote_mounts_without_environment_variables(
        mounter: Mounter, stored: Remote, helper: tuple[str, dict[str, str], list[Path]], tmp_path: Path) -> None:
    """`objmount mount NAME:bucket/prefix` and an fstab line `NAME:bucket/prefix` take the
    endpoint and credentials from the config file alone (every credential variable blanked);
    `remote show` never prints a secret; a config file others can read is refused."""
    name, env, mounted = helper
    given = dict(stored.spec.env)
    settings = {SETTINGS[stored.scheme][k]: v for k, v in given.items() if k in SETTINGS[stored.scheme] and v}
    # The secret from a file for one setting (file:), in the file for the others.
    secret_file = tmp_path / "secret"
    first_secret = next(k for k in SETTINGS[stored.scheme] if k in SECRETS and given.get(k))
    secret_file.write_text(given[first_secret] + "\n")
    settings[SETTINGS[stored.scheme][first_secret]] = f"file:{secret_file}"
    config_dir = tmp_path / "xdg" / "objmount"
    config_dir.mkdir(parents=True)
    config = config_dir / "objmount.conf"
    lines = ["# named remotes for the test", "[tst]", f'type = "{stored.scheme}"']
    lines += [f'{k} = "{v}"' for k, v in settings.items()]
    # Mount options kept with the remote (a flag on the command line would win).
    lines += ["write_back = false", "segment_size = 8", "metadata_ttl = 3", 'memory_limit = "48M"']
    config.write_text("\n".join(lines) + "\n")
    config.chmod(0o600)
    blank = tuple((k, "") for k in os.environ if k.startswith(CREDENTIAL_PREFIXES))
    blank += tuple((k, "") for k in given if k not in dict(blank))
    bucket_and_prefix = stored.url.split("://", 1)[1]
    named = Remote(url=f"tst:{bucket_and_prefix}", spec=RemoteSpec(base=stored.spec.base, env=blank))
    m = mounter.mount(named, extra=["--config", str(config), "--log-level", "debug"])
    (m / "hello.txt").write_bytes(b"through a named remote")
    options = daemon_status(m.path)["options"]
    assert (options["write_back"], options["part_size"], options["metadata_ttl_s"], options["memory_limit"]) == \
        (False, 8 << 20, 3, 48 << 20), options
    m.settle()
    assert [p.name for p in m.path.iterdir()] == ["hello.txt"]
    # The debug log names no secret.
    assert not (m / "not-there").exists()
    log = (m.cache_dir / "objmount.log").read_text(errors="replace")
    assert "debug: " in log
    for k in SECRETS:
        if given.get(k):
            assert given[k] not in log, k
    # The same object through the usual URL and variables.
    plain = mounter.mount(stored)
    assert (plain / "hello.txt").read_bytes() == b"through a named remote"
    # An fstab line with the name (the config found in $XDG_CONFIG_HOME/objmount).
    mp = tmp_path / "fstab-mnt"
    mp.mkdir()
    mounted.append(mp)
    fstab = tmp_path / "fstab"
    fstab.write_text(f"tst:{bucket_and_prefix} {mp} fuse.{name} _netdev,nofail,allow_other 0 0\n")
    fenv = {k: v for k, v in env.items() if not k.startswith(CREDENTIAL_PREFIXES)}
    fenv["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    mount(["-T", str(fstab), str(mp)], fenv)
    assert (mp / "hello.txt").read_bytes() == b"through a named remote"
    # umount(8) as for any filesystem.
    (mp / "from-fstab.txt").write_bytes(b"written through the fstab mount")
    fd = os.open(mp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)  # stored (write-back), as `objmount sync` waits
    finally:
        os.close(fd)
    r = subprocess.run(["umount", str(mp)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not is_mounted(mp), r.stderr
    assert (plain / "from-fstab.txt").read_bytes() == b"written through the fstab mount"
    # `remote list` and `remote show`: names and settings, never a secret.
    out = subprocess.run([OBJMOUNT_BIN, "remote", "list", "--config", str(config)], capture_output=True,
                         text=True, timeout=30, env=fenv)
    assert out.returncode == 0 and out.stdout == f"tst\t{stored.scheme}\n", out.stderr
    out = subprocess.run([OBJMOUNT_BIN, "remote", "show", "tst"], capture_output=True, text=True, timeout=30,
                         env=fenv)
    assert out.returncode == 0 and f'type = {stored.scheme}' in out.stdout, out.stderr
    for k in SECRETS:
        if given.get(k):
            assert given[k] not in out.stdout, k
    # Readable by others: refused, saying how to fix it.
    config.chmod(0o644)
    other = tmp_path / "other"
    other.mkdir()
    r = subprocess.run([OBJMOUNT_BIN, "mount", f"tst:{bucket_and_prefix}", str(other)], capture_output=True,
                       text=True, timeout=60, env=fenv)
    assert r.returncode != 0 and f"chmod 600 {config}" in r.stderr, r.stderr
    assert not is_mounted(other)
