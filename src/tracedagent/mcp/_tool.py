"""``MCPTool``: one tool of an MCP server, as an ordinary :class:`~tracedagent.Tool`.

Its schema is the server's ``inputSchema`` as given; arguments are checked against it (jsonschema) before
the call; :meth:`invoke` runs the call under the tool's timeout and retries, like a local tool's, and every
layer before it (approval, breaker, bulkhead) is the same code as for any tool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

import jsonschema

from .._context import RunContext
from .._tools import Tool, ToolContext
from ..exceptions import ToolArgumentsError, ToolError, ToolTimeout
from ..resilience import RetryPolicy
from ..resilience._retry import _default_retry_on
from ._compat import INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, ToolDefinition, input_schema
from ._errors import MCPServerError, MCPToolError

__all__ = ["MCPTool", "ToolCaller", "worth_a_retry"]

#: JSON-RPC errors that say the request itself is wrong: sent again, it fails again.
_REQUEST_ERRORS = frozenset({INVALID_PARAMS, METHOD_NOT_FOUND, INVALID_REQUEST})


def worth_a_retry(error: BaseException) -> bool:
    """What a server's ``retries`` (a number, or a :class:`RetryPolicy` with its default ``retry_on``)
    retry: the tool's isError result, a server that closed the connection or could not be reached, its
    JSON-RPC errors (but those that say the request is wrong), and anything unexpected. Never invalid
    arguments (checked before any attempt) nor the tool's timeout (which bounds every attempt)."""
    if isinstance(error, MCPServerError):
        return error.code not in _REQUEST_ERRORS
    return isinstance(error, MCPToolError) or not isinstance(error, ToolError)


class ToolCaller(Protocol):
    """What a tool needs of its server (:class:`~tracedagent.mcp.MCPServerBase`): its name and the call."""

    name: str

    async def call_tool(self, tool: MCPTool, arguments: dict[str, Any]) -> str: ...

    async def refresh(self, tools: dict[str, Tool]) -> None: ...


class MCPTool(Tool):
    """A tool of an MCP server (``server``), offered under ``name`` and called as ``remote_name``."""

    def __init__(self, server: ToolCaller, definition: ToolDefinition, name: str, settings: dict[str, Any]) -> None:
        schema = dict(input_schema(definition) or {"type": "object", "properties": {}})
        validator_cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        validator_cls.check_schema(schema)  # raises jsonschema.SchemaError: the server lists it, we skip it
        super().__init__(None, name=name, description=definition.description or "", parameters=schema, **settings)
        retry = self.retry
        if retry is not None and retry.retry_on is _default_retry_on:
            # A local tool's retries leave its ToolErrors alone; an MCP tool's failures are all ToolErrors.
            self.retry = RetryPolicy(
                retry.attempts, initial_delay=retry.initial_delay, max_delay=retry.max_delay, retry_on=worth_a_retry
            )
        self.server = server
        self.definition = definition
        self.remote_name = definition.name
        #: The bound on the images of one result, in bytes (None: none); the server's ``max_image_bytes``.
        self.max_image_bytes: int | None = None
        self._schema_validator = validator_cls(schema)
        # Not an external tool: it runs here, through the server's session.
        self.external = False
        self.plain = self.needs_approval is False
        self.is_async = True

    def validate(self, arguments: str) -> dict[str, Any]:
        values = super().validate(arguments)  # JSON, and an object
        errors = sorted(self._schema_validator.iter_errors(values), key=lambda e: list(e.absolute_path))
        if errors:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}" for e in errors[:5]
            )
            raise ToolArgumentsError(
                f"tool {self.name!r}: invalid arguments ({problems}); call it again with arguments that match "
                "its schema",
                tool=self.name,
            )
        return values

    async def invoke(
        self,
        arguments: str,
        context: ToolContext | None = None,
        on_retry: Callable[[int, float, BaseException], None] | None = None,
    ) -> str:
        kwargs = self.validate(arguments)
        if isinstance(context, RunContext):  # a change the server said since the run's last call of its tools
            await self.server.refresh(context.tools)
        retry = self.retry

        async def attempt() -> str:
            return await self.server.call_tool(self, kwargs)

        if self.timeout is None:
            result = await (retry.call(attempt, on_retry) if retry is not None else attempt())
        else:
            try:
                async with asyncio.timeout(self.timeout):
                    result = await (retry.call(attempt, on_retry) if retry is not None else attempt())
            except TimeoutError:
                raise ToolTimeout(
                    f"tool {self.name!r} (MCP server {self.server.name!r}) did not answer within its timeout of "
                    f"{self.timeout:g}s; try a smaller request or another approach",
                    tool=self.name,
                ) from None
        if isinstance(context, RunContext):  # the server may have said its tools changed: the run sees it
            await self.server.refresh(context.tools)
        return result

    def __repr__(self) -> str:
        return f"MCPTool({self.name!r}, server={self.server.name!r})"
