"""The gateway process (``gongche gateway``): MQTT ingest + JT/T 808 TCP server.

Both hand fixes to one :class:`~gateway.ingest.Ingest` (directory → filters → Redis stream).
``stop()`` stops taking data, flushes what was taken, and returns: SIGTERM-safe.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import redis
from sqlalchemy import Engine

from fleet.fix import Fix
from fleet.heap import freeze_startup_heap
from fleet.logging import get_logger
from fleet.settings import Settings
from gateway.directory import TerminalDirectory
from gateway.filters import FilterChain, FilterConfig
from gateway.ingest import Ingest, RejectedAudit
from gateway.jt808.messages import Registration
from gateway.jt808.server import Jt808Server
from gateway.mqtt import MqttConfig, MqttIngest
from gateway.sink import RedisSink

log = get_logger(__name__)


def filter_chain(settings: Settings) -> FilterChain:
    """The filter chain configured by ``GONGCHE_FILTER_*`` settings."""
    return FilterChain(FilterConfig(
        future_s=settings.filter_future_s, max_age_s=settings.filter_max_age_s,
        max_speed_kmh=settings.filter_max_speed_kmh, jump_speed_kmh=settings.filter_jump_kmh,
        max_hdop=settings.filter_max_hdop, min_period_s=settings.filter_min_period_s))


class _AsyncRegistry:
    """The directory's blocking database calls, off the event loop."""

    def __init__(self, directory: TerminalDirectory) -> None:
        self.directory = directory

    async def register(self, phone: str, info: Registration) -> str | None:
        return await asyncio.to_thread(self.directory.register, phone, info)

    async def authenticate(self, phone: str, code: str) -> bool:
        return await asyncio.to_thread(self.directory.authenticate, phone, code)


class _AsyncSink:
    """Fixes into the stream before the terminal gets its 0x8001 (an error → result 1)."""

    def __init__(self, ingest: Ingest) -> None:
        self.ingest = ingest

    async def put(self, fixes: Sequence[Fix]) -> None:
        await asyncio.to_thread(self.ingest.put_jt808, list(fixes))


class Gateway:
    def __init__(self, settings: Settings, engine: Engine, client: redis.Redis,
                 mqtt_client_id: str = "", jt808_port: int | None = None) -> None:
        self.settings = settings
        self.directory = TerminalDirectory(engine)
        self.ingest = Ingest(self.directory, RedisSink(client), filter_chain(settings),
                             RejectedAudit(settings.keep_rejected, client)
                             if settings.keep_rejected
                             else None)
        host, port, user, password = settings.mqtt_endpoint()
        self.mqtt = MqttIngest(MqttConfig(
            host=host, port=port, username=user, password=password,
            protocol=settings.mqtt_protocol,
            # amqtt has no shared subscriptions
            subscription="single" if settings.mqtt_embedded else settings.mqtt_subscription,
            client_id=mqtt_client_id), self.ingest)
        # ``jt808_port`` given: listen there (0 = any free port); else the setting (0 = off).
        self.jt808_enabled = jt808_port is not None or settings.jt808_port > 0
        self.jt808_port = settings.jt808_port if jt808_port is None else jt808_port
        self.jt808: Jt808Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

    def start(self) -> Gateway:
        self.directory.refresh()
        freeze_startup_heap()  # see fleet.heap: full collections skip the imported modules
        self.mqtt.start()
        if self.jt808_enabled:
            self._thread = threading.Thread(target=self._run_jt808, name="jt808", daemon=True)
            self._thread.start()
            if not self._started.wait(10):
                raise TimeoutError("JT/T 808 server did not start")
        log.info("gateway_started", jt808_port=self.jt808_port)
        return self

    def _run_jt808(self) -> None:
        self._loop = asyncio.new_event_loop()
        s = self.settings
        self.jt808 = Jt808Server(s.host, self.jt808_port,
                                 _AsyncRegistry(self.directory), _AsyncSink(self.ingest),
                                 max_frame_size=s.jt808_max_frame_bytes,
                                 idle_timeout=s.jt808_idle_timeout_s,
                                 max_connections_per_ip=s.jt808_max_connections_per_ip,
                                 max_connections=s.jt808_max_connections,
                                 reassembly_timeout=s.jt808_reassembly_timeout_s)
        self._loop.run_until_complete(self.jt808.start())
        self.jt808_port = self.jt808.port
        self._started.set()
        self._loop.run_forever()

    def stop(self, leave_mqtt: bool | None = None) -> None:
        """``leave_mqtt``: see :meth:`MqttIngest.stop` (``leave``)."""
        if self._loop is not None and self.jt808 is not None:
            asyncio.run_coroutine_threadsafe(self.jt808.stop(), self._loop).result(15)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread:
                self._thread.join(10)
        self.mqtt.stop(leave=leave_mqtt)
        log.info("gateway_stopped")
