"""Start and stop sendq's processes (simulator, webhooks, workers) on loopback.

The demo, the benchmarks and the end-to-end tests all run real processes;
this keeps their start-up, readiness checks and shutdown in one place.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

DEFAULT_READY_TIMEOUT_S = 20.0
DEFAULT_STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sendq_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "worker.cli", *args]


@dataclass
class Stack:
    """One simulator, one webhook app and a worker pool, sharing one Redis."""

    redis_url: str
    workdir: Path
    processes: int = 2
    threads: int = 16
    # Every provider secret both sides read is derived from this one.
    auth_token: str = field(default_factory=lambda: secrets.token_hex(16))
    sim_port: int = field(default_factory=free_port)
    hook_port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    # Providers the simulator also serves on a port of their own, which a
    # scenario's ``refuse`` rule can really close.
    provider_ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.hook_port}"

    def provider_url(self, name: str) -> str:
        port = self.provider_ports.get(name, self.sim_port)
        return f"http://127.0.0.1:{port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SENDQ_REDIS_URL": self.redis_url,
            **self.provider_env(),
            "SENDQ_CARRIERS__LOOKUP_URL": self.sim_url,
            "SENDQ_WEBHOOKS__PUBLIC_URL": self.hook_url,
            "SENDQ_WEBHOOKS__PORT": str(self.hook_port),
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }

    def provider_env(self) -> dict[str, str]:
        """Every registered provider pointed at the simulator; both sides read the same secrets."""
        from worker.providers import registry
        from worker.providers.base import secret_env
        from worker.simulator.config import telnyx_public_key

        env: dict[str, str] = {}
        for spec in registry.specs():
            env[f"SENDQ_PROVIDERS__{spec.name.upper()}__BASE_URL"] = self.provider_url(spec.name)
            env.update({secret_env(s): _secret_value(s, self.auth_token) for s in spec.secrets})
        # The key the simulator signs Telnyx receipts with: the simulator's, not the adapter's.
        env["SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY"] = telnyx_public_key()
        return env

    def start_simulator(self, scenario: Path | None = None) -> None:
        args = ["simulator", "--port", str(self.sim_port)]
        for name, port in self.provider_ports.items():
            args += ["--provider-port", f"{name}={port}"]
        if scenario:
            args += ["--scenario", str(scenario)]
        self._spawn("simulator", sendq_argv(*args))
        wait_http(f"{self.sim_url}/sim/report", self.procs["simulator"])

    def start_webhooks(self) -> None:
        self._spawn("webhooks", sendq_argv("webhooks", "--port", str(self.hook_port)))
        wait_http(f"{self.hook_url}/healthz", self.procs["webhooks"])

    def start_workers(self, name: str = "workers") -> subprocess.Popen[bytes]:
        argv = sendq_argv(
            "worker", "--processes", str(self.processes), "--threads", str(self.threads)
        )
        return self._spawn(name, argv)

    def start(self, scenario: Path | None = None) -> Stack:
        self.start_simulator(scenario)
        self.start_webhooks()
        self.start_workers()
        return self

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            argv,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def stop(self, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        # Workers first, so no send is cut off by a vanished simulator.
        for name in sorted(self.procs, key=lambda n: n != "workers"):
            stop_process(self.procs[name], timeout_s)
        self.procs.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _secret_value(name: str, token: str) -> str:
    """A well-formed value for each secret: a key list (Twilio's SharedKey secrets,
    KEY_ID=SECRET pairs) gets one pair; any other secret the token itself."""
    if name.endswith("_keys"):
        return f"stack-key={name}-{token}"
    return f"{name}-{token}"


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    if proc.poll() is not None:
        return
    # Only the leader: dramatiq's master forwards SIGTERM to its workers itself,
    # and a second signal would make them abandon in-flight sends.
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_http(
    url: str, proc: subprocess.Popen[bytes], timeout_s: float = DEFAULT_READY_TIMEOUT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")
