"""The watch made visible: ``sendq carriers status`` (human, ``--json``, ``--watch``),
``/metrics`` and ``/admin/watch`` show each carrier x campaign's rates beside the
others' and the baseline, and the state of each test.

Counts are fed through WatchCounters on real Redis, as the send path and webhooks
feed them; the CLI runs as operators run it (a process of its own, on a server of
this module's own, since it uses sendq's default key namespace).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.testclient import TestClient

from tests.test_admin import TOKEN, auth, operations
from tests.test_cli import sendq
from tests.test_watch_e2e import ThreadedBreakers, a_round
from worker import embedded
from worker.admin import Admin
from worker.alerts import Alerter
from worker.breaker import Breakers, Policy
from worker.settings import load_settings
from worker.store import Store, now_ms
from worker.watch import Watch, WatchCounters, WatchCountersSync, watch_status
from worker.watch.model import Layout
from worker.watch.settings import WatchSettings
from worker.wiring import Root

CARRIERS = ("att", "tmobile", "verizon")
NORMAL = {"att": 0.035, "tmobile": 0.04, "verizon": 0.045}
SILENT_VERIZON = {**NORMAL, "verizon": 0.0}
# Small windows, so a test feeds minutes of traffic, not hours (as test_watch_e2e's).
WATCH = {
    "check_s": 0.5,
    "bucket_s": 5,
    "window_s": 300,
    "baseline_s": 600,
    "due_s": 30,
    "reply_lag_s": 60,
}
# Replies against the baseline are off by default (an inbound outage is ours): on
# here, so that the views show a baseline test.
WATCH_TOML = (
    "[watch]\n"
    + "".join(f"{k} = {v}\n" for k, v in WATCH.items())
    + "[watch.replies]\nbaseline = true\n"
)
WATCH_SETTINGS: dict[str, Any] = {**WATCH, "replies": {"baseline": True}}
SIGNALS = ["delivery", "receipts", "replies", "optouts"]
# A summary row's cells after the pair's: signal, rate, others, baseline, texts, test, on trip.
SUMMARY_CELLS = range(7)


async def feed(
    counters: WatchCounters,
    campaign: str,
    *,
    replies: Mapping[str, float],
    seconds: float = 240,
    per_s: float = 12,
    ending_s_ago: float = 0.0,
    seed: int = 1,
) -> None:
    """Texts sent evenly over ``seconds``, their receipts (2 s later, 1% undelivered)
    and replies (3 s after that), as far as they would have come by now."""
    rng = random.Random(seed)
    end = now_ms() - int(ending_s_ago * 1000)
    start = end - int(seconds * 1000)
    events: list[Awaitable[None]] = []
    for i in range(int(seconds * per_s)):
        sent = start + int(i * 1000 / per_s)
        carrier = CARRIERS[i % len(CARRIERS)]
        events.append(counters.sent(carrier, campaign, sent_ms=sent))
        if sent + 2000 > end:
            continue
        delivered = rng.random() >= 0.01
        receipt = counters.receipt(carrier, campaign, delivered, sent_ms=sent, at_ms=sent + 2000)
        events.append(receipt)
        if delivered and sent + 5000 <= end and rng.random() < replies[carrier]:
            events.append(counters.reply(carrier, campaign, sent_ms=sent, at_ms=sent + 5000))
    for i in range(0, len(events), 8):  # a few at a time: the pool's connections are few
        await asyncio.gather(*events[i : i + 8])


def a_campaign() -> str:
    return f"gotv{secrets.token_hex(3)}"


# -- the CLI: a server and a config of its own ---------------------------------


@pytest.fixture(scope="module")
def cli_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("watch-cli-redis")
    config = tmp_path_factory.mktemp("watch-cli-config") / "sendq.toml"
    config.write_text(WATCH_TOML)
    url = embedded.ensure(data_dir)
    env = {"SENDQ_REDIS_URL": url, "SENDQ_CONFIG": str(config), "NO_COLOR": "1"}
    yield url, env
    embedded.stop(data_dir)


@pytest.fixture
def cli_env(cli_server: tuple[str, dict[str, str]]) -> dict[str, str]:
    # COLUMNS: the tables are read as text, so no cell is wrapped.
    return {**os.environ, **cli_server[1], "COLUMNS": "250"}


@pytest.fixture
async def counters(cli_server: tuple[str, dict[str, str]]) -> AsyncIterator[WatchCounters]:
    """The counters in sendq's default namespace, on the CLI's server."""
    aclient = aioredis.Redis.from_url(cli_server[0])
    yield WatchCounters(aclient, Layout.of(WatchSettings(**WATCH_SETTINGS)))
    await aclient.aclose()


def status_json(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    done = sendq(env, "carriers", "status", "--json")
    assert done.returncode == 0, done.stderr
    return {row["name"]: row for row in json.loads(done.stdout)["carriers"]}


def human(env: dict[str, str], *args: str) -> list[str]:
    done = sendq(env, "carriers", "status", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def cells(lines: Sequence[str], pair: str, signal: str) -> list[str]:
    """The summary row of ``signal`` in ``pair``'s block, split into its cells."""
    block = False
    for line in lines:
        words = line.split()
        if words and words[0] == pair:
            block = True
        elif words and ":" in words[0] and not words[0].endswith(","):
            block = False
        if block and signal in words:
            return words[words.index(signal) :]
    raise AssertionError(f"no {signal} row for {pair} in:\n" + "\n".join(lines))


def under_the_name(lines: Sequence[str], pair: str, rows: int = 2) -> list[str]:
    """The cells under ``pair``'s name in the summary: its breaker state, its held texts
    (and its carrier-wide breaker's state, when that one is not closed)."""
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == [pair])
    below = lines[at + 1 : at + 1 + rows]
    return [" ".join(line.split()[: -len(SUMMARY_CELLS)]) for line in below]


async def test_status_shows_a_silent_carriers_replies_beside_the_others_and_its_trip(
    counters, cli_env
) -> None:
    campaign = a_campaign()
    await feed(counters, campaign, replies=SILENT_VERIZON)

    lines = human(cli_env)

    # signal, rate, others, baseline, texts, test
    silent = cells(lines, f"verizon:{campaign}", "replies")
    assert silent[1] == "0.0%"
    assert 2.0 < float(silent[2].rstrip("%")) < 6.0
    assert silent[3] == "-"  # no baseline yet: the campaign is new
    assert int(silent[4]) > 800 and silent[5] == "trip"
    normal = cells(lines, f"att:{campaign}", "replies")
    assert float(normal[1].rstrip("%")) > 1.0 and normal[5] in ("continue", "clear")
    assert cells(lines, f"att:{campaign}", "delivery")[5] in ("continue", "clear")
    # Under the name, the breaker's state and held texts: none has a record yet.
    assert under_the_name(lines, f"verizon:{campaign}") == ["closed", "0 held"]
    [evidence] = [line for line in lines if line.startswith(f"verizon:{campaign} replies: trip")]
    assert re.search(r"reply rate 0\.0% over \d+ delivered vs \d\.\d% on att and tmobile", evidence)
    assert evidence.endswith("(p < 0.001)")
    assert not any(line.startswith(f"att:{campaign}") and ": trip" in line for line in lines)


async def test_status_json_gives_each_pair_its_whole_watch_status(counters, cli_env) -> None:
    campaign = a_campaign()
    await feed(counters, campaign, replies=SILENT_VERIZON)

    rows = status_json(cli_env)

    names = [f"{c}:{campaign}" for c in CARRIERS]
    assert set(names) <= rows.keys()
    for name in names:  # no breaker record yet: listed with a breaker row's keys all the same
        row = rows[name]
        assert (row["state"], row["held"], row["why"], row["window_calls"]) == ("closed", 0, "", 0)
        assert {"since_ms", "by", "window_failures", "consecutive", "reopens"} <= row.keys()
        assert (row["watch"]["carrier"], row["watch"]["campaign"]) == tuple(name.split(":"))
        assert list(row["watch"]["signals"]) == SIGNALS
    silent = rows[f"verizon:{campaign}"]["watch"]["signals"]["replies"]
    assert silent["rate"] == 0.0 and 0.02 < silent["others_rate"] < 0.06
    assert silent["baseline_rate"] is None
    assert silent["decision"] == "trip" and silent["action"] == "pause"
    assert silent["evidence"].startswith("reply rate 0.0% over ")
    [others] = [c for c in silent["comparisons"] if c["reference"] == "others"]
    assert others["statistic"] >= others["threshold"] and others["p_value"] < 0.001
    normal = rows[f"tmobile:{campaign}"]["watch"]["signals"]["replies"]
    assert normal["decision"] in ("continue", "clear") and normal["rate"] > 0.01


async def test_a_pair_the_watch_paused_shows_the_pause_and_the_trip_on_record(
    counters, cli_server, cli_env
) -> None:
    campaign = a_campaign()
    await feed(counters, campaign, replies=SILENT_VERIZON)
    client = redis.Redis.from_url(cli_server[0])
    breakers = ThreadedBreakers(Breakers(client, "carrier", Policy()))
    watch = Watch(counters, WatchSettings(**WATCH_SETTINGS), breakers, Alerter([]))
    paused = [a for a in await a_round(watch) if a.campaign == campaign and a.did == "paused"]
    assert [(a.carrier, a.signal) for a in paused] == [("verizon", "replies")]

    row = status_json(cli_env)[f"verizon:{campaign}"]
    assert (row["state"], row["by"]) == ("paused", "watch")
    tripped = row["watch"]["signals"]["replies"]["tripped"]
    assert tripped["action"] == "pause" and tripped["evidence"] == row["why"]
    lines = human(cli_env)
    assert under_the_name(lines, f"verizon:{campaign}") == ["paused", "0 held"]
    [record] = [line for line in lines if f"verizon:{campaign} replies: tripped at " in line]
    assert record.endswith(f"(pause): {row['why']}")
    client.close()


async def test_a_carrier_wide_pause_shows_under_each_of_its_pairs(counters, cli_env) -> None:
    campaign = a_campaign()
    await feed(counters, campaign, replies=NORMAL)
    paused = sendq(cli_env, "carriers", "pause", "tmobile", "--reason", "30007 spike")
    assert paused.returncode == 0, paused.stderr
    try:
        lines = human(cli_env)
        assert under_the_name(lines, f"tmobile:{campaign}", 3) == [
            "closed",
            "0 held",
            "tmobile:* paused",
        ]
        assert under_the_name(lines, f"att:{campaign}", 3) == ["closed", "0 held", ""]
    finally:
        assert sendq(cli_env, "carriers", "resume", "tmobile").returncode == 0


def per_test_rows(lines: Sequence[str]) -> dict[tuple[str, str, str], list[str]]:
    """``--watch``'s table: (pair, signal, against) -> test, statistic, threshold, p-value."""
    out: dict[tuple[str, str, str], list[str]] = {}
    pair = ""
    for line in lines:
        words = line.split()
        if words and ":" in words[0] and len(words) > 2 and words[1] in SIGNALS:
            pair, words = words[0], words[1:]
        if len(words) >= 6 and words[0] in SIGNALS and words[1] in ("others", "baseline"):
            out[(pair, words[0], words[1])] = [*words[2:5], " ".join(words[5:])]
    return out


async def test_status_watch_prints_every_test_in_full(counters, cli_env) -> None:
    campaign = a_campaign()
    # Ten minutes of normal traffic before the window: every carrier has a baseline.
    await feed(counters, campaign, replies=NORMAL, seconds=600, per_s=6, ending_s_ago=300)
    await feed(counters, campaign, replies=SILENT_VERIZON, seed=2)

    lines = human(cli_env, "--watch")
    rows = status_json(cli_env)

    pair = f"verizon:{campaign}"
    silent = rows[pair]["watch"]["signals"]["replies"]
    assert 0.02 < silent["baseline_rate"] < 0.08
    assert [c["reference"] for c in silent["comparisons"]] == ["others", "baseline"]
    tests = per_test_rows(lines)
    for reference in ("others", "baseline"):
        decision, statistic, threshold, p_value = tests[(pair, "replies", reference)]
        assert decision == "trip" and float(statistic) >= float(threshold) > 0
        assert p_value == "< 0.001"
        [evidence] = [line for line in lines if line.startswith(f"{pair} replies vs {reference}:")]
        assert "reply rate 0.0% over " in evidence and evidence.endswith("(p < 0.001)")
    normal = tests[(f"att:{campaign}", "replies", "others")]
    assert normal[0] in ("continue", "clear") and float(normal[1]) < float(normal[2])
    # Every signal of every carrier, against the others and its baseline, but receipts'
    # baseline (off by default: receipts stopping everywhere are ours, not a carrier's).
    mine = {k for k in tests if k[0].endswith(f":{campaign}")}
    assert len(mine) == len(CARRIERS) * (2 * len(SIGNALS) - 1)
    # --watch is the watch in full: the breaker table is the plain command's.
    assert not any("calls" in line.split() for line in lines)


def test_status_with_no_watch_counts_is_the_breaker_table_alone(tmp_path: Path) -> None:
    url = embedded.ensure(tmp_path / "redis")
    try:
        env = {**os.environ, "SENDQ_REDIS_URL": url, "SENDQ_CONFIG": "", "NO_COLOR": "1"}
        sendq(env, "carriers", "pause", "att", "--reason", "30007 spike")
        done = sendq(env, "carriers", "status")
        assert done.returncode == 0, done.stderr
        assert "att:*" in done.stdout and "watch" not in done.stdout
        [row] = json.loads(sendq(env, "carriers", "status", "--json").stdout)["carriers"]
        assert (row["name"], row["state"], row["watch"]) == ("att:*", "paused", None)
    finally:
        embedded.stop(tmp_path / "redis")


# -- /metrics and /admin/watch --------------------------------------------------


@pytest.fixture
def watch_conf() -> WatchSettings:
    return WatchSettings(**{**WATCH_SETTINGS, "baseline_s": 0})


@pytest.fixture
def api(client: redis.Redis, ns: str, watch_conf: WatchSettings) -> Iterator[TestClient]:
    reader = WatchCountersSync(client, Layout.of(watch_conf), ns)
    watch = partial(watch_status, reader, watch_conf)
    admin = Admin(operations(client, ns), Store(client, ns), watch=watch)
    with TestClient(Starlette(routes=admin.routes(TOKEN))) as api:
        yield api


def series(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every sample of ``name``, by its labels (in any order)."""
    out: dict[frozenset[tuple[str, str]], float] = {}
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
            out[labels] = float(match.group(2))
    return out


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def test_metrics_show_each_pairs_rates_tests_and_trips(aclient, ns, api, watch_conf) -> None:
    counters = WatchCounters(aclient, Layout.of(watch_conf), ns)
    await feed(counters, "gotv", replies=SILENT_VERIZON)

    text = api.get("/metrics", headers=auth()).text

    rates = series(text, "sendq_watch_rate")
    verizon = {"carrier": "verizon", "campaign": "gotv", "signal": "replies"}
    assert rates[labels(**verizon, of="carrier")] == 0.0
    assert 0.02 < rates[labels(**verizon, of="others")] < 0.06
    # No baseline: left out, not NaN.
    assert labels(**verizon, of="baseline") not in rates
    assert "NaN" not in text
    tripped = series(text, "sendq_watch_tripped")
    assert tripped[labels(**verizon)] == 1.0
    for carrier in ("att", "tmobile"):
        assert tripped[labels(carrier=carrier, campaign="gotv", signal="replies")] == 0.0
        assert tripped[labels(carrier=carrier, campaign="gotv", signal="delivery")] == 0.0
    statistic = series(text, "sendq_watch_statistic")[labels(**verizon, reference="others")]
    threshold = series(text, "sendq_watch_threshold")[labels(**verizon, reference="others")]
    assert statistic >= threshold > 0
    assert series(text, "sendq_watch_p_value")[labels(**verizon, reference="others")] < 0.001
    texts = series(text, "sendq_watch_texts")
    assert texts[labels(**verizon)] > 800
    assert {dict(k)["signal"] for k in texts} == set(SIGNALS)


async def test_the_admin_api_gives_the_watch_behind_the_token(aclient, ns, api, watch_conf) -> None:
    counters = WatchCounters(aclient, Layout.of(watch_conf), ns)
    await feed(counters, "gotv", replies=SILENT_VERIZON)

    assert api.get("/admin/watch").status_code == 401
    assert api.get("/admin/watch", headers=auth("wrong")).status_code == 401
    pairs = api.get("/admin/watch", headers=auth()).json()["watch"]

    assert [(p["carrier"], p["campaign"]) for p in pairs] == [(c, "gotv") for c in CARRIERS]
    replies = {p["carrier"]: p["signals"]["replies"] for p in pairs}
    assert (replies["verizon"]["decision"], replies["verizon"]["rate"]) == ("trip", 0.0)
    assert replies["att"]["decision"] in ("continue", "clear")


def test_an_admin_app_without_the_watch_says_so(client, ns) -> None:
    admin = Admin(operations(client, ns), Store(client, ns))
    with TestClient(Starlette(routes=admin.routes(TOKEN))) as api:
        answer = api.get("/admin/watch", headers=auth())
        assert answer.status_code == 503 and "watch" in answer.json()["error"]
        assert "sendq_watch_" not in api.get("/metrics", headers=auth()).text


def test_the_composition_roots_admin_reports_the_watch(redis_url) -> None:
    admin = Root(load_settings(redis_url=redis_url)).admin()
    assert admin.watch_source is not None
