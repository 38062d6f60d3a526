"""The one I/O boundary between sendq and provider HTTP APIs.

Every provider request goes through ``request()``, which converts httpx's
exceptions into sendq's ProviderError tree, by what they prove:

- ``ProviderUnreachable``: nothing reached the provider (a refused connection,
  a DNS or TLS failure, a connect or pool timeout), so a retry or a failover
  cannot double the text;
- ``ProviderUncertain`` (``ProviderTimeout`` among them): the request was, or
  may have been, written and no answer came: a read timeout, a connection
  dropped or reset after connecting, a gateway's 502 or 504.

The client runs on the httpx-aiohttp transport when it is installed: measured
on a 2-core box, it spends about a tenth of the CPU per request of httpx's
default transport. That transport reports every aiohttp connection error as
``httpx.ConnectTimeout``, so the aiohttp exception it was raised from (its
``__cause__``) is what tells a refused connection from a dropped one.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx

from worker.errors import ProviderError, ProviderTimeout, ProviderUncertain, ProviderUnreachable

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 100
# Below the idle timeouts servers keep (gunicorn 2 s, uvicorn 5 s, nginx 75 s): a
# pooled connection the server already closed fails as "disconnected", which
# cannot be told from a connection dropped after the request was written, and
# such a text would end unconfirmed. A busy pool reuses its connections anyway.
DEFAULT_KEEPALIVE_EXPIRY_S = 1.5
# A gateway's answers: the provider behind it may have taken the text.
UNCERTAIN_STATUSES = frozenset({502, 504})


class _NoCookies(httpx.Cookies):
    """Provider APIs set no cookies sendq needs; parsing them cost ~6% of a send's CPU."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def basic_auth_header(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def make_client(
    *,
    base_url: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    auth: httpx.Auth | tuple[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=DEFAULT_KEEPALIVE_EXPIRY_S,
    )
    if transport is None:
        transport = _fast_transport(limits)
    headers = {}
    if isinstance(auth, tuple):
        # The same header httpx.BasicAuth would add, set once instead of by an
        # auth flow on every request.
        headers["Authorization"] = basic_auth_header(*auth)
        auth = None
    client = httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        limits=limits,
        auth=auth,
        headers=headers,
        transport=transport,
    )
    client._cookies = _NoCookies()
    return client


def _fast_transport(limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    try:
        from httpx_aiohttp import AiohttpTransport
    except ImportError:  # pragma: no cover - it is a declared dependency
        return httpx.AsyncHTTPTransport(limits=limits)
    return AiohttpTransport(limits=limits)


async def request(
    client: httpx.AsyncClient, provider: str, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    try:
        # A per-read timeout alone lets a server that trickles its answer hold a
        # send forever: the whole exchange is bounded too.
        async with asyncio.timeout(_total_s(client.timeout)):
            response = await client.request(method, url, **kwargs)
            await response.aread()
    except httpx.HTTPError as exc:
        raise mapped(provider, exc) from exc
    except TimeoutError as exc:
        raise ProviderTimeout(provider, "no whole answer within the timeout") from exc
    except Exception as exc:
        # Anything else (an aiohttp error the transport let through, a reply that
        # is not HTTP) came after connecting: the request may have been read.
        raise ProviderUncertain(provider, f"no usable answer ({exc!r})") from exc
    if response.status_code in UNCERTAIN_STATUSES:
        raise ProviderUncertain(
            provider, f"HTTP {response.status_code} from a gateway: the text may have been taken"
        )
    return response


def mapped(provider: str, exc: httpx.HTTPError) -> ProviderError:
    """sendq's error for an httpx error, by whether the request can have been sent."""
    if never_sent(exc):
        return ProviderUnreachable(provider, f"cannot connect ({exc!r})")
    if _timed_out(exc):
        return ProviderTimeout(provider, f"no answer within the timeout ({exc!r})")
    # Everything else (a lost connection, an answer that cannot be decoded) came
    # after the request may have been read: the text may have been taken.
    return ProviderUncertain(provider, f"no usable answer ({exc!r})")


def _total_s(timeout: httpx.Timeout) -> float:
    """A whole exchange: connecting, then the answer, each within its own timeout."""
    parts = (timeout.connect, timeout.write, timeout.read)
    return sum(t for t in parts if t is not None) or DEFAULT_TIMEOUT_S


def never_sent(exc: httpx.HTTPError) -> bool:
    """Does this error prove the request never reached the provider?"""
    cause = exc.__cause__
    if _is_aiohttp(cause):
        import aiohttp

        # Connecting failed (refused, DNS, TLS) or timed out: nothing was written.
        return isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def _timed_out(exc: httpx.HTTPError) -> bool:
    cause = exc.__cause__
    if _is_aiohttp(cause):
        return isinstance(cause, TimeoutError)  # aiohttp's ServerTimeoutError family
    return isinstance(exc, httpx.TimeoutException)


def _is_aiohttp(exc: BaseException | None) -> bool:
    return exc is not None and type(exc).__module__.startswith("aiohttp")
