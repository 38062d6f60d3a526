"""The simulator's signed replies, as each adapter reads them.

The simulator (worker/simulator/inbound.py) and the adapters were written
apart, each from the provider's documentation; here each adapter, given the
simulator's credentials, verifies and reads the simulator's reply as the same
text, so the end-to-end runs exercise the real inbound path.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from worker.providers.bandwidth import BandwidthProvider
from worker.providers.base import InboundText, Provider, WebhookRequest
from worker.providers.plivo import PlivoProvider
from worker.providers.telnyx import TelnyxProvider
from worker.providers.twilio import TwilioProvider
from worker.providers.vonage import VonageProvider
from worker.simulator.config import SimulatorConfig, telnyx_public_key
from worker.simulator.inbound import Inbound, InboundShapes
from worker.simulator.signing_settings import TwilioSharedKey

CONFIG = SimulatorConfig()
PERSON = "+12015550123"
OURS = "+12015550100"
URL = "https://hooks.example.com/webhooks/{provider}/inbound"


def offline() -> httpx.AsyncClient:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("this test must not send anything")

    return httpx.AsyncClient(transport=httpx.MockTransport(unreachable))


ADAPTERS: dict[str, Callable[[], Provider]] = {
    "twilio": lambda: TwilioProvider(
        account_sid="AC" + "0" * 32,
        auth_token=CONFIG.auth_token,
        client=offline(),
        webhook_keys={"webhooks_sharedkey_sim1": "s3cret"},
    ),
    "telnyx": lambda: TelnyxProvider(
        api_key="KEY", public_key=telnyx_public_key(CONFIG.telnyx_seed), client=offline()
    ),
    "bandwidth": lambda: BandwidthProvider(
        account_id="9900000",
        application_id="app",
        username="u",
        password="p",
        callback_username=CONFIG.bandwidth_callback_username,
        callback_password=CONFIG.bandwidth_callback_password,
        client=offline(),
    ),
    "plivo": lambda: PlivoProvider(
        auth_id="MA" + "A" * 18, auth_token=CONFIG.plivo_auth_token, client=offline()
    ),
    "vonage": lambda: VonageProvider(
        api_key="abcd1234",
        api_secret="s",
        signature_secret=CONFIG.vonage_signature_secret,
        signature_method=CONFIG.vonage_signature_method,
        client=offline(),
    ),
}


def reply(provider: str, body: str = "Stop please", **options: object) -> WebhookRequest:
    text = Inbound(
        sid="inbound-0001",
        provider=provider,
        sender=PERSON,
        to=OURS,
        body=body,
        carrier="T-Mobile",
        account="AC" + "0" * 32,
        application_id="app",
        sent_at=time.time(),
    )
    build = InboundShapes(CONFIG).builder(text, URL.format(provider=provider), **options)
    outgoing = build(1)
    headers = httpx.Headers(outgoing.headers)
    return WebhookRequest(
        url=outgoing.url,
        headers=headers,
        body=outgoing.body,
        content_type=headers.get("content-type", ""),
    )


CASES = [
    pytest.param("twilio", {}, id="twilio"),
    pytest.param(
        "twilio",
        {"twilio_key": TwilioSharedKey(key_id="webhooks_sharedkey_sim1", secret="s3cret")},
        id="twilio-shared-key",
    ),
    pytest.param("telnyx", {}, id="telnyx"),
    pytest.param("bandwidth", {}, id="bandwidth"),
    pytest.param("plivo", {}, id="plivo"),
    pytest.param("vonage", {"vonage_method": "GET"}, id="vonage-get"),
    pytest.param("vonage", {"vonage_method": "POST"}, id="vonage-form"),
    pytest.param("vonage", {"vonage_method": "POST-JSON"}, id="vonage-json"),
]


@pytest.mark.parametrize(("provider", "options"), CASES)
def test_each_adapter_verifies_and_reads_the_simulators_reply(
    provider: str, options: dict[str, object]
) -> None:
    adapter = ADAPTERS[provider]()
    hook = reply(provider, "Stop please 👋", **options)

    assert adapter.verify_signature(hook)
    assert adapter.is_inbound(hook)
    [(index, parsed)] = adapter.parse_inbound(hook)
    assert index == 0
    assert isinstance(parsed, InboundText), parsed
    assert (parsed.sender, parsed.to, parsed.body) == (PERSON, OURS, "Stop please 👋")
    assert parsed.provider_message_id
