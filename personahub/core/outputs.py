"""Output files that never destroy inputs: output path checks and an atomic, no-follow writer that
writes an exclusive temporary and renames it into place.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Literal

from personahub.core.errors import PersonahubError, UsageError
from personahub.core.input_files import file_kind

OutputKind = Literal["file", "dir"]
FORCE_HELP = "Overwrite an existing --out file."
_CREATE_FLAGS = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
                 | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
_ATTEMPTS = 100
# temporary names: .NAME.<16 hex>.<host tag>-<pid>.tmp
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{16}(?:\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+))?"
                        r"\.tmp$")
STALE_AFTER_S = 3600.0  # a temporary whose writer cannot be asked is left alone this long
_ROOM_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_OWN_FDS = "/proc/self/fd"  # where a file without a name can be linked from (Linux)


def _same_file(a: Path, b: Path) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _refuse_database(path: Path, db: Path | None, flag: str) -> None:
    if db is None:
        return
    wal = db.with_name(db.name + ".wal")
    if _same_file(path, db):
        raise UsageError(f"{flag} {path}: that is the database (--db {db}); "
                         "choose another output")
    if _same_file(path, wal):
        raise UsageError(f"{flag} {path}: that is the database's write-ahead log "
                         f"(--db {db}); choose another output")


def _refuse_special(path: Path, flag: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    what = file_kind(mode)
    if what is not None:
        raise UsageError(f"{flag} {path}: is {what}; --force replaces only a regular file")


def _refuse_existing_file(path: Path, force: bool, flag: str) -> None:
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    if os.path.lexists(path) and not force:
        raise UsageError(f"{flag} {path}: already exists; add --force to overwrite it")
    _refuse_special(path, flag)


def _require_folder(folder: Path, path: Path, flag: str) -> None:
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.lexists(folder) else "does not exist"
        raise UsageError(f"{flag} {path}: {folder} {what}")


def _probe_folder(folder: Path, path: Path, flag: str) -> None:
    """Refuse early a folder that takes no new file; sweep what killed writers left there."""
    sweep_temps(folder)
    fd = _unnamed_temp(folder)
    if fd is not None:
        os.close(fd)
        return
    try:
        fd, tmp = _create_temp(folder / path.name)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot create a file in {folder} "
                         f"({exc.strerror or exc})") from None
    os.close(fd)
    tmp.unlink(missing_ok=True)


def check_output(path: str | Path, *, db: str | Path | None, force: bool,
                 kind: OutputKind = "file", names: Sequence[str] = (),
                 flag: str = "--out") -> Path:
    """Refuse an output that would destroy the database or an existing file (without force), is not a
    regular file, or sits in a folder that takes no file. Returns the path.
    """
    path = Path(path)
    db_path = Path(db) if db is not None else None
    _refuse_database(path, db_path, flag)
    parent = Path(os.path.abspath(path)).parent
    if kind == "file":
        _refuse_existing_file(path, force, flag)
        _require_folder(parent, path, flag)
        _probe_folder(parent, path, flag)
        return path
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a file; give a folder")
    _require_folder(parent, path, flag)
    _probe_folder(parent, path, flag)
    if not os.path.isdir(path):
        return path
    for name in names:
        _refuse_database(path / name, db_path, flag)
        _refuse_existing_file(path / name, force, flag)
    return path


def _host_tag() -> str:
    """Eight hex digits naming this machine (a pid means nothing on another host)."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


HOST_TAG = _host_tag()


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(8)}.{HOST_TAG}-{os.getpid()}.tmp")


def _alive(pid: int) -> bool:
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _stale(match: re.Match[str], entry: os.DirEntry[str], now: float) -> bool:
    """Whether a temporary can go: its writer is dead, or (writer unknown) it is old."""
    pid = match.group("pid")
    if pid is not None and match.group("host") == HOST_TAG:
        return int(pid) != os.getpid() and not _alive(int(pid))
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
    except OSError:
        return False


def sweep_temps(folder: str | Path, *, now: float | None = None) -> list[Path]:
    """Remove the stale temporaries killed writers left; errors are ignored."""
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or not _stale(match, entry, now):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            elif entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            else:
                continue
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _unnamed_temp(folder: Path) -> int | None:
    """Return a file without a name in the folder (Linux's O_TMPFILE), which a kill leaves nothing of; None
    where the system or the file system makes none (then a hidden named temporary is written)."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir(_OWN_FDS):
        return None
    try:
        return os.open(folder, flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError:  # not supported here (EOPNOTSUPP, EISDIR, EINVAL), or no room: named instead
        return None


def _link_unnamed(fd: int, target: Path, overwrite: bool) -> bool:
    """Give the unnamed file its name; without overwrite never replace one. False when the file
    system refuses the link (the caller writes a named temporary instead)."""
    source = f"{_OWN_FDS}/{fd}"
    if not overwrite:
        try:
            os.link(source, target)  # atomic; fails if anything is there
        except FileExistsError:
            raise PersonahubError(f"{target}: already exists; add --force to overwrite it") from None
        except OSError as exc:
            if exc.errno in _ROOM_ERRORS:
                raise
            return False
        return True
    _refuse_special(target, str(target))
    for _ in range(_ATTEMPTS):  # a name for the instant before the rename: swept if killed there
        tmp = _temp_name(target)
        try:
            os.link(source, tmp)
            break
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno in _ROOM_ERRORS:
                raise
            return False
    else:
        raise FileExistsError(errno.EEXIST, "no unused temporary name found", str(target))
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return True


def _copy_to_named(fd: int, target: Path, overwrite: bool) -> None:
    """Publish the unnamed file's bytes through a named temporary (a file system without links)."""
    named, tmp = _create_temp(target)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        with os.fdopen(named, "wb") as out, os.fdopen(os.dup(fd), "rb") as written:
            shutil.copyfileobj(written, out)
            out.flush()
            os.fsync(out.fileno())
        _publish(tmp, target, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temp(target: Path) -> tuple[int, Path]:
    sweep_temps(target.parent)
    for _ in range(_ATTEMPTS):
        tmp = _temp_name(target)
        try:
            return os.open(tmp, _CREATE_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temporary name found", str(target))


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(tmp: Path, target: Path, overwrite: bool) -> None:
    """Move the temporary onto the target; without overwrite never replace one."""
    if overwrite:
        _refuse_special(target, str(target))
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic; fails if anything is there
    except FileExistsError:
        raise PersonahubError(f"{target}: already exists; add --force to overwrite it") from None
    except OSError:  # no hard links here: check, then rename
        if os.path.lexists(target):
            raise PersonahubError(f"{target}: already exists; add --force to overwrite it") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def atomic_file(path: str | Path, *, overwrite: bool, binary: bool = False) -> Iterator[IO]:
    """Yield a file to write the new contents into; it replaces the path only on success.

    Where the system allows, the file has no name until it is complete, so a kill -9 while writing
    leaves nothing beside the target; elsewhere it is a hidden temporary the next write to the
    folder sweeps.
    """
    target = Path(path)
    tmp: Path | None = None
    sweep_temps(target.parent)
    fd = _unnamed_temp(target.parent)
    if fd is None:
        try:
            fd, tmp = _create_temp(target)
        except OSError as exc:
            raise PersonahubError(f"{target}: cannot create a file in {target.parent} "
                                  f"({exc.strerror or exc})") from None
    try:
        if binary:
            handle: IO = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding="utf-8", newline="")
    except BaseException:
        os.close(fd)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            if tmp is None and not _link_unnamed(handle.fileno(), target, overwrite):
                _copy_to_named(handle.fileno(), target, overwrite)
        if tmp is not None:
            _publish(tmp, target, overwrite)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if exc.errno in _ROOM_ERRORS:
            raise PersonahubError(f"{target}: cannot write it ({exc.strerror}); nothing was "
                                  "written") from None
        raise
    except BaseException:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(target.parent)


@contextlib.contextmanager
def staged_folder(path: str | Path, *, overwrite: bool, names: Sequence[str]) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces the output folder's listed files on success."""
    target = Path(path)
    sweep_temps(target.parent)
    for _ in range(_ATTEMPTS):
        staged = _temp_name(target)
        try:
            staged.mkdir()
            break
        except FileExistsError:
            continue
        except OSError as exc:
            raise PersonahubError(f"{target}: cannot create a folder in {target.parent} "
                                  f"({exc.strerror or exc})") from None
    else:
        raise FileExistsError(errno.EEXIST, "no unused temporary name found", str(target))
    try:
        yield staged
        _publish_folder(staged, target, overwrite, names)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _fsync_folder(target.parent)


def _publish_folder(staged: Path, target: Path, overwrite: bool, names: Sequence[str]) -> None:
    try:
        os.rename(staged, target)
        return
    except OSError:
        if not os.path.isdir(target) or os.path.islink(target):
            raise
    written = sorted(Path(root, name).relative_to(staged)
                     for root, _, files in os.walk(staged) for name in files)
    if not overwrite:  # refuse before moving anything
        present = [name for name in written if os.path.lexists(target / name)]
        if present:
            raise PersonahubError(f"{target / present[0]}: already exists; add --force to "
                                  "overwrite it")
    for name in written:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            _refuse_special(destination, str(destination))
        os.replace(staged / name, destination)
    if overwrite:
        for name in {Path(n) for n in names} - set(written):
            with contextlib.suppress(OSError):
                if (target / name).is_file() and not (target / name).is_symlink():
                    os.unlink(target / name)
    shutil.rmtree(staged, ignore_errors=True)
