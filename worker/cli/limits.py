"""``sendq limits status``: each configured limiter, its rate, booking and recent use."""

from __future__ import annotations

import typer
from rich.table import Table

from worker.cli.common import JsonFlag, connected, emit, out, the_root

app = typer.Typer(help="Rate limits: configured rates and recent use.", no_args_is_help=True)


@app.command("status")
def limits_status(as_json: JsonFlag = False) -> None:
    """Each configured limiter: its rate, how far ahead it is booked, and its recent use."""
    from worker.limits_view import limit_rows

    root = the_root()
    # Carrier limits are per campaign: shown for each campaign seen so far.
    campaigns = sorted(connected(lambda r: r.store()).stats())
    rows = limit_rows(root.settings, root.limiter(), campaigns)
    if as_json:
        emit({"limits": rows})
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
