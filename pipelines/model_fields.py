"""The checks every model job's config shares: the engine fields (concurrency, cache, executor,
rate, timeouts, the failure policy, batches) and the generation settings.

A spec's ``__post_init__`` checks what is its own, then calls ``check_model_fields(self)``; each
bad value is a one-line usage error naming its flag, before anything is opened.
"""

from __future__ import annotations

from typing import Any

from personahub.agents.llm.generation import Generation
from personahub.agents.llm.settings import parse_concurrency
from personahub.agents.llm.structured import check_setting
from personahub.core.failures import check_max_failed_share
from personahub.core.kernel import check_cache_mode
from personahub.core.validate import check_number, check_optional_number, check_seed
from personahub.sim.executors import check_executor


def check_model_fields(config: Any) -> None:
    """Check (and normalise ``concurrency`` of) a frozen config holding the usual model fields
    (``seed``, ``structured``, ``max_tokens``, ``temperature``, ``top_p``, ``concurrency``,
    ``cache``, ``executor``, ``ray_workers``, ``rps``, ``timeout_s``, ``offline_latency_s``,
    ``max_failed_share``) and the batch ones (``pipelines.batch_jobs.BatchFields``)."""
    object.__setattr__(config, "concurrency", parse_concurrency(config.concurrency))
    check_seed(config.seed)
    check_setting(config.structured)
    Generation(max_tokens=config.max_tokens, temperature=config.temperature, top_p=config.top_p)
    check_max_failed_share(config.max_failed_share)
    check_cache_mode(config.cache)
    check_executor(config.executor, cache=config.cache, workers=config.ray_workers)
    check_optional_number(config.rps, "--rps", above=0)
    check_number(config.timeout_s, "--timeout", above=0)
    check_number(config.offline_latency_s, "offline latency", low=0)
    config.check_batch(executor=config.executor, cache=config.cache)
