"""Twilio's Message list: ``GET /2010-04-01/Accounts/{AccountSid}/Messages.json``.

What a client asks when it never heard the answer to a send: "did you take a
text to this number, from this number, on or after this time?". Written from
Twilio's API reference and twilio-python (``MessageList.page``):

* filters ``To``, ``From`` and ``DateSent``: ``DateSent=YYYY-MM-DD`` is that
  UTC day; ``DateSent>=D`` (on the wire the key is ``DateSent>``) is on or
  after it, ``DateSent<=D`` (key ``DateSent<``) on or before it. twilio-python
  sends a datetime as ``YYYY-MM-DDTHH:MM:SSZ``; with a time, ``>``/``<``
  compare to that instant and ``DateSent=`` still means the whole day. A
  value may also carry its operator (``DateSent=>=2026-01-02``), as the
  SDK's docstrings suggest passing.
* paging: ``PageSize`` (default 50, at most 1000), ``Page`` (from 0),
  ``PageToken``; ``next_page_uri`` is null on the last page.
* the answer: ``{"messages": [...], "page", "page_size", "start", "end",
  "uri", "first_page_uri", "next_page_uri", "previous_page_uri"}``, newest
  first, each a Message resource as a create returns it, with its current
  status (``sent``, then ``delivered`` or ``undelivered`` once its receipt is
  due).
* HTTP Basic as for sends (401/20003); a bad date or page is 400/20001.

It lists what the simulator's Twilio took (sent.SentLog), including texts
whose answer was dropped or held: the point of a look-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlencode

from worker.simulator.dialect import Outcome
from worker.simulator.sent import Sent, SentLog
from worker.simulator.twilio_api import API_VERSION, error, message

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DAY_S = 86_400
INVALID_PARAMETER = 20001
# The query keys a list takes; any other is ignored, as Twilio ignores unknown filters.
_FILTERS = ("To", "From", "DateSent", "DateSent>", "DateSent<")


class BadQuery(ValueError):
    """A filter or paging value Twilio would refuse; the message names it."""


def list_messages(
    log: SentLog, account_sid: str, query: Mapping[str, str], now: float | None = None
) -> Outcome:
    """The page of the account's Twilio messages ``query`` asks for."""
    try:
        since, until = _window(query)
        page, size = _paging(query)
    except BadQuery as exc:
        return Outcome(400, error(INVALID_PARAMETER, 400, str(exc)))
    found = log.find(
        "twilio",
        account=account_sid,
        to=query.get("To") or None,
        sender=query.get("From") or None,
        since=since,
        until=until,
    )
    start = page * size
    chunk = found[start : start + size]
    at = time.time() if now is None else now
    body = _page_body(account_sid, query, page, size, start, len(chunk), len(found))
    body["messages"] = [_resource(s, at) for s in chunk]
    return Outcome(200, body)


def _resource(sent: Sent, now: float) -> dict[str, Any]:
    text = sent.text
    resource = message(
        sid=text.sid,
        account_sid=sent.account,
        to=text.to,
        sender=text.sender,
        body=text.body,
        segments=sent.segments,
        at=text.at,
    )
    resource["status"] = sent.status(now)
    if sent.code and resource["status"] == "undelivered":
        resource["error_code"] = int(sent.code)
    return resource


def _page_body(
    account_sid: str,
    query: Mapping[str, str],
    page: int,
    size: int,
    start: int,
    shown: int,
    total: int,
) -> dict[str, Any]:
    base = f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"
    filters = [(k, query[k]) for k in _FILTERS if query.get(k)]

    def uri(n: int) -> str:
        paging = [("PageSize", str(size)), ("Page", str(n))]
        if n:
            paging.append(("PageToken", f"PA{n}"))
        return f"{base}?{urlencode(filters + paging)}"

    has_next = start + shown < total
    return {
        "page": page,
        "page_size": size,
        "start": start,
        "end": start + max(shown - 1, 0),
        "uri": uri(page),
        "first_page_uri": uri(0),
        "next_page_uri": uri(page + 1) if has_next else None,
        "previous_page_uri": uri(page - 1) if page > 0 else None,
    }


def _paging(query: Mapping[str, str]) -> tuple[int, int]:
    try:
        size = int(query.get("PageSize") or DEFAULT_PAGE_SIZE)
        page = int(query.get("Page") or 0)
    except ValueError:
        raise BadQuery("PageSize and Page must be whole numbers") from None
    if not 1 <= size <= MAX_PAGE_SIZE or page < 0:
        raise BadQuery(f"PageSize must be 1 to {MAX_PAGE_SIZE}, and Page 0 or more")
    return page, size


def _window(query: Mapping[str, str]) -> tuple[float, float]:
    """(since, until) in Unix seconds, both inclusive, from the DateSent filters."""
    since, until = -math.inf, math.inf
    for key, op in (("DateSent", ""), ("DateSent>", ">"), ("DateSent<", "<")):
        raw = query.get(key)
        if not raw:
            continue
        value = raw.strip()
        if not op and value[:1] in "<>":
            op, value = value[0], value[1:]
        value = value.removeprefix("=")
        lo, hi = _bounds(value, key)
        if op == ">":
            since = max(since, lo)
        elif op == "<":
            until = min(until, hi)
        else:  # the whole UTC day, whatever time was given
            day = _midnight(lo)
            since, until = max(since, day), min(until, day + DAY_S - 1e-6)
    return since, until


def _bounds(value: str, key: str) -> tuple[float, float]:
    """A date is its whole UTC day; a date and time is one instant."""
    try:
        if len(value) == len("YYYY-MM-DD"):
            day = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
            return day.timestamp(), day.timestamp() + DAY_S - 1e-6
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{key}: {value!r} is not YYYY-MM-DD nor YYYY-MM-DDTHH:MM:SSZ") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # Twilio reads dates as GMT
    return moment.timestamp(), moment.timestamp()


def _midnight(ts: float) -> float:
    return ts - ts % DAY_S
