"""The send job: every field validated, with a reason a person can act on."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from worker.models import SendJob, describe_validation_error
from worker.phone import count_segments, mask, to_e164

GOOD = "+12015550123"


def reason(**fields: object) -> str:
    with pytest.raises(ValidationError) as info:
        SendJob.model_validate(fields)
    return describe_validation_error(info.value)


@pytest.mark.parametrize("raw", ["+1 (201) 555-0123", "2015550123", "201.555.0123", "+12015550123"])
def test_a_us_number_in_any_common_format_becomes_e164(raw: str) -> None:
    assert to_e164(raw) == GOOD


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("hello", "not a phone number"),
        ("123", "not a possible number"),
        ("+1 201 555 01234567", "not a possible number"),
        ("+1 099 555 0123", "not a valid number"),
        ("9" * 80, "longer than any phone number"),
    ],
)
def test_a_bad_number_is_rejected_with_its_reason(raw: str, why: str) -> None:
    assert why in reason(to=raw, body="hi")


def test_a_non_string_number_is_rejected_by_type() -> None:
    assert "must be a phone number string, not list" in reason(to=[GOOD], body="hi")


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters cost two septets
        ("€" * 81, 2),
        ("ж" * 70, 1),  # UCS-2
        ("ж" * 71, 2),
        ("ж" * 134, 2),
        ("ж" * 135, 3),
        ("😀" * 35, 1),  # astral characters are two UTF-16 units
        ("😀" * 36, 2),
    ],
)
def test_segments_are_counted_as_carriers_bill_them(body: str, segments: int) -> None:
    assert count_segments(body) == segments


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("", "body: is empty"),
        ("   \n", "body: is empty"),
        ("a\x00b", "NUL"),
        ("a" * 1531, "more than 10 segments"),
        ("ж" * 671, "needs 11 segments"),
        ("x" * 10_000_000, "more than 10 segments"),
    ],
)
def test_a_bad_body_is_rejected_with_its_reason(body: str, why: str) -> None:
    assert why in reason(to=GOOD, body=body)


def test_a_ten_segment_body_is_accepted() -> None:
    assert SendJob(to=GOOD, body="a" * 1530).segments == 10


def test_defaults_fill_campaign_and_metadata() -> None:
    job = SendJob(to=GOOD, body="hi")
    assert (job.campaign, job.key, job.metadata, job.send_before) == ("default", None, {}, None)


@pytest.mark.parametrize("campaign", ["has space", "x" * 65, "-leading", 7])
def test_a_bad_campaign_name_is_rejected(campaign: object) -> None:
    assert "campaign:" in reason(to=GOOD, body="hi", campaign=campaign)


def test_an_overlong_key_is_rejected() -> None:
    assert "key:" in reason(to=GOOD, body="hi", key="k" * 201)


def test_send_before_needs_a_time_zone() -> None:
    assert "time zone" in reason(to=GOOD, body="hi", send_before="2026-11-28T18:00:00")
    job = SendJob(to=GOOD, body="hi", send_before=datetime(2026, 1, 1, tzinfo=UTC))
    assert job.send_before_ms() == 1767225600000


def test_unknown_fields_and_missing_fields_are_named() -> None:
    assert "colour: is not a known field" in reason(to=GOOD, body="hi", colour="red")
    assert "body: Field required" in reason(to=GOOD)


def test_metadata_must_be_a_small_json_object() -> None:
    assert "metadata: must be an object" in reason(to=GOOD, body="hi", metadata=[1])
    assert "metadata: is" in reason(to=GOOD, body="hi", metadata={"a": "x" * 5000})


def test_masking_keeps_only_the_last_four_digits() -> None:
    assert mask(GOOD) == "*******0123"


@pytest.mark.parametrize(
    "raw",
    [
        "+1201555012\u0663",  # ARABIC-INDIC DIGIT THREE, where the US fast path used to look
        "+\u0661\u0662\u0660\u0661\u0665\u0665\u0665\u0660\u0661\u0662\u0663",
        "+\uff11\uff12\uff10\uff11\uff15\uff15\uff15\uff10\uff11\uff12\uff13",  # full-width
        "+1 201 555 012\u0663",
    ],
)
def test_a_number_in_other_scripts_digits_is_stored_in_ascii_e164(raw: str) -> None:
    assert to_e164(raw) == GOOD
    assert SendJob(to=raw, body="hi").to == GOOD


@pytest.mark.parametrize("raw", ["1.20255501E+10", "1.2015550123E+10", "1,20156E+10", "1.2e10"])
def test_a_number_a_spreadsheet_turned_into_scientific_notation_says_so_and_how_to_fix_it(
    raw: str,
) -> None:
    why = reason(to=raw, body="hi")
    assert "scientific notation" in why and "digits" in why
    assert "format the column as Text" in why


def test_an_empty_body_has_one_reason_however_it_is_given() -> None:
    assert reason(to=GOOD, body="") == "body: is empty"
    assert reason(to=GOOD, body=None) == "body: is empty"


def test_accepted_is_not_a_status_a_record_can_take() -> None:
    # Enqueue writes a record straight into "queued"; "accepted" only labels the
    # first history step, so a status for it was dead and misled readers.
    from worker.models import Status

    assert "accepted" not in {s.value for s in Status}


def test_a_number_without_its_country_code_is_read_in_the_producers_region() -> None:
    local = {"to": "55 1234 5678", "body": "hola"}
    # Mexico City's 55, not New Jersey's 551: another person's phone.
    assert SendJob.model_validate(local, context={"region": "MX"}).to == "+525512345678"
    assert SendJob.model_validate(local, context={"region": "US"}).to == "+15512345678"
    # A full E.164 number is the same person in any region.
    e164 = {"to": "+12015550123", "body": "hi"}
    assert SendJob.model_validate(e164, context={"region": "MX"}).to == "+12015550123"
