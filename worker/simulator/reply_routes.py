"""``/sim/replies`` and ``/sim/handsets``: what handsets said back, and what it shows.

* ``GET /sim/replies``: the counts (``Handsets.summary``: replies by state,
  kind, provider and carrier; handsets opted out; violations by opt-out kind;
  exempt confirmations) and ``violating_texts``, each violation in full.
  ``?detail=1`` adds ``replies``, every reply's record, which ``kind=`` and
  ``state=`` narrow.
* ``GET /sim/handsets/{number}``: one handset: the texts it received (with
  ``accepted_ms`` and ``received_ms``, epoch ms, and ``from``), the texts its
  carrier filtered or cut (``filtered``) and those it dropped while saying
  "delivered" (``silently_dropped``; their ``received_ms`` is when they would
  have arrived), its replies (kind, body, ``posted_ms``, ``answered_ms``),
  ``opted_out_ms`` and its violations.
* ``GET /sim/handsets``: every handset that received a text or replied, in
  that form (``?replied=1``: only those that replied).

The report (``GET /sim/report``) carries the counts too, under ``replies``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.simulator.handsets import STATES
from worker.simulator.replies import REPLY_KINDS

if TYPE_CHECKING:
    from worker.simulator.engine import Simulator


def routes(sim: Simulator) -> list[Route]:
    handsets = sim.handsets

    async def replies(request: Request) -> Response:
        query = request.query_params
        kind, state = query.get("kind"), query.get("state")
        if kind is not None and kind not in REPLY_KINDS:
            return _bad(f"kind: expected one of {', '.join(REPLY_KINDS)}, got {kind!r}")
        if state is not None and state not in STATES:
            return _bad(f"state: expected one of {', '.join(STATES)}, got {state!r}")
        body: dict[str, Any] = handsets.summary()
        body["violating_texts"] = [v.as_json() for v in handsets.violations()]
        if query.get("detail") in ("1", "true", "yes"):
            body["replies"] = [
                r.as_json()
                for r in handsets.replies()
                if kind in (None, r.kind) and state in (None, r.state)
            ]
        return JSONResponse(body)

    async def one(request: Request) -> Response:
        return JSONResponse(handsets.handset(_number(request.path_params["number"])))

    async def every(request: Request) -> Response:
        replied = request.query_params.get("replied") in ("1", "true", "yes")
        numbers = handsets.numbers()
        views = [handsets.handset(n) for n in numbers if not replied or handsets.replies(n)]
        return JSONResponse({"count": len(views), "handsets": views})

    return [
        Route("/sim/replies", replies, methods=["GET"]),
        Route("/sim/handsets", every, methods=["GET"]),
        Route("/sim/handsets/{number}", one, methods=["GET"]),
    ]


def _number(raw: str) -> str:
    number = raw.strip()
    return "+" + number if number[:1].isdigit() else number  # "+" may arrive as a space


def _bad(reason: str) -> Response:
    return JSONResponse({"error": reason}, 400)
