"""Domain errors and their HTTP status: the only place the contract's error codes are spelled."""
from __future__ import annotations

from typing import Any


class AppError(Exception):
    """An error the caller can act on; the error middleware turns it into the contract's body."""

    status = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class ValidationFailed(AppError):
    status, code = 400, "VALIDATION_FAILED"


class Unauthenticated(AppError):
    status, code = 401, "UNAUTHENTICATED"


class Forbidden(AppError):
    status, code = 403, "FORBIDDEN"


class NotFound(AppError):
    status, code = 404, "NOT_FOUND"


class MethodNotAllowed(AppError):
    status, code = 405, "METHOD_NOT_ALLOWED"


class IdempotencyConflict(AppError):
    status, code = 409, "IDEMPOTENCY_CONFLICT"


class UserDeleted(AppError):
    status, code = 410, "USER_DELETED"


class PayloadTooLarge(AppError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(AppError):
    status, code = 415, "UNSUPPORTED_MEDIA_TYPE"


class RateLimited(AppError):
    status, code = 429, "RATE_LIMITED"

    def __init__(self, message: str, retry_after: int, headers: dict[str, str] | None = None,
                 scope: str | None = None) -> None:
        # `scope` says which limit refused (user, caller, client): clients act on it, not on the wording.
        super().__init__(message, {"retryAfter": retry_after} | ({"scope": scope} if scope else {}))
        self.retry_after = retry_after
        self.headers = headers or {}  # the refused limit's RateLimit-* fields


class ServiceUnavailable(AppError):
    """The database could not be reached: nothing was written, so a retry is safe."""

    status, code = 503, "SERVICE_UNAVAILABLE"


class InternalError(AppError):
    status, code = 500, "INTERNAL_ERROR"


class OutcomeUnknown(InternalError):
    """The connection was lost during COMMIT and the database could not be asked since:
    the increment may or may not be written, so this must never be a 503. A retry with the
    same actionId is still safe (it is applied once, or answered as a replay)."""
