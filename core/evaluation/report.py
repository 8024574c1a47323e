"""Evaluation outputs: the four plots, ``evaluation_report.txt`` and the metrics in the model metadata."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.alerts.budget import budget_lines
from core.evaluation.metrics import roc_curve
from core.fsutil import atomic_write_json, atomic_write_text
from core.timegrid import from_epoch

if TYPE_CHECKING:
    from core.config import Settings
    from core.evaluation.results import EvaluatedSeries

__all__ = ["confusion_figure", "merge_metadata", "render_text", "write_evaluation"]


def merge_metadata(path: Path, key: str, value: Any) -> None:
    """Set ``key`` in a JSON metadata file (created if missing), atomically."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[key] = value
    atomic_write_json(path, data)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def render_text(metrics: dict[str, Any]) -> str:
    """Return the human report."""
    p, e = metrics["point"], metrics["event"]
    lines = [
        "Anomaly detection evaluation",
        "============================",
        f"dataset: {metrics['dataset']}   series: {', '.join(metrics['series'])}",
        f"holdout points: {metrics['points']} ({metrics['anomalous_points']} inside anomalies)   "
        f"score threshold: {metrics['threshold_multiplier']:g}   seed: {metrics['seed']}",
        "method: causal replay of the holdout through the monitor loop (refits use only past data);",
        "        anomalies injected into the holdout"
        + (f" plus labelled incidents ({metrics['labels']})" if metrics.get("labels") else ""),
        "",
        "Point level",
        f"  precision {_pct(p['precision'])}   recall {_pct(p['recall'])}   F1 {_pct(p['f1'])}   "
        f"false positive rate {_pct(p['fpr'])}",
        f"  TP {p['tp']}  FP {p['fp']}  FN {p['fn']}  TN {p['tn']}",
        "Event level (an anomaly is found if any of its points is flagged)",
        f"  precision {_pct(e['precision'])}   recall {_pct(e['recall'])}   F1 {_pct(e['f1'])}   "
        f"found {e['detected_events']}/{e['true_events']}, false alarms {e['false_events']}",
        "Ranking",
        f"  ROC AUC {metrics['roc_auc']:.3f}" if metrics["roc_auc"] is not None else "  ROC AUC n/a",
        "Forecast on normal points",
        f"  MAPE {metrics['mape_normal_percent']:.2f}%   band coverage {_pct(metrics['coverage_normal'])} "
        f"(nominal {_pct(metrics['nominal_coverage'])})",
        "",
        "Detection by kind",
    ]
    for kind, c in sorted(metrics["events_by_kind"].items()):
        lines.append(f"  {kind:<12} {c['detected']}/{c['events']}")
    if metrics.get("alert_budget"):
        lines += ["", *budget_lines(metrics["alert_budget"])]
    lines += ["", "Threshold analysis (score threshold: point P / R / F1, event P / R / F1, FPR)"]
    for row in metrics["threshold_analysis"]:
        pt, ev = row["point"], row["event"]
        lines.append(
            f"  {row['threshold_multiplier']:>5g}: {_pct(pt['precision']):>6} / {_pct(pt['recall']):>6} / "
            f"{_pct(pt['f1']):>6}   {_pct(ev['precision']):>6} / {_pct(ev['recall']):>6} / "
            f"{_pct(ev['f1']):>6}   {_pct(pt['fpr'])}"
        )
    base = metrics.get("baseline")
    if base:
        bp, be = base["point"], base["event"]
        auc = f"{base['roc_auc']:.3f}" if base["roc_auc"] is not None else "n/a"
        lines += [
            "",
            "Ten-line baseline on the same replayed values, at the detector's false positive rate",
            f"  ({base['method']})",
            f"  point P / R / F1 {_pct(bp['precision'])} / {_pct(bp['recall'])} / {_pct(bp['f1'])}   "
            f"event P / R / F1 {_pct(be['precision'])} / {_pct(be['recall'])} / {_pct(be['f1'])}   "
            f"ROC AUC {auc}",
        ]
    lines.append(f"\nruntime {metrics.get('seconds', 0):.1f} s")
    return "\n".join(lines) + "\n"


def write_evaluation(
    out: Path, results: Sequence[EvaluatedSeries], metrics: dict[str, Any], settings: Settings, *, plots: bool
) -> list[Path]:
    """Write the report and (unless disabled) the four plots; return the files written."""
    files = [out / "evaluation_report.txt"]
    atomic_write_text(files[0], render_text(metrics))
    if plots:
        files += _plots(out, results, metrics)
    return files


def _plots(out: Path, results: Sequence[EvaluatedSeries], metrics: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    p = metrics["point"]
    fig = confusion_figure(np.array([[p["tn"], p["fp"]], [p["fn"], p["tp"]]]))
    files.append(out / "confusion_matrix.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)

    truth = np.concatenate([r.truth for r in results])
    scores = np.concatenate([r.score for r in results])
    fpr, tpr, _ = roc_curve(truth, scores)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    auc = metrics["roc_auc"]
    ax.plot(fpr, tpr, label=f"score (AUC {auc:.3f})" if auc is not None else "score")
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=0.8)
    ax.scatter([p["fpr"]], [p["recall"]], color="red", zorder=3, label="operating point")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve (points)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    files.append(out / "roc_curve.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)

    from core.evaluation.plots import date_axis

    values = np.concatenate([r.y for r in results])
    finite = values[np.isfinite(values)]
    percent = finite.size > 0 and finite.min() >= 0 and finite.max() <= 100
    ylabel = "CPU usage (%)" if percent else "metric value (dataset units)"
    fig, axes = plt.subplots(len(results), 1, figsize=(14, 3.6 * len(results)), squeeze=False)
    for ax, r in zip(axes[:, 0], results, strict=True):
        d = from_epoch(r.t)
        tail = max(0, len(r.train_t) - 2 * 288)
        ax.plot(
            from_epoch(r.train_t[tail:]),
            r.train_y[tail:],
            color="gray",
            lw=0.5,
            label="history",
        )
        ax.fill_between(d, r.lower, r.upper, color="tab:blue", alpha=0.2, label="band")
        ax.plot(d, r.y, color="black", lw=0.6, label="value")
        for a, b in r.true_events:
            ax.axvspan(d[a], d[b], color="orange", alpha=0.3, lw=0)
        ax.scatter(d[r.flagged], r.y[r.flagged], color="red", s=8, zorder=3, label="detected")
        ax.set_title(f"{r.id}: holdout replay (orange: true anomalies)")
        ax.set_ylabel(ylabel)
        date_axis(ax)
        ax.legend(loc="upper left", fontsize=8, ncol=4)
    fig.tight_layout()
    files.append(out / "detection_overview.png")
    fig.savefig(files[-1], dpi=80)
    plt.close(fig)

    sweep = metrics["threshold_analysis"]
    ks = [row["threshold_multiplier"] for row in sweep]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, level in zip(axes, ("point", "event"), strict=True):
        for name in ("precision", "recall", "f1"):
            ax.plot(ks, [row[level][name] for row in sweep], marker="o", label=name)
        ax.axvline(metrics["threshold_multiplier"], color="gray", ls="--", lw=1)
        ax.set_xlabel("score threshold (scoring.threshold_multiplier)")
        ax.set_ylabel("precision, recall, F1")
        ax.set_title(f"{level} level")
        ax.set_ylim(0, 1.02)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    files.append(out / "threshold_analysis.png")
    fig.savefig(files[-1], dpi=90)
    plt.close(fig)
    return files


def confusion_figure(cm: np.ndarray) -> Any:
    """Return the confusion-matrix figure of a 2x2 count matrix ``[[tn, fp], [fn, tp]]``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    image = ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        # Light digits on the dark half of the colour map, dark digits on the light half.
        r, g, b, _ = image.cmap(image.norm(v))
        dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
        ax.text(j, i, f"{v}", ha="center", va="center", color="white" if dark else "black", fontsize=12)
    ax.set_xticks([0, 1], ["normal", "anomaly"])
    ax.set_yticks([0, 1], ["normal", "anomaly"])
    ax.set_xlabel("detected")
    ax.set_ylabel("truth")
    ax.set_title("Confusion matrix (points)")
    fig.tight_layout()
    return fig
