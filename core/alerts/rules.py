"""The rules engine: scored records in, notifications out; pure (no clock, no I/O, no threads).

    RuleEngine.observe(now, records, errors) -> [Notification]

Per (rule, series) an :class:`_AlertState` runs this lifecycle::

    quiet --condition true--> firing --(condition false for resolve_after points)--> quiet
                                 |  notify "firing" (unless the last firing notification of this
                                 |  (rule, series) is younger than the cooldown: then it stays silent,
                                 |  and so does its resolve)
                                 +--still true after repeat_seconds (if set)--> a reminder

Consecutive bad points are one event (one alert); dedup is the state's key. Alerts that start
within ``group_window_seconds`` of each other and share the ``group_by`` labels (e.g. host) go out
as one notification listing their series. "No data" is a silence, never a zero: the no_data rule
fires when a series has had no point for ``after_seconds`` and resolves at its next point.

Data-quality rules read the tracker's snapshot (``core.quality``), one state per series and tick:
``stale`` fires while a series is stale (no point for ``monitoring.quality.stale_after_intervals``),
``incomplete`` while its completeness is below ``min_completeness``; both resolve after
``resolve_after`` good ticks. Which kinds are judged where is the table ``_EVALUATE``.
"""

from __future__ import annotations

import fnmatch
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from core.alerts.notification import Alert, Notification, dashboard_link, notification_id
from core.alerts.quality_rules import QUALITY_CONDITIONS, matches_names
from core.config import SEVERITIES, AlertRuleSettings, AlertSettings
from core.quality import QualitySnapshot
from core.records import ScoredRecord

__all__ = ["RuleEngine", "severity_rank"]

_RANK = {name: i + 1 for i, name in enumerate(SEVERITIES)}
_AM_SEVERITY = {"CRITICAL": "critical", "HIGH": "warning", "MEDIUM": "warning", "LOW": "info"}
_SYSTEM = "detector"  # the pseudo-series of source / health rules


def severity_rank(severity: str) -> int:
    """Return 0 for NONE, then 1..4 for LOW..CRITICAL; info/warning/critical map onto 1/3/4."""
    return _RANK.get(severity.upper(), {"info": 1, "warning": 3, "critical": 4}.get(severity.lower(), 0))


@dataclass
class _AlertState:
    """The lifecycle of one (rule, series)."""

    firing: bool = False
    announced: bool = False  # a firing notification went out for this run
    started_at: float = 0.0
    points: int = 0
    clear: int = 0
    last_notified: float = -math.inf
    severity: str = "NONE"
    worst: ScoredRecord | None = None
    last: ScoredRecord | None = None
    repeats: int = 0
    history: deque[tuple[float, bool]] = field(default_factory=deque)
    reason: str = ""


@dataclass
class _Pending:
    """A firing notification waiting for its group window."""

    first: float
    rule: AlertRuleSettings
    alerts: list[Alert]


class RuleEngine:
    """Evaluate the configured rules over each tick's records; return the notifications decided."""

    def __init__(
        self,
        settings: AlertSettings,
        *,
        model_age: Callable[[str, float], float | None] | None = None,
        quality: Callable[[float], QualitySnapshot] | None = None,
    ) -> None:
        self.settings = settings
        self.quality = quality
        self.rules = list(settings.rules)
        self.model_age = model_age or (lambda _series, _now: None)
        self.states: dict[tuple[str, str], _AlertState] = {}
        self.last_point: dict[str, float] = {}
        self.refs: dict[str, ScoredRecord] = {}
        self.source_failures = 0
        self.sink_failures = 0
        self._pending: dict[tuple[str, str], _Pending] = {}

    # -- the one entry point -----------------------------------------------------------------------

    def observe(
        self,
        now: float,
        records: Sequence[ScoredRecord],
        errors: Mapping[str, int] | None = None,
        backlog: float = 0.0,
    ) -> list[Notification]:
        """Feed one tick (its records, its failed polls / writes, the spool backlog); return what to send."""
        errors = errors or {}
        self.source_failures = self.source_failures + 1 if errors.get("source") else 0
        self.sink_failures = self.sink_failures + 1 if errors.get("sink") else 0
        out: list[Notification] = []
        by_series: dict[str, list[ScoredRecord]] = {}
        for r in sorted(records, key=lambda r: r.ts):
            by_series.setdefault(r.series, []).append(r)
            self.refs[r.series] = r
        snapshot: list[QualitySnapshot | None] = []  # taken once per tick, if a rule needs it
        for rule in self.rules:
            where = _EVALUATE.get(rule.kind, "points")
            if where == "system":
                out += self._system(rule, now, backlog)
            elif where == "silence":
                out += self._no_data(rule, now, by_series)
            elif where == "quality":
                if not snapshot:
                    snapshot.append(self.quality(now) if self.quality is not None else None)
                out += self._data_quality(rule, now, snapshot[0])
            else:
                for rs in by_series.values():
                    if self._matches(rule, rs[0]):
                        for r in rs:
                            out += self._point(rule, r, now)
        for series, rs in by_series.items():
            self.last_point[series] = rs[-1].ts
        out += self._flush_groups(now, force=False)
        return out

    def forget(self, series: str) -> None:
        """Forget a dropped series: its last point and its alert states (a firing one ends silently)."""
        self.last_point.pop(series, None)
        self.refs.pop(series, None)
        for key in [k for k in self.states if k[1] == series]:
            del self.states[key]

    def close(self, now: float) -> list[Notification]:
        """Return the firing notifications still held by a group window (at shutdown)."""
        return self._flush_groups(now, force=True)

    # -- conditions --------------------------------------------------------------------------------

    def _matches(self, rule: AlertRuleSettings, r: ScoredRecord) -> bool:
        for key, pattern in rule.match.items():
            value = r.series if key == "series" else r.host if key == "host" else r.labels.get(key)
            if value is None or not fnmatch.fnmatchcase(str(value), pattern):
                return False
        return True

    def _bad(self, rule: AlertRuleSettings, r: ScoredRecord) -> bool:
        return r.is_anomaly and severity_rank(r.severity) >= _RANK[rule.min_severity]

    def _condition(self, rule: AlertRuleSettings, st: _AlertState, r: ScoredRecord) -> tuple[bool, str]:
        if rule.kind == "severity":
            return self._bad(rule, r), ""
        if rule.kind == "sustained":
            st.history.append((r.ts, self._bad(rule, r)))
            keep = rule.of_last or rule.count
            while len(st.history) > keep:
                st.history.popleft()
            hits = sum(b for _, b in st.history)
            if rule.of_last is None:
                return hits == rule.count == len(st.history), f"{rule.count} anomalous points in a row"
            return hits >= rule.count, f"{hits} of the last {len(st.history)} points anomalous"
        if rule.kind == "rate":
            st.history.append((r.ts, self._bad(rule, r)))
            while st.history and st.history[0][0] <= r.ts - rule.window_seconds:
                st.history.popleft()
            n = len(st.history)
            share = sum(b for _, b in st.history) / n
            ok = n >= rule.min_points and share > rule.min_fraction
            return ok, f"{share:.0%} of {n} points anomalous in the last {rule.window_seconds:g} s"
        if rule.kind == "threshold":
            level = _limit_level(rule, r.value)
            if level and rule.with_band and not r.is_anomaly:
                level = None
            if level:
                st.severity = "CRITICAL" if level == "critical" else "HIGH"
                return True, f"value beyond the {level} limit"
            return False, ""
        raise AssertionError(rule.kind)

    # -- point rules -------------------------------------------------------------------------------

    def _point(self, rule: AlertRuleSettings, r: ScoredRecord, now: float) -> list[Notification]:
        st = self.states.setdefault((rule.name, r.series), _AlertState())
        if not math.isfinite(r.value):
            return []  # a missing value is neither bad nor clear: no_data rules judge silence
        bad, reason = self._condition(rule, st, r)
        if bad:
            if rule.kind != "threshold" and severity_rank(r.severity) > severity_rank(st.severity):
                st.severity = r.severity
            if st.worst is None or r.score >= st.worst.score:
                st.worst = r
            st.last, st.reason = r, reason or st.reason
        return self._step(rule, st, r.series, r.ts, bad, r)

    def _step(
        self,
        rule: AlertRuleSettings,
        st: _AlertState,
        series: str,
        at: float,
        bad: bool,
        r: ScoredRecord | None,
    ) -> list[Notification]:
        cooldown = self.settings.cooldown_seconds if rule.cooldown_seconds is None else rule.cooldown_seconds
        resolve_after = rule.resolve_after or self.settings.resolve_after
        repeat = self.settings.repeat_seconds
        out: list[Notification] = []
        if bad:
            st.clear = 0
            if not st.firing:
                st.firing, st.started_at, st.points, st.repeats = True, at, 0, 0
                if rule.kind in ("sustained",):
                    st.started_at = st.history[0][0] if st.history else at
                st.announced = at - st.last_notified >= cooldown
                if st.announced:
                    st.last_notified = at
                    self._hold(rule, self._alert(rule, st, series, at, ended=None), at)
            elif st.announced and repeat and at - st.last_notified >= repeat:
                st.last_notified, st.repeats = at, st.repeats + 1
                out.append(self._notify(rule, "firing", [self._alert(rule, st, series, at)], at, st.repeats))
            st.points += 1
            return out
        if not st.firing:
            return out
        st.clear += 1
        if st.clear >= resolve_after:
            st.firing = False
            if st.announced:
                alert = self._alert(rule, st, series, at, ended=at)
                held = self._pending.get((rule.name, self._group_of(alert)))
                if held is not None and any(a.series == series for a in held.alerts):
                    # Fired and cleared inside the group window: send the firing first.
                    out += self._flush_one((rule.name, self._group_of(alert)))
                out.append(self._notify(rule, "resolved", [alert], at))
            st.worst = st.last = None
            st.severity, st.reason = "NONE", ""
            if rule.kind == "sustained":
                st.history.clear()
        return out

    # -- silence and system rules ------------------------------------------------------------------

    def _no_data(
        self, rule: AlertRuleSettings, now: float, by_series: Mapping[str, list[ScoredRecord]]
    ) -> list[Notification]:
        out: list[Notification] = []
        for series, last in list(self.last_point.items()):
            ref = self.refs[series]
            if not self._matches(rule, ref):
                continue
            st = self.states.setdefault((rule.name, series), _AlertState())
            fresh = by_series.get(series)
            if fresh:
                if st.firing:
                    st.clear = max(st.clear, (rule.resolve_after or self.settings.resolve_after) - 1)
                    out += self._step(rule, st, series, fresh[-1].ts, False, None)
                continue
            silent = now - last
            if silent >= rule.after_seconds:
                st.severity = rule.severity
                st.reason = f"no point for {silent:.0f} s (last at {_iso(last)})"
                if not st.firing:
                    out += self._step(rule, st, series, last + rule.after_seconds, True, None)
                else:
                    st.points += 1
        return out

    def _data_quality(
        self, rule: AlertRuleSettings, now: float, snap: QualitySnapshot | None
    ) -> list[Notification]:
        out: list[Notification] = []
        if snap is None:
            return out
        for i, series in enumerate(snap.series):
            ref = self.refs.get(series)
            if ref is not None and not self._matches(rule, ref):
                continue
            if ref is None and not matches_names(rule, series, snap.hosts[i], snap.metrics[i]):
                continue
            st = self.states.setdefault((rule.name, series), _AlertState())
            bad, st.reason = QUALITY_CONDITIONS[rule.kind](rule, snap, i)
            st.severity = rule.severity
            if not bad and st.firing:
                st.clear = max(st.clear, (rule.resolve_after or self.settings.resolve_after) - 1)
            out += self._step(rule, st, series, now, bad, None)
        return out

    def _system(self, rule: AlertRuleSettings, now: float, backlog: float) -> list[Notification]:
        st = self.states.setdefault((rule.name, _SYSTEM), _AlertState())
        if rule.kind == "source_unreachable":
            bad = self.source_failures >= rule.after_ticks
            st.reason = f"source failed {self.source_failures} tick(s) in a row"
        else:
            bad = self.sink_failures >= rule.after_ticks or backlog > rule.max_backlog_records
            st.reason = (
                f"{self.sink_failures} failed write tick(s) in a row, spool backlog {backlog:.0f} records"
            )
        st.severity = rule.severity
        if not bad and st.firing:
            st.clear = max(st.clear, (rule.resolve_after or self.settings.resolve_after) - 1)
        return self._step(rule, st, _SYSTEM, now, bad, None)

    # -- building notifications --------------------------------------------------------------------

    def _alert(
        self, rule: AlertRuleSettings, st: _AlertState, series: str, at: float, ended: float | None = None
    ) -> Alert:
        r = st.worst
        ref = self.refs.get(series)
        severity = st.severity if st.severity != "NONE" else rule.severity
        return Alert(
            rule=rule.name,
            kind=rule.kind,
            series=series,
            host=ref.host if ref is not None else series,
            labels=dict(ref.labels) if ref is not None else {},
            severity=severity.upper() if severity.upper() in _RANK else severity,
            started_at=st.started_at,
            at=at,
            points=st.points + (0 if ended is not None else 1),
            value=r.value if r is not None else None,
            expected=r.yhat if r is not None else None,
            lower=r.lower if r is not None else None,
            upper=r.upper if r is not None else None,
            score=r.score if r is not None else None,
            false_alarms_per_day=self.settings.false_alarms_per_day.get(severity.upper()),
            model_age_seconds=self.model_age(series, at) if ref is not None else None,
            reason=st.reason,
            ended_at=ended,
        )

    def _group_of(self, alert: Alert) -> str:
        if alert.series == _SYSTEM:
            return _SYSTEM
        parts = []
        for key in self.settings.group_by:
            value = alert.host if key == "host" else alert.labels.get(key)
            parts.append(f"{key}={value}" if value is not None else "")
        key = ",".join(p for p in parts if p)
        return key or alert.series

    def _hold(self, rule: AlertRuleSettings, alert: Alert, at: float) -> None:
        key = (rule.name, self._group_of(alert))
        pending = self._pending.get(key)
        if pending is None:
            self._pending[key] = _Pending(at, rule, [alert])
        else:
            pending.alerts.append(alert)

    def _flush_groups(self, now: float, *, force: bool) -> list[Notification]:
        due = [
            key
            for key, p in self._pending.items()
            if force or now >= p.first + self.settings.group_window_seconds
        ]
        return [n for key in due for n in self._flush_one(key)]

    def _flush_one(self, key: tuple[str, str]) -> list[Notification]:
        pending = self._pending.pop(key, None)
        if pending is None:
            return []
        return [self._notify(pending.rule, "firing", pending.alerts, pending.first)]

    def _notify(
        self, rule: AlertRuleSettings, status: str, alerts: list[Alert], at: float, repeat: int = 0
    ) -> Notification:
        alerts = sorted(alerts, key=lambda a: a.series)
        worst = max(alerts, key=lambda a: severity_rank(a.severity))
        group = self._group_of(alerts[0])
        start = min(a.started_at for a in alerts)
        end = max(a.ended_at or a.at for a in alerts)
        runs = (f"{a.series}@{a.started_at}" for a in alerts)
        ident = notification_id(rule.name, group, status, *runs, repeat)
        return Notification(
            id=ident,
            status=status,
            rule=rule.name,
            group=group,
            created_at=at,
            alerts=tuple(alerts),
            severity=worst.severity,
            dashboard_url=dashboard_link(self.settings.dashboard_url, alerts[0].host, start, end),
            runbook_url=rule.runbook_url,
            repeat=repeat,
        )


# Where each rule kind is judged: on each point (the default), on silence, on the system, on quality.
_EVALUATE = {
    "source_unreachable": "system",
    "detector_unhealthy": "system",
    "no_data": "silence",
    "stale": "quality",
    "incomplete": "quality",
}


def alertmanager_severity(severity: str) -> str:
    """Return Alertmanager's severity label (critical / warning / info) for one of ours."""
    low = severity.lower()
    return _AM_SEVERITY.get(severity.upper(), low if low in ("info", "warning", "critical") else "warning")


def _limit_level(rule: AlertRuleSettings, value: float) -> str | None:
    if rule.above is not None:
        if rule.above.critical is not None and value > rule.above.critical:
            return "critical"
        if rule.above.warning is not None and value > rule.above.warning:
            return "warning"
    if rule.below is not None:
        if rule.below.critical is not None and value < rule.below.critical:
            return "critical"
        if rule.below.warning is not None and value < rule.below.warning:
            return "warning"
    return None


def _iso(ts: float) -> str:
    from core.alerts.notification import iso

    return iso(ts)
