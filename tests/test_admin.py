"""The admin API: nothing without the token; with it, records, carriers and metrics."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from worker.admin import Admin
from worker.breaker import Policy
from worker.enqueue import Producer
from worker.providers.twilio import TwilioProvider
from worker.store import AsyncStore
from worker.webhooks import create_app

TOKEN = "admin-secret-token"
ROUTES = [
    ("GET", "/admin/messages/x"),
    ("GET", "/admin/carriers"),
    ("POST", "/admin/carriers/verizon/pause"),
    ("POST", "/admin/carriers/verizon/resume"),
    ("GET", "/metrics"),
]


def app(redis_url: str, ns: str, token: str | None) -> TestClient:
    provider = TwilioProvider(
        account_sid="AC" + "6" * 32, auth_token="t", base_url="http://127.0.0.1:9"
    )
    return TestClient(
        create_app(
            store=AsyncStore(aioredis.Redis.from_url(redis_url), ns),
            providers={"twilio": provider},
            public_url="http://testserver",
            admin=Admin(redis.Redis.from_url(redis_url), Policy(), ns),
            admin_token=token,
        )
    )


@pytest.fixture
def api(redis_url: str, ns: str) -> Iterator[TestClient]:
    with app(redis_url, ns, TOKEN) as client:
        yield client


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth("wrong"),
        {"authorization": TOKEN},
        {"authorization": "Bearer ümlaut".encode("latin-1")},
    ],
)
def test_every_admin_route_refuses_a_missing_or_wrong_token(api, method, path, headers) -> None:
    response = api.request(method, path, headers=headers, json={"reason": "x"})
    assert response.status_code == 401
    assert "admin token" in response.json()["error"]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_with_no_token_configured_the_admin_api_is_closed(redis_url, ns, method, path) -> None:
    with app(redis_url, ns, None) as client:
        response = client.request(method, path, headers=auth(), json={"reason": "x"})
    assert response.status_code == 503


def test_an_operator_reads_a_message_record(api, client, ns, queue) -> None:
    msg = Producer(client, ns=ns, queue=queue).enqueue({"to": "+12015550123", "body": "hi"})
    body = api.get(f"/admin/messages/{msg.message_id}", headers=auth()).json()
    assert body["record"]["status"] == "queued" and body["history"]
    assert api.get("/admin/messages/nope", headers=auth()).status_code == 404


def test_an_operator_pauses_and_resumes_a_carrier_over_http(api) -> None:
    paused = api.post(
        "/admin/carriers/Verizon Wireless/pause",
        headers=auth(),
        json={"reason": "30007 spike", "by": "maria"},
    )
    assert paused.json() == {"name": "verizon:*", "state": "paused", "changed": True}
    listed = {c["name"]: c for c in api.get("/admin/carriers", headers=auth()).json()["carriers"]}
    assert listed["verizon:*"]["by"] == "maria"
    resumed = api.post("/admin/carriers/verizon/resume", headers=auth(), json={"campaign": None})
    assert resumed.json()["state"] == "closed"


@pytest.mark.parametrize("body", [b"[1]", b"{not json", b'{"reason": ""}', b"x" * 20000])
def test_a_bad_pause_request_is_refused_with_a_reason(api, body: bytes) -> None:
    response = api.post("/admin/carriers/att/pause", headers=auth(), content=body)
    assert response.status_code in (400, 413)
    assert response.json()["error"]


def test_metrics_report_breaker_states_and_counts(api, client, ns, queue) -> None:
    Producer(client, ns=ns, queue=queue).enqueue(
        {"to": "+12015550123", "body": "hi", "campaign": "m"}
    )
    api.post("/admin/carriers/att/pause", headers=auth(), json={"reason": "test"})
    text = api.get("/metrics", headers=auth()).text
    assert 'sendq_breaker_state{kind="carrier",name="att:*"} 3.0' in text
    assert 'sendq_texts{campaign="m",status="queued"} 1.0' in text
