"""The band: O(1) interpolated lookup, wrapping beyond the grid, exact JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.band import Band
from core.timegrid import DAY, WEEK


def make_band(days: float = 8, step: float = 300.0, start: float = 1_700_000_000.0) -> Band:
    n = int(days * DAY / step) + 1
    t = start + step * np.arange(n)
    yhat = 50 + 10 * np.sin(2 * np.pi * t / DAY)
    return Band(
        start=start, step=step, yhat=yhat, lower=yhat - 5, upper=yhat + 7, trained_until=start + 2 * DAY
    )


def test_lookup_on_grid_points_is_exact():
    band = make_band()
    i = np.array([0, 1, 100, len(band.yhat) - 1])
    values = band.lookup(band.start + band.step * i)
    np.testing.assert_array_equal(values.yhat, band.yhat[i])
    np.testing.assert_array_equal(values.upper, band.upper[i])
    assert not values.stale.any()


def test_lookup_between_grid_points_interpolates_linearly():
    band = make_band()
    t = band.start + band.step * 10.25
    values = band.lookup(t)
    expected = band.yhat[10] + 0.25 * (band.yhat[11] - band.yhat[10])
    assert values.yhat[0] == pytest.approx(expected)


def test_beyond_the_grid_repeats_the_last_week_and_is_stale():
    band = make_band(days=8)
    inside = band.end - 3 * DAY
    far = inside + 10 * WEEK
    got, ref = band.lookup(far), band.lookup(inside)
    assert got.stale[0] and not ref.stale[0]
    assert got.yhat[0] == pytest.approx(ref.yhat[0])


def test_before_the_grid_wraps_forward():
    band = make_band(days=8)
    t = band.start + DAY + 1234.0
    assert band.lookup(t - 3 * WEEK).yhat[0] == pytest.approx(band.lookup(t).yhat[0])


def test_short_band_wraps_by_day_and_tiny_band_holds_its_edge():
    day_band = make_band(days=2)
    assert day_band.period == DAY
    t = day_band.start + 3600.0
    assert day_band.lookup(t + 5 * DAY).yhat[0] == pytest.approx(day_band.lookup(t).yhat[0])
    tiny = make_band(days=0.5)
    assert tiny.period is None
    assert tiny.lookup(tiny.end + 10 * DAY).yhat[0] == tiny.yhat[-1]


def test_json_round_trip_is_exact():
    band = make_band()
    again = Band.from_dict(json.loads(json.dumps(band.to_dict())))
    assert again.equals(band)


def test_invalid_bands_are_refused():
    with pytest.raises(ValueError):
        Band(start=0, step=0, yhat=np.zeros(3), lower=np.zeros(3), upper=np.zeros(3), trained_until=0)
    with pytest.raises(ValueError):
        Band(start=0, step=1, yhat=np.zeros(3), lower=np.zeros(2), upper=np.zeros(3), trained_until=0)
