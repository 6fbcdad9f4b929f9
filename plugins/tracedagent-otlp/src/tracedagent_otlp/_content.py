"""Message content as the GenAI conventions shape it, clipped to a size. Runs on the export worker.

``gen_ai.input.messages`` / ``gen_ai.output.messages`` are JSON arrays of ``{"role", "parts"}`` objects;
a part is ``{"type": "text", "content"}``, ``{"type": "reasoning", "content"}``,
``{"type": "tool_call", "id", "name", "arguments"}`` or ``{"type": "tool_call_response", "id",
"response"}``; an output message also has a ``finish_reason``. Every text is clipped to ``max_chars``
before encoding, so the JSON stays valid however long the conversation is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from tracedagent import Message

__all__ = ["clip", "input_messages", "last_user_text", "output_messages", "text_output"]


def clip(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` characters, saying how many were left out."""
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}...[{len(text) - max_chars} more chars]"


def _arguments(arguments: str, max_chars: int) -> Any:
    # The conventions want the arguments as an object; the model's JSON text is kept when it is too
    # long to show whole (a clipped object would no longer be JSON) or is not JSON at all.
    if len(arguments) <= max_chars:
        try:
            return json.loads(arguments)
        except ValueError:
            pass
    return clip(arguments, max_chars)


def _parts(message: Message, max_chars: int) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if message.role == "tool":
        parts.append(
            {
                "type": "tool_call_response",
                "id": message.tool_call_id,
                "response": clip(message.content or "", max_chars),
            }
        )
        return parts
    if message.thinking:
        parts.append({"type": "reasoning", "content": clip(message.thinking, max_chars)})
    if message.content:
        parts.append({"type": "text", "content": clip(message.content, max_chars)})
    for call in message.tool_calls:
        parts.append(
            {"type": "tool_call", "id": call.id, "name": call.name, "arguments": _arguments(call.arguments, max_chars)}
        )
    return parts


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def input_messages(messages: Iterable[Message], max_chars: int) -> str:
    """``gen_ai.input.messages``: the conversation a model call (or a run) starts from."""
    return _dumps([{"role": m.role, "parts": _parts(m, max_chars)} for m in messages])


def output_messages(message: Message, finish_reason: str | None, max_chars: int) -> str:
    """``gen_ai.output.messages``: what the model answered."""
    return _dumps(
        [{"role": "assistant", "parts": _parts(message, max_chars), "finish_reason": finish_reason or "stop"}]
    )


def text_output(text: str, max_chars: int) -> str:
    """``gen_ai.output.messages`` of a run: its final answer."""
    parts = [{"type": "text", "content": clip(text, max_chars)}] if text else []
    return _dumps([{"role": "assistant", "parts": parts, "finish_reason": "stop"}])


def last_user_text(messages: Iterable[Message]) -> str | None:
    """The last thing the user said: what Phoenix shows as a run's input."""
    text = None
    for message in messages:
        if message.role == "user" and message.content:
            text = message.content
    return text
