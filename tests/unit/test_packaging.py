"""What `pip install .` puts in site-packages: the wheel built from this checkout holds one import
root for the product, `sagaline` (the reference services as `sagaline.services`), and the
operator's own, `sagaline_operator`; never a top-level `services` that a user's project may have."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel of a copy of the sources (a build writes build/ and egg-info where it runs)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for tree in ("sagaline", "services", "operator/sagaline_operator"):
        shutil.copytree(ROOT / tree, source / tree, symlinks=True, ignore=skip)
    for file in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / file, source / file)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(source)],
        check=True,
        timeout=600,
    )
    (built,) = out.glob("sagaline-*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_registers_the_reference_services_as_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(name).decode()
    assert "[sagaline.services]" in text
    for service in ("orchestrator", "order", "payment", "stock"):
        assert f"{service} = sagaline.services.{service}.plugin:{service.upper()}" in text


def test_the_wheel_installs_only_the_sagaline_roots(wheel_names: set[str]) -> None:
    roots = {
        name.split("/")[0] for name in wheel_names if not name.split("/")[0].endswith(".dist-info")
    }
    assert roots == {"sagaline", "sagaline_operator"}


def test_the_reference_services_and_their_files_are_sagaline_services(
    wheel_names: set[str],
) -> None:
    for name in (
        "sagaline/services/registry.py",
        "sagaline/services/payment/plugin.py",
        "sagaline/services/order/api.py",
        "sagaline/services/order/migrations/0001_orders.py",
        "sagaline/services/orchestrator/ui_static/ui.js",
        "sagaline/storage/migrations/0001_outbox_inbox.py",
        "sagaline/storage/participant_migrations/0001_step_outcome.py",
        "sagaline/storage/alembic/script.py.mako",
        "sagaline/lab/launchers/apache_kafka_pom.xml",
    ):
        assert name in wheel_names, name
