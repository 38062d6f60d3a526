"""The four signals, read from a campaign's cohort counts and put to the test. Pure.

Each signal is one event out of one exposure per cohort:

    signal     event                      out of               worse   cohorts used
    delivery   undelivered (within due)   final receipts       more    all in the window
    receipts   a final receipt (by now,   texts sent           fewer   first text past
               late ones too)                                          due_s (baseline:
                                                                       all of it)
    replies    replies (within lag)       delivered            fewer   all in the window
    optouts    opt-outs (within lag)      delivered            more    all in the window

Against the other carriers every cohort is compared with the same cohort of the
others, so a young cohort (receipts and replies still coming) is judged beside
cohorts just as young: no lag is needed there, which is what makes a silent
carrier show within seconds of its replies being due.

Receipts are tested as the share of a due cohort's texts that have a final
receipt, fewer being worse, and shown as the share still without one (overdue).
A stopped stream is then many events missing from the carrier's side (the
others' receipts) rather than a few extra on it, and each of the others'
receipts is evidence (about 0.28 nats at 0.7 / 0.05), so a stop shows within a
second or two of texts past due instead of the 70 to 100 texts the overdue
events needed (each worth at most log(1 / theta0) there). Late receipts count
(``late``: after due_s): a slow stream fills its cohorts in as it comes, and a
stopped one never does.

Against the carrier's own baseline (older, complete cohorts) only cohorts old
enough to be complete count: past ``due_s`` (delivery, receipts) or
``reply_lag_s`` (replies, opt-outs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from worker.watch.model import BASELINE_BUCKET_S, Counts, Layout, PairCounts, TripRecord
from worker.watch.sequential import (
    Decision,
    Result,
    Rules,
    Stratum,
    against_baseline,
    against_others,
)
from worker.watch.settings import WatchSettings

OTHERS = "others"
BASELINE = "baseline"


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    # "{rate}" and "{n}" are filled from the evidence; "{due}" from the settings.
    phrase: str
    event: Callable[[Counts], int]
    exposure: Callable[[Counts], int]
    # Delivery tests the undelivered share and shows the delivered one.
    shown_inverted: bool
    # How old a cohort must be, s, against the others and against the baseline.
    others_age: Callable[[Layout], float]
    baseline_age: Callable[[Layout], float]


def _due(layout: Layout) -> float:
    return layout.due_s


def _first_due(layout: Layout) -> float:
    """Old enough that the cohort's first text is due (its last is up to bucket_s
    younger): against the others, whose same cohort is just as old, that is fair,
    and it saves waiting a whole bucket_s after the due time to see a stop."""
    return max(0.0, layout.due_s - layout.bucket_s)


def _lag(layout: Layout) -> float:
    return layout.reply_lag_s


def _any_age(layout: Layout) -> float:
    return 0.0


MEASURES = (
    Measure(
        "delivery",
        "delivery rate {rate} over {n} receipts",
        lambda c: c.undelivered,
        lambda c: c.delivered + c.undelivered,
        True,
        _any_age,
        _due,
    ),
    Measure(
        "receipts",
        "receipts overdue (past {due} s) for {rate} of {n} sent",
        lambda c: min(c.receipted, c.sent),
        lambda c: c.sent,
        True,
        _first_due,
        _due,
    ),
    Measure(
        "replies",
        "reply rate {rate} over {n} delivered",
        lambda c: c.replies,
        lambda c: c.delivered,
        False,
        _any_age,
        _lag,
    ),
    Measure(
        "optouts",
        "opt-out rate {rate} over {n} delivered",
        lambda c: c.optouts,
        lambda c: c.delivered,
        False,
        _any_age,
        _lag,
    ),
)
SIGNALS = tuple(m.name for m in MEASURES)


@dataclass(frozen=True, slots=True)
class Comparison:
    """One test of the signal: the carrier against one reference, now."""

    reference: str  # "others" or "baseline"
    decision: Decision
    statistic: float
    threshold: float
    p_value: float
    evidence: str  # the run behind the statistic, "" when there is none


@dataclass(frozen=True, slots=True)
class SignalStatus:
    signal: str
    action: str
    # Over the window, as shown (delivery: the delivered share): the carrier's,
    # the other carriers', its own baseline's; None without texts.
    rate: float | None
    others_rate: float | None
    baseline_rate: float | None
    texts: int
    comparisons: tuple[Comparison, ...]
    decision: Decision
    evidence: str
    trip: TripRecord | None = None

    def tripping(self) -> Comparison | None:
        """The test that trips, the strongest if both do."""
        trips = [t for t in self.comparisons if t.decision is Decision.TRIP]
        return max(trips, key=lambda t: t.statistic - t.threshold) if trips else None


@dataclass(frozen=True, slots=True)
class PairStatus:
    carrier: str
    campaign: str
    signals: tuple[SignalStatus, ...]

    @property
    def name(self) -> str:
        return f"{self.carrier}:{self.campaign}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "carrier": self.carrier,
            "campaign": self.campaign,
            "signals": {s.signal: _signal_dict(s) for s in self.signals},
        }


def evaluate(pairs: Sequence[PairCounts], settings: WatchSettings, now_ms: int) -> list[PairStatus]:
    """Every carrier of one campaign against the others and against its baseline."""
    layout = Layout.of(settings)
    rules = Rules(settings.alpha, settings.window_s // settings.bucket_s, settings.min_texts)
    oldest = now_ms // 1000 - layout.window_s
    starts = sorted({b for p in pairs for b in p.buckets if b >= oldest})
    # The campaign's totals per cohort: the others are the totals less the carrier.
    totals = {m.name: _totals(m, pairs, starts) for m in MEASURES}
    senders = {m.name: {p.carrier for p in pairs if _exposed(m, p)} for m in MEASURES}
    out: list[PairStatus] = []
    for pair in sorted(pairs, key=lambda p: p.carrier):
        signals = tuple(
            _signal(
                m,
                pair,
                [b for b in starts if b * 1000 >= pair.since_for(m.name)],
                totals[m.name],
                sorted(senders[m.name] - {pair.carrier}),
                settings,
                rules,
                now_ms,
            )
            for m in MEASURES
        )
        out.append(PairStatus(pair.carrier, pair.campaign, signals))
    return out


def _signal(
    m: Measure,
    pair: PairCounts,
    starts: Sequence[int],
    totals: dict[int, tuple[int, int]],
    others: Sequence[str],
    settings: WatchSettings,
    rules: Rules,
    now_ms: int,
) -> SignalStatus:
    layout = Layout.of(settings)
    conf = settings.signal(m.name)
    hyp = conf.hypotheses()
    vs_others = _strata(m, pair, starts, totals, _aged(layout, m.others_age(layout), now_ms))
    tests: list[Comparison] = []
    if others:
        result = against_others(vs_others, hyp, rules)
        tests.append(_state(OTHERS, result, m, layout, _carriers(others)))
    base_k, base_n = _baseline(m, pair, layout, now_ms)
    if conf.baseline and layout.baseline_s:
        own = _strata(m, pair, starts, None, _aged(layout, m.baseline_age(layout), now_ms))
        result = against_baseline(own, base_k, base_n, hyp, rules)
        label = f"{pair.carrier}'s previous {layout.baseline_s // 60} min"
        tests.append(_state(BASELINE, result, m, layout, label))
    k1, n1 = sum(s.k1 for s in vs_others), sum(s.n1 for s in vs_others)
    k2, n2 = sum(s.k2 for s in vs_others), sum(s.n2 for s in vs_others)
    return SignalStatus(
        m.name,
        conf.action,
        _shown(m, k1, n1),
        _shown(m, k2, n2),
        _shown(m, base_k, base_n),
        n1,
        tuple(tests),
        _overall(tests),
        _strongest_evidence(tests),
    )


def _totals(
    m: Measure, pairs: Sequence[PairCounts], starts: Sequence[int]
) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for b in starts:
        k = n = 0
        for p in pairs:
            c = p.buckets.get(b)
            if c is not None:
                k, n = k + m.event(c), n + m.exposure(c)
        out[b] = (k, n)
    return out


def _exposed(m: Measure, pair: PairCounts) -> bool:
    return any(m.exposure(c) for c in pair.buckets.values())


def _aged(layout: Layout, age_s: float, now_ms: int) -> Callable[[int], bool]:
    def old_enough(start_s: int) -> bool:
        return (start_s + layout.bucket_s) * 1000 <= now_ms - age_s * 1000

    return old_enough


def _strata(
    m: Measure,
    pair: PairCounts,
    starts: Sequence[int],
    totals: dict[int, tuple[int, int]] | None,
    aged: Callable[[int], bool],
) -> list[Stratum]:
    """The carrier's cohorts, oldest first, each beside the others' (None: without)."""
    empty = Counts()
    out: list[Stratum] = []
    for b in starts:
        if not aged(b):
            continue
        c = pair.buckets.get(b, empty)
        k1, n1 = m.event(c), m.exposure(c)
        tk, tn = totals[b] if totals is not None else (k1, n1)
        out.append(Stratum(k1, n1, tk - k1, tn - n1))
    return out


def _baseline(m: Measure, pair: PairCounts, layout: Layout, now_ms: int) -> tuple[int, int]:
    """The baseline's events and exposure: whole minutes before the window."""
    window_start = now_ms // 1000 - layout.window_s
    oldest = window_start - layout.baseline_s
    k = n = 0
    for start, c in pair.baseline.items():
        if start >= oldest and start + BASELINE_BUCKET_S <= window_start:
            k, n = k + m.event(c), n + m.exposure(c)
    return k, n


def _state(reference: str, r: Result, m: Measure, layout: Layout, label: str) -> Comparison:
    text = evidence(m, r, layout, label) if r.n1 else ""
    return Comparison(reference, r.decision, r.statistic, r.threshold, r.p_value, text)


def evidence(m: Measure, r: Result, layout: Layout, reference: str) -> str:
    """E.g. "reply rate 0.0% over 412 delivered vs 4.1% on att and tmobile (p < 0.001)"."""
    mine = m.phrase.format(rate=_percent(_shown(m, r.k1, r.n1)), n=r.n1, due=f"{layout.due_s:g}")
    theirs = _percent(_shown(m, r.k2, r.n2))
    return f"{mine} vs {theirs} on {reference} ({_p(r.p_value)})"


def _shown(m: Measure, k: int, n: int) -> float | None:
    if n <= 0:
        return None
    rate = min(k, n) / n
    return 1.0 - rate if m.shown_inverted else rate


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def _carriers(names: Sequence[str]) -> str:
    ordered = sorted(names)
    if len(ordered) == 1:
        return ordered[0]
    return ", ".join(ordered[:-1]) + " and " + ordered[-1]


def _overall(tests: Sequence[Comparison]) -> Decision:
    if any(t.decision is Decision.TRIP for t in tests):
        return Decision.TRIP
    if all(t.decision is Decision.CLEAR for t in tests):
        return Decision.CLEAR
    return Decision.CONTINUE


def _strongest_evidence(tests: Sequence[Comparison]) -> str:
    with_runs = [t for t in tests if t.evidence]
    if not with_runs:
        return ""
    return max(with_runs, key=lambda t: t.statistic - t.threshold).evidence


def _signal_dict(s: SignalStatus) -> dict[str, Any]:
    return {
        "action": s.action,
        "rate": s.rate,
        "others_rate": s.others_rate,
        "baseline_rate": s.baseline_rate,
        "texts": s.texts,
        "decision": s.decision.value,
        "evidence": s.evidence,
        "comparisons": [
            {
                "reference": t.reference,
                "decision": t.decision.value,
                "statistic": round(t.statistic, 3),
                "threshold": round(t.threshold, 3),
                "p_value": t.p_value,
                "evidence": t.evidence,
            }
            for t in s.comparisons
        ],
        "tripped": None
        if s.trip is None
        else {"at_ms": s.trip.at_ms, "evidence": s.trip.evidence, "action": s.trip.action},
    }
