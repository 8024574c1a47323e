"""The alert budget: how many notifications each rule would have sent on replayed data, and how many
of them were true (their alert overlapped a labelled or injected incident).

    alert_budget(rules, settings, records_by_series, truth_by_series) -> {"rules": [...], ...}

The records are the evaluation's replay of the monitor loop (``core.assemble.replay``), fed to the
same :class:`~core.alerts.rules.RuleEngine` the daemon runs, one tick (timestamp) at a time. When no
rule is configured the budget is taken for :data:`REFERENCE_RULES` and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.alerts.rules import RuleEngine
from core.config import AlertRuleSettings, AlertSettings
from core.records import ScoredRecord

__all__ = ["REFERENCE_RULES", "alert_budget", "budget_lines", "merge_budgets"]

REFERENCE_RULES = (
    AlertRuleSettings(name="anomaly high", kind="severity", min_severity="HIGH"),
    AlertRuleSettings(name="anomaly medium", kind="severity", min_severity="MEDIUM"),
    AlertRuleSettings(name="anomaly sustained", kind="sustained", count=3, min_severity="LOW"),
    AlertRuleSettings(name="anomaly rate", kind="rate", window_seconds=3600, min_fraction=0.1),
)


def alert_budget(
    settings: AlertSettings,
    records: Mapping[str, Sequence[ScoredRecord]],
    truth: Mapping[str, Sequence[tuple[float, float]]],
    *,
    labelled: bool | None = None,
) -> dict[str, Any]:
    """Replay the records through every rule; return notifications per series per day and true ones.

    ``labelled``: whether the truth is known (a file with no incident is all normal); by default,
    whether any series has an incident.
    """
    rules = settings.rules or REFERENCE_RULES
    reference = not settings.rules
    everything = sorted((r for rs in records.values() for r in rs), key=lambda r: r.ts)
    if not everything:
        return {"rules": [], "reference_rules": reference, "series": 0, "days": 0.0, "series_days": 0.0}
    spans = [rs[-1].ts - rs[0].ts for rs in records.values() if rs]
    series_days = sum(spans) / 86400.0
    if labelled is None:
        labelled = any(truth.get(sid) for sid in records)
    out = []
    for rule in rules:
        one = settings.model_copy(update={"rules": (rule,), "group_window_seconds": 0.0})
        engine = RuleEngine(one)
        firing: list[tuple[str, float]] = []  # (series, started_at) of each firing notification
        reminders = 0
        ends: dict[tuple[str, float], float] = {}
        i = 0
        while i < len(everything):
            ts = everything[i].ts
            j = i
            while j < len(everything) and everything[j].ts == ts:
                j += 1
            for n in engine.observe(ts, everything[i:j]):
                for a in n.alerts:
                    if n.status == "resolved":
                        ends[(a.series, a.started_at)] = a.ended_at or a.at
                    elif n.repeat:
                        reminders += 1
                    else:
                        firing.append((a.series, a.started_at))
            i = j
        last = everything[-1].ts
        true = sum(
            1
            for sid, start in firing
            if any(lo <= ends.get((sid, start), last) and start <= hi for lo, hi in truth.get(sid, ()))
        )
        sent = len(firing) + reminders
        out.append(
            {
                "rule": rule.name,
                "kind": rule.kind,
                "notifications": sent,
                "firing": len(firing),
                "per_series_per_day": round(sent / series_days, 3) if series_days > 0 else None,
                "true": true if labelled else None,
                "false": len(firing) - true if labelled else None,
            }
        )
    return {
        "rules": out,
        "reference_rules": reference,
        "series": len(records),
        "days": round(series_days / max(1, len(records)), 2),
        "series_days": series_days,
    }


def merge_budgets(budgets: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Pool the budgets of separate replays (e.g. NAB's files): counts add up, rates are recomputed."""
    budgets = [b for b in budgets if b.get("rules")]
    if not budgets:
        return {"rules": [], "reference_rules": True, "series": 0, "days": 0.0, "series_days": 0.0}
    series_days = sum(b["series_days"] for b in budgets)
    series = sum(b["series"] for b in budgets)
    rules = []
    for i, first in enumerate(budgets[0]["rules"]):
        rows = [b["rules"][i] for b in budgets]
        sent = sum(r["notifications"] for r in rows)
        labelled = [r for r in rows if r["true"] is not None]
        rules.append(
            {
                "rule": first["rule"],
                "kind": first["kind"],
                "notifications": sent,
                "firing": sum(r["firing"] for r in rows),
                "per_series_per_day": round(sent / series_days, 3) if series_days > 0 else None,
                "true": sum(r["true"] for r in labelled) if labelled else None,
                "false": sum(r["false"] for r in labelled) if labelled else None,
            }
        )
    return {
        "rules": rules,
        "reference_rules": budgets[0]["reference_rules"],
        "series": series,
        "days": round(series_days / max(1, series), 2),
        "series_days": series_days,
    }


def budget_lines(budget: Mapping[str, Any]) -> list[str]:
    """Return the budget as report lines, one per rule."""
    if not budget.get("rules"):
        return ["alert budget: no records replayed"]
    which = (
        "reference rules (no alerts.rules configured)" if budget["reference_rules"] else "configured rules"
    )
    lines = [f"alert budget ({which}; {budget['series']} series, {budget['days']:g} days each):"]
    for r in budget["rules"]:
        rate = r["per_series_per_day"]
        true = "" if r["true"] is None else f", {r['true']} true / {r['false']} false"
        lines.append(
            f"  {r['rule']} ({r['kind']}): {r['notifications']} notification(s), "
            f"{rate if rate is not None else 'n/a'} per series per day{true}"
        )
    return lines
