"""The transmitter's command line, built as the SDK builds it (RayvisionTransfer.create_cmd), minus
its shell: an argv list, so a path with a quote or a `$` is just a path (SDK bug #18).

Two documented differences from the SDK (checked by tests/engine/test_transmitter_sdk_parity.py):

* `-C` is left out when there is no DB config; the SDK passes the literal string "None" (bug #31).
* `network_mode` keeps the SDK's meaning (0 auto, 1 TCP, 2 UDP) and is translated to the
  transmitter's `-p` (0 UDP first, 1 UDP, 2 TCP): 0->0, 1->2, 2->1. The SDK passes it through, which
  would ask for the opposite protocol where it is honoured (bug #15).

Secrets never go into argv (any user on the host can read it in /proc): `env()` takes them as
environment variables only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Engine = Literal["aspera", "raysync"]
TransmitType = Literal["upload_json", "upload_list", "upload_path", "download_path", "download_list"]

ENGINES: frozenset[str] = frozenset({"aspera", "raysync"})
TRANSMIT_TYPES: frozenset[str] = frozenset({"upload_json", "upload_list", "upload_path", "download_path", "download_list"})
SDK_MAX_SPEED = 1048576  # KB/s: the SDK's default when max_speed is None, also the binary's maximum
STDIN = b"y\n"  # the SDK pipes `echo y|` into the binary
# SDK network_mode (0 auto, 1 TCP, 2 UDP) -> the transmitter's -p (0 UDP first, 1 UDP, 2 TCP)
_PROTOCOL = {0: 0, 1: 2, 2: 1}
_HOST = re.compile(r"[A-Za-z0-9_\[][A-Za-z0-9._:\[\]-]*")  # a name, IPv4 or [IPv6]; never a leading "-"
_PASSED = frozenset({"PATH", "HOME", "LANG", "TZ", "USER", "LOGNAME"})


@dataclass(frozen=True)
class TransmitSpec:
    """One transmitter run, in the SDK's terms (see sdk-spec §5.2 for each flag)."""

    exe: str
    engine: Engine
    host: str
    port: int | str
    storage_id: int | str
    user_id: int | str
    transmit_type: TransmitType
    local: str
    remote: str = "/"
    keep_path: str = "false"
    max_speed: int | None = None  # KB/s; None -> SDK_MAX_SPEED, as the SDK
    retries: int = 2
    network_mode: int = 0
    db_config: str | None = None
    extra_env: tuple[tuple[str, str], ...] = ()  # non-secret variables, e.g. RAYVISION_LOG_INI
    silence: float | None = None  # seconds without an output line after which the run is stopped and retried

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown transmitter engine {self.engine!r} (aspera or raysync)")
        if self.transmit_type not in TRANSMIT_TYPES:
            raise ValueError(f"unknown transmit type {self.transmit_type!r}")
        if self.network_mode not in _PROTOCOL:
            raise ValueError(f"network_mode must be 0 (auto), 1 (TCP) or 2 (UDP), got {self.network_mode!r}")
        if self.keep_path not in ("true", "false"):
            raise ValueError(f"keep_path must be 'true' or 'false', got {self.keep_path!r}")
        if self.max_speed is not None and not 0 < int(self.max_speed) <= SDK_MAX_SPEED:
            raise ValueError(f"max_speed must be 1..{SDK_MAX_SPEED} KB/s, got {self.max_speed!r}")
        # Values come from the farm (a line's server) and the job: none may read as another flag of the
        # binary ("-C /x" as a host), whatever its option parser does with a value that starts with "-".
        if not _HOST.fullmatch(str(self.host)):
            raise ValueError(f"the line's server {self.host!r} is not a host name or an IP address")
        if not 0 < int(self.port) < 65_536:
            raise ValueError(f"the line's port {self.port!r} is not 1..65535")
        for name in ("storage_id", "user_id"):
            if not str(getattr(self, name)).isdigit():
                raise ValueError(f"{name} {getattr(self, name)!r} is not a number (the farm's ids are)")
        for name in ("local", "remote"):
            if str(getattr(self, name)).startswith("-"):
                raise ValueError(f"{name} path {getattr(self, name)!r} starts with '-'")

    @property
    def speed(self) -> int:
        return SDK_MAX_SPEED if self.max_speed is None else int(self.max_speed)

    def argv(self) -> list[str]:
        """The SDK's arguments in the SDK's order, without the shell and its quotes."""
        args = [
            self.exe,
            *("-E", self.engine),
            *("-H", self.host),
            *("-P", str(self.port)),
            *("-S", str(self.storage_id)),
            *("-U", str(self.user_id)),
            *("-T", self.transmit_type),
            *("-L", self.local),
            *("-R", self.remote),
            *("-r", str(self.retries)),
            *("-K", self.keep_path),
            *("-s", str(self.speed)),
        ]
        if self.db_config is not None:
            args += ["-C", self.db_config]
        return [*args, "-p", str(_PROTOCOL[self.network_mode])]

    def env(self, log_dir: Path, secrets: Mapping[str, str] | None = None) -> dict[str, str]:
        """The process environment: the binary's folder for its libraries, its log folder (in the
        data dir: /tmp is shared), and any secret as an environment variable.

        Only a few variables of ours are passed on (locale, PATH, HOME): the worker's environment may
        hold a database URL or keys that a vendor binary has no business seeing.
        """
        env = {name: value for name, value in os.environ.items() if name in _PASSED or name.startswith("LC_")}
        env.update(self.extra_env)
        env["LD_LIBRARY_PATH"] = str(Path(self.exe).parent)
        env["RAYVISION_LOG"] = str(log_dir)
        env.update(secrets or {})
        return env
