"""Command line of the anomaly detector: ``python main.py --mode train|monitor|evaluate``.

This is the only place that parses flags, configures logging and builds concrete objects; each mode
calls one function of ``core``. Output: progress lines on stdout, and on failure exactly one line
``error: ...`` on stderr with the documented exit code (never a traceback; details go to the log
file). The exception tree and the exit-code table are in ``core/errors.py``, written once.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from core.errors import exit_codes_text

if TYPE_CHECKING:
    from core.config import Settings

DEFAULT_MODEL_NAME = "cpu_anomaly_model.json"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """Print one line and exit 2 instead of argparse's usage block."""
        self.exit(2, f"error: {message} (see python main.py --help)\n")


def _positive(unit: str, example: str) -> Callable[[str], float]:
    """Return an argparse type that parses a positive, finite number of ``unit``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
        if not (0 < value < float("inf")):
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a positive number of {unit}; give e.g. {example}"
            )
        return value

    return parse


_seconds = _positive("seconds", "30")
_days = _positive("days", "14")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (flags override config.yaml, which overrides built-in defaults)."""
    from core import __version__

    p = _Parser(
        prog="main.py",
        description="Prophet-based anomaly detection for infrastructure metrics.",
        epilog=exit_codes_text(),
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "--mode",
        choices=["train", "monitor", "evaluate"],
        default="train",
        help="what to do (default: train)",
    )
    p.add_argument("--config", default=None, help="YAML config file (default: config.yaml if present)")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.add_argument(
        "--dataset", default="dataset.csv", help="CSV of timestamp,<value>[,labels] (default: dataset.csv)"
    )
    p.add_argument("--labels", default=None, help="anomaly windows in NAB combined_windows.json format")
    p.add_argument(
        "--model-path", default=None, help=f"model artifact (default: <output-dir>/{DEFAULT_MODEL_NAME})"
    )
    p.add_argument(
        "--output-dir", default="outputs", help="where models, reports and plots go (default: outputs)"
    )
    p.add_argument(
        "--prometheus-url", default=None, help="Prometheus base URL (monitor, train --from-prometheus)"
    )
    p.add_argument(
        "--from-prometheus",
        action="store_true",
        help="train mode: fit every series of every configured metric from Prometheus history",
    )
    p.add_argument(
        "--days", type=_days, default=None, help="with --from-prometheus: days of history (default: 14)"
    )
    p.add_argument("--monitoring-interval", type=float, default=None, help="seconds between polls")
    p.add_argument(
        "--duration", type=_seconds, default=None, help="stop the monitor after this many seconds (> 0)"
    )
    p.add_argument("--log-level", default=None, help="TRACE, DEBUG, INFO, WARNING or ERROR")
    p.add_argument(
        "--threshold-multiplier",
        type=float,
        default=None,
        help="widen the band by this factor before flagging (overrides the config)",
    )
    p.add_argument("--nab-dir", default=None, help="evaluate on a NAB corpus (data/ and labels/) in this dir")
    p.add_argument("--no-plots", action="store_true", help="write no plots")
    p.add_argument("--no-eda", action="store_true", help="skip the exploratory data analysis")
    return p


# The flag behind each override, so that a bad value is reported as the flag the user typed.
_FLAGS = {
    "prometheus.url": "--prometheus-url",
    "monitoring.interval_seconds": "--monitoring-interval",
    "logging.level": "--log-level",
    "scoring.threshold_multiplier": "--threshold-multiplier",
}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {key: getattr(args, flag[2:].replace("-", "_")) for key, flag in _FLAGS.items()}


def _setup_logging(level: str, logs_dir: Path, settings: Settings) -> None:
    from loguru import logger

    from core.redact import redact_text

    def _patch(record: Any) -> None:
        # Never a credential in a log line, and never a huge one: one line cannot outgrow the rotation.
        message = redact_text(record["message"])
        record["message"] = message if len(message) <= 4000 else message[:4000] + "… (cut)"

    logger.remove()
    logger.configure(patcher=_patch)
    # A callable format never appends tracebacks: they go to the log file only.
    logger.add(
        sys.stdout,
        level=level,
        format=lambda _: "{time:HH:mm:ss} | {level: <7} | {message}\n",
        colorize=False,
    )
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        logger.add(
            logs_dir / "application.log",
            level="DEBUG",
            serialize=True,
            rotation=settings.logging.rotation,
            retention=settings.logging.retention,
            enqueue=False,
            backtrace=False,
            diagnose=False,  # no variable values in tracebacks: they may hold secrets or a 60 MB line
        )
    except OSError as exc:
        logger.warning(
            f"cannot write {logs_dir / 'application.log'} ({exc.strerror}); logging to the terminal only"
        )

    warnings.showwarning = lambda message, category, filename, lineno, *_: logger.debug(
        f"{category.__name__}: {message} ({filename}:{lineno})"
    )


def run(argv: list[str] | None = None) -> int:
    """Parse flags, run one mode and return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.from_prometheus or args.days is not None) and args.mode != "train":
        parser.error("--from-prometheus and --days belong to --mode train")
    if args.days is not None and not args.from_prometheus:
        parser.error("--days needs --from-prometheus (a CSV brings its own history)")
    from core.config import load_settings
    from core.errors import AnomalyDetectorError, exit_code_for

    try:
        config_path = args.config or ("config.yaml" if Path("config.yaml").is_file() else None)
        settings = load_settings(
            config_path, overrides=_overrides(args), required=args.config is not None, flags=_FLAGS
        )
    except AnomalyDetectorError as exc:
        return _fail(exc, exit_code_for(exc))
    if args.check_config:
        print(f"{config_path or '<defaults>'}: OK")
        return 0
    lock = None
    if args.mode == "monitor":  # one monitor per logs directory, taken before anything is written there
        from core.sinks.files import LogsLock

        try:
            lock = LogsLock(settings.monitoring.logs_dir)
        except AnomalyDetectorError as exc:
            return _fail(exc, exit_code_for(exc))
        except OSError as exc:
            return _fail(f"{exc.filename or settings.monitoring.logs_dir}: {exc.strerror}", 2)
    args.logs_lock = lock
    _setup_logging(settings.logging.level, Path(settings.monitoring.logs_dir), settings)
    from loguru import logger

    try:
        return _dispatch(args, settings)
    except AnomalyDetectorError as exc:
        logger.opt(exception=exc).debug("failed")
        return _fail(exc, exit_code_for(exc))
    except KeyboardInterrupt as exc:
        return _fail("interrupted", exit_code_for(exc))
    except OSError as exc:  # the file system said no: a path or permission the operator can fix
        logger.opt(exception=exc).debug("failed")
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"{where}{exc.strerror or exc}; check the path and its permissions", 2)
    except Exception as exc:  # a bug: keep the traceback in the log, give the operator one line
        logger.opt(exception=exc).error("internal error")
        logs = Path(settings.monitoring.logs_dir) / "application.log"
        return _fail(f"internal error: {type(exc).__name__}: {exc}; details in {logs}", 1)
    finally:
        if lock is not None:
            lock.close()


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    output_dir = Path(args.output_dir)
    model_path = Path(args.model_path) if args.model_path else output_dir / DEFAULT_MODEL_NAME
    dataset = args.dataset
    if args.mode == "train":
        from tqdm import tqdm

        from core.train import train
        from core.train_prometheus import train_from_prometheus

        # A bar only on a terminal: logs, pipes and tests get none.
        with tqdm(unit="series", desc="fit", file=sys.stderr, disable=not sys.stderr.isatty()) as bar:
            common: dict[str, Any] = {
                "model_path": model_path,
                "output_dir": output_dir,
                "plots": not args.no_plots,
                "eda": not args.no_eda,
                "progress": lambda _outcome: bar.update(),
            }
            if args.from_prometheus:
                days = 14.0 if args.days is None else args.days
                result = train_from_prometheus(settings, days=days, **common)
            else:
                result = train(settings, dataset, labels=args.labels, **common)
        print(
            f"trained {len(result.artifact.models)} series in {result.metadata['train_seconds']:.1f} s: "
            f"{result.artifact_path} ({result.artifact_bytes / 1e6:.2f} MB), {result.metadata_path}"
        )
        return 0
    if args.mode == "evaluate":
        return _evaluate(args, settings, dataset, model_path, output_dir)
    return _monitor(args, settings, model_path)


def _monitor(args: argparse.Namespace, settings: Settings, model_path: Path) -> int:
    import signal
    import threading

    from loguru import logger

    from core.assemble import run_daemon

    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        logger.info(f"{signal.Signals(signum).name}: finishing the tick, flushing, stopping")
        stop.set()

    def _install() -> None:
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    stats = run_daemon(
        settings,
        model_path=model_path,
        explicit_model=bool(args.model_path),
        dataset=args.dataset,
        duration=args.duration,
        stop=stop,
        on_start=_install,
        lock=args.logs_lock,
    )
    logs = Path(settings.monitoring.logs_dir)
    print(
        f"monitor stopped after {stats.ticks} ticks: {stats.points} points scored, "
        f"{stats.anomalies} anomalies, {stats.missed_ticks} missed ticks; {logs / 'metrics.jsonl'}"
    )
    return 0


def _evaluate(
    args: argparse.Namespace, settings: Settings, dataset: str, model_path: Path, output_dir: Path
) -> int:
    if args.nab_dir:
        from tqdm import tqdm

        from core.evaluation import run_nab
        from core.evaluation.nab.run import summary_line

        bar = lambda total: tqdm(total=total, unit="file", file=sys.stdout, desc="NAB")  # noqa: E731
        summary = run_nab(settings, args.nab_dir, output_dir, progress=bar, quiet=True)
        print(summary_line(summary, output_dir / "nab_scores.json"))
        from core.alerts.budget import budget_lines

        print("\n".join(budget_lines(summary["alert_budget"])))
        return 0
    from core.evaluation import evaluate
    from core.evaluation.holdout import summary_line as evaluated

    metrics = evaluate(
        settings,
        dataset,
        model_path=model_path,
        output_dir=output_dir,
        labels=args.labels,
        plots=not args.no_plots,
        explicit_model=bool(args.model_path),
    )
    from core.alerts.budget import budget_lines

    print(evaluated(metrics, output_dir / "evaluation_report.txt"))
    print("\n".join(budget_lines(metrics["alert_budget"])))
    return 0


def _fail(exc: BaseException | str, code: int) -> int:
    text = " ".join(str(exc).split())  # one line, whatever the message held
    sys.stderr.write(f"error: {text}\n")
    sys.stderr.flush()
    return code


def main() -> None:
    """Entry point."""
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(run())


if __name__ == "__main__":
    main()
