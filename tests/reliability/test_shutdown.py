"""Stopping workers: a second signal while they stop ends them, it never hangs them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from worker.services import sendq_argv

pytestmark = pytest.mark.slow


def test_a_second_sigterm_while_a_worker_stops_ends_it_at_once(
    private_redis: tuple[str, Path], tmp_path: Path
) -> None:
    url, _ = private_redis
    env = {**os.environ, "SENDQ_REDIS_URL": url, "SENDQ_LOG_LEVEL": "warning"}
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        sendq_argv("worker", "--processes", "1", "--threads", "2"),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while b"ready for action" not in (tmp_path / "worker.log").read_bytes():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.2)
        # A container runtime's stop, then an impatient operator's second one.
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        time.sleep(0.5)
        # No worker process of this pool is left behind either.
        left = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True)
        assert left.stdout.strip() == ""
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
