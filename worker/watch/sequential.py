"""The watch's test: is this carrier worse than its reference? Sequential and pure.

**What is tested.** For one carrier x campaign and one signal, texts are grouped in
cohorts: the texts sent in the same ``bucket_s``. A cohort has the carrier's ``k1``
events out of ``n1`` texts (replies out of delivered, undelivered out of final
receipts, on-time receipts out of sent, opt-outs out of delivered) beside a reference: the
other carriers of the same campaign in the same cohort (``k2`` of ``n2``), or the
carrier's own rate over the ``baseline_s`` before the window.

- H0, normal: the carrier's rate is ``ok_ratio`` times the reference's, or better.
  Carriers differ a little (people on one answer 3.5%, on another 4.5%).
- H1, filtered: it is ``bad_ratio`` times the reference's (replies: a twentieth).

**Against the other carriers**, each cohort gives a conditional likelihood ratio.
Given that K = k1 + k2 events happened in the cohort, each is the carrier's with
probability theta(r) = r*n1 / (r*n1 + n2) when the carrier's rate is r times the
others' (the classical conditioning for two Poisson rates, as in Kulldorff's
MaxSPRT for drug-safety surveillance). The others' own rate drops out, so nothing
is estimated, and comparing cohort with cohort means that a young cohort, whose
receipts and replies are still coming, weighs the same on both sides:

    llr = k1 * log(theta1 / theta0) + k2 * log((1 - theta1) / (1 - theta0))

with theta0 = theta(ok_ratio) and theta1 = theta(bad_ratio).

**Against its own baseline**, the baseline's rate q is taken at its Wilson bound
(z = 2) on the side that makes the carrier look better, and treated as known: each
cohort gives the binomial log-likelihood ratio of p1 = bad_ratio*q against
p0 = ok_ratio*q. Only cohorts old enough to be complete are used (past ``due_s``,
or ``reply_lag_s`` for replies and opt-outs), as the baseline's are.

**Sequential, with a change point: Page's CUSUM.** S = max(0, S + llr) over the
window's cohorts, oldest first: the strongest evidence of any stretch of cohorts
ending now. It is Wald's SPRT restarted whenever the evidence falls back to
nothing, so a carrier that goes bad after hours of good traffic is judged on the
cohorts since, not diluted by the hours before. The test **trips** when

    S >= h = log(B / alpha),    B = window_s / bucket_s

and the stretch holds at least ``min_texts`` of the carrier's texts and of its
reference's. It **clears** when S = 0 (no stretch shows any evidence), and
otherwise **continues**. The stretch's counts are the evidence, e.g. "reply rate
0.0% over 412 delivered vs 4.1% on att and tmobile (p < 0.001)".

**Why looking every few seconds keeps the false-alarm rate.** For a stretch
starting at a given cohort, the running product of the cohorts' likelihood ratios
is a nonnegative supermartingale under H0, for any rate on the normal side of
ok_ratio. By Ville's inequality it ever reaches 1/a with probability at most a,
however often it is looked at and however the counts grow between looks. S >= h
means some start's product reached e^h; a window has at most B starts, so a false
trip starting within any window has probability at most B * e^-h = alpha. The p
value shown is that bound, p = min(1, B * e^-S), valid at any look. Where the
test approximates, it errs towards "normal": with equal rates the exact null law
of k1 (hypergeometric) is less spread than the binomial the ratio assumes, so the
ratio's expectation is at most 1; the baseline's bound leans towards "fine".

**Evidence needed.** Each event is worth a bounded amount, so a stark difference
takes few texts and a slight one many. Simulated (3 carriers, 25 texts a second,
receipts lognormal with median 5 s and p99 60 s), counting the carrier's texts from
the fault to the trip, the replies' and receipts' own delays included: half its
texts undelivered, about 170; 80% delivered, about 330; replies stop at a 5% base
rate, about 490 (at 4%, 700; at 3%, 830); receipts stop, at due_s (looked at once a
cohort). Information sets the floor: a silent carrier's n delivered texts carry at
most n * -log(1 - ok_ratio * q) nats, so at q = 3% even a perfect test needs 430
texts to reach h = 9.8. Between ok_ratio and bad_ratio lies the indifference point: a
carrier worse than it is caught, one better never is (replies at 0.75 / 0.05:
about a quarter of the others' rate; undelivered at 3 / 15: about 6 times).

**Parameters** (``[watch]``): ``alpha`` (0.01: at most one false trip per 100
windows per test for a carrier exactly at ok_ratio; normal carriers sit inside and
trip far less: over 5 x 50,000 simulated normal texts the largest S was 7.2
against h = 9.8), ``ok_ratio`` and ``bad_ratio`` per signal (H0 and H1),
``min_texts`` (the least evidence for any trip), ``bucket_s`` and ``window_s`` (the
cohort, and how far back a stretch may start: B), ``baseline_s``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

# Rates are kept inside (0, 1) so every log is finite: a reference that never saw an
# event still has a floor (see safe_rate), and a certainty costs a finite amount.
_EPSILON = 1e-9
# How far the baseline's rate is taken towards "the carrier is fine" (its Wilson
# score bound), so the baseline's own noise makes the test stricter, never looser.
BASELINE_Z = 2.0


class Decision(StrEnum):
    CONTINUE = "continue"  # some evidence, not enough: keep counting
    TRIP = "trip"  # enough evidence that the carrier is worse
    CLEAR = "clear"  # no stretch of the window shows any evidence against it


@dataclass(frozen=True, slots=True)
class Stratum:
    """One cohort of texts (sent in the same time bucket): the carrier beside its reference.

    ``k`` events (replies, undelivered receipts, ...) out of ``n`` texts that could
    have had one; ``1`` the carrier, ``2`` the other carriers of the campaign, same cohort.
    """

    k1: int
    n1: int
    k2: int = 0
    n2: int = 0


@dataclass(frozen=True, slots=True)
class Hypotheses:
    """The carrier's rate over its reference's: ``ok_ratio`` is still normal (H0),
    ``bad_ratio`` is what the test is tuned to catch (H1).

    ``bad_ratio < ok_ratio <= 1``: fewer events is worse (replies, on-time receipts);
    ``1 <= ok_ratio < bad_ratio``: more events is worse (undelivered, opt-outs).
    """

    ok_ratio: float
    bad_ratio: float

    def __post_init__(self) -> None:
        lower = 0 < self.bad_ratio < self.ok_ratio <= 1
        higher = 1 <= self.ok_ratio < self.bad_ratio
        if not (lower or higher):
            raise ValueError(
                f"ok_ratio {self.ok_ratio} and bad_ratio {self.bad_ratio}: need "
                "0 < bad < ok <= 1 (fewer is worse) or 1 <= ok < bad (more is worse)"
            )

    @property
    def fewer_is_worse(self) -> bool:
        return self.bad_ratio < self.ok_ratio


@dataclass(frozen=True, slots=True)
class Rules:
    """``alpha``: false trips per window; ``starts``: the strata a run may start at in
    one window; ``min_texts``: texts a trip needs, the carrier's and the reference's."""

    alpha: float
    starts: int
    min_texts: int

    @property
    def threshold(self) -> float:
        """h = log(starts / alpha), in nats: the union bound over a window's starts."""
        return math.log(max(self.starts, 1) / self.alpha)

    def p_value(self, statistic: float) -> float:
        return min(1.0, max(self.starts, 1) * math.exp(-statistic))


@dataclass(frozen=True, slots=True)
class Result:
    """The test's state now. The run is the stretch of newest strata behind the
    statistic (empty when it is 0); its counts are the evidence."""

    decision: Decision
    statistic: float
    threshold: float
    p_value: float
    k1: int = 0
    n1: int = 0
    k2: int = 0
    n2: int = 0
    strata: int = 0

    @property
    def rate(self) -> float | None:
        return self.k1 / self.n1 if self.n1 else None

    @property
    def reference_rate(self) -> float | None:
        return self.k2 / self.n2 if self.n2 else None


def against_others(strata: Sequence[Stratum], hyp: Hypotheses, rules: Rules) -> Result:
    """Is the carrier worse than the other carriers of its campaign, cohort by cohort?

    Strata are oldest first. Each contributes its conditional log-likelihood ratio
    (see the module docstring); a CUSUM keeps the best run ending now.
    """
    llrs = [conditional_llr(s, hyp) for s in strata]
    statistic, start = cusum(llrs)
    run = strata[start:]
    k2, n2 = sum(s.k2 for s in run), sum(s.n2 for s in run)
    return _result(statistic, run, k2, n2, rules)


def against_baseline(
    strata: Sequence[Stratum], base_k: int, base_n: int, hyp: Hypotheses, rules: Rules
) -> Result:
    """Is the carrier worse now than over its own baseline (``base_k`` of ``base_n``)?

    Only the strata's ``k1``/``n1`` are read. The baseline's rate is taken at its
    Wilson bound on the carrier's side (``safe_rate``) and treated as known.
    """
    if base_n < rules.min_texts:  # no baseline yet: no evidence either way
        return _result(0.0, [], base_k, base_n, rules)
    q = safe_rate(base_k, base_n, upper=not hyp.fewer_is_worse)
    p0, p1 = _clip(hyp.ok_ratio * q), _clip(hyp.bad_ratio * q)
    llrs = [binomial_llr(min(s.k1, s.n1), s.n1, p0, p1) for s in strata]
    statistic, start = cusum(llrs)
    return _result(statistic, strata[start:], base_k, base_n, rules)


def conditional_llr(s: Stratum, hyp: Hypotheses) -> float:
    """log LR of H1 vs H0 for one stratum, given its K = k1 + k2 events.

    With rare events each one, given that it happened, is the carrier's with
    probability theta(r) = r*n1 / (r*n1 + n2) when the carrier's rate is r times
    the others' (the two-Poisson conditioning), whatever the others' rate is.
    """
    if s.n1 <= 0 or s.n2 <= 0 or s.k1 + s.k2 <= 0:
        return 0.0
    t0 = _share(hyp.ok_ratio, s.n1, s.n2)
    t1 = _share(hyp.bad_ratio, s.n1, s.n2)
    return s.k1 * math.log(t1 / t0) + s.k2 * math.log((1 - t1) / (1 - t0))


def binomial_llr(k: int, n: int, p0: float, p1: float) -> float:
    """log LR of rate p1 vs p0 for k events out of n."""
    if n <= 0:
        return 0.0
    return k * math.log(p1 / p0) + (n - k) * math.log((1 - p1) / (1 - p0))


def cusum(llrs: Sequence[float]) -> tuple[float, int]:
    """Page's CUSUM over the increments: (its value after the last, where its run starts).

    The value is the largest sum of a stretch of increments that ends at the last
    one (0 if none is positive); the run is that stretch.
    """
    statistic, start = 0.0, len(llrs)
    for i, x in enumerate(llrs):
        if statistic <= 0.0:
            statistic, start = 0.0, i
        statistic += x
    if statistic <= 0.0:
        return 0.0, len(llrs)
    return statistic, start


def safe_rate(k: int, n: int, *, upper: bool, z: float = BASELINE_Z) -> float:
    """The Wilson score bound of k/n at z, upper or lower: the caller takes the side
    that makes the carrier look better, so the reference's noise never helps a trip."""
    if n <= 0:
        return 0.5
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    bound = (centre + spread if upper else centre - spread) / (1 + z * z / n)
    return _clip(bound)


def _share(ratio: float, n1: int, n2: int) -> float:
    return _clip(ratio * n1 / (ratio * n1 + n2))


def _clip(p: float) -> float:
    return min(max(p, _EPSILON), 1 - _EPSILON)


def _result(statistic: float, run: Sequence[Stratum], k2: int, n2: int, rules: Rules) -> Result:
    k1, n1 = sum(s.k1 for s in run), sum(s.n1 for s in run)
    if statistic <= 0.0:
        decision = Decision.CLEAR
    elif statistic >= rules.threshold and n1 >= rules.min_texts and n2 >= rules.min_texts:
        decision = Decision.TRIP
    else:
        decision = Decision.CONTINUE
    return Result(
        decision, statistic, rules.threshold, rules.p_value(statistic), k1, n1, k2, n2, len(run)
    )
