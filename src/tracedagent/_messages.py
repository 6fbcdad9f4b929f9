"""The conversation: messages, tool calls and token usage.

Messages are immutable and plain (slotted dataclasses with ``to_dict`` / ``from_dict``), so a run's
history can be checkpointed, compared in tests and handed to any provider.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from ._fastinit import fast_init
from ._text import bounded

__all__ = ["Image", "Message", "Role", "ThinkingBlock", "ToolCall", "ToolText", "Usage"]

Role = Literal["system", "user", "assistant", "tool"]
#: How many images a truncated tool result's note describes (it counts them all).
_LISTED_IMAGES = 20


@fast_init
@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for. ``arguments`` is the JSON text the model produced."""

    id: str
    name: str
    arguments: str = "{}"

    @classmethod
    def of(cls, id: str, name: str, arguments: dict[str, Any] | str | None = None) -> ToolCall:
        """Build a call from a dict of arguments (encoded to JSON) or from JSON text."""
        if arguments is None:
            arguments = "{}"
        elif not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        return cls(id, name, arguments)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}


@fast_init
@dataclass(frozen=True, slots=True)
class ThinkingBlock:
    """A reasoning block exactly as the provider must get it back in the next request: Anthropic's
    ``thinking`` block (``text`` and the ``signature`` that vouches for it) or, when ``redacted`` is set,
    its ``redacted_thinking`` block (``redacted`` is the opaque ``data``). With extended thinking and
    tools, the API refuses a conversation whose tool-use turns have lost them."""

    text: str = ""
    signature: str = ""
    redacted: str | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.redacted is not None:
            return {"redacted": self.redacted}
        return {"text": self.text, "signature": self.signature}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ThinkingBlock:
        redacted = data.get("redacted")
        if redacted is not None:
            return cls(redacted=str(redacted))
        return cls(str(data.get("text", "")), str(data.get("signature", "")))


@fast_init
@dataclass(frozen=True, slots=True)
class Image:
    """An image that a tool gave back (an MCP tool's ``ImageContent``): ``data`` is the base64 of the
    bytes, ``media_type`` their type (``image/png``). It is sent to the model in the provider's form where
    the provider takes images in tool results; telemetry never carries ``data``, only :meth:`describe`."""

    media_type: str
    data: str

    @property
    def size(self) -> int:
        """The image's size in bytes (from the length of its base64)."""
        data = self.data.rstrip("=")
        return len(data) * 3 // 4

    def describe(self) -> str:
        """The image as text, without its bytes: ``[image: image/png, 70 bytes]``."""
        return f"[image: {self.media_type}, {self.size} bytes]"

    def to_dict(self) -> dict[str, Any]:
        return {"media_type": self.media_type, "data": self.data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Image:
        return cls(str(data.get("media_type", "")), str(data.get("data", "")))


class ToolText(str):
    """A tool's text result with the images it gave next to it: what an MCP tool's ``invoke`` returns
    when its result has images. The text describes each image (the model reads it wherever its provider
    cannot take the image itself); :meth:`Message.tool` moves ``images`` onto the tool message."""

    images: tuple[Image, ...]

    def __new__(cls, text: str, images: tuple[Image, ...] = ()) -> ToolText:
        self = super().__new__(cls, text)
        self.images = images
        return self

    def bounded(self, limit: int, what: str = "tool result") -> ToolText:
        """This result with its text cut to ``limit`` characters (``max_result_chars``) and its images
        kept whole: the cut applies to the text only. The end of the text says it was truncated, and how
        many images the result still has (each described), since their own descriptions in the text may
        be in the part cut off. Only that note may take the text past ``limit``, when ``limit`` is too
        small to hold it."""
        if len(self) <= limit:
            return self
        if not self.images:
            return ToolText(bounded(str(self), limit, what))
        listed = ", ".join(image.describe() for image in self.images[:_LISTED_IMAGES])
        if len(self.images) > _LISTED_IMAGES:
            listed += f" and {len(self.images) - _LISTED_IMAGES} more"
        count = "its image is" if len(self.images) == 1 else f"its {len(self.images)} images are"
        note = f"\n[truncated: this {what} has {len(self):,} characters; {{}}; {count} passed on whole: {listed}]"
        keep = max(0, limit - len(note.format(f"the first {limit:,} are shown")))
        shown = f"the first {keep:,} are shown" if keep else "its text is left out"
        return ToolText(self[:keep] + note.format(shown), self.images)


@fast_init
@dataclass(frozen=True, slots=True)
class Message:
    """One message of the conversation.

    ``role`` is ``system``, ``user``, ``assistant`` or ``tool``. An assistant message may carry
    ``tool_calls`` and ``thinking`` (the reasoning text, for people), with ``thinking_blocks`` (the same
    reasoning as the provider sent it, signatures included, to be sent back); a tool message answers
    ``tool_call_id`` (of tool ``name``), says with ``is_error`` whether the call failed, and may carry the
    ``images`` the tool gave back (its ``content`` then describes them, for models that cannot see them).
    """

    role: Role
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False
    thinking: str | None = None
    thinking_blocks: tuple[ThinkingBlock, ...] = ()
    images: tuple[Image, ...] = ()

    @classmethod
    def system(cls, content: str) -> Message:
        return cls("system", content)

    @classmethod
    def user(cls, content: str) -> Message:
        return cls("user", content)

    @classmethod
    def assistant(cls, content: str | None = None, tool_calls: tuple[ToolCall, ...] | list[ToolCall] = ()) -> Message:
        return cls("assistant", content, tuple(tool_calls))

    @classmethod
    def tool(
        cls, tool_call_id: str, name: str, content: str, *, is_error: bool = False, images: tuple[Image, ...] = ()
    ) -> Message:
        """A tool's answer. A :class:`ToolText` content brings its images (unless ``images`` is given)."""
        if type(content) is ToolText:
            images = images or content.images
            content = str(content)
        return cls("tool", content, (), tool_call_id, name, is_error, None, (), images)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            data["name"] = self.name
        if self.is_error:
            data["is_error"] = True
        if self.thinking is not None:
            data["thinking"] = self.thinking
        if self.thinking_blocks:
            data["thinking_blocks"] = [block.to_dict() for block in self.thinking_blocks]
        if self.images:
            data["images"] = [image.to_dict() for image in self.images]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        role = data.get("role")
        if role not in ("system", "user", "assistant", "tool"):
            raise ValueError(f"message role must be system, user, assistant or tool, not {role!r}")
        calls = tuple(
            ToolCall.of(str(c["id"]), str(c["name"]), c.get("arguments")) for c in data.get("tool_calls") or ()
        )
        return cls(
            role,
            data.get("content"),
            calls,
            data.get("tool_call_id"),
            data.get("name"),
            bool(data.get("is_error", False)),
            data.get("thinking"),
            tuple(ThinkingBlock.from_dict(b) for b in data.get("thinking_blocks") or () if isinstance(b, dict)),
            tuple(Image.from_dict(i) for i in data.get("images") or () if isinstance(i, dict)),
        )


@fast_init
@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage of one model call, or summed over a run.

    ``estimated`` is true when any part was estimated rather than reported by the provider.

    ``cost_usd`` is what the tokens cost in US dollars (``input_cost_usd`` the input's part), from the
    ``genai-prices`` package (``pip install 'tracedagent[cost]'``); None when the price is unknown: an
    unknown model, or the package not installed. Adding usages adds the known costs: a sum of priced
    and unpriced calls keeps the priced calls' cost and sets ``cost_partial`` (the cost is then a lower
    bound); a sum of unpriced calls only stays None. Like ``estimated``, the costs are not part of
    equality: two usages are equal when their counts are (a cost is derived from them).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    requests: int = 0
    estimated: bool = field(default=False, compare=False)
    cost_usd: float | None = field(default=None, compare=False)
    input_cost_usd: float | None = field(default=None, compare=False)
    cost_partial: bool = field(default=False, compare=False)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def output_cost_usd(self) -> float | None:
        """The output's part of ``cost_usd`` (reasoning tokens included)."""
        if self.cost_usd is None or self.input_cost_usd is None:
            return None
        return max(self.cost_usd - self.input_cost_usd, 0.0)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        cost, other_cost = self.cost_usd, other.cost_usd
        if cost is None and other_cost is None:
            total_cost = input_cost = None
            partial = False
        elif cost is not None and other_cost is not None:
            total_cost = cost + other_cost
            a, b = self.input_cost_usd, other.input_cost_usd
            input_cost = a + b if a is not None and b is not None else None
            partial = self.cost_partial or other.cost_partial
        else:
            priced, unpriced = (self, other) if cost is not None else (other, self)
            total_cost, input_cost = priced.cost_usd, priced.input_cost_usd
            # an unpriced usage with no tokens (a call that failed before any) costs nothing: not partial
            partial = priced.cost_partial or bool(unpriced.input_tokens or unpriced.output_tokens)
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.requests + other.requests,
            self.estimated or other.estimated,
            total_cost,
            input_cost,
            partial,
        )

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "requests": self.requests,
            "estimated": self.estimated,
        }
        # Only when known, so a record without a price reads as before (and as older records do).
        if self.cost_usd is not None:
            data["cost_usd"] = self.cost_usd
        if self.input_cost_usd is not None:
            data["input_cost_usd"] = self.input_cost_usd
        if self.cost_partial:
            data["cost_partial"] = True
        return data
