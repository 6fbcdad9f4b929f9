"""``file_tools(root)``: read, write, list, find and grep, confined to one directory."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from .._tools import Tool
from ..exceptions import ConfigurationError
from ..resilience import CircuitBreaker
from . import _search
from ._errors import FileTooLargeError, FileToolError
from ._output import Limits, clip, explained, note
from ._sandbox import Sandbox, shown

__all__ = ["DEFAULT_SKIP_DIRS", "file_tools"]

#: Directories ``find_files`` and ``grep`` do not enter (``list_directory`` and ``read_file`` still see them).
DEFAULT_SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "__pycache__",
        "node_modules",
        ".venv",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
    }
)


def read_file(sandbox: Sandbox, limits: Limits, path: str, start_line: int, max_lines: int | None) -> str:
    if start_line < 1 or (max_lines is not None and max_lines < 1):
        raise FileToolError("start_line and max_lines count from 1: the first line of a file is line 1")
    with explained(path):
        rel = sandbox.relative(path)
        data = sandbox.read(rel, limits.max_read_bytes)
    try:
        text, lossy = data.decode("utf-8"), False
    except UnicodeDecodeError:
        text, lossy = data.decode("utf-8", errors="replace"), True
    lines = text.splitlines(keepends=True)
    total = len(lines)
    if total == 0:
        return f"[{shown(rel)} is empty]"
    if start_line > total:
        raise FileToolError(f"{path!r} has {total} lines; start_line={start_line} is past its end")
    end = total if max_lines is None else min(total, start_line - 1 + max_lines)
    parts: list[str] = []
    used = 0
    index = start_line - 1
    cut_line = False
    while index < end:
        line = lines[index]
        if used + len(line) > limits.max_output_chars:
            if not parts:  # a single line longer than the whole budget: show its start
                parts.append(line[: limits.max_output_chars])
                cut_line = True
                index += 1
            break
        parts.append(line)
        used += len(line)
        index += 1
    notes = []
    if lossy:
        notes.append("the file is not valid UTF-8: undecodable bytes are shown as U+FFFD")
    if cut_line:
        notes.append(f"line {index} is longer than {limits.max_output_chars} characters and was cut")
    if index < total:
        notes.append(
            f"lines {start_line}-{index} of {total} shown; call read_file with start_line={index + 1} to read on"
        )
    elif start_line > 1:
        notes.append(f"lines {start_line}-{index} of {total} shown")
    return "".join(parts) + "".join(note(n) for n in notes)


def write_file(sandbox: Sandbox, limits: Limits, path: str, content: str) -> str:
    data = content.encode("utf-8")
    if len(data) > limits.max_write_bytes:
        raise FileTooLargeError(
            f"the content is {len(data)} bytes, over the limit of {limits.max_write_bytes} bytes for writing a file"
        )
    with explained(path):
        rel = sandbox.relative(path)
        created = sandbox.write(rel, data)
    return f"{'created' if created else 'replaced'} {shown(rel)} ({len(data)} bytes)"


def list_directory(sandbox: Sandbox, limits: Limits, path: str) -> str:
    with explained(path):
        rel = sandbox.relative(path)
        entries = sandbox.entries(rel)
    if not entries:
        return f"[{path!r} is an empty directory]"
    lines = []
    outside = 0
    for name, kind, size in entries[: limits.max_results]:
        if kind == "dir":
            lines.append(f"{name}/")
        elif kind == "file":
            lines.append(f"{name} ({size} bytes)")
        elif kind == "outside":
            lines.append(f"{name} -> (outside the working directory, not accessible)")
            outside += 1
        elif kind == "link":
            lines.append(name)
        else:
            lines.append(f"{name} (not a regular file)")
    answer = clip("\n".join(lines), limits.max_output_chars, "use find_files with a pattern")
    if len(entries) > limits.max_results:
        answer += note(
            f"{len(entries) - limits.max_results} more entries not shown; use find_files with a pattern to narrow"
        )
    return answer


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"file_tools(): {name} must be a whole number above 0, not {value!r}")


def file_tools(
    root: str | os.PathLike[str],
    *,
    max_read_bytes: int = 1_000_000,
    max_output_chars: int = 20_000,
    max_results: int = 200,
    allow_write: bool = False,
    write_needs_approval: bool | Callable[[dict[str, Any]], bool] = True,
    max_write_bytes: int = 1_000_000,
    skip_dirs: Iterable[str] = DEFAULT_SKIP_DIRS,
    timeout: float | None = 30.0,
) -> list[Tool]:
    """Tools that read (and, with ``allow_write=True``, write) files under ``root``, and nowhere else.

    Returns ``read_file``, ``list_directory``, ``find_files`` and ``grep``, plus ``write_file`` when
    ``allow_write`` is true. Every path the model gives is resolved (``..`` collapsed, symbolic links
    followed) and must stay under the root's real path; each match of ``find_files`` and ``grep`` is
    checked the same way, and so is each parent directory of a file to write.

    * ``max_read_bytes``: larger files are refused by ``read_file`` and skipped by ``grep``;
    * ``max_output_chars``: the most text one call returns (the rest is announced, with how to get it);
    * ``max_results``: the most files ``find_files`` lists, lines ``grep`` shows, entries ``list_directory`` shows;
    * ``write_needs_approval``: True (the default) pauses the run before every write until a person
      approves it; False, or a function of the arguments deciding per call;
    * ``max_write_bytes``: the most ``write_file`` writes at once;
    * ``skip_dirs``: directory names ``find_files`` and ``grep`` do not enter (``.git``, ``node_modules``...);
    * ``timeout``: seconds per call; a walk stops at 80% of it and answers with what it found.

    Nothing is enabled by importing :mod:`tracedagent.tools`: only the tools this returns, given to an
    agent, touch the file system. Their circuit breakers count only OS failures and timeouts, never the
    model's mistakes (a missing file, a path outside the root).
    """
    sandbox = Sandbox(root)
    for name, value in (
        ("max_read_bytes", max_read_bytes),
        ("max_output_chars", max_output_chars),
        ("max_results", max_results),
        ("max_write_bytes", max_write_bytes),
    ):
        _positive(name, value)
    if isinstance(skip_dirs, str):
        raise ConfigurationError("file_tools(): skip_dirs is a collection of directory names, not one string")
    limits = Limits(
        max_read_bytes=max_read_bytes,
        max_write_bytes=max_write_bytes,
        max_output_chars=max_output_chars,
        max_results=max_results,
        skip_dirs=frozenset(skip_dirs),
        walk_seconds=None if timeout is None else timeout * 0.8,
    )

    def options() -> dict[str, Any]:
        return {"timeout": timeout, "breaker": CircuitBreaker(count=(OSError,))}

    def read_file_(
        path: str,
        start_line: int = 1,
        max_lines: int | None = None,
    ) -> str:
        """
        Args:
            path: the file, relative to the working directory, with '/' between directories.
            start_line: the first line to return (1 is the first line of the file).
            max_lines: how many lines to return at most; all the rest of the file when omitted.
        """
        return read_file(sandbox, limits, path, start_line, max_lines)

    def list_directory_(path: str = ".") -> str:
        """
        Args:
            path: the directory, relative to the working directory; '.' is the working directory itself.
        """
        return list_directory(sandbox, limits, path)

    def find_files_(pattern: str, path: str = ".") -> str:
        """
        Args:
            pattern: a glob relative to path: '*' and '?' within a name, '**/' for any number of
                directories, '{a,b}' for alternatives, for example '**/*.py' or 'src/**/test_*.{py,pyi}'.
            path: the directory to search, relative to the working directory.
        """
        return _search.find_files(sandbox, limits, pattern, path)

    def grep_(pattern: str, path: str = ".", glob: str | None = None, ignore_case: bool = False) -> str:
        """
        Args:
            pattern: a Python regular expression searched in each line, for example 'def \\w+_tool' or 'TODO'.
            path: a directory to search (recursively) or one file, relative to the working directory.
            glob: only search files whose path below `path` matches this glob, for example '**/*.py'.
            ignore_case: match letters whatever their case.
        """
        return _search.grep(sandbox, limits, pattern, path, glob, ignore_case)

    def write_file_(path: str, content: str) -> str:
        """
        Args:
            path: the file to create or replace, relative to the working directory; missing directories
                are created.
            content: the whole new content of the file (text, written as UTF-8).
        """
        return write_file(sandbox, limits, path, content)

    tools = [
        Tool(
            read_file_,
            name="read_file",
            description=(
                "Read a text file in the working directory. Long files come in parts: the answer then ends "
                "with a note giving the start_line to read on from. Binary files and files over "
                f"{max_read_bytes} bytes are refused; use grep to find lines in those."
            ),
            **options(),
        ),
        Tool(
            list_directory_,
            name="list_directory",
            description=(
                "List a directory of the working directory: subdirectories end with '/', files show their "
                "size, symbolic links show where they point."
            ),
            **options(),
        ),
        Tool(
            find_files_,
            name="find_files",
            description=(
                "Find files whose path matches a glob pattern, searching subdirectories (except "
                f"{', '.join(sorted(limits.skip_dirs)) or 'none'}). Lists paths relative to the working "
                f"directory, at most {max_results}."
            ),
            **options(),
        ),
        Tool(
            grep_,
            name="grep",
            description=(
                "Search text files for lines matching a regular expression. Answers 'path:line: text' for "
                f"each matching line (at most {max_results}); binary files and files over {max_read_bytes} "
                "bytes are skipped."
            ),
            **options(),
        ),
    ]
    if allow_write:
        tools.append(
            Tool(
                write_file_,
                name="write_file",
                description=(
                    "Create or replace a text file in the working directory with the given content. "
                    + ("A person approves each write before it happens. " if write_needs_approval is True else "")
                    + f"At most {max_write_bytes} bytes."
                ),
                needs_approval=write_needs_approval,
                **options(),
            )
        )
    return tools
