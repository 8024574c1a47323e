"""Keep credentials out of what is printed, logged and stored: ``http://admin:pw@host`` -> ``http://***@host``."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_text", "redact_url"]

MASK = "***"
# scheme://userinfo@ inside free text; userinfo stops at the first '@' before any '/', space or quote.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@'\"<>]+)@")


def redact_url(url: str | None) -> str | None:
    """Return ``url`` with its user:password part replaced by ``***`` (None and plain URLs unchanged)."""
    if not url or "@" not in url:
        return url
    if "://" not in url:  # user:pw@host:9090, a URL without its scheme
        return f"{MASK}@{url.rsplit('@', 1)[1]}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, f"{MASK}@{host}", parts.path, parts.query, parts.fragment))


def redact_text(text: str) -> str:
    """Return ``text`` with the credentials of every URL in it replaced by ``***``."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
