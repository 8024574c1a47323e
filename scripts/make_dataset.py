"""Regenerate the sample data: ``dataset.csv`` (4 weeks, 5-minute CPU usage of two hosts) and its labels.

    python scripts/make_dataset.py [--out dataset.csv] [--labels dataset_labels.json] [--seed 7]

The labels are in the NAB ``combined_windows.json`` format; a key ``file::series`` names one series of a
multi-series file. The output is byte-identical for the same arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.anomalies import Anomaly
from core.sources.simulator import simulate  # noqa: E402

START = pd.Timestamp("2025-10-06 00:00:00", tz="UTC")  # a Monday
DAYS = 28
STEP = 300
# (host, profile, incidents as (kind, day offset, hour, duration hours, magnitude))
HOSTS = [
    ("web-01", "web", [("spike", 8, 10.33, 0.67, 45.0), ("dropout", 22, 15.0, 0.83, 0.0)]),
    ("db-01", "db", [("level_shift", 15, 9.0, 8.0, 18.0), ("drift", 24, 6.0, 12.0, 30.0)]),
]


def build(seed: int) -> tuple[pd.DataFrame, dict[str, list[list[str]]]]:
    """Return the sample frame and its label windows."""
    t = START.value / 1e9 + STEP * np.arange(DAYS * 86400 // STEP, dtype=np.float64)
    stamps = pd.to_datetime(t, unit="s", utc=True).strftime("%Y-%m-%d %H:%M:%S")
    frames, windows = [], {}
    for host, profile, incidents in HOSTS:
        anomalies = [
            Anomaly(kind, START.value / 1e9 + day * 86400 + hour * 3600, dur * 3600, mag)
            for kind, day, hour, dur, mag in incidents
        ]
        values = simulate(profile, t, key=host, seed=seed, anomalies=anomalies)
        frames.append(pd.DataFrame({"timestamp": stamps, "host": host, "cpu_usage": np.round(values, 2)}))
        key = f"dataset.csv::host={host}"
        windows[key] = []
        for a in anomalies:
            # A window opens with the incident and stays open one hour after it ends (recovery).
            first = pd.Timestamp(np.ceil(a.start / STEP) * STEP, unit="s", tz="UTC")
            last = pd.Timestamp(np.floor((a.start + a.duration + 3600) / STEP) * STEP, unit="s", tz="UTC")
            windows[key].append([f"{first:%Y-%m-%d %H:%M:%S}.000000", f"{last:%Y-%m-%d %H:%M:%S}.000000"])
    frame = pd.concat(frames).sort_values(["timestamp", "host"], kind="stable")
    return frame, windows


def main() -> None:
    """Write the sample CSV and labels."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="dataset.csv")
    parser.add_argument("--labels", default="dataset_labels.json")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    frame, windows = build(args.seed)
    frame.to_csv(args.out, index=False, lineterminator="\n")
    Path(args.labels).write_text(json.dumps(windows, indent=2) + "\n", encoding="utf-8")
    print(
        f"wrote {args.out} ({len(frame)} rows) and {args.labels} ({sum(map(len, windows.values()))} windows)"
    )


if __name__ == "__main__":
    main()
