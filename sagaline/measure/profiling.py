"""`--profile DIR`: py-spy flame graphs of a bench's Python processes while the bench runs."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import typer
from rich.console import Console

RATE_HZ = 100
ATTACH_CHECK_S = 1.0  # py-spy that cannot attach (no ptrace permission) exits within this
WRITE_TIMEOUT_S = 60.0  # after SIGINT, py-spy folds its samples and writes the SVG


@dataclass
class Recorder:
    """One py-spy attached to one process."""

    name: str
    output: Path
    process: subprocess.Popen[bytes]
    errors: IO[bytes]

    def said(self) -> str:
        self.errors.seek(0)
        return self.errors.read().decode(errors="replace").strip()


def py_spy_binary() -> str:
    """py-spy beside this Python (a virtualenv's bin), else on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    if beside.is_file():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise typer.BadParameter(
            "--profile needs py-spy, which is not installed: pip install py-spy",
            param_hint="--profile",
        )
    return found


@contextlib.contextmanager
def profiled(
    directory: Path | None, pids: dict[str, int], label: str, console: Console
) -> Iterator[list[Path]]:
    """Record each process (name -> pid) into `<directory>/<label>-<name>.svg` for the block;
    yields the list of the SVGs written, filled in on exit. No directory: nothing is recorded.
    A py-spy that cannot attach is reported and the block runs without it."""
    written: list[Path] = []
    if directory is None:
        yield written
        return
    binary = py_spy_binary()
    directory.mkdir(parents=True, exist_ok=True)
    recorders = [
        _attach(binary, name, pid, directory / f"{label}-{name}.svg") for name, pid in pids.items()
    ]
    recorders = _attached(recorders, console)
    try:
        yield written
    finally:
        for recorder in recorders:
            recorder.process.send_signal(signal.SIGINT)
        for recorder in recorders:
            if _finished(recorder, console):
                written.append(recorder.output)
        for path in written:
            console.print(f"profile: {path}")


def _attach(binary: str, name: str, pid: int, output: Path) -> Recorder:
    errors = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the recorder is done
    argv = [binary, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--nonblocking"]
    argv += ["--format", "flamegraph", "-o", str(output)]
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
    )
    return Recorder(name, output, process, errors)


def _attached(recorders: list[Recorder], console: Console) -> list[Recorder]:
    """The recorders still running after a moment; why the others stopped is printed."""
    deadline = time.monotonic() + ATTACH_CHECK_S
    while time.monotonic() < deadline and all(r.process.poll() is None for r in recorders):
        time.sleep(0.05)
    running = []
    for recorder in recorders:
        if recorder.process.poll() is None:
            running.append(recorder)
            continue
        console.print(
            f"[yellow]py-spy could not attach to {recorder.name}; no profile of it "
            f"(ptrace permission? run as root or set kernel.yama.ptrace_scope=0): "
            f"{recorder.said()}[/yellow]"
        )
        recorder.errors.close()
    return running


def _finished(recorder: Recorder, console: Console) -> bool:
    """Wait (bounded) for py-spy to write its SVG; whether a non-empty one is there."""
    try:
        recorder.process.wait(timeout=WRITE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        recorder.process.kill()
        recorder.process.wait()
    ok = recorder.output.is_file() and recorder.output.stat().st_size > 0
    if not ok:
        console.print(f"[yellow]no profile of {recorder.name}: {recorder.said()}[/yellow]")
    recorder.errors.close()
    return ok
