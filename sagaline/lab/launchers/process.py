"""The process mechanics every launcher shares: a child in a session of its own with its output
appended to a log file, a file lock around building or initialising a cache, waiting for
readiness while the child may die, a log's tail for the error, and stopping (SIGTERM, then
SIGKILL after a grace).

The launchers (the embedded broker, Apache Kafka, PostgreSQL) and the e2e control plane keep
only what is their own: commands, configuration, what "ready" means, and their error messages.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sagaline.lab.status import StatusLine

NO_LOG = "(no log)"


@contextlib.contextmanager
def exclusive(lock_path: Path, status: StatusLine, doing: str) -> Iterator[None]:
    """An fcntl lock on `lock_path`, so that two processes `doing` the same thing at once (say,
    "building the Kubernetes tools") do not work over each other; says so when it waits."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            status(f"waiting for another process {doing} ({lock_path})")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def spawn(
    command: list[str], log_path: Path | None, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `command` in a new session (its process group is its own, so that signals reach its
    children too), stdin closed, stdout and stderr appended to `log_path` (dropped without), in
    `env` (this process's environment without)."""
    with contextlib.ExitStack() as files:
        output = files.enter_context(open(log_path, "ab")) if log_path else subprocess.DEVNULL
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_logged(
    command: list[str], log_path: Path, *, timeout_s: float, cwd: str | Path | None = None
) -> int:
    """Run `command` to its end, its output appended to `log_path`; its exit code. Raises
    subprocess.TimeoutExpired after `timeout_s`."""
    with open(log_path, "ab") as log:
        return subprocess.run(
            command,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=timeout_s,
            check=False,
        ).returncode


def wait_ready(
    process: subprocess.Popen[Any],
    ready: Callable[[float], bool],
    timeout_s: float,
    *,
    exited: Callable[[int], Exception],
    timed_out: Callable[[], Exception],
    pause_s: float = 0.2,
) -> None:
    """Until `ready(remaining seconds)` says so; raises `exited(code)` as soon as the child
    dies, `timed_out()` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        code = process.poll()
        if code is not None:
            raise exited(code)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise timed_out()
        if ready(remaining):
            return
        time.sleep(pause_s)


def signal_group(process: subprocess.Popen[Any], signum: signal.Signals) -> None:
    """`signum` to the child's process group (a child started by `spawn` leads its own)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def kill(process: subprocess.Popen[Any]) -> None:
    """SIGKILL the child's group, like a crash, and reap it."""
    if process.poll() is None:
        signal_group(process, signal.SIGKILL)
        process.wait()


def terminate(process: subprocess.Popen[Any], grace_s: float) -> None:
    """SIGTERM the child's group (a clean shutdown), SIGKILL it after `grace_s`; reap it."""
    if process.poll() is None:
        signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            kill(process)


def end_pids(pids: Iterable[int], grace_s: float) -> None:
    """SIGTERM what still runs of `pids` (not our children: nobody here reaps them), SIGKILL it
    after `grace_s`, and wait until it is gone."""
    pids = list(pids)
    for signum, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        alive = [pid for pid in pids if pid_alive(pid)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + wait_s
        while alive and time.monotonic() < deadline:
            time.sleep(0.05)
            alive = [pid for pid in alive if pid_alive(pid)]
        if not alive:
            return


_PROC = Path("/proc")


def pid_alive(pid: int) -> bool:
    """Whether `pid` runs; a zombie does not (killed, but not reaped by its parent, which for a
    process that is not our child is not us)."""
    if _PROC.is_dir():
        try:
            fields = (_PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            return fields[0] not in ("Z", "X")
        except FileNotFoundError:
            return False
        except (OSError, IndexError):
            pass
    return pid_exists(pid)


def pid_exists(pid: int) -> bool:
    """Whether `pid` is in the process table at all, zombies included."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of /proc/<pid>/stat after the command name) of every process."""
    if not _PROC.is_dir():
        return
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield int(entry.name), (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue


def log_tail(
    path: Path,
    lines: int,
    *,
    since: int = 0,
    window: int = 1024 * 1024,
    missing: str = NO_LOG,
    errors: re.Pattern[str] | None = None,
) -> str:
    """The last `lines` lines of the log at `path` written since offset `since` (of its last
    `window` bytes); `missing` when it cannot be read.

    With `errors`, the lines it matches come first (at most 12, each with the next line when that
    is an exception's message): the cause is usually there, followed by a long shutdown."""
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(since, size - window, 0))
            text = log.read().decode(errors="replace")
    except OSError:
        return missing
    all_lines = text.splitlines()
    tail = all_lines[-lines:]
    if errors is None:
        return "\n".join(tail)
    found: list[str] = []
    for number, line in enumerate(all_lines):
        if errors.search(line) and len(found) < 12:
            found.append(line)
            cause = all_lines[number + 1] if number + 1 < len(all_lines) else ""
            if cause and not cause.startswith(("[", "\t")):  # the exception's message
                found.append(cause)
    if found and found[-1] not in tail:
        return "\n".join([*found, "...", *tail])
    return "\n".join(tail)
