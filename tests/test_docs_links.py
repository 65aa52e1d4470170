"""Links in README.md and docs/ lead somewhere: every relative link names an existing file, and
every ``#anchor`` a heading of its page (GitHub's anchor rules), so moving a section cannot
silently break a reference to it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from docs_pages import ROOT, anchors, broken_links, links, pages, slug


def test_every_link_in_the_readme_and_docs_resolves():
    assert len(pages()) >= 10 and sum(len(links(p)) for p in pages()) >= 30
    assert broken_links() == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        (
            "The resolution convention (`eval.resolution`)",
            "the-resolution-convention-evalresolution",
        ),
        ("Real datasets: NYUv2 and Tiny-Taskonomy", "real-datasets-nyuv2-and-tiny-taskonomy"),
        ("Worst-case ensemble (`attack=ensemble`)", "worst-case-ensemble-attackensemble"),
        ("The paper's trained models (`model=treemtl`)", "the-papers-trained-models-modeltreemtl"),
        ("W&B dashboard: a [saved](x.md) view", "wb-dashboard-a-saved-view"),
        ("A - B", "a---b"),
        ("`dataset.normal_target`", "datasetnormal_target"),
    ],
)
def test_anchors_follow_github_rules(heading, anchor):
    assert slug(heading) == anchor


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_repeated_heading_gets_a_numbered_anchor(tmp_path):
    write(tmp_path, {"p.md": "# Setup\n## Setup\n```\n# not a heading\n```\n## Setup\n"})
    assert anchors(tmp_path / "p.md") == {"setup", "setup-1", "setup-2"}


def test_broken_links_are_found(tmp_path):
    root = write(
        tmp_path,
        {
            "README.md": (
                "# Top\nSee [the page](docs/page.md#usage), [gone](docs/gone.md),\n"
                "[no anchor](docs/page.md#usag), [here](#top), [web](https://x.org/a#b)\n"
                "```\n[inside code](nowhere.md)\n```\nand `[in a span](nowhere.md)`.\n"
            ),
            "docs/page.md": (
                "# Page\n## Usage\n![img](missing.png) [up](../README.md)\n"
                "[self](#page) [next](other.md#the-resolution-convention-evalresolution)\n"
            ),
            "docs/other.md": "# Other\n## The resolution convention (`eval.resolution`)\n",
        },
    )
    assert broken_links(root) == [
        "README.md: docs/gone.md (no such file)",
        "README.md: docs/page.md#usag (no heading with anchor #usag)",
        "docs/page.md: missing.png (no such file)",
        "docs/page.md: ../README.md (leaves docs/, which the static site cannot follow)",
    ]


def test_the_real_docs_would_fail_on_a_broken_link(tmp_path):
    """The check reads the real pages: one renamed anchor in a copy of them is caught."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    before = broken_links(tmp_path)
    readme = tmp_path / "README.md"
    target = next(t for t in links(readme) if "#" in t and not t.startswith("http"))
    readme.write_text(readme.read_text().replace(f"({target})", f"({target}-renamed)", 1))
    anchor = target.split("#")[1]
    new = f"README.md: {target}-renamed (no heading with anchor #{anchor}-renamed)"
    assert set(broken_links(tmp_path)) - set(before) == {new}
