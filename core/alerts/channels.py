"""The channels: log (``alerts.jsonl`` + the application log), webhook, email (SMTP), Alertmanager v2.

Each ``send`` either delivers or raises :class:`~core.errors.DeliveryError` (the outbox retries it;
``permanent=True`` for an answer that retrying cannot change, e.g. HTTP 400). Every HTTP request
ignores proxy settings of the environment only when asked to (``trust_env``), and carries the
notification id so that receivers can dedup a resend.
"""

from __future__ import annotations

import json
import os
import smtplib
import threading
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import requests
from loguru import logger

from core.alerts.notification import Notification, iso
from core.alerts.rules import alertmanager_severity
from core.errors import DeliveryError
from core.fsutil import atomic_write_json
from core.redact import redact_url

__all__ = ["AlertmanagerChannel", "EmailChannel", "LogChannel", "WebhookChannel"]


def _post(session: requests.Session, url: str, payload: Any, headers: dict[str, str], timeout: float) -> None:
    try:
        response = session.post(url, json=payload, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise DeliveryError(f"{redact_url(url)}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        permanent = response.status_code in (400, 404, 405, 413, 422)
        raise DeliveryError(
            f"{redact_url(url)}: HTTP {response.status_code} {response.text[:200]}", permanent=permanent
        )


class LogChannel:
    """Append each notification to ``<logs>/alerts.jsonl`` (fsynced) and log its headline."""

    name = "log"

    def __init__(self, logs_dir: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(logs_dir) / "alerts.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync

    def send(self, notification: Notification) -> None:
        """Append one JSON line, then log the headline and explanation."""
        line = json.dumps(notification.to_dict(), separators=(",", ":"), allow_nan=False) + "\n"
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                if self.fsync:
                    os.fsync(handle.fileno())
        except OSError as exc:
            raise DeliveryError(f"{self.path}: {exc.strerror}") from exc
        text = notification.description.replace("\n", " | ")
        log = logger.info if notification.status == "resolved" else logger.warning
        log(f"ALERT {notification.summary}: {text}")

    def maintain(self, now: float) -> None:
        """Nothing periodic."""


class WebhookChannel:
    """POST the notification as JSON (or Slack's ``{"text": ...}``), with an optional bearer token."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        slack: bool = False,
        token: str | None = None,
        timeout: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        self.url = url
        self.slack = slack
        self.token = token
        self.timeout = timeout
        self.session = session or requests.Session()

    def payload(self, n: Notification) -> dict[str, Any]:
        """Return the JSON body: the whole notification, or Slack's text payload."""
        if self.slack:
            return {"text": f"*{n.summary}*\n{n.description}"}
        return n.to_dict()

    def send(self, notification: Notification) -> None:
        """POST once; the ``Idempotency-Key`` header is the notification id."""
        headers = {"Idempotency-Key": notification.id, "Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        _post(self.session, self.url, self.payload(notification), headers, self.timeout)

    def maintain(self, now: float) -> None:
        """Nothing periodic."""


class EmailChannel:
    """Send a plain-text mail per notification over SMTP (STARTTLS and login when configured)."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        to: tuple[str, ...],
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.sender, self.to = host, port, sender, to
        self.starttls, self.username, self.password, self.timeout = starttls, username, password, timeout

    def message(self, n: Notification) -> EmailMessage:
        """Return the mail: subject = the headline, body = the explanation, Message-ID = the id."""
        msg = EmailMessage()
        msg["Subject"] = n.summary
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        msg["Message-ID"] = f"<{n.id}@anomaly-detector>"
        msg["Date"] = iso(n.created_at)
        msg.set_content(n.description + "\n")
        return msg

    def send(self, notification: Notification) -> None:
        """Connect, optionally STARTTLS and log in, send, quit."""
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username and self.password:
                    smtp.login(self.username, self.password)
                smtp.send_message(self.message(notification))
        except smtplib.SMTPAuthenticationError as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: login refused ({exc.smtp_code})") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}") from exc

    def maintain(self, now: float) -> None:
        """Nothing periodic."""


class AlertmanagerChannel:
    """Alertmanager v2: POST ``/api/v2/alerts``; firing alerts are re-sent every ``resend`` seconds.

    A firing alert is posted with ``endsAt`` three re-send intervals ahead (Alertmanager resolves it
    by itself if the daemon dies); a resolved one with ``endsAt`` = its end. The set of firing alerts
    is kept in ``state_file`` so that a restarted daemon goes on re-sending them.
    """

    name = "alertmanager"

    def __init__(
        self,
        url: str,
        *,
        resend: float = 60.0,
        timeout: float = 5.0,
        state_file: str | Path | None = None,
        session: requests.Session | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/api/v2/alerts"
        self.resend = resend
        self.timeout = timeout
        self.session = session or requests.Session()
        self.state_file = Path(state_file) if state_file else None
        self.active: dict[str, dict[str, Any]] = {}
        self.last_sent = 0.0
        self._lock = threading.Lock()
        if self.state_file is not None and self.state_file.is_file():
            try:
                self.active = json.loads(self.state_file.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.active = {}

    def alerts(self, n: Notification, now: float) -> list[dict[str, Any]]:
        """Return the v2 alert objects of a notification (one per series)."""
        out = []
        for a in n.alerts:
            labels = {
                "alertname": n.alertname,
                "severity": alertmanager_severity(a.severity),
                "series": a.series,
                "host": a.host,
                "rule": a.rule,
                **{k: v for k, v in a.labels.items() if k not in ("alertname", "severity")},
            }
            annotations = {
                "summary": n.summary,
                "description": a.line(),
                "dashboard_url": n.dashboard_url or "",
                "runbook_url": n.runbook_url or "",
                "notification_id": n.id,
            }
            ends = a.ended_at if n.status == "resolved" and a.ended_at else now + 3 * self.resend
            alert = {
                "labels": labels,
                "annotations": annotations,
                "startsAt": iso(a.started_at),
                "endsAt": iso(max(ends, a.started_at + 1)),
            }
            if n.dashboard_url:
                alert["generatorURL"] = n.dashboard_url
            out.append(alert)
        return out

    def send(self, notification: Notification) -> None:
        """POST the alerts; remember firing ones for re-sending, forget resolved ones."""
        now = _now()
        alerts = self.alerts(notification, now)
        _post(self.session, self.url, alerts, {}, self.timeout)
        with self._lock:
            for alert in alerts:
                key = json.dumps(alert["labels"], sort_keys=True)
                if notification.status == "resolved":
                    self.active.pop(key, None)
                else:
                    self.active[key] = alert
            self._save()

    def maintain(self, now: float) -> None:
        """Re-send the firing alerts every ``resend`` seconds, as Alertmanager expects."""
        with self._lock:
            if not self.active or now - self.last_sent < self.resend:
                return
            alerts = [{**a, "endsAt": iso(now + 3 * self.resend)} for a in self.active.values()]
            self.last_sent = now  # a failed re-send waits for the next interval too (no log flood)
        _post(self.session, self.url, alerts, {}, self.timeout)

    def _save(self) -> None:
        if self.state_file is not None:
            atomic_write_json(self.state_file, self.active, indent=None, durable=False)


def _now() -> float:
    import time

    return time.time()
