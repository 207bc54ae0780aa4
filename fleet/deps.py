"""FastAPI dependencies: the request's unit of work and the current user."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

import anyio
import redis
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from fleet.errors import Unauthorized
from fleet.models import User
from fleet.security import decode_token
from fleet.settings import Settings

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
        await _in_thread(session.rollback)
        raise
    await _in_thread(session.commit)


async def _in_thread(fn: Callable[..., None], *args: object) -> None:
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(fn, *args, limiter=anyio.CapacityLimiter(1))


DbSession = Annotated[Session, Depends(get_db, scope="function")]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


#: Built once: SQLAlchemy then reuses its cache key too (``db.get`` builds and keys a new
#: statement every time; this lookup runs on every authenticated request).
_USER_BY_ID = select(User).where(User.id == bindparam("uid"))


def get_current_user(
    db: DbSession, settings: AppSettings, token: Annotated[str | None, Depends(oauth2)]
) -> User:
    if not token:
        raise Unauthorized("not authenticated: log in at /api/auth/token")
    claims = decode_token(token, settings.secret_key)
    sub = str(claims.get("sub", ""))
    user = db.execute(_USER_BY_ID, {"uid": int(sub)}).scalar_one_or_none() if sub.isdigit() \
        else None
    if user is None or not user.active:
        raise Unauthorized("account unknown or retired")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_redis(request: Request) -> redis.Redis:
    return request.app.state.redis


RedisClient = Annotated[redis.Redis, Depends(get_redis)]
