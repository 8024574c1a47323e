"""The generic line-protocol encoder: the tests' oracle for the fast path of ``core.sinks.lineproto``.

Any measurement, tags and typed fields, escaped per the InfluxDB line-protocol reference; several times
slower than ``encode_records`` and used by nothing in ``core/``.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.sinks.lineproto import _CONTROL, _ESCAPE_KEY, _float, escape_tag

__all__ = ["escape_field_key", "escape_measurement", "escape_string_field", "format_line"]

_ESCAPE_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", **_CONTROL})
_ESCAPE_STRING = str.maketrans({'"': '\\"', "\\": "\\\\"})


def escape_measurement(name: str) -> str:
    """Escape a measurement name (commas, spaces, control characters)."""
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_field_key(key: str) -> str:
    """Escape a field key (same rules as tag keys)."""
    return key.translate(_ESCAPE_KEY)


def escape_string_field(value: str) -> str:
    """Return a string field value quoted, with double quotes and backslashes escaped."""
    return '"' + value.translate(_ESCAPE_STRING) + '"'


def _field_value(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, str):
        return escape_string_field(value)
    return _float(value)


def format_line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, object],
    ts_ms: int,
) -> str | None:
    """Return one point as a line (tags sorted, empty tags and NaN fields left out), or None if no field.

    Field types: ``bool`` -> ``true``/``false``, ``int`` -> ``<n>i``, ``str`` -> quoted string,
    anything else -> float.
    """
    parts = []
    for key, raw in fields.items():
        text = _field_value(raw)
        if text is not None:
            parts.append(f"{escape_field_key(key)}={text}")
    if not parts:
        return None
    tag_text = "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(tags.items()) if k and v)
    return f"{escape_measurement(measurement)}{tag_text} {','.join(parts)} {ts_ms}"
