"""An error that lists every problem of a keyed document (a config, a words file) by key path."""

from __future__ import annotations

from pathlib import Path


class KeyedError(ValueError):
    """Every problem found, each with its key path.

    Attributes:
        errors: list of ``(path, message)``, e.g. ``("models[1].input.amplitude",
            "expected a number, got string 'ten'")``.
        source: the file, when there is one.
    """

    what = "document"

    def __init__(self, errors: list[tuple[str, str]], source: str | Path | None = None):
        self.errors = list(errors)
        self.source = source
        where = f" {source}" if source is not None else ""
        n = len(self.errors)
        lines = [f"invalid {self.what}{where}: {n} error{'s' if n != 1 else ''}"]
        lines += [f"  {path or '<top level>'}: {msg}" for path, msg in self.errors]
        super().__init__("\n".join(lines))
