"""Each organisation's opt-out list, its review list of possible opt-outs, and their audit.

An organisation's list is a hash, E.164 number -> JSON entry ``{at_ms, source, by,
cause}``, so the send path's question "is this person opted out?" is one HEXISTS.
Every change goes through ``lua/optout.lua``, which writes the change and its entry
in the audit stream together (who or what made it, when, and the inbound text or
provider answer that caused it). The list is Redis data: it survives restarts with
the server's AOF.

``OptoutList`` is the synchronous side (CLI, producers), ``AsyncOptoutList`` the
asynchronous one (workers, webhooks). Both take numbers already in E.164 and
refuse anything else; ``import_rows`` reads numbers as people write them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache
from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript, Script

from worker import keys, lua
from worker.errors import InvalidInput, InvalidNumber
from worker.models import ORG_RE
from worker.phone import DEFAULT_REGION, to_e164
from worker.store import now_ms

E164_RE = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
# The audit stream is trimmed (approximately) past this many entries, all
# organisations together; each list entry keeps its own when, who and cause.
AUDIT_MAX_ENTRIES = 1_000_000
DEFAULT_IMPORT_BATCH = 500
DEFAULT_EXPORT_CHUNK = 1000
DEFAULT_AUDIT_COUNT = 100
# Past this many audit entries read without enough for the organisation, stop looking.
AUDIT_SCAN_LIMIT = 100_000
Cause = Mapping[str, str | int | None]


class Source(StrEnum):
    """What kind of thing made a change."""

    INBOUND = "inbound"  # the person's own text (STOP, START, a possible opt-out)
    PROVIDER_ANSWER = "provider_answer"  # a send answered "opted out" (Twilio 21610, ...)
    RECEIPT = "receipt"  # a delivery receipt with an opted-out error code
    OPERATOR = "operator"  # sendq optouts add/remove/review
    IMPORT = "import"  # sendq optouts import FILE


def inbound_cause(inbound_id: str, provider: str) -> dict[str, str]:
    """The cause of a change a person's text made: that text, and who carried it."""
    return {"inbound_id": inbound_id, "provider": provider}


def provider_cause(message_id: str, provider: str, error_code: str) -> dict[str, str]:
    """The cause of a change a provider's answer made: the text, the provider, its code."""
    return {"message_id": message_id, "provider": provider, "error_code": error_code}


def operator_cause(reason: str) -> dict[str, str]:
    return {"reason": reason}


class LineOutcome(StrEnum):
    ADDED = "added"
    ALREADY = "already"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class ImportLine:
    line: int
    outcome: LineOutcome
    number: str | None = None  # the E.164 form, when it could be read
    reason: str = ""  # why it was rejected


@dataclass(slots=True)
class ImportReport:
    added: int = 0
    already: int = 0
    rejected: list[ImportLine] = field(default_factory=list)


@lru_cache(maxsize=256)
def check_org(org: str) -> str:
    if not isinstance(org, str) or not ORG_RE.fullmatch(org):
        raise InvalidInput("org", f"{org!r} is not an organisation name (letters, digits, _ . -)")
    return org


def check_number(number: str) -> str:
    if not isinstance(number, str) or not E164_RE.fullmatch(number):
        raise InvalidNumber("number", f"{number!r} is not in E.164 (+ and 7 to 15 digits)")
    return number


def _source(value: Source | str) -> Source:
    try:
        return Source(value)
    except ValueError:
        known = ", ".join(s.value for s in Source)
        raise InvalidInput("source", f"unknown source {value!r}; known: {known}") from None


def _by(value: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("by", "must name who or what made the change")
    return value


def change_args(
    op: str,
    org: str,
    number: str,
    *,
    source: Source | str,
    by: str,
    cause: Cause,
    detail: Mapping[str, str] | None = None,
    ns: str = keys.DEFAULT_NAMESPACE,
) -> tuple[list[str], list[str]]:
    """KEYS and ARGV of one lua/optout.lua call, checked."""
    check_org(org)
    check_number(number)
    script_keys = [keys.optouts(org, ns), keys.optout_review(org, ns), keys.optout_audit(ns)]
    argv = [
        op,
        org,
        number,
        str(now_ms()),
        _source(source).value,
        _by(by),
        json.dumps({k: "" if v is None else str(v) for k, v in cause.items()}),
        json.dumps(dict(detail or {})),
        str(AUDIT_MAX_ENTRIES),
    ]
    return script_keys, argv


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(raw: Any) -> dict[str, Any] | None:
    return None if raw is None else cast(dict[str, Any], json.loads(_s(raw)))


def decode_audit(entry_id: Any, fields: Mapping[Any, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": _s(entry_id), **{_s(k): _s(v) for k, v in fields.items()}}
    entry["at_ms"] = int(entry.get("at_ms", 0))
    entry["cause"] = json.loads(entry.get("cause") or "{}")
    return entry


class OptoutList:
    """Synchronous access: the CLI and producers."""

    def __init__(self, client: redis.Redis, ns: str = keys.DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.ns = ns
        self._script: Script = client.register_script(lua.source("optout"))

    def _change(self, op: str, org: str, number: str, **kw: Any) -> int:
        k, a = change_args(op, org, number, ns=self.ns, **kw)
        return int(cast(int, self._script(keys=k, args=a)))

    def add(self, org: str, number: str, *, source: Source | str, by: str, cause: Cause) -> bool:
        """Opt a number out; True when it was not opted out before."""
        return self._change("add", org, number, source=source, by=by, cause=cause) == 1

    def remove(self, org: str, number: str, *, source: Source | str, by: str, cause: Cause) -> bool:
        """Opt a number back in; True when it was opted out. Any review flag goes too."""
        return self._change("remove", org, number, source=source, by=by, cause=cause) == 1

    def is_opted_out(self, org: str, number: str) -> bool:
        check_org(org)
        return bool(self.client.hexists(keys.optouts(org, self.ns), check_number(number)))

    def opted_out_among(self, org: str, numbers: Iterable[str]) -> set[str]:
        """Which of these numbers are opted out, in one pipelined round trip."""
        check_org(org)
        wanted = [check_number(n) for n in numbers]
        pipe = self.client.pipeline(transaction=False)
        for number in wanted:
            pipe.hexists(keys.optouts(org, self.ns), number)
        return {n for n, hit in zip(wanted, pipe.execute(), strict=True) if hit}

    def entry(self, org: str, number: str) -> dict[str, Any] | None:
        """When, how (source), by whom and why the number was opted out; None if it is not."""
        check_org(org)
        return decode_entry(self.client.hget(keys.optouts(org, self.ns), check_number(number)))

    def count(self, org: str) -> int:
        return int(self.client.hlen(keys.optouts(check_org(org), self.ns)))

    def flag(
        self,
        org: str,
        number: str,
        *,
        inbound_id: str,
        body: str,
        provider: str = "",
        rule: str = "",
        by: str = "inbound",
    ) -> bool:
        """List a possible opt-out for review; False when already flagged or opted out."""
        cause, detail = inbound_cause(inbound_id, provider), {"body": body, "rule": rule}
        kw = {"source": Source.INBOUND, "by": by, "cause": cause, "detail": detail}
        return self._change("flag", org, number, **kw) == 1

    def flag_of(self, org: str, number: str) -> dict[str, Any] | None:
        """The number's review flag (when, the text, its rule and cause); None if unflagged."""
        key = keys.optout_review(check_org(org), self.ns)
        return decode_entry(self.client.hget(key, check_number(number)))

    def review(self, org: str) -> list[dict[str, Any]]:
        """The flagged numbers of an organisation, oldest flag first."""
        key = keys.optout_review(check_org(org), self.ns)
        rows = [
            {"number": _s(number), **cast(dict[str, Any], decode_entry(raw))}
            for number, raw in self.client.hscan_iter(key, count=DEFAULT_EXPORT_CHUNK)
        ]
        return sorted(rows, key=lambda r: (int(r.get("at_ms", 0)), r["number"]))

    def confirm(self, org: str, number: str, *, by: str, reason: str = "") -> bool | None:
        """Take a flagged number as opted out. True: added; False: it already was
        (the flag is dropped); None: it was not flagged."""
        cause = operator_cause(reason or "confirmed on review")
        got = self._change("confirm", org, number, source=Source.OPERATOR, by=by, cause=cause)
        return None if got == -1 else got == 1

    def dismiss(self, org: str, number: str, by: str, reason: str = "") -> bool:
        """Drop a flag without opting the number out; False when it was not flagged."""
        cause = operator_cause(reason or "dismissed on review")
        return self._change("dismiss", org, number, source=Source.OPERATOR, by=by, cause=cause) == 1

    def import_rows(
        self,
        org: str,
        rows: Iterable[tuple[int, str]],
        *,
        by: str,
        region: str = DEFAULT_REGION,
        batch_size: int = DEFAULT_IMPORT_BATCH,
        on_batch: Callable[[list[ImportLine]], None] | None = None,
    ) -> ImportReport:
        """Opt out every readable number of (line, number as written), in pipelined
        batches. Only adds: a file never opts anyone back in. Each line is reported to
        ``on_batch`` as its batch finishes; the report counts them and keeps rejects."""
        check_org(org)
        _by(by)
        report = ImportReport()
        batch: list[tuple[int, str]] = []
        for line, text in rows:
            batch.append((line, text))
            if len(batch) >= batch_size:
                self._import_batch(org, batch, by, region, report, on_batch)
                batch = []
        if batch:
            self._import_batch(org, batch, by, region, report, on_batch)
        return report

    def _import_batch(
        self,
        org: str,
        batch: list[tuple[int, str]],
        by: str,
        region: str,
        report: ImportReport,
        on_batch: Callable[[list[ImportLine]], None] | None,
    ) -> None:
        done: list[ImportLine] = []
        readable: list[tuple[int, str]] = []
        for line, text in batch:
            try:
                readable.append((line, to_e164(text.strip(), region)))
            except InvalidNumber as exc:
                done.append(ImportLine(line, LineOutcome.REJECTED, reason=exc.reason))
        pipe = self.client.pipeline(transaction=False)
        for line, number in readable:
            cause = {"line": line}
            k, a = change_args(
                "import", org, number, source="import", by=by, cause=cause, ns=self.ns
            )
            self._script(keys=k, args=a, client=pipe)
        for (line, number), added in zip(readable, pipe.execute(), strict=True):
            outcome = LineOutcome.ADDED if int(added) == 1 else LineOutcome.ALREADY
            done.append(ImportLine(line, outcome, number))
        done.sort(key=lambda d: d.line)
        for d in done:
            if d.outcome is LineOutcome.ADDED:
                report.added += 1
            elif d.outcome is LineOutcome.ALREADY:
                report.already += 1
            else:
                report.rejected.append(d)
        if on_batch is not None:
            on_batch(done)

    def export(
        self, org: str, chunk: int = DEFAULT_EXPORT_CHUNK
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every (number, entry), read with HSCAN ``chunk`` at a time: bounded memory.

        HSCAN's guarantee: a number on the list for the whole export is given at
        least once; one added or removed meanwhile may or may not be, and a
        number can repeat if the hash shrinks during the scan.
        """
        key = keys.optouts(check_org(org), self.ns)
        for number, raw in self.client.hscan_iter(key, count=chunk):
            yield _s(number), cast(dict[str, Any], decode_entry(raw))

    def audit(
        self, org: str | None = None, count: int = DEFAULT_AUDIT_COUNT
    ) -> list[dict[str, Any]]:
        """Audit entries, newest first; only one organisation's when ``org`` is given."""
        if org is not None:
            check_org(org)
        out: list[dict[str, Any]] = []
        cursor, read = "+", 0
        while len(out) < count and read < AUDIT_SCAN_LIMIT:
            raw = cast(
                list[tuple[bytes, dict[bytes, bytes]]],
                self.client.xrevrange(keys.optout_audit(self.ns), max=cursor, count=500),
            )
            if not raw:
                break
            read += len(raw)
            for entry_id, fields in raw:
                entry = decode_audit(entry_id, fields)
                if org is None or entry.get("org") == org:
                    out.append(entry)
            cursor = "(" + _s(raw[-1][0])
        return out[:count]


class AsyncOptoutList:
    """Asynchronous access: the send path's gate and the webhooks."""

    def __init__(self, client: aioredis.Redis, ns: str = keys.DEFAULT_NAMESPACE) -> None:
        self.client = client
        self.ns = ns
        self._script: AsyncScript = client.register_script(lua.source("optout"))

    async def _change(self, op: str, org: str, number: str, **kw: Any) -> int:
        k, a = change_args(op, org, number, ns=self.ns, **kw)
        return int(await cast(Awaitable[int], self._script(keys=k, args=a)))

    async def is_opted_out(self, org: str, number: str) -> bool:
        """One HEXISTS: the send path asks this of every text."""
        key = keys.optouts(check_org(org), self.ns)
        return bool(await self.client.hexists(key, check_number(number)))

    async def add(
        self, org: str, number: str, *, source: Source | str, by: str, cause: Cause
    ) -> bool:
        return await self._change("add", org, number, source=source, by=by, cause=cause) == 1

    async def remove(
        self, org: str, number: str, *, source: Source | str, by: str, cause: Cause
    ) -> bool:
        return await self._change("remove", org, number, source=source, by=by, cause=cause) == 1

    async def entry(self, org: str, number: str) -> dict[str, Any] | None:
        key = keys.optouts(check_org(org), self.ns)
        return decode_entry(await cast(Awaitable[Any], self.client.hget(key, check_number(number))))

    async def flag(
        self,
        org: str,
        number: str,
        *,
        inbound_id: str,
        body: str,
        provider: str = "",
        rule: str = "",
        by: str = "inbound",
    ) -> bool:
        cause, detail = inbound_cause(inbound_id, provider), {"body": body, "rule": rule}
        kw = {"source": Source.INBOUND, "by": by, "cause": cause, "detail": detail}
        return await self._change("flag", org, number, **kw) == 1
