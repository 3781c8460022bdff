"""The output folder of one run: the files an experiment writes, recorded as it writes them."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["RunDir"]


@dataclasses.dataclass
class RunDir:
    """The output folder of one run, handed to an experiment's ``execute``.

    Experiments write through these helpers so the runner can list the files.
    """

    path: Path
    written: list[Path] = dataclasses.field(default_factory=list)

    def file(self, name: str) -> Path:
        """Path of ``name`` in the folder, recorded as written."""
        return self.record(self.path / name)

    def record(self, path: Path) -> Path:
        """Record ``path`` (in the folder) as written by the run, e.g. by library code that saves
        its own files there."""
        if path not in self.written:
            self.written.append(path)
        return path

    def write_text(self, name: str, text: str) -> Path:
        p = self.file(name)
        p.write_text(text, encoding="utf-8")
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        """JSON with NaN/inf written as ``null`` (strict JSON)."""
        return self.write_text(name, json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n")

    def write_npz(self, name: str, arrays: dict[str, Any]) -> Path:
        import numpy as np

        p = self.file(name)
        np.savez_compressed(p, **{k: np.asarray(v) for k, v in arrays.items()})
        return p

    def save_figure(self, name: str, fig: Any, dpi: int = 120) -> Path:
        from .. import plot

        p = self.file(name)
        fig.savefig(p, dpi=dpi)
        plot.close(fig)
        return p


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if type(obj).__module__ == "numpy":  # arrays and NumPy scalars
        return _json_safe(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
