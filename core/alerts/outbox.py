"""The durable outbox: a decided notification is on disk before any channel sees it.

    <logs>/alerts/outbox/<created_ms>-<id>.json
        {"notification": {...}, "channels": {"webhook": {"state": "pending", "attempts": 2,
         "next_at": 1767312345.6, "error": "HTTP 503"}, "log": {"state": "sent", ...}}}

``put`` writes the file atomically and fsyncs it (``core.fsutil.atomic_write_json``), then wakes the
worker thread; the scoring loop never waits for a receiver. The worker delivers each pending
(notification, channel) pair in creation order (per channel, nothing overtakes a pending one),
records the result in the file (again atomically),
and retries failures with exponential backoff up to ``max_backoff``; a pair that failed
``max_attempts`` times, is older than ``max_age`` or was refused for good (``permanent``) is
dropped and counted. A file whose every channel is done is removed.

After ``kill -9`` the next process finds the files and delivers what is still pending: nothing
decided is lost. The state is recorded after the send, so a kill in between resends that one pair
(at least once); receivers dedup on the notification ``id`` (the webhook's ``Idempotency-Key``
header, the mail's Message-ID, the same Alertmanager labels).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

from core.alerts.notification import Notification
from core.errors import DeliveryError
from core.fsutil import atomic_write_json

__all__ = ["Channel", "Outbox"]


class Channel(Protocol):
    """One way out for notifications (log, webhook, email, Alertmanager)."""

    name: str

    def send(self, notification: Notification) -> None:
        """Deliver one notification or raise :class:`~core.errors.DeliveryError`."""
        ...

    def maintain(self, now: float) -> None:
        """Do periodic work (Alertmanager re-sends firing alerts); errors are the channel's own."""
        ...


class Outbox:
    """Notifications on disk, delivered by one background thread to every channel."""

    def __init__(
        self,
        directory: str | Path,
        channels: Sequence[Channel],
        *,
        max_attempts: int = 1000,
        max_backoff: float = 60.0,
        max_age: float = 86400.0,
        base_backoff: float = 0.5,
        clock: Callable[[], float] = time.time,
        fsync: bool = True,
    ) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.channels = {c.name: c for c in channels}
        self.max_attempts = max_attempts
        self.max_backoff = max_backoff
        self.max_age = max_age
        self.base_backoff = base_backoff
        self.clock = clock
        self.fsync = fsync
        self.counts: dict[str, dict[str, int]] = {
            name: {"sent": 0, "failed": 0, "dropped": 0} for name in self.channels
        }
        self._wake = threading.Condition()
        self._pass = threading.RLock()  # one pass over the files at a time (worker, flush, restart)
        self._stop = False
        self._busy = False
        self._thread: threading.Thread | None = None
        for tmp in self.dir.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)  # a put interrupted by a kill: never decided durably

    # -- the loop's side ---------------------------------------------------------------------------

    def put(self, notification: Notification) -> Path:
        """Write the notification durably with every channel pending; the worker sends it."""
        path = self.dir / f"{int(notification.created_at * 1000):015d}-{notification.id}.json"
        if not path.exists():
            entry = {
                "notification": notification.to_dict(),
                "channels": {
                    name: {"state": "pending", "attempts": 0, "next_at": 0.0, "error": None}
                    for name in self.channels
                },
            }
            atomic_write_json(path, entry, indent=None, durable=self.fsync)
        with self._wake:
            self._wake.notify_all()
        return path

    def start(self) -> Outbox:
        """Start the delivery thread (it first delivers what an earlier process left pending)."""
        pending = self._retry_now()
        if pending:
            logger.info(f"alert outbox: {pending} delivery(ies) left pending by an earlier run; sending now")
        self._thread = threading.Thread(target=self._run, name="alert-outbox", daemon=True)
        self._thread.start()
        return self

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until nothing is due now; return whether nothing is pending."""
        deadline = time.monotonic() + timeout
        self._retry_now()
        with self._wake:
            self._wake.notify_all()
        while time.monotonic() < deadline:
            if not self._files():
                return True
            if self._thread is None or not self._thread.is_alive():
                self.deliver_once()
            time.sleep(0.05)
        return not self._files()

    def close(self, timeout: float = 10.0) -> bool:
        """Flush (bounded by ``timeout``), then stop the thread; what is unsent stays on disk."""
        done = self.flush(timeout)
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(max(1.0, timeout))
        left = self.pending()
        if left:
            logger.warning(
                f"alert outbox: {left} delivery(ies) pending in {self.dir}; sent on the next start"
            )
        return done

    def _retry_now(self) -> int:
        """Make every pending delivery due now (at start and at shutdown a receiver may be back)."""
        n = 0
        with self._pass:  # the worker rewrites these files too: never two writers of one file
            for path in self._files():
                entry = _read(path)
                if entry is None:
                    continue
                due = [c for c in entry["channels"].values() if c["state"] == "pending"]
                n += len(due)
                if any(c["next_at"] for c in due):
                    for c in due:
                        c["next_at"] = 0.0
                    atomic_write_json(path, entry, indent=None, durable=self.fsync)
        return n

    def pending(self) -> int:
        """Return how many (notification, channel) deliveries are still pending."""
        n = 0
        for path in self._files():
            entry = _read(path)
            if entry is not None:
                n += sum(1 for c in entry["channels"].values() if c["state"] == "pending")
        return n

    def stats(self) -> dict[str, dict[str, int]]:
        """Return per channel: sent, failed (attempts), dropped, pending (for /metrics)."""
        pending = {name: 0 for name in self.channels}
        for path in self._files():
            entry = _read(path)
            for name, c in (entry or {}).get("channels", {}).items():
                if c["state"] == "pending" and name in pending:
                    pending[name] += 1
        return {name: {**self.counts[name], "pending": pending[name]} for name in self.channels}

    # -- the worker --------------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        return sorted(self.dir.glob("*.json"))

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stop:
                    return
            try:
                wait = self.deliver_once()
            except Exception as exc:  # a bug in a channel must not end delivery for the others
                logger.opt(exception=exc).error(f"alert outbox: delivery failed unexpectedly: {exc}")
                wait = 1.0
            with self._wake:
                if not self._stop:
                    self._wake.wait(min(wait, 1.0))

    def deliver_once(self) -> float:
        """Try every due delivery once; return the seconds until the next one is due."""
        with self._pass:
            return self._deliver_once()

    def _deliver_once(self) -> float:
        now = self.clock()
        next_due = 1.0
        for channel in self.channels.values():
            try:
                channel.maintain(now)
            except DeliveryError as exc:
                logger.warning(f"alert channel {channel.name}: {exc}")
        blocked: set[str] = set()  # a channel delivers in order: nothing overtakes a pending one
        for path in self._files():
            entry = _read(path)
            if entry is None:
                continue
            notification = Notification.from_dict(entry["notification"])
            changed = False
            for name, state in entry["channels"].items():
                if state["state"] != "pending" or name in blocked:
                    continue
                target = self.channels.get(name)
                if target is None:
                    continue  # configured in an earlier run only: kept until it comes back
                now = self.clock()
                if state["next_at"] > now:
                    next_due = min(next_due, state["next_at"] - now)
                    blocked.add(name)
                    continue
                changed = True
                self._attempt(target, notification, state, now)
                if state["state"] == "pending":
                    next_due = min(next_due, max(0.0, state["next_at"] - now))
                    blocked.add(name)
                atomic_write_json(path, entry, indent=None, durable=self.fsync)
            if changed and all(c["state"] != "pending" for c in entry["channels"].values()):
                path.unlink(missing_ok=True)
        return next_due

    def _attempt(self, channel: Channel, n: Notification, state: dict[str, Any], now: float) -> None:
        try:
            channel.send(n)
        except DeliveryError as exc:
            state["attempts"] += 1
            state["error"] = str(exc)
            self.counts[channel.name]["failed"] += 1
            too_old = now - n.created_at > self.max_age
            if exc.permanent or state["attempts"] >= self.max_attempts or too_old:
                state["state"] = "dropped"
                self.counts[channel.name]["dropped"] += 1
                why = "refused" if exc.permanent else f"gave up after {state['attempts']} attempt(s)"
                logger.error(f"alert {n.id} to {channel.name} DROPPED ({why}): {exc}")
                return
            delay = min(self.max_backoff, self.base_backoff * 2 ** (state["attempts"] - 1))
            state["next_at"] = now + delay
            if state["attempts"] == 1 or state["attempts"] % 10 == 0:
                logger.warning(
                    f"alert {n.id} to {channel.name} failed ({exc}); attempt {state['attempts']}, "
                    f"retrying in {delay:.1f} s"
                )
            return
        state["state"] = "sent"
        state["error"] = None
        self.counts[channel.name]["sent"] += 1
        if state["attempts"]:
            logger.info(f"alert {n.id} to {channel.name} delivered after {state['attempts']} failure(s)")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.error(f"alert outbox: {path} is unreadable ({exc}); moved aside")
        path.rename(path.with_suffix(".corrupt"))
        return None
