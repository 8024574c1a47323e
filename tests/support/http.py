"""A requests session for tests against loopback servers that records what it sent."""

from __future__ import annotations

from typing import Any

import requests


class RecordingSession(requests.Session):
    """A session that ignores proxy settings (loopback only) and records the query parameters sent."""

    def __init__(self) -> None:
        super().__init__()
        self.trust_env = False
        self.sent: list[tuple[str, dict[str, str]]] = []

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:
        """Record the URL and parameters, then send."""
        self.sent.append((str(url), dict(kwargs.get("params") or {})))
        return super().get(url, **kwargs)
