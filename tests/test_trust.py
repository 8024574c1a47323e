"""Issue 13, "Trust": bad input never breaks a good model, and the daemon never says anything untrue.

Each case runs the real CLI in a scratch directory (as a user runs it) and checks the exit code, the one
line on stderr, that no traceback escapes, and that a failed command leaves ``outputs/`` as it was.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import __version__
from core.cleaning import aggregate, find_outliers, nice_step
from core.model.artifact import load_artifact

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"
FAST = "model:\n  uncertainty_samples: 200\n  horizon_days: 1\n"


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(MAIN), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(env),
    )


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    return {**base, "TELEMETRY_PORT": "0", **(extra or {})}


def run_measured(cwd: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the CLI like :func:`run`; also return the child's peak RSS in bytes (``wait4``)."""
    proc = subprocess.Popen(
        [sys.executable, str(MAIN), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()  # small outputs: no pipe can fill up
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), usage.ru_maxrss * 1024


def frame(days: float = 4, step: str = "15min", start: str = "2025-01-06", level: float = 40) -> pd.DataFrame:
    t = pd.date_range(start, periods=int(days * pd.Timedelta("1D") / pd.Timedelta(step)), freq=step)
    hours = t.hour + t.minute / 60
    y = level + 15 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(0).normal(0, 2, len(t))
    return pd.DataFrame({"timestamp": t.strftime("%Y-%m-%d %H:%M:%S"), "cpu_usage": y.round(2)})


def write(path: Path, data: pd.DataFrame) -> Path:
    data.to_csv(path, index=False)
    return path


def warnings(stdout: str) -> list[str]:
    return [line.split(" | WARNING | ", 1)[1] for line in stdout.splitlines() if " | WARNING | " in line]


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes (application.log, the log of every run, aside)."""
    if not directory.exists():
        return {}
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.name.startswith("application.log")
    }


def assert_failed(result: subprocess.CompletedProcess[str], code: int, line: str) -> None:
    assert (result.returncode, result.stderr) == (code, f"error: {line}\n"), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a good dataset, a fast config and the model trained from them."""
    base = tmp_path_factory.mktemp("trained")
    write(base / "good.csv", frame())
    (base / "c.yaml").write_text(FAST)
    result = run(base, "--config", "c.yaml", "--dataset", "good.csv")
    assert result.returncode == 0, result.stderr
    return base


@pytest.fixture
def workdir(trained: Path, tmp_path: Path) -> Path:
    """A copy of ``trained`` to break things in."""
    shutil.copytree(trained, tmp_path / "w")
    return tmp_path / "w"


# Case 2: one bad value breaks the model.


def test_one_huge_value_is_left_out_of_the_fit_and_named_by_its_line(tmp_path):
    data = frame()
    data.loc[100, "cpu_usage"] = 1e6
    write(tmp_path / "d.csv", data)
    (tmp_path / "c.yaml").write_text(FAST)
    result = run(tmp_path, "--config", "c.yaml", "--dataset", "d.csv", "--no-plots")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert (
        "series default: 1 outlier left out of the fit: line 102 (1e+06) (more than 10 robust deviations "
        "from the rolling median); check those rows if they are not real"
    ) in warnings(result.stdout)
    meta = json.loads((tmp_path / "outputs" / "model_metadata.json").read_text())
    entry = meta["series"]["default"]
    assert entry["rows_excluded_as_outliers"] == 1 and entry["rows_train"] == 306
    assert meta["dataset"]["unit"] == "percent"  # one typo does not turn percentages into raw numbers
    assert entry["metrics"]["holdout"]["mean_band_width"] < 30  # was about 48,000 with the value inside


@pytest.mark.parametrize(
    ("cells", "line"),
    [
        ({50: "inf"}, "d.csv line 52: value 'inf' in 'cpu_usage' is not a finite number"),
        ({60: "-Infinity"}, "d.csv line 62: value '-Infinity' in 'cpu_usage' is not a finite number"),
        (
            {70: "1e308"},
            "d.csv line 72: value '1e308' in 'cpu_usage' is too large to compute with (the limit is ±1e+18)",
        ),
        ({80: "1e308", 40: "inf"}, "d.csv line 42: value 'inf' in 'cpu_usage' is not a finite number"),
    ],
    ids=["inf", "-Infinity", "1e308", "inf and 1e308"],
)
def test_non_finite_values_exit_2_and_leave_the_model_alone(workdir, cells, line):
    data = frame().astype({"cpu_usage": object})
    for row, text in cells.items():
        data.loc[row, "cpu_usage"] = text
    write(workdir / "d.csv", data)
    before, logs = snapshot(workdir / "outputs"), snapshot(workdir / "logs")
    result = run(workdir, "--config", "c.yaml", "--dataset", "d.csv")
    assert_failed(result, 2, f"{line}; fix the value or remove the row (an empty cell is read as missing)")
    assert snapshot(workdir / "outputs") == before and snapshot(workdir / "logs") == logs


def test_a_train_that_fails_at_the_end_writes_nothing(workdir):
    """Plots are drawn and the model fitted before the artifact's directory turns out to be unusable."""
    (workdir / "blocker").write_text("a file where a directory should be\n")
    before = snapshot(workdir / "outputs")
    result = run(workdir, "--config", "c.yaml", "--dataset", "good.csv", "--model-path", "blocker/m.json")
    assert result.returncode == 2 and result.stderr.startswith("error: blocker")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stdout + result.stderr
    assert snapshot(workdir / "outputs") == before  # no plot, no metadata, no temporary file


def test_the_next_train_after_a_refused_one_is_unaffected(workdir):
    write(workdir / "bad.csv", frame().astype({"cpu_usage": object}).assign(cpu_usage="inf"))
    assert run(workdir, "--config", "c.yaml", "--dataset", "bad.csv").returncode == 2
    meta = json.loads((workdir / "outputs" / "model_metadata.json").read_text())
    model = json.loads((workdir / "outputs" / "cpu_anomaly_model.json").read_text().splitlines()[0])
    assert meta["model_version"] == model["model_version"]


@pytest.mark.parametrize(
    ("y", "expected"),
    [
        (np.r_[np.full(50, 40.0), 1e6, np.full(50, 40.0)], [50]),
        (40 + np.sin(np.arange(200) / 5), []),
        (np.r_[np.full(100, 10.0), np.full(100, 60.0)], []),  # a level shift is not an outlier
        (np.r_[np.zeros(100), -500.0, np.zeros(100)], [100]),
        (np.full(4, 40.0), []),
    ],
    ids=["spike", "smooth", "level shift", "negative glitch", "too short"],
)
def test_outlier_rule(y, expected):
    t = np.arange(len(y)) * 300.0
    assert np.flatnonzero(find_outliers(t, y)).tolist() == expected


def test_outlier_rule_flags_at_most_one_percent():
    y = np.random.default_rng(1).standard_cauchy(1000)
    assert find_outliers(np.arange(1000) * 60.0, y).sum() <= 10


# Case 3: 10 million rows at 1-second steps (here: minutes, against a configured 15-minute band).


def test_data_finer_than_the_band_is_aggregated_and_short_history_is_named(tmp_path):
    write(tmp_path / "d.csv", frame(days=4, step="1min"))
    (tmp_path / "c.yaml").write_text(FAST + "  band_step_seconds: 900\n")
    result = run(tmp_path, "--config", "c.yaml", "--dataset", "d.csv", "--no-plots")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert (
        "series default: 4,608 training rows are finer than the band step; aggregated to 308 rows at 900 s "
        "(one per step) before fitting"
    ) in result.stdout
    assert warnings(result.stdout) == [
        "series default: the training rows span 3 days 4 h 45 min from first to last, too short for weekly "
        "seasonality (it needs 14.0 days, two whole periods between the first and the last row); the model "
        "has no weekly pattern: supply more history or set model.weekly_seasonality: false"
    ]
    meta = json.loads((tmp_path / "outputs" / "model_metadata.json").read_text())["series"]["default"]
    assert meta["aggregated_to_seconds"] == 900 and meta["rows_train"] == 308
    band = json.loads((tmp_path / "outputs" / "cpu_anomaly_model.json").read_text().splitlines()[1])["band"]
    assert band["step"] == 900
    # The band covers single points, not means: aggregation keeps a point's noise.
    assert meta["metrics"]["holdout"]["coverage"] > 0.8


def test_aggregate_keeps_one_row_per_step():
    ds = pd.date_range("2025-01-01", periods=10, freq="1min", tz="UTC")
    out = aggregate(pd.DataFrame({"ds": ds, "y": np.arange(10.0)}), 300)
    assert out["y"].tolist() == [0.0, 5.0] and list(out["ds"]) == [ds[0], ds[5]]
    assert [nice_step(s) for s in (0.5, 215, 300, 301, 50_000, 100_000)] == [1, 300, 300, 600, 86400, 172800]


def test_a_file_is_read_in_chunks_with_its_line_numbers(tmp_path, monkeypatch):
    import core.data as data

    path = write(tmp_path / "d.csv", frame(days=1).assign(host=lambda f: np.where(f.index % 2, "a", "b")))
    whole = data.load_csv(path)
    monkeypatch.setattr(data, "CHUNK_ROWS", 7)
    chunked = data.load_csv(path)
    assert [s.id for s in chunked.series] == [s.id for s in whole.series] == ["host=b", "host=a"]
    for a, b in zip(whole.series, chunked.series, strict=True):
        pd.testing.assert_frame_equal(a.frame, b.frame)
        assert a.lines is not None and b.lines is not None and (a.lines == b.lines).all()
    text = path.read_text().splitlines()
    text[60] = text[60].split(",")[0] + ",nan?," + text[60].split(",")[2]  # line 61
    assert whole.report.first_non_numeric_line is None
    path.write_text("\n".join(text) + "\n")
    monkeypatch.setattr(data, "CHUNK_ROWS", 10**6)
    assert data.load_csv(path).report.first_non_numeric_line == 61
    monkeypatch.setattr(data, "CHUNK_ROWS", 7)
    assert data.load_csv(path).report.first_non_numeric_line == 61
    for i in range(57, len(text)):  # from line 58, the first line of a chunk of 7, zone-aware
        text[i] = text[i].replace(" ", "T", 1).replace(",", "Z,", 1)
    path.write_text("\n".join(text) + "\n")
    messages = set()
    for rows in (7, 10**6):
        monkeypatch.setattr(data, "CHUNK_ROWS", rows)
        with pytest.raises(data.DataError) as caught:
            data.load_csv(path)
        messages.add(str(caught.value))
    assert messages == {
        f"{path} line 58: timestamp '2025-01-06T14:00:00Z' mixes zone-aware and naive timestamps; "
        "give every timestamp a UTC offset or none"
    }


# Case 4: a 60 MB line; the log within its rotation (here a 1 MB cell and a 50 KB rotation).


def test_a_huge_cell_is_quoted_as_a_short_excerpt_and_the_log_stays_small(workdir):
    data = frame().astype({"timestamp": object})
    data.loc[10, "timestamp"] = "9" * 1_000_000
    write(workdir / "d.csv", data)
    (workdir / "c.yaml").write_text(FAST + "logging:\n  rotation: 50 KB\n")
    before = snapshot(workdir / "outputs")
    result, peak = run_measured(workdir, "--config", "c.yaml", "--dataset", "d.csv")
    assert peak < 600e6  # the column was once copied as fixed-width text: 384 rows x 4 MB
    assert_failed(
        result,
        2,
        f"d.csv line 12: timestamp '{'9' * 80}…' is not a date; expected YYYY-MM-DD HH:MM:SS "
        "(ISO 8601, optionally with a UTC offset) or Unix seconds",
    )
    assert snapshot(workdir / "outputs") == before
    for log in (workdir / "logs").glob("application.log*"):
        assert log.stat().st_size < 60_000, log


# Case 6: passwords inside URLs.


def test_passwords_in_urls_are_redacted_in_output_logs_and_report(tmp_path):
    env = {
        "PROMETHEUS_URL": "http://admin:pw123@127.0.0.1:1",
        "INFLUXDB_URL": "http://writer:pw456@127.0.0.1:1",
        "INFLUXDB_API": "v1",
    }
    (tmp_path / "c.yaml").write_text(  # the fallback runs the daemon on, through every output
        "monitoring:\n  fallback_to_simulator: true\n"
        "influxdb:\n  timeout_seconds: 0.5\n  max_backoff_seconds: 0.5\n"
    )
    result = run(
        tmp_path,
        "--config",
        "c.yaml",
        "--mode",
        "monitor",
        "--duration",
        "1",
        "--monitoring-interval",
        "1",
        env=env,
    )
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "logs" / "system_report.json").read_text()
    assert json.loads(report)["settings"]["prometheus"]["url"] == "http://***@127.0.0.1:1"
    assert json.loads(report)["settings"]["influxdb"]["url"] == "http://***@127.0.0.1:1"
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("application.log*"))
    for secret in ("pw123", "pw456"):
        assert secret not in result.stdout + result.stderr + report + logs


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://admin:pw123@host:9090/api?q=1", "http://***@host:9090/api?q=1"),
        ("https://token@host", "https://***@host"),
        ("http://a:b@[::1]:8086", "http://***@[::1]:8086"),
        ("admin:pw123@host:9090", "***@host:9090"),
        ("http://host:9090", "http://host:9090"),
        (None, None),
    ],
)
def test_redact_url(url, shown):
    from core.config import redact_url

    assert redact_url(url) == shown


def test_redact_text_masks_every_url_in_a_message():
    from core.redact import redact_text

    text = "Prometheus at http://admin:pw@p:9090 failed; InfluxDB at https://u:p@i:8086/write too"
    assert (
        redact_text(text)
        == "Prometheus at http://***@p:9090 failed; InfluxDB at https://***@i:8086/write too"
    )


def test_settings_repr_and_report_hold_no_url_password():
    from core.config import load_settings

    s = load_settings(
        None, env={"PROMETHEUS_URL": "http://admin:pw123@p:9090", "INFLUXDB_URL": "http://u:pw456@i"}
    )
    text = repr(s) + str(s) + json.dumps(s.redacted())
    assert "pw123" not in text and "pw456" not in text and "http://***@p:9090" in text
    assert s.prometheus.url == "http://admin:pw123@p:9090"  # the connection still gets its credentials


def test_a_bad_url_in_an_error_is_redacted(tmp_path):
    (tmp_path / "c.yaml").write_text("prometheus:\n  url: [http://admin:pw123@host]\n")
    result = run(tmp_path, "--check-config", "--config", "c.yaml")
    assert_failed(
        result, 2, "c.yaml: prometheus.url: ['http://***@host'] is invalid (Input should be a valid string)"
    )


# Case 9: messages point to where the bad value came from.


@pytest.mark.parametrize(
    ("args", "env", "line"),
    [
        (
            [],
            {"MONITORING_INTERVAL": "soon"},
            "environment variable MONITORING_INTERVAL: 'soon' is invalid (Input should be a valid number, "
            "unable to parse string as a number)",
        ),
        (
            [],
            {"TELEMETRY_PORT": "99999"},
            "environment variable TELEMETRY_PORT: '99999' is invalid "
            "(Input should be less than or equal to 65535)",
        ),
        (
            ["--monitoring-interval", "-5"],
            {},
            "--monitoring-interval: -5.0 is invalid (Input should be greater than 0)",
        ),
        (
            [],
            {"PROMETHEUS_URL": "ftp://admin:pw123@prom:9090"},
            "environment variable PROMETHEUS_URL: 'ftp://***@prom:9090' is not an http(s) URL; "
            "use e.g. http://prometheus:9090",
        ),
        (
            ["--prometheus-url", "admin:pw123@prom:9090"],
            {},
            "--prometheus-url: '***@prom:9090' is not an http(s) URL; use e.g. http://prometheus:9090",
        ),
        (
            ["--log-level", "loud"],
            {},
            "--log-level: 'LOUD' is invalid (Input should be 'TRACE', 'DEBUG', 'INFO', 'SUCCESS', 'WARNING', "
            "'ERROR' or 'CRITICAL')",
        ),
    ],
    ids=["env number", "env range", "flag", "env url", "flag url", "flag choice"],
)
def test_a_bad_value_names_the_variable_or_flag_not_config_yaml(tmp_path, args, env, line):
    (tmp_path / "config.yaml").write_text("monitoring:\n  interval_seconds: 60\n")
    assert_failed(run(tmp_path, "--check-config", *args, env=env), 2, line)


@pytest.mark.parametrize(
    ("yaml", "line"),
    [
        (
            "influxdb:\n  password: pw123\n",
            "c.yaml: influxdb.password: secrets are not read from the config file; "
            "set INFLUXDB_PASSWORD in the environment",
        ),
        (
            "influxdb:\n  token: t0ken\n",
            "c.yaml: influxdb.token: secrets are not read from the config file; set INFLUXDB_TOKEN in the "
            "environment or name a file holding it in influxdb.token_file",
        ),
        (
            "prometheus:\n  bearer_token: t0ken\n",
            "c.yaml: prometheus.bearer_token: secrets are not read from the config file; name a file holding "
            "it in prometheus.bearer_token_file",
        ),
    ],
    ids=["influxdb.password", "influxdb.token", "prometheus.bearer_token"],
)
def test_an_inline_secret_gets_a_hint_that_exists(tmp_path, yaml, line):
    import re

    from core.config import ENV_VARS, SECRET_ENV, Settings

    (tmp_path / "c.yaml").write_text(yaml)
    assert_failed(run(tmp_path, "--check-config", "--config", "c.yaml"), 2, line)
    hint = line.split("; ", 1)[1]
    for key in re.findall(r"\b([a-z]+\.[a-z_]+)\b", hint):
        section, name = key.split(".")
        assert name in Settings.model_fields[section].annotation.model_fields, key
    for var in re.findall(r"\b[A-Z][A-Z_]+\b", hint):
        assert var in ENV_VARS or var in SECRET_ENV, var


# Case 10: implausible data trains, but not without a word.


def test_implausible_series_are_named_with_the_value_and_line(tmp_path):
    a, b, c, d = frame(), frame(), frame().assign(cpu_usage=50.0), frame(start="2031-01-06")
    a.loc[[10, 11, 12], "cpu_usage"] = [-5.0, -4.0, -3.0]
    b.loc[[20, 21], "cpu_usage"] = [130.0, 150.0]
    data = pd.concat([x.assign(host=h) for x, h in zip((a, b, c, d), "abcd", strict=True)])
    write(tmp_path / "d.csv", data)
    (tmp_path / "c.yaml").write_text(FAST)
    result = run(tmp_path, "--config", "c.yaml", "--dataset", "d.csv", "--no-plots")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    found = warnings(result.stdout)
    assert (
        "series host=a: 3 negative values in 'cpu_usage' (lowest -5 on line 12); CPU usage cannot be below "
        "0%: check the source"
    ) in found
    assert (
        "series host=b: 2 values above 100% in 'cpu_usage' (highest 150 on line 407); CPU usage is a "
        "percentage of all cores: check the unit (data.unit)"
    ) in found
    assert (
        "series host=c: every value is 50 (384 rows); a constant series has no pattern to learn and any "
        "change will be flagged: check the column 'cpu_usage'"
    ) in found
    future = [w for w in found if w.startswith("series host=d: last timestamp")]
    assert len(future) == 1
    assert future[0].startswith("series host=d: last timestamp 2031-01-09T23:45:00+00:00 (line 1537) is ")
    assert future[0].endswith(" years in the future; check the clock of the source or data.timezone")
    assert "nan%" not in result.stdout and "MAPE 0.0%" in result.stdout


def test_mape_of_a_series_below_one_says_na_not_nan(tmp_path):
    write(tmp_path / "d.csv", frame().assign(cpu_usage=0.0))
    (tmp_path / "c.yaml").write_text(FAST)
    result = run(tmp_path, "--config", "c.yaml", "--dataset", "d.csv", "--no-plots")
    assert result.returncode == 0, result.stderr
    assert "MAPE n/a (no value of at least 1)" in result.stdout and "nan" not in result.stdout


# Case 11: CLI edges.


def test_a_model_path_that_is_a_directory_fails_before_training(workdir):
    before = snapshot(workdir / "outputs")
    result = run(workdir, "--config", "c.yaml", "--dataset", "good.csv", "--model-path", "outputs")
    assert_failed(
        result, 2, "outputs: the model path is a directory; name a file, e.g. outputs/cpu_anomaly_model.json"
    )
    assert "fitting" not in result.stdout
    assert snapshot(workdir / "outputs") == before


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_duration_must_be_positive(tmp_path, value):
    result = run(tmp_path, "--mode", "monitor", "--duration", value)
    assert_failed(
        result,
        2,
        f"argument --duration: {value!r} is not a positive number of seconds; give e.g. 30 "
        "(see python main.py --help)",
    )
    assert not (tmp_path / "logs").exists()


def test_version(tmp_path):
    result = run(tmp_path, "--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"main.py {__version__}\n", "")


# Case 13: plots that can be read.


def _luminance(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_confusion_matrix_digits_contrast_with_their_cell():
    from matplotlib.colors import to_rgba

    from core.evaluation.report import confusion_figure

    fig = confusion_figure(np.array([[3000, 40], [60, 120]]))
    ax = fig.axes[0]
    image = ax.images[0]
    texts = ax.texts
    assert [t.get_text() for t in texts] == ["3000", "40", "60", "120"]
    for text, value in zip(texts, [3000, 40, 60, 120], strict=True):
        cell = image.cmap(image.norm(value))
        assert abs(_luminance(cell) - _luminance(to_rgba(text.get_color()))) > 0.4, text.get_text()


def _forecast_frame(days: int = 28) -> pd.DataFrame:
    ds = pd.date_range("2025-01-06", periods=days * 96, freq="15min")
    hours = ds.hour + ds.minute / 60
    weekday = ds.day_of_week < 5
    daily = np.sin(2 * np.pi * hours / 24)
    return pd.DataFrame(
        {
            "ds": ds,
            "trend": np.linspace(30, 35, len(ds)),
            "daily_weekday": np.where(weekday, daily, 0.0),
            "daily_weekend": np.where(weekday, 0.0, daily / 2),
            "weekly": np.cos(2 * np.pi * ds.day_of_week / 7),
        }
    )


def _overlapping(labels) -> bool:
    boxes = [label.get_window_extent() for label in labels if label.get_text()]
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


@pytest.mark.parametrize("days", [3, 28, 120])
def test_components_plot_has_readable_dates_and_labelled_axes(days):
    from core.evaluation.plots import components_figure

    fig = components_figure("host=web-01: components", _forecast_frame(days), ylabel="CPU usage (%)")
    assert fig is not None
    fig.canvas.draw()
    trend = fig.axes[0]
    assert not _overlapping(trend.get_xticklabels())
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel().endswith("CPU usage (%)"), ax.get_ylabel()


def test_forecast_and_eda_plots_label_their_axes_with_the_metric():
    from core.band import Band
    from core.evaluation.plots import eda_figure, forecast_figure

    t = np.arange(0, 14 * 86400, 900.0) + 1.736e9
    y = 40 + 10 * np.sin(2 * np.pi * t / 86400)
    band = Band(start=t[0], step=900.0, yhat=y, lower=y - 5, upper=y + 5, trained_until=t[-1])
    fig = forecast_figure("f", t, y, band, t[800], np.zeros(len(t), bool), ylabel="CPU usage (%)")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("time (UTC)", "CPU usage (%)")
    assert not _overlapping(ax.get_xticklabels())
    fig = eda_figure("e", t, y, xlabel="CPU usage (%)")
    assert all(ax.get_xlabel() and ax.get_ylabel() and ax.get_ylabel() != "value" for ax in fig.axes)


def test_evaluate_with_a_missing_model_path_exits_3_like_monitor(workdir):
    before = snapshot(workdir / "outputs")
    result = run(
        workdir,
        "--config",
        "c.yaml",
        "--mode",
        "evaluate",
        "--dataset",
        "good.csv",
        "--model-path",
        "no.json",
    )
    assert_failed(
        result, 3, "no.json: model file not found; run 'python main.py --mode train' or fix --model-path"
    )
    assert snapshot(workdir / "outputs") == before


# Helpers of the daemon cases: a free port, a plain-HTTP server, a monitor as a real process.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def plain_http() -> Iterator[str]:
    """The base address of a plain-HTTP server (which answers 404 to everything), as https://."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def start_monitor(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(MAIN), "--mode", "monitor", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(env),
        start_new_session=True,  # its own process group: a signal reaches it and its workers only
    )


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 120) -> tuple[str, str]:
    """Read the monitor's stdout until a line holds ``text``; return (that line, all read so far)."""
    assert proc.stdout is not None
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return line, "".join(seen)
    raise AssertionError(f"no line with {text!r} in:\n{''.join(seen)}")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (a loopback test URL)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# Case 1: an explicitly configured Prometheus that cannot be reached is an error, or, if a fallback
# is asked for, a loudly degraded daemon that never trains a real series on simulated data.

UNREACHABLE = (
    "is unreachable: {} (1 attempt in {} s); check that it is running and that prometheus.url is right"
)


@pytest.mark.parametrize("how", ["refused", "no answer", "https to http"])
def test_an_unreachable_prometheus_is_exit_4(workdir, how, request):
    (workdir / "p.yaml").write_text(FAST + "prometheus:\n  timeout_seconds: 0.5\n  retries: 0\n")
    if how == "refused":
        url = f"http://127.0.0.1:{free_port()}"
        line = rf"Prometheus at {url} " + re.escape(UNREACHABLE).replace(r"\{\}", "{}").format(
            "connection refused", r"[0-9.]+"
        )
    elif how == "no answer":
        url = f"http://127.0.0.1:{request.getfixturevalue('silent_port')}"
        line = rf"Prometheus at {url} " + re.escape(UNREACHABLE).replace(r"\{\}", "{}").format(
            "no answer within 0.5 s", r"[0-9.]+"
        )
    else:
        url = request.getfixturevalue("plain_http")
        line = re.escape(
            f"Prometheus at {url}: TLS handshake failed: the server speaks plain HTTP? use http://"
        )
    before = snapshot(workdir / "outputs"), snapshot(workdir / "logs")
    result = run(
        workdir, "--config", "p.yaml", "--mode", "monitor", "--duration", "5", env={"PROMETHEUS_URL": url}
    )
    assert result.returncode == 4, result.stderr
    assert re.fullmatch(f"error: {line}\n", result.stderr), result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert (snapshot(workdir / "outputs"), snapshot(workdir / "logs")) == before


def test_the_simulator_fallback_is_degraded_visible_and_never_saved(workdir):
    (workdir / "p.yaml").write_text(
        FAST + "monitoring:\n  fallback_to_simulator: true\n  interval_seconds: 1\n"
    )
    outputs = snapshot(workdir / "outputs")
    port = free_port()
    env = {"PROMETHEUS_URL": f"http://127.0.0.1:{free_port()}", "TELEMETRY_PORT": str(port)}
    proc = start_monitor(workdir, "--config", "p.yaml", "--duration", "30", env=env)
    try:
        _, started = wait_for_line(proc, "self-metrics on")
        status, body = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 503
        assert json.loads(body)["status"] == "degraded: source simulator (Prometheus unreachable)"
        metrics = get(f"http://127.0.0.1:{port}/metrics")[1]
        assert 'anomaly_detector_source{source="simulator"} 1.0' in metrics
        assert 'anomaly_detector_source{source="prometheus"} 0.0' in metrics
        _, seen = wait_for_line(proc, "refitted models stay in memory")  # fitted on simulated data...
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "FALLING BACK TO THE SIMULATOR" in started and "refitted host=web-01" in seen
    records = [json.loads(line) for line in (workdir / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert records and {r["source"] for r in records} == {"simulator"}
    assert snapshot(workdir / "outputs") == outputs  # ...and never written into the artifact


def test_a_refit_saved_to_the_artifact_updates_its_metadata(workdir):
    from core.config import ModelSettings
    from core.model.artifact import load_artifact
    from core.model.store import ModelStore
    from core.records import SeriesRef
    from core.refit import InlineExecutor, RefitPolicy, Refitter
    from core.sources.simulator import SimulatorSource

    path = workdir / "outputs" / "cpu_anomaly_model.json"
    old = load_artifact(path)
    source = SimulatorSource(1, interval=300.0)
    refitter = Refitter(
        ModelStore(old),
        source,
        ModelSettings(kind="profile"),
        RefitPolicy(interval=3600.0, history=7 * 86400.0, min_rows=100),
        executor=InlineExecutor(),
        artifact_path=path,
    )
    ref = SeriesRef.from_labels({"host": "web-01"}, "host")
    assert refitter.model_version == old.model_version
    assert refitter.schedule([ref], time.time()) == 1
    refitter.close()
    new = load_artifact(path)
    metadata = json.loads((workdir / "outputs" / "model_metadata.json").read_text())
    assert "host=web-01" in new.models and new.model_version != old.model_version
    assert metadata["model_version"] == new.model_version
    assert refitter.model_version == new.model_version  # what system_report.json shows from now on
    assert metadata["refitted"]["series"] == sorted(new.models) and metadata["series"]  # train's kept


def test_without_fallback_the_default_config_says_false():
    from core.config import MonitoringSettings

    assert MonitoringSettings().fallback_to_simulator is False
    assert "fallback_to_simulator: false" in (ROOT / "config.yaml").read_text()


# Case 7: one monitor per logs directory.


def test_a_second_monitor_on_the_same_logs_refuses_naming_the_first(tmp_path):
    (tmp_path / "c.yaml").write_text("monitoring:\n  interval_seconds: 1\n  refit_interval_hours: 0\n")
    first = start_monitor(tmp_path, "--config", "c.yaml", "--duration", "60")
    try:
        wait_for_line(first, "monitoring every")
        lock = tmp_path / "logs" / "monitor.lock"
        assert lock.read_text().strip() == str(first.pid)
        deadline = time.monotonic() + 30
        while not (tmp_path / "logs" / "last_seen.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)  # the first tick has written every file it writes
        before = snapshot(tmp_path / "logs")
        second = run(tmp_path, "--config", "c.yaml", "--mode", "monitor", "--duration", "5")
        after = snapshot(tmp_path / "logs")
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
    finally:
        first.kill()
    assert_failed(
        second,
        5,
        f"logs is in use by another monitor (PID {first.pid}, logs/monitor.lock); stop it first or give "
        "this one its own monitoring.logs_dir (LOGS_DIR)",
    )
    assert second.stdout == ""  # refused before logging anything
    assert after.keys() == before.keys()  # no file of its own (the first one's grow meanwhile)
    records = [json.loads(line) for line in (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert len({(r["series"], r["ts"]) for r in records}) == len(records)  # no duplicate record
    assert first.returncode == 0
    assert not lock.exists()  # released and removed at exit: the next monitor starts
    third = run(tmp_path, "--config", "c.yaml", "--mode", "monitor", "--duration", "1")
    assert third.returncode == 0, third.stderr


# Case 12: slow stops, and https to a plain-HTTP database.


def test_a_failing_influxdb_does_not_hold_up_the_stop(tmp_path):
    (tmp_path / "c.yaml").write_text("monitoring:\n  interval_seconds: 1\n  refit_interval_hours: 0\n")
    env = {"INFLUXDB_URL": f"http://127.0.0.1:{free_port()}", "INFLUXDB_TOKEN": "t"}
    started = time.monotonic()
    result = run(tmp_path, "--config", "c.yaml", "--mode", "monitor", "--duration", "8", env=env)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert took < 8 + 10, took  # duration + influxdb.timeout_seconds, start-up included
    assert "they stay in logs and are sent on the next start" in result.stdout
    cursor_lag = [line for line in result.stdout.splitlines() if "records not yet in the database" in line]
    assert cursor_lag


def test_https_to_a_plain_http_influxdb_says_so(plain_http):
    from core.sinks.influx import InfluxV1Writer, InfluxV2Writer

    for writer in (
        InfluxV2Writer(plain_http, "t", "o", "b", timeout=3),
        InfluxV1Writer(plain_http, "db", timeout=3),
    ):
        with pytest.raises(
            Exception, match=re.escape("TLS handshake failed: the server speaks plain HTTP? use http://")
        ):
            writer.write(["m v=1 1"])


# Case 5: Ctrl-C on a monitor that refits.


@pytest.mark.parametrize("when", ["during the refit", "after the refit"])
def test_ctrl_c_on_a_refitting_monitor_is_clean(workdir, when):
    (workdir / "c.yaml").write_text(FAST + "monitoring:\n  interval_seconds: 1\n")
    stale = workdir / "outputs" / ".cpu_anomaly_model.json.abc123.tmp"
    stale.write_text("{")  # left by an earlier, interrupted run
    os.utime(stale, (time.time() - 60, time.time() - 60))
    proc = start_monitor(workdir, "--config", "c.yaml", "--duration", "120")
    try:
        wait_for_line(proc, "monitoring every" if when == "during the refit" else "refitted host=web-01")
        time.sleep(0.5 if when == "during the refit" else 1.5)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole process group
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (0, ""), err
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    assert "SIGINT: finishing the tick, flushing, stopping" in out
    assert not list((workdir / "outputs").glob(".*.tmp"))
    load_artifact(workdir / "outputs" / "cpu_anomaly_model.json")  # whole, never torn


# Case 8: the quick start's monitor step shows the daemon doing its job.


def test_the_quick_start_monitor_refits_the_ended_bands_and_scores_fresh(tmp_path):
    for name in ("dataset.csv", "dataset_labels.json", "config.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    assert run(tmp_path, "--mode", "train", "--no-plots").returncode == 0
    started = time.monotonic()
    result = run(tmp_path, "--mode", "monitor", "--duration", "30")  # as the README's quick start
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert time.monotonic() - started < 45
    said = re.search(
        r"refitting host=web-01: its band ended (\d{4}-\d\d-\d\d), (\d+) days ago", result.stdout
    )
    assert said, result.stdout
    assert int(said[2]) > 30  # the sample is from 2025: months ago
    assert "refitted host=web-01" in result.stdout
    lines = (tmp_path / "logs" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert records and all(r["series"] == "host=web-01" for r in records)
    assert not any(r["stale"] for r in records), records  # every point against the refitted band
    assert all("borrowed" not in r["model"] for r in records)
