"""The Codex backend's request checks (reference §3.3), each behind its own switch."""

from __future__ import annotations

from typing import Any

from codexpool_sim import errors
from codexpool_sim.config import Validation


def validate(
    switches: Validation, request: dict[str, Any], allowed_models: tuple[str, ...]
) -> errors.Body | None:
    """The 400 body for the first failed check, or None when the request passes."""
    if switches.require_store_false and request.get("store") is not False:
        return errors.detail("Store must be set to false")
    if switches.require_instructions and not isinstance(request.get("instructions"), str):
        return errors.detail("Instructions are required")
    if switches.require_stream and request.get("stream") is not True:
        return errors.detail("Stream must be set to true")
    if switches.reject_max_output_tokens and "max_output_tokens" in request:
        return errors.detail("Unsupported parameter: max_output_tokens")
    model = request.get("model")
    if switches.check_model and model not in allowed_models:
        return errors.model_not_supported(str(model))
    return None
