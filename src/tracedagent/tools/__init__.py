"""Built-in tools: files under one directory, and (only when enabled) a shell.

::

    from tracedagent import Agent
    from tracedagent.tools import file_tools, shell_tool

    tools = file_tools("/srv/repo")                              # read_file, list_directory, find_files, grep
    tools = file_tools("/srv/repo", allow_write=True)            # + write_file, each write approved by a person
    tools.append(shell_tool("/srv/repo", enabled=True))          # + shell, each command approved by a person
    agent = Agent("explorer", model, tools=tools)

Importing this module enables nothing: only the tools the factories return, given to an agent, touch the
file system or run commands. The file tools cannot leave their root (``..``, absolute paths and symbolic
links are resolved and checked, and files are opened without following links), bound what they read and
return, and refuse binary files. The shell tool must be created with ``enabled=True`` and every command
needs an approval, always. Errors are :class:`~tracedagent.ToolError` subclasses whose messages tell the
model what to do instead::

    ToolError
    ├── FileToolError          no such file, not a directory, a bad pattern...
    │   ├── PathEscapeError    the path leads outside the root
    │   ├── FileTooLargeError  over max_read_bytes (or max_write_bytes)
    │   └── BinaryFileError    not text
    └── ShellToolError         the command cannot be started
"""

from ._errors import BinaryFileError, FileTooLargeError, FileToolError, PathEscapeError, ShellToolError
from ._files import DEFAULT_SKIP_DIRS, file_tools
from ._shell import shell_tool

__all__ = [
    "BinaryFileError",
    "DEFAULT_SKIP_DIRS",
    "FileTooLargeError",
    "FileToolError",
    "PathEscapeError",
    "ShellToolError",
    "file_tools",
    "shell_tool",
]
