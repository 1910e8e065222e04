"""k8s/dev/live_update.py, the dev image's live update on restricted pods: `refresh` completes the
synced packages without overwriting what Tilt synced, and `run` restarts its command in place when
a refresh says so, and otherwise exits as the command does."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "k8s" / "dev" / "live_update.py"


def module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("live_update", SCRIPT)
    assert spec and spec.loader
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def test_refresh_completes_synced_packages_and_keeps_synced_files(tmp_path: Path) -> None:
    site, live = tmp_path / "site", tmp_path / "live"
    for name in ("__init__.py", "a.py", "sub/__init__.py", "sub/b.py", "data.mako"):
        (site / "sagaline" / name).parent.mkdir(parents=True, exist_ok=True)
        (site / "sagaline" / name).write_text(f"installed {name}")
    (site / "sagaline" / "__pycache__").mkdir()
    (site / "sagaline" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"stale")
    (site / "sagaline_operator").mkdir()
    (site / "sagaline_operator" / "__init__.py").write_text("installed")
    (live / "sagaline" / "sub").mkdir(parents=True)
    (live / "sagaline" / "sub" / "b.py").write_text("synced")

    assert module().refresh(live, site) == ["sagaline"]

    assert (live / "sagaline" / "sub" / "b.py").read_text() == "synced"
    assert (live / "sagaline" / "a.py").read_text() == "installed a.py"
    assert (live / "sagaline" / "data.mako").exists()
    assert (live / "sagaline" / "__init__.py").exists()  # whole: it shadows the installed one
    assert not (live / "sagaline" / "__pycache__").exists()
    # nothing synced there: the installed one serves
    assert not (live / "sagaline_operator").exists()
    assert (live / ".restart").read_text()


def test_run_restarts_the_command_on_refresh_and_forwards_sigterm(tmp_path: Path) -> None:
    live, starts = tmp_path / "live", tmp_path / "starts"
    live.mkdir()
    child = (
        "import pathlib, signal, sys, time;"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(7));"
        f"p = pathlib.Path({str(starts)!r});"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x');"
        "time.sleep(60)"
    )
    env = {**os.environ, "SAGALINE_LIVE_DIR": str(live), "SAGALINE_LIVE_POLL_S": "0.05"}
    supervisor = subprocess.Popen(
        [sys.executable, str(SCRIPT), "run", "--", sys.executable, "-c", child],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: starts.exists() and starts.read_text() == "x")
        module().refresh(live, tmp_path / "no-site")
        wait_for(lambda: starts.read_text() == "xx")  # restarted in place, same supervisor
        assert supervisor.poll() is None
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=10) == 7  # the command's own exit code
    finally:
        supervisor.kill()
        _, stderr = supervisor.communicate()
    assert "sources changed: restarting" in stderr


def test_run_exits_as_its_command_does(tmp_path: Path) -> None:
    env = {**os.environ, "SAGALINE_LIVE_DIR": str(tmp_path), "SAGALINE_LIVE_POLL_S": "0.05"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "run", "--", sys.executable, "-c", "raise SystemExit(3)"],
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 3


def wait_for(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
