"""The one I/O boundary between sendq and provider HTTP APIs.

Every provider request goes through ``request()``, which converts httpx's
exceptions into sendq's ProviderError tree. The client runs on the
httpx-aiohttp transport when it is installed: measured on a 2-core box, it
spends about a tenth of the CPU per request of httpx's default transport.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx

from worker.errors import ProviderError, ProviderTimeout, ProviderUnreachable

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_CONNECTIONS = 100


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
        max_connections=max_connections, max_keepalive_connections=max_connections
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
        return await client.request(method, url, **kwargs)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        # The request never left: failing over cannot double it. (The aiohttp
        # transport reports a refused connection as ConnectTimeout.)
        raise ProviderUnreachable(provider, f"cannot connect ({exc!r})") from exc
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(provider, f"no answer within the timeout ({exc!r})") from exc
    except httpx.TransportError as exc:
        raise ProviderUnreachable(provider, f"cannot connect ({exc!r})") from exc
    except httpx.HTTPError as exc:
        raise ProviderError(provider, repr(exc)) from exc
