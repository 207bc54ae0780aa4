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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting ``statuses`` with the ErrorResponse body.

    The app's exception handlers answer every error with that body (fleet.app), so the
    documented schema is the real one (FastAPI's default 422, HTTPValidationError, is not).
    """
    from fleet.schemas import ErrorResponse

    return {s: {"model": ErrorResponse, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}


ERROR_DESCRIPTIONS = {
    400: "Bad request",
    401: "Not authenticated, token expired or invalid, or account retired",
    403: "The role may not do this (supervisors never write)",
    404: "Unknown id, or a record outside the caller's department scope",
    409: "Conflict: a duplicate, an illegal state transition or a concurrent change",
    413: "Request body too large",
    422: "Invalid request: a malformed field, or a well-formed request that breaks a rule",
    429: "Too many attempts: wait and retry",
    503: "Too many requests in progress on this server process: retry after Retry-After",
}
#: What every /api operation can answer besides its success.
API_ERRORS = error_responses(401, 403, 404, 409, 422, 503)
