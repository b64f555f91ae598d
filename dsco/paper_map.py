"""The paper map on the book's intro page: the notebook(s) of each section, table and figure.

:func:`load_paper_map` reads ``book/paper_map.yml`` (the notebooks with their issue numbers, and
the paper's items by :data:`MAP_SECTIONS`) and checks that every item names known notebooks;
:func:`paper_map_markdown` renders it as MyST tables for :func:`dsco.book.build`, linking the
notebooks of the build and marking the others as not run or planned.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from . import ROOT
from .errors import BookError

#: Map sections of the intro page, in order: key in ``paper_map.yml`` ``items`` -> heading.
MAP_SECTIONS = {
    "sections": "Sections",
    "tables": "Tables",
    "figures": "Figures",
    "beyond": "Beyond the paper",
}


def load_paper_map(path: str | Path | None = None) -> dict:
    """Read ``book/paper_map.yml`` and check that every item names known notebooks."""
    path = Path(path) if path is not None else ROOT / "book" / "paper_map.yml"
    data = yaml.safe_load(Path(path).read_text(encoding="utf8"))
    notebooks, items = data.get("notebooks") or {}, data.get("items") or {}
    for key in items:
        if key not in MAP_SECTIONS:
            raise BookError(
                f"{path}: unknown items section {key!r}; use one of {', '.join(MAP_SECTIONS)}"
            )
    for key, entries in items.items():
        for entry in entries:
            for stem in entry.get("notebooks") or []:
                if stem not in notebooks:
                    raise BookError(
                        f"{path}: {entry['id']} names {stem!r}, which is not under "
                        f"'notebooks:'; add it there with its issue number"
                    )
    for stem, info in notebooks.items():
        if "issue" not in info:
            raise BookError(f"{path}: notebook {stem!r} has no issue number; add 'issue: N'")
    return data


def paper_map_markdown(paper_map: dict, present: set[str] | list[str], existing=()) -> str:
    """MyST tables mapping each paper item to its notebook(s).

    A notebook in ``present`` becomes a ``{doc}`` link to ``notebooks/<stem>``; one that exists
    (``existing``) but was not executed for this build (a partial book) reads ``not run in this
    build``; any other reads ``planned (issue #N)``. Present notebooks that the map does not mention
    are listed at the end.
    """
    present, existing = set(present), set(existing)
    notebooks = paper_map.get("notebooks") or {}

    def cell(stems):
        out = []
        for stem in stems:
            if stem in present:
                out.append(f"{{doc}}`{stem} <notebooks/{stem}>`")
            elif stem in existing:
                out.append(f"`{stem}` — not run in this build")
            else:
                out.append(f"`{stem}` — planned (issue #{notebooks[stem]['issue']})")
        return "<br>".join(out) if out else "—"

    lines: list[str] = []
    mentioned: set[str] = set()
    for key, heading in MAP_SECTIONS.items():
        entries = (paper_map.get("items") or {}).get(key) or []
        if not entries:
            continue
        lines += [f"### {heading}", "", "| Paper | Content | Notebook |", "|---|---|---|"]
        for e in entries:
            stems = e.get("notebooks") or []
            mentioned.update(stems)
            title = str(e.get("title", "")).replace("|", "\\|")
            lines.append(f"| {e['id']} | {title} | {cell(stems)} |")
        lines.append("")
    extra = sorted(present - mentioned)
    if extra:
        lines += ["### Other notebooks in this build", ""]
        lines += [f"- {{doc}}`{s} <notebooks/{s}>`" for s in extra]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
