"""FastAPI dependencies: the request's unit of work and the current user, and the route
class that runs an endpoint, its user lookup and its commit on one worker thread."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

import anyio
import redis
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from fleet.errors import Unauthorized
from fleet.models import User
from fleet.security import decode_token
from fleet.settings import Settings

T = TypeVar("T")
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


async def get_settings_dep(request: Request) -> Settings:
    # ``async`` although nothing awaits: FastAPI runs a plain ``def`` dependency on the
    # threadpool, and a thread hop costs more than this whole function.
    return request.app.state.settings


async def _session(request: Request) -> AsyncIterator[Session]:
    """The request's session, closed once the response has been sent.

    Opening a session does no I/O (it connects on first use), so it happens on the event
    loop, and so does closing one that holds no transaction; one that does (the answer's
    serialisation loaded something lazily after the commit) is rolled back on a thread.
    """
    session: Session = request.app.state.sessionmaker()
    try:
        yield session
    finally:
        if session.in_transaction():
            await _in_thread(session.close)
        else:
            session.close()


async def get_db(session: Annotated[Session, Depends(_session)]) -> AsyncIterator[Session]:
    """One transaction per request: committed before the answer is sent, rolled back on any
    error.

    ``scope="function"`` (on DbSession): FastAPI's default runs the code after ``yield``
    once the response has gone out, so a client could read 201 for a booking not yet
    committed (its next GET answered 404 under ``gongche bench api``), or for one whose
    commit then failed. The commit (or rollback) blocks, so it runs on a worker thread in
    one hop; as in FastAPI's own handling of ``def`` dependencies that hop is not counted
    against the threadpool's limit (else requests holding connections could wait for a
    thread while every thread waits for a connection), and it is shielded from
    cancellation (a client that goes away must not leak the connection).
    """
    try:
        yield session
    except BaseException:
        if session.in_transaction():
            await _in_thread(session.rollback)
        raise
    if session.in_transaction():  # not yet committed on the endpoint's thread (UnitOfWorkRoute)
        await _in_thread(session.commit)


async def _in_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on a worker thread, shielded from cancellation and outside the
    threadpool's limit (get_db says why)."""
    with anyio.CancelScope(shield=True):
        result = await anyio.to_thread.run_sync(fn, *args, limiter=anyio.CapacityLimiter(1))
    return result


DbSession = Annotated[Session, Depends(get_db, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


#: Built once: SQLAlchemy then reuses its cache key too (``db.get`` builds and keys a new
#: statement every time; this lookup runs on every authenticated request).
_USER_BY_ID = select(User).where(User.id == bindparam("uid"))


class Claimant:
    """The caller as a valid token names them, not yet looked up: what ``CurrentUser``
    gives an endpoint of a :class:`UnitOfWorkRoute`, which swaps it for the ``User`` on the
    endpoint's own thread before the endpoint runs."""

    __slots__ = ("db", "user_id")

    def __init__(self, db: Session, user_id: int) -> None:
        self.db = db
        self.user_id = user_id

    def user(self) -> User:
        """The account, if it still exists and is active (blocking: a worker thread's)."""
        user = self.db.execute(_USER_BY_ID, {"uid": self.user_id}).scalar_one_or_none()
        if user is None or not user.active:
            raise Unauthorized("account unknown or retired")
        return user


async def get_current_user(
    request: Request, db: DbSession, settings: AppSettings,
    token: Annotated[str | None, Depends(oauth2)],
) -> User | Claimant:
    """The caller: no token, a forged or an expired one → 401 here, on the event loop;
    the account itself is looked up on the endpoint's thread (one thread hop per request,
    not two) when the route is a :class:`UnitOfWorkRoute`, else on a thread of its own."""
    if not token:
        raise Unauthorized("not authenticated: log in at /api/auth/token")
    claims = decode_token(token, settings.secret_key)
    sub = str(claims.get("sub", ""))
    if not sub.isdigit():
        raise Unauthorized("account unknown or retired")
    claimant = Claimant(db, int(sub))
    if isinstance(request.scope.get("route"), UnitOfWorkRoute):
        return claimant
    return await _in_thread(claimant.user)


CurrentUser = Annotated[User, Depends(get_current_user)]


def _one_thread(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """``endpoint`` with its user lookup before it and its commit (or rollback) after it,
    in the same call: FastAPI runs a sync endpoint on a worker thread, so all three share
    that thread's hop. An ``async`` endpoint gets only its user looked up (on a thread)."""

    def prepare(kwargs: dict[str, Any]) -> Session | None:
        session = None
        for name, value in kwargs.items():
            if isinstance(value, Claimant):
                kwargs[name] = value.user()
                session = value.db
            elif isinstance(value, Session):
                session = value
        return session

    if inspect.iscoroutinefunction(endpoint):
        @functools.wraps(endpoint)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            if any(isinstance(v, Claimant) for v in kwargs.values()):
                await _in_thread(prepare, kwargs)
            return await endpoint(*args, **kwargs)  # get_db commits

        return run_async

    @functools.wraps(endpoint)
    def run(*args: Any, **kwargs: Any) -> Any:
        session = prepare(kwargs)
        try:
            result = endpoint(*args, **kwargs)
        except BaseException:
            if session is not None:
                session.rollback()
            raise
        if session is not None:
            session.commit()  # before the answer leaves (get_db says why)
        return result

    return run


class UnitOfWorkRoute(APIRoute):
    """The route class of every API router: one worker-thread hop per request.

    FastAPI runs each sync dependency and the sync endpoint on a worker thread of its own,
    and ``get_db`` commits on yet another: three hops per request, each a few hundred
    microseconds of thread wake-ups and GIL hand-overs (``gongche bench api`` profiled
    them at about a fifth of a request's CPU). Here the token is checked on the event loop
    (``get_current_user``), and the account lookup, the endpoint and the commit run in the
    endpoint's one hop. Errors are answered as before; only an account retired after its
    token was issued is now refused after the request's own validation (422 before 401).
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, _one_thread(endpoint), **kwargs)


async def get_redis(request: Request) -> redis.Redis:
    return request.app.state.redis


RedisClient = Annotated[redis.Redis, Depends(get_redis)]
