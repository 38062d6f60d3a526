"""What Twilio posts to sendq: its signatures (auth token and SharedKey) and incoming texts.

Signatures. ``X-Twilio-Signature`` is base64(HMAC(secret, URL + each POST
parameter's name and value, sorted by name)). By default the secret is the
account's auth token and the hash SHA-1. Twilio's Webhooks configuration API
(public beta since September 2026; twilio.com/docs/usage/webhooks
/webhook-shared-keys) can instead sign with a SharedKey secret, by HMAC-SHA256
or HMAC-SHA1; such a request carries ``X-Twilio-Webhooks-Signature-Settings:
key=<SharedKey id>,algorithm=HMAC_SHA256`` and only the secret and the hash
change. The oracle is twilio 9.13's ``RequestValidator.compute_signature(uri,
params, algorithm)`` and ``get_signature_algorithm(header)``, which the tests
check ours against. The settings header, read as the SDK reads it:

- absent, or blank: the auth token with HMAC-SHA1 (the SDK's legacy signature);
- ``key=`` names a key sendq holds no secret for: ``UnknownSigningKey``, which
  the receiver answers 403 and logs with the key id;
- no ``key=``: refused, since no secret can be chosen;
- no ``algorithm=``: HMAC_SHA1, the SDK's default; any case of HMAC_SHA1 or
  HMAC_SHA256 is accepted (``compute_signature`` upper-cases it); any other is
  refused and logged, as the SDK's ``validate`` refuses it;
- parameter names are matched as the SDK matches ``algorithm``: stripped, in
  lower case; a parameter given twice is refused (the SDK takes the first
  ``algorithm``; Twilio sends each once, and sendq accepts no more than it).

SharedKey secrets come from ``SENDQ_TWILIO_WEBHOOK_KEYS`` as ``key_id=secret``
pairs separated by commas. Holding several is how keys rotate with no
downtime: add the new key to sendq, point Twilio's Webhook Setting at it, then
remove the old one.

Incoming texts (twilio.com/docs/messaging/guides/webhook-request): a form
POST (or, as the number is set, a GET with the same parameters in the query)
with ``MessageSid`` (and its deprecated twin ``SmsSid``), ``AccountSid``,
``From`` (the person), ``To`` (our number), ``Body``, ``NumMedia``,
``NumSegments``, ``SmsStatus=received`` and no ``MessageStatus``, which every
status callback carries. Twilio gives no time and no carrier for them.
"""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import structlog

from worker.errors import ConfigError, InvalidWebhook, UnknownSigningKey
from worker.providers import inbound
from worker.providers.base import InboundEvent, InboundText, WebhookRequest, secret_env

NAME = "twilio"
log = structlog.get_logger("sendq.providers")

SIGNATURE_HEADER = "x-twilio-signature"
SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
HMAC_SHA1 = "HMAC_SHA1"
HMAC_SHA256 = "HMAC_SHA256"
# The algorithms the header may name, by hashlib name.
_DIGESTS: dict[str, str] = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}
FORM = "application/x-www-form-urlencoded"
# SharedKey ids as Twilio shows them (webhooks_sharedkey_...), and nothing that
# could be a mistyped secret or separator.
KEY_ID_RE = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
# A key id from a request is attacker-controlled: bounded before it is logged.
MAX_LOGGED_KEY_ID = 128
WEBHOOK_KEYS = "twilio_webhook_keys"  # SENDQ_TWILIO_WEBHOOK_KEYS


# -- signatures ----------------------------------------------------------------------


def signature(
    url: str, params: Iterable[tuple[str, str]], secret: str, algorithm: str = HMAC_SHA1
) -> str:
    """X-Twilio-Signature for a form POST to ``url`` (Twilio's published algorithm).

    Raises ValueError for an algorithm other than HMAC_SHA1 or HMAC_SHA256, as the SDK does.
    """
    digest = _DIGESTS.get(algorithm.upper())
    if digest is None:
        raise ValueError(f"unsupported webhook signature algorithm {algorithm!r}")
    grouped: dict[str, set[str]] = {}
    for name, value in params:
        grouped.setdefault(name, set()).add(value)
    payload = url + "".join(
        name + value for name in sorted(grouped) for value in sorted(grouped[name])
    )
    mac = hmac.new(secret.encode(), payload.encode(), digest)
    return base64.b64encode(mac.digest()).decode()


def url_variants(url: str) -> list[str]:
    """Twilio signs some URLs with the default port and some without; accept both."""
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:  # a malformed or out-of-range port: only the URL as given
        return [url]
    if port is None:
        if default is None:
            return [url]
        return [url, urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}"))]
    return [url, urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0]))]


@dataclass(frozen=True, slots=True)
class SigningSettings:
    """What ``X-Twilio-Webhooks-Signature-Settings`` names: a SharedKey and its hash."""

    key_id: str
    algorithm: str


def signing_settings(raw: str | None) -> SigningSettings | None:
    """The header, read; None when absent or blank (the auth token signed).

    Raises InvalidWebhook for a header that names no key or repeats a parameter.
    """
    if raw is None or not raw.strip():
        return None
    found: dict[str, str] = {}
    for part in raw.split(","):
        name, separator, value = part.partition("=")
        name = name.strip()
        if not separator or not name:
            continue  # as the SDK: a part that is not name=value says nothing
        if name in found:
            raise InvalidWebhook(f"{SETTINGS_HEADER}: {name!r} is given twice")
        found[name] = value.strip()
    key_id = found.get("key")
    if not key_id:
        raise InvalidWebhook(f"{SETTINGS_HEADER} names no signing key")
    return SigningSettings(key_id[:MAX_LOGGED_KEY_ID], found.get("algorithm") or HMAC_SHA1)


def parse_shared_keys(raw: str) -> dict[str, str]:
    """``key_id=secret[,key_id=secret...]`` from SENDQ_TWILIO_WEBHOOK_KEYS.

    Raises ConfigError naming the variable and the entry; a secret is never
    echoed, nor a malformed entry (it may be a secret pasted whole).
    """
    variable = secret_env(WEBHOOK_KEYS)
    keys: dict[str, str] = {}
    for position, entry in enumerate(raw.split(","), start=1):
        if not entry.strip():
            continue  # a trailing comma, say
        key_id, separator, secret = (piece.strip() for piece in entry.partition("="))
        if not separator or not key_id:
            raise ConfigError(f"{variable}: entry {position} is not KEY_ID=SECRET")
        if not KEY_ID_RE.fullmatch(key_id):
            raise ConfigError(
                f"{variable}: entry {position}: a key id is letters, digits, '_', '-', '.' or ':'"
            )
        if not secret:
            raise ConfigError(f"{variable}: key {key_id!r} has an empty secret")
        if key_id in keys:
            raise ConfigError(f"{variable}: key {key_id!r} is given twice")
        keys[key_id] = secret
    return keys


class Verifier:
    """Checks X-Twilio-Signature with the auth token, or the SharedKey the request names."""

    def __init__(self, auth_token: str, shared_keys: Mapping[str, str] | None = None) -> None:
        self._auth_token = auth_token
        self._shared_keys = dict(shared_keys or {})

    def verify(self, request: WebhookRequest) -> bool:
        """True only for a valid signature; UnknownSigningKey for a key sendq does not hold."""
        given = header(request.headers, SIGNATURE_HEADER)
        if not given or not given.isascii():
            return False
        secret_and_algorithm = self._secret(request)
        if secret_and_algorithm is None:
            return False
        secret, algorithm = secret_and_algorithm
        try:
            params = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return False
        return any(
            hmac.compare_digest(signature(url, params, secret, algorithm), given)
            for url in url_variants(request.url)
        )

    def _secret(self, request: WebhookRequest) -> tuple[str, str] | None:
        """The secret and algorithm that signed the request, None when it cannot be told."""
        try:
            settings = signing_settings(header(request.headers, SETTINGS_HEADER))
        except InvalidWebhook as exc:
            log.warning(
                "webhook refused: unreadable signature settings", provider=NAME, reason=str(exc)
            )
            return None
        if settings is None:
            return self._auth_token, HMAC_SHA1
        secret = self._shared_keys.get(settings.key_id)
        if secret is None:
            raise UnknownSigningKey(NAME, settings.key_id)
        if settings.algorithm.upper() not in _DIGESTS:
            log.warning(
                "webhook refused: unsupported signature algorithm",
                provider=NAME,
                key_id=settings.key_id,
                algorithm=settings.algorithm[:40],
            )
            return None
        return secret, settings.algorithm


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by its lower-case name, from a case-insensitive mapping or a plain dict."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, item in headers.items():
        if key.lower() == name:
            return item
    return None


# -- incoming texts ------------------------------------------------------------------


def form(request: WebhookRequest) -> dict[str, str]:
    """The request's parameters: the form body of a POST, the query of a GET."""
    if not request.body:
        try:
            return dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True))
        except ValueError as exc:
            raise InvalidWebhook("the webhook URL cannot be parsed") from exc
    if FORM not in request.content_type.lower():
        raise InvalidWebhook("Twilio webhooks are form-encoded")
    try:
        return dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError as exc:
        raise InvalidWebhook("body is not UTF-8") from exc


def is_incoming(params: Mapping[str, str]) -> bool:
    """An incoming message, not a status callback: those always carry MessageStatus.

    An incoming message's fields are asked for too, so that a request carrying only
    sendq's own query (``mid``, ``att``) is not taken for one.
    """
    status = params.get("MessageStatus") or params.get("SmsStatus")
    if status not in (None, "received"):
        return False
    return any(name in params for name in ("MessageSid", "SmsSid", "From", "Body"))


def parse_incoming(params: Mapping[str, str]) -> list[InboundEvent]:
    """The one text of an incoming-message webhook, or why it was refused."""
    if not is_incoming(params):
        raise InvalidWebhook("a status callback, not an incoming message")
    return [inbound.event(0, lambda: _incoming(params))]


def _incoming(params: Mapping[str, str]) -> InboundText:
    sid = params.get("MessageSid") or params.get("SmsSid")
    if not sid:
        raise InvalidWebhook("MessageSid is required")
    media = (params.get("NumMedia") or "0").strip() not in ("", "0")
    return InboundText(
        provider_message_id=sid,
        sender=inbound.number(params.get("From"), "From"),
        to=inbound.number(params.get("To"), "To"),
        body=inbound.body(params, "Body", media=media),
    )
