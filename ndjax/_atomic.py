"""Files written whole or not at all: saved work (study chunks, fit checkpoints) and manifests."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(path: Path, write: Callable[[Path], None], tmp_suffix: str = ".tmp") -> Path:
    """``write(tmp)`` to a temporary file beside ``path``, then ``os.replace`` it onto ``path``, so
    that ``path`` is whole or absent (a kill mid-write leaves at most the temporary file).

    Args:
        path: the file to write.
        write: writes the content to the path it is given.
        tmp_suffix: appended to ``path``'s name for the temporary file (``np.savez`` needs it to
            end in ``.npz``).

    Raises:
        OSError: the write failed (a full disk, no permission); the temporary file is removed and
            the error's ``filename`` is ``path``.
    """
    tmp = path.with_name(path.name + tmp_suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    return path
