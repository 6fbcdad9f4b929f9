"""The Anthropic Messages API: ``POST {base_url}/v1/messages``, streamed as server-sent events.

The shared :class:`HTTPModel` does the client, retries (429, 5xx and 529 ``overloaded``), trace
context and error mapping; this module writes the request body and reads the answer:

* :func:`to_anthropic` turns the conversation into Anthropic's shape: system text apart, assistant
  ``tool_use`` blocks, tool results as ``tool_result`` blocks in a user message, same-role neighbours
  merged (the API wants user and assistant turns to alternate); a tool result's images
  (``Message.images``: JPEG, PNG, GIF, WebP) are ``image`` blocks in its ``tool_result``, after its text;
* :class:`MessageAssembler` is a pure state machine fed with the stream's events; it yields the
  deltas as they arrive and builds the final :class:`ModelResponse`. A stream without
  ``message_stop``, an unreadable event or an ``error`` event is a :class:`ModelStreamError`, never a
  short answer.

Usage follows the OpenTelemetry GenAI conventions: ``input_tokens`` counts every input token, cache
reads and writes included (Anthropic's own ``input_tokens`` leaves them out), ``cache_read_tokens``
the cache reads, ``reasoning_tokens`` the thinking tokens where the API reports them.

Thinking blocks are streamed, kept as ``Message.thinking`` (the text) and ``Message.thinking_blocks``
(each ``thinking`` block with its signature, each ``redacted_thinking`` block with its data), and sent
back first in the assistant turn, as the API requires when extended thinking and tool use are combined.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, NoReturn

import httpx
import httpx_sse

from .._messages import Image, Message, ThinkingBlock, ToolCall, Usage
from .._model import ModelRequest, ModelResponse, ModelStreamPart, TextDelta, ThinkingDelta
from .._tools import ToolSpec
from ..exceptions import ConfigurationError, ModelStreamError
from ._http import HTTPModel

__all__ = ["AnthropicModel", "MessageAssembler", "to_anthropic"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"

Delta = TextDelta | ThinkingDelta


class AnthropicModel(HTTPModel):
    """A Claude model through the Anthropic Messages API, streaming.

    The key is ``api_key`` or ``ANTHROPIC_API_KEY`` (needed for api.anthropic.com, optional for a proxy);
    the base URL ``base_url``, ``ANTHROPIC_BASE_URL`` or https://api.anthropic.com. ``max_tokens`` caps
    each answer (``model_settings={"max_tokens": ...}`` overrides it); other settings (``temperature``,
    ``thinking``, ``tool_choice``...) go into the request body as they are. ``headers`` are sent with
    every request (``anthropic-beta``, or another ``anthropic-version``).

    Structured output (``output_type``, native mode) offers a tool with the output's schema and forces
    it (``tool_choice`` ``{"type": "tool"}``, or ``{"type": "any"}`` when the agent has tools of its own,
    or left to the model with extended ``thinking``, which cannot be combined with a forced tool); the
    tool's input becomes the answer's text.
    """

    provider = "anthropic"
    base_url_env = "ANTHROPIC_BASE_URL"
    #: Structured output by a forced tool: its input is the answer's text (streamed as TextDelta).
    native_output = True

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_tokens: int = 4096,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = 600.0,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 120.0,
        max_retries: int = 3,
        retry_initial_delay: float = 0.5,
        retry_max_delay: float = 30.0,
        max_retry_after: float = 120.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            raise ConfigurationError(f"max_tokens must be a positive whole number, not {max_tokens!r}")
        key = api_key if api_key is not None else os.environ.get("ANTHROPIC_API_KEY")
        merged = {"anthropic-version": API_VERSION}
        merged.update({k.lower(): v for k, v in (headers or {}).items()})
        super().__init__(
            name,
            base_url=base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL,
            api_key=key or None,
            headers=merged,
            timeout=timeout,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_retries=max_retries,
            retry_initial_delay=retry_initial_delay,
            retry_max_delay=retry_max_delay,
            max_retry_after=max_retry_after,
            client=client,
        )
        if not key and httpx.URL(self.base_url).host == "api.anthropic.com":
            raise ConfigurationError(
                f"anthropic:{name} needs an API key: set ANTHROPIC_API_KEY or pass api_key=... "
                "(a proxy or local server given as base_url may do without)"
            )
        self.max_tokens = max_tokens

    def _endpoint(self) -> str:
        return "/v1/messages"

    def _auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self._api_key} if self._api_key else {}

    def _payload(self, request: ModelRequest) -> dict[str, Any]:
        settings = dict(request.settings)
        system, messages = to_anthropic(request.instructions, request.messages)
        body: dict[str, Any] = {
            "model": self.name,
            "max_tokens": settings.pop("max_tokens", self.max_tokens),
            "messages": messages,
        }
        if system:
            body["system"] = system
        tools = [_tool(spec) for spec in request.tools] + list(settings.pop("tools", None) or ())
        output = request.output
        if output is not None and output.mode == "native":
            if "tool_choice" not in settings and not settings.get("thinking"):
                forced = {"type": "any"} if tools else {"type": "tool", "name": output.name}
                body["tool_choice"] = forced
            tools.append({"name": output.name, "description": output.description, "input_schema": output.schema})
        if tools:
            body["tools"] = tools
        body.update(settings)
        body["stream"] = True
        return body

    def _error_message(self, body: bytes) -> str:
        try:
            message = json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError, RecursionError):
            return super()._error_message(body)
        return message if isinstance(message, str) else super()._error_message(body)

    async def _parts(
        self, events: AsyncIterator[httpx_sse.ServerSentEvent], request: ModelRequest
    ) -> AsyncIterator[ModelStreamPart]:
        output = request.output.name if request.output is not None and request.output.mode == "native" else None
        assembler = MessageAssembler(f"{self.provider}:{self.name}", redact=self.redact, output_tool=output)
        try:
            # Read to the end of the body even after message_stop, so the connection can be reused.
            async for sse in events:
                for part in assembler.feed_sse(sse.event, sse.data):
                    yield part
        except httpx_sse.SSEError as exc:
            raise ModelStreamError(
                f"{self.provider}:{self.name} did not answer with an event stream ({self.redact(str(exc))})"
            ) from exc
        except ModelStreamError:
            if not assembler.complete:
                raise  # a connection that breaks after message_stop has lost nothing
        yield assembler.finish()


# ------------------------------------------------------------------------------------ the request


def to_anthropic(instructions: str | None, messages: Sequence[Message]) -> tuple[str | None, list[dict[str, Any]]]:
    """The ``system`` text and the ``messages`` list of a Messages API request for this conversation."""
    system = [instructions] if instructions else []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
        if role == "user":  # tool results must come first in a user turn
            out[-1]["content"].sort(key=lambda block: block["type"] != "tool_result")

    for message in messages:
        if message.role == "system":
            if message.content:
                system.append(message.content)
        elif message.role == "user":
            add("user", [_text(message.content)] if message.content else [])
        elif message.role == "assistant":
            blocks = [_thinking(block) for block in message.thinking_blocks]
            if message.content:
                blocks.append(_text(message.content))
            blocks.extend(_tool_use(call) for call in message.tool_calls)
            add("assistant", blocks)
        else:
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id or ""}
            images = [_image(image) for image in message.images if image.media_type in _IMAGE_TYPES]
            if images:
                result["content"] = [_text(message.content), *images] if message.content else images
            elif message.content:
                result["content"] = message.content
            if message.is_error:
                result["is_error"] = True
            add("user", [result])
    return ("\n\n".join(system) or None), out


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


#: The image types the Messages API takes (others stay described in the tool result's text).
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _image(image: Image) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": image.data}}


def _thinking(block: ThinkingBlock) -> dict[str, Any]:
    if block.redacted is not None:
        return {"type": "redacted_thinking", "data": block.redacted}
    return {"type": "thinking", "thinking": block.text, "signature": block.signature}


def _tool_use(call: ToolCall) -> dict[str, Any]:
    try:
        arguments = json.loads(call.arguments or "{}")
    except (ValueError, RecursionError):
        arguments = {}  # the tool already told the model its arguments were not JSON
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": arguments if isinstance(arguments, dict) else {},
    }


def _tool(spec: ToolSpec) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": spec.name}
    if spec.description:
        tool["description"] = spec.description
    tool["input_schema"] = spec.parameters
    return tool


# ------------------------------------------------------------------------------------- the answer


class _Block:
    __slots__ = ("id", "initial", "kind", "name", "parts", "signature")

    def __init__(self, kind: str, id: str = "", name: str = "", initial: str = "") -> None:
        self.kind = kind
        self.id = id
        self.name = name
        self.initial = initial  # a tool's input given whole in content_block_start
        self.parts: list[str] = []
        self.signature = ""


class _Malformed(Exception):
    """An event lacks a field it must have, or has one of the wrong type."""


class MessageAssembler:
    """Builds one answer from the Messages stream's events, with no I/O.

    :meth:`feed_sse` takes an event's name and data text as they come off the wire (:meth:`feed` the
    parsed data) and returns the deltas it carries; :meth:`finish` returns the :class:`ModelResponse`
    once ``message_stop`` has come. Anything unreadable raises :class:`ModelStreamError`. A ``tool_use``
    block named ``output_tool`` is the answer itself (native structured output): its input is streamed as
    text deltas and becomes the message's text instead of a tool call.
    """

    def __init__(
        self, label: str = "anthropic", *, redact: Callable[[str], str] | None = None, output_tool: str | None = None
    ) -> None:
        self.label = label
        self.output_tool = output_tool
        self.redact = redact or (lambda text: text)
        self.complete = False
        self._started = False
        self._blocks: dict[int, _Block] = {}
        self._model: str | None = None
        self._stop_reason: str | None = None
        self._usage: dict[str, int] | None = None

    def feed_sse(self, event: str, data: str) -> list[Delta]:
        """Feed one server-sent event: its ``event:`` name and its ``data:`` text."""
        if self.complete:
            return []
        if event == "error":
            self._fail_with(data)
        if event == "ping" or not data:
            return []
        try:
            payload = json.loads(data)
        except (ValueError, RecursionError):  # deep nesting exhausts the decoder's stack
            raise self._error(f"sent an event that is not valid JSON ({event} event: {data[:120]!r})") from None
        if not isinstance(payload, dict):
            raise self._error(f"sent an event that is not a JSON object ({event} event: {data[:120]!r})")
        return self.feed(payload)

    def feed(self, event: dict[str, Any]) -> list[Delta]:
        """Feed one parsed event (the JSON object of its ``data:`` line)."""
        kind = event.get("type")
        if self.complete or kind == "ping":
            return []
        if kind == "error":
            self._fail_with(event)
        try:
            return self._dispatch(kind, event)
        except _Malformed as exc:
            raise self._error(f"sent a {kind} event without a valid {exc}") from None

    def _dispatch(self, kind: Any, event: dict[str, Any]) -> list[Delta]:
        if kind == "message_start":
            message = _get(event, "message", dict)
            self._started = True
            self._model = message.get("model") if isinstance(message.get("model"), str) else None
            self._update_usage(message.get("usage"))
            return []
        if not self._started:
            raise self._error(f"sent {kind!r} before message_start")
        if kind == "content_block_start":
            return self._start_block(_get(event, "index", int), _get(event, "content_block", dict))
        if kind == "content_block_delta":
            return self._delta(_get(event, "index", int), _get(event, "delta", dict))
        if kind == "message_delta":
            stop = _get(event, "delta", dict).get("stop_reason")
            if isinstance(stop, str):
                self._stop_reason = stop
            self._update_usage(event.get("usage"))
        elif kind == "message_stop":
            self.complete = True
        return []  # content_block_stop, and event types this version does not know

    def finish(self) -> ModelResponse:
        """The whole answer; a :class:`ModelStreamError` if ``message_stop`` has not come."""
        if not self.complete:
            raise self._error("ended its stream before message_stop; the answer is incomplete")
        blocks = [self._blocks[index] for index in sorted(self._blocks)]
        text = "".join(part for block in blocks if block.kind == "text" for part in block.parts)
        answers = ["".join(b.parts) or b.initial for b in blocks if b.kind == "output"]
        if answers:  # the forced output tool's input is the answer; text around it was a preamble
            text = answers[-1] or "{}"
        thinking = "".join(part for block in blocks if block.kind == "thinking" for part in block.parts)
        calls = tuple(
            ToolCall(b.id, b.name, "".join(b.parts) or b.initial or "{}") for b in blocks if b.kind == "tool_use"
        )
        kept = tuple(
            ThinkingBlock(redacted=b.initial)
            if b.kind == "redacted_thinking"
            else ThinkingBlock("".join(b.parts), b.signature)
            for b in blocks
            if (b.kind == "thinking" and b.signature) or (b.kind == "redacted_thinking" and b.initial)
        )
        message = Message("assistant", text or None, calls, thinking=thinking or None, thinking_blocks=kept)
        return ModelResponse(message, self._usage_of(), self._stop_reason, self._model)

    # ------------------------------------------------------------------------------------ steps

    def _start_block(self, index: int, block: dict[str, Any]) -> list[Delta]:
        if index in self._blocks:
            raise self._error(f"started content block {index} twice")
        kind = _get(block, "type", str)
        if kind == "tool_use":
            initial = block.get("input")
            name = _get(block, "name", str)
            if self.output_tool is not None and name == self.output_tool:
                kind = "output"
            self._blocks[index] = _Block(kind, _get(block, "id", str), name, json.dumps(initial) if initial else "")
            return []
        if kind == "redacted_thinking":  # opaque: given whole, sent back as it came
            data = block.get("data")
            self._blocks[index] = _Block(kind, initial=data if isinstance(data, str) else "")
            return []
        self._blocks[index] = new = _Block(kind)
        signature = block.get("signature")
        if kind == "thinking" and isinstance(signature, str):
            new.signature = signature
        field = {"text": "text", "thinking": "thinking"}.get(kind)
        initial = block.get(field) if field else None
        if isinstance(initial, str) and initial:
            new.parts.append(initial)
            return [TextDelta(initial) if kind == "text" else ThinkingDelta(initial)]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[Delta]:
        block = self._blocks.get(index)
        if block is None:
            raise self._error(f"sent a delta for content block {index}, which never started")
        kind = _get(delta, "type", str)
        if kind == "text_delta" and block.kind == "text":
            text = _get(delta, "text", str)
            block.parts.append(text)
            return [TextDelta(text)] if text else []
        if kind == "thinking_delta" and block.kind == "thinking":
            text = _get(delta, "thinking", str)
            block.parts.append(text)
            return [ThinkingDelta(text)] if text else []
        if kind == "input_json_delta" and block.kind == "tool_use":
            block.parts.append(_get(delta, "partial_json", str))
        elif kind == "input_json_delta" and block.kind == "output":
            text = _get(delta, "partial_json", str)
            block.parts.append(text)
            return [TextDelta(text)] if text else []
        elif kind == "signature_delta" and block.kind == "thinking":
            block.signature = _get(delta, "signature", str)
        return []

    def _update_usage(self, usage: Any) -> None:
        # message_start reports the input; message_delta's counts are running totals that replace them.
        if not isinstance(usage, dict):
            return
        current = self._usage if self._usage is not None else {}
        for key in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens", "output_tokens"):
            value = usage.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                current[key] = value
        details = usage.get("output_tokens_details")
        thinking = details.get("thinking_tokens") if isinstance(details, dict) else None
        if isinstance(thinking, int) and not isinstance(thinking, bool):
            current["thinking_tokens"] = thinking
        self._usage = current

    def _usage_of(self) -> Usage | None:
        if self._usage is None:
            return None
        u = self._usage.get
        cache_read = u("cache_read_input_tokens", 0)
        return Usage(
            input_tokens=u("input_tokens", 0) + cache_read + u("cache_creation_input_tokens", 0),
            output_tokens=u("output_tokens", 0),
            cache_read_tokens=cache_read,
            reasoning_tokens=u("thinking_tokens", 0),
            requests=1,
        )

    def _fail_with(self, data: Any) -> NoReturn:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except (ValueError, RecursionError):
                pass
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict):
            detail = f"{error.get('type', 'error')}: {error.get('message', '')}"
        else:
            detail = str(data)[:500]
        raise self._error(f"sent an error in the middle of its answer: {detail}; the answer is incomplete")

    def _error(self, what: str) -> ModelStreamError:
        return ModelStreamError(self.redact(f"{self.label} {what}"))


def _get(obj: dict[str, Any], key: str, kind: type[Any]) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise _Malformed(repr(key))
    return value
