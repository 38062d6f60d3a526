"""The admin API: nothing without the token; with it, records, carriers and metrics."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest
import redis
import uvicorn
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.test_alerts import alert_receiver, hanging_url
from worker.admin import DEFAULT_MAX_BODY_BYTES, Admin
from worker.breaker import Breakers, Policy
from worker.enqueue import Producer
from worker.holds import Holds
from worker.operations import Operations
from worker.store import Store

TOKEN = "admin-secret-token"
ROUTES = [
    ("GET", "/admin/messages/x"),
    ("GET", "/admin/carriers"),
    ("POST", "/admin/carriers/verizon/pause"),
    ("POST", "/admin/carriers/verizon/resume"),
    ("GET", "/metrics"),
]


def operations(client: redis.Redis, ns: str, alert_urls: Sequence[str] = ()) -> Operations:
    """As worker.wiring builds them, in the test's own namespace."""
    return Operations(
        carriers=Breakers(client, "carrier", Policy(), ns),
        providers=Breakers(client, "provider", Policy(), ns),
        holds=Holds(client, ns),
        alert_urls=alert_urls,
        provider_names=["twilio"],
    )


def admin(redis_url: str, ns: str, alert_urls: Sequence[str] = ()) -> Admin:
    client = redis.Redis.from_url(redis_url)
    return Admin(operations(client, ns, alert_urls), Store(client, ns))


def starlette_app(
    redis_url: str, ns: str, token: str | None, alert_urls: Sequence[str] = ()
) -> Starlette:
    # The admin routes alone: the webhook app mounts exactly these (Admin.routes).
    return Starlette(routes=admin(redis_url, ns, alert_urls).routes(token))


def app(redis_url: str, ns: str, token: str | None, alert_urls: Sequence[str] = ()) -> TestClient:
    return TestClient(starlette_app(redis_url, ns, token, alert_urls))


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


def test_an_operators_pause_and_resume_over_http_post_alerts(redis_url, ns) -> None:
    with alert_receiver() as receiver, app(redis_url, ns, TOKEN, [receiver.url]) as api:
        body = {"reason": "30007 spike", "by": "maria", "campaign": "gotv"}
        assert api.post("/admin/carriers/verizon/pause", headers=auth(), json=body).is_success
        # Pausing a paused carrier changes nothing and alerts nobody.
        assert not api.post("/admin/carriers/verizon/pause", headers=auth(), json=body).json()[
            "changed"
        ]
        api.post("/admin/carriers/verizon/resume", headers=auth(), json={"campaign": "gotv"})
        alerts = receiver.wait_for(3, timeout_s=2.0)
    assert [a["text"] for a in alerts] == [
        "sendq: carrier verizon, campaign gotv is now paused (was closed), by maria: 30007 spike",
        "sendq: carrier verizon, campaign gotv is now closed (was paused), by admin-api: "
        "resumed by operator",
    ]
    assert alerts[0]["source"] == "admin-api"


def test_a_dead_alert_url_never_delays_the_admin_answer(redis_url, ns) -> None:
    with hanging_url() as dead, app(redis_url, ns, TOKEN, [dead]) as api:
        started = time.monotonic()
        paused = api.post("/admin/carriers/att/pause", headers=auth(), json={"reason": "x"})
        assert paused.json()["state"] == "paused"
        assert time.monotonic() - started < 1.0


def test_a_pause_made_by_another_process_shows_in_metrics(api, client, ns) -> None:
    # As ``sendq carriers pause`` and ``sendq providers pause`` do: straight to Redis.
    Breakers(client, "carrier", Policy(), ns).pause("tmobile:m", who="maria", reason="x")
    Breakers(client, "provider", Policy(), ns).pause("vonage", who="maria", reason="x")
    text = api.get("/metrics", headers=auth()).text
    assert 'sendq_breaker_state{kind="carrier",name="tmobile:m"} 3.0' in text
    assert 'sendq_breaker_state{kind="provider",name="vonage"} 3.0' in text
    Breakers(client, "carrier", Policy(), ns).resume("tmobile:m", who="maria")
    text = api.get("/metrics", headers=auth()).text
    assert 'sendq_breaker_state{kind="carrier",name="tmobile:m"} 0.0' in text


@contextmanager
def served(application: Starlette) -> Iterator[int]:
    """The app under uvicorn on loopback, for requests a test client cannot make."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(application, log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


def _read_answer(conn: socket.socket) -> str:
    """Until the JSON body's end: headers and body may come in separate segments."""
    data = b""
    while not data.endswith(b"}"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_a_body_declared_too_large_is_refused_before_it_is_sent(redis_url, ns) -> None:
    with (
        served(starlette_app(redis_url, ns, TOKEN)) as port,
        socket.create_connection(("127.0.0.1", port), timeout=5) as conn,
    ):
        # Headers only: were the body read first, this would wait for 10 MB forever.
        conn.sendall(
            b"POST /admin/carriers/att/pause HTTP/1.1\r\nhost: x\r\n"
            + f"authorization: Bearer {TOKEN}\r\n".encode()
            + b"content-type: application/json\r\ncontent-length: 10000000\r\n\r\n"
        )
        answer = _read_answer(conn)
    assert answer.startswith("HTTP/1.1 413")
    assert f"larger than the admin API's limit of {DEFAULT_MAX_BODY_BYTES} bytes" in answer


def test_a_chunked_body_over_the_limit_is_refused(api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"reason": "'
        for _ in range(DEFAULT_MAX_BODY_BYTES // 1024 + 1):
            yield b"x" * 1024
        yield b'"}'

    response = api.post("/admin/carriers/att/pause", headers=auth(), content=chunks())
    assert response.status_code == 413
    assert "limit" in response.json()["error"]
    carriers = api.get("/admin/carriers", headers=auth()).json()["carriers"]
    assert all(c["state"] != "paused" for c in carriers)


def test_the_webhook_app_serves_the_admin_routes_behind_the_token(redis_url) -> None:
    # As `sendq webhooks` builds it: the composition root's app, with Admin mounted.
    from worker.settings import load_settings
    from worker.wiring import Root

    settings = load_settings(redis_url=redis_url, admin_token=TOKEN, twilio_auth_token="t")
    with TestClient(Root(settings).webhook_app()) as hooks:
        assert hooks.get("/admin/carriers").status_code == 401
        listed = hooks.get("/admin/carriers", headers=auth())
        assert listed.status_code == 200 and "carriers" in listed.json()
        assert hooks.get("/metrics", headers=auth()).status_code == 200
