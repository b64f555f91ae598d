"""``python -m dsco`` (and ``torchrun -m dsco concentrate …``) is the ``dsco`` command line."""

import sys

from .cli import main

sys.exit(main())
