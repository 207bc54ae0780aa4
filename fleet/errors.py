"""Domain errors raised by service functions and mapped to HTTP answers by the app.

Services raise these; routers stay thin. Each carries a message a person can act on.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status_code = 400
    code = "error"

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class NotFound(DomainError):
    """Unknown id — or a record outside the caller's department scope (never leak existence)."""

    status_code = 404
    code = "not_found"


class Forbidden(DomainError):
    status_code = 403
    code = "forbidden"


class Conflict(DomainError):
    """Duplicates (plate, VIN, terminal id), illegal transitions, concurrent edits."""

    status_code = 409
    code = "conflict"


class Invalid(DomainError):
    """A request that is well-formed but breaks a rule; ``field`` names the culprit."""

    status_code = 422
    code = "invalid"


class Unauthorized(DomainError):
    status_code = 401
    code = "unauthorized"


class TooManyRequests(DomainError):
    status_code = 429
    code = "too_many_requests"
