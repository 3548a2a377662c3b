"""Fixtures for the FUSE tier: real tools (cp, rsync, tar, dd, ...) against a live objmount mount.

Run:  OBJMOUNT_BIN=/path/to/objmount python3 -m pytest -q Tests/fuse

Needs root and /dev/fuse (the tests are skipped otherwise). Every mount a test makes is
unmounted in teardown, whether the test passed or not; at the end of the session no
`fuse.objmount` mount may be left under pytest's temporary directories.

Remotes
-------
Each test that takes the `remote` (or `mount`) fixture runs once per entry of REMOTES, with a
fresh bucket (or prefix) of its own. By default REMOTES is just memory://. More remotes come
from the environment, see the DRIVER SUITES HOOK below.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

# --------------------------------------------------------------------------------------------
# Binary and environment checks
# --------------------------------------------------------------------------------------------

OBJMOUNT_BIN = os.environ.get("OBJMOUNT_BIN", "")
FUSERMOUNT = shutil.which("fusermount3") or "fusermount3"

# Default timeout (seconds) for every subprocess call.
TIMEOUT = 120
MOUNT_TIMEOUT = 60


def fuse_unavailable_reason() -> str | None:
    """Why the FUSE tier cannot run here, or None if it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing (load the fuse module or run where FUSE is available)"
    if os.geteuid() != 0:
        return "the FUSE tier must run as root (/dev/fuse is usually crw------- here)"
    if shutil.which("fusermount3") is None:
        return "fusermount3 not found (apt-get install fuse3)"
    return None


# The Swift test server (scripts/swift-server.sh env): its container and its ST_* credentials.
SWIFT_CONTAINER = os.environ.get("OBJMOUNT_TEST_SWIFT_CONTAINER")
SWIFT_ENV = {k: v for k, v in os.environ.items() if k.startswith("ST_")}


def swift_server_unavailable_reason() -> str | None:
    """Why the FUSE tests against the Swift test server cannot run here, or None if they can."""
    return fuse_unavailable_reason() or (
        None if SWIFT_CONTAINER and {"ST_AUTH", "ST_USER", "ST_KEY"} <= set(SWIFT_ENV)
        else "no Swift test server (OBJMOUNT_TEST_SWIFT_CONTAINER, ST_*)")


def pytest_configure(config: pytest.Config) -> None:
    if not OBJMOUNT_BIN:
        raise pytest.UsageError(
            "OBJMOUNT_BIN is not set: point it at the objmount binary, e.g. "
            "OBJMOUNT_BIN=$(swift build --show-bin-path)/objmount python3 -m pytest -q Tests/fuse")
    if not (os.path.isfile(OBJMOUNT_BIN) and os.access(OBJMOUNT_BIN, os.X_OK)):
        raise pytest.UsageError(f"OBJMOUNT_BIN={OBJMOUNT_BIN!r} is not an executable file")


# --------------------------------------------------------------------------------------------
# Remotes (parametrization)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RemoteSpec:
    """One remote the suite runs against.

    base: `scheme://` (each test gets a new bucket `scheme://t<random>`) or
          `scheme://bucket[/prefix]` (each test gets a new prefix `.../t<random>` inside it,
          for stores where creating buckets is slow or not allowed).
    env:  extra environment for the objmount processes (credentials, endpoints).
    """

    base: str
    env: tuple[tuple[str, str], ...] = ()

    @property
    def scheme(self) -> str:
        return self.base.split("://", 1)[0]

    @property
    def id(self) -> str:
        return self.base.replace("://", "-").strip("-/").replace("/", "-") or self.scheme

    def unique_url(self) -> str:
        name = "t" + uuid.uuid4().hex[:12]
        scheme, rest = self.base.split("://", 1)
        rest = rest.strip("/")
        return f"{scheme}://{name}" if not rest else f"{scheme}://{rest}/{name}"


def _remotes_from_env() -> list[RemoteSpec]:
    # OBJMOUNT_TEST_REMOTES: comma/space separated list of bases, default "memory://".
    text = os.environ.get("OBJMOUNT_TEST_REMOTES", "memory://")
    remotes = [RemoteSpec(base=b) for b in re.split(r"[,\s]+", text) if b]

    # ======================= DRIVER SUITES HOOK =======================================
    # A driver suite (swift://, s3://, ...) adds its remote here together with the
    # environment its driver reads, e.g.:
    #
    #   if os.environ.get("OBJMOUNT_TEST_S3_BUCKET"):
    #       remotes.append(RemoteSpec(
    #           base="s3://" + os.environ["OBJMOUNT_TEST_S3_BUCKET"],
    #           env=tuple((k, os.environ[k]) for k in
    #                     ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION",
    #                      "AWS_ENDPOINT_URL") if k in os.environ)))
    #
    #   if os.environ.get("OBJMOUNT_TEST_SWIFT_CONTAINER"):
    #       remotes.append(RemoteSpec(
    #           base="swift://" + os.environ["OBJMOUNT_TEST_SWIFT_CONTAINER"],
    #           env=tuple((k, v) for k, v in os.environ.items()
    #                     if k.startswith(("ST_", "OS_")))))
    #
    # Tests that only make sense for memory:// (--seed) call `require_memory(remote)`.
    # ===================================================================================
    # OpenStack Swift (scripts/test.sh starts scripts/swift-server.sh and creates the container).
    if os.environ.get("OBJMOUNT_TEST_SWIFT_CONTAINER"):
        remotes.append(RemoteSpec(
            base="swift://" + os.environ["OBJMOUNT_TEST_SWIFT_CONTAINER"],
            env=tuple((k, v) for k, v in os.environ.items() if k.startswith(("ST_", "OS_")))))
    # Hubic through the OAuth2 emulator (scripts/test.sh starts it with its default
    # application and login); the objmount processes get only HUBIC_* variables.
    if os.environ.get("OBJMOUNT_TEST_HUBIC_API_URL"):
        remotes.append(RemoteSpec(
            base="hubic://default",
            env=(("HUBIC_API_URL", os.environ["OBJMOUNT_TEST_HUBIC_API_URL"]),
                 ("HUBIC_CLIENT_ID", "api_hubic_objmount_test"),
                 ("HUBIC_CLIENT_SECRET", "objmount-test-client-secret"),
                 ("HUBIC_USERNAME", "tester@example.com"), ("HUBIC_PASSWORD", "tester-password"),
                 ("ST_AUTH", ""), ("ST_USER", ""), ("ST_KEY", ""))))
    # What the s3:// driver reads (besides ~/.aws/credentials) and what the ks3:// driver reads.
    s3_vars = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
               "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_PROFILE")
    ks3_vars = ("KS3_ACCESS_KEY_ID", "KS3_SECRET_ACCESS_KEY", "KS3_ENDPOINT")
    # S3 through the Swift server's s3api (scripts/test.sh creates the bucket; the AWS_* come
    # from `scripts/swift-server.sh env`). KS3_* are blanked so nothing leaks across.
    if os.environ.get("OBJMOUNT_TEST_S3_BUCKET") and all(
            os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")):
        remotes.append(RemoteSpec(
            base="s3://" + os.environ["OBJMOUNT_TEST_S3_BUCKET"],
            env=tuple((k, os.environ[k]) for k in s3_vars if k in os.environ)
            + tuple((k, "") for k in ks3_vars)))
    # Kingsoft KS3 through the KS3 emulator in front of the same s3api (scripts/test.sh starts
    # it); the objmount processes get KS3_* only, every AWS_* is blanked.
    if os.environ.get("OBJMOUNT_TEST_KS3_BUCKET") and os.environ.get("OBJMOUNT_TEST_KS3_ENDPOINT") and all(
            os.environ.get(k) for k in ("KS3_ACCESS_KEY_ID", "KS3_SECRET_ACCESS_KEY")):
        remotes.append(RemoteSpec(
            base="ks3://" + os.environ["OBJMOUNT_TEST_KS3_BUCKET"],
            env=(("KS3_ACCESS_KEY_ID", os.environ["KS3_ACCESS_KEY_ID"]),
                 ("KS3_SECRET_ACCESS_KEY", os.environ["KS3_SECRET_ACCESS_KEY"]),
                 ("KS3_ENDPOINT", os.environ["OBJMOUNT_TEST_KS3_ENDPOINT"]))
            + tuple((k, "") for k in s3_vars)))
    return remotes


REMOTES: list[RemoteSpec] = _remotes_from_env()


@dataclasses.dataclass(frozen=True)
class Remote:
    url: str
    spec: RemoteSpec

    @property
    def scheme(self) -> str:
        return self.spec.scheme

    @property
    def env(self) -> dict[str, str]:
        return dict(self.spec.env)


@pytest.fixture(params=REMOTES, ids=[r.id for r in REMOTES])
def remote(request: pytest.FixtureRequest) -> Remote:
    """A fresh, unique remote URL (new bucket or prefix) for this test."""
    spec: RemoteSpec = request.param
    return Remote(url=spec.unique_url(), spec=spec)


def require_memory(remote: Remote) -> None:
    if remote.scheme != "memory":
        pytest.skip(f"memory:// only (this run uses {remote.scheme}://)")


# --------------------------------------------------------------------------------------------
# Subprocess helpers
# --------------------------------------------------------------------------------------------


def run(cmd: Sequence[str | os.PathLike], *, check: bool = True, timeout: float = TIMEOUT,
        env: dict[str, str] | None = None, cwd: str | os.PathLike | None = None,
        input: bytes | None = None) -> subprocess.CompletedProcess:
    """Runs a command with a timeout and captured output; with check, fails the test on a
    non-zero exit and shows stdout/stderr."""
    # English messages ("Read-only file system") and byte-wise sorting, whatever the locale.
    full_env = {**os.environ, "LC_ALL": "C.UTF-8", **(env or {})}
    argv = [os.fspath(c) for c in cmd]
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, env=full_env,
                           cwd=cwd or "/", input=input)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"timed out after {timeout}s: {argv}\nstdout: {e.stdout!r}\nstderr: {e.stderr!r}")
    if check and p.returncode != 0:
        pytest.fail(
            f"command failed with exit {p.returncode}: {argv}\n"
            f"stdout: {p.stdout.decode(errors='replace')[-4000:]}\n"
            f"stderr: {p.stderr.decode(errors='replace')[-4000:]}")
    return p


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@dataclasses.dataclass(frozen=True)
class MountEntry:
    mountpoint: str
    fstype: str
    source: str
    options: str


def mount_table() -> list[MountEntry]:
    entries = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            lf, rf = left.split(" "), right.split(" ")
            entries.append(MountEntry(mountpoint=_unescape_mountinfo(lf[4]), fstype=rf[0],
                                      source=_unescape_mountinfo(rf[1]) if len(rf) > 1 else "",
                                      options=lf[5]))
    return entries


def mounts_at(path: str | os.PathLike) -> list[MountEntry]:
    p = os.path.abspath(os.fspath(path))
    return [m for m in mount_table() if m.mountpoint == p]


def is_mounted(path: str | os.PathLike) -> bool:
    return bool(mounts_at(path))


def objmount_mounts_under(root: str | os.PathLike) -> list[MountEntry]:
    r = os.path.abspath(os.fspath(root)).rstrip("/") + "/"
    return [m for m in mount_table() if m.fstype == "fuse.objmount" and (m.mountpoint + "/").startswith(r)]


# --------------------------------------------------------------------------------------------
# Daemon pid bookkeeping (kill only the daemon we started, never by name)
# --------------------------------------------------------------------------------------------

RUNTIME_DIR = "/run/objmount" if os.geteuid() == 0 else (
    (os.environ.get("XDG_RUNTIME_DIR") + "/objmount") if os.environ.get("XDG_RUNTIME_DIR")
    else f"/tmp/objmount-{os.geteuid()}")


def pid_file_for(mountpoint: str) -> str:
    """Mirrors Paths.pidFile(for:): letters, digits, '-', '.', '_' kept, other bytes %XX."""
    name = []
    for b in mountpoint.encode():
        c = chr(b)
        if c.isalpha() or c.isnumeric() or c in "-._":
            name.append(c)
        else:
            name.append("%" + format(b, "X"))
    return os.path.join(RUNTIME_DIR, "".join(name) + ".pid")


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="surrogateescape") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def is_daemon_for(pid: int, mountpoint: str) -> bool:
    """True if pid is (still) an objmount mount process serving mountpoint."""
    argv = _cmdline(pid)
    # `objmount mount SOURCE MNT ...`, or the helper form mount(8) runs: `objmount SOURCE MNT -o ...`.
    ours = "mount" in argv or (argv and os.path.basename(argv[0]) == "objmount")
    return bool(ours) and any(os.path.abspath(a) == mountpoint for a in argv[1:] if a.startswith("/"))


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def daemon_status(mountpoint: str | os.PathLike) -> dict:
    """What `objmount status MOUNTPOINT --json` says of the mount: its pid, pending uploads,
    cache, counters ({"mountpoint", "error"} when no daemon of ours answers for it)."""
    p = subprocess.run([OBJMOUNT_BIN, "status", os.fspath(mountpoint), "--json"], capture_output=True, text=True,
                       timeout=30)
    if p.returncode != 0:
        return {"mountpoint": os.fspath(mountpoint), "error": p.stderr.strip()}
    (answer,) = json.loads(p.stdout)
    return answer


def find_daemon_pid(mountpoint: str) -> int | None:
    """The pid of the daemon serving mountpoint, as it says itself (`objmount status`)."""
    pid = daemon_status(mountpoint).get("pid")
    return pid if isinstance(pid, int) and is_daemon_for(pid, mountpoint) else None


def terminate(proc: subprocess.Popen) -> None:
    """Ends a helper process this test started: SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# --------------------------------------------------------------------------------------------
# Mounting
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Mounted:
    path: Path
    remote: Remote
    cache_dir: Path
    pid: int | None
    argv: list[str]

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, other: str) -> Path:
        return self.path / other

    def settle(self) -> None:
        """Returns once every file closed on the mount is stored (write-back): an fsync of the
        mount's root directory waits for the pending uploads, as `objmount sync` does."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def objmount(*args: str | os.PathLike, remote: Remote | None = None, check: bool = True,
             timeout: float = MOUNT_TIMEOUT) -> subprocess.CompletedProcess:
    return run([OBJMOUNT_BIN, *args], check=check, timeout=timeout, env=remote.env if remote else None)


_SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|_KEY$")


def secrets_given(env: dict[str, str]) -> dict[str, str]:
    """The secrets a daemon started with `env` knows: the credentials among its variables (an
    access key id is a name, not a secret), and the token the Swift server hands out for the
    test account (tempauth gives the same one to every login until it expires)."""
    found = {k: v for k, v in env.items() if v and _SECRET_NAME.search(k) and not k.endswith("ACCESS_KEY_ID")}
    token = swift_token()
    if token:
        found["the Swift auth token"] = token
    return found


@functools.cache
def swift_token() -> str | None:
    """The test account's X-Auth-Token (fetched once), or None without the Swift server."""
    if not {"ST_AUTH", "ST_USER", "ST_KEY"} <= set(SWIFT_ENV):
        return None
    req = urllib.request.Request(SWIFT_ENV["ST_AUTH"], headers={
        "X-Auth-User": SWIFT_ENV["ST_USER"], "X-Auth-Key": SWIFT_ENV["ST_KEY"]})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers.get("X-Auth-Token")
    except OSError:
        return None


class Mounter:
    """Makes mounts for one test and tears all of them down, whatever happened."""

    def __init__(self, factory: pytest.TempPathFactory):
        self.factory = factory
        self.tracked: list[tuple[str, Mounted | None]] = []
        self.problems: list[str] = []

    def new_mountpoint(self) -> Path:
        mp = self.factory.mktemp("mnt", numbered=True)
        self.track(mp)
        return mp

    def track(self, mountpoint: Path, mounted: Mounted | None = None) -> None:
        """Registers a directory for teardown even if it is only used for a mount that
        should fail (in case it unexpectedly succeeds)."""
        self.tracked.append((str(mountpoint), mounted))

    def mount(self, remote: Remote, *, options: str | None = None, seed: str | os.PathLike | None = None,
              extra: Sequence[str] = (), mountpoint: Path | None = None, cache: Path | None = None) -> Mounted:
        """`cache`: the --cache-dir to use (a remount that should find the block cache of an
        earlier mount passes that mount's `cache_dir`); a new one by default."""
        mp = mountpoint or self.new_mountpoint()
        if mountpoint is not None:
            self.track(mp)
        cache = cache or self.factory.mktemp("cache", numbered=True)
        argv = [OBJMOUNT_BIN, "mount", remote.url, str(mp), "--cache-dir", str(cache)]
        if options:
            argv += ["-o", options]
        if seed is not None:
            argv += ["--seed", os.fspath(seed)]
        argv += list(extra)
        # Every mount of the tier logs at debug level (a line per HTTP request among others),
        # and its log is searched for the secrets it was given when it is torn down
        # (OBJMOUNT_TEST_LOG_LEVEL=info to compare).
        if not any(a == "--log-level" or a.startswith("--log-level=") for a in extra):
            argv += ["--log-level", os.environ.get("OBJMOUNT_TEST_LOG_LEVEL", "debug")]
        p = run(argv, check=False, timeout=MOUNT_TIMEOUT, env=remote.env)
        if p.returncode != 0:
            log = cache / "objmount.log"
            pytest.fail(f"mount failed (exit {p.returncode}): {argv}\nstderr: {p.stderr.decode(errors='replace')}"
                        f"\nlog: {log.read_text(errors='replace') if log.exists() else '(none)'}")
        assert [m.fstype for m in mounts_at(mp)] == ["fuse.objmount"], \
            f"`objmount mount` returned 0 but {mp} is not a fuse.objmount mount: {mounts_at(mp)}"
        pid = None
        wait_for(lambda: find_daemon_pid(str(mp)) is not None, 5)
        pid = find_daemon_pid(str(mp))
        m = Mounted(path=mp, remote=remote, cache_dir=cache, pid=pid, argv=argv)
        self.tracked.append((str(mp), m))
        return m

    # ---- teardown ----------------------------------------------------------------------

    def cleanup(self) -> None:
        seen = set()
        for mp, m in reversed(self.tracked):
            if mp in seen:
                continue
            seen.add(mp)
            try:
                self._cleanup_one(mp, m)
            except Exception as e:  # never stop cleaning up the others
                self.problems.append(f"{mp}: cleanup raised {e!r}")

    @staticmethod
    def _try(argv: list[str], timeout: float, env: dict[str, str] | None = None) -> tuple[int | None, str]:
        """Runs a cleanup command; (exit code or None on timeout, stderr). Never raises."""
        try:
            p = subprocess.run(argv, capture_output=True, timeout=timeout, cwd="/",
                               env={**os.environ, "LC_ALL": "C.UTF-8", **(env or {})})
            return p.returncode, p.stderr.decode(errors="replace").strip()
        except subprocess.TimeoutExpired:
            return None, f"timed out after {timeout}s"
        except OSError as e:
            return -1, str(e)

    def _cleanup_one(self, mp: str, m: Mounted | None) -> None:
        pid = m.pid if m and m.pid else None
        if pid is None and is_mounted(mp):
            pid = find_daemon_pid(mp)
        if is_mounted(mp):
            rc, err = self._try([OBJMOUNT_BIN, "unmount", mp], MOUNT_TIMEOUT, m.remote.env if m else None)
            if rc != 0:
                self.problems.append(f"`objmount unmount {mp}` failed ({'exit ' + str(rc) if rc is not None else ''}): {err}")
        if is_mounted(mp):
            self._try([FUSERMOUNT, "-u", mp], 30)
        if is_mounted(mp):
            self._try([FUSERMOUNT, "-uz", mp], 30)
            self.problems.append(f"{mp} needed `fusermount3 -uz`")
        if pid is not None and not wait_for(lambda: not pid_alive(pid), 15):
            if is_daemon_for(pid, mp):
                self.problems.append(f"daemon pid {pid} for {mp} did not exit after unmount; sent SIGTERM")
                os.kill(pid, signal.SIGTERM)
                if not wait_for(lambda: not pid_alive(pid), 10) and is_daemon_for(pid, mp):
                    os.kill(pid, signal.SIGKILL)
                    wait_for(lambda: not pid_alive(pid), 5)
        if is_mounted(mp):
            self.problems.append(f"{mp} is still mounted after all unmount attempts")
        if m is not None:
            log = m.cache_dir / "objmount.log"
            if log.exists():
                text = log.read_text(errors="replace")
                if re.search(r"Fatal error|Segmentation|Stack dump|Illegal instruction", text):
                    self.problems.append(f"daemon log {log} shows a crash:\n{text[-3000:]}")
            for path in sorted(m.cache_dir.glob("objmount.log*")):
                text = path.read_text(errors="replace")
                for name, secret in secrets_given(m.remote.env).items():
                    if re.search(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", text):
                        self.problems.append(f"the daemon log {path} shows the secret {name}")


@pytest.fixture
def mounter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounter]:
    mt = Mounter(tmp_path_factory)
    try:
        yield mt
    finally:
        mt.cleanup()
    if mt.problems:
        pytest.fail("unmount/teardown problems:\n  " + "\n  ".join(mt.problems))


@pytest.fixture
def mount(mounter: Mounter, remote: Remote) -> Mounted:
    """A live objmount mount of a fresh remote; unmounted in teardown."""
    return mounter.mount(remote)


@pytest.fixture(scope="session", autouse=True)
def no_leftover_mounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Session finalizer: nothing may stay mounted under pytest's temp dirs."""
    base = tmp_path_factory.getbasetemp()
    yield
    left = objmount_mounts_under(base)
    for m in left:  # clean up anyway, then report
        Mounter._try([OBJMOUNT_BIN, "unmount", m.mountpoint], MOUNT_TIMEOUT)
        if is_mounted(m.mountpoint):
            Mounter._try([FUSERMOUNT, "-uz", m.mountpoint], 30)
    assert not left, f"fuse.objmount mounts left behind under {base}: {[m.mountpoint for m in left]}"


# --------------------------------------------------------------------------------------------
# Sample trees and comparisons (done with real tools: find, sha256sum, stat)
# --------------------------------------------------------------------------------------------

UNICODE_NAME = "with spaces ünïcödé – 文件 (1).txt"
MiB = 1024 * 1024

SAMPLE_FILES: dict[str, int] = {
    "empty.bin": 0,
    "one.bin": 1,
    "page-minus-1.bin": 4095,
    "page.bin": 4096,
    "big/one-mib-plus-3.bin": MiB + 3,
    UNICODE_NAME: 1234,
    "a/b/c/deep.txt": 100,
    "a/b/sibling.txt": 5000,
    "a/x.txt": 17,
    "dir with space/ß.txt": 64,
}
SAMPLE_EMPTY_DIRS = ["empty-dir", "a/b/c/empty-leaf"]


def make_tree(root: Path, seed: int = 1) -> Path:
    """Builds the sample tree under root (which must not exist yet or be empty).
    Files get pseudo-random content and distinct, old mtimes (with sub-second parts)."""
    rnd = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for d in SAMPLE_EMPTY_DIRS:
        (root / d).mkdir(parents=True, exist_ok=True)
    for i, (rel, size) in enumerate(sorted(SAMPLE_FILES.items())):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(size))
        t = 1_000_000_000 + i * 86_400 + 0.25
        os.utime(p, (t, t))
    os.chmod(root / "a/x.txt", 0o600)
    os.chmod(root / "one.bin", 0o755)
    # directory mtimes last (creating files changes them)
    for i, d in enumerate(sorted({str(Path(r).parent) for r in SAMPLE_FILES} | set(SAMPLE_EMPTY_DIRS))):
        if d != ".":
            t = 1_100_000_000 + i * 3600
            os.utime(root / d, (t, t))
    return root


def listing(root: str | os.PathLike) -> list[str]:
    """`find <root> -mindepth 1 -printf '%y %P\\n' | sort`: type and relative path of every entry."""
    p = run(["find", os.fspath(root), "-mindepth", "1", "-printf", r"%y %P\0"])
    return sorted(x.decode() for x in p.stdout.split(b"\0") if x)


def hashes(root: str | os.PathLike) -> dict[str, str]:
    """sha256sum of every regular file under root, keyed by relative path."""
    p = run(["find", ".", "-type", "f", "-print0"], cwd=root)
    files = [x for x in p.stdout.split(b"\0") if x]
    out: dict[str, str] = {}
    for i in range(0, len(files), 200):
        chunk = files[i:i + 200]
        s = run(["sha256sum", "-z", "--", *[f.decode() for f in chunk]], cwd=root)
        for rec in s.stdout.split(b"\0"):
            if rec:
                digest, _, name = rec.decode().partition("  ")
                out[os.path.normpath(name)] = digest
    return out


def stat_of(root: str | os.PathLike, fmt: str, only_files: bool = True) -> dict[str, str]:
    """`stat -c <fmt>` of every entry (regular files by default) under root, keyed by relative path."""
    args = ["find", ".", "-mindepth", "1"] + (["-type", "f"] if only_files else []) + ["-print0"]
    p = run(args, cwd=root)
    names = [x.decode() for x in p.stdout.split(b"\0") if x]
    out: dict[str, str] = {}
    for i in range(0, len(names), 200):
        chunk = names[i:i + 200]
        s = run(["stat", "--printf", fmt + r"\0", "--", *chunk], cwd=root)
        vals = [v.decode() for v in s.stdout.split(b"\0")][: len(chunk)]
        for n, v in zip(chunk, vals):
            out[os.path.normpath(n)] = v
    return out


def sha256_file(path: str | os.PathLike) -> str:
    return run(["sha256sum", "--", os.fspath(path)]).stdout.split()[0].decode()

