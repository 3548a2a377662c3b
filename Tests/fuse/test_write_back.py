"""Write-back survives kill -9: a writer records every close that returned 0, the daemon is
killed at a random moment, the remote is mounted again (same --cache-dir), and every
acknowledged file is on the server with its bytes — read through a fresh mount with its own
cache, so the server is what answers. No object is ever a prefix of what was written.

OBJMOUNT_CRASH_TRIALS sets the number of trials (default 5; the issue's long run is 100)."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from conftest import OBJMOUNT_BIN, Mounter, Remote, is_mounted, wait_for
from test_hubic_emulator import lhubic_python  # noqa: F401  (the venv holds python-swiftclient)
from test_swift_driver import _skip, swift_remote

pytestmark = pytest.mark.skipif(_skip is not None, reason=f"write-back FUSE tests skipped: {_skip}")

TRIALS = int(os.environ.get("OBJMOUNT_CRASH_TRIALS", "5"))

WRITER = r"""
import hashlib, os, random, sys
root, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
# Every path is taken from a descriptor of the mount's root: once the killed daemon's mount is
# detached, a path through the mountpoint would name the bare directory under it, and files
# written there would make the next mount fail ("not empty") and be acknowledged wrongly.
rootfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
for i in range(100000):
    name = f"d{i % 4}/f{i:05d}.bin" if i % 3 else f"f{i:05d}.bin"
    if i % 7 == 6:
        name = "rewritten.bin"          # the same name again: dd-style rewrite in place
    data = rng.randbytes(rng.choice([0, 1, 4096, 70000, 300000]))
    print("BEGIN", name, hashlib.sha256(data).hexdigest(), flush=True)
    if "/" in name:
        try:
            os.mkdir(os.path.dirname(name), dir_fd=rootfd)
        except FileExistsError:
            pass
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=rootfd)
    for off in range(0, len(data), 65536):
        os.write(fd, data[off:off + 65536])
    os.close(fd)
    print("ACK", name, hashlib.sha256(data).hexdigest(), flush=True)
"""


def sha_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_every_acknowledged_close_survives_sigkill(mounter: Mounter, tmp_path) -> None:
    remote = swift_remote()
    cache = tmp_path / "cache"
    rng = random.Random(os.getpid())
    # name -> the versions the server may hold: the last acknowledged one, and any begun after
    # it (its close may have been under way when the daemon died). Never anything else.
    allowed: dict[str, set[str]] = {}
    acknowledged: set[str] = set()
    written: dict[str, set[str]] = {}          # every version begun, for objects never acknowledged
    for trial in range(TRIALS):
        m = mounter.mount(remote, cache=cache)
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(m.path), str(trial)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(rng.uniform(0.1, 1.0))
        os.kill(m.pid, signal.SIGKILL)
        out, _ = writer.communicate(timeout=60)
        assert wait_for(lambda: not is_mounted(m.path), 30), "dead mount left after SIGKILL"
        for line in out.splitlines():
            what, name, sha = line.split()
            written.setdefault(name, set()).add(sha)
            if what == "ACK":
                allowed[name] = {sha}
                acknowledged.add(name)
            else:
                allowed.setdefault(name, set()).add(sha)
        # The next mount of the remote stores what the killed one acknowledged.
        m = mounter.mount(remote, cache=cache, mountpoint=m.path)
        m.settle()
        mounter_unmount(m, remote)
    assert acknowledged, "the writer never got a close acknowledged"
    # Read back through a mount with an empty cache: the server's bytes.
    fresh = mounter.mount(remote)
    for name in acknowledged:
        assert (fresh.path / name).exists(), f"{name}: acknowledged, then lost"
    for path in fresh.path.rglob("*"):
        if path.is_file():
            rel = str(path.relative_to(fresh.path))
            assert rel in written, f"{rel} is stored but was never written"
            got = sha_of(path)
            assert got in written[rel], f"{rel}: torn object on the server"
            if rel in acknowledged:
                assert got in allowed[rel], f"{rel}: older than its last acknowledged close"
    # Nothing is left pending in the cache directory.
    assert not list(cache.glob("pending-*/staged-*")), list(cache.glob("pending-*/*"))


def mounter_unmount(m, remote: Remote) -> None:
    r = subprocess.run([OBJMOUNT_BIN, "unmount", str(m.path)], capture_output=True, text=True, timeout=300,
                       env=remote.env)
    assert r.returncode == 0, r.stderr


def test_unmount_waits_for_the_write_back_and_a_remount_shows_the_files(mounter: Mounter, tmp_path) -> None:
    remote = swift_remote()
    m = mounter.mount(remote)
    want = {}
    for i in range(200):
        data = os.urandom(1000 + i)
        (m.path / f"s{i:03d}").write_bytes(data)
        want[f"s{i:03d}"] = hashlib.sha256(data).hexdigest()
    mounter_unmount(m, remote)
    fresh = mounter.mount(remote)
    assert {p.name: sha_of(p) for p in fresh.path.iterdir()} == want


def test_a_full_cache_disk_fails_writes_with_enospc_and_loses_nothing_acknowledged(mounter: Mounter,
                                                                                   tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as the cache directory needs root")
    cache = tmp_path / "small-cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(cache)], check=True)
    try:
        remote = swift_remote()
        m = mounter.mount(remote, cache=cache, extra=["--cache-size", "0"])
        acknowledged, failures = {}, []
        for i in range(30):
            data = os.urandom(400_000)
            try:
                with open(m.path / f"f{i:02d}", "wb") as f:
                    f.write(data)
                acknowledged[f"f{i:02d}"] = hashlib.sha256(data).hexdigest()
            except OSError as e:
                failures.append(e.errno)
        # 12 MB into 3 MiB while uploads wait: the disk fills, and says so with ENOSPC only.
        assert failures and set(failures) == {errno.ENOSPC}, failures
        m.settle()
        # Space comes back as uploads finish: the mount keeps working.
        (m.path / "after").write_bytes(b"room again")
        mounter_unmount(m, remote)
    finally:
        subprocess.run(["umount", "-l", str(cache)], check=False)
    fresh = mounter.mount(remote)
    for name, sha in acknowledged.items():
        assert sha_of(fresh.path / name) == sha, name
    assert (fresh.path / "after").read_bytes() == b"room again"


def test_an_append_to_a_large_file_sends_only_the_appended_bytes(mounter: Mounter) -> None:
    """`>>` of 1 MiB to a 12 MiB Swift file (segments of 4 MiB) through a counting proxy: the
    12 stored MiB are copied into a segment by the server (a ranged X-Copy-From), nothing is
    downloaded, the MiB is sent once; a fresh mount reads the whole file."""
    from test_block_cache import CountingProxy, remotes
    first, tail = os.urandom(12 << 20), os.urandom((1 << 20) + 3)
    proxy = CountingProxy()
    try:
        direct, counted = remotes(proxy)
        m = mounter.mount(direct, extra=["--segment-size", "4"])
        (m.path / "log.bin").write_bytes(first)
        m.settle()
        c = mounter.mount(counted, extra=["--segment-size", "4"])
        assert (c.path / "log.bin").stat().st_size == len(first)
        up, down = proxy.up(), proxy.down()
        with open(c.path / "log.bin", "ab") as f:
            f.write(tail)
            os.fsync(f.fileno())
        sent, received = proxy.up() - up, proxy.down() - down
        assert sent < len(tail) + (256 << 10), f"{sent} bytes sent to append {len(tail)}"
        assert received < 256 << 10, f"{received} bytes received to append"
        fresh = mounter.mount(direct)
        assert hashlib.sha256((fresh.path / "log.bin").read_bytes()).hexdigest() == \
            hashlib.sha256(first + tail).hexdigest()
    finally:
        proxy.stop()


def test_random_appends_writes_and_truncates_of_a_large_file_match_a_model(mounter: Mounter) -> None:
    """A 3 MiB file with 1 MiB segments (so that extending it keeps its stored bytes on the
    server): appends, writes anywhere, truncates and reads in random order, each through its
    own open and close while earlier versions are still being stored; every read and a fresh
    mount at the end match a model of the bytes."""
    remote = swift_remote()
    m = mounter.mount(remote, extra=["--segment-size", "1"])
    rng = random.Random(1234)
    model = bytearray(rng.randbytes(3 << 20))
    path = m.path / "f.bin"
    path.write_bytes(model)
    m.settle()
    for step in range(40):
        op = rng.choice(["append", "append", "write", "truncate", "read", "settle"])
        if op == "append":
            data = rng.randbytes(rng.choice([1, 4096, 300_000, 1 << 20]))
            with open(path, "ab") as f:
                f.write(data)
            model += data
        elif op == "write":
            offset, data = rng.randrange(0, len(model) + 1), rng.randbytes(rng.randrange(1, 200_000))
            fd = os.open(path, os.O_WRONLY)
            os.pwrite(fd, data, offset)
            os.close(fd)
            model[offset:offset + len(data)] = data
        elif op == "truncate":
            size = rng.randrange(0, len(model) + (1 << 20))
            os.truncate(path, size)
            model = model[:size] + bytearray(max(0, size - len(model)))
        elif op == "read":
            offset = rng.randrange(0, len(model) + 1)
            with open(path, "rb") as f:
                f.seek(offset)
                assert f.read(100_000) == bytes(model[offset:offset + 100_000]), f"step {step}: read at {offset}"
        else:
            m.settle()
        assert path.stat().st_size == len(model), f"step {step} ({op})"
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(model).digest()
    m.settle()
    fresh = mounter.mount(remote)
    assert hashlib.sha256((fresh.path / "f.bin").read_bytes()).digest() == hashlib.sha256(model).digest()


def test_two_mounts_writing_one_file_keep_both_versions(mounter: Mounter) -> None:
    """The upload that finds the object changed since its mount read it keeps the other
    version under the name and stores its own as NAME.conflict-<UTC time>."""
    remote = swift_remote()
    a = mounter.mount(remote, extra=["--metadata-ttl", "0"])
    b = mounter.mount(remote, extra=["--metadata-ttl", "0"])
    (a.path / "shared.txt").write_bytes(b"v1\n")
    a.settle()
    assert (b.path / "shared.txt").read_bytes() == b"v1\n"
    # Both change v1 in place: B's first write (which reads v1 in) comes before A stores its change.
    fb = open(b.path / "shared.txt", "r+b", buffering=0)
    fb.write(b"B!\n")
    with open(a.path / "shared.txt", "r+b") as fa:
        fa.write(b"A!\n")
    a.settle()
    fb.close()
    b.settle()
    fresh = mounter.mount(remote)
    names = sorted(os.listdir(fresh.path))
    conflicts = [n for n in names if n.startswith("shared.txt.conflict-")]
    assert names == ["shared.txt"] + conflicts and len(conflicts) == 1, names
    assert (fresh.path / "shared.txt").read_bytes() == b"A!\n"
    assert (fresh.path / conflicts[0]).read_bytes() == b"B!\n"


INTERRUPTIBLE_FSYNC = r"""
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
t0 = time.monotonic()
try:
    os.fsync(fd)
    print("stored", time.monotonic() - t0, flush=True)
except KeyboardInterrupt:
    print("interrupted", time.monotonic() - t0, flush=True)
"""


def test_an_fsync_waiting_for_a_server_that_never_answers_yields_to_ctrl_c(mounter: Mounter) -> None:
    """The server accepts connections and never answers (the proxy stopped with SIGSTOP): a
    Ctrl-C reaches the program at once (FUSE_INTERRUPT cancels the wait, EINTR), and the data
    is stored once the server answers again."""
    from test_block_cache import CountingProxy, remotes
    proxy = CountingProxy()
    try:
        _, through_proxy = remotes(proxy)
        m = mounter.mount(through_proxy)
        (m.path / "f").write_bytes(b"wait for me")
        os.kill(proxy.proc.pid, signal.SIGSTOP)
        try:
            child = subprocess.Popen([sys.executable, "-c", INTERRUPTIBLE_FSYNC, str(m.path / "f")],
                                     stdout=subprocess.PIPE, text=True)
            time.sleep(1.5)
            assert child.poll() is None, "fsync returned while the server was not answering"
            child.send_signal(signal.SIGINT)
            out, _ = child.communicate(timeout=10)
            assert out.startswith("interrupted"), out
        finally:
            os.kill(proxy.proc.pid, signal.SIGCONT)
        m.settle()
        mounter_unmount(m, through_proxy)
        fresh = mounter.mount(through_proxy)
        assert (fresh.path / "f").read_bytes() == b"wait for me"
    finally:
        proxy.stop()


def test_a_large_upload_cut_by_sigkill_is_stored_again_and_leaves_no_segments(mounter: Mounter, tmp_path,
                                                                              lhubic_python) -> None:
    """48 MiB in 1 MiB SLO segments, the daemon killed while they are on their way: the next
    mount stores the file again and removes the segments of the cut upload."""
    import urllib.error
    import urllib.parse
    import urllib.request
    from test_swift_driver import CONTAINER, _swift_token, prefix_of, swiftclient
    remote = swift_remote()
    cache = tmp_path / "cache"
    m = mounter.mount(remote, cache=cache, extra=["--segment-size", "1"])
    data = os.urandom(48 << 20)
    (m.path / "big.bin").write_bytes(data)
    # Killed as soon as the first segments are stored (the upload starts 0.3 s after close).
    token, url = _swift_token()
    listing = f"{url}/{CONTAINER}_segments?prefix={urllib.parse.quote(prefix_of(remote))}/big.bin/"

    def some_segments() -> bool:
        req = urllib.request.Request(listing, headers={"X-Auth-Token": token})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return bool(r.read().strip())
        except urllib.error.HTTPError:
            return False
    assert wait_for(some_segments, 30, interval=0.01), "the upload never started"
    os.kill(m.pid, signal.SIGKILL)
    assert wait_for(lambda: not is_mounted(m.path), 30)
    m = mounter.mount(remote, cache=cache, mountpoint=m.path, extra=["--segment-size", "1"])
    m.settle()
    key = prefix_of(remote) + "/big.bin"
    seen = swiftclient(lhubic_python, f"""
import hashlib
h, body = conn.get_object({CONTAINER!r}, {key!r})
_, manifest = conn.get_object({CONTAINER!r}, {key!r}, query_string='multipart-manifest=get')
segs = conn.get_container({CONTAINER!r} + '_segments', prefix={key!r} + '/', full_listing=True)[1]
print(json.dumps({{"sha": hashlib.sha256(body).hexdigest(),
                   "used": sorted(s['name'].split('/', 2)[2] for s in json.loads(manifest)),
                   "stored": sorted(s['name'] for s in segs)}}))
""")
    assert seen["sha"] == hashlib.sha256(data).hexdigest()
    assert seen["stored"] == seen["used"], "segments of the cut upload were left behind"
    assert len(seen["used"]) == 48


def test_a_large_file_sends_its_segments_while_it_is_written_and_a_kill_leaves_none(
        mounter: Mounter, tmp_path, lhubic_python) -> None:
    """1 MiB SLO segments, a file written at about 10 MB/s (slower than a segment is sent):
    segments are on the server while the file is still open; its close sends the rest, each
    segment once. A second file is being written when the daemon is killed: the next mount
    removes the segments of its upload, and stores nothing under its name."""
    import urllib.error
    import urllib.parse
    import urllib.request
    from test_swift_driver import CONTAINER, _swift_token, prefix_of, swiftclient
    remote = swift_remote()
    cache = tmp_path / "cache"
    token, url = _swift_token()

    def segments(name: str) -> list[str]:
        listing = f"{url}/{CONTAINER}_segments?prefix={urllib.parse.quote(prefix_of(remote))}/{name}/"
        req = urllib.request.Request(listing, headers={"X-Auth-Token": token})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.read().decode().split()
        except urllib.error.HTTPError:
            return []
    m = mounter.mount(remote, cache=cache, extra=["--segment-size", "1"])
    data = os.urandom((12 << 20) + 77)
    def write_slowly(f, chunks: list[bytes]) -> None:
        for chunk in chunks:
            f.write(chunk)
            f.flush()
            time.sleep(0.1)
    with open(m.path / "big.bin", "wb") as f:
        write_slowly(f, [data[i:i + (1 << 20)] for i in range(0, 8 << 20, 1 << 20)])
        assert wait_for(lambda: len(segments("big.bin")) >= 4, 30, interval=0.01), \
            "no segment was sent while the file was being written"
        f.write(data[8 << 20:])
    m.settle()
    key = prefix_of(remote) + "/big.bin"
    seen = swiftclient(lhubic_python, f"""
import hashlib
h, body = conn.get_object({CONTAINER!r}, {key!r})
_, manifest = conn.get_object({CONTAINER!r}, {key!r}, query_string='multipart-manifest=get')
print(json.dumps({{"sha": hashlib.sha256(body).hexdigest(),
                   "used": sorted(s['name'].split('/', 2)[2] for s in json.loads(manifest))}}))
""")
    assert seen["sha"] == hashlib.sha256(data).hexdigest()
    assert sorted(segments("big.bin")) == seen["used"]
    assert len(seen["used"]) == 13

    f = open(m.path / "cut.bin", "wb")
    try:
        write_slowly(f, [os.urandom(1 << 20) for _ in range(6)])
        assert wait_for(lambda: len(segments("cut.bin")) >= 2, 30, interval=0.01)
        os.kill(m.pid, signal.SIGKILL)
        assert wait_for(lambda: not is_mounted(m.path), 30)
    finally:
        try:
            f.close()
        except OSError:
            pass
    m = mounter.mount(remote, cache=cache, mountpoint=m.path, extra=["--segment-size", "1"])
    assert wait_for(lambda: segments("cut.bin") == [], 30), "segments of the cut upload were left behind"
    assert not (m.path / "cut.bin").exists()
    assert hashlib.sha256((m.path / "big.bin").read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()


def test_cleanup_removes_swift_segment_sets_no_object_uses(mounter: Mounter, lhubic_python) -> None:
    import urllib.request
    from conftest import OBJMOUNT_BIN
    from test_swift_driver import CONTAINER, _swift_token, prefix_of
    remote = swift_remote()
    m = mounter.mount(remote, extra=["--segment-size", "1"])
    data = os.urandom((3 << 20) + 5)
    (m.path / "kept.bin").write_bytes(data)      # an SLO: its 4 segments are in use
    m.settle()
    token, url = _swift_token()
    prefix = prefix_of(remote)
    orphan = f"{url}/{CONTAINER}_segments/{prefix}/gone.bin/slo/123.456-789/00000001"
    urllib.request.urlopen(urllib.request.Request(orphan, data=b"left by a crash", method="PUT",
                                                  headers={"X-Auth-Token": token}), timeout=30).close()
    env = remote.env
    listed = subprocess.run([OBJMOUNT_BIN, "cleanup", f"swift://{CONTAINER}/{prefix}", "--older-than", "0s",
                             "--dry-run"], capture_output=True, text=True, timeout=120, env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [f"would abort {prefix}/gone.bin 123.456-789"], listed.stdout
    done = subprocess.run([OBJMOUNT_BIN, "cleanup", f"swift://{CONTAINER}/{prefix}", "--older-than", "0s"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout.splitlines() == [f"aborted {prefix}/gone.bin 123.456-789"]
    again = subprocess.run([OBJMOUNT_BIN, "cleanup", f"swift://{CONTAINER}/{prefix}", "--older-than", "0s",
                            "--dry-run"], capture_output=True, text=True, timeout=120, env=env)
    assert again.stdout == ""
    assert (m.path / "kept.bin").read_bytes() == data
