"""DsCo companion: the algorithm code behind the notebooks.

One module per paper concept (see README / SPEC): ``theory``, ``data``, ``backbones``,
``projector``, ``losses``, ``nopt``, ``doping``, ``evaluate``, ``paper``, ``plots``, and the
batch tooling ``runner`` / ``cli``. Modules are imported lazily by the notebooks that need them.
"""
from pathlib import Path

__version__ = "0.1.0"

#: Names accepted for the notebooks' ``dataset`` parameter.
DATASETS = ("digits", "imagenette", "imagewoof", "imagenet1k")
#: Names accepted for the notebooks' ``profile`` parameter.
PROFILES = ("smoke", "paper")

#: Repository root (the folder holding ``dsco/``, ``notebooks/``, ``data/``).
ROOT = Path(__file__).resolve().parent.parent
