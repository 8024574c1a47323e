"""Imported only by the refit worker's forkserver: silence Stan's loggers, then preload Prophet.

(This module does its work at import time on purpose: that is how a forkserver preloads.)
"""

from __future__ import annotations

from core.model.forecaster import quiet_stan

quiet_stan()

import prophet  # noqa: E402,F401  (preloaded so each fit forks with Prophet already imported)
