"""The architecture's import contracts (pyproject.toml, `[tool.importlinter]`), checked by
import-linter as `make lint` runs it: the tree keeps them, and a breach is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": f"{cwd}:{cwd / 'operator'}", "PATH": "/usr/bin:/bin"},
    )


def copy_of_the_tree(into: Path) -> Path:
    """The packages and the contracts, copied (sagaline/services' link resolved)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "sagaline", into / "sagaline", ignore=ignore)
    shutil.copytree(
        ROOT / "operator" / "sagaline_operator",
        into / "operator" / "sagaline_operator",
        ignore=ignore,
    )
    shutil.copy(ROOT / "pyproject.toml", into / "pyproject.toml")
    return into


def test_the_tree_keeps_its_contracts() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_domain_module_that_imports_sqlalchemy_breaks_the_pure_domain(tmp_path: Path) -> None:
    tree = copy_of_the_tree(tmp_path)
    engine = tree / "sagaline" / "domain" / "engine.py"
    engine.write_text(engine.read_text() + "\nimport sqlalchemy  # noqa: E402, F401\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "The domain is pure" in result.stdout
    assert "sagaline.domain.engine -> sqlalchemy" in result.stdout


def test_a_service_that_imports_the_lab_breaks_the_product_contract(tmp_path: Path) -> None:
    tree = copy_of_the_tree(tmp_path)
    api = tree / "sagaline" / "services" / "order" / "api.py"
    api.write_text(api.read_text() + "\nimport sagaline.lab.stack  # noqa: E402, F401\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sagaline.services.order.api -> sagaline.lab.stack" in result.stdout


def test_a_lower_room_that_imports_a_higher_one_breaks_the_layers(tmp_path: Path) -> None:
    tree = copy_of_the_tree(tmp_path)
    db = tree / "sagaline" / "storage" / "db.py"
    db.write_text(db.read_text() + "\nimport sagaline.delivery.outbox  # noqa: E402, F401\n")
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "sagaline.storage.db -> sagaline.delivery.outbox" in result.stdout
