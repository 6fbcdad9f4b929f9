"""Models for tests: ``ScriptedModel`` plays a script, ``FunctionModel`` asks a function."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._compaction import CharEstimate
from .._messages import Message, ToolCall, Usage
from .._model import ModelRequest, ModelResponse, ModelStreamPart, TextDelta, ThinkingDelta
from ..exceptions import ConfigurationError

__all__ = ["FunctionModel", "ScriptExhausted", "ScriptedModel", "Step"]

_ids = itertools.count(1)
_estimate = CharEstimate()


def _call_id() -> str:
    return f"call_{next(_ids)}"


def _as_call(value: ToolCall | tuple[str, Any] | dict[str, Any]) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return ToolCall.of(_call_id(), value[0], value[1])
    if isinstance(value, dict) and "name" in value:
        return ToolCall.of(str(value.get("id") or _call_id()), value["name"], value.get("arguments"))
    raise ConfigurationError(
        f"a scripted tool call is a ToolCall, a (name, arguments) tuple or a dict with 'name', not {value!r}"
    )


@dataclass
class Step:
    """One scripted model answer: text and/or tool calls, or an error; with optional delay and usage.

    ``tool_calls`` items may be ``ToolCall`` objects or ``(name, arguments)`` tuples. ``chunks`` splits the
    text into that many stream deltas. ``error`` is raised instead of answering (after ``delay``).
    """

    text: str | None = None
    tool_calls: Sequence[ToolCall | tuple[str, Any] | dict[str, Any]] = ()
    thinking: str | None = None
    usage: Usage | None = None
    error: BaseException | None = None
    delay: float = 0.0
    finish_reason: str | None = None
    chunks: int = 1
    _calls: tuple[ToolCall, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        self._calls = tuple(_as_call(c) for c in self.tool_calls)
        if self.delay < 0 or self.chunks < 1:
            raise ConfigurationError(f"a step needs delay >= 0 and chunks >= 1, not {self.delay!r}, {self.chunks!r}")

    @classmethod
    def of(cls, value: Step | str | BaseException | ToolCall | tuple[str, Any] | list[Any]) -> Step:
        """A step from shorthand: text, an exception, a tool call or a list of tool calls."""
        if isinstance(value, Step):
            return value
        if isinstance(value, str):
            return cls(text=value)
        if isinstance(value, BaseException):
            return cls(error=value)
        if isinstance(value, list):
            return cls(tool_calls=value)
        if isinstance(value, (ToolCall, tuple, dict)):
            return cls(tool_calls=[value])
        raise ConfigurationError(f"cannot make a scripted step from {value!r}")

    def calls(self) -> tuple[ToolCall, ...]:
        """The tool calls as :class:`ToolCall` objects (ids made once, when the step was built)."""
        return self._calls


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments


def _shows(step: Step, message: Message) -> bool:
    """Whether ``message`` (an assistant turn of the conversation) is what ``step`` answers."""
    if (step.text or None) != (message.content or None):
        return False
    ours, theirs = step.calls(), message.tool_calls
    return len(ours) == len(theirs) and all(
        a.name == b.name and _arguments(a) == _arguments(b) for a, b in zip(ours, theirs, strict=True)
    )


def _turns_of_this_run(messages: Sequence[Message]) -> list[Message]:
    """The assistant turns since the last user message: what this run has already answered."""
    turns: list[Message] = []
    for message in messages:
        if message.role == "user":
            turns.clear()
        elif message.role == "assistant":
            turns.append(message)
    return turns


class ScriptExhausted(AssertionError):
    """The scripted model was called more times than it has steps."""


async def _play(step: Step, request: ModelRequest) -> AsyncIterator[ModelStreamPart]:
    if step.delay:
        await asyncio.sleep(step.delay)
    else:
        await asyncio.sleep(0)  # a real model call yields to the event loop at least once
    if step.error is not None:
        raise step.error
    if step.thinking:
        yield ThinkingDelta(step.thinking)
    text = step.text
    if text:
        size = max(1, -(-len(text) // step.chunks))
        for start in range(0, len(text), size):
            yield TextDelta(text[start : start + size])
    calls = step.calls()
    message = Message("assistant", text, calls, thinking=step.thinking)
    usage = step.usage or Usage(
        _estimate.count(request.messages), _estimate.count((message,)), requests=1, estimated=True
    )
    yield ModelResponse(message, usage, step.finish_reason or ("tool_calls" if calls else "stop"), None)


class ScriptedModel:
    """A model that answers from a script, for tests and the demo.

    Each model call plays the next step. With ``per_run=True`` every run plays the script from the
    start (so concurrent runs each get the whole script). :meth:`assert_all_used` checks that no step
    was left unplayed.

    The script follows the conversation it is given: when a run this model has not seen yet arrives with
    assistant turns already made (a run resumed in another process, which imported the same script), the
    steps those turns show are counted as played and the next step answers. So one script serves the
    process that starts a run and the one that resumes it. A script whose next steps do not match those
    turns (one written for the resumed part only) plays from where it is, as before.
    """

    def __init__(
        self,
        steps: Iterable[Step | str | BaseException | ToolCall | tuple[str, Any] | list[Any]],
        *,
        name: str = "scripted",
        provider: str = "scripted",
        per_run: bool = False,
        price_as: str | None = None,
    ) -> None:
        self.steps = [Step.of(s) for s in steps]
        self._name = name
        self._provider = provider
        #: Price this model's usage as that model (``"openai:gpt-4o-mini"``); None: no price.
        self.price_as = price_as
        self.per_run = per_run
        self._lock = threading.Lock()
        self._cursor = 0
        self._cursors: dict[str, int] = {}
        self._seen: set[str] = set()
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def provider(self) -> str:
        return self._provider

    def _caught_up(self, start: int, request: ModelRequest) -> int:
        """Where the script stands for a run first seen here: past the steps its conversation shows."""
        position = start
        for turn in _turns_of_this_run(request.messages):
            while position < len(self.steps) and self.steps[position].error is not None:
                position += 1  # an error step leaves no turn behind (the call was retried)
            if position >= len(self.steps) or not _shows(self.steps[position], turn):
                return start
            position += 1
        return position

    def _next(self, request: ModelRequest) -> Step:
        with self._lock:
            self.requests.append(request)
            first_sight = request.run_id not in self._seen
            if first_sight:
                self._seen.add(request.run_id)
            if self.per_run:
                index = self._cursors.get(request.run_id, 0)
                if first_sight:
                    index = self._caught_up(index, request)
                self._cursors[request.run_id] = index + 1
            else:
                if first_sight:
                    self._cursor = self._caught_up(self._cursor, request)
                index = self._cursor
                self._cursor += 1
        if index >= len(self.steps):
            raise ScriptExhausted(
                f"scripted model {self._name!r} was called {index + 1} times but has {len(self.steps)} steps; "
                "add steps to the script"
            )
        return self.steps[index]

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamPart]:
        return _play(self._next(request), request)

    @property
    def calls(self) -> int:
        """How many model calls were made."""
        return len(self.requests)

    def assert_all_used(self) -> None:
        """Fail if a step of the script was never played (for every run, with ``per_run``)."""
        with self._lock:
            if self.per_run:
                short = {run: n for run, n in self._cursors.items() if n < len(self.steps)}
                if short or not self._cursors:
                    raise AssertionError(
                        f"scripted model {self._name!r} has {len(self.steps)} steps; runs that used fewer: "
                        f"{short or 'no run called it'}"
                    )
            elif self._cursor < len(self.steps):
                unused = self.steps[self._cursor :]
                raise AssertionError(
                    f"scripted model {self._name!r}: {len(unused)} of {len(self.steps)} steps never played: {unused!r}"
                )


FunctionResult = ModelResponse | Message | str | Sequence[ToolCall]


class FunctionModel:
    """A model whose answers come from ``function(messages, request)``, sync or async.

    The function returns a :class:`ModelResponse`, a :class:`Message`, a string (the answer) or a list of
    :class:`ToolCall`. It may raise to simulate a failing model.

    ``native_output=True`` makes it a model with a native structured-output mode (``request.output``
    then asks for the JSON as the answer's text, as OpenAI's ``response_format`` does); by default runs
    with an ``output_type`` offer it an output tool. ``chunks`` splits the answer's text into that many
    stream deltas.
    """

    def __init__(
        self,
        function: Callable[[Sequence[Message], ModelRequest], FunctionResult | Awaitable[FunctionResult]],
        *,
        name: str = "function",
        provider: str = "function",
        native_output: bool = False,
        chunks: int = 1,
        price_as: str | None = None,
    ) -> None:
        if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
            raise ConfigurationError(f"chunks must be a whole number >= 1, not {chunks!r}")
        self.function = function
        self.native_output = native_output
        self.chunks = chunks
        self._name = name
        self._provider = provider
        #: Price this model's usage as that model (``"openai:gpt-4o-mini"``); None: no price.
        self.price_as = price_as

    @property
    def name(self) -> str:
        return self._name

    @property
    def provider(self) -> str:
        return self._provider

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamPart]:
        await asyncio.sleep(0)
        result = self.function(request.messages, request)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, ModelResponse):
            response = result
        else:
            if isinstance(result, Message):
                message = result
            elif isinstance(result, str):
                message = Message("assistant", result)
            else:
                message = Message("assistant", None, tuple(result))
            usage = Usage(_estimate.count(request.messages), _estimate.count((message,)), requests=1, estimated=True)
            response = ModelResponse(message, usage, "tool_calls" if message.tool_calls else "stop")
        text = response.message.content
        if text:
            size = max(1, -(-len(text) // self.chunks))
            for start in range(0, len(text), size):
                yield TextDelta(text[start : start + size])
        yield response
