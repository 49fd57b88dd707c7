"""Script detection: which writing system a persona is in, and which texts an embedder judges."""

from __future__ import annotations

import pytest

from personahub.models.embedders import OpenAIEmbedder, make_embedder
from personahub.personas.embedding import HashEmbedder, LocalEmbedder, embedder_scripts
from personahub.personas.writing_systems import LATIN, covered, dominant_script, script_counts


@pytest.mark.parametrize(("text", "script"), [
    ("A pediatric nurse in rural Ohio", "Latn"),
    ("Eine Ärztin aus München, die Kinder behandelt", "Latn"),
    ("一位热衷于篮球比赛解说的体育评论员", "Hani"),
    ("นักพัฒนาซอฟต์แวร์ที่ออกแบบไอคอน", "Thai"),
    ("ゲームが好きなひらがなのひと", "Hira"),
    ("서울에 사는 요리사", "Hang"),
    ("Врач из Москвы", "Cyrl"),
    ("42 — 17, 3.5%", "Zyyy"),
    ("", "Zyyy"),
])
def test_dominant_script(text: str, script: str) -> None:
    assert dominant_script(text) == script


def test_neutral_characters_are_not_counted() -> None:
    assert script_counts("2024: 中国 (China)!") == {"Hani": 2, "Latn": 5}
    assert script_counts("...  123") == {}


def test_covered_by_latin_needs_most_letters_latin() -> None:
    assert covered("A historian of the 唐 dynasty who writes for museums", LATIN)
    assert not covered("一位研究 Python 的软件工程师和开源贡献者们", LATIN)
    assert not covered("นักออกแบบไอคอน", LATIN)
    assert covered("1234 — 5678", LATIN)  # nothing to misjudge
    assert covered("一位篮球评论员", None)  # None: any script


def test_embedders_declare_their_scripts() -> None:
    assert embedder_scripts(LocalEmbedder()) == LATIN  # all-MiniLM-L6-v2: English only
    assert embedder_scripts(make_embedder("local:all-MiniLM-L6-v2")) == LATIN
    assert embedder_scripts(LocalEmbedder(model="paraphrase-multilingual-MiniLM-L12-v2")) is None
    assert embedder_scripts(HashEmbedder()) is None  # lexical
    assert embedder_scripts(OpenAIEmbedder(model="text-embedding-3-small")) is None  # multilingual
    assert embedder_scripts(object()) is None  # one that declares nothing judges everything
