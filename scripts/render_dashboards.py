"""Write the Grafana dashboards and alert rules that ``core.dashboards`` renders (or check them).

python -m core.dashboards [--root .] [--check]        (the same as python scripts/render_dashboards.py)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.dashboards import render_files  # noqa: E402
from core.fsutil import atomic_write_text  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    """Write the generated files under ``--root`` (or with ``--check`` report those out of date)."""
    parser = argparse.ArgumentParser(prog="python -m core.dashboards", description=main.__doc__)
    parser.add_argument("--root", default=".", help="repository root (default: the current directory)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    root = Path(args.root)
    stale = []
    for relative, text in render_files().items():
        path = root / relative
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current == text:
            continue
        stale.append(relative)
        if not args.check:
            atomic_write_text(path, text)
    verb = "out of date" if args.check else "written"
    for relative in stale:
        print(f"{relative}: {verb}")
    if args.check and stale:
        print("run `python -m core.dashboards` to regenerate", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
