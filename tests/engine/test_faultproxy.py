"""The fault-injecting proxy (issue 10 item 4) against real TCP servers of the test's own on 127.0.0.1.

Timing is asserted one-sided where the proxy guarantees it (a delay line never delivers early, a rate cap
never delivers more than rate x time); the few upper bounds are several times wider than the expected value.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.servers.faultproxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]
MB = 1_000_000


@dataclass
class _Served:
    """What one connection to a test server did: bytes read, and how it ended."""

    received: int = 0
    ended: str = ""  # "eof" or "reset" once the connection ended


@dataclass
class TcpServer:
    """A threaded echo or sink server on 127.0.0.1, recording every connection it served."""

    echo: bool
    conns: list[_Served] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            served = _Served()
            self.conns.append(served)
            threading.Thread(target=self._serve, args=(conn, served), daemon=True).start()

    def _serve(self, conn: socket.socket, served: _Served) -> None:
        buf = bytearray(1 << 20)
        with conn:
            try:
                while n := conn.recv_into(buf):
                    served.received += n
                    if self.echo:
                        conn.sendall(buf[:n])
                served.ended = "eof"
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                served.ended = "reset"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[TcpServer]:
    server = TcpServer(echo=True)
    yield server
    server.close()


@pytest.fixture
def sink() -> Iterator[TcpServer]:
    server = TcpServer(echo=False)
    yield server
    server.close()


def _connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(proxy.address, timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, str]:
    """Everything the peer sends, and "eof" or "reset" for how the connection ended."""
    chunks = []
    try:
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    except (ConnectionResetError, BrokenPipeError):
        return b"".join(chunks), "reset"
    return b"".join(chunks), "eof"


def _send_until_cut(sock: socket.socket, limit: int) -> str:
    """Send up to `limit` bytes; return how the connection ended ("reset", "eof") or "open" if it did not."""
    block = b"\x5a" * (64 << 10)
    try:
        for _ in range(limit // len(block)):
            sock.sendall(block)
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    return _read_until_closed(sock)[1]


def test_data_passes_byte_identical_both_ways_and_a_half_close_travels_through(echo: TcpServer) -> None:
    payload = random.Random(7).randbytes(6 * MB)
    with FaultProxy("127.0.0.1", echo.port) as proxy, _connect(proxy) as sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)  # the echo server ends when it reads EOF, then ends its side

        sender = threading.Thread(target=send)
        sender.start()
        back, how = _read_until_closed(sock)
        sender.join()
        assert how == "eof"
        assert hashlib.sha256(back).hexdigest() == hashlib.sha256(payload).hexdigest()
        assert echo.conns[0].ended == "eof"
        wait_for(lambda: proxy.stats().open == 0, timeout=10, what="the proxy to close both sides")
        stats = proxy.stats()
        assert (stats.accepted, stats.cuts, stats.bytes_up, stats.bytes_down) == (1, 0, len(payload), len(payload))


def test_a_connection_is_reset_when_it_has_carried_cut_every_bytes(sink: TcpServer) -> None:
    with FaultProxy("127.0.0.1", sink.port, cut_every=1 * MB) as proxy, _connect(proxy) as sock:
        assert _send_until_cut(sock, 32 * MB) == "reset"
        wait_for(lambda: sink.conns and sink.conns[0].ended, timeout=10, what="the server to see the cut")
        assert sink.conns[0].ended == "reset"
        assert sink.conns[0].received <= 1 * MB
        stats = proxy.stats()
        assert (stats.cuts, stats.bytes_up, stats.open) == (1, 1 * MB, 0)


def test_cut_jitter_spreads_the_cut_points_around_cut_every(sink: TcpServer) -> None:
    carried = []
    with FaultProxy("127.0.0.1", sink.port, cut_every=400_000, cut_jitter=0.25, seed=3) as proxy:
        for _ in range(6):
            before = proxy.bytes_up
            with _connect(proxy) as sock:
                assert _send_until_cut(sock, 8 * MB) == "reset"
            carried.append(proxy.bytes_up - before)
        assert proxy.cuts == 6
    assert all(300_000 <= n <= 500_000 for n in carried), carried
    assert len(set(carried)) > 1, carried


def test_cut_every_counts_both_directions_and_switching_it_off_lets_new_connections_through(echo: TcpServer) -> None:
    with FaultProxy("127.0.0.1", echo.port, cut_every=2 * MB) as proxy:
        with _connect(proxy) as sock, pytest.raises((ConnectionResetError, BrokenPipeError)):
            for _ in range(32 * 16):  # 64 KiB out, then its echo back
                sock.sendall(b"x" * (64 << 10))
                got = 0
                while got < 64 << 10:
                    chunk = sock.recv(64 << 10)
                    assert chunk, "the connection ended without a reset"
                    got += len(chunk)
        assert proxy.cuts == 1
        assert proxy.bytes_up + proxy.bytes_down == 2 * MB
        assert proxy.bytes_down >= 0.9 * MB  # the echoes counted towards the cut

        proxy.cut_every = None
        payload = os.urandom(3 * MB)
        with _connect(proxy) as sock:
            sender = threading.Thread(target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR)))
            sender.start()
            back, how = _read_until_closed(sock)
            sender.join()
        assert (back == payload, how, proxy.cuts) == (True, "eof", 1)


def test_latency_delays_each_direction(echo: TcpServer) -> None:
    with FaultProxy("127.0.0.1", echo.port, latency_ms=150) as proxy, _connect(proxy) as sock:
        for _ in range(3):
            start = time.monotonic()
            sock.sendall(b"ping")
            assert sock.recv(16) == b"ping"
            rtt = time.monotonic() - start
            assert 0.3 <= rtt < 5.0, rtt


def test_latency_is_a_delay_line_so_chunks_in_flight_overlap(echo: TcpServer) -> None:
    """12 messages 25 ms apart with 400 ms each way: a delay line echoes the last one after ~1.1 s;
    a proxy sleeping per chunk would need at least 12 x 0.4 s one way."""
    count, gap, latency = 12, 0.025, 0.4
    with FaultProxy("127.0.0.1", echo.port, latency_ms=latency * 1000) as proxy, _connect(proxy) as sock:
        sent: list[float] = []

        def send() -> None:
            for i in range(count):
                sent.append(time.monotonic())
                sock.sendall(i.to_bytes(4, "big") * 1024)
                time.sleep(gap)

        start = time.monotonic()
        sender = threading.Thread(target=send)
        sender.start()
        got = b""
        arrived = []
        while len(got) < count * 4096:
            got += sock.recv(1 << 16)
            while len(arrived) < len(got) // 4096:
                arrived.append(time.monotonic())
        sender.join()
        elapsed = time.monotonic() - start
    assert got == b"".join(i.to_bytes(4, "big") * 1024 for i in range(count))
    assert all(arrived[i] - sent[i] >= 2 * latency for i in range(count))
    assert elapsed < count * latency * 0.8, elapsed


def _stream_into(proxy: FaultProxy, stop: threading.Event) -> None:
    block = b"\0" * (64 << 10)
    with _connect(proxy) as sock, contextlib.suppress(OSError):
        while not stop.is_set():
            sock.sendall(block)


def _delivered_over(proxy: FaultProxy, sink: TcpServer, streams: int, seconds: float) -> tuple[int, float]:
    """Bytes the sink received from `streams` parallel connections over `seconds`, and the exact time taken."""
    stop = threading.Event()
    already = sum(c.received for c in sink.conns)
    start = time.monotonic()
    senders = [threading.Thread(target=_stream_into, args=(proxy, stop)) for _ in range(streams)]
    for sender in senders:
        sender.start()
    time.sleep(seconds)
    delivered = sum(c.received for c in sink.conns) - already
    elapsed = time.monotonic() - start
    stop.set()
    proxy.cut_all()  # unblocks senders stuck in sendall
    for sender in senders:
        sender.join()
    return delivered, elapsed


def test_rate_caps_each_connection_so_two_connections_move_about_twice_as_much(sink: TcpServer) -> None:
    rate = 1 * MB
    with FaultProxy("127.0.0.1", sink.port, rate=rate) as proxy:
        one, one_elapsed = _delivered_over(proxy, sink, 1, 2.0)
        two, two_elapsed = _delivered_over(proxy, sink, 2, 2.0)
    # A paced link releases a chunk only once its last byte has "crossed" it: never more than rate x time.
    assert one <= rate * one_elapsed * 1.02, (one, one_elapsed)
    assert one >= rate * one_elapsed * 0.25, (one, one_elapsed)
    # Two connections beat what any single capped connection could move.
    assert two > rate * two_elapsed * 1.3, (two, two_elapsed)
    assert two <= 2 * rate * two_elapsed * 1.02, (two, two_elapsed)


def test_rate_and_latency_can_be_changed_while_a_connection_is_open(echo: TcpServer) -> None:
    with FaultProxy("127.0.0.1", echo.port, latency_ms=2000, rate=1000) as proxy, _connect(proxy) as sock:
        proxy.latency_ms = 0
        proxy.rate = None
        start = time.monotonic()
        sock.sendall(b"x" * 100_000)
        got = b""
        while len(got) < 100_000:
            got += sock.recv(1 << 20)
        assert time.monotonic() - start < 20  # 100 s at the old rate, 4 s at the old latency alone


def test_cut_all_resets_every_open_connection_and_keeps_listening(echo: TcpServer) -> None:
    with FaultProxy("127.0.0.1", echo.port) as proxy:
        socks = [_connect(proxy) for _ in range(3)]
        for sock in socks:
            sock.sendall(b"hello")
            assert sock.recv(16) == b"hello"
        assert proxy.cut_all() == 3
        assert [_read_until_closed(sock)[1] for sock in socks] == ["reset"] * 3
        wait_for(lambda: all(c.ended for c in echo.conns), timeout=10, what="the server to see the cuts")
        assert [c.ended for c in echo.conns] == ["reset"] * 3
        assert (proxy.cuts, proxy.stats().open) == (3, 0)
        with _connect(proxy) as sock:
            sock.sendall(b"again")
            assert sock.recv(16) == b"again"
        for sock in socks:
            sock.close()


def test_stop_resets_open_connections_and_frees_the_port(echo: TcpServer) -> None:
    proxy = FaultProxy("127.0.0.1", echo.port).start()
    port = proxy.port
    sock = _connect(proxy)
    sock.sendall(b"hi")
    assert sock.recv(16) == b"hi"
    proxy.stop()
    assert _read_until_closed(sock)[1] == "reset"
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    again = socket.create_server(("127.0.0.1", port))  # nothing listens there any more
    again.close()
    assert proxy.cuts == 0  # stopping is not a fault
    proxy.stop()  # a second stop is harmless
    with pytest.raises(RuntimeError, match="cannot be restarted"):
        proxy.start()


def test_an_unreachable_target_closes_the_client_connection() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: the port refuses connections and stays ours
        with FaultProxy("127.0.0.1", closed.getsockname()[1]) as proxy:
            try:
                sock = _connect(proxy)
            except ConnectionResetError:
                pass  # the proxy's reset can arrive before connect() returns
            else:
                with sock:
                    assert _read_until_closed(sock) == (b"", "reset")
            wait_for(lambda: proxy.connect_failures, timeout=10, what="the proxy to fail to dial the target")
            assert (proxy.connect_failures, proxy.stats().open) == (1, 0)


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("cut_every", 0, "cut_every must be a positive byte count"),
        ("cut_jitter", 1.5, "cut_jitter must be in"),
        ("latency_ms", -1, "latency_ms must be in"),
        ("rate", 0, "rate must be a positive byte rate"),
    ],
)
def test_bad_knob_values_are_refused_at_creation_and_while_running(knob: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultProxy("127.0.0.1", 9, **{knob: value})  # type: ignore[arg-type]
    proxy = FaultProxy("127.0.0.1", 9)
    with pytest.raises(ValueError, match=message):
        setattr(proxy, knob, value)


def test_cli_prints_the_port_and_forwards_until_stopped(echo: TcpServer) -> None:
    cmd = [sys.executable, "-m", "tests.servers.faultproxy", "--target", f"127.0.0.1:{echo.port}", "--latency-ms", "5"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("faultproxy listening on 127.0.0.1:")
        port = int(proc.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"through the cli")
            assert sock.recv(64) == b"through the cli"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "accepted=1" in err


def test_cli_refuses_a_bad_target() -> None:
    cmd = [sys.executable, "-m", "tests.servers.faultproxy", "--target", "localhost"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "expected HOST:PORT, got 'localhost'" in done.stderr
