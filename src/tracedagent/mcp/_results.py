"""What the model sees of a ``tools/call`` result: text, structured content, images and resources."""

from __future__ import annotations

import base64
from typing import Any

import pydantic_core

from .._messages import Image, ToolText
from ._compat import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    is_error,
    mime_type,
    structured_content,
)

__all__ = ["result_text"]


def result_text(result: CallToolResult, max_image_bytes: int | None = None) -> str:
    """The tool result as text: the structured content as JSON when the server gave one (its text blocks
    repeat it), else each content block in order: text as it is, an embedded text resource with its URI,
    and images, audio and binary resources described by their type and size.

    Images (``ImageContent``, and embedded binary resources of an ``image/*`` type) also go to the model
    itself: the text is then a :class:`~tracedagent._messages.ToolText` carrying them, and the tool
    message has them as ``images`` (each described in the text as ``[image: image/png, 70 bytes]``, which
    is all a model whose provider cannot take images in tool results sees).

    ``max_image_bytes`` bounds the images of one result together (their decoded bytes; None: no bound),
    since each goes with every later model call of the run and into each of its checkpoints: they are
    kept in order while they fit, and one past the bound is left out, its description saying so
    (``[image: image/png, 2000000 bytes; left out: the images of one result are limited to ...]``)."""
    images: list[Image] = []
    parts: list[str] = []  # each block as text
    image_parts: list[str] = []  # those of the image blocks
    budget = max_image_bytes
    for block in result.content:
        text = _block(block)
        image = _image(block)
        if image is not None:
            if budget is None or image.size <= budget:
                images.append(image)
                budget = None if budget is None else budget - image.size
            else:
                text = f"{text[:-1]}; left out: the images of one result are limited to {max_image_bytes:,} bytes]"
            image_parts.append(text)
        parts.append(text)
    structured = structured_content(result)
    if structured is not None and not is_error(result):
        text = "\n".join([pydantic_core.to_json(structured).decode(), *image_parts])
    else:
        text = "\n".join(p for p in parts if p)
    return ToolText(text, tuple(images)) if images else text


def _image(block: Any) -> Image | None:
    if isinstance(block, ImageContent):
        return Image(mime_type(block) or "", block.data)
    if isinstance(block, EmbeddedResource) and isinstance(block.resource, BlobResourceContents):
        mime = mime_type(block.resource) or ""
        if mime.startswith("image/"):
            return Image(mime, block.resource.blob)
    return None


def _size(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except Exception:
        return len(data)


def _block(block: Any) -> str:
    if isinstance(block, TextContent):
        return block.text
    if isinstance(block, ImageContent):
        return f"[image: {mime_type(block)}, {_size(block.data)} bytes]"
    if isinstance(block, AudioContent):
        return f"[audio: {mime_type(block)}, {_size(block.data)} bytes]"
    if isinstance(block, EmbeddedResource):
        resource = block.resource
        if isinstance(resource, TextResourceContents):
            return f"[resource {resource.uri}]\n{resource.text}"
        mime = mime_type(resource) or "application/octet-stream"
        size = _size(getattr(resource, "blob", ""))
        if mime.startswith("image/"):
            return f"[image {resource.uri}: {mime}, {size} bytes]"
        return f"[resource {resource.uri}: {mime}, {size} bytes]"
    if isinstance(block, ResourceLink):
        return f"[resource link {block.uri}{f' ({block.name})' if block.name else ''}]"
    return str(getattr(block, "text", "") or "")
