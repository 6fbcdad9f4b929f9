"""Tool sources: objects that give an agent tools when a run starts (an MCP server, a registry).

A source is passed in ``Agent(tools=[...])`` next to plain tools. It has ``async def list_tools(self) ->
list[Tool]`` (called at the start of each run and each resume; a source caches as it sees fit) and
``async def aclose(self)``. :func:`offer` adds every source's tools to the run's tools: a plain tool of
the same name wins, and a source that fails to list is logged and skipped, so one broken server never
stops the runs of an agent that has other tools.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ._tools import Tool

__all__ = ["ToolSource", "offer"]

logger = logging.getLogger("tracedagent")


@runtime_checkable
class ToolSource(Protocol):
    """Something that lists tools for a run: ``await source.list_tools()``, closed by ``await source.aclose()``."""

    async def list_tools(self) -> list[Tool]: ...

    async def aclose(self) -> None: ...


async def offer(sources: Sequence[ToolSource], tools: dict[str, Tool]) -> None:
    """Add the tools of ``sources`` to ``tools`` (a run's own dict), in order; names taken stay taken."""
    if len(sources) == 1:
        listed: list[list[Tool] | BaseException] = [await _listed(sources[0])]
    else:
        listed = list(await asyncio.gather(*(_listed(s) for s in sources)))
    for source, found in zip(sources, listed, strict=True):
        if isinstance(found, BaseException):
            continue
        for t in found:
            if t.name in tools:
                if tools[t.name] is not t:
                    logger.warning(
                        "tool %r of %r is not offered: the agent has another tool of that name", t.name, source
                    )
                continue
            tools[t.name] = t


async def _listed(source: ToolSource) -> list[Tool] | BaseException:
    try:
        return list(await source.list_tools())
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a source that cannot list: the run goes on without its tools
        logger.warning("the tools of %r are not offered to this run: %s", source, exc)
        return exc
