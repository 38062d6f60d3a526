"""The deliverability watch's drills: quiet filtering on real processes (issue 14's targets).

Each drill is one campaign to AT&T, T-Mobile and Verizon people in turn (the
harness, with how it is counted, is drills/watch_run.py). People reply at base
rates that differ a little by carrier; receipts come after a lognormal delay
(median 5 s, p99 60 s: the issue's example); 1% of every carrier's texts are
quietly undelivered, as unreachable handsets are. Then, from ``from_s``:

1. ``silent``: Verizon's receipts still say "delivered", but its handsets never get
   the texts, so its people never reply (base reply rate 5%);
2. ``receipts_stop``: Verizon's receipts stop (its texts still arrive);
3. ``cut``: only half of Verizon's texts are delivered; the rest get an
   "undelivered" receipt with the provider's generic unreachable code (Twilio
   30003), which sendq reads as *ambiguous*: it weighs on the carrier breaker at
   ``ambiguous_weight``, so that breaker may stop Verizon before the watch does;
4. ``false_alarms`` (drills/watch_alarms.py): no fault, base reply rates 3.5%, 4%, 4.5%;
5. ``silent_flapping``: ``silent``, and every ``every_s`` Verizon also refuses its
   texts with 30007 for ``burst_s``: the carrier breaker opens, its probes pass (the
   receipts say "delivered") and it closes again, over and over. The watch keeps the
   replies evidence across those closes, so it still pauses Verizon.

**Replies come fast.** People's replies take a lognormal median 2 s, p99 20 s
here (``REPLIES``; the simulator's default is a human's, median 45 s, p99 15 min:
``HUMAN_REPLIES``). Against the other carriers the watch compares cohorts of the
same age, so a silent carrier shows as soon as enough of the others' replies have
come, the early ones first: the texts a trip takes are the texts whose replies
carry enough evidence plus Verizon's rate x the time those replies take to come.
With a human's delays that time is tens of seconds, so the same trip takes more
texts at the same rate (the benchmark measures both).

**Every text ends.** ``[receipts] timeout_s`` is the watch's ``due_s`` (60 s unless
a drill says), so each run's texts are final within a minute of the last one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker.drills.watch_run import (
    WHO,
    Drill,
    Lognormal,
    Outcome,
    Stop,
    Traffic,
    run,
)
from worker.watch import WatchSettings

RECEIPTS = Lognormal(5.0, 60.0)
REPLIES = Lognormal(2.0, 20.0)
HUMAN_REPLIES = Lognormal(45.0, 900.0)  # worker/simulator/replies.py's default
# Base reply rates: AT&T and T-Mobile, Verizon's reference, a little under the base.
SILENT_REPLIES = {"att": 0.045, "tmobile": 0.05, "verizon": 0.055}
# The normal run; Verizon's the lowest, the nearest to looking silent.
NORMAL_REPLIES = {"att": 0.045, "tmobile": 0.04, "verizon": 0.035}
RATE_PER_S = 60.0  # the campaign's texts a second: 20 to each carrier
FROM_S = 5.0
SILENT_TARGET_TEXTS = 500
CUT_TARGET_TEXTS = 300
RECEIPTS_STOP_TIMEOUT_S = 30.0  # the issue's: receipts.timeout_s, and so due_s
RECEIPTS_TARGET_EXTRA_S = 2.0
ALLOWANCE = (
    "sent while paused: Verizon texts its provider accepted while its breaker was open"
    " or paused, until the drill resumed it, less those in flight when it stopped"
    " (claimed before the stop and answered after it: carrier breakers cache nothing,"
    " so only a text admitted just before the stop may reach the provider just after)"
)


@dataclass(frozen=True, slots=True)
class TripFigures:
    fault: str
    texts: int
    rate_per_s: float  # offered: the campaign's texts enqueued a second
    sent_per_s: float  # as its providers accepted them, first to last
    # What stopped Verizon first: "watch" (paused), "breaker" (opened) or "" (nothing).
    first_by: str
    first_why: str
    # Verizon texts its provider accepted from the fault's start to that stop, and the time.
    texts_to_stop: int | None
    seconds_to_stop: float | None
    # The watch's own pause: the same, or later (after the breaker), or None.
    watch_texts_to_pause: int | None
    watch_seconds_to_pause: float | None
    watch_evidence: str
    target: str
    met: bool
    sent_while_paused: int
    in_flight_allowance: int
    lost: int
    doubled: int
    seconds: float
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


def silent(
    redis_url: str,
    workdir: Path,
    *,
    texts: int = 6000,
    rate_per_s: float = RATE_PER_S,
    replies: Mapping[str, float] = SILENT_REPLIES,
    reply_delay: Lognormal = REPLIES,
    receipts: Lognormal = RECEIPTS,
    seed: int = 1,
) -> TripFigures:
    """Verizon silently drops every text from FROM_S: paused within 500 of its texts?"""
    traffic = Traffic(texts, rate_per_s, replies, reply_delay, receipts, seed=seed)
    drill = Drill(traffic, {"from_s": FROM_S, "silent": True}, timeouts(60.0))
    out = run(redis_url, workdir, drill)
    watch = out.by_watch()
    met = watch is not None and watch.texts <= SILENT_TARGET_TEXTS
    note = (
        f"reply rates {rates(replies)}; replies lognormal median {reply_delay.median_s:g} s"
        f" p99 {reply_delay.p99_s:g} s after the text arrives (median 2 s is fast, for a"
        " drill of seconds; 45 s is a human's);"
        f" receipts lognormal median {receipts.median_s:g} s p99 {receipts.p99_s:g} s;"
        f" {ALLOWANCE}"
    )
    return _trip("silent", drill, out, f"<= {SILENT_TARGET_TEXTS} texts", met, note)


def silent_flapping(
    redis_url: str,
    workdir: Path,
    *,
    every_s: float = 12.0,
    burst_s: float = 0.5,
    cooldown_s: float = 5.0,
    texts: int = 7200,
    rate_per_s: float = RATE_PER_S,
    seed: int = 4,
) -> TripFigures:
    """``silent``, with a burst of 30007s every ``every_s`` that opens the carrier
    breaker and lets its probes close it: does the watch still pause Verizon?"""
    traffic = Traffic(texts, rate_per_s, SILENT_REPLIES, REPLIES, RECEIPTS, seed=seed)
    last_s = FROM_S + texts / rate_per_s
    bursts = tuple(
        {"from_s": at, "until_s": at + burst_s, "error": "carrier_block", "mode": "sync"}
        for at in _steps(FROM_S + 3.0, last_s, every_s)
    )
    fault = {"from_s": FROM_S, "silent": True}
    # A short cool-down, not doubled, so the breaker closes again between bursts: the
    # default (60 s, doubling on each re-open) holds Verizon's texts most of the time.
    env = timeouts(60.0) | {
        "SENDQ_BREAKERS__CARRIER__COOLDOWN_S": str(cooldown_s),
        "SENDQ_BREAKERS__CARRIER__COOLDOWN_MAX_S": str(cooldown_s),
    }
    drill = Drill(traffic, fault, env, fault_extra=bursts, await_watch_s=last_s)
    out = run(redis_url, workdir, drill)
    watch = out.by_watch()
    met = watch is not None and watch.texts <= SILENT_TARGET_TEXTS
    before = watch.at_ms if watch is not None else None
    opens = sum(1 for s in out.stops if s.to == "open" and (before is None or s.at_ms < before))
    note = (
        f"silent from {FROM_S:g} s, and from {FROM_S + 3:g} s every {every_s:g} s Verizon"
        f" refuses its texts with 30007 for {burst_s:g} s; the carrier breaker (cool-down"
        f" {cooldown_s:g} s) opened {opens} times before the watch's pause, each closed"
        " again by its probes;"
        f" reply rates {rates(SILENT_REPLIES)}; {ALLOWANCE}"
    )
    return _trip("silent_flapping", drill, out, f"<= {SILENT_TARGET_TEXTS} texts", met, note)


def _steps(start: float, stop: float, step: float) -> list[float]:
    out: list[float] = []
    at = start
    while at < stop:
        out.append(round(at, 3))
        at += step
    return out


def receipts_stop(
    redis_url: str,
    workdir: Path,
    *,
    timeout_s: float = RECEIPTS_STOP_TIMEOUT_S,
    texts: int | None = None,
    rate_per_s: float = RATE_PER_S,
    receipts: Lognormal = RECEIPTS,
    bucket_s: int | None = None,
    seed: int = 2,
) -> TripFigures:
    """Verizon's receipts stop from FROM_S: paused within receipts.timeout_s + 2 s?

    ``texts``: by default enough to keep sending a minute past the first overdue receipt.
    """
    texts = texts or int(rate_per_s * (FROM_S + timeout_s + 60))
    traffic = Traffic(texts, rate_per_s, NORMAL_REPLIES, REPLIES, receipts, seed=seed)
    env = timeouts(timeout_s)
    if bucket_s is not None:
        env["SENDQ_WATCH__BUCKET_S"] = str(bucket_s)
    drill = Drill(traffic, {"from_s": FROM_S, "receipts": False}, env)
    out = run(redis_url, workdir, drill)
    waited = out.seconds_to(out.by_watch())
    met = waited is not None and waited <= timeout_s + RECEIPTS_TARGET_EXTRA_S
    conf = watch_settings(env)
    note = (
        f"[receipts] timeout_s = [watch] due_s = {timeout_s:g}: a text with no final receipt"
        f" by then ends unconfirmed, and the watch counts it overdue at the same age, so it"
        f" can see no stopped receipt sooner. Past it: bucket_s {conf.bucket_s} (a cohort"
        " is judged once its first text is due, so a stop late in a cohort leaves it too"
        " few overdue texts to trip on, and the next cohort, up to bucket_s on, decides), the"
        f" evidence (min_texts {conf.min_texts} of Verizon's texts past due, their seconds"
        " at its rate; h of 10 to 11 nats comes sooner, at about 0.28 for each of the"
        " other carriers' on-time receipts), and check_s"
        f" {conf.check_s:g} (the next round); {ALLOWANCE}"
    )
    target = f"<= {timeout_s + RECEIPTS_TARGET_EXTRA_S:g} s"
    return _trip("receipts_stop", drill, out, target, met, note)


def cut(
    redis_url: str,
    workdir: Path,
    *,
    share: float = 0.5,
    texts: int = 4000,
    rate_per_s: float = RATE_PER_S,
    receipts: Lognormal = RECEIPTS,
    await_watch_s: float = 0.0,
    seed: int = 3,
    watch_alone: bool = False,
) -> TripFigures:
    """Only ``share`` of Verizon's texts delivered from FROM_S: stopped within 300 of them?

    When the carrier breaker opens first, the watch leaves it to its probes (it
    pauses only a closed breaker), so by default the drill does not wait for it.
    ``watch_alone``: the carrier breaker gives ambiguous codes no weight, so only the
    watch can stop Verizon (what the watch takes by itself).
    """
    traffic = Traffic(texts, rate_per_s, NORMAL_REPLIES, REPLIES, receipts, seed=seed)
    fault = {"from_s": FROM_S, "deliver_share": share}
    env = timeouts(60.0)
    if watch_alone:
        env["SENDQ_BREAKERS__CARRIER__AMBIGUOUS_WEIGHT"] = "0"
    drill = Drill(traffic, fault, env, await_watch_s=await_watch_s)
    out = run(redis_url, workdir, drill)
    first = out.first()
    met = first is not None and first.texts <= CUT_TARGET_TEXTS
    note = (
        f"{share:.0%} of Verizon's texts delivered, the rest undelivered with the"
        " provider's unreachable code (Twilio 30003), which sendq reads as ambiguous and"
        " the carrier breaker weighs at ambiguous_weight"
        + (" (0 here: the watch alone)" if watch_alone else "")
        + "; the target counts whichever"
        f" stopped Verizon first; receipts median {receipts.median_s:g} s p99"
        f" {receipts.p99_s:g} s; {ALLOWANCE}"
    )
    return _trip("cut", drill, out, f"<= {CUT_TARGET_TEXTS} texts", met, note)


def _trip(fault: str, drill: Drill, out: Outcome, target: str, met: bool, note: str) -> TripFigures:
    first, watch = out.first(), out.by_watch()
    return TripFigures(
        fault=fault,
        texts=out.texts,
        rate_per_s=drill.traffic.rate_per_s,
        sent_per_s=out.sent_per_s,
        first_by=_by(first),
        first_why=first.why if first else "",
        texts_to_stop=first.texts if first else None,
        seconds_to_stop=out.seconds_to(first),
        watch_texts_to_pause=watch.texts if watch else None,
        watch_seconds_to_pause=out.seconds_to(watch),
        watch_evidence=watch.why if watch else "",
        target=target,
        met=met,
        sent_while_paused=out.sent_while_stopped,
        in_flight_allowance=out.in_flight,
        lost=out.lost,
        doubled=out.doubled,
        seconds=out.seconds,
        note=note,
    )


def _by(stop: Stop | None) -> str:
    if stop is None:
        return ""
    return "watch" if stop.who == WHO else "breaker" if stop.to == "open" else stop.who


def timeouts(timeout_s: float) -> dict[str, str]:
    """[receipts] timeout_s and the watch's due_s the same: see the module's docstring."""
    return {"SENDQ_RECEIPTS__TIMEOUT_S": f"{timeout_s:g}", "SENDQ_WATCH__DUE_S": f"{timeout_s:g}"}


def rates(by_carrier: Mapping[str, float]) -> str:
    return ", ".join(f"{carrier} {rate:.1%}" for carrier, rate in by_carrier.items())


def watch_settings(env: Mapping[str, str]) -> WatchSettings:
    """The [watch] settings the drill's processes run with: SENDQ_WATCH__<FIELD> from
    this process's environment and the drill's (top-level fields only)."""
    prefix = "SENDQ_WATCH__"
    merged = {**os.environ, **env}
    fields = {
        k[len(prefix) :].lower(): v
        for k, v in merged.items()
        if k.startswith(prefix) and "__" not in k[len(prefix) :]
    }
    return WatchSettings.model_validate(fields)
