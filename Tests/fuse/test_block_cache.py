"""FUSE tier, OpenStack Swift: the block cache, counted at the server.

Every mount here reaches the Swift test server through bench/delayproxy.py (no delay), which
counts the bytes the server sends: a `cat` of a 20 MiB file fetches it once (≤ 1.01× its
size), a remount with the same --cache-dir reads it with no object bytes from the server, a
damaged block file is fetched again and never returned, the cache never grows above
--cache-size, an object changed by another client is read anew, and --cache-size 0 reads
through memory only.

Needs scripts/swift-server.sh (scripts/test.sh starts it): ST_AUTH, ST_USER, ST_KEY and
OBJMOUNT_TEST_SWIFT_CONTAINER.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from conftest import OBJMOUNT_BIN, SWIFT_CONTAINER, SWIFT_ENV, Mounted, Mounter, Remote, RemoteSpec, daemon_status, \
    is_mounted, run, sha256_file, swift_server_unavailable_reason, terminate, wait_for

CONTAINER = SWIFT_CONTAINER
_skip = swift_server_unavailable_reason()
pytestmark = pytest.mark.skipif(_skip is not None, reason=f"block cache FUSE tests skipped: {_skip}")

PROXY = Path(__file__).resolve().parents[2] / "bench" / "delayproxy.py"
MiB = 1 << 20
# What the server sends besides object bytes (auth, HEADs, listings, response headers) in one
# mount session of these tests.
METADATA_SLACK = 256 << 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CountingProxy:
    """bench/delayproxy.py in front of the Swift server: the bytes it sent so far."""

    def __init__(self) -> None:
        target = urlsplit(SWIFT_ENV["ST_AUTH"])
        self.port, self.control = free_port(), free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(PROXY), "--listen", str(self.port), "--to", f"{target.hostname}:{target.port}",
             "--control", str(self.control)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(self._ready, 10), "the counting proxy did not start"
        self.auth = SWIFT_ENV["ST_AUTH"].replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{self.port}")

    def _ready(self) -> bool:
        try:
            self.down()
            return True
        except OSError:
            return False

    def counters(self) -> dict:
        with socket.create_connection(("127.0.0.1", self.control), timeout=5) as c:
            return json.loads(c.makefile().readline())

    def down(self) -> int:
        return self.counters()["down"]

    def up(self) -> int:
        """The bytes sent to the server so far."""
        return self.counters()["up"]

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture
def proxy() -> Iterator[CountingProxy]:
    p = CountingProxy()
    try:
        yield p
    finally:
        p.stop()


def remotes(proxy: CountingProxy) -> tuple[Remote, Remote]:
    """One prefix, seen directly and through the counting proxy."""
    spec = RemoteSpec(base=f"swift://{CONTAINER}", env=tuple(SWIFT_ENV.items()))
    direct = Remote(url=spec.unique_url(), spec=spec)
    counted_env = {**SWIFT_ENV, "ST_AUTH": proxy.auth}
    counted = Remote(url=direct.url, spec=RemoteSpec(base=spec.base, env=tuple(counted_env.items())))
    return direct, counted


def unmount(m: Mounted) -> None:
    run([OBJMOUNT_BIN, "unmount", str(m.path)], env=m.remote.env)
    assert not is_mounted(m.path)


def write_files(mounter: Mounter, remote: Remote, sizes: dict[str, int]) -> dict[str, str]:
    """Files of random bytes written through a direct mount; their sha256."""
    m = mounter.mount(remote)
    sums = {}
    for name, size in sizes.items():
        (m / name).write_bytes(os.urandom(size))
        sums[name] = sha256_file(m / name)
    unmount(m)
    return sums


def drop_page_cache() -> None:
    subprocess.run(["sync"], check=False)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def blocks_dir(cache: Path) -> Path:
    found = [p for p in cache.iterdir() if p.is_dir() and p.name.startswith("blocks-")]
    assert len(found) == 1, f"expected one block cache directory in {cache}: {list(cache.iterdir())}"
    return found[0]


def block_files(cache: Path) -> list[Path]:
    return sorted(p for p in blocks_dir(cache).iterdir() if p.name != "lock")


def du_bytes(path: Path) -> int:
    return int(run(["du", "-s", "-B1", str(path)]).stdout.split()[0])


def test_cat_fetches_once_and_a_remount_reads_from_the_cache(mounter: Mounter, proxy: CountingProxy) -> None:
    direct, counted = remotes(proxy)
    size = 20 * MiB + 12345
    sums = write_files(mounter, direct, {"f": size})

    m = mounter.mount(counted)
    before = proxy.down()
    assert sha256_file(m / "f") == sums["f"]
    first = proxy.down() - before
    assert size <= first <= size * 1.01 + METADATA_SLACK, f"cat made the server send {first} bytes"
    # `objmount status` counts every byte read, the first block at least as a miss.
    cached = daemon_status(m.path)["cache"]
    assert cached["hit_bytes"] + cached["miss_bytes"] == size and cached["miss_bytes"] >= MiB, cached
    assert cached["used"] >= size and cached["limit"] > 0 and cached["directory"] == str(m.cache_dir), cached
    cache = m.cache_dir
    unmount(m)
    drop_page_cache()

    m = mounter.mount(counted, cache=cache)
    before = proxy.down()
    assert sha256_file(m / "f") == sums["f"]
    second = proxy.down() - before
    assert second < METADATA_SLACK, f"a read after a remount made the server send {second} bytes"
    cached = daemon_status(m.path)["cache"]
    assert (cached["hit_bytes"], cached["miss_bytes"], cached["hit_rate"]) == (size, 0, 1.0), cached
    unmount(m)

    # A flipped byte in one block file, another cut short: both fetched again, never returned.
    files = block_files(cache)
    assert len(files) == 21
    with open(files[3], "r+b") as f:
        f.seek(8192 + 777)
        b = f.read(1)
        f.seek(8192 + 777)
        f.write(bytes([b[0] ^ 0x20]))
    os.truncate(files[7], 5000)
    drop_page_cache()
    m = mounter.mount(counted, cache=cache)
    before = proxy.down()
    assert sha256_file(m / "f") == sums["f"]
    third = proxy.down() - before
    assert 2 * MiB <= third <= 2 * MiB + METADATA_SLACK, f"refetching two blocks sent {third} bytes"
    unmount(m)


def test_the_cache_stays_within_cache_size(mounter: Mounter, proxy: CountingProxy) -> None:
    direct, _ = remotes(proxy)
    sums = write_files(mounter, direct, {f"f{i}": 8 * MiB for i in range(3)})
    m = mounter.mount(direct, extra=["--cache-size", "8M"])
    for name, digest in sums.items():
        assert sha256_file(m / name) == digest
        used = du_bytes(blocks_dir(m.cache_dir))
        assert used <= 8 * MiB, f"the block cache holds {used} bytes, more than --cache-size 8M"
    # It holds what was read last.
    assert len(block_files(m.cache_dir)) >= 5
    unmount(m)


def test_an_object_changed_by_another_client_is_read_anew(mounter: Mounter, proxy: CountingProxy) -> None:
    direct, _ = remotes(proxy)
    size = 3 * MiB
    write_files(mounter, direct, {"f": size})
    reader = mounter.mount(direct, extra=["--metadata-ttl", "0"])
    old = sha256_file(reader / "f")
    # Same size, other bytes, written by another mount.
    new = write_files(mounter, direct, {"f": size})["f"]
    assert new != old
    drop_page_cache()
    assert sha256_file(reader / "f") == new
    unmount(reader)


def test_cache_size_0_reads_through_memory_only(mounter: Mounter, proxy: CountingProxy) -> None:
    direct, counted = remotes(proxy)
    size = 5 * MiB + 1
    sums = write_files(mounter, direct, {"f": size})
    m = mounter.mount(counted, extra=["--cache-size", "0"])
    before = proxy.down()
    assert sha256_file(m / "f") == sums["f"]
    assert proxy.down() - before <= size * 1.01 + METADATA_SLACK
    assert not any(p.name.startswith("blocks-") for p in m.cache_dir.iterdir())
    unmount(m)
