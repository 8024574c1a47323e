"""A deterministic CPU-usage simulator: daily and weekly patterns, realistic noise, injectable anomalies.

The same profiles generate the shipped sample ``dataset.csv`` (``scripts/make_dataset.py``) and feed the
monitor when no Prometheus is configured, so a model trained on the sample fits the simulator.
Values are pure functions of (series, timestamp, seed): a restarted simulator re-creates exactly the
same points, which keeps catch-up after a restart idempotent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.anomalies import Anomaly, anomaly_effect
from core.records import PointBatch, SeriesRef
from core.timegrid import DAY, align_down, grid_times

__all__ = ["PROFILES", "CpuProfile", "SimulatorSource", "simulate"]


@dataclass(frozen=True)
class CpuProfile:
    """The shape of one kind of host: base load, business-hours swing, nightly batch, weekend factor."""

    name: str
    base: float
    day_swing: float
    peak_hour: float
    batch_height: float
    batch_hour: float
    weekend_factor: float
    noise: float


PROFILES = {
    "web": CpuProfile(
        "web",
        base=22.0,
        day_swing=30.0,
        peak_hour=14.0,
        batch_height=4.0,
        batch_hour=3.0,
        weekend_factor=0.45,
        noise=2.5,
    ),
    "db": CpuProfile(
        "db",
        base=30.0,
        day_swing=14.0,
        peak_hour=11.0,
        batch_height=28.0,
        batch_hour=2.0,
        weekend_factor=0.8,
        noise=2.0,
    ),
}


def _pattern(profile: CpuProfile, t: np.ndarray) -> np.ndarray:
    hour = (t % DAY) / 3600.0
    weekday = ((t // DAY) + 3) % 7  # 1970-01-01 was a Thursday: 0 = Monday
    weekend = weekday >= 5
    # A smooth business-day hump (a raised cosine around peak_hour, 10 h wide at half height).
    dist = np.abs(((hour - profile.peak_hour + 12) % 24) - 12)
    hump = np.where(dist < 9, 0.5 * (1 + np.cos(np.pi * dist / 9)), 0.0)
    swing = profile.day_swing * hump * np.where(weekend, profile.weekend_factor, 1.0)
    bdist = np.abs(((hour - profile.batch_hour + 12) % 24) - 12)
    batch = profile.batch_height * np.exp(-0.5 * (bdist / 0.6) ** 2)
    return profile.base + swing + batch


def _salt(key: str, seed: int) -> np.uint64:
    digest = hashlib.sha256(f"{key}:{seed}".encode()).digest()
    return np.uint64(int.from_bytes(digest[:8], "little"))


def _white(s: np.ndarray, salt: np.uint64 | np.ndarray) -> np.ndarray:
    x = s * np.uint64(0x9E3779B97F4A7C15) ^ salt
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.sqrt(-2 * np.log(np.clip(u, 1e-12, 1.0))) * np.cos(
        2 * np.pi * ((x & np.uint64(0xFFFF)) / 65536.0)
    )


def _mixed(t: np.ndarray, salt: np.uint64 | np.ndarray) -> np.ndarray:
    """Return unit-scale noise at ``t`` for one salt, or for a column of salts (one row per host)."""
    slots = np.floor(t / 60.0).astype(np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = (
            0.6 * _white(slots, salt)
            + 0.35 * _white(slots - np.uint64(5), salt)
            + 0.25 * _white(slots - np.uint64(15), salt)
        )
    return mixed


def _noise(key: str, t: np.ndarray, seed: int, scale: float) -> np.ndarray:
    """Smooth-ish noise that depends only on (key, timestamp, seed): hashed white noise, lightly mixed."""
    return scale * _mixed(t, _salt(key, seed)) / np.sqrt(0.6**2 + 0.35**2 + 0.25**2)


def simulate(
    profile: CpuProfile | str,
    t: np.ndarray,
    *,
    key: str = "sim",
    seed: int = 42,
    noise: float | None = None,
    anomalies: list[Anomaly] | None = None,
) -> np.ndarray:
    """Return CPU usage (percent, clipped to 0-100) of ``profile`` at epoch seconds ``t``."""
    prof = PROFILES[profile] if isinstance(profile, str) else profile
    t = np.asarray(t, dtype=np.float64)
    scale = prof.noise if noise is None else noise
    values = _pattern(prof, t) + _noise(key, t, seed, scale)
    if anomalies:
        values = anomaly_effect(values, t, anomalies)
    return np.clip(values, 0.0, 100.0)


class SimulatorSource:
    """A metrics source that simulates ``n`` hosts; points are on the interval grid, pure in time."""

    name = "simulator"
    fallback_for: str | None = None  # why the daemon runs on it instead of the configured source, if so

    def __init__(
        self,
        series: int = 1,
        *,
        interval: float = 60.0,
        max_catchup: float = 86400.0,
        seed: int = 42,
        noise: float = 2.0,
        anomaly_rate: float = 0.0,
        anomalies: dict[str, list[Anomaly]] | None = None,
    ) -> None:
        kinds = list(PROFILES)
        self.hosts = [
            (f"{kinds[i % len(kinds)]}-{i // len(kinds) + 1:02d}", kinds[i % len(kinds)])
            for i in range(series)
        ]
        self.refs = {host: SeriesRef.from_labels({"host": host}, "host") for host, _ in self.hosts}
        self.profiles = dict(self.hosts)
        self.interval = interval
        self.max_catchup = max_catchup
        self.seed = seed
        self.noise = noise
        self.anomaly_rate = anomaly_rate
        self.anomalies = anomalies or {}
        self._salts: np.ndarray | None = None

    def poll(self, now: float, last_seen: Mapping[str, float]) -> list[PointBatch]:
        """Return every host's grid points after its last seen time (only the latest for new hosts).

        Hosts last seen at the same time (all of them, on a steady tick) are generated together, as
        one (hosts x times) array: the same values as one host at a time, without a loop per host.
        """
        limit = max(1, int(self.max_catchup // self.interval))
        groups: dict[float | None, list[int]] = {}
        for i, (host, _) in enumerate(self.hosts):
            groups.setdefault(last_seen.get(self.refs[host].id), []).append(i)
        out: list[tuple[int, PointBatch]] = []
        for seen, members in groups.items():
            if seen is None:
                t = np.array([align_down(now, self.interval)])
            else:
                t = grid_times(seen, now, self.interval, limit=limit)
            if not len(t):
                continue
            values = self._values_many(members, t)
            for row, i in enumerate(members):
                host = self.hosts[i][0]
                out.append((i, PointBatch(self.refs[host], t, values[row], self.name)))
        out.sort(key=lambda pair: pair[0])  # host order, as a host-by-host poll gives
        return [batch for _, batch in out]

    def _values_many(self, members: list[int], t: np.ndarray) -> np.ndarray:
        """Return the values of hosts ``members`` (indices into ``hosts``) at ``t``: one row per host."""
        if self._salts is None:
            self._salts = np.array([_salt(host, self.seed) for host, _ in self.hosts], dtype=np.uint64)
        idx = np.asarray(members)
        mixed = _mixed(t[None, :], self._salts[idx][:, None])
        norm = np.sqrt(0.6**2 + 0.35**2 + 0.25**2)
        out = np.empty((len(members), len(t)))
        for name, prof in PROFILES.items():
            rows = np.fromiter((self.hosts[i][1] == name for i in members), bool, len(members))
            if rows.any():
                scale = prof.noise * self.noise / 2.0
                out[rows] = np.clip(_pattern(prof, t)[None, :] + scale * mixed[rows] / norm, 0.0, 100.0)
        for row, i in enumerate(members):
            host = self.hosts[i][0]
            if self.anomalies.get(host):
                out[row] = self.values(host, self.hosts[i][1], t)
            elif self.anomaly_rate > 0:
                out[row] = self._random_incidents(host, t, out[row])
        return out

    def history(
        self, series: SeriesRef, start: float, end: float, max_points: int | None = None
    ) -> PointBatch:
        """Return a host's simulated history on a grid of at most ``max_points`` points."""
        max_points = max_points or 20000
        host = dict(series.labels).get("host", "")
        if host not in self.profiles:
            return PointBatch(series, np.empty(0), np.empty(0), self.name)
        step = max(self.interval, (end - start) / max_points)
        t = grid_times(start, end, step)
        return PointBatch(series, t, self.values(host, self.profiles[host], t), self.name)

    def close(self) -> None:
        """Nothing to release."""

    def values(self, host: str, profile: str, t: np.ndarray) -> np.ndarray:
        """Return the simulated values of one host at epoch seconds ``t`` (grid-aligned by the caller)."""
        scale = PROFILES[profile].noise * self.noise / 2.0
        values = simulate(
            profile, t, key=host, seed=self.seed, noise=scale, anomalies=self.anomalies.get(host)
        )
        if self.anomaly_rate > 0:
            values = self._random_incidents(host, t, values)
        return values

    def _random_incidents(self, host: str, t: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Spikes that start at grid slots chosen by a hash of (host, slot), so they are reproducible."""
        slot = np.floor(t / 300.0).astype(np.int64)
        digest = int.from_bytes(hashlib.sha256(f"{host}:{self.seed}:spikes".encode()).digest()[:4], "little")
        h = (slot * 2654435761 + digest) % 1_000_003
        hit = h < self.anomaly_rate * 1_000_003
        out = values.copy()
        out[hit] = np.minimum(100.0, out[hit] + 35.0)
        return out
