"""Read and validate metric CSV files into clean per-series frames.

A file is ``timestamp,<value>`` where the value column is ``cpu_usage`` or ``value``; any other column is
a label (``host``, ...) that splits the file into several series. Timestamps are stored in UTC; naive
ones are read in the configured zone. Problems that can be repaired (unsorted rows, duplicates, NaN,
non-numeric cells, gaps) are repaired and reported; problems that cannot raise :class:`DataError` with
the file, the line and the fix.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from core.dataquality import (
    SeriesReport,
    Unit,
    describe_series,
    detect_unit,
    implausible,
    sort_and_merge,
    typical,
)
from core.errors import DataError

if TYPE_CHECKING:
    from core.config import Settings

__all__ = [
    "VALUE_COLUMNS",
    "Dataset",
    "LoadReport",
    "Series",
    "excerpt",
    "load_csv",
    "load_dataset",
    "series_id",
    "split_series",
]

VALUE_COLUMNS = ("cpu_usage", "value")
_EXPECTED_TS = "expected YYYY-MM-DD HH:MM:SS (ISO 8601, optionally with a UTC offset) or Unix seconds"
_AWARE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_EPOCH = re.compile(r"^\d{9,13}(\.\d+)?$")
_MISSING = ["nan", "na", "null", "none"]
CHUNK_ROWS = 500_000  # rows parsed as text at a time: bounds the memory of a file of any length
MAX_ABS_VALUE = 1e18  # larger magnitudes overflow the fit's arithmetic (squares, sums) or are garbage
EXCERPT_CHARS = 80  # a bad cell is quoted at most this long (a broken file can hold a 60 MB "line")


@dataclass
class LoadReport:
    """What cleaning found and did in one file (kept in the model metadata)."""

    path: str
    rows_read: int
    value_column: str
    label_columns: list[str]
    unit: Unit
    scale: float
    timestamps: Literal["naive", "aware", "epoch"]
    timezone_assumed: str | None
    blank_lines: int = 0
    unsorted_rows: int = 0
    duplicate_timestamps: int = 0
    missing_values: int = 0
    non_numeric_values: int = 0
    first_non_numeric_line: int | None = None
    series: dict[str, SeriesReport] = field(default_factory=dict)
    skipped_series: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-able data."""
        return asdict(self)

    def summary(self) -> list[str]:
        """Return one human line per notable finding."""
        lines = [
            f"{self.path}: {self.rows_read} rows, {len(self.series)} series, value column "
            f"'{self.value_column}', unit {self.unit}"
            + (f" (scaled x{self.scale:g})" if self.scale != 1 else "")
        ]
        if self.timestamps == "naive":
            lines.append(f"naive timestamps read as {self.timezone_assumed}, stored in UTC")
        for name, count in (
            ("unsorted rows sorted", self.unsorted_rows),
            ("duplicate timestamps merged", self.duplicate_timestamps),
            ("missing values dropped", self.missing_values),
            ("blank lines skipped", self.blank_lines),
        ):
            if count:
                lines.append(f"{count} {name}")
        if self.non_numeric_values:
            lines.append(
                f"{self.non_numeric_values} non-numeric values dropped "
                f"(first on line {self.first_non_numeric_line})"
            )
        for sid, rep in self.series.items():
            if rep.gaps:
                lines.append(
                    f"series {sid}: {rep.gaps} gaps ({rep.missing_steps} missing steps, "
                    f"longest {rep.longest_gap_seconds / 3600:.1f} h)"
                )
        for sid, why in self.skipped_series.items():
            lines.append(f"series {sid} skipped: {why}")
        return lines


@dataclass(frozen=True)
class Series:
    """One clean series: sorted unique UTC timestamps ``ds`` and float values ``y``.

    ``lines`` holds the CSV line number of each row of ``frame`` (None when the series is not from a file).
    """

    labels: tuple[tuple[str, str], ...]
    frame: pd.DataFrame
    lines: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        """Return the series identifier, e.g. ``host=web-01`` (``default`` when unlabelled)."""
        return series_id(self.labels)


@dataclass(frozen=True)
class Dataset:
    """All series of one input file and the report of how it was cleaned."""

    series: list[Series]
    report: LoadReport


def series_id(labels: tuple[tuple[str, str], ...] | dict[str, str]) -> str:
    """Return the canonical id of a label set: ``k=v`` pairs joined by commas, or ``default``."""
    items = labels.items() if isinstance(labels, dict) else labels
    text = ",".join(f"{k}={v}" for k, v in items)
    return text or "default"


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """Return ``text`` quoted for a message, cut to ``limit`` characters with an ellipsis."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def load_csv(
    path: str | Path,
    *,
    timestamp_column: str = "timestamp",
    value_column: str = "auto",
    unit: str = "auto",
    timezone: str = "UTC",
    duplicate_policy: str = "last",
    gap_factor: float = 3.0,
    min_rows: int = 2,
    now: float | None = None,
) -> Dataset:
    """Read a metric CSV, validate it and return clean series; raise DataError naming file and line.

    The file is parsed in chunks of ``CHUNK_ROWS`` rows into float and int64 arrays, so a file of
    millions of rows is never held as text all at once. ``now`` (epoch seconds, default the clock) is
    what "timestamps in the future" are measured against.
    """
    file = Path(path)
    name = str(path)
    chunks = _read_chunks(file, name)
    first = next(chunks)
    columns = [str(c).strip() for c in first.columns]
    if timestamp_column not in columns:
        found = ", ".join(columns) or "nothing"
        raise DataError(
            f"{name} line 1: no '{timestamp_column}' column (found: {found}); "
            f"name the time column '{timestamp_column}' or set data.timestamp_column"
        )
    vcol = _value_column(columns, value_column, timestamp_column, name)
    label_cols = [c for c in columns if c not in (timestamp_column, vcol)]

    parts = _Parts(label_cols)
    offset = 2  # line 1 is the header
    kind: Literal["naive", "aware", "epoch"] | None = None
    for chunk in itertools.chain([first], chunks):
        chunk.columns = pd.Index(columns)
        lines = np.arange(offset, offset + len(chunk), dtype=np.int64)
        offset += len(chunk)
        blank = chunk.apply(lambda col: col.str.strip() == "").all(axis=1).to_numpy()
        parts.blank += int(blank.sum())
        chunk, lines = chunk.loc[~blank], lines[~blank]
        if chunk.empty:
            continue
        ts, chunk_kind = _parse_timestamps(
            chunk[timestamp_column].to_numpy(dtype=object), lines, name, timezone
        )
        if kind is not None and chunk_kind != kind:
            shown = excerpt(str(chunk[timestamp_column].iloc[0]).strip())
            why = (
                "mixes zone-aware and naive timestamps; give every timestamp a UTC offset or none"
                if {kind, chunk_kind} == {"naive", "aware"}
                else f"is {chunk_kind} where the lines before are {kind}; write every timestamp the same way"
            )
            raise DataError(f"{name} line {lines[0]}: timestamp {shown} {why}")
        kind = chunk_kind
        parts.add(chunk, ts, lines, vcol, name)
    if kind is None:
        raise DataError(f"{name}: no data rows after the header; add rows of '{timestamp_column},{vcol}'")
    if parts.bad_count == parts.rows:
        raise DataError(
            f"{name} line {parts.first_bad_line}: value {parts.first_bad} in '{vcol}' is not a number"
        )

    values, lines = parts.values(), parts.lines()
    detected, scale = detect_unit(typical(values), unit)
    values = values * scale
    report = LoadReport(
        path=name,
        rows_read=parts.rows,
        value_column=vcol,
        label_columns=label_cols,
        unit=detected,
        scale=scale,
        timestamps=kind,
        timezone_assumed=timezone if kind == "naive" else None,
        blank_lines=parts.blank,
        missing_values=parts.missing,
        non_numeric_values=parts.bad_count,
        first_non_numeric_line=parts.first_bad_line if parts.bad_count else None,
    )
    frame = pd.DataFrame(
        {"ds": pd.to_datetime(parts.stamps(), unit="ns", utc=True), "y": values, "line": lines}, copy=False
    )
    del values, lines
    for col, texts in parts.labels().items():
        frame[col] = texts

    series: list[Series] = []
    groups = frame.groupby(label_cols, sort=False, dropna=False) if label_cols else [((), frame)]
    percent = vcol == "cpu_usage" or detected in ("fraction", "percent")
    clock = time.time() if now is None else now
    for key, part in groups:
        key_tuple = key if isinstance(key, tuple) else (key,)
        labels = tuple(zip(label_cols, (str(k) for k in key_tuple), strict=True))
        sid = series_id(labels)
        clean, unsorted, dups = sort_and_merge(part[["ds", "y", "line"]], duplicate_policy)
        report.unsorted_rows += unsorted
        report.duplicate_timestamps += dups
        if len(clean) < min_rows:
            report.skipped_series[sid] = (
                f"{len(clean)} usable rows; at least {min_rows} are needed (data.min_rows)"
            )
            continue
        report.series[sid] = describe_series(clean, gap_factor)
        report.warnings += implausible(sid, clean, vcol, percent=percent, now=clock)
        series.append(Series(labels=labels, frame=clean[["ds", "y"]], lines=clean["line"].to_numpy()))
    if not series:
        worst = "; ".join(f"series {k}: {v}" for k, v in report.skipped_series.items())
        raise DataError(
            f"{name}: too few rows to train ({worst}); supply more history or lower data.min_rows"
        )
    return Dataset(series=series, report=report)


class _Parts:
    """The parsed chunks of one file: int64 UTC nanoseconds, float values, line numbers, label codes."""

    def __init__(self, label_cols: list[str]) -> None:
        self._ts: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._lines: list[np.ndarray] = []
        self._labels: dict[str, list[pd.Categorical]] = {c: [] for c in label_cols}
        self.rows = self.blank = self.missing = self.bad_count = 0
        self.first_bad = ""
        self.first_bad_line = 0

    def add(self, chunk: pd.DataFrame, ts: pd.DatetimeIndex, lines: np.ndarray, vcol: str, name: str) -> None:
        """Validate the values of one chunk and keep its arrays; raise DataError on a non-finite value."""
        text = chunk[vcol].str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, copy=True)
        empty = text.eq("").to_numpy() | text.str.lower().isin(_MISSING).to_numpy()
        infinite = np.isinf(values) | (np.abs(values) > MAX_ABS_VALUE)
        if infinite.any():
            i = int(np.argmax(infinite))
            what = (
                "is not a finite number"
                if np.isinf(values[i])
                else f"is too large to compute with (the limit is ±{MAX_ABS_VALUE:g})"
            )
            raise DataError(
                f"{name} line {lines[i]}: value {excerpt(text.iloc[i])} in '{vcol}' {what}; "
                f"fix the value or remove the row (an empty cell is read as missing)"
            )
        bad = np.isnan(values) & ~empty
        if bad.any() and not self.bad_count:
            i = int(np.argmax(bad))
            self.first_bad, self.first_bad_line = excerpt(text.iloc[i]), int(lines[i])
        self.bad_count += int(bad.sum())
        self.missing += int((np.isnan(values) & ~bad).sum())
        self.rows += len(chunk)
        self._ts.append(ts.as_unit("ns").asi8)
        self._values.append(values)
        self._lines.append(lines.astype(np.int32) if lines[-1] < 2**31 else lines)
        for col, parts in self._labels.items():
            parts.append(pd.Categorical(chunk[col].str.strip().to_numpy()))

    def stamps(self) -> np.ndarray:
        """Return the timestamps as int64 UTC nanoseconds (and release the chunks)."""
        out, self._ts = np.concatenate(self._ts), []
        return out

    def values(self) -> np.ndarray:
        """Return the values (NaN where missing or not a number)."""
        out, self._values = np.concatenate(self._values), []
        return out

    def lines(self) -> np.ndarray:
        """Return the CSV line number of every row."""
        out, self._lines = np.concatenate(self._lines), []
        return out

    def labels(self) -> dict[str, np.ndarray]:
        """Return each label column as an object array sharing one string per distinct label."""
        from pandas.api.types import union_categoricals

        return {
            col: np.asarray(union_categoricals(parts), dtype=object) for col, parts in self._labels.items()
        }


def _read_chunks(file: Path, name: str) -> Iterator[pd.DataFrame]:
    """Yield the file as text frames of at most ``CHUNK_ROWS`` rows (the first may be empty)."""
    if not file.exists():
        raise DataError(f"{name}: file not found; pass an existing CSV file with --dataset")
    if file.is_dir():
        raise DataError(f"{name}: is a directory; pass a CSV file with --dataset")
    try:
        with file.open("rb") as handle:
            head = handle.read(4096)
    except OSError as exc:
        raise DataError(f"{name}: cannot read file ({exc.strerror})") from exc
    if not head.strip():
        raise DataError(f"{name}: file is empty; expected a header line 'timestamp,cpu_usage' and data rows")
    try:
        reader = pd.read_csv(
            file,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skipinitialspace=True,
            encoding="utf-8-sig",
            chunksize=CHUNK_ROWS,
        )
        with reader:
            yield from reader
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not UTF-8 text (byte {exc.start}); save the file as UTF-8 CSV") from exc
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        where = f" line {match.group(1)}" if match else ""
        detail = " ".join(str(exc).split())
        detail = detail if len(detail) <= 2 * EXCERPT_CHARS else detail[: 2 * EXCERPT_CHARS] + "…"
        raise DataError(f"{name}{where}: malformed CSV ({detail}); check quoting and commas") from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{name}: file is empty; expected a header line 'timestamp,cpu_usage'") from exc


def _value_column(columns: list[str], wanted: str, ts_col: str, name: str) -> str:
    if wanted != "auto":
        if wanted not in columns:
            raise DataError(
                f"{name} line 1: no '{wanted}' column (found: {', '.join(columns)}); "
                f"fix data.value_column or the header"
            )
        return wanted
    for candidate in VALUE_COLUMNS:
        if candidate in columns:
            return candidate
    others = [c for c in columns if c != ts_col]
    if len(others) == 1:
        return others[0]
    raise DataError(
        f"{name} line 1: no value column (found: {', '.join(columns)}); name it 'cpu_usage' or 'value', "
        f"or set data.value_column"
    )


def _parse_timestamps(
    text: np.ndarray, lines: np.ndarray, name: str, timezone: str
) -> tuple[pd.DatetimeIndex, Literal["naive", "aware", "epoch"]]:
    stripped = [str(v).strip() for v in text]
    empty = np.array([v == "" for v in stripped], dtype=bool)
    if empty.any():
        i = int(np.argmax(empty))
        raise DataError(f"{name} line {lines[i]}: timestamp is empty; {_EXPECTED_TS}")
    series = pd.Series(stripped)
    if series.str.fullmatch(_EPOCH).all():
        numbers = series.astype(float)
        unit = "ms" if numbers.max() > 1e11 else "s"
        return pd.DatetimeIndex(pd.to_datetime(numbers, unit=unit, utc=True)), "epoch"
    aware = series.str.contains(_AWARE)
    if aware.any() and not aware.all():
        i = int(np.argmax(~aware.to_numpy())) if aware.iloc[0] else int(np.argmax(aware.to_numpy()))
        raise DataError(
            f"{name} line {lines[i]}: timestamp {excerpt(stripped[i])} mixes zone-aware and naive "
            f"timestamps; give every timestamp a UTC offset or none"
        )
    parsed = pd.to_datetime(series, format="ISO8601", errors="coerce", utc=bool(aware.all()))
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{name} line {lines[i]}: timestamp {excerpt(stripped[i])} is not a date; {_EXPECTED_TS}"
        )
    index = pd.DatetimeIndex(parsed)
    if aware.all():
        return index, "aware"
    localized = index.tz_localize(
        timezone, ambiguous=np.ones(len(index), dtype=bool), nonexistent="shift_forward"
    )
    return localized.tz_convert("UTC"), "naive"


def load_dataset(settings: Settings, path: str | Path) -> Dataset:
    """Read the training CSV with the data settings."""
    d = settings.data
    return load_csv(
        path,
        timestamp_column=d.timestamp_column,
        value_column=d.value_column,
        unit=d.unit,
        timezone=d.timezone,
        duplicate_policy=d.duplicate_policy,
        gap_factor=d.gap_factor,
        min_rows=d.min_rows,
    )


def split_series(series: Series, train_ratio: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a series in time: the first ``train_ratio`` of its rows, and the rest (the holdout)."""
    n = len(series.frame)
    cut = max(2, min(n, int(round(n * train_ratio))))
    return series.frame.iloc[:cut], series.frame.iloc[cut:]
