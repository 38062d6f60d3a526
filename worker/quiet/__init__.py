"""Quiet hours (placeholder until the quiet-hours module lands)."""

from __future__ import annotations


def parse_window(text: str) -> object:
    raise ValueError("quiet hours are not supported yet")
