"""The alerting demo end to end: ``main.py --mode monitor --config examples/alerting-demo.yaml`` as a
subprocess, with real receivers on loopback (a webhook, aiosmtpd, Prometheus Alertmanager).

The first test runs the shipped demo as it is (incident 20 s after start, for 30 s). The outage and
kill -9 tests run the same file with the incident moved earlier and made shorter (the design under
test is the same; the wall time is not).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import AlertmanagerServer, SmtpReceiver, WebhookReceiver, free_port, http_request

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "alerting-demo.yaml"

pytestmark = [pytest.mark.slow, pytest.mark.servers]


def _env(hook: str, am: str, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(ALERT_WEBHOOK_URL=hook, ALERTMANAGER_URL=am, SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port))
    env.pop("PROMETHEUS_URL", None)
    return env


def _monitor(cwd: Path, config: Path, env: dict[str, str], duration: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--mode", "monitor", "--config", str(config)]
        + ["--duration", str(duration)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _faster_demo(tmp_path: Path, start_after: float, duration: float) -> Path:
    config = yaml.safe_load(DEMO.read_text())
    config["simulator"]["inject"] = [
        {"kind": "spike", "start_after_s": start_after, "duration_s": duration, "magnitude": 40}
    ]
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _incident_start(logs: Path) -> float:
    """Return the grid time of the first injected point (a jump of more than 30 points)."""
    rows = _jsonl(logs / "metrics.jsonl")
    for before, after in zip(rows, rows[1:], strict=False):
        if after["value"] - before["value"] > 30:
            return float(after["ts"])
    raise AssertionError("no injected incident in metrics.jsonl")


def test_demo_all_four_channels(
    tmp_path: Path, alertmanager: AlertmanagerServer, smtp_receiver: SmtpReceiver
) -> None:
    with WebhookReceiver() as hook:
        proc = _monitor(tmp_path, DEMO, _env(f"{hook.url}/hook", alertmanager.url, smtp_receiver.port), 60)
        listed: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            alerts = http_request("GET", f"{alertmanager.url}/api/v2/alerts").json()
            if alerts and not listed:
                listed = alerts
            time.sleep(1.0)
        out = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, out
        requests = hook.requests
    logs = tmp_path / "logs"
    start = _incident_start(logs)
    statuses = [r.json["status"] for r in requests]
    assert statuses == ["firing", "resolved"], out
    firing, resolved = (r.json for r in requests)
    assert firing["id"] != resolved["id"]
    assert requests[0].headers["Idempotency-Key"] == firing["id"]
    assert start <= firing["created_at"] <= start + 2.0  # within two 1 s intervals of the start
    assert resolved["created_at"] >= start + 30.0  # after the incident ended
    (alert,) = firing["alerts"]
    assert alert["series"] == "host=web-01" and alert["severity"] in ("HIGH", "CRITICAL")
    assert alert["value"] > alert["upper"] and alert["false_alarms_per_day"] in (0.07, 0.03)
    assert "var-host=web-01" in firing["dashboard_url"]
    # Alertmanager listed it while firing, with our labels and annotations.
    assert listed, "Alertmanager never listed the alert"
    labels, notes = listed[0]["labels"], listed[0]["annotations"]
    assert labels["alertname"] == "CpuAnomalyHigh" and labels["severity"] in ("critical", "warning")
    assert set(notes) >= {"summary", "description", "dashboard_url", "runbook_url"}
    assert notes["runbook_url"] == "https://example.com/runbooks/cpu-anomaly"
    mails = smtp_receiver.wait_for(2, timeout=5)
    assert [m.subject.split("]")[0] for m in mails] == ["[FIRING", "[RESOLVED"]
    assert "value" in mails[0].body and firing["id"] in mails[0].body
    lines = _jsonl(logs / "alerts.jsonl")
    assert [(x["status"], x["id"]) for x in lines] == [("firing", firing["id"]), ("resolved", resolved["id"])]
    assert not list((logs / "alerts" / "outbox").glob("*.json"))  # everything delivered


def test_webhook_down_at_first_gets_each_notification_once(
    tmp_path: Path, alertmanager: AlertmanagerServer, smtp_receiver: SmtpReceiver
) -> None:
    port = free_port()
    config = _faster_demo(tmp_path, start_after=8, duration=6)
    proc = _monitor(
        tmp_path, config, _env(f"http://127.0.0.1:{port}/hook", alertmanager.url, smtp_receiver.port), 34
    )
    time.sleep(20)  # the firing was decided (log channel) while the webhook was down
    firing_logged = [x["status"] for x in _jsonl(tmp_path / "logs" / "alerts.jsonl")]
    assert "firing" in firing_logged
    with WebhookReceiver(port=port) as hook:
        out = proc.communicate(timeout=60)[0]
        assert proc.returncode == 0, out
        got = [r.json for r in hook.requests]
    assert [g["status"] for g in got] == ["firing", "resolved"], out
    assert len({g["id"] for g in got}) == 2


def _webhook_attempted(logs: Path) -> bool:
    """Return whether an outbox entry records at least one webhook attempt."""
    for entry in (logs / "alerts" / "outbox").glob("*.json"):
        try:
            state = json.loads(entry.read_text())["channels"]["webhook"]
        except (OSError, ValueError, KeyError):
            continue  # being replaced right now
        if state.get("attempts", 0) >= 1:
            return True
    return False


def test_kill_9_while_pending_then_restart_delivers_once(
    tmp_path: Path, alertmanager: AlertmanagerServer, smtp_receiver: SmtpReceiver
) -> None:
    port = free_port()
    config = _faster_demo(tmp_path, start_after=8, duration=60)
    env = _env(f"http://127.0.0.1:{port}/hook", alertmanager.url, smtp_receiver.port)
    proc = _monitor(tmp_path, config, env, 60)
    logs = tmp_path / "logs"
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not _jsonl(logs / "alerts.jsonl"):
        time.sleep(0.2)
    (decided,) = _jsonl(logs / "alerts.jsonl")
    # Kill once the webhook's first (failed) attempt is on disk: the log channel is written before it.
    while time.monotonic() < deadline and not _webhook_attempted(logs):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    pending = list((logs / "alerts" / "outbox").glob("*.json"))
    assert len(pending) == 1 and decided["id"] in pending[0].name
    state = json.loads(pending[0].read_text())["channels"]["webhook"]
    assert state["state"] == "pending" and state["attempts"] >= 1
    with WebhookReceiver(port=port) as hook:
        again = _monitor(tmp_path, config, env, 6)
        out = again.communicate(timeout=60)[0]
        assert again.returncode == 0, out
        got = [r.json for r in hook.requests]
    assert [(g["status"], g["id"]) for g in got] == [("firing", decided["id"])], out
    assert not list((logs / "alerts" / "outbox").glob("*.json"))
    # The log channel had it before the kill: not written twice.
    assert [x["id"] for x in _jsonl(logs / "alerts.jsonl")] == [decided["id"]]


@pytest.mark.parametrize(
    ("section", "key", "fix"),
    [
        (
            "email",
            "password",
            "set ALERT_SMTP_PASSWORD in the environment or name a file holding it in "
            "alerts.channels.email.password_file",
        ),
        (
            "webhook",
            "token",
            "set ALERT_WEBHOOK_TOKEN in the environment or name a file holding it in "
            "alerts.channels.webhook.token_file",
        ),
    ],
)
def test_inline_secret_is_refused_with_one_line(tmp_path: Path, section: str, key: str, fix: str) -> None:
    config = yaml.safe_load(DEMO.read_text())
    config["alerts"]["channels"][section][key] = "hunter2"
    path = tmp_path / "secret.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "main.py"),
            "--mode",
            "monitor",
            "--config",
            str(path),
            "--duration",
            "5",
        ],
        cwd=tmp_path,
        env=_env("http://127.0.0.1:1/hook", "http://127.0.0.1:1", 25),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {path}: alerts.channels.{section}.{key}: secrets are not read from the config file; {fix}\n"
    )
    assert "hunter2" not in result.stdout + result.stderr
    assert not (tmp_path / "logs").exists()
