"""The quiet-hours gate on its own: Text objects in, verdicts out (no Redis: the policy is pure)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from worker.models import Status
from worker.quiet import QuietPolicy
from worker.sendpath.gates import Kind
from worker.sendpath.gates import quiet as quiet_gate
from worker.sendpath.gates.quiet import QuietHoursGate, spread_offset_ms
from worker.sendpath.text import Text

CHICAGO = "+13125551234"
IDAHO = "+12085551234"


def at(local: str, zone: str = "America/Chicago") -> int:
    wall = dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone))
    return int(wall.timestamp() * 1000)


def text(msg_id: str = "0190a1b2c3d4e5f60718", to: str = CHICAGO, campaign: str = "gotv") -> Text:
    return Text(id=msg_id, record={"to": to, "campaign": campaign, "status": "sending"})


def gate_at(local: str, **policies: QuietPolicy) -> QuietHoursGate:
    return QuietHoursGate(policies or {"gotv": QuietPolicy("21:00-08:00")}, clock=lambda: at(local))


async def test_a_text_in_quiet_hours_is_held_until_its_window_opens() -> None:
    verdict = await gate_at("2026-03-10 03:00").check(text())
    assert verdict.kind == Kind.HOLD and verdict.status == Status.HELD
    assert verdict.reason == "quiet hours 21:00-08:00 in America/Chicago until 08:00"
    assert verdict.fields == {"held_for": "quiet_hours"}
    assert verdict.hold_list is None
    opening = at("2026-03-10 08:00")
    assert verdict.until_ms is not None
    assert opening <= verdict.until_ms < opening + quiet_gate.SPREAD_MS


async def test_a_text_in_its_window_goes() -> None:
    assert (await gate_at("2026-03-10 12:00").check(text())).kind == Kind.GO


async def test_a_campaign_without_quiet_hours_goes_at_3_am() -> None:
    verdict = await gate_at("2026-03-10 03:00").check(text(campaign="no-window"))
    assert verdict.kind == Kind.GO


async def test_the_gate_reads_the_time_from_its_injected_clock() -> None:
    now = [at("2026-03-10 07:59:59")]
    gate = QuietHoursGate({"gotv": QuietPolicy("21:00-08:00")}, clock=lambda: now[0])
    assert (await gate.check(text())).kind == Kind.HOLD
    now[0] += 1000
    assert (await gate.check(text())).kind == Kind.GO


async def test_a_number_no_moment_suits_ends_failed_with_the_reason() -> None:
    gate = gate_at("2026-03-10 12:00", gotv=QuietPolicy("09:00-08:00"))
    verdict = await gate.check(text(to=IDAHO))
    assert verdict.kind == Kind.END and verdict.status == Status.FAILED
    assert "no time in 8 days" in verdict.reason


async def test_a_held_text_gets_the_same_release_time_each_time_it_is_held() -> None:
    gate = gate_at("2026-03-10 03:00")
    first, again = await gate.check(text("abc")), await gate.check(text("abc"))
    assert first.until_ms == again.until_ms


async def test_a_nights_backlog_is_released_over_a_few_seconds_from_the_opening() -> None:
    gate = gate_at("2026-03-10 03:00")
    opening = at("2026-03-10 08:00")
    releases = [(await gate.check(text(f"{n:022x}"))).until_ms for n in range(20_000)]
    offsets = sorted(r - opening for r in releases if r is not None)
    assert len(offsets) == 20_000
    assert offsets[0] >= 0 and offsets[-1] < quiet_gate.SPREAD_MS
    assert offsets[0] < 10  # the first texts go at the opening itself
    per_second = [sum(1 for o in offsets if s * 1000 <= o < (s + 1) * 1000) for s in range(5)]
    assert all(3_000 < n < 5_000 for n in per_second), per_second  # no second takes them all


def test_the_spread_can_be_turned_off() -> None:
    assert spread_offset_ms("abc", 0) == 0
    assert spread_offset_ms("abc", 1) == 0
    assert 0 <= spread_offset_ms("abc", 250) < 250


def test_the_gate_declares_no_redis_keys() -> None:
    assert quiet_gate.READS == () and quiet_gate.WRITES == ()
