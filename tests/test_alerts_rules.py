"""The rules engine as tables: a point sequence per series in, the exact notifications out.

A sequence is one character per grid point: ``.`` normal, ``L``/``M``/``H``/``C`` an anomaly of
that severity, ``_`` no point at all (a silence, not a zero). Expected notifications are
``(status, tick index, series...)``.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.alerts.notification import FALSE_ALARMS_PER_DAY, camel_case
from core.alerts.rules import RuleEngine, alertmanager_severity
from core.config import AlertRuleSettings, AlertSettings
from core.records import ScoredRecord

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SEV = {"L": ("LOW", 2.2), "M": ("MEDIUM", 2.7), "H": ("HIGH", 3.5), "C": ("CRITICAL", 6.0)}


def record(
    series: str, ts: float, ch: str, *, host: str = "web-01", value: float | None = None
) -> ScoredRecord:
    severity, score = SEV.get(ch, ("NONE", 0.3))
    labels = {"host": host, **dict(p.split("=") for p in series.split(",") if "=" in p)}
    return ScoredRecord(
        ts=ts,
        series=series,
        labels=labels,
        host=host,
        source="test",
        value=50.0 + score * 5 if value is None else value,
        yhat=50.0,
        lower=45.0,
        upper=55.0,
        score=score,
        is_anomaly=ch in SEV,
        severity=severity,
        confidence=0.9,
        threshold=2.0,
        model="m",
    )


def run(
    rule: dict[str, Any],
    sequences: dict[str, str],
    *,
    step: float = 10.0,
    errors: str = "",
    values: dict[str, list[float]] | None = None,
    hosts: dict[str, str] | None = None,
    **alerts: Any,
) -> list[tuple[Any, ...]]:
    settings = AlertSettings(rules=(AlertRuleSettings(name="r", **rule),), **alerts)
    engine = RuleEngine(settings)
    n_ticks = max([len(s) for s in sequences.values()] + [len(errors)])
    out: list[tuple[Any, ...]] = []
    for i in range(n_ticks):
        now = T0 + i * step
        records = []
        for series, seq in sequences.items():
            ch = seq[i] if i < len(seq) else "_"
            if ch != "_":
                v = values[series][i] if values and series in values else None
                records.append(record(series, now, ch, host=(hosts or {}).get(series, "web-01"), value=v))
        errs = {"source": 1} if i < len(errors) and errors[i] == "x" else {}
        for n in engine.observe(now, records, errs):
            out.append((n.status, i, *[a.series for a in n.alerts]))
    return out


CASES = [
    # name, rule, sequences, options, expected
    ("one event", {}, {"a": "..CCC......"}, {}, [("firing", 2, "a"), ("resolved", 7, "a")]),
    (
        "consecutive points are one event",
        {},
        {"a": "CCCCCC...."},
        {},
        [("firing", 0, "a"), ("resolved", 8, "a")],
    ),
    (
        "flapping inside the hysteresis is one event",
        {},
        {"a": "C.C.CC.C...."},
        {},
        [("firing", 0, "a"), ("resolved", 10, "a")],
    ),
    (
        "resolve after K=1",
        {"resolve_after": 1},
        {"a": "C.C"},
        {"cooldown_seconds": 0},
        [("firing", 0, "a"), ("resolved", 1, "a"), ("firing", 2, "a")],
    ),
    (
        "a re-fire inside the cooldown is silent, and so is its resolve",
        {"resolve_after": 2},
        {"a": "CC...CC...."},
        {},
        [("firing", 0, "a"), ("resolved", 3, "a")],
    ),
    (
        "a re-fire after the cooldown notifies again",
        {"resolve_after": 2, "cooldown_seconds": 40},
        {"a": "CC...CC...."},
        {},
        [("firing", 0, "a"), ("resolved", 3, "a"), ("firing", 5, "a"), ("resolved", 8, "a")],
    ),
    (
        "still firing after repeat_seconds: a reminder",
        {},
        {"a": "CCCCCCC..."},
        {"repeat_seconds": 30},
        [("firing", 0, "a"), ("firing", 3, "a"), ("firing", 6, "a"), ("resolved", 9, "a")],
    ),
    ("no reminder by default", {}, {"a": "CCCCCCC..."}, {}, [("firing", 0, "a"), ("resolved", 9, "a")]),
    ("below the minimum severity: nothing", {"min_severity": "HIGH"}, {"a": "LLMM...."}, {}, []),
    (
        "at the minimum severity",
        {"min_severity": "HIGH"},
        {"a": "LLH....."},
        {},
        [("firing", 2, "a"), ("resolved", 5, "a")],
    ),
    (
        "sustained: 3 in a row",
        {"kind": "sustained", "count": 3},
        {"a": ".CC.CCC....."},
        {},
        [("firing", 6, "a"), ("resolved", 9, "a")],
    ),
    (
        "sustained: 3 of the last 5",
        {"kind": "sustained", "count": 3, "of_last": 5},
        {"a": ".C.C.C........"},
        {},
        [("firing", 5, "a"), ("resolved", 8, "a")],
    ),
    (
        "rate: more than 30% of a 100 s window, at least 5 points (2 of 7 is not)",
        {"kind": "rate", "window_seconds": 100, "min_fraction": 0.3, "min_points": 5, "resolve_after": 1},
        {"a": "C..C.......C..........."},
        {},
        [("firing", 4, "a"), ("resolved", 6, "a")],
    ),
    (
        "no data: silence of 30 s fires; the next point resolves",
        {"kind": "no_data", "after_seconds": 30},
        {"a": "..._____..", "b": ".........."},
        {},
        [("firing", 5, "a"), ("resolved", 8, "a")],
    ),
    (
        "grouping: one host, one tick, one notification",
        {},
        {"host=h1,disk=a": "..C....", "host=h1,disk=b": "..C....", "host=h2,disk=a": "..C...."},
        {"hosts": {"host=h1,disk=a": "h1", "host=h1,disk=b": "h1", "host=h2,disk=a": "h2"}},
        [
            ("firing", 2, "host=h1,disk=a", "host=h1,disk=b"),
            ("firing", 2, "host=h2,disk=a"),
            ("resolved", 5, "host=h1,disk=a"),
            ("resolved", 5, "host=h1,disk=b"),
            ("resolved", 5, "host=h2,disk=a"),
        ],
    ),
    (
        "grouping window: alerts starting 20 s apart go out together when the window ends",
        {},
        {"host=h1,disk=a": ".C.CCC.....", "host=h1,disk=b": "...CCC....."},
        {"group_window_seconds": 30, "hosts": {"host=h1,disk=a": "h1", "host=h1,disk=b": "h1"}},
        [
            ("firing", 4, "host=h1,disk=a", "host=h1,disk=b"),
            ("resolved", 8, "host=h1,disk=a"),
            ("resolved", 8, "host=h1,disk=b"),
        ],
    ),
    (
        "source unreachable for 3 ticks; the first good tick resolves",
        {"kind": "source_unreachable", "after_ticks": 3},
        {},
        {"errors": ".xxxxx...."},
        [("firing", 3, "detector"), ("resolved", 6, "detector")],
    ),
]


@pytest.mark.parametrize(
    ("rule", "sequences", "options", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule_table(
    rule: dict[str, Any], sequences: dict[str, str], options: dict[str, Any], expected: list[tuple[Any, ...]]
) -> None:
    assert run(rule, sequences, **options) == expected


def test_threshold_levels_and_band() -> None:
    values = [50, 86, 90, 96, 80, 70, 60, 50, 50]
    alone = run(
        {"kind": "threshold", "above": {"warning": 85, "critical": 95}, "resolve_after": 2},
        {"a": "........."},
        values={"a": values},
    )
    assert alone == [("firing", 1, "a"), ("resolved", 5, "a")]
    together = run(
        {
            "kind": "threshold",
            "above": {"warning": 85, "critical": 95},
            "with_band": True,
            "resolve_after": 2,
        },
        {"a": "...C....."},
        values={"a": values},
    )
    assert together == [("firing", 3, "a"), ("resolved", 5, "a")]
    floor = run(
        {"kind": "threshold", "below": {"warning": 0.8}}, {"a": "...."}, values={"a": [0.9, 0.5, 0.5, 0.5]}
    )
    assert floor == [("firing", 1, "a")]


def test_notification_explains_itself() -> None:
    settings = AlertSettings(
        rules=(AlertRuleSettings(name="cpu high", min_severity="HIGH", runbook_url="https://runbooks/cpu"),),
        dashboard_url="http://grafana:3000/d/cpu-anomaly-detection",
    )
    engine = RuleEngine(settings, model_age=lambda series, now: 7200.0)
    engine.observe(T0, [record("host=web-01", T0, ".")])
    (n,) = engine.observe(T0 + 60, [record("host=web-01", T0 + 60, "C")])
    assert n.status == "firing" and n.severity == "CRITICAL" and n.alertname == "CpuHigh"
    (a,) = n.alerts
    assert (a.value, a.expected, a.lower, a.upper, a.score) == (80.0, 50.0, 45.0, 55.0, 6.0)
    assert a.false_alarms_per_day == FALSE_ALARMS_PER_DAY["CRITICAL"] == 0.03
    assert a.started_at == T0 + 60 and a.points == 1 and a.model_age_seconds == 7200.0
    assert n.runbook_url == "https://runbooks/cpu"
    assert n.dashboard_url == (
        "http://grafana:3000/d/cpu-anomaly-detection?var-host=web-01&from=1767224760000&to=1767226560000"
    )
    text = n.description
    for part in (
        "value 80",
        "expected 50, band 45..55",
        "score 6.00",
        "severity CRITICAL",
        "0.03 false alarms",
        "2026-01-01T00:01:00Z",
        "model age 2.0 h",
        "runbook: https://runbooks/cpu",
        n.id,
    ):
        assert part in text
    assert n.summary == "[FIRING] cpu high (CRITICAL) on host=web-01"


def test_ids_are_stable_and_distinct() -> None:
    a = run({}, {"a": "C...."})
    b = run({}, {"a": "C...."})
    assert a == b
    settings = AlertSettings(rules=(AlertRuleSettings(name="r"),))
    e1, e2 = RuleEngine(settings), RuleEngine(settings)
    ids = [n.id for t in range(5) for n in e1.observe(T0 + t, [record("a", T0 + t, "C...."[t])])]
    again = [n.id for t in range(5) for n in e2.observe(T0 + t, [record("a", T0 + t, "C...."[t])])]
    assert ids == again and len(set(ids)) == 2


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [("CRITICAL", "critical"), ("HIGH", "warning"), ("MEDIUM", "warning"), ("LOW", "info"), ("info", "info")],
)
def test_alertmanager_severity(ours: str, theirs: str) -> None:
    assert alertmanager_severity(ours) == theirs


@pytest.mark.parametrize(
    ("name", "camel"), [("cpu sustained-high", "CpuSustainedHigh"), ("no_data", "NoData"), ("x", "X")]
)
def test_camel_case(name: str, camel: str) -> None:
    assert camel_case(name) == camel


def test_alert_budget_counts_per_rule_per_series_day_and_true_ones() -> None:
    from core.alerts.budget import alert_budget, budget_lines, merge_budgets

    # Two days at 1 h steps; incidents at hours 5-6 (labelled) and 30 (not labelled).
    seq = ["C" if h in (5, 6, 30) else "." for h in range(49)]
    records = {"a": [record("a", T0 + h * 3600, ch) for h, ch in enumerate(seq)]}
    truth = {"a": [(T0 + 5 * 3600, T0 + 6 * 3600)]}
    settings = AlertSettings(
        rules=(AlertRuleSettings(name="any"), AlertRuleSettings(name="two", kind="sustained", count=2))
    )
    budget = alert_budget(settings, records, truth)
    assert budget["reference_rules"] is False and budget["series"] == 1 and budget["days"] == 2.0
    (any_rule, two) = budget["rules"]
    assert (
        any_rule["notifications"],
        any_rule["per_series_per_day"],
        any_rule["true"],
        any_rule["false"],
    ) == (2, 1.0, 1, 1)
    assert (two["notifications"], two["per_series_per_day"], two["true"], two["false"]) == (1, 0.5, 1, 0)
    pooled = merge_budgets([budget, budget])
    assert pooled["rules"][0]["notifications"] == 4 and pooled["rules"][0]["per_series_per_day"] == 1.0
    assert (
        budget_lines(budget)[1]
        == "  any (severity): 2 notification(s), 1.0 per series per day, 1 true / 1 false"
    )
    unlabelled = alert_budget(AlertSettings(), records, {})
    assert unlabelled["reference_rules"] is True and unlabelled["rules"][0]["true"] is None


# -- data-quality rules: the real tracker measures the same sequences ---------------------------------


def run_quality(rule: dict[str, Any], sequences: dict[str, str], *, step: float = 10.0) -> list[tuple]:
    """Feed the sequences through a real QualityTracker and the engine; return the notifications."""
    import numpy as np

    from core.quality import QualityParams, QualityTracker
    from core.records import PointBatch, SeriesRef

    tracker = QualityTracker(QualityParams(interval=step, window=6 * step))
    settings = AlertSettings(rules=(AlertRuleSettings(name="q", **rule),), resolve_after=2)
    engine = RuleEngine(settings, quality=tracker.snapshot)
    out: list[tuple] = []
    for i in range(max(len(s) for s in sequences.values())):
        now = T0 + i * step
        batches, records = [], []
        for series, seq in sequences.items():
            if i < len(seq) and seq[i] != "_":
                ref = SeriesRef.from_labels({"host": series})
                batches.append(PointBatch(ref, np.array([now]), np.array([50.0]), "test"))
                records.append(record(ref.id, now, seq[i], host=series))
        tracker.observe(now + 0.5, batches)
        for n in engine.observe(now + 0.5, records):
            out.append((n.status, i, *[a.series for a in n.alerts]))
    return out


QUALITY_CASES = [
    # name, rule, sequences, expected
    (
        "stale two intervals after the last point, fresh again at the next one",
        {"kind": "stale"},
        {"a": "...___...."},
        [("firing", 4, "host=a"), ("resolved", 6, "host=a")],
    ),
    ("one missing point is not stale", {"kind": "stale"}, {"a": "..._..._.."}, []),
    (
        "match on host",
        {"kind": "stale", "match": {"host": "b"}},
        {"a": "..____", "b": "..____"},
        [("firing", 3, "host=b")],
    ),
    (
        "incomplete below the share of expected points",
        {"kind": "incomplete", "min_completeness": 0.7},
        {"a": "......_._._......."},
        [("firing", 8, "host=a"), ("resolved", 14, "host=a")],
    ),
]


@pytest.mark.parametrize(
    ("rule", "sequences", "expected"), [c[1:] for c in QUALITY_CASES], ids=[c[0] for c in QUALITY_CASES]
)
def test_quality_rules(rule: dict[str, Any], sequences: dict[str, str], expected: list[tuple]) -> None:
    assert run_quality(rule, sequences) == expected


def test_a_forgotten_series_leaves_no_state() -> None:
    settings = AlertSettings(rules=(AlertRuleSettings(name="n", kind="no_data", after_seconds=20),))
    engine = RuleEngine(settings)
    engine.observe(T0, [record("host=a", T0, ".")])
    assert engine.last_point and engine.states == {}
    engine.forget("host=a")
    assert engine.observe(T0 + 100, []) == [] and not engine.last_point and not engine.refs
