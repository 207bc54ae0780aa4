"""The Redis-compatible store: real Redis in production, fakeredis in-process when embedded."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import redis
import redis.asyncio

from fleet.settings import EMBEDDED_REDIS

if TYPE_CHECKING:
    import fakeredis


@lru_cache(maxsize=8)
def _fake_server() -> fakeredis.FakeServer:
    import fakeredis

    return fakeredis.FakeServer()


def redis_client(url: str) -> redis.Redis:
    """A client for ``url``; ``memory://`` is one in-process server shared by the process."""
    if url == EMBEDDED_REDIS:
        import fakeredis

        return fakeredis.FakeRedis(server=_fake_server(), decode_responses=False)
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def async_redis_client(url: str) -> redis.asyncio.Redis:
    """The asyncio flavour of :func:`redis_client` (WebSocket push, async workers)."""
    import redis.asyncio as aredis

    if url == EMBEDDED_REDIS:
        import fakeredis

        return fakeredis.FakeAsyncRedis(server=_fake_server())
    return aredis.Redis.from_url(url, socket_connect_timeout=5)
