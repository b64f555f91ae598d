"""The book: staging, toc, intro, offline build, and the HTML check (dsco.book).

The builds here use tiny synthetic "executed" notebooks written with nbformat (a tagged parameters
cell, $x^2$ math, a matplotlib PNG output), so they do not depend on the real notebooks. Two Sphinx
builds in all (~15 s each on 2 cores); MathJax comes from the npm registry once (build/node/).
"""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dsco import book, results, scorecard, sitecheck
from dsco import verdicts as V
from dsco.errors import BookError

pytestmark = pytest.mark.slow

PRESENT = ("10_occupancy_table13", "21_nopt_fig5_fig6")


def _png() -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [0, 1, 4])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _error_cell(tags=()):
    return new_code_cell(
        "1 / 0",
        execution_count=4,
        metadata={"tags": list(tags)},
        outputs=[
            new_output(
                "error",
                ename="ZeroDivisionError",
                evalue="division by zero",
                traceback=["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"],
            )
        ],
    )


def _executed(title: str, extra_cells=()) -> nbformat.NotebookNode:
    cells = [
        new_markdown_cell(
            f"# {title}\n\nThe loss is $x^2$, and $$\\int_0^1 x^2\\,dx = \\tfrac13.$$"
        ),
        new_code_cell(
            'dataset = "digits"\nprofile = "smoke"\nseed = 0\ndevice = "cpu"',
            metadata={"tags": ["parameters"]},
            execution_count=1,
        ),
        new_code_cell(
            "import matplotlib.pyplot as plt\nplt.plot([0, 1, 2], [0, 1, 4])",
            execution_count=2,
            outputs=[
                new_output(
                    "display_data",
                    data={"image/png": _png(), "text/plain": "<Figure size 300x200>"},
                ),
                new_output("stream", name="stderr", text="100%|##########| 3/3\n"),
            ],
        ),
        *extra_cells,
    ]
    return new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "papermill": {
                "end_time": "2026-01-02T03:04:05.000000",
                "parameters": {"profile": "smoke"},
            },
        },
    )


def _project(tmp: Path, extra_cells=None) -> dict:
    """notebooks/ (sources) and runs/digits/smoke/ (executed copies) for the PRESENT stems."""
    extra_cells = extra_cells or {}
    nb_dir, run_dir = tmp / "notebooks", tmp / "runs" / "digits" / "smoke"
    nb_dir.mkdir(parents=True)
    run_dir.mkdir(parents=True)
    for i, stem in enumerate(PRESENT):
        executed = _executed(f"Synthetic page {i}", extra_cells.get(stem, ()))
        source = nbformat.from_dict(executed)
        for cell in source.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(source, nb_dir / f"{stem}.ipynb")
        nbformat.write(executed, run_dir / f"{stem}.ipynb")
    return dict(runs_dir=tmp / "runs", notebooks_dir=nb_dir, out_dir=tmp / "out")


@pytest.fixture(scope="module")
def good_book(tmp_path_factory):
    dirs = _project(tmp_path_factory.mktemp("good"))
    with pytest.MonkeyPatch.context() as mp:  # one recorded verdict for the scorecard page
        mp.setenv("DSCO_RESULTS", str(tmp_path_factory.mktemp("results")))
        results.start("digits", "smoke", 0, "cpu")
        scorecard.record(
            {"occupancy ≈ 1 − 1/e": V.agreement(0.632, 0.001, 0.632, 0.01)},
            "10_occupancy_table13",
            "App. B",
        )
        index = book.build("digits", "smoke", commit="0123456789abcdef", **dirs)
    return index, dirs


@pytest.fixture(scope="module")
def bad_book(tmp_path_factory):
    """21_...: an error output and a link to a page that does not exist; 10_...: an error shown on
    purpose (tag raises-exception) and a heading level skipped (a suppressed, harmless warning)."""
    dirs = _project(
        tmp_path_factory.mktemp("bad"),
        extra_cells={
            "21_nopt_fig5_fig6": [_error_cell(), new_markdown_cell("See {doc}`12_sampling_bias`.")],
            "10_occupancy_table13": [
                _error_cell(tags=["raises-exception"]),
                new_markdown_cell("### Skipped a level"),
            ],
        },
    )
    with pytest.raises(BookError) as err:
        book.build("digits", "smoke", **dirs)
    return dirs["out_dir"] / "html", str(err.value)


# ---------------------------------------------------------------- the built book


def test_build_writes_index_and_pages(good_book):
    index, dirs = good_book
    html = index.parent
    assert index == dirs["out_dir"] / "html" / "index.html" and index.is_file()
    for stem in PRESENT:
        assert (html / "notebooks" / f"{stem}.html").is_file()
    toc = (dirs["out_dir"] / "src" / "_toc.yml").read_text()
    assert "caption: Theory" in toc and "caption: The method on a dataset" in toc
    assert "Setup" not in toc  # no 0x notebook present -> no empty part
    assert toc.index("file: scorecard") < toc.index("file: notebooks/")  # the scorecard comes first
    card = (html / "scorecard.html").read_text()
    assert 'href="notebooks/10_occupancy_table13.html"' in card and "occupancy ≈ 1 − 1/e" in card
    assert "not measured (smoke)" in card and "Smoke profile: nothing here is a finding" in card
    assert "0.632 [0.63, 0.634] against 0.632" in card  # the numbers, on expand


def test_intro_map_links_present_and_marks_missing_as_planned(good_book):
    index, _ = good_book
    intro = (index.parent / "intro.html").read_text()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", intro))
    assert 'href="notebooks/10_occupancy_table13.html"' in intro
    assert 'href="notebooks/21_nopt_fig5_fig6.html"' in intro
    assert "12_sampling_bias — planned (issue #4)" in text
    assert "51_cost_table12_fig4 — planned (issue #7)" in text
    assert "Table 13" in text and "Figure 8" in text
    assert "0123456789ab" in text and "smoke" in text and "2026-01-02 03:04 UTC" in text


def test_check_html_finds_no_problems_in_a_good_book(good_book):
    index, _ = good_book
    assert sitecheck.check_html(index.parent) == []


def test_math_and_figures_are_local(good_book):
    index, _ = good_book
    html = index.parent
    page = (html / "notebooks" / "10_occupancy_table13.html").read_text()
    assert 'class="math' in page  # $x^2$ became math for MathJax, not literal text
    assert re.search(r'<script[^>]+src="\.\./_static/mathjax/tex-chtml\.js', page)
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    assert (html / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    imgs = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert imgs and all((html / "notebooks" / src).is_file() for src in imgs)


def test_no_cdn_references_in_built_pages(good_book):
    index, _ = good_book
    html = index.parent
    for page in html.rglob("*.html"):
        if "_static" in page.parts:
            continue
        text = page.read_text()
        for marker in ("cdn.jsdelivr", "unpkg", "googleapis", "cdnjs"):
            assert marker not in text, (page, marker)
        sources = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="([^"]+)"', text)
        assert not [s for s in sources if s.startswith(("http:", "https:", "//"))], page


def test_check_html_flags_missing_image_and_cdn(good_book, tmp_path):
    index, _ = good_book
    html = tmp_path / "html"
    shutil.copytree(index.parent, html)
    page = html / "notebooks" / "10_occupancy_table13.html"
    img = re.search(r'<img[^>]+src="([^"]+)"', page.read_text()).group(1)
    (page.parent / img).unlink()
    text = page.read_text().replace(
        "</head>",
        '<script src="https://cdn.jsdelivr.net/npm/x.js"></script>'
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Lato">'
        "</head>",
    )
    page.write_text(
        text.replace("</body>", '<a href="https://arxiv.org/abs/2603.27987">paper</a></body>')
    )
    problems = sitecheck.check_html(html)
    assert any("missing image" in p and img in p for p in problems)
    assert any("cdn.jsdelivr.net" in p for p in problems)
    assert any("fonts.googleapis.com" in p for p in problems)
    assert not any("arxiv.org" in p for p in problems)  # a plain hyperlink is fine
    assert sitecheck.check_html(tmp_path / "nowhere") != []


def test_broken_reference_and_error_output_fail_the_build(bad_book):
    html, message = bad_book
    lines = message.splitlines()
    assert "dsco run --dataset digits --profile smoke" in lines[0]
    assert [ln for ln in lines if ln.startswith("Sphinx warning") and "12_sampling_bias" in ln]
    assert [ln for ln in lines if "error output cell" in ln and "ZeroDivisionError" in ln]
    assert not [ln for ln in lines if "Skipped" in ln or "header" in ln.lower()]
    assert len(lines) == 3, message  # exactly: header line, the broken link, the error cell


def test_check_html_flags_a_code_line_that_needs_a_scrollbar(good_book, tmp_path):
    index, _ = good_book
    html = tmp_path / "html"
    shutil.copytree(index.parent, html)
    page = html / "notebooks" / "10_occupancy_table13.html"
    assert sitecheck.check_html(html) == []  # the rendered input cells: short lines
    text = page.read_text()
    assert '<div class="cell_input' in text and "<pre><span></span>" in text
    page.write_text(
        text.replace("<pre><span></span>", "<pre><span></span># " + "x" * 111 + "\n", 1)
    )
    assert sitecheck.check_html(html) == [
        "notebooks/10_occupancy_table13.html: a code line of 113 characters (over 100: wrap it, "
        "e.g. ruff format --line-length 100)"
    ]
    # a user's long path in the cell papermill injects is not authored code
    at = text.index("<pre><span></span>")
    cell = text.rindex('<div class="cell ', 0, at) + len('<div class="cell ')
    page.write_text(
        text[:cell]
        + "tag_injected-parameters "
        + text[cell:at]
        + "<pre><span></span>root = '/"
        + "x" * 111
        + "'\n"
        + text[at + len("<pre><span></span>") :]
    )
    assert sitecheck.check_html(html) == []


def test_check_html_flags_error_output(bad_book):
    html, _ = bad_book
    problems = sitecheck.check_html(html)
    assert len(problems) == 1, problems  # the raises-exception cell in 10_... is exempt
    assert problems[0].startswith("notebooks/21_nopt_fig5_fig6.html: error output cell")


# ---------------------------------------------------------------- bad input, without a build


def test_build_without_executed_notebooks_names_the_fix(tmp_path):
    dirs = _project(tmp_path)
    shutil.rmtree(dirs["runs_dir"])
    with pytest.raises(BookError, match=r"run `dsco run --dataset digits --profile smoke` first"):
        book.build("digits", "smoke", **dirs)
    (dirs["runs_dir"] / "digits" / "smoke").mkdir(parents=True)
    nbformat.write(_executed("x"), dirs["runs_dir"] / "digits" / "smoke" / f"{PRESENT[0]}.ipynb")
    with pytest.raises(
        BookError,
        match=rf"no executed copy of {PRESENT[1]} .*"
        r"run `dsco run --dataset digits --profile smoke` first",
    ):
        book.executed_notebooks("digits", "smoke", dirs["runs_dir"], dirs["notebooks_dir"])
    partial = book.executed_notebooks(
        "digits", "smoke", dirs["runs_dir"], dirs["notebooks_dir"], partial=True
    )
    assert [p.stem for p in partial] == [PRESENT[0]]  # a batch run with --only: those notebooks
    with pytest.raises(ValueError, match="unknown profile"):
        book.build("digits", "fast", **dirs)


def test_notebook_stems_order_and_bad_names(tmp_path):
    for name in ("21_b", "00_a", "10_c"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    assert book.notebook_stems(tmp_path) == ["00_a", "10_c", "21_b"]
    (tmp_path / "notes.ipynb").write_text("{}")
    with pytest.raises(BookError, match="NN_short_name"):
        book.notebook_stems(tmp_path)
    (tmp_path / "notes.ipynb").unlink()
    (tmp_path / "71_x.ipynb").write_text("{}")
    with pytest.raises(BookError, match="no part for 7x"):
        book.notebook_stems(tmp_path)


def test_make_toc_groups_by_first_digit():
    toc = book.make_toc(["00_a", "11_b", "12_c", "52_d"])
    assert toc["format"] == "jb-book" and toc["root"] == "intro"
    assert [p["caption"] for p in toc["parts"]] == ["Setup", "Theory", "Cost and beyond the paper"]
    assert toc["parts"][1]["chapters"] == [{"file": "notebooks/11_b"}, {"file": "notebooks/12_c"}]
    front = book.make_toc(["00_a"], front=["scorecard"])["parts"]  # the scorecard comes first
    assert (
        front[0] == {"caption": "Claims", "chapters": [{"file": "scorecard"}]}
        and front[1]["caption"] == "Setup"
    )


def test_render_intro_fills_and_rejects_missing_values():
    assert book.render_intro("a {{ x }} b {{y}}", x=1, y="z") == "a 1 b z"
    with pytest.raises(BookError, match="needs y"):
        book.render_intro("{{ x }} {{ y }}", x=1)


def test_run_parameters_come_from_papermill_metadata_and_the_intro_describes_the_dataset(tmp_path):
    paths = []
    for i, given in enumerate(
        [
            {"profile": "smoke"},
            {"root": "/data/nette", "backbone_path": "/m/dit", "seed": 3, "teacher_path": None},
        ]
    ):
        nb = _executed(f"N{i}")
        nb.metadata["papermill"]["parameters"] = given
        paths.append(tmp_path / f"{i}.ipynb")
        nbformat.write(nb, paths[-1])
    assert book.run_parameters(paths) == {"root": "/data/nette", "backbone_path": "/m/dit"}
    assert book.run_parameters([tmp_path / "missing.ipynb"]) == {}


def test_the_built_intro_says_what_stands_in_for_what(good_book):
    index, _ = good_book
    intro = (index.parent / "intro.html").read_text()
    assert "digits (scikit-learn, 8×8)" in intro and "shipped" in intro and "Profile" in intro


def test_collapse_setup_tags_the_parameters_and_the_setup_cell():
    nb = _executed("t", [new_code_cell("x = 1")])
    nb.cells.insert(
        2, new_code_cell('profile = "paper"', metadata={"tags": ["injected-parameters"]})
    )
    book.collapse_setup(nb)
    tags = [c.metadata.get("tags", []) for c in nb.cells if c.cell_type == "code"]
    assert ["hide-input" in t for t in tags] == [
        True,
        True,
        True,
        False,
    ]  # params, injected, setup; not x = 1
    assert book.collapse_setup(nb).cells[1].metadata["tags"] == [
        "parameters",
        "hide-input",
    ]  # idempotent
    plain = new_notebook(cells=[new_code_cell("y = 2")])
    assert (
        "tags" not in book.collapse_setup(plain).cells[0].metadata
    )  # no parameters: nothing is hidden


def test_setup_cells_are_collapsed_behind_a_toggle_in_the_built_pages(good_book):
    from bs4 import BeautifulSoup

    index, _ = good_book
    soup = BeautifulSoup(
        (index.parent / "notebooks" / f"{PRESENT[0]}.html").read_text(), "html.parser"
    )
    cells = soup.select("div.cell")
    assert len(cells) >= 2
    for cell in cells[:2]:  # the parameters cell and the setup cell after it
        assert "tag_hide-input" in cell["class"]
        toggle = cell.find("details")
        assert toggle is not None and toggle.find("div", class_="cell_input") is not None
    # outputs stay visible: the setup cell's figure is outside the toggle
    assert cells[1].find("img") is not None and cells[1].find("details").find("img") is None


def test_the_reference_book_renders_shipped_runs_and_a_rerun_is_compared_with_them(tmp_path):
    """``dsco book --reference``: the shipped runs and results, nothing executed, no comparison
    with itself; a book of a rerun marks each claim against the shipped reference."""
    from dsco import reference

    dirs = _project(tmp_path)  # runs/digits/smoke/<stems>: the shipped layout
    verdict = V.agreement(0.632, 0.001, 0.632, 0.01)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DSCO_RESULTS", str(tmp_path / "results"))
        results.start("digits", "smoke", 0, "cpu")
        scorecard.record(
            {"occupancy ≈ 1 − 1/e": verdict}, "10_occupancy_table13", "App. B", show=False
        )
    books = book.build_reference(
        "smoke", folder=tmp_path, out_dir=tmp_path / "books", notebooks_dir=dirs["notebooks_dir"]
    )
    card = (books["digits"].parent / "scorecard.html").read_text()
    assert "occupancy ≈ 1 − 1/e" in card and "against the reference run" in card
    assert "this run is the reference" in card and "reproduced" not in card  # not with itself
    with pytest.MonkeyPatch.context() as mp:  # a rerun of the same claims, the reference shipped
        mp.setattr(reference, "REFERENCE", tmp_path)
        mp.setenv("DSCO_RESULTS", str(tmp_path / "results"))
        index = book.build(
            "digits",
            "smoke",
            runs_dir=dirs["runs_dir"],
            notebooks_dir=dirs["notebooks_dir"],
            out_dir=tmp_path / "rerun",
        )
    card = (index.parent / "scorecard.html").read_text()
    assert "1 reproduced<br>0 changed<br>0 new" in card  # the run table's comparison cell
    with pytest.raises(BookError, match="no reference run of the paper profile"):
        book.build_reference("paper", folder=tmp_path)


BLOCK_HEAVY = """
import sys

class Block:  # what requirements-book.txt leaves out must never be imported
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "torchvision", "diffusers", "timm", "sklearn",
                                  "matplotlib", "seaborn", "papermill", "mlxtend"}:
            raise ImportError(f"{name} is not in requirements-book.txt")

sys.meta_path.insert(0, Block())
from dsco import book, cli  # noqa: F401  (the command's module imports nothing heavy either)
book.build_reference("paper", out_dir=sys.argv[1])
"""


def test_the_shipped_reference_renders_without_torch(tmp_path):
    """``make reference`` installs requirements-book.txt only: the shipped runs render with torch
    and the other training libraries unimportable."""
    import subprocess
    import sys

    from dsco import reference

    if not list((reference.REFERENCE / "runs").glob("*/paper/run.json")):
        pytest.skip("no paper reference run is shipped")
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_HEAVY, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(tmp_path.glob("*/html/scorecard.html"))
