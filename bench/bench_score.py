"""Measure the per-tick scoring path alone: the keys of ``python -m bench`` that need no servers.

    python -m bench.bench_score            # score_points_per_s, loop_1000, monitor_10000_tick_ms, warm ticks
    python -m bench.bench_score --warm 0   # without the warm runs (they prime every window first)

``score_points_per_s`` and the tick figures are measured as ``python -m bench --quick`` measures them
(fresh detectors: most series still on the trained band). ``warm_<n>_score_ms`` is the same one-point
tick once every series has ``--warm`` rows of history (the calibrated windows full): the steady state
of a long-running monitor. One JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from bench.__main__ import _profile_band, _store, bench_score, bench_ticks, say
from core.config import Settings


def bench_warm(series: int, rows: int, ticks: int) -> dict[str, float]:
    """Prime ``series`` series with ``rows`` rows each, then time one-point ticks of score_many."""
    from core.detector import Detector, calibration_params
    from core.records import PointBatch, SeriesRef

    settings = Settings()
    now = float(int(time.time() // 10 * 10))
    refs = [SeriesRef.from_labels({"host": f"h{i:05d}"}, "host") for i in range(series)]
    detector = Detector(
        _store(refs, _profile_band(now)),  # type: ignore[arg-type]
        settings.scoring.params(),
        calibration_params(settings),
    )
    rng = np.random.default_rng(1)
    t = now - 10.0 * rows + 10.0 * np.arange(rows)
    started = time.perf_counter()
    detector.score_batch([PointBatch(ref, t, 40 + rng.normal(0, 3, rows), "bench") for ref in refs])
    primed = time.perf_counter() - started
    times, batch_times = [], []
    for k in range(ticks):
        tk = np.array([now + 10.0 * k])
        batches = [PointBatch(ref, tk, 40 + rng.normal(0, 3, 1), "bench") for ref in refs]
        started = time.perf_counter()
        detector.score_batch(batches)
        batch_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        detector.score_many([PointBatch(ref, tk + 5.0, 40 + rng.normal(0, 3, 1), "bench") for ref in refs])
        times.append(time.perf_counter() - started)
    return {
        "series": series,
        "rows_primed": rows,
        "prime_s": round(primed, 2),
        "score_many_ms_p50": round(float(np.median(times) * 1e3), 2),
        "score_batch_ms_p50": round(float(np.median(batch_times) * 1e3), 2),
    }


def main() -> None:
    """Run the scoring benchmarks and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=1300, help="rows of history for the warm runs (0: skip)")
    parser.add_argument("--warm-series", type=int, nargs="*", default=[1000, 10_000])
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    out: dict[str, object] = {"load_average_at_start": list(os.getloadavg())}
    say("score_many throughput")
    out["score_points_per_s"] = round(bench_score(1000, 10, 3))
    say("ticks at 1,000 series")
    out["loop_1000"] = bench_ticks(1000, 10)
    say("ticks at 10,000 series")
    t10000 = bench_ticks(10_000, 3)
    out["monitor_10000_tick_ms"] = round(t10000["tick_ms_p50"], 1)
    out["loop_10000"] = t10000
    if args.warm:
        for n in args.warm_series:
            say(f"warm ticks at {n} series ({args.warm} rows primed)")
            out[f"warm_{n}"] = bench_warm(n, args.warm, 5)
    out["load_average_at_end"] = list(os.getloadavg())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
