"""Output files that never destroy inputs: checks for ``--out`` and an atomic, no-follow writer.

Every command that writes an ``--out`` calls :func:`check_output` before doing any work (so a long
job is not run only to be refused) and writes through :func:`atomic_file`:

- an ``--out`` that is the database (or its ``.wal``), by any spelling - relative, through a
  symlink or a hard link - is refused, with or without ``--force``;
- an existing file is refused unless ``--force``; a folder given as a file (and a file given as a
  folder) and a missing parent folder are one-line errors, not tracebacks;
- the temporary file has a random name in the target's folder and is created with ``O_EXCL``
  (a symlink planted there is never followed), is fsynced, and then renamed onto the target; on
  any error it is removed and the target is left as it was. Without ``--force`` the rename is a
  hard link that fails if the target appeared meanwhile, so a file created during a long job is
  not overwritten either.

This lives in ``personas`` (the lowest layer) so every writer, whatever its layer, can import it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Literal

from personahub.core.errors import PersonahubError

OutputKind = Literal["file", "dir"]
FORCE_HELP = "Overwrite an existing --out file."
_CREATE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
_ATTEMPTS = 100


def _same_file(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name one file: same real path, or (both existing) same inode."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _refuse_database(path: Path, db: Path | None, flag: str) -> None:
    if db is None:
        return
    wal = db.with_name(db.name + ".wal")
    if _same_file(path, db):
        raise PersonahubError(f"{flag} {path}: that is the database (--db {db}); "
                              "choose another output")
    if _same_file(path, wal):
        raise PersonahubError(f"{flag} {path}: that is the database's write-ahead log "
                              f"(--db {db}); choose another output")


def _refuse_existing_file(path: Path, force: bool, flag: str) -> None:
    if os.path.isdir(path):
        raise PersonahubError(f"{flag} {path}: is a folder; give a file name")
    if os.path.lexists(path) and not force:
        raise PersonahubError(f"{flag} {path}: already exists; add --force to overwrite it")


def _require_folder(folder: Path, path: Path, flag: str) -> None:
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.lexists(folder) else "does not exist"
        raise PersonahubError(f"{flag} {path}: {folder} {what}")


def check_output(path: str | Path, *, db: str | Path | None, force: bool,
                 kind: OutputKind = "file", names: Sequence[str] = (),
                 flag: str = "--out") -> Path:
    """Refuse an output that would destroy the database or, without ``force``, an existing file.

    ``kind="dir"`` is a folder the command fills with ``names`` (created if missing, its parent
    must exist); each of those files is checked like a file output. Returns ``path`` as a Path.
    Raises PersonahubError with a one-line message naming ``flag`` and the path.
    """
    path = Path(path)
    db_path = Path(db) if db is not None else None
    _refuse_database(path, db_path, flag)
    parent = Path(os.path.abspath(path)).parent
    if kind == "file":
        _refuse_existing_file(path, force, flag)
        _require_folder(parent, path, flag)
        return path
    if os.path.lexists(path) and not os.path.isdir(path):
        raise PersonahubError(f"{flag} {path}: is a file; give a folder")
    if not os.path.isdir(path):
        _require_folder(parent, path, flag)
        return path
    for name in names:
        _refuse_database(path / name, db_path, flag)
        _refuse_existing_file(path / name, force, flag)
    return path


def _temp_name(target: Path) -> Path:
    """A fresh, unpredictable name next to ``target`` (hidden, so a crash leaves no clutter)."""
    return target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")


def _create_temp(target: Path) -> tuple[int, Path]:
    """Create the temporary file exclusively (never opening or following an existing path)."""
    for _ in range(_ATTEMPTS):
        tmp = _temp_name(target)
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp  # the umask applies, as for open()
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name found", str(target))


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable; not every platform or filesystem allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move ``tmp`` onto ``target``; without ``overwrite`` never replace an existing target."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic, and fails if anything (even a dangling link) is there
    except FileExistsError:
        raise PersonahubError(f"{target}: already exists; add --force to overwrite it") from None
    except OSError:  # a filesystem without hard links: check, then rename
        if os.path.lexists(target):
            raise PersonahubError(f"{target}: already exists; add --force to overwrite it") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_file(path: str | Path, *, overwrite: bool, binary: bool = False) -> Iterator[IO]:
    """Yield a file to write ``path``'s new contents into; it replaces ``path`` only on success.

    Text files are UTF-8. Writers that usually take a file name (pyarrow Parquet, networkx
    GraphML, matplotlib ``savefig``) take this file object as well, so no path is reopened.
    """
    target = Path(path)
    fd, tmp = _create_temp(target)
    try:
        if binary:
            handle: IO = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp, target, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)
