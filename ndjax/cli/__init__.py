"""``ndjax run`` and ``ndjax defaults``: the command line (:mod:`ndjax.cli._main`). Imported only by
``ndjax.__main__`` and the console script."""
