"""Freed heap memory goes back to the system after a fleet-sized load (core.heap.trim)."""

from __future__ import annotations

import sys

import pytest

from core import heap


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim is Linux-only")
def test_blocks_freed_between_kept_ones_are_returned_by_trim() -> None:
    # As a store load leaves it: decoded blocks of tens of kilobytes freed, small objects kept between.
    blocks, kept = [], []
    for i in range(4000):
        blocks.append(bytes(48_000) + i.to_bytes(4, "little"))
        kept.append(bytes(2_000) + i.to_bytes(4, "little"))  # above pymalloc: the C heap too
    del blocks
    before = _rss_mb()
    assert heap.trim()  # True: pages were released
    after = _rss_mb()
    assert before - after > 100, (before, after)  # ~190 MB was freed; most of it comes back
    assert len(kept) == 4000
