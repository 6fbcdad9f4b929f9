"""``async def`` tests that use the plugin's fixtures run as the README writes them: with pytest-asyncio in
any mode (no settings, strict, auto), and with no async plugin at all; and with deprecation warnings as
errors. Each case is a real pytest in a fresh interpreter (``runpytest_subprocess``), as a user's session."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[1] / "README.md"

ASYNC_TESTS = """
from tracedagent import Agent, RunEnded, tool
from tracedagent.testing import Step


@tool
def add(a: int, b: int) -> int:
    '''Add two integers.'''
    return a + b


async def test_agent(recorded_events, scripted_model):
    model = scripted_model([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "It is 3."])
    result = await Agent("calc", model, tools=[add]).run("1 + 2?")
    assert result.output == "It is 3."
    assert [e.status for e in recorded_events.of_type(RunEnded)] == ["completed"]


class TestInAClass:
    async def test_method(self, scripted_model):
        assert (await Agent("a", scripted_model(["hi"])).run("hello")).output == "hi"


def test_a_sync_test_beside_them(scripted_model):
    assert Agent("a", scripted_model(["hi"])).run_sync("hello").output == "hi"
"""

# Only warnings as errors; and no other installed plugin but pytest-asyncio (when a case keeps it).
STRICT_WARNINGS = ("-W", "error::DeprecationWarning", "-W", "error::pytest.PytestWarning")
OTHERS_OFF = ("-p", "no:cacheprovider", "-p", "no:langsmith_plugin", "-p", "no:hypothesispytest", "-p", "no:anyio")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*STRICT_WARNINGS, *OTHERS_OFF, *args)


def test_with_pytest_asyncio_and_no_settings(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytester.makepyfile(ASYNC_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=3)
    assert "warning" not in result.stdout.str().lower()


def test_with_pytest_asyncio_in_strict_mode(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytester.makeini("[pytest]\nasyncio_mode = strict\n")
    pytester.makepyfile(ASYNC_TESTS)
    result = run(pytester)
    result.assert_outcomes(passed=3)
    assert "warning" not in result.stdout.str().lower()


def test_with_pytest_asyncio_in_auto_mode_and_a_marked_test(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_asyncio")
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(
        ASYNC_TESTS
        + """
import pytest

@pytest.mark.asyncio
async def test_marked_by_its_author(scripted_model):
    assert (await Agent("a", scripted_model(["hi"])).run("hello")).output == "hi"
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=4)


def test_without_any_async_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ASYNC_TESTS)
    result = run(pytester, "-p", "no:asyncio")
    result.assert_outcomes(passed=3)


def test_an_async_test_that_uses_none_of_our_fixtures_is_left_to_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("async def test_other(): pass")
    result = run(pytester, "-p", "no:asyncio")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_the_readme_async_example_passes(pytester: pytest.Pytester) -> None:
    text = README.read_text()
    section = text[text.index("## Testing your agents") :]
    blocks = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ", 3)], re.S)
    async_blocks = [b for b in blocks if "async def test_" in b]
    assert async_blocks, "the README's testing section shows an async test"
    pytester.makepyfile(test_readme_async=async_blocks[0])
    result = run(pytester)
    result.assert_outcomes(passed=1)
