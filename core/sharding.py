"""Which daemon instance owns a series: shard ``i/n`` owns the ids whose SHA-256 is ``i`` modulo ``n``.

Pure (imports nothing from ``core``): the settings check the form, ``core.sources.shard`` filters.
"""

from __future__ import annotations

import hashlib

__all__ = ["parse_shard", "shard_of"]


def shard_of(series_id: str, count: int) -> int:
    """Return the shard (0 to count - 1) that owns ``series_id``."""
    digest = hashlib.sha256(series_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> tuple[int, int]:
    """Return (index, count) of ``'i/n'``; ValueError with the expected form otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"shard {text!r} is not of the form i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= i < n, e.g. 0/4 to 3/4")
    return index, count
