"""FUSE tier, Hubic: mount hubic://default with only the HUBIC_* variables set (pointed at the
OAuth2 emulator, which hands out real tokens of the local Swift server), copy a tree in and out,
see the objects with python-swiftclient, and survive an expired token mid-run."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import OBJMOUNT_BIN, Mounter, Remote, RemoteSpec, fuse_unavailable_reason, hashes, listing, make_tree
from test_hubic_emulator import (  # noqa: F401  (fixtures)
    HAVE_SWIFT,
    Emulator,
    lhubic_python,
    start_emulator,
    stub_swift,
    swift,
)

_skip = fuse_unavailable_reason() or (None if HAVE_SWIFT else "no Swift server (ST_AUTH, ST_USER, ST_KEY)")
pytestmark = pytest.mark.skipif(_skip is not None, reason=f"Hubic mount tests skipped: {_skip}")


def hubic_env(emu: Emulator, **extra: str) -> tuple[tuple[str, str], ...]:
    env = {"HUBIC_API_URL": emu.base, "HUBIC_CLIENT_ID": emu.client_id, "HUBIC_CLIENT_SECRET": emu.client_secret,
           "HUBIC_USERNAME": emu.user, "HUBIC_PASSWORD": emu.password, **extra}
    return tuple(env.items())



@pytest.fixture
def no_swift_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The objmount processes get only the HUBIC_* variables, no ST_*/OS_*."""
    for k in list(os.environ):
        if k.startswith(("ST_", "OS_")):
            monkeypatch.delenv(k)


def flush_swift_tokens() -> None:
    """Forgets every tempauth token (they live in memcached): the next Swift request gets 401."""
    port = int(os.environ.get("OBJMOUNT_SWIFT_MEMCACHED_PORT", "11211"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"flush_all\r\n")
        assert s.recv(100).startswith(b"OK")


def test_hubic_default_copy_in_and_out(mounter: Mounter, start_emulator, lhubic_python: Path, tmp_path: Path) -> None:
    st = {k: os.environ[k] for k in ("ST_AUTH", "ST_USER", "ST_KEY")}
    emu = start_emulator()
    spec = RemoteSpec(base="hubic://default", env=hubic_env(emu))
    remote = Remote(url=spec.unique_url(), spec=spec)
    prefix = remote.url.split("/", 3)[3]
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith(("ST_", "OS_"))}
    try:
        m = mounter.mount(remote)
        src = make_tree(tmp_path / "src")
        subprocess.run(["cp", "-a", f"{src}/.", str(m.path)], check=True, timeout=300)
        assert listing(m.path) == listing(src) and hashes(m.path) == hashes(src)
        # An access token and the Swift token expire mid-run: objmount renews both on its own.
        assert emu.expire_all() >= 1
        flush_swift_tokens()
        (m.path / "after-expiry.txt").write_bytes(b"written after the tokens expired\n")
        out = tmp_path / "out"
        subprocess.run(["cp", "-a", f"{m.path}/.", str(out)], check=True, timeout=300)
        (out / "after-expiry.txt").unlink()
        m.settle()
        assert listing(out) == listing(src) and hashes(out) == hashes(src)
        stats = emu.stats()
        assert stats["api_expired"] >= 1 and stats["token_refresh"] >= 1, stats
    finally:
        os.environ.update(saved)
    # `swift list default` (python-swiftclient, on the account the emulator hands out).
    r = subprocess.run([str(lhubic_python), "-c",
                        "import os, swiftclient; c = swiftclient.Connection(authurl=os.environ['ST_AUTH'],"
                        " user=os.environ['ST_USER'], key=os.environ['ST_KEY']);"
                        f" print('\\n'.join(o['name'] for o in c.get_container('default', prefix={prefix!r} + '/',"
                        " full_listing=True)[1]))"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, **st})
    assert r.returncode == 0, r.stderr
    names = set(r.stdout.splitlines())
    for entry in listing(src):
        rel = entry.split(" ", 1)[1]
        assert f"{prefix}/{rel}" in names, rel
    assert f"{prefix}/after-expiry.txt" in names


def test_hubic_wrong_password_is_one_clear_line(mounter: Mounter, start_emulator, tmp_path: Path,
                                                no_swift_env) -> None:
    emu = start_emulator()
    mp = mounter.new_mountpoint()
    env = {**os.environ, **dict(hubic_env(emu, HUBIC_PASSWORD="not-it-" + uuid.uuid4().hex[:6]))}
    r = subprocess.run([OBJMOUNT_BIN, "mount", "hubic://default", str(mp), "--cache-dir", str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=120, env=env)
    err = r.stderr.strip()
    assert r.returncode != 0
    assert len(err.splitlines()) == 1 and err.startswith("objmount: ") and "login" in err, err
    assert env["HUBIC_PASSWORD"] not in err and emu.client_secret not in err


def test_hubic_missing_variables(mounter: Mounter, tmp_path: Path, no_swift_env) -> None:
    mp = mounter.new_mountpoint()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUBIC_")}
    r = subprocess.run([OBJMOUNT_BIN, "mount", "hubic://default", str(mp)], capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode != 0 and "HUBIC_CLIENT_ID" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_login_stores_a_refresh_token_so_the_password_is_not_needed(
        mounter: Mounter, start_emulator, tmp_path: Path, no_swift_env) -> None:
    emu = start_emulator()
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, **dict(hubic_env(emu)), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    r = subprocess.run([OBJMOUNT_BIN, "login", "hubic"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    token_file = home / ".config" / "objmount" / "hubic-refresh-token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert emu.password not in token_file.read_text()
    # Now only the application's id and secret: the stored refresh token does the rest.
    spec = RemoteSpec(base="hubic://default", env=(
        ("HUBIC_API_URL", emu.base), ("HUBIC_CLIENT_ID", emu.client_id), ("HUBIC_CLIENT_SECRET", emu.client_secret),
        ("HOME", str(home)), ("XDG_CONFIG_HOME", str(home / ".config"))))
    m = mounter.mount(Remote(url=spec.unique_url(), spec=spec))
    (m.path / "f.txt").write_bytes(b"via the stored refresh token\n")
    assert (m.path / "f.txt").read_bytes() == b"via the stored refresh token\n"
