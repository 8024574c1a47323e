"""Measure the write path: line-protocol encoding, log reading, and batched writes to real servers.

    python bench/bench_write.py                  # encoding + VictoriaMetrics (v2 API) + InfluxDB 1.x
    python bench/bench_write.py --records 300000 --batch-size 5000 --no-influxdb1

Servers are started on loopback from tests/servers.py (Debian packages victoria-metrics, influxdb).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from core.protocols import Writer  # noqa: E402
from core.records import ScoredRecord  # noqa: E402
from core.sinks.forwarder import Forwarder  # noqa: E402
from core.sinks.influx import InfluxV1Writer, InfluxV2Writer  # noqa: E402
from core.sinks.lineproto import encode_records  # noqa: E402
from core.sinks.wal import Cursor, MetricsLog  # noqa: E402

T0 = 1_760_000_000.0


def make_records(n: int, hosts: int = 100) -> list[ScoredRecord]:
    """Return n records spread over `hosts` hosts, one per host per second."""
    out = []
    for i in range(n):
        host = f"web-{i % hosts:03d}"
        value = 40.0 + (i * 7919 % 1000) / 37.0
        out.append(
            ScoredRecord(
                ts=T0 + i // hosts,
                series=f"host={host}",
                labels={"host": host},
                host=host,
                source="prometheus",
                value=value,
                yhat=50.123456789,
                lower=38.5,
                upper=61.75,
                score=abs(value - 50.123456789) / 11.6,
                is_anomaly=value > 61.75,
                severity="normal",
                confidence=0.95,
                threshold=1.0,
                model="prophet",
            )
        )
    return out


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s ({count:,} in {seconds:.3f} s)"


def bench_encoding(records: list[ScoredRecord], repeat: int = 3) -> None:
    best = float("inf")
    lines: list[str] = []
    for _ in range(repeat):
        started = time.perf_counter()
        lines = encode_records(records)
        best = min(best, time.perf_counter() - started)
    print(f"encode_records         points {rate(len(lines), best)}; records {rate(len(records), best)}")


def bench_log(records: list[ScoredRecord], workdir: Path, batch_size: int) -> None:
    log = MetricsLog(workdir / "log-bench", fsync=False)
    started = time.perf_counter()
    for first in range(0, len(records), 100):
        log.append(records[first : first + 100])
    append_s = time.perf_counter() - started
    cursor = Cursor(log, "bench")
    started = time.perf_counter()
    total = 0
    while True:
        batch, pos = cursor.read(batch_size)
        if not batch:
            break
        total += len(batch)
        cursor.commit(pos)
    read_s = time.perf_counter() - started
    log.close()
    print(f"MetricsLog.append      records {rate(len(records), append_s)} (100 per append, no fsync)")
    print(f"Cursor.read+commit     records {rate(total, read_s)} (batch {batch_size}, JSON parse included)")


def bench_fsync_ticks(
    records: list[ScoredRecord], workdir: Path, ticks: int = 200, per_tick: int = 100
) -> None:
    """Time the monitor's durable append: one write + fdatasync per tick."""
    log = MetricsLog(workdir / "fsync-bench", fsync=True)
    took = []
    for tick in range(ticks):
        first = tick * per_tick % max(1, len(records) - per_tick)
        started = time.perf_counter()
        log.append(records[first : first + per_tick])
        took.append(time.perf_counter() - started)
    log.close()
    took.sort()
    print(
        f"append with fsync      {per_tick} records/tick: median {took[len(took) // 2] * 1000:.2f} ms, "
        f"p99 {took[int(len(took) * 0.99)] * 1000:.2f} ms per tick"
    )


def bench_forwarder(
    name: str, writer: Writer, records: list[ScoredRecord], workdir: Path, batch: int
) -> None:
    """Time a forwarder draining a pre-filled log: read + encode + write + commit."""
    log = MetricsLog(workdir / f"fwd-{name}", fsync=False)
    for first in range(0, len(records), 1000):
        log.append(records[first : first + 1000])
    fwd = Forwarder(log, writer, "bench", batch_size=batch, flush_interval=0.01)
    started = time.perf_counter()
    fwd.start()
    ok = fwd.flush(600)
    elapsed = time.perf_counter() - started
    fwd.close(5)
    log.close()
    assert ok, f"{name}: forwarder did not drain"
    latency = fwd.write_latency_sum / max(1, fwd.write_latency_count)
    print(
        f"{name:<22} points {rate(fwd.points_written, elapsed)}; {fwd.batches_ok} requests, "
        f"mean write latency {latency * 1000:.0f} ms"
    )


def bench_writer_only(name: str, writer: Writer, records: list[ScoredRecord], batch: int) -> None:
    """Time only the HTTP writes of pre-encoded batches."""
    batches = [encode_records(records[i : i + batch]) for i in range(0, len(records), batch)]
    started = time.perf_counter()
    for lines in batches:
        writer.write(lines)
    elapsed = time.perf_counter() - started
    print(f"{name:<22} points {rate(sum(map(len, batches)), elapsed)} (writes only, pre-encoded)")


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=5000, help="records per write request")
    parser.add_argument("--no-victoria-metrics", action="store_true")
    parser.add_argument("--no-influxdb1", action="store_true")
    args = parser.parse_args()

    records = make_records(args.records)
    print(f"{args.records:,} records (3 points each), batch size {args.batch_size} records")
    bench_encoding(records)
    with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
        workdir = Path(tmp)
        bench_log(records, workdir, args.batch_size)
        bench_fsync_ticks(records, workdir)
        if not args.no_victoria_metrics:
            from servers import VictoriaMetricsServer

            with VictoriaMetricsServer(workdir / "vm") as vm:
                writer = InfluxV2Writer(vm.url, "token", "org", "bucket", timeout=30)
                bench_forwarder("VictoriaMetrics v2 API", writer, records, workdir, args.batch_size)
                shifted = make_records(args.records)  # same series, new run: fresh data for the raw writes
                bench_writer_only("VictoriaMetrics v2 API", writer, shifted, args.batch_size)
        if not args.no_influxdb1:
            from servers import InfluxDB1Server

            with InfluxDB1Server(workdir / "influxdb1") as influx:
                writer1 = InfluxV1Writer(influx.url, "bench", timeout=30)
                bench_forwarder("InfluxDB 1.6 /write", writer1, records, workdir, args.batch_size)


if __name__ == "__main__":
    main()
