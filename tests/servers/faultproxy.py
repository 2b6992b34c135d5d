"""A fault-injecting TCP proxy of the tests' own: connection cuts, one-way latency and a per-connection rate cap.

Tests and benchmarks put it between rvweb and a real server on 127.0.0.1 (sshd, an S3 server):

    with FaultProxy("127.0.0.1", sshd_port, cut_every=4_000_000, latency_ms=50, rate=10_000_000) as proxy:
        ...connect to proxy.port...
        assert proxy.cuts >= 1

Each direction of each connection is modelled as a link: bytes are read from one side, serialised at `rate`
bytes/s (when set), held for `latency_ms` (a delay line: every chunk carries its release time, so the delay
does not cap the throughput), then written to the other side. The link holds at most what is "on the wire"
(rate x latency) plus a little slack, or `queue_limit` bytes without a rate (so with latency and no rate a
connection moves at most queue_limit / latency: 16 MiB / 50 ms = 335 MB/s); beyond that the proxy stops
reading and TCP flow control pushes back on the sender.

Throughput on this machine's loopback with no faults: about 1.5 GB/s through the proxy (one or four streams)
against 4-5 GB/s direct. The proxy shares the GIL with whatever else runs in its process: a benchmark
whose client is Python too is fairer with the proxy in a process of its own (the CLI below).

`cut_every` counts the bytes a connection carried (both directions together); when the count reaches the
threshold (x (1 +/- cut_jitter), drawn per connection from a seeded RNG) both sides are reset (SO_LINGER 0).
Every knob may be changed while the proxy runs; the new value applies from the next chunk read.

The proxy runs an asyncio loop in a daemon thread. Manual use:
`python -m tests.servers.faultproxy --target 127.0.0.1:22 --cut-every 4000000 --latency-ms 50 --rate 10000000`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import random
import signal
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from types import TracebackType

_READ_CHUNK = 256 << 10  # bytes per recv_into: as fast as 1 MiB here, and a quarter of the memory per connection
_QUEUE_LIMIT = 16 << 20  # default bytes held per direction when no rate is set
_WRITE_HIGH_WATER = 4 << 20  # transport write buffer at which the proxy stops reading the other side
_RATE_SLICE = 0.01  # with a rate, read at most 10 ms worth of bytes at a time, so the pacing stays smooth
_RATE_SLACK = 0.02  # ... and queue at most 20 ms worth beyond what is on the wire
_MIN_RATE_CHUNK = 16 << 10
_LINGER_RESET = struct.pack("ii", 1, 0)


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of the proxy's counters; `cuts` counts `cut_every` cuts and connections dropped by `cut_all()`."""

    accepted: int
    open: int
    cuts: int
    connect_failures: int
    bytes_up: int  # client -> target, bytes read from clients
    bytes_down: int  # target -> client, bytes read from the target


class _Side(asyncio.BufferedProtocol):
    """One socket of a proxied connection (the accepted client or the dialled target)."""

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.inbound: _Pipe | None = None  # the pipe this side feeds
        self.outbound: _Pipe | None = None  # the pipe that writes to this side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_WRITE_HIGH_WATER)
        self.conn.side_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        assert self.inbound is not None
        return self.inbound.read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        assert self.inbound is not None
        self.inbound.feed(nbytes)

    def eof_received(self) -> bool:
        assert self.inbound is not None
        self.inbound.source_eof()
        return True  # keep the other direction open: a half-close travels through

    def pause_writing(self) -> None:
        assert self.outbound is not None
        self.outbound.dest_paused = True
        self.outbound.update_reading()

    def resume_writing(self) -> None:
        assert self.outbound is not None
        self.outbound.dest_paused = False
        self.outbound.update_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.side_lost(exc)


class _Pipe:
    """One direction of a connection: read from `src`, delay and pace, write to `dst`."""

    def __init__(self, conn: _Conn, src: _Side, dst: _Side, *, upstream: bool) -> None:
        self.conn = conn
        self.proxy = conn.proxy
        self.src, self.dst = src, dst
        src.inbound, dst.outbound = self, self
        self.upstream = upstream
        self.buffer = memoryview(bytearray(_READ_CHUNK))
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()
        self.pending = 0  # bytes in `queue`
        self.link_free = 0.0  # when the paced link has serialised everything read so far
        self.timer: asyncio.TimerHandle | None = None
        self.dest_paused = False
        self.eof = False
        self.eof_sent = False

    def read_buffer(self) -> memoryview:
        size = _READ_CHUNK
        rate = self.proxy.rate
        if rate is not None:
            size = min(size, max(_MIN_RATE_CHUNK, int(rate * _RATE_SLICE)))
        left = self.conn.bytes_before_cut()
        if left is not None:
            size = min(size, max(1, left))
        return self.buffer[:size]

    def feed(self, nbytes: int) -> None:
        data = bytes(self.buffer[:nbytes])  # a copy: the read buffer is reused, the queue may keep this
        proxy, loop = self.proxy, self.proxy.loop
        if self.upstream:
            proxy.bytes_up += nbytes
        else:
            proxy.bytes_down += nbytes
        self.conn.carried += nbytes
        now = loop.time()
        rate = proxy.rate
        if rate is None:
            self.link_free = now
        else:
            self.link_free = max(self.link_free, now) + nbytes / rate
        release = self.link_free + proxy.latency_ms / 1000.0
        if not self.queue and release <= now:
            self._write(data)
        else:
            self.queue.append((release, data))
            self.pending += nbytes
            if self.timer is None:
                self.timer = loop.call_at(self.queue[0][0], self.release)
        left = self.conn.bytes_before_cut()
        if left is not None and left <= 0:
            self.conn.reset(counted=True)
            return
        self.update_reading()

    def release(self) -> None:
        self.timer = None
        now = self.proxy.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            self.pending -= len(data)
            self._write(data)
        if self.queue:
            self.timer = self.proxy.loop.call_at(self.queue[0][0], self.release)
        elif self.eof:
            self._send_eof()
        self.update_reading()

    def source_eof(self) -> None:
        self.eof = True
        if not self.queue:
            self._send_eof()

    def update_reading(self) -> None:
        """Stop reading the source while the link or the destination's write buffer is full; resume after."""
        transport = self.src.transport
        if transport is None or transport.is_closing() or self.eof or self.conn.connecting:
            return
        full = self.dest_paused or self.pending >= self._limit()
        if full and transport.is_reading():
            transport.pause_reading()
        elif not full and not transport.is_reading():
            transport.resume_reading()

    def drop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        self.pending = 0

    def _limit(self) -> int:
        proxy = self.proxy
        if proxy.rate is None:
            return proxy.queue_limit
        on_wire = proxy.rate * proxy.latency_ms / 1000.0
        slack = max(_MIN_RATE_CHUNK * 4, proxy.rate * _RATE_SLACK)
        return min(proxy.queue_limit, int(on_wire + slack))

    def _write(self, data: bytes) -> None:
        transport = self.dst.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def _send_eof(self) -> None:
        transport = self.dst.transport
        if not self.eof_sent and transport is not None and not transport.is_closing():
            self.eof_sent = True
            transport.write_eof()
        self.conn.maybe_finish()


class _Conn:
    """A proxied connection: the accepted client side, the target side and a pipe each way."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.proxy = proxy
        self.client = _Side(self)
        self.target = _Side(self)
        self.up = _Pipe(self, self.client, self.target, upstream=True)
        self.down = _Pipe(self, self.target, self.client, upstream=False)
        self.cut_factor = proxy.rng.uniform(-1.0, 1.0)
        self.carried = 0
        self.connecting = True
        self.done = False
        self.dial: asyncio.Task[None] | None = None

    def bytes_before_cut(self) -> int | None:
        every = self.proxy.cut_every
        if every is None:
            return None
        threshold = max(1, round(every * (1.0 + self.proxy.cut_jitter * self.cut_factor)))
        return threshold - self.carried

    def side_made(self, side: _Side) -> None:
        assert side.transport is not None
        if side is self.client:
            side.transport.pause_reading()  # until the target answers
            self.proxy.accepted_conn(self)
            self.dial = self.proxy.loop.create_task(self._connect())
        elif self.done:  # the connection was cut while the target was being dialled
            _abort_with_reset(side.transport)

    async def _connect(self) -> None:
        proxy = self.proxy
        try:
            await proxy.loop.create_connection(lambda: self.target, proxy.target_host, proxy.target_port)
        except OSError:
            proxy.connect_failures += 1
            self.reset(counted=False)
            return
        self.connecting = False
        if self.done:
            return
        self.up.update_reading()
        self.down.update_reading()

    def maybe_finish(self) -> None:
        """Both directions ended cleanly: close both sockets once their buffers are flushed."""
        if self.up.eof_sent and self.down.eof_sent and not self.done:
            self.done = True
            self.proxy.forget(self)
            for side in (self.client, self.target):
                if side.transport is not None:
                    side.transport.close()

    def side_lost(self, exc: Exception | None) -> None:
        if not self.done:
            self.reset(counted=False)  # one side reset or failed: the other side is reset as well

    def reset(self, *, counted: bool) -> None:
        """Drop the connection now: discard what is in flight and send RST to both sides."""
        if self.done:
            return
        if counted:
            self.proxy.cuts += 1
        self.done = True
        self.proxy.forget(self)
        self.up.drop()
        self.down.drop()
        if self.dial is not None and not self.dial.done() and self.connecting:
            self.dial.cancel()
        for side in (self.client, self.target):
            if side.transport is not None:
                _abort_with_reset(side.transport)


def _abort_with_reset(transport: asyncio.Transport) -> None:
    """Close at once with RST (SO_LINGER 0), as a cut network path looks to the peer, rather than FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the socket may already be gone
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that injects cuts, latency and a per-connection rate cap (see the module doc)."""

    loop: asyncio.AbstractEventLoop  # made by start(); the proxy's own loop, run in a daemon thread

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        cut_every: int | None = None,
        cut_jitter: float = 0.0,
        latency_ms: float = 0.0,
        rate: int | None = None,
        seed: int = 0,
        listen_port: int = 0,
        queue_limit: int = _QUEUE_LIMIT,
    ) -> None:
        if not 0 < target_port < 65536:
            raise ValueError(f"target port must be 1-65535, got {target_port}")
        if queue_limit < _READ_CHUNK:
            raise ValueError(f"queue_limit must be at least {_READ_CHUNK} bytes, got {queue_limit}")
        self.target_host = target_host
        self.target_port = target_port
        self.cut_every = cut_every
        self.cut_jitter = cut_jitter
        self.latency_ms = latency_ms
        self.rate = rate
        self.queue_limit = queue_limit
        self.listen_port = listen_port
        self.rng = random.Random(seed)
        self.accepted = 0
        self.cuts = 0
        self.connect_failures = 0
        self.bytes_up = 0
        self.bytes_down = 0
        self._conns: set[_Conn] = set()
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._stopped = False

    # -- knobs, validated so a bad value fails where it is set, not inside the loop thread

    @property
    def cut_every(self) -> int | None:
        return self._cut_every

    @cut_every.setter
    def cut_every(self, value: int | None) -> None:
        if value is not None and value <= 0:
            raise ValueError(f"cut_every must be a positive byte count or None, got {value}")
        self._cut_every = value

    @property
    def cut_jitter(self) -> float:
        return self._cut_jitter

    @cut_jitter.setter
    def cut_jitter(self, value: float) -> None:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"cut_jitter must be in [0, 1), got {value}")
        self._cut_jitter = value

    @property
    def latency_ms(self) -> float:
        return self._latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        if not 0.0 <= value <= 60_000.0:
            raise ValueError(f"latency_ms must be in [0, 60000], got {value}")
        self._latency_ms = float(value)

    @property
    def rate(self) -> int | None:
        return self._rate

    @rate.setter
    def rate(self, value: int | None) -> None:
        if value is not None and value <= 0:
            raise ValueError(f"rate must be a positive byte rate or None, got {value}")
        self._rate = value

    # -- lifecycle

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the proxy is not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self) -> FaultProxy:
        if self._stopped:
            raise RuntimeError("a stopped proxy cannot be restarted; make a new one")
        if self._thread is not None:
            raise RuntimeError("the proxy is already started")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"faultproxy->{self.target_port}", daemon=True)
        self._thread.start()
        try:
            self._server = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(timeout=30)
        except BaseException:
            self._halt()
            raise
        self._port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close the listening socket and reset every open connection; the port is free on return."""
        if self._thread is None or self._stopped:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout=30)
        self._halt()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def cut_all(self) -> int:
        """Reset every open connection now (the proxy keeps listening); returns how many were cut."""
        if self._thread is None or self._stopped:
            raise RuntimeError("the proxy is not running")
        return asyncio.run_coroutine_threadsafe(self._cut_all(), self.loop).result(timeout=30)

    def stats(self) -> ProxyStats:
        return ProxyStats(
            accepted=self.accepted,
            open=len(self._conns),
            cuts=self.cuts,
            connect_failures=self.connect_failures,
            bytes_up=self.bytes_up,
            bytes_down=self.bytes_down,
        )

    # -- loop side

    def accepted_conn(self, conn: _Conn) -> None:
        self.accepted += 1
        self._conns.add(conn)

    def forget(self, conn: _Conn) -> None:
        self._conns.discard(conn)

    async def _listen(self) -> asyncio.Server:
        return await self.loop.create_server(lambda: _Conn(self).client, "127.0.0.1", self.listen_port, backlog=512)

    async def _cut_all(self) -> int:
        conns = list(self._conns)
        for conn in conns:
            conn.reset(counted=True)
        await asyncio.sleep(0)  # let the transports close their sockets
        return len(conns)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        for conn in list(self._conns):
            conn.reset(counted=False)
        await self._server.wait_closed()
        for _ in range(3):  # the transports close their sockets in callbacks scheduled by abort()
            await asyncio.sleep(0)

    def _halt(self) -> None:
        self._stopped = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self._thread is not None
        self._thread.join(timeout=30)
        self.loop.close()


_DESCRIPTION = "A TCP proxy on 127.0.0.1 that cuts connections, adds latency and caps each connection's rate."


def _target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.servers.faultproxy", description=_DESCRIPTION)
    parser.add_argument("--target", type=_target, required=True, help="HOST:PORT to forward to")
    parser.add_argument("--listen-port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--cut-every", type=int, default=None, help="reset a connection after about this many bytes")
    parser.add_argument("--cut-jitter", type=float, default=0.0, help="randomise cut-every by +/- this fraction")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="one-way delay added to each direction")
    parser.add_argument("--rate", type=int, default=None, help="per-connection cap in bytes/s, each direction")
    parser.add_argument("--seed", type=int, default=0, help="seed for the cut jitter")
    args = parser.parse_args(argv)
    host, port = args.target
    try:
        proxy = FaultProxy(
            host,
            port,
            cut_every=args.cut_every,
            cut_jitter=args.cut_jitter,
            latency_ms=args.latency_ms,
            rate=args.rate,
            seed=args.seed,
            listen_port=args.listen_port,
        )
        proxy.start()
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"faultproxy listening on 127.0.0.1:{proxy.port} -> {host}:{port}", flush=True)
    print(proxy.port, flush=True)
    stop.wait()
    proxy.stop()
    print(f"faultproxy stopped: {proxy.stats()}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
