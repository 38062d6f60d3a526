"""Provider ports: one TCP gate per provider, which a refuse rule can really close.

On the shared main port every provider's requests arrive on one listening
socket, so one provider cannot be made unreachable alone. With
``--provider-port telnyx=8701`` the simulator also listens on 8701 and
forwards every byte to the main port; sendq's Telnyx base URL points there.
While a ``refuse`` rule for Telnyx is in its window, the gate stops listening
(a connect gets ECONNREFUSED, as from a provider that is down) and cuts the
connections it holds (as a crashed server would); when the window ends it
listens again on the same port. ``GateKeeper`` checks the scenario every
``DEFAULT_CHECK_S`` (50 ms), so a window opens and closes within that.

Forwarding costs a copy of each request and answer; the main port stays the
fast path (the benchmark's ceiling is measured there).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("sendq.simulator.gate")

DEFAULT_CHECK_S = 0.05
CHUNK_BYTES = 65_536
# Hosts that listen on every interface are reached on loopback.
_LOOPBACK_FOR = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}


def upstream_host(host: str) -> str:
    return _LOOPBACK_FOR.get(host, host)


class Gate:
    """Listens on a provider's port and forwards each connection to the main port."""

    def __init__(self, provider: str, host: str, port: int, upstream: tuple[str, int]) -> None:
        self.provider = provider
        self.host = host
        # 0 picks a free port the first time; later openings reuse the one picked.
        self.port = port
        self.upstream = upstream
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def is_open(self) -> bool:
        return self._server is not None

    async def open(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> int:
        """Stop listening and cut every forwarded connection; returns how many were cut."""
        server, self._server = self._server, None
        cut = len(self._writers)
        for writer in list(self._writers):
            writer.transport.abort()  # RST, as from a server that went away
        self._writers.clear()
        if server is not None:
            server.close()
            await server.wait_closed()
        return cut

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self._writers |= pair
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers -= pair
            for w in pair:
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (half-close), so HTTP framing is untouched."""
    try:
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


class GateKeeper:
    """Opens and closes the gates as the scenario's refuse rules say."""

    def __init__(
        self,
        gates: list[Gate],
        refusing: Callable[[str], bool],
        on_cut: Callable[[str, int], None],
        check_s: float = DEFAULT_CHECK_S,
    ) -> None:
        self.gates = gates
        self._refusing = refusing
        self._on_cut = on_cut
        self._check_s = check_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for gate in self.gates:
            await gate.open()
        if self.gates:
            self._task = asyncio.create_task(self._watch())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for gate in self.gates:
            await gate.close()

    async def _watch(self) -> None:
        while True:
            for gate in self.gates:
                await self._settle(gate)
            await asyncio.sleep(self._check_s)

    async def _settle(self, gate: Gate) -> None:
        refuse = self._refusing(gate.provider)
        if refuse and gate.is_open:
            self._on_cut(gate.provider, await gate.close())
        elif not refuse and not gate.is_open:
            try:
                await gate.open()
            except OSError as exc:  # the port was taken meanwhile: try again next tick
                log.warning("cannot reopen %s's port %d: %s", gate.provider, gate.port, exc)
