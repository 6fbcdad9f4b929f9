"""``shell_tool(root, enabled=True)``: run a command in ``root``, only with a person's approval.

How a command runs, and why:

* **Without a shell by default.** The model sends one command line; it is split like a POSIX shell
  would split it (``shlex``: quotes and backslashes) and the program runs directly, so pipes,
  redirections, ``$VARIABLES``, globs, ``;`` and ``&&`` are not interpreted: what the person approved is
  exactly the program and arguments that run. A shell operator in the command is refused with a message
  saying so. (The model can still ask for ``sh -c '...'``: the person approving sees it.)
  ``shell=True`` runs the line with ``/bin/sh -c`` instead, for people who want pipes.
* **Always approved.** The tool pauses the run before every call; ``needs_approval`` cannot be turned
  off, and the command itself checks :func:`tracedagent.approval_granted`, so even a tool whose setting
  was changed, or another ``Tool`` made from its function, refuses to run without an approval. Approval
  comes from a person (``agent.resume(run_id, {call_id: True})``), a remembered approval
  (``Approval.allow(remember=True)``) or an ``approve_tool_call`` hook you register: a policy of yours.
* **Bounded.** The command runs in a new session (its own process group) with stdin closed; at its
  ``timeout`` (or when the run is cancelled) the whole group is killed with SIGKILL, and a timeout ends
  the call with status ``timeout`` and the output so far. Output (stdout and stderr together, as in a
  terminal) is read as it comes and only its first and last parts are kept, up to ``max_output_chars``;
  the rest is counted and dropped.
* **A small environment.** The command gets ``PATH``, ``HOME``, locale and temporary-directory variables
  and ``TERM=dumb``, not the whole environment of the process (which often holds API keys):
  ``env={...}`` adds variables, ``inherit_env=True`` passes everything.

The working directory is ``root``, but a command is not confined to it: it can read or write anything
the process can. The approval is the guard; run the agent as a user with only the rights it needs.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from .._approval import approval_granted
from .._tools import Tool
from ..exceptions import ApprovalRequired, ConfigurationError, ToolTimeout
from ..resilience import CircuitBreaker
from ._errors import ShellToolError

__all__ = ["shell_tool"]

#: Tokens that mean something only to a shell; refused when commands run without one.
_OPERATORS = frozenset({"|", "||", "&", "&&", ";", ";;", "<", ">", ">>", "<<", "<<<", "2>", "2>>", "&>", "2>&1", "|&"})
_PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "USER", "LOGNAME")
_READ_CHUNK = 65536
#: Seconds to wait for a killed command to be reaped; the tool's own timeout adds this as a backstop.
_REAP_SECONDS = 5.0


def _split(command: str) -> list[str]:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ShellToolError(f"cannot split the command {command!r}: {exc}; balance its quotes") from None
    for token in argv:
        if token in _OPERATORS or token.startswith(("|", ">", "<", "&&", "2>")):
            raise ShellToolError(
                f"{token!r} is a shell operator, but this tool runs one program without a shell: pipes, "
                "redirections, ';' and '&&' are not available. Run one command at a time."
            )
    return argv


class _Tail:
    """The first ``limit`` bytes of a stream and its last ``limit // 2``, with the total length."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def add(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            del self.tail[: max(0, len(self.tail) - self.limit // 2)]

    def text(self, max_chars: int) -> str:
        if self.total <= self.limit:
            return self.head.decode("utf-8", errors="replace")[:max_chars]
        half = max_chars // 2
        head = self.head.decode("utf-8", errors="replace")[:half]
        tail = self.tail.decode("utf-8", errors="replace")[-half:]
        left_out = self.total - len(head.encode()) - len(tail.encode())
        return f"{head}\n[... {max(left_out, 0)} bytes of output not shown ...]\n{tail}"


async def _read(stream: asyncio.StreamReader, sink: _Tail) -> None:
    while chunk := await stream.read(_READ_CHUNK):
        sink.add(chunk)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def shell_tool(
    root: str | os.PathLike[str],
    *,
    enabled: bool = False,
    timeout: float = 30.0,
    max_output_chars: int = 20_000,
    shell: bool = False,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = False,
    needs_approval: Any = True,
    name: str = "shell",
) -> Tool:
    """A tool that runs a command line in ``root``; off unless ``enabled=True``, and every call needs approval.

    Commands run without a shell unless ``shell=True`` (see the module's notes for why), with stdin
    closed, in their own process group, killed at ``timeout`` seconds (status ``timeout``); their output
    is cut to ``max_output_chars``. ``needs_approval`` exists only to refuse anything but True.
    """
    if enabled is not True:
        raise ConfigurationError(
            "shell_tool() makes a tool that runs commands the model writes; pass enabled=True to create it "
            "(every call will still wait for a person's approval)"
        )
    if needs_approval is not True:
        raise ConfigurationError(
            f"shell_tool(): needs_approval={needs_approval!r} is not accepted: every shell command needs a "
            "person's approval. To approve calls without asking, register an approve_tool_call hook that "
            "decides them: it is then your policy, in your code"
        )
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
        raise ConfigurationError(f"shell_tool(): timeout must be a positive number of seconds, not {timeout!r}")
    if isinstance(max_output_chars, bool) or not isinstance(max_output_chars, int) or max_output_chars < 100:
        raise ConfigurationError(
            f"shell_tool(): max_output_chars must be a whole number >= 100, not {max_output_chars!r}"
        )
    cwd = os.path.realpath(os.fspath(root))
    if not os.path.isdir(cwd):
        raise ConfigurationError(f"shell_tool(): the root {os.fspath(root)!r} is not a directory")
    environment = dict(os.environ) if inherit_env else {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    if not inherit_env:
        environment.setdefault("PATH", os.defpath)
        environment["TERM"] = "dumb"
    environment.update(env or {})

    async def run_command(command: str) -> str:
        """
        Args:
            command: the command line, for example 'git log --oneline -5' or 'python -m pytest -x -q'.
        """
        if not approval_granted():
            raise ApprovalRequired(f"the shell tool runs a command only once a person approves it: {command!r}")
        argv = ["/bin/sh", "-c", command] if shell else _split(command)
        if not argv or not argv[0]:
            raise ShellToolError("the command is empty; send the program to run and its arguments")
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=environment,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise ShellToolError(f"no program {argv[0]!r} was found on the PATH") from None
        except PermissionError:
            raise ShellToolError(f"{argv[0]!r} cannot be run: permission denied") from None
        assert process.stdout is not None
        output = _Tail(max_output_chars)
        reader = asyncio.ensure_future(_read(process.stdout, output))
        try:
            async with asyncio.timeout(timeout):
                code = await process.wait()
                _kill_group(process)  # what it left running in the background, holding the output open
                await reader
        except BaseException as exc:  # the timeout, or the run cancelled: nothing of the command survives
            _kill_group(process)
            reader.cancel()
            with suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(process.wait(), _REAP_SECONDS)
            if isinstance(exc, TimeoutError):
                raise ToolTimeout(
                    f"the command {command!r} was killed after {timeout:g}s (its timeout); its output until "
                    f"then:\n{output.text(max_output_chars)}",
                    tool=name,
                ) from None
            raise
        ending = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        return f"$ {command}\n{output.text(max_output_chars)}\n[{ending}]"

    return Tool(
        run_command,
        name=name,
        description=(
            "Run a command line in the working directory and return its output (stdout and stderr) and exit "
            "code. A person approves each command before it runs. "
            + (
                "It runs with /bin/sh, so pipes and redirections work. "
                if shell
                else "It runs one program directly, without a shell: no pipes, redirections, ';' or '&&'. "
            )
            + f"It is stopped after {timeout:g}s; output is cut to {max_output_chars} characters."
        ),
        timeout=timeout + 2 * _REAP_SECONDS,  # a backstop: the command's own timeout comes first
        needs_approval=True,
        breaker=CircuitBreaker(count=(OSError,)),
    )
