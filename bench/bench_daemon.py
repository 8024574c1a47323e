"""Measure only the daemon keys of ``python -m bench``: a 1,000-series store, then the monitor on it.

    python -m bench.bench_daemon [--series 1000] [--seconds 60]

Prints ``monitor_1000_cpu_share``, ``monitor_1000_peak_rss_mb`` and the run's details as one JSON
object, measured exactly as ``python -m bench`` measures them (``--quick`` runs 60 seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from bench.__main__ import bench_daemon, say, train_store


def main() -> None:
    """Train the store, run the daemon on it, print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    out: dict[str, object] = {"load_average_at_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        say(f"a {args.series}-series store with --mode train")
        store, store_seconds = train_store(args.series, workdir)
        say(f"the daemon at {args.series} simulated series on that store for {args.seconds:g} s")
        daemon = bench_daemon(args.series, args.seconds, workdir, store)
    out["monitor_cpu_share"] = round(daemon["cpu_share_second_half"], 4)
    out["monitor_peak_rss_mb"] = round(daemon["peak_rss_mb"], 1)
    out["daemon"] = daemon | {"series": args.series, "seconds": args.seconds, "store_train_s": store_seconds}
    out["load_average_at_end"] = list(os.getloadavg())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
