"""Keeping what a tool returns within bounds, and turning OS errors into messages a model can act on."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ._errors import FileToolError, PathEscapeError

__all__ = ["Limits", "clip", "explained", "note"]

#: Longest line grep shows (the rest of the line is cut).
GREP_LINE_CHARS = 300


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds of one set of file tools."""

    max_read_bytes: int
    max_write_bytes: int
    max_output_chars: int
    max_results: int
    skip_dirs: frozenset[str]
    #: Seconds a walk (find_files, grep) may take before it stops with what it found; None for no bound.
    walk_seconds: float | None


def note(text: str) -> str:
    """A line appended to a tool's answer about what it left out and what to do."""
    return f"\n[{text}]"


def clip(text: str, limit: int, hint: str) -> str:
    """``text`` cut to ``limit`` characters, with a note on how much was left out and ``hint``."""
    if len(text) <= limit:
        return text
    return text[:limit] + note(f"output cut at {limit} characters, {len(text) - limit} more not shown; {hint}")


@contextmanager
def explained(path: str) -> Iterator[None]:
    """Turn the OS errors a model can do something about into :class:`FileToolError` messages; other
    errors (a failing disk) propagate and count as the tool failing."""
    try:
        yield
    except FileNotFoundError:
        raise FileToolError(
            f"{path!r} does not exist; list_directory or find_files shows what does (paths are relative "
            "to the working directory)"
        ) from None
    except NotADirectoryError:
        raise FileToolError(f"{path!r} is not a directory (it, or a directory on its way, is a file)") from None
    except IsADirectoryError:
        raise FileToolError(f"{path!r} is a directory; use list_directory or find_files on it") from None
    except PermissionError:
        raise FileToolError(f"{path!r}: permission denied") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link where the checked path had none: it changed meanwhile
            raise PathEscapeError(
                f"{path!r} changed into a symbolic link while it was being opened; it was not followed"
            ) from None
        if exc.errno == errno.ENAMETOOLONG:
            raise FileToolError(f"{path!r}: the name is too long") from None
        raise
