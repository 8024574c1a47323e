"""The outbox and the channels against real receivers on loopback (webhook, aiosmtpd, Alertmanager)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from servers import AlertmanagerServer, SmtpReceiver, WebhookReceiver, http_request

from core.alerts import Outbox, build_channels
from core.alerts.channels import AlertmanagerChannel, EmailChannel, LogChannel, WebhookChannel
from core.alerts.notification import Alert, Notification
from core.config import AlertSettings, load_settings
from core.errors import ConfigError
from core.telemetry import Telemetry

T0 = time.time() - 120


def notification(status: str = "firing", ident: str = "n1", series: str = "host=web-01") -> Notification:
    alert = Alert(
        rule="cpu high",
        kind="severity",
        series=series,
        host="web-01",
        labels={"host": "web-01"},
        severity="CRITICAL",
        started_at=T0,
        at=T0 + 60,
        points=3,
        value=91.0,
        expected=40.0,
        lower=30.0,
        upper=50.0,
        score=6.0,
        false_alarms_per_day=0.03,
        ended_at=T0 + 90 if status == "resolved" else None,
    )
    return Notification(
        id=ident,
        status=status,
        rule="cpu high",
        group="host=web-01",
        created_at=T0 + 60,
        alerts=(alert,),
        severity="CRITICAL",
        dashboard_url="http://grafana/d/x?var-host=web-01",
        runbook_url="https://runbooks/cpu",
    )


def test_webhook_down_then_up_is_delivered_once(tmp_path: Path) -> None:
    with WebhookReceiver(status_code=503) as hook:
        box = Outbox(
            tmp_path / "outbox", [WebhookChannel(f"{hook.url}/h")], base_backoff=0.05, max_backoff=0.1
        )
        box.put(notification())
        box.put(notification())  # the same id again: still one delivery
        box.deliver_once()
        assert box.stats()["webhook"] == {"sent": 0, "failed": 1, "dropped": 0, "pending": 1}
        hook.status_code = 200
        box.start()
        assert box.flush(5.0)
        box.close(1.0)
        ids = [r.json["id"] for r in hook.requests]
    assert ids == ["n1", "n1"]  # one refused (503), one delivered
    assert box.stats()["webhook"] == {"sent": 1, "failed": 1, "dropped": 0, "pending": 0}
    assert not list((tmp_path / "outbox").glob("*.json"))


def test_refused_for_good_is_dropped_and_counted(tmp_path: Path) -> None:
    with WebhookReceiver(status_code=400) as hook:
        box = Outbox(tmp_path / "outbox", [WebhookChannel(f"{hook.url}/h")])
        box.put(notification())
        box.deliver_once()
    assert box.stats()["webhook"] == {"sent": 0, "failed": 1, "dropped": 1, "pending": 0}


def test_a_new_process_delivers_what_the_last_one_left(tmp_path: Path) -> None:
    dead = Outbox(tmp_path / "outbox", [LogChannel(tmp_path)])
    dead.put(notification())  # decided on disk, never sent: the process "died" here
    box = Outbox(tmp_path / "outbox", [LogChannel(tmp_path)]).start()
    assert box.flush(5.0)
    box.close(1.0)
    lines = (tmp_path / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["n1"]


def test_slack_payload_and_token(tmp_path: Path) -> None:
    with WebhookReceiver() as hook:
        WebhookChannel(f"{hook.url}/slack", slack=True, token="t0k").send(notification())
        (req,) = hook.requests
    assert set(req.json) == {"text"} and req.json["text"].startswith("*[FIRING] cpu high (CRITICAL)")
    assert req.headers["Authorization"] == "Bearer t0k"


def test_email(smtp_receiver: SmtpReceiver) -> None:
    channel = EmailChannel(
        smtp_receiver.host, smtp_receiver.port, sender="ad@example.com", to=("ops@example.com",)
    )
    channel.send(notification())
    (mail,) = smtp_receiver.wait_for(1)
    assert mail.subject == "[FIRING] cpu high (CRITICAL) on host=web-01"
    assert mail.rcpt_tos == ["ops@example.com"]
    assert "value 91; expected 40, band 30..50; score 6.00" in mail.body
    assert "runbook: https://runbooks/cpu" in mail.body
    assert mail.message["Message-ID"] == "<n1@anomaly-detector>"


def test_alertmanager_lists_while_firing_and_ends_on_resolve(
    tmp_path: Path, alertmanager: AlertmanagerServer
) -> None:
    channel = AlertmanagerChannel(alertmanager.url, resend=2.0, state_file=tmp_path / "am.json")
    channel.send(notification())
    (listed,) = http_request("GET", f"{alertmanager.url}/api/v2/alerts").json()
    assert listed["labels"]["alertname"] == "CpuHigh" and listed["labels"]["severity"] == "critical"
    assert listed["annotations"]["dashboard_url"] == "http://grafana/d/x?var-host=web-01"
    assert listed["status"]["state"] == "active"
    first_end = listed["endsAt"]
    time.sleep(2.1)
    channel.maintain(time.time())  # re-sent while firing: endsAt moves on
    (again,) = http_request("GET", f"{alertmanager.url}/api/v2/alerts").json()
    assert again["endsAt"] > first_end
    assert json.loads((tmp_path / "am.json").read_text())
    channel.send(notification("resolved", "n2"))
    active = http_request("GET", f"{alertmanager.url}/api/v2/alerts", params={"active": "true"}).json()
    assert [a for a in active if a["status"]["state"] == "active"] == []
    assert json.loads((tmp_path / "am.json").read_text()) == {}


def test_outbox_counters_in_metrics(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox", [LogChannel(tmp_path)])
    box.put(notification())
    telemetry = Telemetry()
    telemetry.watch_alerts(box.stats)
    text = telemetry.render().decode()
    assert 'anomaly_detector_alert_outbox_pending{channel="log"} 1.0' in text
    box.deliver_once()
    text = telemetry.render().decode()
    assert 'anomaly_detector_alert_notifications_total{channel="log",result="sent"} 1.0' in text
    assert 'anomaly_detector_alert_outbox_pending{channel="log"} 0.0' in text


def test_endpoints_and_secrets_come_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    secret = tmp_path / "token"
    secret.write_text("from-file\n")
    config.write_text(
        "alerts:\n  rules: [{name: r}]\n  channels:\n"
        "    webhook: {url: '${HOOK}/x', token_file: " + str(secret) + "}\n"
        "    email: {host: '${SMTP_HOST:-localhost}', port: '${SMTP_PORT}'}\n"
    )
    s = load_settings(config, env={"HOOK": "http://h:1", "SMTP_PORT": "2525", "ALERT_SMTP_PASSWORD": "pw"})
    c = s.alerts.channels
    assert c.webhook.url == "http://h:1/x" and c.email.host == "localhost" and c.email.port == 2525
    assert c.webhook.token is not None and c.webhook.token.get_secret_value() == "from-file"
    assert c.email.password is not None and c.email.password.get_secret_value() == "pw"
    assert "from-file" not in json.dumps(s.redacted()) and "pw" not in json.dumps(s.redacted()["alerts"])
    with pytest.raises(ConfigError) as err:
        load_settings(config, env={"HOOK": "http://h:1"})
    assert str(err.value) == (
        f"{config}: alerts.channels.email.port: environment variable SMTP_PORT is not set; "
        "export SMTP_PORT=... or remove it"
    )
    names = [ch.name for ch in build_channels(s.alerts, tmp_path)]
    assert names == ["log", "webhook", "email"]
    assert build_channels(AlertSettings(), tmp_path)[0].name == "log"


def test_a_channel_url_that_is_not_http_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={"ALERT_WEBHOOK_URL": "localhost:9"})
    assert str(err.value) == (
        "environment variable ALERT_WEBHOOK_URL: 'localhost:9' is not an http(s) URL; "
        "use e.g. https://hooks.example.com/alerts"
    )
