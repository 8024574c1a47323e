"""Old import path of :mod:`core.model.artifact`, kept for modules not yet moved (detector, evaluate)."""

from __future__ import annotations

from core.model.artifact import ModelArtifact, SeriesModel, load_artifact

__all__ = ["ModelArtifact", "SeriesModel", "load_artifact"]
