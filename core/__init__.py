"""Real-time anomaly detection for infrastructure metrics: the library behind ``main.py``.

``core`` knows nothing about the terminal or the process: ``main.py`` parses flags, configures logging
and signals and calls one function per mode; ``core.assemble`` builds the daemon's concrete objects
from the settings; everything else takes its dependencies as arguments.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
