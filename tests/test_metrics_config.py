"""The ``metrics:`` list: defaults keep today's CPU query; ids of different metrics never collide."""

from __future__ import annotations

import pytest

from core.config import Settings, load_settings
from core.errors import ConfigError
from core.sources.prometheus import MetricQuery, metric_of


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
