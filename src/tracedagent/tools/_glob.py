"""Glob patterns (``*``, ``?``, ``[...]``, ``**``, ``{a,b}``) as regular expressions over ``/`` paths.

``*`` and ``?`` never cross a ``/``; ``**`` as a whole segment matches any number of directories
(``**/*.py`` finds Python files at every depth, including the top); ``{py,pyi}`` expands to each
alternative. Names starting with a dot are matched like any other. A pattern that is absolute or has a
``..`` segment is refused: patterns are relative to the directory searched.
"""

from __future__ import annotations

import re

from ._errors import PathEscapeError

__all__ = ["compile_glob"]

_MAX_ALTERNATIVES = 64


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regular expression that matches the whole of each relative path ``pattern`` matches."""
    if pattern.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", pattern):
        raise PathEscapeError(
            f"glob pattern {pattern!r} is absolute: patterns are relative to the directory searched, for "
            "example '**/*.py'"
        )
    alternatives = _expand_braces(pattern)
    for alternative in alternatives:
        if ".." in alternative.split("/"):
            raise PathEscapeError(
                f"glob pattern {pattern!r} has a '..' segment: patterns cannot leave the directory searched; "
                "search from a higher path instead"
            )
    return re.compile("|".join(f"(?:{_translate(a)})" for a in alternatives) + r"\Z", re.DOTALL)


def _expand_braces(pattern: str) -> list[str]:
    """``a{b,c}d`` as ``abd`` and ``acd`` (innermost braces first; at most a few dozen alternatives)."""
    match = re.search(r"\{([^{}]*,[^{}]*)\}", pattern)
    if match is None:
        return [pattern]
    expanded: list[str] = []
    for choice in match.group(1).split(","):
        expanded.extend(_expand_braces(pattern[: match.start()] + choice + pattern[match.end() :]))
        if len(expanded) > _MAX_ALTERNATIVES:
            break
    return expanded[:_MAX_ALTERNATIVES]


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            whole_segment = (i == 0 or pattern[i - 1] == "/") and (j == n or pattern[j] == "/")
            if j - i >= 2 and whole_segment:
                if j < n:  # "**/": any number of directories, none included
                    out.append("(?:[^/]*/)*")
                    j += 1
                else:  # a trailing "**": anything below
                    out.append(".*")
            else:
                out.append("[^/]*")
            i = j
            continue
        if c == "?":
            out.append("[^/]")
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j].replace("\\", "\\\\")
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append(f"(?!/)[{body}]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)
