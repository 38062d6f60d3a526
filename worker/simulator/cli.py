"""``sendq simulator``: serve the simulator, or print a running one's report.

The lead registers it with ``app.command("simulator")(simulator_command)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from worker.simulator import scenario as scenario_file
from worker.simulator.config import SimulatorConfig
from worker.simulator.scenario import Scenario, ScenarioError


def simulator_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8700,
    scenario: Annotated[
        Path | None,
        typer.Option(help="Scenario file (.toml or .json); see worker/simulator/scenario.py."),
    ] = None,
    report: Annotated[
        bool, typer.Option("--report", help="Print a running simulator's report and exit.")
    ] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="With --report: print the raw JSON.")
    ] = False,
    url: Annotated[
        str, typer.Option(help="With --report: the running simulator's base URL.")
    ] = "http://127.0.0.1:8700",
) -> None:
    """Run the provider-and-carrier simulator (Twilio API), or show its report."""
    if report:
        _print_report(_fetch_report(url), json_output=json_output)
        return
    from worker.simulator.server import serve  # uvicorn only when serving

    config = SimulatorConfig(host=host, port=port, scenario=_load_scenario(scenario))
    typer.echo(f"sendq simulator on http://{host}:{port} (Twilio API; report at /sim/report)")
    serve(config)


def _load_scenario(path: Path | None) -> Scenario:
    if path is None:
        return Scenario()
    try:
        return scenario_file.load(path)
    except ScenarioError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _fetch_report(url: str) -> dict[str, Any]:
    target = url.rstrip("/") + "/sim/report"
    try:
        response = httpx.get(target, timeout=5.0)
    except httpx.HTTPError as exc:
        typer.echo(f"error: no simulator is answering at {url} ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from None
    if response.status_code != 200:
        typer.echo(f"error: {target} answered HTTP {response.status_code}", err=True)
        raise typer.Exit(1)
    try:
        data = response.json()
    except ValueError:
        typer.echo(f"error: {target} did not answer JSON: is it a sendq simulator?", err=True)
        raise typer.Exit(1) from None
    if not isinstance(data, dict):
        typer.echo(f"error: {target} answered an unexpected report", err=True)
        raise typer.Exit(1)
    return data


def _print_report(data: dict[str, Any], *, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(data, indent=2))
        return
    console = Console()
    totals = Table(title="simulator report", show_header=False)
    totals.add_column("counter")
    totals.add_column("value", justify="right")
    for key, value in data.items():
        if key != "by_carrier":
            totals.add_row(key.replace("_", " "), str(value))
    console.print(totals)
    carriers = Table(title="by carrier")
    for column in ("carrier", "delivered", "filtered", "doubled"):
        carriers.add_column(column, justify="left" if column == "carrier" else "right")
    for name, counts in (data.get("by_carrier") or {}).items():
        carriers.add_row(
            name, *(str(counts.get(k, 0)) for k in ("delivered", "filtered", "doubled"))
        )
    console.print(carriers)
