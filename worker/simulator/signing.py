"""The simulator's own signatures and credentials, one scheme per provider.

Each function is written from the provider's documentation and its official
Python SDK (named at each function), never from sendq's adapters in
worker/providers: the simulator is the independent side of every end-to-end
test, so a mistake in an adapter's scheme must make those tests fail rather
than be repeated here. ``tests/test_simulator_sdk_contract.py`` holds every
function against the official SDK's own validator and checks that nothing
under worker/simulator imports worker/providers.

* Twilio: ``X-Twilio-Signature``, HMAC-SHA1 over the URL and the sorted form
  (or, with a SharedKey, that key's HMAC-SHA1 or HMAC-SHA256, named in
  ``X-Twilio-Webhooks-Signature-Settings``).
* Telnyx: ``telnyx-signature-ed25519``, ed25519 over ``timestamp|body``.
* Plivo: ``X-Plivo-Signature-V3``, HMAC-SHA256 over the URL, the sorted query
  and form, and a nonce.
* Vonage: ``sig``, MD5 or an HMAC over the sorted parameters.
* Bandwidth (and the Basic auth of every send API): RFC 7617 credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlparse

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
# On a webhook signed with a SharedKey: ``key=<key id>,algorithm=<algorithm>``.
TWILIO_SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
# The algorithms a Twilio Webhook Setting can sign with; the auth token signs HMAC_SHA1.
TWILIO_ALGORITHMS = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
TELNYX_SIGNATURE_HEADER = "telnyx-signature-ed25519"
TELNYX_TIMESTAMP_HEADER = "telnyx-timestamp"
# The Ma- header is keyed with the main account's token, the other with the
# (sub)account's that sent the text.
PLIVO_SIGNATURE_HEADER = "X-Plivo-Signature-V3"
PLIVO_MA_SIGNATURE_HEADER = "X-Plivo-Signature-Ma-V3"
PLIVO_NONCE_HEADER = "X-Plivo-Signature-V3-Nonce"
# The dashboard's names for Vonage's signature methods; "md5hash" is its default.
VONAGE_SIGNATURE_METHODS = ("md5hash", "md5hmac", "sha1hmac", "sha256hmac", "sha512hmac")


# -- HTTP Basic (RFC 7617) ---------------------------------------------------------------


def basic_authorization(user: str, password: str) -> str:
    """An ``Authorization: Basic`` value (RFC 7617 section 2, in UTF-8 as its section 2.1
    charset names), as Bandwidth sends its callback credentials."""
    pair = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


@lru_cache(maxsize=256)
def basic_credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of a Basic Authorization header; cached, clients reuse one.

    RFC 7617 leaves the encoding to the client: httpx and vonage-http-client send
    UTF-8, while requests and urllib3 (under the Twilio, Plivo and Bandwidth SDKs)
    send ISO-8859-1. UTF-8 is tried first, as the RFC prefers; any byte string is
    also Latin-1, so a credential that is not UTF-8 is read that way.
    """
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = raw.decode("latin-1")
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


# -- Twilio ---------------------------------------------------------------------------


def twilio_signature(
    url: str,
    params: Iterable[tuple[str, str]],
    auth_token: str,
    algorithm: str = "HMAC_SHA1",
) -> str:
    """``X-Twilio-Signature`` for a form POST of ``params`` to ``url``.

    twilio.com/docs/usage/webhooks/webhooks-security: the full URL as requested
    (query included), then every POST parameter's name immediately followed by its
    value, sorted by name (case-sensitive); HMAC-SHA1 keyed with the auth token,
    base64. For a name given twice, twilio-python's ``RequestValidator`` takes
    that name's distinct values in sorted order: sorting the distinct (name,
    value) pairs gives the same sequence.

    With a SharedKey (twilio.com/docs/usage/webhooks/webhook-shared-keys) only the
    key and the hash change: ``auth_token`` is then the key's secret and
    ``algorithm`` the Setting's, HMAC_SHA1 or HMAC_SHA256.
    """
    digest = TWILIO_ALGORITHMS.get(algorithm)
    if digest is None:
        raise ValueError(f"Twilio signature algorithm must be one of {sorted(TWILIO_ALGORITHMS)}")
    message = url + "".join(name + value for name, value in sorted(set(params)))
    mac = hmac.new(auth_token.encode("utf-8"), message.encode("utf-8"), digest)
    return base64.b64encode(mac.digest()).decode("ascii")


def twilio_settings_header(key_id: str, algorithm: str) -> str:
    """The ``X-Twilio-Webhooks-Signature-Settings`` value naming a SharedKey and its hash."""
    return f"key={key_id},algorithm={algorithm}"


# -- Telnyx ---------------------------------------------------------------------------


def telnyx_signature(key: Ed25519PrivateKey, timestamp: str, body: bytes) -> str:
    """``telnyx-signature-ed25519`` for a webhook ``body`` sent with ``telnyx-timestamp``.

    developers.telnyx.com (webhooks, "Verify an Ed25519 signature"): the
    ed25519 signature of the timestamp header's value, ``|`` and the raw body,
    in base64; telnyx-python's ``lib/webhook_verification.py`` checks that.
    """
    return base64.b64encode(key.sign(timestamp.encode("ascii") + b"|" + body)).decode("ascii")


# -- Plivo ----------------------------------------------------------------------------


def plivo_v3_signature(
    url: str, params: Iterable[tuple[str, str]], nonce: str, auth_token: str
) -> str:
    """One ``X-Plivo-Signature-V3`` value for a callback POSTing ``params`` to ``url``.

    Plivo's pages name V3 and its headers (docs.plivo.com/docs/voice/xml/request
    /validation) and leave the algorithm to the SDKs; this follows plivo-python's
    ``utils/signature_v3.py`` for POST: HMAC-SHA256 keyed with the auth token
    over the signed URL (``plivo_v3_signed_url``), ``.`` and the nonce, base64.
    """
    message = f"{plivo_v3_signed_url(url, params)}.{nonce}".encode()
    mac = hmac.new(auth_token.encode("utf-8"), message, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode("ascii")


def plivo_v3_signed_url(url: str, params: Iterable[tuple[str, str]]) -> str:
    """The URL as V3 signs it for a POST: scheme, host and path (no ``;params``,
    query or fragment), then ``?`` and the query's ``name=value`` pairs sorted and
    joined by ``&``; with form fields, a ``?`` always, ``.`` after a non-empty
    query, and the fields sorted as ``namevalue`` with nothing between them."""
    parts = urlparse(url)
    base = parts._replace(params="", query="", fragment="").geturl()
    query = "&".join(
        f"{name}={value}" for name, value in sorted(parse_qsl(parts.query, keep_blank_values=True))
    )
    fields = sorted(params)
    if not fields:
        return f"{base}?{query}" if query else base
    form = "".join(name + value for name, value in fields)
    return f"{base}?{query}{'.' if query else ''}{form}"


# -- Vonage ---------------------------------------------------------------------------


def vonage_signature(params: Mapping[str, str], secret: str, method: str) -> str:
    """The ``sig`` of ``params`` (``sig`` itself left out), as lower-case hex.

    developer.vonage.com/getting-started/concepts/signing-messages, "Manually
    generate a signature": the parameters sorted by name as ``&name=value``
    (``&`` and ``=`` inside a value become ``_``); for "MD5 hash" the MD5 of that
    string followed by the signature secret, for the HMAC methods an HMAC of the
    string keyed with the secret (vonage-http-client's ``Auth.sign_params``).
    """
    if method not in VONAGE_SIGNATURE_METHODS:
        raise ValueError(f"Vonage signature method must be one of {VONAGE_SIGNATURE_METHODS}")
    canonical = "".join(
        f"&{name}={params[name].replace('&', '_').replace('=', '_')}" for name in sorted(params)
    ).encode("utf-8")
    if method == "md5hash":
        return hashlib.md5(canonical + secret.encode("utf-8")).hexdigest()
    digest = method.removesuffix("hmac")  # md5, sha1, sha256, sha512: hashlib's names
    return hmac.new(secret.encode("utf-8"), canonical, digest).hexdigest()


def vonage_signature_valid(params: Mapping[str, str], secret: str, method: str) -> bool:
    """Whether ``params`` carry a ``sig`` over the rest made with ``secret`` and ``method``.

    Vonage's .NET SDK documents HMAC digests in upper case and "MD5 hash" ones in
    lower case, so case is ignored, as vonage-http-client's ``check_signature`` does.
    """
    given = params.get("sig", "")
    unsigned = {name: value for name, value in params.items() if name != "sig"}
    expected = vonage_signature(unsigned, secret, method)
    return hmac.compare_digest(expected.encode(), given.lower().encode("utf-8", "replace"))
