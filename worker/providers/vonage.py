"""Vonage (Nexmo): the SMS API.

Send: ``POST /sms/json`` on rest.nexmo.com, form-encoded, with ``to`` and
``from`` (E.164 without the "+"; an alphanumeric sender as given), ``text``,
``type`` ("unicode" when the body is not GSM-7, else "text"), ``ttl`` (ms,
20,000 to 604,800,000), ``callback`` (the per-message receipt URL, at most 100
characters) and ``client-ref`` (sendq's message id, echoed in every receipt).
Auth is HTTP Basic (API key, API secret), as vonage-sms 1.x sends it and the
API reference documents (developer.vonage.com/api/sms); with ``sign_requests``
the form instead carries ``api_key``, ``timestamp`` and ``sig`` and no secret
(status 32 forbids both). The answer is HTTP 200 even for errors: each part of
the text has a ``messages[]`` entry whose ``status`` is "0" or an SMS API error
code (developer.vonage.com/api-errors/sms).

Receipts (DLRs): ``msisdn``, ``to``, ``network-code``, ``messageId``, ``price``,
``status`` (delivered, expired, failed, rejected: final; accepted, buffered:
intermediate; unknown), ``scts``, ``err-code``, ``api-key``, ``client-ref``,
``message-timestamp`` and, on signed accounts, ``timestamp``, ``nonce`` and
``sig``. Vonage sends them by GET, form POST or JSON POST, as the account is
set; this module reads all three (sendq's webhook route takes POST only, so the
account must be set to POST or POST-JSON unless the route also takes GET).
DLR ``err-code``s: api.support.vonage.com "Vonage SMS Delivery Error Codes";
err-code 9 is an opt-out (developer.vonage.com/opt-out-assist, "Messaging
Opted-out Numbers"). A text longer than one SMS is sent as parts, each with its
own messageId and receipt; they share the ``client-ref``.

Error codes: the send API's ``status`` and the DLR ``err-code`` are two numbering
schemes that overlap (6 is "invalid message" in one and "anti-spam" in the
other), so sendq names them ``sms-N`` and ``dlr-N``.

Webhook authentication: Vonage's signed-webhook scheme for the SMS API. ``sig``
is the hex digest of ``&name=value`` for every other parameter sorted by name
(``&`` and ``=`` in values replaced by ``_``): HMAC-MD5/SHA1/SHA256/SHA512 keyed
with the signature secret, or for "MD5 hash" (the dashboard's default) plain MD5
of that string followed by the secret. This is vonage-http-client's
``Auth.sign_params``/``check_signature`` (the tests check ours against it); that
SDK cannot do "MD5 hash", which is checked against the vector in the older
vonage-python-sdk's tests instead. Vonage sends HMAC digests in upper case, so
the comparison ignores case. The Java SDK (``RequestSigning``) leaves out
parameters whose value is blank where the Python SDK signs ``&name=``; which one
Vonage's servers do is not documented, so both are accepted (a blank parameter
carries nothing a receipt is read from). Whether Vonage signs the query string
sendq put in the callback URL (``mid``) is not documented either; both are
accepted, and because ``mid`` may then be unsigned, a receipt whose ``mid``
disagrees with its signed ``client-ref`` is refused. ``timestamp`` must be within
``tolerance_s`` of now (the Java SDK's five minutes by default): a captured
receipt cannot be replayed later. Nonces are not remembered; a replay inside the
window is harmless, as receipts are idempotent.

Inbound texts come signed the same way, by GET, form POST or JSON POST too;
worker/providers/vonage_webhooks.py reads their parameters and the receipts'.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import httpx
from pydantic import Field

from worker.errors import InvalidWebhook
from worker.models import Category, Status
from worker.phone import is_gsm7
from worker.providers import transport, vonage_webhooks
from worker.providers.base import (
    InboundEvent,
    OutboundText,
    Provider,
    ProviderSettings,
    ProviderSpec,
    Receipt,
    Secrets,
    SendResult,
    WebhookRequest,
    classify_by_table,
    json_object,
    retry_after_s,
)
from worker.providers.vonage_webhooks import webhook_params

NAME = "vonage"
DEFAULT_BASE_URL = "https://rest.nexmo.com"
SEND_PATH = "/sms/json"
FORM = "application/x-www-form-urlencoded"
DEFAULT_TOLERANCE_S = 300.0
# The API's documented ttl range, in milliseconds.
MIN_TTL_MS = 20_000
MAX_TTL_MS = 604_800_000
# Longer callbacks are refused with status 23; the account's default receipt URL
# is used instead, and the text is still found by its client-ref.
MAX_CALLBACK_CHARS = 100
# The API reference has said 40; vonage-sms allows 100. 40 is safe with both.
MAX_CLIENT_REF_CHARS = 40
# sendq's own query parameter in the callback URL.
MID_PARAM = "mid"

SignatureMethod = Literal["md5hash", "md5hmac", "sha1hmac", "sha256hmac", "sha512hmac"]
# The HMAC methods, by hashlib name.
_HMAC_DIGESTS: dict[str, str] = {
    "md5hmac": "md5",
    "sha1hmac": "sha1",
    "sha256hmac": "sha256",
    "sha512hmac": "sha512",
}
SIGNATURE_METHODS: tuple[str, ...] = ("md5hash", *_HMAC_DIGESTS)

# Every SMS API status and DLR err-code; anything else in 4xx is permanent.
ERROR_CATEGORIES: dict[str, Category] = {
    # -- the send API's ``status`` (developer.vonage.com/api-errors/sms) --
    "sms-1": Category.THROTTLED,  # throttled: faster than the account's limit
    "sms-10": Category.THROTTLED,  # too many existing binds: "back off and retry"
    "sms-4": Category.TRANSIENT,  # invalid credentials: a provider fault, not the text's
    "sms-5": Category.TRANSIENT,  # internal error in Vonage's platform
    "sms-8": Category.TRANSIENT,  # partner account barred: the account's fault, not the text's
    "sms-9": Category.TRANSIENT,  # partner quota violation (no credit): the account's fault
    "sms-11": Category.TRANSIENT,  # account not enabled for HTTP: the account's fault
    "sms-14": Category.TRANSIENT,  # invalid signature: an auth failure, a provider fault
    "sms-32": Category.TRANSIENT,  # signature and API secret both sent: an auth failure
    # sendq's configuration (public_url), not the text: another provider may take it.
    "sms-23": Category.TRANSIENT,  # invalid callback URL: too long or illegal characters
    "sms-29": Category.TRANSIENT,  # non-whitelisted destination: the account is in demo mode
    "sms-6": Category.BAD_NUMBER,  # invalid message: "for example, an unrecognised number prefix"
    "sms-33": Category.BAD_NUMBER,  # number de-activated
    # Vonage's list of numbers that may not receive texts: the recipient's, never
    # retried; nearest to an opt-out of sendq's categories.
    "sms-7": Category.OPTED_OUT,  # number barred
    "sms-2": Category.PERMANENT,  # missing parameters
    "sms-3": Category.PERMANENT,  # invalid parameters
    "sms-12": Category.PERMANENT,  # message too long
    "sms-15": Category.PERMANENT,  # invalid sender address: our sending number, not the recipient
    "sms-22": Category.PERMANENT,  # invalid network code (sendq sends none)
    # -- the receipt's ``err-code`` (api.support.vonage.com, DLR error codes) --
    "dlr-6": Category.CARRIER_BLOCK,  # anti-spam rejection by the carrier
    # "Recipient should ask their carrier to enable SMS": the carrier refuses the
    # text, the Telnyx 40003 signal ("blocked by carrier"), so it feeds the breaker.
    "dlr-14": Category.CARRIER_BLOCK,  # number blocked by carrier
    "dlr-3": Category.BAD_NUMBER,  # absent subscriber, permanent: "no longer active"
    "dlr-5": Category.BAD_NUMBER,  # portability error: the number's porting data is wrong
    "dlr-12": Category.BAD_NUMBER,  # destination unreachable: "confirm the recipient's number"
    # Despite its name, 9 is Vonage's opt-out code: "the user has requested not to
    # receive messages from a specific service" (STOP, per Opt-Out Assist's docs).
    "dlr-9": Category.OPTED_OUT,  # illegal number
    # The subscriber barred texts themselves ("the user must contact their network
    # operator to remove the bar"): the recipient's choice, like a STOP.
    "dlr-4": Category.OPTED_OUT,  # call barred by user
    "dlr-7": Category.TRANSIENT,  # handset busy: "retry"
    "dlr-8": Category.TRANSIENT,  # network error: "retry"
    # Vonage found no route for this network: its limitation, not the number's.
    "dlr-11": Category.TRANSIENT,  # unroutable
    # No cause given, or the handset out of reach: carriers report filtering so too.
    "dlr-1": Category.AMBIGUOUS,  # unknown
    "dlr-2": Category.AMBIGUOUS,  # absent subscriber, temporary (as Twilio 30003)
    "dlr-95": Category.AMBIGUOUS,  # unknown (older lists)
    "dlr-99": Category.AMBIGUOUS,  # general error
    "dlr-10": Category.PERMANENT,  # illegal message: a bad parameter, e.g. the encoding flag
    "dlr-13": Category.PERMANENT,  # subscriber age restriction
    "dlr-15": Category.PERMANENT,  # the recipient's prepaid account has insufficient funds
}

# Vonage DLR status -> sendq status; accepted means a carrier took the text.
RECEIPT_STATUSES: dict[str, Status] = {
    "delivered": Status.DELIVERED,
    "expired": Status.UNDELIVERED,
    "failed": Status.UNDELIVERED,
    "rejected": Status.UNDELIVERED,
    "accepted": Status.SENT,
}
# A final receipt without an err-code: an expired text timed out unreachable,
# like dlr-2; a failed or rejected one gives no reason to retry.
NO_CODE_CATEGORIES: dict[str, Category] = {"expired": Category.AMBIGUOUS}


def classify(error_code: str | None, http_status: int) -> Category:
    return classify_by_table(ERROR_CATEGORIES, error_code, http_status)


def ttl_ms(validity_s: int | None) -> int | None:
    """``ttl`` for a text that may wait ``validity_s``, within the API's range."""
    if validity_s is None:
        return None
    return max(MIN_TTL_MS, min(MAX_TTL_MS, validity_s * 1000))


# -- signatures ------------------------------------------------------------------


def signing_string(params: Mapping[str, str]) -> str:
    """``&name=value`` for each parameter, sorted by name; ``&`` and ``=`` in values
    become ``_`` so a value cannot pose as another parameter."""
    return "".join(
        f"&{name}={params[name].replace('&', '_').replace('=', '_')}" for name in sorted(params)
    )


def signature(params: Mapping[str, str], secret: str, method: str = "md5hash") -> str:
    """The ``sig`` of ``params`` (without ``sig`` itself), as lower-case hex."""
    payload = signing_string(params).encode("utf-8")
    if method == "md5hash":
        # Vonage's scheme, not a choice here: MD5 of the string and the secret.
        return hashlib.md5(payload + secret.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), payload, _HMAC_DIGESTS[method]).hexdigest()


def _digest_chars(method: str) -> int:
    """Hex characters in a ``sig`` made with ``method``."""
    name = "md5" if method == "md5hash" else _HMAC_DIGESTS[method]
    return 2 * hashlib.new(name).digest_size


def _is_blank(value: str) -> bool:
    # Java's String.trim() strips every char up to U+0020; the Java SDK skips what is left empty.
    return all(ord(c) <= 0x20 for c in value)


def _signed_variants(params: Mapping[str, str]) -> list[dict[str, str]]:
    """The parameter sets Vonage may have signed: with or without sendq's own
    ``mid``, and with or without blank values (see the module docstring). An
    unsigned ``mid`` counts only beside a client-ref, which then names the text."""
    bases = [dict(params)]
    if MID_PARAM in params and params.get("client-ref"):
        bases.append({k: v for k, v in params.items() if k != MID_PARAM})
    variants: list[dict[str, str]] = []
    for base in bases:
        for variant in (base, {k: v for k, v in base.items() if not _is_blank(v)}):
            if variant not in variants:
                variants.append(variant)
    return variants


def _given_signature(raw: str | None, method: str) -> str | None:
    """The offered ``sig``, lower-cased, if it has the shape of one; else None."""
    if not raw or not raw.isascii() or len(raw) != _digest_chars(method):
        return None
    lowered = raw.lower()
    return lowered if all(c in "0123456789abcdef" for c in lowered) else None


def _fresh(raw: str | None, now: float, tolerance_s: float) -> bool:
    if not raw or not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        return False
    return abs(now - int(raw)) <= tolerance_s


def _message_id(params: Mapping[str, str]) -> str | None:
    """sendq's id: the signed client-ref, else the callback URL's ``mid``."""
    ref = params.get("client-ref") or None
    mid = params.get(MID_PARAM) or None
    if ref and mid and ref != mid:
        raise InvalidWebhook("client-ref and mid name different messages")
    return ref or mid


def _receipt_code(raw: str | None) -> str | None:
    """``dlr-N`` for a non-zero err-code; "0" and blanks are no error."""
    code = (raw or "").strip()
    if code.isascii() and code.isdigit():
        return f"dlr-{int(code)}" if int(code) else None
    return f"dlr-{code}" if code else None


# -- send answers -----------------------------------------------------------------------


def _parts(payload: Mapping[str, object]) -> list[Mapping[str, object]]:
    messages = payload.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def _part_status(part: Mapping[str, object]) -> str:
    raw = part.get("status")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return "missing"
    status = str(raw).strip()
    # "00" and 0 are "0": a code is a number, however Vonage spells it.
    if status.isascii() and status.isdigit():
        return str(int(status))
    return status or "missing"


def _part_error(part: Mapping[str, object]) -> str:
    text = part.get("error-text")
    return text if isinstance(text, str) else ""


class VonageProvider(Provider):
    name = NAME

    def __init__(
        self,
        *,
        api_key: str,
        signature_secret: str,
        api_secret: str | None = None,
        signature_method: SignatureMethod = "md5hash",
        sign_requests: bool = False,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = transport.DEFAULT_TIMEOUT_S,
        max_connections: int = transport.DEFAULT_MAX_CONNECTIONS,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if signature_method not in SIGNATURE_METHODS:
            raise ValueError(f"Vonage signature_method must be one of {SIGNATURE_METHODS}")
        if not sign_requests and not api_secret:
            raise ValueError("Vonage needs api_secret unless sign_requests is set")
        if not signature_secret:
            raise ValueError("Vonage needs the signature secret to verify receipts")
        self.api_key = api_key
        self._signature_secret = signature_secret
        self._method = signature_method
        self._sign_requests = sign_requests
        self._tolerance_s = tolerance_s
        self._clock = clock
        # A signed request must not carry the secret too (status 32): no Basic auth then.
        auth = None if sign_requests or not api_secret else (api_key, api_secret)
        self._client = client or transport.make_client(
            base_url=base_url, timeout_s=timeout_s, max_connections=max_connections, auth=auth
        )

    # -- sending ------------------------------------------------------------------------

    def form(self, text: OutboundText) -> dict[str, str]:
        fields = {
            "to": text.to.removeprefix("+"),
            "from": _sender(text.sender),
            "text": text.body,
            "type": "text" if is_gsm7(text.body) else "unicode",
        }
        ttl = ttl_ms(text.validity_s)
        if ttl is not None:
            fields["ttl"] = str(ttl)
        if len(text.status_callback_url) <= MAX_CALLBACK_CHARS:
            fields["callback"] = text.status_callback_url
        if len(text.message_id) <= MAX_CLIENT_REF_CHARS:
            fields["client-ref"] = text.message_id
        return self._signed(fields) if self._sign_requests else fields

    def _signed(self, fields: dict[str, str]) -> dict[str, str]:
        signed = {**fields, "api_key": self.api_key, "timestamp": str(int(self._clock()))}
        signed["sig"] = signature(signed, self._signature_secret, self._method)
        return signed

    async def send(self, text: OutboundText) -> SendResult:
        response = await transport.request(
            self._client,
            NAME,
            "POST",
            SEND_PATH,
            data=self.form(text),
            headers={"Accept": "application/json"},
        )
        return self.result(response)

    def result(self, response: httpx.Response) -> SendResult:
        parts = _parts(json_object(response))
        if not parts:
            return _unreadable(response)
        failed = [p for p in parts if _part_status(p) != "0"]
        if not failed and response.is_success:
            return SendResult(Category.OK, provider_message_id=_first_id(parts))
        if not failed:  # parts accepted, yet an HTTP error: trust the status line
            return _unreadable(response)
        code = f"sms-{_part_status(failed[0])}"
        error = _part_error(failed[0]) or response.reason_phrase
        if len(failed) < len(parts):
            # Some parts went: resending would deliver them twice, so the text fails.
            return SendResult(
                Category.PERMANENT,
                provider_message_id=_first_id([p for p in parts if p not in failed]),
                error_code=code,
                error=f"{len(failed)} of {len(parts)} parts refused: {error}"[:300],
            )
        return SendResult(
            classify(code, response.status_code),
            error_code=code,
            error=error[:300],
            retry_after_s=retry_after_s(response),
        )

    # -- receipts --------------------------------------------------------------------------

    def verify_signature(self, request: WebhookRequest) -> bool:
        try:
            params = webhook_params(request)
        except InvalidWebhook:
            return False
        given = _given_signature(params.pop("sig", None), self._method)
        if given is None or not _fresh(params.get("timestamp"), self._clock(), self._tolerance_s):
            return False
        return any(
            hmac.compare_digest(signature(variant, self._signature_secret, self._method), given)
            for variant in _signed_variants(params)
        )

    def is_inbound(self, request: WebhookRequest) -> bool:
        try:
            return vonage_webhooks.is_inbound(webhook_params(request))
        except InvalidWebhook:
            return False

    def parse_inbound(self, request: WebhookRequest) -> list[InboundEvent]:
        return vonage_webhooks.parse_inbound(webhook_params(request))

    def parse_receipt(self, request: WebhookRequest) -> Receipt:
        params = webhook_params(request)
        vonage_id = params.get("messageId")
        raw_status = (params.get("status") or "").lower()
        if not vonage_id or not raw_status:
            raise InvalidWebhook("messageId and status are required")
        mid = _message_id(params)
        status = RECEIPT_STATUSES.get(raw_status)
        if status is None:
            # buffered (queued at the carrier), unknown, anything newer: progress only.
            return Receipt(provider_message_id=vonage_id, status=raw_status, message_id=mid)
        if status is not Status.UNDELIVERED:
            return Receipt(provider_message_id=vonage_id, status=status.value, message_id=mid)
        code = _receipt_code(params.get("err-code"))
        category = classify(code, 400) if code else NO_CODE_CATEGORIES.get(raw_status)
        return Receipt(
            provider_message_id=vonage_id,
            status=status.value,
            message_id=mid,
            error_code=code,
            category=category or Category.PERMANENT,
        )

    async def aclose(self) -> None:
        await self._client.aclose()


def _sender(sender: str) -> str:
    """A number without its "+"; an alphanumeric sender ID as it is."""
    digits = sender.removeprefix("+")
    return digits if digits.isascii() and digits.isdigit() else sender


def _first_id(parts: Iterable[Mapping[str, object]]) -> str | None:
    """The first part's message-id: later parts have their own, and their own receipts."""
    for part in parts:
        message_id = part.get("message-id")
        if isinstance(message_id, str) and message_id:
            return message_id
    return None


def _unreadable(response: httpx.Response) -> SendResult:
    """An answer without Vonage's ``messages``: Vonage reports every outcome in one.
    A 2xx without them may still be Vonage having taken the text (a truncated
    answer), so it is ambiguous: never sent again blindly. Otherwise it is a
    proxy's or an outage page, classified by its status."""
    status = response.status_code
    category = classify(None, status) if not response.is_success else Category.AMBIGUOUS
    return SendResult(
        category,
        error_code=f"http_{status}",
        error=response.reason_phrase[:300],
        retry_after_s=retry_after_s(response),
    )


# -- configuration ---------------------------------------------------------------------

API_SECRET = "vonage_api_secret"  # SENDQ_VONAGE_API_SECRET
SIGNATURE_SECRET = "vonage_signature_secret"  # SENDQ_VONAGE_SIGNATURE_SECRET


class VonageSettings(ProviderSettings):
    """``[providers.vonage]``."""

    base_url: str = DEFAULT_BASE_URL
    api_key: str = "00000000"
    tolerance_s: float = Field(DEFAULT_TOLERANCE_S, gt=0)
    # Must match the account's signature setting in Vonage's dashboard.
    signature_method: SignatureMethod = "md5hash"
    # Sign sends with the signature secret instead of sending the API secret.
    sign_requests: bool = False


def build(config: VonageSettings, secrets: Secrets) -> VonageProvider:
    # A signed send carries no API secret, so only then may it be unset.
    api_secret = None if config.sign_requests else secrets.require(API_SECRET)
    return VonageProvider(
        api_key=config.api_key,
        api_secret=api_secret,
        signature_secret=secrets.require(SIGNATURE_SECRET),
        signature_method=config.signature_method,
        sign_requests=config.sign_requests,
        tolerance_s=config.tolerance_s,
        base_url=config.base_url,
        timeout_s=config.timeout_s,
        max_connections=config.max_connections,
    )


SPEC = ProviderSpec(NAME, VonageSettings, build, secrets=(API_SECRET, SIGNATURE_SECRET))
