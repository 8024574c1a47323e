"""The Numenta Anomaly Benchmark: the corpus and its files, NAB's scoring rules, the detector's run.

    corpus.py   read_windows, map_windows, load_corpus; NAB's results files
    scorer.py   row weights, threshold sweep, normalisation, score_corpus
    run.py      replay_file, score_file, nab_score, run_nab (the production loop over each file)

The corpus and scorer names are exported here (``from core.evaluation import nab``; ``nab.score_corpus``).
"""

from __future__ import annotations

from core.evaluation.nab.corpus import (
    TIMESTAMP_FORMAT,
    CorpusFile,
    Window,
    load_corpus,
    map_windows,
    read_results,
    read_windows,
    results_path,
    write_results,
)
from core.evaluation.nab.scorer import (
    LOW_FN,
    LOW_FP,
    PROFILES,
    STANDARD,
    Entry,
    Profile,
    best_threshold,
    file_score,
    normalised_score,
    probationary_period,
    row_weights,
    score_corpus,
    score_results_dir,
    threshold_sweep,
)

__all__ = [
    "LOW_FN",
    "LOW_FP",
    "PROFILES",
    "STANDARD",
    "TIMESTAMP_FORMAT",
    "CorpusFile",
    "Entry",
    "Profile",
    "Window",
    "best_threshold",
    "file_score",
    "load_corpus",
    "map_windows",
    "normalised_score",
    "probationary_period",
    "read_results",
    "read_windows",
    "results_path",
    "row_weights",
    "score_corpus",
    "score_results_dir",
    "threshold_sweep",
    "write_results",
]
