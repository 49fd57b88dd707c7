"""Input files a user names, checked before they are read and read within a size cap.

A device such as /dev/zero never ends and a FIFO blocks its reader until a writer comes, so a
reader that opened either grew without bound or waited forever. Every named input goes through
here: it must be a regular file no larger than its cap, and the reader it gets stops at the cap
even if the file grows while being read.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import IO

from personahub.core.errors import InputFileError, UsageError

MB = 1024 * 1024
# a world, demonstrations, scenario or .sql file is read whole; a text this size is a mistake
MAX_TEXT_FILE_BYTES = 64 * MB
# a survey, a human sample, a codebook, a benchmark, a population table or a batch results file:
# read into rows in memory, where a file takes several times its size
MAX_TABLE_FILE_BYTES = 256 * MB


class UnusableInputError(InputFileError, UsageError):
    """A named input is a folder, not a regular file, or over its size cap: exit 2, as an unusable
    flag value."""


def file_kind(mode: int) -> str | None:
    """Describe a file that is not a regular one, in words (None for a regular file or a link)."""
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) or stat.S_ISLNK(mode) else "not a regular file"


def _name(path: Path, setting: str | None) -> str:
    return f"{setting} {path}" if setting else str(path)


def _megabytes(size: int) -> str:
    return f"{size / MB:,.0f} MB" if size >= MB else f"{size:,} bytes"


def check_input_file(path: str | Path, setting: str | None = None, *,
                     max_bytes: int | None = MAX_TABLE_FILE_BYTES, hint: str = "") -> Path:
    """Refuse, before anything is read, a path that is no regular file within the cap.

    Args:
        path: the file as the user gave it (a link is followed).
        setting: the flag or argument that named it, for the message (None: the path alone).
        max_bytes: the largest file accepted (None: any size, for a reader that streams it in
            bounded memory).
        hint: what to give instead, added to the message of a path that is not a file.

    Returns:
        The path.

    Raises:
        InputFileError: no such file, or it cannot be read (exit 1).
        UnusableInputError: a folder, a device, a FIFO, a socket, or a file over the cap (exit 2).
    """
    path = Path(path)
    name = _name(path, setting)
    more = f" ({hint})" if hint else ""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise InputFileError(name, None, f"file not found{more}") from None
    except OSError as exc:
        raise InputFileError(name, None, f"{exc.strerror or exc}{more}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UnusableInputError(name, None, f"is a folder; give a file{more}")
    if not stat.S_ISREG(info.st_mode):
        raise UnusableInputError(name, None, f"is {file_kind(info.st_mode)}, not a regular file"
                                             f"{more}")
    if max_bytes is not None and info.st_size > max_bytes:
        raise UnusableInputError(name, None, f"is {_megabytes(info.st_size)}, larger than the "
                                             f"{_megabytes(max_bytes)} such a file may be; "
                                             "give a smaller file")
    return path


class _Capped(io.RawIOBase):
    """A raw reader that refuses to read past the cap (a file that grows while it is read)."""

    def __init__(self, raw: IO[bytes], name: str, max_bytes: int) -> None:
        self._raw, self._name, self._left, self._cap = raw, name, max_bytes, max_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        got = self._raw.readinto(view[: self._left + 1])  # type: ignore[attr-defined]
        if got is None:
            return 0
        if got > self._left:
            raise UnusableInputError(self._name, None, "grew past the "
                                                       f"{_megabytes(self._cap)} such a file may "
                                                       "be while it was read")
        self._left -= got
        return int(got)

    def close(self) -> None:
        self._raw.close()
        super().close()


def open_input(path: str | Path, setting: str | None = None, *,
               max_bytes: int = MAX_TABLE_FILE_BYTES, hint: str = "") -> io.BufferedReader:
    """Open a checked input file for reading bytes, stopping at the cap; the caller closes it."""
    path = check_input_file(path, setting, max_bytes=max_bytes, hint=hint)
    name = _name(path, setting)
    try:  # O_NONBLOCK: a path swapped for a FIFO since the check does not block the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise InputFileError(name, None, str(exc.strerror or exc)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnusableInputError(name, None, "is no longer a regular file")
    return io.BufferedReader(_Capped(os.fdopen(fd, "rb", buffering=0), name, max_bytes))


def open_text_input(path: str | Path, setting: str | None = None, *,
                    max_bytes: int = MAX_TABLE_FILE_BYTES, hint: str = "",
                    encoding: str = "utf-8-sig") -> IO[str]:
    """Open a checked input file as text (a byte-order mark dropped, newlines kept for csv); the
    caller closes it."""
    return io.TextIOWrapper(open_input(path, setting, max_bytes=max_bytes, hint=hint),
                            encoding=encoding, newline="")


def read_input_bytes(path: str | Path, setting: str | None = None, *,
                     max_bytes: int = MAX_TABLE_FILE_BYTES, hint: str = "") -> bytes:
    """Read a checked input file's bytes whole."""
    with open_input(path, setting, max_bytes=max_bytes, hint=hint) as f:
        return f.read()
