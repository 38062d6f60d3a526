"""Delivery receipts: signed, idempotent, and never undoing a final state."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from tests import parts
from worker.enqueue import Producer
from worker.providers.twilio import TwilioProvider
from worker.sendpath.ledger import attempt_fields
from worker.store import AsyncStore, Store
from worker.webhooks import DEFAULT_MAX_BODY_BYTES, create_app

TOKEN = "receipt-token"
PUBLIC = "https://hooks.example.org"
GOOD = "+12015550123"


def receipt_app(redis_url: str, ns: str, **extra: Any) -> TestClient:
    """The webhook app for Twilio receipts (``extra``: more of create_app's parts,
    made from the app's own client: ``watch=lambda aclient: ...``)."""
    import redis.asyncio as aioredis

    provider = TwilioProvider(
        account_sid="AC" + "2" * 32, auth_token=TOKEN, base_url="http://127.0.0.1:9"
    )
    aclient = aioredis.Redis.from_url(redis_url)
    app = create_app(
        store=AsyncStore(aclient, ns),
        providers={"twilio": provider},
        public_url=PUBLIC,
        feed=parts.feed(aclient, ns),
        **{name: make(aclient) for name, make in extra.items()},
    )
    return TestClient(app, base_url=PUBLIC)


@pytest.fixture
def hooks(redis_url: str, ns: str) -> Iterator[TestClient]:
    with receipt_app(redis_url, ns) as client:
        yield client


def sending(client: redis.Redis, ns: str, queue: str, provider: str = "twilio") -> str:
    """A text a worker is sending: claimed, with attempt 1 via ``provider`` on its record."""
    msg = Producer(client, ns=ns, queue=queue).enqueue({"to": GOOD, "body": "hi"})
    fields = {"lease_id": "w1", **attempt_fields(1, provider, "+12015550100", 1)}
    Store(client, ns).transition(
        msg.message_id, ["queued"], "sending", reason="test", fields=fields
    )
    return msg.message_id


def post(
    hooks: TestClient,
    msg_id: str,
    status: str,
    *,
    code: str = "",
    token: str = TOKEN,
    tamper: dict[str, str] | None = None,
    sign: bool = True,
    attempt: int | None = None,
):
    path = f"/webhooks/twilio/status?mid={msg_id}" + (f"&att={attempt}" if attempt else "")
    params = {"MessageSid": "SM" + "a" * 32, "MessageStatus": status, "AccountSid": "AC1"}
    if code:
        params["ErrorCode"] = code
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if sign:
        # Signed by Twilio's own SDK, not the adapter: a bug in the adapter's scheme shows.
        headers["x-twilio-signature"] = RequestValidator(token).compute_signature(
            PUBLIC + path, params
        )
    body = urlencode({**params, **(tamper or {})})
    return hooks.post(path, content=body, headers=headers)


def status(client: redis.Redis, ns: str, msg_id: str) -> str:
    record = Store(client, ns).get(msg_id)
    assert record is not None
    return record["status"]


def test_a_signed_receipt_marks_the_text_delivered(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue)
    assert post(hooks, msg_id, "delivered").status_code == 200
    assert status(client, ns, msg_id) == "delivered"


def test_an_undelivered_receipt_keeps_its_error_code(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue)
    assert post(hooks, msg_id, "undelivered", code="30007").json()["applied"]
    record = Store(client, ns).get(msg_id)
    assert record is not None
    assert (record["status"], record["receipt_error_code"], record["receipt_category"]) == (
        "undelivered",
        "30007",
        "carrier_block",
    )


@pytest.mark.parametrize(
    ("why", "kwargs"),
    [
        ("unsigned", {"sign": False}),
        ("wrong token", {"token": "not-the-token"}),
        ("tampered status", {"tamper": {"MessageStatus": "undelivered"}}),
        ("added field", {"tamper": {"ErrorCode": "30007"}}),
    ],
)
def test_a_forged_receipt_is_refused_and_changes_nothing(
    hooks, client, ns, queue, why, kwargs
) -> None:
    msg_id = sending(client, ns, queue)
    response = post(hooks, msg_id, "delivered", **kwargs)
    assert response.status_code == 403, why
    assert status(client, ns, msg_id) == "sending"


def test_a_receipt_signed_for_another_message_is_refused(hooks, client, ns, queue) -> None:
    mine, other = sending(client, ns, queue), sending(client, ns, queue)
    path = f"/webhooks/twilio/status?mid={mine}"
    params = {"MessageSid": "SM1", "MessageStatus": "undelivered"}
    sig = RequestValidator(TOKEN).compute_signature(PUBLIC + path, params)
    response = hooks.post(
        f"/webhooks/twilio/status?mid={other}",
        content=urlencode(params),
        headers={"content-type": "application/x-www-form-urlencoded", "x-twilio-signature": sig},
    )
    assert response.status_code == 403
    assert status(client, ns, other) == "sending"


def test_duplicate_and_late_receipts_never_undo_a_final_state(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue)
    assert post(hooks, msg_id, "delivered").json()["applied"]
    again = post(hooks, msg_id, "delivered").json()
    late_sent = post(hooks, msg_id, "sent").json()
    contrary = post(hooks, msg_id, "undelivered", code="30007").json()
    assert not again["applied"] and not late_sent["applied"] and not contrary["applied"]
    assert status(client, ns, msg_id) == "delivered"
    assert len([h for h in Store(client, ns).history(msg_id) if h["to"] == "delivered"]) == 1


def test_a_receipt_before_the_worker_records_sent_still_lands(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue)
    assert post(hooks, msg_id, "delivered").json()["applied"]
    late = Store(client, ns).transition(msg_id, ["sending"], "sent", reason="worker, late")
    assert not late.ok and status(client, ns, msg_id) == "delivered"


def test_a_receipt_for_an_unknown_message_is_acknowledged_and_ignored(hooks) -> None:
    response = post(hooks, "no-such-message", "delivered")
    assert response.status_code == 200 and response.json()["applied"] is False


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"\xff\xfe garbage", "application/x-www-form-urlencoded", 403),
        (b'{"MessageStatus": "delivered"}', "application/json", 403),
        (b"x" * (DEFAULT_MAX_BODY_BYTES + 1), "application/x-www-form-urlencoded", 413),
    ],
)
def test_garbage_is_refused_with_a_4xx(hooks, body: bytes, content_type: str, code: int) -> None:
    response = hooks.post(
        "/webhooks/twilio/status?mid=x", content=body, headers={"content-type": content_type}
    )
    assert response.status_code == code
    assert "error" in response.json()


def test_a_signed_but_malformed_receipt_is_a_400(hooks) -> None:
    path = "/webhooks/twilio/status?mid=x"
    params = {"Foo": "bar"}
    response = hooks.post(
        path,
        content=urlencode(params),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-twilio-signature": RequestValidator(TOKEN).compute_signature(PUBLIC + path, params),
        },
    )
    assert response.status_code == 400
    assert "MessageSid" in response.json()["error"]


def test_an_unknown_provider_is_a_404(hooks) -> None:
    assert hooks.post("/webhooks/nope/status", content=b"").status_code == 404


def test_health_answers(hooks) -> None:
    assert hooks.get("/healthz").json() == {"ok": True}


def test_carrier_block_receipts_open_the_carrier_breaker(redis_url, client, ns, queue) -> None:
    import redis.asyncio as aioredis

    from worker.breaker import AsyncBreakers, Breakers, Policy

    policy = Policy(consecutive=3, min_calls=100)
    aclient = aioredis.Redis.from_url(redis_url)
    provider = TwilioProvider(
        account_sid="AC" + "2" * 32, auth_token=TOKEN, base_url="http://127.0.0.1:9"
    )
    app = create_app(
        store=AsyncStore(aclient, ns),
        providers={"twilio": provider},
        public_url=PUBLIC,
        feed=parts.feed(aclient, ns, AsyncBreakers(aclient, "carrier", policy, ns, cache_ms=0)),
    )
    ids = []
    for _ in range(4):
        msg_id = sending(client, ns, queue)
        client.hset(f"{ns}:msg:{msg_id}", mapping={"carrier": "verizon", "campaign": "gotv"})
        ids.append(msg_id)
    with TestClient(app, base_url=PUBLIC) as hooks:
        for msg_id in ids[:3]:
            post(hooks, msg_id, "undelivered", code="30007")
            post(hooks, msg_id, "undelivered", code="30007")  # a duplicate never counts twice
        status = Breakers(client, "carrier", policy, ns).status("verizon:gotv")
        assert status["state"] == "open"
        assert "3 failures in a row, last 30007" in status["why"]
