"""Arrow types of exported items: content and solution as typed struct columns.

Content is one struct holding every exported kind's fields, each nullable: a column per kind
would leave many empty, and a dense union is neither readable by datasets nor writable to
Parquet. Types come from the kinds' pydantic schemas; a field whose values share no type is
written as JSON text.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterable, Mapping, Sequence

import pyarrow as pa
from pydantic import BaseModel

from personahub.tasks import Task
from personahub.tasks.synthesis_schemas import Solution

_SCALARS: dict[type, pa.DataType] = {str: pa.string(), int: pa.int64(), float: pa.float64(),
                                     bool: pa.bool_()}
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))




def annotation_type(annotation: object) -> pa.DataType | None:
    """Return the Arrow type of a pydantic annotation; None when it has no single one."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return annotation_type(args[0])
    if origin is typing.Literal:
        kinds = {type(a) for a in args}
        return _SCALARS.get(kinds.pop()) if len(kinds) == 1 else None
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return annotation_type(inner[0]) if len(inner) == 1 else None
    if origin in (list, tuple, Sequence, set, frozenset):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return None  # a fixed-length tuple of mixed types
        item = annotation_type(args[0]) if args else None
        return pa.list_(item) if item is not None else None
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return model_type(annotation)
        if annotation in _SCALARS:  # bool before int: a bool is an int
            return _SCALARS[annotation]
    return None


def model_type(model: type[BaseModel]) -> pa.StructType | None:
    """Return a pydantic model as an Arrow struct (fields by their alias, as content is stored)."""
    fields = []
    for name, info in model.model_fields.items():
        kind = annotation_type(info.annotation)
        if kind is None:
            return None
        fields.append(pa.field(info.alias or name, kind))
    return pa.struct(fields)


def task_models(task: Task, *, emission: bool) -> list[type[BaseModel]]:
    """Return the schemas a kind's stored content may follow (a multi-turn job's two shapes included)."""
    models: list[type[BaseModel]] = [task.schema]
    if not emission and task.synthesis is not None:
        models += [task.synthesis_schema(with_assistant=False),
                   task.synthesis_schema(with_assistant=True)]
    return list(dict.fromkeys(models))




def merge_types(a: pa.DataType | None, b: pa.DataType | None) -> pa.DataType | None:
    """One type both values fit (structs gain each other's fields), or None when they conflict.

    Null yields to anything; an int widens to a float.
    """
    if a is None or b is None:
        return None
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b) or a == b:
        return a
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        merged = {a.field(i).name: a.field(i).type for i in range(a.num_fields)}
        for i in range(b.num_fields):
            name, kind = b.field(i).name, b.field(i).type
            if name in merged:
                both = merge_types(merged[name], kind)
                if both is None:
                    return None
                merged[name] = both
            else:
                merged[name] = kind
        return pa.struct(list(merged.items()))
    if pa.types.is_list(a) and pa.types.is_list(b):
        item = merge_types(a.value_type, b.value_type)
        return pa.list_(item) if item is not None else None
    numbers = {pa.int64(), pa.float64()}
    if {a, b} == numbers:
        return pa.float64()
    return None


def _inferred(values: list[object]) -> pa.DataType | None:
    try:
        return pa.array(values).type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return None


def _is_usable(kind: pa.DataType) -> bool:
    """Whether Parquet and datasets take the type (no empty struct anywhere)."""
    if pa.types.is_struct(kind):
        return kind.num_fields > 0 and all(_is_usable(kind.field(i).type)
                                           for i in range(kind.num_fields))
    if pa.types.is_list(kind):
        return _is_usable(kind.value_type)
    return True


def content_type(schema_types: Iterable[pa.DataType | None],
                 contents: Sequence[Mapping[str, object]]) -> tuple[pa.DataType, list[str]]:
    """Return the content struct of an export, and the fields kept as JSON text.

    Each top-level field is typed on its own, so one untypeable field leaves the others structs.
    """
    present = {name for content in contents for name in content}
    fields: dict[str, pa.DataType | None] = {}
    for struct in schema_types:
        if struct is None:
            continue
        for i in range(struct.num_fields):
            name, kind = struct.field(i).name, struct.field(i).type
            if contents and name not in present:
                continue  # a shape no row has (a multi-turn job's other one)
            fields[name] = merge_types(fields[name], kind) if name in fields else kind
    for content in contents:
        for name in content:
            fields.setdefault(name, pa.null())
    as_json: list[str] = []
    result = []
    for name, kind in fields.items():
        seen = [c.get(name) for c in contents]
        typed = merge_types(kind, _inferred(seen)) if any(v is not None for v in seen) else kind
        if typed is None or pa.types.is_null(typed) or not _is_usable(typed):
            if typed is None or any(v is not None for v in seen):
                as_json.append(name)
            typed = pa.string()
        result.append((name, typed))
    return pa.struct(result), as_json


def content_array(contents: Sequence[Mapping[str, object]], kind: pa.DataType,
                  as_json: Sequence[str]) -> pa.Array:
    """Return the contents as an Arrow array of the type (JSON-text fields as text)."""
    if as_json:
        contents = [{k: (json.dumps(v, ensure_ascii=False) if k in as_json and v is not None
                         else v) for k, v in c.items()} for c in contents]
    return pa.array([dict(c) for c in contents], type=kind)


SOLUTION_TYPE = model_type(Solution)
