"""Scoring: the definition at its boundaries (table-driven) and its invariants (property-based)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.scoring import SCORE_CAP, SEVERITIES, ScoreParams, decide, score

# (y, yhat, lower, upper, params, expected score, is_anomaly, severity)
CASES = [
    ("at the forecast", 50, 50, 40, 60, {}, 0.0, False, "NONE"),
    ("inside, above", 55, 50, 40, 60, {}, 0.5, False, "NONE"),
    ("inside, below", 45, 50, 40, 60, {}, 0.5, False, "NONE"),
    ("on the upper edge", 60, 50, 40, 60, {}, 1.0, False, "NONE"),
    ("on the lower edge", 40, 50, 40, 60, {}, 1.0, False, "NONE"),
    ("just above the edge", 60.001, 50, 40, 60, {}, 1.0001, True, "LOW"),
    ("above: uses the upper half-width", 70, 50, 45, 60, {}, 2.0, True, "MEDIUM"),
    ("below: uses the lower half-width", 40, 50, 45, 60, {}, 2.0, True, "MEDIUM"),
    ("medium cut is inclusive LOW", 65, 50, 40, 60, {}, 1.5, True, "LOW"),
    ("high cut", 71, 50, 40, 60, {}, 2.1, True, "HIGH"),
    ("critical cut is inclusive HIGH", 80, 50, 40, 60, {}, 3.0, True, "HIGH"),
    ("critical", 81, 50, 40, 60, {}, 3.1, True, "CRITICAL"),
    ("threshold 2: 2 is not above", 70, 50, 40, 60, {"threshold_multiplier": 2.0}, 2.0, False, "NONE"),
    ("threshold 2, beyond", 75, 50, 40, 60, {"threshold_multiplier": 2.0}, 2.5, True, "HIGH"),
    ("threshold 0.5: inside flagged", 58, 50, 40, 60, {"threshold_multiplier": 0.5}, 0.8, True, "LOW"),
    ("zero-width band, exact", 50, 50, 50, 50, {}, 0.0, False, "NONE"),
    ("zero-width band, off", 50.5, 50, 50, 50, {}, SCORE_CAP, True, "CRITICAL"),
    ("zero width on one side only", 49, 50, 50, 60, {}, SCORE_CAP, True, "CRITICAL"),
    ("direction above ignores dips", 20, 50, 40, 60, {"direction": "above"}, 3.0, False, "NONE"),
    ("direction above flags spikes", 80, 50, 40, 60, {"direction": "above"}, 3.0, True, "HIGH"),
    ("direction below ignores spikes", 80, 50, 40, 60, {"direction": "below"}, 3.0, False, "NONE"),
    ("dead zone swallows small deviations", 52, 50, 50.5, 51, {"min_deviation": 2.0}, 2.0, False, "NONE"),
    ("dead zone lets big ones through", 53, 50, 49, 51, {"min_deviation": 2.0}, 3.0, True, "HIGH"),
    ("missing value is never an anomaly", float("nan"), 50, 40, 60, {}, 0.0, False, "NONE"),
]


@pytest.mark.parametrize(
    ("y", "yhat", "lower", "upper", "params", "expected", "anomaly", "severity"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_score_table(y, yhat, lower, upper, params, expected, anomaly, severity):
    result = score(
        np.array([y]), np.array([yhat]), np.array([lower]), np.array([upper]), ScoreParams(**params)
    )
    assert result.score[0] == pytest.approx(expected, rel=1e-9)
    assert bool(result.is_anomaly[0]) is anomaly
    assert result.severity_names() == [severity]
    assert 0.0 <= result.confidence[0] <= 1.0


def test_confidence_is_zero_on_the_threshold_and_grows_away_from_it():
    s = score(np.array([60.0, 70.0, 55.0, 50.0, 200.0]), np.full(5, 50.0), np.full(5, 40.0), np.full(5, 60.0))
    assert s.confidence[0] == 0.0  # on the threshold (k = 1, the edge): a coin toss
    assert s.confidence[1] == pytest.approx(0.6)  # twice the edge
    assert s.confidence[2] == pytest.approx(0.6)  # half the edge
    assert s.confidence[3] == 1.0  # at the forecast: surely normal
    assert s.confidence[4] > 0.99


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="threshold_multiplier"):
        ScoreParams(threshold_multiplier=0)
    with pytest.raises(ValueError, match="severity"):
        ScoreParams(medium=2.5, high=2.0)
    with pytest.raises(ValueError, match="direction"):
        ScoreParams(direction="sideways")  # type: ignore[arg-type]


finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(y=finite, yhat=finite, lo=st.floats(0, 1e4), hi=st.floats(0, 1e4), k=st.floats(0.1, 10))
def test_score_properties(y, yhat, lo, hi, k):
    params = ScoreParams(threshold_multiplier=k)
    r = score(np.array([y]), np.array([yhat]), np.array([yhat - lo]), np.array([yhat + hi]), params)
    s = r.score[0]
    assert 0.0 <= s <= SCORE_CAP
    assert bool(r.is_anomaly[0]) == (s > k)
    # The score does not depend on the threshold: 1.0 is the band edge whatever decides.
    assert s == score(np.array([y]), np.array([yhat]), np.array([yhat - lo]), np.array([yhat + hi])).score[0]
    assert SEVERITIES[r.severity[0]] != "NONE" or not r.is_anomaly[0]
    # Moving further from the forecast never lowers the score.
    further = score(
        np.array([y + np.sign(y - yhat or 1) * 1.0]),
        np.array([yhat]),
        np.array([yhat - lo]),
        np.array([yhat + hi]),
        params,
    ).score[0]
    assert further >= s - 1e-9


def test_vectorised_equals_one_by_one():
    rng = np.random.default_rng(1)
    y, yhat = rng.normal(50, 20, 500), rng.normal(50, 5, 500)
    lower, upper = yhat - rng.uniform(0, 10, 500), yhat + rng.uniform(0, 10, 500)
    batch = score(y, yhat, lower, upper)
    for i in range(0, 500, 37):
        one = score(y[i : i + 1], yhat[i : i + 1], lower[i : i + 1], upper[i : i + 1])
        assert one.score[0] == batch.score[i]
        assert one.severity[0] == batch.severity[i]


def test_decide_uses_the_side_of_the_evidence():
    s = np.array([3.0, 3.0, 3.0, 3.0])
    dev = np.array([-1.0, 1.0, 0.5, np.nan])
    sign = np.array([1, -1, 0, 1])  # e.g. the mean of recent residuals above while this point is below
    above = decide(s, dev, ScoreParams(direction="above"), sign=sign)
    assert above.is_anomaly.tolist() == [True, False, True, False]  # no side (stuck value) counts for both
    below = decide(s, dev, ScoreParams(direction="below"), sign=sign)
    assert below.is_anomaly.tolist() == [False, True, True, False]
    assert decide(s, dev).confidence[3] == 0.0  # no forecast: no decision
