"""How much memory a run will hold, and how much the machine has: checked before a run starts.

A batched solve holds, per job and save point, the saved voltage and what the spike analysis
derives from it. Measured on the study kernel (``tests/studies/common.py``'s chip, 64 jobs, 2,001
and 50,001 save points, peak RSS): 20 bytes per job and save point beyond the process's own
~460 MB. :data:`BYTES_PER_SAMPLE` takes 32 (a margin of 1.6). Gradient stages through a solve
(the fit's gradient stage, the retune) hold more per sample; they run on the same or smaller
batches than the searches around them, and are not estimated separately.
"""

from __future__ import annotations

import os

__all__ = ["BYTES_PER_SAMPLE", "available_bytes", "format_bytes", "memory_problem"]

#: Bytes a batched solve holds per job and save point (measured 20, see the module docstring).
BYTES_PER_SAMPLE = 32


def available_bytes() -> int | None:
    """Memory a run may use: the default device's free memory on an accelerator (when jax reports
    it), else the host's ``MemAvailable`` (Linux ``/proc/meminfo``), else the physical memory;
    None when nothing is known."""
    try:
        import jax

        device = jax.devices()[0]
        if device.platform != "cpu":
            stats = device.memory_stats() or {}
            if "bytes_limit" in stats:
                return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    except Exception:  # noqa: BLE001 (a backend without memory statistics)
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes as ``'3.2 GB'`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def memory_problem(
    jobs: int, samples: int, what: str, lower: str, available: int | None = None
) -> str | None:
    """Why a batch of ``jobs`` solves of ``samples`` save points each would not fit, or None.

    Args:
        jobs, samples: the largest batch the run solves at once.
        what: the batch in words (``"512 jobs per kernel call"``).
        lower: the keys that shrink it (``"solver.block or currents.n_save"``).
        available: bytes available (default: :func:`available_bytes`).

    Returns:
        A message with the estimate and the memory available, or None when it fits or nothing is
        known of the machine.
    """
    need = int(jobs) * int(samples) * BYTES_PER_SAMPLE
    have = available_bytes() if available is None else available
    if have is None or need <= have:
        return None
    return (
        f"{what} x {samples:,} save points would hold about {format_bytes(need)} "
        f"({BYTES_PER_SAMPLE} bytes per job and save point), more than the {format_bytes(have)} "
        f"available; lower {lower}"
    )
