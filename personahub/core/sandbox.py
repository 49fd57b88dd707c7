"""The one sandbox for SQL a user writes.

Each rule closed an escape found in DuckDB 2.0: the local file system is off, file-writing
statements are refused by kind, ATTACH is read-only, and the configuration is locked last.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from personahub.core.errors import PersonahubError
from personahub.core.store import connect

_QUIET = (("autoinstall_known_extensions", "false"), ("autoload_known_extensions", "false"),
          ("allow_community_extensions", "false"), ("allow_persistent_secrets", "false"),
          ("python_enable_replacements", "false"))


class SandboxRefusal(PersonahubError):
    """A statement refused by its kind (the message names the flag that allows it)."""


@dataclass(frozen=True)
class FileAccess:
    """What user SQL may do with files: nothing, read all but the database, or write in one folder."""

    read: bool = False
    write_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.read and self.write_dir is not None:
            raise PersonahubError("--allow-files and --allow-writes cannot be combined: with "
                                  "--allow-writes DIR the SQL reads and writes inside DIR only "
                                  "(put the files to read there)")


def lock_settings(con: duckdb.DuckDBPyConnection, *, external: bool = False,
                  no_files: bool = False, temp_dir: str = "",
                  allowed_dirs: Sequence[str] = ()) -> None:
    """Close the connection off and lock every setting, in the only order DuckDB accepts."""
    for name, value in _QUIET:
        con.execute(f"SET {name} = {value}")
    con.execute(f"SET temp_directory = {quoted(temp_dir)}")
    if allowed_dirs:
        con.execute(f"SET allowed_directories = [{', '.join(map(quoted, allowed_dirs))}]")
    if not external:
        con.execute("SET enable_external_access = false")
    if no_files:
        con.execute("SET disabled_filesystems = 'LocalFileSystem'")
    con.execute("SET lock_configuration = true")


def quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def user_sql_connection(db: str | Path, access: FileAccess,
                        prepare: Callable[[duckdb.DuckDBPyConnection], object] | None = None
                        ) -> Iterator[duckdb.DuckDBPyConnection]:
    """Return a read-only connection for user SQL; with a write folder it holds a private copy of the
    database."""
    db = Path(db)
    private = Path(tempfile.mkdtemp(prefix="personahub-sql-"))
    con: duckdb.DuckDBPyConnection | None = None
    try:
        path = db
        allowed: list[str] = []
        if access.write_dir is not None:
            check_write_dir(access.write_dir, db)
            path = _snapshot(db, private / "db")
            allowed = [_dir_entry(access.write_dir)]
        con = connect(path, read_only=True)
        if prepare is not None:
            prepare(con)
        spill = private / "spill"
        spill.mkdir()
        if access.write_dir is not None:
            lock_settings(con, temp_dir=str(spill), allowed_dirs=allowed)
        elif access.read:
            lock_settings(con, external=True, temp_dir=str(spill))
        else:
            lock_settings(con, no_files=True)
        yield con
    finally:
        if con is not None:
            con.close()
        shutil.rmtree(private, ignore_errors=True)


def run_user_sql(con: duckdb.DuckDBPyConnection, query: str,
                 access: FileAccess) -> duckdb.DuckDBPyConnection:
    """Run every statement of a query, all checked first; returns the connection holding the last result."""
    for _ in user_sql_statements(con, query, access):
        pass
    return con


def user_sql_statements(con: duckdb.DuckDBPyConnection, query: str,
                        access: FileAccess) -> Iterator[str]:
    """Run a query's statements one by one, checked, yielding each kind with its result ready."""
    plan = [(_kind(statement), *checked_statement(con, statement, access))
            for statement in con.extract_statements(query)]
    if not plan:
        raise SandboxRefusal("the SQL holds no statement")
    for kind, text, attach in plan:
        before = _writable_databases(con) if attach else set()
        con.execute(text)
        if attach and (_writable_databases(con) - before):
            for name in _writable_databases(con) - before:
                con.execute(f'DETACH "{name}"')
            raise SandboxRefusal("ATTACH opened a database for writing; it was detached")
        yield kind


def _kind(statement: duckdb.Statement) -> str:
    try:
        return statement.type.name
    except ValueError:
        return "UNKNOWN"


_EXTENSIONS = "installing, loading or updating extensions is disabled"
_WRITES = "needs --allow-writes DIR (it writes files)"
_ALLOWED_KINDS = frozenset({
    "SELECT", "INSERT", "UPDATE", "DELETE", "MERGE_INTO", "CREATE", "CREATE_FUNC", "ALTER",
    "DROP", "TRANSACTION", "ANALYZE", "VACUUM", "VARIABLE_SET", "SET", "CALL", "DETACH"})


def checked_statement(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement,
                      access: FileAccess) -> tuple[str, bool]:
    """Return the SQL to run for a statement and whether it is an ATTACH to re-issue read-only, or a
    refusal."""
    try:
        kind = statement.type.name
    except ValueError:
        raise SandboxRefusal(_EXTENSIONS) from None
    text = statement.query
    words = _words(text)
    if kind == "LOAD" or kind == "EXTENSION":
        raise SandboxRefusal(_EXTENSIONS)
    if kind in _ALLOWED_KINDS:
        return text, False
    if kind == "EXPLAIN":  # EXPLAIN ANALYZE runs its statement
        inner = _after_explain(text)
        for sub in con.extract_statements(inner):
            checked_statement(con, sub, access)
        return text, False
    if kind == "MULTI" and words[:1] in (["PIVOT"], ["UNPIVOT"]):
        return text, False
    writing = access.write_dir is not None
    if kind == "PRAGMA":
        name = words[1].lower() if len(words) > 1 and words[0] == "PRAGMA" else ""
        if words[:1] in (["IMPORT"], ["COPY"]) or name in ("import_database", "copy_database"):
            if writing:
                return text, False
            raise SandboxRefusal(f"{' '.join(words[:2])} {_WRITES}")
        return text, False
    if kind in ("COPY", "EXPORT", "COPY_DATABASE"):
        if writing:
            return text, False
        if kind == "EXPORT":
            raise SandboxRefusal(f"EXPORT DATABASE {_WRITES}")
        raise SandboxRefusal(f"COPY {_WRITES}" + ("; to load a file use SELECT ... FROM "
                                                  "read_csv(...)" if access.read else ""))
    if kind == "ATTACH":
        if writing:
            return text, False
        if access.read:
            return read_only_attach(text), True
        raise SandboxRefusal("ATTACH needs --allow-files (read-only) or --allow-writes DIR")
    raise SandboxRefusal(f"{kind.replace('_', ' ')} statements are not available here")


def _writable_databases(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("SELECT database_name FROM duckdb_databases() "
                       "WHERE NOT internal AND NOT readonly").fetchall()
    return {r[0] for r in rows}


def tokens(sql: str) -> list[tuple[str, str]]:
    """Text and kind of each token, comments left out."""
    found = duckdb.tokenize(sql)
    out = []
    for i, (start, kind) in enumerate(found):
        end = found[i + 1][0] if i + 1 < len(found) else len(sql)
        name = kind.name
        if name != "comment":
            out.append((sql[start:end].strip(), name))
    return out


def _words(sql: str) -> list[str]:
    return [t.upper() if k == "keyword" else t for t, k in tokens(sql)[:3]]


def _after_explain(sql: str) -> str:
    found = duckdb.tokenize(sql)
    texts = [sql[s: (found[i + 1][0] if i + 1 < len(found) else len(sql))].strip()
             for i, (s, _) in enumerate(found)]
    i = 1
    if i < len(texts) and texts[i].upper() == "ANALYZE":
        i += 1
    if i < len(texts) and texts[i] == "(":
        depth = 0
        while i < len(texts):
            depth += texts[i].count("(") - texts[i].count(")")
            i += 1
            if depth <= 0:
                break
    return sql[found[i][0]:] if i < len(found) else ""


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = {"TRUE", "1", "'TRUE'", "ON", "'1'"}


def read_only_attach(sql: str) -> str:
    """ATTACH re-issued read-only, or a refusal."""
    toks = [t for t in tokens(sql) if t[0] != ";"]
    words = [t.upper() for t, _ in toks]
    i = 1
    if i < len(words) and words[i] == "DATABASE":
        i += 1
    exists = ""
    if words[i:i + 3] == ["IF", "NOT", "EXISTS"]:
        exists, i = "IF NOT EXISTS ", i + 3
    if i >= len(toks) or toks[i][1] != "string_const" or not toks[i][0].startswith("'"):
        raise SandboxRefusal("ATTACH: give the database as a quoted path, e.g. "
                             "ATTACH 'other.duckdb' AS other")
    path = toks[i][0][1:-1].replace("''", "'")
    i += 1
    alias = ""
    if i < len(words) and words[i] == "AS":
        if i + 1 >= len(toks):
            raise SandboxRefusal("ATTACH: AS needs a name")
        name = toks[i + 1][0].strip('"').replace('""', '"')
        alias, i = f' AS "{name.replace(chr(34), chr(34) * 2)}"', i + 2
    options = ["READ_ONLY"]
    if i < len(toks):
        if toks[i][0] != "(" or toks[-1][0] != ")":
            raise SandboxRefusal(f"ATTACH: cannot read {' '.join(t for t, _ in toks[i:])!r}")
        options += _attach_options(toks[i + 1:-1])
    return f"ATTACH {exists}'{path.replace(chr(39), chr(39) * 2)}'{alias} ({', '.join(options)})"


def _attach_options(toks: list[tuple[str, str]]) -> list[str]:
    """Return the options of a read-only ATTACH to keep."""
    groups: list[list[str]] = [[]]
    for text, _ in toks:
        if text == ",":
            groups.append([])
        else:
            groups[-1].append(text)
    kept = []
    for group in groups:
        if not group:
            continue
        name = group[0].upper()
        value = " ".join(group[1:]).upper()
        if name in ("READ_ONLY", "READONLY") and (not value or value in _TRUE):
            continue
        if name == "TYPE" and len(group) == 2 and _NAME.match(group[1].strip("'\"")):
            kept.append(f"TYPE {group[1].strip(chr(39) + chr(34))}")
            continue
        if name in ("READ_WRITE", "READ_ONLY", "READONLY", "ACCESS_MODE"):
            raise SandboxRefusal(f"ATTACH ... ({' '.join(group)}) {_WRITES}; --allow-files "
                                 "attaches read-only")
        raise SandboxRefusal(f"ATTACH option {' '.join(group)!r} is not available with "
                             "--allow-files (READ_ONLY and TYPE are)")
    return kept


def _dir_entry(folder: Path) -> str:
    return str(Path(folder).resolve()) + os.sep


def _database_files(db: Path) -> list[Path]:
    return [db, *(db.with_name(db.name + suffix)
                  for suffix in (".wal", ".wal.checkpoint", ".wal.recovery"))]


def check_write_dir(folder: Path, db: Path) -> None:
    """Refuse a writes folder that holds the database, its WAL or temp folder, or a link to one."""
    label = f"--allow-writes {folder}"
    if not folder.is_dir():
        raise PersonahubError(f"{label}: no such folder (create it first)")
    real = folder.resolve()
    db_real = db.resolve()
    temp = db_real.with_name(db_real.name + ".tmp")
    if real == db_real.parent or real in db_real.parents or real == temp or temp in real.parents:
        raise PersonahubError(f"{label}: holds the database {db} (or its temp folder); give a "
                              "folder the database is not in")
    identities = set()
    for path in _database_files(db_real):
        try:
            info = path.stat()
        except OSError:
            continue
        identities.add((info.st_dev, info.st_ino))
    protected = (db_real.parent, temp)
    for entry in _walk(real):
        try:
            info = entry.stat()
        except OSError:
            continue
        target = entry.resolve()
        if (info.st_dev, info.st_ino) in identities or any(
                target == p or target in p.parents or p in target.parents or p == target
                for p in protected if entry.is_symlink()):
            raise PersonahubError(f"{label}: {entry} is a link to the database {db} or its "
                                  "folder; remove it or give another folder")


def _walk(root: Path) -> Iterable[Path]:
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in (*dirs, *files):
            yield Path(folder) / name


def _snapshot(db: Path, into: Path) -> Path:
    """Make a private copy of the database and WAL for the sandbox."""
    if not db.is_file():
        raise PersonahubError(f"--db {db}: no such database (run a scenario first)")
    into.mkdir(parents=True)
    copy = into / db.name
    try:
        shutil.copyfile(db, copy)
        wal = db.with_name(db.name + ".wal")
        if wal.is_file():
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
    except OSError as exc:
        raise PersonahubError(f"--allow-writes: cannot copy {db} to a private snapshot in "
                              f"{into.parent} ({exc.strerror or exc}); set TMPDIR to a folder "
                              "with room") from None
    return copy


#: DuckDB's hints after its error's first line: the candidates for an unknown name
_HINT = re.compile(r"^(?:Candidate bindings:[\s:]*(?P<columns>.+)|Did you mean (?P<name>.+)\?)$")


def _hint(lines: Sequence[str]) -> str:
    """DuckDB's candidate columns or table of an error, as the tail of its one line."""
    for line in lines:
        found = _HINT.match(line.strip())
        if found and found["columns"]:
            return f"; did you mean one of {found['columns'].strip()}?"
        if found and found["name"]:
            return f"; did you mean {found['name'].strip()}?"
    return ""


def refusal_text(exc: BaseException, access: FileAccess) -> str:
    """One line for a failed user statement, naming the way out when the sandbox refused it,
    with DuckDB's candidates where it named an unknown column or table."""
    lines = str(exc).splitlines()
    hint = _hint(lines[1:])
    text = (lines[0].rstrip("!") + hint if hint else lines[0]) if lines else type(exc).__name__
    if isinstance(exc, duckdb.PermissionException):
        if access.write_dir is not None:
            return (f"only files inside {access.write_dir} can be read or written "
                    "(--allow-writes)")
        if not access.read:
            return ("file access is disabled; use --allow-files to read other files or "
                    "--allow-writes DIR to read and write inside DIR")
    if "configuration has been locked" in text:
        name = re.search(r'option "+([^"]+)"+', text)
        what = f"setting {name.group(1)!r}" if name else "settings"
        return f"{what} cannot be changed here (SET, RESET and PRAGMA settings are locked)"
    return text


def referenced_columns(fragments: Iterable[str], columns: Sequence[str]) -> list[str]:
    """Return the columns SQL fragments may read: those named, or all when a fragment could reach more."""
    wanted = {c.lower() for c in columns}
    named: set[str] = set()
    for fragment in fragments:
        for text, kind in tokens(fragment):
            word = text.strip('"').lower()
            if kind == "operator" and ("*" in text or "#" in text):
                return list(columns)
            if kind in ("identifier", "keyword") and word in ("columns", "personas"):
                return list(columns)
            if kind in ("identifier", "keyword") and word in wanted:
                named.add(word)
    return [c for c in columns if c.lower() in named]


@contextmanager
def fragment_sandbox(tables: Mapping[str, pa.Table],
                     json_columns: Mapping[str, Sequence[str]] | None = None
                     ) -> Iterator[duckdb.DuckDBPyConnection]:
    """Return an in-memory connection without file system, each Arrow table a view: user conditions run
    here."""
    con = duckdb.connect(":memory:")
    try:
        lock_settings(con, no_files=True)
        for name, table in tables.items():
            con.register(f"_arrow_{name}", table)
            casts = [f'"{c}"::JSON AS "{c}"' for c in (json_columns or {}).get(name, ())
                     if c in table.column_names]
            select = f"* REPLACE ({', '.join(casts)})" if casts else "*"
            con.execute(f'CREATE TEMP VIEW "{name}" AS SELECT {select} FROM _arrow_{name}')
        yield con
    finally:
        con.close()
