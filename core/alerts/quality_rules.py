"""The conditions of the data-quality rules (``stale``, ``incomplete``) over a quality snapshot.

Each condition takes the rule, the snapshot of ``core.quality`` and a series' index in it, and
returns (bad, reason); ``core.alerts.rules.RuleEngine`` runs them once per series and tick.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

from core.config import AlertRuleSettings
from core.quality import QualitySnapshot

__all__ = ["QUALITY_CONDITIONS", "matches_names"]


def _stale(rule: AlertRuleSettings, snap: QualitySnapshot, i: int) -> tuple[bool, str]:
    return bool(snap.stale[i]), f"stale: no point for {snap.staleness[i]:.0f} s"


def _incomplete(rule: AlertRuleSettings, snap: QualitySnapshot, i: int) -> tuple[bool, str]:
    share = float(snap.completeness[i])
    return share < rule.min_completeness, f"{share:.0%} of the expected points arrived"


QUALITY_CONDITIONS: dict[str, Callable[[AlertRuleSettings, QualitySnapshot, int], tuple[bool, str]]] = {
    "stale": _stale,
    "incomplete": _incomplete,
}


def matches_names(rule: AlertRuleSettings, series: str, host: str, metric: str) -> bool:
    """Match a series known only from the quality snapshot (no record of it in this process yet)."""
    values = {"series": series, "host": host, "metric": metric}
    return all(
        key in values and fnmatch.fnmatchcase(values[key], pattern) for key, pattern in rule.match.items()
    )
