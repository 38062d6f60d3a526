"""Bandwidth batches status events of many texts into one callback, and retries
the whole callback unless it is answered 2xx. One malformed event must neither
void the others nor make Bandwidth send them again: the readable events are
applied, the bad one is refused by its index and reason, and the answer is 200."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from starlette.testclient import TestClient

from tests import parts
from tests.test_webhooks import sending, status
from tests.test_webhooks_forgeries import (
    BW_API_PASSWORD,
    BW_API_USER,
    BW_PASSWORD,
    BW_USER,
    OFFLINE,
    PUBLIC,
    bw_post,
)
from worker.errors import InvalidWebhook
from worker.providers.bandwidth import BandwidthProvider
from worker.providers.base import WebhookRequest
from worker.store import AsyncStore
from worker.webhooks import create_app


def offline_bandwidth() -> BandwidthProvider:
    return BandwidthProvider(
        account_id="9900000",
        application_id="93de2206-9669-4e07-948d-329f4b722ee2",
        username=BW_API_USER,
        password=BW_API_PASSWORD,
        callback_username=BW_USER,
        callback_password=BW_PASSWORD,
        base_url=OFFLINE,
    )


@pytest.fixture
def hooks(redis_url: str, ns: str) -> Iterator[TestClient]:
    aclient = aioredis.Redis.from_url(redis_url)
    app = create_app(
        store=AsyncStore(aclient, ns),
        providers={"bandwidth": offline_bandwidth()},
        public_url=PUBLIC,
        feed=parts.feed(aclient, ns),
    )
    with TestClient(app, base_url=PUBLIC) as client:
        yield client


def event(tag: str, kind: str = "message-delivered", **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "type": kind,
        "time": "2024-11-28T17:46:02Z",
        "description": "ok",
        "to": "+12015550123",
        "carrierName": "AT&T Wireless",
        "message": {"id": f"bw-{tag}", "direction": "out", "tag": tag},
    }
    return {**found, **extra}


def batch(*events: object) -> bytes:
    return json.dumps(list(events)).encode()


NO_MESSAGE_ID = {"type": "message-delivered", "message": {"tag": "x"}}


def test_a_malformed_event_is_refused_and_the_rest_of_the_batch_applied(
    hooks, client, ns, queue
) -> None:
    first, last = sending(client, ns, queue, "bandwidth"), sending(client, ns, queue, "bandwidth")
    body = batch(event(first), NO_MESSAGE_ID, event(last, "message-failed", errorCode=4470))

    response = bw_post(hooks, body)

    assert response.status_code == 200, "a 4xx would make Bandwidth resend the good events"
    assert response.json()["receipts"] == [
        {"index": 0, "applied": True, "status": "delivered"},
        {"index": 1, "error": "message.id is required"},
        {"index": 2, "applied": True, "status": "undelivered"},
    ]
    assert (status(client, ns, first), status(client, ns, last)) == ("delivered", "undelivered")


def test_a_refused_event_is_named_by_its_place_in_the_posted_array(
    hooks, client, ns, queue
) -> None:
    msg_id = sending(client, ns, queue, "bandwidth")
    inbound = event("in", "message-received")
    body = batch(inbound, "not an event", event(msg_id), {"message": {"id": "m"}})

    results = bw_post(hooks, body).json()["events"]

    # The inbound event (with no "from": unreadable) and each receipt event are each
    # applied or refused on their own.
    assert results[0]["index"] == 0 and "error" in results[0]
    assert results[1:] == [
        {"index": 1, "error": "the event is not an object"},
        {"index": 2, "applied": True, "status": "delivered"},
        {"index": 3, "error": "an event has no type"},
    ]


def test_a_batch_with_no_readable_event_is_refused_naming_each(hooks) -> None:
    response = bw_post(hooks, batch(NO_MESSAGE_ID, 7))

    assert response.status_code == 400
    assert response.json()["error"] == (
        "no event could be applied: event 0: message.id is required; "
        "event 1: the event is not an object"
    )


def test_a_lone_malformed_event_is_still_a_400(hooks) -> None:
    response = bw_post(hooks, batch(NO_MESSAGE_ID))

    assert response.status_code == 400
    assert response.json() == {"error": "message.id is required"}


def test_an_event_for_an_unknown_text_does_not_spoil_the_batch(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue, "bandwidth")

    response = bw_post(hooks, batch(event("no-such-text"), event(msg_id)))

    assert response.status_code == 200
    assert [r.get("applied") for r in response.json()["receipts"]] == [False, True]
    assert status(client, ns, msg_id) == "delivered"


def callback(body: bytes) -> WebhookRequest:
    return WebhookRequest(url="https://x/", headers={}, body=body, content_type="application/json")


def test_the_provider_reads_each_event_on_its_own() -> None:
    parsed = offline_bandwidth().parse_events(callback(batch(event("a"), NO_MESSAGE_ID)))

    assert [index for index, _ in parsed] == [0, 1]
    assert parsed[0][1] == offline_bandwidth().parse_receipt(callback(batch(event("a"))))
    assert isinstance(parsed[1][1], InvalidWebhook)


@pytest.mark.parametrize("body", [b"[]", b"{", b'[{"type": "message-received"}]'])
def test_a_callback_that_cannot_be_read_as_a_whole_still_raises(body: bytes) -> None:
    with pytest.raises(InvalidWebhook):
        offline_bandwidth().parse_events(callback(body))


def test_parse_receipts_stays_strict_for_callers_that_want_all_or_nothing() -> None:
    with pytest.raises(InvalidWebhook, match=r"message\.id is required"):
        offline_bandwidth().parse_receipts(callback(batch(event("a"), NO_MESSAGE_ID)))
