"""The watch's counts in Redis, shared by every worker and webhook process.

Counts are kept per carrier x campaign and per *cohort*: the texts sent in the
same ``bucket_s`` (epoch aligned). Every event names the time its text was sent
(``sent_ms``, the attempt's ``at_ms``) and is counted in that text's cohort, so
a cohort's replies are set beside that same cohort's deliveries however late
they come, and a burst of released texts cannot look like silence.

Counters per cohort: ``sent`` (a provider accepted it: counted once per attempt,
whichever of the send path's answer, the look-up or a receipt says so first,
lua/watch_sent.lua); ``delivered`` and ``undelivered`` (a final receipt within
``due_s`` of sending); ``late`` (a final receipt after it, with no split: the
delivery signal judges receipts within due_s only); ``unconfirmed`` (the receipt
sweeper ended it, for display); ``replies`` and ``optouts`` (within
``reply_lag_s`` of sending; later ones are not counted). So a cohort past
``due_s`` is judged the same way at any age on delivery, replies and opt-outs;
on receipts, the texts still without one (sent - delivered - undelivered -
late) shrink as late receipts come, so a slow stream is not taken for a
stopped one.

Layout (worker/keys.py): ``watch_counts`` holds the window's cohorts,
``watch_baseline`` the same counts in minute buckets for the baseline;
``watch_pairs`` lists the carrier x campaign pairs with their last event.
Fields are ``"{bucket start, epoch s}:{counter code}"``; bucket starts are
stored, not indexes, so a change of bucket_s never misreads old fields.

Cost per event: one round trip, two HINCRBY (window, baseline), pipelined (a
send: one script that also sets the attempt's ``counted`` mark, and for a final
receipt makes the receipt's increments too), plus a ZADD of the pair at most
once per bucket_s per process. An event whose text
was sent before anything still kept is dropped with no I/O. The check round
(one worker per check_s) reads every pair in two more round trips and prunes
what has aged out.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, cast

import redis
import redis.asyncio as aioredis

from worker import keys, lua
from worker.store import now_ms
from worker.watch.model import (
    BASELINE_BUCKET_S,
    CODES,
    NAMES,
    Counts,
    Layout,
    PairCounts,
    Snapshot,
    TripRecord,
    counter_for,
    pair_name,
    trip_key,
)
from worker.watch.signals import SIGNALS


class WatchCounters:
    """The async side: events from the send path and webhooks, and the check round's I/O."""

    def __init__(
        self, client: aioredis.Redis, layout: Layout, ns: str = keys.DEFAULT_NAMESPACE
    ) -> None:
        self.client = client
        self.layout = layout
        self.ns = ns
        self._listed: dict[str, int] = {}  # pair -> when this process last listed it, ms
        self._sent_once = client.register_script(lua.source("watch_sent"))

    async def sent(self, carrier: str, campaign: str, *, sent_ms: int | None = None) -> None:
        """A provider accepted a text (``sent_ms``: its attempt's time; None: now)."""
        await self._count(carrier, campaign, "sent", sent_ms, None)

    async def sent_once(
        self,
        msg_id: str,
        attempt: int,
        carrier: str,
        campaign: str,
        *,
        sent_ms: int,
        final: bool | None = None,
    ) -> bool:
        """Attempt ``attempt`` of ``msg_id`` went out: counted once, whichever path says
        so first (the send path's answer, the provider's look-up, a receipt for a text
        whose answer was lost), by ``a{n}:counted`` on its record (lua/watch_sent.lua).
        ``final``: the final receipt that proves it, delivered (True) or not (False),
        counted as ``receipt`` would, in the same script; None: no final receipt.
        True when this call counted the send.

        One EVALSHA, not a pipeline: redis-py sends SCRIPT EXISTS ahead of every
        pipeline that holds a script, a second round trip on every send."""
        now = now_ms()
        sends = _writes(self.layout, carrier, campaign, "sent", sent_ms, now, self.ns)
        receipt = (
            []
            if final is None
            else self._event_writes(carrier, campaign, "receipt", sent_ms, None, now, final)
        )
        writes = [*sends, *receipt]
        counted = await cast(
            Awaitable[int],
            self._sent_once(
                keys=[keys.message(msg_id, self.ns), *(k for k, _ in writes)],
                args=[f"a{attempt}:counted", len(sends), *(f for _, f in writes)],
            ),
        )
        name = pair_name(carrier, campaign)
        if self._listing_due(name, now):
            await self.client.zadd(keys.watch_pairs(self.ns), {name: now})
        return bool(counted)

    async def receipt(
        self,
        carrier: str,
        campaign: str,
        delivered: bool,
        *,
        sent_ms: int,
        at_ms: int | None = None,
    ) -> None:
        """A final receipt for a text sent at ``sent_ms``; it counts as late past due_s.

        ``at_ms``: when it came (None: now).
        """
        await self._count(carrier, campaign, "receipt", sent_ms, at_ms, delivered)

    async def overdue(self, carrier: str, campaign: str, *, sent_ms: int) -> None:
        """The receipt sweeper ended a text unconfirmed. Shown, not tested: the
        receipts signal counts texts without a receipt itself, from sent and receipts."""
        await self._count(carrier, campaign, "overdue", sent_ms, None)

    async def reply(
        self, carrier: str, campaign: str, *, sent_ms: int, at_ms: int | None = None
    ) -> None:
        """An inbound text answering a text of this pair sent at ``sent_ms``."""
        await self._count(carrier, campaign, "reply", sent_ms, at_ms)

    async def optout(
        self, carrier: str, campaign: str, *, sent_ms: int, at_ms: int | None = None
    ) -> None:
        """An opt-out answering a text of this pair sent at ``sent_ms``."""
        await self._count(carrier, campaign, "optout", sent_ms, at_ms)

    async def _count(
        self,
        carrier: str,
        campaign: str,
        event: str,
        sent_ms: int | None,
        at_ms: int | None,
        delivered: bool = True,
    ) -> None:
        now = now_ms()
        writes = self._event_writes(carrier, campaign, event, sent_ms, at_ms, now, delivered)
        if not writes:
            return  # nothing to count: no I/O
        pipe = self.client.pipeline(transaction=False)
        for key, fld in writes:
            pipe.hincrby(key, fld, 1)
        name = pair_name(carrier, campaign)
        if self._listing_due(name, now):
            pipe.zadd(keys.watch_pairs(self.ns), {name: now})
        await pipe.execute()

    def _event_writes(
        self,
        carrier: str,
        campaign: str,
        event: str,
        sent_ms: int | None,
        at_ms: int | None,
        now: int,
        delivered: bool,
    ) -> list[tuple[str, str]]:
        """The (key, field) pairs an event increments; none when it counts nowhere."""
        at = now if at_ms is None else at_ms
        counter = counter_for(self.layout, event, at if sent_ms is None else sent_ms, at, delivered)
        if counter is None:
            return []
        return _writes(self.layout, carrier, campaign, counter, sent_ms, now, self.ns)

    def _listing_due(self, name: str, now: int) -> bool:
        """List the pair as active (True: ZADD it now) at most once per bucket_s per process."""
        if now - self._listed.get(name, 0) < self.layout.bucket_s * 1000:
            return False
        self._listed[name] = now
        return True

    async def read(self, now: int | None = None) -> Snapshot:
        """Every active pair's counts, the trip records and the evidence marks."""
        now = now_ms() if now is None else now
        names = await cast(
            Awaitable[list[bytes]],
            self.client.zrangebyscore(
                keys.watch_pairs(self.ns), now - self.layout.keep_ms(), "+inf"
            ),
        )
        pipe = self.client.pipeline(transaction=False)
        for key in _read_keys(names, self.ns):
            pipe.hgetall(key)
        raws = await pipe.execute()
        # Thousands of fields a pair: read off the event loop, so sends go on meanwhile.
        return await asyncio.to_thread(_snapshot, self.layout, now, names, raws, self.ns)

    async def prune(self, snapshot: Snapshot) -> None:
        """Delete aged-out fields and pairs idle past everything kept (check round only)."""
        cutoff = snapshot.now_ms - self.layout.keep_ms()
        idle = await cast(
            Awaitable[list[bytes]],
            self.client.zrangebyscore(keys.watch_pairs(self.ns), "-inf", cutoff),
        )
        pipe = self.client.pipeline(transaction=False)
        for key, fields in snapshot.stale.items():
            pipe.hdel(key, *fields)
        for raw in idle:
            carrier, campaign = _split(_text(raw))
            pipe.delete(
                keys.watch_counts(carrier, campaign, self.ns),
                keys.watch_baseline(carrier, campaign, self.ns),
            )
            pipe.hdel(
                keys.watch_since(self.ns),
                pair_name(carrier, campaign),
                *(trip_key(carrier, campaign, s) for s in SIGNALS),
            )
        if idle:
            pipe.zrem(keys.watch_pairs(self.ns), *idle)
        await pipe.execute()

    async def take_round(self, ttl_ms: int) -> bool:
        """Claim this check round; False if another process holds it."""
        token = secrets.token_hex(8)
        got = await self.client.set(keys.watch_round(self.ns), token, nx=True, px=ttl_ms)
        return bool(got)

    async def record_trip(self, carrier: str, campaign: str, record: TripRecord) -> bool:
        """Keep a trip; True only for the first process to record it (it acts)."""
        k = trip_key(carrier, campaign, record.signal)
        got = await self.client.hsetnx(keys.watch_trips(self.ns), k, record.to_json())
        return bool(got)

    async def clear_trip(self, carrier: str, campaign: str, signal: str) -> bool:
        k = trip_key(carrier, campaign, signal)
        return bool(await self.client.hdel(keys.watch_trips(self.ns), k))

    async def restart_evidence(
        self, carrier: str, campaign: str, at_ms: int, signals: Sequence[str] = ()
    ) -> None:
        """Ignore the pair's cohorts sent before ``at_ms``: of every signal (an
        operator resumed it), or only of ``signals`` (the breaker's probes closed it)."""
        unknown = set(signals) - set(SIGNALS)
        if unknown:
            raise ValueError(f"not watch signals: {sorted(unknown)}")
        name = pair_name(carrier, campaign)
        fields = [trip_key(carrier, campaign, s) for s in signals] or [name]
        await self.client.hset(keys.watch_since(self.ns), mapping=dict.fromkeys(fields, at_ms))


class WatchCountersSync:
    """The same reads, synchronously: ``sendq carriers status`` and ``/metrics``."""

    def __init__(
        self, client: redis.Redis, layout: Layout, ns: str = keys.DEFAULT_NAMESPACE
    ) -> None:
        self.client = client
        self.layout = layout
        self.ns = ns

    def read(self, now: int | None = None) -> Snapshot:
        now = now_ms() if now is None else now
        names = cast(
            list[bytes],
            self.client.zrangebyscore(
                keys.watch_pairs(self.ns), now - self.layout.keep_ms(), "+inf"
            ),
        )
        pipe = self.client.pipeline(transaction=False)
        for key in _read_keys(names, self.ns):
            pipe.hgetall(key)
        return _snapshot(self.layout, now, names, pipe.execute(), self.ns)


def _writes(
    layout: Layout,
    carrier: str,
    campaign: str,
    counter: str,
    sent_ms: int | None,
    now: int,
    ns: str,
) -> list[tuple[str, str]]:
    """The (key, field) pairs one event increments; none for a text sent too long ago."""
    # A clock a little ahead on another host must not make a cohort from the future.
    at_s = min(now if sent_ms is None else sent_ms, now) // 1000
    code = CODES[counter]
    out: list[tuple[str, str]] = []
    fine = at_s - at_s % layout.bucket_s
    if fine >= layout.window_from_s(now):
        out.append((keys.watch_counts(carrier, campaign, ns), f"{fine}:{code}"))
    coarse = at_s - at_s % BASELINE_BUCKET_S
    if layout.baseline_s and coarse >= layout.baseline_from_s(now):
        out.append((keys.watch_baseline(carrier, campaign, ns), f"{coarse}:{code}"))
    return out


def _read_keys(names: Sequence[bytes], ns: str) -> list[str]:
    out: list[str] = [keys.watch_trips(ns), keys.watch_since(ns)]
    for raw in names:
        carrier, campaign = _split(_text(raw))
        out += [
            keys.watch_counts(carrier, campaign, ns),
            keys.watch_baseline(carrier, campaign, ns),
        ]
    return out


def _snapshot(
    layout: Layout, now: int, names: Sequence[bytes], raws: Sequence[Any], ns: str
) -> Snapshot:
    trips = {
        _text(k): TripRecord.from_json(_text(v))
        for k, v in cast(Mapping[bytes, bytes], raws[0]).items()
    }
    since = {_text(k): int(v) for k, v in cast(Mapping[bytes, bytes], raws[1]).items()}
    pairs: list[PairCounts] = []
    stale: dict[str, list[str]] = {}
    for i, raw in enumerate(names):
        carrier, campaign = _split(_text(raw))
        fine_key = keys.watch_counts(carrier, campaign, ns)
        base_key = keys.watch_baseline(carrier, campaign, ns)
        fine = _buckets(raws[2 + 2 * i], layout.window_from_s(now), stale.setdefault(fine_key, []))
        base = _buckets(
            raws[3 + 2 * i], layout.baseline_from_s(now), stale.setdefault(base_key, [])
        )
        since_ms = since.get(pair_name(carrier, campaign), 0)
        by_signal = {s: since[k] for s in SIGNALS if (k := trip_key(carrier, campaign, s)) in since}
        pairs.append(PairCounts(carrier, campaign, fine, base, since_ms, by_signal))
    stale = {k: v for k, v in stale.items() if v}
    return Snapshot(now, tuple(pairs), trips, stale)


def _buckets(raw: Mapping[bytes, bytes], oldest_s: int, stale: list[str]) -> dict[int, Counts]:
    out: dict[int, Counts] = {}
    for k, v in raw.items():
        fld = _text(k)
        start, _, code = fld.partition(":")
        name = NAMES.get(code)
        if not start.isdigit() or name is None:
            continue  # not ours: left alone
        if int(start) < oldest_s:
            stale.append(fld)
            continue
        counts = out.setdefault(int(start), Counts())
        setattr(counts, name, getattr(counts, name) + int(v))
    return out


def _split(name: str) -> tuple[str, str]:
    carrier, _, campaign = name.partition(":")
    return carrier, campaign


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v
