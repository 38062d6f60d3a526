"""People write back: inbound texts at the webhook, and what each one does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
import redis.asyncio as aioredis
from starlette.testclient import TestClient
from twilio.request_validator import RequestValidator

from tests import parts
from worker.hearing import Hearing, Orgs, Reading, Replies, ReplyOrder
from worker.inbound_log import AsyncInboundLog, InboundLog
from worker.optouts import AsyncOptoutList, OptoutList
from worker.producer import Campaigns, Producer
from worker.providers.twilio import TwilioProvider
from worker.sendpath.ledger import attempt_fields
from worker.store import AsyncStore, Store
from worker.webhooks import create_app

TOKEN = "inbound-token"
PUBLIC = "https://hooks.example.org"
PERSON = "+12015550177"
OURS = "+12015550100"
SID = "AC" + "3" * 32


class Outbox:
    """The replies the app asked for, as the composition root would queue them."""

    def __init__(self) -> None:
        self.orders: list[ReplyOrder] = []

    async def __call__(self, order: ReplyOrder) -> str:
        self.orders.append(order)
        return f"reply-{len(self.orders)}"


@pytest.fixture
def outbox() -> Outbox:
    return Outbox()


def make_hooks(redis_url: str, ns: str, outbox: Outbox, possible: str) -> Iterator[TestClient]:
    provider = TwilioProvider(account_sid=SID, auth_token=TOKEN, base_url="http://127.0.0.1:9")
    aclient = aioredis.Redis.from_url(redis_url)
    hearing = Hearing(
        AsyncInboundLog(aclient, ns),
        AsyncOptoutList(aclient, ns),
        orgs=Orgs("acme", {"gotv": "acme", "beta-gotv": "beta"}, {OURS: ["acme", "beta"]}),
        reading=Reading(extra_stop=("ALTO",), possible=possible),
        replies=Replies(stop={"acme": "Acme: you're unsubscribed."}, help={"acme": "Acme help"}),
        send_reply=outbox,
    )
    app = create_app(
        store=AsyncStore(aclient, ns),
        providers={"twilio": provider},
        public_url=PUBLIC,
        feed=parts.feed(aclient, ns),
        hearing=hearing,
    )
    with TestClient(app, base_url=PUBLIC) as client:
        yield client


@pytest.fixture
def hooks(redis_url: str, ns: str, outbox: Outbox) -> Iterator[TestClient]:
    yield from make_hooks(redis_url, ns, outbox, "suppress")


@pytest.fixture
def flagging_hooks(redis_url: str, ns: str, outbox: Outbox) -> Iterator[TestClient]:
    yield from make_hooks(redis_url, ns, outbox, "flag")


def inbound(
    hooks: TestClient, body: str, *, sid: str = "SM1", sender: str = PERSON, sign: bool = True
) -> Any:
    form = {
        "MessageSid": sid,
        "AccountSid": SID,
        "From": sender,
        "To": OURS,
        "Body": body,
        "NumMedia": "0",
        "SmsStatus": "received",
    }
    path = "/webhooks/twilio/inbound"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if sign:
        headers["X-Twilio-Signature"] = RequestValidator(TOKEN).compute_signature(
            PUBLIC + path, form
        )
    return hooks.post(path, content=urlencode(form), headers=headers)


def sent_from_ours(client: redis.Redis, ns: str, queue: str, campaign: str) -> str:
    """A text of ``campaign`` to PERSON, attempted from OURS: what a reply links to."""
    producer = Producer(client, ns=ns, queue=queue, campaigns=Campaigns("acme", {"gotv": "acme"}))
    msg_id = producer.enqueue({"to": PERSON, "body": "hi", "campaign": campaign}).message_id
    store = Store(client, ns)
    fields = {"lease_id": "w1", **attempt_fields(1, "twilio", OURS, 1)}
    store.transition(msg_id, ["queued"], "sending", reason="test", fields=fields)
    client.set(f"{ns}:last:{OURS}:{PERSON}", msg_id)
    return msg_id


def test_a_stop_reaches_the_linked_campaigns_organisation_and_every_one_sharing_the_number(
    hooks, client, ns, queue, outbox
) -> None:
    msg_id = sent_from_ours(client, ns, queue, "gotv")
    answer = inbound(hooks, "Stop.")
    assert answer.status_code == 200, answer.text
    assert answer.json()["kind"] == "stop"
    optouts = OptoutList(client, ns)
    entry = optouts.entry("acme", PERSON)
    assert entry is not None and entry["source"] == "inbound"
    # The text it answered belongs to acme, but beta sends from that number too, and
    # the person cannot tell the two apart.
    assert optouts.is_opted_out("beta", PERSON)
    (record,) = InboundLog(client, ns).list(limit=10)
    assert record.message_id == msg_id and record.campaign == "gotv"
    assert entry["cause"]["inbound_id"] == record.id


def test_a_stop_is_confirmed_once_through_the_number_and_provider_it_came_to(
    hooks, client, ns, queue, outbox
) -> None:
    sent_from_ours(client, ns, queue, "gotv")
    inbound(hooks, "STOP", sid="SM1")
    inbound(hooks, "STOP", sid="SM1")  # Twilio posted it again
    inbound(hooks, "stop all", sid="SM2")  # a second STOP: already opted out
    (order,) = outbox.orders
    assert (order.to, order.sender, order.provider) == (PERSON, OURS, "twilio")
    assert order.body == "Acme: you're unsubscribed." and order.kind == "stop_confirmation"


def test_a_stop_that_answers_no_text_reaches_every_organisation_sending_from_the_number(
    hooks, client, ns
) -> None:
    inbound(hooks, "UNSUBSCRIBE")
    optouts = OptoutList(client, ns)
    assert optouts.is_opted_out("acme", PERSON) and optouts.is_opted_out("beta", PERSON)


def test_a_configured_keyword_in_another_language_is_a_stop(hooks, client, ns) -> None:
    assert inbound(hooks, "alto").json()["kind"] == "stop"
    assert OptoutList(client, ns).is_opted_out("acme", PERSON)


def test_start_from_the_person_opts_them_back_in(hooks, client, ns) -> None:
    inbound(hooks, "STOP", sid="SM1")
    answer = inbound(hooks, "Start", sid="SM2")
    assert answer.json()["action"] == "opted back in"
    assert not OptoutList(client, ns).is_opted_out("acme", PERSON)


def test_help_gets_the_organisations_help_reply(hooks, outbox) -> None:
    assert inbound(hooks, "help").json()["kind"] == "help"
    (order,) = outbox.orders
    assert order.kind == "help" and order.body == "Acme help"


def test_a_possible_opt_out_is_taken_as_one_by_default_without_a_confirmation(
    hooks, client, ns, outbox
) -> None:
    answer = inbound(hooks, "please stop texting me")
    assert answer.json()["kind"] == "possible"
    assert OptoutList(client, ns).is_opted_out("acme", PERSON)
    (record,) = InboundLog(client, ns).list(limit=10)
    assert record.kind == "possible"
    assert outbox.orders == []  # only a keyword STOP is confirmed


def test_with_possible_set_to_flag_a_possible_opt_out_is_only_listed(
    flagging_hooks, client, ns
) -> None:
    inbound(flagging_hooks, "wrong number")
    optouts = OptoutList(client, ns)
    assert not optouts.is_opted_out("acme", PERSON)
    assert [row["number"] for row in optouts.review("acme")] == [PERSON]


def test_an_ordinary_reply_is_recorded_and_changes_no_list(hooks, client, ns) -> None:
    answer = inbound(hooks, "Who is this?")
    assert answer.json() == {
        "applied": True,
        "id": answer.json()["id"],
        "kind": "none",
        "action": "recorded",
    }
    assert not OptoutList(client, ns).is_opted_out("acme", PERSON)
    assert InboundLog(client, ns).get(answer.json()["id"]) is not None


def test_an_unsigned_inbound_text_is_refused_and_changes_nothing(hooks, client, ns) -> None:
    answer = inbound(hooks, "STOP", sign=False)
    assert answer.status_code == 403
    assert not OptoutList(client, ns).is_opted_out("acme", PERSON)
    assert InboundLog(client, ns).list(limit=10) == []


def test_a_forged_inbound_text_is_refused(hooks, client, ns) -> None:
    form = {
        "MessageSid": "SM9",
        "From": PERSON,
        "To": OURS,
        "Body": "STOP",
        "SmsStatus": "received",
    }
    path = "/webhooks/twilio/inbound"
    signature = RequestValidator("not-the-token").compute_signature(PUBLIC + path, form)
    answer = hooks.post(
        path,
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert answer.status_code == 403
    assert not OptoutList(client, ns).is_opted_out("acme", PERSON)


def test_an_inbound_text_with_a_bad_number_is_a_400_and_changes_nothing(hooks, client, ns) -> None:
    answer = inbound(hooks, "STOP", sender="not-a-number")
    assert answer.status_code == 400
    assert "From" in answer.text or "number" in answer.text
    assert InboundLog(client, ns).list(limit=10) == []


def test_an_oversized_inbound_body_is_refused(hooks) -> None:
    answer = inbound(hooks, "x" * 70_000)
    assert answer.status_code == 413


def test_a_stop_to_a_number_sendq_does_not_know_reaches_every_organisation(
    hooks, client, ns
) -> None:
    form_to = "+12015550199"  # dropped from the configuration since, say
    form = {
        "MessageSid": "SMx",
        "AccountSid": SID,
        "From": PERSON,
        "To": form_to,
        "Body": "STOP",
        "NumMedia": "0",
        "SmsStatus": "received",
    }
    path = "/webhooks/twilio/inbound"
    signature = RequestValidator(TOKEN).compute_signature(PUBLIC + path, form)
    answer = hooks.post(
        path,
        content=urlencode(form),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        },
    )
    assert answer.status_code == 200
    optouts = OptoutList(client, ns)
    assert optouts.is_opted_out("acme", PERSON) and optouts.is_opted_out("beta", PERSON)


def test_a_bare_yes_does_not_lift_an_operators_opt_out_but_start_does(hooks, client, ns) -> None:
    from worker.optouts import Source, operator_cause

    optouts = OptoutList(client, ns)
    optouts.add("acme", PERSON, source=Source.OPERATOR, by="maria", cause=operator_cause("call"))
    inbound(hooks, "yes", sid="SM1")
    assert optouts.is_opted_out("acme", PERSON)
    inbound(hooks, "START", sid="SM2")
    assert not optouts.is_opted_out("acme", PERSON)
