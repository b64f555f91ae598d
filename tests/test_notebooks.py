"""End to end: every notebook executes in the smoke profile through the batch runner, the book
builds from those executed copies, and no rendered page shows an error cell or a missing image.

This is the slow test of the suite (it is what CI spends most of its time on)."""
import nbformat
import pytest

from dsco import book, runner


@pytest.mark.slow
def test_every_notebook_runs_in_smoke_and_the_book_builds():
    results = runner.run("digits", "smoke", progress=False, log=None, jobs=2)  # 2 cores: 2 kernels
    assert [r.notebook for r in results] == [p.stem for p in runner.notebooks()]
    for r in results:
        nb = nbformat.read(r.output, as_version=4)
        errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{r.notebook} has an error output"
    index = book.build(dataset="digits", profile="smoke")
    assert index.exists()
    assert book.check_html(index.parent) == []
    pages = {p.stem for p in index.parent.rglob("*.html")}
    assert {r.notebook for r in results} <= pages


def test_every_notebook_has_one_tagged_parameters_cell_with_the_common_names():
    for path in runner.notebooks():
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path.name
        for name in ("dataset", "profile", "seed", "device"):
            assert f"{name} =" in tagged[0].source, f"{path.name} lacks {name}"
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
            f"{path.name} is stored with outputs: clear them"


def test_titles_have_no_math():
    """Page titles appear in the book's sidebar on every page, including pages that load no MathJax."""
    for path in runner.notebooks():
        nb = nbformat.read(path, as_version=4)
        titles = [ln for c in nb.cells if c.cell_type == "markdown" for ln in c.source.splitlines()
                  if ln.startswith("# ")]
        assert len(titles) == 1, f"{path.name}: one H1 title per notebook"
        assert "$" not in titles[0], f"{path.name}: write the title without $…$ math (use Unicode)"
