"""Small file-system helpers: atomic writes (temp file + fsync + rename), JSON in and out, and files
staged beside their targets that are renamed into place together (:class:`StagedFiles`)."""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["StagedFiles", "atomic_open", "atomic_write_json", "atomic_write_text"]


@contextmanager
def atomic_open(path: str | Path, *, mode: int | None = None, durable: bool = True) -> Iterator[IO[str]]:
    """Yield a text file that replaces ``path`` only when the block succeeds (readers never see it torn).

    ``durable`` also fsyncs the data and the directory (survives a power cut, costs milliseconds).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o644 if mode is None else mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(target.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str, *, mode: int | None = None, durable: bool = True) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, mode=mode, durable=durable) as handle:
        handle.write(text)


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2, durable: bool = True) -> None:
    """Write ``data`` as JSON atomically (NaN and infinity are refused: they are not JSON)."""
    text = json.dumps(data, indent=indent, allow_nan=False, sort_keys=False) + "\n"
    atomic_write_text(path, text, durable=durable)


class StagedFiles:
    """Files written beside their targets under temporary names; ``commit`` renames them all into place."""

    def __init__(self) -> None:
        self._pairs: list[tuple[Path, Path]] = []

    def path(self, target: Path) -> Path:
        """Return the temporary path to write ``target``'s content to (same directory, same suffix)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
        self._pairs.append((tmp, target))
        return tmp

    def commit(self) -> None:
        """Rename every staged file onto its target (the metadata last, as it was staged last)."""
        while self._pairs:
            tmp, target = self._pairs.pop(0)
            if tmp.exists():  # a plot with nothing to draw writes no file
                os.replace(tmp, target)

    def discard(self) -> None:
        """Remove the staged files not yet committed."""
        for tmp, _ in self._pairs:
            tmp.unlink(missing_ok=True)
        self._pairs.clear()
