"""Unit tests never reach the real Redis or RabbitMQ: a connection attempt fails loudly."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

_GUARDED_PORTS = frozenset({6379, 5672})


def _port_of(address: Any) -> int | None:
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[1], int):
        return address[1]
    return None


@pytest.fixture(autouse=True)
def _no_real_infrastructure(monkeypatch: pytest.MonkeyPatch) -> None:
    real_create_connection = asyncio.BaseEventLoop.create_connection
    real_socket_connect = socket.socket.connect

    async def guarded_create_connection(
        self: asyncio.BaseEventLoop, *args: Any, **kwargs: Any
    ) -> Any:
        port = kwargs.get("port", args[2] if len(args) > 2 else None)
        if port in _GUARDED_PORTS:
            raise AssertionError(f"unit tests must not connect to port {port}: use a fake")
        return await real_create_connection(self, *args, **kwargs)

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if _port_of(address) in _GUARDED_PORTS:
            raise AssertionError(f"unit tests must not connect to {address}: use a fake")
        real_socket_connect(self, address)

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", guarded_create_connection)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
