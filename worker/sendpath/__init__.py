"""The send path: a pipeline of claim, gates, route and outcome (see ``pipeline``)."""

from __future__ import annotations

from worker.sendpath.config import PipelineConfig
from worker.sendpath.gates import default_gates, recheck_gates
from worker.sendpath.parts import Parts
from worker.sendpath.pipeline import Pipeline

__all__ = ["Parts", "Pipeline", "PipelineConfig", "default_gates", "recheck_gates"]
