"""The embedded Redis keeps its data directory private: the AOF holds full phone numbers."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from worker import embedded
from worker.errors import RedisUnavailable


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def loose(data_dir: Path) -> dict[str, str]:
    """Every file or directory in the data directory that group or others can use."""
    found = {} if mode(data_dir) & 0o077 == 0 else {".": oct(mode(data_dir))}
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            path = Path(root, name)
            if mode(path) & 0o077:
                found[str(path.relative_to(data_dir))] = oct(mode(path))
    return found


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sendq-data"
    yield path
    embedded.stop(path)


def write_a_number(url: str) -> None:
    client = redis.Redis.from_url(url)
    client.hset("sendq:test:msg", "to", "+12015550123")
    client.execute_command("BGREWRITEAOF")  # the rewrite's files too
    deadline = time.monotonic() + 10
    while client.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_new_data_directory_and_every_file_in_it_are_private(data_dir: Path) -> None:
    previous = os.umask(0o022)  # the usual umask, which made the AOF 0644
    try:
        url = embedded.ensure(data_dir)
        write_a_number(url)
    finally:
        os.umask(previous)
    assert (data_dir / "appendonly.aof").is_file()
    assert mode(data_dir) == 0o700
    assert mode(data_dir / embedded.URL_FILE) == 0o600
    assert loose(data_dir) == {}


def test_an_older_data_directory_left_readable_is_made_private(data_dir: Path) -> None:
    url = embedded.ensure(data_dir)
    write_a_number(url)
    os.chmod(data_dir, 0o755)  # as sendq used to leave it
    for path in data_dir.iterdir():
        os.chmod(path, 0o644)
    assert loose(data_dir)
    assert embedded.ensure(data_dir) == url  # the running server is reused...
    assert loose(data_dir) == {}  # ...and the password and the AOF are private again


def test_a_url_file_from_an_older_sendq_is_private_once_the_server_starts_again(
    data_dir: Path,
) -> None:
    embedded.ensure(data_dir)
    embedded.stop(data_dir)
    os.chmod(data_dir / embedded.URL_FILE, 0o644)
    embedded.ensure(data_dir)  # a new server, a new password written over the old file
    assert mode(data_dir / embedded.URL_FILE) == 0o600


def test_a_data_directory_that_cannot_be_made_private_stops_start_up_naming_it(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir.mkdir(mode=0o755)
    os.chmod(data_dir, 0o755)

    def refused(path: object, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted", str(path))

    monkeypatch.setattr(embedded.os, "chmod", refused)
    with pytest.raises(RedisUnavailable, match="is open to other users") as info:
        embedded.ensure(data_dir)
    assert f"chmod go-rwx {data_dir}" in str(info.value)
    assert not (data_dir / embedded.URL_FILE).exists()  # no server, no password written
