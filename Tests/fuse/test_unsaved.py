"""Data that cannot be stored is never dropped: with the Swift server unreachable, a closed file
is still not stored at unmount; `objmount unmount` says so, exits non-zero, and
the bytes are in the file it names (under <cache-dir>/unsaved/)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from conftest import OBJMOUNT_BIN, Mounter, is_mounted, run
from test_block_cache import CountingProxy, _skip, proxy, remotes  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(_skip is not None, reason=f"unsaved-data FUSE test skipped: {_skip}")


def test_data_that_cannot_be_stored_at_unmount_is_kept_and_reported(mounter: Mounter, proxy: CountingProxy) -> None:
    _, through_proxy = remotes(proxy)
    m = mounter.mount(through_proxy)
    (m / "d").mkdir()
    proxy.stop()  # the server cannot be reached from now on
    data = os.urandom(300_000)
    # Write-back: close succeeds (the file is journaled); its upload cannot.
    with open(m / "d" / "report.bin", "wb") as f:
        f.write(data)
    with pytest.raises(OSError) as failed:
        m.settle()
    assert failed.value.errno == errno.EIO
    r = run([OBJMOUNT_BIN, "unmount", str(m.path)], env=m.remote.env, check=False)
    stderr = r.stderr.decode()
    assert r.returncode != 0, f"unmount exited 0 though data was not stored: {stderr}"
    assert not is_mounted(m.path)
    kept = [line.split(" is kept in ", 1)[1] for line in stderr.splitlines() if " is kept in " in line]
    assert len(kept) == 1 and "d/report.bin" in stderr, stderr
    assert Path(kept[0]).read_bytes() == data
    assert Path(kept[0]).parent.parent == m.cache_dir / "unsaved"
