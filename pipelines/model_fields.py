"""The engine fields every model job's config shares, and their checks.

A config inherits EngineFields (or ModelFields, ExecutorFields and GenerationFields, plus
BatchFields for --provider-batch; RequestFields alone for a job that only paces its requests), checks
its own fields, then calls check_model_fields. The values are checked by the option table's
checks (core.engine_options), as the command line checks them; each bad value is a one-line
usage error naming its flag, raised before anything is opened.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol

from personahub.core.engine_options import check_fields, default
from personahub.core.kernel import check_cache_mode, engine
from personahub.core.validate import check_seed
from personahub.executors import check_executor
from personahub.models.adaptive_limit import Concurrency
from personahub.models.structured import check_setting
from personahub.pipelines.provider_batch_jobs import BatchFields


def _own(group: type) -> tuple[str, ...]:
    """Return the fields a group of engine fields declares (its bases' included)."""
    return tuple(f.name for f in dataclasses.fields(group))


@dataclass(frozen=True, kw_only=True)
class RequestFields:
    """How long a job waits for each request and how fast it sends them: what every job that asks an
    endpoint (a chat model or an embedder) has."""

    timeout_s: float = engine(default("timeout_s"))
    # model requests per second at most, all endpoints together
    rps: float | None = engine(default("rps"))

    def check_requests(self) -> None:
        """Check the timeout and the rate (usage errors naming their flags)."""
        check_fields(self, *_own(RequestFields))


@dataclass(frozen=True, kw_only=True)
class ModelFields(RequestFields):
    """How a job asks its model; the model spec also tells two jobs apart (stored redacted)."""

    llm: str = engine(default("llm"), identity=True, secret=True)
    concurrency: Concurrency = engine(default("concurrency"))
    # the offline engine's wait per call (a slow model)
    offline_latency_s: float = engine(default("offline_latency_s"))
    # a batch or step whose failed share passes this (and has >= 5 actions) stops the job;
    # not part of the job's identity
    max_failed_share: float = engine(default("max_failed_share"))

    def check_model(self) -> None:
        """Check these fields, each bad value a usage error naming its flag; normalises
        concurrency (a number or auto)."""
        check_fields(self, *_own(ModelFields))


@dataclass(frozen=True, kw_only=True)
class ExecutorFields:
    """Where a job's calls are answered from (the cache) and run (the executor); neither changes the
    rows a job writes.
    """

    cache: str = engine(default("cache"))  # off | record | replay (personahub/models/cache.py)
    executor: str = engine(default("executor"))
    # None: RAY_ADDRESS, else a local Ray for the job
    ray_address: str | None = engine(default("ray_address"))
    # Ray actors asking the model; None: one per CPU
    ray_workers: int | None = engine(default("ray_workers"))

    def check_executor(self, *, cache_on_driver: bool = False) -> None:
        """Check the cache mode, the executor with its workers and, in a config with BatchFields,
        that its batch options go with both (usage errors).

        Args:
            cache_on_driver: the job keeps the cache on the driver, so Ray may use it
                (executors.check_executor).
        """
        check_fields(self, *_own(ExecutorFields))
        check_cache_mode(self.cache)
        check_executor(self.executor, cache=self.cache, cache_on_driver=cache_on_driver)
        check_batch = getattr(self, "check_batch", None)
        if check_batch is not None:
            check_batch(executor=self.executor, cache=self.cache)


@dataclass(frozen=True, kw_only=True)
class GenerationFields:
    """How a model job's answers are asked for and sampled, declared once for every job config
    (the defaults from core.engine_options). They are part of what the job makes."""

    structured: str = default("structured")  # how the schema is asked for
    max_tokens: int | None = default("max_tokens")  # None: a limit per output kind
    temperature: float | None = default("temperature")
    top_p: float | None = default("top_p")

    def check_generation(self) -> None:
        """Check how the schema is asked for and the sampling settings (usage errors)."""
        check_setting(self.structured)
        check_fields(self, *_own(GenerationFields))


@dataclass(frozen=True, kw_only=True)
class EngineFields(GenerationFields, BatchFields, ModelFields, ExecutorFields):
    """Every engine field of a model job that may send its calls as provider batches, and its
    generation fields: the executor's, the model's, the batch fields, then the generation
    fields, the order its config lists them in.
    """


class _ModelJobConfig(Protocol):
    """A model job's config as check_model_fields reads it: its own seed, and the checks of the
    ModelFields, GenerationFields and ExecutorFields it inherits."""

    @property
    def seed(self) -> int: ...
    def check_model(self) -> None: ...
    def check_generation(self) -> None: ...
    def check_executor(self) -> None: ...


def check_model_fields(config: _ModelJobConfig) -> None:
    """Check a config's model, generation, executor and batch fields where it has them;
    normalises concurrency."""
    config.check_model()
    check_seed(config.seed)
    config.check_generation()
    config.check_executor()
