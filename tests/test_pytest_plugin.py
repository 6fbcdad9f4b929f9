"""The pytest plugin (entry point ``pytest11`` ``tracedagent``), tested the way pytest plugins are: pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _ini(pytester: pytest.Pytester) -> None:
    # Other installed pytest plugins only slow the inner sessions down.
    pytester.makeini(
        "[pytest]\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "addopts = -p no:langsmith_plugin -p no:hypothesispytest -p no:anyio -p no:cacheprovider\n"
    )


USES_BOTH_FIXTURES = """
from tracedagent import Agent, RunEnded, tool
from tracedagent.testing import Step


@tool
def add(a: int, b: int) -> int:
    '''Add two integers.'''
    return a + b


def test_agent(recorded_events, scripted_model):
    model = scripted_model([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "It is 3."])
    result = Agent("calc", model, tools=[add]).run_sync("1 + 2?")
    assert result.output == "It is 3."
    assert recorded_events.hooks() == [
        "on_run_start",
        "on_model_call_start",
        "on_model_call_end",
        "on_tool_call_start",
        "on_tool_call_end",
        "on_model_call_start",
        "on_model_call_end",
        "on_run_end",
    ]
    assert [e.status for e in recorded_events.of_type(RunEnded)] == ["completed"]
    assert recorded_events.unmatched() == []


def test_each_test_records_only_its_own_runs(recorded_events, scripted_model):
    assert recorded_events.events == []
    Agent("second", scripted_model(["hi"])).run_sync("hello")
    assert {e.agent for e in recorded_events.events} == {"second"}
"""


def test_fixtures_recorded_events_and_scripted_model(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_BOTH_FIXTURES)
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_the_plugin_comes_from_the_pytest11_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(USES_BOTH_FIXTURES)
    result = pytester.runpytest("-p", "no:tracedagent")
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*fixture 'recorded_events' not found*"])


def test_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(["recorded_events*", "*Every event of every run in this test*"])
    result.stdout.fnmatch_lines(["scripted_model*"])


def test_an_unplayed_step_errors_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from tracedagent import Agent

        def test_leaves_a_step(scripted_model):
            model = scripted_model(["first", "never played"])
            assert Agent("a", model).run_sync("hi").output == "first"
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaves_a_step*", "*1 of 2 steps never played*"])


def test_require_all_used_false_allows_leftover_steps(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from tracedagent import Agent

        def test_leaves_a_step(scripted_model):
            model = scripted_model(["first", "spare"], require_all_used=False)
            assert Agent("a", model).run_sync("hi").output == "first"

        def test_options_reach_the_model(scripted_model):
            model = scripted_model(["x"], name="fake-gpt", provider="fake", per_run=True)
            assert (model.name, model.provider, model.per_run) == ("fake-gpt", "fake", True)
            Agent("a", model).run_sync("hi")
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


def test_a_failing_assertion_on_recorded_events_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from tracedagent import Agent

        def test_wrong_expectation(recorded_events, scripted_model):
            Agent("a", scripted_model(["x"])).run_sync("hi")
            assert recorded_events.hooks() == ["on_run_start"]
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)


def test_in_a_separate_process(pytester: pytest.Pytester) -> None:
    """As a user's test session sees it: a fresh interpreter that loads the plugin from its entry point."""
    pytester.makepyfile(USES_BOTH_FIXTURES)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=2)
