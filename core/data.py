"""Read and validate metric CSV files into clean per-series frames.

A file is ``timestamp,<value>`` where the value column is ``cpu_usage`` or ``value``; any other column is
a label (``host``, ...) that splits the file into several series. Timestamps are stored in UTC; naive
ones are read in the configured zone. Problems that can be repaired (unsorted rows, duplicates, NaN,
non-numeric cells, gaps) are repaired and reported; problems that cannot raise :class:`DataError` with
the file, the line and the fix.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from core.errors import DataError
from core.timegrid import to_epoch

if TYPE_CHECKING:
    from core.config import Settings

__all__ = [
    "VALUE_COLUMNS",
    "Dataset",
    "LoadReport",
    "Series",
    "SeriesReport",
    "detect_unit",
    "load_csv",
    "load_dataset",
    "series_id",
    "split_series",
]

VALUE_COLUMNS = ("cpu_usage", "value")
_EXPECTED_TS = "expected YYYY-MM-DD HH:MM:SS (ISO 8601, optionally with a UTC offset) or Unix seconds"
_AWARE = re.compile(r"(?:Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_EPOCH = re.compile(r"^\d{9,13}(\.\d+)?$")

Unit = Literal["fraction", "percent", "raw"]


@dataclass(frozen=True)
class SeriesReport:
    """What cleaning found and did in one series."""

    rows: int
    start: str
    end: str
    step_seconds: float
    gaps: int
    missing_steps: int
    longest_gap_seconds: float


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
    """One clean series: sorted unique UTC timestamps ``ds`` and float values ``y``."""

    labels: tuple[tuple[str, str], ...]
    frame: pd.DataFrame

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


def detect_unit(values: np.ndarray, unit: str) -> tuple[Unit, float]:
    """Decide whether values are 0-1 fractions, 0-100 percentages or raw numbers; return (unit, scale)."""
    if unit == "fraction":
        return "fraction", 100.0
    if unit in ("percent", "raw"):
        return unit, 1.0  # type: ignore[return-value]
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "raw", 1.0
    low, high = float(finite.min()), float(finite.max())
    if low >= 0 and high <= 1.0:
        return "fraction", 100.0
    if low >= 0 and high <= 100.0:
        return "percent", 1.0
    return "raw", 1.0


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
) -> Dataset:
    """Read a metric CSV, validate it and return clean series; raise DataError naming file and line."""
    file = Path(path)
    name = str(path)
    raw = _read_table(file, name)
    columns = [str(c).strip() for c in raw.columns]
    raw.columns = pd.Index(columns)
    if timestamp_column not in columns:
        found = ", ".join(columns) or "nothing"
        raise DataError(
            f"{name} line 1: no '{timestamp_column}' column (found: {found}); "
            f"name the time column '{timestamp_column}' or set data.timestamp_column"
        )
    vcol = _value_column(raw, columns, value_column, timestamp_column, name)
    label_cols = [c for c in columns if c not in (timestamp_column, vcol)]

    blank = raw.apply(lambda col: col.str.strip() == "").all(axis=1).to_numpy()
    lines = np.arange(len(raw)) + 2  # line 1 is the header
    raw = raw.loc[~blank]
    lines = lines[~blank]
    if raw.empty:
        raise DataError(f"{name}: no data rows after the header; add rows of '{timestamp_column},{vcol}'")

    ts, kind = _parse_timestamps(raw[timestamp_column].to_numpy(dtype=str), lines, name, timezone)
    text = raw[vcol].str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=float, copy=True)
    empty = text.eq("").to_numpy() | text.str.lower().isin(["nan", "na", "null", "none"]).to_numpy()
    bad = np.isnan(values) & ~empty
    if bad.all():
        i = int(np.argmax(bad))
        raise DataError(f"{name} line {lines[i]}: value {text.iloc[i]!r} in '{vcol}' is not a number")
    values[~np.isfinite(values)] = np.nan
    detected, scale = detect_unit(values, unit)
    values = values * scale

    report = LoadReport(
        path=name,
        rows_read=int(len(raw)),
        value_column=vcol,
        label_columns=label_cols,
        unit=detected,
        scale=scale,
        timestamps=kind,
        timezone_assumed=timezone if kind == "naive" else None,
        blank_lines=int(blank.sum()),
        missing_values=int((np.isnan(values) & ~bad).sum()),
        non_numeric_values=int(bad.sum()),
        first_non_numeric_line=int(lines[int(np.argmax(bad))]) if bad.any() else None,
    )
    frame = pd.DataFrame({"ds": ts, "y": values})
    for col in label_cols:
        frame[col] = raw[col].str.strip().to_numpy()

    series: list[Series] = []
    groups = frame.groupby(label_cols, sort=False, dropna=False) if label_cols else [((), frame)]
    for key, part in groups:
        key_tuple = key if isinstance(key, tuple) else (key,)
        labels = tuple(zip(label_cols, (str(k) for k in key_tuple), strict=True))
        sid = series_id(labels)
        clean, unsorted, dups = _clean(part[["ds", "y"]], duplicate_policy)
        report.unsorted_rows += unsorted
        report.duplicate_timestamps += dups
        if len(clean) < min_rows:
            report.skipped_series[sid] = (
                f"{len(clean)} usable rows; at least {min_rows} are needed (data.min_rows)"
            )
            continue
        report.series[sid] = describe_series(clean, gap_factor)
        series.append(Series(labels=labels, frame=clean))
    if not series:
        worst = "; ".join(f"series {k}: {v}" for k, v in report.skipped_series.items())
        raise DataError(
            f"{name}: too few rows to train ({worst}); supply more history or lower data.min_rows"
        )
    return Dataset(series=series, report=report)


def describe_series(frame: pd.DataFrame, gap_factor: float = 3.0) -> SeriesReport:
    """Summarise a clean series: span, typical step and gaps longer than ``gap_factor`` steps."""
    secs = to_epoch(frame["ds"])
    diffs = np.diff(secs)
    step = float(np.median(diffs)) if diffs.size else 0.0
    big = diffs > gap_factor * step if step > 0 else np.zeros(0, bool)
    missing = int(np.sum(np.round(diffs[big] / step) - 1)) if big.any() else 0
    return SeriesReport(
        rows=int(len(frame)),
        start=frame["ds"].iloc[0].isoformat(),
        end=frame["ds"].iloc[-1].isoformat(),
        step_seconds=step,
        gaps=int(big.sum()),
        missing_steps=missing,
        longest_gap_seconds=float(diffs[big].max()) if big.any() else 0.0,
    )


def _read_table(file: Path, name: str) -> pd.DataFrame:
    if not file.exists():
        raise DataError(f"{name}: file not found; pass an existing CSV file with --dataset")
    if file.is_dir():
        raise DataError(f"{name}: is a directory; pass a CSV file with --dataset")
    try:
        head = file.read_bytes()[:4096]
    except OSError as exc:
        raise DataError(f"{name}: cannot read file ({exc.strerror})") from exc
    if not head.strip():
        raise DataError(f"{name}: file is empty; expected a header line 'timestamp,cpu_usage' and data rows")
    try:
        return pd.read_csv(
            file,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            skipinitialspace=True,
            encoding="utf-8-sig",
        )
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: not UTF-8 text (byte {exc.start}); save the file as UTF-8 CSV") from exc
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        where = f" line {match.group(1)}" if match else ""
        raise DataError(
            f"{name}{where}: malformed CSV ({str(exc).strip()}); check quoting and commas"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{name}: file is empty; expected a header line 'timestamp,cpu_usage'") from exc


def _value_column(raw: pd.DataFrame, columns: list[str], wanted: str, ts_col: str, name: str) -> str:
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
            f"{name} line {lines[i]}: timestamp {stripped[i]!r} mixes zone-aware and naive timestamps; "
            f"give every timestamp a UTC offset or none"
        )
    parsed = pd.to_datetime(series, format="ISO8601", errors="coerce", utc=bool(aware.all()))
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{name} line {lines[i]}: timestamp {stripped[i]!r} is not a date; {_EXPECTED_TS}")
    index = pd.DatetimeIndex(parsed)
    if aware.all():
        return index, "aware"
    localized = index.tz_localize(
        timezone, ambiguous=np.ones(len(index), dtype=bool), nonexistent="shift_forward"
    )
    return localized.tz_convert("UTC"), "naive"


def _clean(frame: pd.DataFrame, policy: str) -> tuple[pd.DataFrame, int, int]:
    """Sort, merge duplicate timestamps and drop missing values; return (frame, unsorted, duplicates)."""
    ds = frame["ds"].to_numpy(dtype="datetime64[ns]")
    unsorted = int(np.sum(ds[1:] < np.maximum.accumulate(ds)[:-1])) if len(ds) > 1 else 0
    frame = frame.dropna(subset=["y"]).sort_values("ds", kind="stable")
    dups = int(frame["ds"].duplicated().sum())
    if dups:
        if policy == "mean":
            frame = frame.groupby("ds", as_index=False, sort=True)["y"].mean()
        else:
            frame = frame.drop_duplicates("ds", keep="last" if policy == "last" else "first")
    return frame.reset_index(drop=True)[["ds", "y"]], unsorted, dups


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
