"""The simulator checks sendq's adapters instead of echoing them: the official SDKs judge it.

1. Independence: nothing under worker/simulator imports worker/providers, directly or
   through another worker module, so an adapter's mistake cannot be repeated by the
   simulator and hidden from the end-to-end tests.
2. Receipts: what the simulator signs validates with each provider's own SDK
   (twilio's RequestValidator, telnyx's ed25519 verifier and unwrap, plivo's
   validate_v3_signature, vonage-http-client's check_signature, bandwidth-sdk's Basic
   encoder and StatusCallback model), and its signing functions equal the SDKs' for
   any input.
3. Requests: what each SDK puts on the wire, the simulator's parser takes, both as
   captured bytes and live, SDK -> simulator over HTTP -> signed receipt -> SDK.
"""

from __future__ import annotations

import ast
import gc
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import plivo
import pytest
import requests
import telnyx
import telnyx.lib  # applies the SDK's ed25519 ``unwrap``
import urllib3
from bandwidth import ApiClient, Configuration
from bandwidth.api.messages_api import MessagesApi
from bandwidth.models.message_request import MessageRequest
from bandwidth.models.status_callback import StatusCallback
from hypothesis import given, settings
from hypothesis import strategies as st
from plivo.utils.signature_v3 import construct_post_url, validate_v3_signature
from requests.adapters import HTTPAdapter
from telnyx.lib import webhook_verification as telnyx_webhooks
from telnyx.types.delivery_update_webhook_event import DeliveryUpdateWebhookEvent
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import SIGNATURE_HEADER as TWILIO_HEADER
from twilio.request_validator import RequestValidator
from twilio.rest import Client as TwilioClient
from vonage_http_client.auth import Auth as VonageAuth
from vonage_http_client.http_client import HttpClient as VonageHttpClient
from vonage_sms import Sms, SmsMessage

import worker.simulator
from tests.test_simulator_providers import CREDENTIALS, SEED, Hit, Receiver
from worker.simulator import signing
from worker.simulator.app import dialects
from worker.simulator.carriers import number_for
from worker.simulator.config import SimulatorConfig, telnyx_public_key
from worker.simulator.dialect import Dialect, Outgoing, SendRequest
from worker.simulator.inbox import Text
from worker.simulator.server import SimulatorHandle, start_in_thread

SIMULATOR_DIR = Path(worker.simulator.__file__).parent
ROOT = SIMULATOR_DIR.parent.parent
FORBIDDEN = "worker.providers"
TWILIO_SID = "AC" + "5" * 32
PLIVO_ID = "MA" + "7" * 18
VONAGE_KEY = "a1b2c3d4"
BANDWIDTH_ACCOUNT = "9900000"
BANDWIDTH_APP = "a1b2c3"
BANDWIDTH_CLIENT = ("bw-client", "bw-client-secret")
SENDER = "+12015550100"
BODY = "Zoë & co: 100% = done + more 👍 ?x=1&y=2"
HOOK = "https://hooks.example.com:8443/webhooks/{}/status?mid=msg-0001&x=%20a%26b"
# vonage-http-client's method names (it has no "MD5 hash").
SDK_VONAGE_METHODS = {
    "md5hmac": "md5",
    "sha1hmac": "sha1",
    "sha256hmac": "sha256",
    "sha512hmac": "sha512",
}
BANDWIDTH_ORIGIN = "https://messaging.bandwidth.com"
ORIGINS = {
    "twilio": ("https://api.twilio.com", "https://lookups.twilio.com"),
    "plivo": ("https://api.plivo.com",),
    "vonage": ("https://rest.nexmo.com",),
}


# -- 1. independence ---------------------------------------------------------------------


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def parse_without_finalizers(source: str) -> ast.Module:
    """ast.parse with the garbage collector held off while the tree is built.

    CPython 3.11 (3.11.7 here) counts the tree's depth on the thread's recursion
    counter, so a finalizer that runs Python code mid-build (an earlier test's
    abandoned asyncio task, logging "Task was destroyed") makes ast.parse raise
    SystemError "AST constructor recursion depth mismatch" (python/cpython#106905).
    CI failed once on exactly that."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        return ast.parse(source)
    finally:
        if was_enabled:
            gc.enable()


def imports_of(name: str, path: Path) -> set[str]:
    """Every module ``path`` names in an import (at any depth, TYPE_CHECKING included),
    ``from a import b`` counting ``a.b`` too, and every literal import_module()."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(parse_without_finalizers(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] if node.level else [])
            base = ".".join(p for p in (base, node.module or "") if p)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args:
            called = ast.unparse(node.func)
            target = node.args[0]
            if called.endswith(("import_module", "__import__")) and isinstance(
                target, ast.Constant
            ):
                found.add(str(target.value))
    return found


def worker_closure(start: list[str]) -> dict[str, str]:
    """Every worker module reachable by imports from ``start``, each with who imported it."""
    seen: dict[str, str] = {name: "(start)" for name in start}
    queue = list(start)
    while queue:
        name = queue.pop()
        path = module_file(name)
        if path is None:
            continue
        for imported in imports_of(name, path):
            parts = imported.split(".")
            # A package's __init__ runs before its modules: count every parent.
            for i in range(1, len(parts) + 1):
                parent = ".".join(parts[:i])
                if parent.startswith("worker") and parent not in seen and module_file(parent):
                    seen[parent] = name
                    queue.append(parent)
    return seen


def simulator_modules() -> list[str]:
    return sorted(f"worker.simulator.{p.stem}" for p in SIMULATOR_DIR.glob("*.py"))


def chain(seen: dict[str, str], name: str) -> str:
    links = [name]
    while seen.get(links[-1], "(start)") != "(start)":
        links.append(seen[links[-1]])
    return " <- ".join(links)


def test_no_simulator_module_reaches_worker_providers_through_any_import() -> None:
    seen = worker_closure(simulator_modules())
    leaks = [chain(seen, m) for m in seen if m == FORBIDDEN or m.startswith(FORBIDDEN + ".")]
    assert not leaks, "the simulator must not use sendq's adapters: " + "; ".join(leaks)
    assert "worker.simulator.signing" in seen and "worker.phone" in seen  # the walk walks


def test_the_import_walk_would_catch_a_module_that_uses_an_adapter() -> None:
    seen = worker_closure(["worker.webhooks"])
    assert any(m.startswith(FORBIDDEN) for m in seen)


def test_the_import_walk_survives_a_finalizer_that_parses_while_it_parses() -> None:
    # The CI failure's mechanism: garbage whose finalizer calls ast.parse, collected
    # while the walk's own parse builds its tree; a plain ast.parse raises SystemError.
    class ParsesWhenCollected:
        def __del__(self) -> None:
            ast.parse("x = 1")

    source = (ROOT / "worker" / "providers" / "base.py").read_text(encoding="utf-8")
    for _ in range(20):
        gc.disable()
        for _ in range(50):
            cycle = ParsesWhenCollected()
            cycle.self = cycle  # type: ignore[attr-defined]
        del cycle
        gc.enable()
        assert isinstance(parse_without_finalizers(source), ast.Module)


def test_importing_every_simulator_module_loads_no_adapter() -> None:
    names = simulator_modules()
    code = (
        f"import importlib, sys\nfor n in {names!r}: importlib.import_module(n)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r})))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


# -- helpers -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_dialects() -> dict[str, Dialect]:
    return dialects(SimulatorConfig(port=0, **CREDENTIALS))


def receipt(dialect: Dialect, url: str, code: str | None = None, **extra: str) -> Outgoing:
    """The simulator's signed receipt for one text sent through ``dialect``, posting to ``url``."""
    text = Text(
        dialect.new_id(), "+12015550123", SENDER, BODY, "verizon", time.time(), dialect.name
    )
    account = {"twilio": TWILIO_SID, "vonage": VONAGE_KEY}.get(dialect.name, "acct")
    request = SendRequest(account, text.to, SENDER, BODY, url, {"client-ref": "msg-0001", **extra})
    [build, *_] = dialect.receipts(text, request, url, code, 1)
    return build(1)


def form(body: bytes | str) -> dict[str, str]:
    text = body.decode() if isinstance(body, bytes) else body
    return dict(parse_qsl(text, keep_blank_values=True))


class ToSimulator(HTTPAdapter):
    """A requests transport: what an SDK built for a provider's host goes to the simulator."""

    def __init__(self, origins: tuple[str, ...], sim_url: str) -> None:
        super().__init__()
        self.origins, self.sim_url = origins, sim_url
        self.sent: list[requests.PreparedRequest] = []

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        url = str(request.url)
        origin = next(o for o in self.origins if url.startswith(o))
        request.url = self.sim_url + url[len(origin) :]
        self.sent.append(request)
        return super().send(request, stream, timeout, verify, cert, proxies)


class UrllibToSimulator:
    """bandwidth-sdk's urllib3 pool, sending what it built for Bandwidth to the simulator."""

    def __init__(self, sim_url: str) -> None:
        self.sim_url = sim_url
        self.pool = urllib3.PoolManager()

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        assert url.startswith(BANDWIDTH_ORIGIN)
        return self.pool.request(method, self.sim_url + url[len(BANDWIDTH_ORIGIN) :], **kwargs)


# -- 2. receipts the SDKs accept -----------------------------------------------------------


@pytest.mark.parametrize("code", [None, "30007"])
@pytest.mark.parametrize("url", [HOOK.format("twilio"), "http://127.0.0.1:8600/t"])
def test_twilio_receipts_validate_with_request_validator(
    sim_dialects: dict[str, Dialect], url: str, code: str | None
) -> None:
    out = receipt(sim_dialects["twilio"], url, code)
    validator, signed = RequestValidator(CREDENTIALS["auth_token"]), out.headers[TWILIO_HEADER]
    assert validator.validate(out.url, form(out.body), signed)
    assert not validator.validate(out.url + "&y=1", form(out.body), signed)


@settings(max_examples=200, deadline=None)
@given(params=st.lists(st.tuples(st.text(max_size=8), st.text(max_size=12)), max_size=6))
def test_twilio_signature_equals_the_sdks_for_any_form(params: list[tuple[str, str]]) -> None:
    class Multi(dict[str, list[str]]):
        def getall(self, name: str) -> list[str]:
            return self[name]

    grouped = Multi()
    for name, value in params:
        grouped.setdefault(name, []).append(value)
    sdk = RequestValidator("tok").compute_signature(HOOK, grouped)
    assert signing.twilio_signature(HOOK, params, "tok") == sdk


@pytest.mark.parametrize("code", [None, "40002"])
def test_telnyx_receipts_verify_and_unwrap_with_the_sdk(
    sim_dialects: dict[str, Dialect], code: str | None
) -> None:
    out = receipt(sim_dialects["telnyx"], HOOK.format("telnyx"), code)
    public_key = telnyx_public_key(SEED)
    telnyx_webhooks.verify_webhook_signature(out.body, out.headers, public_key)
    client = telnyx.Telnyx(api_key=CREDENTIALS["telnyx_api_key"], public_key=public_key)
    event = client.webhooks.unwrap(out.body.decode(), headers=out.headers)
    assert isinstance(event, DeliveryUpdateWebhookEvent) and event.data is not None
    assert event.data.event_type == "message.finalized"
    with pytest.raises(telnyx_webhooks.WebhookVerificationError):
        tampered = out.body.replace(b"finalized", b"finalised")
        telnyx_webhooks.verify_webhook_signature(tampered, out.headers, public_key)


@pytest.mark.parametrize("url", [HOOK.format("plivo"), "https://h.example/p;v=1", "http://h/"])
def test_plivo_receipts_validate_with_validate_v3_signature(
    sim_dialects: dict[str, Dialect], url: str
) -> None:
    out = receipt(sim_dialects["plivo"], url, "30")
    nonce = out.headers["X-Plivo-Signature-V3-Nonce"]
    for header in ("X-Plivo-Signature-V3", "X-Plivo-Signature-Ma-V3"):
        given_signature = out.headers[header]
        args = ("POST", out.url, nonce, CREDENTIALS["plivo_auth_token"], given_signature)
        assert validate_v3_signature(*args, params=form(out.body))
        assert not validate_v3_signature(*args, params={**form(out.body), "Status": "x"})


# The SDK parses the URL as bytes, which only an ASCII query survives.
ASCII = st.text(alphabet=st.characters(max_codepoint=127), max_size=8)


@settings(max_examples=200, deadline=None)
@given(
    query=st.dictionaries(ASCII.filter(bool), ASCII, max_size=3),
    params=st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=6),
)
def test_plivo_signed_url_equals_the_sdks_for_any_url_and_form(
    query: dict[str, str], params: dict[str, str]
) -> None:
    url = "https://hooks.example.com/p/plivo" + (f"?{urlencode(query)}" if query else "")
    sdk = construct_post_url(url, dict(params)).decode("utf-8")
    assert signing.plivo_v3_signed_url(url, params.items()) == sdk


@pytest.mark.parametrize("method", sorted(SDK_VONAGE_METHODS))
@pytest.mark.parametrize("dlr_method", ["POST", "POST-JSON", "GET"])
def test_vonage_dlrs_pass_the_sdks_check_signature(method: str, dlr_method: str) -> None:
    config = SimulatorConfig(
        port=0,
        **{**CREDENTIALS, "vonage_signature_method": method, "vonage_dlr_method": dlr_method},
    )
    out = receipt(dialects(config)["vonage"], "https://hooks.example.com/v?mid=msg-0001")
    if dlr_method == "GET":
        params = {k: v for k, v in form(out.url.partition("?")[2]).items() if k != "mid"}
    else:
        params = json.loads(out.body) if dlr_method == "POST-JSON" else form(out.body)
    secret = CREDENTIALS["vonage_signature_secret"]
    auth = VonageAuth(
        VONAGE_KEY, signature_secret=secret, signature_method=SDK_VONAGE_METHODS[method]
    )
    assert auth.check_signature(dict(params))
    assert not auth.check_signature({**params, "status": "failed"})


def test_vonage_md5_hash_matches_the_vector_in_vonages_sdk_tests() -> None:
    # The older vonage-python-sdk's test_signature (the newer SDK has no "MD5 hash").
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert (
        signing.vonage_signature(params, "secret", "md5hash") == "6af838ef94998832dbfc29020b564830"
    )


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(st.text(max_size=10), st.text(max_size=16), max_size=6),
    method=st.sampled_from(sorted(SDK_VONAGE_METHODS)),
)
def test_vonage_signature_equals_the_sdks_for_any_parameters(
    params: dict[str, str], method: str
) -> None:
    params = {**params, "timestamp": "1700000000"}  # the SDK adds one when there is none
    auth = VonageAuth(
        VONAGE_KEY, signature_secret="s3cret", signature_method=SDK_VONAGE_METHODS[method]
    )
    assert signing.vonage_signature(params, "s3cret", method) == auth.sign_params(dict(params))


def test_bandwidth_callbacks_carry_the_sdks_basic_header_and_its_model(
    sim_dialects: dict[str, Dialect],
) -> None:
    out = receipt(sim_dialects["bandwidth"], "https://hooks.example.com/bw", "4470", tag="t")
    user, password = (
        CREDENTIALS["bandwidth_callback_username"],
        CREDENTIALS["bandwidth_callback_password"],
    )
    sdk_header = Configuration(username=user, password=password).get_basic_auth_token()
    assert out.headers["Authorization"] == sdk_header
    [event] = json.loads(out.body)
    callback = StatusCallback.from_dict(event)
    assert (
        callback is not None and callback.type == "message-failed" and callback.error_code == 4470
    )


@pytest.mark.parametrize(("user", "password"), [("zoë", "pässwörd"), ("u", "naïve:colon")])
def test_basic_credentials_read_what_the_sdks_and_httpx_send(user: str, password: str) -> None:
    sdk_latin1 = Configuration(username=user, password=password).get_basic_auth_token()
    request = httpx.Request("POST", "https://sim/")
    utf8 = next(httpx.BasicAuth(user, password).auth_flow(request)).headers["authorization"]
    assert signing.basic_credentials(str(sdk_latin1)) == (user, password)
    assert signing.basic_credentials(utf8) == (user, password)
    assert signing.basic_authorization(user, password) == utf8  # RFC 7617's UTF-8


# -- 3. requests the SDKs build, live: SDK -> simulator -> signed receipt -> SDK -----------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def live(receiver: Receiver) -> Iterator[SimulatorHandle]:
    config = SimulatorConfig(
        port=0,
        callback_urls={"bandwidth": f"{receiver.url}/bandwidth"},
        bandwidth_client_id=BANDWIDTH_CLIENT[0],
        bandwidth_client_secret=BANDWIDTH_CLIENT[1],
        **CREDENTIALS,
    )
    with start_in_thread(config) as handle:
        yield handle


def sdk_send_twilio(sim: str, to: str, body: str, callback: str) -> str:
    http = TwilioHttpClient()
    assert http.session is not None
    http.session.mount("https://", ToSimulator(ORIGINS["twilio"], sim))
    client = TwilioClient(TWILIO_SID, CREDENTIALS["auth_token"], http_client=http)
    created = client.messages.create(to=to, from_=SENDER, body=body, status_callback=callback)
    return str(created.sid)


def sdk_send_telnyx(sim: str, to: str, body: str, callback: str) -> str:
    client = telnyx.Telnyx(api_key=CREDENTIALS["telnyx_api_key"], base_url=f"{sim}/v2")
    answer = client.messages.send(from_=SENDER, to=to, text=body, webhook_url=callback)
    assert answer.data is not None
    return str(answer.data.id)


def sdk_send_plivo(sim: str, to: str, body: str, callback: str) -> str:
    client = plivo.RestClient(PLIVO_ID, CREDENTIALS["plivo_auth_token"])
    client.session.mount("https://", ToSimulator(ORIGINS["plivo"], sim))
    created = client.messages.create(src=SENDER, dst=to, text=body, url=callback, method="POST")
    return str(created.message_uuid[0])


def vonage_sms(sim: str, auth: VonageAuth) -> tuple[Sms, ToSimulator]:
    http = VonageHttpClient(auth)
    adapter = ToSimulator(ORIGINS["vonage"], sim)
    http._session.mount("https://", adapter)
    return Sms(http), adapter


def vonage_message(to: str, body: str, callback: str) -> SmsMessage:
    digits = to.removeprefix("+")
    return SmsMessage(
        to=digits, from_=SENDER.removeprefix("+"), text=body, type="unicode", callback=callback
    )


def sdk_send_vonage(sim: str, to: str, body: str, callback: str) -> str:
    auth = VonageAuth(api_key=VONAGE_KEY, api_secret=CREDENTIALS["vonage_api_secret"])
    sms, _ = vonage_sms(sim, auth)
    return str(sms.send(vonage_message(to, body, callback)).messages[0].message_id)


def bandwidth_send(configuration: Configuration, sim: str, to: str, body: str, mark: str) -> str:
    api = ApiClient(configuration)
    api.rest_client.pool_manager = UrllibToSimulator(sim)
    request = MessageRequest(
        application_id=BANDWIDTH_APP, to=[to], var_from=SENDER, text=body, tag=mark
    )
    return str(MessagesApi(api).create_message(BANDWIDTH_ACCOUNT, request).id)


def sdk_send_bandwidth(sim: str, to: str, body: str, callback: str) -> str:
    user, password = CREDENTIALS["bandwidth_username"], CREDENTIALS["bandwidth_password"]
    mark = callback.rpartition("mid=")[2]  # Bandwidth posts to the application's URL
    return bandwidth_send(Configuration(username=user, password=password), sim, to, body, mark)


def twilio_validates(url: str, hit: Hit) -> bool:
    validator = RequestValidator(CREDENTIALS["auth_token"])
    return bool(validator.validate(url, form(hit.body), hit.headers["x-twilio-signature"]))


def telnyx_validates(url: str, hit: Hit) -> bool:
    client = telnyx.Telnyx(api_key="unused", public_key=telnyx_public_key(SEED))
    return client.webhooks.unwrap(hit.body.decode(), headers=hit.headers) is not None


def plivo_validates(url: str, hit: Hit) -> bool:
    nonce, signed = hit.headers["x-plivo-signature-v3-nonce"], hit.headers["x-plivo-signature-v3"]
    token = CREDENTIALS["plivo_auth_token"]
    return bool(validate_v3_signature("POST", url, nonce, token, signed, params=form(hit.body)))


def vonage_validates(url: str, hit: Hit) -> bool:
    method = SDK_VONAGE_METHODS[CREDENTIALS["vonage_signature_method"]]
    secret = CREDENTIALS["vonage_signature_secret"]
    auth = VonageAuth(api_key=VONAGE_KEY, signature_secret=secret, signature_method=method)
    return bool(auth.check_signature(form(hit.body)))


def bandwidth_validates(url: str, hit: Hit) -> bool:
    user = CREDENTIALS["bandwidth_callback_username"]
    password = CREDENTIALS["bandwidth_callback_password"]
    expected = Configuration(username=user, password=password).get_basic_auth_token()
    events = [StatusCallback.from_dict(e) for e in json.loads(hit.body)]
    return hit.headers["authorization"] == expected and all(e is not None for e in events)


SDK_CLIENTS: dict[str, tuple[Callable[[str, str, str, str], str], Callable[[str, Hit], bool]]] = {
    "twilio": (sdk_send_twilio, twilio_validates),
    "telnyx": (sdk_send_telnyx, telnyx_validates),
    "bandwidth": (sdk_send_bandwidth, bandwidth_validates),
    "plivo": (sdk_send_plivo, plivo_validates),
    "vonage": (sdk_send_vonage, vonage_validates),
}


def arrived(sim: str, to: str, body: str) -> list[dict[str, Any]]:
    texts: list[dict[str, Any]] = httpx.get(f"{sim}/sim/inbox/{to}").json()["texts"]
    return [t for t in texts if t["body"] == body]


@pytest.mark.parametrize("name", list(SDK_CLIENTS))
def test_an_sdk_built_send_is_taken_and_its_receipt_passes_the_sdks_check(
    live: SimulatorHandle, receiver: Receiver, name: str
) -> None:
    send, validates = SDK_CLIENTS[name]
    mark = f"{name}-{uuid.uuid4().hex[:10]}"
    to, body = number_for("tmobile", 120 + list(SDK_CLIENTS).index(name)), f"{BODY} {mark}"
    sid = send(live.url, to, body, f"{receiver.url}/{name}?mid={mark}")
    [text] = arrived(live.url, to, body)
    assert (text["provider"], text["sid"], text["from"]) == (name, sid, SENDER)
    hit = receiver.wait_for(mark)
    assert validates(receiver.url + hit.path, hit)


def test_twilio_lookup_through_the_sdk_names_the_carrier(live: SimulatorHandle) -> None:
    http = TwilioHttpClient()
    assert http.session is not None
    http.session.mount("https://", ToSimulator(ORIGINS["twilio"], live.url))
    client = TwilioClient(TWILIO_SID, CREDENTIALS["auth_token"], http_client=http)
    found = client.lookups.v2.phone_numbers(number_for("verizon", 7)).fetch(
        fields="line_type_intelligence"
    )
    assert found.valid and "Verizon" in found.line_type_intelligence["carrier_name"]


def test_bandwidth_sdk_with_oauth2_gets_a_token_and_sends_with_it(
    live: SimulatorHandle, receiver: Receiver
) -> None:
    mark = f"bw-oauth-{uuid.uuid4().hex[:10]}"
    to, body = number_for("att", 130), f"{BODY} {mark}"
    configuration = Configuration(
        client_id=BANDWIDTH_CLIENT[0],
        client_secret=BANDWIDTH_CLIENT[1],
        access_token_url=f"{live.url}/api/v1/oauth2/token",
    )
    sid = bandwidth_send(configuration, live.url, to, body, mark)
    assert configuration.temp_access_token  # the simulator issued it to the SDK
    assert [t["sid"] for t in arrived(live.url, to, body)] == [sid]
    assert bandwidth_validates("", receiver.wait_for(mark))


def test_a_vonage_sdk_signed_send_is_taken_exactly_when_its_sig_covers_what_it_sent(
    live: SimulatorHandle, receiver: Receiver
) -> None:
    method = SDK_VONAGE_METHODS[CREDENTIALS["vonage_signature_method"]]
    secret = CREDENTIALS["vonage_signature_secret"]
    auth = VonageAuth(api_key=VONAGE_KEY, signature_secret=secret, signature_method=method)
    sms, adapter = vonage_sms(live.url, auth)
    message = vonage_message(number_for("att", 131), "signed", f"{receiver.url}/vonage")
    try:
        sms.send(message)
        taken = True
    except Exception as exc:  # vonage_sms.SmsError, naming the status
        assert "error code 14" in str(exc)
        taken = False
    [wire] = adapter.sent
    sent = form(str(wire.body))
    # vonage-sms 1.2 signs unset fields too (account-ref=None...), which it never sends:
    # Vonage checks what arrives, so a correct check refuses that signature.
    covers = auth.sign_params({k: v for k, v in sent.items() if k != "sig"}) == sent["sig"]
    assert taken == covers
