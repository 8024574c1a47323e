"""Issue 15, check 3: every InfluxQL query of the 1.x dashboard returns rows from a real InfluxDB 1.6.

The monitor runs as a subprocess on the simulator (two hosts, a spike injected so that there are
anomalies) and writes to InfluxDB 1.6 through the v1 API. Then each query of the committed
``grafana/dashboards/anomaly-influxql.json`` (variables first, as Grafana does) is run with Grafana's
macros expanded: ``$timeFilter``, ``$__interval``, ``${metric}`` and ``${host:regex}``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from servers import free_port, unique_name
from support import dashboards

ROOT = Path(__file__).resolve().parents[1]
BOARD = ROOT / dashboards.INFLUXQL_DASHBOARD_PATH
pytestmark = [pytest.mark.servers, pytest.mark.slow]

CONFIG = """\
model:
  kind: profile
simulator:
  series: 2
  inject:
    - kind: spike
      start_after_s: 4
      duration_s: 10
      magnitude: 60
monitoring:
  quality:
    write_interval_seconds: 5.0
"""


def _rows(answer: dict[str, Any]) -> list[list[Any]]:
    return [row for result in answer["results"] for s in result.get("series", []) for row in s["values"]]


def _expand(query: str, panel: dict[str, Any], variables: dict[str, str]) -> str:
    """Expand Grafana's InfluxQL macros as the datasource does for this panel."""
    window = panel.get("timeFrom", "1h")
    text = query.replace("$timeFilter", f"time > now() - {window}").replace("$__interval", "2s")
    for name, value in variables.items():
        text = text.replace(f"${{{name}:regex}}", value).replace(f"${{{name}}}", value)
    assert "$" not in text.replace("$/", ""), f"a macro is left in {text!r}"
    return text


def test_every_influxql_panel_query_returns_rows(tmp_path, influxdb1):
    database = unique_name("board")
    (tmp_path / "c.yaml").write_text(CONFIG)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INFLUXDB_", "PROMETHEUS_"))}
    env.update(
        LOGS_DIR=str(tmp_path / "logs"),
        TELEMETRY_PORT=str(free_port()),
        INFLUXDB_URL=influxdb1.url,
        INFLUXDB_API="v1",
        INFLUXDB_DATABASE=database,
    )
    cmd = [sys.executable, str(ROOT / "main.py"), "--mode", "monitor", "--config", "c.yaml"]
    cmd += ["--monitoring-interval", "1", "--duration", "25"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    scored = [json.loads(line) for line in (tmp_path / "logs/metrics.jsonl").read_text().splitlines()]
    assert any(r["is_anomaly"] for r in scored), "the injected spike must give anomalies to show"

    board = json.loads(BOARD.read_text())
    values: dict[str, str] = {}
    for variable in board["templating"]["list"]:
        query = _expand(variable["query"], {}, values)
        found = sorted({row[1] for row in _rows(influxdb1.query(query, db=database))})
        assert found, f"variable {variable['name']}: {query!r} returned nothing"
        # Grafana's regex format for a multi-value selection: (a|b), values regex-escaped.
        values[variable["name"]] = (
            "(" + "|".join(re.escape(v) for v in found) + ")" if variable["multi"] else found[0]
        )
    assert values["metric"] == "cpu" and values["host"].count("|") == 1

    checked = 0
    deadline = time.monotonic() + 15  # the quality forwarder may still be sending its last rows
    for panel in board["panels"]:
        for target in panel["targets"]:
            query = _expand(target["query"], panel, values)
            while True:
                rows = _rows(influxdb1.query(query, db=database, epoch="ms"))
                if rows or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert rows, f"panel {panel['title']!r} {target['refId']}: {query!r} returned no rows"
            checked += 1
    assert checked == 13
