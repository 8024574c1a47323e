"""Labelled windows (NAB combined_windows.json, plus the file::series extension): matching and errors."""

from __future__ import annotations

import json

import pytest

from core.errors import DataError
from core.evaluation.labels import ALL_SERIES, load_windows


def write(tmp_path, data) -> object:
    path = tmp_path / "labels.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_keys_match_by_path_suffix_and_series(tmp_path):
    data_file = tmp_path / "data" / "cat" / "x.csv"
    labels = write(
        tmp_path,
        {
            "cat/x.csv": [["2025-01-01 00:00:00.000000", "2025-01-01 01:00:00.000000"]],
            "x.csv::host=a": [["2025-01-02 00:00:00", "2025-01-02 00:30:00"]],
            "other/x.csv": [["2025-01-03 00:00:00", "2025-01-03 00:30:00"]],
        },
    )
    windows = load_windows(labels, data_file)
    assert windows[ALL_SERIES] == [(1735689600.0, 1735693200.0)]
    assert windows["host=a"] == [(1735776000.0, 1735777800.0)]
    assert load_windows(labels, data_file, timezone="Europe/Berlin")[ALL_SERIES][0][0] == 1735689600.0 - 3600


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "labels file not found; pass an existing JSON file with --labels"),
        ("{oops", "not valid JSON"),
        ("[1, 2]", "expected an object mapping file keys to window lists"),
        ({"x.csv": [["2025-01-01"]]}, "expected a list of [start, end] timestamp strings"),
        ({"x.csv": [["2025-01-01", "soon"]]}, "has a timestamp that is not a date"),
        ({"x.csv": [["2025-01-02", "2025-01-01"]]}, "ends before it starts"),
    ],
)
def test_bad_labels_raise_one_clear_line(tmp_path, content, message):
    path = tmp_path / "labels.json" if content is None else write(tmp_path, content)
    with pytest.raises(DataError) as info:
        load_windows(path, tmp_path / "x.csv")
    assert message in str(info.value) and "\n" not in str(info.value)
