from __future__ import annotations

from codexpool_router.app import create_app
from codexpool_router.config import Settings
from codexpool_shared.cli import serve
from codexpool_shared.telemetry import configure_logging


def main() -> None:
    configure_logging(service="codexpool-router")
    serve(
        "codexpool-router",
        8080,
        Settings,
        lambda settings, drain: create_app(settings, drain=drain),
    )


if __name__ == "__main__":
    main()
