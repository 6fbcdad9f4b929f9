"""The agents: the explorer (instructions and the sandboxed file tools of :mod:`tracedagent.tools`), and a
reviewer that has no file tools of its own and asks the explorer instead (``Agent.as_tool``)."""

from __future__ import annotations

import os
from collections.abc import Iterable

from tracedagent import Agent, Model
from tracedagent.tools import file_tools

__all__ = [
    "AGENT_NAME",
    "EXPLORER_TOOL",
    "INSTRUCTIONS",
    "REVIEWER_INSTRUCTIONS",
    "REVIEWER_NAME",
    "build_agent",
    "build_reviewer",
]

AGENT_NAME = "repo-explorer"
REVIEWER_NAME = "repo-reviewer"
#: The name the reviewer's model calls the explorer by.
EXPLORER_TOOL = "ask_repo_explorer"

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


REVIEWER_INSTRUCTIONS = """\
You review a code base for the user: you answer what they ask about its design, risks and quality.
You cannot read files yourself: ask_repo_explorer answers questions about the code (one precise question
per call, with everything it needs to know), citing files as path:line. Ask as many questions as the
review needs, then answer with your assessment, keeping the explorer's citations.
"""


def build_reviewer(
    root: str | os.PathLike[str],
    model: Model,
    *,
    explorer_model: Model | None = None,
    max_turns: int = 8,
    explorer_max_turns: int = 12,
    plugins: Iterable[object] = (),
) -> Agent:
    """A reviewer agent over the repository at ``root`` whose only tool is the repo-explorer agent.

    The explorer (:func:`build_agent`, read-only, on ``explorer_model`` or else ``model``) becomes the
    reviewer's tool ``ask_repo_explorer`` through ``Agent.as_tool``: each call is a run of the explorer,
    a child of that tool call's span in the reviewer's trace, and its tokens count in the reviewer's
    ``RunResult.usage``. ``plugins`` go to both agents.
    """
    plugins = tuple(plugins)
    explorer = build_agent(
        root, explorer_model if explorer_model is not None else model, max_turns=explorer_max_turns, plugins=plugins
    )
    ask = explorer.as_tool(
        name=EXPLORER_TOOL,
        description="Ask the repo-explorer agent one question about the code base; it reads the code and "
        "answers, citing files as path:line.",
    )
    return Agent(
        REVIEWER_NAME, model, instructions=REVIEWER_INSTRUCTIONS, tools=[ask], max_turns=max_turns, plugins=plugins
    )
