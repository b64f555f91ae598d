"""Reference runs: the numbers the project stands behind, shipped in the repository, and every rerun
checked against them.

A reference run is a finished batch of one dataset and profile, copied from ``build/`` into
``reference/`` with the same layout, so the book renders it without executing anything:

- ``reference/runs/<dataset>/<profile>/<stem>.ipynb``: the executed notebooks, outputs kept (the
  figures inside them, as PNG at the book's resolution);
- ``reference/runs/<dataset>/<profile>/run.json``: the run record -- commit, date, package versions,
  machine and CPU, jobs and threads, the wall time of every notebook and of the batch;
- ``reference/results/<dataset>/<profile>/``: every result table (CSV) with its provenance sidecar
  (JSON), the verdicts among them; figures stay in the notebooks.

:func:`ship` makes one (``dsco reference ship``) and checks the size budget (:data:`BUDGET_MB` per
dataset); :func:`collect` reads its verdicts and :func:`compare` marks every claim of a run
*reproduced*, *changed* or *new* against it -- the scorecard's reference column
(:func:`dsco.book.build`) and ``dsco verify`` (:func:`dsco.cli.verify`: notebooks re-executed into a
scratch folder with caches of their own). ``dsco book --reference`` (``make reference``) renders the
shipped runs (:func:`dsco.book.build_reference`).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd

from . import REFERENCE, ROOT  # REFERENCE: where reference runs live (the layout of build/)
from .verdicts import VERDICTS

#: The size budget of one dataset's reference runs, all profiles together (MB).
BUDGET_MB = 20.0
#: What a claim is against its reference.
STATUS = ("reproduced", "changed", "new")
#: Verdicts that decide a claim: a rerun that moves a claim off one of these has flipped it.
DECIDED = VERDICTS[0], VERDICTS[3]


class ReferenceError(ValueError):
    """A missing reference run or a budget exceeded; the message names the fix."""


def ship(
    dataset: str,
    profile: str,
    *,
    trace=None,
    runs_dir=None,
    results_dir=None,
    folder=None,
    notebooks: bool = True,
) -> Path:
    """Copy the finished batch of ``dataset`` and ``profile`` from ``build/`` (or ``runs_dir`` /
    ``results_dir``, laid out as ``build/runs`` / ``build/results``) into the reference folder,
    replacing what was there, and write its run record (:func:`run_record`, with the batch's trace
    ``trace`` when given); ``notebooks=False`` ships the results and the record alone (the smoke
    references that CI compares numbers with). Refuses a partial batch (a numbered notebook
    without its executed copy) and a reference beyond :data:`BUDGET_MB`, leaving the previous
    reference in place."""
    from .runner import notebooks as numbered

    runs = Path(runs_dir or ROOT / "build" / "runs") / dataset / profile
    res = Path(results_dir or ROOT / "build" / "results") / dataset / profile
    missing = [p.stem for p in numbered() if not (runs / p.name).is_file()]
    if missing:
        raise ReferenceError(
            f"the {dataset}/{profile} batch is incomplete ({', '.join(missing)} "
            f"not executed): run `dsco run --dataset {dataset} --profile {profile}` "
            "to the end first"
        )
    base = Path(folder or REFERENCE)
    staged = base / f".staging-{dataset}-{profile}"
    shutil.rmtree(staged, ignore_errors=True)
    (staged / "runs").mkdir(parents=True)
    (staged / "results").mkdir()
    for p in numbered() if notebooks else ():
        shutil.copy2(runs / p.name, staged / "runs" / p.name)
    for f in sorted(res.glob("*")):
        if f.suffix in (".csv", ".json"):
            shutil.copy2(f, staged / "results" / f.name)
    record = run_record(dataset, profile, runs, trace)
    (staged / "runs" / "run.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
    size = _megabytes(staged) + sum(
        _megabytes(base / kind / dataset / other)
        for kind in ("runs", "results")
        for other in _profiles(base, dataset)
        if other != profile
    )
    if size > BUDGET_MB:
        shutil.rmtree(staged)
        raise ReferenceError(
            f"the {dataset} reference would take {size:.1f} MB, over the "
            f"{BUDGET_MB:g} MB budget: lower the figures' resolution or drop "
            "large tables"
        )
    for kind in ("runs", "results"):
        target = base / kind / dataset / profile
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        (staged / kind).rename(target)
    shutil.rmtree(staged)
    return base / "runs" / dataset / profile


def run_record(dataset: str, profile: str, runs: Path, trace=None) -> dict:
    """The run record of the executed notebooks in ``runs``: dataset, profile, the commit and date
    they ran at, package versions, the machine (:func:`dsco.trace.machine`) and, from the batch's
    trace when given, jobs, threads, the batch's wall time and what it computed or read back from
    the caches (:func:`dsco.trace.work`: a rerun from full caches is fast, ``cached_s`` says what
    it stands on); the wall time of every notebook (papermill's, from the executed copies)."""
    from . import results
    from . import trace as tracing

    durations, commits, dates = {}, set(), []
    for p in sorted(runs.glob("*.ipynb")):
        meta = json.loads(p.read_text()).get("metadata", {}).get("papermill", {})
        durations[p.stem] = round(float(meta.get("duration") or 0.0), 1)
        dates.append(meta.get("end_time") or "")
    for f in sorted((runs.parent.parent.parent / "results" / dataset / profile).glob("*.json")):
        commit = json.loads(f.read_text()).get("git_commit")
        if commit:
            commits.add(commit)
    record = {
        "dataset": dataset,
        "profile": profile,
        "commits": sorted(commits),
        "finished": max(dates) if dates else "",
        "packages": results.package_versions(),
        "machine": tracing.machine(),
        "notebook_seconds": durations,
        "notebooks_total_s": round(sum(durations.values()), 1),
    }
    if trace is not None:
        t = tracing.load(trace)
        record |= {
            "jobs": t.meta.get("jobs"),
            "kernel_threads": t.meta.get("kernel_threads"),
            "batch_wall_s": round(t.wall_s, 1),
            "trace": str(Path(trace).name),
            "machine": t.meta.get("machine") or record["machine"],
            "work": tracing.work(t),
        }
    return record


def describe(record: dict) -> str:
    """One line on a run record (:func:`run_record`) for the book of the reference run itself:
    what ran where, how long, and what it read back from the caches."""
    if not record:
        return "this run is the reference (no run record)"
    m = record.get("machine") or {}
    line = (
        f"this run is the reference: {len(record.get('notebook_seconds', {}))} notebooks, "
        f"{m.get('cores', '?')} cores of {m.get('cpu', 'an unknown CPU')}"
    )
    if "batch_wall_s" in record:
        line += f", {record['batch_wall_s'] / 60:.0f} min wall with {record.get('jobs')} jobs"
    w = record.get("work")
    if w:
        line += (
            f"; {w['sets']['cached']} sets and {w['trainings']['cached']} trainings read back "
            f"from caches holding {w['cached_s'] / 3600:.1f} core-hours of computation, "
            f"{w['trainings']['computed']} trainings and {w['sets']['computed']} sets computed"
        )
    return line + " (`run.json`)"


def compare(ours: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    """Every claim of ``ours`` against the reference ``ref`` (both long frames of
    :func:`dsco.scorecard.collect`, one dataset and profile each): ``status`` *reproduced* (the same
    verdict, and every cell's new estimate inside the reference's 95 % interval -- or, where the
    reference cell is undecided, the two intervals overlapping; for a claim on a timing,
    :func:`timed`, the same verdict), *changed* or *new* (no such claim in the reference);
    ``flipped`` where the reference verdict decided the claim and the new one differs; ``why``
    says what differs."""
    key = ["notebook", "claim"]
    ref = ref.drop_duplicates(key, keep="last").set_index(key)
    rows = []
    for _, r in ours.iterrows():
        k = (r["notebook"], r["claim"])
        if k not in ref.index:
            rows.append(
                {
                    **dict(zip(key, k)),
                    "verdict": r["verdict"],
                    "reference": "",
                    "status": "new",
                    "flipped": False,
                    "why": "not in the reference",
                }
            )
            continue
        old = ref.loc[k]
        why = _differences(r, old)
        rows.append(
            {
                **dict(zip(key, k)),
                "verdict": r["verdict"],
                "reference": old["verdict"],
                "status": "changed" if why else "reproduced",
                "flipped": old["verdict"] in DECIDED and r["verdict"] != old["verdict"],
                "why": "; ".join(why),
            }
        )
    return pd.DataFrame(rows, columns=[*key, "verdict", "reference", "status", "flipped", "why"])


def timed(rule: str) -> bool:
    """Whether a claim's rule measures a time (``... of microseconds on ...``, ``... of
    s_per_image ...``: the quantities of :data:`VOLATILE_COLUMNS`). A timing moves with the load of
    the machine beyond what the replicates' interval covers, so such a claim is compared by its
    verdict alone, as timing columns are left out of :func:`compare_numbers`."""
    return any(VOLATILE_COLUMNS.search(name) for name in re.findall(r"\bof (\w+)", rule or ""))


def _differences(new, old) -> list[str]:
    """Why a claim's rerun differs from its reference (empty: reproduced); a timed claim
    (:func:`timed`) by its verdict alone."""
    if new["verdict"] != old["verdict"]:
        return [f"verdict {old['verdict']} → {new['verdict']}"]
    if timed(old.get("rule", "")):
        return []
    ref_cells = {c["cell"]: c for c in json.loads(old["cells"] or "[]")}
    why = []
    for c in json.loads(new["cells"] or "[]"):
        o = ref_cells.get(c["cell"])
        if o is None or c.get("estimate") is None or o.get("lo") is None or c.get("lo") is None:
            continue
        decided = o.get("category") in ("for", "against")
        inside = o["lo"] <= c["estimate"] <= o["hi"]
        overlap = c["lo"] <= o["hi"] and o["lo"] <= c["hi"]
        if not (inside if decided else overlap):
            why.append(
                f"{c['cell'] or 'estimate'}: {c['estimate']:+.3g} against "
                f"[{o['lo']:+.3g}, {o['hi']:+.3g}]"
            )
    return why


def collect(dataset: str, profile: str, folder=None) -> pd.DataFrame:
    """The verdicts of the reference run of ``dataset`` and ``profile`` (empty when none is
    shipped), as :func:`dsco.scorecard.collect` gives them."""
    from . import scorecard

    return scorecard.collect(profile, [dataset], base=Path(folder or REFERENCE) / "results")


def _profiles(base: Path, dataset: str) -> list[str]:
    return sorted(
        {
            p.name
            for kind in ("runs", "results")
            for p in (base / kind / dataset).glob("*")
            if p.is_dir()
        }
    )


def _megabytes(folder: Path) -> float:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file()) / 2**20


def size_mb(dataset: str, folder=None) -> float:
    """The size of every reference run of ``dataset`` (all profiles), in MB."""
    base = Path(folder or REFERENCE)
    return sum(
        _megabytes(base / kind / dataset)
        for kind in ("runs", "results")
        if (base / kind / dataset).is_dir()
    )


#: Results that time or size the machine (wall seconds, peak memory, speed-ups), skipped when the
#: numbers of a run are compared with its reference: whole files by stem prefix, then columns.
VOLATILE_FILES = (
    "cost_",
    "doping_cost",
    "doping_selection_times",
    "engines",
    "projector_cost",
    "table12_ours",
    "fig4_",
    "verdicts_",
)
VOLATILE_COLUMNS = re.compile(
    r"(_s|seconds|wall_s|peak_mem_mb|s_per_image|speedup|cached|"
    r"\(s\)|\(MB\))$|^cost\b"  # times, memory, and ratios of times ("cost ratio ...")
)
#: The rounding tolerance of a number against its reference: the same computation on the same
#: machine is bit-identical; these absorb float formatting and summation order only.
RTOL, ATOL = 1e-5, 1e-8


def compare_numbers(new_dir, ref_dir, notebooks=None) -> pd.DataFrame:
    """Every number of the result tables in ``ref_dir`` (a reference run's results) against the
    same table in ``new_dir``: one row per difference -- ``notebook`` (from the sidecar),
    ``result`` (the file), ``column``, ``row``, ``reference`` and ``new`` -- where a number moved
    beyond :data:`RTOL`/:data:`ATOL`, a text changed, or a table is missing or reshaped. Timing
    and memory columns (:data:`VOLATILE_FILES`, :data:`VOLATILE_COLUMNS`) are not compared, nor
    the verdict files beyond their claims and verdicts; ``notebooks``: only the tables these
    notebooks saved (a rerun of some notebooks). Empty: every number reproduced."""
    new_dir, ref_dir = Path(new_dir), Path(ref_dir)
    rows = []
    for ref_file in sorted(ref_dir.glob("*.csv")):
        side = ref_file.with_suffix(".json")
        notebook = json.loads(side.read_text()).get("notebook") if side.is_file() else None
        if notebooks is not None and notebook not in notebooks:
            continue
        base = {"notebook": notebook or "", "result": ref_file.name}
        new_file = new_dir / ref_file.name
        if not new_file.is_file():
            rows.append(base | {"column": "", "row": "", "reference": "present", "new": "missing"})
            continue
        if new_file.read_bytes() == ref_file.read_bytes():
            continue
        old, new = (pd.read_csv(f, keep_default_na=False) for f in (ref_file, new_file))
        if ref_file.stem.startswith("verdicts_"):
            old, new = old[["claim", "verdict"]], new[["claim", "verdict"]]
        elif ref_file.stem.startswith(VOLATILE_FILES):
            continue
        if list(old.columns) != list(new.columns) or len(old) != len(new):
            rows.append(
                base | {"column": "", "row": "", "reference": f"{old.shape}", "new": f"{new.shape}"}
            )
            continue
        for col in old.columns:
            if VOLATILE_COLUMNS.search(str(col)):
                continue
            for i, (a, b) in enumerate(zip(old[col], new[col])):
                if not _same(a, b):
                    rows.append(base | {"column": str(col), "row": i, "reference": a, "new": b})
    return pd.DataFrame(rows, columns=["notebook", "result", "column", "row", "reference", "new"])


def _same(a, b) -> bool:
    """Equal texts, or numbers within the rounding tolerance (NaN equals NaN)."""
    try:
        x, y = float(a), float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return abs(x - y) <= ATOL + RTOL * abs(x)


def same_machine(record: dict) -> bool:
    """Whether this machine computes as the one of the run record ``record`` did: the same CPU
    model, torch CPU capability and torch version (then the same computation is bit-identical;
    another CPU's kernels may round differently and a training amplifies it)."""
    from . import trace

    here, there = trace.machine(), record.get("machine", {})
    return all(here.get(k) == there.get(k) for k in ("cpu", "cpu_capability", "torch"))
