"""The companion's book: Jupyter Book 1.0 renders the notebooks that ``dsco run`` executed.

The book never executes anything. :func:`build` takes the executed copies that the batch runner
wrote to ``build/runs/<dataset>/<profile>/<stem>.ipynb`` and stages, under ``book/_build/src/``:

* ``_config.yml`` and any other committed source in ``book/`` (copied as they are);
* ``notebooks/<stem>.ipynb`` — one executed copy per notebook in ``notebooks/``, its setup cells
  collapsed behind a toggle (:func:`collapse_setup`);
* ``_toc.yml`` — generated: the scorecard first, then one part per first digit of the notebook
  number (:data:`PARTS`);
* ``scorecard.md`` — generated: every claim the executed notebooks recorded, with its verdict on
  every dataset whose batch of the profile was run (:func:`dsco.scorecard.page`);
* ``intro.md`` — generated from the template ``book/intro.md``: the provenance of the pages
  (dataset, profile, the ``dsco run`` command with its ``-p`` parameters, date, git commit), what
  the dataset stands in for, its backbone and profile (``dsco.datasets``' ``describe()``), and the
  paper → notebook map from ``book/paper_map.yml`` (:mod:`dsco.paper_map`).

Sphinx then writes the site to ``book/_build/html/`` with warnings as errors (a missing notebook or
a broken cross-reference fails the build; the harmless ones are listed in ``suppress_warnings`` in
``book/_config.yml``), and :func:`dsco.sitecheck.check_html` inspects the result (error output
cells, missing images, anything loaded from a CDN). Math renders offline: MathJax 3 is installed
from the npm registry into ``build/node/`` on first use (:func:`dsco.mathjax.ensure_mathjax`) and
served from the site's own ``_static/mathjax/``.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
import yaml

from . import ROOT, datasets, mathjax, reference, scorecard
from .errors import BookError
from .paper_map import load_paper_map, paper_map_markdown
from .sitecheck import check_html

#: Book part of a notebook, by the first digit of its number (SPEC §5).
PARTS = {
    "0": "Setup",
    "1": "Theory",
    "2": "The method on a dataset",
    "3": "Paper tables",
    "4": "Paper figures",
    "5": "Cost and beyond the paper",
}
#: Tags of the cells that set a notebook up: its parameters and the ones papermill injected.
SETUP_TAGS = ("parameters", "injected-parameters")

_NAME = re.compile(r"^(\d)\d_[A-Za-z0-9_]+$")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def build(
    dataset: str = "digits",
    profile: str = "paper",
    *,
    runs_dir: str | Path | None = None,
    notebooks_dir: str | Path | None = None,
    book_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    node_dir: str | Path | None = None,
    commit: str | None = None,
    date: str | None = None,
    check: bool = True,
    quiet: bool = True,
    partial: bool = False,
    results_dir: str | Path | None = None,
    against_reference: bool = True,
    shipped: str | None = None,
) -> Path:
    """Build the book for one dataset and profile; return the path of ``index.html``.

    Defaults: executed notebooks from ``build/runs/<dataset>/<profile>/``, the notebook list from
    ``notebooks/``, sources from ``book/``, output to ``book/_build/`` (``src/`` staged sources,
    ``html/`` the site), MathJax under ``build/node/``. ``commit`` and ``date`` go on the intro page
    (defaults: the current git commit, and the latest papermill end time of the notebooks).
    With ``check`` the built pages go through :func:`dsco.sitecheck.check_html` and any problem
    fails the build. The scorecard reads the verdicts under ``results_dir`` (default: where runs
    save them) and, with ``against_reference``, compares every dataset's claims with its shipped
    reference run (:func:`dsco.reference.compare`) where one exists; ``shipped`` (a line on the
    run record) marks a book of the reference run itself.
    Raises :class:`BookError` with the fix in its message.
    """
    from .results import check_params, git_commit

    check_params(dataset, profile)
    book_dir = Path(book_dir) if book_dir is not None else ROOT / "book"
    out_dir = Path(out_dir) if out_dir is not None else book_dir / "_build"
    for name in ("_config.yml", "intro.md", "paper_map.yml"):
        if not (book_dir / name).is_file():
            raise BookError(f"{book_dir / name} is missing: restore it from git")
    executed = executed_notebooks(dataset, profile, runs_dir, notebooks_dir, partial)
    stems = [p.stem for p in executed]
    static_root = mathjax.ensure_mathjax(node_dir)

    # Stage the sources.
    src, html, doctrees = out_dir / "src", out_dir / "html", out_dir / ".doctrees"
    for d in (src, html, doctrees, out_dir / "jupyter_execute"):
        if d.exists():
            shutil.rmtree(d)
    skip = {
        "_build",
        "notebooks",
        "node_modules",
        ".ipynb_checkpoints",
        "__pycache__",
        "_toc.yml",
        "paper_map.yml",
        "package.json",
        "package-lock.json",
    }
    shutil.copytree(
        book_dir,
        src,
        ignore=lambda folder, names: [
            n for n in names if n in skip or (Path(folder) / n).resolve() == out_dir.resolve()
        ],
    )
    (src / "notebooks").mkdir()
    for p in executed:
        nbformat.write(collapse_setup(nbformat.read(p, as_version=4)), src / "notebooks" / p.name)
    toc = make_toc(stems, front=["scorecard"])
    (src / "_toc.yml").write_text(yaml.safe_dump(toc, sort_keys=False))
    status = {}
    if against_reference:
        for name in scorecard.collect(profile, None, stems, results_dir)["dataset"].unique():
            ref = reference.collect(name, profile)
            if not ref.empty:
                ours = scorecard.collect(profile, [name], stems, results_dir)
                status[name] = reference.compare(ours, ref)
    page = scorecard.page(
        profile, stems, status=status, base=results_dir, shipped=shipped and {dataset: shipped}
    )
    (src / "scorecard.md").write_text(page, encoding="utf8")
    paper_map = load_paper_map(book_dir / "paper_map.yml")
    params = run_parameters(executed)
    intro = render_intro(
        (book_dir / "intro.md").read_text(encoding="utf8"),
        dataset=dataset,
        profile=profile,
        dataset_note=datasets.get(dataset, profile, **params).describe(),
        date=date or _run_date(executed),
        commit=(commit or git_commit() or "unknown")[:12],
        run_command=" ".join(
            [
                f"dsco run --dataset {dataset} --profile {profile}",
                *(f"-p {k} {v}" for k, v in params.items()),
            ]
        ),
        n_notebooks=len(stems),
        paper_map=paper_map_markdown(
            paper_map,
            stems,
            notebook_stems(
                Path(notebooks_dir) if notebooks_dir is not None else ROOT / "notebooks"
            ),
        ),
    )
    (src / "intro.md").write_text(intro, encoding="utf8")

    # Render with warnings as errors (keep going to report them all).
    from jupyter_book.sphinx import build_sphinx

    overrides = {
        "extensions": _extensions(src / "_config.yml"),
        "external_toc_path": (src / "_toc.yml").as_posix(),
        "latex_individualpages": False,
        "html_static_path": [static_root.as_posix()],
    }
    tee = _Tee(None if quiet else sys.stderr)
    with contextlib.redirect_stderr(tee):
        result = build_sphinx(
            src,
            html,
            noconfig=True,
            path_config=str(src / "_config.yml"),
            confoverrides=overrides,
            doctreedir=doctrees,
            freshenv=True,
            warningiserror=True,
            keep_going=True,
            quiet=quiet,
        )
    log = re.sub(r"\x1b\[[0-9;]*m", "", tee.getvalue())
    if isinstance(result, BaseException):
        raise BookError(f"the book build crashed: {result!r}\n{log}") from result
    warnings = [
        line.replace(f"{src.resolve()}/", "").replace(f"{src}/", "")
        for line in log.splitlines()
        if "WARNING" in line or "ERROR" in line
    ]
    if result != 0 and not warnings:
        warnings = log.strip().splitlines()[-5:] or [f"sphinx exited with status {result}"]
    index = html / "index.html"
    problems = check_html(html) if check and index.is_file() else []
    if warnings or problems:
        lines = [f"Sphinx warning: {w}" for w in warnings] + problems
        raise BookError(
            f"the book at {html} has {len(lines)} problem(s) (broken pages; fix the "
            f"notebooks or book/, rerun the notebooks with `dsco run --dataset "
            f"{dataset} --profile {profile}`):\n" + "\n".join(lines)
        )
    if not index.is_file():
        raise BookError(
            f"the build wrote no {index}: rerun with quiet=False to see Sphinx's output"
        )
    return index


# --------------------------------------------------------------------------------------------
# Sources


def notebook_stems(notebooks_dir: str | Path) -> list[str]:
    """Stems of the notebooks in ``notebooks_dir`` in reading (= execution) order.

    Names must look like ``NN_short_name.ipynb`` with a first digit in :data:`PARTS`.
    """
    notebooks_dir = Path(notebooks_dir)
    stems = sorted(p.stem for p in notebooks_dir.glob("*.ipynb"))
    for stem in stems:
        m = _NAME.match(stem)
        if not m:
            raise BookError(
                f"{notebooks_dir / stem}.ipynb: name it NN_short_name.ipynb "
                f"(two digits, then letters, digits or '_') so the book can place it"
            )
        if m.group(1) not in PARTS:
            raise BookError(
                f"{notebooks_dir / stem}.ipynb: the book has no part for "
                f"{m.group(1)}x; use a number in 0x-5x (SPEC §5) or add one to "
                f"dsco.book.PARTS"
            )
    return stems


def executed_notebooks(
    dataset: str,
    profile: str,
    runs_dir: str | Path | None = None,
    notebooks_dir: str | Path | None = None,
    partial: bool = False,
) -> list[Path]:
    """The executed copy of every notebook in ``notebooks_dir``, in order.

    Raises :class:`BookError` (naming the ``dsco run`` command to run) when there are none or when
    a notebook has no executed copy in ``runs_dir/<dataset>/<profile>/`` -- unless ``partial``: then
    the executed ones (a batch run with ``--only``), and the intro marks the others as not run.
    """
    runs_dir = Path(runs_dir) if runs_dir is not None else ROOT / "build" / "runs"
    notebooks_dir = Path(notebooks_dir) if notebooks_dir is not None else ROOT / "notebooks"
    fix = f"run `dsco run --dataset {dataset} --profile {profile}` first"
    stems = notebook_stems(notebooks_dir)
    if not stems:
        raise BookError(f"no notebooks in {notebooks_dir}: nothing to put in the book")
    run_dir = runs_dir / dataset / profile
    if not run_dir.is_dir() or not any(run_dir.glob("*.ipynb")):
        raise BookError(f"no executed notebooks in {run_dir}: {fix}")
    missing = [s for s in stems if not (run_dir / f"{s}.ipynb").is_file()]
    if missing and not partial:
        raise BookError(
            f"no executed copy of {', '.join(missing)} in {run_dir}: {fix} (or build "
            "a partial book with --partial)"
        )
    return [run_dir / f"{s}.ipynb" for s in stems if s not in missing]


def collapse_setup(nb):
    """Tag the setup cells of an executed notebook ``hide-input`` (myst-nb shows their outputs and
    puts their code behind a "Show code cell source" toggle): every code cell up to the first one
    after the last cell tagged with one of :data:`SETUP_TAGS` -- the parameters, the injected
    parameters and the setup cell that imports the package and resolves the dataset. Returns ``nb``
    (changed in place)."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    last = max(
        (i for i, c in enumerate(code) if set(SETUP_TAGS) & set(c.metadata.get("tags", []))),
        default=None,
    )
    for cell in code[: last + 2] if last is not None else []:
        tags = cell.metadata.setdefault("tags", [])
        if "hide-input" not in tags:
            tags.append("hide-input")
    return nb


def make_toc(stems: list[str], root: str = "intro", front=()) -> dict:
    """The ``_toc.yml`` (jb-book format) for the notebooks ``stems``: the pages ``front`` (e.g. the
    scorecard) first, in a part of their own, then one part per first digit of the notebooks."""
    parts = [{"caption": "Claims", "chapters": [{"file": f} for f in front]}] if front else []
    for digit, caption in PARTS.items():
        chapters = [{"file": f"notebooks/{s}"} for s in stems if s[0] == digit]
        if chapters:
            parts.append({"caption": caption, "chapters": chapters})
    return {"format": "jb-book", "root": root, "parts": parts}


# --------------------------------------------------------------------------------------------
# The intro page


def render_intro(template: str, **values) -> str:
    """Fill the ``{{ name }}`` placeholders of the intro template; every one must be given."""
    unknown = sorted(set(_PLACEHOLDER.findall(template)) - set(values))
    if unknown:
        raise BookError(f"intro template needs {', '.join(unknown)}; pass them to render_intro")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def run_parameters(paths: list[Path]) -> dict:
    """The dataset parameters (``root``, ``backbone_path``, … of :data:`dsco.datasets.PARAMS`) the
    notebooks were executed with, read from papermill's metadata of the executed copies."""
    found = {}
    for p in paths:
        try:
            meta = json.loads(p.read_text(encoding="utf8")).get("metadata", {})
        except (OSError, ValueError):
            continue
        given = (meta.get("papermill") or {}).get("parameters") or {}
        found.update({k: v for k, v in given.items() if k in datasets.PARAMS and v is not None})
    return found


def _run_date(paths: list[Path]) -> str:
    """When the pages were produced: the latest papermill end time of the executed notebooks."""
    ends = []
    for p in paths:
        try:
            meta = json.loads(p.read_text(encoding="utf8")).get("metadata", {})
        except (OSError, ValueError):
            continue
        end = (meta.get("papermill") or {}).get("end_time")
        if end:
            ends.append(str(end))
    if ends:
        return max(ends)[:16].replace("T", " ") + " UTC"
    return time.strftime("%Y-%m-%d")


# --------------------------------------------------------------------------------------------
# Sphinx


def _extensions(config_path: Path) -> list[str]:
    """Jupyter Book's default Sphinx extensions without ``sphinx_thebe``.

    ``sphinx_thebe`` writes ``THEBE_JS_URL = "https://unpkg.com/thebe..."`` into every page (thebe
    runs cells on Binder; this book has no launch buttons). ``sphinx_comments`` stays: it adds
    nothing while ``html.comments`` is off. The ``extra_extensions`` of ``_config.yml`` are kept.
    """
    from jupyter_book.config import get_default_sphinx_config

    user = (yaml.safe_load(config_path.read_text(encoding="utf8")) or {}).get("sphinx") or {}
    exts = [e for e in get_default_sphinx_config()["extensions"] if e != "sphinx_thebe"]
    return exts + [e for e in user.get("extra_extensions") or [] if e not in exts]


class _Tee(io.StringIO):
    """Collects Sphinx's warning stream (and still shows it when ``echo``)."""

    def __init__(self, echo):
        super().__init__()
        self.echo = echo

    def write(self, s):
        if self.echo is not None:
            self.echo.write(s)
        return super().write(s)

    def isatty(self):
        return False


def build_reference(
    profile: str = "paper", datasets=None, folder=None, out_dir=None, **options
) -> dict:
    """Render the shipped reference runs of ``profile`` (``dsco book --reference``, ``make
    reference``): one book per dataset that has one (or ``datasets``), from its executed notebooks
    and recorded results, nothing executed, into ``book/_build/reference/<dataset>/`` (or
    ``out_dir``). Returns ``{dataset: index.html}``."""
    base = Path(folder or reference.REFERENCE)
    names = datasets or sorted(
        p.parent.name for p in (base / "runs").glob(f"*/{profile}") if p.is_dir()
    )
    if not names:
        raise BookError(
            f"no reference run of the {profile} profile is shipped in "
            f"{base / 'runs'}: ship one with `dsco reference ship`"
        )
    out = Path(out_dir or ROOT / "book" / "_build" / "reference")
    books = {}
    for name in names:
        path = base / "runs" / name / profile / "run.json"
        record = json.loads(path.read_text()) if path.is_file() else {}
        commits = record.get("commits", [])
        books[name] = build(
            name,
            profile,
            runs_dir=base / "runs",
            out_dir=out / name,
            results_dir=base / "results",
            against_reference=False,
            shipped=reference.describe(record),
            commit=", ".join(c[:12] for c in commits) or None,
            **options,
        )
    return books
