"""Arrow types of exported content (``analysis/export_arrow.py``): from the kinds' schemas, widened
by what the rows hold, with a field that cannot share one type kept as JSON text."""

from __future__ import annotations

from typing import Annotated, Literal

import pyarrow as pa
from pydantic import BaseModel, Field

from personahub.analysis.export_arrow import (
    annotation_type,
    content_array,
    content_type,
    merge_types,
    model_type,
    task_models,
)
from personahub.tasks import stored_task


class Arg(BaseModel):
    name: Annotated[str, Field(max_length=5)]
    weight: float


class Spec(BaseModel):
    title: str
    tone: Literal["calm", "loud"] = "calm"
    args: list[Arg]
    tags: tuple[str, ...] = ()
    count: int | None = None
    returns: str = Field(alias="return")


def test_schema_types() -> None:
    assert annotation_type(Literal[1, 2]) == pa.int64()
    assert annotation_type(Literal["a", 1]) is None
    assert annotation_type(dict[str, int]) is None
    assert annotation_type(bool) == pa.bool_()
    assert model_type(Spec) == pa.struct([
        ("title", pa.string()), ("tone", pa.string()),
        ("args", pa.list_(pa.struct([("name", pa.string()), ("weight", pa.float64())]))),
        ("tags", pa.list_(pa.string())), ("count", pa.int64()), ("return", pa.string())])


def test_merge() -> None:
    a = pa.struct([("x", pa.string()), ("turns", pa.list_(pa.struct([("line", pa.string())])))])
    b = pa.struct([("turns", pa.list_(pa.struct([("user", pa.string())])))])
    assert merge_types(a, b) == pa.struct([
        ("x", pa.string()),
        ("turns", pa.list_(pa.struct([("line", pa.string()), ("user", pa.string())])))])
    assert merge_types(pa.int64(), pa.float64()) == pa.float64()
    assert merge_types(pa.null(), pa.list_(pa.string())) == pa.list_(pa.string())
    assert merge_types(pa.string(), pa.list_(pa.string())) is None


def test_empty_values_keep_the_schema_type_and_conflicts_become_json() -> None:
    rows = [{"title": "a", "args": [], "tags": [], "return": "x", "extra": 1},
            {"title": "b", "args": [{"name": "n", "weight": 1}], "tags": [], "return": "y",
             "extra": [1, 2], "speaker": "p1"}]
    kind, as_json = content_type([model_type(Spec)], rows)
    fields = {f.name: f.type for f in kind}
    assert fields["tags"] == pa.list_(pa.string())  # every list empty: typed by the schema
    assert fields["args"].value_type.field("weight").type == pa.float64()  # 1 widened
    assert fields["speaker"] == pa.string()  # a field the schema does not name
    assert "tone" not in fields and "count" not in fields  # schema fields no row has
    assert as_json == ["extra"] and fields["extra"] == pa.string()
    array = content_array(rows, kind, as_json)
    assert array.to_pylist()[1]["extra"] == "[1, 2]"
    assert array.to_pylist()[0]["extra"] == "1"


def test_multi_turn_jobs_have_both_shapes_in_their_schemas() -> None:
    task = stored_task("multi_turn", emission=False)
    assert task is not None
    names = {f.name for model in task_models(task, emission=False)
             for f in model_type(model) or []}
    assert {"user_turns", "turns"} <= names
