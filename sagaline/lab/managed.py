"""One process of the lab's stack (a service or a relay): started from its command line with
its environment and its log, signalled, waited for, started again; and what a process used (CPU
seconds and peak memory, from /proc)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from sagaline.lab.launchers.process import log_tail, spawn


class ManagedProcess:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        self.process = spawn(self.argv, self.log_path, self.env)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signum)

    def wait(self, timeout_s: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout_s)
            return True
        except subprocess.TimeoutExpired:
            return False

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log_path, lines, missing="")


def cpu_s(pid: int, *, reaped_children: bool = False) -> float | None:
    """CPU seconds of a process (user + system) from /proc; with `reaped_children`, also those
    of its children already exited and reaped (cutime, cstime). None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = sum(int(value) for value in fields[11 : 15 if reaped_children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_usage(pid: int) -> dict[str, float]:
    used = cpu_s(pid)
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    if used is None:
        return {}
    peak_kb = next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
    return {"cpu_s": round(used, 2), "peak_rss_mb": round(peak_kb / 1024, 1)}
