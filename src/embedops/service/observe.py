"""The service's one ASGI middleware: what every response carries and what every request
leaves behind, in one wrapper of ``send`` and one timer a request.

Headers:
- ``x-request-id`` on every response (uuid4 hex; also ``request.state.request_id``, and what
  ``POST /v1/feedback`` names).
- ``x-embedops-variant`` and ``x-embedops-model-version`` on responses of routes that embed
  or search (set by ``Variants.choose`` on ``request.state``; ``default`` when no experiment
  runs), error responses included once the variant was chosen.
- OpenAI's ``x-ratelimit-*`` headers on every keyed response (errors that carry them already,
  429s, keep their own).

After the response: request metrics by route template, status, model version and variant
(``ServiceMonitor.request``), and the experiment log's row of a request a variant served
(``Variants.record``: a queue put, no I/O).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedops.monitoring.service import ServiceMonitor

if TYPE_CHECKING:
    from embedops.service.state import Services

_LIMIT_HEADER = b"x-ratelimit-limit-requests"


class Observe:
    """Adds the request id, variant and rate-limit headers; records each finished request.

    Args:
        app: the app it wraps.
        monitor: the service's monitoring (request metrics).
        services: the app's ``Services`` once the lifespan made them (``None`` before).
    """

    def __init__(
        self, app: ASGIApp, monitor: ServiceMonitor, services: Callable[[], Services | None]
    ) -> None:
        self.app = app
        self.monitor = monitor
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        request_id = uuid.uuid4().hex
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                if "variant" in state:
                    headers.append((b"x-embedops-variant", str(state["variant"]).encode()))
                    version = str(state.get("model_version", ""))
                    headers.append((b"x-embedops-model-version", version.encode()))
                key = state.get("key")
                services = self.services()
                if (
                    key is not None
                    and services is not None
                    and not any(k == _LIMIT_HEADER for k, _ in headers)
                ):
                    limit = await services.limits.state(key)
                    headers += [(k.encode(), v.encode()) for k, v in limit.headers().items()]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            self.monitor.request(route, scope["method"], status, seconds, state)
            services = self.services()
            if services is not None and "variant" in state:
                services.variants.record(state, route, status, seconds)
