"""The models the loop scores with: series id -> model, swapped atomically by refits."""

from __future__ import annotations

import threading

from loguru import logger

from core.config import CPU_METRIC, METRIC_LABEL, metric_of_labels
from core.model.artifact import ModelArtifact, SeriesModel

__all__ = ["ModelStore"]


class ModelStore:
    """Series id -> model; readers never lock, a refit replaces one entry by swapping the whole map.

    A series with no model of its own borrows the first model of its metric (logged once) until a
    refit gives it its own: a memory series never borrows a CPU band.
    """

    def __init__(self, artifact: ModelArtifact | None = None) -> None:
        self._models: dict[str, SeriesModel] = dict(artifact.models) if artifact else {}
        self._defaults: dict[str, SeriesModel] = {}
        for model in self._models.values():
            self._defaults.setdefault(metric_of_labels(model.labels), model)
        self.artifact = artifact
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def get(self, series_id: str) -> tuple[SeriesModel | None, bool]:
        """Return (model, borrowed) for a series; borrowed is True when it is another series' model."""
        model = self._models.get(series_id)
        if model is not None:
            return model, False
        default = self._defaults.get(_metric_of_id(series_id))
        if series_id not in self._warned:
            self._warned.add(series_id)
            if default is not None:
                logger.warning(
                    f"series {series_id} has no model of its own; using {default.id}'s until refit"
                )
            else:
                logger.warning(
                    f"series {series_id} has no model yet; its points are stored unscored until refit"
                )
        return default, True

    def own(self, series_id: str) -> SeriesModel | None:
        """Return the series' own model, if any."""
        return self._models.get(series_id)

    def put(self, model: SeriesModel) -> None:
        """Install a (re)fitted model; readers see the old map or the new one, never a mix."""
        with self._lock:
            models = dict(self._models)
            models[model.id] = model
            self._models = models
            self._defaults.setdefault(metric_of_labels(model.labels), model)

    def drop(self, series_id: str) -> None:
        """Forget a series' own model (the series is gone); the next artifact write leaves it out."""
        with self._lock:
            if series_id in self._models:
                models = dict(self._models)
                gone = models.pop(series_id)
                self._models = models
                metric = metric_of_labels(gone.labels)
                if self._defaults.get(metric) is gone:
                    same = (m for m in models.values() if metric_of_labels(m.labels) == metric)
                    successor = next(same, None)
                    if successor is None:
                        del self._defaults[metric]
                    else:
                        self._defaults[metric] = successor
            self._warned.discard(series_id)

    def models(self) -> dict[str, SeriesModel]:
        """Return a snapshot of all own models."""
        return dict(self._models)


_METRIC_PREFIX = f"{METRIC_LABEL}="


def _metric_of_id(series_id: str) -> str:
    """Return the metric of a series id: its leading ``metric=<name>`` label, else ``cpu``."""
    if not series_id.startswith(_METRIC_PREFIX):
        return CPU_METRIC
    return series_id[len(_METRIC_PREFIX) :].split(",", 1)[0]
