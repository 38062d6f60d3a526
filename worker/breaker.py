"""Circuit breakers shared in Redis: closed, open, half-open and paused.

One implementation serves provider breakers (a provider fault fails over)
and carrier x campaign breakers (a carrier rejection holds texts). The state
machine is ``lua/breaker.lua``; this module holds the policy and the calls.

- closed: everything goes. Opens on ``consecutive`` failures in a row, or a
  failure rate of at least ``failure_rate`` over ``window_s`` once there are
  ``min_calls`` calls in it.
- open: nothing goes until the cool-down ends. The cool-down doubles on each
  re-open, up to ``cooldown_max_s`` (Envoy's ejection-time backoff).
- half_open: ``probes`` calls go; that many successes close it, one failure
  re-opens it. Probes that have not reported within ``probe_timeout_s`` are
  given up on (not counted as failures) and a new round of probes may go.
- paused: an operator's decision; only an operator's resume lifts it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript, Script

from worker import keys, lua
from worker.store import now_ms
from worker.verdicts import FAILURE_WEIGHT, SUCCESS_WEIGHT

DEFAULT_CACHE_MS = 200
DEFAULT_PROBE_TIMEOUT_S = 30.0
# breaker.lua's name for itself as the author of a transition (opens, probes).
AUTO = "auto"


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class Policy:
    window_s: float = 30.0
    bucket_s: float = 1.0
    min_calls: int = 20
    failure_rate: float = 0.5
    consecutive: int = 5
    cooldown_s: float = 5.0
    cooldown_max_s: float = 300.0
    probes: int = 3
    probe_timeout_s: float = DEFAULT_PROBE_TIMEOUT_S

    def argv(self) -> str:
        return " ".join(
            str(int(v))
            for v in (
                self.window_s * 1000,
                self.bucket_s * 1000,
                self.min_calls,
                self.failure_rate * 1000,
                self.consecutive,
                self.cooldown_s * 1000,
                self.cooldown_max_s * 1000,
                self.probes,
                self.probe_timeout_s * 1000,
                FAILURE_WEIGHT,
            )
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of a breaker call: allowed (or changed), state, when to look again."""

    allowed: bool
    state: State
    retry_at_ms: int
    transition: str
    # The transition's reason (counts and codes, or the operator's), "" without one.
    why: str = ""


def _decode(raw: Sequence[Any]) -> Decision:
    def s(v: Any) -> str:
        return v.decode() if isinstance(v, bytes) else str(v)

    why = s(raw[4]) if len(raw) > 4 else ""
    return Decision(bool(int(raw[0])), State(s(raw[1])), int(raw[2]), s(raw[3]), why)


def resumed_at(state: str, since_ms: int, resumed_ms: int, by: str) -> int:
    """When an operator last resumed the breaker, epoch ms (0: never).

    breaker.lua keeps ``resumed_ms``; one an older version resumed has none, but
    only an operator's resume or the probes (by AUTO) close a breaker, so a closed
    one whose last change was not by AUTO was resumed then."""
    if state == State.CLOSED and since_ms > resumed_ms and by and by != AUTO:
        return since_ms
    return resumed_ms


def _call_args(
    kind: str, name: str, command: str, policy: Policy, ns: str, *extra: str
) -> tuple[list[str], list[str]]:
    k = [keys.breaker(kind, name, ns), keys.breaker_window(kind, name, ns), keys.audit(ns)]
    return k, [command, str(now_ms()), kind, name, policy.argv(), *extra]


class AsyncBreakers:
    """The worker's side: admit before a send, record after it.

    Two shortcuts keep the common case off Redis, within bounds: a *closed*
    answer is trusted for ``cache_ms`` (so a worker learns that a breaker
    opened within that time), and successes seen while closed are counted
    locally and written in one batch every ``cache_ms``. Failures, and
    anything while a breaker is not closed, go to Redis at once.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        kind: str,
        policy: Policy,
        ns: str = keys.DEFAULT_NAMESPACE,
        *,
        cache_ms: int = DEFAULT_CACHE_MS,
    ) -> None:
        self.client = client
        self.kind = kind
        self.policy = policy
        self.ns = ns
        self.cache_ms = cache_ms
        self._script: AsyncScript = client.register_script(lua.source("breaker"))
        self._known: set[str] = set()
        self._closed_until: dict[str, int] = {}
        self._pending: dict[str, tuple[int, int]] = {}  # name -> (successes, first at ms)

    async def _run(
        self, name: str, command: str, *extra: str, wider: str | None = None
    ) -> Decision:
        if name not in self._known:
            # Remember the name so status commands can list every breaker.
            await self.client.sadd(keys.breaker_names(self.kind, self.ns), name)
            self._known.add(name)
        k, a = _call_args(self.kind, name, command, self.policy, self.ns, *extra)
        if wider is not None:
            k.append(keys.breaker(self.kind, wider, self.ns))
        decision = _decode(await cast(Awaitable[list[Any]], self._script(keys=k, args=a)))
        if decision.state is State.CLOSED:
            self._closed_until[name] = now_ms() + self.cache_ms
        else:
            self._closed_until.pop(name, None)
        return decision

    def _trusted_closed(self, name: str) -> bool:
        return self._closed_until.get(name, 0) > now_ms()

    async def admit(self, name: str, *, wider: str | None = None) -> Decision:
        """May a send go? ``wider`` names a breaker whose pause covers this one too."""
        if self._trusted_closed(name):
            return Decision(True, State.CLOSED, 0, "")
        return await self._run(name, "admit", wider=wider)

    async def record(self, name: str, weight: int, code: str = "") -> Decision:
        if weight == SUCCESS_WEIGHT and self._trusted_closed(name):
            count, first_ms = self._pending.get(name, (0, now_ms()))
            self._pending[name] = (count + 1, first_ms)
            if now_ms() - first_ms < self.cache_ms:
                return Decision(False, State.CLOSED, 0, "")
            return await self.flush(name)
        await self.flush(name)
        return await self._run(name, "record", str(weight), code, "1")

    async def pause(self, name: str, *, who: str, reason: str) -> Decision:
        """Pause as an operator would (the deliverability watch does, with its
        evidence as the reason): only an operator's resume lifts it."""
        self._closed_until.pop(name, None)
        return await self._run(name, "pause", who, reason)

    async def claim_probes(self, name: str) -> int:
        """How many held texts may go now as probes (HoldKeeper's question).

        At most one claim per probe round succeeds, across every worker, so
        texts released as probes and still on their way are not released again.
        """
        k, a = _call_args(self.kind, name, "claim", self.policy, self.ns)
        raw = await cast(Awaitable[list[Any]], self._script(keys=k, args=a))
        return int(raw[0])

    async def names(self) -> list[str]:
        raw = await cast(
            Awaitable[set[bytes]], self.client.smembers(keys.breaker_names(self.kind, self.ns))
        )
        return sorted(n.decode() for n in raw)

    async def state(self, name: str) -> State:
        raw = await cast(
            Awaitable[bytes | None],
            self.client.hget(keys.breaker(self.kind, name, self.ns), "state"),
        )
        return State(raw.decode()) if raw else State.CLOSED

    async def state_since(self, name: str) -> tuple[State, int, int]:
        """The breaker's state, when it began and when an operator last resumed it,
        epoch ms (0: never)."""
        raw = await cast(
            Awaitable[list[bytes | None]],
            self.client.hmget(
                keys.breaker(self.kind, name, self.ns), ["state", "since_ms", "resumed_ms", "by"]
            ),
        )
        state = State(raw[0].decode()) if raw[0] else State.CLOSED
        since_ms, resumed_ms = int(raw[1] or 0), int(raw[2] or 0)
        by = raw[3].decode() if raw[3] else ""
        return state, since_ms, resumed_at(state, since_ms, resumed_ms, by)

    async def blocks_below(self, wide: str) -> bool:
        """Does breaker ``wide`` (a carrier-wide one) hold every campaign under it now?

        The rule is breaker.lua's, the one admit applies to ``wider``.
        """
        k, a = _call_args(self.kind, wide, "blocks", self.policy, self.ns)
        raw = await cast(Awaitable[list[Any]], self._script(keys=k, args=a))
        return int(raw[0]) == 1

    async def flush(self, name: str) -> Decision:
        count, _ = self._pending.pop(name, (0, 0))
        if not count:
            return Decision(False, State.CLOSED, 0, "")
        return await self._run(name, "record", str(SUCCESS_WEIGHT), "", str(count))


class Breakers:
    """The operator's side: status, pause, resume, history."""

    def __init__(
        self, client: redis.Redis, kind: str, policy: Policy, ns: str = keys.DEFAULT_NAMESPACE
    ) -> None:
        self.client = client
        self.kind = kind
        self.policy = policy
        self.ns = ns
        self._script: Script = client.register_script(lua.source("breaker"))

    def _run(self, name: str, command: str, *extra: str) -> Decision:
        self.client.sadd(keys.breaker_names(self.kind, self.ns), name)
        k, a = _call_args(self.kind, name, command, self.policy, self.ns, *extra)
        return _decode(cast(list[Any], self._script(keys=k, args=a)))

    def pause(self, name: str, *, who: str, reason: str) -> Decision:
        return self._run(name, "pause", who, reason)

    def resume(self, name: str, *, who: str, reason: str = "resumed by operator") -> Decision:
        return self._run(name, "resume", who, reason)

    def names(self) -> list[str]:
        raw = cast(set[bytes], self.client.smembers(keys.breaker_names(self.kind, self.ns)))
        return sorted(n.decode() for n in raw)

    def status(self, name: str) -> dict[str, Any]:
        raw = cast(dict[bytes, bytes], self.client.hgetall(keys.breaker(self.kind, name, self.ns)))
        state = {k.decode(): v.decode() for k, v in raw.items()}
        # The window is read by breaker.lua, which owns its layout.
        k, a = _call_args(self.kind, name, "status", self.policy, self.ns)
        calls, failures = (int(v) for v in cast(list[Any], self._script(keys=k, args=a)))
        return {
            "name": name,
            "state": state.get("state", State.CLOSED.value),
            "since_ms": int(state.get("since_ms", 0)),
            "why": state.get("why", ""),
            "by": state.get("by", ""),
            "window_calls": calls,
            "window_failures": round(failures / FAILURE_WEIGHT, 2),
            "consecutive": int(state.get("consecutive", 0)),
            "reopens": int(state.get("reopens", 0)),
            "resumed_ms": resumed_at(
                state.get("state", State.CLOSED.value),
                int(state.get("since_ms", 0)),
                int(state.get("resumed_ms", 0)),
                state.get("by", ""),
            ),
        }

    def history(self, name: str, count: int = 100) -> list[dict[str, str]]:
        """This breaker's audit entries, newest first."""
        out: list[dict[str, str]] = []
        cursor = "+"
        while len(out) < count:
            raw = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                self.client.xrevrange(keys.audit(self.ns), max=cursor, count=500),
            )
            if not raw:
                break
            for entry_id, fields in raw:
                entry = {k.decode(): v.decode() for k, v in fields.items()}
                if entry.get("kind") == self.kind and entry.get("name") == name:
                    out.append({"id": entry_id.decode(), **entry})
            cursor = "(" + raw[-1][0].decode()
        return out[:count]
