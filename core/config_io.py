"""The settings' sources as text: the YAML file, secret files, dotted keys, and one-line error reports.

:mod:`core.config` loads the settings with these; nothing here knows the settings model except through
the ``model`` it is given.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from core.errors import ConfigError
from core.redact import redact_text

__all__ = ["describe", "dig", "interpolate", "read_secret_file", "read_yaml", "set_dotted", "short"]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(node: Any, env: Mapping[str, str], where: str) -> Any:
    """Replace ``${VAR}`` (or ``${VAR:-default}``) in every string under ``node`` from ``env``.

    An unset variable without a default is a ConfigError naming it and the key it is used in.
    """
    if isinstance(node, dict):
        return {k: interpolate(v, env, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def value(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if env.get(name, "") != "":
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set; export {name}=... or remove it")

    return _VAR.sub(value, node)


def read_yaml(file: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{file}{where}: {problem}; fix the YAML syntax") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read config file ({exc})") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{file}: top level must be a mapping of sections (data, model, ...)")
    return loaded


def read_secret_file(name: str, origin: str) -> str:
    try:
        return Path(name).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{origin}: cannot read {name!r} ({exc.strerror}); name a readable file holding the token"
        ) from exc


def dig(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def describe(
    exc: ValidationError, source: str, origins: Mapping[str, str] | None = None, *, model: type[BaseModel]
) -> str:
    """Turn pydantic's report into one line naming where the value came from, the value and the fix.

    A value from the file is named by its key (``config.yaml: scoring.direction: ...``); one from the
    environment or a flag by the variable or the flag (``environment variable MONITORING_INTERVAL: ...``).
    An unknown key is named with the nearest valid key of ``model`` (the settings model).
    """
    origins = origins or {}
    from_file: list[str] = []
    elsewhere: list[str] = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        origin = next((origins[k] for k in _prefixes(loc) if k in origins), None)
        if error["type"] == "extra_forbidden":
            text = f"unknown key{_suggest(model, loc)}"
        elif error["type"] == "missing":
            text = "required"
        else:
            value = error.get("input")
            shown = "" if isinstance(value, dict) else f"{short(value)} "
            msg = str(error["msg"]).removeprefix("Value error, ")
            text = f"{shown}is invalid ({msg})"
        if origin is None:
            from_file.append(f"{key}: {text}")
        else:
            elsewhere.append(f"{origin}: {text}")
    parts = ([f"{source}: " + "; ".join(from_file)] if from_file else []) + elsewhere
    return "; ".join(parts)


def _prefixes(loc: list[str]) -> list[str]:
    """Return the dotted keys a location lies under, longest first (``a.b.c``, ``a.b``, ``a``)."""
    return [".".join(loc[:i]) for i in range(len(loc), 0, -1)]


def short(value: Any) -> str:
    text = redact_text(repr(value))
    return text if len(text) <= 80 else text[:80] + "…"


def _suggest(model: type[BaseModel], loc: list[str]) -> str:
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return ""
        model = annotation
    valid = list(model.model_fields)
    close = difflib.get_close_matches(loc[-1], valid, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; valid keys here: {', '.join(valid)}"
