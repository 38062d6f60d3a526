"""A gate looks at a claimed text and says go, hold or end.

    go    the next gate, then the route
    hold  wait, with a reason: on a hold list (``hold_list``: released by the
          hold keeper, oldest first) or until a time (``until_ms``: the text is
          redelivered then, on the timed queue), or both
    end   a final status, with a reason; nothing is sent

A gate that reads or writes Redis declares it in its module (``READS`` and
``WRITES``, as key families of ``worker.keys``), so several gates can later be
folded into one admission script, one round trip for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from worker.models import Status
from worker.sendpath.text import Text


class Kind(StrEnum):
    GO = "go"
    HOLD = "hold"
    END = "end"


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: Kind
    reason: str = ""
    status: Status | None = None
    hold_list: str | None = None
    until_ms: int | None = None
    # Record fields the gate learnt (e.g. the carrier), written with the change.
    fields: dict[str, str] = field(default_factory=dict)


GO = Verdict(Kind.GO)


def hold(
    reason: str,
    *,
    hold_list: str | None = None,
    until_ms: int | None = None,
    fields: dict[str, str] | None = None,
) -> Verdict:
    return Verdict(Kind.HOLD, reason, Status.HELD, hold_list, until_ms, fields or {})


def end(status: Status, reason: str) -> Verdict:
    return Verdict(Kind.END, reason, status)


class Gate(Protocol):
    """One check on the send path, in its own module."""

    name: str

    async def check(self, text: Text) -> Verdict: ...
