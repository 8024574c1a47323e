"""Read labelled anomaly windows in the NAB ``combined_windows.json`` format.

Keys are data-file paths (``realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv`` or ``dataset.csv``); a key
matches a dataset whose path ends with it. Our one extension: ``<file>::<series id>`` names one series of
a multi-series file (``dataset.csv::host=web-01``); a plain file key applies to every series in it.
Window ends are inclusive timestamps (``YYYY-MM-DD HH:MM:SS[.ffffff]``), naive ones read in ``timezone``.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from core.errors import DataError
from core.evaluation.nab.corpus import read_windows

__all__ = ["ALL_SERIES", "load_windows", "matches"]

ALL_SERIES = "*"


def matches(key: str, dataset: str | Path) -> bool:
    """Return whether a label key (a path relative to some data dir) names ``dataset``."""
    key_parts = PurePosixPath(key.replace("\\", "/")).parts
    data_parts = Path(dataset).resolve().parts
    return len(key_parts) <= len(data_parts) and tuple(data_parts[-len(key_parts) :]) == key_parts


def load_windows(
    path: str | Path, dataset: str | Path, *, timezone: str = "UTC"
) -> dict[str, list[tuple[float, float]]]:
    """Return the windows of ``dataset`` per series id (``ALL_SERIES``: file-wide), in epoch seconds."""
    file = Path(path)
    try:
        data = read_windows(file)  # NAB's reader: the format and its shape checks live there
    except FileNotFoundError as exc:
        raise DataError(f"{file}: labels file not found; pass an existing JSON file with --labels") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: cannot read labels ({exc})") from exc
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    out: dict[str, list[tuple[float, float]]] = {}
    for key, windows in data.items():
        file_key, _, series = str(key).partition("::")
        if not matches(file_key, dataset):
            continue
        parsed = []
        for window in windows:
            try:
                lo, hi = (pd.Timestamp(w) for w in window)
            except (ValueError, TypeError) as exc:
                raise DataError(
                    f"{file}: entry {key!r}: window {list(window)!r} has a timestamp that is not a date"
                ) from exc
            lo = lo.tz_localize(timezone) if lo.tzinfo is None else lo
            hi = hi.tz_localize(timezone) if hi.tzinfo is None else hi
            if hi < lo:
                raise DataError(f"{file}: entry {key!r}: window {list(window)!r} ends before it starts")
            parsed.append((lo.as_unit("ns").value / 1e9, hi.as_unit("ns").value / 1e9))
        out.setdefault(series or ALL_SERIES, []).extend(parsed)
    return out
