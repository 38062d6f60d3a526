"""The simulator plays the filtering that does not announce itself, per carrier.

Real HTTP on loopback: a simulator started for this module, texts sent to it as
Twilio's API takes them, and a small recording server standing in for sendq's
webhook routes, taking receipts and handsets' replies alike. What each test
checks is what a benchmark of the deliverability watch reads: the receipts
that came (or did not), the inboxes, the replies, and ``/sim/carriers``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from statistics import median, quantiles
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from typer import Typer
from typer.testing import CliRunner

from worker.simulator import rules as rules_module
from worker.simulator.carriers import number_for
from worker.simulator.cli import simulator_command
from worker.simulator.client import SimulatorClient
from worker.simulator.config import SimulatorConfig
from worker.simulator.replies import ReplySettings
from worker.simulator.scenario import Rule, Scenario, ScenarioError, from_data, parse
from worker.simulator.server import SimulatorHandle, start_in_thread

TOKEN = "t-filtering"
SID = "AC" + "6" * 32
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"
SENDER = "+12015550100"


class Hooks:
    """sendq's webhook routes, played by a recording server: receipts and replies."""

    def __init__(self) -> None:
        self.hits: list[tuple[str, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                outer.hits.append((self.path, dict(parse_qsl(body))))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            do_POST = do_GET = _record

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def receipts(self) -> dict[str, dict[str, str]]:
        """Each receipt's form, by the text's body mark (the ``mid`` in its URL)."""
        return {
            path.split("mid=", 1)[1]: form
            for path, form in list(self.hits)
            if "/status" in path and "mid=" in path
        }

    def replies(self) -> list[dict[str, str]]:
        return [form for path, form in list(self.hits) if path.endswith("/inbound")]


@pytest.fixture(scope="module")
def hooks() -> Iterator[Hooks]:
    h = Hooks()
    yield h
    h.server.shutdown()


@pytest.fixture(scope="module")
def handle() -> Iterator[SimulatorHandle]:
    config = SimulatorConfig(port=0, auth_token=TOKEN, receipt_retry_base_s=0.05)
    with start_in_thread(config) as h:
        yield h


@pytest.fixture
def sim(handle: SimulatorHandle, hooks: Hooks) -> Iterator[SimulatorClient]:
    hooks.hits.clear()
    with SimulatorClient(handle.url) as client:
        yield client


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(auth=(SID, TOKEN)) as client:
        yield client


def send(http: httpx.Client, sim: SimulatorClient, hooks: Hooks, to: str, body: str) -> str:
    """Send ``body`` to ``to`` through the simulator's Twilio; the receipt URL names it."""
    mark = uuid.uuid5(uuid.NAMESPACE_URL, f"{to} {body}").hex[:12]
    form = {
        "To": to,
        "From": SENDER,
        "Body": body,
        "StatusCallback": f"{hooks.url}/webhooks/twilio/status?mid={mark}",
    }
    http.post(sim.url + PATH, data=form).raise_for_status()
    return mark


def wait_for(check: Any, what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s} s"
        time.sleep(0.02)


def instant_replies(**extra: object) -> dict[str, object]:
    return {"rate": 1, "delay_s": 0, "kinds": {"ordinary": 1}, **extra}


# -- silent drops ----------------------------------------------------------------------------


def test_a_silently_dropped_text_is_receipted_delivered_never_arrives_and_is_never_answered(
    sim: SimulatorClient, hooks: Hooks, http: httpx.Client
) -> None:
    sim.play({"replies": instant_replies(), "rules": [{"carrier": "verizon", "silent": True}]})
    dropped = send(http, sim, hooks, number_for("verizon", 1), "Rally at noon 1")
    arrived = send(http, sim, hooks, number_for("att", 1), "Rally at noon 1")
    sim.settle_receipts()
    sim.settle_replies()
    receipts = hooks.receipts()
    assert receipts[dropped]["MessageStatus"] == receipts[arrived]["MessageStatus"] == "delivered"
    assert "ErrorCode" not in receipts[dropped] or not receipts[dropped]["ErrorCode"]
    assert [r["From"] for r in hooks.replies()] == [number_for("att", 1)]
    handset = sim.handset(number_for("verizon", 1))
    assert not handset["texts"] and not handset["replies"] and not handset["filtered"]
    assert [t["body"] for t in handset["silently_dropped"]] == ["Rally at noon 1"]
    verizon = sim.carriers()["verizon"]
    assert (verizon["accepted"], verizon["silently_dropped"], verizon["reached_handset"]) == (
        1,
        1,
        0,
    )
    assert (verizon["receipts_due"], verizon["receipts_posted"]) == (1, 1)
    assert sim.report()["silently_dropped"] == 1


def test_a_silent_drop_from_a_time_on_counts_the_texts_into_the_block(
    sim: SimulatorClient, hooks: Hooks, http: httpx.Client
) -> None:
    from_s = 1.0  # long enough for the three texts before it on a busy machine
    sim.play({"rules": [{"carrier": "verizon", "from_s": from_s, "silent": True}]})
    for i in range(3):
        send(http, sim, hooks, number_for("verizon", 10 + i), f"before {i}")
    wait_for(lambda: sim.report()["t"] > from_s, "the scenario clock passing from_s")
    for i in range(4):
        send(http, sim, hooks, number_for("verizon", 20 + i), f"after {i}")
    send(http, sim, hooks, number_for("att", 20), "after on att")
    into = sim.accepted("verizon", after_s=from_s, times=True)
    assert (into["accepted"], into["silently_dropped"], into["reached_handset"]) == (4, 4, 0)
    started_ms = sim.report()["started_ms"]
    assert len(into["accepted_ms"]) == 4
    assert all(at > started_ms + from_s * 1000 for at in into["accepted_ms"])
    before = sim.accepted("verizon", until_s=from_s)
    assert (before["accepted"], before["reached_handset"], before["silently_dropped"]) == (3, 3, 0)
    by_ms = sim.accepted("verizon", after_ms=started_ms + from_s * 1000)
    assert by_ms["accepted"] == 4
    assert sim.accepted("verizon", after_ms=into["accepted_ms"][-1] + 1)["accepted"] == 0
    assert sim.accepted("att", after_s=from_s)["reached_handset"] == 1


# -- receipts that stop ----------------------------------------------------------------------


def test_receipts_stop_for_one_carrier_while_its_texts_still_arrive(
    sim: SimulatorClient, hooks: Hooks, http: httpx.Client
) -> None:
    sim.play({"rules": [{"carrier": "tmobile", "receipts": False}]})
    silent = send(http, sim, hooks, number_for("tmobile", 1), "no receipt for me")
    heard = send(http, sim, hooks, number_for("att", 2), "a receipt for me")
    wait_for(lambda: heard in hooks.receipts(), "att's receipt")
    assert sim.settle_receipts()["receipts_pending"] == 0
    assert silent not in hooks.receipts()
    assert [t["body"] for t in sim.handset(number_for("tmobile", 1))["texts"]] == [
        "no receipt for me"
    ]
    tmobile = sim.carriers()["tmobile"]
    assert (tmobile["receipts_suppressed"], tmobile["receipts_due"]) == (1, 0)
    assert tmobile["reached_handset"] == 1 and sim.report()["receipts_suppressed"] == 1
    # Twilio itself still shows the text as sent: no receipt ever settled it.
    listed = http.get(sim.url + PATH, params={"To": number_for("tmobile", 1)}).json()
    assert [m["status"] for m in listed["messages"]] == ["sent"]


def test_a_rules_receipts_true_turns_them_back_on_under_a_scenario_without_receipts(
    sim: SimulatorClient, hooks: Hooks, http: httpx.Client
) -> None:
    sim.play({"receipts": False, "rules": [{"carrier": "att", "receipts": True}]})
    heard = send(http, sim, hooks, number_for("att", 3), "receipted")
    unheard = send(http, sim, hooks, number_for("verizon", 3), "not receipted")
    wait_for(lambda: heard in hooks.receipts(), "att's receipt")
    sim.settle_receipts()
    assert unheard not in hooks.receipts()
    assert sim.carriers()["verizon"]["receipts_suppressed"] == 1


def test_filtered_texts_receipts_stop_too_when_a_rule_says_so(
    sim: SimulatorClient, hooks: Hooks, http: httpx.Client
) -> None:
    sim.play(
        {
            "rules": [
                {"carrier": "verizon", "error": "carrier_block"},
                {"carrier": "verizon", "receipts": False},
            ]
        }
    )
    send(http, sim, hooks, number_for("verizon", 4), "blocked and unheard")
    sim.settle_receipts()
    assert not hooks.receipts()
    verizon = sim.carriers()["verizon"]
    assert (verizon["filtered"], verizon["receipts_suppressed"]) == (1, 1)


# -- receipt delays by a distribution -----------------------------------------------------


def delays(scenario: Scenario, carrier: str = "att", n: int = 4000) -> list[float]:
    return [
        scenario.receipt_delay_s(0.0, carrier, number_for(carrier, i), f"text {i}", "twilio")
        for i in range(n)
    ]


def test_a_lognormal_receipt_delay_has_the_median_and_p99_it_was_given() -> None:
    found = delays(from_data({"dlr_delay_median_s": 5, "dlr_delay_p99_s": 60}, source="t"))
    assert 4.6 < median(found) < 5.4
    assert 48 < quantiles(found, n=100)[98] < 72
    assert min(found) > 0


def test_a_rules_lognormal_delay_covers_its_carrier_and_the_scenarios_fixed_one_the_rest() -> None:
    rule = {"carrier": "verizon", "dlr_delay_median_s": 2, "dlr_delay_p99_s": 30}
    scenario = from_data({"dlr_delay_s": 0.2, "rules": [rule]}, source="t")
    assert set(delays(scenario, "att", 50)) == {0.2}
    assert len(set(delays(scenario, "verizon", 50))) == 50
    assert set(delays(Scenario(), "att", 5)) == {0.05}  # the default, unchanged


def test_a_texts_receipt_delay_repeats_and_another_seed_draws_others() -> None:
    lognormal = {"dlr_delay_median_s": 5, "dlr_delay_p99_s": 60}
    first = delays(from_data({**lognormal, "seed": 1}, source="t"), n=200)
    assert first == delays(from_data({**lognormal, "seed": 1}, source="t"), n=200)
    assert first != delays(from_data({**lognormal, "seed": 2}, source="t"), n=200)


def test_lognormally_late_receipts_all_arrive_and_are_counted_per_carrier(
    sim: SimulatorClient, hooks: Hooks, http: httpx.Client
) -> None:
    sim.play({"dlr_delay_median_s": 0.05, "dlr_delay_p99_s": 0.5})
    marks = [send(http, sim, hooks, number_for("tmobile", 30 + i), f"late {i}") for i in range(20)]
    sim.settle_receipts()
    assert set(marks) <= set(hooks.receipts())
    tmobile = sim.carriers()["tmobile"]
    assert (tmobile["receipts_due"], tmobile["receipts_posted"], tmobile["receipts_failed"]) == (
        20,
        20,
        0,
    )


# -- delivery quietly cut ------------------------------------------------------------------


def test_a_cut_delivers_about_its_share_and_a_resent_text_meets_the_same_fate(
    sim: SimulatorClient, hooks: Hooks, http: httpx.Client
) -> None:
    n = 200
    sim.play({"replies": instant_replies(), "rules": [{"carrier": "att", "deliver_share": 0.5}]})
    texts = [(number_for("att", 100 + i), f"Cut campaign {i}") for i in range(n)]
    marks = [send(http, sim, hooks, to, body) for to, body in texts]
    sim.settle_receipts()
    first = hooks.receipts()
    cut = {m for m in marks if first[m]["MessageStatus"] == "undelivered"}
    assert 60 <= len(cut) <= 140  # 0.5 of 200, within 4 standard deviations
    assert {first[m]["ErrorCode"] for m in cut} == {"30003"}  # not 30007
    assert all(first[m]["MessageStatus"] == "delivered" for m in set(marks) - cut)
    att = sim.carriers()["att"]
    assert (att["undelivered_by_cut"], att["reached_handset"]) == (len(cut), n - len(cut))
    replied = {r["from"] for r in sim.replies(detail=True)["replies"]}
    assert replied == {to for (to, _), m in zip(texts, marks, strict=True) if m not in cut}
    hooks.hits.clear()
    for to, body in texts:  # a retry: the same To and Body
        send(http, sim, hooks, to, body)
    sim.settle_receipts()
    again = hooks.receipts()
    assert {m for m in marks if again[m]["MessageStatus"] == "undelivered"} == cut
    assert sim.carriers()["att"]["undelivered_by_cut"] == 2 * len(cut)


def test_a_cut_is_per_campaign_when_the_rule_names_its_wording() -> None:
    rule = Rule(carrier="att", body_contains="Rally", deliver_share=0.0)
    scenario = Scenario(rules=(rule,))
    to = number_for("att", 5)
    assert scenario.quiet(0.0, "att", to, "Rally at noon", "twilio") is rule
    assert scenario.quiet(0.0, "att", to, "Phone bank tonight", "twilio") is None
    assert scenario.quiet(0.0, "tmobile", to, "Rally at noon", "twilio") is None


def test_another_seed_cuts_other_texts_and_a_smaller_share_cuts_a_superset() -> None:
    texts = [(number_for("verizon", i), f"text {i}") for i in range(400)]

    def cut(share: float, seed: int) -> set[int]:
        s = Scenario(rules=(Rule(deliver_share=share),), seed=seed)
        return {i for i, (to, body) in enumerate(texts) if s.quiet(0.0, "verizon", to, body)}

    assert cut(0.5, 1) != cut(0.5, 2)
    assert cut(0.5, 1) <= cut(0.3, 1)


def test_an_error_rule_decides_before_a_quiet_one() -> None:
    block = Rule(carrier="verizon", error="carrier_block")
    scenario = Scenario(rules=(Rule(carrier="verizon", silent=True), block))
    to = number_for("verizon", 6)
    assert scenario.fate(0.0, "verizon", to, "hi", "twilio") is block
    # (The engine asks quiet() only when fate() found nothing.)
    assert scenario.quiet(0.0, "verizon", to, "hi", "twilio") is not None


# -- the report, the CLI, the routes -----------------------------------------------------


def test_the_cli_report_shows_each_carriers_quiet_counts(
    sim: SimulatorClient, hooks: Hooks, http: httpx.Client
) -> None:
    sim.play({"rules": [{"carrier": "verizon", "silent": True}]})
    send(http, sim, hooks, number_for("verizon", 7), "cli")
    app = Typer()
    app.command()(simulator_command)
    result = CliRunner().invoke(app, ["--report", "--url", sim.url])
    assert result.exit_code == 0, result.output
    by_carrier = result.output.split("by carrier", 1)[1].split("by provider", 1)[0]
    row = next(line for line in by_carrier.splitlines() if "silently dropped" in line)
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == ["silently dropped", "0", "0", "1", "0"]  # att, tmobile, verizon, unknown


@pytest.mark.parametrize(
    ("path", "status", "reason"),
    [
        ("/sim/carriers/sprint/accepted", 404, "unknown carrier 'sprint'"),
        ("/sim/carriers/sprint", 404, "expected one of att, tmobile, verizon, unknown"),
        ("/sim/carriers/att/accepted?after_s=soon", 400, "after_s: not a number"),
        ("/sim/carriers/att/accepted?until_ms=inf", 400, "until_ms: must be finite"),
        ("/sim/carriers/att/accepted?after_s=1&after_ms=2", 400, "after_ms or after_s"),
    ],
)
def test_a_bad_carrier_query_is_refused_naming_the_parameter(
    sim: SimulatorClient, path: str, status: int, reason: str
) -> None:
    answer = httpx.get(sim.url + path)
    assert answer.status_code == status and reason in answer.json()["error"]


# -- the scenario keys ---------------------------------------------------------------------


def test_the_rules_docstring_example_is_a_valid_scenario() -> None:
    doc = rules_module.__doc__ or ""
    example = doc.split("::\n", 1)[1].split("\n* ``silent", 1)[0]
    loaded = parse("\n".join(line[4:] for line in example.splitlines()), source="doc", fmt="toml")
    silent, stopped, late, cut = loaded.rules
    assert (silent.carrier, silent.from_s, silent.silent) == ("verizon", 60, True)
    assert (stopped.carrier, stopped.receipts) == ("tmobile", False)
    assert (late.dlr_delay_median_s, late.dlr_delay_p99_s) == (5, 60)
    assert (cut.body_contains, cut.deliver_share) == ("Rally", 0.5)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"rules": [{"silent": True, "error": "carrier_block"}]}, "filter without a word"),
        ({"rules": [{"deliver_share": 0.5, "http_status": 503}]}, "filter without a word"),
        ({"rules": [{"silent": True, "deliver_share": 0.5}]}, "not both"),
        ({"rules": [{"deliver_share": 1.5}]}, "rules[0].deliver_share: Input should be less"),
        ({"rules": [{"receipts": False, "dlr_delay_s": 2}]}, "a receipt delay means nothing"),
        ({"rules": [{"dlr_delay_median_s": 5}]}, "dlr_delay_median_s and dlr_delay_p99_s come"),
        (
            {"rules": [{"dlr_delay_median_s": 5, "dlr_delay_p99_s": 1}]},
            "dlr_delay_p99_s (1.0) must be at least dlr_delay_median_s (5.0)",
        ),
        (
            {"dlr_delay_s": 1, "dlr_delay_median_s": 5, "dlr_delay_p99_s": 60},
            "give either dlr_delay_s or dlr_delay_median_s and dlr_delay_p99_s",
        ),
        ({"rules": [{"refuse": True, "silent": True}]}, "a refuse rule takes only"),
        ({"rules": [{"refuse": True, "receipts": False}]}, "a refuse rule takes only"),
        ({"rules": [{"carrier": "att"}]}, "silent, deliver_share or receipts"),
        ({"rules": [{"silent": "yes please"}]}, "rules[0].silent"),
    ],
)
def test_a_bad_quiet_rule_is_refused_with_its_key_and_reason(data: object, reason: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        from_data(data, source="drill.toml")
    assert reason in str(caught.value)


def test_a_scenario_with_a_lognormal_delay_survives_a_round_trip_through_the_api(
    sim: SimulatorClient,
) -> None:
    sim.play({"dlr_delay_median_s": 5, "dlr_delay_p99_s": 60, "rules": [{"silent": True}]})
    shown = httpx.get(f"{sim.url}/sim/scenario").json()
    httpx.post(f"{sim.url}/sim/scenario", json=shown).raise_for_status()


# -- handsets' replies: realistic by default ------------------------------------------------


def test_the_default_reply_delay_is_a_humans_lognormal_median_45_s_p99_15_min() -> None:
    settings = ReplySettings(rate=1)
    found = [
        decision.delay_s
        for i in range(4000)
        if (decision := settings.decide(number_for("att", i), f"hi {i}", "att")) is not None
    ]
    assert 40 < median(found) < 50
    assert 700 < quantiles(found, n=100)[98] < 1150
