"""The log scrubber masks phone numbers and leaves message ids and timestamps as they are,
so a log line can still be matched to `sendq messages show ID`."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone
from unittest import mock

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import logs
from worker.logs import mask_text, scrub_processor
from worker.store import new_message_id

EXAMPLES = int(os.environ.get("SENDQ_FUZZ_EXAMPLES", "10000"))


def message_id(ms: int, random_part: str) -> str:
    """An id as the store makes one, at a given clock and with given random hex."""
    with (
        mock.patch("worker.store.now_ms", return_value=ms),
        mock.patch("worker.store.secrets.token_hex", return_value=random_part),
    ):
        return new_message_id()


def spelt_id(ms: int, random_part: str) -> str:
    """The same id, spelt out: patching the store's clock for each of 10,000 examples
    costs more than the example (test_the_ids_generated_are_the_ids_the_store_makes)."""
    return f"{ms:012x}{random_part}"


id_clocks = st.integers(min_value=0, max_value=16**12 - 1)
id_random_parts = st.integers(min_value=0, max_value=16**10 - 1).map(lambda n: f"{n:010x}")
message_ids = st.builds(spelt_id, id_clocks, id_random_parts)
moments = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=5.5))])


@st.composite
def iso_timestamps(draw: st.DrawFn) -> str:
    moment = draw(moments).astimezone(draw(offsets))
    spelt = moment.isoformat(
        sep=draw(st.sampled_from(["T", " "])),
        timespec=draw(st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"])),
    )
    return draw(st.sampled_from([spelt, spelt.replace("+00:00", "Z"), spelt[:10]]))


@st.composite
def phone_numbers(draw: st.DrawFn) -> tuple[str, str]:
    """A US number (its digits, and as someone might write it)."""
    digits = (
        "1"
        + draw(st.sampled_from("23456789"))
        + draw(st.text("0123456789", min_size=9, max_size=9))
    )
    area, exchange, line = digits[1:4], digits[4:7], digits[7:]
    spellings = [
        f"+{digits}",
        digits,
        digits[1:],
        f"+1 ({area}) {exchange}-{line}",
        f"{area}-{exchange}-{line}",
        f"{area}.{exchange}.{line}",
        f"%2B{digits}",  # in a form-encoded request body
    ]
    return digits, draw(st.sampled_from(spellings))


@settings(max_examples=200, deadline=None)
@given(ms=id_clocks, random_part=id_random_parts)
def test_the_ids_generated_are_the_ids_the_store_makes(ms: int, random_part: str) -> None:
    assert spelt_id(ms, random_part) == message_id(ms, random_part)


def test_a_timestamped_event_keeps_its_timestamp_and_message_id() -> None:
    msg_id = new_message_id()
    event = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})
    stamp = event["timestamp"]
    got = scrub_processor(None, "info", {**event, "message_id": msg_id, "event": "sent"})
    assert (got["timestamp"], got["message_id"]) == (stamp, msg_id)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    msg_id=message_ids,
    stamp=iso_timestamps(),
    number=phone_numbers(),
    template=st.sampled_from(
        [
            "message {id} to {n} at {ts}",
            "{id} {n} {ts}",
            "{ts} {n}: {id}",
            "to={n}&mid={id}&at={ts}",
            '{{"message_id": "{id}", "to": "{n}", "at": "{ts}"}}',
            "/webhooks/twilio/status?mid={id} To={n} {ts}",
        ]
    ),
)
def test_ids_and_timestamps_are_kept_and_numbers_masked_around_them(
    msg_id: str, stamp: str, number: tuple[str, str], template: str
) -> None:
    digits, spelt = number
    text = template.format(id=msg_id, n=spelt, ts=stamp)
    masked = mask_text(text)
    assert msg_id in masked and stamp in masked
    rest = masked.replace(msg_id, " ").replace(stamp, " ")
    compact = "".join(c for c in rest if c.isdigit() or c == "*")
    assert digits[-7:] not in compact and digits[-4:] in compact  # masked to its last 4
    event = scrub_processor(None, "info", {"timestamp": stamp, "message_id": msg_id, "to": spelt})
    assert (event["timestamp"], event["message_id"]) == (stamp, msg_id)
    assert digits[-7:] not in "".join(c for c in event["to"] if c.isdigit())


@settings(max_examples=EXAMPLES, deadline=None)
@given(msg_id=message_ids, stamp=iso_timestamps())
def test_an_id_or_a_timestamp_alone_is_never_masked(msg_id: str, stamp: str) -> None:
    assert mask_text(msg_id) == msg_id
    assert mask_text(stamp) == stamp
    assert mask_text(f"held {msg_id} until {stamp}") == f"held {msg_id} until {stamp}"


def test_ids_providers_give_are_kept_too() -> None:
    for provider_id in [
        "SM" + "1234567890" * 3 + "ab",  # Twilio: SM and 32 hex digits
        "40317159-7ab1-4c5b-8a1f-425946291540",  # Telnyx and Plivo: a UUID
        "1764633601234567890",  # a long run of digits: no phone number has 16
        "1589228074636lm4k2je7j7jklbn2",  # Bandwidth: epoch ms and base-36
        "0A0000001234567B",  # Vonage
    ]:
        assert mask_text(f"provider id {provider_id}") == f"provider id {provider_id}"


@pytest.mark.parametrize(
    "text",
    [
        "to: '1.2015550123E+10' is in scientific notation",  # a spreadsheet's
        "to: '+1201555012a' is not a phone number",  # a typo is still most of a number
        "POST To=%2B12015550123&Body=hi",
        "id12015550123 and Call2015550123Now",  # glued to short words
    ],
)
def test_numbers_beside_letters_or_in_odd_spellings_are_masked(text: str) -> None:
    assert "2015550" not in mask_text(text) and "1555012" not in mask_text(text)


def test_the_configured_chain_keeps_the_rendered_timestamp(monkeypatch, capsys) -> None:
    import json

    monkeypatch.setattr(logs, "_configured", False)
    msg_id = message_id(0x0123456789A, "0123456789")  # an id whose first 11 digits are decimal
    try:
        logs.configure("info", json=True)
        structlog.get_logger("x").info("sent", message_id=msg_id, to="+12015550123")
        out = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
    event = json.loads(out.strip().splitlines()[-1])
    datetime.fromisoformat(event["timestamp"])  # still a timestamp
    assert (event["message_id"], event["to"]) == (msg_id, "*******0123")
