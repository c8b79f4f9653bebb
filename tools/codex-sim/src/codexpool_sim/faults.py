"""Injected failures: each applies once, for ``count`` requests, or with a ``probability``."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator


class FaultKind(StrEnum):
    HTTP_ERROR = "http_error"
    RATE_LIMIT = "rate_limit"
    USAGE_LIMIT = "usage_limit"
    TOKEN_EXPIRED = "token_expired"
    CLOUDFLARE_403 = "cloudflare_403"
    STALL_HEADERS = "stall_headers"
    STALL_STREAM = "stall_stream"
    CUT_STREAM = "cut_stream"
    RESPONSE_FAILED = "response_failed"
    ERROR_EVENT = "error_event"
    RESPONSE_INCOMPLETE = "response_incomplete"
    EMPTY_OUTPUT = "empty_output"
    REFRESH_ERROR = "refresh_error"
    REFRESH_STALL_AFTER_ROTATION = "refresh_stall_after_rotation"


REFRESH_KINDS = frozenset({FaultKind.REFRESH_ERROR, FaultKind.REFRESH_STALL_AFTER_ROTATION})
_STATUS_KINDS = frozenset({FaultKind.HTTP_ERROR, FaultKind.REFRESH_ERROR})


class FaultSpec(BaseModel):
    """A fault as posted to ``/_sim/accounts/{id}/faults``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    count: int | None = Field(default=None, ge=1)
    probability: float | None = Field(default=None, gt=0.0, le=1.0)
    status: int = Field(default=500, ge=500, le=599)
    code: str | None = None
    message: str | None = None
    retry_after_s: int = Field(default=1, ge=0)
    reason: str = "max_output_tokens"
    after_events: int = Field(default=2, ge=0)
    duration_ms: int = Field(default=60_000, ge=0)

    @model_validator(mode="after")
    def _one_rule(self) -> Self:
        if self.count is not None and self.probability is not None:
            raise ValueError("give either count or probability, not both")
        if "status" in self.model_fields_set and self.kind not in _STATUS_KINDS:
            raise ValueError(f"status applies to http_error and refresh_error, not {self.kind}")
        return self


@dataclass
class ActiveFault:
    id: int
    spec: FaultSpec
    remaining: int | None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.spec.model_dump(mode="json", exclude_none=True),
            "remaining": self.remaining,
        }


_fault_ids = itertools.count(1)


class FaultQueue:
    """An account's pending faults, consulted in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[ActiveFault] = []

    def add(self, spec: FaultSpec) -> ActiveFault:
        remaining = None if spec.probability is not None else (spec.count or 1)
        fault = ActiveFault(next(_fault_ids), spec, remaining)
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def views(self) -> list[dict[str, Any]]:
        return [f.view() for f in self._faults]

    def take(self, rng: random.Random, *, refresh: bool = False) -> FaultSpec | None:
        """The fault this request suffers, if any (responses and refresh faults are separate)."""
        if not self._faults:
            return None
        for fault in self._faults:
            if (fault.spec.kind in REFRESH_KINDS) != refresh:
                continue
            if fault.remaining is None:
                if rng.random() < (fault.spec.probability or 0.0):
                    return fault.spec
                continue
            fault.remaining -= 1
            if fault.remaining == 0:
                self._faults.remove(fault)
            return fault.spec
        return None
