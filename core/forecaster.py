"""Old import path of :mod:`core.model.forecaster`, kept for ``core/evaluate.py`` (not yet moved)."""

from __future__ import annotations

from core.model.forecaster import fit_with_fallback

__all__ = ["fit_with_fallback"]
