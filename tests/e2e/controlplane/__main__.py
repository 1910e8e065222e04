"""The command line: `python -m tests.e2e.controlplane tools [--if-available]` builds (or checks)
the tools (`make e2e-tools`), `bin-dir` prints where they are, `up` runs a control plane until
Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

import tests.e2e.controlplane as package
from tests.e2e.controlplane.go_builds import ensure_tools
from tests.e2e.controlplane.kube_tools import (
    ControlPlaneError,
    bin_dir,
    tools_built,
    unavailable_reason,
)
from tests.e2e.controlplane.kwok_cluster import ControlPlane


def _build_with_progress() -> Path:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    if tools_built():
        console.print(f"[green]the Kubernetes tools are built[/green] in {bin_dir()}")
        return bin_dir()
    reason = unavailable_reason()
    if reason is not None:
        console.print(f"[red]{reason}[/red]")
        raise SystemExit(1)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("Kubernetes tools", total=None)

        def say(message: str) -> None:
            bar.console.print(message)

        def steps(done: int, total: int) -> None:
            bar.update(
                task, description="compiling Go packages", completed=done, total=total or None
            )

        started = time.monotonic()
        try:
            path = ensure_tools(say, steps)
        except ControlPlaneError as exc:
            console.print(f"[red]{exc}[/red]")
            raise SystemExit(1) from exc
    console.print(
        f"[green]the Kubernetes tools are built[/green] in {path} "
        f"({time.monotonic() - started:.0f} s)"
    )
    return path


def _up(state_dir: Path | None, nodes: int) -> None:
    from rich.console import Console

    console = Console(stderr=True)
    _build_with_progress()
    plane = ControlPlane(state_dir, nodes=nodes)
    with console.status("starting the control plane") as status:
        try:
            plane.start(progress=status.update)
        except ControlPlaneError as exc:
            console.print(f"[red]{exc}[/red]")
            raise SystemExit(1) from exc
    console.print(f"[green]control plane[/green] {plane.server} ({nodes} KWOK nodes)")
    console.print(f"export KUBECONFIG={plane.kubeconfig}")
    console.print(f'export PATH="{bin_dir()}:$PATH"')
    console.print(f"logs          {plane.logs_dir}")
    console.print("Ctrl-C (or SIGTERM) stops it.")
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        while not stopping.wait(1):
            pass
    finally:
        console.print("stopping")
        plane.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.controlplane", description=package.__doc__
    )
    commands = parser.add_subparsers(dest="command", required=True)
    tools = commands.add_parser("tools", help=f"build the tools once into {bin_dir()}")
    tools.add_argument(
        "--if-available",
        action="store_true",
        help="when they cannot be built here (no Go), say why and exit 0 (not under CI=true)",
    )
    commands.add_parser("bin-dir", help="print the tools' directory")
    up = commands.add_parser("up", help="run a control plane until Ctrl-C")
    up.add_argument("--state-dir", type=Path, default=None)
    up.add_argument("--nodes", type=int, default=2)
    args = parser.parse_args(argv)
    if args.command == "tools":
        reason = unavailable_reason()
        if reason is not None and args.if_available and os.environ.get("CI", "") != "true":
            from rich.console import Console

            Console(stderr=True).print(f"[yellow]{reason}: the e2e tests will skip[/yellow]")
            return
        _build_with_progress()
    elif args.command == "bin-dir":
        print(bin_dir())
    else:
        _up(args.state_dir, args.nodes)


if __name__ == "__main__":
    main()
