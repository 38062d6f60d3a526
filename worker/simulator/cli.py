"""``sendq simulator``: serve the simulator, or print a running one's report.

The lead registers it with ``app.command("simulator")(simulator_command)``.

    sendq simulator --port 8700 --scenario drill.toml \
        --provider-port telnyx=8701 --provider-port twilio=8702 \
        --callback-url bandwidth=http://127.0.0.1:8600/webhooks/bandwidth/status
    sendq simulator --telnyx-public-key     # for SENDQ_PROVIDERS__TELNYX__PUBLIC_KEY
    sendq simulator --report [--json] [--url http://127.0.0.1:8700]
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from worker.errors import ConfigError
from worker.simulator import scenario as scenario_file
from worker.simulator.config import (
    ACCOUNT_CALLBACK_PROVIDERS,
    SimulatorConfig,
    default_callback_urls,
    parse_assignments,
    telnyx_public_key,
)
from worker.simulator.scenario import PROVIDERS, Scenario, ScenarioError


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
    provider_port: Annotated[
        list[str] | None,
        typer.Option(
            help="PROVIDER=PORT: also serve a provider on a port of its own, which "
            "refuse rules close (repeatable).",
        ),
    ] = None,
    callback_url: Annotated[
        list[str] | None,
        typer.Option(
            help="PROVIDER=URL: the account's receipt URL for "
            f"{', '.join(ACCOUNT_CALLBACK_PROVIDERS)} (repeatable; default: "
            "sendq's webhook route on SENDQ_WEBHOOKS__PUBLIC_URL).",
        ),
    ] = None,
    inbound_url: Annotated[
        str | None,
        typer.Option(
            help="Where handsets' replies go: a base URL (/webhooks/PROVIDER/inbound is "
            "appended) or a template with {provider}; default: the base of the text's "
            "receipt URL. A scenario's [replies] inbound_url wins.",
        ),
    ] = None,
    vonage_dlr_method: Annotated[
        str, typer.Option(help="How Vonage DLRs are sent: POST, POST-JSON or GET.")
    ] = "POST",
    print_telnyx_key: Annotated[
        bool,
        typer.Option(
            "--telnyx-public-key",
            help="Print the Telnyx webhook public key (base64) and exit.",
        ),
    ] = False,
) -> None:
    """Run the provider-and-carrier simulator (five providers' APIs), or show its report."""
    if report:
        _print_report(_fetch_report(url), json_output=json_output)
        return
    try:
        if print_telnyx_key:
            typer.echo(telnyx_public_key())
            return
        config = SimulatorConfig(
            host=host,
            port=port,
            scenario=_load_scenario(scenario),
            provider_ports=_ports(provider_port or []),
            callback_urls={**default_callback_urls(), **_callbacks(callback_url or [])},
            vonage_dlr_method=vonage_dlr_method,
            inbound_url=_inbound_url(inbound_url),
        )
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    _serve(config)


def _serve(config: SimulatorConfig) -> None:
    from worker.simulator.server import serve  # uvicorn only when serving

    def announce(bound: SimulatorConfig) -> None:
        own = "".join(
            f", {p} on :{n}" if n else f", {p} on a free port (GET /sim/providers)"
            for p, n in sorted(bound.provider_ports.items())
        )
        typer.echo(
            f"sendq simulator on http://{bound.host}:{bound.port} "
            f"(Twilio, Telnyx, Bandwidth, Plivo, Vonage{own}; report at /sim/report)"
        )

    try:
        serve(config, announce)
    except ValueError as exc:  # a bad Vonage method or provider name, found at start-up
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _known(option: str, values: dict[str, str], known: tuple[str, ...]) -> dict[str, str]:
    for name in values:
        if name not in known:
            raise ConfigError(f"{option}: unknown provider {name!r}; expected one of {known}")
    return values


def _ports(pairs: list[str]) -> dict[str, int]:
    values = _known(
        "--provider-port", parse_assignments(pairs, option="--provider-port"), PROVIDERS
    )
    ports = {}
    for name, raw in values.items():
        if not raw.isdigit() or not 0 <= int(raw) <= 65535:
            raise ConfigError(f"--provider-port: {raw!r} is not a port number")
        ports[name] = int(raw)
    return ports


def _callbacks(pairs: list[str]) -> dict[str, str]:
    values = parse_assignments(pairs, option="--callback-url")
    for name, value in _known("--callback-url", values, ACCOUNT_CALLBACK_PROVIDERS).items():
        if not value.startswith(("http://", "https://")):
            raise ConfigError(f"--callback-url: {name}'s URL must start with http:// or https://")
    return values


def _inbound_url(url: str | None) -> str | None:
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"--inbound-url: must start with http:// or https://, got {url!r}")
    return url


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
        if not isinstance(value, dict):
            totals.add_row(key.replace("_", " "), str(value))
    console.print(totals)
    _print_columns(console, "by carrier", data.get("by_carrier") or {})
    _print_columns(console, "by provider", data.get("by_provider") or {})
    _print_replies(console, data.get("replies") or {})


def _print_columns(console: Console, title: str, by_name: dict[str, dict[str, int]]) -> None:
    """One column per carrier or provider (five fit a terminal; a dozen counters would not)."""
    if not by_name:
        return
    table = Table(title=title)
    table.add_column("counter")
    for name in by_name:
        table.add_column(name, justify="right")
    for counter in next(iter(by_name.values())):
        cells = (str(counts.get(counter, 0)) for counts in by_name.values())
        table.add_row(counter.replace("_", " "), *cells)
    console.print(table)


REPLY_STATES = ("replies", "answered", "refused", "failed", "pending")


def _print_replies(console: Console, replies: dict[str, Any]) -> None:
    """Replies by kind and state, then what they show: opt-outs taken and violations."""
    if not replies.get("replies"):
        return
    table = Table(title="handsets' replies")
    table.add_column("kind")
    for state in REPLY_STATES:
        table.add_column(state, justify="right")
    for kind, counts in (replies.get("by_kind") or {}).items():
        table.add_row(kind, *(str(counts.get(state, 0)) for state in REPLY_STATES))
    console.print(table)
    by_kind = replies.get("violations_by_kind") or {}
    console.print(
        f"opted out: {replies.get('opted_out', 0)} handsets"
        f" ({replies.get('opt_outs_unanswered', 0)} opt-outs never answered 2xx); "
        f"opt-out violations: {replies.get('violations', 0)} "
        f"(stop {by_kind.get('stop', 0)}, possible {by_kind.get('possible', 0)}); "
        f"confirmations: {replies.get('confirmations', 0)}"
    )
