"""The errors that several modules raise, in a module that imports nothing, below all of them.

:class:`DatasetError` is raised by :mod:`dsco.data` (a bad split, folder or image), by
:mod:`dsco.datasets` (a bad name, profile or parameter) and by :mod:`dsco.validation` and
:mod:`dsco.models` (a bad root, checkpoint or missing trained model). It lives here so that
``data`` never has to import the registry that reads it; ``dsco.data`` and ``dsco.datasets``
re-export it under their own names.

:class:`BookError` is raised by :mod:`dsco.book` and by what the book is built from
(:mod:`dsco.paper_map`, :mod:`dsco.mathjax`).
"""


class DatasetError(ValueError):
    """A bad dataset name, profile, parameter, folder or checkpoint; the message names the fix."""


class BookError(RuntimeError):
    """The book cannot be built; the message names the fix."""
