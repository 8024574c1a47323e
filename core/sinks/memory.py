"""An in-memory sink: keeps every scored record (the evaluation's and the tests' replays)."""

from __future__ import annotations

from collections.abc import Sequence

from core.records import ScoredRecord

__all__ = ["Collector"]


class Collector:
    """An in-memory sink: keeps every scored record (evaluation only)."""

    def __init__(self) -> None:
        self.records: list[ScoredRecord] = []

    def write(self, records: Sequence[ScoredRecord]) -> None:
        """Keep the records."""
        self.records.extend(records)

    def flush(self, timeout: float) -> bool:
        """Nothing pending."""
        return True

    def close(self) -> None:
        """Nothing to release."""
