"""The OpenAI-compatible Chat Completions provider: OpenAI itself, vLLM, Ollama, llama.cpp, LiteLLM...

:class:`OpenAIChatModel` turns a :class:`~tracedagent.ModelRequest` into a streaming
``POST {base_url}/chat/completions`` and the server-sent chunks back into stream parts.
:class:`ChunkAssembler` is the pure half: feed it parsed chunks, it gives the deltas as they come and,
at the end, the whole answer. It copes with what the compatible servers do differently: reasoning as
``reasoning_content`` (vLLM, DeepSeek) or ``reasoning`` (Ollama, OpenRouter), tool calls without an id
or an index, a final usage chunk with ``"choices": null`` or none at all, and an ``error`` object sent
in the middle of a stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import httpx
import httpx_sse

from .._messages import Message, ToolCall, Usage
from .._model import ModelRequest, ModelResponse, ModelStreamPart, TextDelta, ThinkingDelta
from ..exceptions import ConfigurationError, ModelError, ModelStreamError
from ._http import HTTPModel

__all__ = ["ChunkAssembler", "OpenAIChatModel", "to_openai_messages"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_OPENAI_HOST = "api.openai.com"
# Settings that only mean something when the request offers tools (OpenAI refuses them otherwise).
_TOOL_SETTINGS = ("tool_choice", "parallel_tool_calls")
_DRAIN_TIMEOUT_S = 1.0


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _detail(details: Any, key: str) -> int:
    return _count(details.get(key)) if isinstance(details, dict) else 0


def provider_error_message(data: Any) -> str | None:
    """The human message of an OpenAI-style error: ``{"error": {"message": ...}}``, ``{"error": "..."}``,
    or the top-level ``message`` / ``detail`` that vLLM and FastAPI servers send."""
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    for key in ("message", "detail"):
        if isinstance(data.get(key), str) and data[key]:
            return str(data[key])
    return None


class _Draft:
    """A tool call being assembled from its deltas."""

    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


class ChunkAssembler:
    """Builds one answer from parsed ``chat.completion.chunk`` objects; pure, no I/O.

    :meth:`feed` takes a chunk and returns the deltas it carries; :meth:`response` gives the assistant
    message, usage, finish reason and model once the stream is over. Anything that is not a readable
    chunk raises :class:`ModelStreamError` naming ``label`` (``openai:gpt-4o-mini``); ``redact`` cleans
    provider text before it goes into an error.
    """

    def __init__(
        self,
        label: str = "openai",
        *,
        new_call_id: Callable[[], str] = _new_call_id,
        redact: Callable[[str], str] = str,
    ) -> None:
        self.label = label
        self._new_call_id = new_call_id
        self._redact = redact
        self._text: list[str] = []
        self._thinking: list[str] = []
        self._calls: list[_Draft] = []
        self._by_index: dict[int | None, int] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.response_model: str | None = None

    def feed(self, chunk: Any) -> list[TextDelta | ThinkingDelta]:
        """The deltas in ``chunk``, in order; tool call pieces, usage and finish reason are kept."""
        if not isinstance(chunk, dict):
            raise self._malformed("a chunk must be a JSON object", chunk)
        if chunk.get("error"):
            message = provider_error_message(chunk) or json.dumps(chunk["error"])
            raise ModelStreamError(
                f"{self.label} sent an error in the middle of its answer: {self._redact(message)[:500]}"
            )
        model = chunk.get("model")
        if isinstance(model, str) and model:
            self.response_model = model
        usage = chunk.get("usage")
        if usage is not None:
            if not isinstance(usage, dict):
                raise self._malformed("usage must be an object", chunk)
            self.usage = Usage(
                input_tokens=_count(usage.get("prompt_tokens")),
                output_tokens=_count(usage.get("completion_tokens")),
                cache_read_tokens=_detail(usage.get("prompt_tokens_details"), "cached_tokens"),
                reasoning_tokens=_detail(usage.get("completion_tokens_details"), "reasoning_tokens"),
                requests=1,
            )
        choices = chunk.get("choices")  # the usage chunk: [] (OpenAI), null or missing (vLLM)
        if choices is None:
            choices = []
        if not isinstance(choices, list):
            raise self._malformed("choices must be a list", chunk)
        parts: list[TextDelta | ThinkingDelta] = []
        for choice in choices:
            if not isinstance(choice, dict):
                raise self._malformed("a choice must be an object", chunk)
            if choice.get("index", 0) != 0:  # n > 1: only the first choice becomes the answer
                continue
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise self._malformed("delta must be an object", chunk)
            # vLLM sends reasoning_content (newer versions both names, same text), Ollama reasoning.
            thinking = self._text_field(delta, "reasoning_content", chunk) or self._text_field(
                delta, "reasoning", chunk
            )
            if thinking:
                self._thinking.append(thinking)
                parts.append(ThinkingDelta(thinking))
            for key in ("content", "refusal"):  # a refusal is the answer the user gets
                text = self._text_field(delta, key, chunk)
                if text:
                    self._text.append(text)
                    parts.append(TextDelta(text))
            calls = delta.get("tool_calls")
            if calls is not None:
                if not isinstance(calls, list):
                    raise self._malformed("tool_calls must be a list", chunk)
                for call in calls:
                    self._tool_call(call, chunk)
            finish = choice.get("finish_reason")
            if finish is not None and not isinstance(finish, str):
                raise self._malformed("finish_reason must be a string", chunk)
            if finish:  # some servers send "" in the chunks before the last
                self.finish_reason = finish
        return parts

    def response(self, *, done: bool) -> ModelResponse:
        """The whole answer. ``done`` says the stream ended with ``[DONE]``; without it, a stream that
        never gave a finish reason was cut off and raises :class:`ModelStreamError`."""
        if not done and self.finish_reason is None:
            raise ModelStreamError(
                f"{self.label} ended its stream without a finish reason or [DONE]; the answer is incomplete"
            )
        calls = []
        for position, draft in enumerate(self._calls):
            if not draft.name:
                raise ModelStreamError(f"{self.label} sent tool call #{position + 1} without a function name")
            calls.append(ToolCall(draft.id or self._new_call_id(), draft.name, "".join(draft.arguments) or "{}"))
        message = Message(
            "assistant",
            "".join(self._text) if self._text else None,
            tuple(calls),
            None,
            None,
            False,
            "".join(self._thinking) if self._thinking else None,
        )
        return ModelResponse(message, self.usage, self.finish_reason, self.response_model)

    # ------------------------------------------------------------------------------------ helpers

    def _tool_call(self, call: Any, chunk: Any) -> None:
        if not isinstance(call, dict):
            raise self._malformed("a tool call must be an object", chunk)
        index = call.get("index")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise self._malformed("a tool call's index must be an integer", chunk)
        call_id = call.get("id")
        if call_id is not None and not isinstance(call_id, str):
            raise self._malformed("a tool call's id must be a string", chunk)
        function = call.get("function") or {}
        if not isinstance(function, dict):
            raise self._malformed("a tool call's function must be an object", chunk)
        name = function.get("name")
        if name is not None and not isinstance(name, str):
            raise self._malformed("a tool call's name must be a string", chunk)
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # some servers send the arguments as an object
            arguments = json.dumps(arguments)
        elif arguments is not None and not isinstance(arguments, str):
            raise self._malformed("a tool call's arguments must be a string", chunk)
        # The id and name come in a call's first delta only. A server that leaves out the index sends
        # a new id to start the next call; a new id at a known index is a new call too.
        position = self._by_index.get(index)
        if position is None or (call_id and self._calls[position].id and call_id != self._calls[position].id):
            position = len(self._calls)
            self._calls.append(_Draft())
            self._by_index[index] = position
        draft = self._calls[position]
        if call_id and not draft.id:
            draft.id = call_id
        if name and not draft.name:
            draft.name = name
        if arguments:
            draft.arguments.append(arguments)

    def _text_field(self, delta: dict[str, Any], key: str, chunk: Any) -> str | None:
        value = delta.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self._malformed(f"delta.{key} must be a string", chunk)

    def _malformed(self, reason: str, chunk: Any) -> ModelStreamError:
        text = self._redact(json.dumps(chunk, ensure_ascii=False) if not isinstance(chunk, str) else chunk)
        return ModelStreamError(f"{self.label} sent a chunk this client cannot read ({reason}): {text[:200]}")


class OpenAIChatModel(HTTPModel):
    """A model behind any OpenAI-compatible Chat Completions API, streaming.

    The base URL is ``base_url``, else ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1``; the key
    is ``api_key``, else ``OPENAI_API_KEY``. OpenAI itself needs a key; a local server usually does not::

        from tracedagent.models import OpenAIChatModel

        gpt = OpenAIChatModel("gpt-4o-mini")  # OPENAI_API_KEY from the environment
        ollama = OpenAIChatModel("qwen3:8b", base_url="http://localhost:11434/v1", provider="ollama")
        vllm = OpenAIChatModel("Qwen/Qwen3-8B", base_url="http://localhost:8000/v1", provider="vllm")

    ``provider`` is the GenAI provider name telemetry reports (``gen_ai.provider.name``, the
    ``provider`` label of the metrics). The agent's ``model_settings`` (``temperature``,
    ``max_tokens``, ``reasoning_effort``...) are merged into the request body, but never replace
    ``model``, ``messages`` or ``stream``; ``tool_choice`` and ``parallel_tool_calls`` are left out of
    requests without tools, and a setting set to ``None`` is left out (``stream_options=None`` for a
    server that refuses it). Structured output (``output_type``) is asked for with ``response_format``
    (``json_schema``, ``strict`` when the schema allows it); pass ``native_output=False`` for a server
    without it. Chat Completions' tool messages take text only: the images a tool gives back (an MCP
    tool's) reach the model as their description in the tool result's text (``[image: image/png, 70
    bytes]``); with ``tool_result_images=True`` (a vision model) they also follow the turn's tool results
    in a ``user`` message of ``image_url`` parts. Streamed reasoning
    (``reasoning_content`` or ``reasoning``) arrives as ``ThinkingDelta``. Usage follows OpenAI:
    ``input_tokens`` includes the cached prompt tokens (``cache_read_tokens``), ``output_tokens`` the
    reasoning tokens (``reasoning_tokens``). Timeouts, retries and the client are those of
    :class:`~tracedagent.models.HTTPModel`; the key never appears in an error, event or log.
    """

    base_url_env = "OPENAI_BASE_URL"
    #: Structured output through ``response_format`` (a JSON Schema); ``native_output=False`` for a
    #: server without it, so ``output_mode="auto"`` uses an output tool instead.
    native_output = True

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        headers: Mapping[str, str] | None = None,
        provider: str = "openai",
        timeout: float | None = 600.0,
        connect_timeout: float | None = 10.0,
        read_timeout: float | None = 120.0,
        max_retries: int = 3,
        retry_initial_delay: float = 0.5,
        retry_max_delay: float = 30.0,
        max_retry_after: float = 120.0,
        client: httpx.AsyncClient | None = None,
        native_output: bool = True,
        tool_result_images: bool = False,
    ) -> None:
        self.native_output = bool(native_output)
        self.tool_result_images = bool(tool_result_images)
        if not isinstance(provider, str) or not provider:
            raise ConfigurationError(f"provider must be a name such as 'openai' or 'vllm', not {provider!r}")
        self.provider = provider
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or None
        super().__init__(
            name,
            base_url=base_url,
            api_key=api_key,
            headers=headers,
            timeout=timeout,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_retries=max_retries,
            retry_initial_delay=retry_initial_delay,
            retry_max_delay=retry_max_delay,
            max_retry_after=max_retry_after,
            client=client,
        )
        at_openai = httpx.URL(self.base_url).host == _OPENAI_HOST
        if api_key is None and at_openai:
            raise ConfigurationError(
                f"OpenAIChatModel({name!r}) at {self.base_url} needs an API key: set OPENAI_API_KEY or pass "
                "api_key=...; for a local OpenAI-compatible server (Ollama, vLLM) pass its base_url instead"
            )
        # OpenAI's own organization and project go to OpenAI only, never to another server from the env.
        self.organization = organization or (os.environ.get("OPENAI_ORG_ID") if at_openai else None) or None
        self.project = project or (os.environ.get("OPENAI_PROJECT_ID") if at_openai else None) or None

    # ------------------------------------------------------------------------------ the request

    def _endpoint(self) -> str:
        return "/chat/completions"

    def _auth_headers(self) -> dict[str, str]:
        headers = {}
        if self._api_key:
            headers["authorization"] = f"Bearer {self._api_key}"
        if self.organization:
            headers["openai-organization"] = self.organization
        if self.project:
            headers["openai-project"] = self.project
        return headers

    def _payload(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._name,
            "messages": to_openai_messages(
                request.messages, request.instructions, tool_result_images=self.tool_result_images
            ),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in request.tools
            ]
        output = request.output
        if output is not None and output.mode == "native":
            schema: dict[str, Any] = {"name": output.name, "schema": output.schema, "strict": output.strict}
            if output.description:
                schema["description"] = output.description
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        for key, value in request.settings.items():
            if key in ("model", "messages", "stream") or (key in _TOOL_SETTINGS and not request.tools):
                continue
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        return body

    def _error_message(self, body: bytes) -> str:
        text = body.decode("utf-8", "replace")
        try:
            message = provider_error_message(json.loads(text))
        except (ValueError, RecursionError):
            message = None
        return self.redact(message or text.strip() or "(no body)")[:500]  # redact, then cut: no key prefix

    # ------------------------------------------------------------------------------- the answer

    async def _parts(
        self, events: AsyncIterator[httpx_sse.ServerSentEvent], request: ModelRequest
    ) -> AsyncIterator[ModelStreamPart]:
        assembler = ChunkAssembler(f"{self.provider}:{self._name}", redact=self.redact)
        done = False
        try:
            async for event in events:
                data = event.data
                if event.event == "error":
                    try:
                        message = provider_error_message(json.loads(data)) or data
                    except (ValueError, RecursionError):
                        message = data
                    raise ModelStreamError(
                        f"{assembler.label} sent an error in the middle of its answer: {self.redact(message)[:500]}"
                    )
                if not data:
                    continue
                if data.startswith("[DONE]"):
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except (ValueError, RecursionError):  # deep nesting exhausts the decoder's stack
                    raise ModelStreamError(
                        f"{assembler.label} sent a chunk that is not JSON: {self.redact(data)[:200]!r}"
                    ) from None
                for part in assembler.feed(chunk):
                    yield part
        except httpx_sse.SSEError as exc:  # a 200 that is not an event stream (a server ignoring stream)
            raise ModelStreamError(
                f"{assembler.label} did not answer with an event stream ({self.redact(str(exc))}); "
                "check that base_url points at an OpenAI-compatible API"
            ) from exc
        if done:
            await _drain(events)
        yield assembler.response(done=done)


async def _drain(events: AsyncIterator[httpx_sse.ServerSentEvent]) -> None:
    """Read what follows ``[DONE]`` (the end of the chunked body) so the connection can be reused."""
    try:
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            async for _ in events:
                pass
    except (TimeoutError, ModelError):
        pass  # the answer is complete; the connection is closed instead of reused


def to_openai_messages(
    messages: Sequence[Message], instructions: str | None, *, tool_result_images: bool = False
) -> list[dict[str, Any]]:
    """tracedagent messages as Chat Completions messages, ``instructions`` first as a system message.

    A ``tool`` message takes text only, so a tool result's images are described in its text (``[image:
    image/png, 70 bytes]``); with ``tool_result_images`` they also follow the turn's tool messages in one
    ``user`` message of ``image_url`` parts (data URLs), each after a text part naming its tool call."""
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    pending: list[dict[str, Any]] = []  # the image parts of the tool messages just added
    for m in messages:
        if pending and m.role != "tool":
            out.append({"role": "user", "content": pending})
            pending = []
        if tool_result_images and m.role == "tool" and m.images:
            pending.append({"type": "text", "text": f"The images of tool call {m.tool_call_id} ({m.name}):"})
            pending.extend(
                {"type": "image_url", "image_url": {"url": f"data:{image.media_type};base64,{image.data}"}}
                for image in m.images
            )
        if m.role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": m.content}
            if m.tool_calls:
                item["tool_calls"] = [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                    for c in m.tool_calls
                ]
            elif m.content is None:
                item["content"] = ""
            out.append(item)
        elif m.role == "tool":
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": m.content or ""})
        else:
            out.append({"role": m.role, "content": m.content or ""})
    if pending:
        out.append({"role": "user", "content": pending})
    return out
