"""Loading CSVs: a table of good and bad files, and property-based files that must load or fail cleanly."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data import load_csv
from core.dataquality import detect_unit
from core.errors import DataError


def csv(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows(n: int, start: str = "2025-01-06 00:00:00", step: str = "5min", value=lambda i: 40 + i % 7) -> str:
    stamps = pd.date_range(start, periods=n, freq=step).strftime("%Y-%m-%d %H:%M:%S")
    return "".join(f"{s},{value(i)}\n" for i, s in enumerate(stamps))


BAD = [
    ("empty file", "", "file is empty"),
    ("only whitespace", "\n\n  \n", "file is empty"),
    ("header only", "timestamp,cpu_usage\n", "no data rows after the header"),
    (
        "no timestamp column",
        "time,cpu_usage\n2025-01-01 00:00:00,1\n",
        "line 1: no 'timestamp' column (found: time, cpu_usage)",
    ),
    (
        "no value column",
        "timestamp,a,b\n2025-01-01 00:00:00,1,2\n",
        "line 1: no value column (found: timestamp, a, b)",
    ),
    (
        "bad month",
        "timestamp,cpu_usage\n2025-01-01 00:00:00,1\n2025-13-01 00:00:00,2\n",
        "line 3: timestamp '2025-13-01 00:00:00' is not a date; expected YYYY-MM-DD HH:MM:SS",
    ),
    ("words as time", "timestamp,cpu_usage\nyesterday,1\n", "line 2: timestamp 'yesterday' is not a date"),
    ("empty timestamp", "timestamp,cpu_usage\n2025-01-01 00:00:00,1\n,2\n", "line 3: timestamp is empty"),
    (
        "mixed zones",
        "timestamp,cpu_usage\n2025-01-01T00:00:00Z,1\n2025-01-01 00:05:00,2\n",
        "line 3: timestamp '2025-01-01 00:05:00' mixes zone-aware and naive timestamps",
    ),
    (
        "all values non-numeric",
        "timestamp,cpu_usage\n2025-01-01 00:00:00,high\n2025-01-01 00:05:00,low\n",
        "line 2: value 'high' in 'cpu_usage' is not a number",
    ),
    (
        "too few rows",
        "timestamp,cpu_usage\n" + rows(5),
        "too few rows to train (series default: 5 usable rows",
    ),
]


@pytest.mark.parametrize(("text", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_files_raise_one_clear_line(tmp_path, text, message):
    path = csv(tmp_path, text)
    with pytest.raises(DataError) as info:
        load_csv(path, min_rows=10)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_csv(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="is a directory"):
        load_csv(tmp_path)


def test_clean_file_loads_as_utc_series(tmp_path):
    data = load_csv(csv(tmp_path, "timestamp,cpu_usage\n" + rows(300)), min_rows=10)
    (series,) = data.series
    assert series.id == "default"
    assert len(series.frame) == 300
    assert str(series.frame["ds"].dt.tz) == "UTC"
    assert data.report.unit == "percent" and data.report.scale == 1.0
    assert data.report.series["default"].step_seconds == 300
    assert data.report.series["default"].gaps == 0


def test_repairs_are_made_and_reported(tmp_path):
    text = (
        "timestamp,cpu_usage\n"
        "2025-01-01 00:10:00,30\n"
        "2025-01-01 00:00:00,10\n"
        "2025-01-01 00:05:00,20\n"
        "2025-01-01 00:05:00,25\n"  # duplicate: the last one wins
        "2025-01-01 00:15:00,NaN\n"
        "2025-01-01 00:20:00,oops\n"
        "\n"
        "2025-01-01 00:25:00,50\n"
        "2025-01-01 02:00:00,60\n"  # a gap of 19 steps
        "2025-01-01 02:05:00,61\n"
    )
    data = load_csv(csv(tmp_path, text), min_rows=2)
    frame = data.series[0].frame
    assert frame["y"].tolist() == [10, 25, 30, 50, 60, 61]
    assert frame["ds"].is_monotonic_increasing and frame["ds"].is_unique
    r = data.report
    assert (r.unsorted_rows, r.duplicate_timestamps, r.missing_values, r.non_numeric_values) == (3, 1, 1, 1)
    assert r.first_non_numeric_line == 7 and r.blank_lines == 1
    assert r.series["default"].gaps == 1 and r.series["default"].missing_steps == 18
    text_summary = " ".join(r.summary())
    assert "1 non-numeric values dropped (first on line 7)" in text_summary


@pytest.mark.parametrize("policy,expected", [("last", 25.0), ("first", 20.0), ("mean", 22.5)])
def test_duplicate_policy(tmp_path, policy, expected):
    text = "timestamp,value\n2025-01-01 00:00:00,1\n2025-01-01 00:05:00,20\n2025-01-01 00:05:00,25\n"
    frame = load_csv(csv(tmp_path, text), min_rows=2, duplicate_policy=policy, unit="raw").series[0].frame
    assert frame["y"].tolist() == [1.0, expected]


def test_fractions_are_scaled_to_percent(tmp_path):
    data = load_csv(
        csv(tmp_path, "timestamp,cpu_usage\n" + rows(20, value=lambda i: 0.25 + i / 100)), min_rows=2
    )
    assert data.report.unit == "fraction" and data.report.scale == 100
    assert data.series[0].frame["y"].iloc[0] == pytest.approx(25.0)


@pytest.mark.parametrize(
    "values,unit,expected",
    [
        ([0.1, 0.9], "auto", ("fraction", 100.0)),
        ([5, 95], "auto", ("percent", 1.0)),
        ([5, 1e6], "auto", ("raw", 1.0)),
        ([-1, 0.5], "auto", ("raw", 1.0)),
        ([0.1, 0.5], "percent", ("percent", 1.0)),
        ([3, 9], "fraction", ("fraction", 100.0)),
    ],
)
def test_detect_unit(values, unit, expected):
    assert detect_unit(np.array(values, dtype=float), unit) == expected


def test_label_columns_split_series(tmp_path):
    text = "timestamp,host,cpu_usage\n" + "".join(
        f"2025-01-01 00:{m:02d}:00,{h},{v}\n" for m in range(0, 50, 5) for h, v in (("a", 10), ("b", 90))
    )
    data = load_csv(csv(tmp_path, text), min_rows=5)
    assert [s.id for s in data.series] == ["host=a", "host=b"]
    assert data.series[1].frame["y"].eq(90).all()
    assert data.report.label_columns == ["host"]


def test_short_series_are_skipped_when_others_are_usable(tmp_path):
    text = "timestamp,host,value\n" + "".join(f"2025-01-01 00:{m:02d}:00,a,1\n" for m in range(0, 50, 5))
    text += "2025-01-01 00:00:00,b,1\n"
    data = load_csv(csv(tmp_path, text), min_rows=5, unit="raw")
    assert [s.id for s in data.series] == ["host=a"]
    assert "host=b" in data.report.skipped_series


@pytest.mark.parametrize(
    "stamp,zone,expected_utc",
    [
        ("2025-07-01 12:00:00", "UTC", "2025-07-01 12:00:00"),
        ("2025-07-01 12:00:00", "Europe/Berlin", "2025-07-01 10:00:00"),
        ("2025-07-01T12:00:00+02:00", "UTC", "2025-07-01 10:00:00"),
        ("2025-07-01T12:00:00Z", "Europe/Berlin", "2025-07-01 12:00:00"),
        ("1751371200", "Europe/Berlin", "2025-07-01 12:00:00"),
    ],
)
def test_timestamps_naive_aware_and_epoch(tmp_path, stamp, zone, expected_utc):
    text = f"timestamp,value\n{stamp},1\n"
    frame = load_csv(csv(tmp_path, text), min_rows=1, timezone=zone, unit="raw").series[0].frame
    assert frame["ds"].iloc[0] == pd.Timestamp(expected_utc, tz="UTC")


# Property-based: any well-formed series loads with every row accounted for...
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    values=st.lists(st.one_of(st.floats(0, 100), st.just(float("nan"))), min_size=3, max_size=60),
    shuffle_seed=st.integers(0, 10**6),
)
def test_generated_files_load_with_every_row_accounted_for(tmp_path, values, shuffle_seed):
    stamps = pd.date_range("2025-03-01", periods=len(values), freq="1min").strftime("%Y-%m-%d %H:%M:%S")
    lines = [f"{s},{'' if np.isnan(v) else repr(v)}" for s, v in zip(stamps, values, strict=True)]
    np.random.default_rng(shuffle_seed).shuffle(lines)
    path = csv(tmp_path, "timestamp,value\n" + "\n".join(lines) + "\n")
    finite = [v for v in values if not np.isnan(v)]
    if len(finite) < 2:
        with pytest.raises(DataError):
            load_csv(path, min_rows=2, unit="raw")
        return
    data = load_csv(path, min_rows=2, unit="raw")
    frame = data.series[0].frame
    assert len(frame) == len(finite)
    assert data.report.missing_values == len(values) - len(finite)
    assert frame["ds"].is_monotonic_increasing
    assert sorted(frame["y"].tolist()) == sorted(finite)


# ... and arbitrary text either loads or raises DataError: never another exception.
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(body=st.text(alphabet=string.printable, max_size=200))
def test_arbitrary_text_never_escapes_as_another_exception(tmp_path, body):
    path = csv(tmp_path, "timestamp,cpu_usage\n" + body)
    try:
        load_csv(path, min_rows=1)
    except DataError as exc:
        assert "\n" not in str(exc)
