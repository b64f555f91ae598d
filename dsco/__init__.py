"""DsCo companion: the algorithm code behind the notebooks.

The package's layers, bottom to top (README, "Layout", draws them; ``tests/test_layers.py``
checks that no module imports one that imports it back):

- base: ``errors``, ``results`` (run records and result I/O), ``trace`` (a batch's trace);
- data and models: ``folders`` (image trees on disk), ``data``, ``encoded`` (the latent cache),
  ``checkpoints`` (safetensors + SHA-256 cards), ``diffusion`` (the backbone interface and its
  DDPM step), the backbones ``digits_ddpm``, ``dit`` (DiT-XL/2 + SD-VAE) and ``latent_ddpm``,
  ``backbones`` (their registry and the vanilla sampler), ``projector``, ``losses``,
  ``architectures`` (the classifiers), ``training`` (protocols and the training loop),
  ``teacher``, ``recipes``, ``models``, ``budgets``, ``registry`` (the datasets' entries),
  ``datasets`` (an entry resolved for a run), ``validation``;
- the method: ``noise`` (NOpt's noise draws and their SGD), ``objective`` (NOpt's objective at
  one step), ``engines`` (its two loops), ``nopt`` (``synthesize``), ``surrogates``, ``doping``
  (confusion scores, selection), ``trigger`` (the Dope Trigger), ``export`` (a concentrated set on
  disk);
- evaluation and analyses: ``evaluate`` (cached evaluations), ``grids`` (grids of them and
  their summaries), ``metrics`` (MMD, coverage), ``occupancy`` (App. B), ``theory`` (the toys
  of §3), ``exact_diffusion`` (§3.4's exact-score toy), ``laws`` (the scaling law),
  ``privacy``, ``boundary`` (the configuration-coverage law), ``discrepancy``;
- claims and book: ``paper`` (the paper's tables), ``verdicts`` (the decision rules), ``cells``
  (their statistics), ``reference`` (shipped runs, and a rerun against them),
  ``scorecard``, ``plots`` (figures), ``sitecheck`` (the built book's checks), ``paper_map`` (the
  intro's paper map), ``mathjax`` (served offline), ``book``;
- commands: ``prepare`` (notebook 00), ``fixtures``, ``concentrate``, ``devices`` (timing, peak
  memory and FLOP/s on a device), ``bench``, ``bench_reports``, ``schedule`` (a batch's order),
  ``runner``, ``cli``.

Shared file helpers: :func:`replacing` (atomic writes) and :func:`tree_digest` /
:func:`files_digest` (cheap digests of what a cache depends on); the digests the caches' content
keys are made of: :func:`json_digest` (a key) and :func:`tensor_digest` (the tensors it names).
"""

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path

__version__ = "0.1.0"

#: Repository root (the folder holding ``dsco/``, ``notebooks/``, ``data/``).
ROOT = Path(__file__).resolve().parent.parent
#: Where the disk caches live (sets, trainings, latents, templates, confusion scores):
#: ``$DSCO_CACHE`` when set (``dsco verify`` gives its kernels caches of their own), else
#: ``build/cache``. Read once, when a module that caches is imported.
CACHE = Path(os.environ.get("DSCO_CACHE") or ROOT / "build" / "cache")
#: Where the reference runs are shipped (:mod:`dsco.reference`): ``runs/`` and ``results/``, laid
#: out like ``build/``.
REFERENCE = ROOT / "reference"


@contextmanager
def replacing(path: Path):
    """Write ``path`` atomically: yield a temporary path beside it, named for this process (two
    processes computing the same cache entry never share one), and move it onto ``path`` when the
    block ends. A failed or interrupted write removes the temporary file and leaves ``path`` as it
    was."""
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def tree_digest(root) -> str:
    """A cheap digest of the files under the folder ``root`` (symbolic links followed): SHA-256
    over every file's path relative to ``root``, its size and its modification time -- not its
    bytes, so a tree of a million images costs one walk and one ``stat`` per file. An added,
    removed, renamed, resized or rewritten file changes it (so does merely touching one); a file
    changed in place with the same size and the same modification time would not. A missing
    ``root`` digests as an empty tree."""
    root = Path(root).expanduser()
    files = []
    for folder, dirs, names in os.walk(root, followlinks=True):
        dirs.sort()
        files += [os.path.join(folder, n) for n in sorted(names)]
    return files_digest(files, root)


def files_digest(files, base=None) -> str:
    """:func:`tree_digest`'s cheap digest (path, size, modification time; not the bytes) of the
    listed ``files``, in the order given; paths are taken relative to ``base`` when it is given."""
    h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        name = os.path.relpath(f, base) if base is not None else str(f)
        h.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def json_digest(key) -> str:
    """SHA-256 hex digest of a cache's content ``key`` (what defines the cached result: a dict or
    list of plain values; anything else, a path or a dtype, enters as its ``str``), its dict keys
    sorted. The caches' file names are made of it: ``tests/test_runner.py`` pins its bytes, since a
    changed digest would silently recompute every cached set and training."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def tensor_digest(*tensors, shapes: bool = True) -> str:
    """SHA-256 hex digest of ``tensors``' values in row-major order (any strides, any device),
    each preceded by its shape unless ``shapes`` is False (the synthesized sets' keys,
    :func:`dsco.surrogates.real_key`, were made without). Pinned like :func:`json_digest`."""
    h = hashlib.sha256()
    for t in tensors:
        if shapes:
            h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


#: Names accepted for the notebooks' ``dataset`` and ``profile`` parameters (the registry,
#: dsco.datasets), imported last: every name a module reads from the package (``from . import
#: ROOT``) exists by then.
from .datasets import NAMES as DATASETS  # noqa: E402, F401
from .datasets import PROFILES as PROFILES  # noqa: E402
