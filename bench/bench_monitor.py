"""Measure the monitor: scoring latency inside the loop, tick time, and the daemon's CPU and memory.

    python bench/bench_monitor.py loop   [--series 100] [--seconds 30]      # in-process, real clock
    python bench/bench_monitor.py daemon [--series 100] [--seconds 600]     # main.py as a subprocess

``loop`` runs the real Monitor (simulator source, write-ahead log with fsync) at a 1 s interval and
times every scoring call (one call scores the new points of every series in a tick) and every tick.
``daemon`` starts ``main.py --mode monitor`` with the simulator at ``--series`` hosts and a 1 s
interval, and samples its CPU time and RSS from /proc once a second. The first minutes include the
background refits (every simulated host gets its own Prophet model from 14 days of history); the
report splits the run into that phase and the steady state after the last refit.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench_loop(series: int, seconds: float) -> dict[str, float]:
    """Time scoring and ticks of the real loop with ``series`` simulated hosts."""
    from core.assemble import build_monitor
    from core.config import Settings
    from core.detector import Detector, calibration_params
    from core.model.artifact import SeriesModel, load_artifact
    from core.model.store import ModelStore
    from core.sinks import WritePath
    from core.sinks.files import LocalFiles
    from core.sinks.wal import MetricsLog
    from core.sources.simulator import SimulatorSource

    artifact_path = ROOT / "outputs" / "cpu_anomaly_model.json"
    if not artifact_path.is_file():
        sys.exit("train first: python main.py --mode train --no-plots")
    template = next(iter(load_artifact(artifact_path).models.values()))
    source = SimulatorSource(series, interval=1.0)
    store = ModelStore()
    for ref in source.refs.values():
        store.put(SeriesModel(id=ref.id, labels=dict(ref.labels), kind=template.kind, band=template.band))
    score_times: list[tuple[float, int]] = []

    class Timed(Detector):
        def score_many(self, batches):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            out = super().score_many(batches)
            score_times.append((time.perf_counter() - started, len(out)))
            return out

    tick_times: list[float] = []

    class Ticks:
        def on_tick(self, now, seconds, records):  # type: ignore[no-untyped-def]
            tick_times.append(seconds)

        def on_missed(self, count):  # type: ignore[no-untyped-def]
            pass

        def on_error(self, kind, exc):  # type: ignore[no-untyped-def]
            pass

    with tempfile.TemporaryDirectory() as tmp:
        # The daemon's loop at a 1 s interval on its write path without InfluxDB (log fsynced).
        settings = Settings.model_validate({"monitoring": {"interval_seconds": 1.0, "logs_dir": tmp}})
        monitor = build_monitor(
            source,
            store,
            settings,
            log=WritePath(LocalFiles(MetricsLog(tmp, fsync=True), tmp)),
            detector=Timed(store, settings.scoring.params(), calibration_params(settings)),
            observers=[Ticks()],
        )
        stats = monitor.run(duration=seconds)
    call = np.array([t for t, _ in score_times]) * 1e3
    per_point = np.array([t / n for t, n in score_times if n]) * 1e6
    ticks = np.array(tick_times) * 1e3
    return {
        "series": series,
        "ticks": stats.ticks,
        "points": stats.points,
        "missed_ticks": stats.missed_ticks,
        "score_call_ms_p50": float(np.percentile(call, 50)),  # all series' new points of one tick
        "score_call_ms_p99": float(np.percentile(call, 99)),
        "score_per_point_us_p50": float(np.percentile(per_point, 50)),  # the call divided by its points
        "score_per_point_us_p99": float(np.percentile(per_point, 99)),
        "tick_ms_p50": float(np.percentile(ticks, 50)),
        "tick_ms_p99": float(np.percentile(ticks, 99)),
    }


def _stat(pid: int) -> tuple[int, float, float]:
    """Return (parent pid, CPU seconds used incl. reaped children, RSS in MB) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = sum(int(f) for f in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    return int(fields[1]), cpu, rss


def _proc(pid: int) -> tuple[float, float, float, float]:
    """Return (CPU s, RSS MB) of the daemon alone and of its whole process tree (refit workers too)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = _stat(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, _, _) in stats.items():
            if ppid == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    main_cpu, main_rss = stats[pid][1], stats[pid][2]
    return main_cpu, main_rss, sum(stats[p][1] for p in tree), sum(stats[p][2] for p in tree)


def bench_daemon(series: int, seconds: float) -> dict[str, object]:
    """Run main.py --mode monitor with ``series`` simulated hosts; sample CPU and RSS every second."""
    with tempfile.TemporaryDirectory() as tmp:
        # A copy: the daemon updates its artifact after refits.
        model = Path(tmp) / "model.json"
        model.write_bytes((ROOT / "outputs" / "cpu_anomaly_model.json").read_bytes())
        cfg = Path(tmp) / "bench.yaml"
        cfg.write_text(
            f"simulator:\n  series: {series}\nmonitoring:\n  interval_seconds: 1\n"
            f"  logs_dir: {tmp}/logs\ntelemetry:\n  port: 0\n"
        )
        cmd = [
            sys.executable,
            str(ROOT / "main.py"),
            "--mode",
            "monitor",
            "--config",
            str(cfg),
            "--model-path",
            str(model),
            "--duration",
            str(seconds),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
        proc = subprocess.Popen(
            cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        samples = []
        started = time.monotonic()
        while proc.poll() is None:
            try:
                samples.append((time.monotonic() - started, *_proc(proc.pid)))
            except (FileNotFoundError, ProcessLookupError):
                break
            time.sleep(1.0)
        output = proc.communicate()[0]
        report = json.loads((Path(tmp) / "logs" / "system_report.json").read_text())
    refit_lines = [line for line in output.splitlines() if "refitted" in line]
    t = np.array([s[0] for s in samples])
    cpu = np.array([s[1] for s in samples])
    rss = np.array([s[2] for s in samples])
    tree_cpu = np.array([s[3] for s in samples])  # monotone only while no worker has exited
    tree_rss = np.array([s[4] for s in samples])
    fits = report["refits"]["fits"]
    # Steady state: the last third of the run, if every refit is done by then.
    steady = t >= t[-1] * 2 / 3
    share = np.diff(cpu[steady]).sum() / np.diff(t[steady]).sum() * 100 if steady.sum() > 2 else float("nan")
    whole = (cpu[-1] - cpu[0]) / (t[-1] - t[0]) * 100
    # Workers are recycled (their CPU time leaves the tree when they exit): sum the positive steps.
    tree_steps = np.clip(np.diff(tree_cpu), 0, None)
    tree_whole = tree_steps.sum() / (t[-1] - t[0]) * 100
    tree_share = (
        tree_steps[steady[1:]].sum() / np.diff(t[steady]).sum() * 100 if steady.sum() > 2 else float("nan")
    )
    return {
        "series": series,
        "seconds": seconds,
        "points": report["monitor"]["points"],
        "missed_ticks": report["monitor"]["missed_ticks"],
        "refits": fits,
        "last_refit_line": refit_lines[-1] if refit_lines else None,
        "cpu_percent_of_a_core_whole_run": round(float(whole), 1),
        "cpu_percent_of_a_core_last_third": round(float(share), 1),
        "rss_mb_max": round(float(rss.max()), 1),
        "rss_mb_last": round(float(rss[-1]), 1),
        "with_refit_workers": {
            "cpu_percent_of_a_core_whole_run": round(float(tree_whole), 1),
            "cpu_percent_of_a_core_last_third": round(float(tree_share), 1),
            "rss_mb_max": round(float(tree_rss.max()), 1),
            "rss_mb_last": round(float(tree_rss[-1]), 1),
        },
    }


def main() -> None:
    """Run one benchmark and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["loop", "daemon"])
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args()
    if args.what == "loop":
        print(json.dumps(bench_loop(args.series, args.seconds or 30.0), indent=2))
    else:
        print(json.dumps(bench_daemon(args.series, args.seconds or 600.0), indent=2))


if __name__ == "__main__":
    main()
