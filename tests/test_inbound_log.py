"""The inbound log: each text a person sends, linked to the text it answers."""

from __future__ import annotations

import time

import pytest
import redis
import redis.asyncio as aioredis

from worker import keys
from worker.errors import InvalidInput, InvalidNumber
from worker.inbound_log import SEEN_TTL_S, AsyncInboundLog, InboundLog
from worker.providers.base import InboundText

PERSON = "+12025550143"
OURS = "+12015550100"


@pytest.fixture
def log(client: redis.Redis, ns: str) -> InboundLog:
    return InboundLog(client, ns)


@pytest.fixture
def alog(aclient: aioredis.Redis, ns: str) -> AsyncInboundLog:
    return AsyncInboundLog(aclient, ns)


def text(
    pmid: str = "SM1",
    body: str = "STOP",
    sender: str = PERSON,
    received_ms: int | None = None,
    carrier: str | None = None,
) -> InboundText:
    return InboundText(pmid, sender, OURS, body, received_ms=received_ms, carrier=carrier)


def sent_earlier(client: redis.Redis, ns: str, msg_id: str, campaign: str, carrier: str) -> None:
    """What the send path leaves behind: the record, and the last text to this person."""
    client.hset(keys.message(msg_id, ns), mapping={"campaign": campaign, "carrier": carrier})
    client.set(keys.last_outbound(OURS, PERSON, ns), msg_id)


def test_a_reply_is_stored_with_who_sent_it_to_which_number_and_when(log: InboundLog) -> None:
    rec = log.record("twilio", text(received_ms=1_700_000_000_000, carrier="verizon"))
    assert (rec.sender, rec.to, rec.body, rec.provider) == (PERSON, OURS, "STOP", "twilio")
    assert rec.provider_message_id == "SM1" and rec.received_ms > 1_700_000_000_000
    assert rec.provider_received_ms == 1_700_000_000_000
    assert not rec.duplicate
    assert log.get(rec.id) == rec


def test_a_reply_is_linked_to_the_last_text_sent_to_that_person_from_that_number(
    log: InboundLog, client: redis.Redis, ns: str
) -> None:
    sent_earlier(client, ns, "m-42", "gotv", "att")
    rec = log.record("telnyx", text(carrier="AT&T Wireless"))
    assert (rec.message_id, rec.campaign, rec.carrier) == ("m-42", "gotv", "att")


def test_a_reply_to_no_text_of_ours_is_stored_unlinked(log: InboundLog) -> None:
    rec = log.record("plivo", text(carrier="T-Mobile"))
    assert (rec.message_id, rec.campaign) == (None, None)
    assert rec.carrier == "T-Mobile"  # what the webhook said, where no text says otherwise


def test_a_reply_from_another_person_is_not_linked_to_this_persons_text(
    log: InboundLog, client: redis.Redis, ns: str
) -> None:
    sent_earlier(client, ns, "m-42", "gotv", "att")
    rec = log.record("twilio", text(sender="+12025550187"))
    assert rec.message_id is None


def test_a_provider_retrying_its_webhook_gets_the_first_record_back(
    log: InboundLog, client: redis.Redis, ns: str
) -> None:
    first = log.record("twilio", text("SM-retry"))
    again = log.record("twilio", text("SM-retry"))
    assert again.duplicate and again.id == first.id
    assert client.zcard(keys.inbound_index(ns)) == 1
    ttl = int(client.ttl(keys.inbound_seen("twilio", "SM-retry", ns)))
    assert 0 < ttl <= SEEN_TTL_S


def test_the_same_message_id_from_another_provider_is_another_text(log: InboundLog) -> None:
    a = log.record("twilio", text("ID-1"))
    b = log.record("vonage", text("ID-1"))
    assert a.id != b.id and not b.duplicate


def test_a_text_without_a_provider_message_id_is_never_taken_for_a_retry(
    log: InboundLog,
) -> None:
    a, b = log.record("vonage", text("")), log.record("vonage", text(""))
    assert a.id != b.id and not b.duplicate


def test_what_was_done_is_marked_on_the_record(log: InboundLog) -> None:
    rec = log.record("twilio", text())
    assert log.mark(rec.id, kind="stop", action="opted_out", rule="opt-out keyword")
    got = log.get(rec.id)
    assert got is not None and (got.kind, got.action) == ("stop", "opted_out")
    assert got.marks["rule"] == "opt-out keyword"
    assert got.as_dict()["kind"] == "stop" and got.as_dict()["from"] == PERSON


def test_marking_an_unknown_id_leaves_no_stub_record(
    log: InboundLog, client: redis.Redis, ns: str
) -> None:
    assert log.mark("nope", kind="stop") is False
    assert not client.exists(keys.inbound("nope", ns))
    assert log.get("nope") is None


def test_marking_cannot_rewrite_what_was_received(log: InboundLog) -> None:
    rec = log.record("twilio", text())
    with pytest.raises(InvalidInput, match="body are recorded, not marked"):
        log.mark(rec.id, body="something else")
    with pytest.raises(InvalidInput, match="at least one field"):
        log.mark(rec.id)


def test_the_list_is_newest_first_and_pages_by_time(log: InboundLog) -> None:
    ids = []
    for n in range(5):
        ids.append(log.record("twilio", text(f"SM-{n}", body=f"reply {n}")).id)
        time.sleep(0.002)  # each in a millisecond of its own: paging is by time
    newest = log.list(limit=2)
    assert [r.id for r in newest] == ids[:-3:-1]
    older = log.list(limit=10, before_ms=newest[-1].received_ms)
    assert [r.id for r in older] == ids[-3::-1]


def test_the_list_of_one_person_shows_only_their_texts(log: InboundLog) -> None:
    log.record("twilio", text("A", sender="+12025550187"))
    mine = log.record("twilio", text("B"))
    assert [r.id for r in log.list(number=PERSON)] == [mine.id]


async def test_the_webhooks_record_in_one_round_trip_and_dedupe_the_same(
    alog: AsyncInboundLog, aclient: aioredis.Redis, ns: str, log: InboundLog
) -> None:
    await aclient.hset(keys.message("m-7", ns), mapping={"campaign": "c", "carrier": "verizon"})
    await aclient.set(keys.last_outbound(OURS, PERSON, ns), "m-7")
    await alog.record("bandwidth", text("bw-0"))  # the script is loaded from here on
    sentinel = f"end-of-{ns}"
    commands: list[str] = []
    async with aclient.monitor() as monitor:
        rec = await alog.record("bandwidth", text("bw-1"))
        await aclient.echo(sentinel)
        async for seen in monitor.listen():
            if sentinel in seen["command"]:
                break
            # Commands the script itself makes are shown too, from "lua".
            if seen["client_type"] != "lua" and ns in seen["command"]:
                commands.append(seen["command"])
    assert len(commands) == 1 and commands[0].startswith("EVALSHA")
    assert (rec.message_id, rec.campaign, rec.carrier) == ("m-7", "c", "verizon")
    again = await alog.record("bandwidth", text("bw-1"))
    assert again.duplicate and again.id == rec.id
    assert await alog.mark(rec.id, kind="stop")
    got = await alog.get(rec.id)
    assert got is not None and got.kind == "stop" and log.get(rec.id) == got


# -- bad input ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["sender", "to"])
def test_a_text_with_a_number_not_in_e164_is_refused_and_nothing_is_stored(
    log: InboundLog, client: redis.Redis, ns: str, field: str
) -> None:
    bad = {"sender": PERSON, "to": OURS, field: "202-555-0143"}
    with pytest.raises(InvalidNumber, match="not in E"):
        log.record("twilio", InboundText("SM1", bad["sender"], bad["to"], "hi"))
    assert client.zcard(keys.inbound_index(ns)) == 0


def test_a_text_without_its_provider_is_refused(log: InboundLog) -> None:
    with pytest.raises(InvalidInput, match="provider"):
        log.record("", text())


@pytest.mark.parametrize("limit", [0, -1])
def test_a_list_limit_below_one_is_refused(log: InboundLog, limit: int) -> None:
    with pytest.raises(InvalidInput, match="limit: must be at least 1"):
        log.list(limit=limit)


def test_a_list_by_a_number_not_in_e164_is_refused(log: InboundLog) -> None:
    with pytest.raises(InvalidNumber):
        log.list(number="2025550143")
