"""Helpers the emulator tests share for the processes they start."""

from __future__ import annotations

import subprocess


def stop_process(proc: subprocess.Popen) -> None:
    """Stops a process this test started: SIGTERM, then SIGKILL after 10 s; closes its stdout."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    if proc.stdout:
        proc.stdout.close()
