"""A worker host of its own: a network namespace joined to this one by a veth pair.

``Partition`` makes a namespace, a veth pair and a private /30 (10.213.X.0/30,
X from the test's pid: host side .1, namespace side .2), and forwards the
namespace's connections to services that listen on this host's loopback (Redis,
the simulator), so nothing else has to listen on another interface. Cutting
the link (``ip link set <host end> down``) is a real partition: the namespace's
packets vanish, with no RST and no error, as when a host's network goes; TCP
connections stall and resume when the link comes back.

A forwarded port may be given a one-way latency (``latency_s``), as a provider
across a WAN is: the bytes spend that long on the wire. A cut finds some of
them there; TCP delivers them when the link is back (the sender retransmits
what was lost), so the forwarder holds them until ``restore()``. On a bare
veth the wire is microseconds long and a cut almost never finds a request on
it; at 30 ms it finds a few in every cut, as a real partition does.

Everything made here is removed in ``close()`` (the namespace, the veth pair,
the forwarders), also after a failure. ``available()`` says why namespaces
cannot be used here, if they cannot (not root, no ``ip``, a sandbox that
forbids them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from worker.services import Stack, sendq_argv

CHUNK_BYTES = 65_536
LOOPBACK = "127.0.0.1"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=10)


def available() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "ip netns needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    probe = f"sqprobe{os.getpid() % 100_000}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    veth = _ip("link", "add", f"{probe}a", "type", "veth", "peer", "name", f"{probe}b", check=False)
    _ip("link", "del", f"{probe}a", check=False)
    _ip("netns", "del", probe, check=False)
    if veth.returncode != 0:
        return f"veth pairs are not permitted here: {veth.stderr.strip()}"
    return None


class Partition:
    """A namespace whose processes reach this host's ``ports`` on loopback through a
    veth link that ``cut()`` takes down and ``restore()`` brings back."""

    def __init__(self, ports: Iterable[int], latency_s: dict[int, float] | None = None) -> None:
        tag = os.getpid() % 10_000
        self.name = f"sqdbl{tag}"
        self.host_end, self.ns_end = f"sqv{tag}h", f"sqv{tag}n"
        subnet = tag % 250
        self.host_ip, self.ns_ip = f"10.213.{subnet}.1", f"10.213.{subnet}.2"
        self.ports = sorted(set(ports))
        self.latency_s = dict(latency_s or {})
        self._loop = asyncio.new_event_loop()
        # Clear while the link is cut: bytes on the wire wait for it.
        self._up = asyncio.Event()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()

    def open(self) -> Partition:
        try:
            self._link()
            self._thread.start()
            self._loop.call_soon_threadsafe(self._up.set)
            for port in self.ports:
                future = asyncio.run_coroutine_threadsafe(self._listen(port), self._loop)
                self._servers.append(future.result(10))
        except BaseException:
            self.close()
            raise
        return self

    def _link(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.ns_end)
        _ip("link", "set", self.ns_end, "netns", self.name)
        _ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_end)
        _ip("link", "set", self.host_end, "up")
        _ip("-n", self.name, "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_end)
        _ip("-n", self.name, "link", "set", self.ns_end, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def argv(self, argv: list[str]) -> list[str]:
        """``argv`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def reach(self, value: str) -> str:
        """A URL (or any setting) naming this host's loopback, as the namespace reaches it."""
        return value.replace(f"{LOOPBACK}:", f"{self.host_ip}:")

    def cut(self) -> None:
        """The worker host's network goes: its packets are dropped from now on."""
        self._loop.call_soon_threadsafe(self._up.clear)
        _ip("link", "set", self.host_end, "down")

    def restore(self) -> None:
        _ip("link", "set", self.host_end, "up")
        self._loop.call_soon_threadsafe(self._up.set)

    def close(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shut(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        # Deleting one end of a veth pair deletes both; the namespace goes last.
        _ip("link", "del", self.host_end, check=False)
        _ip("netns", "del", self.name, check=False)

    def __enter__(self) -> Partition:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- forwarding: host_ip:port -> 127.0.0.1:port -------------------------------------

    async def _listen(self, port: int) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._forward(reader, writer, port)

        return await asyncio.start_server(handle, self.host_ip, port, reuse_address=True)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(LOOPBACK, port)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, up_writer}
        self._writers |= pair
        delay_s = self.latency_s.get(port, 0.0)
        try:
            await asyncio.gather(
                _pipe(reader, up_writer, delay_s, self._up),
                _pipe(up_reader, writer, delay_s, self._up),
            )
        finally:
            self._writers -= pair
            for w in pair:
                w.close()

    async def _shut(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)


async def _pipe(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    delay_s: float = 0.0,
    up: asyncio.Event | None = None,
) -> None:
    """Copy until EOF, then pass the EOF on (half-close), so protocols see what was sent;
    each chunk ``delay_s`` late, and not while the link is cut (``up`` clear)."""
    wire: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    delivering = asyncio.create_task(_deliver(wire, writer, up))
    try:
        while chunk := await reader.read(CHUNK_BYTES):
            wire.put_nowait((loop.time() + delay_s, chunk))
        wire.put_nowait((loop.time() + delay_s, b""))  # the EOF travels too
        await delivering
    except (ConnectionError, OSError):
        delivering.cancel()
        writer.transport.abort()


async def _deliver(
    wire: asyncio.Queue[tuple[float, bytes]],
    writer: asyncio.StreamWriter,
    up: asyncio.Event | None,
) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due, chunk = await wire.get()
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        if up is not None:
            await up.wait()  # on the wire when the link went: it arrives once it is back
        if not chunk:
            if writer.can_write_eof():
                writer.write_eof()
            return
        writer.write(chunk)
        await writer.drain()


def start_worker(
    partition: Partition, stack: Stack, name: str, threads: int = 16
) -> subprocess.Popen[bytes]:
    """A ``sendq worker`` host inside the namespace, reaching Redis and the simulator
    through the link (only what a worker dials is rewritten; callbacks stay); the
    stack stops it with its own processes."""
    env = stack.env()
    for key, value in env.items():
        if key == "SENDQ_REDIS_URL" or key.endswith("__BASE_URL") or key.endswith("LOOKUP_URL"):
            env[key] = partition.reach(value)
    argv = sendq_argv("worker", "--processes", "1", "--threads", str(threads))
    stack.workdir.mkdir(parents=True, exist_ok=True)
    log = open(stack.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        partition.argv(argv),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    stack.procs[name] = proc
    return proc


def poll(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.005) -> None:
    """Wait for ``predicate``, looking often: a cut is timed to a few milliseconds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(every_s)
