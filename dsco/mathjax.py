"""MathJax for the book, offline: installed once from the npm registry, served by the site itself.

:func:`ensure_mathjax` installs MathJax :data:`MATHJAX_VERSION` into ``build/node/`` on first use
and copies the es5 ``tex-chtml.js`` bundle, its fonts and the lazily loaded TeX extensions into a
static folder that :func:`dsco.book.build` adds to Sphinx's ``html_static_path``, so the pages load
MathJax from their own ``_static/mathjax/`` and never from a CDN.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import time
from pathlib import Path

from . import ROOT
from .errors import BookError

#: MathJax release installed from the npm registry (the es5 bundle ``tex-chtml.js`` is used).
MATHJAX_VERSION = "3.2.2"


def ensure_mathjax(node_dir: str | Path | None = None) -> Path:
    """Install MathJax :data:`MATHJAX_VERSION` from the npm registry once; return a static root.

    The returned folder holds ``mathjax/`` (the es5 ``tex-chtml.js`` bundle with the fonts and the
    lazily loaded TeX extensions); :func:`dsco.book.build` adds it to Sphinx's ``html_static_path``.
    Books built at once (two batch jobs, ``pytest -n 2``) install and copy it once: the others
    wait on a lock in ``node_dir`` instead of reading a half-extracted package.
    """
    node_dir = Path(node_dir) if node_dir is not None else ROOT / "build" / "node"
    static = node_dir / "static"
    if _ready(static / "mathjax"):
        return static
    node_dir.mkdir(parents=True, exist_ok=True)
    with open(node_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        if not _ready(static / "mathjax"):  # another process may have finished while we waited
            _install(node_dir)
            _copy(node_dir / "node_modules" / "mathjax", static)
    return static


def _ready(dest: Path) -> bool:
    stamp = dest / ".version"
    return (
        (dest / "tex-chtml.js").is_file()
        and stamp.is_file()
        and stamp.read_text().strip() == MATHJAX_VERSION
    )


def _install(node_dir: Path) -> None:
    pkg = node_dir / "node_modules" / "mathjax"
    if _installed(pkg):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BookError(
            "npm not found: install Node.js and npm (e.g. `apt-get install -y npm`)"
            " so the book can serve MathJax offline"
        )
    cmd = [
        npm,
        "install",
        "--no-save",
        "--no-package-lock",
        "--no-audit",
        "--no-fund",
        "--prefix",
        str(node_dir),
        f"mathjax@{MATHJAX_VERSION}",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not _installed(pkg):
        last = (res.stderr.strip().splitlines() or ["?"])[-1]
        raise BookError(
            f"could not install mathjax@{MATHJAX_VERSION} from the npm registry "
            f"({last}): check access to the registry, or run `{' '.join(cmd)}`"
        )


def _copy(pkg: Path, static: Path) -> None:
    """The es5 bundle, its fonts and TeX extensions of ``pkg`` into ``static/mathjax/``."""
    es5 = pkg / "es5"
    keep = {"tex-chtml.js", "core.js", "loader.js", "startup.js"}

    def ignore(folder, names):
        if Path(folder) == es5:  # only the bundle we load, not the other combined bundles
            return [n for n in names if n.endswith(".js") and n not in keep]
        if Path(folder) == es5 / "output":
            return [n for n in names if n != "chtml"]
        return []

    dest, tmp = static / "mathjax", static / f".mathjax-{time.time_ns()}"
    shutil.copytree(es5, tmp, ignore=ignore)
    shutil.copy2(pkg / "LICENSE", tmp / "LICENSE")
    (tmp / ".version").write_text(MATHJAX_VERSION)
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)


def _installed(pkg: Path) -> bool:
    """Whether ``pkg`` is MathJax :data:`MATHJAX_VERSION`, complete (an interrupted ``npm install``
    can leave its ``package.json`` without the files)."""
    try:
        version = json.loads((pkg / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return False
    files = (pkg / "LICENSE", pkg / "es5" / "tex-chtml.js")
    return version == MATHJAX_VERSION and all(f.is_file() for f in files)
