#!/usr/bin/env python3
"""The tests' shared virtualenv: ${OBJMOUNT_TEST_VENV:-/tmp/objmount-test-venv}.

    python3 Tests/fuse/testvenv.py ks3sdk==1.18.0 boto3

ensures the virtualenv exists and holds the given packages (pip-installed from PyPI when
missing), then prints the path of its python on stdout, one line; progress goes to stderr.
From Python: `from testvenv import python_with; python = python_with(["ks3sdk==1.18.0"])`.

Requirements are pip specifiers; `name==version` and bare `name` are checked against what is
installed (importlib.metadata) so that nothing is fetched when they are all there; any other
specifier is handed to pip every time (pip itself then does nothing when it is satisfied).

Concurrent callers (several pytest runs, scripts/test.sh) serialise on an fcntl lock file next
to the virtualenv, `.<venv name>.lock`, the same one Tests/fuse/test_hubic_emulator.py takes.
On a fresh Debian, `python3 -m venv` fails without the python3-venv package (no ensurepip): it is
then apt-get installed (needs root) and the venv created again.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

VENV = Path(os.environ.get("OBJMOUNT_TEST_VENV") or "/tmp/objmount-test-venv")
TIMEOUT = 900

_PLAIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:==([A-Za-z0-9.!+_-]+))?$")

_CHECK = r"""
import importlib.metadata as m, json, sys
out = {}
for name in json.loads(sys.argv[1]):
    try:
        out[name] = m.version(name)
    except m.PackageNotFoundError:
        out[name] = None
print(json.dumps(out))
"""


def _log(msg: str) -> None:
    sys.stderr.write(f"testvenv: {msg}\n")
    sys.stderr.flush()


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    _log("$ " + " ".join(cmd))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL)


def _python() -> Path:
    return VENV / "bin" / "python"


def _usable(python: Path) -> bool:
    if not python.exists():
        return False
    try:
        r = subprocess.run([str(python), "-c", "import pip, sys; print(sys.prefix)"],
                           capture_output=True, text=True, timeout=120)
    except OSError:
        return False
    return r.returncode == 0


def _missing(python: Path, packages: list[str]) -> list[str]:
    """The requirements not satisfied (or not checkable) in the venv."""
    plain = {}
    unknown = []
    for spec in packages:
        m = _PLAIN.match(spec.strip())
        if m:
            plain[spec] = (m.group(1), m.group(2))
        else:
            unknown.append(spec)
    if not plain:
        return unknown
    names = sorted({name for name, _ in plain.values()})
    r = subprocess.run([str(python), "-c", _CHECK, json.dumps(names)], capture_output=True,
                       text=True, timeout=120)
    if r.returncode != 0:
        return list(packages)
    have = json.loads(r.stdout.strip().splitlines()[-1])
    out = []
    for spec, (name, version) in plain.items():
        got = have.get(name)
        if got is None or (version is not None and got != version):
            out.append(spec)
    return out + unknown


def _create() -> None:
    if VENV.exists():
        _log(f"{VENV} is not a usable virtualenv: recreating it")
        shutil.rmtree(VENV)
    r = _run([sys.executable, "-m", "venv", str(VENV)])
    if r.returncode == 0 and _usable(_python()):
        return
    _log(f"python3 -m venv failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    # Debian/Ubuntu: ensurepip lives in python3-venv (python3.X-venv).
    if shutil.which("apt-get") is None:
        raise RuntimeError(f"could not create the virtualenv {VENV}:\n{r.stdout}\n{r.stderr}")
    shutil.rmtree(VENV, ignore_errors=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    minor = f"python3.{sys.version_info.minor}-venv"
    for cmd in (["apt-get", "install", "-y", "-q", "python3-venv", minor],
                ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "python3-venv", minor],
                ["apt-get", "install", "-y", "-q", "python3-venv"]):
        _log("$ " + " ".join(cmd))
        a = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, env=env,
                           stdin=subprocess.DEVNULL)
        if a.returncode == 0 and cmd[1] == "install":
            break
    r = _run([sys.executable, "-m", "venv", str(VENV)])
    if r.returncode != 0 or not _usable(_python()):
        raise RuntimeError(f"could not create the virtualenv {VENV} (even after apt-get install "
                           f"python3-venv):\n{r.stdout}\n{r.stderr}")


def python_with(packages: list[str]) -> Path:
    """The python of the shared virtualenv, which then holds `packages` (pip specifiers)."""
    python = _python()
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / f".{VENV.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # several test runs may share the cached venv
        if not _usable(python):
            _create()
        missing = _missing(python, packages)
        if missing:
            r = _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                      *missing])
            if r.returncode != 0:
                raise RuntimeError(f"pip install {' '.join(missing)} failed ({r.returncode}):\n"
                                   f"{r.stdout}\n{r.stderr}")
            still = _missing(python, packages)
            if still:
                raise RuntimeError(f"still missing after pip install: {' '.join(still)}")
    return python


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        sys.stdout.write(__doc__)
        return 0
    try:
        python = python_with(argv)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        _log(f"error: {e}")
        return 1
    print(python, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
