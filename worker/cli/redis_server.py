"""``sendq redis``: the URL sendq uses, and stopping the embedded server."""

from __future__ import annotations

import typer

from worker.cli.common import JsonFlag, connected, emit, the_root

app = typer.Typer(help="The embedded Redis server.", no_args_is_help=True)


@app.command("url")
def redis_url_cmd() -> None:
    """Print the Redis URL sendq uses (starting the embedded server if needed)."""
    print(connected(lambda root: root.url))


@app.command("stop")
def redis_stop(as_json: JsonFlag = False) -> None:
    """Stop the embedded Redis of the data directory (its AOF keeps the data)."""
    from worker import embedded

    stopped = embedded.stop(the_root().settings.data_dir)
    if as_json:
        emit({"stopped": stopped})
    else:
        print("stopped" if stopped else "not running")
