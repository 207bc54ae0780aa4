"""End-to-end fixtures: the whole system on embedded defaults with the console mounted, and
Debian's Chromium driven by Playwright (never a downloaded browser).

The server runs in this process (uvicorn in a thread) so a test can drive a simulated car by
inserting its positions with the same engine, as the demo's terminals would have.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (`make test` installs Debian's chromium)",
                allow_module_level=True)


@dataclass
class Server:
    base_url: str
    engine: Any
    settings: Any


@pytest.fixture(scope="package")  # torn down before other packages run
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`gongche demo` on embedded defaults (SpatiaLite file, amqtt, in-process store, gateway,
    writer, simulated cars) with the console mounted, on free ports."""
    import uvicorn

    from fleet import migrate
    from fleet.app import create_app
    from fleet.broker import EmbeddedBroker
    from fleet.db import make_engine, make_sessionmaker, unit_of_work, writing
    from fleet.demo import Simulation, demo_cars
    from fleet.localservices import free_port, wait_port
    from fleet.seed import seed
    from fleet.settings import EMBEDDED_REDIS, Settings
    from fleet.store import redis_client
    from gateway.runner import Gateway
    from telematics.processing import TelematicsProcessor
    from telematics.writer import StreamWriter

    data_dir = tmp_path_factory.mktemp("e2e")
    mqtt_port, port = free_port(), free_port()
    settings = Settings(mode="demo", data_dir=data_dir, redis_url=EMBEDDED_REDIS,
                        mqtt_url=f"embedded://127.0.0.1:{mqtt_port}", jt808_port=free_port(),
                        port=port, login_attempts_per_minute=1000)
    engine = make_engine(settings)
    migrate.upgrade(engine)
    with unit_of_work(make_sessionmaker(engine)) as db:
        seed(db, demo_users=True)
    broker = EmbeddedBroker("127.0.0.1", mqtt_port).start()
    client = redis_client(settings.redis_url)
    client.flushall()
    gateway = Gateway(settings, engine, client, mqtt_client_id="e2e-gateway").start()
    processor = TelematicsProcessor(writing(engine), client)
    writer = StreamWriter(client, writing(engine), block_ms=200, on_stored=processor.on_stored)
    writer_thread = threading.Thread(target=writer.run, name="e2e-writer", daemon=True)
    writer_thread.start()
    simulation = Simulation(settings, demo_cars(engine, 6), gateway.jt808_port)
    simulation.start()

    app = create_app(settings, engine=engine)  # mounts the console
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="e2e-uvicorn", daemon=True)
    thread.start()
    wait_port(port, timeout=60)
    try:
        yield Server(f"http://127.0.0.1:{port}", engine, settings)
    finally:
        server.should_exit = True
        thread.join(10)
        simulation.close()
        gateway.stop(leave_mqtt=True)
        writer.stop()
        writer_thread.join(5)
        broker.stop()
        engine.dispose()


@dataclass
class Browser:
    """One Chromium for the session; pages record console errors and page errors."""

    browser: Any
    base_url: str
    errors: list[str] = field(default_factory=list)

    def page(self, name: str) -> Any:
        context = self.browser.new_context(viewport={"width": 1440, "height": 900},
                                           locale="zh-CN", timezone_id="Asia/Shanghai")
        page = context.new_page()
        page.set_default_timeout(15_000)

        def on_console(msg: Any) -> None:
            if msg.type != "error":
                return
            url = (msg.location or {}).get("url", "")
            text = msg.text
            # The browser logs every 4xx answer; the console expects some and shows them:
            # 422 validation, 409 conflicts, 404 from the not-yet-built planner.
            if "Failed to load resource" in text and any(
                    f"status of {code}" in text for code in (409, 422)):
                return
            if "Failed to load resource" in text and "/api/plans" in url:
                return
            self.errors.append(f"[{name}] console: {text} ({url})")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"[{name}] pageerror: {exc}"))
        return page

    def login(self, page: Any, username: str, password: str = "demo") -> None:
        page.goto(self.base_url + "/")
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#menu a")


@pytest.fixture(scope="package")  # torn down before other packages run
def browser(console_server: Server) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=CHROMIUM_ARGS)
        try:
            yield Browser(chromium, console_server.base_url)
        finally:
            chromium.close()


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def wait(predicate: Any, timeout: float = 15.0, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()
