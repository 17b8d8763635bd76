"""The errors a request to the daemon can end in, one class per HTTP answer.

The adapters that read requests (``sources.webhooks``) and the HTTP API (``runtime.api``) raise
them; only the API turns them into responses: ``status`` and ``code`` go into the answer, with
``{"error": {"code", "message", "details"}}`` as the body and ``headers`` added. They live here,
below the API, so that a webhook source can refuse a delivery without knowing HTTP frameworks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class RequestError(Exception):
    """A request the daemon refuses; ``status`` and ``code`` go into the error body."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, details: Sequence[str] = (), headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(RequestError):
    status, code = 400, "bad_request"


class InvalidJson(RequestError):
    status, code = 400, "invalid_json"


class Unauthorized(RequestError):
    status, code = 401, "unauthorized"


class Forbidden(RequestError):
    """The credentials are known, but their role (or a writer's objects) does not allow the request."""

    status, code = 403, "forbidden"


class NotFound(RequestError):
    status, code = 404, "not_found"


class MethodNotAllowed(RequestError):
    status, code = 405, "method_not_allowed"


class Conflict(RequestError):
    status, code = 409, "conflict"


class PayloadTooLarge(RequestError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(RequestError):
    status, code = 415, "unsupported_media_type"


class Invalid(RequestError):
    """The request parsed but does not fit: every problem is listed in ``details``."""

    status, code = 422, "invalid"

    @classmethod
    def of(cls, problems: Sequence[str]) -> Invalid:
        if len(problems) == 1:
            return cls(problems[0], problems)
        return cls(f"{len(problems)} problems: " + "; ".join(problems), problems)


class Misconfigured(RequestError):
    status, code = 500, "misconfigured"


class InternalError(RequestError):
    status, code = 500, "internal"


class Unavailable(RequestError):
    status, code = 503, "unavailable"

    def __init__(self, message: str, details: Sequence[str] = (), retry_after: int = 1) -> None:
        super().__init__(message, details, {"Retry-After": str(retry_after)})
