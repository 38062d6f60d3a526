"""One text's watch events stay in one pair, and a text ended unconfirmed stays ended.

Real Redis and the real webhook app, receipts signed by Twilio's own SDK.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from starlette.testclient import TestClient

from tests.test_webhooks import hooks, post, receipt_app, sending, status  # noqa: F401
from worker import keys
from worker.overdue import OVERDUE_COUNTER, ReceiptTimeouts
from worker.store import AsyncStore, Store, now_ms
from worker.watch import Layout, WatchCounters, WatchCountersSync, WatchSettings
from worker.watch.model import attempt_carrier

LAYOUT = Layout.of(WatchSettings())


@pytest.fixture
def watched(redis_url: str, ns: str) -> Iterator[TestClient]:
    """The webhook app with the watch's counters, as the composition root builds it."""
    with receipt_app(redis_url, ns, watch=lambda a: WatchCounters(a, LAYOUT, ns)) as client:
        yield client


def totals(client: redis.Redis, ns: str) -> dict[str, dict[str, int]]:
    snap = WatchCountersSync(client, LAYOUT, ns).read(now_ms())
    out: dict[str, dict[str, int]] = {}
    for pair in snap.pairs:
        mine = out.setdefault(pair.carrier, {})
        for counts in pair.buckets.values():
            for name in ("sent", "delivered", "undelivered", "late"):
                mine[name] = mine.get(name, 0) + getattr(counts, name)
    return out


async def test_a_receipt_is_counted_under_the_carrier_its_attempt_was_sent_under(
    watched, aclient, client, ns, queue
) -> None:
    """Sent as "unknown" (no look-up), then a receipt or a port names Verizon: the
    receipt lands beside its text's send, not in a Verizon cohort that never sent it."""
    msg_id = sending(client, ns, queue)
    record_key = keys.message(msg_id, ns)
    client.hset(record_key, mapping={"carrier": "unknown", "a1:carrier": "unknown"})
    sent_ms = now_ms()
    client.hset(record_key, "a1:at_ms", str(sent_ms))
    counters = WatchCounters(aclient, LAYOUT, ns)
    await counters.sent_once(msg_id, 1, "unknown", "default", sent_ms=sent_ms)  # as sent
    client.hset(record_key, "carrier", "verizon")  # what a receipt naming it writes
    assert post(watched, msg_id, "delivered").json()["applied"]
    counted = totals(client, ns)
    assert counted["unknown"] == {"sent": 1, "delivered": 1, "undelivered": 0, "late": 0}
    assert counted.get("verizon", {}).get("delivered", 0) == 0


def test_a_record_from_before_the_attempts_carrier_uses_its_own() -> None:
    assert attempt_carrier({"carrier": "att"}, 1) == "att"
    assert attempt_carrier({"carrier": "att", "a2:carrier": "unknown"}, 2) == "unknown"
    assert attempt_carrier({}, 1) == "unknown"


async def test_a_late_sent_receipt_does_not_reopen_a_text_the_timeout_ended(
    hooks,  # noqa: F811
    aclient,
    client,
    ns,
    queue,
) -> None:
    msg_id = sending(client, ns, queue)
    assert post(hooks, msg_id, "sent").status_code == 200  # handed on: now awaited
    sweeper = ReceiptTimeouts(aclient, timeout_s=600, ns=ns)
    assert len(await sweeper.sweep(now_ms() + 601_000)) == 1
    assert status(client, ns, msg_id) == "unconfirmed"
    assert not post(hooks, msg_id, "sent").json()["applied"]  # a retried "sent"
    assert status(client, ns, msg_id) == "unconfirmed"
    assert client.zscore(keys.awaiting(ns), msg_id) is None
    assert await sweeper.sweep(now_ms() + 1_300_000) == []
    assert Store(client, ns).counters().get(OVERDUE_COUNTER) == 1
    # A final receipt still settles it, and the history shows both.
    assert post(hooks, msg_id, "delivered").json()["applied"]
    assert status(client, ns, msg_id) == "delivered"
    moves = [(h["from"], h["to"]) for h in Store(client, ns).history(msg_id)]
    assert moves[-2:] == [("sent", "unconfirmed"), ("unconfirmed", "delivered")]


async def test_a_text_whose_answer_was_lost_is_counted_sent_by_its_receipt_once(
    watched, client, ns, queue
) -> None:
    """A dropped connection: the send path never heard the provider accept it, so only
    the receipt can say it went out; a duplicate receipt does not say it twice."""
    msg_id = sending(client, ns, queue)
    client.hset(keys.message(msg_id, ns), mapping={"a1:at_ms": str(now_ms())})
    Store(client, ns).transition(msg_id, ["sending"], "unconfirmed", reason="connection lost")
    assert post(watched, msg_id, "delivered").json()["applied"]
    assert not post(watched, msg_id, "delivered").json()["applied"]
    assert totals(client, ns)["unknown"] == {"sent": 1, "delivered": 1, "undelivered": 0, "late": 0}


async def test_a_send_the_send_path_counted_is_not_counted_again_by_its_receipt(
    watched, aclient, client, ns, queue
) -> None:
    msg_id = sending(client, ns, queue)
    sent_ms = now_ms()
    client.hset(keys.message(msg_id, ns), mapping={"a1:at_ms": str(sent_ms)})
    counters = WatchCounters(aclient, LAYOUT, ns)
    assert await counters.sent_once(msg_id, 1, "unknown", "default", sent_ms=sent_ms)
    assert not await counters.sent_once(msg_id, 1, "unknown", "default", sent_ms=sent_ms)
    assert post(watched, msg_id, "sent").json()["applied"]
    assert post(watched, msg_id, "delivered").json()["applied"]
    assert totals(client, ns)["unknown"]["sent"] == 1


async def test_a_final_receipt_counts_its_send_once_and_its_outcome_in_the_same_call(
    aclient, client, ns, queue
) -> None:
    msg_id = sending(client, ns, queue)
    sent_ms = now_ms()
    client.hset(keys.message(msg_id, ns), mapping={"a1:at_ms": str(sent_ms)})
    counters = WatchCounters(aclient, LAYOUT, ns)
    assert await counters.sent_once(msg_id, 1, "att", "default", sent_ms=sent_ms, final=False)
    assert totals(client, ns)["att"] == {"sent": 1, "delivered": 0, "undelivered": 1, "late": 0}
    # A second final receipt for the same attempt: its outcome counts, its send does not.
    assert not await counters.sent_once(msg_id, 1, "att", "default", sent_ms=sent_ms, final=True)
    assert totals(client, ns)["att"] == {"sent": 1, "delivered": 1, "undelivered": 1, "late": 0}


async def test_a_send_is_never_counted_for_a_record_that_is_gone(aclient, client, ns) -> None:
    counters = WatchCounters(aclient, LAYOUT, ns)
    assert not await counters.sent_once("no-such-text", 1, "att", "default", sent_ms=now_ms())
    assert not client.exists(keys.message("no-such-text", ns))  # no stub left behind


async def test_a_receipt_renaming_an_older_records_carrier_keeps_the_one_it_was_sent_under(
    aclient, client, ns, queue
) -> None:
    """Records from before a{n}:carrier: the receipt keeps the carrier it was sent under."""
    msg_id = sending(client, ns, queue)
    client.hset(keys.message(msg_id, ns), "carrier", "att")
    done = await AsyncStore(aclient, ns).apply_receipt(
        msg_id,
        provider="twilio",
        attempt=1,
        provider_message_id="",
        status="delivered",
        reason="receipt",
        fields={"carrier": "verizon"},
    )
    assert done.applied and done.record is not None
    assert done.record["carrier"] == "verizon"
    assert attempt_carrier(done.record, 1) == "att"
