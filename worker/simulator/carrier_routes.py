"""``/sim/carriers``: per carrier, what became of the texts providers accepted, and when.

* ``GET /sim/carriers``: ``{"t", "started_ms", "carriers": {carrier: counts}}``,
  the counts of ``GET /sim/report``'s ``by_carrier`` (carrier_log.py):
  ``accepted``, ``reached_handset``, ``silently_dropped``,
  ``undelivered_by_cut``, ``filtered``, ``receipts_due``,
  ``receipts_suppressed``, ``receipts_no_url``, ``receipts_posted``,
  ``receipts_failed``, and the inboxes' ``delivered`` and ``doubled``.
* ``GET /sim/carriers/{carrier}``: one carrier's counts.
* ``GET /sim/carriers/{carrier}/accepted``: the carrier's texts accepted in a
  window, by fate and receipt: ``{"carrier", "after_ms", "until_ms",
  "accepted", "reached_handset", "silently_dropped", "undelivered_by_cut",
  "filtered", "receipts_due", "receipts_suppressed", "receipts_no_url"}``.
  The window is ``after < accepted < until``, each bound given in Unix epoch
  ms (``after_ms``, ``until_ms``) or in seconds on the scenario clock
  (``after_s``, ``until_s``, as a rule's ``from_s``), either left open;
  ``times=1`` adds ``accepted_ms``, every acceptance time (epoch ms) in it.
  So "Verizon texts into the block that starts at 60 s" is
  ``/sim/carriers/verizon/accepted?after_s=60``.

A carrier the simulator does not know is a 404 naming the known ones; a bad
bound is a 400 naming the parameter.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.simulator.carriers import CARRIERS

if TYPE_CHECKING:
    from worker.simulator.engine import Simulator


class BadQuery(ValueError):
    """A query parameter that cannot be used; the message names it."""


def routes(sim: Simulator) -> list[Route]:
    async def every(request: Request) -> Response:
        report = sim.carrier_report()
        return JSONResponse({**_clock(sim), "carriers": report})

    async def one(request: Request) -> Response:
        carrier = request.path_params["carrier"]
        if carrier not in CARRIERS:
            return _unknown(carrier)
        return JSONResponse({"carrier": carrier, **sim.carrier_report()[carrier]})

    async def accepted(request: Request) -> Response:
        carrier = request.path_params["carrier"]
        if carrier not in CARRIERS:
            return _unknown(carrier)
        try:
            after = _bound(sim, request, "after", -math.inf)
            until = _bound(sim, request, "until", math.inf)
        except BadQuery as exc:
            return JSONResponse({"error": str(exc)}, 400)
        body: dict[str, Any] = {
            "carrier": carrier,
            "after_ms": _ms(after),
            "until_ms": _ms(until),
            **sim.carriers.window(carrier, after, until),
        }
        if request.query_params.get("times") in ("1", "true", "yes"):
            body["accepted_ms"] = [
                round(at * 1000) for at in sim.carriers.times(carrier, after, until)
            ]
        return JSONResponse(body)

    return [
        Route("/sim/carriers", every, methods=["GET"]),
        Route("/sim/carriers/{carrier}", one, methods=["GET"]),
        Route("/sim/carriers/{carrier}/accepted", accepted, methods=["GET"]),
    ]


def _bound(sim: Simulator, request: Request, name: str, unbounded: float) -> float:
    """A window's bound in Unix s, from ``{name}_ms`` (epoch) or ``{name}_s`` (scenario clock)."""
    query = request.query_params
    epoch_ms, clock_s = query.get(f"{name}_ms"), query.get(f"{name}_s")
    if epoch_ms is not None and clock_s is not None:
        raise BadQuery(f"give {name}_ms or {name}_s, not both")
    if epoch_ms is not None:
        return _number(f"{name}_ms", epoch_ms) / 1000
    if clock_s is not None:
        return sim.started_at + _number(f"{name}_s", clock_s)
    return unbounded


def _number(key: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise BadQuery(f"{key}: not a number, got {raw!r:.40}") from None
    if not math.isfinite(value):
        raise BadQuery(f"{key}: must be finite, got {raw!r:.40}")
    return value


def _ms(at: float) -> int | None:
    return round(at * 1000) if math.isfinite(at) else None


def _clock(sim: Simulator) -> dict[str, Any]:
    return {"t": round(sim.clock(), 3), "started_ms": round(sim.started_at * 1000)}


def _unknown(carrier: str) -> Response:
    known = ", ".join(CARRIERS)
    return JSONResponse({"error": f"unknown carrier {carrier!r}; expected one of {known}"}, 404)
