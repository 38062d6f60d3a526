"""Opt-out lists per organisation, their review list and audit, on the suite's Redis."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio as aioredis

from worker import keys
from worker.errors import InvalidInput, InvalidNumber
from worker.optouts import (
    AsyncOptoutList,
    LineOutcome,
    OptoutList,
    Source,
    inbound_cause,
    operator_cause,
    provider_cause,
)

PERSON = "+12025550143"
OTHER = "+12025550187"


@pytest.fixture
def optouts(client: redis.Redis, ns: str) -> OptoutList:
    return OptoutList(client, ns)


@pytest.fixture
def aoptouts(aclient: aioredis.Redis, ns: str) -> AsyncOptoutList:
    return AsyncOptoutList(aclient, ns)


def stop_from(optouts: OptoutList, org: str = "acme", number: str = PERSON) -> bool:
    return optouts.add(
        org, number, source=Source.INBOUND, by="inbound", cause=inbound_cause("in1", "twilio")
    )


def test_a_stop_opts_the_person_out_of_that_organisation_only(optouts: OptoutList) -> None:
    assert stop_from(optouts) is True
    assert optouts.is_opted_out("acme", PERSON)
    assert not optouts.is_opted_out("other-org", PERSON)
    assert not optouts.is_opted_out("acme", OTHER)


def test_the_entry_says_when_how_by_whom_and_why(optouts: OptoutList) -> None:
    stop_from(optouts)
    entry = optouts.entry("acme", PERSON)
    assert entry is not None
    assert entry["source"] == "inbound" and entry["by"] == "inbound"
    assert entry["cause"] == {"inbound_id": "in1", "provider": "twilio"}
    assert entry["at_ms"] > 1_600_000_000_000
    assert optouts.entry("acme", OTHER) is None


def test_a_second_opt_out_keeps_the_first_entry_and_adds_no_audit(optouts: OptoutList) -> None:
    stop_from(optouts)
    first = optouts.entry("acme", PERSON)
    again = optouts.add(
        "acme",
        PERSON,
        source=Source.PROVIDER_ANSWER,
        by="provider",
        cause=provider_cause("m1", "telnyx", "40300"),
    )
    assert again is False and optouts.entry("acme", PERSON) == first
    assert len(optouts.audit("acme")) == 1


def test_removing_a_number_opts_it_back_in_and_says_whether_it_was_out(
    optouts: OptoutList,
) -> None:
    stop_from(optouts)
    cause = inbound_cause("in2", "twilio")
    assert optouts.remove("acme", PERSON, source="inbound", by="inbound", cause=cause) is True
    assert not optouts.is_opted_out("acme", PERSON)
    assert optouts.remove("acme", PERSON, source="inbound", by="inbound", cause=cause) is False


def test_every_change_is_audited_newest_first_with_who_and_cause(optouts: OptoutList) -> None:
    stop_from(optouts)
    optouts.add(
        "acme",
        OTHER,
        source=Source.PROVIDER_ANSWER,
        by="provider",
        cause=provider_cause("m1", "twilio", "21610"),
    )
    optouts.remove("acme", PERSON, source="operator", by="maria", cause=operator_cause("called"))
    stop_from(optouts, org="beta")
    entries = optouts.audit("acme")
    assert [(e["op"], e["number"], e["by"]) for e in entries] == [
        ("remove", PERSON, "maria"),
        ("add", OTHER, "provider"),
        ("add", PERSON, "inbound"),
    ]
    assert entries[1]["cause"] == {"message_id": "m1", "provider": "twilio", "error_code": "21610"}
    assert entries[0]["cause"] == {"reason": "called"} and entries[0]["source"] == "operator"
    assert len(optouts.audit()) == 4  # every organisation
    assert len(optouts.audit("acme", count=2)) == 2


def test_a_possible_opt_out_is_flagged_once_for_review(optouts: OptoutList) -> None:
    assert optouts.flag(
        "acme", PERSON, inbound_id="in7", body="wrong number", provider="plivo", rule="wrong"
    )
    assert not optouts.flag("acme", PERSON, inbound_id="in8", body="wrong number again")
    assert not optouts.is_opted_out("acme", PERSON)
    [flagged] = optouts.review("acme")
    assert flagged["number"] == PERSON and flagged["body"] == "wrong number"
    assert flagged["cause"] == {"inbound_id": "in7", "provider": "plivo"}
    assert flagged["rule"] == "wrong"
    assert optouts.review("other") == []


def test_a_number_already_opted_out_is_not_flagged(optouts: OptoutList) -> None:
    stop_from(optouts)
    assert not optouts.flag("acme", PERSON, inbound_id="in9", body="stop texting me")
    assert optouts.review("acme") == []


def test_confirming_a_flag_opts_the_number_out_with_the_flagged_text_as_cause(
    optouts: OptoutList,
) -> None:
    optouts.flag("acme", PERSON, inbound_id="in7", body="remove me", provider="vonage")
    assert optouts.confirm("acme", PERSON, by="maria") is True
    entry = optouts.entry("acme", PERSON)
    assert entry is not None and entry["source"] == "operator" and entry["by"] == "maria"
    assert entry["cause"]["inbound_id"] == "in7" and entry["cause"]["provider"] == "vonage"
    assert optouts.review("acme") == []
    assert optouts.confirm("acme", PERSON, by="maria") is None  # nothing flagged any more
    assert [e["op"] for e in optouts.audit("acme")] == ["confirm", "flag"]


def test_dismissing_a_flag_leaves_the_number_opted_in(optouts: OptoutList) -> None:
    optouts.flag("acme", PERSON, inbound_id="in7", body="stpo")
    assert optouts.dismiss("acme", PERSON, "maria") is True
    assert optouts.dismiss("acme", PERSON, "maria") is False
    assert not optouts.is_opted_out("acme", PERSON) and optouts.review("acme") == []
    dismissed = optouts.audit("acme")[0]
    assert (dismissed["op"], dismissed["by"]) == ("dismiss", "maria")


def test_an_opt_out_or_an_opt_in_settles_a_pending_flag(optouts: OptoutList) -> None:
    optouts.flag("acme", PERSON, inbound_id="in1", body="stop it")
    stop_from(optouts)
    assert optouts.review("acme") == []
    optouts.flag("acme", OTHER, inbound_id="in2", body="wrong number")
    cause = inbound_cause("in3", "twilio")
    optouts.remove("acme", OTHER, source="inbound", by="inbound", cause=cause)
    assert optouts.review("acme") == []
    assert optouts.audit("acme")[0]["review_cleared"] == "1"


def test_an_import_adds_each_readable_number_and_reports_every_line(
    optouts: OptoutList,
) -> None:
    stop_from(optouts, number="+12015550123")
    rows = [
        (2, "(201) 555-0123"),  # already opted out
        (3, "202-555-0143"),
        (4, "+12025550143"),  # the same person again
        (5, "12"),
        (6, ""),
        (7, "1.20255501E+10"),
    ]
    seen: list[list[int]] = []
    report = optouts.import_rows(
        "acme",
        rows,
        by="import:list.csv",
        batch_size=4,
        on_batch=lambda lines: seen.append([line.line for line in lines]),
    )
    assert (report.added, report.already) == (1, 2)
    assert [(r.line, r.outcome) for r in report.rejected] == [
        (5, LineOutcome.REJECTED),
        (6, LineOutcome.REJECTED),
        (7, LineOutcome.REJECTED),
    ]
    reasons = {r.line: r.reason for r in report.rejected}
    assert "not" in reasons[5] and reasons[6] == "is empty" and "scientific" in reasons[7]
    assert seen == [[2, 3, 4, 5], [6, 7]]
    entry = optouts.entry("acme", PERSON)
    assert entry is not None and entry["source"] == "import"
    assert entry["by"] == "import:list.csv" and entry["cause"] == {"line": "3"}
    assert optouts.audit("acme")[0]["op"] == "import"


def test_an_import_reads_numbers_in_the_region_given(optouts: OptoutList) -> None:
    report = optouts.import_rows("acme", [(2, "55 1234 5678")], by="import:mx.csv", region="MX")
    assert report.added == 1 and optouts.is_opted_out("acme", "+525512345678")


def test_an_import_never_opts_anyone_back_in(optouts: OptoutList) -> None:
    stop_from(optouts)
    optouts.import_rows("acme", [(2, OTHER)], by="import:f.csv")
    assert optouts.is_opted_out("acme", PERSON) and optouts.is_opted_out("acme", OTHER)


def test_an_export_gives_every_entry_in_chunks(optouts: OptoutList) -> None:
    numbers = [f"+1202555{n:04d}" for n in range(100, 350)]
    optouts.import_rows("acme", list(enumerate(numbers, start=2)), by="import:big.csv")
    exported = dict(optouts.export("acme", chunk=20))
    assert sorted(exported) == numbers
    assert all(e["source"] == "import" for e in exported.values())
    assert list(optouts.export("empty-org")) == []


def test_many_numbers_are_checked_in_one_round_trip(optouts: OptoutList) -> None:
    stop_from(optouts)
    assert optouts.opted_out_among("acme", [PERSON, OTHER]) == {PERSON}


def test_the_list_is_a_hash_of_e164_numbers_per_organisation(
    optouts: OptoutList, client: redis.Redis, ns: str
) -> None:
    stop_from(optouts)
    assert client.hkeys(keys.optouts("acme", ns)) == [PERSON.encode()]
    assert optouts.count("acme") == 1


# -- the async side: the send path's gate and the webhooks ---------------------


async def test_the_send_path_check_is_one_redis_command(
    aoptouts: AsyncOptoutList, aclient: aioredis.Redis, ns: str
) -> None:
    await aoptouts.add("acme", PERSON, source="receipt", by="provider", cause={"code": "4775"})
    sentinel = f"end-of-{ns}"
    commands: list[str] = []
    async with aclient.monitor() as monitor:
        assert await aoptouts.is_opted_out("acme", PERSON) is True
        await aclient.echo(sentinel)
        async for seen in monitor.listen():
            if sentinel in seen["command"]:
                break
            if ns in seen["command"]:
                commands.append(seen["command"])
    assert commands == [f"HEXISTS {keys.optouts('acme', ns)} {PERSON}"]


async def test_the_async_list_adds_flags_and_removes_like_the_sync_one(
    aoptouts: AsyncOptoutList, optouts: OptoutList
) -> None:
    cause = inbound_cause("in1", "telnyx")
    assert await aoptouts.add("acme", PERSON, source="inbound", by="inbound", cause=cause)
    assert optouts.is_opted_out("acme", PERSON)
    entry = await aoptouts.entry("acme", PERSON)
    assert entry is not None and entry["cause"] == cause
    assert await aoptouts.remove("acme", PERSON, source="inbound", by="inbound", cause=cause)
    assert not await aoptouts.is_opted_out("acme", PERSON)
    assert await aoptouts.flag("acme", OTHER, inbound_id="in2", body="remove me")
    assert [r["number"] for r in optouts.review("acme")] == [OTHER]


# -- bad input -------------------------------------------------------------------


@pytest.mark.parametrize("number", ["2025550143", "+1 202 555 0143", "+0123456789", "", "+1"])
def test_a_number_not_in_e164_is_refused_with_its_reason(optouts: OptoutList, number: str) -> None:
    with pytest.raises(InvalidNumber, match=r"not in E\.164"):
        stop_from(optouts, number=number)
    with pytest.raises(InvalidNumber):
        optouts.is_opted_out("acme", number)


@pytest.mark.parametrize("org", ["", "acme corp", "acme:x", "-acme", "a" * 65, "acme*"])
def test_an_organisation_name_with_other_characters_is_refused(
    optouts: OptoutList, org: str
) -> None:
    with pytest.raises(InvalidInput, match="not an organisation name") as caught:
        optouts.is_opted_out(org, PERSON)
    assert caught.value.field == "org"
    with pytest.raises(InvalidInput, match="not an organisation name"):
        stop_from(optouts, org=org)
    with pytest.raises(InvalidInput, match="not an organisation name"):
        optouts.import_rows(org, [(2, PERSON)], by="import:f.csv")


async def test_the_async_list_refuses_bad_input_too(aoptouts: AsyncOptoutList) -> None:
    with pytest.raises(InvalidNumber):
        await aoptouts.is_opted_out("acme", "202-555-0143")
    with pytest.raises(InvalidInput, match="organisation"):
        await aoptouts.is_opted_out("acme corp", PERSON)


def test_an_unknown_source_or_a_missing_by_is_refused_and_changes_nothing(
    optouts: OptoutList,
) -> None:
    with pytest.raises(InvalidInput, match="unknown source 'sms'"):
        optouts.add("acme", PERSON, source="sms", by="x", cause={})
    with pytest.raises(InvalidInput, match="by: must name who"):
        optouts.add("acme", PERSON, source="operator", by=" ", cause={})
    assert not optouts.is_opted_out("acme", PERSON) and optouts.audit() == []
