"""MathJax for the book, offline (dsco.mathjax): installed from the npm registry once (build/node/),
then read back from there."""

from __future__ import annotations

import pytest

from dsco import mathjax

pytestmark = pytest.mark.slow


def test_ensure_mathjax_is_cached():
    static = mathjax.ensure_mathjax()
    assert (static / "mathjax" / "tex-chtml.js").is_file()
    assert (static / "mathjax" / ".version").read_text() == mathjax.MATHJAX_VERSION
    assert mathjax.ensure_mathjax() == static
