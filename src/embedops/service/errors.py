"""The service's errors and the one handler that maps every error to OpenAI's error shape.

The service adds a branch to the embedops exception tree (see ``embedops.errors``)::

    EmbedopsError
    └── ServiceError                 an HTTP request the service refuses
        ├── AuthenticationFailed     401: no key, or an unknown or revoked key
        ├── PermissionDenied         403: the key lacks the route's scope
        ├── ModelNotFound            404: the request names a model this service does not serve
        ├── InvalidRequest           400: a request the schema accepts but the service cannot do
        ├── RateLimited              429: over the key's requests or tokens per minute
        └── Overloaded               503: the batcher's queue is full

Every error leaves as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from embedops.errors import (
    CollectionNotFound,
    ConfigError,
    EmbedopsError,
    InputError,
    ItemNotFound,
    MemoryPressure,
    ModelError,
    ModelLoadError,
    StoreError,
)

logger = logging.getLogger(__name__)


class ServiceError(EmbedopsError):
    """An HTTP request the service refuses; carries its status and OpenAI error type/code."""

    status = 400
    type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.param = param
        self.headers = headers or {}


class AuthenticationFailed(ServiceError):
    """No API key, or one that is unknown or revoked."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ServiceError):
    """The key is valid but lacks the scope the route needs."""

    status = 403
    type = "permission_error"
    code = "insufficient_scope"


class ModelNotFound(ServiceError):
    """The request names a model the service does not serve."""

    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class InvalidRequest(ServiceError):
    """A request the schema accepts that the service cannot do (too long, too many items)."""


class RateLimited(ServiceError):
    """Over the key's requests or tokens per minute."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Overloaded(ServiceError):
    """The batcher's queue is full; retry after a moment."""

    status = 503
    type = "server_error"
    code = "overloaded"


# Library errors: (status, type, code), most specific class first.
_LIBRARY: list[tuple[type[EmbedopsError], int, str, str]] = [
    (CollectionNotFound, 404, "not_found_error", "collection_not_found"),
    (ItemNotFound, 404, "not_found_error", "item_not_found"),
    (StoreError, 500, "server_error", "store_error"),
    (ConfigError, 400, "invalid_request_error", "invalid_value"),
    (InputError, 400, "invalid_request_error", "invalid_input"),
    (MemoryPressure, 503, "server_error", "out_of_memory"),
    (ModelLoadError, 503, "server_error", "model_unavailable"),
    (ModelError, 500, "server_error", "model_error"),
]


def error_body(message: str, type_: str, param: str | None, code: str | None) -> dict[str, Any]:
    """OpenAI's error object."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _response(
    status: int,
    message: str,
    type_: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(message, type_, param, code), status, headers=headers)


async def _embedops_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ServiceError):
        return _response(exc.status, str(exc), exc.type, exc.param, exc.code, exc.headers)
    for cls, status, type_, code in _LIBRARY:
        if isinstance(exc, cls):
            if status >= 500:
                logger.error("%s %s: %s", request.method, request.url.path, exc)
            return _response(status, str(exc), type_, None, code)
    logger.error("%s %s: %s", request.method, request.url.path, exc)
    return _response(500, str(exc), "server_error", None, "internal_error")


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    if loc and loc[0] == "input" and len(loc) > 1:  # the union's branches say nothing useful
        message = (
            "invalid request: 'input' must be a string, a list of strings, a list of token "
            "ids (integers) or a list of such lists"
        )
        return _response(400, message, "invalid_request_error", "input", None)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in errors[:5]
    )
    return _response(400, f"invalid request: {problems}", "invalid_request_error", param, None)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    type_ = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    headers = dict(exc.headers) if exc.headers else None
    return _response(exc.status_code, str(exc.detail), type_, None, None, headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("%s %s failed", request.method, request.url.path)
    return _response(500, "internal error; see the service log", "server_error", None, None)


Handler = Callable[[Request, Exception], Awaitable[JSONResponse]]


def _tagged(handler: Handler) -> Handler:
    """``handler``, also noting the error's code (or type) on ``request.state.error_type``
    for the metrics (``embedops_errors_total``)."""

    async def tag(request: Request, exc: Exception) -> JSONResponse:
        response = await handler(request, exc)
        try:
            error = json.loads(bytes(response.body))["error"]
            request.state.error_type = str(error.get("code") or error.get("type"))
        except (ValueError, KeyError, TypeError, AttributeError):
            request.state.error_type = "unknown"
        return response

    return tag


def install_error_handlers(app: FastAPI) -> None:
    """Map embedops errors, request validation and HTTP errors to OpenAI's error shape."""
    app.add_exception_handler(EmbedopsError, _tagged(_embedops_error))
    app.add_exception_handler(RequestValidationError, _tagged(_validation_error))
    app.add_exception_handler(StarletteHTTPException, _tagged(_http_error))
    app.add_exception_handler(Exception, _tagged(_unexpected))
