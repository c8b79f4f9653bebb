from __future__ import annotations

from codexpool_health.app import create_app
from codexpool_health.config import Settings
from codexpool_shared.cli import serve


def main() -> None:
    serve("codexpool-health", 8083, lambda: create_app(Settings()))


if __name__ == "__main__":
    main()
