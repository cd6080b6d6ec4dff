"""Writing files without ever leaving one half-written: a temp file in the target's folder, then ``os.replace``."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["atomic_write"]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], *, mode: int | None = None) -> Path:
    """Call ``write(temp_path)``, flush it to disk, then move it onto ``path`` in one step.

    The temp file lies in ``path``'s folder, so the final move is a rename on one file system (never a copy that
    a crash can cut short); readers see the old file or the new one, nothing between. ``mode`` defaults to what
    a new file gets under the process umask (``mkstemp`` would make it 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    temp = Path(temp_name)
    try:
        write(temp)
        with open(temp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temp, _default_mode() if mode is None else mode)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return path


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
