"""Telnyx receipts at the webhook app: ed25519-signed, and every forgery changes nothing."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from starlette.testclient import TestClient

from tests import parts
from tests.test_webhooks import GOOD, sending, status
from worker import keys
from worker.callbacks import status_url
from worker.carriers import CarrierResolver
from worker.providers.telnyx import TelnyxProvider
from worker.store import AsyncStore
from worker.webhooks import create_app

PUBLIC = "https://hooks.example.org"
KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()


def public_b64(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@pytest.fixture
def hooks(redis_url: str, ns: str) -> Iterator[TestClient]:
    import redis.asyncio as aioredis

    provider = TelnyxProvider(api_key="KEYtest", public_key=public_b64(KEY))
    aclient = aioredis.Redis.from_url(redis_url)
    app = create_app(
        store=AsyncStore(aclient, ns),
        providers={"telnyx": provider},
        public_url=PUBLIC,
        feed=parts.feed(aclient, ns, carriers=CarrierResolver(aclient, ns=ns)),
    )
    with TestClient(app, base_url=PUBLIC) as client:
        yield client


def receipt(
    msg_id: str | None,
    status_: str = "delivered",
    code: str = "",
    *,
    attempt: int = 1,
) -> bytes:
    """A message.finalized event whose payload echoes the webhook_url sendq sent:
    the only place Telnyx signs sendq's message id and attempt number."""
    payload = {
        "id": "40318f2e-0000-4000-8000-000000000001",
        "to": [{"phone_number": "+12015550123", "status": status_, "carrier": "AT&T Wireless"}],
        "errors": [{"code": code, "title": "spam"}] if code else [],
    }
    if msg_id is not None:
        payload["webhook_url"] = status_url(PUBLIC, "telnyx", msg_id, attempt)
    event = {"event_type": "message.finalized", "id": "e1", "payload": payload}
    return json.dumps({"data": {**event, "record_type": "event"}, "meta": {}}).encode()


def post(
    hooks: TestClient,
    msg_id: str,
    body: bytes,
    *,
    key: Ed25519PrivateKey = KEY,
    timestamp: int | None = None,
    signed_body: bytes | None = None,
    drop: str = "",
    attempt: int = 1,
):
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(f"{ts}|".encode() + (body if signed_body is None else signed_body))
    headers = {
        "content-type": "application/json",
        "telnyx-timestamp": ts,
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
    }
    headers.pop(drop, None)
    url = status_url(PUBLIC, "telnyx", msg_id, attempt)
    return hooks.post(url.removeprefix(PUBLIC), content=body, headers=headers)


def test_a_signed_telnyx_receipt_marks_the_text_delivered(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue, "telnyx")
    assert post(hooks, msg_id, receipt(msg_id)).status_code < 300
    assert status(client, ns, msg_id) == "delivered"
    # Telnyx names the carrier; the record keeps sendq's key for it, as its breaker does.
    assert client.hget(keys.message(msg_id, ns), "carrier") == b"att"


def test_the_carrier_a_receipt_names_is_what_the_next_text_to_that_number_uses(
    hooks, client, ns, queue
) -> None:
    client.set(keys.carrier(GOOD, ns), "verizon")  # an old lookup; the number has ported
    msg_id = sending(client, ns, queue, "telnyx")
    assert post(hooks, msg_id, receipt(msg_id)).status_code < 300
    assert client.get(keys.carrier(GOOD, ns)) == b"att"
    assert client.ttl(keys.carrier(GOOD, ns)) > 0


def test_a_forged_receipt_teaches_nothing_about_the_carrier(hooks, client, ns, queue) -> None:
    client.set(keys.carrier(GOOD, ns), "verizon")
    msg_id = sending(client, ns, queue, "telnyx")
    assert post(hooks, msg_id, receipt(msg_id), key=OTHER_KEY).status_code == 403
    assert client.get(keys.carrier(GOOD, ns)) == b"verizon"


def test_a_signed_carrier_block_keeps_telnyxs_code(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue, "telnyx")
    assert post(hooks, msg_id, receipt(msg_id, "delivery_failed", "40002")).status_code < 300
    assert status(client, ns, msg_id) == "undelivered"


FORGERIES = {
    "tampered body": lambda mid: {"signed_body": receipt(mid, "delivery_failed", "40002")},
    "wrong key": lambda mid: {"key": OTHER_KEY},
    "replayed (old timestamp)": lambda mid: {"timestamp": int(time.time()) - 3600},
    "timestamp from the future": lambda mid: {"timestamp": int(time.time()) + 3600},
    "no signature": lambda mid: {"drop": "telnyx-signature-ed25519"},
    "no timestamp": lambda mid: {"drop": "telnyx-timestamp"},
}


@pytest.mark.parametrize("how", FORGERIES)
def test_a_forged_telnyx_receipt_is_refused_and_changes_nothing(
    hooks, client: redis.Redis, ns, queue, how: str
) -> None:
    msg_id = sending(client, ns, queue, "telnyx")
    response = post(hooks, msg_id, receipt(msg_id), **FORGERIES[how](msg_id))
    assert 400 <= response.status_code < 500
    assert status(client, ns, msg_id) == "sending"


def test_a_telnyx_receipt_for_another_message_is_refused(hooks, client, ns, queue) -> None:
    mine, other = sending(client, ns, queue, "telnyx"), sending(client, ns, queue, "telnyx")
    response = post(hooks, mine, receipt(other))
    assert 400 <= response.status_code < 500
    assert (status(client, ns, mine), status(client, ns, other)) == ("sending", "sending")


def test_a_receipt_whose_signed_payload_names_no_text_is_refused_whatever_its_url(
    hooks, client, ns, queue
) -> None:
    # The URL is not signed: a genuine receipt for any text, posted to a URL
    # naming this one, must not settle it.
    msg_id = sending(client, ns, queue, "telnyx")
    response = post(hooks, msg_id, receipt(None))
    assert response.status_code == 400
    assert "message id" in response.json()["error"]
    assert status(client, ns, msg_id) == "sending"


def test_a_receipt_posted_to_a_url_naming_another_attempt_is_refused(
    hooks, client, ns, queue
) -> None:
    msg_id = sending(client, ns, queue, "telnyx")
    response = post(hooks, msg_id, receipt(msg_id, attempt=1), attempt=2)
    assert response.status_code == 400
    assert "att" in response.json()["error"]
    assert status(client, ns, msg_id) == "sending"
