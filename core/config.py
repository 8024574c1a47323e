"""Load the settings once: built-in defaults < ``config.yaml`` < environment < command-line flags.

The result is one validated, frozen :class:`Settings` object. Unknown keys are errors that name the key
and the nearest valid one; secrets (tokens, passwords) are never read from the YAML file, only from the
environment or from a file named in it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.config_io import describe, dig, interpolate, read_secret_file, read_yaml, set_dotted, short
from core.errors import ConfigError
from core.redact import redact_url
from core.scoring import ScoreParams
from core.sharding import parse_shard

__all__ = [
    "CPU_METRIC",
    "ENV_VARS",
    "SEVERITIES",
    "AlertRuleSettings",
    "AlertSettings",
    "METRIC_LABEL",
    "DataSettings",
    "EvaluationSettings",
    "InfluxSettings",
    "LoggingSettings",
    "MetricModelSettings",
    "MetricSettings",
    "ModelSettings",
    "MonitoringSettings",
    "PrometheusSettings",
    "QualitySettings",
    "ScoringSettings",
    "Settings",
    "SimulatorSettings",
    "SpoolSettings",
    "TelemetrySettings",
    "load_settings",
    "metric_of_labels",
    "redact_url",
]


def _check_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {value!r}; use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from exc
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    def __repr_args__(self) -> Any:
        """Show URLs without their user:password part (a repr ends up in logs)."""
        for key, value in super().__repr_args__():
            yield key, redact_url(value) if key == "url" and isinstance(value, str) else value


class DataSettings(_Section):
    """How input CSV files are read and cleaned."""

    timestamp_column: str = "timestamp"
    value_column: str = "auto"
    unit: Literal["auto", "fraction", "percent", "raw"] = "auto"
    timezone: str = "UTC"
    duplicate_policy: Literal["last", "first", "mean"] = "last"
    gap_factor: float = Field(3.0, gt=1.0)
    min_rows: int = Field(288, ge=10)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _check_zone(value)


class ModelSettings(_Section):
    """The Prophet model fitted per series and the band precomputed from it."""

    kind: Literal["prophet", "profile"] = "prophet"
    fallback: bool = True
    daily_seasonality: bool = True
    weekly_seasonality: bool = True
    yearly_seasonality: bool = False
    weekend_daily_seasonality: bool = True
    daily_fourier_order: int = Field(8, ge=1, le=50)
    seasonality_mode: Literal["additive", "multiplicative"] = "additive"
    changepoint_prior_scale: float = Field(0.05, gt=0, le=10)
    seasonality_prior_scale: float = Field(10.0, gt=0, le=100)
    interval_width: float = Field(0.95, gt=0, lt=1)
    uncertainty_samples: int = Field(0, ge=0, le=10000)
    random_seed: int = Field(42, ge=0)
    train_ratio: float = Field(0.8, gt=0, le=1)
    horizon_days: float = Field(7.0, gt=0, le=90)
    band_step_seconds: int | None = Field(None, ge=1)
    seasonality_timezone: str = "UTC"
    max_train_rows: int = Field(20000, ge=100)
    clip_to_unit_range: bool = True
    n_jobs: int = Field(1, ge=1, le=1024)
    fit_timeout_seconds: float | None = Field(None, gt=0)
    dask_scheduler: str | None = None
    warm_start: bool = False

    @field_validator("seasonality_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _check_zone(value)


class SeverityCuts(_Section):
    """Score cut points: LOW above 1 (the band edge), then MEDIUM, HIGH, CRITICAL."""

    medium: float = Field(2.5, gt=1)
    high: float = Field(3.0, gt=1)
    critical: float = Field(4.0, gt=1)

    @model_validator(mode="after")
    def _ordered(self) -> SeverityCuts:
        if not (self.medium < self.high < self.critical):
            raise ValueError(
                f"severity cuts must increase: medium {self.medium} < high {self.high} "
                f"< critical {self.critical}"
            )
        return self


class CalibrationSettings(_Section):
    """How each series' band and score are calibrated online from its own residuals."""

    window: int = Field(1000, ge=20, le=100000)
    min_history: int = Field(100, ge=10)
    tail_quantile: float = Field(0.9995, gt=0.5, lt=1)
    shift_window: int = Field(6, ge=2, le=10000)
    flat_window: int = Field(12, ge=2, le=10000)
    flat_history: int = Field(4032, ge=20, le=100000)
    flat_delay: int = Field(288, ge=0, le=100000)
    learn_limit: float = Field(3.0, gt=0)

    @model_validator(mode="after")
    def _history_fits(self) -> CalibrationSettings:
        if self.min_history > self.window:
            raise ValueError(f"min_history ({self.min_history}) must not exceed window ({self.window})")
        return self


class ScoringSettings(_Section):
    """Turn a value and its band into an anomaly score and a decision."""

    threshold_multiplier: float = Field(2.0, gt=0, le=100)
    direction: Literal["both", "above", "below"] = "both"
    min_deviation: float = Field(0.0, ge=0)
    severity: SeverityCuts = Field(default_factory=SeverityCuts)
    calibration: CalibrationSettings = Field(default_factory=CalibrationSettings)

    def params(self) -> ScoreParams:
        """Return the scoring rule these settings describe (flags already applied)."""
        return ScoreParams(
            threshold_multiplier=self.threshold_multiplier,
            direction=self.direction,
            min_deviation=self.min_deviation,
            medium=self.severity.medium,
            high=self.severity.high,
            critical=self.severity.critical,
        )


class QualitySettings(_Section):
    """Data quality per live series (``core/quality.py``): windows, the stale cut, the TTL, the cadence."""

    window_seconds: float = Field(3600.0, gt=0)
    stale_after_intervals: float = Field(1.5, gt=1)
    series_ttl_hours: float = Field(24.0, gt=0)
    write_interval_seconds: float = Field(60.0, gt=0)
    series_metrics_cap: int = Field(500, ge=0, le=100000)


class MonitoringSettings(_Section):
    """The long-running monitor loop."""

    interval_seconds: float = Field(60.0, gt=0, le=86400)
    source: Literal["auto", "prometheus", "simulator", "replay"] = "auto"
    fallback_to_simulator: bool = False
    refit_interval_hours: float = Field(24.0, ge=0)
    refit_history_days: float = Field(14.0, gt=0)
    fallback_min_rows: int = Field(0, ge=0)
    max_catchup_hours: float = Field(24.0, ge=0)
    logs_dir: str = "logs"
    shard: str | None = None
    quality: QualitySettings = Field(default_factory=QualitySettings)

    @field_validator("shard")
    @classmethod
    def _shard_form(cls, value: str | None) -> str | None:
        if value is not None:
            parse_shard(value)
        return value


_PLACEMENT_KEYS = {"n_jobs", "dask_scheduler"}

DEFAULT_QUERY = '100 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m])) * 100'


class PrometheusSettings(_Section):
    """Where live values come from; the URL may also come from ``PROMETHEUS_URL``."""

    url: str | None = None
    query: str = DEFAULT_QUERY

    @property
    def default_query(self) -> bool:
        """Whether the query is the built-in one (node_exporter CPU usage, in percent)."""
        return self.query == DEFAULT_QUERY

    host_label: str = "instance"
    timeout_seconds: float = Field(5.0, gt=0)
    retries: int = Field(2, ge=0, le=10)
    verify_tls: bool = True
    ca_file: str | None = None
    bearer_token_file: str | None = None


Unit = Literal["percent", "ratio", "seconds", "count/s", "raw"]
# The physical range each unit implies (None = unbounded on that side); values outside are invalid.
UNIT_RANGES: dict[str, tuple[float | None, float | None]] = {
    "percent": (0.0, 100.0),
    "ratio": (0.0, 1.0),
    "seconds": (0.0, None),
    "count/s": (0.0, None),
    "raw": (None, None),
}
# The metric written in the seed schema (cpu_metrics / cpu_usage); its series ids carry no metric label.
CPU_METRIC = "cpu"
# The label (and InfluxDB tag) that names the metric of every other series.
METRIC_LABEL = "metric"


def metric_of_labels(labels: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """Return the metric a series belongs to: its ``metric`` label, else ``cpu`` (the seed schema)."""
    pairs = labels if isinstance(labels, Mapping) else dict(labels)
    return pairs.get(METRIC_LABEL) or CPU_METRIC


class MetricModelSettings(_Section):
    """Per-metric overrides of the ``model`` section (None = the section's value)."""

    daily_seasonality: bool | None = None
    weekly_seasonality: bool | None = None
    yearly_seasonality: bool | None = None
    interval_width: float | None = Field(None, gt=0, lt=1)


class MetricSettings(_Section):
    """One monitored metric: a PromQL query (one series per label set) and how to judge its values."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")
    query: str = Field(min_length=1)
    host_label: str = "instance"
    unit: Unit = "raw"
    physical_range: tuple[float | None, float | None] | None = None
    model: MetricModelSettings = Field(default_factory=MetricModelSettings)
    side: Literal["above", "below", "both"] = "both"
    dead_zone: float = Field(0.0, ge=0)
    warning: float | None = None
    critical: float | None = None

    @property
    def limits(self) -> tuple[float | None, float | None]:
        """Return the physical range of the values: the declared one, else the unit's."""
        return self.physical_range if self.physical_range is not None else UNIT_RANGES[self.unit]

    @model_validator(mode="after")
    def _consistent(self) -> MetricSettings:
        low, high = self.limits
        if low is not None and high is not None and not low < high:
            raise ValueError(f"physical_range of {self.name!r} must be [low, high] with low < high")
        if self.warning is not None and self.critical is not None:
            if self.side != "below" and self.warning > self.critical:
                raise ValueError(f"{self.name}: warning ({self.warning}) above critical ({self.critical})")
            if self.side == "below" and self.warning < self.critical:
                raise ValueError(f"{self.name}: side below needs warning ({self.warning}) >= critical")
        return self

    def model_settings(self, base: ModelSettings) -> ModelSettings:
        """Return ``base`` with this metric's overrides applied."""
        update = {k: v for k, v in self.model.model_dump().items() if v is not None}
        return base.model_copy(update=update) if update else base


class InfluxSettings(_Section):
    """The InfluxDB sink (2.x through the v2 API, or 1.x through ``/write``); off unless a URL is set."""

    url: str | None = None
    api: Literal["v2", "v1"] = "v2"
    org: str = "anomaly"
    bucket: str = "anomaly"
    token_file: str | None = None
    database: str = "anomaly"
    retention_policy: str | None = None
    username: str | None = None
    batch_size: int = Field(5000, ge=1, le=100000)
    flush_interval_seconds: float = Field(1.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0)
    max_backoff_seconds: float = Field(30.0, gt=0)
    verify_tls: bool = True
    token: SecretStr | None = Field(None, exclude=True)
    password: SecretStr | None = Field(None, exclude=True)

    @property
    def enabled(self) -> bool:
        """Return whether results are written to InfluxDB at all."""
        return bool(self.url)


class SpoolSettings(_Section):
    """The write-ahead spool (``logs/metrics.jsonl`` segments) that makes the database writes lossless."""

    segment_bytes: int = Field(32 * 1024 * 1024, ge=4096)
    max_bytes: int = Field(512 * 1024 * 1024, ge=8192)
    fsync: bool = True

    @model_validator(mode="after")
    def _room_for_segments(self) -> SpoolSettings:
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError(
                f"max_bytes ({self.max_bytes}) must be at least twice segment_bytes ({self.segment_bytes}) "
                "so that one full segment is kept beside the active one"
            )
        return self


class SimulatorSettings(_Section):
    """The built-in CPU simulator used when no Prometheus is configured."""

    series: int = Field(1, ge=1, le=10000)
    seed: int = 42
    noise: float = Field(2.0, ge=0)
    anomaly_rate: float = Field(0.002, ge=0, le=1)
    inject: tuple[InjectSettings, ...] = ()


class InjectSettings(_Section):
    """An incident the simulator injects at a time relative to the daemon's start."""

    kind: Literal["spike", "dip", "level_shift", "drift", "flatline", "dropout"] = "spike"
    start_after_s: float = Field(ge=0)
    duration_s: float = Field(gt=0)
    magnitude: float = 40.0
    host: str | None = None  # None = every simulated host


class TelemetrySettings(_Section):
    """The daemon's own ``/metrics`` and ``/healthz`` endpoint."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9108, ge=0, le=65535)


class LoggingSettings(_Section):
    """Terminal and file logging."""

    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    rotation: str = "10 MB"
    retention: int = Field(5, ge=1)

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class EvaluationSettings(_Section):
    """Detection-quality measurement: injected anomalies and the threshold sweep."""

    seed: int = 42
    anomalies_per_kind: int = Field(3, ge=1, le=100)
    kinds: tuple[Literal["spike", "dip", "level_shift", "drift", "flatline", "dropout"], ...] = (
        "spike",
        "dip",
        "level_shift",
        "drift",
        "flatline",
        "dropout",
    )
    threshold_grid: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)


SEVERITIES = ("LOW", "MEDIUM", "HIGH", "CRITICAL")


class LimitSettings(_Section):
    """Static SLA limits of a threshold rule: warning and critical levels."""

    warning: float | None = None
    critical: float | None = None


class AlertRuleSettings(_Section):
    """One alert rule: what it watches (``match``), when it fires, how it is worded."""

    name: str = Field(min_length=1)
    kind: Literal[
        "severity",
        "sustained",
        "rate",
        "no_data",
        "stale",
        "incomplete",
        "threshold",
        "source_unreachable",
        "detector_unhealthy",
    ] = "severity"
    match: dict[str, str] = Field(default_factory=dict)  # label -> glob; "series" matches the id
    min_severity: Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"] = "LOW"
    severity: Literal["info", "warning", "critical"] = "warning"  # of no_data / source / health rules
    count: int = Field(3, ge=1)  # sustained: this many anomalous points ...
    of_last: int | None = Field(None, ge=1)  # ... in a row, or among the last ``of_last``
    window_seconds: float = Field(3600.0, gt=0)  # rate: the window
    min_fraction: float = Field(0.1, gt=0, le=1)  # rate: fire when more than this share is anomalous
    min_points: int = Field(10, ge=1)  # rate: not before this many points in the window
    after_seconds: float = Field(300.0, gt=0)  # no_data: silence this long
    min_completeness: float = Field(0.9, gt=0, le=1)  # incomplete: fire below this share of points
    above: LimitSettings | None = None  # threshold: value above these levels
    below: LimitSettings | None = None  # threshold: value below these levels
    with_band: bool = False  # threshold: only while the point is also an anomaly
    after_ticks: int = Field(3, ge=1)  # source_unreachable / detector_unhealthy: failing ticks in a row
    max_backlog_records: int = Field(100000, ge=1)  # detector_unhealthy: spool backlog limit
    cooldown_seconds: float | None = Field(None, ge=0)  # None = alerts.cooldown_seconds
    resolve_after: int | None = Field(None, ge=1)  # None = alerts.resolve_after
    runbook_url: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> AlertRuleSettings:
        if self.of_last is not None and self.of_last < self.count:
            raise ValueError(f"of_last ({self.of_last}) must be at least count ({self.count})")
        if self.kind == "threshold" and self.above is None and self.below is None:
            raise ValueError(f"threshold rule {self.name!r} needs 'above' or 'below' limits")
        return self


class WebhookSettings(_Section):
    """JSON POST of every notification; ``slack: true`` sends Slack's ``{"text": ...}`` payload."""

    url: str | None = None
    slack: bool = False
    token_file: str | None = None
    timeout_seconds: float = Field(5.0, gt=0)
    token: SecretStr | None = Field(None, exclude=True)


class EmailSettings(_Section):
    """Mail over SMTP (STARTTLS when ``starttls``); the password from ALERT_SMTP_PASSWORD or a file."""

    host: str | None = None
    port: int = Field(25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password_file: str | None = None
    sender: str = "anomaly-detector@localhost"
    to: tuple[str, ...] = ()
    timeout_seconds: float = Field(10.0, gt=0)
    password: SecretStr | None = Field(None, exclude=True)

    @field_validator("port", mode="before")
    @classmethod
    def _port_text(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.strip().isdigit() else value


class AlertmanagerSettings(_Section):
    """Prometheus Alertmanager v2: alerts POSTed to ``<url>/api/v2/alerts``, re-sent while firing."""

    url: str | None = None
    resend_seconds: float = Field(60.0, gt=0)
    timeout_seconds: float = Field(5.0, gt=0)


class ChannelSettings(_Section):
    """Where notifications go; each channel is optional."""

    log: bool = True
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    email: EmailSettings = Field(default_factory=EmailSettings)
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)


class AlertSettings(_Section):
    """Alert rules, their lifecycle (cooldown, hysteresis, grouping) and the delivery channels."""

    enabled: bool = True
    rules: tuple[AlertRuleSettings, ...] = ()
    cooldown_seconds: float = Field(300.0, ge=0)
    repeat_seconds: float | None = Field(None, gt=0)
    resolve_after: int = Field(3, ge=1)
    group_by: tuple[str, ...] = ("host",)
    group_window_seconds: float = Field(0.0, ge=0)
    dashboard_url: str | None = "http://localhost:3000/d/cpu-anomaly-detection"
    false_alarms_per_day: dict[str, float] = Field(
        default_factory=lambda: {"LOW": 1.10, "MEDIUM": 0.19, "HIGH": 0.07, "CRITICAL": 0.03}
    )
    max_attempts: int = Field(1000, ge=1)
    max_backoff_seconds: float = Field(60.0, gt=0)
    max_age_hours: float = Field(24.0, gt=0)
    flush_timeout_seconds: float = Field(10.0, ge=0)
    channels: ChannelSettings = Field(default_factory=ChannelSettings)

    @model_validator(mode="after")
    def _unique_names(self) -> AlertSettings:
        names = [r.name for r in self.rules]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"rule names must be unique; repeated: {', '.join(twice)}")
        return self


class Settings(_Section):
    """Every tunable of the daemon, validated and frozen."""

    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    influxdb: InfluxSettings = Field(default_factory=InfluxSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    metrics: tuple[MetricSettings, ...] = ()

    @model_validator(mode="after")
    def _unique_metrics(self) -> Settings:
        names = [m.name for m in self.metrics]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"metrics: the name {name!r} is used twice; metric names must be unique")
        return self

    def metric_list(self) -> tuple[MetricSettings, ...]:
        """Return the metrics the daemon polls: ``metrics``, else today's one query (``prometheus``).

        Without a ``metrics:`` section the one metric is ``cpu`` over ``prometheus.query``: percent
        when that is the built-in CPU query (as it always was), raw for a query of the operator's own.
        """
        if self.metrics:
            return self.metrics
        p, s = self.prometheus, self.scoring
        return (
            MetricSettings(
                name=CPU_METRIC,
                query=p.query,
                host_label=p.host_label,
                unit="percent" if p.default_query else "raw",
                side=s.direction,
                dead_zone=s.min_deviation,
            ),
        )

    def model_hash(self) -> str:
        """Return a short, stable hash of everything that changes what a trained model is."""
        # Where and how many at a time series are fitted does not change what a fit gives.
        model = self.model.model_dump(mode="json", exclude=_PLACEMENT_KEYS)
        payload: dict[str, Any] = {"data": self.data.model_dump(mode="json"), "model": model}
        if self.metrics:  # each metric's range clips its bands, its overrides change its fits
            keys = {"name", "unit", "physical_range", "model"}
            payload["metrics"] = [m.model_dump(mode="json", include=keys) for m in self.metrics]
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"sha256:{digest[:16]}"

    def redacted(self) -> dict[str, Any]:
        """Return the settings as plain data with no secret in it (safe for logs and reports).

        Tokens and passwords are never dumped; a user:password inside a URL is replaced by ``***``.
        """
        data = self.model_dump(mode="json")
        for section in ("prometheus", "influxdb"):
            data[section]["url"] = redact_url(data[section]["url"])
        channels = data["alerts"]["channels"]
        for channel in ("webhook", "alertmanager"):
            channels[channel]["url"] = redact_url(channels[channel]["url"])
        return data


# Environment variable -> dotted setting. Secrets are handled separately (SECRET_ENV).
ENV_VARS: dict[str, str] = {
    "PROMETHEUS_URL": "prometheus.url",
    "PROMETHEUS_QUERY": "prometheus.query",
    "INFLUXDB_URL": "influxdb.url",
    "INFLUXDB_API": "influxdb.api",
    "INFLUXDB_ORG": "influxdb.org",
    "INFLUXDB_BUCKET": "influxdb.bucket",
    "INFLUXDB_DATABASE": "influxdb.database",
    "INFLUXDB_RETENTION_POLICY": "influxdb.retention_policy",
    "INFLUXDB_USERNAME": "influxdb.username",
    "INFLUXDB_TOKEN_FILE": "influxdb.token_file",
    "MONITORING_INTERVAL": "monitoring.interval_seconds",
    "MONITORING_SOURCE": "monitoring.source",
    "LOGS_DIR": "monitoring.logs_dir",
    "LOG_LEVEL": "logging.level",
    "TELEMETRY_PORT": "telemetry.port",
    "TELEMETRY_HOST": "telemetry.host",
    "ALERT_WEBHOOK_URL": "alerts.channels.webhook.url",
    "ALERTMANAGER_URL": "alerts.channels.alertmanager.url",
    "SMTP_HOST": "alerts.channels.email.host",
    "SMTP_PORT": "alerts.channels.email.port",
}
SECRET_ENV = {
    "INFLUXDB_TOKEN": "influxdb.token",
    "INFLUXDB_PASSWORD": "influxdb.password",
    "ALERT_WEBHOOK_TOKEN": "alerts.channels.webhook.token",
    "ALERT_SMTP_PASSWORD": "alerts.channels.email.password",
}
# Secret keys refused in the file -> where the secret goes instead (keys and variables that exist).
_SECRET_KEYS = {
    ("influxdb", "token"): "set INFLUXDB_TOKEN in the environment or name a file holding it in "
    "influxdb.token_file",
    ("influxdb", "password"): "set INFLUXDB_PASSWORD in the environment",
    ("prometheus", "bearer_token"): "name a file holding it in prometheus.bearer_token_file",
}
# Secrets of the alert channels: (path in the file, fix, env variable, the *_file key beside it).
_ALERT_SECRETS = {
    ("alerts", "channels", "webhook", "token"): (
        "set ALERT_WEBHOOK_TOKEN in the environment or name a file holding it in "
        "alerts.channels.webhook.token_file",
        "ALERT_WEBHOOK_TOKEN",
        "token_file",
    ),
    ("alerts", "channels", "email", "password"): (
        "set ALERT_SMTP_PASSWORD in the environment or name a file holding it in "
        "alerts.channels.email.password_file",
        "ALERT_SMTP_PASSWORD",
        "password_file",
    ),
}


def load_settings(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    required: bool = False,
    flags: Mapping[str, str] | None = None,
) -> Settings:
    """Build the settings from defaults, a YAML file, the environment and flag overrides (dotted keys).

    A missing file is an error when ``required`` (the user named it), otherwise the defaults are used.
    An invalid value is reported where it came from: the file's key, the environment variable, or the
    flag (``flags`` maps a dotted override key to its flag name, e.g. ``--threshold-multiplier``).
    """
    env = os.environ if env is None else env
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if file.is_file():
            data = read_yaml(file)
        elif required:
            raise ConfigError(f"{file}: config file not found; pass an existing file with --config")
    _reject_secrets(data, source)
    if isinstance(data.get("alerts"), dict):
        data["alerts"] = interpolate(data["alerts"], env, f"{source}: alerts")
    _alert_secrets(data, env)
    origins: dict[str, str] = {}
    for var, dotted in ENV_VARS.items():
        if env.get(var, "") != "":
            set_dotted(data, dotted, env[var])
            origins[dotted] = f"environment variable {var}"
    token_file = dig(data, "influxdb.token_file")
    token = env.get("INFLUXDB_TOKEN") or (
        read_secret_file(token_file, origins.get("influxdb.token_file", "influxdb.token_file"))
        if token_file
        else None
    )
    if token:
        set_dotted(data, "influxdb.token", token)
    if env.get("INFLUXDB_PASSWORD"):
        set_dotted(data, "influxdb.password", env["INFLUXDB_PASSWORD"])
    for dotted, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, dotted, value)
            origins[dotted] = (flags or {}).get(dotted, f"command-line override of {dotted}")
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc, source, origins, model=Settings)) from exc
    _check_urls(settings, source, origins)
    return settings


_URL_EXAMPLES = {
    "prometheus.url": "http://prometheus:9090",
    "influxdb.url": "http://localhost:8086",
    "alerts.channels.webhook.url": "https://hooks.example.com/alerts",
    "alerts.channels.alertmanager.url": "http://alertmanager:9093",
}


def _check_urls(settings: Settings, source: str, origins: Mapping[str, str]) -> None:
    """Refuse a URL that is not http(s), naming where it came from (here, not later in the source)."""
    from urllib.parse import urlsplit

    for key, example in _URL_EXAMPLES.items():
        url = dig(settings.model_dump(include={key.split(".")[0]}), key)
        if not url:
            continue
        try:
            parts = urlsplit(url)
            ok = parts.scheme in ("http", "https") and bool(parts.netloc)
        except ValueError:
            ok = False
        if not ok:
            where = origins.get(key) or f"{source}: {key}"
            shown = short(redact_url(url))
            raise ConfigError(f"{where}: {shown} is not an http(s) URL; use e.g. {example}")


def _reject_secrets(data: Mapping[str, Any], source: str) -> None:
    for (section, key), fix in _SECRET_KEYS.items():
        part = data.get(section)
        if isinstance(part, Mapping) and key in part:
            raise ConfigError(f"{source}: {section}.{key}: secrets are not read from the config file; {fix}")
    for path, (fix, _var, _file_key) in _ALERT_SECRETS.items():
        node: Any = data
        for part_name in path[:-1]:
            node = node.get(part_name) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and path[-1] in node:
            raise ConfigError(f"{source}: {'.'.join(path)}: secrets are not read from the config file; {fix}")


def _alert_secrets(data: dict[str, Any], env: Mapping[str, str]) -> None:
    """Put the alert channels' secrets in from the environment, else from the file their key names."""
    for path, (_fix, var, file_key) in _ALERT_SECRETS.items():
        dotted = ".".join(path)
        file_name = dig(data, ".".join((*path[:-1], file_key)))
        secret = env.get(var) or (
            read_secret_file(file_name, ".".join((*path[:-1], file_key))) if file_name else None
        )
        if secret:
            set_dotted(data, dotted, secret)
