"""Running the simulator: in the foreground (``serve``) or in a thread for tests.

uvicorn runs it on uvloop and httptools when they are installed (they are,
with ``uvicorn[standard]``): the send route is CPU-bound, and they roughly
halve the cost of each request. Access logs stay off for the same reason.

The main socket is bound here, before uvicorn starts, so the real port is
known (port 0 picks one) before the provider gates, which forward to it, are
set up.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import uvicorn

from worker.simulator.app import SimulatorApp, create_app
from worker.simulator.config import SimulatorConfig

__all__ = ["SimulatorConfig", "SimulatorHandle", "serve", "start_in_thread"]

STARTUP_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
# How long an idle keep-alive connection stays open, as on a provider's edge (an AWS
# load balancer's default idle timeout; nginx's is 75 s), not uvicorn's 5 s: a request
# a client wrote just before a partition still finds its connection open when the
# link comes back, and is taken then, as on the real services.
KEEP_ALIVE_S = 60


def _uvicorn_config(app: SimulatorApp, *, graceful_s: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        access_log=False,
        proxy_headers=False,  # nothing proxies the simulator; the middleware costs CPU
        timeout_keep_alive=KEEP_ALIVE_S,
        log_level="warning",
        # A hanging scenario holds requests for a minute; don't wait for them on exit.
        timeout_graceful_shutdown=graceful_s,
    )


def _bind(config: SimulatorConfig) -> tuple[socket.socket, SimulatorConfig]:
    """The main listening socket, and the config with its real port."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    return sock, dataclasses.replace(config, port=sock.getsockname()[1])


def serve(
    config: SimulatorConfig, on_bound: Callable[[SimulatorConfig], None] | None = None
) -> None:
    """Run the simulator until interrupted (Ctrl-C or SIGTERM); ``on_bound`` gets the
    config with the real port once the main socket is bound."""
    sock, bound = _bind(config)
    if on_bound is not None:
        on_bound(bound)
    uvicorn.Server(_uvicorn_config(create_app(bound), graceful_s=5)).run(sockets=[sock])


class SimulatorHandle:
    """A simulator running in a background thread; ``url`` is its base URL and
    ``provider_urls`` the base URL of each provider given a port of its own."""

    def __init__(
        self,
        server: uvicorn.Server,
        thread: threading.Thread,
        url: str,
        provider_urls: dict[str, str] | None = None,
    ) -> None:
        self._server = server
        self._thread = thread
        self.url = url
        self.provider_urls = provider_urls or {}

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=STOP_TIMEOUT_S)

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
    """Start a simulator in a daemon thread and wait until it answers; port 0 picks one
    (for ``provider_ports`` too)."""
    sock, bound = _bind(config)
    app = create_app(bound)
    server = uvicorn.Server(_uvicorn_config(app, graceful_s=1))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="sendq-simulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"the simulator did not start on {config.host}:{bound.port}")
        time.sleep(0.01)
    # The gates opened during start-up; port 0 has become a real one by now.
    provider_urls = {
        name: f"http://{config.host}:{gate.port}" for name, gate in app.state.gates.items()
    }
    return SimulatorHandle(server, thread, f"http://{config.host}:{bound.port}", provider_urls)
