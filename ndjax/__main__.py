"""``python -m ndjax``: the ``ndjax`` console script (see :mod:`ndjax._runner`)."""

import sys

from .cli._runner import main

if __name__ == "__main__":
    sys.exit(main())
