"""FastAPI dependencies: the request's unit of work and the current user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import redis
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from fleet.errors import Unauthorized
from fleet.models import User
from fleet.security import decode_token
from fleet.settings import Settings

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_db(request: Request) -> Iterator[Session]:
    """One transaction per request: commit on success, roll back on any error."""
    session: Session = request.app.state.sessionmaker()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_db)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]


def get_current_user(
    db: DbSession, settings: AppSettings, token: Annotated[str | None, Depends(oauth2)]
) -> User:
    if not token:
        raise Unauthorized("not authenticated: log in at /api/auth/token")
    claims = decode_token(token, settings.secret_key)
    user = db.get(User, int(claims["sub"])) if str(claims.get("sub", "")).isdigit() else None
    if user is None or not user.active:
        raise Unauthorized("account unknown or retired")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_redis(request: Request) -> redis.Redis:
    return request.app.state.redis  # type: ignore[no-any-return]


RedisClient = Annotated[redis.Redis, Depends(get_redis)]
