"""``MCPServerStdio``: an MCP server run as a child process, spoken to over its stdin and stdout."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from mcp.client.stdio import StdioServerParameters, stdio_client

from ._server import MCPServerBase

__all__ = ["MCPServerStdio"]


class MCPServerStdio(MCPServerBase):
    """An MCP server started as ``command args...`` (with ``env`` added to a safe default environment, in
    ``cwd``) when a run first needs it, and stopped by ``aclose()`` or at exit.

    Its tools take the same resilience settings as ``@tool`` (``timeout``, ``retries``, ``breaker``,
    ``max_concurrency``, ``max_queue``, ``queue_timeout``, ``needs_approval``, ``max_result_chars``) as
    defaults, and ``tool_settings={"tool name": {...}}`` overrides them per tool. ``retries`` send a call
    again when it failed there (an isError result, a server that died under it or a JSON-RPC error other
    than a malformed request: see :func:`~tracedagent.mcp._tool.worth_a_retry`), which a call the server
    got may then run twice; without ``retries`` a call the server got is never sent again. The breaker and the
    bulkhead are the server's, shared by its tools. ``tool_prefix`` is put before each tool's name and
    ``allowed_tools`` (the server's names) limits which are offered. Its stderr goes to ``errlog``
    (this process's stderr by default).

    ``max_result_chars`` cuts a result's text only: its images go on to the model whole, and the cut text
    says it was truncated and how many images follow. The images themselves are bounded by
    ``max_image_bytes`` (1,000,000 decoded bytes for the images of one result by default, also settable
    per tool; None for no bound, 0 for none passed on): an image is sent with every later model call of
    the run and kept in each of its checkpoints, so one past the bound is left out, its description in
    the text saying so.
    """

    def __init__(
        self,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        *,
        name: str | None = None,
        errlog: TextIO | None = None,
        **options: Any,
    ) -> None:
        self.command = command
        self.args = tuple(str(a) for a in args)
        self.env = dict(env) if env is not None else None
        self.cwd = Path(cwd) if cwd is not None else None
        self.errlog = errlog
        super().__init__(name=name or " ".join([Path(command).name, *self.args])[:80], **options)

    def _transport(self) -> contextlib.AbstractAsyncContextManager[tuple[Any, Any]]:
        params = StdioServerParameters(command=self.command, args=list(self.args), env=self.env, cwd=self.cwd)
        return stdio_client(params, errlog=self._errlog())

    def _errlog(self) -> TextIO:
        """Where the child's stderr goes: ``errlog``, else this process's stderr if it is a real file
        (under pytest's capture it is not: then the original one)."""
        if self.errlog is not None:
            return self.errlog
        try:
            sys.stderr.fileno()
            return sys.stderr
        except (AttributeError, OSError, ValueError):
            return sys.__stderr__ or sys.stderr

    def _describe_start_failure(self, exc: BaseException) -> str:
        if isinstance(exc, FileNotFoundError | PermissionError):
            return f"cannot run {self.command!r} ({exc.strerror or exc})"
        text = str(exc)
        if "Connection closed" in text:
            return "the process exited before the MCP handshake (see its stderr)"
        return super()._describe_start_failure(exc)
