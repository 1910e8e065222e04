"""Free TCP ports and waiting for a listener.

A port is chosen now and bound later, by another process. A port of the kernel's own choosing
(bind to port 0) comes from its ephemeral range, the range every outgoing connection also takes
its local port from; with Kafka clients and HTTP clients connecting all the while, one of them
can take the port before its server binds it ("address already in use"). So ports are chosen
below that range, where only listeners live, and never handed out twice by one process.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Above the well-known defaults (PostgreSQL 5432, Kafka 9092, the services' 8080-8083) and below
# kwokctl's own choices, which count down from 32765.
LOWEST = 15_000
HIGHEST = 30_000
ATTEMPTS = 500

_handed_out: set[int] = set()
_lock = threading.Lock()
_random = random.Random()


def _highest() -> int:
    """The top of the range ports are chosen from: below the kernel's ephemeral range."""
    try:
        ephemeral_low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return HIGHEST  # not Linux: macOS and Windows start theirs at 49152
    return max(LOWEST + 1_000, min(HIGHEST, ephemeral_low))


def _bindable(port: int) -> bool:
    """Nothing listens on `port`, on any address (no SO_REUSEADDR: lingering sockets count)."""
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def free_port_block(count: int) -> int:
    """The first of `count` consecutive ports free now and not handed out before."""
    highest = _highest()
    with _lock:
        for _ in range(ATTEMPTS):
            base = _random.randrange(LOWEST, highest - count + 1)
            block = range(base, base + count)
            if _handed_out.isdisjoint(block) and all(map(_bindable, block)):
                _handed_out.update(block)
                return base
    raise OSError(f"no {count} free consecutive ports between {LOWEST} and {highest}")


def free_port() -> int:
    """A port free now, below the ephemeral range, and not handed out before by this process."""
    return free_port_block(1)


def next_free_port(after: int, taken: set[int]) -> int:
    """The first port above `after` that is not in `taken` and on which nothing listens now."""
    port = after + 1
    while port in taken or not _bindable(port):
        port += 1
        if port > 65_535:
            raise OSError(f"no free port above {after}")
    return port


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
