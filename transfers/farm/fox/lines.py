"""Choosing a transfer line (reference/sdk-spec.md §5.1), by measurement rather than by the farm's flag.

The SDK takes the line the farm flags as default, or the one named by `internet_provider`, and never
looks whether it answers. Here the given server_ip/server_port still win, a named provider still picks
by exact name (and a wrong name lists the known ones), but otherwise each line's TCP connect time is
measured and the quickest one is used; the reason for the choice is kept for people to read. The
engine `raysyncproxy` uses the `raysync` lines (the SDK fails on it with a KeyError, §8 #13).
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from transfers.farm.base import TransferLine

Measure = Callable[[str, int, float], "float | None"]
ENGINE_ALIASES = {"raysyncproxy": "raysync"}


class LineNotFound(ValueError):
    """No line fits what was asked (no line for the engine, or no line of that name)."""


class LineUnreachable(Exception):
    """The chosen line (or every line) refused or did not answer a TCP connection."""

    def __init__(self, failures: list[tuple[TransferLine, str]], *, engine: str) -> None:
        said = "; ".join(f"line {line.name!r} ({line.server}:{line.port}) cannot be reached: {why}" for line, why in failures)
        prefix = f"no {engine} line can be reached: " if len(failures) > 1 else ""
        super().__init__(prefix + said)
        self.lines = [line for line, _ in failures]


@dataclass(frozen=True)
class LineChoice:
    engine: str
    name: str
    host: str
    port: int
    reason: str  # for people: why this line
    measured: dict[str, float | None] = field(default_factory=dict)  # line name -> connect seconds (None: unreachable)


def probe(host: str, port: int, timeout: float = 2.0) -> tuple[float | None, str]:
    """The TCP connect time in seconds, or None with why not ("connection refused", "timed out", ...)."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return time.monotonic() - started, ""
    except TimeoutError:
        return None, f"no answer in {timeout:g}s"
    except ConnectionRefusedError:
        return None, "connection refused"
    except OSError as exc:
        return None, errno.errorcode.get(exc.errno or 0, "").lower().lstrip("e") or str(exc) or type(exc).__name__


def connect_time(host: str, port: int, timeout: float = 2.0) -> float | None:
    """Seconds a TCP connection to host:port took to open; None when refused or timed out."""
    return probe(host, port, timeout)[0]


def measure_all(
    lines: Iterable[TransferLine], timeout: float = 2.0, *, measure: Measure = connect_time
) -> dict[str, float | None]:
    """Every line's connect time, measured at once (in threads), by line name."""
    return {name: seconds for name, (seconds, _) in _measured(list(lines), timeout, measure).items()}


def _measured(lines: list[TransferLine], timeout: float, measure: Measure) -> dict[str, tuple[float | None, str]]:
    """(seconds or None, why not) by line name; the reason is known when measuring with connect_time."""

    def one(line: TransferLine) -> tuple[float | None, str]:
        if measure is connect_time:
            return probe(line.server, line.port, timeout)
        seconds = measure(line.server, line.port, timeout)
        return seconds, "" if seconds is not None else "no connection"

    if not lines:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(lines)), thread_name_prefix="fox-line") as pool:
        results = list(pool.map(one, lines))
    return {line.name: result for line, result in zip(lines, results, strict=True)}


def engine_of(name: str) -> str:
    key = (name or "").strip().lower()
    return ENGINE_ALIASES.get(key, key)


def choose_line(
    lines: Iterable[TransferLine],
    *,
    engine: str,
    automatic_line: bool = True,
    internet_provider: str = "",
    server_ip: str | None = None,
    server_port: int | None = None,
    static_lines: Iterable[TransferLine] = (),
    measure: Measure = connect_time,
    timeout: float = 2.0,
) -> LineChoice:
    """The line a transfer with these options uses. LineNotFound when none fits, LineUnreachable when the
    chosen line (or, when measuring, every line) cannot be connected to."""
    wanted = engine_of(engine)
    pool = list(lines) if automatic_line else list(static_lines)
    # A static line without an engine serves every engine.
    candidates = sorted((line for line in pool if engine_of(line.engine) in (wanted, "")), key=lambda line: not line.is_default)
    source = "the farm's lines" if automatic_line else "the account's own lines"

    def reach(line: TransferLine) -> float:
        seconds, why = _measured([line], timeout, measure)[line.name]
        if seconds is None:
            raise LineUnreachable([(line, why)], engine=wanted)
        return seconds

    def chosen(line: TransferLine, reason: str, measured: dict[str, float | None]) -> LineChoice:
        return LineChoice(wanted, line.name, line.server, line.port, reason, measured)

    if server_ip or server_port:
        base = _named(candidates, internet_provider, wanted) if internet_provider else (candidates[0] if candidates else None)
        port = server_port or (base.port if base else None)
        host = server_ip or (base.server if base else None)
        if not host or not port:
            raise LineNotFound(f"give both server_ip and server_port: {source} have no {wanted} line to take one from")
        name = base.name if base and not server_ip else "server_ip"
        line = TransferLine(name=name, engine=wanted, server=host, port=int(port))
        seconds = reach(line)
        given = " and ".join(key for key, value in (("server_ip", server_ip), ("server_port", server_port)) if value)
        rest = f" (the rest from line {base.name!r})" if base and not (server_ip and server_port) else ""
        return chosen(line, f"{given} given: they override {source}{rest} ({_ms(seconds)} to connect)", {line.name: seconds})
    if not candidates:
        raise LineNotFound(f"{source} give no {wanted} line")
    if internet_provider:
        line = _named(candidates, internet_provider, wanted)
        seconds = reach(line)
        return chosen(line, f"internet_provider {internet_provider!r} names it ({_ms(seconds)} to connect)", {line.name: seconds})
    results = _measured(candidates, timeout, measure)
    measured = {name: seconds for name, (seconds, _) in results.items()}
    reachable = [line for line in candidates if measured[line.name] is not None]
    if not reachable:
        raise LineUnreachable([(line, results[line.name][1]) for line in candidates], engine=wanted)
    best = min(reachable, key=lambda line: measured[line.name] or 0.0)
    times = ", ".join(f"{name} {_ms(seconds)}" for name, seconds in measured.items())
    return chosen(best, f"the quickest to connect of {source} for {wanted}: {times}", measured)


def _named(candidates: list[TransferLine], name: str, engine: str) -> TransferLine:
    for line in candidates:
        if line.name == name:
            return line
    known = ", ".join(repr(line.name) for line in candidates) or "none"
    raise LineNotFound(f"no {engine} line is named {name!r} (internet_provider); the known ones: {known}")


def _ms(seconds: float | None) -> str:
    return "unreachable" if seconds is None else f"{seconds * 1000:.0f} ms"
