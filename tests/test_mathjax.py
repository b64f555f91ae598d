"""MathJax for the book, offline (dsco.mathjax): installed from the npm registry once (build/node/),
then read back from there."""

from __future__ import annotations

import fcntl
import json
import threading

import pytest

from dsco import mathjax


@pytest.mark.slow
def test_ensure_mathjax_is_cached():
    static = mathjax.ensure_mathjax()
    assert (static / "mathjax" / "tex-chtml.js").is_file()
    assert (static / "mathjax" / ".version").read_text() == mathjax.MATHJAX_VERSION
    assert mathjax.ensure_mathjax() == static


def _fake_package(node_dir, complete=True):
    """A MathJax package as npm extracts it (``complete=False``: interrupted after package.json)."""
    pkg = node_dir / "node_modules" / "mathjax"
    (pkg / "es5" / "output" / "chtml" / "fonts").mkdir(parents=True)
    (pkg / "package.json").write_text(json.dumps({"version": mathjax.MATHJAX_VERSION}))
    if complete:
        (pkg / "LICENSE").write_text("Apache-2.0")
        for name in ("tex-chtml.js", "tex-svg.js", "output/chtml/fonts/tex.js"):
            (pkg / "es5" / name).write_text("//")


def test_concurrent_builds_wait_for_one_install_and_copy(tmp_path):
    _fake_package(tmp_path)
    with open(tmp_path / ".lock", "w") as lock:  # another process installing right now
        fcntl.flock(lock, fcntl.LOCK_EX)
        waiting = threading.Thread(target=mathjax.ensure_mathjax, args=(tmp_path,))
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive() and not (tmp_path / "static").exists()
    waiting.join()
    dest = tmp_path / "static" / "mathjax"
    assert (dest / "tex-chtml.js").is_file() and (dest / "LICENSE").is_file()
    assert not (dest / "tex-svg.js").exists()  # only the bundle the pages load
    assert mathjax.ensure_mathjax(tmp_path) == tmp_path / "static"


def test_a_half_extracted_package_is_installed_again_not_copied(tmp_path, monkeypatch):
    _fake_package(tmp_path, complete=False)
    monkeypatch.setattr(mathjax.shutil, "which", lambda name: None)
    with pytest.raises(mathjax.BookError, match="npm not found: install Node.js"):
        mathjax.ensure_mathjax(tmp_path)
    assert not (tmp_path / "static" / "mathjax").exists()
