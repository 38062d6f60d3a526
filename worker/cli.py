"""The ``sendq`` command."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from worker.errors import ConfigError, InvalidInput, RedisUnavailable, SendqError

app = typer.Typer(
    help="sendq: a durable send queue for peer-to-peer texting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
messages_app = typer.Typer(help="Inspect message records.", no_args_is_help=True)
redis_app = typer.Typer(help="The embedded Redis server.", no_args_is_help=True)
providers_app = typer.Typer(help="Provider breakers: status, pause, resume.", no_args_is_help=True)
carriers_app = typer.Typer(
    help="Carrier breakers: status, pause, resume, history.", no_args_is_help=True
)
app.add_typer(carriers_app, name="carriers")
limits_app = typer.Typer(help="Rate limits: configured rates and recent use.", no_args_is_help=True)
app.add_typer(limits_app, name="limits")
app.add_typer(messages_app, name="messages")
app.add_typer(providers_app, name="providers")
app.add_typer(redis_app, name="redis")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def fail(message: str, code: int = 1, *, as_json: bool = False) -> NoReturn:
    say_error(message, as_json=as_json)
    raise typer.Exit(code)


def say_error(message: str, *, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({"error": message}))
    else:
        err.print(f"[red]sendq:[/red] {message}", highlight=False)


def _settings() -> Any:
    from worker.settings import get_settings

    try:
        return get_settings()
    except ConfigError as exc:
        fail(str(exc), 2)


def _producer() -> Any:
    from worker.enqueue import default_producer

    _settings()
    try:
        return default_producer()
    except RedisUnavailable as exc:
        fail(str(exc))


def _emit(data: Any) -> None:
    print(json.dumps(data, indent=None, ensure_ascii=False, default=str))


@app.command()
def enqueue(
    to: Annotated[str | None, typer.Option(help="Recipient, E.164 or national.")] = None,
    body: Annotated[str | None, typer.Option(help="The text.")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign name.")] = None,
    key: Annotated[str | None, typer.Option(help="Idempotency key.")] = None,
    file: Annotated[
        str | None, typer.Option("--file", "-f", help="CSV or JSONL file of texts; - for stdin.")
    ] = None,
    template: Annotated[
        str | None, typer.Option(help="Body template with {column} fields (with --file).")
    ] = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv or jsonl (default: by name).")
    ] = None,
    rejects: Annotated[
        Path | None, typer.Option(help="Write rejected rows (line, reason) to this CSV.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enqueue one text (--to/--body) or a file of texts (--file)."""
    if file is not None:
        if to or body:
            fail("give either --file or --to/--body, not both", 2, as_json=as_json)
        _enqueue_file(file, template, fmt, campaign, rejects, as_json)
        return
    if not to or body is None:
        fail("--to and --body are required (or --file)", 2, as_json=as_json)
    _enqueue_one(to, body, campaign, key, as_json)


def _enqueue_one(to: str, body: str, campaign: str | None, key: str | None, as_json: bool) -> None:
    from pydantic import ValidationError

    from worker.models import describe_validation_error

    job = {"to": to, "body": body, "campaign": campaign, "key": key}
    try:
        accepted = _producer().enqueue(job)
    except ValidationError as exc:
        fail(f"rejected: {describe_validation_error(exc)}", 1, as_json=as_json)
    if as_json:
        _emit({"message_id": accepted.message_id, "duplicate": accepted.duplicate})
    else:
        print(accepted.message_id)
        if accepted.duplicate:
            err.print("(duplicate key: the existing message id)")


def _enqueue_file(
    source: str,
    template: str | None,
    fmt: str | None,
    campaign: str | None,
    rejects_path: Path | None,
    as_json: bool,
) -> None:
    from worker import ingest

    if fmt not in (None, "csv", "jsonl"):
        fail(f"--format must be csv or jsonl, not {fmt!r}", 2, as_json=as_json)
    producer = _producer()
    try:
        rows = ingest.read_rows(source, fmt=fmt, template=template)  # type: ignore[arg-type]
        first = next(rows, None)
    except InvalidInput as exc:
        fail(str(exc), 1, as_json=as_json)
    rejected: list[tuple[int, str]] = []
    lines: list[int] = []

    def jobs() -> Iterator[dict[str, Any]]:
        for row in _chain(first, rows):
            if row.fields is None:
                rejected.append((row.line, row.error or "unreadable row"))
                continue
            if campaign and not row.fields.get("campaign"):
                row.fields["campaign"] = campaign
            lines.append(row.line)
            yield row.fields

    total = None if source == "-" else ingest.count_lines(Path(source))
    with _progress(total, enabled=not as_json and sys.stderr.isatty()) as advance:
        report = producer.enqueue_many(jobs(), on_batch=advance)
    rejected += [(lines[r.index], r.reason) for r in report.rejected]
    rejected.sort()
    if rejects_path is not None:
        ingest.write_rejects(rejects_path, rejected)
    _file_summary(report, rejected, rejects_path, as_json)
    if rejected and not report.accepted:
        raise typer.Exit(1)


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    if first is not None:
        yield first
    yield from rest


def _file_summary(
    report: Any, rejected: list[tuple[int, str]], path: Path | None, as_json: bool
) -> None:
    summary = {
        "accepted": report.queued,
        "duplicates": report.duplicates,
        "rejected": len(rejected),
        "rejects": [{"line": line, "reason": reason} for line, reason in rejected[:1000]],
    }
    if as_json:
        _emit(summary)
        return
    for line, reason in rejected[:50]:
        err.print(f"line {line}: {reason}", highlight=False, markup=False)
    if len(rejected) > 50:
        err.print(f"... and {len(rejected) - 50} more" + (f" (all in {path})" if path else ""))
    out.print(f"accepted {report.queued}, duplicates {report.duplicates}, rejected {len(rejected)}")


class _progress:
    """A rich progress bar on a TTY; silent otherwise."""

    def __init__(self, total: int | None, *, enabled: bool) -> None:
        self.enabled = enabled
        self.total = total
        self._bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress

        self._bar = Progress(console=err, transient=True)
        self._bar.start()
        task = self._bar.add_task("enqueueing", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


@messages_app.command("show")
def messages_show(message_id: str, as_json: JsonFlag = False) -> None:
    """Show one message record and its history."""
    from worker.phone import mask

    store = _producer().store
    record = store.get(message_id)
    if record is None:
        fail(f"no message with id {message_id!r}", as_json=as_json)
    history = store.history(message_id)
    if as_json:
        _emit({"record": record, "history": history})
        return
    table = Table(title=f"message {message_id}", show_header=False)
    for name, value in sorted(record.items()):
        table.add_row(name, mask(value) if name == "to" else value)
    out.print(table)
    hist = Table("at (UTC ms)", "from", "to", "why", title="history")
    for entry in history:
        hist.add_row(
            str(entry.get("at")), entry.get("from", ""), entry.get("to", ""), entry.get("why", "")
        )
    out.print(hist)


@messages_app.command("stats")
def messages_stats(as_json: JsonFlag = False) -> None:
    """Count texts by campaign and status."""
    store = _producer().store
    stats = store.stats()
    counters = store.counters()
    if as_json:
        _emit({"by_campaign": stats, "counters": counters})
        return
    statuses = sorted({s for c in stats.values() for s in c})
    table = Table("campaign", *statuses, "total")
    for campaign, counts in sorted(stats.items()):
        table.add_row(
            campaign, *(str(counts.get(s, 0)) for s in statuses), str(sum(counts.values()))
        )
    out.print(table)
    for name, value in counters.items():
        out.print(f"{name}: {value}")


def _provider_breakers() -> Any:
    from worker.breaker import Breakers
    from worker.runtime import breaker_policy

    settings = _settings()
    client = _producer().store.client
    return Breakers(client, "provider", breaker_policy(settings.breakers.provider)), settings


def _operator() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or "operator"


def _known_provider(name: str, settings: Any, as_json: bool) -> None:
    from worker.settings import PROVIDER_NAMES

    if name not in PROVIDER_NAMES:
        fail(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}", 2, as_json=as_json)


@providers_app.command("status")
def providers_status(as_json: JsonFlag = False) -> None:
    """Each routed provider's breaker: state, why, window counts."""
    breakers, settings = _provider_breakers()
    names = list(dict.fromkeys([*settings.routed_providers(), *breakers.names()]))
    rows = [breakers.status(name) for name in names]
    if as_json:
        _emit({"providers": rows})
        return
    table = Table("provider", "state", "since", "calls", "failures", "why", "by")
    for r in rows:
        since = (
            time.strftime("%H:%M:%S", time.localtime(r["since_ms"] / 1000)) if r["since_ms"] else ""
        )
        table.add_row(
            r["name"],
            r["state"],
            since,
            str(r["window_calls"]),
            str(r["window_failures"]),
            r["why"],
            r["by"],
        )
    out.print(table)


@providers_app.command("pause")
def providers_pause(
    name: str,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit record).")],
    by: Annotated[str | None, typer.Option(help="Who (default: $USER).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Take a provider out of rotation until an operator resumes it."""
    breakers, settings = _provider_breakers()
    _known_provider(name, settings, as_json)
    if not reason.strip():
        fail("--reason must say why", 2, as_json=as_json)
    who = by or _operator()
    decision = breakers.pause(name, who=who, reason=reason)
    _breaker_result(name, decision, as_json)
    _announce(settings, "provider", [(name, decision)], who=who, why=reason)


@providers_app.command("resume")
def providers_resume(
    name: str,
    reason: Annotated[
        str, typer.Option(help="Why (kept in the audit record).")
    ] = "resumed by operator",
    by: Annotated[str | None, typer.Option(help="Who (default: $USER).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Put a paused or open provider back into rotation."""
    breakers, settings = _provider_breakers()
    _known_provider(name, settings, as_json)
    who = by or _operator()
    decision = breakers.resume(name, who=who, reason=reason)
    _breaker_result(name, decision, as_json)
    _announce(settings, "provider", [(name, decision)], who=who, why=reason)


def _announce(
    settings: Any, kind: str, results: list[tuple[str, Any]], *, who: str, why: str
) -> None:
    """Log and post an alert for each change, as the workers do for automatic ones.

    The command waits a few seconds at most for the posts: it must not exit
    before they are attempted, nor hang on a dead alert URL.
    """
    from worker import logs
    from worker.alerts import DEFAULT_FLUSH_S, announce_now

    changes = [(name, d.transition) for name, d in results if d.transition]
    if not changes:
        return
    # structlog's default prints to stdout, which is the command's JSON output.
    logs.configure(settings.log_level)
    if not announce_now(settings.alerts.urls, kind, changes, why, by=who, source="cli"):
        err.print(
            f"[yellow]sendq:[/yellow] warning: the alert was not confirmed within "
            f"{DEFAULT_FLUSH_S:g} s; the {kind} change itself is done",
            highlight=False,
        )


def _breaker_result(name: str, decision: Any, as_json: bool) -> None:
    if as_json:
        _emit({"name": name, "state": decision.state.value, "changed": decision.allowed})
    else:
        print(f"{name}: {decision.state.value}" + ("" if decision.allowed else " (unchanged)"))


def _carrier_breakers() -> Any:
    from worker.breaker import Breakers
    from worker.runtime import breaker_policy

    settings = _settings()
    client = _producer().store.client
    return Breakers(client, "carrier", breaker_policy(settings.breakers.carrier))


def _carrier_targets(breakers: Any, carrier: str, campaign: str | None) -> list[str]:
    from worker.carriers import normalise
    from worker.holds import ALL_CAMPAIGNS, breaker_name, split_name

    carrier = normalise(carrier)
    if campaign:
        return [breaker_name(carrier, campaign)]
    known = [n for n in breakers.names() if split_name(n)[0] == carrier]
    return list(dict.fromkeys([breaker_name(carrier, ALL_CAMPAIGNS), *known]))


@carriers_app.command("status")
def carriers_status(as_json: JsonFlag = False) -> None:
    """Each carrier x campaign: state, window counts, held texts, since when and why."""
    from worker import keys

    breakers = _carrier_breakers()
    rows = []
    for name in breakers.names():
        row = breakers.status(name)
        row["held"] = int(breakers.client.llen(keys.hold(name)))
        rows.append(row)
    if as_json:
        _emit({"carriers": rows})
        return
    table = Table("carrier:campaign", "state", "since", "calls", "blocks", "held", "why", "by")
    for r in rows:
        since = (
            time.strftime("%H:%M:%S", time.localtime(r["since_ms"] / 1000)) if r["since_ms"] else ""
        )
        counts = (str(r["window_calls"]), str(r["window_failures"]), str(r["held"]))
        table.add_row(r["name"], r["state"], since, *counts, r["why"], r["by"])
    out.print(table)


@carriers_app.command("pause")
def carriers_pause(
    name: Annotated[str, typer.Argument(help="Carrier: att, tmobile, verizon, ...")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit record).")],
    campaign: Annotated[str | None, typer.Option(help="One campaign (default: all).")] = None,
    by: Annotated[str | None, typer.Option(help="Who (default: $USER).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Hold a carrier's texts until an operator resumes it. Never lifted automatically."""
    if not reason.strip():
        fail("--reason must say why", 2, as_json=as_json)
    breakers = _carrier_breakers()
    # Without --campaign, the carrier-wide breaker covers every campaign, new ones too.
    targets = _carrier_targets(breakers, name, campaign)[:1]
    who = by or _operator()
    results = [(t, breakers.pause(t, who=who, reason=reason)) for t in targets]
    _carrier_results(results, as_json)
    _announce(_settings(), "carrier", results, who=who, why=reason)


@carriers_app.command("resume")
def carriers_resume(
    name: Annotated[str, typer.Argument(help="Carrier: att, tmobile, verizon, ...")],
    campaign: Annotated[str | None, typer.Option(help="One campaign (default: all).")] = None,
    reason: Annotated[
        str, typer.Option(help="Why (kept in the audit record).")
    ] = "resumed by operator",
    by: Annotated[str | None, typer.Option(help="Who (default: $USER).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Resume a paused or open carrier; workers then release its held texts, oldest first."""
    breakers = _carrier_breakers()
    targets = _carrier_targets(breakers, name, campaign)
    who = by or _operator()
    results = [(t, breakers.resume(t, who=who, reason=reason)) for t in targets]
    _carrier_results(results, as_json)
    _announce(_settings(), "carrier", results, who=who, why=reason)


@carriers_app.command("history")
def carriers_history(
    name: Annotated[str, typer.Argument(help="carrier or carrier:campaign")],
    limit: Annotated[int, typer.Option(help="Entries to show.", min=1)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Every transition of a carrier's breakers: who, why, when (newest first)."""
    breakers = _carrier_breakers()
    names = [name] if ":" in name else _carrier_targets(breakers, name, None)
    entries = sorted(
        (e for n in names for e in breakers.history(n, limit)), key=lambda e: e["id"], reverse=True
    )[:limit]
    if as_json:
        _emit({"history": entries})
        return
    table = Table("when", "breaker", "from", "to", "who", "why")
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(int(e["at_ms"]) / 1000))
        table.add_row(when, e["name"], e["from"], e["to"], e["who"], e["why"])
    out.print(table)


def _carrier_results(results: list[tuple[str, Any]], as_json: bool) -> None:
    if as_json:
        _emit(
            {
                "changed": [
                    {"name": n, "state": d.state.value, "changed": d.allowed} for n, d in results
                ]
            }
        )
        return
    for n, d in results:
        print(f"{n}: {d.state.value}" + ("" if d.allowed else " (unchanged)"))


def _configured_limits(settings: Any, campaigns: list[str]) -> list[Any]:
    from worker.ratelimit import limits_for

    seen: dict[str, Any] = {}
    for provider in settings.routed_providers():
        for number in getattr(settings.providers, provider).numbers:
            for carrier in settings.limits.carriers or {"": None}:
                for campaign in campaigns or ["default"]:
                    found = limits_for(
                        settings.limits,
                        provider=provider,
                        sender=number,
                        carrier=carrier or None,
                        campaign=campaign,
                    )
                    for limit in found:
                        seen.setdefault(limit.name, limit)
    return list(seen.values())


@limits_app.command("status")
def limits_status(as_json: JsonFlag = False) -> None:
    """Each configured limiter: its rate, how far ahead it is booked, and its recent use."""
    from worker.ratelimit import DailyCap, booked_ahead_s, recent_use

    settings = _settings()
    store = _producer().store
    rows = []
    for limit in _configured_limits(settings, sorted(store.stats())):
        use = recent_use(store.client, limit.name)
        row: dict[str, Any] = {
            "name": limit.name,
            "used_last_5m": sum(use.values()),
            "used_by_minute": use,
        }
        if isinstance(limit, DailyCap):
            row |= {"kind": "daily_cap", "cap": limit.cap, "tz": limit.tz}
        else:
            ahead_s = round(booked_ahead_s(store.client, limit), 3)
            row |= {
                "kind": "rate",
                "rate": limit.rate,
                "period_s": limit.period_s,
                "burst": limit.burst,
                "booked_ahead_s": ahead_s,
            }
        rows.append(row)
    if as_json:
        _emit({"limits": rows})
        return
    if not rows:
        out.print("no limits configured (see [limits] in config/sendq.toml)")
        return
    table = Table("limiter", "setting", "booked ahead", "last minute", "last 5 min")
    for r in rows:
        setting = (
            f"{r['cap']}/day ({r['tz']})"
            if r["kind"] == "daily_cap"
            else f"{r['rate']:g} per {r['period_s']:g} s, burst {r['burst']}"
        )
        ahead = f"{r.get('booked_ahead_s', 0):.2f} s" if r["kind"] == "rate" else ""
        table.add_row(
            r["name"], setting, ahead, str(r["used_by_minute"]["-0m"]), str(r["used_last_5m"])
        )
    out.print(table)


@app.command()
def worker(
    processes: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per process.")] = None,
) -> None:
    """Run workers (dramatiq). SIGTERM finishes in-flight sends, then exits."""
    from worker.broker import redis_url

    settings = _settings()
    w = settings.worker
    env = dict(os.environ, SENDQ_REDIS_URL=redis_url(settings))
    # How often idle consumers wake, and so how late a delayed text can be
    # requeued: dramatiq's default is a full second.
    env.setdefault("dramatiq_worker_timeout", str(w.poll_ms))
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "worker.actors",
        "--processes",
        str(processes or w.processes),
        "--threads",
        str(threads or w.threads),
        "--worker-shutdown-timeout",
        str(int(w.shutdown_timeout_s * 1000)),
    ]
    os.execvpe(argv[0], argv, env)


@app.command()
def webhooks(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Serve delivery-receipt webhooks."""
    import uvicorn

    from worker.broker import redis_url

    settings = _settings()
    os.environ["SENDQ_REDIS_URL"] = redis_url(settings)
    try:
        from worker.webhooks import app_from_settings

        asgi = app_from_settings()
    except SendqError as exc:
        fail(str(exc), 2)
    uvicorn.run(
        asgi,
        host=host or settings.webhooks.host,
        port=port if port is not None else settings.webhooks.port,
        access_log=False,
        log_level="warning",
    )


@redis_app.command("url")
def redis_url_cmd() -> None:
    """Print the Redis URL sendq uses (starting the embedded server if needed)."""
    from worker.broker import redis_url

    print(redis_url(_settings()))


@redis_app.command("stop")
def redis_stop(as_json: JsonFlag = False) -> None:
    """Stop the embedded Redis of the data directory (its AOF keeps the data)."""
    from worker import embedded

    stopped = embedded.stop(_settings().data_dir)
    if as_json:
        _emit({"stopped": stopped})
    else:
        print("stopped" if stopped else "not running")


@app.command()
def demo(
    count: Annotated[int, typer.Option(help="Texts to send.", min=1, max=1_000_000)] = 5000,
    as_json: JsonFlag = False,
) -> None:
    """Run sendq end to end against the simulator, on embedded defaults."""
    from worker import demo as demo_mod

    try:
        summary = demo_mod.run(count=count, progress=not as_json)
    except SendqError as exc:
        fail(str(exc), as_json=as_json)
    if as_json:
        _emit(summary)
    else:
        demo_mod.print_summary(summary, out)
    if summary["lost"] or summary["doubled"]:
        raise typer.Exit(1)


def _register_simulator() -> None:
    try:
        from worker.simulator.cli import simulator_command
    except ImportError:  # pragma: no cover - the simulator ships with sendq
        return
    app.command("simulator", help="Run the provider-and-carrier simulator.")(simulator_command)


_register_simulator()


def main() -> None:
    """The console entry point: trouble reaching Redis is one clear line, not a traceback."""
    import redis

    try:
        app()
    except redis.RedisError as exc:
        say_error(_redis_trouble(exc), as_json="--json" in sys.argv)
        sys.exit(1)


def _redis_trouble(exc: Exception) -> str:
    from worker.logs import mask_text

    try:
        from worker.settings import get_settings

        settings = get_settings()
        where = settings.redis_url or f"the embedded server in {settings.data_dir}"
    except ConfigError:
        where = "the configured URL"
    reason = str(exc) or type(exc).__name__
    hint = ""
    if "certificate" in reason.lower() or "ssl" in reason.lower():
        hint = " (for rediss://, name the CA with ?ssl_ca_certs=/path/ca.pem)"
    return mask_text(f"cannot reach Redis at {where}: {reason}{hint}")


if __name__ == "__main__":  # pragma: no cover
    main()
