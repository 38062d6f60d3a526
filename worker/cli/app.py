"""The ``sendq`` typer app, put together from one module per command group."""

from __future__ import annotations

import sys

import typer

from worker.cli import (
    breakers,
    enqueue,
    inbound,
    limits,
    messages,
    optouts,
    redis_server,
    serving,
)
from worker.cli.common import say_error
from worker.errors import ConfigError

app = typer.Typer(
    help="sendq: a durable send queue for peer-to-peer texting.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(breakers.carriers_app, name="carriers")
app.add_typer(inbound.app, name="inbound")
app.add_typer(limits.app, name="limits")
app.add_typer(messages.app, name="messages")
app.add_typer(optouts.app, name="optouts")
app.add_typer(breakers.providers_app, name="providers")
app.add_typer(redis_server.app, name="redis")
enqueue.register(app)
serving.register(app)


def main() -> None:
    """The console entry point: trouble reaching Redis is one clear line, not a traceback."""
    import redis

    try:
        app()
    except redis.RedisError as exc:
        say_error(redis_trouble(exc), as_json="--json" in sys.argv)
        sys.exit(1)


def redis_trouble(exc: Exception) -> str:
    """Where Redis was looked for and why it failed, with any password in it masked."""
    from worker.logs import mask_text
    from worker.settings import get_settings

    try:
        settings = get_settings()
        where = settings.redis_url or f"the embedded server in {settings.data_dir}"
    except ConfigError:
        where = "the configured URL"
    reason = str(exc) or type(exc).__name__
    hint = ""
    if "certificate" in reason.lower() or "ssl" in reason.lower():
        hint = " (for rediss://, name the CA with ?ssl_ca_certs=/path/ca.pem)"
    # Printed, not logged: the log processor does not see this text.
    return mask_text(f"cannot reach Redis at {where}: {reason}{hint}")
