"""Alerting: rules over scored records, a durable outbox, and the channels behind it.

    rules.py         RuleEngine: records of a tick -> notifications (pure: lifecycle, dedup, grouping)
    notification.py  Notification / Alert: what a message says (self-explaining, with a stable id)
    outbox.py        Outbox: each notification fsynced on disk, then delivered by a background thread
    channels.py      log (alerts.jsonl), webhook (JSON or Slack), email (SMTP), Alertmanager v2
    budget.py        the alert budget: the same engine over an evaluation's replayed records

:class:`Alerting` is the monitor's observer (``core.protocols.TickObserver``): each tick it feeds the
engine and puts the notifications decided into the outbox; sending never runs on the scoring path.
:func:`open_alerting` builds it from the settings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loguru import logger

from core.alerts.channels import AlertmanagerChannel, EmailChannel, LogChannel, WebhookChannel
from core.alerts.notification import Notification
from core.alerts.outbox import Channel, Outbox
from core.alerts.rules import RuleEngine
from core.records import ScoredRecord

if TYPE_CHECKING:
    from core.config import AlertSettings
    from core.quality import QualitySnapshot

__all__ = ["Alerting", "Notification", "Outbox", "RuleEngine", "build_channels", "open_alerting"]


class Alerting:
    """Feed each tick to the rules engine and the decided notifications to the outbox."""

    def __init__(
        self,
        engine: RuleEngine,
        outbox: Outbox,
        *,
        backlog: Callable[[], float] = lambda: 0.0,
        flush_timeout: float = 10.0,
    ) -> None:
        self.engine = engine
        self.outbox = outbox
        self.backlog = backlog
        self.flush_timeout = flush_timeout
        self.decided = 0
        self._errors: dict[str, int] = {}
        self._lock = threading.Lock()

    def on_tick(self, now: float, seconds: float, records: Sequence[ScoredRecord]) -> None:
        """Evaluate the rules over this tick; notifications go to disk, then to the worker."""
        with self._lock:
            errors, self._errors = self._errors, {}
        try:
            backlog = float(self.backlog())
        except Exception:  # a stats callable must never stop alerting
            backlog = 0.0
        for n in self.engine.observe(now, records, errors, backlog):
            self.outbox.put(n)
            self.decided += 1

    def on_missed(self, count: int) -> None:
        """Missed ticks say nothing the no-data rules do not see themselves."""

    def on_error(self, kind: str, exc: BaseException) -> None:
        """Count a failed poll or write of the current tick (source / health rules)."""
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1

    def close(self, now: float) -> bool:
        """Put what a group window still holds, flush the outbox (bounded), stop its thread."""
        for n in self.engine.close(now):
            self.outbox.put(n)
            self.decided += 1
        return self.outbox.close(self.flush_timeout)


def build_channels(settings: AlertSettings, logs_dir: str | Path) -> list[Channel]:
    """Return the configured channels (log, webhook, email, Alertmanager)."""
    c = settings.channels
    channels: list[Channel] = []
    if c.log:
        channels.append(LogChannel(logs_dir))
    if c.webhook.url:
        token = c.webhook.token.get_secret_value() if c.webhook.token else None
        channels.append(
            WebhookChannel(
                c.webhook.url, slack=c.webhook.slack, token=token, timeout=c.webhook.timeout_seconds
            )
        )
    if c.email.host:
        password = c.email.password.get_secret_value() if c.email.password else None
        channels.append(
            EmailChannel(
                c.email.host,
                c.email.port,
                sender=c.email.sender,
                to=c.email.to or ("root@localhost",),
                starttls=c.email.starttls,
                username=c.email.username,
                password=password,
                timeout=c.email.timeout_seconds,
            )
        )
    if c.alertmanager.url:
        channels.append(
            AlertmanagerChannel(
                c.alertmanager.url,
                resend=c.alertmanager.resend_seconds,
                timeout=c.alertmanager.timeout_seconds,
                state_file=Path(logs_dir) / "alerts" / "alertmanager_active.json",
            )
        )
    return channels


def open_alerting(
    settings: AlertSettings,
    logs_dir: str | Path,
    *,
    model_age: Callable[[str, float], float | None] | None = None,
    backlog: Callable[[], float] = lambda: 0.0,
    quality: Callable[[float], QualitySnapshot] | None = None,
) -> Alerting | None:
    """Return the alerting of the daemon (its outbox thread started), or None without rules."""
    if not settings.enabled or not settings.rules:
        logger.info("alerting: no rules configured (alerts.rules); the daemon raises no alert itself")
        return None
    channels = build_channels(settings, logs_dir)
    outbox = Outbox(
        Path(logs_dir) / "alerts" / "outbox",
        channels,
        max_attempts=settings.max_attempts,
        max_backoff=settings.max_backoff_seconds,
        max_age=settings.max_age_hours * 3600.0,
    ).start()
    names = ", ".join(ch.name for ch in channels) or "none"
    logger.info(f"alerting: {len(settings.rules)} rule(s), channels: {names}")
    engine = RuleEngine(settings, model_age=model_age, quality=quality)
    return Alerting(engine, outbox, backlog=backlog, flush_timeout=settings.flush_timeout_seconds)
