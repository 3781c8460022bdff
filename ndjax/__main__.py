"""``python -m ndjax``: the ``ndjax`` console script (see :mod:`ndjax.cli._main`)."""

import sys

from .cli._main import main

if __name__ == "__main__":
    sys.exit(main())
