"""``python -m core.dashboards``: run the generator's CLI, ``scripts/render_dashboards.py``.

The library never parses flags; this entry point only keeps the documented command (named in every
generated file) working by running the script, which lives beside ``core/`` in the repository.
"""

from __future__ import annotations

import runpy
from pathlib import Path

if __name__ == "__main__":
    script = Path(__file__).resolve().parents[2] / "scripts" / "render_dashboards.py"
    runpy.run_path(str(script), run_name="__main__")
