"""Thin REST routers for authentication, organisation and assets."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from fleet import schemas, service
from fleet.deps import AppSettings, CurrentUser, DbSession
from fleet.errors import TooManyRequests, Unauthorized
from fleet.models import DriverStatus, Role, VehicleCategory, VehicleStatus
from fleet.routing import ApiRouter
from fleet.security import create_token, verify_password


class Paging:
    def __init__(self, offset: int = 0, limit: int = 50) -> None:
        self.offset = offset
        self.limit = limit


async def paging(offset: Annotated[int, Query(ge=0)] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Paging:
    # ``async``: a plain class dependency would be run on the threadpool (a thread hop)
    return Paging(offset, limit)


PageParams = Annotated[Paging, Depends(paging)]


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """The answer for a model already validated on the way out, serialised once.

    For the API's busiest endpoints: FastAPI's ``response_model`` (kept on the route for the
    OpenAPI schema) would dump the returned model to Python, validate that again against
    the same model, dump it to JSON-able data and encode that, one more thread hop of a
    sync endpoint; a returned ``Response`` skips all of it. The body is the same
    ``pydantic`` JSON the schema describes (the model *is* the response model).
    """
    return Response(model.__pydantic_serializer__.to_json(model), status_code=status_code,
                    media_type="application/json")

auth = ApiRouter(prefix="/api/auth", tags=["auth"])


@auth.post("/token", response_model=schemas.TokenRead)
def login(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()],
          db: DbSession, settings: AppSettings) -> schemas.TokenRead:
    """OAuth2 password flow: exchange username and password for a bearer token."""
    limiter = request.app.state.login_limiter
    client = request.client.host if request.client else "?"
    if not (limiter.allow(f"user:{form.username}") and limiter.allow(f"addr:{client}")):
        raise TooManyRequests("too many login attempts: wait a minute and try again")
    user = service.user_by_name(db, form.username)
    if user is None or not user.active or not verify_password(form.password, user.password_hash):
        raise Unauthorized("wrong username or password")
    token = create_token(str(user.id), settings.secret_key, settings.token_minutes,
                         role=str(user.role), dep=user.department_id)
    return schemas.TokenRead(access_token=token, expires_in=settings.token_minutes * 60)


@auth.get("/me", response_model=schemas.UserRead)
def me(user: CurrentUser) -> object:
    return user


def _page(p: service.Paged, items: list[object] | None = None) -> dict[str, object]:
    return {"items": items if items is not None else p.items, "total": p.total,
            "offset": p.offset, "limit": p.limit}


# --- departments -------------------------------------------------------------------------
departments = ApiRouter(prefix="/api/departments", tags=["departments"])


@departments.get("", response_model=schemas.Page[schemas.DepartmentRead])
def list_departments(db: DbSession, user: CurrentUser, page: PageParams) -> object:
    return _page(service.list_departments(db, user, page.offset, page.limit))


@departments.get("/{department_id}", response_model=schemas.DepartmentRead)
def get_department(department_id: int, db: DbSession, user: CurrentUser) -> object:
    return service.get_department(db, user, department_id)


@departments.post("", response_model=schemas.DepartmentRead, status_code=status.HTTP_201_CREATED)
def create_department(data: schemas.DepartmentCreate, db: DbSession, user: CurrentUser) -> object:
    return service.create_department(db, user, data)


@departments.patch("/{department_id}", response_model=schemas.DepartmentRead)
def update_department(department_id: int, data: schemas.DepartmentUpdate, db: DbSession,
                      user: CurrentUser) -> object:
    return service.update_department(db, user, department_id, data)


@departments.post("/{department_id}/retire", response_model=schemas.DepartmentRead)
def retire_department(department_id: int, data: schemas.Retire, db: DbSession,
                      user: CurrentUser) -> object:
    return service.retire_department(db, user, department_id, data.reason)


# --- users -------------------------------------------------------------------------------
users = ApiRouter(prefix="/api/users", tags=["users"])


@users.get("", response_model=schemas.Page[schemas.UserRead])
def list_users(db: DbSession, user: CurrentUser, page: PageParams, role: Role | None = None,
               department_id: int | None = None) -> object:
    return _page(service.list_users(db, user, page.offset, page.limit, role, department_id))


@users.get("/{user_id}", response_model=schemas.UserRead)
def get_user(user_id: int, db: DbSession, user: CurrentUser) -> object:
    return service.get_user(db, user, user_id)


@users.post("", response_model=schemas.UserRead, status_code=status.HTTP_201_CREATED)
def create_user(data: schemas.UserCreate, db: DbSession, user: CurrentUser) -> object:
    return service.create_user(db, user, data)


@users.patch("/{user_id}", response_model=schemas.UserRead)
def update_user(user_id: int, data: schemas.UserUpdate, db: DbSession,
                user: CurrentUser) -> object:
    return service.update_user(db, user, user_id, data)


@users.post("/{user_id}/retire", response_model=schemas.UserRead)
def retire_user(user_id: int, data: schemas.Retire, db: DbSession, user: CurrentUser) -> object:
    return service.retire_user(db, user, user_id, data.reason)


# --- vehicles ----------------------------------------------------------------------------
vehicles = ApiRouter(prefix="/api/vehicles", tags=["vehicles"])


@vehicles.get("", response_model=schemas.Page[schemas.VehicleRead])
def list_vehicles(db: DbSession, user: CurrentUser, page: PageParams,
                  department_id: int | None = None, category: VehicleCategory | None = None,
                  status: VehicleStatus | None = None,
                  q: Annotated[str | None, Query(max_length=40)] = None) -> object:
    p = service.list_vehicles(db, user, page.offset, page.limit, department_id=department_id,
                              category=category, status=status, q=q)
    return _page(p, [service.vehicle_read(db, v) for v in p.items])


@vehicles.get("/{vehicle_id}", response_model=schemas.VehicleRead)
def get_vehicle(vehicle_id: int, db: DbSession, user: CurrentUser) -> object:
    return service.vehicle_read(db, service.get_vehicle(db, user, vehicle_id))


@vehicles.post("", response_model=schemas.VehicleRead, status_code=status.HTTP_201_CREATED)
def create_vehicle(data: schemas.VehicleCreate, db: DbSession, user: CurrentUser) -> object:
    return service.vehicle_read(db, service.create_vehicle(db, user, data))


@vehicles.patch("/{vehicle_id}", response_model=schemas.VehicleRead)
def update_vehicle(vehicle_id: int, data: schemas.VehicleUpdate, db: DbSession,
                   user: CurrentUser) -> object:
    return service.vehicle_read(db, service.update_vehicle(db, user, vehicle_id, data))


@vehicles.post("/{vehicle_id}/retire", response_model=schemas.VehicleRead)
def retire_vehicle(vehicle_id: int, data: schemas.Retire, db: DbSession,
                   user: CurrentUser) -> object:
    return service.vehicle_read(db, service.retire_vehicle(db, user, vehicle_id, data.reason))


# --- drivers -----------------------------------------------------------------------------
drivers = ApiRouter(prefix="/api/drivers", tags=["drivers"])


@drivers.get("", response_model=schemas.Page[schemas.DriverRead])
def list_drivers(db: DbSession, user: CurrentUser, page: PageParams,
                 department_id: int | None = None, status: DriverStatus | None = None) -> object:
    return _page(service.list_drivers(db, user, page.offset, page.limit, department_id, status))


@drivers.get("/{driver_id}", response_model=schemas.DriverRead)
def get_driver(driver_id: int, db: DbSession, user: CurrentUser) -> object:
    return service.get_driver(db, user, driver_id)


@drivers.post("", response_model=schemas.DriverRead, status_code=status.HTTP_201_CREATED)
def create_driver(data: schemas.DriverCreate, db: DbSession, user: CurrentUser) -> object:
    return service.create_driver(db, user, data)


@drivers.patch("/{driver_id}", response_model=schemas.DriverRead)
def update_driver(driver_id: int, data: schemas.DriverUpdate, db: DbSession,
                  user: CurrentUser) -> object:
    return service.update_driver(db, user, driver_id, data)


@drivers.post("/{driver_id}/retire", response_model=schemas.DriverRead)
def retire_driver(driver_id: int, data: schemas.Retire, db: DbSession,
                  user: CurrentUser) -> object:
    return service.retire_driver(db, user, driver_id, data.reason)


# --- terminals ---------------------------------------------------------------------------
terminals = ApiRouter(prefix="/api/terminals", tags=["terminals"])


@terminals.get("", response_model=schemas.Page[schemas.TerminalRead])
def list_terminals(db: DbSession, user: CurrentUser, page: PageParams,
                   bound: bool | None = None) -> object:
    return _page(service.list_terminals(db, user, page.offset, page.limit, bound))


@terminals.get("/{terminal_id}", response_model=schemas.TerminalRead)
def get_terminal(terminal_id: str, db: DbSession, user: CurrentUser) -> object:
    return service.get_terminal(db, user, terminal_id)


@terminals.get("/{terminal_id}/bindings", response_model=list[schemas.BindingRead])
def terminal_bindings(terminal_id: str, db: DbSession, user: CurrentUser) -> object:
    return service.terminal_bindings(db, user, terminal_id)


@terminals.post("", response_model=schemas.TerminalRead, status_code=status.HTTP_201_CREATED)
def create_terminal(data: schemas.TerminalCreate, db: DbSession, user: CurrentUser) -> object:
    return service.create_terminal(db, user, data)


@terminals.patch("/{terminal_id}", response_model=schemas.TerminalRead)
def update_terminal(terminal_id: str, data: schemas.TerminalUpdate, db: DbSession,
                    user: CurrentUser) -> object:
    return service.update_terminal(db, user, terminal_id, data)


@terminals.put("/{terminal_id}/vehicle", response_model=schemas.TerminalRead)
def bind_terminal(terminal_id: str, data: schemas.TerminalBind, db: DbSession,
                  user: CurrentUser) -> object:
    return service.bind_terminal(db, user, terminal_id, data.vehicle_id)


@terminals.post("/{terminal_id}/retire", response_model=schemas.TerminalRead)
def retire_terminal(terminal_id: str, data: schemas.Retire, db: DbSession,
                    user: CurrentUser) -> object:
    return service.retire_terminal(db, user, terminal_id, data.reason)


ROUTERS = [auth, departments, users, vehicles, drivers, terminals]
