"""What a new user tripped on in their first hour (issue 16): a model given as "provider:model" and a
hook implementation with the wrong parameter name."""

from __future__ import annotations

import pytest

import tracedagent
from tracedagent import Agent, ConfigurationError, PluginError, hookimpl
from tracedagent.models import AnthropicModel, OpenAIChatModel
from tracedagent.testing import ScriptedModel


def test_an_agent_takes_a_provider_model_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    openai = Agent("a", "openai:gpt-4o-mini")
    assert isinstance(openai.model, OpenAIChatModel)
    assert (openai.model.provider, openai.model.name) == ("openai", "gpt-4o-mini")
    anthropic = Agent("b", "anthropic:claude-sonnet-4-5")
    assert isinstance(anthropic.model, AnthropicModel)
    assert anthropic.model.name == "claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("spec", "says"),
    [("gpt-4o-mini", "provider:model"), ("nope:model", "unknown model provider 'nope'")],
)
def test_a_bad_model_string_says_what_is_accepted(spec: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match="agent 'a'") as refused:
        Agent("a", spec)
    assert says in str(refused.value)


def test_a_provider_string_without_its_key_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        Agent("a", "openai:gpt-4o-mini")


def test_a_hook_with_the_wrong_parameter_name_is_told_the_right_one() -> None:
    class Policy:
        @hookimpl
        def approve_tool_call(self, event: object) -> None:  # the observers' name; the decider's is `call`
            return None

    with pytest.raises(PluginError, match=r"Expected: approve_tool_call\(call\)"):
        Agent("a", ScriptedModel(["x"]), plugins=[Policy()])

    class Observer:
        @hookimpl
        def on_tool_call_end(self, call: object) -> None:
            return None

    with pytest.raises(PluginError, match=r"Expected: on_tool_call_end\(event\)"):
        tracedagent.register(Observer())


def test_an_unknown_hook_lists_the_hook_names() -> None:
    class Typo:
        @hookimpl
        def on_run_begin(self, event: object) -> None:
            return None

    with pytest.raises(PluginError, match=r"unknown hook 'on_run_begin'.*on_run_start"):
        Agent("a", ScriptedModel(["x"]), plugins=[Typo()])
