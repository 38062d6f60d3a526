"""sendq on a ``rediss://`` URL with a password: a real TLS handshake to a real Redis."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
import redis

from tests.test_e2e import counts, final, jobs, wait_until
from tests.tls_proxy import Certs, TlsFront, make_certs
from worker.enqueue import Producer
from worker.services import Stack, sendq_argv


@pytest.fixture
def tls_redis(private_redis, tmp_path: Path) -> Iterator[tuple[str, TlsFront, Certs]]:
    """(a rediss:// URL that trusts the test CA, the TLS front, the certificates)."""
    plain_url, _ = private_redis
    parts = urlsplit(plain_url)
    certs = make_certs(tmp_path)
    front = TlsFront(target_port=parts.port or 6379, certs=certs).start()
    url = (
        f"rediss://:{parts.password}@127.0.0.1:{front.port}/0"
        f"?ssl_ca_certs={quote(str(certs.ca))}&ssl_cert_reqs=required"
    )
    yield url, front, certs
    front.stop()


def test_texts_enqueued_and_sent_over_rediss_are_all_delivered_once(
    tls_redis, tmp_path: Path
) -> None:
    url, front, _ = tls_redis
    client = redis.Redis.from_url(url)
    assert isinstance(client.connection_pool.get_connection(), redis.SSLConnection)
    producer = Producer(client)
    with Stack(redis_url=url, workdir=tmp_path / "logs", processes=1, threads=8).start() as stack:
        assert producer.enqueue_many(jobs(60, "tls")).queued == 60
        wait_until(lambda: final(producer, "tls") == 60)
        sim = httpx.get(f"{stack.sim_url}/sim/report").json()
    assert counts(producer, "tls") == {"delivered": 60}
    assert (sim["delivered_to_handsets"], sim["doubled"]) == (60, 0)
    # Producer, workers and the webhook app all came in through the TLS front.
    assert front.handshakes >= 3


def test_a_rediss_server_whose_certificate_is_not_trusted_is_a_clear_error(tls_redis) -> None:
    url, _, _ = tls_redis
    untrusting = url.split("?")[0]  # no ssl_ca_certs: the test CA is unknown
    result = _sendq(untrusting, "messages", "stats")
    assert result.returncode == 1
    assert "cannot reach Redis at rediss://" in result.stderr
    assert "certificate" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert urlsplit(url).password not in result.stderr + result.stdout


def test_an_unreachable_redis_is_one_json_error_for_scripts(tls_redis) -> None:
    url, _, _ = tls_redis
    dead = url.replace(f":{urlsplit(url).port}/", ":1/")
    result = _sendq(dead, "messages", "stats", "--json")
    assert result.returncode == 1
    assert result.stdout.startswith('{"error": "cannot reach Redis at rediss://:***@127.0.0.1:1/0')
    assert urlsplit(url).password not in result.stdout + result.stderr


def _sendq(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    env = {**os.environ, "SENDQ_REDIS_URL": url}
    return subprocess.run(
        sendq_argv(*args), env=env, capture_output=True, text=True, timeout=60, check=False
    )
