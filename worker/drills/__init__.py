"""Drills on real processes (workers, webhooks, the simulator) shared by the end-to-end
tests and ``scripts/bench.py``: one harness, measured the same way in both."""
