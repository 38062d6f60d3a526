"""The watch's false-alarm drill: a normal campaign on real processes trips nothing.

Issue 14's target: 0 trips in a 50,000-text normal run (three carriers, base reply
rates 3.5%, 4% and 4.5%, receipts lognormal), repeated with 5 seeds, each run on a
Redis of its own. The harness is drills/watch_run.py, the traffic drills/watch.py's
(1% of every carrier's texts quietly undelivered, replies fast: see there).

A trip is any watch pause (the breakers' audit, who=watch) or watch alert: an
alert-only signal (opt-outs, by default) leaves no breaker state, so every alert
any process sends is POSTed to a receiver of the drill's own and counted. Carrier
breakers that open are counted beside them. While the run goes, the campaign's
tests are read as operators read them (``sendq carriers status``), and the nearest
any came to its threshold is kept: how far from a trip a normal run stays.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis

from worker.drills.watch import NORMAL_REPLIES, RECEIPTS, REPLIES, rates, timeouts, watch_settings
from worker.drills.watch_run import CAMPAIGN, WHO, Drill, Lognormal, Traffic, run
from worker.watch import Layout, WatchCountersSync
from worker.watch.watch import statuses

FALSE_ALARM_TEXTS = 50_000
FALSE_ALARM_SEEDS = (1, 2, 3, 4, 5)
# "A few hundred a second": offered at this; the figures say what the stack kept up.
FALSE_ALARM_RATE_PER_S = 300.0
CLOSEST_EVERY_S = 2.0


@dataclass(frozen=True, slots=True)
class AlarmRun:
    seed: int
    texts: int
    sent_per_s: float  # as the providers accepted them, first to last
    trips: int  # the watch's: pauses and alerts
    watch_pauses: int
    watch_alerts: int  # alert-only trips (opt-outs' default action)
    breaker_opens: int
    # The largest statistic - threshold any test showed (a trip needs >= 0), and where.
    closest: float
    closest_test: str
    sent_while_paused: int
    lost: int
    doubled: int
    seconds: float


@dataclass(frozen=True, slots=True)
class FalseAlarmFigures:
    runs: tuple[AlarmRun, ...]
    scale: float
    texts_per_run: int
    trips: int
    breaker_opens: int
    closest: float
    sent_while_paused: int
    lost: int
    doubled: int
    note: str

    def as_dict(self) -> dict[str, Any]:
        out = {n: getattr(self, n) for n in self.__slots__ if n != "runs"}
        for r in self.runs:
            out |= {f"seed{r.seed}_{n}": getattr(r, n) for n in r.__slots__ if n != "seed"}
        return out


def false_alarms(
    redis_for: Callable[[int], str],
    workdir: Path,
    *,
    scale: float = 1.0,
    seeds: Sequence[int] = FALSE_ALARM_SEEDS,
    rate_per_s: float = FALSE_ALARM_RATE_PER_S,
    receipts: Lognormal = RECEIPTS,
) -> FalseAlarmFigures:
    """A normal campaign of 50,000 x ``scale`` texts, once per seed (a Redis each): no
    watch pause, no watch alert, no carrier breaker opened."""
    texts = max(3, round(FALSE_ALARM_TEXTS * scale))
    runs = tuple(
        false_alarm(redis_for(seed), workdir / f"seed{seed}", texts, seed, rate_per_s, receipts)
        for seed in seeds
    )
    note = (
        f"{texts} texts a run ({FALSE_ALARM_TEXTS} x SENDQ_BENCH_SCALE {scale:g}), offered at"
        f" {rate_per_s:g}/s, seeds {', '.join(map(str, seeds))}; reply rates"
        f" {rates(NORMAL_REPLIES)}, replies lognormal median {REPLIES.median_s:g} s p99"
        f" {REPLIES.p99_s:g} s, receipts lognormal median {receipts.median_s:g} s p99"
        f" {receipts.p99_s:g} s, 1% of every carrier's texts undelivered; a trip is a watch"
        " pause (the audit, who=watch) or a watch alert (POSTed, by=watch); closest is the"
        " largest statistic minus threshold any test showed, polled every"
        f" {CLOSEST_EVERY_S:g} s (a trip needs >= 0)"
    )
    return FalseAlarmFigures(
        runs=runs,
        scale=scale,
        texts_per_run=texts,
        trips=sum(r.trips for r in runs),
        breaker_opens=sum(r.breaker_opens for r in runs),
        closest=max(r.closest for r in runs),
        sent_while_paused=sum(r.sent_while_paused for r in runs),
        lost=sum(r.lost for r in runs),
        doubled=sum(r.doubled for r in runs),
        note=note,
    )


def false_alarm(
    redis_url: str,
    workdir: Path,
    texts: int,
    seed: int,
    rate_per_s: float = FALSE_ALARM_RATE_PER_S,
    receipts: Lognormal = RECEIPTS,
) -> AlarmRun:
    traffic = Traffic(texts, rate_per_s, NORMAL_REPLIES, REPLIES, receipts, seed=seed)
    with alert_receiver() as alerts:
        env = {**timeouts(60.0), "SENDQ_ALERTS__URLS": json.dumps([alerts.url])}
        drill = Drill(traffic, None, env, campaign=f"{CAMPAIGN}{seed}")
        closest = Closest(redis_url, drill)
        out = run(redis_url, workdir, drill, observe=closest.look)
        closest.look(force=True)
        received = alerts.received()
    pauses = sum(1 for e in out.audit if e.get("who") == WHO and e.get("to") == "paused")
    suspects = sum(1 for a in received if a.get("by") == WHO and a.get("to") == "suspect")
    return AlarmRun(
        seed=seed,
        texts=out.texts,
        sent_per_s=out.sent_per_s,
        trips=pauses + suspects,
        watch_pauses=pauses,
        watch_alerts=suspects,
        breaker_opens=sum(1 for e in out.audit if e.get("to") == "open"),
        closest=round(closest.margin, 2),
        closest_test=closest.where,
        sent_while_paused=out.sent_while_stopped,
        lost=out.lost,
        doubled=out.doubled,
        seconds=out.seconds,
    )


class Closest:
    """The nearest any of the campaign's tests came to a trip, read as operators read it."""

    def __init__(self, redis_url: str, drill: Drill) -> None:
        self.settings = watch_settings(drill.env)
        self.reader = WatchCountersSync(redis.Redis.from_url(redis_url), Layout.of(self.settings))
        self.campaign = drill.campaign
        self.margin = -1e9
        self.where = ""
        self._last_s = 0.0

    def look(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last_s < CLOSEST_EVERY_S:
            return
        self._last_s = time.monotonic()
        for pair in statuses(self.reader.read(), self.settings):
            if pair.campaign != self.campaign:
                continue
            for s in pair.signals:
                for t in s.comparisons:
                    if t.statistic - t.threshold > self.margin:
                        self.margin = t.statistic - t.threshold
                        self.where = f"{pair.carrier} {s.signal} vs {t.reference}"


class _Alerts:
    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._received: list[dict[str, Any]] = []

    def add(self, alert: dict[str, Any]) -> None:
        with self._lock:
            self._received.append(alert)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)


@contextmanager
def alert_receiver() -> Iterator[_Alerts]:
    """An HTTP endpoint on loopback that keeps every alert POSTed to it."""
    box: list[_Alerts] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                box[0].add(json.loads(body))
            except ValueError:
                box[0].add({"unreadable": body.decode(errors="replace")})
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the drill's output is its figures

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(_Alerts(f"http://127.0.0.1:{server.server_address[1]}/alerts"))
    thread = threading.Thread(target=server.serve_forever, name="watch-alerts", daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()
