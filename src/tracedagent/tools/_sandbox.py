"""A directory the file tools cannot leave.

Two checks guard every access:

1. **The real path stays under the root.** The requested path is joined to the root and resolved with
   ``os.path.realpath``: ``..`` is collapsed and every symbolic link is followed, then the result must be
   the root's own real path or lie under it. An absolute path is accepted only when it resolves there.
2. **What is opened is what was checked.** The resolved path has no symbolic link left in it, so it is
   opened one component at a time from a descriptor of the root, each with ``O_NOFOLLOW``: a directory
   swapped for a link between the check and the open makes the open fail instead of leaving the root.
   Files are opened ``O_NONBLOCK`` (a FIFO cannot hang a read) and must be regular files.

Writes go to a new file in the same directory that then replaces the target (``os.replace``), so a write
never changes an inode in place: a hard link to a file outside the root is replaced, not written through.
Walks (``find_files``, ``grep``) use ``os.fwalk`` from the same kind of descriptor, never descend a
symbolic link to a directory, and check each symbolic link to a file like any other path.

POSIX only (descriptor-relative opens), like the rest of tracedagent.
"""

from __future__ import annotations

import errno
import functools
import os
import secrets
import stat
import time
from collections.abc import Callable, Collection, Generator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from ..exceptions import ConfigurationError
from ._errors import BinaryFileError, FileTooLargeError, FileToolError, PathEscapeError

__all__ = ["Sandbox", "WalkStats"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_READ_DIR = os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC
_READ_FILE = os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC
#: How much of a file is looked at to tell text from binary (as git does: a NUL byte means binary).
SNIFF_BYTES = 8192


def is_binary(data: bytes) -> bool:
    return b"\x00" in data[:SNIFF_BYTES]


def _parts(rel: str) -> list[str]:
    return [] if rel == "." else rel.split(os.sep)


def shown(rel: str) -> str:
    """A path relative to the root as the model sees it (``/`` separators)."""
    return rel.replace(os.sep, "/")


@dataclass
class WalkStats:
    """What a walk left out, for the tool's answer."""

    outside: int = 0
    stopped: bool = False


class Sandbox:
    """The root directory (resolved once, when the tools are made) and every access beneath it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        try:
            real = os.path.realpath(os.fspath(root), strict=True)
        except OSError as exc:
            raise ConfigurationError(f"the tools' root {os.fspath(root)!r} cannot be used: {exc}") from None
        if not os.path.isdir(real):
            raise ConfigurationError(f"the tools' root {os.fspath(root)!r} is not a directory")
        self.root = real
        self._prefix = real if real.endswith(os.sep) else real + os.sep

    # ----------------------------------------------------------------------------------- checking

    def inside(self, real: str) -> str | None:
        """``real`` relative to the root (``.`` for the root itself), or None when it is outside."""
        if real == self.root:
            return "."
        if real.startswith(self._prefix):
            return real[len(self._prefix) :]
        return None

    def relative(self, path: str) -> str:
        """The real path of ``path`` relative to the root; raises :class:`PathEscapeError` if it leaves it."""
        if "\x00" in path:
            raise FileToolError("a path cannot contain a NUL character")
        joined = os.path.join(self.root, path or ".")
        rel = self.inside(os.path.realpath(joined))
        if rel is not None:
            return rel
        if self.inside(os.path.normpath(joined)) is None:
            raise PathEscapeError(
                f"path {path!r} is outside the directory these tools work in: give a path relative to it "
                "(list_directory('.') shows what is there); '..' cannot leave it"
            )
        raise PathEscapeError(
            f"path {path!r} goes through a symbolic link that points outside the directory these tools work "
            "in; it cannot be read or written"
        )

    def real_inside(self, rel_dir: str, name: str) -> str | None:
        """Where the entry ``name`` of the directory ``rel_dir`` really is, relative to the root, or None."""
        return self.inside(os.path.realpath(os.path.join(self.root, rel_dir, name)))

    # ------------------------------------------------------------------------------------ opening

    @contextmanager
    def directory(self, rel: str, *, create: bool = False) -> Iterator[int]:
        """A descriptor of the directory ``rel`` (a real path relative to the root), opened one component
        at a time without following links; ``create`` makes missing directories."""
        fd = os.open(self.root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
        try:
            for part in _parts(rel):
                try:
                    child = os.open(part, _READ_DIR, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                    child = os.open(part, _READ_DIR, dir_fd=fd)
                except NotADirectoryError:  # O_DIRECTORY | O_NOFOLLOW on a link: ENOTDIR on Linux
                    if _is_link(part, fd):
                        raise OSError(errno.ELOOP, "a symbolic link where a directory was checked", part) from None
                    raise
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def open_file(self, rel: str) -> int:
        """A read-only descriptor of the regular file ``rel``."""
        parent, name = os.path.split(rel)
        if rel == ".":
            raise IsADirectoryError(rel)
        with self.directory(parent or ".") as dir_fd:
            return _open_regular(name, dir_fd)

    def read(self, rel: str, limit: int) -> bytes:
        """The bytes of the text file ``rel``: :class:`FileTooLargeError` past ``limit`` bytes,
        :class:`BinaryFileError` for binary data."""
        fd = self.open_file(rel)
        with os.fdopen(fd, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise FileTooLargeError(_too_large(rel, size, limit))
            data = file.read(limit + 1)
        if len(data) > limit:  # it grew since the check
            raise FileTooLargeError(_too_large(rel, len(data), limit))
        if is_binary(data):
            raise BinaryFileError(f"{shown(rel)!r} is a binary file ({len(data)} bytes); it cannot be shown as text")
        return data

    def write(self, rel: str, data: bytes) -> bool:
        """Replace (or create) the file ``rel`` with ``data``, making missing parent directories; True
        when the file is new. The new content lands in a temporary file that then replaces the target."""
        parent, name = os.path.split(rel)
        if rel == ".":
            raise IsADirectoryError(rel)
        with self.directory(parent or ".", create=True) as dir_fd:
            try:
                old: os.stat_result | None = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                old = None
            if old is not None and stat.S_ISDIR(old.st_mode):
                raise IsADirectoryError(rel)
            if old is not None and not stat.S_ISREG(old.st_mode):
                raise FileToolError(f"{shown(rel)!r} is not a regular file; it cannot be written")
            temporary = f".tracedagent-{secrets.token_hex(6)}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666, dir_fd=dir_fd)
            try:
                with os.fdopen(fd, "wb") as file:
                    if old is not None:
                        os.fchmod(file.fileno(), stat.S_IMODE(old.st_mode))
                    file.write(data)
                os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(temporary, dir_fd=dir_fd)
                raise
        return old is None

    def entries(self, rel: str) -> list[tuple[str, str, int]]:
        """The directory ``rel``'s entries, sorted by name, as ``(name, kind, size)``; kind is ``dir``,
        ``file``, ``link`` (to something inside the root: name gets `` -> target``), ``outside`` (a link
        out of the root) or ``other``."""
        found: list[tuple[str, str, int]] = []
        with self.directory(rel) as dir_fd, os.scandir(dir_fd) as scan:
            for entry in scan:
                try:
                    if entry.is_symlink():
                        target = self.real_inside(rel, entry.name)
                        if target is None:
                            found.append((entry.name, "outside", 0))
                        else:
                            is_dir = os.path.isdir(os.path.join(self.root, target))
                            suffix = "/" if is_dir and target != "." else ""
                            found.append((f"{entry.name} -> {shown(target)}{suffix}", "link", 0))
                    elif entry.is_dir(follow_symlinks=False):
                        found.append((entry.name, "dir", 0))
                    elif entry.is_file(follow_symlinks=False):
                        found.append((entry.name, "file", entry.stat(follow_symlinks=False).st_size))
                    else:
                        found.append((entry.name, "other", 0))
                except OSError:  # vanished while listed
                    continue
        found.sort()
        return found

    # ------------------------------------------------------------------------------------ walking

    def walk(
        self, rel: str, skip_dirs: Collection[str], stats: WalkStats, deadline: float | None
    ) -> Generator[tuple[str, Callable[[], int]], None, None]:
        """Every file under the directory ``rel`` (or ``rel`` itself when it is a file), depth first in
        name order, as ``(path relative to the root, a function opening it)``. Directories named in
        ``skip_dirs`` and symbolic links to directories are not entered; a link to a file is given only
        when it stays inside the root (``stats.outside`` counts the others). Opening a file that vanished
        or changed while walked raises ``OSError``; call it before taking the next file (it may use the
        walk's directory descriptor), and close the descriptor it returns."""
        try:
            with self.directory(rel) as start:
                yield from self._walk(rel, start, skip_dirs, stats, deadline)
        except NotADirectoryError:
            yield rel, functools.partial(self.open_file, rel)

    def _walk(
        self, rel: str, start: int, skip_dirs: Collection[str], stats: WalkStats, deadline: float | None
    ) -> Iterator[tuple[str, Callable[[], int]]]:
        for dirpath, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=start, follow_symlinks=False):
            if deadline is not None and time.monotonic() > deadline:
                stats.stopped = True
                return
            here = os.path.normpath(os.path.join(rel, dirpath))
            keep = []
            for name in sorted(dirnames):
                if name in skip_dirs:
                    continue
                if _is_link(name, dir_fd):
                    if self.real_inside(here, name) is None:
                        stats.outside += 1
                    continue  # a link to a directory is never entered (no loops, no second copies)
                keep.append(name)
            dirnames[:] = keep
            for name in sorted(filenames):
                if deadline is not None and time.monotonic() > deadline:
                    stats.stopped = True
                    return
                path = os.path.normpath(os.path.join(here, name))
                if _is_link(name, dir_fd):
                    target = self.real_inside(here, name)
                    if target is None:
                        stats.outside += 1
                        continue
                    yield path, functools.partial(self.open_file, target)
                else:
                    yield path, functools.partial(_open_regular, name, dir_fd)


def _is_link(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_regular(name: str, dir_fd: int) -> int:
    fd = os.open(name, _READ_FILE, dir_fd=dir_fd)
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return fd
    os.close(fd)
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(name)
    raise FileToolError(f"{name!r} is not a regular file (a device, socket or pipe); it cannot be read")


def _too_large(rel: str, size: int, limit: int) -> str:
    return (
        f"{shown(rel)!r} is {size} bytes, over the limit of {limit} bytes for reading a file; use grep to "
        "find the lines you need"
    )
