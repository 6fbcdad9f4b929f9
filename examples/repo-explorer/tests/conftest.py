"""The example's tests see only the tracers they register (not the ones installed in the environment)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
for _name in ("TRACEDAGENT_PLUGINS", "TRACEDAGENT_DISABLE_PLUGINS", "REPO_EXPLORER_MODEL"):
    os.environ.pop(_name, None)


@pytest.fixture
def secret() -> str:
    """What ``private.txt``, beside the repository, holds: the agent must never see it."""
    return "NOT-FOR-THE-AGENT"


@pytest.fixture
def repo(tmp_path: Path, secret: str) -> Path:
    """A small repository to explore, next to a file the agent must never read."""
    (tmp_path / "private.txt").write_text(secret)
    root = tmp_path / "repo"
    (root / "src" / "shop").mkdir(parents=True)
    (root / "README.md").write_text("# Shop\nA tiny shop. Prices live in src/shop/pricing.py.\n")
    (root / "src" / "shop" / "__init__.py").write_text("from .pricing import total\n")
    (root / "src" / "shop" / "pricing.py").write_text(
        "VAT_RATE = 0.2\n\n\ndef total(net: float) -> float:\n    return round(net * (1 + VAT_RATE), 2)\n"
    )
    (root / "tests").mkdir()
    (root / "tests" / "test_pricing.py").write_text(
        "from shop import total\n\n\ndef test_total():\n    assert total(10) == 12\n"
    )
    return root
