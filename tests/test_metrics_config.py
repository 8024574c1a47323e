"""The ``metrics:`` list: defaults keep today's CPU query; ids of different metrics never collide."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.band import Band
from core.config import Settings, load_settings
from core.data import series_id
from core.errors import ConfigError
from core.model.artifact import ModelArtifact, SeriesModel
from core.model.store import ModelStore
from core.sources.prometheus import MetricQuery, metric_of
from core.units import SeriesPlans


def test_without_metrics_the_one_metric_is_todays_cpu_query():
    (cpu,) = Settings().metric_list()
    assert (cpu.name, cpu.unit, cpu.host_label) == ("cpu", "percent", "instance")
    assert cpu.query == Settings().prometheus.query


def test_a_custom_prometheus_query_without_metrics_stays_raw():
    (cpu,) = Settings.model_validate({"prometheus": {"query": "up"}}).metric_list()
    assert (cpu.query, cpu.unit) == ("up", "raw")


@pytest.mark.parametrize(
    ("unit", "limits"),
    [("percent", (0.0, 100.0)), ("ratio", (0.0, 1.0)), ("seconds", (0.0, None)), ("raw", (None, None))],
)
def test_the_unit_implies_the_physical_range(unit, limits):
    s = Settings.model_validate({"metrics": [{"name": "m", "query": "q", "unit": unit}]})
    assert s.metric_list()[0].limits == limits


def test_cpu_ids_stay_as_today_and_other_metrics_carry_their_name():
    labels = {"__name__": "x", "instance": "h1:9100"}
    cpu = MetricQuery("cpu", "q1").ref(labels)
    mem = MetricQuery("memory_used", "q2").ref(labels)
    assert cpu.id == "instance=h1:9100" and cpu.host == "h1:9100"
    assert mem.id == "metric=memory_used,instance=h1:9100" and mem.host == "h1:9100"
    assert (metric_of(cpu), metric_of(mem)) == ("cpu", "memory_used")


def test_a_repeated_metric_name_is_one_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("metrics:\n  - {name: mem, query: a}\n  - {name: mem, query: b}\n")
    with pytest.raises(ConfigError, match="'mem' is used twice"):
        load_settings(path, env={})


# -- units and model settings per series (core.units.SeriesPlans) ----------------------------------

INF = math.inf
DECLARED = {
    "metrics": [
        {"name": "cpu", "query": "q", "unit": "percent"},
        {"name": "errors", "query": "q", "unit": "ratio", "model": {"interval_width": 0.9}},
        {"name": "latency", "query": "q", "unit": "seconds", "model": {"weekly_seasonality": False}},
        {"name": "rx", "query": "q", "unit": "count/s", "physical_range": [0, 1e9]},
        {"name": "temp", "query": "q", "unit": "raw"},
    ]
}


@pytest.mark.parametrize(
    ("config", "source", "model_units", "labels", "unit", "clip"),
    [
        # No metrics: list: today's behaviour.
        ({}, "simulator", (), {"host": "web-01"}, "percent", (0.0, 100.0)),
        ({}, "prometheus", (), {"instance": "h"}, "percent", (0.0, 100.0)),  # the built-in CPU query
        ({"prometheus": {"query": "up"}}, "prometheus", (), {"instance": "h"}, "raw", None),
        ({"prometheus": {"query": "up"}}, "prometheus", ("percent",), {"instance": "h"}, "percent", (0, 100)),
        ({"prometheus": {"query": "up"}}, "replay", ("fraction",), {"host": "a"}, "percent", (0, 100)),
        ({"model": {"clip_to_unit_range": False}}, "simulator", (), {"host": "a"}, "percent", None),
        # Declared metrics: the unit and range each declares, whatever the models say.
        (DECLARED, "prometheus", (), {"instance": "h"}, "percent", (0.0, 100.0)),
        (DECLARED, "prometheus", ("percent",), {"metric": "errors", "instance": "h"}, "ratio", (0.0, 1.0)),
        (DECLARED, "prometheus", (), {"metric": "latency", "instance": "h"}, "seconds", (0.0, INF)),
        (DECLARED, "prometheus", (), {"metric": "rx", "instance": "h"}, "count/s", (0.0, 1e9)),
        (DECLARED, "prometheus", ("percent",), {"metric": "temp", "instance": "h"}, "raw", None),
        (DECLARED, "simulator", (), {"host": "web-01"}, "percent", (0.0, 100.0)),
        # A model of a metric no longer configured: raw, never clipped.
        (DECLARED, "prometheus", (), {"metric": "gone", "instance": "h"}, "raw", None),
    ],
)
def test_each_series_gets_its_metrics_unit_and_range(config, source, model_units, labels, unit, clip):
    plans = SeriesPlans(Settings.model_validate(config), source=source, model_units=model_units)
    plan = plans.of(series_id(labels), labels)
    assert (plan.metric, plan.unit, plan.clip) == (labels.get("metric", "cpu"), unit, clip)
    assert plans.of(series_id(labels), {}) is plan  # looked up once per series id


def test_each_series_is_fitted_with_its_metrics_model_overrides():
    settings = Settings.model_validate({**DECLARED, "model": {"interval_width": 0.8, "n_jobs": 2}})
    plans = SeriesPlans(settings)
    errors = plans.for_metric("errors").model
    latency = plans.for_metric("latency").model
    assert (errors.interval_width, errors.weekly_seasonality, errors.n_jobs) == (0.9, True, 2)
    assert (latency.interval_width, latency.weekly_seasonality) == (0.8, False)
    assert plans.for_metric("cpu").model == settings.model
    assert plans.for_metric("gone").model == settings.model


def _model(labels: dict[str, str]) -> SeriesModel:
    band = Band(0.0, 60.0, np.zeros(3), np.zeros(3), np.ones(3), 120.0)
    return SeriesModel(id=series_id(labels), labels=labels, kind="profile", band=band)


def test_a_series_without_a_model_borrows_one_of_its_own_metric_only():
    cpu = _model({"instance": "a"})
    mem = _model({"metric": "memory_used", "instance": "a"})
    store = ModelStore(ModelArtifact(models={cpu.id: cpu, mem.id: mem}, config_hash="x", model_settings={}))
    assert store.get("instance=b") == (cpu, True)
    assert store.get("metric=memory_used,instance=b") == (mem, True)
    assert store.get("metric=latency,instance=a") == (None, True)  # never another metric's band
    latency = _model({"metric": "latency", "instance": "a"})
    store.put(latency)
    assert store.get("metric=latency,instance=b") == (latency, True)
    assert store.get("metric=latency,instance=a") == (latency, False)


def test_the_model_hash_follows_what_changes_a_metrics_fits():
    def hashed(**entry):
        return Settings.model_validate({"metrics": [{"name": "m", "query": "q", **entry}]}).model_hash()

    assert Settings().model_hash() == Settings.model_validate({"metrics": []}).model_hash()
    base = hashed(unit="ratio")
    assert hashed(unit="ratio", warning=0.5, side="above") == base  # the decision, not the fit
    assert hashed(unit="ratio", query="other") == base
    assert hashed(unit="seconds") != base
    assert hashed(unit="ratio", model={"interval_width": 0.9}) != base
    assert hashed(unit="ratio", physical_range=[0, 0.5]) != base


def test_each_series_is_decided_on_its_metrics_side_and_dead_zone():
    from core.detector import Detector
    from core.records import PointBatch, SeriesRef

    settings = Settings.model_validate(
        {
            "metrics": [
                {"name": "cpu", "query": "q1", "unit": "percent"},
                {"name": "errors", "query": "q2", "unit": "count/s", "side": "above", "dead_zone": 3.0},
            ]
        }
    )
    refs = {
        "cpu": SeriesRef.from_labels({"instance": "a"}, "instance"),
        "errors": SeriesRef.from_labels({"metric": "errors", "instance": "a"}, "instance"),
    }
    models = {}
    for ref in refs.values():
        band = Band(0.0, 60.0, np.full(100, 10.0), np.full(100, 9.0), np.full(100, 11.0), 6000.0)
        models[ref.id] = SeriesModel(id=ref.id, labels=dict(ref.labels), kind="profile", band=band)
    store = ModelStore(ModelArtifact(models=models, config_hash="x", model_settings={}))
    detector = Detector(store, settings.scoring.params(), plans=SeriesPlans(settings))
    # Against the trained band (half-width 1): 10 below, 2.5 above, 10 above the expectation of 10.
    t, y = np.array([60.0, 120.0, 180.0]), np.array([0.0, 12.5, 20.0])
    flags = {
        name: [r.is_anomaly for r in detector.score_many([PointBatch(ref, t, y, "test")])]
        for name, ref in refs.items()
    }
    assert flags["cpu"] == [True, True, True]  # both sides, no dead zone
    assert flags["errors"] == [False, False, True]  # only above, and only beyond 3 of deviation
