"""FUSE tier, OpenStack Swift only: large objects (SLO, and DLO where the cluster has no SLO),
objects written through the mount read back by python-swiftclient with the same bytes and
mtime, and wrong credentials.

Needs scripts/swift-server.sh (scripts/test.sh starts it): ST_AUTH, ST_USER, ST_KEY,
OBJMOUNT_TEST_SWIFT_CONTAINER and OBJMOUNT_SWIFT_NOSLO_AUTH.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import OBJMOUNT_BIN, SWIFT_CONTAINER, SWIFT_ENV, Mounter, Remote, RemoteSpec, is_mounted, run, \
    swift_server_unavailable_reason
from test_hubic_emulator import lhubic_python  # noqa: F401  (the venv holds python-swiftclient)

CONTAINER = SWIFT_CONTAINER
_skip = swift_server_unavailable_reason()
pytestmark = pytest.mark.skipif(_skip is not None, reason=f"Swift FUSE tests skipped: {_skip}")


def swift_remote(env: dict[str, str] | None = None) -> Remote:
    spec = RemoteSpec(base=f"swift://{CONTAINER}", env=tuple((env or SWIFT_ENV).items()))
    return Remote(url=spec.unique_url(), spec=spec)


def swiftclient(python: Path, script: str, env: dict[str, str] | None = None) -> dict:
    """Runs `script` with python-swiftclient's Connection `conn` in scope; it prints JSON."""
    prelude = ("import json, os, swiftclient\n"
               "conn = swiftclient.Connection(authurl=os.environ['ST_AUTH'], user=os.environ['ST_USER'],"
               " key=os.environ['ST_KEY'])\n")
    r = subprocess.run([str(python), "-c", prelude + script], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or SWIFT_ENV)})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def prefix_of(remote: Remote) -> str:
    return remote.url.split("://", 1)[1].split("/", 1)[1]


def test_large_file_becomes_an_slo_and_its_segments_go_with_it(mounter: Mounter, lhubic_python: Path) -> None:
    remote = swift_remote()
    m = mounter.mount(remote, extra=["--segment-size", "4"])
    data = os.urandom(64 << 20)
    (m.path / "big.bin").write_bytes(data)
    assert hashlib.sha256((m.path / "big.bin").read_bytes()).digest() == hashlib.sha256(data).digest()
    m.settle()
    key = prefix_of(remote) + "/big.bin"
    info = swiftclient(lhubic_python, f"""
h = conn.head_object({CONTAINER!r}, {key!r})
segs = conn.get_container({CONTAINER!r} + '_segments', prefix={key!r} + '/', full_listing=True)[1]
body = conn.get_object({CONTAINER!r}, {key!r})[1]
import hashlib
print(json.dumps({{"slo": h.get('x-static-large-object'), "size": h['content-length'],
                   "segments": len(segs), "sha": hashlib.sha256(body).hexdigest()}}))
""")
    assert info["slo"] == "True"
    assert int(info["size"]) == len(data)
    assert info["segments"] == 16
    assert info["sha"] == hashlib.sha256(data).hexdigest()
    (m.path / "big.bin").unlink()
    left = swiftclient(lhubic_python, f"""
segs = conn.get_container({CONTAINER!r} + '_segments', prefix={key!r} + '/', full_listing=True)[1]
print(json.dumps(len(segs)))
""")
    assert left == 0, "segments of a deleted large object were left behind"


def test_dlo_where_the_cluster_has_no_slo(mounter: Mounter, lhubic_python: Path) -> None:
    noslo = os.environ.get("OBJMOUNT_SWIFT_NOSLO_AUTH")
    if not noslo:
        pytest.skip("no SLO-less proxy (OBJMOUNT_SWIFT_NOSLO_AUTH)")
    env = {**SWIFT_ENV, "ST_AUTH": noslo}
    remote = swift_remote(env)
    m = mounter.mount(remote, extra=["--segment-size", "1"])
    data = os.urandom((5 << 20) + 12345)
    (m.path / "dlo.bin").write_bytes(data)
    m.settle()
    key = prefix_of(remote) + "/dlo.bin"
    info = swiftclient(lhubic_python, f"""
h = conn.head_object({CONTAINER!r}, {key!r})
body = conn.get_object({CONTAINER!r}, {key!r})[1]
import hashlib
print(json.dumps({{"manifest": h.get('x-object-manifest'), "slo": h.get('x-static-large-object'),
                   "sha": hashlib.sha256(body).hexdigest()}}))
""", env)
    assert info["manifest"] and info["slo"] is None
    assert info["sha"] == hashlib.sha256(data).hexdigest()
    assert (m.path / "dlo.bin").read_bytes() == data


def test_python_swiftclient_sees_the_same_bytes_and_mtime(mounter: Mounter, lhubic_python: Path) -> None:
    remote = swift_remote()
    m = mounter.mount(remote)
    files = {"a.txt": b"alpha\n", "dir/b.bin": os.urandom(300_000), "dir/sub/c d.txt": "ünïcode\n".encode()}
    mtimes = {}
    for rel, content in files.items():
        p = m.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        t = 1_600_000_000 + len(rel) + 0.25
        os.utime(p, (t, t))
        mtimes[rel] = t
    m.settle()
    prefix = prefix_of(remote)
    seen = swiftclient(lhubic_python, f"""
import hashlib
out = {{}}
for rel in {list(files)!r}:
    h, body = conn.get_object({CONTAINER!r}, {prefix!r} + '/' + rel)
    out[rel] = [hashlib.sha256(body).hexdigest(), h.get('x-object-meta-mtime')]
print(json.dumps(out))
""")
    for rel, content in files.items():
        sha, mtime = seen[rel]
        assert sha == hashlib.sha256(content).hexdigest(), rel
        assert mtime is not None and abs(float(mtime) - mtimes[rel]) < 1e-6, (rel, mtime)
    # Directories are Swift-style markers that python-swiftclient lists as 0-byte objects.
    listing = swiftclient(lhubic_python, f"""
objs = conn.get_container({CONTAINER!r}, prefix={prefix!r} + '/', full_listing=True)[1]
print(json.dumps({{o['name']: o['content_type'] for o in objs}}))
""")
    assert listing[f"{prefix}/dir"] == "application/directory"


def test_after_a_remount_stat_shows_the_stored_mtime(mounter: Mounter) -> None:
    remote = swift_remote()
    m = mounter.mount(remote)
    (m.path / "f").write_bytes(b"x")
    os.utime(m.path / "f", (1_500_000_000, 1_500_000_000))
    subprocess.run([OBJMOUNT_BIN, "unmount", str(m.path)], check=True, timeout=120, env={**os.environ, **SWIFT_ENV})
    m2 = mounter.mount(remote, mountpoint=m.path)
    names = os.listdir(m2.path)  # readdirplus from a listing that carries no metadata
    assert names == ["f"]
    assert os.stat(m2.path / "f").st_mtime == 1_500_000_000


def test_wrong_credentials_give_one_clear_line(mounter: Mounter, tmp_path: Path) -> None:
    mp = mounter.new_mountpoint()
    secret = "not-the-key-" + uuid.uuid4().hex[:8]
    r = subprocess.run([OBJMOUNT_BIN, "mount", f"swift://{CONTAINER}", str(mp), "--cache-dir", str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=120, env={**os.environ, **SWIFT_ENV, "ST_KEY": secret})
    err = r.stderr.strip()
    assert r.returncode != 0
    assert len(err.splitlines()) == 1 and err.startswith("objmount: "), err
    assert "wrong user or key" in err and secret not in err
    assert not is_mounted(mp)


def test_missing_container_is_a_clear_error(mounter: Mounter, tmp_path: Path) -> None:
    mp = mounter.new_mountpoint()
    r = subprocess.run([OBJMOUNT_BIN, "mount", "swift://no-such-container-" + uuid.uuid4().hex[:6], str(mp),
                        "--cache-dir", str(tmp_path / "c")], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **SWIFT_ENV})
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "no such object: container" in r.stderr, r.stderr


def test_account_level_mount_shows_containers_as_directories(mounter: Mounter) -> None:
    spec = RemoteSpec(base="swift://", env=tuple(SWIFT_ENV.items()))
    m = mounter.mount(Remote(url="swift://", spec=spec))
    assert CONTAINER in os.listdir(m.path)
    name = "acct-" + uuid.uuid4().hex[:10]
    os.mkdir(m.path / name)                       # creates the container
    (m.path / name / "f.txt").write_bytes(b"in a new container\n")
    m.settle()
    with pytest.raises(OSError) as e:
        os.rmdir(m.path / name)
    assert e.value.errno == 39                     # ENOTEMPTY
    with pytest.raises(OSError) as e:
        (m.path / "file-at-the-root.txt").write_bytes(b"x")
    assert e.value.errno in (13, 1)                # EACCES at once: only containers live at the root
    assert "file-at-the-root.txt" not in os.listdir(m.path)
    # A second mount of that container sees the file.
    m2 = mounter.mount(Remote(url=f"swift://{name}", spec=RemoteSpec(base=f"swift://{name}", env=tuple(SWIFT_ENV.items()))))
    assert (m2.path / "f.txt").read_bytes() == b"in a new container\n"
    subprocess.run([OBJMOUNT_BIN, "unmount", str(m2.path)], check=True, timeout=120, env={**os.environ, **SWIFT_ENV})
    (m.path / name / "f.txt").unlink()
    os.rmdir(m.path / name)                        # deletes the (now empty) container
    assert name not in os.listdir(m.path)
    # Nothing was accepted that could not be stored: unmount has nothing to report.
    r = subprocess.run([OBJMOUNT_BIN, "unmount", str(m.path)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **SWIFT_ENV})
    assert r.returncode == 0 and not is_mounted(m.path), r.stderr


def _swift_token() -> tuple[str, str]:
    import urllib.request
    req = urllib.request.Request(SWIFT_ENV["ST_AUTH"], headers={"X-Auth-User": SWIFT_ENV["ST_USER"],
                                                                "X-Auth-Key": SWIFT_ENV["ST_KEY"]})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]


def test_a_directory_of_10050_objects_lists_completely(mounter: Mounter, tmp_path: Path) -> None:
    """More than one 10,000-entry page: hubicfuse and cloudfuse stopped at 10,000."""
    import io
    import tarfile
    import urllib.request
    remote = swift_remote()
    prefix = prefix_of(remote)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(10_050):
            info = tarfile.TarInfo(f"big/f{i:05d}")
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    token, url = _swift_token()
    req = urllib.request.Request(f"{url}/{CONTAINER}/{prefix}?extract-archive=tar", data=buf.getvalue(), method="PUT",
                                 headers={"X-Auth-Token": token, "Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=900) as r:
        reply = json.loads(r.read())
    assert reply["Number Files Created"] == 10_050, reply
    m = mounter.mount(remote)
    names = os.listdir(m.path / "big")
    assert len(names) == 10_050 and len(set(names)) == 10_050
    assert sorted(names)[-1] == "f10049"
    out = subprocess.run(["find", str(m.path / "big"), "-type", "f"], capture_output=True, text=True, timeout=600, check=True)
    assert len(out.stdout.splitlines()) == 10_050


def test_df_shows_the_account_quota(mounter: Mounter) -> None:
    import urllib.request
    token, url = _swift_token()
    quota = 7 << 40
    req = urllib.request.Request(url, method="POST", headers={"X-Auth-Token": token, "X-Account-Meta-Quota": str(quota)})
    urllib.request.urlopen(req, timeout=30).close()
    try:
        m = mounter.mount(swift_remote())
        st = os.statvfs(m.path)
        assert st.f_blocks * st.f_frsize == quota
        assert st.f_bfree <= st.f_blocks
    finally:
        req = urllib.request.Request(url, method="POST", headers={"X-Auth-Token": token, "X-Remove-Account-Meta-Quota": "x"})
        urllib.request.urlopen(req, timeout=30).close()


def test_python_swiftclient_sees_xattrs_symlinks_and_directory_modes(mounter: Mounter, lhubic_python: Path) -> None:
    """user.* attributes are X-Object-Meta-*; a symlink is a small object holding its target,
    of type inode/symlink, with X-Object-Meta-Mode S_IFLNK|0777; a directory's mode is kept on
    its marker. Metadata set by python-swiftclient shows as user.* attributes."""
    remote = swift_remote()
    prefix = prefix_of(remote)
    m = mounter.mount(remote)
    (m.path / "f").write_bytes(b"data")
    os.setxattr(m.path / "f", "user.color", b"blue")
    os.symlink("../up/target", m.path / "l")
    (m.path / "d").mkdir()
    os.chmod(m.path / "d", 0o705)
    m.settle()
    seen = swiftclient(lhubic_python, f"""
out = {{}}
for name in ('f', 'l', 'd'):
    h, body = conn.get_object({CONTAINER!r}, {prefix!r} + '/' + name)
    out[name] = [body.decode(), h.get('content-type'), {{k: v for k, v in h.items() if k.startswith('x-object-meta-')}}]
conn.post_object({CONTAINER!r}, {prefix!r} + '/f', headers={{'X-Object-Meta-Color': 'blue', 'X-Object-Meta-Project': 'apollo'}})
print(json.dumps(out))
""")
    assert seen["f"][2].get("x-object-meta-color") == "blue", seen["f"]
    assert seen["l"][0] == "../up/target" and seen["l"][1] == "inode/symlink", seen["l"]
    assert seen["l"][2].get("x-object-meta-mode") == str(0o120777), seen["l"]
    assert seen["d"][1] == "application/directory" and seen["d"][2].get("x-object-meta-mode") == str(0o40705), seen["d"]
    run([OBJMOUNT_BIN, "unmount", str(m.path)], env=remote.env)
    m = mounter.mount(remote, mountpoint=m.path)
    assert os.getxattr(m.path / "f", "user.project") == b"apollo"
    assert os.readlink(m.path / "l") == "../up/target"
    assert (os.stat(m.path / "d").st_mode & 0o7777) == 0o705
