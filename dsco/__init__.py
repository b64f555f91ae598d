"""DsCo companion: the algorithm code behind the notebooks.

One module per paper concept (see README / SPEC): ``theory`` (the toys of §3, App. B),
``exact_diffusion`` (§3.4's exact-score toy), ``metrics`` (MMD, coverage), ``laws`` (the scaling
law), ``data``, ``backbones``, ``projector``, ``losses``, ``nopt``, ``surrogates``, ``doping``,
``teacher``, ``architectures`` (the classifiers), ``training`` (protocols and the training loop),
``evaluate`` (cached evaluations and grids), ``paper``, ``plots``, ``privacy``, ``boundary`` (the
configuration-coverage law), ``discrepancy``; the claims ``scorecard``; the dataset registry
``datasets`` with ``prepare`` (notebook 00's checks), ``recipes`` (training a dataset's own
models) and ``fixtures`` (tiny stand-ins for tests); ``concentrate`` (the ``dsco concentrate``
command); and the batch tooling ``runner`` / ``book`` / ``bench`` / ``cli``. Modules are imported
lazily by the notebooks that need them.
"""
import os
from contextlib import contextmanager
from pathlib import Path

__version__ = "0.1.0"

#: Repository root (the folder holding ``dsco/``, ``notebooks/``, ``data/``).
ROOT = Path(__file__).resolve().parent.parent

#: Names accepted for the notebooks' ``dataset`` and ``profile`` parameters (the registry, dsco.datasets).
from .datasets import NAMES as DATASETS, PROFILES  # noqa: E402, F401


@contextmanager
def replacing(path: Path):
    """Write ``path`` atomically: yield a temporary path beside it, named for this process (two processes
    computing the same cache entry never share one), and move it onto ``path`` when the block ends. A
    failed or interrupted write removes the temporary file and leaves ``path`` as it was."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
