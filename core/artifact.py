"""Old import path of :mod:`core.model.artifact`, kept for ``core/evaluate.py`` (not yet moved)."""

from __future__ import annotations

from core.model.artifact import ModelArtifact, SeriesModel, load_artifact

__all__ = ["ModelArtifact", "SeriesModel", "load_artifact"]
