"""The Containerfile, read without a container engine: what it copies is in the build context
(.dockerignore lets it through), the default target is the runtime image (non-root 10001, the
venv on PATH, no pip), and the `dev` target is only what `tilt up` asks for."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONTAINERFILE = (ROOT / "Containerfile").read_text()
# The lab's subpackages: `sagaline[lab]`, never in the image.
LAB = {("sagaline", part) for part in ("lab", "measure", "simulation", "traces")}
IGNORE = [
    line.strip()
    for line in (ROOT / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def stages() -> dict[str, str]:
    """Each stage's instructions, by name, in order."""
    parts = re.split(r"^FROM ", CONTAINERFILE, flags=re.MULTILINE)[1:]
    named = {}
    for part in parts:
        header, _, body = part.partition("\n")
        name = header.split(" AS ")[1].strip()
        named[name] = header + "\n" + body
    return named


def ignored(path: str) -> bool:
    """The .dockerignore verdict on a context path: the last pattern that matches it, or one of
    its parent directories, decides (`!` re-includes)."""
    verdict = False
    candidates = [path] + [str(parent) for parent in Path(path).parents if str(parent) != "."]
    for pattern in IGNORE:
        negate = pattern.startswith("!")
        glob = pattern.lstrip("!").rstrip("/")
        globs = [glob, glob.removeprefix("**/")] if glob.startswith("**/") else [glob]
        for candidate in candidates:
            names = [candidate] + (
                ["/".join(candidate.split("/")[i:]) for i in range(1, candidate.count("/") + 1)]
                if glob.startswith("**/")
                else []
            )
            if any(fnmatch.fnmatchcase(n, g) for n in names for g in globs):
                verdict = not negate
                break
    return verdict


def test_stages_and_default_target() -> None:
    names = list(stages())
    assert names == ["deps", "project", "base", "dev", "runtime"]
    assert stages()["runtime"].strip() == "base AS runtime"  # the last stage: `docker build`'s
    for name in ("deps", "base"):
        assert stages()[name].startswith("${PYTHON_IMAGE} AS")
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in CONTAINERFILE


def test_the_runtime_is_non_root_with_the_venv_and_no_pip() -> None:
    base = stages()["base"]
    assert "USER 10001:10001" in base
    assert "useradd --uid 10001 --gid 10001" in base
    for env in ("PATH=/opt/venv/bin:$PATH", "PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"):
        assert env in base
    assert "pip uninstall --yes --quiet pip setuptools wheel" in base
    assert "python -m venv --without-pip" in stages()["deps"]
    assert re.search(r'^CMD \["sagaline", "--help"\]$', base, flags=re.MULTILINE)
    assert "ENTRYPOINT" not in CONTAINERFILE  # a pod's `command` is the whole command line
    for label in ("title", "description", "version", "revision", "source", "created"):
        assert f"org.opencontainers.image.{label}=" in base
    # The venv only: build stages are never copied whole.
    assert re.findall(r"^COPY --from=(\S+)", base, flags=re.MULTILINE) == ["deps", "project"]


def test_sources_are_a_late_layer() -> None:
    deps, project = stages()["deps"], stages()["project"]
    assert "COPY pyproject.toml" in deps and "services" not in deps
    assert "pip --python /opt/venv/bin/python install --no-deps ." in project


def test_every_copied_path_is_in_the_build_context() -> None:
    sources = [
        source
        for line in re.findall(r"^COPY (?!--from)(.+)$", CONTAINERFILE, flags=re.MULTILINE)
        for source in line.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), f"{source} is excluded by .dockerignore"
        if (ROOT / source).is_dir():  # and the modules in it too
            for module in (ROOT / source).rglob("*.py"):
                relative = module.relative_to(ROOT)
                if relative.parts[:2] not in LAB:
                    assert not ignored(str(relative)), module


def test_the_context_leaves_out_local_state() -> None:
    for path in (".venv/bin/python", ".sagaline/x", "tests/unit/test_chart.py", "README.md"):
        assert ignored(path), path
    assert ignored("services/__pycache__/x.cpython-311.pyc")
    assert ignored("sagaline/storage/__pycache__/db.cpython-311.pyc")
    assert not ignored("sagaline/storage/db.py")


def test_the_context_holds_the_product_and_no_lab() -> None:
    """The lab (`sagaline[lab]`) stays out of the image: no launcher, stack, bench or simulation."""
    for path in sorted((ROOT / "sagaline").rglob("*.py")):
        relative = path.relative_to(ROOT)
        assert ignored(str(relative)) == (relative.parts[:2] in LAB), relative
    for product in (
        "services/order/api.py",
        "sagaline/delivery/consumer.py",
        "sagaline/cli/__init__.py",
    ):
        assert not ignored(product), product
