"""Wall time, calls/s and cost of a synthesis job sent online against the same job with
--provider-batch.

    python bench/bench_batch.py [--n 10000] [--latency 0.05] [--concurrency 64]
                                [--batch-size 10000] [--batch-delay 0] [--model gpt-4o-mini]
                                [--price-in 0.15] [--price-out 0.60]

One loopback server (``personahub serve``'s ``personahub/models/fake_server/server.py``, in a child process so
its CPU is not the client's) answers both jobs with the offline engine under the model name
``--model``: online, each request after ``--latency`` seconds; as a batch, after
``--batch-delay`` seconds (0: the server answers the lines as fast as it can, so the figure is
personahub's own overhead; a provider takes minutes to hours). Both jobs draw the same
``--n`` personas (template-built: ``bench/_synthetic.py``; seed 0) and ask one
``math_problem`` item each with ``--structured json_schema``; the bench checks that they wrote
the same items.

Cost: the ``prices`` row ``--model`` at ``--price-in``/``--price-out`` USD per 1M tokens, no batch
price set, so ``v_run_cost`` prices provider batch attempts at half (the OpenAI Batch API's discount).
The last line is ``RESULT n=<items> online_s=<wall> batch_s=<wall> online_rate=<calls/s>
batch_rate=<calls/s> online_usd=<cost> batch_usd=<cost> same=<True|False>``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import _synthetic


def _serve(latency: float, delay: float, urls: Any, stop: Any) -> None:
    from personahub.models.fake_server.server import ServerOptions, start_server

    handle = start_server(ServerOptions(latency_s=latency, batch_delay_s=delay))
    urls.put(handle.base_url)
    stop.wait(3600)
    handle.stop()


def _job(url: str, db: Path, args: argparse.Namespace, batch: bool) -> dict[str, Any]:
    from personahub import runtime
    from personahub.core.store import connect, transaction
    from personahub.personas.importers import iter_personas
    from personahub.personas.store import upsert_personas
    from personahub.pipelines.synthesize import SYNTHESIS, SynthConfig

    people = _synthetic.write_personas(db.with_suffix(".jsonl"), args.n)
    con = connect(db)
    with transaction(con):
        upsert_personas(con, iter_personas(str(people), source="bench"))
    con.execute("INSERT OR REPLACE INTO prices (model, price_in, price_out) VALUES (?, ?, ?)",
                [args.model, args.price_in, args.price_out])
    con.close()
    config = SynthConfig(task="math_problem", n=args.n, llm=f"{url}?model={args.model}",
                         structured="json_schema", concurrency=args.concurrency,
                         provider_batch=batch, batch_size=args.batch_size if batch else 64,
                         provider_batch_poll_s=0.2)
    start = time.perf_counter()
    result = runtime.run(SYNTHESIS, config, db)
    wall = time.perf_counter() - start
    con = connect(db, read_only=True)
    try:
        calls, batched = con.execute("SELECT count(*), count(provider_batch_id) FROM llm_calls "
                                     "WHERE job_id = ?", [result.job_id]).fetchone() or (0, 0)
        cost = con.execute("SELECT cost_usd, tokens_in, tokens_out FROM v_run_cost WHERE "
                           "run_id = ?", [result.job_id]).fetchone()
        items = con.execute("SELECT persona_id, content::VARCHAR FROM synth_items WHERE "
                            "job_id = ? ORDER BY persona_id", [result.job_id]).fetchall()
    finally:
        con.close()
    assert cost is not None
    return {"wall": wall, "calls": calls, "batched": batched, "usd": cost[0],
            "tokens": (cost[1], cost[2]), "items": items, "batches": result.summary.batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--batch-delay", type=float, default=0.0)
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--price-in", type=float, default=0.15)
    parser.add_argument("--price-out", type=float, default=0.60)
    args = parser.parse_args()
    urls: Any = mp.Queue()
    stop = mp.Event()
    server = mp.Process(target=_serve, args=(args.latency, args.batch_delay, urls, stop),
                        daemon=True)
    server.start()
    try:
        url = urls.get(timeout=60)
        with tempfile.TemporaryDirectory() as folder:
            _job(url, Path(folder) / "warm.duckdb", argparse.Namespace(**{**vars(args), "n": 20}),
                 batch=False)  # imports and first connections, paid by neither job
            online = _job(url, Path(folder) / "online.duckdb", args, batch=False)
            batch = _job(url, Path(folder) / "batch.duckdb", args, batch=True)
    finally:
        stop.set()
        server.join(timeout=10)
    print(f"prices: {args.model} ${args.price_in}/${args.price_out} per 1M tokens in/out "
          f"online; batch at half (no batch price set)")
    for name, got in (("online", online), ("batch", batch)):
        print(f"{name:6}: {got['calls']} calls ({got['batched']} in batches) in {got['wall']:.1f} "
              f"s = {got['calls'] / got['wall']:.0f} calls/s; tokens in/out {got['tokens'][0]}/"
              f"{got['tokens'][1]}; ${got['usd']:.4f}")
    print(batch["batches"])
    same = online["items"] == batch["items"]
    print(f"RESULT n={args.n} online_s={online['wall']:.1f} batch_s={batch['wall']:.1f} "
          f"online_rate={online['calls'] / online['wall']:.0f} "
          f"batch_rate={batch['calls'] / batch['wall']:.0f} online_usd={online['usd']:.4f} "
          f"batch_usd={batch['usd']:.4f} same={same}")


if __name__ == "__main__":
    main()
