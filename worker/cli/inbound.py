"""``sendq inbound``: the texts people sent us, newest first, and one in full.

Terminal output masks numbers, as ``sendq messages show`` does; ``--json``
carries them whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from worker.cli.common import JsonFlag, connected, emit, fail, out
from worker.errors import InvalidInput

if TYPE_CHECKING:
    from worker.inbound_log import InboundLog

app = typer.Typer(help="Inbound texts: list and show.", no_args_is_help=True)


def _log() -> InboundLog:
    return connected(lambda root: root.inbound_log())


def _when(at_ms: int) -> str:
    from worker.optout_files import iso_utc

    return iso_utc(at_ms)


@app.command("list")
def inbound_list(
    limit: Annotated[int, typer.Option(help="Texts to show.", min=1)] = 50,
    number: Annotated[
        str | None, typer.Option(help="Only texts from this person (E.164 or national).")
    ] = None,
    before_ms: Annotated[
        int | None, typer.Option(help="Only texts received before this, epoch ms (paging).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Inbound texts, newest first."""
    from worker.phone import mask, to_e164

    person = None
    if number is not None:
        region = connected(lambda root: root.settings.default_region)
        try:
            person = to_e164(number, region)
        except InvalidInput as exc:
            fail(f"number: {exc.reason}", 1, as_json=as_json)
    records = _log().list(limit, before_ms=before_ms, number=person)
    if as_json:
        emit({"inbound": [r.as_dict() for r in records]})
        return
    table = Table("id", "received", "from", "to", "provider", "campaign", "kind", "text")
    for r in records:
        people = (mask(r.sender), mask(r.to), r.provider, r.campaign or "", r.kind or "")
        table.add_row(r.id, _when(r.received_ms), *people, escape(r.body))
    out.print(table)


@app.command("show")
def inbound_show(inbound_id: str, as_json: JsonFlag = False) -> None:
    """One inbound text: who, to which number, what, and the text it answers."""
    from worker.phone import mask

    record = _log().get(inbound_id)
    if record is None:
        fail(f"no inbound text with id {inbound_id!r}", as_json=as_json)
    if as_json:
        emit({"inbound": record.as_dict()})
        return
    table = Table(title=f"inbound {inbound_id}", show_header=False)
    for name, value in record.as_dict().items():
        if value is None or value == "":
            continue
        shown = mask(str(value)) if name in ("from", "to") else str(value)
        if name.endswith("_ms") and isinstance(value, int):
            shown = f"{value} ({_when(value)})"
        table.add_row(name, escape(shown))
    out.print(table)
