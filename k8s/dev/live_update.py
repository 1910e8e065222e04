"""Live update of the sources on restricted pods: `tilt up` only (the Containerfile's `dev` stage).

The pods the operator makes are restricted: read-only root filesystem, the one writable place an
`emptyDir` on /tmp shared by the pod's containers. So Tilt cannot write into the installed
packages, and a container restart would be taken for a crash. Instead:

- Tilt syncs changed files into /tmp/live (`PYTHONPATH` in the dev image, so it comes before the
  installed packages on sys.path);
- then runs `live_update.py refresh`, which completes each package synced there with the installed
  files it lacks (a package must be whole where Python finds it) and bumps /tmp/live/.restart;
- every `sagaline` process runs under `live_update.py run -- sagaline-installed ...`, which restarts
  it in place (same container) when .restart changes, and otherwise behaves like the process:
  same exit code, SIGTERM and SIGINT forwarded.

A module deleted from the sources comes back from the installed copy until the next image build.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from types import FrameType

LIVE = Path(os.environ.get("SAGALINE_LIVE_DIR", "/tmp/live"))
POLL_S = float(os.environ.get("SAGALINE_LIVE_POLL_S", "1"))
STOP_GRACE_S = 10.0
PACKAGES = ("sagaline", "sagaline_operator")  # the installed import roots
TRIGGER = ".restart"


def log(message: str) -> None:
    print(f"[live-update] {message}", file=sys.stderr, flush=True)


def _copy_missing(source: str, target: str) -> object:
    """copytree's copy function: the synced (newer) file wins, the installed one fills a gap."""
    if not os.path.exists(target):
        shutil.copy2(source, target)
    return target


def refresh(live: Path = LIVE, site: Path | None = None) -> list[str]:
    """Complete the packages synced under `live`, then ask the supervisors to restart."""
    site = site or Path(sysconfig.get_paths()["purelib"])
    completed = []
    for package in PACKAGES:
        if (live / package).is_dir() and (site / package).is_dir():
            shutil.copytree(
                site / package,
                live / package,
                dirs_exist_ok=True,
                copy_function=_copy_missing,
                ignore=shutil.ignore_patterns("__pycache__"),
            )
            completed.append(package)
    live.mkdir(parents=True, exist_ok=True)
    (live / TRIGGER).write_text(str(time.time_ns()))
    return completed


def _stamp(live: Path) -> str:
    try:
        return (live / TRIGGER).read_text()
    except OSError:
        return ""


def supervise(command: list[str], live: Path = LIVE, poll_s: float = POLL_S) -> int:
    """Run `command`; restart it when the trigger changes; return its exit code."""
    stopping = False
    stamp = _stamp(live)
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            return child.wait(timeout=poll_s)
        except subprocess.TimeoutExpired:
            pass
        if stopping or _stamp(live) == stamp:
            continue
        stamp = _stamp(live)
        log(f"sources changed: restarting {' '.join(command[1:3])}")
        child.terminate()
        try:
            child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if not stopping:
            child = subprocess.Popen(command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="live_update.py")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("refresh", help="complete the synced packages and restart the processes")
    run = commands.add_parser("run", help="run a command, restarting it on live updates")
    run.add_argument("argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "refresh":
        log(f"refreshed {', '.join(refresh()) or 'nothing'}")
        return 0
    command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not command:
        parser.error("run needs a command")
    return supervise(command)


if __name__ == "__main__":
    sys.exit(main())
