"""Breaker alerts, posted to a real HTTP server on loopback: content, retries, dead URLs.

The receivers here are shared with test_cli.py and test_admin.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from structlog.testing import capture_logs

from worker.alerts import Alerter, announce_now

SECRET_PATH = "/services/T000/B000/alert-path-secret"


class AlertReceiver:
    """A chat webhook stand-in: answers ``failures`` 500s first, then 200s; keeps each body."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver._lock:
                    receiver.paths.append(self.path)
                    receiver.requests.append(json.loads(body))
                    failing = len(receiver.requests) <= receiver.failures
                self.send_response(500 if failing else 200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def wait_for(self, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.requests)


@contextmanager
def alert_receiver(failures: int = 0) -> Iterator[AlertReceiver]:
    receiver = AlertReceiver(failures)
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@contextmanager
def hanging_url() -> Iterator[str]:
    """A URL whose server accepts the connection and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # the kernel completes the handshake; nobody ever reads or replies
        yield f"http://127.0.0.1:{sock.getsockname()[1]}{SECRET_PATH}"


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    with alert_receiver() as r:
        yield r


async def test_an_alert_names_the_carrier_campaign_state_who_and_why(receiver) -> None:
    alerter = Alerter([receiver.url])
    alerter.announce("carrier", "verizon:gotv", "closed>paused", "30007 spike", by="maria")
    assert await alerter.drain(5.0)
    await alerter.aclose()
    [alert] = receiver.requests
    assert alert["text"] == (
        "sendq: carrier verizon, campaign gotv is now paused (was closed), by maria: 30007 spike"
    )
    assert (alert["name"], alert["from"], alert["to"], alert["by"]) == (
        "verizon:gotv",
        "closed",
        "paused",
        "maria",
    )
    assert receiver.paths == [SECRET_PATH]


async def test_an_automatic_open_for_every_campaign_reads_as_such(receiver) -> None:
    alerter = Alerter([receiver.url])
    alerter.announce("carrier", "att:*", "closed>open", source="receipt")
    assert await alerter.drain(5.0)
    await alerter.aclose()
    [alert] = receiver.requests
    assert alert["text"] == "sendq: carrier att, all campaigns is now open (was closed), by auto"
    assert alert["source"] == "receipt"


async def test_an_alert_is_retried_until_the_url_answers() -> None:
    with alert_receiver(failures=2) as flaky:
        alerter = Alerter([flaky.url], backoff_s=0.05)
        alerter.announce("provider", "twilio", "paused>closed", "fixed", by="maria")
        assert await alerter.drain(5.0)
        await alerter.aclose()
    assert len(flaky.requests) == 3
    assert all(r["text"].startswith("sendq: provider twilio is now closed") for r in flaky.requests)


async def test_an_alert_that_keeps_failing_gives_up_and_logs_the_host_only() -> None:
    with alert_receiver(failures=99) as broken:
        alerter = Alerter([broken.url], attempts=2, backoff_s=0.05)
        with capture_logs() as logs:
            alerter.announce("carrier", "att:*", "closed>open")
            assert not await alerter.drain(5.0)
        await alerter.aclose()
    assert len(broken.requests) == 2
    failed = [e for e in logs if e["event"] == "alert could not be delivered"]
    assert failed and failed[0]["url"] == "http://127.0.0.1/..."
    assert "alert-path-secret" not in repr(logs)


async def test_a_hanging_alert_url_never_blocks_the_caller(receiver) -> None:
    with hanging_url() as dead:
        alerter = Alerter([dead, receiver.url])
        started = time.monotonic()
        with capture_logs() as logs:
            alerter.announce("carrier", "verizon:*", "closed>open")
        assert time.monotonic() - started < 0.1
        assert [e["log_level"] for e in logs if e["event"] == "breaker changed"] == ["error"]
        # The live URL gets its alert though the other one hangs.
        assert await _eventually(lambda: len(receiver.requests) == 1)
        started = time.monotonic()
        assert not await alerter.drain(0.5)
        assert time.monotonic() - started < 2.0
        await alerter.aclose()


def test_announce_now_waits_for_the_post_but_not_for_a_dead_url(receiver) -> None:
    assert announce_now([receiver.url], "carrier", [("att:*", "paused>closed")], by="maria")
    assert receiver.requests[0]["to"] == "closed"
    with hanging_url() as dead:
        started = time.monotonic()
        assert not announce_now([dead], "carrier", [("att:*", "closed>paused")], flush_s=0.5)
        assert time.monotonic() - started < 2.0


async def test_an_operators_reason_is_masked_in_the_alert(receiver) -> None:
    alerter = Alerter([receiver.url])
    alerter.announce("carrier", "att:*", "closed>paused", "complaint from +1 201 555 0123", by="m")
    assert await alerter.drain(5.0)
    await alerter.aclose()
    [alert] = receiver.requests
    assert "555 0123" not in json.dumps(alert) and "complaint from" in alert["text"]


async def _eventually(check: Any, timeout_s: float = 5.0) -> bool:
    import asyncio

    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True
