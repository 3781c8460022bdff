"""Extract the code cells of the user's guide (shared/seeds/000_*.txt).

A cell starts after a line ``In [None]:``; it runs until the next cell, but
the guide's prose follows each cell without a marker, so the cell is the
longest run of blank-line-separated blocks that still compiles as Python.
IPython magics (``%matplotlib``) are dropped.
"""

from __future__ import annotations

import pathlib

SEEDS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "seeds"


def guide_path() -> pathlib.Path | None:
    hits = sorted(SEEDS.glob("000_*.txt")) if SEEDS.is_dir() else []
    return hits[0] if hits else None


def _compiles(src: str) -> bool:
    try:
        compile(src, "<cell>", "exec")
    except SyntaxError:
        return False
    return True


def guide_cells(text: str) -> list[str]:
    chunks = text.split("In [None]:")[1:]
    cells = []
    for chunk in chunks:
        lines = [ln for ln in chunk.splitlines() if not ln.lstrip().startswith("%")]
        cuts = [i for i, ln in enumerate(lines) if not ln.strip()] + [len(lines)]
        best = ""
        for cut in cuts:
            src = "\n".join(lines[:cut]).strip("\n")
            if src.strip() and _compiles(src):
                best = src
        cells.append(best)
    return cells


def ndjax_imports(cell: str) -> str:
    """The only change the guide's cells get: their imports."""
    return cell.replace("from cb_models import", "from ndjax import").replace(
        "from fitting_utilities import", "from ndjax import"
    )
