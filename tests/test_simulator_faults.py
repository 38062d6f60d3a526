"""Faults that make a send's outcome unknown, played by the simulator for real over TCP.

A provider that takes a text and then drops the connection, or answers after the
client gave up: the handset has the text, the client heard nothing. The client can
then ask Twilio's Message list whether it was taken; the official twilio SDK is the
judge of that API's shape.
"""

from __future__ import annotations

import base64
import http.client
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from tests.test_simulator_providers import CREDENTIALS, Receiver
from tests.test_simulator_sdk_contract import ORIGINS, ToSimulator
from worker.simulator.carriers import number_for
from worker.simulator.config import SimulatorConfig
from worker.simulator.scenario import ScenarioError, from_data
from worker.simulator.server import KEEP_ALIVE_S, SimulatorHandle, start_in_thread

SID = "AC" + "4" * 32
SENDER = "+12015550100"
TOKEN = CREDENTIALS["auth_token"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def server(receiver: Receiver) -> Iterator[SimulatorHandle]:
    config = SimulatorConfig(port=0, provider_ports={"twilio": 0}, **CREDENTIALS)
    with start_in_thread(config) as handle:
        yield handle


@pytest.fixture
def sim(server: SimulatorHandle) -> str:
    httpx.post(f"{server.url}/sim/scenario", json={}).raise_for_status()
    httpx.post(f"{server.url}/sim/reset").raise_for_status()
    return server.url


def play(sim: str, *rules: dict[str, Any], **settings: Any) -> None:
    httpx.post(f"{sim}/sim/scenario", json={**settings, "rules": list(rules)}).raise_for_status()
    httpx.post(f"{sim}/sim/reset").raise_for_status()


def send(
    base: str, to: str, body: str, timeout_s: float = 5.0, callback: str | None = None
) -> httpx.Response:
    form = {"To": to, "From": SENDER, "Body": body}
    if callback:
        form["StatusCallback"] = callback
    path = f"/2010-04-01/Accounts/{SID}/Messages.json"
    return httpx.post(base + path, data=form, auth=(SID, TOKEN), timeout=timeout_s)


def arrived(sim: str, to: str, body: str) -> int:
    texts = httpx.get(f"{sim}/sim/inbox/{to}").json()["texts"]
    return sum(1 for t in texts if t["body"] == body)


def report(sim: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{sim}/sim/report").json()
    return answer


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:8]}"


def twilio_sdk(sim: str, token: str = TOKEN) -> TwilioClient:
    http = TwilioHttpClient()
    assert http.session is not None
    http.session.mount("https://", ToSimulator(ORIGINS["twilio"], sim))
    return TwilioClient(SID, token, http_client=http)


# -- drop: taken, then the connection is cut ------------------------------------------


def test_a_reset_drop_reaches_the_handset_and_the_client_sees_a_reset_connection(
    sim: str, receiver: Receiver
) -> None:
    play(sim, {"provider": "twilio", "drop": "reset"})
    to, body = number_for("att", 1), unique("dropped")
    with pytest.raises(httpx.ReadError, match="reset"):
        send(sim, to, body, callback=f"{receiver.url}/twilio?mid={body[-8:]}")
    assert arrived(sim, to, body) == 1
    # The provider took it, so its receipt still comes.
    hit = receiver.wait_for(body[-8:])
    assert b"MessageStatus=delivered" in hit.body
    assert report(sim)["by_provider"]["twilio"]["dropped"] == 1


def test_a_close_drop_ends_the_connection_with_no_answer_at_all(sim: str) -> None:
    play(sim, {"provider": "twilio", "drop": "close"})
    to, body = number_for("tmobile", 2), unique("closed")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        send(sim, to, body)
    assert arrived(sim, to, body) == 1


def test_a_drop_cuts_the_connection_on_the_providers_own_port_too(
    sim: str, server: SimulatorHandle
) -> None:
    play(sim, {"provider": "twilio", "drop": "reset"})
    to, body = number_for("verizon", 3), unique("gated")
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        send(server.provider_urls["twilio"], to, body)
    assert arrived(sim, to, body) == 1


def test_a_drop_rule_spares_the_other_providers(sim: str) -> None:
    play(sim, {"provider": "telnyx", "drop": "reset"})
    to, body = number_for("att", 4), unique("spared")
    assert send(sim, to, body).status_code == 201


# -- delay: taken, answered after the client's timeout ---------------------------------


def test_a_held_answer_times_the_client_out_though_the_handset_has_the_text(sim: str) -> None:
    play(sim, {"provider": "twilio", "delay_s": 3.0})
    to, body = number_for("att", 5), unique("late")
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        send(sim, to, body, timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    assert arrived(sim, to, body) == 1
    assert report(sim)["by_provider"]["twilio"]["delayed"] == 1


def test_a_provider_slower_than_a_lease_answers_after_many_seconds_and_serves_others_meanwhile(
    sim: str,
) -> None:
    play(sim, {"provider": "twilio", "body_contains": "slow", "delay_s": 6.0})
    to = number_for("tmobile", 6)
    answer: list[httpx.Response] = []
    slow = threading.Thread(target=lambda: answer.append(send(sim, to, "slow", timeout_s=15)))
    started = time.monotonic()
    slow.start()
    time.sleep(0.3)
    # Others are answered at once while the slow one is held.
    quick = send(sim, number_for("att", 7), unique("quick"))
    quick_s = time.monotonic() - started
    slow.join(15)
    assert quick.status_code == 201 and quick_s < 2.0
    assert answer and answer[0].status_code == 201
    assert time.monotonic() - started >= 6.0


def test_a_held_answer_can_end_in_a_drop(sim: str) -> None:
    play(sim, {"provider": "twilio", "delay_s": 1.0, "drop": "close"})
    to, body = number_for("verizon", 8), unique("held-then-cut")
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        send(sim, to, body)
    assert time.monotonic() - started >= 1.0 and arrived(sim, to, body) == 1


def test_an_idle_connection_stays_open_as_on_a_providers_edge(sim: str) -> None:
    # A request written just before a partition, retransmitted when the link is back,
    # must find its connection still open (uvicorn alone closes it after 5 s).
    host, port = sim.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    auth = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
    headers = {
        "Authorization": f"Basic {auth}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    path = f"/2010-04-01/Accounts/{SID}/Messages.json"
    statuses, sockets = [], []
    for body in ("first", "after-6-s-idle"):
        form = f"To=%2B12122000042&From=%2B12015550100&Body={body}"
        conn.request("POST", path, form, headers)
        answer = conn.getresponse()
        answer.read()
        statuses.append(answer.status)
        sockets.append(conn.sock)
        time.sleep(6.0 if body == "first" else 0)
    conn.close()
    assert statuses == [201, 201] and sockets[0] is sockets[1]
    assert KEEP_ALIVE_S >= 60


def test_a_request_whose_client_closed_its_side_after_writing_is_still_taken(sim: str) -> None:
    # A client that timed out and closed while its request was on the wire: the
    # request arrives whole, followed by the FIN. A provider takes it.
    host, port = sim.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        form = "To=%2B12122000043&From=%2B12015550100&Body=half-closed"
        auth = base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        sock.sendall(
            (
                f"POST /2010-04-01/Accounts/{SID}/Messages.json HTTP/1.1\r\nHost: sim\r\n"
                f"Authorization: Basic {auth}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(form)}\r\n\r\n{form}"
            ).encode()
        )
        sock.shutdown(socket.SHUT_WR)
        sock.recv(100)
    assert arrived(sim, "+12122000043", "half-closed") == 1


# -- share: a fraction of requests, drawn afresh for each ---------------------------------


def test_a_share_covers_about_that_fraction_of_requests_and_a_resend_draws_again(
    sim: str,
) -> None:
    play(sim, {"provider": "twilio", "share": 0.25, "drop": "reset"}, seed=7)
    to, body = number_for("att", 9), unique("same text")
    outcomes = []
    for _ in range(200):
        try:
            outcomes.append(send(sim, to, body).status_code)
        except httpx.ReadError:
            outcomes.append(0)
    dropped = outcomes.count(0)
    # The same text, sent 200 times, meets both fates: the draw is per request.
    assert 30 <= dropped <= 70 and outcomes.count(201) == 200 - dropped
    assert arrived(sim, to, body) == 200  # every request was taken, answered or not


def test_a_seed_repeats_the_same_draws_after_a_reset(sim: str) -> None:
    def run() -> list[bool]:
        play(sim, {"share": 0.5, "delay_s": 0.001, "provider": "twilio"}, seed=42)
        before = 0
        held = []
        for i in range(40):
            send(sim, number_for("tmobile", 100 + i), f"seeded {i}")
            now = report(sim)["delayed"]
            held.append(now > before)
            before = now
        return held

    first = run()
    assert first == run() and 5 < sum(first) < 35


def test_rules_with_shares_cover_different_requests() -> None:
    rules = [
        {"provider": "twilio", "share": 0.5, "delay_s": 0.001},
        {"provider": "twilio", "share": 0.5, "dlr_delay_s": 0.0},
    ]
    # Each rule draws its own number: had they shared one, they would cover the same half.
    scenario = from_data({"rules": rules, "seed": 3}, source="x")
    rng = scenario.rng()
    both = 0
    for _ in range(1000):
        draws = scenario.draw(rng)
        held = scenario.answer(0, "att", "+1", "b", "twilio", draws) is not None
        both += held and scenario.receipt_delay_s(0, "att", "+1", "b", "twilio", draws) == 0.0
    assert 190 < both < 310


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ({"drop": "reset", "http_status": 503}, "not with http_status or hang"),
        ({"delay_s": 5, "hang": True}, "not with http_status or hang"),
        ({"drop": "close", "error": "bad_number", "mode": "sync"}, 'not with mode = "sync"'),
        ({"refuse": True, "share": 0.5}, "a refuse rule takes only"),
        ({"refuse": True, "drop": "reset"}, "a refuse rule takes only"),
        ({"drop": "rst"}, "Input should be 'reset' or 'close'"),
        ({"delay_s": 0}, "greater than 0"),
        ({"share": 1.5, "drop": "reset"}, "less than or equal to 1"),
    ],
)
def test_a_bad_fault_rule_is_refused_with_its_reason(rule: dict[str, Any], reason: str) -> None:
    with pytest.raises(ScenarioError, match=reason.replace("(", r"\(")):
        from_data({"rules": [rule]}, source="drill.toml")


# -- the inboxes: how many copies each recipient got ----------------------------------


def test_copies_lists_each_text_that_arrived_twice_with_its_providers(sim: str) -> None:
    to, body = number_for("att", 10), unique("twice")
    send(sim, to, body)
    send(sim, to, body)
    send(sim, number_for("att", 11), unique("once"))
    doubles = httpx.get(f"{sim}/sim/copies").json()
    assert doubles["count"] == 1
    [text] = doubles["texts"]
    assert (text["to"], text["body"], text["copies"], text["providers"]) == (
        to,
        body,
        2,
        ["twilio", "twilio"],
    )
    everything = httpx.get(f"{sim}/sim/copies", params={"min": 1}).json()
    assert everything["count"] == 2
    figures = report(sim)
    assert (figures["doubled"], figures["texts_doubled"], figures["unique_texts"]) == (1, 1, 2)


# -- Twilio's Message list, judged by the official SDK ---------------------------------


def test_the_twilio_sdk_finds_a_text_whose_answer_was_dropped(sim: str) -> None:
    play(sim, {"provider": "twilio", "drop": "reset"})
    to, body = number_for("tmobile", 12), unique("find me")
    with pytest.raises(httpx.ReadError):
        send(sim, to, body)
    client = twilio_sdk(sim)
    today = datetime.now(UTC)
    found = client.messages.list(to=to, from_=SENDER, date_sent=today)
    assert [(m.to, m.from_, m.body) for m in found] == [(to, SENDER, body)]
    [message] = found
    assert message.sid.startswith("SM") and message.date_sent is not None
    assert message.status in ("sent", "delivered")
    assert client.messages.list(to=to, date_sent_after=today - timedelta(minutes=5))
    assert not client.messages.list(to=to, date_sent=today - timedelta(days=1))
    assert not client.messages.list(to=to, from_="+12015550199")


def test_the_twilio_sdk_pages_through_a_long_list_newest_first(sim: str) -> None:
    to = number_for("verizon", 13)
    bodies = [f"page {i} {uuid.uuid4().hex[:4]}" for i in range(5)]
    for body in bodies:
        send(sim, to, body)
        time.sleep(0.002)
    found = twilio_sdk(sim).messages.list(to=to, page_size=2)
    assert len(found) == 5 and {m.body for m in found} == set(bodies)
    assert [m.date_sent for m in found] == sorted((m.date_sent for m in found), reverse=True)


def test_the_message_list_takes_twilios_raw_date_operators(sim: str) -> None:
    to, body = number_for("att", 14), unique("raw")
    send(sim, to, body)
    path = f"{sim}/2010-04-01/Accounts/{SID}/Messages.json"
    today = datetime.now(UTC).date()
    tomorrow = today + timedelta(days=1)

    def listed(query: str) -> int:
        answer = httpx.get(f"{path}?To={to.replace('+', '%2B')}&{query}", auth=(SID, TOKEN))
        assert answer.status_code == 200, answer.text
        return len(answer.json()["messages"])

    assert listed(f"DateSent={today}") == 1
    assert listed(f"DateSent>={today}") == 1 and listed(f"DateSent<={today}") == 1
    assert listed(f"DateSent>={tomorrow}") == 0
    assert listed(f"DateSent<={today - timedelta(days=1)}") == 0
    bad = httpx.get(f"{path}?DateSent=yesterday", auth=(SID, TOKEN))
    assert bad.status_code == 400 and bad.json()["code"] == 20001


def test_the_message_list_wants_the_accounts_credentials(sim: str) -> None:
    # twilio-python raises on a page it cannot fetch, carrying Twilio's answer.
    with pytest.raises(TwilioException, match="Unable to fetch page") as refused:
        twilio_sdk(sim, token="wrong").messages.list(to=number_for("att", 15))
    answer = refused.value.args[1]
    assert answer.status_code == 401 and '"code":20003' in answer.text


def test_a_filtered_text_is_listed_undelivered_once_its_receipt_is_due(
    sim: str, receiver: Receiver
) -> None:
    play(sim, {"carrier": "verizon", "error": "carrier_block"}, dlr_delay_s=0.0)
    to, body = number_for("verizon", 16), unique("filtered")
    send(sim, to, body, callback=f"{receiver.url}/twilio?mid={body[-8:]}")
    receiver.wait_for(body[-8:])
    [message] = twilio_sdk(sim).messages.list(to=to)
    assert (message.status, message.error_code) == ("undelivered", 30007)
    assert arrived(sim, to, body) == 0
