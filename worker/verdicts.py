"""What an answer means, decided once: for the text, its carrier and its provider.

Both paths read these tables: the send path (a provider's answer at send time)
and the receipt path (a delivery receipt, later). Nothing else decides them.

    answer category   the text                     carrier breaker   provider breaker
    ok                sent (a receipt finishes it)  nothing (*)       success
    carrier_block     failed, never failed over     failure           success
    bad_number        failed                        nothing           success
    opted_out         suppressed                    nothing           success
    permanent         failed                        nothing           success
    ambiguous         unconfirmed (***)             ambiguous_weight  success
    uncertain         unconfirmed (***)             nothing           failure
    transient         failed over, then retried     nothing           failure
    throttled         paced, no retry spent         nothing           nothing (**)

    (*)  A provider's "accepted" is not the carrier's: only a receipt saying
         "delivered" counts a success on the carrier.
    (**) Pacing says nothing of the provider's health: counted a success, a
         throttled half-open probe would close the breaker.
    (***) The text may have gone: never retried or failed over; it waits for
         evidence, then worker.on_unconfirmed decides (sendpath/settle.py).
         ``uncertain`` is the transport's: no answer came after the request
         was written (a timeout, a dropped connection, a gateway's 502/504).

A receipt counts on the carrier: "delivered" a success, a carrier block a
failure, an ambiguous code ambiguous_weight; nothing else counts.
"""

from __future__ import annotations

from worker.models import Category, Status

# Breaker weights: a call counts 0 (a success) up to FAILURE_WEIGHT (a failure);
# an ambiguous answer counts in between. breaker.lua is given FAILURE_WEIGHT.
SUCCESS_WEIGHT = 0
FAILURE_WEIGHT = 1000

# Answers about the text itself: never retried, never failed over (promise 4).
FINAL_FOR: dict[Category, Status] = {
    Category.OPTED_OUT: Status.SUPPRESSED,
    Category.BAD_NUMBER: Status.FAILED,
    Category.CARRIER_BLOCK: Status.FAILED,
    Category.PERMANENT: Status.FAILED,
}


# Answers that leave it unknown whether the text went: it waits for evidence.
UNSETTLED = frozenset({Category.AMBIGUOUS, Category.UNCERTAIN})
# Answers worth another attempt at once (retry.py, with the provider's Retry-After):
# nothing was sent, the provider failed, or it asked to slow down.
RETRY_NOW = frozenset({Category.TRANSIENT, Category.THROTTLED})


def final_status(category: Category) -> Status | None:
    """The status an answer ends its text in, or None when the text goes on."""
    return FINAL_FOR.get(category)


def _against_carrier(category: Category, ambiguous_weight: float) -> int | None:
    if category is Category.CARRIER_BLOCK:
        return FAILURE_WEIGHT
    if category is Category.AMBIGUOUS:
        return int(ambiguous_weight * FAILURE_WEIGHT)
    return None


def answer_carrier_weight(category: Category, ambiguous_weight: float) -> int | None:
    """How a send answer counts on its carrier's breaker; None: it says nothing of it."""
    return _against_carrier(category, ambiguous_weight)


def receipt_carrier_weight(status: str, category: Category, ambiguous_weight: float) -> int | None:
    """How a receipt counts on its carrier's breaker; "delivered" is the carrier's success."""
    if status == Status.DELIVERED:
        return SUCCESS_WEIGHT
    return _against_carrier(category, ambiguous_weight)


def provider_weight(category: Category) -> int | None:
    """How a send answer counts on its provider's breaker; None: not at all."""
    if category is Category.THROTTLED:
        return None
    # Only a provider fault counts against the provider; a carrier's answer never does.
    faults = (Category.TRANSIENT, Category.UNCERTAIN)
    return FAILURE_WEIGHT if category in faults else SUCCESS_WEIGHT
