"""The benchmark suite: one command, one JSON object on stdout (progress on stderr).

    python -m bench            # full run (about 15 minutes on 2 cores)
    python -m bench --quick    # short run (about 3 minutes): fewer series, shorter daemon run
    python -m bench --train-series 1000   # measure train_1000_series_s directly (5 more minutes)

Every figure is measured in this run on this machine; ``reference`` holds the figures of issue 16
(measured at commit 622647f) and its goals. Keys ending in ``_extrapolated_from`` say when a figure is
scaled from a smaller measured run. The machine may be shared: ``load_average`` says how busy it was.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from core.config import ModelSettings, Settings  # noqa: E402
from core.timegrid import DAY  # noqa: E402

REFERENCE = {
    "measured_at_commit": "622647f (issue 16)",
    "score_points_per_s": 93_000,
    "monitor_10000_tick_ms": 2000,
    "train_s_per_series": 1.1,
    "train_1000_series_s": 19 * 60,
    "write_points_per_s": [82_000, 144_000],
    "monitor_1000_cpu_share": 0.101,
    "monitor_1000_peak_rss_mb": 3560,
    "prophet_predict_point_ms": 42,
    "goals": {
        "score_points_per_s": 5_000_000,
        "monitor_10000_tick_ms": 100,
        "monitor_1000_cpu_share": 0.03,
        "monitor_1000_peak_rss_mb": 400,
        "train_1000_series_s": 600,
        "write_points_per_s": 300_000,
    },
}


def say(text: str) -> None:
    """Report progress on stderr (stdout carries only the JSON)."""
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def _store(refs: list, template_band) -> object:  # type: ignore[no-untyped-def]
    from core.model.artifact import SeriesModel
    from core.model.store import ModelStore

    store = ModelStore()
    for ref in refs:
        store.put(SeriesModel(id=ref.id, labels=dict(ref.labels), kind="profile", band=template_band))
    return store


def _profile_band(now: float):  # type: ignore[no-untyped-def]
    from core.model.forecaster import ProfileForecaster
    from core.sources.simulator import simulate

    t = now - 14 * DAY + 300.0 * np.arange(int(14 * DAY / 300))
    frame = pd.DataFrame({"ds": pd.to_datetime(t, unit="s", utc=True), "y": simulate("web", t)})
    return ProfileForecaster(ModelSettings()).fit(frame).band


def bench_ticks(series: int, ticks: int) -> dict[str, float]:
    """Time whole ticks in process: simulator poll, band lookup, calibrated score, records."""
    from core.detector import Detector, calibration_params
    from core.sources.simulator import SimulatorSource

    settings = Settings()
    now = float(int(time.time() // 10 * 10))
    source = SimulatorSource(series, interval=10.0)
    store = _store(list(source.refs.values()), _profile_band(now))
    detector = Detector(store, settings.scoring.params(), calibration_params(settings))  # type: ignore[arg-type]
    last: dict[str, float] = {}
    times, score_times, points = [], [], 0
    for k in range(ticks + 1):
        started = time.perf_counter()
        batches = source.poll(now + 10.0 * k, last)
        scored = time.perf_counter()
        records = detector.score_many(batches)
        done = time.perf_counter()
        for b in batches:
            last[b.series.id] = float(b.t[-1])
        if k:  # the first tick creates every series' calibrator
            times.append(done - started)
            score_times.append(done - scored)
            points += len(records)
    return {
        "tick_ms_p50": float(np.percentile(times, 50) * 1e3),
        "tick_ms_p99": float(np.percentile(times, 99) * 1e3),
        "score_ms_p50": float(np.percentile(score_times, 50) * 1e3),
        "points_per_s_in_ticks": points / sum(times),
    }


def bench_score(series: int, points_per_series: int, repeats: int) -> float:
    """Return points/s of Detector.score_many (lookup, calibration, decision, records) on one core."""
    from core.detector import Detector, calibration_params
    from core.records import PointBatch, SeriesRef

    settings = Settings()
    now = float(int(time.time() // 10 * 10))
    refs = [SeriesRef.from_labels({"host": f"h{i:05d}"}, "host") for i in range(series)]
    store = _store(refs, _profile_band(now))
    detector = Detector(store, settings.scoring.params(), calibration_params(settings))  # type: ignore[arg-type]
    rng = np.random.default_rng(1)
    total, elapsed = 0, 0.0
    for r in range(repeats + 1):
        t = now + 10.0 * (r * points_per_series + np.arange(points_per_series))
        batches = [PointBatch(ref, t, 40 + rng.normal(0, 3, len(t)), "bench") for ref in refs]
        started = time.perf_counter()
        n = len(detector.score_many(batches))
        if r:
            elapsed += time.perf_counter() - started
            total += n
    return total / elapsed


def bench_prophet_predict(repeats: int) -> float:
    """Return Prophet's own predict time for one point, in ms (the reference for the band lookup)."""
    from core.model.forecaster import ProphetForecaster, prophet_input
    from core.sources.simulator import simulate

    t = 1_760_000_000 + 300.0 * np.arange(int(14 * DAY / 300))
    frame = pd.DataFrame({"ds": pd.to_datetime(t, unit="s", utc=True), "y": simulate("web", t)})
    forecaster = ProphetForecaster(ModelSettings(horizon_days=1))
    fitted = forecaster.fit(frame)
    from prophet.serialize import model_from_json

    model = model_from_json(fitted.params)
    one = prophet_input(pd.DatetimeIndex([pd.Timestamp(t[-1], unit="s")]))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(one)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def fleet_csv(path: Path, series: int, days: float = 14.0, end: float = 1_760_000_000.0) -> None:
    """Write ``series`` simulated hosts of ``days`` at 5 minutes as one CSV (timestamp, host, cpu_usage)."""
    from core.sources.simulator import SimulatorSource

    source = SimulatorSource(series, interval=300.0)
    frames = []
    for ref in source.refs.values():
        batch = source.history(ref, end - days * DAY, end, 100_000)
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": pd.to_datetime(batch.t, unit="s").strftime("%Y-%m-%d %H:%M:%S"),
                    "host": ref.host,
                    "cpu_usage": np.round(batch.y, 2),
                }
            )
        )
    pd.concat(frames).to_csv(path, index=False)


def bench_train(series: int, n_jobs: int, workdir: Path) -> dict[str, float]:
    """Train ``series`` hosts of 14 days at 5 minutes with ``n_jobs`` processes (no plots)."""
    from core.train import train

    csv = workdir / f"fleet{series}.csv"
    fleet_csv(csv, series)
    # All 14 days are fitted (no holdout), as in the reference figure.
    settings = Settings.model_validate({"model": {"n_jobs": n_jobs, "train_ratio": 1.0}})
    started = time.perf_counter()
    result = train(
        settings, csv, model_path=workdir / "train" / "model.json", output_dir=workdir / "train", plots=False
    )
    seconds = time.perf_counter() - started
    return {
        "series": series,
        "seconds": seconds,
        "artifact_bytes": result.artifact_bytes,
        "failures": len(result.metadata["fit_failures"]),
    }


def bench_write(records_n: int, workdir: Path) -> float:
    """Return points/s end to end: records into the fsynced write-ahead log, forwarded to VictoriaMetrics."""
    from servers import VictoriaMetricsServer

    from bench.bench_write import make_records
    from core.sinks.forwarder import Forwarder
    from core.sinks.influx import InfluxV2Writer
    from core.sinks.wal import MetricsLog

    records = make_records(records_n, hosts=1000)
    with VictoriaMetricsServer(workdir / "vm") as vm:
        writer = InfluxV2Writer(vm.url, "token", "org", "bucket", timeout=30)
        log = MetricsLog(workdir / "wal", fsync=True)
        fwd = Forwarder(log, writer, "bench", batch_size=5000, flush_interval=0.05)
        started = time.perf_counter()
        fwd.start()
        for first in range(0, len(records), 1000):  # one tick of 1,000 series at a time, fsynced
            log.append(records[first : first + 1000])
        ok = fwd.flush(600)
        elapsed = time.perf_counter() - started
        points = fwd.points_written
        fwd.close(5)
        log.close()
    if not ok:
        raise RuntimeError("the forwarder did not drain to VictoriaMetrics")
    return points / elapsed


def train_store(series: int, workdir: Path) -> tuple[Path, float]:
    """Train a ``series``-host store with ``--mode train`` (the profile model: seconds, not minutes)."""
    csv = workdir / f"store{series}.csv"
    fleet_csv(csv, series, end=time.time() // 300 * 300)  # up to now: the daemon finds current bands
    cfg = workdir / "store.yaml"
    cfg.write_text("model:\n  kind: profile\n  train_ratio: 1.0\n")
    out = workdir / "store"
    cmd = [sys.executable, str(ROOT / "main.py"), "--mode", "train", "--config", str(cfg), "--dataset"]
    started = time.perf_counter()
    subprocess.run([*cmd, str(csv), "--output-dir", str(out), "--no-plots"], check=True, capture_output=True)
    return out / "cpu_anomaly_model.json", time.perf_counter() - started


def bench_daemon(series: int, seconds: float, workdir: Path, model: Path) -> dict[str, float]:
    """Run ``main.py --mode monitor`` on ``series`` simulated hosts every 10 s; sample CPU and RSS."""
    from bench.bench_monitor import _proc

    logs = workdir / "daemon-logs"
    cfg = workdir / "daemon.yaml"
    # The store's bands start 14 days before now: refits are due only after the run.
    cfg.write_text(
        f"model:\n  kind: profile\nsimulator:\n  series: {series}\nmonitoring:\n  interval_seconds: 10\n"
        f"  logs_dir: {logs}\ntelemetry:\n  port: 0\n"
    )
    cmd = [sys.executable, str(ROOT / "main.py"), "--mode", "monitor", "--config", str(cfg)]
    cmd += ["--model-path", str(model), "--duration", str(seconds)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    output = (workdir / "daemon-output.txt").open("w")
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=output, stderr=subprocess.STDOUT)
    samples = []
    started = time.monotonic()
    while proc.poll() is None:
        try:
            samples.append((time.monotonic() - started, *_proc(proc.pid)))
        except (FileNotFoundError, ProcessLookupError, KeyError):
            break
        time.sleep(1.0)
    proc.wait()
    output.close()
    if proc.returncode != 0:
        tail = (workdir / "daemon-output.txt").read_text().splitlines()[-5:]
        raise RuntimeError(f"the daemon exited with {proc.returncode}: " + " | ".join(tail))
    report = json.loads((logs / "system_report.json").read_text())
    t = np.array([s[0] for s in samples])
    cpu = np.array([s[1] for s in samples])
    rss = np.array([s[2] for s in samples])
    steady = t >= t[-1] / 2  # warm: the second half of the run
    share = float(np.diff(cpu[steady]).sum() / np.diff(t[steady]).sum())
    return {
        "cpu_share_second_half": share,
        "cpu_share_whole_run": float((cpu[-1] - cpu[0]) / (t[-1] - t[0])),
        "peak_rss_mb": float(rss.max()),
        "last_rss_mb": float(rss[-1]),
        "missed_ticks": report["monitor"]["missed_ticks"],
        "refits": report["refits"]["fits"],
    }


def main() -> None:
    """Run the suite and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run with fewer series")
    parser.add_argument(
        "--train-series",
        type=int,
        default=None,
        help="series to train (default 20, --quick 4; 1000 measures train_1000_series_s directly, ~5 min)",
    )
    args = parser.parse_args()
    quick = args.quick
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    out: dict[str, object] = {"quick": quick, "load_average_at_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        say("score_many throughput")
        out["score_points_per_s"] = round(bench_score(1000, 10, 3 if quick else 10))
        say("ticks at 1,000 series")
        t1000 = bench_ticks(1000, 10 if quick else 30)
        out["loop_latency_p99_ms"] = round(t1000["tick_ms_p99"], 2)
        out["loop_1000"] = t1000
        say("ticks at 10,000 series")
        t10000 = bench_ticks(10_000, 3 if quick else 10)
        out["monitor_10000_tick_ms"] = round(t10000["tick_ms_p50"], 1)
        out["loop_10000"] = t10000
        say("Prophet's own predict")
        out["prophet_predict_point_ms"] = round(bench_prophet_predict(5 if quick else 20), 2)
        n = args.train_series or (4 if quick else 20)
        say(f"training {n} series with 2 processes")
        trained = bench_train(n, 2, workdir)
        out["train_s_per_series"] = round(trained["seconds"] / n, 3)
        out["train_1000_series_s"] = round(trained["seconds"] / n * 1000, 1)
        if n != 1000:
            out["train_1000_series_s_extrapolated_from"] = f"{n} series measured with model.n_jobs=2"
        out["train"] = trained
        say("writes to VictoriaMetrics through the write-ahead log")
        out["write_points_per_s"] = round(bench_write(100_000 if quick else 300_000, workdir))
        seconds = 60.0 if quick else 300.0
        say("a 1,000-series store with --mode train")
        store, store_seconds = train_store(1000, workdir)
        say(f"the daemon at 1,000 simulated series on that store for {seconds:g} s")
        daemon = bench_daemon(1000, seconds, workdir, store)
        daemon |= {"store_bytes": store.stat().st_size, "store_train_s": round(store_seconds, 1)}
        out["monitor_1000_cpu_share"] = round(daemon["cpu_share_second_half"], 4)
        out["monitor_1000_peak_rss_mb"] = round(daemon["peak_rss_mb"], 1)
        out["monitor_1000"] = daemon | {"seconds": seconds, "source": "simulator", "store": "profile"}
    out["load_average_at_end"] = list(os.getloadavg())
    out["reference"] = REFERENCE
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
