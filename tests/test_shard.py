"""Sharding: instances with shards i/n of one fleet monitor disjoint series that cover it all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError
from core.sharding import parse_shard, shard_of
from core.sources.simulator import SimulatorSource

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("text", "expected"), [("0/1", (0, 1)), ("2/3", (2, 3)), ("0/4", (0, 4)), ("3/4", (3, 4))]
)
def test_shard_forms(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("4/4", "need 0 <= i < n"), ("-1/2", "need 0 <= i < n"), ("1", "not of the form i/n"), ("a/b", "i/n")],
)
def test_a_bad_shard_is_one_config_error(tmp_path, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"monitoring:\n  shard: '{text}'\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cfg, env={})
    assert "monitoring.shard" in str(info.value) and message in str(info.value)


def test_the_hash_is_stable_and_spreads_a_fleet():
    ids = [f"host=web-{i:04d}" for i in range(4000)]
    counts = [sum(shard_of(s, 4) == k for s in ids) for k in range(4)]
    assert min(counts) > 900 and sum(counts) == 4000
    assert shard_of("host=web-0001", 4) == shard_of("host=web-0001", 4)


@pytest.mark.slow
def test_three_daemons_split_a_fleet_without_overlap(tmp_path):
    series, count = 30, 3
    procs = []
    for index in range(count):
        work = tmp_path / f"shard{index}"
        work.mkdir()
        (work / "c.yaml").write_text(
            f"model:\n  kind: profile\nsimulator:\n  series: {series}\n"
            f"monitoring:\n  interval_seconds: 1\n  logs_dir: {work / 'logs'}\n  shard: '{index}/{count}'\n"
            "telemetry:\n  enabled: false\n"
        )
        cmd = [sys.executable, str(ROOT / "main.py"), "--mode", "monitor", "--config", "c.yaml"]
        procs.append(
            subprocess.Popen(
                [*cmd, "--duration", "4"], cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    seen: list[set[str]] = []
    for index, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        log = tmp_path / f"shard{index}" / "logs" / "metrics.jsonl"
        seen.append({json.loads(line)["series"] for line in log.read_text().splitlines() if line})
    everything = {ref.id for ref in SimulatorSource(series).refs.values()}
    assert all(seen), seen  # every shard got some of the 30
    assert sum(len(s) for s in seen) == len(set().union(*seen))  # disjoint
    assert set().union(*seen) == everything and len(everything) == series  # covering
    for index, ids in enumerate(seen):
        assert all(shard_of(sid, count) == index for sid in ids)
