"""The send path's gates, in order: each says go, hold or end (see ``base``).

Adding a gate is its module plus one line in ``default_gates``.
"""

from __future__ import annotations

from worker.sendpath.config import PipelineConfig
from worker.sendpath.gates.base import GO, Gate, Kind, Verdict, end, hold
from worker.sendpath.gates.carrier import CarrierGate
from worker.sendpath.gates.expiry import ExpiryGate
from worker.sendpath.gates.exposure import ExposureGate
from worker.sendpath.gates.quiet import QuietHoursGate
from worker.sendpath.gates.suppression import SuppressionGate
from worker.sendpath.parts import Parts
from worker.sendpath.text import Text

__all__ = ["GO", "Gate", "Kind", "Verdict", "default_gates", "end", "hold", "recheck_gates"]


def default_gates(parts: Parts, config: PipelineConfig) -> list[Gate]:
    return [
        ExpiryGate(config),
        SuppressionGate(parts.optouts, config),
        QuietHoursGate(config.quiet),
        CarrierGate(parts),
        ExposureGate(parts.exposure, probe=is_probe),
    ]


def recheck_gates(parts: Parts, config: PipelineConfig) -> list[Gate]:
    """The gates asked again before each HTTP attempt that follows a wait (a slot
    slept for, a quick retry, a failover): the person may have opted out, the
    deadline passed or quiet hours begun meanwhile. None of them holds a slot."""
    return [
        ExpiryGate(config),
        SuppressionGate(parts.optouts, config),
        QuietHoursGate(config.quiet),
    ]


def is_probe(text: Text) -> bool:
    return text.probe
