"""The README stays a front door and the docs stay linked: its length, its two commands, a link
to every page of docs/, relative links that resolve, and no citation of a design file outside
the repository."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
OUTSIDE_DESIGN = "DESIGN" + ".md"  # spelled apart so that this file does not name it
REQUIRED_PAGES = (
    "design.md",
    "operations.md",
    "observability.md",
    "testing.md",
    "performance.md",
    "performance-log.md",
    "kubernetes.md",
)
# A citation in code: docs/design.md, "Invariants" or docs/design.md ("Invariants").
CITATION = re.compile(r'docs/([a-z-]+\.md),? \(?"([^"]+)"')
NOT_OURS = {".venv", ".git", "node_modules", "sagaline.egg-info", "build", "dist"}


def relative_links(page: Path) -> Iterator[str]:
    for match in LINK.finditer(page.read_text(encoding="utf-8")):
        target = match.group(1)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            yield target


def repository_files() -> Iterator[Path]:
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in NOT_OURS and not d.startswith(".")]
        for name in files:
            if name.endswith((".py", ".md")):
                yield Path(folder) / name


def test_the_readme_is_at_most_250_lines() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250


def test_the_readme_gives_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text
    assert "make test" in text


def test_the_readme_links_every_page_of_the_docs() -> None:
    links = set(relative_links(README))
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "docs/ has no pages"
    missing = [p.name for p in pages if f"docs/{p.name}" not in {t.split("#")[0] for t in links}]
    assert not missing, f"README.md does not link {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = [
        target
        for target in relative_links(page)
        if target.split("#")[0] and not (page.parent / target.split("#")[0]).exists()
    ]
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_no_file_cites_a_design_outside_the_repository() -> None:
    citing = [
        str(path.relative_to(ROOT))
        for path in repository_files()
        if OUTSIDE_DESIGN in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert not citing, f"cite docs/design.md instead of {OUTSIDE_DESIGN}: {citing}"


def test_each_reader_has_a_page() -> None:
    for name in REQUIRED_PAGES:
        assert (DOCS / name).is_file(), f"docs/{name} is missing"


def test_every_section_the_code_cites_exists() -> None:
    """`docs/design.md, "Invariants"` in a comment names a heading (or a bold lead-in) there."""
    cited = 0
    for path in repository_files():
        if path.suffix != ".py":
            continue
        for page, quoted in CITATION.findall(path.read_text(encoding="utf-8")):
            cited += 1
            section = " ".join(quoted.replace("#", " ").split())  # a citation may wrap a comment
            target = DOCS / page
            assert target.is_file(), f"{path.relative_to(ROOT)} cites missing docs/{page}"
            text = target.read_text(encoding="utf-8")
            headings = re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)
            lead_ins = re.findall(r"\*\*(.+?)\.?\*\*", text)
            assert section in headings or section in lead_ins, (
                f'{path.relative_to(ROOT)} cites docs/{page}, "{section}": no such section'
            )
    assert cited  # the code does cite the docs
