"""The docs stay true: generated figures, links, anchors, commands and paths (docs/development.md).

Every figure block must equal what ``benchmarks.docs_figures`` renders from the committed result
files; every relative link must reach a file and every ``#anchor`` a heading; every
``python -m`` module and every repository path written in the docs must exist, so a renamed
module cannot rot in the manual; the README stays a front page (≤ 250 lines).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import docs_figures
from benchmarks.docs_figures import ROOT

README_MAX_LINES = 250
MANUAL = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PAGES = [*MANUAL, ROOT / "CHANGELOG.md"]
"""Links are checked on every page; modules and paths on the manual only, since the changelog's
history names modules as they were called then."""
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
PYTHON_M = re.compile(r"python3? -m ([A-Za-z_][\w.]*)")
# Paths the docs may name: anything under these tracked top-level folders, or these files.
REPO_PATH = re.compile(
    r"^(?:(?:encore|scripts|config|experiments|benchmarks|tests|docs|mlflow_server|notebooks|\.ci)/[\w./-]*"
    r"|Makefile|\.env_template|setup\.py|pyproject\.toml|requirements(?:-dev)?\.txt|CHANGELOG\.md|README\.md)$"
)
PLACEHOLDER = re.compile(r"[<>*{}…]")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (links and headings inside code are not Markdown)."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped, lowercase, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file, duplicates numbered as GitHub does (-1, -2, …)."""
    seen: dict[str, int] = {}
    result = set()
    for line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(path: Path) -> list[str]:
    found = []
    for line in prose_lines(path.read_text()):
        found += LINK.findall(INLINE_CODE.sub("", line))
    return found


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """One line per relative link of ``path`` whose file or ``#anchor`` does not exist (paths in
    the messages relative to ``root``)."""
    problems = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}: link '{target}'"
        if not dest.exists():
            problems.append(f"{where}: no file {file_part}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{anchor} in {dest.relative_to(root)}")
    return problems


def code_tokens(path: Path) -> list[str]:
    """Every whitespace-separated token of inline code spans and fenced code blocks."""
    text = path.read_text()
    tokens, in_fence = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            tokens += line.split()
        else:
            for span in INLINE_CODE.findall(line):
                tokens += span.strip("`").split()
    return tokens


def repo_paths(path: Path) -> set[str]:
    """The repository paths a page names in code (placeholders such as ``<k>`` and runtime
    folders such as ``mlflow_server/.run/`` are not paths of the repository)."""
    paths = set()
    for token in code_tokens(path):
        token = token.strip("'\"(),;:.")
        if not token or PLACEHOLDER.search(token) or not REPO_PATH.match(token):
            continue
        if any(part.startswith(".") for part in token.split("/")[1:]):
            continue
        paths.add(token)
    return paths


def module_exists(name: str) -> bool:
    """Whether ``python -m name`` can start: a module file, or a package with ``__main__``."""
    top = name.split(".")[0]
    if (ROOT / top).is_dir():
        base = ROOT / Path(*name.split("."))
        return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()
    return importlib.util.find_spec(name) is not None


def test_figure_blocks_match_their_result_files() -> None:
    assert docs_figures.stale_blocks(docs_figures.documents()) == []


def test_a_changed_figure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy of the results page in a tree shaped like the repository, so its links are the same.
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "results").symlink_to(docs_figures.RESULTS)
    monkeypatch.setattr(docs_figures, "RESULTS", tmp_path / "benchmarks" / "results")
    text = (ROOT / "docs" / "results.md").read_text()
    assert "<!-- results:lastfm2k:start -->" in text
    copy = tmp_path / "docs" / "results.md"
    copy.parent.mkdir()
    copy.write_text(text)
    assert docs_figures.stale_blocks([copy]) == []
    copy.write_text(re.sub(r"\| ranker \| 0\.\d{4}", "| ranker | 0.9999", text, count=1))
    assert docs_figures.stale_blocks([copy]) == [f"{copy}: block 'lastfm2k' is stale"]


def test_every_figure_names_a_result_file_and_its_commit() -> None:
    blocks = [m.group("name") for page in docs_figures.documents() for m in docs_figures.blocks(page.read_text())]
    assert "headline" in blocks and "lastfm2k" in blocks
    unknown = set(blocks) - set(docs_figures.FIGURES)
    assert not unknown, f"blocks without a renderer: {sorted(unknown)}"
    for name in {source for figure in docs_figures.FIGURES.values() for source in figure.sources}:
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", docs_figures.measured_on(name)), name


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_named_commits_exist() -> None:
    shallow = subprocess.run(["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
    if shallow == "true":
        pytest.skip("a shallow clone lacks the history the result files name")
    sources = {source for figure in docs_figures.FIGURES.values() for source in figure.sources}
    for name in sorted(sources):
        commit = docs_figures.measured_on(name).removesuffix("-dirty")
        found = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT, capture_output=True)
        assert found.returncode == 0, f"{name}: commit {commit} is not in this repository"


def test_readme_is_a_front_page() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move content to docs/ (limit {README_MAX_LINES})"


def test_links_and_anchors_resolve() -> None:
    problems = [problem for page in PAGES for problem in broken_links(page)]
    assert problems == []


def test_broken_links_and_anchors_are_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Title\n\n## Last.fm 2K's `tagging` timeline (time split)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#lastfm-2ks-tagging-timeline-time-split) [bad anchor](other.md#missing) "
        "[no file](gone.md) [web](https://example.com) `[code](nowhere.md)`\n"
        "```\n[in a fence](nowhere.md)\n```\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "page.md: link 'other.md#missing': no heading with anchor #missing in other.md",
        "page.md: link 'gone.md': no file gone.md",
    ]


def test_python_m_modules_exist() -> None:
    missing = sorted(
        f"{page.relative_to(ROOT)}: python -m {name}"
        for page in MANUAL
        for name in set(PYTHON_M.findall(page.read_text()))
        if not module_exists(name)
    )
    assert missing == []


def test_repository_paths_exist() -> None:
    missing = sorted(
        f"{page.relative_to(ROOT)}: {path}"
        for page in MANUAL
        for path in repo_paths(page)
        if not (ROOT / path).exists()
    )
    assert missing == []


def test_path_and_module_checks_catch_renames(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Run `python -m encore.no_such_module`; see `encore/no_such.py`, `encore/recommenders/<k>.py`.\n")
    assert repo_paths(page) == {"encore/no_such.py"}
    assert not module_exists("encore.no_such_module")
    assert module_exists("encore.serving") and module_exists("benchmarks.docs_figures")


def test_check_commands_exit_zero_on_the_committed_docs() -> None:
    # The generator's own CLI and the former entry point both check without writing anything.
    from benchmarks import readme_results

    before = {page: page.read_text() for page in docs_figures.documents()}
    assert docs_figures.main(["--check"]) == 0
    assert readme_results.main(["--check"]) == 0
    assert {page: page.read_text() for page in docs_figures.documents()} == before
