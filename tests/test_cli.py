"""The sendq command, run as operators run it: a real process on a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_alerts import alert_receiver, hanging_url
from worker import embedded
from worker.alerts import DEFAULT_FLUSH_S


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    data_dir = tmp_path_factory.mktemp("cli-redis")
    url = embedded.ensure(data_dir)
    yield {**os.environ, "SENDQ_REDIS_URL": url, "SENDQ_CONFIG": "", "NO_COLOR": "1"}
    embedded.stop(data_dir)


def sendq(
    env: dict[str, str], *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_enqueue_prints_the_message_id_and_show_finds_it(cli_env) -> None:
    done = sendq(cli_env, "enqueue", "--to", "(201) 555-0123", "--body", "hi", "--json")
    assert done.returncode == 0, done.stderr
    msg_id = json.loads(done.stdout)["message_id"]
    shown = json.loads(sendq(cli_env, "messages", "show", msg_id, "--json").stdout)
    assert shown["record"]["to"] == "+12015550123"
    assert shown["history"][0]["to"] == "queued"


def test_the_same_key_twice_gives_the_same_id(cli_env) -> None:
    args = ("enqueue", "--to", "+12015550123", "--body", "hi", "--key", "cli-k", "--json")
    first, second = (json.loads(sendq(cli_env, *args).stdout) for _ in range(2))
    assert first["message_id"] == second["message_id"] and second["duplicate"]


def test_a_bad_number_is_refused_with_its_reason(cli_env) -> None:
    done = sendq(cli_env, "enqueue", "--to", "12", "--body", "hi")
    assert done.returncode == 1
    assert "to:" in done.stderr and "not" in done.stderr
    as_json = sendq(cli_env, "enqueue", "--to", "12", "--body", "hi", "--json")
    assert "to:" in json.loads(as_json.stdout)["error"]


def test_stats_count_by_campaign(cli_env) -> None:
    sendq(cli_env, "enqueue", "--to", "+12015550123", "--body", "x", "--campaign", "stats-c")
    stats = json.loads(sendq(cli_env, "messages", "stats", "--json").stdout)
    assert stats["by_campaign"]["stats-c"] == {"queued": 1}


def test_an_unknown_message_is_a_clear_error(cli_env) -> None:
    done = sendq(cli_env, "messages", "show", "nope")
    assert done.returncode == 1 and "no message with id 'nope'" in done.stderr


def test_an_operator_pauses_and_resumes_a_provider_with_an_audit_trail(cli_env) -> None:
    paused = sendq(
        cli_env,
        "providers",
        "pause",
        "twilio",
        "--reason",
        "billing issue",
        "--by",
        "maria",
        "--json",
    )
    assert json.loads(paused.stdout) == {"name": "twilio", "state": "paused", "changed": True}
    status = json.loads(sendq(cli_env, "providers", "status", "--json").stdout)
    twilio = next(p for p in status["providers"] if p["name"] == "twilio")
    assert (twilio["state"], twilio["why"], twilio["by"]) == ("paused", "billing issue", "maria")
    resumed = json.loads(sendq(cli_env, "providers", "resume", "twilio", "--json").stdout)
    assert resumed["state"] == "closed"
    history = json.loads(sendq(cli_env, "providers", "history", "twilio", "--json").stdout)
    assert [(h["from"], h["to"], h["why"]) for h in history["history"]][:2] == [
        ("paused", "closed", "resumed by operator"),
        ("closed", "paused", "billing issue"),
    ]


def test_the_history_of_an_unknown_provider_is_refused(cli_env) -> None:
    done = sendq(cli_env, "providers", "history", "twillio")
    assert done.returncode == 2 and "unknown provider 'twillio'" in done.stderr


def test_pausing_an_unknown_provider_is_refused(cli_env) -> None:
    done = sendq(cli_env, "providers", "pause", "twillio", "--reason", "x")
    assert done.returncode == 2 and "unknown provider 'twillio'" in done.stderr


def test_a_bad_config_file_stops_with_file_key_and_reason(cli_env, tmp_path: Path) -> None:
    config = tmp_path / "sendq.toml"
    config.write_text('[worker]\nthreads = "many"\n')
    done = sendq({**cli_env, "SENDQ_CONFIG": str(config)}, "messages", "stats")
    assert done.returncode == 2
    assert str(config) in done.stderr and "worker.threads" in done.stderr
    assert "valid integer" in done.stderr


def test_a_secret_in_the_config_file_is_refused(cli_env, tmp_path: Path) -> None:
    config = tmp_path / "sendq.toml"
    config.write_text('twilio_auth_token = "abc"\n')
    done = sendq({**cli_env, "SENDQ_CONFIG": str(config)}, "messages", "stats")
    assert done.returncode == 2 and "only from the environment" in done.stderr
    assert "abc" not in done.stderr


def test_a_config_file_that_is_not_toml_is_refused(cli_env, tmp_path: Path) -> None:
    config = tmp_path / "sendq.toml"
    config.write_text("[worker\n")
    done = sendq({**cli_env, "SENDQ_CONFIG": str(config)}, "messages", "stats")
    assert done.returncode == 2 and "not valid TOML" in done.stderr


def test_a_route_naming_an_unknown_provider_is_a_config_error(cli_env, tmp_path: Path) -> None:
    config = tmp_path / "sendq.toml"
    config.write_text('[routes]\ndefault = ["twilio", "twillio"]\n')
    done = sendq({**cli_env, "SENDQ_CONFIG": str(config)}, "messages", "stats")
    assert done.returncode == 2 and "unknown provider 'twillio'" in done.stderr


def test_an_empty_number_pool_is_a_config_error(cli_env, tmp_path: Path) -> None:
    config = tmp_path / "sendq.toml"
    config.write_text("[providers.twilio]\nnumbers = []\n")
    done = sendq({**cli_env, "SENDQ_CONFIG": str(config)}, "messages", "stats")
    assert done.returncode == 2 and "pool is empty" in done.stderr


def test_the_shipped_config_file_is_valid(cli_env) -> None:
    root = Path(__file__).resolve().parent.parent
    env = {**cli_env, "SENDQ_CONFIG": str(root / "config" / "sendq.toml")}
    assert sendq(env, "messages", "stats", "--json").returncode == 0


def test_an_operator_pauses_a_carrier_for_every_campaign_and_resumes_it(cli_env) -> None:
    paused = sendq(
        cli_env,
        "carriers",
        "pause",
        "Verizon Wireless",
        "--reason",
        "30007 spike",
        "--by",
        "maria",
        "--json",
    )
    assert json.loads(paused.stdout)["changed"] == [
        {"name": "verizon:*", "state": "paused", "changed": True}
    ]
    status = json.loads(sendq(cli_env, "carriers", "status", "--json").stdout)
    wide = next(c for c in status["carriers"] if c["name"] == "verizon:*")
    assert (wide["state"], wide["why"], wide["by"], wide["held"]) == (
        "paused",
        "30007 spike",
        "maria",
        0,
    )
    resumed = json.loads(sendq(cli_env, "carriers", "resume", "verizon", "--json").stdout)
    assert {c["name"]: c["state"] for c in resumed["changed"]}["verizon:*"] == "closed"
    history = json.loads(sendq(cli_env, "carriers", "history", "verizon", "--json").stdout)[
        "history"
    ]
    assert [(h["from"], h["to"], h["who"]) for h in history][:2] == [
        ("paused", "closed", os.environ.get("USER") or os.environ.get("LOGNAME") or "operator"),
        ("closed", "paused", "maria"),
    ]


def test_a_carrier_pause_needs_a_reason(cli_env) -> None:
    done = sendq(cli_env, "carriers", "pause", "att", "--reason", " ")
    assert done.returncode == 2 and "--reason must say why" in done.stderr


def test_limits_status_shows_each_configured_limiter(cli_env, tmp_path: Path) -> None:
    config = tmp_path / "sendq.toml"
    config.write_text(
        '[providers.twilio]\nnumbers = ["+12015550100"]\n'
        "[limits.providers.twilio]\nrate = 50\n"
        '[limits.numbers]\n"+12015550100" = "long_code"\n'
        "[limits.carriers.tmobile]\ndaily_cap = 2000\n"
    )
    done = sendq({**cli_env, "SENDQ_CONFIG": str(config)}, "limits", "status", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)["limits"]}
    assert rows["provider:twilio"]["rate"] == 50
    assert rows["number:+12015550100"]["rate"] == 1
    assert any(r["kind"] == "daily_cap" and r["cap"] == 2000 for r in rows.values())


def test_a_file_loads_good_rows_and_lists_bad_ones_with_line_numbers(
    cli_env, tmp_path: Path
) -> None:
    path = tmp_path / "list.csv"
    path.write_text(
        "to,body,key\n+12015550123,hi,f1\n12,bad number,f2\n+12015550124,,f3\n"
        "+12015550125,ok,f4\n+12015550125,ok,f4\n"
    )
    rejects = tmp_path / "rejects.csv"
    done = sendq(cli_env, "enqueue", "--file", str(path), "--rejects", str(rejects), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["accepted"], summary["duplicates"], summary["rejected"]) == (2, 1, 2)
    assert [r["line"] for r in summary["rejects"]] == [3, 4]
    assert "to:" in summary["rejects"][0]["reason"] and "body:" in summary["rejects"][1]["reason"]
    assert rejects.read_text().splitlines()[0] == "line,reason"


def test_a_file_summary_is_readable_without_json(cli_env, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text("to,body\n+12015550126,hi\n12,bad\n")
    done = sendq(cli_env, "enqueue", "--file", str(path))
    assert "accepted 1, duplicates 0, suppressed 0, conflicts 0, rejected 1" in done.stdout
    assert "line 3: to:" in done.stderr


def test_the_rejects_file_shows_a_bad_number_as_it_was_given(cli_env, tmp_path: Path) -> None:
    # The user's own data: masked, the row could not be found and fixed.
    path = tmp_path / "list.csv"
    path.write_text("to,body\n+12015550128,hi\n(201) 555-01234,hi\n+1 201 555 0123 99,hi\n")
    rejects = tmp_path / "rejects.csv"
    done = sendq(cli_env, "enqueue", "--file", str(path), "--rejects", str(rejects))
    assert done.returncode == 0, done.stderr
    written = rejects.read_text()
    assert "3,to: '(201) 555-01234' is not a possible number" in written
    assert "4,to: '+1 201 555 0123 99' is not a possible number" in written


def test_a_used_key_with_another_text_is_a_conflict_naming_both_lines(
    cli_env, tmp_path: Path
) -> None:
    path = tmp_path / "keys.csv"
    path.write_text(
        "to,body,key\n+12015550130,Polls close at 8,conf-1\n+12015550131,hi,conf-2\n"
        "+12015550130,Polls close at 9,conf-1\n+12015550139,hi,conf-2\n"
    )
    rejects = tmp_path / "rejects.csv"
    done = sendq(cli_env, "enqueue", "--file", str(path), "--rejects", str(rejects))
    assert done.returncode == 0, done.stderr
    assert "accepted 2, duplicates 0, suppressed 0, conflicts 2, rejected 0" in done.stdout
    assert "line 4: conflict: key 'conf-1' was used by line 2 for another body" in done.stderr
    assert "line 5: conflict: key 'conf-2' was used by line 3 for another number" in done.stderr
    assert "4,conflict: key 'conf-1' was used by line 2" in rejects.read_text()


def test_a_conflict_with_an_earlier_run_says_so_in_json_and_keeps_the_first(
    cli_env, tmp_path: Path
) -> None:
    path = tmp_path / "first.csv"
    path.write_text("to,body,key\n+12015550132,first,conf-3\n")
    first = json.loads(sendq(cli_env, "enqueue", "--file", str(path), "--json").stdout)
    path.write_text("to,body,key\n+12015550132,second,conf-3\n")

    again = sendq(cli_env, "enqueue", "--file", str(path), "--json")

    assert again.returncode == 1, "nothing was queued"
    summary = json.loads(again.stdout)
    assert (first["accepted"], summary["accepted"], summary["conflicted"]) == (1, 0, 1)
    [conflict] = summary["conflicts"]
    assert (conflict["line"], conflict["earlier_line"], conflict["differs"]) == (2, None, ["body"])
    assert "used by an earlier run" in conflict["reason"]
    shown = sendq(cli_env, "messages", "show", conflict["message_id"], "--json")
    assert json.loads(shown.stdout)["record"]["body"] == "first"


def test_one_text_under_a_used_key_with_another_body_is_refused(cli_env) -> None:
    args = ("enqueue", "--to", "+12015550133", "--key", "conf-4")
    sendq(cli_env, *args, "--body", "first")
    done = sendq(cli_env, *args, "--body", "second")
    assert done.returncode == 1
    assert "key 'conf-4' was used by an earlier run for another body" in done.stderr
    assert "nothing was queued" in done.stderr


def test_stdin_jsonl_with_a_template(cli_env) -> None:
    data = '{"to": "+12015550127", "name": "Ana"}\n'
    done = sendq(cli_env, "enqueue", "--file", "-", "--template", "Hi {name}", "--json", stdin=data)
    assert json.loads(done.stdout)["accepted"] == 1


def test_an_unusable_file_is_a_clear_error(cli_env, tmp_path: Path) -> None:
    done = sendq(cli_env, "enqueue", "--file", str(tmp_path / "missing.csv"))
    assert done.returncode == 1 and "missing.csv: does not exist" in done.stderr


def _events(stderr: str) -> list[dict[str, Any]]:
    """The structlog events the command wrote (JSON lines, stderr is not a TTY)."""
    found = []
    for line in stderr.splitlines():
        try:
            found.append(json.loads(line))
        except ValueError:
            continue
    return found


def test_a_carrier_pause_and_resume_from_the_cli_log_and_post_alerts(cli_env) -> None:
    with alert_receiver() as receiver:
        env = {**cli_env, "SENDQ_ALERTS__URLS": json.dumps([receiver.url])}
        args = ("carriers", "pause", "uscellular", "--campaign", "gotv", "--reason", "30007 spike")
        paused = sendq(env, *args, "--by", "maria", "--json")
        assert paused.returncode == 0, paused.stderr
        # stdout stays the command's JSON: the log goes to stderr.
        assert json.loads(paused.stdout)["changed"][0]["state"] == "paused"
        [event] = [e for e in _events(paused.stderr) if e.get("event") == "breaker changed"]
        assert (event["level"], event["name"], event["by"]) == ("error", "uscellular:gotv", "maria")
        # The command waited for its alert: it was posted before the process ended.
        assert len(receiver.requests) == 1
        resumed = sendq(env, "carriers", "resume", "uscellular", "--campaign", "gotv", "--by", "li")
        assert resumed.returncode == 0, resumed.stderr
        alerts = receiver.wait_for(2)
    assert [a["text"] for a in alerts] == [
        "sendq: carrier uscellular, campaign gotv is now paused (was closed), by maria: "
        "30007 spike",
        "sendq: carrier uscellular, campaign gotv is now closed (was paused), by li: "
        "resumed by operator",
    ]
    assert alerts[0]["source"] == "cli"


def test_a_provider_pause_and_resume_from_the_cli_post_alerts(cli_env) -> None:
    with alert_receiver() as receiver:
        env = {**cli_env, "SENDQ_ALERTS__URLS": json.dumps([receiver.url])}
        paused = sendq(env, "providers", "pause", "vonage", "--reason", "outage", "--by", "maria")
        assert paused.returncode == 0, paused.stderr
        again = sendq(env, "providers", "pause", "vonage", "--reason", "outage")
        assert "(unchanged)" in again.stdout
        resumed = sendq(env, "providers", "resume", "vonage", "--by", "maria")
        assert resumed.returncode == 0, resumed.stderr
        alerts = receiver.wait_for(3, timeout_s=1.0)
    # A pause of a paused provider changes nothing and alerts nobody.
    assert [(a["name"], a["to"], a["by"]) for a in alerts] == [
        ("vonage", "paused", "maria"),
        ("vonage", "closed", "maria"),
    ]


def test_a_dead_alert_url_never_hangs_the_cli(cli_env) -> None:
    with hanging_url() as dead:
        env = {**cli_env, "SENDQ_ALERTS__URLS": json.dumps([dead])}
        started = time.monotonic()
        done = sendq(env, "carriers", "pause", "att", "--campaign", "dead-url", "--reason", "x")
        took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "att:dead-url: paused"
    assert took < DEFAULT_FLUSH_S + 10  # the wait, plus the interpreter's start-up
    assert "warning: the alert was not confirmed within 5 s" in done.stderr
    assert "alert-path-secret" not in done.stderr
