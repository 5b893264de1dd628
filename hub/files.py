"""Writing files so that no reader ever sees one half-written.

Keys and certificates (``signing.pki``), the one-stop simulator's export files (read by the
file-drop intake while they are being written) and the daily audit reports all go through
:func:`write_atomic`: the bytes go to a hidden temporary file in the same directory
(``.<name>.<random>.tmp``, which no reader's ``*.json`` / ``hoso-*.csv`` pattern matches), created
with its final permissions from the start (a private key is never readable by others, not even
for a moment), flushed to disk, then renamed over the target in one step (``os.replace``: atomic
on POSIX and Windows within one file system), and the directory is synced so the rename itself
survives a power cut. If anything fails, the temporary file is removed and the target is left as
it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["write_atomic"]


def write_atomic(path: str | Path, content: bytes | Callable[[BinaryIO], None], *, mode: int = 0o644) -> Path:
    """Write ``content`` (bytes, or a function writing to the open binary file) to ``path``
    atomically, with permissions ``mode``; returns ``path``. Creates the parent directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            if isinstance(content, (bytes, bytearray, memoryview)):
                fh.write(content)
            else:
                content(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _sync_directory(path.parent)
    return path


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories cannot be opened."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
