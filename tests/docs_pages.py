"""The project's documentation as text: README.md and every page under docs/, their code blocks,
their links and their headings' anchors (GitHub's slug rules). Used by the documentation tests."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pages(root: Path = ROOT) -> list[Path]:
    """README.md, then every Markdown page under docs/, sorted."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def split_code(text: str) -> tuple[list[str], list[str]]:
    """(the fenced code blocks, the other lines); a fence is a line starting with three
    backticks."""
    blocks, prose, current = [], [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is None:
            prose.append(line)
        else:
            current.append(line)
    return blocks, prose


def without_code_spans(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (code marks and link targets dropped),
    lower case, every character that is not a letter, digit, ``_``, ``-`` or space dropped,
    spaces turned into hyphens (runs of them kept, as GitHub does)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a page defines: its headings (a repeated one gets -1, -2, ...) and
    explicit ``id=`` / ``name=`` attributes."""
    _, prose = split_code(path.read_text())
    seen: dict[str, int] = {}
    found = set()
    for line in prose:
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found |= set(re.findall(r"""(?:id|name)=["']([^"']+)["']""", line))
    return found


LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def links(path: Path) -> list[str]:
    """The targets of the page's Markdown links and images, outside code blocks and spans."""
    _, prose = split_code(path.read_text())
    return LINK.findall(without_code_spans("\n".join(prose)))  # a link may span lines


def broken_links(root: Path = ROOT) -> list[str]:
    """``page: target (why)`` for every relative link to a missing file or anchor, and every
    link from docs/ that leaves docs/ (the static site holds only docs/)."""
    problems = []
    docs = (root / "docs").resolve()
    for page in pages(root):
        for target in links(page):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page.resolve()
            where = f"{page.relative_to(root)}: {target}"
            if not dest.exists():
                problems.append(f"{where} (no such file)")
            elif page.resolve().is_relative_to(docs) and not dest.is_relative_to(docs):
                problems.append(f"{where} (leaves docs/, which the static site cannot follow)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where} (no heading with anchor #{anchor})")
    return problems
