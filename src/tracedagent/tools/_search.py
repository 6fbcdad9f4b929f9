"""``find_files`` and ``grep``: walks of the sandbox that stop at the tool's limits."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import closing

from ._errors import FileToolError
from ._glob import compile_glob
from ._output import GREP_LINE_CHARS, Limits, clip, explained, note
from ._sandbox import Sandbox, WalkStats, is_binary, shown

__all__ = ["find_files", "grep"]


def _start(sandbox: Sandbox, limits: Limits, path: str) -> tuple[str, WalkStats, float | None]:
    rel = sandbox.relative(path)
    deadline = None if limits.walk_seconds is None else time.monotonic() + limits.walk_seconds
    return rel, WalkStats(), deadline


def _left_out(stats: WalkStats, limits: Limits) -> list[str]:
    notes = []
    if stats.outside:
        notes.append(f"{stats.outside} symbolic link(s) pointing outside the working directory were skipped")
    if stats.stopped:
        notes.append(f"the search stopped after {limits.walk_seconds:g}s; search a smaller path for the rest")
    return notes


def find_files(sandbox: Sandbox, limits: Limits, pattern: str, path: str) -> str:
    """The files under ``path`` whose path relative to ``path`` matches the glob ``pattern``."""
    matcher = compile_glob(pattern)
    with explained(path):
        rel, stats, deadline = _start(sandbox, limits, path)
        found: list[str] = []
        more = False
        walk = sandbox.walk(rel, limits.skip_dirs, stats, deadline)
        with closing(walk):
            for file, _ in walk:
                if matcher.match(_below(file, rel)):
                    if len(found) == limits.max_results:
                        more = True
                        break
                    found.append(shown(file))
    notes = _left_out(stats, limits)
    if more:
        notes.insert(0, f"more than {limits.max_results} files match; only the first {limits.max_results} are shown")
    if not found:
        hint = " (use '**/' to search subdirectories, as in '**/" + pattern + "')" if "/" not in pattern else ""
        answer = f"no file under {path!r} matches {pattern!r}{hint}"
    else:
        answer = "\n".join(found)
    answer = clip(answer, limits.max_output_chars, "use a narrower pattern")
    return answer + "".join(note(n) for n in notes)


def grep(sandbox: Sandbox, limits: Limits, pattern: str, path: str, glob: str | None, ignore_case: bool) -> str:
    """Lines matching the regular expression ``pattern`` in the text files under ``path``."""
    try:
        regex = re.compile(pattern, re.IGNORECASE if ignore_case else 0)
    except re.error as exc:
        raise FileToolError(
            f"invalid regular expression {pattern!r}: {exc}; grep takes a Python regular expression "
            "(escape characters such as ( [ . * + ? with a backslash to match them literally)"
        ) from None
    matcher = compile_glob(glob) if glob else None
    with explained(path):
        rel, stats, deadline = _start(sandbox, limits, path)
        lines: list[str] = []
        skipped = {"binary": 0, "large": 0, "unreadable": 0}
        more = False
        walk = sandbox.walk(rel, limits.skip_dirs, stats, deadline)
        with closing(walk):
            for file, open_file in walk:
                if matcher is not None and not matcher.match(_below(file, rel)):
                    continue
                text = _text(open_file, limits.max_read_bytes, skipped)
                if text is None:
                    continue
                for number, line in _matches(regex, text):
                    if len(lines) == limits.max_results:
                        more = True
                        break
                    if len(line) > GREP_LINE_CHARS:
                        line = line[:GREP_LINE_CHARS] + " [...]"
                    lines.append(f"{shown(file)}:{number}: {line}")
                if more:
                    break
    notes = []
    if more:
        notes.append(f"stopped after {limits.max_results} matching lines; narrow the pattern, path or glob")
    if skipped["binary"]:
        notes.append(f"{skipped['binary']} binary file(s) skipped")
    if skipped["large"]:
        notes.append(f"{skipped['large']} file(s) over {limits.max_read_bytes} bytes skipped")
    if skipped["unreadable"]:
        notes.append(f"{skipped['unreadable']} file(s) could not be read")
    notes.extend(_left_out(stats, limits))
    answer = "\n".join(lines) if lines else f"no line under {path!r} matches {pattern!r}"
    answer = clip(answer, limits.max_output_chars, "narrow the pattern, path or glob")
    return answer + "".join(note(n) for n in notes)


def _below(file: str, base: str) -> str:
    """``file`` relative to the searched ``base`` (its name when the base is the file itself), with ``/``."""
    return (os.path.relpath(file, base) if file != base else os.path.basename(file)).replace(os.sep, "/")


def _text(open_file: Callable[[], int], limit: int, skipped: dict[str, int]) -> str | None:
    try:
        fd = open_file()
    except (OSError, FileToolError):  # vanished, changed, unreadable or not a regular file
        skipped["unreadable"] += 1
        return None
    with os.fdopen(fd, "rb") as file:
        if os.fstat(file.fileno()).st_size > limit:
            skipped["large"] += 1
            return None
        data = file.read(limit + 1)
    if len(data) > limit:
        skipped["large"] += 1
        return None
    if is_binary(data):
        skipped["binary"] += 1
        return None
    return data.decode("utf-8", errors="replace")


def _matches(regex: re.Pattern[str], text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        if regex.search(line):
            yield number, line
