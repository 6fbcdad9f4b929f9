"""``AgentConfig``: an agent's immutable configuration, checked once when the agent is built.

The run loop and every stage below it read the configuration and never import the :class:`Agent`
entry points: configuration (shared by every run, never changed by one), run state
(:class:`~tracedagent._state.RunState`, the checkpoint payload) and the per-call context
(:class:`~tracedagent.RunContext`) are three separate things.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from ._checkpoint import CheckpointStore, store_from
from ._compaction import CompactionStrategy
from ._model import Model
from ._output import OutputMode, OutputSpec, compile_output
from ._tools import DEFAULT_MAX_RESULT_CHARS, Tool
from ._toolsource import ToolSource
from .exceptions import ConfigurationError
from .models import resolve_model

__all__ = ["AgentConfig", "configure"]

PrepareTools = Callable[[Any], Awaitable[None]]
#: Run-level output types one configuration keeps compiled (``AgentConfig.run_outputs``).
_MAX_RUN_OUTPUTS = 64


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """What an agent is: a name, a model, instructions, tools and the limits of its runs."""

    name: str
    model: Model
    instructions: str | None = None
    tools: MappingProxyType[str, Tool] = field(default_factory=lambda: MappingProxyType({}))
    max_turns: int = 20
    compaction: CompactionStrategy | None = None
    model_settings: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    prepare_tools: PrepareTools | None = None
    #: Where runs are kept; None means the process default (``TRACEDAGENT_CHECKPOINTS`` or memory).
    checkpoints: CheckpointStore | None = None
    #: "step", "interrupt", or None: every step with a durable store, only at pauses in memory.
    checkpoint_every: Literal["step", "interrupt"] | None = None
    max_concurrent_runs: int | None = None
    #: The default ``max_result_chars`` of tools that set none.
    max_result_chars: int = DEFAULT_MAX_RESULT_CHARS
    #: The structured output runs return (None: text), corrections allowed, and how it is asked for.
    output_type: Any = None
    output_retries: int = 1
    output_mode: OutputMode = "auto"
    #: ``output_type`` compiled for ``model`` (None without one).
    output: OutputSpec | None = None
    #: Where more tools come from when a run starts (MCP servers): see :mod:`._toolsource`.
    tool_sources: tuple[ToolSource, ...] = ()

    #: The agents a run may be handed to (``transfer_to_{name}`` tools): their configurations, or
    #: zero-argument callables returning an agent, resolved when a run first needs them (for cycles).
    handoffs: tuple[AgentConfig | Callable[[], Any], ...] = ()
    #: The ``transfer_to_{name}`` tools of ``handoffs``, made on a run's first use (a cache, not a setting).
    transfer_tools: dict[str, Tool] = field(default_factory=dict, compare=False, repr=False)
    #: ``run(output_type=...)`` types other than the agent's, compiled for this configuration on first use
    #: (a cache, not a setting: keyed by everything :func:`compile_output` reads, so a copy made with
    #: ``dataclasses.replace``, which shares it, never sees a spec compiled for other settings).
    run_outputs: dict[Any, OutputSpec] = field(default_factory=dict, compare=False, repr=False)

    def output_for(self, output_type: Any = None) -> OutputSpec | None:
        """The output a run asks for: ``output_type`` given to the run, else the agent's."""
        if output_type is None:
            return self.output
        if self.output is not None and output_type is self.output_type:
            return self.output
        # what compile_output reads from the model is whether it has a native mode (the rest is for errors)
        key = (output_type, self.output_mode, self.output_retries, bool(getattr(self.model, "native_output", False)))
        try:
            cached = self.run_outputs.get(key)
        except TypeError:  # an unhashable annotation: compiled each time
            return compile_output(output_type, self.output_mode, self.output_retries, self.model, self.name)
        if cached is None:
            if len(self.run_outputs) >= _MAX_RUN_OUTPUTS:  # types made per run (a new class each time)
                self.run_outputs.clear()
            cached = compile_output(output_type, self.output_mode, self.output_retries, self.model, self.name)
            self.run_outputs[key] = cached
        return cached


def configure(
    name: str,
    model: Model | str,
    *,
    instructions: str | None = None,
    tools: Iterable[Tool | ToolSource] = (),
    max_turns: int = 20,
    compaction: CompactionStrategy | None = None,
    model_settings: dict[str, Any] | None = None,
    prepare_tools: Callable[[Any], Awaitable[None] | None] | None = None,
    checkpoints: CheckpointStore | str | os.PathLike[str] | None = None,
    checkpoint_every: Literal["step", "interrupt"] | None = None,
    max_concurrent_runs: int | None = None,
    max_result_chars: int | None = None,
    output_type: Any = None,
    output_retries: int = 1,
    output_mode: OutputMode = "auto",
    handoffs: Iterable[Any] = (),
) -> AgentConfig:
    """Check every setting and build the configuration; a bad one is a :class:`ConfigurationError`
    that names the agent and says what is accepted."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"an agent needs a non-empty name, not {name!r}")
    if isinstance(model, str):
        try:
            model = resolve_model(model)
        except ConfigurationError as exc:
            raise ConfigurationError(f"agent {name!r}: {exc}") from None
    if not isinstance(model, Model):
        raise ConfigurationError(
            f"agent {name!r}: model must implement the Model protocol (name, provider, stream()); "
            f'got {type(model).__name__}. Pass a "provider:model" string ("openai:gpt-4o-mini"), a model from '
            "tracedagent.models, or tracedagent.testing.ScriptedModel"
        )
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise ConfigurationError(f"agent {name!r}: max_turns must be a positive integer, not {max_turns!r}")
    if compaction is not None and not isinstance(compaction, CompactionStrategy):
        raise ConfigurationError(
            f"agent {name!r}: compaction must be a strategy such as DropOldest(max_tokens=...) or "
            f"Summarize(max_tokens=...), not {compaction!r}"
        )
    by_name: dict[str, Tool] = {}
    sources: list[ToolSource] = []
    for t in tools:
        if not isinstance(t, Tool) and isinstance(t, ToolSource):
            sources.append(t)
            continue
        if not isinstance(t, Tool):
            raise ConfigurationError(f"agent {name!r}: {t!r} is not a tool; decorate the function with @tool")
        if t.name in by_name:
            raise ConfigurationError(f"agent {name!r}: two tools are named {t.name!r}; give one another name")
        by_name[t.name] = t
    if checkpoint_every not in (None, "step", "interrupt"):
        raise ConfigurationError(
            f"agent {name!r}: checkpoint_every must be 'step' or 'interrupt', not {checkpoint_every!r}"
        )
    if max_concurrent_runs is not None and (
        isinstance(max_concurrent_runs, bool) or not isinstance(max_concurrent_runs, int) or max_concurrent_runs < 1
    ):
        raise ConfigurationError(
            f"agent {name!r}: max_concurrent_runs must be a whole number >= 1 or None, not {max_concurrent_runs!r}"
        )
    if max_result_chars is None:
        max_result_chars = DEFAULT_MAX_RESULT_CHARS
    elif isinstance(max_result_chars, bool) or not isinstance(max_result_chars, int) or max_result_chars < 1:
        raise ConfigurationError(
            f"agent {name!r}: max_result_chars must be a whole number of characters >= 1, not {max_result_chars!r}"
        )
    # Checked (and compiled) even without a type, so a bad mode or retry count fails when the agent is built.
    output = compile_output(output_type if output_type is not None else str, output_mode, output_retries, model, name)
    targets = _handoff_targets(name, handoffs, by_name)
    return AgentConfig(
        name=name,
        model=model,
        instructions=instructions,
        tools=MappingProxyType(by_name),
        max_turns=max_turns,
        compaction=compaction,
        model_settings=MappingProxyType(dict(model_settings or {})),
        prepare_tools=_as_async(prepare_tools) if prepare_tools is not None else None,
        checkpoints=store_from(checkpoints),
        checkpoint_every=checkpoint_every,
        max_concurrent_runs=max_concurrent_runs,
        max_result_chars=max_result_chars,
        output_type=output_type,
        output_retries=output_retries,
        output_mode=output_mode,
        output=output if output_type is not None else None,
        tool_sources=tuple(sources),
        handoffs=targets,
    )


def _handoff_targets(
    name: str, handoffs: Iterable[Any], tools: dict[str, Tool]
) -> tuple[AgentConfig | Callable[[], Any], ...]:
    """The handoff targets as configurations (an agent's ``config``) or zero-argument callables; the
    ``transfer_to_{name}`` tools of the agents known now must not clash with each other or a tool."""
    if isinstance(handoffs, (str, bytes)) or not isinstance(handoffs, Iterable):
        raise ConfigurationError(f"agent {name!r}: handoffs must be a list of agents, not {handoffs!r}")
    targets: list[AgentConfig | Callable[[], Any]] = []
    seen: set[str] = set()
    for target in handoffs:
        config = getattr(target, "config", target)
        if isinstance(config, AgentConfig):
            tool_name = f"transfer_to_{config.name}"
            if tool_name in tools or config.name in seen:
                raise ConfigurationError(
                    f"agent {name!r}: the handoff to {config.name!r} makes a tool {tool_name!r}, which "
                    "is already taken; rename the agent or the tool"
                )
            seen.add(config.name)
            targets.append(config)
        elif callable(target):
            targets.append(target)
        else:
            raise ConfigurationError(
                f"agent {name!r}: a handoff is an Agent or a function returning one (for cycles: "
                f"handoffs=[lambda: other]), not {target!r}"
            )
    return tuple(targets)


def _as_async(fn: Callable[[Any], Awaitable[None] | None]) -> PrepareTools:
    async def call(ctx: Any) -> None:
        result = fn(ctx)
        if inspect.isawaitable(result):
            await result

    return call
