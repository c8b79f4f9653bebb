from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from codexpool_sim.accounts import Account
from codexpool_sim.app import SimApp, create_app
from codexpool_sim.config import SimConfig
from codexpool_sim.server import RunningSim, serve_in_background

START = 1_770_000_000.0


@pytest.fixture
def app() -> SimApp:
    return create_app(SimConfig(accounts=3, seed=7, start_time=START, frozen_clock=True))


@pytest.fixture
def account(app: SimApp) -> Account:
    return app.accounts[0]


@pytest.fixture
async def client(app: SimApp) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim") as http:
        yield http


@pytest.fixture
async def served(app: SimApp) -> AsyncIterator[RunningSim]:
    async with serve_in_background(app) as running:
        yield running


@pytest.fixture
async def live(served: RunningSim) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.base_url, timeout=5) as http:
        yield http
