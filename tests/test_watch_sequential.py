"""The watch's test alone: its guarantees as properties, and its targets by simulation.

The simulation sends texts one by one (carrier, receipt delay, reply, opt-out),
counts each event in its cohort exactly as worker/watch/counters.py does
(``counter_for``), and evaluates the campaign every bucket as a check round
would, with the default ``[watch]`` settings. No Redis: signals.evaluate and the
test are pure.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.watch.model import BASELINE_BUCKET_S, Counts, Layout, PairCounts, counter_for
from worker.watch.sequential import (
    Decision,
    Hypotheses,
    Rules,
    Stratum,
    against_baseline,
    against_others,
    conditional_llr,
    cusum,
)
from worker.watch.settings import WatchSettings
from worker.watch.signals import evaluate

Z99 = 2.3263478740408408
EPOCH_MS = 1_700_000_040_000  # a whole minute, so cohorts line up as in production
REPLIES = Hypotheses(0.75, 0.05)
DELIVERY = Hypotheses(3.0, 15.0)


# --- the statistics' own guarantees ------------------------------------------------


@given(st.lists(st.floats(-5, 5, allow_nan=False), max_size=60))
def test_the_cusum_is_the_best_sum_of_a_stretch_ending_now(llrs: list[float]) -> None:
    statistic, start = cusum(llrs)
    suffixes = [sum(llrs[i:]) for i in range(len(llrs))]
    assert statistic == pytest.approx(max([0.0, *suffixes]), abs=1e-9)
    if statistic > 0:
        assert sum(llrs[start:]) == pytest.approx(statistic, abs=1e-9)


@given(
    n1=st.integers(1, 300),
    n2=st.integers(1, 600),
    events=st.integers(1, 40),
)
@settings(max_examples=200)
def test_with_equal_rates_the_likelihood_ratio_is_a_fair_bet_at_most(
    n1: int, n2: int, events: int
) -> None:
    """Given K events, the carrier's share is hypergeometric when rates are equal;
    the test's likelihood ratio then has expectation at most 1 (a supermartingale
    step), which is what makes every look safe (Ville's inequality)."""
    hyp = Hypotheses(1.0, 4.0)
    k_total = min(events, n1 + n2)
    expectation = 0.0
    for k1 in range(max(0, k_total - n2), min(n1, k_total) + 1):
        weight = math.comb(n1, k1) * math.comb(n2, k_total - k1) / math.comb(n1 + n2, k_total)
        expectation += weight * math.exp(conditional_llr(Stratum(k1, n1, k_total - k1, n2), hyp))
    assert expectation <= 1 + 1e-9


@given(
    strata=st.lists(
        st.tuples(st.integers(0, 5), st.integers(0, 60), st.integers(0, 10), st.integers(0, 120)),
        min_size=1,
        max_size=30,
    )
)
def test_another_carrier_reply_never_makes_the_evidence_stronger(
    strata: list[tuple[int, int, int, int]],
) -> None:
    rows = [Stratum(min(k1, n1), n1, min(k2, n2), n2) for k1, n1, k2, n2 in strata]
    rules = Rules(0.01, 180, 1)
    before = against_others(rows, REPLIES, rules).statistic
    last = rows[-1]
    more = [*rows[:-1], Stratum(last.k1 + 1, last.n1 + 1, last.k2, last.n2)]
    assert against_others(more, REPLIES, rules).statistic <= before + 1e-9


def test_repeated_looks_at_a_carrier_on_the_edge_of_normal_stay_within_alpha() -> None:
    """A carrier exactly at ok_ratio, looked at after every cohort for a whole window:
    the share of windows with a trip stays below alpha (it is a bound: far below)."""
    rng = random.Random(7)
    rules = Rules(alpha=0.05, starts=120, min_texts=1)
    windows, tripped = 150, 0
    for _ in range(windows):
        rows: list[Stratum] = []
        for _ in range(rules.starts):
            n1, n2 = 30, 60
            k1 = _binomial(rng, n1, 0.04 * REPLIES.ok_ratio)
            k2 = _binomial(rng, n2, 0.04)
            rows.append(Stratum(k1, n1, k2, n2))
            if against_others(rows, REPLIES, rules).decision is Decision.TRIP:
                tripped += 1
                break
    assert tripped / windows <= rules.alpha


def test_a_stark_difference_needs_little_evidence_and_a_slight_one_much_more() -> None:
    rules = Rules(0.01, 180, 30)
    needed = {
        delivered: _texts_to_trip(DELIVERY, rules, undelivered=1 - delivered)
        for delivered in (0.2, 0.5, 0.8)
    }
    assert needed[0.2] < needed[0.5] < needed[0.8]
    assert needed[0.2] <= 60  # a handful of cohorts
    assert needed[0.8] >= 2 * needed[0.2]
    silent = _texts_to_trip(REPLIES, rules, reply=0.0)
    a_tenth = _texts_to_trip(REPLIES, rules, reply=0.004)
    assert silent < a_tenth


def test_a_baseline_that_never_saw_an_event_still_tests_with_a_floor() -> None:
    rules = Rules(0.01, 180, 30)
    quiet = [Stratum(0, 50)] * 10
    assert against_baseline(quiet, 0, 5000, DELIVERY, rules).decision is Decision.CLEAR
    failing = [Stratum(25, 50)] * 10
    result = against_baseline(failing, 0, 5000, DELIVERY, rules)
    assert result.decision is Decision.TRIP
    assert (result.k1, result.n1) == (250, 500)


def test_hypotheses_that_point_nowhere_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"ok_ratio 0\.5 and bad_ratio 2"):
        Hypotheses(0.5, 2.0)


def _texts_to_trip(
    hyp: Hypotheses, rules: Rules, *, undelivered: float = 0.02, reply: float = 0.04
) -> int:
    """Cohorts of 10 texts (others: 20) until a trip; the event is the test's own."""
    rng = random.Random(3)
    rows: list[Stratum] = []
    for i in range(1, 1000):
        rate = undelivered if not hyp.fewer_is_worse else reply
        base = 0.02 if not hyp.fewer_is_worse else 0.04
        rows.append(Stratum(_binomial(rng, 10, rate), 10, _binomial(rng, 20, base), 20))
        if against_others(rows[-rules.starts :], hyp, rules).decision is Decision.TRIP:
            return i * 10
    return 10_000


def _binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


# --- the simulation ----------------------------------------------------------------


@dataclass(frozen=True)
class Carrier:
    name: str
    undelivered: float = 0.015
    reply: float = 0.04
    optout: float = 0.005


@dataclass(frozen=True)
class Fault:
    carrier: str
    from_s: float
    kind: str  # "silent", "cut" (delivered share = value), "no_receipts", "optouts"
    value: float = 0.0


NORMAL = (
    Carrier("att", undelivered=0.010, reply=0.035, optout=0.004),
    Carrier("tmobile", undelivered=0.015, reply=0.040, optout=0.005),
    Carrier("verizon", undelivered=0.020, reply=0.045, optout=0.006),
)


@dataclass
class Run:
    trips: list[tuple[float, str, str, str, str]] = field(default_factory=list)
    # The largest statistic over threshold seen, per (signal, reference).
    closest: dict[tuple[str, str], float] = field(default_factory=dict)
    faulty_texts: int = 0  # the faulty carrier's texts from the fault to the first trip
    seconds: float = 0.0


def lognormal_s(rng: random.Random, median_s: float, p99_s: float) -> float:
    return median_s * math.exp(math.log(p99_s / median_s) / Z99 * rng.gauss(0, 1))


def simulate(
    seed: int,
    texts: int,
    rate_per_s: float,
    carriers: Sequence[Carrier] = NORMAL,
    fault: Fault | None = None,
    watch: WatchSettings | None = None,
) -> Run:
    """Send ``texts`` at ``rate_per_s``, evaluating every bucket; stops at the fault's trip."""
    conf = watch or WatchSettings()
    layout = Layout.of(conf)
    rng = random.Random(seed)
    events = _events(rng, texts, rate_per_s, carriers, fault)
    pairs = {c.name: PairCounts(c.name, "gotv", {}, {}) for c in carriers}
    run, i = Run(), 0
    look_ms, end_ms = EPOCH_MS, events[-1][0]
    while look_ms <= end_ms:
        look_ms += conf.bucket_s * 1000
        while i < len(events) and events[i][0] <= look_ms:
            _count(layout, pairs, *events[i])
            i += 1
        if _look(run, conf, pairs, look_ms, fault):
            run.faulty_texts = _faulty_texts(events, fault, look_ms)
            break
    return run


def _events(
    rng: random.Random,
    texts: int,
    rate_per_s: float,
    carriers: Sequence[Carrier],
    fault: Fault | None,
) -> list[tuple[int, int, str, str, bool]]:
    """(at_ms, sent_ms, carrier, event, delivered), in time order."""
    out: list[tuple[int, int, str, str, bool]] = []
    for n in range(texts):
        sent = EPOCH_MS + int(n * 1000 / rate_per_s)
        c = rng.choice(carriers)
        faulty = fault is not None and c.name == fault.carrier
        kind = fault.kind if faulty and sent >= EPOCH_MS + fault.from_s * 1000 else ""
        out.append((sent, sent, c.name, "sent", True))
        if kind == "no_receipts" or rng.random() < 0.001:  # a few receipts never come
            continue
        receipt = sent + int(1000 * lognormal_s(rng, 5, 60))
        undelivered = 1 - (1 - c.undelivered) * (fault.value if kind == "cut" else 1)
        delivered = rng.random() >= undelivered
        out.append((receipt, sent, c.name, "receipt", delivered))
        if not delivered:
            continue
        if kind != "silent" and rng.random() < c.reply:
            out.append((receipt + int(1000 * lognormal_s(rng, 4, 60)), sent, c.name, "reply", True))
        optout = fault.value if kind == "optouts" else c.optout
        if kind != "silent" and rng.random() < optout:
            at = receipt + int(1000 * lognormal_s(rng, 4, 60))
            out.append((at, sent, c.name, "optout", True))
    out.sort()
    return out


def _count(
    layout: Layout,
    pairs: dict[str, PairCounts],
    at_ms: int,
    sent_ms: int,
    carrier: str,
    event: str,
    delivered: bool,
) -> None:
    counter = counter_for(layout, event, sent_ms, at_ms, delivered)
    if counter is None:
        return
    at_s = sent_ms // 1000
    pair = pairs[carrier]
    for buckets, size in ((pair.buckets, layout.bucket_s), (pair.baseline, BASELINE_BUCKET_S)):
        counts = buckets.setdefault(at_s - at_s % size, Counts())
        setattr(counts, counter, getattr(counts, counter) + 1)


def _look(
    run: Run,
    conf: WatchSettings,
    pairs: dict[str, PairCounts],
    now_ms: int,
    fault: Fault | None,
) -> bool:
    """One check round; True when the fault's carrier tripped on the fault's signal."""
    for pair in evaluate(list(pairs.values()), conf, now_ms):
        for s in pair.signals:
            for t in s.comparisons:
                key = (s.signal, t.reference)
                run.closest[key] = max(run.closest.get(key, -99.0), t.statistic - t.threshold)
            if s.decision is Decision.TRIP:
                run.trips.append((now_ms / 1000, pair.carrier, s.signal, s.evidence, ""))
                if fault and pair.carrier == fault.carrier and s.signal == _signal_of(fault):
                    run.seconds = (now_ms - EPOCH_MS) / 1000 - fault.from_s
                    return True
    return False


def _signal_of(fault: Fault) -> str:
    return {"silent": "replies", "cut": "delivery", "no_receipts": "receipts"}.get(
        fault.kind, "optouts"
    )


def _faulty_texts(
    events: list[tuple[int, int, str, str, bool]], fault: Fault | None, now: int
) -> int:
    if fault is None:
        return 0
    start = EPOCH_MS + fault.from_s * 1000
    return sum(
        1 for at, _, c, e, _ in events if e == "sent" and c == fault.carrier and start <= at <= now
    )


# --- the targets -------------------------------------------------------------------

SEEDS = range(5)
RATE_PER_S = 25.0  # the campaign's texts a second; a third of them to each carrier


@pytest.mark.parametrize("seed", SEEDS)
def test_a_normal_run_of_50000_texts_trips_nothing(seed: int) -> None:
    run = simulate(seed, 50_000, RATE_PER_S)
    assert run.trips == []
    # And not by a hair: every test stays well short of its threshold.
    assert max(run.closest.values()) < -1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_a_carrier_whose_replies_stop_is_caught_within_500_of_its_texts(seed: int) -> None:
    """The issue's target: a 5% base reply rate, receipts still saying delivered."""
    run = simulate(seed, 60_000, RATE_PER_S, _replying(0.05), Fault("verizon", 1800, "silent"))
    assert 0 < run.faulty_texts <= 500
    assert [t for t in run.trips if t[1] != "verizon"] == []


@pytest.mark.parametrize(("base", "within"), [(0.04, 800), (0.03, 1000)])
def test_at_a_lower_reply_rate_a_silent_carrier_takes_more_texts(base: float, within: int) -> None:
    """Fewer replies carry less evidence a text: about 700 texts at 4%, 830 at 3%."""
    run = simulate(1, 60_000, RATE_PER_S, _replying(base), Fault("verizon", 1800, "silent"))
    assert 0 < run.faulty_texts <= within


def _replying(base: float) -> list[Carrier]:
    return [Carrier(c.name, c.undelivered, base, c.optout) for c in NORMAL]


def test_a_silent_carrier_from_the_campaign_start_is_caught_without_a_baseline() -> None:
    run = simulate(1, 20_000, RATE_PER_S, fault=Fault("verizon", 0, "silent"))
    assert 0 < run.faulty_texts <= 700


def test_delivery_quietly_cut_to_half_is_caught_within_300_of_its_texts() -> None:
    for seed in range(3):
        run = simulate(seed, 60_000, RATE_PER_S, fault=Fault("tmobile", 1800, "cut", 0.5))
        assert 0 < run.faulty_texts <= 300


def test_receipts_that_stop_are_caught_soon_after_they_are_due() -> None:
    conf = WatchSettings()
    run = simulate(2, 60_000, RATE_PER_S, fault=Fault("att", 1800, "no_receipts"), watch=conf)
    # Due time, plus one cohort to fill, one round to look, and a little evidence.
    assert 0 < run.seconds <= conf.due_s + conf.bucket_s + 2 * conf.check_s + 5


def test_an_optout_spike_is_caught() -> None:
    """Opt-outs are rare, so even 8 times the others' rate takes about a thousand texts."""
    run = simulate(3, 60_000, RATE_PER_S, fault=Fault("verizon", 1800, "optouts", 0.04))
    assert 0 < run.faulty_texts <= 1200


def test_a_stopped_receipt_stream_trips_on_a_second_of_texts_past_due() -> None:
    """Receipts are tested as the on-time share: each of the others' on-time receipts
    is evidence, so 40 of a stopped carrier's texts (two 1 s cohorts at 20 a second)
    beside the others' 95% on time trip, where counting its overdue texts as the
    events (ratios 5 and 30) needed some 75."""
    conf = WatchSettings(bucket_s=1)
    hyp = conf.receipts.hypotheses()
    rules = Rules(conf.alpha, conf.window_s // conf.bucket_s, conf.min_texts)
    stopped = [Stratum(0, 20, 38, 40)] * 2
    assert against_others(stopped, hyp, rules).decision is Decision.TRIP
    as_overdue = Hypotheses(5.0, 30.0)
    overdue = [Stratum(20, 20, 2, 40)] * 2
    assert against_others(overdue, as_overdue, rules).decision is Decision.CONTINUE


def test_a_carrier_whose_receipts_are_as_prompt_as_the_others_shows_no_evidence() -> None:
    conf = WatchSettings()
    rules = Rules(conf.alpha, conf.window_s // conf.bucket_s, conf.min_texts)
    normal = [Stratum(95, 100, 190, 200)] * 20
    assert against_others(normal, conf.receipts.hypotheses(), rules).decision is Decision.CLEAR
