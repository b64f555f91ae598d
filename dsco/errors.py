"""The error the data layer and the dataset registry share, below both of them.

:class:`DatasetError` is raised by :mod:`dsco.data`, :mod:`dsco.folders` and :mod:`dsco.encoded` (a
bad split, folder or image), by :mod:`dsco.datasets` (a bad name, profile or parameter) and by
:mod:`dsco.validation` and :mod:`dsco.models` (a bad root, checkpoint or missing trained model).
It lives here, in a module that imports nothing, so that ``data`` never has to import the registry
that reads it; ``dsco.data`` and ``dsco.datasets`` re-export it under their own names.
"""


class DatasetError(ValueError):
    """A bad dataset name, profile, parameter, folder or checkpoint; the message names the fix."""
