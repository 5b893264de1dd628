"""Where the bytes of a result document are: a file under the result folder, or a URL.

The one-stop system announces each result with ``TepKetQua`` (see ``mappings.dossier.RESULT_SPEC``):
a path relative to the folder it shares with the hub (``LIENTHONG_RESULTS_ROOT``), or an http(s)
URL of its file service. :class:`ResultFiles` turns that into a local file the upload can read
twice (once to hash it, once to send it) without holding it in memory:

* a path must stay inside the folder: an absolute path, ``..`` or a symbolic link that leads out
  is :class:`~lienthong.hub.errors.ResultFileOutsideRoot` (a mapping must not be a way to read
  the hub's own keys); a path that is not there is ``ResultFileMissing``; one that cannot be read
  (a folder, no permission, an I/O error) ``ResultFileUnreadable``;
* a URL is fetched with ``requests``, streamed to a spool file under the hub's home, with connect
  and read timeouts and a size bound checked while reading (``Content-Length`` first when given):
  a timeout, a refused connection or a 5xx is :class:`~lienthong.hub.errors.ResultFetchFailed`
  (retried), 404/410 is missing, another status unreadable, a body over the bound too large.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lienthong.hub.errors import (
    ConfigurationError,
    ResultFetchFailed,
    ResultFileMissing,
    ResultFileOutsideRoot,
    ResultFileTooLarge,
    ResultFileUnreadable,
)

#: results are documents: 2 GiB is the portal's own limit (dvc_portal.xsd, KichThuoc)
MAX_RESULT_BYTES = 2 * 1024 ** 3
_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class LocalResult:
    """A result's bytes on the local disk: ``path`` to read, ``size`` when it was located;
    ``spooled`` when the hub fetched it (the file is the hub's and is removed after the upload)."""

    path: Path
    size: int
    origin: str
    spooled: bool = False

    def discard(self) -> None:
        if self.spooled:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass


class ResultFiles:
    """Locates result files for upload (see the module docstring)."""

    def __init__(self, root: str | Path | None, *, spool: str | Path, max_bytes: int = MAX_RESULT_BYTES,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0, session: Any = None):
        self.root = Path(root).resolve() if root else None
        self.spool = Path(spool)
        self.max_bytes = max_bytes
        self.timeout = (connect_timeout, read_timeout)
        self._session = session

    def __repr__(self) -> str:
        return f"ResultFiles(root={str(self.root) if self.root else None!r})"

    def locate(self, payload: Mapping[str, Any], *, key: str) -> LocalResult:
        """The local file of the result ``payload`` (an outbox result event's); ``key`` names the
        spool file of a fetched one (the event, so a retry finds and replaces its own)."""
        where = payload.get("TepKetQua")
        if not isinstance(where, str) or not where.strip():
            raise ResultFileMissing(f"result of dossier {payload.get('MaHoSo')} names no file (TepKetQua)")
        where = where.strip()
        if where.lower().startswith(("http://", "https://")):
            return self._fetch(where, key)
        return self._local(where)

    # -- a file under the result folder ---------------------------------------------------------
    def _local(self, relative: str) -> LocalResult:
        if self.root is None:
            raise ConfigurationError("result files are announced by path but no result folder is configured: "
                                     "set LIENTHONG_RESULTS_ROOT (or --results-root) to the folder the one-stop "
                                     "system shares")
        candidate = Path(relative)
        if candidate.is_absolute() or ".." in candidate.parts:
            raise ResultFileOutsideRoot(f"result file {relative!r} is not a path inside the result folder "
                                        f"{self.root}")
        path = self.root / candidate
        try:
            resolved = path.resolve(strict=True)
        except FileNotFoundError:
            raise ResultFileMissing(f"result file {relative} is not in the result folder {self.root}") from None
        except OSError as exc:
            raise ResultFileUnreadable(f"result file {relative} cannot be read: {exc}") from None
        if not resolved.is_relative_to(self.root):
            raise ResultFileOutsideRoot(f"result file {relative} leads out of the result folder {self.root} "
                                        f"(to {resolved})")
        if not resolved.is_file():
            raise ResultFileUnreadable(f"result file {relative} is not a regular file (a folder or a device)")
        try:
            with open(resolved, "rb") as fh:
                fh.read(1)
            size = resolved.stat().st_size
        except OSError as exc:
            raise ResultFileUnreadable(f"result file {relative} cannot be read: {exc}") from None
        if size > self.max_bytes:
            raise ResultFileTooLarge(f"result file {relative} has {size:,} bytes, over the limit of "
                                     f"{self.max_bytes:,}")
        return LocalResult(resolved, size, relative)

    # -- a URL of the one-stop system's file service ---------------------------------------------
    def _fetch(self, url: str, key: str) -> LocalResult:
        import requests

        session = self._session or requests
        self.spool.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(f"{key}|{url}".encode()).hexdigest()[:32]
        target, partial = self.spool / name, self.spool / f"{name}.part"
        shown = url.split("?", 1)[0]
        try:
            with session.get(url, stream=True, timeout=self.timeout, allow_redirects=False) as response:
                status = response.status_code
                if status in (404, 410):
                    raise ResultFileMissing(f"result file {shown}: the one-stop system answered {status}")
                if status >= 500 or status == 429:
                    raise ResultFetchFailed(f"result file {shown}: the one-stop system answered {status}")
                if status != 200:
                    raise ResultFileUnreadable(f"result file {shown}: the one-stop system answered {status}")
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise ResultFileTooLarge(f"result file {shown} is announced at {int(declared):,} bytes, "
                                             f"over the limit of {self.max_bytes:,}")
                size = 0
                with open(partial, "wb") as fh:
                    for block in response.iter_content(_BLOCK):
                        size += len(block)
                        if size > self.max_bytes:
                            raise ResultFileTooLarge(f"result file {shown} is over the limit of "
                                                     f"{self.max_bytes:,} bytes")
                        fh.write(block)
                if declared and declared.isdigit() and int(declared) != size:
                    raise ResultFetchFailed(f"result file {shown}: {size:,} of {int(declared):,} bytes arrived")
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            _remove(partial)
            raise ResultFetchFailed(f"result file {shown}: {type(exc).__name__}: {exc}") from None
        except requests.RequestException as exc:
            _remove(partial)
            raise ResultFileUnreadable(f"result file {shown}: {exc}") from None
        except BaseException:
            _remove(partial)
            raise
        os.replace(partial, target)
        return LocalResult(target, size, shown, spooled=True)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
