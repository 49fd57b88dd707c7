"""Bounds on what one request may ask of the loopback server, checked before any work: the offline
engine does what a request says (a dimension of 10^9 built a 4 GB vector). Checks use an explicit
stack, so hostile nesting cannot exhaust Python's.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

SCHEMA_LISTS = ("anyOf", "oneOf", "allOf")

# open connections (above every benchmark's 256), head and idle seconds (beyond clients' expiry)
MAX_CONNECTIONS = 1024
HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 30.0


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (bounds are inclusive)."""

    depth: int = 64
    nodes: int = 200_000
    max_tokens: int = 262_144
    token_budget: int = 1_048_576  # choices times the token limit (a runaway answer writes all of it)
    dimensions: int = 4_096
    inputs: int = 2_048
    vector_values: int = 1_048_576
    tools: int = 128
    schema_nodes: int = 10_000
    items: int = 10_000
    string_length: int = 65_536
    answer_values: int = 100_000


LIMITS = Limits()


class Problem(Exception):
    """A request outside the bounds: the message and the parameter at fault."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def check_body(value: object, limits: Limits = LIMITS) -> None:
    """Refuse a body nesting too deep or holding too many values."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    count = 1
    while stack:
        node, depth = stack.pop()
        children = node.values() if type(node) is dict else node
        count += len(children)
        if count > limits.nodes:
            raise Problem(f"the body holds more than {limits.nodes} JSON values")
        inner = [c for c in children if type(c) is dict or type(c) is list]
        if inner and depth >= limits.depth:
            raise Problem(f"the body nests deeper than {limits.depth} levels")
        stack.extend((c, depth + 1) for c in inner)


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def check_chat(max_tokens: int | None, choices: int, tools: object,
               limits: Limits = LIMITS) -> None:
    """Refuse a token limit, a choices-times-tokens product or a tools list out of bounds."""
    if max_tokens is not None and max_tokens > limits.max_tokens:
        raise Problem(f"max_tokens {max_tokens} is above this server's bound of "
                      f"{limits.max_tokens}", "max_tokens")
    if choices * (max_tokens or 4_096) > limits.token_budget:
        raise Problem(f"n x max_tokens is above this server's bound of {limits.token_budget} "
                      "tokens", "n")
    if tools is None:
        return
    if not isinstance(tools, list) or not all(isinstance(t, Mapping) for t in tools):
        raise Problem("'tools' must be an array of tool objects", "tools")
    if len(tools) > limits.tools:
        raise Problem(f"'tools' holds {len(tools)} tools; this server takes {limits.tools} at most",
                      "tools")
    for i, tool in enumerate(tools):
        function = tool.get("function", tool)
        if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
            raise Problem(f"tools[{i}] needs a function with a name", "tools")
        params = function.get("parameters")
        if params is not None:
            check_schema(params, f"tools[{i}].function.parameters", limits)


def check_embeddings(request: Mapping[str, Any], limits: Limits = LIMITS) -> list[str]:
    """Return the request's input texts, or the problem."""
    raw = request.get("input")
    if isinstance(raw, str):
        texts = [raw]
    elif isinstance(raw, list) and raw and all(
            isinstance(t, str) or is_int(t) or (isinstance(t, list) and all(map(is_int, t)))
            for t in raw):
        texts = [str(t) for t in raw]
    else:
        raise Problem("'input' must be a string, an array of strings or an array of token "
                      "arrays, and not empty", "input")
    if len(texts) > limits.inputs:
        raise Problem(f"'input' holds {len(texts)} items; this server takes {limits.inputs} at "
                      "most", "input")
    dimensions = request.get("dimensions")
    if dimensions is not None and (not is_int(dimensions)
                                   or not 8 <= dimensions <= limits.dimensions):
        raise Problem(f"'dimensions' must be an integer from 8 to {limits.dimensions}, got "
                      f"{dimensions!r}", "dimensions")
    if len(texts) * (dimensions or 64) > limits.vector_values:
        raise Problem(f"inputs x dimensions is above this server's bound of "
                      f"{limits.vector_values} values", "input")
    return texts


def _count(value: object) -> int | None:
    """Return a non-negative integral count, else None."""
    if is_int(value) and value >= 0:
        return int(value)
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def _number(value: object) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _resolve(ref: str, root: Mapping[str, object], where: str) -> Mapping[str, Any] | None:
    """Return the node a local $ref points at (None: read as {})."""
    if not ref.startswith("#/"):
        return None
    node: object = root
    for part in ref[2:].split("/"):
        if not isinstance(node, Mapping):
            raise Problem(f"{where}: $ref {ref!r} passes through a value that is not an object")
        node = node.get(part)
        if node is None:
            return None
    if not isinstance(node, Mapping):
        raise Problem(f"{where}: $ref {ref!r} points at a value that is not a schema object")
    return node


def _check_keywords(node: Mapping[str, Any], where: str, limits: Limits) -> None:
    """Check the keywords the engine reads have the right types and sizes."""
    kind = node.get("type")
    if kind is not None and not isinstance(kind, str) and not (
            isinstance(kind, list) and all(isinstance(k, str) for k in kind)):
        raise Problem(f"{where}: 'type' must be a string or an array of strings")
    if "properties" in node and not (isinstance(node["properties"], Mapping) and all(
            isinstance(s, Mapping) for s in node["properties"].values())):
        raise Problem(f"{where}: 'properties' must map names to schema objects")
    items = node.get("items")
    if items and not isinstance(items, Mapping):
        raise Problem(f"{where}: 'items' must be a schema object")
    if "enum" in node and not isinstance(node["enum"], list):
        raise Problem(f"{where}: 'enum' must be an array")
    for key in SCHEMA_LISTS:
        if key in node and not (isinstance(node[key], list)
                                and all(isinstance(o, Mapping) for o in node[key])):
            raise Problem(f"{where}: '{key}' must be an array of schema objects")
    if "$ref" in node and not isinstance(node["$ref"], str):
        raise Problem(f"{where}: '$ref' must be a string")
    for key, bound in (("minItems", limits.items), ("maxItems", limits.items),
                       ("minLength", limits.string_length), ("maxLength", limits.string_length)):
        if key in node:
            count = _count(node[key])
            if count is None:
                raise Problem(f"{where}: '{key}' must be a non-negative integer")
            if count > bound:
                raise Problem(f"{where}: '{key}' {count} is above this server's bound of {bound}")
    for key in ("minimum", "maximum"):
        if key in node and not _number(node[key]):
            raise Problem(f"{where}: '{key}' must be a finite number")
    if _number(node.get("minimum")) and _number(node.get("maximum")) \
            and node["minimum"] > node["maximum"]:
        raise Problem(f"{where}: 'minimum' is above 'maximum'")


_CHECKED: dict[tuple[str, str, Limits], int | Problem] = {}
_CHECKED_SIZE = 256
_CHECKED_LOCK = threading.Lock()


def check_schema(schema: object, where: str, limits: Limits = LIMITS) -> int:
    """Check the schema by walking it, the walk remembered for recent schemas (a lookup costs a tenth of a
    check)."""
    if not isinstance(schema, dict):
        raise Problem(f"{where}: a schema must be an object")
    try:
        key = (json.dumps(schema, separators=(",", ":")), where, limits)
    except (TypeError, ValueError):  # not JSON data: check it afresh
        return walk_schema(schema, where, limits)
    found = _CHECKED.get(key)
    if found is None:
        try:
            found = walk_schema(schema, where, limits)
        except Problem as exc:
            found = exc
        with _CHECKED_LOCK:
            if len(_CHECKED) >= _CHECKED_SIZE:
                _CHECKED.pop(next(iter(_CHECKED)), None)
            _CHECKED[key] = found
    if isinstance(found, Problem):
        raise Problem(str(found), found.param)
    return found


def walk_schema(schema: object, where: str, limits: Limits = LIMITS) -> int:
    """Refuse a schema the engine cannot fill within the bounds; returns the most values an answer holds."""
    if not isinstance(schema, Mapping):
        raise Problem(f"{where}: a schema must be an object")
    root = schema
    nodes = 0
    sizes: dict[int, int] = {}
    cap = limits.answer_values + 1
    stack: list[tuple[Mapping[str, Any], str, tuple[int, ...], int, bool]] = [
        (schema, where, (), 1, False)]
    while stack:
        node, path, refs, depth, done = stack.pop()
        if done:
            sizes[id(node)] = _size(node, root, sizes, cap)
            continue
        if id(node) in sizes:
            continue
        nodes += 1
        if nodes > limits.schema_nodes:
            raise Problem(f"{where}: the schema has more than {limits.schema_nodes} nodes")
        if depth > limits.depth:
            raise Problem(f"{where}: the schema nests deeper than {limits.depth} levels")
        _check_keywords(node, path, limits)
        stack.append((node, path, refs, depth, True))
        for child, child_path, child_refs in _children(node, path, refs, root):
            stack.append((child, child_path, child_refs, depth + 1, False))
    total = sizes.get(id(schema), cap)
    if total > limits.answer_values:
        raise Problem(f"{where}: an answer to this schema holds more than {limits.answer_values} "
                      "values (lower minItems/maxItems)")
    return total


def _children(node: Mapping[str, Any], path: str, refs: tuple[int, ...],
              root: Mapping[str, Any]) -> list[tuple[Mapping[str, Any], str, tuple[int, ...]]]:
    """Return the sub-schemas the engine fills for a node, with paths and refs followed."""
    out: list[tuple[Mapping[str, Any], str, tuple[int, ...]]] = []
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = _resolve(ref, root, path)
        if target is not None:
            if id(target) in refs or target is node:
                raise Problem(f"{path}: a recursive $ref {ref!r} (the offline server fills "
                              "every property, so it would never end)")
            out.append((target, f"{path}.$ref", (*refs, id(target))))
    for key in SCHEMA_LISTS:
        for i, option in enumerate(node.get(key) or ()):
            out.append((option, f"{path}.{key}[{i}]", refs))
    for name, sub in (node.get("properties") or {}).items():
        out.append((sub, f"{path}.properties.{name}", refs))
    if isinstance(node.get("items"), Mapping):
        out.append((node["items"], f"{path}.items", refs))
    return out


def _size(node: Mapping[str, Any], root: Mapping[str, Any], sizes: Mapping[int, int],
          cap: int) -> int:
    """Values an answer to a node holds at most, capped."""
    ref = node.get("$ref")
    target = _resolve(ref, root, "") if isinstance(ref, str) else None
    if target is not None:
        return min(cap, sizes.get(id(target), cap))
    total = 1
    for sub in (node.get("properties") or {}).values():
        total = min(cap, total + sizes.get(id(sub), cap))
    items = node.get("items")
    kind = node.get("type")
    if isinstance(items, Mapping) or kind == "array" or (isinstance(kind, list) and "array" in kind):
        low = _count(node.get("minItems", 1)) or 0
        high = _count(node.get("maxItems", max(low, 3)))
        count = max(low, min(high if high is not None else low, low + 2))
        each = sizes.get(id(items), cap) if isinstance(items, Mapping) else 1
        total = min(cap, total + count * each)
    options = [sizes.get(id(o), cap) for key in SCHEMA_LISTS for o in node.get(key) or ()]
    # the engine merges the node with one option: count the largest
    return min(cap, total + max(options, default=0))


def check_answer(schemas: Sequence[tuple[object, str]], choices: int,
                 limits: Limits = LIMITS) -> None:
    """Refuse answers that would hold too many values."""
    most = max((check_schema(s, where, limits) for s, where in schemas if s is not None),
               default=1)
    if most * choices > limits.answer_values:
        raise Problem(f"n x the values of one answer is above this server's bound of "
                      f"{limits.answer_values}", "n")
