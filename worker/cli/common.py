"""What every command group shares: the consoles, ``--json``, errors and exit codes, the root.

Exit codes: 1 for rejected input (and Redis trouble), 2 for bad usage or configuration.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from worker.errors import ConfigError, RedisUnavailable

if TYPE_CHECKING:
    from worker.wiring import Root

T = TypeVar("T")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ByOption = Annotated[str | None, typer.Option(help="Who (default: $USER).")]


def fail(message: str, code: int = 1, *, as_json: bool = False) -> NoReturn:
    say_error(message, as_json=as_json)
    raise typer.Exit(code)


def say_error(message: str, *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({"error": message}))
    else:
        err.print(f"[red]sendq:[/red] {message}", highlight=False)


def emit(data: Any) -> None:
    print(json.dumps(data, indent=None, ensure_ascii=False, default=str))


def the_root() -> Root:
    """This process's composition root; a bad config stops the command with exit code 2."""
    from worker import wiring

    try:
        return wiring.root()
    except ConfigError as exc:
        fail(str(exc), 2)


def connected(build: Callable[[Root], T]) -> T:
    """A part of the root that needs Redis; an unreachable one stops the command (exit 1)."""
    root = the_root()
    try:
        return build(root)
    except RedisUnavailable as exc:
        fail(str(exc))


def operator() -> str:
    """Who an operator's change is recorded as, without --by."""
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "operator"
