"""The floor of issue 18: a plain FastAPI + aiohttp passthrough, one Redis round trip, a background
publish. Nothing else: no auth, no selection, no failover, no spans, no metrics.

    FLOOR_UPSTREAM=http://127.0.0.1:PORT/v1/responses FLOOR_TOKEN=... \\
        uvicorn --loop uvloop --http httptools --app-dir bench/floor floor_app:app

``bench/peers.py`` runs it beside the router as the "floor" target: what any Python gateway built
this way costs on this machine, measured in the same run.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import aiohttp
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from redis.asyncio import Redis

UPSTREAM = os.environ["FLOOR_UPSTREAM"]
HEADERS = {
    "authorization": f"Bearer {os.environ['FLOOR_TOKEN']}",
    "content-type": "application/json",
    "accept": "text/event-stream",
}
# The default exchange drops a message routed to no queue and still confirms it: nothing to clean.
ROUTING_KEY = "codexpool-bench-floor-nowhere"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    app.state.session = aiohttp.ClientSession()
    connection = await aio_pika.connect(
        os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    )
    channel = await connection.channel(publisher_confirms=True)
    app.state.exchange = channel.default_exchange
    app.state.tasks = set()
    yield
    await connection.close()
    await app.state.session.close()
    await app.state.redis.aclose()


app = FastAPI(lifespan=lifespan)


@app.get("/readyz")
async def ready() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/responses")
async def responses(request: Request) -> StreamingResponse:
    state = request.app.state
    body = await request.body()
    await state.redis.get("codexpool-bench-floor")
    upstream = await state.session.post(UPSTREAM, data=body, headers=HEADERS)

    async def relay() -> AsyncIterator[bytes]:
        try:
            async for chunk in upstream.content.iter_any():
                yield chunk
        finally:
            upstream.release()
        task = asyncio.create_task(
            state.exchange.publish(aio_pika.Message(b'{"outcome":"success"}'), ROUTING_KEY)
        )
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    return StreamingResponse(relay(), media_type="text/event-stream")
