"""Bandwidth, Plivo and Vonage receipts at the webhook app: every forgery changes nothing.

Each scheme guards something different, and each test says what:

* Bandwidth does not sign: it sends the application's callback credentials as
  HTTP Basic. Wrong, missing or mangled credentials are refused; the body and
  the URL are not bound (HTTPS guards them), so a replayed or altered callback
  sent with the right credentials is answered, and changes nothing only
  because a final state is never undone.
* Plivo V3 signs the URL (query and ``mid`` included), the form body and a
  nonce. It has no timestamp, so a captured callback can be replayed: answered,
  and again harmless once the text is final.
* Vonage signs the parameters (not the host or path) with a timestamp that must
  be within five minutes; the signed ``client-ref`` names the text, so a ``mid``
  in the URL that disagrees with it is refused. Nonces are not remembered: a
  replay inside the window is answered and changes nothing.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from starlette.testclient import TestClient

from tests import parts
from tests.test_webhooks import sending, status
from worker.providers import plivo, vonage
from worker.providers.bandwidth import BandwidthProvider
from worker.providers.plivo import PlivoProvider
from worker.providers.vonage import VonageProvider
from worker.store import AsyncStore, Store
from worker.webhooks import create_app

PUBLIC = "https://hooks.example.org"
OFFLINE = "http://127.0.0.1:9"
FORM = "application/x-www-form-urlencoded"

# As in tests/test_bandwidth_contract.py.
BW_API_USER, BW_API_PASSWORD = "api-user", "correct-horse-battery-staple"
BW_USER, BW_PASSWORD = "sendq-callbacks", "xxv3jPsPR2-secret"
# As in tests/test_plivo_contract.py.
PLIVO_AUTH_ID = "MAXXXXXXXXXXXXXXXXX1"
PLIVO_TOKEN = "ZjQ1YzM3NjM0ZmY5ZTFiYjQ0ZDU0MWYxMTI3ZmJh"
NONCE = "05429567804466091622"
# As in tests/test_vonage_contract.py.
VONAGE_KEY, VONAGE_SECRET = "abcd1234", "abcdef0123456789"
VONAGE_SIG_SECRET = "Zx8sigSecret0123456789abcdefGHIJ"
VONAGE_METHOD = "sha256hmac"


@pytest.fixture
def hooks(redis_url: str, ns: str) -> Iterator[TestClient]:
    import redis.asyncio as aioredis

    providers = {
        "bandwidth": BandwidthProvider(
            account_id="9900000",
            application_id="93de2206-9669-4e07-948d-329f4b722ee2",
            username=BW_API_USER,
            password=BW_API_PASSWORD,
            callback_username=BW_USER,
            callback_password=BW_PASSWORD,
            base_url=OFFLINE,
        ),
        "plivo": PlivoProvider(auth_id=PLIVO_AUTH_ID, auth_token=PLIVO_TOKEN, base_url=OFFLINE),
        "vonage": VonageProvider(
            api_key=VONAGE_KEY,
            api_secret=VONAGE_SECRET,
            signature_secret=VONAGE_SIG_SECRET,
            signature_method=VONAGE_METHOD,
            base_url=OFFLINE,
        ),
    }
    aclient = aioredis.Redis.from_url(redis_url)
    app = create_app(
        store=AsyncStore(aclient, ns),
        providers=providers,
        public_url=PUBLIC,
        feed=parts.feed(aclient, ns),
    )
    with TestClient(app, base_url=PUBLIC) as client:
        yield client


def snapshot(client: redis.Redis, ns: str, msg_id: str) -> tuple[Any, Any]:
    """The record and its history: a refused receipt leaves both as they were."""
    store = Store(client, ns)
    return store.get(msg_id), store.history(msg_id)


def assert_refused(response, client: redis.Redis, ns: str, msg_id: str, before) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert "error" in response.json()
    assert snapshot(client, ns, msg_id) == before
    assert status(client, ns, msg_id) == "sending"


def assert_final_kept(response, client: redis.Redis, ns: str, msg_id: str, before) -> None:
    """Answered (so the provider stops retrying), yet the final state stands."""
    assert response.status_code < 300, response.text
    assert response.json()["applied"] is False
    assert snapshot(client, ns, msg_id) == before


def record(client: redis.Redis, ns: str, msg_id: str) -> dict[str, str]:
    found = Store(client, ns).get(msg_id)
    assert found is not None
    return found


# -- Bandwidth: HTTP Basic callback credentials ------------------------------------------


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def bw_callback(tag: str, kind: str = "message-delivered", code: int | None = None) -> bytes:
    """A status callback: a JSON array whose message.tag is sendq's message id."""
    event: dict[str, Any] = {
        "type": kind,
        "time": "2024-11-28T17:46:02Z",
        "description": "ok" if code is None else "rejected",
        "to": "+12015550123",
        "carrierName": "AT&T Wireless",
        "message": {
            "id": "14762070468292kw2fuqty55yp2b2",
            "direction": "out",
            "to": ["+12015550123"],
            "from": "+15557654321",
            "tag": tag,
        },
    }
    if code is not None:
        event["errorCode"] = code
    return json.dumps([event]).encode()


def bw_post(
    hooks: TestClient, body: bytes, *, auth: str | None = basic(BW_USER, BW_PASSWORD), query=""
):
    headers = {"content-type": "application/json"}
    if auth is not None:
        headers["authorization"] = auth
    return hooks.post(f"/webhooks/bandwidth/status{query}", content=body, headers=headers)


def test_a_bandwidth_callback_with_the_credentials_marks_the_text_delivered(
    hooks, client, ns, queue
) -> None:
    msg_id = sending(client, ns, queue, "bandwidth")
    assert bw_post(hooks, bw_callback(msg_id)).status_code < 300
    assert status(client, ns, msg_id) == "delivered"


def test_a_failed_bandwidth_callback_keeps_its_code(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue, "bandwidth")
    assert bw_post(hooks, bw_callback(msg_id, "message-failed", 4470)).status_code < 300
    found = record(client, ns, msg_id)
    assert (found["status"], found["receipt_error_code"]) == ("undelivered", "4470")
    assert found["receipt_category"] == "carrier_block"


BANDWIDTH_FORGERIES: dict[str, str | None] = {
    "no credentials": None,
    "empty authorization": "",
    "wrong password": basic(BW_USER, "not-the-password"),
    "wrong username": basic("someone-else", BW_PASSWORD),
    "swapped credentials": basic(BW_PASSWORD, BW_USER),
    "near-miss password": basic(BW_USER, BW_PASSWORD + " "),
    "the API credentials, not the callback ones": basic(BW_API_USER, BW_API_PASSWORD),
    "another scheme with the right token": basic(BW_USER, BW_PASSWORD).replace("Basic", "Bearer"),
    "credentials not base64": "Basic !!not-base64!!",
}


@pytest.mark.parametrize("how", BANDWIDTH_FORGERIES)
def test_a_bandwidth_callback_with_bad_credentials_is_refused_and_changes_nothing(
    hooks, client: redis.Redis, ns, queue, how: str
) -> None:
    msg_id = sending(client, ns, queue, "bandwidth")
    before = snapshot(client, ns, msg_id)
    body = bw_callback(msg_id, "message-failed", 4470)
    assert_refused(bw_post(hooks, body, auth=BANDWIDTH_FORGERIES[how]), client, ns, msg_id, before)


def test_a_bandwidth_callback_is_named_by_its_tag_not_the_url(hooks, client, ns, queue) -> None:
    # Basic auth does not bind the URL, and Bandwidth has no per-message URL: a
    # mid in the query names nothing, so posting A's callback "for" B leaves B alone.
    mine, other = sending(client, ns, queue, "bandwidth"), sending(client, ns, queue, "bandwidth")
    before = snapshot(client, ns, other)
    assert bw_post(hooks, bw_callback(mine), query=f"?mid={other}").status_code < 300
    assert status(client, ns, mine) == "delivered"
    assert snapshot(client, ns, other) == before


@pytest.mark.parametrize(
    "replayed",
    [
        pytest.param(lambda mid: bw_callback(mid), id="the same callback again"),
        pytest.param(lambda mid: bw_callback(mid, "message-sent"), id="an earlier sent event"),
        pytest.param(
            lambda mid: bw_callback(mid, "message-failed", 4470), id="body altered to failed"
        ),
    ],
)
def test_a_replayed_or_altered_bandwidth_callback_never_undoes_a_final_state(
    hooks, client, ns, queue, replayed: Callable[[str], bytes]
) -> None:
    # Undetectable by the scheme: the credentials are the same on every callback
    # and do not cover the body, so a replay (or a body altered by whoever holds
    # the credentials) is answered. It changes nothing: a final state is never undone.
    msg_id = sending(client, ns, queue, "bandwidth")
    assert bw_post(hooks, bw_callback(msg_id)).json()["applied"]
    before = snapshot(client, ns, msg_id)
    assert_final_kept(bw_post(hooks, replayed(msg_id)), client, ns, msg_id, before)
    assert status(client, ns, msg_id) == "delivered"


# -- Plivo: signature V3 over URL, body and nonce --------------------------------------------


def plivo_params(status_: str = "delivered", code: str = "") -> dict[str, str]:
    params = {
        "From": "15557654321",
        "MessageUUID": "db3ce55a-7f1d-11e1-8ea7-1231380bc196",
        "Status": status_,
        "To": "12015550123",
        "Units": "1",
    }
    if code:
        params["ErrorCode"] = code
    return params


def plivo_post(
    hooks: TestClient,
    msg_id: str,
    params: dict[str, str],
    *,
    token: str = PLIVO_TOKEN,
    signed_params: dict[str, str] | None = None,
    signed_url: str | None = None,
    signed_nonce: str = NONCE,
    header: str = "x-plivo-signature-v3",
    drop: str = "",
):
    path = f"/webhooks/plivo/status?mid={msg_id}"
    url = PUBLIC + path if signed_url is None else signed_url
    signed = params if signed_params is None else signed_params
    headers = {
        "content-type": FORM,
        header: plivo.signature(url, signed.items(), signed_nonce, token),
        "x-plivo-signature-v3-nonce": NONCE,
    }
    headers.pop(drop, None)
    return hooks.post(path, content=urlencode(params), headers=headers)


def test_a_signed_plivo_receipt_marks_the_text_delivered(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue, "plivo")
    assert plivo_post(hooks, msg_id, plivo_params()).status_code < 300
    assert status(client, ns, msg_id) == "delivered"


def test_a_signed_undelivered_plivo_receipt_keeps_its_code(hooks, client, ns, queue) -> None:
    msg_id = sending(client, ns, queue, "plivo")
    assert plivo_post(hooks, msg_id, plivo_params("undelivered", "200")).status_code < 300
    found = record(client, ns, msg_id)
    assert (found["status"], found["receipt_error_code"]) == ("undelivered", "200")
    assert found["receipt_category"] == "opted_out"


PLIVO_FORGERIES: dict[str, Callable[[str], dict[str, Any]]] = {
    "tampered status": lambda mid: {"signed_params": plivo_params("delivered")},
    "added error code": lambda mid: {"signed_params": plivo_params("undelivered")},
    "wrong token": lambda mid: {"token": "not-the-auth-token"},
    "wrong token in the main-account header": lambda mid: {
        "token": "not-the-main-token",
        "header": "x-plivo-signature-ma-v3",
    },
    "no signature": lambda mid: {"drop": "x-plivo-signature-v3"},
    "no nonce": lambda mid: {"drop": "x-plivo-signature-v3-nonce"},
    "signed with another nonce": lambda mid: {"signed_nonce": "99999999999999999999"},
    "signed for another host": lambda mid: {
        "signed_url": f"https://evil.example.net/webhooks/plivo/status?mid={mid}"
    },
    "signed for another path": lambda mid: {
        "signed_url": f"{PUBLIC}/webhooks/twilio/status?mid={mid}"
    },
    "signed without the query": lambda mid: {"signed_url": f"{PUBLIC}/webhooks/plivo/status"},
}


@pytest.mark.parametrize("how", PLIVO_FORGERIES)
def test_a_forged_plivo_receipt_is_refused_and_changes_nothing(
    hooks, client: redis.Redis, ns, queue, how: str
) -> None:
    msg_id = sending(client, ns, queue, "plivo")
    before = snapshot(client, ns, msg_id)
    forged = plivo_params("undelivered", "200")
    response = plivo_post(hooks, msg_id, forged, **PLIVO_FORGERIES[how](msg_id))
    assert_refused(response, client, ns, msg_id, before)


def test_a_plivo_receipt_signed_for_another_message_is_refused(hooks, client, ns, queue) -> None:
    # The mid is in the signed URL: A's signature does not fit a post naming B.
    mine, other = sending(client, ns, queue, "plivo"), sending(client, ns, queue, "plivo")
    before = snapshot(client, ns, other)
    signed_url = f"{PUBLIC}/webhooks/plivo/status?mid={mine}"
    response = plivo_post(hooks, other, plivo_params(), signed_url=signed_url)
    assert_refused(response, client, ns, other, before)
    assert status(client, ns, mine) == "sending"


@pytest.mark.parametrize(
    "replayed",
    [
        pytest.param(plivo_params(), id="the same receipt again"),
        pytest.param(plivo_params("sent"), id="an earlier sent receipt"),
        pytest.param(plivo_params("undelivered", "200"), id="a contrary undelivered receipt"),
    ],
)
def test_a_replayed_plivo_receipt_never_undoes_a_final_state(
    hooks, client, ns, queue, replayed: dict[str, str]
) -> None:
    # Undetectable by the scheme: V3 has no timestamp and nonces are not
    # remembered, so a captured, genuinely signed receipt replays as valid. It
    # is answered and changes nothing, because a final state is never undone.
    msg_id = sending(client, ns, queue, "plivo")
    assert plivo_post(hooks, msg_id, plivo_params()).json()["applied"]
    before = snapshot(client, ns, msg_id)
    assert_final_kept(plivo_post(hooks, msg_id, replayed), client, ns, msg_id, before)
    assert status(client, ns, msg_id) == "delivered"


# -- Vonage: signed DLRs (sig over the parameters, with a timestamp) --------------------------


def vonage_params(
    client_ref: str | None, status_: str = "delivered", code: str = "0", ts: int | None = None
) -> dict[str, str]:
    params = {
        "msisdn": "12015550123",
        "to": "15557654321",
        "network-code": "310260",
        "messageId": "0A0000000123ABCD1",
        "status": status_,
        "err-code": code,
        "api-key": VONAGE_KEY,
        "message-timestamp": "2023-11-14 22:13:20",
        "timestamp": str(int(time.time()) if ts is None else ts),
        "nonce": "ec11dd3e-1e7f-4db5-9467-82b02cd223b9",
    }
    if client_ref is not None:
        params["client-ref"] = client_ref
    return params


def vonage_send(
    hooks: TestClient,
    msg_id: str,
    params: dict[str, str],
    *,
    how: str = "POST",
    secret: str = VONAGE_SIG_SECRET,
    method: str = VONAGE_METHOD,
    signed_params: dict[str, str] | None = None,
    drop: str = "",
):
    """A DLR as Vonage sends it (GET query, form POST or JSON POST), ``sig`` upper-case."""
    sig = vonage.signature(params if signed_params is None else signed_params, secret, method)
    sent = {**params, "sig": sig.upper()}
    sent.pop(drop, None)
    path = "/webhooks/vonage/status"
    if how == "GET":
        return hooks.get(f"{path}?{urlencode({'mid': msg_id, **sent})}")
    if how == "JSON":
        return hooks.post(
            f"{path}?mid={msg_id}",
            content=json.dumps(sent),
            headers={"content-type": "application/json"},
        )
    return hooks.post(
        f"{path}?mid={msg_id}", content=urlencode(sent), headers={"content-type": FORM}
    )


VONAGE_FORMS = ["GET", "POST", "JSON"]


@pytest.mark.parametrize("how", VONAGE_FORMS)
def test_a_signed_vonage_receipt_marks_the_text_delivered(hooks, client, ns, queue, how) -> None:
    msg_id = sending(client, ns, queue, "vonage")
    assert vonage_send(hooks, msg_id, vonage_params(msg_id), how=how).status_code < 300
    assert status(client, ns, msg_id) == "delivered"


@pytest.mark.parametrize("how", VONAGE_FORMS)
def test_a_signed_failed_vonage_receipt_keeps_its_code(hooks, client, ns, queue, how) -> None:
    msg_id = sending(client, ns, queue, "vonage")
    params = vonage_params(msg_id, "failed", "6")
    assert vonage_send(hooks, msg_id, params, how=how).status_code < 300
    found = record(client, ns, msg_id)
    assert (found["status"], found["receipt_error_code"]) == ("undelivered", "dlr-6")
    assert found["receipt_category"] == "carrier_block"


def _stamped(mid: str, ts: int) -> dict[str, Any]:
    return {"params": vonage_params(mid, "failed", "6", ts=ts)}


VONAGE_FORGERIES: dict[str, Callable[[str], dict[str, Any]]] = {
    "tampered status": lambda mid: {"signed_params": vonage_params(mid)},
    "tampered err-code": lambda mid: {"signed_params": vonage_params(mid, "failed", "9")},
    "wrong secret": lambda mid: {"secret": "not-the-signature-secret"},
    "another signing method": lambda mid: {"method": "md5hash"},
    "no sig": lambda mid: {"drop": "sig"},
    "no timestamp": lambda mid: {"drop": "timestamp"},
    "replayed (old timestamp)": lambda mid: _stamped(mid, int(time.time()) - 3600),
    "timestamp from the future": lambda mid: _stamped(mid, int(time.time()) + 3600),
    "old receipt re-stamped": lambda mid: {
        "signed_params": vonage_params(mid, "failed", "6", ts=int(time.time()) - 3600)
    },
}


@pytest.mark.parametrize("form", VONAGE_FORMS)
@pytest.mark.parametrize("how", VONAGE_FORGERIES)
def test_a_forged_vonage_receipt_is_refused_and_changes_nothing(
    hooks, client: redis.Redis, ns, queue, how: str, form: str
) -> None:
    msg_id = sending(client, ns, queue, "vonage")
    before = snapshot(client, ns, msg_id)
    kwargs = {"params": vonage_params(msg_id, "failed", "6"), **VONAGE_FORGERIES[how](msg_id)}
    response = vonage_send(hooks, msg_id, how=form, **kwargs)
    assert_refused(response, client, ns, msg_id, before)


@pytest.mark.parametrize("form", VONAGE_FORMS)
def test_a_vonage_receipt_whose_mid_disagrees_with_its_client_ref_is_refused(
    hooks, client, ns, queue, form: str
) -> None:
    # Vonage signs the parameters, not the host or path, so "signed for another
    # URL" can only mean another mid: the signed client-ref names A, the URL B.
    mine, other = sending(client, ns, queue, "vonage"), sending(client, ns, queue, "vonage")
    before = snapshot(client, ns, other), snapshot(client, ns, mine)
    response = vonage_send(hooks, other, vonage_params(mine, "failed", "6"), how=form)
    assert 400 <= response.status_code < 500
    assert (snapshot(client, ns, other), snapshot(client, ns, mine)) == before


@pytest.mark.parametrize("form", VONAGE_FORMS)
def test_a_vonage_receipt_with_a_signed_mid_for_another_message_is_refused(
    hooks, client, ns, queue, form: str
) -> None:
    # Without a client-ref the mid must be among the signed parameters.
    mine, other = sending(client, ns, queue, "vonage"), sending(client, ns, queue, "vonage")
    before = snapshot(client, ns, other)
    params = vonage_params(None, "failed", "6")
    signed = {**params, "mid": mine}
    response = vonage_send(hooks, other, params, how=form, signed_params=signed)
    assert_refused(response, client, ns, other, before)
    assert status(client, ns, mine) == "sending"


@pytest.mark.parametrize("form", VONAGE_FORMS)
def test_a_vonage_receipt_replayed_inside_the_window_never_undoes_a_final_state(
    hooks, client, ns, queue, form: str
) -> None:
    # Undetectable by the scheme within its five minutes: nonces are not
    # remembered. The replay is answered and changes nothing, since a final
    # state is never undone (older replays fail the timestamp check above).
    msg_id = sending(client, ns, queue, "vonage")
    genuine = vonage_params(msg_id)
    assert vonage_send(hooks, msg_id, genuine, how=form).json()["applied"]
    before = snapshot(client, ns, msg_id)
    assert_final_kept(vonage_send(hooks, msg_id, genuine, how=form), client, ns, msg_id, before)
    contrary = vonage_params(msg_id, "failed", "6")
    assert_final_kept(vonage_send(hooks, msg_id, contrary, how=form), client, ns, msg_id, before)
    assert status(client, ns, msg_id) == "delivered"
