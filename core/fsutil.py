"""Small file-system helpers: atomic writes (temp file + fsync + rename) and JSON in and out."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_json", "atomic_write_text"]


def atomic_write_text(path: str | Path, text: str, *, mode: int | None = None, durable: bool = True) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never a torn one.

    ``durable`` also fsyncs the data and the directory (survives a power cut, costs milliseconds).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o644 if mode is None else mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not durable:
        return
    try:
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def atomic_write_json(path: str | Path, data: Any, *, indent: int | None = 2, durable: bool = True) -> None:
    """Write ``data`` as JSON atomically (NaN and infinity are refused: they are not JSON)."""
    text = json.dumps(data, indent=indent, allow_nan=False, sort_keys=False) + "\n"
    atomic_write_text(path, text, durable=durable)
