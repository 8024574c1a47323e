"""The model artifact: JSON only, exact round trip of band and forecast, clear errors when unusable."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from core.config import ModelSettings
from core.errors import ModelError
from core.model.artifact import SCHEMA_VERSION, ModelArtifact, SeriesModel, load_artifact, save_artifact
from core.model.forecaster import ProfileForecaster, ProphetForecaster, fit_with_fallback, prophet_input
from core.sources.simulator import simulate
from core.timegrid import DAY


def frame(days: float = 4, step: float = 900.0) -> pd.DataFrame:
    t = 1_760_000_000 + step * np.arange(int(days * DAY / step))
    return pd.DataFrame({"ds": pd.to_datetime(t, unit="s", utc=True), "y": simulate("web", t, seed=3)})


@pytest.fixture(scope="module")
def prophet_model():
    settings = ModelSettings(uncertainty_samples=200, horizon_days=1)
    return ProphetForecaster(settings).fit(frame())


def artifact_of(fitted, **extra) -> ModelArtifact:
    model = SeriesModel(
        id="host=a",
        labels={"host": "a"},
        kind=fitted.kind,
        band=fitted.band,
        unit="percent",
        train_start=fitted.train_start,
        train_end=fitted.train_end,
        train_rows=fitted.train_rows,
        prophet=fitted.params,
        **extra,
    )
    return ModelArtifact(models={"host=a": model}, config_hash="sha256:0123456789abcdef", model_settings={})


def test_round_trip_keeps_band_and_forecast(tmp_path, prophet_model):
    path = tmp_path / "m.json"
    size = save_artifact(artifact_of(prophet_model), path)
    assert size == path.stat().st_size
    loaded = load_artifact(path)
    (model,) = loaded.models.values()
    assert model.band.equals(prophet_model.band)
    assert model.labels == {"host": "a"} and model.train_rows == prophet_model.train_rows
    assert model.train_end == prophet_model.train_end
    # The serialised Prophet model forecasts exactly what the original did.
    grid = prophet_input(prophet_model.forecast["ds"].iloc[:50])
    again = model.prophet_model().predict(grid)
    np.testing.assert_allclose(
        again["yhat"].to_numpy(), prophet_model.forecast["yhat"].to_numpy()[:50], rtol=1e-12
    )
    # Without the training rows and the per-row fitted trend the state is a few kilobytes (it was
    # ~85 KB at 14 days of 5-minute rows), and it still warm-starts a fit.
    params = json.loads(model.prophet)["params"]
    assert "trend" not in params and {"k", "m", "delta", "sigma_obs", "beta"} <= set(params)
    assert len(model.prophet) < 20_000, len(model.prophet)


def test_artifact_is_json_lines_with_an_envelope_and_no_pickle(tmp_path, prophet_model):
    path = tmp_path / "m.json"
    save_artifact(artifact_of(prophet_model), path)
    raw = path.read_bytes()
    assert raw[:1] == b"{" and b"\x80\x04" not in raw[:2]  # not a pickle protocol header
    header, entry = (json.loads(line) for line in raw.decode().splitlines())
    assert header["schema_version"] == SCHEMA_VERSION == 2 and header["series_count"] == 1
    assert {"model_version", "created_at", "config_hash", "versions"} <= set(header)
    assert {"prophet", "pandas", "numpy", "python", "app"} <= set(header["versions"])
    assert entry["training"]["rows"] == prophet_model.train_rows
    assert isinstance(entry["prophet"], str) and "params" in json.loads(entry["prophet"])
    # The band travels as float64 bytes, Prophet's state without its training rows.
    assert entry["band"]["dtype"] == "<f8" and isinstance(entry["band"]["yhat"], str)
    assert len(json.loads(json.loads(entry["prophet"])["history"])["data"]) == 2


def test_a_schema_1_artifact_is_still_read_exactly(tmp_path, prophet_model):
    artifact = artifact_of(prophet_model)
    old = artifact.to_dict() | {"schema_version": 1}
    for entry, model in zip(old["series"], artifact.models.values(), strict=True):
        entry["band"] = model.band.to_dict()
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(old))
    (model,) = load_artifact(path).models.values()
    assert model.band.equals(prophet_model.band) and model.prophet == prophet_model.params


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda lines: lines[:1], "holds 0 series, its envelope names 1"),
        (
            lambda lines: [lines[0], re.sub('"yhat":"....', '"yhat":"////', lines[1], count=1)],
            "band checksum mismatch",
        ),
        (lambda lines: [lines[0], lines[1][:-40]], "not a JSON model artifact (line 2"),
    ],
)
def test_a_damaged_artifact_is_refused_with_one_line(tmp_path, prophet_model, damage, message):
    path = tmp_path / "m.json"
    save_artifact(artifact_of(prophet_model), path)
    path.write_text("\n".join(damage(path.read_text().splitlines())) + "\n")
    with pytest.raises(ModelError) as info:
        load_artifact(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_band_covers_training_span_and_horizon(prophet_model):
    band = prophet_model.band
    assert band.start <= prophet_model.train_start
    assert band.end >= prophet_model.train_end + DAY - band.step
    assert np.all(band.lower <= band.yhat) and np.all(band.yhat <= band.upper)


def test_profile_model_round_trips_without_prophet(tmp_path):
    fitted = ProfileForecaster(ModelSettings()).fit(frame(days=15))
    path = tmp_path / "p.json"
    save_artifact(artifact_of(fitted), path)
    model = load_artifact(path).models["host=a"]
    assert model.kind == "profile" and model.band.equals(fitted.band)
    with pytest.raises(ModelError, match="has no Prophet serialisation"):
        model.prophet_model()


def test_fallback_to_profile_when_prophet_fails(monkeypatch):
    def broken(self, frame, *, clip=None, warm=None):
        raise ModelError("Prophet fit failed: optimisation diverged")

    monkeypatch.setattr(ProphetForecaster, "fit", broken)
    fitted = fit_with_fallback(ModelSettings(), frame())
    assert fitted.kind == "profile" and "optimisation diverged" in fitted.note
    with pytest.raises(ModelError):
        fit_with_fallback(ModelSettings(fallback=False), frame())


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "model file not found; run 'python main.py --mode train' first"),
        ("not json", "not a JSON model artifact (line 1"),
        ('{"schema": "something-else"}', "not a model artifact of this tool"),
        ('{"schema": "anomaly-detector/model", "schema_version": 99}', "schema version 99 is not supported"),
        (
            '{"schema": "anomaly-detector/model", "schema_version": 1, "series": [{}]}',
            "incomplete or corrupt",
        ),
    ],
)
def test_unusable_artifacts_raise_model_error(tmp_path, content, message):
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ModelError) as info:
        load_artifact(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_warm_started_refit_starts_from_the_saved_state_and_lands_where_a_cold_fit_does(prophet_model):
    from core.model.forecaster import warm_start_init

    init = warm_start_init(prophet_model.params)
    assert init is not None and {"k", "m", "sigma_obs", "delta", "beta"} == set(init)
    assert init["delta"].shape == (25,) and init["beta"].ndim == 1 and len(init["beta"]) > 0
    assert warm_start_init("{not json") is None
    settings = ModelSettings(uncertainty_samples=0, horizon_days=1, warm_start=True)
    longer = frame(days=5)
    warm = ProphetForecaster(settings).fit(longer, warm=prophet_model.params)
    cold = ProphetForecaster(settings.model_copy(update={"warm_start": False})).fit(longer)
    # The same optimum up to the optimiser's tolerance, on a swing of ~40 percentage points.
    np.testing.assert_allclose(warm.band.yhat, cold.band.yhat, atol=0.5)
