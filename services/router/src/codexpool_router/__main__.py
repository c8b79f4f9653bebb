from __future__ import annotations

from codexpool_router.app import create_app
from codexpool_router.config import Settings
from codexpool_shared.cli import serve


def main() -> None:
    serve("codexpool-router", 8080, lambda: create_app(Settings()))


if __name__ == "__main__":
    main()
