"""Experiment driver for the NAB detector: cache the loop's records per file, then score mappings fast.

    python bench/nab_experiments.py cache VARIANT   # replay every file once (slow: 1.5-7 min)
    python bench/nab_experiments.py table           # the experiments table (cached variants)
    python bench/nab_experiments.py split           # split validation: choose on one half, test the other
    python bench/nab_experiments.py boot            # paired bootstrap over files of the adopted changes

A variant is a set of replay choices (Prophet settings, first fit, refit schedule); its records are
cached under ``$NAB_BENCH_CACHE/<variant>/`` (default ``~/.cache/nab_bench``, outside the repo). The
mapping (``core.nab_eval.nab_scores``) runs on the cached records, so trying one takes a second or two.
The halves alternate the files of each category (sorted by name). Final numbers come from
``python main.py --mode evaluate --nab-dir ../shared/nab``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import nab  # noqa: E402
from core.config import load_settings  # noqa: E402
from core.nab_eval import DEFAULT, NabParams, epoch_seconds, nab_scores, nab_settings, replay_file  # noqa: E402
from core.timegrid import DAY, WEEK  # noqa: E402

NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "nab"
CACHE = Path(os.environ.get("NAB_BENCH_CACHE", Path.home() / ".cache" / "nab_bench"))  # outside the repo
FAST = {"uncertainty_samples": 200, "horizon_days": 2.0}

# name -> (extra model settings, NabParams replay fields)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "base": ({}, {"first_fit": 1.0, "uncertainty_samples": 1000, "horizon_days": 7.0}),
    "early50": ({}, FAST | {"first_fit": 0.5}),
    "early25": ({}, FAST | {"first_fit": 0.25}),
    "early10": ({}, FAST | {"first_fit": 0.1}),
    "fourier20": ({"daily_fourier_order": 20}, FAST | {"first_fit": 0.25}),
    "refit6h": ({}, FAST | {"first_fit": 0.25, "refit_interval": DAY / 4}),
    "cps05": ({"changepoint_prior_scale": 0.5}, FAST | {"first_fit": 0.25}),
}

OLD = {"scale_window": 2016, "smooth": 6, "lags": (), "lagged_mean": False}  # the mapping before this work
MID = {"scale_window": 1000, "smooth": 12, "lagged_mean": False}  # the first adopted mapping (lags both)

# (what changed, variant, mapping fields): the rows of the experiments table, in the order tried.
EXPERIMENTS: list[tuple[str, str, dict[str, Any]]] = [
    ("starting point: first fit after P rows, W 2016, mean of 6, no lags", "base", OLD),
    ("first fit after P/2 rows", "early50", OLD),
    ("first fit after P/4 rows", "early25", OLD),
    ("first fit after P/10 rows", "early10", OLD),
    ("P/4, scale window 1000 rows", "early25", OLD | {"scale_window": 1000}),
    ("P/4, mean of 12", "early25", OLD | {"smooth": 12}),
    ("P/4, scale 1000 and mean of 12", "early25", OLD | {"scale_window": 1000, "smooth": 12}),
    ("P/4, 1000 / 12, quantile 0.995", "early25", MID | {"lags": (), "quantile": 0.995}),
    ("P/4, 1000 / 12, scale window 700", "early25", MID | {"lags": (), "scale_window": 700}),
    ("P/4, 1000 / 12, scale window 1500", "early25", MID | {"lags": (), "scale_window": 1500}),
    ("P/4, 1000 / 12, mean of 24", "early25", MID | {"lags": (), "smooth": 24}),
    ("P/4, 1000 / 12, suppress 144", "early25", MID | {"lags": (), "suppress": 144}),
    ("P/4, 1000 / 12, lag 1 day (point channel)", "early25", MID | {"lags": (DAY,)}),
    ("P/4, 1000 / 12, lag 1 week (point channel)", "early25", MID | {"lags": (WEEK,)}),
    ("P/4, 1000 / 12, lags 1 day and 1 week (point channel)", "early25", MID),
    ("... and first fit after P", "base", MID),
    ("... and first fit after P/2", "early50", MID),
    ("... and first fit after P/10", "early10", MID),
    ("... and Prophet daily Fourier order 20", "fourier20", MID),
    ("... and refit every 6 h", "refit6h", MID),
    ("... and changepoint_prior_scale 0.5", "cps05", MID),
    ("... and mean of 24", "early25", MID | {"smooth": 24}),
    ("... and lags on the mean channel too", "early25", MID | {"lagged_mean": True}),
    ("... and both: lagged mean of 24", "early25", MID | {"smooth": 24, "lagged_mean": True}),
    ("lagged mean of 18 (W 1000)", "early25", MID | {"smooth": 18, "lagged_mean": True}),
    ("lagged mean of 48 (W 1000)", "early25", MID | {"smooth": 48, "lagged_mean": True}),
    ("lagged mean of 24, scale window 400", "early25", {"scale_window": 400}),
    ("lagged mean of 24, scale window 700 (adopted)", "early25", {}),
    ("lagged mean of 24, scale window 1200", "early25", {"scale_window": 1200}),
    ("adopted, first fit after P", "base", {}),
    ("adopted, first fit after P/2", "early50", {}),
    ("adopted, first fit after P/10", "early10", {}),
    ("adopted, Prophet daily Fourier order 20", "fourier20", {}),
    ("adopted, refit every 6 h", "refit6h", {}),
    ("adopted, changepoint_prior_scale 0.5", "cps05", {}),
]


def corpus() -> list[nab.CorpusFile]:
    """Load the shared subset."""
    return nab.load_corpus(NAB_DIR / "data", NAB_DIR / "labels" / "combined_windows.json")


def halves(files: Sequence[nab.CorpusFile]) -> tuple[list[str], list[str]]:
    """Split the files in two: alternate files (sorted by key) within each category."""
    a: list[str] = []
    b: list[str] = []
    by_cat: dict[str, list[str]] = {}
    for f in files:
        by_cat.setdefault(f.key.split("/")[0], []).append(f.key)
    for keys in by_cat.values():
        for i, key in enumerate(sorted(keys)):
            (a if i % 2 == 0 else b).append(key)
    return a, b


def _variant_params(variant: str) -> tuple[dict[str, Any], NabParams]:
    model, replay_fields = VARIANTS[variant]
    return model, dataclasses.replace(DEFAULT, **replay_fields)


def _cache_one(variant: str, file: nab.CorpusFile) -> tuple[str, float]:
    model, params = _variant_params(variant)
    settings = nab_settings(load_settings(None, env={}), params)
    settings = settings.model_copy(update={"model": settings.model.model_copy(update=model)})
    started = time.perf_counter()
    rec = replay_file(settings, file, params)
    target = CACHE / variant / (file.key.replace("/", "__") + ".npz")
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez(target, **rec)
    return file.key, time.perf_counter() - started


def cache(variant: str, n_jobs: int = 2) -> None:
    """Replay every file with the variant's settings and store the records."""
    from joblib import Parallel, delayed

    files = corpus()
    started = time.perf_counter()
    for key, seconds in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(_cache_one)(variant, f) for f in files
    ):
        print(f"{key}: {seconds:.1f} s", flush=True)
    print(f"{variant}: {time.perf_counter() - started:.0f} s")


def load(variant: str, files: Sequence[nab.CorpusFile]) -> dict[str, dict[str, np.ndarray]]:
    """Load a variant's cached records."""
    out = {}
    for f in files:
        with np.load(CACHE / variant / (f.key.replace("/", "__") + ".npz")) as data:
            out[f.key] = {k: data[k] for k in data.files}
        out[f.key].setdefault("ts", epoch_seconds(f))
    return out


def map_all(recs: dict[str, dict[str, np.ndarray]], fields: dict[str, Any]) -> dict[str, np.ndarray]:
    """Apply the mapping with the given NabParams fields to every cached file."""
    params = dataclasses.replace(DEFAULT, **fields)
    return {k: nab_scores(r["ts"], r["value"], r["yhat"], params) for k, r in recs.items()}


def standard(files: Sequence[nab.CorpusFile], scores: dict[str, np.ndarray], keys: Sequence[str]) -> float:
    """Return the standard NAB score of the named files (duplicates allowed), threshold optimised."""
    by_key = {f.key: f for f in files}
    entries = [(scores[k], by_key[k].windows) for k in keys]
    _, raw = nab.best_threshold(entries, nab.STANDARD)
    n = sum(1 for k in keys for _, r in by_key[k].windows if r >= nab.probationary_period(by_key[k].rows))
    return nab.normalised_score(raw, n, nab.STANDARD)


def at_threshold(
    files: Sequence[nab.CorpusFile], scores: dict[str, np.ndarray], threshold: float, keys: Sequence[str]
) -> float:
    """Return the standard score of the named files at a fixed threshold (transferred threshold)."""
    chosen = [f for f in files if f.key in keys]
    raw = sum(nab.file_score(scores[f.key], f.windows, nab.STANDARD, threshold) for f in chosen)
    n = sum(1 for f in chosen for _, r in f.windows if r >= nab.probationary_period(f.rows))
    return nab.normalised_score(raw, n, nab.STANDARD)


def table() -> None:
    """Print the experiments table (markdown)."""
    files = corpus()
    a, b = halves(files)
    cached: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    print("| change | variant | standard | low FP | low FN | half A | half B |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for what, variant, fields in EXPERIMENTS:
        if not (CACHE / variant).is_dir():
            print(f"| {what} | {variant} | not cached | | | | |")
            continue
        recs = cached.setdefault(variant, load(variant, files))
        scores = map_all(recs, fields)
        full = nab.score_corpus(files, scores)
        print(
            f"| {what} | {variant} | {full['standard']:.1f} | {full['reward_low_FP_rate']:.1f} | "
            f"{full['reward_low_FN_rate']:.1f} | {standard(files, scores, a):.1f} | "
            f"{standard(files, scores, b):.1f} |",
            flush=True,
        )


SPLIT_VARIANTS = ("base", "early50", "early25", "early10")
SPLIT_GRID: dict[str, Sequence[Any]] = {
    "scale_window": (400, 700, 1000, 2016),
    "smooth": (6, 12, 24, 48),
    "lags": ((), (DAY,), (DAY, WEEK)),
    "lagged_mean": (False, True),
}


def split() -> None:
    """Choose the variant and mapping on one half, report the other half with them; both ways."""
    files = corpus()
    a, b = halves(files)
    names = list(SPLIT_GRID)
    results = []  # (variant, fields, scores)
    for variant in SPLIT_VARIANTS:
        recs = load(variant, files)
        for values in itertools.product(*SPLIT_GRID.values()):
            fields = dict(zip(names, values, strict=True))
            results.append((variant, fields, map_all(recs, fields)))
    per = len(results) // len(SPLIT_VARIANTS)
    print(f"{len(results)} configurations ({len(SPLIT_VARIANTS)} replay variants x {per} mappings)")
    for train, test, label in ((a, b, "choose on A, test on B"), (b, a, "choose on B, test on A")):
        best = max(results, key=lambda item: standard(files, item[2], train))
        variant, fields, scores = best
        threshold, _ = nab.best_threshold(
            [(scores[f.key], f.windows) for f in files if f.key in train], nab.STANDARD
        )
        print(
            f"{label}: {variant} {fields}: train {standard(files, scores, train):.1f}, "
            f"test {standard(files, scores, test):.1f} (threshold re-optimised on the test half, as NAB "
            f"does), {at_threshold(files, scores, threshold, test):.1f} (train half's threshold)"
        )
        adopted = next(
            s for v, f, s in results if v == "early25" and f == {n: getattr(DEFAULT, n) for n in names}
        )
        shown = ", ".join(f"{n}={getattr(DEFAULT, n)}" for n in names)
        print(f"  adopted (early25, {shown}) on the test half: {standard(files, adopted, test):.1f}")


BOOT_PAIRS: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
    ("first fit P -> P/4", "base", OLD, "early25", OLD),
    ("scale window 2016 -> 1000, mean 6 -> 12", "early25", OLD, "early25", MID | {"lags": ()}),
    ("no lags -> lags 1 day, 1 week (point)", "early25", MID | {"lags": ()}, "early25", MID),
    ("lag 1 day -> lags 1 day, 1 week (point)", "early25", MID | {"lags": (DAY,)}, "early25", MID),
    ("mean 12 -> lagged mean of 24", "early25", MID, "early25", MID | {"smooth": 24, "lagged_mean": True}),
    ("the same, first fit P/10", "early10", MID, "early10", MID | {"smooth": 24, "lagged_mean": True}),
    ("the same, first fit P/2", "early50", MID, "early50", MID | {"smooth": 24, "lagged_mean": True}),
    ("the same, Fourier order 20", "fourier20", MID, "fourier20", MID | {"smooth": 24, "lagged_mean": True}),
    ("scale window 1000 -> 700", "early25", {"scale_window": 1000}, "early25", {}),
    ("starting point -> adopted", "base", OLD, "early25", {}),
]


def boot(replicates: int = 200, seed: int = 0) -> None:
    """Paired bootstrap over files: how often does a change help when the files are resampled?"""
    files = corpus()
    keys = [f.key for f in files]
    rng = np.random.default_rng(seed)
    draws = [[keys[i] for i in rng.integers(0, len(keys), len(keys))] for _ in range(replicates)]
    cached: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for what, va, fa, vb, fb in BOOT_PAIRS:
        sa = map_all(cached.setdefault(va, load(va, files)), fa)
        sb = map_all(cached.setdefault(vb, load(vb, files)), fb)
        diffs = []
        for draw in draws:
            if any(w for k in draw for w in [f.windows for f in files if f.key == k][0]):
                diffs.append(standard(files, sb, draw) - standard(files, sa, draw))
        d = np.array(diffs)
        print(
            f"{what}: full {standard(files, sb, keys) - standard(files, sa, keys):+.1f}, "
            f"bootstrap mean {d.mean():+.1f} sd {d.std():.1f}, helps in {100 * (d > 0).mean():.0f}%",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("command", choices=["cache", "table", "split", "boot"])
    p.add_argument("variant", nargs="?", choices=sorted(VARIANTS))
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    if args.command == "cache":
        if args.variant is None:
            p.error("cache needs a variant")
        cache(args.variant, args.jobs)
    elif args.command == "table":
        table()
    elif args.command == "split":
        split()
    else:
        boot()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
