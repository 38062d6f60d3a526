"""``sendq optouts`` and ``sendq inbound`` as operators run them: real processes, real Redis."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from worker import embedded
from worker.inbound_log import InboundLog
from worker.optouts import OptoutList
from worker.providers.base import InboundText

PERSON = "+12025550143"
OURS = "+12015550100"
CONFIG = """
default_org = "acme"

[orgs.beta]
stop_reply = "You are opted out."

[campaigns.gotv]
org = "gamma"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("cli-optouts-redis")
    yield embedded.ensure(data_dir)
    embedded.stop(data_dir)


@pytest.fixture(scope="module")
def env(server: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    config = tmp_path_factory.mktemp("cli-optouts-config") / "sendq.toml"
    config.write_text(CONFIG)
    # An operator's terminal is wider than a pipe's default 80 columns.
    wide = {"NO_COLOR": "1", "COLUMNS": "200"}
    return {**os.environ, "SENDQ_REDIS_URL": server, "SENDQ_CONFIG": str(config), **wide}


@pytest.fixture
def optouts(server: str) -> Iterator[OptoutList]:
    client = redis.Redis.from_url(server)
    yield OptoutList(client)  # the CLI's namespace: this module's server is its own
    client.close()


def sendq(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def as_json(env: dict[str, str], *args: str) -> Any:
    done = sendq(env, *args, "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads(done.stdout)


def test_an_operator_opts_a_number_out_checks_it_and_opts_it_back_in(env: dict[str, str]) -> None:
    added = as_json(
        env, "optouts", "add", "(202) 555-0143", "--reason", "called in", "--by", "maria"
    )
    assert added == {"org": "acme", "number": PERSON, "added": True}
    checked = as_json(env, "optouts", "check", "202-555-0143")
    assert checked["opted_out"] and checked["entry"]["by"] == "maria"
    assert checked["entry"]["cause"] == {"reason": "called in"}
    shown = sendq(env, "optouts", "check", PERSON)
    assert shown.returncode == 0 and "opted out of acme" in shown.stdout
    assert PERSON not in shown.stdout and "0143" in shown.stdout  # masked on the terminal
    removed = as_json(env, "optouts", "remove", PERSON, "--reason", "texted START by phone")
    assert removed["removed"] is True
    not_out = sendq(env, "optouts", "check", PERSON)
    assert not_out.returncode == 0 and "not opted out" in not_out.stdout


def test_the_list_is_kept_per_organisation(env: dict[str, str]) -> None:
    as_json(env, "optouts", "add", "+12025550160", "--org", "beta")
    assert as_json(env, "optouts", "check", "+12025550160", "--org", "beta")["opted_out"]
    assert not as_json(env, "optouts", "check", "+12025550160", "--org", "gamma")["opted_out"]
    assert not as_json(env, "optouts", "check", "+12025550160")["opted_out"]


def test_every_change_is_in_the_audit_with_who_and_why(env: dict[str, str]) -> None:
    as_json(env, "optouts", "add", "+12025550161", "--reason", "complaint", "--by", "li")
    [entry] = as_json(env, "optouts", "audit", "--limit", "1")["audit"]
    assert (entry["op"], entry["number"], entry["by"]) == ("add", "+12025550161", "li")
    assert entry["cause"] == {"reason": "complaint"} and entry["org"] == "acme"
    table = sendq(env, "optouts", "audit", "--org", "acme", "--limit", "5")
    assert table.returncode == 0 and "li" in table.stdout


def test_an_import_reports_each_line_and_writes_the_rejects(
    env: dict[str, str], tmp_path: Path, optouts: OptoutList
) -> None:
    file = tmp_path / "list.csv"
    lines = ["\ufeffName, Phone ", "ann,202-555-0170", "bob,12", "cat,202-555-0170", ""]
    file.write_text("\n".join([*lines, "dan,", "eve,1.20255501E+10", ""]))
    rejects = tmp_path / "rejects.csv"
    done = sendq(env, "optouts", "import", str(file), "--org", "beta", "--rejects", str(rejects))
    assert done.returncode == 0, done.stderr
    assert "opted out 1, already 1, rejected 3" in done.stdout
    assert "line 3: Phone: '12' is not a possible number" in done.stderr
    with rejects.open() as handle:
        rows = list(csv.reader(handle))
    assert [r[0] for r in rows] == ["line", "3", "6", "7"]
    assert "scientific notation" in rows[3][1]
    entry = optouts.entry("beta", "+12025550170")
    assert entry is not None and entry["by"] == f"import:{file}" and entry["cause"]["line"] == "2"


def test_an_import_from_stdin_reads_a_number_column(env: dict[str, str]) -> None:
    done = sendq(env, "optouts", "import", "-", "--json", stdin="number\n+12025550171\n")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["added"] == 1


def test_an_import_of_only_bad_lines_exits_1(env: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "bad.csv"
    file.write_text("to\n12\nnot a number\n")
    done = sendq(env, "optouts", "import", str(file), "--json")
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert summary["rejected"] == 2 and [r["line"] for r in summary["rejects"]] == [2, 3]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "does not exist"),
        ("", "is empty"),
        ("  \n\n", "is empty"),
        ("name,email\nann,a@example.org\n", "has no number column"),
        ("+12025550143\n+12025550144\n", "has no number column"),
        (b"\xff\xfenumber\n", "not valid UTF-8"),
        ('"number\n', "never closed"),
    ],
)
def test_a_file_that_cannot_be_imported_is_a_clear_error(
    env: dict[str, str], tmp_path: Path, content: str | bytes | None, reason: str
) -> None:
    file = tmp_path / "in.csv"
    if isinstance(content, bytes):
        file.write_bytes(content)
    elif content is not None:
        file.write_text(content)
    done = sendq(env, "optouts", "import", str(file))
    assert done.returncode == 1
    assert str(file) in done.stderr and reason in done.stderr


def test_a_file_that_cannot_be_imported_is_an_error_in_json_too(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = sendq(env, "optouts", "import", str(tmp_path / "none.csv"), "--json")
    assert done.returncode == 1 and "does not exist" in json.loads(done.stdout)["error"]


def test_a_directory_is_not_an_import_file(env: dict[str, str], tmp_path: Path) -> None:
    done = sendq(env, "optouts", "import", str(tmp_path))
    assert done.returncode == 1 and "is a directory" in done.stderr


def test_an_export_writes_every_number_as_csv(
    env: dict[str, str], tmp_path: Path, optouts: OptoutList
) -> None:
    rows = [(n, f"+1202555{n:04d}") for n in range(2000, 2250)]
    optouts.import_rows("gamma", rows, by="import:seed.csv")
    output = tmp_path / "out" / "gamma.csv"
    output.parent.mkdir()
    summary = as_json(env, "optouts", "export", "--org", "gamma", "--output", str(output))
    assert summary == {"org": "gamma", "exported": 250, "output": str(output)}
    with output.open() as handle:
        exported = list(csv.DictReader(handle))
    assert sorted(r["number"] for r in exported) == sorted(number for _, number in rows)
    assert set(exported[0]) == {"number", "opted_out_at", "source", "by"}
    assert exported[0]["opted_out_at"].endswith("Z") and exported[0]["source"] == "import"
    assert not (output.parent / "gamma.csv.partial").exists()
    to_stdout = sendq(env, "optouts", "export", "--org", "gamma")
    assert to_stdout.returncode == 0 and len(to_stdout.stdout.splitlines()) == 251


def test_an_export_as_json_needs_an_output_file(env: dict[str, str]) -> None:
    done = sendq(env, "optouts", "export", "--json")
    assert done.returncode == 2 and "--json needs --output" in done.stdout


def test_an_export_to_a_place_that_cannot_be_written_says_so(
    env: dict[str, str], tmp_path: Path
) -> None:
    done = sendq(env, "optouts", "export", "--output", str(tmp_path / "missing" / "out.csv"))
    assert done.returncode == 1 and "cannot be written" in done.stderr


def test_flagged_possible_opt_outs_are_reviewed_confirmed_or_dismissed(
    env: dict[str, str], optouts: OptoutList
) -> None:
    optouts.flag("beta", "+12025550180", inbound_id="in-1", body="wrong number", rule="wrong")
    optouts.flag("beta", "+12025550181", inbound_id="in-2", body="stpo", rule="misspelt")
    listed = as_json(env, "optouts", "review", "--org", "beta")["flagged"]
    assert [r["number"] for r in listed] == ["+12025550180", "+12025550181"]
    table = sendq(env, "optouts", "review", "--org", "beta")
    assert "wrong number" in table.stdout and "in-1" in table.stdout
    confirmed = as_json(
        env, "optouts", "review", "--org", "beta", "--confirm", "in-1", "--by", "jo"
    )
    assert confirmed == {"org": "beta", "number": "+12025550180", "result": "opted_out"}
    entry = optouts.entry("beta", "+12025550180")
    assert entry is not None and entry["by"] == "jo" and entry["cause"]["inbound_id"] == "in-1"
    dismissed = as_json(env, "optouts", "review", "--org", "beta", "--dismiss", "202-555-0181")
    assert dismissed["result"] == "dismissed"
    assert not optouts.is_opted_out("beta", "+12025550181")
    assert as_json(env, "optouts", "review", "--org", "beta")["flagged"] == []


def test_confirming_a_number_that_is_not_flagged_is_refused(env: dict[str, str]) -> None:
    done = sendq(env, "optouts", "review", "--confirm", "+12025550199")
    assert done.returncode == 1 and "is not flagged for review in acme" in done.stderr


def test_confirm_and_dismiss_together_are_bad_usage(env: dict[str, str]) -> None:
    done = sendq(env, "optouts", "review", "--confirm", PERSON, "--dismiss", PERSON)
    assert done.returncode == 2 and "either --confirm or --dismiss" in done.stderr


@pytest.mark.parametrize("command", ["add", "check"])
def test_a_bad_number_is_refused_with_its_reason(env: dict[str, str], command: str) -> None:
    done = sendq(env, "optouts", command, "12")
    assert done.returncode == 1 and "number: '12' is not a possible number" in done.stderr
    assert "number:" in json.loads(sendq(env, "optouts", command, "12", "--json").stdout)["error"]


@pytest.mark.parametrize("org", ["acme corp", "acme:x", "[red]x"])
def test_an_organisation_name_with_other_characters_is_refused(
    env: dict[str, str], org: str
) -> None:
    done = sendq(env, "optouts", "add", PERSON, "--org", org)
    assert done.returncode == 1
    assert f"org: {org!r} is not an organisation name" in done.stderr
    audit = sendq(env, "optouts", "audit", "--org", org)
    assert audit.returncode == 1 and "is not an organisation name" in audit.stderr


def test_an_organisation_the_config_does_not_know_is_bad_usage(env: dict[str, str]) -> None:
    done = sendq(env, "optouts", "add", PERSON, "--org", "acem")
    assert done.returncode == 2
    assert "unknown organisation 'acem'; known: acme, beta, gamma" in done.stderr
    assert "[orgs.NAME]" in done.stderr


def test_opting_back_in_needs_a_reason(env: dict[str, str]) -> None:
    assert sendq(env, "optouts", "remove", PERSON).returncode == 2
    blank = sendq(env, "optouts", "remove", PERSON, "--reason", " ")
    assert blank.returncode == 2 and "--reason must say how" in blank.stderr


# -- sendq inbound -------------------------------------------------------------------


def test_inbound_texts_are_listed_newest_first_and_shown(env: dict[str, str], server: str) -> None:
    client = redis.Redis.from_url(server)
    log = InboundLog(client)
    first = log.record("twilio", InboundText("SM-a", "+12025550190", OURS, "who is this?"))
    second = log.record("telnyx", InboundText("SM-b", "+12025550191", OURS, "STOP"))
    log.mark(second.id, kind="stop", action="opted_out")
    client.close()
    listed = as_json(env, "inbound", "list", "--limit", "2")["inbound"]
    assert [r["id"] for r in listed] == [second.id, first.id]
    assert listed[0]["from"] == "+12025550191" and listed[0]["kind"] == "stop"
    mine = as_json(env, "inbound", "list", "--number", "(202) 555-0190")["inbound"]
    assert [r["id"] for r in mine] == [first.id]
    shown = as_json(env, "inbound", "show", second.id)["inbound"]
    assert shown["body"] == "STOP" and shown["provider"] == "telnyx"
    table = sendq(env, "inbound", "show", second.id)
    assert table.returncode == 0 and "0191" in table.stdout and "+12025550191" not in table.stdout
    listing = sendq(env, "inbound", "list")
    assert listing.returncode == 0 and "who is this?" in listing.stdout


def test_an_unknown_inbound_id_is_a_clear_error(env: dict[str, str]) -> None:
    done = sendq(env, "inbound", "show", "nope")
    assert done.returncode == 1 and "no inbound text with id 'nope'" in done.stderr


def test_listing_inbound_texts_of_a_bad_number_is_refused(env: dict[str, str]) -> None:
    done = sendq(env, "inbound", "list", "--number", "12")
    assert done.returncode == 1 and "number: '12' is not a possible number" in done.stderr
