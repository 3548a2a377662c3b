"""Fault injection: objmount between programs and a network that breaks (Tests/fuse/faultproxy.py
in front of the Swift server: connections reset mid-request and mid-response, 503s, stalls, a
slow uplink, connections refused for seconds). A tree copied in and read back is whole — 0
corrupt reads, 0 acknowledged writes lost or torn — within a time bound, and what the network
cannot deliver reaches the program as an errno, never as wrong bytes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import Mounter, Remote, RemoteSpec, terminate, wait_for
from test_block_cache import free_port
from test_swift_driver import CONTAINER, SWIFT_ENV, _skip

pytestmark = pytest.mark.skipif(_skip is not None, reason=f"fault-injection tests skipped: {_skip}")

PROXY = Path(__file__).with_name("faultproxy.py")


class FaultProxy:
    def __init__(self, seed: int) -> None:
        target = urlsplit(SWIFT_ENV["ST_AUTH"])
        self.port, self.control = free_port(), free_port()
        self.proc = subprocess.Popen(
            [sys.executable, str(PROXY), "--listen", str(self.port), "--to", f"{target.hostname}:{target.port}",
             "--control", str(self.control), "--seed", str(seed), "--stall", "2", "--uplink", "3000000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_for(self._ready, 10), "the fault proxy did not start"
        self.auth = SWIFT_ENV["ST_AUTH"].replace(f"{target.hostname}:{target.port}", f"127.0.0.1:{self.port}")

    def _ready(self) -> bool:
        try:
            self.command("stats")
            return True
        except OSError:
            return False

    def command(self, line: str) -> dict:
        with socket.create_connection(("127.0.0.1", self.control), timeout=5) as c:
            c.sendall((line + "\n").encode())
            return json.loads(c.makefile().readline())

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture
def faulty() -> FaultProxy:
    p = FaultProxy(seed=random.randrange(1 << 30))
    try:
        yield p
    finally:
        p.stop()


def make_tree(root: Path, rng: random.Random) -> dict[str, str]:
    sums = {}
    sizes = [0, 1, 4095, 4096, 65537, 300_000, 1 << 20, (2 << 20) + 3] * 4 + [9 << 20]
    for i, size in enumerate(sizes):
        rel = f"d{i % 3}/sub{i % 2}/f{i:02d}.bin" if i % 4 else f"f{i:02d}.bin"
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size)
        p.write_bytes(data)
        sums[rel] = hashlib.sha256(data).hexdigest()
    return sums


def tree_sums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file()}


def test_a_tree_copied_in_and_read_back_through_a_failing_network_is_whole(mounter: Mounter, faulty: FaultProxy,
                                                                         tmp_path: Path) -> None:
    spec = RemoteSpec(base=f"swift://{CONTAINER}", env=tuple(SWIFT_ENV.items()))
    direct = Remote(url=spec.unique_url(), spec=spec)
    through = Remote(url=direct.url, spec=RemoteSpec(
        base=spec.base, env=tuple({**SWIFT_ENV, "ST_AUTH": faulty.auth}.items())))
    src = tmp_path / "src"
    want = make_tree(src, random.Random(7))
    m = mounter.mount(through, extra=["--segment-size", "4"])
    faulty.command("rate 0.3")
    t0 = time.monotonic()
    subprocess.run(["cp", "-r", f"{src}/.", str(m.path)], check=True, timeout=300)
    m.settle()
    copied = time.monotonic() - t0
    assert copied < 120, f"copying in took {copied:.0f} s"
    # Read back through the failing network, from the server (a new mount has an empty cache).
    # (A mount's first contact is not retried: it is made with the faults off.)
    faulty.command("rate 0")
    reader = mounter.mount(through)
    faulty.command("rate 0.3")
    assert tree_sums(reader.path) == want
    stats = faulty.command("stats")
    # The network did fail: faults are drawn per connection (28 here at 0.3, 8 expected; 4 seen
    # once in CI), so the bound is 2 (under 1 in 1,000 runs below it by chance).
    assert sum(stats["faults"].values()) >= 2, stats
    # The server holds exactly what was written.
    faulty.command("rate 0")
    assert tree_sums(mounter.mount(direct).path) == want


def test_a_server_down_for_seconds_loses_nothing_closed_meanwhile(mounter: Mounter, faulty: FaultProxy) -> None:
    spec = RemoteSpec(base=f"swift://{CONTAINER}", env=tuple({**SWIFT_ENV, "ST_AUTH": faulty.auth}.items()))
    through = Remote(url=spec.unique_url(), spec=spec)
    m = mounter.mount(through)
    (m.path / "d").mkdir()
    faulty.command("refuse 6")
    data = os.urandom(200_000)
    t0 = time.monotonic()
    (m.path / "d" / "while-down.bin").write_bytes(data)     # write-back: close does not wait
    assert time.monotonic() - t0 < 5
    # An fsync while the server is down fails with EIO once its retries are spent (it does not
    # hang); the file stays pending, and is stored once the server is back.
    with pytest.raises(OSError) as down:
        m.settle()
    assert down.value.errno == errno.EIO
    time.sleep(max(0.0, t0 + 6.5 - time.monotonic()))
    m.settle()
    fresh = mounter.mount(through)
    assert (fresh.path / "d" / "while-down.bin").read_bytes() == data
