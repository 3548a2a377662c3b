"""FUSE tier, S3 (s3://) and Kingsoft KS3 (ks3://): multipart uploads of large files, long
listings, directory renames, wrong secrets, interoperability with the vendors' own SDKs
(boto3 for s3://, ks3sdk 1.18.0 for ks3://), storage classes and ACLs as extended attributes,
presigned URLs (`objmount url`, also Swift TempURLs) and `objmount cleanup`.

Servers (scripts/test.sh starts them and sets the variables):
  s3://   the s3api of scripts/swift-server.sh: OBJMOUNT_TEST_S3_BUCKET, AWS_ACCESS_KEY_ID,
          AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL (AWS_REGION)
  ks3://  Tests/emulators/ks3_emulator.py in front of that s3api: OBJMOUNT_TEST_KS3_BUCKET,
          OBJMOUNT_TEST_KS3_ENDPOINT, KS3_ACCESS_KEY_ID, KS3_SECRET_ACCESS_KEY
  swift:// (`objmount url` only) OBJMOUNT_TEST_SWIFT_CONTAINER, ST_AUTH, ST_USER, ST_KEY
Tests of a backend whose variables are unset are skipped, saying which ones.

The SDKs run in the tests' virtualenv (OBJMOUNT_TEST_VENV_PYTHON, or Tests/fuse/testvenv.py
makes it), in a subprocess: see SDK_SCRIPT.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import (
    OBJMOUNT_BIN,
    Mounted,
    Mounter,
    Remote,
    RemoteSpec,
    fuse_unavailable_reason,
    hashes,
    is_mounted,
    run,
    sha256_file,
)

MiB = 1 << 20
SDK_PACKAGES = ["ks3sdk==1.18.0", "boto3"]
BAD_SECRET_PHRASE = "signature does not match \u2014 check the secret key"   # an em dash
S3_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
           "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE")
KS3_VARS = ("KS3_ACCESS_KEY_ID", "KS3_SECRET_ACCESS_KEY", "KS3_ENDPOINT")

_skip = fuse_unavailable_reason()
pytestmark = pytest.mark.skipif(_skip is not None, reason=f"S3/KS3 FUSE tests skipped: {_skip}")


# --------------------------------------------------------------------------------------------
# Backends: where each one is, what objmount and the SDK get
# --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Backend:
    scheme: str                    # "s3" or "ks3"
    bucket: str
    endpoint: str                  # http://127.0.0.1:PORT
    access_key: str
    secret_key: str
    region: str
    env: tuple[tuple[str, str], ...]   # for the objmount processes
    secret_var: str                # the variable holding the secret key

    @property
    def sdk(self) -> str:
        return "boto3" if self.scheme == "s3" else "ks3sdk"

    @property
    def meta_header(self) -> str:
        return "x-amz-meta-" if self.scheme == "s3" else "x-kss-meta-"

    def remote(self, prefix: str | None = None) -> Remote:
        """A remote with a fresh, unique prefix (`<scheme>://<bucket>/t<random>`)."""
        spec = RemoteSpec(base=f"{self.scheme}://{self.bucket}", env=self.env)
        return Remote(url=spec.unique_url() if prefix is None else f"{spec.base}/{prefix}", spec=spec)


def _missing(names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not os.environ.get(n)]


def s3_backend() -> Backend | str:
    """The s3:// backend, or why there is none."""
    need = ("OBJMOUNT_TEST_S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")
    if _missing(need):
        return (f"no S3 test server: {', '.join(_missing(need))} unset "
                "(scripts/test.sh sets them from scripts/swift-server.sh env)")
    e = os.environ
    env = tuple((k, e[k]) for k in S3_VARS if k in e) + tuple((k, "") for k in KS3_VARS)
    return Backend("s3", e["OBJMOUNT_TEST_S3_BUCKET"], e["AWS_ENDPOINT_URL"], e["AWS_ACCESS_KEY_ID"],
                   e["AWS_SECRET_ACCESS_KEY"], e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "us-east-1",
                   env, "AWS_SECRET_ACCESS_KEY")


def ks3_backend() -> Backend | str:
    """The ks3:// backend (the KS3 emulator), or why there is none."""
    need = ("OBJMOUNT_TEST_KS3_BUCKET", "OBJMOUNT_TEST_KS3_ENDPOINT", "KS3_ACCESS_KEY_ID", "KS3_SECRET_ACCESS_KEY")
    if _missing(need):
        return (f"no KS3 emulator: {', '.join(_missing(need))} unset "
                "(scripts/test.sh starts Tests/emulators/ks3_emulator.py and sets them)")
    e = os.environ
    env = (("KS3_ACCESS_KEY_ID", e["KS3_ACCESS_KEY_ID"]), ("KS3_SECRET_ACCESS_KEY", e["KS3_SECRET_ACCESS_KEY"]),
           ("KS3_ENDPOINT", e["OBJMOUNT_TEST_KS3_ENDPOINT"])) + tuple((k, "") for k in S3_VARS)
    return Backend("ks3", e["OBJMOUNT_TEST_KS3_BUCKET"], e["OBJMOUNT_TEST_KS3_ENDPOINT"], e["KS3_ACCESS_KEY_ID"],
                   e["KS3_SECRET_ACCESS_KEY"], "", env, "KS3_SECRET_ACCESS_KEY")


def _backend(scheme: str) -> Backend:
    b = s3_backend() if scheme == "s3" else ks3_backend()
    if isinstance(b, str):
        pytest.skip(b)
    return b


@pytest.fixture(params=["s3", "ks3"])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn (skipped when its variables are unset)."""
    return _backend(request.param)


@pytest.fixture
def s3() -> Backend:
    return _backend("s3")


@pytest.fixture
def ks3() -> Backend:
    return _backend("ks3")


def prefix_of(remote: Remote) -> str:
    """The key prefix of `<scheme>://<bucket>/<prefix>` (without a trailing slash)."""
    return remote.url.split("://", 1)[1].split("/", 1)[1]


# --------------------------------------------------------------------------------------------
# The vendors' SDKs, in the virtualenv
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sdk_python() -> Path:
    """The python of the tests' virtualenv, holding boto3 and ks3sdk 1.18.0."""
    given = os.environ.get("OBJMOUNT_TEST_VENV_PYTHON")
    if given and os.access(given, os.X_OK):
        return Path(given)
    from testvenv import python_with
    try:
        return python_with(SDK_PACKAGES)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        pytest.fail(f"could not prepare the virtualenv with {' '.join(SDK_PACKAGES)}: {e}", pytrace=False)


# One request on stdin: {"cfg": {...backend...}, "op": name, "args": {...}}; one JSON reply on
# stdout. boto3 for s3, ks3sdk for ks3, through their ordinary APIs.
SDK_SCRIPT = r'''
import base64, email.utils, hashlib, json, sys, threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

req = json.load(sys.stdin)
cfg, op, a = req["cfg"], req["op"], req["args"]
B = cfg["bucket"]

if cfg["kind"] == "s3":
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url=cfg["endpoint"], region_name=cfg["region"],
                      aws_access_key_id=cfg["access_key"], aws_secret_access_key=cfg["secret_key"],
                      config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))

    def content_md5(params, **kwargs):
        # Swift 2.30's s3api rejects DeleteObjects without Content-MD5 (boto3 >= 1.36 sends a CRC32).
        body = params["body"]
        body = body if isinstance(body, bytes) else body.encode()
        params["headers"]["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()

    s3.meta.events.register("before-call.s3.DeleteObjects", content_md5)

    def put(key, data, meta):
        s3.put_object(Bucket=B, Key=key, Body=data, Metadata=meta)

    def head(key):
        try:
            h = s3.head_object(Bucket=B, Key=key)
        except s3.exceptions.ClientError as e:
            if e.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return {"size": h["ContentLength"], "etag": h["ETag"].strip('"'),
                "meta": {k.lower(): v for k, v in h["Metadata"].items()},
                "last_modified": h["LastModified"].timestamp(),
                "storage_class": h.get("StorageClass") or "STANDARD"}

    def get(key):
        return s3.get_object(Bucket=B, Key=key)["Body"].read()

    def keys(prefix):
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=B, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return out

    def put_many(items):
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda kv: s3.put_object(Bucket=B, Key=kv[0], Body=kv[1]), items))

    def mpu_start(key, part_size):
        upload_id = s3.create_multipart_upload(Bucket=B, Key=key)["UploadId"]
        s3.upload_part(Bucket=B, Key=key, UploadId=upload_id, PartNumber=1, Body=b"p" * part_size)
        return upload_id

    def mpu_list(prefix):
        out = []
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=B, Prefix=prefix):
            out += [[u["Key"], u["UploadId"]] for u in page.get("Uploads", [])]
        return out

    def mpu_abort(key, upload_id):
        s3.abort_multipart_upload(Bucket=B, Key=key, UploadId=upload_id)

else:
    from ks3.connection import Connection, PathCallingFormat

    url = urlsplit(cfg["endpoint"])
    local = threading.local()

    def bucket():
        if not hasattr(local, "bucket"):
            conn = Connection(cfg["access_key"], cfg["secret_key"], host=url.hostname,
                              port=url.port or (443 if url.scheme == "https" else 80),
                              is_secure=url.scheme == "https", calling_format=PathCallingFormat())
            local.bucket = conn.get_bucket(B)
        return local.bucket

    def put(key, data, meta):
        bucket().new_key(key).set_contents_from_string(
            data, headers={"x-kss-meta-" + k: v for k, v in meta.items()})

    def head(key):
        k = bucket().get_key(key, validate=True)      # HEAD
        if k is None:
            return None
        meta = {}   # (HTTP header names are case-insensitive: all the HEAD's headers, lowercased)
        for name, value in list(k.user_meta.items()) + list(k.response_metadata.headers.items()):
            if name.lower().startswith("x-kss-meta-"):
                meta[name.lower()[len("x-kss-meta-"):]] = value
        return {"size": int(k.size), "etag": (k.etag or "").strip('"'), "meta": meta,
                "last_modified": email.utils.parsedate_to_datetime(k.last_modified).timestamp(),
                "storage_class": k.storage_class or "STANDARD"}

    def get(key):
        return bucket().get_key(key, validate=True).get_contents_as_string()

    def keys(prefix):
        return [k.name for k in bucket().list(prefix=prefix, delimiter="")]

    def put_many(items):
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda kv: bucket().new_key(kv[0]).set_contents_from_string(kv[1]), items))


if op == "put":          # {"objects": [[key, base64 data, {meta name: value}], ...]}
    for key, data, meta in a["objects"]:
        put(key, base64.b64decode(data), meta)
    out = None
elif op == "put_many":   # {"keys": [...], "body": str}: every key with that body, in parallel
    put_many([(k, a["body"].encode()) for k in a["keys"]])
    out = None
elif op == "head":       # {"keys": [...]} -> {key: {size, etag, meta, last_modified, storage_class} or null}
    out = {k: head(k) for k in a["keys"]}
elif op == "sha256":     # {"keys": [...]} -> {key: sha256 of the body}
    out = {k: hashlib.sha256(get(k)).hexdigest() for k in a["keys"]}
elif op == "keys":       # {"prefix": p} -> every key under p
    out = keys(a["prefix"])
elif op == "mpu_start":  # {"key": k, "part_size": n} -> upload id (one part uploaded)
    out = mpu_start(a["key"], a["part_size"])
elif op == "mpu_list":   # {"prefix": p} -> [[key, upload id], ...]
    out = mpu_list(a["prefix"])
elif op == "mpu_abort":  # {"key": k, "upload_id": u}
    mpu_abort(a["key"], a["upload_id"])
    out = None
else:
    raise SystemExit("unknown op " + op)
print(json.dumps(out))
'''


@dataclasses.dataclass
class Sdk:
    """boto3 (s3) or ks3sdk (ks3) on one backend, each call a subprocess in the virtualenv."""
    python: Path
    backend: Backend

    def call(self, op: str, timeout: float = 600, **args):
        b = self.backend
        cfg = {"kind": b.scheme, "bucket": b.bucket, "endpoint": b.endpoint, "access_key": b.access_key,
               "secret_key": b.secret_key, "region": b.region}
        r = subprocess.run([str(self.python), "-c", SDK_SCRIPT], input=json.dumps({"cfg": cfg, "op": op, "args": args}),
                           capture_output=True, text=True, timeout=timeout, cwd="/")
        assert r.returncode == 0, f"{b.sdk} {op} failed (exit {r.returncode}):\n{r.stderr[-4000:]}"
        return json.loads(r.stdout.strip().splitlines()[-1])

    def put(self, objects: dict[str, tuple[bytes, dict[str, str]]]) -> None:
        self.call("put", objects=[[k, base64.b64encode(d).decode(), m] for k, (d, m) in objects.items()])

    def head(self, *keys: str) -> dict[str, dict | None]:
        return self.call("head", keys=list(keys))

    def sha256(self, *keys: str) -> dict[str, str]:
        return self.call("sha256", keys=list(keys))

    def keys(self, prefix: str) -> list[str]:
        return self.call("keys", prefix=prefix)


@pytest.fixture
def sdk(sdk_python: Path, backend: Backend) -> Sdk:
    return Sdk(sdk_python, backend)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def unmount(m: Mounted) -> None:
    """`objmount unmount`: returns once everything is stored and the daemon has exited."""
    run([OBJMOUNT_BIN, "unmount", str(m.path)], env=m.remote.env)
    assert not is_mounted(m.path)


def getfattr(path: Path, name: str) -> str:
    return run(["getfattr", "--absolute-names", "--only-values", "-n", name, str(path)]).stdout.decode()


# --------------------------------------------------------------------------------------------
# Large files, long listings, renames
# --------------------------------------------------------------------------------------------

def test_a_64_mib_file_is_stored_as_a_multipart_object(mounter: Mounter, backend: Backend, sdk: Sdk,
                                                       tmp_path: Path) -> None:
    """With 8 MiB parts (--segment-size 8; the default is one PUT up to 64 MiB): 8 parts."""
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(64 * MiB))
    want = sha256_file(src)
    remote = backend.remote()
    m = mounter.mount(remote, extra=["--segment-size", "8"])
    run(["cp", str(src), str(m.path / "big.bin")], timeout=600)
    assert sha256_file(m.path / "big.bin") == want
    # Read back from the store, not from the kernel's or the daemon's caches.
    unmount(m)
    m = mounter.mount(remote, mountpoint=m.path)
    assert sha256_file(m.path / "big.bin") == want
    key = prefix_of(remote) + "/big.bin"
    head = sdk.head(key)[key]
    assert head is not None, f"{backend.sdk} does not find {key}"
    assert head["size"] == 64 * MiB
    parts = re.fullmatch(r"[0-9a-f]{32}-(\d+)", head["etag"])
    assert parts, f"not a multipart object: ETag {head['etag']!r} (a multipart upload's ends in -<parts>)"
    assert int(parts.group(1)) == 8, f"{parts.group(1)} parts of a 64 MiB file with --segment-size 8"
    assert sdk.sha256(key)[key] == want


def test_an_append_to_a_large_file_copies_its_stored_bytes_on_the_server(mounter: Mounter, backend: Backend,
                                                                          sdk: Sdk, tmp_path: Path) -> None:
    """`>>` to a 12 MiB file (parts of 5 MiB): the upload copies the 12 stored MiB with
    UploadPartCopy and sends the appended MiB; the object is the whole file for the SDK."""
    first, tail = os.urandom(12 * MiB), os.urandom(MiB + 7)
    remote = backend.remote()
    m = mounter.mount(remote, extra=["--segment-size", "5"])
    (m.path / "log.bin").write_bytes(first)
    unmount(m)
    m = mounter.mount(remote, extra=["--segment-size", "5"], mountpoint=m.path)
    with open(m.path / "log.bin", "ab") as f:
        f.write(tail)
    assert sha256_file(m.path / "log.bin") == sha256_bytes(first + tail)
    unmount(m)
    m = mounter.mount(remote, mountpoint=m.path)
    assert sha256_file(m.path / "log.bin") == sha256_bytes(first + tail)
    key = prefix_of(remote) + "/log.bin"
    assert sdk.sha256(key)[key] == sha256_bytes(first + tail)
    head = sdk.head(key)[key]
    parts = re.fullmatch(r"[0-9a-f]{32}-(\d+)", head["etag"])
    # One copied part (the 12 MiB) and one sent (the appended MiB).
    assert parts and int(parts.group(1)) == 2, head["etag"]


def test_a_directory_of_2500_objects_lists_completely(mounter: Mounter, backend: Backend, sdk: Sdk) -> None:
    """Three pages of 1,000 keys: every listing page is followed."""
    remote = backend.remote()
    prefix = prefix_of(remote)
    names = {f"f{i:05d}" for i in range(2500)}
    sdk.call("put_many", keys=sorted(f"{prefix}/big/{n}" for n in names), body="x")
    assert len(sdk.keys(prefix + "/big/")) == 2500, "the objects were not all created"
    m = mounter.mount(remote)
    ls = run(["ls", "-1", "-A", str(m.path / "big")], timeout=600).stdout.decode().splitlines()
    assert len(ls) == 2500 and set(ls) == names, \
        f"ls: {len(ls)} names, missing {sorted(names - set(ls))[:5]}, extra {sorted(set(ls) - names)[:5]}"
    found = run(["find", str(m.path / "big"), "-mindepth", "1", "-printf", r"%y %P\n"], timeout=600)
    entries = found.stdout.decode().splitlines()
    assert len(entries) == 2500 and set(entries) == {f"f {n}" for n in names}
    assert os.listdir(m.path) == ["big"]


def test_mv_of_a_directory_of_200_files(mounter: Mounter, backend: Backend, sdk: Sdk, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(200):
        (src / f"file-{i:03d}.bin").write_bytes(os.urandom(1000 + 37 * i))
    (src / "sub").mkdir()
    (src / "sub" / "nested.txt").write_bytes(b"one level down\n")
    want = hashes(src)
    assert len(want) == 201
    remote = backend.remote()
    prefix = prefix_of(remote)
    m = mounter.mount(remote)
    run(["cp", "-a", str(src), str(m.path / "old")], timeout=600)
    assert hashes(m.path / "old") == want
    run(["mv", str(m.path / "old"), str(m.path / "new")], timeout=600)
    m.settle()
    assert not (m.path / "old").exists()
    assert sorted(os.listdir(m.path)) == ["new"]
    assert hashes(m.path / "new") == want
    # On the server: everything under new/ with the same bytes, nothing left under old/.
    assert sdk.keys(prefix + "/old") == [], "objects left under the old name"
    stored = {k[len(prefix) + len("/new/"):]: k for k in sdk.keys(prefix + "/new/") if not k.endswith("/")}
    assert set(stored) == set(want)
    got = sdk.sha256(*stored.values())
    assert {rel: got[k] for rel, k in stored.items()} == want


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------

def test_a_wrong_secret_fails_fast_with_one_clear_line(mounter: Mounter, backend: Backend, tmp_path: Path) -> None:
    mp = mounter.new_mountpoint()
    secret = "not-the-secret-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "LC_ALL": "C.UTF-8", **dict(backend.env), backend.secret_var: secret}
    t0 = time.monotonic()
    r = subprocess.run([OBJMOUNT_BIN, "mount", backend.remote().url, str(mp), "--cache-dir", str(tmp_path / "c")],
                       capture_output=True, text=True, timeout=120, env=env)
    elapsed = time.monotonic() - t0
    err = r.stderr.strip()
    assert r.returncode != 0, f"mounted with a wrong secret: {err}"
    assert len(err.splitlines()) == 1, err
    assert BAD_SECRET_PHRASE in err, err
    assert secret not in err
    assert not is_mounted(mp)
    assert elapsed < 30, f"took {elapsed:.1f} s to give up"


# --------------------------------------------------------------------------------------------
# Interoperability with boto3 (s3://) and ks3sdk (ks3://)
# --------------------------------------------------------------------------------------------

def test_the_sdk_reads_files_written_through_the_mount(mounter: Mounter, backend: Backend, sdk: Sdk) -> None:
    """Same bytes, and the mtime set with `touch -d` in <x-amz|x-kss>-meta-mtime (seconds)."""
    remote = backend.remote()
    m = mounter.mount(remote)
    files = {"a.txt": b"alpha\n", "dir/b.bin": os.urandom(300_000), "dir/sub/c d.txt": "\u00fcn\u00efcode\n".encode(),
             "empty": b""}
    stamps = {"a.txt": "@1600000000", "dir/b.bin": "@1600000123.25", "dir/sub/c d.txt": "2021-05-06 07:08:09.5 UTC",
              "empty": "@1500000000.000000001"}
    for rel, content in files.items():
        p = m.path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        run(["touch", "-d", stamps[rel], str(p)])
    mtimes = {rel: os.stat(m.path / rel).st_mtime_ns for rel in files}
    m.settle()
    assert mtimes["a.txt"] == 1_600_000_000 * 10**9 and mtimes["dir/b.bin"] == 1_600_000_123_250_000_000
    keys = {rel: f"{prefix_of(remote)}/{rel}" for rel in files}
    heads = sdk.head(*keys.values())
    shas = sdk.sha256(*keys.values())
    for rel, content in files.items():
        k = keys[rel]
        assert heads[k] is not None, f"{backend.sdk} does not find {k}"
        assert shas[k] == sha256_bytes(content), rel
        assert heads[k]["size"] == len(content), rel
        mtime = heads[k]["meta"].get("mtime")
        assert mtime is not None, f"{rel}: no {backend.meta_header}mtime in {heads[k]['meta']}"
        assert re.fullmatch(r"\d+(\.\d{1,9})?", mtime), f"{rel}: {backend.meta_header}mtime={mtime!r}"
        whole, _, frac = mtime.partition(".")
        assert int(whole) * 10**9 + int((frac or "0").ljust(9, "0")) == mtimes[rel], (rel, mtime, mtimes[rel])


def test_objects_put_by_the_sdk_show_with_their_size_and_mtime(mounter: Mounter, backend: Backend, sdk: Sdk) -> None:
    """With <x-amz|x-kss>-meta-mtime the mtime is that; without, the object's LastModified."""
    remote = backend.remote()
    prefix = prefix_of(remote)
    objects = {
        "with-mtime.bin": (os.urandom(4096), {"mtime": "1500000000.5"}),
        "whole-seconds.txt": (b"seconds only\n", {"mtime": "1400000000"}),
        "no-mtime.bin": (os.urandom(5 * MiB + 3), {}),
        "empty": (b"", {}),
        "dir/nested.txt": (b"nested\n", {}),
    }
    t0 = time.time()
    sdk.put({f"{prefix}/{rel}": v for rel, v in objects.items()})
    t1 = time.time()
    heads = sdk.head(*(f"{prefix}/{rel}" for rel in objects))
    m = mounter.mount(remote)
    assert sorted(os.listdir(m.path)) == sorted(["with-mtime.bin", "whole-seconds.txt", "no-mtime.bin", "empty", "dir"])
    assert (m.path / "dir").is_dir()
    for rel, (data, meta) in objects.items():
        st = os.stat(m.path / rel)
        assert st.st_size == len(data), rel
        assert sha256_file(m.path / rel) == sha256_bytes(data), rel
        if "mtime" in meta:
            assert st.st_mtime == float(meta["mtime"]), (rel, st.st_mtime)
        else:
            # LastModified: HEAD's Last-Modified has whole seconds (Swift rounds up), a listing's
            # milliseconds; both are the time of the PUT.
            last_modified = heads[f"{prefix}/{rel}"]["last_modified"]
            assert abs(st.st_mtime - last_modified) <= 1.0, (rel, st.st_mtime, last_modified)
            assert t0 - 2 <= st.st_mtime <= t1 + 2, (rel, st.st_mtime, t0, t1)


# --------------------------------------------------------------------------------------------
# Storage classes and ACLs (read-only extended attributes)
# --------------------------------------------------------------------------------------------

def test_storage_class_and_acl_attributes(mounter: Mounter, backend: Backend, sdk: Sdk) -> None:
    """Default mount: STANDARD and private; both attributes are read-only (EPERM)."""
    remote = backend.remote()
    m = mounter.mount(remote)
    f = m.path / "f.txt"
    f.write_bytes(b"standard\n")
    m.settle()
    assert getfattr(f, "user.objmount.storage_class") == "STANDARD"
    assert getfattr(f, "user.objmount.acl") == "private"
    key = prefix_of(remote) + "/f.txt"
    assert sdk.head(key)[key]["storage_class"] == "STANDARD"
    for name, value in (("user.objmount.acl", "public-read"), ("user.objmount.storage_class", "STANDARD_IA")):
        r = run(["setfattr", "-n", name, "-v", value, str(f)], check=False)
        assert r.returncode != 0 and b"Operation not permitted" in r.stderr, (name, r.stderr)
        with pytest.raises(PermissionError) as e:
            os.setxattr(f, name, value.encode())
        assert e.value.errno == 1   # EPERM
    assert getfattr(f, "user.objmount.acl") == "private"


def test_storage_class_standard_ia_on_ks3(mounter: Mounter, ks3: Backend, sdk_python: Path) -> None:
    sdk = Sdk(sdk_python, ks3)
    remote = ks3.remote()
    m = mounter.mount(remote, extra=["--storage-class", "STANDARD_IA"])
    f = m.path / "ia.bin"
    data = os.urandom(100_000)
    f.write_bytes(data)
    m.settle()
    key = prefix_of(remote) + "/ia.bin"
    head = sdk.head(key)[key]
    assert head is not None and head["storage_class"] == "STANDARD_IA", head
    assert sdk.sha256(key)[key] == sha256_bytes(data)
    assert getfattr(f, "user.objmount.storage_class") == "STANDARD_IA"
    assert getfattr(f, "user.objmount.acl") == "private"
    r = run(["setfattr", "-n", "user.objmount.acl", "-v", "public-read", str(f)], check=False)
    assert r.returncode != 0 and b"Operation not permitted" in r.stderr, r.stderr
    assert getfattr(f, "user.objmount.acl") == "private"


# --------------------------------------------------------------------------------------------
# Presigned URLs: `objmount url`
# --------------------------------------------------------------------------------------------

SWIFT_VARS = ("ST_AUTH", "ST_USER", "ST_KEY")


def swift_backend() -> RemoteSpec | str:
    need = ("OBJMOUNT_TEST_SWIFT_CONTAINER",) + SWIFT_VARS
    if _missing(need):
        return f"no Swift test server: {', '.join(_missing(need))} unset (scripts/test.sh sets them)"
    return RemoteSpec(base="swift://" + os.environ["OBJMOUNT_TEST_SWIFT_CONTAINER"],
                      env=tuple((k, os.environ[k]) for k in SWIFT_VARS))


def fetch(url: str) -> tuple[int, bytes]:
    """GET with urllib: (status, body); HTTP errors give their status."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def objmount_url(target: str, env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run([OBJMOUNT_BIN, "url", target, *args], env=env, check=check, timeout=60)


def printed_url(p: subprocess.CompletedProcess) -> str:
    lines = p.stdout.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(("http://", "https://")), p.stdout
    return lines[0]


def swift_account_post(header: str, value: str) -> None:
    """POSTs one header to the Swift account (test:tester) with curl."""
    login = run(["curl", "-sf", "-D", "-", "-o", "/dev/null", "-H", f"X-Auth-User: {os.environ['ST_USER']}",
                 "-H", f"X-Auth-Key: {os.environ['ST_KEY']}", os.environ["ST_AUTH"]]).stdout.decode()
    hdrs = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in login.splitlines())}
    run(["curl", "-sf", "-o", "/dev/null", "-X", "POST", "-H", f"X-Auth-Token: {hdrs['x-auth-token']}",
         "-H", f"{header}: {value}", hdrs["x-storage-url"]])


def _check_presigned_urls(mounter: Mounter, remote: Remote) -> None:
    m = mounter.mount(remote)
    data, other = os.urandom(123_457), os.urandom(1000)
    (m.path / "dir").mkdir()
    f = m.path / "dir" / "shared file \u00e9.bin"    # the URL must encode the space and the é
    f.write_bytes(data)
    (m.path / "dir" / "plain.bin").write_bytes(other)
    env = dict(remote.env)
    # A path inside the mount, and a remote URL.
    # A path in the mount works at once (`objmount url` waits for the file's upload); a
    # remote URL names what is on the server.
    for target, content in ((str(f), data), (f"{remote.url}/dir/plain.bin", other)):
        if "://" in target:
            m.settle()
        url = printed_url(objmount_url(target, env))
        status, body = fetch(url)
        assert status == 200 and sha256_bytes(body) == sha256_bytes(content), (target, url, status)
    url = printed_url(objmount_url(str(f), env, "--expires", "15m"))
    assert fetch(url)[0] == 200
    url = printed_url(objmount_url(str(f), env, "--expires", "1s"))
    time.sleep(2)
    status, _ = fetch(url)
    assert status in (401, 403), f"an expired URL gave {status}: {url}"


@pytest.mark.parametrize("scheme", ["s3", "ks3"])
def test_objmount_url_presigns_a_get(mounter: Mounter, scheme: str) -> None:
    b = _backend(scheme)
    _check_presigned_urls(mounter, b.remote())


def test_objmount_url_swift_tempurl(mounter: Mounter) -> None:
    spec = swift_backend()
    if isinstance(spec, str):
        pytest.skip(spec)
    remote = Remote(url=spec.unique_url(), spec=spec)
    # Without the account's Temp-URL-Key there is nothing to sign with: a clear error.
    swift_account_post("X-Remove-Account-Meta-Temp-URL-Key", "x")
    m = mounter.mount(remote)
    (m.path / "f").write_bytes(b"x")
    r = objmount_url(str(m.path / "f"), dict(remote.env), check=False)
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and b"temp-url-key" in r.stderr.lower(), \
        r.stderr
    swift_account_post("X-Account-Meta-Temp-URL-Key", "objmount-tempurl-" + uuid.uuid4().hex[:8])
    try:
        _check_presigned_urls(mounter, Remote(url=spec.unique_url(), spec=spec))
    finally:
        swift_account_post("X-Remove-Account-Meta-Temp-URL-Key", "x")


# --------------------------------------------------------------------------------------------
# `objmount cleanup`
# --------------------------------------------------------------------------------------------

def test_cleanup_aborts_incomplete_multipart_uploads(s3: Backend, sdk_python: Path) -> None:
    sdk = Sdk(sdk_python, s3)
    prefix = "t" + uuid.uuid4().hex[:12]
    other = "t" + uuid.uuid4().hex[:12]       # outside the remote's prefix: left alone
    upload = sdk.call("mpu_start", key=f"{prefix}/pending.bin", part_size=5 * MiB)
    elsewhere = sdk.call("mpu_start", key=f"{other}/pending.bin", part_size=5 * MiB)
    try:
        assert [f"{prefix}/pending.bin", upload] in sdk.call("mpu_list", prefix=prefix + "/")
        remote = f"s3://{s3.bucket}/{prefix}"
        env = dict(s3.env)
        # The default --older-than is 24h: a fresh upload stays.
        r = run([OBJMOUNT_BIN, "cleanup", remote], env=env)
        assert b"aborted" not in r.stdout, r.stdout
        assert [f"{prefix}/pending.bin", upload] in sdk.call("mpu_list", prefix=prefix + "/")
        r = run([OBJMOUNT_BIN, "cleanup", remote, "--older-than", "0s"], env=env)
        lines = r.stdout.decode().splitlines()
        aborted = [ln for ln in lines if ln.startswith("aborted ")]
        # The key as stored (<prefix>/pending.bin); relative to the remote's prefix is accepted too.
        assert len(aborted) == 1 and re.fullmatch(
            rf"aborted ({re.escape(prefix)}/)?pending\.bin {re.escape(upload)}", aborted[0]), lines
        assert sdk.call("mpu_list", prefix=prefix + "/") == []
        assert [f"{other}/pending.bin", elsewhere] in sdk.call("mpu_list", prefix=other + "/")
    finally:
        for key, uid in sdk.call("mpu_list", prefix=prefix + "/") + sdk.call("mpu_list", prefix=other + "/"):
            sdk.call("mpu_abort", key=key, upload_id=uid)


# --------------------------------------------------------------------------------------------
# User extended attributes are user metadata; symlinks as s3fs stores them
# --------------------------------------------------------------------------------------------

def test_user_xattrs_are_user_metadata_for_the_sdk(mounter: Mounter, backend: Backend, sdk: Sdk) -> None:
    remote = backend.remote()
    prefix = prefix_of(remote)
    sdk.put({f"{prefix}/from-sdk.txt": (b"sdk\n", {"project": "apollo"})})
    m = mounter.mount(remote)
    f = m.path / "f.txt"
    f.write_bytes(b"through the mount\n")
    os.setxattr(f, "user.color", b"blue")
    os.setxattr(f, "user.Camel_Case", "caf\u00e9".encode())
    m.settle()
    head = sdk.head(f"{prefix}/f.txt")[f"{prefix}/f.txt"]
    assert head["meta"].get("color") == "blue", head["meta"]
    assert head["meta"].get("mtime"), head["meta"]
    assert os.getxattr(m.path / "from-sdk.txt", "user.project") == b"apollo"
    os.rename(f, m.path / "g.txt")
    m.settle()
    head = sdk.head(f"{prefix}/g.txt")[f"{prefix}/g.txt"]
    assert head["meta"].get("color") == "blue", head["meta"]
    unmount(m)
    m = mounter.mount(remote, mountpoint=m.path)
    assert os.getxattr(m.path / "g.txt", "user.Camel_Case") == "caf\u00e9".encode()
    assert (m.path / "g.txt").read_bytes() == b"through the mount\n"


def _s3fs_mount(backend: Backend, prefix: str, mp: Path) -> None:
    # The keys go in s3fs's environment variables: its passwd file splits at ":", and the
    # Swift server's S3 access key is `account:user`.
    run(["s3fs", f"{backend.bucket}:/{prefix}", mp, "-o",
         f"url={backend.endpoint},use_path_request_style,endpoint={backend.region or 'us-east-1'},stat_cache_expire=1"],
        timeout=60, env={"AWSACCESSKEYID": backend.access_key, "AWSSECRETACCESSKEY": backend.secret_key})
    deadline = time.monotonic() + 30
    while not is_mounted(mp):
        assert time.monotonic() < deadline, "s3fs did not mount"
        time.sleep(0.1)


def test_symlinks_are_shared_with_s3fs(mounter: Mounter, s3: Backend, tmp_path: Path) -> None:
    """s3fs (Debian's) shows a symlink made through objmount as a symlink to the same target,
    and objmount shows one made by s3fs."""
    if subprocess.run(["which", "s3fs"], capture_output=True).returncode != 0:
        pytest.fail("s3fs is not installed (scripts/test.sh installs Debian's s3fs)")
    remote = s3.remote()
    prefix = prefix_of(remote)
    m = mounter.mount(remote)
    (m.path / "target.txt").write_bytes(b"t\n")
    os.symlink("target.txt", m.path / "ours")
    os.symlink("/absolute/dangling", m.path / "ours-abs")
    m.settle()
    mp = tmp_path / "s3fs"
    mp.mkdir()
    _s3fs_mount(s3, prefix, mp)
    try:
        assert os.readlink(mp / "ours") == "target.txt"
        assert os.readlink(mp / "ours-abs") == "/absolute/dangling"
        assert (mp / "ours").read_bytes() == b"t\n"
        os.symlink("../elsewhere/file", mp / "theirs")
    finally:
        run(["fusermount3", "-u", mp], check=False, timeout=60)
        if is_mounted(mp):
            run(["fusermount3", "-uz", mp], check=False, timeout=60)
    unmount(m)
    m = mounter.mount(remote, mountpoint=m.path)
    assert os.readlink(m.path / "theirs") == "../elsewhere/file"
    st = os.lstat(m.path / "theirs")
    assert (st.st_mode & 0o170000) == 0o120000
    found = run(["find", m.path, "-type", "l"]).stdout.decode().split()
    assert sorted(Path(p).name for p in found) == ["ours", "ours-abs", "theirs"]
