"""sendq's status-callback URLs: the send path writes them, the webhook app reads them.

    {public_url}/webhooks/{provider}/status?mid={message id}&att={attempt number}

The attempt number ties a receipt to the HTTP attempt that sent the text, so a
late receipt from an earlier attempt, or one that names another provider's
text, can be told apart (``lua/receipt.lua``).
"""

from __future__ import annotations

from collections.abc import Mapping

MESSAGE_PARAM = "mid"
ATTEMPT_PARAM = "att"


def status_url(public_url: str, provider: str, msg_id: str, attempt: int) -> str:
    query = f"{MESSAGE_PARAM}={msg_id}&{ATTEMPT_PARAM}={attempt}"
    return f"{public_url}/webhooks/{provider}/status?{query}"


def attempt_of(query: Mapping[str, str]) -> int | None:
    """The attempt a callback URL names (1 or more); None when it names none usable.

    An attempt number that is not a positive number names no attempt: the
    receipt is then matched by its provider's message id (lua/receipt.lua).
    """
    raw = query.get(ATTEMPT_PARAM, "")
    if not (raw.isascii() and raw.isdigit() and len(raw) < 10) or int(raw) < 1:
        return None
    return int(raw)
