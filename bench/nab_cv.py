"""Choose the calibration by leave-one-category-out cross-validation on a NAB corpus.

    python -m bench.nab_cv cache [--nab-dir ../shared/nab]   # replay every file once (minutes)
    python -m bench.nab_cv cv    [--nab-dir ../shared/nab]   # score the grid, in-sample and LOCO CV
    python -m bench.nab_cv check [--nab-dir ../shared/nab]   # the columnar calibrator: same scores?

``cache`` replays each file through the production path (``core.evaluation.nab.run.replay_file``) and
keeps what the calibrator was given at every row (value, yhat and the trained band), under ``$NAB_CV_CACHE``
(default ``~/.cache/nab_cv``, outside the repository). The refits do not depend on the calibration, so
``cv`` can then run the real :class:`core.calibration.SeriesCalibrator` with any parameters on the
cached inputs and get exactly the scores the monitor would write, in seconds.

Cross-validation: for each of the corpus' categories, the parameter set and the NAB threshold are chosen
on the other categories and the held-out category is scored with both; the held-out raw scores of all
categories are summed and normalised as NAB normalises a corpus. That is the estimate of the score on
data the parameters were not chosen on; the in-sample score (every parameter set on all files, the
threshold chosen on all files) is printed beside it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from core.calibration import CalibrationParams, SeriesCalibrator
from core.columnar import ColumnarCalibrator
from core.config import load_settings
from core.evaluation import nab
from core.evaluation.nab.run import nab_score, replay_file
from core.evaluation.nab.scorer import _scorable_windows

CACHE = Path(os.environ.get("NAB_CV_CACHE", Path.home() / ".cache" / "nab_cv"))
STANDARD = nab.PROFILES[0]

# The grid: every combination is one parameter set (one set serves every series).
GRID: dict[str, list[Any]] = {
    "window": [500, 1000, 2016],
    "p1": [0.0005, 0.001, 0.0025],
    "shift_window": [6, 12, 24],
}


class Recorder(SeriesCalibrator):
    """A calibrator that also keeps its inputs (for the cache)."""

    def __init__(self, params: CalibrationParams) -> None:
        super().__init__(params)
        self.inputs: list[np.ndarray] = []

    def update(
        self, t: np.ndarray, y: np.ndarray, yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray
    ) -> Any:
        """Keep the inputs, then calibrate as usual."""
        self.inputs.append(np.vstack([t, y, yhat, lower, upper]))
        return super().update(t, y, yhat, lower, upper)


def _cache_one(file: nab.CorpusFile, out: Path) -> tuple[str, float]:
    from loguru import logger

    logger.disable("core")
    started = time.perf_counter()
    made: list[Recorder] = []

    def factory(params: CalibrationParams) -> Recorder:
        made.append(Recorder(params))
        return made[-1]

    replay_file(load_settings(None, env={}), file, calibrator=factory)
    inputs = np.hstack(made[0].inputs)
    np.save(out / (file.key.replace("/", "__") + ".npy"), inputs)
    return file.key, time.perf_counter() - started


def cache(files: list[nab.CorpusFile]) -> None:
    """Replay every file once and store the calibrator's inputs."""
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs = Parallel(n_jobs=2, return_as="generator_unordered")(
        delayed(_cache_one)(f, CACHE) for f in sorted(files, key=lambda f: -f.rows)
    )
    for key, seconds in jobs:
        print(f"{seconds:6.1f} s  {key}", flush=True)
    print(f"cached {len(files)} files in {time.perf_counter() - started:.0f} s under {CACHE}")


def scores_for(inputs: dict[str, np.ndarray], params: CalibrationParams) -> dict[str, np.ndarray]:
    """Return each file's NAB scores under one parameter set (exactly the monitor's scores, mapped)."""
    out = {}
    for key, (t, y, yhat, lower, upper) in inputs.items():
        out[key] = nab_score(SeriesCalibrator(params).update(t, y, yhat, lower, upper).score)
    return out


def columnar_scores(
    inputs: dict[str, np.ndarray], params: CalibrationParams, path: str | None = None
) -> dict[str, np.ndarray]:
    """Return :func:`scores_for`'s scores from one :class:`ColumnarCalibrator`, every file a slot."""
    keys = list(inputs)
    sizes = np.array([inputs[k].shape[1] for k in keys], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    t, y, yhat, lower, upper = np.hstack([inputs[k] for k in keys])
    col = ColumnarCalibrator(params, capacity=len(keys))
    col.path = path
    out = col.update_runs(col.slots(keys), starts, t, y, yhat, lower, upper).score
    return {k: nab_score(out[s : s + n]) for k, s, n in zip(keys, starts, sizes, strict=True)}


def check(files: list[nab.CorpusFile]) -> dict[str, Any]:
    """Score the default calibration with both calibrators; report NAB and any score that differs."""
    inputs = {f.key: np.load(CACHE / (f.key.replace("/", "__") + ".npy")) for f in files}
    params = CalibrationParams()
    started = time.perf_counter()
    ref = scores_for(inputs, params)
    ref_s = time.perf_counter() - started
    summary: dict[str, Any] = {
        "files": len(files),
        "rows": int(sum(v.shape[1] for v in inputs.values())),
        "standard_series_calibrator": round(nab.score_corpus(files, ref)["standard"], 2),
        "seconds": {"series_calibrator": round(ref_s, 1)},
    }
    for path in ("vectorised", None):  # every file a run of one vectorised pass per row; the default
        name = f"columnar_{path or 'default'}"
        started = time.perf_counter()
        col = columnar_scores(inputs, params, path)
        summary["seconds"][name] = round(time.perf_counter() - started, 1)
        summary[f"standard_{name}"] = round(nab.score_corpus(files, col)["standard"], 2)
        summary[f"files_with_different_scores_{name}"] = {
            k: int(np.sum(ref[k] != col[k])) for k in inputs if not np.array_equal(ref[k], col[k])
        }
    print(json.dumps(summary, indent=1))
    return summary


def category(key: str) -> str:
    """Return a file key's category (its folder)."""
    return key.split("/")[0]


def _evaluate(files: list[nab.CorpusFile], scores: dict[str, np.ndarray]) -> dict[str, Any]:
    cats = sorted({category(f.key) for f in files})
    held: dict[str, tuple[float, float]] = {}
    for c in cats:
        train = [f for f in files if category(f.key) != c]
        test = [f for f in files if category(f.key) == c]
        threshold, raw_train = nab.best_threshold([(scores[f.key], f.windows) for f in train], STANDARD)
        raw_test = sum(nab.file_score(scores[f.key], f.windows, STANDARD, threshold) for f in test)
        held[c] = (raw_train, raw_test)
    return {"in_sample": nab.score_corpus(files, scores)["standard"], "held": held}


def cv(files: list[nab.CorpusFile]) -> dict[str, Any]:
    """Score the grid in-sample and by leave-one-category-out cross-validation."""
    inputs = {f.key: np.load(CACHE / (f.key.replace("/", "__") + ".npy")) for f in files}
    names = list(GRID)
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*GRID.values())]
    results = []
    for combo in combos:
        params = CalibrationParams(**combo)
        results.append((combo, _evaluate(files, scores_for(inputs, params))))
    for combo, res in sorted(results, key=lambda r: -r[1]["in_sample"]):
        print(f"{res['in_sample']:5.1f}  {json.dumps(combo)}")
    total, picks = 0.0, {}
    for c in sorted({category(f.key) for f in files}):
        combo, res = max(results, key=lambda r: r[1]["held"][c][0])
        picks[c] = combo
        total += res["held"][c][1]
    windows = sum(_scorable_windows(f.rows, f.windows) for f in files)
    loco = nab.normalised_score(total, windows, STANDARD)
    default = {k: getattr(CalibrationParams(), k) for k in names}
    default_res = next(r for c, r in results if c == default)
    summary = {
        "default": default,
        "default_in_sample": round(default_res["in_sample"], 1),
        "loco_cv": round(loco, 1),
        "picked_per_held_out_category": picks,
    }
    print(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run the cache or the cross-validation."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("step", choices=["cache", "cv", "check"])
    parser.add_argument("--nab-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "nab"))
    args = parser.parse_args(argv)
    root = Path(args.nab_dir)
    files = nab.load_corpus(root / "data", root / "labels" / "combined_windows.json")
    if args.step == "cache":
        cache(files)
    elif args.step == "check":
        check(files)
    else:
        cv(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
