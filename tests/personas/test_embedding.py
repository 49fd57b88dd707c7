from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
import pytest

from personahub.core.contracts import carried_records
from personahub.core.errors import PersonahubError
from personahub.models.embedders import OpenAIEmbedder, make_embedder
from personahub.models.settings import EndpointFailing
from personahub.personas.embedding import (
    Embedder,
    HashEmbedder,
    LocalEmbedder,
    embedding_duplicates,
    neighbour_pairs,
    pick_index,
)
from tests._planted import planted_corpus, recall_precision
from tests.optional import need_local_model


def test_make_embedder_specs() -> None:
    assert isinstance(make_embedder("hash"), HashEmbedder)
    assert make_embedder("hash:64").dim == 64
    assert isinstance(make_embedder("openai:text-embedding-3-small"), OpenAIEmbedder)
    assert isinstance(make_embedder("local"), LocalEmbedder)
    assert isinstance(make_embedder("hash"), Embedder)
    for bad in ("nope", "openai", "hash:x"):
        with pytest.raises(PersonahubError):
            make_embedder(bad)


def test_openai_without_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(PersonahubError, match="OPENAI_API_KEY"):
        make_embedder("openai:text-embedding-3-small").embed(["a persona"])


def test_hash_embedder_is_normalised_and_deterministic() -> None:
    texts = ["A nurse who loves hiking.", "a nurse who loves hiking", "a chess player", ""]
    a = HashEmbedder().embed(texts)
    b = HashEmbedder().embed(texts)
    assert a.dtype == np.float32 and a.shape == (4, 512)
    assert np.array_equal(a, b)
    assert np.allclose(np.linalg.norm(a[:3], axis=1), 1.0, atol=1e-5)
    assert not a[3].any()
    assert a[0] @ a[1] > 0.999 and a[0] @ a[2] < 0.5


def test_unknown_index_is_rejected() -> None:
    with pytest.raises(PersonahubError):
        pick_index("annoy")


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


BACKENDS = ["ivf"] + [
    pytest.param(b, marks=pytest.mark.skipif(not _installed(b), reason=f"{b} not installed"))
    for b in ("faiss", "usearch")
]


@pytest.mark.parametrize("index", BACKENDS)
def test_planted_recall_precision_per_index(index: str) -> None:
    corpus = planted_corpus(500, 250, length=(60, 60), kinds=("edit_block", "swap", "edit1"))
    dup = embedding_duplicates(corpus.texts, HashEmbedder(), 0.9, index=index)
    recall, precision = recall_precision(dup, corpus.truth())
    print(f"embedding[{index}]: recall={recall:.3f} precision={precision:.3f}")
    assert recall >= 0.95 and precision >= 0.95
    assert (dup[:500] == -1).all(), "distinct texts were merged"
    marked = np.flatnonzero(dup >= 0)
    assert (dup[marked] < marked).all() and (dup[dup[marked]] == -1).all()


def test_big_group_of_copies_collapses_onto_first() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 32)).astype(np.float32)
    x[100:200] = x[50] + rng.normal(scale=1e-3, size=(100, 32)).astype(np.float32)
    dup = embedding_duplicates(["t"] * 300, HashEmbedder(), 0.9, index="ivf", k=4, vectors=x)
    assert (dup[100:200] == 50).all()
    assert (np.delete(dup, np.arange(100, 200)) == -1).all()


def test_neighbour_pairs_are_ordered_and_unique() -> None:
    x = np.eye(4, dtype=np.float32)[[0, 0, 1, 2, 2, 3]]
    pairs = neighbour_pairs(x, 0.9, k=3, index="ivf")
    assert pairs.tolist() == [[0, 1], [3, 4]]


@pytest.mark.slow
def test_local_minilm_embedder_if_installed() -> None:
    need_local_model()
    emb = make_embedder("local")
    texts = [
        "a retired schoolteacher who grows tomatoes",
        "A retired school teacher who grows tomatoes.",
        "a startup founder building rocket engines",
    ]
    v = emb.embed(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert v[0] @ v[1] > 0.9 and v[0] @ v[2] < 0.5
    dup = embedding_duplicates(texts, emb, 0.9, index="ivf")
    assert dup.tolist() == [-1, 0, -1]


def _embedding_client(handler: Any, **settings: Any) -> Any:
    """An ``EmbeddingClient`` whose ``AsyncOpenAI`` posts to ``handler`` (no network)."""
    import httpx
    from openai import AsyncOpenAI

    from personahub.models.endpoint_embeddings import EmbeddingClient, EmbeddingEndpoint
    from personahub.models.settings import LLMSettings

    def make() -> Any:
        transport = httpx.MockTransport(handler)
        return AsyncOpenAI(api_key="test", base_url="http://embed.test/v1", max_retries=0,
                           http_client=httpx.AsyncClient(transport=transport))

    config = LLMSettings(backoff_s=0.0, **settings)
    endpoint = EmbeddingEndpoint(model_name="emb", base_url="http://embed.test/v1",
                                 make_client=make, timeout_s=config.timeout_s)
    return EmbeddingClient(endpoint, config)


def _vectors_body(texts: list[str]) -> dict[str, Any]:
    data = [{"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0]}
            for i, t in reversed(list(enumerate(texts)))]  # out of order: the client sorts
    return {"object": "list", "data": data, "model": "emb",
            "usage": {"prompt_tokens": 7, "total_tokens": 7}}


def test_openai_embeddings_retry_and_record_every_attempt() -> None:
    import asyncio
    import json as json_module

    import httpx

    statuses = iter([503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(statuses)
        if status != 200:
            return httpx.Response(status, headers={"retry-after": "0"},
                                  json={"error": {"message": "busy"}})
        return httpx.Response(200, json=_vectors_body(json_module.loads(request.content)["input"]))

    client = _embedding_client(handler)
    vectors, result = asyncio.run(client.embed(["ab", "abcd"]))
    records = result.records
    assert vectors == [[2.0, 1.0], [4.0, 1.0]]
    assert [(r.purpose, r.status, r.attempt) for r in records] == [("embed", "error", 1),
                                                                  ("embed", "ok", 2)]
    assert records[0].error.startswith("HTTP 503") and records[1].tokens_in == 7
    assert not hasattr(client, "drain_records") and client.stats.ok == 1  # results carry them


def test_openai_embeddings_time_out_and_give_up() -> None:
    import asyncio

    import httpx

    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200, json=_vectors_body(["x"]))

    client = _embedding_client(hang, timeout_s=0.1, max_retries=1)
    with pytest.raises(EndpointFailing, match="the last: timeout") as raised:  # a resumable stop
        asyncio.run(client.embed(["x"]))
    assert [r.error for r in carried_records(raised.value)] == ["timeout", "timeout"]


def test_openai_embedder_raises_when_the_batch_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    def reject(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"error": {"message": "bad key"}})

    embedder = OpenAIEmbedder("emb", max_retries=0)
    embedder._client = _embedding_client(reject, max_retries=0)
    with pytest.raises(PersonahubError, match="embedding failed .*HTTP 401") as failed:
        embedder.embed(["a persona"])
    assert [r.status for r in carried_records(failed.value)] == ["error"]
