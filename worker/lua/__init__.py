"""Lua scripts, each in its own ``.lua`` file with a header documenting KEYS and ARGV."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def source(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")
