"""Split a fleet between daemon instances: shard ``i/n`` keeps the series whose id hashes to ``i``.

The hash is SHA-256 of the series id (stable across processes, machines and Python versions, unlike
``hash()``), so every instance with the same ``n`` agrees on which one owns a series: the shards are
disjoint and together cover every series. Each instance needs its own ``monitoring.logs_dir`` and its
own model file (its refits rewrite it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from core.protocols import Source
from core.records import PointBatch, SeriesRef
from core.sharding import parse_shard, shard_of

__all__ = ["ShardedSource", "parse_shard", "shard_of"]


class ShardedSource:
    """A source that passes on only the series of one shard (the loop, refits and sinks see no other)."""

    def __init__(self, inner: Source, index: int, count: int) -> None:
        self.inner = inner
        self.index = index
        self.count = count
        self.name = inner.name
        self.fallback_for = getattr(inner, "fallback_for", None)
        self._owned: dict[str, bool] = {}

    def owns(self, series_id: str) -> bool:
        """Return whether this shard owns ``series_id`` (memoised: ids repeat every tick)."""
        owned = self._owned.get(series_id)
        if owned is None:
            owned = self._owned[series_id] = shard_of(series_id, self.count) == self.index
        return owned

    def poll(self, now: float, last_seen: Mapping[str, float]) -> Sequence[PointBatch]:
        """Return the inner source's batches of this shard's series."""
        return [b for b in self.inner.poll(now, last_seen) if self.owns(b.series.id)]

    def history(
        self, series: SeriesRef, start: float, end: float, max_points: int | None = None
    ) -> PointBatch:
        """Return the inner source's history of a series."""
        return self.inner.history(series, start, end, max_points)

    def close(self) -> None:
        """Close the inner source."""
        self.inner.close()
