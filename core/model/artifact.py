"""Save and load the model artifact: JSON Lines, one series a line, never a pickle.

Schema version 2 (written): line 1 is the envelope, each further line one series::

    {"schema": "anomaly-detector/model", "schema_version": 2, "model_version": "20261123T152000Z-ab12",
     "created_at": ..., "config_hash": "sha256:...", "model_settings": {...},
     "versions": {"app": ..., "prophet": ..., "pandas": ..., "numpy": ..., "python": ...},
     "series_count": 1000}
    {"id": "host=web-01", "labels": {...}, "kind": "prophet", "unit": "percent", "scale": 1.0,
     "training": {"start": ..., "end": ..., "rows": ..., "fit_seconds": ...},
     "band": {"start", "step", "trained_until", "n", "dtype": "<f8", "sha256",
              "yhat", "lower", "upper": base64 of little-endian float64},
     "prophet": "<Prophet's model_to_json text, history cut to two rows>" | null, "note": ""}

The loader reads a line at a time (a fleet's file is never held whole in memory), checks every band's
SHA-256 and its length, and never needs Prophet: the band is all the monitor uses. Schema version 1
(one JSON object, ``"series": [...]`` with the bands as JSON number lists) is still read.
Prophet's serialisation is kept as text so the model itself can be inspected or re-forecast
(``SeriesModel.prophet_model``); without its training rows and its per-row fitted trend it is about
9 KB a series.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import __version__, heap
from core.band import Band
from core.errors import ModelError
from core.fsutil import atomic_open
from core.timegrid import iso_to_epoch, to_iso

if TYPE_CHECKING:
    from core.model.forecaster import FittedModel

__all__ = [
    "READABLE_VERSIONS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ModelArtifact",
    "SeriesModel",
    "load_artifact",
    "save_artifact",
]

SCHEMA = "anomaly-detector/model"
SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass
class SeriesModel:
    """The model of one series: its band and how it was trained."""

    id: str
    labels: dict[str, str]
    kind: str
    band: Band
    unit: str = "raw"
    scale: float = 1.0
    train_start: float = 0.0
    train_end: float = 0.0
    train_rows: int = 0
    fit_seconds: float = 0.0
    prophet: str | None = field(default=None, repr=False)
    note: str = ""

    @classmethod
    def from_fitted(
        cls, fitted: FittedModel, sid: str, labels: dict[str, str], *, unit: str = "raw", scale: float = 1.0
    ) -> SeriesModel:
        """Wrap a freshly fitted model of series ``sid``."""
        return cls(
            id=sid,
            labels=labels,
            kind=fitted.kind,
            band=fitted.band,
            unit=unit,
            scale=scale,
            train_start=fitted.train_start,
            train_end=fitted.train_end,
            train_rows=fitted.train_rows,
            fit_seconds=fitted.fit_seconds,
            prophet=fitted.params,
            note=fitted.note,
        )

    def to_dict(self) -> dict[str, Any]:
        """Return the series entry of the envelope."""
        return {
            "id": self.id,
            "labels": self.labels,
            "kind": self.kind,
            "unit": self.unit,
            "scale": self.scale,
            "training": {
                "start": to_iso(self.train_start),
                "end": to_iso(self.train_end),
                "rows": self.train_rows,
                "fit_seconds": round(self.fit_seconds, 3),
            },
            "band": self.band.to_compact(),
            "prophet": self.prophet,
            "note": self.note,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeriesModel:
        """Build a series model from its envelope entry."""
        training = data["training"]
        return cls(
            id=str(data["id"]),
            labels={str(k): str(v) for k, v in data.get("labels", {}).items()},
            kind=str(data["kind"]),
            band=Band.from_compact(data["band"])
            if "sha256" in data["band"]
            else Band.from_dict(data["band"]),
            unit=str(data.get("unit", "raw")),
            scale=float(data.get("scale", 1.0)),
            train_start=iso_to_epoch(training["start"]),
            train_end=iso_to_epoch(training["end"]),
            train_rows=int(training["rows"]),
            fit_seconds=float(training.get("fit_seconds", 0.0)),
            prophet=data.get("prophet"),
            note=str(data.get("note", "")),
        )

    def prophet_model(self) -> Any:
        """Rebuild the Prophet model from its JSON serialisation (slow; never on the hot path)."""
        if self.prophet is None:
            raise ModelError(f"series {self.id}: model kind {self.kind!r} has no Prophet serialisation")
        from core.model.forecaster import quiet_stan

        quiet_stan()
        from prophet.serialize import model_from_json

        return model_from_json(self.prophet)


@dataclass
class ModelArtifact:
    """Every series model of one training run, with the envelope's provenance."""

    models: dict[str, SeriesModel]
    config_hash: str
    model_settings: dict[str, Any]
    model_version: str = ""
    created_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.created_at:
            now = datetime.now(UTC)
            self.created_at = now.isoformat(timespec="seconds")
            self.model_version = self.model_version or f"{now:%Y%m%dT%H%M%SZ}-{self.config_hash[-6:]}"
        if not self.versions:
            self.versions = package_versions()

    def header(self) -> dict[str, Any]:
        """Return the envelope line of the file (everything but the series)."""
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "model_version": self.model_version,
            "created_at": self.created_at,
            "config_hash": self.config_hash,
            "model_settings": self.model_settings,
            "versions": self.versions,
            "series_count": len(self.models),
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the whole envelope as JSON-able data."""
        envelope = {k: v for k, v in self.header().items() if k != "series_count"}
        return {**envelope, "series": [m.to_dict() for m in self.models.values()]}


def package_versions() -> dict[str, str]:
    """Return the versions of the packages that shape a model."""
    versions = {"app": __version__, "python": platform.python_version()}
    for package in ("prophet", "cmdstanpy", "pandas", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def save_artifact(artifact: ModelArtifact, path: str | Path) -> int:
    """Write the artifact atomically, one line per series (no whole-file string); return its size."""
    with atomic_open(path) as handle:
        handle.write(json.dumps(artifact.header(), allow_nan=False, separators=(",", ":")) + "\n")
        for model in artifact.models.values():
            handle.write(json.dumps(model.to_dict(), allow_nan=False, separators=(",", ":")) + "\n")
    return Path(path).stat().st_size


def load_artifact(path: str | Path) -> ModelArtifact:
    """Read and check an artifact; raise ModelError naming the file and the fix."""
    file = Path(path)
    if not file.is_file():
        raise ModelError(
            f"{file}: model file not found; run 'python main.py --mode train' first or pass --model-path"
        )
    try:
        with file.open(encoding="utf-8") as handle:
            data = _json_line(file, handle.readline(), 1)
            _check_envelope(file, data)
            if data["schema_version"] == 1:
                models = [SeriesModel.from_dict(entry) for entry in data.get("series")]
            else:
                # One line at a time, each turned into its model before the next is read: the file's
                # text (base64 bands) is never held whole (a 1,000-series store peaked at 2.3x its
                # arrays when every line was parsed first).
                lines = enumerate(handle, start=2)
                models = [SeriesModel.from_dict(_json_line(file, line, n)) for n, line in lines]
                if len(models) != data.get("series_count"):
                    raise ModelError(
                        f"{file}: holds {len(models)} series, its envelope names {data.get('series_count')} "
                        f"(a truncated copy?); copy it again or retrain with --mode train"
                    )
            heap.trim()  # the lines' text is gone: give its pages back
            return _artifact(data, models)
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{file}: cannot read model file ({exc})") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(
            f"{file}: artifact is incomplete or corrupt ({exc!r}); retrain with --mode train"
        ) from exc


def _json_line(file: Path, line: str, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{file}: not a JSON model artifact (line {number}: {exc.msg}); retrain with --mode train"
        ) from exc


def _check_envelope(file: Path, data: Any) -> None:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ModelError(f"{file}: not a model artifact of this tool (schema {SCHEMA!r} expected); retrain")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ModelError(
            f"{file}: artifact schema version {version} is not supported "
            f"(this build reads {', '.join(map(str, READABLE_VERSIONS))}); "
            f"retrain with --mode train"
        )


def _artifact(data: dict[str, Any], models: list[SeriesModel]) -> ModelArtifact:
    return ModelArtifact(
        models={m.id: m for m in models},
        config_hash=str(data["config_hash"]),
        model_settings=dict(data.get("model_settings", {})),
        model_version=str(data.get("model_version", "")),
        created_at=str(data.get("created_at", "")),
        versions=dict(data.get("versions", {})),
    )
