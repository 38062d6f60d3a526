"""Operator actions: one targeting rule, whichever surface an operator uses.

The drift this module exists for: ``sendq carriers resume X`` resumed the carrier-wide
breaker and every campaign breaker of X, while the admin API resumed only the wide one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.test_admin import operations
from tests.test_alerts import alert_receiver
from worker import embedded, keys
from worker.breaker import Breakers, Policy
from worker.errors import MissingReason, UnknownProvider
from worker.operations import Operations
from worker.settings import load_settings
from worker.wiring import Root

TOKEN = "ops-admin-token"
# Paused, in this order, through the surface under test.
PAUSES = [("verizon", "gotv"), ("verizon", "persuade"), ("verizon", None)]
# Another carrier's campaign, paused too: no resume of verizon may touch it.
BYSTANDER = ("att", "gotv")
EVERY_VERIZON_BREAKER_CLOSED = {
    "verizon:*": "closed",
    "verizon:gotv": "closed",
    "verizon:persuade": "closed",
    "att:gotv": "paused",
}


@contextmanager
def fresh_redis(data_dir: Path) -> Iterator[str]:
    url = embedded.ensure(data_dir)
    try:
        yield url
    finally:
        embedded.stop(data_dir)


def states(url: str) -> dict[str, str]:
    ops = Root(load_settings(redis_url=url)).operations()
    return {row["name"]: row["state"] for row in ops.carrier_status()}


def through_the_cli(url: str) -> None:
    env = {**os.environ, "SENDQ_REDIS_URL": url, "SENDQ_CONFIG": "", "NO_COLOR": "1"}

    def sendq(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli", *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr

    for carrier, campaign in [*PAUSES, BYSTANDER]:
        scope = ["--campaign", campaign] if campaign else []
        sendq("carriers", "pause", carrier, *scope, "--reason", "30007 spike")
    sendq("carriers", "resume", "Verizon Wireless")


def through_the_admin_api(url: str) -> None:
    admin = Root(load_settings(redis_url=url)).admin()
    auth = {"authorization": f"Bearer {TOKEN}"}
    with TestClient(Starlette(routes=admin.routes(TOKEN))) as api:
        for carrier, campaign in [*PAUSES, BYSTANDER]:
            body = {"reason": "30007 spike", "campaign": campaign}
            assert api.post(f"/admin/carriers/{carrier}/pause", headers=auth, json=body).is_success
        resumed = api.post("/admin/carriers/Verizon Wireless/resume", headers=auth, json={})
    assert resumed.is_success
    # The named (carrier-wide) breaker answers, and the answer lists every one resumed.
    answer = resumed.json()
    assert (answer["name"], answer["state"], answer["changed"]) == ("verizon:*", "closed", True)
    assert {b["name"]: b["state"] for b in answer["breakers"]} == {
        "verizon:*": "closed",
        "verizon:gotv": "closed",
        "verizon:persuade": "closed",
    }


def test_resume_without_a_campaign_ends_the_same_through_the_cli_and_the_admin_api(
    tmp_path: Path,
) -> None:
    surfaces: dict[str, Callable[[str], None]] = {
        "cli": through_the_cli,
        "admin": through_the_admin_api,
    }
    ended: dict[str, dict[str, str]] = {}
    for surface, act in surfaces.items():
        with fresh_redis(tmp_path / surface) as url:
            act(url)
            ended[surface] = states(url)
    assert ended["cli"] == ended["admin"] == EVERY_VERIZON_BREAKER_CLOSED


@pytest.fixture
def ops(client: redis.Redis, ns: str) -> Operations:
    return operations(client, ns)


def test_a_pause_without_a_campaign_pauses_the_carrier_wide_breaker_only(ops) -> None:
    ops.pause_carrier("verizon", campaign="gotv", reason="spike", who="maria")
    ops.resume_carrier("verizon", campaign="gotv", who="maria")
    outcome = ops.pause_carrier("Verizon Wireless", reason="30007 spike", who="maria")
    assert [c.as_dict() for c in outcome.changes] == [
        {"name": "verizon:*", "state": "paused", "changed": True}
    ]
    # The campaign breaker keeps its own state: the wide pause already holds its texts.
    assert {r["name"]: r["state"] for r in ops.carrier_status()} == {
        "verizon:*": "paused",
        "verizon:gotv": "closed",
    }


def test_a_resume_with_a_campaign_resumes_that_campaign_only(ops) -> None:
    for campaign in ("gotv", None):
        ops.pause_carrier("verizon", campaign=campaign, reason="spike", who="maria")
    outcome = ops.resume_carrier("verizon", campaign="gotv", who="li")
    assert [c.name for c in outcome.changes] == ["verizon:gotv"]
    assert {r["name"]: r["state"] for r in ops.carrier_status()} == {
        "verizon:*": "paused",
        "verizon:gotv": "closed",
    }


def test_a_pause_needs_a_reason_and_changes_nothing_without_one(ops) -> None:
    with pytest.raises(MissingReason):
        ops.pause_carrier("att", reason="  ", who="maria")
    with pytest.raises(MissingReason):
        ops.pause_provider("twilio", reason="", who="maria")
    assert ops.carrier_status() == [] and ops.provider_status(with_routed=False) == []


def test_an_unknown_provider_is_refused_naming_it_and_the_known_ones(ops) -> None:
    with pytest.raises(UnknownProvider) as refused:
        ops.pause_provider("twillio", reason="outage", who="maria")
    assert refused.value.reason.startswith("unknown provider 'twillio'; known: twilio, ")
    # Known but not routed: still the operator's to pause.
    assert ops.pause_provider("vonage", reason="outage", who="maria").changes[0].changed


def test_provider_status_lists_routed_providers_before_they_have_a_record(ops) -> None:
    ops.pause_provider("vonage", reason="outage", who="maria")
    assert [r["name"] for r in ops.provider_status()] == ["twilio", "vonage"]
    assert [r["name"] for r in ops.provider_status(with_routed=False)] == ["vonage"]


def test_carrier_status_counts_each_breakers_held_texts(ops, client, ns) -> None:
    ops.pause_carrier("tmobile", campaign="gotv", reason="spike", who="maria")
    client.rpush(keys.hold("tmobile:gotv", ns), "m1", "m2")
    [row] = ops.carrier_status()
    assert (row["name"], row["state"], row["held"]) == ("tmobile:gotv", "paused", 2)


def test_a_carriers_history_merges_its_breakers_newest_first(ops) -> None:
    ops.pause_carrier("verizon", campaign="gotv", reason="one", who="a")
    ops.pause_carrier("verizon", reason="two", who="b")
    ops.resume_carrier("verizon", who="c")
    ops.pause_carrier("att", reason="elsewhere", who="d")
    history = ops.carrier_history("verizon")
    assert [(h["name"], h["to"], h["who"]) for h in history] == [
        ("verizon:gotv", "closed", "c"),
        ("verizon:*", "closed", "c"),
        ("verizon:*", "paused", "b"),
        ("verizon:gotv", "paused", "a"),
    ]
    assert [h["why"] for h in ops.carrier_history("verizon:*", 1)] == ["resumed by operator"]


def test_only_real_changes_are_announced(client, ns) -> None:
    with alert_receiver() as receiver:
        ops = operations(client, ns, [receiver.url])
        first = ops.pause_carrier("att", reason="spike", who="maria")
        again = ops.pause_carrier("att", reason="spike", who="maria")
        assert again.transitions == [] and not again.changes[0].changed
        assert ops.announce_now(first, source="test") and ops.announce_now(again, source="test")
    assert [(a["name"], a["to"], a["source"]) for a in receiver.requests] == [
        ("att:*", "paused", "test")
    ]


def test_a_resume_reaches_a_campaign_breaker_another_process_paused(client, ns) -> None:
    # Paused by a worker or another operator's command: known from Redis, not this process.
    Breakers(client, "carrier", Policy(), ns).pause("uscellular:gotv", who="x", reason="y")
    outcome = operations(client, ns).resume_carrier("uscellular", who="li")
    assert [c.as_dict() for c in outcome.changes] == [
        {"name": "uscellular:*", "state": "closed", "changed": False},
        {"name": "uscellular:gotv", "state": "closed", "changed": True},
    ]
