"""repo-explorer: an agent that answers questions about a code base, built on tracedagent.

::

    from repo_explorer import build_agent
    from tracedagent.models import resolve_model

    agent = build_agent("path/to/repo", resolve_model("openai:gpt-4o-mini"))
    print(agent.run_sync("Where is the retry policy configured?").output)

It reads the code through :func:`tracedagent.tools.file_tools`, confined to the repository (read-only
unless ``allow_write=True``, and then every write waits for a person). Every run is traced like any
tracedagent run: the installed tracer plugins (stdout, OTLP, LangSmith, Prometheus) see it with no code
here. Without a model, :func:`offline_model` explores with a keyword search so the command works offline.
:func:`build_reviewer` is an agent with the explorer as its tool (``Agent.as_tool``): it asks, the
explorer reads.
"""

from .agent import (
    AGENT_NAME,
    EXPLORER_TOOL,
    INSTRUCTIONS,
    REVIEWER_INSTRUCTIONS,
    REVIEWER_NAME,
    build_agent,
    build_reviewer,
)
from .offline import offline_model

__all__ = [
    "AGENT_NAME",
    "EXPLORER_TOOL",
    "INSTRUCTIONS",
    "REVIEWER_INSTRUCTIONS",
    "REVIEWER_NAME",
    "build_agent",
    "build_reviewer",
    "offline_model",
]
