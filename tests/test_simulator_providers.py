"""The simulator speaks all five providers as sendq's own adapters call them.

Real HTTP over loopback, no mocks: each test sends through worker.providers.<name>
to a simulator started for this module (every provider on a port of its own as
well), and receipts land on a small recording HTTP server, from which they are
fed back to the adapter as a WebhookRequest.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from worker.carriers import normalise
from worker.errors import ProviderTimeout, ProviderUncertain, ProviderUnreachable
from worker.models import Category, Status
from worker.providers.bandwidth import BandwidthProvider
from worker.providers.base import OutboundText, Provider, SendResult, WebhookRequest
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.providers.vonage import VonageProvider
from worker.simulator.carriers import number_for
from worker.simulator.config import SimulatorConfig, telnyx_public_key
from worker.simulator.scenario import ERROR_CATEGORIES, PROVIDERS
from worker.simulator.server import SimulatorHandle, start_in_thread

SEED = bytes(range(32))
# Long enough to observe a closed port on a busy machine, short enough to wait out.
REFUSE_WINDOW_S = 1.5
SENDER = "+12015550100"
CREDENTIALS: dict[str, Any] = {
    "auth_token": "t-twilio",
    "telnyx_api_key": "KEY-test-telnyx",
    "telnyx_seed": SEED,
    "bandwidth_username": "bw-user",
    "bandwidth_password": "t-bandwidth",
    "bandwidth_callback_username": "bw-hooks",
    "bandwidth_callback_password": "t-bandwidth-hooks",
    "plivo_auth_token": "t-plivo",
    "vonage_api_secret": "t-vonage",
    "vonage_signature_secret": "t-vonage-signing",
    "vonage_signature_method": "sha256hmac",
}
# What each provider can say in a receipt: Plivo and Vonage have no throttling code.
RECEIPT_CATEGORY: dict[tuple[str, str], Category] = {
    ("plivo", "throttled"): Category.TRANSIENT,
    ("vonage", "throttled"): Category.TRANSIENT,
}
# What each provider can say at send time: Plivo answers in words, Vonage has no
# status for a carrier block or an ambiguous refusal.
SYNC_CATEGORY: dict[tuple[str, str], Category] = {
    **{("plivo", c): Category.PERMANENT for c in ERROR_CATEGORIES if c != "transient"},
    ("vonage", "carrier_block"): Category.PERMANENT,
    ("vonage", "ambiguous"): Category.PERMANENT,
}


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A tiny HTTP server on loopback that records every request posted (or got) to it."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.hits.append(Hit(self.command, self.path, headers, body))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            do_POST = do_GET = _record

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, mark: str, timeout_s: float = 10.0) -> Hit:
        """The first request whose path or body carries ``mark`` (a test's message id)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for hit in list(self.hits):
                if mark in hit.path or mark.encode() in hit.body:
                    return hit
            time.sleep(0.02)
        raise AssertionError(f"no receipt for {mark} within {timeout_s} s")

    def webhook(self, hit: Hit) -> WebhookRequest:
        return WebhookRequest(
            url=f"{self.url}{hit.path}",
            headers=hit.headers,
            body=hit.body,
            content_type=hit.headers.get("content-type", ""),
        )


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def handle(receiver: Receiver) -> Iterator[SimulatorHandle]:
    config = SimulatorConfig(
        port=0,
        provider_ports={name: 0 for name in PROVIDERS},
        callback_urls={
            name: f"{receiver.url}/{name}" for name in ("telnyx", "bandwidth", "vonage")
        },
        **CREDENTIALS,
    )
    with start_in_thread(config) as h:
        yield h


@pytest.fixture
def psim(handle: SimulatorHandle) -> Iterator[SimulatorHandle]:
    httpx.post(f"{handle.url}/sim/scenario", json={}).raise_for_status()
    httpx.post(f"{handle.url}/sim/reset").raise_for_status()
    yield handle


def adapter(name: str, base_url: str, *, wrong_secret: bool = False) -> Provider:
    """sendq's own adapter for ``name``, configured as the simulator is."""
    bad = "not-the-secret" if wrong_secret else None
    c = CREDENTIALS
    if name == "twilio":
        return TwilioProvider(
            account_sid="AC" + "5" * 32, auth_token=bad or c["auth_token"], base_url=base_url
        )
    if name == "telnyx":
        return TelnyxProvider(
            api_key=bad or c["telnyx_api_key"],
            public_key=telnyx_public_key(SEED),
            base_url=base_url,
        )
    if name == "bandwidth":
        return BandwidthProvider(
            account_id="9900000",
            application_id="a1b2c3",
            username=c["bandwidth_username"],
            password=bad or c["bandwidth_password"],
            callback_username=c["bandwidth_callback_username"],
            callback_password=c["bandwidth_callback_password"],
            base_url=base_url,
        )
    if name == "plivo":
        return PlivoProvider(
            auth_id="MA" + "7" * 18, auth_token=bad or c["plivo_auth_token"], base_url=base_url
        )
    return VonageProvider(
        api_key="a1b2c3d4",
        api_secret=bad or c["vonage_api_secret"],
        signature_secret=c["vonage_signature_secret"],
        signature_method=c["vonage_signature_method"],
        base_url=base_url,
    )


def outbound(receiver: Receiver, provider: str, to: str, body: str | None = None) -> OutboundText:
    mid = f"{provider}-{uuid.uuid4().hex[:12]}"
    return OutboundText(
        message_id=mid,
        to=to,
        sender=SENDER,
        body=body or f"hello from {mid}",
        status_callback_url=f"{receiver.url}/{provider}?mid={mid}",
    )


async def send(
    name: str, base_url: str, text: OutboundText, *, wrong_secret: bool = False
) -> SendResult:
    provider = adapter(name, base_url, wrong_secret=wrong_secret)
    try:
        return await provider.send(text)
    finally:
        await provider.aclose()


def scenario(handle: SimulatorHandle, **data: object) -> None:
    httpx.post(f"{handle.url}/sim/scenario", json=data).raise_for_status()


def report(handle: SimulatorHandle) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{handle.url}/sim/report").json()
    return data


def wait_until(check: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the condition did not come true in time"
        time.sleep(0.02)


def connects(url: str) -> bool:
    """Whether a TCP connect to ``url`` succeeds; raises ConnectionRefusedError if refused."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=1):
        return True


def accepting(url: str) -> bool:
    try:
        return connects(url)
    except ConnectionRefusedError:
        return False
    except ConnectionResetError:  # caught in the listener's closing: neither state yet
        return False


# -- sending -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
@pytest.mark.parametrize("port", ["main", "own"])
async def test_a_send_through_sendqs_adapter_lands_in_the_inbox(
    psim: SimulatorHandle, receiver: Receiver, name: str, port: str
) -> None:
    base_url = psim.url if port == "main" else psim.provider_urls[name]
    text = outbound(receiver, name, number_for("att", PROVIDERS.index(name)))
    result = await send(name, base_url, text)
    assert result.ok and result.provider_message_id
    inbox = httpx.get(f"{psim.url}/sim/inbox/{text.to}").json()
    [arrived] = [t for t in inbox["texts"] if t["body"] == text.body]
    assert (arrived["provider"], arrived["sid"]) == (name, result.provider_message_id)
    assert report(psim)["by_provider"][name]["accepted"] == 1


@pytest.mark.parametrize("name", PROVIDERS)
async def test_wrong_credentials_are_refused(
    psim: SimulatorHandle, receiver: Receiver, name: str
) -> None:
    text = outbound(receiver, name, number_for("att", 40))
    result = await send(name, psim.url, text, wrong_secret=True)
    # An auth failure is the provider's fault, not the text's: sendq fails over.
    assert result.category is Category.TRANSIENT
    counts = report(psim)
    assert counts["by_provider"][name]["unauthorized"] == 1
    assert counts["delivered_to_handsets"] == 0


async def test_telnyx_names_the_carrier_raw_and_as_lookup_does(
    psim: SimulatorHandle, receiver: Receiver
) -> None:
    raw = {
        "att": "AT&T Wireless",
        "tmobile": "T-MOBILE USA, INC.",
        "verizon": "Cellco Partnership dba Verizon Wireless",
        "unknown": "PINNACLE REGIONAL WIRELESS",
    }
    telnyx = adapter("telnyx", psim.url)
    for carrier, name in raw.items():
        text = outbound(receiver, "telnyx", number_for(carrier, 41))
        result = await send("telnyx", psim.url, text)
        lookup = httpx.get(
            f"{psim.url}/v2/PhoneNumbers/{text.to}",
            params={"Fields": "line_type_intelligence"},
            auth=("AC" + "5" * 32, CREDENTIALS["auth_token"]),
        ).json()
        assert result.carrier == name
        assert normalise(name) == normalise(lookup["line_type_intelligence"]["carrier_name"])
        hook = receiver.webhook(receiver.wait_for(text.message_id))
        assert telnyx.parse_receipt(hook).carrier == name
    await telnyx.aclose()


async def test_the_same_text_through_two_providers_is_a_double(
    psim: SimulatorHandle, receiver: Receiver
) -> None:
    to = number_for("tmobile", 42)
    for name in ("twilio", "vonage"):
        assert (await send(name, psim.url, outbound(receiver, name, to, "same words"))).ok
    counts = report(psim)
    assert (counts["doubled"], counts["by_provider"]["vonage"]["doubled"]) == (1, 1)
    providers = [t["provider"] for t in httpx.get(f"{psim.url}/sim/inbox/{to}").json()["texts"]]
    assert providers == ["twilio", "vonage"]


# -- receipts --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_delivered_receipt_is_signed_and_parsed_by_sendqs_adapter(
    psim: SimulatorHandle, receiver: Receiver, name: str
) -> None:
    text = outbound(receiver, name, number_for("tmobile", 43))
    result = await send(name, psim.url, text)
    hook = receiver.webhook(receiver.wait_for(text.message_id))
    provider = adapter(name, psim.url)
    assert provider.verify_signature(hook)
    [receipt] = provider.parse_receipts(hook)
    assert (receipt.status, receipt.message_id) == (Status.DELIVERED, text.message_id)
    assert receipt.provider_message_id == result.provider_message_id
    await provider.aclose()


@pytest.mark.parametrize("category", ERROR_CATEGORIES)
@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_filtered_text_yields_a_receipt_in_the_right_category(
    psim: SimulatorHandle, receiver: Receiver, name: str, category: str
) -> None:
    scenario(psim, rules=[{"provider": name, "carrier": "verizon", "error": category}])
    text = outbound(receiver, name, number_for("verizon", 44))
    assert (await send(name, psim.url, text)).ok
    hook = receiver.wait_for(text.message_id)
    provider = adapter(name, psim.url)
    assert provider.verify_signature(receiver.webhook(hook))
    [receipt] = provider.parse_receipts(receiver.webhook(hook))
    await provider.aclose()
    expected = RECEIPT_CATEGORY.get((name, category), Category(category))
    assert (receipt.status, receipt.category) == (Status.UNDELIVERED, expected)
    assert report(psim)["by_provider"][name]["filtered"] == 1


async def test_a_tampered_receipt_fails_verification(
    psim: SimulatorHandle, receiver: Receiver
) -> None:
    text = outbound(receiver, "telnyx", number_for("att", 45))
    await send("telnyx", psim.url, text)
    hit = receiver.wait_for(text.message_id)
    forged = Hit(
        hit.method, hit.path, hit.headers, hit.body.replace(b"delivered", b"delivery_failed")
    )
    provider = adapter("telnyx", psim.url)
    assert not provider.verify_signature(receiver.webhook(forged))
    await provider.aclose()


@pytest.mark.parametrize("method", ["GET", "POST-JSON"])
async def test_vonage_dlrs_by_get_and_json_verify_too(receiver: Receiver, method: str) -> None:
    config = SimulatorConfig(port=0, vonage_dlr_method=method, **CREDENTIALS)
    with start_in_thread(config) as h:
        text = outbound(receiver, "vonage", number_for("att", 46))
        assert (await send("vonage", h.url, text)).ok
        hit = receiver.wait_for(text.message_id)
    provider = adapter("vonage", h.url)
    assert hit.method == ("GET" if method == "GET" else "POST")
    assert provider.verify_signature(receiver.webhook(hit))
    assert provider.parse_receipt(receiver.webhook(hit)).status == Status.DELIVERED
    await provider.aclose()


async def test_a_signed_vonage_send_is_accepted_and_a_bad_signature_refused(
    psim: SimulatorHandle, receiver: Receiver
) -> None:
    def signed(secret: str) -> VonageProvider:
        return VonageProvider(
            api_key="a1b2c3d4",
            signature_secret=secret,
            signature_method=CREDENTIALS["vonage_signature_method"],
            sign_requests=True,
            base_url=psim.url,
        )

    good, bad = signed(CREDENTIALS["vonage_signature_secret"]), signed("forged")
    assert (await good.send(outbound(receiver, "vonage", number_for("att", 47)))).ok
    refused = await bad.send(outbound(receiver, "vonage", number_for("att", 48)))
    assert (refused.category, refused.error_code) == (Category.TRANSIENT, "sms-14")
    await good.aclose()
    await bad.aclose()


# -- sync answers -----------------------------------------------------------------------------


@pytest.mark.parametrize("category", ERROR_CATEGORIES)
@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_sync_rule_answers_in_the_providers_terms(
    psim: SimulatorHandle, receiver: Receiver, name: str, category: str
) -> None:
    scenario(psim, rules=[{"provider": name, "error": category, "mode": "sync"}])
    result = await send(name, psim.url, outbound(receiver, name, number_for("att", 49)))
    assert result.category is SYNC_CATEGORY.get((name, category), Category(category))
    assert report(psim)["by_provider"][name]["rejected_sync"] == 1


@pytest.mark.parametrize("name", PROVIDERS)
async def test_an_invalid_number_is_refused_at_send_time(
    psim: SimulatorHandle, receiver: Receiver, name: str
) -> None:
    result = await send(name, psim.url, outbound(receiver, name, "+1999"))
    assert result.category in (Category.BAD_NUMBER, Category.PERMANENT)
    assert report(psim)["by_provider"][name]["rejected_invalid"] == 1


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
async def test_over_a_providers_own_mps_the_answer_is_throttled_with_a_delay(
    psim: SimulatorHandle, receiver: Receiver, name: str
) -> None:
    others = [p for p in PROVIDERS if p != name]
    scenario(psim, providers={name: {"account_mps": 1}})
    # Three sends cross at most one window boundary, so one meets a full window.
    results = [
        await send(name, psim.url, outbound(receiver, name, number_for("att", 50 + i)))
        for i in range(3)
    ]
    throttled = [r for r in results if r.category is Category.THROTTLED]
    assert throttled and all(r.retry_after_s and r.retry_after_s > 0 for r in throttled)
    # The limit is this provider's alone.
    other = others[0]
    burst = [
        await send(other, psim.url, outbound(receiver, other, number_for("att", 60 + i)))
        for i in range(3)
    ]
    assert all(r.ok for r in burst)
    assert report(psim)["by_provider"][name]["throttled_429"] == len(throttled)


async def test_telnyxs_429_carries_its_rate_limit_headers(psim: SimulatorHandle) -> None:
    scenario(psim, providers={"telnyx": {"number_mps": 1}})
    headers = {"Authorization": f"Bearer {CREDENTIALS['telnyx_api_key']}"}
    answers = [
        httpx.post(
            f"{psim.url}/v2/messages",
            json={"from": SENDER, "to": number_for("att", 70 + i), "text": "hi"},
            headers=headers,
        )
        for i in range(3)
    ]
    [limited, *_] = [a for a in answers if a.status_code == 429]
    assert limited.json()["errors"][0]["code"] == "10011"
    assert limited.headers["x-ratelimit-reset"] == limited.headers["retry-after"] == "1"


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_provider_scoped_503_affects_only_that_provider(
    psim: SimulatorHandle, receiver: Receiver, name: str
) -> None:
    scenario(psim, rules=[{"provider": name, "http_status": 503}])
    for provider in PROVIDERS:
        result = await send(provider, psim.url, outbound(receiver, provider, number_for("att", 80)))
        if provider == name:
            assert result.category is Category.TRANSIENT
        else:
            assert result.ok, (provider, result)
    counts = report(psim)["by_provider"]
    assert [counts[p]["faulted"] for p in PROVIDERS] == [int(p == name) for p in PROVIDERS]


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_refuse_rule_refuses_tcp_connects_for_its_window_then_accepts(
    psim: SimulatorHandle, receiver: Receiver, name: str
) -> None:
    own, other = (
        psim.provider_urls[name],
        psim.provider_urls[next(p for p in PROVIDERS if p != name)],
    )
    httpx.post(f"{psim.url}/sim/reset").raise_for_status()  # the window starts now
    scenario(psim, rules=[{"provider": name, "until_s": REFUSE_WINDOW_S, "refuse": True}])
    wait_until(lambda: not accepting(own))
    with pytest.raises(ConnectionRefusedError):  # a real refusal, not a closed answer
        connects(own)
    assert connects(other)
    text = outbound(receiver, name, number_for("att", 90))
    with pytest.raises(ProviderUnreachable):
        await send(name, own, text)
    # The shared port cannot refuse one provider: it cuts the request off instead,
    # after it was written, so the client cannot tell it from a drop (uncertain).
    with pytest.raises(ProviderUncertain) as cut:
        await send(name, psim.url, text)
    assert not isinstance(cut.value, ProviderUnreachable)
    assert httpx.get(f"{psim.url}/sim/providers").json()[name]["refusing"]
    wait_until(lambda: accepting(own))
    assert (await send(name, own, text)).ok
    counts = report(psim)
    assert counts["by_provider"][name]["refused"] >= 1 and counts["delivered_to_handsets"] == 1


async def test_sim_keys_gives_the_public_key_sendq_verifies_with(psim: SimulatorHandle) -> None:
    keys = httpx.get(f"{psim.url}/sim/keys").json()
    assert keys["telnyx"]["public_key"] == telnyx_public_key(SEED) != telnyx_public_key()


async def test_a_provider_scoped_hang_times_out_only_that_provider(
    psim: SimulatorHandle, receiver: Receiver
) -> None:
    scenario(psim, rules=[{"provider": "telnyx", "hang": True, "hang_s": 2.0}])
    slow = TelnyxProvider(
        api_key=CREDENTIALS["telnyx_api_key"],
        public_key=telnyx_public_key(SEED),
        base_url=psim.url,
        timeout_s=0.3,
    )
    with pytest.raises(ProviderTimeout):
        await slow.send(outbound(receiver, "telnyx", number_for("att", 95)))
    await slow.aclose()
    assert (await send("twilio", psim.url, outbound(receiver, "twilio", number_for("att", 96)))).ok
