"""Which carrier a number is on: normalised names, overrides, cache and lookup."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import AUTH_TOKEN
from worker.carriers import CarrierResolver, load_overrides, normalise
from worker.errors import ConfigError
from worker.simulator.carriers import number_for


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("T-MOBILE USA, INC.", "tmobile"),
        ("T-Mobile USA, Inc.", "tmobile"),
        ("Sprint Spectrum, L.P.", "tmobile"),
        ("AT&T Wireless", "att"),
        ("AT&T Mobility", "att"),
        ("Cingular Wireless", "att"),
        ("Verizon Wireless", "verizon"),
        ("Cellco Partnership dba Verizon Wireless", "verizon"),
        ("U.S. Cellular", "uscellular"),
        ("Pinnacle Regional Wireless", "pinnacle_regional_wireless"),
        ("", "unknown"),
        (None, "unknown"),
        ("!!!", "unknown"),
    ],
)
def test_carrier_names_are_normalised(raw: str | None, key: str) -> None:
    assert normalise(raw) == key


def test_the_override_file_names_carriers_by_number(tmp_path: Path) -> None:
    path = tmp_path / "carriers.csv"
    path.write_text("number,carrier\n(201) 555-0123,Verizon Wireless\n# a comment\n")
    assert load_overrides(path) == {"+12015550123": "verizon"}


@pytest.mark.parametrize(
    ("content", "why"),
    [("12,att\n", "not a possible number"), ("+12015550123\n", "expected 'number,carrier'")],
)
def test_a_bad_override_file_names_the_line(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "carriers.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=why) as info:
        load_overrides(path)
    assert f"{path}:1" in str(info.value)


async def test_a_lookup_is_made_once_then_cached(aclient, ns, sim) -> None:
    lookup = httpx.AsyncClient(base_url=sim, auth=("AC" + "0" * 32, AUTH_TOKEN))
    resolver = CarrierResolver(aclient, ns=ns, lookup=lookup)
    number = number_for("verizon", 11)
    assert await resolver.carrier_of(number) == "verizon"
    await lookup.aclose()
    # The lookup client is closed: a second answer can only come from the cache.
    assert await resolver.carrier_of(number) == "verizon"


async def test_an_override_beats_the_lookup(aclient, ns, sim) -> None:
    number = number_for("verizon", 12)
    resolver = CarrierResolver(aclient, ns=ns, overrides={number: "att"})
    assert await resolver.carrier_of(number) == "att"


async def test_a_failed_lookup_is_unknown_not_an_error(aclient, ns) -> None:
    lookup = httpx.AsyncClient(base_url="http://127.0.0.1:9", timeout=1)
    resolver = CarrierResolver(aclient, ns=ns, lookup=lookup)
    assert await resolver.carrier_of(number_for("att", 13)) == "unknown"
    await lookup.aclose()


async def test_a_providers_answer_is_remembered(aclient, ns) -> None:
    resolver = CarrierResolver(aclient, ns=ns)
    number = number_for("att", 14)
    await resolver.remember(number, "T-MOBILE USA, INC.")
    assert await resolver.carrier_of(number) == "tmobile"
