"""Bounded by construction: every string and array a model fills is bounded so that a whole answer fits
in the call's token limit, as grammar-constrained servers force a schema's shape but not an end.
Three characters per token is a floor measured with SmolLM2 (bench/bench_chars_per_token.py).
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from personahub.core.text_bounds import DIGITS, QUESTION, SENTENCE, SHORT, Density, Shape, Share

M = TypeVar("M", bound=BaseModel)
__all__ = ["DIGITS", "QUESTION", "SENTENCE", "SHORT", "Density", "Shape", "Share", "bounded", "clip",
           "estimate_tokens", "pattern_for", "plan", "unbounded", "with_bound", "without_bound"]

CHARS_PER_TOKEN = 3.0  # a floor for English text
JSON_CHARS_PER_TOKEN = 2.0
BUDGET_SHARE = 0.9  # the rest is room for whitespace
DEFAULT_MAX_ITEMS = 4
MIN_STRING_CHARS = 8  # no string bound below this (nor below the field's own minimum)

_NONE = type(None)


@dataclass(frozen=True)
class Plan:
    """How a schema is sized for a budget."""

    max_tokens: int
    slots: float
    fixed_chars: int
    string_chars: int

    @property
    def per_slot(self) -> int:
        return int(self.string_chars / max(self.slots, 1.0))


def estimate_tokens(value: object) -> int:
    """Tokens an answer is counted at (the runaway fault cuts by it too)."""
    content, structure = json_chars(value)
    return math.ceil(content / CHARS_PER_TOKEN + structure / JSON_CHARS_PER_TOKEN)


def json_chars(value: object, *, key: bool = False) -> tuple[int, int]:
    if isinstance(value, str):
        return (0, len(value) + 3) if key else (len(value), 2)
    if isinstance(value, dict):
        content, structure = 0, 2 + max(0, len(value) - 1)
        for name, item in value.items():
            _, key_chars = json_chars(str(name), key=True)
            inner = json_chars(item)
            content, structure = content + inner[0], structure + key_chars + inner[1]
        return content, structure
    if isinstance(value, list):
        content, structure = 0, 2 + max(0, len(value) - 1)
        for item in value:
            inner = json_chars(item)
            content, structure = content + inner[0], structure + inner[1]
        return content, structure
    return 0, len("null" if value is None else str(value).lower())


def clip(text: str, max_len: int, min_len: int = 0) -> str:
    """Text cut at a word boundary, or hard when that leaves too little."""
    if len(text) <= max_len:
        return text
    cut = text[:max_len]
    if text[max_len].isspace():
        return cut.rstrip()
    boundary = cut.rstrip().rfind(" ")
    if boundary >= max(min_len, max_len // 2, 1):
        return cut[:boundary].rstrip(" ,;:-")
    return cut


def _unwrap(annotation: object) -> tuple[Any, list[object], bool]:
    metadata: list[object] = []
    while get_origin(annotation) is Annotated:
        annotation, *extra = get_args(annotation)
        metadata.extend(extra)
    optional = False
    if get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not _NONE]
        optional = len(members) < len(get_args(annotation))
        if len(members) == 1:
            inner, more, _ = _unwrap(members[0])
            return inner, metadata + more, optional
    return annotation, metadata, optional


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_list(annotation: object) -> bool:
    return get_origin(annotation) in (list, typing.List) or annotation is list  # noqa: UP006


def _limit(metadata: list[object], name: str) -> int | None:
    for item in metadata:
        value = getattr(item, name, None)
        if isinstance(value, int):
            return value
    return None


def _item_type(annotation: object) -> object:
    args = get_args(annotation)
    return args[0] if args else Any


def _weight(metadata: list[object]) -> float:
    return next((m.weight for m in metadata if isinstance(m, Share)), 1.0)


def _max_items(metadata: list[object]) -> int:
    return max(1, _limit(metadata, "max_length") or DEFAULT_MAX_ITEMS)


def _fixed_value_chars(annotation: object) -> int:
    if get_origin(annotation) is Literal:
        return max((len(str(a)) + 2 for a in get_args(annotation)), default=4)
    if annotation is bool:
        return 5
    if annotation in (int, float):
        return 8
    return 8


def _measure(annotation: object, metadata: list[object]) -> tuple[float, int]:
    kind, more, _ = _unwrap(annotation)
    metadata = metadata + more
    if kind is str:
        return _weight(metadata), 2
    if _is_model(kind):
        return _measure_model(kind)
    if _is_list(kind):
        count = _max_items(metadata)
        slots, fixed = _measure(_item_type(kind), [])
        return slots * count, 2 + count * (fixed + 1)
    return 0.0, _fixed_value_chars(kind)


@lru_cache(maxsize=512)
def _measure_model(model: type[BaseModel]) -> tuple[float, int]:
    slots, fixed = 0.0, 2
    for name, info in model.model_fields.items():
        key = info.alias or name
        inner_slots, inner_fixed = _measure(info.annotation, list(info.metadata))
        slots, fixed = slots + inner_slots, fixed + len(key) + 4 + inner_fixed
    return slots, fixed


def plan(schema: type[BaseModel], max_tokens: int) -> Plan:
    """How a schema's strings share the token limit."""
    slots, fixed = _measure_model(schema)
    usable = max_tokens * BUDGET_SHARE - fixed / JSON_CHARS_PER_TOKEN
    return Plan(max_tokens, slots, fixed, max(0, int(usable * CHARS_PER_TOKEN)))


def _density(metadata: list[object]) -> float:
    return next((m.chars_per_token for m in metadata if isinstance(m, Density)), CHARS_PER_TOKEN)


def _string_bound(per_slot: int, metadata: list[object]) -> int:
    own_max, own_min = _limit(metadata, "max_length"), _limit(metadata, "min_length") or 0
    chars = per_slot * _weight(metadata) * min(1.0, _density(metadata) / CHARS_PER_TOKEN)
    bound = max(int(chars), MIN_STRING_CHARS, own_min, 1)
    return min(bound, own_max) if own_max is not None else bound


# a JSON string character needing no escape (llama.cpp takes "." as any character)
_PLAIN_CHAR = r'[^"\\\x00-\x1f]'


def pattern_for(shape: Shape, min_len: int, max_len: int) -> str:
    """Return the pattern of a shaped string; the bound is inside it because llama.cpp's grammar converters
    ignore a maximum length beside a pattern.
    """
    ends = int(bool(shape.first)) + int(bool(shape.last))
    low, high = max(0, min_len - ends), max(1, max_len - ends)
    return f"^{shape.first}{_PLAIN_CHAR}{{{min(low, high)},{high}}}{shape.last}$"


def without_bound(pattern: str) -> str:
    head, plain, tail = pattern.partition(_PLAIN_CHAR + "{")
    if not plain:
        return pattern
    return head + _PLAIN_CHAR + tail[tail.index("}") + 1:]


def with_bound(pattern: str, cut: int) -> str:
    head, plain, tail = pattern.partition(_PLAIN_CHAR + "{")
    if not plain or cut <= 0:
        return pattern
    quantifier, rest = tail.split("}", 1)
    low, high = (int(n) for n in quantifier.split(","))
    high = max(1, high - cut)
    return f"{head}{_PLAIN_CHAR}{{{min(low, high)},{high}}}{rest}"


def _string_extras(metadata: list[object], bound: int) -> list[FieldInfo]:
    extras: list[FieldInfo] = [Field(max_length=bound)]
    shape = next((m for m in metadata if isinstance(m, Shape)), None)
    if shape is not None:
        pattern = pattern_for(shape, _limit(metadata, "min_length") or 0, bound)
        extras.append(Field(json_schema_extra={"pattern": pattern}))
    return extras


def _bound_type(annotation: object, metadata: list[object], per_slot: int
                ) -> tuple[Any, int | None, list[FieldInfo]]:
    kind, more, optional = _unwrap(annotation)
    metadata = metadata + more
    extras: list[FieldInfo] = []
    if kind is str:
        out: Any = str
        chars = _string_bound(per_slot, metadata)
        bound: int | None = chars
        extras = _string_extras(metadata, chars)
    elif _is_model(kind):
        out, bound = _bounded_model(kind, per_slot), None
    elif _is_list(kind):
        item, item_meta, item_optional = _unwrap(_item_type(kind))
        inner, inner_bound, extra = _bound_type(item, item_meta, per_slot)
        if item_meta or extra:
            inner = Annotated[(inner, *item_meta, *extra)]
        if item_optional:
            inner = inner | None
        out, bound = list[inner], _max_items(metadata)  # type: ignore[valid-type]
        extras = [Field(max_length=bound)]
    else:
        return annotation, None, []
    return (out | None if optional else out), bound, extras


@lru_cache(maxsize=1024)
def _bounded_model(model: type[BaseModel], per_slot: int) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation, bound, extras = _bound_type(info.annotation, list(info.metadata), per_slot)
        if bound is None and annotation is info.annotation:
            continue
        fields[name] = (annotation, FieldInfo.merge_field_infos(info, *extras))
    if not fields:
        return model
    return create_model(model.__name__, __base__=model, __module__=model.__module__,
                        __doc__=_own_copy(model.__doc__), **fields)


def _own_copy(doc: str | None) -> str | None:
    """Return the docstring as a string object of its own: cloudpickle (Ray) drops class-dict entries shared
    with the base class, so pydantic's field descriptions (the prompt) changed on workers.
    """
    return None if doc is None else doc.encode().decode()


@lru_cache(maxsize=1024)
def bounded(schema: type[M], max_tokens: int) -> type[M]:
    """Return the schema bounded for a token limit (cached): a same-named subclass, or the schema itself."""
    return _bounded_model(schema, plan(schema, max_tokens).per_slot)  # type: ignore[return-value]


def unbounded(value: BaseModel, schema: type[M]) -> M:
    """Return the value as the schema's own class: bounded classes are made at run time and do not pickle."""
    if type(value) is schema:
        return value
    return schema.model_validate(value.model_dump(by_alias=True))
