"""structlog, configured once: JSON off a TTY, with phone numbers and secrets masked.

Bind context with ``structlog.contextvars.bind_contextvars(message_id=...,
campaign=..., carrier=..., provider=...)``; every event then carries it.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# E.164 or a 10+ digit run: anything that could be a phone number.
PHONE_RE = re.compile(r"\+?\d[\d\-\s().]{8,}\d")
# Left whole before numbers are looked for, so that a log line can still be
# matched to `sendq messages show` and a number beside one of these cannot eat
# into it: ISO dates and timestamps (structlog's TimeStamper, send_before),
# UUIDs (Telnyx's and Plivo's ids), words of 16+ hex digits in one case (sendq's
# message ids, Twilio's SIDs after their two letters, Vonage's ids; a run of 16+
# digits is longer than any E.164 number), and Bandwidth's ids (epoch ms, then
# base 36). Only id-shaped words: a number glued to other text is still masked.
KEEP_RE = re.compile(
    r"""(?x)
    (?<!\d)(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])
        (?:[T\ ][0-2]\d:[0-5]\d(?::[0-5]\d(?:[.,]\d{1,9})?)?(?:Z|[+-][0-2]\d:?[0-5]\d)?)?
        (?![\d:])
    | (?<![0-9A-Za-z])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}(?![0-9A-Za-z])
    | (?<![0-9A-Za-z])(?:[A-Z]{2})?(?:[0-9a-f]{16,}|[0-9A-F]{16,})(?![0-9A-Za-z])
    | (?<![0-9A-Za-z])\d{13,14}[0-9a-z]{12,}(?![0-9A-Za-z])
    """
)
# A password in any URL's userinfo: rediss://:pw@host, https://user:pw@host.
URL_PASSWORD_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)")
# An Authorization header's credentials, should one end up in a message or a repr.
AUTH_HEADER_RE = re.compile(r"\b(Bearer|Basic)(\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# A secret spelt out as key=value or "key": "value" inside a string (an exception's
# message, a request's repr).
SECRET_ASSIGNMENT_RE = re.compile(
    r"""(?ix)
    (\b[\w-]*(?:secret|password|passwd|token|api[_-]?key|authorization)['"]?\s*[:=]\s*['"]?
     (?:(?:bearer|basic)\s+)?)
    ([^\s'",&}]+)
    """
)
# Every credential sendq reads (settings.SECRET_FIELDS and the providers'
# constructor parameters), and the header names that carry one.
SECRET_KEYS = frozenset(
    {
        "auth_token",
        "token",
        "access_token",
        "refresh_token",
        "password",
        "callback_password",
        "api_key",
        "api_secret",
        "secret",
        "client_secret",
        "signature_secret",
        "authorization",
        "proxy-authorization",
        "admin_token",
        "credentials",
    }
)
# Any other key naming one: twilio_auth_token, vonage_signature_secret, x-api-key...
SECRET_KEY_PARTS = ("secret", "password", "passwd", "token", "api_key", "api-key", "authorization")

_configured = False


def safe_url(url: str) -> str:
    """Scheme and host only: webhook URLs (Slack's, say) carry their secret in the path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/..."


def mask_text(text: str) -> str:
    text = URL_PASSWORD_RE.sub(r"\1***\3", text)
    text = AUTH_HEADER_RE.sub(r"\1\2***", text)
    text = SECRET_ASSIGNMENT_RE.sub(r"\1***", text)
    return mask_numbers(text)


def mask_numbers(text: str) -> str:
    """Every phone number to its last 4 digits; ids and timestamps left as they are."""
    from worker.phone import mask

    def masked(part: str) -> str:
        return PHONE_RE.sub(lambda m: mask(m.group(0)), part)

    out: list[str] = []
    done = 0
    for kept in KEEP_RE.finditer(text):
        out += [masked(text[done : kept.start()]), kept.group(0)]
        done = kept.end()
    out.append(masked(text[done:]))
    return "".join(out)


def is_secret_key(key: object) -> bool:
    """A bound key whose value is a credential, whatever its prefix (``twilio_auth_token``)."""
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return lowered in SECRET_KEYS or any(part in lowered for part in SECRET_KEY_PARTS)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: "***" if is_secret_key(k) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def scrub_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Runs last before rendering, so nothing bound anywhere escapes it."""
    for key in list(event_dict):
        if is_secret_key(key):
            event_dict[key] = "***"
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


# Libraries that log every request at INFO: too costly per text, and their URLs
# can carry phone numbers (a lookup's path is the number).
QUIET_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "uvicorn.access")


def processors() -> list[Any]:
    """The chain every event goes through before rendering (tests capture its output)."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        scrub_processor,
    ]


def configure(level: str = "info", *, json: bool | None = None) -> None:
    global _configured
    if _configured:
        return
    _configured = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
