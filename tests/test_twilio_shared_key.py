"""Twilio SharedKey signing, checked against twilio 9.13's RequestValidator.

A Webhook Setting can sign with a SharedKey secret instead of the auth token,
by HMAC-SHA256 or HMAC-SHA1, naming the key in
``X-Twilio-Webhooks-Signature-Settings``. The SDK's ``compute_signature(uri,
params, algorithm=...)`` and ``get_signature_algorithm(header)`` are the
oracle: what we accept, its ``validate`` accepts with the same secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from structlog.testing import capture_logs
from twilio.request_validator import RequestValidator, get_signature_algorithm

from worker.errors import ConfigError, UnknownSigningKey
from worker.providers.base import Secrets, WebhookRequest
from worker.providers.twilio import TwilioProvider, TwilioSettings, build
from worker.providers.twilio_webhooks import (
    HMAC_SHA1,
    HMAC_SHA256,
    parse_shared_keys,
    signature,
    signing_settings,
)

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "12345678901234567890123456789012"
KEY_A = "webhooks_sharedkey_01JCSDK4A0000000000000000A"
KEY_B = "webhooks_sharedkey_01JCSDK4B0000000000000000B"
SECRET_A = "sk-secret-a-2f1c9e0b7d6a5f4e3c2b1a09"
SECRET_B = "sk-secret-b-9a8b7c6d5e4f3a2b1c0d9e8f"
FORM = "application/x-www-form-urlencoded"
STATUS_URL = "https://hooks.example.com/webhooks/twilio/status?mid=msg-0001&att=1"
INBOUND_URL = "https://hooks.example.com/webhooks/twilio/inbound"
ALGORITHMS = [HMAC_SHA1, HMAC_SHA256]

RECEIPT = {
    "MessageSid": "SM0123456789abcdef0123456789abcdef",
    "SmsSid": "SM0123456789abcdef0123456789abcdef",
    "AccountSid": ACCOUNT_SID,
    "From": "+15557654321",
    "To": "+15551234567",
    "MessageStatus": "delivered",
    "SmsStatus": "delivered",
    "ApiVersion": "2010-04-01",
}
INCOMING = {
    "MessageSid": "SMfedcba9876543210fedcba9876543210",
    "SmsSid": "SMfedcba9876543210fedcba9876543210",
    "SmsMessageSid": "SMfedcba9876543210fedcba9876543210",
    "AccountSid": ACCOUNT_SID,
    "From": "+15551234567",
    "To": "+15557654321",
    "Body": "Stop texting me please",
    "NumMedia": "0",
    "NumSegments": "1",
    "SmsStatus": "received",
    "ApiVersion": "2010-04-01",
}
FORMS = [
    pytest.param(STATUS_URL, RECEIPT, id="receipt"),
    pytest.param(INBOUND_URL, INCOMING, id="inbound"),
]


def provider(keys: Mapping[str, str] | None = None) -> TwilioProvider:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise AssertionError("this test must not send anything")

    client = httpx.AsyncClient(transport=httpx.MockTransport(unreachable))
    keys = {KEY_A: SECRET_A} if keys is None else keys
    return TwilioProvider(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, client=client, webhook_keys=keys
    )


def sdk_signature(secret: str, url: str, params: Mapping[str, str], algorithm: str) -> str:
    return str(RequestValidator(secret).compute_signature(url, dict(params), algorithm=algorithm))


def request(
    url: str,
    params: Mapping[str, str],
    signed: str,
    settings_header: str | None,
    *,
    body: bytes | None = None,
    headers: Any = None,
) -> WebhookRequest:
    given = headers if headers is not None else httpx.Headers()
    given["X-Twilio-Signature"] = signed
    if settings_header is not None:
        given["X-Twilio-Webhooks-Signature-Settings"] = settings_header
    raw = urlencode(params).encode() if body is None else body
    return WebhookRequest(url=url, headers=given, body=raw, content_type=FORM)


def shared_key_request(
    url: str,
    params: Mapping[str, str],
    *,
    key_id: str = KEY_A,
    secret: str = SECRET_A,
    algorithm: str = HMAC_SHA256,
) -> WebhookRequest:
    header = f"key={key_id},algorithm={algorithm}"
    return request(url, params, sdk_signature(secret, url, params, algorithm), header)


# -- the signature itself --------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("url", "params"), FORMS)
def test_our_signature_is_the_sdks_for_each_algorithm(
    url: str, params: dict[str, str], algorithm: str
) -> None:
    assert signature(url, params.items(), SECRET_A, algorithm) == sdk_signature(
        SECRET_A, url, params, algorithm
    )


@settings(max_examples=200, deadline=None)
@given(
    params=st.dictionaries(st.text(min_size=1, max_size=12), st.text(max_size=30), max_size=6),
    algorithm=st.sampled_from([*ALGORITHMS, "hmac_sha256", "Hmac_Sha1"]),
    secret=st.text(min_size=1, max_size=40),
)
def test_our_signature_equals_the_sdks_for_any_form_and_secret(
    params: dict[str, str], algorithm: str, secret: str
) -> None:
    ours = signature(STATUS_URL, params.items(), secret, algorithm)
    assert ours == sdk_signature(secret, STATUS_URL, params, algorithm)


def test_an_algorithm_the_sdk_cannot_compute_is_refused_by_ours_too() -> None:
    with pytest.raises(ValueError):
        RequestValidator(SECRET_A).compute_signature(STATUS_URL, RECEIPT, algorithm="HMAC_SHA512")
    with pytest.raises(ValueError, match="HMAC_SHA512"):
        signature(STATUS_URL, RECEIPT.items(), SECRET_A, "HMAC_SHA512")


# -- requests signed with a SharedKey --------------------------------------------------


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize(("url", "params"), FORMS)
def test_a_request_signed_with_a_shared_key_is_accepted_as_the_sdk_accepts_it(
    url: str, params: dict[str, str], algorithm: str
) -> None:
    hook = shared_key_request(url, params, algorithm=algorithm)
    sdk_algorithm = get_signature_algorithm(hook.headers["X-Twilio-Webhooks-Signature-Settings"])

    assert sdk_algorithm == algorithm
    assert RequestValidator(SECRET_A).validate(
        url, params, hook.headers["X-Twilio-Signature"], algorithm=sdk_algorithm
    )
    assert provider().verify_signature(hook)


def test_a_get_request_signed_with_a_shared_key_verifies_over_its_url() -> None:
    url = f"{INBOUND_URL}?{urlencode(INCOMING)}"
    signed = sdk_signature(SECRET_A, url, {}, HMAC_SHA256)
    hook = request(url, {}, signed, f"key={KEY_A},algorithm={HMAC_SHA256}", body=b"")

    assert RequestValidator(SECRET_A).validate(url, {}, signed, algorithm=HMAC_SHA256)
    assert provider().verify_signature(hook)


def test_a_shared_key_request_to_a_url_with_its_default_port_is_accepted_as_the_sdk_does() -> None:
    with_port = "https://hooks.example.com:443/webhooks/twilio/inbound"
    signed = sdk_signature(SECRET_A, with_port, INCOMING, HMAC_SHA256)
    hook = request(INBOUND_URL, INCOMING, signed, f"key={KEY_A},algorithm={HMAC_SHA256}")

    assert RequestValidator(SECRET_A).validate(INBOUND_URL, INCOMING, signed, algorithm=HMAC_SHA256)
    assert provider().verify_signature(hook)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param({"url": INBOUND_URL + "?mid=other"}, id="url"),
        pytest.param({"params": {**INCOMING, "Body": "START"}}, id="param"),
        pytest.param({"params": {**INCOMING, "Extra": "1"}}, id="added-param"),
        pytest.param({"body": b"MessageSid=SM1&Body=START"}, id="body"),
    ],
)
def test_a_tampered_shared_key_request_is_refused_by_us_and_the_sdk(tamper: dict[str, Any]) -> None:
    signed = sdk_signature(SECRET_A, INBOUND_URL, INCOMING, HMAC_SHA256)
    url = tamper.get("url", INBOUND_URL)
    params = tamper.get("params", INCOMING)
    body = tamper.get("body", urlencode(params).encode())
    params = dict(parse_qsl(body.decode()))
    hook = request(url, {}, signed, f"key={KEY_A},algorithm={HMAC_SHA256}", body=body)

    assert not RequestValidator(SECRET_A).validate(url, params, signed, algorithm=HMAC_SHA256)
    assert not provider().verify_signature(hook)


def test_a_request_signed_with_another_keys_secret_is_refused() -> None:
    hook = shared_key_request(INBOUND_URL, INCOMING, key_id=KEY_A, secret=SECRET_B)

    assert not provider({KEY_A: SECRET_A, KEY_B: SECRET_B}).verify_signature(hook)


def test_a_request_signed_with_the_other_algorithm_is_refused() -> None:
    signed = sdk_signature(SECRET_A, INBOUND_URL, INCOMING, HMAC_SHA1)
    hook = request(INBOUND_URL, INCOMING, signed, f"key={KEY_A},algorithm={HMAC_SHA256}")

    assert not provider().verify_signature(hook)


def test_a_shared_key_request_signed_with_the_auth_token_is_refused() -> None:
    # The header says which secret signed: the auth token is not a fallback for it.
    signed = sdk_signature(AUTH_TOKEN, INBOUND_URL, INCOMING, HMAC_SHA256)
    hook = request(INBOUND_URL, INCOMING, signed, f"key={KEY_A},algorithm={HMAC_SHA256}")

    assert not provider().verify_signature(hook)


def test_a_request_naming_a_key_sendq_does_not_hold_raises_unknown_signing_key() -> None:
    hook = shared_key_request(INBOUND_URL, INCOMING, key_id=KEY_B, secret=SECRET_B)

    with pytest.raises(UnknownSigningKey) as raised:
        provider({KEY_A: SECRET_A}).verify_signature(hook)

    assert (raised.value.provider, raised.value.key_id) == ("twilio", KEY_B)
    assert KEY_B in str(raised.value)
    assert SECRET_A not in str(raised.value) and SECRET_B not in str(raised.value)


def test_a_shared_key_request_to_sendq_without_shared_keys_names_the_key() -> None:
    hook = shared_key_request(STATUS_URL, RECEIPT)

    with pytest.raises(UnknownSigningKey, match=KEY_A):
        provider({}).verify_signature(hook)


def test_keys_rotate_with_no_downtime() -> None:
    old = shared_key_request(STATUS_URL, RECEIPT, key_id=KEY_A, secret=SECRET_A)
    new = shared_key_request(STATUS_URL, RECEIPT, key_id=KEY_B, secret=SECRET_B)

    # Both keys held while Twilio's Setting moves from the old to the new.
    during = provider({KEY_A: SECRET_A, KEY_B: SECRET_B})
    assert during.verify_signature(old)
    assert during.verify_signature(new)
    # The old key removed once Twilio signs with the new one.
    after = provider({KEY_B: SECRET_B})
    assert after.verify_signature(new)
    with pytest.raises(UnknownSigningKey):
        after.verify_signature(old)


def test_requests_signed_with_the_auth_token_still_verify_beside_shared_keys() -> None:
    signed = sdk_signature(AUTH_TOKEN, STATUS_URL, RECEIPT, HMAC_SHA1)

    assert provider().verify_signature(request(STATUS_URL, RECEIPT, signed, None))
    assert provider().verify_signature(request(STATUS_URL, RECEIPT, signed, ""))
    assert get_signature_algorithm("") == get_signature_algorithm(None) == HMAC_SHA1


@pytest.mark.parametrize("algorithm", ["HMAC_SHA512", "RSA_SHA256", "none", "HMAC_SHA1;x"])
def test_an_algorithm_twilio_does_not_sign_with_is_refused_as_the_sdk_refuses_it(
    algorithm: str,
) -> None:
    signed = sdk_signature(SECRET_A, INBOUND_URL, INCOMING, HMAC_SHA256)
    header = f"key={KEY_A},algorithm={algorithm}"
    hook = request(INBOUND_URL, INCOMING, signed, header)

    sdk_algorithm = get_signature_algorithm(header)
    assert not RequestValidator(SECRET_A).validate(
        INBOUND_URL, INCOMING, signed, algorithm=sdk_algorithm
    )
    assert not provider().verify_signature(hook)


@pytest.mark.parametrize(
    ("header", "algorithm"),
    [
        pytest.param(f" key = {KEY_A} , algorithm = HMAC_SHA256 ", HMAC_SHA256, id="spaces"),
        pytest.param(f"key={KEY_A},algorithm=hmac_sha256", HMAC_SHA256, id="lower-case-value"),
        pytest.param(f"algorithm=HMAC_SHA256,key={KEY_A}", HMAC_SHA256, id="reordered"),
        pytest.param(f"key={KEY_A}", HMAC_SHA1, id="no-algorithm-is-sha1"),
        pytest.param(f"key={KEY_A},algorithm=", HMAC_SHA1, id="empty-algorithm-is-sha1"),
        pytest.param(f"key={KEY_A},algorithm=HMAC_SHA256,", HMAC_SHA256, id="trailing-comma"),
        # The SDK matches "algorithm" in lower case only: "Algorithm=" says nothing to it.
        pytest.param(f"key={KEY_A},Algorithm=HMAC_SHA256", HMAC_SHA1, id="name-case-as-sdk"),
    ],
)
def test_the_settings_header_is_read_as_the_sdk_reads_it(header: str, algorithm: str) -> None:
    assert get_signature_algorithm(header).upper() == algorithm
    signed = sdk_signature(SECRET_A, INBOUND_URL, INCOMING, algorithm)
    hook = request(INBOUND_URL, INCOMING, signed, header)

    assert RequestValidator(SECRET_A).validate(
        INBOUND_URL, INCOMING, signed, algorithm=get_signature_algorithm(header)
    )
    assert provider().verify_signature(hook)


@pytest.mark.parametrize(
    "header_name",
    [
        "X-Twilio-Webhooks-Signature-Settings",
        "x-twilio-webhooks-signature-settings",
        "X-TWILIO-WEBHOOKS-SIGNATURE-SETTINGS",
    ],
)
def test_the_settings_header_is_found_in_any_case_even_in_a_plain_dict(header_name: str) -> None:
    signed = sdk_signature(SECRET_A, INBOUND_URL, INCOMING, HMAC_SHA256)
    headers = {"x-twilio-signature": signed, header_name: f"key={KEY_A},algorithm=HMAC_SHA256"}
    hook = WebhookRequest(
        url=INBOUND_URL, headers=headers, body=urlencode(INCOMING).encode(), content_type=FORM
    )

    assert provider().verify_signature(hook)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("algorithm=HMAC_SHA256", id="no-key"),
        pytest.param("key=,algorithm=HMAC_SHA256", id="empty-key"),
        pytest.param(f"Key={KEY_A},algorithm=HMAC_SHA256", id="key-in-another-case"),
        pytest.param(f"key={KEY_A},key={KEY_B},algorithm=HMAC_SHA256", id="two-keys"),
        pytest.param(f"key={KEY_A},algorithm=HMAC_SHA1,algorithm=HMAC_SHA256", id="two-algos"),
        pytest.param("garbage", id="garbage"),
    ],
)
def test_a_settings_header_that_names_no_single_key_is_refused(header: str) -> None:
    for algorithm in ALGORITHMS:
        signed = sdk_signature(SECRET_A, INBOUND_URL, INCOMING, algorithm)
        assert not provider().verify_signature(request(INBOUND_URL, INCOMING, signed, header))


def test_the_settings_header_parser_names_the_key_and_the_algorithm() -> None:
    parsed = signing_settings(f"key={KEY_A},algorithm=HMAC_SHA256")

    assert parsed is not None
    assert (parsed.key_id, parsed.algorithm) == (KEY_A, HMAC_SHA256)
    assert signing_settings(None) is None
    assert signing_settings("   ") is None


def test_a_request_without_a_signature_is_refused_whatever_its_settings_say() -> None:
    hook = shared_key_request(INBOUND_URL, INCOMING)
    unsigned = WebhookRequest(
        url=hook.url,
        headers={"X-Twilio-Webhooks-Signature-Settings": f"key={KEY_A},algorithm=HMAC_SHA256"},
        body=hook.body,
        content_type=FORM,
    )

    assert not provider().verify_signature(unsigned)


# -- SENDQ_TWILIO_WEBHOOK_KEYS -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", {}),
        (f"{KEY_A}={SECRET_A}", {KEY_A: SECRET_A}),
        (f" {KEY_A} = {SECRET_A} , {KEY_B}={SECRET_B},", {KEY_A: SECRET_A, KEY_B: SECRET_B}),
        # A secret may hold "=" (base64 padding): only the first one separates.
        (f"{KEY_A}=c2VjcmV0==", {KEY_A: "c2VjcmV0=="}),
    ],
    ids=["unset", "one", "two-with-spaces", "padded-secret"],
)
def test_shared_keys_are_read_as_key_id_equals_secret_pairs(
    raw: str, expected: dict[str, str]
) -> None:
    assert parse_shared_keys(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(SECRET_A, "entry 1 is not KEY_ID=SECRET", id="a-bare-secret"),
        pytest.param(f"{KEY_A}={SECRET_A},{SECRET_B}", "entry 2 is not KEY_ID=SECRET", id="second"),
        pytest.param(f"={SECRET_A}", "entry 1 is not KEY_ID=SECRET", id="no-key-id"),
        pytest.param(f"{KEY_A}=", f"key '{KEY_A}' has an empty secret", id="empty-secret"),
        pytest.param(f"my key={SECRET_A}", "entry 1: a key id is letters", id="bad-key-id"),
        pytest.param(
            f"{KEY_A}={SECRET_A},{KEY_A}={SECRET_B}", f"key '{KEY_A}' is given twice", id="twice"
        ),
    ],
)
def test_a_malformed_keys_variable_stops_start_up_naming_it_and_never_the_secret(
    raw: str, reason: str
) -> None:
    values = {"twilio_auth_token": AUTH_TOKEN, "twilio_webhook_keys": raw}
    secrets = Secrets("twilio", {k: _secret(v) for k, v in values.items()})

    with pytest.raises(ConfigError) as raised:
        build(TwilioSettings(), secrets)

    message = str(raised.value)
    assert message.startswith("SENDQ_TWILIO_WEBHOOK_KEYS: ")
    assert reason in message
    assert SECRET_A not in message and SECRET_B not in message


def test_a_provider_built_from_the_environment_verifies_with_its_shared_keys() -> None:
    values = {
        "twilio_auth_token": AUTH_TOKEN,
        "twilio_webhook_keys": f"{KEY_A}={SECRET_A},{KEY_B}={SECRET_B}",
    }
    built = build(TwilioSettings(), Secrets("twilio", {k: _secret(v) for k, v in values.items()}))

    assert built.verify_signature(
        shared_key_request(STATUS_URL, RECEIPT, key_id=KEY_B, secret=SECRET_B)
    )


def test_shared_keys_are_optional() -> None:
    built = build(
        TwilioSettings(),
        Secrets("twilio", {"twilio_auth_token": _secret(AUTH_TOKEN), "twilio_webhook_keys": None}),
    )
    signed = sdk_signature(AUTH_TOKEN, STATUS_URL, RECEIPT, HMAC_SHA1)

    assert built.verify_signature(request(STATUS_URL, RECEIPT, signed, None))


def _secret(value: str) -> SecretStr:
    return SecretStr(value)


def test_an_unsupported_algorithm_is_logged_with_its_key_id_and_no_secret() -> None:
    signed = sdk_signature(SECRET_A, INBOUND_URL, INCOMING, HMAC_SHA256)
    hook = request(INBOUND_URL, INCOMING, signed, f"key={KEY_A},algorithm=HMAC_SHA512")

    with capture_logs() as logs:
        assert not provider().verify_signature(hook)

    [line] = [log for log in logs if log["event"].startswith("webhook refused")]
    assert (line["key_id"], line["algorithm"], line["provider"]) == (KEY_A, "HMAC_SHA512", "twilio")
    assert SECRET_A not in repr(line)
