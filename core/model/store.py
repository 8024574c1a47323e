"""The models the loop scores with: series id -> model, swapped atomically by refits."""

from __future__ import annotations

import threading

from loguru import logger

from core.model.artifact import ModelArtifact, SeriesModel

__all__ = ["ModelStore"]


class ModelStore:
    """Series id -> model; readers never lock, a refit replaces one entry by swapping the whole map.

    A series with no model of its own borrows the first model of the artifact (logged once) until a
    refit gives it its own.
    """

    def __init__(self, artifact: ModelArtifact | None = None) -> None:
        self._models: dict[str, SeriesModel] = dict(artifact.models) if artifact else {}
        self._default: SeriesModel | None = next(iter(self._models.values()), None)
        self.artifact = artifact
        self._lock = threading.Lock()
        self._warned: set[str] = set()

    def get(self, series_id: str) -> tuple[SeriesModel | None, bool]:
        """Return (model, borrowed) for a series; borrowed is True when it is another series' model."""
        model = self._models.get(series_id)
        if model is not None:
            return model, False
        if series_id not in self._warned:
            self._warned.add(series_id)
            if self._default is not None:
                logger.warning(
                    f"series {series_id} has no model of its own; using {self._default.id}'s until refit"
                )
            else:
                logger.warning(
                    f"series {series_id} has no model yet; its points are stored unscored until refit"
                )
        return self._default, True

    def own(self, series_id: str) -> SeriesModel | None:
        """Return the series' own model, if any."""
        return self._models.get(series_id)

    def put(self, model: SeriesModel) -> None:
        """Install a (re)fitted model; readers see the old map or the new one, never a mix."""
        with self._lock:
            models = dict(self._models)
            models[model.id] = model
            self._models = models
            if self._default is None:
                self._default = model

    def drop(self, series_id: str) -> None:
        """Forget a series' own model (the series is gone); the next artifact write leaves it out."""
        with self._lock:
            if series_id in self._models:
                models = dict(self._models)
                del models[series_id]
                self._models = models
            self._warned.discard(series_id)

    def models(self) -> dict[str, SeriesModel]:
        """Return a snapshot of all own models."""
        return dict(self._models)
