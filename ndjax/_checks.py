"""The failure vocabulary: one status enumeration of solves, and errors that list every problem.

:class:`Status` is what every solve can end in (``simulate``'s :class:`~ndjax.Trace`, a study's
per-chip responses, the runner's reports all use it, with the same messages);
:class:`KeyedError` lists every problem of a keyed document (a config, a words file) by key path;
:func:`not_utf8` says where a file that should be UTF-8 text is not.
"""

from __future__ import annotations

import enum
from pathlib import Path

import numpy as np

__all__ = ["Status", "status_code", "KeyedError", "SolveFailedError", "require_solved", "not_utf8"]


class Status(enum.IntEnum):
    """How a solve ended. The integer codes are stored in study results (``status`` arrays)."""

    OK = 0
    MAX_STEPS = 1
    NOT_FINITE = 2
    UNPHYSICAL = 3  # a mismatched chip with a factor <= 0: not simulated as data

    @property
    def text(self) -> str:
        """A few words, for tables and lists of failed chips."""
        return _TEXT[self]

    def message(self, max_steps: int | None = None, when: str | None = None) -> str:
        """A sentence for the user: what happened and what to do (``when``: where in the span a
        non-finite state appeared, e.g. ``"after t = 4.5 (the last save time reached)"``)."""
        if self is Status.MAX_STEPS:
            budget = f" ({max_steps})" if max_steps is not None else ""
            return (
                f"the solver hit max_steps{budget} before the end of the span: the result would be "
                "truncated. Raise max_steps, loosen rtol/atol, or shorten the span."
            )
        if self is Status.NOT_FINITE:
            at = f" {when}" if when else ""
            return (
                f"the state became non-finite (NaN or inf){at}: the solve stopped there, since no "
                "finite step exists. Check the parameters and inputs (a blow-up usually means an "
                "unphysical parameter)."
            )
        if self is Status.UNPHYSICAL:
            return (
                "a mismatch factor is <= 0 (a negative conductance, reversal offset, sigmoid weight or "
                "gate power): the chip has no physical meaning, so it is not judged. Such chips are "
                "drawn when sigma is large (1 + sigma N(0, 1) factors); lower sigma."
            )
        return "ok"


_TEXT = {
    Status.OK: "ok",
    Status.MAX_STEPS: "step limit reached",
    Status.NOT_FINITE: "non-finite values",
    Status.UNPHYSICAL: "unphysical mismatch (a factor <= 0)",
}


def status_code(ok, max_steps_reached, xp=np):
    """The :class:`Status` code of each solve from a trace's ``ok`` and ``max_steps_reached``
    (arrays of any shape; ``xp`` is ``numpy`` or ``jax.numpy``, so it runs inside ``jit`` too)."""
    return xp.where(
        ok, int(Status.OK), xp.where(max_steps_reached, int(Status.MAX_STEPS), int(Status.NOT_FINITE))
    )


class SolveFailedError(ValueError):
    """A solve whose result is needed as data failed: a study's reference, a fit's HH target at a
    training or evaluation current. Nothing computed against it would mean anything.

    Attributes:
        what: what was solved (``"the HH target"``, ``"the nominal chip"``).
        index: the position of the failing current in the list the caller gave.
        current: that current, in ``unit``.
        status: how its solve ended (:class:`Status`).
    """

    def __init__(self, what: str, index: int, current: float, unit: str, status: Status):
        self.what, self.index, self.current, self.unit, self.status = what, index, current, unit, status
        super().__init__(f"{what} failed at {current:g} {unit} ({status.text}): {status.message()}")


def require_solved(status, currents, what: str, unit: str) -> None:
    """Host-side: raise :class:`SolveFailedError` for the first current whose solve failed.

    Args:
        status: (C,) :class:`Status` codes (or ``Trace.ok`` booleans, read as non-finite where
            False), one per current.
        currents: (C,) the currents, in ``unit``, as the caller knows them.
        what, unit: for the message.
    """
    status = np.asarray(status)
    if status.dtype == bool:
        status = np.where(status, int(Status.OK), int(Status.NOT_FINITE))
    bad = np.flatnonzero(status.reshape(-1) != int(Status.OK))
    if bad.size:
        i = int(bad[0])
        raise SolveFailedError(what, i, float(np.asarray(currents, dtype=float).reshape(-1)[i]), unit,
                               Status(int(status.reshape(-1)[i])))  # fmt: skip


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


def not_utf8(err: UnicodeDecodeError) -> str:
    """A user's message for bytes that are not UTF-8 text: the first bad byte, its offset and line.

    Args:
        err: what ``data.decode("utf-8")`` raised (``err.object`` is ``data``).
    """
    data = bytes(err.object)
    line = data.count(b"\n", 0, err.start) + 1
    return (
        f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} (line {line}) is not "
        "valid UTF-8; save the file as UTF-8"
    )
