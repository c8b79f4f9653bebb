"""Events to AMQP bodies and back; the one place that decides what counts as malformed."""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationError

from codexpool_shared.events import BaseEvent, Event, EventAdapter

CONTENT_TYPE = "application/json"

MalformedReason = Literal["malformed", "unknown_field"]


class MalformedMessageError(ValueError):
    """A message body that no event model accepts: bad JSON, unknown type or version, bad fields.

    Retrying cannot help, so consumers dead-letter such a message at once.
    """

    def __init__(self, message: str, reason: MalformedReason = "malformed") -> None:
        super().__init__(message)
        self.reason: MalformedReason = reason
        """``unknown_field`` when the only problem is a field the schema does not know (a
        producer ahead of this consumer, see the events' versioning rule), else ``malformed``."""


def encode(event: BaseEvent) -> bytes:
    """The JSON body of ``event``.

    Args:
        event: Any event model.

    Returns:
        UTF-8 JSON, as ``EventAdapter.validate_json`` reads it back.
    """
    return event.model_dump_json().encode()


def decode(body: bytes) -> Event:
    """The event in a message body.

    Args:
        body: A message body.

    Returns:
        The event, as the model its ``type`` tag names.

    Raises:
        MalformedMessageError: The body is not a valid event of a known type and version. The
            message says what was wrong, never what the body contained.
    """
    try:
        return EventAdapter.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or '<body>'}: {error['type']}"
            for error in errors[:5]
        )
        unknown = all(error["type"] == "extra_forbidden" for error in errors)
        reason: MalformedReason = "unknown_field" if unknown else "malformed"
        raise MalformedMessageError(f"not a known event ({problems})", reason) from None
