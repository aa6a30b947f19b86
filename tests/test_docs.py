"""The documentation: README.md and docs/ link to pages and anchors that exist, every command has
a page, and the README keeps the test command that .ci/run runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from painter_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

# [text](target) outside code spans; targets with a scheme (https:, mailto:) are not files.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def _links(text: str) -> list[str]:
    text = _FENCE.sub("", text)
    text = re.sub(r"`[^`\n]*`", "", text)
    return [t for t in _LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def _commands() -> list[str]:
    return sorted(typer.main.get_command(app).commands)


def test_slug_matches_github_anchors():
    assert _slug("`painter encode`: datasets to shards") == "painter-encode-datasets-to-shards"
    assert _slug("A custom task with no code edits (`pairs`)") == (
        "a-custom-task-with-no-code-edits-pairs"
    )


def test_links_find_their_links_outside_code():
    text = "see [a](docs/a.md#x), `[b](b.md)`, [c](https://x.org)\n```\n[d](d.md)\n```\n"
    assert _links(text) == ["docs/a.md#x"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_to_an_existing_file_and_anchor(page):
    broken = []
    for target in _links(page.read_text(encoding="utf-8")):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT)})")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor})")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_every_command_has_a_docs_page_linked_from_the_index_and_the_readme():
    commands = _commands()
    assert "encode" in commands and "prompt-tune" in commands
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in commands:
        page = DOCS / f"{name}.md"
        assert page.is_file(), f"painter {name} has no docs/{name}.md"
        assert f"`painter {name}`" in page.read_text(encoding="utf-8").split("\n", 1)[0]
        assert f"{name}.md" in _links(index)
        assert f"docs/{name}.md" in _links(readme)


def test_the_readme_keeps_the_test_command_that_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    setup = readme.split("## Set up and test", 1)[1].split("\n## ", 1)[0]
    assert "python -m pytest" in ci
    assert "python -m pytest" in setup
    assert "pip install -e '.[dev]'" in setup


def test_the_readme_stays_a_newcomer_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines: move reference material into docs/"
