"""Start real servers on loopback for integration tests, and talk to them.

Each server binary runs as a subprocess on free 127.0.0.1 ports with its data, config and log under a
work directory the caller owns (a pytest tmp dir). `ServerProcess` starts it, waits until an HTTP
endpoint answers, stops it (SIGTERM, then SIGKILL) and restarts it on the same ports and data dir.
`schedule_outage` stops and restarts a server from a background thread at given offsets.

The in-process receivers (`WebhookReceiver`, `SmtpReceiver`) record what they are sent.
Helpers below each server class read and write data over its HTTP API.
"""

from __future__ import annotations

import email
import email.policy
import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import requests

__all__ = [
    "AlertmanagerServer",
    "CPU_BUSY_QUERY",
    "ExportedSeries",
    "InfluxDB1Server",
    "NodeExporterServer",
    "PrometheusServer",
    "ReceivedMail",
    "ReceivedRequest",
    "ScheduledOutage",
    "ServerClosedError",
    "ServerError",
    "ServerProcess",
    "ServerStartError",
    "SmtpReceiver",
    "VictoriaMetricsServer",
    "WebhookReceiver",
    "free_port",
    "free_ports",
    "http_request",
    "influx_create_database",
    "influx_query",
    "influx_write",
    "prom_query",
    "prom_wait_for",
    "schedule_outage",
    "unique_name",
    "vm_export",
    "vm_force_flush",
    "vm_wait_for_export",
    "vm_write",
]

LOOPBACK = "127.0.0.1"
CPU_BUSY_QUERY = '100 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[15s])) * 100'
_ADDRESS_IN_USE = ("address already in use", "errno 98")
_START_ATTEMPTS = 4


class ServerError(RuntimeError):
    """A test server misbehaved."""


class ServerStartError(ServerError):
    """A test server exited or did not become ready in time."""


class ServerClosedError(ServerError):
    """A closed server was asked to start again."""


class _PortInUse(ServerStartError):
    """The server could not bind one of its ports."""


# Ports handed out by this process, so two servers started back to back never get the same one.
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_ports(count: int) -> list[int]:
    """Return `count` distinct loopback TCP ports that were free a moment ago."""
    with _ports_lock:
        sockets: list[socket.socket] = []
        ports: list[int] = []
        try:
            while len(ports) < count:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind((LOOPBACK, 0))
                port = sock.getsockname()[1]
                if port not in _handed_out:
                    ports.append(port)
        finally:
            for sock in sockets:
                sock.close()
        _handed_out.update(ports)
        return ports


def free_port() -> int:
    """Return one loopback TCP port that was free a moment ago."""
    return free_ports(1)[0]


def unique_name(prefix: str) -> str:
    """Return `prefix` plus a short random suffix, for databases and series on shared servers."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def http_request(method: str, url: str, *, timeout: float = 10.0, **kwargs: Any) -> requests.Response:
    """Send one HTTP request that ignores proxy settings from the environment (loopback only)."""
    with requests.Session() as session:
        session.trust_env = False
        return session.request(method, url, timeout=timeout, **kwargs)


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                if fields[9] != "0":
                    inodes.add(fields[9])
    return inodes


def _owns_listener(pid: int, port: int) -> bool:
    """Tell whether `pid` holds the socket listening on `port` (True when /proc cannot tell)."""
    inodes = _listening_inodes(port)
    fd_dir = Path(f"/proc/{pid}/fd")
    if not inodes or not fd_dir.is_dir():
        return True
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


class ServerProcess:
    """One server binary run as a subprocess on loopback; subclasses say how to configure it."""

    name = "server"
    binary = ""
    package = ""
    ready_path = "/"
    ready_statuses: frozenset[int] = frozenset({200})
    port_names: tuple[str, ...] = ("http",)

    def __init__(
        self,
        workdir: Path,
        *,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / f"{self.name}.log"
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.ports: dict[str, int] = {}
        self.start_count = 0
        self.closed = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.RLock()

    # -- what subclasses provide ------------------------------------------------------------------

    def command(self) -> list[str]:
        """Return the argv that starts the server on `self.ports` (called after `prepare`)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files for the current ports; called before every start."""

    def after_ready(self) -> None:
        """Finish setup once the server answers (e.g. create a user on the first start)."""

    # -- state ------------------------------------------------------------------------------------

    @property
    def executable(self) -> str | None:
        """Return the full path of the binary, or None when it is not installed."""
        return shutil.which(self.binary)

    @property
    def port(self) -> int:
        """Return the main (HTTP) port; allocated on first start and kept across restarts."""
        if not self.ports:
            raise ServerError(f"{self.name} has no port yet: call start() first")
        return self.ports[self.port_names[0]]

    @property
    def host(self) -> str:
        """Return the address the server listens on."""
        return LOOPBACK

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:43121 (no trailing slash)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Return the process id while running."""
        return self._proc.pid if self.is_running and self._proc else None

    @property
    def is_running(self) -> bool:
        """Tell whether the process is alive (not whether it is ready)."""
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it is ready; reuse ports and data dir on a restart."""
        with self._lock:
            if self.closed:
                raise ServerClosedError(f"{self.name} was closed; it cannot be started again")
            if self.is_running:
                return self
            if self.executable is None:
                raise ServerStartError(f"{self.binary} not found (Debian package {self.package})")
            fixed_ports = bool(self.ports)
            attempts = 10 if fixed_ports else _START_ATTEMPTS
            for attempt in range(1, attempts + 1):
                if not fixed_ports:
                    self.ports = dict(zip(self.port_names, free_ports(len(self.port_names)), strict=True))
                try:
                    self._start_once()
                    break
                except _PortInUse:
                    if attempt == attempts:
                        raise
                    # A restart must keep its port: wait for whoever took it to let go.
                    time.sleep(1.0 if fixed_ports else 0.0)
            self.start_count += 1
            self.after_ready()
            return self

    def _start_once(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv = self.command()
        with self.log_path.open("ab") as log:
            log_offset = log.tell()
            log.write(f"\n=== {time.strftime('%H:%M:%S')} start: {' '.join(argv)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._environment(),
            )
        try:
            self._wait_ready(log_offset)
        except BaseException:
            self._terminate()
            raise

    def _environment(self) -> dict[str, str]:
        # influxd reads INFLUXDB_* overrides; a developer's settings must not leak into the test server.
        return {key: value for key, value in os.environ.items() if not key.startswith("INFLUXDB_")}

    def _wait_ready(self, log_offset: int) -> None:
        assert self._proc is not None
        url = self.url + self.ready_path
        deadline = time.monotonic() + self.startup_timeout
        last = "no answer yet"
        while True:
            code = self._proc.poll()
            if code is not None:
                since_start = self._read_log(log_offset).lower()
                port_in_use = any(marker in since_start for marker in _ADDRESS_IN_USE)
                error = _PortInUse if port_in_use else ServerStartError
                raise error(f"{self.name} exited with code {code} during startup\n{self._describe()}")
            try:
                response = http_request("GET", url, timeout=1.0)
                last = f"HTTP {response.status_code}"
                if response.status_code in self.ready_statuses:
                    if _owns_listener(self._proc.pid, self.port):
                        return
                    last = f"port {self.port} answered but is held by another process"
            except requests.RequestException as exc:
                last = type(exc).__name__
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.name} not ready at {url} after {self.startup_timeout:.0f}s (last: {last})\n"
                    + self._describe()
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop gracefully: SIGTERM, wait up to `stop_timeout`, then SIGKILL."""
        with self._lock:
            self._terminate()

    def kill(self) -> None:
        """Stop abruptly with SIGKILL, as a crash would (unflushed data may be lost)."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
            self._reap(5.0)

    def restart(self) -> Self:
        """Stop gracefully and start again on the same ports with the same data dir."""
        with self._lock:
            self.stop()
            return self.start()

    def close(self) -> None:
        """Stop for good; later start() calls raise ServerClosedError."""
        with self._lock:
            self.closed = True
            self._terminate()

    def _terminate(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._reap(5.0)

    def _reap(self, timeout: float) -> None:
        if self._proc is None:
            return
        code = self._proc.wait(timeout)
        with self.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} exited with code {code}\n".encode())
        self._proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- logs -------------------------------------------------------------------------------------

    def _read_log(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        """Return the last `lines` lines of the server's log (all starts, appended)."""
        try:
            size = self.log_path.stat().st_size
        except OSError:
            return f"(no log at {self.log_path})"
        text = self._read_log(max(0, size - 64 * 1024))
        return "\n".join(text.splitlines()[-lines:])

    def _describe(self) -> str:
        return f"log tail ({self.log_path}):\n{self.log_tail()}"

    def __repr__(self) -> str:
        where = self.url if self.ports else "no port yet"
        return f"<{type(self).__name__} {where} running={self.is_running}>"


class ScheduledOutage:
    """Stop `server` at `down_at` and start it again at `up_at` seconds after `t0`, from a thread.

    After the fact, `stopped_at` and `started_at` hold the seconds after `t0` at which the server was
    down and ready again (None if that step did not happen); `error` holds what the thread raised.
    """

    def __init__(
        self, server: ServerProcess, down_at: float, up_at: float, *, t0: float | None = None
    ) -> None:
        if not 0 <= down_at < up_at:
            raise ValueError(f"need 0 <= down_at < up_at, got down_at={down_at} up_at={up_at}")
        self.server = server
        self.down_at = down_at
        self.up_at = up_at
        self.t0 = time.monotonic() if t0 is None else t0
        self.stopped_at: float | None = None
        self.started_at: float | None = None
        self.error: BaseException | None = None
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"outage-{server.name}", daemon=True)

    def start(self) -> Self:
        """Start the background thread."""
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            if self._cancelled.wait(max(0.0, self.t0 + self.down_at - time.monotonic())):
                return
            self.server.stop()
            self.stopped_at = time.monotonic() - self.t0
            if self._cancelled.wait(max(0.0, self.t0 + self.up_at - time.monotonic())):
                return
            self.server.start()
            self.started_at = time.monotonic() - self.t0
        except BaseException as exc:  # reported to the test thread by join()
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        """Wait until the server is back up; raise if that failed or took longer than `timeout`."""
        if timeout is None:
            remaining = self.t0 + self.up_at - time.monotonic()
            timeout = max(0.0, remaining) + self.server.stop_timeout + self.server.startup_timeout + 10
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"outage of {self.server.name} still running after {timeout:.0f}s")
        if self.error is not None:
            raise ServerError(f"outage of {self.server.name} failed: {self.error}") from self.error

    def cancel(self, *, restore: bool = True) -> None:
        """Skip what has not happened yet; with `restore`, start the server again if it is down."""
        self._cancelled.set()
        if self._thread.ident is not None:
            self._thread.join()
        if restore and self.stopped_at is not None and self.started_at is None and not self.server.closed:
            self.server.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.join()
        else:
            self.cancel()


def schedule_outage(
    server: ServerProcess, down_at: float, up_at: float, *, t0: float | None = None
) -> ScheduledOutage:
    """Stop `server` `down_at` s after `t0` (default: now) and start it at `up_at` s, from a thread.

    Offsets are seconds on `time.monotonic()`. Use as `with schedule_outage(vm, 10, 25): run()`:
    leaving the block waits for the restart (or, on an exception, cancels and restores the server).
    """
    return ScheduledOutage(server, down_at, up_at, t0=t0).start()


# -- node_exporter and Prometheus -------------------------------------------------------------------

NODE_EXPORTER_COLLECTORS = ("cpu", "loadavg", "meminfo", "diskstats", "filesystem", "netdev", "stat", "uname")


class NodeExporterServer(ServerProcess):
    """prometheus-node-exporter with only the cheap, always-present collectors."""

    name = "node-exporter"
    binary = "prometheus-node-exporter"
    package = "prometheus-node-exporter"
    ready_path = "/metrics"

    def command(self) -> list[str]:
        """Return the node_exporter argv."""
        collectors = [f"--collector.{name}" for name in NODE_EXPORTER_COLLECTORS]
        return [
            str(self.executable),
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--collector.disable-defaults",
            *collectors,
            *self.extra_args,
        ]


class PrometheusServer(ServerProcess):
    """Prometheus scraping `targets` (host:port) every second, TSDB in the work dir."""

    name = "prometheus"
    binary = "prometheus"
    package = "prometheus"
    ready_path = "/-/ready"

    def __init__(self, workdir: Path, targets: Iterable[str], *, job: str = "node", **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.targets = list(targets)
        self.job = job
        self.config_path = self.workdir / "prometheus.yml"

    def prepare(self) -> None:
        """Write prometheus.yml (JSON is valid YAML)."""
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": self.job, "static_configs": [{"targets": self.targets}]}],
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def command(self) -> list[str]:
        """Return the Prometheus argv."""
        return [
            str(self.executable),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            *self.extra_args,
        ]


def prom_query(url: str, promql: str, *, at: float | None = None) -> list[dict[str, Any]]:
    """Run an instant PromQL query and return `data.result` (raise on an error status)."""
    params = {"query": promql} if at is None else {"query": promql, "time": str(at)}
    response = http_request("GET", f"{url}/api/v1/query", params=params)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise ServerError(f"PromQL {promql!r} failed: HTTP {response.status_code} {body}")
    return list(body["data"]["result"])


def prom_wait_for(url: str, promql: str, *, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll an instant query until it returns at least one sample; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        result = prom_query(url, promql)
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"PromQL {promql!r} at {url} returned no sample within {timeout:.0f}s")
        time.sleep(0.25)


# -- VictoriaMetrics --------------------------------------------------------------------------------


class VictoriaMetricsServer(ServerProcess):
    """VictoriaMetrics single node; data is readable right after `vm_force_flush`.

    `-search.latencyOffset=0s` and `-search.disableCache` make fresh points visible to queries,
    `-retentionPeriod=100y` accepts replayed historical timestamps (the default keeps one month).
    """

    name = "victoria-metrics"
    binary = "victoria-metrics"
    package = "victoria-metrics"
    ready_path = "/health"

    def command(self) -> list[str]:
        """Return the VictoriaMetrics argv."""
        return [
            str(self.executable),
            f"-httpListenAddr={LOOPBACK}:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",
            "-search.latencyOffset=0s",
            "-search.disableCache",
            *self.extra_args,
        ]


@dataclass(frozen=True)
class ExportedSeries:
    """One series from /api/v1/export: labels (with __name__), values, timestamps in ms."""

    metric: dict[str, str]
    values: list[float]
    timestamps: list[int]

    @property
    def name(self) -> str:
        """Return the metric name."""
        return self.metric.get("__name__", "")

    @property
    def labels(self) -> dict[str, str]:
        """Return the labels without __name__."""
        return {k: v for k, v in self.metric.items() if k != "__name__"}


def vm_write(
    url: str, lines: str | Iterable[str], *, precision: str = "s", api: str = "v2", db: str = ""
) -> None:
    """POST InfluxDB line protocol to VictoriaMetrics (`api="v2"`: /api/v2/write, `"v1"`: /write)."""
    body = lines if isinstance(lines, str) else "\n".join(lines)
    if api == "v2":
        path, params = "/api/v2/write", {"bucket": db or "b", "org": "o", "precision": precision}
    else:
        path, params = "/write", {"precision": precision, **({"db": db} if db else {})}
    response = http_request("POST", url + path, params=params, data=body.encode())
    if response.status_code != 204:
        raise ServerError(f"VictoriaMetrics write failed: HTTP {response.status_code} {response.text[:500]}")


def vm_force_flush(url: str) -> None:
    """Make every accepted sample searchable now (GET /internal/force_flush)."""
    response = http_request("GET", f"{url}/internal/force_flush")
    if response.status_code != 200:
        raise ServerError(f"VictoriaMetrics force_flush failed: HTTP {response.status_code}")


def vm_export(
    url: str, match: str | Sequence[str], *, start: float | None = None, end: float | None = None
) -> list[ExportedSeries]:
    """Return the raw samples of every series matching the selector(s), via /api/v1/export.

    Naming (checked in test_servers_smoke.py): the line `cpu,host=a usage=1.5,idle=2 <ts>` becomes
    two series `cpu_usage{host="a"}` and `cpu_idle{host="a"}`: each field is `<measurement>_<field>`,
    each tag a label. POST /write?db=x also adds the label `db="x"`; /api/v2/write adds no bucket/org
    label. Timestamps are milliseconds. Raw export keeps duplicate samples (see the smoke test).
    """
    matches = [match] if isinstance(match, str) else list(match)
    data: list[tuple[str, str]] = [("match[]", m) for m in matches]
    data += [(key, str(value)) for key, value in (("start", start), ("end", end)) if value is not None]
    # POST form data: a selector such as {__name__=~".+"} must not reach the server with '+' as space.
    response = http_request("POST", f"{url}/api/v1/export", data=data)
    if response.status_code != 200:
        raise ServerError(f"VictoriaMetrics export failed: HTTP {response.status_code} {response.text[:500]}")
    series = []
    for line in response.text.splitlines():
        if line.strip():
            row = json.loads(line)
            series.append(ExportedSeries(row["metric"], list(row["values"]), list(row["timestamps"])))
    return sorted(series, key=lambda s: sorted(s.metric.items()))


def vm_wait_for_export(
    url: str, match: str | Sequence[str], *, min_samples: int = 1, timeout: float = 10.0
) -> list[ExportedSeries]:
    """Force-flush and export until the match has at least `min_samples` samples in total."""
    deadline = time.monotonic() + timeout
    while True:
        vm_force_flush(url)
        series = vm_export(url, match)
        if sum(len(s.values) for s in series) >= min_samples:
            return series
        if time.monotonic() > deadline:
            raise TimeoutError(f"VictoriaMetrics at {url}: fewer than {min_samples} samples for {match!r}")
        time.sleep(0.2)


# -- InfluxDB 1.x -----------------------------------------------------------------------------------


class InfluxDB1Server(ServerProcess):
    """influxd 1.x with a generated config; with `auth`, an admin user is created on first start."""

    name = "influxdb1"
    binary = "influxd"
    package = "influxdb"
    ready_path = "/ping"
    ready_statuses = frozenset({204})
    port_names = ("http", "rpc")

    def __init__(self, workdir: Path, *, auth: tuple[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(workdir, **kwargs)
        self.auth = auth
        self.config_path = self.workdir / "influxdb.conf"

    def prepare(self) -> None:
        """Write influxdb.conf: dirs under the work dir, loopback ports, no reporting, no _internal."""
        self.config_path.write_text(
            f"""reporting-disabled = true
bind-address = "{LOOPBACK}:{self.ports["rpc"]}"

[meta]
  dir = "{self.data_dir / "meta"}"

[data]
  dir = "{self.data_dir / "data"}"
  wal-dir = "{self.data_dir / "wal"}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = "{LOOPBACK}:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false

[logging]
  suppress-logo = true
"""
        )

    def command(self) -> list[str]:
        """Return the influxd argv."""
        return [str(self.executable), "-config", str(self.config_path), *self.extra_args]

    def after_ready(self) -> None:
        """Create the admin user on the first start (InfluxDB allows that without credentials)."""
        if self.auth and self.start_count == 1:
            user, password = self.auth
            influx_query(self.url, f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES")

    def query(self, q: str, *, db: str | None = None, epoch: str | None = None) -> dict[str, Any]:
        """Run InfluxQL with this server's credentials; see `influx_query`."""
        return influx_query(self.url, q, db=db, epoch=epoch, auth=self.auth)

    def create_database(self, name: str) -> None:
        """Create database `name` with this server's credentials."""
        influx_create_database(self.url, name, auth=self.auth)

    def write(self, db: str, lines: str | Iterable[str], *, precision: str = "s") -> None:
        """Write line protocol to `db` with this server's credentials."""
        influx_write(self.url, db, lines, precision=precision, auth=self.auth)


def influx_query(
    url: str,
    q: str,
    *,
    db: str | None = None,
    epoch: str | None = None,
    auth: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """POST InfluxQL to /query and return the parsed JSON; raise on an HTTP or statement error.

    Times come back as RFC3339 strings, or as integers in `epoch` units ("s", "ms", ...) if given.
    """
    params = {"q": q, **({"db": db} if db else {}), **({"epoch": epoch} if epoch else {})}
    response = http_request("POST", f"{url}/query", data=params, auth=auth)
    try:
        body: dict[str, Any] = response.json()
    except ValueError:
        body = {"error": response.text[:500]}
    errors = [body["error"]] if "error" in body else []
    errors += [r["error"] for r in body.get("results", []) if "error" in r]
    if response.status_code != 200 or errors:
        raise ServerError(f"InfluxQL {q!r} failed: HTTP {response.status_code} {errors}")
    return body


def influx_create_database(url: str, name: str, *, auth: tuple[str, str] | None = None) -> None:
    """Create database `name` (a no-op if it exists)."""
    influx_query(url, f'CREATE DATABASE "{name}"', auth=auth)


def influx_write(
    url: str,
    db: str,
    lines: str | Iterable[str],
    *,
    precision: str = "s",
    auth: tuple[str, str] | None = None,
) -> None:
    """POST line protocol to /write?db=<db>&precision=<precision>."""
    body = lines if isinstance(lines, str) else "\n".join(lines)
    params = {"db": db, "precision": precision}
    response = http_request("POST", f"{url}/write", params=params, data=body.encode(), auth=auth)
    if response.status_code != 204:
        raise ServerError(f"InfluxDB write failed: HTTP {response.status_code} {response.text[:500]}")


# -- Alertmanager and the receivers -----------------------------------------------------------------


class AlertmanagerServer(ServerProcess):
    """Alertmanager without clustering, routing every alert to one webhook URL."""

    name = "alertmanager"
    binary = "prometheus-alertmanager"
    package = "prometheus-alertmanager"
    ready_path = "/-/ready"

    def __init__(
        self,
        workdir: Path,
        webhook_url: str,
        *,
        group_wait: str = "1s",
        group_interval: str = "1s",
        repeat_interval: str = "1h",
        **kwargs: Any,
    ) -> None:
        super().__init__(workdir, **kwargs)
        self.webhook_url = webhook_url
        self.route = {
            "receiver": "webhook",
            "group_by": ["alertname"],
            "group_wait": group_wait,
            "group_interval": group_interval,
            "repeat_interval": repeat_interval,
        }
        self.config_path = self.workdir / "alertmanager.yml"

    def prepare(self) -> None:
        """Write alertmanager.yml (JSON is valid YAML)."""
        config = {
            "route": self.route,
            "receivers": [
                {"name": "webhook", "webhook_configs": [{"url": self.webhook_url, "send_resolved": True}]}
            ],
        }
        self.config_path.write_text(json.dumps(config, indent=2))

    def command(self) -> list[str]:
        """Return the Alertmanager argv; an empty cluster address disables gossip."""
        return [
            str(self.executable),
            f"--config.file={self.config_path}",
            f"--storage.path={self.data_dir}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--cluster.listen-address=",
            *self.extra_args,
        ]

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        """POST alerts to /api/v2/alerts (each needs at least `labels`)."""
        response = http_request("POST", f"{self.url}/api/v2/alerts", json=alerts)
        if response.status_code != 200:
            raise ServerError(f"Alertmanager rejected alerts: HTTP {response.status_code} {response.text}")


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the webhook receiver got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.body)


_T = TypeVar("_T")


class _Recorder(Generic[_T]):
    """A thread-safe list that tests can wait on."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._items: list[_T] = []
        self._changed = threading.Condition()

    def add(self, item: _T) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def snapshot(self) -> list[_T]:
        with self._changed:
            return list(self._items)

    def clear(self) -> None:
        with self._changed:
            self._items.clear()

    def wait_for(self, count: int, timeout: float) -> list[_T]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._items) >= count, timeout):
                got = f"got {len(self._items)}: {self._items}"
                raise TimeoutError(f"expected {count} {self._what} within {timeout:.0f}s, {got}")
            return list(self._items)


class WebhookReceiver:
    """An in-process HTTP server that records every request and answers `status_code`."""

    def __init__(self, status_code: int = 200, port: int = 0) -> None:
        self.status_code = status_code
        self.port = port  # 0 = any free port; a fixed one lets a test start the receiver late
        self._received: _Recorder[ReceivedRequest] = _Recorder("webhook requests")
        self._server: ThreadingHTTPServer | None = None

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Return a copy of everything received so far."""
        return self._received.snapshot()

    @property
    def url(self) -> str:
        """Return the base URL; any path under it is accepted."""
        if self._server is None:
            raise ServerError("webhook receiver is not started")
        return f"http://{LOOPBACK}:{self._server.server_address[1]}"

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedRequest]:
        """Block until at least `count` requests arrived; return them all (TimeoutError otherwise)."""
        return self._received.wait_for(count, timeout)

    def clear(self) -> None:
        """Forget everything received."""
        self._received.clear()

    def start(self) -> Self:
        """Listen on a free loopback port in a daemon thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver._received.add(ReceivedRequest(self.command, self.path, dict(self.headers), body))
                self.send_response(receiver.status_code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_POST = do_PUT = do_GET = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, self.port), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class ReceivedMail:
    """One message the SMTP receiver accepted."""

    mail_from: str
    rcpt_tos: list[str]
    subject: str
    body: str
    message: EmailMessage = field(repr=False)


class SmtpReceiver:
    """An aiosmtpd server on a free loopback port that records every message."""

    def __init__(self) -> None:
        self.host = LOOPBACK
        self.port = 0
        self._received: _Recorder[ReceivedMail] = _Recorder("emails")
        self._controller: Any = None

    @property
    def messages(self) -> list[ReceivedMail]:
        """Return a copy of every message received so far."""
        return self._received.snapshot()

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        """Block until at least `count` messages arrived; return them all (TimeoutError otherwise)."""
        return self._received.wait_for(count, timeout)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Record one message (aiosmtpd handler hook)."""
        raw = envelope.original_content or envelope.content
        # SMTP carries CRLF line ends; tests compare with text written with "\n".
        message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        part = message.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if isinstance(part, EmailMessage) else ""
        subject = str(message["Subject"] or "")
        self._received.add(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), subject, body, message))
        return "250 Message accepted for delivery"

    def start(self) -> Self:
        """Start the SMTP server; retry on another port if the chosen one was taken meanwhile."""
        from aiosmtpd.controller import Controller

        for attempt in range(1, _START_ATTEMPTS + 1):
            port = free_port()
            controller = Controller(self, hostname=LOOPBACK, port=port)
            try:
                controller.start()
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or attempt == _START_ATTEMPTS:
                    raise
                continue
            self._controller, self.port = controller, port
            return self
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the SMTP server."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
