"""The example is built on tracedagent's public names only: no ``tracedagent._*`` module, no ``_name``
imported from tracedagent, anywhere in its code or tests."""

from __future__ import annotations

import ast
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1]


def private_uses(source: str) -> list[str]:
    """Every use of a private tracedagent module or name in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute):
            modules = [ast.unparse(node)]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "tracedagent" and any(part.startswith("_") for part in parts[1:]):
                found.append(f"line {node.lineno}: {module}")
    return found


def test_the_check_catches_private_imports() -> None:
    assert private_uses("import tracedagent._loop") == ["line 1: tracedagent._loop"]
    assert private_uses("from tracedagent import _dispatch") == ["line 1: tracedagent._dispatch"]
    assert private_uses("from tracedagent.testing._models import Step") != []
    assert private_uses("import tracedagent\ntracedagent._dispatch.register(x)") != []
    assert private_uses("from tracedagent.tools import file_tools\nfrom .agent import _x") == []


def test_no_private_tracedagent_name_is_used() -> None:
    files = sorted(EXAMPLE.rglob("*.py"))
    assert len(files) >= 8
    problems = {str(f.relative_to(EXAMPLE)): private_uses(f.read_text()) for f in files}
    assert {name: uses for name, uses in problems.items() if uses} == {}
