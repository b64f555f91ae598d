"""The batch runner: execute the numbered notebooks with papermill, one dataset and profile at a
time.

``run(dataset, profile, ...)`` executes ``notebooks/NN_*.ipynb`` in numbered order, injecting
``dataset``, ``profile``, ``seed``, ``device`` and the extra parameters (``-p``) into each
notebook's cell tagged ``parameters`` -- each notebook receives the names its cell declares
(:func:`declared`); a ``-p`` name that no notebook declares is refused. Before anything runs, the
dataset's parameters are checked (:meth:`dsco.datasets.Dataset.check`: root folders, backbone and
teacher shapes). Executed copies go to ``build/runs/<dataset>/<profile>/<stem>.ipynb``; that folder
is what the book renders.

Caching: beside each executed copy sits ``<stem>.key``, a SHA-256 of the injected parameters, the
notebook's source cells, every file of the package (``dsco/``) and of ``data/``, and what the
notebook reads besides (:func:`inputs_digest`): the content of the user's data tree (``-p root``)
and, for every notebook after the setup notebooks, the models notebook 00 trained
(``build/models/<dataset>/``) -- both as cheap digests of file paths, sizes and modification times
(:func:`dsco.tree_digest`), not of the bytes. A rerun whose key matches skips the notebook, so a
retrain or a changed tree re-executes what depends on it; ``force=True`` re-executes it anyway.

Failures: the notebook's previous executed copy and key are deleted (stale output never reaches the
book), the failed copy is kept as ``<stem>.failed.ipynb`` for inspection, and
:class:`NotebookFailed` names the notebook, the failing cell and the exception line.

Parallel batches: ``jobs > 1`` first executes the setup notebooks (``0x_*``: they train or load what
the others read) one after another, then the rest in up to ``jobs`` concurrent papermill kernels.
Those kernels share the cores: each gets ``cores // jobs`` (at least 1) OpenMP/MKL threads through
``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` (:func:`kernel_threads`; a value the user set is kept).
Left at torch's default, every kernel starts one thread per core and the spinning threads of two
kernels slow each other down by an order of magnitude.
A failure no longer stops the batch: the other notebooks finish, then :class:`NotebookFailed` lists
every failure. Results are the same as a sequential run (every notebook is seeded on its own).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat

from . import DATASETS, PROFILES, ROOT, schedule, trace, tree_digest
from .results import git_commit
from .trace import NOTEBOOK_VAR

NOTEBOOKS = ROOT / "notebooks"
RUNS = ROOT / "build" / "runs"
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)  # what kernel_threads sets for parallel kernels
_NAME = re.compile(r"^\d\d_[A-Za-z0-9_]+\.ipynb$")
# Kernels inherit this: tqdm.auto without ipywidgets warns at import that it falls back to text
# bars, which are exactly what the rendered book shows, so the warning is noise on every page.
_QUIET_WARNINGS = "ignore:IProgress not found"


class RunError(ValueError):
    """Bad input to the runner (unknown name, missing notebook, no parameters cell)."""


class NotebookFailed(RuntimeError):
    """A notebook raised while executing."""


@dataclass
class Result:
    notebook: str
    status: str  # "executed" | "skipped"
    seconds: float
    output: Path


def notebooks(only=None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks in execution order; ``only`` selects by stem, file name or number."""
    folder = Path(folder or NOTEBOOKS)
    found = sorted(p for p in folder.glob("*.ipynb") if _NAME.match(p.name))
    if not only:
        return found
    chosen = []
    for want in only:
        want = str(want).removesuffix(".ipynb")
        hits = [p for p in found if p.stem == want or p.stem.split("_", 1)[0] == want]
        if not hits:
            raise RunError(
                f"no notebook {want!r} in {folder}: give a stem such as "
                f"{found[0].stem if found else '10_occupancy_table13'} or its number"
            )
        chosen += [p for p in hits if p not in chosen]
    return sorted(chosen)


def parameters_cell(path: Path) -> int:
    """Index of the cell tagged ``parameters``; :class:`RunError` if there is none."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return i
    raise RunError(
        f"{path.name} has no cell tagged 'parameters': tag the cell that defines "
        "dataset/profile/seed/device with the 'parameters' tag"
    )


def declared(path: Path) -> list[str]:
    """The names a notebook's ``parameters`` cell assigns (what papermill may inject), in order."""
    import ast

    nb = nbformat.read(path, as_version=4)
    tree = ast.parse(nb.cells[parameters_cell(path)].source)
    names = []
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        names += [t.id for t in targets if isinstance(t, ast.Name) and t.id not in names]
    return names


def _file_digest(h, base: Path, pattern: str) -> None:
    for f in sorted(base.glob(pattern)):
        if f.is_file() and "__pycache__" not in f.parts:
            h.update(str(f.relative_to(ROOT)).encode())
            h.update(f.read_bytes())


def sources_digest() -> str:
    """SHA-256 over the package sources and the shipped data (models cards/weights, paper
    tables)."""
    h = hashlib.sha256()
    _file_digest(h, ROOT / "dsco", "**/*.py")
    _file_digest(h, ROOT / "data", "**/*")
    return h.hexdigest()


def cache_key(path: Path, params: dict, sources: str, inputs: dict | None = None) -> str:
    """Key of one execution: parameters + the notebook's cell sources + package/data digest + the
    digests of what it reads besides (:func:`inputs_digest`)."""
    nb = nbformat.read(path, as_version=4)
    cells = [(c.cell_type, c.source) for c in nb.cells]
    blob = json.dumps(
        dict(params=params, cells=cells, sources=sources, inputs=inputs),
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def is_setup(path: Path) -> bool:
    """A setup notebook (``0x_*``): it trains or loads what the others read, so it runs first."""
    return Path(path).name.startswith("0")


def inputs_digest(dataset: str, root=None, models: bool = True) -> dict:
    """What a notebook reads besides its parameters and the package, as cheap digests
    (:func:`dsco.tree_digest`: relative paths, sizes and modification times of the files, not
    their bytes): ``data``, the user's data tree ``root`` (None without one), and with ``models``
    the files notebook 00 trained for ``dataset`` under ``build/models/<dataset>/``
    (:func:`dsco.models.digest`). A ``root`` of a million images costs one walk of the tree."""
    out = {"data": tree_digest(root) if root else None}
    if models:
        from . import models as models_mod

        out["models"] = models_mod.digest(dataset)
    return out


def _failure_message(path: Path, err: Exception) -> str:
    cell = getattr(err, "exec_count", None)
    ename, evalue = getattr(err, "ename", type(err).__name__), getattr(err, "evalue", str(err))
    where = f"cell [{cell}]" if cell is not None else "a cell"
    line = f"{ename}: {evalue}".strip().splitlines()
    return f"notebook {path.name} failed in {where}: {line[-1] if line else ename}"


def run(
    dataset: str = "digits",
    profile: str = "smoke",
    seed: int = 0,
    device: str = "cpu",
    only=None,
    force: bool = False,
    extra: dict | None = None,
    runs_dir: Path | None = None,
    folder: Path | None = None,
    progress: bool = True,
    log=print,
    jobs: int = 1,
    trace: Path | None = None,
) -> list[Result]:
    """Execute the notebooks for one dataset and profile; see the module docstring. ``trace``: a
    JSON file to write the batch's trace to (:mod:`dsco.trace`: notebooks, core load, trainings,
    sets)."""
    from . import datasets
    from .results import results_dir

    if dataset not in DATASETS:
        raise RunError(
            f"unknown dataset {dataset!r}: use --dataset with one of {', '.join(DATASETS)}"
        )
    if profile not in PROFILES:
        raise RunError(
            f"unknown profile {profile!r}: use --profile with one of {', '.join(PROFILES)}"
        )
    if int(jobs) < 1:
        raise RunError(f"jobs={jobs}: use --jobs 1 or more (notebooks executed at once)")
    paths = notebooks(only, folder)
    if not paths:
        raise RunError(f"no numbered notebooks (NN_name.ipynb) in {folder or NOTEBOOKS}")
    names = {p: declared(p) for p in paths}  # validate everything before executing anything
    extra = dict(extra or {})
    unknown = sorted(set(extra) - {n for ns in names.values() for n in ns})
    if unknown:
        known = sorted(
            {n for ns in names.values() for n in ns} - {"dataset", "profile", "seed", "device"}
        )
        raise RunError(
            f"no notebook declares the parameter(s) {', '.join(unknown)}: use -p with one of "
            f"{', '.join(known)}"
        )
    try:  # the dataset's parameters: root folders, backbone and teacher shapes (no weights loaded)
        datasets.get(
            dataset, profile, **{k: v for k, v in extra.items() if k in datasets.PARAMS}
        ).check()
    except ValueError as err:
        raise RunError(str(err)) from None
    params = dict(dataset=dataset, profile=profile, seed=seed, device=device, **extra)
    out_dir = Path(runs_dir or RUNS) / dataset / profile
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sources_digest()
    data_only = inputs_digest(dataset, extra.get("root"), models=False)  # the tree: once a batch
    after_setup = []  # with the trained models too, read once the setup notebooks have run

    def inputs(path: Path) -> dict:
        if is_setup(path):
            return data_only
        if not after_setup:  # (two threads may both read them: the same digest)
            after_setup.append(data_only | {"models": inputs_digest(dataset)["models"]})
        return after_setup[0]

    import papermill as pm
    from tqdm.auto import tqdm

    current = os.environ.get("PYTHONWARNINGS", "")
    if _QUIET_WARNINGS not in current:
        os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [current, _QUIET_WARNINGS]))

    tracer = (
        _Tracer(
            trace,
            dict(
                dataset=dataset,
                profile=profile,
                seed=seed,
                device=device,
                jobs=int(jobs),
                extra=extra,
                notebooks=len(paths),
                commit=git_commit(),
                date=time.strftime("%Y-%m-%d"),
            ),
        )
        if trace
        else None
    )

    def execute(path: Path) -> Result:
        out, key_file = out_dir / path.name, out_dir / f"{path.stem}.key"
        failed = out_dir / f"{path.stem}.failed.ipynb"
        mine = {
            k: v for k, v in params.items() if k in names[path]
        }  # papermill warns about the others
        key = cache_key(path, mine, sources, inputs(path))
        if not force and out.exists() and key_file.exists() and key_file.read_text() == key:
            if tracer:
                tracer.ran(path.stem, "skipped", time.time())
            return Result(path.stem, "skipped", 0.0, out)
        verdicts = results_dir(dataset, profile) / f"verdicts_{path.stem}"
        for stale in (out, key_file, failed, *(verdicts.with_suffix(s) for s in (".csv", ".json"))):
            stale.unlink(missing_ok=True)  # a failed or renamed notebook leaves no verdict behind
        tmp = out_dir / f".{path.stem}.running.ipynb"
        t0, started = time.perf_counter(), time.time()
        env = tracer.env(path.stem) if tracer else {NOTEBOOK_VAR: path.stem}
        try:
            pm.execute_notebook(
                str(path),
                str(tmp),
                parameters=mine,
                cwd=str(path.parent),
                kernel_name="python3",
                progress_bar=False,
                log_output=False,
                kernel_manager_class=_kernel_manager(env),
            )
        except Exception as err:  # papermill raises PapermillExecutionError for a failing cell
            if tracer:
                tracer.ran(path.stem, "failed", started)
            if tmp.exists():
                tmp.replace(failed)
            raise NotebookFailed(
                _failure_message(path, err)
                + (f" (executed copy: {failed})" if failed.exists() else "")
            ) from err
        tmp.replace(out)
        key_file.write_text(key)
        if tracer:
            tracer.ran(path.stem, "executed", started)
        return Result(path.stem, "executed", time.perf_counter() - t0, out)

    bar = tqdm(total=len(paths), desc=f"{dataset}/{profile}", unit="nb", disable=not progress)

    def done(result: Result) -> Result:
        bar.update(1)
        if log and result.status == "executed":
            bar.write(f"  {result.notebook}: executed in {result.seconds:.1f} s")
        return result

    finished: list = []
    try:
        order = schedule.longest_first(
            paths,
            [out_dir, *schedule.reference_dirs(dataset, profile)],
            schedule.traced_seconds(dataset, profile),
            schedule.elsewhere_seconds(dataset, profile),
        )
        return _execute_all(paths, jobs, execute, done, bar, finished, order)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"interrupted after {len(finished)} of {len(paths)} notebooks"
        ) from None
    finally:
        bar.close()  # before any message about why the batch stopped
        if tracer:
            written = tracer.close()
            if log:
                log(f"trace: {written}")


class _Tracer:
    """The runner's side of a traced batch (:mod:`dsco.trace`): the kernels' environment, every
    notebook's start and end, the core sampler, and the file written at the end."""

    def __init__(self, path, meta: dict):
        import tempfile

        self.path, self.meta, self.rows = Path(path), meta | {"started": time.time()}, []
        self.lock = threading.Lock()  # the pool's threads report notebooks at once
        self.folder = Path(tempfile.mkdtemp(prefix="dsco-trace-"))
        self.sampler = trace.Sampler()
        self.sampler.start()

    def env(self, stem: str) -> dict:

        return {trace.FOLDER_VAR: str(self.folder), trace.NOTEBOOK_VAR: stem}

    def ran(self, stem: str, status: str, started: float) -> None:
        """Record one notebook and write the trace so far (``"partial": true``), so that a batch
        killed midway leaves the profile of what it finished."""
        with self.lock:
            row = {"notebook": stem, "status": status, "start": started, "end": time.time()}
            self.rows.append(row)
            self._write(list(self.sampler.rows), partial=True)

    def close(self) -> Path:
        import shutil

        try:
            with self.lock:  # partial when the batch stopped before every notebook had its turn
                partial = len(self.rows) < self.meta["notebooks"]
                return self._write(self.sampler.stop(), partial=partial)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _write(self, cpu: list, partial: bool) -> Path:
        width = max((len(r) for r in cpu), default=2)
        meta = self.meta | {
            "partial": partial,
            "wall_s": time.time() - self.meta["started"],
            "cores": os.cpu_count(),
            "cpu_columns": ["t", *(f"core {i}" for i in range(width - 2)), "batch cores"],
            "machine": trace.machine(),
            "kernel_threads": os.environ.get("OMP_NUM_THREADS")
            or max(1, len(os.sched_getaffinity(0)) // self.meta["jobs"]),
        }
        rows = sorted(self.rows, key=lambda r: r["start"])
        return trace.write(self.path, meta, rows, cpu, self.folder)


def _kernel_manager(env: dict):
    """A jupyter_client kernel manager class whose kernels start with ``env`` on top of this
    process's environment (how a traced batch tells each kernel its notebook)."""
    from jupyter_client.manager import AsyncKernelManager

    class Manager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw["env"] = {**os.environ, **kw.get("env", {}), **env}
            return await super().start_kernel(**kw)

    return Manager


@contextmanager
def kernel_threads(jobs: int, cores: int | None = None):
    """While active, kernels started from this process get ``cores // jobs`` threads (at least 1;
    ``cores``: this process's usable CPUs) through ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``,
    unless the user set them. The environment is restored on exit."""
    cores = cores or len(os.sched_getaffinity(0))
    share = str(max(1, cores // max(1, int(jobs))))
    names = [n for n in _THREAD_VARS if n not in os.environ]
    os.environ.update({n: share for n in names})
    try:
        yield share
    finally:
        for n in names:
            os.environ.pop(n, None)


def stop_kernels() -> int:
    """Terminate the Jupyter kernels this process started; return how many. jupyter_client starts
    each kernel in its own session, so a Ctrl-C in the terminal never reaches them: a parallel batch
    would otherwise wait for its running notebooks to finish before it stops."""
    import psutil

    def is_kernel(proc):
        try:
            return any("ipykernel" in part for part in proc.cmdline())
        except psutil.Error:  # it ended meanwhile
            return False

    kernels = [c for c in psutil.Process().children(recursive=True) if is_kernel(c)]
    for k in kernels:
        k.terminate()
    psutil.wait_procs(kernels, timeout=10)
    return len(kernels)


def _execute_all(paths, jobs, execute, done, bar, finished, order=None) -> list[Result]:
    """Run ``execute`` on every path (in order, or the setup notebooks first and then ``jobs`` at a
    time), appending each result to ``finished`` as it comes."""

    def record(result):
        finished.append(result)
        return done(result)

    if jobs <= 1:
        for path in paths:
            bar.set_postfix_str(path.stem)
            record(execute(path))
        return finished

    from concurrent.futures import ThreadPoolExecutor, as_completed

    setup = [p for p in paths if is_setup(p)]
    results = {p: record(execute(p)) for p in setup}
    errors = {}
    pool = ThreadPoolExecutor(jobs)  # each call drives its own kernel
    with kernel_threads(jobs):
        try:
            futures = {pool.submit(execute, p): p for p in order or paths if p not in results}
            for f in as_completed(futures):  # report each notebook when it finishes
                try:
                    results[futures[f]] = record(f.result())
                except NotebookFailed as err:
                    bar.update(1)
                    errors[futures[f]] = str(err)
        except KeyboardInterrupt:  # Ctrl-C: drop the queued notebooks and stop the running ones now
            pool.shutdown(wait=False, cancel_futures=True)
            stop_kernels()
            raise
        finally:
            pool.shutdown()  # the threads end as soon as their kernels finish or die
    if errors:
        raise NotebookFailed(
            f"{len(errors)} notebook(s) failed: "
            + "; ".join(errors[p] for p in paths if p in errors)
        )
    return [results[p] for p in paths]
