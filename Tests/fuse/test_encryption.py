"""Client-side encryption in ks3sdk's format (issue 14): objects the real ks3sdk 1.18.0 writes
with `local_encrypt=True` (single PUT and multipart), through the KS3 emulator, read back
through an encrypted ks3:// mount — whole, and by random ranges — with a key `objmount keygen`
made (the SDK loads it too); and files written through the mount (new, renamed, chmod-ed,
appended to) read back by ks3sdk. The bytes on the server are not the plaintext; another key
gives EACCES; a key file others can read is refused. Needs the ks3:// remote of scripts/test.sh.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import OBJMOUNT_BIN, REMOTES, Mounter, Remote  # noqa: E402
from testvenv import python_with  # noqa: E402

KS3 = [r for r in REMOTES if r.scheme == "ks3"]
pytestmark = pytest.mark.skipif(
    not KS3 or not os.environ.get("OBJMOUNT_TEST_KS3_ENDPOINT"),
    reason="needs the ks3:// remote (scripts/test.sh starts the KS3 emulator)")

MIB = 1 << 20

# Runs in the tests' virtualenv: uploads each (name, path) of argv[1] with ks3sdk's local
# encryption, `put` as one PUT, `multipart` in parts of 5 MiB (the SDK wants non-last parts a
# multiple of 16); `raw` reads objects back without the key (what the server holds), `read`
# with it (size and sha256 of what the SDK decrypts).
WRITER = r'''
import hashlib, json, os, sys
from ks3.connection import Connection, PathCallingFormat

spec = json.loads(sys.argv[1])
host, port = spec["endpoint"].split("//", 1)[1].rstrip("/").split(":")
def connect(encrypted):
    kw = dict(local_encrypt=True, local_key_path=spec["key"]) if encrypted else {}
    return Connection(os.environ["KS3_ACCESS_KEY_ID"], os.environ["KS3_SECRET_ACCESS_KEY"], host=host,
                      port=int(port), is_secure=False, calling_format=PathCallingFormat(), **kw)
b = connect(True).get_bucket(spec["bucket"])
for name, path in spec["put"]:
    b.new_key(spec["prefix"] + name).set_contents_from_filename(path)
for name, parts in spec["multipart"]:
    mp = b.initiate_multipart_upload(spec["prefix"] + name)
    for i, part in enumerate(parts, start=1):
        with open(part, "rb") as fp:
            mp.upload_part_from_file(fp, part_num=i, is_last_part=(i == len(parts)))
    mp.complete_upload()
raw = connect(False).get_bucket(spec["bucket"])
out = {"raw": {}, "read": {}, "etag": {}}
for name in spec["raw"]:
    k = raw.get_key(spec["prefix"] + name)
    out["raw"][name] = k.get_contents_as_string().hex()
for name in spec["read"]:
    k = b.get_key(spec["prefix"] + name)
    data = k.get_contents_as_string()
    out["read"][name] = [len(data), hashlib.sha256(data).hexdigest()]
    out["etag"][name] = k.etag.strip('"')
print(json.dumps(out))
'''


def plaintext(name: str, size: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(f"{name}/{i}".encode()).digest()
        i += 1
    return bytes(out[:size])


def keygen(path: Path) -> None:
    subprocess.run([OBJMOUNT_BIN, "keygen", str(path)], check=True, capture_output=True, timeout=30)


@pytest.fixture(params=KS3, ids=[r.id for r in KS3])
def ks3_remote(request: pytest.FixtureRequest) -> Remote:
    return Remote(url=request.param.unique_url(), spec=request.param)


def sdk(remote: Remote, key: Path, tmp: Path, put: dict[str, int] | None = None,
        multipart: dict[str, list[int]] | None = None, read: list[str] | None = None) -> dict:
    """Uploads the plaintexts with ks3sdk; returns what the server holds for each ("raw") and
    what the SDK decrypts of the objects `read`."""
    put, multipart = put or {}, multipart or {}
    bucket, _, prefix = remote.url.split("://", 1)[1].partition("/")
    spec = {"endpoint": os.environ["OBJMOUNT_TEST_KS3_ENDPOINT"], "key": str(key), "bucket": bucket,
            "prefix": prefix + "/" if prefix else "", "put": [], "multipart": [], "raw": list(put),
            "read": read or []}
    for name, size in put.items():
        p = tmp / f"plain-{name}"
        p.write_bytes(plaintext(name, size))
        spec["put"].append([name, str(p)])
    for name, sizes in multipart.items():
        whole = plaintext(name, sum(sizes))
        parts, offset = [], 0
        for i, size in enumerate(sizes):
            p = tmp / f"part-{name}-{i}"
            p.write_bytes(whole[offset:offset + size])
            parts.append(str(p))
            offset += size
        spec["multipart"].append([name, parts])
    python = python_with(["ks3sdk==1.18.0"])
    env = dict(os.environ, **remote.env)
    r = subprocess.run([str(python), "-c", WRITER, json.dumps(spec)], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.splitlines()[-1])
    out["raw"] = {name: bytes.fromhex(h) for name, h in out["raw"].items()}
    return out


def test_files_ks3sdk_encrypted_read_back_whole_and_by_ranges(
        mounter: Mounter, ks3_remote: Remote, tmp_path: Path) -> None:
    key = tmp_path / "key"
    keygen(key)
    assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_size == 16
    put = {"one": 1, "fifteen": 15, "sixteen": 16, "seventeen": 17, "mib": MIB, "odd": 100_003}
    multipart = {"multi": [5 * MIB, 5 * MIB, 777]}
    stored = sdk(ks3_remote, key, tmp_path, put, multipart)["raw"]
    # What the server holds is the SDK's format, not the plaintext: IV + whole padded blocks.
    for name, size in put.items():
        assert len(stored[name]) == 16 + size + (16 - size % 16)
        if size >= 16:
            assert plaintext(name, size)[:16] not in stored[name]

    m = mounter.mount(ks3_remote, extra=["--encryption-key-file", str(key)])
    sizes = {**put, **{name: sum(s) for name, s in multipart.items()}}
    assert sorted(os.listdir(m.path)) == sorted(sizes)
    for name, size in sizes.items():
        assert (m / name).stat().st_size == size, name
        data = (m / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == hashlib.sha256(plaintext(name, size)).hexdigest(), name
    # Random ranges (fsx-style reads), against the plaintext, across blocks and parts.
    rng = random.Random(14)
    for name in ("odd", "multi"):
        want = plaintext(name, sizes[name])
        fd = os.open(m / name, os.O_RDONLY)
        try:
            for _ in range(200):
                start = rng.randrange(0, len(want))
                length = rng.choice([1, 15, 16, 17, 4096, 70_000, 300_000])
                assert os.pread(fd, length, start) == want[start:start + length], (name, start, length)
        finally:
            os.close(fd)


def test_files_written_through_the_mount_are_read_by_ks3sdk(
        mounter: Mounter, ks3_remote: Remote, tmp_path: Path) -> None:
    key = tmp_path / "key"
    keygen(key)
    m = mounter.mount(ks3_remote, extra=["--encryption-key-file", str(key)])
    # 4096: a whole pad block; 64 MiB: the largest single PUT; above it, multipart uploads in
    # parts of 16 MiB chained in CBC: 5 parts, the last short and padded; 80 MiB: 5 whole parts
    # and the pad block alone in a sixth.
    sizes = {"w0": 0, "w1": 1, "w15": 15, "w16": 16, "w17": 17, "w4096": 4096, "wmib": MIB, "w64mib": 64 * MIB,
             "wparts": 64 * MIB + 100, "wwhole": 80 * MIB}
    for name, size in sizes.items():
        (m / name).write_bytes(plaintext(name, size))
    # Renamed, chmod-ed and appended to: the object keeps (or gets again) the format.
    (m / "w17").rename(m / "renamed")
    os.chmod(m / "renamed", 0o600)
    with open(m / "wmib", "ab") as f:
        f.write(b"appended")
    m.settle()
    expected = {name: plaintext(name, size) for name, size in sizes.items() if name != "w17"}
    expected["renamed"] = plaintext("w17", 17)
    expected["wmib"] += b"appended"
    out = sdk(ks3_remote, key, tmp_path, read=sorted(expected))
    for name, data in expected.items():
        assert out["read"][name] == [len(data), hashlib.sha256(data).hexdigest()], name
    # Multipart uploads where other mounts would use them (the server's ETag counts the parts).
    assert "-" not in out["etag"]["w64mib"]
    assert out["etag"]["wparts"].endswith("-5") and out["etag"]["wwhole"].endswith("-6"), out["etag"]
    # And through a new mount, without the cache of the first.
    m2 = mounter.mount(ks3_remote, extra=["--encryption-key-file", str(key)])
    for name, data in expected.items():
        assert hashlib.sha256((m2 / name).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest(), name
    assert (m2 / "renamed").stat().st_mode & 0o777 == 0o600


def test_another_key_is_refused_with_eacces_and_a_readable_key_file_is_refused(
        mounter: Mounter, ks3_remote: Remote, tmp_path: Path) -> None:
    key, other = tmp_path / "key", tmp_path / "other"
    keygen(key)
    keygen(other)
    sdk(ks3_remote, key, tmp_path, {"secret": 1000})
    m = mounter.mount(ks3_remote, extra=["--encryption-key-file", str(other)])
    with pytest.raises(OSError) as e:
        (m / "secret").read_bytes()
    assert e.value.errno == errno.EACCES
    # A key others may read: the mount is refused, saying how to fix it.
    os.chmod(other, 0o644)
    r = subprocess.run([OBJMOUNT_BIN, "mount", ks3_remote.url, str(mounter.new_mountpoint()),
                        "--encryption-key-file", str(other)], capture_output=True, text=True,
                       env=dict(os.environ, **ks3_remote.env), timeout=60)
    assert r.returncode != 0 and f"chmod 600 {other}" in r.stderr, r.stderr
    # keygen never overwrites a key.
    r = subprocess.run([OBJMOUNT_BIN, "keygen", str(key)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "File exists" in r.stderr


@pytest.fixture(params=[r for r in REMOTES if r.scheme != "memory"],
                ids=[r.id for r in REMOTES if r.scheme != "memory"])
def stored_remote(request: pytest.FixtureRequest) -> Remote:
    return Remote(url=request.param.unique_url(), spec=request.param)


def test_every_driver_stores_the_format_in_single_puts_and_chained_parts(
        mounter: Mounter, stored_remote: Remote, tmp_path: Path) -> None:
    """On every stored remote (Swift segments, S3 and KS3 parts, Hubic): with 1 MiB parts
    (S3's smallest is 5 MiB; 5 MiB on ks3://), files that end inside a part, on a part's end (the pad goes in a
    part of its own), or in a first part smaller than the server's smallest are read back
    through a new mount; without the key the objects are the ciphertext (IV and pad included)."""
    key = tmp_path / "key"
    keygen(key)
    # The KS3 emulator relays parts to Swift's s3api, which wants 5 MiB (KS3 itself 100 KiB).
    segment = "5" if stored_remote.spec.scheme == "ks3" else "1"
    args = ["--encryption-key-file", str(key), "--segment-size", segment]
    m = mounter.mount(stored_remote, extra=args)
    sizes = {"small": 1000, "inside": 5 * MIB // 2 + 3, "three": 3 * MIB, "six": 6 * MIB, "ten": 10 * MIB}
    for name, size in sizes.items():
        (m / name).write_bytes(plaintext(name, size))
    m.settle()
    m2 = mounter.mount(stored_remote, extra=args)
    for name, size in sizes.items():
        data = (m2 / name).read_bytes()
        assert len(data) == size and data == plaintext(name, size), name
    raw = mounter.mount(stored_remote)
    for name, size in sizes.items():
        stored = (raw / name).read_bytes()
        assert len(stored) == size + 16 + (16 - size % 16), name
        assert plaintext(name, size)[:4096] not in stored, name
