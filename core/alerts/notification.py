"""What an alert says: one :class:`Notification` (firing or resolved) listing one or more alerts.

A notification explains itself: for each series its labels, value, expected value and band, score,
severity and what that severity means in expected false alarms per series per day, the rule, the
start time, the run length, the model age, and a Grafana link with the host and time range set.
Its ``id`` is stable and unique: receivers dedup on it (the outbox may resend after a crash).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "FALSE_ALARMS_PER_DAY",
    "Alert",
    "Notification",
    "camel_case",
    "dashboard_link",
    "iso",
    "notification_id",
]

# Expected false alarms per series per day at each severity, measured on the normal (unlabelled)
# rows of the NAB corpus with the default scoring settings (README, "Severity levels").
FALSE_ALARMS_PER_DAY: dict[str, float] = {"LOW": 1.10, "MEDIUM": 0.19, "HIGH": 0.07, "CRITICAL": 0.03}


def iso(ts: float) -> str:
    """Return epoch seconds as an RFC 3339 UTC time (``2026-01-02T03:04:05Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def camel_case(name: str) -> str:
    """Return a rule name as an Alertmanager alert name: ``cpu sustained-high`` -> ``CpuSustainedHigh``."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", name) if w]
    return "".join(w[:1].upper() + w[1:] for w in words) or "Anomaly"


def notification_id(*parts: object) -> str:
    """Return a stable id from the parts that make a notification unique."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:24]


def dashboard_link(base: str | None, host: str, start: float, end: float) -> str | None:
    """Return the Grafana dashboard URL with the host and a time range around the alert set."""
    if not base:
        return None
    margin = 900.0
    since, until = int((start - margin) * 1000), int((end + margin) * 1000)
    query = urlencode({"var-host": host, "from": since, "to": until})
    return f"{base}{'&' if '?' in base else '?'}{query}"


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


@dataclass(frozen=True)
class Alert:
    """One (rule, series) alert at the moment it fired or resolved."""

    rule: str
    kind: str
    series: str
    host: str
    labels: Mapping[str, str]
    severity: str
    started_at: float
    at: float
    points: int
    value: float | None = None
    expected: float | None = None
    lower: float | None = None
    upper: float | None = None
    score: float | None = None
    false_alarms_per_day: float | None = None
    model_age_seconds: float | None = None
    reason: str = ""
    ended_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the alert as plain JSON data (non-finite numbers become null)."""
        data = asdict(self)
        data["labels"] = dict(self.labels)
        for key in ("value", "expected", "lower", "upper", "score", "model_age_seconds"):
            data[key] = _num(data[key])
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Rebuild an alert written by :meth:`to_dict`."""
        return cls(**{**data, "labels": dict(data.get("labels", {}))})

    def line(self) -> str:
        """Return one human line: series, value against its band, score, severity, run."""
        parts = [f"{self.series}"]
        if self.value is not None:
            parts.append(f"value {self.value:.4g}")
        if self.expected is not None:
            band = ""
            if self.lower is not None and self.upper is not None:
                band = f", band {self.lower:.4g}..{self.upper:.4g}"
            parts.append(f"expected {self.expected:.4g}{band}")
        if self.score is not None:
            parts.append(f"score {self.score:.2f}")
        meaning = ""
        if self.false_alarms_per_day is not None:
            meaning = f" (~{self.false_alarms_per_day:g} false alarms/series/day at this level, NAB)"
        parts.append(f"severity {self.severity}{meaning}")
        parts.append(f"since {iso(self.started_at)} ({self.points} point(s))")
        if self.model_age_seconds is not None:
            parts.append(f"model age {self.model_age_seconds / 3600:.1f} h")
        if self.reason:
            parts.append(self.reason)
        return "; ".join(parts)


@dataclass(frozen=True)
class Notification:
    """One message to every channel: a firing or resolved transition of one or more alerts."""

    id: str
    status: str  # "firing" | "resolved"
    rule: str
    group: str
    created_at: float
    alerts: tuple[Alert, ...]
    severity: str
    dashboard_url: str | None = None
    runbook_url: str | None = None
    repeat: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def alertname(self) -> str:
        """Return the rule as an Alertmanager alert name (CamelCase)."""
        return camel_case(self.rule)

    @property
    def summary(self) -> str:
        """Return the one-line headline."""
        what = "RESOLVED" if self.status == "resolved" else "FIRING"
        series = ", ".join(a.series for a in self.alerts)
        again = f" (still firing, reminder {self.repeat})" if self.repeat else ""
        listed = "" if series == self.group else f": {series}"
        return f"[{what}] {self.rule} ({self.severity}) on {self.group}{listed}{again}"

    @property
    def description(self) -> str:
        """Return the full explanation, one line per alert, then the links."""
        lines = [a.line() for a in self.alerts]
        if self.dashboard_url:
            lines.append(f"dashboard: {self.dashboard_url}")
        if self.runbook_url:
            lines.append(f"runbook: {self.runbook_url}")
        lines.append(f"notification id: {self.id}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Return the notification as the JSON the webhook and alerts.jsonl carry."""
        return {
            "id": self.id,
            "status": self.status,
            "rule": self.rule,
            "alertname": self.alertname,
            "group": self.group,
            "severity": self.severity,
            "created_at": self.created_at,
            "time": iso(self.created_at),
            "summary": self.summary,
            "description": self.description,
            "dashboard_url": self.dashboard_url,
            "runbook_url": self.runbook_url,
            "repeat": self.repeat,
            "alerts": [a.to_dict() for a in self.alerts],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Notification:
        """Rebuild a notification written by :meth:`to_dict` (the outbox's files)."""
        return cls(
            id=data["id"],
            status=data["status"],
            rule=data["rule"],
            group=data["group"],
            created_at=float(data["created_at"]),
            alerts=tuple(Alert.from_dict(a) for a in data["alerts"]),
            severity=data["severity"],
            dashboard_url=data.get("dashboard_url"),
            runbook_url=data.get("runbook_url"),
            repeat=int(data.get("repeat", 0)),
        )
