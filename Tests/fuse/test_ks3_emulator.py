"""Fidelity of the KS3 emulator (Tests/emulators/ks3_emulator.py): the REAL Kingsoft Cloud
Python SDK, ks3sdk 1.18.0 from PyPI, in the tests' virtualenv, runs its documented calls
against it, unchanged (path-style connection to the emulator's port).

Behind the emulator is a real S3 API: the s3api of the Swift test server
(`scripts/swift-server.sh start`), at ${AWS_ENDPOINT_URL:-http://127.0.0.1:8080} with
${AWS_ACCESS_KEY_ID:-test:tester} / ${AWS_SECRET_ACCESS_KEY:-testing}. Every test but the
oracle's test vectors is SKIPPED when that server does not answer. Each test uses a bucket of its
own (created through the emulator) and deletes what it created.

Also here: a few requests signed by hand from PROTOCOLS.md section 4.2 (not with the SDK), the
way objmount's own KS3 driver talks (ListObjectsV2 with encoding-type=url, DeleteObjects with
Content-MD5, x-kss-* headers), and the section 5.3 test vectors checked against the oracle the
emulator uses (ks3.auth.canonical_string + ks3.auth.encode).

The virtualenv (${OBJMOUNT_TEST_VENV:-/tmp/objmount-test-venv}) is prepared by testvenv.py.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import hashlib
import hmac
import json
import os
import re
import select
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from processes import stop_process

sys.path.insert(0, str(Path(__file__).resolve().parent))
from testvenv import python_with  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = ROOT / "Tests" / "emulators" / "ks3_emulator.py"
KS3SDK = "ks3sdk==1.18.0"

UPSTREAM = os.environ.get("AWS_ENDPOINT_URL") or "http://127.0.0.1:8080"
UPSTREAM_AK = os.environ.get("AWS_ACCESS_KEY_ID") or "test:tester"
UPSTREAM_SK = os.environ.get("AWS_SECRET_ACCESS_KEY") or "testing"
AK = "AKLTobjmounttest"
SK = "objmount-ks3-test-secret"
TIMEOUT = 300
MIB = 1 << 20


def _upstream_unreachable() -> str | None:
    try:
        urllib.request.urlopen(UPSTREAM.rstrip("/") + "/", timeout=5).close()
    except urllib.error.HTTPError:
        return None          # it answered (403 for an unsigned request): it is there
    except (urllib.error.URLError, OSError) as e:
        return f"the S3 API at {UPSTREAM} does not answer ({e}); start it with " \
               f"scripts/swift-server.sh start (and export its env)"
    return None


_SKIP = _upstream_unreachable()


# --------------------------------------------------------------------------------------------
# The virtualenv with the real ks3sdk, and the emulator process
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def ks3_python() -> Path:
    try:
        return python_with([KS3SDK, "boto3"])
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.fail(f"could not prepare the tests' virtualenv: {e}", pytrace=False)


@dataclasses.dataclass
class Emulator:
    base: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def emulator(ks3_python: Path, tmp_path: Path) -> Iterator[Emulator]:
    """The emulator in front of the S3 API; the test is SKIPPED when that does not answer."""
    if _SKIP is not None:
        pytest.skip(f"KS3 emulator tests skipped: {_SKIP}")
    log_path = tmp_path / "ks3-emulator.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(ks3_python), str(EMULATOR), "--port", "0", "--upstream", UPSTREAM,
             "--upstream-access-key", UPSTREAM_AK, "--upstream-secret-key", UPSTREAM_SK],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    line = proc.stdout.readline() if ready else ""
    m = re.fullmatch(r"listening on (http://127\.0\.0\.1:(\d+))\n", line)
    emu = Emulator(base=m.group(1) if m else "", port=int(m.group(2)) if m else 0, proc=proc,
                   log_path=log_path)
    if not m:
        emu.stop()
        pytest.fail(f"emulator did not start (stdout {line!r}):\n{emu.log()}", pytrace=False)
    try:
        yield emu
    finally:
        emu.stop()


# --------------------------------------------------------------------------------------------
# Running ks3sdk
# --------------------------------------------------------------------------------------------

# Runs inside the virtualenv: `python driver.py SCENARIO`, KS3_* in the environment; prints one
# JSON line. Uses ks3sdk as its README shows: Connection(ak, sk, host, port, is_secure=False,
# calling_format=PathCallingFormat()), buckets, keys, multipart uploads, generate_url.
DRIVER = r'''
import hashlib, io, json, os, sys, time, traceback
from ks3.connection import Connection, PathCallingFormat
from ks3.exception import S3ResponseError, KS3ClientError
from ks3.prefix import Prefix
import ks3.utils
from ks3.utils import RetryPolicy, StopAfterAttempt

PORT = int(os.environ["KS3_PORT"])
BUCKET = os.environ["KS3_BUCKET"]
NO_RETRY = RetryPolicy(stop_strategy=StopAfterAttempt(1))


def connect(ak=None, sk=None):
    return Connection(ak or os.environ["KS3_AK"], sk or os.environ["KS3_SK"], host="127.0.0.1",
                      port=PORT, is_secure=False, calling_format=PathCallingFormat(),
                      retry_policy=NO_RETRY)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def data_of(name, size):
    """Deterministic bytes (the test recomputes them)."""
    out = bytearray()
    seed = name.encode()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(seed + str(i).encode()).digest()
        i += 1
    return bytes(out[:size])


def error(fn):
    try:
        fn()
    except S3ResponseError as e:
        return {"status": e.status, "code": e.error_code, "body": e.body}
    except KS3ClientError as e:
        return {"status": None, "code": "KS3ClientError", "body": str(e)}
    return None


def listing(b, **kw):
    keys, prefixes = [], []
    for item in b.list(**kw):
        if isinstance(item, Prefix):
            prefixes.append(item.name)
        else:
            keys.append([item.name, item.size, item.storage_class])
    return {"keys": keys, "prefixes": prefixes}


def head(b, name):
    k = b.get_key(name, validate=True)     # HEAD
    return {"size": k.size, "storage_class": k.storage_class, "meta": k.user_meta,
            "crc": k.server_crc, "etag": k.etag}


def get(b, name):
    k = b.get_key(name)
    return k.get_contents_as_string()


def cleanup():
    conn = connect()
    b = conn.get_bucket(BUCKET)
    try:
        conn.head_bucket(BUCKET)
    except S3ResponseError:
        return {"cleaned": False}
    for up in b.list_multipart_uploads():
        b.cancel_multipart_upload(up.key_name, up.id)
    for k in list(b.list(delimiter="")):
        b.delete_key(k.name)
    conn.delete_bucket(BUCKET)
    return {"cleaned": True}


KEYS = {
    "plain.txt": 1000,
    "dir/a.bin": 70000,
    "dir/sub/b.bin": 3,
    "dir/with space+plus%percent&amp.txt": 4096,
    "dir/ünïcødé 文件 (1)~.txt": 12345,
    "dir/empty": 0,
    "other/c.bin": 10,
}


def basics():
    conn = connect()
    b = conn.create_bucket(BUCKET)
    out = {"created": b.name, "put": {}, "get": {}}
    for name, size in KEYS.items():
        k = b.new_key(name)
        r = k.set_contents_from_string(data_of(name, size))   # the SDK checks the CRC header
        out["put"][name] = {"status": r.status,
                            "crc": r.headers.get("x-kss-checksum-crc64ecma"),
                            "sdk_crc": ks3.utils.compute_data_crc64(data_of(name, size))}
    for name in KEYS:
        out["get"][name] = sha(get(b, name))
    out["all"] = listing(b, delimiter="")
    out["dir"] = listing(b, prefix="dir/", delimiter="/")
    out["root"] = listing(b, delimiter="/")
    out["paged"] = [k.name for k in b.list(prefix="dir/", delimiter="", max_keys=2)]
    out["buckets"] = [x.name for x in conn.get_all_buckets()]
    # copy (x-kss-copy-source with quote_plus of the key), into a key with + % and spaces
    src = "dir/with space+plus%percent&amp.txt"
    dst = "copies/copy of ünï+%.txt"
    b.copy_key(dst, BUCKET, src)
    out["copy_sha"] = sha(get(b, dst))
    out["copy_head"] = head(b, dst)
    b.delete_key("plain.txt")
    out["after_delete"] = [k.name for k in b.list(delimiter="")]
    out["missing"] = error(lambda: b.new_key("plain.txt").get_contents_as_string())
    return out


def multipart():
    conn = connect()
    b = conn.create_bucket(BUCKET)
    name = "big/multi part ü.bin"
    sizes = [5 * 1024 * 1024, 5 * 1024 * 1024, 1234567]
    whole = data_of(name, sum(sizes))
    mp = b.initiate_multipart_upload(name, headers={"x-kss-storage-class": "DEEP_IA",
                                                    "x-kss-meta-mtime": "1700000000.5"})
    offset, part_crcs = 0, []
    for n, size in enumerate(sizes, 1):
        r = mp.upload_part_from_file(io.BytesIO(whole[offset:offset + size]), n)
        part_crcs.append(mp.part_crc_infos[n].part_crc)
        offset += size
    other = b.initiate_multipart_upload("big/aborted")
    other.upload_part_from_file(io.BytesIO(b"x" * 100), 1)
    uploads = sorted([u.key_name, u.storage_class] for u in b.list_multipart_uploads())
    parts = [[p.part_number, p.size] for p in b.list_parts(BUCKET, name, mp.id)]
    resp = mp.complete_upload()             # the SDK compares the combined CRC with the server's
    b.cancel_multipart_upload("big/aborted", other.id)
    data = get(b, name)
    return {"whole_sha": sha(whole), "get_sha": sha(data), "size": len(data),
            "uploads": uploads, "parts": parts,
            "complete_crc": getattr(resp, "ChecksumCRC64ECMA", None),
            "whole_crc": ks3.utils.compute_data_crc64(whole),
            "part_crcs": part_crcs,
            "part_sdk_crcs": [ks3.utils.compute_data_crc64(whole[sum(sizes[:i]):sum(sizes[:i + 1])])
                              for i in range(len(sizes))],
            "head": head(b, name),
            "listed": listing(b, prefix="big/", delimiter=""),
            "uploads_after": [u.key_name for u in b.list_multipart_uploads()]}


def presign():
    conn = connect()
    b = conn.create_bucket(BUCKET)
    name = "shared/ünï côde + space%.txt"
    data = data_of(name, 3000)
    b.new_key(name).set_contents_from_string(data)
    now = int(time.time())
    return {"sha": sha(data),
            "url": conn.generate_url(300, "GET", BUCKET, name),
            "url_ctype": conn.generate_url(300, "GET", BUCKET, name,
                                           params={"response-content-type": "text/plain; charset=utf-8"}),
            "expired": conn.generate_url(now - 60, "GET", BUCKET, name,
                                         expires_in_absolute=True)}


def storage_class():
    conn = connect()
    b = conn.create_bucket(BUCKET)
    out = {}
    b.new_key("ia.bin").set_contents_from_string(b"infrequent",
                                                 headers={"x-kss-storage-class": "STANDARD_IA"})
    b.new_key("std.bin").set_contents_from_string(b"standard")
    out["head_ia"] = head(b, "ia.bin")
    out["head_std"] = head(b, "std.bin")
    out["listed"] = listing(b, delimiter="")
    out["invalid"] = error(lambda: b.new_key("bad.bin").set_contents_from_string(
        b"x", headers={"x-kss-storage-class": "GLACIER"}))
    b.copy_key("archived.bin", BUCKET, "ia.bin", headers={"x-kss-storage-class": "ARCHIVE"})
    out["head_copy"] = head(b, "archived.bin")
    # copy onto itself, changing only the class (KS3/S3 allow it)
    b.copy_key("std.bin", BUCKET, "std.bin", headers={"x-kss-storage-class": "COLD_ARCHIVE"})
    out["head_self_copy"] = head(b, "std.bin")
    out["self_copy_sha"] = sha(get(b, "std.bin"))
    b.delete_key("ia.bin")
    b.new_key("ia.bin").set_contents_from_string(b"again")
    out["head_recreated"] = head(b, "ia.bin")
    return out


def grants(policy):
    out = []
    for g in policy.acl.grants:
        out.append([g.type, g.uri if g.type == "Group" else g.id, g.permission])
    return sorted(out)


def acl():
    conn = connect()
    b = conn.create_bucket(BUCKET)
    out = {"owner": None}
    b.new_key("public.txt").set_contents_from_string(b"for everyone",
                                                     headers={"x-kss-acl": "public-read"})
    b.new_key("private.txt").set_contents_from_string(b"for me")
    p = b.get_acl("public.txt")
    out["owner"] = p.owner.id
    out["public"] = grants(p)
    out["private"] = grants(b.get_acl("private.txt"))
    out["bucket"] = grants(b.get_acl())
    b.set_acl("authenticated-read", "private.txt")
    out["authenticated"] = grants(b.get_acl("private.txt"))
    b.set_acl("public-read-write", "private.txt")
    out["public_rw"] = grants(b.get_acl("private.txt"))
    b.set_acl("private", "private.txt")
    out["private_again"] = grants(b.get_acl("private.txt"))
    out["missing_key"] = error(lambda: b.get_acl("no-such-key"))
    out["invalid"] = error(lambda: b.new_key("x.txt").set_contents_from_string(
        b"x", headers={"x-kss-acl": "everyone-can-write"}))
    return out


def metadata():
    conn = connect()
    b = conn.create_bucket(BUCKET)
    k = b.new_key("meta.txt")
    k.set_contents_from_string(b"with metadata", headers={"x-kss-meta-mtime": "1700000000.123456789",
                                                          "x-kss-meta-Mode": "0644",
                                                          "Content-Type": "text/plain"})
    out = {"head": head(b, "meta.txt")}
    g = b.get_key("meta.txt")
    g.get_contents_as_string()
    out["get_meta"] = g.user_meta
    out["content_type"] = b.get_key("meta.txt", validate=True).content_type
    b.copy_key("meta-copy.txt", BUCKET, "meta.txt")
    out["copy_meta"] = head(b, "meta-copy.txt")["meta"]
    b.copy_key("meta.txt", BUCKET, "meta.txt", headers={"x-kss-metadata-directive": "REPLACE",
                                                        "x-kss-meta-mtime": "1800000000"})
    out["replaced_meta"] = head(b, "meta.txt")["meta"]
    return out


def wrong_credentials():
    conn = connect()
    b = conn.create_bucket(BUCKET)
    b.new_key("secret.txt").set_contents_from_string(b"secret")
    bad_conn = connect(sk="not-the-secret")
    from ks3.bucket import Bucket
    bad_bucket = Bucket(bad_conn, BUCKET)
    unknown_bucket = Bucket(connect(ak="AKLTnobodyknowsthis"), BUCKET)
    old = email_date(time.time() - 3600)
    return {
        "wrong_secret_get": error(lambda: bad_bucket.new_key("secret.txt").get_contents_as_string()),
        "wrong_secret_put": error(lambda: bad_bucket.new_key("new.txt").set_contents_from_string(b"x")),
        "unknown_ak": error(lambda: unknown_bucket.new_key("secret.txt").get_contents_as_string()),
        "skewed": error(lambda: b.new_key("secret.txt").get_contents_as_string(headers={"Date": old})),
        "still_there": sha(get(b, "secret.txt")),
        "listed": [k.name for k in b.list(delimiter="")],
    }


def email_date(t):
    import email.utils
    return email.utils.formatdate(t, usegmt=True)


def vectors():
    """PROTOCOLS.md 5.3 with the oracle the emulator uses."""
    from ks3.auth import canonical_string, encode
    sk = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    d = "Tue, 01 Jul 2025 12:00:00 GMT"
    cases = [
        ("GET", "mybucket", "photos/cat.jpg", None, {"Date": d}, None),
        ("PUT", "mybucket", "dir one/résumé 文件~(1).txt", None,
         {"Date": d, "Content-Type": "text/plain", "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
          "x-kss-meta-Author": "alice", "X-KSS-ACL": "private",
          "x-kss-storage-class": "STANDARD_IA"}, None),
        ("PUT", "mybucket", "big/file.bin", "uploadId=0123abcd&partNumber=3", {"Date": d}, None),
        ("GET", "mybucket", "", {"prefix": "a/b", "delimiter": "/", "max-keys": "100", "acl": ""},
         {"Date": d}, None),
        ("PUT", "dstbucket", "a/b c.txt", None,
         {"Date": d, "x-kss-copy-source": "/srcbucket/a%2Fb+c.txt",
          "x-kss-metadata-directive": "REPLACE", "x-kss-meta-k": "v"}, None),
        ("GET", "mybucket", "photos/cat.jpg", None, {}, 1751371200),
        ("DELETE", "mybucket", "/abs/x", None, {"Date": d}, None),
        ("POST", "mybucket", "big/file.bin", "uploads",
         {"Date": d, "Content-Type": "application/octet-stream"}, None),
    ]
    out = []
    for method, bucket, key, query, headers, expires in cases:
        sts = canonical_string(method, bucket, key, query, headers, expires=expires)
        out.append([sts, encode(sk, sts)])
    return out


try:
    result = globals()[sys.argv[1]]()
except Exception:
    traceback.print_exc()
    sys.exit(1)
print(json.dumps(result))
'''


def data_of(name: str, size: int) -> bytes:
    """The driver's deterministic bytes."""
    out = bytearray()
    i = 0
    while len(out) < size:
        out += hashlib.sha256(name.encode() + str(i).encode()).digest()
        i += 1
    return bytes(out[:size])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bucket(ks3_python: Path, emulator: Emulator, tmp_path: Path) -> Iterator[str]:
    """A fresh bucket name; whatever the test made in it (objects, uploads, the bucket itself)
    is deleted through the emulator in teardown."""
    name = f"objmount-ks3-{uuid.uuid4().hex[:16]}"
    yield name
    _run(ks3_python, emulator, tmp_path, "cleanup", name, check=False)


def _run(python: Path, emu: Emulator, tmp_path: Path, scenario: str, bucket: str,
         check: bool = True) -> dict:
    driver = tmp_path / "ks3_driver.py"
    if not driver.exists():
        driver.write_text(DRIVER)
    env = {**os.environ, "KS3_PORT": str(emu.port), "KS3_BUCKET": bucket, "KS3_AK": AK,
           "KS3_SK": SK}
    r = subprocess.run([str(python), str(driver), scenario], env=env, capture_output=True,
                       text=True, timeout=TIMEOUT)
    if r.returncode != 0:
        if not check:
            return {}
        pytest.fail(f"ks3sdk scenario {scenario!r} failed ({r.returncode}):\n{r.stderr}\n"
                    f"--- emulator log ---\n{emu.log()}", pytrace=False)
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture
def ks3(ks3_python: Path, emulator: Emulator, bucket: str, tmp_path: Path) -> Callable[[str], dict]:
    return lambda scenario: _run(ks3_python, emulator, tmp_path, scenario, bucket)


def http(method: str, url: str, headers: dict[str, str] | None = None,
         body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def error_code(body: bytes) -> str | None:
    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode() if m else None


# --------------------------------------------------------------------------------------------
# ks3sdk against the emulator
# --------------------------------------------------------------------------------------------

def test_signature_vectors_of_the_oracle(ks3_python: Path, tmp_path: Path) -> None:
    """The functions the emulator checks signatures with reproduce PROTOCOLS.md 5.3."""
    driver = tmp_path / "ks3_driver.py"
    driver.write_text(DRIVER)
    r = subprocess.run([str(ks3_python), str(driver), "vectors"], capture_output=True, text=True,
                       timeout=TIMEOUT, env={**os.environ, "KS3_PORT": "1", "KS3_BUCKET": "x"})
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    d = "Tue, 01 Jul 2025 12:00:00 GMT"
    assert got == [
        [f"GET\n\n\n{d}\n/mybucket/photos/cat.jpg", "U8HsyPhRTWN8tdaNOt95VrNFEVU="],
        [f"PUT\n1B2M2Y8AsgTpgAmY7PhCfg==\ntext/plain\n{d}\nx-kss-acl:private\n"
         "x-kss-meta-author:alice\nx-kss-storage-class:STANDARD_IA\n"
         "/mybucket/dir%20one/r%C3%A9sum%C3%A9%20%E6%96%87%E4%BB%B6~%281%29.txt",
         "+p0cGHV50yYncnYBwT+dHIjulKE="],
        [f"PUT\n\n\n{d}\n/mybucket/big/file.bin?partNumber=3&uploadId=0123abcd",
         "CcQgUDCztVCouPDkfwf0aOVKN2M="],
        [f"GET\n\n\n{d}\n/mybucket/?acl", "/mvturcBymXYLJ/5nFp3LzA/TcU="],
        [f"PUT\n\n\n{d}\nx-kss-copy-source:/srcbucket/a%2Fb+c.txt\nx-kss-meta-k:v\n"
         "x-kss-metadata-directive:REPLACE\n/dstbucket/a/b%20c.txt",
         "7L4R2SYn/a+Bd/ciDAZ/wETUzUo="],
        ["GET\n\n\n1751371200\n/mybucket/photos/cat.jpg", "3ztxRf6xpL3xdNB4P9uLS8tC/og="],
        [f"DELETE\n\n\n{d}\n/mybucket/%2Fabs/x", "Go2cpWfl9KXC1J8r5ikzYXMAKMk="],
        [f"POST\n\napplication/octet-stream\n{d}\n/mybucket/big/file.bin?uploads",
         "TzNvYqZ41l0E9XEN7F2BAvktC+0="],
    ]


def test_bucket_put_get_list_copy_delete(ks3, bucket: str) -> None:
    out = ks3("basics")
    keys = {"plain.txt": 1000, "dir/a.bin": 70000, "dir/sub/b.bin": 3,
            "dir/with space+plus%percent&amp.txt": 4096, "dir/ünïcødé 文件 (1)~.txt": 12345,
            "dir/empty": 0, "other/c.bin": 10}

    assert out["created"] == bucket and bucket in out["buckets"]
    for name, size in keys.items():
        put = out["put"][name]
        assert put["status"] == 200
        assert put["crc"] == str(put["sdk_crc"])                 # decimal CRC64-ECMA
        assert out["get"][name] == sha(data_of(name, size)), name
    assert sorted(map(tuple, out["all"]["keys"])) == sorted(
        (name, size, "STANDARD") for name, size in keys.items())
    assert out["all"]["prefixes"] == []
    assert sorted(k for k, _, _ in out["dir"]["keys"]) == sorted(
        ["dir/a.bin", "dir/with space+plus%percent&amp.txt", "dir/ünïcødé 文件 (1)~.txt",
         "dir/empty"])
    assert out["dir"]["prefixes"] == ["dir/sub/"]
    assert [k for k, _, _ in out["root"]["keys"]] == ["plain.txt"]
    assert sorted(out["root"]["prefixes"]) == ["dir/", "other/"]
    assert sorted(out["paged"]) == sorted(k for k in keys if k.startswith("dir/"))

    src = "dir/with space+plus%percent&amp.txt"
    assert out["copy_sha"] == sha(data_of(src, 4096))
    assert out["copy_head"]["size"] == 4096
    assert sorted(out["after_delete"]) == sorted(
        [k for k in keys if k != "plain.txt"] + ["copies/copy of ünï+%.txt"])
    assert out["missing"]["status"] == 404 and out["missing"]["code"] == "NoSuchKey"


def test_multipart_upload_three_parts(ks3, emulator: Emulator) -> None:
    out = ks3("multipart")
    assert out["get_sha"] == out["whole_sha"]
    assert out["size"] == 10 * MIB + 1234567
    assert out["part_crcs"] == [str(c) for c in out["part_sdk_crcs"]]
    assert out["complete_crc"] == str(out["whole_crc"])      # the SDK verified it as well
    assert out["head"]["crc"] == str(out["whole_crc"])
    assert out["parts"] == [[1, 5 * MIB], [2, 5 * MIB], [3, 1234567]]
    assert out["uploads"] == [["big/aborted", "STANDARD"], ["big/multi part ü.bin", "DEEP_IA"]]
    assert out["uploads_after"] == []
    # the class and the metadata given at Initiate belong to the completed object
    assert out["head"]["storage_class"] == "DEEP_IA"
    assert out["head"]["meta"] == {"x-kss-meta-mtime": "1700000000.5"}
    assert out["listed"]["keys"] == [["big/multi part ü.bin", 10 * MIB + 1234567, "DEEP_IA"]]


def test_presigned_get(ks3, emulator: Emulator) -> None:
    out = ks3("presign")
    url = out["url"]
    assert url.startswith(emulator.base + "/")
    assert re.search(r"[?&]KSSAccessKeyId=AKLTobjmounttest(&|$)", url)
    status, headers, body = http("GET", url)
    assert status == 200 and sha(body) == out["sha"]

    status, headers, body = http("GET", out["url_ctype"])     # a signed sub-resource
    assert status == 200 and sha(body) == out["sha"]
    assert headers["content-type"] == "text/plain; charset=utf-8"

    status, _, body = http("GET", out["expired"])
    assert status == 403 and error_code(body) == "AccessDenied"
    assert b"<Message>Request has expired</Message>" in body

    tampered = re.sub(r"Signature=[^&]+", "Signature=AAAAAAAAAAAAAAAAAAAAAAAAAAA%3D", url)
    status, _, body = http("GET", tampered)
    assert status == 403 and error_code(body) == "SignatureDoesNotMatch"

    status, _, body = http("GET", url.split("?")[0])          # no auth at all
    assert status == 403 and error_code(body) == "AccessDenied"


def test_storage_class_round_trip(ks3) -> None:
    out = ks3("storage_class")
    assert out["head_ia"]["storage_class"] == "STANDARD_IA"
    assert out["head_std"]["storage_class"] == "STANDARD"
    assert sorted(map(tuple, out["listed"]["keys"])) == [("ia.bin", 10, "STANDARD_IA"),
                                                         ("std.bin", 8, "STANDARD")]
    assert out["invalid"]["status"] == 400 and out["invalid"]["code"] == "InvalidStorageClass"
    assert out["head_copy"]["storage_class"] == "ARCHIVE"
    assert out["head_self_copy"]["storage_class"] == "COLD_ARCHIVE"
    assert out["self_copy_sha"] == sha(b"standard")
    assert out["head_recreated"]["storage_class"] == "STANDARD"   # DELETE dropped the class


def test_acl_set_and_read(ks3, emulator: Emulator, bucket: str) -> None:
    out = ks3("acl")
    owner = ["CanonicalUser", out["owner"], "FULL_CONTROL"]
    all_users = "http://acs.ksyun.com/groups/global/AllUsers"
    assert out["owner"]
    assert out["public"] == sorted([owner, ["Group", all_users, "READ"]])
    assert out["private"] == [owner]
    assert out["bucket"] == [owner]
    assert out["authenticated"] == sorted(
        [owner, ["Group", "http://acs.ksyun.com/groups/global/AuthenticatedUsers", "READ"]])
    assert out["public_rw"] == sorted([owner, ["Group", all_users, "READ"],
                                       ["Group", all_users, "WRITE"]])
    assert out["private_again"] == [owner]
    assert out["missing_key"]["status"] == 404 and out["missing_key"]["code"] == "NoSuchKey"
    assert out["invalid"]["status"] == 400
    # public-read: anyone may read it; private: nobody without a signature
    status, _, body = http("GET", f"{emulator.base}/{bucket}/public.txt")
    assert (status, body) == (200, b"for everyone")
    status, _, body = http("GET", f"{emulator.base}/{bucket}/private.txt")
    assert status == 403 and error_code(body) == "AccessDenied"


def test_user_metadata_round_trip(ks3) -> None:
    out = ks3("metadata")
    expected = {"x-kss-meta-mtime": "1700000000.123456789", "x-kss-meta-mode": "0644"}
    assert {k.lower(): v for k, v in out["head"]["meta"].items()} == expected
    assert {k.lower(): v for k, v in out["get_meta"].items()} == expected
    assert out["content_type"] == "text/plain"
    assert {k.lower(): v for k, v in out["copy_meta"].items()} == expected
    assert out["replaced_meta"] == {"x-kss-meta-mtime": "1800000000"}


def test_wrong_credentials_and_clock_skew(ks3, emulator: Emulator, bucket: str) -> None:
    out = ks3("wrong_credentials")
    for case in ("wrong_secret_get", "wrong_secret_put"):
        err = out[case]
        assert err["status"] == 403 and err["code"] == "SignatureDoesNotMatch", err
    sts = re.search(r"<StringToSign>(.*)</StringToSign>", out["wrong_secret_get"]["body"], re.S)
    assert sts and sts.group(1).startswith("GET\n\n\n")
    assert sts.group(1).endswith(f"\n/{bucket}/secret.txt")
    assert out["unknown_ak"]["status"] == 403
    assert out["unknown_ak"]["code"] == "InvalidAccessKeyId"
    assert out["skewed"]["status"] == 403 and out["skewed"]["code"] == "RequestTimeTooSkewed"
    assert out["still_there"] == sha(b"secret")
    assert out["listed"] == ["secret.txt"]              # the refused PUT stored nothing
    assert SK not in emulator.log() and UPSTREAM_SK not in emulator.log()


# --------------------------------------------------------------------------------------------
# Requests signed by hand from PROTOCOLS.md 4.2, as objmount's driver sends them
# --------------------------------------------------------------------------------------------

def kss_request(emu: Emulator, method: str, bucket: str, key: str = "", query: str = "",
                headers: dict[str, str] | None = None, body: bytes | None = None,
                secret: str = SK) -> tuple[int, dict[str, str], bytes]:
    """KSS V2 header auth written from the spec (not with ks3sdk)."""
    headers = dict(headers or {})
    headers.setdefault("Date", email.utils.formatdate(usegmt=True))
    if body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/octet-stream"   # else urllib sends a form type
    lower = {k.lower(): v for k, v in headers.items()}
    kss = "".join(f"{k}:{lower[k]}\n" for k in sorted(lower) if k.startswith("x-kss-"))
    resource = "/" + (bucket + "/" if bucket else "") + urllib.parse.quote(key.encode(), safe="/")
    resource = resource.replace("//", "/%2F")
    signed = sorted((urllib.parse.unquote_plus(k), urllib.parse.unquote_plus(v))
                    for k, _, v in (p.partition("=") for p in query.split("&") if p)
                    if urllib.parse.unquote_plus(k) in {"acl", "uploads", "uploadId", "partNumber",
                                                        "delete", "versionId", "tagging"})
    if signed:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in signed)
    sts = "\n".join([method, lower.get("content-md5", ""), lower.get("content-type", ""),
                     lower["date"]]) + "\n" + kss + resource
    sig = base64.b64encode(hmac.new(secret.encode(), sts.encode(), hashlib.sha1).digest())
    headers["Authorization"] = f"KSS {AK}:{sig.decode()}"
    path = "/" + (bucket + "/" if bucket else "") + urllib.parse.quote(key.encode(), safe="/")
    path = path.replace("//", "/%2F")
    return http(method, emu.base + path + ("?" + query if query else ""), headers, body)


def test_hand_signed_driver_requests(emulator: Emulator, bucket: str) -> None:
    st, _, body = kss_request(emulator, "PUT", bucket)
    assert st == 200, body
    names = ["a b/1.txt", "a b/2+2.txt", "a b/ü/3.txt", "z.txt"]
    for i, name in enumerate(names):
        data = name.encode() * (i + 1)
        md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
        st, h, body = kss_request(emulator, "PUT", bucket, name, body=data, headers={
            "Content-MD5": md5, "Content-Type": "application/octet-stream",
            "x-kss-meta-mtime": f"170000000{i}.5",
            "x-kss-storage-class": "STANDARD_IA" if i == 0 else "STANDARD"})
        assert st == 200, body
        assert h["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
        assert re.fullmatch(r"\d+", h["x-kss-checksum-crc64ecma"])
        assert re.fullmatch(r"[0-9a-z]+", h["x-kss-request-id"].replace("-", ""))
        assert not any(k.startswith("x-amz-") for k in h)
    # a wrong Content-MD5 is refused by the store behind (and nothing is kept)
    st, _, body = kss_request(emulator, "PUT", bucket, "bad-md5", body=b"abc",
                              headers={"Content-MD5": base64.b64encode(b"0" * 16).decode()})
    assert st == 400 and error_code(body) == "BadDigest"

    st, h, body = kss_request(emulator, "HEAD", bucket, "a b/1.txt")
    assert st == 200 and h["x-kss-meta-mtime"] == "1700000000.5"
    assert h["x-kss-storage-class"] == "STANDARD_IA"
    assert h["content-length"] == str(len("a b/1.txt"))

    # ListObjectsV2, encoding-type=url, delimiter
    st, _, body = kss_request(emulator, "GET", bucket, query="list-type=2&prefix=a%20b%2F&"
                              "delimiter=%2F&encoding-type=url&max-keys=1000")
    assert st == 200, body
    text = body.decode()
    keys = [urllib.parse.unquote(k) for k in re.findall(r"<Key>([^<]*)</Key>", text)]
    assert keys == ["a b/1.txt", "a b/2+2.txt"]
    assert [urllib.parse.unquote(p) for p in re.findall(
        r"<CommonPrefixes><Prefix>([^<]*)</Prefix>", text)] == ["a b/ü/"]
    assert re.findall(r"<StorageClass>([^<]*)</StorageClass>", text) == ["STANDARD_IA",
                                                                        "STANDARD"]
    assert "<KeyCount>" in text

    # DeleteObjects with Content-MD5
    xml = ("<Delete><Quiet>true</Quiet>" + "".join(
        f"<Object><Key>{n}</Key></Object>" for n in names) + "</Delete>").encode()
    st, _, body = kss_request(emulator, "POST", bucket, query="delete", body=xml, headers={
        "Content-MD5": base64.b64encode(hashlib.md5(xml).digest()).decode(),
        "Content-Type": "application/xml"})
    assert st == 200, body
    st, _, body = kss_request(emulator, "GET", bucket, query="list-type=2")
    assert st == 200 and re.findall(rb"<Key>([^<]*)</Key>", body) == []
    # the side table forgot the class with the object
    st, _, _ = kss_request(emulator, "PUT", bucket, "a b/1.txt", body=b"x")
    st, h, _ = kss_request(emulator, "HEAD", bucket, "a b/1.txt")
    assert st == 200 and h["x-kss-storage-class"] == "STANDARD"

    # wrong secret, hand-signed: 403 SignatureDoesNotMatch with the StringToSign we sent
    st, _, body = kss_request(emulator, "GET", bucket, "a b/1.txt", secret="wrong")
    assert st == 403 and error_code(body) == "SignatureDoesNotMatch"
    assert f"/{bucket}/a%20b/1.txt</StringToSign>".encode() in body
    st, _, _ = kss_request(emulator, "DELETE", bucket, "a b/1.txt")
    assert st == 204
    st, _, body = kss_request(emulator, "DELETE", bucket)
    assert st == 204, body
