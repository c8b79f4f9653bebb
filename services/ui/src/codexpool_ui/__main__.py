from __future__ import annotations

from codexpool_shared.cli import serve
from codexpool_ui.app import create_app
from codexpool_ui.config import Settings


def main() -> None:
    serve("codexpool-ui", 8082, Settings, lambda settings, drain: create_app(settings, drain=drain))


if __name__ == "__main__":
    main()
