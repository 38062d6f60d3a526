"""Running the simulator: in the foreground (``serve``) or in a thread for tests.

uvicorn runs it on uvloop and httptools when they are installed (they are,
with ``uvicorn[standard]``): the send route is CPU-bound, and they roughly
halve the cost of each request. Access logs stay off for the same reason.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from types import TracebackType

import uvicorn

from worker.simulator.app import create_app
from worker.simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig", "SimulatorHandle", "serve", "start_in_thread"]

STARTUP_TIMEOUT_S = 10.0


def _uvicorn_config(config: SimulatorConfig, *, graceful_s: int) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config),
        host=config.host,
        port=config.port,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # nothing proxies the simulator; the middleware costs CPU
        log_level="warning",
        # A hanging scenario holds requests for a minute; don't wait for them on exit.
        timeout_graceful_shutdown=graceful_s,
    )


def serve(config: SimulatorConfig) -> None:
    """Run the simulator until interrupted (Ctrl-C or SIGTERM)."""
    uvicorn.Server(_uvicorn_config(config, graceful_s=5)).run()


class SimulatorHandle:
    """A simulator running in a background thread; ``url`` is its base URL."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
        self._server = server
        self._thread = thread
        self.url = url

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> SimulatorHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_in_thread(config: SimulatorConfig) -> SimulatorHandle:
    """Start a simulator in a daemon thread and wait until it answers; port 0 picks one."""
    # Binding here, not in uvicorn, tells us the real port before the server starts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_uvicorn_config(config, graceful_s=1))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sendq-simulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the simulator did not start on {config.host}:{port}")
        time.sleep(0.01)
    return SimulatorHandle(server, thread, f"http://{config.host}:{port}")
