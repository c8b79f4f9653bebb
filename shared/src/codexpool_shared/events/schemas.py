"""Writes each event's JSON Schema to ``shared/schemas/`` (``make schemas``).

The committed files are a checked artifact: a test regenerates them in memory and fails on any
difference, so a schema change is always visible in review.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from codexpool_shared.events import EVENT_MODELS, event_type


def render_schemas() -> dict[str, str]:
    """File name -> JSON Schema text, for every event model."""
    return {
        f"{event_type(model)}.json": json.dumps(
            model.model_json_schema(mode="validation"), indent=2, sort_keys=True
        )
        + "\n"
        for model in EVENT_MODELS
    }


def main() -> None:
    """Write the schemas into the directory given (default ``shared/schemas``)."""
    parser = argparse.ArgumentParser(prog="python -m codexpool_shared.events.schemas")
    parser.add_argument("directory", nargs="?", default="shared/schemas", type=Path)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    for name, text in render_schemas().items():
        (args.directory / name).write_text(text)


if __name__ == "__main__":
    main()
