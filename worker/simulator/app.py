"""The simulator's HTTP face: Twilio's Messages and Lookup v2 APIs, plus ``/sim/*``.

Routes:

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: send a text
* ``GET  /v2/PhoneNumbers/{number}``: Lookup v2 (``?Fields=line_type_intelligence``)
* ``GET  /sim/report``: counters, per carrier too
* ``GET  /sim/inbox/{number}``: what a handset received
* ``POST /sim/reset``: clear inboxes and counters, restart the scenario clock
* ``GET|POST /sim/scenario``: show or replace the scenario (JSON)
* ``GET  /sim/health``: liveness

Handlers stay thin (parse, call the engine, answer) because the send route
must sustain thousands of requests a second on one core.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.simulator import twilio_api
from worker.simulator.config import SimulatorConfig
from worker.simulator.engine import Simulator
from worker.simulator.receipts import ReceiptPoster
from worker.simulator.scenario import ScenarioError, from_data

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Basic realm="Twilio API"'}


def create_app(config: SimulatorConfig) -> Starlette:
    poster = ReceiptPoster(
        config.auth_token,
        workers=config.receipt_workers,
        max_tries=config.receipt_max_tries,
        retry_base_s=config.receipt_retry_base_s,
        timeout_s=config.receipt_timeout_s,
    )
    handlers = _Handlers(Simulator(config, poster))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The receipt client and its workers live on the server's own loop.
        await poster.start()
        try:
            yield
        finally:
            await poster.aclose()

    routes = [
        Route(
            "/2010-04-01/Accounts/{account_sid}/Messages.json",
            handlers.send,
            methods=["POST"],
        ),
        Route("/v2/PhoneNumbers/{number}", handlers.lookup, methods=["GET"]),
        Route("/sim/report", handlers.report, methods=["GET"]),
        Route("/sim/inbox/{number}", handlers.inbox, methods=["GET"]),
        Route("/sim/reset", handlers.reset, methods=["POST"]),
        Route("/sim/scenario", handlers.get_scenario, methods=["GET"]),
        Route("/sim/scenario", handlers.set_scenario, methods=["POST"]),
        Route("/sim/health", handlers.health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.simulator = handlers.sim
    return app


class _Handlers:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.config = sim.config

    async def send(self, request: Request) -> Response:
        account_sid: str = request.path_params["account_sid"]
        if not self._authorized(request, account_sid):
            return _unauthorized()
        raw = await request.body()
        form = dict(parse_qsl(raw.decode("utf-8", "replace")))
        outcome = self.sim.send(account_sid, form)
        if outcome.hang_s:
            # A provider that stops answering: the client's timeout fires first.
            await asyncio.sleep(outcome.hang_s)
        return JSONResponse(outcome.body, outcome.status, outcome.headers)

    async def lookup(self, request: Request) -> Response:
        if not self._authorized(request, self.config.account_sid):
            return _unauthorized()
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

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    def _authorized(self, request: Request, account_sid: str | None) -> bool:
        """HTTP Basic: username the account SID, password the auth token."""
        credentials = _credentials(request.headers.get("authorization", ""))
        if credentials is None:
            return False
        user, password = credentials
        expected_sid = self.config.account_sid
        if expected_sid is not None and user != expected_sid:
            return False
        if account_sid is not None and user != account_sid:
            return False
        return hmac.compare_digest(password.encode(), self.config.auth_token.encode())


@lru_cache(maxsize=256)
def _credentials(header: str) -> tuple[str, str] | None:
    """(user, password) of a Basic Authorization header; cached, clients reuse one."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _unauthorized() -> Response:
    return JSONResponse(twilio_api.error(20003, 401), 401, UNAUTHORIZED_HEADERS)
