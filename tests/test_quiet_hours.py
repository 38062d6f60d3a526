"""Quiet hours, the policy: windows, zones, state rules, DST, and when a text may next go."""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers.geodata import GEOCODE_DATA
from pydantic import ValidationError

from worker.quiet import NoOpening, QuietPolicy, Window, local_time_ok, parse_window, states, zones
from worker.quiet.window import DAY_S
from worker.settings import CampaignSettings

CHICAGO = "+13125551234"
NEW_YORK = "+12125551234"
PHOENIX = "+16025551234"
NEW_JERSEY = "+12015550123"
DALLAS = "+12145551234"
JACKSON_MS = "+16015551234"
SALT_LAKE = "+18015551234"
PROVIDENCE = "+14015551234"
IDAHO = "+12085551234"  # America/Boise and America/Los_Angeles
TOLL_FREE = "+18005551234"
UNPLACED = "+19995551234"  # phonenumbers: Etc/Unknown


def at(local: str, zone: str, fold: int = 0) -> int:
    """Epoch ms of a wall-clock time in a zone."""
    wall = dt.datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone), fold=fold)
    return int(wall.timestamp() * 1000)


def wall(ms: int, zone: str) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


# --- the window -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start_s", "end_s"),
    [
        ("21:00-08:00", 21 * 3600, 8 * 3600),
        ("21:00:00-08:00:30", 21 * 3600, 8 * 3600 + 30),
        (" 9:30 - 17:00 ", 9 * 3600 + 1800, 17 * 3600),
        ("00:00-06:00", 0, 6 * 3600),
    ],
)
def test_a_window_is_start_and_end_in_local_time(text: str, start_s: int, end_s: int) -> None:
    assert parse_window(text) == Window(start_s, end_s)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("25:00-08:00", "25:00 is not a time of day"),
        ("21:60-08:00", "21:60 is not a time of day"),
        ("21:00", "is not a window"),
        ("21:00-21:00", "starts and ends at the same time"),
        ("nine to five", "is not a window"),
        ("21h-8h", "is not a window"),
        ("", "is not a window"),
    ],
)
def test_a_malformed_window_is_refused_naming_the_value(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)) as caught:
        parse_window(text)
    assert repr(text) in str(caught.value)


def test_the_campaign_setting_is_refused_with_the_windows_reason() -> None:
    with pytest.raises(ValidationError, match=r"'21:00-21:00' starts and ends at the same time"):
        CampaignSettings(quiet_hours="21:00-21:00")


# --- examples ------------------------------------------------------------------------------


def test_a_chicago_number_at_3_am_is_held_until_8() -> None:
    decision = QuietPolicy("21:00-08:00").decide(CHICAGO, at("2026-03-10 03:00", "America/Chicago"))
    assert decision.until_ms == at("2026-03-10 08:00", "America/Chicago")
    assert decision.reason == "quiet hours 21:00-08:00 in America/Chicago until 08:00"


def test_a_text_may_go_at_the_first_second_of_the_window() -> None:
    policy = QuietPolicy("21:00-08:00:30")
    opening = at("2026-03-10 08:00:30", "America/Chicago")
    assert policy.next_allowed_ms(CHICAGO, opening - 1000) == opening
    assert policy.next_allowed_ms(CHICAGO, opening) is None
    assert policy.next_allowed_ms(CHICAGO, at("2026-03-10 20:59:59", "America/Chicago")) is None
    assert policy.next_allowed_ms(CHICAGO, at("2026-03-10 21:00:00", "America/Chicago")) is not None


def test_a_new_jersey_number_at_830_pm_is_held_only_under_state_rules() -> None:
    now = at("2026-06-03 20:30", "America/New_York")
    held = QuietPolicy("21:00-08:00", state_rules=True).decide(NEW_JERSEY, now)
    assert held.until_ms == at("2026-06-04 08:00", "America/New_York")
    assert held.reason == "New Jersey state hours in America/New_York until 08:00"
    assert QuietPolicy("21:00-08:00", state_rules=False).decide(NEW_JERSEY, now).allowed
    assert QuietPolicy("21:00-08:00").decide(NEW_YORK, now).allowed  # New York has no rule


@pytest.mark.parametrize(
    ("local", "until"),
    [
        ("2026-03-15 10:00", "2026-03-15 12:00"),  # Sunday: not before noon
        ("2026-03-15 21:30", "2026-03-16 09:00"),  # Sunday night: Monday at nine
        ("2026-03-14 08:30", "2026-03-14 09:00"),  # Saturday: not before nine
        ("2026-03-14 10:00", None),
        ("2026-03-15 12:00", None),
    ],
)
def test_texas_keeps_its_sunday_and_weekday_hours(local: str, until: str | None) -> None:
    policy = QuietPolicy("21:00-08:00")
    expected = None if until is None else at(until, "America/Chicago")
    assert policy.next_allowed_ms(DALLAS, at(local, "America/Chicago")) == expected


def test_mississippi_counts_its_hours_in_standard_time_all_year() -> None:
    policy = QuietPolicy("21:00-08:00")
    summer = policy.decide(JACKSON_MS, at("2026-07-15 08:30", "America/Chicago"))
    assert summer.until_ms == at("2026-07-15 09:00", "America/Chicago")  # 08:00 CST
    assert "Central Standard Time" in summer.reason
    assert policy.decide(JACKSON_MS, at("2026-01-14 08:30", "America/Chicago")).allowed
    sunday = policy.decide(JACKSON_MS, at("2026-01-18 12:00", "America/Chicago"))
    assert sunday.until_ms == at("2026-01-19 08:00", "America/Chicago")
    assert sunday.reason.endswith("until 08:00")  # the next 08:00: within a day, unambiguous
    saturday_night = policy.decide(JACKSON_MS, at("2026-01-17 20:30", "America/Chicago"))
    assert saturday_night.until_ms == at("2026-01-19 08:00", "America/Chicago")
    assert saturday_night.reason.endswith("until Mon 08:00")


def test_utah_and_rhode_island_texts_wait_for_monday() -> None:
    policy = QuietPolicy("21:00-08:00")
    utah = policy.next_allowed_ms(SALT_LAKE, at("2026-03-15 12:00", "America/Denver"))
    assert utah == at("2026-03-16 08:00", "America/Denver")
    saturday_evening = at("2026-03-14 17:30", "America/New_York")
    rhode = policy.next_allowed_ms(PROVIDENCE, saturday_evening)
    assert rhode == at("2026-03-16 09:00", "America/New_York")


def test_the_window_opens_when_the_clocks_spring_over_it() -> None:
    # Quiet 01:00-02:30; on 8 March 2026 New York's clocks jump from 02:00 to 03:00,
    # so 02:30 never happens and the first allowed moment is the jump itself.
    policy = QuietPolicy("01:00-02:30")
    opening = policy.next_allowed_ms(NEW_YORK, at("2026-03-08 01:30", "America/New_York"))
    assert opening is not None
    assert wall(opening, "America/New_York") == "2026-03-08 03:00:00"
    assert wall(opening, "UTC") == "2026-03-08 07:00:00"


def test_the_repeated_hour_is_quiet_again_when_the_clocks_go_back() -> None:
    # Quiet 21:00-01:30; on 1 November 2026 New York lives 01:00-02:00 twice.
    policy = QuietPolicy("21:00-01:30", state_rules=False)
    assert policy.decide(NEW_YORK, at("2026-11-01 01:40", "America/New_York", fold=0)).allowed
    second = at("2026-11-01 01:10", "America/New_York", fold=1)
    assert policy.next_allowed_ms(NEW_YORK, second) == at(
        "2026-11-01 01:30", "America/New_York", fold=1
    )


def test_phoenix_opens_at_the_same_utc_hour_all_year() -> None:
    policy = QuietPolicy("21:00-08:00")
    for day in ("2026-01-14", "2026-07-15"):
        opening = policy.next_allowed_ms(PHOENIX, at(f"{day} 07:30", "America/Phoenix"))
        assert opening is not None and wall(opening, "UTC") == f"{day} 15:00:00"


def test_a_number_in_two_zones_waits_for_both_under_strictest() -> None:
    now = at("2026-03-10 08:30", "America/Boise")  # 07:30 in Los Angeles
    strictest = QuietPolicy("21:00-08:00").decide(IDAHO, now)
    assert strictest.until_ms == at("2026-03-10 08:00", "America/Los_Angeles")
    assert strictest.reason == "quiet hours 21:00-08:00 in America/Los_Angeles until 08:00"
    boise = QuietPolicy("21:00-08:00", "campaign", "America/Boise")
    assert boise.decide(IDAHO, now).allowed
    elsewhere = QuietPolicy("21:00-08:00", "campaign", "America/New_York")  # not a candidate
    assert elsewhere.decide(IDAHO, now) == strictest


def test_a_number_phonenumbers_cannot_place_uses_the_campaign_zone_or_its_whole_country() -> None:
    now = at("2026-03-10 09:00", "America/New_York")
    with_zone = QuietPolicy("21:00-08:00", campaign_zone="America/New_York")
    assert with_zone.rules_for(UNPLACED).zones == ("America/New_York",)
    assert with_zone.decide(UNPLACED, now).allowed
    whole_us = QuietPolicy("21:00-08:00").decide(UNPLACED, now)  # 03:00 in Honolulu
    assert whole_us.until_ms == at("2026-03-10 08:00", "Pacific/Honolulu")


def test_a_toll_free_number_is_placed_in_its_countrys_zones_not_all_of_the_nanp() -> None:
    placed = QuietPolicy("21:00-08:00").rules_for(TOLL_FREE).zones
    assert "America/New_York" in placed and "Pacific/Honolulu" in placed
    assert "Pacific/Guam" not in placed and "Pacific/Pago_Pago" not in placed


def test_zones_too_far_apart_for_the_window_never_open() -> None:
    policy = QuietPolicy("09:00-08:00")  # one hour a day, and Idaho's zones are an hour apart
    decision = policy.decide(IDAHO, at("2026-03-10 12:00", "America/Boise"))
    assert decision.never and not decision.allowed
    assert "2 zones" in decision.reason
    with pytest.raises(NoOpening):
        policy.next_allowed_ms(IDAHO, at("2026-03-10 12:00", "America/Boise"))


def test_local_time_ok_judges_a_delivery_time() -> None:
    policy = QuietPolicy("21:00-08:00")
    assert local_time_ok(CHICAGO, at("2026-03-10 12:00", "America/Chicago"), policy)
    assert not local_time_ok(CHICAGO, at("2026-03-10 07:59:59", "America/Chicago"), policy)


def test_a_policy_comes_from_campaign_settings_only_with_quiet_hours() -> None:
    assert QuietPolicy.from_settings(CampaignSettings()) is None
    campaign = CampaignSettings(
        quiet_hours="21:00-08:00", quiet_zone_policy="campaign", time_zone="America/Boise"
    )
    policy = QuietPolicy.from_settings(campaign)
    assert policy is not None
    assert policy.rules_for(IDAHO).zones == ("America/Boise",)


# --- the state table ------------------------------------------------------------------------


def _geocoder_states() -> dict[str, set[str]]:
    """Area code -> the states phonenumbers' geocoder names for it (its own data)."""
    names = {rule.name: code for code, rule in states.STATE_RULES.items()}
    names["Washington State"] = "WA"
    found: dict[str, set[str]] = {}
    for prefix, text in GEOCODE_DATA.items():
        if prefix.startswith("1") and len(prefix) >= 4:
            description = text.get("en", "")
            state = names.get(description) or description.rpartition(", ")[2]
            found.setdefault(prefix[1:4], set()).add(state)
    return found


def test_the_area_code_table_agrees_with_phonenumbers_geocoder() -> None:
    geocoded = _geocoder_states()
    for state, codes in states.STATE_AREA_CODES.items():
        by_geocoder = {code for code, named in geocoded.items() if state in named}
        assert set(codes) == by_geocoder, state


def test_every_state_rule_names_its_source_and_how_it_was_checked() -> None:
    assert set(states.STATE_RULES) == set(states.STATE_AREA_CODES)
    for rule in states.STATE_RULES.values():
        citation, _, says = rule.source.partition(": ")
        assert re.search(r"\d", citation) and says, rule.state  # "<statute §>: <what it says>"
        assert rule.checked in ("statute text", "summary")


def test_a_number_outside_the_table_has_no_state() -> None:
    assert states.state_of(NEW_YORK) is None
    assert states.state_of("+442079460000") is None
    assert states.state_of(DALLAS) == "TX"


# --- properties -----------------------------------------------------------------------------

NUMBERS = [CHICAGO, NEW_YORK, PHOENIX, NEW_JERSEY, DALLAS, JACKSON_MS, SALT_LAKE, PROVIDENCE]
NUMBERS += [IDAHO, TOLL_FREE, "+17015551234", "+61881234567", "+442079460000"]
ZONES = [None, "America/New_York", "America/Boise", "America/Chicago", "Australia/Adelaide"]


def oracle_allows(policy: QuietPolicy, number: str, at_s: int) -> bool:
    """Written apart from worker.quiet.schedule: each zone's wall clock, compared directly."""
    rules = policy.rules_for(number)
    state = states.STATE_RULES.get(rules.state) if rules.state else None
    checks = [(z, True) for z in rules.zones]
    if state is not None:
        checks += [(z, False) for z in rules.zones]
        if state.fixed_zone:
            checks.append((state.fixed_zone, False))
    for zone, is_window in checks:
        local = dt.datetime.fromtimestamp(at_s, ZoneInfo(zone))
        second = local.hour * 3600 + local.minute * 60 + local.second
        if is_window:
            start, end = policy.window.start_s, policy.window.end_s
            quiet = (second >= start or second < end) if start > end else start <= second < end
            if quiet:
                return False
        elif state is not None:
            spans = state.hours.days[local.weekday()]
            if not any(lo <= second < hi for lo, hi in spans):
                return False
    return bool(checks)


def check_decision(policy: QuietPolicy, number: str, now_s: int) -> None:
    decision = policy.decide(number, now_s * 1000)
    assert decision.allowed == oracle_allows(policy, number, now_s)
    if decision.never:  # then no minute of the horizon is allowed either
        horizon = range(now_s - now_s % 60 + 60, now_s + policy.horizon_s, 60)
        assert not any(oracle_allows(policy, number, minute) for minute in horizon)
    if decision.allowed or decision.never:
        return
    assert decision.until_ms is not None and decision.until_ms % 1000 == 0
    opening = decision.until_ms // 1000
    assert opening > now_s
    assert oracle_allows(policy, number, opening)
    assert not oracle_allows(policy, number, opening - 1)
    for minute in range(now_s - now_s % 60 + 60, opening, 60):  # no earlier allowed minute
        assert not oracle_allows(policy, number, minute), wall(minute * 1000, "UTC")


seconds_of_day = st.integers(0, DAY_S - 1)
minutes_of_day = st.integers(0, 24 * 60 - 1).map(lambda m: m * 60)
windows = st.tuples(st.one_of(minutes_of_day, seconds_of_day), minutes_of_day).filter(
    lambda w: w[0] != w[1]
)
instants = st.integers(946_684_800, 2_145_916_800)  # 2000 to 2038
policies = st.builds(
    lambda w, zone_policy, zone, rules: QuietPolicy(Window(*w), zone_policy, zone, rules),
    windows,
    st.sampled_from(["strictest", "campaign"]),
    st.sampled_from(ZONES),
    st.booleans(),
)
slow = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@slow
@given(policy=policies, number=st.sampled_from(NUMBERS), now_s=instants)
def test_a_text_is_held_exactly_until_the_first_allowed_moment(
    policy: QuietPolicy, number: str, now_s: int
) -> None:
    check_decision(policy, number, now_s)


# Around the US changes of 2026 and 2027 (07:00 UTC in March, 06:00 UTC in November).
DST_CHANGES_S = [1_772_953_200, 1_793_512_800, 1_805_007_600, 1_825_567_200]
near_dst = st.builds(
    lambda change, offset: change + offset,
    st.sampled_from(DST_CHANGES_S),
    st.integers(-36 * 3600, 36 * 3600),
)
night_windows = st.tuples(
    st.integers(0, 4 * 3600).map(lambda s: s - s % 60), st.integers(0, 4 * 3600)
).filter(lambda w: w[0] != w[1])


@slow
@given(
    window=st.one_of(windows, night_windows),
    number=st.sampled_from([NEW_YORK, CHICAGO, PHOENIX, DALLAS, IDAHO]),
    now_s=near_dst,
)
def test_openings_are_exact_across_dst_changes(
    window: tuple[int, int], number: str, now_s: int
) -> None:
    check_decision(QuietPolicy(Window(*window)), number, now_s)


@slow
@given(
    policy=policies,
    number=st.sampled_from(NUMBERS),
    start_s=instants,
    steps=st.lists(st.integers(1, 4 * 3600), min_size=1, max_size=8),
)
def test_a_policy_that_remembers_a_quiet_stretch_answers_as_a_fresh_one(
    policy: QuietPolicy, number: str, start_s: int, steps: list[int]
) -> None:
    now_s = start_s
    for step in steps:
        fresh = QuietPolicy(
            policy.window, policy.zone_policy, policy.campaign_zone, policy.state_rules
        )
        assert policy.decide(number, now_s * 1000).until_ms == (
            fresh.decide(number, now_s * 1000).until_ms
        )
        now_s += step


def test_numbers_that_share_a_prefix_share_their_zones() -> None:
    counts = Counter(zones.place(f"+1312555{n:04d}").zones for n in range(0, 10_000, 97))
    assert counts == Counter({("America/Chicago",): len(range(0, 10_000, 97))})
