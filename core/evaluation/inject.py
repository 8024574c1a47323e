"""Anomaly injection for the holdout: seeded, scaled to each series' swing, never overlapping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from loguru import logger

from core.anomalies import Anomaly, anomaly_effect

__all__ = ["DURATIONS", "inject_anomalies"]

# Duration of each injected kind, in seconds.
DURATIONS = {
    "spike": 900.0,
    "dip": 1800.0,
    "level_shift": 3 * 3600.0,
    "drift": 6 * 3600.0,
    "flatline": 3 * 3600.0,
    "dropout": 1800.0,
}


def inject_anomalies(
    t: np.ndarray,
    y: np.ndarray,
    start: int,
    kinds: tuple[str, ...],
    per_kind: int,
    rng: np.random.Generator,
    *,
    avoid: Sequence[tuple[float, float]] = (),
    clip: tuple[float, float] | None = None,
) -> tuple[np.ndarray, list[Anomaly]]:
    """Inject ``per_kind`` anomalies of each kind into rows ``start:`` of ``y``; return (new y, anomalies).

    Magnitudes scale with the series' typical swing (5th-95th percentile of the rows before ``start``),
    so the same settings mean the same thing on any series. Anomalies never overlap each other or an
    ``avoid`` window, and keep a two-hour margin.
    """
    ref = y[:start]
    swing = float(np.percentile(ref, 95) - np.percentile(ref, 5)) or float(np.std(ref)) or 1.0
    magnitude = {"spike": 0.6, "dip": 0.5, "level_shift": 0.35, "drift": 0.6, "flatline": 0.0, "dropout": 0.0}
    margin = 2 * 3600.0
    taken = [(lo - margin, hi + margin) for lo, hi in avoid]
    lo_t, hi_t = float(t[start]) + 6 * 3600.0, float(t[-1])
    plan = [kind for kind in kinds for _ in range(per_kind)]
    rng.shuffle(plan)
    anomalies: list[Anomaly] = []
    for kind in plan:
        duration = DURATIONS[kind]
        for _ in range(200):
            at = float(rng.uniform(lo_t, hi_t - duration))
            if all(at + duration + margin < a or at - margin > b for a, b in taken):
                break
        else:
            logger.warning(f"no room left to inject a {kind}; injected {len(anomalies)} anomalies")
            continue
        taken.append((at, at + duration))
        sign = -1.0 if kind == "level_shift" and rng.random() < 0.5 else 1.0
        anomalies.append(Anomaly(kind, at, duration, sign * magnitude[kind] * swing))
    out = anomaly_effect(y, t, anomalies)
    if clip is not None:
        out = np.clip(out, *clip)
    return out, sorted(anomalies, key=lambda a: a.start)
