"""The offline engine as an endpoint: in process, deterministic, and given the schema itself.

It needs no mode negotiation, pool or concurrency limit.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from personahub.core.contracts import CallRequest, Capabilities, StructuredResult
from personahub.models.attempts import answered, failed
from personahub.models.offline import OFFLINE_MODEL_NAME, OfflineChatModel
from personahub.models.structured import StructuredMode, openai_tools

OFFLINE_CAPABILITIES = Capabilities(native_schemas=True, in_process=True, deterministic=True)


class OfflineEndpoint:
    """Answers from the offline chat model directly (LangChain's callbacks cost more than the answer)."""

    capabilities = OFFLINE_CAPABILITIES
    base_url: str | None = None

    def __init__(self, model: OfflineChatModel, label: str = OFFLINE_MODEL_NAME, *,
                 use_tools: bool = False, index: int = 0) -> None:
        self.model = model
        self.label = label
        self.index = index
        self.mode: StructuredMode = "tools" if use_tools else "json_schema"

    @property
    def model_name(self) -> str:
        """The name answers are cached under."""
        return str(getattr(self.model, "model_name", None) or self.label)

    def current_mode(self) -> str:
        """Return the structured mode this endpoint answers in (fixed)."""
        return self.mode

    def _kwargs(self, request: CallRequest) -> dict[str, object]:
        """Return the schema class itself as the response format (one engine request per class), or tools."""
        if self.mode == "tools":
            return {"tools": openai_tools(request.schema), "tool_choice": request.schema.__name__}
        return {"response_format": request.schema}

    async def call(self, request: CallRequest) -> StructuredResult[BaseModel]:
        record = request.record(model=self.label, endpoint=self.index, structured_mode=self.mode)
        started = time.perf_counter()
        try:
            message = await self.model.answer_async(list(request.messages), sample=request.sample,
                                                    **self._kwargs(request))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            return failed(record, exc, started)
        return answered(record, message, self.mode, started)
