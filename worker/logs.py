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
    from worker.phone import mask

    text = URL_PASSWORD_RE.sub(r"\1***\3", text)
    text = AUTH_HEADER_RE.sub(r"\1\2***", text)
    text = SECRET_ASSIGNMENT_RE.sub(r"\1***", text)
    return PHONE_RE.sub(lambda m: mask(m.group(0)), text)


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
