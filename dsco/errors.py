"""The errors that modules of different layers share, below all of them (this module imports
nothing).

:class:`DatasetError` is raised by :mod:`dsco.data`, :mod:`dsco.folders` and :mod:`dsco.encoded` (a
bad split, folder or image), by :mod:`dsco.datasets` (a bad name, profile or parameter) and by
:mod:`dsco.validation` and :mod:`dsco.models` (a bad root, checkpoint or missing trained model).
It lives here, in a module that imports nothing, so that ``data`` never has to import the registry
that reads it; ``dsco.data`` and ``dsco.datasets`` re-export it under their own names.

:class:`DopingError` is raised by :mod:`dsco.doping` (scores, selection, concentration),
:mod:`dsco.trigger` (the Dope Trigger) and :mod:`dsco.export` (a concentrated set on disk), so that
neither of the latter two has to import Doping.

:class:`BookError` is raised by :mod:`dsco.book` and by what the book is built from
(:mod:`dsco.paper_map`, :mod:`dsco.mathjax`).
"""


class DatasetError(ValueError):
    """A bad dataset name, profile, parameter, folder or checkpoint; the message names the fix."""


class DopingError(ValueError):
    """Bad input to a doping, Dope Trigger or export function; the message names the fix."""


class BookError(RuntimeError):
    """The book cannot be built; the message names the fix."""
