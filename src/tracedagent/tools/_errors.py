"""The errors of the built-in tools. Each is a :class:`~tracedagent.ToolError`: the run goes on, the model
reads the message and can try something else.

::

    ToolError
    ├── FileToolError          a file tool cannot do what was asked: no such file, not a directory, a bad pattern
    │   ├── PathEscapeError    the path leads outside the root: ``..``, an absolute path, a symbolic link
    │   ├── FileTooLargeError  the file (or the content to write) is over the size limit
    │   └── BinaryFileError    the file is not text
    └── ShellToolError         the command cannot be started: empty, unbalanced quotes, a shell operator
                               without ``shell=True``, no such program
"""

from __future__ import annotations

from ..exceptions import ToolError

__all__ = ["BinaryFileError", "FileTooLargeError", "FileToolError", "PathEscapeError", "ShellToolError"]


class FileToolError(ToolError):
    """A file tool cannot do what was asked; the message says what the model can do instead."""


class PathEscapeError(FileToolError):
    """The path leads outside the root the file tools are confined to (``..``, an absolute path, or a
    symbolic link pointing out of it). Nothing was read or written."""


class FileTooLargeError(FileToolError):
    """The file to read, or the content to write, is larger than the tool's size limit."""


class BinaryFileError(FileToolError):
    """The file holds binary data (a NUL byte in its first 8 KiB), which cannot be shown as text."""


class ShellToolError(ToolError):
    """The shell tool cannot start the command (empty, unbalanced quotes, a shell operator when the tool
    runs programs without a shell, or a program that does not exist)."""
