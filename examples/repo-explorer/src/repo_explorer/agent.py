"""The agent: instructions and the sandboxed file tools of :mod:`tracedagent.tools`."""

from __future__ import annotations

import os
from collections.abc import Iterable

from tracedagent import Agent, Model
from tracedagent.tools import file_tools

__all__ = ["AGENT_NAME", "INSTRUCTIONS", "build_agent"]

AGENT_NAME = "repo-explorer"

INSTRUCTIONS = """\
You answer questions about the code base in your working directory. Explore before you answer:
list_directory to see the layout, find_files to locate files by name, grep to find where a name or
phrase appears, read_file to read the relevant parts (read long files in parts with start_line).
Base every statement on what you read, cite files as path:line, and say plainly when the code does not
answer the question. Paths are relative to the working directory; you cannot leave it.
"""


def build_agent(
    root: str | os.PathLike[str],
    model: Model,
    *,
    allow_write: bool = False,
    max_turns: int = 12,
    plugins: Iterable[object] = (),
) -> Agent:
    """The repo-explorer agent over the repository at ``root``.

    Read-only by default; ``allow_write=True`` adds ``write_file``, and every write then pauses the run
    until a person approves it (``agent.resume(run_id, {call_id: True})``).
    """
    return Agent(
        AGENT_NAME,
        model,
        instructions=INSTRUCTIONS,
        tools=file_tools(root, allow_write=allow_write),
        max_turns=max_turns,
        plugins=plugins,
    )
