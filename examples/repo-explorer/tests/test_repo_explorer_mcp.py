"""The example MCP server (repo_explorer.mcp_server) as an agent's tools, over stdio and streamable HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from tracedagent import Agent, ToolCall
from tracedagent.mcp import MCPServerHTTP, MCPServerStdio
from tracedagent.testing import ScriptedModel


def _agent(server: object, model: ScriptedModel) -> Agent:
    return Agent("repo-explorer", model, tools=[server])  # type: ignore[list-item]


async def test_over_stdio_the_agent_reads_the_repository(repo: Path, secret: str) -> None:
    # The child gets a safe default environment (PATH, HOME...) plus env=: here, where to import the example from.
    env = {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    command = ["-m", "repo_explorer.mcp_server", "--root", str(repo)]
    server = MCPServerStdio(sys.executable, command, env=env, tool_prefix="repo_")
    async with server:
        model = ScriptedModel(
            [
                ToolCall.of("s", "repo_search", {"text": "VAT_RATE ="}),
                ToolCall.of("r", "repo_read_file", {"path": "../private.txt"}),
                "VAT is 20%",
            ]
        )
        result = await _agent(server, model).run("What is the VAT rate?")
    assert result.output == "VAT is 20%"
    assert {s.name for s in model.requests[0].tools} == {"repo_list_files", "repo_read_file", "repo_search"}
    found = json.loads(model.requests[1].messages[-1].content or "")
    assert found == {"result": ["src/shop/pricing.py:1: VAT_RATE = 0.2"]}
    refused = model.requests[2].messages[-1]
    assert refused.is_error
    assert "outside the repository" in (refused.content or "")
    assert secret not in str(result.messages)


@pytest.fixture
def http_url(repo: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "repo_explorer.mcp_server", "--root", str(repo), "--http", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    yield proc.stdout.readline().strip()
    proc.kill()
    proc.wait(30)


async def test_over_http_the_agent_lists_the_files(http_url: str) -> None:
    async with MCPServerHTTP(http_url, allowed_tools=["list_files"]) as server:
        model = ScriptedModel([ToolCall.of("l", "list_files", {"path": "src"}), "two files"])
        await _agent(server, model).run("What is in src?")
    assert [s.name for s in model.requests[0].tools] == ["list_files"]
    assert json.loads(model.requests[1].messages[-1].content or "") == {
        "result": ["src/shop/__init__.py", "src/shop/pricing.py"]
    }
