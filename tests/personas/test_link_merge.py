"""Same-person merges: a new persona that is someone already known leaves no node behind."""

from personahub.personas.graph import Relation
from personahub.personas.link_merge import apply_merges, resolve
from personahub.personas.record import Persona


def test_resolve_follows_chains_and_stops_at_cycles():
    assert resolve({"a": "b", "b": "c"}, "a") == "c"
    assert resolve({"a": "b", "b": "a"}, "a") == "b"
    assert resolve({}, "x") == "x"


def test_apply_merges_moves_edges_and_recounts_marks():
    kept, gone = Persona(text="kept person text", source="t"), Persona(text="gone person text", source="t")
    relations = [Relation("p", gone.persona_id, "cousin", 1, "expand"),
                 Relation("p", kept.persona_id, "friend", 1, "expand"),
                 Relation(kept.persona_id, gone.persona_id, "neighbour", 1, "expand:link"),
                 Relation(gone.persona_id, "old", "colleague", 1, "expand:link")]
    marks = [{"persona_id": "p", "created": [kept.persona_id, gone.persona_id],
              "targets": [kept.persona_id, gone.persona_id], "merged": 0, "linked": 1}]
    created, moved = apply_merges({gone.persona_id: "old"}, [kept, gone], relations, marks)
    assert created == [kept]
    assert [(r.src, r.dst, r.relation) for r in moved] == [
        ("p", "old", "cousin"), ("p", kept.persona_id, "friend"), (kept.persona_id, "old", "neighbour")]
    assert marks[0]["created"] == [kept.persona_id] and marks[0]["merged"] == 1
    assert marks[0]["targets"] == [kept.persona_id, "old"]


def test_apply_merges_without_merges_changes_nothing():
    created, relations = [Persona(text="someone", source="t")], [Relation("a", "b", "x")]
    assert apply_merges({}, created, relations, []) == (created, relations)
