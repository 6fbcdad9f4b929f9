"""The model step: one model request as a span.

The request is a snapshot of the conversation; the response is streamed (text and thinking deltas go
to the run's stream), checked against the protocol (a model's own code may break it: the answer is
repaired where nothing is lost, else a :class:`ModelBehaviorError` says what), and its usage (estimated
when the provider reports none, priced when the model has a known price: :mod:`._cost`) is added to the
run's.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

from ._compaction import CharEstimate
from ._cost import priced
from ._events import ModelCallEnded, ModelCallStarted
from ._messages import Message, ToolCall, Usage
from ._model import Model, ModelRequest, ModelResponse
from ._segment import Segment
from ._span import Stage
from ._stream import UsageUpdated
from ._text import describe_error
from ._tool_layers import retry_notifier
from .exceptions import ModelBehaviorError, ModelError, TracedAgentError

__all__ = ["call_model"]

_ESTIMATE = CharEstimate()
_perf = time.perf_counter
_NO_USAGE = Usage()


async def call_model(
    seg: Segment, messages: Sequence[Message], purpose: str = "turn", instructions: str | None = None
) -> ModelResponse:
    """One model request as a span: stream it, collect the response, add its usage to the run's."""
    state, config = seg.state, seg.config
    model = config.model
    # A snapshot: the run goes on appending to its history, and the request must not change under the model.
    messages = tuple(messages)
    tools = (
        tuple(
            t.spec
            for t in seg.ctx.tools.values()
            # hidden while open, shown again once a probe may go (else nothing would ever call it again)
            if not (t.breaker and t.breaker.hide_when_open and t.breaker.state == "open" and t.breaker.retry_in() > 0)
        )
        if purpose != "compaction"
        else ()
    )
    out = seg.output if purpose != "compaction" else None
    if out is not None and out.spec.tools:
        tools += out.spec.tools
    span = seg.span.child()
    stage = Stage(span, ModelCallStarted, ModelCallEnded)
    if stage.listened:
        # ModelCallStarted: model, provider, turn, purpose (shared with the end); messages, tools
        stage.start((model.name, model.provider, state.turn, purpose), (messages, tuple([spec.name for spec in tools])))
    request = ModelRequest(
        messages,
        config.instructions if instructions is None else instructions,
        tools,
        config.model_settings,
        span.context,
        state.run_id,
        config.name,
        purpose,
        retry_notifier(span, "model", model.name) if seg.d.on_retry else None,
        out.spec.request if out is not None else None,
    )
    stream = seg.stream
    if stream is not None and out is not None:
        stream = out.watch(stream)
    response: ModelResponse | None = None
    first: float | None = None
    with stage:
        try:
            raw: ModelResponse | None = None
            # contextlib.aclosing by hand: the same aclose() on every exit, two coroutines fewer per call.
            parts = model.stream(request)
            try:
                async for part in parts:
                    if first is None:
                        first = _perf() - stage.started
                    if type(part) is ModelResponse:
                        raw = part
                    elif stream is not None:
                        stream(part)
            finally:
                await parts.aclose()  # type: ignore[attr-defined]
            if raw is None:
                raise ModelBehaviorError(
                    f"model {model.provider}:{model.name} ended its stream without a response; check the provider"
                )
            message = raw.message
            if not (
                type(message) is Message
                and (message.content is None or type(message.content) is str)
                and (raw.usage is None or type(raw.usage) is Usage)
                and (not message.tool_calls or _calls_ok(message.tool_calls))
            ):
                raw = _repaired(raw, f"{model.provider}:{model.name}")
            response = raw if raw.usage is not None else _with_estimated_usage(raw, messages)
            response = _with_cost(response, model)
        except TracedAgentError:
            raise
        except Exception as exc:
            error = ModelError(f"model call to {model.provider}:{model.name} failed: {describe_error(exc)}")
            raise error from exc
        finally:
            usage = response.usage if response is not None and response.usage is not None else _NO_USAGE
            state.usage = state.usage + usage
            if stage.listened:
                # ModelCallEnded, after duration_s: usage, finish_reason, response_model, time_to_first_token_s, output
                if response is not None:
                    stage.end(usage, response.finish_reason, response.response_model, first, response.message)
                else:
                    stage.end(usage, None, None, first)
    if stream is not None:
        stream(UsageUpdated(usage, state.usage))
    return response


def _calls_ok(calls: Sequence[ToolCall]) -> bool:
    """Whether the tool calls of an answer can run as they are: ToolCall objects with a name, JSON text
    arguments and ids that are set and distinct (each call's result answers its id)."""
    if type(calls) is not tuple:
        return False
    if len(calls) == 1:
        call = calls[0]
        return (
            type(call) is ToolCall
            and type(call.id) is str
            and bool(call.id)
            and type(call.name) is str
            and bool(call.name)
            and type(call.arguments) is str
        )
    seen: set[str] = set()
    for call in calls:
        if not _calls_ok((call,)) or call.id in seen:
            return False
        seen.add(call.id)
    return True


def _repaired(response: ModelResponse, label: str) -> ModelResponse:
    """The answer of a model that broke the protocol, fixed where nothing is lost (arguments not yet JSON
    text, missing or repeated call ids, a list of calls) or a :class:`ModelBehaviorError` saying what."""
    message = response.message
    if not isinstance(message, Message):
        raise ModelBehaviorError(
            f"model {label} answered with a {type(message).__name__} where a Message belongs; fix its stream()"
        )
    if message.content is not None and not isinstance(message.content, str):
        raise ModelBehaviorError(
            f"model {label} answered with content of type {type(message.content).__name__}; it must be text or None"
        )
    if response.usage is not None and not isinstance(response.usage, Usage):
        raise ModelBehaviorError(
            f"model {label} reported usage as a {type(response.usage).__name__}; it must be a Usage or None"
        )
    try:
        given = list(message.tool_calls or ())
    except TypeError:
        raise ModelBehaviorError(f"model {label} answered with tool_calls that are not a list of ToolCall") from None
    calls: list[ToolCall] = []
    ids: set[str] = set()
    for number, call in enumerate(given, 1):
        if not isinstance(call, ToolCall):
            raise ModelBehaviorError(f"model {label}: tool call #{number} is a {type(call).__name__}, not a ToolCall")
        if not isinstance(call.name, str) or not call.name:
            raise ModelBehaviorError(f"model {label}: tool call #{number} has no tool name ({call.name!r})")
        arguments: Any = call.arguments  # typed str, but a model's own code may give anything
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            try:
                arguments = json.dumps(arguments)
            except (TypeError, ValueError) as exc:
                raise ModelBehaviorError(
                    f"model {label}: the arguments of tool call #{number} ({call.name}) are not JSON: {exc}"
                ) from None
        call_id = call.id if isinstance(call.id, str) and call.id and call.id not in ids else ""
        while not call_id or call_id in ids:  # a call without an id, or with another call's id
            call_id = f"call_{uuid.uuid4().hex[:24]}"
        ids.add(call_id)
        calls.append(ToolCall(call_id, call.name, arguments))
    fixed = dataclasses.replace(message, tool_calls=tuple(calls))
    return ModelResponse(fixed, response.usage, response.finish_reason, response.response_model)


def _with_cost(response: ModelResponse, model: Model) -> ModelResponse:
    """The response with its usage priced (a model that reported a cost keeps it), or as it is when the
    price is unknown."""
    usage = response.usage
    if usage is None or usage.cost_usd is not None:
        return response
    with_cost = priced(model.provider, model.name, getattr(model, "price_as", None), usage)
    if with_cost is usage:
        return response
    return ModelResponse(response.message, with_cost, response.finish_reason, response.response_model)


def _with_estimated_usage(response: ModelResponse, messages: Sequence[Message]) -> ModelResponse:
    usage = Usage(
        input_tokens=_ESTIMATE.count(messages),
        output_tokens=_ESTIMATE.count((response.message,)),
        requests=1,
        estimated=True,
    )
    return ModelResponse(response.message, usage, response.finish_reason, response.response_model)
