"""Handsets reply through each provider's inbound webhook, signed, and the simulator counts.

Real HTTP on loopback: a simulator started for this module, and a small
starlette app under uvicorn standing in for sendq's webhook route, which records
every request and answers as a test tells it (2xx, 403, 503 once, or late). Each
provider's inbound request is checked with that provider's official SDK where
one can (twilio's RequestValidator, telnyx's ed25519 verifier and unwrap,
plivo's validate_v3_signature, vonage-http-client's check_signature,
bandwidth-sdk's Basic header and InboundCallback model).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import telnyx
import telnyx.lib  # applies the SDK's ed25519 ``unwrap``
import uvicorn
from bandwidth import Configuration
from bandwidth.models.inbound_callback import InboundCallback
from plivo.utils.signature_v3 import validate_v3_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from telnyx.lib import webhook_verification as telnyx_webhooks
from twilio.request_validator import RequestValidator, get_signature_algorithm
from typer import Typer
from typer.testing import CliRunner
from vonage_http_client.auth import Auth as VonageAuth

from tests.test_simulator_providers import CREDENTIALS, SEED
from tests.test_simulator_sdk_contract import (
    SDK_CLIENTS,
    SDK_VONAGE_METHODS,
    TWILIO_SID,
    VONAGE_KEY,
)
from worker.simulator.carriers import number_for
from worker.simulator.cli import simulator_command
from worker.simulator.client import SimulatorClient
from worker.simulator.config import SimulatorConfig, telnyx_public_key
from worker.simulator.server import SimulatorHandle, start_in_thread

SENDER = "+12015550100"
TOKEN = CREDENTIALS["auth_token"]
PROVIDERS = list(SDK_CLIENTS)
# GSM-7 breakers, a form's & and =, and a question mark: each must survive each shape.
ODD_BODY = "Zoë & co: 100% = yes? 👍"
CONFIRMATION = "You're unsubscribed from Rally texts. Reply START to resubscribe."


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def url_path(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    def form(self) -> dict[str, str]:
        raw = self.query if self.method == "GET" else self.body.decode()
        return dict(parse_qsl(raw, keep_blank_values=True))


@dataclass
class Webhook:
    """sendq's webhook route, played by a starlette app: records, then answers as told."""

    hits: list[Hit] = field(default_factory=list)
    # Answer 403 to a request whose body or query contains one of these.
    refuse: set[str] = field(default_factory=set)
    # Answer 503 to the first N inbound requests.
    fail_first: int = 0
    # Hold the answer to a request containing this for ``hold_s``.
    hold: str | None = None
    hold_s: float = 0.0
    url: str = ""

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        hit = Hit(
            request.method,
            request.url.path,
            request.url.query,
            {k.lower(): v for k, v in request.headers.items()},
            body,
            time.time(),
        )
        self.hits.append(hit)
        seen = body.decode("utf-8", "replace") + hit.query
        if self.hold is not None and self.hold in seen:
            await asyncio.sleep(self.hold_s)
        if "/inbound" in hit.path and self.fail_first > 0:
            self.fail_first -= 1
            return Response(status_code=503)
        if any(word in seen for word in self.refuse):
            return Response(status_code=403)
        return Response(status_code=200)

    def inbound(self, provider: str | None = None) -> list[Hit]:
        return [
            h
            for h in list(self.hits)
            if h.path.endswith("/inbound") and (provider is None or f"/{provider}/" in h.path)
        ]

    def wait_inbound(self, provider: str, n: int = 1, timeout_s: float = 10.0) -> list[Hit]:
        deadline = time.monotonic() + timeout_s
        while len(found := self.inbound(provider)) < n:
            assert time.monotonic() < deadline, f"{n} inbound posts for {provider} never came"
            time.sleep(0.02)
        return found


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    app = Starlette(routes=[Route("/{path:path}", hook.handle, methods=["GET", "POST"])])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    hook.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield hook
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def handle(webhook: Webhook) -> Iterator[SimulatorHandle]:
    config = SimulatorConfig(
        port=0,
        callback_urls={p: f"{webhook.url}/webhooks/{p}/status" for p in ("telnyx", "bandwidth")}
        | {"vonage": f"{webhook.url}/webhooks/vonage/status"},
        receipt_retry_base_s=0.05,
        **CREDENTIALS,
    )
    with start_in_thread(config) as h:
        yield h


@pytest.fixture
def sim(handle: SimulatorHandle, webhook: Webhook) -> Iterator[SimulatorClient]:
    webhook.hits.clear()
    webhook.refuse.clear()
    webhook.fail_first, webhook.hold, webhook.hold_s = 0, None, 0.0
    with SimulatorClient(handle.url) as client:
        client.play({})
        yield client


def play(sim: SimulatorClient, **replies: Any) -> None:
    sim.play({"replies": {"delay_s": 0, **replies}})


def send(sim: SimulatorClient, webhook: Webhook, provider: str, to: str, body: str) -> str:
    """A text sent with the provider's own SDK; its receipt URL is on the webhook app."""
    sdk_send, _ = SDK_CLIENTS[provider]
    return sdk_send(sim.url, to, body, f"{webhook.url}/webhooks/{provider}/status?mid=m1")


def twilio(http: httpx.Client, sim: SimulatorClient, webhook: Webhook, to: str, body: str) -> None:
    form = {
        "To": to,
        "From": SENDER,
        "Body": body,
        "StatusCallback": f"{webhook.url}/webhooks/twilio/status?mid=x",
    }
    path = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    http.post(sim.url + path, data=form, auth=(TWILIO_SID, TOKEN)).raise_for_status()


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:8]}"


# -- every provider's inbound shape, signed ------------------------------------------------


def check_twilio(url: str, hit: Hit, handset: str) -> None:
    params = hit.form()
    assert RequestValidator(TOKEN).validate(url, params, hit.headers["x-twilio-signature"])
    assert "x-twilio-webhooks-signature-settings" not in hit.headers
    assert (params["From"], params["To"], params["Body"]) == (handset, SENDER, ODD_BODY)
    assert params["SmsStatus"] == "received" and params["NumMedia"] == "0"
    assert params["MessageSid"].startswith("SM") and params["SmsSid"] == params["MessageSid"]
    assert params["AccountSid"] == TWILIO_SID and params["ApiVersion"] == "2010-04-01"


def check_telnyx(url: str, hit: Hit, handset: str) -> None:
    public_key = telnyx_public_key(SEED)
    telnyx_webhooks.verify_webhook_signature(hit.body, hit.headers, public_key)
    client = telnyx.Telnyx(api_key="unused", public_key=public_key)
    event = client.webhooks.unwrap(hit.body.decode(), headers=hit.headers)
    data = getattr(event, "data", None)
    assert data is not None and data.event_type == "message.received"
    payload = data.payload
    assert payload is not None and payload.direction == "inbound" and payload.type == "SMS"
    assert payload.from_ is not None and payload.from_.phone_number == handset
    assert payload.to is not None and payload.to[0].phone_number == SENDER
    assert payload.text == ODD_BODY and payload.id and payload.received_at is not None
    with pytest.raises(telnyx_webhooks.WebhookVerificationError):
        telnyx_webhooks.verify_webhook_signature(
            hit.body.replace(b"inbound", b"outbound"), hit.headers, public_key
        )


def check_bandwidth(url: str, hit: Hit, handset: str) -> None:
    user, password = (
        CREDENTIALS["bandwidth_callback_username"],
        CREDENTIALS["bandwidth_callback_password"],
    )
    expected = Configuration(username=user, password=password).get_basic_auth_token()
    assert hit.headers["authorization"] == expected
    [event] = json.loads(hit.body)
    callback = InboundCallback.from_dict(event)
    assert callback is not None and callback.type == "message-received"
    assert callback.to == SENDER and callback.message.direction == "in"
    assert callback.message.var_from == handset and callback.message.text == ODD_BODY
    assert callback.message.to == [SENDER] and callback.message.application_id == "a1b2c3"


def check_plivo(url: str, hit: Hit, handset: str) -> None:
    params = hit.form()
    nonce = hit.headers["x-plivo-signature-v3-nonce"]
    token = CREDENTIALS["plivo_auth_token"]
    for header in ("x-plivo-signature-v3", "x-plivo-signature-ma-v3"):
        assert validate_v3_signature("POST", url, nonce, token, hit.headers[header], params)
    assert not validate_v3_signature(
        "POST", url, nonce, token, hit.headers["x-plivo-signature-v3"], {**params, "Text": "x"}
    )
    assert (params["From"], params["To"]) == (handset[1:], SENDER[1:])
    assert (params["Text"], params["Type"]) == (ODD_BODY, "sms") and params["MessageUUID"]


def check_vonage(url: str, hit: Hit, handset: str) -> None:
    assert hit.method == "GET" and not hit.body  # Vonage's default for inbound SMS
    params = hit.form()
    method = SDK_VONAGE_METHODS[CREDENTIALS["vonage_signature_method"]]
    secret = CREDENTIALS["vonage_signature_secret"]
    auth = VonageAuth(api_key=VONAGE_KEY, signature_secret=secret, signature_method=method)
    assert auth.check_signature(dict(params))
    assert not auth.check_signature({**params, "text": "STOP"})
    assert (params["msisdn"], params["to"]) == (handset[1:], SENDER[1:])
    assert (params["text"], params["type"], params["keyword"]) == (ODD_BODY, "unicode", "ZOË")
    assert len(params["messageId"]) == 16 and params["message-timestamp"]


CHECKS: dict[str, Callable[[str, Hit, str], None]] = {
    "twilio": check_twilio,
    "telnyx": check_telnyx,
    "bandwidth": check_bandwidth,
    "plivo": check_plivo,
    "vonage": check_vonage,
}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_reply_reaches_the_inbound_route_in_the_providers_shape_and_signed(
    sim: SimulatorClient, webhook: Webhook, provider: str
) -> None:
    play(sim, rate=1, kinds={"ordinary": 1}, bodies={"ordinary": [ODD_BODY]})
    handset = number_for("tmobile", 300 + PROVIDERS.index(provider))
    sid = send(sim, webhook, provider, handset, unique(provider))
    [hit] = webhook.wait_inbound(provider)
    assert hit.path == f"/webhooks/{provider}/inbound"
    CHECKS[provider](webhook.url + hit.path, hit, handset)
    sim.settle_replies()
    [reply] = sim.handset(handset)["replies"]
    assert (reply["provider"], reply["in_reply_to"], reply["from"]) == (provider, sid, handset)
    assert reply["state"] == "answered" and reply["status"] == 200 and reply["tries"] == 1
    assert reply["posted_ms"] is not None and reply["answered_ms"] is not None
    assert reply["due_ms"] <= reply["posted_ms"] <= reply["answered_ms"]


@pytest.mark.parametrize("method", ["POST", "POST-JSON"])
def test_vonage_inbound_can_be_a_form_or_a_json_post(
    sim: SimulatorClient, webhook: Webhook, method: str
) -> None:
    play(sim, rate=1, kinds={"stop": 1}, bodies={"stop": ["Stop."]}, vonage_method=method)
    handset = number_for("att", 310)
    send(sim, webhook, "vonage", handset, unique("vonage"))
    [hit] = webhook.wait_inbound("vonage")
    assert hit.method == "POST" and not hit.query
    params = json.loads(hit.body) if method == "POST-JSON" else hit.form()
    expected = "application/json" if method == "POST-JSON" else "application/x-www-form-urlencoded"
    assert hit.headers["content-type"] == expected
    auth = VonageAuth(
        api_key=VONAGE_KEY,
        signature_secret=CREDENTIALS["vonage_signature_secret"],
        signature_method=SDK_VONAGE_METHODS[CREDENTIALS["vonage_signature_method"]],
    )
    assert auth.check_signature(dict(params))
    assert (params["text"], params["keyword"], params["type"]) == ("Stop.", "STOP.", "text")


@pytest.mark.parametrize("algorithm", ["HMAC_SHA256", "HMAC_SHA1"])
def test_a_twilio_shared_key_signs_replies_and_receipts_and_the_header_names_it(
    sim: SimulatorClient, webhook: Webhook, algorithm: str
) -> None:
    key = {"key_id": "webhooks_sharedkey_sim7", "secret": "shared-s3cret", "algorithm": algorithm}
    sim.play({"replies": {"rate": 1, "delay_s": 0}, "signing": {"twilio": key}})
    handset = number_for("verizon", 320)
    send(sim, webhook, "twilio", handset, unique("shared"))
    [reply] = webhook.wait_inbound("twilio")
    deadline = time.monotonic() + 10
    while not (receipts := [h for h in webhook.hits if h.path.endswith("/twilio/status")]):
        assert time.monotonic() < deadline, "no receipt"
        time.sleep(0.02)
    for hit in (reply, receipts[0]):
        settings = hit.headers["x-twilio-webhooks-signature-settings"]
        assert settings == f"key=webhooks_sharedkey_sim7,algorithm={algorithm}"
        assert get_signature_algorithm(settings) == algorithm
        url, signature = webhook.url + hit.url_path, hit.headers["x-twilio-signature"]
        assert RequestValidator("shared-s3cret").validate(url, hit.form(), signature, algorithm)
        assert not RequestValidator(TOKEN).validate(url, hit.form(), signature)


def test_replies_go_to_the_scenarios_inbound_url_when_it_names_one(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    play(sim, rate=1, inbound_url=f"{webhook.url}/hooks/{{provider}}/sms")
    send(sim, webhook, "plivo", number_for("att", 330), unique("custom url"))
    deadline = time.monotonic() + 10
    while not [h for h in webhook.hits if h.path == "/hooks/plivo/sms"]:
        assert time.monotonic() < deadline, "the reply never reached the named URL"
        time.sleep(0.02)


# -- who replies --------------------------------------------------------------------------


def test_the_reply_rate_is_honoured_with_a_seed_and_a_rerun_repeats_it(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    # Replies due in ten minutes: counted when decided, dropped by the reset, never posted.
    texts = [(number_for("att", 400 + i), f"rate check {i}") for i in range(300)]

    def run() -> set[str]:
        sim.play({"replies": {"rate": 0.2, "seed": 11, "delay_s": 600}})
        with httpx.Client() as http:
            for to, body in texts:
                twilio(http, sim, webhook, to, body)
        return {r["from"] for r in sim.replies(detail=True)["replies"]}

    first, again = run(), run()
    assert first == again
    assert 30 <= len(first) <= 90  # 60 expected; over 4 standard deviations either side
    summary = sim.replies()
    assert summary["texts_considered"] == 300 and summary["pending"] == len(first)
    sim.reset()
    assert sim.replies()["replies"] == 0 and not webhook.inbound()


def test_a_text_its_carrier_filtered_never_gets_a_reply(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    sim.play(
        {
            "replies": {"rate": 1, "delay_s": 0},
            "rules": [{"carrier": "verizon", "error": "carrier_block"}],
        }
    )
    with httpx.Client() as http:
        for i in range(5):
            twilio(http, sim, webhook, number_for("verizon", 500 + i), f"filtered {i}")
        twilio(http, sim, webhook, number_for("att", 500), "delivered")
    summary = sim.settle_replies()
    assert summary["replies"] == 1 and set(summary["by_carrier"]) == {"att"}
    filtered = sim.handset(number_for("verizon", 500))
    assert not filtered["texts"] and len(filtered["filtered"]) == 1 and not filtered["replies"]


def test_a_person_who_replied_stop_never_replies_again(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    play(sim, rate=1, kinds={"stop": 1})
    handset = number_for("tmobile", 600)
    with httpx.Client() as http:
        for i in range(4):
            twilio(http, sim, webhook, handset, f"campaign text {i}")
    sim.settle_replies()
    [reply] = sim.handset(handset)["replies"]
    assert reply["kind"] == "stop" and len(webhook.inbound("twilio")) == 1


def test_an_ordinary_replier_answers_each_text_but_a_doubled_text_only_once(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    play(sim, rate=1, kinds={"ordinary": 1})
    handset = number_for("att", 610)
    with httpx.Client() as http:
        for body in ("first", "second", "second"):  # the last is a double
            twilio(http, sim, webhook, handset, body)
    sim.settle_replies()
    assert [r["in_reply_to"] for r in sim.handset(handset)["replies"]] == [
        t["sid"] for t in sim.handset(handset)["texts"][:2]
    ]


def test_per_handset_a_person_decides_once_on_their_first_text(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    play(sim, rate=1, per="handset", kinds={"ordinary": 1})
    handset = number_for("att", 620)
    with httpx.Client() as http:
        for i in range(3):
            twilio(http, sim, webhook, handset, f"text {i}")
    summary = sim.settle_replies()
    assert summary["texts_considered"] == 1 and summary["replies"] == 1


def test_a_reply_sendq_answered_503_is_retried_until_it_is_taken(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    webhook.fail_first = 1
    play(sim, rate=1)
    handset = number_for("att", 630)
    send(sim, webhook, "telnyx", handset, unique("retried"))
    webhook.wait_inbound("telnyx", 2)
    sim.settle_replies()
    [reply] = sim.handset(handset)["replies"]
    assert (reply["state"], reply["tries"], reply["status"]) == ("answered", 2, 200)
    attempts = [json.loads(h.body)["meta"]["attempt"] for h in webhook.inbound("telnyx")]
    assert attempts == [1, 2]


# -- opt-out violations -------------------------------------------------------------------


def test_texts_after_a_stop_was_taken_are_violations_and_one_confirmation_is_not(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    play(sim, rate=1, kinds={"stop": 1}, stop_confirmations=["You're unsubscribed"])
    handset = number_for("tmobile", 700)
    with httpx.Client() as http:
        twilio(http, sim, webhook, handset, "Rally at 5")
        sim.settle_replies()
        for body in (CONFIRMATION, "Rally at 6", CONFIRMATION):
            twilio(http, sim, webhook, handset, body)
    view = sim.handset(handset)
    assert view["opted_out_ms"] == view["replies"][0]["answered_ms"]
    assert view["confirmations"] == 1
    assert [v["body"] for v in view["violations"]] == ["Rally at 6", CONFIRMATION]
    assert all(v["after_ms"] > 0 and v["opt_out_kind"] == "stop" for v in view["violations"])
    summary = sim.replies()
    assert (summary["violations"], summary["violations_by_kind"]) == (2, {"possible": 0, "stop": 2})
    assert summary["opted_out"] == 1 and summary["confirmations"] == 1
    assert [v["sid"] for v in summary["violating_texts"]] == [v["sid"] for v in view["violations"]]


def test_a_text_already_with_the_provider_when_the_stop_was_taken_is_allowed(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    # sendq's webhook takes a second to answer the STOP: a text sent meanwhile is allowed.
    webhook.hold, webhook.hold_s = "inbound-hold", 1.0
    play(sim, rate=1, kinds={"stop": 1}, bodies={"stop": ["STOP inbound-hold"]})
    handset = number_for("att", 710)
    with httpx.Client() as http:
        twilio(http, sim, webhook, handset, "first")
        webhook.wait_inbound("twilio")
        twilio(http, sim, webhook, handset, "sent while the STOP was being taken")
        sim.settle_replies()
        twilio(http, sim, webhook, handset, "sent after")
    assert [v["body"] for v in sim.handset(handset)["violations"]] == ["sent after"]


def test_a_filtered_text_after_a_stop_is_still_a_violation(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    sim.play(
        {
            "replies": {"rate": 1, "delay_s": 0, "kinds": {"possible": 1}},
            "rules": [
                {"carrier": "verizon", "body_contains": "filtered", "error": "carrier_block"}
            ],
        }
    )
    handset = number_for("verizon", 720)
    with httpx.Client() as http:
        twilio(http, sim, webhook, handset, "hello")
        sim.settle_replies()
        twilio(http, sim, webhook, handset, "filtered after the opt-out")
    [violation] = sim.violations()
    assert violation["filtered"] and violation["opt_out_kind"] == "possible"
    assert sim.replies()["violations_by_kind"] == {"possible": 1, "stop": 0}


def test_a_stop_sendq_refused_opts_nobody_out(sim: SimulatorClient, webhook: Webhook) -> None:
    webhook.refuse.add("refused-stop")
    play(sim, rate=1, kinds={"stop": 1}, bodies={"stop": ["STOP refused-stop"]})
    handset = number_for("att", 730)
    with httpx.Client() as http:
        twilio(http, sim, webhook, handset, "one")
        summary = sim.settle_replies()
        twilio(http, sim, webhook, handset, "two")
    assert summary["refused"] == 1 and summary["opt_outs_unanswered"] == 1
    view = sim.handset(handset)
    assert view["opted_out_ms"] is None and not view["violations"]
    assert view["replies"][0]["status"] == 403 and len(webhook.inbound()) == 1


# -- counting -----------------------------------------------------------------------------


def test_each_text_a_handset_got_carries_its_receive_time_and_sender(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    handset = number_for("att", 800)
    before = time.time() * 1000
    with httpx.Client() as http:
        twilio(http, sim, webhook, handset, "what time did I arrive?")
    after = time.time() * 1000
    [text] = sim.handset(handset)["texts"]
    assert before - 1 <= text["received_ms"] <= after + 1
    assert text["accepted_ms"] == text["received_ms"] and text["from"] == SENDER
    listed = {h["number"]: h for h in sim.handsets()}
    assert listed[handset]["texts"] == [text]
    assert sim.handsets(replied=True) == []


def test_the_report_and_the_cli_show_replies_by_kind_and_the_violations(
    sim: SimulatorClient, webhook: Webhook
) -> None:
    play(sim, rate=1, kinds={"stop": 1, "help": 1}, seed=3)
    with httpx.Client() as http:
        for i in range(6):
            twilio(http, sim, webhook, number_for("tmobile", 810 + i), f"report {i}")
    summary = sim.settle_replies()
    assert sim.report()["replies"]["replies"] == summary["replies"] == 6
    by_kind = summary["by_kind"]
    assert by_kind["stop"]["answered"] + by_kind["help"]["answered"] == 6
    app = Typer()
    app.command()(simulator_command)
    result = CliRunner().invoke(app, ["--report", "--url", sim.url])
    assert result.exit_code == 0, result.output
    assert "handsets' replies" in result.output and "opt-out violations: 0" in result.output


def test_bad_reply_filters_on_the_http_route_are_refused_with_the_reason(
    sim: SimulatorClient,
) -> None:
    answer = httpx.get(f"{sim.url}/sim/replies", params={"kind": "stpo"})
    assert answer.status_code == 400 and "kind: expected one of" in answer.json()["error"]
    refused = httpx.post(f"{sim.url}/sim/scenario", json={"replies": {"rate": "often"}})
    assert refused.status_code == 400 and "replies.rate" in refused.json()["error"]
