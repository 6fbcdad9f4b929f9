"""Structured output: an ``output_type`` compiled into a schema, a validator and the way it is asked for.

:func:`compile_output` turns a type (a pydantic model, a dataclass, a ``typing_extensions.TypedDict``, a
``list[...]`` or a scalar) into an :class:`OutputSpec`: the JSON Schema the model is given (its root is
always an object: other types are wrapped as ``{"response": ...}``), whether that schema meets OpenAI's
strict mode, and the mode the request uses:

* ``native``: the provider's own structured-output mode (OpenAI ``response_format``, Anthropic
  tool-forced output); the answer's text is the JSON;
* ``tool``: an output tool named ``final_result`` is offered next to the agent's tools and the model
  calls it with the output as its arguments (a text answer is accepted too when it validates);
* ``auto`` (the default): ``native`` when the model has a native mode (``native_output = True``), else
  ``tool``.

The loop calls :func:`judge` on every answer of a run with an output type. An invalid answer (not
JSON, the wrong shape, empty) goes back to the model as a correction it can act on (one more model call,
purpose ``output_retry``), up to ``output_retries`` times in the run; then the run fails with
:class:`OutputValidationError`. :class:`OutputRun` is the per-segment part: the validated value, the
invalid answers counted for ``RunEnded.output_validation_failures``, and the partial objects streamed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any, Literal, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import TypedDict, is_typeddict

from ._messages import Message, ToolCall
from ._model import OutputRequest, TextDelta
from ._state import RunState
from ._stream import PartialOutput, UsageUpdated
from ._tools import ToolSpec
from .exceptions import ConfigurationError, OutputValidationError

__all__ = [
    "OUTPUT_TOOL",
    "TEXT",
    "OutputMode",
    "OutputRun",
    "OutputSpec",
    "compile_output",
    "judge",
]

OutputMode = Literal["auto", "native", "tool"]
OUTPUT_TOOL = "final_result"
#: What a run without ``output_type`` records as its output type (``RunState.output_type``).
TEXT = "text"
_ACCEPTED = "Final result accepted."
_NOT_RUN = "Not run: the answer was given with final_result in the same turn."
_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(.*?)\n?```\s*$", re.DOTALL)
_MAX_QUOTE = 2000  # characters of a bad answer quoted back to the model in a correction
#: Characters of partial parsing each streamed character pays for (see :meth:`OutputRun.watch`).
PARTIAL_BUDGET = 8


class _Schema:
    """What one type compiles to, whatever the agent: the validator and the schema (cached by type)."""

    __slots__ = ("_bare", "_validate_json", "adapter", "description", "schema", "strict", "type", "validate", "wrapped")

    def __init__(self, output_type: Any) -> None:
        self.type = output_type
        self._bare: TypeAdapter[Any] | None = None
        self.wrapped = not _is_object(output_type)
        target = TypedDict(OUTPUT_TOOL, {"response": output_type}) if self.wrapped else output_type  # type: ignore[operator]
        try:
            self.adapter: TypeAdapter[Any] = TypeAdapter(target)
            schema = self.adapter.json_schema()
        except Exception as exc:
            hint = (
                " (on Python < 3.12 a TypedDict must come from typing_extensions)"
                if "typing_extensions" in str(exc)
                else ""
            )
            raise ConfigurationError(
                f"output_type {_type_name(output_type)} cannot be validated or described as JSON Schema{hint}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        self.schema, self.strict = _strict(schema)
        # pydantic-core's own validate_json, bound once: TypeAdapter.validate_json is a Python wrapper around it.
        self._validate_json = self.adapter.validator.validate_json
        #: The answer's JSON as a value of the type (raises ValidationError): for an object type,
        #: pydantic-core's validate_json itself, no Python frame of ours around it.
        self.validate: Callable[[str], Any] = self._unwrapped if self.wrapped else self._validate_json
        doc = (getattr(output_type, "__doc__", None) or "").strip() if not self.wrapped else ""
        if doc and (doc.startswith(("A base class", "Usage docs:")) or type(output_type).__module__ == "builtins"):
            doc = ""  # pydantic's or a builtin's docstring, not the user's
        self.description = doc or f"The final answer, as {_type_name(output_type)}."

    def _unwrapped(self, text: str) -> Any:
        return self._validate_json(text)["response"]

    def validate_bare(self, text: str) -> Any:
        """A wrapped type's value given without its ``{"response": ...}`` wrapper."""
        if self._bare is None:
            self._bare = TypeAdapter(self.type)
        return self._bare.validate_json(text)

    def partial(self, text: str) -> Any:
        value = self.adapter.validate_json(text, experimental_allow_partial="trailing-strings")
        if self.wrapped:
            if "response" not in value:
                raise ValueError("no response yet")
            return value["response"]
        return value


_CACHE: dict[Any, _Schema] = {}


def _schema_of(output_type: Any) -> _Schema:
    try:
        cached = _CACHE.get(output_type)
    except TypeError:  # an unhashable annotation: compile it each time
        return _Schema(output_type)
    if cached is None:
        cached = _CACHE[output_type] = _Schema(output_type)
    return cached


@dataclasses.dataclass(frozen=True, slots=True)
class OutputSpec:
    """An output type as an agent (or one run) asks for it: the schema, the mode chosen, the retries."""

    type: Any
    mode: Literal["native", "tool"]
    retries: int
    request: OutputRequest
    tools: tuple[ToolSpec, ...]
    schema: _Schema
    #: The type by name, as a checkpoint records it (``RunState.output_type``).
    name: str

    def start(self) -> OutputRun:
        return OutputRun(self)


def type_name(tp: Any) -> str:
    """A type as a checkpoint can keep it: ``module.QualName`` for a class, else its repr."""
    if isinstance(tp, type) and get_origin(tp) is None:
        return f"{tp.__module__}.{tp.__qualname__}"
    return repr(tp).replace("typing.", "")


def compile_output(output_type: Any, mode: str, retries: int, model: object, agent: str) -> OutputSpec:
    """Check the settings and compile ``output_type`` for ``model``; a bad one is a ConfigurationError."""
    if mode not in ("auto", "native", "tool"):
        raise ConfigurationError(f"agent {agent!r}: output_mode must be 'auto', 'native' or 'tool', not {mode!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"agent {agent!r}: output_retries must be a whole number >= 0, not {retries!r}")
    if output_type is None or output_type is type(None):
        raise ConfigurationError(f"agent {agent!r}: output_type must be a type; leave it out for text output")
    native = bool(getattr(model, "native_output", False))
    if mode == "native" and not native:
        name = f"{getattr(model, 'provider', '?')}:{getattr(model, 'name', '?')}"
        raise ConfigurationError(
            f"agent {agent!r}: output_mode='native' but model {name} has no native structured-output mode; "
            "use output_mode='tool' (or 'auto', which picks it)"
        )
    try:
        schema = _schema_of(output_type)
    except ConfigurationError as exc:
        raise ConfigurationError(f"agent {agent!r}: {exc}") from None
    chosen: Literal["native", "tool"] = "native" if mode == "native" or (mode == "auto" and native) else "tool"
    request = OutputRequest(OUTPUT_TOOL, schema.description, schema.schema, schema.strict, chosen)
    tools = (ToolSpec(OUTPUT_TOOL, schema.description, schema.schema),) if chosen == "tool" else ()
    return OutputSpec(output_type, chosen, retries, request, tools, schema, type_name(output_type))


class OutputRun:
    """The output side of one run segment: the value once valid, the invalid answers, the stream."""

    __slots__ = ("failures", "last_partial", "raw", "spec", "value")

    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.value: Any = None
        self.raw: str | None = None
        #: Invalid answers in this segment (``RunEnded.output_validation_failures``).
        self.failures = 0
        self.last_partial: Any = None

    def watch(self, stream: Callable[[Any], None]) -> Callable[[Any], None]:
        """A stream callback for one model call that also emits :class:`PartialOutput` as the JSON grows.

        Each parse reads the whole text so far, so parsing at every delta would cost the square of the
        answer's length. Parsing is paced instead: each character received earns ``PARTIAL_BUDGET``
        characters of parsing, and the text is parsed when the credit covers its length. The parsing of
        an answer of n characters then costs at most ``PARTIAL_BUDGET * n`` characters plus one last
        parse when the call ends (at ``UsageUpdated``, when characters arrived since the last one), and
        a short answer is still parsed at every delta."""
        schema = self.spec.schema
        parts: list[str] = []
        size = 0  # characters received
        credit = 0  # characters of parsing earned and not spent
        parsed = 0  # the size at the last parse

        def emit() -> None:
            nonlocal parsed
            text = "".join(parts)
            parts[:] = (text,)
            parsed = size
            try:
                value = schema.partial(text)
            except Exception:  # best effort: not valid yet, or a validator written for whole answers
                return
            if value != self.last_partial:
                self.last_partial = value
                stream(PartialOutput(value))

        def forward(part: Any) -> None:
            nonlocal size, credit
            kind = type(part)
            if kind is UsageUpdated and parsed != size:  # the call is over: the last partial comes first
                emit()
            stream(part)
            if kind is TextDelta and part.text:
                parts.append(part.text)
                size += len(part.text)
                credit += PARTIAL_BUDGET * len(part.text)
                if credit >= size:
                    credit -= size
                    emit()

        return forward


def judge(out: OutputRun, state: RunState, message: Message) -> Literal["tools", "done", "retry"]:
    """Decide what an answer means for the run's output: ``tools`` (an ordinary tool turn: run them),
    ``done`` (``out.value`` holds the validated output), or ``retry`` (a correction was appended to the
    messages). Raises :class:`OutputValidationError` once the corrections are used up."""
    spec = out.spec
    messages = state.messages
    assert isinstance(messages, list), "a running state holds its messages in a list"
    final: ToolCall | None = None
    calls = message.tool_calls
    others: tuple[ToolCall, ...] = ()
    if calls:
        if len(calls) == 1:  # the usual answer: the output call alone, or one ordinary call
            final = calls[0] if calls[0].name == OUTPUT_TOOL else None
        else:
            final = next((c for c in calls if c.name == OUTPUT_TOOL), None)
            others = tuple(c for c in calls if c is not final)
        if final is None:
            return "tools"
        text: str | None = final.arguments
    else:
        text = message.content
    try:
        value, errors = _validate(spec.schema, text, final is not None)
    except RecursionError:
        value, errors = None, [{"type": "json_invalid", "loc": (), "msg": "the JSON is nested too deeply"}]
    if not errors:
        out.value, out.raw = value, text
        if final is not None:
            messages.append(Message.tool(final.id, OUTPUT_TOOL, _ACCEPTED))
            if others:
                messages.extend(Message.tool(c.id, c.name, _NOT_RUN, is_error=True) for c in others)
        return "done"
    out.failures += 1
    out.raw = text
    if state.output_retries >= spec.retries:
        raise OutputValidationError(
            f"the model's answer is not a valid {_type_name(spec.type)} after {state.output_retries} "
            f"correction(s) (output_retries={spec.retries}): {_summary(errors)}; the answer is in .raw_output, "
            "the errors in .errors",
            errors=errors,
            raw_output=text,
        )
    state.output_retries += 1
    correction = _correction(spec, text, errors, final is not None)
    if final is not None:
        messages.append(Message.tool(final.id, OUTPUT_TOOL, correction, is_error=True))
        messages.extend(Message.tool(c.id, c.name, _NOT_RUN + " Call it again if you still need it.") for c in others)
    else:
        messages.append(Message.user(correction))
    return "retry"


# ----------------------------------------------------------------------------------------- helpers


def _empty() -> dict[str, Any]:
    return {"type": "missing", "loc": (), "msg": "the answer was empty"}


def _validate(schema: _Schema, text: str | None, from_tool: bool) -> tuple[Any, list[dict[str, Any]]]:
    if text is None:
        return None, [_empty()]
    try:  # the usual answer validates: no copy of it (strip) to tell an empty one first
        return schema.validate(text), []
    except ValidationError as exc:
        if not text.strip():  # no JSON is blank, so a blank answer always lands here
            return None, [_empty()]
        first = exc
    if not from_tool:  # a model writing JSON as text often fences it, or leaves out the wrapper
        fenced = _FENCE.match(text)
        body = fenced.group(1) if fenced else text
        for attempt in ((schema.validate,) if fenced else ()) + ((schema.validate_bare,) if schema.wrapped else ()):
            try:
                return attempt(body), []
            except ValidationError:
                pass
    errors = first.errors(include_url=False, include_input=False, include_context=False)
    if schema.wrapped:
        for e in errors:
            loc = tuple(e.get("loc", ()))
            e["loc"] = loc[1:] if loc[:1] == ("response",) else loc
    return None, [dict(e) for e in errors]


def _summary(errors: list[dict[str, Any]], limit: int = 5) -> str:
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg', '?')}" for e in errors[:limit]]
    more = f" and {len(errors) - limit} more" if len(errors) > limit else ""
    return "; ".join(parts) + more


def _correction(spec: OutputSpec, text: str | None, errors: list[dict[str, Any]], from_tool: bool) -> str:
    lines = "\n".join(
        f"- {'.'.join(str(p) for p in e.get('loc', ())) or '(root)'}: {e.get('msg', '?')}" for e in errors[:20]
    )
    quoted = ""
    if text and text.strip():
        quoted = f"\nYour answer was:\n{text[:_MAX_QUOTE]}{' [...]' if len(text) > _MAX_QUOTE else ''}\n"
    wrapped = ' wrapped as {"response": ...}' if spec.schema.wrapped else ""
    if spec.mode == "tool":
        how = f"Call the {OUTPUT_TOOL} tool again with arguments that match its schema{wrapped}."
    else:
        how = f"Answer again with only the JSON that matches the schema{wrapped}, nothing else."
    if not from_tool and spec.mode == "tool" and not (text and text.strip().startswith(("{", "["))):
        how = f"Give your final answer by calling the {OUTPUT_TOOL} tool{wrapped}."
    return f"Your final answer is not valid {_type_name(spec.type)}:\n{lines}\n{quoted}{how}"


def _is_object(tp: Any) -> bool:
    if isinstance(tp, type) and (issubclass(tp, BaseModel) or dataclasses.is_dataclass(tp)):
        return True
    return is_typeddict(tp) and get_origin(tp) is None


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) and get_origin(tp) is None else repr(tp).replace("typing.", "")


def _strict(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema with ``additionalProperties: false`` on every object and no ``default`` keywords, and
    whether it meets OpenAI's strict mode (every property required, no open-ended objects)."""
    ok = True

    def walk(node: Any) -> Any:
        nonlocal ok
        if isinstance(node, list):
            return [walk(n) for n in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items() if k != "default"}
        if out.get("type") == "object":
            props = out.get("properties")
            if isinstance(props, dict):
                if set(out.get("required", ())) != set(props):
                    ok = False
                if out.get("additionalProperties") not in (None, False):
                    ok = False
                out["additionalProperties"] = False
            else:
                ok = False  # a dict[str, ...]: strict mode has no schema for open-ended keys
        return out

    fixed = walk(schema)
    json.dumps(fixed)  # a schema that is not JSON would fail later, at the first request
    return fixed, ok
