"""Real-time anomaly detection for infrastructure metrics: the library behind ``main.py``.

``core`` knows nothing about the terminal or the process: ``main.py`` parses flags, configures logging
and builds the concrete objects; everything here takes its dependencies as arguments.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
