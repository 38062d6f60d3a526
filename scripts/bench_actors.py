"""Peer actors for scripts/bench.py: plain dramatiq doing the same job without sendq.

Imported by ``dramatiq scripts.bench_actors``; the broker URL comes from
BENCH_REDIS_URL and the simulator from BENCH_SIM_URL.
"""

from __future__ import annotations

import os
import threading

import dramatiq
import httpx
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)

SIM_URL = os.environ.get("BENCH_SIM_URL", "http://127.0.0.1:8700")
SID = "AC" + "0" * 32
TOKEN = os.environ.get("BENCH_AUTH_TOKEN", "sim-auth-token")
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"

_local = threading.local()


def _form(to: str, body: str) -> dict[str, str]:
    return {"To": to, "From": "+12015550100", "Body": body}


@dramatiq.actor(queue_name="bench_noop", max_retries=0)
def noop(to: str, body: str) -> None:
    return None


@dramatiq.actor(queue_name="bench_naive", max_retries=0)
def naive(to: str, body: str) -> None:
    # What a first attempt looks like: a new connection per text.
    httpx.post(
        SIM_URL + PATH, data=_form(to, body), auth=(SID, TOKEN), timeout=10
    ).raise_for_status()


_client: httpx.Client | None = None
_client_lock = threading.Lock()


def _shared_client() -> httpx.Client:
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                base_url=SIM_URL,
                auth=(SID, TOKEN),
                timeout=10,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            )
        return _client


@dramatiq.actor(queue_name="bench_peer", max_retries=0)
def peer(to: str, body: str) -> None:
    # A careful plain-dramatiq sender: one pooled keep-alive client per process.
    _shared_client().post(PATH, data=_form(to, body)).raise_for_status()


# dramatiq's own answer to "at most 50 per second": a bucket limiter that raises
# when full, so the Retries middleware redelivers the message after a backoff.
from dramatiq.rate_limits import BucketRateLimiter  # noqa: E402
from dramatiq.rate_limits.backends import RedisBackend  # noqa: E402

BUCKET_LIMIT = int(os.environ.get("BENCH_BUCKET_LIMIT", "50"))
_bucket = BucketRateLimiter(
    RedisBackend(url=os.environ["BENCH_REDIS_URL"]), "bench-number", limit=BUCKET_LIMIT, bucket=1000
)


@dramatiq.actor(queue_name="bench_bucket", max_retries=10_000, min_backoff=100, max_backoff=1000)
def bucket_limited(to: str, body: str) -> None:
    with _bucket.acquire():
        _shared_client().post(PATH, data=_form(to, body)).raise_for_status()
