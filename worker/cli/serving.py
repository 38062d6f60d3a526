"""The long-running commands: ``sendq worker``, ``webhooks``, ``simulator`` and ``demo``."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from worker.cli.common import JsonFlag, connected, emit, fail, out, the_root
from worker.errors import SendqError


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command()(webhooks)
    app.command()(demo)
    _register_simulator(app)


def worker(
    processes: Annotated[int | None, typer.Option(help="Worker processes.")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads per process.")] = None,
) -> None:
    """Run workers (dramatiq). SIGTERM finishes in-flight sends, then exits."""
    root = the_root()
    w = root.settings.worker
    # The processes reuse this URL, not their own embedded-server start-up.
    env = dict(os.environ, SENDQ_REDIS_URL=connected(lambda r: r.url))
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


def webhooks(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
) -> None:
    """Serve delivery-receipt webhooks."""
    import uvicorn

    from worker import logs

    root = the_root()
    settings = root.settings
    connected(lambda r: r.url)
    logs.configure(settings.log_level)
    try:
        asgi = root.webhook_app()
    except SendqError as exc:
        # A provider without credentials, a bad key: configuration, as at any start-up.
        fail(str(exc), 2)
    uvicorn.run(
        asgi,
        host=host or settings.webhooks.host,
        port=port if port is not None else settings.webhooks.port,
        access_log=False,
        log_level="warning",
    )


def demo(
    count: Annotated[int, typer.Option(help="Texts to send.", min=1, max=1_000_000)] = 5000,
    story: Annotated[
        str,
        typer.Option(
            help="blocked: Verizon answers 30007 in late receipts (the default); "
            "silent: Verizon says delivered while its people stop replying."
        ),
    ] = "blocked",
    as_json: JsonFlag = False,
) -> None:
    """Run sendq end to end against the simulator, on embedded defaults."""
    from worker import demo as demo_mod
    from worker import demo_silent

    stories = {"blocked": demo_mod, "silent": demo_silent}
    if story not in stories:
        fail(f"--story must be one of {', '.join(stories)}, not {story!r}", 2, as_json=as_json)
    module = stories[story]
    try:
        summary = module.run(count=count, progress=not as_json)
    except SendqError as exc:
        fail(str(exc), as_json=as_json)
    if as_json:
        emit(summary)
    else:
        module.print_summary(summary, out)
    if summary["lost"] or summary["doubled"]:
        raise typer.Exit(1)


def _register_simulator(app: typer.Typer) -> None:
    try:
        from worker.simulator.cli import simulator_command
    except ImportError:  # pragma: no cover - the simulator ships with sendq
        return
    app.command("simulator", help="Run the provider-and-carrier simulator.")(simulator_command)
