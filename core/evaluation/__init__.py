"""The evaluation room: the holdout replay (evaluate mode) and the NAB benchmark (evaluate --nab-dir).

holdout.py   evaluate(): split, inject, assemble.replay, truth, report
inject.py    inject_anomalies, DURATIONS
results.py   EvaluatedSeries, summarise (the pooled metrics and the baseline beside them)
report.py    evaluation_report.txt, the four evaluation plots, model_metadata.json merge
metrics.py   point, event and ROC metrics
plots.py     the training plots (matplotlib chosen lazily)
labels.py    labelled incidents (NAB's combined_windows.json format)
baseline.py  the ten-line baseline
nab/         the NAB corpus, its scorer and the run over it
"""

from __future__ import annotations

from core.evaluation.holdout import evaluate
from core.evaluation.nab.run import run_nab

__all__ = ["evaluate", "run_nab"]
