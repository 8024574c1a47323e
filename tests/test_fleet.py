"""Fleet training: parallel fits equal serial ones, failures are isolated, Dask gives the same bands."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.anomalies import Anomaly
from core.config import ModelSettings, Settings
from core.model.parallel import FitJob, fit_many
from core.sources.simulator import SimulatorSource, simulate
from core.timegrid import DAY

ROOT = Path(__file__).resolve().parent.parent


def series(seed: int, days: float = 2.5, step: float = 300.0) -> pd.DataFrame:
    t = 1_760_000_000 + step * np.arange(int(days * DAY / step))
    return pd.DataFrame({"ds": pd.to_datetime(t, unit="s", utc=True), "y": simulate("web", t, seed=seed)})


# Short series, a short horizon and no weekly pattern: a fit takes a fraction of a second.
FAST = {"horizon_days": 0.5, "weekly_seasonality": False, "daily_fourier_order": 4}


def jobs(n: int) -> list[FitJob]:
    return [FitJob(f"host=h{i:02d}", series(seed=i), (0.0, 100.0)) for i in range(n)]


def same_bands(a, b) -> None:
    assert [o.id for o in a] == [o.id for o in b]
    for x, y in zip(a, b, strict=True):
        assert x.fitted.kind == y.fitted.kind == "prophet"
        assert x.fitted.band.equals(y.fitted.band), x.id
        assert x.fitted.params == y.fitted.params, x.id


def test_parallel_fits_equal_serial_fits_in_job_order():
    work = jobs(4)
    seen: list[str] = []
    serial = fit_many(ModelSettings(**FAST, n_jobs=1), work)
    parallel = fit_many(ModelSettings(**FAST, n_jobs=2), work, progress=lambda o: seen.append(o.id))
    same_bands(serial, parallel)
    assert seen == [j.id for j in work]
    assert not any(o.error for o in parallel)


def test_a_failing_series_falls_back_and_is_reported_while_the_rest_go_on():
    work = jobs(3)
    bad = work[1].frame.copy()
    bad.loc[10, "y"] = np.inf  # Prophet refuses infinite values; the profile model does not need them
    work[1] = FitJob(work[1].id, bad, None)
    outcomes = fit_many(ModelSettings(**FAST, n_jobs=2), work)
    assert [o.fitted.kind for o in outcomes] == ["prophet", "profile", "prophet"]
    assert "Prophet fit failed" in outcomes[1].error and "infinity" in outcomes[1].error
    assert outcomes[0].error == outcomes[2].error == ""


def test_a_fit_past_its_timeout_falls_back_and_is_reported():
    (outcome,) = fit_many(ModelSettings(**FAST, fit_timeout_seconds=0.001), jobs(1))
    assert outcome.fitted.kind == "profile"
    assert "timed out after 0.001 s" in outcome.error


def test_without_fallback_a_failing_fit_stops_the_run():
    from core.errors import FitError

    bad = series(seed=1)
    bad.loc[5, "y"] = np.inf
    with pytest.raises(FitError, match="infinity"):
        fit_many(ModelSettings(**FAST, fallback=False), [FitJob("host=x", bad)])


def test_where_fits_run_does_not_change_the_model_hash():
    base = Settings().model_hash()
    placed = Settings.model_validate({"model": {"n_jobs": 8, "dask_scheduler": "tcp://10.0.0.1:8786"}})
    assert placed.model_hash() == base
    assert Settings.model_validate({"model": {"fit_timeout_seconds": 30}}).model_hash() != base


@pytest.mark.slow
def test_fifty_series_on_a_two_worker_dask_cluster_give_the_local_bands(monkeypatch):
    from dask.distributed import LocalCluster

    # Dask's worker processes import the fit function from this checkout.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    work = jobs(50)
    local = fit_many(ModelSettings(**FAST, n_jobs=2), work)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = fit_many(ModelSettings(**FAST, dask_scheduler=cluster.scheduler_address), work)
    same_bands(local, remote)


def test_an_unreachable_dask_scheduler_is_one_clear_config_error(monkeypatch):
    from servers import free_port

    from core.errors import ConfigError
    from core.model import parallel

    monkeypatch.setattr(parallel, "CONNECT_TIMEOUT", 1.0)
    address = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError, match=f"cannot reach the Dask scheduler at {address}"):
        fit_many(ModelSettings(**FAST, dask_scheduler=address), jobs(2))


@pytest.mark.parametrize(
    ("rate", "anomalies"),
    [(0.0, None), (0.02, None), (0.0, {"web-02": [Anomaly("spike", 1_760_000_000.0, 1200.0, 30.0)]})],
)
def test_a_vectorised_simulator_tick_equals_host_by_host_values(rate, anomalies):
    source = SimulatorSource(60, interval=10.0, anomaly_rate=rate, anomalies=anomalies)
    now = 1_760_000_123.0
    first = source.poll(now, {})
    assert [b.series.id for b in first] == [ref.id for ref in source.refs.values()]
    # Hosts last seen at three different times: three groups, each generated as one array.
    last = {b.series.id: float(b.t[-1]) - 600.0 * (i % 3) for i, b in enumerate(first)}
    for batches in (first, source.poll(now + 700.0, last)):
        for batch in batches:
            host = batch.series.host
            expected = source.values(host, source.profiles[host], batch.t)
            assert np.array_equal(batch.y, expected), host
