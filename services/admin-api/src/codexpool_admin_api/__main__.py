from __future__ import annotations

from codexpool_admin_api.app import create_app
from codexpool_admin_api.config import Settings
from codexpool_shared.cli import serve


def main() -> None:
    serve(
        "codexpool-admin-api",
        8081,
        Settings,
        lambda settings, drain: create_app(settings, drain=drain),
    )


if __name__ == "__main__":
    main()
