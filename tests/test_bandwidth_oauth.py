"""Bandwidth OAuth2 (client credentials), checked against bandwidth-sdk 23.3.1.

The SDK is the reference: ``Configuration.get_access_token`` asks
``POST https://api.bandwidth.com/api/v1/oauth2/token`` for a token with the
client credentials as HTTP Basic, reuses it until 60 s before it expires, and
``auth_settings`` puts ``Bearer <token>`` on the message request. Ours must put
the same token request and the same message request on the wire; the rest is
behaviour with an injected clock, and one send through the simulator.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import urllib3
from bandwidth import ApiClient, Configuration
from bandwidth.api.messages_api import MessagesApi
from bandwidth.models.message_request import MessageRequest
from structlog.testing import capture_logs

from worker.errors import ConfigError, ProviderError, ProviderTimeout, ProviderUnreachable
from worker.models import Category
from worker.providers import registry
from worker.providers.bandwidth import (
    DEFAULT_TOKEN_MARGIN_S,
    DEFAULT_TOKEN_URL,
    BandwidthProvider,
    classify,
)
from worker.providers.base import OutboundText, SendResult
from worker.settings import load_settings, read_toml
from worker.simulator.bandwidth_api import TOKEN_PATH
from worker.simulator.carriers import number_for
from worker.simulator.config import SimulatorConfig
from worker.simulator.server import SimulatorHandle, start_in_thread

ACCOUNT_ID = "9900000"
APPLICATION_ID = "93de2206-9669-4e07-948d-329f4b722ee2"
USERNAME = "api-user"
PASSWORD = "correct-horse-battery-staple"
CLIENT_ID = "sendq-client-7f3a"
CLIENT_SECRET = "s3cr3t-client-Zq9w"
API = "https://messaging.bandwidth.com"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
NOW = datetime(2024, 11, 28, 17, 46, 0, tzinfo=UTC)
TOKEN = "eyJhbGciOiJSUzI1NiJ9.sdk-parity-token"
LIFETIME_S = 3600
MESSAGE_ID = "14762070468292kw2fuqty55yp2b2"
CREATED_MESSAGE = {"id": MESSAGE_ID, "applicationId": APPLICATION_ID, "tag": "msg-0001"}
SECRET_ENV = (
    "SENDQ_BANDWIDTH_PASSWORD",
    "SENDQ_BANDWIDTH_CALLBACK_PASSWORD",
    "SENDQ_BANDWIDTH_CLIENT_SECRET",
    "SENDQ_PROVIDERS__BANDWIDTH__CLIENT_ID",
)


# -- helpers -----------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, now_s: float = 1000.0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


class FakeBandwidth:
    """Bandwidth's token URL and messages API on an httpx MockTransport.

    Issues ``tok-1``, ``tok-2``, ... (or ``token``, when given); answers message
    requests with ``message_statuses`` in turn, then 202.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        token_status: int = 200,
        message_statuses: list[int] | None = None,
        token_delay_s: float = 0.0,
    ) -> None:
        self.token = token
        self.token_status = token_status
        self.message_statuses = list(message_statuses or [])
        self.token_delay_s = token_delay_s
        self.token_requests: list[httpx.Request] = []
        self.message_requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == DEFAULT_TOKEN_URL:
            self.token_requests.append(request)
            await asyncio.sleep(self.token_delay_s)
            if self.token_status != 200:
                return httpx.Response(self.token_status, json={"error": "invalid_client"})
            issued = self.token or f"tok-{len(self.token_requests)}"
            return httpx.Response(
                200,
                json={"access_token": issued, "token_type": "Bearer", "expires_in": LIFETIME_S},
            )
        self.message_requests.append(request)
        status = self.message_statuses.pop(0) if self.message_statuses else 202
        if status == 202:
            return httpx.Response(202, json=CREATED_MESSAGE)
        return httpx.Response(status, json={"type": "unauthorized", "description": "no"})

    def bearers(self) -> list[str]:
        return [r.headers["authorization"] for r in self.message_requests]


def oauth_provider(
    api: Callable[[httpx.Request], Any],
    clock: Clock | None = None,
    client_secret: str = CLIENT_SECRET,
) -> BandwidthProvider:
    client = httpx.AsyncClient(base_url=API, transport=httpx.MockTransport(api))
    return BandwidthProvider(
        account_id=ACCOUNT_ID,
        application_id=APPLICATION_ID,
        client_id=CLIENT_ID,
        client_secret=client_secret,
        client=client,
        clock=lambda: NOW,
        now_s=clock or Clock(),
    )


def basic_provider(api: FakeBandwidth) -> BandwidthProvider:
    client = httpx.AsyncClient(
        base_url=API, auth=(USERNAME, PASSWORD), transport=httpx.MockTransport(api)
    )
    return BandwidthProvider(
        account_id=ACCOUNT_ID,
        application_id=APPLICATION_ID,
        username=USERNAME,
        password=PASSWORD,
        client=client,
        clock=lambda: NOW,
    )


def text(message_id: str = "msg-0001", to: str = "+15551234567") -> OutboundText:
    return OutboundText(
        message_id=message_id,
        to=to,
        sender="+15557654321",
        body="Hi Zoë 👍",
        status_callback_url="https://hooks.example.com/webhooks/bandwidth/status",
        validity_s=None,
    )


async def send_all(provider: BandwidthProvider, *texts: OutboundText) -> list[SendResult]:
    try:
        return [await provider.send(t) for t in texts]
    finally:
        await provider.aclose()


class FakeTokenResponse:
    """What the SDK reads of urllib3's answer to its token request: ``.json()``."""

    def json(self) -> dict[str, Any]:
        return {"access_token": TOKEN, "token_type": "Bearer", "expires_in": LIFETIME_S}


class RecordingPoolManager:
    """Stands in for the SDK's urllib3 pool: records the message request, answers 202."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        self.requests.append({"method": method, "url": url, **kwargs})
        return urllib3.HTTPResponse(
            body=json.dumps(CREATED_MESSAGE).encode(),
            status=202,
            headers={"Content-Type": JSON},
            preload_content=False,
        )


def sdk_requests(
    monkeypatch: pytest.MonkeyPatch, client_secret: str = CLIENT_SECRET
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(token request, message request) that bandwidth-sdk sends for one text with OAuth2."""
    token_requests: list[dict[str, Any]] = []

    def fake_request(method: str, url: str, **kwargs: Any) -> FakeTokenResponse:
        token_requests.append({"method": method, "url": url, **kwargs})
        return FakeTokenResponse()

    # get_access_token calls the module-level urllib3.request.
    monkeypatch.setattr(urllib3, "request", fake_request)
    pool = RecordingPoolManager()
    api_client = ApiClient(Configuration(client_id=CLIENT_ID, client_secret=client_secret))
    api_client.rest_client.pool_manager = pool
    message = text()
    request = MessageRequest(
        application_id=APPLICATION_ID,
        to=[message.to],
        var_from=message.sender,
        text=message.body,
        tag=message.message_id,
    )
    created = MessagesApi(api_client).create_message(ACCOUNT_ID, request)
    assert created.id == MESSAGE_ID
    [token_request] = token_requests
    [message_request] = pool.requests
    return token_request, message_request


# -- 1. parity with bandwidth-sdk ---------------------------------------------------


@pytest.mark.parametrize(
    "client_secret", [CLIENT_SECRET, "sécret-✓-ünïcode"], ids=["ascii", "utf8"]
)
async def test_the_token_request_is_the_one_the_sdk_sends(
    monkeypatch: pytest.MonkeyPatch, client_secret: str
) -> None:
    theirs, _ = sdk_requests(monkeypatch, client_secret)
    api = FakeBandwidth(token=TOKEN)
    await send_all(oauth_provider(api, client_secret=client_secret), text())
    [ours] = api.token_requests

    assert ours.method == theirs["method"] == "POST"
    assert str(ours.url) == theirs["url"] == DEFAULT_TOKEN_URL
    assert ours.headers["authorization"] == theirs["headers"]["Authorization"]
    expected = base64.b64encode(f"{CLIENT_ID}:{client_secret}".encode()).decode()
    assert ours.headers["authorization"] == f"Basic {expected}"
    assert ours.headers["content-type"] == theirs["headers"]["Content-Type"] == FORM
    assert ours.content == theirs["body"].encode() == b"grant_type=client_credentials"


async def test_the_message_request_carries_the_bearer_token_like_the_sdk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, theirs = sdk_requests(monkeypatch)
    api = FakeBandwidth(token=TOKEN)
    [result] = await send_all(oauth_provider(api), text())
    [ours] = api.message_requests

    assert result.category is Category.OK
    assert ours.headers["authorization"] == theirs["headers"]["Authorization"]
    assert ours.headers["authorization"] == f"Bearer {TOKEN}"
    assert ours.method == theirs["method"] == "POST"
    assert str(ours.url) == theirs["url"]
    assert ours.headers["content-type"] == theirs["headers"]["Content-Type"] == JSON
    assert ours.headers["accept"] == theirs["headers"]["Accept"] == JSON
    assert json.loads(ours.content) == json.loads(theirs["body"])


async def test_an_oauth2_message_request_differs_from_a_basic_one_only_in_authorization() -> None:
    oauth_api, basic_api = FakeBandwidth(token=TOKEN), FakeBandwidth()
    await send_all(oauth_provider(oauth_api), text())
    await send_all(basic_provider(basic_api), text())
    [bearer], [basic] = oauth_api.message_requests, basic_api.message_requests

    assert bearer.headers["authorization"] == f"Bearer {TOKEN}"
    assert basic.headers["authorization"].startswith("Basic ")
    assert (bearer.method, bearer.url, bearer.content) == (basic.method, basic.url, basic.content)
    without_auth = {k: v for k, v in bearer.headers.items() if k != "authorization"}
    assert without_auth == {k: v for k, v in basic.headers.items() if k != "authorization"}
    assert not basic_api.token_requests


# -- 2. the token's life -------------------------------------------------------------


async def test_a_token_is_fetched_once_and_shared_by_concurrent_sends() -> None:
    api = FakeBandwidth(token_delay_s=0.02)
    provider = oauth_provider(api)
    try:
        results = await asyncio.gather(*(provider.send(text(f"msg-{i}")) for i in range(25)))
    finally:
        await provider.aclose()

    assert all(r.category is Category.OK for r in results)
    assert len(api.token_requests) == 1
    assert api.bearers() == ["Bearer tok-1"] * 25


async def test_the_token_is_reused_until_60_s_before_it_expires_then_refreshed() -> None:
    clock = Clock(1000.0)
    api = FakeBandwidth()
    provider = oauth_provider(api, clock)
    expires_s = 1000.0 + LIFETIME_S
    try:
        await provider.send(text())
        clock.now_s = expires_s - DEFAULT_TOKEN_MARGIN_S - 0.5
        await provider.send(text())
        assert len(api.token_requests) == 1
        clock.now_s = expires_s - DEFAULT_TOKEN_MARGIN_S
        await provider.send(text())
        clock.now_s += 1
        await provider.send(text())
    finally:
        await provider.aclose()

    assert DEFAULT_TOKEN_MARGIN_S == 60
    assert len(api.token_requests) == 2
    assert api.bearers() == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]


async def test_a_401_on_send_drops_the_token_and_the_next_send_fetches_a_fresh_one() -> None:
    api = FakeBandwidth(message_statuses=[401])
    refused, accepted = await send_all(oauth_provider(api), text(), text())

    assert refused.category is Category.TRANSIENT
    assert accepted.category is Category.OK
    assert len(api.token_requests) == 2
    assert api.bearers() == ["Bearer tok-1", "Bearer tok-2"]


async def test_a_send_error_other_than_401_keeps_the_token() -> None:
    api = FakeBandwidth(message_statuses=[503])
    await send_all(oauth_provider(api), text(), text())

    assert len(api.token_requests) == 1


# -- 3. token URL failures -----------------------------------------------------------


@pytest.mark.parametrize("status", [401, 400])
async def test_a_refused_token_request_is_an_auth_failure_naming_the_url_not_the_secret(
    status: int,
) -> None:
    api = FakeBandwidth(token_status=status)
    [result] = await send_all(oauth_provider(api), text())

    # Classified like a 401 from the messages API: the provider's fault, so it
    # counts against Bandwidth's breaker and the text fails over.
    assert result.category is classify(None, 401) is Category.TRANSIENT
    assert result.error_code == f"oauth_http_{status}"
    assert DEFAULT_TOKEN_URL in (result.error or "")
    assert CLIENT_SECRET not in f"{result.error} {result.error_code}"
    assert base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode() not in (
        result.error or ""
    )
    assert not api.message_requests


async def test_a_refused_token_request_is_retried_by_the_next_send() -> None:
    api = FakeBandwidth(token_status=401)
    provider = oauth_provider(api)
    await send_all(provider, text(), text())

    assert len(api.token_requests) == 2


@pytest.mark.parametrize(
    "answer",
    [{"token_type": "Bearer", "expires_in": 3600}, {"access_token": "t"}, ["not", "an", "object"]],
    ids=["no-token", "no-expiry", "not-an-object"],
)
async def test_a_token_answer_without_a_token_and_lifetime_is_a_provider_fault(
    answer: object,
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == DEFAULT_TOKEN_URL, "no message may be sent without a token"
        return httpx.Response(200, json=answer)

    [result] = await send_all(oauth_provider(handler), text())

    assert result.category is Category.TRANSIENT
    assert DEFAULT_TOKEN_URL in (result.error or "")


@pytest.mark.parametrize(
    ("fault", "raised"),
    [(httpx.ConnectError, ProviderUnreachable), (httpx.ReadTimeout, ProviderTimeout)],
)
async def test_network_faults_at_the_token_url_become_provider_errors(
    fault: type[httpx.TransportError], raised: type[ProviderError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise fault("boom", request=request)

    provider = oauth_provider(handler)
    with pytest.raises(raised) as caught:
        await send_all(provider, text())

    assert caught.value.provider == "bandwidth"
    assert CLIENT_SECRET not in str(caught.value)


# -- 4. configuration -----------------------------------------------------------------


@pytest.fixture
def no_bandwidth_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SECRET_ENV:
        monkeypatch.delenv(name, raising=False)


def bandwidth_settings(**overrides: Any) -> Any:
    return load_settings(routes={"default": ["bandwidth"]}, **overrides)


@pytest.mark.usefixtures("no_bandwidth_secrets")
def test_a_client_id_without_its_secret_is_a_start_up_error_naming_the_variable() -> None:
    settings = bandwidth_settings(
        providers={"bandwidth": {"client_id": CLIENT_ID}},
        bandwidth_password=PASSWORD,
        bandwidth_callback_password="cb",
    )
    with pytest.raises(ConfigError, match="SENDQ_BANDWIDTH_CLIENT_SECRET"):
        registry.build_all(settings)


@pytest.mark.usefixtures("no_bandwidth_secrets")
async def test_with_a_client_id_and_its_secret_no_password_is_needed() -> None:
    settings = bandwidth_settings(
        providers={"bandwidth": {"client_id": CLIENT_ID}},
        bandwidth_client_secret=CLIENT_SECRET,
        bandwidth_callback_password="cb",
    )
    built = registry.build_all(settings)
    await built["bandwidth"].aclose()


@pytest.mark.usefixtures("no_bandwidth_secrets")
async def test_basic_auth_warns_that_bandwidth_ends_it_and_oauth2_does_not() -> None:
    basic = bandwidth_settings(bandwidth_password="basic-pw-1234", bandwidth_callback_password="cb")
    oauth = bandwidth_settings(
        providers={"bandwidth": {"client_id": CLIENT_ID}},
        bandwidth_client_secret=CLIENT_SECRET,
        bandwidth_callback_password="cb",
    )
    for settings, warned in ((basic, True), (oauth, False)):
        with capture_logs() as logs:
            built = registry.build_all(settings)
        await built["bandwidth"].aclose()
        lines = [e["event"] for e in logs if e["log_level"] == "warning"]
        assert any("2026-12-02" in line and "client_id" in line for line in lines) is warned
        assert not any("basic-pw-1234" in str(e) or CLIENT_SECRET in str(e) for e in logs)


@pytest.mark.usefixtures("no_bandwidth_secrets")
def test_without_a_client_id_basic_auth_still_needs_the_password() -> None:
    settings = bandwidth_settings(
        bandwidth_client_secret=CLIENT_SECRET, bandwidth_callback_password="cb"
    )
    with pytest.raises(ConfigError, match="SENDQ_BANDWIDTH_PASSWORD"):
        registry.build_all(settings)


def test_the_client_secret_in_the_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sendq.toml"
    path.write_text('bandwidth_client_secret = "oops"\n', encoding="utf-8")

    with pytest.raises(ConfigError, match="SENDQ_BANDWIDTH_CLIENT_SECRET"):
        read_toml(path)


def test_the_token_url_must_be_http() -> None:
    with pytest.raises(ConfigError, match="token_url"):
        load_settings(providers={"bandwidth": {"token_url": "ftp://api.bandwidth.com/token"}})


def test_the_token_url_defaults_to_the_sdks() -> None:
    assert load_settings().providers.bandwidth.token_url == DEFAULT_TOKEN_URL
    assert Configuration().access_token_url == DEFAULT_TOKEN_URL


# -- 5. end to end through the simulator (real HTTP on loopback) ----------------------


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorHandle]:
    config = SimulatorConfig(
        port=0,
        bandwidth_password="sim-basic-password",
        bandwidth_client_id=CLIENT_ID,
        bandwidth_client_secret=CLIENT_SECRET,
        callback_urls={},
    )
    with start_in_thread(config) as handle:
        yield handle


def sim_provider(sim: SimulatorHandle, client_secret: str = CLIENT_SECRET) -> BandwidthProvider:
    return BandwidthProvider(
        account_id=ACCOUNT_ID,
        application_id=APPLICATION_ID,
        client_id=CLIENT_ID,
        client_secret=client_secret,
        token_url=f"{sim.url}{TOKEN_PATH}",
        base_url=sim.url,
    )


async def test_texts_sent_with_oauth2_through_the_simulator_arrive(sim: SimulatorHandle) -> None:
    to = number_for("att", 7)
    first, second = text("oauth-e2e-1", to), text("oauth-e2e-2", to)
    results = await send_all(sim_provider(sim), first, second)

    assert [r.category for r in results] == [Category.OK, Category.OK]
    inbox = httpx.get(f"{sim.url}/sim/inbox/{first.to}").json()
    sids = {t["sid"] for t in inbox["texts"] if t["provider"] == "bandwidth"}
    assert {r.provider_message_id for r in results} <= sids


async def test_the_simulator_refuses_a_wrong_client_secret_at_the_token_url(
    sim: SimulatorHandle,
) -> None:
    [result] = await send_all(sim_provider(sim, "not-the-secret"), text(to=number_for("att", 8)))

    assert result.category is Category.TRANSIENT
    assert result.error_code == "oauth_http_401"
    assert f"{sim.url}{TOKEN_PATH}" in (result.error or "")
    assert "not-the-secret" not in (result.error or "")


def test_the_simulator_refuses_a_bearer_token_it_did_not_issue(sim: SimulatorHandle) -> None:
    response = httpx.post(
        f"{sim.url}/api/v2/users/{ACCOUNT_ID}/messages",
        json={"applicationId": APPLICATION_ID, "to": ["+15551234567"], "from": "+15557654321"},
        headers={"Authorization": "Bearer forged-token"},
    )

    assert response.status_code == 401


def test_the_simulator_issues_tokens_in_the_shape_the_sdk_reads(sim: SimulatorHandle) -> None:
    response = httpx.post(
        f"{sim.url}{TOKEN_PATH}",
        auth=(CLIENT_ID, CLIENT_SECRET),
        content=b"grant_type=client_credentials",
        headers={"Content-Type": FORM},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == LIFETIME_S
    assert isinstance(body["access_token"], str) and body["access_token"]
