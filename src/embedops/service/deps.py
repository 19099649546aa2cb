"""FastAPI dependencies: the app's services, and API key checks (scope and requests per
minute) for the routes that need a key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from embedops.service.auth import ApiKey
from embedops.service.errors import AuthenticationFailed, PermissionDenied
from embedops.service.state import Services, services_of


async def get_services(request: Request) -> Services:
    """The app's ``Services`` (async: FastAPI runs a sync dependency in a thread)."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


def _token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "no API key; send it as the header 'Authorization: Bearer eo-...' "
            "(create one with: embedops keys create --scopes embed)"
        )
    return token.strip()


def require(scope: str | None) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency that admits a live key with ``scope`` (``None``: any live key) and takes
    one request from its requests per minute.

    Raises:
        AuthenticationFailed: no key, or an unknown or revoked one (401).
        PermissionDenied: the key lacks ``scope`` (403).
        RateLimited: over the key's requests per minute (429).
    """

    async def dependency(request: Request) -> ApiKey:
        services = services_of(request)
        key = services.keys.authenticate(_token(request))
        if key is None:
            raise AuthenticationFailed("invalid or revoked API key; check the key you sent")
        if scope is not None and not key.allows(scope):
            raise PermissionDenied(
                f"the key {key.id} lacks the scope {scope!r} (it has "
                f"{', '.join(key.scopes)}); create a key with --scopes {scope}"
            )
        request.state.key = key  # the middleware adds the key's x-ratelimit-* headers
        await services.limits.hit(key, requests=1)
        return key

    return dependency


EmbedKey = Annotated[ApiKey, Depends(require("embed"))]
SearchKey = Annotated[ApiKey, Depends(require("search"))]
WriteKey = Annotated[ApiKey, Depends(require("write"))]
AnyKey = Annotated[ApiKey, Depends(require(None))]
