"""``tracedagent.tools``: the file tools cannot leave their root, bound what they read and return, and
write only with approval (by default); the shell tool exists only when enabled, always needs approval,
and is killed at its timeout with its output cut."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tracedagent.tools
from tracedagent import (
    Agent,
    Approval,
    ApprovalRequired,
    ConfigurationError,
    Tool,
    ToolCallEnded,
    hookimpl,
)
from tracedagent.testing import RecordingTracer, ScriptedModel, Step
from tracedagent.tools import (
    BinaryFileError,
    FileTooLargeError,
    FileToolError,
    PathEscapeError,
    ShellToolError,
    file_tools,
    shell_tool,
)

SECRET = "TOP-SECRET-OUTSIDE"

# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory beside the root, holding a secret the tools must never show."""
    path = tmp_path / "outside"
    (path / "nested").mkdir(parents=True)
    (path / "secret.txt").write_text(SECRET + "\n")
    (path / "nested" / "deep.txt").write_text(SECRET + " deep\n")
    return path


@pytest.fixture
def root(tmp_path: Path, outside: Path) -> Path:
    """A small project, with symbolic links out of it (file, directory, in a parent directory, a chain)."""
    path = tmp_path / "root"
    (path / "src" / "pkg").mkdir(parents=True)
    (path / "docs").mkdir()
    (path / "README.md").write_text("# Demo\nA demo project.\n")
    (path / "src" / "pkg" / "__init__.py").write_text("")
    (path / "src" / "pkg" / "core.py").write_text('def greet(name):\n    return f"hello {name}"\n')
    (path / "docs" / "guide.md").write_text("Call greet() to say hello.\n")
    (path / "leak.txt").symlink_to(outside / "secret.txt")  # a file link out
    (path / "leakdir").symlink_to(outside)  # a directory link out
    (path / "docs" / "up").symlink_to("../..")  # a link in a parent directory, up past the root
    (path / "hop").symlink_to("leak.txt")  # a chain: inside, then out
    (path / "alias.py").symlink_to("src/pkg/core.py")  # a link that stays inside
    return path


def tools_by_name(tools: list[Tool]) -> dict[str, Tool]:
    return {t.name: t for t in tools}


async def call(tool: Tool, **arguments: Any) -> str:
    return await tool.invoke(json.dumps(arguments))


@pytest.fixture
def fs(root: Path) -> dict[str, Tool]:
    return tools_by_name(file_tools(root, allow_write=True, write_needs_approval=False))


def tree_of(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def ended(events: RecordingTracer) -> list[tuple[str, str, str | None]]:
    return [(e.tool, e.status, e.error.type if e.error else None) for e in events.of_type(ToolCallEnded)]


# ---------------------------------------------------------------------------------- the public face


def test_importing_the_module_makes_no_tool() -> None:
    """Nothing touches the file system or a shell until a factory is called with a root."""
    code = "import tracedagent.tools, tracedagent._tools as t; print(len(t._all_tools))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"


def test_all_is_sorted_and_exact() -> None:
    module = tracedagent.tools
    public = [n for n, v in vars(module).items() if not n.startswith("_") and not inspect.ismodule(v)]
    assert module.__all__ == sorted(module.__all__)
    assert sorted(module.__all__) == sorted(n for n in public if n != "annotations")


def test_errors_are_tool_errors_the_model_sees() -> None:
    for error in (FileToolError, PathEscapeError, FileTooLargeError, BinaryFileError, ShellToolError):
        assert issubclass(error, tracedagent.ToolError)
        assert error.status == "error"


def test_file_tools_are_read_only_by_default(root: Path) -> None:
    names = [t.name for t in file_tools(root)]
    assert names == ["read_file", "list_directory", "find_files", "grep"]
    assert "write_file" in tools_by_name(file_tools(root, allow_write=True))


def test_descriptions_tell_the_model_the_limits(root: Path) -> None:
    tools = tools_by_name(file_tools(root, max_read_bytes=5000, max_results=7, allow_write=True))
    assert "5000 bytes" in tools["read_file"].description
    assert "at most 7" in tools["grep"].description
    assert "approves each write" in tools["write_file"].description
    assert tools["find_files"].parameters["properties"]["pattern"]["description"].startswith("a glob")
    assert tools["read_file"].parameters["required"] == ["path"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_read_bytes": 0}, "max_read_bytes must be a whole number above 0"),
        ({"max_results": True}, "max_results must be a whole number above 0"),
        ({"skip_dirs": ".git"}, "skip_dirs is a collection"),
    ],
)
def test_bad_options_are_refused(root: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        file_tools(root, **options)


def test_the_root_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot be used"):
        file_tools(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigurationError, match="not a directory"):
        file_tools(tmp_path / "file")


# ---------------------------------------------------------------------------------------- reading


async def test_reads_lists_finds_and_greps_inside_the_root(fs: dict[str, Tool]) -> None:
    assert await call(fs["read_file"], path="src/pkg/core.py") == 'def greet(name):\n    return f"hello {name}"\n'
    assert await call(fs["read_file"], path="./docs/../README.md") == "# Demo\nA demo project.\n"
    listing = await call(fs["list_directory"])
    assert listing.splitlines() == [
        "README.md (23 bytes)",
        "alias.py -> src/pkg/core.py",
        "docs/",
        "hop -> (outside the working directory, not accessible)",
        "leak.txt -> (outside the working directory, not accessible)",
        "leakdir -> (outside the working directory, not accessible)",
        "src/",
    ]
    found = await call(fs["find_files"], pattern="**/*.py")
    assert found.splitlines()[:3] == ["alias.py", "src/pkg/__init__.py", "src/pkg/core.py"]
    assert (
        await call(fs["grep"], pattern=r"greet\(", path="docs/guide.md")
        == "docs/guide.md:1: Call greet() to say hello."
    )


async def test_an_absolute_path_inside_the_root_is_accepted(fs: dict[str, Tool], root: Path) -> None:
    assert (await call(fs["read_file"], path=str(root / "README.md"))).startswith("# Demo")


@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.txt",
        "src/../../outside/secret.txt",
        "../../../../../../etc/passwd",
        "/etc/passwd",
        "leak.txt",  # a file link out
        "hop",  # a chain of links ending outside
        "leakdir/secret.txt",  # through a directory link out
        "leakdir/nested/deep.txt",
        "docs/up/outside/secret.txt",  # through a link in a parent directory
    ],
)
async def test_no_path_leads_out_of_the_root(fs: dict[str, Tool], path: str, outside: Path) -> None:
    for tool, arguments in (
        ("read_file", {"path": path}),
        ("grep", {"pattern": "SECRET", "path": path}),
        ("find_files", {"pattern": "**", "path": path}),
        ("list_directory", {"path": path}),
    ):
        with pytest.raises(PathEscapeError, match="outside the directory these tools work in") as caught:
            await call(fs[tool], **arguments)
        assert SECRET not in str(caught.value)
        assert str(outside) not in str(caught.value)  # nor where the link points


async def test_an_absolute_path_to_the_outside_is_refused(fs: dict[str, Tool], outside: Path) -> None:
    with pytest.raises(PathEscapeError, match=r"'\.\.' cannot leave it"):
        await call(fs["read_file"], path=str(outside / "secret.txt"))
    with pytest.raises(PathEscapeError):
        await call(fs["list_directory"], path=str(outside))


@pytest.mark.parametrize("pattern", ["../*", "../outside/*", "src/../../**", "**/../../*", "{src,..}/*", "/etc/*"])
async def test_glob_patterns_cannot_leave_the_directory_searched(fs: dict[str, Tool], pattern: str) -> None:
    with pytest.raises(PathEscapeError, match="glob pattern"):
        await call(fs["find_files"], pattern=pattern)
    with pytest.raises(PathEscapeError, match="glob pattern"):
        await call(fs["grep"], pattern="SECRET", glob=pattern)


async def test_walks_never_follow_links_out_of_the_root(fs: dict[str, Tool]) -> None:
    """Every match of find_files and grep is checked: links out (files, directories, parents) are skipped
    and counted, links that stay inside are followed."""
    found = await call(fs["find_files"], pattern="**")
    assert SECRET not in found
    assert "secret.txt" not in found
    assert found.splitlines() == [
        "README.md",
        "alias.py",
        "docs/guide.md",
        "src/pkg/__init__.py",
        "src/pkg/core.py",
        "[4 symbolic link(s) pointing outside the working directory were skipped]",
    ]
    grepped = await call(fs["grep"], pattern="SECRET|hello")
    assert SECRET not in grepped
    assert grepped.splitlines() == [
        'alias.py:2:     return f"hello {name}"',
        "docs/guide.md:1: Call greet() to say hello.",
        'src/pkg/core.py:2:     return f"hello {name}"',
        "[4 symbolic link(s) pointing outside the working directory were skipped]",
    ]


async def test_find_files_hints_at_subdirectories(fs: dict[str, Tool]) -> None:
    answer = await call(fs["find_files"], pattern="*.md", path="src")
    assert answer == "no file under 'src' matches '*.md' (use '**/' to search subdirectories, as in '**/*.md')"
    assert (await call(fs["find_files"], pattern="**/*.{md,py}", path="docs")).splitlines() == [
        "docs/guide.md",
        "[1 symbolic link(s) pointing outside the working directory were skipped]",  # docs/up
    ]


async def test_skipped_directories_are_not_searched(root: Path) -> None:
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("hello from git\n")
    tools = tools_by_name(file_tools(root))
    assert ".git" not in await call(tools["find_files"], pattern="**")
    assert ".git" not in await call(tools["grep"], pattern="hello")
    assert (await call(tools["read_file"], path=".git/config")) == "hello from git\n"
    tools = tools_by_name(file_tools(root, skip_dirs=()))
    assert ".git/config:1: hello from git" in await call(tools["grep"], pattern="hello")


async def test_a_huge_file_is_refused_without_being_read(root: Path) -> None:
    """A 10 GB sparse file: read_file refuses it at once, grep skips it."""
    huge = root / "huge.log"
    with huge.open("wb") as file:
        file.truncate(10 * 1024**3)
    tools = tools_by_name(file_tools(root))
    started = time.monotonic()
    with pytest.raises(FileTooLargeError, match=r"'huge.log' is 10737418240 bytes, over the limit of 1000000 bytes"):
        await call(tools["read_file"], path="huge.log")
    grepped = await call(tools["grep"], pattern="x", path=".")
    assert "[1 file(s) over 1000000 bytes skipped]" in grepped
    assert time.monotonic() - started < 5


async def test_the_read_limit_is_exact(root: Path) -> None:
    (root / "edge.txt").write_text("a" * 100)
    (root / "over.txt").write_text("a" * 101)
    tools = tools_by_name(file_tools(root, max_read_bytes=100))
    assert await call(tools["read_file"], path="edge.txt") == "a" * 100
    with pytest.raises(FileTooLargeError):
        await call(tools["read_file"], path="over.txt")


async def test_long_files_come_in_parts_that_add_up(root: Path) -> None:
    text = "".join(f"line {n:04d} " + "x" * (n % 37) + "\n" for n in range(1, 801))
    (root / "long.txt").write_text(text)
    tools = tools_by_name(file_tools(root, max_output_chars=2000))
    parts, start = [], 1
    while True:
        answer = await call(tools["read_file"], path="long.txt", start_line=start)
        body, separator, last = answer.rpartition("\n[")
        if not separator:
            parts.append(answer)
            break
        assert len(body) <= 2000
        parts.append(body)
        more = re.search(r"start_line=(\d+)", last)
        if more is None:
            break
        start = int(more.group(1))
    assert len(parts) > 5
    assert "".join(parts) == text


async def test_a_line_range(fs: dict[str, Tool]) -> None:
    answer = await call(fs["read_file"], path="src/pkg/core.py", start_line=2, max_lines=1)
    assert answer == '    return f"hello {name}"\n\n[lines 2-2 of 2 shown]'
    with pytest.raises(FileToolError, match="has 2 lines; start_line=5 is past its end"):
        await call(fs["read_file"], path="src/pkg/core.py", start_line=5)
    with pytest.raises(FileToolError, match="count from 1"):
        await call(fs["read_file"], path="src/pkg/core.py", start_line=0)


async def test_binary_files_are_refused_and_skipped(root: Path) -> None:
    (root / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00hello")
    (root / "latin1.txt").write_bytes("caf\xe9 hello\n".encode("latin-1"))
    tools = tools_by_name(file_tools(root))
    with pytest.raises(BinaryFileError, match=r"'image\.png' is a binary file"):
        await call(tools["read_file"], path="image.png")
    assert "[1 binary file(s) skipped]" in await call(tools["grep"], pattern="hello")
    assert (await call(tools["read_file"], path="latin1.txt")).startswith(
        "caf\ufffd hello\n\n[the file is not valid UTF-8"
    )


async def test_a_fifo_cannot_hang_a_read(fs: dict[str, Tool], root: Path) -> None:
    os.mkfifo(root / "pipe")
    with pytest.raises(FileToolError, match="not a regular file"):
        await call(fs["read_file"], path="pipe")
    assert "pipe (not a regular file)" in await call(fs["list_directory"])


async def test_results_and_output_are_bounded(root: Path) -> None:
    for n in range(30):
        (root / "docs" / f"note{n:02d}.md").write_text("hello\n" * 5)
    tools = tools_by_name(file_tools(root, max_results=10, max_output_chars=400))
    found = await call(tools["find_files"], pattern="**/*.md")
    assert len([line for line in found.splitlines() if not line.startswith("[")]) == 10
    assert "\n[more than 10 files match; only the first 10 are shown]\n" in found
    grepped = await call(tools["grep"], pattern="hello")
    assert "\n[stopped after 10 matching lines; narrow the pattern, path or glob]" in grepped
    listing = await call(tools["list_directory"], path="docs")
    assert listing.endswith("[22 more entries not shown; use find_files with a pattern to narrow]")
    wide = tools_by_name(file_tools(root, max_output_chars=100))
    assert "[output cut at 100 characters" in await call(wide["find_files"], pattern="**")


def test_a_directory_swapped_for_a_link_after_the_check_is_not_followed(root: Path, outside: Path) -> None:
    """The path is checked, then opened one component at a time without following links: a directory
    replaced by a link out of the root in between makes the open fail instead of reading outside."""
    from tracedagent.tools._output import explained
    from tracedagent.tools._sandbox import Sandbox

    (outside / "guide.md").write_text(SECRET)
    sandbox = Sandbox(root)
    checked = sandbox.relative("docs/guide.md")
    (root / "docs").rename(root / "docs-moved")
    (root / "docs").symlink_to(outside)  # the race: after the check, before the open
    with pytest.raises(PathEscapeError, match="changed into a symbolic link"), explained("docs/guide.md"):
        sandbox.read(checked, 1000)


def test_a_walk_stops_at_its_time_limit(root: Path) -> None:
    from tracedagent.tools import _search
    from tracedagent.tools._output import Limits
    from tracedagent.tools._sandbox import Sandbox

    limits = Limits(1000, 1000, 1000, 100, frozenset(), walk_seconds=0.0)
    answer = _search.find_files(Sandbox(root), limits, "**", ".")
    assert answer.endswith("[the search stopped after 0s; search a smaller path for the rest]")


async def test_a_bad_regular_expression_is_explained(fs: dict[str, Tool]) -> None:
    with pytest.raises(FileToolError, match=r"invalid regular expression '\(': .*escape characters"):
        await call(fs["grep"], pattern="(")


async def test_the_models_mistakes_do_not_open_the_breaker(root: Path, recorded_events: RecordingTracer) -> None:
    """Paths outside the root and missing files are errors the model reads, with their own type in the
    telemetry; they are not the tool failing, so its circuit breaker stays closed."""
    mistakes = [("read_file", {"path": f"../outside/{n}"}) for n in range(4)] + [
        ("read_file", {"path": f"missing{n}.txt"}) for n in range(4)
    ]
    model = ScriptedModel(
        [Step(tool_calls=[m]) for m in mistakes] + [Step(tool_calls=[("read_file", {"path": "README.md"})]), "done"]
    )
    result = await Agent("reader", model, tools=file_tools(root), max_turns=20).run("read")
    assert result.status == "completed"
    assert ended(recorded_events) == [("read_file", "error", "PathEscapeError")] * 4 + [
        ("read_file", "error", "FileToolError")
    ] * 4 + [("read_file", "ok", None)]


# ---------------------------------------------------------------------------------------- writing


async def test_writes_stay_inside_the_root(fs: dict[str, Tool], root: Path, outside: Path) -> None:
    assert await call(fs["write_file"], path="new/dir/notes.txt", content="hi") == "created new/dir/notes.txt (2 bytes)"
    assert (root / "new" / "dir" / "notes.txt").read_text() == "hi"
    assert await call(fs["write_file"], path="README.md", content="# New\n") == "replaced README.md (6 bytes)"
    before = tree_of(outside)
    for path in ("../outside/x.txt", "leakdir/x.txt", "leakdir/new/x.txt", "docs/up/outside/x.txt", "leak.txt", "hop"):
        with pytest.raises(PathEscapeError):
            await call(fs["write_file"], path=path, content="owned")
    assert tree_of(outside) == before
    assert (outside / "secret.txt").read_text() == SECRET + "\n"
    assert not (root / "leakdir").resolve().joinpath("new").exists()


async def test_a_write_replaces_a_hard_link_instead_of_writing_through_it(
    fs: dict[str, Tool], root: Path, outside: Path
) -> None:
    os.link(outside / "secret.txt", root / "hardlink.txt")
    await call(fs["write_file"], path="hardlink.txt", content="new content")
    assert (root / "hardlink.txt").read_text() == "new content"
    assert (outside / "secret.txt").read_text() == SECRET + "\n"


async def test_a_write_keeps_the_files_mode_and_leaves_no_temporary_file(fs: dict[str, Tool], root: Path) -> None:
    script = root / "run.sh"
    script.write_text("echo old\n")
    script.chmod(0o750)
    await call(fs["write_file"], path="run.sh", content="echo new\n")
    assert script.stat().st_mode & 0o777 == 0o750
    assert [name for name in tree_of(root) if ".tracedagent-" in name] == []


async def test_write_limits_and_directories(root: Path) -> None:
    tools = tools_by_name(file_tools(root, allow_write=True, write_needs_approval=False, max_write_bytes=10))
    with pytest.raises(FileTooLargeError, match="11 bytes, over the limit of 10"):
        await call(tools["write_file"], path="a.txt", content="x" * 11)
    with pytest.raises(FileToolError, match="is a directory"):
        await call(tools["write_file"], path="docs", content="x")
    with pytest.raises(FileToolError, match="is not a directory"):
        await call(tools["write_file"], path="README.md/x", content="x")


def write_script() -> list[Any]:
    return [Step(tool_calls=[("write_file", {"path": "notes/todo.md", "content": "- ship it\n"})]), "Done."]


async def test_a_write_waits_for_approval_and_runs_once_approved(
    root: Path, recorded_events: RecordingTracer, scripted_model: Callable[..., ScriptedModel]
) -> None:
    agent = Agent("writer", scripted_model(write_script()), tools=file_tools(root, allow_write=True))
    result = await agent.run("write the notes")
    assert result.status == "interrupted"
    [pending] = result.interruptions
    assert (pending.tool, pending.reason) == ("write_file", "tool 'write_file' needs approval")
    assert not (root / "notes").exists()
    result = await agent.resume(result.run_id, {pending.id: Approval.allow()})
    assert result.status == "completed"
    assert (root / "notes" / "todo.md").read_text() == "- ship it\n"
    assert recorded_events.format_span_tree() == (
        "run writer [interrupted] {interrupt, checkpoint}\n"
        "  model scripted:scripted [ok]\n"
        "resume writer [completed]\n"
        "  tool write_file [ok]\n"
        "  model scripted:scripted [ok]"
    )


async def test_a_denied_write_leaves_nothing(
    root: Path, recorded_events: RecordingTracer, scripted_model: Callable[..., ScriptedModel]
) -> None:
    agent = Agent("writer", scripted_model(write_script()), tools=file_tools(root, allow_write=True))
    result = await agent.run("write the notes")
    result = await agent.resume(result.run_id, {result.interruptions[0].id: Approval.deny("not now")})
    assert result.status == "completed"
    assert not (root / "notes").exists()
    assert ended(recorded_events) == [("write_file", "denied", None)]


async def test_writes_without_approval_when_the_user_opts_out(root: Path, recorded_events: RecordingTracer) -> None:
    agent = Agent(
        "writer", ScriptedModel(write_script()), tools=file_tools(root, allow_write=True, write_needs_approval=False)
    )
    assert (await agent.run("write")).status == "completed"
    assert (root / "notes" / "todo.md").exists()
    assert recorded_events.format_span_tree() == (
        "run writer [completed]\n  model scripted:scripted [ok]\n  tool write_file [ok]\n  model scripted:scripted [ok]"
    )


# ------------------------------------------------------------------------------------------- shell


def sh(root: Path, **options: Any) -> Tool:
    return shell_tool(root, enabled=True, **options)


def shell_agent(tool: Tool, *commands: str, plugins: list[object] | None = None) -> Agent:
    steps = [Step(tool_calls=[("shell", {"command": c}) for c in commands]), "ok"]
    return Agent("ops", ScriptedModel(steps), tools=[tool], plugins=plugins or [])


@pytest.mark.parametrize("enabled", [False, None, 1, "yes"])
def test_the_shell_tool_exists_only_when_enabled(root: Path, enabled: Any) -> None:
    with pytest.raises(ConfigurationError, match="pass enabled=True"):
        shell_tool(root, enabled=enabled)
    with pytest.raises(ConfigurationError, match="pass enabled=True"):
        shell_tool(root)


@pytest.mark.parametrize("needs_approval", [False, None, lambda arguments: False])
def test_approval_cannot_be_turned_off(root: Path, needs_approval: Any) -> None:
    with pytest.raises(ConfigurationError, match="every shell command needs a person's approval"):
        shell_tool(root, enabled=True, needs_approval=needs_approval)


async def test_a_command_waits_for_approval_then_runs(root: Path, recorded_events: RecordingTracer) -> None:
    agent = shell_agent(sh(root), "touch ran.txt")
    result = await agent.run("go")
    assert result.status == "interrupted"
    assert [(i.tool, json.loads(i.arguments)) for i in result.interruptions] == [
        ("shell", {"command": "touch ran.txt"})
    ]
    assert not (root / "ran.txt").exists()
    result = await agent.resume(result.run_id, {result.interruptions[0].id: True})
    assert (root / "ran.txt").exists()
    assert result.messages[-2].content == "$ touch ran.txt\n\n[exit code 0]"
    assert ended(recorded_events) == [("shell", "ok", None)]


async def test_a_denied_command_never_runs(root: Path, recorded_events: RecordingTracer) -> None:
    agent = shell_agent(sh(root), "touch ran.txt")
    result = await agent.run("go")
    await agent.resume(result.run_id, {result.interruptions[0].id: False})
    assert not (root / "ran.txt").exists()
    assert ended(recorded_events) == [("shell", "denied", None)]


async def test_a_command_cannot_run_unapproved_even_when_the_setting_is_changed(root: Path) -> None:
    """The command checks the approval itself: changing the tool's setting, or wrapping its function in
    a tool without approval, still pauses the run."""
    changed = sh(root)
    changed.needs_approval = False
    assert changed.function is not None
    rewrapped = Tool(changed.function, name="shell", needs_approval=False)
    for tool in (changed, rewrapped):
        result = await shell_agent(tool, "touch ran.txt").run("go")
        assert result.status == "interrupted"
        assert "runs a command only once a person approves it" in result.interruptions[0].reason
        assert not (root / "ran.txt").exists()
        with pytest.raises(ApprovalRequired, match="runs a command only once a person approves it"):
            await tool.function(command="touch ran.txt")
    assert not (root / "ran.txt").exists()


async def test_an_approval_policy_of_your_own_can_approve(root: Path, recorded_events: RecordingTracer) -> None:
    """An approve_tool_call hook is an approval too: a policy in the user's code, not a tool setting."""

    class AllowEcho:
        @hookimpl
        def approve_tool_call(self, call: Any) -> str:
            return "allow" if call.arguments["command"].startswith("echo ") else "deny"

    result = await shell_agent(sh(root), "echo approved", "touch ran.txt", plugins=[AllowEcho()]).run("go")
    assert result.status == "completed"
    assert sorted(ended(recorded_events)) == [("shell", "denied", None), ("shell", "ok", None)]
    assert "$ echo approved\napproved\n\n[exit code 0]" in [m.content for m in result.messages if m.role == "tool"]
    assert not (root / "ran.txt").exists()


async def test_a_command_past_its_timeout_is_killed_with_its_children(
    root: Path, recorded_events: RecordingTracer
) -> None:
    agent = shell_agent(sh(root, timeout=0.5), "sh -c 'echo started; sleep 30 & echo $! > child.pid; wait'")
    result = await agent.run("go")
    started = time.monotonic()
    result = await agent.resume(result.run_id, {result.interruptions[0].id: True})
    assert time.monotonic() - started < 10
    [(tool, status, error)] = ended(recorded_events)
    assert (tool, status, error) == ("shell", "timeout", "ToolTimeout")
    message = result.messages[-2].content or ""
    assert "was killed after 0.5s (its timeout); its output until then:\nstarted" in message
    child = int((root / "child.pid").read_text())
    assert _dies_within(child, 5.0)


def _dies_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for an init that does not reap."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


async def test_output_is_cut_to_its_head_and_tail(root: Path) -> None:
    program = "import sys; sys.stdout.write('START' + 'x' * 200000 + 'END')"
    agent = shell_agent(sh(root, max_output_chars=1000), f'{sys.executable} -c "{program}"')
    result = await agent.run("go")
    result = await agent.resume(result.run_id, {result.interruptions[0].id: True})
    output = result.messages[-2].content or ""
    assert len(output) < 1300
    assert output.startswith(f'$ {sys.executable} -c "{program}"\nSTARTxxx')
    assert output.endswith("xxxEND\n[exit code 0]")
    assert re.search(r"\n\[\.\.\. \d+ bytes of output not shown \.\.\.\]\n", output)


async def test_commands_run_without_a_shell_unless_asked(root: Path, recorded_events: RecordingTracer) -> None:
    agent = shell_agent(sh(root), "echo hi | tee piped.txt", "echo $HOME", "no-such-program-xyz")
    result = await agent.run("go")
    result = await agent.resume(result.run_id, {i.id: True for i in result.interruptions})
    contents = [m.content for m in result.messages if m.role == "tool"]
    assert "'|' is a shell operator" in (contents[0] or "")
    assert contents[1] == "$ echo $HOME\n$HOME\n\n[exit code 0]"
    assert contents[2] == "no program 'no-such-program-xyz' was found on the PATH"
    assert not (root / "piped.txt").exists()
    assert sorted(s for _, s, _ in ended(recorded_events)) == ["error", "error", "ok"]
    piped = shell_agent(sh(root, shell=True), "echo hi | tee piped.txt")
    result = await piped.run("go")
    await piped.resume(result.run_id, {result.interruptions[0].id: True})
    assert (root / "piped.txt").read_text() == "hi\n"


async def test_the_environment_is_small_unless_asked(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_API_KEY", "sk-not-for-commands")

    async def environment(tool: Tool) -> str:
        agent = shell_agent(tool, "env")
        result = await agent.run("go")
        result = await agent.resume(result.run_id, {result.interruptions[0].id: True})
        return result.messages[-2].content or ""

    assert "sk-not-for-commands" not in await environment(sh(root))
    assert "EXTRA=1" in await environment(sh(root, env={"EXTRA": "1"}))
    assert "sk-not-for-commands" in await environment(sh(root, inherit_env=True))


def test_unsplittable_commands_are_explained(root: Path) -> None:
    from tracedagent.tools._shell import _split

    with pytest.raises(ShellToolError, match="No closing quotation; balance its quotes"):
        _split("echo 'oops")
    assert _split("grep -n 'a b' file.txt") == ["grep", "-n", "a b", "file.txt"]
