"""Tests for personas.importers: every fixture is written into tmp_path by the test itself."""

from __future__ import annotations

import csv
import gzip
import json
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from personahub.core.errors import PersonaFileError
from personahub.personas import importers
from personahub.personas.importers import (
    FORMATS,
    ImportStats,
    detect_format,
    iter_persona_batches,
    iter_personas,
)

SHARED_SAMPLE = Path(__file__).resolve().parents[3] / "shared/data/personahub_tool_sample.jsonl"


def write_lines(path: Path, lines: list[str | dict]) -> Path:
    """Write JSONL; dicts are encoded, strings are written verbatim (for broken lines)."""
    text = "".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines)
    path.write_text(text, encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


# --------------------------------------------------------------------------- happy paths


def test_personahub_provenance_counts_physical_lines(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "persona.jsonl",
        [{"persona": "A nurse in Lagos"}, "", "   ", {"persona": "  A   retired  pilot "}],
    )
    stats = ImportStats()
    personas = list(iter_personas(path, fmt="personahub", stats=stats))
    assert [p.text for p in personas] == ["A nurse in Lagos", "A retired pilot"]
    assert [p.source_ref for p in personas] == ["line 1", "line 4"]
    assert all(p.source == str(path) and p.hop == 0 for p in personas)
    assert personas[0].attributes == {}
    assert (stats.read, stats.imported, stats.bad) == (2, 2, 0)


def test_source_is_the_path_as_given_or_the_override(tmp_path: Path, monkeypatch) -> None:
    write_lines(tmp_path / "p.jsonl", [{"persona": "A chef"}])
    monkeypatch.chdir(tmp_path)
    assert next(iter_personas("p.jsonl")).source == "p.jsonl"
    assert next(iter_personas("p.jsonl", source="hub-v1")).source == "hub-v1"


def test_personahub_synth_keeps_task_not_synthesized_text(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "tool.jsonl",
        [
            {
                "input persona": "A marine biologist",
                "synthesized text": '{"name": "tide api"}',
                "description": "tool development",
            },
            {"input persona": "A jazz drummer", "synthesized text": "x", "description": None},
        ],
    )
    first, second = iter_personas(path, fmt="personahub-synth")
    assert first.text == "A marine biologist"
    assert first.attributes == {"task": "tool development"}
    assert second.attributes == {}
    assert second.source_ref == "line 2"


def test_finepersonas_labels_list_or_json_string(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "fine.jsonl",
        [
            {"id": "<urn:uuid:1>", "persona": "A soil chemist", "labels": ["Science", "Farming"]},
            {"id": 7, "persona": "A tax lawyer", "labels": '["Law", "Finance"]'},
            {"id": 8, "persona": "A poet", "labels": None},
        ],
    )
    personas = list(iter_personas(path, fmt="finepersonas"))
    assert personas[0].attributes == {"source_id": "<urn:uuid:1>", "labels": ["Science", "Farming"]}
    assert personas[1].attributes == {"source_id": 7, "labels": ["Law", "Finance"]}
    assert personas[2].attributes == {"source_id": 8}


def test_finepersonas_bad_labels_is_a_bad_record(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "fine.jsonl",
        [
            {"id": 1, "persona": "A poet", "labels": "[unclosed"},
            {"id": 2, "persona": "A baker", "labels": {"a": 1}},
        ],
    )
    with pytest.raises(PersonaFileError) as info:
        list(iter_personas(path, fmt="finepersonas"))
    assert info.value.line == 1
    assert "labels" in info.value.reason
    stats = ImportStats()
    assert list(iter_personas(path, fmt="finepersonas", skip_bad=True, stats=stats)) == []
    assert stats.bad_examples[1] == f'{path}:2: field "labels" is object, not a list'


def test_attributes_csv_gives_natural_types(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "nemotron.csv",
        [
            ["uuid", "persona", "age", "sex", "occupation", "zipcode", "height", "city"],
            [
                "u1",
                "A welder who coaches\nlittle league",
                "34",
                "Male",
                "welder",
                "02139",
                "1.8",
                "",
            ],
            ["u2", "A retired teacher", "71", "Female", "", "10001", "1.62", "Boston"],
        ],
    )
    first, second = iter_personas(path, fmt="attributes")
    assert first.text == "A welder who coaches little league"
    assert first.attributes == {
        "uuid": "u1",
        "age": 34,
        "age_group": "30-49",  # derived; the age column stays
        "sex": "male",  # a canonical column: normalised to its slug
        "occupation": "welder",
        "zipcode": "02139",  # leading zero: an identifier, not a number
        "height": 1.8,
    }
    assert type(first.attributes["age"]) is int
    # CSV refs are file lines: header is line 1, the quoted newline makes row 1 span lines 2-3
    assert (first.source_ref, second.source_ref) == ("line 2", "line 4")
    assert second.attributes["city"] == "Boston" and "occupation" not in second.attributes


def test_attributes_parquet_keeps_arrow_types_and_drops_nulls(tmp_path: Path) -> None:
    path = tmp_path / "nemotron.parquet"
    table = pa.table(
        {
            "persona": ["A midwife", "A glassblower", "A ferry captain"],
            "age": pa.array([29, None, 58], pa.int64()),
            "country": ["Kenya", "Italy", None],
            "skills": [["triage"], [], None],
        }
    )
    pq.write_table(table, path, row_group_size=2)
    stats = ImportStats()
    personas = list(iter_personas(path, fmt="attributes", stats=stats))
    assert [p.source_ref for p in personas] == ["row 1", "row 2", "row 3"]
    assert personas[0].attributes == {"age": 29, "age_group": "18-29", "country": "Kenya",
                                      "skills": ["triage"]}
    assert personas[1].attributes == {"country": "Italy", "skills": []}
    assert personas[2].attributes == {"age": 58, "age_group": "50-64"}
    assert stats.imported == 3


def test_plain_jsonl_text_field_fallback_and_explicit_column(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "mixed.jsonl",
        [{"text": "A beekeeper", "lang": "en", "n": 3, "gone": None}],
    )
    (persona,) = iter_personas(path, fmt="jsonl")
    assert persona.text == "A beekeeper"
    assert persona.attributes == {"lang": "en", "n": 3}
    other = write_lines(tmp_path / "desc.jsonl", [{"desc": "A cartographer", "persona": "x"}])
    (persona,) = iter_personas(other, fmt="jsonl", text_column="desc")
    assert persona.text == "A cartographer"
    assert persona.attributes == {"persona": "x"}


def test_plain_csv_keeps_strings_and_honours_text_column(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "people.csv",
        [["id", "description", "age"], ["1", "A ranger", "40"], ["2", "A florist", ""]],
    )
    personas = list(iter_personas(path, fmt="csv", text_column="description"))
    assert [p.text for p in personas] == ["A ranger", "A florist"]
    assert personas[0].attributes == {"id": "1", "age": "40"}
    assert personas[1].attributes == {"id": "2"}
    assert [p.source_ref for p in personas] == ["line 2", "line 3"]


def test_plain_parquet_defaults_to_text_column(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"text": ["A mason"], "score": [0.5]}), path)
    (persona,) = iter_personas(path, fmt="parquet")
    assert persona.text == "A mason"
    assert persona.attributes == {"score": 0.5}
    assert persona.source_ref == "row 1"


def test_duplicate_texts_are_yielded_and_counted(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "dup.jsonl", [{"persona": "A potter"}, {"persona": "a  POTTER"}])
    stats = ImportStats()
    first, second = iter_personas(path, stats=stats)
    assert first.persona_id == second.persona_id
    assert stats.imported == 2


def test_formats_describes_every_format() -> None:
    expected = {"auto", "personahub", "personahub-synth", "finepersonas", "attributes"}
    assert expected | {"jsonl", "csv", "parquet"} == set(FORMATS)
    assert all(isinstance(text, str) and text and "\n" not in text for text in FORMATS.values())


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("filename", "first", "expected"),
    [
        ("a.jsonl", {"persona": "A"}, "personahub"),
        (
            "a.json",
            {"input persona": "A", "synthesized text": "t", "description": "d"},
            "personahub-synth",
        ),
        ("a.ndjson", {"id": 1, "persona": "A", "labels": "[]"}, "finepersonas"),
        ("a.jsonl", {"persona": "A", "lang": "en"}, "jsonl"),
        ("a.jsonl", {"text": "A"}, "jsonl"),
    ],
)
def test_detect_jsonl_family_by_keys(
    tmp_path: Path, filename: str, first: dict, expected: str
) -> None:
    path = write_lines(tmp_path / filename, ["", "{broken", first, {"other": 1}])
    assert detect_format(path) == expected


def test_detect_tables(tmp_path: Path) -> None:
    nemotron = write_csv(tmp_path / "n.csv", [["persona", "age", "country"], ["A", "3", "US"]])
    plain = write_csv(tmp_path / "p.csv", [["text", "age"], ["A", "3"]])
    pq.write_table(pa.table({"persona": ["A"], "occupation": ["x"]}), tmp_path / "n.parquet")
    pq.write_table(
        pa.table({"id": [1], "persona": ["A"], "labels": ["[]"]}), tmp_path / "f.parquet"
    )
    pq.write_table(pa.table({"persona": ["A"]}), tmp_path / "p.parquet")
    assert detect_format(nemotron) == "attributes"
    assert detect_format(plain) == "csv"
    assert detect_format(tmp_path / "n.parquet") == "attributes"
    assert detect_format(tmp_path / "f.parquet") == "finepersonas"
    assert detect_format(tmp_path / "p.parquet") == "parquet"


def test_auto_import_uses_detected_format(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "synth.jsonl",
        [{"input persona": "A glazier", "synthesized text": "long", "description": "math"}],
    )
    (persona,) = iter_personas(path)
    assert persona.attributes == {"task": "math"}
    pq.write_table(
        pa.table({"id": [5], "persona": ["A"], "labels": ['["x"]']}), tmp_path / "fine.parquet"
    )
    (persona,) = iter_personas(tmp_path / "fine.parquet")
    assert persona.attributes == {"source_id": 5, "labels": ["x"]}


def test_unknown_extension_needs_explicit_format(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "personas.txt", [{"persona": "A tiler"}])
    with pytest.raises(PersonaFileError) as info:
        detect_format(path)
    assert info.value.line is None and "personahub-synth" in info.value.reason
    assert next(iter_personas(path, fmt="personahub")).text == "A tiler"


# --------------------------------------------------------------------------- bad records


def test_malformed_line_names_file_line_and_reason(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "p.jsonl", [{"persona": "A"}, "", '{"persona": "B" "x": 1}', {"persona": "C"}]
    )
    with pytest.raises(PersonaFileError) as info:
        list(iter_personas(path, fmt="personahub"))
    assert str(info.value) == f"{path}:3: invalid JSON (Expecting ',' delimiter at column 17)"
    assert (info.value.path, info.value.line) == (str(path), 3)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[1, 2]", "expected a JSON object, got array"),
        ('{"name": "A"}', 'missing field "persona"'),
        ('{"persona": ""}', 'field "persona" is empty'),
        ('{"persona": "  \\t "}', 'field "persona" is empty'),
        ('{"persona": null}', 'field "persona" is null'),
        ('{"persona": 12}', 'field "persona" is number, not a string'),
        ('{"persona": ["A"]}', 'field "persona" is array, not a string'),
    ],
)
def test_bad_record_reasons(tmp_path: Path, line: str, reason: str) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"persona": "ok"}, line])
    with pytest.raises(PersonaFileError) as info:
        list(iter_personas(path, fmt="personahub"))
    assert (info.value.line, info.value.reason) == (2, reason)


UNUSUAL_LINES = [
    '{"persona": "A"}\r\n', '{"persona": "A"}  \n', '{"persona": "A"}\t\n', '  {"persona": "A"}\n',
    '{"persona": "A"} x\n', '{"persona": "A"}{"persona": "B"}\n', '{"persona": "A"},\n',
    '\ufeff{"persona": "A"}\n', '{"persona": "A"}\r', '{"persona": "A"}\x0b\n', '{"persona": "A"}',
    '{"persona": "\\u00a0\\u2003"}\n', '{"persona": " A\\u2003B "}\n', '"A"\n', '{"persona": "A"\n',
]


@pytest.mark.parametrize("line", UNUSUAL_LINES)
def test_unusual_lines_read_as_json_loads_reads_them(tmp_path: Path, line: str) -> None:
    """The reader's quick path for ordinary lines must not change any other line's outcome."""
    path = tmp_path / "p.jsonl"
    path.write_bytes(('{"persona": "first"}\n' + line).encode())
    try:
        got = list(iter_personas(path, fmt="jsonl"))[1:]
    except PersonaFileError as exc:
        assert exc.line == 2
        got = exc.reason
    try:
        expected = json.loads(line)
    except json.JSONDecodeError as exc:
        assert got == f"invalid JSON ({exc.msg} at column {exc.colno})"
        return
    if not isinstance(expected, dict):
        assert got == "expected a JSON object, got string"
    elif not expected["persona"].strip():
        assert got == 'field "persona" is empty'
    else:
        assert [(p.text, p.source_ref) for p in got] == [(" ".join(expected["persona"].split()), "line 2")]


def test_plain_jsonl_missing_field_names_both_candidates(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"body": "A"}])
    with pytest.raises(PersonaFileError, match=r'missing field "persona" \(or "text"\)'):
        list(iter_personas(path, fmt="jsonl"))


def test_invalid_utf8_is_a_bad_line_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"persona": "A"}\n{"persona": "\xff"}\n{"persona": "C"}\n')
    stats = ImportStats()
    texts = [p.text for p in iter_personas(path, skip_bad=True, stats=stats)]
    assert texts == ["A", "C"]
    assert stats.bad_examples[0].startswith(f"{path}:2: not valid UTF-8")


def test_skip_bad_counts_and_keeps_first_five_examples(tmp_path: Path) -> None:
    lines: list[str | dict] = []
    for i in range(8):
        lines += [{"persona": f"Persona {i}"}, "{not json"]
    path = write_lines(tmp_path / "p.jsonl", lines)
    stats = ImportStats()
    personas = list(iter_personas(path, fmt="personahub", skip_bad=True, stats=stats))
    assert len(personas) == 8
    assert (stats.read, stats.imported, stats.bad) == (16, 8, 8)
    assert len(stats.bad_examples) == 5
    assert stats.bad_examples[0].startswith(f"{path}:2: invalid JSON (")
    assert stats.bad_examples[4].startswith(f"{path}:10: ")
    assert personas[-1].source_ref == "line 15"


def test_csv_row_with_wrong_field_count_is_bad(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("persona,age\nA farmer,50\nA sailor,44,extra\n\nA smith,31\n", "utf-8")
    with pytest.raises(PersonaFileError) as info:
        list(iter_personas(path, fmt="csv"))
    assert str(info.value) == f"{path}:3: expected 2 fields, got 3"
    stats = ImportStats()
    personas = list(iter_personas(path, fmt="csv", skip_bad=True, stats=stats))
    assert [p.source_ref for p in personas] == ["line 2", "line 5"]
    assert stats.bad == 1


def test_parquet_null_text_reports_row(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"persona": ["A", None, "C"]}), path)
    with pytest.raises(PersonaFileError) as info:
        list(iter_personas(path))
    assert (info.value.line, info.value.reason) == (2, 'field "persona" is null')


# --------------------------------------------------------------------------- file-level errors


def test_missing_column_in_csv_header_raises_without_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", [["name", "age"], ["A", "3"]])
    with pytest.raises(PersonaFileError) as info:
        iter_personas(path, fmt="csv")  # raised at call time, before iterating
    assert info.value.line is None
    assert str(info.value) == f"{path}: no column 'persona' or 'text' (columns: name, age)"
    with pytest.raises(PersonaFileError, match="no column 'bio'"):
        iter_personas(path, fmt="attributes", text_column="bio")


def test_missing_or_non_string_column_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"persona": ["A"], "age": [3]}), path)
    with pytest.raises(PersonaFileError, match=r"no column 'bio' \(columns: persona, age\)"):
        iter_personas(path, text_column="bio")
    with pytest.raises(PersonaFileError, match="column 'age' has type int64, not string") as info:
        iter_personas(path, text_column="age")
    assert info.value.line is None


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(PersonaFileError) as info:
        iter_personas(tmp_path / "nope.jsonl")
    assert (info.value.line, info.value.reason) == (None, "file not found")
    path = write_lines(tmp_path / "p.jsonl", [{"persona": "A"}])
    with pytest.raises(PersonaFileError, match="unknown format 'yaml'") as info:
        iter_personas(path, fmt="yaml")
    assert info.value.line is None


def test_not_a_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("persona\nA\n", "utf-8")
    with pytest.raises(PersonaFileError, match="not a readable Parquet file"):
        iter_personas(path)


def test_truncated_gzip_is_a_file_error(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl.gz"
    data = gzip.compress(b"".join(b'{"persona": "P %d"}\n' % i for i in range(2000)))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PersonaFileError, match="unreadable data") as info:
        list(iter_personas(path, fmt="personahub"))
    assert info.value.line is None


# --------------------------------------------------------------------------- streaming


def test_iteration_is_lazy_first_records_before_bad_last_line(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "p.jsonl", [{"persona": "A"}, {"persona": "B"}, {"persona": "C"}, "{oops"]
    )
    stats = ImportStats()
    personas = iter_personas(path, fmt="personahub", stats=stats)
    assert stats.read == 0  # nothing read until asked
    assert [next(personas).text for _ in range(3)] == ["A", "B", "C"]
    assert stats.imported == 3
    with pytest.raises(PersonaFileError) as info:
        next(personas)
    assert info.value.line == 4


def test_gzipped_jsonl_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "persona.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('{"persona": "A glassblower"}\n\n{"persona": "A ferrier"}\n')
    assert detect_format(path) == "personahub"
    personas = list(iter_personas(path))
    assert [(p.text, p.source_ref) for p in personas] == [
        ("A glassblower", "line 1"),
        ("A ferrier", "line 3"),
    ]
    table = tmp_path / "people.csv.gz"
    with gzip.open(table, "wt", encoding="utf-8", newline="") as f:
        f.write("persona,age,city\r\nA cooper,61,Leeds\r\n")
    assert detect_format(table) == "attributes"
    (persona,) = iter_personas(table)
    assert persona.attributes == {"age": 61, "age_group": "50-64", "city": "Leeds"}


def test_utf8_bom_is_ignored(tmp_path: Path) -> None:
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes('\ufeff{"persona": "A weaver"}\n'.encode())
    table = tmp_path / "bom.csv"
    table.write_bytes("\ufeffpersona,age\nA tanner,40\n".encode())
    assert next(iter_personas(jsonl)).text == "A weaver"
    assert next(iter_personas(table)).text == "A tanner"


def test_batches(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"persona": f"Persona {i}"} for i in range(7)])
    stats = ImportStats()
    batches = list(iter_persona_batches(path, batch_size=3, stats=stats, fmt="personahub"))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert batches[2][0].source_ref == "line 7"
    assert stats.imported == 7
    with pytest.raises(ValueError, match="batch_size"):
        iter_persona_batches(path, batch_size=0)


def test_batches_are_lazy(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [{"persona": "A"}, {"persona": "B"}, "{oops"])
    batches = iter_persona_batches(path, batch_size=2)
    assert [p.text for p in next(batches)] == ["A", "B"]
    with pytest.raises(PersonaFileError):
        next(batches)


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
@pytest.mark.slow
def test_memory_stays_flat_while_streaming(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"big.{suffix}"
    padding = "x" * 200
    with open(path, "w", encoding="utf-8") as f:
        if suffix == "csv":
            f.write("persona\n")
            f.writelines(f"Persona {i} {padding}\n" for i in range(20_000))
        else:
            f.writelines(
                json.dumps({"persona": f"Persona {i} {padding}"}) + "\n" for i in range(20_000)
            )
    size = path.stat().st_size
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_personas(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte file"


def test_parquet_is_read_batch_by_batch(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"persona": [f"Persona {i}" for i in range(50)]}), path)
    monkeypatch.setattr(importers, "_PARQUET_BATCH_ROWS", 10)
    pulled: list[int] = []
    real_iter_batches = pq.ParquetFile.iter_batches

    def counting_iter_batches(self, *args, **kwargs):
        for batch in real_iter_batches(self, *args, **kwargs):
            pulled.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting_iter_batches)
    monkeypatch.setattr(pq.ParquetFile, "read", None)  # whole-file reads are not allowed
    personas = iter_personas(path)
    assert next(personas).source_ref == "row 1"
    assert pulled == [10]
    assert [p.source_ref for p in personas][-1] == "row 50"
    assert pulled == [10] * 5


# --------------------------------------------------------------------------- real sample


def test_personahub_tool_sample_imports_5000_personas() -> None:
    if not SHARED_SAMPLE.is_file():
        pytest.skip(f"{SHARED_SAMPLE} not present")
    assert detect_format(SHARED_SAMPLE) == "personahub-synth"
    stats = ImportStats()
    refs = []
    for persona in iter_personas(SHARED_SAMPLE, stats=stats):
        refs.append(persona.source_ref)
        assert persona.attributes == {"task": "tool development"}
    assert refs == [f"line {n}" for n in range(1, 5001)]
    assert (stats.read, stats.imported, stats.bad) == (5000, 5000, 0)
