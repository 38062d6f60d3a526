"""The simulator's HTTP face: five providers' send APIs, Twilio Lookup v2, and ``/sim/*``.

Routes (each dialect module documents its request and answer shapes):

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: Twilio (twilio_api)
* ``GET  /2010-04-01/Accounts/{AccountSid}/Messages.json``: Twilio's Message list
  (twilio_list): what the simulator's Twilio took, by To, From and DateSent
* ``GET  /v2/PhoneNumbers/{number}``: Twilio Lookup v2 (``?Fields=line_type_intelligence``)
* ``POST /v2/messages``: Telnyx (telnyx_api)
* ``POST /api/v2/users/{accountId}/messages``: Bandwidth (bandwidth_api)
* ``POST /api/v1/oauth2/token``: Bandwidth's OAuth2 token endpoint (bandwidth_api)
* ``POST /v1/Account/{auth_id}/Message/``: Plivo (plivo_api)
* ``POST /sms/json``: Vonage SMS API (vonage_api)
* ``GET  /sim/report``: counters, per carrier and per provider too
* ``GET  /sim/carriers``, ``/sim/carriers/{carrier}``,
  ``/sim/carriers/{carrier}/accepted?after_s=``: per carrier, the fates and
  receipts of accepted texts, in a time window too (carrier_routes)
* ``GET  /sim/inbox/{number}``: what a handset received (and through which provider)
* ``GET  /sim/copies?min=2``: every (recipient, body) that arrived at least
  ``min`` times, with its copies, sids and providers: doubles, text by text
* ``GET  /sim/replies``, ``/sim/handsets``, ``/sim/handsets/{number}``: handsets'
  replies, opt-outs and opt-out violations (reply_routes)
* ``POST /sim/reset``: clear inboxes and counters, restart the scenario clock
* ``GET|POST /sim/scenario``: show or replace the scenario (JSON)
* ``GET  /sim/keys``: public keys sendq needs (Telnyx's ed25519 webhook key)
* ``GET  /sim/providers``: each provider's send route, own port, limits, refusal state
* ``GET  /sim/health``: liveness

Every provider is also reachable on the main port. A provider given its own
port (``SimulatorConfig.provider_ports``) is reachable there too, through a
gate (gate.py) that a ``refuse`` rule really closes. On the main port a
refuse rule cannot close the socket for one provider alone, so that
provider's requests are cut off instead: the connection is aborted (RST)
without an answer, which a client sees as a reset connection.

A ``drop`` rule cuts the connection the same way, but only after the whole
request was read and the text taken (scenario.py): the endpoint reaches
uvicorn's transport through the raw ``send`` the outermost app stashes in the
scope, because Starlette's own ``send`` wraps it.

Handlers stay thin (parse, call the engine, answer) because the send route
must sustain thousands of requests a second on one core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from worker.simulator import carrier_routes, reply_routes, twilio_api, twilio_list
from worker.simulator.bandwidth_api import TOKEN_PATH, BandwidthDialect
from worker.simulator.config import SimulatorConfig, telnyx_public_key, telnyx_signing_key
from worker.simulator.dialect import Dialect, Outcome
from worker.simulator.engine import Simulator
from worker.simulator.gate import Gate, GateKeeper, upstream_host
from worker.simulator.plivo_api import PlivoDialect
from worker.simulator.receipts import ReceiptPoster
from worker.simulator.scenario import PROVIDERS, ScenarioError, from_data
from worker.simulator.telnyx_api import TelnyxDialect
from worker.simulator.twilio_api import TwilioDialect
from worker.simulator.vonage_api import VonageDialect

log = logging.getLogger("sendq.simulator")

TELNYX_PUBLIC_KEY_ENV = "SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY"
LOOKUP_PATH_PREFIX = "/v2/PhoneNumbers/"
# Where SimulatorApp puts uvicorn's own ``send`` in the scope, for drop rules.
RAW_SEND = "sendq.sim.raw_send"
# SO_LINGER on, 0 s: close() then sends an RST instead of a FIN.
_LINGER_RESET = struct.pack("ii", 1, 0)


def dialects(config: SimulatorConfig) -> dict[str, Dialect]:
    """Every provider's dialect, with the configured credentials."""
    found: list[Dialect] = [
        TwilioDialect(config.auth_token, config.account_sid),
        TelnyxDialect(config.telnyx_api_key, telnyx_signing_key(config.telnyx_seed)),
        BandwidthDialect(
            username=config.bandwidth_username,
            password=config.bandwidth_password,
            callback_username=config.bandwidth_callback_username,
            callback_password=config.bandwidth_callback_password,
            account_id=config.bandwidth_account_id,
            client_id=config.bandwidth_client_id,
            client_secret=config.bandwidth_client_secret,
        ),
        PlivoDialect(config.plivo_auth_token, config.plivo_auth_id),
        VonageDialect(
            api_secret=config.vonage_api_secret,
            signature_secret=config.vonage_signature_secret,
            signature_method=config.vonage_signature_method,
            api_key=config.vonage_api_key,
            dlr_method=config.vonage_dlr_method,
        ),
    ]
    return {d.name: d for d in found}


class SimulatorApp(Starlette):
    """Starlette, plus the main port's refusals: they need the raw connection,
    which only the outermost ASGI callable (uvicorn's own ``send``) can reach."""

    def __init__(self, sim: Simulator, prefixes: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sim = sim
        # (path prefix, provider), to tell whose request a refusal applies to.
        self._prefixes = prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[RAW_SEND] = send
        if self.sim.has_refusals and scope["type"] == "http":
            provider = self._provider_of(scope["path"])
            if provider is not None and self.sim.refusing(provider):
                self.sim.count_refused(provider)
                await _abort(scope, receive, send)
                return
        # Starlette.__call__'s body, inlined: one coroutine less on every request.
        scope["app"] = self
        if self.middleware_stack is None:
            self.middleware_stack = self.build_middleware_stack()
        await self.middleware_stack(scope, receive, send)

    def _provider_of(self, path: str) -> str | None:
        for prefix, provider in self._prefixes:
            if path.startswith(prefix):
                return provider
        return None


async def _abort(scope: Scope, receive: Receive, send: Send, how: str | None = None) -> None:
    """Drop the connection without an answer, as a provider that went away.

    ``how`` "reset" forces an RST, "close" sends a FIN; None leaves it to the
    kernel (an RST when unread bytes remain, as with a refused request).
    """
    cycle = getattr(send, "__self__", None)  # uvicorn's per-request cycle
    transport = getattr(cycle, "transport", None)
    if transport is None:  # not under uvicorn: the nearest thing is a bare 503
        await JSONResponse({"error": "refused"}, 503)(scope, receive, send)
        return
    if not transport.is_closing():
        if how == "close":
            transport.close()
        else:
            if how == "reset":
                _linger_zero(transport)
            transport.abort()
    message: Message = {"type": ""}
    while message["type"] != "http.disconnect":
        # Waiting for the disconnect tells uvicorn not to answer (nor log) itself.
        message = await receive()


async def _hold(receive: Receive, seconds: float) -> None:
    """Wait ``seconds`` before answering, or until the client hangs up: an answer
    nobody waits for need not hold a task (a drill holds thousands, for minutes)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while (await receive())["type"] != "http.disconnect":
                pass


def _linger_zero(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


def create_app(config: SimulatorConfig) -> SimulatorApp:
    poster = _poster(config, config.receipt_workers, post_stale=True)
    # A reply due before a reset is dropped: it must not opt someone out in the next run.
    replies = _poster(config, config.reply_workers, post_stale=False)
    by_name = dialects(config)
    sim = Simulator(config, poster, replies, list(by_name.values()))
    keeper = GateKeeper(_gates(config), sim.refusing, sim.count_refused)
    handlers = _Handlers(sim, by_name, config, keeper)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The receipt client, its workers and the gates live on the server's own loop.
        await poster.start()
        await replies.start()
        await keeper.start()
        try:
            yield
        finally:
            await keeper.aclose()
            await replies.aclose()
            await poster.aclose()

    routes = [
        *(Route(d.send_path, _send_endpoint(sim, d), methods=["POST"]) for d in by_name.values()),
        Route(TOKEN_PATH, handlers.bandwidth_token, methods=["POST"]),
        Route(by_name["twilio"].send_path, handlers.twilio_messages, methods=["GET"]),
        Route(LOOKUP_PATH_PREFIX + "{number}", handlers.lookup, methods=["GET"]),
        Route("/sim/report", handlers.report, methods=["GET"]),
        Route("/sim/inbox/{number}", handlers.inbox, methods=["GET"]),
        Route("/sim/copies", handlers.copies, methods=["GET"]),
        *reply_routes.routes(sim),
        *carrier_routes.routes(sim),
        Route("/sim/reset", handlers.reset, methods=["POST"]),
        Route("/sim/scenario", handlers.get_scenario, methods=["GET"]),
        Route("/sim/scenario", handlers.set_scenario, methods=["POST"]),
        Route("/sim/keys", handlers.keys, methods=["GET"]),
        Route("/sim/providers", handlers.providers, methods=["GET"]),
        Route("/sim/health", handlers.health, methods=["GET"]),
    ]
    app = SimulatorApp(sim, _prefixes(by_name), routes=routes, lifespan=lifespan)
    app.state.simulator = sim
    app.state.gates = {gate.provider: gate for gate in keeper.gates}
    return app


def _poster(config: SimulatorConfig, workers: int, *, post_stale: bool) -> ReceiptPoster:
    return ReceiptPoster(
        workers=workers,
        max_tries=config.receipt_max_tries,
        retry_base_s=config.receipt_retry_base_s,
        timeout_s=config.receipt_timeout_s,
        post_stale=post_stale,
    )


def _gates(config: SimulatorConfig) -> list[Gate]:
    unknown = sorted(set(config.provider_ports) - set(PROVIDERS))
    if unknown:
        raise ValueError(f"provider_ports: unknown provider {unknown[0]!r}; known: {PROVIDERS}")
    upstream = (upstream_host(config.host), config.port)
    return [
        Gate(provider, config.host, port, upstream)
        for provider, port in sorted(config.provider_ports.items())
    ]


def _prefixes(by_name: dict[str, Dialect]) -> list[tuple[str, str]]:
    prefixes = [(d.send_path.split("{", 1)[0], name) for name, d in by_name.items()]
    return [*prefixes, (LOOKUP_PATH_PREFIX, "twilio"), (TOKEN_PATH, "bandwidth")]


def _respond(outcome: Outcome) -> Response:
    return JSONResponse(outcome.body, outcome.status, outcome.headers)


def _send_endpoint(sim: Simulator, dialect: Dialect) -> Callable[[Request], Awaitable[Response]]:
    """The send route of one dialect: parse, let the engine decide, answer."""

    async def send(request: Request) -> Response:
        raw = await request.body()
        parsed = dialect.parse(request.path_params, request.headers, raw)
        if isinstance(parsed, Outcome):
            sim.unparsed(dialect, parsed)
            return _respond(parsed)
        outcome = sim.send(dialect, parsed)
        if outcome.hang_s:
            # A provider that stops answering: the client's timeout fires first.
            await _hold(request.receive, outcome.hang_s)
        if outcome.drop is not None:
            # Taken, never answered: the client cannot tell whether it was sent.
            await _abort(request.scope, request.receive, request.scope[RAW_SEND], outcome.drop)
            return Response()  # uvicorn drops it: the connection is gone
        return _respond(outcome)

    return send


class _Handlers:
    def __init__(
        self,
        sim: Simulator,
        by_name: dict[str, Dialect],
        config: SimulatorConfig,
        keeper: GateKeeper,
    ) -> None:
        self.sim = sim
        self.by_name = by_name
        self.config = config
        self.keeper = keeper
        twilio = by_name["twilio"]
        assert isinstance(twilio, TwilioDialect)
        self.twilio = twilio
        bandwidth = by_name["bandwidth"]
        assert isinstance(bandwidth, BandwidthDialect)
        self.bandwidth = bandwidth

    async def bandwidth_token(self, request: Request) -> Response:
        outcome = self.bandwidth.token(request.headers, await request.body())
        if outcome.auth_failed:
            self.sim.unparsed(self.bandwidth, outcome)
        return _respond(outcome)

    async def twilio_messages(self, request: Request) -> Response:
        account_sid = request.path_params["account_sid"]
        if not self.twilio.authorized(request.headers, account_sid):
            return _respond(self.twilio.unauthorized())
        query = dict(request.query_params)
        return _respond(twilio_list.list_messages(self.sim.sent, account_sid, query))

    async def lookup(self, request: Request) -> Response:
        if not self.twilio.authorized(request.headers, None):
            return _respond(self.twilio.unauthorized())
        fields = request.query_params.get("Fields", "")
        country = request.query_params.get("CountryCode", "US")
        body = twilio_api.lookup(
            request.path_params["number"],
            country,
            line_type="line_type_intelligence" in fields.split(","),
        )
        return JSONResponse(body)

    async def report(self, request: Request) -> Response:
        return JSONResponse(self.sim.report())

    async def inbox(self, request: Request) -> Response:
        number: str = request.path_params["number"].strip()
        if number[:1].isdigit():  # "+" may arrive as a space or be left off
            number = "+" + number
        texts = [t.as_json() for t in self.sim.inboxes.texts(number)]
        return JSONResponse({"number": number, "count": len(texts), "texts": texts})

    async def copies(self, request: Request) -> Response:
        try:
            least = int(request.query_params.get("min", "2"))
        except ValueError:
            return JSONResponse({"error": "min: not a whole number"}, 400)
        texts = self.sim.inboxes.copies(max(least, 1))
        return JSONResponse({"min": least, "count": len(texts), "texts": texts})

    async def reset(self, request: Request) -> Response:
        self.sim.reset()
        return JSONResponse({"reset": True, "t": 0.0})

    async def get_scenario(self, request: Request) -> Response:
        return JSONResponse(self.sim.scenario.model_dump(mode="json"))

    async def set_scenario(self, request: Request) -> Response:
        try:
            data: Any = json.loads(await request.body())
            scenario = from_data(data, source="POST /sim/scenario")
        except json.JSONDecodeError as exc:
            return JSONResponse({"error": f"POST /sim/scenario: not valid JSON ({exc})"}, 400)
        except ScenarioError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        self.sim.scenario = scenario
        return JSONResponse(scenario.model_dump(mode="json"))

    async def keys(self, request: Request) -> Response:
        public_key = telnyx_public_key(self.config.telnyx_seed)
        telnyx = {"algorithm": "ed25519", "public_key": public_key, "env": TELNYX_PUBLIC_KEY_ENV}
        return JSONResponse({"telnyx": telnyx})

    async def providers(self, request: Request) -> Response:
        gates = {gate.provider: gate for gate in self.keeper.gates}
        out = {}
        for name, dialect in self.by_name.items():
            gate = gates.get(name)
            account_mps, number_mps = self.sim.scenario.limits(name)
            out[name] = {
                "send": f"POST {dialect.send_path}",
                "port": gate.port if gate is not None else None,
                "refusing": self.sim.refusing(name),
                "account_mps": account_mps,
                "number_mps": number_mps,
                "callback_url": self.sim.callback_urls.get(name),
            }
        return JSONResponse(out)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})
