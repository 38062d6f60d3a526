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
URL_PASSWORD_RE = re.compile(r"(rediss?://[^:/@\s]*:)([^@\s]+)(@)")
SECRET_KEYS = frozenset(
    {"auth_token", "token", "password", "api_key", "secret", "authorization", "admin_token"}
)

_configured = False


def safe_url(url: str) -> str:
    """Scheme and host only: webhook URLs (Slack's, say) carry their secret in the path."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}/..."


def mask_text(text: str) -> str:
    from worker.phone import mask

    text = URL_PASSWORD_RE.sub(r"\1***\3", text)
    return PHONE_RE.sub(lambda m: mask(m.group(0)), text)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: "***" if k.lower() in SECRET_KEYS else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def scrub_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Runs last before rendering, so nothing bound anywhere escapes it."""
    for key in list(event_dict):
        if key.lower() in SECRET_KEYS:
            event_dict[key] = "***"
        else:
            event_dict[key] = _scrub(event_dict[key])
    return event_dict


# Libraries that log every request at INFO: too costly per text, and their URLs
# can carry phone numbers (a lookup's path is the number).
QUIET_LOGGERS = ("httpx", "httpcore", "aiohttp.access", "uvicorn.access")


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
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrub_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
