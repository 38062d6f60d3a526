"""The deliverability watch: silent filtering caught per carrier x campaign.

- ``settings``: ``[watch]``, ``WatchSettings``.
- ``sequential``: the test (pure); its docstring is the README's text.
- ``model``: the counts and records as values; where an event is counted (pure).
- ``counters``: the rolling cohort counts and the watch's state in Redis (the only I/O).
- ``signals``: the four signals read from the counts and put to the test (pure).
- ``watch``: ``Watch.check()`` (a round: evaluate, pause or alert) and the status reads.
"""

from worker.watch.counters import WatchCounters, WatchCountersSync
from worker.watch.model import Layout
from worker.watch.settings import WatchSettings
from worker.watch.signals import PairStatus, SignalStatus
from worker.watch.watch import Action, Watch, watch_status

__all__ = [
    "Action",
    "Layout",
    "PairStatus",
    "SignalStatus",
    "Watch",
    "WatchCounters",
    "WatchCountersSync",
    "WatchSettings",
    "watch_status",
]
