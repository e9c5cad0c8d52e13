"""Slow preparations started when collection ends, at low CPU priority, while tests run.

A cold cluster build (tens of minutes on 2 cores) and Debian base images made by debootstrap
(minutes each, arm64 and armhf under qemu) would otherwise run when the first test that needs
them starts. Started early, they use the CPU and network the other tests leave idle. The
scripts hold locks of their own (``cluster.sh build``, ``base-image.sh``), so a test that needs
the result while the job still runs waits for it, and a job that failed here is simply tried
again by the test, which then reports the error. ``EDGECAST_BACKGROUND_PREP=0`` turns this off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path


class BackgroundJob:
    """One shell command run once per test process, in its own process group, output to a log."""

    def __init__(self, name: str, niceness: int = 15) -> None:
        self.name = name
        self.niceness = niceness
        self.process: subprocess.Popen | None = None
        self.log = Path(tempfile.gettempdir()) / f"edgecast-{name}-{os.getpid()}.log"

    def start(self, *argv: str, cwd: Path | None = None) -> None:
        if self.process is not None or os.environ.get("EDGECAST_BACKGROUND_PREP") == "0":
            return
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                ["nice", "-n", str(self.niceness), *argv],
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def stop(self) -> None:
        """Ends the job if it still runs when the test run ends (its scripts resume later)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
