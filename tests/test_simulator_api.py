"""The simulator speaks Twilio as sendq calls it, signs its receipts, and counts what arrived."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qsl

import httpx
import phonenumbers
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import AUTH_TOKEN
from worker.simulator.carriers import CARRIERS, carrier_of, number_for

SID = "AC" + "8" * 32
PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


def send(
    sim: str, to: str, body: str = "hi", auth: tuple[str, str] = (SID, AUTH_TOKEN), **extra: str
) -> httpx.Response:
    form = {"To": to, "From": "+12015550100", "Body": body, **extra}
    return httpx.post(f"{sim}{PATH}", data=form, auth=auth)


class Receiver:
    """A tiny HTTP server that records the receipts posted to it (and can fail the first)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.fail_left = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                if outer.fail_left > 0:
                    outer.fail_left -= 1
                    self.send_response(503)
                else:
                    outer.received.append((self.path, dict(parse_qsl(body)), dict(self.headers)))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < n:
            assert time.monotonic() < deadline, "receipts did not arrive"
            time.sleep(0.02)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def scenario(sim: str, **data: object) -> None:
    httpx.post(f"{sim}/sim/scenario", json=data).raise_for_status()


def test_carrier_ranges_and_generated_numbers_are_valid_and_distinct() -> None:
    for carrier in CARRIERS:
        numbers = {number_for(carrier, i) for i in range(500)}
        assert len(numbers) == 500
        for n in list(numbers)[:50]:
            assert phonenumbers.is_valid_number(phonenumbers.parse(n)) and carrier_of(n) == carrier
    assert carrier_of("+12125550123") == "att" and carrier_of("+12125557890") == "verizon"


def test_a_send_gets_twilios_message_resource(sim) -> None:
    response = send(sim, number_for("att", 1))
    assert response.status_code == 201
    body = response.json()
    assert body["sid"].startswith("SM") and len(body["sid"]) == 34
    assert (body["status"], body["account_sid"], body["num_segments"]) == ("queued", SID, "1")


@pytest.mark.parametrize(
    ("form", "code"),
    [({"To": ""}, 21604), ({"From": ""}, 21603), ({"Body": ""}, 21602), ({"To": "+1999"}, 21211)],
)
def test_a_bad_request_gets_twilios_error_code(sim, form: dict[str, str], code: int) -> None:
    base = {"To": number_for("att", 2), "From": "+12015550100", "Body": "hi"}
    response = httpx.post(f"{sim}{PATH}", data={**base, **form}, auth=(SID, AUTH_TOKEN))
    assert response.status_code == 400 and response.json()["code"] == code


def test_wrong_credentials_get_401_20003(sim) -> None:
    response = send(sim, number_for("att", 3), auth=(SID, "wrong"))
    assert response.status_code == 401 and response.json()["code"] == 20003


def test_receipts_are_signed_as_twilio_signs_them(sim, receiver) -> None:
    url = f"{receiver.url}/hook?mid=abc"
    send(sim, number_for("att", 4), StatusCallback=url)
    receiver.wait(1)
    _, form, headers = receiver.received[0]
    assert form["MessageStatus"] == "delivered"
    assert RequestValidator(AUTH_TOKEN).validate(url, form, headers["X-Twilio-Signature"])


def test_a_filtered_text_never_reaches_the_handset(sim, receiver) -> None:
    scenario(sim, rules=[{"carrier": "verizon", "error_code": "30007"}])
    blocked, fine = number_for("verizon", 5), number_for("att", 5)
    send(sim, blocked, StatusCallback=f"{receiver.url}/b")
    send(sim, fine, StatusCallback=f"{receiver.url}/f")
    receiver.wait(2)
    by_path = {p: f for p, f, _ in receiver.received}
    assert (by_path["/b"]["MessageStatus"], by_path["/b"]["ErrorCode"]) == ("undelivered", "30007")
    assert by_path["/f"]["MessageStatus"] == "delivered"
    report = httpx.get(f"{sim}/sim/report").json()
    assert (report["filtered"], report["delivered_to_handsets"]) == (1, 1)


def test_sync_rules_reject_at_once_and_faults_answer_their_status(sim) -> None:
    scenario(
        sim,
        rules=[
            {"carrier": "tmobile", "error_code": "30007", "mode": "sync"},
            {"carrier": "att", "http_status": 503},
        ],
    )
    assert send(sim, number_for("tmobile", 6)).json()["code"] == 30007
    assert send(sim, number_for("att", 6)).status_code == 503


def test_the_same_text_twice_is_counted_as_a_double(sim) -> None:
    to = number_for("att", 7)
    send(sim, to, body="once")
    send(sim, to, body="once")
    assert httpx.get(f"{sim}/sim/report").json()["doubled"] == 1


def test_over_the_account_rate_the_simulator_answers_429_with_retry_after(sim) -> None:
    scenario(sim, account_mps=3)
    # Eight sends: even split across a one-second boundary, one second holds four.
    answers = [send(sim, number_for("att", 10 + i)) for i in range(8)]
    throttled = [a for a in answers if a.status_code == 429]
    assert (
        throttled and throttled[0].json()["code"] == 20429 and "retry-after" in throttled[0].headers
    )


def test_a_failed_receipt_is_retried_like_a_provider_would(sim) -> None:
    receiver = Receiver(fail_first=1)
    try:
        send(sim, number_for("att", 20), StatusCallback=f"{receiver.url}/r")
        receiver.wait(1, timeout_s=15)
        assert receiver.received[0][1]["MessageStatus"] == "delivered"
    finally:
        receiver.server.shutdown()


def test_lookup_names_the_carrier_as_lookup_v2_does(sim) -> None:
    number = number_for("tmobile", 30)
    body = httpx.get(
        f"{sim}/v2/PhoneNumbers/{number}",
        params={"Fields": "line_type_intelligence"},
        auth=(SID, AUTH_TOKEN),
    ).json()
    assert body["line_type_intelligence"]["carrier_name"] == "T-Mobile USA, Inc."


def test_a_bad_scenario_is_refused_with_the_key_and_reason(sim) -> None:
    response = httpx.post(
        f"{sim}/sim/scenario", json={"rules": [{"carrier": "verizonn", "error_code": "1"}]}
    )
    assert response.status_code == 400 and "carrier" in response.text
