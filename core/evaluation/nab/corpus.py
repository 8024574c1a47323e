"""Read a NAB corpus and write NAB's results files (corpus v1.1 formats).

A corpus file has N rows and anomaly windows as inclusive row ranges [L, R] (:class:`CorpusFile`).
``combined_windows.json`` gives the windows as timestamps (:func:`read_windows`); :func:`map_windows`
turns them into row ranges. Results files are NAB's ``timestamp,value,anomaly_score,label`` CSVs under
``<out>/nab/<category>/<detector>_<file>``. The scoring rules are in :mod:`core.evaluation.nab.scorer`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "TIMESTAMP_FORMAT",
    "CorpusFile",
    "FloatArray",
    "Window",
    "load_corpus",
    "map_windows",
    "read_results",
    "read_windows",
    "results_path",
    "write_results",
]

FloatArray = npt.NDArray[np.float64]
Window = tuple[int, int]  # an anomaly window as an inclusive row range [L, R]

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True, eq=False)
class CorpusFile:
    """Hold one NAB data file: its key (path relative to data/), rows and anomaly windows."""

    key: str
    timestamps: npt.NDArray[np.str_]  # the CSV's own strings, YYYY-MM-DD HH:MM:SS
    values: FloatArray
    windows: tuple[Window, ...]  # inclusive row ranges [L, R], sorted, not overlapping

    @property
    def rows(self) -> int:
        """Return the number of rows."""
        return len(self.timestamps)


# --------------------------------------------------------------------------------------------------
# Reading the corpus


def read_windows(windows_path: Path | str) -> dict[str, list[tuple[str, str]]]:
    """Read ``combined_windows.json``: file key -> list of (start, end) timestamp strings."""
    path = Path(windows_path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); expected NAB's combined_windows.json") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object mapping file keys to window lists")
    out: dict[str, list[tuple[str, str]]] = {}
    for key, windows in raw.items():
        if not isinstance(windows, list) or not all(
            isinstance(w, list) and len(w) == 2 and all(isinstance(t, str) for t in w) for w in windows
        ):
            raise ValueError(f"{path}: {key}: expected a list of [start, end] timestamp strings")
        out[key] = [(start, end) for start, end in windows]
    return out


def map_windows(
    times: npt.NDArray[np.datetime64], windows: Sequence[tuple[str, str]], key: str
) -> tuple[Window, ...]:
    """Map (start, end) timestamp windows to inclusive row ranges [L, R] of a file.

    L is the first row whose time is >= start; R is the last row of the run that follows L while the
    time stays <= end. For increasing times that is "the last row <= end"; the run rule also behaves
    when the clock jumps back after the window (repeated timestamps).
    """
    out: list[Window] = []
    for start_text, end_text in windows:
        try:
            start, end = np.datetime64(start_text, "us"), np.datetime64(end_text, "us")
        except ValueError as exc:
            raise ValueError(
                f"{key}: window [{start_text}, {end_text}] has a timestamp that is not a date; "
                "expected YYYY-MM-DD HH:MM:SS.ffffff"
            ) from exc
        at_or_after = np.flatnonzero(times >= start)
        first = int(at_or_after[0]) if at_or_after.size else len(times)
        past_end = np.flatnonzero(times[first:] > end)
        last = first + (int(past_end[0]) if past_end.size else len(times) - first) - 1
        if first >= len(times) or last < first:
            raise ValueError(
                f"{key}: window [{start_text}, {end_text}] covers no rows of the file "
                f"(rows run from {times[0] if len(times) else 'nothing'} to "
                f"{times[-1] if len(times) else 'nothing'}); fix the label file"
            )
        out.append((first, last))
    _check_windows(len(times), out, key)
    return tuple(out)


def _read_csv_text(path: Path, columns: Sequence[str]) -> dict[str, npt.NDArray[np.str_]]:
    """Read the named columns of a CSV as the file's own strings (no parsing, nothing rounded)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: header {list(frame.columns)} lacks column(s) {missing}")
    return {c: frame[c].to_numpy(dtype=str) for c in columns}


def _parse_floats(text: npt.NDArray[np.str_], path: Path, column: str) -> FloatArray:
    """Parse numbers exactly as Python's float() does (correctly rounded), naming the first bad line."""
    out = np.empty(len(text))
    for i, item in enumerate(text.tolist()):
        try:
            out[i] = float(item)
        except ValueError:
            out[i] = math.nan
        if not math.isfinite(out[i]):
            raise ValueError(f"{path} line {i + 2}: {column} {item!r} is not a finite number")
    return out


def _parse_times(text: npt.NDArray[np.str_], path: Path) -> npt.NDArray[np.datetime64]:
    """Parse YYYY-MM-DD HH:MM:SS strings, naming the first bad line of ``path``."""
    parsed = pd.to_datetime(pd.Series(text), format=TIMESTAMP_FORMAT, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{path} line {i + 2}: timestamp {str(text[i])!r} is not a date; expected YYYY-MM-DD HH:MM:SS"
        )
    return parsed.to_numpy(dtype="datetime64[us]")


def load_corpus(data_dir: Path | str, windows_path: Path | str) -> list[CorpusFile]:
    """Load every labelled file of a NAB data dir, sorted by key; skip label entries without a CSV."""
    data_root = Path(data_dir)
    files = []
    for key, windows in sorted(read_windows(windows_path).items()):
        path = data_root / PurePosixPath(key)
        if not path.is_file():
            continue
        columns = _read_csv_text(path, ["timestamp", "value"])
        times = _parse_times(columns["timestamp"], path)
        values = _parse_floats(columns["value"], path, "value")
        files.append(CorpusFile(key, columns["timestamp"], values, map_windows(times, windows, key)))
    return files


# --------------------------------------------------------------------------------------------------
# Checks shared with the scorer


def _check_windows(n_rows: int, windows: Sequence[Window], key: str = "file") -> None:
    """Raise ValueError unless windows are in-range, sorted and not overlapping."""
    prev_end = -1
    for left, right in windows:
        if not 0 <= left <= right < n_rows:
            raise ValueError(f"{key}: window rows [{left}, {right}] are outside the file's 0..{n_rows - 1}")
        if left <= prev_end:
            raise ValueError(f"{key}: window rows [{left}, {right}] overlap or precede the window before")
        prev_end = right


def _window_ids(n_rows: int, windows: Sequence[Window]) -> npt.NDArray[np.int64]:
    """Return each row's window number, or -1 outside every window."""
    ids = np.full(n_rows, -1, dtype=np.int64)
    for k, (left, right) in enumerate(windows):
        ids[left : right + 1] = k
    return ids


def _scores_array(scores: npt.ArrayLike, n_rows: int | None = None, key: str = "file") -> FloatArray:
    """Return scores as a float array, raising ValueError unless each is a number in [0, 1]."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1 or (n_rows is not None and len(arr) != n_rows):
        raise ValueError(f"{key}: got {arr.shape} anomaly scores; expected one per row ({n_rows})")
    bad = np.flatnonzero(~((arr >= 0.0) & (arr <= 1.0)))  # also catches NaN
    if bad.size:
        raise ValueError(f"{key} row {int(bad[0])}: anomaly score {float(arr[bad[0]])!r} is not in [0, 1]")
    return arr


# --------------------------------------------------------------------------------------------------
# Results files (NAB's results format)


def results_path(out_dir: Path | str, detector: str, key: str) -> Path:
    """Return ``<out>/nab/<category>/<detector>_<file name>`` for a corpus file key."""
    if not detector or "/" in detector or "\\" in detector:
        raise ValueError(f"detector name {detector!r} must be non-empty and contain no path separator")
    rel = PurePosixPath(key)
    return Path(out_dir, "nab", *rel.parent.parts, f"{detector}_{rel.name}")


def write_results(path: Path | str, file: CorpusFile, scores: npt.ArrayLike) -> None:
    """Write ``timestamp,value,anomaly_score,label`` for every row of ``file``, atomically.

    Scores are written with ``repr`` (full precision, never rounded); label is 1 inside a window.
    """
    arr = _scores_array(scores, file.rows, file.key)
    labels = (_window_ids(file.rows, file.windows) >= 0).astype(int)
    lines = ["timestamp,value,anomaly_score,label"]
    lines += [
        f"{t},{float(v)!r},{float(s)!r},{lab}"
        for t, v, s, lab in zip(file.timestamps, file.values, arr, labels, strict=True)
    ]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_results(path: Path | str, file: CorpusFile) -> FloatArray:
    """Read a results CSV for ``file`` and return its anomaly scores, checking that the rows match."""
    source = Path(path)
    columns = _read_csv_text(source, ["timestamp", "anomaly_score"])
    text = columns["timestamp"]
    if len(text) != file.rows:
        raise ValueError(f"{source}: has {len(text)} rows but {file.key} has {file.rows}; rerun the detector")
    differ = np.flatnonzero(text != file.timestamps)
    if differ.size:
        i = int(differ[0])
        raise ValueError(
            f"{source} line {i + 2}: timestamp {str(text[i])!r} differs from {file.key}'s "
            f"{str(file.timestamps[i])!r}; rerun the detector"
        )
    values = _parse_floats(columns["anomaly_score"], source, "anomaly_score")
    bad = np.flatnonzero(~((values >= 0.0) & (values <= 1.0)))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{source} line {i + 2}: anomaly_score {float(values[i])!r} is not in [0, 1]")
    return values
