"""Quiet filtering as each provider reports it, read by sendq's own adapters.

Real HTTP over loopback: each text goes through worker.providers.<name> to a
simulator started for this module, and its receipt, posted to a recording
server, is fed back to the same adapter. A cut text (``deliver_share``) must
come back "undelivered" with the provider's generic unreachable code, which no
adapter reads as a carrier block; a silently dropped one must come back
"delivered" although no handset got it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.test_simulator_providers import (
    CREDENTIALS,
    Receiver,
    adapter,
    outbound,
    send,
)
from worker.models import Category, Status
from worker.simulator.carriers import number_for
from worker.simulator.config import SimulatorConfig
from worker.simulator.scenario import PROVIDERS
from worker.simulator.server import SimulatorHandle, start_in_thread

# Each provider's "handset unreachable" (the dialects cite their sources).
UNREACHABLE = {
    "twilio": "30003",
    "telnyx": "40008",
    "bandwidth": "4702",
    "plivo": "80",
    "vonage": "2",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def handle(receiver: Receiver) -> Iterator[SimulatorHandle]:
    callbacks = {name: f"{receiver.url}/{name}" for name in ("telnyx", "bandwidth", "vonage")}
    with start_in_thread(SimulatorConfig(port=0, callback_urls=callbacks, **CREDENTIALS)) as h:
        yield h


def play(handle: SimulatorHandle, *rules: dict[str, object]) -> None:
    httpx.post(f"{handle.url}/sim/scenario", json={"rules": list(rules)}).raise_for_status()
    httpx.post(f"{handle.url}/sim/reset").raise_for_status()


def inbox(handle: SimulatorHandle, number: str) -> list[dict[str, str]]:
    texts: list[dict[str, str]] = httpx.get(f"{handle.url}/sim/inbox/{number}").json()["texts"]
    return texts


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_cut_text_is_undelivered_with_the_providers_unreachable_code_not_a_block(
    handle: SimulatorHandle, receiver: Receiver, name: str
) -> None:
    play(handle, {"carrier": "att", "deliver_share": 0})
    text = outbound(receiver, name, number_for("att", 60 + PROVIDERS.index(name)))
    assert (await send(name, handle.url, text)).ok
    hook = receiver.webhook(receiver.wait_for(text.message_id))
    provider = adapter(name, handle.url)
    assert provider.verify_signature(hook)
    [receipt] = provider.parse_receipts(hook)
    await provider.aclose()
    assert receipt.status == Status.UNDELIVERED
    assert receipt.error_code is not None and receipt.error_code.endswith(UNREACHABLE[name])
    assert receipt.category != Category.CARRIER_BLOCK
    assert not inbox(handle, text.to)
    report = httpx.get(f"{handle.url}/sim/report").json()
    assert report["by_provider"][name]["undelivered_by_cut"] == 1
    assert report["by_carrier"]["att"]["undelivered_by_cut"] == 1
    assert report["filtered"] == 0  # a cut is not a carrier filter with a code


@pytest.mark.parametrize("name", PROVIDERS)
async def test_a_silently_dropped_text_is_reported_delivered_and_never_arrives(
    handle: SimulatorHandle, receiver: Receiver, name: str
) -> None:
    play(handle, {"carrier": "verizon", "silent": True})
    text = outbound(receiver, name, number_for("verizon", 70 + PROVIDERS.index(name)))
    assert (await send(name, handle.url, text)).ok
    hook = receiver.webhook(receiver.wait_for(text.message_id))
    provider = adapter(name, handle.url)
    assert provider.verify_signature(hook)
    [receipt] = provider.parse_receipts(hook)
    await provider.aclose()
    assert (receipt.status, receipt.error_code) == (Status.DELIVERED, None)
    assert not inbox(handle, text.to)
    report = httpx.get(f"{handle.url}/sim/report").json()
    assert report["by_provider"][name]["silently_dropped"] == 1
    assert report["delivered_to_handsets"] == 0
