"""Write the dashboards' JSON: ``python -m dashboards.build`` (from the repository's root).

``--check`` writes nothing and exits 1 if a committed file differs from what the code builds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard

from . import overview, tool
from .panels import render

#: The dashboards, by the name of their file in generated/.
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "overview": overview.build,
    "tool": tool.build,
}

GENERATED = Path(__file__).parent / "generated"


def rendered() -> dict[str, str]:
    """Each dashboard's JSON text, by file name (``overview.json``...)."""
    return {f"{name}.json": render(build()) for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards.build", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare with the committed files; write nothing")
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = GENERATED / name
        if path.exists() and path.read_text() == text:
            continue
        stale.append(name)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if args.check:
        if stale:
            print(f"out of date: {', '.join(stale)}; run python -m dashboards.build", file=sys.stderr)
            return 1
        return 0
    print(f"wrote {', '.join(stale) or 'nothing (up to date)'} in {GENERATED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
