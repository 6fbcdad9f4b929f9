"""What type checkers see: mypy (strict) on ``tests/typing/``, and on claims that must fail, so the check
itself is shown to bite."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

import tracedagent

HERE = Path(__file__).parent

WRONG = """
from pydantic import BaseModel
from typing_extensions import assert_type

from tracedagent import Agent, RunResult
from tracedagent.testing import ScriptedModel


class Trip(BaseModel):
    city: str


assert_type(Agent("t", ScriptedModel(["x"]), output_type=Trip).run_sync("x"), RunResult[str])
assert_type(Agent("t", ScriptedModel(["x"])).run_sync("x").output, Trip | None)
assert_type(Agent("t", ScriptedModel(["x"])).run_sync("x", output_type=int).output, str | None)
"""


def test_output_types_as_mypy_sees_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # mypy reads this checkout's tracedagent, not an installed copy
    monkeypatch.setenv("MYPYPATH", str(Path(tracedagent.__file__).parent.parent))
    wrong = tmp_path / "wrong_claims.py"
    wrong.write_text(WRONG)
    out, err, status = api.run(
        [
            "--strict",
            "--cache-dir",  # kept between runs: mypy reads pydantic and the core again only when they change
            str(HERE.parent / ".mypy_cache" / "test_typing"),
            "--show-error-codes",
            str(HERE / "typing" / "output_types.py"),
            str(wrong),
        ]
    )
    assert status == 1, (out, err)
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert not [e for e in errors if "output_types.py" in e], out
    lines = sorted(
        int(m.group(1)) for e in errors if (m := re.search(r"wrong_claims\.py:(\d+): error: .*\[assert-type\]", e))
    )
    assert lines == [13, 14, 15], out
