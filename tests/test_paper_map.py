"""The book's paper map (dsco.paper_map): every paper item is mapped to notebooks, and the intro's
tables link the notebooks of a build or mark them as not run or planned."""

from __future__ import annotations

import pytest

from dsco import ROOT, book, paper_map
from dsco.errors import BookError


def test_paper_map_covers_every_section_table_and_figure():
    data = paper_map.load_paper_map(ROOT / "book" / "paper_map.yml")
    ids = {e["id"] for entries in data["items"].values() for e in entries}
    wanted = (
        {f"§3.{i}" for i in range(1, 6)}
        | {"§4.1", "§4.2"}
        | {f"Table {i}" for i in range(1, 14)}
        | {f"Figure {i}" for i in range(1, 9)}
    )
    assert wanted <= ids, wanted - ids
    assert all(e["notebooks"] for entries in data["items"].values() for e in entries)
    # every notebook the project has is on the map (so the intro never hides one)
    for stem in book.notebook_stems(ROOT / "notebooks"):
        assert stem in data["notebooks"], f"add {stem} to book/paper_map.yml"


def test_paper_map_markdown_links_or_plans(tmp_path):
    data = {
        "notebooks": {"10_a": {"issue": 2}, "11_b": {"issue": 9}},
        "items": {
            "tables": [
                {"id": "Table 13", "title": "x | y", "notebooks": ["10_a"]},
                {"id": "Table 1", "title": "t", "notebooks": ["11_b"]},
            ]
        },
    }
    md = paper_map.paper_map_markdown(data, present={"10_a", "12_extra"})
    assert "| Table 13 | x \\| y | {doc}`10_a <notebooks/10_a>` |" in md
    assert "`11_b` — planned (issue #9)" in md
    assert "{doc}`12_extra <notebooks/12_extra>`" in md  # present but unmapped: still listed
    assert "`11_b` — not run in this build" in paper_map.paper_map_markdown(
        data, {"10_a"}, existing={"10_a", "11_b"}
    )
    bad = tmp_path / "map.yml"
    bad.write_text("notebooks: {}\nitems:\n  tables:\n    - {id: T1, notebooks: [99_x]}\n")
    with pytest.raises(BookError, match="99_x"):
        paper_map.load_paper_map(bad)
