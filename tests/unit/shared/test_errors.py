"""The shared error handlers."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from codexpool_shared.errors import install_error_handlers


def test_a_405_allows_every_method_of_the_path_whatever_route_serves_it() -> None:
    # GET and POST on one path are two routes, and an included router nests them.
    items = APIRouter(prefix="/items")
    items.add_api_route("", lambda: [], methods=["GET"])
    items.add_api_route("", lambda: {}, methods=["POST"])
    items.add_api_route("/{item_id}", lambda item_id: {}, methods=["DELETE"])
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(items)
    with TestClient(app) as client:
        refused = client.put("/items")
        one = client.get("/items/3")
    assert (refused.status_code, refused.headers["allow"]) == (405, "GET, POST")
    assert refused.json()["error"]["type"] == "invalid_request_error"
    assert (one.status_code, one.headers["allow"]) == (405, "DELETE")
