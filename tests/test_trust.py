"""Issue 13, "Trust": bad input never breaks a good model, and the daemon never says anything untrue.

Each case runs the real CLI in a scratch directory (as a user runs it) and checks the exit code, the one
line on stderr, that no traceback escapes, and that a failed command leaves ``outputs/`` as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"
FAST = "model:\n  uncertainty_samples: 200\n  horizon_days: 1\n"


# Case 13: plots that can be read.


def _luminance(rgba) -> float:
    r, g, b = rgba[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_confusion_matrix_digits_contrast_with_their_cell():
    from matplotlib.colors import to_rgba

    from core.report import confusion_figure

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
    from core.plots import components_figure

    fig = components_figure("host=web-01: components", _forecast_frame(days), ylabel="CPU usage (%)")
    assert fig is not None
    fig.canvas.draw()
    trend = fig.axes[0]
    assert not _overlapping(trend.get_xticklabels())
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel().endswith("CPU usage (%)"), ax.get_ylabel()


def test_forecast_and_eda_plots_label_their_axes_with_the_metric():
    from core.band import Band
    from core.plots import eda_figure, forecast_figure

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
