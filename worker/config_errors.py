"""Config errors that name the key and the reason but never a credential.

A bad value is echoed so that the operator can see what sendq read; but a
value can be, or carry, a secret: a Redis URL with its password, a token put
under a mistyped key, a Slack webhook URL whose path is the secret. Those are
masked here, before the message reaches a terminal, a log or a CI transcript.
Phone numbers are left as they are: a sending number in the config is the
operator's own, and masking it would hide what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

from pydantic import ValidationError

from worker.logs import AUTH_HEADER_RE, SECRET_ASSIGNMENT_RE, URL_PASSWORD_RE, is_secret_key
from worker.providers.base import ENV_PREFIX

MASK = "***"
# How much of a (masked) bad value an error line shows.
SHOWN_CHARS = 60
# Sections whose URLs carry their secret in the path (Slack's incoming webhooks).
SECRET_PATH_SECTIONS = frozenset({"alerts"})
_URL_PATH_RE = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s'\"]+)/[^\s'\"]*")


def mask_credentials(text: str) -> str:
    """Passwords in URLs, Authorization credentials and ``token=...`` spellings masked."""
    text = URL_PASSWORD_RE.sub(rf"\1{MASK}\3", text)
    text = AUTH_HEADER_RE.sub(rf"\1\2{MASK}", text)
    return SECRET_ASSIGNMENT_RE.sub(rf"\1{MASK}", text)


def _names_secret(loc: Sequence[str | int], secret_fields: Collection[str]) -> bool:
    """A key that is a secret (``admin_token``), or is named like one
    (``providers.twilio.auth_token`` put in the file by mistake). A ``*_url``
    key only names where a token is fetched (``token_url``): its value is
    masked like any URL instead of hidden."""
    if loc and loc[0] in secret_fields:
        return True
    return any(is_secret_key(part) and not str(part).endswith("_url") for part in loc)


def _without_secrets(value: Any) -> Any:
    """A dict or list input (a whole section) with every secret-named entry masked."""
    if isinstance(value, dict):
        return {k: MASK if is_secret_key(k) else _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_secrets(v) for v in value]
    return value


def shown_value(loc: Sequence[str | int], value: Any, secret_fields: Collection[str]) -> str:
    """The bad value as an error line shows it: masked first, then cut short,
    so that a cut can never leave half a password unmasked."""
    if _names_secret(loc, secret_fields):
        return MASK
    text = mask_credentials(repr(_without_secrets(value)))
    if loc and loc[0] in SECRET_PATH_SECTIONS:
        text = _URL_PATH_RE.sub(r"\1/...", text)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def describe(exc: ValidationError, source: str, secret_fields: Collection[str]) -> str:
    """One line per error: the key, the variable that would override it, the
    reason and the value read, with every credential masked."""
    lines = [f"invalid configuration ({source} and {ENV_PREFIX}* environment):"]
    for err in exc.errors():
        loc = err["loc"]
        key = ".".join(str(p) for p in loc)
        reason = mask_credentials(err["msg"].removeprefix("Value error, "))
        if err["type"] == "extra_forbidden":
            reason = "is not a known setting"
        if not key:  # a check across several settings names them itself
            lines.append(f"  {reason}")
            continue
        env = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
        got = shown_value(loc, err.get("input"), secret_fields)
        lines.append(f"  {key} (env {env}): {reason} (got {got})")
    return "\n".join(lines)
