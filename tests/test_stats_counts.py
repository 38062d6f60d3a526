"""The counts operators report on: suppressed, expired and held for quiet hours, by campaign.

lua/transition.lua keeps ``{campaign}|held:{held_for}`` beside the status counts;
``sendq messages stats`` (run as operators run it) and ``/metrics`` show them.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio as aioredis

from tests import parts
from tests.conftest import AUTH_TOKEN
from tests.test_admin import TOKEN, app, auth
from tests.test_cli import sendq
from tests.test_holds import enqueue
from worker import embedded
from worker.counts import QUIET_HOURS, split
from worker.enqueue import Producer
from worker.expiry import ExpirySweeper
from worker.holds import AsyncHolds
from worker.providers.twilio import TwilioProvider
from worker.retry import Backoff
from worker.sendpath import Pipeline, PipelineConfig
from worker.sendpath.gates import Verdict, hold
from worker.sendpath.text import Text
from worker.simulator.carriers import number_for
from worker.store import Store

SID = "AC" + "8" * 32
QUIET = "quiet:gotv"  # the test gate's hold list
CARRIER = "carrier"


class QuietHours:
    """Every text is in its quiet hours: held as the quiet-hours gate holds it."""

    name = "quiet_hours"

    async def check(self, text: Text) -> Verdict:
        return hold("quiet hours until 08:00", hold_list=QUIET, fields={"held_for": QUIET_HOURS})


def texts(client: redis.Redis, ns: str, queue: str, campaign: str, n: int) -> list[str]:
    jobs = [{"to": number_for("att", i), "body": f"#{i}", "campaign": campaign} for i in range(n)]
    return [a.message_id for a in Producer(client, ns=ns, queue=queue).enqueue_many(jobs).accepted]


@pytest.fixture
async def quiet(sim, aclient: aioredis.Redis, ns, queue) -> AsyncIterator[Pipeline]:
    """A pipeline whose first gate finds every text in its quiet hours."""
    provider = TwilioProvider(account_sid=SID, auth_token=AUTH_TOKEN, base_url=sim)
    config = PipelineConfig(
        queue=queue,
        public_url="http://127.0.0.1:9",
        routes={"default": ["twilio"]},
        numbers={"twilio": ["+12015550100"]},
        max_attempts=3,
        backoff=Backoff(base_ms=1000, cap_ms=10_000),
    )
    pipeline = parts.pipeline(config, aclient, ns, {"twilio": provider})
    pipeline.gates = [QuietHours(), *pipeline.gates]
    yield pipeline
    await provider.aclose()


def counts(
    client: redis.Redis, ns: str
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    split_counts = split(Store(client, ns).stats_and_reasons())
    return split_counts.by_status, split_counts.held_for


def held(client: redis.Redis, ns: str, msg_id: str, **fields: str) -> None:
    """Claimed and held by a gate, with the fields that gate writes."""
    store = Store(client, ns)
    store.transition(msg_id, ["queued"], "sending", reason="claimed", fields={"lease_id": "w"})
    store.transition(msg_id, ["sending"], "held", reason="held", fields=fields, fence="w")


# -- the count, in lua/transition.lua --------------------------------------------------------


async def test_a_text_held_for_quiet_hours_is_counted_until_it_is_released(
    quiet, aclient: aioredis.Redis, client, ns, queue
) -> None:
    ids = enqueue(client, ns, queue, "att", 3)
    assert [await quiet.deliver(i) for i in ids] == ["held"] * 3
    assert counts(client, ns) == ({"gotv": {"held": 3}}, {"gotv": {QUIET_HOURS: 3}})
    assert await AsyncHolds(aclient, queue, ns).release(QUIET, 2) == 2
    assert counts(client, ns) == ({"gotv": {"held": 1, "queued": 2}}, {"gotv": {QUIET_HOURS: 1}})


async def test_an_expired_quiet_hours_text_leaves_the_held_count(
    quiet, aclient: aioredis.Redis, client, ns, queue
) -> None:
    soon = datetime.now(UTC) + timedelta(seconds=60)
    (msg_id,) = enqueue(client, ns, queue, "att", 1, send_before=soon.isoformat())
    assert await quiet.deliver(msg_id) == "held"
    past = int(soon.timestamp() * 1000) + 1
    assert await ExpirySweeper(aclient, ns=ns).sweep(past) == 1
    assert counts(client, ns) == ({"gotv": {"expired": 1}}, {})


def test_holds_for_other_reasons_are_counted_apart(client, ns, queue) -> None:
    a, b, c = enqueue(client, ns, queue, "att", 3)
    held(client, ns, a, held_for=QUIET_HOURS)
    held(client, ns, b, held_for=CARRIER)
    held(client, ns, c)  # a hold that names no reason is counted as held only
    assert counts(client, ns) == (
        {"gotv": {"held": 3}},
        {"gotv": {QUIET_HOURS: 1, CARRIER: 1}},
    )


def test_a_held_text_held_again_for_another_reason_moves_between_counts(client, ns, queue) -> None:
    (msg_id,) = enqueue(client, ns, queue, "att", 1)
    held(client, ns, msg_id, held_for=QUIET_HOURS)
    Store(client, ns).transition(
        msg_id, ["held"], "held", reason="carrier paused", fields={"held_for": CARRIER}
    )
    assert counts(client, ns)[1] == {"gotv": {CARRIER: 1}}


def test_an_earlier_holds_reason_is_never_uncounted_by_a_later_hold(client, ns, queue) -> None:
    (msg_id,) = enqueue(client, ns, queue, "att", 1)
    store = Store(client, ns)
    held(client, ns, msg_id, held_for=QUIET_HOURS)
    store.transition(msg_id, ["held"], "queued", reason="released")
    held(client, ns, msg_id)  # held again, for no reason given
    store.transition(msg_id, ["held"], "queued", reason="released")
    assert counts(client, ns) == ({"gotv": {"queued": 1}}, {})
    assert client.hgetall(f"{ns}:stats").get(f"gotv|held:{QUIET_HOURS}".encode()) == b"0"


# -- sendq messages stats --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A server of the module's own: the CLI reads the default namespace."""
    data_dir = tmp_path_factory.mktemp("stats-redis")
    url = embedded.ensure(data_dir)
    client = redis.Redis.from_url(url)
    fill(client)
    client.close()
    env = {**os.environ, "SENDQ_REDIS_URL": url, "SENDQ_CONFIG": "", "NO_COLOR": "1"}
    yield {**env, "COLUMNS": "200"}
    embedded.stop(data_dir)


def fill(client: redis.Redis) -> None:
    """north: 2 suppressed, 1 expired, 3 held for quiet hours, 1 for its carrier;
    south: 1 expired, 1 queued."""
    ns, queue = "sendq", "stats-q"
    store = Store(client, ns)
    north = texts(client, ns, queue, "north", 7)
    for msg_id in north[:2]:
        store.transition(msg_id, ["queued"], "suppressed", reason="opted out")
    store.transition(north[2], ["queued"], "expired", reason="past send_before")
    for msg_id in north[3:6]:
        held(client, ns, msg_id, held_for=QUIET_HOURS)
    held(client, ns, north[6], held_for=CARRIER)
    south = texts(client, ns, queue, "south", 2)
    store.transition(south[0], ["queued"], "expired", reason="past send_before")


def test_stats_count_suppressed_expired_and_quiet_hours_texts_by_campaign(cli_env) -> None:
    done = sendq(cli_env, "messages", "stats", "--json")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["by_campaign"] == {
        "north": {"suppressed": 2, "expired": 1, "held": 4},
        "south": {"expired": 1, "queued": 1},
    }
    assert stats["held_for"] == {"north": {QUIET_HOURS: 3, CARRIER: 1}}


def test_the_stats_table_has_a_column_for_texts_held_for_quiet_hours(cli_env) -> None:
    done = sendq(cli_env, "messages", "stats")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if "campaign" in line)
    cells = [c.strip() for c in header.strip("┃│ ").replace("┃", "│").split("│")]
    assert "held (quiet hours)" in cells and "suppressed" in cells and "expired" in cells
    for campaign, expected in (
        ("north", {"suppressed": "2", "expired": "1", "held (quiet hours)": "3", "total": "7"}),
        ("south", {"suppressed": "0", "expired": "1", "held (quiet hours)": "0", "total": "2"}),
    ):
        row = next(line for line in lines if f" {campaign} " in line)
        values = dict(zip(cells, (c.strip() for c in row.strip("│ ").split("│")), strict=True))
        assert {k: values[k] for k in expected} == expected


# -- /metrics --------------------------------------------------------------------------------


def test_metrics_expose_the_same_counts_by_campaign(redis_url, client, ns, queue) -> None:
    a, b, c, d = enqueue(client, ns, queue, "att", 4)
    store = Store(client, ns)
    store.transition(a, ["queued"], "suppressed", reason="opted out")
    store.transition(b, ["queued"], "expired", reason="past send_before")
    held(client, ns, c, held_for=QUIET_HOURS)
    held(client, ns, d, held_for=CARRIER)
    with app(redis_url, ns, TOKEN) as api:
        text = api.get("/metrics", headers=auth()).text
    for line in (
        'sendq_texts{campaign="gotv",status="suppressed"} 1.0',
        'sendq_texts{campaign="gotv",status="expired"} 1.0',
        'sendq_texts{campaign="gotv",status="held"} 2.0',
        f'sendq_held_for{{campaign="gotv",reason="{QUIET_HOURS}"}} 1.0',
        f'sendq_held_for{{campaign="gotv",reason="{CARRIER}"}} 1.0',
    ):
        assert line in text
    assert "held:" not in text  # the breakdown is its own metric, never a status


def test_metrics_report_zero_for_a_campaign_with_none_suppressed_expired_or_held(
    redis_url, client, ns, queue
) -> None:
    enqueue(client, ns, queue, "att", 1)
    with app(redis_url, ns, TOKEN) as api:
        text = api.get("/metrics", headers=auth()).text
    for status in ("suppressed", "expired", "held"):
        assert f'sendq_texts{{campaign="gotv",status="{status}"}} 0.0' in text
    assert f'sendq_held_for{{campaign="gotv",reason="{QUIET_HOURS}"}} 0.0' in text
