"""A small client for a running simulator's ``/sim/*`` routes, for tests and benchmarks.

    sim = SimulatorClient("http://127.0.0.1:8700")
    sim.play({"replies": {"rate": 0.1, "kinds": {"stop": 1}}})   # scenario + reset
    ... run sendq ...
    summary = sim.settle_replies()            # waits until no reply is pending
    assert summary["violations"] == 0, sim.violations()
    for text in sim.handset("+12125550123")["texts"]:
        text["received_ms"]                   # check it against quiet hours

    sim.play({"rules": [{"carrier": "verizon", "from_s": 60, "silent": True}]})
    ... run sendq ...
    sim.accepted("verizon", after_s=60)["accepted"]   # texts into the block
    sim.carriers()["verizon"]["silently_dropped"]    # the same, counted as they came
    sim.settle_receipts()                     # waits until no receipt is pending

The shapes are the JSON of reply_routes.py and carrier_routes.py; the
TypedDicts below name them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypedDict, cast

import httpx

SETTLE_POLL_S = 0.05

HandsetText = TypedDict(
    "HandsetText",
    {
        "sid": str,
        "from": str,  # sendq's number that sent it
        "body": str,
        "provider": str,
        "carrier": str,
        "accepted_ms": int,  # the provider accepted the send request (epoch ms)
        "received_ms": int,  # it reached the handset (the same moment, in the simulator)
    },
)
ReplyRecord = TypedDict(
    "ReplyRecord",
    {
        "id": str,
        "provider": str,
        "from": str,  # the handset
        "to": str,  # sendq's number it answers
        "carrier": str,
        "kind": str,  # ordinary, stop, possible, help, start
        "body": str,
        "in_reply_to": str,
        "url": str,
        "due_ms": int,
        "posted_ms": "int | None",  # first attempt
        "answered_ms": "int | None",  # sendq's webhook answered 2xx
        "status": "int | None",
        "tries": int,
        "state": str,  # pending, answered, refused, failed
    },
)
Violation = TypedDict(
    "Violation",
    {
        "handset": str,
        "sid": str,
        "from": str,
        "body": str,
        "provider": str,
        "filtered": bool,
        "accepted_ms": int,
        "opt_out_kind": str,  # stop or possible
        "opt_out_body": str,
        "opted_out_ms": int,
        "after_ms": float,  # accepted_ms - opted_out_ms
    },
)


class HandsetView(TypedDict):
    number: str
    carrier: str
    texts: list[HandsetText]
    filtered: list[HandsetText]  # filtered with an error code, or cut by deliver_share
    silently_dropped: list[HandsetText]  # "delivered", never arrived
    replies: list[ReplyRecord]
    opted_out_ms: int | None
    confirmations: int
    violations: list[Violation]


class CarrierCounts(TypedDict):
    """One carrier's texts since the last reset (carrier_log.py)."""

    accepted: int
    reached_handset: int
    silently_dropped: int
    undelivered_by_cut: int
    filtered: int
    receipts_due: int
    receipts_suppressed: int
    receipts_no_url: int
    receipts_posted: int  # of those due: answered below 400
    receipts_failed: int
    delivered: int  # copies that arrived (= reached_handset)
    doubled: int


class AcceptedWindow(TypedDict, total=False):
    """A carrier's texts accepted in ``after < accepted < until``."""

    carrier: str
    after_ms: int | None
    until_ms: int | None
    accepted: int
    reached_handset: int
    silently_dropped: int
    undelivered_by_cut: int
    filtered: int
    receipts_due: int
    receipts_suppressed: int
    receipts_no_url: int
    accepted_ms: list[int]  # with times=True only


class SimulatorClient:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def play(self, scenario: Mapping[str, Any]) -> None:
        """Replace the scenario and reset (empty inboxes, no replies, clock at 0)."""
        self._http.post("/sim/scenario", json=dict(scenario)).raise_for_status()
        self.reset()

    def reset(self) -> None:
        self._http.post("/sim/reset").raise_for_status()

    def report(self) -> dict[str, Any]:
        return self._get("/sim/report")

    def replies(
        self, *, detail: bool = False, kind: str | None = None, state: str | None = None
    ) -> dict[str, Any]:
        """The counts (see Handsets.summary), ``violating_texts``, and with ``detail``
        every reply (``replies``), narrowed by ``kind`` and ``state``."""
        params = {"detail": "1"} if detail else {}
        params |= {k: v for k, v in (("kind", kind), ("state", state)) if v is not None}
        return self._get("/sim/replies", params)

    def violations(self) -> list[Violation]:
        return cast(list[Violation], self.replies()["violating_texts"])

    def handset(self, number: str) -> HandsetView:
        return cast(HandsetView, self._get(f"/sim/handsets/{number}"))

    def handsets(self, *, replied: bool = False) -> list[HandsetView]:
        found = self._get("/sim/handsets", {"replied": "1"} if replied else {})
        return cast(list[HandsetView], found["handsets"])

    def carriers(self) -> dict[str, CarrierCounts]:
        """Every carrier's counts (the report's ``by_carrier``)."""
        return cast(dict[str, CarrierCounts], self._get("/sim/carriers")["carriers"])

    def accepted(
        self,
        carrier: str,
        *,
        after_ms: float | None = None,
        until_ms: float | None = None,
        after_s: float | None = None,
        until_s: float | None = None,
        times: bool = False,
    ) -> AcceptedWindow:
        """The carrier's texts accepted after/until a time: epoch ms, or scenario-clock s."""
        bounds = {
            "after_ms": after_ms,
            "until_ms": until_ms,
            "after_s": after_s,
            "until_s": until_s,
        }
        params = {key: repr(value) for key, value in bounds.items() if value is not None}
        if times:
            params["times"] = "1"
        return cast(AcceptedWindow, self._get(f"/sim/carriers/{carrier}/accepted", params))

    def settle_receipts(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait until no receipt is due or in flight; the report then."""
        deadline = time.monotonic() + timeout_s
        while (report := self.report())["receipts_pending"]:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{report['receipts_pending']} receipts still pending after {timeout_s} s"
                )
            time.sleep(SETTLE_POLL_S)
        return report

    def settle_replies(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Wait until no reply is due or in flight; the counts then."""
        deadline = time.monotonic() + timeout_s
        while True:
            summary = self.replies()
            if not summary["pending"]:
                return summary
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{summary['pending']} replies still pending after {timeout_s} s"
                )
            time.sleep(SETTLE_POLL_S)

    def _get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        response = self._http.get(path, params=params)
        response.raise_for_status()
        return cast(dict[str, Any], response.json())

    def __enter__(self) -> SimulatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
