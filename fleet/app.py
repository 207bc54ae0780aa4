"""``create_app()``: the FastAPI application composing every domain's router."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from fleet import health
from fleet.api import ROUTERS, auth
from fleet.db import make_engine, make_sessionmaker, writing
from fleet.errors import API_ERRORS, DomainError, error_responses
from fleet.logging import get_logger
from fleet.metrics import HTTP_LATENCY, HTTP_REQUESTS
from fleet.ratelimit import SlidingWindowLimiter
from fleet.settings import Settings, get_settings
from fleet.store import redis_client

log = get_logger(__name__)


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        body: dict[str, Any] = {"error": exc.code, "detail": exc.message}
        body.update(exc.detail)
        return JSONResponse(body, status_code=exc.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        # Errors of the HTTP layer (unknown path, wrong method, body too large) in the same
        # body as every other error (fleet.schemas.ErrorResponse).
        if exc.status_code < 400 or exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        try:
            code = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
        except ValueError:
            code = "error"
        return JSONResponse({"error": code, "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field_name(tuple(e.get("loc", ()))), "reason": e.get("msg", "")}
                  for e in exc.errors()]
        summary = "; ".join(f"{e['field']}: {e['reason']}" for e in errors)
        return JSONResponse({"error": "invalid", "detail": summary, "errors": errors},
                            status_code=422)

    @app.exception_handler(DataError)
    async def data_error(_: Request, exc: DataError) -> JSONResponse:
        # A value the database cannot hold (an integer beyond the column's range, a NUL
        # character in text): the request is wrong, not the server.
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:200]
        return JSONResponse({"error": "invalid", "detail": f"value out of range: {reason}"},
                            status_code=422)

    @app.exception_handler(IntegrityError)
    async def integrity_error(_: Request, exc: IntegrityError) -> JSONResponse:
        # Reached only when two requests race past the service's own duplicate checks.
        log.warning("integrity_error", error=str(exc.orig)[:200])
        return JSONResponse({"error": "conflict",
                             "detail": "conflicts with an existing record (duplicate or in use)"},
                            status_code=409)


class _MetricsMiddleware:
    """Count and time every HTTP request by route template (plain ASGI).

    Not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs each request in a
    task group with memory streams between the two halves, which cost more CPU than most of
    our endpoints themselves (profiled under ``gongche bench api``).
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = ["500"]

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(scope["method"], path, status[0]).inc()
            HTTP_LATENCY.labels(scope["method"], path).observe(time.perf_counter() - start)


class _InFlightCap:
    """At most ``limit`` requests of this process past this point at once (plain ASGI).

    A request holds its database connection from the user lookup until its commit, and
    between the two it waits for threadpool threads (40); with more requests in flight
    than threads and connections can seat, threads wait for connections held by requests
    that wait for a thread, and the process stalls. Requests beyond ``limit`` wait here,
    on the event loop, holding neither; more than ``queued`` waiting are answered 503 at
    once (the error body of every other error) rather than queued without bound. Liveness
    and metrics answer whatever the load.
    """

    EXEMPT = frozenset({"/healthz", "/metrics"})

    def __init__(self, app: Any, limit: int, queued: int) -> None:
        import asyncio

        self.app = app
        self.slots = asyncio.Semaphore(limit)
        self.queued = queued
        self.waiting = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        if self.slots.locked():
            if self.waiting >= self.queued:
                await JSONResponse({"error": "service_unavailable",
                                    "detail": "too many requests in progress; retry shortly"},
                                   status_code=503, headers={"Retry-After": "1"}
                                   )(scope, receive, send)
                return
            self.waiting += 1
            try:
                await self.slots.acquire()
            finally:
                self.waiting -= 1
        else:
            await self.slots.acquire()
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()


def _install_metrics(app: FastAPI) -> None:
    app.add_middleware(_MetricsMiddleware)


def _install_health(app: FastAPI) -> None:
    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz(request: Request) -> JSONResponse:
        """Readiness: the database, the store and the broker all answer."""
        state = request.app.state
        checks: dict[str, str] = {}
        probes: dict[str, Callable[[], str]] = {
            "database": lambda: health.check_database(state.engine),
            "redis": lambda: health.check_redis(state.redis),
            "mqtt": lambda: health.check_mqtt(*state.settings.mqtt_endpoint()),
        }
        for name, probe in probes.items():
            try:
                checks[name] = probe()
            except Exception as exc:  # a probe must report, never raise
                checks[name] = f"error: {exc}"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks},
                            status_code=200 if ok else 503)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    session_factory: sessionmaker[Session] | None = None,
    extra_routers: list[Any] | None = None,
) -> FastAPI:
    """Build the application. Tests pass their own settings, engine and session factory."""
    settings = settings or get_settings()
    engine = engine or make_engine(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("api_start", database=engine.url.render_as_string(hide_password=True))
        yield

    app = FastAPI(
        title="gongche", version="0.1.0", lifespan=lifespan,
        description="Official-car platform: booking, dispatch, command, supervision "
                    "(预约 · 调度 · 指挥 · 监管).",
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessionmaker = session_factory or make_sessionmaker(writing(engine))
    app.state.redis = redis_client(settings.redis_url)
    app.state.login_limiter = SlidingWindowLimiter(settings.login_attempts_per_minute)
    _install_error_handlers(app)
    app.add_middleware(_InFlightCap, limit=settings.max_in_flight,
                       queued=settings.max_queued)
    _install_metrics(app)  # outermost: a request answered 503 is counted too
    _install_health(app)
    # Every API operation documents its error answers with the body the handlers above
    # really send (ErrorResponse), in place of FastAPI's default 422 (HTTPValidationError).
    for router in ROUTERS + domain_routers() + (extra_routers or []):
        extra = error_responses(429) if router is auth else {}
        app.include_router(router, responses={**API_ERRORS, **extra})
    from fleet.wiring import wire_domains
    from web.console import mount_console

    wire_domains(app.state.sessionmaker)
    mount_console(app)
    return app


def domain_routers() -> list[Any]:
    """Routers of the domain packages that exist so far (each exposes ``api.router``)."""
    import importlib

    routers = []
    for name in ("telematics", "dispatch", "scheduler", "ledger", "geo"):
        try:
            module = importlib.import_module(f"{name}.api")
        except ModuleNotFoundError as exc:
            if exc.name != f"{name}.api":
                raise
            continue
        routers.append(module.router)
    return routers
