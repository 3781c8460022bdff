"""A plain-text progress bar with an ETA (no dependency; one line per update when not a terminal)."""

from __future__ import annotations

import sys
import time


def _fmt(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Progress:
    """``Progress(total, "chips")``; ``update(done, note)`` redraws ``[####....] done/total  ETA``.

    The ETA counts only work done in this process (resumed work is excluded from the rate).
    """

    def __init__(self, total: int, unit: str, label: str = "", *, stream=None, width: int = 30):
        self.total, self.unit, self.label, self.width = int(total), unit, label, width
        self.stream = stream if stream is not None else sys.stdout
        self.start = time.perf_counter()
        self.skipped = 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def skip(self, n: int) -> None:
        """Count ``n`` units as done without work in this process (resumed), outside the rate."""
        self.skipped += int(n)

    def update(self, done: int, note: str = "") -> str:
        elapsed = time.perf_counter() - self.start
        fresh = done - self.skipped
        left = self.total - done
        eta = "?" if fresh <= 0 else _fmt(elapsed / fresh * left)
        filled = int(self.width * done / max(self.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        line = (f"  {self.label}[{bar}] {done}/{self.total} {self.unit}  {_fmt(elapsed)} elapsed, "
                f"ETA {eta}{'  ' + note if note else ''}")  # fmt: skip
        end = "\r" if self.tty and done < self.total else "\n"
        print(line, end=end, file=self.stream, flush=True)
        return line
