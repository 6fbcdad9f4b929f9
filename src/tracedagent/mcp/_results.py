"""What the model sees of a ``tools/call`` result: text, structured content, images and resources."""

from __future__ import annotations

import base64
from typing import Any

import pydantic_core
from mcp_types import (
    AudioContent,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

__all__ = ["result_text"]


def result_text(result: CallToolResult) -> str:
    """The tool result as text: the structured content as JSON when the server gave one (its text blocks
    repeat it), else each content block in order: text as it is, an embedded text resource with its URI,
    and images, audio and binary resources described by their type and size."""
    if result.structured_content is not None and not result.is_error:
        return pydantic_core.to_json(result.structured_content).decode()
    parts = [_block(block) for block in result.content]
    return "\n".join(p for p in parts if p)


def _size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except Exception:
        return len(data)


def _block(block: Any) -> str:
    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, ImageContent):
        return f"[image: {block.mime_type}, {_size(block.data)} bytes]"
    if isinstance(block, AudioContent):
        return f"[audio: {block.mime_type}, {_size(block.data)} bytes]"
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        if isinstance(resource, TextResourceContents):
            return f"[resource {resource.uri}]\n{resource.text}"
        mime = getattr(resource, "mime_type", None) or "application/octet-stream"
        return f"[resource {resource.uri}: {mime}, {_size(getattr(resource, 'blob', ''))} bytes]"
    if isinstance(block, ResourceLink):
        return f"[resource link {block.uri}{f' ({block.name})' if block.name else ''}]"
    return str(getattr(block, "text", "") or "")
