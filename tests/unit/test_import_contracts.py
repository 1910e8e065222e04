"""The architecture's import contracts (pyproject.toml, `[tool.importlinter]`), checked by
import-linter as `make lint` runs it: the tree keeps them, and a breach is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={
            "PYTHONPATH": f"{cwd}:{cwd / 'operator'}:{cwd / 'examples' / 'travel'}",
            "PATH": "/usr/bin:/bin",
        },
    )


def copy_of_the_tree(into: Path) -> Path:
    """The packages and the contracts, copied (sagaline/services' link resolved), the travel
    example's too."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "sagaline", into / "sagaline", ignore=ignore)
    shutil.copytree(
        ROOT / "operator" / "sagaline_operator",
        into / "operator" / "sagaline_operator",
        ignore=ignore,
    )
    shutil.copytree(
        ROOT / "examples" / "travel" / "sagaline_travel",
        into / "examples" / "travel" / "sagaline_travel",
        ignore=ignore,
    )
    shutil.copy(ROOT / "pyproject.toml", into / "pyproject.toml")
    return into


def test_the_tree_keeps_its_contracts() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


BREACHES = {
    # a module of the domain that imports SQLAlchemy
    "pure-domain": (
        "sagaline/domain/engine.py",
        "sqlalchemy",
        "sagaline.domain.engine -> sqlalchemy",
    ),
    # a service that imports the lab
    "product-apart-from-the-lab": (
        "sagaline/services/order/api.py",
        "sagaline.lab.stack",
        "sagaline.services.order.api -> sagaline.lab.stack",
    ),
    # a lower room (storage) that imports a higher one (delivery)
    "layers": (
        "sagaline/storage/db.py",
        "sagaline.delivery.outbox",
        "sagaline.storage.db -> sagaline.delivery.outbox",
    ),
    # the travel example reaching past the SDK
    "travel-uses-the-sdk-only": (
        "examples/travel/sagaline_travel/partners.py",
        "sagaline.settings",
        "sagaline_travel.partners -> sagaline.settings",
    ),
}


@pytest.mark.parametrize("contract", sorted(BREACHES))
def test_a_breach_breaks_its_contract(contract: str, tmp_path: Path) -> None:
    module, imported, chain = BREACHES[contract]
    tree = copy_of_the_tree(tmp_path)
    breaching = tree / module
    breaching.write_text(breaching.read_text() + f"\nimport {imported}  # noqa: E402, F401\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 broken" in result.stdout
    assert chain in result.stdout
